//! Custom merges ([`Strategy::Custom`](super::Strategy::Custom)): a function the embedding
//! application registers ([`Merge`]), or a WebAssembly module the daemon loads at run time
//! (crate `outpost-wasm-merge`), answers a key from its concurrent versions.
//!
//! A custom topic keeps versions as `keep-both` does: every version no write overwrote,
//! at most one per origin. A key with one version answers it; a key with two or more asks
//! the merge, with the versions in dot order. Every replica that took the same writes
//! holds the same versions, so a merge that is a function of its arguments alone (no
//! clock, no randomness, no state kept between calls) answers the same everywhere; the
//! merged value is not written back, so nothing a merge answers is ever replicated. A
//! merge that fails (a trap, fuel or memory spent, a malformed answer) leaves the key
//! answering its versions as siblings, with the error ([`Value::MergeFailed`](super::Value::MergeFailed)).

use std::fmt;
use std::sync::Arc;

use super::Version;

/// What a custom merge makes of a key's concurrent versions.
pub trait Merge: fmt::Debug + Send + Sync {
    /// The value `key` answers, given its concurrent `versions` (two or more, in dot order;
    /// a deletion is a version without a value). `Ok(None)`: the key answers absent.
    /// Must depend on its arguments alone.
    fn merge(&self, key: &[u8], versions: &[&Version]) -> Result<Option<Vec<u8>>, MergeError>;

    /// The most memory one call may take beyond its arguments, for the memory plan of the
    /// driver that runs it (a call runs on the node's thread, one at a time). A merge that
    /// allocates next to nothing keeps the default.
    fn call_bytes_max(&self) -> u64 {
        0
    }
}

/// Why a merge gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeError(pub String);

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "custom merge failed: {}", self.0)
    }
}

impl std::error::Error for MergeError {}

/// A registered merge, shared by every state of the topic (configurations are cloned).
/// Two are equal when they are the same registration.
#[derive(Clone)]
pub struct MergeFn(pub Arc<dyn Merge>);

impl MergeFn {
    pub fn new(merge: impl Merge + 'static) -> MergeFn {
        MergeFn(Arc::new(merge))
    }
}

impl fmt::Debug for MergeFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for MergeFn {
    fn eq(&self, other: &MergeFn) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MergeFn {}

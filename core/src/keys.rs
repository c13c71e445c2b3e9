//! The key index of a `compact` topic: the newest sequence of each key, so that a record
//! a later record of its key superseded can be counted, and a segment holding only
//! superseded records can go first (`resources::pick_victim`).
//!
//! Bounded by `resources.compact_index_bytes_max` (key bytes + `KEY_ENTRY_BYTES` each);
//! rebuilt at recovery by scanning every segment of the topic.

use crate::types::Seq;
use std::collections::BTreeMap;

/// What one key's entry costs beside its bytes.
const KEY_ENTRY_BYTES: u64 = 64;

#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    newest: BTreeMap<Vec<u8>, Seq>,
    bytes: u64,
}

impl KeyIndex {
    /// `key` was written at `seq`: returns the sequence it supersedes, if known. A new key
    /// that does not fit the budget is not tracked (its records are never compacted away).
    pub fn note(&mut self, key: Vec<u8>, seq: Seq, max_bytes: u64) -> Option<Seq> {
        if let Some(s) = self.newest.get_mut(&key) {
            let old = *s;
            debug_assert!(old < seq, "sequences of one topic only grow");
            *s = seq;
            return Some(old);
        }
        let cost = key.len() as u64 + KEY_ENTRY_BYTES;
        if self.bytes + cost <= max_bytes {
            self.bytes += cost;
            self.newest.insert(key, seq);
        }
        None
    }

    /// Bytes it accounts (memory part `Index`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

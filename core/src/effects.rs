//! Effects: what a node's parts write into (outputs, and disk requests with what each is
//! for), so that every part of the core can emit them without importing `node`.
//!
//! A leaf: it imports only the I/O vocabulary, the configuration, the clock's timestamps,
//! the sync messages and the types.

use crate::config::NodeConfig;
use crate::hlc::Hlc;
use crate::io::{DiskOpId, DiskRequest, Event, Output};
use crate::sync::proto::SyncMsg;
use crate::types::{Instant, NodeId};
use std::collections::{BTreeMap, VecDeque};

/// Which component a disk request belongs to: its completion goes back to it, and the
/// component keeps what the request was for (its context) itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// `recovery::Recovery`; requests of an abandoned attempt are ones it no longer knows.
    Recovery,
    /// `commit::GroupCommit`: commits, rollbacks and rolls (which of them, its state says).
    Commit,
    /// `meta::BoundWriter`: the HLC bound's append and sync.
    Clock,
    /// A `sync::uplink::Uplink`'s reads; `tag` names the uplink (`Uplink::tag`).
    Uplink { tag: u64 },
    /// `fetch::Fetches`' reads.
    Fetch,
    /// The site's Raft writes (append, then sync).
    Site,
    /// The `checkpoint::CheckpointWriter` of the marks: a checkpoint's append and sync.
    Marks,
    /// The `checkpoint::CheckpointWriter` of the keyed states: a checkpoint's append and sync.
    KeyedCheckpoint,
    /// Deletes nobody waits for: retention, eviction, obsolete meta, Raft and checkpoint
    /// generations.
    Unheeded,
}

/// A disk request in flight: whose it is, and the buffer bytes it lends the driver
/// (memory parts `Writes` and `Reads`).
#[derive(Debug)]
struct InFlight {
    owner: Owner,
    write_bytes: u64,
    read_bytes: u64,
}

/// The outputs and in-flight disk requests of a node: what its parts write into.
#[derive(Debug, Default)]
pub(crate) struct Fx {
    pub out: VecDeque<Output>,
    next_op: u64,
    ops: BTreeMap<DiskOpId, InFlight>,
    write_bytes: u64,
    read_bytes: u64,
    /// While set, messages are sent on behalf of this site cluster (`Output::SendAs`).
    pub send_as: Option<NodeId>,
}

impl Fx {
    /// Issues a disk request for `owner`; the id names its completion.
    pub fn disk(&mut self, req: DiskRequest, owner: Owner) -> DiskOpId {
        let id = DiskOpId(self.next_op);
        self.next_op += 1;
        let (write_bytes, read_bytes) = match &req {
            DiskRequest::Append { bytes, .. } => (bytes.len() as u64, 0),
            DiskRequest::Read { len, .. } => (0, u64::from(*len)),
            _ => (0, 0),
        };
        self.write_bytes += write_bytes;
        self.read_bytes += read_bytes;
        self.ops.insert(id, InFlight { owner, write_bytes, read_bytes });
        self.out.push_back(Output::Disk { id, req });
        id
    }

    /// The request `id` completed: whose it was. Its buffer bytes are given back.
    pub fn complete(&mut self, id: DiskOpId) -> Owner {
        let f = self.ops.remove(&id).unwrap_or_else(|| panic!("completion of unknown disk request {id:?}"));
        self.write_bytes -= f.write_bytes;
        self.read_bytes -= f.read_bytes;
        f.owner
    }

    pub fn send(&mut self, to: NodeId, msg: &SyncMsg) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        self.send_bytes(to, bytes);
    }

    pub fn send_bytes(&mut self, to: NodeId, bytes: Vec<u8>) {
        match self.send_as {
            Some(from) => self.out.push_back(Output::SendAs { from, to, bytes }),
            None => self.out.push_back(Output::Send { to, bytes }),
        }
    }

    pub fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    /// Disk requests in flight.
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// Bytes of appends in flight (memory part `Writes`).
    pub fn write_bytes(&self) -> u64 {
        self.write_bytes
    }

    /// Bytes of the writes in flight whose owner `of` picks.
    pub fn write_bytes_of(&self, of: impl Fn(&Owner) -> bool) -> u64 {
        self.ops.values().filter(|f| of(&f.owner)).map(|f| f.write_bytes).sum()
    }

    /// Bytes of reads in flight.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Bytes of the reads in flight whose owner `of` picks.
    pub fn read_bytes_of(&self, of: impl Fn(&Owner) -> bool) -> u64 {
        self.ops.values().filter(|f| of(&f.owner)).map(|f| f.read_bytes).sum()
    }
}

/// What a component's step is given: the time, the node's configuration, the timestamp
/// the step's answers carry, and the effects it writes into. One value, instead of the
/// same four arguments on every call.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub cfg: &'a NodeConfig,
    /// The node's clock for this step: its last timestamp, or for a gateway's Data the
    /// receive timestamp issued for it.
    pub hlc: Hlc,
    pub fx: &'a mut Fx,
}

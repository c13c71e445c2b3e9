//! Effects: what a node's parts write into (outputs, and disk requests with what each is
//! for), so that every part of the core can emit them without importing `node`.
//!
//! A leaf: it imports only the I/O vocabulary, the configuration, the clock's timestamps,
//! the sync messages and the types.

use crate::config::NodeConfig;
use crate::hlc::Hlc;
use crate::io::{DiskOpId, DiskRequest, Event, FileId, Output, ReqId};
use crate::sync::proto::SyncMsg;
use crate::types::{Instant, NodeId, Seq, TopicIdx};
use std::collections::{BTreeMap, VecDeque};

/// What an in-flight disk request is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    List,
    RecoveryRead,
    RecoveryTruncate,
    /// Recovery creating, then syncing, the empty successor of a segment whose tail it
    /// cut with a skip. On the sync: the cut to make once the successor is durable (the
    /// file, its valid length and its length now).
    RecoverySuccessor {
        cut: Option<(FileId, u64, u64)>,
    },
    Commit,
    Rollback,
    MetaAppend,
    MetaSync {
        bound: u64,
    },
    MetaDelete,
    UplinkRead {
        /// The uplink that issued it (`Uplink::tag`).
        tag: u64,
        topic: TopicIdx,
        base: u64,
        pos: u64,
        sent: Seq,
    },
    FetchRead {
        req: ReqId,
    },
    RetentionDelete,
    /// Creating a rolled segment's file (an empty append, then a sync): see `roll_synced`.
    Roll,
    /// One write of Raft state (append, then sync).
    RaftWrite,
    RaftDelete,
    /// A request of an abandoned recovery attempt: its completion is ignored.
    Stale,
}

/// A disk request in flight: what it is for, and the buffer bytes it lends the driver
/// (memory parts `Writes` and `Reads`).
#[derive(Debug)]
struct InFlight {
    op: Op,
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
    pub fn disk(&mut self, req: DiskRequest, op: Op) {
        let id = DiskOpId(self.next_op);
        self.next_op += 1;
        let (write_bytes, read_bytes) = match &req {
            DiskRequest::Append { bytes, .. } => (bytes.len() as u64, 0),
            DiskRequest::Read { len, .. } => (0, u64::from(*len)),
            _ => (0, 0),
        };
        self.write_bytes += write_bytes;
        self.read_bytes += read_bytes;
        self.ops.insert(id, InFlight { op, write_bytes, read_bytes });
        self.out.push_back(Output::Disk { id, req });
    }

    /// The request `id` completed: what it was for. Its buffer bytes are given back.
    pub fn complete(&mut self, id: DiskOpId) -> Op {
        let f = self.ops.remove(&id).unwrap_or_else(|| panic!("completion of unknown disk request {id:?}"));
        self.write_bytes -= f.write_bytes;
        self.read_bytes -= f.read_bytes;
        f.op
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

    /// Bytes of reads in flight (memory part `Reads`).
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes
    }

    /// Requests in flight for which `abandoned` holds complete as [`Op::Stale`]: their
    /// completions are ignored.
    pub fn mark_stale(&mut self, abandoned: impl Fn(&Op) -> bool) {
        for f in self.ops.values_mut().filter(|f| abandoned(&f.op)) {
            f.op = Op::Stale;
        }
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

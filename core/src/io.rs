//! The sans-IO boundary: what a driver (the simulator or a production shell) hands the
//! core, and what the core asks of it.
//!
//! # The driver's rule
//! After every call to [`Node::handle`](crate::Node::handle) or
//! [`Node::handle_timeout`](crate::Node::handle_timeout), drain
//! [`Node::poll_output`](crate::Node::poll_output) until it returns `None`, perform each
//! output, then ask [`Node::poll_timeout`](crate::Node::poll_timeout) when to call again.
//!
//! # What the core relies on from storage
//! - Requests on one node complete in the order they were issued (one queue per node).
//!   A shell that runs them concurrently must keep that order per file and make a
//!   `Sync` wait for every earlier `Append` to the same file.
//! - `Append` writes at the end of the file (creating it), but only `Sync` makes it
//!   durable. On a crash, any suffix of the un-synced bytes may be lost, and the last
//!   write may be torn (a prefix kept). Bytes synced before the crash are kept exactly,
//!   unless the hardware corrupts them, which frame checksums detect.
//! - `Sync` of a new file also makes its directory entry durable.
//! - `Truncate` and `Delete` are durable when they complete.
//!
//! # What must be durable before an output may leave
//! - `Reply(Ok)` to a producer: the record's `Sync` completed (guarantee 1).
//! - `Send` of a sync batch: every record in it is durable on the sender, so a crash can
//!   never reuse a sequence number the gateway already holds (guarantee 2).
//! - Gateway `Ack` up to sequence N: everything below N is durable at the gateway.
//! - An HLC timestamp: its physical part is below the durable HLC bound (guarantee 6).

use crate::hlc::{Hlc, HlcError};
use crate::sync::proto::SkipReason;
use crate::types::{Bytes, NodeId, Seq, TopicIdx};
use std::fmt;

/// Names one file of a node's storage. Shells map it to a path; the simulator keys its
/// disk by it. Ordered so that a listing is deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileId {
    /// A log segment of one topic; `base` is the log offset of its first record.
    Segment { topic: TopicIdx, base: u64 },
    /// The node's metadata log (today: the HLC bound), rotated by generation.
    Meta { generation: u64 },
    /// The Raft state of a site-cluster member, rotated by generation at each snapshot.
    Raft { generation: u64 },
    /// A gateway's checkpoint of its receivers' marks (`crate::marks`), one per generation.
    Marks { generation: u64 },
    /// A node's checkpoint of its keyed states (`crate::keyed_checkpoint`), one per
    /// generation.
    KeyedCheckpoint { generation: u64 },
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileId::Segment { topic, base } => write!(f, "topic{}/{base:020}.seg", topic.0),
            FileId::Meta { generation } => write!(f, "meta/{generation:020}.meta"),
            FileId::Raft { generation } => write!(f, "raft/{generation:020}.raft"),
            FileId::Marks { generation } => write!(f, "marks/{generation:020}.marks"),
            FileId::KeyedCheckpoint { generation } => write!(f, "keyed/{generation:020}.keyed"),
        }
    }
}

/// Correlates a disk request with its completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskOpId(pub u64);

/// A request to storage. See the module docs for the durability each one promises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskRequest {
    /// List every file with its current length.
    List,
    Append {
        file: FileId,
        bytes: Vec<u8>,
    },
    Sync {
        file: FileId,
    },
    /// Read up to `len` bytes at `offset`; fewer at the end of the file.
    Read {
        file: FileId,
        offset: u64,
        len: u32,
    },
    Truncate {
        file: FileId,
        len: u64,
    },
    Delete {
        file: FileId,
    },
}

/// A successful completion of a [`DiskRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskResponse {
    Listed(Vec<(FileId, u64)>),
    Read(Vec<u8>),
    Done,
}

/// Why a disk request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// No space left on the device (ENOSPC). Nothing of the request was written.
    NoSpace,
    /// The file does not exist.
    NotFound,
    /// Any other failure, with the shell's description.
    Io(String),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::NoSpace => f.write_str("no space left on device"),
            DiskError::NotFound => f.write_str("file not found"),
            DiskError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// Correlates a produce request with its reply; chosen by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReqId(pub u64);

/// Everything that can happen to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes of one frame from a peer (already split by the transport).
    Message { from: NodeId, bytes: Vec<u8> },
    /// An application writes one record.
    Produce { req: ReqId, topic: TopicIdx, key: Option<Vec<u8>>, value: Vec<u8> },
    /// Completion of an earlier [`Output::Disk`].
    DiskDone { id: DiskOpId, result: Result<DiskResponse, DiskError> },
    /// Read durable records of a topic from sequence `from` (one segment at most per call;
    /// call again from `Fetched::next`). Answered by [`Output::Fetched`].
    Fetch { req: ReqId, topic: TopicIdx, from: Seq, max_records: u32, max_bytes: u32 },
    /// An operator's command (`outpost sync …`). Takes effect at once; nothing is replied.
    Control(Control),
    /// A linearizable read of strong keyed topic `topic` (site members only): answered by
    /// [`Output::StrongRead`] once the site's leader confirmed it still leads and this
    /// member applied every write committed when the read arrived (Raft's ReadIndex).
    StrongRead { req: ReqId, topic: TopicIdx },
}

/// What an operator can ask of a running node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop opening sessions and sending data (an edge; ignored on a gateway). Not
    /// persisted: a restart resumes.
    PauseSync,
    ResumeSync,
    /// Resume, connect at once if waiting out a backoff, and send partial batches now.
    SyncNow,
    /// The shell's transport to the gateway (re)connected: open a session at once rather
    /// than wait out the backoff the lost link caused. Does not resume a paused uplink.
    LinkUp,
}

/// One record returned by a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedRecord {
    /// The record's offset in this node's log of the topic (what `Input::Fetch` counts).
    pub seq: Seq,
    /// The record's identity: the node that wrote it and its sequence there. On an edge,
    /// the edge itself and `seq`; on a gateway, the edge it came from.
    pub origin: NodeId,
    pub origin_seq: Seq,
    pub hlc: Hlc,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// The answer to a fetch: records from `from`, in order, all durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub records: Vec<FetchedRecord>,
    /// Where the next fetch continues.
    pub next: Seq,
    /// The durable end of the topic when the fetch was answered.
    pub durable_end: Seq,
}

/// Why a fetch was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchError {
    /// The node is still recovering its log. Retry shortly.
    Recovering,
    UnknownTopic(TopicIdx),
    /// `from` is not held: below `start` (deleted by retention) or past `durable_end`.
    OutOfRange {
        from: Seq,
        start: Seq,
        durable_end: Seq,
    },
    /// Too many fetches in flight. Retry after one completes.
    Busy {
        in_flight: usize,
    },
    /// Storage failed or holds bytes that cannot be read at this position.
    Storage(String),
    /// Records `from..to` fail their checksum: storage destroyed them. Fetch from `to`.
    Corrupted {
        from: Seq,
        to: Seq,
    },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Recovering => f.write_str("node is recovering its log; retry shortly"),
            FetchError::UnknownTopic(t) => write!(f, "no topic with index {} on this node", t.0),
            FetchError::OutOfRange { from, start, durable_end } => write!(
                f,
                "sequence {from} is not held: this topic holds {start}..{durable_end}; fetch from {start} or later"
            ),
            FetchError::Busy { in_flight } => write!(f, "{in_flight} fetches in flight; retry after one completes"),
            FetchError::Storage(e) => write!(f, "storage: {e}"),
            FetchError::Corrupted { from, to } => write!(
                f,
                "records {from}..{to} fail their checksum: storage destroyed them; fetch from {to} to read on"
            ),
        }
    }
}

/// The acknowledgement of a produce: the record is durable under this identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProduceAck {
    pub seq: Seq,
    pub hlc: Hlc,
}

/// Why a produce was refused. Every variant says whether retrying can help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProduceError {
    /// The node is still recovering its log after a start. Retry shortly.
    Recovering,
    /// The group-commit buffer is full. Retry after the in-flight fsync completes.
    Busy { pending_bytes: u64, limit_bytes: u64 },
    /// The record is larger than the codec accepts. Do not retry.
    TooLarge { what: &'static str, len: usize, max: usize },
    /// No such topic on this node. Do not retry.
    UnknownTopic(TopicIdx),
    /// The topic's records are not written on this node but arrive from its peers: an
    /// `edge-to-cloud` topic on a gateway, a `cloud-to-edge` topic on an edge. Do not retry.
    NotAccepted,
    /// The HLC cannot issue a timestamp until its bound is durable. Retry shortly.
    Clock(HlcError),
    /// Storage refused the write (for example, no space). Nothing was written; retry later.
    Storage(DiskError),
    /// The storage budget is full and the topics' eviction policies let nothing more go
    /// (`device_full`: storage itself reported no space, below the budget). Nothing was
    /// written. The fields say what holds the room and so what ends the refusal: the
    /// gateway acknowledging records (their segments are then freed by themselves),
    /// segments it holds being deleted now, or only an operator (local data, or a device
    /// something else fills).
    StorageFull {
        /// Bytes the node holds: segment files, the meta reserve, records pending.
        used: u64,
        /// Of `used`: segments holding records the gateway has not acknowledged, and
        /// records pending.
        unsynced: u64,
        /// The storage budget.
        limit: u64,
        device_full: bool,
        /// Records the gateway has not acknowledged; once it does, their segments go.
        awaiting_ack: u64,
        /// Of `used`: segments the gateway holds wholly, being freed now.
        freeing: u64,
        /// Of `used`: local topics' data, which never syncs and goes only as its eviction
        /// policy allows.
        local: u64,
        /// While the device is full: how long until a write is tried again (zero: the
        /// next produce tries).
        retry_in: crate::types::Duration,
    },
    /// A strong write on a member that cannot reach a majority of its site. Nothing was
    /// written. Retry once the site heals; eventual topics still take writes.
    NoQuorum(crate::detector::NoQuorum),
    /// A strong write the site cannot take now (no leader known, the leader refused it,
    /// its log is full). Nothing was written; retry shortly.
    SiteUnavailable { reason: String },
    /// A strong write not confirmed within `waited`: the leader changed or was cut off.
    /// It may or may not be committed; read before writing it again.
    Unconfirmed { waited: crate::types::Duration },
    /// Refused by the shell that embeds the node before the core saw it, for a rule the
    /// shell keeps (a value of an end-to-end encrypted topic that is not sealed, on a node
    /// that holds none of the topic's keys). Nothing was written. Do not retry.
    Invalid(String),
}

impl ProduceError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProduceError::Recovering
                | ProduceError::Busy { .. }
                | ProduceError::Clock(_)
                | ProduceError::Storage(_)
                | ProduceError::StorageFull { .. }
                | ProduceError::NoQuorum(_)
                | ProduceError::SiteUnavailable { .. }
        )
    }
}

impl fmt::Display for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProduceError::Recovering => f.write_str("node is recovering its log; retry shortly"),
            ProduceError::Busy { pending_bytes, limit_bytes } => write!(
                f,
                "write buffer full: {pending_bytes} of {limit_bytes} bytes waiting for fsync; retry after it completes"
            ),
            ProduceError::TooLarge { what, len, max } => {
                write!(f, "{what} of {len} bytes exceeds the limit of {max} bytes")
            }
            ProduceError::UnknownTopic(t) => write!(f, "no topic with index {} on this node", t.0),
            ProduceError::NotAccepted => f.write_str(
                "this topic's records are not written on this node: edge-to-cloud topics are written at edges, \
                 cloud-to-edge topics at the top gateway (a gateway with an upstream relays, it writes nothing)",
            ),
            ProduceError::Clock(e) => write!(f, "clock: {e}"),
            ProduceError::Storage(e) => write!(f, "storage refused the write ({e}); nothing was stored, retry later"),
            ProduceError::StorageFull {
                used,
                unsynced,
                limit,
                device_full,
                awaiting_ack,
                freeing,
                local,
                retry_in,
            } => {
                if *device_full {
                    write!(f, "storage full: the device has no space left (Outpost holds {}", Bytes(*used))?;
                } else {
                    write!(f, "storage budget full (Outpost holds {} of its {}", Bytes(*used), Bytes(*limit))?;
                }
                if *local > 0 {
                    write!(f, ", {} of it local topics' data, kept by their eviction policy", Bytes(*local))?;
                }
                f.write_str(")")?;
                if *awaiting_ack > 0 {
                    write!(
                        f,
                        "; waiting for the gateway to acknowledge {awaiting_ack} records ({}) so that their segments \
                         can be freed: writes resume by themselves then",
                        Bytes(*unsynced)
                    )?;
                } else if *freeing > 0 {
                    write!(f, "; freeing {} the gateway holds: retry in a moment", Bytes(*freeing))?;
                }
                match (*device_full, *awaiting_ack > 0 || *freeing > 0) {
                    (true, true) => f.write_str(" (or free space on the device)"),
                    (true, false) if *local > 0 => write!(
                        f,
                        "; everything the gateway holds is freed: free space on the device or lower \
                         resources.max_storage (a write is tried again in {} s)",
                        retry_in.as_secs_f64().ceil()
                    ),
                    (true, false) => write!(
                        f,
                        "; everything the gateway holds is freed, so something else fills the device: free space on \
                         it (a write is tried again in {} s)",
                        retry_in.as_secs_f64().ceil()
                    ),
                    (false, true) => f.write_str(" (or raise resources.max_storage)"),
                    (false, false) => f.write_str(
                        "; raise resources.max_storage, or give local topics an eviction policy that lets data go",
                    ),
                }
            }
            ProduceError::NoQuorum(e) => write!(f, "{e}"),
            ProduceError::SiteUnavailable { reason } => {
                write!(f, "the site cannot take strong writes now ({reason}); nothing was written, retry shortly")
            }
            ProduceError::Invalid(why) => f.write_str(why),
            ProduceError::Unconfirmed { waited } => write!(
                f,
                "strong write not confirmed within {}s (the site's leader changed or was cut off): it may or may \
                 not be committed; read before writing it again",
                waited.as_secs_f64()
            ),
        }
    }
}

/// Something observable happened; for the simulator's checkers, metrics and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The gateway made records durable (or found them durable at recovery: `replay`).
    /// `value_crcs` has one CRC32C per record, in sequence order from `first_seq`.
    Stored {
        origin: NodeId,
        topic: TopicIdx,
        first_seq: Seq,
        value_crcs: Vec<u32>,
        /// The records' keys and values, in bytes: what the link delivered of use.
        payload_bytes: u64,
        max_record_hlc: Hlc,
        /// A timestamp the gateway issued after observing the batch's sender.
        received_hlc: Hlc,
        /// The sender's HLC was rejected as too far ahead, so `received_hlc` may be lower.
        hlc_rejected: bool,
        replay: bool,
    },
    /// A top gateway made durable its copies of edges' keyed writes in the half of a
    /// `bidirectional` topic that comes down (or found them at recovery, in a newest
    /// segment): per copy, that half, the copy's sequence there, the write it copies, and
    /// the copy's value CRC32C (see `keyed_fanout`).
    KeyedCopied { copies: Vec<crate::keyed_topics::CopyMade> },
    /// Recovery found more writes not yet copied to the other edges than the fan-out's
    /// queue holds (a gateway that ran an older build, or a smaller
    /// `gateway.pending_bytes_max`): `batches` of them are copied only after another restart.
    KeyedCopiesDeferred { batches: u64 },
    /// Recovery finished; what it found and what it cut.
    Recovered { topics: u32, records: u64, truncated_bytes: u64 },
    /// Recovery cut a torn or corrupt tail off a segment. On an edge, `skipped` is the
    /// range of sequences moved past so that none the cut bytes held is used again (see
    /// `log::sequences_cut_max`); sync later tells the gateway with a `Skip`.
    TailTruncated { file: FileId, at: u64, cut_bytes: u64, reason: String, skipped: Option<(Seq, Seq)> },
    /// An edge found records `from..to` of a topic unreadable (their frames fail the
    /// checksum): storage destroyed its only copy. Found at recovery or by sync, which
    /// skips them; reported each time they are found.
    Corrupted { topic: TopicIdx, from: Seq, to: Seq },
    /// The gateway accepted a `Skip`: sequences `from..to` of an origin's stream will never
    /// arrive, for `reason`.
    Skipped { origin: NodeId, topic: TopicIdx, from: Seq, to: Seq, reason: SkipReason },
    /// A sync session to the gateway was established.
    SessionUp { peer: NodeId, session: u64 },
    /// A sync session was given up (no answer within the session timeout).
    SessionLost { peer: NodeId, session: u64 },
    /// A peer's Welcome stated a zone (`None`: none) that classified topic `topic` may not
    /// be held in: nothing of it is sent to that peer (guarantee 7).
    NotPlaced { peer: NodeId, topic: TopicIdx, zone: Option<String> },
    /// A remote HLC timestamp was too far ahead and not adopted.
    HlcRejected { from: NodeId, remote: Hlc },
    /// After a restart the HLC issues nothing until the wall clock passes the clock bound
    /// persisted before it, `wait_ms` from now (a bound a little ahead of the wall clock):
    /// until then produces are refused with a retryable error that says how long, and a
    /// gateway holds the Data it receives.
    ClockWaits { bound_ms: u64, wait_ms: u64 },
    /// After a restart the wall clock was `behind_ms` behind the persisted clock bound,
    /// more than a clock that is right can be: it went back, or the device has no
    /// real-time clock. Timestamps continue from the bound, ahead of the wall clock until
    /// it catches up.
    ClockAheadOfWall { bound_ms: u64, behind_ms: u64 },
    /// A message from `from` had to wait for the clock and found no room
    /// (`gateway.pending_bytes_max`, shared with batches not yet durable): it was dropped,
    /// and the peer resends it.
    HeldMessageDropped { from: NodeId, bytes: u64 },
    /// A frame from a peer could not be decoded, or broke the protocol; it was dropped.
    BadMessage { from: NodeId, error: String },
    /// Local storage failed or holds bytes the core cannot read (not a peer's fault).
    StorageProblem { detail: String },
    /// Storage had reported no space; the node has since freed `bytes` of segments the
    /// gateway holds, enough for the write that failed, and takes produces again.
    StorageFreed { bytes: u64 },
    /// A segment was deleted by retention, or evicted with every record acknowledged.
    SegmentDeleted { file: FileId, records: u64 },
    /// This member became the leader of its site cluster `cluster` in `term` (for the
    /// simulator's election-safety check: one leader per term).
    SiteLeader { cluster: NodeId, term: u64 },
    /// The storage budget was full and `policy` let this edge delete records `from..to`
    /// of a topic before the gateway acknowledged them (`records` of them were written;
    /// the rest of the range was unwritten). Sync tells the gateway with a `Skip`.
    Evicted { topic: TopicIdx, from: Seq, to: Seq, records: u64, bytes: u64, policy: &'static str },
    /// A gateway's `cloud-to-edge` topic outlived its `retention_age`: records `from..to`
    /// were deleted although a subscriber it knows had not acknowledged them (`records` of
    /// them were written). Each edge that lacks them is told with a `Skip` (reason
    /// `Evicted`, or `Deleted` after a restart).
    Expired { topic: TopicIdx, from: Seq, to: Seq, records: u64, bytes: u64 },
}

/// Everything the core asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send one encoded frame to a peer. May be lost; the protocol copes.
    Send {
        to: NodeId,
        bytes: Vec<u8>,
    },
    /// As `Send`, but on behalf of the site cluster `from` (a node's cluster uplink, while
    /// it leads): the transport must deliver the peer's answers addressed to `from` back
    /// to the member that sent this most recently (as a connection would).
    SendAs {
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    },
    Disk {
        id: DiskOpId,
        req: DiskRequest,
    },
    Reply {
        req: ReqId,
        result: Result<ProduceAck, ProduceError>,
    },
    Fetched {
        req: ReqId,
        result: Result<Fetched, FetchError>,
    },
    /// The answer to [`Input::StrongRead`]. On `Ok`, the node's state of the topic
    /// (`Node::keyed`) is the answer: read it before the node takes its next input.
    StrongRead {
        req: ReqId,
        result: Result<crate::keyed_reads::ReadStamp, crate::keyed_reads::StrongReadRefused>,
    },
    Event(Event),
}

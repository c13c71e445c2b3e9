//! Group commit: records and accepted batches wait in per-topic queues, and one commit
//! appends each topic's queue as log frames and syncs the files it touched. Producers are
//! answered only once that sync completed (guarantee 1); a failed commit is rolled back
//! and its producers refused. The same component runs the rolls of fully acknowledged
//! newest segments on a full device (`roll_synced`), which exclude commits.
//!
//! It owns the produce buffer (`log.pending_bytes_max`), the storage those records will
//! take once written, and the key index of `compact` topics (updated once a commit is
//! durable).

use crate::codec::{BatchEncoder, Compression, RecordRef, MAX_BATCH_RECORDS};
use crate::config::{Eviction, NodeConfig};
use crate::effects::{Fx, Owner};
use crate::hlc::Hlc;
use crate::io::{DiskError, DiskRequest, DiskResponse, FileId, Output, ProduceAck, ProduceError, ReqId};
use crate::keys::KeyIndex;
use crate::log::{self, Checkpoint, TopicLog};
use crate::memory::{MemoryPart, MemoryUsage, PlanBasis};
use crate::sync::ingest::Accepted;
use crate::types::{Seq, TopicIdx};

/// Bytes of a pending record against the produce buffer: its key and value buffers and
/// twice its entry (the vector holding it may have doubled).
pub fn pending_record_cost(key_capacity: usize, value_capacity: usize) -> u64 {
    (key_capacity + value_capacity + 2 * PENDING_ENTRY_BYTES) as u64
}

/// What a pending record's entry may take (checked below against its size).
pub const PENDING_ENTRY_BYTES: usize = 96;

/// The bytes a commit in flight appends at most: records are written in frames of at
/// most a read chunk; accepted batches are copied into the commit with a frame header each
/// (a batch is at least 33 bytes, its frame header 20).
pub(crate) fn appends_planned(b: &PlanBasis) -> u64 {
    let own_writes = if b.pending > 0 { b.pending + b.topics * 4 * log::LOG_FRAME_MIN as u64 } else { 0 };
    own_writes + b.gw_pending / 2 * 3
}

/// The group commit's planned memory: the produce buffer and the replies of the commit in
/// flight, a gateway's accepted batches, the appends in flight, and the key indexes.
pub(crate) fn planned(cfg: &NodeConfig, b: &PlanBasis) -> MemoryUsage {
    let (pending, gw_pending, topics) = (b.pending, b.gw_pending, b.topics);
    let compact = b.edge && cfg.topics.iter().any(|t| t.eviction == Eviction::Compact);
    // The key index, and the keys a commit in flight carries to it (at most the produce
    // buffer's worth).
    let (key_index, keys_in_flight) = if compact { (cfg.resources.compact_index_bytes_max, pending) } else { (0, 0) };
    // The replies of a commit in flight: one per record, a record costing at least its
    // entry in the buffer.
    let replies = pending / (2 * PENDING_ENTRY_BYTES as u64) * 2 * 48;
    // Per topic: room for a few entries of slack in each buffer, and the checkpoint a
    // commit keeps to roll back.
    let per_topic = topics * (4 * PENDING_ENTRY_BYTES as u64 + 256);
    let slack = if pending > 0 { per_topic } else { 0 };
    let gw_slack = if gw_pending > 0 { per_topic } else { 0 };
    // The commit in flight counts where the node's main work is: an edge's under the
    // produce buffer (with the entries and CRCs of the batches it received, which their
    // cost in `gw_pending` covers), a gateway's under its accepted batches (with the
    // replies to its own producers, if any).
    let (edge_flush, gw_flush) = if b.edge { (gw_pending, 0) } else { (0, replies) };
    let mut m = MemoryUsage::default();
    m.set(MemoryPart::Index, key_index);
    m.set(MemoryPart::ProduceBuffer, pending + replies + keys_in_flight + slack + edge_flush);
    // Accepted batches, their entries (each cost counts one) and their CRCs in the commit
    // in flight, which may have doubled its vectors.
    m.set(MemoryPart::GatewayPending, 2 * gw_pending + gw_slack + gw_flush);
    m.set(MemoryPart::Writes, appends_planned(b));
    if let Some(c) = &cfg.cluster {
        // Committed strong records waiting to be written here (at most a log's worth
        // arrive at once, when a member catches up), and the copies a commit in flight
        // keeps of them: they are never refused, so the produce buffer may hold them
        // beyond `pending_bytes_max` (eventual writes then get `Busy`).
        m.grow(MemoryPart::ProduceBuffer, 2 * c.log_bytes_max);
    }
    m
}

/// A record waiting for the next group commit on an edge.
#[derive(Clone, Debug)]
pub(crate) struct PendingRecord {
    /// Who waits for it (none: a strong record this member materialises for others).
    pub req: Option<ReqId>,
    pub hlc: Hlc,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// A strong record's sequence in the cluster's stream: its offset in this topic log.
    pub strong: Option<Seq>,
}

const _: () = assert!(std::mem::size_of::<PendingRecord>() + UNSTAMPED_ENTRY_BYTES <= PENDING_ENTRY_BYTES);
/// A record's entry in the list of those waiting for a timestamp (`GroupCommit::unstamped`).
const UNSTAMPED_ENTRY_BYTES: usize = std::mem::size_of::<(TopicIdx, u32)>();

impl PendingRecord {
    /// What it draws from the produce buffer (memory).
    pub fn memory_cost(&self) -> u64 {
        pending_record_cost(self.key.as_ref().map_or(0, Vec::capacity), self.value.capacity())
    }

    /// What it reserves of storage until its commit: at most this once encoded.
    pub fn storage_cost(&self) -> u64 {
        record_storage_cost(self.key.as_ref().map_or(0, Vec::len), self.value.len())
    }
}

#[derive(Debug)]
struct Flush {
    ops_left: u32,
    error: Option<DiskError>,
    /// Bytes appended.
    bytes: u64,
    touched: Vec<(TopicIdx, Checkpoint)>,
    replies: Vec<(ReqId, ProduceAck)>,
    stored: Vec<Accepted>,
    /// Keys written to `compact` topics, for the key index once the commit is durable.
    keys: Vec<(TopicIdx, Seq, Vec<u8>)>,
    /// Strong records in this commit: committed by the site, so a failed write puts them
    /// back to be written again rather than failing their producers.
    strong: Vec<(TopicIdx, Vec<PendingRecord>)>,
    /// Every strong record applied up to this Raft index is in this commit or durable.
    site_applied: Option<crate::raft::Index>,
    /// Copies of what this commit writes to the topics whose sender follows the log's
    /// end (`start`'s `follows`), for it to send without reading them back.
    tails: Vec<Tail>,
    /// Copies of what this commit writes to keyed topics, for their states once durable.
    keyed: Vec<KeyedWrite>,
}

/// Frames a commit wrote to a keyed topic's log from log offset `base`: what its keyed
/// state merges once they are durable (`keyed_topics::KeyedTopics::apply_frames`).
#[derive(Debug)]
pub(crate) struct KeyedWrite {
    pub topic: TopicIdx,
    pub base: u64,
    pub bytes: Vec<u8>,
}

/// Frames a commit wrote to a topic's log, at file position `pos` of segment `base`: what
/// the topic's sender takes once they are durable (`Uplink::on_committed`).
#[derive(Debug)]
pub(crate) struct Tail {
    pub topic: TopicIdx,
    pub base: u64,
    pub pos: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
enum State {
    Idle,
    Flushing(Flush),
    RollingBack {
        ops_left: u32,
    },
    /// Creating the files of rolled segments (`roll_synced`); commits wait for it.
    Rolling {
        ops_left: u32,
        failed: bool,
        topics: Vec<TopicIdx>,
    },
    /// Storage failed in a way the core cannot undo; writes are refused until a restart,
    /// whose recovery reads what storage really holds.
    Poisoned(String),
}

/// A commit that is durable: what the node hands on (the gateway's batches, the site's
/// progress).
#[derive(Debug)]
pub(crate) struct Committed {
    pub stored: Vec<Accepted>,
    pub tails: Vec<Tail>,
    pub keyed: Vec<KeyedWrite>,
    /// Strong records whose producers were answered.
    pub strong_acks: u64,
    pub site_applied: Option<crate::raft::Index>,
}

/// What a completed request of the group commit led to.
#[derive(Debug)]
pub(crate) enum CommitStep {
    /// Nothing yet (more requests are in flight), or nothing to do.
    Pending,
    Committed(Committed),
    Failed(CommitFailed),
    /// A rollback ended: commits may go on.
    RolledBack,
    /// Rolls ended: the old segments may go (`ok`), or the new files are being deleted.
    Rolled {
        ok: bool,
    },
}

/// A commit that failed: what it tried to write, and why.
#[derive(Debug)]
pub(crate) struct CommitFailed {
    pub bytes: u64,
    pub error: DiskError,
}

/// The group commit of one node.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    pending: Vec<Vec<PendingRecord>>,
    gw_pending: Vec<Vec<Accepted>>,
    pending_bytes: u64,
    /// Storage reserved by records and batches waiting for the next group commit.
    pending_storage: u64,
    /// Per `compact` topic: the newest sequence of each key.
    key_index: Vec<Option<KeyIndex>>,
    /// Records queued without a timestamp, in the order they arrived (topic, place in its
    /// queue): the clock would have stamped them below the wall clock, from a durable bound
    /// the wall clock had passed while the node was idle. Nothing commits until
    /// [`stamp`](Self::stamp) gave them one, once a new bound is durable.
    unstamped: Vec<(TopicIdx, u32)>,
    state: State,
}

impl GroupCommit {
    pub fn new(topics: usize) -> GroupCommit {
        GroupCommit {
            pending: vec![Vec::new(); topics],
            gw_pending: vec![Vec::new(); topics],
            pending_bytes: 0,
            pending_storage: 0,
            key_index: (0..topics).map(|_| None).collect(),
            unstamped: Vec::new(),
            state: State::Idle,
        }
    }

    /// The key indexes recovery rebuilt.
    pub fn set_key_index(&mut self, key_index: Vec<Option<KeyIndex>>) {
        self.key_index = key_index;
    }

    /// Why writes are refused until a restart, if storage failed beyond undoing.
    pub fn poisoned(&self) -> Option<&str> {
        match &self.state {
            State::Poisoned(why) => Some(why),
            _ => None,
        }
    }

    /// Nothing in flight: a commit or a roll may start.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Records or batches wait for the next commit.
    pub fn has_queued(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty()) || self.gw_pending.iter().any(|p| !p.is_empty())
    }

    /// No strong record waits for a commit or is in one (the site may compact its log).
    pub fn strong_quiet(&self, cfg: &NodeConfig) -> bool {
        let queued = cfg.topics.iter().zip(&self.pending).any(|(t, p)| t.is_strong() && !p.is_empty());
        !queued
            && match &self.state {
                State::Idle => true,
                State::Flushing(f) => f.strong.is_empty(),
                _ => false,
            }
    }

    /// Storage reserved by the records and batches queued, without their frame headers.
    pub fn queued_storage(&self) -> u64 {
        self.pending_storage
    }

    /// Storage reserved by records and batches waiting for the next group commit.
    pub fn storage_reserved(&self, cfg: &NodeConfig) -> u64 {
        self.pending_storage + self.frame_reserve(cfg, self.pending_bytes)
    }

    /// Storage a record needs to join the queue: its own bytes, and the frame headers the
    /// commit may need for it.
    pub fn storage_need(&self, cfg: &NodeConfig, record: &PendingRecord) -> u64 {
        let bytes = record.memory_cost();
        let frames = self.frame_reserve(cfg, self.pending_bytes + bytes) - self.frame_reserve(cfg, self.pending_bytes);
        record.storage_cost() + frames
    }

    fn frame_reserve(&self, cfg: &NodeConfig, pending_bytes: u64) -> u64 {
        let frame_raw_max = u64::from(cfg.log.read_chunk_bytes) - log::LOG_FRAME_MIN as u64;
        storage_frame_reserve(self.pending.len(), pending_bytes, frame_raw_max)
    }

    /// Refuses a record the produce buffer cannot take.
    pub fn check_room(&self, cfg: &NodeConfig, record: &PendingRecord) -> Result<(), ProduceError> {
        let limit = cfg.log.pending_bytes_max;
        if self.pending_bytes + record.memory_cost() > limit {
            return Err(ProduceError::Busy { pending_bytes: self.pending_bytes, limit_bytes: limit });
        }
        Ok(())
    }

    /// Queues a record for the next commit.
    pub fn push(&mut self, topic: TopicIdx, record: PendingRecord) {
        self.pending_bytes += record.memory_cost();
        self.pending_storage += record.storage_cost();
        self.pending[topic.0 as usize].push(record);
    }

    /// Queues a record that gets its timestamp later, from [`stamp`](Self::stamp).
    pub fn push_unstamped(&mut self, topic: TopicIdx, record: PendingRecord) {
        debug_assert!(record.strong.is_none(), "a strong record is stamped by the site");
        let place = u32::try_from(self.pending[topic.0 as usize].len()).expect("the produce buffer is bounded");
        self.unstamped.push((topic, place));
        self.push(topic, record);
    }

    /// Records wait for a timestamp.
    pub fn has_unstamped(&self) -> bool {
        !self.unstamped.is_empty()
    }

    /// Stamps the records queued without a timestamp, in the order they arrived, while
    /// `next` gives timestamps.
    pub fn stamp(&mut self, mut next: impl FnMut() -> Option<Hlc>) {
        let mut stamped = 0;
        for &(t, i) in &self.unstamped {
            let Some(hlc) = next() else { break };
            let record = &mut self.pending[t.0 as usize][i as usize];
            debug_assert_eq!(record.hlc, Hlc::ZERO, "a record is stamped once");
            record.hlc = hlc;
            stamped += 1;
        }
        self.unstamped.drain(..stamped);
    }

    /// The sequence the next strong record of `topic` takes: after the last one queued,
    /// or the log's end.
    pub fn next_strong(&self, topic: TopicIdx, log: &TopicLog) -> Seq {
        self.pending[topic.0 as usize].last().and_then(|p| p.strong).map_or(log.end_offset(), |s| s + 1)
    }

    /// Queues a batch a gateway accepted.
    pub fn accept(&mut self, a: Accepted) {
        self.pending_storage += a.batch.len() as u64 + log::LOG_FRAME_OVERHEAD as u64;
        self.gw_pending[a.topic.0 as usize].push(a);
    }

    /// Starts a commit of everything queued, if none is in flight. `site_applied`: the
    /// site's applied index, which this commit makes durable if it takes every strong
    /// record queued.
    /// `follows`: per topic, how many bytes of what the commit writes at the log's end a
    /// sender would take rather than read back; a write that fits is copied, once for all
    /// the senders that take it (`Committed::tails`).
    pub fn start(
        &mut self,
        fx: &mut Fx,
        cfg: &NodeConfig,
        logs: &mut [TopicLog],
        enc: &mut BatchEncoder,
        (site_applied, follows): (Option<crate::raft::Index>, &[u64]),
    ) {
        if !self.is_idle() || self.has_unstamped() {
            return;
        }
        let mut flush = Flush {
            ops_left: 0,
            error: None,
            bytes: 0,
            touched: Vec::new(),
            replies: Vec::new(),
            stored: Vec::new(),
            keys: Vec::new(),
            strong: Vec::new(),
            site_applied: None,
            tails: Vec::new(),
            keyed: Vec::new(),
        };
        let mut strong_left = false;
        for (i, log) in logs.iter_mut().enumerate() {
            let mut records = std::mem::take(&mut self.pending[i]);
            if let Some(s0) = records.first().and_then(|p| p.strong) {
                // Strong records go at their offset in the cluster's stream. A gap (this
                // member installed a snapshot: the records below it are at the gateway) is
                // skipped; records after a further gap wait for the next commit.
                if s0 > log.end_offset() {
                    log.skip_to(s0);
                }
                assert_eq!(s0, log.end_offset(), "strong records are materialised in order");
                let run = records.iter().zip(s0..).take_while(|(p, s)| p.strong == Some(*s)).count();
                self.pending[i] = records.split_off(run);
                strong_left |= !self.pending[i].is_empty();
                flush.strong.push((TopicIdx(i as u16), records.clone()));
            }
            let accepted = std::mem::take(&mut self.gw_pending[i]);
            if records.is_empty() && accepted.is_empty() {
                continue;
            }
            let base0 = log.end_offset();
            let mut accepted = accepted;
            let mut buf = Vec::new();
            let mut count = 0u64;
            let mut newest_ms = 0;
            let frame_raw_max = cfg.log.read_chunk_bytes as usize - log::LOG_FRAME_MIN;
            let compact = cfg.topics[i].eviction == Eviction::Compact;
            for chunk in chunk_records(&records, frame_raw_max) {
                let refs: Vec<RecordRef<'_>> =
                    chunk.iter().map(|p| RecordRef { hlc: p.hlc, key: p.key.as_deref(), value: &p.value }).collect();
                let mut batch = Vec::new();
                enc.encode(cfg.id, base0 + count, &refs, Compression::Zstd, &mut batch);
                log::encode_log_frame(base0 + count, &batch, &mut buf);
                for p in chunk {
                    if let Some(req) = p.req {
                        flush.replies.push((req, ProduceAck { seq: base0 + count, hlc: p.hlc }));
                    }
                    if let (Some(k), true) = (&p.key, compact) {
                        flush.keys.push((TopicIdx(i as u16), base0 + count, k.clone()));
                    }
                    newest_ms = newest_ms.max(p.hlc.physical_ms());
                    count += 1;
                }
            }
            // A log of what comes down (at an edge or a middle tier) is a replica of one stream.
            let replica = cfg.topics[i].sync.goes_down();
            for a in &mut accepted {
                if replica {
                    assert_eq!(a.base_seq, base0 + count, "a replica log stays at its origin's sequences");
                }
                log::encode_log_frame(base0 + count, &a.batch, &mut buf);
                count += u64::from(a.count);
                newest_ms = newest_ms.max(a.received_hlc.physical_ms());
                self.pending_storage -= a.batch.len() as u64 + log::LOG_FRAME_OVERHEAD as u64;
                // The bytes are in the commit now; only the CRCs are needed until it is durable.
                a.batch = Vec::new();
            }
            self.pending_bytes -= records.iter().map(PendingRecord::memory_cost).sum::<u64>();
            self.pending_storage -= records.iter().map(PendingRecord::storage_cost).sum::<u64>();
            let cp = log.checkpoint();
            let spacing = log::frame_mark_spacing(cfg.log.read_chunk_bytes, cfg.log.segment_bytes_max);
            let place = log.place(count, buf.len() as u64, newest_ms, (cfg.log.segment_bytes_max, spacing));
            debug_assert_eq!(log.end_offset(), base0 + count);
            flush.bytes += buf.len() as u64;
            if let FileId::Segment { base, .. } = place.file {
                if buf.len() as u64 <= follows.get(i).copied().unwrap_or(0) {
                    let (topic, pos, bytes) = (TopicIdx(i as u16), place.pos, buf.clone());
                    flush.tails.push(Tail { topic, base, pos, bytes });
                }
            }
            if cfg.topics[i].keyed.is_some() {
                flush.keyed.push(KeyedWrite { topic: TopicIdx(i as u16), base: base0, bytes: buf.clone() });
            }
            fx.disk(DiskRequest::Append { file: place.file, bytes: buf }, Owner::Commit);
            fx.disk(DiskRequest::Sync { file: place.file }, Owner::Commit);
            flush.ops_left += 2;
            flush.touched.push((TopicIdx(i as u16), cp));
            flush.stored.extend(accepted);
        }
        if !strong_left {
            flush.site_applied = site_applied;
        }
        if flush.ops_left > 0 {
            self.state = State::Flushing(flush);
        }
    }

    /// One of its requests completed: a commit's, a rollback's or a roll's, as its state
    /// says (each runs alone).
    pub fn on_disk(
        &mut self,
        fx: &mut Fx,
        cfg: &NodeConfig,
        logs: &mut [TopicLog],
        result: Result<DiskResponse, DiskError>,
    ) -> CommitStep {
        if matches!(self.state, State::Flushing(_)) {
            return match self.on_done(fx, cfg, logs, result) {
                None => CommitStep::Pending,
                Some(Ok(c)) => CommitStep::Committed(c),
                Some(Err(f)) => CommitStep::Failed(f),
            };
        }
        if matches!(self.state, State::Rolling { .. }) {
            return match self.on_roll_done(fx, logs, result) {
                None => CommitStep::Pending,
                Some(ok) => CommitStep::Rolled { ok },
            };
        }
        assert!(!self.is_idle(), "a commit request completed with none in flight");
        // A rollback's, or the rest of one that failed (then writes stay refused).
        if self.on_rollback_done(result) {
            CommitStep::RolledBack
        } else {
            CommitStep::Pending
        }
    }

    /// A request of the commit completed. Once the last did: what the node hands on, or
    /// why it failed.
    fn on_done(
        &mut self,
        fx: &mut Fx,
        cfg: &NodeConfig,
        logs: &mut [TopicLog],
        result: Result<DiskResponse, DiskError>,
    ) -> Option<Result<Committed, CommitFailed>> {
        let State::Flushing(f) = &mut self.state else { panic!("commit completion without a flush") };
        f.ops_left -= 1;
        if let Err(e) = result {
            f.error.get_or_insert(e);
        }
        if f.ops_left > 0 {
            return None;
        }
        let State::Flushing(f) = std::mem::replace(&mut self.state, State::Idle) else { unreachable!() };
        Some(match f.error.clone() {
            None => Ok(self.succeeded(fx, cfg, logs, f)),
            Some(error) => Err(self.failed(fx, logs, f, error)),
        })
    }

    fn succeeded(&mut self, fx: &mut Fx, cfg: &NodeConfig, logs: &mut [TopicLog], mut f: Flush) -> Committed {
        for (t, _) in &f.touched {
            logs[t.0 as usize].mark_durable();
        }
        let max = cfg.resources.compact_index_bytes_max;
        for (t, seq, key) in std::mem::take(&mut f.keys) {
            let index = self.key_index[t.0 as usize].get_or_insert_with(KeyIndex::default);
            if let Some(old) = index.note(key, seq, max) {
                logs[t.0 as usize].note_superseded(old);
            }
        }
        // Replies leave in timestamp order, which is issue order on this node.
        f.replies.sort_unstable_by_key(|(_, a)| a.hlc);
        let strong_acks =
            f.strong.iter().map(|(_, r)| r.iter().filter(|p| p.req.is_some()).count() as u64).sum::<u64>();
        for (req, ack) in f.replies {
            fx.out.push_back(Output::Reply { req, result: Ok(ack) });
        }
        Committed { stored: f.stored, tails: f.tails, keyed: f.keyed, strong_acks, site_applied: f.site_applied }
    }

    fn failed(&mut self, fx: &mut Fx, logs: &mut [TopicLog], f: Flush, e: DiskError) -> CommitFailed {
        let mut cuts = Vec::new();
        for (t, cp) in &f.touched {
            cuts.extend(logs[t.0 as usize].rollback(cp));
        }
        let strong_reqs: std::collections::BTreeSet<ReqId> =
            f.strong.iter().flat_map(|(_, r)| r.iter().filter_map(|p| p.req)).collect();
        for (req, _) in f.replies {
            if !strong_reqs.contains(&req) {
                fx.out.push_back(Output::Reply { req, result: Err(ProduceError::Storage(e.clone())) });
            }
        }
        for (t, mut records) in f.strong {
            // Committed by the site: written again by the next commit, in the same order.
            let i = t.0 as usize;
            self.pending_bytes += records.iter().map(PendingRecord::memory_cost).sum::<u64>();
            self.pending_storage += records.iter().map(PendingRecord::storage_cost).sum::<u64>();
            records.append(&mut self.pending[i]);
            self.pending[i] = records;
        }
        // The gateway's streams go back to what is durable; their edges resend.
        for p in &mut self.gw_pending {
            for a in p.drain(..) {
                self.pending_storage -= a.batch.len() as u64 + log::LOG_FRAME_OVERHEAD as u64;
            }
        }
        let n = cuts.len() as u32;
        for (file, len) in cuts {
            let req = match len {
                Some(len) => DiskRequest::Truncate { file, len },
                None => DiskRequest::Delete { file },
            };
            fx.disk(req, Owner::Commit);
        }
        if n > 0 {
            self.state = State::RollingBack { ops_left: n };
        }
        CommitFailed { bytes: f.bytes, error: e }
    }

    /// A rollback request completed: true once the last did and commits may go on.
    fn on_rollback_done(&mut self, result: Result<DiskResponse, DiskError>) -> bool {
        let State::RollingBack { ops_left } = &mut self.state else {
            return false;
        };
        *ops_left -= 1;
        let done = *ops_left == 0;
        match result {
            Ok(_) | Err(DiskError::NotFound) => {
                if done {
                    self.state = State::Idle;
                }
                done
            }
            Err(e) => {
                let why = format!("could not undo a failed write ({e}); restart to recover from what storage holds");
                self.state = State::Poisoned(why);
                false
            }
        }
    }

    /// Rolls every topic whose newest segment is wholly acknowledged upstream (`synced`
    /// per topic), so that the segment can go: creates an empty segment after it (an empty
    /// append and a sync) and, once that file is durable, the old one may be deleted
    /// (`on_roll_done`). A topic keeps a segment file at every moment, so a restart goes on
    /// at the right sequence. Commits wait for the roll; it runs only when none is in
    /// flight.
    pub fn roll_synced(
        &mut self,
        fx: &mut Fx,
        logs: &mut [TopicLog],
        wall_ms: u64,
        synced: impl Fn(usize) -> Option<Seq>,
    ) {
        if !self.is_idle() {
            return;
        }
        let mut topics = Vec::new();
        for (t, log) in logs.iter_mut().enumerate() {
            let Some(synced) = synced(t) else { continue };
            let rollable =
                log.segments().last().is_some_and(|s| s.len > 0 && s.end <= synced && s.durable_end == s.end);
            if !rollable || log.is_rolling() {
                continue;
            }
            let file = log.roll(wall_ms);
            fx.disk(DiskRequest::Append { file, bytes: Vec::new() }, Owner::Commit);
            fx.disk(DiskRequest::Sync { file }, Owner::Commit);
            topics.push(TopicIdx(t as u16));
        }
        if !topics.is_empty() {
            self.state = State::Rolling { ops_left: 2 * topics.len() as u32, failed: false, topics };
        }
    }

    /// A roll's request completed. Once the last did: whether the rolls succeeded (the
    /// old segments may go) or failed (their new files are being deleted).
    fn on_roll_done(
        &mut self,
        fx: &mut Fx,
        logs: &mut [TopicLog],
        result: Result<DiskResponse, DiskError>,
    ) -> Option<bool> {
        let State::Rolling { ops_left, failed, .. } = &mut self.state else { panic!("roll completion without a roll") };
        *ops_left -= 1;
        *failed |= result.is_err();
        if *ops_left > 0 {
            return None;
        }
        let State::Rolling { failed, topics, .. } = std::mem::replace(&mut self.state, State::Idle) else {
            unreachable!()
        };
        if !failed {
            for t in topics {
                logs[t.0 as usize].roll_done(true);
            }
            return Some(true);
        }
        // Storage may have made something of a file it did not sync: delete it before any
        // commit appends after the old segment's end, which a restart would otherwise read
        // as the empty file's.
        for &t in &topics {
            let log = &mut logs[t.0 as usize];
            let file = log.file(log.end_offset());
            log.roll_done(false);
            fx.disk(DiskRequest::Delete { file }, Owner::Commit);
        }
        self.state = State::RollingBack { ops_left: topics.len() as u32 };
        Some(false)
    }

    /// Heap bytes of the key indexes (memory part `Index`).
    pub fn key_index_bytes(&self) -> u64 {
        self.key_index.iter().flatten().map(KeyIndex::bytes).sum()
    }

    /// Memory part `ProduceBuffer` on an edge: queued records and the replies of the commit
    /// in flight.
    pub fn produce_buffer_bytes(&self, edge: bool) -> u64 {
        let slots: usize = self.pending.iter().map(Vec::capacity).sum();
        let entries =
            (slots * std::mem::size_of::<PendingRecord>() + self.unstamped.capacity() * UNSTAMPED_ENTRY_BYTES) as u64;
        let records: usize = self.pending.iter().map(Vec::len).sum();
        let payload = self.pending_bytes - (2 * PENDING_ENTRY_BYTES * records) as u64;
        payload + entries + if edge { self.flush_bytes() } else { 0 }
    }

    /// Of memory part `GatewayPending`: accepted batches queued, and the commit in flight.
    pub fn gateway_pending_bytes(&self, edge: bool) -> u64 {
        let slots: usize = self.gw_pending.iter().map(Vec::capacity).sum();
        (slots * std::mem::size_of::<Accepted>()) as u64 + if edge { 0 } else { self.flush_bytes() }
    }

    fn flush_bytes(&self) -> u64 {
        match &self.state {
            State::Flushing(f) => f.heap_bytes(),
            _ => 0,
        }
    }

    /// The writes in flight copied for senders: each topic and the copy's length.
    pub fn tail_sizes(&self) -> Vec<(TopicIdx, u64)> {
        match &self.state {
            State::Flushing(f) => f.tails.iter().map(|t| (t.topic, t.bytes.len() as u64)).collect(),
            _ => Vec::new(),
        }
    }

    /// Of memory part `ProduceBuffer`: the copies of the commit in flight for keyed states
    /// (held by the node until the commit is durable, unlike the appends the driver holds).
    pub fn keyed_copy_bytes(&self) -> u64 {
        match &self.state {
            State::Flushing(f) => f.keyed.iter().map(|k| k.bytes.capacity() as u64).sum(),
            _ => 0,
        }
    }

    /// Of memory part `SyncHeld`: the copies for senders of the commit in flight (each
    /// stands for the read its sender does not do meanwhile).
    pub fn tail_bytes(&self) -> u64 {
        match &self.state {
            State::Flushing(f) => f.tails.iter().map(|t| t.bytes.capacity() as u64).sum(),
            _ => 0,
        }
    }
}

impl Flush {
    fn heap_bytes(&self) -> u64 {
        let replies = self.replies.capacity() * std::mem::size_of::<(ReqId, ProduceAck)>();
        let touched = self.touched.capacity() * std::mem::size_of::<(TopicIdx, Checkpoint)>();
        let stored = self.stored.capacity() * std::mem::size_of::<Accepted>();
        let crcs: usize = self.stored.iter().map(|a| a.value_crcs.capacity() * 4).sum();
        let keys = self.keys.capacity() * std::mem::size_of::<(TopicIdx, Seq, Vec<u8>)>();
        let tails = self.tails.capacity() * std::mem::size_of::<Tail>()
            + self.keyed.capacity() * std::mem::size_of::<KeyedWrite>();
        let key_bytes: usize = self.keys.iter().map(|(_, _, k)| k.capacity()).sum();
        // The copies of strong records kept to write again if the commit fails.
        let strong: u64 = self.strong.iter().flat_map(|(_, r)| r.iter().map(PendingRecord::memory_cost)).sum();
        (replies + touched + stored + crcs + keys + key_bytes + tails) as u64 + strong
    }
}

/// The most storage a record takes once encoded into a log frame: its key and value, and
/// at most 15 bytes of varints (the frame and batch headers are in `STORAGE_FRAME_RESERVE`).
fn record_storage_cost(key_len: usize, value_len: usize) -> u64 {
    (key_len + value_len + 16) as u64
}

/// Storage kept free for the frame and batch headers of the next group commit. It splits
/// each topic's records into frames of at most `frame_raw_max` by memory cost, and two
/// neighbouring frames together pass it, so there are at most two frames per
/// `frame_raw_max` of `pending_bytes`, plus one per topic.
fn storage_frame_reserve(topics: usize, pending_bytes: u64, frame_raw_max: u64) -> u64 {
    if pending_bytes == 0 {
        return 0;
    }
    (topics as u64 + 2 * pending_bytes / frame_raw_max + 2) * log::LOG_FRAME_MIN as u64
}

/// Splits pending records into batches of at most `raw_max` bytes (counted by memory
/// cost, which is more than the encoded size), or one record each if larger: then a sync
/// or fetch read of one `read_chunk_bytes` holds a whole frame, unless one record alone
/// is larger.
fn chunk_records(records: &[PendingRecord], raw_max: usize) -> impl Iterator<Item = &[PendingRecord]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && n < MAX_BATCH_RECORDS {
            let c = rest[n].memory_cost() as usize;
            if n > 0 && bytes + c > raw_max {
                break;
            }
            bytes += c;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

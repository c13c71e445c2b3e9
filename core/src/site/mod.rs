//! Site clusters: edges of one site that share a `cluster` run one Raft group, and writes
//! to `strong` topics go through it.
//!
//! The parts, and where each guarantee is enforced:
//! - [`crate::raft::Raft`] orders strong writes; a write is acknowledged only once its
//!   entry is committed (durable on a majority) and its record is durable in this
//!   member's own log of the topic (the node's group commit), so a minority never
//!   acknowledges one (guarantee 5).
//! - [`StrongState`] is the state machine: applying the committed log gives every strong
//!   record a sequence in the cluster's stream of its topic, in commit order. Every member
//!   computes the same sequence for the same record, and writes it at that offset of its
//!   own topic log ("materialises" it). The leader forwards that log to the gateway under
//!   the cluster's identity (`ClusterConfig::id`), so the gateway's existing exactly-once
//!   rule (one record per origin, topic and sequence) holds across leader changes: a new
//!   leader resends from the gateway's mark, and whatever two leaders both send is the
//!   same record at the same sequence.
//! - [`RaftPersister`] keeps Raft's state in `FileId::Raft` files (format in
//!   [`crate::raft::store`]): persists are written in order, several per fsync, and Raft
//!   hears `persisted` only after the fsync; a failed write is retried as a new generation.
//! - The Raft log is compacted only below entries whose records are durable here *and* at
//!   the gateway (the leader proposes the gateway's marks as `Command::Marks`), so a
//!   member that installs a snapshot never misses a record the gateway lacks.
//! - [`crate::detector::SiteDetector`] watches peers (all-to-all pings) and tells a
//!   member without quorum to refuse strong writes at once with [`NoQuorum`], while
//!   eventual topics go on as before.

pub mod msg;

use crate::config::{ClusterConfig, NodeConfig, SyncDirection};
use crate::detector::{NoQuorum, SiteDetector};
use crate::hlc::Hlc;
use crate::io::FileId;
use crate::memory::{MemoryPart, MemoryUsage};
use crate::raft::store::{self, Recovered};
use crate::raft::{Index, Membership, Persist, Raft, Restored, Snapshot};
use crate::sync::uplink::Uplink;
use crate::types::{Instant, NodeId, Seq, TopicIdx};
use msg::{StrongSnapshot, StrongTopic};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A generation file is rewritten as a new checkpoint once it is this many times
/// `log_bytes_max` (deltas of truncated and compacted entries pile up in it).
pub const RAFT_FILE_BYTES_FACTOR: u64 = 2;
/// Bytes a checkpoint adds to the log it holds: frame headers, the snapshot, the hard state.
pub const CHECKPOINT_OVERHEAD_BYTES: u64 = 64 << 10;
/// Heap bytes of one strong write waiting for commit, and of one remembered forward.
const WAITING_ENTRY_BYTES: u64 = 96;
const FORWARD_ENTRY_BYTES: u64 = 96;
/// What a log entry costs in memory besides its command.
const ENTRY_OVERHEAD_BYTES: u64 = std::mem::size_of::<crate::raft::Entry>() as u64;

/// A member's planned memory: its part `Site`, and the checkpoint of a new Raft generation,
/// written whole. The keyed states of strong keyed topics ride in Raft's snapshot: Raft
/// holds one, a compaction encodes the next beside it (or a restore decodes one, or a
/// message to a lagging member carries a copy), and a new generation writes it.
pub(crate) fn planned(cfg: &NodeConfig, c: &ClusterConfig) -> MemoryUsage {
    let keyed = crate::keyed_checkpoint::site_bytes_max(cfg);
    let mut m = MemoryUsage::default();
    m.set(MemoryPart::Site, planned_bytes(c) + 3 * keyed);
    m.set(MemoryPart::Writes, c.log_bytes_max + CHECKPOINT_OVERHEAD_BYTES + keyed);
    m
}

/// The longest a Raft generation file grows: `RAFT_FILE_BYTES_FACTOR` log limits past its
/// checkpoint, which holds the log, the snapshot (with the strong keyed topics' states) and
/// the hard state.
pub(crate) fn raft_file_bytes_max(cfg: &NodeConfig, c: &ClusterConfig) -> u64 {
    RAFT_FILE_BYTES_FACTOR * c.log_bytes_max + CHECKPOINT_OVERHEAD_BYTES + crate::keyed_checkpoint::site_bytes_max(cfg)
}

/// The most a member holds in memory part `Site`: the log, the Raft state queued behind an
/// fsync (at most the log again), the leader's uncommitted proposals, waiting writes and
/// remembered forwards.
fn planned_bytes(c: &ClusterConfig) -> u64 {
    fixed_bytes(c)
        + 2 * c.log_bytes_max
        + c.raft.uncommitted_bytes_max as u64
        + c.strong_pending_max as u64 * WAITING_ENTRY_BYTES
        + FORWARD_SEEN_MAX as u64 * FORWARD_ENTRY_BYTES
        + c.raft.pending_reads_max as u64 * STRONG_READ_ENTRY_BYTES
        + CHECKPOINT_OVERHEAD_BYTES
}

/// The member itself and its detector's interval windows.
fn fixed_bytes(c: &ClusterConfig) -> u64 {
    std::mem::size_of::<Site>() as u64 + (c.members.len() * c.detector.window_max * 8) as u64
}

/// What one entry of the Raft log costs in memory.
pub fn entry_bytes(e: &crate::raft::Entry) -> u64 {
    ENTRY_OVERHEAD_BYTES + e.size() as u64
}

/// Counters a member keeps for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Strong writes refused at once because this member had no quorum.
    pub refused_no_quorum: u64,
    /// Strong writes refused because no leader was known or the leader refused them.
    pub refused_no_leader: u64,
    /// Strong writes answered `Unconfirmed` (not committed within the timeout).
    pub unconfirmed: u64,
    /// Strong writes acknowledged to their producer on this member.
    pub acknowledged: u64,
    /// Times this member became leader.
    pub elected: u64,
    /// Raft log compactions.
    pub compactions: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
}

/// The strong topics' state machine (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct StrongState {
    /// Per topic index: the next sequence of the cluster's stream.
    pub next_seq: Vec<Seq>,
    /// Per topic index: the gateway holds every record below this.
    pub gw_mark: Vec<Seq>,
    /// Per topic index: the newest record's timestamp. A record is stamped with the
    /// larger of its writer's timestamp and this, so that the cluster's stream never goes
    /// back in time although its writers' clocks differ.
    pub last_hlc: Vec<Hlc>,
    /// Applied records (Raft index, topic, sequence, the topic's `last_hlc` before it),
    /// not yet known to be at the gateway: what a compaction may not drop. Bounded by the
    /// Raft log.
    pub unacked: VecDeque<(Index, TopicIdx, Seq, Hlc)>,
}

impl StrongState {
    pub fn new(topics: usize) -> StrongState {
        StrongState {
            next_seq: vec![0; topics],
            gw_mark: vec![0; topics],
            last_hlc: vec![Hlc::ZERO; topics],
            unacked: VecDeque::new(),
        }
    }

    /// The state a snapshot describes; topics the snapshot names that this node does not
    /// have are ignored (every member of a site must have the same strong topics).
    pub fn restore(cfg: &NodeConfig, snap: &StrongSnapshot) -> StrongState {
        let mut s = StrongState::new(cfg.topics.len());
        for t in &snap.topics {
            if let Some(i) = cfg.topics.iter().position(|c| c.name == t.name) {
                s.next_seq[i] = t.next_seq;
                s.gw_mark[i] = t.gateway_mark;
                s.last_hlc[i] = t.last_hlc;
            }
        }
        s
    }

    /// A record of `topic` written at `hlc` applied at `index`: its sequence in the
    /// cluster's stream, and its timestamp there.
    pub fn assign(&mut self, index: Index, topic: TopicIdx, hlc: Hlc) -> (Seq, Hlc) {
        let t = topic.0 as usize;
        let seq = self.next_seq[t];
        self.next_seq[t] += 1;
        let before = self.last_hlc[t];
        self.last_hlc[t] = before.max(hlc);
        self.unacked.push_back((index, topic, seq, before));
        (seq, self.last_hlc[t])
    }

    pub fn note_marks(&mut self, cfg: &NodeConfig, marks: &[(String, Seq)]) {
        for (name, seq) in marks {
            if let Some(i) = cfg.topics.iter().position(|t| &t.name == name) {
                self.gw_mark[i] = self.gw_mark[i].max(*seq);
            }
        }
    }

    /// The highest index at or below `limit` the log may be compacted to (every record at
    /// or below it is at the gateway), and the snapshot of the state there.
    pub fn compaction_point(&mut self, cfg: &NodeConfig, limit: Index) -> (Index, StrongSnapshot) {
        while let Some(&(index, topic, seq, _)) = self.unacked.front() {
            if index > limit || seq >= self.gw_mark[topic.0 as usize] {
                break;
            }
            self.unacked.pop_front();
        }
        let point = self.unacked.front().map_or(limit, |&(index, ..)| limit.min(index - 1));
        // The state as of `point`: what the first record of the topic after it found.
        let mut next = self.next_seq.clone();
        let mut last = self.last_hlc.clone();
        let mut seen = vec![false; next.len()];
        for &(_, topic, seq, before) in &self.unacked {
            let t = topic.0 as usize;
            if !seen[t] {
                seen[t] = true;
                next[t] = seq;
                last[t] = before;
            }
        }
        let topics = cfg
            .topics
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_strong())
            .map(|(i, t)| StrongTopic {
                name: t.name.clone(),
                next_seq: next[i],
                gateway_mark: self.gw_mark[i],
                last_hlc: last[i],
            })
            .collect();
        (point, StrongSnapshot { topics, keyed: Vec::new() })
    }
}

/// One write of Raft state in flight: the persists it covers, and the generation it
/// starts (a checkpoint), if any.
#[derive(Debug)]
pub(crate) struct RaftWrite {
    pub ids: Vec<u64>,
    pub starts: Option<u64>,
    pub ops_left: u8,
    pub failed: bool,
}

/// Writes Raft's persists to `FileId::Raft` generations, in order, batching those that
/// queue behind an fsync. After a recovery, and after any failed write, the next write
/// starts a new generation with a checkpoint of the whole state, so nothing is ever
/// appended after a torn or failed tail; older generations are deleted once a newer
/// checkpoint is durable.
#[derive(Debug)]
pub(crate) struct RaftPersister {
    pub generation: u64,
    pub needs_checkpoint: bool,
    pub queued: Vec<u64>,
    pub queued_bytes: Vec<u8>,
    pub inflight: Option<RaftWrite>,
    pub retry_at: Option<Instant>,
    /// Generations that exist on storage, oldest first.
    pub on_disk: Vec<u64>,
    /// Bytes written to the current generation (unknown after a recovery, which starts a
    /// new one anyway).
    pub file_len: u64,
}

impl RaftPersister {
    pub fn new(on_disk: Vec<u64>) -> RaftPersister {
        let generation = on_disk.last().copied().unwrap_or(0);
        RaftPersister {
            generation,
            needs_checkpoint: true,
            queued: Vec::new(),
            queued_bytes: Vec::new(),
            inflight: None,
            retry_at: None,
            on_disk,
            file_len: 0,
        }
    }

    /// `file_limit`: past it, the next write starts a new generation (a checkpoint holds
    /// only what the log holds now).
    pub fn queue(&mut self, p: &Persist, file_limit: u64) {
        if self.file_len + self.queued_bytes.len() as u64 > file_limit {
            self.needs_checkpoint = true;
            self.queued_bytes.clear();
        }
        if p.snapshot.is_some() {
            // A new generation: its checkpoint is written from Raft's state at write time,
            // which includes this persist and every one queued before it.
            self.needs_checkpoint = true;
            self.queued_bytes.clear();
        } else if !self.needs_checkpoint {
            store::encode_persist(p, &mut self.queued_bytes);
        }
        self.queued.push(p.id);
    }

    /// The next write to issue, if one is due: `(file, bytes, starts)`.
    pub fn next_write(&mut self, raft: &Raft, now: Instant) -> Option<(FileId, Vec<u8>)> {
        if self.inflight.is_some() || self.queued.is_empty() || self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        self.retry_at = None;
        let ids = std::mem::take(&mut self.queued);
        let (generation, bytes, starts) = if self.needs_checkpoint {
            let g = self.on_disk.last().map_or(self.generation, |&g| g.max(self.generation)) + 1;
            let mut b = Vec::new();
            store::encode_checkpoint(raft.hard_state(), raft.snapshot(), raft.entries(), &mut b);
            self.queued_bytes.clear();
            self.needs_checkpoint = false;
            self.on_disk.push(g);
            self.file_len = b.len() as u64;
            (g, b, Some(g))
        } else {
            let b = std::mem::take(&mut self.queued_bytes);
            self.file_len += b.len() as u64;
            (self.generation, b, None)
        };
        let file = FileId::Raft { generation };
        self.inflight = Some(RaftWrite { ids, starts, ops_left: 2, failed: false });
        Some((file, bytes))
    }

    /// The write's append or sync completed. When both have: the persist ids Raft may now
    /// hear about, and generations to delete (a new checkpoint is durable).
    pub fn completed(
        &mut self,
        ok: bool,
        now: Instant,
        retry_after: crate::types::Duration,
    ) -> Option<(Vec<u64>, Vec<u64>)> {
        let w = self.inflight.as_mut().expect("a raft write is in flight");
        w.failed |= !ok;
        w.ops_left -= 1;
        if w.ops_left > 0 {
            return None;
        }
        let w = self.inflight.take().expect("checked above");
        if w.failed {
            // Nothing of it counts: write everything again, as a new generation, later.
            let mut ids = w.ids;
            ids.append(&mut self.queued);
            self.queued = ids;
            self.queued_bytes.clear();
            self.needs_checkpoint = true;
            self.retry_at = Some(now.saturating_add(retry_after));
            return Some((Vec::new(), Vec::new()));
        }
        let mut obsolete = Vec::new();
        if let Some(g) = w.starts {
            self.generation = g;
            let (old, keep): (Vec<u64>, Vec<u64>) = self.on_disk.iter().partition(|&&x| x < g);
            obsolete = old;
            self.on_disk = keep;
        }
        Some((w.ids, obsolete))
    }
}

/// A strong write taken on this member, waiting for its entry to be applied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Waiting {
    pub req: crate::io::ReqId,
    pub deadline: Instant,
}

/// Forwarded writes the leader has proposed (or refused) in its current term: a
/// duplicated forward is never proposed twice. Bounded; a new term starts it afresh, and
/// a forward is accepted only for the term it names.
#[derive(Debug, Default)]
pub(crate) struct ForwardSeen {
    pub term: u64,
    pub order: VecDeque<(NodeId, Hlc)>,
    pub set: BTreeSet<(NodeId, Hlc)>,
}

/// Forwards remembered per term at most (a forward older than this many later ones is no
/// longer in flight: members hold at most `strong_pending_max` each).
pub const FORWARD_SEEN_MAX: usize = 16_384;

impl ForwardSeen {
    /// Whether `(origin, hlc)` is new in `term` (and now remembered).
    pub fn first_time(&mut self, term: u64, origin: NodeId, hlc: Hlc) -> bool {
        if term != self.term {
            self.term = term;
            self.order.clear();
            self.set.clear();
        }
        if !self.set.insert((origin, hlc)) {
            return false;
        }
        self.order.push_back((origin, hlc));
        if self.order.len() > FORWARD_SEEN_MAX {
            let old = self.order.pop_front().expect("non-empty");
            self.set.remove(&old);
        }
        true
    }
}

/// One member of a site cluster, as the node composes it.
#[derive(Debug)]
pub struct Site {
    pub(crate) cfg: ClusterConfig,
    pub(crate) raft: Raft,
    pub(crate) detector: SiteDetector,
    pub(crate) persister: RaftPersister,
    pub(crate) strong: StrongState,
    pub(crate) waiting: BTreeMap<Hlc, Waiting>,
    pub(crate) forwards: ForwardSeen,
    /// The config the cluster uplink runs with: the cluster's id, only strong topics up.
    pub(crate) sync_cfg: NodeConfig,
    /// The leader's uplink to the gateway for the cluster's stream, and its tag (so a
    /// read issued by an earlier one is not delivered to it).
    pub(crate) uplink: Option<Uplink>,
    pub(crate) uplink_tag: u64,
    /// Every applied index at or below this has its record durable in the topic log.
    pub(crate) durable_applied: Index,
    pub(crate) next_ping: Instant,
    pub(crate) next_marks: Instant,
    pub(crate) stats: SiteStats,
    /// The node's own uplink as last seen (session up, Hellos unanswered): its changes
    /// are the cloud link's outcomes the detector judges.
    pub(crate) cloud_seen: (bool, u32),
    /// The bytes of each entry in Raft's log (mirrored from its persists), and their sum.
    pub(crate) log_sizes: VecDeque<(Index, u64)>,
    pub(crate) log_bytes: u64,
    /// Strong reads waiting, by the context Raft knows them by: for the leader's
    /// confirmation, then (with the index Raft named) for this member to apply up to it.
    /// At most `raft.pending_reads_max` (Raft refuses more).
    pub(crate) strong_reads: BTreeMap<u64, StrongReadWait>,
    pub(crate) next_read_ctx: u64,
}

/// A strong read waiting (`Site::strong_reads`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct StrongReadWait {
    pub req: crate::io::ReqId,
    pub topic: TopicIdx,
    /// Set once the leader confirmed it: answered once this member applied up to it.
    pub index: Option<Index>,
}

/// Heap bytes of one strong read waiting.
const STRONG_READ_ENTRY_BYTES: u64 = 96;

impl Site {
    /// A member starting from what storage held (`recovered`: the newest complete
    /// generation) and the generations found.
    pub fn new(cfg: &NodeConfig, recovered: Option<Recovered>, generations: Vec<u64>, seed: u64, now: Instant) -> Site {
        let c = cfg.cluster.clone().expect("a site needs a cluster config");
        let membership = Membership::of_voters(c.members.iter().copied());
        let (hard, snapshot, log) = match recovered {
            Some(r) => (r.hard, r.snapshot, r.log),
            None => (Default::default(), Snapshot::default(), Vec::new()),
        };
        let strong = match StrongSnapshot::decode(&snapshot.data) {
            Ok(s) => StrongState::restore(cfg, &s),
            Err(e) => panic!("raft snapshot of this member does not decode ({e}); its storage passed its checksum"),
        };
        let durable_applied = snapshot.index;
        let log_sizes: VecDeque<(Index, u64)> = log.iter().map(|e| (e.index, entry_bytes(e))).collect();
        let log_bytes = log_sizes.iter().map(|x| x.1).sum();
        let raft = Raft::new(cfg.id, membership, c.raft.clone(), seed, now, Restored { hard, snapshot, log });
        let detector = SiteDetector::new(cfg.id, c.members.iter().copied().collect(), c.detector, now);
        let mut sync_cfg = cfg.clone();
        sync_cfg.id = c.id;
        for t in &mut sync_cfg.topics {
            if !t.is_strong() {
                t.sync = SyncDirection::Local;
            }
        }
        Site {
            raft,
            detector,
            persister: RaftPersister::new(generations),
            strong,
            waiting: BTreeMap::new(),
            forwards: ForwardSeen::default(),
            sync_cfg,
            uplink: None,
            uplink_tag: 0,
            durable_applied,
            next_ping: now,
            next_marks: now,
            stats: SiteStats::default(),
            log_sizes,
            log_bytes,
            strong_reads: BTreeMap::new(),
            next_read_ctx: 0,
            cloud_seen: (false, 0),
            cfg: c,
        }
    }

    /// Keeps the mirror of the log's sizes in step with one persist (applied in Raft's
    /// order: snapshot, truncation, appends).
    pub(crate) fn note_persist(&mut self, p: &Persist) {
        if let Some(s) = &p.snapshot {
            while self.log_sizes.front().is_some_and(|&(i, _)| i <= s.index) {
                self.log_bytes -= self.log_sizes.pop_front().expect("non-empty").1;
            }
        }
        if let Some(t) = p.truncate_from {
            while self.log_sizes.back().is_some_and(|&(i, _)| i >= t) {
                self.log_bytes -= self.log_sizes.pop_back().expect("non-empty").1;
            }
        }
        for e in &p.entries {
            let b = entry_bytes(e);
            self.log_sizes.push_back((e.index, b));
            self.log_bytes += b;
        }
        debug_assert_eq!(self.log_sizes.len(), self.raft.log_len(), "the size mirror follows Raft's log");
    }

    /// Bytes of the Raft log held in memory.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// What this member holds in memory part `Site`.
    pub fn heap_bytes(&self) -> u64 {
        fixed_bytes(&self.cfg)
            + self.log_bytes
            + self.log_sizes.capacity() as u64 * 16
            + self.persister.queued_bytes.capacity() as u64
            + self.persister.queued.capacity() as u64 * 8
            + self.waiting.len() as u64 * WAITING_ENTRY_BYTES
            + self.forwards.order.len() as u64 * FORWARD_ENTRY_BYTES
            + self.strong_reads.len() as u64 * STRONG_READ_ENTRY_BYTES
            + self.raft.snapshot().data.capacity() as u64
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn stats(&self) -> &SiteStats {
        &self.stats
    }

    pub fn view(&self, now: Instant) -> crate::detector::SiteView {
        self.detector.view(now)
    }

    pub fn no_quorum(&self, now: Instant) -> Option<NoQuorum> {
        self.detector.view(now).no_quorum_error(now)
    }

    /// The cluster uplink, while this member leads.
    pub fn uplink(&self) -> Option<&Uplink> {
        self.uplink.as_ref()
    }

    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.raft.id();
        self.cfg.members.iter().copied().filter(move |&m| m != me)
    }

    /// What the gateway is known to hold of strong topic `t`.
    pub fn gateway_mark(&self, t: TopicIdx) -> Seq {
        self.strong.gw_mark[t.0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Consistency, Role, TopicConfig};

    fn cfg() -> NodeConfig {
        let mut strong = TopicConfig::new("pay", SyncDirection::EdgeToCloud);
        strong.consistency = Consistency::Strong;
        let mut c =
            NodeConfig::new(NodeId(1), Role::Edge, vec![TopicConfig::new("tele", SyncDirection::EdgeToCloud), strong]);
        c.upstream = Some(NodeId(9));
        c.cluster = Some(ClusterConfig::new("s", ClusterConfig::id_of("s"), vec![NodeId(1), NodeId(2), NodeId(3)]));
        c
    }

    #[test]
    fn compaction_stops_before_the_first_record_the_gateway_lacks() {
        let cfg = cfg();
        let mut s = StrongState::new(2);
        let pay = TopicIdx(1);
        for (index, hlc) in [(3, 30), (4, 20), (7, 70), (9, 90)] {
            s.assign(index, pay, Hlc(hlc));
        }
        // Nothing acknowledged: only what precedes the first record may go.
        let (point, snap) = s.compaction_point(&cfg, 10);
        assert_eq!(point, 2);
        let topic = |next_seq, gateway_mark, hlc| StrongTopic {
            name: "pay".into(),
            next_seq,
            gateway_mark,
            last_hlc: Hlc(hlc),
        };
        assert_eq!(snap.topics, vec![topic(0, 0, 0)]);
        s.note_marks(&cfg, &[("pay".into(), 2)]);
        let (point, snap) = s.compaction_point(&cfg, 10);
        assert_eq!(point, 6, "records 0 and 1 (indexes 3, 4) are at the gateway; record 2 at index 7 is not");
        assert_eq!(snap.topics, vec![topic(2, 2, 30)], "record 1 (hlc 20) was stamped 30: the stream never goes back");
        s.note_marks(&cfg, &[("pay".into(), 4)]);
        assert_eq!(s.compaction_point(&cfg, 8).0, 8, "the limit (durable here) binds");
        let (point, snap) = s.compaction_point(&cfg, 10);
        assert_eq!(point, 10);
        assert_eq!(snap.topics, vec![topic(4, 4, 90)]);
        let back = StrongState::restore(&cfg, &snap);
        assert_eq!(back.next_seq, vec![0, 4]);
    }

    #[test]
    fn a_forward_is_proposed_once_per_term() {
        let mut f = ForwardSeen::default();
        assert!(f.first_time(2, NodeId(1), Hlc(5)));
        assert!(!f.first_time(2, NodeId(1), Hlc(5)), "a duplicated forward");
        assert!(f.first_time(2, NodeId(2), Hlc(5)));
        assert!(f.first_time(3, NodeId(1), Hlc(5)), "another term, another leader's decision");
    }
}

//! `Node`: one sans-IO state machine for the roles `edge` and `gateway`, composed of
//! components that own their state, disk requests and memory plans (recovery, the group
//! commit, storage, the HLC bound's writes, sync up, ingest, fetch, the site). The node
//! routes inputs and completions to them and collects what they emit; its own files are
//! this one, `node_sync.rs`, `node_budget.rs` and `node_site.rs` (docs/ARCHITECTURE.md,
//! the component table).
//!
//! Lifecycle: `Node::new` starts in recovery (`recovery::Recovery`), which lists the files
//! storage kept, reads the HLC bound, scans the logs and cuts any torn tail; only then does
//! the node accept produces and messages. Until then produces are refused as `Recovering`
//! and messages are dropped (peers resend).

use crate::checkpoint::{CheckpointKind, CheckpointWriter};
use crate::codec::{BatchDecoder, BatchEncoder, MAX_KEY_BYTES};
use crate::commit::{CommitFailed, CommitStep, Committed, GroupCommit, PendingRecord};
use crate::config::{ConfigError, NodeConfig, Role};
use crate::effects::{Ctx, Fx, Owner};
use crate::fetch::{FetchRequest, Fetches};
use crate::hlc::{ClockStart, Hlc, HlcClock};
use crate::hold::MessageHold;
use crate::io::{DiskError, DiskOpId, DiskResponse, Event, FetchError, Input, Output, ProduceAck, ProduceError, ReqId};
use crate::keyed::{KeyedError, KeyedState, OpKind};
use crate::keyed_fanout::KeyedCopy;
use crate::keyed_reads::{ReadConsistency, ReadRefused, ReadStamp};
use crate::keyed_topics::{KeyedCounters, KeyedTopics};
use crate::log::TopicLog;
use crate::meta::{self, BoundWriter};
use crate::recovery::{Recovered, Recovery, RecoveryCx};
use crate::resources::{self, MemoryPlan};
use crate::space::Space;
use crate::sync::downlinks::Downlinks;
use crate::sync::ingest::Ingest;
use crate::sync::uplink::Uplink;
use crate::types::{Duration, Instant, NodeId, Now, Seq, TopicIdx};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;

#[path = "node_budget.rs"]
mod node_budget;
#[path = "node_retention.rs"]
mod node_retention;
#[path = "node_site.rs"]
mod node_site;
#[path = "node_sync.rs"]
mod node_sync;

/// Output queue slots kept between calls; a larger queue is shrunk once drained.
const OUTPUT_QUEUE_KEPT: usize = 64;

/// The seed of every random choice a node makes (session ids, backoff jitter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSeed(pub u64);

#[derive(Debug)]
enum Phase {
    Recovering(Box<Recovery>),
    Running,
}

/// Counters a node keeps for reports and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub hlc_rejected: u64,
    pub sessions_opened: u64,
    pub retransmits: u64,
    pub sync_reads: u64,
    pub sync_read_bytes: u64,
    pub sync_records_sent: u64,
    pub sync_records_resent: u64,
    pub sync_bytes_sent: u64,
    pub duplicates_dropped: u64,
    pub gaps_refused: u64,
    /// Batches kept beyond a gap until it filled (see `sync::ingest`).
    pub batches_kept: u64,
    pub commits: u64,
    pub commit_failures: u64,
    pub segments_deleted: u64,
    pub corrupted_skipped: u64,
    /// Records evicted before the gateway acknowledged them (lossy policies only).
    pub evicted_unsynced: u64,
    /// Segments evicted whose records the gateway held, to make room.
    pub evicted_synced_segments: u64,
    /// Produces refused because the storage budget was full and nothing more could go.
    pub storage_refused: u64,
    /// Produces refused while storage reported no space.
    pub device_full_refused: u64,
    /// Gateway: Data refused for lack of storage (the edge resends).
    pub gateway_storage_refused: u64,
    /// Times storage reported no space.
    pub device_full_events: u64,
}

/// The counts of `NodeStats` that belong to no component.
#[derive(Clone, Debug, Default)]
struct Counters {
    commits: u64,
    commit_failures: u64,
    storage_refused: u64,
    device_full_refused: u64,
}

/// An Outpost node. See the crate docs for the driver's rule.
#[derive(Debug)]
pub struct Node {
    cfg: NodeConfig,
    rng: Xoshiro256PlusPlus,
    now: Now,
    phase: Phase,
    logs: Vec<TopicLog>,
    /// The storage budget, eviction, retention and the device-full state.
    space: Space,
    plan: MemoryPlan,
    hlc: HlcClock,
    /// Messages waiting for the clock to issue a timestamp (see `hold`).
    held: MessageHold,
    /// Persists the clock's bound in the meta log.
    bound: BoundWriter,
    /// A gateway's checkpoints of its marks, for its retention (`crate::marks`).
    marks: Option<CheckpointWriter>,
    /// Checkpoints of the keyed states, so that their logs may be deleted
    /// (`crate::keyed_checkpoint`).
    keyed_checkpoints: Option<CheckpointWriter>,
    /// The produce queue, the group commit and the rolls of a full device.
    commit: GroupCommit,
    fx: Fx,
    uplink: Option<Uplink>,
    /// The receiver: a gateway's of its edges' streams, an edge's of its gateway's
    /// `cloud-to-edge` streams.
    ingest: Option<Ingest>,
    /// A gateway's senders of `cloud-to-edge` topics, one per edge.
    downlinks: Option<Downlinks>,
    /// This edge's part in its site cluster, once recovered (see `site`).
    site: Option<Box<crate::site::Site>>,
    seed: u64,
    fetches: Fetches,
    next_housekeeping: Instant,
    /// What the node counts itself; the components count the rest (`Node::stats`).
    counters: Counters,
    /// The keyed topics' states, fed with what the log makes durable.
    keyed: KeyedTopics,
    /// zstd contexts, kept because creating one costs more than a small batch.
    enc: BatchEncoder,
    dec: BatchDecoder,
}

impl Node {
    /// Whether a node can run with `cfg`: its own rules ([`NodeConfig::validate`]), then
    /// its budgets ([`resources::check_budgets`]). The error names the field and what to
    /// change.
    pub fn check_config(cfg: &NodeConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        resources::check_budgets(cfg, &Node::plan(cfg))
    }

    /// A node over storage that may hold the files of an earlier run. Recovery begins at
    /// once: the first output is a `List` request.
    ///
    /// # Panics
    /// If `cfg` does not pass [`Node::check_config`]: shells check first and report.
    pub fn new(cfg: NodeConfig, seed: NodeSeed, now: Now) -> Node {
        if let Err(e) = Node::check_config(&cfg) {
            panic!("invalid node config: {e}");
        }
        let n = cfg.topics.len();
        let mut fx = Fx::default();
        let recovery = Recovery::start(&mut fx);
        let logs = (0..n).map(|i| TopicLog::new(TopicIdx(i as u16))).collect();
        let (hlc, _) = HlcClock::recover(None, now.wall_ms, cfg.hlc);
        Node {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed.0),
            now,
            phase: Phase::Recovering(Box::new(recovery)),
            logs,
            space: Space::new(&cfg),
            plan: Node::plan(&cfg),
            hlc,
            held: MessageHold::default(),
            bound: BoundWriter::recovered(&[]),
            marks: None,
            keyed_checkpoints: None,
            commit: GroupCommit::new(n),
            fx,
            uplink: None,
            ingest: None,
            downlinks: None,
            site: None,
            seed: seed.0,
            fetches: Fetches::default(),
            next_housekeeping: now.mono,
            counters: Counters::default(),
            keyed: KeyedTopics::new(&cfg),
            enc: BatchEncoder::new(),
            dec: BatchDecoder::new(),
            cfg,
        }
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running)
    }

    /// The merged state of keyed topic `topic` (both halves of a bidirectional topic give
    /// the same), as this node holds it: what an `eventual` read answers.
    pub fn keyed(&self, topic: TopicIdx) -> Option<&KeyedState> {
        self.keyed.state(topic)
    }

    /// On a top gateway, the edges' writes of keyed topic `topic` stored here and not yet
    /// copied for the other edges (docs/KEYED.md, Reaching every edge).
    pub fn keyed_copies_waiting(&self, topic: TopicIdx) -> u64 {
        self.keyed.copies_waiting_of(topic)
    }

    /// What the keyed states did since this node started (recovery's merges included).
    pub fn keyed_counters(&self) -> KeyedCounters {
        self.keyed.counters
    }

    /// Checkpoints of the keyed states made durable since the node started
    /// (`crate::keyed_checkpoint`).
    pub fn keyed_checkpoints_written(&self) -> u64 {
        self.keyed_checkpoints.as_ref().map_or(0, |k| k.written)
    }

    /// Checkpoints of the keyed states whose write or sync failed since the node started:
    /// their segments stay until one is durable.
    pub fn keyed_checkpoints_failed(&self) -> u64 {
        self.keyed_checkpoints.as_ref().map_or(0, |k| k.failed)
    }

    /// The value of a write of `kind` to `key` of keyed topic `topic` made at this node:
    /// the operation with what this node has seen of the key (so it overwrites every
    /// version here, siblings included), to produce as the record's value. A gateway's
    /// writes are the side `cloud-wins` prefers.
    pub fn keyed_prepare(&self, topic: TopicIdx, key: &[u8], kind: OpKind<'_>) -> Result<Vec<u8>, KeyedError> {
        let op = self.keyed.prepare(topic, key, kind, self.cfg.role == Role::Gateway)?;
        let mut value = Vec::new();
        op.encode(&mut value);
        Ok(value)
    }

    /// Decides a read of keyed topic `topic` at consistency `read`, made at wall time
    /// `wall_ms`: what the answer states besides the value (`Node::keyed` is the value),
    /// or why it is not answered at that consistency (docs/KEYED.md, "Reads"). The read's
    /// time is never behind a timestamp the node issued or took. `None`: not keyed.
    pub fn keyed_read(
        &self,
        topic: TopicIdx,
        read: ReadConsistency<'_>,
        wall_ms: u64,
    ) -> Option<Result<ReadStamp, ReadRefused>> {
        let as_of_ms = wall_ms.max(self.now.wall_ms).max(self.hlc.last().physical_ms());
        self.keyed.decide_read(&self.cfg, topic, as_of_ms, read)
    }

    pub fn hlc(&self) -> Hlc {
        self.hlc.last()
    }

    pub fn log(&self, topic: TopicIdx) -> &TopicLog {
        &self.logs[topic.0 as usize]
    }

    pub fn uplink(&self) -> Option<&Uplink> {
        self.uplink.as_ref()
    }

    /// The uplink's state per stream (an edge once recovered), for `outpost sync status`.
    pub fn sync_status(&self) -> Option<crate::sync::uplink::UplinkStatus> {
        self.uplink.as_ref().map(|u| u.status(&self.logs))
    }

    pub fn ingest(&self) -> Option<&Ingest> {
        self.ingest.as_ref()
    }

    /// A gateway's senders of `cloud-to-edge` topics, if it has such topics.
    pub fn downlinks(&self) -> Option<&Downlinks> {
        self.downlinks.as_ref()
    }

    /// This edge's part in its site cluster (once recovered), if it is a member of one.
    pub fn site(&self) -> Option<&crate::site::Site> {
        self.site.as_deref()
    }

    pub fn stats(&self) -> NodeStats {
        let c = &self.counters;
        let mut s = NodeStats {
            commits: c.commits,
            commit_failures: c.commit_failures,
            storage_refused: c.storage_refused,
            device_full_refused: c.device_full_refused,
            ..NodeStats::default()
        };
        s.hlc_rejected = self.hlc.rejected_remote();
        s.evicted_unsynced = self.space.evicted_unsynced();
        s.segments_deleted = self.space.stats.segments_deleted;
        s.evicted_synced_segments = self.space.stats.evicted_synced_segments;
        s.device_full_events = self.space.stats.device_full_events;
        let mut sent = self.uplink.as_ref().map(|u| u.counters).unwrap_or_default();
        if let Some(d) = &self.downlinks {
            sent.add(&d.stats().sent);
        }
        s.sessions_opened = sent.sessions_opened;
        s.retransmits = sent.retransmits;
        s.sync_reads = sent.reads;
        s.sync_read_bytes = sent.read_bytes;
        s.sync_records_sent = sent.records_sent;
        s.sync_records_resent = sent.records_resent;
        s.sync_bytes_sent = sent.bytes_sent;
        s.corrupted_skipped = sent.corrupted_skipped;
        if let Some(g) = &self.ingest {
            s.duplicates_dropped = g.duplicates_dropped;
            s.gaps_refused = g.gaps_refused;
            s.batches_kept = g.batches_kept;
            s.gateway_storage_refused = g.storage_refused;
        }
        s
    }

    /// Records on this edge the gateway has not acknowledged, over all topics that sync up;
    /// on a top gateway, edges' keyed writes not yet copied for the other edges.
    pub fn unsynced_records(&self) -> u64 {
        let copies = self.keyed.copies_waiting();
        let Some(u) = &self.uplink else { return copies };
        copies + self.logs.iter().map(|l| u.backlog(l.topic, l)).sum::<u64>()
    }

    /// The next output, if any. Drain until `None` after every `handle`.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.fx.out.pop_front();
        if out.is_none() && self.fx.out.capacity() > OUTPUT_QUEUE_KEPT {
            // A group commit's replies may have grown the queue to thousands of slots; do
            // not hold them until the next burst.
            self.fx.out.shrink_to(OUTPUT_QUEUE_KEPT);
        }
        out
    }

    /// When to call [`Node::handle_timeout`] next, if anything is scheduled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_running() {
            return None;
        }
        let up = self.uplink.as_ref().and_then(|u| u.poll_timeout(&self.cfg.sync, &self.logs));
        let t = up.map_or(self.next_housekeeping, |t| t.min(self.next_housekeeping));
        let down = self.downlinks.as_ref().and_then(|d| d.poll_timeout(&self.cfg, &self.logs));
        let t = down.map_or(t, |d| d.min(t));
        // A roll that failed is tried again after the device-full wait, messages or not.
        let t = self.space.poll_timeout(self.now.mono).map_or(t, |r| r.min(t));
        // While the clock waits after a restart: wake when it asks for a bound and when
        // the wait ends (held messages and refused produces depend on it).
        let wall = self.now.wall_ms;
        let clock = self.hlc.wake_at_ms(wall).map(|at| self.now.mono.saturating_add(Duration::from_millis(at - wall)));
        let t = clock.map_or(t, |c| c.min(t));
        Some(self.site_poll_timeout().map_or(t, |s| s.min(t)))
    }

    fn set_now(&mut self, now: Now) {
        assert!(now.mono >= self.now.mono, "monotonic time went backwards: {:?} < {:?}", now.mono, self.now.mono);
        self.now = now;
    }

    /// Timers are due.
    pub fn handle_timeout(&mut self, now: Now) {
        self.set_now(now);
        if !self.is_running() {
            return;
        }
        if now.mono >= self.next_housekeeping {
            self.next_housekeeping = now.mono.saturating_add(self.cfg.log.retention_check_interval);
            self.apply_retention();
            if let Some(g) = &mut self.ingest {
                g.expire_sessions(now.mono, &self.cfg);
            }
        }
        if self.space.roll_due(now.mono) {
            self.reclaim_full_device();
        }
        self.site_tick();
        self.after_input();
    }

    /// One input.
    pub fn handle(&mut self, now: Now, input: Input) {
        self.set_now(now);
        match input {
            Input::Produce { req, topic, key, value } => self.on_produce(req, topic, key, value),
            Input::Message { from, bytes } => self.on_message(from, bytes),
            Input::DiskDone { id, result } => self.on_disk_done(id, result),
            Input::Fetch { req, topic, from, max_records, max_bytes } => {
                self.on_fetch(req, topic, from, max_records, max_bytes)
            }
            Input::Control(c) => self.on_control(c),
            Input::StrongRead { req, topic } => self.site_strong_read(req, topic),
        }
        self.after_input();
    }

    fn after_input(&mut self) {
        if !self.is_running() {
            return;
        }
        self.release_held();
        let wall = self.now.wall_ms;
        self.bound.persist(&mut self.fx, &mut self.hlc, wall);
        if self.commit.has_unstamped() && !self.hlc.behind_wall(wall) {
            let hlc = &mut self.hlc;
            self.commit.stamp(|| hlc.now(wall).ok());
        }
        self.site_step();
        self.hand_keyed_copies();
        let site_applied = self.site.as_ref().map(|s| s.raft.applied_index());
        // A sender waiting at its log's end (the edge's, the site's, a gateway's senders
        // down) takes what the commit writes there from it, not from the disk once it is
        // durable: the commit copies a topic's write once, if one of them has room for it.
        let chunk = u64::from(self.cfg.log.read_chunk_bytes);
        // (Asked only of a commit about to start: a gateway may have many senders down.)
        let (logs, idle) = (&self.logs, self.commit.is_idle());
        let starts = idle && self.commit.has_queued();
        let (mut follows, mut most) = (Vec::new(), Vec::new());
        if starts {
            let senders = Self::senders_of(&mut self.uplink, &mut self.site, &mut self.downlinks);
            follows = senders.map(|u| u.follows(logs, chunk)).collect::<Vec<_>>();
            most = (0..self.logs.len()).map(|t| follows.iter().map(|f| f[t]).max().unwrap_or(0)).collect();
        }
        self.commit.start(&mut self.fx, &self.cfg, &mut self.logs, &mut self.enc, (site_applied, &most));
        let tails = if idle { self.commit.tail_sizes() } else { Vec::new() };
        if !tails.is_empty() {
            for (u, f) in self.log_senders_mut().zip(&follows) {
                u.tails_taken(&tails, f);
            }
        }
        if let Some(u) = &mut self.uplink {
            let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
            u.pump(&mut cx, &self.logs, &mut self.rng, (&mut self.enc, &mut self.dec));
        }
        if let Some(d) = &mut self.downlinks {
            let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
            d.pump(&mut cx, &self.logs, &mut self.rng, (&mut self.enc, &mut self.dec));
        }
        self.site_note_cloud();
        self.site_pump_uplink();
    }

    /// A top gateway's copies of edges' keyed writes go into the commit about to start,
    /// as its own records of the half that comes down, while the produce buffer and the
    /// storage budget take them (as they take produces, whose place they take); the rest
    /// wait for the next commit. Only into a commit about to start, so that a failed one
    /// carried every copy handed since the last durable one (`keyed_fanout`).
    fn hand_keyed_copies(&mut self) {
        if !self.commit.is_idle() || self.commit.has_unstamped() {
            return;
        }
        let wall = self.now.wall_ms;
        while let Some(c) = self.keyed.take_copy(&mut self.dec) {
            let record = PendingRecord { req: None, hlc: Hlc::ZERO, key: Some(c.key), value: c.value, strong: None };
            let need = self.commit.storage_need(&self.cfg, &record);
            let room = self.commit.check_room(&self.cfg, &record).is_ok()
                && !self.space.refuses_writes(self.now.mono)
                && self.with_space(|s, cx| s.make_room(cx, c.down, need));
            let hlc = if room { self.hlc.now(wall).ok() } else { None };
            let Some(hlc) = hlc else {
                let PendingRecord { key, value, .. } = record;
                let key = key.expect("a copy has its write's key");
                self.keyed.put_back_copy(KeyedCopy { down: c.down, key, value });
                return;
            };
            self.commit.push(c.down, PendingRecord { hlc, ..record });
        }
    }

    /// Every sender that reads this node's logs: its uplink, its site's, and its senders
    /// down to edges, always in that order.
    fn log_senders_mut(&mut self) -> impl Iterator<Item = &mut Uplink> {
        Self::senders_of(&mut self.uplink, &mut self.site, &mut self.downlinks)
    }

    /// `log_senders_mut` from the fields, so that the logs can be lent beside them.
    fn senders_of<'a>(
        uplink: &'a mut Option<Uplink>,
        site: &'a mut Option<Box<crate::site::Site>>,
        downlinks: &'a mut Option<Downlinks>,
    ) -> impl Iterator<Item = &'a mut Uplink> {
        let site = site.as_mut().and_then(|s| s.uplink.as_mut());
        uplink.iter_mut().chain(site).chain(downlinks.iter_mut().flat_map(Downlinks::senders_mut))
    }

    fn reply(&mut self, req: ReqId, result: Result<ProduceAck, ProduceError>) {
        self.fx.out.push_back(Output::Reply { req, result });
    }

    fn on_produce(&mut self, req: ReqId, topic: TopicIdx, key: Option<Vec<u8>>, value: Vec<u8>) {
        if topic.0 as usize >= self.cfg.topics.len() {
            return self.reply(req, Err(ProduceError::UnknownTopic(topic)));
        }
        // A topic's log at a node holds what is written there or what arrives there,
        // never both (the receiver's marks are the log's end, see `finish_recovery`).
        if !self.cfg.writes(&self.cfg.topics[topic.0 as usize]) {
            return self.reply(req, Err(ProduceError::NotAccepted));
        }
        let peer_refuses = self.uplink.as_ref().is_some_and(|u| u.not_placed(topic));
        if let Some(why) = self.cfg.placement_refusal(&self.cfg.topics[topic.0 as usize], peer_refuses) {
            return self.reply(req, Err(ProduceError::Invalid(why)));
        }
        if !self.is_running() {
            return self.reply(req, Err(ProduceError::Recovering));
        }
        if let Err(why) = self.keyed.check_produce(topic, key.as_deref(), &value) {
            return self.reply(req, Err(ProduceError::Invalid(why)));
        }
        if let Some(why) = self.commit.poisoned() {
            let e = DiskError::Io(why.to_string());
            return self.reply(req, Err(ProduceError::Storage(e)));
        }
        let key_len = key.as_ref().map_or(0, Vec::len);
        if key_len > MAX_KEY_BYTES {
            return self.reply(req, Err(ProduceError::TooLarge { what: "key", len: key_len, max: MAX_KEY_BYTES }));
        }
        // At most MAX_VALUE_BYTES (`NodeConfig::validate`).
        let value_max = self.cfg.log.value_bytes_max as usize;
        if value.len() > value_max {
            return self.reply(req, Err(ProduceError::TooLarge { what: "value", len: value.len(), max: value_max }));
        }
        if self.cfg.topics[topic.0 as usize].is_strong() {
            return self.site_produce(req, topic, key, value);
        }
        let record = PendingRecord { req: Some(req), hlc: Hlc::ZERO, key, value, strong: None };
        if let Err(e) = self.commit.check_room(&self.cfg, &record) {
            return self.reply(req, Err(e));
        }
        if self.space.refuses_writes(self.now.mono) {
            self.counters.device_full_refused += 1;
            let e = self.storage_full(true);
            return self.reply(req, Err(e));
        }
        // The record, and the frame headers the commit may need for it. (Eviction comes
        // before the timestamp, so a produce then refused for its clock may have evicted:
        // the room is used by the next produce.)
        let need = self.commit.storage_need(&self.cfg, &record);
        if !self.with_space(|s, cx| s.make_room(cx, topic, need)) {
            self.counters.storage_refused += 1;
            let e = self.storage_full(false);
            return self.reply(req, Err(e));
        }
        let wall = self.now.wall_ms;
        if self.commit.has_unstamped() || self.hlc.waits_for_bound(wall) {
            // Stamped once the next bound is durable (`after_input` asked for it), from the
            // wall clock rather than from a bound it passed while the node was idle (a
            // last-write-wins merge would otherwise rank this write below older ones), and
            // not refused for a bound one fsync away (a new node's first).
            self.commit.push_unstamped(topic, record);
            return;
        }
        let hlc = match self.hlc.now(wall) {
            Ok(h) => h,
            Err(e) => return self.reply(req, Err(ProduceError::Clock(e))),
        };
        self.commit.push(topic, PendingRecord { hlc, ..record });
    }

    fn on_fetch(&mut self, req: ReqId, topic: TopicIdx, from: Seq, max_records: u32, max_bytes: u32) {
        let result = if !self.is_running() {
            Err(FetchError::Recovering)
        } else if topic.0 as usize >= self.logs.len() {
            Err(FetchError::UnknownTopic(topic))
        } else {
            let log = &self.logs[topic.0 as usize];
            let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
            let r = FetchRequest { req, topic, from, max_records, max_bytes };
            return self.fetches.start(&mut cx, r, log);
        };
        self.fx.out.push_back(Output::Fetched { req, result });
    }

    fn on_disk_done(&mut self, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        match self.fx.complete(id) {
            Owner::Recovery => {
                let Phase::Recovering(r) = &mut self.phase else { panic!("recovery request completed while running") };
                let mut cx =
                    RecoveryCx { cfg: &self.cfg, wall_ms: self.now.wall_ms, fx: &mut self.fx, dec: &mut self.dec };
                if let Some(recovered) = r.on_disk(&mut cx, id, result) {
                    self.finish_recovery(recovered);
                }
            }
            Owner::Commit => match self.commit.on_disk(&mut self.fx, &self.cfg, &mut self.logs, result) {
                CommitStep::Pending => {}
                CommitStep::Committed(c) => self.committed(c),
                CommitStep::Failed(f) => self.commit_failed(f),
                // A newest segment the next hop holds may be rolled now; after a roll, the
                // old segments are no longer the newest: they go now.
                CommitStep::RolledBack | CommitStep::Rolled { ok: true } => self.reclaim_full_device(),
                CommitStep::Rolled { ok: false } => self.space.on_roll_failed(self.now.mono),
            },
            Owner::Clock => {
                // Free what the next hop holds, as for a commit refused for space (once per
                // wait: the bound is tried again at every input).
                if self.bound.on_disk(&mut self.fx, &mut self.hlc, id, result) {
                    if !self.space.refuses_writes(self.now.mono) {
                        self.on_device_full(meta::META_RECORD_BYTES);
                    } else {
                        self.reclaim_full_device();
                    }
                }
            }
            Owner::Unheeded => {}
            Owner::Marks => self.marks_done(id, result),
            Owner::KeyedCheckpoint => self.keyed_checkpoint_done(id, result),
            Owner::Site => self.site_write_done(result.is_ok()),
            Owner::Fetch => self.fetch_read_done(id, result),
            Owner::Uplink { tag } => self.uplink_read_done(tag, id, result),
        }
    }

    // ---- recovery ----

    fn finish_recovery(&mut self, r: Recovered) {
        self.phase = Phase::Running;
        self.logs = r.logs;
        self.commit.set_key_index(r.key_index);
        self.keyed = r.keyed;
        let deferred = self.keyed.copies_deferred();
        if deferred > 0 {
            self.fx.event(Event::KeyedCopiesDeferred { batches: deferred });
        }
        let (hlc, start) = HlcClock::recover(r.meta_bound, self.now.wall_ms, self.cfg.hlc);
        self.hlc = hlc;
        match start {
            ClockStart::WaitForWall { bound_ms, wait_ms } => self.fx.event(Event::ClockWaits { bound_ms, wait_ms }),
            ClockStart::FromBound { bound_ms, behind_ms } => {
                self.fx.event(Event::ClockAheadOfWall { bound_ms, behind_ms })
            }
            ClockStart::New | ClockStart::FromWall => {}
        }
        self.bound = BoundWriter::recovered(&r.meta_generations);
        let marks = (CheckpointKind::Marks, &r.marks_generations[..], BTreeMap::new());
        self.marks =
            crate::marks::written_by(&self.cfg).then(|| CheckpointWriter::recovered(marks.0, marks.1, marks.2));
        let keyed = (CheckpointKind::Keyed, &r.keyed_generations[..], r.keyed_covered);
        self.keyed_checkpoints = self.keyed.any().then(|| CheckpointWriter::recovered(keyed.0, keyed.1, keyed.2));
        match self.cfg.role {
            Role::Edge => {
                // Strong topics go up through the site's leader, as the cluster's stream.
                let mut own = self.cfg.clone();
                for t in own.topics.iter_mut().filter(|t| t.is_strong()) {
                    t.sync = crate::config::SyncDirection::Local;
                }
                let gw = self.cfg.upstream;
                self.uplink = gw.map(|g| Uplink::new(&own, g, self.now.mono, &mut self.rng));
                if let Some(u) = &mut self.uplink {
                    u.keepalive = self.cfg.needs_keepalive();
                }
                // A `cloud-to-edge` topic's log here holds only its gateway's stream, at
                // the gateway's sequences: its end is the receiver's durable mark.
                if let Some(g) = gw.filter(|_| self.cfg.topics.iter().any(|t| t.sync.goes_down())) {
                    let marks = (self.cfg.topics.iter().enumerate())
                        .filter(|(_, t)| t.sync.goes_down())
                        .map(|(i, _)| ((g, TopicIdx(i as u16)), self.logs[i].end_offset()))
                        .collect();
                    self.ingest = Some(Ingest::recovered(marks));
                }
                if self.cfg.cluster.is_some() {
                    let seed = self.seed ^ 0x5eed_0f51_7e00;
                    let site = crate::site::Site::new(&self.cfg, r.raft, r.raft_generations, seed, self.now.mono);
                    // Strong keyed topics' states: the snapshot's where it holds more of the
                    // cluster's stream than the keyed checkpoint did; Raft applies the rest.
                    let snap = crate::site::msg::StrongSnapshot::decode(&site.raft().snapshot().data)
                        .expect("Site::new decoded it");
                    for error in self.keyed.restore_site_snapshot(&self.cfg, &snap.keyed, site.cfg.id) {
                        self.fx.event(Event::StorageProblem { detail: error });
                    }
                    self.site = Some(Box::new(site));
                }
            }
            Role::Gateway => {
                let mut marks = r.marks;
                if let Some(up) = self.cfg.upstream {
                    // A middle tier relays its edges' streams up, and receives what comes
                    // down as an edge does: its log of such a topic is the tier above's
                    // stream at its sequences, so the log's end is the mark.
                    let mut u = Uplink::relay(&self.cfg, up, self.now.mono, &mut self.rng);
                    u.keepalive = self.cfg.needs_keepalive();
                    self.uplink = Some(u);
                    for (i, _) in self.cfg.topics.iter().enumerate().filter(|(_, t)| t.sync.goes_down()) {
                        marks.insert((up, TopicIdx(i as u16)), self.logs[i].end_offset());
                    }
                }
                self.ingest = Some(Ingest::recovered(marks));
                if self.cfg.topics.iter().any(|t| t.sync.goes_down()) {
                    self.downlinks = Some(Downlinks::recovered(&self.cfg, r.subscriber_marks));
                }
            }
        }
        self.fx.event(Event::Recovered {
            topics: self.logs.len() as u32,
            records: r.records,
            truncated_bytes: r.truncated_bytes,
        });
    }

    // ---- group commit ----

    fn committed(&mut self, c: Committed) {
        self.counters.commits += 1;
        for k in &c.keyed {
            self.keyed.apply_frames(k.topic, k.base, &k.bytes, &mut self.dec);
        }
        let copies = self.keyed.on_committed();
        if !copies.is_empty() {
            self.fx.event(Event::KeyedCopied { copies });
        }
        if !c.tails.is_empty() {
            let logs = &self.logs;
            let senders = Self::senders_of(&mut self.uplink, &mut self.site, &mut self.downlinks);
            senders.for_each(|u| u.on_committed(&c.tails, logs));
        }
        self.space.on_commit_succeeded();
        if let Some(site) = &mut self.site {
            site.stats.acknowledged += c.strong_acks;
            if let Some(i) = c.site_applied {
                site.durable_applied = site.durable_applied.max(i);
            }
        }
        if let Some(g) = &mut self.ingest {
            let hlc = self.hlc.last();
            g.on_durable(&c.stored, hlc, &self.cfg, &mut self.fx);
            for a in c.stored {
                self.fx.event(Event::Stored {
                    origin: a.identity,
                    topic: a.topic,
                    first_seq: a.base_seq,
                    value_crcs: a.value_crcs,
                    payload_bytes: a.payload_bytes,
                    max_record_hlc: a.max_record_hlc,
                    received_hlc: a.received_hlc,
                    hlc_rejected: a.hlc_rejected,
                    replay: false,
                });
            }
        }
        self.apply_retention();
    }

    fn commit_failed(&mut self, f: CommitFailed) {
        self.counters.commit_failures += 1;
        self.keyed.on_commit_failed();
        self.log_senders_mut().for_each(Uplink::tails_failed);
        if let Some(g) = &mut self.ingest {
            g.on_commit_failed();
        }
        if f.error == DiskError::NoSpace {
            self.on_device_full(f.bytes);
        }
    }
}

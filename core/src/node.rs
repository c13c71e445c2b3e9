//! `Node`: the log, the HLC, the metadata log and the sync state machines composed into
//! one sans-IO state machine, for the roles `edge` and `gateway`.
//!
//! Lifecycle: `Node::new` starts in recovery. It lists the files storage kept, reads the
//! metadata log (HLC bound), scans the newest segment of every topic (on a gateway, every
//! segment, to rebuild the per-stream high-water marks), cuts any torn tail, and only
//! then accepts produces and messages. Until then produces are refused as `Recovering`
//! and messages are dropped (peers resend).

use crate::codec::{BatchDecoder, BatchEncoder, Compression, RecordRef, MAX_BATCH_RECORDS, MAX_KEY_BYTES};
use crate::config::{ConfigError, Eviction, NodeConfig, Role};
use crate::effects::{Ctx, Fx, Op};
use crate::fetch::{FetchRequest, Fetches};
use crate::hlc::{ClockStart, Hlc, HlcClock};
use crate::hold::{Held, MessageHold};
use crate::io::{
    Control, DiskError, DiskOpId, DiskRequest, DiskResponse, Event, FetchError, Input, Output, ProduceAck,
    ProduceError, ReqId,
};
use crate::keys::KeyIndex;
use crate::log::{self, Checkpoint, TopicLog};
use crate::meta::{self, MetaLog};
use crate::recovery::{self, Recovered, Recovery, RecoveryCx};
use crate::resources::{
    self, pending_record_cost, MemoryPart, MemoryPlan, MemoryUsage, NodeSizes, ResourceStatus, TopicUsage, TopicView,
    Victim, VictimKind, META_RESERVE_BYTES, PENDING_ENTRY_BYTES,
};
use crate::sync::ingest::{Accepted, DataIn, Ingest};
use crate::sync::proto::SyncMsg;
use crate::sync::uplink::{ReadAt, Uplink};
use crate::types::{Duration, Instant, NodeId, Now, Seq, TopicIdx};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

#[path = "node_site.rs"]
mod node_site;

/// Output queue slots kept between calls; a larger queue is shrunk once drained.
const OUTPUT_QUEUE_KEPT: usize = 64;

/// The seed of every random choice a node makes (session ids, backoff jitter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSeed(pub u64);

/// A record waiting for the next group commit on an edge.
#[derive(Clone, Debug)]
struct PendingRecord {
    /// Who waits for it (none: a strong record this member materialises for others).
    req: Option<ReqId>,
    hlc: Hlc,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    /// A strong record's sequence in the cluster's stream: its offset in this topic log.
    strong: Option<Seq>,
}

const _: () = assert!(std::mem::size_of::<PendingRecord>() <= PENDING_ENTRY_BYTES);

impl PendingRecord {
    /// What it draws from the produce buffer (memory).
    fn memory_cost(&self) -> u64 {
        pending_record_cost(self.key.as_ref().map_or(0, Vec::capacity), self.value.capacity())
    }

    /// What it reserves of storage until its commit: at most this once encoded.
    fn storage_cost(&self) -> u64 {
        record_storage_cost(self.key.as_ref().map_or(0, Vec::len), self.value.len())
    }
}

/// Storage refused writes: produces wait until `retry_at`, then one commit probes. The
/// state ends at once when the node has freed `needed` bytes since (the write that failed
/// fits again), or when a commit succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DeviceFull {
    retry_at: Instant,
    wait: Duration,
    /// Bytes of the write storage refused.
    needed: u64,
    /// Bytes of segments deleted since.
    freed: u64,
    /// No roll is tried before this (one failed: see `roll_synced`).
    roll_after: Instant,
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
}

#[derive(Debug)]
enum Commit {
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
    pub sync_bytes_sent: u64,
    pub duplicates_dropped: u64,
    pub gaps_refused: u64,
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

/// An Outpost node. See the crate docs for the driver's rule.
#[derive(Debug)]
pub struct Node {
    cfg: NodeConfig,
    rng: Xoshiro256PlusPlus,
    now: Now,
    phase: Phase,
    logs: Vec<TopicLog>,
    pending: Vec<Vec<PendingRecord>>,
    gw_pending: Vec<Vec<Accepted>>,
    pending_bytes: u64,
    /// Storage reserved by records and batches waiting for the next group commit.
    pending_storage: u64,
    device_full: Option<DeviceFull>,
    /// Per topic: records evicted before the gateway acknowledged them.
    evicted_unsynced: Vec<u64>,
    /// Per `compact` topic: the newest sequence of each key.
    key_index: Vec<Option<KeyIndex>>,
    plan: MemoryPlan,
    hlc: HlcClock,
    /// Messages waiting for the clock to issue a timestamp (see `hold`).
    held: MessageHold,
    meta: MetaLog,
    meta_inflight: bool,
    meta_append_error: Option<DiskError>,
    commit: Commit,
    fx: Fx,
    uplink: Option<Uplink>,
    ingest: Option<Ingest>,
    /// This edge's part in its site cluster, once recovered (see `site`).
    site: Option<Box<crate::site::Site>>,
    seed: u64,
    fetches: Fetches,
    next_housekeeping: Instant,
    stats: NodeStats,
    /// zstd contexts, kept because creating one costs more than a small batch.
    enc: BatchEncoder,
    dec: BatchDecoder,
}

impl Node {
    /// What the memory plan must know of `Node` itself (`resources::MemoryPlan::of`).
    pub const SIZES: NodeSizes =
        NodeSizes { node_bytes: std::mem::size_of::<Node>() as u64, scan_job_bytes: recovery::SCAN_JOB_BYTES };

    /// Whether a node can run with `cfg`: its own rules ([`NodeConfig::validate`]), then
    /// its budgets ([`resources::check_budgets`]). The error names the field and what to
    /// change.
    pub fn check_config(cfg: &NodeConfig) -> Result<(), ConfigError> {
        cfg.validate()?;
        resources::check_budgets(cfg, Node::SIZES)
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
            pending: vec![Vec::new(); n],
            gw_pending: vec![Vec::new(); n],
            pending_bytes: 0,
            pending_storage: 0,
            device_full: None,
            evicted_unsynced: vec![0; n],
            key_index: (0..n).map(|_| None).collect(),
            plan: MemoryPlan::of(&cfg, Node::SIZES),
            hlc,
            held: MessageHold::default(),
            meta: MetaLog::recovered(&[]),
            meta_inflight: false,
            meta_append_error: None,
            commit: Commit::Idle,
            fx,
            uplink: None,
            ingest: None,
            site: None,
            seed: seed.0,
            fetches: Fetches::default(),
            next_housekeeping: now.mono,
            stats: NodeStats::default(),
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

    /// This edge's part in its site cluster (once recovered), if it is a member of one.
    pub fn site(&self) -> Option<&crate::site::Site> {
        self.site.as_deref()
    }

    pub fn stats(&self) -> NodeStats {
        let mut s = self.stats.clone();
        s.hlc_rejected = self.hlc.rejected_remote();
        s.evicted_unsynced = self.evicted_unsynced.iter().sum();
        if let Some(u) = &self.uplink {
            s.sessions_opened = u.sessions_opened;
            s.retransmits = u.retransmits;
            s.sync_reads = u.reads;
            s.sync_read_bytes = u.read_bytes;
            s.sync_records_sent = u.records_sent;
            s.sync_bytes_sent = u.bytes_sent;
            s.corrupted_skipped = u.corrupted_skipped;
        }
        if let Some(g) = &self.ingest {
            s.duplicates_dropped = g.duplicates_dropped;
            s.gaps_refused = g.gaps_refused;
            s.gateway_storage_refused = g.storage_refused;
        }
        s
    }

    /// Records on this edge the gateway has not acknowledged, over all topics that sync up.
    pub fn unsynced_records(&self) -> u64 {
        let Some(u) = &self.uplink else { return 0 };
        self.logs.iter().map(|l| u.backlog(l.topic, l)).sum()
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
        // A roll that failed is tried again after the device-full wait, messages or not.
        let t = match self.device_full {
            Some(f) if f.roll_after > self.now.mono => t.min(f.roll_after),
            _ => t,
        };
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
        if self.device_full.is_some_and(|f| f.roll_after <= now.mono) {
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
        }
        self.after_input();
    }

    fn after_input(&mut self) {
        if !self.is_running() {
            return;
        }
        self.release_held();
        self.persist_hlc_bound();
        self.site_step();
        self.start_flush();
        if let Some(u) = &mut self.uplink {
            let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
            u.pump(&mut cx, &self.logs, &mut self.rng);
        }
        self.site_note_cloud();
        self.site_pump_uplink();
    }

    fn reply(&mut self, req: ReqId, result: Result<ProduceAck, ProduceError>) {
        self.fx.out.push_back(Output::Reply { req, result });
    }

    fn on_produce(&mut self, req: ReqId, topic: TopicIdx, key: Option<Vec<u8>>, value: Vec<u8>) {
        if self.cfg.role != Role::Edge {
            return self.reply(req, Err(ProduceError::NotAccepted));
        }
        if !self.is_running() {
            return self.reply(req, Err(ProduceError::Recovering));
        }
        if let Commit::Poisoned(why) = &self.commit {
            let e = DiskError::Io(why.clone());
            return self.reply(req, Err(ProduceError::Storage(e)));
        }
        if topic.0 as usize >= self.cfg.topics.len() {
            return self.reply(req, Err(ProduceError::UnknownTopic(topic)));
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
        let bytes = record.memory_cost();
        let limit = self.cfg.log.pending_bytes_max;
        if self.pending_bytes + bytes > limit {
            let e = ProduceError::Busy { pending_bytes: self.pending_bytes, limit_bytes: limit };
            return self.reply(req, Err(e));
        }
        if self.device_full.is_some_and(|f| self.now.mono < f.retry_at) {
            self.stats.device_full_refused += 1;
            return self.reply(req, Err(self.storage_full(true)));
        }
        // The record, and the frame headers the commit may need for it. (Eviction comes
        // before the timestamp, so a produce then refused for its clock may have evicted:
        // the room is used by the next produce.)
        let frames = self.frame_reserve(self.pending_bytes + bytes) - self.frame_reserve(self.pending_bytes);
        let need = record.storage_cost();
        if !self.make_room(topic, need + frames) {
            self.stats.storage_refused += 1;
            return self.reply(req, Err(self.storage_full(false)));
        }
        let hlc = match self.hlc.now(self.now.wall_ms) {
            Ok(h) => h,
            Err(e) => return self.reply(req, Err(ProduceError::Clock(e))),
        };
        self.pending_bytes += bytes;
        self.pending_storage += need;
        self.pending[topic.0 as usize].push(PendingRecord { hlc, ..record });
    }

    fn on_control(&mut self, c: Control) {
        let now = self.now.mono;
        let Some(u) = &mut self.uplink else { return };
        match c {
            Control::PauseSync => u.set_paused(true),
            Control::ResumeSync => u.set_paused(false),
            Control::SyncNow => u.sync_now(now),
            Control::LinkUp => u.link_up(now),
        }
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

    fn on_message(&mut self, from: NodeId, bytes: Vec<u8>) {
        if !self.is_running() {
            return;
        }
        let m = Held { from, bytes, observed: None };
        // Behind a message waiting for the clock, every message waits: they are handled in
        // the order they came.
        let waiting = if self.held.is_empty() { self.handle_message(m) } else { Some(m) };
        if let Some(m) = waiting {
            self.hold(m);
        }
    }

    /// Holds a message until the clock can issue, if it fits; a gateway shares
    /// `gateway.pending_bytes_max` between held messages and accepted batches not yet
    /// durable (an edge never holds: it stamps no message it receives).
    fn hold(&mut self, m: Held) {
        let room = match &self.ingest {
            Some(g) => self.cfg.gateway.pending_bytes_max.saturating_sub(g.pending_bytes + self.held.bytes()),
            None => 0,
        };
        if let Err(m) = self.held.push_back(m, room) {
            self.fx.event(Event::HeldMessageDropped { from: m.from, bytes: m.bytes.len() as u64 });
        }
    }

    /// Handles the messages held for the clock, in order, as long as it can issue.
    fn release_held(&mut self) {
        while !self.held.is_empty() && self.hlc.can_issue(self.now.wall_ms) {
            let m = self.held.pop_front().expect("not empty");
            if let Some(m) = self.handle_message(m) {
                // Its sender's timestamp put the clock past its bound: a new one first.
                self.held.push_front(m);
                return;
            }
        }
    }

    /// Handles one message; gives it back if it must wait for the clock.
    fn handle_message(&mut self, m: Held) -> Option<Held> {
        let Held { from, bytes, observed } = m;
        if crate::site::msg::is_site_frame(&bytes) {
            self.site_message(from, &bytes);
            return None;
        }
        let msg = match SyncMsg::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.fx.event(Event::BadMessage { from, error: e.to_string() });
                return None;
            }
        };
        let remote = match &msg {
            SyncMsg::Hello { hlc, .. }
            | SyncMsg::Welcome { hlc, .. }
            | SyncMsg::Data { hlc, .. }
            | SyncMsg::Ack { hlc, .. }
            | SyncMsg::Skip { hlc, .. } => Some(*hlc),
            SyncMsg::Reset { .. } => None,
        };
        let rejected = match (observed, remote) {
            (Some(rejected), _) => rejected,
            (None, Some(h)) if self.hlc.observe(self.now.wall_ms, h).is_err() => {
                self.fx.event(Event::HlcRejected { from, remote: h });
                true
            }
            (None, _) => false,
        };
        // The timestamp that proves a Data batch happened before its storage here. When
        // the clock cannot issue it (its bound lapsed while idle, or it waits after a
        // restart), the message waits for it instead of being dropped.
        let received = match (&msg, self.cfg.role) {
            (SyncMsg::Data { .. }, Role::Gateway) => match self.hlc.now(self.now.wall_ms) {
                Ok(h) => h,
                Err(_) => return Some(Held { from, bytes, observed: Some(rejected) }),
            },
            _ => Hlc::ZERO,
        };
        match (self.cfg.role, msg) {
            (Role::Edge, msg) => {
                if self.site_uplink_message(from, &msg) {
                    let site = self.site.as_mut().expect("routed to the site's uplink");
                    let u = site.uplink.as_mut().expect("routed to the site's uplink");
                    self.fx.send_as = Some(site.cfg.id);
                    u.on_message(msg, self.now.mono, &self.logs, &mut self.fx);
                    self.fx.send_as = None;
                    self.apply_retention();
                } else if let Some(u) = &mut self.uplink {
                    if from == u.gateway() {
                        u.on_message(msg, self.now.mono, &self.logs, &mut self.fx);
                        self.apply_retention();
                    }
                }
            }
            (Role::Gateway, SyncMsg::Hello { origin, session, topics, .. }) => {
                let g = self.ingest.as_mut().expect("a running gateway has ingest");
                let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
                g.on_hello(&mut cx, from, origin, session, topics);
            }
            (Role::Gateway, SyncMsg::Data { session, topic, batches, .. }) => {
                let room =
                    if self.device_full.is_some_and(|f| self.now.mono < f.retry_at) { 0 } else { self.storage_room() };
                // Held messages share the pending budget with accepted batches.
                let pending_max = self.cfg.gateway.pending_bytes_max.saturating_sub(self.held.bytes());
                let g = self.ingest.as_mut().expect("a running gateway has ingest");
                let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: received, fx: &mut self.fx };
                let data = DataIn { from, session, topic: &topic, batches, hlc_rejected: rejected };
                let outcome = g.on_data(&mut cx, data, (room, pending_max), (&mut self.enc, &mut self.dec));
                for a in outcome.accepted {
                    self.pending_storage += a.batch.len() as u64 + log::LOG_FRAME_OVERHEAD as u64;
                    self.gw_pending[a.topic.0 as usize].push(a);
                }
            }
            (Role::Gateway, SyncMsg::Skip { session, topic, from: f, to, reason, .. }) => {
                let g = self.ingest.as_mut().expect("a running gateway has ingest");
                let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
                g.on_skip(&mut cx, from, session, &topic, (f, to), reason);
            }
            (Role::Gateway, _) => {}
        }
        None
    }

    fn on_disk_done(&mut self, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        let op = self.fx.complete(id);
        match op {
            Op::List | Op::RecoveryRead | Op::RecoveryTruncate | Op::RecoverySuccessor { .. } => {
                let Phase::Recovering(r) = &mut self.phase else { panic!("recovery request completed while running") };
                let mut cx =
                    RecoveryCx { cfg: &self.cfg, wall_ms: self.now.wall_ms, fx: &mut self.fx, dec: &mut self.dec };
                if let Some(recovered) = r.on_disk(&mut cx, op, result) {
                    self.finish_recovery(recovered);
                }
            }
            Op::Commit => self.on_commit_done(result),
            Op::Rollback => self.on_rollback_done(result),
            Op::Roll => self.on_roll_done(result),
            Op::MetaAppend => self.meta_append_error = result.err(),
            Op::MetaSync { bound } => {
                self.meta_inflight = false;
                match (self.meta_append_error.take(), result) {
                    (None, Ok(_)) => {
                        self.hlc.bound_persisted(bound);
                        for file in self.meta.written() {
                            self.fx.disk(DiskRequest::Delete { file }, Op::MetaDelete);
                        }
                    }
                    (append, _) => {
                        self.hlc.bound_persist_failed();
                        let no_space = append == Some(DiskError::NoSpace);
                        self.meta.write_failed(no_space);
                        if no_space {
                            // No timestamp can be issued until a bound is durable: free what
                            // the gateway holds, as for a commit refused for space (once per
                            // wait: the bound is tried again at every input).
                            if self.device_full.is_none_or(|f| self.now.mono >= f.retry_at) {
                                self.on_device_full(meta::META_RECORD_BYTES);
                            } else {
                                self.reclaim_full_device();
                            }
                        }
                    }
                }
            }
            Op::MetaDelete | Op::RetentionDelete | Op::RaftDelete | Op::Stale => {}
            Op::RaftWrite => self.site_write_done(result.is_ok()),
            Op::FetchRead { req } => {
                let bytes = match &result {
                    Ok(DiskResponse::Read(b)) => Some(b.as_slice()),
                    _ => None,
                };
                let Some(topic) = self.fetches.topic_of(req) else { return };
                let log = &self.logs[topic.0 as usize];
                let chunk = self.cfg.log.read_chunk_bytes;
                self.fetches.on_read(req, bytes, log, chunk, &mut self.dec, &mut self.fx);
            }
            Op::UplinkRead { tag, topic, base, pos, sent } => {
                let own = tag == 0;
                let hlc = if own { self.hlc.last() } else { self.site_uplink_hlc() };
                let (u, cfg) = match (own, &mut self.site) {
                    (true, _) => (self.uplink.as_mut(), &self.cfg),
                    (false, Some(site)) if site.uplink_tag == tag => (site.uplink.as_mut(), &site.sync_cfg),
                    (false, _) => (None, &self.cfg),
                };
                let Some(u) = u else { return };
                let bytes = match result {
                    Ok(DiskResponse::Read(b)) => b,
                    _ => Vec::new(),
                };
                let log = &self.logs[topic.0 as usize];
                if !own {
                    self.fx.send_as = Some(cfg.id);
                }
                let mut cx = Ctx { now: self.now.mono, cfg, hlc, fx: &mut self.fx };
                let at = ReadAt { topic, base, pos, sent };
                u.on_read(&mut cx, at, &bytes, log, (&mut self.enc, &mut self.dec));
                self.fx.send_as = None;
            }
        }
    }

    // ---- recovery ----

    fn finish_recovery(&mut self, r: Recovered) {
        self.phase = Phase::Running;
        self.logs = r.logs;
        self.key_index = r.key_index;
        let (hlc, start) = HlcClock::recover(r.meta_bound, self.now.wall_ms, self.cfg.hlc);
        self.hlc = hlc;
        match start {
            ClockStart::WaitForWall { bound_ms, wait_ms } => self.fx.event(Event::ClockWaits { bound_ms, wait_ms }),
            ClockStart::FromBound { bound_ms, behind_ms } => {
                self.fx.event(Event::ClockAheadOfWall { bound_ms, behind_ms })
            }
            ClockStart::New | ClockStart::FromWall => {}
        }
        self.meta = MetaLog::recovered(&r.meta_generations);
        match self.cfg.role {
            Role::Edge => {
                // Strong topics go up through the site's leader, as the cluster's stream.
                let mut own = self.cfg.clone();
                for t in own.topics.iter_mut().filter(|t| t.is_strong()) {
                    t.sync = crate::config::SyncDirection::Local;
                }
                let gw = self.cfg.upstream;
                self.uplink = gw.map(|g| Uplink::new(&own, g, self.now.mono, &mut self.rng));
                if self.cfg.cluster.is_some() {
                    let seed = self.seed ^ 0x5eed_0f51_7e00;
                    let site = crate::site::Site::new(&self.cfg, r.raft, r.raft_generations, seed, self.now.mono);
                    self.site = Some(Box::new(site));
                }
            }
            Role::Gateway => self.ingest = Some(Ingest::recovered(r.marks)),
        }
        self.fx.event(Event::Recovered {
            topics: self.logs.len() as u32,
            records: r.records,
            truncated_bytes: r.truncated_bytes,
        });
    }

    // ---- HLC bound ----

    fn persist_hlc_bound(&mut self) {
        if self.meta_inflight {
            return;
        }
        let Some(bound) = self.hlc.bound_to_persist(self.now.wall_ms) else {
            return;
        };
        let w = self.meta.write(bound);
        self.meta_inflight = true;
        self.fx.disk(DiskRequest::Append { file: w.file, bytes: w.bytes }, Op::MetaAppend);
        self.fx.disk(DiskRequest::Sync { file: w.file }, Op::MetaSync { bound });
    }

    // ---- group commit ----

    fn start_flush(&mut self) {
        if !matches!(self.commit, Commit::Idle) {
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
        };
        let mut strong_left = false;
        for i in 0..self.logs.len() {
            let mut records = std::mem::take(&mut self.pending[i]);
            if let Some(s0) = records.first().and_then(|p| p.strong) {
                // Strong records go at their offset in the cluster's stream. A gap (this
                // member installed a snapshot: the records below it are at the gateway) is
                // skipped; records after a further gap wait for the next commit.
                let log = &mut self.logs[i];
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
            let log = &mut self.logs[i];
            let base0 = log.end_offset();
            let mut accepted = accepted;
            let mut buf = Vec::new();
            let mut count = 0u64;
            let mut newest_ms = 0;
            let frame_raw_max = self.cfg.log.read_chunk_bytes as usize - log::LOG_FRAME_MIN;
            let compact = self.cfg.topics[i].eviction == Eviction::Compact;
            for chunk in chunk_records(&records, frame_raw_max) {
                let refs: Vec<RecordRef<'_>> =
                    chunk.iter().map(|p| RecordRef { hlc: p.hlc, key: p.key.as_deref(), value: &p.value }).collect();
                let mut batch = Vec::new();
                self.enc.encode(self.cfg.id, base0 + count, &refs, Compression::Zstd, &mut batch);
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
            for a in &mut accepted {
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
            let place = log.place(count, buf.len() as u64, newest_ms, self.cfg.log.segment_bytes_max);
            debug_assert_eq!(log.end_offset(), base0 + count);
            flush.bytes += buf.len() as u64;
            self.fx.disk(DiskRequest::Append { file: place.file, bytes: buf }, Op::Commit);
            self.fx.disk(DiskRequest::Sync { file: place.file }, Op::Commit);
            flush.ops_left += 2;
            flush.touched.push((TopicIdx(i as u16), cp));
            flush.stored.extend(accepted);
        }
        if let Some(site) = &self.site {
            if !strong_left {
                flush.site_applied = Some(site.raft.applied_index());
            }
        }
        if flush.ops_left > 0 {
            self.commit = Commit::Flushing(flush);
        }
    }

    fn on_commit_done(&mut self, result: Result<DiskResponse, DiskError>) {
        let Commit::Flushing(f) = &mut self.commit else { panic!("commit completion without a flush") };
        f.ops_left -= 1;
        if let Err(e) = result {
            f.error.get_or_insert(e);
        }
        if f.ops_left > 0 {
            return;
        }
        let Commit::Flushing(f) = std::mem::replace(&mut self.commit, Commit::Idle) else { unreachable!() };
        match f.error.clone() {
            None => self.commit_succeeded(f),
            Some(e) => self.commit_failed(f, e),
        }
    }

    fn commit_succeeded(&mut self, mut f: Flush) {
        self.stats.commits += 1;
        self.device_full = None;
        for (t, _) in &f.touched {
            self.logs[t.0 as usize].mark_durable();
        }
        let max = self.cfg.resources.compact_index_bytes_max;
        for (t, seq, key) in std::mem::take(&mut f.keys) {
            let index = self.key_index[t.0 as usize].get_or_insert_with(KeyIndex::default);
            if let Some(old) = index.note(key, seq, max) {
                self.logs[t.0 as usize].note_superseded(old);
            }
        }
        // Replies leave in timestamp order, which is issue order on this node.
        f.replies.sort_unstable_by_key(|(_, a)| a.hlc);
        let strong_acks =
            f.strong.iter().map(|(_, r)| r.iter().filter(|p| p.req.is_some()).count() as u64).sum::<u64>();
        for (req, ack) in f.replies {
            self.reply(req, Ok(ack));
        }
        if let Some(site) = &mut self.site {
            site.stats.acknowledged += strong_acks;
            if let Some(i) = f.site_applied {
                site.durable_applied = site.durable_applied.max(i);
            }
        }
        if let Some(g) = &mut self.ingest {
            let hlc = self.hlc.last();
            g.on_durable(&f.stored, hlc, &self.cfg, &mut self.fx);
            for a in f.stored {
                self.fx.event(Event::Stored {
                    origin: a.origin,
                    topic: a.topic,
                    first_seq: a.base_seq,
                    value_crcs: a.value_crcs,
                    max_record_hlc: a.max_record_hlc,
                    received_hlc: a.received_hlc,
                    hlc_rejected: a.hlc_rejected,
                    replay: false,
                });
            }
        }
        self.apply_retention();
    }

    fn commit_failed(&mut self, f: Flush, e: DiskError) {
        self.stats.commit_failures += 1;
        let needed = f.bytes;
        let mut cuts = Vec::new();
        for (t, cp) in &f.touched {
            cuts.extend(self.logs[t.0 as usize].rollback(cp));
        }
        let strong_reqs: std::collections::BTreeSet<ReqId> =
            f.strong.iter().flat_map(|(_, r)| r.iter().filter_map(|p| p.req)).collect();
        for (req, _) in f.replies {
            if !strong_reqs.contains(&req) {
                self.reply(req, Err(ProduceError::Storage(e.clone())));
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
        if let Some(g) = &mut self.ingest {
            g.on_commit_failed();
            for p in &mut self.gw_pending {
                for a in p.drain(..) {
                    self.pending_storage -= a.batch.len() as u64 + log::LOG_FRAME_OVERHEAD as u64;
                }
            }
        }
        let n = cuts.len() as u32;
        for (file, len) in cuts {
            let req = match len {
                Some(len) => DiskRequest::Truncate { file, len },
                None => DiskRequest::Delete { file },
            };
            self.fx.disk(req, Op::Rollback);
        }
        if n > 0 {
            self.commit = Commit::RollingBack { ops_left: n };
        }
        if e == DiskError::NoSpace {
            self.on_device_full(needed);
        }
    }

    fn on_rollback_done(&mut self, result: Result<DiskResponse, DiskError>) {
        let Commit::RollingBack { ops_left } = &mut self.commit else {
            return;
        };
        *ops_left -= 1;
        let done = *ops_left == 0;
        match result {
            Ok(_) | Err(DiskError::NotFound) => {
                if done {
                    self.commit = Commit::Idle;
                    // A newest segment the gateway holds may be rolled now.
                    self.reclaim_full_device();
                }
            }
            Err(e) => {
                let why = format!("could not undo a failed write ({e}); restart to recover from what storage holds");
                self.commit = Commit::Poisoned(why);
            }
        }
    }

    // ---- retention ----

    fn apply_retention(&mut self) {
        if self.cfg.role == Role::Gateway {
            // A gateway rebuilds its high-water marks from its segments at start; deleting
            // one would let a restart accept its records again. Retention returns with a
            // durable checkpoint of the marks.
            return;
        }
        let wall = self.now.wall_ms;
        for i in 0..self.logs.len() {
            let tcfg = &self.cfg.topics[i];
            let synced = match (&self.uplink, &self.site) {
                (_, Some(site)) if tcfg.is_strong() && tcfg.sync.goes_up() => site.gateway_mark(TopicIdx(i as u16)),
                (Some(u), _) if tcfg.sync.goes_up() => u.acked(TopicIdx(i as u16)).unwrap_or(0),
                _ if self.cfg.role == Role::Edge && tcfg.sync.goes_up() => 0,
                _ => u64::MAX,
            };
            let log = &mut self.logs[i];
            while let Some(oldest) = log.oldest() {
                if log.removable() == 0 || oldest.end > synced {
                    break;
                }
                let over_size = log.bytes() > tcfg.retention_bytes;
                let too_old = tcfg.retention_age.is_some_and(|a| wall.saturating_sub(oldest.newest_ms) > a.as_millis());
                if !over_size && !too_old {
                    break;
                }
                let seg = log.pop_oldest().expect("more than one segment");
                let file = log.file(seg.base);
                self.stats.segments_deleted += 1;
                self.fx.disk(DiskRequest::Delete { file }, Op::RetentionDelete);
                self.fx.event(Event::SegmentDeleted { file, records: seg.end - seg.base });
            }
        }
        self.reclaim_full_device();
    }
}

/// Budgets: accounting, eviction and the device-full state (see `resources`).
impl Node {
    /// Bytes of storage the node's files take, as it accounts them: every segment byte
    /// appended, and a fixed reserve for the meta log.
    pub fn storage_used(&self) -> u64 {
        self.logs.iter().map(TopicLog::bytes).sum::<u64>() + META_RESERVE_BYTES
    }

    /// Storage reserved by records and batches waiting for the next group commit.
    pub fn storage_reserved(&self) -> u64 {
        self.pending_storage + self.frame_reserve(self.pending_bytes)
    }

    fn frame_reserve(&self, pending_bytes: u64) -> u64 {
        let frame_raw_max = u64::from(self.cfg.log.read_chunk_bytes) - log::LOG_FRAME_MIN as u64;
        storage_frame_reserve(self.logs.len(), pending_bytes, frame_raw_max)
    }

    fn storage_room(&self) -> u64 {
        self.cfg.resources.storage_bytes_max.saturating_sub(self.storage_used() + self.storage_reserved())
    }

    /// Where each topic's data is acknowledged up to: `None` where nothing leaves this
    /// node (local topics, a gateway), so nothing is ever synced.
    fn synced_below(&self, t: usize) -> Option<Seq> {
        if self.cfg.role != Role::Edge || !self.cfg.topics[t].sync.goes_up() {
            return None;
        }
        Some(self.uplink.as_ref().and_then(|u| u.acked(TopicIdx(t as u16))).unwrap_or(0))
    }

    /// Evicts until `need` more bytes fit the storage budget, for a write to `writer`.
    /// False if the policies let nothing more go.
    fn make_room(&mut self, writer: TopicIdx, need: u64) -> bool {
        loop {
            if self.storage_room() >= need {
                return true;
            }
            let Some(victim) = self.pick_victim(writer) else {
                return false;
            };
            self.evict(victim);
        }
    }

    fn pick_victim(&self, writer: TopicIdx) -> Option<Victim> {
        if self.cfg.role != Role::Edge {
            // A gateway's segments rebuild its marks at a restart (see `apply_retention`).
            return None;
        }
        let views: Vec<TopicView<'_>> = (0..self.logs.len())
            .map(|t| TopicView {
                log: &self.logs[t],
                priority: self.cfg.topics[t].priority,
                eviction: self.cfg.topics[t].eviction,
                synced_below: self.synced_below(t),
            })
            .collect();
        resources::pick_victim(&views, writer)
    }

    /// Deletes the oldest segment of `v.topic`. Records the gateway had not acknowledged
    /// are counted and named in `Event::Evicted`; sync later tells the gateway with a
    /// `Skip` (reason `Evicted`).
    fn evict(&mut self, v: Victim) {
        let t = v.topic.0 as usize;
        let unsynced_from = self.synced_below(t).unwrap_or(0);
        let policy = self.cfg.topics[t].eviction;
        let log = &mut self.logs[t];
        match v.kind {
            VictimKind::Synced => {}
            VictimKind::Superseded => assert!(
                policy == Eviction::Compact && log.oldest().is_some_and(|s| s.live_records() == 0),
                "a segment of topic {t} holding a key's newest value compacted away"
            ),
            VictimKind::Unsynced => assert!(
                policy.yields_to(self.cfg.topics[t].priority, u8::MAX),
                "unsynced records of topic {t} evicted under policy {policy:?}"
            ),
        }
        let seg = log.evict_oldest(unsynced_from).expect("a victim is never a topic's only segment");
        let file = log.file(seg.base);
        self.fx.disk(DiskRequest::Delete { file }, Op::RetentionDelete);
        let from = seg.base.max(unsynced_from);
        if v.kind == VictimKind::Synced || from >= seg.end {
            self.stats.evicted_synced_segments += 1;
            self.fx.event(Event::SegmentDeleted { file, records: seg.end - seg.base });
            return;
        }
        // Sequences past the segment's last frame hold nothing (see `log`).
        let to = seg.end;
        let records = (to - seg.unwritten).saturating_sub(from);
        self.evicted_unsynced[t] += records;
        self.fx.event(Event::Evicted { topic: v.topic, from, to, records, bytes: seg.len, policy: policy.name() });
    }

    /// Storage said there is no space for a write of `needed` bytes: refuse produces for
    /// a while, then probe with one commit; meanwhile free what the gateway holds.
    fn on_device_full(&mut self, needed: u64) {
        self.stats.device_full_events += 1;
        let now = self.now.mono;
        let r = &self.cfg.resources;
        let wait = match self.device_full {
            None => r.disk_full_probe_min,
            Some(f) => Duration(f.wait.0.saturating_mul(2).min(r.disk_full_probe_max.0)),
        };
        let roll_after = self.device_full.map_or(now, |f| f.roll_after);
        self.device_full = Some(DeviceFull { retry_at: now.saturating_add(wait), wait, needed, freed: 0, roll_after });
        self.fx.event(Event::StorageProblem {
            detail: format!(
                "storage reported no space for a write of {needed} bytes; segments the gateway holds are freed as it \
                 acknowledges them, and produces are refused for {} ms, then a write is tried again",
                wait.as_millis()
            ),
        });
        self.reclaim_full_device();
    }

    /// While the device is full: deletes every segment the gateway holds wholly (rolling
    /// a topic's newest segment to an empty one first when that is what holds the room,
    /// see `roll_synced`), and ends the full state once the write that failed fits in what
    /// was freed. Nothing the gateway has not acknowledged goes: lossy policies evict only
    /// against the storage budget, in `make_room`.
    fn reclaim_full_device(&mut self) {
        let Some(mut full) = self.device_full else { return };
        if self.cfg.role != Role::Edge || !self.is_running() {
            return;
        }
        let before = self.storage_used();
        let top = (0..self.logs.len()).max_by_key(|&t| self.cfg.topics[t].priority).unwrap_or(0);
        while let Some(v) = self.pick_victim(TopicIdx(top as u16)).filter(|v| v.kind == VictimKind::Synced) {
            self.evict(v);
        }
        full.freed += before - self.storage_used();
        if full.freed >= full.needed {
            self.device_full = None;
            self.fx.event(Event::StorageFreed { bytes: full.freed });
            return;
        }
        self.device_full = Some(full);
        if self.now.mono >= full.roll_after {
            self.roll_synced();
        }
    }

    /// Rolls every topic whose newest segment the gateway holds wholly, so that the
    /// segment can go: creates an empty segment after it (an empty append and a sync)
    /// and, once that file is durable, deletes the old one (`on_roll_done`). A topic keeps
    /// a segment file at every moment, so a restart goes on at the right sequence. Commits
    /// wait for the roll; it runs only when none is in flight.
    fn roll_synced(&mut self) {
        if !matches!(self.commit, Commit::Idle) {
            return;
        }
        let mut topics = Vec::new();
        for t in 0..self.logs.len() {
            let Some(synced) = self.synced_below(t) else { continue };
            let log = &mut self.logs[t];
            let rollable =
                log.segments().last().is_some_and(|s| s.len > 0 && s.end <= synced && s.durable_end == s.end);
            if !rollable || log.is_rolling() {
                continue;
            }
            let file = log.roll(self.now.wall_ms);
            self.fx.disk(DiskRequest::Append { file, bytes: Vec::new() }, Op::Roll);
            self.fx.disk(DiskRequest::Sync { file }, Op::Roll);
            topics.push(TopicIdx(t as u16));
        }
        if !topics.is_empty() {
            self.commit = Commit::Rolling { ops_left: 2 * topics.len() as u32, failed: false, topics };
        }
    }

    fn on_roll_done(&mut self, result: Result<DiskResponse, DiskError>) {
        let Commit::Rolling { ops_left, failed, .. } = &mut self.commit else {
            panic!("roll completion without a roll")
        };
        *ops_left -= 1;
        *failed |= result.is_err();
        if *ops_left > 0 {
            return;
        }
        let Commit::Rolling { failed, topics, .. } = std::mem::replace(&mut self.commit, Commit::Idle) else {
            unreachable!()
        };
        if !failed {
            for t in topics {
                self.logs[t.0 as usize].roll_done(true);
            }
            // The old segments are no longer the newest: they go now.
            return self.reclaim_full_device();
        }
        // Storage may have made something of a file it did not sync: delete it before any
        // commit appends after the old segment's end, which a restart would otherwise read
        // as the empty file's.
        for &t in &topics {
            let log = &mut self.logs[t.0 as usize];
            let file = log.file(log.end_offset());
            log.roll_done(false);
            self.fx.disk(DiskRequest::Delete { file }, Op::Rollback);
        }
        self.commit = Commit::RollingBack { ops_left: topics.len() as u32 };
        if let Some(f) = &mut self.device_full {
            f.roll_after = self.now.mono.saturating_add(f.wait);
        }
    }

    /// The refusal of a produce for lack of storage, saying what holds the room.
    fn storage_full(&self, device_full: bool) -> ProduceError {
        let (mut unsynced, mut awaiting_ack, mut freeing, mut local) = (self.pending_storage, 0, 0, 0);
        for (t, log) in self.logs.iter().enumerate() {
            let Some(synced) = self.synced_below(t) else {
                local += log.bytes();
                continue;
            };
            for s in log.segments() {
                if s.end > synced {
                    unsynced += s.len;
                } else if device_full {
                    // Freed while the device is full (`reclaim_full_device`): only the
                    // budget's eviction leaves a topic's newest segment in place.
                    freeing += s.len;
                }
            }
            awaiting_ack += log.records_from(synced);
        }
        let retry_in = match self.device_full {
            Some(f) if device_full => Duration(f.retry_at.0.saturating_sub(self.now.mono.0)),
            _ => Duration::ZERO,
        };
        ProduceError::StorageFull {
            used: self.storage_used() + self.storage_reserved(),
            unsynced,
            limit: self.cfg.resources.storage_bytes_max,
            device_full,
            awaiting_ack,
            freeing,
            local,
            retry_in,
        }
    }

    /// The memory each part holds now. The simulator checks it against the limit and
    /// the plan after every step (guarantee 8).
    pub fn memory(&self) -> MemoryUsage {
        let mut m = MemoryUsage::default();
        m.set(MemoryPart::Fixed, self.plan.max.get(MemoryPart::Fixed));
        let segments: u64 = self.logs.iter().map(TopicLog::heap_bytes).sum();
        let uplink = self.uplink.as_ref().map_or(0, Uplink::index_bytes);
        let ingest = self.ingest.as_ref().map_or(0, Ingest::index_bytes);
        let ops = self.fx.in_flight() as u64 * resources::DISK_OP_ENTRY_BYTES;
        let out = (self.fx.out.capacity() * std::mem::size_of::<Output>()) as u64;
        let recovery = match &self.phase {
            Phase::Recovering(r) => r.heap_bytes(),
            Phase::Running => 0,
        };
        let keys: u64 = self.key_index.iter().flatten().map(KeyIndex::bytes).sum();
        m.set(MemoryPart::Index, segments + uplink + ingest + ops + out + recovery + keys);
        let (scratch, zstd_c) = self.enc.heap_bytes();
        m.set(MemoryPart::Codec, scratch + zstd_c + self.dec.heap_bytes());
        let slots: usize = self.pending.iter().map(Vec::capacity).sum();
        let flush = match &self.commit {
            Commit::Flushing(f) => f.heap_bytes(),
            _ => 0,
        };
        let (replies, stored) = if self.cfg.role == Role::Edge { (flush, 0) } else { (0, flush) };
        let pending_entries = (slots * std::mem::size_of::<PendingRecord>()) as u64;
        let records: usize = self.pending.iter().map(Vec::len).sum();
        let payload = self.pending_bytes - (2 * PENDING_ENTRY_BYTES * records) as u64;
        m.set(MemoryPart::ProduceBuffer, payload + pending_entries + replies);
        let gw_slots: usize = self.gw_pending.iter().map(Vec::capacity).sum();
        let gw = self.ingest.as_ref().map_or(0, |g| g.pending_bytes) + self.held.bytes();
        m.set(MemoryPart::GatewayPending, gw + stored + (gw_slots * std::mem::size_of::<Accepted>()) as u64);
        m.set(MemoryPart::SyncHeld, self.uplink.as_ref().map_or(0, Uplink::held_bytes));
        m.set(MemoryPart::FetchResults, self.fetches.held_bytes());
        m.set(MemoryPart::Writes, self.fx.write_bytes());
        m.set(MemoryPart::Reads, self.fx.read_bytes());
        m.set(MemoryPart::SyncWindow, self.uplink.as_ref().map_or(0, Uplink::window_bytes));
        m.set(MemoryPart::Scratch, self.plan.max.get(MemoryPart::Scratch));
        m.set(MemoryPart::Site, self.site.as_deref().map_or(0, crate::site::Site::heap_bytes));
        m
    }

    /// Of [`Node::memory`], the bytes zstd holds in its own (C) heap, as it reports them
    /// (`ZSTD_sizeof_CCtx`, `ZSTD_sizeof_DCtx`): invisible to Rust's allocator.
    pub fn foreign_heap_bytes(&self) -> u64 {
        self.enc.heap_bytes().1 + self.dec.heap_bytes()
    }

    /// The maximum of each memory part under this node's configuration.
    pub fn memory_plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// Usage against the budgets, per topic, as the operator CLI shows it.
    pub fn resource_status(&self) -> ResourceStatus {
        let wall = self.now.wall_ms;
        let topics = (0..self.logs.len())
            .map(|t| {
                let log = &self.logs[t];
                let tc = &self.cfg.topics[t];
                let synced = self.synced_below(t);
                let unsynced_records = synced.map_or(0, |s| log.records_from(s));
                let oldest = synced.and_then(|s| log.segments().find(|seg| seg.end > s && unsynced_records > 0));
                let unsynced_bytes = match synced {
                    Some(s) if unsynced_records > 0 => {
                        log.segments().filter(|seg| seg.end > s).map(|seg| seg.len).sum()
                    }
                    _ => 0,
                };
                TopicUsage {
                    name: tc.name.clone(),
                    priority: tc.priority,
                    eviction: tc.eviction,
                    bytes: log.bytes(),
                    segments: log.segment_count() as u64,
                    records: log.records_from(log.start_offset()),
                    unsynced_records,
                    unsynced_bytes,
                    oldest_unsynced_age: oldest.map(|seg| Duration::from_millis(wall.saturating_sub(seg.newest_ms))),
                    evicted_unsynced: self.evicted_unsynced[t],
                }
            })
            .collect();
        ResourceStatus {
            memory: self.memory(),
            memory_max: self.cfg.resources.memory_bytes_max,
            storage_used: self.storage_used() + self.storage_reserved(),
            storage_max: self.cfg.resources.storage_bytes_max,
            device_full: self.device_full.is_some(),
            topics,
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
        let key_bytes: usize = self.keys.iter().map(|(_, _, k)| k.capacity()).sum();
        // The copies of strong records kept to write again if the commit fails.
        let strong: u64 = self.strong.iter().flat_map(|(_, r)| r.iter().map(PendingRecord::memory_cost)).sum();
        (replies + touched + stored + crcs + keys + key_bytes) as u64 + strong
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

//! A world of Raft members and their clients, for the safety of `outpost_core::raft`.
//!
//! Each member is a real [`Raft`] over a simulated disk (FIFO, a write lost unless its
//! persist completed before a crash, fsync latency with Pi SD-card tails when slowed) and
//! a simulated LAN (delay, loss, duplication, reordering, symmetric and asymmetric
//! partitions, a leader cut off from its followers, delays longer than an election
//! timeout). Clients on every member run a key-value workload: puts and gets through the
//! log, and gets by ReadIndex. The run has a fault phase drawn from the seed, then a settle
//! phase with every fault healed, in which the group must converge and make progress.
//!
//! Checked as the run goes: election safety, leader completeness and state machine safety
//! (`raft_check`); at the end: log matching, every acknowledged put present exactly once
//! in the converged log, and linearizability of every client operation (`linearizable`).
//!
//! Messages cross the network as bytes through the real codec (`raft::wire`).
//!
//! Not modelled yet (issue 3): torn writes inside the Raft log, snapshots, membership change, and the `Node` on top.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use outpost_core::raft::{
    wire, Action, Entry, EntryKind, Envelope, HardState, Index, Membership, MembershipChange, Persist, Raft,
    RaftConfig, Restored, Role, Snapshot, Term,
};
use outpost_core::types::{Duration, Instant, NodeId};
use rand::Rng;

use crate::linearizable::{self, KvOp, KvResult, Operation};
use crate::raft_check::{check_log_matching, EntrySig, HeldLog, RaftChecker, Slot};
use crate::rng::{self, SimRng};

/// The shape of one run.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Processes in the world; the first `initial_voters` form the group, the rest wait
    /// outside it until a membership change adds them.
    pub members: usize,
    pub initial_voters: usize,
    /// Whether the faults include membership changes: add a learner, promote it, remove a
    /// voter (the leader too), one at a time, during partitions and crashes.
    pub membership_changes: bool,
    pub raft: RaftConfig,
    /// Faults are drawn and injected during this phase.
    pub fault_phase: Duration,
    /// Then everything heals for this long; the group must converge within it.
    pub settle: Duration,
    /// Clients per member.
    pub clients_per_member: usize,
    /// Keys the clients share (few keys: many conflicting operations per key).
    pub keys: u64,
    /// A client gives up on an operation after this long and counts it as indeterminate.
    pub client_timeout: Duration,
    /// Search steps the linearizability checker may take per key.
    pub linearizability_steps_max: u64,
}

impl ClusterConfig {
    pub fn new(members: usize) -> ClusterConfig {
        ClusterConfig {
            members,
            initial_voters: members,
            membership_changes: false,
            raft: RaftConfig {
                election_timeout_min: Duration::from_millis(500),
                election_timeout_max: Duration::from_millis(1000),
                heartbeat_interval: Duration::from_millis(100),
                append_entries_max: 32,
                inflight_appends_max: 4,
                uncommitted_bytes_max: 16 << 10,
                pending_reads_max: 16,
                lease_reads: true,
                lease_clock_margin: Duration::from_millis(50),
                ..RaftConfig::default()
            },
            fault_phase: Duration::from_secs(40),
            settle: Duration::from_secs(20),
            clients_per_member: 1,
            keys: 3,
            client_timeout: Duration::from_secs(3),
            linearizability_steps_max: 2_000_000,
        }
    }
}

/// What a run did and what it found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ClusterReport {
    pub seed: u64,
    pub members: usize,
    pub terms_max: Term,
    pub leaders_elected: usize,
    pub entries_committed: usize,
    pub puts_acked: u64,
    pub gets_acked: u64,
    pub reads_by_read_index: u64,
    /// Gets answered under the leader's lease.
    pub reads_by_lease: u64,
    /// Refused before entering the log: not the leader, busy, not ready.
    pub refused: u64,
    /// Outcome unknown to the client: its member crashed or it timed out.
    pub indeterminate: u64,
    pub crashes: u64,
    pub partitions: u64,
    /// Process pauses longer than an election timeout.
    pub pauses: u64,
    /// Leader transfers started.
    pub transfers: u64,
    /// Snapshots members compacted their logs to, and leaders' snapshots members restored.
    pub snapshots_taken: u64,
    /// Membership changes a leader accepted.
    pub membership_changes: u64,
    pub snapshots_installed: u64,
    pub messages: u64,
    pub persists: u64,
    pub linearizability: String,
    pub violations: Vec<String>,
    pub liveness: Option<String>,
    pub trace_hash: String,
}

impl ClusterReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.liveness.is_none()
    }
}

#[derive(Debug)]
enum Ev {
    /// An encoded envelope (`raft::wire`) on its way from `from` to `to`.
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    PersistDone {
        member: usize,
        incarnation: u32,
        persist: Persist,
    },
    ClientNext {
        client: usize,
    },
    ClientTimeout {
        client: usize,
        op: u64,
    },
    Fault,
    Heal {
        episode: u64,
    },
    Restart {
        member: usize,
    },
    SlowDiskEnd {
        member: usize,
        episode: u64,
    },
    /// The process runs again; `clients_first`: it serves the client calls that waited
    /// before the messages (the order in which a real process reads its sockets is not fixed).
    Resume {
        member: usize,
        clients_first: bool,
    },
    /// A client call that reached a paused member.
    ClientCall {
        client: usize,
        id: u64,
        op: KvOp,
        call: Instant,
        via: Via,
    },
    LongDelaysEnd {
        episode: u64,
    },
    Settle,
}

/// A member compacts its log once it applied this many entries past its snapshot.
const COMPACT_EVERY: Index = 256;

/// The storage of one member: what its completed persists made durable.
#[derive(Debug, Default, Clone)]
struct Durable {
    hard: HardState,
    snapshot: Snapshot,
    /// The entries after the snapshot.
    log: Vec<Entry>,
}

impl Durable {
    fn apply(&mut self, p: &Persist) {
        if let Some(snapshot) = &p.snapshot {
            self.log.retain(|e| e.index > snapshot.index);
            self.snapshot = snapshot.clone();
        }
        if let Some(from) = p.truncate_from {
            self.log.retain(|e| e.index < from);
        }
        if let Some(first) = p.entries.first() {
            self.log.retain(|e| e.index < first.index);
            let last = self.log.last().map_or(self.snapshot.index, |e| e.index);
            assert_eq!(first.index, last + 1, "a persist leaves a gap in the stored log");
            self.log.extend(p.entries.iter().cloned());
        }
        if let Some(hard) = p.hard_state {
            assert!(hard.term >= self.hard.term, "a persisted term went backwards");
            self.hard = hard;
        }
    }
}

struct Member {
    id: NodeId,
    raft: Option<Raft>,
    incarnation: u32,
    durable: Durable,
    disk_free_at: Instant,
    slow_disk: Option<u64>,
    kv: BTreeMap<u64, u64>,
    applied: Index,
    reported_commit: Index,
    /// A paused process (stopped, starved of CPU) runs nothing: its timers wait and what
    /// reaches it (messages, disk completions, client calls) waits in `inbox`.
    paused: bool,
    inbox: Vec<Ev>,
}

fn encode_kv(kv: &BTreeMap<u64, u64>) -> Vec<u8> {
    kv.iter().flat_map(|(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect()
}

fn decode_kv(data: &[u8]) -> BTreeMap<u64, u64> {
    let u = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    data.chunks_exact(16).map(|c| (u(&c[..8]), u(&c[8..]))).collect()
}

/// What a member's log holds at `index`, for the checkers.
fn slot(raft: &Raft, index: Index) -> Slot {
    if index <= raft.snapshot_index() {
        return Slot::Compacted;
    }
    raft.entry(index).map_or(Slot::Missing, |e| Slot::Held(EntrySig::of(e)))
}

/// How a client's operation reaches the group.
#[derive(Clone, Copy, Debug)]
enum Via {
    Log,
    ReadIndex,
    Lease,
}

#[derive(Clone, Copy, Debug)]
enum Waiting {
    Log {
        term: Term,
        index: Index,
    },
    ReadIndex {
        ctx: u64,
    },
    Applied {
        index: Index,
    },
    /// Waiting in a paused member's inbox.
    Queued,
}

#[derive(Debug)]
struct PendingOp {
    id: u64,
    op: KvOp,
    call: Instant,
    member: usize,
    waiting: Waiting,
}

struct Client {
    home: usize,
    target: usize,
    next_id: u64,
    pending: Option<PendingOp>,
}

const CMD_PUT: u8 = 1;
const CMD_GET: u8 = 2;

fn encode_cmd(client: usize, op_id: u64, op: KvOp) -> Vec<u8> {
    let (kind, key, value) = match op {
        KvOp::Put { key, value } => (CMD_PUT, key, value),
        KvOp::Get { key } => (CMD_GET, key, 0),
    };
    let mut b = vec![kind];
    b.extend_from_slice(&(client as u64).to_le_bytes());
    b.extend_from_slice(&op_id.to_le_bytes());
    b.extend_from_slice(&key.to_le_bytes());
    b.extend_from_slice(&value.to_le_bytes());
    b
}

fn decode_cmd(b: &[u8]) -> (u64, u64, KvOp) {
    let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let op = match b[0] {
        CMD_PUT => KvOp::Put { key: u(17), value: u(25) },
        CMD_GET => KvOp::Get { key: u(17) },
        k => panic!("unknown command kind {k}"),
    };
    (u(1), u(9), op)
}

/// Runs one seed.
pub fn run(cfg: &ClusterConfig, seed: u64) -> ClusterReport {
    let mut world = World::new(cfg.clone(), seed);
    world.run();
    world.finish()
}

struct World {
    cfg: ClusterConfig,
    seed: u64,
    now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: BTreeMap<usize, Ev>,
    next_event: u64,
    members: Vec<Member>,
    clients: Vec<Client>,
    history: Vec<Operation>,
    /// Directed links that drop everything.
    blocked: BTreeSet<(usize, usize)>,
    partition_episode: u64,
    long_delays: Option<u64>,
    episodes: u64,
    loss: f64,
    duplication: f64,
    settled: bool,
    settle_commit: Index,
    net_rng: SimRng,
    disk_rng: SimRng,
    fault_rng: SimRng,
    client_rng: SimRng,
    checker: RaftChecker,
    /// The command applied at each index (by whichever member applied it first; state
    /// machine safety makes them agree): (client, operation id).
    applied_commands: BTreeMap<Index, (u64, u64)>,
    report: ClusterReport,
    trace_hash: u64,
}

impl World {
    fn new(cfg: ClusterConfig, seed: u64) -> World {
        assert!(cfg.members >= 1 && cfg.members <= 9, "1 to 9 members");
        let initial = Membership::of_voters((1..=cfg.initial_voters as u64).map(NodeId));
        let now = Instant::from_millis(0);
        let members = (0..cfg.members)
            .map(|i| {
                let id = NodeId(i as u64 + 1);
                let raft = Raft::new(
                    id,
                    initial.clone(),
                    cfg.raft.clone(),
                    rng::mix(seed ^ rng::mix(id.0)),
                    now,
                    Restored { hard: HardState::default(), snapshot: Snapshot::default(), log: Vec::new() },
                );
                Member {
                    id,
                    raft: Some(raft),
                    incarnation: 0,
                    durable: Durable::default(),
                    disk_free_at: now,
                    slow_disk: None,
                    kv: BTreeMap::new(),
                    applied: 0,
                    reported_commit: 0,
                    paused: false,
                    inbox: Vec::new(),
                }
            })
            .collect();
        // The regular clients, then one prober per member (see `resume`).
        let clients = (0..cfg.members * cfg.clients_per_member)
            .chain(0..cfg.members)
            .map(|i| Client { home: i % cfg.members, target: i % cfg.members, next_id: 0, pending: None })
            .collect();
        let mut fault_rng = rng::stream(seed, "cluster/faults");
        let loss = if fault_rng.gen_bool(0.5) { fault_rng.gen_range(0.0..0.05) } else { 0.0 };
        let duplication = if fault_rng.gen_bool(0.3) { fault_rng.gen_range(0.0..0.03) } else { 0.0 };
        let mut w = World {
            seed,
            now,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_event: 0,
            members,
            clients,
            history: Vec::new(),
            blocked: BTreeSet::new(),
            partition_episode: 0,
            long_delays: None,
            episodes: 0,
            loss,
            duplication,
            settled: false,
            settle_commit: 0,
            net_rng: rng::stream(seed, "cluster/network"),
            disk_rng: rng::stream(seed, "cluster/disk"),
            fault_rng,
            client_rng: rng::stream(seed, "cluster/clients"),
            checker: RaftChecker::new(),
            applied_commands: BTreeMap::new(),
            report: ClusterReport { seed, members: cfg.members, ..ClusterReport::default() },
            trace_hash: 0xcbf2_9ce4_8422_2325,
            cfg,
        };
        for c in 0..w.cfg.members * w.cfg.clients_per_member {
            let at = Duration::from_millis(w.client_rng.gen_range(0..200));
            w.schedule(at, Ev::ClientNext { client: c });
        }
        let first_fault = Duration::from_millis(w.fault_rng.gen_range(1000..4000));
        w.schedule(first_fault, Ev::Fault);
        let settle = w.cfg.fault_phase;
        w.schedule(settle, Ev::Settle);
        w
    }

    fn schedule(&mut self, after: Duration, ev: Ev) {
        let at = self.now.saturating_add(after);
        let key = self.next_event as usize;
        self.next_event += 1;
        self.events.insert(key, ev);
        self.queue.push(Reverse((at, self.next_event, key)));
    }

    fn trace(&mut self, tag: u64, a: u64) {
        for w in [self.now.as_nanos(), tag, a] {
            self.trace_hash = (self.trace_hash ^ w).wrapping_mul(0x100_0000_01b3);
            self.trace_hash ^= self.trace_hash >> 29;
        }
    }

    fn run(&mut self) {
        let end = Instant(self.cfg.fault_phase.as_nanos() + self.cfg.settle.as_nanos());
        loop {
            let next_event = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next_timer = self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.paused)
                .filter_map(|(i, m)| m.raft.as_ref().and_then(|r| r.poll_timeout()).map(|t| (t, i)))
                .min();
            let timer_first = match (next_timer, next_event) {
                (Some((t, _)), Some(e)) => t <= e,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let at = if timer_first { next_timer.map(|(t, _)| t) } else { next_event }.expect("the run has events");
            if at > end {
                break;
            }
            self.now = at.max(self.now);
            if timer_first {
                let (_, i) = next_timer.expect("checked");
                self.trace(1, i as u64);
                let now = self.now;
                self.members[i].raft.as_mut().expect("alive").tick(now);
                self.drain(i);
            } else {
                let Reverse((_, _, key)) = self.queue.pop().expect("checked");
                let ev = self.events.remove(&key).expect("every queued event is stored");
                self.handle(ev);
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        let held_by = match &ev {
            Ev::Deliver { to, .. } => Some(*to),
            Ev::PersistDone { member, .. } => Some(*member),
            _ => None,
        };
        if let Some(m) = held_by.filter(|m| self.members[*m].paused) {
            self.members[m].inbox.push(ev);
            return;
        }
        match ev {
            Ev::Deliver { from, to, bytes } => {
                self.trace(2, to as u64);
                if self.blocked.contains(&(from, to)) {
                    return;
                }
                let env = wire::decode(&bytes).expect("a member's encoding decodes");
                let now = self.now;
                if let Some(raft) = self.members[to].raft.as_mut() {
                    raft.step(now, env);
                    self.drain(to);
                }
            }
            Ev::PersistDone { member, incarnation, persist } => {
                self.trace(3, member as u64);
                let m = &mut self.members[member];
                if m.incarnation != incarnation || m.raft.is_none() {
                    return;
                }
                m.durable.apply(&persist);
                let now = self.now;
                m.raft.as_mut().expect("checked").persisted(now, persist.id);
                self.drain(member);
            }
            Ev::ClientNext { client } => self.client_next(client),
            Ev::ClientTimeout { client, op } => {
                if self.clients[client].pending.as_ref().is_some_and(|p| p.id == op) {
                    self.give_up(client);
                }
            }
            Ev::Fault => self.inject_fault(),
            Ev::Heal { episode } => {
                if self.partition_episode == episode {
                    self.blocked.clear();
                }
            }
            Ev::Restart { member } => self.restart(member),
            Ev::SlowDiskEnd { member, episode } => {
                if self.members[member].slow_disk == Some(episode) {
                    self.members[member].slow_disk = None;
                }
            }
            Ev::LongDelaysEnd { episode } => {
                if self.long_delays == Some(episode) {
                    self.long_delays = None;
                }
            }
            Ev::Settle => self.settle(),
            Ev::Resume { member, clients_first } => self.resume(member, clients_first),
            Ev::ClientCall { client, id, op, call, via } => {
                // Only if the client still waits for it (it may have timed out).
                if self.clients[client].pending.as_ref().is_some_and(|p| p.id == id) {
                    self.clients[client].pending = None;
                    self.submit(client, id, op, call, via, false);
                }
            }
        }
    }

    /// Performs every action member `i` has queued.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.members[i].raft.as_mut().and_then(Raft::poll_action) {
            match action {
                Action::Persist(p) => self.persist(i, p),
                Action::Send(env) => self.send(env),
                Action::Apply(entry) => self.apply(i, entry),
                Action::Restore(snapshot) => self.restore(i, snapshot),
                Action::ReadReady { ctx, index } => self.read_ready(i, ctx, index),
                Action::ReadFailed { ctx } => self.read_failed(i, ctx),
                Action::RoleChanged { role, term, .. } => {
                    self.report.terms_max = self.report.terms_max.max(term);
                    if role == Role::Leader {
                        let raft = self.members[i].raft.as_ref().expect("alive");
                        let id = raft.id();
                        self.checker.on_leader(id, term, |x| slot(raft, x));
                    }
                }
            }
        }
        let Some(raft) = self.members[i].raft.as_ref() else { return };
        if raft.role() == Role::Leader && raft.commit_index() > self.members[i].reported_commit {
            self.checker.on_commit(raft.term(), raft.commit_index(), |x| slot(raft, x));
            self.members[i].reported_commit = raft.commit_index();
        }
        let m = &mut self.members[i];
        let raft = m.raft.as_mut().expect("checked");
        if m.applied >= raft.snapshot_index() + COMPACT_EVERY {
            raft.compact(self.now, m.applied, encode_kv(&m.kv)).expect("a small state, applied");
            self.report.snapshots_taken += 1;
            self.drain(i);
        }
    }

    /// The member replaced its state with the leader's snapshot.
    fn restore(&mut self, i: usize, snapshot: Snapshot) {
        self.report.snapshots_installed += 1;
        let m = &mut self.members[i];
        assert!(snapshot.index > m.applied, "a restored snapshot moves the state forward");
        m.kv = decode_kv(&snapshot.data);
        m.applied = snapshot.index;
        let id = m.id;
        self.checker.on_restart(id, snapshot.index);
        for c in 0..self.clients.len() {
            let Some(p) = self.clients[c].pending.as_ref().filter(|p| p.member == i) else { continue };
            match (p.waiting, p.op) {
                // Whether its entry was among those the snapshot covers is unknown here.
                (Waiting::Log { index, .. }, _) if index <= snapshot.index => self.give_up(c),
                (Waiting::Applied { index }, KvOp::Get { key }) if index <= snapshot.index => {
                    let value = self.members[i].kv.get(&key).copied();
                    self.complete(c, KvResult::Read(value));
                }
                _ => {}
            }
        }
    }

    fn persist(&mut self, i: usize, p: Persist) {
        self.report.persists += 1;
        let latency_us = if self.members[i].slow_disk.is_some() && self.disk_rng.gen_bool(0.05) {
            // A Pi SD card's fsync tail: hundreds of milliseconds.
            self.disk_rng.gen_range(100_000..800_000)
        } else if self.members[i].slow_disk.is_some() {
            self.disk_rng.gen_range(2_000..20_000)
        } else {
            self.disk_rng.gen_range(200..3_000)
        };
        let m = &mut self.members[i];
        let done = m.disk_free_at.max(self.now).saturating_add(Duration::from_micros(latency_us));
        m.disk_free_at = done;
        let ev = Ev::PersistDone { member: i, incarnation: m.incarnation, persist: p };
        let after = done.saturating_since(self.now);
        self.schedule(after, ev);
    }

    fn send(&mut self, env: Envelope) {
        self.report.messages += 1;
        let (from, to) = (env.from.0 as usize - 1, env.to.0 as usize - 1);
        if self.blocked.contains(&(from, to)) || self.net_rng.gen_bool(self.loss) {
            return;
        }
        let copies = if self.net_rng.gen_bool(self.duplication) { 2 } else { 1 };
        let mut bytes = Vec::new();
        wire::encode(&env, &mut bytes);
        for _ in 0..copies {
            let delay_us = if self.long_delays.is_some() && self.net_rng.gen_bool(0.2) {
                // Longer than an election timeout: the message arrives into another term.
                let max = self.cfg.raft.election_timeout_max.as_nanos() / 1000;
                self.net_rng.gen_range(max..3 * max)
            } else {
                self.net_rng.gen_range(100..2_000)
            };
            self.schedule(Duration::from_micros(delay_us), Ev::Deliver { from, to, bytes: bytes.clone() });
        }
    }

    fn apply(&mut self, i: usize, entry: Entry) {
        let id = self.members[i].id;
        self.checker.on_apply(id, &entry);
        let m = &mut self.members[i];
        assert_eq!(entry.index, m.applied + 1);
        m.applied = entry.index;
        let result = match &entry.kind {
            EntryKind::Noop | EntryKind::Membership(_) => None,
            EntryKind::Command(data) => {
                let (client, op_id, op) = decode_cmd(data);
                self.applied_commands.entry(entry.index).or_insert((client, op_id));
                let result = match op {
                    KvOp::Put { key, value } => {
                        m.kv.insert(key, value);
                        KvResult::Written
                    }
                    KvOp::Get { key } => KvResult::Read(m.kv.get(&key).copied()),
                };
                Some((client as usize, op_id, result))
            }
        };
        // The client waiting on this member for this index learns its outcome.
        for c in 0..self.clients.len() {
            let Some((waiting, op, pending_id)) =
                self.clients[c].pending.as_ref().filter(|p| p.member == i).map(|p| (p.waiting, p.op, p.id))
            else {
                continue;
            };
            match waiting {
                Waiting::Log { term, index } if index == entry.index => {
                    if term == entry.term {
                        let (client, op_id, res) = result.expect("a client's entry is a command");
                        assert_eq!(
                            (client, op_id),
                            (c, pending_id),
                            "the entry at the proposed index and term is the proposal"
                        );
                        self.complete(c, res);
                    } else {
                        // Another entry won this index: the proposal can never commit.
                        self.clients[c].pending = None;
                        self.report.refused += 1;
                        self.schedule(Duration::from_millis(10), Ev::ClientNext { client: c });
                    }
                }
                Waiting::Applied { index } if index <= entry.index => {
                    let KvOp::Get { key } = op else { unreachable!("only reads wait for apply") };
                    let value = self.members[i].kv.get(&key).copied();
                    self.complete(c, KvResult::Read(value));
                }
                _ => {}
            }
        }
    }

    fn read_ready(&mut self, i: usize, ctx: u64, index: Index) {
        let Some(c) = self.client_waiting(i, |w| matches!(w, Waiting::ReadIndex { ctx: x } if x == ctx)) else {
            return;
        };
        let p = self.clients[c].pending.as_mut().expect("found");
        if self.members[i].applied >= index {
            let KvOp::Get { key } = p.op else { unreachable!("ReadIndex serves gets") };
            let value = self.members[i].kv.get(&key).copied();
            self.report.reads_by_read_index += 1;
            self.complete(c, KvResult::Read(value));
        } else {
            p.waiting = Waiting::Applied { index };
            self.report.reads_by_read_index += 1;
        }
    }

    fn read_failed(&mut self, i: usize, ctx: u64) {
        if let Some(c) = self.client_waiting(i, |w| matches!(w, Waiting::ReadIndex { ctx: x } if x == ctx)) {
            self.clients[c].pending = None;
            self.report.refused += 1;
            self.schedule(Duration::from_millis(10), Ev::ClientNext { client: c });
        }
    }

    fn client_waiting(&self, member: usize, f: impl Fn(Waiting) -> bool) -> Option<usize> {
        self.clients.iter().position(|c| c.pending.as_ref().is_some_and(|p| p.member == member && f(p.waiting)))
    }

    fn complete(&mut self, c: usize, result: KvResult) {
        let p = self.clients[c].pending.take().expect("an operation is pending");
        match result {
            KvResult::Written => self.report.puts_acked += 1,
            KvResult::Read(_) => self.report.gets_acked += 1,
        }
        self.history.push(Operation {
            client: c as u64,
            call: p.call.as_nanos(),
            ret: Some(self.now.as_nanos()),
            op: p.op,
            result: Some(result),
        });
        let think = Duration::from_millis(self.client_rng.gen_range(1..50));
        self.schedule(think, Ev::ClientNext { client: c });
    }

    /// The client learns nothing more of its operation: its member crashed or it waited
    /// `client_timeout`. A put may still take effect; the history says so.
    fn give_up(&mut self, c: usize) {
        let p = self.clients[c].pending.take().expect("an operation is pending");
        self.report.indeterminate += 1;
        self.history.push(Operation { client: c as u64, call: p.call.as_nanos(), ret: None, op: p.op, result: None });
        self.clients[c].target = (self.clients[c].target + 1) % self.members.len();
        self.schedule(Duration::from_millis(10), Ev::ClientNext { client: c });
    }

    fn client_next(&mut self, c: usize) {
        if self.clients[c].pending.is_some() || self.now >= self.quiet_from() {
            return;
        }
        let now = self.now;
        let key = self.client_rng.gen_range(0..self.cfg.keys);
        let id = self.clients[c].next_id;
        let op = match self.client_rng.gen_range(0..4) {
            0 | 1 => KvOp::Put { key, value: ((c as u64) << 32) | id },
            _ => KvOp::Get { key },
        };
        let via = match op {
            KvOp::Put { .. } => Via::Log,
            KvOp::Get { .. } => [Via::Log, Via::ReadIndex, Via::Lease][self.client_rng.gen_range(0..3)],
        };
        self.submit(c, id, op, now, via, true);
    }

    /// Hands operation `id` (called at `call`) to the client's target member.
    fn submit(&mut self, c: usize, id: u64, op: KvOp, call: Instant, via: Via, fresh: bool) {
        let target = self.clients[c].target;
        let now = self.now;
        if fresh {
            self.clients[c].next_id += 1;
            let timeout = self.cfg.client_timeout;
            self.schedule(timeout, Ev::ClientTimeout { client: c, op: id });
        }
        if self.members[target].paused {
            let waiting = Waiting::Queued;
            self.clients[c].pending = Some(PendingOp { id, op, call, member: target, waiting });
            self.members[target].inbox.push(Ev::ClientCall { client: c, id, op, call, via });
            return;
        }
        let Some(raft) = self.members[target].raft.as_mut() else {
            // The member is down: try the next one shortly.
            self.report.refused += 1;
            self.clients[c].target = (target + 1) % self.members.len();
            self.schedule(Duration::from_millis(20), Ev::ClientNext { client: c });
            return;
        };
        let ctx = ((c as u64) << 32) | id;
        let outcome = match via {
            Via::ReadIndex => raft.read_index(now, ctx).map(|()| Waiting::ReadIndex { ctx }).map_err(|_| raft.leader()),
            Via::Lease => raft.read_lease(now).map(|index| Waiting::Applied { index }).map_err(|_| raft.leader()),
            Via::Log => raft
                .propose(now, encode_cmd(c, id, op))
                .map(|(term, index)| Waiting::Log { term, index })
                .map_err(|_| raft.leader()),
        };
        self.trace(4, c as u64);
        match outcome {
            Ok(waiting) => {
                self.clients[c].pending = Some(PendingOp { id, op, call, member: target, waiting });
                if let (Waiting::Applied { index }, KvOp::Get { key }) = (waiting, op) {
                    self.report.reads_by_lease += 1;
                    if self.members[target].applied >= index {
                        let value = self.members[target].kv.get(&key).copied();
                        self.complete(c, KvResult::Read(value));
                    }
                }
            }
            Err(leader) => {
                self.report.refused += 1;
                let home = self.clients[c].home;
                self.clients[c].target = match leader {
                    Some(l) => l.0 as usize - 1,
                    None if target == home => (target + 1) % self.members.len(),
                    None => home,
                };
                self.schedule(Duration::from_millis(20), Ev::ClientNext { client: c });
            }
        }
        self.drain(target);
    }

    fn pause(&mut self, i: usize, lasting: Duration) {
        if self.members[i].raft.is_none() || self.members[i].paused {
            return;
        }
        self.report.pauses += 1;
        self.trace(9, i as u64);
        self.members[i].paused = true;
        let clients_first = self.fault_rng.gen_bool(0.5);
        self.schedule(lasting, Ev::Resume { member: i, clients_first });
    }

    fn resume(&mut self, i: usize, clients_first: bool) {
        if !self.members[i].paused {
            return;
        }
        self.trace(10, i as u64);
        self.members[i].paused = false;
        let mut inbox = std::mem::take(&mut self.members[i].inbox);
        if clients_first {
            inbox.sort_by_key(|ev| !matches!(ev, Ev::ClientCall { .. }));
            self.probe(i);
        }
        for ev in inbox {
            self.handle(ev);
        }
    }

    /// An application on a member that just resumed reads at once, before the member has
    /// heard what happened while it was stopped: a stale leader must not answer it from its
    /// old state (the case a lease or a ReadIndex that skipped its round gets wrong).
    fn probe(&mut self, i: usize) {
        let p = self.cfg.members * self.cfg.clients_per_member + i;
        if self.clients[p].pending.is_some() || self.now >= self.quiet_from() {
            return;
        }
        self.clients[p].target = i;
        let key = self.client_rng.gen_range(0..self.cfg.keys);
        let via = if self.client_rng.gen_bool(0.5) { Via::ReadIndex } else { Via::Lease };
        let id = self.clients[p].next_id;
        self.submit(p, id, KvOp::Get { key }, self.now, via, true);
    }

    /// Clients start no operation in the last `QUIET` of the run, so that the convergence
    /// check sees every member at the same commit.
    fn quiet_from(&self) -> Instant {
        const QUIET: Duration = Duration::from_secs(3);
        Instant((self.cfg.fault_phase.as_nanos() + self.cfg.settle.as_nanos()).saturating_sub(QUIET.as_nanos()))
    }

    fn inject_fault(&mut self) {
        if self.settled {
            return;
        }
        self.episodes += 1;
        let episode = self.episodes;
        let n = self.members.len();
        let lasting = Duration::from_millis(self.fault_rng.gen_range(300..8_000));
        let kinds = if self.cfg.membership_changes { 12 } else { 10 };
        let kind = self.fault_rng.gen_range(0..kinds);
        self.trace(5, kind);
        match kind {
            0 | 1 => {
                // A symmetric partition into two or three groups.
                let groups = if n >= 3 && self.fault_rng.gen_bool(0.3) { 3 } else { 2 };
                let side: Vec<usize> = (0..n).map(|_| self.fault_rng.gen_range(0..groups)).collect();
                self.partition(episode, lasting, |a, b| side[a] != side[b]);
            }
            2 => {
                // Asymmetric: one member hears nobody, or nobody hears it.
                let m = self.fault_rng.gen_range(0..n);
                let inbound = self.fault_rng.gen_bool(0.5);
                self.partition(episode, lasting, |a, b| if inbound { b == m } else { a == m });
            }
            3 => {
                // The leader cut off from its followers (the cloud link is not modelled here).
                let leader = self.current_leader().unwrap_or(0);
                self.partition(episode, lasting, |a, b| (a == leader) != (b == leader));
            }
            4 | 5 => {
                // A crash: often the leader, possibly between append and commit.
                let victim = match self.current_leader() {
                    Some(l) if kind == 4 => l,
                    _ => self.fault_rng.gen_range(0..n),
                };
                self.crash(victim);
                self.schedule(lasting.min(Duration::from_secs(4)), Ev::Restart { member: victim });
            }
            8 => {
                // A process pause longer than an election timeout, often of the leader.
                let victim = match self.current_leader() {
                    Some(l) if self.fault_rng.gen_bool(0.7) => l,
                    _ => self.fault_rng.gen_range(0..n),
                };
                let max = self.cfg.raft.election_timeout_max.as_nanos();
                let lasting = Duration(self.fault_rng.gen_range(max..4 * max));
                self.pause(victim, lasting);
            }
            9 => self.transfer_leadership(),
            10 | 11 => self.change_membership(),
            6 => {
                let m = self.fault_rng.gen_range(0..n);
                self.members[m].slow_disk = Some(episode);
                self.schedule(lasting, Ev::SlowDiskEnd { member: m, episode });
            }
            _ => {
                self.long_delays = Some(episode);
                self.schedule(lasting, Ev::LongDelaysEnd { episode });
            }
        }
        let gap = Duration::from_millis(self.fault_rng.gen_range(500..5_000));
        self.schedule(gap, Ev::Fault);
    }

    /// The leader proposes one to three changes in a row (all but the first are refused
    /// while the first is uncommitted): promote a learner, add a process outside the group
    /// as a learner, or (above two voters) remove a voter, perhaps itself.
    fn change_membership(&mut self) {
        let attempts = self.fault_rng.gen_range(1..=3);
        for _ in 0..attempts {
            let Some(l) = self.current_leader() else { return };
            let m = self.members[l].raft.as_ref().expect("the leader is up").membership().clone();
            let outside: Vec<NodeId> = self.members.iter().map(|x| x.id).filter(|id| !m.contains(*id)).collect();
            let change = match self.fault_rng.gen_range(0..3) {
                0 if !m.learners.is_empty() => {
                    let learners: Vec<NodeId> = m.learners.iter().copied().collect();
                    MembershipChange::Promote(learners[self.fault_rng.gen_range(0..learners.len())])
                }
                1 if !outside.is_empty() => {
                    MembershipChange::AddLearner(outside[self.fault_rng.gen_range(0..outside.len())])
                }
                2 if m.voters.len() > 2 => {
                    let voters: Vec<NodeId> = m.voters.iter().copied().collect();
                    MembershipChange::Remove(voters[self.fault_rng.gen_range(0..voters.len())])
                }
                _ => continue,
            };
            let now = self.now;
            let outcome = self.members[l].raft.as_mut().expect("up").propose_membership(now, change);
            self.trace(8, u64::from(outcome.is_ok()));
            if outcome.is_ok() {
                self.report.membership_changes += 1;
            }
            self.drain(l);
        }
    }

    /// The leader hands over to another voter (as an operator draining a device would).
    fn transfer_leadership(&mut self) {
        let Some(l) = self.current_leader() else { return };
        let voters: Vec<NodeId> =
            self.members[l].raft.as_ref().expect("up").membership().voters.iter().copied().collect();
        let to = voters[self.fault_rng.gen_range(0..voters.len())];
        let now = self.now;
        let outcome = self.members[l].raft.as_mut().expect("up").transfer_leader(now, to);
        self.trace(11, u64::from(outcome.is_ok()));
        if outcome.is_ok() {
            self.report.transfers += 1;
        }
        self.drain(l);
    }

    fn partition(&mut self, episode: u64, lasting: Duration, cut: impl Fn(usize, usize) -> bool) {
        self.report.partitions += 1;
        let n = self.members.len();
        self.blocked = (0..n).flat_map(|a| (0..n).map(move |b| (a, b))).filter(|&(a, b)| a != b && cut(a, b)).collect();
        self.partition_episode = episode;
        self.schedule(lasting, Ev::Heal { episode });
    }

    fn current_leader(&self) -> Option<usize> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.raft.as_ref().filter(|r| r.role() == Role::Leader).map(|r| (r.term(), i)))
            .max()
            .map(|(_, i)| i)
    }

    fn crash(&mut self, i: usize) {
        if self.members[i].raft.take().is_none() {
            return;
        }
        self.report.crashes += 1;
        self.trace(6, i as u64);
        let m = &mut self.members[i];
        m.incarnation += 1;
        m.disk_free_at = self.now;
        m.paused = false;
        m.inbox.clear();
        for c in 0..self.clients.len() {
            if self.clients[c].pending.as_ref().is_some_and(|p| p.member == i) {
                self.give_up(c);
            }
        }
    }

    fn restart(&mut self, i: usize) {
        if self.members[i].raft.is_some() {
            return;
        }
        self.trace(7, i as u64);
        let initial = Membership::of_voters((1..=self.cfg.initial_voters as u64).map(NodeId));
        let m = &mut self.members[i];
        let seed = rng::mix(self.seed ^ rng::mix(m.id.0 ^ (u64::from(m.incarnation) << 32)));
        let (hard, snapshot, log) = (m.durable.hard, m.durable.snapshot.clone(), m.durable.log.clone());
        m.raft =
            Some(Raft::new(m.id, initial, self.cfg.raft.clone(), seed, self.now, Restored { hard, snapshot, log }));
        m.kv = decode_kv(&m.durable.snapshot.data);
        m.applied = m.durable.snapshot.index;
        m.reported_commit = 0;
        let (id, base) = (m.id, m.applied);
        self.checker.on_restart(id, base);
    }

    fn settle(&mut self) {
        self.settled = true;
        self.blocked.clear();
        self.long_delays = None;
        self.loss = 0.0;
        self.duplication = 0.0;
        for i in 0..self.members.len() {
            self.members[i].slow_disk = None;
            self.restart(i);
        }
        self.settle_commit = self.max_commit();
        self.check_logs();
    }

    fn max_commit(&self) -> Index {
        self.members.iter().filter_map(|m| m.raft.as_ref()).map(Raft::commit_index).max().unwrap_or(0)
    }

    fn check_logs(&mut self) {
        let logs: Vec<HeldLog> = self
            .members
            .iter()
            .filter_map(|m| {
                let raft = m.raft.as_ref()?;
                let first = raft.snapshot_index() + 1;
                let sigs = (first..=raft.last_index()).map(|i| EntrySig::of(raft.entry(i).expect("in log"))).collect();
                Some((m.id, first, sigs))
            })
            .collect();
        let v = check_log_matching(&logs);
        self.report.violations.extend(v);
    }

    fn finish(mut self) -> ClusterReport {
        self.check_logs();
        self.report.violations.extend(self.checker.violations().iter().cloned());
        if self.checker.violations_dropped() > 0 {
            let n = self.checker.violations_dropped();
            self.report.violations.push(format!("… and {n} more violations"));
        }
        self.report.leaders_elected = self.checker.leaders_elected();
        self.report.entries_committed = self.checker.committed_count();
        self.check_convergence();
        self.check_acked_puts_present_once();
        for c in 0..self.clients.len() {
            if self.clients[c].pending.is_some() {
                self.give_up(c);
            }
        }
        let verdict = linearizable::check(&self.history, self.cfg.linearizability_steps_max);
        self.report.linearizability = verdict.to_string();
        match verdict {
            linearizable::Verdict::Linearizable => {}
            linearizable::Verdict::Unknown { .. } => {
                self.report.liveness.get_or_insert(format!("linearizability undecided: {verdict}"));
            }
            linearizable::Verdict::NotLinearizable { .. } => self.report.violations.push(verdict.to_string()),
        }
        self.report.trace_hash = format!("{:016x}", self.trace_hash);
        self.report
    }

    /// After the settle phase: one leader, every member applied the same commit, and the
    /// group committed something after the faults healed.
    fn check_convergence(&mut self) {
        let leaders = self.members.iter().filter(|m| m.raft.as_ref().is_some_and(|r| r.role() == Role::Leader)).count();
        let commit = self.max_commit();
        let group = self
            .current_leader()
            .and_then(|l| self.members[l].raft.as_ref())
            .map(|r| r.membership().clone())
            .unwrap_or_default();
        let lagging: Vec<String> = self
            .members
            .iter()
            .filter(|m| group.contains(m.id) && m.applied < commit)
            .map(|m| format!("{} applied {}", m.id, m.applied))
            .collect();
        let problem = if leaders != 1 {
            Some(format!("{leaders} leaders after settling"))
        } else if !lagging.is_empty() {
            Some(format!("not converged at commit {commit}: {}", lagging.join(", ")))
        } else if commit <= self.settle_commit {
            Some(format!("no progress after healing: commit stayed at {commit}"))
        } else {
            None
        };
        if let Some(p) = problem {
            self.report.liveness = Some(p);
        }
    }

    fn check_acked_puts_present_once(&mut self) {
        let mut seen: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        for command in self.applied_commands.values() {
            *seen.entry(*command).or_default() += 1;
        }
        for op in &self.history {
            if let (KvOp::Put { value, .. }, Some(KvResult::Written)) = (op.op, op.result) {
                let n = seen.get(&(op.client, value & 0xffff_ffff)).copied().unwrap_or(0);
                if n != 1 {
                    self.report.violations.push(format!(
                        "acknowledged put (client {}, value {value}) is in the log {n} times",
                        op.client
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_cluster_elects_one_leader_and_serves_clients() {
        let mut cfg = ClusterConfig::new(3);
        cfg.fault_phase = Duration::from_secs(1);
        cfg.settle = Duration::from_secs(10);
        let mut w = World::new(cfg, 7);
        // No faults: the first fault is drawn after the fault phase ends.
        w.run();
        let r = w.finish();
        assert!(r.passed(), "{r:#?}");
        assert_eq!(r.leaders_elected, 1, "{r:#?}");
        assert!(r.puts_acked > 50 && r.gets_acked > 50, "{r:#?}");
    }

    #[test]
    fn same_seed_same_trace() {
        let cfg = ClusterConfig::new(3);
        let a = run(&cfg, 11);
        let b = run(&cfg, 11);
        let c = run(&cfg, 12);
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_ne!(a.trace_hash, c.trace_hash);
    }
}

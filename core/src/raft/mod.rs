//! Raft for a site cluster, sans-IO.
//!
//! [`Raft`] is one member of a group. The driver feeds it messages ([`Raft::step`]),
//! timeouts ([`Raft::tick`]), proposals ([`Raft::propose`]), linearizable read requests
//! ([`Raft::read_index`]) and storage completions ([`Raft::persisted`]); it drains
//! [`Raft::poll_action`] and asks [`Raft::poll_timeout`] when to tick next, the same
//! driver's rule as [`crate::Node`].
//!
//! Built here: leader election with randomized timeouts drawn from the member's seed,
//! pre-vote, check-quorum, log replication with batching and pipelining, commit and apply,
//! leader transfer, ReadIndex reads, and snapshots: the driver compacts the log below a
//! snapshot of its state machine ([`Raft::compact`]), and a leader sends its snapshot to a
//! follower that needs entries it no longer holds; and membership change, one member at
//! a time (see below); and, as an option, lease reads (see below). [`crate::site`] drives
//! it inside a [`crate::Node`]. Not built yet: chunked snapshot transfer.
//!
//! # What must be durable before what
//!
//! Every change to the term, the vote or the log is handed to the driver as one
//! [`Action::Persist`] per step, numbered in order. Messages produced while any persist is
//! outstanding are **held inside `Raft`** until the driver reports, by
//! [`Raft::persisted`], that the write they may depend on completed (its fsync returned).
//! So a vote is never granted, an append never acknowledged, and a new term never
//! announced before it is durable: the rule is enforced here, not left to the driver. The
//! driver must perform persists in the order issued and report them in that order
//! (asserted).
//!
//! A member applies an entry only once it is both committed and durable in its own log,
//! and the leader counts itself toward a quorum only with its durable entries.
//!
//! # Membership change
//!
//! One member at a time (Raft thesis §4.1): add a learner (it receives the log but neither
//! votes nor counts toward a quorum), promote a learner to voter, or remove a member. Any
//! two majorities of configurations that differ by one voter overlap, so no joint
//! consensus is needed. A configuration takes effect on each member as soon as its entry
//! is in that member's log (committed or not); a truncated configuration entry is undone.
//! Two rules make this safe:
//!
//! - at most one configuration entry is uncommitted at a time;
//! - a leader proposes a change only after it committed an entry of its own term (its
//!   `Noop`). This is the fix for the single-server change bug Ongaro described in 2015: a
//!   leader that had not committed in its term could otherwise commit a change decided by a
//!   majority of an older configuration that a concurrent change had already replaced.
//!
//! A leader that removes itself keeps leading until the removal commits (it does not
//! count itself toward that quorum), then steps down. A member that is not a voter never
//! campaigns. Messages from members outside a member's configuration are still handled,
//! since a member may not yet have seen the entry that added their sender; only voters'
//! votes and members' acknowledgements are counted.
//!
//! # Lease reads and their clock assumption
//!
//! With `lease_reads`, [`Raft::read_lease`] answers a read without a round trip while the
//! leader holds a lease: a majority of voters (itself included) acknowledged a heartbeat
//! round sent at `start`, and `now < start + election_timeout_min - lease_clock_margin`.
//! Each of those voters refuses to help elect another leader until
//! `election_timeout_min` after it heard that round (pre-vote, the vote lease, and a
//! member that starts refuses votes for `election_timeout_min` too, since a restart
//! forgets whom it heard). So no other leader can exist before the lease ends **provided
//! the members' clocks advance at rates that differ by less than
//! `lease_clock_margin / election_timeout_min`** (a 10% margin tolerates a 10% drift in
//! rate; quartz clocks drift by about 0.01%). A process pause is covered: the driver's
//! `now` advances during it, so the lease has ended when the member runs again. A leader
//! that began a transfer counts only rounds sent after the transfer's deadline, since the
//! transfer's votes break the followers' leases. Without `lease_reads` (the default), use
//! [`Raft::read_index`], which assumes nothing about clocks.
//!
//! # Trust
//!
//! Members trust each other: they are authenticated devices of one site, and Raft is not
//! Byzantine-tolerant. Bytes from the network are decoded and checked by [`wire::decode`];
//! a well-formed message that breaks the protocol (a leader contradicting a committed
//! entry, an acknowledgement beyond the leader's log) trips an assertion, as any other
//! broken invariant.
//!
//! # Liveness choices
//!
//! - **Pre-vote**: a member whose election timer fires first asks the others whether they
//!   would vote for it in the next term, without raising its own term. A member that
//!   heard from a leader within `election_timeout_min` says no. So a member that was cut
//!   off and rejoins does not depose a working leader.
//! - **Check-quorum**: a leader that has not heard from a majority (itself included)
//!   within `election_timeout_min` steps down, so a leader on the minority side of a
//!   partition stops accepting proposals. Its lease is the same window.

mod progress;
pub mod store;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::types::{Duration, Instant, NodeId};
use progress::Progress;

/// A Raft term.
pub type Term = u64;
/// A position in the Raft log. The first entry has index 1; index 0 is the empty prefix.
pub type Index = u64;

/// The limits and timings of one Raft group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    /// A follower that hears no leader for a time drawn uniformly from
    /// `[election_timeout_min, election_timeout_max)` starts a pre-vote.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How often a leader sends heartbeats. Well below `election_timeout_min`.
    pub heartbeat_interval: Duration,
    /// The most entries one append message carries.
    pub append_entries_max: usize,
    /// The most entry bytes one append message carries (at least one entry is sent).
    pub append_bytes_max: usize,
    /// Append messages sent to one follower and not yet answered (pipelining).
    pub inflight_appends_max: usize,
    /// Bytes of entries a leader holds uncommitted before it refuses proposals.
    pub uncommitted_bytes_max: usize,
    /// ReadIndex requests a leader holds at once.
    pub pending_reads_max: usize,
    /// Whether [`Raft::read_lease`] may answer (see the module docs for its clock assumption).
    pub lease_reads: bool,
    /// How much shorter than `election_timeout_min` a lease is, for clock drift.
    pub lease_clock_margin: Duration,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            heartbeat_interval: Duration::from_millis(100),
            append_entries_max: 256,
            append_bytes_max: 256 << 10,
            inflight_appends_max: 4,
            uncommitted_bytes_max: 4 << 20,
            pending_reads_max: 256,
            lease_reads: false,
            lease_clock_margin: Duration::from_millis(100),
        }
    }
}

impl RaftConfig {
    /// Checks the relations the algorithm relies on; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.election_timeout_min >= self.election_timeout_max {
            return Err("raft.election_timeout_min must be below raft.election_timeout_max".into());
        }
        if self.heartbeat_interval.as_nanos() == 0
            || self.heartbeat_interval.as_nanos() * 2 > self.election_timeout_min.as_nanos()
        {
            return Err(
                "raft.heartbeat_interval must be above zero and at most half of raft.election_timeout_min".into()
            );
        }
        if self.append_entries_max > wire::ENTRIES_PER_MESSAGE_MAX {
            return Err(format!(
                "raft.append_entries_max must be at most {} (what one message may carry)",
                wire::ENTRIES_PER_MESSAGE_MAX
            ));
        }
        if self.append_entries_max == 0 || self.append_bytes_max == 0 {
            return Err("raft.append_entries_max and raft.append_bytes_max must be above zero".into());
        }
        if self.inflight_appends_max == 0 || self.pending_reads_max == 0 {
            return Err("raft.inflight_appends_max and raft.pending_reads_max must be above zero".into());
        }
        if self.uncommitted_bytes_max == 0 {
            return Err("raft.uncommitted_bytes_max must be above zero".into());
        }
        if self.lease_clock_margin >= self.election_timeout_min {
            return Err("raft.lease_clock_margin must be below raft.election_timeout_min".into());
        }
        Ok(())
    }
}

/// What a member restarts from: what its storage held ([`store::replay`] rebuilds it).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Restored {
    pub hard: HardState,
    pub snapshot: Snapshot,
    /// The durable entries after `snapshot.index`, contiguous.
    pub log: Vec<Entry>,
}

/// What must survive a crash besides the log: the current term and the vote in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
}

/// The state machine as of `index` (whose entry had `term`), opaque to Raft. It replaces
/// every entry at or below `index`. `Snapshot::default()` is the empty state before index 1.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub index: Index,
    pub term: Term,
    /// The configuration as of `index`.
    pub membership: Membership,
    pub data: Vec<u8>,
}

/// Who is in the group: voters elect and form quorums; learners only receive the log.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

/// The most members (voters and learners) a group may have: a site has two to five
/// devices; the bound keeps every message and snapshot small.
pub const MEMBERS_MAX: usize = 9;

impl Membership {
    pub fn of_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), learners: BTreeSet::new() }
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }

    /// The configuration after `change`, or why it is not a valid single-member change.
    pub fn changed(&self, change: MembershipChange) -> Result<Membership, MembershipError> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner(id) => {
                if self.contains(id) {
                    return Err(MembershipError::AlreadyMember(id));
                }
                if self.voters.len() + self.learners.len() >= MEMBERS_MAX {
                    return Err(MembershipError::TooManyMembers { max: MEMBERS_MAX });
                }
                next.learners.insert(id);
            }
            MembershipChange::Promote(id) => {
                if !next.learners.remove(&id) {
                    return Err(MembershipError::NotALearner(id));
                }
                next.voters.insert(id);
            }
            MembershipChange::Remove(id) => {
                if !next.voters.remove(&id) && !next.learners.remove(&id) {
                    return Err(MembershipError::NotAMember(id));
                }
                if next.voters.is_empty() {
                    return Err(MembershipError::LastVoter(id));
                }
            }
        }
        Ok(next)
    }
}

/// One single-member change of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    AddLearner(NodeId),
    Promote(NodeId),
    Remove(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipError {
    AlreadyMember(NodeId),
    NotALearner(NodeId),
    NotAMember(NodeId),
    LastVoter(NodeId),
    TooManyMembers { max: usize },
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::AlreadyMember(id) => write!(f, "{id} is already a member"),
            MembershipError::NotALearner(id) => write!(f, "{id} is not a learner; add it as a learner first"),
            MembershipError::NotAMember(id) => write!(f, "{id} is not a member"),
            MembershipError::LastVoter(id) => write!(f, "{id} is the last voter; a group needs one"),
            MembershipError::TooManyMembers { max } => write!(f, "a group has at most {max} members"),
        }
    }
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Appended by every new leader, so that it can commit entries of earlier terms
    /// (Raft §5.4.2) and serve ReadIndex reads.
    Noop,
    /// An application command, opaque to Raft.
    Command(Vec<u8>),
    /// The group's configuration from this entry on.
    Membership(Membership),
}

impl Entry {
    /// Bytes this entry counts for toward the append and uncommitted limits.
    pub fn size(&self) -> usize {
        const HEADER: usize = 24;
        match &self.kind {
            EntryKind::Noop => HEADER,
            EntryKind::Command(data) => HEADER + data.len(),
            EntryKind::Membership(m) => HEADER + 8 * (m.voters.len() + m.learners.len()),
        }
    }
}

/// A message between two members. `term` is the sender's term, except in a pre-vote and
/// a granted pre-vote answer, where it is the term the sender would campaign in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub msg: Message,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    PreVote {
        last_index: Index,
        last_term: Term,
    },
    PreVoteResp {
        granted: bool,
    },
    /// `transfer`: sent after a leader's `TimeoutNow`, so it may break a lease.
    Vote {
        last_index: Index,
        last_term: Term,
        transfer: bool,
    },
    VoteResp {
        granted: bool,
    },
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    /// Accepted: `index` is the follower's new match. Refused: `index` is the refused
    /// `prev_index` and `hint` the follower's last index, where the leader probes next.
    AppendResp {
        accepted: bool,
        index: Index,
        hint: Index,
    },
    /// `commit` is at most what the follower is known to match; `read_seq` numbers the
    /// heartbeat round so ReadIndex requests can count acknowledgements.
    Heartbeat {
        commit: Index,
        read_seq: u64,
    },
    HeartbeatResp {
        read_seq: u64,
    },
    /// From a leader handing over: campaign now, without pre-vote.
    TimeoutNow,
    /// The leader's snapshot, for a follower that needs entries the leader compacted.
    /// Answered with an `AppendResp` accepting `snapshot.index`.
    InstallSnapshot {
        snapshot: Snapshot,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}

/// One write the driver must make durable, in this order: store `snapshot` (if set) in
/// place of the previous one and drop every stored entry at or below its index; drop every
/// stored entry with index `>= truncate_from` (if set); append `entries` (contiguous,
/// following the stored log); store `hard_state` (if set). Then sync, then call
/// [`Raft::persisted`]. A crash may lose the whole write but never a part of it that a
/// later completed persist depends on (the driver completes persists in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Persist {
    pub id: u64,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub truncate_from: Option<Index>,
    pub entries: Vec<Entry>,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Persist(Persist),
    Send(Envelope),
    /// A committed entry, durable on this member; each index exactly once, in order.
    Apply(Entry),
    /// Replace the state machine with this snapshot (from the leader); the next `Apply`
    /// is `snapshot.index + 1`.
    Restore(Snapshot),
    /// The read `ctx` may be served once entries up to `index` are applied.
    ReadReady {
        ctx: u64,
        index: Index,
    },
    /// The read `ctx` cannot be confirmed: this member stopped leading. Retry elsewhere.
    ReadFailed {
        ctx: u64,
    },
    RoleChanged {
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Retryable: the leader holds `uncommitted_bytes` not yet committed.
    Busy {
        uncommitted_bytes: usize,
        limit: usize,
    },
    /// Retryable: leadership is being handed to `to`.
    Transferring {
        to: NodeId,
    },
    /// Not retryable: one command may be at most `limit` bytes.
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    /// Retryable: a configuration change is not yet committed, or the leader has not yet
    /// committed an entry of its term.
    ChangePending,
    /// Not retryable: the change is not valid in the current configuration.
    Membership(MembershipError),
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { leader: Some(l) } => write!(f, "not the leader; the leader is {l}"),
            ProposeError::NotLeader { leader: None } => write!(f, "not the leader, and no leader is known"),
            ProposeError::Busy { uncommitted_bytes, limit } => {
                write!(f, "busy: {uncommitted_bytes} bytes uncommitted of {limit}; retry shortly")
            }
            ProposeError::Transferring { to } => write!(f, "leadership is moving to {to}; retry there"),
            ProposeError::ChangePending => {
                write!(f, "a membership change is in progress (or the leader is new); retry shortly")
            }
            ProposeError::Membership(e) => write!(f, "invalid membership change: {e}"),
            ProposeError::TooLarge { bytes, limit } => {
                write!(f, "command of {bytes} bytes is above the limit of {limit}; split it")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Retryable: a new leader has not yet committed an entry of its term.
    NotReady,
    /// Retryable: `pending_reads_max` reads are waiting.
    Busy,
    /// Retryable by [`Raft::read_index`]: no lease is held now (or lease reads are off).
    NoLease,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactError {
    /// Only applied entries may be compacted.
    NotApplied { index: Index, applied: Index },
    /// A snapshot must fit one message.
    TooLarge { bytes: usize, limit: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    NotLeader,
    UnknownMember(NodeId),
    ToSelf,
}

#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    index: Index,
    read_seq: u64,
}

/// Messages held back while a persist is outstanding (a slow fsync). Beyond this they are
/// dropped, as a lossy network would: Raft retransmits what matters.
pub const HELD_MESSAGES_MAX: usize = 1024;

/// One member of a Raft group. See the module docs for the driver's contract.
#[derive(Debug)]
pub struct Raft {
    id: NodeId,
    cfg: RaftConfig,
    /// The configuration in effect: that of the newest membership entry in the log, else
    /// the snapshot's (before any snapshot, the one given at start).
    membership: Membership,
    /// The index of the entry that set `membership` (0: the snapshot or the start).
    membership_index: Index,
    rng: Xoshiro256PlusPlus,
    now: Instant,

    hard: HardState,
    /// The state at or below `snapshot.index`; the log holds only what follows.
    snapshot: Snapshot,
    /// Entries `snapshot.index + 1 ..= last_index()`; `log[i]` has index
    /// `snapshot.index + 1 + i`.
    log: Vec<Entry>,
    commit: Index,
    applied: Index,

    role: Role,
    leader: Option<NodeId>,
    election_deadline: Instant,
    leader_heard_at: Option<Instant>,
    votes: BTreeMap<NodeId, bool>,

    progress: BTreeMap<NodeId, Progress>,
    heartbeat_due: Instant,
    quorum_check_due: Instant,
    transfer: Option<(NodeId, Instant)>,
    reads: VecDeque<PendingRead>,
    /// Numbers heartbeat rounds; `rounds_sent_at` keeps when the recent ones left.
    read_seq: u64,
    rounds_sent_at: VecDeque<(u64, Instant)>,
    /// A lease may only start at or after this (the end of a leader transfer).
    lease_floor: Instant,
    started_at: Instant,
    uncommitted_bytes: usize,

    persist_issued: u64,
    persist_done: u64,
    /// For each persist issued and not completed: the last log index it makes durable.
    persist_last: VecDeque<(u64, Index)>,
    durable_last: Index,
    hard_dirty: bool,
    snapshot_dirty: bool,
    log_dirty_from: Option<Index>,
    truncated_from: Option<Index>,

    step_sends: Vec<Envelope>,
    held: VecDeque<(u64, Envelope)>,
    held_dropped: u64,
    out: VecDeque<Action>,
    reported: (Role, Term, Option<NodeId>),
}

impl Raft {
    /// A member restarting from what its storage holds (`Restored`: its hard state, its
    /// snapshot, whose state the driver restored into its state machine, and the durable
    /// log that follows it). A new member passes `Restored::default()`.
    pub fn new(id: NodeId, membership: Membership, cfg: RaftConfig, seed: u64, now: Instant, stored: Restored) -> Raft {
        let Restored { hard, snapshot, log } = stored;
        cfg.validate().expect("raft config validated by the caller");
        assert!(snapshot.term <= hard.term, "the stored snapshot's term is above the stored term");
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.index, snapshot.index + 1 + i as Index, "stored raft log does not follow its snapshot");
            assert!(
                e.term <= hard.term,
                "stored entry {} has term {} above the stored term {}",
                e.index,
                e.term,
                hard.term
            );
            if i > 0 {
                assert!(e.term >= log[i - 1].term, "stored raft log terms decrease at {}", e.index);
            }
        }
        let durable_last = snapshot.index + log.len() as Index;
        let base = snapshot.index;
        let mut snapshot = snapshot;
        if base == 0 {
            // Before any snapshot, the "snapshot" of the empty prefix carries the
            // configuration the member was started with.
            snapshot.membership = membership.clone();
        }
        let mut raft = Raft {
            id,
            cfg,
            membership,
            membership_index: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            now,
            hard,
            snapshot,
            log,
            commit: base,
            applied: base,
            role: Role::Follower,
            leader: None,
            election_deadline: now,
            leader_heard_at: None,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            heartbeat_due: now,
            quorum_check_due: now,
            transfer: None,
            reads: VecDeque::new(),
            read_seq: 0,
            rounds_sent_at: VecDeque::new(),
            lease_floor: now,
            started_at: now,
            uncommitted_bytes: 0,
            persist_issued: 0,
            persist_done: 0,
            persist_last: VecDeque::new(),
            durable_last,
            hard_dirty: false,
            snapshot_dirty: false,
            log_dirty_from: None,
            truncated_from: None,
            step_sends: Vec::new(),
            held: VecDeque::new(),
            held_dropped: 0,
            out: VecDeque::new(),
            reported: (Role::Follower, hard.term, None),
        };
        raft.recompute_membership();
        raft.reset_election_deadline();
        raft
    }

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.hard.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> Index {
        self.commit
    }
    pub fn last_index(&self) -> Index {
        self.snapshot.index + self.log.len() as Index
    }
    /// The index of the newest snapshot; entries at or below it are compacted.
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.index
    }
    /// Entries held in memory (after the snapshot).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }
    /// The entries held in memory, after the snapshot, durable or not: with
    /// [`Raft::hard_state`] and [`Raft::snapshot`], the state every persist issued so far
    /// describes (what a driver writes to start a new storage generation).
    pub fn entries(&self) -> &[Entry] {
        &self.log
    }
    pub fn hard_state(&self) -> HardState {
        self.hard
    }
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
    /// The newest entry handed to the driver by `Action::Apply` (or restored).
    pub fn applied_index(&self) -> Index {
        self.applied
    }
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// The entry at `index`, durable or not; `None` if compacted or beyond the log.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.log.get(self.pos(index))
    }
    /// Messages waiting for an outstanding persist, and those dropped because
    /// [`HELD_MESSAGES_MAX`] were already waiting.
    pub fn held_messages(&self) -> (usize, u64) {
        (self.held.len(), self.held_dropped)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.role == Role::Leader {
            let mut t = self.heartbeat_due.min(self.quorum_check_due);
            if let Some((_, deadline)) = self.transfer {
                t = t.min(deadline);
            }
            Some(t)
        } else {
            Some(self.election_deadline)
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn tick(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.role == Role::Leader {
            self.tick_leader();
        } else if now >= self.election_deadline {
            if self.is_voter() {
                self.pre_campaign();
            } else {
                self.reset_election_deadline();
            }
        }
        self.finish_step();
    }

    /// Proposes a command. On success, the entry's (term, index): it is committed if and
    /// only if an [`Action::Apply`] later carries an entry with this index *and* term.
    pub fn propose(&mut self, now: Instant, data: Vec<u8>) -> Result<(Term, Index), ProposeError> {
        self.advance_clock(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if let Some((to, _)) = self.transfer {
            return Err(ProposeError::Transferring { to });
        }
        if data.len() > wire::COMMAND_BYTES_MAX {
            return Err(ProposeError::TooLarge { bytes: data.len(), limit: wire::COMMAND_BYTES_MAX });
        }
        let entry = Entry { term: self.hard.term, index: self.last_index() + 1, kind: EntryKind::Command(data) };
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + entry.size() > self.cfg.uncommitted_bytes_max {
            return Err(ProposeError::Busy {
                uncommitted_bytes: self.uncommitted_bytes,
                limit: self.cfg.uncommitted_bytes_max,
            });
        }
        let at = (entry.term, entry.index);
        self.leader_append(entry);
        self.finish_step();
        Ok(at)
    }

    /// Starts a linearizable read: [`Action::ReadReady`] with `ctx` follows once a
    /// majority confirmed this member still leads (Raft §6.4, ReadIndex).
    pub fn read_index(&mut self, now: Instant, ctx: u64) -> Result<(), ReadError> {
        self.advance_clock(now);
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader { leader: self.leader });
        }
        if self.term_at(self.commit) != Some(self.hard.term) {
            return Err(ReadError::NotReady);
        }
        if self.reads.len() >= self.cfg.pending_reads_max {
            return Err(ReadError::Busy);
        }
        self.broadcast_heartbeat();
        self.reads.push_back(PendingRead { ctx, index: self.commit, read_seq: self.read_seq });
        self.advance_reads();
        self.finish_step();
        Ok(())
    }

    /// A lease read (see the module docs for its clock assumption): the index a read may be
    /// served at once entries up to it are applied, or why not now.
    pub fn read_lease(&mut self, now: Instant) -> Result<Index, ReadError> {
        self.advance_clock(now);
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader { leader: self.leader });
        }
        if self.term_at(self.commit) != Some(self.hard.term) {
            return Err(ReadError::NotReady);
        }
        match self.lease_until() {
            Some(until) if now < until && self.transfer.is_none() => Ok(self.commit),
            _ => Err(ReadError::NoLease),
        }
    }

    /// When this leader's lease ends: from the newest heartbeat round a majority of voters
    /// acknowledged (and that left after `lease_floor`).
    fn lease_until(&self) -> Option<Instant> {
        if !self.cfg.lease_reads || self.role != Role::Leader {
            return None;
        }
        let sent_at = |seq: u64| self.rounds_sent_at.iter().find(|(s, _)| *s == seq).map(|(_, t)| *t);
        let voters = &self.membership.voters;
        let mut starts: Vec<Instant> = self
            .progress
            .iter()
            .filter(|(id, _)| voters.contains(id))
            .filter_map(|(_, p)| sent_at(p.read_seq_acked))
            .collect();
        if self.is_voter() {
            starts.push(self.now);
        }
        starts.sort_unstable_by(|a, b| b.cmp(a));
        let start = *starts.get(self.quorum() - 1)?;
        if start < self.lease_floor {
            return None;
        }
        Some(start.saturating_add(self.cfg.election_timeout_min).saturating_sub_duration(self.cfg.lease_clock_margin))
    }

    /// Proposes one membership change (see the module docs). On success, the entry's
    /// (term, index); the new configuration is in effect at once on this leader.
    pub fn propose_membership(
        &mut self,
        now: Instant,
        change: MembershipChange,
    ) -> Result<(Term, Index), ProposeError> {
        self.advance_clock(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if let Some((to, _)) = self.transfer {
            return Err(ProposeError::Transferring { to });
        }
        if self.membership_index > self.commit || self.term_at(self.commit) != Some(self.hard.term) {
            return Err(ProposeError::ChangePending);
        }
        let next = self.membership.changed(change).map_err(ProposeError::Membership)?;
        let entry = Entry { term: self.hard.term, index: self.last_index() + 1, kind: EntryKind::Membership(next) };
        let at = (entry.term, entry.index);
        self.leader_append(entry);
        self.finish_step();
        Ok(at)
    }

    /// Hands leadership to `to` once its log is caught up (Raft thesis §3.10). Proposals
    /// are refused meanwhile; the attempt ends after `election_timeout_max`.
    pub fn transfer_leader(&mut self, now: Instant, to: NodeId) -> Result<(), TransferError> {
        self.advance_clock(now);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if to == self.id {
            return Err(TransferError::ToSelf);
        }
        if !self.membership.voters.contains(&to) {
            return Err(TransferError::UnknownMember(to));
        }
        let deadline = now.saturating_add(self.cfg.election_timeout_max);
        self.transfer = Some((to, deadline));
        self.lease_floor = self.lease_floor.max(deadline);
        self.maybe_send_timeout_now(to);
        self.send_append(to);
        self.finish_step();
        Ok(())
    }

    /// The driver completed [`Persist`] `id` (its sync returned).
    pub fn persisted(&mut self, now: Instant, id: u64) {
        self.advance_clock(now);
        assert_eq!(id, self.persist_done + 1, "raft persists must complete in the order issued");
        let (front, last) = self.persist_last.pop_front().expect("a persist is outstanding");
        assert_eq!(front, id);
        self.persist_done = id;
        self.durable_last = last;
        while self.held.front().is_some_and(|(need, _)| *need <= id) {
            let (_, env) = self.held.pop_front().expect("checked");
            self.out.push_back(Action::Send(env));
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.finish_step();
    }

    /// Handles a message from another member.
    pub fn step(&mut self, now: Instant, env: Envelope) {
        self.advance_clock(now);
        if env.to != self.id || env.from == self.id {
            return;
        }
        if self.accept_term(&env) {
            self.dispatch(env);
        }
        self.finish_step();
    }

    /// The driver's state machine as of applied `index` is `data`: keep it as the snapshot
    /// and drop the entries at or below `index` (the persist that follows stores it).
    pub fn compact(&mut self, now: Instant, index: Index, data: Vec<u8>) -> Result<(), CompactError> {
        self.advance_clock(now);
        if index > self.applied {
            return Err(CompactError::NotApplied { index, applied: self.applied });
        }
        if data.len() > wire::SNAPSHOT_BYTES_MAX {
            return Err(CompactError::TooLarge { bytes: data.len(), limit: wire::SNAPSHOT_BYTES_MAX });
        }
        if index <= self.snapshot.index {
            return Ok(());
        }
        let term = self.term_at(index).expect("an applied entry is in the log");
        assert!(self.log_dirty_from.is_none_or(|f| f > index), "compacting entries not yet persisted");
        let membership = self.membership_at(index);
        self.log.drain(..=self.pos(index));
        self.snapshot = Snapshot { index, term, membership, data };
        self.snapshot_dirty = true;
        self.finish_step();
        Ok(())
    }

    fn on_install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        let index = snapshot.index;
        if index <= self.commit {
            self.send(from, Message::AppendResp { accepted: true, index: self.commit, hint: 0 });
            return;
        }
        if self.term_at(index) != Some(snapshot.term) && self.last_index() > self.commit {
            // Our entries past the commit may conflict with the leader's: drop them.
            self.truncate_from(self.commit + 1);
        }
        let held = (index.min(self.last_index()) - self.snapshot.index) as usize;
        self.log.drain(..held);
        if self.log.is_empty() {
            self.log_dirty_from = None;
        } else if let Some(f) = self.log_dirty_from {
            self.log_dirty_from = Some(f.max(index + 1));
        }
        self.snapshot = snapshot;
        self.snapshot_dirty = true;
        self.commit = index;
        self.applied = index;
        self.recompute_membership();
        self.out.push_back(Action::Restore(self.snapshot.clone()));
        self.send(from, Message::AppendResp { accepted: true, index, hint: 0 });
    }

    fn advance_clock(&mut self, now: Instant) {
        assert!(now >= self.now, "time went backwards");
        self.now = now;
    }

    /// Applies the term rules of Raft §5.1 (with the pre-vote and lease exceptions);
    /// returns whether the message should be handled further.
    fn accept_term(&mut self, env: &Envelope) -> bool {
        use Message::*;
        if env.term > self.hard.term {
            match env.msg {
                // A pre-vote names a term its sender has not entered; it changes nothing.
                PreVote { .. } | PreVoteResp { granted: true } => true,
                Vote { transfer, .. } if self.in_lease() && !transfer => false,
                Append { .. } | Heartbeat { .. } | InstallSnapshot { .. } | TimeoutNow => {
                    self.become_follower(env.term, Some(env.from));
                    true
                }
                _ => {
                    self.become_follower(env.term, None);
                    true
                }
            }
        } else if env.term < self.hard.term {
            match env.msg {
                // Tell a stale leader or pre-candidate the newer term so it steps down.
                Append { .. } | Heartbeat { .. } | InstallSnapshot { .. } => {
                    let hint = self.last_index();
                    self.send(env.from, Message::AppendResp { accepted: false, index: 0, hint });
                }
                PreVote { .. } => self.send(env.from, Message::PreVoteResp { granted: false }),
                _ => {}
            }
            false
        } else {
            true
        }
    }

    fn dispatch(&mut self, env: Envelope) {
        let from = env.from;
        match env.msg {
            Message::PreVote { last_index, last_term } => {
                let granted =
                    env.term > self.hard.term && !self.in_lease() && self.log_up_to_date(last_index, last_term);
                let term = if granted { env.term } else { self.hard.term };
                self.send_with_term(from, term, Message::PreVoteResp { granted });
            }
            Message::PreVoteResp { granted } => {
                if self.role == Role::PreCandidate && (!granted || env.term == self.hard.term + 1) {
                    self.count_vote(from, granted);
                }
            }
            Message::Vote { last_index, last_term, .. } => self.on_vote(from, last_index, last_term),
            Message::VoteResp { granted } => {
                if self.role == Role::Candidate {
                    self.count_vote(from, granted);
                }
            }
            Message::Append { prev_index, prev_term, entries, commit } => {
                self.follow(from);
                self.on_append(from, prev_index, prev_term, entries, commit);
            }
            Message::AppendResp { accepted, index, hint } => {
                if self.role == Role::Leader {
                    self.on_append_resp(from, accepted, index, hint);
                }
            }
            Message::Heartbeat { commit, read_seq } => {
                self.follow(from);
                let commit = commit.min(self.last_index());
                if commit > self.commit {
                    self.commit = commit;
                }
                self.send(from, Message::HeartbeatResp { read_seq });
            }
            Message::HeartbeatResp { read_seq } => {
                if self.role == Role::Leader {
                    self.on_heartbeat_resp(from, read_seq);
                }
            }
            Message::TimeoutNow => {
                if self.role != Role::Leader && self.is_voter() {
                    self.campaign(true);
                }
            }
            Message::InstallSnapshot { snapshot } => {
                self.follow(from);
                self.on_install_snapshot(from, snapshot);
            }
        }
    }

    /// A follower that heard its leader within `election_timeout_min` refuses to help
    /// depose it; a leader is in its lease while check-quorum keeps it leading.
    fn in_lease(&self) -> bool {
        match self.role {
            Role::Leader => true,
            _ => {
                // A member that just started may have acknowledged a leader's round before
                // it crashed: it keeps that leader's lease as if it had heard it now.
                self.now < self.started_at.saturating_add(self.cfg.election_timeout_min)
                    || (self.leader.is_some()
                        && self
                            .leader_heard_at
                            .is_some_and(|t| self.now < t.saturating_add(self.cfg.election_timeout_min)))
            }
        }
    }

    /// Raft §5.4.1: a candidate's log is at least as up to date as ours.
    fn log_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    fn on_vote(&mut self, from: NodeId, last_index: Index, last_term: Term) {
        let can_vote = self.hard.vote == Some(from) || (self.hard.vote.is_none() && self.leader.is_none());
        let granted = self.role == Role::Follower && can_vote && self.log_up_to_date(last_index, last_term);
        if granted {
            self.hard.vote = Some(from);
            self.hard_dirty = true;
            self.reset_election_deadline();
        }
        self.send(from, Message::VoteResp { granted });
    }

    fn follow(&mut self, leader: NodeId) {
        if self.role != Role::Follower || self.leader != Some(leader) {
            assert!(self.role != Role::Leader, "two leaders in term {}: {} and {leader}", self.hard.term, self.id);
            self.become_follower(self.hard.term, Some(leader));
        }
        self.leader_heard_at = Some(self.now);
        self.reset_election_deadline();
    }

    fn on_append(&mut self, from: NodeId, prev_index: Index, prev_term: Term, entries: Vec<Entry>, commit: Index) {
        if prev_index < self.commit {
            // Everything up to the commit index matches the leader (it may be compacted
            // here): say so, and the leader goes on from there.
            self.send(from, Message::AppendResp { accepted: true, index: self.commit, hint: 0 });
            return;
        }
        if prev_index > self.last_index() || self.term_at(prev_index) != Some(prev_term) {
            assert!(
                prev_index > self.commit || prev_index > self.last_index(),
                "{}: leader {from} disagrees with committed entry {prev_index}",
                self.id
            );
            let hint = self.last_index().min(prev_index.saturating_sub(1));
            self.send(from, Message::AppendResp { accepted: false, index: prev_index, hint });
            return;
        }
        let mut expected = prev_index + 1;
        for entry in entries {
            assert_eq!(entry.index, expected, "append entries are not contiguous");
            expected += 1;
            match self.term_at(entry.index) {
                Some(t) if t == entry.term => continue,
                Some(_) => self.truncate_from(entry.index),
                None => {}
            }
            self.append(entry);
        }
        let last_new = expected - 1;
        let commit = commit.min(last_new);
        if commit > self.commit {
            self.commit = commit;
        }
        self.send(from, Message::AppendResp { accepted: true, index: last_new, hint: 0 });
    }

    fn on_append_resp(&mut self, from: NodeId, accepted: bool, index: Index, hint: Index) {
        let last = self.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        if accepted {
            assert!(index <= last, "{from} acknowledged entry {index} beyond the leader's log");
            if pr.on_accepted(index) {
                self.maybe_commit();
                self.maybe_send_timeout_now(from);
            }
        } else if !pr.on_refused(index, hint) {
            return;
        }
        self.send_append(from);
    }

    fn on_heartbeat_resp(&mut self, from: NodeId, read_seq: u64) {
        let last = self.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        pr.read_seq_acked = pr.read_seq_acked.max(read_seq);
        pr.probe_paused = false;
        let behind = pr.matched < last;
        self.advance_reads();
        if behind {
            self.send_append(from);
        }
    }

    fn tick_leader(&mut self) {
        if self.now >= self.quorum_check_due {
            self.quorum_check_due = self.now.saturating_add(self.cfg.election_timeout_min);
            let voters = &self.membership.voters;
            let active = usize::from(self.is_voter())
                + self.progress.iter().filter(|(id, p)| p.recent_active && voters.contains(id)).count();
            if active < self.quorum() {
                self.become_follower(self.hard.term, None);
                return;
            }
            self.progress.values_mut().for_each(|p| p.recent_active = false);
        }
        if let Some((_, deadline)) = self.transfer {
            if self.now >= deadline {
                self.transfer = None;
            }
        }
        if self.now >= self.heartbeat_due {
            self.heartbeat_due = self.now.saturating_add(self.cfg.heartbeat_interval);
            for pr in self.progress.values_mut() {
                pr.on_heartbeat_tick();
            }
            self.broadcast_heartbeat();
            let peers: Vec<NodeId> = self.progress.keys().copied().collect();
            for peer in peers {
                self.send_append(peer);
            }
        }
    }

    /// Sends a new heartbeat round to every member and remembers when it left.
    fn broadcast_heartbeat(&mut self) {
        /// Rounds remembered for leases: acknowledgements of older ones count for nothing.
        const ROUNDS_KEPT: usize = 32;
        self.read_seq += 1;
        if self.rounds_sent_at.len() == ROUNDS_KEPT {
            self.rounds_sent_at.pop_front();
        }
        self.rounds_sent_at.push_back((self.read_seq, self.now));
        let peers: Vec<(NodeId, Index)> = self.progress.iter().map(|(id, p)| (*id, p.matched)).collect();
        for (peer, matched) in peers {
            let commit = matched.min(self.commit);
            self.send(peer, Message::Heartbeat { commit, read_seq: self.read_seq });
        }
    }

    fn pre_campaign(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.reset_election_deadline();
        let (last_index, last_term) = (self.last_index(), self.last_term());
        let term = self.hard.term + 1;
        for peer in self.voter_peers() {
            self.send_with_term(peer, term, Message::PreVote { last_index, last_term });
        }
        self.count_vote(self.id, true);
    }

    fn campaign(&mut self, transfer: bool) {
        self.hard.term += 1;
        self.hard.vote = Some(self.id);
        self.hard_dirty = true;
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.reset_election_deadline();
        let (last_index, last_term) = (self.last_index(), self.last_term());
        for peer in self.voter_peers() {
            self.send(peer, Message::Vote { last_index, last_term, transfer });
        }
        self.count_vote(self.id, true);
    }

    fn count_vote(&mut self, from: NodeId, granted: bool) {
        if !self.membership.voters.contains(&from) {
            return;
        }
        self.votes.insert(from, granted);
        let yes = self.votes.values().filter(|g| **g).count();
        let no = self.votes.len() - yes;
        if yes >= self.quorum() {
            match self.role {
                Role::PreCandidate => self.campaign(false),
                Role::Candidate => self.become_leader(),
                _ => unreachable!("votes are counted only by candidates"),
            }
        } else if no >= self.quorum() {
            self.become_follower(self.hard.term, None);
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.hard.term, "terms never decrease");
        if term > self.hard.term {
            self.hard.term = term;
            self.hard.vote = None;
            self.hard_dirty = true;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        self.progress.clear();
        self.transfer = None;
        self.uncommitted_bytes = 0;
        while let Some(read) = self.reads.pop_front() {
            self.out.push_back(Action::ReadFailed { ctx: read.ctx });
        }
        self.reset_election_deadline();
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        assert_eq!(self.hard.vote, Some(self.id));
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        let next = self.last_index() + 1;
        self.progress = self.peers().into_iter().map(|p| (p, Progress::new(next))).collect();
        self.heartbeat_due = self.now.saturating_add(self.cfg.heartbeat_interval);
        self.quorum_check_due = self.now.saturating_add(self.cfg.election_timeout_min);
        self.uncommitted_bytes = self.log[self.pos(self.commit + 1)..].iter().map(Entry::size).sum();
        let noop = Entry { term: self.hard.term, index: next, kind: EntryKind::Noop };
        self.leader_append(noop);
    }

    fn leader_append(&mut self, entry: Entry) {
        self.uncommitted_bytes += entry.size();
        self.append(entry);
        for peer in self.peers() {
            self.send_append(peer);
        }
    }

    /// Sends `to` what its progress allows: one probe, or entries up to the pipeline limit.
    fn send_append(&mut self, to: NodeId) {
        let last = self.last_index();
        let Some(pr) = self.progress.get(&to) else { return };
        if !pr.may_send(last, self.cfg.inflight_appends_max) {
            return;
        }
        if pr.next <= self.snapshot.index {
            // The entries it needs are compacted: send the snapshot instead.
            let snapshot = self.snapshot.clone();
            self.progress.get_mut(&to).expect("checked").on_snapshot_sent(snapshot.index);
            self.send(to, Message::InstallSnapshot { snapshot });
            return;
        }
        let prev_index = pr.next - 1;
        let prev_term = self.term_at(prev_index).expect("next is within the leader's log");
        let mut entries = Vec::new();
        let mut bytes = 0;
        for e in &self.log[self.pos(prev_index + 1)..] {
            if entries.len() == self.cfg.append_entries_max
                || (!entries.is_empty() && bytes + e.size() > self.cfg.append_bytes_max)
            {
                break;
            }
            bytes += e.size();
            entries.push(e.clone());
        }
        let sent_last = prev_index + entries.len() as Index;
        self.progress.get_mut(&to).expect("checked").on_sent(sent_last);
        let commit = self.commit;
        self.send(to, Message::Append { prev_index, prev_term, entries, commit });
    }

    fn maybe_send_timeout_now(&mut self, to: NodeId) {
        let last = self.last_index();
        if self.transfer.is_some_and(|(t, _)| t == to) && self.progress.get(&to).is_some_and(|p| p.matched == last) {
            self.send(to, Message::TimeoutNow);
        }
    }

    /// Raft §5.3–5.4: commit the highest index a quorum holds durably, if it is of the
    /// current term.
    fn maybe_commit(&mut self) {
        let voters = &self.membership.voters;
        let mut matched: Vec<Index> =
            self.progress.iter().filter(|(id, _)| voters.contains(id)).map(|(_, p)| p.matched).collect();
        if self.is_voter() {
            matched.push(self.durable_last);
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&candidate) = matched.get(self.quorum() - 1) else { return };
        if candidate > self.commit && self.term_at(candidate) == Some(self.hard.term) {
            let newly: usize =
                self.log[self.pos(self.commit + 1)..self.pos(candidate + 1)].iter().map(Entry::size).sum();
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(newly);
            self.commit = candidate;
            self.advance_reads();
            if !self.is_voter() && self.membership_index <= self.commit {
                // This leader's removal is committed: it hands over by stepping down.
                self.become_follower(self.hard.term, None);
            }
        }
    }

    fn advance_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let quorum = self.quorum();
        while let Some(read) = self.reads.front() {
            let voters = &self.membership.voters;
            let acks = usize::from(self.is_voter())
                + self
                    .progress
                    .iter()
                    .filter(|(id, p)| voters.contains(id) && p.read_seq_acked >= read.read_seq)
                    .count();
            if acks < quorum {
                break;
            }
            let read = self.reads.pop_front().expect("checked");
            self.out.push_back(Action::ReadReady { ctx: read.ctx, index: read.index });
        }
    }

    fn append(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "log entries are appended in order");
        assert!(entry.term >= self.last_term(), "log terms never decrease");
        assert!(entry.term <= self.hard.term, "an entry from a future term");
        self.log_dirty_from.get_or_insert(entry.index);
        let membership = match &entry.kind {
            EntryKind::Membership(m) => Some((m.clone(), entry.index)),
            _ => None,
        };
        self.log.push(entry);
        if let Some((m, index)) = membership {
            self.set_membership(m, index);
        }
    }

    /// A configuration takes effect: a leader starts or stops replicating to members.
    fn set_membership(&mut self, membership: Membership, index: Index) {
        self.membership = membership;
        self.membership_index = index;
        if self.role != Role::Leader {
            return;
        }
        let next = self.last_index() + 1;
        let members: BTreeSet<NodeId> = self.membership.members().filter(|m| *m != self.id).collect();
        self.progress.retain(|id, _| members.contains(id));
        for m in members {
            self.progress.entry(m).or_insert_with(|| Progress::new(next));
        }
    }

    /// The configuration of the newest membership entry in the log, else the snapshot's.
    fn recompute_membership(&mut self) {
        let (m, index) = self.membership_within(self.log.len());
        self.set_membership(m, index);
    }

    /// The configuration as of `index` (at or after the snapshot).
    fn membership_at(&self, index: Index) -> Membership {
        self.membership_within(self.pos(index) + 1).0
    }

    /// The configuration after the first `held` entries of the log, and the index of the
    /// entry that set it (0: the snapshot).
    fn membership_within(&self, held: usize) -> (Membership, Index) {
        self.log[..held]
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                EntryKind::Membership(m) => Some((m.clone(), e.index)),
                _ => None,
            })
            .unwrap_or_else(|| (self.snapshot.membership.clone(), 0))
    }

    fn is_voter(&self) -> bool {
        self.membership.voters.contains(&self.id)
    }

    fn truncate_from(&mut self, index: Index) {
        assert!(index > self.commit, "{}: would truncate committed entry {index} (commit {})", self.id, self.commit);
        assert!(self.role != Role::Leader, "a leader never truncates its log");
        self.log.truncate(self.pos(index));
        if self.membership_index >= index {
            self.recompute_membership();
        }
        self.truncated_from = Some(self.truncated_from.map_or(index, |t| t.min(index)));
        if let Some(from) = self.log_dirty_from {
            self.log_dirty_from = (from < index).then_some(from);
        }
        let keep = index - 1;
        self.durable_last = self.durable_last.min(keep);
        for (_, last) in self.persist_last.iter_mut() {
            *last = (*last).min(keep);
        }
    }

    /// Ends every public call: issues the persist this step needs, releases or holds the
    /// messages it produced, applies what is committed and durable, and reports a role change.
    fn finish_step(&mut self) {
        if self.hard_dirty || self.snapshot_dirty || self.log_dirty_from.is_some() || self.truncated_from.is_some() {
            self.issue_persist();
        }
        let sends = std::mem::take(&mut self.step_sends);
        if self.persist_issued > self.persist_done {
            for env in sends {
                // Raft tolerates lost messages, so a full queue drops rather than grows.
                if self.held.len() < HELD_MESSAGES_MAX {
                    self.held.push_back((self.persist_issued, env));
                } else {
                    self.held_dropped += 1;
                }
            }
        } else {
            self.out.extend(sends.into_iter().map(Action::Send));
        }
        self.apply_committed();
        let now = (self.role, self.hard.term, self.leader);
        if now != self.reported {
            self.reported = now;
            self.out.push_back(Action::RoleChanged { role: now.0, term: now.1, leader: now.2 });
        }
        assert!(self.commit <= self.last_index(), "commit beyond the log");
        assert!(self.applied <= self.commit, "applied beyond commit");
    }

    fn issue_persist(&mut self) {
        self.persist_issued += 1;
        let id = self.persist_issued;
        let hard_state = std::mem::take(&mut self.hard_dirty).then_some(self.hard);
        let snapshot = std::mem::take(&mut self.snapshot_dirty).then(|| self.snapshot.clone());
        let truncate_from = self.truncated_from.take();
        let entries = match self.log_dirty_from.take() {
            Some(from) => self.log[self.pos(from)..].to_vec(),
            None => Vec::new(),
        };
        self.persist_last.push_back((id, self.last_index()));
        self.out.push_back(Action::Persist(Persist { id, hard_state, snapshot, truncate_from, entries }));
    }

    fn apply_committed(&mut self) {
        let upto = self.commit.min(self.durable_last);
        while self.applied < upto {
            self.applied += 1;
            let entry = self.log[self.pos(self.applied)].clone();
            self.out.push_back(Action::Apply(entry));
        }
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.send_with_term(to, self.hard.term, msg);
    }

    fn send_with_term(&mut self, to: NodeId, term: Term, msg: Message) {
        self.step_sends.push(Envelope { from: self.id, to, term, msg });
    }

    fn reset_election_deadline(&mut self) {
        let (lo, hi) = (self.cfg.election_timeout_min.as_nanos(), self.cfg.election_timeout_max.as_nanos());
        self.election_deadline = self.now.saturating_add(Duration(self.rng.gen_range(lo..hi)));
    }

    /// Every other member, learners included: whom a leader replicates to.
    fn peers(&self) -> Vec<NodeId> {
        self.membership.members().filter(|v| *v != self.id).collect()
    }

    /// Every other voter: whom a candidate asks.
    fn voter_peers(&self) -> Vec<NodeId> {
        self.membership.voters.iter().copied().filter(|v| *v != self.id).collect()
    }

    fn quorum(&self) -> usize {
        self.membership.voters.len() / 2 + 1
    }

    fn last_term(&self) -> Term {
        self.log.last().map_or(self.snapshot.term, |e| e.term)
    }

    /// The term of the entry at `index`; `None` if beyond the log or compacted below the
    /// snapshot (whose own index answers with its term).
    fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// Position in `log` of the entry at `index` (which must follow the snapshot).
    fn pos(&self, index: Index) -> usize {
        assert!(index > self.snapshot.index, "entry {index} is compacted (snapshot {})", self.snapshot.index);
        (index - self.snapshot.index - 1) as usize
    }
}

//! Raft, member by member: small scripted histories that show one rule each. The
//! simulator's cluster world (`outpost-sim raft`) runs the same code under random faults.

use std::collections::{BTreeSet, VecDeque};

use outpost_core::raft::{
    Action, Entry, EntryKind, Envelope, HardState, Membership, MembershipChange, MembershipError, Message,
    ProposeError, Raft, RaftConfig, ReadError, Restored, Role, Snapshot,
};
use outpost_core::types::{Duration, Instant, NodeId};

fn cfg() -> RaftConfig {
    RaftConfig {
        election_timeout_min: Duration::from_millis(500),
        election_timeout_max: Duration::from_millis(1000),
        heartbeat_interval: Duration::from_millis(100),
        ..RaftConfig::default()
    }
}

/// Members over storage that completes when told, and a network that delivers when told
/// (or drops what a cut link carries).
struct Site {
    now: Instant,
    members: Vec<Raft>,
    /// Persists issued and not yet completed, per member.
    disk: Vec<VecDeque<u64>>,
    net: VecDeque<Envelope>,
    applied: Vec<Vec<Entry>>,
    restored: Vec<Option<Snapshot>>,
    ready_reads: Vec<(usize, u64)>,
    cut: BTreeSet<usize>,
    /// Directed links that drop everything.
    blocked: BTreeSet<(usize, usize)>,
}

impl Site {
    fn new(n: u64) -> Site {
        Site::with(n, Membership::of_voters((1..=n).map(NodeId)), cfg())
    }

    /// `n` fresh processes n1..=n, each starting with `membership` and `cfg`.
    fn with(n: u64, membership: Membership, cfg: RaftConfig) -> Site {
        let members = (1..=n)
            .map(|i| {
                Raft::new(
                    NodeId(i),
                    membership.clone(),
                    cfg.clone(),
                    i,
                    Instant(0),
                    Restored { hard: HardState::default(), snapshot: Snapshot::default(), log: Vec::new() },
                )
            })
            .collect();
        Site {
            now: Instant(0),
            members,
            disk: vec![VecDeque::new(); n as usize],
            net: VecDeque::new(),
            applied: vec![Vec::new(); n as usize],
            restored: vec![None; n as usize],
            ready_reads: Vec::new(),
            cut: BTreeSet::new(),
            blocked: BTreeSet::new(),
        }
    }

    fn collect(&mut self, i: usize) {
        while let Some(a) = self.members[i].poll_action() {
            match a {
                Action::Persist(p) => self.disk[i].push_back(p.id),
                Action::Send(env) => self.net.push_back(env),
                Action::Apply(e) => self.applied[i].push(e),
                Action::Restore(s) => self.restored[i] = Some(s),
                Action::ReadReady { ctx, .. } => self.ready_reads.push((i, ctx)),
                Action::ReadFailed { .. } | Action::RoleChanged { .. } => {}
            }
        }
    }

    /// Completes every outstanding persist of member `i`.
    fn sync(&mut self, i: usize) {
        while let Some(id) = self.disk[i].pop_front() {
            self.members[i].persisted(self.now, id);
            self.collect(i);
        }
    }

    /// Delivers the messages in flight now (not those they cause), without any sync.
    fn deliver_pending(&mut self) {
        for env in std::mem::take(&mut self.net) {
            let to = env.to.0 as usize - 1;
            self.members[to].step(self.now, env);
            self.collect(to);
        }
    }

    /// Delivers, syncs and repeats until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            for i in 0..self.members.len() {
                self.sync(i);
            }
            let Some(env) = self.net.pop_front() else { return };
            let (from, to) = (env.from.0 as usize - 1, env.to.0 as usize - 1);
            if self.cut.contains(&from) || self.cut.contains(&to) || self.blocked.contains(&(from, to)) {
                continue;
            }
            self.members[to].step(self.now, env);
            self.collect(to);
        }
        panic!("the site did not settle");
    }

    /// Advances time by `d` in 10 ms steps, ticking whoever is due and settling.
    fn run_for(&mut self, d: Duration) {
        let end = self.now.saturating_add(d);
        while self.now < end {
            self.now = self.now.saturating_add(Duration::from_millis(10));
            for i in 0..self.members.len() {
                if self.members[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.members[i].tick(self.now);
                    self.collect(i);
                }
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<usize> {
        let leaders: Vec<usize> = (0..self.members.len())
            .filter(|i| !self.cut.contains(i) && self.members[*i].role() == Role::Leader)
            .collect();
        assert!(leaders.len() <= 1, "two leaders reachable at once: {leaders:?}");
        leaders.first().copied()
    }

    fn elect(&mut self) -> usize {
        self.run_for(Duration::from_secs(3));
        self.leader().expect("a leader within 3 s")
    }

    fn propose(&mut self, i: usize, data: &[u8]) -> Result<(u64, u64), ProposeError> {
        let r = self.members[i].propose(self.now, data.to_vec());
        self.collect(i);
        r
    }

    fn commands(&self, i: usize) -> Vec<Vec<u8>> {
        self.applied[i]
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Command(d) => Some(d.clone()),
                EntryKind::Noop | EntryKind::Membership(_) => None,
            })
            .collect()
    }
}

#[test]
fn a_site_elects_one_leader_and_every_member_applies_its_commands_in_order() {
    let mut site = Site::new(3);
    let l = site.elect();
    for k in 0..5u8 {
        site.propose(l, &[k]).expect("the leader accepts");
    }
    site.run_for(Duration::from_millis(500));
    let want: Vec<Vec<u8>> = (0..5u8).map(|k| vec![k]).collect();
    for i in 0..3 {
        assert_eq!(site.commands(i), want, "member {i}");
    }
    let other = (l + 1) % 3;
    assert_eq!(site.propose(other, b"x"), Err(ProposeError::NotLeader { leader: Some(NodeId(l as u64 + 1)) }));
}

#[test]
fn a_vote_is_not_sent_before_it_is_durable() {
    let mut site = Site::new(3);
    // Member 1 times out first and asks for pre-votes; granting one changes nothing
    // durable, so the answers go at once.
    site.now = Instant::from_secs(2);
    site.members[0].tick(site.now);
    site.collect(0);
    site.deliver_pending();
    site.deliver_pending();
    assert_eq!(site.members[0].role(), Role::Candidate, "pre-votes granted");
    // Its own term and vote must be durable before it asks for votes.
    assert!(site.net.is_empty(), "vote requests left before the candidate's term was durable: {:?}", site.net);
    site.sync(0);
    // Deliver the vote requests to the others, without syncing their disks.
    let requests: Vec<Envelope> = site.net.drain(..).collect();
    assert!(requests.iter().all(|e| matches!(e.msg, Message::Vote { .. })), "{requests:?}");
    for env in requests {
        let to = env.to.0 as usize - 1;
        site.members[to].step(site.now, env);
        site.collect(to);
    }
    assert!(site.net.is_empty(), "a vote left before the persist of the vote completed: {:?}", site.net);
    assert!(!site.disk[1].is_empty(), "granting a vote issues a persist");
    site.sync(1);
    assert!(
        matches!(site.net.front(), Some(Envelope { msg: Message::VoteResp { granted: true }, .. })),
        "{:?}",
        site.net
    );
}

#[test]
fn a_leader_cut_off_from_the_majority_steps_down_and_its_entries_never_commit() {
    let mut site = Site::new(3);
    let old = site.elect();
    site.cut.insert(old);
    let (_, index) = site.propose(old, b"lost").expect("it still believes it leads");
    site.run_for(Duration::from_secs(1));
    assert_ne!(site.members[old].role(), Role::Leader, "check-quorum: no majority heard within the election timeout");
    site.run_for(Duration::from_secs(3));
    let new = site.leader().expect("the majority elects a leader");
    assert_ne!(new, old);
    site.propose(new, b"kept").expect("the new leader accepts");
    site.cut.clear();
    site.run_for(Duration::from_secs(2));
    for i in 0..3 {
        assert_eq!(site.commands(i), vec![b"kept".to_vec()], "member {i}");
        assert!(site.members[i].entry(index).is_none_or(|e| e.kind != EntryKind::Command(b"lost".to_vec())));
    }
}

#[test]
fn a_read_index_waits_for_a_majority_to_confirm_the_leader() {
    let mut site = Site::new(3);
    let l = site.elect();
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    assert_eq!(
        site.members[others[0]].read_index(site.now, 1),
        Err(ReadError::NotLeader { leader: Some(NodeId(l as u64 + 1)) })
    );
    site.cut.extend(others.iter().copied());
    site.members[l].read_index(site.now, 7).expect("the leader takes the read");
    site.collect(l);
    site.settle();
    assert!(site.ready_reads.is_empty(), "no majority answered: the read must wait");
    site.cut.clear();
    site.members[l].read_index(site.now, 8).expect("the leader takes the read");
    site.collect(l);
    site.settle();
    assert_eq!(site.ready_reads, vec![(l, 7), (l, 8)]);
}

#[test]
fn a_follower_that_missed_compacted_entries_gets_the_snapshot() {
    let mut site = Site::new(3);
    let l = site.elect();
    let lagging = (l + 1) % 3;
    site.cut.insert(lagging);
    for k in 0..20u8 {
        site.propose(l, &[k]).expect("accepted");
        site.run_for(Duration::from_millis(20));
    }
    let applied = site.applied[l].last().expect("applied").index;
    site.members[l].compact(site.now, applied, b"state after 20".to_vec()).expect("applied entries compact");
    site.collect(l);
    assert_eq!(site.members[l].snapshot_index(), applied);
    assert_eq!(site.members[l].log_len(), 0);
    site.cut.clear();
    site.run_for(Duration::from_secs(1));
    let restored = site.restored[lagging].clone().expect("the leader sent its snapshot");
    assert_eq!((restored.index, restored.data), (applied, b"state after 20".to_vec()));
    site.propose(l, b"after").expect("accepted");
    site.run_for(Duration::from_millis(500));
    assert_eq!(site.commands(lagging), vec![b"after".to_vec()], "it applies from the snapshot on");
}

#[test]
fn leadership_moves_to_the_named_member_once_it_is_caught_up() {
    let mut site = Site::new(3);
    let l = site.elect();
    let target = (l + 2) % 3;
    site.propose(l, b"before").expect("accepted");
    site.members[l].transfer_leader(site.now, NodeId(target as u64 + 1)).expect("a member");
    site.collect(l);
    assert!(matches!(site.propose(l, b"during"), Err(ProposeError::Transferring { .. })));
    site.run_for(Duration::from_millis(300));
    assert_eq!(site.leader(), Some(target));
    site.propose(target, b"after").expect("the new leader accepts");
    site.run_for(Duration::from_millis(300));
    for i in 0..3 {
        assert_eq!(site.commands(i), vec![b"before".to_vec(), b"after".to_vec()], "member {i}");
    }
}

#[test]
fn a_leader_refuses_proposals_past_its_uncommitted_limit() {
    let mut site = Site::new(3);
    let l = site.elect();
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    site.cut.extend(others);
    let limit = cfg().uncommitted_bytes_max;
    let chunk = vec![0u8; 64 << 10];
    let mut accepted = 0;
    let err = loop {
        match site.propose(l, &chunk) {
            Ok(_) => accepted += chunk.len(),
            Err(e) => break e,
        }
        assert!(accepted <= limit + chunk.len(), "accepted {accepted} bytes uncommitted");
    };
    assert!(matches!(err, ProposeError::Busy { limit: l, .. } if l == limit), "{err}");
}

#[test]
fn members_join_as_learners_become_voters_and_a_leader_can_remove_itself() {
    // Four processes; the group starts as n1..n3 and n4 waits outside it.
    let three = Membership::of_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let mut site = Site::with(4, three.clone(), cfg());
    site.cut.insert(3);
    let mut l = site.elect();
    site.cut.clear();
    assert!(l < 3);
    let n4 = NodeId(4);
    assert_eq!(
        site.members[l].propose_membership(site.now, MembershipChange::Promote(n4)),
        Err(ProposeError::Membership(MembershipError::NotALearner(n4)))
    );
    site.members[l].propose_membership(site.now, MembershipChange::AddLearner(n4)).expect("a valid change");
    site.collect(l);
    // One change at a time: the next waits for the first to commit.
    assert_eq!(
        site.members[l].propose_membership(site.now, MembershipChange::Promote(n4)),
        Err(ProposeError::ChangePending)
    );
    site.propose(l, b"while a learner").expect("accepted");
    site.run_for(Duration::from_millis(500));
    assert_eq!(site.commands(3), vec![b"while a learner".to_vec()], "a learner receives the log");
    assert_eq!(site.members[3].role(), Role::Follower);
    site.members[l].propose_membership(site.now, MembershipChange::Promote(n4)).expect("committed learner");
    site.collect(l);
    site.run_for(Duration::from_millis(500));
    let four = Membership::of_voters([NodeId(1), NodeId(2), NodeId(3), n4]);
    for i in 0..4 {
        assert_eq!(site.members[i].membership(), &four, "member {i}");
    }
    // With four voters a quorum is three: one member down still commits.
    let down = (l + 1) % 3;
    site.cut.insert(down);
    site.propose(l, b"three of four").expect("accepted");
    site.run_for(Duration::from_millis(500));
    assert_eq!(site.commands(3).last(), Some(&b"three of four".to_vec()));
    site.cut.clear();
    site.run_for(Duration::from_millis(500));
    // The leader removes itself: it leads until the removal commits, then steps down,
    // and the rest elect a leader among themselves.
    let me = NodeId(l as u64 + 1);
    site.members[l].propose_membership(site.now, MembershipChange::Remove(me)).expect("a member");
    site.collect(l);
    site.run_for(Duration::from_secs(3));
    assert_ne!(site.members[l].role(), Role::Leader);
    l = site.leader().expect("the remaining three elect a leader");
    assert_ne!(NodeId(l as u64 + 1), me);
    assert!(!site.members[l].membership().contains(me));
    site.propose(l, b"without the old leader").expect("accepted");
    site.run_for(Duration::from_millis(500));
    for i in (0..4).filter(|i| NodeId(*i as u64 + 1) != me) {
        assert_eq!(site.commands(i).last(), Some(&b"without the old leader".to_vec()), "member {i}");
    }
}

#[test]
fn a_new_leader_changes_membership_only_after_committing_in_its_term() {
    let mut site = Site::new(3);
    let l = site.elect();
    let next = (l + 1) % 3;
    site.members[l].transfer_leader(site.now, NodeId(next as u64 + 1)).expect("a member");
    site.collect(l);
    // Deliver until the target wins, but stop before its Noop commits.
    for _ in 0..100 {
        if site.members[next].role() == Role::Leader {
            break;
        }
        site.deliver_pending();
        for i in 0..3 {
            site.sync(i);
        }
    }
    assert_eq!(site.members[next].role(), Role::Leader);
    assert_eq!(
        site.members[next].propose_membership(site.now, MembershipChange::AddLearner(NodeId(9))),
        Err(ProposeError::ChangePending),
        "the single-server change fix: commit an entry of the new term first"
    );
    site.settle();
    site.members[next].propose_membership(site.now, MembershipChange::AddLearner(NodeId(9))).expect("now allowed");
}

#[test]
fn a_lease_read_is_answered_only_while_a_majority_recently_acknowledged_the_leader() {
    let mut site = Site::new(3);
    let l = site.elect();
    assert_eq!(site.members[l].read_lease(site.now), Err(ReadError::NoLease), "lease reads are off by default");
    let mut leased = cfg();
    leased.lease_reads = true;
    let mut site = Site::with(3, Membership::of_voters((1..=3).map(NodeId)), leased.clone());
    let l = site.elect();
    let index = site.members[l].read_lease(site.now).expect("a fresh lease");
    assert_eq!(index, site.members[l].commit_index());
    // Cut off, it keeps answering only until election_timeout_min - lease_clock_margin
    // after the last round a majority acknowledged: before anyone else may lead.
    site.cut.insert(l);
    let cut_at = site.now;
    let mut last_answer = None;
    let mut other_leader_at = None;
    for _ in 0..300 {
        site.run_for(Duration::from_millis(10));
        if site.members[l].read_lease(site.now).is_ok() {
            last_answer = Some(site.now);
        }
        if other_leader_at.is_none() && (0..3).any(|i| i != l && site.members[i].role() == Role::Leader) {
            other_leader_at = Some(site.now);
        }
    }
    let last_answer = last_answer.expect("the lease outlives the cut for a while");
    let other_leader_at = other_leader_at.expect("the others elect a leader");
    assert!(
        last_answer < other_leader_at,
        "a lease read at {last_answer:?} after another leader at {other_leader_at:?}"
    );
    let lease = leased.election_timeout_min.as_nanos() - leased.lease_clock_margin.as_nanos();
    assert!(last_answer.saturating_since(cut_at).as_nanos() <= lease, "answered past the lease");
}

/// Raft paper, Figure 8: a leader must not count replicas to commit an entry of an
/// earlier term; it commits it only with an entry of its own. Here n1 leads term 4 with
/// entry 2 of term 2, which a majority ends up holding before n1's own entry 3 reaches
/// them. Were entry 2 committed then, n5 (holding entry 2 of term 3) could still win a
/// later election with n2..n4's votes and overwrite it.
#[test]
fn a_leader_commits_an_entry_of_an_earlier_term_only_with_one_of_its_own() {
    let mut one_at_a_time = cfg();
    one_at_a_time.append_entries_max = 1;
    let voters = Membership::of_voters((1..=5).map(NodeId));
    let e = |term, index| Entry { term, index, kind: EntryKind::Command(vec![term as u8, index as u8]) };
    let logs = [
        vec![e(1, 1), e(2, 2)], // n1: will lead term 4
        vec![e(1, 1), e(2, 2)], // n2
        vec![e(1, 1)],          // n3
        vec![e(1, 1)],          // n4
        vec![e(1, 1), e(3, 2)], // n5: led term 3 briefly
    ];
    let mut site = Site::new(5);
    for (i, log) in logs.into_iter().enumerate() {
        let hard = HardState { term: 3, vote: None };
        site.members[i] = Raft::new(
            NodeId(i as u64 + 1),
            voters.clone(),
            one_at_a_time.clone(),
            i as u64 + 1,
            site.now,
            Restored { hard, snapshot: Snapshot::default(), log },
        );
    }
    // n4 and n5 are away; n1 campaigns once the start-up lease has passed.
    site.cut.extend([3, 4]);
    site.now = Instant::from_secs(1);
    site.members[0].tick(site.now);
    site.collect(0);
    let mut steps = 0;
    loop {
        // One message or one sync at a time, checking the rule after each, until the
        // election and the replication that follows it are done.
        if let Some(i) = (0..5).find(|i| !site.disk[*i].is_empty()) {
            let id = site.disk[i].pop_front().expect("found");
            site.members[i].persisted(site.now, id);
            site.collect(i);
        } else if let Some(env) = site.net.pop_front() {
            let (from, to) = (env.from.0 as usize - 1, env.to.0 as usize - 1);
            if !site.cut.contains(&from) && !site.cut.contains(&to) {
                site.members[to].step(site.now, env);
                site.collect(to);
            }
        } else {
            break;
        }
        let commit = site.members[0].commit_index();
        assert!(commit != 2, "n1 committed entry 2 of term 2 before its own entry 3 of term 4 was on a majority");
        steps += 1;
        assert!(steps < 1000, "the site does not settle");
    }
    assert_eq!(site.members[0].role(), Role::Leader);
    assert_eq!(site.members[0].term(), 4);
    site.run_for(Duration::from_millis(300));
    assert_eq!(site.members[0].commit_index(), 3, "entry 3 of term 4 commits entry 2 with it");
    assert_eq!(site.members[2].entry(2).map(|e| e.term), Some(2));
}

/// A follower that acknowledged the leader's lease rounds and then restarted forgets whom
/// it heard. It must still refuse to help elect another leader for
/// `election_timeout_min`, or the leader's lease read could answer while another leader
/// exists. Here n3 cannot hear the leader and keeps campaigning; the leader's lease rests
/// on the restarted member's acknowledgements.
#[test]
fn a_restarted_member_keeps_the_lease_it_acknowledged_before_the_restart() {
    let mut leased = cfg();
    leased.lease_reads = true;
    let voters = Membership::of_voters((1..=3).map(NodeId));
    let mut site = Site::with(3, voters.clone(), leased.clone());
    let l = site.elect();
    let (f, h) = ((l + 1) % 3, (l + 2) % 3);
    // h is cut from the leader both ways; the leader keeps its lease with f's answers, and
    // f, hearing the leader, refuses h's pre-votes.
    site.blocked.extend([(l, h), (h, l)]);
    site.run_for(Duration::from_secs(2));
    assert_eq!(site.leader(), Some(l), "f's lease keeps h from winning");
    let mut violations = Vec::new();
    for round in 0..5 {
        // f restarts from what it stored (its disk is synced) just before h next asks for
        // pre-votes, so h's request reaches f before the leader's next heartbeat does.
        let asks_at = site.members[h].poll_timeout().expect("a follower has an election timer");
        let until = asks_at.as_nanos().saturating_sub(site.now.as_nanos() + 20_000_000);
        site.run_for(Duration(until));
        let stored: Vec<Entry> =
            (1..=site.members[f].last_index()).filter_map(|i| site.members[f].entry(i).cloned()).collect();
        let hard = HardState { term: site.members[f].term(), vote: None };
        site.members[f] = Raft::new(
            NodeId(f as u64 + 1),
            voters.clone(),
            leased.clone(),
            100 + round,
            site.now,
            Restored { hard, snapshot: Snapshot::default(), log: stored },
        );
        for _ in 0..150 {
            site.run_for(Duration::from_millis(10));
            let lease_ok = site.members[l].role() == Role::Leader && site.members[l].read_lease(site.now).is_ok();
            let other = [f, h].into_iter().find(|i| site.members[*i].role() == Role::Leader);
            if let (true, Some(o)) = (lease_ok, other) {
                violations.push(format!("round {round}: n{} answered a lease read while n{} led", l + 1, o + 1));
            }
        }
        if site.leader() != Some(l) {
            break;
        }
    }
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn messages_held_for_a_slow_fsync_are_bounded() {
    use outpost_core::raft::HELD_MESSAGES_MAX;
    let mut site = Site::new(3);
    let l = site.elect();
    let f = (l + 1) % 3;
    // f's disk stalls: a write is outstanding while the leader's heartbeats keep coming.
    site.propose(l, b"x").expect("accepted");
    site.collect(l);
    site.sync(l);
    let appends: Vec<Envelope> = site.net.drain(..).filter(|e| e.to.0 as usize - 1 == f).collect();
    for env in appends {
        site.members[f].step(site.now, env);
        site.collect(f);
    }
    assert!(!site.disk[f].is_empty(), "the append left a persist outstanding");
    let heartbeat = Envelope {
        from: NodeId(l as u64 + 1),
        to: NodeId(f as u64 + 1),
        term: site.members[l].term(),
        msg: Message::Heartbeat { commit: 0, read_seq: 1 },
    };
    for _ in 0..3 * HELD_MESSAGES_MAX {
        site.members[f].step(site.now, heartbeat.clone());
        site.collect(f);
    }
    let (held, dropped) = site.members[f].held_messages();
    assert_eq!(held, HELD_MESSAGES_MAX);
    assert!(dropped >= 2 * HELD_MESSAGES_MAX as u64 - 1, "{dropped}");
    assert!(site.net.is_empty(), "nothing leaves before the persist completes");
    site.sync(f);
    assert_eq!(site.members[f].held_messages().0, 0);
    assert!(site.net.len() <= HELD_MESSAGES_MAX, "{}", site.net.len());
}

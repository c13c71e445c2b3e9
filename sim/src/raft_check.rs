//! Checkers for the safety properties of Raft (Raft paper, Figure 3), fed by what the
//! cluster world sees members do. Each is shown to bite on a violating history below.
//!
//! - **Election safety**: at most one leader per term ([`RaftChecker::on_leader`]).
//! - **Leader completeness**: a leader of term T holds every entry committed in a term
//!   below T, checked when it is elected ([`RaftChecker::on_leader`]).
//! - **State machine safety**: no two members apply different entries at one index
//!   ([`RaftChecker::on_apply`]), and each applies indexes in order without gaps.
//! - **Log matching**: two logs that hold an entry of the same term at the same index are
//!   identical up to it ([`check_log_matching`]).
//!
//! Linearizability of client operations is checked separately (`linearizable`).

use std::collections::BTreeMap;

use outpost_core::raft::{Entry, EntryKind, Index, Term};
use outpost_core::types::NodeId;

/// What a checker compares of an entry: its term and a hash of its contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySig {
    pub term: Term,
    pub hash: u64,
}

impl EntrySig {
    pub fn of(entry: &Entry) -> EntrySig {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        match &entry.kind {
            EntryKind::Noop => eat(0),
            EntryKind::Command(data) => {
                eat(1);
                data.iter().for_each(|b| eat(*b));
            }
            EntryKind::Membership(m) => {
                eat(2);
                for id in m.voters.iter().chain([&NodeId(u64::MAX)]).chain(&m.learners) {
                    id.0.to_le_bytes().iter().for_each(|b| eat(*b));
                }
            }
        }
        EntrySig { term: entry.term, hash: h }
    }
}

/// A run keeps at most this many violations; one broken invariant often repeats.
pub const VIOLATIONS_MAX: usize = 32;

/// What a member's log holds at an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Held(EntrySig),
    /// Below the member's snapshot. A snapshot covers only applied entries, which
    /// `on_apply` already compared, so a compacted index counts as held.
    Compacted,
    Missing,
}

#[derive(Debug, Default)]
pub struct RaftChecker {
    leaders: BTreeMap<Term, NodeId>,
    /// Every index known committed: its entry, and the term of the leader that first
    /// committed it.
    committed: BTreeMap<Index, (EntrySig, Term)>,
    /// The next index each member must apply (reset when it restarts).
    next_apply: BTreeMap<NodeId, Index>,
    violations: Vec<String>,
    violations_dropped: u64,
}

impl RaftChecker {
    pub fn new() -> RaftChecker {
        RaftChecker::default()
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Violations found beyond [`VIOLATIONS_MAX`].
    pub fn violations_dropped(&self) -> u64 {
        self.violations_dropped
    }

    fn violate(&mut self, what: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(what);
        } else {
            self.violations_dropped += 1;
        }
    }

    /// Indexes known committed so far.
    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    pub fn leaders_elected(&self) -> usize {
        self.leaders.len()
    }

    /// `member` became leader of `term`; `log(i)` is its entry at index `i`.
    pub fn on_leader(&mut self, member: NodeId, term: Term, log: impl Fn(Index) -> Slot) {
        if let Some(other) = self.leaders.insert(term, member) {
            if other != member {
                self.violate(format!("election safety: {other} and {member} both led term {term}"));
            }
        }
        for (index, (sig, committed_in)) in &self.committed {
            let held = match log(*index) {
                Slot::Held(s) => s == *sig,
                Slot::Compacted => true,
                Slot::Missing => false,
            };
            if *committed_in < term && !held {
                self.violate(format!(
                    "leader completeness: {member}, leader of term {term}, lacks entry {index} \
                     (term {}) committed in term {committed_in}",
                    sig.term
                ));
                return;
            }
        }
    }

    /// The leader `member` of `term` advanced its commit index to `commit`.
    pub fn on_commit(&mut self, term: Term, commit: Index, log: impl Fn(Index) -> Slot) {
        let from = self.committed.last_key_value().map_or(1, |(i, _)| i + 1);
        for index in from..=commit {
            let Slot::Held(sig) = log(index) else {
                panic!("the leader of term {term} lacks entry {index} below its commit {commit}")
            };
            self.committed.insert(index, (sig, term));
        }
        for index in 1..from.min(commit + 1) {
            let (known, _) = self.committed[&index];
            if matches!(log(index), Slot::Held(s) if s != known) || log(index) == Slot::Missing {
                self.violate(format!(
                    "state machine safety: the leader of term {term} committed a different entry at {index}"
                ));
                return;
            }
        }
    }

    /// `member` restarted, or restored a snapshot: it applies from `snapshot_index + 1`.
    pub fn on_restart(&mut self, member: NodeId, snapshot_index: Index) {
        self.next_apply.insert(member, snapshot_index + 1);
    }

    pub fn on_apply(&mut self, member: NodeId, entry: &Entry) {
        let expected = self.next_apply.insert(member, entry.index + 1).unwrap_or(1);
        if entry.index != expected {
            self.violate(format!(
                "state machine safety: {member} applied index {} where {expected} was next",
                entry.index
            ));
        }
        let sig = EntrySig::of(entry);
        match self.committed.get(&entry.index) {
            Some((known, _)) if *known != sig => {
                let known = known.term;
                self.violate(format!(
                    "state machine safety: {member} applied entry {} of term {} where term {known} was committed",
                    entry.index, sig.term
                ))
            }
            Some(_) => {}
            // Applied before the checker saw a leader commit it: the leader's commit was
            // observed on a later step, or the leader crashed first. Record it from here.
            None => {
                self.committed.insert(entry.index, (sig, sig.term));
            }
        }
    }
}

/// One member's log for [`check_log_matching`]: the index of its first held entry (after
/// its snapshot) and the entries from there.
pub type HeldLog = (NodeId, Index, Vec<EntrySig>);

/// Log matching over the members' logs: for every pair, the highest index both hold with
/// the same term must end identical entries over the range both hold.
pub fn check_log_matching(logs: &[HeldLog]) -> Vec<String> {
    let mut violations = Vec::new();
    for (i, (a, first_a, log_a)) in logs.iter().enumerate() {
        for (b, first_b, log_b) in &logs[i + 1..] {
            let at = |first: Index, log: &[EntrySig], index: Index| log[(index - first) as usize];
            let lo = (*first_a).max(*first_b);
            let hi = (first_a + log_a.len() as Index).min(first_b + log_b.len() as Index);
            let Some(top) = (lo..hi).rev().find(|k| at(*first_a, log_a, *k).term == at(*first_b, log_b, *k).term)
            else {
                continue;
            };
            if let Some(k) = (lo..=top).find(|k| at(*first_a, log_a, *k) != at(*first_b, log_b, *k)) {
                violations.push(format!(
                    "log matching: {a} and {b} agree on the term of entry {top} but differ at entry {k}"
                ));
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(term: Term, hash: u64) -> EntrySig {
        EntrySig { term, hash }
    }

    fn entry(term: Term, index: Index, data: &[u8]) -> Entry {
        Entry { term, index, kind: EntryKind::Command(data.to_vec()) }
    }

    #[test]
    fn two_leaders_in_one_term_are_a_violation() {
        let mut c = RaftChecker::new();
        c.on_leader(NodeId(1), 3, |_| Slot::Missing);
        c.on_leader(NodeId(1), 3, |_| Slot::Missing);
        assert!(c.violations().is_empty());
        c.on_leader(NodeId(2), 4, |_| Slot::Missing);
        assert!(c.violations().is_empty());
        c.on_leader(NodeId(3), 4, |_| Slot::Missing);
        assert_eq!(c.violations(), ["election safety: n2 and n3 both led term 4"]);
    }

    #[test]
    fn a_leader_missing_a_committed_entry_is_a_violation() {
        let mut c = RaftChecker::new();
        let log = [sig(1, 10), sig(1, 11)];
        let slot = |l: &[EntrySig], i: Index| l.get(i as usize - 1).copied().map_or(Slot::Missing, Slot::Held);
        c.on_commit(1, 2, |i| slot(&log, i));
        assert_eq!(c.committed_count(), 2);
        // A leader of term 2 holding both is fine, or one that compacted the first; one
        // holding another entry 2 is not.
        c.on_leader(NodeId(2), 2, |i| slot(&log, i));
        c.on_leader(NodeId(1), 3, |i| if i == 1 { Slot::Compacted } else { slot(&log, i) });
        assert!(c.violations().is_empty());
        let other = [sig(1, 10), sig(1, 99)];
        c.on_leader(NodeId(3), 4, |i| slot(&other, i));
        assert_eq!(c.violations().len(), 1);
        assert!(c.violations()[0].starts_with("leader completeness: n3"), "{:?}", c.violations());
    }

    #[test]
    fn entries_committed_in_the_leaders_own_term_are_not_required_at_its_election() {
        let mut c = RaftChecker::new();
        c.on_commit(5, 1, |_| Slot::Held(sig(5, 1)));
        c.on_leader(NodeId(1), 5, |_| Slot::Missing);
        assert!(c.violations().is_empty());
    }

    #[test]
    fn two_different_entries_applied_at_one_index_are_a_violation() {
        let mut c = RaftChecker::new();
        c.on_apply(NodeId(1), &entry(1, 1, b"a"));
        c.on_apply(NodeId(2), &entry(1, 1, b"a"));
        assert!(c.violations().is_empty());
        c.on_apply(NodeId(3), &entry(2, 1, b"b"));
        assert_eq!(c.violations().len(), 1);
        assert!(c.violations()[0].contains("n3 applied entry 1 of term 2 where term 1"), "{:?}", c.violations());
    }

    #[test]
    fn applying_out_of_order_is_a_violation_and_a_restart_starts_over() {
        let mut c = RaftChecker::new();
        c.on_apply(NodeId(1), &entry(1, 1, b"a"));
        c.on_restart(NodeId(1), 0);
        c.on_apply(NodeId(1), &entry(1, 1, b"a"));
        assert!(c.violations().is_empty());
        c.on_apply(NodeId(1), &entry(1, 3, b"c"));
        assert_eq!(c.violations(), ["state machine safety: n1 applied index 3 where 2 was next"]);
    }

    #[test]
    fn a_leader_committing_over_a_committed_entry_is_a_violation() {
        let mut c = RaftChecker::new();
        c.on_commit(1, 1, |_| Slot::Held(sig(1, 1)));
        c.on_commit(2, 2, |i| Slot::Held(if i == 1 { sig(2, 7) } else { sig(2, 8) }));
        assert_eq!(c.violations().len(), 1);
    }

    #[test]
    fn logs_that_agree_on_a_term_but_not_before_it_are_a_violation() {
        let a = (NodeId(1), 1, vec![sig(1, 1), sig(1, 2), sig(2, 3)]);
        let b = (NodeId(2), 1, vec![sig(1, 1), sig(1, 2), sig(3, 4)]);
        assert!(check_log_matching(&[a.clone(), b]).is_empty(), "diverging after a common prefix is allowed");
        let c = (NodeId(3), 1, vec![sig(1, 1), sig(1, 9), sig(2, 3)]);
        let v = check_log_matching(&[a.clone(), c]);
        assert_eq!(v, ["log matching: n1 and n3 agree on the term of entry 3 but differ at entry 2"]);
        // A log compacted up to entry 2 is compared from entry 3 on.
        let d = (NodeId(4), 3, vec![sig(2, 3), sig(2, 5)]);
        assert!(check_log_matching(&[a.clone(), d]).is_empty());
        let e = (NodeId(5), 2, vec![sig(1, 7), sig(2, 3)]);
        assert_eq!(
            check_log_matching(&[a, e]),
            ["log matching: n1 and n5 agree on the term of entry 3 but differ at entry 2"]
        );
    }
}

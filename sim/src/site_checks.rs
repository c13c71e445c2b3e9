//! Two promises of a site cluster, checked on every member as the run goes (issue 15:
//! the simulator's site worlds never saw either break, though both were broken once).
//!
//! **Raft's commit rule** (Raft paper §5.4.2, Figure 8): a leader advances its commit
//! index by counting replicas only to an entry of its own term; older entries commit with
//! it. Through a `Node`, an older term's entry committed by counting replicas rarely
//! loses anything observable (it needs a further leader change in a narrow window), so the
//! rule is checked where it acts: after every step of a member, if it led in the same
//! term before and after the step and its commit index moved, the entry at the new commit
//! index must be of that term ([`CommitRule`]).
//!
//! **No quorum, refused at once** (`crate::site`): a member that cannot reach a majority
//! of its site refuses a strong write with `NoQuorum` in the same step, rather than
//! forwarding or proposing it (which would fail later and slower: `Unconfirmed`,
//! `SiteUnavailable`). "Cannot reach" is what the member's failure detector must conclude
//! from what really arrived: [`QuorumPromise`] runs a reference detector per peer on the
//! simulator's record of every message delivered to the member, with the member's own
//! `DetectorConfig`. A peer counts as certainly unreachable at `t` when the reference's
//! phi was at or above `phi_partitioned` already at `t - SLACK_NS` (or, never heard from
//! since the member's site started, when the start-up grace
//! `first_heartbeat_estimate + acceptable_heartbeat_pause` had passed by then). With the
//! default settings (pings every 100 ms, `min_std_deviation` 100 ms, pause 500 ms,
//! `phi_partitioned` 8, which phi reaches about 5.2 standard deviations past the mean
//! interval plus the pause), a member on a steady LAN must refuse about 1.1 s after its
//! majority fell silent, and 1 s after a start that heard no peer; after a long silence
//! has entered the detector's window (mean and deviation grow), later. If the member
//! counts a majority, itself included, as certainly unreachable, its answer to a strong
//! write must be `NoQuorum`, given in the same step (zero simulated time): "promptly"
//! means at once, once the detector's own bound has passed by `SLACK_NS`.

use outpost_core::detector::{DetectorConfig, PhiAccrual};
use outpost_core::raft::{Index, Term};
use outpost_core::types::{Duration, Instant};
use std::collections::BTreeMap;

/// How far past the detector's own bound the check looks (covers rounding; messages are
/// heard at the instant the simulator delivers them, so no delay needs covering).
pub const SLACK_NS: u64 = 1_000_000;

/// What one member looked like after its previous step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    leader: bool,
    term: Term,
    commit: Index,
}

/// Raft's commit rule, per member (see the module docs).
#[derive(Debug, Default)]
pub struct CommitRule {
    seen: BTreeMap<usize, Seen>,
}

impl CommitRule {
    /// Member `m` restarted: what it did before says nothing of its new Raft.
    pub fn forget(&mut self, m: usize) {
        self.seen.remove(&m);
    }

    /// Member `m` after a step: whether it leads, its term, its commit index and the
    /// term of the entry there (`None` if compacted).
    pub fn observe(
        &mut self,
        m: usize,
        leader: bool,
        term: Term,
        commit: Index,
        commit_term: Option<Term>,
    ) -> Option<String> {
        let now = Seen { leader, term, commit };
        let before = self.seen.insert(m, now)?;
        if !(before.leader && leader && before.term == term && commit > before.commit) {
            return None;
        }
        let t = commit_term?;
        (t != term).then(|| {
            format!(
                "leader of term {term} advanced its commit index from {} to {commit}, an entry of term {t}: only an entry of the leader's own term may be committed by counting replicas",
                before.commit
            )
        })
    }
}

/// One member's reference detector: started when its site started, fed every message
/// a peer delivered to it since.
#[derive(Debug)]
struct Reference {
    started: u64,
    peers: BTreeMap<usize, PhiAccrual>,
}

/// The no-quorum promise, per member (see the module docs).
#[derive(Debug)]
pub struct QuorumPromise {
    cfg: DetectorConfig,
    /// Per member: its peers (node indexes) and the group's size.
    groups: BTreeMap<usize, (Vec<usize>, usize)>,
    refs: BTreeMap<usize, Reference>,
}

impl QuorumPromise {
    /// `groups`: per member, its peers and the number of members, itself included.
    pub fn new(cfg: DetectorConfig, groups: BTreeMap<usize, (Vec<usize>, usize)>) -> QuorumPromise {
        QuorumPromise { cfg, groups, refs: BTreeMap::new() }
    }

    /// Member `m`'s site started at `t` (it became running after a restart).
    pub fn started(&mut self, m: usize, t: u64) {
        let Some((peers, _)) = self.groups.get(&m) else { return };
        let peers = peers.iter().map(|&p| (p, PhiAccrual::new(&self.cfg))).collect();
        self.refs.insert(m, Reference { started: t, peers });
    }

    /// Member `m` crashed: no site runs there until it starts again.
    pub fn stopped(&mut self, m: usize) {
        self.refs.remove(&m);
    }

    /// Whether member `m`'s site is running (as far as this check knows).
    pub fn running(&self, m: usize) -> bool {
        self.refs.contains_key(&m)
    }

    /// A message from `from` was delivered to member `m` at `t` and handled.
    pub fn heard(&mut self, m: usize, from: usize, t: u64) {
        if let Some(d) = self.refs.get_mut(&m).and_then(|r| r.peers.get_mut(&from)) {
            d.heartbeat(Instant(t));
        }
    }

    /// If member `m` must see no quorum at `t`: the peers it cannot reach and the group's
    /// size, as text for the violation.
    pub fn cut_off(&self, m: usize, t: u64) -> Option<String> {
        let r = self.refs.get(&m)?;
        let (_, members) = self.groups.get(&m)?;
        let at = t.checked_sub(SLACK_NS)?;
        let grace = self.cfg.first_heartbeat_estimate.as_nanos() + self.cfg.acceptable_heartbeat_pause.as_nanos();
        let silent: Vec<String> = r
            .peers
            .iter()
            .filter(|(_, d)| match d.last_heartbeat() {
                None => at >= r.started + grace,
                Some(last) => at >= last.as_nanos() && d.phi(Instant(at)) >= self.cfg.phi_partitioned,
            })
            .map(|(&p, d)| match d.last_heartbeat() {
                Some(last) => format!("node {p} silent for {:.3} s", (t - last.as_nanos()) as f64 / 1e9),
                None => format!("node {p} never heard since the start {:.3} s ago", (t - r.started) as f64 / 1e9),
            })
            .collect();
        let reachable = 1 + r.peers.len() - silent.len();
        (reachable <= members / 2).then(|| format!("reaches {reachable} of {members} members ({})", silent.join(", ")))
    }
}

/// The bound, in seconds, after which the detector calls a peer heard every `every`
/// (regular arrivals, a full window) partitioned: the documentation's worked example.
pub fn partition_bound(cfg: &DetectorConfig, every: Duration) -> f64 {
    let mut d = PhiAccrual::new(cfg);
    for k in 0..=cfg.window_max as u64 {
        d.heartbeat(Instant(k * every.as_nanos()));
    }
    let last = cfg.window_max as u64 * every.as_nanos();
    let (mut lo, mut hi) = (0u64, 3_600_000_000_000u64);
    while hi - lo > 1_000 {
        let mid = lo + (hi - lo) / 2;
        if d.phi(Instant(last + mid)) >= cfg.phi_partitioned {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_committing_an_older_terms_entry_by_counting_replicas_is_a_violation() {
        let mut c = CommitRule::default();
        // Elected in term 4 with entries of term 2 not yet committed.
        assert_eq!(c.observe(0, true, 4, 5, Some(1)), None);
        let v = c.observe(0, true, 4, 7, Some(2)).expect("index 7 is of term 2");
        assert!(v.contains("from 5 to 7, an entry of term 2"), "{v}");
        // Its own term's entry commits the older ones with it.
        assert_eq!(c.observe(0, true, 4, 9, Some(4)), None);
        // A follower learns the commit index from its leader: any term.
        assert_eq!(c.observe(1, false, 4, 3, Some(2)), None);
        assert_eq!(c.observe(1, false, 4, 7, Some(2)), None);
        // A new leader, or a new term: nothing to compare with.
        assert_eq!(c.observe(1, true, 5, 8, Some(3)), None);
        c.forget(0);
        assert_eq!(c.observe(0, true, 4, 10, Some(3)), None);
    }

    fn promise() -> QuorumPromise {
        let groups = [(0, (vec![1, 2], 3)), (1, (vec![0, 2], 3)), (2, (vec![0, 1], 3))].into_iter().collect();
        QuorumPromise::new(DetectorConfig::default(), groups)
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn a_member_whose_majority_fell_silent_is_cut_off_after_the_detectors_bound() {
        let mut q = promise();
        q.started(0, 0);
        assert_eq!(q.cut_off(0, 500 * MS), None, "the start-up grace");
        let v = q.cut_off(0, 1_002 * MS).expect("never heard from anyone after the grace");
        assert!(v.contains("reaches 1 of 3 members"), "{v}");
        for k in 0..200 {
            q.heard(0, 1, 1_000 * MS + k * 100 * MS);
            q.heard(0, 2, 1_000 * MS + k * 100 * MS);
        }
        let last = 1_000 * MS + 199 * 100 * MS;
        assert_eq!(q.cut_off(0, last + 500 * MS), None);
        // Node 2 still heard: a majority (0 and 2) is reachable.
        for k in 1..40 {
            q.heard(0, 2, last + k * 100 * MS);
        }
        assert_eq!(q.cut_off(0, last + 3_900 * MS), None);
        let bound = partition_bound(&DetectorConfig::default(), Duration::from_millis(100));
        assert!((1.0..1.2).contains(&bound), "{bound}");
        let quiet = last + 39 * 100 * MS;
        let at = quiet + (bound * 1e9) as u64 + 2 * MS;
        let v = q.cut_off(0, at).expect("both peers silent past the bound");
        assert!(v.contains("node 2 silent for"), "{v}");
        assert_eq!(q.cut_off(0, quiet + (bound * 1e9) as u64 - 50 * MS), None, "not yet");
        q.stopped(0);
        assert_eq!(q.cut_off(0, at), None, "a crashed member answers nothing");
    }
}

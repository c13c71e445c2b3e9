//! Reads of keyed topics that state their consistency (`outpost_core::keyed_reads`), made
//! by the world's sessions and checked against the history of acknowledged writes
//! (`keyed_check::KeyedHistory`), without the core's bookkeeping:
//!
//! * the **causal checker**: a causal read a node answered holds every write its session
//!   made or saw in an earlier answer (at whichever node);
//! * the **staleness checker**: every answer's stated staleness is true (each other origin
//!   the node holds a write of: every acknowledged write of it timestamped at or before
//!   `as_of - staleness` is held), and a bounded read's is within its bound.
//!
//! Each keyed workload is one session: it keeps the token of its writes and answers, and
//! reads at a node drawn from those running that hold the topic (a client that reconnects
//! anywhere). Violations wait for the run's end: a topic whose records a fault destroyed
//! is not judged, as the final keyed check does not judge it.

use std::collections::BTreeMap;

use outpost_core::keyed::Dot;
use outpost_core::keyed_reads::{ReadConsistency, ReadRefused, ReadStamp, SessionToken};
use rand::Rng;
use serde::Serialize;

use crate::keyed_check::KeyedHistory;
use crate::rng::SimRng;
use crate::scenario::Scenario;

/// What the sessions' reads saw (part of the report's `keyed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReadsReport {
    /// Causal reads answered (each checked to hold its session's writes).
    pub causal_answered: u64,
    /// Causal reads a node refused as not yet holding the session's writes.
    pub causal_not_yet: u64,
    /// Bounded reads answered within their bound.
    pub bounded_answered: u64,
    /// Bounded reads refused as staler than asked.
    pub bounded_too_stale: u64,
    /// Reads refused because the node's state could not vouch for itself.
    pub incomplete: u64,
    /// Answers whose stated staleness was checked against the history.
    pub staleness_checked: u64,
    /// Strong reads of strong keyed topics (`crate::strong_read_check`).
    #[serde(skip_serializing_if = "crate::strong_read_check::StrongReadsReport::is_empty")]
    pub strong: crate::strong_read_check::StrongReadsReport,
}

impl ReadsReport {
    /// Adds another run's counts (a sweep's totals).
    pub fn add(&mut self, o: &ReadsReport) {
        self.causal_answered += o.causal_answered;
        self.causal_not_yet += o.causal_not_yet;
        self.bounded_answered += o.bounded_answered;
        self.bounded_too_stale += o.bounded_too_stale;
        self.incomplete += o.incomplete;
        self.staleness_checked += o.staleness_checked;
        self.strong.add(&o.strong);
    }

    /// One line for a person.
    pub fn summary(&self) -> String {
        let strong = &self.strong;
        let strong = if strong.is_empty() {
            String::new()
        } else {
            format!(
                "; strong {} answered ({} values checked), {} not at the leader, {} to retry, {} incomplete",
                strong.answered, strong.values_checked, strong.not_leader, strong.retry, strong.incomplete
            )
        };
        format!(
            "causal {} answered, {} not yet; bounded {} answered, {} too stale; {} incomplete; {} staleness claims \
             checked",
            self.causal_answered,
            self.causal_not_yet,
            self.bounded_answered,
            self.bounded_too_stale,
            self.incomplete,
            self.staleness_checked
        ) + &strong
    }
}

/// One workload's session of a keyed topic.
struct Session {
    token: SessionToken,
    /// Per (half, origin): the highest sequence of a write the session made or saw in an
    /// answer. (Each origin's writes reach a node in order, so a node that holds it holds
    /// the origin's earlier ones; the final keyed check judges that order.)
    seen: Seen,
}

/// Per (half, origin), a sequence.
pub type Seen = BTreeMap<(usize, usize), u64>;

/// The sessions of a run, and what their reads broke.
#[derive(Default)]
pub struct KeyedReads {
    sessions: BTreeMap<usize, Session>,
    /// (topic name, violation), judged at the end.
    violations: Vec<(String, String)>,
    pub report: ReadsReport,
}

/// A read to make: where, and within which staleness (none: causal).
pub struct ReadPlan {
    pub node: usize,
    pub bound_ms: Option<u64>,
}

/// Staleness bounds a session asks for.
const BOUNDS_MS: [u64; 5] = [1_000, 10_000, 60_000, 600_000, 3_600_000];

impl KeyedReads {
    /// Workload `workload`'s write `dot` of half `topic` (of `name`), made at node
    /// `origin`, was acknowledged.
    pub fn on_write(&mut self, workload: usize, name: &str, topic: usize, origin: usize, dot: Dot) {
        let s = self.session(workload, name);
        assert!(s.token.add(dot), "a world has fewer origins than a token holds");
        let seq = s.seen.entry((topic, origin)).or_default();
        *seq = (*seq).max(dot.seq);
    }

    fn session(&mut self, workload: usize, name: &str) -> &mut Session {
        self.sessions.entry(workload).or_insert_with(|| Session { token: SessionToken::new(name), seen: Seen::new() })
    }

    /// Draws a read: a node among `holders`, causal or bounded (half each).
    pub fn plan(rng: &mut SimRng, holders: &[usize]) -> Option<ReadPlan> {
        let node = *holders.get(rng.gen_range(0..holders.len().max(1)))?;
        let bound_ms = rng.gen_bool(0.5).then(|| BOUNDS_MS[rng.gen_range(0..BOUNDS_MS.len())]);
        Some(ReadPlan { node, bound_ms })
    }

    /// Asks the node (`decide`) for `workload`'s session's read and counts the outcome;
    /// the answer's stamp, if answered.
    pub fn read(
        &mut self,
        workload: usize,
        name: &str,
        plan: &ReadPlan,
        decide: impl FnOnce(ReadConsistency<'_>) -> Option<Result<ReadStamp, ReadRefused>>,
    ) -> Option<ReadStamp> {
        let session = self.session(workload, name);
        let read = match plan.bound_ms {
            Some(staleness_max_ms) => ReadConsistency::Bounded { staleness_max_ms },
            None => ReadConsistency::Causal(&session.token),
        };
        let answer = decide(read)?;
        let r = &mut self.report;
        match (&answer, plan.bound_ms) {
            (Ok(_), Some(_)) => r.bounded_answered += 1,
            (Ok(_), None) => r.causal_answered += 1,
            (Err(ReadRefused::NotYet { .. }), _) => r.causal_not_yet += 1,
            (Err(ReadRefused::TooStale { .. }), _) => r.bounded_too_stale += 1,
            (Err(ReadRefused::Incomplete(_)), _) => r.incomplete += 1,
            (Err(ReadRefused::OtherTopic), _) => panic!("a session reads its own topic"),
        }
        answer.ok()
    }

    /// Checks an answered read of `workload`'s session against the history (before the
    /// session takes what it saw there), then lets the session see it.
    pub fn check(
        &mut self,
        h: &KeyedHistory,
        s: &Scenario,
        workload: usize,
        name: &str,
        plan: &ReadPlan,
        stamp: ReadStamp,
    ) {
        let node = plan.node;
        let mut found = Vec::new();
        let session = self.session(workload, name);
        if plan.bound_ms.is_none() {
            found.extend(causal_violations(h, s, name, node, &session.seen));
        }
        if let Some(staleness) = stamp.staleness_ms {
            found.extend(staleness_violations(h, s, name, node, stamp.as_of_ms, staleness, plan.bound_ms));
        } else if plan.bound_ms.is_some() {
            found.push(format!("node {}: a bounded read answered without a staleness", s.nodes[node].id));
        }
        let session = self.session(workload, name);
        for (half_origin, writes) in h.origins_of(s, name) {
            let held = writes.partition_point(|&i| h.held(s, node, i));
            if let Some(&newest) = held.checked_sub(1).and_then(|k| writes.get(k)) {
                let seq = session.seen.entry(half_origin).or_default();
                *seq = (*seq).max(h.dot_of(newest).seq);
            }
        }
        // (A bounded read's token is the node's alone: the session keeps its own too.)
        assert!(session.token.merge(&stamp.token), "a world has fewer origins than a token holds");
        self.report.staleness_checked += u64::from(stamp.staleness_ms.is_some());
        self.violations.extend(found.into_iter().map(|v| (name.to_string(), v)));
    }

    /// The violations of topics `judged(name)` says may be judged.
    pub fn violations(&self, judged: impl Fn(&str) -> bool) -> Vec<String> {
        self.violations.iter().filter(|(n, _)| judged(n)).map(|(_, v)| v.clone()).collect()
    }
}

/// An answered causal read at `node` of topic `name` that misses the newest write of an
/// origin its session made or saw (`seen`).
pub fn causal_violations(h: &KeyedHistory, s: &Scenario, name: &str, node: usize, seen: &Seen) -> Vec<String> {
    let missing: Vec<Dot> = seen
        .iter()
        .filter_map(|(&(topic, origin), &seq)| {
            let writes = h.writes_by(topic, origin);
            let i = writes[writes.partition_point(|&i| h.dot_of(i).seq < seq)..].first().copied()?;
            (!h.held(s, node, i)).then(|| h.dot_of(i))
        })
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "node {}, topic {name:?}: a causal read answered without {} write(s) its session made or saw, first {:?}",
        s.nodes[node].id,
        missing.len(),
        missing[0]
    )]
}

/// An answer at `node` of topic `name` made at `as_of_ms` that states `staleness_ms`:
/// false if of some other origin the node holds writes of, the newest acknowledged write
/// timestamped at or before `as_of_ms - staleness_ms` is not held; over `bound_ms` if one
/// was asked.
pub fn staleness_violations(
    h: &KeyedHistory,
    s: &Scenario,
    name: &str,
    node: usize,
    as_of_ms: u64,
    staleness_ms: u64,
    bound_ms: Option<u64>,
) -> Vec<String> {
    let mut found = Vec::new();
    let id = &s.nodes[node].id;
    if let Some(bound) = bound_ms.filter(|&b| staleness_ms > b) {
        found.push(format!("node {id}, topic {name:?}: a bounded read answered {staleness_ms} ms stale, over {bound}"));
    }
    let horizon = as_of_ms.saturating_sub(staleness_ms);
    for ((_, origin), writes) in h.origins_of(s, name).filter(|&((_, o), _)| o != node) {
        // An origin is known to the node once it holds its first write.
        if !writes.first().is_some_and(|&i| h.held(s, node, i)) {
            continue;
        }
        let due = writes.partition_point(|&i| h.hlc_of(i).physical_ms() <= horizon);
        let Some(&i) = due.checked_sub(1).and_then(|k| writes.get(k)) else { continue };
        if !h.held(s, node, i) {
            found.push(format!(
                "node {id}, topic {name:?}: answered {staleness_ms} ms stale at {as_of_ms}, without write {:?} of {} \
                 timestamped {} ms (at or before {horizon})",
                h.dot_of(i),
                crate::keyed_check::origin_name(s, origin),
                h.hlc_of(i).physical_ms()
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed_check::tests::{counter_op, world};
    use outpost_core::hlc::Hlc;

    const HQ: usize = 0;
    const TILL_1: usize = 1;
    const TILL_2: usize = 2;
    const UP: usize = 0;
    const DOWN: usize = 1;

    /// Till 1 wrote twice (at 1 s and 2 s), the gateway copied both; till 2 stored the
    /// first copy only.
    fn history() -> KeyedHistory {
        let mut h = KeyedHistory::default();
        h.on_ack(TILL_1, UP, b"k".to_vec(), counter_op(1), 0, Hlc::new(1_000, 0));
        h.on_ack(TILL_1, UP, b"k".to_vec(), counter_op(2), 1, Hlc::new(2_000, 0));
        h.on_stored(HQ, UP, TILL_1, 0..2);
        h.on_copied(HQ, DOWN, 0, Dot { origin: outpost_core::types::NodeId(TILL_1 as u64 + 1), seq: 0 });
        h.on_copied(HQ, DOWN, 1, Dot { origin: outpost_core::types::NodeId(TILL_1 as u64 + 1), seq: 1 });
        h.on_stored(TILL_2, DOWN, HQ, 0..1);
        h
    }

    #[test]
    fn the_causal_checker_catches_a_read_without_a_write_its_session_made() {
        let (s, h) = (world(), history());
        let wrote_both: Seen = [((UP, TILL_1), 1)].into();
        assert!(causal_violations(&h, &s, "stock", HQ, &wrote_both).is_empty(), "the gateway holds both");
        let found = causal_violations(&h, &s, "stock", TILL_2, &wrote_both);
        assert_eq!(found.len(), 1, "till 2 lacks the second write: {found:?}");
        assert!(found[0].contains("till-2") && found[0].contains("seq: 1"), "{found:?}");
        let wrote_first: Seen = [((UP, TILL_1), 0)].into();
        assert!(causal_violations(&h, &s, "stock", TILL_2, &wrote_first).is_empty());
    }

    #[test]
    fn the_staleness_checker_catches_a_staleness_that_is_not_true_or_over_its_bound() {
        let (s, h) = (world(), history());
        // Till 2 holds till 1's write of 1 s, not its write of 2 s: at 10 s it is more
        // than 8 s stale.
        assert!(staleness_violations(&h, &s, "stock", TILL_2, 10_000, 9_000, None).is_empty());
        assert!(staleness_violations(&h, &s, "stock", TILL_2, 10_000, 8_001, None).is_empty());
        let found = staleness_violations(&h, &s, "stock", TILL_2, 10_000, 8_000, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("without write") && found[0].contains("till-1"), "{found:?}");
        let over = staleness_violations(&h, &s, "stock", TILL_2, 10_000, 9_000, Some(5_000));
        assert!(over.len() == 1 && over[0].contains("over 5000"), "{over:?}");
        assert!(staleness_violations(&h, &s, "stock", HQ, 10_000, 0, None).is_empty(), "the gateway holds every write");
        assert!(
            staleness_violations(&h, &s, "stock", TILL_1, 10_000, 0, None).is_empty(),
            "a node's own writes are not another origin's"
        );
    }
}

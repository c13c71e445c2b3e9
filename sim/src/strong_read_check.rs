//! Strong (linearizable) reads of strong keyed topics (`Input::StrongRead`), made by the
//! world's sessions at a member of the writing site and checked against the history of
//! acknowledged writes (`keyed_check::KeyedHistory`), without the core's bookkeeping.
//!
//! A strong topic has one origin at its members, the site's cluster, whose writes form one
//! stream. An answer names how much of that stream it holds (its token's entry for the
//! cluster: a prefix of the stream, as the stream reaches every member in order), and the
//! **linearizability checker** judges it:
//!
//! * the prefix holds every write acknowledged before the read was issued (the *floor*),
//!   and every write an earlier answer (answered before this read was issued) held: the
//!   read takes effect after everything that finished before it began;
//! * the value answered is what the oracle (`keyed_oracle`) computes from the stream's
//!   writes of the key within that prefix (judged at the end, when the history knows which
//!   keys a write of unknown fate makes unsure).
//!
//! Together: every answer is the state after some prefix of the cluster's commit order
//! that no earlier-finished operation is missing from, which is linearizability for a
//! single stream.

use std::collections::BTreeMap;

use outpost_core::keyed_reads::{ReadStamp, StrongReadRefused};
use outpost_core::types::NodeId;
use serde::Serialize;

use crate::keyed_check::KeyedHistory;
use crate::keyed_oracle::{self, Answer};
use crate::scenario::Scenario;

/// What the strong reads saw (part of the report's `keyed.reads`; absent when none ran).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StrongReadsReport {
    /// Strong reads answered.
    pub answered: u64,
    /// Refused at a member that does not lead, or during an election.
    pub not_leader: u64,
    /// Refused as not ready, busy, or after the member stopped leading.
    pub retry: u64,
    /// Refused because the state could not vouch for itself.
    pub incomplete: u64,
    /// Answers whose value was compared with the oracle (others: a key a write of unknown
    /// fate made unsure).
    pub values_checked: u64,
}

impl StrongReadsReport {
    /// Adds another run's counts (a sweep's totals).
    pub fn add(&mut self, o: &StrongReadsReport) {
        self.answered += o.answered;
        self.not_leader += o.not_leader;
        self.retry += o.retry;
        self.incomplete += o.incomplete;
        self.values_checked += o.values_checked;
    }

    pub fn is_empty(&self) -> bool {
        *self == StrongReadsReport::default()
    }
}

/// A strong read issued and not yet answered.
struct Issued {
    node: usize,
    topic: usize,
    /// The cluster's index in the history (`nodes.len() + k`).
    origin: usize,
    key: Vec<u8>,
    floor: u64,
    /// The longest prefix an answer held before this read was issued.
    before: u64,
}

/// An answered strong read, for the value check at the end.
struct Answered {
    node: usize,
    topic: usize,
    origin: usize,
    key: Vec<u8>,
    prefix: u64,
    answer: Answer,
}

/// The strong reads of a run.
#[derive(Default)]
pub struct StrongReads {
    pending: BTreeMap<u64, Issued>,
    /// Per (topic, cluster origin): the longest prefix answered so far.
    answered_max: BTreeMap<(usize, usize), u64>,
    answers: Vec<Answered>,
    /// (topic name, violation), judged at the end.
    violations: Vec<(String, String)>,
    pub report: StrongReadsReport,
}

impl StrongReads {
    /// Request `req` reads `key` of strong keyed topic `topic` at member `node` of the
    /// cluster whose history index is `origin`.
    pub fn issue(&mut self, h: &KeyedHistory, req: u64, node: usize, (topic, origin): (usize, usize), key: Vec<u8>) {
        let floor = h.writes_by(topic, origin).last().map_or(0, |&i| h.dot_of(i).seq + 1);
        let before = self.answered_max.get(&(topic, origin)).copied().unwrap_or(0);
        self.pending.insert(req, Issued { node, topic, origin, key, floor, before });
    }

    /// Whether `req` is a strong read waiting for its answer.
    pub fn is_pending(&self, req: u64) -> bool {
        self.pending.contains_key(&req)
    }

    /// Node `node` crashed: its reads are never answered.
    pub fn on_crash(&mut self, node: usize) {
        self.pending.retain(|_, r| r.node != node);
    }

    /// The answer to `req`; `answer` is the key's value in the node's state now.
    pub fn on_answer(
        &mut self,
        s: &Scenario,
        req: u64,
        result: Result<ReadStamp, StrongReadRefused>,
        answer: impl FnOnce(usize, &[u8]) -> Answer,
    ) {
        let Some(r) = self.pending.remove(&req) else { return };
        let stamp = match result {
            Ok(stamp) => stamp,
            Err(StrongReadRefused::NotLeader { .. }) => return self.report.not_leader += 1,
            Err(StrongReadRefused::Incomplete(_)) => return self.report.incomplete += 1,
            Err(StrongReadRefused::NotReady | StrongReadRefused::Busy | StrongReadRefused::LeadershipLost) => {
                return self.report.retry += 1;
            }
            Err(e @ (StrongReadRefused::NotStrong | StrongReadRefused::Recovering)) => {
                panic!("the world reads strong keyed topics at running members: {e}")
            }
        };
        self.report.answered += 1;
        let cluster = NodeId(r.origin as u64 + 1);
        let prefix = stamp.token.entries().find(|d| d.origin == cluster).map_or(0, |d| d.seq + 1);
        let name = &s.topics[r.topic].name;
        let at = &s.nodes[r.node].id;
        if let Some(v) = prefix_violation(name, at, prefix, r.floor, r.before) {
            self.violations.push((name.clone(), v));
        }
        let max = self.answered_max.entry((r.topic, r.origin)).or_default();
        *max = (*max).max(prefix);
        let answer = answer(r.topic, &r.key);
        let (node, topic, origin, key) = (r.node, r.topic, r.origin, r.key);
        self.answers.push(Answered { node, topic, origin, key, prefix, answer });
    }

    /// The violations of topics `judged(name)` says may be judged: those found as the reads
    /// were answered, and each answered value against the oracle over its prefix.
    pub fn violations(&mut self, h: &KeyedHistory, s: &Scenario, judged: impl Fn(&str) -> bool) -> Vec<String> {
        let mut found: Vec<String> =
            self.violations.iter().filter(|(n, _)| judged(n)).map(|(_, v)| v.clone()).collect();
        for a in &self.answers {
            let t = &s.topics[a.topic];
            let Some(strategy) = t.conflict.filter(|_| judged(&t.name)) else { continue };
            if h.is_unsure(&t.name, &a.key) {
                continue;
            }
            self.report.values_checked += 1;
            let held = h.prefix_of(a.topic, a.origin, a.prefix);
            if let Err(v) = keyed_oracle::check(strategy, t.merge.as_ref(), &held, &a.key, a.answer.clone()) {
                found.push(format!(
                    "node {}, topic {:?}: a strong read holding the cluster's first {} writes answered other than \
                     they make: {}",
                    s.nodes[a.node].id,
                    t.name,
                    a.prefix,
                    crate::keyed_check::describe(&v)
                ));
            }
        }
        found
    }
}

/// A strong read at `at` whose answer holds the first `prefix` writes of the cluster's
/// stream: short of `floor` (the writes acknowledged before it was issued) or of `before`
/// (what an answer before it was issued held), it missed a write that finished first.
pub fn prefix_violation(name: &str, at: &str, prefix: u64, floor: u64, before: u64) -> Option<String> {
    if prefix < floor {
        return Some(format!(
            "node {at}, topic {name:?}: a strong read answered with the cluster's first {prefix} writes, though \
             write {} was acknowledged before it was issued",
            floor - 1
        ));
    }
    (prefix < before).then(|| {
        format!(
            "node {at}, topic {name:?}: a strong read answered with the cluster's first {prefix} writes, though an \
             answer before it was issued held {before}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed_check::tests::counter_op;
    use outpost_core::hlc::Hlc;
    use outpost_core::keyed_reads::SessionToken;

    #[test]
    fn the_linearizability_checker_catches_a_stale_prefix_and_a_wrong_value() {
        assert_eq!(prefix_violation("stock", "m1", 3, 3, 2), None, "holds every finished write");
        let stale = prefix_violation("stock", "m2", 2, 3, 0).expect("write 2 finished before the read");
        assert!(stale.contains("write 2 was acknowledged"), "{stale}");
        let back = prefix_violation("stock", "m3", 3, 1, 4).expect("an earlier answer held 4");
        assert!(back.contains("held 4"), "{back}");

        // A cluster (history index 3 of a world of three nodes) wrote three increments of
        // `k`; a read that holds the first two must answer 1 + 2.
        let s = crate::keyed_check::tests::world();
        let (topic, cluster) = (0, 3);
        let mut h = KeyedHistory::default();
        for (seq, n) in [(0, 1), (1, 2), (2, 4)] {
            h.on_ack(cluster, topic, b"k".to_vec(), counter_op(n), seq, Hlc::new(1_000 + seq, 0));
        }
        let mut reads = StrongReads::default();
        let stamp = |held: u64| {
            let mut token = SessionToken::new("stock");
            token.add(outpost_core::keyed::Dot { origin: NodeId(cluster as u64 + 1), seq: held - 1 });
            Ok(ReadStamp { token, as_of_ms: 5_000, staleness_ms: Some(0) })
        };
        reads.issue(&h, 1, 1, (topic, cluster), b"k".to_vec());
        reads.on_answer(&s, 1, stamp(3), |_, _| Answer::Number(7));
        reads.issue(&h, 2, 2, (topic, cluster), b"k".to_vec());
        reads.on_answer(&s, 2, stamp(3), |_, _| Answer::Number(3));
        let found = reads.violations(&h, &s, |_| true);
        assert_eq!(found.len(), 1, "the second answer is wrong: {found:?}");
        assert!(found[0].contains("till-2") && found[0].contains("first 3 writes"), "{found:?}");
        assert_eq!((reads.report.answered, reads.report.values_checked), (2, 2));

        // A read issued after all three were acknowledged, answered with two of them.
        reads.issue(&h, 3, 1, (topic, cluster), b"k".to_vec());
        reads.on_answer(&s, 3, stamp(2), |_, _| Answer::Number(3));
        let found = reads.violations(&h, &s, |_| true);
        assert!(found.iter().any(|v| v.contains("write 2 was acknowledged")), "{found:?}");
    }
}

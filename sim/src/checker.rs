//! Checkers of DESIGN §3's guarantees, fed as the run goes:
//!
//! | guarantee | checked in |
//! |---|---|
//! | 1 durability | `on_stored` (an acknowledged record skipped), `on_skipped` (an acknowledged record the edge gave up on that storage never destroyed) and `finish` (never delivered) |
//! | 2 exactly-once | `on_stored`: a sequence stored twice at the gateway; `on_down_stored`: twice at one edge |
//! | 3 order | `on_stored`, `on_down_stored`: a sequence stored before its predecessor (a gap) |
//! | 4 convergence | the world's settle phase, via `undelivered` |
//! | 6 causality | `on_ack` (a node's timestamps never go back, across crashes too) and `on_stored` (the gateway's receive timestamp is after the record's); `on_hlc_ahead`, from `clock_check`: a node's timestamps never run ahead of its own wall clock by more than `max_offset_ms` unless that clock went back |
//! | 1 and 8: eviction | `on_evicted`: an edge evicted unsynced records of a topic whose policy is `keep` |
//! | 8 bounded resources | the world checks every node's accounting after every step and reports through `on_budget_violation` |
//! | 1 and 2: sequence identity | `on_ack`: an acknowledgement of a sequence the gateway already holds with other content, or has moved past (a sequence handed out again after recovery cut a tail) |
//! | 5 consensus (site clusters) | `on_strong_ack` and the strong path of `on_stored`: two writes acknowledged at one sequence of a cluster's stream, one write acknowledged or stored at two, a write acknowledged at a sequence at or below one acknowledged before it was written (real-time order: linearizability of appends), and `on_leader`: two leaders in one term |
//!
//! Promises checked the moment they are made, against the simulator's own truth, are in
//! `crate::durability` (acknowledged means durable), `crate::site_checks` (Raft's commit
//! rule, the no-quorum promise) and `crate::heap` (the real heap); they report through
//! [`Checker::on_violation`] and [`Checker::on_budget_violation`].
//!
//! A `cloud-to-edge` stream (a gateway's records, `add_down_stream`) has many replicas:
//! every edge that syncs up to that gateway must hold every acknowledged record, once and
//! in order. Its records count as delivered once per replica, and `undelivered` counts
//! what each replica still lacks.
//!
//! Memory is bounded by the backlog: per stream, only acknowledged records not yet
//! delivered (to every replica) are remembered (sequence and value CRC). A site cluster's stream is the
//! exception: its members acknowledge out of sequence order, so every acknowledged and
//! stored sequence of it is kept for the run (bounded by the run's length).

use outpost_core::hlc::Hlc;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// Violations kept in full; later ones are only counted.
pub const VIOLATIONS_KEPT_MAX: usize = 100;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    /// Simulated seconds since the start.
    pub at: f64,
    pub detail: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub acked: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub content_mismatches: u64,
    pub causality: u64,
    /// Deliveries whose sender's clock the gateway refused as too far ahead.
    pub hlc_rejected_deliveries: u64,
    /// Records delivered that were never acknowledged (durable at a crash before the ack).
    pub delivered_unacked: u64,
    /// Acknowledged records the gateway will never hold because a `disk-corrupt` fault
    /// destroyed the edge's only copy and the edge said so (DESIGN §3, guarantee 1).
    pub corrupted: u64,
    /// Acknowledged records the gateway will never hold because the edge evicted them
    /// under a lossy eviction policy, and said so.
    pub evicted_unsynced: u64,
    /// Steps at which a node's accounting was above a budget (guarantee 8).
    pub budget_violations: u64,
    /// Strong writes acknowledged (included in `acked`).
    pub strong_acked: u64,
    /// Times a site member became leader.
    pub leaders_elected: u64,
}

#[derive(Debug, Default)]
struct StreamCheck {
    /// Acknowledged, not yet delivered: (seq, value CRC, key hash), in sequence order.
    pending: VecDeque<(u64, u32, Option<u64>)>,
    /// Keyed streams: the newest acknowledged sequence of each key (by hash).
    newest: BTreeMap<u64, u64>,
    last_acked: Option<u64>,
    next_expected: u64,
    /// Records the gateway stored before they were acknowledged (durable at a crash that
    /// came before the reply), by sequence: value CRC. Forgotten once a later sequence is
    /// acknowledged (an acknowledgement at or below it is then a reuse anyway).
    stored_unacked: BTreeMap<u64, u32>,
}

/// A stream: origin node index and topic index.
pub type StreamKey = (usize, u16);

/// A site cluster's stream: every acknowledged and stored record, by sequence.
#[derive(Debug, Default)]
struct StrongCheck {
    acked: BTreeMap<u64, u32>,
    acked_seq_of: BTreeMap<u32, u64>,
    stored: BTreeMap<u64, u32>,
    stored_seq_of: BTreeMap<u32, u64>,
    next_expected: u64,
    max_acked: Option<u64>,
    /// A keyed topic's stream: its values are operations, which repeat (an increment by
    /// one, a delete with the same context), so a CRC names no write, and no write is
    /// looked for at a second sequence by its CRC (the checks by sequence remain).
    keyed: bool,
}

/// A gateway's `cloud-to-edge` stream and the edges that must hold it.
#[derive(Debug, Default)]
struct DownCheck {
    /// Acknowledged records some replica does not hold yet: sequence → (value CRC, when
    /// acknowledged).
    acked: BTreeMap<u64, (u32, u64)>,
    /// The topic's `retention_age` in nanoseconds: an edge may be told it will never get
    /// a record acknowledged at least that long ago (counted `evicted_unsynced`).
    retention_age: Option<u64>,
    last_acked: Option<u64>,
    /// Per replica (node index): the next sequence it must store.
    replicas: BTreeMap<usize, u64>,
    /// Per replica whose copy storage destroyed from a sequence on (a `corrupt-tail` or
    /// `disk-corrupt` fault on the edge): it may store again from there, having cut its
    /// log back at recovery, until it is back where it was. (A copy destroyed mid-log,
    /// which recovery keeps past, is not sent again: docs/ARCHITECTURE.md, "Not yet".)
    repairing: BTreeMap<usize, u64>,
    /// Replicas excused from holding the rest: their storage is full of data that never
    /// leaves them (`excuse_replica`).
    excused: std::collections::BTreeSet<usize>,
}

#[derive(Debug, Default)]
pub struct Checker {
    /// `cloud-to-edge` streams, by (gateway, topic).
    down: BTreeMap<StreamKey, DownCheck>,
    /// Streams going up through middle tiers: per (tier, stream), the next sequence the
    /// tier must store (its copy is checked for exactly-once and order; what is delivered
    /// is decided at the top, by `streams`).
    relayed: BTreeMap<(usize, StreamKey), u64>,
    streams: BTreeMap<StreamKey, StreamCheck>,
    /// Offset ranges `disk-corrupt` faults destroyed, per stream: the simulator's truth.
    destroyed: BTreeMap<StreamKey, Vec<(u64, u64)>>,
    /// Offset ranges edges evicted under a lossy policy, per stream (from their events),
    /// and whether the policy was `compact` (which must keep every key's newest value).
    evicted: BTreeMap<StreamKey, Vec<(u64, u64, bool)>>,
    last_hlc: BTreeMap<usize, Hlc>,
    /// Streams of site clusters (origin is the cluster).
    strong: BTreeMap<StreamKey, StrongCheck>,
    /// Per cluster origin and term: the node that led.
    leaders: BTreeMap<(usize, u64), usize>,
    pub violations: Vec<Violation>,
    pub violation_count: u64,
    pub counts: Counts,
}

fn secs(at_ns: u64) -> f64 {
    at_ns as f64 / 1e9
}

impl DownCheck {
    /// Records every replica holds are forgotten.
    fn forget_delivered(&mut self) {
        let low = self.replicas.values().copied().min().unwrap_or(u64::MAX);
        self.acked = self.acked.split_off(&low);
    }

    fn undelivered(&self) -> u64 {
        self.lacking().map(|(_, n)| n).sum()
    }

    /// What each replica that is not excused still lacks.
    fn lacking(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (self.replicas.iter())
            .filter(|(r, _)| !self.excused.contains(r))
            .map(|(&r, &next)| (r, self.acked.range(next..).count() as u64))
    }
}

impl Checker {
    fn violate(&mut self, at: u64, invariant: &'static str, detail: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(Violation { invariant, at: secs(at), detail });
        }
    }

    /// A producer's record was acknowledged as durable.
    /// `key`: which key the record wrote, on keyed topics.
    #[allow(clippy::too_many_arguments)]
    pub fn on_ack(&mut self, at: u64, node: usize, topic: u16, seq: u64, hlc: Hlc, crc: u32, key: Option<u64>) {
        self.counts.acked += 1;
        if let Some(prev) = self.last_hlc.insert(node, hlc) {
            if hlc <= prev {
                self.counts.causality += 1;
                self.violate(at, "causality", format!("node {node} issued HLC {hlc:?} after {prev:?}"));
            }
        }
        let s = self.streams.entry((node, topic)).or_default();
        if let Some(last) = s.last_acked {
            if seq <= last {
                self.violate(
                    at,
                    "durability",
                    format!("node {node} topic {topic}: seq {seq} acknowledged again after {last}: an acknowledged record was overwritten"),
                );
            }
        }
        let s = self.streams.entry((node, topic)).or_default();
        s.last_acked = Some(seq);
        if let Some(k) = key {
            s.newest.insert(k, seq);
        }
        if seq >= s.next_expected {
            s.pending.push_back((seq, crc, key));
            return;
        }
        // The gateway already holds this identity, or moved past it: a record handed a
        // sequence that an earlier record had (recovery cut a tail and gave its
        // sequences out again) shows here, not as a duplicate at the gateway.
        let held = s.stored_unacked.get(&seq).copied();
        s.stored_unacked = s.stored_unacked.split_off(&(seq + 1));
        match held {
            Some(c) if c == crc => {}
            Some(c) => {
                self.counts.content_mismatches += 1;
                self.violate(
                    at,
                    "sequence-identity",
                    format!("node {node} topic {topic}: seq {seq} acknowledged with value CRC {crc:08x}, but the gateway holds {c:08x} for that identity"),
                );
            }
            None => {
                self.counts.lost += 1;
                self.violate(
                    at,
                    "durability",
                    format!("node {node} topic {topic}: seq {seq} acknowledged after the gateway had moved past it: it can never arrive"),
                );
            }
        }
    }

    /// A violation found by a check outside this checker (`crate::durability`, the
    /// no-quorum promise, Raft's commit rule, the real heap).
    pub fn on_violation(&mut self, at: u64, invariant: &'static str, detail: String) {
        self.violate(at, invariant, detail);
    }

    /// The gateway holds these records durably.
    #[allow(clippy::too_many_arguments)]
    pub fn on_stored(
        &mut self,
        at: u64,
        origin: usize,
        topic: u16,
        first_seq: u64,
        crcs: &[u32],
        max_record_hlc: Hlc,
        received_hlc: Hlc,
        hlc_rejected: bool,
        replay: bool,
    ) {
        if !replay && !crcs.is_empty() {
            if hlc_rejected {
                self.counts.hlc_rejected_deliveries += 1;
            } else if received_hlc <= max_record_hlc {
                self.counts.causality += 1;
                self.violate(
                    at,
                    "causality",
                    format!("origin {origin} topic {topic} seq {first_seq}: stored at HLC {received_hlc:?}, not after the record's {max_record_hlc:?}"),
                );
            }
        }
        for (i, &crc) in crcs.iter().enumerate() {
            self.on_stored_record(at, origin, topic, first_seq + i as u64, crc, replay);
        }
    }

    fn on_stored_record(&mut self, at: u64, origin: usize, topic: u16, seq: u64, crc: u32, replay: bool) {
        if self.strong.contains_key(&(origin, topic)) {
            return self.on_stored_strong(at, (origin, topic), seq, crc, replay);
        }
        let s = self.streams.entry((origin, topic)).or_default();
        if seq < s.next_expected {
            if !replay {
                self.counts.duplicates += 1;
                self.violate(at, "exactly-once", format!("origin {origin} topic {topic}: seq {seq} stored again"));
            }
            return;
        }
        if seq > s.next_expected {
            let expected = s.next_expected;
            self.counts.out_of_order += 1;
            self.violate(at, "order", format!("origin {origin} topic {topic}: seq {seq} stored before seq {expected}"));
        }
        let s = self.streams.entry((origin, topic)).or_default();
        let mut skipped = Vec::new();
        while let Some(&(p, _, _)) = s.pending.front() {
            if p >= seq {
                break;
            }
            skipped.push(p);
            s.pending.pop_front();
        }
        let mismatch = match s.pending.front() {
            Some(&(p, expected_crc, _)) if p == seq => {
                s.pending.pop_front();
                (expected_crc != crc).then_some(expected_crc)
            }
            _ => {
                self.counts.delivered_unacked += 1;
                s.stored_unacked.insert(seq, crc);
                None
            }
        };
        s.next_expected = seq + 1;
        self.counts.delivered += 1;
        for p in skipped {
            self.counts.lost += 1;
            self.violate(
                at,
                "durability",
                format!("origin {origin} topic {topic}: acknowledged seq {p} skipped at the gateway"),
            );
        }
        if let Some(expected_crc) = mismatch {
            self.counts.content_mismatches += 1;
            self.violate(
                at,
                "durability",
                format!("origin {origin} topic {topic}: seq {seq} stored with value CRC {crc:08x}, acknowledged with {expected_crc:08x}"),
            );
        }
    }

    /// An edge evicted records `from..to` of a topic before the gateway acknowledged them.
    /// Only a lossy policy allows it (`lossy`); under `keep` it is a durability violation
    /// at once, and any acknowledged record in the range that never arrives is lost.
    /// Under `compact` (`compact`), no key may lose its newest value: checked when the
    /// gateway accepts the skip.
    #[allow(clippy::too_many_arguments)]
    pub fn on_evicted(
        &mut self,
        at: u64,
        node: usize,
        topic: u16,
        from: u64,
        to: u64,
        lossy: bool,
        compact: bool,
        name: &str,
    ) {
        if !lossy {
            self.violate(
                at,
                "durability",
                format!("node {node} evicted unsynced records {from}..{to} of topic {name:?}, whose policy is keep"),
            );
            return;
        }
        self.evicted.entry((node, topic)).or_default().push((from, to, compact));
    }

    /// A node's accounting passed a budget after a step (guarantee 8).
    pub fn on_budget_violation(&mut self, at: u64, node: &str, detail: String) {
        self.counts.budget_violations += 1;
        self.violate(at, "bounded-resources", format!("node {node}: {detail}"));
    }

    /// Whether storage destroyed, or a lossy policy evicted, records of `topic` anywhere:
    /// what a node holds of it is then more than the history of acknowledged writes says.
    pub fn records_gone(&self, topic: u16) -> bool {
        self.destroyed.keys().chain(self.evicted.keys()).any(|&(_, t)| t == topic)
    }

    /// A `disk-corrupt` fault destroyed the edge's copy of records `from..to`.
    pub fn on_destroyed(&mut self, node: usize, topic: u16, from: u64, to: u64) {
        self.destroyed.entry((node, topic)).or_default().push((from, to));
        for d in self.down.iter_mut().filter(|((_, t), _)| *t == topic).map(|(_, d)| d) {
            if d.replicas.get(&node).is_some_and(|&next| from < next) {
                let r = d.repairing.entry(node).or_insert(from);
                *r = (*r).min(from);
            }
        }
    }

    /// The gateway accepted a skip: `from..to` of the stream will never arrive. Each
    /// acknowledged record in it must be one storage destroyed (`corrupted`) or one the
    /// edge evicted under a lossy policy (`evicted_unsynced`); any other is lost.
    /// Acknowledged records below `from` not delivered were skipped over: lost.
    pub fn on_skipped(&mut self, at: u64, origin: usize, topic: u16, from: u64, to: u64, reason: &str) {
        if let Some(s) = self.strong.get_mut(&(origin, topic)) {
            // A cluster's stream has no lossy policy and no corruption faults: an
            // acknowledged write in a skipped range is lost.
            let lost: Vec<u64> =
                s.acked.range(from..to).map(|(&q, _)| q).filter(|q| !s.stored.contains_key(q)).collect();
            s.next_expected = s.next_expected.max(to);
            for p in lost {
                self.counts.lost += 1;
                self.violate(
                    at,
                    "durability",
                    format!("cluster {origin} topic {topic}: acknowledged seq {p} skipped ({reason})"),
                );
            }
            return;
        }
        let destroyed = self.destroyed.get(&(origin, topic)).cloned().unwrap_or_default();
        let evicted = self.evicted.get(&(origin, topic)).cloned().unwrap_or_default();
        let s = self.streams.entry((origin, topic)).or_default();
        if to <= s.next_expected {
            return;
        }
        let mut lost = Vec::new();
        let mut newest_lost = Vec::new();
        let (mut corrupted, mut gone) = (0, 0);
        let within = |ranges: &[(u64, u64)], p: u64| ranges.iter().any(|&(a, b)| a <= p && p < b);
        while let Some(&(p, _, key)) = s.pending.front() {
            if p >= to {
                break;
            }
            s.pending.pop_front();
            let eviction = evicted.iter().find(|&&(a, b, _)| a <= p && p < b);
            if p >= from && within(&destroyed, p) {
                corrupted += 1;
            } else if let (true, Some(&(_, _, compact))) = (p >= from, eviction) {
                gone += 1;
                if let (true, Some(k)) = (compact, key) {
                    if s.newest.get(&k) == Some(&p) {
                        newest_lost.push(p);
                    }
                }
            } else {
                lost.push(p);
            }
        }
        for p in newest_lost {
            self.violate(
                at,
                "durability",
                format!("origin {origin} topic {topic}: seq {p}, the newest value of its key, was compacted away"),
            );
        }
        let s = self.streams.entry((origin, topic)).or_default();
        s.next_expected = to;
        self.counts.corrupted += corrupted;
        self.counts.evicted_unsynced += gone;
        for p in lost {
            self.counts.lost += 1;
            self.violate(
                at,
                "durability",
                format!(
                    "origin {origin} topic {topic}: acknowledged seq {p} skipped ({reason}, {from}..{to}) but storage never destroyed it and it was not evicted"
                ),
            );
        }
    }

    /// Acknowledged records not yet delivered, over all streams (a `cloud-to-edge`
    /// record once per replica that lacks it).
    pub fn undelivered(&self) -> u64 {
        let strong: u64 =
            self.strong.values().map(|s| s.acked.keys().filter(|q| !s.stored.contains_key(q)).count() as u64).sum();
        let down: u64 = self.down.values().map(DownCheck::undelivered).sum();
        self.streams.values().map(|s| s.pending.len() as u64).sum::<u64>() + strong + down
    }

    /// Gateway `origin`'s topic `topic` goes down to the edges `replicas`.
    /// `retention_age`: the topic's, in nanoseconds.
    pub fn add_down_stream(
        &mut self,
        stream: StreamKey,
        replicas: impl IntoIterator<Item = usize>,
        retention_age: Option<u64>,
    ) {
        let d = self.down.entry(stream).or_default();
        d.replicas = replicas.into_iter().map(|r| (r, 0)).collect();
        d.retention_age = retention_age;
    }

    /// Edge `replica` cannot take what its gateways send down: its storage is full of data
    /// that never leaves it (local topics), as for a produce refused then (see
    /// `World::sample`). It is no longer waited for; returns what it lacks, which the
    /// report names (`None`: it holds no `cloud-to-edge` stream).
    pub fn excuse_replica(&mut self, replica: usize) -> Option<u64> {
        let mut lacking = None;
        for d in self.down.values_mut().filter(|d| d.replicas.contains_key(&replica)) {
            let n = d.lacking().find(|&(r, _)| r == replica).map_or(0, |(_, n)| n);
            *lacking.get_or_insert(0) += n;
            d.excused.insert(replica);
        }
        lacking
    }

    /// Whether `stream` is a `cloud-to-edge` stream.
    pub fn is_down_stream(&self, stream: StreamKey) -> bool {
        self.down.contains_key(&stream)
    }

    /// A gateway acknowledged a record of a `cloud-to-edge` topic to its producer.
    pub fn on_down_ack(&mut self, at: u64, node: usize, topic: u16, seq: u64, hlc: Hlc, crc: u32) {
        self.counts.acked += 1;
        if let Some(prev) = self.last_hlc.insert(node, hlc) {
            if hlc <= prev {
                self.counts.causality += 1;
                self.violate(at, "causality", format!("node {node} issued HLC {hlc:?} after {prev:?}"));
            }
        }
        let d = self.down.get_mut(&(node, topic)).expect("acknowledged on a registered down stream");
        let again = d.last_acked.filter(|&last| seq <= last);
        d.last_acked = Some(seq);
        if d.replicas.values().any(|&next| next <= seq) {
            d.acked.insert(seq, (crc, at));
        }
        // A replica already past it stored it before it was acknowledged (durable at a
        // crash that came before the reply): fine, as at a gateway.
        if let Some(last) = again {
            self.violate(
                at,
                "durability",
                format!("node {node} topic {topic}: seq {seq} acknowledged again after {last}: an acknowledged record was overwritten"),
            );
        }
    }

    /// Gateway `node` made durable, at `seq` of its `cloud-to-edge` topic `topic` (the half
    /// of a `bidirectional` keyed topic that comes down), its copy of an edge's write: every
    /// edge that takes the topic must store it once, in order, with this content, as it
    /// must the gateway's own acknowledged records.
    pub fn on_down_copied(&mut self, at: u64, node: usize, topic: u16, seq: u64, crc: u32) {
        let Some(d) = self.down.get_mut(&(node, topic)) else { return };
        if d.replicas.values().any(|&next| next <= seq) {
            d.acked.entry(seq).or_insert((crc, at));
        }
    }

    /// Edge `replica` durably holds records of gateway `origin`'s `cloud-to-edge` topic.
    /// `how`: the newest record's timestamp, the receive timestamp, whether the receiver
    /// refused the sender's clock, and whether recovery reports them again (`replay`: what
    /// it found in its newest segment, some of it perhaps never reported before).
    pub fn on_down_stored(
        &mut self,
        at: u64,
        replica: usize,
        (origin, topic): StreamKey,
        first_seq: u64,
        crcs: &[u32],
        (max_record_hlc, received_hlc, hlc_rejected, replay): (Hlc, Hlc, bool, bool),
    ) {
        if !replay && !crcs.is_empty() && !hlc_rejected && received_hlc <= max_record_hlc {
            self.counts.causality += 1;
            self.violate(
                at,
                "causality",
                format!("origin {origin} topic {topic} seq {first_seq}: stored at edge {replica} at HLC {received_hlc:?}, not after the record's {max_record_hlc:?}"),
            );
        }
        if !crcs.is_empty() && hlc_rejected {
            self.counts.hlc_rejected_deliveries += 1;
        }
        let mut problems = Vec::new();
        let d = self.down.get_mut(&(origin, topic)).expect("stored on a registered down stream");
        let Some(next) = d.replicas.get_mut(&replica) else {
            let detail = format!("origin {origin} topic {topic}: edge {replica} stored records it should not hold");
            return self.violate(at, "exactly-once", detail);
        };
        let repairing = d.repairing.get(&replica).copied();
        for (seq, &crc) in (first_seq..).zip(crcs) {
            if repairing.is_some_and(|from| seq >= from && seq < *next) {
                // Stored again after storage destroyed it here: not a second copy.
                if seq + 1 == *next {
                    d.repairing.remove(&replica);
                }
                continue;
            }
            if seq < *next {
                // Recovery reporting again what it found of its newest segment is not a
                // second copy.
                if !replay {
                    self.counts.duplicates += 1;
                    problems.push((
                        "exactly-once",
                        format!("origin {origin} topic {topic}: seq {seq} stored again at edge {replica}"),
                    ));
                }
                continue;
            }
            if seq > *next {
                self.counts.out_of_order += 1;
                let detail =
                    format!("origin {origin} topic {topic}: seq {seq} stored at edge {replica} before seq {next}");
                problems.push(("order", detail));
            }
            match d.acked.get(&seq) {
                Some(&(c, _)) if c != crc => {
                    self.counts.content_mismatches += 1;
                    let detail = format!("origin {origin} topic {topic}: seq {seq} stored at edge {replica} with value CRC {crc:08x}, acknowledged with {c:08x}");
                    problems.push(("durability", detail));
                }
                Some(_) => {}
                None => self.counts.delivered_unacked += 1,
            }
            self.counts.delivered += 1;
            *next = seq + 1;
        }
        d.forget_delivered();
        for (invariant, detail) in problems {
            self.violate(at, invariant, detail);
        }
    }

    /// Edge `replica` will never get `from..to` of a `cloud-to-edge` stream: the gateway
    /// skipped it. Acknowledged records in it that storage destroyed at the gateway are
    /// `corrupted` (once per replica); those acknowledged at least the topic's
    /// `retention_age` ago, `evicted_unsynced` (retention expired them on the way); any
    /// other is lost.
    pub fn on_down_skipped(&mut self, at: u64, replica: usize, (origin, topic): StreamKey, from: u64, to: u64) {
        let destroyed = self.destroyed.get(&(origin, topic)).cloned().unwrap_or_default();
        let d = self.down.get_mut(&(origin, topic)).expect("skipped on a registered down stream");
        let Some(next) = d.replicas.get_mut(&replica) else { return };
        let expired = |acked_at: u64| d.retention_age.is_some_and(|age| at.saturating_sub(acked_at) >= age);
        let skipped: Vec<(u64, bool)> = d.acked.range(*next..to).map(|(&q, &(_, t))| (q, expired(t))).collect();
        *next = (*next).max(to);
        d.forget_delivered();
        for (p, expired) in skipped {
            if p >= from && destroyed.iter().any(|&(a, b)| a <= p && p < b) {
                self.counts.corrupted += 1;
            } else if expired {
                // The topic's retention_age deleted it upstream before this edge had it.
                self.counts.evicted_unsynced += 1;
            } else {
                self.counts.lost += 1;
                let detail = format!("origin {origin} topic {topic}: acknowledged seq {p} skipped for edge {replica} ({from}..{to}) but storage never destroyed it");
                self.violate(at, "durability", detail);
            }
        }
    }

    /// Middle tier `tier` durably holds records of `stream`, which it relays up: each once,
    /// in order, as at the top (`replay`: recovery found them again, not a new copy).
    pub fn on_relay_stored(&mut self, at: u64, tier: usize, (origin, topic): StreamKey, first_seq: u64, count: u64) {
        let next = self.relayed.entry((tier, (origin, topic))).or_default();
        let (expected, end) = (*next, first_seq + count);
        *next = (*next).max(end);
        if first_seq < expected {
            let n = expected.min(end) - first_seq;
            self.counts.duplicates += n;
            let detail = format!("origin {origin} topic {topic}: seq {first_seq} stored again at middle tier {tier}");
            self.violate(at, "exactly-once", detail);
        } else if first_seq > expected {
            self.counts.out_of_order += 1;
            let detail = format!(
                "origin {origin} topic {topic}: seq {first_seq} stored at middle tier {tier} before seq {expected}"
            );
            self.violate(at, "order", detail);
        }
    }

    /// Middle tier `tier` accepted a skip of `stream`: it will never hold `from..to` (the
    /// top decides whether that lost anything, when the skip reaches it).
    pub fn on_relay_skipped(&mut self, tier: usize, stream: StreamKey, to: u64) {
        let next = self.relayed.entry((tier, stream)).or_default();
        *next = (*next).max(to);
    }

    /// Acknowledged records not yet delivered, per stream that has any (for the trace of
    /// a run that did not converge).
    pub fn undelivered_streams(&self) -> Vec<(StreamKey, u64)> {
        let mut out: Vec<(StreamKey, u64)> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.pending.is_empty())
            .map(|(k, s)| (*k, s.pending.len() as u64))
            .collect();
        for (k, s) in &self.strong {
            let n = s.acked.keys().filter(|q| !s.stored.contains_key(q)).count() as u64;
            if n > 0 {
                out.push((*k, n));
            }
        }
        out
    }

    /// `stream` is a site cluster's: its members acknowledge out of order. `keyed`: of a
    /// keyed topic (see `StrongCheck::keyed`).
    pub fn add_strong_stream(&mut self, stream: StreamKey, keyed: bool) {
        self.strong.entry(stream).or_default().keyed = keyed;
    }

    /// The highest sequence of a cluster's stream acknowledged so far (for the real-time
    /// order check of a write invoked now).
    pub fn strong_max_acked(&self, stream: StreamKey) -> Option<u64> {
        self.strong.get(&stream).and_then(|s| s.max_acked)
    }

    /// `node` became leader of cluster `origin` in `term`.
    pub fn on_leader(&mut self, at: u64, origin: usize, term: u64, node: usize) {
        self.counts.leaders_elected += 1;
        if let Some(&other) = self.leaders.get(&(origin, term)) {
            if other != node {
                self.violate(
                    at,
                    "election-safety",
                    format!("cluster {origin}: nodes {other} and {node} both led term {term}"),
                );
            }
            return;
        }
        self.leaders.insert((origin, term), node);
    }

    /// A strong write was acknowledged to its producer at `seq` of the cluster's stream.
    /// `floor`: the highest sequence acknowledged before the write was invoked.
    /// (No per-node timestamp check: the ack carries the record's stamp in the cluster's
    /// stream, which the cluster, not the writing node, issues.)
    pub fn on_strong_ack(&mut self, at: u64, stream: StreamKey, seq: u64, crc: u32, floor: Option<u64>) {
        self.counts.acked += 1;
        self.counts.strong_acked += 1;
        let (origin, topic) = stream;
        let s = self.strong.entry(stream).or_default();
        s.max_acked = s.max_acked.max(Some(seq));
        let mut problems = Vec::new();
        if let Some(other) = s.acked.insert(seq, crc).filter(|&c| c != crc) {
            problems.push(("consensus", format!("cluster {origin} topic {topic}: two writes acknowledged at seq {seq} (CRCs {other:08x} and {crc:08x})")));
        }
        if let Some(other) = (!s.keyed).then(|| s.acked_seq_of.insert(crc, seq)).flatten().filter(|&q| q != seq) {
            problems.push((
                "exactly-once",
                format!("cluster {origin} topic {topic}: one write acknowledged at seq {other} and at seq {seq}"),
            ));
        }
        if let Some(f) = floor.filter(|&f| seq <= f) {
            problems.push((
                "linearizability",
                format!("cluster {origin} topic {topic}: a write invoked after seq {f} was acknowledged got seq {seq}"),
            ));
        }
        if let Some(&stored) = s.stored.get(&seq) {
            if stored != crc {
                self.counts.content_mismatches += 1;
                problems.push(("durability", format!("cluster {origin} topic {topic}: seq {seq} acknowledged with CRC {crc:08x}, stored with {stored:08x}")));
            }
        }
        for (invariant, detail) in problems {
            self.violate(at, invariant, detail);
        }
    }

    fn on_stored_strong(&mut self, at: u64, stream: StreamKey, seq: u64, crc: u32, replay: bool) {
        let (origin, topic) = stream;
        let s = self.strong.get_mut(&stream).expect("checked by the caller");
        let mut problems = Vec::new();
        if seq < s.next_expected {
            if !replay {
                self.counts.duplicates += 1;
                problems.push(("exactly-once", format!("cluster {origin} topic {topic}: seq {seq} stored again")));
            }
        } else {
            if seq > s.next_expected {
                self.counts.out_of_order += 1;
                problems.push((
                    "order",
                    format!("cluster {origin} topic {topic}: seq {seq} stored before seq {}", s.next_expected),
                ));
            }
            s.next_expected = seq + 1;
            s.stored.insert(seq, crc);
            self.counts.delivered += 1;
            match s.acked.get(&seq) {
                Some(&a) if a != crc => {
                    self.counts.content_mismatches += 1;
                    problems.push(("durability", format!("cluster {origin} topic {topic}: seq {seq} stored with CRC {crc:08x}, acknowledged with {a:08x}")));
                }
                Some(_) => {}
                None => self.counts.delivered_unacked += 1,
            }
            if let Some(other) = (!s.keyed).then(|| s.stored_seq_of.insert(crc, seq)).flatten().filter(|&q| q != seq) {
                self.counts.duplicates += 1;
                problems.push((
                    "exactly-once",
                    format!("cluster {origin} topic {topic}: one write stored at seq {other} and at seq {seq}"),
                ));
            }
        }
        for (invariant, detail) in problems {
            self.violate(at, invariant, detail);
        }
    }

    /// End of run: every acknowledged record not delivered is lost.
    pub fn finish(&mut self, at: u64) {
        let undelivered: Vec<(StreamKey, usize, u64)> = self
            .down
            .iter()
            .flat_map(|(&k, d)| d.lacking().map(move |(r, n)| (k, r, n)))
            .filter(|&(_, _, n)| n > 0)
            .collect();
        for ((origin, topic), replica, n) in undelivered {
            self.counts.lost += n;
            let detail =
                format!("origin {origin} topic {topic}: {n} acknowledged records never reached edge {replica}");
            self.violate(at, "durability", detail);
        }
        let missing: Vec<(StreamKey, u64, u64)> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.pending.is_empty())
            .map(|(k, s)| (*k, s.pending.len() as u64, s.pending[0].0))
            .collect();
        for ((origin, topic), n, first) in missing {
            self.counts.lost += n;
            self.violate(
                at,
                "durability",
                format!("origin {origin} topic {topic}: {n} acknowledged records never reached the gateway (first seq {first})"),
            );
        }
        for s in self.streams.values_mut() {
            s.pending.clear();
        }
        let mut missing = Vec::new();
        for (&(origin, topic), s) in &self.strong {
            let lost: Vec<u64> = s.acked.keys().copied().filter(|q| !s.stored.contains_key(q)).collect();
            if let Some(&first) = lost.first() {
                missing.push((origin, topic, lost.len() as u64, first));
            }
        }
        for (origin, topic, n, first) in missing {
            self.counts.lost += n;
            self.violate(
                at,
                "durability",
                format!("cluster {origin} topic {topic}: {n} acknowledged strong writes never reached the gateway (first seq {first})"),
            );
        }
    }
}

/// Clocks (issue 15): fed by the world from `clock_check::HlcAheadCheck`.
impl Checker {
    /// A node issued a timestamp further ahead of its own wall clock than its
    /// `max_offset_ms`, though its wall clock never went back (see `clock_check`).
    pub fn on_hlc_ahead(&mut self, at: u64, detail: String) {
        self.violate(at, "hlc-ahead-of-wall", detail);
    }

    pub fn on_hlc_behind(&mut self, at: u64, detail: String) {
        self.violate(at, "hlc-behind-wall", detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ms: u64) -> Hlc {
        Hlc::new(ms, 0)
    }

    const SITE: StreamKey = (9, 0);

    fn site_checker() -> Checker {
        let mut c = Checker::default();
        c.add_strong_stream(SITE, false);
        c
    }

    fn invariants(c: &Checker) -> Vec<&'static str> {
        c.violations.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_clean_strong_history_acknowledged_out_of_order_passes() {
        let mut c = site_checker();
        // Members acknowledge out of sequence order; the gateway stores in order.
        c.on_strong_ack(1, SITE, 2, 0xc2, None);
        c.on_strong_ack(2, SITE, 0, 0xc0, None);
        assert_eq!(c.undelivered(), 2);
        c.on_stored(3, SITE.0, SITE.1, 0, &[0xc0, 0xc1, 0xc2], h(1), h(2), false, false);
        c.on_strong_ack(4, SITE, 1, 0xc1, Some(0));
        assert_eq!(c.undelivered(), 0);
        c.finish(5);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!((c.counts.strong_acked, c.counts.delivered), (3, 3));
    }

    #[test]
    fn two_leaders_of_one_cluster_in_one_term_are_a_violation() {
        let mut c = site_checker();
        c.on_leader(1, 9, 3, 0);
        c.on_leader(2, 9, 3, 0);
        c.on_leader(3, 9, 4, 1);
        assert!(c.violations.is_empty());
        c.on_leader(4, 9, 4, 2);
        assert_eq!(invariants(&c), ["election-safety"]);
    }

    #[test]
    fn two_strong_writes_acknowledged_at_one_sequence_are_a_violation() {
        let mut c = site_checker();
        c.on_strong_ack(1, SITE, 5, 0xaa, None);
        c.on_strong_ack(2, SITE, 5, 0xbb, None);
        assert_eq!(invariants(&c), ["consensus"]);
    }

    #[test]
    fn one_strong_write_stored_at_two_sequences_is_a_violation() {
        let mut c = site_checker();
        c.on_strong_ack(1, SITE, 0, 0xaa, None);
        c.on_stored(2, SITE.0, SITE.1, 0, &[0xaa, 0xaa], h(1), h(2), false, false);
        assert_eq!(invariants(&c), ["exactly-once"]);
        let mut c = site_checker();
        c.on_strong_ack(1, SITE, 0, 0xaa, None);
        c.on_strong_ack(2, SITE, 1, 0xaa, None);
        assert_eq!(invariants(&c), ["exactly-once"], "one write acknowledged at two sequences");
    }

    #[test]
    fn a_strong_write_ordered_before_one_acknowledged_before_it_is_a_violation() {
        let mut c = site_checker();
        c.on_strong_ack(1, SITE, 4, 0xa4, None);
        // Invoked after seq 4 was acknowledged, so it must come after it.
        c.on_strong_ack(2, SITE, 3, 0xa3, Some(4));
        assert_eq!(invariants(&c), ["linearizability"]);
    }

    #[test]
    fn an_acknowledged_strong_write_the_gateway_never_holds_is_lost() {
        let mut c = site_checker();
        c.on_strong_ack(1, SITE, 0, 0xa0, None);
        c.on_strong_ack(1, SITE, 1, 0xa1, None);
        c.on_stored(2, SITE.0, SITE.1, 0, &[0xa0], h(1), h(2), false, false);
        c.finish(3);
        assert_eq!(invariants(&c), ["durability"]);
        assert_eq!(c.counts.lost, 1);
        let mut c = site_checker();
        c.on_strong_ack(1, SITE, 0, 0xa0, None);
        c.on_stored(2, SITE.0, SITE.1, 0, &[0xff], h(1), h(2), false, false);
        assert_eq!(invariants(&c), ["durability"], "stored with another value than acknowledged");
    }

    fn clean_history(c: &mut Checker) {
        for seq in 0..3 {
            c.on_ack(seq, 0, 0, seq, h(100 + seq), 7 + seq as u32, None);
        }
        c.on_stored(10, 0, 0, 0, &[7, 8], h(101), h(200), false, false);
        c.on_stored(11, 0, 0, 2, &[9], h(102), h(201), false, false);
    }

    #[test]
    fn a_skip_over_destroyed_records_counts_them_as_corrupted() {
        let mut c = Checker::default();
        clean_history(&mut c);
        for seq in 3..10 {
            c.on_ack(seq, 0, 0, seq, h(110 + seq), 1, None);
        }
        c.on_destroyed(0, 0, 4, 6);
        c.on_stored(20, 0, 0, 3, &[1], h(113), h(300), false, false);
        c.on_skipped(21, 0, 0, 4, 6, "Corrupted");
        c.on_stored(22, 0, 0, 6, &[1, 1, 1, 1], h(119), h(301), false, false);
        c.finish(30);
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(c.counts.corrupted, 2);
        assert_eq!(c.counts.lost, 0);
        assert!(c.records_gone(0), "the keyed check skips a topic storage destroyed records of");
        assert!(!c.records_gone(1), "and only that topic");
    }

    #[test]
    fn a_skip_over_intact_records_is_loss() {
        let mut c = Checker::default();
        clean_history(&mut c);
        for seq in 3..10 {
            c.on_ack(seq, 0, 0, seq, h(110 + seq), 1, None);
        }
        c.on_destroyed(0, 0, 4, 5);
        c.on_skipped(21, 0, 0, 3, 6, "Unwritten");
        assert_eq!(c.counts.corrupted, 1);
        assert_eq!(c.counts.lost, 2, "seqs 3 and 5 were intact");
        assert_eq!(c.violations.len(), 2);
        assert!(c.violations[0]
            .detail
            .contains("acknowledged seq 3 skipped (Unwritten, 3..6) but storage never destroyed it"));
    }

    #[test]
    fn a_skip_over_evicted_records_counts_them_only_under_a_lossy_policy() {
        let mut c = Checker::default();
        clean_history(&mut c);
        for seq in 3..10 {
            c.on_ack(seq, 0, 0, seq, h(110 + seq), 1, None);
        }
        c.on_evicted(15, 0, 0, 3, 6, true, false, "t");
        c.on_skipped(21, 0, 0, 3, 7, "Evicted");
        assert_eq!(c.counts.evicted_unsynced, 3);
        assert_eq!(c.counts.lost, 1, "seq 6 was not evicted");
        assert_eq!(c.violations.len(), 1);
        c.on_evicted(22, 0, 1, 0, 5, false, false, "keep-me");
        assert_eq!(c.violations.len(), 2);
        assert!(c.violations[1].detail.contains("whose policy is keep"), "{:?}", c.violations);
    }

    #[test]
    fn compaction_that_loses_a_keys_newest_value_bites() {
        let mut c = Checker::default();
        // Keys 1, 2, 1, 2, 3 at seqs 0..5: seqs 0 and 1 are superseded, 2, 3 and 4 are newest.
        for (seq, key) in [1, 2, 1, 2, 3].into_iter().enumerate() {
            c.on_ack(seq as u64, 0, 0, seq as u64, h(10 + seq as u64), 1, Some(key));
        }
        c.on_evicted(6, 0, 0, 0, 2, true, true, "state");
        c.on_skipped(7, 0, 0, 0, 2, "Evicted");
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        assert_eq!(c.counts.evicted_unsynced, 2);
        c.on_evicted(8, 0, 0, 2, 3, true, true, "state");
        c.on_skipped(9, 0, 0, 2, 3, "Evicted");
        assert_eq!(c.violations.len(), 1);
        assert!(c.violations[0].detail.contains("seq 2, the newest value of its key, was compacted away"));
    }

    #[test]
    fn a_budget_violation_bites() {
        let mut c = Checker::default();
        c.on_budget_violation(5, "edge", "accounted memory 2 B is above the limit 1 B".into());
        assert_eq!(c.counts.budget_violations, 1);
        assert_eq!(c.violations[0].invariant, "bounded-resources");
    }

    #[test]
    fn a_clean_history_passes() {
        let mut c = Checker::default();
        clean_history(&mut c);
        c.finish(20);
        assert_eq!(c.violations, vec![]);
        assert_eq!(c.counts.delivered, 3);
        assert_eq!(c.counts.acked, 3);
    }

    /// Gateway 9's topic 1 goes down to edges 0 and 1; three records acknowledged.
    fn down_history() -> Checker {
        let mut c = Checker::default();
        c.add_down_stream((9, 1), [0, 1], None);
        for seq in 0..3 {
            c.on_down_ack(seq, 9, 1, seq, h(seq + 1), 100 + seq as u32);
        }
        c
    }

    const HLCS: (Hlc, Hlc, bool, bool) = (Hlc(1 << 16), Hlc(1 << 40), false, false);

    #[test]
    fn a_down_stream_is_delivered_once_per_edge() {
        let mut c = down_history();
        c.on_down_stored(10, 0, (9, 1), 0, &[100, 101, 102], HLCS);
        assert_eq!(c.undelivered(), 3, "edge 1 lacks all three");
        c.on_down_stored(11, 1, (9, 1), 0, &[100, 101], HLCS);
        c.on_down_stored(12, 1, (9, 1), 2, &[102], HLCS);
        c.finish(20);
        assert_eq!(c.violations, vec![]);
        assert_eq!((c.counts.acked, c.counts.delivered, c.undelivered()), (3, 6, 0));
    }

    #[test]
    fn a_down_record_twice_at_one_edge_or_out_of_order_bites() {
        let mut c = down_history();
        c.on_down_stored(10, 0, (9, 1), 0, &[100, 101], HLCS);
        c.on_down_stored(11, 0, (9, 1), 1, &[101], HLCS);
        c.on_down_stored(12, 1, (9, 1), 1, &[101], HLCS);
        assert_eq!(invariants(&c), vec!["exactly-once", "order"]);
        assert_eq!((c.counts.duplicates, c.counts.out_of_order), (1, 1));
    }

    #[test]
    fn a_down_record_an_edge_never_gets_is_lost_and_other_content_bites() {
        let mut c = down_history();
        c.on_down_stored(10, 0, (9, 1), 0, &[100, 101, 999], HLCS);
        c.on_down_stored(11, 1, (9, 1), 0, &[100], HLCS);
        c.finish(20);
        assert_eq!(invariants(&c), vec!["durability", "durability"]);
        assert_eq!((c.counts.content_mismatches, c.counts.lost), (1, 2), "edge 1 never got seqs 1 and 2");
    }

    #[test]
    fn a_down_skip_is_an_expiry_only_for_records_older_than_the_retention_age() {
        // Acknowledged at 0, 1 and 2; retention_age 100: at 101 seqs 0 and 1 are old enough.
        let mut c = Checker::default();
        c.add_down_stream((9, 1), [0], Some(100));
        for seq in 0..3 {
            c.on_down_ack(seq, 9, 1, seq, h(seq + 1), 100 + seq as u32);
        }
        c.on_down_skipped(101, 0, (9, 1), 0, 3);
        assert_eq!(invariants(&c), vec!["durability"], "seq 2 was acknowledged 99 ns before");
        assert_eq!((c.counts.evicted_unsynced, c.counts.lost), (2, 1));
    }

    /// Recovery reports its newest segment's records again: those reported before are no
    /// second copy, and one the crash kept it from reporting is delivered, in order.
    #[test]
    fn a_down_replay_is_no_second_copy_and_delivers_what_was_never_reported() {
        let mut c = down_history();
        c.on_down_stored(10, 0, (9, 1), 0, &[100], HLCS);
        let replay = (Hlc::ZERO, Hlc::ZERO, false, true);
        c.on_down_stored(11, 0, (9, 1), 0, &[100, 101], replay);
        c.on_down_stored(12, 0, (9, 1), 2, &[102], HLCS);
        assert_eq!(c.violations, vec![], "no causality check of a replay's zero receive timestamp either");
        assert_eq!((c.counts.duplicates, c.counts.delivered), (0, 3));
        c.on_down_stored(13, 0, (9, 1), 2, &[102], HLCS);
        assert_eq!(invariants(&c), vec!["exactly-once"], "a copy that is not a replay still bites");
    }

    #[test]
    fn a_down_record_at_an_edge_that_should_not_hold_it_bites() {
        let mut c = down_history();
        c.on_down_stored(10, 5, (9, 1), 0, &[100], HLCS);
        assert_eq!(invariants(&c), vec!["exactly-once"]);
    }

    #[test]
    fn replay_of_stored_records_is_not_a_duplicate() {
        let mut c = Checker::default();
        clean_history(&mut c);
        c.on_stored(12, 0, 0, 0, &[7, 8, 9], h(102), Hlc::ZERO, false, true);
        c.finish(20);
        assert_eq!(c.violations, vec![]);
    }

    #[test]
    fn lost_acknowledged_record_bites() {
        let mut c = Checker::default();
        c.on_ack(1, 0, 0, 0, h(1), 1, None);
        c.on_ack(2, 0, 0, 1, h(2), 2, None);
        c.on_stored(3, 0, 0, 0, &[1], h(1), h(5), false, false);
        c.finish(4);
        assert_eq!(c.counts.lost, 1);
        assert_eq!(c.violations[0].invariant, "durability");
        assert!(c.violations[0].detail.contains("never reached the gateway (first seq 1)"), "{:?}", c.violations);
    }

    #[test]
    fn skipped_acknowledged_record_bites_at_once() {
        let mut c = Checker::default();
        c.on_ack(1, 0, 0, 0, h(1), 1, None);
        c.on_ack(2, 0, 0, 1, h(2), 2, None);
        c.on_stored(3, 0, 0, 1, &[2], h(2), h(5), false, false);
        assert_eq!(c.counts.lost, 1);
        assert_eq!(c.counts.out_of_order, 1);
        assert!(c.violations.iter().any(|v| v.detail.contains("acknowledged seq 0 skipped")));
    }

    #[test]
    fn duplicate_bites() {
        let mut c = Checker::default();
        clean_history(&mut c);
        c.on_stored(12, 0, 0, 2, &[9], h(102), h(202), false, false);
        assert_eq!(c.counts.duplicates, 1);
        assert_eq!(c.violations[0].invariant, "exactly-once");
        assert!(c.violations[0].detail.contains("seq 2 stored again"));
    }

    #[test]
    fn reorder_bites() {
        let mut c = Checker::default();
        c.on_stored(1, 0, 0, 1, &[5], h(1), h(2), false, false);
        assert_eq!(c.counts.out_of_order, 1);
        assert_eq!(c.violations[0].invariant, "order");
        assert!(c.violations[0].detail.contains("seq 1 stored before seq 0"));
    }

    #[test]
    fn changed_content_bites() {
        let mut c = Checker::default();
        c.on_ack(1, 0, 0, 0, h(1), 0xaaaa, None);
        c.on_stored(2, 0, 0, 0, &[0xbbbb], h(1), h(2), false, false);
        assert_eq!(c.counts.content_mismatches, 1);
        assert!(c.violations[0].detail.contains("acknowledged with 0000aaaa"));
    }

    #[test]
    fn hlc_going_backwards_bites() {
        let mut c = Checker::default();
        c.on_ack(1, 3, 0, 0, h(10), 1, None);
        c.on_ack(2, 3, 1, 0, h(9), 1, None);
        assert_eq!(c.violations[0].invariant, "causality");
        assert!(c.violations[0].detail.contains("node 3 issued HLC"));
    }

    #[test]
    fn receive_before_send_bites_unless_the_clock_was_rejected() {
        let mut c = Checker::default();
        c.on_stored(1, 0, 0, 0, &[1], h(10), h(10), true, false);
        assert!(c.violations.is_empty());
        assert_eq!(c.counts.hlc_rejected_deliveries, 1);
        c.on_stored(2, 0, 0, 1, &[1], h(10), h(10), false, false);
        assert_eq!(c.violations[0].invariant, "causality");
    }

    #[test]
    fn an_identity_the_gateway_holds_acknowledged_with_other_content_bites() {
        let mut c = Checker::default();
        c.on_ack(1, 0, 0, 0, h(1), 0xa0, None);
        // Seq 1 was durable at a crash before its reply, and reached the gateway.
        c.on_stored(2, 0, 0, 0, &[0xa0, 0xa1], h(1), h(5), false, false);
        assert!(c.violations.is_empty());
        // Recovery cut the tail holding it and gave seq 1 to a new record.
        c.on_ack(3, 0, 0, 1, h(6), 0xb1, None);
        assert_eq!(invariants(&c), ["sequence-identity"]);
        assert!(c.violations[0].detail.contains("the gateway holds 000000a1 for that identity"), "{:?}", c.violations);
        // Acknowledged below a range the gateway skipped: it can never arrive.
        let mut c = Checker::default();
        c.on_ack(1, 0, 0, 0, h(1), 0xa0, None);
        c.on_stored(2, 0, 0, 0, &[0xa0], h(1), h(5), false, false);
        c.on_skipped(3, 0, 0, 1, 4, "Unwritten");
        c.on_ack(4, 0, 0, 2, h(6), 0xb2, None);
        assert_eq!(invariants(&c), ["durability"]);
        assert_eq!(c.counts.lost, 1);
    }

    #[test]
    fn sequence_reuse_after_ack_bites() {
        let mut c = Checker::default();
        c.on_ack(1, 0, 0, 5, h(1), 1, None);
        c.on_ack(2, 0, 0, 5, h(2), 2, None);
        assert_eq!(c.violations[0].invariant, "durability");
        assert!(c.violations[0].detail.contains("acknowledged again"));
    }
}

//! The world's part in keyed topics with a conflict strategy: the operations its
//! workloads write, the history of every acknowledged write, and the check after settling
//! that each node's state answers what the oracle (`keyed_oracle`) computes from the writes
//! that node holds.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use outpost_core::hlc::Hlc;
use outpost_core::keyed::{Dot, KeyedState, OpKind, Strategy};
use outpost_core::types::NodeId;
use rand::Rng;
use serde::Serialize;

use crate::keyed_oracle::{self, Answer, KeyedViolation, KeyedWrite};
use crate::rng::SimRng;
use crate::scenario::{Role, Scenario, SyncDirection};

/// What the keyed check saw (absent from reports of scenarios without keyed topics).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyedReport {
    /// Acknowledged writes of keyed topics with a conflict strategy.
    pub writes: u64,
    /// Conflicts the nodes running at the end recorded (since their last start).
    pub conflicts: u64,
    /// (node, key) answers compared with the oracle.
    pub answers_checked: u64,
    /// Keys not compared: a crash left one of their writes with an unknown fate (maybe
    /// durable, never acknowledged), so the history cannot say what the node holds.
    pub keys_unchecked: u64,
    /// Nodes not compared: their keyed states had no room for a write that reached them
    /// (`refused_full`), which a node keeps in its log and does not merge until its limit
    /// is raised (docs/KEYED.md, "Limits at the receiver"), so they answer without it.
    #[serde(skip_serializing_if = "crate::report::is_zero")]
    pub nodes_full: u64,
    /// Checkpoints of the keyed states the nodes running at the end wrote (since their
    /// last start).
    pub checkpoints: u64,
    /// Segments of keyed topics deleted anywhere in the run: only behind a durable
    /// checkpoint, so every restart after one loaded a checkpoint instead of the log.
    pub segments_deleted: u64,
    /// The sessions' causal and bounded reads (`crate::read_check`).
    pub reads: crate::read_check::ReadsReport,
}

/// The operation a workload writes to a keyed topic: a delete with probability
/// `deletes`, otherwise the strategy's kind of write (`value` for registers, a signed
/// increment, a value for a max register, `element` added or, three times in ten, removed).
pub fn draw_op<'a>(
    strategy: Strategy,
    rng: &mut SimRng,
    deletes: f64,
    value: &'a [u8],
    element: &'a [u8],
) -> OpKind<'a> {
    if rng.gen_bool(deletes) {
        return OpKind::Delete(vec![]);
    }
    match strategy {
        Strategy::Counter => OpKind::Increment(rng.gen_range(-3..=5)),
        Strategy::Max => OpKind::Max(rng.gen_range(0..1_000_000)),
        Strategy::AddWinsSet if rng.gen_bool(0.3) => OpKind::Remove(element),
        Strategy::AddWinsSet => OpKind::Add(element),
        _ => OpKind::Put(value),
    }
}

/// One acknowledged write and where it was written: node `origin`, topic (half) `topic`.
struct Written {
    origin: usize,
    topic: usize,
    write: KeyedWrite,
}

/// Every acknowledged write of the run's keyed topics, where each was stored, and the
/// keys a crash made unsure.
#[derive(Default)]
pub struct KeyedHistory {
    written: Vec<Written>,
    /// Per (node, topic, origin): the sequences the node stored of that origin's stream
    /// (its `Stored` events), as ranges in the order they came.
    stored: BTreeMap<(usize, usize, usize), Vec<Range<u64>>>,
    /// (topic name, key) with a write whose fate a crash left unknown.
    unknown: BTreeSet<(String, Vec<u8>)>,
    /// Per (gateway, half that comes down): the edges' writes it copied there, each at
    /// the lowest sequence it was copied at.
    copied: BTreeMap<(usize, usize), BTreeMap<Dot, u64>>,
    /// Per (topic, origin): its writes (indices in `written`), in sequence order.
    by_origin: BTreeMap<(usize, usize), Vec<usize>>,
}

impl KeyedHistory {
    /// Node `origin` acknowledged a write to `topic` at `seq` with timestamp `hlc`; its
    /// index in the history.
    pub fn on_ack(&mut self, origin: usize, topic: usize, key: Vec<u8>, op: Vec<u8>, seq: u64, hlc: Hlc) -> usize {
        let dot = Dot { origin: NodeId(origin as u64 + 1), seq };
        self.written.push(Written { origin, topic, write: KeyedWrite { key, dot, hlc, op } });
        let idx = self.written.len() - 1;
        let of_origin = self.by_origin.entry((topic, origin)).or_default();
        let at = of_origin.partition_point(|&i| self.written[i].write.dot.seq < seq);
        of_origin.insert(at, idx);
        idx
    }

    /// Per (half, origin) of keyed topic `name`: the origin's writes (indices), in
    /// sequence order.
    pub(crate) fn origins_of<'h>(
        &'h self,
        s: &'h Scenario,
        name: &'h str,
    ) -> impl Iterator<Item = ((usize, usize), &'h [usize])> + 'h {
        self.by_origin.iter().filter(move |((t, _), _)| s.topics[*t].name == name).map(|(&k, v)| (k, v.as_slice()))
    }

    /// Origin `origin`'s writes of half `topic` (indices), in sequence order.
    pub(crate) fn writes_by(&self, topic: usize, origin: usize) -> &[usize] {
        self.by_origin.get(&(topic, origin)).map_or(&[], Vec::as_slice)
    }

    /// Whether `node` holds write `i` now.
    pub(crate) fn held(&self, s: &Scenario, node: usize, i: usize) -> bool {
        let name = &s.topics[self.written[i].topic].name;
        self.holds(node, &self.written[i], |t| s.topics[t].name == *name)
    }

    /// Whether a write of `key` to topic `name` has a fate a crash or a timeout left
    /// unknown.
    pub(crate) fn is_unsure(&self, name: &str, key: &[u8]) -> bool {
        self.unknown.iter().any(|(n, k)| n == name && k == key)
    }

    /// The writes of `origin`'s stream of half `topic` below sequence `end`.
    pub(crate) fn prefix_of(&self, topic: usize, origin: usize, end: u64) -> Vec<KeyedWrite> {
        let writes = self.writes_by(topic, origin);
        let n = writes.partition_point(|&i| self.written[i].write.dot.seq < end);
        writes[..n].iter().map(|&i| self.written[i].write.clone()).collect()
    }

    pub(crate) fn hlc_of(&self, i: usize) -> Hlc {
        self.written[i].write.hlc
    }

    pub(crate) fn dot_of(&self, i: usize) -> Dot {
        self.written[i].write.dot
    }

    /// Node `node` stored `seqs` of `origin`'s stream of `topic` (received, and durable).
    pub fn on_stored(&mut self, node: usize, topic: usize, origin: usize, seqs: Range<u64>) {
        let ranges = self.stored.entry((node, topic, origin)).or_default();
        match ranges.last_mut() {
            Some(last) if last.end == seqs.start => last.end = seqs.end,
            _ => ranges.push(seqs),
        }
    }

    /// Gateway `gateway` made durable at `seq` of `topic` its copy of write `dot`.
    pub fn on_copied(&mut self, gateway: usize, topic: usize, seq: u64, dot: Dot) {
        let at = self.copied.entry((gateway, topic)).or_default().entry(dot).or_insert(seq);
        *at = (*at).min(seq);
    }

    /// Whether `node` stored `seq` of `origin`'s stream of `topic`.
    fn stored_at(&self, node: usize, topic: usize, origin: usize, seq: u64) -> bool {
        self.stored.get(&(node, topic, origin)).is_some_and(|ranges| ranges.iter().any(|r| r.contains(&seq)))
    }

    /// Whether `node` holds write `w`: its own, one it stored, or a gateway's copy of it
    /// that it stored (`halves(t)`: whether topic `t` is a half of `w`'s topic).
    fn holds(&self, node: usize, w: &Written, halves: impl Fn(usize) -> bool) -> bool {
        w.origin == node
            || self.stored_at(node, w.topic, w.origin, w.write.dot.seq)
            || self.copied.iter().any(|(&(gateway, topic), dots)| {
                halves(topic) && dots.get(&w.write.dot).is_some_and(|&seq| self.stored_at(node, topic, gateway, seq))
            })
    }

    /// The writes of edges to keyed topic `name` that a top gateway stored and did not
    /// copy into the half that comes down (its other edges would never merge them).
    fn uncopied(&self, s: &Scenario, name: &str) -> Vec<String> {
        let Some(down) = s.topics.iter().position(|t| t.name == name && t.sync == SyncDirection::CloudToEdge) else {
            return Vec::new();
        };
        let top = |g: usize| s.nodes[g].role == Role::Gateway && s.nodes[g].upstream.is_none();
        let mut missing = Vec::new();
        for g in (0..s.nodes.len()).filter(|&g| top(g)) {
            let copied = self.copied.get(&(g, down));
            for w in self.written.iter().filter(|w| s.topics[w.topic].name == name && w.origin != g) {
                let stored = self.stored_at(g, w.topic, w.origin, w.write.dot.seq);
                if stored && !copied.is_some_and(|c| c.contains_key(&w.write.dot)) {
                    missing.push(format!(
                        "node {}, topic {name:?}: stored write {:?} of {} and never copied it to its other edges",
                        s.nodes[g].id,
                        w.write.dot,
                        origin_name(s, w.origin)
                    ));
                }
            }
        }
        missing
    }

    /// A crash left a write of `key` to `topic` unanswered: it may or may not be durable.
    pub fn on_unknown_fate(&mut self, topic: &str, key: Vec<u8>) {
        self.unknown.insert((topic.to_string(), key));
    }

    /// Checks every running node's state of every keyed topic against the oracle, over the
    /// writes the node holds once the run converged: its own, and those it stored (its
    /// gateway's that came down, with the gateway's copies of the other edges' writes; its
    /// edges' that came up; an edge whose device was full may not have stored them all).
    /// `state(node, topic)` is the node's state, `None` for a node not running; a topic
    /// one of whose halves has records `gone` (destroyed or evicted somewhere) is skipped.
    pub fn check<'s>(
        &self,
        s: &Scenario,
        state: impl Fn(usize, usize) -> Option<&'s KeyedState>,
        gone: impl Fn(usize) -> bool,
        report: &mut KeyedReport,
    ) -> Vec<String> {
        report.writes = self.written.len() as u64;
        let mut violations = Vec::new();
        let mut checked_names = BTreeSet::new();
        for (ti, t) in s.topics.iter().enumerate() {
            let Some(conflict) = t.conflict else { continue };
            if !checked_names.insert(t.name.as_str()) {
                continue;
            }
            if (0..s.topics.len()).any(|h| s.topics[h].name == t.name && gone(h)) {
                continue;
            }
            violations.extend(self.uncopied(s, &t.name));
            let unsure: BTreeSet<&[u8]> =
                self.unknown.iter().filter(|(n, _)| *n == t.name).map(|(_, k)| k.as_slice()).collect();
            report.keys_unchecked += unsure.len() as u64;
            for node in 0..s.nodes.len() {
                let Some(state) = state(node, ti) else { continue };
                let held: Vec<KeyedWrite> = self
                    .written
                    .iter()
                    .filter(|w| s.topics[w.topic].name == t.name && self.holds(node, w, |h| s.topics[h].name == t.name))
                    .map(|w| w.write.clone())
                    .collect();
                let keys: BTreeMap<&[u8], ()> = held.iter().map(|w| (w.key.as_slice(), ())).collect();
                for key in keys.keys().filter(|k| !unsure.contains(*k)) {
                    report.answers_checked += 1;
                    if let Err(v) = keyed_oracle::check(conflict, t.merge.as_ref(), &held, key, Answer::of(state, key))
                    {
                        violations.push(format!(
                            "node {}, topic {:?} ({}): {}",
                            s.nodes[node].id,
                            t.name,
                            conflict,
                            describe(&v)
                        ));
                    }
                }
            }
        }
        violations
    }
}

/// The name of origin `origin` of the history: a node's id, or a site cluster's (index
/// `nodes.len() + k`, the site's k-th cluster in order of first appearance).
pub(crate) fn origin_name(s: &Scenario, origin: usize) -> String {
    if let Some(n) = s.nodes.get(origin) {
        return n.id.clone();
    }
    let mut names: Vec<&str> = Vec::new();
    for c in s.nodes.iter().filter_map(|n| n.cluster.as_deref()) {
        if !names.contains(&c) {
            names.push(c);
        }
    }
    names.get(origin - s.nodes.len()).map_or_else(|| format!("origin {origin}"), |c| format!("cluster {c}"))
}

/// A violation as a reader wants it: the key and values as text where they are.
pub(crate) fn describe(v: &KeyedViolation) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).chars().take(40).collect::<String>();
    let answer = |a: &Answer| match a {
        Answer::Absent => "absent".to_string(),
        Answer::Bytes(b) => format!("value {:?}", text(b)),
        Answer::Siblings(vs) => format!("{} siblings {:?}", vs.len(), vs.iter().map(|v| v.dot).collect::<Vec<_>>()),
        Answer::Number(n) => format!("{n}"),
        Answer::Elements(e) => format!("elements {:?}", e.iter().map(|e| text(e)).collect::<Vec<_>>()),
        Answer::MergeFailed(e, vs) => {
            format!("merge failed ({e}) over {:?}", vs.iter().map(|v| v.dot).collect::<Vec<_>>())
        }
    };
    match v {
        KeyedViolation::Resurrected { key, answered } => {
            format!("key {:?} answers {} though the history deleted it", text(key), answer(answered))
        }
        KeyedViolation::Diverged { key, expected, answered } => {
            format!("key {:?} answers {}, the strategy prescribes {}", text(key), answer(answered), answer(expected))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scenario;

    /// A gateway and two edges sharing a keyed counter.
    pub(crate) fn world() -> Scenario {
        let text = "name = \"fan-out\"\nabout = \"two tills\"\nduration = \"1m\"\n\
                    [[node]]\nid = \"hq\"\nrole = \"gateway\"\ndevice = \"cloud\"\n\
                    [[node]]\nid = \"till-1\"\nrole = \"edge\"\ndevice = \"pi4\"\n\
                    [[node]]\nid = \"till-2\"\nrole = \"edge\"\ndevice = \"pi4\"\n\
                    [[link]]\nbetween = [\"till-1\", \"hq\"]\nnet = \"lan\"\n\
                    [[link]]\nbetween = [\"till-2\", \"hq\"]\nnet = \"lan\"\n\
                    [[topic]]\nname = \"stock\"\nsync = \"bidirectional\"\nkeyed = true\nconflict = \"counter\"\n";
        scenario::parse(text, "fan-out.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_top_gateway_that_stored_an_edges_write_and_never_copied_it_is_a_violation() {
        let s = world();
        let (up, down) = (0, 1);
        assert_eq!((s.topics[up].sync, s.topics[down].sync), (SyncDirection::EdgeToCloud, SyncDirection::CloudToEdge));
        let (hq, till_1) = (0, 1);
        let mut h = KeyedHistory::default();
        h.on_ack(till_1, up, b"k".to_vec(), counter_op(2), 0, Hlc(5));
        assert!(h.uncopied(&s, "stock").is_empty(), "not stored at the gateway yet: nothing owed");
        h.on_stored(hq, up, till_1, 0..1);
        let missing = h.uncopied(&s, "stock");
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains("never copied"), "{missing:?}");
        let write = Dot { origin: NodeId(till_1 as u64 + 1), seq: 0 };
        h.on_copied(hq, down, 7, write);
        assert!(h.uncopied(&s, "stock").is_empty());
        // Till 2 holds the write once it stored the gateway's copy of it.
        let till_2 = 2;
        let holds = |h: &KeyedHistory| h.holds(till_2, &h.written[0], |t| s.topics[t].name == "stock");
        assert!(!holds(&h));
        h.on_stored(till_2, down, hq, 7..8);
        assert!(holds(&h));
    }

    /// An increment by `n`, encoded.
    pub(crate) fn counter_op(n: i64) -> Vec<u8> {
        let mut op = Vec::new();
        let kind = OpKind::Increment(n);
        outpost_core::keyed::KeyedOp { context: Default::default(), cloud: false, relayed: None, kind }.encode(&mut op);
        op
    }
}

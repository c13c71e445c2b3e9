//! A gateway's senders of `cloud-to-edge` topics: one [`Uplink`] (the same sender an
//! edge runs towards its gateway, over the topics that go down to that edge: all of them,
//! or those whose `subscribers` name it) per edge it has heard from, at most
//! `gateway.downlinks_max` at once.
//!
//! Guarantees enforced here and in the edge's receiver (`super::ingest`):
//! - Store and forward downwards: the gateway's records of a `cloud-to-edge` topic stay
//!   in its log until every subscriber it names has acknowledged them ([`Downlinks::retained_for`];
//!   a topic for every edge stays whole), and an edge's durable mark per stream is the
//!   end of its replica's log, which it tells the sender in every Welcome: an edge away
//!   for a week gets everything from where its storage ends. Only the topic's
//!   `retention_age` deletes what a subscriber lacks (`Space::expire_by_age`), counted.
//! - The marks of named subscribers outlive their senders (a dropped sender's edge still
//!   needs what it has not acknowledged) and, through the node's marks checkpoints
//!   (`crate::marks`), a restart: each is a mark the edge reported durable, so a
//!   checkpoint older than the newest marks only deletes less.
//! - Exactly once, in order, at every edge: the edge's receiver drops what is below its
//!   mark and refuses gaps, as a gateway does for the streams of its edges.
//! - Bounded: a sender is created when an edge says Hello and there is room; with
//!   `downlinks_max` senders, one whose edge acknowledged everything is dropped to make
//!   room, else one whose edge does not answer (an edge away, or gone for good, must not
//!   hold a slot a reachable one needs); either is rebuilt from the edge's marks at its
//!   next Hello. Otherwise the edge waits for a later Hello (its keepalive).

use super::uplink::{self, Codec, SendCounters, Uplink};
use crate::codec::{BatchDecoder, BatchEncoder};
use crate::config::{NodeConfig, TopicConfig};
use crate::effects::Ctx;
use crate::io::DiskOpId;
use crate::log::TopicLog;
use crate::memory::{MemoryPart, MemoryUsage, PlanBasis};
use crate::sync::proto::SyncMsg;
use crate::types::{Instant, NodeId, Seq, TopicIdx};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;

/// Tags of downlinks' reads (`Owner::Uplink`) start here, apart from an edge's own
/// uplink (0) and its site's (counting from 1).
const TAG_BASE: u64 = 1 << 63;

/// The senders' planned memory: per sender, what an edge's uplink plans for its streams
/// (flights, the held message, one read per stream) and its window.
pub(crate) fn planned(cfg: &NodeConfig, b: &PlanBasis) -> MemoryUsage {
    let per = uplink::planned_streams(b.down, b.down_held_max, b.down_read_max);
    let mut m = MemoryUsage::default();
    for part in [MemoryPart::Index, MemoryPart::SyncHeld] {
        m.set(part, b.downlinks * per.get(part));
    }
    let window = cfg.sync.window_bytes_max + b.down * b.down_held_max;
    m.set(MemoryPart::SyncWindow, b.downlinks * window);
    m.grow(MemoryPart::Index, senders_map_bytes(b.downlinks));
    m.grow(MemoryPart::Index, marks_map_bytes(cfg.named_subscriptions()));
    m
}

/// Heap bytes of `n` subscribers' marks.
const fn marks_map_bytes(n: u64) -> u64 {
    crate::memory::btree_bytes(n, std::mem::size_of::<(NodeId, TopicIdx)>(), std::mem::size_of::<Seq>())
}

/// Heap bytes of the map of `n` senders (their streams apart).
const fn senders_map_bytes(n: u64) -> u64 {
    crate::memory::btree_bytes(n, std::mem::size_of::<NodeId>(), std::mem::size_of::<Uplink>())
}

/// Counters of all senders, past and present, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DownlinkStats {
    pub created: u64,
    /// Senders dropped to make room for another edge's.
    pub dropped: u64,
    /// Edges that said Hello while no sender could be dropped for them.
    pub refused: u64,
    pub sent: SendCounters,
}

/// A gateway's senders of `cloud-to-edge` topics, by edge.
#[derive(Debug, Default)]
pub struct Downlinks {
    senders: BTreeMap<NodeId, Uplink>,
    next_tag: u64,
    /// Counters of senders already dropped (the live ones count for themselves).
    gone: SendCounters,
    created: u64,
    dropped: u64,
    refused: u64,
    /// Per (subscriber, topic) of the topics that name their subscribers: the edge's
    /// durable mark as its sender last heard it, kept when the sender is dropped.
    marks: BTreeMap<(NodeId, TopicIdx), Seq>,
    /// A mark moved since the last checkpoint began.
    marks_moved: bool,
}

impl Downlinks {
    /// After a restart: the subscribers' marks of the last checkpoint, those the config
    /// still names.
    pub(crate) fn recovered(cfg: &NodeConfig, marks: BTreeMap<(NodeId, TopicIdx), Seq>) -> Downlinks {
        let named = |&(edge, topic): &(NodeId, TopicIdx)| {
            let t = cfg.topics.get(topic.0 as usize);
            t.is_some_and(|t| t.sync.goes_down() && t.subscribers.as_ref().is_some_and(|l| l.contains(&edge)))
        };
        let marks = marks.into_iter().filter(|(k, _)| named(k)).collect();
        Downlinks { marks, ..Downlinks::default() }
    }

    /// The subscribers' marks, for a checkpoint; none moved since (until the next does).
    pub(crate) fn take_marks_for_checkpoint(&mut self) -> BTreeMap<(NodeId, TopicIdx), Seq> {
        self.marks_moved = false;
        self.marks.clone()
    }

    /// The subscribers the topics name that have no sender now, with what each had
    /// acknowledged (`None`: never heard from since the checkpoint it would be in): the
    /// edges that hold a topic's retention back while away.
    pub fn subscribers_without_sender<'a>(
        &'a self,
        cfg: &'a NodeConfig,
    ) -> impl Iterator<Item = (NodeId, TopicIdx, Option<Seq>)> + 'a {
        let down = cfg.topics.iter().enumerate().filter(|(_, t)| t.sync.goes_down());
        let named = down.filter_map(|(i, t)| t.subscribers.as_ref().map(|l| (TopicIdx(i as u16), l)));
        named.flat_map(move |(topic, list)| {
            let idle = list.iter().filter(|e| !self.senders.contains_key(e));
            idle.map(move |&e| (e, topic, self.marks.get(&(e, topic)).copied()))
        })
    }

    /// Whether a subscriber's mark moved since the last checkpoint began.
    pub fn marks_moved(&self) -> bool {
        self.marks_moved
    }

    /// An edge said Hello: it is reachable now. Its sender says Hello at once (or is
    /// created, if there is room); `new_session`: the edge began a session the gateway did
    /// not know (it restarted), so the sender starts over and learns where its storage ends.
    pub(crate) fn heard_from(
        &mut self,
        cx: &Ctx<'_>,
        (edge, new_session): (NodeId, bool),
        logs: &[TopicLog],
        rng: &mut Xoshiro256PlusPlus,
    ) {
        if let Some(s) = self.senders.get_mut(&edge) {
            return if new_session { s.restart_session(cx.now, rng) } else { s.link_up(cx.now) };
        }
        if !cx.cfg.topics.iter().any(|t| t.sent_down_to(edge)) {
            // It subscribes to none of the topics that go down: nothing to send it.
            return;
        }
        if self.senders.len() >= cx.cfg.gateway.downlinks_max {
            let caught_up = self.senders.iter().find(|(_, s)| s.is_caught_up(logs));
            let away = || self.senders.iter().find(|(_, s)| !s.is_active());
            let idle = caught_up.or_else(away).map(|(&e, _)| e);
            let Some(idle) = idle else {
                self.refused += 1;
                return;
            };
            let s = self.senders.remove(&idle).expect("found above");
            self.gone.add(&s.counters);
            self.dropped += 1;
        }
        let mut s = Uplink::down(cx.cfg, edge, cx.now, rng);
        s.tag = TAG_BASE + self.next_tag;
        self.next_tag += 1;
        self.created += 1;
        self.senders.insert(edge, s);
    }

    /// A Welcome, Ack or Reset from `edge`, for its sender; its marks of the topics that
    /// name it are kept.
    pub(crate) fn on_message(&mut self, cx: &mut Ctx<'_>, edge: NodeId, msg: SyncMsg, logs: &[TopicLog]) {
        let Some(s) = self.senders.get_mut(&edge) else { return };
        s.on_message(msg, cx.now, (logs, &cx.cfg.topics), cx.fx);
        // The sender's streams are the topics sent down to this edge: of those that name
        // their subscribers, it is one (no need to look through the list).
        for (i, _) in cx.cfg.topics.iter().enumerate().filter(|(_, t)| t.subscribers.is_some()) {
            let topic = TopicIdx(i as u16);
            if let Some(acked) = s.accepted_acked(topic) {
                self.marks_moved |= self.marks.insert((edge, topic), acked) != Some(acked);
            }
        }
    }

    /// Where `tcfg`'s log (topic `topic`) may be deleted below: what every subscriber it
    /// names has acknowledged, as last heard or as the last checkpoint recorded (0 for one
    /// never heard from); 0 for a topic that goes to every edge, which no gateway can list.
    pub fn retained_for(&self, tcfg: &TopicConfig, topic: TopicIdx) -> Seq {
        let Some(list) = &tcfg.subscribers else { return 0 };
        list.iter().map(|&e| self.marks.get(&(e, topic)).copied().unwrap_or(0)).min().unwrap_or(Seq::MAX)
    }

    /// What every subscriber known here acknowledged of topic `topic`: those it names, or
    /// for a topic that goes to every edge those with a sender now (0 with none). What
    /// retention by age deletes from there on is counted as expired.
    pub fn acked_by_known(&self, tcfg: &TopicConfig, topic: TopicIdx) -> Seq {
        if tcfg.subscribers.is_some() {
            return self.retained_for(tcfg, topic);
        }
        self.senders.values().map(|s| s.accepted_acked(topic).unwrap_or(0)).min().unwrap_or(0)
    }

    /// Sends, reads and times out whatever is due, sender by sender.
    pub(crate) fn pump(&mut self, cx: &mut Ctx<'_>, logs: &[TopicLog], rng: &mut Xoshiro256PlusPlus, codec: Codec<'_>) {
        let (enc, dec) = codec;
        for s in self.senders.values_mut() {
            s.pump(cx, logs, rng, (&mut *enc, &mut *dec));
        }
    }

    /// Whether `tag` names one of these senders' reads.
    pub fn owns(tag: u64) -> bool {
        tag >= TAG_BASE
    }

    /// A read of the sender tagged `tag` completed; a dropped sender's read is ignored.
    pub(crate) fn on_read_done(
        &mut self,
        cx: &mut Ctx<'_>,
        tag: u64,
        id: DiskOpId,
        bytes: &[u8],
        logs: &[TopicLog],
        codec: (&mut BatchEncoder, &mut BatchDecoder),
    ) {
        if let Some(s) = self.senders.values_mut().find(|s| s.tag == tag) {
            s.on_read_done(cx, id, bytes, logs, codec);
        }
    }

    pub fn poll_timeout(&self, cfg: &NodeConfig, logs: &[TopicLog]) -> Option<Instant> {
        self.senders.values().filter_map(|s| s.poll_timeout(&cfg.sync, logs)).min()
    }

    /// The senders, to hand each what a commit copied for it (`Uplink::on_committed`).
    pub(crate) fn senders_mut(&mut self) -> impl Iterator<Item = &mut Uplink> {
        self.senders.values_mut()
    }

    /// The sender to `edge`, if there is one.
    pub fn sender(&self, edge: NodeId) -> Option<&Uplink> {
        self.senders.get(&edge)
    }

    pub fn senders(&self) -> impl Iterator<Item = (&NodeId, &Uplink)> {
        self.senders.iter()
    }

    pub fn stats(&self) -> DownlinkStats {
        let mut sent = self.gone;
        for s in self.senders.values() {
            sent.add(&s.counters);
        }
        DownlinkStats { created: self.created, dropped: self.dropped, refused: self.refused, sent }
    }

    /// Heap bytes of the senders' state (memory part `Index`).
    pub fn index_bytes(&self) -> u64 {
        let senders = self.senders.values().map(Uplink::index_bytes).sum::<u64>();
        senders_map_bytes(self.senders.len() as u64) + senders + marks_map_bytes(self.marks.len() as u64)
    }

    /// Messages held back by the bandwidth limit (memory part `SyncHeld`).
    pub fn held_bytes(&self) -> u64 {
        self.senders.values().map(Uplink::held_bytes).sum()
    }

    /// Bytes sent and unacknowledged (memory part `SyncWindow`).
    pub fn window_bytes(&self) -> u64 {
        self.senders.values().map(Uplink::window_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Role, SyncDirection};
    use crate::effects::Fx;
    use crate::hlc::Hlc;
    use crate::types::TopicIdx;
    use rand::SeedableRng;

    #[test]
    fn an_edge_gets_a_sender_of_the_topics_it_subscribes_to_and_none_without_any() {
        let mut promos = TopicConfig::new("promos", SyncDirection::CloudToEdge);
        promos.subscribers = Some(vec![NodeId(1)]);
        let mut prices = TopicConfig::new("prices", SyncDirection::CloudToEdge);
        prices.subscribers = Some(vec![NodeId(1), NodeId(2)]);
        let cfg = NodeConfig::new(NodeId(9), Role::Gateway, vec![promos, prices]);
        let logs = vec![TopicLog::new(TopicIdx(0)), TopicLog::new(TopicIdx(1))];
        let (mut fx, mut rng) = (Fx::default(), Xoshiro256PlusPlus::seed_from_u64(1));
        let mut d = Downlinks::default();
        let cx = Ctx { now: Instant(0), cfg: &cfg, hlc: Hlc::ZERO, fx: &mut fx };
        for edge in [1, 2, 3] {
            d.heard_from(&cx, (NodeId(edge), true), &logs, &mut rng);
        }
        let topics = |e: u64| {
            d.sender(NodeId(e)).map(|s| s.status(&logs).streams.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
        };
        assert_eq!(topics(1), Some(vec!["promos".to_string(), "prices".to_string()]));
        assert_eq!(topics(2), Some(vec!["prices".to_string()]));
        assert_eq!(topics(3), None, "edge 3 subscribes to nothing");
    }

    #[test]
    fn a_reachable_edge_takes_the_slot_of_one_that_never_answers() {
        let topics = vec![TopicConfig::new("config", SyncDirection::CloudToEdge)];
        let mut cfg = NodeConfig::new(NodeId(9), Role::Gateway, topics);
        cfg.gateway.downlinks_max = 2;
        let logs = vec![TopicLog::new(TopicIdx(0))];
        let (mut fx, mut rng) = (Fx::default(), Xoshiro256PlusPlus::seed_from_u64(1));
        let mut d = Downlinks::default();
        let cx = Ctx { now: Instant(0), cfg: &cfg, hlc: Hlc::ZERO, fx: &mut fx };
        for edge in [1, 2, 3] {
            d.heard_from(&cx, (NodeId(edge), true), &logs, &mut rng);
        }
        // Edges 1 and 2 never answered their senders' Hellos: edge 3, which just said
        // Hello, gets a sender in place of one of them.
        assert!(d.sender(NodeId(3)).is_some());
        assert_eq!(d.senders().count(), 2);
        assert_eq!((d.stats().created, d.stats().dropped, d.stats().refused), (3, 1, 0));
    }
}

//! `cloud-to-edge` topics, with a gateway and an edge driven by hand over storage in
//! memory: records produced at the gateway reach the edge durably, once and in order, at
//! the gateway's sequences, across a restart of either side; each side refuses produces
//! to the topics written at the other; the gateway deletes only what its subscribers
//! hold, unless the topic's `retention_age` expires it, which the edge is told.

mod common;
use common::MemDisk;

use outpost_core::config::{NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::io::{Fetched, FetchedRecord, Input, Output, ProduceError, ReqId};
use outpost_core::types::{Duration, Instant, NodeId, Now, TopicIdx};
use outpost_core::{Node, NodeSeed};
use std::collections::VecDeque;

const EDGE: NodeId = NodeId(1);
const GATEWAY: NodeId = NodeId(9);
const UP: TopicIdx = TopicIdx(0);
const DOWN: TopicIdx = TopicIdx(1);

fn topics() -> Vec<TopicConfig> {
    vec![TopicConfig::new("status", SyncDirection::EdgeToCloud), TopicConfig::new("config", SyncDirection::CloudToEdge)]
}

fn edge_cfg() -> NodeConfig {
    let mut cfg = NodeConfig::new(EDGE, Role::Edge, topics());
    cfg.upstream = Some(GATEWAY);
    cfg
}

fn gateway_cfg() -> NodeConfig {
    NodeConfig::new(GATEWAY, Role::Gateway, topics())
}

/// A gateway that names its one subscriber, with small segments and retention, so that
/// retention has something to delete; `age`: the down topic's `retention_age`.
fn retaining_gateway_cfg(age: Option<Duration>) -> NodeConfig {
    let mut cfg = gateway_cfg();
    cfg.log.segment_bytes_max = 4 << 10;
    cfg.resources.storage_bytes_max = 16 << 20;
    let down = &mut cfg.topics[DOWN.0 as usize];
    down.subscribers = Some(vec![EDGE]);
    down.retention_bytes = 16 << 10;
    down.retention_age = age;
    cfg
}

struct Side {
    node: Node,
    disk: MemDisk,
    acked: Vec<u64>,
    refused: Vec<ProduceError>,
    fetched: Vec<Fetched>,
}

impl Side {
    fn start(cfg: NodeConfig, disk: MemDisk, now: Now) -> Side {
        Side {
            node: Node::new(cfg, NodeSeed(7), now),
            disk,
            acked: Vec::new(),
            refused: Vec::new(),
            fetched: Vec::new(),
        }
    }
}

/// Two nodes and the messages between them (`link` false: dropped, as over a cut link).
struct Pair {
    edge: Side,
    gateway: Side,
    edge_cfg: NodeConfig,
    gateway_cfg: NodeConfig,
    now: Now,
    link: bool,
    wire: VecDeque<(NodeId, NodeId, Vec<u8>)>,
}

impl Pair {
    fn new() -> Pair {
        Pair::with_gateway(gateway_cfg())
    }

    fn with_gateway(gateway_cfg: NodeConfig) -> Pair {
        Pair::with(edge_cfg(), gateway_cfg)
    }

    fn with(edge_cfg: NodeConfig, gateway_cfg: NodeConfig) -> Pair {
        let now = Now { mono: Instant(1_000_000), wall_ms: 1_767_225_600_000 };
        let edge = Side::start(edge_cfg.clone(), MemDisk::default(), now);
        let gateway = Side::start(gateway_cfg.clone(), MemDisk::default(), now);
        let mut p = Pair { edge, gateway, edge_cfg, gateway_cfg, now, link: true, wire: VecDeque::new() };
        p.settle();
        p
    }

    fn side(&mut self, id: NodeId) -> &mut Side {
        if id == EDGE {
            &mut self.edge
        } else {
            &mut self.gateway
        }
    }

    /// Drains outputs, completes disk requests and delivers messages until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for id in [EDGE, GATEWAY] {
                let now = self.now;
                let s = self.side(id);
                let mut sends = Vec::new();
                while let Some(o) = s.node.poll_output() {
                    match o {
                        Output::Disk { id, req } => s.disk.queue.push_back((id, req)),
                        Output::Send { to, bytes } => sends.push((to, bytes)),
                        Output::Reply { result: Ok(a), .. } => s.acked.push(a.seq),
                        Output::Reply { result: Err(e), .. } => s.refused.push(e),
                        Output::Fetched { result, .. } => s.fetched.push(result.expect("the fetch is answered")),
                        Output::Event(_) | Output::SendAs { .. } | Output::StrongRead { .. } => {}
                    }
                }
                if let Some((op, _, result)) = s.disk.complete_one() {
                    s.node.handle(now, Input::DiskDone { id: op, result });
                    moved = true;
                }
                for (to, bytes) in sends {
                    if self.link {
                        self.wire.push_back((id, to, bytes));
                    }
                }
            }
            if let Some((from, to, bytes)) = self.wire.pop_front() {
                let now = self.now;
                self.side(to).node.handle(now, Input::Message { from, bytes });
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Time passes by `secs`, in steps of a second, firing timers.
    fn wait(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now = Now { mono: Instant(self.now.mono.0 + 1_000_000_000), wall_ms: self.now.wall_ms + 1000 };
            for id in [EDGE, GATEWAY] {
                let now = self.now;
                self.side(id).node.handle_timeout(now);
            }
            self.settle();
        }
    }

    fn produce(&mut self, at: NodeId, topic: TopicIdx, n: u64) {
        for i in 0..n {
            let now = self.now;
            // Hex that compresses little, so that a few hundred records fill segments.
            let mut x = i ^ now.wall_ms;
            let noise: String = (0..8)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    format!("{x:016x}")
                })
                .collect();
            let value = format!("record {i} at {} {noise}", now.wall_ms).into_bytes();
            let input = Input::Produce { req: ReqId(i), topic, key: None, value };
            self.side(at).node.handle(now, input);
        }
        self.settle();
    }

    /// Every record of the `config` topic at the edge, read through the fetch API.
    fn edge_config(&mut self) -> Vec<FetchedRecord> {
        self.records(EDGE, DOWN)
    }

    /// Every record of `topic` at node `at`, read through the fetch API.
    fn records(&mut self, at: NodeId, topic: TopicIdx) -> Vec<FetchedRecord> {
        let mut from = 0;
        let mut all = Vec::new();
        loop {
            let now = self.now;
            let input = Input::Fetch { req: ReqId(0), topic, from, max_records: 1000, max_bytes: 1 << 20 };
            self.side(at).node.handle(now, input);
            self.settle();
            let f = self.side(at).fetched.pop().expect("answered");
            if f.records.is_empty() {
                return all;
            }
            from = f.next;
            all.extend(f.records);
        }
    }

    fn restart(&mut self, id: NodeId) {
        let cfg = if id == EDGE { self.edge_cfg.clone() } else { self.gateway_cfg.clone() };
        let now = self.now;
        let s = self.side(id);
        let mut disk = std::mem::take(&mut s.disk);
        disk.queue.clear();
        *s = Side::start(cfg, disk, now);
        self.settle();
    }
}

/// The records at the edge are the gateway's, at its sequences, each once and in order.
fn assert_held_once_in_order(records: &[FetchedRecord], n: u64) {
    assert_identities(records, GATEWAY, n);
    assert!(records.iter().all(|r| r.seq == r.origin_seq), "the edge's replica keeps the gateway's sequences");
}

/// `records` are `origin`'s sequences `0..n`, each once and in order.
fn assert_identities(records: &[FetchedRecord], origin: NodeId, n: u64) {
    let seqs: Vec<(NodeId, u64)> = records.iter().map(|r| (r.origin, r.origin_seq)).collect();
    let expected: Vec<(NodeId, u64)> = (0..n).map(|s| (origin, s)).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn records_produced_at_the_gateway_reach_the_edge_once_and_in_order() {
    let mut p = Pair::new();
    p.wait(1);
    p.produce(GATEWAY, DOWN, 500);
    assert_eq!(p.gateway.acked.len(), 500, "the gateway takes produces to a cloud-to-edge topic");
    p.wait(2);
    assert_held_once_in_order(&p.edge_config(), 500);
}

#[test]
fn each_side_refuses_produces_to_the_topics_the_other_writes() {
    let mut p = Pair::new();
    p.produce(EDGE, DOWN, 1);
    p.produce(GATEWAY, UP, 1);
    assert_eq!(p.edge.refused, vec![ProduceError::NotAccepted]);
    assert_eq!(p.gateway.refused, vec![ProduceError::NotAccepted]);
    assert!(p.edge.refused[0].to_string().contains("cloud-to-edge topics at the top gateway"));
}

#[test]
fn an_edge_away_gets_everything_when_it_returns_across_restarts_of_both_sides() {
    let mut p = Pair::new();
    p.wait(1);
    p.produce(GATEWAY, DOWN, 100);
    p.wait(2);
    // Cut off: the gateway goes on writing; the edge restarts while away.
    p.link = false;
    p.produce(GATEWAY, DOWN, 300);
    p.wait(60);
    p.restart(EDGE);
    p.wait(60);
    p.link = true;
    p.wait(90);
    assert_held_once_in_order(&p.edge_config(), 400);
    // The gateway restarts and forgets the edge; the edge's keepalive Hello tells it the
    // edge is there, and what was written after the restart comes down.
    p.restart(GATEWAY);
    // (A restarted node's clock waits until the wall clock passes the bound it persisted.)
    p.wait(5);
    p.produce(GATEWAY, DOWN, 50);
    assert_eq!(p.gateway.acked.len(), 50);
    p.wait(60);
    assert_held_once_in_order(&p.edge_config(), 450);
    let dropped = p.edge.node.stats().duplicates_dropped;
    assert_eq!(dropped, 0, "the gateway resumes where the edge's storage ends: nothing is sent twice");
}

#[test]
fn a_gateway_deletes_only_what_its_subscribers_hold_even_across_its_restart() {
    let mut p = Pair::with_gateway(retaining_gateway_cfg(None));
    p.wait(1);
    for _ in 0..10 {
        p.produce(GATEWAY, DOWN, 100);
        p.wait(2);
    }
    assert!(p.gateway.node.stats().segments_deleted > 0, "the edge holds everything: retention deletes past 16 KiB");
    // A checkpoint of the edge's mark is written within a minute.
    p.wait(61);
    // Away, and the gateway restarts; then it goes far past its retention: nothing the
    // edge lacks goes, but what the checkpoint says it holds does, without waiting for it.
    p.link = false;
    p.restart(GATEWAY);
    p.wait(5);
    for _ in 0..11 {
        p.produce(GATEWAY, DOWN, 100);
        p.wait(2);
    }
    p.wait(70);
    let deleted = p.gateway.node.stats().segments_deleted;
    assert!(deleted > 0, "restarted: the checkpoint said what the edge held, and it went");
    assert_eq!(p.gateway.node.stats().evicted_unsynced, 0);
    p.link = true;
    p.wait(90);
    assert_held_once_in_order(&p.edge_config(), 2100);
    assert_eq!(p.edge.node.stats().duplicates_dropped, 0);
}

#[test]
fn retention_age_expires_what_an_edge_away_lacks_and_the_edge_is_told() {
    let mut p = Pair::with_gateway(retaining_gateway_cfg(Some(Duration::from_secs(120))));
    p.wait(1);
    p.produce(GATEWAY, DOWN, 100);
    p.wait(2);
    p.link = false;
    for _ in 0..5 {
        p.produce(GATEWAY, DOWN, 100);
        p.wait(2);
    }
    p.wait(150);
    // Written after the others expired: a newer segment, which the edge must still get.
    p.produce(GATEWAY, DOWN, 100);
    p.wait(61);
    let expired = p.gateway.node.stats().evicted_unsynced;
    assert!(expired > 0 && expired <= 500, "the 500 the edge lacks are older than 120 s: {expired} expired");
    p.link = true;
    p.wait(90);
    let seqs: Vec<u64> = p.edge_config().iter().map(|r| r.origin_seq).collect();
    let (kept, rest) = seqs.split_at(100);
    assert_eq!(kept, (0..100).collect::<Vec<_>>().as_slice(), "what the edge held before it went away");
    let first = rest[0];
    assert_eq!(first, 100 + expired, "the edge skips exactly what expired");
    assert_eq!(rest, (first..700).collect::<Vec<_>>().as_slice(), "then everything the gateway kept, in order");
}

/// An edge and a gateway with one `bidirectional` topic, split as the loaders split it.
fn both_ways_cfgs() -> (NodeConfig, NodeConfig) {
    let topics = vec![TopicConfig::new("orders", SyncDirection::Bidirectional)];
    let mut edge = NodeConfig::new(EDGE, Role::Edge, topics.clone());
    edge.upstream = Some(GATEWAY);
    edge.split_both_ways();
    let mut gateway = NodeConfig::new(GATEWAY, Role::Gateway, topics);
    gateway.split_both_ways();
    (edge, gateway)
}

#[test]
fn a_bidirectional_topic_carries_each_sides_records_to_the_other_once_across_restarts() {
    let (edge_cfg, gateway_cfg) = both_ways_cfgs();
    let names = edge_cfg.topic_names();
    let (up, down) = (names.to_produce("orders").expect("a topic"), gateway_cfg.topic_names().to_produce("orders"));
    assert_eq!((up, down), (TopicIdx(0), Some(TopicIdx(1))), "each side writes its own half");
    let mut p = Pair::with(edge_cfg, gateway_cfg);
    p.wait(1);
    p.produce(EDGE, up, 200);
    p.produce(GATEWAY, TopicIdx(1), 150);
    assert_eq!((p.edge.acked.len(), p.gateway.acked.len()), (200, 150));
    p.wait(2);
    // Both sides write while the link is down, and each restarts.
    p.link = false;
    p.produce(EDGE, up, 100);
    p.produce(GATEWAY, TopicIdx(1), 50);
    p.restart(EDGE);
    p.restart(GATEWAY);
    p.wait(5);
    p.produce(EDGE, up, 30);
    p.produce(GATEWAY, TopicIdx(1), 20);
    p.link = true;
    p.wait(90);
    assert!(p.edge.refused.is_empty() && p.gateway.refused.is_empty(), "every produce is taken");
    // Each node holds each half once and in order, every record with its writer's identity.
    for at in [EDGE, GATEWAY] {
        assert_identities(&p.records(at, TopicIdx(0)), EDGE, 330);
        assert_identities(&p.records(at, TopicIdx(1)), GATEWAY, 220);
    }
    assert_eq!(p.edge.node.stats().duplicates_dropped, 0);
}

#[test]
fn a_gateways_sender_down_at_its_logs_end_sends_what_commits_write_without_reading_it_back() {
    let mut p = Pair::new();
    p.wait(1);
    p.produce(GATEWAY, DOWN, 1);
    p.wait(1);
    assert_eq!(p.edge_config().len(), 1);
    let reads = |p: &Pair| {
        let sent = p.gateway.node.downlinks().expect("a gateway sends down").stats().sent;
        (sent.reads, sent.read_bytes, sent.records_sent)
    };
    let before = reads(&p);
    // One commit per record (each produce settles before the next): the sender, waiting
    // at the log's end, takes each commit's frames as they are written.
    for _ in 0..200 {
        p.produce(GATEWAY, DOWN, 1);
    }
    p.wait(2);
    assert_eq!(p.edge_config().len(), 201);
    let after = reads(&p);
    assert_eq!(after.2 - before.2, 200, "{after:?}");
    assert_eq!((after.0 - before.0, after.1 - before.1), (0, 0), "nothing read back from the disk");
}

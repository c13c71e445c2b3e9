//! Swarm testing: the seed draws the world as well as the run. Each seed picks a topology,
//! devices, links, topics, workloads and a fault mix with its own intensities, so a sweep
//! over many seeds tests many different worlds (DESIGN §4); about one world in four also
//! gets a site cluster (Raft) with a strong topic and faults of its own; about one in
//! five a `keep` topic beside a lossy one of higher priority under storage pressure, and
//! about one in five `corrupt-tail` faults; about one in four a second gateway; and about
//! one in three a `cloud-to-edge` topic written at the gateways. With a base scenario, the
//! seed keeps its topology and workload and adds a drawn fault mix on top.

use crate::profiles;
use crate::rng::{stream, SimRng};
use crate::scenario::{
    ConsistencySpec, EvictionSpec, Expect, FaultSpec, LinkSpec, NodeSpec, Role, Scenario, SyncDirection, TopicSpec,
    Window, WorkloadSpec,
};
use outpost_core::keyed::Strategy;
use outpost_core::types::Duration;
use rand::seq::SliceRandom;
use rand::Rng;

const EDGE_DEVICES: &[&str] = &["pi-zero", "pi4", "iot-gateway", "vehicle-ecu", "retail-pos", "industrial"];
const NETS: &[&str] = &["lan", "wifi", "cellular", "cellular", "satellite"];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An eventual, unkeyed topic with eviction `keep`: what a drawn topic is until a feature
/// changes one of its fields.
fn topic(name: &str, sync: SyncDirection, priority: u8) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        sync,
        priority,
        eviction: EvictionSpec::Keep,
        keyed: false,
        conflict: None,
        merge: None,
        placement: None,
        consistency: ConsistencySpec::Eventual,
        subscribers: None,
        retention_age: None,
        retention_bytes: None,
        both_ways: false,
    }
}

fn node(id: &str, role: Role, device: &str) -> NodeSpec {
    let device = profiles::device(device).expect("built-in profile");
    NodeSpec {
        id: id.to_string(),
        role,
        memory_bytes: device.memory_bytes,
        storage_bytes: device.storage_bytes,
        device,
        zone: None,
        cluster: None,
        upstream: None,
        up_retention: false,
    }
}

/// A world drawn entirely from `seed`: the world drawn before issue 15, then its features,
/// each from a stream of its own (so a world that draws none of them is the one its seed
/// drew before): reboot loops and idle stretches, the worlds of the durability checks
/// (eviction pressure, corrupt tails), and small devices last.
pub fn world(seed: u64) -> Scenario {
    let mut s = world_before_strong_keyed(seed);
    add_strong_keyed(&mut s, &mut stream(seed, "swarm/strong-keyed"));
    s
}

/// The world `seed` drew before strong keyed topics existed.
pub fn world_before_strong_keyed(seed: u64) -> Scenario {
    let mut s = world_before_keyed_retention(seed);
    add_keyed_retention(&mut s, &mut stream(seed, "swarm/keyed-retention"));
    s
}

/// The share of worlds with a site cluster that get a strong keyed topic.
const STRONG_KEYED_SHARE: f64 = 0.5;

/// A strong keyed topic (issue 18), from its own stream and drawn last: in half the worlds
/// with a site cluster, topic `strong-keyed` (strong, `edge-to-cloud`, eviction `keep`,
/// one of the eight strategies) is written at 1 to all of the site's members, 8 to 64 keys,
/// 16 B to 256 B values, up to 3 writes a second, up to a tenth of them deletes. Members
/// merge it as the site's Raft applies it, with the cluster as every write's origin; the
/// sessions read it strongly at members (`crate::strong_read_check`) besides causally and
/// within bounds. After the run settles, every member's state must answer what the oracle
/// computes from the prefix of the cluster's stream it holds, and the gateway's from what
/// it stored. A world whose nodes cannot run with it goes without it.
fn add_strong_keyed(s: &mut Scenario, rng: &mut SimRng) {
    let Some(cluster) = s.nodes.iter().find_map(|n| n.cluster.clone()) else { return };
    if !rng.gen_bool(STRONG_KEYED_SHARE) {
        return;
    }
    let before = s.clone();
    let mut t = topic("strong-keyed", SyncDirection::EdgeToCloud, rng.gen_range(0..=9));
    t.keyed = true;
    t.conflict = Some(*Strategy::ALL.choose(rng).expect("non-empty"));
    t.consistency = ConsistencySpec::Strong;
    s.topics.push(t);
    let topic = s.topics.len() - 1;
    let mut members: Vec<usize> =
        (0..s.nodes.len()).filter(|&i| s.nodes[i].cluster.as_ref() == Some(&cluster)).collect();
    members.shuffle(rng);
    let writers = rng.gen_range(1..=members.len());
    // Enough keys that the writes a partition leaves of unknown fate (answered
    // "unconfirmed", each making its key unsure) leave most keys judged.
    let keys = rng.gen_range(8..=64);
    for &node in &members[..writers] {
        s.workloads.push(WorkloadSpec {
            node,
            topic,
            rate: rng.gen_range(0.05..3.0),
            size: rng.gen_range(16..=256),
            keys: Some(keys),
            deletes: rng.gen_range(0.0..0.1),
            from: Duration::ZERO,
            until: s.duration,
        });
    }
    fit_memory_to_topics(s);
    if (0..s.nodes.len()).any(|i| outpost_core::Node::check_config(&crate::world::node_config(s, i)).is_err()) {
        *s = before;
    }
}

/// The world `seed` drew before keyed topics were deleted behind checkpoints.
pub fn world_before_keyed_retention(seed: u64) -> Scenario {
    let mut s = world_before_keyed(seed);
    add_keyed(&mut s, &mut stream(seed, "swarm/keyed"));
    s
}

/// The share of worlds with a keyed topic whose retention is small.
const KEYED_RETENTION_SHARE: f64 = 0.5;

/// In half the worlds with a keyed topic, both its halves keep 64 KiB to 1 MiB
/// (`retention_bytes`): its segments go behind durable checkpoints of the keyed states
/// (`outpost_core::keyed_checkpoint`) all run long, and every restart after the first
/// loads one and merges only what came after it. From its own stream: a world without a
/// keyed topic, or that draws no small retention, is the one its seed drew before.
fn add_keyed_retention(s: &mut Scenario, rng: &mut SimRng) {
    if !s.topics.iter().any(|t| t.conflict.is_some()) || !rng.gen_bool(KEYED_RETENTION_SHARE) {
        return;
    }
    let retention = rng.gen_range(64 << 10..=1 << 20);
    for t in s.topics.iter_mut().filter(|t| t.conflict.is_some()) {
        t.retention_bytes = Some(retention);
    }
}

/// The world `seed` drew before keyed topics merged per key existed.
pub fn world_before_keyed(seed: u64) -> Scenario {
    let mut s = world_before_impostors(seed);
    add_impostor(&mut s, &mut stream(seed, "swarm/impostor"));
    s
}

/// The share of worlds with a keyed topic merged per key.
const KEYED_SHARE: f64 = 0.3;

/// A keyed topic merged per key (issue 18), from its own stream and drawn last, so that a
/// world without one is the world its seed drew before: in about three worlds in ten
/// (site members write it as any edge does; since 2026-12-07), topic
/// `keyed` (bidirectional, eviction `keep`, one of the eight strategies) is written at
/// every top gateway and at each edge with odds of two in three: in half the worlds 1 to 4
/// keys, else 1 to 40, 16 B to 256 B values, up to 3 writes a second, up to a tenth of
/// them deletes; and a top gateway's clock is set wrong, corrected and its links cut as the
/// run ends (`add_clock_set_wrong`: what catches a last-write-wins that compares wall time).
/// After the run settles, every node's state of it must answer
/// what the oracle computes from the writes the node holds. A world whose nodes cannot run
/// with it goes without it.
fn add_keyed(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(KEYED_SHARE) {
        return;
    }
    let before = s.clone();
    let mut t = topic("keyed", SyncDirection::Bidirectional, rng.gen_range(0..=9));
    t.keyed = true;
    t.conflict = Some(*Strategy::ALL.choose(rng).expect("non-empty"));
    s.topics.push(t);
    s.topics = crate::scenario::split_both_ways(std::mem::take(&mut s.topics));
    let (up, down) = (before.topics.len(), s.topics.len() - 1);
    // Half the worlds write a few hot keys, where writes on both sides of a link meet.
    let keys_max = if rng.gen_bool(0.5) { 4 } else { 40 };
    for (node, topic) in writers_both_ways(s, up, down) {
        if topic == up && !rng.gen_bool(2.0 / 3.0) {
            continue;
        }
        s.workloads.push(WorkloadSpec {
            node,
            topic,
            rate: rng.gen_range(0.05..3.0),
            size: rng.gen_range(16..=256),
            keys: Some(rng.gen_range(1..=keys_max)),
            deletes: rng.gen_range(0.0..0.1),
            from: Duration::ZERO,
            until: s.duration,
        });
    }
    add_clock_set_wrong(s, rng, down, keys_max);
    fit_memory_to_topics(s);
    if (0..s.nodes.len()).any(|i| outpost_core::Node::check_config(&crate::world::node_config(s, i)).is_err()) {
        *s = before;
    }
}

/// A top gateway's clock set wrong and corrected as the run ends, then cut off: ahead by
/// 15 to 59 seconds (less than the offset a peer's clock adopts) from 2 to 30 minutes
/// before the end, back by as much 12 seconds or more before the end but within that many
/// seconds of it, and every link of it down from 2 to 10 seconds after that to the end.
/// Its edges take its time from its messages (`calm` keeps faults away from them until the
/// cut); once it is corrected, the gateway and every edge that heard from it stamp their
/// writes in one frozen millisecond (each hybrid clock counts on in it), and cut off from
/// each other they write the same keys: writes that meet with one physical time and
/// different logical counters, where only the hybrid clock, not the wall time it carries,
/// tells which came last. Cut off, the gateway writes every key in a burst (head office
/// pushing a price list), 10 to 40 a second: its counter outruns its edges', so the last
/// write is not always the one of the highest node id (without it, the edges' counters,
/// ahead of the gateway's from the moment they adopt its time, won everywhere, and a
/// last-write-wins that compares wall time, ties by node id, agreed by chance).
fn add_clock_set_wrong(s: &mut Scenario, rng: &mut SimRng, down: usize, keys: u32) {
    let tops: Vec<usize> =
        (0..s.nodes.len()).filter(|&g| s.nodes[g].role == Role::Gateway && s.nodes[g].upstream.is_none()).collect();
    let Some(&node) = tops.choose(rng) else { return };
    let d = s.duration.as_nanos();
    let second = 1_000_000_000u64;
    let ahead = rng.gen_range(15..=59u64);
    let corrected = d.saturating_sub(rng.gen_range(12..=ahead) * second);
    let at = d.saturating_sub(rng.gen_range(120..=1800u64) * second).min(corrected.saturating_sub(second));
    let by_nanos = (ahead * second) as i64;
    let cut = corrected + rng.gen_range(2..=10u64) * second;
    calm(s, node, at, cut.min(d));
    s.faults.push(FaultSpec::ClockJump { node, at: Duration(at), by_nanos });
    s.faults.push(FaultSpec::ClockJump { node, at: Duration(corrected), by_nanos: -by_nanos });
    if cut >= d {
        return;
    }
    for link in s.links.iter_mut().filter(|l| l.a == node || l.b == node) {
        cut_off_until_end(link, cut, d);
    }
    s.workloads.push(WorkloadSpec {
        node,
        topic: down,
        rate: rng.gen_range(10.0..40.0),
        size: rng.gen_range(16..=64),
        keys: Some(keys),
        deletes: 0.0,
        from: Duration(cut),
        until: s.duration,
    });
}

/// Gateway `node`, its edges and their links without faults from `from` to `to`: the
/// edges hear its clock while it is wrong and after it is corrected, so they share its
/// frozen millisecond (a crash, a full disk or an outage there left most worlds' edges on
/// their own clocks, and the wall-clock last-write-wins went uncaught in 2,000 seeds).
fn calm(s: &mut Scenario, node: usize, from: u64, to: u64) {
    let near: Vec<usize> = (0..s.nodes.len()).filter(|&i| i == node || s.upstream_of(i) == Some(node)).collect();
    let overlaps = |at: Duration, length: Option<Duration>| {
        at.as_nanos() < to && length.is_none_or(|l| at.as_nanos() + l.as_nanos() > from)
    };
    s.faults.retain(|f| match *f {
        FaultSpec::Crash { node: n, at, restart_after } | FaultSpec::CorruptTail { node: n, at, restart_after } => {
            !(near.contains(&n) && overlaps(at, restart_after))
        }
        FaultSpec::DiskFull { node: n, at, length } => !(near.contains(&n) && overlaps(at, Some(length))),
        FaultSpec::Partition { at, length, .. } => !overlaps(at, Some(length)),
        FaultSpec::ClockJump { node: n, .. } => !near.contains(&n),
        FaultSpec::DiskCorrupt { .. } | FaultSpec::Impostor { .. } => true,
    });
    for link in s.links.iter_mut().filter(|l| l.a == node || l.b == node) {
        link.outages.retain(|w| !overlaps(w.at, Some(w.length)));
    }
}

/// `link` down from `from` to the end of the run `d`, merged with the outages it overlaps.
fn cut_off_until_end(link: &mut LinkSpec, from: u64, d: u64) {
    let overlaps = |w: &Window| w.at.as_nanos() + w.length.as_nanos() >= from;
    let start = link.outages.iter().filter(|w| overlaps(w)).map(|w| w.at.as_nanos()).min().unwrap_or(from).min(from);
    link.outages.retain(|w| !overlaps(w));
    link.outages.push(Window { at: Duration(start), length: Duration(d - start) });
    link.outages.sort_by_key(|w| w.at);
}

/// The world `seed` drew before impostors existed.
pub fn world_before_impostors(seed: u64) -> Scenario {
    let mut s = world_before_zones(seed);
    add_zones(&mut s, &mut stream(seed, "swarm/zones"));
    s
}

/// The share of worlds with an impostor.
const IMPOSTOR_SHARE: f64 = 0.25;

/// An impostor (issue 19; `crate::impostor`), from its own stream and drawn last, so that a
/// world without one is the world its seed drew before: in about one world in four where
/// some gateway has two edges outside any site, one of them turns impostor against it for
/// 10 minutes (a quarter of a shorter run) to half the run, starting in its first half. Its gateway, a middle tier or a
/// top, must refuse what it forges and tell it nothing of the other edges' streams. Whether
/// it met traffic to forge depends on the world (outages, idle producers), so the world
/// does not fail for an attack it could not try; the sweep prints what all of them did.
fn add_impostor(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(IMPOSTOR_SHARE) {
        return;
    }
    let loose = |e: usize| s.nodes[e].role == Role::Edge && s.nodes[e].cluster.is_none();
    let candidates: Vec<usize> = (0..s.nodes.len())
        .filter(|&e| loose(e))
        .filter(|&e| {
            let up = s.upstream_of(e);
            up.is_some() && (0..s.nodes.len()).any(|o| o != e && loose(o) && s.upstream_of(o) == up)
        })
        .collect();
    let Some(&node) = candidates.choose(rng) else { return };
    let d = s.duration.as_nanos();
    let at = rng.gen_range(0..d / 2);
    // (`at` is in the first half, so half the run still fits after it.)
    let length = rng.gen_range(600_000_000_000u64.min(d / 4)..=d / 2);
    s.faults.push(FaultSpec::Impostor { node, at: Duration(at), length: Duration(length), must_try: false });
}

/// The world `seed` drew before zones and classified topics existed.
pub fn world_before_zones(seed: u64) -> Scenario {
    let mut s = world_before_both_topics(seed);
    add_both_topic(&mut s, &mut stream(seed, "swarm/both-topics"));
    s
}

/// The share of worlds with zones and classified topics.
const ZONE_SHARE: f64 = 0.4;

/// The classifications a swarm world draws from, with the zones each allows: the default
/// table's two regional ones, and one allowed in both regions.
const CLASSIFICATIONS: [(&str, &[&str]); 3] = [("gdpr", &["eu"]), ("hipaa", &["us"]), ("regional", &["eu", "us"])];

/// Zones and classified topics (issue 19, placement), from their own stream and drawn
/// last, so that a world without them is the world its seed drew before: in about two
/// worlds in five every node gets a zone: a top gateway `global`, `eu` or `us`; a middle
/// tier `eu` or `us` (so one under a `global` top is the top of what may not leave its
/// region); an edge its gateway's region with odds of four in five, else either region,
/// and none with odds of one in twenty. Then each topic (both halves of a `bidirectional`
/// one alike) is classified with odds of one in two (`CLASSIFICATIONS`), and keeps its
/// classification only if the world still loads: no writer outside its zones, no route
/// from a writer to a node outside them (`scenario::check_placement`). The placement
/// checker then reads every frame of the run against the receiver's zone.
fn add_zones(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(ZONE_SHARE) {
        return;
    }
    let regions = ["eu", "us"];
    let of_role =
        |s: &Scenario, role: Role| (0..s.nodes.len()).filter(|&i| s.nodes[i].role == role).collect::<Vec<_>>();
    for i in of_role(s, Role::Gateway) {
        let zone = match s.nodes[i].upstream {
            None => *["global", "eu", "us"].choose(rng).expect("non-empty"),
            Some(_) => *regions.choose(rng).expect("non-empty"),
        };
        s.nodes[i].zone = Some(zone.to_string());
    }
    for i in of_role(s, Role::Edge) {
        let gateway = s.upstream_of(i).and_then(|g| s.nodes[g].zone.clone()).filter(|z| z != "global");
        s.nodes[i].zone = match (rng.gen_bool(0.05), gateway) {
            (true, _) => None,
            (false, Some(z)) if rng.gen_bool(0.8) => Some(z),
            _ => Some(regions.choose(rng).expect("non-empty").to_string()),
        };
    }
    let mut names: Vec<String> = s.topics.iter().map(|t| t.name.clone()).collect();
    names.dedup();
    for name in names {
        if !rng.gen_bool(0.5) {
            continue;
        }
        let (classification, zones) = *CLASSIFICATIONS.choose(rng).expect("non-empty");
        let placement = outpost_core::config::Placement {
            classification: classification.to_string(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
        };
        for t in s.topics.iter_mut().filter(|t| t.name == name) {
            t.placement = Some(placement.clone());
        }
        if crate::scenario::check_placement(s).is_err() {
            for t in s.topics.iter_mut().filter(|t| t.name == name) {
                t.placement = None;
            }
        }
    }
}

/// The world `seed` drew before `bidirectional` topics existed.
pub fn world_before_both_topics(seed: u64) -> Scenario {
    let mut s = world_before_subscribers(seed);
    add_subscribers(&mut s, &mut stream(seed, "swarm/subscribers"));
    s
}

/// The share of worlds with a `bidirectional` topic.
const BOTH_SHARE: f64 = 0.3;

/// A `bidirectional` topic (issue 16), from its own stream and drawn last, so that a world
/// without one is the world its seed drew before: in about three worlds in ten, topic
/// `both` (priority drawn, eviction `keep`) is written at every top gateway and at each
/// edge with odds of one in two (16 B to 1 KiB records, up to 5 a second), split into its
/// halves as the loader splits it: every edge below a top gateway must get all of that
/// gateway's records, and the top gateway all of each of its edges' (through any boxes,
/// which hold each once too). With odds of one in two the half that comes down names a
/// subset of the edges as subscribers. Each writer's share over the run is at most a
/// sixteenth of the smallest edge's storage; edges' memory is raised as for other topics,
/// and a world whose nodes still cannot run with the topic goes without it.
fn add_both_topic(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(BOTH_SHARE) {
        return;
    }
    let before = s.clone();
    s.topics.push(topic("both", SyncDirection::Bidirectional, rng.gen_range(0..=9)));
    s.topics = crate::scenario::split_both_ways(std::mem::take(&mut s.topics));
    let (up, down) = (before.topics.len(), s.topics.len() - 1);
    let edges: Vec<usize> = (0..s.nodes.len()).filter(|&i| s.nodes[i].role == Role::Edge).collect();
    let smallest = edges.iter().map(|&i| s.nodes[i].storage_bytes.min(s.nodes[i].device.storage_bytes)).min();
    let secs = s.duration.as_nanos() as f64 / 1e9;
    for (node, topic) in writers_both_ways(s, up, down) {
        if topic == up && !rng.gen_bool(0.5) {
            continue;
        }
        let size = rng.gen_range(16..=1024u32);
        let cap = smallest.unwrap_or(0) as f64 / 16.0 / (f64::from(size) * secs);
        let rate: f64 = rng.gen_range(0.1..5.0);
        let until = s.duration;
        s.workloads.push(WorkloadSpec {
            node,
            topic,
            rate: rate.min(cap).max(0.01),
            size,
            keys: None,
            deletes: 0.0,
            from: Duration::ZERO,
            until,
        });
    }
    if rng.gen_bool(0.5) {
        let mut chosen: Vec<usize> = edges.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
        if chosen.is_empty() {
            chosen.push(*edges.choose(rng).expect("a swarm world has edges"));
        }
        s.topics[down].subscribers = Some(chosen);
    }
    fit_memory_to_topics(s);
    if (0..s.nodes.len()).any(|i| outpost_core::Node::check_config(&crate::world::node_config(s, i)).is_err()) {
        *s = before;
    }
}

/// Who may write a bidirectional topic's halves `up` and `down`: every top gateway its
/// half that comes down, then every edge its half that goes up, in node order.
fn writers_both_ways(s: &Scenario, up: usize, down: usize) -> Vec<(usize, usize)> {
    let tops = (0..s.nodes.len()).filter(|&g| s.nodes[g].role == Role::Gateway && s.nodes[g].upstream.is_none());
    let edges = (0..s.nodes.len()).filter(|&e| s.nodes[e].role == Role::Edge);
    tops.map(|g| (g, down)).chain(edges.map(|e| (e, up))).collect()
}

/// The world `seed` drew before a `cloud-to-edge` topic could go to some edges only.
pub fn world_before_subscribers(seed: u64) -> Scenario {
    let mut s = world_before_tiers(seed);
    add_tiers(&mut s, &mut stream(seed, "swarm/tiers"));
    s
}

/// The share of worlds with a `cloud-to-edge` topic where it goes to some edges only.
const SUBSCRIBER_SHARE: f64 = 0.5;

/// Subscribers (issue 16), from their own stream and drawn last: in about half the worlds
/// with topic `down`, it goes to a subset of the edges (each with even odds, at least
/// one), and only those and the boxes on their way may ever hold it.
fn add_subscribers(s: &mut Scenario, rng: &mut SimRng) {
    let Some(down) = s.topics.iter().position(|t| t.sync == SyncDirection::CloudToEdge) else { return };
    if !rng.gen_bool(SUBSCRIBER_SHARE) {
        return;
    }
    let edges: Vec<usize> = (0..s.nodes.len()).filter(|&i| s.nodes[i].role == Role::Edge).collect();
    let mut chosen: Vec<usize> = edges.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
    if chosen.is_empty() {
        chosen.push(*edges.choose(rng).expect("a swarm world has edges"));
    }
    s.topics[down].subscribers = Some(chosen);
}

/// The world `seed` drew before relay tiers existed.
pub fn world_before_tiers(seed: u64) -> Scenario {
    let mut s = world_before_down_topics(seed);
    add_down_topic(&mut s, &mut stream(seed, "swarm/down-topics"));
    s
}

/// The world `seed` drew before `cloud-to-edge` topics existed.
pub fn world_before_down_topics(seed: u64) -> Scenario {
    let mut s = world_before_second_gateway(seed);
    add_second_gateway(&mut s, &mut stream(seed, "swarm/second-gateway"));
    s
}

/// The share of worlds with a `cloud-to-edge` topic.
const DOWN_SHARE: f64 = 0.33;

/// A `cloud-to-edge` topic (issue 16), from its own stream and drawn last, so that a world
/// without one is the world its seed drew before: in about one world in three, topic
/// `down` (priority drawn, eviction `keep`) is written at every gateway (16 B to 2 KiB
/// records, up to 10 a second), and every edge that syncs up to a gateway must get all of
/// that gateway's records. What goes down over the run is at most a sixteenth of the
/// smallest edge's storage, so that an edge's budget (which keeps everything it received,
/// as a `keep` topic does) never holds the world back from converging; edges' memory is
/// raised as for other topics if their plan needs it, and a world whose nodes still cannot
/// run with the topic goes without it.
fn add_down_topic(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(DOWN_SHARE) {
        return;
    }
    let before = s.clone();
    let down = s.topics.len();
    s.topics.push(topic("down", SyncDirection::CloudToEdge, rng.gen_range(0..=9)));
    let edges = s.nodes.iter().filter(|n| n.role == Role::Edge);
    let smallest = edges.map(|n| n.storage_bytes.min(n.device.storage_bytes)).min().unwrap_or(0);
    let secs = s.duration.as_nanos() as f64 / 1e9;
    for g in (0..s.nodes.len()).filter(|&g| s.nodes[g].role == Role::Gateway) {
        let size = rng.gen_range(16..=2048u32);
        let cap = smallest as f64 / 16.0 / (f64::from(size) * secs);
        let rate: f64 = rng.gen_range(0.2..10.0);
        s.workloads.push(WorkloadSpec {
            node: g,
            topic: down,
            rate: rate.min(cap).max(0.01),
            size,
            keys: None,
            deletes: 0.0,
            from: Duration::ZERO,
            until: s.duration,
        });
    }
    fit_memory_to_topics(s);
    if (0..s.nodes.len()).any(|i| outpost_core::Node::check_config(&crate::world::node_config(s, i)).is_err()) {
        *s = before;
    }
}

/// The world `seed` drew before second gateways existed (its seeds kept as regressions
/// replay it).
pub fn world_before_second_gateway(seed: u64) -> Scenario {
    let mut s = world_before_small_devices(seed);
    add_small_devices(&mut s, &mut stream(seed, "swarm/small-device"));
    s
}

/// The share of worlds with a second gateway.
const SECOND_GATEWAY_SHARE: f64 = 0.25;

/// A second gateway (issue 16: more than one gateway), from its own stream and drawn last,
/// so that a world without one is the world its seed drew before: in about one world in
/// four, `cloud2` joins, every edge outside a site gets a link to it with odds of one in
/// two (the swarm's nets and outages), and each edge so linked syncs up to it
/// (`upstream`) with odds of one in two, the others keeping the first gateway they link
/// to. `cloud2` crashes and restarts, and has clock jumps and full disks, like any node.
/// The first gateway is node 0 (`world_without_site`).
fn add_second_gateway(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(SECOND_GATEWAY_SHARE) {
        return;
    }
    let gw = s.nodes.len();
    s.nodes.push(node("cloud2", Role::Gateway, "cloud"));
    let d = s.duration;
    for e in 0..gw {
        if s.nodes[e].role != Role::Edge || s.nodes[e].cluster.is_some() || !rng.gen_bool(0.5) {
            continue;
        }
        let net = profiles::net(NETS.choose(rng).expect("non-empty")).expect("built-in profile");
        let mut outages: Vec<Window> = (0..rng.gen_range(0..=6)).map(|_| window(rng, d, 120_000_000_000)).collect();
        outages.sort_by_key(|w| w.at);
        s.links.push(LinkSpec { a: e, b: gw, net, outages });
        if rng.gen_bool(0.5) {
            s.nodes[e].upstream = Some(gw);
        }
    }
    // In a partition drawn before it, it is on the side of the first gateway: both are in
    // the cloud, whatever cut the sites off.
    for f in &mut s.faults {
        if let FaultSpec::Partition { groups, .. } = f {
            if let Some(g) = groups.iter_mut().find(|g| g.contains(&0)) {
                g.push(gw);
            }
        }
    }
    let rates = NodeFaultRates { crash: rng.gen_range(0..=3), jump: rng.gen_range(0..=1), full: 1, restart_share: 0.9 };
    add_node_faults(s, rng, gw, rates);
}

/// The share of worlds with a middle tier.
const TIER_SHARE: f64 = 0.25;

/// Relay tiers (issue 16, part 4), from their own stream and drawn last, so that a world
/// without them is the world its seed drew before: in about one world in four, `box`
/// (an iot-gateway) joins with `upstream` the first gateway and a link to it (a net and
/// outages drawn), and each edge outside a site that syncs up to the first gateway moves
/// under `box` with odds of one in two (a LAN or Wi-Fi link of its own, with outages; its
/// link to the first gateway stays, unused). With odds of one in two a second tier, `box2`,
/// joins under `box`, and each of `box`'s edges moves under it with odds of one in two.
/// The boxes crash and restart like any node, and are on the first gateway's side of
/// earlier partitions. A world whose nodes cannot run so goes without tiers.
fn add_tiers(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(TIER_SHARE) {
        return;
    }
    let before = s.clone();
    let top_of = |s: &Scenario, e: usize| crate::world::node_config(s, e).upstream.map(|u| u.0 as usize - 1);
    let mut parent = 0;
    for (k, name) in ["box", "box2"].into_iter().enumerate() {
        if k > 0 && !rng.gen_bool(0.5) {
            break;
        }
        let tier = s.nodes.len();
        let mut n = node(name, Role::Gateway, "iot-gateway");
        n.upstream = Some(parent);
        s.nodes.push(n);
        let d = s.duration;
        let net = profiles::net(["cellular", "wifi", "lan"].choose(rng).expect("non-empty")).expect("built-in");
        let mut outages: Vec<Window> = (0..rng.gen_range(0..=4)).map(|_| window(rng, d, 600_000_000_000)).collect();
        outages.sort_by_key(|w| w.at);
        s.links.push(LinkSpec { a: tier, b: parent, net, outages });
        for e in 0..tier {
            let below_parent =
                s.nodes[e].role == Role::Edge && s.nodes[e].cluster.is_none() && top_of(s, e) == Some(parent);
            if !below_parent || !rng.gen_bool(0.5) {
                continue;
            }
            let net = profiles::net(["lan", "wifi"].choose(rng).expect("non-empty")).expect("built-in");
            let mut outages: Vec<Window> = (0..rng.gen_range(0..=4)).map(|_| window(rng, d, 120_000_000_000)).collect();
            outages.sort_by_key(|w| w.at);
            s.links.push(LinkSpec { a: e, b: tier, net, outages });
            s.nodes[e].upstream = Some(tier);
        }
        for f in &mut s.faults {
            if let FaultSpec::Partition { groups, .. } = f {
                if let Some(g) = groups.iter_mut().find(|g| g.contains(&0)) {
                    g.push(tier);
                }
            }
        }
        let rates =
            NodeFaultRates { crash: rng.gen_range(0..=3), jump: rng.gen_range(0..=1), full: 1, restart_share: 0.9 };
        add_node_faults(s, rng, tier, rates);
        parent = tier;
    }
    if (0..s.nodes.len()).any(|i| outpost_core::Node::check_config(&crate::world::node_config(s, i)).is_err()) {
        *s = before;
    }
}

/// The world `seed` drew before small devices existed: everything but their disks.
fn world_before_small_devices(seed: u64) -> Scenario {
    let mut s = world_with_site(seed);
    add_clock_stress(&mut s, seed);
    add_durability_worlds(&mut s, seed);
    s
}

/// The world drawn with reboot loops and idle stretches alone: the worlds the clock checks
/// were swept in (seeds kept as regressions then replay it).
pub fn world_with_clock_stress(seed: u64) -> Scenario {
    let mut s = world_with_site(seed);
    add_clock_stress(&mut s, seed);
    s
}

/// The world drawn with the worlds of the durability checks alone (eviction pressure,
/// corrupt tails): the worlds they were swept in (seeds kept as regressions replay it).
pub fn world_with_durability_checks(seed: u64) -> Scenario {
    let mut s = world_with_site(seed);
    add_durability_worlds(&mut s, seed);
    s
}

fn add_clock_stress(s: &mut Scenario, seed: u64) {
    add_reboot_loop(s, &mut stream(seed, "swarm/reboots"));
    add_idle_stretches(s, &mut stream(seed, "swarm/idle"));
}

fn add_durability_worlds(s: &mut Scenario, seed: u64) {
    add_eviction_pressure(s, &mut stream(seed, "swarm/eviction"));
    add_tail_corruption(s, &mut stream(seed, "swarm/corrupt-tail"));
}

/// The world `seed` drew before issue 15: topology, workloads, faults and pressure, then
/// perhaps a site. Seeds kept as regressions before then replay it.
pub fn world_with_site(seed: u64) -> Scenario {
    let mut s = world_without_site(seed);
    add_site(&mut s, &mut stream(seed, "swarm/cluster"));
    s
}

/// The share of worlds that get a keep topic beside a lossy one of higher priority on
/// one edge under storage pressure.
const EVICTION_SHARE: f64 = 0.2;

/// Mixed eviction policies under storage pressure, from its own stream: in about one
/// world in five, one edge (not a site member) gets a small storage budget (4 to 8 MiB),
/// two new topics, a `keep` topic of low priority and a lossy one (`oldest`, `priority`
/// or `lru`) of higher priority, written at rates that fill the budget several times over
/// during a long outage of its link to the gateway. The lossy topic's writes then need
/// room that only the `keep` topic's unsynced records could give: evicting any of them
/// is a violation (`Checker::on_evicted`).
///
/// Drawn after everything else: it changes the chosen edge's storage and adds an outage to
/// its link, two topics and their workloads, and leaves the rest of the world as it was.
fn add_eviction_pressure(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(EVICTION_SHARE) {
        return;
    }
    let Some(gateway) = s.nodes.iter().position(|n| n.role == Role::Gateway) else { return };
    let edges: Vec<usize> =
        (0..s.nodes.len()).filter(|&i| s.nodes[i].role == Role::Edge && s.nodes[i].cluster.is_none()).collect();
    let Some(&e) = edges.choose(rng) else { return };
    const MIB: u64 = 1 << 20;
    let storage = ([4, 6, 8].choose(rng).expect("non-empty") * MIB).min(s.nodes[e].storage_bytes);
    s.nodes[e].storage_bytes = storage;
    let d = s.duration.as_nanos();
    let at = rng.gen_range(d / 10..=d / 4);
    let length = rng.gen_range(d / 2..=d * 3 / 4).min(d - at);
    if let Some(l) = s.links.iter_mut().find(|l| (l.a, l.b) == (e, gateway) || (l.a, l.b) == (gateway, e)) {
        l.outages.push(Window { at: Duration(at), length: Duration(length) });
        l.outages.sort_by_key(|w| w.at);
    }
    let keep_priority = rng.gen_range(0..=4);
    const LOSSY: [EvictionSpec; 3] = [EvictionSpec::Oldest, EvictionSpec::Priority, EvictionSpec::Lru];
    let lossy = *LOSSY.choose(rng).expect("non-empty");
    let lossy_priority = rng.gen_range(keep_priority + 1..=9);
    let first = s.topics.len();
    for (name, eviction, priority) in
        [("keep-low", EvictionSpec::Keep, keep_priority), ("lossy-high", lossy, lossy_priority)]
    {
        s.topics.push(TopicSpec { eviction, ..topic(name, SyncDirection::EdgeToCloud, priority) });
    }
    fit_memory_to_topics(s);
    // Bytes the outage holds back: 2 to 4 times the budget, split between the topics.
    let bytes_per_sec = storage as f64 * rng.gen_range(2.0..4.0) / (length as f64 / 1e9);
    for topic in [first, first + 1] {
        let size = rng.gen_range(100..=600u32);
        let rate = (bytes_per_sec / 2.0 / f64::from(size)).clamp(1.0, 400.0);
        s.workloads.push(WorkloadSpec {
            node: e,
            topic,
            rate,
            size,
            keys: None,
            deletes: 0.0,
            from: Duration::ZERO,
            until: s.duration,
        });
    }
}

/// What `fit_memory_to_topics` adds to a node's memory at a time.
const FIT_MEMORY_STEP: u64 = 4 << 20;

/// Every topic costs each node memory (its index, its share of the codec's and the sync
/// window's buffers): a node whose budget no longer fits the topics added gets 4 MiB more
/// until it does, up to its device (swarm seeds 1227, 1497, 1598 and 1952: edges of 8 MiB
/// with the two eviction topics beside four others could not start). Worlds whose nodes
/// fit are left as they were drawn.
fn fit_memory_to_topics(s: &mut Scenario) {
    for i in 0..s.nodes.len() {
        while outpost_core::Node::check_config(&crate::world::node_config(s, i)).is_err() {
            let n = &mut s.nodes[i];
            if n.memory_bytes >= n.device.memory_bytes {
                break;
            }
            n.memory_bytes = (n.memory_bytes + FIT_MEMORY_STEP).min(n.device.memory_bytes);
        }
    }
}

/// The share of worlds that get `corrupt-tail` faults.
const CORRUPT_TAIL_SHARE: f64 = 0.2;

/// Torn or corrupt tails of the newest segment, from its own stream: in about one world
/// in five, each edge outside a site gets, with probability 0.7, one to three
/// `corrupt-tail` faults (the newest durable frames of one topic destroyed, and a power
/// loss), restarting after 1 to 60 s. Their records were acknowledged and often already
/// synced: recovery must cut them and never give their sequences out again, which
/// `crate::durability` and `Checker::on_ack` check. Only adds faults.
fn add_tail_corruption(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(CORRUPT_TAIL_SHARE) {
        return;
    }
    let d = s.duration.as_nanos();
    for node in 0..s.nodes.len() {
        if s.nodes[node].role != Role::Edge || s.nodes[node].cluster.is_some() || !rng.gen_bool(0.7) {
            continue;
        }
        for _ in 0..rng.gen_range(1..=3) {
            let at = Duration(rng.gen_range(d / 20..d));
            let restart_after = Some(Duration(rng.gen_range(1..=60) * 1_000_000_000));
            s.faults.push(FaultSpec::CorruptTail { node, at, restart_after });
        }
    }
}

/// The world `seed` drew before site clusters existed: topology, workloads, faults and
/// pressure, from the streams "swarm" and "pressure".
fn world_without_site(seed: u64) -> Scenario {
    let mut rng = stream(seed, "swarm");
    let edges = rng.gen_range(1..=3usize);
    let mut nodes = vec![node("cloud", Role::Gateway, "cloud")];
    let mut links = Vec::new();
    for e in 0..edges {
        let device = EDGE_DEVICES.choose(&mut rng).expect("non-empty");
        nodes.push(node(&format!("edge{e}"), Role::Edge, device));
        let net = profiles::net(NETS.choose(&mut rng).expect("non-empty")).expect("built-in profile");
        links.push(LinkSpec { a: e + 1, b: 0, net, outages: Vec::new() });
    }
    let ntopics = rng.gen_range(1..=3usize);
    let topics: Vec<TopicSpec> = (0..ntopics)
        .map(|t| {
            let sync = if rng.gen_bool(0.85) { SyncDirection::EdgeToCloud } else { SyncDirection::Local };
            topic(&format!("t{t}"), sync, rng.gen_range(0..=9))
        })
        .collect();
    let duration = secs(rng.gen_range(5..=30) * 60);
    let mut workloads = Vec::new();
    for e in 0..edges {
        for _ in 0..rng.gen_range(1..=2) {
            let large = rng.gen_bool(0.1);
            workloads.push(WorkloadSpec {
                node: e + 1,
                topic: rng.gen_range(0..ntopics),
                rate: if large { rng.gen_range(0.5..5.0) } else { rng.gen_range(1.0..40.0) },
                size: if large { rng.gen_range(4096..=65536) } else { rng.gen_range(16..=600) },
                keys: None,
                deletes: 0.0,
                from: Duration::ZERO,
                until: duration,
            });
        }
    }
    let mut s = Scenario {
        name: format!("swarm-{seed}"),
        about: "a world drawn by swarm mode".into(),
        duration,
        settle: secs(45 * 60),
        nodes,
        links,
        topics,
        workloads,
        faults: Vec::new(),
        expect: Expect::default(),
    };
    add_faults(&mut s, &mut rng);
    add_pressure(&mut s, &mut stream(seed, "pressure"));
    s
}

/// The share of worlds that get a site cluster.
const SITE_SHARE: f64 = 0.25;
/// The name of a drawn site cluster; its members are `site0`, `site1`, ...
const SITE: &str = "site";
/// Links between members of a site: a shop's switch or a floor's Wi-Fi.
const SITE_NETS: &[&str] = &["lan", "wifi"];

/// A site cluster, from its own stream (DESIGN §4, "seeds stay stable"): in about one
/// world in four, 3 to 5 new edges run Raft together, every pair of them linked by LAN or
/// Wi-Fi and each with its own link to the gateway (the simulator's members talk directly,
/// and whichever leads forwards the cluster's stream). A strong topic is written on some
/// members, which may also write the world's eventual topics. The site's own faults:
/// outages of its links (short flaps on the LAN, the swarm's usual mix towards the
/// gateway), partitions among its members (2|1, 1|1|1, 3|2, a minority with or without
/// the gateway on its side), crashes with restarts, clock jumps and full disks.
///
/// It is drawn after everything else and only adds: a world that gets no site is the one
/// its seed drew before sites existed, and one that gets a site keeps all the rest.
fn add_site(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(SITE_SHARE) {
        return;
    }
    let Some(gateway) = s.nodes.iter().position(|n| n.role == Role::Gateway) else {
        return;
    };
    let d = s.duration;
    let eventual = s.topics.len();
    let base = s.nodes.len();
    let m = rng.gen_range(3..=5usize);
    let members: Vec<usize> = (base..base + m).collect();
    for k in 0..m {
        let device = EDGE_DEVICES.choose(rng).expect("non-empty");
        let mut n = node(&format!("{SITE}{k}"), Role::Edge, device);
        n.cluster = Some(SITE.to_string());
        s.nodes.push(n);
    }

    // Links: pairwise on the site's network, each member to the gateway.
    let flap_rate = if rng.gen_bool(0.5) { 0 } else { rng.gen_range(1..=10u32) };
    for (i, &a) in members.iter().enumerate() {
        for &b in &members[i + 1..] {
            let net = profiles::net(SITE_NETS.choose(rng).expect("non-empty")).expect("built-in profile");
            let mut outages: Vec<Window> = (0..rng.gen_range(0..=flap_rate))
                .map(|_| {
                    let at = rng.gen_range(0..d.as_nanos());
                    let length = (rng.gen_range(1..=8) * 1_000_000_000).min(d.as_nanos() - at).max(1);
                    Window { at: Duration(at), length: Duration(length) }
                })
                .collect();
            outages.sort_by_key(|w| w.at);
            s.links.push(LinkSpec { a, b, net, outages });
        }
    }
    let outage_rate = rng.gen_range(0..=12u32);
    for &a in &members {
        let net = profiles::net(NETS.choose(rng).expect("non-empty")).expect("built-in profile");
        let mut outages = Vec::new();
        for _ in 0..rng.gen_range(0..=outage_rate) {
            let max = if rng.gen_bool(0.2) { d.as_nanos() / 2 } else { 120_000_000_000 };
            outages.push(window(rng, d, max));
        }
        outages.sort_by_key(|w| w.at);
        s.links.push(LinkSpec { a, b: gateway, net, outages });
    }

    // The strong topic, and what the members write.
    let strong = topic("strong0", SyncDirection::EdgeToCloud, rng.gen_range(0..=9));
    s.topics.push(TopicSpec { consistency: ConsistencySpec::Strong, ..strong });
    let writers = rng.gen_range(1..=m);
    let mut order = members.clone();
    order.shuffle(rng);
    for (i, &node) in order.iter().enumerate() {
        if i < writers {
            s.workloads.push(WorkloadSpec {
                node,
                topic: eventual,
                rate: rng.gen_range(1.0..20.0),
                size: rng.gen_range(16..=600),
                keys: None,
                deletes: 0.0,
                from: Duration::ZERO,
                until: d,
            });
        }
        if rng.gen_bool(0.5) {
            let topic = rng.gen_range(0..eventual);
            s.workloads.push(WorkloadSpec {
                node,
                topic,
                rate: rng.gen_range(1.0..40.0),
                size: rng.gen_range(16..=600),
                keys: s.topics[topic].keyed.then(|| rng.gen_range(1..=64)),
                deletes: 0.0,
                from: Duration::ZERO,
                until: d,
            });
        }
    }

    // Partitions among the members, each healing by itself: the members are shuffled into
    // 2 to m groups (2|1, 3|2, 1|1|1 when every member is alone...), and the gateway joins
    // one of them, a minority or a majority, or none (then every member loses it while the
    // rest of the world, unnamed, keeps it).
    let partition_rate = rng.gen_range(0..=8u32);
    for _ in 0..rng.gen_range(0..=partition_rate) {
        let max = match rng.gen_range(0..10) {
            0..=3 => 10_000_000_000,
            4..=7 => 120_000_000_000,
            _ => 600_000_000_000,
        };
        let w = window(rng, d, max);
        let mut ids = members.clone();
        ids.shuffle(rng);
        let g = rng.gen_range(2..=m);
        let mut groups: Vec<Vec<usize>> = ids[..g].iter().map(|&i| vec![i]).collect();
        for &i in &ids[g..] {
            groups[rng.gen_range(0..g)].push(i);
        }
        if let Some(side) = groups.get_mut(rng.gen_range(0..=g)) {
            side.push(gateway);
        }
        s.faults.push(FaultSpec::Partition { groups, at: w.at, length: w.length });
    }

    // Faults of the members' own. Never disk-corrupt: see `add_faults`.
    let crash_rate = rng.gen_range(0..=4u32);
    let jump_rate = rng.gen_range(0..=2u32);
    let full_rate = rng.gen_range(0..=2u32);
    let rates = NodeFaultRates { crash: crash_rate, jump: jump_rate, full: full_rate, restart_share: 0.85 };
    for &node in &members {
        add_node_faults(s, rng, node, rates);
    }
}

/// The share of worlds whose edges may run on a small device.
const SMALL_DEVICE_SHARE: f64 = 0.2;
/// Data partitions smaller than a few segments of the default size (8 MiB): a tmpfs, what
/// is left of an SD card after the system's partitions.
const SMALL_DEVICE_MIB: &[u64] = &[1, 2, 3, 5, 8, 12, 20];

/// Small devices, from their own stream, drawn after everything else: in about one world
/// in five, one edge outside any site cluster (and each other one with odds of one in
/// two) keeps its storage budget and the segment size fitted to it, but its data
/// partition holds only 1 to 20 MiB, as with a default config on a small tmpfs. Such a
/// device fills long before the budget does, and the data on it is one open segment or
/// a few: it must be freed once the gateway holds it (issue 15, defect 4). Site members
/// keep their disks (their Raft state is not reclaimed this way), and so do gateways.
///
/// It changes nothing but those disks: a world that gets none is the one its seed drew
/// before small devices existed.
fn add_small_devices(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(SMALL_DEVICE_SHARE) {
        return;
    }
    let edges: Vec<usize> =
        (0..s.nodes.len()).filter(|&i| s.nodes[i].role == Role::Edge && s.nodes[i].cluster.is_none()).collect();
    if edges.is_empty() {
        return;
    }
    let first = rng.gen_range(0..edges.len());
    for (k, &i) in edges.iter().enumerate() {
        let mib = *SMALL_DEVICE_MIB.choose(rng).expect("non-empty");
        if k == first || rng.gen_bool(0.5) {
            let device = &mut s.nodes[i].device;
            device.storage_bytes = device.storage_bytes.min(mib << 20);
        }
    }
}

/// Memory and storage pressure, from its own stream so that the worlds of older seeds
/// keep everything else: in two worlds of five, edges get small budgets (8 to 64 MiB of
/// memory, 4 to 16 MiB of storage) and topics get eviction policies, so storage fills
/// during outages and the budgets are tight enough for their accounting to matter. Half
/// of those links also lose the gateway for a long stretch, so that backlogs build.
fn add_pressure(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(0.4) {
        return;
    }
    let d = s.duration.as_nanos();
    for l in &mut s.links {
        if rng.gen_bool(0.5) {
            let at = rng.gen_range(d / 10..d / 2);
            let length = rng.gen_range(d / 4..=d / 2).min(d - at);
            l.outages.push(Window { at: Duration(at), length: Duration(length) });
            l.outages.sort_by_key(|w| w.at);
        }
    }
    const MIB: u64 = 1 << 20;
    for n in s.nodes.iter_mut().filter(|n| n.role == Role::Edge) {
        let memory = [8, 12, 16, 32, 64].choose(rng).expect("non-empty") * MIB;
        let storage = [4, 6, 8, 12, 16].choose(rng).expect("non-empty") * MIB;
        n.memory_bytes = memory.min(n.device.memory_bytes);
        n.storage_bytes = storage.min(n.device.storage_bytes);
    }
    const POLICIES: [EvictionSpec; 5] =
        [EvictionSpec::Keep, EvictionSpec::Oldest, EvictionSpec::Priority, EvictionSpec::Lru, EvictionSpec::Compact];
    for (i, t) in s.topics.iter_mut().enumerate() {
        t.eviction = *POLICIES.choose(rng).expect("non-empty");
        if t.eviction == EvictionSpec::Compact {
            // A keyed topic whose producers cycle through a few keys, as device state does.
            t.keyed = true;
            for w in s.workloads.iter_mut().filter(|w| w.topic == i) {
                w.keys = Some(rng.gen_range(1..=64));
            }
        }
    }
}

/// `base` with a fault mix drawn from `seed` added.
pub fn perturb(base: &Scenario, seed: u64) -> Scenario {
    let mut s = base.clone();
    s.name = format!("{}+swarm-{seed}", base.name);
    add_faults(&mut s, &mut stream(seed, "swarm"));
    s
}

fn window(rng: &mut SimRng, duration: Duration, max_len: u64) -> Window {
    let d = duration.as_nanos();
    let at = rng.gen_range(0..d);
    let length = rng.gen_range(1_000_000_000..=max_len.max(1_000_000_001)).min(d - at).max(1);
    Window { at: Duration(at), length: Duration(length) }
}

fn add_faults(s: &mut Scenario, rng: &mut SimRng) {
    let d = s.duration;
    // Intensities: each kind of fault is off in some worlds and heavy in others.
    let outage_rate = rng.gen_range(0..=12u32);
    let crash_rate = rng.gen_range(0..=4u32);
    let jump_rate = rng.gen_range(0..=2u32);
    let full_rate = rng.gen_range(0..=2u32);
    for l in &mut s.links {
        for _ in 0..rng.gen_range(0..=outage_rate) {
            let max = if rng.gen_bool(0.2) { d.as_nanos() / 2 } else { 120_000_000_000 };
            l.outages.push(window(rng, d, max));
        }
        l.outages.sort_by_key(|w| w.at);
    }
    let n = s.nodes.len();
    let rates = NodeFaultRates { crash: crash_rate, jump: jump_rate, full: full_rate, restart_share: 0.8 };
    for node in 0..n {
        add_node_faults(s, rng, node, rates);
    }
    if n > 2 && rng.gen_bool(0.3) {
        let w = window(rng, d, 600_000_000_000);
        let mut ids: Vec<usize> = (0..n).collect();
        ids.shuffle(rng);
        let cut = rng.gen_range(1..n);
        let groups = vec![ids[..cut].to_vec(), ids[cut..].to_vec()];
        s.faults.push(FaultSpec::Partition { groups, at: w.at, length: w.length });
    }
    // Drawn last, so the faults above stay what they were for seeds kept as regressions.
    if rng.gen_bool(0.25) {
        for node in (0..n).filter(|&i| s.nodes[i].role == Role::Edge) {
            for _ in 0..rng.gen_range(0..=3) {
                let at = Duration(rng.gen_range(0..d.as_nanos()));
                // Not on a site member (a base scenario's): its Raft log, term and vote
                // must survive, since a member that forgets what it voted or acknowledged
                // can break the site's safety; destroying them is out of scope. Drawn all
                // the same, so the stream and the rest of the world stay what they were.
                if s.nodes[node].cluster.is_none() {
                    s.faults.push(FaultSpec::DiskCorrupt { node, at });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    /// Whether `seed`'s world gets a site cluster: the first draw of the site's stream.
    fn draws_site(seed: u64) -> bool {
        stream(seed, "swarm/cluster").gen_bool(SITE_SHARE)
    }

    /// Everything a world is made of, as text that names profiles rather than printing
    /// them (so that tuning a profile does not change it).
    fn render(s: &Scenario) -> String {
        let mut out = format!("{} {} {}\n", s.name, s.duration.as_nanos(), s.settle.as_nanos());
        let w = |w: &Window| (w.at.as_nanos(), w.length.as_nanos());
        for n in &s.nodes {
            let _ = writeln!(
                out,
                "node {} {:?} {} {} {} {:?} {:?}",
                n.id, n.role, n.device.name, n.memory_bytes, n.storage_bytes, n.zone, n.cluster
            );
        }
        for l in &s.links {
            let _ =
                writeln!(out, "link {} {} {} {:?}", l.a, l.b, l.net.name, l.outages.iter().map(w).collect::<Vec<_>>());
        }
        for t in &s.topics {
            // Written as before conflict strategies were optional (every topic then said
            // `LastWriteWins`; no swarm topic names one), so the fingerprint still compares.
            let conflict = t.conflict.map_or("LastWriteWins".to_string(), |c| format!("{c:?}"));
            let _ = writeln!(
                out,
                "topic {} {:?} {} {:?} {} {} {:?} {:?}",
                t.name, t.sync, t.priority, t.eviction, t.keyed, conflict, t.placement, t.consistency
            );
        }
        for l in &s.workloads {
            let _ = writeln!(
                out,
                "workload {} {} {:x} {} {:?} {} {}",
                l.node,
                l.topic,
                l.rate.to_bits(),
                l.size,
                l.keys,
                l.from.as_nanos(),
                l.until.as_nanos()
            );
        }
        for f in &s.faults {
            let _ = match f {
                FaultSpec::Crash { node, at, restart_after } => {
                    writeln!(out, "crash {node} {} {:?}", at.as_nanos(), restart_after.map(|d| d.as_nanos()))
                }
                FaultSpec::Partition { groups, at, length } => {
                    writeln!(out, "partition {groups:?} {} {}", at.as_nanos(), length.as_nanos())
                }
                FaultSpec::ClockJump { node, at, by_nanos } => {
                    writeln!(out, "jump {node} {} {by_nanos}", at.as_nanos())
                }
                FaultSpec::DiskFull { node, at, length } => {
                    writeln!(out, "full {node} {} {}", at.as_nanos(), length.as_nanos())
                }
                FaultSpec::DiskCorrupt { node, at } => writeln!(out, "corrupt {node} {}", at.as_nanos()),
                FaultSpec::CorruptTail { node, at, restart_after } => {
                    writeln!(out, "corrupt-tail {node} {} {:?}", at.as_nanos(), restart_after.map(|d| d.as_nanos()))
                }
                FaultSpec::Impostor { node, at, length, must_try } => {
                    writeln!(out, "impostor {node} {} {} {must_try}", at.as_nanos(), length.as_nanos())
                }
            };
        }
        let e = &s.expect;
        let _ = writeln!(
            out,
            "expect {:?} {:?} {:?} {:?} {:?} {:?}",
            e.lost,
            e.duplicates,
            e.out_of_order,
            e.converge_within.map(|d| d.as_nanos()),
            e.min_delivered,
            e.min_evicted_unsynced
        );
        out
    }

    fn fnv(h: u64, text: &str) -> u64 {
        text.bytes().fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
    }

    /// FNV-1a of `render` over the worlds of seeds 0..300 that draw no site, as drawn
    /// before issue 15's features (`clock_stress_only_changes_its_worlds`,
    /// `later_features_only_add` and `a_small_device_only_shrinks_disks` show that each
    /// leaves every world that does not draw it unchanged).
    fn fingerprint_without_sites() -> (u64, usize) {
        let mut h = 0xcbf2_9ce4_8422_2325;
        let mut worlds = 0;
        for seed in (0..300).filter(|&s| !draws_site(s)) {
            h = fnv(h, &render(&world_with_site(seed)));
            worlds += 1;
        }
        (h, worlds)
    }

    fn draws_eviction(seed: u64) -> bool {
        stream(seed, "swarm/eviction").gen_bool(EVICTION_SHARE)
    }

    fn draws_corrupt_tail(seed: u64) -> bool {
        stream(seed, "swarm/corrupt-tail").gen_bool(CORRUPT_TAIL_SHARE)
    }

    /// A world that draws neither eviction pressure nor `corrupt-tail` faults is the world
    /// its seed drew before them; one that draws them keeps the rest (the pressured edge's
    /// storage and its link's outages aside).
    #[test]
    fn later_features_only_add() {
        let (mut eviction, mut tails) = (0, 0);
        for seed in 0..300 {
            let (a, b) = (world_with_site(seed), world_with_durability_checks(seed));
            if !draws_eviction(seed) && !draws_corrupt_tail(seed) {
                assert_eq!(render(&a), render(&b), "seed {seed}");
                continue;
            }
            assert_eq!(a.nodes.len(), b.nodes.len(), "seed {seed}");
            for (i, (x, y)) in a.nodes.iter().zip(&b.nodes).enumerate() {
                assert_eq!((&x.id, x.role, &x.cluster), (&y.id, y.role, &y.cluster));
                assert!(y.storage_bytes <= x.storage_bytes, "seed {seed}");
                if y.memory_bytes != x.memory_bytes {
                    // Only more, and only as much as the topics added needed
                    // (`fit_memory_to_topics`): one step less does not start.
                    assert!(y.memory_bytes > x.memory_bytes, "seed {seed}: {} lost memory", y.id);
                    let mut less = b.clone();
                    less.nodes[i].memory_bytes = y.memory_bytes - FIT_MEMORY_STEP;
                    let cfg = crate::world::node_config(&less, i);
                    assert!(outpost_core::Node::check_config(&cfg).is_err(), "seed {seed}: {} grew without need", y.id);
                }
            }
            for (x, y) in a.links.iter().zip(&b.links) {
                assert!(x.outages.iter().all(|w| y.outages.contains(w)), "seed {seed}: outages only added");
            }
            assert_eq!(a.topics[..], b.topics[..a.topics.len()], "seed {seed}");
            assert_eq!(a.workloads[..], b.workloads[..a.workloads.len()], "seed {seed}");
            assert_eq!(a.faults[..], b.faults[..a.faults.len()], "seed {seed}");
            if draws_eviction(seed) {
                eviction += 1;
                let t = &b.topics[a.topics.len()..];
                assert_eq!(t.len(), 2, "seed {seed}");
                assert_eq!(t[0].eviction, EvictionSpec::Keep);
                assert!(t[1].eviction.is_lossy() && t[1].priority > t[0].priority, "seed {seed}: {t:?}");
                let w = &b.workloads[a.workloads.len()..];
                assert_eq!(w.len(), 2, "seed {seed}");
                assert_eq!(w[0].node, w[1].node, "seed {seed}: one edge writes both");
                assert!(b.nodes[w[0].node].cluster.is_none() && b.nodes[w[0].node].storage_bytes <= 8 << 20);
            }
            if draws_corrupt_tail(seed) {
                tails += 1;
                for f in &b.faults[a.faults.len()..] {
                    let FaultSpec::CorruptTail { node, .. } = f else { panic!("seed {seed}: {f:?}") };
                    assert!(b.nodes[*node].role == Role::Edge && b.nodes[*node].cluster.is_none());
                }
            }
            crate::world::World::new(&b, seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        assert!((30..=90).contains(&eviction), "{eviction} of 300 worlds have eviction pressure");
        assert!((30..=90).contains(&tails), "{tails} of 300 worlds have corrupt-tail faults");
    }

    #[test]
    #[ignore = "prints the fingerprint, to record it after a deliberate change of the worlds"]
    fn print_fingerprint_without_sites() {
        println!("{:?}", fingerprint_without_sites());
    }

    /// Seeds stay stable (DESIGN §4): the fingerprint was recorded with the swarm as it was
    /// before site clusters, so every world that draws no site is still the world its
    /// seed drew then. (Compared in full for seeds 0..2000 when sites were added.)
    #[test]
    fn worlds_without_a_site_are_the_worlds_drawn_before_sites() {
        assert_eq!(fingerprint_without_sites(), (10_534_994_574_546_758_966, 223));
    }

    /// Whether `seed`'s world gets small devices: the first draw of their stream.
    fn draws_small_devices(seed: u64) -> bool {
        stream(seed, "swarm/small-device").gen_bool(SMALL_DEVICE_SHARE)
    }

    #[test]
    fn a_small_device_only_shrinks_disks() {
        let mut shrunk = 0;
        for seed in 0..400 {
            let (before, after) = (world_before_small_devices(seed), world_before_second_gateway(seed));
            let mut small = 0;
            for (a, b) in before.nodes.iter().zip(&after.nodes) {
                let mut same = b.clone();
                same.device.storage_bytes = a.device.storage_bytes;
                assert_eq!(*a, same, "seed {seed}: only the device's capacity may change");
                if b.device.storage_bytes < a.device.storage_bytes {
                    assert!(b.role == Role::Edge && b.cluster.is_none(), "seed {seed}: {} got a small device", b.id);
                    assert!(b.device.storage_bytes <= 20 << 20, "seed {seed}");
                    small += 1;
                }
            }
            assert_eq!(before.nodes.len(), after.nodes.len());
            assert_eq!(
                (&before.links, &before.topics, &before.workloads),
                (&after.links, &after.topics, &after.workloads)
            );
            assert_eq!((&before.faults, before.duration, before.settle), (&after.faults, after.duration, after.settle));
            let has_edge = before.nodes.iter().any(|n| n.role == Role::Edge && n.cluster.is_none());
            assert_eq!(small > 0, draws_small_devices(seed) && has_edge, "seed {seed}");
            shrunk += usize::from(small > 0);
        }
        assert!((50..=110).contains(&shrunk), "{shrunk} of 400 worlds have a small device");
    }

    #[test]
    fn a_site_only_adds_to_its_world() {
        for seed in (0..300).filter(|&s| draws_site(s)) {
            let (a, b) = (world_without_site(seed), world_with_site(seed));
            assert_eq!(a.nodes[..], b.nodes[..a.nodes.len()], "seed {seed}");
            assert_eq!(a.links[..], b.links[..a.links.len()], "seed {seed}");
            assert_eq!(a.topics[..], b.topics[..a.topics.len()], "seed {seed}");
            assert_eq!(a.workloads[..], b.workloads[..a.workloads.len()], "seed {seed}");
            assert_eq!(a.faults[..], b.faults[..a.faults.len()], "seed {seed}");
            assert_eq!((a.duration, a.settle, &a.expect), (b.duration, b.settle, &b.expect), "seed {seed}");
        }
    }

    #[test]
    fn about_one_world_in_four_has_a_well_formed_site() {
        let mut sites = 0;
        for seed in 0..400 {
            let s = world(seed);
            let members: Vec<usize> = (0..s.nodes.len()).filter(|&i| s.nodes[i].cluster.is_some()).collect();
            assert_eq!(!members.is_empty(), draws_site(seed), "seed {seed}");
            crate::world::World::new(&s, seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            if members.is_empty() {
                assert!(s.topics.iter().all(|t| t.consistency == ConsistencySpec::Eventual));
                continue;
            }
            sites += 1;
            assert!((3..=5).contains(&members.len()), "seed {seed}: {members:?}");
            let gateway = s.nodes.iter().position(|n| n.role == Role::Gateway).expect("a gateway");
            let link = |a: usize, b: usize| s.links.iter().find(|l| (l.a, l.b) == (a, b) || (l.b, l.a) == (a, b));
            for (k, &m) in members.iter().enumerate() {
                assert_eq!(s.nodes[m].id, format!("site{k}"));
                assert_eq!(s.nodes[m].role, Role::Edge);
                assert_eq!(s.nodes[m].cluster.as_deref(), Some(SITE));
                assert!(link(m, gateway).is_some(), "seed {seed}: every member has its own way to the gateway");
                for &o in &members[k + 1..] {
                    let l = link(m, o).expect("members are linked pairwise");
                    assert!(SITE_NETS.contains(&l.net.name), "seed {seed}: {}", l.net.name);
                }
            }
            // (Besides `strong-keyed`, which `add_strong_keyed` may add.)
            let strong: Vec<usize> = (0..s.topics.len())
                .filter(|&t| s.topics[t].consistency == ConsistencySpec::Strong && !s.topics[t].keyed)
                .collect();
            assert_eq!(strong.len(), 1, "seed {seed}");
            let t = &s.topics[strong[0]];
            assert_eq!((t.sync, t.eviction, t.keyed), (SyncDirection::EdgeToCloud, EvictionSpec::Keep, false));
            let writers: Vec<&WorkloadSpec> = s.workloads.iter().filter(|w| w.topic == strong[0]).collect();
            assert!(!writers.is_empty(), "seed {seed}: somebody writes the strong topic");
            for w in writers {
                assert!(members.contains(&w.node), "seed {seed}: a strong writer outside the site");
                assert!((1.0..20.0).contains(&w.rate) && (16..=600).contains(&w.size), "seed {seed}: {w:?}");
            }
            for f in &s.faults {
                if let FaultSpec::DiskCorrupt { node, .. } = f {
                    assert!(!members.contains(node), "seed {seed}: disk-corrupt on a site member");
                }
            }
        }
        assert!((70..=130).contains(&sites), "{sites} of 400 worlds have a site");
    }

    #[test]
    fn perturbing_a_site_never_corrupts_a_member_disk() {
        let base = world((0..).find(|&s| draws_site(s)).expect("a seed with a site"));
        let mut corrupted = 0;
        for seed in 0..200 {
            for f in &perturb(&base, seed).faults {
                if let FaultSpec::DiskCorrupt { node, .. } = f {
                    assert!(base.nodes[*node].cluster.is_none(), "seed {seed}: disk-corrupt on a site member");
                    corrupted += 1;
                }
            }
        }
        assert!(corrupted > 0, "the other edges still get disk-corrupt faults");
    }

    #[test]
    fn worlds_differ_by_seed_and_repeat_by_seed() {
        let a = world(1);
        let b = world(1);
        assert_eq!(a, b);
        let distinct = (0..20).map(|s| format!("{:?}", world(s))).collect::<std::collections::BTreeSet<_>>();
        assert_eq!(distinct.len(), 20);
    }
}

/// How many crashes, clock jumps and full disks a node gets at most, and the share of
/// crashes that restart before the settle phase.
#[derive(Clone, Copy)]
struct NodeFaultRates {
    crash: u32,
    jump: u32,
    full: u32,
    restart_share: f64,
}

/// A node's own faults: crashes (restarting after 1-300 s, or at settle), clock jumps of
/// up to ±2 h, full disks of up to 5 min.
fn add_node_faults(s: &mut Scenario, rng: &mut SimRng, node: usize, r: NodeFaultRates) {
    let d = s.duration;
    for _ in 0..rng.gen_range(0..=r.crash) {
        let at = Duration(rng.gen_range(0..d.as_nanos()));
        let restart_after =
            if rng.gen_bool(r.restart_share) { Some(Duration(rng.gen_range(1..=300) * 1_000_000_000)) } else { None };
        s.faults.push(FaultSpec::Crash { node, at, restart_after });
    }
    for _ in 0..rng.gen_range(0..=r.jump) {
        let at = Duration(rng.gen_range(0..d.as_nanos()));
        let mag = rng.gen_range(1..=7200i64) * 1_000_000_000;
        let by_nanos = if rng.gen_bool(0.5) { mag } else { -mag };
        s.faults.push(FaultSpec::ClockJump { node, at, by_nanos });
    }
    for _ in 0..rng.gen_range(0..=r.full) {
        let w = window(rng, d, 300_000_000_000);
        s.faults.push(FaultSpec::DiskFull { node, at: w.at, length: w.length });
    }
}

// ---- Clock stress (issue 15): reboot loops and idle stretches ----
//
// Each from its own stream, drawn after everything else: a world that draws neither is
// the world its seed drew before them (`clock_stress_only_changes_its_worlds`).

/// The share of worlds with a reboot loop, and the share with idle stretches.
const REBOOT_LOOP_SHARE: f64 = 0.25;
const IDLE_SHARE: f64 = 0.25;

/// A reboot loop, as a watchdog or a crashing supervisor gives: one node (an edge, a
/// site member or the gateway) is killed 10 to 40 times in a row within the first hour of
/// the run. In three loops of five it is a tight loop, a process that dies 1 to 5 s after
/// it starts and is back 1 or 2 s later; otherwise up 5 to 90 s and down 1 to 20 s each
/// time. Restarts closer together than a clock bound window are where a clock that
/// restarts from its persisted bound gains on the wall clock.
fn add_reboot_loop(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(REBOOT_LOOP_SHARE) {
        return;
    }
    let node = rng.gen_range(0..s.nodes.len());
    let tight = rng.gen_bool(0.6);
    let end = s.duration.as_nanos().min(3_600_000_000_000);
    let mut at = rng.gen_range(0..end / 2);
    for _ in 0..rng.gen_range(10..=40u32) {
        let (up, down) = if tight {
            (rng.gen_range(1..=5u64), rng.gen_range(1..=2u64))
        } else {
            (rng.gen_range(5..=90u64), rng.gen_range(1..=20u64))
        };
        at += up * 1_000_000_000;
        if at >= end {
            break;
        }
        let down = down * 1_000_000_000;
        s.faults.push(FaultSpec::Crash { node, at: Duration(at), restart_after: Some(Duration(down)) });
        at += down;
    }
}

/// Idle stretches: one to three windows of 1 to 12 minutes in which no workload writes,
/// so the gateway hears nothing once the backlog has drained (its clock bound lapses),
/// and then traffic again. A workload that runs across a window is cut there and goes on
/// after it as a new workload (appended, so earlier workloads keep their streams).
fn add_idle_stretches(s: &mut Scenario, rng: &mut SimRng) {
    if !rng.gen_bool(IDLE_SHARE) {
        return;
    }
    let d = s.duration.as_nanos();
    let mut windows: Vec<(u64, u64)> = Vec::new();
    for _ in 0..rng.gen_range(1..=3) {
        // At least a minute of the run is left after each window, for the traffic after.
        let len = (rng.gen_range(60..=720u64) * 1_000_000_000).min(d / 2);
        let at = rng.gen_range(0..(d - len).saturating_sub(60_000_000_000).max(1));
        windows.push((at, at + len));
    }
    windows.sort_unstable();
    // Overlapping windows make one.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in windows {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut pieces = Vec::new();
    for w in &mut s.workloads {
        let mut runs = Vec::new();
        let mut from = w.from.as_nanos();
        for &(a, b) in &merged {
            if a > from {
                runs.push((from, a.min(w.until.as_nanos())));
            }
            from = from.max(b);
        }
        runs.push((from, w.until.as_nanos()));
        runs.retain(|&(a, b)| b > a);
        let mut runs = runs.into_iter();
        match runs.next() {
            Some((a, b)) => (w.from, w.until) = (Duration(a), Duration(b)),
            // Idle from start to end: it writes nothing.
            None => w.until = w.from,
        }
        for (a, b) in runs {
            pieces.push(WorkloadSpec { from: Duration(a), until: Duration(b), ..w.clone() });
        }
    }
    s.workloads.extend(pieces);
}

#[cfg(test)]
mod clock_stress_tests {
    use super::*;

    fn draws_reboots(seed: u64) -> bool {
        stream(seed, "swarm/reboots").gen_bool(REBOOT_LOOP_SHARE)
    }

    fn draws_idle(seed: u64) -> bool {
        stream(seed, "swarm/idle").gen_bool(IDLE_SHARE)
    }

    /// Seeds stay stable: a world with neither a reboot loop nor idle stretches is the one
    /// its seed drew before them, and a reboot loop only adds crashes of one node.
    #[test]
    fn clock_stress_only_changes_its_worlds() {
        let (mut loops, mut idle) = (0, 0);
        for seed in 0..400 {
            let (before, after) = (world_with_site(seed), world_with_clock_stress(seed));
            if !draws_reboots(seed) && !draws_idle(seed) {
                assert_eq!(before, after, "seed {seed}");
                continue;
            }
            assert_eq!((&before.nodes, &before.links, &before.topics), (&after.nodes, &after.links, &after.topics));
            assert_eq!(before.faults[..], after.faults[..before.faults.len()], "seed {seed}");
            let added = &after.faults[before.faults.len()..];
            if draws_reboots(seed) {
                loops += 1;
                let nodes: std::collections::BTreeSet<usize> = added
                    .iter()
                    .map(|f| match f {
                        FaultSpec::Crash { node, restart_after: Some(_), .. } => *node,
                        other => panic!("seed {seed}: a reboot loop added {other:?}"),
                    })
                    .collect();
                assert_eq!(nodes.len(), 1, "seed {seed}: one node reboots");
                assert!((1..=40).contains(&added.len()), "seed {seed}: {} restarts", added.len());
            } else {
                assert!(added.is_empty(), "seed {seed}");
            }
            if !draws_idle(seed) {
                assert_eq!(before.workloads, after.workloads, "seed {seed}");
            } else {
                idle += 1;
            }
        }
        assert!((60..=140).contains(&loops) && (60..=140).contains(&idle), "{loops} loops, {idle} idle of 400");
    }

    /// In an idle world, every workload's writing time is what it was minus the idle
    /// windows: nothing writes inside a window, and what ran across one goes on after it.
    #[test]
    fn idle_stretches_pause_every_workload_and_traffic_resumes() {
        let mut tested = 0;
        for seed in (0..200).filter(|&s| draws_idle(s)) {
            let (before, after) = (world_with_site(seed), world_with_clock_stress(seed));
            let written = |s: &Scenario| -> u64 {
                s.workloads.iter().map(|w| w.until.as_nanos().saturating_sub(w.from.as_nanos())).sum()
            };
            let (b, a) = (written(&before), written(&after));
            assert!(a < b, "seed {seed}: idle stretches take writing time away ({a} of {b})");
            // Some moment of the run no workload writes for at least a minute, while
            // writing goes on after it.
            let busy = |t: u64| after.workloads.iter().any(|w| w.from.as_nanos() <= t && t < w.until.as_nanos());
            let d = after.duration.as_nanos();
            let step = 1_000_000_000;
            let mut quiet = 0u64;
            let mut found = false;
            for t in (0..d).step_by(step as usize) {
                if busy(t) {
                    found |= quiet >= 60;
                    quiet = 0;
                } else {
                    quiet += 1;
                }
            }
            if found {
                tested += 1;
            }
            crate::world::World::new(&after, seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        assert!(tested >= 20, "{tested} idle worlds with a quiet minute followed by traffic");
    }

    /// How a world is drawn from its seed, with or without a feature.
    type Draw = fn(u64) -> Scenario;

    /// The seeds of 0..400 whose world a feature changed (`before` without it, `after`
    /// with it), with both worlds; each changed only where the feature's own stream drew
    /// it (`name`, at odds `share`), so other seeds keep their worlds.
    fn changed_worlds((before, after): (Draw, Draw), name: &str, share: f64) -> Vec<(u64, Scenario, Scenario)> {
        let changed: Vec<(u64, Scenario, Scenario)> =
            (0..400).map(|seed| (seed, before(seed), after(seed))).filter(|(_, b, a)| a != b).collect();
        for (seed, _, _) in &changed {
            assert!(stream(*seed, name).gen_bool(share), "seed {seed}: changed without the draw of {name}");
        }
        changed
    }

    /// Seeds stay stable: a strong keyed topic is added only to worlds with a site, with
    /// workloads at its members alone (and memory to fit it); every strategy is drawn.
    #[test]
    fn strong_keyed_topics_only_change_site_worlds() {
        let changed = changed_worlds((world_before_strong_keyed, world), "swarm/strong-keyed", STRONG_KEYED_SHARE);
        let mut strategies = std::collections::BTreeSet::new();
        for (seed, before, after) in &changed {
            let n = before.topics.len();
            assert_eq!(after.topics[..n], before.topics[..], "seed {seed}");
            let added = &after.topics[n..];
            assert!(added.len() == 1, "seed {seed}");
            let t = &added[0];
            assert!(t.keyed && t.consistency == ConsistencySpec::Strong && t.sync == SyncDirection::EdgeToCloud);
            strategies.insert(format!("{:?}", t.conflict));
            assert_eq!(after.workloads[..before.workloads.len()], before.workloads[..], "seed {seed}");
            let added = &after.workloads[before.workloads.len()..];
            assert!(!added.is_empty(), "seed {seed}: somebody writes it");
            for w in added {
                assert!(w.topic == n && after.nodes[w.node].cluster.is_some() && w.keys.is_some(), "seed {seed}");
            }
            assert_eq!((&after.links, &after.faults), (&before.links, &before.faults), "seed {seed}");
            crate::world::World::new(after, *seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        assert!(changed.len() >= 20, "{} of 400 worlds got a strong keyed topic", changed.len());
        assert_eq!(strategies.len(), Strategy::ALL.len(), "{strategies:?}");
    }

    /// Seeds stay stable: a world with a `cloud-to-edge` topic only adds the topic, one
    /// workload on it per gateway, and memory.
    #[test]
    fn a_down_topic_only_changes_its_worlds() {
        let changed = changed_worlds((world_before_down_topics, world_before_tiers), "swarm/down-topics", DOWN_SHARE);
        for (seed, before, after) in &changed {
            assert_eq!(after.topics[..before.topics.len()], before.topics[..], "seed {seed}");
            let down = &after.topics[before.topics.len()..];
            assert!(down.len() == 1 && down[0].sync == SyncDirection::CloudToEdge, "seed {seed}: {down:?}");
            assert_eq!(after.workloads[..before.workloads.len()], before.workloads[..], "seed {seed}");
            let added = &after.workloads[before.workloads.len()..];
            let gateways = after.nodes.iter().filter(|n| n.role == Role::Gateway).count();
            assert_eq!(added.len(), gateways, "seed {seed}: one workload per gateway");
            assert!(added.iter().all(|w| after.nodes[w.node].role == Role::Gateway && w.topic == before.topics.len()));
            assert_eq!((&after.links, &after.faults), (&before.links, &before.faults), "seed {seed}");
            for (b, a) in before.nodes.iter().zip(&after.nodes) {
                assert_eq!(
                    NodeSpec { memory_bytes: b.memory_bytes, ..a.clone() },
                    *b,
                    "seed {seed}: only memory grows"
                );
                assert!(a.memory_bytes >= b.memory_bytes);
            }
        }
        let drawn = changed.len();
        assert!((100..170).contains(&drawn), "about a third of 400 worlds: {drawn}");
    }

    /// A world with a `bidirectional` topic only adds its two halves (the one that goes up
    /// in place, the one that comes down after it), workloads on them (the half that
    /// comes down at top gateways, the other at edges), and memory; and it runs.
    #[test]
    fn a_both_topic_only_changes_its_worlds() {
        let changed = changed_worlds((world_before_both_topics, world_before_zones), "swarm/both-topics", BOTH_SHARE);
        for (seed, before, after) in &changed {
            let n = before.topics.len();
            assert_eq!(after.topics[..n], before.topics[..], "seed {seed}");
            let halves: Vec<(&str, SyncDirection, bool)> =
                after.topics[n..].iter().map(|t| (t.name.as_str(), t.sync, t.both_ways)).collect();
            let expected = [("both", SyncDirection::EdgeToCloud, true), ("both", SyncDirection::CloudToEdge, true)];
            assert_eq!(halves, expected, "seed {seed}");
            assert_eq!(after.workloads[..before.workloads.len()], before.workloads[..], "seed {seed}");
            for w in &after.workloads[before.workloads.len()..] {
                let node = &after.nodes[w.node];
                let expected = if node.role == Role::Edge { n } else { n + 1 };
                assert!(w.topic == expected && (node.role == Role::Edge || node.upstream.is_none()), "seed {seed}");
            }
            assert_eq!((&after.links, &after.faults), (&before.links, &before.faults), "seed {seed}");
            for (b, a) in before.nodes.iter().zip(&after.nodes) {
                assert_eq!(
                    NodeSpec { memory_bytes: b.memory_bytes, ..a.clone() },
                    *b,
                    "seed {seed}: only memory grows"
                );
            }
            crate::world::World::new(after, *seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        let drawn = changed.len();
        assert!((80..160).contains(&drawn), "about three in ten of 400 worlds: {drawn}");
    }

    /// A world with zones differs only in its nodes' zones and its topics' placements; every
    /// topic it classifies is written only where its zones allow and goes up or down only
    /// through them (it loads), and the worlds run.
    #[test]
    fn zones_only_change_their_worlds() {
        let changed = changed_worlds((world_before_zones, world_before_impostors), "swarm/zones", ZONE_SHARE);
        let mut classified = 0;
        for (seed, before, after) in &changed {
            let mut restored = after.clone();
            restored.nodes.iter_mut().for_each(|n| n.zone = None);
            restored.topics.iter_mut().for_each(|t| t.placement = None);
            assert_eq!(restored, *before, "seed {seed}: only zones and placements change");
            assert!(after.nodes.iter().any(|n| n.zone.is_some()), "seed {seed}");
            assert!(crate::scenario::check_placement(after).is_ok(), "seed {seed}: the world loads");
            classified += after.topics.iter().filter(|t| t.placement.is_some()).count();
        }
        let drawn = changed.len();
        assert!((130..200).contains(&drawn), "about two in five of 400 worlds: {drawn}");
        assert!(classified > drawn / 2, "most worlds with zones classify a topic: {classified} in {drawn}");
        for (seed, _, after) in changed.iter().take(3) {
            crate::world::World::new(after, *seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }

    /// A world with a keyed topic only adds its two halves (merged by one strategy), its
    /// workloads (keys and deletes drawn), memory and a gateway's clock set wrong and
    /// corrected with its links cut to the end, in a world without sites (middle tiers are in);
    /// and the worlds run.
    #[test]
    fn keyed_topics_only_change_their_worlds() {
        let changed = changed_worlds((world_before_keyed, world_before_keyed_retention), "swarm/keyed", KEYED_SHARE);
        let mut strategies = std::collections::BTreeSet::new();
        let (mut set_wrong, mut burst, mut tiered, mut sites) = (0, 0, 0, 0);
        for (seed, before, after) in &changed {
            let n = before.topics.len();
            assert_eq!(after.topics[..n], before.topics[..], "seed {seed}");
            let added = &after.topics[n..];
            assert!(
                added.len() == 2 && added.iter().all(|t| t.keyed && t.conflict == added[0].conflict),
                "seed {seed}"
            );
            strategies.insert(format!("{:?}", added[0].conflict));
            assert_eq!(after.workloads[..before.workloads.len()], before.workloads[..], "seed {seed}");
            let added_workloads = &after.workloads[before.workloads.len()..];
            for w in added_workloads {
                assert!(w.topic >= n && w.keys.is_some() && w.deletes < 0.1, "seed {seed}");
            }
            let (kept, jumps) = after.faults.split_at(after.faults.len().saturating_sub(2));
            match jumps {
                [FaultSpec::ClockJump { node, at, by_nanos }, FaultSpec::ClockJump { node: n2, by_nanos: back, .. }]
                    if !before.faults.ends_with(jumps) =>
                {
                    assert!(
                        *node == *n2 && *by_nanos > 0 && *back == -by_nanos,
                        "seed {seed}: set wrong, then corrected"
                    );
                    set_wrong += 1;
                    let d = after.duration.as_nanos();
                    // The head office's burst after the cut, if the cut is before the end.
                    let cut = match added_workloads.last() {
                        Some(w) if w.node == *node && w.deletes == 0.0 && w.until == after.duration => {
                            burst += 1;
                            w.from.as_nanos()
                        }
                        _ => d,
                    };
                    let near = |i: usize| i == *node || before.upstream_of(i) == Some(*node);
                    let calm = |from: Duration, length: Option<Duration>| {
                        from.as_nanos() < cut && length.is_none_or(|l| from.as_nanos() + l.as_nanos() > at.as_nanos())
                    };
                    let mut left = kept.iter().peekable();
                    for f in &before.faults {
                        if left.peek() == Some(&f) {
                            left.next();
                            continue;
                        }
                        let calmed = match *f {
                            FaultSpec::Crash { node: x, at, restart_after }
                            | FaultSpec::CorruptTail { node: x, at, restart_after } => {
                                near(x) && calm(at, restart_after)
                            }
                            FaultSpec::DiskFull { node: x, at, length } => near(x) && calm(at, Some(length)),
                            FaultSpec::Partition { at, length, .. } => calm(at, Some(length)),
                            FaultSpec::ClockJump { node: x, .. } => near(x),
                            _ => false,
                        };
                        assert!(calmed, "seed {seed}: only faults near the gateway while it is wrong go: {f:?}");
                    }
                    assert!(left.next().is_none(), "seed {seed}: no fault added but the two jumps");
                    for (a, b) in after.links.iter().zip(&before.links) {
                        let end = |w: &Window| w.at.as_nanos() + w.length.as_nanos();
                        let touched = a.outages != b.outages;
                        assert!(
                            !touched || (a.a == *node || a.b == *node),
                            "seed {seed}: only the gateway's links change"
                        );
                        for w in b.outages.iter().filter(|w| !a.outages.contains(w)) {
                            assert!(
                                w.at.as_nanos() >= cut || calm(w.at, Some(w.length)),
                                "seed {seed}: only outages while the gateway is wrong, or that the cut covers, go"
                            );
                        }
                        if touched && cut < d {
                            let cut = a.outages.iter().find(|w| end(w) == d).expect("cut to the end");
                            for w in a.outages.iter().filter(|w| !b.outages.contains(w)) {
                                assert_eq!(w, cut, "seed {seed}: the cut is the only outage added");
                            }
                        }
                        assert!(a.outages.is_sorted_by_key(|w| w.at), "seed {seed}");
                    }
                }
                _ => {
                    assert_eq!(after.faults, before.faults, "seed {seed}: a world without a top gateway");
                    assert_eq!(after.links, before.links, "seed {seed}");
                }
            }
            tiered += usize::from(after.nodes.iter().any(|x| x.role == Role::Gateway && x.upstream.is_some()));
            sites += usize::from(added_workloads.iter().any(|w| after.nodes[w.node].cluster.is_some()));
        }
        assert!(
            set_wrong > 0 && burst > 0,
            "some worlds set a gateway's clock wrong: {set_wrong}, {burst} with a burst"
        );
        let drawn = changed.len();
        assert!((60..160).contains(&drawn), "about three in ten of the worlds of 400: {drawn}");
        assert!(tiered > 0, "some with middle tiers");
        assert!(sites > 0, "some where site members write it");
        assert_eq!(strategies.len(), 8, "every strategy is drawn: {strategies:?}");
        for (seed, _, after) in changed.iter().take(3) {
            crate::world::World::new(after, *seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }

    /// Small retention only goes to keyed topics, in about half the worlds with one.
    #[test]
    fn keyed_retention_only_changes_keyed_topics() {
        let changed = changed_worlds(
            (world_before_keyed_retention, world_before_strong_keyed),
            "swarm/keyed-retention",
            KEYED_RETENTION_SHARE,
        );
        for (seed, before, after) in &changed {
            assert_eq!(
                (&after.nodes, &after.workloads, &after.faults),
                (&before.nodes, &before.workloads, &before.faults)
            );
            for (b, a) in before.topics.iter().zip(&after.topics) {
                match a.conflict {
                    Some(_) => assert!(a.retention_bytes.is_some_and(|r| r <= 1 << 20), "seed {seed}"),
                    None => assert_eq!(a, b, "seed {seed}"),
                }
            }
        }
        let keyed =
            (0..400).filter(|&seed| world_before_keyed_retention(seed).topics.iter().any(|t| t.conflict.is_some()));
        let keyed = keyed.count();
        assert!((keyed / 4..keyed * 3 / 4).contains(&changed.len()), "{} of {keyed}", changed.len());
    }

    /// A world with an impostor differs only in that fault: on an edge outside any site that
    /// shares its gateway with another such edge; and the worlds run.
    #[test]
    fn an_impostor_only_changes_its_worlds() {
        let changed = changed_worlds((world_before_impostors, world_before_keyed), "swarm/impostor", IMPOSTOR_SHARE);
        for (seed, before, after) in &changed {
            let mut restored = after.clone();
            let added = restored.faults.pop();
            assert_eq!(restored, *before, "seed {seed}: only the impostor is added");
            let Some(FaultSpec::Impostor { node, must_try: false, .. }) = added else {
                panic!("seed {seed}: {added:?}")
            };
            assert!(after.nodes[node].role == Role::Edge && after.nodes[node].cluster.is_none(), "seed {seed}");
            let up = after.upstream_of(node);
            assert!((0..after.nodes.len()).any(|o| o != node && after.upstream_of(o) == up), "seed {seed}: a victim");
        }
        let drawn = changed.len();
        // Two edges outside any site under one gateway: in a little under half the worlds.
        assert!((25..80).contains(&drawn), "about one in four of those of 400 worlds: {drawn}");
        for (seed, _, after) in changed.iter().take(3) {
            crate::world::World::new(after, *seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }

    /// A world with subscribers differs only in topic `down`'s subscribers: a non-empty
    /// subset of its edges.
    #[test]
    fn subscribers_only_change_their_worlds() {
        let changed =
            changed_worlds((world_before_subscribers, world_before_both_topics), "swarm/subscribers", SUBSCRIBER_SHARE);
        for (seed, before, after) in &changed {
            let down = after.topics.iter().position(|t| t.subscribers.is_some());
            let down = down.unwrap_or_else(|| panic!("seed {seed}: no topic has subscribers"));
            let edges = after.topics[down].subscribers.clone().expect("found above");
            assert!(!edges.is_empty() && edges.iter().all(|&e| after.nodes[e].role == Role::Edge), "seed {seed}");
            let mut restored = after.clone();
            restored.topics[down].subscribers = None;
            assert_eq!(restored, *before, "seed {seed}: only the subscribers change");
        }
        let drawn = changed.len();
        assert!((40..100).contains(&drawn), "about a sixth of 400 worlds: {drawn}");
    }

    /// A world with tiers only adds the boxes, their links and faults, and edges' upstreams
    /// to them; every box is a gateway under a gateway, every edge under a box reaches it
    /// over a link of its own, and the worlds run.
    #[test]
    fn tiers_only_change_their_worlds() {
        let changed = changed_worlds((world_before_tiers, world_before_subscribers), "swarm/tiers", TIER_SHARE);
        for (seed, before, after) in &changed {
            let seed = *seed;
            let n = before.nodes.len();
            assert!((n + 1..=n + 2).contains(&after.nodes.len()), "seed {seed}");
            for (i, a) in after.nodes.iter().enumerate().skip(n) {
                let up = a.upstream.expect("a box has an upstream");
                assert!(a.role == Role::Gateway && after.nodes[up].role == Role::Gateway, "seed {seed}: {a:?}");
                assert!(after.links.iter().any(|l| (l.a, l.b) == (i, up)), "seed {seed}: linked to its upstream");
            }
            for (i, (b, a)) in before.nodes.iter().zip(&after.nodes).enumerate() {
                assert_eq!(NodeSpec { upstream: b.upstream, ..a.clone() }, *b, "seed {seed}: only upstreams change");
                if a.upstream != b.upstream {
                    let up = a.upstream.expect("moved under a box");
                    assert!(up >= n && a.role == Role::Edge && a.cluster.is_none(), "seed {seed}: {a:?}");
                    assert!(after.links.iter().any(|l| (l.a, l.b) == (i, up)), "seed {seed}: over a link of its own");
                }
            }
            assert_eq!((&before.topics, &before.workloads), (&after.topics, &after.workloads), "seed {seed}");
            assert_eq!(before.links[..], after.links[..before.links.len()], "seed {seed}");
            crate::world::World::new(after, seed, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        let drawn = changed.len();
        assert!((70..140).contains(&drawn), "about a quarter of 400 worlds: {drawn}");
    }

    #[test]
    fn a_second_gateway_only_changes_its_worlds() {
        let mut drawn = 0;
        for seed in 0..400 {
            let (before, after) = (world_before_second_gateway(seed), world_before_down_topics(seed));
            if !stream(seed, "swarm/second-gateway").gen_bool(SECOND_GATEWAY_SHARE) {
                assert_eq!(before, after, "seed {seed}");
                continue;
            }
            drawn += 1;
            let n = before.nodes.len();
            assert_eq!(after.nodes.len(), n + 1);
            assert_eq!((after.nodes[n].id.as_str(), after.nodes[n].role), ("cloud2", Role::Gateway));
            for (i, (b, a)) in before.nodes.iter().zip(&after.nodes).enumerate() {
                assert_eq!(NodeSpec { upstream: None, ..a.clone() }, *b, "seed {seed}: only an upstream is added");
                if a.upstream.is_some() {
                    assert_eq!(a.upstream, Some(n), "seed {seed}: to cloud2");
                    assert!(a.role == Role::Edge && a.cluster.is_none(), "seed {seed}: {a:?}");
                    assert!(after.links.iter().any(|l| (l.a, l.b) == (i, n)), "seed {seed}: over a link of its own");
                }
            }
            assert_eq!(before.links[..], after.links[..before.links.len()], "seed {seed}");
            assert!(after.links[before.links.len()..].iter().all(|l| l.b == n));
            for (b, a) in before.faults.iter().zip(&after.faults) {
                match (b, a) {
                    (FaultSpec::Partition { groups: gb, at, length }, FaultSpec::Partition { .. }) => {
                        let with = |g: &Vec<usize>| if g.contains(&0) { [&g[..], &[n]].concat() } else { g.clone() };
                        let expected: Vec<Vec<usize>> = gb.iter().map(with).collect();
                        let (at, length) = (*at, *length);
                        assert_eq!(
                            *a,
                            FaultSpec::Partition { groups: expected, at, length },
                            "seed {seed}: with cloud"
                        );
                    }
                    _ => assert_eq!(a, b, "seed {seed}"),
                }
            }
            for f in &after.faults[before.faults.len()..] {
                let node = match f {
                    FaultSpec::Crash { node, .. }
                    | FaultSpec::ClockJump { node, .. }
                    | FaultSpec::DiskFull { node, .. } => *node,
                    other => panic!("seed {seed}: a second gateway added {other:?}"),
                };
                assert_eq!(node, n, "seed {seed}: faults of cloud2 only");
            }
            assert_eq!((&before.topics, &before.workloads), (&after.topics, &after.workloads));
        }
        assert!((70..130).contains(&drawn), "about one world in four: {drawn} of 400");
    }
}

//! Swarm testing: the seed draws the world as well as the run. Each seed picks a topology,
//! devices, links, topics, workloads and a fault mix with its own intensities, so a sweep
//! over many seeds tests many different worlds (DESIGN §4). With a base scenario, the seed
//! keeps its topology and workload and adds a drawn fault mix on top.

use crate::profiles;
use crate::rng::{stream, SimRng};
use crate::scenario::{
    Conflict, ConsistencySpec, EvictionSpec, Expect, FaultSpec, LinkSpec, NodeSpec, Role, Scenario, SyncDirection,
    TopicSpec, Window, WorkloadSpec,
};
use outpost_core::types::Duration;
use rand::seq::SliceRandom;
use rand::Rng;

const EDGE_DEVICES: &[&str] = &["pi-zero", "pi4", "iot-gateway", "vehicle-ecu", "retail-pos", "industrial"];
const NETS: &[&str] = &["lan", "wifi", "cellular", "cellular", "satellite"];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
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
    }
}

/// A world drawn entirely from `seed`.
pub fn world(seed: u64) -> Scenario {
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
        .map(|t| TopicSpec {
            name: format!("t{t}"),
            sync: if rng.gen_bool(0.85) { SyncDirection::EdgeToCloud } else { SyncDirection::Local },
            priority: rng.gen_range(0..=9),
            eviction: EvictionSpec::Keep,
            keyed: false,
            conflict: Conflict::LastWriteWins,
            classification: None,
            consistency: ConsistencySpec::Eventual,
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
    for node in 0..n {
        for _ in 0..rng.gen_range(0..=crash_rate) {
            let at = Duration(rng.gen_range(0..d.as_nanos()));
            let restart_after =
                if rng.gen_bool(0.8) { Some(Duration(rng.gen_range(1..=300) * 1_000_000_000)) } else { None };
            s.faults.push(FaultSpec::Crash { node, at, restart_after });
        }
        for _ in 0..rng.gen_range(0..=jump_rate) {
            let at = Duration(rng.gen_range(0..d.as_nanos()));
            let mag = rng.gen_range(1..=7200i64) * 1_000_000_000;
            let by_nanos = if rng.gen_bool(0.5) { mag } else { -mag };
            s.faults.push(FaultSpec::ClockJump { node, at, by_nanos });
        }
        for _ in 0..rng.gen_range(0..=full_rate) {
            let w = window(rng, d, 300_000_000_000);
            s.faults.push(FaultSpec::DiskFull { node, at: w.at, length: w.length });
        }
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
                s.faults.push(FaultSpec::DiskCorrupt { node, at });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_differ_by_seed_and_repeat_by_seed() {
        let a = world(1);
        let b = world(1);
        assert_eq!(a, b);
        let distinct = (0..20).map(|s| format!("{:?}", world(s))).collect::<std::collections::BTreeSet<_>>();
        assert_eq!(distinct.len(), 20);
    }
}

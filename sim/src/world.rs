//! The simulation engine: one thread, one event queue ordered by (virtual time, insertion
//! order), every node a real `outpost_core::Node` driven by the driver's rule, and the
//! network, disks, clocks, workloads and faults around them.
//!
//! A run has two phases. Until `duration`, workloads produce and faults strike. Then the
//! settle phase heals every fault (links up, partitions gone, disks writable, crashed
//! nodes restarted), producers stop, and the run must converge — every acknowledged
//! record at the gateway, every edge fully acknowledged — within `settle` (or the
//! `[expect]` bound). The run ends as soon as it converges.

use crate::checker::Checker;
use crate::disk::SimDisk;
use crate::durability::NodeDurability;
use crate::heap;
use crate::net::Network;
use crate::report::{Details, NodeReport, Report};
use crate::rng::{mix, stream, SimRng};
use crate::scenario::{
    ConsistencySpec, EvictionSpec, FaultSpec, Role as SpecRole, Scenario, SyncDirection as SpecSync, TopicSpec,
};
use crate::site_checks::{CommitRule, QuorumPromise};
use outpost_core::config::{ClusterConfig, Consistency, Eviction, NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::io::{Event, FileId, Input, Output, ProduceAck, ProduceError, ReqId};
use outpost_core::resources;
use outpost_core::sync::proto::{SyncMsg, TopicStatus};
use outpost_core::types::{Instant, NodeId, Now, TopicIdx};
use outpost_core::{Node, NodeSeed};
use rand::Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;

/// 2026-01-01T00:00:00Z: the true wall clock at simulated time zero.
const EPOCH_MS: u64 = 1_767_225_600_000;
/// A device without a real-time clock gets the right time this long after a restart
/// (NTP), if it has any link up then; until then its wall clock counts from 1970.
const NTP_DELAY_NS: u64 = 60_000_000_000;
/// How often the world samples backlog and checks convergence.
const SAMPLE_NS: u64 = 1_000_000_000;
/// Evicted ranges listed per node in the report; later ones are only counted.
const EVICTED_RANGES_KEPT_MAX: usize = 100;
/// A node asking to be woken at the same instant this many times in a row is spinning.
const SAME_INSTANT_WAKEUPS_MAX: u32 = 100_000;

/// A scenario the simulator cannot run yet, with what is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not supported yet: {}", self.0)
    }
}

pub fn topic_goes_up(t: &TopicSpec) -> bool {
    matches!(t.sync, SpecSync::EdgeToCloud | SpecSync::Bidirectional)
}

pub fn topic_goes_down(t: &TopicSpec) -> bool {
    matches!(t.sync, SpecSync::CloudToEdge | SpecSync::Bidirectional)
}

#[derive(Debug)]
enum Ev {
    /// `from` is the sender as the receiver sees it (a site cluster's index for a cluster
    /// uplink's messages); `link_from` the node whose link carries it.
    Deliver {
        to: usize,
        from: usize,
        link_from: usize,
        bytes: Vec<u8>,
    },
    DiskDone {
        node: usize,
        incarnation: u64,
    },
    Timer {
        node: usize,
        gen: u64,
    },
    Produce {
        workload: usize,
    },
    Crash {
        node: usize,
        restart_after: Option<u64>,
    },
    Restart {
        node: usize,
    },
    ClockJump {
        node: usize,
        by: i64,
    },
    DiskFull {
        node: usize,
        on: bool,
    },
    Partition {
        idx: usize,
        on: bool,
    },
    DiskCorrupt {
        node: usize,
    },
    CorruptTail {
        node: usize,
        restart_after: Option<u64>,
    },
    NtpSync {
        node: usize,
        incarnation: u64,
    },
    Sample,
    Settle,
    /// Impostor fault `idx` starts or ends.
    Impostor {
        idx: usize,
        on: bool,
    },
    /// Impostor `idx` sends what it forged and replays what it captured.
    ImpostorRound {
        idx: usize,
    },
}

impl Ev {
    fn tag(&self) -> u64 {
        match self {
            Ev::Deliver { .. } => 1,
            Ev::DiskDone { .. } => 2,
            Ev::Timer { .. } => 3,
            Ev::Produce { .. } => 4,
            Ev::Crash { .. } => 5,
            Ev::Restart { .. } => 6,
            Ev::ClockJump { .. } => 7,
            Ev::DiskFull { .. } => 8,
            Ev::Partition { .. } => 9,
            Ev::NtpSync { .. } => 10,
            Ev::Sample => 11,
            Ev::Settle => 12,
            Ev::DiskCorrupt { .. } => 13,
            Ev::CorruptTail { .. } => 14,
            Ev::Impostor { .. } => 15,
            Ev::ImpostorRound { .. } => 16,
        }
    }
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// A node's wall clock: true time plus offset, drift and jumps; or, on a device without
/// an RTC after a restart, time since the restart counted from 1970 until NTP fixes it.
#[derive(Debug)]
struct SimClock {
    offset_ns: i64,
    drift_ppm: f64,
    jumps_ns: i64,
    reset_at: Option<u64>,
}

impl SimClock {
    fn wall_ms(&self, t: u64) -> u64 {
        if let Some(r) = self.reset_at {
            return (t - r) / 1_000_000;
        }
        let drift = (t as f64 * self.drift_ppm / 1e6) as i64;
        let ns = (EPOCH_MS as i64) * 1_000_000 + t as i64 + self.offset_ns + drift + self.jumps_ns;
        (ns.max(0) / 1_000_000) as u64
    }
}

/// An edge's write probe in the settle phase.
#[derive(Clone, Copy)]
struct SettleProbe {
    topic: u16,
    /// The produce in flight or last answered (`None`: not sent yet).
    req: Option<u64>,
    /// Refused for storage that local topics' data holds (see `World::retry_refused_probes`).
    excused: bool,
}

struct PendingProduce {
    workload: usize,
    crc: u32,
    /// A write to a keyed topic with a conflict strategy: its key and operation.
    keyed: Option<(Vec<u8>, Vec<u8>)>,
    /// Which key it wrote (the workload's key number), for keyed topics.
    key: Option<u64>,
    /// Strong writes: the highest sequence of the cluster's stream acknowledged when the
    /// write was invoked (the real-time order check).
    floor: Option<u64>,
    /// The node's wall clock when the produce arrived (the HLC-behind-wall check).
    wall_ms: u64,
}

/// A site cluster: its members (node indexes) and, as a connection would, the member
/// that last sent on the cluster's behalf (where the gateway's answers go).
struct SimCluster {
    name: String,
    members: Vec<usize>,
    route: Option<usize>,
}

/// The site clusters of a scenario, in order of first appearance.
fn clusters_of(s: &Scenario) -> Vec<SimCluster> {
    let mut out: Vec<SimCluster> = Vec::new();
    for (i, n) in s.nodes.iter().enumerate() {
        let Some(name) = &n.cluster else { continue };
        match out.iter_mut().find(|c| &c.name == name) {
            Some(c) => c.members.push(i),
            None => out.push(SimCluster { name: name.clone(), members: vec![i], route: None }),
        }
    }
    out
}

struct SimNode {
    name: String,
    cfg: NodeConfig,
    has_rtc: bool,
    node: Option<Node>,
    incarnation: u64,
    disk: SimDisk,
    disk_rng: SimRng,
    clock: SimClock,
    timer_gen: u64,
    timer_at: Option<u64>,
    same_instant_wakeups: u32,
    pending: BTreeMap<u64, PendingProduce>,
    report: NodeReport,
    /// The largest accounted memory seen after any step.
    peak_memory: u64,
    /// What its disk holds durably, and the promises checked against it.
    durability: NodeDurability,
}

struct Workload {
    node: usize,
    topic: u16,
    interval_ns: f64,
    size: u32,
    keys: Option<u32>,
    from: u64,
    until: u64,
    counter: u64,
    goes_up: bool,
    /// A gateway's workload on a `cloud-to-edge` topic.
    goes_down: bool,
    /// A keyed topic's strategy, and the share of its writes that are deletes.
    merged: Option<(outpost_core::keyed::Strategy, f64)>,
    rng: SimRng,
}

/// One run of a scenario with a seed.
pub struct World<'a> {
    scenario: &'a Scenario,
    seed: u64,
    t: u64,
    next_seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    workloads: Vec<Workload>,
    net: Network,
    net_rng: SimRng,
    fault_rng: SimRng,
    /// Its own stream, so that adding corruption to a world leaves its other draws alone.
    corrupt_rng: SimRng,
    checker: Checker,
    trace_hash: u64,
    trace: Option<&'a mut dyn std::io::Write>,
    next_req: u64,
    settling: bool,
    converged_at: Option<u64>,
    produced: u64,
    max_backlog: u64,
    /// Keys and values of records stored for the first time (`Efficiency`).
    payload_bytes_delivered: u64,
    details: Details,
    end: u64,
    /// Site clusters; cluster `k` is addressed as index `nodes.len() + k`.
    clusters: Vec<SimCluster>,
    /// The value CRCs of every strong write produced (each unique, see `produce`).
    strong_crcs: std::collections::BTreeSet<u32>,
    /// Produces a test made through [`World::probe_produce`], and their answers.
    probes: BTreeMap<u64, Option<Result<ProduceAck, ProduceError>>>,
    /// The settle phase's write probes, once every acknowledged record reached the
    /// gateway: one per edge (see `sample`).
    settle_probes: Option<BTreeMap<usize, SettleProbe>>,
    /// Raft's commit rule on every site member (see `crate::site_checks`).
    commit_rule: CommitRule,
    /// The no-quorum promise of site members, if the scenario has a site.
    quorum: Option<QuorumPromise>,
    /// The last reply a node gave a workload's produce: request and kind ("ok" or the
    /// refusal's name).
    answered: Option<(u64, &'static str)>,
    /// Outputs performed so far (to tell a step that only queued something).
    performed: u64,
    /// Issued timestamps against each node's own wall clock (see `clock_check`).
    hlc_ahead: crate::clock_check::HlcAheadCheck,
    /// The impostor faults, by their order in the file, and whether each is on.
    impostors: Vec<(crate::impostor::Impostor, bool)>,
    /// Every acknowledged write of keyed topics with a conflict strategy (the oracle's).
    keyed: crate::keyed_check::KeyedHistory,
    /// Segments of keyed topics deleted (`KeyedReport::segments_deleted`).
    keyed_segments_deleted: u64,
    /// The keyed workloads' sessions and their reads (`crate::read_check`).
    reads: crate::read_check::KeyedReads,
    /// Strong reads of strong keyed topics, issued and answered (`crate::strong_read_check`).
    strong_reads: crate::strong_read_check::StrongReads,
    /// Its own stream, so that reads leave every other draw alone (a read changes no node).
    reads_rng: SimRng,
}

pub(crate) fn node_config(s: &Scenario, i: usize) -> NodeConfig {
    let spec = &s.nodes[i];
    let role = match spec.role {
        SpecRole::Edge => Role::Edge,
        SpecRole::Gateway => Role::Gateway,
    };
    let per_topic = (spec.storage_bytes / (4 * s.topics.len().max(1) as u64)).max(1 << 20);
    // A keyed state's limits as an operator of a small device sets them (`keyed_state_max`,
    // `keyed_conflict_log_max`): the node keeps storage for two checkpoints of them
    // (`resources::files_reserved`), so at most a thirty-second of storage per keyed topic
    // for the state and a hundred-and-twenty-eighth for its conflict log.
    // (A strong keyed topic never reaches an edge outside its site: it goes up from the
    // site's members only, so it takes no share there. Counted there, it halved the other
    // keyed topic's state on a 4 MiB edge, which filled and refused writes: swarm seed 1598.)
    let held_here = |t: &&crate::scenario::TopicSpec| {
        t.consistency != ConsistencySpec::Strong || spec.cluster.is_some() || spec.role == SpecRole::Gateway
    };
    let keyed_names: BTreeSet<&str> =
        s.topics.iter().filter(|t| t.conflict.is_some()).filter(held_here).map(|t| t.name.as_str()).collect();
    let share = spec.storage_bytes / keyed_names.len().max(1) as u64;
    let mut keyed_limits = outpost_core::config::KeyedTopic::DEFAULT_LIMITS;
    keyed_limits.state_bytes_max = keyed_limits.state_bytes_max.min(share / 32).max(64 << 10);
    keyed_limits.conflict_log_bytes_max = keyed_limits.conflict_log_bytes_max.min(share / 128).max(4 << 10);
    // A member's strong keyed states ride in its site's Raft snapshot, and it plans each
    // about six times over: as `resources::fit_to_budgets` fits them.
    let strong = s.topics.iter().filter(|t| t.conflict.is_some() && t.consistency == ConsistencySpec::Strong).count();
    let mut strong_limits = keyed_limits;
    let per_strong = resources::strong_keyed_state_share(spec.memory_bytes, strong);
    strong_limits.state_bytes_max = strong_limits.state_bytes_max.min(per_strong);
    strong_limits.conflict_log_bytes_max = strong_limits.conflict_log_bytes_max.min(per_strong / 16);
    let topics = s
        .topics
        .iter()
        .map(|t| {
            let sync = match t.sync {
                SpecSync::EdgeToCloud => SyncDirection::EdgeToCloud,
                SpecSync::CloudToEdge => SyncDirection::CloudToEdge,
                SpecSync::Bidirectional => SyncDirection::Bidirectional,
                SpecSync::Local => SyncDirection::Local,
            };
            let mut c = TopicConfig::new(&t.name, sync);
            c.priority = t.priority;
            c.eviction = match t.eviction {
                EvictionSpec::Keep => Eviction::Keep,
                EvictionSpec::Oldest => Eviction::Oldest,
                EvictionSpec::Priority => Eviction::Priority,
                EvictionSpec::Lru => Eviction::Lru,
                EvictionSpec::Compact => Eviction::Compact,
            };
            c.retention_bytes = t.retention_bytes.unwrap_or(c.retention_bytes).min(per_topic);
            c.retention_age = t.retention_age;
            c.both_ways = t.both_ways;
            c.placement = t.placement.clone();
            c.keyed = t.conflict.map(|k| outpost_core::config::KeyedTopic {
                strategy: k,
                limits: if t.consistency == ConsistencySpec::Strong && spec.cluster.is_some() {
                    strong_limits
                } else {
                    keyed_limits
                },
                merge: t.merge.clone(),
            });
            // At the gateway (and on an edge outside any cluster) it is an ordinary topic.
            if t.consistency == ConsistencySpec::Strong && spec.cluster.is_some() {
                c.consistency = Consistency::Strong;
            }
            c
        })
        .collect();
    let mut cfg = NodeConfig::new(NodeId(i as u64 + 1), role, topics);
    if let Some(name) = &spec.cluster {
        let clusters = clusters_of(s);
        let k = clusters.iter().position(|c| &c.name == name).expect("the node's own cluster");
        let members = clusters[k].members.iter().map(|&j| NodeId(j as u64 + 1)).collect();
        cfg.cluster = Some(ClusterConfig::new(name, NodeId((s.nodes.len() + k) as u64 + 1), members));
    }
    // A gateway takes other nodes' streams from the middle tiers below it.
    cfg.gateway.relays = (s.nodes.iter().enumerate())
        .filter(|(_, n)| n.role == SpecRole::Gateway && n.upstream == Some(i))
        .map(|(j, _)| NodeId(j as u64 + 1))
        .collect();
    resources::fit_to_budgets(&mut cfg, spec.memory_bytes, spec.storage_bytes);
    // The operator's limits beat the fit's, as a file's do.
    for t in cfg.topics.iter_mut() {
        let strong = t.is_strong();
        if let Some(k) = t.keyed.as_mut() {
            k.limits = if strong { strong_limits } else { keyed_limits };
        }
    }
    resources::fit_write_buffer_to_storage(&mut cfg);
    cfg.upstream = s.upstream_of(i).map(|j| NodeId(j as u64 + 1));
    cfg.zone = spec.zone.clone();
    cfg.upstream_zone = s.upstream_of(i).and_then(|j| s.nodes[j].zone.clone());
    cfg.gateway.up_retention = spec.up_retention;
    // A gateway sends a topic that goes down to the peers below it on the way to an edge
    // it names (to every edge, if it names none), and lists them, as an operator lists
    // the edges that hold tokens, so that it may delete what all of them acknowledged.
    for (c, t) in cfg.topics.iter_mut().zip(&s.topics) {
        if role != Role::Gateway || !c.sync.goes_down() {
            continue;
        }
        // (Never a peer outside a classified topic's zones: it may not hold it.)
        let on_the_way = |p: usize| {
            let placed = t.placement.as_ref().is_none_or(|z| z.allows(s.nodes[p].zone.as_deref()));
            placed
                && t.subscribers
                    .as_ref()
                    .is_none_or(|edges| edges.iter().any(|&e| e == p || s.path_up_of(e).contains(&p)))
        };
        let peers = (0..s.nodes.len()).filter(|&p| s.upstream_of(p) == Some(i) && on_the_way(p));
        c.subscribers = Some(peers.map(|p| NodeId(p as u64 + 1)).collect());
    }
    cfg
}

/// A refusal's text was made in the node's heap scope and is dropped out here, in the
/// simulator's: it becomes the simulator's block, or the node's real heap would seem to
/// keep it (a refused produce retried every second grew it by the text each time).
fn adopt_refusal_text(result: &mut Result<outpost_core::io::ProduceAck, ProduceError>) {
    let text = match result {
        Err(
            ProduceError::Invalid(text)
            | ProduceError::SiteUnavailable { reason: text }
            | ProduceError::Storage(outpost_core::io::DiskError::Io(text)),
        ) => text,
        _ => return,
    };
    let bytes = std::mem::take(text).into_bytes();
    heap::adopt(&bytes, 0);
    *text = String::from_utf8(bytes).expect("it was a String");
}

/// How often an impostor sends what it forged and replays what it captured.
const IMPOSTOR_ROUND_NS: u64 = 1_000_000_000;

/// Refuses what the simulator cannot run yet, rather than passing it silently.
fn check_supported(s: &Scenario) -> Result<(), Unsupported> {
    let linked = |a: usize, b: usize| s.links.iter().any(|l| (l.a, l.b) == (a, b) || (l.b, l.a) == (a, b));
    for c in clusters_of(s) {
        for &m in &c.members {
            if let Some(&o) = c.members.iter().find(|&&o| o != m && !linked(m, o)) {
                return Err(Unsupported(format!(
                    "cluster {:?}: members {:?} and {:?} have no link; the simulator's members talk directly",
                    c.name, s.nodes[m].id, s.nodes[o].id
                )));
            }
        }
        if c.members.len() > outpost_core::raft::MEMBERS_MAX {
            return Err(Unsupported(format!(
                "cluster {:?} has more than {} members",
                c.name,
                outpost_core::raft::MEMBERS_MAX
            )));
        }
    }
    for f in &s.faults {
        if let FaultSpec::DiskCorrupt { node, .. } | FaultSpec::CorruptTail { node, .. } = f {
            if s.nodes[*node].role == SpecRole::Gateway {
                return Err(Unsupported(format!(
                    "disk-corrupt on gateway {:?}: the simulator does not read a gateway's stored records back, so \
                     corruption there could not be checked; corrupt an edge instead",
                    s.nodes[*node].id
                )));
            }
        }
    }
    for (i, n) in s.nodes.iter().enumerate() {
        let Some(j) = n.upstream else { continue };
        let up = &s.nodes[j];
        match (n.role, up.role) {
            (SpecRole::Edge, SpecRole::Gateway) => {}
            (SpecRole::Gateway, SpecRole::Gateway) => {
                // A middle tier: its chain of upstreams must end at a top gateway.
                let mut at = j;
                for _ in 0..s.nodes.len() {
                    match s.nodes[at].upstream {
                        Some(next) if next == i => {
                            return Err(Unsupported(format!(
                                "gateway {:?}: its chain of upstreams comes back to it; the top gateway has none",
                                n.id
                            )))
                        }
                        Some(next) => at = next,
                        None => break,
                    }
                }
            }
            (SpecRole::Gateway, SpecRole::Edge) => {
                return Err(Unsupported(format!(
                    "gateway {:?} has upstream {:?}, an edge: a gateway forwards to a gateway",
                    n.id, up.id
                )))
            }
            (SpecRole::Edge, SpecRole::Edge) => {
                return Err(Unsupported(format!(
                    "edge {:?} has upstream {:?}, an edge: relaying through an edge is not built yet; name a gateway",
                    n.id, up.id
                )))
            }
        }
        if n.cluster.is_some() {
            return Err(Unsupported(format!(
                "edge {:?} has an upstream and a cluster: a site's stream goes to the first gateway its members link \
                 to; remove upstream",
                n.id
            )));
        }
    }
    for c in clusters_of(s) {
        let up = c.members.first().and_then(|&m| node_config(s, m).upstream).map(|u| u.0 as usize - 1);
        if let Some(u) = up.filter(|&u| s.nodes[u].upstream.is_some()) {
            return Err(Unsupported(format!(
                "cluster {:?} syncs up to {:?}, a middle tier: a site's stream through a relay is not checked yet; \
                 link the cluster to a top gateway",
                c.name, s.nodes[u].id
            )));
        }
    }
    if let Some(t) = s.topics.iter().find(|t| t.sync == SpecSync::Bidirectional) {
        return Err(Unsupported(format!(
            "topic {:?} syncs bidirectional and was not split into its halves (scenario::split_both_ways)",
            t.name
        )));
    }
    for (i, n) in s.nodes.iter().enumerate() {
        if let Err(e) = Node::check_config(&node_config(s, i)) {
            return Err(Unsupported(format!("node {:?} cannot run with its configuration and budgets: {e}", n.id)));
        }
        let up = s.topics.iter().any(topic_goes_up);
        if n.role == SpecRole::Edge && up && node_config(s, i).upstream.is_none() {
            return Err(Unsupported(format!("edge {:?} has no link to a gateway", n.id)));
        }
    }
    Ok(())
}

/// A CAN-telemetry-like payload: a fixed frame layout with a few changing fields, so it
/// compresses about as well as real telemetry does (a few times, not hundreds).
fn payload(workload: usize, counter: u64, size: u32) -> Vec<u8> {
    const TEMPLATE: &[u8] = b"can id=0x1A3 dlc=8 speed_kmh=000.0 rpm=0000 coolant_c=000 throttle=000 gear=0 ";
    let mut v = Vec::with_capacity(size as usize);
    v.extend_from_slice(&counter.to_le_bytes());
    v.extend_from_slice(&(workload as u32).to_le_bytes());
    let noise = mix((counter / 8) ^ ((workload as u64) << 40));
    let mut i = 0;
    while v.len() < size as usize {
        let b = TEMPLATE[i % TEMPLATE.len()];
        v.push(if b == b'0' { b'0' + ((noise >> ((i * 3) % 60)) & 7) as u8 } else { b });
        i += 1;
    }
    v.truncate(size as usize);
    v
}

impl<'a> World<'a> {
    pub fn new(
        scenario: &'a Scenario,
        seed: u64,
        trace: Option<&'a mut dyn std::io::Write>,
    ) -> Result<World<'a>, Unsupported> {
        check_supported(scenario)?;
        heap::new_world();
        let mut clock_rng = stream(seed, "clocks");
        let nodes = scenario
            .nodes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let c = &spec.device.clock;
                let max_off = c.max_offset.as_nanos() as i64;
                let offset_ns = if max_off == 0 { 0 } else { clock_rng.gen_range(-max_off..=max_off) };
                let ppm = f64::from(c.max_drift_ppm);
                let drift_ppm = if ppm == 0.0 { 0.0 } else { clock_rng.gen_range(-ppm..=ppm) };
                let cfg = node_config(scenario, i);
                // Logs whose records may be written again at the same sequences: a strong
                // topic's (re-derived from Raft) and an edge's replica of its gateway's
                // stream (a cut tail is sent again).
                let edge = cfg.role == Role::Edge;
                let strong = cfg.topics.iter().map(|t| t.is_strong() || (edge && t.sync.goes_down())).collect();
                SimNode {
                    name: spec.id.clone(),
                    durability: NodeDurability::new(strong),
                    cfg,
                    has_rtc: c.has_rtc,
                    node: None,
                    incarnation: 0,
                    disk: SimDisk::new(spec.device.disk, spec.storage_bytes.min(spec.device.storage_bytes)),
                    disk_rng: stream(seed, &format!("disk/{i}")),
                    clock: SimClock { offset_ns, drift_ppm, jumps_ns: 0, reset_at: None },
                    timer_gen: 0,
                    timer_at: None,
                    same_instant_wakeups: 0,
                    pending: BTreeMap::new(),
                    report: NodeReport::default(),
                    peak_memory: 0,
                }
            })
            .collect();
        let mut net = Network::default();
        for l in &scenario.links {
            let outages = l.outages.iter().map(|w| (w.at.as_nanos(), w.at.as_nanos() + w.length.as_nanos())).collect();
            net.add_link(l.a, l.b, l.net, outages);
        }
        let workloads = scenario
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| Workload {
                node: w.node,
                topic: w.topic as u16,
                interval_ns: 1e9 / w.rate,
                size: w.size,
                keys: w.keys,
                from: w.from.as_nanos(),
                until: w.until.as_nanos().min(scenario.duration.as_nanos()),
                counter: 0,
                goes_up: topic_goes_up(&scenario.topics[w.topic]),
                goes_down: topic_goes_down(&scenario.topics[w.topic]),
                merged: scenario.topics[w.topic].conflict.map(|c| (c, w.deletes)),
                rng: stream(seed, &format!("workload/{i}")),
            })
            .collect();
        let end = scenario.duration.as_nanos() + scenario.settle.as_nanos();
        let mut w = World {
            scenario,
            seed,
            t: 0,
            next_seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            workloads,
            net,
            net_rng: stream(seed, "network"),
            fault_rng: stream(seed, "faults"),
            corrupt_rng: stream(seed, "corruption"),
            checker: Checker::default(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
            trace,
            next_req: 0,
            settling: false,
            converged_at: None,
            produced: 0,
            max_backlog: 0,
            payload_bytes_delivered: 0,
            details: Details::default(),
            end,
            clusters: clusters_of(scenario),
            probes: BTreeMap::new(),
            settle_probes: None,
            strong_crcs: std::collections::BTreeSet::new(),
            commit_rule: CommitRule::default(),
            quorum: None,
            answered: None,
            performed: 0,
            hlc_ahead: crate::clock_check::HlcAheadCheck::default(),
            impostors: Vec::new(),
            keyed: Default::default(),
            keyed_segments_deleted: 0,
            reads: Default::default(),
            strong_reads: Default::default(),
            reads_rng: stream(seed, "keyed-reads"),
        };
        let mut groups = BTreeMap::new();
        let mut detector = None;
        for c in &w.clusters {
            for &m in &c.members {
                let peers = c.members.iter().copied().filter(|&o| o != m).collect();
                groups.insert(m, (peers, c.members.len()));
                detector = w.nodes[m].cfg.cluster.as_ref().map(|k| k.detector);
            }
        }
        w.quorum = detector.map(|d| QuorumPromise::new(d, groups));
        for (k, c) in w.clusters.iter().enumerate() {
            let origin = w.nodes.len() + k;
            for t in scenario.topics.iter().enumerate().filter(|(_, t)| t.consistency == ConsistencySpec::Strong) {
                w.checker.add_strong_stream((origin, t.0 as u16), t.1.conflict.is_some());
            }
            debug_assert!(!c.members.is_empty());
        }
        // A top gateway's `cloud-to-edge` topics go to every node below it: the edges that
        // sync up to it and the middle tiers between, which relay them.
        for (g, _) in w.nodes.iter().enumerate().filter(|(_, n)| n.cfg.role == Role::Gateway) {
            if w.nodes[g].cfg.upstream.is_some() {
                continue;
            }
            let replicas: Vec<usize> = (0..w.nodes.len())
                .filter(|&k| k != g && w.nodes[k].cfg.upstream.is_some() && w.top_of(k) == g)
                .collect();
            for (t, spec) in scenario.topics.iter().enumerate().filter(|(_, t)| topic_goes_down(t)) {
                // Only the subscribed edges and the middle tiers on their way, if it names them,
                // and of a classified topic only those in its zones (the loader refuses a
                // subscriber whose way down leaves them; a tier with none below may).
                let on_the_way = |k: usize| {
                    let zone = scenario.nodes[k].zone.as_deref();
                    spec.placement.as_ref().is_none_or(|p| p.allows(zone))
                        && spec
                            .subscribers
                            .as_ref()
                            .is_none_or(|edges| edges.iter().any(|&e| e == k || w.path_up(e).contains(&k)))
                };
                let replicas: Vec<usize> = replicas.iter().copied().filter(|&k| on_the_way(k)).collect();
                w.checker.add_down_stream((g, t as u16), replicas, spec.retention_age.map(|a| a.0));
            }
        }
        w.schedule_start();
        Ok(w)
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq, ev }));
    }

    fn schedule_start(&mut self) {
        for i in 0..self.nodes.len() {
            self.schedule(0, Ev::Restart { node: i });
        }
        for i in 0..self.workloads.len() {
            let from = self.workloads[i].from;
            self.schedule(from, Ev::Produce { workload: i });
        }
        for f in self.scenario.faults.clone() {
            match f {
                FaultSpec::Crash { node, at, restart_after } => {
                    self.schedule(
                        at.as_nanos(),
                        Ev::Crash { node, restart_after: restart_after.map(|d| d.as_nanos()) },
                    );
                }
                FaultSpec::Partition { groups, at, length } => {
                    let idx = self.net.add_partition(&groups);
                    self.schedule(at.as_nanos(), Ev::Partition { idx, on: true });
                    self.schedule(at.as_nanos() + length.as_nanos(), Ev::Partition { idx, on: false });
                }
                FaultSpec::ClockJump { node, at, by_nanos } => {
                    self.schedule(at.as_nanos(), Ev::ClockJump { node, by: by_nanos })
                }
                FaultSpec::DiskFull { node, at, length } => {
                    self.schedule(at.as_nanos(), Ev::DiskFull { node, on: true });
                    self.schedule(at.as_nanos() + length.as_nanos(), Ev::DiskFull { node, on: false });
                }
                FaultSpec::DiskCorrupt { node, at } => self.schedule(at.as_nanos(), Ev::DiskCorrupt { node }),
                FaultSpec::CorruptTail { node, at, restart_after } => self.schedule(
                    at.as_nanos(),
                    Ev::CorruptTail { node, restart_after: restart_after.map(|d| d.as_nanos()) },
                ),
                FaultSpec::Impostor { node, at, length, must_try } => {
                    let Some(gateway) = self.scenario.upstream_of(node) else { continue };
                    let idx = self.impostors.len();
                    self.impostors.push((crate::impostor::Impostor::new(node, gateway, must_try), false));
                    self.schedule(at.as_nanos(), Ev::Impostor { idx, on: true });
                    self.schedule(at.as_nanos() + length.as_nanos(), Ev::Impostor { idx, on: false });
                }
            }
        }
        self.schedule(SAMPLE_NS, Ev::Sample);
        self.schedule(self.scenario.duration.as_nanos(), Ev::Settle);
    }

    fn hash(&mut self, w: u64) {
        self.trace_hash = (self.trace_hash ^ w).wrapping_mul(0x100_0000_01b3);
        self.trace_hash ^= self.trace_hash >> 29;
    }

    fn now(&self, i: usize) -> Now {
        Now { mono: Instant(self.t), wall_ms: self.nodes[i].clock.wall_ms(self.t) }
    }

    /// Runs to the end and returns the report (with `wall_secs` left at zero: the
    /// simulator reads no clock; the runner measures it).
    pub fn run(mut self) -> Report {
        self.run_until(u64::MAX);
        self.finish()
    }

    /// Runs the events due up to simulated time `until` (nanoseconds), or to the end.
    pub fn run_until(&mut self, until: u64) {
        while let Some(Reverse(s)) = self.queue.peek() {
            if s.at > until {
                return;
            }
            let Some(Reverse(s)) = self.queue.pop() else { return };
            if s.at > self.end || self.converged_at.is_some() {
                self.queue.clear();
                return;
            }
            debug_assert!(s.at >= self.t, "time never goes backwards");
            self.t = s.at;
            self.details.events += 1;
            self.hash(s.at);
            self.hash(s.ev.tag());
            self.step(s.ev);
        }
    }

    /// The violations found so far.
    pub fn violations(&self) -> &[crate::checker::Violation] {
        &self.checker.violations
    }

    /// Simulated time now, in nanoseconds.
    pub fn now_nanos(&self) -> u64 {
        self.t
    }

    /// Node `name`, if it is running (for tests that look inside).
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)?.node.as_ref()
    }

    /// The identity of site cluster `name`'s stream at the gateway.
    pub fn cluster_id(&self, name: &str) -> Option<NodeId> {
        let k = self.clusters.iter().position(|c| c.name == name)?;
        Some(NodeId((self.nodes.len() + k) as u64 + 1))
    }

    /// Crashes node `name` now, as a `crash` fault would (for tests that pick the moment).
    pub fn crash_now(&mut self, name: &str, restart_after_nanos: Option<u64>) {
        let i = self.nodes.iter().position(|n| n.name == name).expect("a node of the scenario");
        self.crash(i, restart_after_nanos);
    }

    /// A test's produce of `value` to `topic` on node `name`, now; its answer appears in
    /// [`World::probe_reply`] once the node gives it. Not counted in the report.
    pub fn probe_produce(&mut self, name: &str, topic: &str, value: Vec<u8>) -> u64 {
        let i = self.nodes.iter().position(|n| n.name == name).expect("a node of the scenario");
        let role = self.scenario.nodes[i].role;
        let t = crate::scenario::topic_written_by(&self.scenario.topics, topic, role).expect("a topic of the scenario");
        self.probe(i, t, value)
    }

    fn probe(&mut self, i: usize, t: usize, value: Vec<u8>) -> u64 {
        let req = self.next_req;
        self.next_req += 1;
        self.probes.insert(req, None);
        let now = self.now(i);
        let node = self.nodes[i].node.as_mut().expect("the node is running");
        heap::adopt(&value, heap::owner_of(i));
        let scope = heap::Scope::enter(heap::owner_of(i));
        node.handle(now, Input::Produce { req: ReqId(req), topic: TopicIdx(t as u16), key: None, value });
        drop(scope);
        self.drain(i);
        req
    }

    pub fn probe_reply(&self, req: u64) -> Option<&Result<ProduceAck, ProduceError>> {
        self.probes.get(&req)?.as_ref()
    }

    /// Takes node `name` out of the world, as if it had stopped between two steps (for
    /// tests that measure what it holds). The world goes on without it.
    pub fn take_node(&mut self, name: &str) -> Option<Node> {
        let i = self.nodes.iter().position(|n| n.name == name)?;
        self.commit_rule.forget(i);
        if let Some(q) = self.quorum.as_mut() {
            q.stopped(i);
        }
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        n.timer_gen += 1;
        n.timer_at = None;
        n.node.take()
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { to, from, link_from, bytes } => {
                if !self.net.is_up(self.t, link_from, to) {
                    self.net.stats.dropped_down += 1;
                    return;
                }
                if self.nodes[to].node.is_none() {
                    return;
                }
                self.net.stats.delivered += 1;
                self.net.stats.bytes_delivered += bytes.len() as u64;
                self.hash(crc32c::crc32c(&bytes).into());
                let now = self.now(to);
                let node = self.nodes[to].node.as_mut().expect("checked above");
                heap::adopt(&bytes, heap::owner_of(to));
                let scope = heap::Scope::enter(heap::owner_of(to));
                node.handle(now, Input::Message { from: NodeId(from as u64 + 1), bytes });
                drop(scope);
                if let Some(q) = self.quorum.as_mut() {
                    q.heard(to, from, self.t);
                }
                self.drain(to);
            }
            Ev::DiskDone { node: i, incarnation } => {
                let n = &mut self.nodes[i];
                if n.incarnation != incarnation || n.node.is_none() {
                    return;
                }
                let (id, result, next) = n.disk.complete(&mut n.disk_rng);
                if let Some(dt) = next {
                    self.schedule(self.t + dt, Ev::DiskDone { node: i, incarnation });
                }
                self.disk_changed(i);
                self.hash(id.0);
                let now = self.now(i);
                let node = self.nodes[i].node.as_mut().expect("checked above");
                if let Ok(outpost_core::io::DiskResponse::Read(bytes)) = &result {
                    heap::adopt(bytes, heap::owner_of(i));
                }
                let scope = heap::Scope::enter(heap::owner_of(i));
                node.handle(now, Input::DiskDone { id, result });
                drop(scope);
                self.drain(i);
            }
            Ev::Timer { node: i, gen } => {
                if self.nodes[i].timer_gen != gen {
                    return;
                }
                self.nodes[i].timer_at = None;
                let now = self.now(i);
                let Some(node) = self.nodes[i].node.as_mut() else {
                    return;
                };
                let scope = heap::Scope::enter(heap::owner_of(i));
                node.handle_timeout(now);
                drop(scope);
                self.drain(i);
            }
            Ev::Produce { workload } => self.produce(workload),
            Ev::Crash { node, restart_after } => self.crash(node, restart_after),
            Ev::Restart { node } => self.restart(node),
            Ev::ClockJump { node, by } => {
                let c = &mut self.nodes[node].clock;
                let before = c.wall_ms(self.t);
                c.jumps_ns += by;
                if by < 0 {
                    self.hlc_ahead.on_wall_back(node, before);
                }
                let name = self.nodes[node].name.clone();
                self.log(format_args!("clock of {name} jumps by {by} ns"));
            }
            Ev::DiskFull { node, on } => {
                self.nodes[node].disk.full = on && !self.settling;
                let name = self.nodes[node].name.clone();
                self.log(format_args!("disk of {name} full: {on}"));
            }
            Ev::Partition { idx, on } => self.net.set_partition(idx, on),
            Ev::DiskCorrupt { node } => {
                let n = &mut self.nodes[node];
                let name = n.name.clone();
                match n.disk.corrupt(&mut self.corrupt_rng) {
                    Some(c) => {
                        n.report.corruptions += 1;
                        n.durability.on_corruption(&c);
                        for &(from, to) in &c.destroyed {
                            self.checker.on_destroyed(node, c.topic.0, from, to);
                        }
                        self.log(format_args!(
                            "{name}: {} bits flipped in block {} of {}, destroying offsets {:?}",
                            c.bits, c.block_at, c.file, c.destroyed
                        ));
                    }
                    None => self.log(format_args!("{name}: disk-corrupt found no durable segment bytes")),
                }
            }
            Ev::CorruptTail { node, restart_after } => self.corrupt_tail(node, restart_after),
            Ev::NtpSync { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation == incarnation {
                    n.clock.reset_at = None;
                }
            }
            Ev::Sample => self.sample(),
            Ev::Impostor { idx, on } => {
                self.impostors[idx].1 = on;
                if on {
                    self.schedule(self.t + IMPOSTOR_ROUND_NS, Ev::ImpostorRound { idx });
                }
            }
            Ev::ImpostorRound { idx } => self.impostor_round(idx),
            Ev::Settle => {
                self.settling = true;
                self.net.healed = true;
                for i in 0..self.nodes.len() {
                    self.nodes[i].disk.full = false;
                    if self.nodes[i].node.is_none() {
                        self.restart(i);
                    }
                }
                self.log(format_args!("settle: faults healed, producers stopped"));
                self.sample();
            }
        }
    }

    /// One time in four a keyed workload writes, its session reads first, at a running
    /// node drawn from those holding the topic, causally or within a staleness bound; an
    /// answer is checked against the history (`crate::read_check`). Of a strong keyed
    /// topic, half the reads are strong reads of the key about to be written, at a running
    /// member of the writing site (`crate::strong_read_check`).
    fn session_read(&mut self, wi: usize, key: Option<&[u8]>) {
        if !self.reads_rng.gen_bool(0.25) {
            return;
        }
        let topic = self.workloads[wi].topic;
        if let (Some(stream), Some(key)) = (self.strong_stream(self.workloads[wi].node, topic), key) {
            if self.reads_rng.gen_bool(0.5) {
                return self.strong_read(stream, key.to_vec());
            }
        }
        let name = &self.scenario.topics[topic as usize].name;
        let holds = |n: &SimNode| n.node.as_ref().is_some_and(|x| x.is_running() && x.keyed(TopicIdx(topic)).is_some());
        let holders: Vec<usize> = (0..self.nodes.len()).filter(|&n| holds(&self.nodes[n])).collect();
        let Some(plan) = crate::read_check::KeyedReads::plan(&mut self.reads_rng, &holders) else { return };
        if let Some((origin, _)) = self.strong_stream(plan.node, topic) {
            // A member holds what its state says it merged of the cluster's stream (it
            // stores no `Stored` events of it); whether the state is that prefix's is
            // judged at the end (`note_members_holdings`).
            let held = self.member_prefix(plan.node, topic as usize, origin).unwrap_or(0);
            self.keyed.on_stored(plan.node, topic as usize, origin, 0..held);
        }
        let wall_ms = self.nodes[plan.node].clock.wall_ms(self.t);
        let node = self.nodes[plan.node].node.as_ref().expect("a holder runs");
        let decide = |r: outpost_core::keyed_reads::ReadConsistency<'_>| node.keyed_read(TopicIdx(topic), r, wall_ms);
        if let Some(stamp) = self.reads.read(wi, name, &plan, decide) {
            self.reads.check(&self.keyed, self.scenario, wi, name, &plan, stamp);
        }
    }

    /// A strong read of `key` of the cluster's stream `(origin, topic)` at one of its
    /// running members.
    fn strong_read(&mut self, (origin, topic): (usize, u16), key: Vec<u8>) {
        let k = origin - self.nodes.len();
        let running: Vec<usize> = (self.clusters[k].members.iter().copied())
            .filter(|&m| self.nodes[m].node.as_ref().is_some_and(Node::is_running))
            .collect();
        let Some(&m) = running.get(self.reads_rng.gen_range(0..running.len().max(1))) else { return };
        let req = self.next_req;
        self.next_req += 1;
        self.strong_reads.issue(&self.keyed, req, m, (topic as usize, origin), key);
        let now = self.now(m);
        let node = self.nodes[m].node.as_mut().expect("running");
        node.handle(now, Input::StrongRead { req: ReqId(req), topic: TopicIdx(topic) });
        self.drain(m);
    }

    fn log(&mut self, args: fmt::Arguments<'_>) {
        let t = self.t as f64 / 1e9;
        if let Some(w) = self.trace.as_mut() {
            // Tracing is best effort: a closed pipe must not change the run.
            let _ = writeln!(w, "{t:.6} {args}");
        }
    }

    fn produce(&mut self, wi: usize) {
        let t = self.t;
        let w = &mut self.workloads[wi];
        if t >= w.until || self.settling {
            return;
        }
        let jitter = w.rng.gen_range(0.95..1.05);
        let next = t + (w.interval_ns * jitter).max(1.0) as u64;
        let (i, topic, size, counter) = (w.node, w.topic, w.size, w.counter);
        let key_no = w.keys.map(|k| counter % u64::from(k.max(1)));
        let key = key_no.map(|k| format!("k{k}").into_bytes());
        w.counter += 1;
        self.schedule(next, Ev::Produce { workload: wi });
        if self.workloads[wi].merged.is_some() {
            self.session_read(wi, key.as_deref());
        }
        if self.nodes[i].node.is_none() {
            self.details.produced_while_down += 1;
            return;
        }
        let mut value = payload(wi, counter, size);
        let mut keyed = None;
        if let (Some((strategy, deletes)), Some(k)) = (self.workloads[wi].merged, &key) {
            // The operation, made by the node from what it has seen of the key.
            let element = format!("e{}", counter % 16).into_bytes();
            let kind = crate::keyed_check::draw_op(strategy, &mut self.workloads[wi].rng, deletes, &value, &element);
            let node = self.nodes[i].node.as_ref().expect("checked above");
            value = node.keyed_prepare(TopicIdx(topic), k, kind).expect("the workload writes its topic's kind");
            keyed = Some((k.clone(), value.clone()));
        }
        let mut crc = crc32c::crc32c(&value);
        if self.strong_stream(i, topic).is_some() && keyed.is_none() {
            // The checker knows a strong write at the gateway by its value's CRC (a record
            // there carries nothing else of its writer), so every strong write of a run
            // gets a CRC of its own: on a collision, the payload's last byte changes until
            // it is unique (swarm seeds 581 and 1658 had 16 false "stored at two
            // sequences" from CRC32C collisions among 70,000 writes).
            while !self.strong_crcs.insert(crc) {
                let last = value.last_mut().expect("payloads are at least one byte");
                *last = last.wrapping_add(1);
                crc = crc32c::crc32c(&value);
            }
        }
        let req = self.next_req;
        self.next_req += 1;
        self.produced += 1;
        let floor = self.strong_stream(i, topic).and_then(|s| self.checker.strong_max_acked(s));
        let wall_ms = self.nodes[i].clock.wall_ms(self.t);
        self.nodes[i].pending.insert(req, PendingProduce { workload: wi, crc, keyed, key: key_no, floor, wall_ms });
        let now = self.now(i);
        let cut_off = match (&self.quorum, self.strong_stream(i, topic)) {
            (Some(q), Some(_)) => q.cut_off(i, self.t),
            _ => None,
        };
        let before = self.produce_heap(i);
        let node = self.nodes[i].node.as_mut().expect("checked above");
        let owner = heap::owner_of(i);
        heap::adopt(&value, owner);
        if let Some(k) = &key {
            heap::adopt(k, owner);
        }
        let scope = heap::Scope::enter(owner);
        node.handle(now, Input::Produce { req: ReqId(req), topic: TopicIdx(topic), key, value });
        drop(scope);
        self.drain(i);
        self.check_produce_heap(i, before);
        if let Some(c) = cut_off {
            self.check_no_quorum(i, req, c);
        }
    }

    /// A `corrupt-tail` fault: the newest durable frames of one eventual topic's newest
    /// segment are destroyed, and the node loses power. Nothing happens to a node that is
    /// down already.
    fn corrupt_tail(&mut self, i: usize, restart_after: Option<u64>) {
        if self.nodes[i].node.is_none() {
            return;
        }
        let topics = &self.scenario.topics;
        let n = &mut self.nodes[i];
        let name = n.name.clone();
        match n
            .disk
            .corrupt_tail(&mut self.corrupt_rng, |t| topics[t.0 as usize].consistency != ConsistencySpec::Strong)
        {
            Some(c) => {
                n.report.corruptions += 1;
                n.durability.on_corruption(&c);
                for &(from, to) in &c.destroyed {
                    self.checker.on_destroyed(i, c.topic.0, from, to);
                }
                self.log(format_args!(
                    "{name}: {} bits flipped in the newest frames of {}, destroying offsets {:?}",
                    c.bits, c.file, c.destroyed
                ));
            }
            None => self.log(format_args!("{name}: corrupt-tail found no durable frames")),
        }
        self.crash(i, restart_after);
    }

    fn crash(&mut self, i: usize, restart_after: Option<u64>) {
        let n = &mut self.nodes[i];
        let Some(dead) = n.node.take() else { return };
        self.commit_rule.forget(i);
        if let Some(q) = self.quorum.as_mut() {
            q.stopped(i);
        }
        let n = &mut self.nodes[i];
        add_stats(&mut n.report, &dead);
        n.incarnation += 1;
        n.timer_gen += 1;
        n.timer_at = None;
        n.report.crashes += 1;
        self.details.unknown_fate_at_crash += n.pending.len() as u64;
        self.strong_reads.on_crash(i);
        for p in std::mem::take(&mut n.pending).into_values() {
            if let Some((key, _)) = p.keyed {
                let topic = self.workloads[p.workload].topic as usize;
                self.keyed.on_unknown_fate(&self.scenario.topics[topic].name, key);
            }
        }
        let damage = n.disk.crash(&mut self.fault_rng);
        let name = n.name.clone();
        self.disk_changed(i);
        self.nodes[i].durability.on_crash();
        self.hash(damage.bytes_lost);
        self.log(format_args!("crash {name}: {damage:?}"));
        if let Some(d) = restart_after {
            self.schedule(self.t + d, Ev::Restart { node: i });
        }
    }

    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.node.is_some() {
            return;
        }
        let inc = n.incarnation;
        if !n.has_rtc && inc > 0 {
            // What the clock would read with an RTC: at or above every earlier reading.
            let before = SimClock { reset_at: None, ..n.clock }.wall_ms(self.t);
            n.clock.reset_at = Some(self.t);
            self.schedule(self.t + NTP_DELAY_NS, Ev::NtpSync { node: i, incarnation: inc });
            self.hlc_ahead.on_wall_back(i, before);
        }
        let seed = NodeSeed(mix(self.seed ^ mix(i as u64) ^ mix(inc << 32)));
        let now = self.now(i);
        let n = &mut self.nodes[i];
        let cfg = n.cfg.clone();
        let scope = heap::Scope::enter(heap::owner_of(i));
        n.node = Some(Node::new(cfg, seed, now));
        drop(scope);
        let name = n.name.clone();
        self.log(format_args!("start {name}"));
        self.drain(i);
    }

    /// The driver's rule: perform every output, then re-arm the timer.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].node.as_mut().and_then(Node::poll_output) {
            self.perform(i, out);
        }
        self.check_budgets(i);
        self.check_site(i);
        self.rearm(i);
    }

    /// Raft's commit rule after every step of a site member, and the start of its site
    /// for the no-quorum promise (see `crate::site_checks`).
    fn check_site(&mut self, i: usize) {
        let Some(site) = self.nodes[i].node.as_ref().filter(|n| n.is_running()).and_then(Node::site) else {
            return;
        };
        let raft = site.raft();
        let leader = raft.role() == outpost_core::raft::Role::Leader;
        let commit = raft.commit_index();
        let commit_term = raft.entry(commit).map(|e| e.term);
        let problem = self.commit_rule.observe(i, leader, raft.term(), commit, commit_term);
        if let Some(q) = self.quorum.as_mut().filter(|q| !q.running(i)) {
            q.started(i, self.t);
        }
        if let Some(detail) = problem {
            let name = self.nodes[i].name.clone();
            self.checker.on_violation(self.t, "raft-commit-rule", format!("member {name}: {detail}"));
        }
    }

    /// Before a produce on node `i`, for [`World::check_produce_heap`]: its real heap, its
    /// held accounting and the outputs performed so far (`None`: not measured).
    fn produce_heap(&self, i: usize) -> Option<(i64, u64, u64)> {
        let n = &self.nodes[i];
        let node = n.node.as_ref().filter(|_| heap::installed() && n.cfg.cluster.is_none())?;
        Some((heap::live(heap::owner_of(i)), node.memory().held(), self.performed))
    }

    /// The produce path's memory, exactly: a produce that only queued its record (the step
    /// performed no output: no reply, no disk request) grew the node's real heap (the
    /// record's key and value, adopted, and any slot it needed) by no more than it grew
    /// the node's held accounting. Measured when written: zero difference in every one of
    /// 637,618 such steps of 30 swarm worlds, so no tolerance. Site members are left out
    /// (see `check_budgets`).
    fn check_produce_heap(&mut self, i: usize, before: Option<(i64, u64, u64)>) {
        let Some((real, held, performed)) = before else { return };
        let Some(node) = self.nodes[i].node.as_ref().filter(|_| self.performed == performed) else { return };
        let grew = heap::live(heap::owner_of(i)) - real;
        let accounted = node.memory().held() as i64 - held as i64;
        if grew > accounted {
            let name = self.nodes[i].name.clone();
            self.checker.on_budget_violation(
                self.t,
                &name,
                format!("a produce queued in the produce buffer grew the real heap by {grew} B but the accounting by {accounted} B"),
            );
        }
    }

    /// The no-quorum promise: a strong write on member `i`, which `cut_off` says cannot
    /// reach a majority, was refused with `NoQuorum` in the step that received it.
    fn check_no_quorum(&mut self, i: usize, req: u64, cut_off: String) {
        let answer = self.answered.filter(|&(r, _)| r == req).map(|(_, kind)| kind);
        // Refusals a node gives before it asks its site at all.
        const BEFORE_THE_SITE: [&str; 4] = ["no_quorum", "recovering", "storage", "too_large"];
        if answer.is_some_and(|k| BEFORE_THE_SITE.contains(&k)) {
            return;
        }
        let name = self.nodes[i].name.clone();
        let what = match answer {
            Some(kind) => format!("answered {kind}"),
            None => "not answered in the same step (forwarded or proposed)".into(),
        };
        self.checker.on_violation(
            self.t,
            "no-quorum",
            format!(
                "member {name} {cut_off}, yet a strong write there was {what} instead of refused with NoQuorum at once"
            ),
        );
    }

    /// Guarantee 8 after every step: the node's accounted memory within its limit and
    /// every part within its planned maximum, and its accounted storage within its limit.
    fn check_budgets(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let Some(node) = n.node.as_ref() else { return };
        let memory = node.memory();
        let total = memory.total();
        n.peak_memory = n.peak_memory.max(total);
        let limit = n.cfg.resources.memory_bytes_max;
        let storage = node.storage_used() + node.storage_reserved();
        let storage_limit = n.cfg.resources.storage_bytes_max;
        let mut problems = Vec::new();
        if total > limit {
            problems.push(format!("accounted memory {total} B is above the limit {limit} B: {memory:?}"));
        }
        if let Some((part, used, max)) = memory.over(node.memory_plan()) {
            problems.push(format!("memory part {} holds {used} B, above its maximum {max} B", part.name()));
        }
        // Site members are left out: their Raft state is accounted by estimate, and the
        // first sweeps with this check found members holding megabytes more than it
        // (docs/SCENARIOS.md, "The real heap").
        if heap::installed() && n.cfg.cluster.is_none() {
            let held = memory.held().saturating_sub(node.foreign_heap_bytes());
            if let Some(p) = heap::check(heap::live(heap::owner_of(i)), held) {
                problems.push(format!("{p}: {memory:?}"));
            }
        }
        if storage > storage_limit {
            let (used, reserved) = (node.storage_used(), node.storage_reserved());
            problems.push(format!(
                "accounted storage {storage} B ({used} B in files, {reserved} B reserved for the next commit) is above the limit {storage_limit} B"
            ));
        }
        let name = n.name.clone();
        for p in problems {
            self.checker.on_budget_violation(self.t, &name, p);
        }
    }

    fn rearm(&mut self, i: usize) {
        let t = self.t;
        let n = &mut self.nodes[i];
        let Some(node) = n.node.as_ref() else { return };
        let next = node.poll_timeout().map(|x| x.as_nanos().max(t));
        if next == n.timer_at {
            return;
        }
        if next == Some(t) {
            n.same_instant_wakeups += 1;
            assert!(
                n.same_instant_wakeups < SAME_INSTANT_WAKEUPS_MAX,
                "node {} keeps asking to be woken at {t} ns without progress",
                n.name
            );
        } else {
            n.same_instant_wakeups = 0;
        }
        n.timer_gen += 1;
        n.timer_at = next;
        let gen = n.timer_gen;
        if let Some(at) = next {
            self.schedule(at, Ev::Timer { node: i, gen });
        }
    }

    /// Guarantee 7, at every send: no record of a classified topic leaves node `i` for a
    /// node `j` outside the zones its classification allows (`crate::placement`).
    fn check_placement(&mut self, i: usize, j: usize, bytes: &[u8]) {
        if self.scenario.topics.iter().all(|t| t.placement.is_none()) {
            return;
        }
        for topic in crate::placement::topics_carried(bytes) {
            let Some(p) = self.scenario.topics.iter().find(|t| t.name == topic).and_then(|t| t.placement.as_ref())
            else {
                continue;
            };
            self.details.placement_checked_sends += 1;
            if !p.allows(self.scenario.nodes[j].zone.as_deref()) {
                let detail = format!(
                    "{} sent records of topic {topic:?} (classified {}, zones [{}]) to {} in {}",
                    self.nodes[i].name,
                    p.classification,
                    p.zones.join(", "),
                    self.nodes[j].name,
                    self.scenario.nodes[j].zone.as_deref().unwrap_or("no zone")
                );
                self.checker.on_violation(self.t, "placement", detail);
            }
        }
    }

    /// What impostors see on the network, and what the gateway tells them: about no
    /// stream but the impostor's own (an Ack naming another origin tells it how far that
    /// edge's records got, and that its forgery was taken for them).
    fn watch_impostors(&mut self, i: usize, j: usize, bytes: &[u8]) {
        for k in 0..self.impostors.len() {
            let (imp, on) = &mut self.impostors[k];
            if *on {
                imp.observe(i, j, bytes);
            }
            if (i, j) != (imp.gateway, imp.node) {
                continue;
            }
            if let Ok(SyncMsg::Ack { origin, topic, .. }) = SyncMsg::decode(bytes) {
                if origin != NodeId(imp.node as u64 + 1) {
                    let detail = format!(
                        "{} answered impostor {} about origin {origin}'s stream of topic {topic:?}",
                        self.nodes[i].name, self.nodes[j].name
                    );
                    self.checker.on_violation(self.t, "impostor", detail);
                }
            }
        }
    }

    /// Impostor `idx`'s round: its forgeries and replays cross its own link to its gateway.
    fn impostor_round(&mut self, idx: usize) {
        let (imp, on) = &mut self.impostors[idx];
        if !*on {
            return;
        }
        let (node, gateway) = (imp.node, imp.gateway);
        for (as_node, bytes) in imp.round() {
            for at in self.net.send(self.t, node, gateway, bytes.len(), &mut self.net_rng) {
                self.schedule(at, Ev::Deliver { to: gateway, from: as_node, link_from: node, bytes: bytes.clone() });
            }
        }
        self.schedule(self.t + IMPOSTOR_ROUND_NS, Ev::ImpostorRound { idx });
    }

    /// The checker's stream of a strong topic written on node `i`: the cluster's.
    fn strong_stream(&self, i: usize, topic: u16) -> Option<(usize, u16)> {
        if self.scenario.topics[topic as usize].consistency != ConsistencySpec::Strong {
            return None;
        }
        let k = self.clusters.iter().position(|c| c.members.contains(&i))?;
        Some((self.nodes.len() + k, topic))
    }

    fn perform(&mut self, i: usize, out: Output) {
        self.performed += 1;
        match out {
            Output::Send { to, bytes } => {
                let Some(mut j) = (to.0 as usize).checked_sub(1) else { return };
                self.check_gateway_ack(i, j, &bytes);
                if let Some(c) = j.checked_sub(self.nodes.len()).and_then(|k| self.clusters.get(k)) {
                    // To a site cluster: to the member whose connection it is.
                    let Some(m) = c.route else { return };
                    j = m;
                }
                if j >= self.nodes.len() {
                    return;
                }
                self.check_placement(i, j, &bytes);
                self.watch_impostors(i, j, &bytes);
                for at in self.net.send(self.t, i, j, bytes.len(), &mut self.net_rng) {
                    self.schedule(at, Ev::Deliver { to: j, from: i, link_from: i, bytes: bytes.clone() });
                }
            }
            Output::SendAs { from, to, bytes } => {
                let k = (from.0 as usize).checked_sub(1 + self.nodes.len()).expect("a cluster's id");
                assert!(self.clusters[k].members.contains(&i), "only a member sends as its cluster");
                self.clusters[k].route = Some(i);
                let Some(j) = (to.0 as usize).checked_sub(1).filter(|&j| j < self.nodes.len()) else {
                    return;
                };
                let virtual_from = self.nodes.len() + k;
                self.check_placement(i, j, &bytes);
                for at in self.net.send(self.t, i, j, bytes.len(), &mut self.net_rng) {
                    self.schedule(at, Ev::Deliver { to: j, from: virtual_from, link_from: i, bytes: bytes.clone() });
                }
            }
            Output::Disk { id, req } => {
                if let outpost_core::io::DiskRequest::Append { bytes, .. } = &req {
                    // The driver holds it until the write completes (the node's `Writes`).
                    heap::adopt(bytes, 0);
                }
                let n = &mut self.nodes[i];
                if let Some(dt) = n.disk.submit(id, req, &mut n.disk_rng) {
                    let inc = n.incarnation;
                    self.schedule(self.t + dt, Ev::DiskDone { node: i, incarnation: inc });
                }
            }
            Output::Reply { req, mut result } => {
                adopt_refusal_text(&mut result);
                let Some(p) = self.nodes[i].pending.remove(&req.0) else {
                    let settle_probe = self.settle_probes.as_ref().and_then(|p| p.get(&i)).copied();
                    if let (Some(SettleProbe { topic, req: Some(probe), .. }), Ok(ack)) = (settle_probe, &result) {
                        if probe == req.0 {
                            // Checked like any acknowledged record: it must reach the gateway.
                            let crc = crc32c::crc32c(&settle_probe_value(&self.nodes[i].name));
                            self.checker.on_ack(self.t, i, topic, ack.seq, ack.hlc, crc, None);
                        }
                    }
                    if let Some(slot) = self.probes.get_mut(&req.0) {
                        *slot = Some(result);
                    }
                    return;
                };
                let w = &self.workloads[p.workload];
                let (topic, goes_up, goes_down) = (w.topic, w.goes_up, w.goes_down);
                let strong = self.strong_stream(i, topic);
                self.answered = Some((req.0, if result.is_ok() { "ok" } else { "refused" }));
                match result {
                    Ok(ack) => {
                        self.hash(ack.seq);
                        if strong.is_none() {
                            self.check_issued(i, ack.hlc);
                            let n = &self.nodes[i];
                            let wall = n.clock.wall_ms(self.t);
                            if let Some(detail) = crate::clock_check::behind_wall(&n.name, ack.hlc, p.wall_ms, wall) {
                                self.checker.on_hlc_behind(self.t, detail);
                            }
                        }
                        if let Some((key, op)) = p.keyed {
                            // A strong topic's writes are the cluster's, at their sequence in
                            // its stream.
                            let origin = strong.map_or(i, |(c, _)| c);
                            self.keyed.on_ack(origin, topic as usize, key, op, ack.seq, ack.hlc);
                            let dot = outpost_core::keyed::Dot { origin: NodeId(origin as u64 + 1), seq: ack.seq };
                            let name = &self.scenario.topics[topic as usize].name;
                            self.reads.on_write(p.workload, name, topic as usize, origin, dot);
                        }
                        if let (Some(stream), true) = (strong, goes_up) {
                            self.checker.on_strong_ack(self.t, stream, ack.seq, p.crc, p.floor);
                        } else if goes_up {
                            self.checker.on_ack(self.t, i, topic, ack.seq, ack.hlc, p.crc, p.key);
                        } else if goes_down {
                            self.checker.on_down_ack(self.t, i, topic, ack.seq, ack.hlc, p.crc);
                        } else {
                            self.details.local_acked += 1;
                        }
                        if let Some((invariant, detail)) = self.nodes[i].durability.check_reply(topic, ack.seq) {
                            let name = &self.nodes[i].name;
                            self.checker.on_violation(self.t, invariant, format!("node {name}: {detail}"));
                        }
                    }
                    Err(e) => {
                        let kind = match e {
                            ProduceError::Recovering => "recovering",
                            ProduceError::Busy { .. } => "busy",
                            ProduceError::TooLarge { .. } => "too_large",
                            ProduceError::UnknownTopic(_) => "unknown_topic",
                            ProduceError::NotAccepted => "not_accepted",
                            ProduceError::Clock(_) => "clock",
                            ProduceError::Storage(_) => "storage",
                            ProduceError::StorageFull { device_full: true, .. } => "device_full",
                            ProduceError::StorageFull { .. } => "storage_full",
                            ProduceError::NoQuorum(_) => "no_quorum",
                            ProduceError::SiteUnavailable { .. } => "site_unavailable",
                            ProduceError::Invalid(_) => "invalid",
                            ProduceError::Unconfirmed { .. } => "unconfirmed",
                        };
                        if let (Some((key, _)), ProduceError::Unconfirmed { .. }) = (p.keyed, &e) {
                            // Maybe committed, and then in the cluster's stream.
                            self.keyed.on_unknown_fate(&self.scenario.topics[topic as usize].name, key);
                        }
                        *self.details.refused.entry(kind.to_string()).or_default() += 1;
                        self.answered = Some((req.0, kind));
                    }
                }
            }
            // The simulator's workloads only produce; fetches are tested in core/tests.
            Output::Fetched { .. } => {}
            Output::StrongRead { req, result } => {
                let node = self.nodes[i].node.as_ref().expect("a node that answers runs");
                let answer = |t: usize, key: &[u8]| {
                    let state = node.keyed(TopicIdx(t as u16)).expect("a strong read reads a keyed topic");
                    crate::keyed_oracle::Answer::of(state, key)
                };
                self.strong_reads.on_answer(self.scenario, req.0, result, answer);
            }
            Output::Event(e) => self.on_event(i, e),
        }
    }

    fn on_event(&mut self, i: usize, e: Event) {
        match e {
            Event::Stored {
                origin,
                topic,
                first_seq,
                value_crcs,
                payload_bytes,
                max_record_hlc,
                received_hlc,
                hlc_rejected,
                replay,
            } => {
                let o = (origin.0 as usize).wrapping_sub(1);
                self.hash(first_seq);
                if !replay {
                    self.payload_bytes_delivered += payload_bytes;
                }
                if self.scenario.topics.get(topic.0 as usize).is_some_and(|t| t.conflict.is_some()) {
                    self.keyed.on_stored(i, topic.0 as usize, o, first_seq..first_seq + value_crcs.len() as u64);
                }
                if self.checker.is_down_stream((o, topic.0)) {
                    if !replay && !value_crcs.is_empty() {
                        self.check_issued(i, received_hlc);
                    }
                    let how = (max_record_hlc, received_hlc, hlc_rejected, replay);
                    return self.checker.on_down_stored(self.t, i, (o, topic.0), first_seq, &value_crcs, how);
                }
                // Each edge's records belong at the gateways on its way up, as far as the
                // topic's placement lets them go, and nowhere else: one stored at another
                // gateway is one its own never got.
                if o < self.nodes.len() && self.nodes[o].cfg.upstream.is_some() {
                    let path = self.scenario.home_path_of(o, topic.0 as usize);
                    if !path.contains(&i) {
                        let detail = format!(
                            "origin {} topic {}: seq {first_seq} stored at gateway {}, not on its way up ({})",
                            self.nodes[o].name,
                            topic.0,
                            self.nodes[i].name,
                            path.iter().map(|&g| self.nodes[g].name.as_str()).collect::<Vec<_>>().join(" → ")
                        );
                        self.checker.on_violation(self.t, "exactly-once", detail);
                    }
                }
                if self.relays_up(i, o, topic.0 as usize) {
                    // A middle tier's copy: once and in order; delivery is decided at the top.
                    if !replay {
                        let count = value_crcs.len() as u64;
                        self.checker.on_relay_stored(self.t, i, (o, topic.0), first_seq, count);
                    }
                    return;
                }
                if !replay && !value_crcs.is_empty() {
                    self.check_issued(i, received_hlc);
                }
                self.checker.on_stored(
                    self.t,
                    o,
                    topic.0,
                    first_seq,
                    &value_crcs,
                    max_record_hlc,
                    received_hlc,
                    hlc_rejected,
                    replay,
                );
            }
            Event::SegmentDeleted { file: FileId::Segment { topic, .. }, .. }
                if self.scenario.topics[topic.0 as usize].conflict.is_some() =>
            {
                self.keyed_segments_deleted += 1;
            }
            Event::KeyedCopied { copies } => {
                for (topic, seq, dot, crc) in copies {
                    self.hash(seq);
                    self.keyed.on_copied(i, topic.0 as usize, seq, dot);
                    self.checker.on_down_copied(self.t, i, topic.0, seq, crc);
                }
            }
            Event::KeyedCopiesDeferred { batches } => {
                let detail = format!(
                    "{}: recovery found {batches} batches of keyed writes not copied to the edges beyond the fan-out's bound",
                    self.nodes[i].name
                );
                self.checker.on_violation(self.t, "bounded-resources", detail);
            }
            Event::SiteLeader { cluster, term } => {
                let origin = (cluster.0 as usize).wrapping_sub(1);
                self.hash(term);
                self.checker.on_leader(self.t, origin, term, i);
                let name = self.nodes[i].name.clone();
                self.log(format_args!("{name}: leads cluster {cluster} in term {term}"));
            }
            Event::TailTruncated { file, at, cut_bytes, reason, skipped } => {
                self.nodes[i].report.torn_tails_cut += 1;
                self.nodes[i].report.bytes_cut_at_recovery += cut_bytes;
                let name = self.nodes[i].name.clone();
                self.log(format_args!(
                    "{name}: recovery cut {cut_bytes} bytes of {file} at {at}: {reason}; sequences skipped: {skipped:?}"
                ));
            }
            Event::Skipped { origin, topic, from, to, reason } => {
                let mut o = (origin.0 as usize).wrapping_sub(1);
                self.hash(from ^ to.rotate_left(32));
                if self.nodes[i].cfg.upstream == Some(origin)
                    && topic_goes_down(&self.scenario.topics[topic.0 as usize])
                {
                    // A replica names what comes down by the peer it comes from: the
                    // stream is the top gateway's.
                    o = self.top_of(i);
                }
                if self.nodes[i].cfg.role == Role::Gateway
                    && self.relays_up(i, o, topic.0 as usize)
                    && !self.checker.is_down_stream((o, topic.0))
                {
                    self.nodes[i].durability.on_gateway_skip(o, topic.0, from, to);
                    self.checker.on_relay_skipped(i, (o, topic.0), to);
                    let name = self.nodes[i].name.clone();
                    return self.log(format_args!(
                        "{name}: origin {origin} topic {} skipped {from}..{to} ({reason:?}), relayed",
                        topic.0
                    ));
                }
                self.nodes[i].durability.on_gateway_skip(o, topic.0, from, to);
                if self.checker.is_down_stream((o, topic.0)) {
                    self.checker.on_down_skipped(self.t, i, (o, topic.0), from, to);
                    let name = self.nodes[i].name.clone();
                    return self.log(format_args!(
                        "{name}: origin {origin} topic {} skipped {from}..{to} ({reason:?})",
                        topic.0
                    ));
                }
                self.checker.on_skipped(self.t, o, topic.0, from, to, &format!("{reason:?}"));
                let name = self.nodes[i].name.clone();
                self.log(format_args!("{name}: origin {origin} topic {} skipped {from}..{to} ({reason:?})", topic.0));
            }
            Event::Expired { topic, from, to, records, bytes } => {
                // Each edge that lacked them is told by a skip, which the checker weighs
                // against the records' age (`Checker::on_down_skipped`).
                self.hash(from ^ to.rotate_left(23));
                let r = &mut self.nodes[i].report;
                r.evicted_unsynced += records;
                let name = self.scenario.topics[topic.0 as usize].name.clone();
                if r.evicted_ranges.len() < EVICTED_RANGES_KEPT_MAX {
                    r.evicted_ranges.push((name.clone(), from, to));
                }
                let node = self.nodes[i].name.clone();
                self.log(format_args!(
                    "{node}: retention_age expired {from}..{to} of topic {name} ({records} records, {bytes} B) before every edge had it"
                ));
            }
            Event::Evicted { topic, from, to, records, bytes, policy } => {
                self.hash(from ^ to.rotate_left(17));
                let spec = &self.scenario.topics[topic.0 as usize];
                let lossy = spec.eviction.is_lossy();
                let compact = spec.eviction == EvictionSpec::Compact;
                let r = &mut self.nodes[i].report;
                r.evicted_unsynced += records;
                if r.evicted_ranges.len() < EVICTED_RANGES_KEPT_MAX {
                    r.evicted_ranges.push((spec.name.clone(), from, to));
                }
                self.checker.on_evicted(self.t, i, topic.0, from, to, lossy, compact, &spec.name);
                let name = self.nodes[i].name.clone();
                self.log(format_args!(
                    "{name}: evicted unsynced {from}..{to} of topic {} ({records} records, {bytes} B, policy {policy})",
                    topic.0
                ));
            }
            Event::BadMessage { from, error } => {
                let sender = (from.0 as usize).wrapping_sub(1);
                for (imp, _) in self.impostors.iter_mut().filter(|(imp, _)| (imp.gateway, imp.node) == (i, sender)) {
                    imp.refused += 1;
                }
                let name = self.nodes[i].name.clone();
                self.log(format_args!("{name}: bad message from {from}: {error}"));
            }
            other => {
                let name = self.nodes[i].name.clone();
                self.log(format_args!("{name}: {other:?}"));
            }
        }
    }

    /// Takes in what node `i`'s disk applied (syncs, truncations, deletions, a crash) and
    /// reports the promises it broke (see `crate::durability`).
    fn disk_changed(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let changes = n.disk.take_changes();
        if changes.is_empty() {
            return;
        }
        let recovering = n.node.as_ref().is_some_and(|x| !x.is_running());
        let problems = n.durability.apply(&n.disk, changes, recovering);
        let name = n.name.clone();
        for (invariant, detail) in problems {
            self.checker.on_violation(self.t, invariant, format!("node {name}: {detail}"));
        }
    }

    /// A receiver's message to `to` (a gateway's to an edge, or an edge's to its gateway
    /// for a `cloud-to-edge` topic): an `Ack` or `Welcome` mark must be durable on its
    /// disk (see `crate::durability`).
    fn check_gateway_ack(&mut self, i: usize, to: usize, bytes: &[u8]) {
        let marks = match SyncMsg::decode(bytes) {
            Ok(SyncMsg::Ack { topic, origin, next_seq, .. }) => {
                vec![(topic, (origin.0 as usize).wrapping_sub(1), next_seq, "Ack")]
            }
            Ok(SyncMsg::Welcome { topics, .. }) => topics
                .into_iter()
                .filter(|(_, status, _)| *status == TopicStatus::Accepted)
                .map(|(name, _, seq)| (name, to, seq, "Welcome"))
                .collect(),
            _ => return,
        };
        // A node acknowledges to its upstream what comes down, to any other peer what goes up
        // (the halves of a bidirectional topic share its name).
        let down = self.scenario.upstream_of(i) == Some(to);
        for (name, origin, next_seq, what) in marks {
            let Some(t) = self.scenario.topics.iter().position(|x| x.name == name && topic_goes_down(x) == down) else {
                continue;
            };
            // What comes down is the top gateway's stream, whichever tier passes it on.
            let origin = if topic_goes_down(&self.scenario.topics[t]) { self.top_of(i) } else { origin };
            if let Some((invariant, detail)) =
                self.nodes[i].durability.check_gateway_ack(origin, t as u16, next_seq, what)
            {
                let gw = &self.nodes[i].name;
                self.checker.on_violation(self.t, invariant, format!("gateway {gw}: {detail}"));
            }
        }
    }

    /// Node `i` issued `hlc` and the world sees it now: it must not run ahead of the
    /// node's wall clock by more than the node's `max_offset_ms` (see `clock_check`).
    fn check_issued(&mut self, i: usize, hlc: outpost_core::hlc::Hlc) {
        let n = &self.nodes[i];
        let (wall, max_offset) = (n.clock.wall_ms(self.t), n.cfg.hlc.max_offset_ms);
        let last = n.node.as_ref().map_or(hlc, Node::hlc);
        if let Some(detail) = self.hlc_ahead.on_issued(i, &n.name, hlc, wall, last, max_offset) {
            self.checker.on_hlc_ahead(self.t, detail);
        }
    }

    /// The gateways node `i` syncs up through, nearest first, ending at the top.
    fn path_up(&self, i: usize) -> Vec<usize> {
        let mut path = Vec::new();
        let mut at = i;
        while let Some(u) = self.nodes[at].cfg.upstream.map(|u| u.0 as usize - 1) {
            if path.contains(&u) || path.len() > self.nodes.len() {
                break;
            }
            path.push(u);
            at = u;
        }
        path
    }

    /// Whether gateway `i` relays origin `o`'s stream of topic `t` on up rather than holding
    /// it as its top: it has an upstream the topic's placement allows (a site cluster's
    /// stream, `o` past the nodes, never passes a middle tier).
    fn relays_up(&self, i: usize, o: usize, t: usize) -> bool {
        if o >= self.nodes.len() {
            return self.nodes[i].cfg.upstream.is_some();
        }
        self.scenario.forwards_up(i, t)
    }

    /// The top of node `i`'s way up: the gateway without an upstream (itself if it has none).
    fn top_of(&self, i: usize) -> usize {
        self.path_up(i).last().copied().unwrap_or(i)
    }

    fn unsynced(&self) -> u64 {
        self.nodes.iter().filter_map(|n| n.node.as_ref()).map(Node::unsynced_records).sum()
    }

    /// Samples the backlog and, while settling, decides convergence: every node running,
    /// every acknowledged record at the gateway, nothing left unacknowledged on an edge, and
    /// then every edge taking writes again. The last part is a probe: once the backlog is
    /// synced, each edge gets one produce to an eventual topic that syncs up, retried every
    /// sample while refused; the run converges when every probe was acknowledged and
    /// synced. Storage the gateway holds can always be freed, so a node that keeps
    /// refusing writes once everything synced (a full device that never recovers) fails
    /// the run for liveness, with its last refusal in the report.
    fn sample(&mut self) {
        let backlog = self.unsynced();
        self.max_backlog = self.max_backlog.max(backlog);
        if self.settling && self.converged_at.is_none() {
            let all_up = self.nodes.iter().all(|n| n.node.as_ref().is_some_and(Node::is_running));
            self.excuse_full_replicas();
            if all_up && backlog == 0 && self.checker.undelivered() == 0 {
                if self.settle_probes.is_none() {
                    self.start_settle_probes();
                }
                if self.settle_probes_acknowledged() && self.unsynced() == 0 && self.checker.undelivered() == 0 {
                    self.converged_at = Some(self.t);
                    return;
                }
            }
            if all_up {
                self.retry_refused_probes();
            }
        }
        self.schedule(self.t + SAMPLE_NS, Ev::Sample);
    }

    /// One probe per edge that has an eventual topic syncing up (the first such topic).
    fn start_settle_probes(&mut self) {
        let s = self.scenario;
        // Per edge, the first eventual topic that syncs up and that its placement lets the
        // edge hold and send to its gateway; not one whose writes are merged per key (a
        // probe's plain value is no keyed operation, and the oracle holds each key's
        // history to the workloads' writes).
        let placed = |i: usize, t: &TopicSpec| {
            let zone = |n: Option<usize>| n.and_then(|n| s.nodes[n].zone.as_deref());
            t.placement.as_ref().is_none_or(|p| p.allows(zone(Some(i))) && p.allows(zone(s.upstream_of(i))))
        };
        let mut probes = BTreeMap::new();
        for i in (0..self.nodes.len()).filter(|&i| s.nodes[i].role == SpecRole::Edge) {
            let topic = s.topics.iter().position(|t| {
                topic_goes_up(t) && t.consistency == ConsistencySpec::Eventual && t.conflict.is_none() && placed(i, t)
            });
            if let Some(t) = topic {
                probes.insert(i, SettleProbe { topic: t as u16, req: None, excused: false });
            }
        }
        self.settle_probes = Some(probes);
        self.retry_refused_probes();
    }

    fn settle_probes_acknowledged(&self) -> bool {
        let Some(probes) = &self.settle_probes else { return false };
        probes.values().all(|p| p.excused || matches!(p.req.and_then(|r| self.probes.get(&r)), Some(Some(Ok(_)))))
    }

    /// Sends the probes not yet sent, and again those refused, noting each refusal.
    ///
    /// One refusal is the node's right: a local topic's data, which never syncs and goes
    /// only as its policy allows, holding half of the node's storage (the smaller of its
    /// budget and its disk) or more. The node may then truly have no room, and the probe
    /// is excused (reported in `writes_refused_local_data`). Below half, a node that
    /// freed what the gateway holds has room for a probe: the newest segments the budget
    /// keeps take at most a quarter of it (`check_budgets`), the meta log 192 KiB, and a
    /// device is at least 1 MiB.
    fn retry_refused_probes(&mut self) {
        let Some(probes) = self.settle_probes.clone() else { return };
        for (i, probe) in probes {
            if probe.excused {
                continue;
            }
            let refusal = match probe.req.and_then(|r| self.probes.get(&r)) {
                None => None,
                Some(Some(Err(e))) => Some(e.clone()),
                Some(_) => continue,
            };
            let name = self.nodes[i].name.clone();
            let mut next = probe;
            if let Some(e) = refusal {
                self.log(format_args!("{name}: settle probe refused: {e}"));
                if matches!(e, ProduceError::StorageFull { .. }) && self.local_data_fills_half(i) {
                    self.details.writes_refused_local_data.insert(name, e.to_string());
                    next.excused = true;
                    self.settle_probes.as_mut().expect("started").insert(i, next);
                    continue;
                }
                self.details.writes_refused_at_end.insert(name.clone(), e.to_string());
            }
            next.req = Some(self.probe(i, usize::from(probe.topic), settle_probe_value(&name)));
            self.settle_probes.as_mut().expect("started").insert(i, next);
        }
    }

    /// While settling: an edge whose local topics' data holds half its storage or more is
    /// not waited for to take what goes down (it may have no room; a produce there is
    /// excused the same way), and the report names it with what it lacked (swarm seed
    /// 1314: a 2 MiB till full of a local topic could not persist its clock's bound, so it
    /// held its gateway's last records for ever).
    fn excuse_full_replicas(&mut self) {
        for i in 0..self.nodes.len() {
            let name = &self.nodes[i].name;
            if self.nodes[i].cfg.role != Role::Edge || self.details.down_refused_local_data.contains_key(name) {
                continue;
            }
            if self.local_data_fills_half(i) {
                if let Some(lacking) = self.checker.excuse_replica(i) {
                    self.details.down_refused_local_data.insert(self.nodes[i].name.clone(), lacking);
                }
            }
        }
    }

    /// Whether local topics' data holds half of node `i`'s storage or more.
    fn local_data_fills_half(&self, i: usize) -> bool {
        let Some(node) = self.nodes[i].node.as_ref() else { return false };
        let spec = &self.scenario.nodes[i];
        let room = spec.storage_bytes.min(spec.device.storage_bytes);
        let status = node.resource_status();
        let local: u64 = (0..self.scenario.topics.len())
            .filter(|&t| !topic_goes_up(&self.scenario.topics[t]))
            .map(|t| status.topics[t].bytes)
            .sum();
        2 * local >= room
    }

    /// Once converged: every running node's keyed states answer what the oracle computes
    /// from the writes it holds. A keyed topic whose records storage destroyed or a policy
    /// evicted anywhere is not checked (the history no longer says what a node holds; a
    /// run that lost one failed already), nor is any after a loss.
    fn check_keyed(&mut self, end_t: u64) {
        if self.scenario.topics.iter().all(|t| t.conflict.is_none()) {
            return;
        }
        let mut report = crate::keyed_check::KeyedReport::default();
        // A write still unanswered at the end may be durable, or committed and merged
        // at some members (scenario site-stock seed 1: a strong write committed as the
        // run ended, its producer not yet answered).
        for n in &self.nodes {
            for p in n.pending.values() {
                if let Some((key, _)) = &p.keyed {
                    let topic = self.workloads[p.workload].topic as usize;
                    self.keyed.on_unknown_fate(&self.scenario.topics[topic].name, key.clone());
                }
            }
        }
        self.note_members_holdings(end_t);
        if self.checker.counts.lost == 0 {
            let nodes = &self.nodes;
            let full = |node: &&Node| node.keyed_counters().refused_full > 0;
            report.nodes_full = nodes.iter().filter_map(|n| n.node.as_ref()).filter(full).count() as u64;
            let state = |n: usize, t: usize| {
                let node = nodes[n].node.as_ref().filter(|node| !full(node))?;
                node.keyed(TopicIdx(t as u16))
            };
            let checker = &self.checker;
            let gone = |t: usize| checker.records_gone(t as u16);
            let topics = &self.scenario.topics;
            let judged = |name: &str| (0..topics.len()).all(|t| topics[t].name != name || !gone(t));
            let reads = self.reads.violations(judged);
            let strong_reads = self.strong_reads.violations(&self.keyed, self.scenario, judged);
            for v in self.keyed.check(self.scenario, state, gone, &mut report) {
                self.checker.on_violation(end_t, "keyed", v);
            }
            for v in reads {
                self.checker.on_violation(end_t, "keyed-read", v);
            }
            for v in strong_reads {
                self.checker.on_violation(end_t, "strong-read", v);
            }
        }
        self.reads.report.strong = self.strong_reads.report.clone();
        report.reads = self.reads.report.clone();
        let running = || self.nodes.iter().filter_map(|n| n.node.as_ref());
        report.conflicts = running().map(|n| n.keyed_counters().conflicts).sum();
        report.checkpoints = running().map(Node::keyed_checkpoints_written).sum();
        report.segments_deleted = self.keyed_segments_deleted;
        self.details.keyed = Some(report);
    }

    /// The members of a site hold a prefix of each strong keyed topic's stream: what their
    /// states say they merged of the cluster (members store no `Stored` events of it; the
    /// final check then judges each state against the oracle over that prefix). Once
    /// converged, some running member holds every write acknowledged: they were committed,
    /// and the leader applied them.
    fn note_members_holdings(&mut self, end_t: u64) {
        let strong_keyed: Vec<usize> = (0..self.scenario.topics.len())
            .filter(|&t| {
                let t = &self.scenario.topics[t];
                t.conflict.is_some() && t.consistency == ConsistencySpec::Strong
            })
            .collect();
        for (k, c) in self.clusters.iter().enumerate() {
            let origin = self.nodes.len() + k;
            for &t in &strong_keyed {
                let mut longest = None;
                for &m in &c.members {
                    let Some(held) = self.member_prefix(m, t, origin) else { continue };
                    self.keyed.on_stored(m, t, origin, 0..held);
                    longest = longest.max(Some(held));
                }
                let acked = self.keyed.writes_by(t, origin).last().map(|&i| self.keyed.dot_of(i).seq + 1);
                if let (Some(longest), Some(acked)) = (longest, acked) {
                    if longest < acked && self.checker.counts.lost == 0 {
                        let detail = format!(
                            "cluster {}, topic {:?}: its running members' states hold at most the first {longest}                              writes of its stream, and write {} was acknowledged",
                            c.name,
                            self.scenario.topics[t].name,
                            acked - 1
                        );
                        self.checker.on_violation(end_t, "keyed", detail);
                    }
                }
            }
        }
    }

    /// How many writes of the cluster's stream (history index `origin`) of strong keyed
    /// topic `t` member `m`'s state says it merged; `None` if it does not run.
    fn member_prefix(&self, m: usize, t: usize, origin: usize) -> Option<u64> {
        let node = self.nodes[m].node.as_ref().filter(|n| n.is_running())?;
        let read = outpost_core::keyed_reads::ReadConsistency::Eventual;
        let stamp = node.keyed_read(TopicIdx(t as u16), read, 0)?.ok()?;
        let cluster = NodeId(origin as u64 + 1);
        let held = stamp.token.entries().find(|d| d.origin == cluster).map_or(0, |d| d.seq + 1);
        Some(held)
    }

    fn finish(mut self) -> Report {
        let end_t = self.t;
        self.details.undelivered_at_end = self.checker.undelivered();
        for (imp, _) in &self.impostors {
            // An attack that never happened, or was never met, proves nothing.
            if imp.must_try && (imp.forged == 0 || imp.refused == 0) {
                let detail = format!(
                    "impostor {} forged {} frames and was refused {} times: the attack was not tried",
                    self.nodes[imp.node].name, imp.forged, imp.refused
                );
                self.checker.on_violation(end_t, "impostor", detail);
            }
            let r = crate::report::ImpostorReport { forged: imp.forged, replayed: imp.replayed, refused: imp.refused };
            self.details.impostors.insert(self.nodes[imp.node].name.clone(), r);
        }
        if self.converged_at.is_none() {
            let n = self.details.undelivered_at_end;
            let by_stream = self.checker.undelivered_streams();
            let refused = self.details.writes_refused_at_end.clone();
            self.log(format_args!(
                "not converged: {n} acknowledged records undelivered (origin, topic): {by_stream:?}; writes refused: \
                 {refused:?}"
            ));
        } else {
            self.details.writes_refused_at_end.clear();
            self.checker.finish(end_t);
            self.check_keyed(end_t);
        }
        let settle_start = self.scenario.duration.as_nanos();
        let mut peak_memory_bytes = BTreeMap::new();
        for n in &mut self.nodes {
            n.report.memory_limit_bytes = n.cfg.resources.memory_bytes_max;
            n.report.storage_limit_bytes = n.cfg.resources.storage_bytes_max;
            if let Some(node) = &n.node {
                add_stats(&mut n.report, node);
            }
            n.report.disk_bytes_written = n.disk.bytes_written;
            n.report.disk_bytes_read = n.disk.bytes_read;
            n.report.disk_syncs = n.disk.syncs;
            n.report.disk_used_bytes_at_end = n.disk.used_bytes();
            self.details.nodes.insert(n.name.clone(), n.report.clone());
            peak_memory_bytes.insert(n.name.clone(), Some(n.peak_memory));
        }
        if !self.clusters.is_empty() {
            let mut st = crate::report::StrongReport::default();
            for r in self.details.nodes.values() {
                st.acknowledged += r.strong_acknowledged;
                st.refused_no_quorum += r.strong_refused_no_quorum;
                st.refused_unavailable += r.strong_refused_unavailable;
                st.unconfirmed += r.strong_unconfirmed;
                st.leaders_elected += r.site_elected;
                st.raft_compactions += r.raft_compactions;
                st.raft_snapshots_installed += r.raft_snapshots_installed;
            }
            self.details.strong = Some(st);
        }
        let nodes = self.details.nodes.values();
        let efficiency = crate::report::Efficiency {
            link_bytes_sent: self.net.stats.bytes_sent,
            payload_bytes_delivered: self.payload_bytes_delivered,
            records_sent: nodes.clone().map(|r| r.sync_records_sent).sum(),
            records_resent: nodes.clone().map(|r| r.sync_records_resent).sum(),
            disk_read_bytes: nodes.clone().map(|r| r.disk_bytes_read).sum(),
            sync_bytes_read: nodes.clone().map(|r| r.sync_read_bytes).sum(),
            sync_bytes_sent: nodes.map(|r| r.sync_bytes_sent).sum(),
        };
        let c = self.checker.counts.clone();
        self.details.counts = c.clone();
        self.details.violation_count = self.checker.violation_count;
        self.details.net = self.net.stats.clone();
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            sim_secs: end_t as f64 / 1e9,
            wall_secs: 0.0,
            produced: self.produced,
            acked: c.acked + self.details.local_acked,
            delivered: c.delivered,
            lost: c.lost,
            duplicates: c.duplicates,
            out_of_order: c.out_of_order,
            evicted_unsynced: c.evicted_unsynced,
            corrupted: c.corrupted,
            max_backlog: self.max_backlog,
            peak_memory_bytes,
            efficiency,
            converged: self.converged_at.is_some(),
            converge_secs: self.converged_at.map(|t| (t - settle_start) as f64 / 1e9),
            violations: self.checker.violations.clone(),
            trace_hash: format!("{:016x}", self.trace_hash),
            details: std::mem::take(&mut self.details),
        }
    }
}

/// The value of node `name`'s settle probe.
fn settle_probe_value(name: &str) -> Vec<u8> {
    format!("settle probe of {name}").into_bytes()
}

/// Adds one incarnation's counters to a node's report (a crash resets the core's).
fn add_stats(r: &mut NodeReport, node: &Node) {
    if let Some(site) = node.site() {
        let s = site.stats();
        r.strong_acknowledged += s.acknowledged;
        r.strong_refused_no_quorum += s.refused_no_quorum;
        r.strong_refused_unavailable += s.refused_no_leader;
        r.strong_unconfirmed += s.unconfirmed;
        r.site_elected += s.elected;
        r.raft_compactions += s.compactions;
        r.raft_snapshots_installed += s.snapshots_installed;
    }
    let s = &node.stats();
    r.sessions_opened += s.sessions_opened;
    r.retransmits += s.retransmits;
    r.sync_reads += s.sync_reads;
    r.sync_read_bytes += s.sync_read_bytes;
    r.sync_records_sent += s.sync_records_sent;
    r.sync_records_resent += s.sync_records_resent;
    r.sync_bytes_sent += s.sync_bytes_sent;
    r.duplicates_dropped += s.duplicates_dropped;
    r.gaps_refused += s.gaps_refused;
    r.batches_kept += s.batches_kept;
    r.hlc_rejected += s.hlc_rejected;
    r.commits += s.commits;
    r.commit_failures += s.commit_failures;
    r.segments_deleted += s.segments_deleted;
    r.corrupted_skipped += s.corrupted_skipped;
    r.evicted_synced_segments += s.evicted_synced_segments;
    r.storage_refused += s.storage_refused;
    r.device_full_refused += s.device_full_refused;
    r.gateway_storage_refused += s.gateway_storage_refused;
    r.device_full_events += s.device_full_events;
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Report, Unsupported> {
    Ok(World::new(scenario, seed, None)?.run())
}

//! What a running daemon reports about itself: one [`Status`] (JSON at
//! `/v1/admin/status`), rendered as the operator CLI's tables and as Prometheus metrics.
//!
//! The metrics text is written here rather than with a metrics crate: it is a dozen gauges
//! and counters read from one snapshot, and the edge-lite binary must stay small.

use crate::driver::Driver;
use outpost_core::config::{Role, SyncDirection};
use outpost_core::io::ProduceError;
use outpost_core::resources::MEMORY_PARTS;
use outpost_core::sync::uplink::SessionStatus;
use outpost_core::types::Bytes;
use outpost_core::types::TopicIdx;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Counters the driver and the shell keep since the process started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    pub records_acked: u64,
    pub records_stored: u64,
    pub refused_busy: u64,
    pub refused_storage_full: u64,
    pub refused_other: u64,
    pub evicted_unsynced: u64,
    pub hlc_rejected: u64,
    pub sessions_up: u64,
    pub sessions_lost: u64,
    pub bad_messages: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub tail_bytes_cut: u64,
}

impl Counters {
    pub fn refuse(&mut self, e: &ProduceError) {
        match e {
            ProduceError::Busy { .. } => self.refused_busy += 1,
            ProduceError::StorageFull { .. } => self.refused_storage_full += 1,
            _ => self.refused_other += 1,
        }
    }
}

/// One peer connection as the shell sees it: the gateway (on an edge) or an edge (on a
/// gateway).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerLink {
    pub name: String,
    pub addr: String,
    pub connected: bool,
    /// Seconds since the link came up or went down.
    pub for_secs: f64,
    pub reconnects: u64,
    pub last_error: Option<String>,
}

/// What the shell adds to the driver's view.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Link {
    pub peers: Vec<PeerLink>,
    /// Application connections open now (HTTP and binary).
    pub api_connections: u64,
    /// Connections refused because every connection of their listener was busy.
    pub api_connections_refused: u64,
    /// Slow or idle connections dropped to admit newer ones.
    #[serde(default)]
    pub api_connections_evicted: u64,
    /// `resources.max_memory`: the process's budget, of which the shell keeps
    /// `shell_reserve` and the core the rest (`Status::memory_max`).
    pub process_memory_max: u64,
    pub shell_reserve: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SyncView {
    pub gateway: String,
    pub paused: bool,
    /// `active` or `connecting`.
    pub session: String,
    pub next_attempt_in_secs: Option<f64>,
    pub attempt: u32,
    pub sessions_opened: u64,
    pub retransmits: u64,
    pub records_sent: u64,
    pub bytes_sent: u64,
    pub window_bytes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopicView {
    pub name: String,
    pub sync: String,
    pub priority: u8,
    pub eviction: String,
    pub bytes: u64,
    pub segments: u64,
    pub records: u64,
    pub durable_end: u64,
    /// The gateway's durable mark (edge, topics that go up).
    pub acked: Option<u64>,
    pub unsynced_records: u64,
    pub unsynced_bytes: u64,
    pub oldest_unsynced_age_secs: Option<f64>,
    pub evicted_unsynced: u64,
}

/// A gateway's sender of one `cloud-to-edge` topic to one edge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DownStream {
    pub edge: String,
    /// "active", or "connecting" while the edge has not answered; for a subscriber the
    /// topic names that has no sender now, "away" (its mark as last heard) or "never
    /// heard" (none known): retention of the topic waits for it.
    pub session: String,
    pub topic: String,
    /// The gateway's durable end of the topic.
    pub durable: u64,
    /// Everything below this is durable at the edge, as last heard.
    pub acked: u64,
    /// Records the edge has not acknowledged.
    pub backlog: u64,
}

/// A stream this node receives: on a gateway an edge's, on an edge its gateway's
/// `cloud-to-edge` topic.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatewayStream {
    pub origin: String,
    pub topic: String,
    /// Every record of the origin's stream below this is durable here.
    pub durable: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    pub id: u64,
    pub role: String,
    pub location: Option<String>,
    /// Recovery finished and the node accepts writes and messages.
    pub running: bool,
    pub uptime_secs: f64,
    pub hlc: String,
    pub sync: Option<SyncView>,
    pub link: Link,
    pub topics: Vec<TopicView>,
    pub memory_used: u64,
    pub memory_max: u64,
    pub memory_parts: BTreeMap<String, u64>,
    pub storage_used: u64,
    pub storage_max: u64,
    pub device_full: bool,
    pub streams: Vec<GatewayStream>,
    /// A gateway's senders of `cloud-to-edge` topics, per edge and topic.
    #[serde(default)]
    pub down: Vec<DownStream>,
    /// Keyed topics (a conflict strategy), once per name.
    #[serde(default)]
    pub keyed: Vec<KeyedView>,
    /// Checkpoints of the keyed states made durable, and failed, since the start (a
    /// failing one keeps the keyed topics' segments on disk, docs/STORAGE.md).
    #[serde(default)]
    pub keyed_checkpoints: (u64, u64),
    pub counters: Counters,
}

/// A keyed topic's state at this node (docs/KEYED.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyedView {
    pub topic: String,
    pub strategy: String,
    pub keys: u64,
    pub state_bytes: u64,
    pub state_bytes_max: u64,
    /// Conflicts met since the node started (recovery's merges included).
    pub conflicts_total: u64,
    /// Of those, the newest the bounded conflict log keeps.
    pub conflicts_kept: u64,
    /// On a top gateway: edges' writes stored and not yet copied for the other edges.
    #[serde(default)]
    pub copies_waiting: u64,
}

/// The name config files give a direction.
pub fn sync_name(d: SyncDirection) -> &'static str {
    match d {
        SyncDirection::EdgeToCloud => "up",
        SyncDirection::CloudToEdge => "down",
        SyncDirection::Bidirectional => "both",
        SyncDirection::Local => "local",
    }
}

/// A topic's direction as status shows it: each half of a `both` topic is a row of its own.
fn topic_sync(t: &outpost_core::config::TopicConfig) -> String {
    if t.both_ways {
        format!("both ({})", sync_name(t.sync))
    } else {
        sync_name(t.sync).into()
    }
}

pub(crate) fn build(d: &Driver, link: Link, uptime: std::time::Duration) -> Status {
    let node = d.node();
    let cfg = node.config();
    let res = node.resource_status();
    let sync = node.sync_status();
    let name_of = |id| d.identity.names.get(&id).cloned().unwrap_or_else(|| format!("{id}"));
    let topics = res
        .topics
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let idx = TopicIdx(i as u16);
            let stream = sync.as_ref().and_then(|s| s.streams.iter().find(|s| s.topic == idx));
            TopicView {
                name: t.name.clone(),
                sync: topic_sync(&cfg.topics[i]),
                priority: t.priority,
                eviction: t.eviction.name().into(),
                bytes: t.bytes,
                segments: t.segments,
                records: t.records,
                durable_end: if node.is_running() { node.log(idx).durable_offset() } else { 0 },
                acked: stream.map(|s| s.acked),
                // (A middle tier's relay: what the tier above has not acknowledged.)
                unsynced_records: stream.map_or(t.unsynced_records, |s| s.unsynced_records),
                unsynced_bytes: t.unsynced_bytes,
                oldest_unsynced_age_secs: t.oldest_unsynced_age.map(|a| a.as_secs_f64()),
                evicted_unsynced: t.evicted_unsynced,
            }
        })
        .collect();
    let sync = sync.map(|s| {
        let (session, next, attempt) = match s.session {
            SessionStatus::Active => ("active", None, 0),
            SessionStatus::Connecting { retry_at, attempt } => {
                let now = uptime.as_nanos() as u64;
                ("connecting", Some(retry_at.as_nanos().saturating_sub(now) as f64 / 1e9), attempt)
            }
        };
        SyncView {
            gateway: name_of(s.gateway),
            paused: s.paused,
            session: session.into(),
            next_attempt_in_secs: next,
            attempt,
            sessions_opened: s.sessions_opened,
            retransmits: s.retransmits,
            records_sent: s.records_sent,
            bytes_sent: s.bytes_sent,
            window_bytes: s.window_bytes,
        }
    });
    let streams = node
        .ingest()
        .map(|ing| {
            ing.streams()
                .map(|(&(origin, topic), s)| GatewayStream {
                    origin: name_of(origin),
                    topic: cfg.topics.get(topic.0 as usize).map_or("?".into(), |t| t.name.clone()),
                    durable: s.durable,
                })
                .collect()
        })
        .unwrap_or_default();
    let down = node
        .downlink_status()
        .into_iter()
        .flat_map(|(edge, u)| {
            let session = match u.session {
                SessionStatus::Active => "active",
                SessionStatus::Connecting { .. } => "connecting",
            };
            let edge = name_of(edge);
            u.streams.into_iter().map(move |st| DownStream {
                edge: edge.clone(),
                session: session.into(),
                topic: st.name,
                durable: st.durable_end,
                acked: st.acked,
                backlog: st.unsynced_records,
            })
        })
        .chain(node.idle_subscribers().into_iter().map(|(edge, topic, acked, durable)| DownStream {
            edge: name_of(edge),
            session: if acked.is_some() { "away" } else { "never heard" }.into(),
            topic: cfg.topics.get(topic.0 as usize).map_or("?".into(), |t| t.name.clone()),
            durable,
            acked: acked.unwrap_or(0),
            backlog: durable.saturating_sub(acked.unwrap_or(0)),
        }))
        .collect();
    Status {
        node: d.identity.name.clone(),
        id: cfg.id.0,
        role: if cfg.role == Role::Edge { "edge" } else { "gateway" }.into(),
        location: d.identity.location.clone(),
        running: node.is_running(),
        uptime_secs: uptime.as_secs_f64(),
        hlc: node.hlc().to_string(),
        sync,
        link,
        topics,
        memory_used: res.memory.total(),
        memory_max: res.memory_max,
        memory_parts: MEMORY_PARTS.iter().map(|&p| (p.name().to_string(), res.memory.get(p))).collect(),
        storage_used: res.storage_used,
        storage_max: res.storage_max,
        device_full: res.device_full,
        streams,
        down,
        keyed: keyed_views(node),
        keyed_checkpoints: (node.keyed_checkpoints_written(), node.keyed_checkpoints_failed()),
        counters: d.counters.clone(),
    }
}

fn keyed_views(node: &outpost_core::Node) -> Vec<KeyedView> {
    let mut views: Vec<KeyedView> = Vec::new();
    for (i, t) in node.config().topics.iter().enumerate() {
        let Some(state) = node.keyed(TopicIdx(i as u16)) else { continue };
        if views.iter().any(|v| v.topic == t.name) {
            continue;
        }
        views.push(KeyedView {
            topic: t.name.clone(),
            strategy: state.strategy().name().into(),
            keys: state.key_count() as u64,
            state_bytes: state.bytes(),
            state_bytes_max: state.limits().state_bytes_max,
            conflicts_total: state.conflicts_total(),
            conflicts_kept: state.conflicts().count() as u64,
            copies_waiting: node.keyed_copies_waiting(TopicIdx(i as u16)),
        });
    }
    views
}

fn age(secs: Option<f64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1}h", s / 3600.0),
        Some(s) => format!("{:.1}d", s / 86400.0),
    }
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

/// Health in one word and the reasons behind it.
///
/// Storage counts against health only for what the node cannot free by itself: records the
/// gateway has not acknowledged, local topics' data, the meta reserve and pending writes.
/// Segments the gateway holds are freed as soon as room is needed (a full device frees
/// them at once), so an edge whose backlog has synced is healthy however full its budget.
/// A full device is unhealthy until the node has room again, with what holds it and what
/// will end it in the reasons.
pub fn health(s: &Status) -> (&'static str, Vec<String>) {
    let mut why = Vec::new();
    if !s.running {
        why.push("recovering its log".to_string());
    }
    let edge = s.role == "edge";
    let goes_up = |t: &&TopicView| edge && matches!(t.sync.as_str(), "up" | "both");
    let reclaimable: u64 = s.topics.iter().filter(goes_up).map(|t| t.bytes.saturating_sub(t.unsynced_bytes)).sum();
    let local: u64 = s.topics.iter().filter(|t| edge && !goes_up(t)).map(|t| t.bytes).sum();
    let awaiting: Vec<String> = s
        .topics
        .iter()
        .filter(|t| goes_up(t) && t.unsynced_records > 0)
        .map(|t| {
            let oldest = t.oldest_unsynced_age_secs.map_or(String::new(), |a| format!(", oldest {}", age(Some(a))));
            format!("{} records of {} ({}{oldest})", t.unsynced_records, t.name, Bytes(t.unsynced_bytes))
        })
        .collect();
    let local_note =
        if local > 0 { format!("; {} of local topics, kept by their policy", Bytes(local)) } else { String::new() };
    if s.device_full {
        if !awaiting.is_empty() {
            why.push(format!(
                "the device has no space left: writes resume once the gateway acknowledges {} and their segments \
                 are freed{local_note}",
                awaiting.join(", ")
            ));
        } else if reclaimable > 0 {
            why.push(format!("the device has no space left: freeing {} the gateway holds", Bytes(reclaimable)));
        } else {
            why.push(format!(
                "the device has no space left though this node holds only {} and the gateway everything it \
                 synced{local_note}: free space on the device",
                Bytes(s.storage_used)
            ));
        }
    }
    let at_risk = s.storage_used.saturating_sub(reclaimable);
    if s.storage_max > 0 && at_risk * 10 >= s.storage_max * 9 {
        let held = if awaiting.is_empty() {
            String::new()
        } else {
            format!(": not yet at the gateway, {}", awaiting.join(", "))
        };
        why.push(format!(
            "storage {:.0}% of its {} budget in data only sync or an operator can free{held}{local_note}",
            pct(at_risk, s.storage_max),
            Bytes(s.storage_max)
        ));
    }
    if let Some(sync) = &s.sync {
        let link_down = s.link.peers.iter().find(|p| !p.connected);
        if sync.paused {
            why.push("sync paused by an operator".into());
        } else if let Some(p) = link_down {
            // The session outlives the connection by up to the session timeout: the link
            // says sooner that nothing can be sent.
            let error = p.last_error.as_deref().map_or(String::new(), |e| format!(": {e}"));
            why.push(format!("no connection to {} at {} for {}{error}", p.name, p.addr, age(Some(p.for_secs))));
        } else if sync.session != "active" {
            why.push(format!("no sync session with {}", sync.gateway));
        }
    }
    let state = if !s.running || s.device_full {
        "unhealthy"
    } else if why.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    (state, why)
}

pub fn render_health(s: &Status) -> String {
    let (state, why) = health(s);
    let mut o = format!("{} ({} {}) is {state}\n", s.node, s.role, s.id);
    for w in why {
        let _ = writeln!(o, "  - {w}");
    }
    let _ = writeln!(o, "uptime   {}", age(Some(s.uptime_secs)));
    o.push_str(&memory_line(s));
    let _ = writeln!(
        o,
        "storage  {} of {} ({:.0}%)",
        Bytes(s.storage_used),
        Bytes(s.storage_max),
        pct(s.storage_used, s.storage_max)
    );
    o
}

/// The core's memory against its share, and the process budget it is a share of.
fn memory_line(s: &Status) -> String {
    let mut o = format!(
        "memory   {} of {} ({:.0}%)",
        Bytes(s.memory_used),
        Bytes(s.memory_max),
        pct(s.memory_used, s.memory_max)
    );
    if s.link.process_memory_max > 0 {
        let _ = write!(
            o,
            " for the core; max_memory {}, of which the shell keeps {}",
            Bytes(s.link.process_memory_max),
            Bytes(s.link.shell_reserve)
        );
    }
    o.push('\n');
    o
}

pub fn render_sync(s: &Status) -> String {
    let Some(sync) = &s.sync else {
        return render_sync_down(s);
    };
    let mut o = String::new();
    let state = match (sync.paused, sync.session.as_str(), sync.next_attempt_in_secs) {
        (true, _, _) => "paused".to_string(),
        (false, "active", _) => "active".to_string(),
        (false, _, Some(t)) => format!("connecting (next attempt in {t:.1}s, attempt {})", sync.attempt),
        (false, other, None) => other.to_string(),
    };
    let _ = writeln!(o, "gateway  {}  session {state}", sync.gateway);
    for p in &s.link.peers {
        let link = if p.connected { "connected" } else { "down" };
        let _ = write!(o, "link     {} {link} for {}, {} reconnects", p.addr, age(Some(p.for_secs)), p.reconnects);
        match &p.last_error {
            Some(e) if !p.connected => {
                let _ = writeln!(o, " (last error: {e})");
            }
            _ => o.push('\n'),
        }
    }
    let _ = writeln!(
        o,
        "sent     {} records, {} ({} sessions, {} retransmits)",
        sync.records_sent,
        Bytes(sync.bytes_sent),
        sync.sessions_opened,
        sync.retransmits
    );
    let _ = writeln!(o, "{:<24} {:>12} {:>12} {:>12}", "topic", "durable", "acked", "unsynced");
    for t in s.topics.iter().filter(|t| t.acked.is_some()) {
        let _ =
            writeln!(o, "{:<24} {:>12} {:>12} {:>12}", t.name, t.durable_end, t.acked.unwrap_or(0), t.unsynced_records);
    }
    if s.role == "gateway" {
        // A middle tier: it relays up (above) and sends down to the nodes below it.
        o.push_str(&render_sync_down(s));
    } else if !s.streams.is_empty() {
        let _ = writeln!(o, "received from {}", sync.gateway);
        let _ = writeln!(o, "{:<24} {:>12}", "topic", "durable");
        for st in &s.streams {
            let _ = writeln!(o, "{:<24} {:>12}", st.topic, st.durable);
        }
    }
    o
}

/// A gateway's `sync status`: what it sends down, per edge and topic.
fn render_sync_down(s: &Status) -> String {
    if s.down.is_empty() {
        let what =
            if s.role == "gateway" { "it sends no cloud-to-edge topic to an edge now" } else { "it does not sync" };
        return format!("{} is a {}: {what}\n", s.node, s.role);
    }
    let mut o = format!(
        "{:<24} {:<11} {:<24} {:>12} {:>12} {:>12}\n",
        "edge", "session", "topic", "durable", "acked", "backlog"
    );
    for d in &s.down {
        let _ = writeln!(
            o,
            "{:<24} {:<11} {:<24} {:>12} {:>12} {:>12}",
            d.edge, d.session, d.topic, d.durable, d.acked, d.backlog
        );
    }
    o
}

/// `outpost queue`: what each topic holds that the next tier up has not acknowledged, and
/// on a gateway, what each edge has not acknowledged of what goes down.
pub fn render_queue(s: &Status) -> String {
    let mut o = render_queue_up(s);
    if !s.down.is_empty() {
        let _ = writeln!(o, "\n{:<24} {:<24} {:>12}", "edge", "topic", "backlog");
        for d in &s.down {
            let _ = writeln!(o, "{:<24} {:<24} {:>12}", d.edge, d.topic, d.backlog);
        }
    }
    o
}

fn render_queue_up(s: &Status) -> String {
    // (Wider when a `both` topic's halves say so: `both (down)`.)
    let w = s.topics.iter().map(|t| t.sync.len()).max().unwrap_or(0).max(6);
    let mut o = format!(
        "{:<24} {:>w$} {:>12} {:>12} {:>10} {:>10}\n",
        "topic", "sync", "unsynced", "bytes", "oldest", "evicted"
    );
    for t in &s.topics {
        let _ = writeln!(
            o,
            "{:<24} {:>w$} {:>12} {:>12} {:>10} {:>10}",
            t.name,
            t.sync,
            t.unsynced_records,
            Bytes(t.unsynced_bytes).to_string(),
            age(t.oldest_unsynced_age_secs),
            t.evicted_unsynced
        );
    }
    o
}

pub fn render_resources(s: &Status) -> String {
    let mut o = memory_line(s);
    for (part, bytes) in s.memory_parts.iter().filter(|(_, b)| **b > 0) {
        let _ = writeln!(o, "  {part:<16} {}", Bytes(*bytes));
    }
    let full = if s.device_full { "  DEVICE FULL" } else { "" };
    let _ = writeln!(
        o,
        "storage  {} of {} ({:.0}%){full}",
        Bytes(s.storage_used),
        Bytes(s.storage_max),
        pct(s.storage_used, s.storage_max)
    );
    let _ = writeln!(
        o,
        "{:<24} {:>4} {:>9} {:>12} {:>9} {:>12} {:>12}",
        "topic", "prio", "eviction", "bytes", "segments", "records", "unsynced"
    );
    for t in &s.topics {
        let _ = writeln!(
            o,
            "{:<24} {:>4} {:>9} {:>12} {:>9} {:>12} {:>12}",
            t.name,
            t.priority,
            t.eviction,
            Bytes(t.bytes).to_string(),
            t.segments,
            t.records,
            t.unsynced_records
        );
    }
    o
}

pub fn render_peers(s: &Status) -> String {
    let mut o = String::from("the daemon does not run site clusters (mesh) yet; these are this node's sync links.\n");
    let _ = writeln!(o, "{:<24} {:<22} {:<10} {:>10} {:>10}", "peer", "address", "link", "for", "reconnects");
    for p in &s.link.peers {
        let link = if p.connected { "up" } else { "down" };
        let _ = writeln!(
            o,
            "{:<24} {:<22} {:<10} {:>10} {:>10}",
            p.name,
            p.addr,
            link,
            age(Some(p.for_secs)),
            p.reconnects
        );
    }
    if s.link.peers.is_empty() {
        o.push_str("(no peers)\n");
    }
    o
}

/// The Prometheus text exposition format (version 0.0.4).
pub fn render_metrics(s: &Status) -> String {
    let mut o = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(o, "# HELP outpost_{name} {help}\n# TYPE outpost_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(o, "outpost_{name}{labels} {v}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    // The halves of a `both` topic share its name: a `direction` label tells their series apart.
    let labels = |t: &TopicView| match t.sync.strip_prefix("both (").and_then(|d| d.strip_suffix(')')) {
        Some(direction) => format!("{{topic=\"{}\",direction=\"{direction}\"}}", escape(&t.name)),
        None => format!("{{topic=\"{}\"}}", escape(&t.name)),
    };
    let per_topic =
        |f: &dyn Fn(&TopicView) -> f64| -> Vec<(String, f64)> { s.topics.iter().map(|t| (labels(t), f(t))).collect() };
    let c = &s.counters;
    metric("up", "gauge", "1 once recovery finished and the node accepts writes.", &one(u64::from(s.running)));
    metric("ingest_records_total", "counter", "Records acknowledged to producers (durable).", &one(c.records_acked));
    metric("stored_records_total", "counter", "Records a gateway made durable for its edges.", &one(c.records_stored));
    let refused = vec![
        ("{reason=\"busy\"}".to_string(), c.refused_busy as f64),
        ("{reason=\"storage_full\"}".to_string(), c.refused_storage_full as f64),
        ("{reason=\"other\"}".to_string(), c.refused_other as f64),
    ];
    metric("produce_refused_total", "counter", "Produces refused, by reason.", &refused);
    metric(
        "queue_records",
        "gauge",
        "Records not yet acknowledged by the gateway.",
        &per_topic(&|t| t.unsynced_records as f64),
    );
    metric(
        "queue_bytes",
        "gauge",
        "Bytes of segments holding unacknowledged records.",
        &per_topic(&|t| t.unsynced_bytes as f64),
    );
    metric(
        "sync_lag_seconds",
        "gauge",
        "At least how long records have waited for the gateway: the age of the newest record of the oldest segment holding unacknowledged ones (0 when none).",
        &per_topic(&|t| t.oldest_unsynced_age_secs.unwrap_or(0.0)),
    );
    metric("topic_bytes", "gauge", "Bytes on disk per topic.", &per_topic(&|t| t.bytes as f64));
    metric("storage_bytes", "gauge", "Storage used (segments, meta reserve, pending).", &one(s.storage_used));
    metric("storage_limit_bytes", "gauge", "The storage budget.", &one(s.storage_max));
    metric("memory_bytes", "gauge", "Memory the node accounts.", &one(s.memory_used));
    metric("memory_limit_bytes", "gauge", "The core's share of the memory budget.", &one(s.memory_max));
    metric(
        "process_memory_limit_bytes",
        "gauge",
        "resources.max_memory: the whole process's budget.",
        &one(s.link.process_memory_max),
    );
    metric("device_full", "gauge", "1 while storage reports no space.", &one(u64::from(s.device_full)));
    metric(
        "evicted_records_total",
        "counter",
        "Records evicted before the gateway had them.",
        &one(c.evicted_unsynced),
    );
    let per_keyed = |f: &dyn Fn(&KeyedView) -> u64| -> Vec<(String, f64)> {
        s.keyed.iter().map(|k| (format!("{{topic=\"{}\"}}", escape(&k.topic)), f(k) as f64)).collect()
    };
    metric("keyed_keys", "gauge", "Keys a keyed topic's state holds.", &per_keyed(&|k| k.keys));
    metric("keyed_state_bytes", "gauge", "Bytes a keyed topic's state accounts.", &per_keyed(&|k| k.state_bytes));
    metric(
        "keyed_conflicts_total",
        "counter",
        "Conflicts a keyed topic's merge met since the start (outpost conflicts lists the newest).",
        &per_keyed(&|k| k.conflicts_total),
    );
    metric(
        "keyed_copies_waiting",
        "gauge",
        "On a top gateway: edges' writes of a keyed topic stored and not yet copied for the other edges.",
        &per_keyed(&|k| k.copies_waiting),
    );
    let (written, failed) = s.keyed_checkpoints;
    let checkpoints =
        vec![("{result=\"written\"}".to_string(), written as f64), ("{result=\"failed\"}".into(), failed as f64)];
    if !s.keyed.is_empty() {
        metric(
            "keyed_checkpoints_total",
            "counter",
            "Checkpoints of the keyed states since the start: made durable, or failed (segments stay behind a failing one).",
            &checkpoints,
        );
    }
    let reconnects: u64 = s.link.peers.iter().map(|p| p.reconnects).sum();
    metric("reconnects_total", "counter", "Transport reconnections to peers.", &one(reconnects));
    metric("sessions_lost_total", "counter", "Sync sessions given up for lack of an answer.", &one(c.sessions_lost));
    metric("api_connections", "gauge", "Application connections open (HTTP and binary).", &one(s.link.api_connections));
    metric(
        "api_connections_dropped_total",
        "counter",
        "Slow or idle application connections dropped to admit newer ones.",
        &one(s.link.api_connections_evicted),
    );
    metric(
        "api_connections_refused_total",
        "counter",
        "Application connections refused because every connection was busy.",
        &one(s.link.api_connections_refused),
    );
    metric("hlc_rejections_total", "counter", "Peer timestamps rejected as too far ahead.", &one(c.hlc_rejected));
    metric("bad_messages_total", "counter", "Peer frames dropped as malformed.", &one(c.bad_messages));
    if let Some(sync) = &s.sync {
        metric("sync_paused", "gauge", "1 while an operator paused sync.", &one(u64::from(sync.paused)));
        metric(
            "sync_session_active",
            "gauge",
            "1 while a sync session is up.",
            &one(u64::from(sync.session == "active")),
        );
    }
    o
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod health_tests {
    use super::*;

    fn topic(name: &str, sync: &str, bytes: u64, unsynced_records: u64, unsynced_bytes: u64) -> TopicView {
        TopicView {
            name: name.into(),
            sync: sync.into(),
            priority: 5,
            eviction: "keep".into(),
            bytes,
            segments: 4,
            records: 1000,
            durable_end: 1000,
            acked: (sync == "up").then_some(1000 - unsynced_records),
            unsynced_records,
            unsynced_bytes,
            oldest_unsynced_age_secs: (unsynced_records > 0).then_some(90.0),
            evicted_unsynced: 0,
        }
    }

    /// An edge at 98% of an 8 MiB budget, connected, with these topics.
    fn edge(topics: Vec<TopicView>, device_full: bool) -> Status {
        let storage_used = (8 << 20) * 98 / 100;
        Status {
            node: "e".into(),
            id: 1,
            role: "edge".into(),
            location: None,
            running: true,
            uptime_secs: 60.0,
            hlc: String::new(),
            sync: None,
            link: Link::default(),
            topics,
            memory_used: 0,
            memory_max: 1,
            memory_parts: BTreeMap::new(),
            storage_used,
            storage_max: 8 << 20,
            device_full,
            streams: Vec::new(),
            down: Vec::new(),
            keyed: Vec::new(),
            keyed_checkpoints: (0, 0),
            counters: Counters::default(),
        }
    }

    #[test]
    fn a_gateway_s_sync_status_shows_what_each_edge_has_not_acknowledged() {
        let mut s = edge(Vec::new(), false);
        s.role = "gateway".into();
        assert!(render_sync(&s).contains("sends no cloud-to-edge topic"));
        let down = |edge: &str, acked| DownStream {
            edge: edge.into(),
            session: "active".into(),
            topic: "config".into(),
            durable: 800,
            acked,
            backlog: 800 - acked,
        };
        s.down = vec![down("van-1", 800), down("van-2", 120)];
        let out = render_sync(&s);
        let row = out.lines().find(|l| l.starts_with("van-2")).expect("a row per edge");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["van-2", "active", "config", "800", "120", "680"], "{out}");
        // `outpost queue` on a gateway: the backlog of each edge.
        let out = render_queue(&s);
        let row = out.lines().find(|l| l.starts_with("van-2")).expect("a row per edge");
        assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["van-2", "config", "680"], "{out}");
    }

    #[test]
    fn the_halves_of_a_both_topic_are_series_of_their_own() {
        let s = edge(vec![topic("orders", "both (up)", 1, 0, 0), topic("orders", "both (down)", 2, 0, 0)], false);
        let out = render_metrics(&s);
        assert!(out.contains("outpost_topic_bytes{topic=\"orders\",direction=\"up\"} 1\n"), "{out}");
        assert!(out.contains("outpost_topic_bytes{topic=\"orders\",direction=\"down\"} 2\n"), "{out}");
    }

    #[test]
    fn the_queue_table_widens_for_the_halves_of_a_both_topic() {
        let s = edge(vec![topic("events", "up", 0, 0, 0), topic("orders", "both (down)", 0, 0, 0)], false);
        let out = render_queue(&s);
        let lines: Vec<&str> = out.lines().take(3).collect();
        assert_eq!(lines[0].find("sync").map(|at| at + 4), lines[2].find("both (down)").map(|at| at + 11), "{out}");
        assert_eq!(lines[1].find(" up").map(|at| at + 3), lines[2].find("both (down)").map(|at| at + 11), "{out}");
    }

    #[test]
    fn a_full_budget_of_data_the_gateway_holds_is_healthy() {
        let s = edge(vec![topic("events", "up", 7 << 20, 0, 0)], false);
        assert_eq!(health(&s), ("healthy", vec![]));
    }

    #[test]
    fn storage_at_risk_names_what_is_not_yet_at_the_gateway() {
        let s =
            edge(vec![topic("events", "up", 13 << 19, 900, 13 << 19), topic("audit", "local", 1 << 20, 0, 0)], false);
        let (state, why) = health(&s);
        assert_eq!(state, "degraded");
        assert_eq!(
            why,
            ["storage 98% of its 8.0 MiB budget in data only sync or an operator can free: not yet at the gateway, \
              900 records of events (6.5 MiB, oldest 90s); 1.0 MiB of local topics, kept by their policy"]
        );
    }

    #[test]
    fn a_full_device_says_what_ends_it_and_clears_with_the_flag() {
        let waiting = edge(vec![topic("events", "up", 7 << 20, 900, 6 << 20)], true);
        let (state, why) = health(&waiting);
        assert_eq!(state, "unhealthy");
        assert!(why[0].starts_with("the device has no space left: writes resume once the gateway acknowledges 900"));
        let synced = edge(vec![topic("events", "up", 7 << 20, 0, 0)], true);
        assert_eq!(health(&synced).1, ["the device has no space left: freeing 7.0 MiB the gateway holds"]);
        let other = edge(vec![topic("events", "up", 0, 0, 0)], true);
        assert!(health(&other).1[0].ends_with("free space on the device"), "{:?}", health(&other));
        assert_eq!(health(&edge(vec![topic("events", "up", 7 << 20, 0, 0)], false)).0, "healthy");
    }
}

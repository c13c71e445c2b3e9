//! The scenario file format of DESIGN §4: parsing, validation and the model the
//! simulator runs.
//!
//! A scenario file is read in two steps. Serde reads the TOML into raw structs that
//! mirror the file exactly and reject unknown keys; validation then resolves names
//! (node ids, topics, device and network profiles), parses durations and sizes, checks
//! every cross-reference and time window, and builds a [`Scenario`] in which references
//! are indexes. A [`Scenario`] that exists is therefore consistent: every index is in
//! range, every window ends by `duration`, every partition lists each node exactly once.
//!
//! Every error names the file, the field as a path (`link[2].between[1]`,
//! `fault[0].at`), what was expected, and the line and column where the TOML parser
//! knows them. docs/SCENARIOS.md is the user-facing reference of this format; keep the
//! two in step.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use outpost_core::config::{Placement, PlacementTable, DEFAULT_PLACEMENT_TOML};
use outpost_core::keyed::Strategy;
use outpost_core::types::Duration;
use outpost_core::types::{Bytes, BytesParseError};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

use crate::profiles::{self, DeviceProfile, NetProfile};

/// The settle phase when a file gives none.
const DEFAULT_SETTLE: Duration = Duration::from_secs(10 * 60);
/// A topic's eviction priority when the file gives none (lower is evicted first).
const DEFAULT_PRIORITY: u8 = 5;
/// Longest accepted id or name, so that traces and reports stay readable.
const NAME_LEN_MAX: usize = 64;

// ---------------------------------------------------------------------------------------
// The validated model
// ---------------------------------------------------------------------------------------

/// A validated scenario: every reference resolved to an index, every time checked
/// against `duration`. Lists keep the order of the file, so `nodes[i]` is `node[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Short name, the file stem by convention (`vehicle-offline`).
    pub name: String,
    /// One sentence on what situation the scenario models.
    pub about: String,
    /// How long workloads and faults run.
    pub duration: Duration,
    /// After `duration`, faults heal and producers stop; the run must converge inside this.
    pub settle: Duration,
    /// The nodes, at least one.
    pub nodes: Vec<NodeSpec>,
    /// Network links between pairs of nodes; nodes with no link cannot talk.
    pub links: Vec<LinkSpec>,
    /// The topics; workloads refer to them by index.
    pub topics: Vec<TopicSpec>,
    /// Producers writing into topics.
    pub workloads: Vec<WorkloadSpec>,
    /// Scheduled faults, in file order (not sorted by time).
    pub faults: Vec<FaultSpec>,
    /// Scenario-specific bounds the run is judged by, on top of the guarantees.
    pub expect: Expect,
}

impl Scenario {
    /// Index in `nodes` of the node called `id`.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }
}

/// What part a node plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A device at the edge: produces, keeps data durably, syncs when it can.
    Edge,
    /// The cloud side that edge nodes sync with.
    Gateway,
}

/// One simulated node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    /// Unique id, used by links, workloads and faults.
    pub id: String,
    /// Edge or gateway.
    pub role: Role,
    /// The built-in device profile the node runs on.
    pub device: DeviceProfile,
    /// Compliance zone, for placement rules.
    pub zone: Option<String>,
    /// Site cluster: edge nodes sharing one run raft together. Only edge nodes have one.
    pub cluster: Option<String>,
    /// Memory limit: the file's `memory`, else the device's memory. Never above it.
    pub memory_bytes: u64,
    /// Storage limit: the file's `storage`, else the device's storage. Never above it in
    /// a file; a swarm world may give a device a data partition smaller than the budget
    /// assumes (`swarm::add_small_devices`). The simulated disk holds the smaller of the two.
    pub storage_bytes: u64,
    /// The node it syncs up to (`upstream`), by index; none: an edge's is the first
    /// gateway it has a link to.
    pub upstream: Option<usize>,
    /// A top gateway that applies its topics' retention to what comes up, behind durable
    /// checkpoints of its marks (`gateway.up_retention`); off, it keeps all of it.
    pub up_retention: bool,
}

/// A span of simulated time `[at, at + length)`, inside `[0, duration]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Start, from the beginning of the run.
    pub at: Duration,
    /// How long it lasts; more than zero.
    pub length: Duration,
}

/// A network link between two distinct nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    /// Index in `Scenario::nodes` of the first node of `between`.
    pub a: usize,
    /// Index in `Scenario::nodes` of the second node; never equal to `a`.
    pub b: usize,
    /// The built-in network profile of the link.
    pub net: NetProfile,
    /// Scheduled outages, sorted by `at`, never overlapping.
    pub outages: Vec<Window>,
}

/// Which way a topic's records travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncDirection {
    /// Written at the edge, forwarded to gateways.
    EdgeToCloud,
    /// Written at a gateway, forwarded to edge nodes.
    CloudToEdge,
    /// Written on either side, forwarded to the other.
    Bidirectional,
    /// Never leaves the site cluster (or the node, outside a cluster).
    Local,
}

/// What a topic may give up when its node's storage budget is full (see
/// `outpost_core::config::Eviction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionSpec {
    /// Never evict unsynced records: backpressure instead.
    #[default]
    Keep,
    /// A ring buffer: the oldest unsynced data goes, for writes of equal or higher priority.
    Oldest,
    /// Unsynced data goes only for writes to topics of strictly higher priority.
    Priority,
    /// As `oldest`, least recently read topics first.
    Lru,
    /// Keyed topics: only records superseded by a newer record of their key go.
    Compact,
}

impl EvictionSpec {
    /// Whether the policy lets unsynced records be evicted at all.
    pub fn is_lossy(self) -> bool {
        self != EvictionSpec::Keep
    }
}

/// How a topic's writes are acknowledged (see `outpost_core::config::Consistency`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsistencySpec {
    /// Durable on the node that took the write.
    #[default]
    Eventual,
    /// Committed by the writer's site cluster (Raft); refused without a quorum.
    Strong,
}

/// A topic.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicSpec {
    /// Unique name.
    pub name: String,
    /// Which way records travel.
    pub sync: SyncDirection,
    /// Eviction order: lower is evicted first.
    pub priority: u8,
    /// What the topic gives up when storage is full.
    pub eviction: EvictionSpec,
    /// Records carry keys, and replicas converge to one value per key.
    pub keyed: bool,
    /// How a keyed topic's writes are merged per key; `None`: records are kept as written
    /// (their keys feed compaction only), as before keyed merges existed.
    pub conflict: Option<Strategy>,
    /// A `custom` topic's merge (its `merge` module, loaded).
    pub merge: Option<outpost_core::keyed::MergeFn>,
    /// The topic's classification and the zones its records may reach (guarantee 7),
    /// from `classification` and the placement table (the default one and `[placement]`).
    pub placement: Option<Placement>,
    /// `strong` topics are written through a site cluster.
    pub consistency: ConsistencySpec,
    /// For a `cloud-to-edge` topic: the edges it goes down to (indices in
    /// `Scenario::nodes`, sorted), resolved from names and patterns (`till-*`); `None`:
    /// every edge below its gateway.
    pub subscribers: Option<Vec<usize>>,
    /// How old a segment of the topic may grow before retention deletes it: at an edge,
    /// once its gateway holds it; at a gateway sending it down, even where an edge lacks
    /// it (counted like an eviction). `None`: no limit by age.
    pub retention_age: Option<Duration>,
    /// How large the topic's log may grow before retention deletes its oldest segments
    /// (what the next hop holds; at a gateway sending it down, what every edge holds); at
    /// most, and by default, a quarter of the node's storage over its topics.
    pub retention_bytes: Option<u64>,
    /// One half of a `bidirectional` topic: the loader splits one into the half its edges
    /// write (`edge-to-cloud`, in the topic's place) and the half its top gateway writes
    /// (`cloud-to-edge`, after the last topic, with the topic's `subscribers`), each
    /// checked as a topic of that direction (see `outpost_core::config::TopicConfig`).
    pub both_ways: bool,
}

/// A producer writing records into one topic on one node.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// Index in `Scenario::nodes`.
    pub node: usize,
    /// Index in `Scenario::topics`.
    pub topic: usize,
    /// Records per simulated second; finite and more than zero.
    pub rate: f64,
    /// Payload bytes per record; more than zero.
    pub size: u32,
    /// Number of distinct keys written: `Some` exactly when the topic is keyed.
    pub keys: Option<u32>,
    /// Of the writes to a topic with a conflict strategy, the share that are deletes.
    pub deletes: f64,
    /// When the producer starts.
    pub from: Duration,
    /// When it stops: after `from`, at most `duration`.
    pub until: Duration,
}

/// A scheduled fault. Each ends by `duration`; the settle phase heals whatever is left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultSpec {
    /// The node loses everything its disk did not make durable.
    Crash {
        /// Index in `Scenario::nodes`.
        node: usize,
        /// When it crashes.
        at: Duration,
        /// Down time before the restart; `None`: down until the settle phase.
        /// `at + restart_after` is at most `duration`.
        restart_after: Option<Duration>,
    },
    /// The nodes are split into groups that talk only within themselves.
    Partition {
        /// Every node exactly once. Nodes the file left out form the last group.
        groups: Vec<Vec<usize>>,
        /// When the partition starts.
        at: Duration,
        /// How long it lasts.
        length: Duration,
    },
    /// The node's wall clock jumps.
    ClockJump {
        /// Index in `Scenario::nodes`.
        node: usize,
        /// When it jumps.
        at: Duration,
        /// How far, in nanoseconds: negative is backwards. Never zero.
        by_nanos: i64,
    },
    /// The node's disk refuses writes for a while.
    DiskFull {
        /// Index in `Scenario::nodes`.
        node: usize,
        /// When the disk fills.
        at: Duration,
        /// How long it stays full.
        length: Duration,
    },
    /// Bits flip in one random durable block of the node's disk.
    DiskCorrupt {
        /// Index in `Scenario::nodes`.
        node: usize,
        /// When the corruption happens.
        at: Duration,
    },
    /// Power loss that also destroys the newest durable frames (one to three) of the
    /// newest segment of one of the node's eventual topics: records acknowledged, perhaps
    /// already at the gateway. The node crashes; recovery must cut them and never give
    /// their sequences out again.
    CorruptTail {
        /// Index in `Scenario::nodes`.
        node: usize,
        /// When it happens.
        at: Duration,
        /// Down time before the restart, as for `Crash`.
        restart_after: Option<Duration>,
    },
    /// An edge with valid credentials turns against its gateway for a while (a stolen or
    /// compromised device): besides its own traffic, it sends the records of the other
    /// edges it sees going to that gateway as its own, with their values changed, and
    /// replays their frames verbatim (see `crate::impostor`).
    Impostor {
        /// Index in `Scenario::nodes`: an edge.
        node: usize,
        /// When it starts.
        at: Duration,
        /// How long it goes on.
        length: Duration,
        /// The run fails if the impostor forged nothing or was never refused (a scenario
        /// file's always does); a swarm world's may meet none of its victims' traffic.
        must_try: bool,
    },
}

/// Scenario-specific bounds. The guarantees of DESIGN §3 are checked regardless.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// At most this many acknowledged records lost.
    pub lost: Option<u64>,
    /// At most this many duplicate arrivals.
    pub duplicates: Option<u64>,
    /// At most this many records out of origin order.
    pub out_of_order: Option<u64>,
    /// Convergence within this long after the settle phase starts; at most `settle`.
    /// `None`: the whole settle phase is the bound.
    pub converge_within: Option<Duration>,
    /// At least this many records delivered.
    pub min_delivered: Option<u64>,
    /// At least this many acknowledged records evicted unsynced: a scenario about
    /// storage pressure fails if the pressure never came.
    pub min_evicted_unsynced: Option<u64>,
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a scenario could not be loaded. Renders as one line:
/// `scenarios/x.toml:14:11: link[0].between[1]: unknown node "clod"; nodes are: ecu, cloud`.
#[derive(Debug)]
pub enum ScenarioError {
    /// The file could not be read.
    Io {
        /// The path that was tried.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file was read but is not a valid scenario.
    Invalid {
        /// The file, as given to [`parse`] or [`load`].
        file: String,
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// 1-based column (in characters) of the offending text, when known.
        column: Option<usize>,
        /// Path of the field (`fault[0].at`); empty for a TOML syntax error.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Io { path, source } => {
                write!(f, "{path}: cannot read the scenario file: {source}")
            }
            ScenarioError::Invalid { file, line, column, field, message } => {
                write!(f, "{file}")?;
                if let (Some(line), Some(column)) = (line, column) {
                    write!(f, ":{line}:{column}")?;
                }
                if !field.is_empty() {
                    write!(f, ": {field}")?;
                }
                write!(f, ": {message}")
            }
        }
    }
}

impl std::error::Error for ScenarioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ScenarioError::Io { source, .. } => Some(source),
            ScenarioError::Invalid { .. } => None,
        }
    }
}

/// Reads and validates the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(source) => Err(ScenarioError::Io { path: file, source }),
    }
}

/// Parses and validates scenario `text`; `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let span = e.span().filter(|s| !s.is_empty());
        let field = span.as_ref().map(|s| field_at(&places(text), s)).unwrap_or_default();
        // Syntax errors span several lines ("invalid table header\nexpected `.`, `]`").
        let message = e.message().trim().replace('\n', "; ");
        invalid(text, file, span, field, message)
    })?;
    let mut s = validate(&raw).map_err(|p| {
        let span = span_of(&places(text), &p.field);
        invalid(text, file, span, p.field, p.message)
    })?;
    // Merge modules are named relative to the scenario file and loaded once it is valid.
    let dir = Path::new(file).parent().unwrap_or(Path::new("."));
    for (i, r) in raw.topic.iter().enumerate() {
        let Some(module) = &r.merge else { continue };
        let merge = outpost_wasm_merge::WasmMerge::from_file(&dir.join(module), Default::default()).map_err(|e| {
            let field = format!("topic[{i}].merge");
            invalid(text, file, span_of(&places(text), &field), field, e.to_string())
        })?;
        let merge = outpost_core::keyed::MergeFn::new(merge);
        for t in s.topics.iter_mut().filter(|t| t.name == r.name) {
            t.merge = Some(merge.clone());
        }
    }
    Ok(s)
}

fn invalid(text: &str, file: &str, span: Option<Range<usize>>, field: String, message: String) -> ScenarioError {
    let position = span.and_then(|s| line_column(text, s.start));
    ScenarioError::Invalid {
        file: file.to_owned(),
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        field,
        message,
    }
}

/// 1-based line and character column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    Some((line, column))
}

// ---------------------------------------------------------------------------------------
// Locating fields: byte spans <-> field paths
// ---------------------------------------------------------------------------------------

/// The shape of a TOML document with the span of every key and value. Read with the
/// toml deserializer, which fills `Spanned`; used only to point errors at text.
enum Located {
    Leaf,
    Array(Vec<Spanned<Located>>),
    Table(Vec<(Spanned<String>, Spanned<Located>)>),
}

impl<'de> Deserialize<'de> for Located {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LocatedVisitor)
    }
}

struct LocatedVisitor;

impl<'de> Visitor<'de> for LocatedVisitor {
    type Value = Located;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Located, E> {
        Ok(Located::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Located, E> {
        Ok(Located::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Located, E> {
        Ok(Located::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Located, E> {
        Ok(Located::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Located, E> {
        Ok(Located::Leaf)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Located, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Located::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Located, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Located::Table(entries))
    }
}

/// A field path and a span of text that belongs to it.
struct Place {
    path: String,
    span: Range<usize>,
}

/// Every key and value of `text` with its path. Empty when `text` is not TOML or holds
/// something `Located` cannot read (a datetime): errors then carry no line, nothing worse.
fn places(text: &str) -> Vec<Place> {
    let mut out = Vec::new();
    if let Ok(root) = toml::from_str::<Located>(text) {
        collect_places(&root, "", &mut out);
    }
    out
}

fn collect_places(node: &Located, path: &str, out: &mut Vec<Place>) {
    match node {
        Located::Leaf => {}
        Located::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.push(Place { path: item_path.clone(), span: item.span() });
                collect_places(item.get_ref(), &item_path, out);
            }
        }
        Located::Table(entries) => {
            for (key, value) in entries {
                let key_path =
                    if path.is_empty() { key.get_ref().clone() } else { format!("{path}.{}", key.get_ref()) };
                // The value first: `span_of` then points at the offending value.
                out.push(Place { path: key_path.clone(), span: value.span() });
                out.push(Place { path: key_path.clone(), span: key.span() });
                collect_places(value.get_ref(), &key_path, out);
            }
        }
    }
}

/// The path of the innermost key or value whose text covers all of `span`; empty when
/// none does (an error about the top-level table).
fn field_at(places: &[Place], span: &Range<usize>) -> String {
    places
        .iter()
        .filter(|p| p.span.start <= span.start && span.end <= p.span.end)
        .min_by_key(|p| (p.span.len(), std::cmp::Reverse(p.path.len())))
        .map(|p| p.path.clone())
        .unwrap_or_default()
}

/// The span of `field`, or of its nearest enclosing field that the text has (a missing
/// key is reported at the table that lacks it).
fn span_of(places: &[Place], field: &str) -> Option<Range<usize>> {
    let mut path = field;
    loop {
        if let Some(place) = places.iter().find(|p| p.path == path) {
            return Some(place.span.clone());
        }
        path = &path[..path.rfind(['.', '['])?];
    }
}

// ---------------------------------------------------------------------------------------
// Raw file structure (serde)
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    about: String,
    duration: String,
    settle: Option<String>,
    #[serde(default)]
    node: Vec<RawNode>,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default)]
    topic: Vec<RawTopic>,
    #[serde(default)]
    workload: Vec<RawWorkload>,
    #[serde(default)]
    fault: Vec<RawFault>,
    expect: Option<RawExpect>,
    #[serde(default)]
    placement: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: String,
    role: Role,
    device: String,
    zone: Option<String>,
    cluster: Option<String>,
    memory: Option<RawSize>,
    storage: Option<RawSize>,
    upstream: Option<String>,
    #[serde(default)]
    up_retention: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    between: Vec<String>,
    net: String,
    #[serde(default)]
    outages: Vec<RawWindow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    at: String,
    #[serde(rename = "for")]
    length: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: String,
    sync: SyncDirection,
    priority: Option<u8>,
    #[serde(default)]
    eviction: EvictionSpec,
    #[serde(default)]
    keyed: bool,
    conflict: Option<String>,
    /// A `custom` topic's WebAssembly module, relative to the scenario file.
    merge: Option<String>,
    classification: Option<String>,
    #[serde(default)]
    consistency: ConsistencySpec,
    subscribers: Option<Vec<String>>,
    retention_age: Option<String>,
    retention_bytes: Option<RawSize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    node: String,
    topic: String,
    rate: f64,
    size: u32,
    keys: Option<u32>,
    deletes: Option<f64>,
    from: Option<String>,
    until: Option<String>,
}

/// One `[[fault]]` table. Flat rather than a serde-tagged enum, so that every error keeps
/// the line of its key; `fault` checks which fields each kind takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: FaultKind,
    at: String,
    node: Option<String>,
    restart_after: Option<String>,
    groups: Option<Vec<Vec<String>>>,
    #[serde(rename = "for")]
    length: Option<String>,
    by: Option<String>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FaultKind {
    Crash,
    Partition,
    ClockJump,
    DiskFull,
    DiskCorrupt,
    CorruptTail,
    Impostor,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Partition => "partition",
            FaultKind::ClockJump => "clock-jump",
            FaultKind::DiskFull => "disk-full",
            FaultKind::DiskCorrupt => "disk-corrupt",
            FaultKind::CorruptTail => "corrupt-tail",
            FaultKind::Impostor => "impostor",
        }
    }

    /// The fields of this kind besides `kind` and `at` (DESIGN §4, fault table).
    fn fields(self) -> &'static [&'static str] {
        match self {
            FaultKind::Crash => &["node", "restart_after"],
            FaultKind::Partition => &["groups", "for"],
            FaultKind::ClockJump => &["node", "by"],
            FaultKind::DiskFull => &["node", "for"],
            FaultKind::DiskCorrupt => &["node"],
            FaultKind::CorruptTail => &["node", "restart_after"],
            FaultKind::Impostor => &["node", "for"],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    lost: Option<u64>,
    duplicates: Option<u64>,
    out_of_order: Option<u64>,
    converge_within: Option<String>,
    min_delivered: Option<u64>,
    min_evicted_unsynced: Option<u64>,
}

/// A size as written: `"96MiB"` or a plain byte count (`1000` or `"1000"`).
enum RawSize {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawSizeVisitor)
    }
}

struct RawSizeVisitor;

impl Visitor<'_> for RawSizeVisitor {
    type Value = RawSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"96MiB\", \"1GiB\" or a byte count")
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawSize, E> {
        Ok(RawSize::Bytes(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
        u64::try_from(v).map(RawSize::Bytes).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawSize, E> {
        Ok(RawSize::Text(v.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// A validation failure before it is placed in the file.
pub(crate) struct Problem {
    field: String,
    message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { field: field.into(), message: message.into() }
}

fn validate(raw: &RawScenario) -> Result<Scenario, Problem> {
    check_name("name", &raw.name)?;
    if raw.about.trim().is_empty() {
        return Err(problem("about", "empty; say in one sentence what the scenario models"));
    }
    let duration = positive_duration("duration", &raw.duration)?;
    let settle = match &raw.settle {
        Some(text) => positive_duration("settle", text)?,
        None => DEFAULT_SETTLE,
    };
    let nodes = nodes(&raw.node)?;
    let links = links(&raw.link, &nodes, duration)?;
    check_upstream_links(&nodes, &links)?;
    let table = placement_table(&raw.placement)?;
    let topics = topics(&raw.topic, &nodes, &table)?;
    let workloads = workloads(&raw.workload, &nodes, &topics, duration)?;
    check_sync_paths(&workloads, &nodes, &links, &topics)?;
    let faults = faults(&raw.fault, &nodes, duration)?;
    let expect = match &raw.expect {
        Some(e) => expect(e, settle)?,
        None => Expect::default(),
    };
    let scenario = Scenario {
        name: raw.name.clone(),
        about: raw.about.clone(),
        duration,
        settle,
        nodes,
        links,
        topics,
        workloads,
        faults,
        expect,
    };
    check_placement(&scenario)?;
    Ok(scenario)
}

/// Guarantee 7 at load, with the daemon's messages (`outpost_core::config::Placement`):
/// a node writes a classified topic only where it may hold it; an edge's records go up
/// only to a gateway (or, in a site cluster, to members) in one of its zones, and a
/// middle tier whose upstream may not take them keeps them; what a gateway writes goes
/// down only through nodes in its zones.
pub(crate) fn check_placement(s: &Scenario) -> Result<(), Problem> {
    let at = |n: usize| (s.nodes[n].id.as_str(), s.nodes[n].zone.as_deref());
    for (i, w) in s.workloads.iter().enumerate() {
        let t = &s.topics[w.topic];
        let Some(p) = &t.placement else { continue };
        let field = format!("workload[{i}].node");
        let writer = &s.nodes[w.node];
        if let Some(why) = p.refuses_holder(&t.name, &format!("node {:?}", writer.id), writer.zone.as_deref()) {
            return Err(problem(field, why));
        }
        let mut hops = Vec::new();
        match writer.role {
            Role::Edge => {
                // A strong topic's writes go to every member of the writer's site.
                let strong = t.consistency == ConsistencySpec::Strong && writer.cluster.is_some();
                let members = s.nodes.iter().enumerate().filter(|(_, n)| strong && n.cluster == writer.cluster);
                hops.extend(members.map(|(m, _)| (w.node, m)).filter(|&(a, b)| a != b));
                if let Some(up) = s.upstream_of(w.node).filter(|_| t.sync != SyncDirection::Local) {
                    hops.push((w.node, up));
                }
            }
            Role::Gateway => {
                let gets = |e: usize| t.subscribers.as_ref().is_none_or(|subs| subs.contains(&e));
                // Each hop down from the writer to every edge below it that gets the topic.
                for e in (0..s.nodes.len()).filter(|&e| s.nodes[e].role == Role::Edge && gets(e)) {
                    let up = s.path_up_of(e);
                    let Some(k) = up.iter().position(|&g| g == w.node) else { continue };
                    let path: Vec<usize> = std::iter::once(e).chain(up[..=k].iter().copied()).collect();
                    hops.extend(path.windows(2).map(|pair| (pair[1], pair[0])));
                }
            }
        }
        for (from, to) in hops {
            if let Some(why) = p.refuses_route(&t.name, at(from), at(to)) {
                return Err(problem(field, why));
            }
        }
    }
    Ok(())
}

impl Scenario {
    /// The node that node `i` syncs up to: its `upstream`, or for an edge without one the
    /// first gateway it has a link to.
    pub fn upstream_of(&self, i: usize) -> Option<usize> {
        if let Some(j) = self.nodes[i].upstream {
            return Some(j);
        }
        if self.nodes[i].role != Role::Edge {
            return None;
        }
        let peer = |l: &LinkSpec| match (l.a == i, l.b == i) {
            (true, _) => Some(l.b),
            (_, true) => Some(l.a),
            _ => None,
        };
        self.links.iter().filter_map(peer).find(|&j| self.nodes[j].role == Role::Gateway)
    }

    /// The nodes above node `i`, nearest first.
    pub fn path_up_of(&self, i: usize) -> Vec<usize> {
        let mut path = Vec::new();
        let mut at = i;
        while let Some(u) = self.upstream_of(at) {
            if path.contains(&u) || path.len() > self.nodes.len() {
                break;
            }
            path.push(u);
            at = u;
        }
        path
    }

    /// Whether node `i` sends topic `t` on up: it has an upstream, and the topic's placement
    /// (if any) allows the upstream's zone. A middle tier that does not is the topic's top.
    pub fn forwards_up(&self, i: usize, t: usize) -> bool {
        let placement = self.topics[t].placement.as_ref();
        self.upstream_of(i).is_some_and(|u| placement.is_none_or(|p| p.allows(self.nodes[u].zone.as_deref())))
    }

    /// The nodes topic `t`'s records written at node `i` reach going up, nearest first:
    /// the path up as far as the topic's placement allows (a classified topic stays at the
    /// last gateway in its zones).
    pub fn home_path_of(&self, i: usize, t: usize) -> Vec<usize> {
        let placement = self.topics[t].placement.as_ref();
        let allowed = |g: &usize| placement.is_none_or(|p| p.allows(self.nodes[*g].zone.as_deref()));
        self.path_up_of(i).into_iter().take_while(allowed).collect()
    }
}

fn nodes(raw: &[RawNode]) -> Result<Vec<NodeSpec>, Problem> {
    if raw.is_empty() {
        return Err(problem("node", "no nodes; add at least one [[node]] table"));
    }
    let mut nodes: Vec<NodeSpec> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let field = format!("node[{i}]");
        check_name(&format!("{field}.id"), &r.id)?;
        if let Some(first) = nodes.iter().position(|n| n.id == r.id) {
            return Err(problem(
                format!("{field}.id"),
                format!("duplicate node id {:?}; node[{first}] already has it", r.id),
            ));
        }
        let device = profiles::device(&r.device).ok_or_else(|| {
            problem(
                format!("{field}.device"),
                format!(
                    "unknown device profile {:?}; expected one of: {}",
                    r.device,
                    profiles::DEVICE_NAMES.join(", ")
                ),
            )
        })?;
        if let Some(zone) = &r.zone {
            check_name(&format!("{field}.zone"), zone)?;
        }
        if let Some(cluster) = &r.cluster {
            check_name(&format!("{field}.cluster"), cluster)?;
            if r.role != Role::Edge {
                return Err(problem(
                    format!("{field}.cluster"),
                    "only edge nodes form site clusters; remove cluster from this gateway",
                ));
            }
        }
        let limit = |key: &str, raw: Option<&RawSize>, physical: u64| {
            size_limit(&format!("{field}.{key}"), raw, physical, key, device.name)
        };
        let memory_bytes = limit("memory", r.memory.as_ref(), device.memory_bytes)?;
        let storage_bytes = limit("storage", r.storage.as_ref(), device.storage_bytes)?;
        nodes.push(NodeSpec {
            id: r.id.clone(),
            role: r.role,
            device,
            zone: r.zone.clone(),
            cluster: r.cluster.clone(),
            memory_bytes,
            storage_bytes,
            upstream: None,
            up_retention: r.up_retention,
        });
    }
    for (i, r) in raw.iter().enumerate() {
        let Some(up) = &r.upstream else { continue };
        let field = format!("node[{i}].upstream");
        let j = nodes.iter().position(|n| &n.id == up).ok_or_else(|| {
            let known: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
            problem(&field, format!("unknown node {up:?}; nodes are: {}", known.join(", ")))
        })?;
        if j == i {
            return Err(problem(&field, format!("node {up:?} cannot sync up to itself")));
        }
        nodes[i].upstream = Some(j);
    }
    for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.up_retention) {
        if n.role != Role::Gateway || n.upstream.is_some() {
            return Err(problem(
                format!("node[{i}].up_retention"),
                "only a top gateway (no upstream) takes it: a middle tier always deletes what the tier above \
                 acknowledged, and an edge what its gateway holds",
            ));
        }
    }
    Ok(nodes)
}

/// A node syncs up to its `upstream` over a link of its own: messages in the simulator go
/// from node to node along one link.
fn check_upstream_links(nodes: &[NodeSpec], links: &[LinkSpec]) -> Result<(), Problem> {
    for (i, n) in nodes.iter().enumerate() {
        let Some(j) = n.upstream else { continue };
        if !links.iter().any(|l| (l.a, l.b) == (i, j) || (l.a, l.b) == (j, i)) {
            return Err(problem(
                format!("node[{i}].upstream"),
                format!(
                    "node {:?} syncs up to {:?}, but no [[link]] joins them; expected a [[link]] with \
                     between = [{:?}, {:?}]",
                    n.id, nodes[j].id, n.id, nodes[j].id
                ),
            ));
        }
    }
    Ok(())
}

/// A node's memory or storage limit: the override if any (more than zero, at most what
/// the device has), else the device's figure.
fn size_limit(field: &str, raw: Option<&RawSize>, physical: u64, what: &str, device: &str) -> Result<u64, Problem> {
    let Some(raw) = raw else {
        return Ok(physical);
    };
    let bytes = parse_size(field, raw)?;
    if bytes == 0 {
        return Err(problem(field, "0 bytes; expected more than zero"));
    }
    if bytes > physical {
        return Err(problem(
            field,
            format!(
                "{} is more than the {} of {what} of device {:?}; expected at most that \
                 (choose a larger device or a smaller limit)",
                show_size(bytes),
                show_size(physical),
                device
            ),
        ));
    }
    Ok(bytes)
}

fn parse_size(field: &str, raw: &RawSize) -> Result<u64, Problem> {
    let text = match raw {
        RawSize::Bytes(bytes) => return Ok(*bytes),
        RawSize::Text(text) => text.trim(),
    };
    let bad = || {
        problem(
            field,
            format!(
                "{text:?} is not a size; expected a whole number with an optional unit, \
                 e.g. \"96MiB\", \"1GiB\", \"512KiB\", \"500MB\" or \"1000\""
            ),
        )
    };
    match Bytes::parse(text) {
        Ok(bytes) => Ok(bytes),
        Err(BytesParseError::Malformed) => Err(bad()),
        Err(BytesParseError::TooLarge) => Err(problem(field, format!("{text:?} is too large; sizes stop at 16 EiB"))),
    }
}

fn links(raw: &[RawLink], nodes: &[NodeSpec], duration: Duration) -> Result<Vec<LinkSpec>, Problem> {
    let mut links: Vec<LinkSpec> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let field = format!("link[{i}]");
        let [a_id, b_id] = r.between.as_slice() else {
            return Err(problem(
                format!("{field}.between"),
                format!("{} node ids; expected exactly two, e.g. [\"ecu\", \"cloud\"]", r.between.len()),
            ));
        };
        let a = node_ref(nodes, &format!("{field}.between[0]"), a_id)?;
        let b = node_ref(nodes, &format!("{field}.between[1]"), b_id)?;
        if a == b {
            return Err(problem(
                format!("{field}.between[1]"),
                format!("the link joins node {a_id:?} to itself; expected two different nodes"),
            ));
        }
        if let Some(j) = links.iter().position(|l| (l.a, l.b) == (a, b) || (l.a, l.b) == (b, a)) {
            return Err(problem(
                format!("{field}.between"),
                format!("link[{j}] already joins {a_id:?} and {b_id:?}; expected one link per pair"),
            ));
        }
        let net = profiles::net(&r.net).ok_or_else(|| {
            problem(
                format!("{field}.net"),
                format!("unknown network profile {:?}; expected one of: {}", r.net, profiles::NET_NAMES.join(", ")),
            )
        })?;
        let mut outages = Vec::with_capacity(r.outages.len());
        for (j, o) in r.outages.iter().enumerate() {
            let window_field = format!("{field}.outages[{j}]");
            outages.push((j, window(&window_field, &o.at, &o.length, duration)?));
        }
        outages.sort_by_key(|(_, w)| w.at);
        for pair in outages.windows(2) {
            let ((first, w), (second, next)) = (pair[0], pair[1]);
            if next.at.0 < end(w) {
                return Err(problem(
                    format!("{field}.outages[{second}]"),
                    format!(
                        "overlaps outages[{first}] ({}); expected outages of one link not to overlap",
                        show_window(w)
                    ),
                ));
            }
        }
        links.push(LinkSpec { a, b, net, outages: outages.into_iter().map(|(_, w)| w).collect() });
    }
    Ok(links)
}

/// The placement table: the default one (`outpost_core::config::DEFAULT_PLACEMENT_TOML`)
/// with the file's `[placement]` over it, every name checked, as the daemon's loader builds it.
fn placement_table(raw: &BTreeMap<String, Vec<String>>) -> Result<PlacementTable, Problem> {
    let defaults = toml::from_str(DEFAULT_PLACEMENT_TOML).expect("the default placement table is valid TOML");
    let table = PlacementTable::new(defaults, raw).map_err(|e| problem(e.field, e.message))?;
    for (field, name) in table.names() {
        check_name(&field, name)?;
    }
    Ok(table)
}

fn topics(raw: &[RawTopic], nodes: &[NodeSpec], table: &PlacementTable) -> Result<Vec<TopicSpec>, Problem> {
    let mut topics: Vec<TopicSpec> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let field = format!("topic[{i}]");
        check_name(&format!("{field}.name"), &r.name)?;
        if let Some(first) = topics.iter().position(|t| t.name == r.name) {
            return Err(problem(
                format!("{field}.name"),
                format!("duplicate topic name {:?}; topic[{first}] already has it", r.name),
            ));
        }
        if r.eviction == EvictionSpec::Compact && !r.keyed {
            return Err(problem(
                format!("{field}.eviction"),
                "compact keeps the newest value per key, so it needs a keyed topic; add keyed = true or choose \
                 another policy",
            ));
        }
        let conflict = match &r.conflict {
            None => None,
            Some(name) => Some(Strategy::from_name(name).ok_or_else(|| {
                let names = Strategy::NAMED.map(Strategy::name);
                problem(
                    format!("{field}.conflict"),
                    format!("unknown strategy {name:?}; expected one of {}", list(&names)),
                )
            })?),
        };
        match (conflict == Some(Strategy::Custom), r.merge.is_some()) {
            (true, false) => {
                return Err(problem(
                    format!("{field}.merge"),
                    "a \"custom\" topic needs merge = \"path/to/module.wat\" (relative to the scenario file)",
                ))
            }
            (false, true) => {
                return Err(problem(
                    format!("{field}.merge"),
                    "only a \"custom\" topic takes a merge module; remove it",
                ))
            }
            _ => {}
        }
        if r.conflict.is_some() && !r.keyed {
            return Err(problem(
                format!("{field}.conflict"),
                "conflict resolution applies to keyed topics only; add keyed = true or remove conflict",
            ));
        }
        if r.conflict.is_some() && r.eviction != EvictionSpec::Keep {
            return Err(problem(
                format!("{field}.eviction"),
                "a keyed topic with a conflict strategy keeps its records (eviction = \"keep\"): compaction or \
                 eviction would drop versions the other replicas merge",
            ));
        }
        let placement = match &r.classification {
            None => None,
            Some(c) => Some(table.placement(c).map_err(|m| problem(format!("{field}.classification"), m))?),
        };
        if r.consistency == ConsistencySpec::Strong {
            if !matches!(r.sync, SyncDirection::EdgeToCloud | SyncDirection::Local) {
                return Err(problem(
                    format!("{field}.sync"),
                    "a strong topic syncs edge-to-cloud (from its site's leader) or stays local",
                ));
            }
            if r.eviction != EvictionSpec::Keep {
                return Err(problem(
                    format!("{field}.eviction"),
                    "a strong topic keeps its records (its site committed them): use eviction = \"keep\"",
                ));
            }
        }
        let subscribers = match &r.subscribers {
            None => None,
            Some(_) if !matches!(r.sync, SyncDirection::CloudToEdge | SyncDirection::Bidirectional) => {
                return Err(problem(
                    format!("{field}.subscribers"),
                    "only a cloud-to-edge or bidirectional topic has subscribers (the edges it goes down to)",
                ));
            }
            Some(entries) => Some(subscribers(&format!("{field}.subscribers"), entries, nodes)?),
        };
        let retention_age = match &r.retention_age {
            Some(text) => Some(positive_duration(&format!("{field}.retention_age"), text)?),
            None => None,
        };
        let retention_bytes = match &r.retention_bytes {
            Some(raw) => match parse_size(&format!("{field}.retention_bytes"), raw)? {
                0 => return Err(problem(format!("{field}.retention_bytes"), "0 bytes; expected more than zero")),
                bytes => Some(bytes),
            },
            None => None,
        };
        topics.push(TopicSpec {
            name: r.name.clone(),
            sync: r.sync,
            priority: r.priority.unwrap_or(DEFAULT_PRIORITY),
            eviction: r.eviction,
            keyed: r.keyed,
            conflict,
            merge: None,
            placement,
            consistency: r.consistency,
            subscribers,
            retention_age,
            retention_bytes,
            both_ways: false,
        });
    }
    Ok(split_both_ways(topics))
}

/// Splits each `bidirectional` topic into its two halves (`TopicSpec::both_ways`), as the
/// core's `NodeConfig::split_both_ways` does, so that topic `i` is every node's topic `i`.
pub fn split_both_ways(mut topics: Vec<TopicSpec>) -> Vec<TopicSpec> {
    let mut down_halves = Vec::new();
    for t in topics.iter_mut().filter(|t| t.sync == SyncDirection::Bidirectional) {
        let down = TopicSpec { sync: SyncDirection::CloudToEdge, both_ways: true, ..t.clone() };
        (t.sync, t.both_ways, t.subscribers) = (SyncDirection::EdgeToCloud, true, None);
        down_halves.push(down);
    }
    topics.extend(down_halves);
    topics
}

/// The topic a node of `role` writes under `name`: of a bidirectional topic's halves, the
/// one written on that side.
pub fn topic_written_by(topics: &[TopicSpec], name: &str, role: Role) -> Option<usize> {
    let side = match role {
        Role::Edge => SyncDirection::EdgeToCloud,
        Role::Gateway => SyncDirection::CloudToEdge,
    };
    let first = topics.iter().position(|t| t.name == name)?;
    Some(topics.iter().position(|t| t.name == name && t.both_ways && t.sync == side).unwrap_or(first))
}

/// The edges a topic's `subscribers` name: each entry an edge's id, or a pattern (`*`,
/// `?`, `[...]`, as in shell globs) that matches at least one edge's id.
fn subscribers(field: &str, entries: &[String], nodes: &[NodeSpec]) -> Result<Vec<usize>, Problem> {
    if entries.is_empty() {
        return Err(problem(field, "empty, so no edge would get the topic; leave it out to send it to every edge"));
    }
    let mut found = std::collections::BTreeSet::new();
    for (k, entry) in entries.iter().enumerate() {
        let at = format!("{field}[{k}]");
        let pattern =
            glob::Pattern::new(entry).map_err(|e| problem(&at, format!("{entry:?} is not a pattern: {e}")))?;
        let matched: Vec<usize> = (nodes.iter().enumerate())
            .filter(|(_, n)| n.role == Role::Edge && pattern.matches(&n.id))
            .map(|(i, _)| i)
            .collect();
        if matched.is_empty() {
            let what = match nodes.iter().find(|n| n.id == *entry) {
                Some(_) => "is a gateway; subscribers are the edges a topic goes down to",
                None => "matches no edge of the scenario",
            };
            return Err(problem(&at, format!("{entry:?} {what}")));
        }
        found.extend(matched);
    }
    Ok(found.into_iter().collect())
}

fn workloads(
    raw: &[RawWorkload],
    nodes: &[NodeSpec],
    topics: &[TopicSpec],
    duration: Duration,
) -> Result<Vec<WorkloadSpec>, Problem> {
    let mut workloads = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let field = format!("workload[{i}]");
        let node = node_ref(nodes, &format!("{field}.node"), &r.node)?;
        let topic = topic_written_by(topics, &r.topic, nodes[node].role).ok_or_else(|| {
            let names: Vec<&str> = topics
                .iter()
                .filter(|t| !t.both_ways || t.sync == SyncDirection::EdgeToCloud)
                .map(|t| t.name.as_str())
                .collect();
            problem(format!("{field}.topic"), format!("unknown topic {:?}; topics are: {}", r.topic, list(&names)))
        })?;
        if !(r.rate.is_finite() && r.rate > 0.0) {
            return Err(problem(
                format!("{field}.rate"),
                format!("{}; expected records per simulated second, more than zero", r.rate),
            ));
        }
        if r.size == 0 {
            return Err(problem(format!("{field}.size"), "0; expected payload bytes, more than zero"));
        }
        check_keys(&field, r.keys, &topics[topic])?;
        let deletes = match (r.deletes, topics[topic].conflict) {
            (None, _) => 0.0,
            (Some(_), None) => {
                return Err(problem(
                    format!("{field}.deletes"),
                    format!("topic {:?} has no conflict strategy, so nothing merges deletes; remove deletes", r.topic),
                ));
            }
            (Some(d), Some(_)) if (0.0..=1.0).contains(&d) => d,
            (Some(d), Some(_)) => {
                return Err(problem(format!("{field}.deletes"), format!("{d}; expected a share from 0 to 1")));
            }
        };
        if topics[topic].consistency == ConsistencySpec::Strong && nodes[node].cluster.is_none() {
            return Err(problem(
                format!("{field}.node"),
                format!(
                    "node {:?} writes strong topic {:?} but is in no site cluster; set cluster on it, or make the \
                     topic eventual",
                    nodes[node].id, topics[topic].name
                ),
            ));
        }
        let from = match &r.from {
            Some(text) => parse_duration(&format!("{field}.from"), text)?,
            None => Duration::ZERO,
        };
        let until = match &r.until {
            Some(text) => parse_duration(&format!("{field}.until"), text)?,
            None => duration,
        };
        if until > duration {
            return Err(problem(
                format!("{field}.until"),
                format!("{} is after duration {}; expected at most the duration", show(until), show(duration)),
            ));
        }
        if from >= until {
            return Err(problem(
                format!("{field}.from"),
                format!("{} is not before until ({}); expected from < until", show(from), show(until)),
            ));
        }
        workloads.push(WorkloadSpec { node, topic, rate: r.rate, size: r.size, keys: r.keys, deletes, from, until });
    }
    Ok(workloads)
}

/// `keys` is given exactly when the topic is keyed, and is at least one.
fn check_keys(field: &str, keys: Option<u32>, topic: &TopicSpec) -> Result<(), Problem> {
    match (keys, topic.keyed) {
        (Some(0), _) => Err(problem(format!("{field}.keys"), "0; expected the number of distinct keys, at least 1")),
        (Some(_), false) => Err(problem(
            format!("{field}.keys"),
            format!("topic {:?} is not keyed; set keyed = true on it or remove keys", topic.name),
        )),
        (None, true) => Err(problem(
            format!("{field}.keys"),
            format!("missing: topic {:?} is keyed; expected the number of distinct keys to write", topic.name),
        )),
        _ => Ok(()),
    }
}

/// A workload whose records must travel to the other side (an edge writing an
/// edge-to-cloud or bidirectional topic, a gateway writing a cloud-to-edge or
/// bidirectional one) needs some path of links, however many hops and whatever their
/// outages, to a node of the other role. Without one its records can never arrive and
/// the run cannot converge: that is a broken scenario, not a finding.
fn check_sync_paths(
    workloads: &[WorkloadSpec],
    nodes: &[NodeSpec],
    links: &[LinkSpec],
    topics: &[TopicSpec],
) -> Result<(), Problem> {
    let component = components(nodes.len(), links);
    for (i, w) in workloads.iter().enumerate() {
        let node = &nodes[w.node];
        let topic = &topics[w.topic];
        if let (Role::Gateway, Some(up)) = (node.role, node.upstream) {
            return Err(problem(
                format!("workload[{i}].node"),
                format!(
                    "node {:?} is a gateway with an upstream ({:?}), a middle tier, and writes topic {:?}: a middle \
                     tier relays and writes nothing; expected the top gateway (one without an upstream) or an edge",
                    node.id, nodes[up].id, topic.name
                ),
            ));
        }
        let target = match (node.role, topic.sync) {
            (Role::Edge, SyncDirection::EdgeToCloud | SyncDirection::Bidirectional) => Role::Gateway,
            (Role::Gateway, SyncDirection::CloudToEdge | SyncDirection::Bidirectional) => Role::Edge,
            (Role::Edge, SyncDirection::Local) => continue,
            (Role::Edge, SyncDirection::CloudToEdge) => {
                return Err(problem(
                    format!("workload[{i}].node"),
                    format!(
                        "node {:?} is an edge and writes topic {:?}, which syncs cloud-to-edge: its records are \
                         written at a gateway and come down; expected a gateway node, or sync = \"edge-to-cloud\"",
                        node.id, topic.name
                    ),
                ))
            }
            (Role::Gateway, _) => {
                return Err(problem(
                    format!("workload[{i}].node"),
                    format!(
                        "node {:?} is a gateway and writes topic {:?}, which does not sync cloud-to-edge: a gateway \
                         writes only records that go down to its edges; expected an edge node, or sync = \"cloud-to-edge\"",
                        node.id, topic.name
                    ),
                ))
            }
        };
        let reachable = nodes.iter().enumerate().any(|(j, n)| n.role == target && component[j] == component[w.node]);
        if !reachable {
            let target = match target {
                Role::Edge => "an edge node",
                Role::Gateway => "a gateway",
            };
            return Err(problem(
                format!("workload[{i}].node"),
                format!(
                    "node {:?} writes topic {:?}, which syncs to {target}, but no path of \
                     links joins them; expected a [[link]] from {:?} towards {target}",
                    node.id, topic.name, node.id
                ),
            ));
        }
    }
    Ok(())
}

/// Connected components of the link graph: `result[n]` is the smallest node index in
/// the component of node `n`.
fn components(node_count: usize, links: &[LinkSpec]) -> Vec<usize> {
    let mut component: Vec<usize> = (0..node_count).collect();
    // Relabel until stable: at most `node_count` rounds, each over all links.
    let mut changed = true;
    while changed {
        changed = false;
        for link in links {
            let low = component[link.a].min(component[link.b]);
            for end in [link.a, link.b] {
                if component[end] != low {
                    component[end] = low;
                    changed = true;
                }
            }
        }
    }
    component
}

fn faults(raw: &[RawFault], nodes: &[NodeSpec], duration: Duration) -> Result<Vec<FaultSpec>, Problem> {
    let mut faults = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        faults.push(fault(&format!("fault[{i}]"), r, nodes, duration)?);
    }
    check_fault_overlaps(&faults, nodes, duration)?;
    Ok(faults)
}

fn fault(field: &str, raw: &RawFault, nodes: &[NodeSpec], duration: Duration) -> Result<FaultSpec, Problem> {
    let kind = raw.kind;
    let given = [
        ("node", raw.node.is_some()),
        ("restart_after", raw.restart_after.is_some()),
        ("groups", raw.groups.is_some()),
        ("for", raw.length.is_some()),
        ("by", raw.by.is_some()),
    ];
    for (name, present) in given {
        if present && !kind.fields().contains(&name) {
            return Err(problem(
                format!("{field}.{name}"),
                format!(
                    "a {} fault has no `{name}`; expected its fields: kind, at, {}",
                    kind.name(),
                    kind.fields().join(", ")
                ),
            ));
        }
    }
    // Every field but `restart_after` is required by the kinds that take it.
    let required = |name: &str, value: &Option<String>| -> Result<String, Problem> {
        value.clone().ok_or_else(|| {
            let article = if kind.name().starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            problem(format!("{field}.{name}"), format!("missing; {article} {} fault needs `{name}`", kind.name()))
        })
    };
    let node = || node_ref(nodes, &format!("{field}.node"), &required("node", &raw.node)?);
    let timed = || window(field, &raw.at, &required("for", &raw.length)?, duration);
    Ok(match kind {
        FaultKind::Crash => {
            let at = instant(field, &raw.at, duration)?;
            FaultSpec::Crash {
                node: node()?,
                at,
                restart_after: restart_after(field, at, raw.restart_after.as_deref(), duration)?,
            }
        }
        FaultKind::Partition => {
            let w = timed()?;
            let groups = raw
                .groups
                .as_deref()
                .ok_or_else(|| problem(format!("{field}.groups"), "missing; a partition fault needs `groups`"))?;
            FaultSpec::Partition {
                groups: partition_groups(&format!("{field}.groups"), groups, nodes)?,
                at: w.at,
                length: w.length,
            }
        }
        FaultKind::ClockJump => FaultSpec::ClockJump {
            node: node()?,
            at: instant(field, &raw.at, duration)?,
            by_nanos: signed_duration(&format!("{field}.by"), &required("by", &raw.by)?)?,
        },
        FaultKind::DiskFull => {
            let w = timed()?;
            FaultSpec::DiskFull { node: node()?, at: w.at, length: w.length }
        }
        FaultKind::DiskCorrupt => FaultSpec::DiskCorrupt { node: node()?, at: instant(field, &raw.at, duration)? },
        FaultKind::CorruptTail => {
            let at = instant(field, &raw.at, duration)?;
            FaultSpec::CorruptTail {
                node: node()?,
                at,
                restart_after: restart_after(field, at, raw.restart_after.as_deref(), duration)?,
            }
        }
        FaultKind::Impostor => {
            let w = timed()?;
            let node = node()?;
            if nodes[node].role != Role::Edge {
                return Err(problem(
                    format!("{field}.node"),
                    format!("{:?} is a gateway; an impostor is an edge that turns against its gateway", nodes[node].id),
                ));
            }
            FaultSpec::Impostor { node, at: w.at, length: w.length, must_try: true }
        }
    })
}

/// A crash's down time: the restart must fall inside the run; none means down until the
/// settle phase.
fn restart_after(
    field: &str,
    at: Duration,
    text: Option<&str>,
    duration: Duration,
) -> Result<Option<Duration>, Problem> {
    let Some(text) = text else {
        return Ok(None);
    };
    let restart_field = format!("{field}.restart_after");
    let down = parse_duration(&restart_field, text)?;
    let restart = Duration(at.0.saturating_add(down.0));
    if restart > duration {
        return Err(problem(
            restart_field,
            format!(
                "the restart at {} is after duration {}; expected it inside the run, or no \
                 restart_after to stay down until the settle phase",
                show(restart),
                show(duration)
            ),
        ));
    }
    Ok(Some(down))
}

/// Resolves partition groups: each names known nodes, none twice; nodes left out form
/// one more group. At least two groups must result, or the partition cuts nothing.
fn partition_groups(field: &str, raw: &[Vec<String>], nodes: &[NodeSpec]) -> Result<Vec<Vec<usize>>, Problem> {
    let mut group_of: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut groups = Vec::with_capacity(raw.len() + 1);
    for (g, raw_group) in raw.iter().enumerate() {
        if raw_group.is_empty() {
            return Err(problem(format!("{field}[{g}]"), "empty group; expected at least one node id"));
        }
        let mut group = Vec::with_capacity(raw_group.len());
        for (k, id) in raw_group.iter().enumerate() {
            let member_field = format!("{field}[{g}][{k}]");
            let n = node_ref(nodes, &member_field, id)?;
            if let Some(earlier) = group_of[n] {
                return Err(problem(
                    member_field,
                    format!("node {id:?} is already in groups[{earlier}]; expected each node in one group"),
                ));
            }
            group_of[n] = Some(g);
            group.push(n);
        }
        groups.push(group);
    }
    let rest: Vec<usize> = (0..nodes.len()).filter(|&n| group_of[n].is_none()).collect();
    if !rest.is_empty() {
        groups.push(rest);
    }
    if groups.len() < 2 {
        return Err(problem(
            field,
            "every node is in one group, so nothing is cut; expected at least two groups \
             (nodes left out of every group form one more)",
        ));
    }
    Ok(groups)
}

/// Crashes of one node, disk-full faults of one node, and partitions must not overlap
/// in time: their combination would have no clear meaning. A crash without restart
/// lasts until `duration`.
fn check_fault_overlaps(faults: &[FaultSpec], nodes: &[NodeSpec], duration: Duration) -> Result<(), Problem> {
    // (what, fault index, start, end); `what` names the resource both faults act on.
    let mut spans: Vec<(String, usize, Duration, Duration)> = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let (what, at, until) = match f {
            FaultSpec::Crash { node, at, restart_after } | FaultSpec::CorruptTail { node, at, restart_after } => {
                let until = restart_after.map_or(duration, |d| Duration(at.0 + d.0));
                (format!("crash of node {:?}", nodes[*node].id), *at, until)
            }
            FaultSpec::DiskFull { node, at, length } => {
                (format!("disk-full of node {:?}", nodes[*node].id), *at, Duration(at.0 + length.0))
            }
            FaultSpec::Partition { at, length, .. } => ("partition".to_owned(), *at, Duration(at.0 + length.0)),
            FaultSpec::Impostor { node, at, length, .. } => {
                (format!("impostor at node {:?}", nodes[*node].id), *at, Duration(at.0 + length.0))
            }
            FaultSpec::ClockJump { .. } | FaultSpec::DiskCorrupt { .. } => continue,
        };
        spans.push((what, i, at, until));
    }
    spans.sort_by(|x, y| (&x.0, x.2, x.1).cmp(&(&y.0, y.2, y.1)));
    for pair in spans.windows(2) {
        let (what, first, start, until) = &pair[0];
        let (next_what, second, next_start, _) = &pair[1];
        if what == next_what && (next_start < until || next_start == start) {
            return Err(problem(
                format!("fault[{second}]"),
                format!(
                    "overlaps fault[{first}], a {what} from {} to {}; expected such faults \
                     not to overlap in time",
                    show(*start),
                    show(*until)
                ),
            ));
        }
    }
    Ok(())
}

fn expect(raw: &RawExpect, settle: Duration) -> Result<Expect, Problem> {
    let converge_within = match &raw.converge_within {
        Some(text) => {
            let field = "expect.converge_within";
            let bound = positive_duration(field, text)?;
            if bound > settle {
                return Err(problem(
                    field,
                    format!(
                        "{} is longer than settle ({}); expected at most the settle phase, \
                         or a longer settle",
                        show(bound),
                        show(settle)
                    ),
                ));
            }
            Some(bound)
        }
        None => None,
    };
    Ok(Expect {
        lost: raw.lost,
        duplicates: raw.duplicates,
        out_of_order: raw.out_of_order,
        converge_within,
        min_delivered: raw.min_delivered,
        min_evicted_unsynced: raw.min_evicted_unsynced,
    })
}

// ---------------------------------------------------------------------------------------
// Small parsers and checks
// ---------------------------------------------------------------------------------------

/// Ids and names: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, so they read the same
/// in files, traces, reports and shell commands.
fn check_name(field: &str, name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(problem(
            field,
            format!(
                "{name:?} is not a valid name; expected 1 to {NAME_LEN_MAX} ASCII letters, \
                 digits, '-', '_' or '.'"
            ),
        ))
    }
}

fn node_ref(nodes: &[NodeSpec], field: &str, id: &str) -> Result<usize, Problem> {
    nodes.iter().position(|n| n.id == id).ok_or_else(|| {
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        problem(field, format!("unknown node {id:?}; nodes are: {}", list(&ids)))
    })
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

fn parse_duration(field: &str, text: &str) -> Result<Duration, Problem> {
    let parsed = humantime::parse_duration(text)
        .map_err(|_| problem(field, format!("{text:?} is not a duration; expected e.g. \"90s\", \"45m\", \"8h\"")))?;
    let nanos = u64::try_from(parsed.as_nanos())
        .map_err(|_| problem(field, format!("{text:?} is too long; durations stop at about 584 years")))?;
    Ok(Duration(nanos))
}

fn positive_duration(field: &str, text: &str) -> Result<Duration, Problem> {
    let d = parse_duration(field, text)?;
    if d == Duration::ZERO {
        return Err(problem(field, format!("{text:?} is zero; expected a positive duration")));
    }
    Ok(d)
}

/// A signed duration in nanoseconds: `"-40m"`, `"+2h"`, `"2h"`. Zero is refused.
fn signed_duration(field: &str, text: &str) -> Result<i64, Problem> {
    let expected = || problem(field, format!("{text:?} is not a signed duration; expected e.g. \"-40m\", \"+2h\""));
    let (negative, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let parsed = humantime::parse_duration(magnitude).map_err(|_| expected())?;
    let nanos = i64::try_from(parsed.as_nanos())
        .map_err(|_| problem(field, format!("{text:?} is too far; jumps stop at about 292 years")))?;
    if nanos == 0 {
        return Err(problem(field, format!("{text:?} is zero; expected a jump, e.g. \"-40m\"")));
    }
    Ok(if negative { -nanos } else { nanos })
}

/// A fault's `at` for a fault that happens at one instant: inside `[0, duration)`.
fn instant(field: &str, at: &str, duration: Duration) -> Result<Duration, Problem> {
    let at_field = format!("{field}.at");
    let at = parse_duration(&at_field, at)?;
    if at >= duration {
        return Err(problem(
            at_field,
            format!("{} is not before duration {}; expected a time inside the run", show(at), show(duration)),
        ));
    }
    Ok(at)
}

/// `at` and `for` of a window that must lie inside `[0, duration]` and not be empty.
fn window(field: &str, at: &str, length: &str, duration: Duration) -> Result<Window, Problem> {
    let at = parse_duration(&format!("{field}.at"), at)?;
    let for_field = format!("{field}.for");
    let length = positive_duration(&for_field, length)?;
    let w = Window { at, length };
    if end(w) > duration.0 {
        return Err(problem(
            for_field,
            format!(
                "the window {} ends after duration {}; expected it to end by then \
                 (the settle phase heals every fault anyway)",
                show_window(w),
                show(duration)
            ),
        ));
    }
    Ok(w)
}

/// End of a window in nanoseconds, saturating (a window that overflows is past any
/// duration and is rejected as such).
fn end(w: Window) -> u64 {
    w.at.0.saturating_add(w.length.0)
}

fn show(d: Duration) -> String {
    humantime::format_duration(std::time::Duration::from_nanos(d.0)).to_string()
}

fn show_window(w: Window) -> String {
    format!("{} to {}", show(w.at), show(Duration(end(w))))
}

/// A byte count in the largest binary unit that divides it: `96 MiB`, `1000 bytes`.
fn show_size(bytes: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "scenarios/t.toml";

    /// Two nodes, one link, one topic. Text appended to it starts on line 22.
    const BASE: &str = r#"name = "t"
about = "A test."
duration = "8h"

[[node]]
id = "ecu"
role = "edge"
device = "vehicle-ecu"

[[node]]
id = "cloud"
role = "gateway"
device = "cloud"

[[link]]
between = ["ecu", "cloud"]
net = "cellular"

[[topic]]
name = "telemetry"
sync = "edge-to-cloud"
"#;

    /// The example of DESIGN §4, verbatim.
    const DESIGN_EXAMPLE: &str = r#"
name = "vehicle-offline"
about = "Telemetry from a vehicle ECU on cellular; long tunnel outages; syncs when parked."
duration = "8h"                 # workload and faults run for this long
settle = "30m"                  # then faults heal and producers stop; must converge inside

[[node]]
id = "ecu"
role = "edge"                   # edge | gateway
device = "vehicle-ecu"          # built-in profiles: pi-zero, pi4, iot-gateway, vehicle-ecu, retail-pos, industrial, cloud
zone = "eu"                     # optional, for placement rules
cluster = "site-a"              # optional: edge nodes sharing a cluster run raft together
# memory = "96MiB"  storage = "512MiB"   # optional overrides of the device profile

[[node]]
id = "cloud"
role = "gateway"
device = "cloud"

[[link]]
between = ["ecu", "cloud"]
net = "cellular"                # built-in profiles: loopback, lan, wifi, cellular, satellite
outages = [ { at = "1h", for = "45m" }, { at = "5h", for = "2h" } ]

[[topic]]
name = "telemetry.can"
sync = "edge-to-cloud"          # edge-to-cloud | cloud-to-edge | bidirectional | local
priority = 5                    # eviction order (lower evicted first)
# keyed = true  conflict = "last-write-wins"  classification = "pii"

[[workload]]
node = "ecu"
topic = "telemetry.can"
rate = 200                      # records per simulated second
size = 120                      # payload bytes
# keys = 1000  from = "0s"  until = "8h"

[[fault]]
kind = "crash"                  # crash | partition | clock-jump | disk-full | disk-corrupt | corrupt-tail
node = "ecu"
at = "3h"
restart_after = "10s"

[expect]
lost = 0
duplicates = 0
converge_within = "5m"
"#;

    fn hours(h: u64) -> Duration {
        Duration::from_secs(h * 3600)
    }

    fn minutes(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    fn device(name: &str) -> DeviceProfile {
        profiles::device(name).expect("built-in device")
    }

    /// The rendered error for `text`, which must be rejected.
    fn error(text: &str) -> String {
        match parse(text, FILE) {
            Ok(s) => panic!("accepted a bad scenario: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Asserts that the error for `text` contains every one of `parts`.
    fn assert_error(text: &str, parts: &[&str]) {
        let message = error(text);
        assert!(!message.contains('\n'), "not one line: {message}");
        for part in parts {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }

    #[test]
    fn design_example_parses_into_the_model() {
        let s = parse(DESIGN_EXAMPLE, "scenarios/vehicle-offline.toml").expect("valid");
        let ecu = device("vehicle-ecu");
        let cloud = device("cloud");
        let expected = Scenario {
            name: "vehicle-offline".into(),
            about: "Telemetry from a vehicle ECU on cellular; long tunnel outages; syncs when parked.".into(),
            duration: hours(8),
            settle: minutes(30),
            nodes: vec![
                NodeSpec {
                    id: "ecu".into(),
                    role: Role::Edge,
                    device: ecu,
                    zone: Some("eu".into()),
                    cluster: Some("site-a".into()),
                    memory_bytes: ecu.memory_bytes,
                    storage_bytes: ecu.storage_bytes,
                    upstream: None,
                    up_retention: false,
                },
                NodeSpec {
                    id: "cloud".into(),
                    role: Role::Gateway,
                    device: cloud,
                    zone: None,
                    cluster: None,
                    memory_bytes: cloud.memory_bytes,
                    storage_bytes: cloud.storage_bytes,
                    upstream: None,
                    up_retention: false,
                },
            ],
            links: vec![LinkSpec {
                a: 0,
                b: 1,
                net: profiles::net("cellular").expect("built-in net"),
                outages: vec![Window { at: hours(1), length: minutes(45) }, Window { at: hours(5), length: hours(2) }],
            }],
            topics: vec![TopicSpec {
                name: "telemetry.can".into(),
                sync: SyncDirection::EdgeToCloud,
                priority: 5,
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
            }],
            workloads: vec![WorkloadSpec {
                node: 0,
                topic: 0,
                rate: 200.0,
                size: 120,
                keys: None,
                deletes: 0.0,
                from: Duration::ZERO,
                until: hours(8),
            }],
            faults: vec![FaultSpec::Crash { node: 0, at: hours(3), restart_after: Some(Duration::from_secs(10)) }],
            expect: Expect {
                lost: Some(0),
                duplicates: Some(0),
                out_of_order: None,
                converge_within: Some(minutes(5)),
                min_delivered: None,
                min_evicted_unsynced: None,
            },
        };
        assert_eq!(s, expected);
        assert_eq!(s.node_index("cloud"), Some(1));
        assert_eq!(s.node_index("clod"), None);
    }

    #[test]
    fn every_optional_field_and_fault_kind_reaches_the_model() {
        let text = format!(
            r#"{BASE}
[[node]]
id = "pos"
role = "edge"
device = "retail-pos"
zone = "eu"
memory = "96MiB"
storage = 1000

[[link]]
between = ["pos", "cloud"]
net = "wifi"
outages = [ {{ at = "5h", for = "1h" }}, {{ at = "1h", for = "2h" }} ]

[[topic]]
name = "prices"
sync = "cloud-to-edge"
priority = 9
keyed = true
conflict = "last-write-wins"

[[topic]]
name = "records"
sync = "local"
classification = "pii"

[[workload]]
node = "cloud"
topic = "prices"
rate = 0.5
size = 64
keys = 1000
from = "1h"
until = "2h"

[[fault]]
kind = "partition"
groups = [["ecu"]]
at = "2h"
for = "30m"

[[fault]]
kind = "clock-jump"
node = "pos"
at = "4h"
by = "-40m"

[[fault]]
kind = "clock-jump"
node = "ecu"
at = "4h"
by = "+2h"

[[fault]]
kind = "disk-full"
node = "ecu"
at = "6h"
for = "1h"

[[fault]]
kind = "disk-corrupt"
node = "cloud"
at = "7h"

[[fault]]
kind = "crash"
node = "pos"
at = "1h"

[expect]
out_of_order = 0
min_delivered = 100

[placement]
pii = ["eu"]
"#
        );
        let s = parse(&text, FILE).expect("valid");
        assert_eq!(s.settle, minutes(10), "default settle");
        assert_eq!(s.topics[0].priority, 5, "default priority");
        let pos = &s.nodes[2];
        assert_eq!((pos.memory_bytes, pos.storage_bytes), (96 << 20, 1000));
        assert_eq!(
            s.links[1].outages,
            vec![Window { at: hours(1), length: hours(2) }, Window { at: hours(5), length: hours(1) },],
            "outages sorted by time"
        );
        assert_eq!(
            s.topics[1],
            TopicSpec {
                name: "prices".into(),
                sync: SyncDirection::CloudToEdge,
                priority: 9,
                eviction: EvictionSpec::Keep,
                keyed: true,
                conflict: Some(Strategy::LastWriteWins),
                merge: None,
                placement: None,
                consistency: ConsistencySpec::Eventual,
                subscribers: None,
                retention_age: None,
                retention_bytes: None,
                both_ways: false,
            }
        );
        let pii = Placement { classification: "pii".into(), zones: vec!["eu".into()] };
        assert_eq!(s.topics[2].placement, Some(pii), "[placement] over the default table");
        assert_eq!(s.topics[0].placement, None);
        assert_eq!(
            s.workloads[0],
            WorkloadSpec {
                node: 1,
                topic: 1,
                rate: 0.5,
                size: 64,
                keys: Some(1000),
                deletes: 0.0,
                from: hours(1),
                until: hours(2)
            }
        );
        let forty_minutes = 40 * 60 * 1_000_000_000;
        assert_eq!(
            s.faults,
            vec![
                FaultSpec::Partition { groups: vec![vec![0], vec![1, 2]], at: hours(2), length: minutes(30) },
                FaultSpec::ClockJump { node: 2, at: hours(4), by_nanos: -forty_minutes },
                FaultSpec::ClockJump { node: 0, at: hours(4), by_nanos: 3 * forty_minutes },
                FaultSpec::DiskFull { node: 0, at: hours(6), length: hours(1) },
                FaultSpec::DiskCorrupt { node: 1, at: hours(7) },
                FaultSpec::Crash { node: 2, at: hours(1), restart_after: None },
            ]
        );
        assert_eq!(s.expect, Expect { out_of_order: Some(0), min_delivered: Some(100), ..Expect::default() });
    }

    #[test]
    fn unknown_node_in_a_link_renders_as_one_located_line() {
        let text = BASE.replace(r#""ecu", "cloud"]"#, r#""ecu", "clod"]"#);
        assert_eq!(
            error(&text),
            r#"scenarios/t.toml:16:19: link[0].between[1]: unknown node "clod"; nodes are: ecu, cloud"#
        );
    }

    #[test]
    fn unknown_key_names_its_place_and_the_expected_keys() {
        let text = BASE.replace("device = \"cloud\"\n", "device = \"cloud\"\ncolour = \"red\"\n");
        assert_error(
            &text,
            &[
                "scenarios/t.toml:14:1: node[1].colour: unknown field `colour`",
                "expected one of `id`, `role`, `device`",
            ],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"crash\"\nnode = \"ecu\"\nat = \"1h\"\nfor = \"1m\"\n"),
            &[
                "scenarios/t.toml:26:7: fault[0].for: a crash fault has no `for`",
                "expected its fields: kind, at, node, restart_after",
            ],
        );
        assert_error(
            &format!("{BASE}[expect]\nlose = 0\n"),
            &["t.toml:23:1: expect.lose: unknown field `lose`", "`lost`"],
        );
    }

    #[test]
    fn toml_syntax_and_type_errors_carry_line_and_column() {
        assert_error(&BASE.replace("[[link]]", "[[link]"), &["scenarios/t.toml:15:7: ", "invalid table header"]);
        assert_error(
            &BASE.replace("role = \"edge\"", "role = \"edg\""),
            &["scenarios/t.toml:7:8: node[0].role: unknown variant `edg`", "expected `edge` or `gateway`"],
        );
        assert_error(
            &format!("{BASE}[[topic]]\nname = \"t2\"\nsync = \"up\"\npriority = 300\n"),
            &["t.toml:24:8: topic[1].sync: unknown variant `up`", "`edge-to-cloud`"],
        );
        assert_error(
            &format!("{BASE}[[topic]]\nname = \"t2\"\nsync = \"local\"\npriority = 300\n"),
            &["t.toml:25:12: topic[1].priority: invalid value: integer `300`, expected u8"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"reboot\"\nnode = \"ecu\"\nat = \"1h\"\n"),
            &["t.toml:23:8: fault[0].kind: unknown variant `reboot`", "`clock-jump`"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nnode = \"ecu\"\nat = \"1h\"\n"),
            &["t.toml:22:1: fault[0]: missing field `kind`"],
        );
        assert_error(&BASE.replace("name = \"t\"\n", ""), &["scenarios/t.toml:", "missing field `name`"]);
    }

    #[test]
    fn bad_durations_are_named_with_examples() {
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"crash\"\nnode = \"ecu\"\nat = \"3 hourz\"\n"),
            &["t.toml:25:6: fault[0].at: \"3 hourz\" is not a duration", "expected e.g. \"90s\", \"45m\", \"8h\""],
        );
        assert_error(
            &BASE.replace("duration = \"8h\"", "duration = \"0s\""),
            &["t.toml:3:12: duration: \"0s\" is zero; expected a positive duration"],
        );
        assert_error(
            &BASE.replace("duration = \"8h\"", "duration = 28800"),
            &["t.toml:3:12: duration: invalid type: integer `28800`, expected a string"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"clock-jump\"\nnode = \"ecu\"\nat = \"1h\"\nby = \"-forty\"\n"),
            &["fault[0].by: \"-forty\" is not a signed duration; expected e.g. \"-40m\", \"+2h\""],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"clock-jump\"\nnode = \"ecu\"\nat = \"1h\"\nby = \"+0s\"\n"),
            &["fault[0].by: \"+0s\" is zero"],
        );
    }

    #[test]
    fn bad_retention_settings_are_refused_by_name() {
        assert_error(&format!("{BASE}retention_age = \"0s\"\n"), &["topic[0].retention_age: \"0s\" is zero"]);
        assert_error(&format!("{BASE}retention_bytes = 0\n"), &["topic[0].retention_bytes: 0 bytes"]);
        assert_error(
            &BASE.replace("device = \"vehicle-ecu\"", "device = \"vehicle-ecu\"\nup_retention = true"),
            &["node[0].up_retention: only a top gateway (no upstream) takes it"],
        );
        let s = parse(&format!("{BASE}retention_age = \"1d\"\nretention_bytes = \"2MiB\"\n"), FILE).expect("valid");
        assert_eq!(s.topics[0].retention_age, Some(Duration::from_secs(86_400)));
        assert_eq!(s.topics[0].retention_bytes, Some(2 << 20));
    }

    #[test]
    fn unknown_profiles_list_the_valid_names() {
        assert_error(
            &BASE.replace("device = \"cloud\"", "device = \"pi5\""),
            &[
                "t.toml:13:10: node[1].device: unknown device profile \"pi5\"",
                "expected one of: pi-zero, pi4, iot-gateway, vehicle-ecu, retail-pos, industrial, cloud",
            ],
        );
        assert_error(
            &BASE.replace("net = \"cellular\"", "net = \"5g\""),
            &[
                "t.toml:17:7: link[0].net: unknown network profile \"5g\"",
                "expected one of: loopback, lan, wifi, cellular, satellite",
            ],
        );
    }

    #[test]
    fn nodes_need_unique_valid_ids_and_sane_limits() {
        assert_error(
            &BASE.replace("id = \"cloud\"", "id = \"ecu\""),
            &["t.toml:11:6: node[1].id: duplicate node id \"ecu\"; node[0] already has it"],
        );
        assert_error(
            &BASE.replace("id = \"cloud\"", "id = \"the cloud\""),
            &["node[1].id: \"the cloud\" is not a valid name; expected 1 to 64 ASCII letters"],
        );
        let no_nodes = "name = \"t\"\nabout = \"a\"\nduration = \"1h\"\n";
        assert_error(no_nodes, &[FILE, "node: no nodes; add at least one [[node]] table"]);
        let with_node =
            |extra: &str| format!("{BASE}[[node]]\nid = \"n\"\nrole = \"edge\"\ndevice = \"pi4\"\n{extra}\n");
        assert_error(
            &with_node("memory = \"8GiB\""),
            &["t.toml:26:10: node[2].memory: 8 GiB is more than the 4 GiB of memory of device \"pi4\""],
        );
        assert_error(&with_node("storage = \"lots\""), &["node[2].storage: \"lots\" is not a size", "e.g. \"96MiB\""]);
        assert_error(&with_node("memory = 0"), &["node[2].memory: 0 bytes; expected more than zero"]);
        assert_error(
            &with_node("memory = -5"),
            &["t.toml:26:10: node[2].memory: invalid value: integer `-5`", "a byte count"],
        );
        assert_error(
            &BASE.replace("device = \"cloud\"", "device = \"cloud\"\ncluster = \"site\""),
            &["node[1].cluster: only edge nodes form site clusters"],
        );
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        let size = |text: &str| parse_size("f", &RawSize::Text(text.into())).ok();
        assert_eq!(size("1000"), Some(1000));
        assert_eq!(size("512KiB"), Some(512 << 10));
        assert_eq!(size("96MiB"), Some(96 << 20));
        assert_eq!(size("96 MiB"), Some(96 << 20));
        assert_eq!(size("1GiB"), Some(1 << 30));
        assert_eq!(size("2KB"), Some(2_000));
        assert_eq!(size("500MB"), Some(500_000_000));
        assert_eq!(size("4GB"), Some(4_000_000_000));
        assert_eq!(size("7B"), Some(7));
        assert_eq!(size("1TiB"), Some(1 << 40), "the units of config files too (Bytes::parse)");
        for bad in ["", "MiB", "1.5GiB", "1 mib", "-1", "1 PiB", "99999999999GiB"] {
            assert_eq!(size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn links_join_two_distinct_known_nodes_once() {
        assert_error(
            &BASE.replace(r#"["ecu", "cloud"]"#, r#"["ecu", "ecu"]"#),
            &["t.toml:16:19: link[0].between[1]: the link joins node \"ecu\" to itself"],
        );
        assert_error(
            &BASE.replace(r#"["ecu", "cloud"]"#, r#"["ecu"]"#),
            &["t.toml:16:11: link[0].between: 1 node ids; expected exactly two"],
        );
        assert_error(
            &format!("{BASE}[[link]]\nbetween = [\"cloud\", \"ecu\"]\nnet = \"lan\"\n"),
            &["t.toml:23:11: link[1].between: link[0] already joins \"cloud\" and \"ecu\""],
        );
    }

    #[test]
    fn windows_must_end_by_duration_and_not_overlap() {
        let outages = |list: &str| BASE.replace("net = \"cellular\"", &format!("net = \"cellular\"\noutages = {list}"));
        assert_error(
            &outages(r#"[ { at = "7h", for = "2h" } ]"#),
            &["t.toml:18:", "link[0].outages[0].for: the window 7h to 9h ends after duration 8h"],
        );
        assert_error(
            &outages(r#"[ { at = "1h", for = "2h" }, { at = "2h", for = "1h" } ]"#),
            &["link[0].outages[1]: overlaps outages[0] (1h to 3h)"],
        );
        assert_error(&outages(r#"[ { at = "1h", for = "0s" } ]"#), &["link[0].outages[0].for: \"0s\" is zero"]);
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"disk-full\"\nnode = \"ecu\"\nat = \"6h\"\nfor = \"3h\"\n"),
            &["t.toml:26:7: fault[0].for: the window 6h to 9h ends after duration 8h"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"disk-corrupt\"\nnode = \"ecu\"\nat = \"8h\"\n"),
            &["t.toml:25:6: fault[0].at: 8h is not before duration 8h"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"crash\"\nnode = \"ecu\"\nat = \"7h\"\nrestart_after = \"2h\"\n"),
            &["fault[0].restart_after: the restart at 9h is after duration 8h", "no restart_after"],
        );
    }

    #[test]
    fn faults_of_one_kind_on_one_node_do_not_overlap() {
        let crash = |at: &str, restart: &str| {
            format!("[[fault]]\nkind = \"crash\"\nnode = \"ecu\"\nat = \"{at}\"\n{restart}\n")
        };
        assert_error(
            &format!("{BASE}{}{}", crash("1h", ""), crash("5h", "restart_after = \"1m\"")),
            &["fault[1]: overlaps fault[0], a crash of node \"ecu\" from 1h to 8h"],
        );
        let text = format!("{BASE}{}{}", crash("1h", "restart_after = \"1h\""), crash("2h", ""));
        assert!(parse(&text, FILE).is_ok(), "back-to-back crashes are fine");
        let partition = "[[fault]]\nkind = \"partition\"\ngroups = [[\"ecu\"]]\nat = \"1h\"\nfor = \"1h\"\n";
        assert_error(
            &format!("{BASE}{partition}{}", partition.replace("\"1h\"\nfor", "\"90m\"\nfor")),
            &["fault[1]: overlaps fault[0], a partition from 1h to 2h"],
        );
    }

    #[test]
    fn fault_fields_follow_the_kind() {
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"crash\"\nat = \"1h\"\n"),
            &["t.toml:22:1: fault[0].node: missing; a crash fault needs `node`"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"disk-full\"\nnode = \"ecu\"\nat = \"1h\"\n"),
            &["fault[0].for: missing; a disk-full fault needs `for`"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"disk-corrupt\"\nnode = \"ecu\"\nat = \"1h\"\ngroups = []\n"),
            &["t.toml:26:10: fault[0].groups: a disk-corrupt fault has no `groups`; expected its fields: kind, at, node"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"disk-full\"\nnode = \"ecuu\"\nat = \"1h\"\nfor = \"1m\"\n"),
            &["t.toml:24:8: fault[0].node: unknown node \"ecuu\"; nodes are: ecu, cloud"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"impostor\"\nnode = \"cloud\"\nat = \"1h\"\nfor = \"1m\"\n"),
            &["fault[0].node: \"cloud\" is a gateway; an impostor is an edge that turns against its gateway"],
        );
        assert_error(
            &format!("{BASE}[[fault]]\nkind = \"impostor\"\nnode = \"ecu\"\nat = \"1h\"\n"),
            &["fault[0].for: missing; an impostor fault needs `for`"],
        );
        let s =
            parse(&format!("{BASE}[[fault]]\nkind = \"impostor\"\nnode = \"ecu\"\nat = \"1h\"\nfor = \"1m\"\n"), FILE);
        assert_eq!(
            s.expect("valid").faults,
            vec![FaultSpec::Impostor { node: 0, at: hours(1), length: minutes(1), must_try: true }]
        );
    }

    #[test]
    fn partition_groups_name_known_nodes_once_and_cut_something() {
        let partition = |groups: &str| {
            format!("{BASE}[[fault]]\nkind = \"partition\"\ngroups = {groups}\nat = \"1h\"\nfor = \"1h\"\n")
        };
        assert_error(
            &partition(r#"[["ecu"], ["clod"]]"#),
            &["t.toml:24:21: fault[0].groups[1][0]: unknown node \"clod\"; nodes are: ecu, cloud"],
        );
        assert_error(
            &partition(r#"[["ecu"], ["cloud", "ecu"]]"#),
            &["fault[0].groups[1][1]: node \"ecu\" is already in groups[0]"],
        );
        assert_error(
            &partition(r#"[["ecu", "cloud"]]"#),
            &["t.toml:24:10: fault[0].groups: every node is in one group, so nothing is cut"],
        );
        assert_error(&partition(r#"[["ecu"], []]"#), &["fault[0].groups[1]: empty group"]);
    }

    #[test]
    fn topics_have_unique_names_and_keyed_only_settings() {
        assert_error(
            &format!("{BASE}[[topic]]\nname = \"telemetry\"\nsync = \"local\"\n"),
            &["t.toml:23:8: topic[1].name: duplicate topic name \"telemetry\"; topic[0] already has it"],
        );
        assert_error(
            &format!("{BASE}conflict = \"last-write-wins\"\n"),
            &["t.toml:22:12: topic[0].conflict: conflict resolution applies to keyed topics only"],
        );
        assert_error(
            &format!("{BASE}keyed = true\nconflict = \"newest-wins\"\n"),
            &["topic[0].conflict: unknown strategy \"newest-wins\"; expected one of last-write-wins, first-write-wins"],
        );
        assert_error(
            &format!("{BASE}eviction = \"compact\"\n"),
            &["topic[0].eviction: compact keeps the newest value per key, so it needs a keyed topic"],
        );
        assert_error(
            &format!("{BASE}eviction = \"random\"\n"),
            &["topic[0].eviction: unknown variant `random`, expected one of `keep`, `oldest`, `priority`, `lru`, `compact`"],
        );
        assert_error(
            &format!("{BASE}keyed = true\nconflict = \"counter\"\neviction = \"compact\"\n"),
            &["topic[0].eviction: a keyed topic with a conflict strategy keeps its records"],
        );
        for c in ["first-write-wins", "cloud-wins", "edge-wins", "keep-both", "counter", "max", "add-wins-set"] {
            let s = parse(&format!("{BASE}keyed = true\nconflict = \"{c}\"\n"), FILE).expect(c);
            assert_eq!(s.topics[0].conflict.map(Strategy::name), Some(c));
        }
        // `custom` takes a WebAssembly module, named relative to the scenario file.
        let custom = format!("{BASE}keyed = true\nconflict = \"custom\"\n");
        assert_error(&custom, &["topic[0].merge: a \"custom\" topic needs merge = \"path/to/module.wat\""]);
        assert_error(
            &format!("{BASE}keyed = true\nconflict = \"max\"\nmerge = \"m.wat\"\n"),
            &["topic[0].merge: only a \"custom\" topic takes a merge module"],
        );
        assert_error(&format!("{custom}merge = \"no-such.wat\"\n"), &["topic[0].merge: cannot read the merge module"]);
        let here = concat!(env!("CARGO_MANIFEST_DIR"), "/t.toml");
        let s = parse(&format!("{custom}merge = \"../examples/merge/notes.wat\"\n"), here).expect("the example loads");
        assert!(s.topics[0].merge.is_some());
    }

    #[test]
    fn deletes_are_a_share_of_a_merged_keyed_topics_writes() {
        let w = "[[workload]]\nnode = \"ecu\"\ntopic = \"telemetry\"\nrate = 10\nsize = 100\nkeys = 5\n";
        let merged = format!("{BASE}keyed = true\nconflict = \"last-write-wins\"\n{w}");
        let s = parse(&format!("{merged}deletes = 0.25\n"), FILE).expect("a share");
        assert_eq!(s.workloads[0].deletes, 0.25);
        assert_error(&format!("{merged}deletes = 1.5\n"), &["workload[0].deletes: 1.5; expected a share from 0 to 1"]);
        assert_error(
            &format!("{BASE}keyed = true\n{w}deletes = 0.1\n"),
            &["workload[0].deletes: topic \"telemetry\" has no conflict strategy"],
        );
    }

    #[test]
    fn classified_topics_go_only_where_their_zones_allow() {
        // BASE: edge "ecu" syncs telemetry up to gateway "cloud"; neither has a zone.
        let zoned = BASE.replace("device = \"vehicle-ecu\"\n", "device = \"vehicle-ecu\"\nzone = \"eu\"\n");
        let write = "[[workload]]\nnode = \"ecu\"\ntopic = \"telemetry\"\nrate = 1\nsize = 10\n";
        assert_error(
            &format!("{BASE}classification = \"secret\"\n"),
            &["topic[0].classification: unknown classification \"secret\"; known: gdpr, hipaa, sox (add it to [placement]"],
        );
        assert_error(
            &format!("{BASE}[placement]\nsecret = []\n"),
            &["placement.secret: no zones: a classification's records must be allowed somewhere"],
        );
        // The writer may not hold it: the daemon's message for a produce there.
        let gdpr = Placement { classification: "gdpr".into(), zones: vec!["eu".into()] };
        let holder = gdpr.refuses_holder("telemetry", "node \"ecu\"", None).expect("no zone holds nothing");
        assert_error(&format!("{BASE}classification = \"gdpr\"\n{write}"), &[&format!("workload[0].node: {holder}")]);
        // The writer may, its gateway may not: the daemon's message for that route.
        let route = gdpr.refuses_route("telemetry", ("ecu", Some("eu")), ("cloud", None)).expect("cloud has no zone");
        assert!(route.contains("the route \"ecu\" (zone eu) -> \"cloud\" (no zone) leaves them"), "{route}");
        assert_error(&format!("{zoned}classification = \"gdpr\"\n{write}"), &[&format!("workload[0].node: {route}")]);
        // Both in the EU: it loads; a classified topic nobody writes loads anywhere.
        let both = zoned.replace("device = \"cloud\"\n", "device = \"cloud\"\nzone = \"eu\"\n");
        let s = parse(&format!("{both}classification = \"gdpr\"\n{write}"), FILE).expect("placed");
        assert_eq!(s.topics[0].placement.as_ref(), Some(&gdpr));
        assert!(parse(&format!("{BASE}classification = \"hipaa\"\n"), FILE).is_ok());
        // Down from the gateway: every hop to an edge that gets it.
        let eu_cloud = BASE.replace("device = \"cloud\"\n", "device = \"cloud\"\nzone = \"eu\"\n");
        let down = "[[topic]]\nname = \"plans\"\nsync = \"cloud-to-edge\"\nclassification = \"gdpr\"\n\
                    [[workload]]\nnode = \"cloud\"\ntopic = \"plans\"\nrate = 1\nsize = 10\n";
        let route = gdpr.refuses_route("plans", ("cloud", Some("eu")), ("ecu", None)).expect("ecu has no zone");
        assert_error(&format!("{eu_cloud}{down}"), &[&format!("workload[0].node: {route}")]);
        let both = eu_cloud.replace("device = \"vehicle-ecu\"\n", "device = \"vehicle-ecu\"\nzone = \"eu\"\n");
        assert!(parse(&format!("{both}{down}"), FILE).is_ok());
    }

    #[test]
    fn workloads_name_known_nodes_and_topics_with_sane_figures() {
        let workload = |fields: &str| format!("{BASE}[[workload]]\n{fields}\n");
        let ok = "node = \"ecu\"\ntopic = \"telemetry\"\nrate = 10\nsize = 100";
        assert!(parse(&workload(ok), FILE).is_ok());
        assert_error(
            &workload(&ok.replace("\"ecu\"", "\"ECU\"")),
            &["t.toml:23:8: workload[0].node: unknown node \"ECU\"; nodes are: ecu, cloud"],
        );
        assert_error(
            &workload(&ok.replace("\"telemetry\"", "\"telemtry\"")),
            &["t.toml:24:9: workload[0].topic: unknown topic \"telemtry\"; topics are: telemetry"],
        );
        assert_error(
            &workload(&ok.replace("rate = 10", "rate = 0")),
            &["t.toml:25:8: workload[0].rate: 0; expected records per simulated second, more than zero"],
        );
        assert_error(
            &workload(&ok.replace("rate = 10", "rate = nan")),
            &["workload[0].rate: NaN; expected records per simulated second"],
        );
        assert_error(
            &workload(&ok.replace("size = 100", "size = 0")),
            &["t.toml:26:8: workload[0].size: 0; expected payload bytes, more than zero"],
        );
        assert_error(&workload(&format!("{ok}\nkeys = 10")), &["workload[0].keys: topic \"telemetry\" is not keyed"]);
        assert_error(
            &workload(&format!("{ok}\nuntil = \"9h\"")),
            &["t.toml:27:9: workload[0].until: 9h is after duration 8h"],
        );
        assert_error(
            &workload(&format!("{ok}\nfrom = \"2h\"\nuntil = \"2h\"")),
            &["workload[0].from: 2h is not before until (2h); expected from < until"],
        );
    }

    #[test]
    fn a_keyed_topic_needs_keys_in_its_workloads() {
        let text =
            format!("{BASE}keyed = true\n[[workload]]\nnode = \"ecu\"\ntopic = \"telemetry\"\nrate = 1\nsize = 1\n");
        assert_error(&text, &["t.toml:23:1: workload[0].keys: missing: topic \"telemetry\" is keyed"]);
        assert_error(
            &format!("{text}keys = 0\n"),
            &["workload[0].keys: 0; expected the number of distinct keys, at least 1"],
        );
    }

    #[test]
    fn a_syncing_workload_needs_a_path_to_the_other_side() {
        let text = format!(
            "{}[[workload]]\nnode = \"ecu\"\ntopic = \"telemetry\"\nrate = 1\nsize = 1\n",
            BASE.replace("[[link]]\nbetween = [\"ecu\", \"cloud\"]\nnet = \"cellular\"\n", "")
        );
        assert_error(
            &text,
            &["workload[0].node: node \"ecu\" writes topic \"telemetry\", which syncs to a gateway, but no path of links joins them"],
        );
        // Two hops through a cluster peer are a path.
        let relayed = format!(
            "{text}[[node]]\nid = \"peer\"\nrole = \"edge\"\ndevice = \"pi4\"\n\
             [[link]]\nbetween = [\"ecu\", \"peer\"]\nnet = \"lan\"\n\
             [[link]]\nbetween = [\"peer\", \"cloud\"]\nnet = \"wifi\"\n"
        );
        assert!(parse(&relayed, FILE).is_ok());
        // A local topic needs no path.
        assert!(parse(&text.replace("edge-to-cloud", "local"), FILE).is_ok());
    }

    #[test]
    fn expect_fields_are_checked() {
        assert_error(
            &format!("{BASE}[expect]\nconverge_within = \"1h\"\n"),
            &["t.toml:23:19: expect.converge_within: 1h is longer than settle (10m)"],
        );
        assert_error(
            &format!("{BASE}[expect]\nlost = -1\n"),
            &["t.toml:23:8: expect.lost: invalid value: integer `-1`, expected u64"],
        );
    }

    #[test]
    fn an_unreadable_file_names_its_path() {
        let path = Path::new("/nonexistent/outpost/missing.toml");
        let message = load(path).expect_err("no such file").to_string();
        assert!(message.starts_with("/nonexistent/outpost/missing.toml: cannot read the scenario file"), "{message}");
    }

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nb = \"é\" x";
        assert_eq!(line_column(text, 0), Some((1, 1)));
        assert_eq!(line_column(text, 6), Some((2, 1)));
        assert_eq!(line_column(text, text.len() - 1), Some((2, 9)));
        assert_eq!(line_column(text, 100), None);
    }
}

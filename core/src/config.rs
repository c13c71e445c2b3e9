//! Configuration of a node. Every queue, batch, buffer and timeout of the core has its
//! limit here (engineering rule 2); the defaults suit a Raspberry Pi class device.

use crate::hlc::HlcConfig;
use crate::types::{Duration, NodeId, TopicIdx};
use std::fmt;

/// What a node does in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts produces and forwards them upstream.
    Edge,
    /// Accepts sync sessions from edges and stores what they send.
    Gateway,
}

/// Which way a topic's records travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDirection {
    EdgeToCloud,
    CloudToEdge,
    Bidirectional,
    /// Never leaves the device.
    Local,
}

impl SyncDirection {
    /// Whether an edge forwards this topic to its gateway.
    pub fn goes_up(self) -> bool {
        matches!(self, SyncDirection::EdgeToCloud | SyncDirection::Bidirectional)
    }

    /// Whether a gateway sends this topic down to its edges.
    pub fn goes_down(self) -> bool {
        matches!(self, SyncDirection::CloudToEdge | SyncDirection::Bidirectional)
    }

    /// Whether a node of `role` writes this topic's records itself (applications produce
    /// there); elsewhere they arrive from its peers. `middle_tier`: a gateway with an
    /// upstream writes nothing, it relays (up what its edges write, down what the top
    /// writes). A `Bidirectional` topic is split into its two halves
    /// ([`NodeConfig::split_both_ways`]) before a node runs, so no node asks this of it.
    pub fn written_at(self, role: Role, middle_tier: bool) -> bool {
        match role {
            Role::Edge => self != SyncDirection::CloudToEdge,
            Role::Gateway => self == SyncDirection::CloudToEdge && !middle_tier,
        }
    }
}

/// What a topic may give up when the node's storage budget is full (see `resources`).
/// Data the gateway acknowledged is evicted first, from any topic; this decides whether
/// records that exist nowhere else may go too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Eviction {
    /// Never evict an unsynced record: producers get `ProduceError::StorageFull` instead.
    #[default]
    Keep,
    /// A ring buffer: the topic's oldest unsynced segments go to make room for writes to
    /// any topic of the same or higher priority, itself included.
    Oldest,
    /// The topic's unsynced segments go, oldest first, only to make room for writes to
    /// topics of strictly higher priority; its own writes get backpressure instead.
    Priority,
    /// As `Oldest`, but the segments least recently read by a fetch go first.
    Lru,
    /// For keyed topics: only records a newer record of the same key has superseded may
    /// go, so the newest value of every key survives. The oldest segment goes once all
    /// its records are superseded (tracked for keys written since the node started, up to
    /// `resources.compact_index_bytes_max`); until then, writes get backpressure as `Keep`.
    Compact,
}

impl Eviction {
    /// Whether unsynced records of a topic with this policy may be evicted to make room
    /// for a write to a topic of priority `writer`, this topic having priority `own`.
    pub fn yields_to(self, own: u8, writer: u8) -> bool {
        match self {
            Eviction::Keep | Eviction::Compact => false,
            Eviction::Oldest | Eviction::Lru => own <= writer,
            Eviction::Priority => own < writer,
        }
    }

    /// The name scenario and config files use.
    pub fn name(self) -> &'static str {
        match self {
            Eviction::Keep => "keep",
            Eviction::Oldest => "oldest",
            Eviction::Priority => "priority",
            Eviction::Lru => "lru",
            Eviction::Compact => "compact",
        }
    }
}

/// How a topic's writes are made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Acknowledged once durable on this device (group commit).
    #[default]
    Eventual,
    /// Site clusters only: acknowledged once committed by the site's Raft group (durable on
    /// a majority of its members) and durable here. Refused without a quorum.
    Strong,
}

impl Consistency {
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Eventual => "eventual",
            Consistency::Strong => "strong",
        }
    }
}

/// One topic of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    pub name: String,
    pub sync: SyncDirection,
    /// Eviction order: lower is evicted first.
    pub priority: u8,
    /// What the topic gives up when storage is full.
    pub eviction: Eviction,
    /// Segments are deleted oldest first while the topic holds more than this.
    /// On an edge, only segments the gateway has acknowledged are ever deleted.
    pub retention_bytes: u64,
    /// Segments whose newest record is older than this are deleted (same rule for edges).
    pub retention_age: Option<Duration>,
    /// `Strong` needs a site cluster (`NodeConfig::cluster`).
    pub consistency: Consistency,
    /// On a gateway, for a topic that goes down: the peers below it that get the topic
    /// (edges, or middle tiers that relay it on; empty: none). `None`: every peer that
    /// asks for it.
    pub subscribers: Option<Vec<NodeId>>,
    /// One half of a `bidirectional` topic ([`NodeConfig::split_both_ways`]): the records
    /// written at edges, going up (`EdgeToCloud`), or those written at the top gateway,
    /// coming down (`CloudToEdge`). Both halves have the topic's name; each is a log of its
    /// own at every node, so every record keeps the identity its writer gave it (origin,
    /// sequence in its own stream) in both directions.
    pub both_ways: bool,
    /// A classified topic: the zones its records may be held in (guarantee 7). `None`:
    /// unclassified, it goes wherever its direction says.
    pub placement: Option<Placement>,
    /// A keyed topic whose writes are merged per key (docs/KEYED.md): every record's key
    /// names the key and its value is an operation (`keyed::KeyedOp`). `None`: records
    /// are kept as written (their keys feed `Eviction::Compact` only).
    pub keyed: Option<KeyedTopic>,
}

/// How a keyed topic merges writes, and the limits of its state at each node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedTopic {
    pub strategy: crate::keyed::Strategy,
    pub limits: crate::keyed::KeyedLimits,
    /// The merge of a `custom` topic (and of no other).
    pub merge: Option<crate::keyed::MergeFn>,
}

impl KeyedTopic {
    /// Limits when a file names none: 4 MiB of keys, 256 KiB of conflict log.
    pub const DEFAULT_LIMITS: crate::keyed::KeyedLimits =
        crate::keyed::KeyedLimits { state_bytes_max: 4 << 20, conflict_log_bytes_max: 256 << 10 };
}

/// The classification of a topic and the zones its records may be held in, resolved by the
/// loaders from a placement table (classification -> zones; [`DEFAULT_PLACEMENT_TOML`]
/// and a file's `[placement]`). A node sends a classified record only to a peer whose zone
/// is one of them, and holds one only in one of them; a node with no zone holds none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub classification: String,
    pub zones: Vec<String>,
}

/// The default placement table, as data (TOML: `classification = [zones]`); a file's
/// `[placement]` adds classifications or replaces these.
pub const DEFAULT_PLACEMENT_TOML: &str = include_str!("../placement.toml");

impl Placement {
    /// Whether a node in `zone` may hold the topic's records.
    pub fn allows(&self, zone: Option<&str>) -> bool {
        zone.is_some_and(|z| self.zones.iter().any(|a| a == z))
    }

    fn zones_text(&self) -> String {
        self.zones.join(", ")
    }

    /// Why `who` (`this node`, `node "till-3"`) in `zone` may not hold topic `topic`, if it
    /// may not.
    pub fn refuses_holder(&self, topic: &str, who: &str, zone: Option<&str>) -> Option<String> {
        (!self.allows(zone)).then(|| {
            format!(
                "topic {topic:?} is classified {}, whose records may be held only in zones [{}]; {who} is in {}",
                self.classification,
                self.zones_text(),
                zone_text(zone)
            )
        })
    }

    /// Why the route from `from` to `to` (node names with their zones) may not carry topic
    /// `topic`, if it may not: the daemon's and the scenario loader's one message for a
    /// configuration that sends a classified topic towards a forbidden zone.
    pub fn refuses_route(&self, topic: &str, from: (&str, Option<&str>), to: (&str, Option<&str>)) -> Option<String> {
        (!self.allows(to.1)).then(|| {
            format!(
                "topic {topic:?} is classified {}, whose records may go only to zones [{}]; the route {:?} ({}) -> \
                 {:?} ({}) leaves them; send it to a node in [{}], or add {} to the classification's zones in \
                 [placement]",
                self.classification,
                self.zones_text(),
                from.0,
                zone_text(from.1),
                to.0,
                zone_text(to.1),
                self.zones_text(),
                to.1.unwrap_or("the zone")
            )
        })
    }
}

/// A placement table: classification -> the zones its records may be held in. The loaders
/// parse the default table ([`DEFAULT_PLACEMENT_TOML`]) and a file's `[placement]`, and
/// check every name against their own rules ([`PlacementTable::names`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementTable(std::collections::BTreeMap<String, Vec<String>>);

impl PlacementTable {
    /// `defaults` with `file` over it. An error names the field (`placement.CLASS`) and
    /// what is wrong: a classification allowed nowhere.
    pub fn new(
        mut defaults: std::collections::BTreeMap<String, Vec<String>>,
        file: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<PlacementTable, ConfigError> {
        for (classification, zones) in file {
            if zones.is_empty() {
                return Err(ConfigError {
                    field: format!("placement.{classification}"),
                    message: "no zones: a classification's records must be allowed somewhere".into(),
                });
            }
            defaults.insert(classification.clone(), zones.clone());
        }
        Ok(PlacementTable(defaults))
    }

    /// Every name of the table with its field (`placement.gdpr`, `placement.gdpr[0]`), for
    /// the loader's own rule for names.
    pub fn names(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (classification, zones) in &self.0 {
            out.push((format!("placement.{classification}"), classification.as_str()));
            out.extend(zones.iter().enumerate().map(|(i, z)| (format!("placement.{classification}[{i}]"), z.as_str())));
        }
        out
    }

    /// The placement of a topic classified `classification`; the error says which are known.
    pub fn placement(&self, classification: &str) -> Result<Placement, String> {
        let zones = self.0.get(classification).ok_or_else(|| {
            let known: Vec<&str> = self.0.keys().map(String::as_str).collect();
            format!(
                "unknown classification {classification:?}; known: {} (add it to [placement] with the zones its \
                 records may be held in)",
                known.join(", ")
            )
        })?;
        Ok(Placement { classification: classification.to_string(), zones: zones.clone() })
    }
}

fn zone_text(zone: Option<&str>) -> String {
    zone.map_or_else(|| "no zone".to_string(), |z| format!("zone {z}"))
}

impl TopicConfig {
    pub fn new(name: &str, sync: SyncDirection) -> TopicConfig {
        TopicConfig {
            name: name.to_string(),
            sync,
            priority: 5,
            eviction: Eviction::Keep,
            retention_bytes: 256 << 20,
            retention_age: None,
            consistency: Consistency::Eventual,
            subscribers: None,
            both_ways: false,
            placement: None,
            keyed: None,
        }
    }

    pub fn is_strong(&self) -> bool {
        self.consistency == Consistency::Strong
    }

    /// Whether a gateway sends this topic down to `peer`: it goes down, and `peer` is
    /// one of its subscribers (or it names none).
    pub fn sent_down_to(&self, peer: NodeId) -> bool {
        self.sync.goes_down() && self.subscribers.as_ref().is_none_or(|s| s.contains(&peer))
    }
}

/// Which records of a `bidirectional` topic a fetch reads: its halves are separate logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// The records written at edges.
    Up,
    /// The records written at the top gateway.
    Down,
}

impl Way {
    pub fn name(self) -> &'static str {
        match self {
            Way::Up => "up",
            Way::Down => "down",
        }
    }

    pub fn parse(text: &str) -> Option<Way> {
        match text {
            "up" => Some(Way::Up),
            "down" => Some(Way::Down),
            _ => None,
        }
    }
}

/// Why a name does not find a topic to fetch from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicLookupError {
    /// No topic has the name.
    Unknown,
    /// The topic goes both ways: the fetch must say which half (`Way`).
    WayNeeded,
    /// The fetch names a way the topic's records do not go.
    NotThatWay { way: Way, sync: SyncDirection },
}

/// The names applications use for a node's topics ([`NodeConfig::topic_names`]): one
/// name per topic, which for a `bidirectional` topic stands for both of its halves.
/// Looked up on every produce and fetch, so by name in a map.
#[derive(Clone, Debug)]
pub struct TopicNames {
    /// Per name, its topics (one, or a `bidirectional` topic's two halves): index,
    /// direction, and whether applications write it at this node.
    by_name: std::collections::BTreeMap<String, Vec<(TopicIdx, SyncDirection, bool)>>,
}

impl TopicNames {
    fn named(&self, name: &str) -> &[(TopicIdx, SyncDirection, bool)] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// The topic a produce to `name` writes: of a `bidirectional` topic, the half written
    /// at this node (on a middle tier, which writes neither, the first: the node refuses).
    pub fn to_produce(&self, name: &str) -> Option<TopicIdx> {
        let found = self.named(name);
        let first = found.first()?.0;
        Some(found.iter().find(|&&(_, _, written)| written).map_or(first, |&(i, _, _)| i))
    }

    /// The topic a fetch of `name` reads: the half `way` names of a `bidirectional` topic
    /// (required), and for any other topic, the topic (a `way` given must be its own).
    pub fn to_fetch(&self, name: &str, way: Option<Way>) -> Result<TopicIdx, TopicLookupError> {
        let found = self.named(name);
        let Some(&(first, sync, _)) = found.first() else { return Err(TopicLookupError::Unknown) };
        let goes = |s: SyncDirection, w: Way| match w {
            Way::Up => s == SyncDirection::EdgeToCloud,
            Way::Down => s == SyncDirection::CloudToEdge,
        };
        match (way, found.len()) {
            (None, 1) => Ok(first),
            (None, _) => Err(TopicLookupError::WayNeeded),
            (Some(w), _) => found
                .iter()
                .find(|(_, s, _)| goes(*s, w))
                .map(|&(i, _, _)| i)
                .ok_or(TopicLookupError::NotThatWay { way: w, sync }),
        }
    }

    /// Every name once, in order.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

/// The log: segments and group commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment is sealed once it holds this many bytes; the next batch opens a new one.
    pub segment_bytes_max: u64,
    /// Records waiting for the next group commit, counted as key + value + 32 bytes each;
    /// beyond it produces are refused with `Busy` (backpressure).
    pub pending_bytes_max: u64,
    /// The largest single read the core asks of storage (recovery scans, sync reads).
    pub read_chunk_bytes: u32,
    /// The largest value a producer may write (at most `codec::MAX_VALUE_BYTES`): on a
    /// small device, one record must not take the memory budget.
    pub value_bytes_max: u32,
    /// How often retention by age is checked.
    pub retention_check_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 8 << 20,
            pending_bytes_max: 4 << 20,
            read_chunk_bytes: 256 << 10,
            value_bytes_max: crate::codec::MAX_VALUE_BYTES as u32,
            retention_check_interval: Duration::from_secs(60),
        }
    }
}

/// Edge → gateway store-and-forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// Records in one sync batch at most.
    pub batch_records_max: u32,
    /// Uncompressed record bytes in one sync batch: no record is added once a batch has
    /// reached it, so a batch may exceed it by one record.
    pub batch_bytes_max: u32,
    /// Uncompressed record bytes sent but not yet acknowledged, across all topics. No read
    /// starts once it is reached, so it may be exceeded by one batch per topic. Also what a
    /// loss costs at worst: go-back-N resends from the gap.
    pub window_bytes_max: u64,
    /// Without ack progress for this long while data is in flight, resend from the last ack.
    pub retransmit_timeout: Duration,
    /// Without any answer for this long, the session is given up and a new one begun.
    pub session_timeout: Duration,
    /// Reconnect backoff: first delay, cap, and the ± jitter fraction (drawn from the node's seed).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub backoff_jitter_percent: u8,
    /// Upload bandwidth limit (token bucket), if any, and its burst.
    pub bandwidth_bytes_per_sec: Option<u64>,
    pub bandwidth_burst_bytes: u64,
    /// How long a gateway keeps an edge's session without hearing from it (for memory).
    pub gateway_idle_timeout: Duration,
    /// An edge that receives `cloud-to-edge` topics says Hello again after this long
    /// without sending anything, so that a gateway that restarted (and forgot it) learns it
    /// is there and sends what went down meanwhile; it also keeps the session from
    /// expiring at the gateway. Must be below `gateway_idle_timeout`.
    pub keepalive_interval: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            batch_records_max: 4096,
            batch_bytes_max: 256 << 10,
            window_bytes_max: 1 << 20,
            retransmit_timeout: Duration::from_secs(5),
            session_timeout: Duration::from_secs(20),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            backoff_jitter_percent: 25,
            bandwidth_bytes_per_sec: None,
            bandwidth_burst_bytes: 256 << 10,
            gateway_idle_timeout: Duration::from_secs(600),
            keepalive_interval: Duration::from_secs(30),
        }
    }
}

/// Gateway-side limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Distinct (origin, topic) streams the gateway tracks at most; a Hello that would
    /// exceed it is refused.
    pub streams_max: usize,
    /// Accepted-but-not-yet-durable bytes at most, with the messages held until the clock
    /// can stamp them (`hold`); Data beyond it is dropped and resent.
    pub pending_bytes_max: u64,
    /// The largest records section (uncompressed) of a batch the gateway stores; a larger
    /// one is refused as a bad message. It must cover what edges send: their
    /// `sync.batch_bytes_max` plus one record.
    pub batch_raw_bytes_max: u64,
    /// Edges the gateway sends `cloud-to-edge` topics to at once, at most: each has a
    /// sender (window, reads, held message) in the memory plan. An edge beyond it waits
    /// until another's session expires.
    pub downlinks_max: usize,
    /// The peers allowed to forward other nodes' streams here: the middle tiers below this
    /// gateway. From any other peer, a batch must carry the peer's own identity.
    pub relays: Vec<NodeId>,
    /// A top gateway applies the topics' retention (`retention_bytes`, `retention_age`) to
    /// what goes up too, behind a durable checkpoint of its marks (`crate::marks`). Off,
    /// it keeps every record that came up: it is the store of record. A middle tier
    /// always deletes what the tier above acknowledged.
    pub up_retention: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            streams_max: 100_000,
            pending_bytes_max: 16 << 20,
            batch_raw_bytes_max: 4 << 20,
            downlinks_max: 8,
            relays: Vec::new(),
            up_retention: false,
        }
    }
}

/// Reads by applications (`Input::Fetch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchConfig {
    /// Fetches in flight at most; more are refused as `Busy`.
    pub in_flight_max: u32,
    /// The largest `max_bytes` honoured: what one fetch may collect before it answers.
    pub bytes_max: u32,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig { in_flight_max: 4, bytes_max: 1 << 20 }
    }
}

/// The node's budgets (DESIGN §3, guarantee 8). Every buffer, queue and in-flight request
/// draws from `memory_bytes_max`; segment and meta files from `storage_bytes_max`. See
/// `resources` for who draws what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceConfig {
    pub memory_bytes_max: u64,
    pub storage_bytes_max: u64,
    /// After storage reported no space, produces are refused for this long before a write
    /// is tried again; the wait doubles up to `disk_full_probe_max` while it stays full.
    pub disk_full_probe_min: Duration,
    pub disk_full_probe_max: Duration,
    /// Memory for the newest sequence of each key of `compact` topics (key bytes + 64 per
    /// key); keys beyond it are not tracked, and their records are never compacted away.
    pub compact_index_bytes_max: u64,
}

impl Default for ResourceConfig {
    fn default() -> Self {
        ResourceConfig {
            memory_bytes_max: 64 << 20,
            storage_bytes_max: 1 << 30,
            disk_full_probe_min: Duration::from_secs(1),
            disk_full_probe_max: Duration::from_secs(30),
            compact_index_bytes_max: 1 << 20,
        }
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    pub id: NodeId,
    pub role: Role,
    pub topics: Vec<TopicConfig>,
    /// The gateway an edge forwards to; on a gateway, the next tier up (this gateway is
    /// then a middle tier: it relays what its edges send up and what comes down to them).
    pub upstream: Option<NodeId>,
    pub log: LogConfig,
    pub sync: SyncConfig,
    pub gateway: GatewayConfig,
    pub fetch: FetchConfig,
    pub resources: ResourceConfig,
    pub hlc: HlcConfig,
    /// The site cluster this edge is a member of, if any.
    pub cluster: Option<ClusterConfig>,
    /// This node's compliance zone: it holds classified records only if their placement
    /// allows it (guarantee 7). `None`: it holds none.
    pub zone: Option<String>,
    /// The zone of `upstream`, as configured: a classified topic goes up only where it is
    /// allowed; on a middle tier, one that may not go further stays here (`sends_up`). The
    /// peer's Welcome states its zone, and a sender sends nothing classified to a peer whose
    /// stated zone is not allowed either.
    pub upstream_zone: Option<String>,
}

/// A site cluster: edges of one site that run Raft together (see `site`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    pub name: String,
    /// The identity of the cluster's stream at the gateway: strong topics' records have
    /// this origin, whichever member's leader forwarded them, so a leader change neither
    /// loses nor duplicates them there. Must differ from every node's id.
    pub id: NodeId,
    /// Every voting member, this node included (at most `raft::MEMBERS_MAX`).
    pub members: Vec<NodeId>,
    pub raft: crate::raft::RaftConfig,
    pub detector: crate::detector::DetectorConfig,
    /// How often a member pings every other member (the failure detector's samples).
    pub ping_interval: Duration,
    /// Strong writes taken on this member and not yet committed, at most; beyond it
    /// produces are refused as `Busy`.
    pub strong_pending_max: usize,
    /// A strong write not committed within this is answered `Unconfirmed`.
    pub strong_write_timeout: Duration,
    /// Bytes of Raft log entries held in memory at most (entries not yet compacted
    /// because the gateway has not acknowledged their records, or they are not yet durable
    /// here); beyond it strong writes are refused as `SiteUnavailable`.
    pub log_bytes_max: u64,
    /// The log is compacted once this many entries can go.
    pub compact_entries_min: usize,
    /// How often the leader tells the group what the gateway acknowledged.
    pub marks_interval: Duration,
}

impl ClusterConfig {
    pub fn new(name: &str, id: NodeId, members: Vec<NodeId>) -> ClusterConfig {
        ClusterConfig {
            name: name.to_string(),
            id,
            members,
            raft: crate::raft::RaftConfig::default(),
            detector: crate::detector::DetectorConfig::default(),
            ping_interval: Duration::from_millis(100),
            strong_pending_max: 1024,
            strong_write_timeout: Duration::from_secs(10),
            log_bytes_max: 8 << 20,
            compact_entries_min: 1024,
            marks_interval: Duration::from_secs(1),
        }
    }

    /// The identity a cluster named `name` gets when none is configured: FNV-1a of the
    /// name with the top bit set, so it cannot collide with ids derived otherwise.
    pub fn id_of(name: &str) -> NodeId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        NodeId(h | 1 << 63)
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl NodeConfig {
    pub fn new(id: NodeId, role: Role, topics: Vec<TopicConfig>) -> NodeConfig {
        let mut resources = ResourceConfig::default();
        if role == Role::Gateway {
            // A gateway is a server: the default limits of 100,000 streams need more.
            resources.memory_bytes_max = 256 << 20;
            resources.storage_bytes_max = 64 << 30;
        }
        NodeConfig {
            id,
            role,
            topics,
            upstream: None,
            log: LogConfig::default(),
            sync: SyncConfig::default(),
            gateway: GatewayConfig::default(),
            fetch: FetchConfig::default(),
            resources,
            hlc: HlcConfig::default(),
            cluster: None,
            zone: None,
            upstream_zone: None,
        }
    }

    /// A gateway with an upstream: it relays both ways and writes no topic itself.
    pub fn is_middle_tier(&self) -> bool {
        self.role == Role::Gateway && self.upstream.is_some()
    }

    /// Whether this gateway deletes segments of the topics that go up, and so keeps the
    /// marks of the streams it receives in its checkpoints: a middle tier, or a top
    /// gateway with `gateway.up_retention`.
    pub fn deletes_what_came_up(&self) -> bool {
        self.is_middle_tier() || (self.role == Role::Gateway && self.gateway.up_retention)
    }

    /// Whether this node sends topic `t` on to its upstream: it goes up, and, classified,
    /// the upstream's zone is one its placement allows. On a middle tier a topic that may
    /// not go further ends here: this gateway is its top.
    pub fn sends_up(&self, t: &TopicConfig) -> bool {
        t.sync.goes_up()
            && self.upstream.is_some()
            && t.placement.as_ref().is_none_or(|p| p.allows(self.upstream_zone.as_deref()))
    }

    /// Why a produce to `t` here is refused for placement, if it is: this node may not
    /// hold its records, or (an edge) it goes up and its upstream may not take them, as
    /// configured or (`peer_refuses`) as the upstream's Welcome stated its zone.
    pub fn placement_refusal(&self, t: &TopicConfig, peer_refuses: bool) -> Option<String> {
        let p = t.placement.as_ref()?;
        p.refuses_holder(&t.name, "this node", self.zone.as_deref())
            .or_else(|| {
                self.upstream.filter(|_| t.sync.goes_up() && !self.sends_up(t))?;
                p.refuses_holder(&t.name, "its upstream, the only node it goes to,", self.upstream_zone.as_deref())
            })
            .or_else(|| {
                peer_refuses.then(|| {
                    format!(
                        "topic {:?} is classified {}, whose records may be held only in zones [{}]; its upstream, the \
                     only node it goes to, stated another zone when it last answered",
                        t.name,
                        p.classification,
                        p.zones.join(", ")
                    )
                })
            })
    }

    /// How many (subscriber, topic) pairs this gateway's `cloud-to-edge` topics name: the
    /// marks it keeps, and checkpoints, to know what every subscriber holds.
    pub fn named_subscriptions(&self) -> u64 {
        let named = self.topics.iter().filter(|t| t.sync.goes_down()).filter_map(|t| t.subscribers.as_ref());
        if self.role == Role::Gateway {
            named.map(|s| s.len() as u64).sum()
        } else {
            0
        }
    }

    /// Whether this node's sender to its upstream says Hello again after
    /// `sync.keepalive_interval` of silence: it receives topics that come down (a gateway
    /// that restarted learns it is there), or it has classified topics (it learns the zone
    /// a restarted gateway now states, before it sends or refuses any more of them).
    pub fn needs_keepalive(&self) -> bool {
        self.topics.iter().any(|t| t.sync.goes_down() || t.placement.is_some())
    }

    /// Whether applications write `t` at this node (`SyncDirection::written_at`).
    pub fn writes(&self, t: &TopicConfig) -> bool {
        t.sync.written_at(self.role, self.is_middle_tier())
    }

    /// Splits every `bidirectional` topic into its two halves (`TopicConfig::both_ways`):
    /// the half that goes up takes the topic's place, so every other topic keeps its
    /// index (and its storage); the half that comes down is appended after the last
    /// topic, with the topic's `subscribers`. The loaders call it once a file's topics
    /// are complete; `validate` refuses a `Bidirectional` topic that was not split.
    pub fn split_both_ways(&mut self) {
        let mut down_halves = Vec::new();
        for t in self.topics.iter_mut().filter(|t| t.sync == SyncDirection::Bidirectional) {
            let mut down = t.clone();
            down.sync = SyncDirection::CloudToEdge;
            down.both_ways = true;
            t.sync = SyncDirection::EdgeToCloud;
            t.both_ways = true;
            t.subscribers = None;
            down_halves.push(down);
        }
        self.topics.extend(down_halves);
    }

    /// The names applications use for this node's topics.
    pub fn topic_names(&self) -> TopicNames {
        let mut by_name = std::collections::BTreeMap::<String, Vec<_>>::new();
        for (i, t) in self.topics.iter().enumerate() {
            by_name.entry(t.name.clone()).or_default().push((TopicIdx(i as u16), t.sync, self.writes(t)));
        }
        TopicNames { by_name }
    }

    /// What a receiving node may hold of accepted batches not yet durable and messages
    /// waiting for the clock: a gateway its `gateway.pending_bytes_max`; an edge with
    /// `cloud-to-edge` topics one sync window (a sender keeps no more than its window in
    /// flight, and what does not fit is dropped and resent); other edges nothing.
    pub fn receive_pending_max(&self) -> u64 {
        match self.role {
            Role::Gateway => self.gateway.pending_bytes_max,
            Role::Edge if self.topics.iter().any(|t| t.sync.goes_down()) => self.sync.window_bytes_max,
            Role::Edge => 0,
        }
    }

    /// The largest records section this node stores from a peer: a gateway's
    /// `gateway.batch_raw_bytes_max`; an edge what its own sync batches may hold (its
    /// `sync.batch_bytes_max`, one record of at most its `log.value_bytes_max`, and the
    /// records' varints), which its memory plan covers.
    pub fn receive_batch_raw_max(&self) -> u64 {
        match self.role {
            Role::Gateway => self.gateway.batch_raw_bytes_max,
            Role::Edge => {
                let record_max = (self.log.value_bytes_max as usize + crate::codec::MAX_KEY_BYTES) as u64 + 16;
                u64::from(self.sync.batch_bytes_max) + record_max + 7 * u64::from(self.sync.batch_records_max)
            }
        }
    }

    /// What is wrong with topic `i` as a `bidirectional` topic or one half of one: it
    /// must be split, and its halves are one up and one down, eventual.
    fn both_ways_problem(&self, i: usize, t: &TopicConfig) -> Option<String> {
        let name = &t.name;
        if t.sync == SyncDirection::Bidirectional {
            return Some(format!(
                "topic {name:?} goes both ways and was not split into its halves (NodeConfig::split_both_ways)"
            ));
        }
        if !t.both_ways {
            return None;
        }
        let partner = |o: &&TopicConfig| o.name == *name && o.both_ways;
        let others: Vec<&TopicConfig> =
            self.topics.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, o)| o).filter(partner).collect();
        if !matches!(t.sync, SyncDirection::EdgeToCloud | SyncDirection::CloudToEdge)
            || others.len() != 1
            || others[0].sync.goes_up() == t.sync.goes_up()
        {
            return Some(format!(
                "topic {name:?}: a bidirectional topic is one half that goes up and one that comes down"
            ));
        }
        t.is_strong().then(|| {
            format!(
                "topic {name:?} goes both ways, and strong consistency is for a site's own writes; use eventual, or \
                 one strong topic that goes up and another that comes down"
            )
        })
    }

    /// Checks the limits against each other and against the codec's bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &str, message: String| Err(ConfigError { field: field.into(), message });
        if self.topics.is_empty() {
            return err("topics", "at least one topic is required".into());
        }
        for (i, t) in self.topics.iter().enumerate() {
            let Some(k) = &t.keyed else { continue };
            // Compaction would drop a superseded record that is still a concurrent version,
            // and eviction a write other replicas merge: their states would differ.
            if t.eviction != Eviction::Keep {
                return err(
                    &format!("topics[{i}].eviction"),
                    "a keyed topic with a conflict strategy keeps its records (eviction \"keep\")".into(),
                );
            }
            if k.limits.state_bytes_max == 0 {
                return err(&format!("topics[{i}].keyed"), "the keyed state's limit must be above zero".into());
            }
            match (k.strategy == crate::keyed::Strategy::Custom, k.merge.is_some()) {
                (true, false) => return err(
                    &format!("topics[{i}].keyed.merge"),
                    "a \"custom\" topic needs a merge: register one (KeyedTopic::merge) or name a WebAssembly module"
                        .into(),
                ),
                (false, true) => {
                    return err(
                        &format!("topics[{i}].keyed.merge"),
                        format!("only a \"custom\" topic takes a merge, and this one is {:?}", k.strategy.name()),
                    )
                }
                _ => {}
            }
        }
        if self.topics.len() > u16::MAX as usize {
            return err("topics", format!("{} topics; at most {}", self.topics.len(), u16::MAX));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.name.is_empty() || t.name.len() > 255 {
                return err(&format!("topics[{i}].name"), "must be 1 to 255 bytes".into());
            }
            if let Some(message) = self.both_ways_problem(i, t) {
                return err(&format!("topics[{i}].sync"), message);
            }
            let halves = t.both_ways && self.topics[..i].iter().any(|o| o.name == t.name && o.both_ways);
            if !halves && self.topics[..i].iter().any(|o| o.name == t.name) {
                return err(&format!("topics[{i}].name"), format!("duplicate topic {:?}", t.name));
            }
            let Some(subs) = &t.subscribers else { continue };
            let field = format!("topics[{i}].subscribers");
            if self.role != Role::Gateway || !t.sync.goes_down() {
                return err(
                    &field,
                    format!(
                        "topic {:?}: only a gateway's topics that go down have subscribers (the peers it sends \
                         them to)",
                        t.name
                    ),
                );
            }
            if let Some(&me) = subs.iter().find(|&&p| p == self.id || Some(p) == self.upstream) {
                return err(
                    &field,
                    format!("topic {:?}: node {me} is this gateway or its upstream, not a peer below it", t.name),
                );
            }
        }
        if self.role == Role::Edge && self.upstream.is_none() && self.topics.iter().any(|t| t.sync.goes_up()) {
            return err("upstream", "an edge with topics that sync up needs a gateway".into());
        }
        if self.role == Role::Edge && self.upstream.is_none() && self.topics.iter().any(|t| t.sync.goes_down()) {
            return err("upstream", "an edge with cloud-to-edge topics needs a gateway to receive them from".into());
        }
        if self.upstream == Some(self.id) {
            return err("upstream", "a node cannot forward to itself".into());
        }
        if let Some(r) = self.gateway.relays.iter().find(|&&r| r == self.id || Some(r) == self.upstream) {
            return err(
                "gateway.relays",
                format!("node {r} relays to this gateway, so it cannot be this gateway or its upstream"),
            );
        }
        if self.role == Role::Gateway
            && self.topics.iter().any(|t| t.sync.goes_down())
            && self.gateway.downlinks_max == 0
        {
            return err("gateway.downlinks_max", "at least 1 for a gateway with cloud-to-edge topics".into());
        }
        let raw_max = crate::codec::MAX_BATCH_RAW_BYTES as u64;
        if u64::from(self.sync.batch_bytes_max) > raw_max / 2 {
            return err("sync.batch_bytes_max", format!("at most {}", raw_max / 2));
        }
        if self.sync.batch_records_max == 0 || self.sync.batch_records_max as usize > crate::codec::MAX_BATCH_RECORDS {
            return err("sync.batch_records_max", format!("must be 1 to {}", crate::codec::MAX_BATCH_RECORDS));
        }
        if self.sync.keepalive_interval.as_nanos() == 0
            || self.sync.keepalive_interval >= self.sync.gateway_idle_timeout
        {
            return err("sync.keepalive_interval", "must be above zero and below sync.gateway_idle_timeout".into());
        }
        if self.sync.window_bytes_max < u64::from(self.sync.batch_bytes_max) {
            return err("sync.window_bytes_max", "must hold at least one batch".into());
        }
        if self.log.value_bytes_max == 0 || self.log.value_bytes_max as usize > crate::codec::MAX_VALUE_BYTES {
            return err("log.value_bytes_max", format!("must be 1 to {}", crate::codec::MAX_VALUE_BYTES));
        }
        if self.log.read_chunk_bytes < 64 << 10 {
            return err("log.read_chunk_bytes", "at least 64 KiB".into());
        }
        if self.sync.backoff_min.0 == 0 || self.sync.backoff_max < self.sync.backoff_min {
            return err("sync.backoff_min", "must be > 0 and <= backoff_max".into());
        }
        let g = self.gateway.batch_raw_bytes_max;
        let one_record = (crate::codec::MAX_VALUE_BYTES + crate::codec::MAX_KEY_BYTES + 16) as u64;
        if g < one_record || g > crate::codec::MAX_BATCH_RAW_BYTES as u64 {
            return err(
                "gateway.batch_raw_bytes_max",
                format!(
                    "must hold the largest record, {one_record} bytes, and be at most {}",
                    crate::codec::MAX_BATCH_RAW_BYTES
                ),
            );
        }
        if self.fetch.in_flight_max == 0 || self.fetch.bytes_max == 0 {
            return err("fetch", "in_flight_max and bytes_max must be more than zero".into());
        }
        self.validate_cluster()?;
        let r = &self.resources;
        if r.disk_full_probe_min.0 == 0 || r.disk_full_probe_max < r.disk_full_probe_min {
            return err("resources.disk_full_probe_min", "must be > 0 and <= disk_full_probe_max".into());
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let err = |field: &str, message: String| Err(ConfigError { field: field.into(), message });
        let Some(c) = &self.cluster else {
            if let Some(i) = self.topics.iter().position(TopicConfig::is_strong) {
                return err(
                    &format!("topics[{i}].consistency"),
                    "\"strong\" needs a site cluster: set cluster, or use \"eventual\"".into(),
                );
            }
            return Ok(());
        };
        if self.role != Role::Edge {
            return err("cluster", "only edges form site clusters".into());
        }
        if !c.members.contains(&self.id) {
            return err("cluster.members", format!("must include this node ({})", self.id));
        }
        if c.members.len() > crate::raft::MEMBERS_MAX {
            return err("cluster.members", format!("at most {} members", crate::raft::MEMBERS_MAX));
        }
        if c.members.contains(&c.id) || c.id == self.id || self.upstream == Some(c.id) {
            return err("cluster.id", format!("{} is a node's id; the cluster's stream needs its own", c.id));
        }
        c.raft.validate().or_else(|e| err("cluster.raft", e))?;
        c.detector.validate().or_else(|e| err("cluster.detector", e))?;
        if c.ping_interval.0 == 0 || c.strong_pending_max == 0 || c.strong_write_timeout.0 == 0 {
            return err(
                "cluster",
                "ping_interval, strong_pending_max and strong_write_timeout must be above zero".into(),
            );
        }
        if c.compact_entries_min == 0 {
            return err("cluster.compact_entries_min", "must be above zero".into());
        }
        let one = (crate::codec::MAX_KEY_BYTES + self.log.value_bytes_max as usize) as u64 + 256;
        if c.log_bytes_max < 4 * one || c.log_bytes_max < c.raft.uncommitted_bytes_max as u64 {
            return err(
                "cluster.log_bytes_max",
                format!(
                    "must hold four of the largest records ({one} bytes each with log.value_bytes_max) and \
                     cluster.raft.uncommitted_bytes_max"
                ),
            );
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.is_strong() && !matches!(t.sync, SyncDirection::EdgeToCloud | SyncDirection::Local) {
                return err(
                    &format!("topics[{i}].sync"),
                    "a strong topic syncs edge-to-cloud (from the site's leader) or stays local".into(),
                );
            }
            if t.is_strong() && t.eviction != Eviction::Keep {
                return err(
                    &format!("topics[{i}].eviction"),
                    "a strong topic keeps its records (eviction \"keep\"): they were committed by the site".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(role: Role, topics: Vec<TopicConfig>) -> NodeConfig {
        let mut cfg = NodeConfig::new(NodeId(1), role, topics);
        if role == Role::Edge {
            cfg.upstream = Some(NodeId(9));
        }
        cfg.split_both_ways();
        cfg
    }

    #[test]
    fn a_bidirectional_topic_is_two_halves_and_every_other_topic_keeps_its_index() {
        let mut both = TopicConfig::new("orders", SyncDirection::Bidirectional);
        both.retention_bytes = 1 << 20;
        let topics = vec![both, TopicConfig::new("status", SyncDirection::EdgeToCloud)];
        let edge = split(Role::Edge, topics.clone());
        let directions: Vec<(&str, SyncDirection, bool)> =
            edge.topics.iter().map(|t| (t.name.as_str(), t.sync, t.both_ways)).collect();
        assert_eq!(
            directions,
            [
                ("orders", SyncDirection::EdgeToCloud, true),
                ("status", SyncDirection::EdgeToCloud, false),
                ("orders", SyncDirection::CloudToEdge, true),
            ]
        );
        assert!(edge.topics.iter().all(|t| t.retention_bytes == 1 << 20 || t.name == "status"));
        assert_eq!(edge.validate(), Ok(()));
        let names = edge.topic_names();
        assert_eq!(names.names(), ["orders", "status"]);
        assert_eq!(names.to_produce("orders"), Some(TopicIdx(0)), "an edge writes the half that goes up");
        assert_eq!(split(Role::Gateway, topics.clone()).topic_names().to_produce("orders"), Some(TopicIdx(2)));
        assert_eq!(names.to_fetch("orders", None), Err(TopicLookupError::WayNeeded));
        assert_eq!(names.to_fetch("orders", Some(Way::Down)), Ok(TopicIdx(2)));
        assert_eq!(names.to_fetch("status", None), Ok(TopicIdx(1)));
        assert_eq!(names.to_fetch("status", Some(Way::Up)), Ok(TopicIdx(1)));
        assert_eq!(
            names.to_fetch("status", Some(Way::Down)),
            Err(TopicLookupError::NotThatWay { way: Way::Down, sync: SyncDirection::EdgeToCloud })
        );
        assert_eq!(names.to_fetch("nope", None), Err(TopicLookupError::Unknown));
        assert_eq!(names.to_produce("nope"), None);
    }

    #[test]
    fn a_bidirectional_topic_must_be_split_into_one_half_each_way_and_eventual() {
        let unsplit =
            NodeConfig::new(NodeId(1), Role::Gateway, vec![TopicConfig::new("o", SyncDirection::Bidirectional)]);
        let e = unsplit.validate().expect_err("refused");
        assert_eq!(e.field, "topics[0].sync");
        assert!(e.message.contains("split_both_ways"), "{e}");

        let mut strong = TopicConfig::new("o", SyncDirection::Bidirectional);
        strong.consistency = Consistency::Strong;
        let e = split(Role::Gateway, vec![strong]).validate().expect_err("refused");
        assert!(e.message.contains("strong consistency"), "{e}");

        let mut two_up = split(Role::Gateway, vec![TopicConfig::new("o", SyncDirection::Bidirectional)]);
        two_up.topics[1].sync = SyncDirection::EdgeToCloud;
        let e = two_up.validate().expect_err("refused");
        assert!(e.message.contains("one half that goes up and one that comes down"), "{e}");

        let mut lone = TopicConfig::new("o", SyncDirection::EdgeToCloud);
        lone.both_ways = true;
        let e = NodeConfig::new(NodeId(1), Role::Gateway, vec![lone]).validate().expect_err("refused");
        assert!(e.message.contains("one half that goes up"), "{e}");

        let twice =
            vec![TopicConfig::new("o", SyncDirection::EdgeToCloud), TopicConfig::new("o", SyncDirection::CloudToEdge)];
        let e = NodeConfig::new(NodeId(1), Role::Gateway, twice).validate().expect_err("refused");
        assert_eq!((e.field.as_str(), e.message.as_str()), ("topics[1].name", "duplicate topic \"o\""));
    }
}

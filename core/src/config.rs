//! Configuration of a node. Every queue, batch, buffer and timeout of the core has its
//! limit here (engineering rule 2); the defaults suit a Raspberry Pi class device.

use crate::hlc::HlcConfig;
use crate::types::{Duration, NodeId};
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
}

/// One topic of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    pub name: String,
    pub sync: SyncDirection,
    /// Eviction order: lower is evicted first.
    pub priority: u8,
    /// Segments are deleted oldest first while the topic holds more than this.
    /// On an edge, only segments the gateway has acknowledged are ever deleted.
    pub retention_bytes: u64,
    /// Segments whose newest record is older than this are deleted (same rule for edges).
    pub retention_age: Option<Duration>,
}

impl TopicConfig {
    pub fn new(name: &str, sync: SyncDirection) -> TopicConfig {
        TopicConfig { name: name.to_string(), sync, priority: 5, retention_bytes: 256 << 20, retention_age: None }
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
    /// How often retention by age is checked.
    pub retention_check_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 8 << 20,
            pending_bytes_max: 4 << 20,
            read_chunk_bytes: 256 << 10,
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
        }
    }
}

/// Gateway-side limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Distinct (origin, topic) streams the gateway tracks at most; a Hello that would
    /// exceed it is refused.
    pub streams_max: usize,
    /// Accepted-but-not-yet-durable bytes at most; Data beyond it is dropped and resent.
    pub pending_bytes_max: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig { streams_max: 100_000, pending_bytes_max: 16 << 20 }
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub id: NodeId,
    pub role: Role,
    pub topics: Vec<TopicConfig>,
    /// The gateway an edge forwards to.
    pub upstream: Option<NodeId>,
    pub log: LogConfig,
    pub sync: SyncConfig,
    pub gateway: GatewayConfig,
    pub hlc: HlcConfig,
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
        NodeConfig {
            id,
            role,
            topics,
            upstream: None,
            log: LogConfig::default(),
            sync: SyncConfig::default(),
            gateway: GatewayConfig::default(),
            hlc: HlcConfig::default(),
        }
    }

    /// Checks the limits against each other and against the codec's bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field: &str, message: String| Err(ConfigError { field: field.into(), message });
        if self.topics.is_empty() {
            return err("topics", "at least one topic is required".into());
        }
        if self.topics.len() > u16::MAX as usize {
            return err("topics", format!("{} topics; at most {}", self.topics.len(), u16::MAX));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.name.is_empty() || t.name.len() > 255 {
                return err(&format!("topics[{i}].name"), "must be 1 to 255 bytes".into());
            }
            if self.topics[..i].iter().any(|o| o.name == t.name) {
                return err(&format!("topics[{i}].name"), format!("duplicate topic {:?}", t.name));
            }
        }
        if self.role == Role::Edge && self.upstream.is_none() && self.topics.iter().any(|t| t.sync.goes_up()) {
            return err("upstream", "an edge with topics that sync up needs a gateway".into());
        }
        let raw_max = crate::codec::MAX_BATCH_RAW_BYTES as u64;
        if u64::from(self.sync.batch_bytes_max) > raw_max / 2 {
            return err("sync.batch_bytes_max", format!("at most {}", raw_max / 2));
        }
        if self.sync.batch_records_max == 0 || self.sync.batch_records_max as usize > crate::codec::MAX_BATCH_RECORDS {
            return err("sync.batch_records_max", format!("must be 1 to {}", crate::codec::MAX_BATCH_RECORDS));
        }
        if self.sync.window_bytes_max < u64::from(self.sync.batch_bytes_max) {
            return err("sync.window_bytes_max", "must hold at least one batch".into());
        }
        if self.log.read_chunk_bytes < 64 << 10 {
            return err("log.read_chunk_bytes", "at least 64 KiB".into());
        }
        if self.sync.backoff_min.0 == 0 || self.sync.backoff_max < self.sync.backoff_min {
            return err("sync.backoff_min", "must be > 0 and <= backoff_max".into());
        }
        Ok(())
    }
}

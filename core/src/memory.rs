//! Memory accounts: the parts a node's memory is accounted in ([`MemoryPart`]), bytes per
//! part ([`MemoryUsage`], for what is held now and for maxima), and what every component's
//! plan is derived from ([`PlanBasis`]). Each component exports its planned maxima (a
//! `planned` function beside its state); the node's plan is their sum
//! (`Node::plan`), which `resources::check_budgets` checks against the budget.
//!
//! A leaf: it imports only the configuration and the sizes of frames and records.

use crate::codec::{self, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::config::{NodeConfig, Role};
use crate::log::{Segment, LOG_FRAME_MIN};

/// One account of a node's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemoryPart {
    /// The node itself and its configuration.
    Fixed,
    /// Segment lists, sync streams, gateway marks and sessions, disk requests in flight,
    /// the output queue.
    Index,
    /// zstd contexts and the encoder's scratch buffer.
    Codec,
    /// Records waiting for the next group commit, and the replies of the commit in flight
    /// and its copy of what it writes to keyed topics.
    ProduceBuffer,
    /// Gateway: batches accepted from edges and not yet durable, and messages held until
    /// the clock can stamp them (`hold`); the two share `gateway.pending_bytes_max`.
    GatewayPending,
    /// Encoded sync batches held back by the bandwidth limit.
    SyncHeld,
    /// Records a fetch has gathered and not yet answered.
    FetchResults,
    /// io: bytes of appends in flight (group commits, meta records).
    Writes,
    /// io: bytes of reads in flight (recovery, sync, fetch).
    Reads,
    /// io: sync bytes sent and not yet acknowledged (what the transport buffers).
    SyncWindow,
    /// Transient buffers inside one call (a read being decoded, a batch being encoded):
    /// reserved whole while the node runs, as it cannot be seen between calls.
    Scratch,
    /// Site members: the Raft log held in memory, Raft state queued for storage, strong
    /// writes waiting for commit, forwards remembered (see `site::Site::heap_bytes`).
    Site,
}

/// Every part, in report order.
pub const MEMORY_PARTS: [MemoryPart; 12] = [
    MemoryPart::Fixed,
    MemoryPart::Index,
    MemoryPart::Codec,
    MemoryPart::ProduceBuffer,
    MemoryPart::GatewayPending,
    MemoryPart::SyncHeld,
    MemoryPart::FetchResults,
    MemoryPart::Writes,
    MemoryPart::Reads,
    MemoryPart::SyncWindow,
    MemoryPart::Scratch,
    MemoryPart::Site,
];

impl MemoryPart {
    pub fn name(self) -> &'static str {
        match self {
            MemoryPart::Fixed => "fixed",
            MemoryPart::Index => "index",
            MemoryPart::Codec => "codec",
            MemoryPart::ProduceBuffer => "produce_buffer",
            MemoryPart::GatewayPending => "gateway_pending",
            MemoryPart::SyncHeld => "sync_held",
            MemoryPart::FetchResults => "fetch_results",
            MemoryPart::Writes => "writes",
            MemoryPart::Reads => "reads",
            MemoryPart::SyncWindow => "sync_window",
            MemoryPart::Scratch => "scratch",
            MemoryPart::Site => "site",
        }
    }

    /// Whether the part is held in the node's own heap (not lent to the driver, not a
    /// reservation for transient buffers).
    pub fn is_held(self) -> bool {
        !matches!(self, MemoryPart::Writes | MemoryPart::Reads | MemoryPart::SyncWindow | MemoryPart::Scratch)
    }
}

/// Bytes per memory part: actual use ([`Node::memory`](crate::Node::memory)) or maxima
/// ([`MemoryPlan`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    pub parts: [u64; MEMORY_PARTS.len()],
}

impl MemoryUsage {
    /// Adds every part of `other` (the plans of components sum to the node's).
    pub fn add(&mut self, other: &MemoryUsage) {
        for (a, b) in self.parts.iter_mut().zip(other.parts) {
            *a += b;
        }
    }

    /// Adds `bytes` to `part`.
    pub fn grow(&mut self, part: MemoryPart, bytes: u64) {
        self.parts[part as usize] += bytes;
    }

    pub fn get(&self, part: MemoryPart) -> u64 {
        self.parts[part as usize]
    }

    pub fn set(&mut self, part: MemoryPart, bytes: u64) {
        self.parts[part as usize] = bytes;
    }

    pub fn total(&self) -> u64 {
        self.parts.iter().sum()
    }

    /// The parts held in the node's own heap.
    pub fn held(&self) -> u64 {
        MEMORY_PARTS.iter().filter(|p| p.is_held()).map(|&p| self.get(p)).sum()
    }

    /// The first part above its maximum in `plan`, if any.
    pub fn over(&self, plan: &MemoryPlan) -> Option<(MemoryPart, u64, u64)> {
        MEMORY_PARTS.iter().map(|&p| (p, self.get(p), plan.max.get(p))).find(|&(_, used, max)| used > max)
    }
}

/// The maximum of every part for a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub max: MemoryUsage,
    /// The largest single read the node issues.
    pub read_max: u64,
    /// The largest records section the node encodes or decodes.
    pub batch_raw_max: u64,
}

/// Heap bytes a `BTreeMap<K, V>` of `len` entries holds at most. The standard library's
/// B-tree allocates whole nodes of 11 slots (a map of one entry holds 11 slots), and
/// every node but the root is at least 5 full; internal nodes add 12 edges. A per-entry
/// estimate undercounts small maps of large values by ten times (a gateway's sender per
/// edge holds a map of one stream: found by `fleet-config`, whose 50 edges' maps took
/// 125 KiB more than their per-entry estimate).
pub const fn btree_bytes(len: u64, key: usize, value: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    let node = 16 + 11 * (key + value) as u64 + 12 * 8;
    let nodes = if len <= 11 {
        1
    } else {
        let leaves = len.div_ceil(5);
        leaves + leaves.div_ceil(5)
    };
    nodes * node
}

/// What one entry of each index structure costs, in bytes of heap: the entry and its
/// share of the container's slack. Estimates from the type sizes (a `BTreeMap` node holds
/// up to 11 entries plus pointers, so an entry costs about its size and a half).
pub const SEGMENT_ENTRY_BYTES: u64 = 2 * std::mem::size_of::<Segment>() as u64;
pub const DISK_OP_ENTRY_BYTES: u64 = 96;
/// zstd's own allocations (C heap) for one compression context at the batch level and
/// one decompression context, as `ZSTD_sizeof_CCtx`/`ZSTD_sizeof_DCtx` report them after
/// the largest batches (measured by the allocator test in `sim/tests/memory.rs`, which
/// fails if they grow past this).
pub const ZSTD_CONTEXTS_BYTES: u64 = 1536 << 10;
/// Allocator rounding and small structures not itemised (topic names, the HLC, maps of
/// a few entries).
pub const FIXED_SLACK_BYTES: u64 = 32 << 10;
/// Bytes of sync message around a batch: header, session, HLC, topic name, lengths.
pub const SYNC_MSG_OVERHEAD: u64 = 64 + 255;

/// What the components' plans are derived from: the sizes of the largest record, batch,
/// frame and read under a configuration, and how many of each thing may exist at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanBasis {
    pub edge: bool,
    pub topics: u64,
    /// Topics an edge syncs up, or a middle tier relays up (none on a top gateway).
    pub up: u64,
    /// `cloud-to-edge` topics: a gateway's senders carry them, an edge receives them.
    pub down: u64,
    /// A gateway's senders of `cloud-to-edge` topics at most (`gateway.downlinks_max`;
    /// none without such topics, none on an edge).
    pub downlinks: u64,
    /// The produce buffer (`log.pending_bytes_max`) of a node applications write to: an
    /// edge, or a gateway with `cloud-to-edge` topics.
    pub pending: u64,
    /// Accepted batches and held messages of a node that receives: a gateway
    /// (`gateway.pending_bytes_max`), an edge with `cloud-to-edge` topics
    /// (`sync.window_bytes_max`, see `NodeConfig::receive_pending_max`).
    pub gw_pending: u64,
    /// The largest record with its key and varints.
    pub record_max: u64,
    /// The largest sync message held back by the bandwidth limit (a middle tier's relay
    /// forwards whole stored batches).
    pub held_max: u64,
    /// A gateway's sender of `cloud-to-edge` topics: the largest message it holds back,
    /// and the largest read it issues (its own records, at most `log.value_bytes_max`).
    pub down_held_max: u64,
    pub down_read_max: u64,
    /// The largest records section the node encodes or decodes.
    pub batch_raw_max: u64,
    /// The largest single read the node issues.
    pub read_max: u64,
    pub fetches: u64,
    /// Segments that may exist at once.
    pub segments_max: u64,
    /// Disk requests that may be in flight at once.
    pub ops_max: u64,
}

impl PlanBasis {
    pub fn of(cfg: &NodeConfig) -> PlanBasis {
        let edge = cfg.role == Role::Edge;
        let topics = cfg.topics.len() as u64;
        let middle = cfg.is_middle_tier();
        let up = if edge || middle { cfg.topics.iter().filter(|t| cfg.sends_up(t)).count() as u64 } else { 0 };
        let down = cfg.topics.iter().filter(|t| t.sync.goes_down()).count() as u64;
        let downlinks = if edge || down == 0 { 0 } else { cfg.gateway.downlinks_max as u64 };
        let chunk = u64::from(cfg.log.read_chunk_bytes);
        let pending = if edge || down > 0 { cfg.log.pending_bytes_max } else { 0 };
        let gw_pending = cfg.receive_pending_max();
        let value_max = if edge { cfg.log.value_bytes_max as usize } else { MAX_VALUE_BYTES };
        let record_max = (value_max + MAX_KEY_BYTES) as u64 + 16;
        let batch_bytes = u64::from(cfg.sync.batch_bytes_max);
        // A sync batch: up to batch_bytes_max of keys and values (plus one record), and
        // up to 7 bytes per record more in the records section than the uplink counts.
        let sync_batch_max = batch_bytes + record_max + 7 * u64::from(cfg.sync.batch_records_max);
        let sync_held_max = sync_batch_max + codec::BATCH_HEADER_LEN as u64 + SYNC_MSG_OVERHEAD;
        // A relay forwards stored batches whole: up to `batch_bytes_max` of records section
        // and one more batch (at most what it stores), each with its header and length.
        let relay_held_max = batch_bytes
            + cfg.gateway.batch_raw_bytes_max
            + (u64::from(cfg.sync.batch_records_max) + 1) * (codec::BATCH_HEADER_LEN as u64 + 5)
            + SYNC_MSG_OVERHEAD;
        let held_max = if middle { relay_held_max } else { sync_held_max };
        let own_record_max = (cfg.log.value_bytes_max as usize + MAX_KEY_BYTES) as u64 + 16;
        let down_held_max = sync_held_max - record_max + own_record_max;
        let down_read_max = if downlinks > 0 { chunk.max(own_record_max + LOG_FRAME_MIN as u64) } else { 0 };
        // The largest records section the node decodes or encodes, and the largest frame
        // it reads whole: an edge's group commits write frames of at most one read chunk
        // (or one record); a gateway stores batches of at most `batch_raw_bytes_max`.
        let batch_raw_max =
            if edge { chunk.max(record_max).max(sync_batch_max) } else { cfg.gateway.batch_raw_bytes_max };
        let frame_max = if edge { chunk.max(record_max) } else { batch_raw_max } + LOG_FRAME_MIN as u64;
        let read_max = chunk.max(frame_max);
        let fetches = u64::from(cfg.fetch.in_flight_max);
        let segments_max = cfg.resources.storage_bytes_max / cfg.log.segment_bytes_max.max(1) + 2 * topics + 2;
        let ops_max = segments_max + 3 * topics + up + downlinks * down + fetches + 8;
        PlanBasis {
            edge,
            topics,
            up,
            down,
            downlinks,
            pending,
            gw_pending,
            record_max,
            held_max,
            down_held_max,
            down_read_max,
            batch_raw_max,
            read_max,
            fetches,
            segments_max,
            ops_max,
        }
    }
}

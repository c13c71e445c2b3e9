//! Budgets: what a node may hold in memory and on storage, who draws from which, and
//! what happens at each limit (DESIGN §3, guarantee 8; docs/ARCHITECTURE.md, Budgets).
//!
//! **Memory** is accounted in [`MemoryPart`]s. Each part has a maximum derived from the
//! configuration ([`MemoryPlan::of`]); [`check_budgets`] refuses a configuration whose
//! maxima do not fit in `resources.memory_bytes_max`, and every part enforces its maximum
//! where it grows (backpressure to producers, a peer's message dropped to be resent, a
//! read that waits). So the accounted total cannot pass the limit by construction, and
//! [`Node::memory`](crate::Node::memory) reports each part's actual use for the simulator
//! to check at every step. Parts marked `io` are buffers lent to the driver (writes and
//! reads in flight, sent and unacknowledged sync bytes); the others are held in the
//! node's own heap, which a test measures with a counting allocator.
//!
//! **Storage** is the bytes of segment and meta files, plus the bytes reserved by records
//! waiting for the next group commit. A produce that would pass `storage_bytes_max` first
//! evicts ([`pick_victim`]); if nothing may go, it is refused with
//! `ProduceError::StorageFull`, retryable once sync or eviction frees space.

use crate::codec::{self, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::config::{ConfigError, Eviction, NodeConfig, Role};
use crate::fetch::FETCH_RECORD_OVERHEAD;
use crate::log::{Segment, TopicLog, LOG_FRAME_MIN};
use crate::meta::META_FILE_BYTES_MAX;
use crate::sync::ingest::{GATEWAY_SESSION_ENTRY_BYTES, GATEWAY_STREAM_ENTRY_BYTES};
use crate::sync::uplink;
use crate::sync::uplink::FLIGHTS_PER_STREAM_MAX;
use crate::types::{Bytes, Duration, Seq, TopicIdx};
use std::fmt;

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
    /// Records waiting for the next group commit, and the replies of the commit in flight.
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

/// The maximum of every part for a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub max: MemoryUsage,
    /// The largest single read the node issues.
    pub read_max: u64,
    /// The largest records section the node encodes or decodes.
    pub batch_raw_max: u64,
}

/// Bytes of a pending record against the produce buffer: its key and value buffers and
/// twice its entry (the vector holding it may have doubled).
pub fn pending_record_cost(key_capacity: usize, value_capacity: usize) -> u64 {
    (key_capacity + value_capacity + 2 * PENDING_ENTRY_BYTES) as u64
}
/// Size of a pending record's entry (set by `node`, which owns the type).
pub const PENDING_ENTRY_BYTES: usize = 96;

impl MemoryPlan {
    pub fn of(cfg: &NodeConfig, sizes: NodeSizes) -> MemoryPlan {
        let edge = cfg.role == Role::Edge;
        let topics = cfg.topics.len() as u64;
        let up = if edge { cfg.topics.iter().filter(|t| t.sync.goes_up()).count() as u64 } else { 0 };
        let chunk = u64::from(cfg.log.read_chunk_bytes);
        let pending = if edge { cfg.log.pending_bytes_max } else { 0 };
        let gw_pending = if edge { 0 } else { cfg.gateway.pending_bytes_max };
        let value_max = if edge { cfg.log.value_bytes_max as usize } else { MAX_VALUE_BYTES };
        let record_max = (value_max + MAX_KEY_BYTES) as u64 + 16;
        let batch_bytes = u64::from(cfg.sync.batch_bytes_max);
        // A sync batch: up to batch_bytes_max of keys and values (plus one record), and
        // up to 7 bytes per record more in the records section than the uplink counts.
        let sync_batch_max = batch_bytes + record_max + 7 * u64::from(cfg.sync.batch_records_max);
        let held_max = sync_batch_max + codec::BATCH_HEADER_LEN as u64 + SYNC_MSG_OVERHEAD;
        // The largest records section the node decodes or encodes, and the largest frame
        // it reads whole: an edge's group commits write frames of at most one read chunk
        // (or one record); a gateway stores batches of at most `batch_raw_bytes_max`.
        let batch_raw_max =
            if edge { chunk.max(record_max).max(sync_batch_max) } else { cfg.gateway.batch_raw_bytes_max };
        let frame_max = if edge { chunk.max(record_max) } else { batch_raw_max } + LOG_FRAME_MIN as u64;
        let read_max = chunk.max(frame_max);
        let fetches = u64::from(cfg.fetch.in_flight_max);
        let compact = edge && cfg.topics.iter().any(|t| t.eviction == Eviction::Compact);
        // The key index, and the keys a commit in flight carries to it (at most the
        // produce buffer's worth).
        let (key_index, keys_in_flight) =
            if compact { (cfg.resources.compact_index_bytes_max, pending) } else { (0, 0) };
        let fetch_max = u64::from(cfg.fetch.bytes_max) + record_max + FETCH_RECORD_OVERHEAD;
        let segments_max = cfg.resources.storage_bytes_max / cfg.log.segment_bytes_max.max(1) + 2 * topics + 2;
        let streams = if edge { 0 } else { cfg.gateway.streams_max as u64 };
        let ops_max = segments_max + 3 * topics + up + fetches + 8;
        // A stream's flight queue grows by doubling up to the first power of two that holds
        // FLIGHTS_PER_STREAM_MAX flights (swarm seed 1181: a satellite link kept 1024 small
        // flights in flight, and the plan had counted 48 bytes for a 56-byte flight).
        let flight_slots = (FLIGHTS_PER_STREAM_MAX + 1).next_power_of_two() as u64;
        let flights = up * flight_slots * uplink::FLIGHT_ENTRY_BYTES;
        // The output queue holds what one call emits: disk requests and events, and the
        // replies of a whole group commit (one per record; swarm seeds 547, 805, 926 and
        // 1787: 512 outputs on an edge whose plan counted only disk requests).
        let replies_max = pending / (2 * PENDING_ENTRY_BYTES as u64);
        let stored_max = gw_pending / std::mem::size_of::<crate::sync::ingest::Accepted>() as u64;
        let outputs_max = 2 * ops_max + 4 * up + replies_max + stored_max + 64;
        let outputs = outputs_max.next_power_of_two() * std::mem::size_of::<crate::io::Output>() as u64;
        let mut max = MemoryUsage::default();
        let names: u64 = cfg.topics.iter().map(|t| t.name.len() as u64 * 3 + 256).sum();
        max.set(MemoryPart::Fixed, sizes.node_bytes + names + FIXED_SLACK_BYTES);
        max.set(
            MemoryPart::Index,
            segments_max * (SEGMENT_ENTRY_BYTES + sizes.scan_job_bytes)
                + up * (uplink::STREAM_ENTRY_BYTES + 256)
                + flights
                + streams * (GATEWAY_STREAM_ENTRY_BYTES + GATEWAY_SESSION_ENTRY_BYTES)
                + ops_max * DISK_OP_ENTRY_BYTES
                + outputs
                + key_index,
        );
        max.set(MemoryPart::Codec, ZSTD_CONTEXTS_BYTES + batch_raw_max);
        // The replies of a commit in flight: one per record, a record costing at least
        // its entry in the buffer.
        let replies = pending / (2 * PENDING_ENTRY_BYTES as u64) * 2 * 48;
        // Per topic: room for a few entries of slack in each buffer, and the checkpoint a
        // commit keeps to roll back.
        let per_topic = topics * (4 * PENDING_ENTRY_BYTES as u64 + 256);
        let (slack, gw_slack) = if edge { (per_topic, 0) } else { (0, per_topic) };
        max.set(MemoryPart::ProduceBuffer, pending + replies + keys_in_flight + slack);
        // Accepted batches, their entries (each cost counts one) and their CRCs in the
        // commit in flight, which may have doubled its vectors.
        max.set(MemoryPart::GatewayPending, 2 * gw_pending + gw_slack);
        max.set(MemoryPart::SyncHeld, up * held_max);
        max.set(MemoryPart::FetchResults, fetches * fetch_max + topics * crate::fetch::CURSOR_BYTES);
        // A gateway copies accepted batches into the commit, adding a frame header to each
        // (a batch is at least 33 bytes, its frame header 20).
        let writes = if edge { pending + topics * 4 * LOG_FRAME_MIN as u64 } else { gw_pending / 2 * 3 };
        max.set(MemoryPart::Writes, writes + 2 * META_FILE_BYTES_MAX);
        max.set(MemoryPart::Reads, (up + fetches + 1) * read_max);
        let window = if edge { cfg.sync.window_bytes_max + up * held_max } else { 0 };
        max.set(MemoryPart::SyncWindow, window);
        max.set(MemoryPart::Scratch, read_max + 2 * batch_raw_max);
        if let Some(c) = &cfg.cluster {
            max.set(MemoryPart::Site, crate::site::planned_bytes(c));
            // Committed strong records waiting to be written here (at most a log's worth
            // arrive at once, when a member catches up), and the copies a commit in flight
            // keeps of them: they are never refused, so the produce buffer may hold them
            // beyond `pending_bytes_max` (eventual writes then get `Busy`).
            let produce = max.get(MemoryPart::ProduceBuffer) + 2 * c.log_bytes_max;
            max.set(MemoryPart::ProduceBuffer, produce);
            // A new generation's checkpoint is written whole; recovery reads a generation
            // file whole (at most `RAFT_FILE_BYTES_FACTOR` log limits, see `site`).
            let checkpoint = c.log_bytes_max + crate::site::CHECKPOINT_OVERHEAD_BYTES;
            max.set(MemoryPart::Writes, max.get(MemoryPart::Writes) + checkpoint);
            let file = crate::site::RAFT_FILE_BYTES_FACTOR * c.log_bytes_max + crate::site::CHECKPOINT_OVERHEAD_BYTES;
            max.set(MemoryPart::Index, max.get(MemoryPart::Index) + file);
        }
        MemoryPlan { max, read_max, batch_raw_max }
    }
}

/// Storage the node keeps free of segments for its meta log.
pub const META_RESERVE_BYTES: u64 = 3 * META_FILE_BYTES_MAX;

/// What the memory plan must know of `Node` itself, which `node` supplies
/// (`Node::SIZES`): this module imports nothing from `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSizes {
    /// `size_of::<Node>()`.
    pub node_bytes: u64,
    /// Heap bytes of one recovery scan job, with slack.
    pub scan_job_bytes: u64,
}

/// Checks that the configuration's limits fit its budgets; the error says which limits
/// add up to what, and what to change. `NodeConfig::validate` checks the rest first
/// (`Node::check_config` does both).
pub fn check_budgets(cfg: &NodeConfig, sizes: NodeSizes) -> Result<(), ConfigError> {
    let largest_record = pending_record_cost(codec::MAX_KEY_BYTES, cfg.log.value_bytes_max as usize);
    if cfg.role == Role::Edge && cfg.log.pending_bytes_max < largest_record {
        return Err(ConfigError {
            field: "log.pending_bytes_max".into(),
            message: format!(
                "must hold the largest record ({largest_record} bytes with log.value_bytes_max); raise it or lower \
                 log.value_bytes_max"
            ),
        });
    }
    let plan = MemoryPlan::of(cfg, sizes);
    let limit = cfg.resources.memory_bytes_max;
    let need = plan.max.total();
    if need > limit {
        let mut parts: Vec<(MemoryPart, u64)> =
            MEMORY_PARTS.iter().map(|&p| (p, plan.max.get(p))).filter(|&(_, b)| b > 0).collect();
        parts.sort_by_key(|&(_, b)| std::cmp::Reverse(b));
        let list: Vec<String> = parts.iter().take(4).map(|(p, b)| format!("{} {}", p.name(), Bytes(*b))).collect();
        return Err(ConfigError {
            field: "resources.memory_bytes_max".into(),
            message: format!(
                "{} is less than the {} the configured limits may use (largest: {}); raise it, or lower \
                 log.pending_bytes_max, sync.batch_bytes_max, sync.window_bytes_max or log.read_chunk_bytes",
                Bytes(limit),
                Bytes(need),
                list.join(", ")
            ),
        });
    }
    let storage = cfg.resources.storage_bytes_max;
    let floor =
        cfg.topics.len() as u64 * 4 * cfg.log.segment_bytes_max + cfg.log.pending_bytes_max + META_RESERVE_BYTES;
    if storage < floor {
        return Err(ConfigError {
            field: "resources.storage_bytes_max".into(),
            message: format!(
                "{} is less than the {} that {} topics need (four segments of log.segment_bytes_max = {} each, the \
                 write buffer and the meta log); raise it or lower log.segment_bytes_max",
                Bytes(storage),
                Bytes(floor),
                cfg.topics.len(),
                Bytes(cfg.log.segment_bytes_max)
            ),
        });
    }
    Ok(())
}

/// Limits sized for a device's budgets: the defaults, scaled down where a small budget
/// could not hold them (a Pi Zero given 16 MiB, a 256 MiB partition). For an edge, the
/// result passes [`check_budgets`] for budgets of at least 8 MiB of memory and 16 MiB of
/// storage with up to 4 topics, or 24 MiB with up to 16 (a gateway needs about 64 MiB:
/// it must hold any batch an edge may send); the caller validates it.
pub fn fit_to_budgets(cfg: &mut NodeConfig, memory_bytes_max: u64, storage_bytes_max: u64) {
    cfg.resources.memory_bytes_max = memory_bytes_max;
    cfg.resources.storage_bytes_max = storage_bytes_max;
    let topics = cfg.topics.len().max(1) as u64;
    cfg.log.segment_bytes_max = (storage_bytes_max / (topics * 16)).clamp(64 << 10, cfg.log.segment_bytes_max);
    // About a sixteenth of memory each for the write buffer and the sync window.
    let sixteenth = memory_bytes_max / 16;
    cfg.log.pending_bytes_max = sixteenth.clamp(64 << 10, cfg.log.pending_bytes_max);
    // Every stream may hold a batch with one largest record in it: scale by their number.
    let value_max = memory_bytes_max / (16 * (topics + 4));
    cfg.log.value_bytes_max = value_max.clamp(4 << 10, u64::from(cfg.log.value_bytes_max)) as u32;
    if memory_bytes_max < 64 << 20 {
        cfg.sync.batch_bytes_max = cfg.sync.batch_bytes_max.min(64 << 10);
        cfg.sync.batch_records_max = cfg.sync.batch_records_max.min(1024);
        cfg.log.read_chunk_bytes = cfg.log.read_chunk_bytes.min(64 << 10);
        cfg.fetch.in_flight_max = cfg.fetch.in_flight_max.min(4);
        cfg.fetch.bytes_max = cfg.fetch.bytes_max.min(256 << 10);
    }
    if memory_bytes_max < 16 << 20 {
        cfg.fetch.in_flight_max = cfg.fetch.in_flight_max.min(2);
        cfg.fetch.bytes_max = cfg.fetch.bytes_max.min(128 << 10);
    }
    let batch = u64::from(cfg.sync.batch_bytes_max);
    cfg.sync.window_bytes_max = sixteenth.clamp(batch * 2, cfg.sync.window_bytes_max.max(batch * 2));
    cfg.gateway.pending_bytes_max = sixteenth.clamp(1 << 20, cfg.gateway.pending_bytes_max);
    cfg.resources.compact_index_bytes_max =
        (memory_bytes_max / 32).clamp(64 << 10, cfg.resources.compact_index_bytes_max);
    if cfg.role == Role::Gateway {
        // What the marks and sessions of `streams_max` streams may take: at most an eighth.
        let per = GATEWAY_STREAM_ENTRY_BYTES + GATEWAY_SESSION_ENTRY_BYTES;
        cfg.gateway.streams_max = cfg.gateway.streams_max.min((memory_bytes_max / 8 / per) as usize).max(16);
    }
    if let Some(c) = &mut cfg.cluster {
        // The site's Raft log: about an eighth of memory, but at least four of the
        // largest records (`NodeConfig::validate`).
        let one = (MAX_KEY_BYTES as u64 + u64::from(cfg.log.value_bytes_max)) + 256;
        c.log_bytes_max = (memory_bytes_max / 8).clamp(4 * one, c.log_bytes_max.max(4 * one));
        c.raft.uncommitted_bytes_max = c.raft.uncommitted_bytes_max.min(c.log_bytes_max as usize);
    }
    // Ensure the write buffer fits the storage floor of `check_budgets`.
    let room = storage_bytes_max.saturating_sub(topics * 4 * cfg.log.segment_bytes_max + META_RESERVE_BYTES);
    cfg.log.pending_bytes_max = cfg.log.pending_bytes_max.min(room.max(64 << 10));
}

/// What [`fit_to_device`] lowered, for the shell to say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceFit {
    /// The storage budget was more than the device holds: it was this, and is now the
    /// device's size.
    pub storage_was: Option<u64>,
    /// Segments were too large for several to fit: they were this size.
    pub segment_was: Option<u64>,
}

/// Fits a node's storage limits to the device its data lives on, of `device_bytes` in all
/// (its size, not what is free now: other files come and go). A budget above that cannot
/// be kept, so it is lowered to it; segments are made small enough that sixteen of them
/// per topic fit the budget, as [`fit_to_budgets`] does (at least 64 KiB), so that a
/// segment the gateway holds, once freed, is a small share of the device and the newest
/// segments, which eviction never takes, hold at most a quarter of it. The write buffer
/// is lowered to fit the storage floor of [`check_budgets`], not below the largest record. Explicit settings are lowered
/// too: the device decides. Run it after every other adjustment, then validate: a device
/// too small for the topics' floor still fails there, saying so.
pub fn fit_to_device(cfg: &mut NodeConfig, device_bytes: u64) -> DeviceFit {
    let mut fit = DeviceFit::default();
    let storage = cfg.resources.storage_bytes_max;
    if storage > device_bytes {
        fit.storage_was = Some(storage);
        cfg.resources.storage_bytes_max = device_bytes;
    }
    let storage = cfg.resources.storage_bytes_max;
    let topics = cfg.topics.len().max(1) as u64;
    let segment = (storage / (topics * 16)).max(64 << 10);
    if cfg.log.segment_bytes_max > segment {
        fit.segment_was = Some(cfg.log.segment_bytes_max);
        cfg.log.segment_bytes_max = segment;
    }
    // Not below the largest record: a device too small for both fails on storage, which
    // is what the operator must change.
    let largest = pending_record_cost(MAX_KEY_BYTES, cfg.log.value_bytes_max as usize);
    let room = storage.saturating_sub(topics * 4 * cfg.log.segment_bytes_max + META_RESERVE_BYTES);
    cfg.log.pending_bytes_max = cfg.log.pending_bytes_max.min(room.max(64 << 10).max(largest));
    fit
}

/// An eviction candidate: the oldest segment of a topic, which is all eviction ever
/// takes (segments of a topic stay contiguous).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Victim {
    pub topic: TopicIdx,
    pub kind: VictimKind,
}

/// What evicting a segment costs, cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VictimKind {
    /// The gateway acknowledged every record: nothing is lost.
    Synced,
    /// A `compact` topic's segment whose every record a newer one of its key superseded:
    /// no key loses its newest value.
    Superseded,
    /// Records the gateway does not hold, under a policy that lets them go.
    Unsynced,
}

/// What eviction needs to know of one topic.
pub struct TopicView<'a> {
    pub log: &'a TopicLog,
    pub priority: u8,
    pub eviction: Eviction,
    /// Below this sequence the gateway holds everything (`None`: nothing ever leaves
    /// this node, as for a local topic; such data is never synced).
    pub synced_below: Option<Seq>,
}

/// The next segment to evict to make room for a write to `writer`, if any may go.
///
/// Order: segments the gateway holds wholly, from any topic, lowest priority first, then
/// oldest; then segments of `compact` topics whose every record is superseded; then
/// unsynced segments of topics whose policy yields to the writer
/// ([`Eviction::yields_to`]), lowest priority first, then (for `lru` topics) least
/// recently read, then oldest. The newest segment of a topic is never evicted: appends
/// go there.
pub fn pick_victim(topics: &[TopicView<'_>], writer: TopicIdx) -> Option<Victim> {
    let writer_priority = topics[writer.0 as usize].priority;
    // (unsynced, priority, last read for lru, newest record, topic): smallest goes first.
    type Rank = (u8, u8, u64, u64, u16);
    let mut best: Option<(Rank, Victim)> = None;
    for (i, t) in topics.iter().enumerate() {
        if t.log.removable() == 0 {
            continue;
        }
        let Some(oldest) = t.log.oldest() else { continue };
        let kind = if t.synced_below.is_some_and(|s| oldest.end <= s) {
            VictimKind::Synced
        } else if t.eviction == Eviction::Compact && oldest.live_records() == 0 {
            VictimKind::Superseded
        } else if t.eviction.yields_to(t.priority, writer_priority) {
            VictimKind::Unsynced
        } else {
            continue;
        };
        let read = if t.eviction == Eviction::Lru { t.log.last_read().0 } else { 0 };
        let rank = (kind as u8, t.priority, read, oldest.newest_ms, i as u16);
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, Victim { topic: TopicIdx(i as u16), kind }));
        }
    }
    best.map(|(_, v)| v)
}

/// Usage of one topic against the node's storage, as the operator CLI shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicUsage {
    pub name: String,
    pub priority: u8,
    pub eviction: Eviction,
    pub bytes: u64,
    pub segments: u64,
    /// Records stored (sequences that may hold one; unwritten ranges excluded).
    pub records: u64,
    /// Records stored that the gateway has not acknowledged (0 for local topics).
    pub unsynced_records: u64,
    /// Bytes of the segments holding unsynced records (one partly synced counts whole).
    pub unsynced_bytes: u64,
    /// Age of the oldest segment holding unsynced records, by its newest record: how long
    /// the backlog has been waiting at least.
    pub oldest_unsynced_age: Option<Duration>,
    /// Records this node evicted before the gateway acknowledged them, since it started.
    pub evicted_unsynced: u64,
}

/// A node's use of its budgets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceStatus {
    pub memory: MemoryUsage,
    pub memory_max: u64,
    pub storage_used: u64,
    pub storage_max: u64,
    /// Storage reported no space on the last write; produces are refused until a probe
    /// write succeeds.
    pub device_full: bool,
    pub topics: Vec<TopicUsage>,
}

impl fmt::Display for ResourceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 * 100.0 / b as f64 };
        writeln!(
            f,
            "memory   {} of {} ({:.0}%)",
            Bytes(self.memory.total()),
            Bytes(self.memory_max),
            pct(self.memory.total(), self.memory_max)
        )?;
        for p in MEMORY_PARTS {
            let b = self.memory.get(p);
            if b > 0 {
                writeln!(f, "  {:<16} {}", p.name(), Bytes(b))?;
            }
        }
        let full = if self.device_full { "  DEVICE FULL: produces refused until a write succeeds" } else { "" };
        writeln!(
            f,
            "storage  {} of {} ({:.0}%){full}",
            Bytes(self.storage_used),
            Bytes(self.storage_max),
            pct(self.storage_used, self.storage_max)
        )?;
        writeln!(
            f,
            "{:<24} {:>4} {:>8} {:>10} {:>8} {:>12} {:>10} {:>10} {:>10}",
            "topic", "prio", "eviction", "bytes", "segments", "records", "unsynced", "oldest", "evicted"
        )?;
        for t in &self.topics {
            let age = t.oldest_unsynced_age.map_or("-".to_string(), |a| format!("{}s", a.as_millis() / 1000));
            writeln!(
                f,
                "{:<24} {:>4} {:>8} {:>10} {:>8} {:>12} {:>10} {:>10} {:>10}",
                t.name,
                t.priority,
                t.eviction.name(),
                Bytes(t.bytes).to_string(),
                t.segments,
                t.records,
                t.unsynced_records,
                age,
                t.evicted_unsynced
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(topic: u16, segments: &[(u64, u64, u64)]) -> TopicLog {
        let segs = segments
            .iter()
            .map(|&(base, end, ms)| Segment {
                base,
                end,
                durable_end: end,
                len: 100,
                newest_ms: ms,
                unwritten: 0,
                superseded: 0,
            })
            .collect();
        TopicLog::recovered(TopicIdx(topic), segs)
    }

    fn view(log: &TopicLog, priority: u8, eviction: Eviction, synced_below: Option<Seq>) -> TopicView<'_> {
        TopicView { log, priority, eviction, synced_below }
    }

    #[test]
    fn synced_data_goes_first_then_lossy_topics_by_priority() {
        let a = log_with(0, &[(0, 10, 5), (10, 20, 6)]);
        let b = log_with(1, &[(0, 10, 1), (10, 20, 2)]);
        let c = log_with(2, &[(0, 10, 9), (10, 20, 9)]);
        // Topic 2 (keep, high priority) is synced up to 10: its oldest segment goes first.
        let topics = [
            view(&a, 1, Eviction::Oldest, Some(0)),
            view(&b, 3, Eviction::Oldest, Some(0)),
            view(&c, 9, Eviction::Keep, Some(10)),
        ];
        assert_eq!(pick_victim(&topics, TopicIdx(2)), Some(Victim { topic: TopicIdx(2), kind: VictimKind::Synced }));
        // Nothing synced: the lowest priority lossy topic goes, though another is older.
        let topics = [
            view(&a, 1, Eviction::Oldest, Some(0)),
            view(&b, 3, Eviction::Oldest, Some(0)),
            view(&c, 9, Eviction::Keep, Some(0)),
        ];
        assert_eq!(pick_victim(&topics, TopicIdx(2)), Some(Victim { topic: TopicIdx(0), kind: VictimKind::Unsynced }));
        // A write never evicts unsynced data of a more important topic.
        assert_eq!(
            pick_victim(&topics[..2], TopicIdx(0)),
            Some(Victim { topic: TopicIdx(0), kind: VictimKind::Unsynced })
        );
        let keep_only = [view(&a, 1, Eviction::Keep, None), view(&b, 3, Eviction::Keep, Some(0))];
        assert_eq!(pick_victim(&keep_only, TopicIdx(1)), None, "keep topics never lose unsynced data");
    }

    #[test]
    fn priority_policy_yields_only_to_more_important_writers() {
        let a = log_with(0, &[(0, 10, 1), (10, 20, 2)]);
        let b = log_with(1, &[(0, 10, 1), (10, 20, 2)]);
        let topics = [view(&a, 2, Eviction::Priority, Some(0)), view(&b, 2, Eviction::Keep, Some(0))];
        assert_eq!(pick_victim(&topics, TopicIdx(0)), None, "not for itself");
        assert_eq!(pick_victim(&topics, TopicIdx(1)), None, "not for an equal priority");
        let topics = [view(&a, 2, Eviction::Priority, Some(0)), view(&b, 3, Eviction::Keep, Some(0))];
        assert_eq!(pick_victim(&topics, TopicIdx(1)), Some(Victim { topic: TopicIdx(0), kind: VictimKind::Unsynced }));
        // Oldest yields to itself: a ring buffer.
        let topics = [view(&a, 2, Eviction::Oldest, None)];
        assert_eq!(pick_victim(&topics, TopicIdx(0)), Some(Victim { topic: TopicIdx(0), kind: VictimKind::Unsynced }));
    }

    #[test]
    fn lru_evicts_the_topic_read_least_recently() {
        let mut a = log_with(0, &[(0, 10, 1), (10, 20, 2)]);
        let mut b = log_with(1, &[(0, 10, 5), (10, 20, 6)]);
        a.note_read(crate::types::Instant(50));
        b.note_read(crate::types::Instant(10));
        let topics = [view(&a, 4, Eviction::Lru, Some(0)), view(&b, 4, Eviction::Lru, Some(0))];
        assert_eq!(pick_victim(&topics, TopicIdx(0)), Some(Victim { topic: TopicIdx(1), kind: VictimKind::Unsynced }));
    }

    #[test]
    fn compact_topics_give_up_only_wholly_superseded_segments() {
        let mut a = log_with(0, &[(0, 10, 1), (10, 20, 2), (20, 30, 3)]);
        let b = log_with(1, &[(0, 10, 1), (10, 20, 2)]);
        // Nine of ten superseded: the segment still holds a key's newest value.
        for offset in 0..9 {
            a.note_superseded(offset);
        }
        let topics = [view(&a, 2, Eviction::Compact, Some(0)), view(&b, 1, Eviction::Oldest, Some(0))];
        let unsynced_b = Victim { topic: TopicIdx(1), kind: VictimKind::Unsynced };
        assert_eq!(pick_victim(&topics, TopicIdx(0)), Some(unsynced_b));
        assert_eq!(pick_victim(&topics[..1], TopicIdx(0)), None, "compact never loses a newest value");
        a.note_superseded(9);
        // Wholly superseded: it goes before any unsynced data, even of a lower priority.
        let topics = [view(&a, 2, Eviction::Compact, Some(0)), view(&b, 1, Eviction::Oldest, Some(0))];
        let superseded_a = Victim { topic: TopicIdx(0), kind: VictimKind::Superseded };
        assert_eq!(pick_victim(&topics, TopicIdx(1)), Some(superseded_a));
        assert_eq!(pick_victim(&topics[..1], TopicIdx(0)), Some(superseded_a));
    }

    #[test]
    fn single_segments_are_never_evicted() {
        let a = log_with(0, &[(0, 10, 1)]);
        assert_eq!(pick_victim(&[view(&a, 0, Eviction::Oldest, Some(10))], TopicIdx(0)), None);
    }
}

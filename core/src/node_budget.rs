//! How a [`Node`] keeps its budgets: storage through its `Space` (accounting, eviction,
//! retention, the device-full state) and the rolls of its group commit, and memory, the
//! sum of what each component holds, checked by the simulator after every step.

use super::{Node, Phase};
use crate::checkpoint::CheckpointWriter;
use crate::commit::{self, PENDING_ENTRY_BYTES};
use crate::config::{NodeConfig, Role};
use crate::effects::Owner;
use crate::fetch;
use crate::io::{Output, ProduceError};
use crate::log::{self, TopicLog};
use crate::memory::{
    MemoryPart, MemoryPlan, MemoryUsage, PlanBasis, DISK_OP_ENTRY_BYTES, FIXED_SLACK_BYTES, SEGMENT_ENTRY_BYTES,
    ZSTD_CONTEXTS_BYTES,
};
use crate::meta::BoundWriter;
use crate::recovery;
use crate::resources::ResourceStatus;
use crate::space::{self, Space, SpaceCx, SpaceView};
use crate::sync::downlinks::{self, Downlinks};
use crate::sync::ingest::Ingest;
use crate::sync::ingest::{self, Accepted};
use crate::sync::uplink;
use crate::sync::uplink::Uplink;
use crate::types::{Seq, TopicIdx};

/// Budgets: accounting, eviction and the device-full state (see `resources`).
impl Node {
    /// The node's memory plan: its components' plans summed, and its own parts (itself,
    /// its output queue and disk requests in flight, its segment lists, its codec).
    pub fn plan(cfg: &NodeConfig) -> MemoryPlan {
        let b = PlanBasis::of(cfg);
        let mut max = MemoryUsage::default();
        let names: u64 = cfg.topics.iter().map(|t| t.name.len() as u64 * 3 + 256).sum();
        max.set(MemoryPart::Fixed, std::mem::size_of::<Node>() as u64 + names + FIXED_SLACK_BYTES);
        // The output queue holds what one call emits: disk requests and events, and the
        // replies of a whole group commit (one per record; swarm seeds 547, 805, 926 and
        // 1787: 512 outputs on an edge whose plan counted only disk requests).
        let replies_max = b.pending / (2 * PENDING_ENTRY_BYTES as u64);
        let stored_max = b.gw_pending / std::mem::size_of::<Accepted>() as u64;
        let outputs_max = 2 * b.ops_max + 4 * (b.up + b.downlinks * b.down) + replies_max + stored_max + 64;
        let outputs = outputs_max.next_power_of_two() * std::mem::size_of::<Output>() as u64;
        // Frame marks: each log's container may hold twice what it keeps, and 16 more
        // (recovery's scans hold them first, while the logs are empty).
        let marks = log::frame_marks_max(b.segments_max, b.topics);
        let marks = (2 * marks + 16 * b.topics) * log::FRAME_MARK_BYTES;
        let index = b.segments_max * SEGMENT_ENTRY_BYTES + marks + b.ops_max * DISK_OP_ENTRY_BYTES + outputs;
        max.set(MemoryPart::Index, index);
        max.set(MemoryPart::Codec, ZSTD_CONTEXTS_BYTES + b.batch_raw_max);
        max.set(MemoryPart::Scratch, b.read_max + 2 * b.batch_raw_max);
        let components = [
            recovery::planned(cfg, &b),
            commit::planned(cfg, &b),
            BoundWriter::planned(),
            uplink::planned(cfg, &b),
            ingest::planned(cfg, &b),
            downlinks::planned(cfg, &b),
            fetch::planned(cfg, &b),
            crate::marks::planned(cfg),
            crate::keyed_topics::planned(cfg, &b),
        ];
        for part in &components {
            max.add(part);
        }
        if let Some(c) = &cfg.cluster {
            max.add(&crate::site::planned(cfg, c));
        }
        MemoryPlan { max, read_max: b.read_max, batch_raw_max: b.batch_raw_max }
    }

    /// Bytes of storage the node's files take, as it accounts them: every segment byte
    /// appended, and a fixed reserve for its other files (`resources::files_reserved`).
    pub fn storage_used(&self) -> u64 {
        space::storage_used(self.space.files_reserved(), &self.logs)
    }

    /// Storage reserved by records and batches waiting for the next group commit.
    pub fn storage_reserved(&self) -> u64 {
        self.commit.storage_reserved(&self.cfg)
    }

    /// Runs a step of the storage component over this node's logs and effects.
    pub(super) fn with_space<R>(&mut self, f: impl FnOnce(&mut Space, &mut SpaceCx<'_>) -> R) -> R {
        let (cfg, uplink, keyed) = (&self.cfg, self.uplink.as_ref(), self.keyed_checkpoints.as_ref());
        let synced = |t: usize| synced_below(cfg, uplink, keyed, t);
        let (reserved, files) = (self.commit.storage_reserved(cfg), self.space.files_reserved());
        let (fx, logs) = (&mut self.fx, &mut self.logs);
        let mut cx = SpaceCx { cfg, now: self.now, fx, logs, synced: &synced, reserved, files };
        f(&mut self.space, &mut cx)
    }

    /// A look at the storage component over this node's logs.
    pub(super) fn view_space<R>(&self, f: impl FnOnce(&Space, &SpaceView<'_>) -> R) -> R {
        let (cfg, uplink, keyed) = (&self.cfg, self.uplink.as_ref(), self.keyed_checkpoints.as_ref());
        let synced = |t: usize| synced_below(cfg, uplink, keyed, t);
        let (reserved, files) = (self.commit.storage_reserved(cfg), self.space.files_reserved());
        f(&self.space, &SpaceView { cfg, now: self.now, logs: &self.logs, synced: &synced, reserved, files })
    }

    pub(super) fn on_device_full(&mut self, needed: u64) {
        if self.with_space(|s, cx| s.on_device_full(cx, needed)) {
            self.roll_synced();
        }
    }

    /// While the device is full, frees what the next hop holds (see `Space::reclaim`).
    pub(super) fn reclaim_full_device(&mut self) {
        if self.is_running() && self.with_space(|s, cx| s.reclaim(cx)) {
            self.roll_synced();
        }
    }

    pub(super) fn roll_synced(&mut self) {
        let (cfg, uplink, keyed) = (&self.cfg, self.uplink.as_ref(), self.keyed_checkpoints.as_ref());
        let synced = |t| synced_below(cfg, uplink, keyed, t);
        self.commit.roll_synced(&mut self.fx, &mut self.logs, self.now.wall_ms, synced);
    }

    /// The refusal of a produce for lack of storage, saying what holds the room.
    pub(super) fn storage_full(&self, device_full: bool) -> ProduceError {
        let queued = self.commit.queued_storage();
        self.view_space(|s, v| s.refusal(v, device_full, queued))
    }

    /// The memory each part holds now. The simulator checks it against the limit and
    /// the plan after every step (guarantee 8).
    pub fn memory(&self) -> MemoryUsage {
        let mut m = MemoryUsage::default();
        m.set(MemoryPart::Fixed, self.plan.max.get(MemoryPart::Fixed));
        let segments: u64 = self.logs.iter().map(TopicLog::heap_bytes).sum();
        let uplink = self.uplink.as_ref().map_or(0, Uplink::index_bytes);
        let ingest = self.ingest.as_ref().map_or(0, Ingest::index_bytes);
        let downlinks = self.downlinks.as_ref().map_or(0, Downlinks::index_bytes);
        let ops = self.fx.in_flight() as u64 * DISK_OP_ENTRY_BYTES;
        let out = (self.fx.out.capacity() * std::mem::size_of::<Output>()) as u64;
        let recovery = match &self.phase {
            Phase::Recovering(r) => r.heap_bytes(),
            Phase::Running => 0,
        };
        let keys = self.commit.key_index_bytes() + self.keyed.bytes();
        // A keyed checkpoint being written holds the share recovery plans for reading one
        // (`recovery::planned`): the two never coexist.
        let keyed_checkpoint = self.fx.write_bytes_of(|o| matches!(o, Owner::KeyedCheckpoint));
        debug_assert!(recovery == 0 || keyed_checkpoint == 0, "no checkpoint is written while recovering");
        let index = segments + uplink + ingest + downlinks + ops + out + recovery + keys + keyed_checkpoint;
        m.set(MemoryPart::Index, index);
        let (scratch, zstd_c) = self.enc.heap_bytes();
        m.set(MemoryPart::Codec, scratch + zstd_c + self.dec.heap_bytes());
        let edge = self.cfg.role == Role::Edge;
        // (The commit's copy of its keyed frames is the node's to hold, not the driver's.)
        m.set(MemoryPart::ProduceBuffer, self.commit.produce_buffer_bytes(edge) + self.commit.keyed_copy_bytes());
        let gw = self.ingest.as_ref().map_or(0, |g| g.pending_bytes) + self.held.bytes();
        m.set(MemoryPart::GatewayPending, gw + self.commit.gateway_pending_bytes(edge) + self.keyed.fan_out_bytes());
        let down_held = self.downlinks.as_ref().map_or(0, Downlinks::held_bytes);
        // A sender's stream plans one read, in flight or left ahead (`uplink::planned_streams`;
        // a site's uplink sends strong topics, whose streams the plan counts as the node's).
        let senders_reading = self.fx.read_bytes_of(|o| matches!(o, Owner::Uplink { .. }));
        let site_held = self.site.as_ref().and_then(|s| s.uplink.as_ref()).map_or(0, Uplink::held_bytes);
        let held = self.uplink.as_ref().map_or(0, Uplink::held_bytes) + down_held + site_held;
        // (The commit's copies for senders stand for reads they do not do meanwhile.)
        m.set(MemoryPart::SyncHeld, held + senders_reading + self.commit.tail_bytes());
        m.set(MemoryPart::FetchResults, self.fetches.held_bytes());
        m.set(MemoryPart::Writes, self.fx.write_bytes() - keyed_checkpoint);
        m.set(MemoryPart::Reads, self.fx.read_bytes() - senders_reading);
        let down_window = self.downlinks.as_ref().map_or(0, Downlinks::window_bytes);
        m.set(MemoryPart::SyncWindow, self.uplink.as_ref().map_or(0, Uplink::window_bytes) + down_window);
        m.set(MemoryPart::Scratch, self.plan.max.get(MemoryPart::Scratch));
        m.set(MemoryPart::Site, self.site.as_deref().map_or(0, crate::site::Site::heap_bytes));
        m
    }

    /// Of [`Node::memory`], the bytes zstd holds in its own (C) heap, as it reports them
    /// (`ZSTD_sizeof_CCtx`, `ZSTD_sizeof_DCtx`): invisible to Rust's allocator.
    pub fn foreign_heap_bytes(&self) -> u64 {
        self.enc.heap_bytes().1 + self.dec.heap_bytes()
    }

    /// The maximum of each memory part under this node's configuration.
    pub fn memory_plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// Usage against the budgets, per topic, as the operator CLI shows it.
    pub fn resource_status(&self) -> ResourceStatus {
        ResourceStatus {
            memory: self.memory(),
            memory_max: self.cfg.resources.memory_bytes_max,
            storage_used: self.storage_used() + self.storage_reserved(),
            storage_max: self.cfg.resources.storage_bytes_max,
            device_full: self.space.is_device_full(),
            topics: self.view_space(|s, v| s.topic_usage(v)),
        }
    }
}

/// Where topic `t`'s data is acknowledged up to: `None` where nothing leaves this node
/// (local topics, a gateway), so nothing is ever synced; for a keyed topic merged per
/// key, no further than a durable checkpoint of the keyed states covers (below it the log
/// is no longer the only copy of what its state holds, `crate::keyed_checkpoint`).
fn synced_below(cfg: &NodeConfig, uplink: Option<&Uplink>, keyed: Option<&CheckpointWriter>, t: usize) -> Option<Seq> {
    if cfg.role != Role::Edge || !cfg.topics[t].sync.goes_up() {
        return None;
    }
    let acked = uplink.and_then(|u| u.acked(TopicIdx(t as u16))).unwrap_or(0);
    match keyed {
        _ if cfg.topics[t].keyed.is_none() => Some(acked),
        Some(k) => Some(acked.min(k.covered(TopicIdx(t as u16)))),
        None => Some(0),
    }
}

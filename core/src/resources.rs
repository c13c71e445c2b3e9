//! Budgets: what a node may hold in memory and on storage, who draws from which, and
//! what happens at each limit (DESIGN §3, guarantee 8; docs/ARCHITECTURE.md, Budgets).
//!
//! **Memory** is accounted in [`MemoryPart`]s (`crate::memory`). Each part has a maximum
//! derived from the configuration, the sum of the components' plans
//! ([`Node::plan`](crate::Node::plan)); [`check_budgets`] refuses a configuration whose
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

use crate::codec::{self, MAX_KEY_BYTES};
use crate::commit::pending_record_cost;
use crate::config::{ConfigError, Eviction, NodeConfig, Role};
use crate::log::TopicLog;
use crate::meta::META_FILE_BYTES_MAX;
use crate::sync::ingest::{GATEWAY_SESSION_ENTRY_BYTES, GATEWAY_STREAM_ENTRY_BYTES};
use crate::types::{Bytes, Duration, Seq, TopicIdx};
use std::fmt;

pub use crate::memory::{
    MemoryPart, MemoryPlan, MemoryUsage, DISK_OP_ENTRY_BYTES, FIXED_SLACK_BYTES, MEMORY_PARTS, SEGMENT_ENTRY_BYTES,
    SYNC_MSG_OVERHEAD, ZSTD_CONTEXTS_BYTES,
};

/// Storage the node keeps free of segments for its meta log.
pub const META_RESERVE_BYTES: u64 = 3 * META_FILE_BYTES_MAX;

/// Storage the node keeps free of segments for its other files: the meta log, and with
/// keyed topics two checkpoints of their states (the newest durable one, and the next
/// while it is written).
pub fn files_reserved(cfg: &NodeConfig) -> u64 {
    let keyed = cfg.topics.iter().any(|t| t.keyed.is_some());
    // (Two generations of a site member's Raft files may each hold a snapshot with the
    // strong keyed topics' states.)
    let site_keyed = 2 * crate::keyed_checkpoint::site_bytes_max(cfg);
    META_RESERVE_BYTES + site_keyed + if keyed { 2 * crate::keyed_checkpoint::file_bytes_max(cfg) } else { 0 }
}

/// Checks that the configuration's limits fit its budgets; the error says which limits
/// add up to what, and what to change. `NodeConfig::validate` checks the rest first
/// (`Node::check_config` does both).
pub fn check_budgets(cfg: &NodeConfig, plan: &MemoryPlan) -> Result<(), ConfigError> {
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
    let site_keyed = crate::keyed_checkpoint::site_bytes_max(cfg);
    if site_keyed > SITE_KEYED_BYTES_MAX {
        return Err(ConfigError {
            field: "topics.keyed_state_max".into(),
            message: format!(
                "the states of the strong keyed topics ride in the site's Raft snapshot, and at their limits need up \
                 to {} of the {} it carries; lower their keyed_state_max or conflict_log_max",
                Bytes(site_keyed),
                Bytes(SITE_KEYED_BYTES_MAX)
            ),
        });
    }
    let limit = cfg.resources.memory_bytes_max;
    let need = plan.max.total();
    if need > limit {
        let mut parts: Vec<(MemoryPart, u64)> =
            MEMORY_PARTS.iter().map(|&p| (p, plan.max.get(p))).filter(|&(_, b)| b > 0).collect();
        parts.sort_by_key(|&(_, b)| std::cmp::Reverse(b));
        let list: Vec<String> = parts.iter().take(4).map(|(p, b)| format!("{} {}", p.name(), Bytes(*b))).collect();
        let senders = cfg.role == Role::Gateway && cfg.topics.iter().any(|t| t.sync.goes_down());
        let downlinks =
            if senders { " (each of gateway.downlinks_max senders has its own), gateway.downlinks_max" } else { "" };
        // Both halves of a bidirectional topic share one state.
        let states: std::collections::BTreeMap<&str, u64> = cfg
            .topics
            .iter()
            .filter_map(|t| t.keyed.as_ref().map(|k| (t.name.as_str(), k.limits.planned_bytes())))
            .collect();
        let keyed: u64 = states.values().sum();
        let keyed = if keyed > 0 {
            format!(", the keyed topics' state and conflict log limits ({} in all, part of index)", Bytes(keyed))
        } else {
            String::new()
        };
        return Err(ConfigError {
            field: "resources.memory_bytes_max".into(),
            message: format!(
                "{} is less than the {} the configured limits may use (largest: {}); raise it, or lower \
                 log.pending_bytes_max, sync.batch_bytes_max, sync.window_bytes_max{downlinks}{keyed} or \
                 log.read_chunk_bytes",
                Bytes(limit),
                Bytes(need),
                list.join(", ")
            ),
        });
    }
    let storage = cfg.resources.storage_bytes_max;
    let floor =
        cfg.topics.len() as u64 * 4 * cfg.log.segment_bytes_max + cfg.log.pending_bytes_max + files_reserved(cfg);
    if storage < floor {
        return Err(ConfigError {
            field: "resources.storage_bytes_max".into(),
            message: format!(
                "{} is less than the {} that {} topics need (four segments of log.segment_bytes_max = {} each, the \
                 write buffer, the meta log and two checkpoints of the keyed states' limits); raise it or lower \
                 log.segment_bytes_max or the keyed state limits",
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
/// it must hold any batch an edge may send); with keyed topics, 32 MiB for up to four
/// both ways. The caller validates it.
pub fn fit_to_budgets(cfg: &mut NodeConfig, memory_bytes_max: u64, storage_bytes_max: u64) {
    cfg.resources.memory_bytes_max = memory_bytes_max;
    cfg.resources.storage_bytes_max = storage_bytes_max;
    let topics = cfg.topics.len().max(1) as u64;
    cfg.log.segment_bytes_max = (storage_bytes_max / (topics * 16)).clamp(64 << 10, cfg.log.segment_bytes_max);
    // About a sixteenth of memory each for the write buffer and the sync window.
    let sixteenth = memory_bytes_max / 16;
    // A top gateway that copies keyed writes to the other edges (`keyed_fanout`) holds
    // what a commit writes twice more (the commit's copy of its keyed appends, and the
    // copies a crash may leave to make): a thirty-second each for its buffers of what
    // comes in (one keyed topic both ways did not fit the default gateway's 256 MiB).
    let buffer = if copies_keyed_writes(cfg) { memory_bytes_max / 32 } else { sixteenth };
    cfg.log.pending_bytes_max = buffer.clamp(64 << 10, cfg.log.pending_bytes_max);
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
    cfg.gateway.pending_bytes_max = buffer.clamp(1 << 20, cfg.gateway.pending_bytes_max);
    cfg.resources.compact_index_bytes_max =
        (memory_bytes_max / 32).clamp(64 << 10, cfg.resources.compact_index_bytes_max);
    if cfg.role == Role::Gateway {
        // What the marks and sessions of `streams_max` streams may take: at most an eighth;
        // on a middle tier, which also relays (a sender of whole stored batches, and its
        // marks of each stream), a sixteenth.
        let (share, relay) = match cfg.is_middle_tier() {
            true => (16, crate::sync::uplink::relay_marks_bytes(1024).div_ceil(1024)),
            false => (8, 0),
        };
        let per = GATEWAY_STREAM_ENTRY_BYTES + GATEWAY_SESSION_ENTRY_BYTES + relay;
        cfg.gateway.streams_max = cfg.gateway.streams_max.min((memory_bytes_max / share / per) as usize).max(16);
        // The senders of what goes down: at most a quarter of memory (each has a window,
        // and per topic a held message and a read; two such topics at the defaults did
        // not fit the default budget); on a middle tier, which relays up too, an eighth
        // (a `both` topic beside one up and one down topic did not fit the default 256 MiB
        // process: `tests/tiers.rs`).
        let mut one = crate::memory::PlanBasis::of(cfg);
        if one.down > 0 {
            one.downlinks = 1;
            let sender = crate::sync::downlinks::planned(cfg, &one).total().max(1);
            let share = if cfg.is_middle_tier() { 8 } else { 4 };
            let fits = (memory_bytes_max / share / sender) as usize;
            cfg.gateway.downlinks_max = cfg.gateway.downlinks_max.min(fits).max(1);
        }
    }
    fit_keyed_limits(cfg, memory_bytes_max, storage_bytes_max);
    if let Some(c) = &mut cfg.cluster {
        // The site's Raft log: about an eighth of memory, but at least four of the
        // largest records (`NodeConfig::validate`).
        let one = (MAX_KEY_BYTES as u64 + u64::from(cfg.log.value_bytes_max)) + 256;
        c.log_bytes_max = (memory_bytes_max / 8).clamp(4 * one, c.log_bytes_max.max(4 * one));
        c.raft.uncommitted_bytes_max = c.raft.uncommitted_bytes_max.min(c.log_bytes_max as usize);
    }
    fit_write_buffer_to_storage(cfg);
}

/// Lowers the write buffer to fit the storage floor of [`check_budgets`] beside the
/// segments and the files the node reserves. [`fit_to_budgets`] ends with it; a loader
/// that sets keyed limits of its own after the fit (they beat it) runs it again, since
/// the checkpoints the node reserves room for grow with them.
pub fn fit_write_buffer_to_storage(cfg: &mut NodeConfig) {
    let topics = cfg.topics.len().max(1) as u64;
    let floor = topics * 4 * cfg.log.segment_bytes_max + files_reserved(cfg);
    let room = cfg.resources.storage_bytes_max.saturating_sub(floor);
    cfg.log.pending_bytes_max = cfg.log.pending_bytes_max.min(room.max(64 << 10));
}

/// Whether the node is a top gateway with a keyed topic both ways: it copies the edges'
/// writes for the other edges (`crate::keyed_fanout`).
fn copies_keyed_writes(cfg: &NodeConfig) -> bool {
    cfg.role == Role::Gateway && cfg.upstream.is_none() && cfg.topics.iter().any(|t| t.keyed.is_some() && t.both_ways)
}

/// The smallest state limit the fit gives a keyed topic, and the smallest conflict log.
const KEYED_STATE_FIT_MIN: u64 = 64 << 10;
const CONFLICT_LOG_FIT_MIN: u64 = 4 << 10;

/// Keyed topics' limits: all their states together at most an eighth of memory (a
/// checkpoint of them, read at recovery or written while running, takes about as much
/// again) and a thirty-second of storage (two checkpoints are kept on disk), each conflict
/// log a sixteenth of its state. Three keyed topics at the 4 MiB default did not fit a
/// default edge's 64 MiB (the core needed 58.0 MiB of its 52.4).
fn fit_keyed_limits(cfg: &mut NodeConfig, memory_bytes_max: u64, storage_bytes_max: u64) {
    // Both halves of a `bidirectional` topic hold one state (one name).
    let names: std::collections::BTreeSet<&str> =
        cfg.topics.iter().filter(|t| t.keyed.is_some()).map(|t| t.name.as_str()).collect();
    if names.is_empty() {
        return;
    }
    let per = (memory_bytes_max / 8).min(storage_bytes_max / 32) / names.len() as u64;
    // A site member's strong keyed topics ride in its Raft snapshot: together at most half
    // of what a snapshot carries of keyed states, so their conflict logs and headers fit;
    // and a sixty-fourth of memory, as the member plans each about six times over (the
    // state, a checkpoint read at recovery, the snapshot Raft holds, the next one encoded
    // beside it, a copy in flight, a new Raft generation written: `site::planned`).
    let member = cfg.cluster.is_some();
    let strong = cfg.topics.iter().filter(|t| t.keyed.is_some() && t.is_strong() && member).count() as u64;
    let per_strong = strong_keyed_state_share(memory_bytes_max, strong as usize);
    for t in cfg.topics.iter_mut() {
        let strong = t.is_strong() && member;
        let Some(k) = t.keyed.as_mut() else { continue };
        let per = if strong { per.min(per_strong) } else { per };
        let l = &mut k.limits;
        l.state_bytes_max = l.state_bytes_max.min(per).max(KEYED_STATE_FIT_MIN);
        l.conflict_log_bytes_max = l.conflict_log_bytes_max.min(per / 16).max(CONFLICT_LOG_FIT_MIN);
    }
}

/// The most bytes a site member's Raft snapshot carries of keyed states.
const SITE_KEYED_BYTES_MAX: u64 = crate::site::msg::KEYED_SNAPSHOT_BYTES_MAX as u64;

/// The largest state each of a site member's `strong` strong keyed topics may have, with
/// `memory_bytes_max` (see `fit_keyed_limits`); no bound without any.
pub fn strong_keyed_state_share(memory_bytes_max: u64, strong: usize) -> u64 {
    let Some(n) = std::num::NonZeroU64::new(strong as u64) else { return u64::MAX };
    (SITE_KEYED_BYTES_MAX / 2).min(memory_bytes_max / 64) / n
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
    let room = storage.saturating_sub(topics * 4 * cfg.log.segment_bytes_max + files_reserved(cfg));
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
    use crate::log::Segment;

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
        TopicLog::recovered(TopicIdx(topic), segs, Default::default())
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

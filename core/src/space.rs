//! Storage: the budget's accounting, eviction by each topic's policy, retention, and the
//! device-full state (storage refused a write). What may go is decided against where each
//! topic is acknowledged upstream (`SpaceCx::synced`): nothing a policy keeps leaves the
//! device before the next hop holds it.

use crate::config::{Eviction, NodeConfig, Role};
use crate::effects::{Fx, Owner};
use crate::io::{DiskRequest, Event, ProduceError};
use crate::log::TopicLog;
use crate::resources::{self, TopicUsage, TopicView, Victim, VictimKind};
use crate::types::{Duration, Instant, Now, Seq, TopicIdx};

/// What a storage step is given: the configuration, the time, the effects, the logs, where
/// each topic is acknowledged up to (`None`: nothing leaves this node, so nothing is ever
/// synced), and the storage the queued commit reserves.
pub(crate) struct SpaceCx<'a> {
    pub cfg: &'a NodeConfig,
    pub now: Now,
    pub fx: &'a mut Fx,
    pub logs: &'a mut [TopicLog],
    pub synced: &'a dyn Fn(usize) -> Option<Seq>,
    pub reserved: u64,
    /// The reserve for the node's other files (`Space::files_reserved`).
    pub files: u64,
}

/// Storage refused writes: produces wait until `retry_at`, then one commit probes. The
/// state ends at once when the node has freed `needed` bytes since (the write that failed
/// fits again), or when a commit succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DeviceFull {
    retry_at: Instant,
    wait: Duration,
    /// Bytes of the write storage refused.
    needed: u64,
    /// Bytes of segments deleted since.
    freed: u64,
    /// No roll is tried before this (one failed: see `GroupCommit::roll_synced`).
    roll_after: Instant,
}

/// Counters of what storage did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SpaceStats {
    pub segments_deleted: u64,
    pub evicted_synced_segments: u64,
    pub device_full_events: u64,
}

/// The storage state of one node.
#[derive(Debug)]
pub(crate) struct Space {
    device_full: Option<DeviceFull>,
    /// Per topic: records evicted before the next hop acknowledged them.
    evicted_unsynced: Vec<u64>,
    pub stats: SpaceStats,
    /// `resources::files_reserved` of the node's configuration, computed once: it walks
    /// the keyed topics' limits, and storage is looked at on every commit.
    files_reserved: u64,
}

/// Bytes of storage the node's files take, as it accounts them: every segment byte
/// appended, and the reserve for its other files (`files`, `Space::files_reserved`).
pub(crate) fn storage_used(files: u64, logs: &[TopicLog]) -> u64 {
    logs.iter().map(TopicLog::bytes).sum::<u64>() + files
}

/// What a look at storage is given (no effects, the logs read only).
pub(crate) struct SpaceView<'a> {
    pub cfg: &'a NodeConfig,
    pub now: Now,
    pub logs: &'a [TopicLog],
    pub synced: &'a dyn Fn(usize) -> Option<Seq>,
    pub reserved: u64,
    pub files: u64,
}

impl SpaceCx<'_> {
    fn room(&self) -> u64 {
        self.cfg.resources.storage_bytes_max.saturating_sub(storage_used(self.files, self.logs) + self.reserved)
    }
}

impl Space {
    pub fn new(cfg: &NodeConfig) -> Space {
        Space {
            device_full: None,
            evicted_unsynced: vec![0; cfg.topics.len()],
            stats: SpaceStats::default(),
            files_reserved: resources::files_reserved(cfg),
        }
    }

    /// Storage kept free of segments for the node's other files.
    pub fn files_reserved(&self) -> u64 {
        self.files_reserved
    }

    /// Records evicted before the next hop acknowledged them, over all topics.
    pub fn evicted_unsynced(&self) -> u64 {
        self.evicted_unsynced.iter().sum()
    }

    pub fn is_device_full(&self) -> bool {
        self.device_full.is_some()
    }

    /// Storage refused a write a moment ago: writes wait until the probe.
    pub fn refuses_writes(&self, now: Instant) -> bool {
        self.device_full.is_some_and(|f| now < f.retry_at)
    }

    /// Bytes a write may take now: none while storage refuses writes.
    pub fn room(&self, cx: &SpaceCx<'_>) -> u64 {
        if self.refuses_writes(cx.now.mono) {
            0
        } else {
            cx.room()
        }
    }

    /// When a roll that failed is tried again, if one waits.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.device_full.map(|f| f.roll_after).filter(|&at| at > now)
    }

    /// Whether a roll is due (one failed, and its wait has passed).
    pub fn roll_due(&self, now: Instant) -> bool {
        self.device_full.is_some_and(|f| f.roll_after <= now)
    }

    /// A commit succeeded: storage takes writes again.
    pub fn on_commit_succeeded(&mut self) {
        self.device_full = None;
    }

    /// A roll failed: the next is tried after the device-full wait.
    pub fn on_roll_failed(&mut self, now: Instant) {
        if let Some(f) = &mut self.device_full {
            f.roll_after = now.saturating_add(f.wait);
        }
    }

    /// Evicts until `need` more bytes fit the storage budget, for a write to `writer`.
    /// False if the policies let nothing more go.
    pub fn make_room(&mut self, cx: &mut SpaceCx<'_>, writer: TopicIdx, need: u64) -> bool {
        loop {
            if cx.room() >= need {
                return true;
            }
            let Some(victim) = pick_victim(cx, writer) else {
                return false;
            };
            self.evict(cx, victim);
        }
    }

    /// Deletes the oldest segment of `v.topic`. Records the next hop had not acknowledged
    /// are counted and named in `Event::Evicted`; sync later tells it with a `Skip`
    /// (reason `Evicted`).
    fn evict(&mut self, cx: &mut SpaceCx<'_>, v: Victim) {
        let t = v.topic.0 as usize;
        let unsynced_from = (cx.synced)(t).unwrap_or(0);
        let policy = cx.cfg.topics[t].eviction;
        let log = &mut cx.logs[t];
        match v.kind {
            VictimKind::Synced => {}
            VictimKind::Superseded => assert!(
                policy == Eviction::Compact && log.oldest().is_some_and(|s| s.live_records() == 0),
                "a segment of topic {t} holding a key's newest value compacted away"
            ),
            VictimKind::Unsynced => assert!(
                policy.yields_to(cx.cfg.topics[t].priority, u8::MAX),
                "unsynced records of topic {t} evicted under policy {policy:?}"
            ),
        }
        let seg = log.evict_oldest(unsynced_from).expect("a victim is never a topic's only segment");
        let file = log.file(seg.base);
        cx.fx.disk(DiskRequest::Delete { file }, Owner::Unheeded);
        let from = seg.base.max(unsynced_from);
        if v.kind == VictimKind::Synced || from >= seg.end {
            self.stats.evicted_synced_segments += 1;
            cx.fx.event(Event::SegmentDeleted { file, records: seg.end - seg.base });
            return;
        }
        // Sequences past the segment's last frame hold nothing (see `log`).
        let to = seg.end;
        let records = (to - seg.unwritten).saturating_sub(from);
        self.evicted_unsynced[t] += records;
        cx.fx.event(Event::Evicted { topic: v.topic, from, to, records, bytes: seg.len, policy: policy.name() });
    }

    /// Storage said there is no space for a write of `needed` bytes: refuse produces for
    /// a while, then probe with one commit; meanwhile free what the next hop holds. True
    /// when a roll is due (see [`Space::reclaim`]).
    pub fn on_device_full(&mut self, cx: &mut SpaceCx<'_>, needed: u64) -> bool {
        self.stats.device_full_events += 1;
        let now = cx.now.mono;
        let r = &cx.cfg.resources;
        let wait = match self.device_full {
            None => r.disk_full_probe_min,
            Some(f) => Duration(f.wait.0.saturating_mul(2).min(r.disk_full_probe_max.0)),
        };
        let roll_after = self.device_full.map_or(now, |f| f.roll_after);
        self.device_full = Some(DeviceFull { retry_at: now.saturating_add(wait), wait, needed, freed: 0, roll_after });
        cx.fx.event(Event::StorageProblem {
            detail: format!(
                "storage reported no space for a write of {needed} bytes; segments the gateway holds are freed as it \
                 acknowledges them, and produces are refused for {} ms, then a write is tried again",
                wait.as_millis()
            ),
        });
        self.reclaim(cx)
    }

    /// While the device is full: deletes every segment the next hop holds wholly, and
    /// ends the full state once the write that failed fits in what was freed. True when
    /// the rest is held by newest segments to roll first (`GroupCommit::roll_synced`).
    /// Nothing the next hop has not acknowledged goes: lossy policies evict only against
    /// the storage budget, in `make_room`.
    pub fn reclaim(&mut self, cx: &mut SpaceCx<'_>) -> bool {
        let Some(mut full) = self.device_full else { return false };
        if cx.cfg.role != Role::Edge {
            return false;
        }
        let before = storage_used(cx.files, cx.logs);
        let top = (0..cx.logs.len()).max_by_key(|&t| cx.cfg.topics[t].priority).unwrap_or(0);
        while let Some(v) = pick_victim(cx, TopicIdx(top as u16)).filter(|v| v.kind == VictimKind::Synced) {
            self.evict(cx, v);
        }
        full.freed += before - storage_used(cx.files, cx.logs);
        if full.freed >= full.needed {
            self.device_full = None;
            cx.fx.event(Event::StorageFreed { bytes: full.freed });
            return false;
        }
        self.device_full = Some(full);
        cx.now.mono >= full.roll_after
    }

    /// Deletes each topic's oldest segments past its retention (bytes or age), never one
    /// the next hop has not acknowledged (`mark`: where each topic is acknowledged up to
    /// for retention; `u64::MAX` for what never leaves, 0 for what must stay: a
    /// gateway's, whose marks a restart rebuilds from its segments unless a durable
    /// checkpoint covers them, see `crate::marks`).
    pub fn apply_retention(
        &mut self,
        (cfg, wall): (&NodeConfig, u64),
        fx: &mut Fx,
        logs: &mut [TopicLog],
        mark: impl Fn(usize) -> u64,
    ) {
        for (i, log) in logs.iter_mut().enumerate() {
            let tcfg = &cfg.topics[i];
            let synced = mark(i);
            while retention_due(log, tcfg, wall, synced) {
                let seg = log.pop_oldest().expect("more than one segment");
                let file = log.file(seg.base);
                self.stats.segments_deleted += 1;
                fx.disk(DiskRequest::Delete { file }, Owner::Unheeded);
                fx.event(Event::SegmentDeleted { file, records: seg.end - seg.base });
            }
        }
    }

    /// Deletes the oldest segments of `log`, a gateway's `cloud-to-edge` topic, past its
    /// `retention_age` even where a subscriber lacks them: the topic's retention says that
    /// an edge away for longer does without them (DESIGN §8). `acked`: what every
    /// subscriber known here acknowledged; records from there on are counted like an
    /// eviction (`Event::Expired`), and the senders skip them for each edge that lacks them.
    pub fn expire_by_age(&mut self, (cfg, wall): (&NodeConfig, u64), fx: &mut Fx, log: &mut TopicLog, acked: Seq) {
        let t = log.topic.0 as usize;
        let Some(age) = cfg.topics[t].retention_age else { return };
        let expired = |l: &TopicLog| l.oldest().is_some_and(|s| wall.saturating_sub(s.newest_ms) > age.as_millis());
        while log.removable() > 0 && expired(log) {
            let seg = log.evict_oldest(acked).expect("a removable segment");
            let file = log.file(seg.base);
            self.stats.segments_deleted += 1;
            fx.disk(DiskRequest::Delete { file }, Owner::Unheeded);
            // Sequences past the segment's last frame hold nothing (see `log`).
            let (from, to) = (seg.base.max(acked), seg.end);
            let records = (to - seg.unwritten).saturating_sub(from);
            if from >= to || records == 0 {
                fx.event(Event::SegmentDeleted { file, records: seg.end - seg.base });
                continue;
            }
            self.evicted_unsynced[t] += records;
            fx.event(Event::Expired { topic: log.topic, from, to, records, bytes: seg.len });
        }
    }

    /// The refusal of a produce for lack of storage, saying what holds the room.
    /// `queued`: storage of the records waiting for the next commit.
    pub fn refusal(&self, cx: &SpaceView<'_>, device_full: bool, queued: u64) -> ProduceError {
        let (mut unsynced, mut awaiting_ack, mut freeing, mut local) = (queued, 0, 0, 0);
        for (t, log) in cx.logs.iter().enumerate() {
            let Some(synced) = (cx.synced)(t) else {
                local += log.bytes();
                continue;
            };
            for s in log.segments() {
                if s.end > synced {
                    unsynced += s.len;
                } else if device_full {
                    // Freed while the device is full (`reclaim`): only the budget's
                    // eviction leaves a topic's newest segment in place.
                    freeing += s.len;
                }
            }
            awaiting_ack += log.records_from(synced);
        }
        let retry_in = match self.device_full {
            Some(f) if device_full => Duration(f.retry_at.0.saturating_sub(cx.now.mono.0)),
            _ => Duration::ZERO,
        };
        ProduceError::StorageFull {
            used: storage_used(cx.files, cx.logs) + cx.reserved,
            unsynced,
            limit: cx.cfg.resources.storage_bytes_max,
            device_full,
            awaiting_ack,
            freeing,
            local,
            retry_in,
        }
    }

    /// Usage per topic, as the operator CLI shows it.
    pub fn topic_usage(&self, cx: &SpaceView<'_>) -> Vec<TopicUsage> {
        let wall = cx.now.wall_ms;
        (0..cx.logs.len())
            .map(|t| {
                let log = &cx.logs[t];
                let tc = &cx.cfg.topics[t];
                let synced = (cx.synced)(t);
                let unsynced_records = synced.map_or(0, |s| log.records_from(s));
                let oldest = synced.and_then(|s| log.segments().find(|seg| seg.end > s && unsynced_records > 0));
                let unsynced_bytes = match synced {
                    Some(s) if unsynced_records > 0 => {
                        log.segments().filter(|seg| seg.end > s).map(|seg| seg.len).sum()
                    }
                    _ => 0,
                };
                TopicUsage {
                    name: tc.name.clone(),
                    priority: tc.priority,
                    eviction: tc.eviction,
                    bytes: log.bytes(),
                    segments: log.segment_count() as u64,
                    records: log.records_from(log.start_offset()),
                    unsynced_records,
                    unsynced_bytes,
                    oldest_unsynced_age: oldest.map(|seg| Duration::from_millis(wall.saturating_sub(seg.newest_ms))),
                    evicted_unsynced: self.evicted_unsynced[t],
                }
            })
            .collect()
    }
}

/// Whether retention deletes `log`'s oldest segment now: it is not the newest, it ends at
/// or below `synced`, and the topic is over its size or the segment over its age.
pub(crate) fn retention_due(log: &TopicLog, tcfg: &crate::config::TopicConfig, wall: u64, synced: u64) -> bool {
    let Some(oldest) = log.oldest() else { return false };
    if log.removable() == 0 || oldest.end > synced {
        return false;
    }
    let over_size = log.bytes() > tcfg.retention_bytes;
    over_size || tcfg.retention_age.is_some_and(|a| wall.saturating_sub(oldest.newest_ms) > a.as_millis())
}

fn pick_victim(cx: &SpaceCx<'_>, writer: TopicIdx) -> Option<Victim> {
    if cx.cfg.role != Role::Edge {
        // A gateway's segments rebuild its marks at a restart (see `apply_retention`).
        return None;
    }
    let views: Vec<TopicView<'_>> = (0..cx.logs.len())
        .map(|t| TopicView {
            log: &cx.logs[t],
            priority: cx.cfg.topics[t].priority,
            eviction: cx.cfg.topics[t].eviction,
            synced_below: (cx.synced)(t),
        })
        .collect();
    resources::pick_victim(&views, writer)
}

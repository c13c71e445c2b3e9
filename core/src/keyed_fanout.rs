//! `KeyedFanOut`: how one edge's keyed writes reach every other edge. A top gateway (one
//! without an upstream) copies each write that came up in the half of a `bidirectional`
//! keyed topic that goes up into the half that comes down, as a record of its own whose
//! value is the write's operation marked *relayed* with the write's own dot and
//! timestamp (`keyed::op`). Every edge receives the half that comes down in order and
//! exactly once, and merges a copy as the write it copies (`keyed_topics`): its author
//! finds it seen, every other edge takes it. The copy is a record, not a protocol: the
//! senders, receivers, marks and retention of the half that comes down carry it as they
//! carry the gateway's own writes.
//!
//! Guarantees enforced here:
//! - Every write durable in the half that goes up is copied once its batch is durable,
//!   in the order of that half's log (so each origin's writes in sequence order, which
//!   a counter's merge needs), and none is lost to a crash or a failed commit: what is
//!   copied is known from the half that comes down (the highest sequence of each origin
//!   copied there, `relayed`), and a batch stays queued until all its records' copies
//!   are durable. A failed commit hands its copies again; recovery scans the half that
//!   comes down before the half that goes up (`recovery`) and queues again every batch
//!   with a record beyond what was copied.
//! - Bounded: the queue of batches waiting shares `gateway.pending_bytes_max` with the
//!   batches the receiver accepted and has not made durable (`Node`'s Data routing gives
//!   the receiver that much less room, so both together stay within what the memory plan
//!   gives accepted batches), and the copies expanded from it hold at most
//!   [`READY_BYTES_MAX`] (and one record). What a crash can leave uncopied is the queue,
//!   the batches accepted, and the copies in the commit's produce buffer: recovery
//!   queues at most `gateway.pending_bytes_max + log.pending_bytes_max`, which the plan
//!   adds, and counts the batches beyond it (`overflowed`: only after a gateway ran an
//!   older build or had a larger bound; copies a restart will make, see docs/KEYED.md).

use std::collections::{BTreeMap, VecDeque};

use crate::codec::{BatchDecoder, DecodedBatch};
use crate::config::{NodeConfig, Role, SyncDirection};
use crate::keyed::{Dot, KeyedOp, Relayed};
use crate::types::{NodeId, Seq, TopicIdx};

/// The most bytes of keys and values of copies expanded from the queue at once, and the
/// most copies (more wait in their batch).
pub const READY_BYTES_MAX: u64 = 64 << 10;
pub const READY_COPIES_MAX: usize = 1024;
/// What one stream's highest copied sequence costs in its map (its 24 bytes in a B-tree
/// node at least half full, with the node's header).
pub const MARK_BYTES: u64 = 64;

/// The fan-out's planned memory beyond what accepted batches leave its queue: the copies
/// a crash took from the produce buffer (after a recovery), the copies expanded (one
/// record beyond their bound, their entries in a deque that may have doubled), the
/// highest copied sequence per stream.
pub fn planned_bytes(cfg: &NodeConfig, record_max: u64) -> u64 {
    let ready = READY_BYTES_MAX + record_max + (2 * READY_COPIES_MAX * std::mem::size_of::<KeyedCopy>()) as u64;
    let marks = cfg.gateway.streams_max as u64 * MARK_BYTES;
    recovered_max(cfg) - cfg.gateway.pending_bytes_max + ready + marks
}

/// What recovery may queue: the most a crash can leave uncopied (see the module's doc).
pub fn recovered_max(cfg: &NodeConfig) -> u64 {
    cfg.gateway.pending_bytes_max + cfg.log.pending_bytes_max
}

/// One write's copy, ready for the commit: a record of the half that comes down.
#[derive(Debug)]
pub struct KeyedCopy {
    pub down: TopicIdx,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl KeyedCopy {
    fn cost(&self) -> u64 {
        (self.key.capacity() + self.value.capacity()) as u64
    }
}

/// A durable batch of a half that goes up, some of whose records are not copied yet.
#[derive(Debug)]
struct Waiting {
    up: TopicIdx,
    origin: NodeId,
    /// Its log offset in `up`.
    offset: Seq,
    /// The sequences of its records.
    base: Seq,
    end: Seq,
    batch: Vec<u8>,
    /// Records of it already expanded (into `ready`, or handed to the commit).
    expanded: usize,
}

/// The fan-out of a top gateway's `bidirectional` keyed topics.
#[derive(Debug)]
pub struct KeyedFanOut {
    /// Per topic index: of a half that goes up, its half that comes down.
    down_of: Vec<Option<TopicIdx>>,
    /// Per topic index: of a half that comes down, its half that goes up.
    up_of: Vec<Option<TopicIdx>>,
    /// Per (half that goes up, origin): the highest sequence whose copy is durable.
    relayed: BTreeMap<(TopicIdx, NodeId), Seq>,
    queue: VecDeque<Waiting>,
    /// The queued batches' bytes (their entries are counted from the deque's capacity).
    queued_bytes: u64,
    /// The most recovery queues.
    recovered_max: u64,
    /// Batches of the queue expanded (wholly or in part), from its front.
    expanded_batches: usize,
    ready: VecDeque<KeyedCopy>,
    ready_bytes: u64,
    /// Batches recovery found uncopied beyond twice the queue's bound, not queued.
    pub overflowed: u64,
    /// Per half that goes up, the log offset of the first batch recovery did not queue:
    /// a keyed checkpoint covers none of it until a restart copies it.
    overflowed_from: BTreeMap<TopicIdx, Seq>,
}

impl KeyedFanOut {
    /// The fan-out `cfg` runs, if any: a gateway without an upstream with a
    /// `bidirectional` topic merged per key.
    pub fn new(cfg: &NodeConfig) -> Option<KeyedFanOut> {
        if cfg.role != Role::Gateway || cfg.upstream.is_some() {
            return None;
        }
        let n = cfg.topics.len();
        let (mut down_of, mut up_of) = (vec![None; n], vec![None; n]);
        for (u, t) in cfg.topics.iter().enumerate() {
            if !(t.both_ways && t.keyed.is_some() && t.sync == SyncDirection::EdgeToCloud) {
                continue;
            }
            let half = cfg.topics.iter().position(|d| d.name == t.name && d.sync == SyncDirection::CloudToEdge);
            if let Some(d) = half {
                down_of[u] = Some(TopicIdx(d as u16));
                up_of[d] = Some(TopicIdx(u as u16));
            }
        }
        down_of.iter().any(Option::is_some).then(|| KeyedFanOut {
            down_of,
            up_of,
            relayed: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            recovered_max: recovered_max(cfg),
            expanded_batches: 0,
            ready: VecDeque::new(),
            ready_bytes: 0,
            overflowed: 0,
            overflowed_from: BTreeMap::new(),
        })
    }

    /// Whether `topic` is a half that comes down whose copies this gateway writes: what
    /// recovery scans before the other topics.
    pub fn is_copied_into(&self, topic: TopicIdx) -> bool {
        self.up_of.get(topic.0 as usize).is_some_and(Option::is_some)
    }

    /// A copy this gateway wrote to `down` is durable.
    pub fn note_copied(&mut self, down: TopicIdx, copied: Dot) {
        if let Some(up) = self.up_of.get(down.0 as usize).copied().flatten() {
            let seq = self.relayed.entry((up, copied.origin)).or_insert(copied.seq);
            *seq = (*seq).max(copied.seq);
        }
    }

    /// A batch of `topic` at log offset `offset` is durable: queued if `topic` is a half
    /// that goes up and some of its records are not copied (at recovery, if the queue has
    /// room for it: `recovering`).
    pub fn note_durable(&mut self, topic: TopicIdx, batch: &[u8], offset: Seq, recovering: bool) {
        if self.down_of.get(topic.0 as usize).copied().flatten().is_none() {
            return;
        }
        let Ok(h) = crate::codec::BatchHeader::decode(batch) else { return };
        let end = h.base_seq + u64::from(h.count);
        if self.relayed.get(&(topic, h.origin)).is_some_and(|&s| s + 1 >= end) {
            return;
        }
        if recovering && self.queued_bytes() + batch.len() as u64 > self.recovered_max {
            self.overflowed += 1;
            self.overflowed_from.entry(topic).or_insert(offset);
            return;
        }
        self.queued_bytes += batch.len() as u64;
        let (origin, base, batch) = (h.origin, h.base_seq, batch.to_vec());
        let w = Waiting { up: topic, origin, offset, base, end, batch, expanded: 0 };
        self.queue.push_back(w);
    }

    /// A commit is durable (its copies noted): batches all of whose copies are durable
    /// leave the queue.
    pub fn on_committed(&mut self) {
        while let Some(w) = self.queue.front() {
            if self.relayed.get(&(w.up, w.origin)).is_none_or(|&s| s + 1 < w.end) {
                break;
            }
            let w = self.queue.pop_front().expect("front exists");
            self.queued_bytes -= w.batch.len() as u64;
            self.expanded_batches = self.expanded_batches.saturating_sub(1);
        }
        // (A deque keeps its capacity: a burst's entries are given back once it drained.)
        if self.queue.capacity() > 4 * self.queue.len().max(8) {
            self.queue.shrink_to(2 * self.queue.len().max(8));
        }
    }

    /// A commit failed: the copies it carried are handed again, from the first one not
    /// durable.
    pub fn on_commit_failed(&mut self) {
        self.ready.clear();
        self.ready_bytes = 0;
        self.expanded_batches = 0;
        for w in &mut self.queue {
            w.expanded = 0;
        }
    }

    /// The next copy for the commit, if one waits; give it back with [`put_back`](Self::put_back)
    /// if the commit cannot take it now.
    pub fn take(&mut self, dec: &mut BatchDecoder) -> Option<KeyedCopy> {
        while self.ready.is_empty() && self.expanded_batches < self.queue.len() {
            self.expand(dec);
        }
        let c = self.ready.pop_front()?;
        self.ready_bytes -= c.cost();
        if self.ready.is_empty() && self.ready.capacity() > 64 {
            self.ready.shrink_to(64);
        }
        Some(c)
    }

    pub fn put_back(&mut self, c: KeyedCopy) {
        self.ready_bytes += c.cost();
        self.ready.push_front(c);
    }

    /// Expands the next records of the first batch not wholly expanded, up to
    /// [`READY_BYTES_MAX`] of copies.
    fn expand(&mut self, dec: &mut BatchDecoder) {
        let i = self.expanded_batches;
        let w = &mut self.queue[i];
        let down = self.down_of[w.up.0 as usize].expect("queued from a half that goes up");
        let copied = self.relayed.get(&(w.up, w.origin)).copied();
        let Ok(b) = DecodedBatch::decode_with(&w.batch, dec) else {
            // (Its checksum held when it was stored: nothing of it can be merged anywhere.)
            self.expanded_batches += 1;
            return;
        };
        let base = w.base;
        let mut n = w.expanded;
        for rec in b.records().skip(w.expanded) {
            if self.ready_bytes >= READY_BYTES_MAX || self.ready.len() >= READY_COPIES_MAX {
                break;
            }
            let seq = base + n as u64;
            n += 1;
            if copied.is_some_and(|c| seq <= c) {
                continue;
            }
            // (A record that is no write of its topic is merged nowhere, and not copied.)
            let (Some(key), Ok(op)) = (rec.key, KeyedOp::decode(rec.value)) else { continue };
            if op.relayed.is_some() {
                continue;
            }
            let relayed = Some(Relayed { dot: Dot { origin: w.origin, seq }, hlc: rec.hlc });
            let mut value = Vec::with_capacity(rec.value.len() + 24);
            KeyedOp { relayed, ..op }.encode(&mut value);
            let c = KeyedCopy { down, key: key.to_vec(), value };
            self.ready_bytes += c.cost();
            self.ready.push_back(c);
        }
        w.expanded = n;
        if n == b.header.count as usize {
            self.expanded_batches += 1;
        }
    }

    /// Records of queued batches not yet copied durably (at most: some may be).
    pub fn waiting_records(&self) -> u64 {
        self.queue.iter().map(|w| self.uncopied(w)).sum()
    }

    /// Records of a queued batch whose copies are not durable.
    fn uncopied(&self, w: &Waiting) -> u64 {
        w.end - self.relayed.get(&(w.up, w.origin)).map_or(w.base, |&s| (s + 1).clamp(w.base, w.end))
    }

    /// Of those, the writes of `up`'s queued batches.
    pub fn waiting_records_of(&self, up: TopicIdx) -> u64 {
        self.queue.iter().filter(|w| w.up == up).map(|w| self.uncopied(w)).sum()
    }

    /// The log offset of `up` from which some record may not be copied durably (the first
    /// batch queued or left uncopied by recovery); `None` when all are.
    pub fn uncopied_from(&self, up: TopicIdx) -> Option<Seq> {
        let queued = self.queue.iter().find(|w| w.up == up).map(|w| w.offset);
        queued.into_iter().chain(self.overflowed_from.get(&up).copied()).min()
    }

    /// What is copied of `up`'s streams: per origin, the highest sequence whose copy is
    /// durable (for a keyed checkpoint).
    pub fn relayed_of(&self, up: TopicIdx) -> Vec<(NodeId, Seq)> {
        self.relayed.range((up, NodeId(0))..=(up, NodeId(u64::MAX))).map(|(&(_, o), &s)| (o, s)).collect()
    }

    /// What a keyed checkpoint says is copied of `up`'s streams (recovery, before it
    /// scans the segments after what the checkpoint covers).
    pub fn restore_relayed(&mut self, up: TopicIdx, marks: &[(NodeId, Seq)]) {
        for &(origin, seq) in marks {
            let s = self.relayed.entry((up, origin)).or_insert(seq);
            *s = (*s).max(seq);
        }
    }

    /// The half that goes up of keyed topic `topic` (either half), if this gateway copies it.
    pub fn up_half(&self, topic: TopicIdx) -> Option<TopicIdx> {
        let i = topic.0 as usize;
        self.down_of.get(i).copied().flatten().map(|_| topic).or_else(|| self.up_of.get(i).copied().flatten())
    }

    /// The queue's bytes, its entries too: what the receiver's room for batches gives up.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes + (self.queue.capacity() * std::mem::size_of::<Waiting>()) as u64
    }

    /// Bytes held: the queue, the copies expanded, the marks.
    pub fn bytes(&self) -> u64 {
        let ready = self.ready_bytes + (self.ready.capacity() * std::mem::size_of::<KeyedCopy>()) as u64;
        self.queued_bytes() + ready + self.relayed.len() as u64 * MARK_BYTES
    }
}

//! "Acknowledged means durable", checked directly against the simulated disk (DESIGN §3,
//! guarantees 1 and 2). The checker in `crate::checker` sees only what reaches the
//! gateway, so it finds a broken promise late, through its consequences, or not at all
//! (a sequence handed out again after recovery cut a tail shows only if the gateway
//! happened to hold the old record). The simulated disk knows exactly which bytes are
//! durable, so each promise is checked the moment it is made:
//!
//! - **reply**: a producer's record is acknowledged only while a durable, intact log
//!   frame on the node's disk holds its sequence (checked as the reply leaves the node);
//! - **gateway acknowledgement**: a gateway's `Ack` (and `Welcome`) mark for a stream
//!   covers only sequences a durable frame on the gateway's disk holds, or that the
//!   gateway accepted as skipped (checked as the message leaves the gateway);
//! - **recovery**: after a crash, no truncation cuts a frame that was durable and intact
//!   (whatever reason the node gives), unless a `disk-corrupt` fault destroyed it;
//! - **sequence identity**: no frame made durable holds a sequence that was acknowledged
//!   to a producer, or held by a frame durable at a crash (which recovery finds, and sync
//!   may send): such an identity is never given to another record, even after its frame
//!   was destroyed and cut. Strong topics are exempt: a member re-derives its cut tail
//!   from the site's Raft log, with the same records at the same sequences.
//!
//! Not a violation: a running node's rollback after a failed commit truncates frames that
//! a sync queued before the failure made durable. Nobody was told of them (the commit
//! failed), so their sequences may go to other records, unless a crash comes first: then
//! they count as durable at the crash, and recovery must keep them.
//!
//! "Durable" is what a crash now would leave: bytes an fsync covered, and bytes a crash
//! kept (the kernel had flushed them on its own). The index is built from the disk's
//! [`DiskChange`]s: each sync's new bytes are scanned for frames as it completes.

use crate::disk::{Corruption, DiskChange, SimDisk};
use outpost_core::codec::{self, BatchHeader, FrameKind};
use outpost_core::io::FileId;
use outpost_core::types::TopicIdx;
use std::collections::BTreeMap;

/// A violated promise: the checker's invariant name and what happened.
pub type Problem = (&'static str, String);

/// One durable, intact log frame as it was when it became durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DurableFrame {
    pos: u64,
    end_pos: u64,
    /// Log offsets `base..end` (an edge's sequences).
    base: u64,
    end: u64,
    /// A `disk-corrupt` fault hit it since.
    destroyed: bool,
}

#[derive(Debug, Default)]
struct FileIndex {
    /// Bytes of the file scanned for frames.
    indexed_to: u64,
    frames: Vec<DurableFrame>,
}

/// Half-open ranges of sequences, merged.
#[derive(Debug, Default)]
struct RangeSet(BTreeMap<u64, u64>);

impl RangeSet {
    fn insert(&mut self, mut from: u64, mut to: u64) {
        if from >= to {
            return;
        }
        let overlapping: Vec<(u64, u64)> =
            self.0.range(..=to).rev().take_while(|&(_, &e)| e >= from).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in overlapping {
            self.0.remove(&s);
            from = from.min(s);
            to = to.max(e);
        }
        self.0.insert(from, to);
    }

    /// The first sequence of `from..to` not in the set, if any.
    fn first_missing(&self, from: u64, to: u64) -> Option<u64> {
        let mut at = from;
        while at < to {
            match self.0.range(..=at).next_back() {
                Some((_, &e)) if e > at => at = e,
                _ => return Some(at),
            }
        }
        None
    }
}

/// What one node's disk holds durably, and the promises checked against it.
#[derive(Debug)]
pub struct NodeDurability {
    /// Per topic: whether its sequences may be written again (strong topics).
    rewritable: Vec<bool>,
    files: BTreeMap<FileId, FileIndex>,
    /// Per topic: one past the highest log offset a durable frame ever held.
    high: BTreeMap<u16, u64>,
    /// Gateways: per (origin, topic), the origin's sequences durable here or skipped.
    covered: BTreeMap<(usize, u16), RangeSet>,
    /// Gateways: per (origin, topic), how far its acknowledgements were checked.
    acked_to: BTreeMap<(usize, u16), u64>,
}

/// A log frame found in `data` at `at`: its total length, log offset and batch header.
fn frame_at(data: &[u8], at: usize) -> Result<(usize, u64, BatchHeader), bool> {
    match codec::decode_frame(&data[at..]) {
        Ok((frame, used)) => {
            if frame.kind != FrameKind::LogBatch || frame.payload.len() < 8 {
                return Err(false);
            }
            let (b, batch) = frame.payload.split_at(8);
            let base = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            BatchHeader::decode(batch).map(|h| (used, base, h)).map_err(|_| false)
        }
        Err(codec::FrameError::Incomplete { .. }) => Err(true),
        Err(_) => Err(false),
    }
}

impl NodeDurability {
    /// `rewritable[t]`: topic `t` is strong (see the module docs).
    pub fn new(rewritable: Vec<bool>) -> NodeDurability {
        NodeDurability {
            rewritable,
            files: BTreeMap::new(),
            high: BTreeMap::new(),
            covered: BTreeMap::new(),
            acked_to: BTreeMap::new(),
        }
    }

    /// Takes in what the disk applied since the last call; returns the promises broken
    /// by it (a truncation of durable frames, a sequence made durable a second time).
    /// `recovering`: the node is between a restart and running (its truncations are
    /// recovery's).
    pub fn apply(&mut self, disk: &SimDisk, changes: Vec<DiskChange>, recovering: bool) -> Vec<Problem> {
        let mut problems = Vec::new();
        for c in changes {
            match c {
                DiskChange::Synced { file, .. } => {
                    if let FileId::Segment { topic, base } = file {
                        self.index(disk, topic, base, &mut problems);
                    }
                }
                DiskChange::Truncated { file, len } => {
                    let Some(ix) = self.files.get_mut(&file) else { continue };
                    for f in ix.frames.iter().filter(|f| recovering && f.end_pos > len && !f.destroyed) {
                        problems.push((
                            "durability",
                            format!(
                                "{file} cut to {len} bytes, through a durable intact frame at {}..{} holding sequences {}..{}",
                                f.pos, f.end_pos, f.base, f.end
                            ),
                        ));
                    }
                    ix.frames.retain(|f| f.end_pos <= len);
                    ix.indexed_to = ix.indexed_to.min(len);
                }
                DiskChange::Deleted { file } => {
                    self.files.remove(&file);
                }
            }
        }
        problems
    }

    /// Scans the durable bytes of a segment not yet indexed for frames.
    fn index(&mut self, disk: &SimDisk, topic: TopicIdx, base: u64, problems: &mut Vec<Problem>) {
        let file = FileId::Segment { topic, base };
        let Some(data) = disk.durable_bytes(file) else { return };
        let ix = self.files.entry(file).or_default();
        let mut at = ix.indexed_to as usize;
        while at < data.len() {
            match frame_at(data, at) {
                Ok((used, offset, h)) => {
                    let end = offset + u64::from(h.count);
                    let pos = at as u64;
                    ix.frames.push(DurableFrame {
                        pos,
                        end_pos: pos + used as u64,
                        base: offset,
                        end,
                        destroyed: false,
                    });
                    let high = self.high.get(&topic.0).copied().unwrap_or(0);
                    if offset < high && !self.rewritable.get(topic.0 as usize).copied().unwrap_or(false) {
                        problems.push((
                            "sequence-identity",
                            format!(
                                "topic {} sequences {offset}..{end} made durable in {file} at {pos}, but sequences below {high} were acknowledged or durable at a crash: an identity is given to a second record",
                                topic.0
                            ),
                        ));
                    }
                    let origin = (h.origin.0 as usize).wrapping_sub(1);
                    self.covered.entry((origin, topic.0)).or_default().insert(h.base_seq, h.end_seq());
                    at += used;
                }
                // A frame cut short at the durable end: a torn write a crash kept. The
                // node's recovery cuts it; a longer sync cannot follow it.
                Err(true) => break,
                // Torn garbage or damage: frames may follow (recovery searches past it).
                Err(false) => {
                    at = (at + 1..data.len()).find(|&p| frame_at(data, p).is_ok()).unwrap_or(data.len());
                }
            }
        }
        ix.indexed_to = at as u64;
    }

    /// The node crashed (after [`NodeDurability::apply`] took in what the crash kept):
    /// every sequence a durable frame holds now, or held before a fault destroyed it, is
    /// an identity recovery must not give out again.
    pub fn on_crash(&mut self) {
        for (file, ix) in &self.files {
            let FileId::Segment { topic, .. } = file else { continue };
            if let Some(end) = ix.frames.iter().map(|f| f.end).max() {
                let high = self.high.entry(topic.0).or_default();
                *high = (*high).max(end);
            }
        }
    }

    /// A `disk-corrupt` fault destroyed the frames holding these offsets.
    pub fn on_corruption(&mut self, c: &Corruption) {
        let Some(ix) = self.files.get_mut(&c.file) else { return };
        for f in &mut ix.frames {
            if c.destroyed.iter().any(|&(a, b)| f.base < b && a < f.end) {
                f.destroyed = true;
            }
        }
    }

    /// A producer's record at `seq` of `topic` is being acknowledged: a durable intact
    /// frame must hold it. Strong topics are acknowledged by the site's quorum instead.
    pub fn check_reply(&mut self, topic: u16, seq: u64) -> Option<Problem> {
        if self.rewritable.get(topic as usize).copied().unwrap_or(false) {
            return None;
        }
        let high = self.high.entry(topic).or_default();
        // A frame a `disk-corrupt` fault destroyed after it was durable, before the node
        // heard its sync complete, was durable when the node acknowledged it: its first
        // reply loses the record to the fault, as if it had struck after the reply (swarm
        // seed 1696: 74 ms between the flip and the reply). A later reply naming it is not.
        let first = seq >= *high;
        *high = (*high).max(seq + 1);
        let t = TopicIdx(topic);
        let files = self.files.range(FileId::Segment { topic: t, base: 0 }..=FileId::Segment { topic: t, base: seq });
        for (_, ix) in files.rev() {
            if ix.frames.iter().rev().any(|f| f.base <= seq && seq < f.end && (first || !f.destroyed)) {
                return None;
            }
        }
        Some(("durability", format!("topic {topic} seq {seq} acknowledged to its producer, but no durable intact frame on the disk holds it")))
    }

    /// The gateway accepted that `from..to` of a stream will never arrive.
    pub fn on_gateway_skip(&mut self, origin: usize, topic: u16, from: u64, to: u64) {
        self.covered.entry((origin, topic)).or_default().insert(from, to);
    }

    /// The gateway tells `origin` that everything of `topic` below `next_seq` is durable.
    pub fn check_gateway_ack(&mut self, origin: usize, topic: u16, next_seq: u64, what: &str) -> Option<Problem> {
        let checked = self.acked_to.entry((origin, topic)).or_default();
        if next_seq <= *checked {
            return None;
        }
        let from = std::mem::replace(checked, next_seq);
        let missing = match self.covered.get(&(origin, topic)) {
            Some(c) => c.first_missing(from, next_seq),
            None => Some(from),
        }?;
        Some((
            "durability",
            format!(
                "the gateway's {what} tells origin {origin} that topic {topic} is durable below {next_seq}, but seq {missing} is on no durable frame of its disk and was not skipped"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::DiskProfile;
    use crate::rng::stream;
    use outpost_core::codec::{encode_batch, Compression, RecordRef};
    use outpost_core::hlc::Hlc;
    use outpost_core::io::{DiskOpId, DiskRequest};
    use outpost_core::log::encode_log_frame;
    use outpost_core::types::{Duration, NodeId};

    const T: TopicIdx = TopicIdx(0);

    fn disk() -> SimDisk {
        let p = DiskProfile {
            write_latency: Duration::from_micros(50),
            fsync_latency_median: Duration::from_millis(2),
            fsync_latency_p99: Duration::from_millis(50),
            write_bytes_per_sec: 20_000_000,
            read_latency: Duration::from_micros(50),
        };
        SimDisk::new(p, 1 << 24)
    }

    fn frames(origin: u64, offset: u64, seq: u64, counts: &[u32]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut offset, mut seq) = (offset, seq);
        for &n in counts {
            let vals: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 30]).collect();
            let recs: Vec<RecordRef<'_>> =
                vals.iter().map(|v| RecordRef { hlc: Hlc::new(1000, 0), key: None, value: v }).collect();
            let mut batch = Vec::new();
            encode_batch(NodeId(origin), seq, &recs, Compression::None, &mut batch);
            encode_log_frame(offset, &batch, &mut out);
            offset += u64::from(n);
            seq += u64::from(n);
        }
        out
    }

    fn run(d: &mut SimDisk, req: DiskRequest) {
        let mut rng = stream(1, "test");
        d.submit(DiskOpId(0), req, &mut rng).expect("idle");
        d.complete(&mut rng).1.expect("applied");
    }

    fn write(d: &mut SimDisk, x: &mut NodeDurability, file: FileId, bytes: Vec<u8>, sync: bool) -> Vec<Problem> {
        run(d, DiskRequest::Append { file, bytes });
        if sync {
            run(d, DiskRequest::Sync { file });
        }
        let changes = d.take_changes();
        x.apply(d, changes, false)
    }

    #[test]
    fn a_reply_needs_a_durable_intact_frame() {
        let (mut d, mut x) = (disk(), NodeDurability::new(vec![false]));
        let f = FileId::Segment { topic: T, base: 0 };
        assert!(write(&mut d, &mut x, f, frames(1, 0, 0, &[3, 2]), true).is_empty());
        assert_eq!(x.check_reply(0, 4), None);
        assert!(write(&mut d, &mut x, f, frames(1, 5, 5, &[2]), false).is_empty());
        let p = x.check_reply(0, 5).expect("written but not synced");
        assert_eq!(p.0, "durability");
        assert!(p.1.contains("seq 5 acknowledged to its producer, but no durable intact frame"), "{p:?}");
        x.on_corruption(&Corruption { file: f, topic: T, block_at: 0, bits: 1, destroyed: vec![(0, 3)] });
        assert!(x.check_reply(0, 1).is_some(), "destroyed by a fault, and acknowledged before");
        assert_eq!(x.check_reply(0, 3), None);
    }

    #[test]
    fn a_frame_destroyed_between_its_sync_and_its_first_reply_is_lost_to_the_fault() {
        let (mut d, mut x) = (disk(), NodeDurability::new(vec![false]));
        let f = FileId::Segment { topic: T, base: 0 };
        assert!(write(&mut d, &mut x, f, frames(1, 0, 0, &[2]), true).is_empty());
        x.on_corruption(&Corruption { file: f, topic: T, block_at: 0, bits: 1, destroyed: vec![(0, 2)] });
        assert_eq!(x.check_reply(0, 0), None);
        assert_eq!(x.check_reply(0, 1), None);
        assert!(x.check_reply(0, 0).is_some(), "a second reply naming it is a violation");
    }

    #[test]
    fn cutting_a_durable_intact_frame_is_a_violation_unless_a_fault_destroyed_it() {
        let (mut d, mut x) = (disk(), NodeDurability::new(vec![false]));
        let f = FileId::Segment { topic: T, base: 0 };
        let bytes = frames(1, 0, 0, &[3, 2]);
        let first_len = frames(1, 0, 0, &[3]).len() as u64;
        write(&mut d, &mut x, f, bytes, true);
        x.on_corruption(&Corruption { file: f, topic: T, block_at: 0, bits: 1, destroyed: vec![(3, 5)] });
        run(&mut d, DiskRequest::Truncate { file: f, len: first_len });
        let changes = d.take_changes();
        assert!(x.apply(&d, changes, true).is_empty(), "the cut frame was destroyed");
        run(&mut d, DiskRequest::Truncate { file: f, len: first_len - 1 });
        let changes = d.take_changes();
        let p = x.apply(&d, changes, true);
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("through a durable intact frame at 0.."), "{p:?}");
        // A running node's rollback of a failed commit may cut what a sync made durable.
        write(&mut d, &mut x, f, frames(1, 0, 0, &[3]), true);
        run(&mut d, DiskRequest::Truncate { file: f, len: 0 });
        let changes = d.take_changes();
        assert!(x.apply(&d, changes, false).is_empty());
    }

    #[test]
    fn a_sequence_durable_before_given_again_is_a_violation() {
        let (mut d, mut x) = (disk(), NodeDurability::new(vec![false, true]));
        let f = FileId::Segment { topic: T, base: 0 };
        write(&mut d, &mut x, f, frames(1, 0, 0, &[3, 2]), true);
        x.on_crash();
        x.on_corruption(&Corruption { file: f, topic: T, block_at: 0, bits: 1, destroyed: vec![(3, 5)] });
        let first_len = frames(1, 0, 0, &[3]).len() as u64;
        run(&mut d, DiskRequest::Truncate { file: f, len: first_len });
        let changes = d.take_changes();
        assert!(x.apply(&d, changes, true).is_empty());
        // Recovery handed out 3 again instead of moving past the cut sequences.
        let p = write(&mut d, &mut x, f, frames(1, 3, 3, &[1]), true);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "sequence-identity");
        assert!(p[0].1.contains("sequences 3..4 made durable"), "{p:?}");
        // Unless acknowledged or durable at a crash, a frame rolled back may be reused.
        let u = FileId::Segment { topic: T, base: 500 };
        write(&mut d, &mut x, u, frames(1, 500, 500, &[2]), true);
        run(&mut d, DiskRequest::Truncate { file: u, len: 0 });
        let changes = d.take_changes();
        x.apply(&d, changes, false);
        assert!(write(&mut d, &mut x, u, frames(1, 500, 500, &[2]), true).is_empty());
        assert_eq!(x.check_reply(0, 501), None);
        run(&mut d, DiskRequest::Truncate { file: u, len: 0 });
        let changes = d.take_changes();
        x.apply(&d, changes, false);
        assert_eq!(write(&mut d, &mut x, u, frames(1, 500, 500, &[2]), true).len(), 1, "501 was acknowledged");
        // A new segment past the cut is fine; a strong topic may be rewritten.
        let g = FileId::Segment { topic: T, base: 1000 };
        assert!(write(&mut d, &mut x, g, frames(1, 1000, 1000, &[1]), true).is_empty());
        let s = FileId::Segment { topic: TopicIdx(1), base: 0 };
        write(&mut d, &mut x, s, frames(1, 0, 0, &[2]), true);
        x.on_crash();
        run(&mut d, DiskRequest::Truncate { file: s, len: 0 });
        let changes = d.take_changes();
        x.apply(&d, changes, true);
        assert!(write(&mut d, &mut x, s, frames(1, 0, 0, &[2]), true).is_empty());
    }

    #[test]
    fn a_gateway_ack_must_be_covered_by_durable_frames_or_skips() {
        let (mut d, mut x) = (disk(), NodeDurability::new(vec![false]));
        let f = FileId::Segment { topic: T, base: 0 };
        // Origin node 2 (index 1): its seqs 0..5 at the gateway's offsets 0..5.
        write(&mut d, &mut x, f, frames(2, 0, 0, &[3, 2]), true);
        assert_eq!(x.check_gateway_ack(1, 0, 5, "Ack"), None);
        x.on_gateway_skip(1, 0, 5, 9);
        write(&mut d, &mut x, f, frames(2, 5, 9, &[1]), false);
        assert_eq!(x.check_gateway_ack(1, 0, 9, "Ack"), None, "skipped");
        let p = x.check_gateway_ack(1, 0, 10, "Ack").expect("seq 9 is not synced");
        assert!(p.1.contains("seq 9 is on no durable frame"), "{p:?}");
        assert!(x.check_gateway_ack(2, 0, 1, "Welcome").is_some(), "another origin has nothing");
    }

    #[test]
    fn frames_a_crash_kept_are_durable() {
        let (mut d, mut x) = (disk(), NodeDurability::new(vec![false]));
        let f = FileId::Segment { topic: T, base: 0 };
        write(&mut d, &mut x, f, frames(1, 0, 0, &[3]), true);
        write(&mut d, &mut x, f, frames(1, 3, 3, &[2, 2]), false);
        let mut kept = 0;
        for seed in 0..40 {
            let mut d2 = disk();
            let mut x2 = NodeDurability::new(vec![false]);
            write(&mut d2, &mut x2, f, frames(1, 0, 0, &[3]), true);
            write(&mut d2, &mut x2, f, frames(1, 3, 3, &[2, 2]), false);
            let torn = d2.crash(&mut stream(seed, "test")).torn_files > 0;
            let changes = d2.take_changes();
            assert!(x2.apply(&d2, changes, false).is_empty());
            let len = d2.durable_bytes(f).map_or(0, <[u8]>::len);
            if len >= frames(1, 0, 0, &[3, 2]).len() && !torn {
                assert_eq!(x2.check_reply(0, 4), None, "seed {seed}: a whole frame the crash kept");
                kept += 1;
            }
        }
        assert!(kept > 0);
        assert!(x.check_reply(0, 3).is_some());
    }

    #[test]
    fn range_sets_merge() {
        let mut r = RangeSet::default();
        r.insert(5, 7);
        r.insert(0, 2);
        r.insert(2, 5);
        assert_eq!(r.first_missing(0, 7), None);
        assert_eq!(r.first_missing(0, 8), Some(7));
        r.insert(9, 12);
        assert_eq!(r.first_missing(6, 12), Some(7));
        assert_eq!(r.0.len(), 2);
    }
}

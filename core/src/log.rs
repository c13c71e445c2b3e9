//! The per-topic segmented, append-only log, as bookkeeping over disk requests.
//!
//! A topic is a sequence of segment files named by the log offset of their first record.
//! Each segment is a sequence of log frames: a [`FrameKind::LogBatch`] frame whose payload
//! is the batch's log offset (u64 LE) followed by a record batch (see `codec`).
//!
//! Invariants the rest of the core relies on:
//! - Offsets are dense: a segment's frames cover `[base, end)` without gaps, and each
//!   segment's `base` is the previous segment's `end`.
//! - Only the newest segment of a topic can have a torn tail: a new segment is opened only
//!   when a group commit begins, and group commits run one at a time, each finishing with
//!   an fsync of every file it wrote. Recovery therefore scans only the newest segment.
//! - `durable_end <= end` and everything below `durable_end` survived an fsync.

use crate::codec::{self, BatchHeader, FrameError, FrameKind};
use crate::io::FileId;
use crate::types::TopicIdx;
use std::collections::VecDeque;

/// Bytes a log frame adds around its batch payload: frame header and the base offset.
pub const LOG_FRAME_OVERHEAD: usize = codec::FRAME_HEADER_LEN + 8;

/// One segment file of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Log offset of the first record.
    pub base: u64,
    /// One past the last record appended (durable or not).
    pub end: u64,
    /// One past the last record known durable.
    pub durable_end: u64,
    /// File length the core has appended (durable or not).
    pub len: u64,
    /// HLC physical time (ms) of the newest record, for retention by age.
    pub newest_ms: u64,
}

/// The bookkeeping of one topic's log.
#[derive(Clone, Debug)]
pub struct TopicLog {
    pub topic: TopicIdx,
    segments: VecDeque<Segment>,
    bytes: u64,
    /// Offset the next segment starts at when there is none (after retention emptied it).
    next_base: u64,
}

/// Where a frame goes: the file, its position, and whether the file is new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub file: FileId,
    pub pos: u64,
    pub new_segment: bool,
}

/// The state of a topic before a group commit, to roll back to if storage fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    segments_len: usize,
    last: Option<Segment>,
    bytes: u64,
}

impl TopicLog {
    pub fn new(topic: TopicIdx) -> TopicLog {
        TopicLog { topic, segments: VecDeque::new(), bytes: 0, next_base: 0 }
    }

    /// Rebuilds the log from recovered segments (sorted by base, contiguous).
    pub fn recovered(topic: TopicIdx, segments: Vec<Segment>) -> TopicLog {
        for w in segments.windows(2) {
            assert_eq!(w[0].end, w[1].base, "recovered segments must be contiguous");
        }
        let bytes = segments.iter().map(|s| s.len).sum();
        let next_base = segments.last().map_or(0, |s| s.end);
        TopicLog { topic, segments: segments.into(), bytes, next_base }
    }

    pub fn file(&self, base: u64) -> FileId {
        FileId::Segment { topic: self.topic, base }
    }

    /// The first offset still stored.
    pub fn start_offset(&self) -> u64 {
        self.segments.front().map_or(self.next_base, |s| s.base)
    }

    /// One past the last appended record.
    pub fn end_offset(&self) -> u64 {
        self.segments.back().map_or(self.next_base, |s| s.end)
    }

    /// One past the last durable record.
    pub fn durable_offset(&self) -> u64 {
        self.segments.back().map_or(self.next_base, |s| s.durable_end)
    }

    /// Bytes held in segment files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// The segment holding `offset`, if it is still stored.
    pub fn segment_for(&self, offset: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.end <= offset);
        self.segments.get(i).filter(|s| s.base <= offset && offset < s.end)
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { segments_len: self.segments.len(), last: self.segments.back().cloned(), bytes: self.bytes }
    }

    /// Reserves room for a frame of `frame_len` bytes holding `count` records, opening a
    /// new segment when the newest has reached `segment_bytes_max`.
    pub fn place(&mut self, count: u64, frame_len: u64, newest_ms: u64, segment_bytes_max: u64) -> Placement {
        assert!(count > 0);
        let roll = match self.segments.back() {
            None => true,
            Some(s) => s.len >= segment_bytes_max,
        };
        if roll {
            let base = self.end_offset();
            assert_eq!(self.durable_offset(), base, "a segment is opened only when the log is durable");
            self.segments.push_back(Segment { base, end: base, durable_end: base, len: 0, newest_ms });
        }
        let seg = self.segments.back_mut().expect("a segment was just ensured");
        let pos = seg.len;
        seg.end += count;
        seg.len += frame_len;
        seg.newest_ms = seg.newest_ms.max(newest_ms);
        self.bytes += frame_len;
        Placement { file: FileId::Segment { topic: self.topic, base: seg.base }, pos, new_segment: roll }
    }

    /// Everything appended is now durable.
    pub fn mark_durable(&mut self) {
        if let Some(s) = self.segments.back_mut() {
            s.durable_end = s.end;
        }
        for s in &self.segments {
            debug_assert_eq!(s.durable_end, s.end, "older segments are always durable");
        }
    }

    /// Undoes every `place` since `cp`. Returns the files to cut back: `(file, len)`, where
    /// `len == None` means the file was created since and must be deleted.
    pub fn rollback(&mut self, cp: &Checkpoint) -> Vec<(FileId, Option<u64>)> {
        let mut cuts = Vec::new();
        while self.segments.len() > cp.segments_len {
            let s = self.segments.pop_back().expect("len > checkpoint len");
            cuts.push((self.file(s.base), None));
        }
        if let (Some(now), Some(before)) = (self.segments.back_mut(), cp.last.as_ref()) {
            assert_eq!(now.base, before.base);
            if now.len != before.len {
                cuts.push((FileId::Segment { topic: self.topic, base: before.base }, Some(before.len)));
            }
            *now = before.clone();
        }
        self.bytes = cp.bytes;
        cuts
    }

    /// Removes the oldest segment (retention) and returns it.
    pub fn pop_oldest(&mut self) -> Option<Segment> {
        if self.segments.len() <= 1 {
            // The newest segment is where appends go; it is never deleted.
            return None;
        }
        let s = self.segments.pop_front()?;
        self.bytes -= s.len;
        Some(s)
    }

    pub fn oldest(&self) -> Option<&Segment> {
        self.segments.front()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// Appends a log frame holding `batch` (an encoded record batch) at log offset `base`.
pub fn encode_log_frame(base: u64, batch: &[u8], out: &mut Vec<u8>) {
    let start = codec::begin_frame(FrameKind::LogBatch, out);
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(batch);
    codec::finish_frame(start, out);
}

/// A log frame found by [`scan`].
#[derive(Clone, Copy, Debug)]
pub struct LogFrame<'a> {
    /// Position of the frame in the file.
    pub pos: u64,
    /// Total bytes of the frame.
    pub len: u64,
    pub base: u64,
    pub header: BatchHeader,
    pub batch: &'a [u8],
}

impl LogFrame<'_> {
    pub fn end(&self) -> u64 {
        self.base + u64::from(self.header.count)
    }
}

/// Why scanning stopped before the end of the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// The bytes end inside a frame: read on from `pos` (or, at the end of the file, a torn tail).
    Incomplete { pos: u64, needed: usize },
    /// The frame at `pos` is not valid.
    Bad { pos: u64, error: FrameError },
    /// The frame at `pos` has a valid checksum but is not the log frame that belongs there
    /// (another kind, an undecodable batch header, or an offset out of sequence).
    Misplaced { pos: u64 },
}

/// Decodes the log frames in `buf`, which starts at file position `pos` and whose first
/// frame must start at log offset `expect_base`. Stops at the end, at an incomplete frame,
/// or at the first invalid frame (bad checksum, wrong kind, or an offset out of sequence).
pub fn scan<'a>(buf: &'a [u8], pos: u64, expect_base: u64, mut f: impl FnMut(LogFrame<'a>)) -> Option<ScanStop> {
    let mut at = 0usize;
    let mut next_base = expect_base;
    while at < buf.len() {
        let here = pos + at as u64;
        let (frame, used) = match codec::decode_frame(&buf[at..]) {
            Ok(x) => x,
            Err(FrameError::Incomplete { needed, .. }) => {
                return Some(ScanStop::Incomplete { pos: here, needed });
            }
            Err(error) => return Some(ScanStop::Bad { pos: here, error }),
        };
        let parsed = (frame.kind == FrameKind::LogBatch && frame.payload.len() >= 8)
            .then(|| {
                let (b, batch) = frame.payload.split_at(8);
                let base = u64::from_le_bytes(b.try_into().expect("8 bytes"));
                BatchHeader::decode(batch).ok().map(|h| (base, h, batch))
            })
            .flatten();
        let Some((base, header, batch)) = parsed.filter(|(base, _, _)| *base == next_base) else {
            // A frame whose checksum holds but whose content is out of place: written by
            // something else or a bug. Treated as the end of the valid log.
            return Some(ScanStop::Misplaced { pos: here });
        };
        next_base = base + u64::from(header.count);
        f(LogFrame { pos: here, len: used as u64, base, header, batch });
        at += used;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_batch, Compression, RecordRef};
    use crate::hlc::Hlc;
    use crate::types::NodeId;

    fn frame(base: u64, n: u32) -> Vec<u8> {
        let vals: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 10]).collect();
        let recs: Vec<RecordRef<'_>> =
            vals.iter().map(|v| RecordRef { hlc: Hlc::new(1000, 0), key: None, value: v }).collect();
        let mut batch = Vec::new();
        encode_batch(NodeId(1), base, &recs, Compression::None, &mut batch);
        let mut out = Vec::new();
        encode_log_frame(base, &batch, &mut out);
        out
    }

    #[test]
    fn scan_reads_contiguous_frames_and_stops_at_torn_tail() {
        let mut buf = frame(0, 3);
        buf.extend(frame(3, 2));
        let full = buf.len();
        buf.extend(&frame(5, 4)[..7]);
        let mut seen = Vec::new();
        let stop = scan(&buf, 0, 0, |f| seen.push((f.base, f.end())));
        assert_eq!(seen, vec![(0, 3), (3, 5)]);
        assert_eq!(stop, Some(ScanStop::Incomplete { pos: full as u64, needed: codec::FRAME_HEADER_LEN }));
    }

    #[test]
    fn scan_rejects_out_of_sequence_offsets() {
        let mut buf = frame(0, 3);
        buf.extend(frame(4, 1));
        let mut n = 0;
        let stop = scan(&buf, 0, 0, |_| n += 1);
        assert_eq!(n, 1);
        assert_eq!(stop, Some(ScanStop::Misplaced { pos: frame(0, 3).len() as u64 }));
    }

    #[test]
    fn scan_stops_at_flipped_bit() {
        let mut buf = frame(0, 3);
        let second = buf.len();
        buf.extend(frame(3, 2));
        buf[second + 20] ^= 0x10;
        let mut n = 0;
        let stop = scan(&buf, 0, 0, |_| n += 1);
        assert_eq!(n, 1);
        assert!(matches!(stop, Some(ScanStop::Bad { pos, .. }) if pos == second as u64));
    }

    #[test]
    fn place_rolls_segments_and_rollback_restores() {
        let mut log = TopicLog::new(TopicIdx(0));
        let p = log.place(10, 100, 1, 150);
        assert!(p.new_segment);
        log.mark_durable();
        let cp = log.checkpoint();
        let p2 = log.place(5, 100, 2, 150);
        assert!(!p2.new_segment);
        assert_eq!(p2.pos, 100);
        log.mark_durable();
        let cp2 = log.checkpoint();
        let p3 = log.place(5, 100, 3, 150);
        assert!(p3.new_segment);
        assert_eq!(log.end_offset(), 20);
        let cuts = log.rollback(&cp2);
        assert_eq!(cuts, vec![(p3.file, None)]);
        assert_eq!(log.end_offset(), 15);
        let cuts = log.rollback(&cp);
        assert_eq!(cuts, vec![(p.file, Some(100))]);
        assert_eq!(log.end_offset(), 10);
        assert_eq!(log.bytes(), 100);
    }

    #[test]
    fn segment_for_finds_by_offset() {
        let mut log = TopicLog::new(TopicIdx(0));
        log.place(10, 100, 1, 50);
        log.mark_durable();
        log.place(10, 100, 1, 50);
        log.mark_durable();
        assert_eq!(log.segment_for(0).map(|s| s.base), Some(0));
        assert_eq!(log.segment_for(9).map(|s| s.base), Some(0));
        assert_eq!(log.segment_for(10).map(|s| s.base), Some(10));
        assert_eq!(log.segment_for(20), None);
        assert_eq!(log.pop_oldest().map(|s| s.base), Some(0));
        assert_eq!(log.segment_for(5), None);
        assert_eq!(log.start_offset(), 10);
    }
}

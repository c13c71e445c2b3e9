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
//!   an fsync of every file it wrote; or by [`TopicLog::roll`], with the log durable and
//!   no commit running. Recovery therefore scans only the newest segment.
//! - A topic always keeps a segment file: its name is where the sequence goes on after a
//!   restart. The newest segment is never deleted; to free one the gateway holds wholly,
//!   the log is rolled to an empty successor first, and the old segment goes only once
//!   the successor's file is durable.
//! - `durable_end <= end` and everything below `durable_end` survived an fsync.
//! - A segment's frames may end before its `end`: recovery that cut a tail moves the
//!   sequence on past anything the cut bytes could have held ([`sequences_cut_max`]) and
//!   seals the segment, so the next append opens a new one. The range between the last
//!   frame and `end` is *unwritten*: it holds nothing, and sync skips it.
//! - A frame inside a segment may fail its checksum (storage corrupted it after it was
//!   durable). Its offsets stay in the segment, unreadable; [`resync`] finds the next good
//!   frame so readers can skip exactly the destroyed range.

use crate::codec::{self, BatchHeader, FrameError, FrameKind};
use crate::io::FileId;
use crate::types::{Instant, TopicIdx};
use std::collections::VecDeque;

/// Bytes a log frame adds around its batch payload: frame header and the base offset.
pub const LOG_FRAME_OVERHEAD: usize = codec::FRAME_HEADER_LEN + 8;
/// The smallest log frame: overhead and a batch header with an empty records section.
pub const LOG_FRAME_MIN: usize = LOG_FRAME_OVERHEAD + codec::BATCH_HEADER_LEN;

/// The most records `cut_bytes` of log frames can hold: each frame is at least
/// [`LOG_FRAME_MIN`] bytes and holds at most [`codec::MAX_BATCH_RECORDS`] records. Recovery
/// cannot tell a torn write (never acknowledged) from storage that destroyed durable frames
/// (acknowledged, perhaps already at the gateway), so it skips this many sequences: a
/// sequence the gateway may hold is then never given to a new record.
pub fn sequences_cut_max(cut_bytes: u64) -> u64 {
    cut_bytes / LOG_FRAME_MIN as u64 * codec::MAX_BATCH_RECORDS as u64
}

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
    /// Offsets at the end of `base..end` that recovery moved past after cutting a tail:
    /// they hold no records (known only until the next restart, which does not rescan
    /// older segments).
    pub unwritten: u64,
    /// Records of a `compact` topic in this segment that a later record of the same key
    /// has superseded (known only for records written since the node started).
    pub superseded: u64,
}

impl Segment {
    /// An empty segment starting at `base`, as a new file begins.
    pub fn empty(base: u64, newest_ms: u64) -> Segment {
        Segment { base, end: base, durable_end: base, len: 0, newest_ms, unwritten: 0, superseded: 0 }
    }

    /// Records that may hold a key's newest value (or have no key): every written record
    /// not known to be superseded.
    pub fn live_records(&self) -> u64 {
        (self.end - self.base - self.unwritten).saturating_sub(self.superseded)
    }
}

/// Where a frame begins: its first record's log offset and its position in the file of
/// the segment holding that offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMark {
    pub offset: u64,
    pub pos: u64,
}

/// Heap bytes of one frame mark.
pub const FRAME_MARK_BYTES: u64 = std::mem::size_of::<FrameMark>() as u64;

/// How far apart, at most, in bytes of a segment file, the log marks where frames begin:
/// one read chunk, or a sixteenth of a segment if that is more.
pub fn frame_mark_spacing(read_chunk_bytes: u32, segment_bytes_max: u64) -> u64 {
    u64::from(read_chunk_bytes).max(segment_bytes_max / 16).max(1)
}

/// A segment's marks start this close together (or at the largest spacing if that is
/// less), so that a small segment has marks too (site-power-cuts' tills restarted in
/// segments of tens of kilobytes, below one read chunk).
pub const FRAME_MARK_SPACING_MIN: u64 = 4 << 10;

/// When a segment has more marks than twice this, every other one goes and its spacing
/// doubles, until it reaches `frame_mark_spacing`; a segment holds 33 marks at most.
pub const FRAME_MARKS_PER_SEGMENT: usize = 16;

/// Frame marks one topic's log keeps at most: the oldest go first, so a sender resuming
/// far back in a long log scans from its segment's first frame, as without marks.
pub const FRAME_MARKS_PER_TOPIC_MAX: usize = 1024;

/// Frame marks a node's logs hold at most.
pub fn frame_marks_max(segments_max: u64, topics: u64) -> u64 {
    (segments_max * (2 * FRAME_MARKS_PER_SEGMENT as u64 + 1)).min(topics * FRAME_MARKS_PER_TOPIC_MAX as u64)
}

/// Marks frame `m` of the segment starting at `base` (the newest `marks` names) if it
/// begins `spacing` or more past the segment's last mark, within `FRAME_MARKS_PER_TOPIC_MAX`;
/// thins the segment's marks out when they pass twice `FRAME_MARKS_PER_SEGMENT` (every
/// other one goes, `spacing` doubles, up to `max`). The appends and recovery's scans.
pub fn mark_frame(marks: &mut VecDeque<FrameMark>, base: u64, m: FrameMark, spacing: &mut u64, max: u64) {
    *spacing = (*spacing).min(max);
    let last = marks.back().filter(|l| l.offset >= base).map_or(0, |l| l.pos);
    if m.pos < last + *spacing {
        return;
    }
    if marks.len() >= FRAME_MARKS_PER_TOPIC_MAX {
        marks.pop_front();
    }
    marks.push_back(m);
    let first = marks.partition_point(|x| x.offset < base);
    if marks.len() - first > 2 * FRAME_MARKS_PER_SEGMENT && *spacing < max {
        let kept: Vec<FrameMark> = marks.drain(first..).skip(1).step_by(2).collect();
        marks.extend(kept);
        *spacing = (*spacing * 2).min(max);
    }
}

/// The bookkeeping of one topic's log.
#[derive(Clone, Debug)]
pub struct TopicLog {
    pub topic: TopicIdx,
    segments: VecDeque<Segment>,
    /// Where frames begin in the segments written since the node started or scanned by
    /// its recovery, 33 per segment at most (`mark_frame`), oldest first: a reader that
    /// must start at an offset inside a segment (a sender resuming at its peer's mark, a
    /// new sender) starts at the nearest mark below it instead of scanning the file from
    /// its first frame (`TopicLog::frame_at_or_below`).
    marks: VecDeque<FrameMark>,
    /// The spacing of the newest segment's marks (`mark_frame`).
    newest_spacing: u64,
    bytes: u64,
    /// Offset the next segment starts at when there is none (after retention emptied it).
    next_base: u64,
    /// The next append opens a new segment: the newest ends in an unwritten range.
    sealed: bool,
    /// When an application last read this topic (a fetch), for `lru` eviction.
    last_read: Instant,
    /// Offsets below this were evicted before the gateway acknowledged them (since the
    /// node started), so sync names the hole `Evicted` rather than `Deleted`.
    evicted_unsynced_end: u64,
    /// A [`TopicLog::roll`] is in flight: its empty segment's file is not yet known durable,
    /// so the segment before it stays too. Holds whether the log was sealed before.
    rolling: Option<bool>,
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
    last: Option<Segment>,
    sealed: bool,
}

impl TopicLog {
    pub fn new(topic: TopicIdx) -> TopicLog {
        TopicLog {
            topic,
            segments: VecDeque::new(),
            marks: VecDeque::new(),
            newest_spacing: FRAME_MARK_SPACING_MIN,
            bytes: 0,
            next_base: 0,
            sealed: false,
            last_read: Instant(0),
            evicted_unsynced_end: 0,
            rolling: None,
        }
    }

    /// Rebuilds the log from recovered segments (sorted by base, contiguous) and the frame
    /// marks their scans found (those past a cut tail are dropped).
    pub fn recovered(topic: TopicIdx, segments: Vec<Segment>, marks: VecDeque<FrameMark>) -> TopicLog {
        let mut marks = Vec::from(marks);
        for w in segments.windows(2) {
            assert_eq!(w[0].end, w[1].base, "recovered segments must be contiguous");
        }
        let bytes = segments.iter().map(|s| s.len).sum();
        let next_base = segments.last().map_or(0, |s| s.end);
        marks.sort_by_key(|m| m.offset);
        marks.retain(|m| {
            let i = segments.partition_point(|s| s.end <= m.offset);
            segments.get(i).is_some_and(|s| s.base <= m.offset && m.pos < s.len)
        });
        marks.drain(..marks.len().saturating_sub(FRAME_MARKS_PER_TOPIC_MAX));
        TopicLog {
            topic,
            segments: segments.into(),
            marks: marks.into(),
            newest_spacing: FRAME_MARK_SPACING_MIN,
            bytes,
            next_base,
            sealed: false,
            last_read: Instant(0),
            evicted_unsynced_end: 0,
            rolling: None,
        }
    }

    /// An application read this topic at `now`.
    pub fn note_read(&mut self, now: Instant) {
        self.last_read = self.last_read.max(now);
    }

    pub fn last_read(&self) -> Instant {
        self.last_read
    }

    /// A record at `offset` was superseded by a newer record of its key (compaction).
    pub fn note_superseded(&mut self, offset: u64) {
        let i = self.segments.partition_point(|s| s.end <= offset);
        if let Some(s) = self.segments.get_mut(i).filter(|s| s.base <= offset) {
            s.superseded += 1;
            debug_assert!(s.superseded <= s.end - s.base - s.unwritten, "more superseded records than written");
        }
    }

    /// Offsets below this were evicted unsynced since the node started.
    pub fn evicted_unsynced_end(&self) -> u64 {
        self.evicted_unsynced_end
    }

    /// Heap bytes of the segment list and the frame marks.
    pub fn heap_bytes(&self) -> u64 {
        (self.segments.capacity() * std::mem::size_of::<Segment>()) as u64
            + self.marks.capacity() as u64 * FRAME_MARK_BYTES
    }

    /// The frame known to begin nearest below or at `offset` in the segment holding it,
    /// other than the segment's first (which begins at position 0).
    pub fn frame_at_or_below(&self, offset: u64) -> Option<FrameMark> {
        let seg = self.segment_for(offset)?;
        let i = self.marks.partition_point(|m| m.offset <= offset);
        i.checked_sub(1).map(|i| self.marks[i]).filter(|m| m.offset >= seg.base)
    }

    /// Marks of frames no longer stored (below `start`) or no longer written (from `end`
    /// on) go; the container gives back what it held beyond twice what is left.
    fn forget_marks(&mut self) {
        let (start, end) = (self.start_offset(), self.end_offset());
        while self.marks.front().is_some_and(|m| m.offset < start) {
            self.marks.pop_front();
        }
        while self.marks.back().is_some_and(|m| m.offset >= end) {
            self.marks.pop_back();
        }
        if self.marks.capacity() > 2 * self.marks.len() + 16 {
            self.marks.shrink_to(2 * self.marks.len());
        }
    }

    /// The newest segment ends in an unwritten range (recovery cut its tail and moved the
    /// sequence on, and could not create the successor segment): the next append must
    /// open a new segment at `end_offset`.
    pub fn seal_newest(&mut self) {
        self.sealed = true;
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

    /// Offsets from `from` on that may hold records: everything appended, less the
    /// unwritten ranges this log knows of.
    pub fn records_from(&self, from: u64) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.end > from)
            .map(|s| (s.end - s.unwritten).saturating_sub(from.max(s.base)))
            .sum()
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
        Checkpoint { last: self.segments.back().cloned(), sealed: self.sealed }
    }

    /// Reserves room for a frame of `frame_len` bytes holding `count` records, opening a
    /// new segment when the newest has reached `segment_bytes_max`.
    /// `spacing`: how far apart frames are marked at most (`frame_mark_spacing`).
    pub fn place(
        &mut self,
        count: u64,
        frame_len: u64,
        newest_ms: u64,
        (segment_bytes_max, spacing): (u64, u64),
    ) -> Placement {
        assert!(count > 0);
        assert!(self.rolling.is_none(), "no commit while a roll is in flight");
        let roll = match self.segments.back() {
            None => true,
            Some(s) => self.sealed || s.len >= segment_bytes_max,
        };
        if roll {
            self.sealed = false;
            self.newest_spacing = FRAME_MARK_SPACING_MIN;
            let base = self.end_offset();
            assert_eq!(self.durable_offset(), base, "a segment is opened only when the log is durable");
            self.segments.push_back(Segment::empty(base, newest_ms));
        }
        let seg = self.segments.back_mut().expect("a segment was just ensured");
        let pos = seg.len;
        let gap = &mut self.newest_spacing;
        mark_frame(&mut self.marks, seg.base, FrameMark { offset: seg.end, pos }, gap, spacing);
        seg.end += count;
        seg.len += frame_len;
        seg.newest_ms = seg.newest_ms.max(newest_ms);
        self.bytes += frame_len;
        Placement { file: FileId::Segment { topic: self.topic, base: seg.base }, pos, new_segment: roll }
    }

    /// Moves the end of a durable log to `to` without records: a site member that
    /// installed a snapshot does not hold the cluster's records below it (the gateway
    /// does). The range is unwritten, as after a cut tail, and the next append opens a new
    /// segment.
    pub fn skip_to(&mut self, to: u64) {
        let end = self.end_offset();
        assert!(to > end, "skip_to({to}) at end {end}");
        assert_eq!(self.durable_offset(), end, "only a durable log skips");
        match self.segments.back_mut() {
            Some(s) => {
                s.unwritten += to - end;
                s.end = to;
                s.durable_end = to;
                self.sealed = true;
            }
            None => self.next_base = to,
        }
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
    ///
    /// Older segments may have gone since: retention and eviction delete from the front
    /// while a commit is in flight, the checkpoint's newest segment included once the
    /// commit opened a newer one (swarm seed 27: a sealed segment, acknowledged, deleted
    /// while the commit that opened the next one failed on a full disk). The log is then
    /// left empty, and the next append opens a segment where the deleted one began.
    pub fn rollback(&mut self, cp: &Checkpoint) -> Vec<(FileId, Option<u64>)> {
        let mut cuts = Vec::new();
        let opened_since = |s: &Segment| cp.last.as_ref().is_none_or(|last| s.base > last.base);
        let mut first_opened = None;
        while self.segments.back().is_some_and(opened_since) {
            let s = self.segments.pop_back().expect("checked");
            first_opened = Some(s.base);
            cuts.push((self.file(s.base), None));
        }
        match (self.segments.back_mut(), cp.last.as_ref()) {
            (Some(now), Some(before)) => {
                assert_eq!(now.base, before.base, "segments are deleted from the front only");
                if now.len != before.len {
                    cuts.push((FileId::Segment { topic: self.topic, base: before.base }, Some(before.len)));
                }
                *now = before.clone();
            }
            (None, _) => {
                if let Some(base) = first_opened {
                    self.next_base = base;
                }
            }
            (Some(_), None) => unreachable!("a segment older than an empty log"),
        }
        self.bytes = self.segments.iter().map(|s| s.len).sum();
        self.sealed = cp.sealed;
        self.forget_marks();
        cuts
    }

    /// Opens an empty segment at the end of the log, so that the segment before it (no
    /// longer the newest) may be freed: a full device cannot free the only segment of a
    /// topic otherwise, even once the gateway holds all of it. The log must be durable and
    /// no commit running. Returns the new segment's file, which the caller creates (an
    /// empty append) and makes durable (a sync); until [`TopicLog::roll_done`], the old
    /// segment is kept as if it were the newest.
    pub fn roll(&mut self, newest_ms: u64) -> FileId {
        assert!(self.rolling.is_none(), "one roll at a time");
        let base = self.end_offset();
        assert_eq!(self.durable_offset(), base, "a segment is opened only when the log is durable");
        self.rolling = Some(self.sealed);
        self.sealed = false;
        self.segments.push_back(Segment::empty(base, newest_ms));
        self.file(base)
    }

    /// The roll's file is durable (`created`), or creating it failed: then the empty
    /// segment goes again, and the caller deletes whatever storage made of its file.
    pub fn roll_done(&mut self, created: bool) {
        let sealed = self.rolling.take().expect("a roll in flight");
        if !created {
            let s = self.segments.pop_back().expect("the rolled segment");
            assert!(s.len == 0 && s.base == s.end, "nothing is written to a segment being rolled");
            self.sealed = sealed;
        }
    }

    pub fn is_rolling(&self) -> bool {
        self.rolling.is_some()
    }

    /// Segments that may be removed from the front: all but the newest, and while a roll
    /// is in flight, all but the two newest.
    pub fn removable(&self) -> usize {
        self.segments.len().saturating_sub(1 + usize::from(self.rolling.is_some()))
    }

    /// Removes the oldest segment although records in it from `unsynced_from` on were
    /// never acknowledged (eviction under a lossy policy), and returns it.
    pub fn evict_oldest(&mut self, unsynced_from: u64) -> Option<Segment> {
        let s = self.pop_oldest()?;
        if unsynced_from < s.end {
            self.evicted_unsynced_end = self.evicted_unsynced_end.max(s.end);
        }
        Some(s)
    }

    /// Removes the oldest segment (retention) and returns it.
    pub fn pop_oldest(&mut self) -> Option<Segment> {
        if self.removable() == 0 {
            // The newest segment is where appends go, and its file says where the sequence
            // goes on after a restart; it is never deleted.
            return None;
        }
        let s = self.segments.pop_front()?;
        self.bytes -= s.len;
        self.forget_marks();
        Some(s)
    }

    pub fn oldest(&self) -> Option<&Segment> {
        self.segments.front()
    }

    /// The segment the next append goes to, unless it rolls.
    pub fn newest(&self) -> Option<&Segment> {
        self.segments.back()
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

impl ScanStop {
    /// Where a damaged frame starts, if this stop is one: a bad checksum, a misplaced
    /// frame, or a frame whose length runs past `file_len` (no frame written there does,
    /// so its length field was hit; swarm scenario worn-sd-card seed 255). `None` for a
    /// frame that only needs a longer read.
    pub fn damaged_at(&self, file_len: u64) -> Option<u64> {
        match *self {
            ScanStop::Bad { pos, .. } | ScanStop::Misplaced { pos } => Some(pos),
            ScanStop::Incomplete { pos, needed } => (pos + needed as u64 > file_len).then_some(pos),
        }
    }
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
        let Some((base, header, batch)) = parse_log_frame(&frame).filter(|(base, _, _)| *base == next_base) else {
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

/// The log offset, batch header and batch of a log frame, if it is one.
fn parse_log_frame<'a>(frame: &codec::Frame<'a>) -> Option<(u64, BatchHeader, &'a [u8])> {
    if frame.kind != FrameKind::LogBatch || frame.payload.len() < 8 {
        return None;
    }
    let (b, batch) = frame.payload.split_at(8);
    let base = u64::from_le_bytes(b.try_into().expect("8 bytes"));
    BatchHeader::decode(batch).ok().map(|h| (base, h, batch))
}

/// What [`resync`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resync {
    /// A valid log frame starts at file position `pos`, at log offset `base`.
    Found { pos: u64, base: u64 },
    /// Nothing conclusive in these bytes: search on by reading from `pos`, at least
    /// `min_len` bytes (a candidate frame starts there and is longer than what was read).
    ReadFrom { pos: u64, min_len: usize },
    /// No valid frame up to the end of the file.
    NotFound,
}

/// Searches `buf` (file position `pos`) for the first valid log frame whose offset is
/// above `after`: the way past a frame that failed its checksum. A candidate must carry
/// the frame magic, a known header, a matching CRC32C, a decodable batch header, and
/// must end within `file_len`. `eof`: `buf` reaches the end of the file's bytes.
///
/// A false match needs random bytes to pass a CRC32C (odds 2^-32 per candidate) and to
/// carry a plausible offset, so a resync can skip too little only with that probability.
pub fn resync(buf: &[u8], pos: u64, file_len: u64, eof: bool, after: u64) -> Resync {
    let magic = codec::FRAME_MAGIC.to_le_bytes();
    let eof = eof || pos + buf.len() as u64 >= file_len;
    let limit = if eof { pos + buf.len() as u64 } else { file_len };
    for i in 0..buf.len() {
        let rest = &buf[i..];
        if rest.len() < codec::FRAME_HEADER_LEN {
            // A frame header could start here but is not all read.
            return if eof { Resync::NotFound } else { Resync::ReadFrom { pos: pos + i as u64, min_len: 0 } };
        }
        if rest[..2] != magic || rest[3] != FrameKind::LogBatch as u8 {
            continue;
        }
        match codec::decode_frame(rest) {
            Ok((frame, _)) => {
                if let Some((base, _, _)) = parse_log_frame(&frame).filter(|(base, _, _)| *base > after) {
                    return Resync::Found { pos: pos + i as u64, base };
                }
            }
            Err(FrameError::Incomplete { needed, .. }) if pos + i as u64 + needed as u64 <= limit => {
                return Resync::ReadFrom { pos: pos + i as u64, min_len: needed };
            }
            Err(_) => {}
        }
    }
    if eof {
        Resync::NotFound
    } else {
        Resync::ReadFrom { pos: pos + buf.len() as u64, min_len: 0 }
    }
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
    fn resync_finds_the_frame_after_a_corrupt_one() {
        let a = frame(0, 3);
        let b = frame(3, 2);
        let c = frame(5, 4);
        let mut buf = [a.clone(), b.clone(), c.clone()].concat();
        let (pb, pc) = (a.len(), a.len() + b.len());
        // Destroy b's length field and payload: it no longer says where c starts.
        for x in &mut buf[pb + 4..pb + 30] {
            *x ^= 0x5A;
        }
        let len = buf.len() as u64;
        let stop = scan(&buf, 0, 0, |_| {});
        assert!(matches!(stop, Some(ScanStop::Bad { pos, .. }) if pos == pb as u64));
        let found = resync(&buf[pb + 1..], pb as u64 + 1, len, true, 3);
        assert_eq!(found, Resync::Found { pos: pc as u64, base: 5 });
        // From c on, the log reads normally again.
        let mut seen = Vec::new();
        assert_eq!(scan(&buf[pc..], pc as u64, 5, |f| seen.push(f.base)), None);
        assert_eq!(seen, vec![5]);
        // Corruption in the last frame: nothing follows.
        assert_eq!(resync(&buf[pc + 1..], pc as u64 + 1, len, true, 5), Resync::NotFound);
    }

    #[test]
    fn resync_asks_for_more_when_a_candidate_is_cut_off() {
        let a = frame(0, 3);
        let b = frame(3, 40);
        let buf = [a.clone(), b.clone()].concat();
        let len = buf.len() as u64;
        // Only part of b was read: the search must read b whole before deciding.
        let part = &buf[1..a.len() + 20];
        assert_eq!(resync(part, 1, len, false, 0), Resync::ReadFrom { pos: a.len() as u64, min_len: b.len() });
        // Nothing that looks like a frame: read on from where a header could still start.
        let zeros = vec![0u8; 100];
        // (The last 11 bytes could begin a 12-byte header.)
        assert_eq!(resync(&zeros, 1000, 5000, false, 0), Resync::ReadFrom { pos: 1089, min_len: 0 });
        assert_eq!(resync(&zeros, 1000, 1100, false, 0), Resync::NotFound);
        // A frame at or below `after` is not the way forward.
        assert_eq!(resync(&buf, 0, len, true, 3), Resync::NotFound);
    }

    #[test]
    fn a_roll_frees_the_only_segment_once_its_successor_is_created() {
        let seg = Segment { base: 0, end: 10, durable_end: 10, len: 500, newest_ms: 0, unwritten: 0, superseded: 0 };
        let mut log = TopicLog::recovered(TopicIdx(3), vec![seg.clone()], VecDeque::new());
        assert_eq!((log.removable(), log.pop_oldest()), (0, None), "the only segment stays");
        let file = log.roll(7);
        assert_eq!(file, FileId::Segment { topic: TopicIdx(3), base: 10 });
        assert_eq!((log.segment_count(), log.removable(), log.bytes()), (2, 0, 500));
        assert_eq!(log.pop_oldest(), None, "not before the successor's file is durable");
        log.roll_done(true);
        assert_eq!(log.pop_oldest(), Some(seg));
        assert_eq!((log.start_offset(), log.end_offset(), log.bytes()), (10, 10, 0));
        let p = log.place(2, 60, 8, (1 << 30, 1 << 20));
        assert_eq!((p.file, p.pos, p.new_segment), (file, 0, false), "appends go on in the rolled segment");
    }

    #[test]
    fn a_failed_roll_leaves_the_log_as_it_was() {
        let seg = Segment { base: 0, end: 6, durable_end: 6, len: 500, newest_ms: 0, unwritten: 0, superseded: 0 };
        let mut log = TopicLog::recovered(TopicIdx(0), vec![seg], VecDeque::new());
        log.skip_to(10);
        log.roll(1);
        log.roll_done(false);
        assert_eq!((log.segment_count(), log.removable(), log.end_offset()), (1, 0, 10));
        assert!(log.place(1, 60, 1, (1 << 30, 1 << 20)).new_segment, "still sealed: the next append opens a segment");
    }

    #[test]
    fn frames_are_marked_one_spacing_apart_and_forgotten_with_their_segment_or_commit() {
        let mut log = TopicLog::new(TopicIdx(0));
        // Frames of 100 bytes holding 10 records, marked every 250 bytes, segments of 1,000.
        for _ in 0..25 {
            log.place(10, 100, 1, (1_000, 250));
            log.mark_durable();
        }
        let seg = |log: &TopicLog, o: u64| log.segment_for(o).map(|s| s.base);
        assert_eq!((seg(&log, 0), seg(&log, 100), seg(&log, 245)), (Some(0), Some(100), Some(200)));
        // The first segment's frames at positions 300 (offset 30) and 600 (offset 60) and
        // 900 (offset 90) are marked; its first frame needs none.
        let at = |log: &TopicLog, o: u64| log.frame_at_or_below(o).map(|m| (m.offset, m.pos));
        assert_eq!(at(&log, 0), None);
        assert_eq!(at(&log, 29), None);
        assert_eq!(at(&log, 30), Some((30, 300)));
        assert_eq!(at(&log, 59), Some((30, 300)));
        assert_eq!(at(&log, 99), Some((90, 900)));
        // A mark of an older segment never answers for a newer one.
        assert_eq!(at(&log, 100), None);
        assert_eq!(at(&log, 135), Some((130, 300)));
        // A failed commit forgets the marks of what it placed.
        let cp = log.checkpoint();
        log.place(10, 100, 1, (1_000, 250));
        log.place(10, 100, 1, (1_000, 250));
        assert_eq!(at(&log, 265), Some((260, 600)));
        log.rollback(&cp);
        assert_eq!(at(&log, 249), Some((230, 300)));
        assert!(log.marks.iter().all(|m| m.offset < log.end_offset()));
        // Retention forgets the marks of the segment it deletes.
        let before = log.marks.len();
        log.pop_oldest().expect("removable");
        assert_eq!(log.marks.len(), before - 3);
        assert_eq!(at(&log, 135), Some((130, 300)));
        // Recovery keeps the marks its scans found within what it kept of each segment.
        let segs: Vec<Segment> = log.segments().cloned().collect();
        let mut cut = segs.clone();
        cut.last_mut().expect("a segment").len = 250;
        let marks: VecDeque<FrameMark> = log.marks.iter().rev().copied().collect();
        let again = TopicLog::recovered(TopicIdx(0), cut, marks);
        assert_eq!(at(&again, 135), Some((130, 300)));
        assert_eq!(at(&again, 235), None, "the mark at 300 is past the cut at 250");
        // A long log keeps its newest marks only.
        let mut long = TopicLog::new(TopicIdx(0));
        for _ in 0..3 * FRAME_MARKS_PER_TOPIC_MAX {
            long.place(1, 100, 1, (1 << 40, 100));
        }
        assert_eq!(long.marks.len(), FRAME_MARKS_PER_TOPIC_MAX);
        assert_eq!(at(&long, 2 * FRAME_MARKS_PER_TOPIC_MAX as u64 - 1), None, "forgotten: scan from the first frame");
        let newest = 3 * FRAME_MARKS_PER_TOPIC_MAX as u64 - 1;
        assert_eq!(at(&long, newest), Some((newest, 100 * newest)));
        // A segment's marks start 4 KiB apart and thin out as it grows, up to the spacing.
        let mut big = TopicLog::new(TopicIdx(0));
        for _ in 0..4_000 {
            big.place(1, 1_000, 1, (1 << 40, 256 << 10));
        }
        assert!(big.marks.len() <= 2 * FRAME_MARKS_PER_SEGMENT + 1, "{}", big.marks.len());
        let spacing = big.newest_spacing;
        assert!((FRAME_MARK_SPACING_MIN..=256 << 10).contains(&spacing) && spacing > 64 << 10, "{spacing}");
        let (last, m) = (3_999, big.frame_at_or_below(3_999).expect("marked"));
        assert!(last * 1_000 - m.pos < 2 * spacing, "the last mark is within twice the spacing: {m:?}");
        assert!(big.marks.iter().zip(big.marks.iter().skip(1)).all(|(a, b)| a.offset < b.offset && a.pos < b.pos));
        let mut small = TopicLog::new(TopicIdx(0));
        for _ in 0..40 {
            small.place(1, 1_000, 1, (1 << 40, 256 << 10));
        }
        assert_eq!(small.frame_at_or_below(39).map(|m| m.offset), Some(35), "a 40 KB segment: a mark every 5 frames");
    }

    #[test]
    fn a_sealed_log_opens_a_new_segment_and_rollback_reseals() {
        let mut log = TopicLog::recovered(
            TopicIdx(0),
            vec![Segment { base: 0, end: 10, durable_end: 10, len: 100, newest_ms: 0, unwritten: 0, superseded: 0 }],
            VecDeque::new(),
        );
        log.skip_to(1 << 20);
        let cp = log.checkpoint();
        let p = log.place(1, 60, 1, (1 << 30, 1 << 20));
        assert!(p.new_segment);
        assert_eq!(p.file, FileId::Segment { topic: TopicIdx(0), base: 1 << 20 });
        log.rollback(&cp);
        assert_eq!((log.records_from(0), log.end_offset()), (10, 1 << 20));
        assert!(log.place(1, 60, 1, (1 << 30, 1 << 20)).new_segment, "a failed commit leaves the log sealed");
        log.mark_durable();
        assert!(!log.place(1, 60, 1, (1 << 30, 1 << 20)).new_segment);
    }

    /// Swarm seed 27: recovery skipped past a cut tail, a commit opened the next segment, retention
    /// deleted the sealed one (acknowledged) while the commit was in flight, and the commit
    /// failed on a full disk. The rollback deletes the new segment and leaves the log empty
    /// at the same end, its bytes right.
    #[test]
    fn rollback_after_the_checkpoints_newest_segment_was_deleted() {
        let cut = Segment {
            base: 3_800,
            end: 4_692,
            durable_end: 4_692,
            len: 184_794,
            newest_ms: 0,
            unwritten: 0,
            superseded: 0,
        };
        let mut log = TopicLog::recovered(TopicIdx(0), vec![cut], VecDeque::new());
        log.skip_to(135_764);
        let cp = log.checkpoint();
        let p = log.place(3, 300, 1, (1 << 20, 1 << 20));
        assert!(p.new_segment);
        assert_eq!(log.pop_oldest().map(|s| s.base), Some(3_800), "acknowledged, deleted meanwhile");
        assert_eq!(log.rollback(&cp), vec![(p.file, None)]);
        assert_eq!((log.segment_count(), log.bytes()), (0, 0));
        assert_eq!((log.start_offset(), log.end_offset(), log.durable_offset()), (135_764, 135_764, 135_764));
        let again = log.place(3, 300, 2, (1 << 20, 1 << 20));
        assert_eq!((again.file, again.pos, again.new_segment), (p.file, 0, true));
        // An older segment deleted while a commit appends to the newest: only that one's
        // bytes are undone.
        let mut log = TopicLog::new(TopicIdx(0));
        log.place(10, 100, 1, (100, 1 << 20));
        log.mark_durable();
        assert!(log.place(10, 100, 1, (100, 1 << 20)).new_segment);
        log.mark_durable();
        let cp = log.checkpoint();
        assert!(!log.place(5, 40, 2, (150, 1 << 20)).new_segment);
        assert_eq!(log.pop_oldest().map(|s| s.base), Some(0));
        assert_eq!(log.rollback(&cp), vec![(FileId::Segment { topic: TopicIdx(0), base: 10 }, Some(100))]);
        assert_eq!((log.bytes(), log.start_offset(), log.end_offset()), (100, 10, 20));
    }

    #[test]
    fn the_cut_bound_covers_the_densest_frames() {
        assert_eq!(sequences_cut_max(LOG_FRAME_MIN as u64 - 1), 0, "too short for one whole frame");
        assert_eq!(sequences_cut_max(LOG_FRAME_MIN as u64), codec::MAX_BATCH_RECORDS as u64);
        // No frame is smaller: the smallest holds one record with no key and an empty value.
        let mut batch = Vec::new();
        let rec = RecordRef { hlc: Hlc::new(1, 0), key: None, value: &[] };
        encode_batch(NodeId(1), 0, &[rec], Compression::Zstd, &mut batch);
        let mut out = Vec::new();
        encode_log_frame(0, &batch, &mut out);
        assert!(out.len() >= LOG_FRAME_MIN, "{} bytes", out.len());
    }

    #[test]
    fn place_rolls_segments_and_rollback_restores() {
        let mut log = TopicLog::new(TopicIdx(0));
        let p = log.place(10, 100, 1, (150, 1 << 20));
        assert!(p.new_segment);
        log.mark_durable();
        let cp = log.checkpoint();
        let p2 = log.place(5, 100, 2, (150, 1 << 20));
        assert!(!p2.new_segment);
        assert_eq!(p2.pos, 100);
        log.mark_durable();
        let cp2 = log.checkpoint();
        let p3 = log.place(5, 100, 3, (150, 1 << 20));
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
        log.place(10, 100, 1, (50, 1 << 20));
        log.mark_durable();
        log.place(10, 100, 1, (50, 1 << 20));
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

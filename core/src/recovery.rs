//! Recovery: the sans-IO machine a node runs before anything else. It lists the files
//! storage kept, reads the metadata log (the HLC bound), reads the site's Raft state, scans
//! the newest segment of every topic (on a gateway every segment, to rebuild the
//! per-stream high-water marks; for a `compact` topic every segment, to rebuild its key
//! index), cuts any torn tail, and hands what it found to the node as one [`Recovered`].
//!
//! A failed step starts it again from the listing, as a restart would; it owns its requests
//! (`Step`), so those of the abandoned attempt complete as requests it no longer knows.

use crate::codec::{BatchDecoder, DecodedBatch};
use crate::config::{Eviction, NodeConfig, Role};
use crate::effects::{Fx, Owner};
use crate::hlc::Hlc;
use crate::io::{DiskError, DiskOpId, DiskRequest, DiskResponse, Event, FileId};
use crate::keyed_topics::{Feed, KeyedTopics};
use crate::keys::KeyIndex;
use crate::log::{self, FrameMark, Resync, ScanStop, Segment, TopicLog};
use crate::memory::{MemoryPart, MemoryUsage, PlanBasis};
use crate::meta;
use crate::sync::ingest;
use crate::types::{NodeId, Seq, TopicIdx};
use std::collections::{BTreeMap, VecDeque};

/// What a recovery step is given: the node's configuration, the wall clock (the age of
/// segments whose records are not read), the effects it writes into, and the node's
/// decoder (zstd contexts cost more than a small batch).
pub(crate) struct RecoveryCx<'a> {
    pub cfg: &'a NodeConfig,
    pub wall_ms: u64,
    pub fx: &'a mut Fx,
    pub dec: &'a mut BatchDecoder,
}

/// What storage held, as the node starts from it.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Every configured topic's log, in topic order.
    pub logs: Vec<TopicLog>,
    /// Per topic: the key index of a `compact` topic, rebuilt from every segment.
    pub key_index: Vec<Option<KeyIndex>>,
    /// The keyed topics' states, rebuilt from every segment.
    pub keyed: KeyedTopics,
    /// The newest HLC bound the metadata log holds.
    pub meta_bound: Option<u64>,
    pub meta_generations: Vec<u64>,
    /// A gateway's per-stream high-water marks.
    pub marks: BTreeMap<(NodeId, TopicIdx), Seq>,
    /// What each subscriber of a `cloud-to-edge` topic had acknowledged, as the newest
    /// marks checkpoint recorded.
    pub subscriber_marks: BTreeMap<(NodeId, TopicIdx), Seq>,
    /// A site member's Raft state, and every generation found.
    pub raft: Option<crate::raft::store::Recovered>,
    pub raft_generations: Vec<u64>,
    /// A gateway's checkpoints of its marks found (`crate::marks`), every generation.
    pub marks_generations: Vec<u64>,
    /// Checkpoints of the keyed states found (`crate::keyed_checkpoint`), every
    /// generation, and what the one loaded covers per topic.
    pub keyed_generations: Vec<u64>,
    pub keyed_covered: BTreeMap<TopicIdx, Seq>,
    pub records: u64,
    pub truncated_bytes: u64,
}

/// What one of recovery's disk requests is for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    List,
    RecoveryRead,
    RecoveryTruncate,
    /// Creating, then syncing, the empty successor of a segment whose tail it cut with a
    /// skip. On the sync: the cut to make once the successor is durable (the file, its
    /// valid length and its length now).
    RecoverySuccessor {
        cut: Option<(FileId, u64, u64)>,
    },
}

/// Heap bytes of one request in flight in recovery's map.
const STEP_ENTRY_BYTES: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    Meta,
    Raft { generation: u64 },
    Marks { generation: u64 },
    Keyed { generation: u64 },
    Segment { topic: TopicIdx, last: bool, next_base: Option<u64> },
}

#[derive(Clone, Debug)]
struct ScanJob {
    kind: JobKind,
    file: FileId,
    file_len: u64,
    pos: u64,
    next_offset: u64,
    newest_ms: u64,
    /// Searching past the bad frame at this position (why it is bad): see `log::resync`.
    search: Option<(u64, String)>,
    /// Records of this segment a later record of their key superseded (`compact` topics).
    superseded: u64,
    /// The spacing of this segment's frame marks (`log::mark_frame`).
    spacing: u64,
}

/// Heap bytes of one recovery scan job (queued in a `VecDeque`, which may double).
const SCAN_JOB_BYTES: u64 = 2 * std::mem::size_of::<ScanJob>() as u64;

/// Recovery's planned memory: a scan job per segment, one read at a time, and a site
/// member's Raft generation read whole (`site::raft_file_bytes_max`).
pub(crate) fn planned(cfg: &NodeConfig, b: &PlanBasis) -> MemoryUsage {
    let mut m = MemoryUsage::default();
    // Requests in flight: a read, and a truncate or a successor's two per topic.
    let steps = (2 * b.topics + 2) * STEP_ENTRY_BYTES;
    // (The frame marks its scans find are planned with the logs' (`Node::plan`): the logs
    // hold none until recovery hands its marks over.)
    m.set(MemoryPart::Index, b.segments_max * SCAN_JOB_BYTES + steps);
    m.set(MemoryPart::Reads, b.read_max);
    if let Some(c) = &cfg.cluster {
        let file = crate::site::raft_file_bytes_max(cfg, c);
        m.grow(MemoryPart::Index, file);
    }
    if crate::marks::written_by(cfg) {
        // A marks checkpoint, read whole (in the same buffer as a Raft generation: a site
        // member is never a gateway).
        m.grow(MemoryPart::Index, crate::marks::file_bytes_max(cfg));
    }
    if cfg.topics.iter().any(|t| t.keyed.is_some()) {
        // A keyed checkpoint, read whole. Once the node runs, the checkpoint it writes
        // takes this share (`Node::memory`): it writes none while it recovers, and
        // recovery holds nothing once it is done.
        m.grow(MemoryPart::Index, crate::keyed_checkpoint::file_bytes_max(cfg));
    }
    m
}

/// The recovery machine: what it has found so far, and the scan in progress.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Its requests in flight.
    steps: BTreeMap<DiskOpId, Step>,
    jobs: VecDeque<ScanJob>,
    current: Option<ScanJob>,
    meta_bound: Option<u64>,
    meta_generations: Vec<u64>,
    segments: BTreeMap<TopicIdx, Vec<Segment>>,
    /// Where frames begin in the segments scanned, per topic (`TopicLog::frame_at_or_below`).
    frame_marks: BTreeMap<TopicIdx, VecDeque<FrameMark>>,
    marks: BTreeMap<(NodeId, TopicIdx), Seq>,
    subscriber_marks: BTreeMap<(NodeId, TopicIdx), Seq>,
    truncations_left: u32,
    listed: bool,
    records: u64,
    truncated_bytes: u64,
    /// Topics whose newest segment ends in an unwritten range after a cut tail whose
    /// successor segment could not be created.
    sealed: Vec<TopicIdx>,
    /// `compact` topics: the newest sequence of each key, rebuilt by scanning every segment.
    key_index: BTreeMap<TopicIdx, KeyIndex>,
    /// Keyed topics: their states, rebuilt from every segment, oldest first.
    keyed: KeyedTopics,
    /// Site members: every Raft generation found, the newest complete one replayed (read
    /// newest first; older ones are read only if it is incomplete), and the bytes of the
    /// one being read.
    raft_generations: Vec<u64>,
    raft: Option<crate::raft::store::Recovered>,
    /// A whole small file being read: a Raft generation, or a marks checkpoint.
    raft_reading: Vec<u8>,
    /// A gateway's marks checkpoints found (read newest first, until one decodes).
    marks_generations: Vec<u64>,
    /// Keyed checkpoints found (read newest first, until one decodes), and per topic the
    /// log offset below which the one loaded holds every record: scans merge only what
    /// is beyond.
    keyed_generations: Vec<u64>,
    keyed_covered: BTreeMap<TopicIdx, Seq>,
}

impl Recovery {
    /// Starts recovery: the first request lists the files storage kept.
    pub fn start(fx: &mut Fx) -> Recovery {
        let mut r = Recovery::default();
        r.issue(fx, DiskRequest::List, Step::List);
        r
    }

    fn issue(&mut self, fx: &mut Fx, req: DiskRequest, step: Step) {
        let id = fx.disk(req, Owner::Recovery);
        self.steps.insert(id, step);
    }

    /// A request of recovery completed. Returns what storage holds once the last step is
    /// done.
    pub fn on_disk(
        &mut self,
        cx: &mut RecoveryCx<'_>,
        id: DiskOpId,
        result: Result<DiskResponse, DiskError>,
    ) -> Option<Recovered> {
        // Not known: a request of an attempt abandoned since.
        let op = self.steps.remove(&id)?;
        match (op, result) {
            (Step::List, Ok(DiskResponse::Listed(files))) => self.plan(cx, files),
            (Step::RecoveryRead, Ok(DiskResponse::Read(bytes))) => self.on_read(cx, &bytes),
            (Step::RecoveryTruncate, Ok(_)) => self.truncations_left -= 1,
            (Step::RecoverySuccessor { cut }, result) => {
                let ok = result.is_ok();
                self.truncations_left -= 1;
                match cut {
                    // The successor is durable: the skip survives any restart, so the
                    // tail may go.
                    Some((file, len, _)) if ok => {
                        self.truncations_left += 1;
                        self.issue(cx.fx, DiskRequest::Truncate { file, len }, Step::RecoveryTruncate);
                    }
                    // No successor (a full device): the tail stays, so that the next
                    // recovery finds the same cut and skips the same sequences, and the
                    // cut segment stays the newest, sealed: the next append opens the
                    // successor's file as its own (swarm seed 1974: with the successor
                    // left in the log, the cut segment was freed on the full device and
                    // nothing on disk carried the skip).
                    Some((file, _, file_len)) => {
                        let FileId::Segment { topic, base } = file else { unreachable!("segments only") };
                        let segs = self.segments.get_mut(&topic).expect("recorded by finish_job");
                        let successor = segs.pop().expect("recorded by finish_job after the cut segment");
                        assert!(successor.len == 0 && successor.base > base, "{successor:?} is not the successor");
                        let seg = segs.last_mut().filter(|s| s.base == base).expect("the cut segment");
                        seg.len = file_len;
                        self.sealed.push(topic);
                    }
                    None => {}
                }
            }
            (op, Err(e)) => {
                // Storage cannot be read: try again from the start, as a restart would.
                cx.fx.event(Event::StorageProblem {
                    detail: format!("recovery step {op:?} failed ({e}); starting recovery again"),
                });
                *self = Recovery::default();
                self.issue(cx.fx, DiskRequest::List, Step::List);
                return None;
            }
            (op, Ok(r)) => panic!("unexpected completion {r:?} for {op:?}"),
        }
        if !self.next_step(cx) {
            return None;
        }
        Some(self.recovered(cx.cfg.topics.len()))
    }

    fn plan(&mut self, cx: &mut RecoveryCx<'_>, files: Vec<(FileId, u64)>) {
        let gateway = cx.cfg.role == Role::Gateway;
        self.keyed = KeyedTopics::new(cx.cfg);
        let ntopics = cx.cfg.topics.len();
        let mut by_topic: BTreeMap<TopicIdx, Vec<(u64, u64)>> = BTreeMap::new();
        let mut jobs = VecDeque::new();
        let mut meta_generations = Vec::new();
        let mut raft_generations = Vec::new();
        let mut marks_files = Vec::new();
        let mut keyed_files = Vec::new();
        for (file, len) in files {
            match file {
                FileId::Meta { generation } => {
                    meta_generations.push(generation);
                    jobs.push_back(ScanJob::whole_file(JobKind::Meta, file, len));
                }
                FileId::Segment { topic, base } if (topic.0 as usize) < ntopics => {
                    by_topic.entry(topic).or_default().push((base, len));
                }
                FileId::Raft { generation } if cx.cfg.cluster.is_some() => {
                    raft_generations.push(generation);
                    // Newest first: it is the one recovery wants.
                    jobs.push_front(ScanJob::whole_file(JobKind::Raft { generation }, file, len));
                }
                FileId::Marks { generation } if crate::marks::written_by(cx.cfg) => marks_files.push((generation, len)),
                FileId::KeyedCheckpoint { generation } if self.keyed.any() => keyed_files.push((generation, len)),
                FileId::Segment { .. }
                | FileId::Raft { .. }
                | FileId::Marks { .. }
                | FileId::KeyedCheckpoint { .. } => {}
            }
        }
        keyed_files.sort_unstable();
        let keyed_max = crate::keyed_checkpoint::file_bytes_max(cx.cfg);
        for &(generation, len) in &keyed_files {
            let file = FileId::KeyedCheckpoint { generation };
            if len > keyed_max {
                // Read whole, it could pass the memory planned for it: this configuration
                // never wrote it.
                cx.fx.event(Event::StorageProblem {
                    detail: format!("{file} is {len} bytes, more than the {keyed_max} a checkpoint of these keyed topics may take; not read"),
                });
                continue;
            }
            jobs.push_front(ScanJob::whole_file(JobKind::Keyed { generation }, file, len));
        }
        self.keyed_generations = keyed_files.iter().map(|&(g, _)| g).collect();
        // Newest first: the newest that decodes is the one recovery takes.
        marks_files.sort_unstable();
        for &(generation, len) in &marks_files {
            jobs.push_front(ScanJob::whole_file(JobKind::Marks { generation }, FileId::Marks { generation }, len));
        }
        self.marks_generations = marks_files.iter().map(|&(g, _)| g).collect();
        let wall = cx.wall_ms;
        let mut segments: BTreeMap<TopicIdx, Vec<Segment>> = BTreeMap::new();
        // A top gateway's copies of keyed writes first: the half that goes up is scanned
        // knowing what of it is copied (`keyed_fanout`). Otherwise in topic order.
        let mut by_topic: Vec<_> = by_topic.into_iter().collect();
        by_topic.sort_by_key(|&(topic, _)| !self.keyed.is_copied_into(topic));
        for (topic, mut segs) in by_topic {
            segs.sort_unstable();
            for (i, &(base, len)) in segs.iter().enumerate() {
                let next_base = segs.get(i + 1).map(|s| s.0);
                let last = next_base.is_none();
                let file = FileId::Segment { topic, base };
                let compact = cx.cfg.topics[topic.0 as usize].eviction == Eviction::Compact;
                if last || gateway || compact || self.keyed.is_keyed(topic) {
                    let kind = JobKind::Segment { topic, last, next_base };
                    let (pos, search) = (0, None);
                    // Its age comes from its frames (`finish_job`): retention by age goes on
                    // across a restart.
                    jobs.push_back(ScanJob {
                        kind,
                        file,
                        file_len: len,
                        pos,
                        next_offset: base,
                        newest_ms: 0,
                        search,
                        superseded: 0,
                        spacing: log::FRAME_MARK_SPACING_MIN,
                    });
                } else {
                    let end = next_base.expect("not last");
                    segments.entry(topic).or_default().push(Segment {
                        base,
                        end,
                        durable_end: end,
                        len,
                        newest_ms: wall,
                        unwritten: 0,
                        superseded: 0,
                    });
                }
            }
        }
        self.listed = true;
        self.jobs = jobs;
        self.meta_generations = meta_generations;
        self.raft_generations = raft_generations;
        self.segments = segments;
    }

    fn issue_read(&mut self, cx: &mut RecoveryCx<'_>, job: &ScanJob, min_len: usize) {
        let chunk = (cx.cfg.log.read_chunk_bytes as usize).max(min_len) as u64;
        let len = chunk.min(job.file_len - job.pos) as u32;
        self.issue(cx.fx, DiskRequest::Read { file: job.file, offset: job.pos, len }, Step::RecoveryRead);
    }

    /// Starts the next scan, or finishes recovery when nothing is left. Empty files need
    /// no read, so they are finished here and the loop moves on: returning without a
    /// request in flight would leave recovery waiting for a completion that never comes
    /// (swarm seed 1357: a file created just before a crash, left empty).
    fn next_step(&mut self, cx: &mut RecoveryCx<'_>) -> bool {
        loop {
            if !self.listed || self.current.is_some() {
                return false;
            }
            let Some(job) = self.jobs.pop_front() else {
                return self.truncations_left == 0;
            };
            if job.file_len == 0 {
                self.current = Some(job);
                self.finish_job(cx, 0, None);
                continue;
            }
            self.issue_read(cx, &job, 0);
            self.current = Some(job);
            return false;
        }
    }

    /// A job that reads its file whole (a Raft generation, a marks checkpoint) took
    /// `bytes`: the whole file once it is read, else the next read is issued.
    fn read_whole(&mut self, cx: &mut RecoveryCx<'_>, mut job: ScanJob, bytes: &[u8]) -> Option<Vec<u8>> {
        self.raft_reading.extend_from_slice(bytes);
        job.pos += bytes.len() as u64;
        if !bytes.is_empty() && job.pos < job.file_len {
            self.issue_read(cx, &job, 0);
            self.current = Some(job);
            return None;
        }
        Some(std::mem::take(&mut self.raft_reading))
    }

    fn on_read(&mut self, cx: &mut RecoveryCx<'_>, bytes: &[u8]) {
        let gateway = cx.cfg.role == Role::Gateway;
        let mut job = self.current.take().expect("a read belongs to the current job");
        if job.kind == JobKind::Meta {
            self.meta_bound = self.meta_bound.max(meta::read_bound(bytes));
            return;
        }
        if let JobKind::Marks { generation } = job.kind {
            // Read whole: at most `streams_max` marks.
            let Some(file) = self.read_whole(cx, job, bytes) else { return };
            match crate::marks::decode(&file) {
                Ok(c) => {
                    for (k, m) in c.streams {
                        let e = self.marks.entry(k).or_default();
                        *e = (*e).max(m);
                    }
                    self.subscriber_marks = c.subscribers;
                    self.jobs.retain(|j| !matches!(j.kind, JobKind::Marks { .. }));
                }
                // A checkpoint that never became durable: the one before it covers every
                // segment deleted so far.
                Err(e) => cx.fx.event(Event::StorageProblem {
                    detail: format!("marks checkpoint {generation} does not decode ({e}); reading the one before it"),
                }),
            }
            return;
        }
        if let JobKind::Keyed { generation } = job.kind {
            // Read whole: at most `keyed_checkpoint::file_bytes_max` (checked in `plan`).
            let Some(file) = self.read_whole(cx, job, bytes) else { return };
            match self.keyed.restore(cx.cfg, &file) {
                Ok((covered, problems)) => {
                    for detail in problems {
                        cx.fx.event(Event::StorageProblem { detail });
                    }
                    self.keyed_covered = covered;
                    self.jobs.retain(|j| !matches!(j.kind, JobKind::Keyed { .. }));
                }
                // A checkpoint that never became durable: the one before it covers every
                // segment deleted so far.
                Err(e) => cx.fx.event(Event::StorageProblem {
                    detail: format!("keyed checkpoint {generation} does not decode ({e}); reading the one before it"),
                }),
            }
            return;
        }
        if let JobKind::Raft { generation } = job.kind {
            // Read whole: a generation holds at most a few times the Raft log's limit.
            let file_id = job.file;
            let Some(file) = self.read_whole(cx, job, bytes) else { return };
            match crate::raft::store::replay(&file) {
                Ok(rec) => {
                    if let Some(why) = &rec.cut {
                        let cut_bytes = file.len() as u64 - rec.valid_len;
                        let (at, reason) = (rec.valid_len, why.clone());
                        cx.fx.event(Event::TailTruncated { file: file_id, at, cut_bytes, reason, skipped: None });
                    }
                    self.raft = Some(rec);
                    self.jobs.retain(|j| !matches!(j.kind, JobKind::Raft { .. }));
                }
                // A generation whose checkpoint never became durable: the one before it
                // holds everything Raft was told is persisted.
                Err(e) => cx.fx.event(Event::StorageProblem {
                    detail: format!("raft generation {generation} is incomplete ({e}); reading the one before it"),
                }),
            }
            return;
        }
        let JobKind::Segment { topic, last, .. } = job.kind else { unreachable!("meta handled above") };
        if let Some((bad, why)) = job.search.clone() {
            let eof = bytes.is_empty() || job.pos + bytes.len() as u64 >= job.file_len;
            match log::resync(bytes, job.pos, job.file_len, eof, job.next_offset) {
                Resync::Found { pos, base } => {
                    // Damage in the middle of the segment: the frames after it are good and
                    // acknowledged, so nothing is cut. The destroyed range stays unreadable;
                    // sync skips it.
                    cx.fx.event(Event::Corrupted { topic, from: job.next_offset, to: base });
                    job.next_offset = base;
                    job.pos = pos;
                    job.search = None;
                    self.issue_read(cx, &job, 0);
                }
                Resync::ReadFrom { pos, min_len } => {
                    job.pos = pos;
                    self.issue_read(cx, &job, min_len);
                }
                Resync::NotFound => {
                    self.current = Some(job);
                    return self.finish_job(cx, bad, Some(why));
                }
            }
            self.current = Some(job);
            return;
        }
        let mut replay = Vec::new();
        let mut keyed = Vec::new();
        let (mut merged, merges) = (Vec::new(), self.keyed.is_keyed(topic));
        // What the keyed checkpoint loaded holds already.
        let merged_below = self.keyed_covered.get(&topic).copied().unwrap_or(0);
        // A gateway's marks are of the streams it receives; its own `cloud-to-edge`
        // topics are sent from, not received.
        let ingested = gateway && cx.cfg.topics[topic.0 as usize].sync.goes_up();
        // Every stream this node receives may hold such records: a gateway's of what came
        // up, and the replica of what comes down from its upstream (swarm seed 1217: an
        // edge that crashed after a batch from its gateway reached its disk, before the
        // fsync's completion, never reported it stored).
        let received = ingested || (cx.cfg.upstream.is_some() && cx.cfg.topics[topic.0 as usize].sync.goes_down());
        let compact = cx.cfg.topics[topic.0 as usize].eviction == Eviction::Compact && !gateway;
        let mut records = 0;
        let marks = &mut self.marks;
        let spacing = log::frame_mark_spacing(cx.cfg.log.read_chunk_bytes, cx.cfg.log.segment_bytes_max);
        let frame_marks = self.frame_marks.entry(topic).or_default();
        let file_base = job.file_base();
        let stop = log::scan(bytes, job.pos, job.next_offset, |f| {
            records += u64::from(f.header.count);
            // (Segments are scanned oldest first: the newest marks are kept.)
            let m = FrameMark { offset: f.base, pos: f.pos };
            log::mark_frame(frame_marks, file_base, m, &mut job.spacing, spacing);
            job.next_offset = f.end();
            job.newest_ms = job.newest_ms.max(f.header.base_hlc.physical_ms());
            if ingested {
                ingest::note_recovered(marks, topic, &f.header);
            }
            if received && last {
                replay.push(f.batch);
            }
            if compact {
                keyed.push(f.batch);
            }
            // (A batch that straddles it is merged whole: what it holds below is `Seen`.)
            if merges && f.end() > merged_below {
                merged.push((f.base..f.end(), f.batch));
            }
        });
        for (at, batch) in merged {
            self.keyed.apply_batch(topic, batch, at, cx.dec, Feed::Recovered { newest: last });
        }
        // (Per read, so that what a newest segment holds is never gathered whole.)
        let copies = self.keyed.take_copies_made();
        if !copies.is_empty() {
            cx.fx.event(Event::KeyedCopied { copies });
        }
        self.records += records;
        let max = cx.cfg.resources.compact_index_bytes_max;
        for batch in keyed {
            // The checksum held; a batch that does not decode is left to sync to report.
            let Ok(b) = DecodedBatch::decode_with(batch, cx.dec) else { continue };
            let index = self.key_index.entry(topic).or_default();
            for (seq, rec) in (b.header.base_seq..).zip(b.records()) {
                let Some(old) = rec.key.and_then(|k| index.note(k.to_vec(), seq, max)) else { continue };
                if old >= job.file_base() {
                    job.superseded += 1;
                } else if let Some(segs) = self.segments.get_mut(&topic) {
                    let i = segs.partition_point(|s| s.end <= old);
                    if let Some(s) = segs.get_mut(i).filter(|s| s.base <= old) {
                        s.superseded += 1;
                    }
                }
            }
        }
        for batch in replay {
            // Only the newest segment can hold records made durable without their Stored
            // event (a crash between the disk keeping them and the fsync completing).
            let Ok(b) = DecodedBatch::decode(batch) else {
                continue;
            };
            let crcs = b.records().map(|r| crc32c::crc32c(r.value)).collect();
            let max_record_hlc = b.records().map(|r| r.hlc).max().unwrap_or_default();
            let payload_bytes = b.records().map(|r| r.payload_len() as u64).sum();
            cx.fx.event(Event::Stored {
                origin: b.header.origin,
                topic,
                first_seq: b.header.base_seq,
                value_crcs: crcs,
                payload_bytes,
                max_record_hlc,
                received_hlc: Hlc::ZERO,
                hlc_rejected: false,
                replay: true,
            });
        }
        let read_end = job.pos + bytes.len() as u64;
        let eof = bytes.is_empty() || read_end >= job.file_len;
        match stop {
            None if !eof => {
                job.pos = read_end;
                self.issue_read(cx, &job, 0);
                self.current = Some(job);
            }
            None => {
                self.current = Some(job);
                self.finish_job(cx, read_end, None);
            }
            Some(ScanStop::Incomplete { pos, needed }) if pos + needed as u64 <= job.file_len && !bytes.is_empty() => {
                job.pos = pos;
                self.issue_read(cx, &job, needed);
                self.current = Some(job);
            }
            Some(stop) => {
                let (pos, why) = match stop {
                    ScanStop::Incomplete { pos, needed } => {
                        (pos, format!("torn tail: a frame needing {needed} bytes is cut short"))
                    }
                    ScanStop::Bad { pos, error } => (pos, format!("invalid frame: {error}")),
                    ScanStop::Misplaced { pos } => (pos, "a valid frame that does not belong at this offset".into()),
                };
                if last && !gateway && pos + 1 < job.file_len {
                    // A torn tail, or damage with good frames after it (a flipped length
                    // field looks like a frame cut short, swarm scenario worn-sd-card seed
                    // 255): search for them before cutting anything.
                    job.search = Some((pos, why));
                    job.pos = pos + 1;
                    self.issue_read(cx, &job, 0);
                    self.current = Some(job);
                } else {
                    self.current = Some(job);
                    self.finish_job(cx, pos, Some(why));
                }
            }
        }
    }

    /// The current scan job ends with `valid_len` good bytes.
    fn finish_job(&mut self, cx: &mut RecoveryCx<'_>, valid_len: u64, reason: Option<String>) {
        let job = self.current.take().expect("a job is current");
        let JobKind::Segment { topic, last, next_base } = job.kind else {
            return;
        };
        let strong = cx.cfg.topics[topic.0 as usize].is_strong();
        // Only a log this node writes hands sequences out: a log of streams it receives
        // moves no sequence on (what was cut was never acknowledged to the sender, which
        // sends it again from the log's end).
        let written = cx.cfg.writes(&cx.cfg.topics[topic.0 as usize]);
        // (A strong topic's cut tail moves no sequence on: its records are re-derived from
        // the site's Raft log, which holds every record not yet durable here.)
        let mut end = if last { job.next_offset } else { next_base.expect("only the last has no successor") };
        let cut = job.file_len - valid_len;
        let mut skipped = None;
        if last && reason.is_some() && written && !strong {
            // The cut bytes may have held durable, acknowledged records that storage
            // destroyed, perhaps already at the gateway: never hand their sequences out
            // again. The range is skipped, and the next append opens a new segment.
            let jump = log::sequences_cut_max(cut);
            if jump > 0 {
                skipped = Some((end, end + jump));
                end += jump;
            }
        }
        let unwritten = skipped.map_or(0, |(from, to)| to - from);
        // A segment with no frame is as new as the restart.
        let newest_ms = if job.newest_ms == 0 { cx.wall_ms } else { job.newest_ms };
        let base = job.file_base();
        // An older segment keeps its whole file: only the newest is ever cut.
        let len = if last { valid_len } else { job.file_len };
        let seg = Segment { base, end, durable_end: end, len, newest_ms, unwritten, superseded: job.superseded };
        let segments = self.segments.entry(topic).or_default();
        segments.push(seg);
        if last && skipped.is_some() {
            // The successor created below is the topic's newest segment: appends go into
            // it. Left out, it would be a file nothing in memory knows of, and the first
            // commit or roll to open a segment at `end` takes it for its own: failing on
            // a full disk, it deletes it, and the skip with it (swarm seed 8: a roll on a
            // full device; the next restart handed acknowledged sequences out again).
            segments.push(Segment::empty(end, newest_ms));
        }
        if let Some(reason) = reason {
            if let (true, Some((_, to))) = (last, skipped) {
                // The skip must outlive the cut: truncated, the file would end cleanly
                // and a second restart before the next append would hand the skipped
                // sequences out again (swarm seed 114 with corrupt-tail faults: destroyed,
                // acknowledged sequences 3399..3402 given to new records; the reboot loops'
                // seeds 787 and 1733 the same). The successor
                // segment, created durable first, carries the moved sequence.
                self.truncated_bytes += cut;
                self.truncations_left += 2;
                let successor = FileId::Segment { topic, base: to };
                self.issue(
                    cx.fx,
                    DiskRequest::Append { file: successor, bytes: Vec::new() },
                    Step::RecoverySuccessor { cut: None },
                );
                let cut = Some((job.file, valid_len, job.file_len));
                self.issue(cx.fx, DiskRequest::Sync { file: successor }, Step::RecoverySuccessor { cut });
            } else if last {
                self.truncated_bytes += cut;
                self.truncations_left += 1;
                self.issue(cx.fx, DiskRequest::Truncate { file: job.file, len: valid_len }, Step::RecoveryTruncate);
            }
            cx.fx.event(Event::TailTruncated { file: job.file, at: valid_len, cut_bytes: cut, reason, skipped });
        }
    }

    /// Everything found, as the node's starting state.
    fn recovered(&mut self, topics: usize) -> Recovered {
        let r = std::mem::take(self);
        let (mut segments, mut frame_marks) = (r.segments, r.frame_marks);
        let logs = (0..topics)
            .map(|i| {
                let topic = TopicIdx(i as u16);
                let mut segs = segments.remove(&topic).unwrap_or_default();
                segs.sort_by_key(|s| s.base);
                let marks = frame_marks.remove(&topic).unwrap_or_default();
                let mut log = TopicLog::recovered(topic, segs, marks);
                if r.sealed.contains(&topic) {
                    log.seal_newest();
                }
                log
            })
            .collect();
        let mut key_index: Vec<Option<KeyIndex>> = (0..topics).map(|_| None).collect();
        for (t, index) in r.key_index {
            key_index[t.0 as usize] = Some(index);
        }
        Recovered {
            logs,
            key_index,
            keyed: r.keyed,
            meta_bound: r.meta_bound,
            meta_generations: r.meta_generations,
            marks: r.marks,
            subscriber_marks: r.subscriber_marks,
            raft: r.raft,
            raft_generations: r.raft_generations,
            marks_generations: r.marks_generations,
            keyed_generations: r.keyed_generations,
            keyed_covered: r.keyed_covered,
            records: r.records,
            truncated_bytes: r.truncated_bytes,
        }
    }

    /// Heap bytes it holds (memory part `Index`).
    pub fn heap_bytes(&self) -> u64 {
        let jobs =
            (self.jobs.capacity() * std::mem::size_of::<ScanJob>()) as u64 + self.steps.len() as u64 * STEP_ENTRY_BYTES;
        let segs: usize = self.segments.values().map(|v| v.capacity() * std::mem::size_of::<Segment>() + 64).sum();
        let frames: u64 = self.frame_marks.values().map(|v| v.capacity() as u64 * log::FRAME_MARK_BYTES).sum();
        let marks = (self.marks.len() + self.subscriber_marks.len()) as u64 * ingest::GATEWAY_STREAM_ENTRY_BYTES;
        let keys: u64 = self.key_index.values().map(KeyIndex::bytes).sum();
        let raft = self.raft_reading.capacity() as u64
            + self.raft.as_ref().map_or(0, |r| r.log.iter().map(crate::site::entry_bytes).sum());
        jobs + segs as u64
            + frames
            + marks
            + keys
            + self.keyed.bytes()
            + (self.meta_generations.capacity() * 8) as u64
            + raft
    }
}

impl ScanJob {
    /// A job that reads a whole small file from its start (meta, Raft state).
    fn whole_file(kind: JobKind, file: FileId, file_len: u64) -> ScanJob {
        ScanJob {
            kind,
            file,
            file_len,
            pos: 0,
            next_offset: 0,
            newest_ms: 0,
            search: None,
            superseded: 0,
            spacing: log::FRAME_MARK_SPACING_MIN,
        }
    }

    fn file_base(&self) -> u64 {
        match self.file {
            FileId::Segment { base, .. } => base,
            FileId::Meta { .. } | FileId::Raft { .. } | FileId::Marks { .. } | FileId::KeyedCheckpoint { .. } => 0,
        }
    }
}

//! The node driven by hand over a tiny in-memory storage, to pin down rule 6 (durable
//! before acknowledged) and recovery from a torn tail without the simulator in between.

use outpost_core::config::{NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::io::{Control, DiskOpId, DiskRequest, Event, FetchError, Fetched, FileId, Input, Output, ReqId};
use outpost_core::sync::proto::SyncMsg;
use outpost_core::sync::uplink::SessionStatus;
use outpost_core::types::{Instant, NodeId, Now, TopicIdx};
use outpost_core::{Node, NodeSeed};
use std::collections::{BTreeMap, VecDeque};

mod common;
use common::MemDisk;

const NOW: Now = Now { mono: Instant(1_000_000), wall_ms: 1_767_225_600_000 };

/// When a node started over `disk` comes back: at `NOW` on an empty disk; otherwise once
/// its wall clock reached the clock bound the disk holds, so that it issues timestamps at
/// once (`a_quick_restart_waits_for_the_wall_clock_…` tests the restart that must wait).
fn start_time(disk: &MemDisk) -> Now {
    let bound = disk
        .files
        .iter()
        .filter(|(f, _)| matches!(f, FileId::Meta { .. }))
        .filter_map(|(_, bytes)| outpost_core::meta::read_bound(bytes))
        .max();
    match bound {
        Some(b) if b > NOW.wall_ms => after(NOW, b - NOW.wall_ms),
        _ => NOW,
    }
}

/// `ms` milliseconds after `t`, on both clocks.
fn after(t: Now, ms: u64) -> Now {
    Now { mono: Instant(t.mono.0 + ms * 1_000_000), wall_ms: t.wall_ms + ms }
}

fn edge() -> NodeConfig {
    // A local topic: nothing to sync, so the test sees only the log.
    NodeConfig::new(NodeId(1), Role::Edge, vec![TopicConfig::new("t", SyncDirection::Local)])
}

struct Harness {
    node: Node,
    /// The time of every input (a restarted node comes back later, see `start_time`).
    now: Now,
    disk: MemDisk,
    replies: Vec<(ReqId, Result<outpost_core::io::ProduceAck, outpost_core::io::ProduceError>)>,
    fetched: Vec<(ReqId, Result<Fetched, FetchError>)>,
    events: Vec<Event>,
}

impl Harness {
    fn start(disk: MemDisk) -> Harness {
        Harness::start_with(edge(), disk)
    }

    fn start_with(cfg: NodeConfig, disk: MemDisk) -> Harness {
        let now = start_time(&disk);
        Harness::start_at(cfg, disk, now)
    }

    fn start_at(cfg: NodeConfig, disk: MemDisk, now: Now) -> Harness {
        let mut h = Harness {
            node: Node::new(cfg, NodeSeed(1), now),
            now,
            disk,
            replies: Vec::new(),
            fetched: Vec::new(),
            events: Vec::new(),
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            match o {
                Output::Disk { id, req } => self.disk.queue.push_back((id, req)),
                Output::Reply { req, result } => self.replies.push((req, result)),
                Output::Fetched { req, result } => self.fetched.push((req, result)),
                Output::Event(e) => self.events.push(e),
                Output::Send { .. } | Output::SendAs { .. } => panic!("a lone edge with a local topic sends nothing"),
                Output::StrongRead { .. } => panic!("a lone edge is in no site"),
            }
        }
    }

    /// Completes disk requests one by one until `stop` says so or none is left.
    fn run_disk(&mut self, mut stop: impl FnMut(&DiskRequest) -> bool) {
        while let Some((id, req, result)) = self.disk.complete_one() {
            let halt = stop(&req);
            self.node.handle(self.now, Input::DiskDone { id, result });
            self.drain();
            if halt {
                return;
            }
        }
    }

    /// Completes every queued disk request, in order, as `MemDisk` would, except those
    /// `fail` gives an error for: they complete with it and change nothing.
    fn run_disk_failing(&mut self, fail: impl Fn(&DiskRequest) -> Option<outpost_core::io::DiskError>) {
        while let Some((id, req)) = self.disk.queue.pop_front() {
            let result = match fail(&req) {
                Some(e) => Err(e),
                None => {
                    self.disk.queue.push_front((id, req));
                    self.disk.complete_one().map(|(_, _, r)| r).expect("queued")
                }
            };
            self.node.handle(self.now, Input::DiskDone { id, result });
            self.drain();
        }
    }

    fn produce(&mut self, req: u64, value: &[u8]) {
        let input = Input::Produce { req: ReqId(req), topic: TopicIdx(0), key: None, value: value.to_vec() };
        self.node.handle(self.now, input);
        self.drain();
    }
}

#[test]
fn a_produce_is_acknowledged_only_after_its_fsync_completes() {
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    assert!(h.node.is_running());
    h.produce(1, b"first");
    assert!(h.replies.iter().all(|(r, _)| *r != ReqId(1)), "no reply before storage acted");
    // Complete everything up to and including the segment append, but not its fsync.
    h.run_disk(|req| matches!(req, DiskRequest::Append { file: FileId::Segment { .. }, .. }));
    assert!(h.replies.iter().all(|(r, _)| *r != ReqId(1)), "appended is not durable: no ack yet");
    h.run_disk(|req| matches!(req, DiskRequest::Sync { file: FileId::Segment { .. } }));
    let ack = h.replies.iter().find(|(r, _)| *r == ReqId(1)).expect("acknowledged after the fsync");
    assert_eq!(ack.1.as_ref().map(|a| a.seq), Ok(0));
}

#[test]
fn group_commit_covers_records_produced_while_an_fsync_is_in_flight() {
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    h.produce(1, b"a");
    for r in 2..=50 {
        h.produce(r, b"b");
    }
    h.run_disk(|_| false);
    let seqs: Vec<u64> = h.replies.iter().filter_map(|(_, r)| r.as_ref().ok().map(|a| a.seq)).collect();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    // The first record's commit starts at once; the other 49 wait for it and share one.
    assert_eq!(h.node.stats().commits, 2, "50 records, two fsync'd group commits");
}

#[test]
fn recovery_cuts_a_torn_tail_and_keeps_every_acknowledged_record() {
    let (mut disk, seg, _) = twenty_records();
    // Power loss in the middle of a write: half a frame of garbage at the end.
    let good_len = disk.files[&seg].len();
    disk.files.get_mut(&seg).expect("exists").extend_from_slice(&[0x50, 0x4f, 1, 1, 200, 0, 0, 0, 9, 9]);
    let mut h = Harness::start(disk);
    h.run_disk(|_| false);
    assert!(h.node.is_running());
    let cut = h.events.iter().find_map(|e| match e {
        Event::TailTruncated { at, cut_bytes, .. } => Some((*at, *cut_bytes)),
        _ => None,
    });
    assert_eq!(cut, Some((good_len as u64, 10)), "the torn 10 bytes are cut and reported: {:?}", h.events);
    assert_eq!(h.disk.files[&seg].len(), good_len);
    assert_eq!(h.node.log(TopicIdx(0)).end_offset(), 20, "every acknowledged record kept");
    h.produce(100, b"after");
    h.run_disk(|_| false);
    let ack = h.replies.iter().find(|(r, _)| *r == ReqId(100)).expect("acknowledged");
    assert_eq!(ack.1.as_ref().map(|a| a.seq), Ok(20), "sequence numbers continue, none reused");
}

impl Harness {
    fn fetch(&mut self, req: u64, from: u64, max_records: u32, max_bytes: u32) -> Result<Fetched, FetchError> {
        let input = Input::Fetch { req: ReqId(req), topic: TopicIdx(0), from, max_records, max_bytes };
        self.node.handle(self.now, input);
        self.drain();
        self.run_disk(|_| false);
        let i = self.fetched.iter().position(|(r, _)| *r == ReqId(req)).expect("the fetch was answered");
        self.fetched.remove(i).1
    }
}

#[test]
fn fetch_reads_durable_records_by_offset_range() {
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    for r in 0..100u64 {
        h.produce(r, format!("value {r}").as_bytes());
        if r % 7 == 0 {
            h.run_disk(|_| false);
        }
    }
    h.run_disk(|_| false);
    let f = h.fetch(1000, 10, 20, 1 << 20).expect("in range");
    assert_eq!(f.records.iter().map(|r| r.seq).collect::<Vec<_>>(), (10..30).collect::<Vec<_>>());
    assert_eq!(f.records[5].value, b"value 15");
    assert_eq!((f.records[5].origin, f.records[5].origin_seq), (NodeId(1), 15), "on an edge, its own identity");
    assert_eq!((f.next, f.durable_end), (30, 100));
    // A byte limit stops early, but always returns at least one record.
    let f = h.fetch(1001, 95, 100, 1).expect("in range");
    assert_eq!(f.records.len(), 1);
    assert_eq!(f.next, 96);
    // The end: empty; past it: refused with what is held.
    assert_eq!(h.fetch(1002, 100, 10, 1000).map(|f| f.records.len()), Ok(0));
    assert_eq!(h.fetch(1003, 101, 10, 1000), Err(FetchError::OutOfRange { from: 101, start: 0, durable_end: 100 }));
}

#[test]
fn a_consumer_reading_on_is_not_made_to_rescan_its_segment_from_the_start() {
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    for r in 0..100u64 {
        h.produce(r, format!("value {r}").as_bytes());
        h.run_disk(|_| false);
    }
    let reads_from = |h: &mut Harness, req: u64, from: u64| {
        let mut offsets = Vec::new();
        h.node.handle(
            h.now,
            Input::Fetch { req: ReqId(req), topic: TopicIdx(0), from, max_records: 10, max_bytes: 1 << 20 },
        );
        h.drain();
        h.run_disk(|r| {
            if let DiskRequest::Read { offset, .. } = r {
                offsets.push(*offset);
            }
            false
        });
        let (_, f) = h.fetched.pop().expect("answered");
        (f.expect("in range"), offsets)
    };
    let (f, offsets) = reads_from(&mut h, 1000, 0);
    assert_eq!((f.next, offsets), (10, vec![0]));
    // Reading on: from where the last fetch stopped, not from the start of the segment.
    let (f, offsets) = reads_from(&mut h, 1001, 10);
    assert_eq!(f.records.iter().map(|r| r.value.clone()).collect::<Vec<_>>()[0], b"value 10");
    assert!(offsets.len() == 1 && offsets[0] > 0, "read from the cursor: {offsets:?}");
    // Going back: from the start again, and the right records.
    let (f, offsets) = reads_from(&mut h, 1002, 3);
    assert_eq!((f.records[0].seq, offsets), (3, vec![0]));
    assert_eq!(f.records[0].value, b"value 3");
}

#[test]
fn fetch_never_returns_a_record_that_is_not_durable() {
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    h.produce(1, b"durable");
    h.run_disk(|_| false);
    h.produce(2, b"pending");
    // Its append is done but not its fsync: it is in the file, yet not durable.
    h.run_disk(|req| matches!(req, DiskRequest::Append { file: FileId::Segment { .. }, .. }));
    assert!(h.disk.files.values().any(|b| b.windows(7).any(|w| w == b"pending")), "the bytes are in the file");
    let input = Input::Fetch { req: ReqId(9), topic: TopicIdx(0), from: 1, max_records: 10, max_bytes: 1000 };
    h.node.handle(h.now, input);
    h.drain();
    let (_, f) = h.fetched.pop().expect("answered without reading: nothing durable from 1 yet");
    assert_eq!(f.map(|f| (f.records.len(), f.durable_end)), Ok((0, 1)));
    // Once the fsync completes, the record is served.
    h.run_disk(|_| false);
    let f = h.fetch(10, 1, 10, 1000).expect("in range");
    assert_eq!(f.records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), vec![b"pending".to_vec()]);
}

#[test]
fn recovery_finishes_over_empty_files() {
    // A crash right after files were created but before anything in them was synced can
    // leave them empty (swarm seed 1357 hung in recovery on exactly this).
    let mut disk = MemDisk::default();
    disk.files.insert(FileId::Meta { generation: 1 }, Vec::new());
    disk.files.insert(FileId::Segment { topic: TopicIdx(0), base: 0 }, Vec::new());
    let mut h = Harness::start(disk);
    h.run_disk(|_| false);
    assert!(h.node.is_running(), "recovery must finish: {:?}", h.events);
    h.produce(1, b"x");
    h.run_disk(|_| false);
    assert!(matches!(h.replies.last(), Some((ReqId(1), Ok(a))) if a.seq == 0));
}

/// Twenty acknowledged records, one frame each; and where each frame is `(pos, len)`.
fn twenty_records() -> (MemDisk, FileId, Vec<(usize, usize)>) {
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    for r in 0..20 {
        h.produce(r, format!("record {r}").as_bytes());
        h.run_disk(|_| false);
    }
    assert_eq!(h.replies.iter().filter(|(_, r)| r.is_ok()).count(), 20);
    let seg = *h.disk.files.keys().find(|f| matches!(f, FileId::Segment { .. })).expect("a segment");
    let mut frames = Vec::new();
    let stop = outpost_core::log::scan(&h.disk.files[&seg], 0, 0, |f| frames.push((f.pos as usize, f.len as usize)));
    assert_eq!((stop, frames.len()), (None, 20));
    (h.disk, seg, frames)
}

#[test]
fn recovery_keeps_the_frames_after_a_corrupt_one_and_reports_the_destroyed_range() {
    // A bit flips inside the sixth frame (seq 5), long after it was acknowledged: in its
    // payload, or in its length field so that it claims to run past the end of the file
    // and looks like a torn tail (scenario worn-sd-card, seed 255, cut 497 KB of
    // acknowledged records this way before recovery searched past such frames).
    recover_after_flip(|frames| frames[5].0 + frames[5].1 / 2, 0x08);
    recover_after_flip(|frames| frames[5].0 + 6, 0x40);
}

fn recover_after_flip(at: impl Fn(&[(usize, usize)]) -> usize, mask: u8) {
    let (mut disk, seg, frames) = twenty_records();
    let len = disk.files[&seg].len();
    disk.files.get_mut(&seg).expect("exists")[at(&frames)] ^= mask;
    let mut h = Harness::start(disk);
    h.run_disk(|_| false);
    assert!(h.node.is_running());
    let found: Vec<_> = h.events.iter().filter(|e| matches!(e, Event::Corrupted { .. })).collect();
    assert_eq!(found, vec![&Event::Corrupted { topic: TopicIdx(0), from: 5, to: 6 }]);
    assert!(!h.events.iter().any(|e| matches!(e, Event::TailTruncated { .. })), "nothing after the damage is cut");
    assert_eq!(h.disk.files[&seg].len(), len);
    assert_eq!(h.node.log(TopicIdx(0)).end_offset(), 20);
    // The records after the damage are served; the destroyed one is an error, not garbage.
    let f = h.fetch(1, 6, 100, 1 << 20).expect("in range");
    assert_eq!(f.records.iter().map(|r| r.seq).collect::<Vec<_>>(), (6..20).collect::<Vec<_>>());
    let f = h.fetch(2, 3, 100, 1 << 20).expect("in range");
    assert_eq!((f.records.len(), f.next), (2, 5), "records before the damage come first");
    assert_eq!(h.fetch(3, 5, 100, 1 << 20), Err(FetchError::Corrupted { from: 5, to: 6 }));
    h.produce(100, b"after");
    h.run_disk(|_| false);
    assert!(matches!(h.replies.last(), Some((ReqId(100), Ok(a))) if a.seq == 20));
}

#[test]
fn a_fetch_steps_past_a_checksum_valid_frame_whose_records_do_not_decode() {
    // Fuzz target `recovery` (fuzz/corpus/recovery/crash-5d788ead…): such a frame made
    // every fetch from its offset fail with a storage error, so a consumer could never
    // get past it. Now it is reported like a frame that fails its checksum.
    let (mut disk, seg, frames) = twenty_records();
    let (pos, len) = frames[5];
    let file = disk.files.get_mut(&seg).expect("exists");
    let mut payload = outpost_core::codec::decode_frame(&file[pos..pos + len]).expect("valid").0.payload.to_vec();
    // The records section starts after the log offset (8 bytes) and the batch header.
    let section = 8 + outpost_core::codec::BATCH_HEADER_LEN;
    payload[section..].fill(0xFF);
    let mut forged = Vec::new();
    outpost_core::codec::encode_frame(outpost_core::codec::FrameKind::LogBatch, &payload, &mut forged);
    assert_eq!(forged.len(), len);
    file[pos..pos + len].copy_from_slice(&forged);
    let mut h = Harness::start(disk);
    h.run_disk(|_| false);
    assert!(h.node.is_running());
    let f = h.fetch(1, 3, 100, 1 << 20).expect("in range");
    assert_eq!((f.records.len(), f.next), (2, 5), "records before the damage come first");
    assert_eq!(h.fetch(2, 5, 100, 1 << 20), Err(FetchError::Corrupted { from: 5, to: 6 }));
    let f = h.fetch(3, 6, 100, 1 << 20).expect("in range");
    assert_eq!(f.records.iter().map(|r| r.seq).collect::<Vec<_>>(), (6..20).collect::<Vec<_>>());
}

#[test]
fn a_cut_tail_moves_the_sequence_past_anything_the_cut_bytes_could_hold() {
    let (mut disk, seg, frames) = twenty_records();
    let len = disk.files[&seg].len();
    let frame = frames[19].1;
    // The last frame fails its checksum and nothing follows: a torn write, or storage
    // that destroyed an acknowledged record. Recovery cannot tell, so it must never hand
    // out seq 19 again (the gateway may hold the original).
    disk.files.get_mut(&seg).expect("exists")[len - 3] ^= 0x01;
    let mut h = Harness::start(disk);
    h.run_disk(|_| false);
    let skipped = h.events.iter().find_map(|e| match e {
        Event::TailTruncated { cut_bytes, skipped, .. } => Some((*cut_bytes, *skipped)),
        _ => None,
    });
    let jump = outpost_core::log::sequences_cut_max(frame as u64);
    assert!(jump >= 1);
    assert_eq!(skipped, Some((frame as u64, Some((19, 19 + jump)))));
    h.produce(100, b"after");
    h.run_disk(|_| false);
    assert!(matches!(h.replies.last(), Some((ReqId(100), Ok(a))) if a.seq == 19 + jump), "{:?}", h.replies.last());
    assert_eq!(h.disk.files.keys().filter(|f| matches!(f, FileId::Segment { .. })).count(), 2, "a new segment");
    // A reader steps over the unwritten range.
    let f = h.fetch(1, 19, 10, 1 << 20).expect("in range");
    assert_eq!((f.records.len(), f.next), (0, 19 + jump));
    let f = h.fetch(2, f.next, 10, 1 << 20).expect("in range");
    assert_eq!(f.records.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), vec![b"after".to_vec()]);
    // After another restart the unwritten range is still there and nothing is reused.
    let mut h = Harness::start(h.disk);
    h.run_disk(|_| false);
    assert_eq!(h.node.log(TopicIdx(0)).end_offset(), 20 + jump);
}

/// A recovery step that fails starts recovery over from the listing, as a restart would;
/// the requests of the abandoned attempt still in flight complete afterwards and change
/// nothing (recovery owns its requests: it no longer knows theirs).
#[test]
fn a_failed_recovery_read_starts_over_and_the_abandoned_requests_change_nothing() {
    let two = || {
        let topics = vec![TopicConfig::new("t", SyncDirection::Local), TopicConfig::new("u", SyncDirection::Local)];
        NodeConfig::new(NodeId(1), Role::Edge, topics)
    };
    let mut h = Harness::start_with(two(), MemDisk::default());
    h.run_disk(|_| false);
    for r in 0..20u64 {
        for topic in [TopicIdx(0), TopicIdx(1)] {
            let value = format!("record {r}").into_bytes();
            h.node.handle(h.now, Input::Produce { req: ReqId(2 * r + u64::from(topic.0)), topic, key: None, value });
            h.drain();
            h.run_disk(|_| false);
        }
    }
    assert_eq!(h.replies.iter().filter(|(_, r)| r.is_ok()).count(), 40);
    // Topic t's last frame is destroyed: recovery creates a successor segment (an append
    // and a sync) before it reads topic u.
    let seg = FileId::Segment { topic: TopicIdx(0), base: 0 };
    let len = h.disk.files[&seg].len();
    h.disk.files.get_mut(&seg).expect("exists")[len - 3] ^= 0x01;
    let mut h = Harness::start_with(two(), h.disk);
    let read_of_u = |q: &VecDeque<(DiskOpId, DiskRequest)>| {
        q.iter()
            .position(|(_, r)| matches!(r, DiskRequest::Read { file: FileId::Segment { topic: TopicIdx(1), .. }, .. }))
    };
    while read_of_u(&h.disk.queue).is_none() {
        let (id, _, result) = h.disk.complete_one().expect("recovery goes on until it reads topic u");
        h.node.handle(h.now, Input::DiskDone { id, result });
        h.drain();
    }
    let successor_in_flight = h.disk.queue.iter().any(|(_, r)| matches!(r, DiskRequest::Sync { .. }));
    assert!(successor_in_flight, "the successor's requests are still in flight: {:?}", h.disk.queue);
    // Topic u's read fails first: recovery starts over, the successor's requests behind.
    let (id, _) = h.disk.queue.remove(read_of_u(&h.disk.queue).expect("queued")).expect("queued");
    h.node.handle(h.now, Input::DiskDone { id, result: Err(outpost_core::io::DiskError::Io("EIO".into())) });
    h.drain();
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, Event::StorageProblem { detail } if detail.contains("starting recovery again"))),
        "{:?}",
        h.events
    );
    assert!(matches!(h.disk.queue.back(), Some((_, DiskRequest::List))), "a new listing: {:?}", h.disk.queue);
    h.run_disk(|_| false);
    assert!(h.node.is_running());
    assert_eq!(h.node.log(TopicIdx(1)).end_offset(), 20, "every record of u");
    let t_end = h.node.log(TopicIdx(0)).end_offset();
    assert!(t_end > 19, "the destroyed sequence 19 is never handed out again: t ends at {t_end}");
}

/// Twenty records whose last frame is corrupt at its end, as storage that destroyed an
/// acknowledged record leaves them: the disk, the segment, its length, the last frame's
/// length, and where recovery moves the sequence to (`19 + sequences_cut_max`).
struct CutTail {
    disk: MemDisk,
    seg: FileId,
    len: usize,
    last_frame: usize,
    next: u64,
}

impl CutTail {
    fn new() -> CutTail {
        let (mut disk, seg, frames) = twenty_records();
        let len = disk.files[&seg].len();
        disk.files.get_mut(&seg).expect("exists")[len - 3] ^= 0x01;
        let last_frame = frames[19].1;
        let next = 19 + outpost_core::log::sequences_cut_max(last_frame as u64);
        CutTail { disk, seg, len, last_frame, next }
    }

    /// The empty segment that carries the moved sequence.
    fn successor(&self) -> FileId {
        FileId::Segment { topic: TopicIdx(0), base: self.next }
    }
}

/// A restart right after a recovery that cut a tail, before anything was appended, must
/// skip the same sequences: the cut is made only once the successor segment that carries
/// the moved sequence is durable (swarm seed 114, and the reboot loops' 787 and 1733:
/// acknowledged sequences handed out again).
#[test]
fn a_second_restart_after_a_cut_tail_reuses_nothing() {
    let cut = CutTail::new();
    let (seg, next, successor) = (cut.seg, cut.next, cut.successor());
    let mut h = Harness::start(cut.disk);
    h.run_disk(|_| false);
    assert_eq!(h.node.log(TopicIdx(0)).end_offset(), next);
    assert_eq!(h.disk.files[&seg].len(), cut.len - cut.last_frame, "the tail is cut");
    assert_eq!(h.disk.files.get(&successor).map(Vec::len), Some(0), "an empty successor carries the sequence");
    for _ in 0..2 {
        let mut again = Harness::start(h.disk);
        again.run_disk(|_| false);
        assert!(!again.events.iter().any(|e| matches!(e, Event::TailTruncated { .. })), "nothing left to cut");
        assert_eq!(again.node.log(TopicIdx(0)).end_offset(), next, "nothing reused after another restart");
        h = again;
    }
    h.produce(100, b"after");
    h.run_disk(|_| false);
    assert!(matches!(h.replies.last(), Some((ReqId(100), Ok(a))) if a.seq == next), "{:?}", h.replies.last());
    let f = h.fetch(1, 19, 10, 1 << 20).expect("in range");
    assert_eq!((f.records.len(), f.next), (0, next), "a reader steps over the skipped range");
}

/// The successor segment that carries a cut tail's skip is the topic's newest segment,
/// not a file the next commit opens: a first commit after the cut that fails on a full
/// device cuts back what it wrote to it and leaves the file (swarm seed 8: a roll of the
/// acknowledged segment on a full device deleted the successor, and the next restart
/// handed acknowledged sequences out again).
#[test]
fn a_failed_first_write_after_a_cut_tail_keeps_the_skip() {
    let cut = CutTail::new();
    let (next, successor) = (cut.next, cut.successor());
    let mut h = Harness::start(cut.disk);
    h.run_disk(|_| false);
    h.produce(100, b"no room");
    let refused_appends = std::cell::Cell::new(0);
    h.run_disk_failing(|req| {
        let refused = matches!(req, DiskRequest::Append { file: FileId::Segment { .. }, .. });
        refused_appends.set(refused_appends.get() + u32::from(refused));
        refused.then_some(outpost_core::io::DiskError::NoSpace)
    });
    assert_eq!(refused_appends.get(), 1, "one commit, refused");
    assert!(matches!(h.replies.last(), Some((ReqId(100), Err(_)))), "{:?}", h.replies.last());
    assert_eq!(h.disk.files.get(&successor).map(Vec::len), Some(0), "the successor stays, empty");
    let mut again = Harness::start(h.disk);
    again.run_disk(|_| false);
    assert_eq!(again.node.log(TopicIdx(0)).end_offset(), next, "nothing reused after the restart");
}

/// A full device refuses the successor segment that would carry a cut tail's skip: the
/// tail stays uncut, the cut segment stays the topic's newest (it cannot be freed while
/// nothing else carries the skip: swarm seed 1974 reused sequences from 0 after it was),
/// and the next append opens the successor as its own file.
#[test]
fn a_successor_the_device_refuses_leaves_the_cut_segment_newest() {
    let cut = CutTail::new();
    let (seg, len, next, successor) = (cut.seg, cut.len, cut.next, cut.successor());
    let mut h = Harness::start(cut.disk);
    h.run_disk_failing(|req| match *req {
        DiskRequest::Append { file, .. } if file == successor => Some(outpost_core::io::DiskError::NoSpace),
        DiskRequest::Sync { file } if file == successor => Some(outpost_core::io::DiskError::NotFound),
        _ => None,
    });
    assert!(h.node.is_running());
    let log = h.node.log(TopicIdx(0));
    assert_eq!((log.end_offset(), log.segment_count()), (next, 1), "the cut segment is the newest");
    assert_eq!(h.disk.files[&seg].len(), len, "the tail stays for the next recovery to cut again");
    assert!(!h.disk.files.contains_key(&successor));
    h.produce(100, b"after");
    h.run_disk(|_| false);
    assert!(matches!(h.replies.last(), Some((ReqId(100), Ok(a))) if a.seq == next), "{:?}", h.replies.last());
    assert_eq!(h.disk.files.get(&successor).map(Vec::is_empty), Some(false), "the append opened the successor");
}

/// Writes `n` records of 100 bytes over ten keys, one commit each; every one must be
/// acknowledged. Remembers each key's newest sequence.
fn write_keyed(h: &mut Harness, n: u64, newest: &mut BTreeMap<Vec<u8>, u64>) {
    for i in 0..n {
        let key = format!("k{}", i % 10).into_bytes();
        let value = vec![(i % 251) as u8; 100];
        let req = ReqId(h.replies.len() as u64);
        h.node.handle(h.now, Input::Produce { req, topic: TopicIdx(0), key: Some(key.clone()), value });
        h.drain();
        h.run_disk(|_| false);
        let (_, result) = h.replies.last().expect("answered once storage acted");
        let ack = result.as_ref().unwrap_or_else(|e| panic!("record {i} refused: {e}"));
        newest.insert(key, ack.seq);
    }
}

/// A keyed `compact` topic on a full storage budget: only records a newer record of
/// their key superseded are evicted, so every key's newest value survives, and producers
/// are never refused. After a restart the key index is rebuilt from the segments and
/// compaction goes on.
#[test]
fn compaction_keeps_the_newest_value_of_every_key_across_a_restart() {
    use outpost_core::config::Eviction;
    let mut t = TopicConfig::new("state", SyncDirection::Local);
    t.eviction = Eviction::Compact;
    let mut cfg = NodeConfig::new(NodeId(1), Role::Edge, vec![t]);
    cfg.log.segment_bytes_max = 4 << 10;
    cfg.log.pending_bytes_max = 64 << 10;
    cfg.log.value_bytes_max = 4 << 10;
    cfg.resources.storage_bytes_max = 320 << 10;
    assert_eq!(Node::check_config(&cfg), Ok(()));
    let mut h = Harness::start_with(cfg.clone(), MemDisk::default());
    h.run_disk(|_| false);
    let mut newest = BTreeMap::new();
    write_keyed(&mut h, 3_000, &mut newest);
    let compacted =
        |h: &Harness| h.events.iter().filter(|e| matches!(e, Event::Evicted { policy: "compact", .. })).count();
    assert!(compacted(&h) > 10, "the budget filled several times over: {} compactions", compacted(&h));
    let start = h.node.log(TopicIdx(0)).start_offset();
    assert!(start > 0 && newest.values().all(|&s| s >= start), "a key's newest value was evicted");
    let used = h.node.storage_used() + h.node.storage_reserved();
    assert!(used <= cfg.resources.storage_bytes_max, "{used} B");
    // What the operator sees: usage against the limits, per topic.
    let status = h.node.resource_status();
    assert_eq!(status.storage_max, 320 << 10);
    assert!(status.storage_used <= status.storage_max && status.memory.total() <= status.memory_max);
    let t = &status.topics[0];
    assert_eq!((t.name.as_str(), t.eviction, t.unsynced_records), ("state", Eviction::Compact, 0), "a local topic");
    assert!(t.evicted_unsynced > 0 && t.records > 0 && t.segments > 1, "{t:?}");
    let shown = status.to_string();
    for needle in ["storage ", "of 320.0 KiB", "scratch", "state", "compact"] {
        assert!(shown.contains(needle), "{needle:?} missing from:\n{shown}");
    }

    let mut h = Harness::start_with(cfg.clone(), std::mem::take(&mut h.disk));
    h.run_disk(|_| false);
    assert!(h.node.is_running());
    write_keyed(&mut h, 1_000, &mut newest);
    assert!(compacted(&h) > 3, "compaction goes on after a restart: {}", compacted(&h));
    let start = h.node.log(TopicIdx(0)).start_offset();
    assert!(newest.values().all(|&s| s >= start), "a key's newest value was evicted after the restart");
}

/// Drives an edge with a topic that syncs up, keeping what it sends.
fn pump_edge(node: &mut Node, disk: &mut MemDisk, now: Now, sent: &mut Vec<SyncMsg>) {
    loop {
        while let Some(o) = node.poll_output() {
            match o {
                Output::Disk { id, req } => disk.queue.push_back((id, req)),
                Output::Send { bytes, .. } => sent.push(SyncMsg::decode(&bytes).expect("the edge sends valid frames")),
                _ => {}
            }
        }
        let Some((id, _, result)) = disk.complete_one() else { return };
        node.handle(now, Input::DiskDone { id, result });
    }
}

fn hellos(sent: &[SyncMsg]) -> usize {
    sent.iter().filter(|m| matches!(m, SyncMsg::Hello { .. })).count()
}

#[test]
fn a_paused_edge_sends_nothing_until_resumed_and_sync_now_skips_the_backoff() {
    let mut cfg = NodeConfig::new(NodeId(1), Role::Edge, vec![TopicConfig::new("t", SyncDirection::EdgeToCloud)]);
    cfg.upstream = Some(NodeId(9));
    let (mut node, mut disk, mut sent) = (Node::new(cfg, NodeSeed(1), NOW), MemDisk::default(), Vec::new());
    pump_edge(&mut node, &mut disk, NOW, &mut sent);
    assert_eq!(hellos(&sent), 1, "a running edge says Hello at once");
    let at = |secs: u64| Now { mono: Instant(NOW.mono.0 + secs * 1_000_000_000), wall_ms: NOW.wall_ms + secs * 1000 };

    node.handle(at(1), Input::Control(Control::PauseSync));
    pump_edge(&mut node, &mut disk, at(1), &mut sent);
    for secs in [2, 30, 120, 600] {
        node.handle_timeout(at(secs));
        pump_edge(&mut node, &mut disk, at(secs), &mut sent);
    }
    assert_eq!(hellos(&sent), 1, "no Hello while paused, however long");
    let status = node.sync_status().expect("an edge has an uplink");
    assert!(status.paused);

    node.handle(at(601), Input::Control(Control::ResumeSync));
    pump_edge(&mut node, &mut disk, at(601), &mut sent);
    assert_eq!(hellos(&sent), 2, "resumed past its retry time: Hello at once");
    // Unanswered, the next Hello waits out a backoff; `sync now` skips it.
    node.handle(at(602), Input::Control(Control::SyncNow));
    pump_edge(&mut node, &mut disk, at(602), &mut sent);
    assert_eq!(hellos(&sent), 3);
    match node.sync_status().expect("uplink").session {
        SessionStatus::Connecting { retry_at, attempt } => {
            assert_eq!(attempt, 1, "sync now starts the backoff over");
            assert!(retry_at > at(602).mono);
        }
        SessionStatus::Active => panic!("no gateway answered"),
    }
    // The transport reconnecting does not resume a paused edge, but spares the backoff.
    node.handle(at(603), Input::Control(Control::PauseSync));
    node.handle(at(603), Input::Control(Control::LinkUp));
    pump_edge(&mut node, &mut disk, at(603), &mut sent);
    assert_eq!(hellos(&sent), 3, "paused: the link coming up sends nothing");
    node.handle(at(603), Input::Control(Control::ResumeSync));
    pump_edge(&mut node, &mut disk, at(603), &mut sent);
    assert_eq!(hellos(&sent), 4, "resumed after the link came up: Hello without waiting out the backoff");
}

/// An edge and its gateway over in-memory storage and a link that can be cut: the edge's
/// storage holds at most `capacity` bytes (a small device), the gateway's any amount.
struct Pair {
    edge: Node,
    gw: Node,
    edge_disk: MemDisk,
    gw_disk: MemDisk,
    capacity: usize,
    /// Empty appends (creating a rolled segment's file) refused for space, this many more.
    refuse_creates: u32,
    /// Files the edge deleted, in order.
    deleted: Vec<FileId>,
    link_up: bool,
    /// Data messages to the gateway lost on the link, by their number (from 0).
    lose_data: Vec<usize>,
    data_sent: usize,
    to_gw: VecDeque<Vec<u8>>,
    to_edge: VecDeque<Vec<u8>>,
    replies: Vec<(ReqId, Result<outpost_core::io::ProduceAck, outpost_core::io::ProduceError>)>,
    events: Vec<Event>,
    now: Now,
}

const EDGE: NodeId = NodeId(1);
const GATEWAY: NodeId = NodeId(9);

impl Pair {
    fn edge_config() -> NodeConfig {
        let mut cfg = NodeConfig::new(EDGE, Role::Edge, vec![TopicConfig::new("t", SyncDirection::EdgeToCloud)]);
        cfg.upstream = Some(GATEWAY);
        cfg
    }

    fn new(capacity: usize) -> Pair {
        Pair::with_edge(capacity, Pair::edge_config())
    }

    fn with_edge(capacity: usize, edge_cfg: NodeConfig) -> Pair {
        let gw_cfg = NodeConfig::new(GATEWAY, Role::Gateway, vec![TopicConfig::new("t", SyncDirection::EdgeToCloud)]);
        let mut p = Pair {
            edge: Node::new(edge_cfg, NodeSeed(1), NOW),
            gw: Node::new(gw_cfg, NodeSeed(2), NOW),
            edge_disk: MemDisk::default(),
            gw_disk: MemDisk::default(),
            capacity,
            refuse_creates: 0,
            deleted: Vec::new(),
            link_up: false,
            lose_data: Vec::new(),
            data_sent: 0,
            to_gw: VecDeque::new(),
            to_edge: VecDeque::new(),
            replies: Vec::new(),
            events: Vec::new(),
            now: NOW,
        };
        p.settle();
        p
    }

    /// The edge's storage refuses an append past its capacity and writes nothing of it.
    fn complete_edge_disk(&mut self) -> bool {
        let used: usize = self.edge_disk.files.values().map(Vec::len).sum();
        let full = match self.edge_disk.queue.front() {
            Some((_, DiskRequest::Append { bytes, .. })) if bytes.is_empty() && self.refuse_creates > 0 => {
                self.refuse_creates -= 1;
                true
            }
            Some((_, DiskRequest::Append { bytes, .. })) => used + bytes.len() > self.capacity,
            Some(_) => false,
            None => return false,
        };
        let (id, result) = if full {
            let (id, req) = self.edge_disk.queue.pop_front().expect("checked");
            if let DiskRequest::Append { file, bytes } = &req {
                if bytes.is_empty() {
                    self.edge_disk.files.entry(*file).or_default();
                }
            }
            (id, Err(outpost_core::io::DiskError::NoSpace))
        } else {
            let (id, req, result) = self.edge_disk.complete_one().expect("checked");
            if let DiskRequest::Delete { file } = req {
                self.deleted.push(file);
            }
            (id, result)
        };
        self.edge.handle(self.now, Input::DiskDone { id, result });
        true
    }

    /// Runs until nothing is left to do at this instant.
    fn settle(&mut self) {
        loop {
            while let Some(o) = self.edge.poll_output() {
                match o {
                    Output::Disk { id, req } => self.edge_disk.queue.push_back((id, req)),
                    Output::Send { bytes, .. } if self.link_up => {
                        if matches!(SyncMsg::decode(&bytes), Ok(SyncMsg::Data { .. })) {
                            self.data_sent += 1;
                            if self.lose_data.contains(&(self.data_sent - 1)) {
                                continue;
                            }
                        }
                        self.to_gw.push_back(bytes);
                    }
                    Output::Reply { req, result } => self.replies.push((req, result)),
                    Output::Event(e) => self.events.push(e),
                    _ => {}
                }
            }
            while let Some(o) = self.gw.poll_output() {
                match o {
                    Output::Disk { id, req } => self.gw_disk.queue.push_back((id, req)),
                    Output::Send { bytes, .. } if self.link_up => self.to_edge.push_back(bytes),
                    _ => {}
                }
            }
            if self.complete_edge_disk() {
                continue;
            }
            if let Some((id, _, result)) = self.gw_disk.complete_one() {
                self.gw.handle(self.now, Input::DiskDone { id, result });
            } else if let Some(bytes) = self.to_gw.pop_front() {
                self.gw.handle(self.now, Input::Message { from: EDGE, bytes });
            } else if let Some(bytes) = self.to_edge.pop_front() {
                self.edge.handle(self.now, Input::Message { from: GATEWAY, bytes });
            } else {
                return;
            }
        }
    }

    /// Lets `ms` milliseconds pass in steps of 50 ms, firing timers.
    fn run_for(&mut self, ms: u64) {
        for _ in 0..ms / 50 {
            self.now = Now { mono: Instant(self.now.mono.0 + 50_000_000), wall_ms: self.now.wall_ms + 50 };
            if self.edge.poll_timeout().is_some_and(|t| t <= self.now.mono) {
                self.edge.handle_timeout(self.now);
            }
            if self.gw.poll_timeout().is_some_and(|t| t <= self.now.mono) {
                self.gw.handle_timeout(self.now);
            }
            self.settle();
        }
    }

    /// Produces `value` and runs until it is answered.
    fn produce(
        &mut self,
        req: u64,
        value: &[u8],
    ) -> Result<outpost_core::io::ProduceAck, outpost_core::io::ProduceError> {
        let input = Input::Produce { req: ReqId(req), topic: TopicIdx(0), key: None, value: value.to_vec() };
        self.edge.handle(self.now, input);
        for _ in 0..100 {
            self.settle();
            if let Some(i) = self.replies.iter().position(|(r, _)| r.0 == req) {
                return self.replies.remove(i).1;
            }
            self.run_for(50);
        }
        panic!("produce {req} was never answered");
    }
}

/// Values zstd cannot shrink, so that a device fills as a test counts.
fn incompressible(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..10 << 10)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Issue 17: a backlog that goes in many batches is read from the disk once, not once per
/// batch (a read returns `log.read_chunk_bytes`, a batch takes a few of them: the rest stays
/// ahead); and the gateway's answers to what arrived, while later batches are still on
/// their way, make the edge send nothing again (it went back and resent a window of
/// batches at each such answer, which the gateway dropped as duplicates).
#[test]
fn a_backlog_in_many_batches_is_read_once_and_sent_once() {
    let mut cfg = Pair::edge_config();
    cfg.sync.batch_records_max = 50;
    let mut p = Pair::with_edge(usize::MAX, cfg);
    let records = 2_000;
    for i in 0..records {
        let value = format!("{{\"sensor\":{},\"reading\":{}}}", i % 7, i * 31 % 1000);
        p.produce(i, value.as_bytes()).expect("stored");
    }
    let log_bytes: usize =
        p.edge_disk.files.iter().filter(|(f, _)| matches!(f, FileId::Segment { .. })).map(|(_, b)| b.len()).sum();
    p.link_up = true;
    p.edge.handle(p.now, Input::Control(Control::SyncNow));
    p.run_for(5_000);
    assert_eq!(p.edge.unsynced_records(), 0, "the gateway holds everything");
    let (edge, gw) = (p.edge.stats(), p.gw.stats());
    assert!(edge.sync_records_sent >= records, "{edge:?}");
    assert!(edge.sync_records_sent / 50 >= 40, "many batches: {edge:?}");
    assert!(
        edge.sync_read_bytes <= log_bytes as u64 + log_bytes as u64 / 2,
        "read {} B from disk to send a log of {log_bytes} B ({} reads)",
        edge.sync_read_bytes,
        edge.sync_reads
    );
    assert_eq!((edge.sync_records_resent, edge.retransmits, gw.duplicates_dropped), (0, 0, 0), "{edge:?} {gw:?}");
    assert_eq!(edge.sync_records_sent, records);
}

#[test]
fn a_sender_at_its_logs_end_sends_what_commits_write_without_reading_it_back() {
    let mut p = Pair::new(usize::MAX);
    p.link_up = true;
    p.produce(0, b"first").expect("stored");
    p.run_for(1_000);
    assert_eq!(p.edge.unsynced_records(), 0);
    let before = p.edge.stats();
    for i in 1..=300 {
        p.produce(i, format!("{{\"reading\":{i}}}").as_bytes()).expect("stored");
    }
    p.run_for(1_000);
    assert_eq!(p.edge.unsynced_records(), 0, "the gateway holds everything");
    let after = p.edge.stats();
    assert_eq!(after.sync_records_sent - before.sync_records_sent, 300, "{after:?}");
    // Each commit's frames went to the sender as they were written.
    assert_eq!((after.sync_reads - before.sync_reads, after.sync_read_bytes - before.sync_read_bytes), (0, 0));
}

#[test]
fn a_lost_message_is_sent_again_alone_while_the_gateway_keeps_what_followed() {
    let mut cfg = Pair::edge_config();
    cfg.sync.batch_records_max = 50;
    let mut p = Pair::with_edge(usize::MAX, cfg);
    for i in 0..1_000 {
        p.produce(i, format!("{{\"reading\":{i}}}").as_bytes()).expect("stored");
    }
    // Two of the twenty messages are lost; the ones after each arrive first.
    p.lose_data = vec![3, 11];
    p.link_up = true;
    p.edge.handle(p.now, Input::Control(Control::SyncNow));
    p.run_for(3_000);
    assert_eq!(p.edge.unsynced_records(), 0, "the gateway holds everything");
    let (edge, gw) = (p.edge.stats(), p.gw.stats());
    // Each lost batch sent again, and nothing else: no going back over the window.
    assert_eq!((edge.sync_records_resent, edge.sync_records_sent), (100, 1_100), "{edge:?}");
    assert!(gw.batches_kept >= 2, "what followed each gap was kept: {gw:?}");
    assert_eq!(gw.duplicates_dropped, 0, "{gw:?}");
}

#[test]
fn after_a_retransmit_timeout_a_dead_link_is_sent_one_message_at_a_time() {
    let mut cfg = Pair::edge_config();
    cfg.sync.batch_records_max = 50;
    let mut p = Pair::with_edge(usize::MAX, cfg);
    p.link_up = true;
    p.produce(0, b"first").expect("stored");
    p.run_for(1_000);
    assert_eq!(p.edge.unsynced_records(), 0);
    // The link dies without a word: the edge sends its records into it, hears nothing.
    p.link_up = false;
    for i in 1..=500 {
        p.produce(i, format!("{{\"reading\":{i}}}").as_bytes()).expect("stored");
    }
    let before = p.edge.stats();
    assert_eq!(before.sync_records_sent, 501, "everything went out once: {before:?}");
    // Three retransmit timeouts (5 s) before the session times out (20 s): each sends the
    // oldest message again as a probe, not the whole window.
    p.run_for(19_000);
    let dead = p.edge.stats();
    assert_eq!(dead.sync_records_resent, 3 * 50, "{dead:?}");
    p.link_up = true;
    p.run_for(60_000);
    assert_eq!(p.edge.unsynced_records(), 0, "the gateway holds everything");
    let end = p.edge.stats();
    assert!(end.sync_records_resent <= 3 * 50 + 500, "{end:?}");
}

#[test]
fn a_roll_that_cannot_create_its_file_keeps_the_segment_and_tries_again_later() {
    let mut p = Pair::new(300 << 10);
    let mut acked = 0;
    while p.produce(acked, &incompressible(acked)).is_ok() {
        acked += 1;
    }
    // The empty file may exist (storage made it but refused the append): the roll must
    // take it away again before a commit appends to the old segment.
    p.refuse_creates = 1;
    p.link_up = true;
    p.edge.handle(p.now, Input::Control(Control::SyncNow));
    p.run_for(5_000);
    assert_eq!(p.edge.unsynced_records(), 0, "the gateway holds everything");
    assert_eq!(p.refuse_creates, 0, "the first roll could not create its file");
    // Its file deleted again, then, after the device-full wait, a second roll freed the
    // segment; the empty segment keeps the sequence.
    let (rolled, old) =
        (FileId::Segment { topic: TopicIdx(0), base: acked }, FileId::Segment { topic: TopicIdx(0), base: 0 });
    assert_eq!(p.deleted, [rolled, old]);
    assert!(!p.edge.resource_status().device_full);
    let log = p.edge.log(TopicIdx(0));
    assert_eq!((log.segment_count(), log.start_offset(), log.end_offset()), (1, acked, acked));
    assert_eq!(p.edge_disk.files.get(&rolled).map(Vec::len), Some(0));
    assert_eq!(p.produce(999, b"room again").expect("taken").seq, acked);
}

#[test]
fn a_full_device_frees_the_segment_the_gateway_holds_and_takes_writes_again() {
    // 300 KiB of device under a default config: a 1 GiB budget and 8 MiB segments, so
    // the device's data is one open segment.
    let mut p = Pair::new(300 << 10);
    let value = incompressible;
    let mut acked = 0;
    let refusal = loop {
        match p.produce(acked, &value(acked)) {
            Ok(a) => {
                assert_eq!(a.seq, acked);
                acked += 1;
            }
            Err(e) if e.is_retryable() => match p.produce(1000 + acked, &value(acked)) {
                Ok(a) => panic!("the device had room after all: {a:?}"),
                Err(e) => break e.to_string(),
            },
            Err(e) => panic!("{e}"),
        }
        assert!(acked < 100, "a 300 KiB device took 1 MiB");
    };
    assert!(acked > 10 && p.edge.resource_status().device_full, "{acked} records, then: {refusal}");
    assert!(
        refusal.starts_with("storage full: the device has no space left")
            && refusal.contains(&format!("waiting for the gateway to acknowledge {acked} records"))
            && refusal.contains("writes resume by themselves then"),
        "the refusal says what ends it: {refusal}"
    );
    assert_eq!(p.edge.log(TopicIdx(0)).segment_count(), 1, "one open segment holds the device");

    // The gateway comes back and acknowledges everything: the segment goes, by a roll.
    p.link_up = true;
    p.edge.handle(p.now, Input::Control(Control::SyncNow));
    p.run_for(5_000);
    assert_eq!(p.edge.unsynced_records(), 0);
    assert!(!p.edge.resource_status().device_full, "freeing the segment ended the full state");
    let freed = p.events.iter().find_map(|e| match e {
        Event::StorageFreed { bytes } => Some(*bytes),
        _ => None,
    });
    assert!(freed.is_some_and(|b| b > 100 << 10), "{freed:?}");
    let log = p.edge.log(TopicIdx(0));
    assert_eq!((log.segment_count(), log.start_offset(), log.end_offset(), log.bytes()), (1, acked, acked, 0));
    let files: Vec<(FileId, usize)> = p.edge_disk.files.iter().map(|(f, b)| (*f, b.len())).collect();
    let segment = FileId::Segment { topic: TopicIdx(0), base: acked };
    assert!(files.contains(&(segment, 0)), "an empty segment keeps the sequence: {files:?}");
    assert!(!files.iter().any(|(f, _)| *f == FileId::Segment { topic: TopicIdx(0), base: 0 }), "{files:?}");

    // Writes resume at once, at the next sequence, and fill the device again as the
    // gateway takes them: three times its size.
    for i in acked..acked + 90 {
        let a = loop {
            match p.produce(i, &value(i)) {
                Ok(a) => break a,
                Err(e) if e.is_retryable() => p.run_for(1_000),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(a.seq, i);
    }
    p.run_for(2_000);
    assert_eq!(p.edge.unsynced_records(), 0);

    // A restart goes on at the right sequence: the segment file says where.
    let end = p.edge.log(TopicIdx(0)).end_offset();
    assert_eq!(end, acked + 90);
    p.edge = Node::new(Pair::edge_config(), NodeSeed(3), p.now);
    p.settle();
    p.run_for(1_000);
    assert_eq!(p.edge.log(TopicIdx(0)).end_offset(), end);
    assert_eq!(p.produce(5000, b"after the restart").expect("room").seq, end);
}

/// Issue 15, defect 2: killed and back 300 ms later, the edge's persisted clock bound lies
/// 1.7 s ahead of its wall clock. It does not start from the bound (which put every restart
/// seconds ahead, adding up): it says it waits, refuses produces with an error that says
/// how long, wakes itself at the end, and then stamps records from the wall clock.
#[test]
fn a_quick_restart_waits_for_the_wall_clock_to_pass_the_bound_then_stamps_from_it() {
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    h.produce(1, b"before");
    h.run_disk(|_| false);
    let before = h.replies[0].1.clone().expect("acknowledged");
    let bound = start_time(&h.disk).wall_ms;
    assert_eq!(bound, NOW.wall_ms + 2_000, "one bound, a window (2 s) ahead");

    let back = after(NOW, 300);
    let mut h = Harness::start_at(edge(), std::mem::take(&mut h.disk), back);
    h.run_disk(|_| false);
    assert!(h.node.is_running());
    assert!(h.events.contains(&Event::ClockWaits { bound_ms: bound, wait_ms: 1_700 }), "{:?}", h.events);
    h.produce(2, b"during the wait");
    let refused = h.replies.last().expect("answered at once").1.clone().expect_err("refused");
    assert!(refused.is_retryable());
    assert!(refused.to_string().contains("retry in 1.7 s"), "{refused}");
    // Woken half a window before the end to renew the bound (nothing written before),
    // then at the end. (The first wake-up is the start's housekeeping.)
    h.node.handle_timeout(h.now);
    h.drain();
    h.run_disk(|_| false);
    assert_eq!(start_time(&h.disk).wall_ms, bound, "nothing written before");
    let wake = h.node.poll_timeout().expect("a wake-up");
    assert_eq!(wake, after(NOW, 1_000).mono, "half a window before the bound");
    h.now = after(NOW, 1_000);
    h.node.handle_timeout(h.now);
    h.drain();
    h.run_disk(|_| false);
    assert_eq!(start_time(&h.disk).wall_ms, NOW.wall_ms + 3_000, "a new bound written, a window past the wall clock");
    assert_eq!(h.node.poll_timeout(), Some(after(NOW, 2_000).mono), "woken when the wait ends");
    h.now = after(NOW, 2_000);
    h.node.handle_timeout(h.now);
    h.produce(3, b"after the wait");
    h.run_disk(|_| false);
    let ack = h.replies.last().expect("answered").1.clone().expect("acknowledged");
    assert_eq!(ack.hlc.physical_ms(), h.now.wall_ms, "from the wall clock");
    assert!(ack.hlc > before.hlc);
}

/// Found by a gateway and an edge in `tests/keyed.rs`: a node idle past its clock bound
/// stamped its next produce at the bound, seconds behind the wall clock, so that a
/// last-write-wins merge ranked the write below older ones. The simulator checks it now
/// (`hlc-behind-wall`). Produces wait for a new bound, then are stamped from the wall
/// clock, in the order they came.
#[test]
fn produces_after_an_idle_spell_are_stamped_from_the_wall_clock_not_the_lapsed_bound() {
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    h.produce(1, b"first");
    h.run_disk(|_| false);
    let first = h.replies[0].1.clone().expect("acknowledged");
    h.now = after(NOW, 10_000);
    h.produce(2, b"after ten idle seconds");
    h.produce(3, b"and another");
    assert_eq!(h.replies.len(), 1, "held for the clock, not refused");
    h.run_disk(|_| false);
    let acks: Vec<_> = h.replies[1..].iter().map(|(_, r)| r.clone().expect("acknowledged")).collect();
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[0].hlc.physical_ms(), h.now.wall_ms, "from the wall clock");
    assert!(first.hlc < acks[0].hlc && acks[0].hlc < acks[1].hlc, "in the order they came");
    assert!(start_time(&h.disk).wall_ms > h.now.wall_ms, "a new bound, past the wall clock");
}

/// Found by `tests/keyed.rs` (one run in three): a daemon's first write after it started
/// was refused 503 "clock" because the new node's first clock bound was not durable yet.
/// It waits for that bound instead (one fsync), as a write after an idle spell does, and
/// is stamped from the wall clock.
#[test]
fn a_produce_before_the_first_clock_bound_is_durable_waits_for_it() {
    let mut h = Harness::start(MemDisk::default());
    while !h.node.is_running() {
        let (id, _, result) = h.disk.complete_one().expect("recovery asks the disk");
        h.node.handle(h.now, Input::DiskDone { id, result });
        h.drain();
    }
    let bound_write = |r: &DiskRequest| matches!(r, DiskRequest::Append { file: FileId::Meta { .. }, .. });
    assert!(h.disk.queue.iter().any(|(_, r)| bound_write(r)), "the first bound is being written: {:?}", h.disk.queue);
    h.produce(1, b"first, at once");
    assert!(h.replies.is_empty(), "not refused, not acknowledged before its fsync: {:?}", h.replies);
    h.run_disk(|_| false);
    let ack = h.replies.last().expect("answered").1.clone().expect("acknowledged");
    assert_eq!(ack.seq, 0);
    assert_eq!(ack.hlc.physical_ms(), h.now.wall_ms, "from the wall clock");
}

/// Issue 15, defect 5: a gateway whose clock bound lapsed while it heard nothing gets a
/// Data message stamped past that bound. It holds the message, makes a new bound durable,
/// then stores the records, without the edge having to resend anything.
#[test]
fn an_idle_gateway_holds_data_until_a_new_clock_bound_is_durable() {
    let topic = || vec![TopicConfig::new("t", SyncDirection::EdgeToCloud)];
    let mut edge_cfg = NodeConfig::new(NodeId(1), Role::Edge, topic());
    edge_cfg.upstream = Some(NodeId(9));
    let mut net = Net::new(edge_cfg, NodeConfig::new(NodeId(9), Role::Gateway, topic()));
    net.run_until(after(NOW, 1_000));
    net.produce(0, b"first");
    net.run_until(after(NOW, 2_000));
    assert_eq!(net.stored, 1);

    // The edge stops sending for 30 s but writes on (its clock follows its wall clock);
    // the gateway hears nothing, and its bound (2 s ahead) lapses.
    net.edge.handle(net.now, Input::Control(Control::PauseSync));
    net.run_until(after(NOW, 30_000));
    for (i, value) in [b"a", b"b"].iter().enumerate() {
        net.produce(1 + i as u64, *value);
        net.run_until(after(net.now, 10));
    }
    let bound_before = net.gw_bound();
    assert!(bound_before < net.now.wall_ms, "the gateway's bound lapsed");
    net.edge.handle(net.now, Input::Control(Control::ResumeSync));
    // One step at a time: the edge reads its records and sends them; the Data reaches the
    // gateway, which writes a bound and answers nothing yet.
    let is_data = |b: &Vec<u8>| matches!(SyncMsg::decode(b), Ok(SyncMsg::Data { .. }));
    for _ in 0..100 {
        net.collect();
        if net.to_gw.iter().any(is_data) {
            break;
        }
        if let Some((id, _, result)) = net.edge_disk.complete_one() {
            net.edge.handle(net.now, Input::DiskDone { id, result });
        } else {
            // The edge lingers a little before it sends a partial batch.
            let t = net.edge.poll_timeout().expect("the edge has records to send");
            net.now = after(net.now, t.0.saturating_sub(net.now.mono.0) / 1_000_000);
            net.edge.handle_timeout(net.now);
        }
    }
    assert!(net.to_gw.iter().any(is_data), "the edge sent its records");
    for bytes in std::mem::take(&mut net.to_gw) {
        net.gw.handle(net.now, Input::Message { from: NodeId(1), bytes });
    }
    net.collect();
    assert!(net.to_edge.is_empty(), "nothing answered before the bound is durable");
    assert!(net.gw_disk.queue.iter().any(|(_, r)| matches!(r, DiskRequest::Sync { file: FileId::Meta { .. } })));
    net.run_until(after(net.now, 10));
    assert!(net.gw_bound() > bound_before);
    assert_eq!(net.stored, 3, "stored once the bound was durable");
    assert_eq!(net.edge.stats().retransmits, 0);
    assert_eq!(net.edge.unsynced_records(), 0, "and acknowledged");
    assert!(!net.gw_events.iter().any(|e| matches!(e, Event::HeldMessageDropped { .. })));
}

/// An edge and a gateway over in-memory storage, their messages delivered in order and
/// at once.
struct Net {
    now: Now,
    edge: Node,
    gw: Node,
    edge_disk: MemDisk,
    gw_disk: MemDisk,
    to_gw: Vec<Vec<u8>>,
    to_edge: Vec<Vec<u8>>,
    gw_events: Vec<Event>,
    /// Records the gateway stored.
    stored: usize,
}

impl Net {
    fn new(edge: NodeConfig, gw: NodeConfig) -> Net {
        Net {
            now: NOW,
            edge: Node::new(edge, NodeSeed(1), NOW),
            gw: Node::new(gw, NodeSeed(2), NOW),
            edge_disk: MemDisk::default(),
            gw_disk: MemDisk::default(),
            to_gw: Vec::new(),
            to_edge: Vec::new(),
            gw_events: Vec::new(),
            stored: 0,
        }
    }

    fn produce(&mut self, req: u64, value: &[u8]) {
        let input = Input::Produce { req: ReqId(req), topic: TopicIdx(0), key: None, value: value.to_vec() };
        self.edge.handle(self.now, input);
    }

    /// Takes what both nodes output: disk requests queued, messages kept for delivery.
    fn collect(&mut self) {
        while let Some(o) = self.edge.poll_output() {
            match o {
                Output::Disk { id, req } => self.edge_disk.queue.push_back((id, req)),
                Output::Send { bytes, .. } => self.to_gw.push(bytes),
                _ => {}
            }
        }
        while let Some(o) = self.gw.poll_output() {
            match o {
                Output::Disk { id, req } => self.gw_disk.queue.push_back((id, req)),
                Output::Send { bytes, .. } => self.to_edge.push(bytes),
                Output::Event(e) => {
                    if let Event::Stored { value_crcs, replay: false, .. } = &e {
                        self.stored += value_crcs.len();
                    }
                    self.gw_events.push(e);
                }
                _ => {}
            }
        }
    }

    /// Delivers messages, completes disk requests and fires timers (time moving to each
    /// timer) until nothing is left to do before `until`; the clocks are then at `until`.
    fn run_until(&mut self, until: Now) {
        loop {
            self.collect();
            let now = self.now;
            if let Some((id, _, result)) = self.edge_disk.complete_one() {
                self.edge.handle(now, Input::DiskDone { id, result });
            } else if let Some((id, _, result)) = self.gw_disk.complete_one() {
                self.gw.handle(now, Input::DiskDone { id, result });
            } else if !self.to_gw.is_empty() {
                for bytes in std::mem::take(&mut self.to_gw) {
                    self.gw.handle(now, Input::Message { from: NodeId(1), bytes });
                }
            } else if !self.to_edge.is_empty() {
                for bytes in std::mem::take(&mut self.to_edge) {
                    self.edge.handle(now, Input::Message { from: NodeId(9), bytes });
                }
            } else {
                let next = [self.edge.poll_timeout(), self.gw.poll_timeout()].into_iter().flatten().min();
                match next.filter(|t| *t <= until.mono) {
                    Some(t) => {
                        self.now = after(self.now, (t.0.saturating_sub(self.now.mono.0)) / 1_000_000);
                        let now = self.now;
                        if self.edge.poll_timeout().is_some_and(|e| e <= now.mono) {
                            self.edge.handle_timeout(now);
                        }
                        if self.gw.poll_timeout().is_some_and(|g| g <= now.mono) {
                            self.gw.handle_timeout(now);
                        }
                    }
                    None => {
                        self.now = until;
                        return;
                    }
                }
            }
        }
    }

    /// The clock bound the gateway's storage holds.
    fn gw_bound(&self) -> u64 {
        let meta = self.gw_disk.files.iter().filter(|(f, _)| matches!(f, FileId::Meta { .. }));
        meta.filter_map(|(_, b)| outpost_core::meta::read_bound(b)).max().expect("a bound")
    }
}

/// A keyed topic merges what the log makes durable, never before: a write is in the state
/// once its commit's fsync completed, and a value that is no operation of the topic's
/// strategy is refused. Its segments go only once a durable checkpoint of the state covers
/// them (before, they are the state's only copy); a restart loads the checkpoint, merges
/// only what came after it, and answers the same.
#[test]
fn a_keyed_topic_merges_durable_writes_and_a_restart_loads_its_checkpoint() {
    use outpost_core::config::KeyedTopic;
    use outpost_core::io::ProduceError;
    use outpost_core::keyed::{OpKind, Strategy, Value};
    let mut t = TopicConfig::new("stock", SyncDirection::Local);
    t.retention_bytes = 8 << 10;
    let limits = outpost_core::keyed::KeyedLimits { state_bytes_max: 64 << 10, conflict_log_bytes_max: 4 << 10 };
    t.keyed = Some(KeyedTopic { strategy: Strategy::Counter, limits, merge: None });
    let mut cfg = NodeConfig::new(NodeId(1), Role::Edge, vec![t]);
    cfg.log.segment_bytes_max = 4 << 10;
    cfg.log.pending_bytes_max = 64 << 10;
    cfg.log.value_bytes_max = 4 << 10;
    cfg.resources.storage_bytes_max = 8 << 20;
    assert_eq!(Node::check_config(&cfg), Ok(()));
    let mut h = Harness::start_with(cfg.clone(), MemDisk::default());
    h.run_disk(|_| false);
    let mut expected = BTreeMap::new();
    let mut write = |h: &mut Harness, i: u64| {
        let key = format!("sku-{}", i % 7).into_bytes();
        let delta = (i % 5) as i64 - 1;
        let value = h.node.keyed_prepare(TopicIdx(0), &key, OpKind::Increment(delta)).expect("a counter");
        h.node.handle(h.now, Input::Produce { req: ReqId(i), topic: TopicIdx(0), key: Some(key.clone()), value });
        h.drain();
        if i == 0 {
            assert_eq!(h.node.keyed(TopicIdx(0)).unwrap().get(&key), Value::Absent, "not merged before durable");
        }
        h.run_disk(|_| false);
        assert!(matches!(h.replies.last(), Some((ReqId(r), Ok(_))) if *r == i), "{:?}", h.replies.last());
        *expected.entry(key).or_insert(0i64) += delta;
    };
    for i in 0..300u64 {
        write(&mut h, i);
    }
    // The first time retention waited for a checkpoint, one was written, and once it was
    // durable retention deleted what it covers; the next waits for the interval (a
    // checkpoint of the whole state per segment would cost more than the writes).
    let checkpoints = |h: &Harness| -> Vec<u64> {
        let files = h.disk.files.keys();
        files
            .filter_map(|f| if let FileId::KeyedCheckpoint { generation } = f { Some(*generation) } else { None })
            .collect()
    };
    let log = h.node.log(TopicIdx(0));
    assert_eq!(checkpoints(&h), [1]);
    assert!(log.start_offset() > 0, "deleted behind the first checkpoint");
    assert!(log.segment_count() > 2 && log.bytes() > 8 << 10, "past retention_bytes, waiting for the next");
    h.now = after(h.now, 61_000);
    h.node.handle_timeout(h.now);
    h.drain();
    h.run_disk(|_| false);
    assert_eq!(checkpoints(&h), [2], "the newer one durable, the older deleted");
    assert!(h.node.log(TopicIdx(0)).bytes() <= 8 << 10, "deleted down to retention_bytes");
    for i in 300..340u64 {
        write(&mut h, i);
    }
    let state = h.node.keyed(TopicIdx(0)).expect("keyed");
    for (key, sum) in &expected {
        assert_eq!(state.get(key), Value::Number(*sum), "{key:?}");
    }
    let before = format!("{:?}", expected.keys().map(|k| state.get(k)).collect::<Vec<_>>());
    for (req, key, value) in [(1000, Some(b"k".to_vec()), b"not an op".to_vec()), (1001, None, vec![1, 2, 0, 0, 2])] {
        h.node.handle(h.now, Input::Produce { req: ReqId(req), topic: TopicIdx(0), key, value });
        h.drain();
        let refused = matches!(h.replies.last(), Some((ReqId(r), Err(ProduceError::Invalid(_)))) if *r == req);
        assert!(refused, "{:?}", h.replies.last());
    }
    let put = h.node.keyed_prepare(TopicIdx(0), b"k", OpKind::Put(b"x"));
    assert!(put.is_err(), "a counter takes no put");

    let mut h = Harness::start_with(cfg, std::mem::take(&mut h.disk));
    h.run_disk(|_| false);
    let state = h.node.keyed(TopicIdx(0)).expect("keyed");
    let after: Vec<Value<'_>> = expected.keys().map(|k| state.get(k)).collect();
    assert_eq!(format!("{after:?}"), before, "the checkpoint and the writes after it make the same state");
    let merged = h.node.keyed_counters().applied;
    assert_eq!(merged, 40, "recovery merged the writes after the checkpoint, and only those");
}

//! The node driven by hand over a tiny in-memory storage, to pin down rule 6 (durable
//! before acknowledged) and recovery from a torn tail without the simulator in between.

use outpost_core::config::{NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::io::{DiskOpId, DiskRequest, DiskResponse, Event, FileId, Input, Output, ReqId};
use outpost_core::types::{Instant, NodeId, Now, TopicIdx};
use outpost_core::{Node, NodeSeed};
use std::collections::{BTreeMap, VecDeque};

/// Storage that keeps every byte (no crash model): a crash is simulated by the test.
#[derive(Default)]
struct MemDisk {
    files: BTreeMap<FileId, Vec<u8>>,
    queue: VecDeque<(DiskOpId, DiskRequest)>,
}

impl MemDisk {
    fn complete_one(&mut self) -> Option<(DiskOpId, DiskRequest, Result<DiskResponse, outpost_core::io::DiskError>)> {
        let (id, req) = self.queue.pop_front()?;
        let r = match &req {
            DiskRequest::List => {
                Ok(DiskResponse::Listed(self.files.iter().map(|(f, b)| (*f, b.len() as u64)).collect()))
            }
            DiskRequest::Append { file, bytes } => {
                self.files.entry(*file).or_default().extend_from_slice(bytes);
                Ok(DiskResponse::Done)
            }
            DiskRequest::Sync { .. } | DiskRequest::Delete { .. } => Ok(DiskResponse::Done),
            DiskRequest::Read { file, offset, len } => {
                let b = &self.files[file];
                let s = (*offset as usize).min(b.len());
                let e = (s + *len as usize).min(b.len());
                Ok(DiskResponse::Read(b[s..e].to_vec()))
            }
            DiskRequest::Truncate { file, len } => {
                self.files.get_mut(file).expect("exists").truncate(*len as usize);
                Ok(DiskResponse::Done)
            }
        };
        Some((id, req, r))
    }
}

const NOW: Now = Now { mono: Instant(1_000_000), wall_ms: 1_767_225_600_000 };

fn edge() -> NodeConfig {
    // A local topic: nothing to sync, so the test sees only the log.
    NodeConfig::new(NodeId(1), Role::Edge, vec![TopicConfig::new("t", SyncDirection::Local)])
}

struct Harness {
    node: Node,
    disk: MemDisk,
    replies: Vec<(ReqId, Result<outpost_core::io::ProduceAck, outpost_core::io::ProduceError>)>,
    events: Vec<Event>,
}

impl Harness {
    fn start(disk: MemDisk) -> Harness {
        let mut h =
            Harness { node: Node::new(edge(), NodeSeed(1), NOW), disk, replies: Vec::new(), events: Vec::new() };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            match o {
                Output::Disk { id, req } => self.disk.queue.push_back((id, req)),
                Output::Reply { req, result } => self.replies.push((req, result)),
                Output::Event(e) => self.events.push(e),
                Output::Send { .. } => panic!("a lone edge with a local topic sends nothing"),
            }
        }
    }

    /// Completes disk requests one by one until `stop` says so or none is left.
    fn run_disk(&mut self, mut stop: impl FnMut(&DiskRequest) -> bool) {
        while let Some((id, req, result)) = self.disk.complete_one() {
            let halt = stop(&req);
            self.node.handle(NOW, Input::DiskDone { id, result });
            self.drain();
            if halt {
                return;
            }
        }
    }

    fn produce(&mut self, req: u64, value: &[u8]) {
        let input = Input::Produce { req: ReqId(req), topic: TopicIdx(0), key: None, value: value.to_vec() };
        self.node.handle(NOW, input);
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
    let mut h = Harness::start(MemDisk::default());
    h.run_disk(|_| false);
    for r in 0..20 {
        h.produce(r, format!("record {r}").as_bytes());
        h.run_disk(|_| false);
    }
    assert_eq!(h.replies.iter().filter(|(_, r)| r.is_ok()).count(), 20);
    // Power loss in the middle of a write: half a frame of garbage at the end.
    let mut disk = h.disk;
    let seg = *disk.files.keys().find(|f| matches!(f, FileId::Segment { .. })).expect("a segment");
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

//! A node's recovery over arbitrary storage: the fuzzer's bytes become the files of a data
//! directory (segments of two topics and meta files), a node boots over them on an
//! in-memory disk, and everything it then serves is checked against the bytes it was given.

use outpost_core::codec::{self, DecodedBatch, FrameKind};
use outpost_core::config::{NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::hlc::Hlc;
use outpost_core::io::{DiskRequest, DiskResponse, FetchError, FileId, Input, Output, ReqId};
use outpost_core::types::{Instant, NodeId, Now, TopicIdx};
use outpost_core::{Node, NodeSeed};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

const NOW: Now = Now { mono: Instant(1_000_000), wall_ms: 1_767_225_600_000 };
const ME: NodeId = NodeId(1);
const TOPICS: u16 = 2;
/// Far more disk requests than recovery of the largest input needs: reaching it means
/// recovery does not finish.
const STEPS_MAX: u32 = 1_000_000;

/// The files of a data directory, by name.
pub type Files = BTreeMap<FileId, Vec<u8>>;

/// The fuzzer's bytes as files: each file is `tag: u8` (by `tag % 3`: a segment of topic 0,
/// of topic 1, a meta file), `base` or `generation: u32 LE`, `len: u16 LE`, then up to `len`
/// bytes. A later file with the same name replaces an earlier one.
pub fn decode_files(mut data: &[u8]) -> Files {
    let mut files = Files::new();
    while data.len() >= 7 {
        let number = u64::from(u32::from_le_bytes(data[1..5].try_into().expect("4 bytes")));
        let file = match data[0] % 3 {
            2 => FileId::Meta { generation: number },
            t => FileId::Segment { topic: TopicIdx(u16::from(t)), base: number },
        };
        let len = usize::from(u16::from_le_bytes([data[5], data[6]]));
        let body = &data[7..(7 + len).min(data.len())];
        files.insert(file, body.to_vec());
        data = &data[7 + body.len()..];
    }
    files
}

/// The inverse of [`decode_files`], for seeds; `None` if a file or number does not fit.
pub fn encode_files(files: &Files) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (file, body) in files {
        let (tag, number) = match *file {
            FileId::Segment { topic, base } => (u8::try_from(topic.0).ok().filter(|t| *t < 2)?, base),
            FileId::Meta { generation } => (2, generation),
            FileId::Raft { .. } | FileId::Marks { .. } | FileId::KeyedCheckpoint { .. } => return None,
        };
        out.push(tag);
        out.extend_from_slice(&u32::try_from(number).ok()?.to_le_bytes());
        out.extend_from_slice(&u16::try_from(body.len()).ok()?.to_le_bytes());
        out.extend_from_slice(body);
    }
    Some(out)
}

/// The configuration of the node under test: an edge with two local topics, small segments
/// (so that a seed holds several) and the smallest read the config allows (64 KiB: an
/// input as long crosses a read boundary; the simulator covers long logs).
pub fn config() -> NodeConfig {
    let topics = (0..TOPICS).map(|t| TopicConfig::new(&format!("t{t}"), SyncDirection::Local)).collect();
    let mut cfg = NodeConfig::new(ME, Role::Edge, topics);
    cfg.log.segment_bytes_max = 2048;
    cfg.log.read_chunk_bytes = 64 << 10;
    // The index is sized for the storage budget in segments: small segments, small budget.
    cfg.resources.storage_bytes_max = 16 << 20;
    cfg
}

/// A node over in-memory files; disk requests complete in order, synchronously.
pub struct Harness {
    pub node: Node,
    pub files: Files,
    queue: VecDeque<(outpost_core::io::DiskOpId, DiskRequest)>,
    replies: Vec<(ReqId, Result<outpost_core::io::ProduceAck, outpost_core::io::ProduceError>)>,
    fetched: Vec<(ReqId, Result<outpost_core::io::Fetched, FetchError>)>,
}

impl Harness {
    pub fn boot(files: Files) -> Harness {
        let mut h = Harness {
            node: Node::new(config(), NodeSeed(1), NOW),
            files,
            queue: VecDeque::new(),
            replies: Vec::new(),
            fetched: Vec::new(),
        };
        h.settle();
        h
    }

    /// Performs disk requests until none is left.
    pub fn settle(&mut self) {
        let mut steps = 0;
        loop {
            while let Some(o) = self.node.poll_output() {
                match o {
                    Output::Disk { id, req } => self.queue.push_back((id, req)),
                    Output::Reply { req, result } => self.replies.push((req, result)),
                    Output::Fetched { req, result } => self.fetched.push((req, result)),
                    Output::Event(_) | Output::Send { .. } | Output::SendAs { .. } | Output::StrongRead { .. } => {}
                }
            }
            let Some((id, req)) = self.queue.pop_front() else { return };
            steps += 1;
            assert!(steps < STEPS_MAX, "storage requests do not end (last: {req:?})");
            let result = self.perform(req);
            self.node.handle(NOW, Input::DiskDone { id, result });
        }
    }

    fn perform(&mut self, req: DiskRequest) -> Result<DiskResponse, outpost_core::io::DiskError> {
        use outpost_core::io::DiskError::NotFound;
        match req {
            DiskRequest::List => {
                Ok(DiskResponse::Listed(self.files.iter().map(|(f, b)| (*f, b.len() as u64)).collect()))
            }
            DiskRequest::Append { file, bytes } => {
                self.files.entry(file).or_default().extend_from_slice(&bytes);
                Ok(DiskResponse::Done)
            }
            DiskRequest::Sync { file } => self.files.get(&file).map(|_| DiskResponse::Done).ok_or(NotFound),
            DiskRequest::Read { file, offset, len } => {
                let b = self.files.get(&file).ok_or(NotFound)?;
                let s = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                let e = s.saturating_add(len as usize).min(b.len());
                Ok(DiskResponse::Read(b[s..e].to_vec()))
            }
            DiskRequest::Truncate { file, len } => {
                let b = self.files.get_mut(&file).ok_or(NotFound)?;
                b.truncate(usize::try_from(len).unwrap_or(usize::MAX));
                Ok(DiskResponse::Done)
            }
            DiskRequest::Delete { file } => self.files.remove(&file).map(|_| DiskResponse::Done).ok_or(NotFound),
        }
    }

    pub fn fetch(&mut self, topic: TopicIdx, from: u64) -> Result<outpost_core::io::Fetched, FetchError> {
        let req = ReqId(u64::from(topic.0) << 48 | from & 0xffff_ffff_ffff);
        self.node.handle(NOW, Input::Fetch { req, topic, from, max_records: 1000, max_bytes: 1 << 20 });
        self.settle();
        let i = self.fetched.iter().position(|(r, _)| *r == req).expect("every fetch is answered");
        self.fetched.remove(i).1
    }

    pub fn produce(
        &mut self,
        topic: TopicIdx,
        value: &[u8],
    ) -> Result<outpost_core::io::ProduceAck, outpost_core::io::ProduceError> {
        let req = ReqId(u64::MAX);
        self.node.handle(NOW, Input::Produce { req, topic, key: None, value: value.to_vec() });
        self.settle();
        let i = self.replies.iter().position(|(r, _)| *r == req).expect("every produce is answered");
        self.replies.remove(i).1
    }
}

/// One record as it can be served: `(hlc, key, value)`.
type Served = (Hlc, Option<Vec<u8>>, Vec<u8>);

/// Every record in a checksum-valid log frame anywhere in the segment files of `topic`, by
/// the log offset the frame gives it: what recovery may serve, and nothing else.
fn valid_records(files: &Files, topic: TopicIdx) -> BTreeMap<u64, BTreeSet<Served>> {
    let mut found: BTreeMap<u64, BTreeSet<Served>> = BTreeMap::new();
    let segments = files.iter().filter(|(f, _)| matches!(f, FileId::Segment { topic: t, .. } if *t == topic));
    for (_, bytes) in segments {
        for at in 0..bytes.len() {
            let Ok((frame, _)) = codec::decode_frame(&bytes[at..]) else { continue };
            if frame.kind != FrameKind::LogBatch || frame.payload.len() < 8 {
                continue;
            }
            let (base, batch) = frame.payload.split_at(8);
            let base = u64::from_le_bytes(base.try_into().expect("8 bytes"));
            let Ok(batch) = DecodedBatch::decode(batch) else { continue };
            for (i, r) in batch.records().enumerate() {
                found.entry(base + i as u64).or_default().insert((r.hlc, r.key.map(<[u8]>::to_vec), r.value.to_vec()));
            }
        }
    }
    found
}

/// Boots a node over the files in `data` and checks that recovery finishes, that every
/// record it then serves is one a checksum-valid frame holds at that offset, with this
/// edge's identity, in order; and that a record produced afterwards takes a sequence above
/// every one served.
pub fn recovery(data: &[u8]) {
    let files = decode_files(data);
    let mut h = Harness::boot(files.clone());
    assert!(h.node.is_running(), "recovery finishes over any files");
    for topic in (0..TOPICS).map(TopicIdx) {
        let valid = valid_records(&files, topic);
        let mut from = 0;
        let mut fetches = 0;
        loop {
            fetches += 1;
            assert!(fetches < 10_000, "fetching a recovered topic ends");
            match h.fetch(topic, from) {
                Ok(f) => {
                    for r in &f.records {
                        assert!(r.seq >= from && r.seq < f.next, "records in the range asked for");
                        assert_eq!((r.origin, r.origin_seq), (ME, r.seq), "an edge serves its own identity");
                        let served = (r.hlc, r.key.clone(), r.value.clone());
                        assert!(
                            valid.get(&r.seq).is_some_and(|v| v.contains(&served)),
                            "record {} of {topic:?} is not in any checksum-valid frame at that offset",
                            r.seq
                        );
                    }
                    assert!(f.next > from || f.next >= f.durable_end, "a fetch makes progress");
                    from = f.next;
                    if from >= f.durable_end {
                        break;
                    }
                }
                Err(FetchError::OutOfRange { start, durable_end, .. }) if from < start => {
                    from = start;
                    if start >= durable_end {
                        break;
                    }
                }
                Err(FetchError::OutOfRange { .. }) => break,
                Err(FetchError::Corrupted { from: f, to }) => {
                    assert!(f <= from && to > from, "a corrupt range covers the offset asked for");
                    from = to;
                }
                Err(e) => panic!("a running node refused a fetch of {topic:?} from {from}: {e}"),
            }
        }
        if let Ok(ack) = h.produce(topic, b"after recovery") {
            assert!(ack.seq >= from, "a new record's sequence {} reuses one served ({from})", ack.seq);
        }
    }
}

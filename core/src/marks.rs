//! A gateway's durable checkpoint of the marks of the streams it receives
//! (`FileId::Marks`), so that it may delete segments: at a restart a gateway rebuilds its
//! marks from its segments, and a stream whose records it deleted would otherwise come
//! back lower, and be stored again when its sender resends. Today a middle tier uses it,
//! to delete what the tier above acknowledged (`Node::apply_retention`).
//!
//! Each checkpoint is a new generation, one frame: written, synced, and only then are the
//! older generations deleted and the segments it covers deletable. Recovery reads the
//! newest generation that decodes (a crash mid-write leaves a torn newest file, and the
//! one before it still holds marks at least as high as every segment deleted) and takes,
//! per stream, the higher of its mark and what the segments show.
//!
//! ```text
//! frame kind Marks: version u8 (1), n u32, n × (origin u64, topic u16, mark u64)
//! ```

use crate::codec::{self, FrameError, FrameKind, ReadError, Reader};
use crate::config::NodeConfig;
use crate::effects::{Fx, Owner};
use crate::io::{DiskError, DiskOpId, DiskRequest, DiskResponse, FileId};
use crate::memory::{MemoryPart, MemoryUsage};
use crate::types::{NodeId, Seq, TopicIdx};
use std::collections::BTreeMap;
use std::fmt;

const MARKS_VERSION: u8 = 1;

/// The largest checkpoint of a node: `gateway.streams_max` marks.
pub fn file_bytes_max(cfg: &NodeConfig) -> u64 {
    cfg.gateway.streams_max as u64 * MARK_ENTRY_BYTES + codec::FRAME_HEADER_LEN as u64 + 5
}

/// The writer's planned memory (part `Writes`): one checkpoint in flight, on a middle
/// tier (the only node that writes them today).
pub(crate) fn planned(cfg: &NodeConfig) -> MemoryUsage {
    let mut m = MemoryUsage::default();
    if cfg.is_middle_tier() {
        m.set(MemoryPart::Writes, file_bytes_max(cfg));
    }
    m
}
/// Bytes one stream's mark takes in a checkpoint.
pub const MARK_ENTRY_BYTES: u64 = 18;

/// Why a checkpoint does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarksError {
    Frame(FrameError),
    /// Bytes after the checkpoint's frame, or a frame of another kind.
    NotMarks,
    Version(u8),
    Truncated(ReadError),
    /// More entries than the frame holds, or entries out of order.
    Malformed(&'static str),
}

impl fmt::Display for MarksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarksError::Frame(e) => write!(f, "bad frame: {e}"),
            MarksError::NotMarks => write!(f, "not one marks frame"),
            MarksError::Version(v) => write!(f, "marks version {v}; this build reads {MARKS_VERSION}"),
            MarksError::Truncated(e) => write!(f, "marks truncated: {e}"),
            MarksError::Malformed(what) => write!(f, "marks malformed: {what}"),
        }
    }
}

/// Encodes `marks`, in stream order, as one checkpoint frame.
pub fn encode(marks: impl ExactSizeIterator<Item = ((NodeId, TopicIdx), Seq)>, out: &mut Vec<u8>) {
    let start = codec::begin_frame(FrameKind::Marks, out);
    out.push(MARKS_VERSION);
    out.extend_from_slice(&u32::try_from(marks.len()).expect("streams are bounded by streams_max").to_le_bytes());
    for ((origin, topic), mark) in marks {
        out.extend_from_slice(&origin.0.to_le_bytes());
        out.extend_from_slice(&topic.0.to_le_bytes());
        out.extend_from_slice(&mark.to_le_bytes());
    }
    codec::finish_frame(start, out);
}

/// Decodes a whole checkpoint file: exactly one valid frame, entries in order.
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<(NodeId, TopicIdx), Seq>, MarksError> {
    let (frame, used) = codec::decode_frame(bytes).map_err(MarksError::Frame)?;
    if frame.kind != FrameKind::Marks || used != bytes.len() {
        return Err(MarksError::NotMarks);
    }
    let mut r = Reader::new(frame.payload);
    let version = r.u8().map_err(MarksError::Truncated)?;
    if version != MARKS_VERSION {
        return Err(MarksError::Version(version));
    }
    let n = r.u32().map_err(MarksError::Truncated)? as usize;
    if n as u64 * MARK_ENTRY_BYTES != (frame.payload.len() - 5) as u64 {
        return Err(MarksError::Malformed("its count does not match its length"));
    }
    let mut marks = BTreeMap::new();
    let mut last = None;
    for _ in 0..n {
        let origin = NodeId(r.u64().map_err(MarksError::Truncated)?);
        let topic = TopicIdx(r.u16().map_err(MarksError::Truncated)?);
        let mark = r.u64().map_err(MarksError::Truncated)?;
        if last.is_some_and(|l| l >= (origin, topic)) {
            return Err(MarksError::Malformed("streams out of order"));
        }
        last = Some((origin, topic));
        marks.insert((origin, topic), mark);
    }
    Ok(marks)
}

/// A checkpoint being written: its generation, append and sync, and what it lets
/// retention delete once durable (per topic, the log offset below which every segment
/// holds only records the marks cover).
#[derive(Debug)]
struct Writing {
    generation: u64,
    append: DiskOpId,
    sync: DiskOpId,
    append_error: Option<DiskError>,
    covers: Vec<(TopicIdx, Seq)>,
}

/// Writes checkpoints, one at a time, and knows what the last durable one covers.
#[derive(Debug, Default)]
pub(crate) struct MarksWriter {
    generation: u64,
    /// Generations on disk older than the newest durable one, deleted after the next.
    obsolete: Vec<u64>,
    writing: Option<Writing>,
    /// Per topic, the offset below which segments may go (the last durable checkpoint's).
    covered: BTreeMap<TopicIdx, Seq>,
    pub written: u64,
    pub failed: u64,
}

impl MarksWriter {
    /// After the generations recovery found: the next checkpoint opens a newer one, and
    /// all of these go once it is durable. Nothing is covered before it.
    pub fn recovered(found: &[u64]) -> MarksWriter {
        let generation = found.iter().copied().max().unwrap_or(0);
        MarksWriter { generation, obsolete: found.to_vec(), ..MarksWriter::default() }
    }

    /// Where segments of `topic` may be deleted below.
    pub fn covered(&self, topic: TopicIdx) -> Seq {
        self.covered.get(&topic).copied().unwrap_or(0)
    }

    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Writes `marks` (every one durable now) as a new generation; once it is durable,
    /// segments of each topic below its offset in `covers` may go.
    pub fn write(
        &mut self,
        fx: &mut Fx,
        marks: impl ExactSizeIterator<Item = ((NodeId, TopicIdx), Seq)>,
        covers: Vec<(TopicIdx, Seq)>,
    ) {
        assert!(self.writing.is_none(), "one checkpoint at a time");
        self.generation += 1;
        let file = FileId::Marks { generation: self.generation };
        let mut bytes = Vec::with_capacity(marks.len() * MARK_ENTRY_BYTES as usize + codec::FRAME_HEADER_LEN + 5);
        encode(marks, &mut bytes);
        let append = fx.disk(DiskRequest::Append { file, bytes }, Owner::Marks);
        let sync = fx.disk(DiskRequest::Sync { file }, Owner::Marks);
        let generation = self.generation;
        self.writing = Some(Writing { generation, append, sync, append_error: None, covers });
    }

    /// One of its requests completed. A durable checkpoint moves what is covered and
    /// deletes the older generations; a failed one is deleted (it may be torn) and the
    /// next housekeeping tries again.
    pub fn on_disk(&mut self, fx: &mut Fx, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        let w = self.writing.as_mut().expect("a marks request completed with no checkpoint in flight");
        if id == w.append {
            w.append_error = result.err();
            return;
        }
        assert_eq!(id, w.sync, "a checkpoint's requests are its append and its sync");
        let w = self.writing.take().expect("checked above");
        match (w.append_error, result) {
            (None, Ok(_)) => {
                self.written += 1;
                for (topic, offset) in w.covers {
                    let c = self.covered.entry(topic).or_default();
                    debug_assert!(offset >= *c, "what a checkpoint covers only grows");
                    *c = (*c).max(offset);
                }
                for generation in self.obsolete.drain(..) {
                    fx.disk(DiskRequest::Delete { file: FileId::Marks { generation } }, Owner::Unheeded);
                }
                self.obsolete.push(w.generation);
            }
            _ => {
                self.failed += 1;
                fx.disk(DiskRequest::Delete { file: FileId::Marks { generation: w.generation } }, Owner::Unheeded);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Output;

    fn disk_ops(fx: &mut Fx) -> Vec<(DiskOpId, DiskRequest)> {
        fx.out
            .drain(..)
            .filter_map(|o| match o {
                Output::Disk { id, req } => Some((id, req)),
                _ => None,
            })
            .collect()
    }

    fn sample() -> BTreeMap<(NodeId, TopicIdx), Seq> {
        [((NodeId(3), TopicIdx(0)), 120), ((NodeId(3), TopicIdx(1)), 7), ((NodeId(9), TopicIdx(0)), u64::MAX)]
            .into_iter()
            .collect()
    }

    #[test]
    fn a_checkpoint_decodes_to_what_was_encoded_and_nothing_else_does() {
        let mut buf = Vec::new();
        encode(sample().into_iter(), &mut buf);
        assert_eq!(decode(&buf), Ok(sample()));
        assert!(decode(&buf[..buf.len() - 1]).is_err(), "torn");
        let mut two = buf.clone();
        two.extend_from_slice(&buf);
        assert_eq!(decode(&two), Err(MarksError::NotMarks));
        let mut empty = Vec::new();
        encode(std::iter::empty(), &mut empty);
        assert_eq!(decode(&empty), Ok(BTreeMap::new()));
    }

    #[test]
    fn older_generations_go_only_after_a_newer_one_is_durable() {
        let mut fx = Fx::default();
        let mut w = MarksWriter::recovered(&[4, 2]);
        w.write(&mut fx, sample().into_iter(), vec![(TopicIdx(0), 500)]);
        let ops = disk_ops(&mut fx);
        assert_eq!(ops.len(), 2);
        assert!(matches!(ops[0].1, DiskRequest::Append { file: FileId::Marks { generation: 5 }, .. }));
        assert_eq!(w.covered(TopicIdx(0)), 0, "nothing is covered before it is durable");
        for (id, _) in &ops {
            fx.complete(*id);
            w.on_disk(&mut fx, *id, Ok(DiskResponse::Done));
        }
        assert_eq!(w.covered(TopicIdx(0)), 500);
        let deleted: Vec<_> = disk_ops(&mut fx).into_iter().map(|(_, r)| r).collect();
        let gens = [2, 4].map(|generation| DiskRequest::Delete { file: FileId::Marks { generation } });
        assert!(gens.iter().all(|g| deleted.contains(g)), "{deleted:?}");
        // A failed one is deleted and covers nothing more.
        w.write(&mut fx, sample().into_iter(), vec![(TopicIdx(0), 900)]);
        let ops = disk_ops(&mut fx);
        fx.complete(ops[0].0);
        w.on_disk(&mut fx, ops[0].0, Err(DiskError::NoSpace));
        fx.complete(ops[1].0);
        w.on_disk(&mut fx, ops[1].0, Ok(DiskResponse::Done));
        assert_eq!(w.covered(TopicIdx(0)), 500);
        let deleted: Vec<_> = disk_ops(&mut fx).into_iter().map(|(_, r)| r).collect();
        assert_eq!(deleted, vec![DiskRequest::Delete { file: FileId::Marks { generation: 6 } }]);
    }
}

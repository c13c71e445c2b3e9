//! A gateway's durable checkpoint of marks (`FileId::Marks`), so that it may delete
//! segments and still know after a restart what was delivered where:
//! - the marks of the streams it receives: at a restart a gateway rebuilds them from its
//!   segments, and a stream whose records it deleted would otherwise come back lower, and
//!   be stored again when its sender resends. A middle tier uses them, to delete what the
//!   tier above acknowledged (`Node::apply_retention`);
//! - the marks of the subscribers its `cloud-to-edge` topics name (`Downlinks`): what
//!   each edge acknowledged, so that after a restart it may go on deleting what every
//!   subscriber holds without waiting for each to say where it stands again.
//!
//! Each checkpoint is a new generation, one frame, written by `crate::checkpoint`: synced,
//! and only then are the older generations deleted and the segments it covers deletable.
//! Recovery reads the newest generation that decodes (a crash mid-write leaves a torn
//! newest file, and the one before it still holds marks at least as high as every segment
//! deleted) and takes, per stream, the higher of its mark and what the segments show.
//!
//! ```text
//! frame kind Marks: version u8 (2), n u32, n × (origin u64, topic u16, mark u64),
//!                   m u32, m × (subscriber u64, topic u16, mark u64)
//! ```
//! Version 1 (a build before subscribers' marks) ends after the streams; it still decodes.

use crate::codec::{self, FrameError, FrameKind, ReadError, Reader};
use crate::config::NodeConfig;
use crate::memory::{MemoryPart, MemoryUsage};
use crate::types::{NodeId, Seq, TopicIdx};
use std::collections::BTreeMap;
use std::fmt;

const MARKS_VERSION: u8 = 2;

/// Marks by (node, topic): a stream's origin, or a subscriber.
pub type Marks = BTreeMap<(NodeId, TopicIdx), Seq>;
/// One mark: (node, topic) and where it stands.
pub type Mark = ((NodeId, TopicIdx), Seq);

/// What a checkpoint holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The durable marks of the streams the node receives (of a gateway that deletes what
    /// came up).
    pub streams: Marks,
    /// What each subscriber of a `cloud-to-edge` topic acknowledged.
    pub subscribers: Marks,
}

/// Whether a node writes checkpoints: a gateway that deletes what came up (a middle tier,
/// or a top with `gateway.up_retention`), or whose `cloud-to-edge` topics name their
/// subscribers.
pub fn written_by(cfg: &NodeConfig) -> bool {
    cfg.deletes_what_came_up() || cfg.named_subscriptions() > 0
}

/// The largest checkpoint of a node: `gateway.streams_max` streams on a gateway that
/// deletes what came up, and the subscriptions it names.
pub fn file_bytes_max(cfg: &NodeConfig) -> u64 {
    let streams = if cfg.deletes_what_came_up() { cfg.gateway.streams_max as u64 } else { 0 };
    (streams + cfg.named_subscriptions()) * MARK_ENTRY_BYTES + codec::FRAME_HEADER_LEN as u64 + 9
}

/// The writer's planned memory (part `Writes`): one checkpoint in flight.
pub(crate) fn planned(cfg: &NodeConfig) -> MemoryUsage {
    let mut m = MemoryUsage::default();
    if written_by(cfg) {
        m.set(MemoryPart::Writes, file_bytes_max(cfg));
    }
    m
}
/// Bytes one mark takes in a checkpoint.
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

/// Encodes a checkpoint as one frame: the streams' marks, then the subscribers', each in
/// key order.
pub fn encode(
    streams: impl ExactSizeIterator<Item = Mark>,
    subscribers: impl ExactSizeIterator<Item = Mark>,
    out: &mut Vec<u8>,
) {
    let start = codec::begin_frame(FrameKind::Marks, out);
    out.push(MARKS_VERSION);
    encode_section(streams, out);
    encode_section(subscribers, out);
    codec::finish_frame(start, out);
}

/// The bytes of a checkpoint of `streams` and `subscribers`, for `CheckpointWriter::write`.
pub(crate) fn encoded(
    streams: impl ExactSizeIterator<Item = Mark>,
    subscribers: impl ExactSizeIterator<Item = Mark>,
) -> Vec<u8> {
    let entries = streams.len() + subscribers.len();
    let mut bytes = Vec::with_capacity(entries * MARK_ENTRY_BYTES as usize + codec::FRAME_HEADER_LEN + 9);
    encode(streams, subscribers, &mut bytes);
    bytes
}

/// Encodes `c` (as [`encode`]).
pub fn encode_checkpoint(c: &Checkpoint, out: &mut Vec<u8>) {
    let entries = |m: &Marks| m.iter().map(|(&k, &v)| (k, v)).collect::<Vec<Mark>>();
    encode(entries(&c.streams).into_iter(), entries(&c.subscribers).into_iter(), out);
}

fn encode_section(marks: impl ExactSizeIterator<Item = Mark>, out: &mut Vec<u8>) {
    out.extend_from_slice(&u32::try_from(marks.len()).expect("marks are bounded by the config").to_le_bytes());
    for ((node, topic), mark) in marks {
        out.extend_from_slice(&node.0.to_le_bytes());
        out.extend_from_slice(&topic.0.to_le_bytes());
        out.extend_from_slice(&mark.to_le_bytes());
    }
}

/// Decodes a whole checkpoint file: exactly one valid frame, entries in order.
pub fn decode(bytes: &[u8]) -> Result<Checkpoint, MarksError> {
    let (frame, used) = codec::decode_frame(bytes).map_err(MarksError::Frame)?;
    if frame.kind != FrameKind::Marks || used != bytes.len() {
        return Err(MarksError::NotMarks);
    }
    let mut r = Reader::new(frame.payload);
    let version = r.u8().map_err(MarksError::Truncated)?;
    let sections = match version {
        1 => 1,
        MARKS_VERSION => 2,
        v => return Err(MarksError::Version(v)),
    };
    let mut c = Checkpoint::default();
    let mut left = frame.payload.len() as u64 - 1;
    for section in 0..sections {
        let n = u64::from(r.u32().map_err(MarksError::Truncated)?);
        left = left.checked_sub(4).ok_or(MarksError::Malformed("a count past its end"))?;
        let last_section = section + 1 == sections;
        let fits = if last_section { n * MARK_ENTRY_BYTES == left } else { n * MARK_ENTRY_BYTES + 4 <= left };
        if !fits {
            return Err(MarksError::Malformed("its count does not match its length"));
        }
        left -= n * MARK_ENTRY_BYTES;
        let marks = if section == 0 { &mut c.streams } else { &mut c.subscribers };
        let mut last = None;
        for _ in 0..n {
            let node = NodeId(r.u64().map_err(MarksError::Truncated)?);
            let topic = TopicIdx(r.u16().map_err(MarksError::Truncated)?);
            let mark = r.u64().map_err(MarksError::Truncated)?;
            if last.is_some_and(|l| l >= (node, topic)) {
                return Err(MarksError::Malformed("entries out of order"));
            }
            last = Some((node, topic));
            marks.insert((node, topic), mark);
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let streams =
            [((NodeId(3), TopicIdx(0)), 120), ((NodeId(3), TopicIdx(1)), 7), ((NodeId(9), TopicIdx(0)), u64::MAX)];
        let subscribers = [((NodeId(4), TopicIdx(2)), 33), ((NodeId(5), TopicIdx(2)), 0)];
        Checkpoint { streams: streams.into_iter().collect(), subscribers: subscribers.into_iter().collect() }
    }

    #[test]
    fn a_checkpoint_decodes_to_what_was_encoded_and_nothing_else_does() {
        let mut buf = Vec::new();
        encode_checkpoint(&sample(), &mut buf);
        assert_eq!(decode(&buf), Ok(sample()));
        assert!(decode(&buf[..buf.len() - 1]).is_err(), "torn");
        let mut two = buf.clone();
        two.extend_from_slice(&buf);
        assert_eq!(decode(&two), Err(MarksError::NotMarks));
        let mut empty = Vec::new();
        encode_checkpoint(&Checkpoint::default(), &mut empty);
        assert_eq!(decode(&empty), Ok(Checkpoint::default()));
    }

    #[test]
    fn a_version_1_checkpoint_still_decodes_to_its_streams() {
        let mut v1 = Vec::new();
        let start = codec::begin_frame(FrameKind::Marks, &mut v1);
        v1.push(1);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&3u64.to_le_bytes());
        v1.extend_from_slice(&0u16.to_le_bytes());
        v1.extend_from_slice(&120u64.to_le_bytes());
        codec::finish_frame(start, &mut v1);
        let streams = [((NodeId(3), TopicIdx(0)), 120)].into_iter().collect();
        assert_eq!(decode(&v1), Ok(Checkpoint { streams, subscribers: Marks::new() }));
    }
}

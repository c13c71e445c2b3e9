//! The sync messages between a sender and a receiver of streams (edge → gateway for
//! topics that go up, gateway → edge for `cloud-to-edge` topics; "edge" and "gw" below
//! name the up direction). Each message is one frame (see `codec`), so it
//! carries a version, a length and a CRC32C; the decoder checks every length against
//! what remains and returns a typed error for anything malformed.
//!
//! ```text
//! Hello   edge → gw   origin u64, session u64, hlc u64, n varint, n × topic name
//! Welcome gw → edge   session u64, hlc u64, n varint, n × (topic name, status u8, next_seq u64),
//!                     batch_raw_max u64, [zone name]   (absent: the receiver has no zone)
//! Data    edge → gw   session u64, hlc u64, topic name, n varint, n × (len varint, batch)
//! Ack     gw → edge   session u64, hlc u64, topic name, origin u64, next_seq u64, expected u64,
//!                     refused u8 (0, 1 or 2: see `Refusal`), [to u64 when 2]
//! Reset   gw → edge   session u64   (the gateway does not know this session: start over)
//! Skip    edge → gw   session u64, hlc u64, topic name, origin u64, from u64, to u64, reason u8
//! topic name = len u8 (1..=255), UTF-8 bytes
//! ```

use crate::codec::{self, FrameError, FrameKind, ReadError, Reader};
use crate::hlc::Hlc;
use crate::types::{NodeId, Seq};
use std::fmt;

/// Topics named in one Hello or Welcome, at most.
pub const TOPICS_PER_HELLO_MAX: usize = 1024;
/// Batches in one Data message, at most.
pub const BATCHES_PER_DATA_MAX: usize = 1024;

/// How the gateway answers for one topic of a Hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicStatus {
    /// Send from `next_seq`.
    Accepted = 0,
    /// The gateway has no such topic; do not send it.
    UnknownTopic = 1,
    /// The gateway tracks too many streams to take this one now; try a later session.
    TooManyStreams = 2,
}

/// What an Ack says the receiver did not take of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing refused: the answer to what it took, or its durable mark.
    None,
    /// It took nothing of the stream from `expected` on (a gap with nowhere to keep what
    /// followed, no room): send everything again from there.
    SendAgain,
    /// It lacks `expected..to` and kept what arrived from `to` on (up to a later gap, which
    /// it reports once this one is filled): send again only the messages holding that range.
    Missing { to: Seq },
}

impl Refusal {
    pub fn any(self) -> bool {
        self != Refusal::None
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncMsg {
    Hello {
        origin: NodeId,
        session: u64,
        hlc: Hlc,
        topics: Vec<String>,
    },
    /// `batch_raw_max`: the largest records section (uncompressed) the receiver stores; the
    /// sender builds no larger batch (a gateway's limit is far above what edges send; an
    /// edge's follows its own memory plan, which may be below a gateway's batches).
    Welcome {
        session: u64,
        hlc: Hlc,
        topics: Vec<(String, TopicStatus, Seq)>,
        batch_raw_max: u64,
        /// The receiver's compliance zone (`NodeConfig::zone`): the sender sends nothing of a
        /// classified topic whose placement does not allow it.
        zone: Option<String>,
    },
    /// `batches` are encoded record batches of this topic from the sender, in order.
    Data {
        session: u64,
        hlc: Hlc,
        topic: String,
        batches: Vec<Vec<u8>>,
    },
    /// `next_seq`: everything below of `origin`'s stream of `topic` is durable at the
    /// gateway. `expected`: the next sequence the gateway will accept (above `next_seq`
    /// while a commit is in flight). `origin` is the sender itself, except for the streams
    /// a relay forwards (a middle tier's of its edges). `refused`: whether the answered
    /// Data or Skip was refused for this stream, and what the sender must send again.
    Ack {
        session: u64,
        hlc: Hlc,
        topic: String,
        origin: NodeId,
        next_seq: Seq,
        expected: Seq,
        refused: Refusal,
    },
    Reset {
        session: u64,
    },
    /// Sequences `from..to` of `origin`'s stream of this topic will never be sent: the
    /// edge's only copy is unreadable, or the sequences were never used (see
    /// [`SkipReason`]); a relay forwards the holes of the streams it holds.
    Skip {
        session: u64,
        hlc: Hlc,
        topic: String,
        origin: NodeId,
        from: Seq,
        to: Seq,
        reason: SkipReason,
    },
}

/// Why an edge skips a range of its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The records' frames fail their checksum: storage destroyed them.
    Corrupted = 0,
    /// The range ends a segment past its last frame: recovery cut a tail there and
    /// moved the sequence on, so that no identity is ever reused. Records in it were
    /// either never acknowledged (a torn write) or destroyed by storage.
    Unwritten = 1,
    /// The edge no longer stores the range: retention deleted it after the gateway had
    /// acknowledged it, and the gateway has since lost its mark.
    Deleted = 2,
    /// The edge's storage budget was full and the topic's eviction policy let it delete
    /// records the gateway had not acknowledged (counted as `evicted_unsynced`); going
    /// down, the gateway's `retention_age` expired records the edge had not acknowledged.
    Evicted = 3,
    /// A relay never received the range: the tier below it skipped it for one of the
    /// reasons above.
    Hole = 4,
}

/// Why bytes from a peer are not a sync message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsgError {
    Frame(FrameError),
    /// The frame is valid but not a sync message.
    NotSync(FrameKind),
    Truncated(ReadError),
    TopicName {
        at: usize,
    },
    TooMany {
        what: &'static str,
        n: u64,
        max: usize,
    },
    /// A topic status or skip reason this version does not know.
    BadStatus(u8),
    /// An Ack's `refused` byte other than 0, 1 or 2.
    BadFlag(u8),
    TrailingBytes(usize),
    /// A Skip whose range is empty or reversed.
    EmptySkip {
        from: Seq,
        to: Seq,
    },
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgError::Frame(e) => write!(f, "bad frame: {e}"),
            MsgError::NotSync(k) => write!(f, "frame kind {k:?} is not a sync message"),
            MsgError::Truncated(e) => write!(f, "message truncated: {e}"),
            MsgError::TopicName { at } => write!(f, "invalid topic name at byte {at}"),
            MsgError::TooMany { what, n, max } => {
                write!(f, "{n} {what} in one message; at most {max}")
            }
            MsgError::BadStatus(s) => write!(f, "unknown topic status or skip reason {s}"),
            MsgError::BadFlag(b) => write!(f, "an Ack's refused flag is {b}; it must be 0, 1 or 2"),
            MsgError::EmptySkip { from, to } => write!(f, "skip of sequences {from}..{to} covers nothing"),
            MsgError::TrailingBytes(n) => write!(f, "{n} bytes after the end of the message"),
        }
    }
}

impl From<ReadError> for MsgError {
    fn from(e: ReadError) -> Self {
        MsgError::Truncated(e)
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    assert!(!name.is_empty() && name.len() <= 255, "topic names are validated by the config");
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

fn get_name(r: &mut Reader<'_>) -> Result<String, MsgError> {
    let at = r.position();
    let n = r.u8()? as usize;
    let bytes = r.bytes(n)?;
    if n == 0 {
        return Err(MsgError::TopicName { at });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| MsgError::TopicName { at })
}

fn count(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<usize, MsgError> {
    let n = r.varint()?;
    if n > max as u64 {
        return Err(MsgError::TooMany { what, n, max });
    }
    Ok(n as usize)
}

/// Whether `bytes` are a receiver's answer to a sender (Welcome, Ack, Reset): a node takes
/// these at once, never behind messages its own receiver holds for the clock.
pub fn is_answer_frame(bytes: &[u8]) -> bool {
    matches!(
        codec::decode_frame(bytes),
        Ok((f, _)) if matches!(f.kind, FrameKind::SyncWelcome | FrameKind::SyncAck | FrameKind::SyncReset)
    )
}

impl SyncMsg {
    /// Appends the message as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = match self {
            SyncMsg::Hello { .. } => FrameKind::SyncHello,
            SyncMsg::Welcome { .. } => FrameKind::SyncWelcome,
            SyncMsg::Data { .. } => FrameKind::SyncData,
            SyncMsg::Ack { .. } => FrameKind::SyncAck,
            SyncMsg::Reset { .. } => FrameKind::SyncReset,
            SyncMsg::Skip { .. } => FrameKind::SyncSkip,
        };
        let start = codec::begin_frame(kind, out);
        match self {
            SyncMsg::Hello { origin, session, hlc, topics } => {
                assert!(topics.len() <= TOPICS_PER_HELLO_MAX);
                out.extend_from_slice(&origin.0.to_le_bytes());
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&hlc.0.to_le_bytes());
                codec::put_varint(out, topics.len() as u64);
                for t in topics {
                    put_name(out, t);
                }
            }
            SyncMsg::Welcome { session, hlc, topics, batch_raw_max, zone } => {
                assert!(topics.len() <= TOPICS_PER_HELLO_MAX);
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&hlc.0.to_le_bytes());
                codec::put_varint(out, topics.len() as u64);
                for (t, status, next) in topics {
                    put_name(out, t);
                    out.push(*status as u8);
                    out.extend_from_slice(&next.to_le_bytes());
                }
                out.extend_from_slice(&batch_raw_max.to_le_bytes());
                if let Some(zone) = zone {
                    put_name(out, zone);
                }
            }
            SyncMsg::Data { session, hlc, topic, batches } => {
                assert!(batches.len() <= BATCHES_PER_DATA_MAX);
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&hlc.0.to_le_bytes());
                put_name(out, topic);
                codec::put_varint(out, batches.len() as u64);
                for b in batches {
                    codec::put_varint(out, b.len() as u64);
                    out.extend_from_slice(b);
                }
            }
            SyncMsg::Ack { session, hlc, topic, origin, next_seq, expected, refused } => {
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&hlc.0.to_le_bytes());
                put_name(out, topic);
                out.extend_from_slice(&origin.0.to_le_bytes());
                out.extend_from_slice(&next_seq.to_le_bytes());
                out.extend_from_slice(&expected.to_le_bytes());
                match refused {
                    Refusal::None => out.push(0),
                    Refusal::SendAgain => out.push(1),
                    Refusal::Missing { to } => {
                        out.push(2);
                        out.extend_from_slice(&to.to_le_bytes());
                    }
                }
            }
            SyncMsg::Reset { session } => out.extend_from_slice(&session.to_le_bytes()),
            SyncMsg::Skip { session, hlc, topic, origin, from, to, reason } => {
                assert!(from < to, "a skip covers at least one sequence");
                out.extend_from_slice(&session.to_le_bytes());
                out.extend_from_slice(&hlc.0.to_le_bytes());
                put_name(out, topic);
                out.extend_from_slice(&origin.0.to_le_bytes());
                out.extend_from_slice(&from.to_le_bytes());
                out.extend_from_slice(&to.to_le_bytes());
                out.push(*reason as u8);
            }
        }
        codec::finish_frame(start, out);
    }

    /// Decodes one whole frame. Batches inside Data are returned as bytes; their own
    /// validation is the receiver's (`codec::DecodedBatch`).
    pub fn decode(bytes: &[u8]) -> Result<SyncMsg, MsgError> {
        let (frame, used) = codec::decode_frame(bytes).map_err(MsgError::Frame)?;
        if used != bytes.len() {
            return Err(MsgError::TrailingBytes(bytes.len() - used));
        }
        let mut r = Reader::new(frame.payload);
        let msg = match frame.kind {
            FrameKind::SyncHello => {
                let origin = NodeId(r.u64()?);
                let session = r.u64()?;
                let hlc = Hlc(r.u64()?);
                let n = count(&mut r, "topics", TOPICS_PER_HELLO_MAX)?;
                let mut topics = Vec::with_capacity(n);
                for _ in 0..n {
                    topics.push(get_name(&mut r)?);
                }
                SyncMsg::Hello { origin, session, hlc, topics }
            }
            FrameKind::SyncWelcome => {
                let session = r.u64()?;
                let hlc = Hlc(r.u64()?);
                let n = count(&mut r, "topics", TOPICS_PER_HELLO_MAX)?;
                let mut topics = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = get_name(&mut r)?;
                    let status = match r.u8()? {
                        0 => TopicStatus::Accepted,
                        1 => TopicStatus::UnknownTopic,
                        2 => TopicStatus::TooManyStreams,
                        s => return Err(MsgError::BadStatus(s)),
                    };
                    topics.push((name, status, r.u64()?));
                }
                let batch_raw_max = r.u64()?;
                let zone = if r.is_empty() { None } else { Some(get_name(&mut r)?) };
                SyncMsg::Welcome { session, hlc, topics, batch_raw_max, zone }
            }
            FrameKind::SyncData => {
                let session = r.u64()?;
                let hlc = Hlc(r.u64()?);
                let topic = get_name(&mut r)?;
                let n = count(&mut r, "batches", BATCHES_PER_DATA_MAX)?;
                let mut batches = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = r.varint()?;
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    batches.push(r.bytes(len)?.to_vec());
                }
                SyncMsg::Data { session, hlc, topic, batches }
            }
            FrameKind::SyncAck => {
                let session = r.u64()?;
                let hlc = Hlc(r.u64()?);
                let topic = get_name(&mut r)?;
                let origin = NodeId(r.u64()?);
                let next_seq = r.u64()?;
                let expected = r.u64()?;
                let refused = match r.u8()? {
                    0 => Refusal::None,
                    1 => Refusal::SendAgain,
                    2 => Refusal::Missing { to: r.u64()? },
                    b => return Err(MsgError::BadFlag(b)),
                };
                SyncMsg::Ack { session, hlc, topic, origin, next_seq, expected, refused }
            }
            FrameKind::SyncReset => SyncMsg::Reset { session: r.u64()? },
            FrameKind::SyncSkip => {
                let session = r.u64()?;
                let hlc = Hlc(r.u64()?);
                let topic = get_name(&mut r)?;
                let origin = NodeId(r.u64()?);
                let from = r.u64()?;
                let to = r.u64()?;
                if from >= to {
                    return Err(MsgError::EmptySkip { from, to });
                }
                let reason = match r.u8()? {
                    0 => SkipReason::Corrupted,
                    1 => SkipReason::Unwritten,
                    2 => SkipReason::Deleted,
                    3 => SkipReason::Evicted,
                    4 => SkipReason::Hole,
                    s => return Err(MsgError::BadStatus(s)),
                };
                SyncMsg::Skip { session, hlc, topic, origin, from, to, reason }
            }
            k => return Err(MsgError::NotSync(k)),
        };
        if r.remaining() != 0 {
            return Err(MsgError::TrailingBytes(r.remaining()));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z.]{1,40}"
    }

    fn msg() -> impl Strategy<Value = SyncMsg> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), any::<u64>(), prop::collection::vec(name(), 0..5))
                .prop_map(|(o, s, h, topics)| SyncMsg::Hello { origin: NodeId(o), session: s, hlc: Hlc(h), topics }),
            (
                any::<u64>(),
                any::<u64>(),
                prop::collection::vec((name(), 0u8..3, any::<u64>()), 0..5),
                any::<u64>(),
                prop::option::of(name())
            )
                .prop_map(|(s, h, t, batch_raw_max, zone)| SyncMsg::Welcome {
                    batch_raw_max,
                    zone,
                    session: s,
                    hlc: Hlc(h),
                    topics: t
                        .into_iter()
                        .map(|(n, st, q)| {
                            let st = [TopicStatus::Accepted, TopicStatus::UnknownTopic, TopicStatus::TooManyStreams]
                                [st as usize];
                            (n, st, q)
                        })
                        .collect(),
                }),
            (
                any::<u64>(),
                any::<u64>(),
                name(),
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..4)
            )
                .prop_map(|(s, h, topic, batches)| SyncMsg::Data {
                    session: s,
                    hlc: Hlc(h),
                    topic,
                    batches
                }),
            (any::<u64>(), any::<u64>(), name(), any::<u64>(), any::<u64>(), any::<u64>(), 0u8..3, any::<u64>())
                .prop_map(|(s, h, topic, o, n, e, r, to)| SyncMsg::Ack {
                    session: s,
                    hlc: Hlc(h),
                    topic,
                    origin: NodeId(o),
                    next_seq: n,
                    expected: e,
                    refused: [Refusal::None, Refusal::SendAgain, Refusal::Missing { to }][r as usize]
                }),
            any::<u64>().prop_map(|s| SyncMsg::Reset { session: s }),
            (any::<u64>(), any::<u64>(), name(), any::<u64>(), any::<u64>(), 1u64..1 << 40, 0u8..5).prop_map(
                |(s, h, topic, o, from, n, r)| SyncMsg::Skip {
                    session: s,
                    hlc: Hlc(h),
                    topic,
                    origin: NodeId(o),
                    from: from / 2,
                    to: from / 2 + n,
                    reason: [
                        SkipReason::Corrupted,
                        SkipReason::Unwritten,
                        SkipReason::Deleted,
                        SkipReason::Evicted,
                        SkipReason::Hole
                    ][r as usize],
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(m in msg()) {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            prop_assert_eq!(SyncMsg::decode(&buf), Ok(m));
        }

        #[test]
        fn every_mutation_is_rejected(m in msg(), at in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            let mut flipped = buf.clone();
            let i = at.index(flipped.len());
            flipped[i] ^= 1 << bit;
            prop_assert!(SyncMsg::decode(&flipped).is_err());
            let n = cut.index(buf.len());
            prop_assert!(SyncMsg::decode(&buf[..n]).is_err());
            let mut longer = buf.clone();
            longer.push(0);
            prop_assert!(SyncMsg::decode(&longer).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = SyncMsg::decode(&bytes);
        }
    }
}

//! The checkpoint of a node's keyed states (`FileId::KeyedCheckpoint`), so that the logs
//! of keyed topics may be deleted and recovery stays bounded: a restart loads the newest
//! checkpoint that decodes and merges only the records after what it covers.
//!
//! Per keyed topic (by name: a file outlives a reordering of the topics), the state
//! (`keyed::snapshot`), and per half of the topic the log offset below which every record
//! of that half is merged into it. On a top gateway also what its fan-out copied
//! (`keyed_fanout`): per origin of the half that goes up, the highest sequence whose copy
//! is durable. Written by `crate::checkpoint` (a generation at a time, synced before any
//! segment it covers may go). Since version 2 also per topic the newest write merged of
//! each origin (`keyed_reads::Observed`), what causal and bounded reads rest on. Bounded
//! by the topics' state limits
//! ([`file_bytes_max`]).
//!
//! ```text
//! frame kind KeyedCheckpoint: version u8 (1), n u16, n × state
//! state: name_len u16, name, halves u8, halves × (direction u8, covered u64),
//!        relayed u32, relayed × (origin u64, seq u64),
//!        observed u16 (<= 1024), overflowed u8 (0, 1), observed × (origin u64, seq u64, hlc u64),
//!        len u32, len × snapshot byte
//! direction: 0 edge-to-cloud, 1 cloud-to-edge, 2 bidirectional, 3 local
//! ```

use crate::codec::{self, FrameError, FrameKind, ReadError, Reader};
use crate::config::{NodeConfig, Role, SyncDirection};
use crate::hlc::Hlc;
use crate::keyed::{snapshot, KeyedState};
use crate::keyed_reads::{Observed, OBSERVED_ORIGINS_MAX};
use crate::types::{NodeId, Seq};
use std::fmt;

const VERSION: u8 = 2;
/// A half's entry: direction and offset.
const HALF_BYTES: u64 = 9;
/// A relayed mark: origin and sequence.
const RELAYED_BYTES: u64 = 16;
/// An observed origin: origin, sequence and timestamp.
const OBSERVED_BYTES: u64 = 24;

/// One keyed topic's part of a checkpoint, as written.
#[derive(Debug)]
pub struct StateOut<'a> {
    pub name: &'a str,
    /// Per half, its direction and the log offset below which its records are merged.
    pub halves: Vec<(SyncDirection, Seq)>,
    /// A top gateway's fan-out: per origin, the highest sequence whose copy is durable.
    pub relayed: Vec<(NodeId, Seq)>,
    pub observed: &'a Observed,
    pub state: &'a KeyedState,
}

/// One keyed topic's part of a checkpoint, as read: its state still encoded (decoding
/// it needs the topic's strategy and limits, `keyed::snapshot::decode`).
#[derive(Debug, PartialEq, Eq)]
pub struct StateIn<'a> {
    pub name: &'a str,
    pub halves: Vec<(SyncDirection, Seq)>,
    pub relayed: Vec<(NodeId, Seq)>,
    pub observed: Observed,
    pub state: &'a [u8],
}

/// Why a checkpoint does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedCheckpointError {
    Frame(FrameError),
    /// Bytes after the checkpoint's frame, or a frame of another kind.
    NotKeyedCheckpoint,
    Version(u8),
    Truncated(ReadError),
    Malformed(&'static str),
}

impl fmt::Display for KeyedCheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyedCheckpointError::Frame(e) => write!(f, "bad frame: {e}"),
            KeyedCheckpointError::NotKeyedCheckpoint => write!(f, "not one keyed checkpoint frame"),
            KeyedCheckpointError::Version(v) => write!(f, "keyed checkpoint version {v}; this build reads {VERSION}"),
            KeyedCheckpointError::Truncated(e) => write!(f, "keyed checkpoint truncated: {e}"),
            KeyedCheckpointError::Malformed(what) => write!(f, "keyed checkpoint malformed: {what}"),
        }
    }
}

impl std::error::Error for KeyedCheckpointError {}

fn direction_code(d: SyncDirection) -> u8 {
    match d {
        SyncDirection::EdgeToCloud => 0,
        SyncDirection::CloudToEdge => 1,
        SyncDirection::Bidirectional => 2,
        SyncDirection::Local => 3,
    }
}

fn direction_of(code: u8) -> Option<SyncDirection> {
    Some(match code {
        0 => SyncDirection::EdgeToCloud,
        1 => SyncDirection::CloudToEdge,
        2 => SyncDirection::Bidirectional,
        3 => SyncDirection::Local,
        _ => return None,
    })
}

/// Encodes a checkpoint of `states` as one frame.
pub fn encode(states: &[StateOut<'_>], out: &mut Vec<u8>) {
    let start = codec::begin_frame(FrameKind::KeyedCheckpoint, out);
    out.push(VERSION);
    out.extend_from_slice(&u16::try_from(states.len()).expect("topics are counted in u16").to_le_bytes());
    for s in states {
        out.extend_from_slice(&u16::try_from(s.name.len()).expect("topic names are short").to_le_bytes());
        out.extend_from_slice(s.name.as_bytes());
        out.push(u8::try_from(s.halves.len()).expect("a topic has at most two halves"));
        for &(direction, covered) in &s.halves {
            out.push(direction_code(direction));
            out.extend_from_slice(&covered.to_le_bytes());
        }
        out.extend_from_slice(&u32::try_from(s.relayed.len()).expect("streams are bounded").to_le_bytes());
        for &(origin, seq) in &s.relayed {
            out.extend_from_slice(&origin.0.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        let observed = s.observed.entries();
        out.extend_from_slice(&u16::try_from(observed.len()).expect("at most 1,024 origins").to_le_bytes());
        out.push(u8::from(s.observed.overflowed()));
        for &(origin, seq, hlc) in observed {
            for v in [origin.0, seq, hlc.0] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        snapshot::encode(s.state, out);
        let len = u32::try_from(out.len() - len_at - 4).expect("a state is bounded by its limit");
        out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
    codec::finish_frame(start, out);
}

/// Decodes a whole checkpoint file: exactly one valid frame; names unique, relayed marks
/// in origin order.
pub fn decode(bytes: &[u8]) -> Result<Vec<StateIn<'_>>, KeyedCheckpointError> {
    use KeyedCheckpointError as E;
    let (frame, used) = codec::decode_frame(bytes).map_err(E::Frame)?;
    if frame.kind != FrameKind::KeyedCheckpoint || used != bytes.len() {
        return Err(E::NotKeyedCheckpoint);
    }
    let mut r = Reader::new(frame.payload);
    match r.u8().map_err(E::Truncated)? {
        VERSION => {}
        v => return Err(E::Version(v)),
    }
    let n = r.u16().map_err(E::Truncated)?;
    let mut states: Vec<StateIn<'_>> = Vec::new();
    for _ in 0..n {
        let name_len = r.u16().map_err(E::Truncated)?;
        let name = std::str::from_utf8(r.bytes(usize::from(name_len)).map_err(E::Truncated)?)
            .map_err(|_| E::Malformed("a topic name that is not UTF-8"))?;
        if states.iter().any(|s| s.name == name) {
            return Err(E::Malformed("a topic twice"));
        }
        let halves_n = r.u8().map_err(E::Truncated)?;
        if halves_n > 2 {
            return Err(E::Malformed("more than two halves"));
        }
        let mut halves: Vec<(SyncDirection, Seq)> = Vec::with_capacity(usize::from(halves_n));
        for _ in 0..halves_n {
            let d = direction_of(r.u8().map_err(E::Truncated)?).ok_or(E::Malformed("an unknown direction"))?;
            if halves.iter().any(|&(h, _)| h == d) {
                return Err(E::Malformed("a half twice"));
            }
            halves.push((d, r.u64().map_err(E::Truncated)?));
        }
        let relayed_n = u64::from(r.u32().map_err(E::Truncated)?);
        if relayed_n * RELAYED_BYTES > r.remaining() as u64 {
            return Err(E::Malformed("more relayed marks than bytes"));
        }
        let mut relayed: Vec<(NodeId, Seq)> = Vec::with_capacity(relayed_n as usize);
        for _ in 0..relayed_n {
            let origin = NodeId(r.u64().map_err(E::Truncated)?);
            if relayed.last().is_some_and(|&(o, _)| o >= origin) {
                return Err(E::Malformed("relayed marks out of order"));
            }
            relayed.push((origin, r.u64().map_err(E::Truncated)?));
        }
        let observed_n = r.u16().map_err(E::Truncated)?;
        if usize::from(observed_n) > OBSERVED_ORIGINS_MAX {
            return Err(E::Malformed("more observed origins than a node keeps"));
        }
        let overflowed = match r.u8().map_err(E::Truncated)? {
            0 => false,
            1 => true,
            _ => return Err(E::Malformed("an overflow flag that is neither 0 nor 1")),
        };
        let mut newest = Vec::with_capacity(usize::from(observed_n).min(r.remaining() / OBSERVED_BYTES as usize));
        for _ in 0..observed_n {
            let origin = NodeId(r.u64().map_err(E::Truncated)?);
            newest.push((origin, r.u64().map_err(E::Truncated)?, Hlc(r.u64().map_err(E::Truncated)?)));
        }
        let observed =
            Observed::from_entries(newest, overflowed).ok_or(E::Malformed("observed origins out of order"))?;
        let len = r.u32().map_err(E::Truncated)?;
        let state = r.bytes(len as usize).map_err(E::Truncated)?;
        states.push(StateIn { name, halves, relayed, observed, state });
    }
    if !r.is_empty() {
        return Err(E::Malformed("bytes after the last state"));
    }
    Ok(states)
}

/// The largest checkpoint of a node: each keyed topic's name, halves and state at its
/// limits, and on a top gateway a relayed mark per stream it receives of each topic it
/// copies.
pub fn file_bytes_max(cfg: &NodeConfig) -> u64 {
    bytes_max(cfg, |_| true)
}

/// The most bytes the keyed states of a site member's strong keyed topics take in the
/// site's Raft snapshot (`KeyedTopics::site_snapshot`); 0 without any.
pub fn site_bytes_max(cfg: &NodeConfig) -> u64 {
    let strong = |t: &crate::config::TopicConfig| t.is_strong() && cfg.cluster.is_some();
    if !cfg.topics.iter().any(|t| t.keyed.is_some() && strong(t)) {
        return 0;
    }
    bytes_max(cfg, strong)
}

fn bytes_max(cfg: &NodeConfig, of: impl Fn(&crate::config::TopicConfig) -> bool) -> u64 {
    let mut names: Vec<&str> = Vec::new();
    let mut bytes = codec::FRAME_HEADER_LEN as u64 + 3;
    for t in cfg.topics.iter().filter(|t| of(t)) {
        let Some(k) = &t.keyed else { continue };
        if names.contains(&t.name.as_str()) {
            continue;
        }
        names.push(&t.name);
        // (Only a top gateway copies a bidirectional topic's writes, `keyed_fanout`.)
        let copies = cfg.role == Role::Gateway && cfg.upstream.is_none() && t.both_ways;
        let relayed = if copies { cfg.gateway.streams_max as u64 * RELAYED_BYTES } else { 0 };
        let observed = 3 + OBSERVED_ORIGINS_MAX as u64 * OBSERVED_BYTES;
        bytes += 2 + t.name.len() as u64 + 1 + 2 * HALF_BYTES + 4 + relayed + observed + 4;
        bytes += snapshot::encoded_bytes_max(k.limits);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::{Dot, KeyedLimits, Strategy};

    fn state() -> KeyedState {
        KeyedState::new(Strategy::LastWriteWins, KeyedLimits { state_bytes_max: 1 << 20, conflict_log_bytes_max: 4096 })
    }

    #[test]
    fn a_checkpoint_decodes_to_what_was_encoded_and_nothing_else_does() {
        let (s, none) = (state(), Observed::default());
        let mut seen = Observed::default();
        seen.note(Dot { origin: NodeId(5), seq: 3 }, Hlc(9 << 20));
        seen.note(Dot { origin: NodeId(2), seq: 11 }, Hlc(7 << 20));
        let states = [
            StateOut {
                name: "prices",
                halves: vec![(SyncDirection::EdgeToCloud, 40), (SyncDirection::CloudToEdge, 7)],
                relayed: vec![(NodeId(2), 11), (NodeId(5), 3)],
                observed: &seen,
                state: &s,
            },
            StateOut {
                name: "notes",
                halves: vec![(SyncDirection::Local, 0)],
                relayed: vec![],
                observed: &none,
                state: &s,
            },
        ];
        let mut buf = Vec::new();
        encode(&states, &mut buf);
        let got = decode(&buf).expect("decodes");
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].name, &got[0].halves, &got[0].relayed), ("prices", &states[0].halves, &states[0].relayed));
        assert_eq!((got[1].name, &got[1].halves), ("notes", &states[1].halves));
        assert_eq!((&got[0].observed, &got[1].observed), (&seen, &none), "what reads rest on");
        let mut one = Vec::new();
        snapshot::encode(&s, &mut one);
        assert_eq!(got[1].state, &one[..], "the state's bytes are the snapshot's");
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "torn at {cut}");
        }
        let mut two = buf.clone();
        two.extend_from_slice(&buf);
        assert_eq!(decode(&two), Err(KeyedCheckpointError::NotKeyedCheckpoint));
    }

    #[test]
    fn a_topic_twice_or_marks_out_of_order_do_not_decode() {
        let (s, none) = (state(), Observed::default());
        let twice = [
            StateOut { name: "a", halves: vec![], relayed: vec![], observed: &none, state: &s },
            StateOut { name: "a", halves: vec![], relayed: vec![], observed: &none, state: &s },
        ];
        let mut buf = Vec::new();
        encode(&twice, &mut buf);
        assert_eq!(decode(&buf), Err(KeyedCheckpointError::Malformed("a topic twice")));
        let relayed = vec![(NodeId(5), 1), (NodeId(2), 1)];
        let disorder = [StateOut { name: "a", halves: vec![], relayed, observed: &none, state: &s }];
        buf.clear();
        encode(&disorder, &mut buf);
        assert_eq!(decode(&buf), Err(KeyedCheckpointError::Malformed("relayed marks out of order")));
    }
}

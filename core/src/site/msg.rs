//! Bytes a site cluster exchanges and stores: messages between members ([`SiteMsg`], one
//! codec frame of kind `Site` each), the commands in the Raft log ([`Command`]) and the
//! state machine's snapshot ([`StrongSnapshot`]). All come from outside (a peer, or a
//! disk a peer's bytes were stored on): every decoder checks versions, lengths and
//! limits, bounds its allocations by the input, and returns a typed [`SiteMsgError`].

use crate::codec::{self, FrameKind, ReadError, Reader, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::hlc::Hlc;
use crate::raft::wire::{self, WireError};
use crate::raft::{Envelope, Term};
use crate::types::{NodeId, Seq};
use std::fmt;

/// The version byte every site message, command and snapshot starts with.
pub const SITE_VERSION: u8 = 1;
/// Topic names are at most this long (as in the node's configuration).
pub const TOPIC_NAME_MAX: usize = 255;
/// Topics one `Marks` command or one snapshot names at most.
pub const TOPICS_MAX: usize = 1024;
/// The longest reason a refused forward carries.
pub const REASON_MAX: usize = 512;

const MSG_RAFT: u8 = 1;
const MSG_PING: u8 = 2;
const MSG_FORWARD: u8 = 3;
const MSG_FORWARD_REFUSED: u8 = 4;

const CMD_WRITE: u8 = 1;
const CMD_MARKS: u8 = 2;

/// A message between two members of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteMsg {
    Raft(Envelope),
    /// Liveness for the peer failure detector: Raft followers do not talk to each other.
    Ping,
    /// A strong write taken by `origin`, for the leader of `term` to propose.
    Forward {
        term: Term,
        write: Write,
    },
    /// The leader did not propose the forwarded write `hlc` (and never will).
    ForwardRefused {
        hlc: Hlc,
        reason: String,
    },
}

/// One strong write: who took it from its producer, under which timestamp (unique per
/// member: the member's HLC never repeats), and the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub origin: NodeId,
    pub hlc: Hlc,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// A command in the site's Raft log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Write(Write),
    /// The gateway holds every record of each named topic below the sequence: what the
    /// leader's cluster uplink heard acknowledged. Lets every member compact its log.
    Marks(Vec<(String, Seq)>),
}

/// The strong topics' state machine as of a Raft index: per topic, the next sequence of
/// the cluster's stream, the gateway's acknowledged mark, and the newest record timestamp;
/// and the keyed states of strong keyed topics (a keyed checkpoint frame,
/// `crate::keyed_checkpoint`, decoded and checked by its own decoder; empty: none). Those
/// states may hold writes applied after the snapshot's index: Raft applies them again
/// after it, and a keyed state merges a write it holds as `Seen`.
///
/// ```text
/// snapshot  version u8, n u32, n × (name, next_seq u64, gateway_mark u64, last_hlc u64),
///           then, only with keyed states (so a snapshot without any is as it was
///           before strong keyed topics existed, and every snapshot has one encoding):
///           keyed_len u32 (1..=KEYED_SNAPSHOT_BYTES_MAX), keyed_len bytes
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StrongSnapshot {
    pub topics: Vec<StrongTopic>,
    pub keyed: Vec<u8>,
}

/// The most bytes of keyed states a snapshot carries: what Raft's snapshot limit leaves
/// after a megabyte for the topics' entries (`NodeConfig::validate` keeps the strong keyed
/// topics' states within it).
pub const KEYED_SNAPSHOT_BYTES_MAX: usize = crate::raft::wire::SNAPSHOT_BYTES_MAX - (1 << 20);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrongTopic {
    pub name: String,
    pub next_seq: Seq,
    pub gateway_mark: Seq,
    pub last_hlc: Hlc,
}

/// Why bytes are not a valid site message, command or snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteMsgError {
    Frame(codec::FrameError),
    /// The frame is not of kind `Site`.
    NotSite,
    Read(ReadError),
    UnknownVersion(u8),
    UnknownKind(u8),
    Raft(WireError),
    /// A length or count above its limit.
    TooLong {
        what: &'static str,
        len: u64,
        max: usize,
    },
    /// A flag byte other than 0 or 1.
    BadFlag {
        at: usize,
        found: u8,
    },
    NotUtf8 {
        what: &'static str,
    },
    TrailingBytes(usize),
}

impl fmt::Display for SiteMsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteMsgError::Frame(e) => write!(f, "site frame: {e}"),
            SiteMsgError::NotSite => f.write_str("not a site frame"),
            SiteMsgError::Read(e) => write!(f, "site message: {e}"),
            SiteMsgError::UnknownVersion(v) => write!(
                f,
                "site message version {v} (this build reads {SITE_VERSION}): members must run compatible versions"
            ),
            SiteMsgError::UnknownKind(k) => write!(f, "unknown site message or command kind {k}"),
            SiteMsgError::Raft(e) => write!(f, "raft message: {e}"),
            SiteMsgError::TooLong { what, len, max } => write!(f, "{what} of {len} is above the limit of {max}"),
            SiteMsgError::BadFlag { at, found } => write!(f, "flag byte {found} at offset {at}; expected 0 or 1"),
            SiteMsgError::NotUtf8 { what } => write!(f, "{what} is not UTF-8"),
            SiteMsgError::TrailingBytes(n) => write!(f, "{n} bytes after the end of the message"),
        }
    }
}

impl From<ReadError> for SiteMsgError {
    fn from(e: ReadError) -> Self {
        SiteMsgError::Read(e)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn get_bytes<'a>(r: &mut Reader<'a>, what: &'static str, max: usize) -> Result<&'a [u8], SiteMsgError> {
    let len = r.u32()?;
    if len as usize > max {
        return Err(SiteMsgError::TooLong { what, len: u64::from(len), max });
    }
    Ok(r.bytes(len as usize)?)
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    assert!(name.len() <= TOPIC_NAME_MAX, "topic names are validated by the config");
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

fn get_name(r: &mut Reader<'_>) -> Result<String, SiteMsgError> {
    let len = r.u8()? as usize;
    let b = r.bytes(len)?;
    String::from_utf8(b.to_vec()).map_err(|_| SiteMsgError::NotUtf8 { what: "topic name" })
}

fn get_string(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<String, SiteMsgError> {
    let b = get_bytes(r, what, max)?;
    String::from_utf8(b.to_vec()).map_err(|_| SiteMsgError::NotUtf8 { what })
}

fn get_flag(r: &mut Reader<'_>) -> Result<bool, SiteMsgError> {
    let at = r.position();
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        found => Err(SiteMsgError::BadFlag { at, found }),
    }
}

fn get_count(r: &mut Reader<'_>, what: &'static str, max: usize, min_bytes_each: usize) -> Result<usize, SiteMsgError> {
    let n = r.u32()? as usize;
    if n > max {
        return Err(SiteMsgError::TooLong { what, len: n as u64, max });
    }
    if n.saturating_mul(min_bytes_each) > r.remaining() {
        return Err(ReadError::Truncated { at: r.position(), needed: n * min_bytes_each }.into());
    }
    Ok(n)
}

fn put_write(out: &mut Vec<u8>, w: &Write) {
    out.extend_from_slice(&w.origin.0.to_le_bytes());
    out.extend_from_slice(&w.hlc.0.to_le_bytes());
    put_name(out, &w.topic);
    match &w.key {
        Some(k) => {
            out.push(1);
            put_bytes(out, k);
        }
        None => out.push(0),
    }
    put_bytes(out, &w.value);
}

fn get_write(r: &mut Reader<'_>) -> Result<Write, SiteMsgError> {
    let origin = NodeId(r.u64()?);
    let hlc = Hlc(r.u64()?);
    let topic = get_name(r)?;
    let key = if get_flag(r)? { Some(get_bytes(r, "key", MAX_KEY_BYTES)?.to_vec()) } else { None };
    let value = get_bytes(r, "value", MAX_VALUE_BYTES)?.to_vec();
    Ok(Write { origin, hlc, topic, key, value })
}

fn finish<T>(r: &Reader<'_>, v: T) -> Result<T, SiteMsgError> {
    if r.is_empty() {
        Ok(v)
    } else {
        Err(SiteMsgError::TrailingBytes(r.remaining()))
    }
}

fn check_version(r: &mut Reader<'_>) -> Result<(), SiteMsgError> {
    match r.u8()? {
        SITE_VERSION => Ok(()),
        v => Err(SiteMsgError::UnknownVersion(v)),
    }
}

impl SiteMsg {
    /// Appends one `Site` frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = codec::begin_frame(FrameKind::Site, out);
        out.push(SITE_VERSION);
        match self {
            SiteMsg::Raft(env) => {
                out.push(MSG_RAFT);
                wire::encode(env, out);
            }
            SiteMsg::Ping => out.push(MSG_PING),
            SiteMsg::Forward { term, write } => {
                out.push(MSG_FORWARD);
                out.extend_from_slice(&term.to_le_bytes());
                put_write(out, write);
            }
            SiteMsg::ForwardRefused { hlc, reason } => {
                out.push(MSG_FORWARD_REFUSED);
                out.extend_from_slice(&hlc.0.to_le_bytes());
                let cut = reason.char_indices().map(|(i, c)| i + c.len_utf8()).take_while(|&e| e <= REASON_MAX).last();
                put_bytes(out, &reason.as_bytes()[..cut.unwrap_or(0)]);
            }
        }
        codec::finish_frame(start, out);
    }

    /// Decodes one whole `Site` frame.
    pub fn decode(bytes: &[u8]) -> Result<SiteMsg, SiteMsgError> {
        let (frame, used) = codec::decode_frame(bytes).map_err(SiteMsgError::Frame)?;
        if frame.kind != FrameKind::Site {
            return Err(SiteMsgError::NotSite);
        }
        if used != bytes.len() {
            return Err(SiteMsgError::TrailingBytes(bytes.len() - used));
        }
        let mut r = Reader::new(frame.payload);
        check_version(&mut r)?;
        match r.u8()? {
            MSG_RAFT => {
                let rest = r.bytes(r.remaining())?;
                wire::decode(rest).map(SiteMsg::Raft).map_err(SiteMsgError::Raft)
            }
            MSG_PING => finish(&r, SiteMsg::Ping),
            MSG_FORWARD => {
                let term = r.u64()?;
                let write = get_write(&mut r)?;
                finish(&r, SiteMsg::Forward { term, write })
            }
            MSG_FORWARD_REFUSED => {
                let hlc = Hlc(r.u64()?);
                let reason = get_string(&mut r, "reason", REASON_MAX)?;
                finish(&r, SiteMsg::ForwardRefused { hlc, reason })
            }
            k => Err(SiteMsgError::UnknownKind(k)),
        }
    }
}

/// Whether `bytes` start a `Site` frame (so a node hands them to its site, not to sync).
pub fn is_site_frame(bytes: &[u8]) -> bool {
    matches!(codec::decode_frame(bytes), Ok((f, _)) if f.kind == FrameKind::Site)
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SITE_VERSION];
        match self {
            Command::Write(w) => {
                out.push(CMD_WRITE);
                put_write(&mut out, w);
            }
            Command::Marks(marks) => {
                out.push(CMD_MARKS);
                out.extend_from_slice(&(marks.len() as u32).to_le_bytes());
                for (name, seq) in marks {
                    put_name(&mut out, name);
                    out.extend_from_slice(&seq.to_le_bytes());
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, SiteMsgError> {
        let mut r = Reader::new(bytes);
        check_version(&mut r)?;
        match r.u8()? {
            CMD_WRITE => {
                let w = get_write(&mut r)?;
                finish(&r, Command::Write(w))
            }
            CMD_MARKS => {
                let n = get_count(&mut r, "marks", TOPICS_MAX, 9)?;
                let mut marks = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = get_name(&mut r)?;
                    marks.push((name, r.u64()?));
                }
                finish(&r, Command::Marks(marks))
            }
            k => Err(SiteMsgError::UnknownKind(k)),
        }
    }
}

impl StrongSnapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SITE_VERSION];
        out.extend_from_slice(&(self.topics.len() as u32).to_le_bytes());
        for t in &self.topics {
            put_name(&mut out, &t.name);
            out.extend_from_slice(&t.next_seq.to_le_bytes());
            out.extend_from_slice(&t.gateway_mark.to_le_bytes());
            out.extend_from_slice(&t.last_hlc.0.to_le_bytes());
        }
        if !self.keyed.is_empty() {
            out.extend_from_slice(&u32::try_from(self.keyed.len()).expect("keyed states are bounded").to_le_bytes());
            out.extend_from_slice(&self.keyed);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<StrongSnapshot, SiteMsgError> {
        let mut r = Reader::new(bytes);
        if bytes.is_empty() {
            // The empty prefix's snapshot, before any was taken.
            return Ok(StrongSnapshot::default());
        }
        check_version(&mut r)?;
        let n = get_count(&mut r, "snapshot topics", TOPICS_MAX, 25)?;
        let mut topics = Vec::with_capacity(n);
        for _ in 0..n {
            let name = get_name(&mut r)?;
            let (next_seq, gateway_mark, last_hlc) = (r.u64()?, r.u64()?, Hlc(r.u64()?));
            topics.push(StrongTopic { name, next_seq, gateway_mark, last_hlc });
        }
        let mut keyed = Vec::new();
        if !r.is_empty() {
            let n = get_count(&mut r, "snapshot keyed bytes", KEYED_SNAPSHOT_BYTES_MAX, 1)?;
            if n == 0 {
                // No encoder writes an empty keyed field: a snapshot without keyed states
                // ends after its topics.
                return Err(SiteMsgError::TrailingBytes(4));
            }
            keyed = r.bytes(n)?.to_vec();
        }
        finish(&r, StrongSnapshot { topics, keyed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Message;
    use proptest::prelude::*;

    fn write() -> Write {
        Write { origin: NodeId(3), hlc: Hlc(77), topic: "pay".into(), key: Some(b"k".to_vec()), value: b"v".to_vec() }
    }

    #[test]
    fn messages_round_trip() {
        let env = Envelope { from: NodeId(1), to: NodeId(2), term: 4, msg: Message::HeartbeatResp { read_seq: 9 } };
        for m in [
            SiteMsg::Raft(env),
            SiteMsg::Ping,
            SiteMsg::Forward { term: 5, write: write() },
            SiteMsg::ForwardRefused { hlc: Hlc(1), reason: "busy".into() },
        ] {
            let mut b = Vec::new();
            m.encode(&mut b);
            assert!(is_site_frame(&b));
            assert_eq!(SiteMsg::decode(&b), Ok(m));
        }
    }

    #[test]
    fn commands_and_snapshots_round_trip() {
        for c in [Command::Write(write()), Command::Marks(vec![("pay".into(), 12), ("stock".into(), 0)])] {
            assert_eq!(Command::decode(&c.encode()), Ok(c));
        }
        let mut s = StrongSnapshot {
            topics: vec![StrongTopic { name: "pay".into(), next_seq: 10, gateway_mark: 4, last_hlc: Hlc(99) }],
            keyed: Vec::new(),
        };
        assert_eq!(StrongSnapshot::decode(&s.encode()), Ok(s.clone()));
        assert_eq!(StrongSnapshot::decode(&[]), Ok(StrongSnapshot::default()));
        // Without keyed states a snapshot ends after its topics, as before strong keyed
        // topics existed; an empty keyed field is no encoding of it.
        let mut empty = s.encode();
        empty.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(StrongSnapshot::decode(&empty), Err(SiteMsgError::TrailingBytes(4)));
        s.keyed = b"a keyed checkpoint frame".to_vec();
        assert_eq!(StrongSnapshot::decode(&s.encode()), Ok(s.clone()));
        let mut huge = s.encode();
        let at = huge.len() - s.keyed.len() - 4;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(StrongSnapshot::decode(&huge), Err(SiteMsgError::TooLong { .. })));
    }

    #[test]
    fn hostile_bytes_get_typed_errors() {
        assert_eq!(Command::decode(&[2, CMD_WRITE]), Err(SiteMsgError::UnknownVersion(2)));
        assert_eq!(Command::decode(&[SITE_VERSION, 9]), Err(SiteMsgError::UnknownKind(9)));
        let mut huge = vec![SITE_VERSION, CMD_MARKS];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Command::decode(&huge), Err(SiteMsgError::TooLong { what: "marks", .. })));
        let mut many = vec![SITE_VERSION, CMD_MARKS];
        many.extend_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(Command::decode(&many), Err(SiteMsgError::Read(_))), "a count the bytes cannot hold");
        let mut sync = Vec::new();
        codec::encode_frame(FrameKind::SyncReset, &[0; 8], &mut sync);
        assert_eq!(SiteMsg::decode(&sync), Err(SiteMsgError::NotSite));
        assert!(!is_site_frame(&sync));
        let mut trailing = Command::Write(write()).encode();
        trailing.push(0);
        assert_eq!(Command::decode(&trailing), Err(SiteMsgError::TrailingBytes(1)));
    }

    #[test]
    fn a_long_reason_is_cut_on_a_char_boundary() {
        let m = SiteMsg::ForwardRefused { hlc: Hlc(1), reason: "é".repeat(400) };
        let mut b = Vec::new();
        m.encode(&mut b);
        let SiteMsg::ForwardRefused { reason, .. } = SiteMsg::decode(&b).expect("decodes") else { panic!() };
        assert_eq!(reason.len(), 512);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Command::decode(&bytes);
            let _ = StrongSnapshot::decode(&bytes);
            let mut framed = Vec::new();
            codec::encode_frame(FrameKind::Site, &bytes, &mut framed);
            let _ = SiteMsg::decode(&framed);
        }

        #[test]
        fn writes_round_trip(origin: u64, hlc: u64, key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
                             value in proptest::collection::vec(any::<u8>(), 0..64), term: u64) {
            let w = Write { origin: NodeId(origin), hlc: Hlc(hlc), topic: "t".into(), key, value };
            let m = SiteMsg::Forward { term, write: w.clone() };
            let mut b = Vec::new();
            m.encode(&mut b);
            prop_assert_eq!(SiteMsg::decode(&b), Ok(m));
            prop_assert_eq!(Command::decode(&Command::Write(w.clone()).encode()), Ok(Command::Write(w)));
        }
    }
}

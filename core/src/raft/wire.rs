//! The byte encoding of Raft messages ([`Envelope`]) between the members of a group.
//!
//! These bytes are not framed here: they carry no length and no checksum. The caller
//! (the transport) wraps each encoded envelope in one frame ([`crate::codec::encode_frame`]),
//! whose header carries the length and a CRC32C, and hands [`decode`] the payload of a frame
//! that passed [`crate::codec::decode_frame`]. (No [`crate::codec::FrameKind`] is assigned
//! to Raft messages yet; that is part of wiring Raft into the transport.)
//!
//! ```text
//! version u8 = 1
//! kind    u8   (1 PreVote, 2 PreVoteResp, 3 Vote, 4 VoteResp, 5 Append, 6 AppendResp,
//!               7 Heartbeat, 8 HeartbeatResp, 9 TimeoutNow, 10 InstallSnapshot)
//! from u64 LE, to u64 LE, term u64 LE
//! then, by kind:
//!   PreVote        last_index u64, last_term u64
//!   PreVoteResp    granted bool
//!   Vote           last_index u64, last_term u64, transfer bool
//!   VoteResp       granted bool
//!   Append         prev_index u64, prev_term u64, commit u64, n varint (<= ENTRIES_PER_MESSAGE_MAX),
//!                  n × entry
//!   AppendResp     accepted bool, index u64, hint u64
//!   Heartbeat      commit u64, read_seq u64
//!   HeartbeatResp  read_seq u64
//!   TimeoutNow     (nothing)
//!   InstallSnapshot index u64, snapshot term u64, membership, len varint (<= SNAPSHOT_BYTES_MAX), len bytes
//! entry = term u64, index u64, kind u8 (0 Noop, 1 Command, 2 Membership),
//!         and for a Command: len varint (<= COMMAND_BYTES_MAX), len bytes;
//!         for a Membership: membership
//! membership = voters varint, voters × u64, learners varint, learners × u64
//!         (each list strictly increasing, the two disjoint, together <= MEMBERS_MAX)
//! bool  = u8, 0 or 1
//! ```
//!
//! Integers are little-endian; varints are those of [`crate::codec`] (shortest form only).
//!
//! The encoding is **canonical**: every value has exactly one encoding, and [`decode`]
//! accepts only that one (booleans are 0 or 1, varints are in shortest form, nothing may
//! follow the message). So bytes that decode re-encode to the same bytes.
//!
//! [`decode`] takes untrusted bytes and returns a typed [`WireError`]; it never panics and
//! allocates at most [`ENTRIES_PER_MESSAGE_MAX`] entries, and never more entries or command
//! bytes than the input could hold. Besides the layout it checks what a member relies on
//! when it handles an Append: its entries are contiguous from `prev_index + 1`, and the terms
//! `prev_term`, then each entry's in order, never decrease and are at most the envelope's
//! term (a leader's log holds no term above its own).

use std::fmt;

use super::{Entry, EntryKind, Envelope, Index, Membership, Message, Snapshot, Term, MEMBERS_MAX};
use crate::codec::{self, ReadError, Reader};
use crate::types::NodeId;

/// The format version this module writes and accepts.
pub const WIRE_VERSION: u8 = 1;
/// The most entries one Append may carry.
pub const ENTRIES_PER_MESSAGE_MAX: usize = 4096;
/// The largest command one entry may carry (1 MiB).
pub const COMMAND_BYTES_MAX: usize = 1 << 20;
/// The largest snapshot one message may carry (8 MiB; a frame holds 16 MiB). A site's
/// state machine is small; chunked transfer would lift this.
pub const SNAPSHOT_BYTES_MAX: usize = 8 << 20;
/// The fewest bytes one encoded entry takes (a Noop: term, index, kind).
pub(crate) const ENTRY_BYTES_MIN: usize = 8 + 8 + 1;

const KIND_PRE_VOTE: u8 = 1;
const KIND_PRE_VOTE_RESP: u8 = 2;
const KIND_VOTE: u8 = 3;
const KIND_VOTE_RESP: u8 = 4;
const KIND_APPEND: u8 = 5;
const KIND_APPEND_RESP: u8 = 6;
const KIND_HEARTBEAT: u8 = 7;
const KIND_HEARTBEAT_RESP: u8 = 8;
const KIND_TIMEOUT_NOW: u8 = 9;
const KIND_INSTALL_SNAPSHOT: u8 = 10;

const ENTRY_NOOP: u8 = 0;
const ENTRY_COMMAND: u8 = 1;
const ENTRY_MEMBERSHIP: u8 = 2;

/// Why bytes are not a Raft message. Offsets (`at`) are from the start of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ended early (or a count promises more entries than the bytes left can
    /// hold), or a varint is malformed.
    Read(ReadError),
    /// A format version this build does not know.
    UnknownVersion(u8),
    /// A message kind this build does not know.
    UnknownKind(u8),
    /// A boolean byte other than 0 or 1.
    BadBool { at: usize, found: u8 },
    /// An entry kind this build does not know.
    UnknownEntryKind { at: usize, found: u8 },
    /// An Append claims more entries than [`ENTRIES_PER_MESSAGE_MAX`].
    TooManyEntries { count: u64, max: usize },
    /// The command of the entry with log index `index` is longer than [`COMMAND_BYTES_MAX`].
    EntryTooLarge { index: Index, len: u64, max: usize },
    /// Entry number `position` (from 0) of an Append has index `found`, not
    /// `prev_index + position + 1`.
    NotContiguous { prev_index: Index, position: usize, found: Index },
    /// The entry with log index `index` has a term below the term before it (`prev_term`
    /// for the first entry).
    TermsDecrease { index: Index, term: Term, previous: Term },
    /// The entry with log index `index` (or `prev_index`, for `prev_term`) has a term above
    /// the message's term.
    TermAboveMessage { index: Index, term: Term, message_term: Term },
    /// Bytes after the end of the message.
    TrailingBytes(usize),
    /// A snapshot longer than [`SNAPSHOT_BYTES_MAX`], or whose term is above the message's.
    BadSnapshot { len: u64, term: Term, message_term: Term },
    /// A membership with more than [`MEMBERS_MAX`] members, ids out of order or repeated,
    /// or a member that is both voter and learner.
    BadMembership { at: usize },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Read(e) => write!(f, "raft message unreadable: {e}"),
            WireError::UnknownVersion(v) => write!(
                f,
                "unknown raft message version {v} (this build reads {WIRE_VERSION}): the peer runs \
                 another version of Outpost"
            ),
            WireError::UnknownKind(k) => write!(
                f,
                "unknown raft message kind {k}: the peer runs another version of Outpost, or the \
                 message is corrupt"
            ),
            WireError::BadBool { at, found } => {
                write!(f, "byte {found} at offset {at} should be a boolean (0 or 1): the message is corrupt")
            }
            WireError::UnknownEntryKind { at, found } => write!(
                f,
                "unknown raft entry kind {found} at offset {at}: the peer runs another version of \
                 Outpost, or the message is corrupt"
            ),
            WireError::TooManyEntries { count, max } => {
                write!(f, "append carries {count} entries, more than the maximum {max}")
            }
            WireError::EntryTooLarge { index, len, max } => {
                write!(f, "entry {index} carries a {len}-byte command, more than the maximum {max}")
            }
            WireError::NotContiguous { prev_index, position, found } => write!(
                f,
                "entry {position} of an append after index {prev_index} has index {found}: entries \
                 must be contiguous from prev_index + 1"
            ),
            WireError::TermsDecrease { index, term, previous } => write!(
                f,
                "entry {index} has term {term}, below the term {previous} before it: terms in a log \
                 never decrease"
            ),
            WireError::TermAboveMessage { index, term, message_term } => write!(
                f,
                "entry {index} has term {term}, above the message's term {message_term}: a leader's \
                 log holds no term above its own"
            ),
            WireError::TrailingBytes(n) => write!(f, "{n} bytes after the end of the raft message"),
            WireError::BadMembership { at } => write!(
                f,
                "membership at offset {at} is not valid (at most {MEMBERS_MAX} members, ids in increasing \
                 order, none both voter and learner): the message is corrupt"
            ),
            WireError::BadSnapshot { len, term, message_term } => write!(
                f,
                "snapshot of {len} bytes and term {term} in a message of term {message_term}: at most \
                 {SNAPSHOT_BYTES_MAX} bytes and the message's term; the message is corrupt"
            ),
        }
    }
}

impl std::error::Error for WireError {}

impl From<ReadError> for WireError {
    fn from(e: ReadError) -> Self {
        WireError::Read(e)
    }
}

/// The rules an Append's entries follow, checked one entry at a time by both the encoder
/// (a violation is a caller bug) and the decoder (a violation is a bad message).
struct AppendCheck {
    message_term: Term,
    prev_index: Index,
    last_term: Term,
    position: usize,
}

impl AppendCheck {
    fn new(message_term: Term, prev_index: Index, prev_term: Term) -> Result<Self, WireError> {
        if prev_term > message_term {
            return Err(WireError::TermAboveMessage { index: prev_index, term: prev_term, message_term });
        }
        Ok(AppendCheck { message_term, prev_index, last_term: prev_term, position: 0 })
    }

    fn next(&mut self, term: Term, index: Index) -> Result<(), WireError> {
        let expected = self.prev_index.checked_add(self.position as u64 + 1);
        if expected != Some(index) {
            return Err(WireError::NotContiguous {
                prev_index: self.prev_index,
                position: self.position,
                found: index,
            });
        }
        if term < self.last_term {
            return Err(WireError::TermsDecrease { index, term, previous: self.last_term });
        }
        if term > self.message_term {
            return Err(WireError::TermAboveMessage { index, term, message_term: self.message_term });
        }
        self.last_term = term;
        self.position += 1;
        Ok(())
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

fn get_bool(r: &mut Reader<'_>) -> Result<bool, WireError> {
    let at = r.position();
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        found => Err(WireError::BadBool { at, found }),
    }
}

/// Appends the encoding of `env` to `out`.
///
/// # Panics
/// If `env` is an Append that [`decode`] would refuse: more than [`ENTRIES_PER_MESSAGE_MAX`]
/// entries, a command above [`COMMAND_BYTES_MAX`], entries not contiguous from
/// `prev_index + 1`, or terms that decrease or exceed the envelope's term (caller bugs).
pub fn encode(env: &Envelope, out: &mut Vec<u8>) {
    let kind = match env.msg {
        Message::PreVote { .. } => KIND_PRE_VOTE,
        Message::PreVoteResp { .. } => KIND_PRE_VOTE_RESP,
        Message::Vote { .. } => KIND_VOTE,
        Message::VoteResp { .. } => KIND_VOTE_RESP,
        Message::Append { .. } => KIND_APPEND,
        Message::AppendResp { .. } => KIND_APPEND_RESP,
        Message::Heartbeat { .. } => KIND_HEARTBEAT,
        Message::HeartbeatResp { .. } => KIND_HEARTBEAT_RESP,
        Message::TimeoutNow => KIND_TIMEOUT_NOW,
        Message::InstallSnapshot { .. } => KIND_INSTALL_SNAPSHOT,
    };
    out.push(WIRE_VERSION);
    out.push(kind);
    put_u64(out, env.from.0);
    put_u64(out, env.to.0);
    put_u64(out, env.term);
    match &env.msg {
        Message::PreVote { last_index, last_term } => {
            put_u64(out, *last_index);
            put_u64(out, *last_term);
        }
        Message::PreVoteResp { granted } | Message::VoteResp { granted } => put_bool(out, *granted),
        Message::Vote { last_index, last_term, transfer } => {
            put_u64(out, *last_index);
            put_u64(out, *last_term);
            put_bool(out, *transfer);
        }
        Message::Append { prev_index, prev_term, entries, commit } => {
            assert!(
                entries.len() <= ENTRIES_PER_MESSAGE_MAX,
                "an append of {} entries exceeds ENTRIES_PER_MESSAGE_MAX",
                entries.len()
            );
            let mut check = AppendCheck::new(env.term, *prev_index, *prev_term).unwrap_or_else(|e| panic!("{e}"));
            put_u64(out, *prev_index);
            put_u64(out, *prev_term);
            put_u64(out, *commit);
            codec::put_varint(out, entries.len() as u64);
            for e in entries {
                check.next(e.term, e.index).unwrap_or_else(|err| panic!("{err}"));
                put_entry(out, e);
            }
        }
        Message::AppendResp { accepted, index, hint } => {
            put_bool(out, *accepted);
            put_u64(out, *index);
            put_u64(out, *hint);
        }
        Message::Heartbeat { commit, read_seq } => {
            put_u64(out, *commit);
            put_u64(out, *read_seq);
        }
        Message::HeartbeatResp { read_seq } => put_u64(out, *read_seq),
        Message::TimeoutNow => {}
        Message::InstallSnapshot { snapshot } => {
            assert!(snapshot.data.len() <= SNAPSHOT_BYTES_MAX, "a snapshot exceeds SNAPSHOT_BYTES_MAX");
            assert!(snapshot.term <= env.term, "a snapshot's term is above the message's");
            put_u64(out, snapshot.index);
            put_u64(out, snapshot.term);
            put_membership(out, &snapshot.membership);
            codec::put_varint(out, snapshot.data.len() as u64);
            out.extend_from_slice(&snapshot.data);
        }
    }
}

/// Decodes one whole message: `buf` must hold exactly one encoded envelope (a frame's
/// payload).
pub fn decode(buf: &[u8]) -> Result<Envelope, WireError> {
    let mut r = Reader::new(buf);
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(WireError::UnknownVersion(version));
    }
    let kind = r.u8()?;
    if !(KIND_PRE_VOTE..=KIND_INSTALL_SNAPSHOT).contains(&kind) {
        return Err(WireError::UnknownKind(kind));
    }
    let from = NodeId(r.u64()?);
    let to = NodeId(r.u64()?);
    let term = r.u64()?;
    let msg = match kind {
        KIND_PRE_VOTE => Message::PreVote { last_index: r.u64()?, last_term: r.u64()? },
        KIND_PRE_VOTE_RESP => Message::PreVoteResp { granted: get_bool(&mut r)? },
        KIND_VOTE => Message::Vote { last_index: r.u64()?, last_term: r.u64()?, transfer: get_bool(&mut r)? },
        KIND_VOTE_RESP => Message::VoteResp { granted: get_bool(&mut r)? },
        KIND_APPEND => decode_append(&mut r, term)?,
        KIND_APPEND_RESP => Message::AppendResp { accepted: get_bool(&mut r)?, index: r.u64()?, hint: r.u64()? },
        KIND_HEARTBEAT => Message::Heartbeat { commit: r.u64()?, read_seq: r.u64()? },
        KIND_HEARTBEAT_RESP => Message::HeartbeatResp { read_seq: r.u64()? },
        KIND_TIMEOUT_NOW => Message::TimeoutNow,
        KIND_INSTALL_SNAPSHOT => decode_snapshot(&mut r, term)?,
        // Checked above; kept as an error so the decoder has no panic path.
        _ => return Err(WireError::UnknownKind(kind)),
    };
    if !r.is_empty() {
        return Err(WireError::TrailingBytes(r.remaining()));
    }
    Ok(Envelope { from, to, term, msg })
}

fn decode_snapshot(r: &mut Reader<'_>, message_term: Term) -> Result<Message, WireError> {
    let index = r.u64()?;
    let term = r.u64()?;
    let membership = get_membership(r)?;
    let len = r.varint()?;
    if len > SNAPSHOT_BYTES_MAX as u64 || term > message_term {
        return Err(WireError::BadSnapshot { len, term, message_term });
    }
    let data = r.bytes(len as usize)?.to_vec();
    Ok(Message::InstallSnapshot { snapshot: Snapshot { index, term, membership, data } })
}

/// Appends one entry: term, index, kind and the kind's body. Shared with
/// [`super::store`], so a stored entry is encoded exactly as a sent one.
///
/// # Panics
/// If a command is longer than [`COMMAND_BYTES_MAX`], or a membership is not valid (see
/// [`put_membership`]).
pub(crate) fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    put_u64(out, e.term);
    put_u64(out, e.index);
    match &e.kind {
        EntryKind::Noop => out.push(ENTRY_NOOP),
        EntryKind::Command(data) => {
            assert!(data.len() <= COMMAND_BYTES_MAX, "a command of {} bytes exceeds COMMAND_BYTES_MAX", data.len());
            out.push(ENTRY_COMMAND);
            codec::put_varint(out, data.len() as u64);
            out.extend_from_slice(data);
        }
        EntryKind::Membership(m) => {
            out.push(ENTRY_MEMBERSHIP);
            put_membership(out, m);
        }
    }
}

/// Reads the kind and body of the entry with log `index`, whose term and index the caller
/// has just read (and checked: an entry out of place is refused before its body is read).
/// Never reads a command longer than [`COMMAND_BYTES_MAX`].
pub(crate) fn get_entry_kind(r: &mut Reader<'_>, index: Index) -> Result<EntryKind, WireError> {
    let at = r.position();
    Ok(match r.u8()? {
        ENTRY_NOOP => EntryKind::Noop,
        ENTRY_COMMAND => {
            let len = r.varint()?;
            if len > COMMAND_BYTES_MAX as u64 {
                return Err(WireError::EntryTooLarge { index, len, max: COMMAND_BYTES_MAX });
            }
            EntryKind::Command(r.bytes(len as usize)?.to_vec())
        }
        ENTRY_MEMBERSHIP => EntryKind::Membership(get_membership(r)?),
        found => return Err(WireError::UnknownEntryKind { at, found }),
    })
}

/// # Panics
/// If the membership has more than [`MEMBERS_MAX`] members or a member in both sets.
pub(crate) fn put_membership(out: &mut Vec<u8>, m: &Membership) {
    assert!(m.voters.len() + m.learners.len() <= MEMBERS_MAX, "more than MEMBERS_MAX members");
    assert!(m.voters.is_disjoint(&m.learners), "a member is both voter and learner");
    for set in [&m.voters, &m.learners] {
        codec::put_varint(out, set.len() as u64);
        for id in set {
            put_u64(out, id.0);
        }
    }
}

/// Reads a membership, refusing one [`put_membership`] would not write.
pub(crate) fn get_membership(r: &mut Reader<'_>) -> Result<Membership, WireError> {
    let at = r.position();
    let mut m = Membership::default();
    for learners in [false, true] {
        let n = r.varint()?;
        if n > (MEMBERS_MAX - m.voters.len()) as u64 {
            return Err(WireError::BadMembership { at });
        }
        let mut last = None;
        for _ in 0..n {
            let id = r.u64()?;
            if last.is_some_and(|l| l >= id) {
                return Err(WireError::BadMembership { at });
            }
            last = Some(id);
            let fresh = if learners {
                !m.voters.contains(&NodeId(id)) && m.learners.insert(NodeId(id))
            } else {
                m.voters.insert(NodeId(id))
            };
            if !fresh {
                return Err(WireError::BadMembership { at });
            }
        }
    }
    Ok(m)
}

fn decode_append(r: &mut Reader<'_>, term: Term) -> Result<Message, WireError> {
    let prev_index = r.u64()?;
    let prev_term = r.u64()?;
    let commit = r.u64()?;
    let mut check = AppendCheck::new(term, prev_index, prev_term)?;
    let count = r.varint()?;
    if count > ENTRIES_PER_MESSAGE_MAX as u64 {
        return Err(WireError::TooManyEntries { count, max: ENTRIES_PER_MESSAGE_MAX });
    }
    // At most ENTRIES_PER_MESSAGE_MAX, and no more than the bytes left can hold, so a
    // short message cannot make us allocate for many entries.
    let count = count as usize;
    let needed = count * ENTRY_BYTES_MIN;
    if needed > r.remaining() {
        return Err(WireError::Read(ReadError::Truncated { at: r.position(), needed }));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let entry_term = r.u64()?;
        let index = r.u64()?;
        check.next(entry_term, index)?;
        let kind = get_entry_kind(r, index)?;
        entries.push(Entry { term: entry_term, index, kind });
    }
    Ok(Message::Append { prev_index, prev_term, entries, commit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(term: Term, msg: Message) -> Envelope {
        Envelope { from: NodeId(1), to: NodeId(2), term, msg }
    }

    fn bytes(e: &Envelope) -> Vec<u8> {
        let mut out = Vec::new();
        encode(e, &mut out);
        out
    }

    fn entry(term: Term, index: Index, cmd: Option<&[u8]>) -> Entry {
        Entry { term, index, kind: cmd.map_or(EntryKind::Noop, |c| EntryKind::Command(c.to_vec())) }
    }

    fn append(term: Term, prev_index: Index, prev_term: Term, entries: Vec<Entry>) -> Envelope {
        env(term, Message::Append { prev_index, prev_term, entries, commit: 3 })
    }

    /// One of each variant, the Append with both entry kinds.
    fn every_variant() -> Vec<Envelope> {
        vec![
            env(5, Message::PreVote { last_index: 10, last_term: 4 }),
            env(5, Message::PreVoteResp { granted: true }),
            env(5, Message::PreVoteResp { granted: false }),
            env(5, Message::Vote { last_index: 10, last_term: 4, transfer: true }),
            env(5, Message::Vote { last_index: 0, last_term: 0, transfer: false }),
            env(5, Message::VoteResp { granted: true }),
            append(5, 7, 3, vec![entry(3, 8, Some(b"set x=1")), entry(5, 9, None), entry(5, 10, Some(b""))]),
            append(5, 0, 0, vec![]),
            env(5, Message::AppendResp { accepted: false, index: 7, hint: 6 }),
            env(5, Message::AppendResp { accepted: true, index: 10, hint: 0 }),
            env(5, Message::Heartbeat { commit: 9, read_seq: 42 }),
            env(5, Message::HeartbeatResp { read_seq: 42 }),
            env(u64::MAX, Message::TimeoutNow),
            env(
                6,
                Message::InstallSnapshot {
                    snapshot: Snapshot {
                        index: 40,
                        term: 6,
                        membership: Membership {
                            voters: [NodeId(1), NodeId(2), NodeId(7)].into(),
                            learners: [NodeId(4)].into(),
                        },
                        data: b"state".to_vec(),
                    },
                },
            ),
            append(
                6,
                40,
                6,
                vec![Entry {
                    term: 6,
                    index: 41,
                    kind: EntryKind::Membership(Membership::of_voters([NodeId(1), NodeId(2)])),
                }],
            ),
            env(6, Message::InstallSnapshot { snapshot: Snapshot::default() }),
        ]
    }

    #[test]
    fn every_variant_round_trips() {
        for e in every_variant() {
            let b = bytes(&e);
            assert_eq!(decode(&b), Ok(e.clone()), "{e:?}");
            // Appending leaves what was in the buffer.
            let mut out = vec![0xAA];
            encode(&e, &mut out);
            assert_eq!(out[1..], b[..]);
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let b = bytes(&append(5, 7, 3, vec![entry(4, 8, Some(b"ab"))]));
        let mut want = vec![WIRE_VERSION, KIND_APPEND];
        for v in [1u64, 2, 5, 7, 3, 3] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.push(1); // one entry
        want.extend_from_slice(&4u64.to_le_bytes());
        want.extend_from_slice(&8u64.to_le_bytes());
        want.extend_from_slice(&[ENTRY_COMMAND, 2, b'a', b'b']);
        assert_eq!(b, want);
        assert_eq!(bytes(&env(0, Message::TimeoutNow)).len(), 2 + 24);
    }

    #[test]
    fn limits_are_inclusive() {
        let entries: Vec<Entry> = (1..=ENTRIES_PER_MESSAGE_MAX as u64).map(|i| entry(1, i, None)).collect();
        let e = append(1, 0, 0, entries);
        assert_eq!(decode(&bytes(&e)), Ok(e));
        let big = vec![7u8; COMMAND_BYTES_MAX];
        let e = append(1, 0, 0, vec![entry(1, 1, Some(&big))]);
        assert_eq!(decode(&bytes(&e)), Ok(e));
        // The last indexes a u64 holds.
        let e = append(1, u64::MAX - 1, 1, vec![entry(1, u64::MAX, None)]);
        assert_eq!(decode(&bytes(&e)), Ok(e));
    }

    #[test]
    fn every_truncation_is_refused() {
        for e in every_variant() {
            let b = bytes(&e);
            for cut in 0..b.len() {
                let err = decode(&b[..cut]).expect_err("a prefix is not a message");
                assert!(matches!(err, WireError::Read(ReadError::Truncated { .. })), "{e:?} cut at {cut}: {err:?}");
            }
        }
    }

    #[test]
    fn header_errors() {
        let mut b = bytes(&env(1, Message::TimeoutNow));
        b[0] = 2;
        assert_eq!(decode(&b), Err(WireError::UnknownVersion(2)));
        for kind in [0, KIND_INSTALL_SNAPSHOT + 1, 0xff] {
            b[0] = WIRE_VERSION;
            b[1] = kind;
            assert_eq!(decode(&b), Err(WireError::UnknownKind(kind)));
        }
        b[1] = KIND_TIMEOUT_NOW;
        b.push(0);
        assert_eq!(decode(&b), Err(WireError::TrailingBytes(1)));
        assert_eq!(decode(&[]), Err(WireError::Read(ReadError::Truncated { at: 0, needed: 1 })));
    }

    #[test]
    fn booleans_are_zero_or_one() {
        let mut b = bytes(&env(1, Message::VoteResp { granted: true }));
        b[26] = 2;
        assert_eq!(decode(&b), Err(WireError::BadBool { at: 26, found: 2 }));
        let mut b = bytes(&env(1, Message::Vote { last_index: 1, last_term: 1, transfer: false }));
        b[42] = 0xff;
        assert_eq!(decode(&b), Err(WireError::BadBool { at: 42, found: 0xff }));
    }

    /// The bytes of an Append header (term 9, prev 0/0, commit 0) claiming `count` entries.
    fn append_header(count: u64) -> Vec<u8> {
        let mut b = bytes(&append(9, 0, 0, vec![]));
        b.truncate(b.len() - 1);
        codec::put_varint(&mut b, count);
        b
    }

    #[test]
    fn entry_count_above_the_maximum_is_refused() {
        let max = ENTRIES_PER_MESSAGE_MAX as u64;
        for count in [max + 1, u64::MAX] {
            assert_eq!(decode(&append_header(count)), Err(WireError::TooManyEntries { count, max: max as usize }));
        }
    }

    #[test]
    fn entry_count_is_checked_against_the_bytes_left_before_allocating() {
        // 4096 entries promised, two entries' worth of bytes given.
        let mut b = append_header(ENTRIES_PER_MESSAGE_MAX as u64);
        let at = b.len();
        b.extend_from_slice(&[0; 2 * ENTRY_BYTES_MIN]);
        assert_eq!(
            decode(&b),
            Err(WireError::Read(ReadError::Truncated { at, needed: ENTRIES_PER_MESSAGE_MAX * ENTRY_BYTES_MIN }))
        );
    }

    #[test]
    fn oversized_command_is_refused_before_reading_it() {
        let mut b = append_header(1);
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.push(ENTRY_COMMAND);
        codec::put_varint(&mut b, COMMAND_BYTES_MAX as u64 + 1);
        assert_eq!(
            decode(&b),
            Err(WireError::EntryTooLarge { index: 1, len: COMMAND_BYTES_MAX as u64 + 1, max: COMMAND_BYTES_MAX })
        );
    }

    #[test]
    fn unknown_entry_kind_is_refused() {
        let mut b = bytes(&append(5, 0, 0, vec![entry(5, 1, None)]));
        let at = b.len() - 1;
        b[at] = 3;
        assert_eq!(decode(&b), Err(WireError::UnknownEntryKind { at, found: 3 }));
    }

    #[test]
    fn memberships_out_of_order_repeated_or_too_large_are_refused() {
        let m = Membership { voters: [NodeId(1), NodeId(2)].into(), learners: [NodeId(3)].into() };
        let b = bytes(&append(5, 0, 0, vec![Entry { term: 5, index: 1, kind: EntryKind::Membership(m) }]));
        // The membership starts after the entry's term, index and kind byte.
        let at = b.len() - (1 + 16 + 1 + 8);
        let voter = |k: usize| at + 1 + 8 * k;
        let mut swapped = b.clone();
        swapped[voter(0)] = 2;
        swapped[voter(1)] = 1;
        assert_eq!(decode(&swapped), Err(WireError::BadMembership { at }));
        let mut both = b.clone();
        let learner = b.len() - 8;
        both[learner] = 2;
        assert_eq!(decode(&both), Err(WireError::BadMembership { at }));
        let mut many = b.clone();
        many[at] = MEMBERS_MAX as u8 + 1;
        assert_eq!(decode(&many), Err(WireError::BadMembership { at }));
    }

    #[test]
    fn non_shortest_varints_are_refused() {
        // A count of 0 written in two bytes.
        let mut b = bytes(&append(5, 0, 0, vec![]));
        let at = b.len() - 1;
        b[at] = 0x80;
        b.push(0);
        assert_eq!(decode(&b), Err(WireError::Read(ReadError::BadVarint { at })));
        // A command length of 1 written in two bytes.
        let mut b = bytes(&append(5, 0, 0, vec![entry(5, 1, Some(b"x"))]));
        let at = b.len() - 2;
        b.splice(at..at + 1, [0x81, 0x00]);
        assert_eq!(decode(&b), Err(WireError::Read(ReadError::BadVarint { at })));
    }

    /// An Append encoded without the encoder's checks, to forge what it refuses to write.
    fn forged_append(term: Term, prev_index: Index, prev_term: Term, entries: &[(Term, Index)]) -> Vec<u8> {
        let mut b = append_header(entries.len() as u64);
        b[18..26].copy_from_slice(&term.to_le_bytes());
        b[26..34].copy_from_slice(&prev_index.to_le_bytes());
        b[34..42].copy_from_slice(&prev_term.to_le_bytes());
        for (t, i) in entries {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&i.to_le_bytes());
            b.push(ENTRY_NOOP);
        }
        b
    }

    #[test]
    fn append_entries_must_be_contiguous_from_prev_index() {
        assert!(decode(&forged_append(5, 7, 1, &[(1, 8), (1, 9)])).is_ok());
        // (prev_index, entries as (term, index), position refused, index found there)
        type Case = (Index, &'static [(Term, Index)], usize, Index);
        let cases: [Case; 5] = [
            (7, &[(1, 7)], 0, 7),
            (7, &[(1, 9)], 0, 9),
            (7, &[(1, 8), (1, 8)], 1, 8),
            (7, &[(1, 8), (1, 10)], 1, 10),
            // prev_index + 1 overflows: no index can follow.
            (u64::MAX, &[(1, 0)], 0, 0),
        ];
        for (prev_index, entries, position, found) in cases {
            assert_eq!(
                decode(&forged_append(5, prev_index, 1, entries)),
                Err(WireError::NotContiguous { prev_index, position, found }),
                "{prev_index} {entries:?}"
            );
        }
    }

    #[test]
    fn append_terms_never_decrease_nor_exceed_the_message_term() {
        assert!(decode(&forged_append(5, 0, 2, &[(2, 1), (3, 2), (5, 3)])).is_ok());
        assert_eq!(
            decode(&forged_append(5, 0, 3, &[(2, 1)])),
            Err(WireError::TermsDecrease { index: 1, term: 2, previous: 3 })
        );
        assert_eq!(
            decode(&forged_append(5, 0, 1, &[(3, 1), (2, 2)])),
            Err(WireError::TermsDecrease { index: 2, term: 2, previous: 3 })
        );
        assert_eq!(
            decode(&forged_append(5, 0, 1, &[(6, 1)])),
            Err(WireError::TermAboveMessage { index: 1, term: 6, message_term: 5 })
        );
        assert_eq!(
            decode(&forged_append(5, 4, 6, &[])),
            Err(WireError::TermAboveMessage { index: 4, term: 6, message_term: 5 })
        );
    }

    #[test]
    #[should_panic(expected = "must be contiguous")]
    fn encoding_a_non_contiguous_append_is_a_caller_bug() {
        bytes(&append(5, 0, 0, vec![entry(5, 2, None)]));
    }

    #[test]
    #[should_panic(expected = "exceeds ENTRIES_PER_MESSAGE_MAX")]
    fn encoding_too_many_entries_is_a_caller_bug() {
        let entries = (1..=ENTRIES_PER_MESSAGE_MAX as u64 + 1).map(|i| entry(1, i, None)).collect();
        bytes(&append(1, 0, 0, entries));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases = [
            (decode(&[]), "truncated"),
            (decode(&[9]), "version 9"),
            (decode(&[1, 0]), "kind 0"),
            (decode(&append_header(5000)), "5000 entries"),
            (decode(&forged_append(5, 7, 1, &[(1, 9)])), "contiguous"),
            (decode(&forged_append(5, 0, 3, &[(2, 1)])), "never decrease"),
        ];
        for (result, want) in cases {
            let text = result.expect_err("invalid").to_string();
            assert!(text.contains(want), "{text:?} does not mention {want:?}");
        }
    }

    // ---- property tests ----

    fn u64_edgy() -> impl Strategy<Value = u64> {
        prop_oneof![Just(0), Just(1), Just(u64::MAX), 0..1000u64, any::<u64>()]
    }

    fn command() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
            (any::<u8>(), 0usize..300).prop_map(|(b, n)| Some(vec![b; n])),
        ]
    }

    /// A valid Append under `term`: contiguous entries whose terms rise from `prev_term` to
    /// at most `term`.
    fn valid_append(term: Term) -> impl Strategy<Value = Message> {
        (u64_edgy(), u64_edgy(), proptest::collection::vec((any::<u64>(), command()), 0..12)).prop_map(
            move |(prev_index, commit, raw)| {
                let below = |x: u64| if term == u64::MAX { x } else { x % (term + 1) };
                let mut terms: Vec<Term> = raw.iter().map(|(t, _)| below(*t)).collect();
                terms.push(below(prev_index ^ commit));
                terms.sort_unstable();
                let prev_term = terms[0];
                let prev_index = prev_index.min(u64::MAX - raw.len() as u64);
                let entries = raw
                    .into_iter()
                    .zip(&terms[1..])
                    .enumerate()
                    .map(|(i, ((_, cmd), &t))| Entry {
                        term: t,
                        index: prev_index + 1 + i as u64,
                        kind: cmd.map_or(EntryKind::Noop, EntryKind::Command),
                    })
                    .collect();
                Message::Append { prev_index, prev_term, entries, commit }
            },
        )
    }

    fn message(term: Term) -> impl Strategy<Value = Message> {
        prop_oneof![
            1 => (u64_edgy(), u64_edgy()).prop_map(|(last_index, last_term)| Message::PreVote { last_index, last_term }),
            1 => any::<bool>().prop_map(|granted| Message::PreVoteResp { granted }),
            1 => (u64_edgy(), u64_edgy(), any::<bool>())
                .prop_map(|(last_index, last_term, transfer)| Message::Vote { last_index, last_term, transfer }),
            1 => any::<bool>().prop_map(|granted| Message::VoteResp { granted }),
            3 => valid_append(term),
            1 => (any::<bool>(), u64_edgy(), u64_edgy())
                .prop_map(|(accepted, index, hint)| Message::AppendResp { accepted, index, hint }),
            1 => (u64_edgy(), u64_edgy()).prop_map(|(commit, read_seq)| Message::Heartbeat { commit, read_seq }),
            1 => u64_edgy().prop_map(|read_seq| Message::HeartbeatResp { read_seq }),
            1 => Just(Message::TimeoutNow),
            1 => (u64_edgy(), u64_edgy(), membership(), command()).prop_map(move |(index, t, membership, data)| {
                Message::InstallSnapshot {
                    snapshot: Snapshot {
                        index,
                        term: if term == u64::MAX { t } else { t % (term + 1) },
                        membership,
                        data: data.unwrap_or_default(),
                    },
                }
            }),
        ]
    }

    /// Up to MEMBERS_MAX distinct ids, each a voter or a learner.
    fn membership() -> impl Strategy<Value = Membership> {
        proptest::collection::btree_map(u64_edgy(), any::<bool>(), 0..=MEMBERS_MAX).prop_map(|ids| {
            let mut m = Membership::default();
            for (id, voter) in ids {
                if voter {
                    m.voters.insert(NodeId(id));
                } else {
                    m.learners.insert(NodeId(id));
                }
            }
            m
        })
    }

    fn envelope() -> impl Strategy<Value = Envelope> {
        (u64_edgy(), u64_edgy(), u64_edgy()).prop_flat_map(|(from, to, term)| {
            message(term).prop_map(move |msg| Envelope { from: NodeId(from), to: NodeId(to), term, msg })
        })
    }

    #[derive(Clone, Debug)]
    enum Mutation {
        Flip(prop::sample::Index, u8),
        Set(prop::sample::Index, u8),
        Truncate(prop::sample::Index),
        Insert(prop::sample::Index, Vec<u8>),
        Remove(prop::sample::Index, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<prop::sample::Index>(), 1..=u8::MAX).prop_map(|(i, x)| Mutation::Flip(i, x)),
            (any::<prop::sample::Index>(), prop_oneof![Just(0u8), Just(1), Just(0x80), Just(0xff), any::<u8>()])
                .prop_map(|(i, x)| Mutation::Set(i, x)),
            any::<prop::sample::Index>().prop_map(Mutation::Truncate),
            (any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..10))
                .prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<prop::sample::Index>(), 1usize..10).prop_map(|(i, n)| Mutation::Remove(i, n)),
        ]
    }

    fn mutate(b: &mut Vec<u8>, m: &Mutation) {
        match m {
            Mutation::Flip(i, x) => {
                let i = i.index(b.len());
                b[i] ^= x;
            }
            Mutation::Set(i, x) => {
                let i = i.index(b.len());
                b[i] = *x;
            }
            Mutation::Truncate(i) => b.truncate(i.index(b.len())),
            Mutation::Insert(i, extra) => {
                let i = i.index(b.len() + 1);
                b.splice(i..i, extra.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let i = i.index(b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
        }
    }

    /// Whatever decodes re-encodes to exactly its bytes (the encoding is canonical).
    fn assert_canonical(b: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(e) = decode(b) {
            prop_assert_eq!(bytes(&e), b, "{:?} decoded from other bytes than it encodes to", e);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn envelopes_round_trip(e in envelope()) {
            let b = bytes(&e);
            prop_assert_eq!(decode(&b), Ok(e));
        }

        #[test]
        fn mutated_encodings_never_panic_and_stay_canonical(
            e in envelope(),
            mutations in proptest::collection::vec(mutation(), 1..4),
        ) {
            let mut b = bytes(&e);
            for m in &mutations {
                if b.is_empty() {
                    break;
                }
                mutate(&mut b, m);
            }
            assert_canonical(&b)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_canonical(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            assert_canonical(&b)?;
        }

        #[test]
        fn arbitrary_bodies_after_a_valid_header_never_panic_and_stay_canonical(
            kind in KIND_PRE_VOTE..=KIND_TIMEOUT_NOW,
            term in u64_edgy(),
            body in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80), Just(0xff), any::<u8>()], 0..200),
        ) {
            let mut b = vec![WIRE_VERSION, kind];
            b.extend_from_slice(&[0; 16]);
            b.extend_from_slice(&term.to_le_bytes());
            b.extend_from_slice(&body);
            assert_canonical(&b)?;
        }
    }
}

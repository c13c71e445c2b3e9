//! The byte format in which a Raft member keeps its durable state (what each
//! [`Persist`] asks for) in files [`crate::io::FileId::Raft`]`{ generation }`.
//!
//! A generation file is a sequence of [`codec`] frames, so each record carries its length
//! and a CRC32C:
//!
//! ```text
//! RaftCheckpoint  version u8 = 1
//!   (first)       hard state
//!                 snapshot: index u64, term u64, membership,
//!                           data_len u32 (<= SNAPSHOT_BYTES_MAX), data_len bytes
//!                 entries u64: how many entries after the snapshot the checkpoint holds
//! RaftEntries     version u8 = 1
//!   (then, any    flags u8: bit 0 a hard state follows, bit 1 a truncate_from follows,
//!    number)            the other bits zero
//!                 [hard state] [truncate_from u64]
//!                 count u32 (<= ENTRIES_PER_MESSAGE_MAX), count × entry
//! hard state = term u64, vote u8 (0 none, 1 a node id u64 follows)
//! entry, membership: exactly as in [`wire`]
//! ```
//!
//! Integers are little-endian. The checkpoint's `entries` are carried by the RaftEntries
//! frames right after it, which have no flags, each with at most
//! [`CHECKPOINT_FRAME_BYTES_MAX`] payload bytes (or one entry, if that one is larger).
//! Until all of them have been read the generation is **incomplete**: the member crashed
//! while writing it, and it is unusable. Every RaftEntries frame after them is one
//! [`Persist`] without a snapshot, applied as Raft defines: drop the entries with index
//! `>= truncate_from`, append the entries, store the hard state.
//!
//! # The driver's part
//!
//! - A persist with a snapshot starts generation `g + 1`: [`encode_checkpoint`] of the
//!   member's whole state after that persist. Once it is synced, older generations may be
//!   deleted.
//! - Every other persist appends one frame ([`encode_persist`]) to the newest generation.
//! - At start, the newest generation that [`replay`]s `Ok` is the state; a newer one that
//!   errs was cut short by a crash before its persist completed, and is deleted. Before
//!   appending to the replayed file, truncate it to [`Recovered::valid_len`]: a frame
//!   appended after a torn tail would never be read.
//!
//! # Trust
//!
//! Bytes from disk are hostile. [`replay`] never panics, allocates in proportion to the
//! input (no count is trusted beyond what the bytes left can hold), and returns only state
//! that [`super::Raft::new`] accepts: the snapshot's term is at most the hard state's;
//! entries are contiguous from `snapshot.index + 1`, their terms never decrease, start at
//! or above the snapshot's term and are at most the hard state's term; the hard state's
//! term never decreases from frame to frame; a truncation drops only entries after the
//! snapshot. The encoders assert the same rules (a violation is a caller bug), so what is
//! written is what is read.

use std::fmt;

use super::wire::{self, WireError, ENTRIES_PER_MESSAGE_MAX, SNAPSHOT_BYTES_MAX};
use super::{Entry, HardState, Index, Persist, Snapshot, Term};
use crate::codec::{self, FrameError, FrameKind, ReadError, Reader, FRAME_HEADER_LEN};
use crate::types::NodeId;

/// The format version this module writes and accepts.
pub const STORE_VERSION: u8 = 1;
/// The most payload bytes of a frame carrying a checkpoint's entries, unless a single
/// entry is larger (then it has a frame of its own).
pub const CHECKPOINT_FRAME_BYTES_MAX: usize = 1 << 20;

/// Entries frame flag: a hard state follows the flags.
const FLAG_HARD_STATE: u8 = 1 << 0;
/// Entries frame flag: a `truncate_from` follows (after the hard state, if any).
const FLAG_TRUNCATE: u8 = 1 << 1;
const FLAGS_KNOWN: u8 = FLAG_HARD_STATE | FLAG_TRUNCATE;

/// Why a generation file is unusable ([`replay`]'s error), or why its bytes after
/// [`Recovered::valid_len`] were cut ([`Recovered::cut`]). Offsets (`at`) are bytes from
/// the start of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The file holds no bytes.
    Empty,
    /// The frame at `at` runs past the end of the file: `have` of its `needed` bytes
    /// (`needed` is the header's length if even the header is cut).
    Torn { at: usize, have: usize, needed: usize },
    /// The frame at `at` is not a valid frame: bad magic, version, kind, length or checksum.
    Corrupt { at: usize, error: FrameError },
    /// The file's first frame is a `kind` frame, not a checkpoint.
    NoCheckpoint { kind: FrameKind },
    /// The frame at `at` is a `kind` frame where a RaftEntries frame belongs.
    UnexpectedFrame { at: usize, kind: FrameKind },
    /// A version byte this build does not know.
    UnknownVersion { at: usize, found: u8 },
    /// Flag bits this build does not know.
    UnknownFlags { at: usize, found: u8 },
    /// A frame carrying the checkpoint's entries has flags (a hard state or a truncation).
    FlagsInCheckpoint { at: usize, found: u8 },
    /// A vote byte other than 0 (no vote) or 1 (a node id follows).
    BadVote { at: usize, found: u8 },
    /// A frame's content ends before what it declares, or a varint is malformed.
    Read(ReadError),
    /// Bytes after the end of a frame's content, the first at `at`.
    TrailingBytes { at: usize, count: usize },
    /// The snapshot's data length is above [`SNAPSHOT_BYTES_MAX`].
    SnapshotTooLarge { at: usize, len: u32 },
    /// The snapshot's term is above the checkpoint's hard state term.
    SnapshotTermAboveHard { at: usize, term: Term, hard_term: Term },
    /// A frame's entry count is above [`ENTRIES_PER_MESSAGE_MAX`].
    TooManyEntries { at: usize, count: u32 },
    /// A frame carries `count` entries where only `left` of the checkpoint's are missing.
    CheckpointOverrun { at: usize, count: u32, left: u64 },
    /// The file ends (at `at`) after `found` of the checkpoint's `promised` entries.
    MissingEntries { at: usize, promised: u64, found: u64 },
    /// The entry at `at` has index `found`, where the index after `after` belongs.
    NotContiguous { at: usize, after: Index, found: Index },
    /// The entry at `at` has a term below the term of the entry before it (or of the
    /// snapshot, for the first entry).
    TermDecreases { at: usize, index: Index, term: Term, previous: Term },
    /// The entry at `at` has a term above the hard state's term (as of after its frame).
    TermAboveHard { at: usize, index: Index, term: Term, hard_term: Term },
    /// A `truncate_from` not in `(snapshot_index, last_index + 1]`.
    BadTruncate { at: usize, from: Index, snapshot_index: Index, last_index: Index },
    /// A hard state whose term is below the one before it.
    HardTermDecreases { at: usize, term: Term, previous: Term },
    /// An entry kind this build does not know.
    UnknownEntryKind { at: usize, found: u8 },
    /// The entry at `at` (log index `index`) carries a command above
    /// [`wire::COMMAND_BYTES_MAX`].
    CommandTooLarge { at: usize, index: Index, len: u64 },
    /// The membership at `at` is not valid (see [`wire`]).
    BadMembership { at: usize },
    /// The entry at `at` is not valid for another reason the entry codec gives.
    BadEntry { at: usize, error: WireError },
}

const CORRUPT: &str = "the file is corrupt";

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Empty => write!(
                f,
                "raft store file is empty: the member crashed before its checkpoint was written; use the previous \
                 generation"
            ),
            StoreError::Torn { at, have, needed } => write!(
                f,
                "raft store frame at byte {at} is torn: the file holds {have} of its {needed} bytes (a crash cut \
                 the write short)"
            ),
            StoreError::Corrupt { at, error } => write!(f, "raft store frame at byte {at} is corrupt: {error}"),
            StoreError::NoCheckpoint { kind } => write!(
                f,
                "raft store file starts with a {kind:?} frame, not a RaftCheckpoint: it is not a raft generation \
                 file, or {CORRUPT}"
            ),
            StoreError::UnexpectedFrame { at, kind } => {
                write!(
                    f,
                    "raft store frame at byte {at} is a {kind:?} frame where a RaftEntries frame belongs: {CORRUPT}"
                )
            }
            StoreError::UnknownVersion { at, found } => write!(
                f,
                "raft store format version {found} at byte {at} (this build reads {STORE_VERSION}): the file was \
                 written by another version of Outpost, or {CORRUPT}"
            ),
            StoreError::UnknownFlags { at, found } => write!(
                f,
                "flags {found:#04x} at byte {at} set bits this build does not know (it knows bits 0 and 1): the \
                 file was written by another version of Outpost, or {CORRUPT}"
            ),
            StoreError::FlagsInCheckpoint { at, found } => write!(
                f,
                "flags {found:#04x} at byte {at} in a frame carrying the checkpoint's entries, which has neither \
                 hard state nor truncation: {CORRUPT}"
            ),
            StoreError::BadVote { at, found } => {
                write!(f, "vote byte {found} at byte {at} should be 0 (no vote) or 1 (a vote follows): {CORRUPT}")
            }
            StoreError::Read(e) => write!(f, "raft store frame content is cut short or malformed: {e}"),
            StoreError::TrailingBytes { at, count } => {
                write!(f, "{count} bytes at byte {at} follow the end of a raft store frame's content: {CORRUPT}")
            }
            StoreError::SnapshotTooLarge { at, len } => {
                write!(f, "snapshot length {len} at byte {at} is above the maximum {SNAPSHOT_BYTES_MAX}: {CORRUPT}")
            }
            StoreError::SnapshotTermAboveHard { at, term, hard_term } => {
                write!(f, "snapshot term {term} at byte {at} is above the stored term {hard_term}: {CORRUPT}")
            }
            StoreError::TooManyEntries { at, count } => write!(
                f,
                "entry count {count} at byte {at} is above the maximum {ENTRIES_PER_MESSAGE_MAX} per frame: {CORRUPT}"
            ),
            StoreError::CheckpointOverrun { at, count, left } => write!(
                f,
                "entry count {count} at byte {at} runs past the checkpoint's entries ({left} still missing): \
                 {CORRUPT}"
            ),
            StoreError::MissingEntries { at, promised, found } => write!(
                f,
                "the file ends at byte {at} after {found} of the checkpoint's {promised} entries: the checkpoint is \
                 incomplete (a crash while writing it); use the previous generation"
            ),
            StoreError::NotContiguous { at, after, found } => write!(
                f,
                "entry at byte {at} has index {found} where the index after {after} belongs: stored entries are \
                 contiguous from the snapshot; {CORRUPT}"
            ),
            StoreError::TermDecreases { at, index, term, previous } => write!(
                f,
                "entry {index} at byte {at} has term {term}, below the term {previous} before it: terms in a log \
                 never decrease; {CORRUPT}"
            ),
            StoreError::TermAboveHard { at, index, term, hard_term } => write!(
                f,
                "entry {index} at byte {at} has term {term}, above the stored term {hard_term}: a member's log \
                 holds no term above its own; {CORRUPT}"
            ),
            StoreError::BadTruncate { at, from, snapshot_index, last_index } => write!(
                f,
                "truncate_from {from} at byte {at} must be above the snapshot's index {snapshot_index} and at most \
                 one past the last index {last_index}: {CORRUPT}"
            ),
            StoreError::HardTermDecreases { at, term, previous } => write!(
                f,
                "hard state at byte {at} has term {term}, below the stored term {previous}: a term never \
                 decreases; {CORRUPT}"
            ),
            StoreError::UnknownEntryKind { at, found } => write!(
                f,
                "unknown raft entry kind {found} at byte {at}: the file was written by another version of \
                 Outpost, or {CORRUPT}"
            ),
            StoreError::CommandTooLarge { at, index, len } => write!(
                f,
                "entry {index} at byte {at} carries a {len}-byte command, more than the maximum {}: {CORRUPT}",
                wire::COMMAND_BYTES_MAX
            ),
            StoreError::BadMembership { at } => write!(
                f,
                "membership at byte {at} is not valid (at most {} members, ids in increasing order, none both \
                 voter and learner): {CORRUPT}",
                super::MEMBERS_MAX
            ),
            StoreError::BadEntry { at, error } => write!(f, "entry at byte {at} is not valid: {error}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<ReadError> for StoreError {
    fn from(e: ReadError) -> Self {
        StoreError::Read(e)
    }
}

/// The error of the entry codec for the entry (or membership) starting at `at`.
fn entry_error(error: WireError, at: usize) -> StoreError {
    match error {
        WireError::Read(e) => StoreError::Read(e),
        WireError::UnknownEntryKind { at, found } => StoreError::UnknownEntryKind { at, found },
        WireError::EntryTooLarge { index, len, .. } => StoreError::CommandTooLarge { at, index, len },
        WireError::BadMembership { at } => StoreError::BadMembership { at },
        error => StoreError::BadEntry { at, error },
    }
}

/// The rules every stored entry follows: it comes right after `prev` (the index and term of
/// the entry before it, or of the snapshot), with a term no lower than `prev`'s and no
/// higher than `hard_term`. Checked by the encoders (a violation is a caller bug) and by
/// [`replay`] (a violation is a corrupt file); `at` locates the entry for the error.
fn check_entry(at: usize, prev: (Index, Term), hard_term: Term, index: Index, term: Term) -> Result<(), StoreError> {
    let (after, previous) = prev;
    if after.checked_add(1) != Some(index) {
        return Err(StoreError::NotContiguous { at, after, found: index });
    }
    if term < previous {
        return Err(StoreError::TermDecreases { at, index, term, previous });
    }
    if term > hard_term {
        return Err(StoreError::TermAboveHard { at, index, term, hard_term });
    }
    Ok(())
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_hard_state(out: &mut Vec<u8>, hard: HardState) {
    put_u64(out, hard.term);
    match hard.vote {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_u64(out, id.0);
        }
    }
}

/// Appends the frames of a new generation: a checkpoint of `hard`, `snapshot` and `log`
/// (the entries after `snapshot.index`), then `log` in RaftEntries frames of at most
/// [`CHECKPOINT_FRAME_BYTES_MAX`] payload bytes (or one entry) and at most
/// [`ENTRIES_PER_MESSAGE_MAX`] entries each. [`replay`] of the bytes returns exactly this
/// state.
///
/// # Panics
/// If the state breaks a rule [`replay`] checks (caller bugs): the snapshot's term is above
/// `hard.term` or its data above [`SNAPSHOT_BYTES_MAX`], `log` is not contiguous from
/// `snapshot.index + 1`, its terms decrease, start below the snapshot's or exceed
/// `hard.term`, or an entry or membership is one [`wire`] refuses to encode.
pub fn encode_checkpoint(hard: HardState, snapshot: &Snapshot, log: &[Entry], out: &mut Vec<u8>) {
    assert!(snapshot.term <= hard.term, "the snapshot's term {} is above the term {}", snapshot.term, hard.term);
    assert!(
        snapshot.data.len() <= SNAPSHOT_BYTES_MAX,
        "a snapshot of {} bytes exceeds SNAPSHOT_BYTES_MAX",
        snapshot.data.len()
    );
    let mut prev = (snapshot.index, snapshot.term);
    for e in log {
        check_entry(0, prev, hard.term, e.index, e.term)
            .unwrap_or_else(|err| panic!("caller bug: the checkpoint log breaks a stored log's rule: {err:?}"));
        prev = (e.index, e.term);
    }
    let start = codec::begin_frame(FrameKind::RaftCheckpoint, out);
    out.push(STORE_VERSION);
    put_hard_state(out, hard);
    put_u64(out, snapshot.index);
    put_u64(out, snapshot.term);
    wire::put_membership(out, &snapshot.membership);
    out.extend_from_slice(&(snapshot.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&snapshot.data);
    put_u64(out, log.len() as u64);
    codec::finish_frame(start, out);
    let mut rest = log;
    while !rest.is_empty() {
        let taken = put_checkpoint_chunk(rest, out);
        assert!(taken > 0, "every checkpoint frame carries an entry");
        rest = &rest[taken..];
    }
}

/// Appends one RaftEntries frame (no flags) holding the first entries of `rest`, as many
/// as fit [`CHECKPOINT_FRAME_BYTES_MAX`] and [`ENTRIES_PER_MESSAGE_MAX`], and at least one.
/// Returns how many.
fn put_checkpoint_chunk(rest: &[Entry], out: &mut Vec<u8>) -> usize {
    let start = codec::begin_frame(FrameKind::RaftEntries, out);
    let payload_at = out.len();
    out.push(STORE_VERSION);
    out.push(0);
    let count_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut count = 0;
    for e in rest.iter().take(ENTRIES_PER_MESSAGE_MAX) {
        let entry_at = out.len();
        wire::put_entry(out, e);
        if count > 0 && out.len() - payload_at > CHECKPOINT_FRAME_BYTES_MAX {
            // Re-encoded as the first entry of the next frame.
            out.truncate(entry_at);
            break;
        }
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&(count as u32).to_le_bytes());
    codec::finish_frame(start, out);
    count
}

/// Appends the RaftEntries frame of one persist that has no snapshot (one with a snapshot
/// starts a new generation: see [`encode_checkpoint`]).
///
/// # Panics
/// If `p.snapshot` is set, `p.entries` holds more than [`ENTRIES_PER_MESSAGE_MAX`] entries,
/// is not contiguous, its terms decrease or exceed `p.hard_state`'s term, or the frame would
/// exceed [`codec::MAX_FRAME_PAYLOAD`] (caller bugs: Raft persists what one step appended,
/// at most one message's worth).
pub fn encode_persist(p: &Persist, out: &mut Vec<u8>) {
    assert!(p.snapshot.is_none(), "a persist with a snapshot starts a new generation (encode_checkpoint)");
    assert!(
        p.entries.len() <= ENTRIES_PER_MESSAGE_MAX,
        "a persist of {} entries exceeds ENTRIES_PER_MESSAGE_MAX",
        p.entries.len()
    );
    let hard_term = p.hard_state.map_or(Term::MAX, |h| h.term);
    if let Some(first) = p.entries.first() {
        assert!(first.term <= hard_term, "entry {} has a term above the persist's term {hard_term}", first.index);
    }
    for pair in p.entries.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        check_entry(0, (a.index, a.term), hard_term, b.index, b.term)
            .unwrap_or_else(|err| panic!("caller bug: the persist breaks a stored log's rule: {err:?}"));
    }
    let flags = if p.hard_state.is_some() { FLAG_HARD_STATE } else { 0 }
        | if p.truncate_from.is_some() { FLAG_TRUNCATE } else { 0 };
    let start = codec::begin_frame(FrameKind::RaftEntries, out);
    out.push(STORE_VERSION);
    out.push(flags);
    if let Some(hard) = p.hard_state {
        put_hard_state(out, hard);
    }
    if let Some(from) = p.truncate_from {
        put_u64(out, from);
    }
    out.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
    for e in &p.entries {
        wire::put_entry(out, e);
    }
    codec::finish_frame(start, out);
}

/// What a generation file holds: the state its valid frames build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    pub hard: HardState,
    pub snapshot: Snapshot,
    /// The entries after `snapshot.index`, contiguous.
    pub log: Vec<Entry>,
    /// Bytes of valid frames from the start; the driver truncates the file here before it
    /// appends again.
    pub valid_len: u64,
    /// Why the bytes after `valid_len` were cut (a torn, corrupt or invalid frame), if any
    /// were: a [`StoreError`]'s text.
    pub cut: Option<String>,
}

/// The state built so far.
struct State {
    hard: HardState,
    snapshot: Snapshot,
    log: Vec<Entry>,
}

impl State {
    fn last_index(&self) -> Index {
        self.snapshot.index + self.log.len() as Index
    }

    /// The index and term of the last entry once the log is cut to `keep` entries.
    fn last_within(&self, keep: usize) -> (Index, Term) {
        match keep.checked_sub(1).and_then(|i| self.log.get(i)) {
            Some(e) => (e.index, e.term),
            None => (self.snapshot.index, self.snapshot.term),
        }
    }

    fn apply(&mut self, change: Change) {
        debug_assert!(change.keep <= self.log.len());
        self.log.truncate(change.keep);
        self.log.extend(change.entries);
        if let Some(hard) = change.hard {
            self.hard = hard;
        }
    }
}

/// One checked RaftEntries frame, not yet applied: keep the first `keep` entries, append
/// `entries`, store `hard`.
struct Change {
    hard: Option<HardState>,
    keep: usize,
    entries: Vec<Entry>,
}

/// Replays one generation file: the state its frames build, and where and why it stops.
///
/// `Err` when the generation is unusable: the file is empty, its first frame is torn,
/// corrupt, invalid or not a checkpoint, or the checkpoint's entries are not all present
/// and valid. After a complete checkpoint, the first frame that is torn, fails its
/// checksum, does not decode or breaks a rule (see the module docs) ends the replay:
/// everything from it on is cut ([`Recovered::cut`]) and the state is what the frames
/// before it built. Never panics; allocates in proportion to `bytes.len()`.
pub fn replay(bytes: &[u8]) -> Result<Recovered, StoreError> {
    if bytes.is_empty() {
        return Err(StoreError::Empty);
    }
    let (kind, mut r, mut at) = read_frame(bytes, 0)?;
    if kind != FrameKind::RaftCheckpoint {
        return Err(StoreError::NoCheckpoint { kind });
    }
    let (mut state, promised) = get_checkpoint(&mut r)?;
    let mut found = 0u64;
    while found < promised {
        if at == bytes.len() {
            return Err(StoreError::MissingEntries { at, promised, found });
        }
        let (change, end) = get_entries_frame(bytes, at, &state, Some(promised - found))?;
        found += change.entries.len() as u64;
        state.apply(change);
        at = end;
    }
    let mut cut = None;
    while at < bytes.len() {
        match get_entries_frame(bytes, at, &state, None) {
            Ok((change, end)) => {
                state.apply(change);
                at = end;
            }
            Err(e) => {
                cut = Some(e.to_string());
                break;
            }
        }
    }
    debug_assert!(at <= bytes.len() && cut.is_some() == (at < bytes.len()));
    Ok(Recovered { hard: state.hard, snapshot: state.snapshot, log: state.log, valid_len: at as u64, cut })
}

/// The frame at `at`: its kind, a reader over its payload whose positions are offsets in
/// the file, and the offset where it ends.
fn read_frame(bytes: &[u8], at: usize) -> Result<(FrameKind, Reader<'_>, usize), StoreError> {
    let rest = bytes.get(at..).unwrap_or_default();
    let (frame, used) = codec::decode_frame(rest).map_err(|error| match error {
        FrameError::Incomplete { have, needed } => StoreError::Torn { at, have, needed },
        error => StoreError::Corrupt { at, error },
    })?;
    let end = at + used;
    let mut r = Reader::new(&bytes[..end]);
    r.bytes(at + FRAME_HEADER_LEN)?;
    Ok((frame.kind, r, end))
}

fn get_version(r: &mut Reader<'_>) -> Result<(), StoreError> {
    let at = r.position();
    match r.u8()? {
        STORE_VERSION => Ok(()),
        found => Err(StoreError::UnknownVersion { at, found }),
    }
}

fn get_hard_state(r: &mut Reader<'_>) -> Result<HardState, StoreError> {
    let term = r.u64()?;
    let at = r.position();
    let vote = match r.u8()? {
        0 => None,
        1 => Some(NodeId(r.u64()?)),
        found => return Err(StoreError::BadVote { at, found }),
    };
    Ok(HardState { term, vote })
}

/// Nothing may follow a frame's content.
fn expect_end(r: &Reader<'_>) -> Result<(), StoreError> {
    match r.remaining() {
        0 => Ok(()),
        count => Err(StoreError::TrailingBytes { at: r.position(), count }),
    }
}

/// A checkpoint's payload: the state it starts, and how many entries it promises.
fn get_checkpoint(r: &mut Reader<'_>) -> Result<(State, u64), StoreError> {
    get_version(r)?;
    let hard = get_hard_state(r)?;
    let index = r.u64()?;
    let at = r.position();
    let term = r.u64()?;
    if term > hard.term {
        return Err(StoreError::SnapshotTermAboveHard { at, term, hard_term: hard.term });
    }
    let at = r.position();
    let membership = wire::get_membership(r).map_err(|e| entry_error(e, at))?;
    let at = r.position();
    let len = r.u32()?;
    if len as usize > SNAPSHOT_BYTES_MAX {
        return Err(StoreError::SnapshotTooLarge { at, len });
    }
    let data = r.bytes(len as usize)?.to_vec();
    let promised = r.u64()?;
    expect_end(r)?;
    Ok((State { hard, snapshot: Snapshot { index, term, membership, data }, log: Vec::new() }, promised))
}

/// Reads and checks the RaftEntries frame at `at` against `state`, without changing it.
/// `checkpoint_left`: while the frame carries the checkpoint's entries, how many are still
/// missing. Returns the change and the offset where the frame ends.
fn get_entries_frame(
    bytes: &[u8],
    at: usize,
    state: &State,
    checkpoint_left: Option<u64>,
) -> Result<(Change, usize), StoreError> {
    let (kind, mut r, end) = read_frame(bytes, at)?;
    if kind != FrameKind::RaftEntries {
        return Err(StoreError::UnexpectedFrame { at, kind });
    }
    let r = &mut r;
    get_version(r)?;
    let at = r.position();
    let flags = r.u8()?;
    if flags & !FLAGS_KNOWN != 0 {
        return Err(StoreError::UnknownFlags { at, found: flags });
    }
    if checkpoint_left.is_some() && flags != 0 {
        return Err(StoreError::FlagsInCheckpoint { at, found: flags });
    }
    let hard = if flags & FLAG_HARD_STATE != 0 { Some(get_hard_state_after(r, state.hard.term)?) } else { None };
    let keep = if flags & FLAG_TRUNCATE != 0 { get_truncate(r, state)? } else { state.log.len() };
    let hard_term = hard.map_or(state.hard.term, |h| h.term);
    let entries = get_entries(r, state.last_within(keep), hard_term, checkpoint_left)?;
    expect_end(r)?;
    Ok((Change { hard, keep, entries }, end))
}

/// A hard state whose term is at least `previous`.
fn get_hard_state_after(r: &mut Reader<'_>, previous: Term) -> Result<HardState, StoreError> {
    let at = r.position();
    let hard = get_hard_state(r)?;
    if hard.term < previous {
        return Err(StoreError::HardTermDecreases { at, term: hard.term, previous });
    }
    Ok(hard)
}

/// A `truncate_from` within `(snapshot.index, last_index + 1]`, as the number of entries
/// the log keeps.
fn get_truncate(r: &mut Reader<'_>, state: &State) -> Result<usize, StoreError> {
    let at = r.position();
    let from = r.u64()?;
    let (snapshot_index, last_index) = (state.snapshot.index, state.last_index());
    if from <= snapshot_index || from > last_index.saturating_add(1) {
        return Err(StoreError::BadTruncate { at, from, snapshot_index, last_index });
    }
    Ok((from - snapshot_index - 1) as usize)
}

/// A count and that many entries, each following `prev` (the entry before it) with a term
/// at most `hard_term`.
fn get_entries(
    r: &mut Reader<'_>,
    mut prev: (Index, Term),
    hard_term: Term,
    checkpoint_left: Option<u64>,
) -> Result<Vec<Entry>, StoreError> {
    let at = r.position();
    let count = r.u32()?;
    if count as usize > ENTRIES_PER_MESSAGE_MAX {
        return Err(StoreError::TooManyEntries { at, count });
    }
    if let Some(left) = checkpoint_left.filter(|&left| u64::from(count) > left) {
        return Err(StoreError::CheckpointOverrun { at, count, left });
    }
    // At most ENTRIES_PER_MESSAGE_MAX, and no more than the bytes left can hold.
    let count = count as usize;
    let needed = count * wire::ENTRY_BYTES_MIN;
    if needed > r.remaining() {
        return Err(StoreError::Read(ReadError::Truncated { at: r.position(), needed }));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let at = r.position();
        let term = r.u64()?;
        let index = r.u64()?;
        check_entry(at, prev, hard_term, index, term)?;
        let kind = wire::get_entry_kind(r, index).map_err(|e| entry_error(e, at))?;
        entries.push(Entry { term, index, kind });
        prev = (index, term);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Action, EntryKind, Membership, Raft, RaftConfig, Restored, MEMBERS_MAX};
    use crate::types::Instant;
    use proptest::prelude::*;

    /// What a member's storage holds, changed by [`Persist`] as Raft defines it.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct Model {
        hard: HardState,
        snapshot: Snapshot,
        log: Vec<Entry>,
    }

    impl Model {
        fn apply(&mut self, p: &Persist) {
            if let Some(s) = &p.snapshot {
                self.log.retain(|e| e.index > s.index);
                self.snapshot = s.clone();
            }
            if let Some(from) = p.truncate_from {
                self.log.retain(|e| e.index < from);
            }
            self.log.extend(p.entries.iter().cloned());
            if let Some(h) = p.hard_state {
                self.hard = h;
            }
        }

        fn of(r: &Recovered) -> Model {
            Model { hard: r.hard, snapshot: r.snapshot.clone(), log: r.log.clone() }
        }

        fn checkpoint(&self) -> Vec<u8> {
            let mut out = Vec::new();
            encode_checkpoint(self.hard, &self.snapshot, &self.log, &mut out);
            out
        }

        fn last(&self) -> (Index, Term) {
            self.log.last().map_or((self.snapshot.index, self.snapshot.term), |e| (e.index, e.term))
        }
    }

    fn hard(term: Term, vote: Option<u64>) -> HardState {
        HardState { term, vote: vote.map(NodeId) }
    }

    fn noop(term: Term, index: Index) -> Entry {
        Entry { term, index, kind: EntryKind::Noop }
    }

    fn cmd(term: Term, index: Index, data: &[u8]) -> Entry {
        Entry { term, index, kind: EntryKind::Command(data.to_vec()) }
    }

    fn persist(hard_state: Option<HardState>, truncate_from: Option<Index>, entries: Vec<Entry>) -> Persist {
        Persist { id: 0, hard_state, snapshot: None, truncate_from, entries }
    }

    fn persist_bytes(p: &Persist) -> Vec<u8> {
        let mut out = Vec::new();
        encode_persist(p, &mut out);
        out
    }

    fn frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        codec::encode_frame(kind, payload, &mut out);
        out
    }

    /// Replays `bytes`, which must succeed.
    fn replayed(bytes: &[u8]) -> Recovered {
        replay(bytes).unwrap_or_else(|e| panic!("replay failed: {e}"))
    }

    // ---- round trips ----

    #[test]
    fn checkpoint_and_persists_replay_to_the_model() {
        let mut m = Model {
            hard: hard(3, Some(2)),
            snapshot: Snapshot {
                index: 10,
                term: 2,
                membership: Membership::of_voters([NodeId(1), NodeId(2), NodeId(3)]),
                data: b"state at 10".to_vec(),
            },
            log: vec![cmd(2, 11, b"a"), noop(3, 12)],
        };
        let mut bytes = m.checkpoint();
        let change = Membership { voters: [NodeId(1), NodeId(2)].into(), learners: [NodeId(4)].into() };
        let persists = [
            persist(None, None, vec![cmd(3, 13, b"b"), cmd(3, 14, b"")]),
            persist(Some(hard(4, None)), None, vec![]),
            persist(Some(hard(4, Some(1))), None, vec![]),
            // A new leader of term 4 overwrites 13 and 14, and its entries may carry the
            // term the same frame stores.
            persist(Some(hard(5, Some(1))), Some(13), vec![noop(5, 13)]),
            persist(None, None, vec![Entry { term: 5, index: 14, kind: EntryKind::Membership(change) }]),
            persist(None, Some(14), vec![]),
            persist(None, Some(11), vec![cmd(5, 11, b"c")]),
            persist(None, None, vec![]),
        ];
        for p in &persists {
            encode_persist(p, &mut bytes);
            m.apply(p);
            let r = replayed(&bytes);
            assert_eq!(Model::of(&r), m, "after {p:?}");
            assert_eq!((r.valid_len, r.cut), (bytes.len() as u64, None));
        }
        assert_eq!(m.log, vec![cmd(5, 11, b"c")]);
        assert_eq!(m.hard, hard(5, Some(1)));
    }

    #[test]
    fn a_fresh_member_has_an_empty_checkpoint() {
        let m = Model::default();
        let bytes = m.checkpoint();
        let r = replayed(&bytes);
        assert_eq!(Model::of(&r), m);
        assert_eq!(bytes.len(), FRAME_HEADER_LEN + 1 + 9 + 16 + 2 + 4 + 8, "one frame, no entries frame");
    }

    #[test]
    fn layout_is_as_documented() {
        let snapshot = Snapshot { index: 7, term: 2, membership: Membership::of_voters([NodeId(9)]), data: vec![0xAB] };
        let mut bytes = Vec::new();
        encode_checkpoint(hard(3, Some(9)), &snapshot, &[cmd(3, 8, b"xy")], &mut bytes);
        encode_persist(&persist(Some(hard(4, None)), Some(8), vec![noop(4, 8)]), &mut bytes);
        let mut want = Vec::new();
        let mut p = vec![STORE_VERSION];
        p.extend_from_slice(&3u64.to_le_bytes());
        p.push(1);
        p.extend_from_slice(&9u64.to_le_bytes());
        p.extend_from_slice(&7u64.to_le_bytes());
        p.extend_from_slice(&2u64.to_le_bytes());
        p.push(1); // one voter
        p.extend_from_slice(&9u64.to_le_bytes());
        p.push(0); // no learner
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(0xAB);
        p.extend_from_slice(&1u64.to_le_bytes()); // one entry follows
        want.extend(frame(FrameKind::RaftCheckpoint, &p));
        let mut p = vec![STORE_VERSION, 0];
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&3u64.to_le_bytes());
        p.extend_from_slice(&8u64.to_le_bytes());
        p.extend_from_slice(&[1, 2, b'x', b'y']); // a command of two bytes
        want.extend(frame(FrameKind::RaftEntries, &p));
        let mut p = vec![STORE_VERSION, FLAG_HARD_STATE | FLAG_TRUNCATE];
        p.extend_from_slice(&4u64.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&8u64.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&4u64.to_le_bytes());
        p.extend_from_slice(&8u64.to_le_bytes());
        p.push(0); // a noop
        want.extend(frame(FrameKind::RaftEntries, &p));
        assert_eq!(bytes, want);
    }

    /// Each frame of `bytes`: its kind and payload.
    fn frames(bytes: &[u8]) -> Vec<(FrameKind, &[u8])> {
        let mut at = 0;
        let mut v = Vec::new();
        while at < bytes.len() {
            let (f, used) = codec::decode_frame(&bytes[at..]).expect("a frame");
            v.push((f.kind, f.payload));
            at += used;
        }
        v
    }

    fn entry_count(payload: &[u8]) -> usize {
        u32::from_le_bytes(payload[2..6].try_into().expect("4 bytes")) as usize
    }

    #[test]
    fn a_large_checkpoint_is_chunked_into_frames_of_at_most_a_mebibyte() {
        let data = vec![7u8; 100_000];
        let big = vec![8u8; wire::COMMAND_BYTES_MAX];
        let mut log: Vec<Entry> = (1..=40).map(|i| cmd(1, i, &data)).collect();
        log.push(cmd(1, 41, &big));
        log.extend((42..=45).map(|i| cmd(1, i, &data)));
        let m = Model { hard: hard(1, None), snapshot: Snapshot::default(), log };
        let bytes = m.checkpoint();
        let fs = frames(&bytes);
        assert_eq!(fs[0].0, FrameKind::RaftCheckpoint);
        let mut counts = Vec::new();
        for (kind, payload) in &fs[1..] {
            assert_eq!(*kind, FrameKind::RaftEntries);
            let count = entry_count(payload);
            assert!(count >= 1);
            assert!(
                payload.len() <= CHECKPOINT_FRAME_BYTES_MAX || count == 1,
                "{} bytes, {count} entries",
                payload.len()
            );
            counts.push(count);
        }
        // Ten 100 kB entries fill a mebibyte; the 1 MiB command travels alone.
        assert_eq!(counts, [10, 10, 10, 10, 1, 4]);
        assert!(fs[5].1.len() > CHECKPOINT_FRAME_BYTES_MAX);
        assert_eq!(Model::of(&replayed(&bytes)), m);
    }

    #[test]
    fn a_checkpoint_of_many_entries_is_chunked_by_count() {
        let n = 2 * ENTRIES_PER_MESSAGE_MAX as u64 + 5;
        let m =
            Model { hard: hard(1, None), snapshot: Snapshot::default(), log: (1..=n).map(|i| noop(1, i)).collect() };
        let bytes = m.checkpoint();
        let counts: Vec<usize> = frames(&bytes)[1..].iter().map(|(_, p)| entry_count(p)).collect();
        assert_eq!(counts, [ENTRIES_PER_MESSAGE_MAX, ENTRIES_PER_MESSAGE_MAX, 5]);
        assert_eq!(Model::of(&replayed(&bytes)), m);
    }

    #[test]
    fn the_last_indexes_a_u64_holds_round_trip() {
        let snapshot = Snapshot { index: u64::MAX - 2, term: 1, ..Snapshot::default() };
        let m = Model { hard: hard(1, None), snapshot, log: vec![noop(1, u64::MAX - 1)] };
        let mut bytes = m.checkpoint();
        encode_persist(&persist(None, None, vec![noop(1, u64::MAX)]), &mut bytes);
        let r = replayed(&bytes);
        assert_eq!(r.log.last(), Some(&noop(1, u64::MAX)));
        assert_eq!(r.cut, None);
        // No index follows u64::MAX: an entry claiming to is cut.
        let at = bytes.len();
        let after = [&bytes[..], &frame(FrameKind::RaftEntries, &noops(&[(1, 0)]))].concat();
        let want = StoreError::NotContiguous { at: at + FRAME_HEADER_LEN + 6, after: u64::MAX, found: 0 };
        assert_eq!(replayed(&after).cut, Some(want.to_string()));
        bytes.extend(persist_bytes(&persist(None, Some(u64::MAX), vec![])));
        assert_eq!(replayed(&bytes).log, vec![noop(1, u64::MAX - 1)]);
    }

    // ---- what makes a generation unusable ----

    /// A small valid generation: term 3, snapshot at 10 (term 2), entries 11 and 12.
    fn base() -> (Model, Vec<u8>) {
        let m = Model {
            hard: hard(3, Some(1)),
            snapshot: Snapshot {
                index: 10,
                term: 2,
                membership: Membership::of_voters([NodeId(1), NodeId(2)]),
                data: b"s".to_vec(),
            },
            log: vec![noop(2, 11), cmd(3, 12, b"x")],
        };
        let bytes = m.checkpoint();
        (m, bytes)
    }

    /// A checkpoint payload: version 1, hard state (term 3, no vote), snapshot at 10 of
    /// `snapshot_term`, no members, `data`, then `entries` promised.
    fn checkpoint_payload(snapshot_term: Term, data: &[u8], entries: u64) -> Vec<u8> {
        let mut p = vec![STORE_VERSION];
        p.extend_from_slice(&3u64.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&10u64.to_le_bytes());
        p.extend_from_slice(&snapshot_term.to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&(data.len() as u32).to_le_bytes());
        p.extend_from_slice(data);
        p.extend_from_slice(&entries.to_le_bytes());
        p
    }

    /// Offset of the snapshot term in a checkpoint without a vote.
    const SNAPSHOT_TERM_AT: usize = FRAME_HEADER_LEN + 1 + 9 + 8;

    /// An entries payload written by hand: `head` (the bytes after the version and flags,
    /// before the count), then `count` and noop entries of (term, index).
    fn entries_payload(flags: u8, head: &[u8], count: u32, entries: &[(Term, Index)]) -> Vec<u8> {
        let mut p = vec![STORE_VERSION, flags];
        p.extend_from_slice(head);
        p.extend_from_slice(&count.to_le_bytes());
        for (t, i) in entries {
            p.extend_from_slice(&t.to_le_bytes());
            p.extend_from_slice(&i.to_le_bytes());
            p.push(0);
        }
        p
    }

    fn noops(entries: &[(Term, Index)]) -> Vec<u8> {
        entries_payload(0, &[], entries.len() as u32, entries)
    }

    #[test]
    fn an_empty_file_is_unusable() {
        assert_eq!(replay(&[]), Err(StoreError::Empty));
    }

    #[test]
    fn a_torn_or_corrupt_checkpoint_is_unusable() {
        let (_, bytes) = base();
        let first = frames(&bytes)[0].1.len() + FRAME_HEADER_LEN;
        assert_eq!(replay(&bytes[..5]), Err(StoreError::Torn { at: 0, have: 5, needed: FRAME_HEADER_LEN }));
        assert_eq!(replay(&bytes[..first - 1]), Err(StoreError::Torn { at: 0, have: first - 1, needed: first }));
        let mut bad = bytes.clone();
        bad[first - 1] ^= 1;
        assert!(matches!(replay(&bad), Err(StoreError::Corrupt { at: 0, error: FrameError::ChecksumMismatch { .. } })));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(replay(&bad), Err(StoreError::Corrupt { at: 0, error: FrameError::BadMagic { .. } })));
    }

    #[test]
    fn a_file_that_does_not_start_with_a_checkpoint_is_unusable() {
        let bytes = frame(FrameKind::RaftEntries, &noops(&[]));
        assert_eq!(replay(&bytes), Err(StoreError::NoCheckpoint { kind: FrameKind::RaftEntries }));
        let bytes = frame(FrameKind::Meta, &[1; 9]);
        assert_eq!(replay(&bytes), Err(StoreError::NoCheckpoint { kind: FrameKind::Meta }));
    }

    #[test]
    fn checkpoint_content_errors() {
        let h = FRAME_HEADER_LEN;
        let checkpoint = |p: &[u8]| replay(&frame(FrameKind::RaftCheckpoint, p));
        assert!(checkpoint(&checkpoint_payload(2, b"", 0)).is_ok());
        let mut p = checkpoint_payload(2, b"", 0);
        p[0] = 2;
        assert_eq!(checkpoint(&p), Err(StoreError::UnknownVersion { at: h, found: 2 }));
        let mut p = checkpoint_payload(2, b"", 0);
        p[9] = 2;
        assert_eq!(checkpoint(&p), Err(StoreError::BadVote { at: h + 9, found: 2 }));
        assert_eq!(
            checkpoint(&checkpoint_payload(4, b"", 0)),
            Err(StoreError::SnapshotTermAboveHard { at: SNAPSHOT_TERM_AT, term: 4, hard_term: 3 })
        );
        // A membership of ten voters.
        let mut p = checkpoint_payload(2, b"", 0);
        let members_at = SNAPSHOT_TERM_AT - h + 8;
        p[members_at] = MEMBERS_MAX as u8 + 1;
        assert_eq!(checkpoint(&p), Err(StoreError::BadMembership { at: h + members_at }));
        // A snapshot length above the maximum, refused before reading.
        let mut p = checkpoint_payload(2, b"", 0);
        let len_at = members_at + 2;
        let len = SNAPSHOT_BYTES_MAX as u32 + 1;
        p[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(checkpoint(&p), Err(StoreError::SnapshotTooLarge { at: h + len_at, len }));
        // A length that promises more bytes than the frame holds.
        p[len_at..len_at + 4].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(checkpoint(&p), Err(StoreError::Read(ReadError::Truncated { at: h + len_at + 4, needed: 100 })));
        let mut p = checkpoint_payload(2, b"", 0);
        p.push(0);
        assert_eq!(checkpoint(&p), Err(StoreError::TrailingBytes { at: h + p.len() - 1, count: 1 }));
        let p = checkpoint_payload(2, b"", 0);
        assert_eq!(
            checkpoint(&p[..p.len() - 1]),
            Err(StoreError::Read(ReadError::Truncated { at: h + p.len() - 8, needed: 8 }))
        );
    }

    #[test]
    fn a_checkpoint_without_all_its_entries_is_unusable() {
        let mut bytes = frame(FrameKind::RaftCheckpoint, &checkpoint_payload(2, b"", 3));
        let at = bytes.len();
        assert_eq!(replay(&bytes), Err(StoreError::MissingEntries { at, promised: 3, found: 0 }));
        bytes.extend(frame(FrameKind::RaftEntries, &noops(&[(2, 11), (3, 12)])));
        let at = bytes.len();
        assert_eq!(replay(&bytes), Err(StoreError::MissingEntries { at, promised: 3, found: 2 }));
        // A frame of no entries is allowed, and changes nothing.
        bytes.extend(frame(FrameKind::RaftEntries, &noops(&[])));
        let at = bytes.len();
        assert_eq!(replay(&bytes), Err(StoreError::MissingEntries { at, promised: 3, found: 2 }));
        let last = frame(FrameKind::RaftEntries, &noops(&[(3, 13)]));
        let torn = [&bytes[..], &last[..last.len() - 1]].concat();
        assert_eq!(replay(&torn), Err(StoreError::Torn { at, have: last.len() - 1, needed: last.len() }));
        bytes.extend(&last);
        assert_eq!(replayed(&bytes).log, vec![noop(2, 11), noop(3, 12), noop(3, 13)]);
        // A checkpoint promising u64::MAX entries allocates nothing for them.
        let bytes = frame(FrameKind::RaftCheckpoint, &checkpoint_payload(2, b"", u64::MAX));
        assert!(matches!(replay(&bytes), Err(StoreError::MissingEntries { promised: u64::MAX, found: 0, .. })));
    }

    #[test]
    fn the_checkpoints_entry_frames_carry_entries_only() {
        let checkpoint = frame(FrameKind::RaftCheckpoint, &checkpoint_payload(2, b"", 2));
        let at = checkpoint.len();
        let with = |payload: &[u8]| replay(&[&checkpoint[..], &frame(FrameKind::RaftEntries, payload)].concat());
        let mut p = entries_payload(FLAG_HARD_STATE, &[], 0, &[]);
        p.splice(2..2, 4u64.to_le_bytes().into_iter().chain([0]));
        assert_eq!(with(&p), Err(StoreError::FlagsInCheckpoint { at: at + FRAME_HEADER_LEN + 1, found: 1 }));
        assert_eq!(
            with(&noops(&[(2, 11), (2, 12), (2, 13)])),
            Err(StoreError::CheckpointOverrun { at: at + FRAME_HEADER_LEN + 2, count: 3, left: 2 })
        );
        assert_eq!(
            with(&noops(&[(2, 12)])),
            Err(StoreError::NotContiguous { at: at + FRAME_HEADER_LEN + 6, after: 10, found: 12 })
        );
        assert_eq!(
            with(&noops(&[(4, 11)])),
            Err(StoreError::TermAboveHard { at: at + FRAME_HEADER_LEN + 6, index: 11, term: 4, hard_term: 3 })
        );
        let bytes = [&checkpoint[..], &checkpoint[..]].concat();
        assert_eq!(replay(&bytes), Err(StoreError::UnexpectedFrame { at, kind: FrameKind::RaftCheckpoint }));
        let bytes = [&checkpoint[..], &frame(FrameKind::RaftEntries, &noops(&[(2, 11), (3, 12)]))[..]].concat();
        assert!(replay(&bytes).is_ok());
    }

    // ---- what cuts a complete generation ----

    /// Replays the base generation followed by `tail`: the state must be the base's, with
    /// everything from the tail on cut because of `want`.
    fn assert_cut(tail: &[u8], want: StoreError) {
        let (m, bytes) = base();
        let all = [&bytes[..], tail].concat();
        let r = replayed(&all);
        assert_eq!(Model::of(&r), m);
        assert_eq!(r.valid_len, bytes.len() as u64);
        assert_eq!(r.cut, Some(want.to_string()), "{want:?}");
    }

    /// The base generation's length: where the tail of [`assert_cut`] starts.
    fn tail_at() -> usize {
        base().1.len()
    }

    #[test]
    fn a_torn_or_corrupt_frame_is_cut() {
        let at = tail_at();
        let p = persist_bytes(&persist(None, None, vec![noop(3, 13)]));
        let n = p.len();
        assert_cut(&p[..n - 1], StoreError::Torn { at, have: n - 1, needed: n });
        assert_cut(&p[..3], StoreError::Torn { at, have: 3, needed: FRAME_HEADER_LEN });
        let mut bad = p.clone();
        bad[n - 1] ^= 0x40;
        let error = codec::decode_frame(&bad).expect_err("corrupt");
        assert!(matches!(error, FrameError::ChecksumMismatch { .. }));
        assert_cut(&bad, StoreError::Corrupt { at, error });
        // Frames after a bad one are not read, even valid ones.
        let next = persist_bytes(&persist(None, None, vec![noop(3, 13)]));
        let error = codec::decode_frame(&bad).expect_err("corrupt");
        assert_cut(&[&bad[..], &next[..]].concat(), StoreError::Corrupt { at, error });
        assert_cut(&[0; 40], StoreError::Corrupt { at, error: FrameError::BadMagic { found: 0 } });
    }

    #[test]
    fn a_frame_of_another_kind_is_cut() {
        let at = tail_at();
        let (_, checkpoint) = base();
        assert_cut(&checkpoint, StoreError::UnexpectedFrame { at, kind: FrameKind::RaftCheckpoint });
        assert_cut(&frame(FrameKind::Meta, &[0; 9]), StoreError::UnexpectedFrame { at, kind: FrameKind::Meta });
    }

    #[test]
    fn bad_versions_flags_and_lengths_are_cut() {
        let at = tail_at() + FRAME_HEADER_LEN;
        let entries = |p: &[u8]| frame(FrameKind::RaftEntries, p);
        let mut p = noops(&[]);
        p[0] = 9;
        assert_cut(&entries(&p), StoreError::UnknownVersion { at, found: 9 });
        for flags in [4, 0x80, 0xff] {
            assert_cut(
                &entries(&entries_payload(flags, &[], 0, &[])),
                StoreError::UnknownFlags { at: at + 1, found: flags },
            );
        }
        let vote = [&3u64.to_le_bytes()[..], &[2]].concat();
        assert_cut(
            &entries(&entries_payload(FLAG_HARD_STATE, &vote, 0, &[])),
            StoreError::BadVote { at: at + 10, found: 2 },
        );
        let max = ENTRIES_PER_MESSAGE_MAX as u32;
        assert_cut(
            &entries(&entries_payload(0, &[], max + 1, &[])),
            StoreError::TooManyEntries { at: at + 2, count: max + 1 },
        );
        assert_cut(
            &entries(&entries_payload(0, &[], u32::MAX, &[])),
            StoreError::TooManyEntries { at: at + 2, count: u32::MAX },
        );
        // A count the bytes cannot hold is refused before anything is allocated for it.
        assert_cut(
            &entries(&entries_payload(0, &[], max, &[(3, 13)])),
            StoreError::Read(ReadError::Truncated {
                at: at + 6,
                needed: ENTRIES_PER_MESSAGE_MAX * wire::ENTRY_BYTES_MIN,
            }),
        );
        assert_cut(&entries(&[STORE_VERSION, 0, 0]), StoreError::Read(ReadError::Truncated { at: at + 2, needed: 4 }));
        let mut p = noops(&[(3, 13)]);
        p.extend_from_slice(&[0, 0]);
        assert_cut(&entries(&p), StoreError::TrailingBytes { at: at + p.len() - 2, count: 2 });
    }

    #[test]
    fn entries_breaking_the_logs_rules_are_cut() {
        let at = tail_at() + FRAME_HEADER_LEN;
        let entries = |p: &[u8]| frame(FrameKind::RaftEntries, p);
        let first = at + 6;
        assert_cut(&entries(&noops(&[(3, 14)])), StoreError::NotContiguous { at: first, after: 12, found: 14 });
        assert_cut(&entries(&noops(&[(3, 12)])), StoreError::NotContiguous { at: first, after: 12, found: 12 });
        assert_cut(
            &entries(&noops(&[(3, 13), (3, 15)])),
            StoreError::NotContiguous { at: first + 17, after: 13, found: 15 },
        );
        assert_cut(
            &entries(&noops(&[(2, 13)])),
            StoreError::TermDecreases { at: first, index: 13, term: 2, previous: 3 },
        );
        assert_cut(
            &entries(&noops(&[(4, 13)])),
            StoreError::TermAboveHard { at: first, index: 13, term: 4, hard_term: 3 },
        );
        // After a truncation the entries follow the kept ones, and the snapshot's term is the
        // floor.
        let truncate = |from: u64| from.to_le_bytes();
        assert_cut(
            &entries(&entries_payload(FLAG_TRUNCATE, &truncate(11), 1, &[(1, 11)])),
            StoreError::TermDecreases { at: first + 8, index: 11, term: 1, previous: 2 },
        );
        assert_cut(
            &entries(&entries_payload(FLAG_TRUNCATE, &truncate(12), 1, &[(3, 13)])),
            StoreError::NotContiguous { at: first + 8, after: 11, found: 13 },
        );
        // An entry's term may be the one its own frame stores, not above it.
        let h5 = [&5u64.to_le_bytes()[..], &[0]].concat();
        assert_cut(
            &entries(&entries_payload(FLAG_HARD_STATE, &h5, 1, &[(6, 13)])),
            StoreError::TermAboveHard { at: first + 9, index: 13, term: 6, hard_term: 5 },
        );
        let (_, bytes) = base();
        let ok = [&bytes[..], &entries(&entries_payload(FLAG_HARD_STATE, &h5, 1, &[(5, 13)]))].concat();
        let r = replayed(&ok);
        assert_eq!((r.hard, r.log.last(), r.cut), (hard(5, None), Some(&noop(5, 13)), None));
    }

    #[test]
    fn truncations_outside_the_log_are_cut() {
        let at = tail_at() + FRAME_HEADER_LEN + 2;
        let truncate =
            |from: u64| frame(FrameKind::RaftEntries, &entries_payload(FLAG_TRUNCATE, &from.to_le_bytes(), 0, &[]));
        for from in [0, 10, 14, u64::MAX] {
            assert_cut(&truncate(from), StoreError::BadTruncate { at, from, snapshot_index: 10, last_index: 12 });
        }
        let (m, bytes) = base();
        for (from, kept) in [(11, 0), (12, 1), (13, 2)] {
            let r = replayed(&[&bytes[..], &truncate(from)].concat());
            assert_eq!(r.log, m.log[..kept], "truncate_from {from}");
        }
    }

    #[test]
    fn a_term_going_back_is_cut() {
        let at = tail_at() + FRAME_HEADER_LEN + 2;
        let h2 = [&2u64.to_le_bytes()[..], &[0]].concat();
        assert_cut(
            &frame(FrameKind::RaftEntries, &entries_payload(FLAG_HARD_STATE, &h2, 0, &[])),
            StoreError::HardTermDecreases { at, term: 2, previous: 3 },
        );
        // The same term with another vote is Raft's business, not the format's.
        let (_, bytes) = base();
        let same = persist_bytes(&persist(Some(hard(3, None)), None, vec![]));
        assert_eq!(replayed(&[&bytes[..], &same[..]].concat()).hard, hard(3, None));
    }

    #[test]
    fn bad_entry_bodies_are_cut() {
        let at = tail_at() + FRAME_HEADER_LEN;
        let first = at + 6;
        let entries = |p: &[u8]| frame(FrameKind::RaftEntries, p);
        let mut p = noops(&[(3, 13)]);
        *p.last_mut().expect("kind") = 3;
        assert_cut(&entries(&p), StoreError::UnknownEntryKind { at: first + 16, found: 3 });
        let mut p = noops(&[(3, 13)]);
        *p.last_mut().expect("kind") = 1;
        codec::put_varint(&mut p, wire::COMMAND_BYTES_MAX as u64 + 1);
        assert_cut(
            &entries(&p),
            StoreError::CommandTooLarge { at: first, index: 13, len: wire::COMMAND_BYTES_MAX as u64 + 1 },
        );
        let mut p = noops(&[(3, 13)]);
        *p.last_mut().expect("kind") = 1;
        p.extend_from_slice(&[5, b'a']);
        assert_cut(&entries(&p), StoreError::Read(ReadError::Truncated { at: first + 18, needed: 5 }));
        let mut p = noops(&[(3, 13)]);
        *p.last_mut().expect("kind") = 2;
        p.extend_from_slice(&[2]);
        p.extend_from_slice(&2u64.to_le_bytes());
        p.extend_from_slice(&1u64.to_le_bytes());
        p.push(0);
        assert_cut(&entries(&p), StoreError::BadMembership { at: first + 17 });
    }

    #[test]
    fn errors_say_what_is_wrong_and_where() {
        let cases = [
            (StoreError::Empty, "empty"),
            (StoreError::Torn { at: 40, have: 3, needed: 12 }, "byte 40 is torn"),
            (StoreError::MissingEntries { at: 99, promised: 5, found: 2 }, "byte 99 after 2 of the checkpoint's 5"),
            (StoreError::NotContiguous { at: 7, after: 12, found: 14 }, "byte 7 has index 14"),
            (
                StoreError::BadTruncate { at: 8, from: 3, snapshot_index: 10, last_index: 12 },
                "truncate_from 3 at byte 8",
            ),
            (StoreError::TermAboveHard { at: 9, index: 13, term: 4, hard_term: 3 }, "above the stored term 3"),
            (StoreError::Read(ReadError::Truncated { at: 77, needed: 8 }), "offset 77"),
            (StoreError::UnknownFlags { at: 5, found: 4 }, "flags 0x04 at byte 5"),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            assert!(text.contains(want), "{text:?} does not mention {want:?}");
        }
    }

    // ---- encoder contracts ----

    #[test]
    #[should_panic(expected = "starts a new generation")]
    fn encoding_a_persist_with_a_snapshot_is_a_caller_bug() {
        let p = Persist { snapshot: Some(Snapshot::default()), ..persist(None, None, vec![]) };
        persist_bytes(&p);
    }

    #[test]
    #[should_panic(expected = "NotContiguous")]
    fn encoding_a_non_contiguous_checkpoint_is_a_caller_bug() {
        encode_checkpoint(hard(1, None), &Snapshot::default(), &[noop(1, 2)], &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "TermAboveHard")]
    fn encoding_a_checkpoint_entry_above_the_term_is_a_caller_bug() {
        encode_checkpoint(hard(1, None), &Snapshot::default(), &[noop(2, 1)], &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "NotContiguous")]
    fn encoding_a_non_contiguous_persist_is_a_caller_bug() {
        persist_bytes(&persist(None, None, vec![noop(1, 5), noop(1, 7)]));
    }

    #[test]
    #[should_panic(expected = "above the persist's term")]
    fn encoding_a_persist_entry_above_its_term_is_a_caller_bug() {
        persist_bytes(&persist(Some(hard(1, None)), None, vec![noop(2, 1)]));
    }

    // ---- what replay returns, Raft accepts ----

    fn raft_from(r: Recovered) -> Raft {
        let members = Membership::of_voters([NodeId(1), NodeId(2), NodeId(3)]);
        Raft::new(
            NodeId(1),
            members,
            RaftConfig::default(),
            7,
            Instant(0),
            Restored { hard: r.hard, snapshot: r.snapshot, log: r.log },
        )
    }

    #[test]
    fn replayed_state_starts_a_raft_member() {
        let (m, mut bytes) = base();
        encode_persist(&persist(Some(hard(4, Some(2))), Some(12), vec![noop(4, 12), cmd(4, 13, b"y")]), &mut bytes);
        bytes.extend_from_slice(&[1, 2, 3]);
        let raft = raft_from(replayed(&bytes));
        assert_eq!((raft.term(), raft.snapshot_index(), raft.last_index()), (4, m.snapshot.index, 13));
        assert_eq!(raft.entry(13), Some(&cmd(4, 13, b"y")));
        let raft = raft_from(replayed(&Model::default().checkpoint()));
        assert_eq!((raft.term(), raft.last_index()), (0, 0));
    }

    /// Drives a single-voter member that elects itself, proposes and compacts, keeping its
    /// persists in generations as the module docs say; it restarts from the newest
    /// generation twice. The store always replays to the member's state.
    #[test]
    fn a_driver_keeping_raft_persists_recovers_the_members_state() {
        let me = NodeId(1);
        let start = |r: Recovered, now: Instant| {
            Raft::new(
                me,
                Membership::of_voters([me]),
                RaftConfig::default(),
                7,
                now,
                Restored { hard: r.hard, snapshot: r.snapshot, log: r.log },
            )
        };
        let mut generations = vec![Model::default().checkpoint()];
        let mut model = Model::default();
        let mut raft = start(replayed(&generations[0]), Instant(0));
        let mut now = Instant(0);
        let mut applied = 0;
        let mut proposed = 0;
        for round in 0..300u64 {
            if round == 100 || round == 200 {
                let r = replayed(generations.last().expect("a generation"));
                assert_eq!(r.cut, None);
                assert_eq!(Model::of(&r), model);
                raft = start(r, now);
                applied = raft.snapshot_index();
            }
            now = raft.poll_timeout().expect("a timer").max(now);
            raft.tick(now);
            if raft.propose(now, format!("c{round}").into_bytes()).is_ok() {
                proposed += 1;
            }
            if applied >= raft.snapshot_index() + 7 {
                raft.compact(now, applied, format!("state@{applied}").into_bytes()).expect("applied");
            }
            while let Some(action) = raft.poll_action() {
                match action {
                    Action::Persist(p) => {
                        model.apply(&p);
                        if p.snapshot.is_some() {
                            generations.push(model.checkpoint());
                        } else {
                            encode_persist(&p, generations.last_mut().expect("a generation"));
                        }
                        raft.persisted(now, p.id);
                    }
                    Action::Apply(e) => applied = e.index,
                    Action::Restore(s) => applied = s.index,
                    _ => {}
                }
            }
            let r = replayed(generations.last().expect("a generation"));
            assert_eq!(Model::of(&r), model, "round {round}");
            assert_eq!((r.hard.term, r.snapshot.index), (raft.term(), raft.snapshot_index()));
            assert_eq!(r.snapshot.index + r.log.len() as Index, raft.last_index());
            for e in &r.log {
                assert_eq!(raft.entry(e.index), Some(e));
            }
        }
        assert!(proposed > 100 && generations.len() > 5, "{proposed} proposals, {} generations", generations.len());
    }

    // ---- properties ----

    fn membership() -> impl Strategy<Value = Membership> {
        proptest::collection::btree_map(0..20u64, any::<bool>(), 0..=MEMBERS_MAX).prop_map(|ids| {
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

    fn entry_kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            Just(EntryKind::Noop),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(EntryKind::Command),
            membership().prop_map(EntryKind::Membership),
        ]
    }

    /// The raw choices of one persist: a term increase and vote, where to truncate, and
    /// entries (a term choice and a kind each).
    type RawPersist = (Option<(u64, Option<u64>)>, Option<prop::sample::Index>, Vec<(u64, EntryKind)>);

    fn raw_persist() -> impl Strategy<Value = RawPersist> {
        (
            proptest::option::of((0..3u64, proptest::option::of(0..5u64))),
            proptest::option::of(any::<prop::sample::Index>()),
            proptest::collection::vec((any::<u64>(), entry_kind()), 0..4),
        )
    }

    /// Entries following `last` with terms between its term and `hard_term`, stopping at
    /// the last index a u64 holds.
    fn entries_after(last: (Index, Term), hard_term: Term, raw: Vec<(u64, EntryKind)>) -> Vec<Entry> {
        let (mut index, mut term) = last;
        let mut v = Vec::new();
        for (choice, kind) in raw {
            let Some(next) = index.checked_add(1) else { break };
            index = next;
            term += choice % (hard_term - term + 1);
            v.push(Entry { term, index, kind });
        }
        v
    }

    /// A valid persist for the state `m`.
    fn persist_for(m: &Model, (bump, truncate, raw): RawPersist) -> Persist {
        let hard_state = bump.map(|(d, vote)| hard(m.hard.term + d, vote));
        let hard_term = hard_state.map_or(m.hard.term, |h| h.term);
        // From the first entry after the snapshot to one past the last, if a u64 holds that.
        let truncate_from =
            truncate.and_then(|ix| (m.snapshot.index + ix.index(m.log.len() + 1) as Index).checked_add(1));
        let mut kept = m.clone();
        kept.log.retain(|e| truncate_from.is_none_or(|t| e.index < t));
        persist(hard_state, truncate_from, entries_after(kept.last(), hard_term, raw))
    }

    /// A checkpoint state, then persists, each valid for the state before it.
    fn history() -> impl Strategy<Value = (Model, Vec<Persist>)> {
        (
            (0..5u64, proptest::option::of(0..5u64), prop_oneof![Just(0u64), 0..1000u64, Just(u64::MAX - 8)]),
            (any::<u64>(), membership(), proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::collection::vec((any::<u64>(), entry_kind()), 0..6),
            proptest::collection::vec(raw_persist(), 0..10),
        )
            .prop_map(|((term, vote, index), (snap_term, membership, data), raw_log, raws)| {
                let snapshot = Snapshot { index, term: snap_term % (term + 1), membership, data };
                let mut m = Model { hard: hard(term, vote), log: Vec::new(), snapshot };
                m.log = entries_after(m.last(), term, raw_log);
                let mut state = m.clone();
                let persists = raws
                    .into_iter()
                    .map(|raw| {
                        let p = persist_for(&state, raw);
                        state.apply(&p);
                        p
                    })
                    .collect();
                (m, persists)
            })
    }

    /// The bytes of a history, where each unit ends (the checkpoint with its entries, then
    /// each persist), and the state after each unit.
    fn written(m: &Model, persists: &[Persist]) -> (Vec<u8>, Vec<usize>, Vec<Model>) {
        let mut bytes = m.checkpoint();
        let mut ends = vec![bytes.len()];
        let mut states = vec![m.clone()];
        let mut state = m.clone();
        for p in persists {
            encode_persist(p, &mut bytes);
            state.apply(p);
            ends.push(bytes.len());
            states.push(state.clone());
        }
        (bytes, ends, states)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn histories_replay_to_the_model((m, persists) in history()) {
            let (bytes, _, states) = written(&m, &persists);
            let r = replay(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&Model::of(&r), states.last().expect("a state"));
            prop_assert_eq!((r.valid_len, r.cut), (bytes.len() as u64, None));
        }

        #[test]
        fn every_cut_replays_the_longest_whole_prefix((m, persists) in history()) {
            let (bytes, ends, states) = written(&m, &persists);
            for len in 0..=bytes.len() {
                let result = replay(&bytes[..len]);
                if len < ends[0] {
                    prop_assert!(
                        matches!(result, Err(StoreError::Empty | StoreError::Torn { .. } | StoreError::MissingEntries { .. })),
                        "cut at {} of the checkpoint's {}: {:?}", len, ends[0], result
                    );
                    continue;
                }
                let k = ends.iter().rposition(|&end| end <= len).expect("the checkpoint is whole");
                let r = result.map_err(|e| TestCaseError::fail(format!("cut at {len}: {e}")))?;
                prop_assert_eq!(&Model::of(&r), &states[k], "cut at {}", len);
                prop_assert_eq!(r.valid_len, ends[k] as u64);
                prop_assert_eq!(r.cut.is_some(), len != ends[k]);
            }
        }

        #[test]
        fn a_flipped_byte_ends_the_replay_at_its_frame((m, persists) in history(), x in 1..=u8::MAX) {
            let (bytes, ends, states) = written(&m, &persists);
            let mut b = bytes.clone();
            for at in 0..b.len() {
                b[at] ^= x;
                let k = ends.iter().position(|&end| end > at).expect("inside the file");
                match replay(&b) {
                    Err(e) => prop_assert_eq!(k, 0, "flip at {} of the persists: {}", at, e),
                    Ok(r) => {
                        prop_assert!(k > 0, "flip at {} in the checkpoint replayed", at);
                        prop_assert_eq!(&Model::of(&r), &states[k - 1], "flip at {}", at);
                        prop_assert_eq!(r.valid_len, ends[k - 1] as u64);
                        prop_assert!(r.cut.is_some());
                    }
                }
                b[at] ^= x;
            }
        }

        #[test]
        fn mutated_payloads_with_valid_checksums_yield_state_raft_accepts(
            (m, persists) in history(),
            mutations in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<prop::sample::Index>(),
                 prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(0xff), any::<u8>()]),
                1..4),
        ) {
            let (bytes, _, _) = written(&m, &persists);
            let mut payloads: Vec<(FrameKind, Vec<u8>)> =
                frames(&bytes).into_iter().map(|(k, p)| (k, p.to_vec())).collect();
            for (f, at, value) in &mutations {
                let n = payloads.len();
                let (_, p) = &mut payloads[f.index(n)];
                if !p.is_empty() {
                    let at = at.index(p.len());
                    p[at] = *value;
                }
            }
            let mut b = Vec::new();
            for (kind, p) in &payloads {
                codec::encode_frame(*kind, p, &mut b);
            }
            if let Ok(r) = replay(&b) {
                let again = replayed(&Model::of(&r).checkpoint());
                prop_assert_eq!(Model::of(&again), Model::of(&r));
                raft_from(r);
            }
        }
    }
}

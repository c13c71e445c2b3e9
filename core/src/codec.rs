//! Byte encodings of everything that reaches disk or network: frames and record batches.
//!
//! A **frame** is the unit of storage and transport: a 12-byte header (magic, version,
//! kind, payload length, CRC32C) and a payload of at most [`MAX_FRAME_PAYLOAD`] bytes.
//!
//! ```text
//! offset 0  magic   u16 LE = 0x504F ("OP")
//!        2  version u8  = 1
//!        3  kind    u8  (FrameKind)
//!        4  len     u32 LE  payload length, <= MAX_FRAME_PAYLOAD
//!        8  crc     u32 LE  CRC32C over bytes [2..8] followed by the payload
//!       12  payload
//! ```
//!
//! A **record batch** is a run of consecutive records of one origin stream, with an
//! optionally zstd-compressed records section:
//!
//! ```text
//! flags u8  (bit0: records section is zstd-compressed; other bits 0)
//! origin u64 LE, base_seq u64 LE, count u32 LE (1..=MAX_BATCH_RECORDS),
//! base_hlc u64 LE (HLC of the first record), raw_len u32 LE (<= MAX_BATCH_RAW_BYTES)
//! records section: raw_len bytes, or one zstd frame that decompresses to exactly raw_len:
//!   per record: hlc - base_hlc (varint), key tag (varint: 0 = no key, n + 1 = n bytes),
//!               key bytes, value length (varint), value bytes
//! ```
//!
//! Varints are unsigned LEB128 of at most 10 bytes, in their shortest form.
//!
//! Every decoder here takes untrusted bytes and returns a typed error; none panics and
//! none allocates more than a bound fixed by this module.

use std::borrow::Cow;
use std::fmt;
use std::iter::FusedIterator;

use crate::hlc::Hlc;
use crate::types::{NodeId, Seq};

/// The first two bytes of every frame: `"OP"` (`0x4F, 0x50`), i.e. `0x504F` little-endian.
pub const FRAME_MAGIC: u16 = 0x504F;
/// The frame format version this module writes and accepts.
pub const FRAME_VERSION: u8 = 1;
/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 12;
/// The largest payload a frame may carry (16 MiB).
pub const MAX_FRAME_PAYLOAD: usize = 16 << 20;

/// Length of a record batch header.
pub const BATCH_HEADER_LEN: usize = 33;
/// The most records one batch may hold.
pub const MAX_BATCH_RECORDS: usize = 65_536;
/// The largest uncompressed records section of one batch (8 MiB).
pub const MAX_BATCH_RAW_BYTES: usize = 8 << 20;
/// The largest record key.
pub const MAX_KEY_BYTES: usize = 4096;
/// The largest record value (1 MiB).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Records sections shorter than this are never compressed.
pub const COMPRESS_MIN_BYTES: usize = 512;
/// The longest varint (a `u64` in 7-bit groups).
pub const MAX_VARINT_LEN: usize = 10;

/// Batch flag: the records section is a zstd frame.
const FLAG_ZSTD: u8 = 1;
/// zstd level for batches: fastest, for small CPUs.
const ZSTD_LEVEL: i32 = 1;

// ---------------------------------------------------------------------------------------
// Primitive reads and writes
// ---------------------------------------------------------------------------------------

/// Why a primitive read failed. Offsets are from the start of the buffer being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// A read of `needed` bytes at offset `at` ran past the end of the buffer.
    Truncated { at: usize, needed: usize },
    /// The varint starting at `at` is longer than 10 bytes, overflows a `u64`, or is not in
    /// its shortest form.
    BadVarint { at: usize },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Truncated { at, needed } => write!(
                f,
                "input ends before offset {at} + {needed} bytes: it was truncated or its \
                 lengths are corrupt"
            ),
            ReadError::BadVarint { at } => write!(
                f,
                "the varint at offset {at} overflows 64 bits or is not in shortest form: \
                 the input is corrupt"
            ),
        }
    }
}

impl std::error::Error for ReadError {}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes, shortest form).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The number of bytes [`put_varint`] writes for `v`.
pub const fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads the varint at `buf[*pos..]` and advances `*pos` past it. Accepts exactly what
/// [`put_varint`] writes: at most 10 bytes, no overflow, shortest form. On error `*pos`
/// is unchanged.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, ReadError> {
    let start = *pos;
    let mut at = start;
    let mut shift = 0u32;
    let mut v = 0u64;
    loop {
        let Some(&byte) = buf.get(at) else {
            return Err(ReadError::Truncated { at, needed: 1 });
        };
        // The 10th byte holds the single remaining bit of a u64 and ends the varint.
        if shift == 63 && byte > 1 {
            return Err(ReadError::BadVarint { at: start });
        }
        v |= u64::from(byte & 0x7f) << shift;
        at += 1;
        if byte & 0x80 == 0 {
            // A zero final byte after the first means a longer-than-needed encoding.
            if byte == 0 && shift > 0 {
                return Err(ReadError::BadVarint { at: start });
            }
            *pos = at;
            return Ok(v);
        }
        shift += 7;
    }
}

/// A cursor over untrusted bytes. Every read either returns the value and advances, or
/// returns a [`ReadError`] and leaves the position where it was.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next byte to read, from the start of the buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes, borrowed from the buffer.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let truncated = ReadError::Truncated { at: self.pos, needed: n };
        let rest = self.buf.get(self.pos..).ok_or(truncated)?;
        let taken = rest.get(..n).ok_or(truncated)?;
        self.pos += n;
        Ok(taken)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let truncated = ReadError::Truncated { at: self.pos, needed: N };
        let rest = self.buf.get(self.pos..).ok_or(truncated)?;
        let (taken, _) = rest.split_first_chunk::<N>().ok_or(truncated)?;
        self.pos += N;
        Ok(*taken)
    }

    /// The next byte.
    pub fn u8(&mut self) -> Result<u8, ReadError> {
        self.array::<1>().map(|[b]| b)
    }

    /// The next little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, ReadError> {
        self.array().map(u16::from_le_bytes)
    }

    /// The next little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, ReadError> {
        self.array().map(u32::from_le_bytes)
    }

    /// The next little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, ReadError> {
        self.array().map(u64::from_le_bytes)
    }

    /// The next varint (see [`get_varint`]).
    pub fn varint(&mut self) -> Result<u64, ReadError> {
        get_varint(self.buf, &mut self.pos)
    }
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// What a frame's payload is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A record batch in a log segment (the log's base offset, then the batch).
    LogBatch = 1,
    /// Log or node metadata.
    Meta = 2,
    /// A gateway's checkpoint of its receivers' marks (`crate::marks`).
    Marks = 3,
    /// A node's checkpoint of its keyed states (`crate::keyed_checkpoint`).
    KeyedCheckpoint = 4,
    /// Sync: opening message of a session.
    SyncHello = 16,
    /// Sync: answer to a hello.
    SyncWelcome = 17,
    /// Sync: records.
    SyncData = 18,
    /// Sync: acknowledgement of records.
    SyncAck = 19,
    /// Sync: the gateway does not know the sender's session.
    SyncReset = 20,
    /// Sync: a range of the sender's stream that will never be sent.
    SyncSkip = 21,
    /// Site cluster: a message between members (Raft, liveness, forwarded writes).
    Site = 22,
    /// Raft storage: the first frame of a generation (hard state, snapshot, entry count).
    RaftCheckpoint = 24,
    /// Raft storage: entries, a truncation and/or a hard state appended to a generation.
    RaftEntries = 25,
}

impl TryFrom<u8> for FrameKind {
    type Error = FrameError;

    /// The kind with this wire value, or [`FrameError::UnknownKind`].
    fn try_from(found: u8) -> Result<Self, FrameError> {
        Ok(match found {
            1 => FrameKind::LogBatch,
            2 => FrameKind::Meta,
            3 => FrameKind::Marks,
            4 => FrameKind::KeyedCheckpoint,
            16 => FrameKind::SyncHello,
            17 => FrameKind::SyncWelcome,
            18 => FrameKind::SyncData,
            19 => FrameKind::SyncAck,
            20 => FrameKind::SyncReset,
            21 => FrameKind::SyncSkip,
            22 => FrameKind::Site,
            24 => FrameKind::RaftCheckpoint,
            25 => FrameKind::RaftEntries,
            _ => return Err(FrameError::UnknownKind { found }),
        })
    }
}

/// A decoded frame, borrowing its payload from the input. Its CRC has been verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub payload: &'a [u8],
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs: a torn tail on disk, or a partial read. `needed` is
    /// the total number of bytes the frame needs if its header was read, else
    /// [`FRAME_HEADER_LEN`].
    Incomplete { have: usize, needed: usize },
    /// The first two bytes are not [`FRAME_MAGIC`]: not a frame, or misaligned.
    BadMagic { found: u16 },
    /// A frame format version this build does not know.
    UnsupportedVersion { found: u8 },
    /// A frame kind this build does not know.
    UnknownKind { found: u8 },
    /// The header claims a payload larger than [`MAX_FRAME_PAYLOAD`].
    TooLarge { len: u32, max: usize },
    /// The CRC stored in the header (`expected`) differs from the CRC of the bytes (`found`):
    /// the frame was corrupted.
    ChecksumMismatch { expected: u32, found: u32 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete { have, needed } => write!(
                f,
                "frame incomplete: have {have} of {needed} bytes; read more, or treat it as a \
                 torn tail if the input ended"
            ),
            FrameError::BadMagic { found } => write!(
                f,
                "bad frame magic {found:#06x} (expected {FRAME_MAGIC:#06x}): the bytes are not \
                 an Outpost frame or are misaligned"
            ),
            FrameError::UnsupportedVersion { found } => write!(
                f,
                "unsupported frame version {found} (this build reads {FRAME_VERSION}): the peer \
                 or file was written by another version of Outpost"
            ),
            FrameError::UnknownKind { found } => write!(
                f,
                "unknown frame kind {found}: the peer or file was written by another version \
                 of Outpost, or is corrupt"
            ),
            FrameError::TooLarge { len, max } => write!(
                f,
                "frame claims a {len}-byte payload, more than the maximum {max}: the header is \
                 corrupt"
            ),
            FrameError::ChecksumMismatch { expected, found } => write!(
                f,
                "frame checksum mismatch (header says {expected:#010x}, bytes give \
                 {found:#010x}): the frame is corrupt and must not be used"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// CRC32C of the header bytes `[2..8]` followed by the payload.
fn frame_crc(header_tail: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header_tail), payload)
}

/// Appends a complete frame of `kind` carrying `payload` to `out`.
///
/// # Panics
/// If `payload` is longer than [`MAX_FRAME_PAYLOAD`] (a caller bug).
pub fn encode_frame(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) {
    let start = begin_frame(kind, out);
    out.extend_from_slice(payload);
    finish_frame(start, out);
}

/// A frame begun by [`begin_frame`] whose header still needs its length and CRC.
#[must_use = "a begun frame must be completed with finish_frame"]
#[derive(Debug)]
pub struct FrameStart {
    offset: usize,
}

/// Starts a frame at the end of `out` whose payload the caller appends next; then
/// [`finish_frame`] fills in length and CRC. Avoids encoding the payload into a separate
/// buffer and copying it.
pub fn begin_frame(kind: FrameKind, out: &mut Vec<u8>) -> FrameStart {
    let offset = out.len();
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.push(FRAME_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&[0; 8]);
    FrameStart { offset }
}

/// Completes the frame begun by `start`: everything appended to `out` since
/// [`begin_frame`] is its payload. The result is exactly what [`encode_frame`] writes.
/// Takes a slice: the frame is patched in place (pass `&mut vec`).
///
/// # Panics
/// If the payload is longer than [`MAX_FRAME_PAYLOAD`], or `out` was cut shorter than the
/// frame header (caller bugs).
pub fn finish_frame(start: FrameStart, out: &mut [u8]) {
    let payload_at = start.offset + FRAME_HEADER_LEN;
    assert!(out.len() >= payload_at, "frame header was truncated");
    let payload_len = out.len() - payload_at;
    assert!(payload_len <= MAX_FRAME_PAYLOAD, "frame payload of {payload_len} bytes exceeds MAX_FRAME_PAYLOAD");
    let (header, payload) = out[start.offset..].split_at_mut(FRAME_HEADER_LEN);
    debug_assert_eq!(header[..2], FRAME_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let crc = frame_crc(&header[2..8], payload);
    header[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the frame at the start of `buf`, returning it and the number of bytes it took
/// (header plus payload; bytes after it are left for the next call).
///
/// Checks, in order: a whole header is present, magic, version, kind, length bound,
/// the whole payload is present, CRC. A returned frame is exactly what was encoded unless
/// the corruption defeated CRC32C.
pub fn decode_frame(buf: &[u8]) -> Result<(Frame<'_>, usize), FrameError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(FrameError::Incomplete { have: buf.len(), needed: FRAME_HEADER_LEN });
    };
    let [m0, m1, version, kind, l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let magic = u16::from_le_bytes([m0, m1]);
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    if version != FRAME_VERSION {
        return Err(FrameError::UnsupportedVersion { found: version });
    }
    let kind = FrameKind::try_from(kind)?;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    let payload_len = match usize::try_from(len) {
        Ok(n) if n <= MAX_FRAME_PAYLOAD => n,
        _ => return Err(FrameError::TooLarge { len, max: MAX_FRAME_PAYLOAD }),
    };
    let total = FRAME_HEADER_LEN + payload_len;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..total) else {
        return Err(FrameError::Incomplete { have: buf.len(), needed: total });
    };
    let expected = u32::from_le_bytes([c0, c1, c2, c3]);
    let found = frame_crc(&[version, kind as u8, l0, l1, l2, l3], payload);
    if found != expected {
        return Err(FrameError::ChecksumMismatch { expected, found });
    }
    Ok((Frame { kind, payload }, total))
}

// ---------------------------------------------------------------------------------------
// Record batches
// ---------------------------------------------------------------------------------------

/// Whether to try compressing a batch's records section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
}

/// One record, borrowing key and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub hlc: Hlc,
    /// `None` for an unkeyed record; `Some(b"")` is an empty key, which is distinct.
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
}

impl RecordRef<'_> {
    /// Its key's and value's bytes: what an application wrote.
    pub fn payload_len(&self) -> usize {
        self.value.len() + self.key.map_or(0, <[u8]>::len)
    }

    /// The bytes this record takes in an uncompressed records section whose first record
    /// has HLC `base_hlc` (`base_hlc <= self.hlc`). Lets callers keep a batch under
    /// [`MAX_BATCH_RAW_BYTES`] before encoding it.
    pub fn encoded_len(&self, base_hlc: Hlc) -> usize {
        let key_len = self.key.map_or(0, <[u8]>::len);
        let key_tag = self.key.map_or(0, |k| k.len() as u64 + 1);
        varint_len(self.hlc.0.saturating_sub(base_hlc.0))
            + varint_len(key_tag)
            + key_len
            + varint_len(self.value.len() as u64)
            + self.value.len()
    }
}

/// Why bytes are not a valid record batch. Offsets (`at`) in header errors are from the
/// start of the batch payload; in records errors, from the start of the (decompressed)
/// records section. Record indexes count from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The payload ends inside the batch header.
    Truncated { at: usize, needed: usize },
    /// Flag bits other than bit 0 are set.
    BadFlags(u8),
    /// The header's record count is 0 or above [`MAX_BATCH_RECORDS`].
    CountOutOfRange(u32),
    /// The header's uncompressed length is above [`MAX_BATCH_RAW_BYTES`].
    RawTooLarge(u32),
    /// `base_seq + count` does not fit a `u64`.
    SeqOverflow { base_seq: Seq, count: u32 },
    /// The compressed records section is not a valid zstd frame, or decompresses to more
    /// than the header's `raw_len`.
    Decompress(String),
    /// The records section is not `raw_len` bytes long (after decompression, if any).
    RawLengthMismatch { expected: usize, found: usize },
    /// A malformed varint at offset `at` of the records section.
    BadVarint { at: usize },
    /// The first record's HLC is not the header's `base_hlc` (its delta is not 0).
    FirstHlcNotBase { delta: u64 },
    /// `base_hlc + delta` of a record overflows.
    HlcOverflow { index: u32 },
    /// A record's HLC is below the previous record's.
    HlcDecreasing { index: u32 },
    /// A record's key is longer than [`MAX_KEY_BYTES`].
    KeyTooLarge { index: u32, len: u64 },
    /// A record's value is longer than [`MAX_VALUE_BYTES`].
    ValueTooLarge { index: u32, len: u64 },
    /// A record runs past the end of the records section.
    RecordOverrun { index: u32 },
    /// The records section ends after `found` whole records; the header says `header`.
    CountMismatch { header: u32, found: u32 },
    /// `n` bytes follow the last record in the records section.
    TrailingBytes { n: usize },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CORRUPT: &str = "the batch is corrupt";
        match self {
            BatchError::Truncated { at, needed } => {
                write!(f, "batch header truncated: needed {needed} bytes at offset {at}; {CORRUPT} or cut short")
            }
            BatchError::BadFlags(flags) => {
                write!(f, "batch flags {flags:#04x} set unknown bits: {CORRUPT} or from a newer Outpost")
            }
            BatchError::CountOutOfRange(count) => {
                write!(f, "batch claims {count} records, outside 1..={MAX_BATCH_RECORDS}: {CORRUPT}")
            }
            BatchError::RawTooLarge(raw_len) => {
                write!(f, "batch claims {raw_len} uncompressed bytes, more than {MAX_BATCH_RAW_BYTES}: {CORRUPT}")
            }
            BatchError::SeqOverflow { base_seq, count } => {
                write!(f, "batch sequence numbers overflow ({base_seq} + {count}): {CORRUPT}")
            }
            BatchError::Decompress(e) => write!(f, "batch records section failed to decompress ({e}): {CORRUPT}"),
            BatchError::RawLengthMismatch { expected, found } => {
                write!(f, "batch records section is {found} bytes but the header says {expected}: {CORRUPT}")
            }
            BatchError::BadVarint { at } => {
                write!(f, "malformed varint at offset {at} of the batch records section: {CORRUPT}")
            }
            BatchError::FirstHlcNotBase { delta } => {
                write!(f, "the first record's HLC is {delta} above the batch's base HLC instead of equal: {CORRUPT}")
            }
            BatchError::HlcOverflow { index } => write!(f, "record {index}'s HLC overflows 64 bits: {CORRUPT}"),
            BatchError::HlcDecreasing { index } => {
                write!(f, "record {index}'s HLC is below the previous record's: {CORRUPT}")
            }
            BatchError::KeyTooLarge { index, len } => {
                write!(f, "record {index} has a {len}-byte key, more than {MAX_KEY_BYTES}: {CORRUPT}")
            }
            BatchError::ValueTooLarge { index, len } => {
                write!(f, "record {index} has a {len}-byte value, more than {MAX_VALUE_BYTES}: {CORRUPT}")
            }
            BatchError::RecordOverrun { index } => {
                write!(f, "record {index} runs past the end of the records section: {CORRUPT}")
            }
            BatchError::CountMismatch { header, found } => {
                write!(f, "batch header says {header} records but the records section holds {found}: {CORRUPT}")
            }
            BatchError::TrailingBytes { n } => {
                write!(f, "{n} unexpected bytes follow the last record of the batch: {CORRUPT}")
            }
        }
    }
}

impl std::error::Error for BatchError {}

impl From<ReadError> for BatchError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated { at, needed } => BatchError::Truncated { at, needed },
            ReadError::BadVarint { at } => BatchError::BadVarint { at },
        }
    }
}

/// The fixed-size header of a record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub origin: NodeId,
    pub base_seq: Seq,
    pub count: u32,
    pub base_hlc: Hlc,
    pub compressed: bool,
    pub raw_len: u32,
}

impl BatchHeader {
    /// Decodes and validates the header at the start of a batch payload: flags, `count` in
    /// `1..=MAX_BATCH_RECORDS`, `raw_len <= MAX_BATCH_RAW_BYTES`, `base_seq + count` fits.
    /// Does not look at the records section (see [`DecodedBatch::decode`]).
    pub fn decode(payload: &[u8]) -> Result<BatchHeader, BatchError> {
        let mut r = Reader::new(payload);
        let flags = r.u8()?;
        let origin = NodeId(r.u64()?);
        let base_seq = r.u64()?;
        let count = r.u32()?;
        let base_hlc = Hlc(r.u64()?);
        let raw_len = r.u32()?;
        debug_assert_eq!(r.position(), BATCH_HEADER_LEN);
        if flags & !FLAG_ZSTD != 0 {
            return Err(BatchError::BadFlags(flags));
        }
        if count == 0 || count as usize > MAX_BATCH_RECORDS {
            return Err(BatchError::CountOutOfRange(count));
        }
        if raw_len as usize > MAX_BATCH_RAW_BYTES {
            return Err(BatchError::RawTooLarge(raw_len));
        }
        if base_seq.checked_add(u64::from(count)).is_none() {
            return Err(BatchError::SeqOverflow { base_seq, count });
        }
        Ok(BatchHeader { origin, base_seq, count, base_hlc, compressed: flags & FLAG_ZSTD != 0, raw_len })
    }

    /// Sequence number of the last record (`base_seq + count - 1`; saturating for a header
    /// built by hand with `count == 0` or overflowing values).
    pub fn last_seq(&self) -> Seq {
        self.end_seq().saturating_sub(1)
    }

    /// Sequence number after the last record (`base_seq + count`, saturating).
    pub fn end_seq(&self) -> Seq {
        self.base_seq.saturating_add(u64::from(self.count))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(if self.compressed { FLAG_ZSTD } else { 0 });
        out.extend_from_slice(&self.origin.0.to_le_bytes());
        out.extend_from_slice(&self.base_seq.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.base_hlc.0.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
    }
}

/// Encodes a batch of `records` (the first has sequence `base_seq`, the next `base_seq + 1`,
/// …) and appends the payload to `out`.
///
/// Compresses the records section with zstd (level 1) only when `compression` is
/// [`Compression::Zstd`], the section is at least [`COMPRESS_MIN_BYTES`] long, and the
/// compressed form is at least 1/8 smaller; otherwise stores it raw. Output is
/// deterministic. For hot paths, [`BatchEncoder`] keeps its buffers between batches.
///
/// # Panics
/// If `records` is empty or longer than [`MAX_BATCH_RECORDS`], sequence numbers would
/// overflow, HLCs decrease, a key or value exceeds its limit, or the records section
/// exceeds [`MAX_BATCH_RAW_BYTES`] (see [`RecordRef::encoded_len`]): those are caller bugs.
pub fn encode_batch(
    origin: NodeId,
    base_seq: Seq,
    records: &[RecordRef<'_>],
    compression: Compression,
    out: &mut Vec<u8>,
) {
    BatchEncoder::new().encode(origin, base_seq, records, compression, out);
}

/// A reusable batch decoder context; see [`DecodedBatch::decode_with`].
pub struct BatchDecoder {
    decompressor: Option<zstd::zstd_safe::DCtx<'static>>,
}

impl std::fmt::Debug for BatchDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchDecoder").field("has_context", &self.decompressor.is_some()).finish()
    }
}

impl BatchDecoder {
    pub fn new() -> Self {
        BatchDecoder { decompressor: None }
    }

    /// Decompresses into a buffer of at most `raw_len` bytes (a "zstd bomb" fails without
    /// allocating more).
    fn decompress(&mut self, body: &[u8], raw_len: usize) -> Result<Vec<u8>, BatchError> {
        if self.decompressor.is_none() {
            let ctx = zstd::zstd_safe::DCtx::try_create()
                .ok_or_else(|| BatchError::Decompress("zstd could not allocate a context".into()))?;
            self.decompressor = Some(ctx);
        }
        let d = self.decompressor.as_mut().expect("created above");
        let mut out = Vec::with_capacity(raw_len);
        d.decompress(&mut out, body)
            .map_err(|code| BatchError::Decompress(zstd::zstd_safe::get_error_name(code).into()))?;
        Ok(out)
    }

    /// Bytes zstd allocated for the context (C heap, not seen by Rust's allocator).
    pub fn heap_bytes(&self) -> u64 {
        self.decompressor.as_ref().map_or(0, |d| d.sizeof() as u64)
    }
}

impl Default for BatchDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// A reusable batch encoder that keeps its zstd context and scratch buffer between batches
/// (the scratch buffer grows to at most 7/8 of [`MAX_BATCH_RAW_BYTES`]). Produces exactly
/// the bytes [`encode_batch`] produces.
#[derive(Default)]
pub struct BatchEncoder {
    /// Created on first use; `None` also after zstd failed to allocate a context, in which
    /// case batches are stored raw and the next compression retries.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
    /// What zstd reported its context holds after the last compression.
    zstd_bytes: u64,
}

impl fmt::Debug for BatchEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchEncoder")
            .field("has_compressor", &self.compressor.is_some())
            .field("scratch_len", &self.scratch.len())
            .finish()
    }
}

impl BatchEncoder {
    /// An encoder with no buffers allocated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of the scratch buffer (Rust heap) and of zstd's context (C heap).
    pub fn heap_bytes(&self) -> (u64, u64) {
        (self.scratch.capacity() as u64, self.zstd_bytes)
    }

    /// Same contract and output as [`encode_batch`].
    pub fn encode(
        &mut self,
        origin: NodeId,
        base_seq: Seq,
        records: &[RecordRef<'_>],
        compression: Compression,
        out: &mut Vec<u8>,
    ) {
        let Some(first) = records.first() else {
            panic!("a record batch needs at least one record");
        };
        assert!(records.len() <= MAX_BATCH_RECORDS, "a record batch holds at most MAX_BATCH_RECORDS records");
        let count = records.len() as u32;
        assert!(base_seq.checked_add(u64::from(count)).is_some(), "batch sequence numbers overflow");
        let base_hlc = first.hlc;
        let mut prev = base_hlc;
        let mut raw_len = 0usize;
        for r in records {
            assert!(r.hlc >= prev, "HLCs decrease within a batch");
            assert!(r.key.is_none_or(|k| k.len() <= MAX_KEY_BYTES), "key too large");
            assert!(r.value.len() <= MAX_VALUE_BYTES, "value too large");
            raw_len += r.encoded_len(base_hlc);
            prev = r.hlc;
        }
        assert!(raw_len <= MAX_BATCH_RAW_BYTES, "records section exceeds MAX_BATCH_RAW_BYTES");

        let header_at = out.len();
        out.reserve(BATCH_HEADER_LEN + raw_len);
        BatchHeader { origin, base_seq, count, base_hlc, compressed: false, raw_len: raw_len as u32 }.encode(out);
        let section_at = out.len();
        for r in records {
            put_varint(out, r.hlc.0 - base_hlc.0);
            match r.key {
                None => put_varint(out, 0),
                Some(k) => {
                    put_varint(out, k.len() as u64 + 1);
                    out.extend_from_slice(k);
                }
            }
            put_varint(out, r.value.len() as u64);
            out.extend_from_slice(r.value);
        }
        debug_assert_eq!(out.len() - section_at, raw_len);

        if compression == Compression::Zstd && raw_len >= COMPRESS_MIN_BYTES {
            if let Some(n) = self.compress(&out[section_at..]) {
                out.truncate(section_at);
                out.extend_from_slice(&self.scratch[..n]);
                out[header_at] = FLAG_ZSTD;
            }
        }
    }

    /// Compresses `raw` into the scratch buffer if the result is at least 1/8 smaller;
    /// returns its length. `None` (store raw) if it is not, or zstd failed.
    fn compress(&mut self, raw: &[u8]) -> Option<usize> {
        let limit = raw.len() - raw.len() / 8;
        if self.scratch.len() < limit {
            self.scratch.resize(limit, 0);
        }
        if self.compressor.is_none() {
            self.compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        let compressor = self.compressor.as_mut()?;
        // A destination of exactly `limit` bytes: zstd fails rather than exceed it.
        let n = compressor.compress_to_buffer(raw, &mut self.scratch[..limit]).ok();
        self.zstd_bytes = compressor.context_mut().sizeof() as u64;
        n
    }
}

/// A fully validated record batch. Holds the decompressed records section when the batch
/// was compressed (at most `raw_len <= MAX_BATCH_RAW_BYTES` bytes), else borrows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedBatch<'a> {
    pub header: BatchHeader,
    section: Cow<'a, [u8]>,
}

impl<'a> DecodedBatch<'a> {
    /// Decodes and fully validates a batch payload: the header (see
    /// [`BatchHeader::decode`]); decompression into a buffer of at most `raw_len` bytes
    /// (a "zstd bomb" fails without allocating more) and exactly `raw_len` bytes out; then
    /// every record once: well-formed varints, lengths within the section and the key/value
    /// limits, first HLC equal to `base_hlc`, HLCs non-decreasing without overflow, exactly
    /// `count` records and no trailing bytes. After it succeeds, [`records`](Self::records)
    /// cannot fail.
    pub fn decode(payload: &'a [u8]) -> Result<Self, BatchError> {
        Self::decode_with(payload, &mut BatchDecoder::new())
    }

    /// [`decode`](Self::decode), reusing `decoder`'s zstd context: creating one costs more
    /// than decompressing a small batch, so hot paths keep a decoder.
    pub fn decode_with(payload: &'a [u8], decoder: &mut BatchDecoder) -> Result<Self, BatchError> {
        let header = BatchHeader::decode(payload)?;
        let body = payload.get(BATCH_HEADER_LEN..).unwrap_or_default();
        let raw_len = header.raw_len as usize;
        let section =
            if header.compressed { Cow::Owned(decoder.decompress(body, raw_len)?) } else { Cow::Borrowed(body) };
        if section.len() != raw_len {
            return Err(BatchError::RawLengthMismatch { expected: raw_len, found: section.len() });
        }
        let batch = DecodedBatch { header, section };
        let mut reader = Reader::new(&batch.section);
        let mut prev = header.base_hlc;
        for index in 0..header.count {
            if reader.is_empty() {
                return Err(BatchError::CountMismatch { header: header.count, found: index });
            }
            prev = parse_record(&mut reader, index, header.base_hlc, prev)?.hlc;
        }
        if !reader.is_empty() {
            return Err(BatchError::TrailingBytes { n: reader.remaining() });
        }
        Ok(batch)
    }

    /// The records in order; the `i`-th has sequence number `header.base_seq + i`.
    pub fn records(&self) -> Records<'_> {
        Records {
            reader: Reader::new(&self.section),
            base_hlc: self.header.base_hlc,
            prev: self.header.base_hlc,
            index: 0,
            remaining: self.header.count,
        }
    }
}

/// Reads record `index` of a records section and checks it (see [`DecodedBatch::decode`]).
fn parse_record<'s>(r: &mut Reader<'s>, index: u32, base_hlc: Hlc, prev: Hlc) -> Result<RecordRef<'s>, BatchError> {
    let in_record = |e: ReadError| match e {
        ReadError::Truncated { .. } => BatchError::RecordOverrun { index },
        ReadError::BadVarint { at } => BatchError::BadVarint { at },
    };
    let delta = r.varint().map_err(in_record)?;
    if index == 0 && delta != 0 {
        return Err(BatchError::FirstHlcNotBase { delta });
    }
    let Some(hlc) = base_hlc.0.checked_add(delta).map(Hlc) else {
        return Err(BatchError::HlcOverflow { index });
    };
    if hlc < prev {
        return Err(BatchError::HlcDecreasing { index });
    }
    let key = match r.varint().map_err(in_record)? {
        0 => None,
        tag => {
            let len = tag - 1;
            if len > MAX_KEY_BYTES as u64 {
                return Err(BatchError::KeyTooLarge { index, len });
            }
            Some(r.bytes(len as usize).map_err(in_record)?)
        }
    };
    let len = r.varint().map_err(in_record)?;
    if len > MAX_VALUE_BYTES as u64 {
        return Err(BatchError::ValueTooLarge { index, len });
    }
    let value = r.bytes(len as usize).map_err(in_record)?;
    Ok(RecordRef { hlc, key, value })
}

/// Iterator over the records of a [`DecodedBatch`], in order.
#[derive(Clone, Debug)]
pub struct Records<'b> {
    reader: Reader<'b>,
    base_hlc: Hlc,
    prev: Hlc,
    index: u32,
    remaining: u32,
}

impl<'b> Iterator for Records<'b> {
    type Item = RecordRef<'b>;

    fn next(&mut self) -> Option<RecordRef<'b>> {
        if self.remaining == 0 {
            return None;
        }
        let parsed = parse_record(&mut self.reader, self.index, self.base_hlc, self.prev);
        debug_assert!(parsed.is_ok(), "record of a validated batch failed to parse: {parsed:?}");
        match parsed {
            Ok(record) => {
                self.prev = record.hlc;
                self.index += 1;
                self.remaining -= 1;
                Some(record)
            }
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Records<'_> {}

impl FusedIterator for Records<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec<'a>(hlc: u64, key: Option<&'a [u8]>, value: &'a [u8]) -> RecordRef<'a> {
        RecordRef { hlc: Hlc(hlc), key, value }
    }

    /// A batch payload built field by field, for crafting invalid ones.
    fn raw_batch(flags: u8, base_seq: u64, count: u32, base_hlc: u64, raw_len: u32, body: &[u8]) -> Vec<u8> {
        let mut p = vec![flags];
        p.extend_from_slice(&7u64.to_le_bytes());
        p.extend_from_slice(&base_seq.to_le_bytes());
        p.extend_from_slice(&count.to_le_bytes());
        p.extend_from_slice(&base_hlc.to_le_bytes());
        p.extend_from_slice(&raw_len.to_le_bytes());
        p.extend_from_slice(body);
        p
    }

    /// An uncompressed batch whose header matches `section`.
    fn batch_with_section(count: u32, base_hlc: u64, section: &[u8]) -> Vec<u8> {
        raw_batch(0, 0, count, base_hlc, section.len() as u32, section)
    }

    fn decode_err(payload: &[u8]) -> BatchError {
        let err = DecodedBatch::decode(payload).expect_err("must be rejected");
        assert!(!err.to_string().is_empty());
        err
    }

    fn frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(kind, payload, &mut out);
        out
    }

    #[test]
    fn varint_round_trips_and_lengths() {
        for v in [0, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(get_varint(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
        assert_eq!(varint_len(u64::MAX), MAX_VARINT_LEN);
    }

    #[test]
    fn varint_rejects_bad_encodings() {
        let mut pos = 0;
        assert_eq!(get_varint(&[0x80, 0x80], &mut pos), Err(ReadError::Truncated { at: 2, needed: 1 }));
        assert_eq!(pos, 0);
        assert_eq!(get_varint(&[], &mut pos), Err(ReadError::Truncated { at: 0, needed: 1 }));
        // Overlong (not shortest form).
        assert_eq!(get_varint(&[0x80, 0x00], &mut pos), Err(ReadError::BadVarint { at: 0 }));
        // Overflow: 10th byte with more than one bit.
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(get_varint(&over, &mut pos), Err(ReadError::BadVarint { at: 0 }));
        // 11 bytes.
        let mut long = vec![0xff; 10];
        long.push(0x01);
        assert_eq!(get_varint(&long, &mut pos), Err(ReadError::BadVarint { at: 0 }));
        let mut pos = 1;
        assert_eq!(get_varint(&[9, 5], &mut pos), Ok(5));
        assert!(!ReadError::BadVarint { at: 0 }.to_string().is_empty());
    }

    #[test]
    fn reader_reads_and_reports_truncation() {
        let mut bytes = vec![1, 2, 0, 3, 0, 0, 0];
        bytes.extend_from_slice(&4u64.to_le_bytes());
        bytes.extend_from_slice(&[0xac, 0x02, 9, 9]);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.varint(), Ok(300));
        assert_eq!(r.remaining(), 2);
        assert_eq!(r.u32(), Err(ReadError::Truncated { at: 17, needed: 4 }));
        assert_eq!(r.bytes(3), Err(ReadError::Truncated { at: 17, needed: 3 }));
        assert_eq!(r.position(), 17);
        assert_eq!(r.bytes(2), Ok(&[9, 9][..]));
        assert!(r.is_empty());
        assert_eq!(r.bytes(0), Ok(&[][..]));
        assert!(ReadError::Truncated { at: 1, needed: 2 }.to_string().contains("truncated"));
    }

    #[test]
    fn frame_layout_is_as_specified() {
        let f = frame(FrameKind::SyncData, b"abc");
        assert_eq!(&f[..2], b"OP");
        assert_eq!(f[2], 1);
        assert_eq!(f[3], 18);
        assert_eq!(&f[4..8], &3u32.to_le_bytes());
        let mut crc_input = f[2..8].to_vec();
        crc_input.extend_from_slice(b"abc");
        assert_eq!(&f[8..12], &crc32c::crc32c(&crc_input).to_le_bytes());
        assert_eq!(&f[12..], b"abc");
        assert_eq!(decode_frame(&f), Ok((Frame { kind: FrameKind::SyncData, payload: b"abc" }, 15)));
    }

    #[test]
    fn begin_finish_matches_encode_and_frames_chain() {
        let mut out = vec![0xee];
        let start = begin_frame(FrameKind::Meta, &mut out);
        out.extend_from_slice(b"hello");
        finish_frame(start, &mut out);
        encode_frame(FrameKind::SyncAck, b"", &mut out);
        assert_eq!(&out[1..], &[frame(FrameKind::Meta, b"hello"), frame(FrameKind::SyncAck, b"")].concat()[..]);
        let (f1, n1) = decode_frame(&out[1..]).expect("first frame");
        assert_eq!((f1.kind, f1.payload, n1), (FrameKind::Meta, &b"hello"[..], 17));
        let (f2, n2) = decode_frame(&out[1 + n1..]).expect("second frame");
        assert_eq!((f2.kind, f2.payload, n2), (FrameKind::SyncAck, &b""[..], 12));
    }

    #[test]
    fn frame_kinds_round_trip() {
        for kind in [
            FrameKind::LogBatch,
            FrameKind::Meta,
            FrameKind::Marks,
            FrameKind::KeyedCheckpoint,
            FrameKind::SyncHello,
            FrameKind::SyncWelcome,
            FrameKind::SyncData,
            FrameKind::SyncAck,
        ] {
            assert_eq!(FrameKind::try_from(kind as u8), Ok(kind));
        }
        assert_eq!(FrameKind::try_from(5), Err(FrameError::UnknownKind { found: 5 }));
    }

    #[test]
    fn frame_errors() {
        let good = frame(FrameKind::LogBatch, b"payload");
        let check = |bytes: &[u8], want: FrameError| {
            let got = decode_frame(bytes).expect_err("must be rejected");
            assert_eq!(got, want);
            assert!(!got.to_string().is_empty());
        };
        check(&good[..5], FrameError::Incomplete { have: 5, needed: 12 });
        check(&good[..15], FrameError::Incomplete { have: 15, needed: 19 });
        let mut b = good.clone();
        b[0] = b'X';
        check(&b, FrameError::BadMagic { found: 0x5058 });
        let mut b = good.clone();
        b[2] = 2;
        check(&b, FrameError::UnsupportedVersion { found: 2 });
        let mut b = good.clone();
        b[3] = 99;
        check(&b, FrameError::UnknownKind { found: 99 });
        let mut b = good.clone();
        let too_big = MAX_FRAME_PAYLOAD as u32 + 1;
        b[4..8].copy_from_slice(&too_big.to_le_bytes());
        check(&b, FrameError::TooLarge { len: too_big, max: MAX_FRAME_PAYLOAD });
        let mut b = good.clone();
        *b.last_mut().expect("non-empty") ^= 1;
        let stored = u32::from_le_bytes([good[8], good[9], good[10], good[11]]);
        let got = decode_frame(&b).expect_err("corrupt");
        assert!(matches!(got, FrameError::ChecksumMismatch { expected, found }
            if expected == stored && found != stored));
        // The kind byte is covered by the CRC too.
        let mut b = good.clone();
        b[3] = FrameKind::Meta as u8;
        assert!(matches!(decode_frame(&b), Err(FrameError::ChecksumMismatch { .. })));
    }

    #[test]
    fn largest_frame_round_trips() {
        let payload = vec![0x5a; MAX_FRAME_PAYLOAD];
        let f = frame(FrameKind::SyncData, &payload);
        let (decoded, n) = decode_frame(&f).expect("max size is allowed");
        assert_eq!((decoded.payload.len(), n), (MAX_FRAME_PAYLOAD, f.len()));
    }

    #[test]
    #[should_panic(expected = "MAX_FRAME_PAYLOAD")]
    fn oversized_frame_is_a_caller_bug() {
        let mut out = Vec::new();
        encode_frame(FrameKind::SyncData, &vec![0; MAX_FRAME_PAYLOAD + 1], &mut out);
    }

    #[test]
    fn batch_round_trip_small() {
        let records = [rec(100, None, b""), rec(100, Some(b""), b"v"), rec(105, Some(b"key"), b"value")];
        let mut out = vec![0xaa];
        encode_batch(NodeId(9), 41, &records, Compression::Zstd, &mut out);
        let payload = &out[1..];
        let batch = DecodedBatch::decode(payload).expect("valid");
        assert_eq!(
            batch.header,
            BatchHeader {
                origin: NodeId(9),
                base_seq: 41,
                count: 3,
                base_hlc: Hlc(100),
                compressed: false,
                raw_len: records.iter().map(|r| r.encoded_len(Hlc(100))).sum::<usize>() as u32,
            }
        );
        assert_eq!(BatchHeader::decode(payload), Ok(batch.header));
        assert_eq!((batch.header.last_seq(), batch.header.end_seq()), (43, 44));
        assert_eq!(batch.records().len(), 3);
        assert_eq!(batch.records().collect::<Vec<_>>(), records);
    }

    #[test]
    fn compression_is_used_only_when_it_pays() {
        let big = vec![b'x'; 4096];
        let small = vec![b'x'; 100];
        // xorshift64: incompressible for zstd.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let cases: [(&[u8], Compression, bool); 4] = [
            (&big, Compression::Zstd, true),
            (&big, Compression::None, false),
            (&small, Compression::Zstd, false),
            (&noise, Compression::Zstd, false),
        ];
        for (value, compression, want) in cases {
            let records = [rec(1, None, value)];
            let mut out = Vec::new();
            encode_batch(NodeId(1), 0, &records, compression, &mut out);
            let batch = DecodedBatch::decode(&out).expect("valid");
            assert_eq!(batch.header.compressed, want, "{} bytes", value.len());
            assert_eq!(batch.records().collect::<Vec<_>>(), records);
            if want {
                assert!(out.len() - BATCH_HEADER_LEN <= batch.header.raw_len as usize * 7 / 8);
            }
        }
    }

    #[test]
    #[should_panic(expected = "at least one record")]
    fn empty_batch_is_a_caller_bug() {
        encode_batch(NodeId(1), 0, &[], Compression::None, &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "HLCs decrease")]
    fn decreasing_hlcs_are_a_caller_bug() {
        let records = [rec(5, None, b""), rec(4, None, b"")];
        encode_batch(NodeId(1), 0, &records, Compression::None, &mut Vec::new());
    }

    #[test]
    #[should_panic(expected = "overflow")]
    fn seq_overflow_is_a_caller_bug() {
        let records = [rec(5, None, b"")];
        encode_batch(NodeId(1), u64::MAX, &records, Compression::None, &mut Vec::new());
    }

    #[test]
    fn batch_header_errors() {
        assert_eq!(decode_err(&[0; 10]), BatchError::Truncated { at: 9, needed: 8 });
        assert_eq!(decode_err(&raw_batch(2, 0, 1, 0, 3, &[0, 0, 0])), BatchError::BadFlags(2));
        assert_eq!(decode_err(&raw_batch(0, 0, 0, 0, 0, &[])), BatchError::CountOutOfRange(0));
        let too_many = MAX_BATCH_RECORDS as u32 + 1;
        assert_eq!(decode_err(&raw_batch(0, 0, too_many, 0, 0, &[])), BatchError::CountOutOfRange(too_many));
        let too_long = MAX_BATCH_RAW_BYTES as u32 + 1;
        assert_eq!(decode_err(&raw_batch(0, 0, 1, 0, too_long, &[])), BatchError::RawTooLarge(too_long));
        assert_eq!(
            decode_err(&raw_batch(0, u64::MAX, 1, 0, 3, &[0, 0, 0])),
            BatchError::SeqOverflow { base_seq: u64::MAX, count: 1 }
        );
        // The largest sequence numbers that fit are fine.
        let ok = raw_batch(0, u64::MAX - 1, 1, 0, 3, &[0, 0, 0]);
        let header = BatchHeader::decode(&ok).expect("fits");
        assert_eq!((header.last_seq(), header.end_seq()), (u64::MAX - 1, u64::MAX));
    }

    #[test]
    fn batch_section_length_errors() {
        assert_eq!(
            decode_err(&raw_batch(0, 0, 1, 0, 4, &[0, 0, 0])),
            BatchError::RawLengthMismatch { expected: 4, found: 3 }
        );
        assert_eq!(
            decode_err(&raw_batch(0, 0, 1, 0, 2, &[0, 0, 0])),
            BatchError::RawLengthMismatch { expected: 2, found: 3 }
        );
        assert!(matches!(decode_err(&raw_batch(FLAG_ZSTD, 0, 1, 0, 3, b"not zstd")), BatchError::Decompress(_)));
        let short = zstd::bulk::compress(&[0, 0], 1).expect("compress");
        assert_eq!(
            decode_err(&raw_batch(FLAG_ZSTD, 0, 1, 0, 3, &short)),
            BatchError::RawLengthMismatch { expected: 3, found: 2 }
        );
    }

    #[test]
    fn zstd_bomb_is_rejected_within_the_bound() {
        // 64 concatenated frames of 1 MiB of zeros: ~64 MiB out of a few KiB in.
        let one = zstd::bulk::compress(&vec![0u8; 1 << 20], 19).expect("compress");
        let bomb = one.repeat(64);
        assert!(bomb.len() < 64 << 10);
        for raw_len in [MAX_BATCH_RAW_BYTES as u32, 1000] {
            let payload = raw_batch(FLAG_ZSTD, 0, 1, 0, raw_len, &bomb);
            assert!(matches!(decode_err(&payload), BatchError::Decompress(_)));
        }
    }

    #[test]
    fn record_errors() {
        assert_eq!(decode_err(&batch_with_section(1, 0, &[0x80, 0x00, 0, 0])), BatchError::BadVarint { at: 0 });
        assert_eq!(decode_err(&batch_with_section(1, 0, &[0, 0, 0x81, 0x00])), BatchError::BadVarint { at: 2 });
        assert_eq!(decode_err(&batch_with_section(1, 0, &[1, 0, 0])), BatchError::FirstHlcNotBase { delta: 1 });
        assert_eq!(
            decode_err(&batch_with_section(2, u64::MAX, &[0, 0, 0, 1, 0, 0])),
            BatchError::HlcOverflow { index: 1 }
        );
        assert_eq!(
            decode_err(&batch_with_section(3, 0, &[0, 0, 0, 5, 0, 0, 3, 0, 0])),
            BatchError::HlcDecreasing { index: 2 }
        );
        let mut key = vec![0];
        put_varint(&mut key, MAX_KEY_BYTES as u64 + 2);
        assert_eq!(
            decode_err(&batch_with_section(1, 0, &key)),
            BatchError::KeyTooLarge { index: 0, len: MAX_KEY_BYTES as u64 + 1 }
        );
        let mut value = vec![0, 0];
        put_varint(&mut value, MAX_VALUE_BYTES as u64 + 1);
        assert_eq!(
            decode_err(&batch_with_section(1, 0, &value)),
            BatchError::ValueTooLarge { index: 0, len: MAX_VALUE_BYTES as u64 + 1 }
        );
        assert_eq!(decode_err(&batch_with_section(1, 0, &[0, 0, 5, 1, 2])), BatchError::RecordOverrun { index: 0 });
        assert_eq!(
            decode_err(&batch_with_section(2, 0, &[0, 0, 0, 0, 3, b'k'])),
            BatchError::RecordOverrun { index: 1 }
        );
        assert_eq!(decode_err(&batch_with_section(2, 0, &[0, 0, 0, 0])), BatchError::RecordOverrun { index: 1 });
        assert_eq!(
            decode_err(&batch_with_section(3, 0, &[0, 0, 0, 0, 0, 0])),
            BatchError::CountMismatch { header: 3, found: 2 }
        );
        assert_eq!(decode_err(&batch_with_section(1, 0, &[0, 0, 0, 7, 7])), BatchError::TrailingBytes { n: 2 });
        // Limits themselves are allowed.
        let key = vec![b'k'; MAX_KEY_BYTES];
        let value = vec![b'v'; MAX_VALUE_BYTES];
        let records = [rec(0, Some(&key), &value)];
        let mut out = Vec::new();
        encode_batch(NodeId(1), 0, &records, Compression::None, &mut out);
        let batch = DecodedBatch::decode(&out).expect("limits are inclusive");
        assert_eq!(batch.records().collect::<Vec<_>>(), records);
    }

    #[test]
    fn records_section_offsets_are_within_the_decompressed_section() {
        // A compressed section with a bad varint deep inside: the offset is in the raw section.
        let mut section = Vec::new();
        for _ in 0..300 {
            section.extend_from_slice(&[0, 0, 0]);
        }
        section.extend_from_slice(&[0x80, 0x00, 0, 0]);
        let z = zstd::bulk::compress(&section, 1).expect("compress");
        let payload = raw_batch(FLAG_ZSTD, 0, 301, 0, section.len() as u32, &z);
        assert_eq!(decode_err(&payload), BatchError::BadVarint { at: 900 });
    }

    // ---- property tests ----

    #[derive(Clone, Debug)]
    struct OwnedRecord {
        hlc: u64,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (any::<u8>(), 0usize..2000).prop_map(|(b, n)| vec![b; n]),
            (0usize..64, 0usize..40).prop_map(|(period, reps)| {
                let pattern: Vec<u8> = (0..period as u8).collect();
                pattern.repeat(reps)
            }),
        ]
    }

    fn records() -> impl Strategy<Value = Vec<OwnedRecord>> {
        (
            0..u64::MAX / 2,
            proptest::collection::vec(
                (
                    prop_oneof![Just(0u64), 0..10u64, any::<u32>().prop_map(u64::from)],
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
                    value(),
                ),
                1..=200,
            ),
        )
            .prop_map(|(base, recs)| {
                let mut hlc = base;
                recs.into_iter()
                    .enumerate()
                    .map(|(i, (step, key, value))| {
                        if i > 0 {
                            hlc += step;
                        }
                        OwnedRecord { hlc, key, value }
                    })
                    .collect()
            })
    }

    fn borrow(recs: &[OwnedRecord]) -> Vec<RecordRef<'_>> {
        recs.iter().map(|r| RecordRef { hlc: Hlc(r.hlc), key: r.key.as_deref(), value: &r.value }).collect()
    }

    fn compression() -> impl Strategy<Value = Compression> {
        prop_oneof![Just(Compression::None), Just(Compression::Zstd)]
    }

    /// A valid LogBatch frame holding a valid batch.
    fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
        (records(), compression()).prop_map(|(recs, c)| {
            let mut payload = Vec::new();
            encode_batch(NodeId(3), 10, &borrow(&recs), c, &mut payload);
            frame(FrameKind::LogBatch, &payload)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn batches_round_trip(
            origin in any::<u64>(),
            base_seq in 0..u64::MAX - 200,
            recs in records(),
            other in records(),
            compression in compression(),
        ) {
            let refs = borrow(&recs);
            let mut out = Vec::new();
            encode_batch(NodeId(origin), base_seq, &refs, compression, &mut out);

            // A reused encoder produces the same bytes.
            let mut encoder = BatchEncoder::new();
            encoder.encode(NodeId(1), 0, &borrow(&other), Compression::Zstd, &mut Vec::new());
            let mut again = Vec::new();
            encoder.encode(NodeId(origin), base_seq, &refs, compression, &mut again);
            prop_assert_eq!(&again, &out);

            let framed = frame(FrameKind::LogBatch, &out);
            let (f, n) = decode_frame(&framed).expect("valid frame");
            prop_assert_eq!(n, framed.len());
            prop_assert_eq!(f.payload, &out[..]);

            let batch = DecodedBatch::decode(f.payload).expect("valid batch");
            let raw_len: usize = refs.iter().map(|r| r.encoded_len(refs[0].hlc)).sum();
            prop_assert_eq!(batch.header, BatchHeader {
                origin: NodeId(origin),
                base_seq,
                count: recs.len() as u32,
                base_hlc: Hlc(recs[0].hlc),
                compressed: batch.header.compressed,
                raw_len: raw_len as u32,
            });
            if compression == Compression::None || raw_len < COMPRESS_MIN_BYTES {
                prop_assert!(!batch.header.compressed);
            }
            if batch.header.compressed {
                prop_assert!(out.len() - BATCH_HEADER_LEN <= raw_len - raw_len / 8);
            } else {
                prop_assert_eq!(out.len(), BATCH_HEADER_LEN + raw_len);
            }
            prop_assert_eq!(batch.records().len(), recs.len());
            prop_assert_eq!(batch.records().collect::<Vec<_>>(), refs);
        }

        #[test]
        fn every_bit_flip_is_rejected(f in valid_frame(), bit in any::<prop::sample::Index>()) {
            let bit = bit.index(f.len() * 8);
            let mut bad = f.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_frame(&bad).is_err());
        }

        #[test]
        fn every_truncation_is_incomplete(f in valid_frame(), cut in any::<prop::sample::Index>()) {
            let cut = cut.index(f.len());
            let needed = if cut < FRAME_HEADER_LEN { FRAME_HEADER_LEN } else { f.len() };
            prop_assert_eq!(
                decode_frame(&f[..cut]),
                Err(FrameError::Incomplete { have: cut, needed })
            );
        }

        #[test]
        fn extension_is_left_for_the_next_frame(
            f in valid_frame(),
            extra in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            let mut longer = f.clone();
            longer.extend_from_slice(&extra);
            let (frame, n) = decode_frame(&longer).expect("prefix is a valid frame");
            prop_assert_eq!(n, f.len());
            prop_assert_eq!(frame, decode_frame(&f).expect("valid").0);
            prop_assert!(decode_frame(&longer[n..]).is_err());
            // Claiming the extra bytes as payload breaks the CRC.
            let mut grown = longer.clone();
            let len = (f.len() - FRAME_HEADER_LEN + extra.len()) as u32;
            grown[4..8].copy_from_slice(&len.to_le_bytes());
            prop_assert!(
                matches!(decode_frame(&grown), Err(FrameError::ChecksumMismatch { .. })),
                "grown frame was not rejected by its checksum"
            );
        }

        #[test]
        fn corrupted_batch_payloads_never_panic(
            f in valid_frame(),
            flips in proptest::collection::vec(any::<(prop::sample::Index, u8)>(), 1..4),
        ) {
            let mut payload = f[FRAME_HEADER_LEN..].to_vec();
            for (at, x) in flips {
                let i = at.index(payload.len());
                payload[i] ^= x;
            }
            if let Ok(batch) = DecodedBatch::decode(&payload) {
                prop_assert_eq!(batch.records().count(), batch.header.count as usize);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_frame(&bytes);
            let _ = BatchHeader::decode(&bytes);
            if let Ok(batch) = DecodedBatch::decode(&bytes) {
                prop_assert_eq!(batch.records().count(), batch.header.count as usize);
            }
        }

        #[test]
        fn arbitrary_sections_never_panic(
            count in 1u32..20,
            base_hlc in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
            section in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(0x80), Just(0xff), any::<u8>()], 0..200),
            compress in any::<bool>(),
        ) {
            let (flags, body) = if compress {
                (FLAG_ZSTD, zstd::bulk::compress(&section, 1).expect("compress"))
            } else {
                (0, section.clone())
            };
            let payload = raw_batch(flags, 0, count, base_hlc, section.len() as u32, &body);
            if let Ok(batch) = DecodedBatch::decode(&payload) {
                let recs: Vec<_> = batch.records().collect();
                prop_assert_eq!(recs.len(), count as usize);
                prop_assert!(recs.windows(2).all(|w| w[0].hlc <= w[1].hlc));
            }
        }
    }
}

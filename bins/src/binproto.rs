//! The framed binary protocol applications use for high rates (docs/PROTOCOL.md,
//! "Application protocols"). Pure encode and decode; every decoder checks lengths and
//! returns a typed error.
//!
//! A frame is `len u32` (the bytes after it) · `kind u8` · `id u32` · body. Integers are
//! little-endian. `id` is the client's; the answer to a request carries the same id, and
//! answers may come in any order.

use outpost_core::config::Way;
use std::fmt;

/// The largest frame a daemon reads (a 1 MiB value, a 4 KiB key and headers).
pub const REQUEST_FRAME_MAX: usize = (1 << 20) + 8192;
/// The largest frame a client reads (a fetch of up to 16 MiB of records).
pub const RESPONSE_FRAME_MAX: usize = 16 << 20;

pub const KIND_PRODUCE: u8 = 1;
/// A Fetch's direction byte.
const WAY_UP: u8 = 1;
const WAY_DOWN: u8 = 2;
pub const KIND_FETCH: u8 = 2;
pub const KIND_PRODUCE_BATCH: u8 = 3;
pub const KIND_AUTH: u8 = 4;
pub const KIND_KEYED: u8 = 5;
pub const KIND_ACKED: u8 = 129;
pub const KIND_ERROR: u8 = 130;
pub const KIND_RECORDS: u8 = 131;
pub const KIND_RESULTS: u8 = 132;
pub const KIND_WELCOME: u8 = 133;
pub const KIND_ANSWER: u8 = 134;
/// A Keyed request's operation byte.
const KEYED_GET: u8 = 0;
const KEYED_PUT: u8 = 1;
const KEYED_DELETE: u8 = 2;
const KEYED_INCREMENT: u8 = 3;
const KEYED_MAX: u8 = 4;
const KEYED_ADD: u8 = 5;
const KEYED_REMOVE: u8 = 6;
const KEYED_CONFLICTS: u8 = 7;
/// A Results entry's status byte.
const RESULT_ACKED: u8 = 0;
const RESULT_REFUSED: u8 = 1;

/// Records one ProduceBatch carries at most. It equals the records a connection may have
/// unanswered (`limits::BINARY_IN_FLIGHT_MAX`), so that one batch always fits.
pub const PRODUCE_BATCH_RECORDS_MAX: usize = 1024;
/// The longest error message an answer carries, in bytes.
const MESSAGE_MAX: usize = 4096;

/// Error codes of an `Error` answer (also in docs/PROTOCOL.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    BadRequest = 1,
    UnknownTopic = 2,
    TooLarge = 3,
    Busy = 4,
    Recovering = 5,
    StorageFull = 6,
    Storage = 7,
    Clock = 8,
    NotAccepted = 9,
    OutOfRange = 10,
    Corrupted = 11,
    /// No Auth with `api.token` came first, or a wrong one: the connection is closed.
    Unauthorized = 12,
    /// A keyed call on a topic without a conflict strategy.
    NotKeyed = 13,
    /// The keyed state has no room for the write.
    KeyedFull = 14,
    /// A causal read: this node does not hold the session's writes yet (retry).
    NotYet = 15,
    /// A bounded read: this node's state is staler than asked (retry, or elsewhere).
    TooStale = 16,
    /// A causal or bounded read: the node's state cannot vouch for what it holds.
    Incomplete = 17,
}

impl Code {
    pub fn from_u8(v: u8) -> Option<Code> {
        use Code::*;
        Some(match v {
            1 => BadRequest,
            2 => UnknownTopic,
            3 => TooLarge,
            4 => Busy,
            5 => Recovering,
            6 => StorageFull,
            7 => Storage,
            8 => Clock,
            9 => NotAccepted,
            10 => OutOfRange,
            11 => Corrupted,
            12 => Unauthorized,
            13 => NotKeyed,
            14 => KeyedFull,
            15 => NotYet,
            16 => TooStale,
            17 => Incomplete,
            _ => return None,
        })
    }
}

/// A record as a produce carries it: its key, if any, and its value.
pub type KeyValue = (Option<Vec<u8>>, Vec<u8>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Produce {
        topic: String,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
    },
    Fetch(FetchRequest),
    /// 1 to [`PRODUCE_BATCH_RECORDS_MAX`] records to one topic, appended in order and
    /// answered by one Results.
    ProduceBatch {
        topic: String,
        records: Vec<KeyValue>,
    },
    /// The first request on a port with `api.token`: the token (at most
    /// [`crate::peer::TOKEN_LEN_MAX`] bytes of UTF-8), answered by Welcome or by Error
    /// Unauthorized and the connection's end.
    Auth {
        token: String,
    },
    /// A key of a keyed topic, or its conflict log; answered by Acked (a write), Answer
    /// (a read: the JSON of the HTTP answer) or Error.
    Keyed {
        topic: String,
        call: KeyedCall,
    },
}

/// What a request asks of a keyed topic (both application protocols).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedCall {
    /// The key's value at the consistency asked (docs/KEYED.md, "Reads").
    Get { key: Vec<u8>, read: ReadOption },
    /// A write made here, with what this node has seen of the key; `session`: the bytes
    /// of a session token to answer again with this write added (answered by Answer, the
    /// JSON of the HTTP answer, rather than Acked).
    Write { key: Vec<u8>, op: WriteOp, session: Option<Vec<u8>> },
    /// The newest `max` recorded conflicts, oldest first.
    Conflicts { max: usize },
}

/// The consistency a keyed read asks for. In the binary protocol the bytes after a get's
/// key: none (eventual), 1 and a session token's bytes (causal), or 2 and a u64 of
/// milliseconds (bounded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOption {
    Eventual,
    /// A session token's bytes (`outpost_core::keyed_reads::SessionToken`).
    Causal(Vec<u8>),
    Bounded {
        staleness_max_ms: u64,
    },
}

const READ_CAUSAL: u8 = 1;
const READ_BOUNDED: u8 = 2;
/// On a write's operation byte: a session token (u16 length, bytes) follows the key.
const KEYED_WITH_SESSION: u8 = 0x80;

/// The operation of a keyed write, as the API takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    Put(Vec<u8>),
    Delete,
    Increment(i64),
    Max(i64),
    Add(Vec<u8>),
    Remove(Vec<u8>),
}

/// A fetch, as both application protocols ask for one (`api::Call::Fetch` too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub topic: String,
    /// Which half of a `both` topic. In the binary protocol an optional last byte (1 up,
    /// 2 down), so a client that never reads such a topic sends the first release's frame.
    pub way: Option<Way>,
    pub from: u64,
    pub max_records: u32,
    pub max_bytes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub origin: u64,
    pub origin_seq: u64,
    pub hlc: u64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Acked {
        seq: u64,
        hlc: u64,
    },
    Error {
        code: Code,
        retryable: bool,
        message: String,
    },
    Records {
        next: u64,
        durable_end: u64,
        records: Vec<Record>,
    },
    /// The answer to a ProduceBatch: one result per record, in the batch's order.
    Results(Vec<RecordResult>),
    /// The answer to an Auth that holds a token of the port.
    Welcome,
    /// The answer to a keyed read: a JSON document (docs/PROTOCOL.md, Keyed topics).
    Answer(String),
}

/// One record's result in a Results answer: what Acked or Error says of a single produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordResult {
    Acked { seq: u64, hlc: u64 },
    Refused { code: Code, retryable: bool, message: String },
}

/// Why bytes are not a valid frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// The length prefix claims more than the reader accepts.
    FrameTooLarge {
        len: usize,
        max: usize,
    },
    /// Shorter than kind and id.
    FrameTooShort {
        len: usize,
    },
    UnknownKind(u8),
    /// A field runs past the end of the frame.
    Truncated {
        field: &'static str,
    },
    /// Bytes left after the last field.
    TrailingBytes {
        len: usize,
    },
    BadTopicName,
    BadCode(u8),
    /// A key flag other than 0 (no key) or 1 (a key follows).
    BadKeyFlag(u8),
    /// A Fetch's direction byte other than 1 (up) or 2 (down).
    BadDirection(u8),
    BadUtf8,
    /// A ProduceBatch or Results with no records or more than [`PRODUCE_BATCH_RECORDS_MAX`].
    BadCount(usize),
    /// A Results entry's status other than 0 (acked) or 1 (refused).
    BadStatus(u8),
    /// A Results entry's retryable byte other than 0 or 1.
    BadRetryable(u8),
    /// A Results entry names a message the answer does not hold.
    BadMessageIndex {
        index: usize,
        messages: usize,
    },
    /// A Results message longer than 4096 bytes.
    MessageTooLong(usize),
    /// An Auth's token longer than [`crate::peer::TOKEN_LEN_MAX`] bytes.
    TokenTooLong(usize),
    /// A Keyed request's operation byte other than 0 to 7 (a write's with 0x80: a session
    /// token follows the key).
    BadKeyedOp(u8),
    /// A Keyed request without a key (all but conflicts), or with one (conflicts).
    BadKeyedKey,
    /// A keyed get's consistency byte other than 1 (causal) or 2 (bounded).
    BadReadConsistency(u8),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes is larger than the {max} accepted; the connection is closed")
            }
            ProtoError::FrameTooShort { len } => write!(f, "frame of {len} bytes is shorter than its 5-byte head"),
            ProtoError::UnknownKind(k) => {
                write!(f, "unknown request kind {k} (1 produce, 2 fetch, 3 produce batch, 4 auth, 5 keyed)")
            }
            ProtoError::Truncated { field } => write!(f, "frame ends inside field {field}"),
            ProtoError::TrailingBytes { len } => write!(f, "{len} bytes after the last field"),
            ProtoError::BadTopicName => f.write_str("topic name must be 1 to 255 bytes of UTF-8"),
            ProtoError::BadCode(c) => write!(f, "unknown error code {c}"),
            ProtoError::BadKeyFlag(v) => write!(f, "key flag {v}; expected 0 (no key) or 1 (a key follows)"),
            ProtoError::BadDirection(v) => write!(f, "direction {v}; expected 1 (up) or 2 (down), or none"),
            ProtoError::BadUtf8 => f.write_str("text is not UTF-8"),
            ProtoError::BadCount(n) => {
                write!(f, "a batch of {n} records; expected 1 to {PRODUCE_BATCH_RECORDS_MAX}")
            }
            ProtoError::BadStatus(v) => write!(f, "result status {v}; expected 0 (acked) or 1 (refused)"),
            ProtoError::BadRetryable(v) => write!(f, "retryable byte {v}; expected 0 or 1"),
            ProtoError::BadMessageIndex { index, messages } => {
                write!(f, "a result names message {index} of an answer holding {messages}")
            }
            ProtoError::MessageTooLong(n) => write!(f, "a message of {n} bytes; at most {MESSAGE_MAX}"),
            ProtoError::TokenTooLong(n) => write!(f, "a token of {n} bytes; at most {}", crate::peer::TOKEN_LEN_MAX),
            ProtoError::BadKeyedOp(v) => write!(
                f,
                "keyed operation {v}; expected 0 get, 1 put, 2 delete, 3 increment, 4 max, 5 add, 6 remove, 7 conflicts"
            ),
            ProtoError::BadKeyedKey => {
                f.write_str("a keyed call names a key (1 or more bytes), except conflicts (none)")
            }
            ProtoError::BadReadConsistency(v) => {
                write!(f, "read consistency {v}; expected none (eventual), 1 (causal, a token follows) or 2 (bounded)")
            }
        }
    }
}

impl std::error::Error for ProtoError {}

/// Checks a frame's length prefix: the body length that follows it.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, ProtoError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max {
        return Err(ProtoError::FrameTooLarge { len, max });
    }
    if len < 5 {
        return Err(ProtoError::FrameTooShort { len });
    }
    Ok(len)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < n {
            return Err(ProtoError::Truncated { field });
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, ProtoError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, ProtoError> {
        Ok(u16::from_le_bytes(self.take(2, field)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(self.take(4, field)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(self.take(8, field)?.try_into().expect("8 bytes")))
    }
    fn topic(&mut self) -> Result<String, ProtoError> {
        let n = self.u8("topic length")? as usize;
        let b = self.take(n, "topic")?;
        match std::str::from_utf8(b) {
            Ok(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(ProtoError::BadTopicName),
        }
    }
    fn key(&mut self) -> Result<Option<Vec<u8>>, ProtoError> {
        match self.u8("key flag")? {
            0 => Ok(None),
            1 => {
                let n = self.u16("key length")? as usize;
                Ok(Some(self.take(n, "key")?.to_vec()))
            }
            other => Err(ProtoError::BadKeyFlag(other)),
        }
    }
    /// A batch's record count: 1 to [`PRODUCE_BATCH_RECORDS_MAX`].
    fn count(&mut self) -> Result<usize, ProtoError> {
        let n = self.u16("count")? as usize;
        if n == 0 || n > PRODUCE_BATCH_RECORDS_MAX {
            return Err(ProtoError::BadCount(n));
        }
        Ok(n)
    }
    fn end(&self) -> Result<(), ProtoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::TrailingBytes { len: self.buf.len() })
        }
    }
}

fn head(kind: u8, id: u32, out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    at
}

fn finish(at: usize, out: &mut [u8]) {
    let len = u32::try_from(out.len() - at - 4).expect("frames are far below 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_topic(topic: &str, out: &mut Vec<u8>) {
    assert!(!topic.is_empty() && topic.len() <= 255, "topic names are 1 to 255 bytes");
    out.push(topic.len() as u8);
    out.extend_from_slice(topic.as_bytes());
}

fn put_key(key: Option<&[u8]>, out: &mut Vec<u8>) {
    match key {
        None => out.push(0),
        Some(k) => {
            out.push(1);
            out.extend_from_slice(&u16::try_from(k.len()).expect("keys are at most 4 KiB").to_le_bytes());
            out.extend_from_slice(k);
        }
    }
}

/// The prefix of `message` that fits [`MESSAGE_MAX`], cut at a character boundary.
fn clip(message: &str) -> &str {
    let mut end = message.len().min(MESSAGE_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Appends one ProduceBatch frame (length prefix included) without copying the records
/// into a [`Request`] first: 1 to [`PRODUCE_BATCH_RECORDS_MAX`] records.
pub fn encode_produce_batch(id: u32, topic: &str, records: &[(Option<&[u8]>, &[u8])], out: &mut Vec<u8>) {
    assert!(
        (1..=PRODUCE_BATCH_RECORDS_MAX).contains(&records.len()),
        "a batch holds 1 to {PRODUCE_BATCH_RECORDS_MAX} records"
    );
    let at = head(KIND_PRODUCE_BATCH, id, out);
    put_topic(topic, out);
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    for (key, value) in records {
        put_key(*key, out);
        out.extend_from_slice(&u32::try_from(value.len()).expect("values are far below 4 GiB").to_le_bytes());
        out.extend_from_slice(value);
    }
    finish(at, out);
}

/// Appends one request frame (length prefix included).
pub fn encode_request(id: u32, req: &Request, out: &mut Vec<u8>) {
    match req {
        Request::ProduceBatch { topic, records } => {
            let borrowed: Vec<(Option<&[u8]>, &[u8])> =
                records.iter().map(|(k, v)| (k.as_deref(), v.as_slice())).collect();
            encode_produce_batch(id, topic, &borrowed, out);
        }
        Request::Produce { topic, key, value } => {
            let at = head(KIND_PRODUCE, id, out);
            put_topic(topic, out);
            put_key(key.as_deref(), out);
            out.extend_from_slice(value);
            finish(at, out);
        }
        Request::Auth { token } => {
            let at = head(KIND_AUTH, id, out);
            out.extend_from_slice(token.as_bytes());
            finish(at, out);
        }
        Request::Keyed { topic, call } => {
            let at = head(KIND_KEYED, id, out);
            put_topic(topic, out);
            let (op, key): (u8, &[u8]) = match call {
                KeyedCall::Get { key, .. } => (KEYED_GET, key),
                KeyedCall::Conflicts { .. } => (KEYED_CONFLICTS, &[]),
                KeyedCall::Write { key, op, session } => {
                    let code = match op {
                        WriteOp::Put(_) => KEYED_PUT,
                        WriteOp::Delete => KEYED_DELETE,
                        WriteOp::Increment(_) => KEYED_INCREMENT,
                        WriteOp::Max(_) => KEYED_MAX,
                        WriteOp::Add(_) => KEYED_ADD,
                        WriteOp::Remove(_) => KEYED_REMOVE,
                    };
                    (if session.is_some() { code | KEYED_WITH_SESSION } else { code }, key)
                }
            };
            out.push(op);
            out.extend_from_slice(&u16::try_from(key.len()).expect("keys are at most 4 KiB").to_le_bytes());
            out.extend_from_slice(key);
            if let KeyedCall::Write { session: Some(token), .. } = call {
                out.extend_from_slice(&u16::try_from(token.len()).expect("tokens are bounded").to_le_bytes());
                out.extend_from_slice(token);
            }
            match call {
                KeyedCall::Conflicts { max } => {
                    out.extend_from_slice(&u32::try_from(*max).unwrap_or(u32::MAX).to_le_bytes())
                }
                KeyedCall::Write { op: WriteOp::Put(b) | WriteOp::Add(b) | WriteOp::Remove(b), .. } => {
                    out.extend_from_slice(b)
                }
                KeyedCall::Write { op: WriteOp::Increment(n) | WriteOp::Max(n), .. } => {
                    out.extend_from_slice(&n.to_le_bytes())
                }
                KeyedCall::Get { read: ReadOption::Eventual, .. } | KeyedCall::Write { op: WriteOp::Delete, .. } => {}
                KeyedCall::Get { read: ReadOption::Causal(token), .. } => {
                    out.push(READ_CAUSAL);
                    out.extend_from_slice(token);
                }
                KeyedCall::Get { read: ReadOption::Bounded { staleness_max_ms }, .. } => {
                    out.push(READ_BOUNDED);
                    out.extend_from_slice(&staleness_max_ms.to_le_bytes());
                }
            }
            finish(at, out);
        }
        Request::Fetch(FetchRequest { topic, way, from, max_records, max_bytes }) => {
            let at = head(KIND_FETCH, id, out);
            put_topic(topic, out);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&max_records.to_le_bytes());
            out.extend_from_slice(&max_bytes.to_le_bytes());
            match way {
                None => {}
                Some(Way::Up) => out.push(WAY_UP),
                Some(Way::Down) => out.push(WAY_DOWN),
            }
            finish(at, out);
        }
    }
}

/// Decodes a request frame's body (after the length prefix). On an error the id is
/// returned too when it could be read, so the answer can name the request.
pub fn decode_request(body: &[u8]) -> Result<(u32, Request), (Option<u32>, ProtoError)> {
    if body.len() < 5 {
        return Err((None, ProtoError::FrameTooShort { len: body.len() }));
    }
    let kind = body[0];
    let id = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes"));
    let mut r = Reader { buf: &body[5..] };
    let req = (|| match kind {
        KIND_PRODUCE => {
            let topic = r.topic()?;
            let key = r.key()?;
            let value = std::mem::take(&mut r.buf).to_vec();
            Ok(Request::Produce { topic, key, value })
        }
        KIND_FETCH => {
            let topic = r.topic()?;
            let from = r.u64("from")?;
            let max_records = r.u32("max_records")?;
            let max_bytes = r.u32("max_bytes")?;
            let way = match r.buf.first() {
                None => None,
                Some(&WAY_UP) => Some(Way::Up),
                Some(&WAY_DOWN) => Some(Way::Down),
                Some(&other) => return Err(ProtoError::BadDirection(other)),
            };
            r.buf = r.buf.get(1..).unwrap_or_default();
            r.end()?;
            Ok(Request::Fetch(FetchRequest { topic, way, from, max_records, max_bytes }))
        }
        KIND_PRODUCE_BATCH => {
            let topic = r.topic()?;
            let n = r.count()?;
            // Each record takes at least 5 bytes: no allocation beyond what the frame holds.
            let mut records = Vec::with_capacity(n.min(r.buf.len() / 5));
            for _ in 0..n {
                let key = r.key()?;
                let len = r.u32("value length")? as usize;
                records.push((key, r.take(len, "value")?.to_vec()));
            }
            r.end()?;
            Ok(Request::ProduceBatch { topic, records })
        }
        KIND_AUTH => {
            let token = std::mem::take(&mut r.buf);
            if token.len() > crate::peer::TOKEN_LEN_MAX {
                return Err(ProtoError::TokenTooLong(token.len()));
            }
            let token = std::str::from_utf8(token).map_err(|_| ProtoError::BadUtf8)?.to_owned();
            Ok(Request::Auth { token })
        }
        KIND_KEYED => {
            let topic = r.topic()?;
            let op = r.u8("keyed operation")?;
            let with_session = op & KEYED_WITH_SESSION != 0 && op & !KEYED_WITH_SESSION != KEYED_GET;
            let op = if with_session { op & !KEYED_WITH_SESSION } else { op };
            let len = r.u16("key length")? as usize;
            let key = r.take(len, "key")?.to_vec();
            let session = match with_session {
                true => {
                    let len = r.u16("session token length")? as usize;
                    Some(r.take(len, "session token")?.to_vec())
                }
                false => None,
            };
            if key.is_empty() != (op == KEYED_CONFLICTS) {
                return Err(if op > KEYED_CONFLICTS { ProtoError::BadKeyedOp(op) } else { ProtoError::BadKeyedKey });
            }
            let rest = |r: &mut Reader<'_>| std::mem::take(&mut r.buf).to_vec();
            let number = |r: &mut Reader<'_>| -> Result<i64, ProtoError> {
                let n = r.u64("number")? as i64;
                r.end()?;
                Ok(n)
            };
            let write = |op| KeyedCall::Write { key: key.clone(), op, session: session.clone() };
            let call = match op {
                KEYED_GET => {
                    let read = match r.buf.first() {
                        None => ReadOption::Eventual,
                        Some(&READ_CAUSAL) => ReadOption::Causal(std::mem::take(&mut r.buf)[1..].to_vec()),
                        Some(&READ_BOUNDED) => {
                            r.u8("read consistency")?;
                            let staleness_max_ms = r.u64("staleness bound")?;
                            r.end()?;
                            ReadOption::Bounded { staleness_max_ms }
                        }
                        Some(&other) => return Err(ProtoError::BadReadConsistency(other)),
                    };
                    KeyedCall::Get { key: key.clone(), read }
                }
                KEYED_PUT => write(WriteOp::Put(rest(&mut r))),
                KEYED_DELETE => {
                    r.end()?;
                    write(WriteOp::Delete)
                }
                KEYED_INCREMENT => write(WriteOp::Increment(number(&mut r)?)),
                KEYED_MAX => write(WriteOp::Max(number(&mut r)?)),
                KEYED_ADD => write(WriteOp::Add(rest(&mut r))),
                KEYED_REMOVE => write(WriteOp::Remove(rest(&mut r))),
                KEYED_CONFLICTS if session.is_none() => {
                    let max = r.u32("max")? as usize;
                    r.end()?;
                    KeyedCall::Conflicts { max }
                }
                other => return Err(ProtoError::BadKeyedOp(other)),
            };
            Ok(Request::Keyed { topic, call })
        }
        k => Err(ProtoError::UnknownKind(k)),
    })();
    req.map(|q| (id, q)).map_err(|e| (Some(id), e))
}

/// Appends one response frame (length prefix included).
pub fn encode_response(id: u32, resp: &Response, out: &mut Vec<u8>) {
    match resp {
        Response::Welcome => {
            let at = head(KIND_WELCOME, id, out);
            finish(at, out);
        }
        Response::Answer(json) => {
            let at = head(KIND_ANSWER, id, out);
            out.extend_from_slice(json.as_bytes());
            finish(at, out);
        }
        Response::Acked { seq, hlc } => {
            let at = head(KIND_ACKED, id, out);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&hlc.to_le_bytes());
            finish(at, out);
        }
        Response::Error { code, retryable, message } => {
            let at = head(KIND_ERROR, id, out);
            out.push(*code as u8);
            out.push(u8::from(*retryable));
            out.extend_from_slice(clip(message).as_bytes());
            finish(at, out);
        }
        Response::Results(results) => {
            assert!(
                (1..=PRODUCE_BATCH_RECORDS_MAX).contains(&results.len()),
                "a batch holds 1 to {PRODUCE_BATCH_RECORDS_MAX} records"
            );
            // Each distinct message once; a refusal names it by index.
            let mut messages: Vec<&str> = Vec::new();
            let mut indices = Vec::with_capacity(results.len());
            for r in results {
                let RecordResult::Refused { message, .. } = r else {
                    indices.push(0);
                    continue;
                };
                let m = clip(message);
                indices.push(messages.iter().position(|x| *x == m).unwrap_or_else(|| {
                    messages.push(m);
                    messages.len() - 1
                }));
            }
            let at = head(KIND_RESULTS, id, out);
            out.extend_from_slice(&(results.len() as u16).to_le_bytes());
            out.extend_from_slice(&(messages.len() as u16).to_le_bytes());
            for m in &messages {
                out.extend_from_slice(&(m.len() as u16).to_le_bytes());
                out.extend_from_slice(m.as_bytes());
            }
            for (r, index) in results.iter().zip(indices) {
                match r {
                    RecordResult::Acked { seq, hlc } => {
                        out.push(RESULT_ACKED);
                        out.extend_from_slice(&seq.to_le_bytes());
                        out.extend_from_slice(&hlc.to_le_bytes());
                    }
                    RecordResult::Refused { code, retryable, .. } => {
                        out.push(RESULT_REFUSED);
                        out.push(*code as u8);
                        out.push(u8::from(*retryable));
                        out.extend_from_slice(&(index as u16).to_le_bytes());
                    }
                }
            }
            finish(at, out);
        }
        Response::Records { next, durable_end, records } => {
            let at = head(KIND_RECORDS, id, out);
            out.extend_from_slice(&next.to_le_bytes());
            out.extend_from_slice(&durable_end.to_le_bytes());
            out.extend_from_slice(&(records.len() as u32).to_le_bytes());
            for r in records {
                for v in [r.seq, r.origin, r.origin_seq, r.hlc] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                put_key(r.key.as_deref(), out);
                out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
                out.extend_from_slice(&r.value);
            }
            finish(at, out);
        }
    }
}

/// Decodes a response frame's body (after the length prefix).
pub fn decode_response(body: &[u8]) -> Result<(u32, Response), ProtoError> {
    if body.len() < 5 {
        return Err(ProtoError::FrameTooShort { len: body.len() });
    }
    let kind = body[0];
    let id = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes"));
    let mut r = Reader { buf: &body[5..] };
    let resp = match kind {
        KIND_WELCOME => Response::Welcome,
        KIND_ANSWER => {
            let text = std::str::from_utf8(std::mem::take(&mut r.buf)).map_err(|_| ProtoError::BadUtf8)?;
            Response::Answer(text.to_owned())
        }
        KIND_ACKED => {
            let seq = r.u64("seq")?;
            let hlc = r.u64("hlc")?;
            Response::Acked { seq, hlc }
        }
        KIND_ERROR => {
            let c = r.u8("code")?;
            let code = Code::from_u8(c).ok_or(ProtoError::BadCode(c))?;
            let retryable = r.u8("retryable")? != 0;
            let message = String::from_utf8(std::mem::take(&mut r.buf).to_vec()).map_err(|_| ProtoError::BadUtf8)?;
            Response::Error { code, retryable, message }
        }
        KIND_RECORDS => {
            let next = r.u64("next")?;
            let durable_end = r.u64("durable_end")?;
            let n = r.u32("count")? as usize;
            // Each record takes at least 41 bytes: no allocation beyond what the frame holds.
            let mut records = Vec::with_capacity(n.min(r.buf.len() / 41));
            for _ in 0..n {
                let seq = r.u64("seq")?;
                let origin = r.u64("origin")?;
                let origin_seq = r.u64("origin_seq")?;
                let hlc = r.u64("hlc")?;
                let key = r.key()?;
                let len = r.u32("value length")? as usize;
                let value = r.take(len, "value")?.to_vec();
                records.push(Record { seq, origin, origin_seq, hlc, key, value });
            }
            Response::Records { next, durable_end, records }
        }
        KIND_RESULTS => {
            let n = r.count()?;
            let m = r.u16("message count")? as usize;
            // Each message takes at least 2 bytes, each result at least 5.
            let mut messages = Vec::with_capacity(m.min(r.buf.len() / 2));
            for _ in 0..m {
                let len = r.u16("message length")? as usize;
                if len > MESSAGE_MAX {
                    return Err(ProtoError::MessageTooLong(len));
                }
                let text = std::str::from_utf8(r.take(len, "message")?).map_err(|_| ProtoError::BadUtf8)?;
                messages.push(text);
            }
            let mut results = Vec::with_capacity(n.min(r.buf.len() / 5));
            for _ in 0..n {
                results.push(match r.u8("status")? {
                    RESULT_ACKED => RecordResult::Acked { seq: r.u64("seq")?, hlc: r.u64("hlc")? },
                    RESULT_REFUSED => {
                        let c = r.u8("code")?;
                        let code = Code::from_u8(c).ok_or(ProtoError::BadCode(c))?;
                        let retryable = match r.u8("retryable")? {
                            0 => false,
                            1 => true,
                            other => return Err(ProtoError::BadRetryable(other)),
                        };
                        let index = r.u16("message index")? as usize;
                        let message = messages
                            .get(index)
                            .ok_or(ProtoError::BadMessageIndex { index, messages: messages.len() })?;
                        RecordResult::Refused { code, retryable, message: (*message).to_string() }
                    }
                    other => return Err(ProtoError::BadStatus(other)),
                });
            }
            Response::Results(results)
        }
        k => return Err(ProtoError::UnknownKind(k)),
    };
    r.end()?;
    Ok((id, resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        let len = frame_len(frame[..4].try_into().unwrap(), usize::MAX).expect("valid prefix");
        assert_eq!(len, frame.len() - 4);
        &frame[4..]
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let reqs = [
            Request::Produce { topic: "t".into(), key: None, value: b"v".to_vec() },
            Request::Produce { topic: "pos.tx".into(), key: Some(b"k".to_vec()), value: Vec::new() },
            Request::Fetch(FetchRequest { topic: "t".into(), way: None, from: 7, max_records: 10, max_bytes: 1000 }),
            Request::Fetch(FetchRequest {
                topic: "t".into(),
                way: Some(Way::Up),
                from: 7,
                max_records: 10,
                max_bytes: 1000,
            }),
            Request::Fetch(FetchRequest {
                topic: "t".into(),
                way: Some(Way::Down),
                from: 0,
                max_records: 1,
                max_bytes: 1,
            }),
            Request::ProduceBatch { topic: "t".into(), records: vec![(None, b"a".to_vec())] },
            Request::ProduceBatch {
                topic: "pos.tx".into(),
                records: vec![(Some(b"k".to_vec()), Vec::new()), (None, b"bc".to_vec()), (Some(Vec::new()), vec![0])],
            },
            Request::ProduceBatch {
                topic: "t".into(),
                records: (0..PRODUCE_BATCH_RECORDS_MAX as u32).map(|i| (None, i.to_le_bytes().to_vec())).collect(),
            },
            Request::Keyed {
                topic: "t".into(),
                call: KeyedCall::Get { key: b"k/1".to_vec(), read: ReadOption::Eventual },
            },
            Request::Keyed {
                topic: "t".into(),
                call: KeyedCall::Get { key: b"k".to_vec(), read: ReadOption::Causal(vec![1, 2]) },
            },
            Request::Keyed {
                topic: "t".into(),
                call: KeyedCall::Get { key: b"k".to_vec(), read: ReadOption::Causal(vec![]) },
            },
            Request::Keyed {
                topic: "t".into(),
                call: KeyedCall::Get { key: b"k".to_vec(), read: ReadOption::Bounded { staleness_max_ms: 9 } },
            },
            Request::Keyed { topic: "t".into(), call: KeyedCall::Conflicts { max: 5 } },
        ];
        let keyed_writes = [
            WriteOp::Put(b"v".to_vec()),
            WriteOp::Put(Vec::new()),
            WriteOp::Delete,
            WriteOp::Increment(-3),
            WriteOp::Max(i64::MAX),
            WriteOp::Add(b"e".to_vec()),
            WriteOp::Remove(b"e".to_vec()),
        ];
        let reqs: Vec<Request> = reqs
            .into_iter()
            .chain(keyed_writes.into_iter().flat_map(|op| {
                [None, Some(vec![1, 2, 3])].map(|session| Request::Keyed {
                    topic: "t".into(),
                    call: KeyedCall::Write { key: b"k".to_vec(), op: op.clone(), session },
                })
            }))
            .collect();
        for (i, q) in reqs.iter().enumerate() {
            let mut f = Vec::new();
            encode_request(i as u32, q, &mut f);
            assert_eq!(decode_request(body(&f)), Ok((i as u32, q.clone())));
        }
        let resps = [
            Response::Acked { seq: 1, hlc: 2 },
            Response::Error { code: Code::Busy, retryable: true, message: "full".into() },
            Response::Records {
                next: 3,
                durable_end: 9,
                records: vec![
                    Record { seq: 1, origin: 2, origin_seq: 3, hlc: 4, key: None, value: b"a".to_vec() },
                    Record { seq: 2, origin: 2, origin_seq: 4, hlc: 5, key: Some(vec![]), value: vec![] },
                ],
            },
            Response::Results(vec![RecordResult::Acked { seq: 1, hlc: 2 }]),
            Response::Answer(r#"{"found":false}"#.into()),
            Response::Error { code: Code::NotKeyed, retryable: false, message: "not keyed".into() },
            Response::Results(vec![
                RecordResult::Acked { seq: 7, hlc: 9 },
                RecordResult::Refused { code: Code::TooLarge, retryable: false, message: "too large".into() },
                RecordResult::Refused { code: Code::Busy, retryable: true, message: "full".into() },
                RecordResult::Refused { code: Code::Busy, retryable: true, message: "full".into() },
            ]),
        ];
        for (i, r) in resps.iter().enumerate() {
            let mut f = Vec::new();
            encode_response(i as u32, r, &mut f);
            assert_eq!(decode_response(body(&f)), Ok((i as u32, r.clone())));
        }
    }

    #[test]
    fn hostile_keyed_frames_get_typed_errors() {
        let keyed = |op: u8, key: &[u8], tail: &[u8]| {
            let mut b = vec![KIND_KEYED, 7, 0, 0, 0, 1, b't', op];
            b.extend_from_slice(&(key.len() as u16).to_le_bytes());
            b.extend_from_slice(key);
            b.extend_from_slice(tail);
            decode_request(&b)
        };
        assert_eq!(keyed(9, b"k", b""), Err((Some(7), ProtoError::BadKeyedOp(9))));
        assert_eq!(keyed(KEYED_GET, b"", b""), Err((Some(7), ProtoError::BadKeyedKey)));
        assert_eq!(keyed(KEYED_CONFLICTS, b"k", &[1, 0, 0, 0]), Err((Some(7), ProtoError::BadKeyedKey)));
        assert_eq!(keyed(KEYED_INCREMENT, b"k", &[1, 2, 3]), Err((Some(7), ProtoError::Truncated { field: "number" })));
        assert_eq!(keyed(KEYED_GET, b"k", b"x"), Err((Some(7), ProtoError::BadReadConsistency(b'x'))));
        assert_eq!(
            keyed(KEYED_GET, b"k", &[READ_BOUNDED, 1, 2]),
            Err((Some(7), ProtoError::Truncated { field: "staleness bound" }))
        );
        assert_eq!(
            keyed(KEYED_GET, b"k", &[READ_BOUNDED, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            Err((Some(7), ProtoError::TrailingBytes { len: 1 }))
        );
        assert_eq!(
            keyed(KEYED_PUT | KEYED_WITH_SESSION, b"k", &[5, 0, 1]),
            Err((Some(7), ProtoError::Truncated { field: "session token" }))
        );
        assert_eq!(keyed(KEYED_GET | KEYED_WITH_SESSION, b"k", b""), Err((Some(7), ProtoError::BadKeyedOp(0x80))));
        assert_eq!(keyed(KEYED_DELETE, b"k", b"x"), Err((Some(7), ProtoError::TrailingBytes { len: 1 })));
        let mut b = vec![KIND_KEYED, 7, 0, 0, 0, 1, b't', KEYED_GET, 10, 0];
        b.extend_from_slice(b"short");
        assert_eq!(decode_request(&b), Err((Some(7), ProtoError::Truncated { field: "key" })));
    }

    #[test]
    fn a_results_answer_carries_each_distinct_message_once() {
        let refused =
            |message: &str| RecordResult::Refused { code: Code::Busy, retryable: true, message: message.into() };
        let mut f = Vec::new();
        encode_response(1, &Response::Results(vec![refused("full"); 100]), &mut f);
        // Head, two counts, one message, 100 refusals of 5 bytes each.
        assert_eq!(f.len(), 4 + 5 + 4 + (2 + 4) + 100 * 5);
        let long = "é".repeat(3000);
        f.clear();
        encode_response(2, &Response::Results(vec![refused(&long)]), &mut f);
        let Ok((2, Response::Results(r))) = decode_response(body(&f)) else { panic!("decodes") };
        let RecordResult::Refused { message, .. } = &r[0] else { panic!("refused") };
        assert_eq!(message.len(), 4096, "cut to 4096 bytes at a character boundary");
    }

    #[test]
    fn hostile_batch_frames_get_typed_errors() {
        let batch = |tail: &[u8]| {
            let mut b = vec![KIND_PRODUCE_BATCH, 6, 0, 0, 0, 1, b't'];
            b.extend_from_slice(tail);
            b
        };
        assert_eq!(decode_request(&batch(&[0, 0])), Err((Some(6), ProtoError::BadCount(0))));
        assert_eq!(decode_request(&batch(&[0x01, 0x04])), Err((Some(6), ProtoError::BadCount(1025))));
        assert_eq!(decode_request(&batch(&[1])), Err((Some(6), ProtoError::Truncated { field: "count" })));
        // Two records announced, one present: fails without allocating for the count.
        assert_eq!(
            decode_request(&batch(&[2, 0, 0, 1, 0, 0, 0, b'v'])),
            Err((Some(6), ProtoError::Truncated { field: "key flag" }))
        );
        // A value length past the end.
        assert_eq!(
            decode_request(&batch(&[1, 0, 0, 0xff, 0xff, 0xff, 0xff, b'v'])),
            Err((Some(6), ProtoError::Truncated { field: "value" }))
        );
        assert_eq!(decode_request(&batch(&[1, 0, 3])), Err((Some(6), ProtoError::BadKeyFlag(3))));
        assert_eq!(
            decode_request(&batch(&[1, 0, 0, 1, 0, 0, 0, b'v', 0])),
            Err((Some(6), ProtoError::TrailingBytes { len: 1 }))
        );

        let results = |tail: &[u8]| {
            let mut b = vec![KIND_RESULTS, 0, 0, 0, 0];
            b.extend_from_slice(tail);
            b
        };
        assert_eq!(decode_response(&results(&[0, 0, 0, 0])), Err(ProtoError::BadCount(0)));
        assert_eq!(decode_response(&results(&[1, 0, 0, 0, 2])), Err(ProtoError::BadStatus(2)));
        assert_eq!(
            decode_response(&results(&[1, 0, 0, 0, 1, 4, 1, 0, 0])),
            Err(ProtoError::BadMessageIndex { index: 0, messages: 0 })
        );
        assert_eq!(decode_response(&results(&[1, 0, 0, 0, 1, 4, 2, 0, 0])), Err(ProtoError::BadRetryable(2)));
        assert_eq!(decode_response(&results(&[1, 0, 0, 0, 1, 99, 1, 0, 0])), Err(ProtoError::BadCode(99)));
        assert_eq!(decode_response(&results(&[1, 0, 1, 0, 0x01, 0x10])), Err(ProtoError::MessageTooLong(4097)));
        assert_eq!(decode_response(&results(&[1, 0, 1, 0, 1, 0, 0xff])), Err(ProtoError::BadUtf8));
        // A message count past the end fails without allocating for it.
        assert_eq!(
            decode_response(&results(&[1, 0, 0xff, 0xff])),
            Err(ProtoError::Truncated { field: "message length" })
        );
        assert_eq!(decode_response(&results(&[1, 0, 0, 0, 0, 1])), Err(ProtoError::Truncated { field: "seq" }));
    }

    #[test]
    fn hostile_frames_get_typed_errors() {
        assert_eq!(
            frame_len(u32::MAX.to_le_bytes(), REQUEST_FRAME_MAX),
            Err(ProtoError::FrameTooLarge { len: u32::MAX as usize, max: REQUEST_FRAME_MAX })
        );
        assert_eq!(frame_len(3u32.to_le_bytes(), 100), Err(ProtoError::FrameTooShort { len: 3 }));
        assert_eq!(decode_request(&[9, 1, 0, 0, 0]), Err((Some(1), ProtoError::UnknownKind(9))));
        // A topic length past the end.
        assert_eq!(
            decode_request(&[KIND_PRODUCE, 2, 0, 0, 0, 200, b'a']),
            Err((Some(2), ProtoError::Truncated { field: "topic" }))
        );
        assert_eq!(decode_request(&[KIND_PRODUCE, 2, 0, 0, 0, 0]), Err((Some(2), ProtoError::BadTopicName)));
        assert_eq!(
            decode_request(&[KIND_PRODUCE, 5, 0, 0, 0, 1, b't', 2]),
            Err((Some(5), ProtoError::BadKeyFlag(2))),
            "one encoding per request: a flag other than 0 or 1 is refused"
        );
        // A key length past the end.
        assert_eq!(
            decode_request(&[KIND_PRODUCE, 3, 0, 0, 0, 1, b't', 1, 0xff, 0xff]),
            Err((Some(3), ProtoError::Truncated { field: "key" }))
        );
        let mut f = Vec::new();
        encode_request(
            4,
            &Request::Fetch(FetchRequest { topic: "t".into(), way: None, from: 0, max_records: 1, max_bytes: 1 }),
            &mut f,
        );
        f.push(0);
        assert_eq!(decode_request(&f[4..]), Err((Some(4), ProtoError::BadDirection(0))));
        f.pop();
        f.extend_from_slice(&[WAY_DOWN, 0]);
        assert_eq!(decode_request(&f[4..]), Err((Some(4), ProtoError::TrailingBytes { len: 1 })));
        // A count that claims more records than the frame holds fails without allocating them.
        let mut r = vec![KIND_RECORDS, 0, 0, 0, 0];
        r.extend_from_slice(&[0; 16]);
        r.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_response(&r), Err(ProtoError::Truncated { field: "seq" }));
    }
}

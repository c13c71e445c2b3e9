//! The value of a record in a keyed topic: one operation on the record's key.
//!
//! ```text
//! version u8 = 1
//! op      u8  0 put, 1 delete, 2 increment, 3 max, 4 add, 5 remove
//! flags   u8  bit0: written at a gateway (the side `cloud-wins` prefers); bit1: relayed
//!             (below); other bits 0
//! relayed only with bit1: origin varint, seq varint, hlc varint: the write's own dot and
//!         timestamp, where a gateway copies an edge's write into what goes down to
//!         every edge (`crate::keyed_topics`)
//! context varint n (<= MAX_CONTEXT), then n x (origin varint, seq varint), origins
//!         strictly increasing: the writes of this key its author had seen
//! body    put:        the value (the rest of the record, <= MAX_VALUE_BYTES)
//!         delete:     varint m (<= MAX_CONTEXT), then m x (origin varint, up varint,
//!                     down varint), origins strictly increasing: what the author had
//!                     counted of each origin (a counter's reset; m = 0 for other types)
//!         increment:  zigzag varint, the signed delta
//!         max:        zigzag varint, the value
//!         add/remove: the set element (the rest, <= MAX_ELEMENT_BYTES)
//! ```
//!
//! The dot (origin, sequence) and the HLC of a write are the record's own, not repeated
//! here, except in a relayed copy, whose record is the gateway's. Bytes come from other nodes' logs: every check returns an [`OpError`].

use std::fmt;

use super::vv::{Dot, VersionVector};
use crate::codec::{put_varint, ReadError, Reader, MAX_VALUE_BYTES};
use crate::hlc::Hlc;
use crate::types::NodeId;

/// The envelope version this module writes and accepts.
pub const OP_VERSION: u8 = 1;
/// The most origins a context or a counter's reset may name.
pub const MAX_CONTEXT: usize = 1024;
/// The largest set element.
pub const MAX_ELEMENT_BYTES: usize = 4096;

const FLAG_CLOUD: u8 = 1;
const FLAG_RELAYED: u8 = 2;
/// What marking a write relayed adds to its value at most: three varints.
pub const RELAYED_BYTES_MAX: usize = 30;

/// Of a relayed copy: the write it copies, named as its author's record named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relayed {
    pub dot: Dot,
    pub hlc: Hlc,
}

/// What a counter's deleter had counted of one origin: the sums of its increments and of
/// its decrements (each only grows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub origin: NodeId,
    pub up: u64,
    pub down: u64,
}

/// The operation of one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind<'a> {
    Put(&'a [u8]),
    /// A tombstone; for a counter, a reset of what its author had counted.
    Delete(Vec<Counted>),
    Increment(i64),
    Max(i64),
    Add(&'a [u8]),
    Remove(&'a [u8]),
}

impl OpKind<'_> {
    fn code(&self) -> u8 {
        match self {
            OpKind::Put(_) => 0,
            OpKind::Delete(_) => 1,
            OpKind::Increment(_) => 2,
            OpKind::Max(_) => 3,
            OpKind::Add(_) => 4,
            OpKind::Remove(_) => 5,
        }
    }

    /// The operation's name, as the docs and errors spell it.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Put(_) => "put",
            OpKind::Delete(_) => "delete",
            OpKind::Increment(_) => "increment",
            OpKind::Max(_) => "max",
            OpKind::Add(_) => "add",
            OpKind::Remove(_) => "remove",
        }
    }
}

/// One write's operation with what its author had seen of the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedOp<'a> {
    pub context: VersionVector,
    /// Written at a gateway: the side `cloud-wins` prefers and `edge-wins` yields.
    pub cloud: bool,
    /// A gateway's copy of another node's write (`None`: the record is the write).
    pub relayed: Option<Relayed>,
    pub kind: OpKind<'a>,
}

/// Why a keyed record's value is not an operation. Offsets from the value's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    Read(ReadError),
    Version(u8),
    UnknownOp(u8),
    Flags(u8),
    /// A context or reset names more origins than [`MAX_CONTEXT`] (or than bytes remain).
    TooManyOrigins {
        at: usize,
        count: u64,
    },
    /// Origins of a context or reset are not strictly increasing.
    OriginsOutOfOrder {
        at: usize,
    },
    /// A value or element longer than its limit.
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Bytes after an operation that ends by itself.
    Trailing {
        at: usize,
    },
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WHAT: &str = "not a keyed operation (was it written by an Outpost of another version?)";
        match self {
            OpError::Read(e) => write!(f, "{e}: {WHAT}"),
            OpError::Version(v) => write!(f, "keyed operation version {v}, this build reads {OP_VERSION}"),
            OpError::UnknownOp(o) => write!(f, "unknown keyed operation {o}: {WHAT}"),
            OpError::Flags(b) => write!(f, "keyed operation flags {b:#04x} set bits this build does not know: {WHAT}"),
            OpError::TooManyOrigins { at, count } => {
                write!(f, "keyed operation names {count} origins at byte {at}, at most {MAX_CONTEXT}: {WHAT}")
            }
            OpError::OriginsOutOfOrder { at } => {
                write!(f, "keyed operation's origins are not in increasing order at byte {at}: {WHAT}")
            }
            OpError::TooLarge { what, len, max } => write!(f, "keyed {what} of {len} bytes, at most {max}"),
            OpError::Trailing { at } => write!(f, "bytes after the keyed operation at byte {at}: {WHAT}"),
        }
    }
}

impl std::error::Error for OpError {}

impl From<ReadError> for OpError {
    fn from(e: ReadError) -> OpError {
        OpError::Read(e)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl<'a> KeyedOp<'a> {
    /// Appends the operation's bytes (a record's value).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(OP_VERSION);
        out.push(self.kind.code());
        let relayed = if self.relayed.is_some() { FLAG_RELAYED } else { 0 };
        out.push(if self.cloud { FLAG_CLOUD } else { 0 } | relayed);
        if let Some(r) = self.relayed {
            put_varint(out, r.dot.origin.0);
            put_varint(out, r.dot.seq);
            put_varint(out, r.hlc.0);
        }
        put_varint(out, self.context.len() as u64);
        for d in self.context.iter() {
            put_varint(out, d.origin.0);
            put_varint(out, d.seq);
        }
        match &self.kind {
            OpKind::Put(v) | OpKind::Add(v) | OpKind::Remove(v) => out.extend_from_slice(v),
            OpKind::Delete(counted) => {
                put_varint(out, counted.len() as u64);
                for c in counted {
                    put_varint(out, c.origin.0);
                    put_varint(out, c.up);
                    put_varint(out, c.down);
                }
            }
            OpKind::Increment(n) | OpKind::Max(n) => put_varint(out, zigzag(*n)),
        }
    }

    /// Decodes a record's value; checks everything [`KeyedOp::encode`] promises.
    pub fn decode(bytes: &'a [u8]) -> Result<KeyedOp<'a>, OpError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != OP_VERSION {
            return Err(OpError::Version(version));
        }
        let code = r.u8()?;
        let flags = r.u8()?;
        if flags & !(FLAG_CLOUD | FLAG_RELAYED) != 0 {
            return Err(OpError::Flags(flags));
        }
        let relayed = if flags & FLAG_RELAYED != 0 {
            let dot = Dot { origin: NodeId(r.varint()?), seq: r.varint()? };
            Some(Relayed { dot, hlc: Hlc(r.varint()?) })
        } else {
            None
        };
        let mut context = VersionVector::new();
        let n = origins_count(&mut r, 2)?;
        let mut last = None;
        for _ in 0..n {
            let at = r.position();
            let origin = NodeId(r.varint()?);
            if last.is_some_and(|l| l >= origin) {
                return Err(OpError::OriginsOutOfOrder { at });
            }
            last = Some(origin);
            context.add(Dot { origin, seq: r.varint()? });
        }
        let rest = |r: &mut Reader<'a>, what: &'static str, max: usize| -> Result<&'a [u8], OpError> {
            let len = r.remaining();
            if len > max {
                return Err(OpError::TooLarge { what, len, max });
            }
            Ok(r.bytes(len)?)
        };
        let kind = match code {
            0 => OpKind::Put(rest(&mut r, "value", MAX_VALUE_BYTES)?),
            1 => {
                let m = origins_count(&mut r, 3)?;
                let mut counted: Vec<Counted> = Vec::with_capacity(m);
                for _ in 0..m {
                    let at = r.position();
                    let origin = NodeId(r.varint()?);
                    if counted.last().is_some_and(|c| c.origin >= origin) {
                        return Err(OpError::OriginsOutOfOrder { at });
                    }
                    counted.push(Counted { origin, up: r.varint()?, down: r.varint()? });
                }
                OpKind::Delete(counted)
            }
            2 | 3 => {
                let n = unzigzag(r.varint()?);
                if code == 2 {
                    OpKind::Increment(n)
                } else {
                    OpKind::Max(n)
                }
            }
            4 => OpKind::Add(rest(&mut r, "set element", MAX_ELEMENT_BYTES)?),
            5 => OpKind::Remove(rest(&mut r, "set element", MAX_ELEMENT_BYTES)?),
            other => return Err(OpError::UnknownOp(other)),
        };
        if !r.is_empty() {
            return Err(OpError::Trailing { at: r.position() });
        }
        Ok(KeyedOp { context, cloud: flags & FLAG_CLOUD != 0, relayed, kind })
    }
}

/// A count of origins that follows, each taking at least `min_entry` bytes.
fn origins_count(r: &mut Reader<'_>, min_entry: usize) -> Result<usize, OpError> {
    let at = r.position();
    let count = r.varint()?;
    if count > MAX_CONTEXT as u64 || count as usize * min_entry > r.remaining() {
        return Err(OpError::TooManyOrigins { at, count });
    }
    Ok(count as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> VersionVector {
        [Dot { origin: NodeId(1), seq: 7 }, Dot { origin: NodeId(300), seq: 1 << 40 }].into_iter().collect()
    }

    #[test]
    fn every_operation_decodes_to_what_was_encoded() {
        let counted =
            vec![Counted { origin: NodeId(2), up: 9, down: 4 }, Counted { origin: NodeId(5), up: 0, down: 1 }];
        for kind in [
            OpKind::Put(b"price=4.20"),
            OpKind::Put(b""),
            OpKind::Delete(vec![]),
            OpKind::Delete(counted),
            OpKind::Increment(-3),
            OpKind::Increment(i64::MIN),
            OpKind::Max(i64::MAX),
            OpKind::Add(b"sku-1"),
            OpKind::Remove(b"sku-1"),
        ] {
            let copy = Relayed { dot: Dot { origin: NodeId(9), seq: 1 << 33 }, hlc: Hlc(u64::MAX) };
            for (cloud, relayed) in [(false, None), (true, None), (false, Some(copy)), (true, Some(copy))] {
                let op = KeyedOp { context: ctx(), cloud, relayed, kind: kind.clone() };
                let mut bytes = Vec::new();
                op.encode(&mut bytes);
                assert_eq!(KeyedOp::decode(&bytes), Ok(op), "{}", kind.name());
            }
        }
    }

    #[test]
    fn hostile_operations_are_refused_with_what_was_wrong() {
        let mut ok = Vec::new();
        KeyedOp { context: ctx(), cloud: false, relayed: None, kind: OpKind::Increment(1) }.encode(&mut ok);
        let refuse = |bytes: &[u8]| KeyedOp::decode(bytes).unwrap_err();
        assert_eq!(refuse(&[2, 0, 0, 0]), OpError::Version(2));
        assert_eq!(refuse(&[1, 6, 0, 0]), OpError::UnknownOp(6));
        assert_eq!(refuse(&[1, 0, 4, 0]), OpError::Flags(4));
        assert!(matches!(refuse(&[1, 0, 2, 1, 1]), OpError::Read(_)), "a relayed copy without its timestamp");
        assert!(matches!(refuse(&[1, 0]), OpError::Read(_)));
        assert!(matches!(refuse(&[1, 0, 0, 0x80, 0x10]), OpError::TooManyOrigins { at: 3, count: 2048 }));
        assert!(matches!(refuse(&[1, 0, 0, 3, 1, 1]), OpError::TooManyOrigins { .. }), "more origins than bytes");
        assert_eq!(refuse(&[1, 4, 0, 2, 5, 0, 5, 0]), OpError::OriginsOutOfOrder { at: 6 });
        assert_eq!(refuse(&[1, 1, 0, 0, 2, 5, 0, 0, 4, 0, 0]), OpError::OriginsOutOfOrder { at: 8 });
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(refuse(&trailing), OpError::Trailing { at: ok.len() });
        let mut big = vec![1, 4, 0, 0];
        big.extend(std::iter::repeat_n(b'x', MAX_ELEMENT_BYTES + 1));
        assert!(matches!(refuse(&big), OpError::TooLarge { what: "set element", .. }));
        for cut in 0..ok.len() {
            assert!(KeyedOp::decode(&ok[..cut]).is_err(), "cut at {cut}");
        }
    }
}

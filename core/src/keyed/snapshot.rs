//! Snapshots of one topic's keyed state, so that a node may checkpoint its keyed states and
//! recovery load them instead of replaying the whole log.
//!
//! A snapshot holds what the writes made of the state: every key with its entry, the
//! conflict log and the count of conflicts. Not the merge (the caller attaches a `custom`
//! topic's with [`KeyedState::with_merge`]), not the limits (the topic's configuration
//! gives them, and may have changed since), and of the strategy only a byte to check
//! against the topic's. Decoding recomputes everything the state accounts as `apply` left
//! it, and checks everything the state relies on: the bytes come from a file that may be
//! torn or corrupt.
//!
//! ```text
//! state     strategy u8: 0 last-write-wins, 1 first-write-wins, 2 cloud-wins, 3 edge-wins,
//!                        4 keep-both, 5 counter, 6 max, 7 add-wins-set, 8 custom
//!           conflicts_total u64
//!           n u32, n × key, keys strictly increasing (byte order)
//!           c u32 (<= conflicts_total), c × conflict, oldest first (none but for a
//!           register's strategy)
//! key       len u32 (<= MAX_KEY_BYTES), the key, tag u8 (the strategy's type), then
//!   0 register  seen vector, m u32, m × version, origins strictly increasing (dot order,
//!               one version per origin), every dot covered by seen
//!   1 counter   seen vector, m u32, m × (origin u64, up u64, down u64, reset_up u64,
//!               reset_down u64), origins strictly increasing
//!   2 max       seen vector, removed vector, m u32, m × (origin u64, s u32 (>= 1),
//!               s × (seq u64, value i64)), origins strictly increasing; in a stack
//!               sequences increase and values decrease, every dot covered by seen and
//!               not by removed
//!   3 set       seen vector, removed_all vector, m u32, m × element, elements strictly
//!               increasing (byte order)
//! vector    n u32, n × (origin u64, seq u64), origins strictly increasing
//! version   origin u64, seq u64, hlc u64, flags u8 (bit0: written at a gateway; bit1: it
//!           has a value; other bits 0), with bit1: len u32 (<= MAX_VALUE_BYTES), the value
//! element   len u32 (<= MAX_ELEMENT_BYTES), the element, a u32, a × add (origin u64,
//!           seq u64), origins strictly increasing, each covered by seen and by neither
//!           removal vector; removed vector; not both a = 0 and removed empty
//! conflict  len u32 (<= MAX_KEY_BYTES), the key, v u32 (>= 2), v × (origin u64, seq u64,
//!           hlc u64, deleted u8 0|1), origins strictly increasing; winner u32: the index
//!           of the version answered, u32::MAX for none (keep-both, custom)
//! ```
//! Integers are little-endian; an HLC is its `u64`.
//!
//! A snapshot is never larger than what its state accounts, plus [`HEADER_BYTES`]: every
//! part of the encoding takes at most what the state accounts for it (checked below, at
//! compile time), so [`encoded_bytes_max`] follows from the topic's limits.

use std::fmt;
use std::mem::size_of;

use super::op::MAX_ELEMENT_BYTES;
use super::sorted::SortedMap;
use super::vv::{self, Dot, VersionVector};
use super::{Conflict, Element, Entry, KeyedLimits, KeyedState, Strategy, Tally, Version};
use super::{CONFLICT_BYTES, KEY_BYTES, MAP_BYTES};
use crate::codec::{ReadError, Reader, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::hlc::Hlc;
use crate::types::{NodeId, Seq};

/// What a snapshot holds beside its keys and conflicts: the strategy, `conflicts_total`
/// and the two counts.
pub const HEADER_BYTES: u64 = 1 + 8 + 4 + 4;

/// A key's bytes beside the key itself and its entry's items: its length, its tag, and
/// the counts of up to three vectors and maps (a max register's or a set's).
const KEY_FIXED_LEN: u64 = 4 + 1 + 3 * 4;
/// The shortest key: empty, with two empty vectors (a register's or a counter's).
const KEY_MIN_LEN: u64 = 4 + 1 + 2 * 4;
const VECTOR_ENTRY_LEN: u64 = 16;
/// A version beside its value: dot, HLC, flags, and the value's length when it has one.
const VERSION_FIXED_LEN: u64 = 16 + 8 + 1;
const VALUE_LEN_LEN: u64 = 4;
const TALLY_LEN: u64 = 8 + 4 * 8;
/// A stack beside its entries: its origin and their count.
const STACK_FIXED_LEN: u64 = 8 + 4;
const STACK_ENTRY_LEN: u64 = 16;
/// An element beside its bytes, adds and removals' vector entries: three lengths.
const ELEMENT_FIXED_LEN: u64 = 3 * 4;
const ADD_LEN: u64 = 16;
/// A conflict beside its key and versions: the key's length, the versions' count, the
/// winner.
const CONFLICT_FIXED_LEN: u64 = 3 * 4;
const CONFLICT_VERSION_LEN: u64 = 16 + 8 + 1;

// The bound: each part's encoding is at most what the state accounts for it, so a snapshot
// takes at most `HEADER_BYTES` + what its keys account (`KeyedState::bytes`) + what its
// conflict log accounts (`conflict_log_bytes`). A vector of `n` slots accounts at least
// twice its slots (`vec_cost`: slot × max(2n, 4)), a version vector `ENTRY_BYTES` an entry;
// bytes a part owns (keys, values, elements) are accounted as their length and encoded
// once, after a length counted in the part's fixed bytes. `MAP_BYTES` is accounted and
// encodes nothing.
const _: () = {
    assert!(KEY_FIXED_LEN <= KEY_BYTES);
    assert!(VECTOR_ENTRY_LEN <= vv::ENTRY_BYTES);
    assert!(VERSION_FIXED_LEN + VALUE_LEN_LEN <= 2 * size_of::<Version>() as u64);
    assert!(TALLY_LEN <= 2 * size_of::<(NodeId, Tally)>() as u64);
    assert!(STACK_FIXED_LEN <= 2 * size_of::<(NodeId, Vec<(Seq, i64)>)>() as u64);
    assert!(STACK_ENTRY_LEN <= 2 * size_of::<(Seq, i64)>() as u64);
    assert!(ELEMENT_FIXED_LEN <= 2 * size_of::<(Vec<u8>, Element)>() as u64);
    assert!(ADD_LEN <= 2 * size_of::<Dot>() as u64);
    assert!(CONFLICT_FIXED_LEN <= CONFLICT_BYTES);
    assert!(CONFLICT_VERSION_LEN <= 2 * size_of::<(Dot, Hlc, bool)>() as u64);
};

const VERSION_CLOUD: u8 = 1;
const VERSION_VALUE: u8 = 2;
/// A conflict's winner when the strategy answers none.
const NO_WINNER: u32 = u32::MAX;

/// Why a snapshot does not decode into the topic's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// It ends before its state does.
    Truncated(ReadError),
    /// Written for a topic of another strategy (`found`, its byte): the configuration
    /// changed since.
    Strategy { found: u8, expected: Strategy },
    /// Bytes no state encodes: a bad tag or flag, items out of order or repeated, a count
    /// larger than the bytes left, a length over its limit, a broken invariant.
    Malformed(&'static str),
    /// The state accounts more than the topic's limit now allows (`bytes`: what it had
    /// accounted by the key where decoding stopped): the limit was lowered.
    OverLimit { bytes: u64, limit: u64 },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REBUILD: &str = "rebuild the state from the topic's log instead";
        match self {
            SnapshotError::Truncated(e) => write!(f, "keyed state snapshot truncated ({e}): {REBUILD}"),
            SnapshotError::Strategy { found, expected } => match strategy_of(*found) {
                Some(found) => write!(
                    f,
                    "keyed state snapshot of a {found} topic, and the topic is {expected} now (its conflict \
                     strategy changed): {REBUILD}"
                ),
                None => write!(f, "keyed state snapshot of an unknown strategy ({found}): {REBUILD}"),
            },
            SnapshotError::Malformed(what) => write!(f, "keyed state snapshot malformed ({what}): {REBUILD}"),
            SnapshotError::OverLimit { bytes, limit } => write!(
                f,
                "keyed state snapshot holds more than the topic's keyed state limit of {limit} bytes (at least \
                 {bytes}): the limit was lowered below what the state holds; raise keyed_state_max back"
            ),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<ReadError> for SnapshotError {
    fn from(e: ReadError) -> SnapshotError {
        SnapshotError::Truncated(e)
    }
}

/// Appends the encoding of `state`: every key with its entry, the conflict log (oldest
/// first) and `conflicts_total`. (Not the merge function, not the limits, not the strategy
/// beyond one byte to check.)
pub fn encode(state: &KeyedState, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(strategy_code(state.strategy));
    out.extend_from_slice(&state.conflicts_total.to_le_bytes());
    put_len(out, state.keys.len());
    for (key, entry) in &state.keys {
        put_bytes(out, key);
        encode_entry(entry, out);
    }
    put_len(out, state.conflicts.len());
    for c in &state.conflicts {
        put_bytes(out, &c.key);
        put_len(out, c.versions.len());
        for &(dot, hlc, deleted) in &c.versions {
            put_dot(out, dot);
            out.extend_from_slice(&hlc.0.to_le_bytes());
            out.push(u8::from(deleted));
        }
        let winner = c.winner.map_or(NO_WINNER, |w| {
            let at = c.versions.iter().position(|&(dot, _, _)| dot == w).expect("a winner is one of the versions");
            u32::try_from(at).expect("counted in a u32 above")
        });
        out.extend_from_slice(&winner.to_le_bytes());
    }
    let written = (out.len() - start) as u64;
    debug_assert!(
        written <= state.bytes() + state.conflict_log_bytes() + HEADER_BYTES,
        "a snapshot of {written} bytes for a state accounting {} and a log {}",
        state.bytes(),
        state.conflict_log_bytes()
    );
}

/// The most bytes [`encode`] writes for any state within `limits`
/// (`state.bytes() <= limits.state_bytes_max`,
/// `conflict_log_bytes() <= limits.conflict_log_bytes_max`).
pub fn encoded_bytes_max(limits: KeyedLimits) -> u64 {
    limits.state_bytes_max.saturating_add(limits.conflict_log_bytes_max).saturating_add(HEADER_BYTES)
}

/// Decodes one state from `r` (which may hold more bytes after it: the reader is left just
/// past this state) for a topic of `strategy` with `limits`. The caller attaches a custom
/// merge with [`KeyedState::with_merge`] afterwards.
///
/// Conflicts past a lowered `limits.conflict_log_bytes_max` are dropped, the oldest first,
/// as the log drops them; a state past a lowered `limits.state_bytes_max` is refused
/// ([`SnapshotError::OverLimit`]) at the key that passes it.
pub fn decode(r: &mut Reader<'_>, strategy: Strategy, limits: KeyedLimits) -> Result<KeyedState, SnapshotError> {
    let found = r.u8()?;
    if found != strategy_code(strategy) {
        return Err(SnapshotError::Strategy { found, expected: strategy });
    }
    let mut state = KeyedState::new(strategy, limits);
    state.conflicts_total = r.u64()?;
    let n = count(r, KEY_MIN_LEN)?;
    let mut last: Option<&[u8]> = None;
    for _ in 0..n {
        let key = bytes(r, MAX_KEY_BYTES, "a key longer than codec::MAX_KEY_BYTES")?;
        if last.is_some_and(|last| last >= key) {
            return Err(SnapshotError::Malformed("keys out of order or repeated"));
        }
        last = Some(key);
        let entry = decode_entry(r, strategy)?;
        state.bytes += KEY_BYTES + key.len() as u64 + entry.cost();
        // Stopping here keeps what decoding allocates near what the topic plans for.
        if MAP_BYTES + state.bytes > limits.state_bytes_max {
            return Err(SnapshotError::OverLimit { bytes: MAP_BYTES + state.bytes, limit: limits.state_bytes_max });
        }
        state.keys.insert(key.to_vec(), entry);
    }
    let c = count(r, CONFLICT_FIXED_LEN)?;
    if c > 0 && !strategy.is_register() {
        return Err(SnapshotError::Malformed("conflicts in a topic of a convergent type"));
    }
    if c as u64 > state.conflicts_total {
        return Err(SnapshotError::Malformed("more conflicts logged than counted"));
    }
    for _ in 0..c {
        let conflict = decode_conflict(r, strategy)?;
        state.log(conflict);
    }
    Ok(state)
}

/// The byte of `strategy`: fixed by the format, whatever order `Strategy` lists them in.
fn strategy_code(strategy: Strategy) -> u8 {
    match strategy {
        Strategy::LastWriteWins => 0,
        Strategy::FirstWriteWins => 1,
        Strategy::CloudWins => 2,
        Strategy::EdgeWins => 3,
        Strategy::KeepBoth => 4,
        Strategy::Counter => 5,
        Strategy::Max => 6,
        Strategy::AddWinsSet => 7,
        Strategy::Custom => 8,
    }
}

fn strategy_of(code: u8) -> Option<Strategy> {
    Strategy::NAMED.into_iter().find(|&s| strategy_code(s) == code)
}

fn tag(entry: &Entry) -> u8 {
    match entry {
        Entry::Register { .. } => 0,
        Entry::Counter { .. } => 1,
        Entry::Max { .. } => 2,
        Entry::Set { .. } => 3,
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Keys, values and elements are shorter than 4 GiB, and 2^32 items of anything would
    // account at least 64 GiB of state.
    let n = u32::try_from(n).expect("a state holds fewer than 2^32 of anything");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_dot(out: &mut Vec<u8>, dot: Dot) {
    out.extend_from_slice(&dot.origin.0.to_le_bytes());
    out.extend_from_slice(&dot.seq.to_le_bytes());
}

fn put_vector(out: &mut Vec<u8>, v: &VersionVector) {
    put_len(out, v.len());
    for dot in v.iter() {
        put_dot(out, dot);
    }
}

fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    out.push(tag(entry));
    match entry {
        Entry::Register { seen, versions } => {
            put_vector(out, seen);
            put_len(out, versions.len());
            for v in versions {
                put_dot(out, v.dot);
                out.extend_from_slice(&v.hlc.0.to_le_bytes());
                let cloud = if v.cloud { VERSION_CLOUD } else { 0 };
                match &v.value {
                    Some(value) => {
                        out.push(cloud | VERSION_VALUE);
                        put_bytes(out, value);
                    }
                    None => out.push(cloud),
                }
            }
        }
        Entry::Counter { seen, tallies } => {
            put_vector(out, seen);
            put_len(out, tallies.len());
            for (origin, t) in tallies.iter() {
                for n in [origin.0, t.up, t.down, t.reset_up, t.reset_down] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
        Entry::Max { seen, removed, stacks } => {
            put_vector(out, seen);
            put_vector(out, removed);
            put_len(out, stacks.len());
            for (origin, stack) in stacks.iter() {
                out.extend_from_slice(&origin.0.to_le_bytes());
                put_len(out, stack.len());
                for &(seq, value) in stack {
                    out.extend_from_slice(&seq.to_le_bytes());
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }
        }
        Entry::Set { seen, removed_all, elements, elements_cost: _ } => {
            put_vector(out, seen);
            put_vector(out, removed_all);
            put_len(out, elements.len());
            for (element, e) in elements.iter() {
                put_bytes(out, element);
                put_len(out, e.adds.len());
                for &add in &e.adds {
                    put_dot(out, add);
                }
                put_vector(out, &e.removed);
            }
        }
    }
}

/// A count of items that follow, each taking at least `min_len` bytes; refused when the
/// bytes left could not hold them, so that what is allocated for them never passes what
/// the snapshot could fill.
fn count(r: &mut Reader<'_>, min_len: u64) -> Result<usize, SnapshotError> {
    let n = r.u32()?;
    if u64::from(n) * min_len > r.remaining() as u64 {
        return Err(SnapshotError::Malformed("a count larger than the bytes left"));
    }
    Ok(n as usize)
}

/// Bytes after their `u32` length, of at most `max`.
fn bytes<'a>(r: &mut Reader<'a>, max: usize, too_long: &'static str) -> Result<&'a [u8], SnapshotError> {
    let len = r.u32()? as usize;
    if len > max {
        return Err(SnapshotError::Malformed(too_long));
    }
    Ok(r.bytes(len)?)
}

fn dot(r: &mut Reader<'_>) -> Result<Dot, SnapshotError> {
    Ok(Dot { origin: NodeId(r.u64()?), seq: r.u64()? })
}

fn vector(r: &mut Reader<'_>) -> Result<VersionVector, SnapshotError> {
    let n = count(r, VECTOR_ENTRY_LEN)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let d = dot(r)?;
        entries.push((d.origin, d.seq));
    }
    VersionVector::from_sorted(entries).ok_or(SnapshotError::Malformed("a vector's origins out of order or repeated"))
}

/// An entry of the type of `strategy`.
fn decode_entry(r: &mut Reader<'_>, strategy: Strategy) -> Result<Entry, SnapshotError> {
    let expected = Entry::new(strategy);
    if r.u8()? != tag(&expected) {
        return Err(SnapshotError::Malformed("an entry of another type than the topic's strategy"));
    }
    match expected {
        Entry::Register { .. } => decode_register(r),
        Entry::Counter { .. } => decode_counter(r),
        Entry::Max { .. } => decode_max(r),
        Entry::Set { .. } => decode_set(r),
    }
}

fn decode_register(r: &mut Reader<'_>) -> Result<Entry, SnapshotError> {
    let seen = vector(r)?;
    let m = count(r, VERSION_FIXED_LEN)?;
    let mut versions: Vec<Version> = Vec::with_capacity(m);
    for _ in 0..m {
        let dot = dot(r)?;
        let hlc = Hlc(r.u64()?);
        let flags = r.u8()?;
        if flags & !(VERSION_CLOUD | VERSION_VALUE) != 0 {
            return Err(SnapshotError::Malformed("version flags this build does not know"));
        }
        let value = if flags & VERSION_VALUE != 0 {
            Some(bytes(r, MAX_VALUE_BYTES, "a value longer than codec::MAX_VALUE_BYTES")?.to_vec())
        } else {
            None
        };
        // In dot order with one version per origin (a write overwrites its origin's
        // earlier one): origins strictly increase.
        if versions.last().is_some_and(|v| v.dot.origin >= dot.origin) {
            return Err(SnapshotError::Malformed("versions out of dot order, or two of one origin"));
        }
        // `apply` takes a write its key has not seen to overwrite its origin's version.
        if !seen.covers(dot) {
            return Err(SnapshotError::Malformed("a version its key has not seen"));
        }
        versions.push(Version { dot, hlc, cloud: flags & VERSION_CLOUD != 0, value });
    }
    Ok(Entry::Register { seen, versions })
}

fn decode_counter(r: &mut Reader<'_>) -> Result<Entry, SnapshotError> {
    let seen = vector(r)?;
    let m = count(r, TALLY_LEN)?;
    let mut tallies = Vec::with_capacity(m);
    for _ in 0..m {
        let origin = NodeId(r.u64()?);
        let tally = Tally { up: r.u64()?, down: r.u64()?, reset_up: r.u64()?, reset_down: r.u64()? };
        tallies.push((origin, tally));
    }
    let tallies =
        SortedMap::from_sorted(tallies).ok_or(SnapshotError::Malformed("tallies out of origin order or repeated"))?;
    Ok(Entry::Counter { seen, tallies })
}

fn decode_max(r: &mut Reader<'_>) -> Result<Entry, SnapshotError> {
    let seen = vector(r)?;
    let removed = vector(r)?;
    let m = count(r, STACK_FIXED_LEN)?;
    let mut stacks = Vec::with_capacity(m);
    for _ in 0..m {
        let origin = NodeId(r.u64()?);
        let s = count(r, STACK_ENTRY_LEN)?;
        // A stack left empty goes (`apply`), and a key with one is never collected.
        if s == 0 {
            return Err(SnapshotError::Malformed("an empty stack"));
        }
        let mut stack: Vec<(Seq, i64)> = Vec::with_capacity(s);
        for _ in 0..s {
            let seq = r.u64()?;
            let value = i64::from_le_bytes(r.array()?);
            // What makes the stack's first value its origin's maximum.
            if stack.last().is_some_and(|&(last_seq, last_value)| last_seq >= seq || last_value <= value) {
                return Err(SnapshotError::Malformed("a stack whose sequences do not increase or values decrease"));
            }
            let dot = Dot { origin, seq };
            if !seen.covers(dot) || removed.covers(dot) {
                return Err(SnapshotError::Malformed("a value its key has not seen, or one a deletion saw"));
            }
            stack.push((seq, value));
        }
        stacks.push((origin, stack));
    }
    let stacks =
        SortedMap::from_sorted(stacks).ok_or(SnapshotError::Malformed("stacks out of origin order or repeated"))?;
    Ok(Entry::Max { seen, removed, stacks })
}

fn decode_set(r: &mut Reader<'_>) -> Result<Entry, SnapshotError> {
    let seen = vector(r)?;
    let removed_all = vector(r)?;
    let m = count(r, ELEMENT_FIXED_LEN)?;
    let mut elements = Vec::with_capacity(m);
    let mut elements_cost = 0;
    for _ in 0..m {
        let element = bytes(r, MAX_ELEMENT_BYTES, "a set element longer than MAX_ELEMENT_BYTES")?;
        let a = count(r, ADD_LEN)?;
        let mut adds: Vec<Dot> = Vec::with_capacity(a);
        for _ in 0..a {
            let add = dot(r)?;
            // At most one per origin (its latest), in origin order.
            if adds.last().is_some_and(|last| last.origin >= add.origin) {
                return Err(SnapshotError::Malformed("an element's adds out of origin order, or two of one origin"));
            }
            if !seen.covers(add) {
                return Err(SnapshotError::Malformed("an add its key has not seen"));
            }
            adds.push(add);
        }
        let removed = vector(r)?;
        if adds.iter().any(|&add| removed.covers(add) || removed_all.covers(add)) {
            return Err(SnapshotError::Malformed("an add a removal saw"));
        }
        // `apply` drops an element with nothing to answer and nothing to remember.
        if adds.is_empty() && removed.is_empty() {
            return Err(SnapshotError::Malformed("an element neither added nor removed"));
        }
        let e = Element { adds, removed };
        elements_cost += e.cost(element);
        elements.push((element.to_vec(), e));
    }
    let elements =
        SortedMap::from_sorted(elements).ok_or(SnapshotError::Malformed("set elements out of order or repeated"))?;
    Ok(Entry::Set { seen, removed_all, elements, elements_cost })
}

fn decode_conflict(r: &mut Reader<'_>, strategy: Strategy) -> Result<Conflict, SnapshotError> {
    let key = bytes(r, MAX_KEY_BYTES, "a conflict's key longer than codec::MAX_KEY_BYTES")?.to_vec();
    let v = count(r, CONFLICT_VERSION_LEN)?;
    if v < 2 {
        return Err(SnapshotError::Malformed("a conflict of fewer than two versions"));
    }
    let mut versions: Vec<(Dot, Hlc, bool)> = Vec::with_capacity(v);
    for _ in 0..v {
        let dot = dot(r)?;
        let hlc = Hlc(r.u64()?);
        let deleted = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(SnapshotError::Malformed("a conflict's version neither deleted nor not")),
        };
        if versions.last().is_some_and(|&(last, _, _)| last.origin >= dot.origin) {
            return Err(SnapshotError::Malformed("a conflict's versions out of dot order, or two of one origin"));
        }
        versions.push((dot, hlc, deleted));
    }
    let winner = match r.u32()? {
        NO_WINNER => None,
        at => match versions.get(at as usize) {
            Some(&(dot, _, _)) => Some(dot),
            None => return Err(SnapshotError::Malformed("a conflict's winner is none of its versions")),
        },
    };
    // `keep-both` keeps them all and `custom` merges them; the other registers answer one.
    if winner.is_none() != matches!(strategy, Strategy::KeepBoth | Strategy::Custom) {
        return Err(SnapshotError::Malformed("a conflict's winner does not fit the strategy"));
    }
    Ok(Conflict { key, strategy, versions, winner })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::{Counted, KeyedError, KeyedOp, Merge, MergeError, MergeFn, OpKind, Value, Write};
    use proptest::prelude::{any, prop_oneof, proptest, Just, ProptestConfig};
    use proptest::strategy::Strategy as _;

    const ROOMY: KeyedLimits = KeyedLimits { state_bytes_max: 1 << 24, conflict_log_bytes_max: 1 << 16 };

    fn dot(origin: u64, seq: u64) -> Dot {
        Dot { origin: NodeId(origin), seq }
    }

    /// A write of `kind` to `key` by `origin` (origin 1 is the gateway) at `seq`, having
    /// seen `seen` (origin, seq pairs) of the key.
    fn w<'a>(key: &'a [u8], origin: u64, seq: u64, hlc: u64, seen: &[(u64, u64)], kind: OpKind<'a>) -> Write<'a> {
        let context = seen.iter().map(|&(o, s)| dot(o, s)).collect();
        Write {
            key,
            dot: dot(origin, seq),
            hlc: Hlc(hlc),
            op: KeyedOp { context, cloud: origin == 1, relayed: None, kind },
        }
    }

    fn delete() -> OpKind<'static> {
        OpKind::Delete(vec![])
    }

    fn counted(origin: u64, up: u64, down: u64) -> Counted {
        Counted { origin: NodeId(origin), up, down }
    }

    /// Writes of three origins of the strategy's type: concurrent ones (conflicts,
    /// siblings, ties of HLC), overwrites, deletions.
    fn history(strategy: Strategy) -> Vec<Write<'static>> {
        match strategy {
            Strategy::Counter => vec![
                w(b"visits", 1, 0, 1, &[], OpKind::Increment(5)),
                w(b"visits", 2, 0, 2, &[], OpKind::Increment(-2)),
                w(b"visits", 1, 1, 3, &[], OpKind::Increment(4)),
                // A reset of what origin 3 had counted: origin 1's first 5 and origin 2's -2.
                w(b"visits", 3, 0, 4, &[], OpKind::Delete(vec![counted(1, 5, 0), counted(2, 0, 2)])),
                w(b"visits", 2, 1, 5, &[], OpKind::Increment(7)),
                w(b"stock", 3, 1, 6, &[], OpKind::Increment(i64::MAX)),
                w(b"stock", 1, 2, 7, &[], OpKind::Increment(i64::MIN)),
                w(b"reset", 2, 2, 8, &[], OpKind::Increment(3)),
                w(b"reset", 3, 2, 9, &[], OpKind::Delete(vec![counted(2, 3, 0)])),
            ],
            Strategy::Max => vec![
                w(b"temp", 1, 0, 1, &[], OpKind::Max(10)),
                w(b"temp", 1, 1, 2, &[], OpKind::Max(7)),
                w(b"temp", 1, 2, 3, &[], OpKind::Max(3)),
                w(b"temp", 2, 0, 4, &[], OpKind::Max(12)),
                w(b"temp", 3, 0, 5, &[(2, 0)], delete()),
                w(b"temp", 2, 1, 6, &[], OpKind::Max(5)),
                w(b"humidity", 2, 2, 7, &[], OpKind::Max(-4)),
                w(b"humidity", 3, 1, 8, &[(2, 2)], delete()),
            ],
            Strategy::AddWinsSet => vec![
                w(b"cart", 1, 0, 1, &[], OpKind::Add(b"milk")),
                w(b"cart", 2, 0, 2, &[], OpKind::Add(b"milk")),
                w(b"cart", 3, 0, 3, &[(1, 0)], OpKind::Remove(b"milk")),
                w(b"cart", 1, 1, 4, &[], OpKind::Add(b"eggs")),
                w(b"cart", 3, 1, 5, &[(1, 1)], OpKind::Remove(b"eggs")),
                w(b"cart", 2, 1, 6, &[], OpKind::Add(b"bread")),
                w(b"wishlist", 1, 2, 7, &[], OpKind::Add(b"tent")),
                w(b"wishlist", 2, 2, 8, &[(1, 2)], delete()),
                w(b"wishlist", 3, 2, 9, &[], OpKind::Add(b"stove")),
            ],
            _ => vec![
                w(b"price/sku-1", 1, 0, 10, &[], OpKind::Put(b"4.20")),
                w(b"price/sku-1", 2, 0, 12, &[], OpKind::Put(b"4.25")),
                w(b"price/sku-1", 3, 0, 11, &[], delete()),
                w(b"price/sku-2", 1, 1, 13, &[], OpKind::Put(b"9.99")),
                w(b"price/sku-2", 2, 1, 14, &[(1, 1)], OpKind::Put(b"8.99")),
                w(b"discontinued", 2, 2, 15, &[], OpKind::Put(b"x")),
                w(b"discontinued", 2, 3, 16, &[(2, 2)], delete()),
                w(b"notes", 1, 2, 20, &[], OpKind::Put(b"from the gateway")),
                w(b"notes", 3, 1, 20, &[], OpKind::Put(b"from the till")),
                w(b"price/sku-1", 1, 3, 21, &[(1, 0), (2, 0)], OpKind::Put(b"4.30")),
            ],
        }
    }

    /// Writes of a fourth origin, after a history: a decoded state must take them as the
    /// original does.
    fn further(strategy: Strategy) -> Vec<Write<'static>> {
        match strategy {
            Strategy::Counter => {
                vec![
                    w(b"visits", 4, 0, 30, &[], OpKind::Increment(1)),
                    w(b"reset", 4, 1, 31, &[], OpKind::Increment(-1)),
                ]
            }
            Strategy::Max => {
                vec![w(b"temp", 4, 0, 30, &[], OpKind::Max(11)), w(b"humidity", 4, 1, 31, &[], OpKind::Max(1))]
            }
            Strategy::AddWinsSet => vec![
                w(b"cart", 4, 0, 30, &[], OpKind::Add(b"eggs")),
                w(b"wishlist", 4, 1, 31, &[(3, 2)], OpKind::Remove(b"stove")),
            ],
            _ => vec![
                w(b"price/sku-1", 4, 0, 30, &[], OpKind::Put(b"4.40")),
                w(b"notes", 4, 1, 31, &[(1, 2), (3, 1)], OpKind::Put(b"merged")),
                w(b"new", 4, 2, 32, &[], OpKind::Put(b"fresh")),
            ],
        }
    }

    /// A merge for `custom`: the values joined in dot order, a deletion as "-".
    #[derive(Debug)]
    struct Joined;

    impl Merge for Joined {
        fn merge(&self, _key: &[u8], versions: &[&Version]) -> Result<Option<Vec<u8>>, MergeError> {
            Ok(Some(versions.iter().map(|v| v.value.as_deref().unwrap_or(b"-")).collect::<Vec<_>>().join(&b'|')))
        }
    }

    /// An empty state, with its merge for `custom`.
    fn empty(strategy: Strategy, limits: KeyedLimits) -> KeyedState {
        let state = KeyedState::new(strategy, limits);
        if strategy == Strategy::Custom {
            state.with_merge(MergeFn::new(Joined))
        } else {
            state
        }
    }

    fn state_of(strategy: Strategy, limits: KeyedLimits) -> KeyedState {
        let mut state = empty(strategy, limits);
        for write in history(strategy) {
            state.apply(write).expect("room");
        }
        state
    }

    fn encoded(state: &KeyedState) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(state, &mut bytes);
        bytes
    }

    /// Decodes the whole of `bytes`, with its merge for `custom`.
    fn decoded(bytes: &[u8], strategy: Strategy, limits: KeyedLimits) -> Result<KeyedState, SnapshotError> {
        let mut r = Reader::new(bytes);
        let state = decode(&mut r, strategy, limits)?;
        assert!(r.is_empty(), "{strategy}: {} bytes after the state", r.remaining());
        Ok(if strategy == Strategy::Custom { state.with_merge(MergeFn::new(Joined)) } else { state })
    }

    /// A snapshot of `state`, within the bound, and its decoding.
    fn round_trip(state: &KeyedState) -> KeyedState {
        let bytes = encoded(state);
        let len = bytes.len() as u64;
        assert!(len <= state.bytes() + state.conflict_log_bytes() + HEADER_BYTES, "{}: {len} bytes", state.strategy());
        assert!(len <= encoded_bytes_max(state.limits()));
        let decoded = decoded(&bytes, state.strategy(), state.limits()).expect("a snapshot decodes");
        assert_eq!(encoded(&decoded), bytes, "{}: a snapshot of the decoded state is the same", state.strategy());
        decoded
    }

    /// Everything the state holds, accounts and answers.
    fn assert_same(a: &KeyedState, b: &KeyedState) {
        let s = a.strategy();
        assert_eq!(a.keys, b.keys, "{s}: every entry (and what set elements own)");
        assert_eq!((a.bytes, a.conflict_bytes), (b.bytes, b.conflict_bytes), "{s}");
        let observed = |x: &KeyedState| (x.bytes(), x.conflict_log_bytes(), x.conflicts_total(), x.key_count());
        assert_eq!(observed(a), observed(b), "{s}");
        for key in a.keys.keys() {
            assert_eq!(a.get(key), b.get(key), "{s}");
            assert_eq!(a.versions(key), b.versions(key), "{s}");
        }
        assert!(a.conflicts().eq(b.conflicts()), "{s}: the conflict log");
    }

    /// Both take `writes` alike and stay the same.
    fn assert_go_on_alike(a: &mut KeyedState, b: &mut KeyedState, writes: Vec<Write<'_>>) {
        for write in writes {
            assert_eq!(a.apply(write.clone()), b.apply(write), "{}", a.strategy());
            assert_same(a, b);
        }
    }

    #[test]
    fn every_strategy_decodes_to_the_state_it_encoded_which_goes_on_alike() {
        for strategy in Strategy::NAMED {
            let mut original = state_of(strategy, ROOMY);
            assert!(original.key_count() >= 2, "{strategy}");
            let mut decoded = round_trip(&original);
            assert_same(&original, &decoded);
            assert_go_on_alike(&mut original, &mut decoded, further(strategy));
        }
        let registers = state_of(Strategy::KeepBoth, ROOMY);
        assert!(registers.conflicts().count() >= 3, "the register history has conflicts to carry");
        assert!(matches!(registers.get(b"notes"), Value::Siblings(_)));
    }

    #[test]
    fn a_snapshot_ends_where_its_state_does() {
        let first = state_of(Strategy::AddWinsSet, ROOMY);
        let second = state_of(Strategy::Counter, ROOMY);
        let mut bytes = encoded(&first);
        let first_len = bytes.len();
        encode(&second, &mut bytes);
        let mut r = Reader::new(&bytes);
        assert_same(&first, &decode(&mut r, Strategy::AddWinsSet, ROOMY).unwrap());
        assert_eq!(r.position(), first_len);
        assert_same(&second, &decode(&mut r, Strategy::Counter, ROOMY).unwrap());
        assert!(r.is_empty());
        let nothing = KeyedState::new(Strategy::Max, ROOMY);
        assert_eq!(encoded(&nothing).len() as u64, HEADER_BYTES, "an empty state is its header");
        assert_same(&nothing, &round_trip(&nothing));
    }

    #[test]
    fn a_state_filled_to_its_limits_encodes_within_encoded_bytes_max() {
        let limits = KeyedLimits { state_bytes_max: 6000, conflict_log_bytes_max: 900 };
        for strategy in Strategy::NAMED {
            let mut state = empty(strategy, limits);
            let (mut refused, mut seq) = (0, 0);
            for i in 0..200u64 {
                let key = format!("k{}", i % 7);
                let value = format!("value {i}");
                let kind = match strategy {
                    Strategy::Counter => OpKind::Increment(i as i64 - 100),
                    Strategy::Max => OpKind::Max(-(i as i64)),
                    Strategy::AddWinsSet => OpKind::Add(value.as_bytes()),
                    _ => OpKind::Put(value.as_bytes()),
                };
                // Origins that saw nothing of each other: every register write conflicts.
                let origin = i % 5;
                match state.apply(w(key.as_bytes(), origin, seq, i, &[], kind)) {
                    Ok(_) => seq += 1,
                    Err(KeyedError::Full { .. }) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(refused > 0, "{strategy}: filled");
            let len = encoded(&state).len() as u64;
            assert!(len <= encoded_bytes_max(limits), "{strategy}: {len} of {}", encoded_bytes_max(limits));
            assert_same(&state, &round_trip(&state));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for strategy in Strategy::NAMED {
            let bytes = encoded(&state_of(strategy, ROOMY));
            for cut in 0..bytes.len() {
                let e = decode(&mut Reader::new(&bytes[..cut]), strategy, ROOMY).expect_err("truncated");
                assert!(
                    matches!(e, SnapshotError::Truncated(_) | SnapshotError::Malformed(_)),
                    "{strategy} at {cut}: {e}"
                );
            }
        }
    }

    /// A changed byte makes an error or a state that keeps every invariant: one that takes
    /// further writes (under `apply`'s debug assertions) and encodes to what it decoded from.
    #[test]
    fn a_corrupted_byte_is_refused_or_makes_a_state_that_holds() {
        for strategy in Strategy::NAMED {
            let bytes = encoded(&state_of(strategy, ROOMY));
            for at in 0..bytes.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut corrupt = bytes.clone();
                    corrupt[at] ^= flip;
                    // A count made smaller may leave bytes after the state: the caller's to refuse.
                    let mut r = Reader::new(&corrupt);
                    let Ok(mut state) = decode(&mut r, strategy, ROOMY) else { continue };
                    assert_eq!(encoded(&state), corrupt[..r.position()], "{strategy}: byte {at} ^ {flip:#x}");
                    if strategy == Strategy::Custom {
                        state = state.with_merge(MergeFn::new(Joined));
                    }
                    for write in further(strategy) {
                        let _ = state.apply(write);
                    }
                    state.collect(&[dot(1, 5), dot(2, 5), dot(3, 5), dot(4, 5)].into_iter().collect());
                    assert_same(&state, &round_trip(&state));
                }
            }
        }
    }

    #[test]
    fn a_snapshot_of_another_strategy_is_refused() {
        let bytes = encoded(&state_of(Strategy::LastWriteWins, ROOMY));
        let e = decoded(&bytes, Strategy::FirstWriteWins, ROOMY).unwrap_err();
        assert_eq!(e, SnapshotError::Strategy { found: 0, expected: Strategy::FirstWriteWins });
        assert!(e.to_string().contains("of a last-write-wins topic, and the topic is first-write-wins now"), "{e}");
        let mut unknown = bytes.clone();
        unknown[0] = 200;
        let e = decoded(&unknown, Strategy::LastWriteWins, ROOMY).unwrap_err();
        assert_eq!(e, SnapshotError::Strategy { found: 200, expected: Strategy::LastWriteWins });
        assert!(e.to_string().contains("unknown strategy (200)"), "{e}");
        let codes: Vec<u8> = Strategy::NAMED.into_iter().map(strategy_code).collect();
        assert_eq!(codes, (0..9).collect::<Vec<u8>>(), "one byte each, as the format lists them");
    }

    #[test]
    fn keys_out_of_order_or_repeated_are_refused() {
        let bytes = encoded(&state_of(Strategy::LastWriteWins, ROOMY));
        let at = bytes.windows(11).position(|x| x == b"price/sku-2").expect("the key") + 10;
        for (last, why) in [(b'0', "out of order"), (b'1', "repeated")] {
            let mut bad = bytes.clone();
            bad[at] = last;
            let e = decoded(&bad, Strategy::LastWriteWins, ROOMY).unwrap_err();
            assert_eq!(e, SnapshotError::Malformed("keys out of order or repeated"), "{why}");
        }
    }

    #[test]
    fn counts_larger_than_the_bytes_left_are_refused_before_allocating() {
        let bytes = encoded(&state_of(Strategy::AddWinsSet, ROOMY));
        let mut bad = bytes.clone();
        bad[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = decoded(&bad, Strategy::AddWinsSet, ROOMY).unwrap_err();
        assert_eq!(e, SnapshotError::Malformed("a count larger than the bytes left"));
        assert!(e.to_string().contains("rebuild the state from the topic's log instead"), "{e}");
    }

    /// Little-endian bytes of a hand-made snapshot.
    #[derive(Default)]
    struct Bytes(Vec<u8>);

    impl Bytes {
        fn u8(mut self, n: u8) -> Bytes {
            self.0.push(n);
            self
        }
        fn u32(mut self, n: u32) -> Bytes {
            self.0.extend_from_slice(&n.to_le_bytes());
            self
        }
        fn u64(mut self, n: u64) -> Bytes {
            self.0.extend_from_slice(&n.to_le_bytes());
            self
        }
        /// A count, then each (origin, seq).
        fn dots(self, dots: &[(u64, u64)]) -> Bytes {
            dots.iter().fold(self.u32(dots.len() as u32), |b, &(o, s)| b.u64(o).u64(s))
        }
    }

    /// What `apply` never leaves, each refused with what was wrong.
    #[test]
    fn broken_invariants_are_refused_with_what_was_wrong() {
        use Strategy::{AddWinsSet, Counter, KeepBoth, LastWriteWins, Max};
        let none = || Bytes::default().u32(0);
        // Versions of one-byte values, at HLC 7.
        let register = |seen: &[(u64, u64)], versions: &[(u64, u64)]| {
            let b = Bytes::default().u8(0).dots(seen).u32(versions.len() as u32);
            versions.iter().fold(b, |b, &(o, s)| b.u64(o).u64(s).u64(7).u8(VERSION_VALUE).u32(1).u8(b'v'))
        };
        // Origin 1's stack.
        let max = |seen: &[(u64, u64)], removed: &[(u64, u64)], stack: &[(u64, i64)]| {
            let b = Bytes::default().u8(2).dots(seen).dots(removed).u32(1).u64(1).u32(stack.len() as u32);
            stack.iter().fold(b, |b, &(seq, value)| b.u64(seq).u64(value as u64))
        };
        // One element, "e".
        let set = |seen: &[(u64, u64)], removed_all: &[(u64, u64)], adds: &[(u64, u64)], removed: &[(u64, u64)]| {
            Bytes::default().u8(3).dots(seen).dots(removed_all).u32(1).u32(1).u8(b'e').dots(adds).dots(removed)
        };
        let one_conflict = |winner: u32| {
            let b = Bytes::default().u32(1).u32(1).u8(b'k').u32(2);
            b.u64(1).u64(0).u64(7).u8(0).u64(2).u64(0).u64(7).u8(1).u32(winner)
        };
        let cases = [
            (Counter, register(&[], &[]), none(), "an entry of another type"),
            (LastWriteWins, register(&[(2, 0), (1, 0)], &[]), none(), "a vector's origins out of order"),
            (LastWriteWins, register(&[(1, 0)], &[(1, 1)]), none(), "a version its key has not seen"),
            (LastWriteWins, register(&[(1, 0), (2, 0)], &[(2, 0), (1, 0)]), none(), "versions out of dot order"),
            (LastWriteWins, register(&[(1, 0), (2, 0)], &[(1, 0), (1, 0)]), none(), "two of one origin"),
            (Max, max(&[(1, 5)], &[], &[(0, 3), (1, 7)]), none(), "values decrease"),
            (Max, max(&[(1, 5)], &[(1, 0)], &[(0, 3)]), none(), "one a deletion saw"),
            (Max, max(&[(1, 5)], &[], &[]), none(), "an empty stack"),
            (AddWinsSet, set(&[(1, 5)], &[], &[], &[]), none(), "neither added nor removed"),
            (AddWinsSet, set(&[(1, 5)], &[(1, 5)], &[(1, 2)], &[]), none(), "an add a removal saw"),
            (AddWinsSet, set(&[(1, 5)], &[], &[(1, 6)], &[]), none(), "an add its key has not seen"),
            (Max, max(&[(1, 5)], &[], &[(0, 3)]), one_conflict(0), "conflicts in a topic of a convergent type"),
            (KeepBoth, register(&[], &[]), one_conflict(0), "a conflict's winner does not fit the strategy"),
            (LastWriteWins, register(&[], &[]), one_conflict(2), "a conflict's winner is none of its versions"),
        ];
        for (strategy, entry, conflicts, why) in cases {
            let mut bytes = Bytes::default().u8(strategy_code(strategy)).u64(1).u32(1).u32(1).u8(b'k');
            bytes.0.extend_from_slice(&entry.0);
            bytes.0.extend_from_slice(&conflicts.0);
            match decoded(&bytes.0, strategy, ROOMY) {
                Err(SnapshotError::Malformed(what)) => assert!(what.contains(why), "{why}: {what}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        let mut uncounted = encoded(&state_of(LastWriteWins, ROOMY));
        uncounted[1..9].copy_from_slice(&0u64.to_le_bytes());
        let e = decoded(&uncounted, LastWriteWins, ROOMY).unwrap_err();
        assert_eq!(e, SnapshotError::Malformed("more conflicts logged than counted"));
    }

    #[test]
    fn a_state_over_a_lowered_limit_is_refused() {
        let state = state_of(Strategy::Max, ROOMY);
        let bytes = encoded(&state);
        let exact = KeyedLimits { state_bytes_max: state.bytes(), ..ROOMY };
        assert_same(&state, &decoded(&bytes, Strategy::Max, exact).expect("at its limit"));
        let lowered = KeyedLimits { state_bytes_max: state.bytes() - 1, ..ROOMY };
        let e = decoded(&bytes, Strategy::Max, lowered).unwrap_err();
        let SnapshotError::OverLimit { bytes, limit } = e else { panic!("{e}") };
        assert!(limit == state.bytes() - 1 && bytes > limit && bytes <= state.bytes(), "{bytes} of {limit}");
        assert!(e.to_string().contains("raise keyed_state_max back"), "{e}");
    }

    #[test]
    fn a_lowered_conflict_log_keeps_the_newest_conflicts() {
        let mut state = empty(Strategy::LastWriteWins, ROOMY);
        for origin in 0..12u64 {
            let key = [b'k', b'0' + (origin % 2) as u8];
            state.apply(w(&key, origin, 0, origin, &[], OpKind::Put(b"value"))).unwrap();
        }
        let all: Vec<Conflict> = state.conflicts().cloned().collect();
        assert_eq!((all.len(), state.conflicts_total()), (10, 10));
        let limit = state.conflict_log_bytes() / 2;
        let lowered = KeyedLimits { conflict_log_bytes_max: limit, ..ROOMY };
        let smaller = decoded(&encoded(&state), Strategy::LastWriteWins, lowered).unwrap();
        let kept: Vec<Conflict> = smaller.conflicts().cloned().collect();
        // The longest run of the newest that fits, as the log would have dropped them.
        let mut fits = 0;
        let mut used = 0;
        for c in all.iter().rev() {
            if used + c.cost() > limit {
                break;
            }
            used += c.cost();
            fits += 1;
        }
        assert!(fits > 0 && fits < all.len(), "{fits} of {}", all.len());
        assert_eq!(kept, all[all.len() - fits..]);
        assert_eq!((smaller.conflict_log_bytes(), smaller.conflicts_total()), (used, 10));
        assert_eq!((smaller.keys.len(), smaller.bytes()), (state.keys.len(), state.bytes()));
    }

    /// One step of replicas that write and take each other's writes.
    #[derive(Clone, Debug)]
    enum Step {
        /// Replica `at` writes to one of two keys: `kind` picks the operation (0 a
        /// deletion), `n` the number, value, element and HLC.
        Write { at: usize, key: usize, kind: u8, n: i8 },
        /// Replica `at` takes the next write of `from`'s log, if any.
        Take { at: usize, from: usize },
        /// Every replica collects below what all have taken.
        Collect,
    }

    const REPLICAS: usize = 3;

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        prop_oneof![
            4 => (0..REPLICAS, 0..2usize, 0..10u8, any::<i8>()).prop_map(|(at, key, kind, n)| Step::Write { at, key, kind, n }),
            5 => (0..REPLICAS, 0..REPLICAS).prop_map(|(at, from)| Step::Take { at, from }),
            1 => Just(Step::Collect),
        ]
    }

    /// An origin's log of writes: key, dot, HLC and the operation's bytes.
    type Log = Vec<(Vec<u8>, Dot, Hlc, Vec<u8>)>;

    fn take(state: &mut KeyedState, taken: &mut [usize], logs: &[Log], from: usize) {
        let (key, dot, hlc, op) = &logs[from][taken[from]];
        taken[from] += 1;
        let op = KeyedOp::decode(op).expect("written by encode");
        state.apply(Write { key, dot: *dot, hlc: *hlc, op }).expect("the state's limit is roomy");
    }

    /// The states of replicas after `steps`, as `sim/tests/keyed.rs` runs them.
    fn replicas(strategy: Strategy, limits: KeyedLimits, steps: &[Step]) -> Vec<KeyedState> {
        const KEYS: [&[u8]; 2] = [b"price/sku-1", b"price/sku-2"];
        let mut logs: Vec<Log> = vec![Vec::new(); REPLICAS];
        let mut taken = vec![vec![0; REPLICAS]; REPLICAS];
        let mut states: Vec<KeyedState> = (0..REPLICAS).map(|_| empty(strategy, limits)).collect();
        for step in steps {
            match *step {
                Step::Write { at, key, kind, n } => {
                    let small = n.unsigned_abs() % 8;
                    let value = [b'v', b'a' + small, b'!'];
                    let element = &value[1..2];
                    let kind = match (strategy, kind) {
                        (_, 0) => OpKind::Delete(vec![]),
                        (Strategy::Counter, _) => OpKind::Increment(n.into()),
                        (Strategy::Max, _) => OpKind::Max(n.into()),
                        (Strategy::AddWinsSet, 1..=3) => OpKind::Remove(element),
                        (Strategy::AddWinsSet, _) => OpKind::Add(element),
                        _ => OpKind::Put(&value[..usize::from(small % 3) + 1]),
                    };
                    let mut op = Vec::new();
                    states[at].prepare(KEYS[key], kind, at == 0).expect("an op of the strategy").encode(&mut op);
                    let dot = Dot { origin: NodeId(at as u64 + 1), seq: logs[at].len() as u64 };
                    logs[at].push((KEYS[key].to_vec(), dot, Hlc(small.into()), op));
                    take(&mut states[at], &mut taken[at], &logs, at);
                }
                Step::Take { at, from } => {
                    if taken[at][from] < logs[from].len() {
                        take(&mut states[at], &mut taken[at], &logs, from);
                    }
                }
                Step::Collect => {
                    let stable: VersionVector = (0..REPLICAS)
                        .filter_map(|o| {
                            let n = taken.iter().map(|t| t[o]).min().expect("replicas");
                            (n > 0).then(|| dot(o as u64 + 1, n as u64 - 1))
                        })
                        .collect();
                    for state in &mut states {
                        state.collect(&stable);
                    }
                }
            }
        }
        states
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Replicas' states, whatever they took: each decodes to itself, within the bound,
        /// and goes on as the original. A small conflict log has dropped some.
        #[test]
        fn a_replica_state_decodes_to_itself_within_the_bound(
            strategy in proptest::sample::select(Strategy::NAMED.to_vec()),
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            let limits = KeyedLimits { state_bytes_max: 1 << 20, conflict_log_bytes_max: 1200 };
            for mut original in replicas(strategy, limits, &steps) {
                let mut decoded = round_trip(&original);
                assert_same(&original, &decoded);
                assert_go_on_alike(&mut original, &mut decoded, further(strategy));
            }
        }
    }
}

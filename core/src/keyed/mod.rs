//! The keyed state of one topic: the current value of every key, merged from the writes of
//! every origin by the topic's [`Strategy`] (docs/KEYED.md).
//!
//! Each write names what it had seen of its key (a [`VersionVector`], the context) and is
//! named by its record's [`Dot`]. A write *overwrites* what its context covers; what it does
//! not cover and does not cover it is *concurrent*. The state of a key depends only on the
//! set of writes applied, never on their order: replicas that applied the same writes hold
//! the same state (`sim/tests/keyed.rs` holds replicas to the simulator's oracle, which
//! computes each key's answer from the whole history).
//!
//! - **Registers** (`last-write-wins`, `first-write-wins`, `cloud-wins`, `edge-wins`,
//!   `keep-both`) keep every version no write has overwritten (at most one per origin: an
//!   origin's later write always overwrites its earlier one) and pick the answer from them;
//!   a deletion is a version without a value (a tombstone). `custom` keeps them as
//!   `keep-both` does and answers what a registered merge makes of them ([`merge`]).
//! - **Convergent types** merge without choosing: a `counter` sums increments per origin
//!   and a deletion resets what its author had counted; a `max` register answers the largest
//!   value no deletion saw; an `add-wins-set` keeps an element while an add of it was not
//!   seen by any removal.
//!
//! Bounded: every key, version, vector entry and element is accounted against
//! [`KeyedLimits::state_bytes_max`], and a write that could pass it is refused without
//! changing anything ([`KeyedError::Full`]); the caller holds the write back. Conflicts go
//! to a log of at most [`KeyedLimits::conflict_log_bytes_max`], oldest out first.
//! Pure: no I/O, no clock; the caller applies each record of the topic exactly once, in
//! each origin's order.

pub mod merge;
pub mod op;
pub mod snapshot;
mod sorted;
pub mod vv;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::mem::size_of;

use sorted::{vec_cost, SortedMap};

pub use merge::{Merge, MergeError, MergeFn};
pub use op::{Counted, KeyedOp, OpError, OpKind, Relayed, RELAYED_BYTES_MAX};
pub use vv::{Dot, VersionVector};

use crate::hlc::Hlc;
use crate::types::{NodeId, Seq};

// What the parts cost is what they may hold on the heap: a slot twice (vectors grow by
// doubling, a B-tree's nodes may be half full) and the bytes they own.
/// A key's slot in the topic's map (its vector and its entry), twice.
const KEY_BYTES: u64 = 2 * (size_of::<Vec<u8>>() + size_of::<Entry>()) as u64;
/// The first node of the topic's map (eleven slots), allocated with the first key.
const MAP_BYTES: u64 = 11 * (size_of::<Vec<u8>>() + size_of::<Entry>()) as u64 + 64;
/// The most one version, tally, stack or element slot adds to its vector.
const VERSION_BYTES: u64 = 4 * size_of::<Version>() as u64;
const TALLY_BYTES: u64 = 4 * size_of::<(NodeId, Tally)>() as u64;
const STACK_BYTES: u64 = 4 * size_of::<(NodeId, Vec<(Seq, i64)>)>() as u64;
const STACK_ENTRY_BYTES: u64 = 4 * size_of::<(Seq, i64)>() as u64;
const ELEMENT_BYTES: u64 = 4 * size_of::<(Vec<u8>, Element)>() as u64;
const DOT_BYTES: u64 = 4 * size_of::<Dot>() as u64;
/// What a recorded conflict costs beside its key and versions.
const CONFLICT_BYTES: u64 = 2 * size_of::<Conflict>() as u64;

/// How a keyed topic merges writes of different origins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    /// Concurrent versions: the highest HLC wins, ties by the higher origin id.
    LastWriteWins,
    /// Concurrent versions: the lowest HLC wins, ties by the lower origin id.
    FirstWriteWins,
    /// Concurrent versions: a gateway's wins over an edge's; among either, the last.
    CloudWins,
    /// Concurrent versions: an edge's wins over a gateway's; among either, the last.
    EdgeWins,
    /// Concurrent versions with a value are all answered (siblings) until a write that saw
    /// them replaces them.
    KeepBoth,
    /// Signed increments summed per origin.
    Counter,
    /// The largest value written.
    Max,
    /// A set of elements; an add concurrent with a removal of its element wins.
    AddWinsSet,
    /// Concurrent versions are kept as `keep-both` keeps them and answered by a merge the
    /// application registers or a WebAssembly module ([`merge`]).
    Custom,
}

impl Strategy {
    /// The built-in strategies (`Custom` needs a merge besides).
    pub const ALL: [Strategy; 8] = [
        Strategy::LastWriteWins,
        Strategy::FirstWriteWins,
        Strategy::CloudWins,
        Strategy::EdgeWins,
        Strategy::KeepBoth,
        Strategy::Counter,
        Strategy::Max,
        Strategy::AddWinsSet,
    ];

    /// Every strategy a file can name: the built-ins, then `custom` (which needs a merge).
    pub const NAMED: [Strategy; 9] = {
        let mut named = [Strategy::Custom; 9];
        let mut i = 0;
        while i < Strategy::ALL.len() {
            named[i] = Strategy::ALL[i];
            i += 1;
        }
        named
    };

    /// The name configuration files and the docs use.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::LastWriteWins => "last-write-wins",
            Strategy::FirstWriteWins => "first-write-wins",
            Strategy::CloudWins => "cloud-wins",
            Strategy::EdgeWins => "edge-wins",
            Strategy::KeepBoth => "keep-both",
            Strategy::Counter => "counter",
            Strategy::Max => "max",
            Strategy::AddWinsSet => "add-wins-set",
            Strategy::Custom => "custom",
        }
    }

    /// The strategy a configuration file names (`name()`), if any.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::NAMED.into_iter().find(|s| s.name() == name)
    }

    fn is_register(self) -> bool {
        matches!(
            self,
            Strategy::LastWriteWins
                | Strategy::FirstWriteWins
                | Strategy::CloudWins
                | Strategy::EdgeWins
                | Strategy::KeepBoth
                | Strategy::Custom
        )
    }

    /// Whether a topic of this strategy takes `op`. Every type takes deletes.
    pub fn accepts(self, op: &OpKind<'_>) -> bool {
        match op {
            OpKind::Delete(counted) => self == Strategy::Counter || counted.is_empty(),
            OpKind::Put(_) => self.is_register(),
            OpKind::Increment(_) => self == Strategy::Counter,
            OpKind::Max(_) => self == Strategy::Max,
            OpKind::Add(_) | OpKind::Remove(_) => self == Strategy::AddWinsSet,
        }
    }

    /// Among concurrent register versions, the one this strategy answers; `None` for
    /// `keep-both` (all of them) and for convergent types. A function of the set alone.
    pub fn winner(self, versions: &[Version]) -> Option<&Version> {
        fn last<'v>(vs: impl Iterator<Item = &'v Version>) -> Option<&'v Version> {
            vs.max_by_key(|v| (v.hlc, v.dot.origin))
        }
        let preferring = |cloud: bool| {
            let any = versions.iter().any(|v| v.cloud == cloud);
            last(versions.iter().filter(move |v| !any || v.cloud == cloud))
        };
        match self {
            Strategy::LastWriteWins => last(versions.iter()),
            Strategy::FirstWriteWins => versions.iter().min_by_key(|v| (v.hlc, v.dot.origin)),
            Strategy::CloudWins => preferring(true),
            Strategy::EdgeWins => preferring(false),
            Strategy::KeepBoth | Strategy::Custom | Strategy::Counter | Strategy::Max | Strategy::AddWinsSet => None,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits of one topic's keyed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedLimits {
    /// Keys with their versions, vectors, tallies and elements.
    pub state_bytes_max: u64,
    /// The conflict log; the oldest conflicts go first.
    pub conflict_log_bytes_max: u64,
}

impl KeyedLimits {
    /// The memory the state plans for (both limits).
    pub fn planned_bytes(&self) -> u64 {
        self.state_bytes_max + self.conflict_log_bytes_max
    }
}

/// One write as it reaches the keyed state: its record's key, dot and HLC, and its decoded
/// operation.
#[derive(Clone, Debug)]
pub struct Write<'a> {
    pub key: &'a [u8],
    pub dot: Dot,
    pub hlc: Hlc,
    pub op: KeyedOp<'a>,
}

/// A register's version: a write no write has overwritten yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub dot: Dot,
    pub hlc: Hlc,
    pub cloud: bool,
    /// `None`: a deletion (tombstone).
    pub value: Option<Vec<u8>>,
}

impl Version {
    /// What its value owns (its slot is its vector's).
    fn owned(&self) -> u64 {
        self.value.as_ref().map_or(0, |v| v.len() as u64)
    }
}

/// What applying a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Taken.
    Taken,
    /// Taken, and concurrent with another version of its key: recorded as a conflict.
    Conflict,
    /// Already seen: a write of this dot, or one a taken write's context covered.
    Seen,
}

/// Why a write was not applied. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedError {
    /// The topic's strategy takes no such operation.
    WrongOp { op: &'static str, strategy: Strategy },
    /// Taking the write could pass the state's limit.
    Full { need: u64, used: u64, limit: u64 },
    /// The topic is not keyed (it has no strategy).
    NotKeyed,
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyedError::WrongOp { op, strategy } => {
                write!(f, "a {strategy} topic takes no {op} (see the table of operations per strategy in KEYED.md)")
            }
            KeyedError::Full { need, used, limit } => write!(
                f,
                "keyed state full: {used} of {limit} bytes used and the write may need {need}; \
                 raise the topic's keyed state limit or delete keys"
            ),
            KeyedError::NotKeyed => f.write_str("the topic is not keyed: give it a conflict strategy"),
        }
    }
}

impl std::error::Error for KeyedError {}

/// A conflict: a write met versions it had not seen, and the strategy chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub key: Vec<u8>,
    pub strategy: Strategy,
    /// Every concurrent version (dot, HLC, whether it was a deletion), in dot order.
    pub versions: Vec<(Dot, Hlc, bool)>,
    /// The version answered; `None` when `keep-both` keeps them all or `custom` merges them.
    pub winner: Option<Dot>,
}

impl Conflict {
    fn cost(&self) -> u64 {
        CONFLICT_BYTES + self.key.len() as u64 + vec_cost(self.versions.len(), size_of::<(Dot, Hlc, bool)>())
    }
}

/// What a key answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'s> {
    /// Never written, or deleted.
    Absent,
    /// A register's value.
    Bytes(&'s [u8]),
    /// `keep-both`: concurrent values, in dot order.
    Siblings(Vec<&'s Version>),
    /// A counter's sum or a max register's value.
    Number(i64),
    /// A set's elements, in byte order.
    Elements(Vec<&'s [u8]>),
    /// `custom`: what the merge made of concurrent versions.
    Merged(Vec<u8>),
    /// `custom`: the merge failed; the concurrent versions, in dot order.
    MergeFailed(MergeError, Vec<&'s Version>),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    up: u64,
    down: u64,
    reset_up: u64,
    reset_down: u64,
}

impl Tally {
    fn value(&self) -> i128 {
        i128::from(self.up.saturating_sub(self.reset_up)) - i128::from(self.down.saturating_sub(self.reset_down))
    }

    fn is_reset(&self) -> bool {
        self.up <= self.reset_up && self.down <= self.reset_down
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Element {
    /// Adds no removal has seen, at most one per origin (its latest), in origin order.
    adds: Vec<Dot>,
    /// What removals of this element had seen.
    removed: VersionVector,
}

impl Element {
    /// What it owns beside its slot: its bytes, its adds and its removals' vector.
    fn cost(&self, element: &[u8]) -> u64 {
        element.len() as u64 + vec_cost(self.adds.len(), size_of::<Dot>()) + self.removed.cost()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Register {
        seen: VersionVector,
        /// In dot order.
        versions: Vec<Version>,
    },
    Counter {
        seen: VersionVector,
        tallies: SortedMap<NodeId, Tally>,
    },
    Max {
        seen: VersionVector,
        removed: VersionVector,
        /// Per origin, its writes no deletion saw that a later write of it does not beat:
        /// sequences increase and values decrease, so the first is the origin's maximum.
        stacks: SortedMap<NodeId, Vec<(Seq, i64)>>,
    },
    Set {
        seen: VersionVector,
        removed_all: VersionVector,
        elements: SortedMap<Vec<u8>, Element>,
        /// What the elements own beside their slots.
        elements_cost: u64,
    },
}

impl Entry {
    fn new(strategy: Strategy) -> Entry {
        match strategy {
            Strategy::Counter => Entry::Counter { seen: VersionVector::new(), tallies: SortedMap::default() },
            Strategy::Max => {
                Entry::Max { seen: VersionVector::new(), removed: VersionVector::new(), stacks: SortedMap::default() }
            }
            Strategy::AddWinsSet => Entry::Set {
                seen: VersionVector::new(),
                removed_all: VersionVector::new(),
                elements: SortedMap::default(),
                elements_cost: 0,
            },
            _ => Entry::Register { seen: VersionVector::new(), versions: Vec::new() },
        }
    }

    fn seen(&self) -> &VersionVector {
        match self {
            Entry::Register { seen, .. }
            | Entry::Counter { seen, .. }
            | Entry::Max { seen, .. }
            | Entry::Set { seen, .. } => seen,
        }
    }

    fn cost(&self) -> u64 {
        match self {
            Entry::Register { seen, versions } => {
                seen.cost()
                    + vec_cost(versions.len(), size_of::<Version>())
                    + versions.iter().map(Version::owned).sum::<u64>()
            }
            Entry::Counter { seen, tallies } => seen.cost() + tallies.slots_cost(),
            Entry::Max { seen, removed, stacks } => {
                seen.cost()
                    + removed.cost()
                    + stacks.slots_cost()
                    + stacks.values().map(|s| vec_cost(s.len(), size_of::<(Seq, i64)>())).sum::<u64>()
            }
            Entry::Set { seen, removed_all, elements, elements_cost } => {
                seen.cost() + removed_all.cost() + elements.slots_cost() + elements_cost
            }
        }
    }

    /// Whether the key answers nothing and holds nothing a later write could need beyond
    /// what `stable` (seen by every replica) covers.
    fn collectable(&self, stable: &VersionVector) -> bool {
        match self {
            Entry::Register { seen, versions } => versions.iter().all(|v| v.value.is_none()) && stable.dominates(seen),
            // A later reset names sums that include increments from before: never collected.
            Entry::Counter { .. } => false,
            Entry::Max { seen, removed, stacks } => {
                stacks.is_empty() && stable.dominates(seen) && stable.dominates(removed)
            }
            Entry::Set { seen, removed_all, elements, .. } => {
                elements.is_empty() && stable.dominates(seen) && stable.dominates(removed_all)
            }
        }
    }
}

/// The keyed state of one topic.
#[derive(Debug)]
pub struct KeyedState {
    strategy: Strategy,
    limits: KeyedLimits,
    /// `custom`'s merge.
    merge: Option<MergeFn>,
    keys: BTreeMap<Vec<u8>, Entry>,
    bytes: u64,
    conflicts: VecDeque<Conflict>,
    conflict_bytes: u64,
    conflicts_total: u64,
}

impl KeyedState {
    pub fn new(strategy: Strategy, limits: KeyedLimits) -> KeyedState {
        KeyedState {
            strategy,
            limits,
            merge: None,
            keys: BTreeMap::new(),
            bytes: 0,
            conflicts: VecDeque::new(),
            conflict_bytes: 0,
            conflicts_total: 0,
        }
    }

    /// The state of a `custom` topic, answered by `merge`.
    pub fn with_merge(mut self, merge: MergeFn) -> KeyedState {
        self.merge = Some(merge);
        self
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn limits(&self) -> KeyedLimits {
        self.limits
    }

    /// Bytes the keys account, with the first node of their map (at most
    /// `state_bytes_max`).
    pub fn bytes(&self) -> u64 {
        if self.keys.is_empty() {
            0
        } else {
            MAP_BYTES + self.bytes
        }
    }

    /// Bytes the conflict log accounts (at most `conflict_log_bytes_max`).
    pub fn conflict_log_bytes(&self) -> u64 {
        self.conflict_bytes
    }

    /// Keys held, tombstones included.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The conflicts recorded and still in the log, oldest first.
    pub fn conflicts(&self) -> impl Iterator<Item = &Conflict> {
        self.conflicts.iter()
    }

    /// Every conflict recorded since the state was built, including those the log dropped.
    pub fn conflicts_total(&self) -> u64 {
        self.conflicts_total
    }

    /// What `key` answers.
    pub fn get(&self, key: &[u8]) -> Value<'_> {
        let Some(entry) = self.keys.get(key) else { return Value::Absent };
        match entry {
            Entry::Register { versions, .. } if self.strategy == Strategy::Custom => match versions.as_slice() {
                [] => Value::Absent,
                [one] => one.value.as_deref().map_or(Value::Absent, Value::Bytes),
                _ => {
                    let all: Vec<&Version> = versions.iter().collect();
                    let merged = match &self.merge {
                        Some(m) => m.0.merge(key, &all),
                        None => Err(MergeError("no merge is registered for the topic".into())),
                    };
                    match merged {
                        Ok(Some(v)) => Value::Merged(v),
                        Ok(None) => Value::Absent,
                        Err(e) => Value::MergeFailed(e, all),
                    }
                }
            },
            Entry::Register { versions, .. } => {
                if self.strategy == Strategy::KeepBoth {
                    let values: Vec<&Version> = versions.iter().filter(|v| v.value.is_some()).collect();
                    return match values.as_slice() {
                        [] => Value::Absent,
                        [one] => Value::Bytes(one.value.as_deref().expect("filtered on a value")),
                        _ => Value::Siblings(values),
                    };
                }
                match self.strategy.winner(versions).and_then(|w| w.value.as_deref()) {
                    Some(v) => Value::Bytes(v),
                    None => Value::Absent,
                }
            }
            Entry::Counter { tallies, .. } => {
                if tallies.values().all(Tally::is_reset) {
                    return Value::Absent;
                }
                let sum: i128 = tallies.values().map(Tally::value).sum();
                Value::Number(sum.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
            }
            Entry::Max { stacks, .. } => match stacks.values().filter_map(|s| s.first()).map(|&(_, v)| v).max() {
                Some(v) => Value::Number(v),
                None => Value::Absent,
            },
            Entry::Set { elements, .. } => {
                let present: Vec<&[u8]> =
                    elements.iter().filter(|(_, e)| !e.adds.is_empty()).map(|(k, _)| k.as_slice()).collect();
                if present.is_empty() {
                    Value::Absent
                } else {
                    Value::Elements(present)
                }
            }
        }
    }

    /// A register key's versions no write has overwritten, in dot order (empty for other
    /// types and for keys never written).
    pub fn versions(&self, key: &[u8]) -> &[Version] {
        match self.keys.get(key) {
            Some(Entry::Register { versions, .. }) => versions,
            _ => &[],
        }
    }

    /// The operation a write at this replica makes of `kind`: with what this replica has
    /// seen of the key as its context (so it overwrites every version here, siblings
    /// included) and, for a counter's deletion, what it has counted.
    pub fn prepare<'v>(&self, key: &[u8], kind: OpKind<'v>, cloud: bool) -> Result<KeyedOp<'v>, KeyedError> {
        if !self.strategy.accepts(&kind) {
            return Err(KeyedError::WrongOp { op: kind.name(), strategy: self.strategy });
        }
        let entry = self.keys.get(key);
        let kind = match (kind, entry) {
            (OpKind::Delete(_), Some(Entry::Counter { tallies, .. })) => {
                OpKind::Delete(tallies.iter().map(|(&origin, t)| Counted { origin, up: t.up, down: t.down }).collect())
            }
            (kind, _) => kind,
        };
        // A counter's increments and resets overwrite nothing: their context stays empty,
        // so that a reset's sums alone say what it removed.
        let context = match entry {
            Some(e) if self.strategy != Strategy::Counter => e.seen().clone(),
            _ => VersionVector::new(),
        };
        Ok(KeyedOp { context, cloud, relayed: None, kind })
    }

    /// Applies one write. Exactly once per record and in each origin's order is the
    /// caller's part; a write already seen is answered [`Applied::Seen`] and changes nothing.
    pub fn apply(&mut self, w: Write<'_>) -> Result<Applied, KeyedError> {
        debug_assert!(w.op.relayed.is_none(), "a copy is merged as the write it copies");
        if self.keys.get(w.key).is_some_and(|e| e.seen().covers(w.dot)) && self.strategy.accepts(&w.op.kind) {
            return Ok(Applied::Seen);
        }
        let need = self.room_for(&w)?;
        let strategy = self.strategy;
        let before = self.keys.get(w.key).map(|e| KEY_BYTES + w.key.len() as u64 + e.cost());
        if before.is_none() {
            self.keys.insert(w.key.to_vec(), Entry::new(strategy));
        }
        let before = before.unwrap_or(0);
        let entry = self.keys.get_mut(w.key).expect("inserted above when missing");
        let conflict = apply_to(entry, strategy, &w);
        let after = KEY_BYTES + w.key.len() as u64 + entry.cost();
        debug_assert!(after <= before + need, "a write grew its key by {} bytes, bound {need}", after - before);
        self.bytes = self.bytes - before + after;
        Ok(match conflict {
            Some(c) => {
                self.record(c);
                Applied::Conflict
            }
            None => Applied::Taken,
        })
    }

    /// Whether the strategy takes `w` and the state has room for it, whatever it turns out
    /// to overwrite: what `apply` refuses it for, if anything; else the most it may add.
    pub fn room_for(&self, w: &Write<'_>) -> Result<u64, KeyedError> {
        if !self.strategy.accepts(&w.op.kind) {
            return Err(KeyedError::WrongOp { op: w.op.kind.name(), strategy: self.strategy });
        }
        let need = growth_bound(w) + if self.keys.is_empty() { MAP_BYTES } else { 0 };
        let used = self.bytes();
        if used + need > self.limits.state_bytes_max {
            return Err(KeyedError::Full { need, used, limit: self.limits.state_bytes_max });
        }
        Ok(need)
    }

    /// Drops keys (and set elements) that answer nothing once every replica has seen
    /// `stable`: no write still to come can be one they would have overwritten. Returns
    /// the keys dropped.
    pub fn collect(&mut self, stable: &VersionVector) -> usize {
        let before = self.keys.len();
        let mut freed = 0;
        self.keys.retain(|key, entry| {
            // The entry's whole cost before and after: dropping elements frees their slots
            // as well as what they own.
            let cost_before = entry.cost();
            if let Entry::Set { elements, elements_cost, .. } = entry {
                elements.retain(|element, e| {
                    let keep = !e.adds.is_empty() || !stable.dominates(&e.removed);
                    if !keep {
                        *elements_cost -= e.cost(element);
                    }
                    keep
                });
            }
            let keep = !entry.collectable(stable);
            freed += if keep { cost_before - entry.cost() } else { KEY_BYTES + key.len() as u64 + cost_before };
            keep
        });
        self.bytes -= freed;
        before - self.keys.len()
    }

    fn record(&mut self, c: Conflict) {
        self.conflicts_total += 1;
        self.log(c);
    }

    /// Keeps `c` in the conflict log, the oldest out first to make room; one larger than
    /// the whole log is not kept.
    fn log(&mut self, c: Conflict) {
        let cost = c.cost();
        if cost > self.limits.conflict_log_bytes_max {
            return;
        }
        while self.conflict_bytes + cost > self.limits.conflict_log_bytes_max {
            let old = self.conflicts.pop_front().expect("bytes are accounted, so a conflict is there");
            self.conflict_bytes -= old.cost();
        }
        self.conflict_bytes += cost;
        self.conflicts.push_back(c);
    }
}

/// The most a write can add to the state: its key when new, its value or element, its
/// context and one entry per origin it names.
fn growth_bound(w: &Write<'_>) -> u64 {
    let payload = match &w.op.kind {
        OpKind::Put(v) => VERSION_BYTES + v.len() as u64,
        OpKind::Add(e) | OpKind::Remove(e) => ELEMENT_BYTES + e.len() as u64 + DOT_BYTES,
        OpKind::Delete(counted) => VERSION_BYTES + counted.len() as u64 * TALLY_BYTES,
        OpKind::Increment(_) => TALLY_BYTES,
        OpKind::Max(_) => STACK_BYTES + STACK_ENTRY_BYTES,
    };
    // The context and the dot land in up to three vectors (the key's seen, a max
    // register's or set's removals, an element's); each may first allocate.
    let vectors = 3 * (w.op.context.cost() + 2 * vv::ENTRY_BYTES);
    KEY_BYTES + w.key.len() as u64 + payload + vectors
}

/// Applies a write not yet seen to its key's entry; returns the conflict it met, if any.
fn apply_to(entry: &mut Entry, strategy: Strategy, w: &Write<'_>) -> Option<Conflict> {
    let origin = w.dot.origin;
    match entry {
        Entry::Register { seen, versions } => {
            // Every version's dot is in `seen`, which does not cover `w.dot`: a version of
            // the same origin is an earlier write of it, which this one overwrites.
            versions.retain(|v| !w.op.context.covers(v.dot) && v.dot.origin != origin);
            let value = match &w.op.kind {
                OpKind::Put(v) => Some(v.to_vec()),
                _ => None,
            };
            let at = versions.partition_point(|v| v.dot < w.dot);
            versions.insert(at, Version { dot: w.dot, hlc: w.hlc, cloud: w.op.cloud, value });
            seen.merge(&w.op.context);
            seen.add(w.dot);
            (versions.len() > 1).then(|| Conflict {
                key: w.key.to_vec(),
                strategy,
                versions: versions.iter().map(|v| (v.dot, v.hlc, v.value.is_none())).collect(),
                winner: strategy.winner(versions).map(|v| v.dot),
            })
        }
        Entry::Counter { seen, tallies } => {
            seen.add(w.dot);
            match &w.op.kind {
                OpKind::Increment(n) => {
                    let t = tallies.get_or_default(&origin);
                    if *n >= 0 {
                        t.up = t.up.saturating_add(n.unsigned_abs());
                    } else {
                        t.down = t.down.saturating_add(n.unsigned_abs());
                    }
                }
                OpKind::Delete(counted) => {
                    for c in counted {
                        let t = tallies.get_or_default(&c.origin);
                        t.reset_up = t.reset_up.max(c.up);
                        t.reset_down = t.reset_down.max(c.down);
                    }
                }
                _ => unreachable!("the strategy accepted the operation"),
            }
            None
        }
        Entry::Max { seen, removed, stacks } => {
            seen.add(w.dot);
            match w.op.kind {
                OpKind::Max(v) if !removed.covers(w.dot) => {
                    let stack = stacks.get_or_default(&origin);
                    while stack.last().is_some_and(|&(_, old)| old <= v) {
                        stack.pop();
                    }
                    stack.push((w.dot.seq, v));
                }
                OpKind::Max(_) => {}
                _ => {
                    removed.merge(&w.op.context);
                    stacks.retain(|&o, stack| {
                        stack.retain(|&(seq, _)| !removed.covers(Dot { origin: o, seq }));
                        !stack.is_empty()
                    });
                }
            }
            None
        }
        Entry::Set { seen, removed_all, elements, elements_cost } => {
            seen.add(w.dot);
            let mut touch = |element: &[u8], f: &mut dyn FnMut(&mut Element)| {
                let before = elements.get(element).map_or(0, |e| e.cost(element));
                let e = elements.get_or_default(element);
                f(e);
                if e.adds.is_empty() && e.removed.is_empty() {
                    // Nothing to answer and nothing to remember: as if never touched.
                    elements.remove(element);
                    *elements_cost -= before;
                } else {
                    *elements_cost = *elements_cost - before + e.cost(element);
                }
            };
            match &w.op.kind {
                OpKind::Add(element) => {
                    if !removed_all.covers(w.dot) {
                        touch(element, &mut |e| {
                            if !e.removed.covers(w.dot) {
                                e.adds.retain(|a| a.origin != origin);
                                let at = e.adds.partition_point(|a| a.origin < origin);
                                e.adds.insert(at, w.dot);
                            }
                        });
                    }
                }
                OpKind::Remove(element) => touch(element, &mut |e| {
                    e.removed.merge(&w.op.context);
                    let removed = &e.removed;
                    e.adds.retain(|&a| !removed.covers(a));
                }),
                _ => {
                    removed_all.merge(&w.op.context);
                    elements.retain(|element, e| {
                        let before = e.cost(element);
                        e.adds.retain(|&a| !removed_all.covers(a));
                        *elements_cost = *elements_cost - before + e.cost(element);
                        let keep = !e.adds.is_empty() || !e.removed.is_empty();
                        if !keep {
                            *elements_cost -= e.cost(element);
                        }
                        keep
                    });
                }
            }
            None
        }
    }
}

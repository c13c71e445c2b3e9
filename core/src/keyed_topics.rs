//! `KeyedTopics`: the keyed state of each of a node's keyed topics (`TopicConfig::keyed`),
//! fed with every record its log makes durable. The group commit hands it a copy of what
//! each commit wrote to a keyed topic once the commit is durable (`Committed::keyed`), and
//! recovery feeds it every segment of those topics, oldest first: the state is a function
//! of the log, so it is what a replica holds, never a write that might still be lost.
//!
//! Both halves of a `bidirectional` topic feed one state: a node merges what it wrote with
//! what came from the other side.

use crate::codec::{BatchDecoder, DecodedBatch};
use crate::config::NodeConfig;
use crate::keyed::{Applied, Dot, KeyedError, KeyedOp, KeyedState, OpKind, Write};
use crate::log;
use crate::memory::{MemoryPart, MemoryUsage, PlanBasis};
use crate::types::TopicIdx;

/// What the keyed states did, for the node's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyedCounters {
    /// Writes taken.
    pub applied: u64,
    /// Writes that met a concurrent version (recorded in the topic's conflict log).
    pub conflicts: u64,
    /// Durable records of a keyed topic whose value is no operation of its strategy, or
    /// that came without a key: not merged (another writer's bug, or a hostile one).
    pub unreadable: u64,
    /// Durable writes the state had no room for: not merged, so this replica's answers
    /// may differ from the others' until the limit is raised (`KeyedError::Full`).
    pub refused_full: u64,
}

/// The keyed states of a node.
#[derive(Debug, Default)]
pub struct KeyedTopics {
    /// One per keyed topic name.
    states: Vec<KeyedState>,
    /// Per topic index: its state, if keyed.
    of_topic: Vec<Option<usize>>,
    pub counters: KeyedCounters,
}

impl KeyedTopics {
    pub fn new(cfg: &NodeConfig) -> KeyedTopics {
        let mut names: Vec<&str> = Vec::new();
        let mut states = Vec::new();
        let of_topic = cfg
            .topics
            .iter()
            .map(|t| {
                let k = t.keyed.as_ref()?;
                Some(match names.iter().position(|n| *n == t.name) {
                    Some(i) => i,
                    None => {
                        names.push(&t.name);
                        let state = KeyedState::new(k.strategy, k.limits);
                        states.push(match &k.merge {
                            Some(m) => state.with_merge(m.clone()),
                            None => state,
                        });
                        states.len() - 1
                    }
                })
            })
            .collect();
        KeyedTopics { states, of_topic, counters: KeyedCounters::default() }
    }

    /// Whether `topic` is merged per key.
    pub fn is_keyed(&self, topic: TopicIdx) -> bool {
        self.of_topic.get(topic.0 as usize).is_some_and(Option::is_some)
    }

    /// The state of `topic` (shared by both halves of a bidirectional topic).
    pub fn state(&self, topic: TopicIdx) -> Option<&KeyedState> {
        self.of_topic.get(topic.0 as usize).copied().flatten().map(|i| &self.states[i])
    }

    /// Bytes the states and their conflict logs account (memory part `Index`).
    pub fn bytes(&self) -> u64 {
        self.states.iter().map(|s| s.bytes() + s.conflict_log_bytes()).sum()
    }

    /// Whether a produce of `value` under `key` to `topic` may be taken: the value is an
    /// operation of the topic's strategy, and the state has room for it.
    pub fn check_produce(&self, topic: TopicIdx, key: Option<&[u8]>, value: &[u8]) -> Result<(), String> {
        let Some(state) = self.state(topic) else { return Ok(()) };
        let strategy = state.strategy();
        let key = key.ok_or_else(|| format!("a keyed ({strategy}) topic's records need a key"))?;
        let op = KeyedOp::decode(value).map_err(|e| format!("the value of a keyed ({strategy}) record: {e}"))?;
        let probe = Write { key, dot: Dot { origin: crate::types::NodeId(0), seq: 0 }, hlc: Default::default(), op };
        state.room_for(&probe).map(|_| ()).map_err(|e| e.to_string())
    }

    /// The operation a write at this node makes: with what this node has seen of the key.
    pub fn prepare<'v>(
        &self,
        topic: TopicIdx,
        key: &[u8],
        kind: OpKind<'v>,
        cloud: bool,
    ) -> Result<KeyedOp<'v>, KeyedError> {
        match self.state(topic) {
            Some(s) => s.prepare(key, kind, cloud),
            None => Err(KeyedError::NotKeyed),
        }
    }

    /// Merges every record of `frames` (log frames of `topic` from log offset `base`, as
    /// a commit wrote them or recovery read them).
    pub fn apply_frames(&mut self, topic: TopicIdx, base: u64, frames: &[u8], dec: &mut BatchDecoder) {
        let stop = log::scan(frames, 0, base, |f| self.apply_batch(topic, f.batch, dec));
        debug_assert!(stop.is_none(), "a commit's frames scan whole: {stop:?}");
    }

    /// Merges every record of one durable batch of `topic`.
    pub fn apply_batch(&mut self, topic: TopicIdx, batch: &[u8], dec: &mut BatchDecoder) {
        let Some(i) = self.of_topic.get(topic.0 as usize).copied().flatten() else { return };
        // The checksum held; a batch that does not decode is left to sync to report.
        let Ok(b) = DecodedBatch::decode_with(batch, dec) else { return };
        let origin = b.header.origin;
        for (seq, rec) in (b.header.base_seq..).zip(b.records()) {
            let (Some(key), Ok(op)) = (rec.key, KeyedOp::decode(rec.value)) else {
                self.counters.unreadable += 1;
                continue;
            };
            match self.states[i].apply(Write { key, dot: Dot { origin, seq }, hlc: rec.hlc, op }) {
                Ok(Applied::Taken) => self.counters.applied += 1,
                Ok(Applied::Conflict) => {
                    self.counters.applied += 1;
                    self.counters.conflicts += 1;
                }
                Ok(Applied::Seen) => {}
                Err(KeyedError::Full { .. }) => self.counters.refused_full += 1,
                Err(_) => self.counters.unreadable += 1,
            }
        }
    }
}

/// The keyed states' planned memory: each state's limits (one per keyed topic name), and
/// the copy a commit in flight keeps of what it writes to keyed topics (at most its appends).
pub(crate) fn planned(cfg: &NodeConfig, b: &PlanBasis) -> MemoryUsage {
    let mut m = MemoryUsage::default();
    let keyed = KeyedTopics::new(cfg);
    if keyed.states.is_empty() {
        return m;
    }
    m.set(MemoryPart::Index, keyed.states.iter().map(|s| s.limits().planned_bytes()).sum());
    m.set(MemoryPart::Writes, crate::commit::appends_planned(b));
    m
}

//! `KeyedTopics`: the keyed state of each of a node's keyed topics (`TopicConfig::keyed`),
//! fed with every record its log makes durable. The group commit hands it a copy of what
//! each commit wrote to a keyed topic once the commit is durable (`Committed::keyed`), and
//! recovery feeds it every segment of those topics, oldest first: the state is a function
//! of the log, so it is what a replica holds, never a write that might still be lost.
//!
//! Both halves of a `bidirectional` topic feed one state: a node merges what it wrote with
//! what came from the other side. The half that comes down also carries the top
//! gateway's copies of every edge's writes (`keyed_fanout`), merged as the writes they
//! copy; a top gateway runs that fan-out here, fed by the same durable records.

use crate::codec::Reader;
use crate::codec::{BatchDecoder, DecodedBatch, MAX_VALUE_BYTES};
use crate::config::{NodeConfig, SyncDirection};
use crate::keyed::{snapshot, Applied, Dot, KeyedError, KeyedOp, KeyedState, OpKind, Write, RELAYED_BYTES_MAX};
use crate::keyed_checkpoint::{self, KeyedCheckpointError, StateOut};
use crate::keyed_fanout::{KeyedCopy, KeyedFanOut};
use crate::keyed_reads::{self, Observed, ReadConsistency, ReadRefused, ReadStamp};
use crate::log;
use crate::memory::{MemoryPart, MemoryUsage, PlanBasis};
use crate::types::{NodeId, Seq, TopicIdx};
use std::collections::BTreeMap;
use std::ops::Range;

/// Where durable records come from: a commit, or recovery's scan (`newest`: of a topic's
/// newest segment, which a crash may have left unreported).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    Committed,
    Recovered { newest: bool },
}

/// A copy of a write this gateway made durable: its sequence in the half that comes
/// down, the write it copies, its value's CRC32C (`Event::KeyedCopied`).
pub type CopyMade = (TopicIdx, Seq, Dot, u32);

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
#[derive(Debug)]
pub struct KeyedTopics {
    /// One per keyed topic name.
    states: Vec<KeyedState>,
    /// Per state, the newest write merged of each origin: what causal and bounded reads
    /// rest on (`keyed_reads`).
    observed: Vec<Observed>,
    /// Per state: its checkpoint did not load, and segments behind it may be gone, so the
    /// state rebuilt from the segments kept may lack writes (no causal or bounded reads).
    rebuilt_short: Vec<bool>,
    /// Per topic index: its state, if keyed.
    of_topic: Vec<Option<usize>>,
    pub counters: KeyedCounters,
    /// This node: the copies in its own records are its fan-out's.
    id: NodeId,
    /// Per topic index: the half that comes down of a `bidirectional` keyed topic, whose
    /// records may be copies (everywhere else a copy is refused as unreadable).
    takes_copies: Vec<bool>,
    /// Per topic index: a `strong` keyed topic of a site member, whose state is fed by the
    /// site's Raft as it applies each write (`apply_site_write`), with the cluster as the
    /// writes' origin, not by the log (a member's log skips what a Raft snapshot covers,
    /// and names the member as its batches' origin). Its state travels in the site's Raft
    /// snapshots (`site_snapshot`), so no keyed checkpoint holds its segments back.
    site_fed: Vec<bool>,
    fan_out: Option<KeyedFanOut>,
    /// Copies this node's commits made durable, for the node's event.
    copies_made: Vec<CopyMade>,
    /// Per topic index: the log offset below which every record is merged (or was
    /// loaded from a checkpoint): what a checkpoint covers.
    fed_to: Vec<Seq>,
    /// Per topic index: the log offset of the first batch with a write the state refused
    /// for lack of room since the node started. No checkpoint covers it, so its segment
    /// stays and a restart with a higher limit merges it.
    refused_from: Vec<Option<Seq>>,
}

impl Default for KeyedTopics {
    /// No keyed topic (what recovery holds before its plan).
    fn default() -> KeyedTopics {
        KeyedTopics {
            states: Vec::new(),
            observed: Vec::new(),
            rebuilt_short: Vec::new(),
            of_topic: Vec::new(),
            counters: KeyedCounters::default(),
            id: NodeId(0),
            takes_copies: Vec::new(),
            site_fed: Vec::new(),
            fan_out: None,
            copies_made: Vec::new(),
            fed_to: Vec::new(),
            refused_from: Vec::new(),
        }
    }
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
        let takes_copies = cfg
            .topics
            .iter()
            .map(|t| t.both_ways && t.keyed.is_some() && t.sync == SyncDirection::CloudToEdge)
            .collect();
        KeyedTopics {
            observed: vec![Observed::default(); states.len()],
            rebuilt_short: vec![false; states.len()],
            states,
            of_topic,
            counters: KeyedCounters::default(),
            id: cfg.id,
            takes_copies,
            site_fed: cfg.topics.iter().map(|t| t.keyed.is_some() && t.is_strong() && cfg.cluster.is_some()).collect(),
            fan_out: KeyedFanOut::new(cfg),
            copies_made: Vec::new(),
            fed_to: vec![0; cfg.topics.len()],
            refused_from: vec![None; cfg.topics.len()],
        }
    }

    /// Whether `topic` holds this gateway's copies: recovery scans it before the half that
    /// goes up, to know what is copied already.
    pub fn is_copied_into(&self, topic: TopicIdx) -> bool {
        self.fan_out.as_ref().is_some_and(|f| f.is_copied_into(topic))
    }

    /// Whether `topic` is merged per key.
    pub fn is_keyed(&self, topic: TopicIdx) -> bool {
        self.of_topic.get(topic.0 as usize).is_some_and(Option::is_some)
    }

    /// The state of `topic` (shared by both halves of a bidirectional topic).
    pub fn state(&self, topic: TopicIdx) -> Option<&KeyedState> {
        self.of_topic.get(topic.0 as usize).copied().flatten().map(|i| &self.states[i])
    }

    /// Bytes the states, their conflict logs and what reads rest on account (memory part
    /// `Index`).
    pub fn bytes(&self) -> u64 {
        let observed: u64 = self.observed.iter().map(Observed::bytes).sum();
        observed + self.states.iter().map(|s| s.bytes() + s.conflict_log_bytes()).sum::<u64>()
    }

    /// Decides a read of keyed topic `topic` at consistency `read`, made at node time
    /// `as_of_ms` (`keyed_reads::decide`); `None` for a topic not keyed.
    pub fn decide_read(
        &self,
        cfg: &NodeConfig,
        topic: TopicIdx,
        as_of_ms: u64,
        read: ReadConsistency<'_>,
    ) -> Option<Result<ReadStamp, ReadRefused>> {
        let i = self.of_topic.get(topic.0 as usize).copied().flatten()?;
        let incomplete = self.incomplete(topic);
        let name = &cfg.topics[topic.0 as usize].name;
        Some(keyed_reads::decide(name, &self.observed[i], incomplete, self.id, as_of_ms, read))
    }

    /// Why the state of `topic` cannot vouch for what it holds, if so (besides its origins,
    /// which `keyed_reads::decide` counts).
    pub fn incomplete(&self, topic: TopicIdx) -> Option<&'static str> {
        let i = self.of_topic.get(topic.0 as usize).copied().flatten()?;
        let mut halves = self.of_topic.iter().enumerate().filter(move |(_, s)| **s == Some(i)).map(|(t, _)| t);
        if halves.any(|t| self.refused_from[t].is_some()) {
            Some("it had no room for a write (keyed_state_max); raise the limit and restart")
        } else if self.rebuilt_short[i] {
            Some("its checkpoint did not load at the start, and the segments kept may lack writes it held")
        } else {
            None
        }
    }

    /// Whether a produce of `value` under `key` to `topic` may be taken: the value is an
    /// operation of the topic's strategy, and the state has room for it.
    pub fn check_produce(&self, topic: TopicIdx, key: Option<&[u8]>, value: &[u8]) -> Result<(), String> {
        let Some(state) = self.state(topic) else { return Ok(()) };
        let strategy = state.strategy();
        let key = key.ok_or_else(|| format!("a keyed ({strategy}) topic's records need a key"))?;
        let op = KeyedOp::decode(value).map_err(|e| format!("the value of a keyed ({strategy}) record: {e}"))?;
        if op.relayed.is_some() {
            return Err("a relayed copy of a keyed write is made by a gateway from the write itself; write the \
                        operation without the relayed flag"
                .to_string());
        }
        let copy_max = MAX_VALUE_BYTES - RELAYED_BYTES_MAX;
        if value.len() > copy_max && self.is_both_ways(topic) {
            return Err(format!(
                "the value of a keyed ({strategy}) record that goes both ways is {} bytes, at most {copy_max} (the \
                 gateway's copy to the other edges adds up to {RELAYED_BYTES_MAX})",
                value.len()
            ));
        }
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

    /// Whether `topic` is a half of a `bidirectional` topic.
    fn is_both_ways(&self, topic: TopicIdx) -> bool {
        let i = self.of_topic.get(topic.0 as usize).copied().flatten();
        i.is_some_and(|i| self.of_topic.iter().zip(&self.takes_copies).any(|(&o, &c)| c && o == Some(i)))
    }

    /// Merges every record of `frames` (log frames of `topic` from log offset `base`, as
    /// a commit wrote them).
    pub fn apply_frames(&mut self, topic: TopicIdx, base: u64, frames: &[u8], dec: &mut BatchDecoder) {
        let stop =
            log::scan(frames, 0, base, |f| self.apply_batch(topic, f.batch, f.base..f.end(), dec, Feed::Committed));
        debug_assert!(stop.is_none(), "a commit's frames scan whole: {stop:?}");
    }

    /// Merges every record of one durable batch of `topic` at log offsets `at`; a copy as
    /// the write it copies. Each topic's batches come in log order. A batch may begin
    /// below what a loaded checkpoint covers: the log lost records the checkpoint holds (a
    /// fault destroyed them, and a replica of what comes down receives them again at the
    /// same offsets; swarm seed 1449); merging them again changes nothing (`Seen`).
    pub fn apply_batch(&mut self, topic: TopicIdx, batch: &[u8], at: Range<Seq>, dec: &mut BatchDecoder, feed: Feed) {
        let Some(i) = self.of_topic.get(topic.0 as usize).copied().flatten() else { return };
        let fed = &mut self.fed_to[topic.0 as usize];
        *fed = (*fed).max(at.end);
        if self.site_fed[topic.0 as usize] {
            return;
        }
        // The checksum held; a batch that does not decode is left to sync to report.
        let Ok(b) = DecodedBatch::decode_with(batch, dec) else { return };
        let origin = b.header.origin;
        let takes_copies = self.takes_copies.get(topic.0 as usize).copied().unwrap_or(false);
        let report = matches!(feed, Feed::Committed | Feed::Recovered { newest: true });
        for (seq, rec) in (b.header.base_seq..).zip(b.records()) {
            let (Some(key), Ok(op)) = (rec.key, KeyedOp::decode(rec.value)) else {
                self.counters.unreadable += 1;
                continue;
            };
            let (dot, hlc, op) = match op.relayed {
                None => (Dot { origin, seq }, rec.hlc, op),
                Some(r) if takes_copies => {
                    if origin == self.id {
                        if let Some(f) = &mut self.fan_out {
                            f.note_copied(topic, r.dot);
                        }
                        if report {
                            self.copies_made.push((topic, seq, r.dot, crc32c::crc32c(rec.value)));
                        }
                    }
                    (r.dot, r.hlc, KeyedOp { relayed: None, ..op })
                }
                Some(_) => {
                    // A copy only comes down from the gateway; anywhere else it would name
                    // another node's write falsely.
                    self.counters.unreadable += 1;
                    continue;
                }
            };
            self.merge(i, topic, Write { key, dot, hlc, op }, at.start);
        }
        if let Some(f) = &mut self.fan_out {
            f.note_durable(topic, batch, at.start, feed != Feed::Committed);
        }
    }

    /// Merges one write into state `i` (of `topic`), found at log offset `from` (where a
    /// write refused for room holds the topic's checkpoints back).
    fn merge(&mut self, i: usize, topic: TopicIdx, w: Write<'_>, from: Seq) {
        let (dot, hlc) = (w.dot, w.hlc);
        let applied = self.states[i].apply(w);
        if applied.is_ok() {
            self.observed[i].note(dot, hlc);
        }
        match applied {
            Ok(Applied::Taken) => self.counters.applied += 1,
            Ok(Applied::Conflict) => {
                self.counters.applied += 1;
                self.counters.conflicts += 1;
            }
            Ok(Applied::Seen) => {}
            Err(KeyedError::Full { .. }) => {
                self.counters.refused_full += 1;
                self.refused_from[topic.0 as usize].get_or_insert(from);
            }
            Err(_) => self.counters.unreadable += 1,
        }
    }

    /// Whether `topic`'s state is fed by the site's Raft (`apply_site_write`).
    pub fn is_site_fed(&self, topic: TopicIdx) -> bool {
        self.site_fed.get(topic.0 as usize).copied().unwrap_or(false)
    }

    /// Merges a write of strong keyed topic `topic` the site's Raft applied: the cluster's
    /// record `dot` (the cluster's id and the record's sequence in its stream), stamped
    /// `hlc` there. Committed, so never lost; Raft applies it again after a restart from
    /// an older snapshot, which changes nothing (`Seen`).
    pub fn apply_site_write(
        &mut self,
        topic: TopicIdx,
        dot: Dot,
        hlc: crate::hlc::Hlc,
        key: Option<&[u8]>,
        value: &[u8],
    ) {
        debug_assert!(self.is_site_fed(topic), "only a strong keyed topic of a member is fed by its site");
        let Some(i) = self.of_topic.get(topic.0 as usize).copied().flatten() else { return };
        let (Some(key), Ok(op)) = (key, KeyedOp::decode(value)) else {
            self.counters.unreadable += 1;
            return;
        };
        if op.relayed.is_some() {
            self.counters.unreadable += 1;
            return;
        }
        self.merge(i, topic, Write { key, dot, hlc, op }, dot.seq);
    }

    /// The states of strong keyed topics, as a keyed checkpoint frame for the site's Raft
    /// snapshot (empty: none).
    pub fn site_snapshot(&self, cfg: &NodeConfig) -> Vec<u8> {
        let mut parts = Vec::new();
        for (t, s) in self.of_topic.iter().enumerate() {
            let Some(i) = *s else { continue };
            if !self.site_fed[t] {
                continue;
            }
            let state = &self.states[i];
            let (name, halves) = (&cfg.topics[t].name, vec![(cfg.topics[t].sync, Seq::MAX)]);
            parts.push(StateOut { name, halves, relayed: Vec::new(), observed: &self.observed[i], state });
        }
        if parts.is_empty() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        keyed_checkpoint::encode(&parts, &mut bytes);
        bytes
    }

    /// Takes the states of strong keyed topics from a site's Raft snapshot (`site_snapshot`
    /// of the member that took it) where they hold more of `cluster`'s stream than this
    /// node's. The cluster is the only origin of a strong topic at its members, so two
    /// states are of two prefixes of one stream, and the longer one holds the shorter.
    /// Returns what could not be taken (the snapshot's bytes are another node's).
    pub fn restore_site_snapshot(&mut self, cfg: &NodeConfig, bytes: &[u8], cluster: NodeId) -> Vec<String> {
        if bytes.is_empty() {
            return Vec::new();
        }
        let parts = match keyed_checkpoint::decode(bytes) {
            Ok(p) => p,
            Err(e) => return vec![format!("the keyed states of the site's snapshot do not decode: {e}")],
        };
        let mut problems = Vec::new();
        for part in parts {
            let found = cfg.topics.iter().position(|t| t.name == part.name && t.is_strong());
            let Some(t) = found.filter(|&t| self.site_fed[t]) else {
                problems.push(format!("topic {:?} of the site's snapshot is no strong keyed topic here", part.name));
                continue;
            };
            let i = self.of_topic[t].expect("site-fed topics are keyed");
            let held = |o: &Observed| o.of(cluster).map(|(seq, _)| seq + 1).unwrap_or(0);
            if held(&part.observed) <= held(&self.observed[i]) {
                continue;
            }
            if let Err(why) = self.load_state(cfg, (t, i), part.state, part.observed) {
                problems.push(format!("topic {:?}: the site's snapshot of its state: {why}", part.name));
            }
        }
        problems
    }

    /// Replaces state `i` (of topic index `t`, whose merge a `custom` strategy takes) with
    /// the snapshot `bytes` (exactly one state) and what reads rest on with `observed`;
    /// why not, if the bytes are no such state within the topic's strategy and limits.
    fn load_state(
        &mut self,
        cfg: &NodeConfig,
        (t, i): (usize, usize),
        bytes: &[u8],
        observed: Observed,
    ) -> Result<(), String> {
        let (state, mut r) = (&self.states[i], Reader::new(bytes));
        let s = snapshot::decode(&mut r, state.strategy(), state.limits()).map_err(|e| e.to_string())?;
        if !r.is_empty() {
            return Err("bytes after its state".to_string());
        }
        self.states[i] = match cfg.topics[t].keyed.as_ref().and_then(|k| k.merge.clone()) {
            Some(m) => s.with_merge(m),
            None => s,
        };
        self.observed[i] = observed;
        Ok(())
    }

    /// Whether the node has a keyed topic.
    pub fn any(&self) -> bool {
        !self.states.is_empty()
    }

    /// Keys the states hold, tombstones included.
    pub fn key_count(&self) -> u64 {
        self.states.iter().map(|s| s.key_count() as u64).sum()
    }

    /// Records of keyed topics merged beyond `covered(topic)`: what a restart would merge
    /// again from the segments.
    pub fn fed_beyond(&self, covered: impl Fn(TopicIdx) -> Seq) -> u64 {
        let topics = self.fed_to.iter().enumerate().filter(|(t, _)| self.of_topic[*t].is_some());
        topics.map(|(t, &fed)| fed.saturating_sub(covered(TopicIdx(t as u16)))).sum()
    }

    /// A checkpoint of every state, and what it covers once durable: per half, the log
    /// offset below which every record is merged, no further than a write the state
    /// refused for room; on a top gateway, of a half that goes up, no further than its
    /// first write not yet copied durably.
    pub fn checkpoint(&self, cfg: &NodeConfig) -> (Vec<u8>, Vec<(TopicIdx, Seq)>) {
        let mut covers = Vec::new();
        let mut parts = Vec::with_capacity(self.states.len());
        for (i, state) in self.states.iter().enumerate() {
            let observed = &self.observed[i];
            let mut part = StateOut { name: "", halves: Vec::new(), relayed: Vec::new(), observed, state };
            for (t, _) in self.of_topic.iter().enumerate().filter(|(_, s)| **s == Some(i)) {
                let topic = TopicIdx(t as u16);
                // (A strong keyed topic's state comes from the site's Raft, not its log:
                // it holds none of its segments back.)
                let mut covered = if self.site_fed[t] {
                    Seq::MAX
                } else {
                    self.fed_to[t].min(self.refused_from[t].unwrap_or(Seq::MAX))
                };
                if let Some(f) = self.fan_out.as_ref().filter(|f| f.up_half(topic) == Some(topic)) {
                    covered = covered.min(f.uncopied_from(topic).unwrap_or(Seq::MAX));
                    part.relayed = f.relayed_of(topic);
                }
                part.name = &cfg.topics[t].name;
                part.halves.push((cfg.topics[t].sync, covered));
                covers.push((topic, covered));
            }
            parts.push(part);
        }
        let mut bytes = Vec::new();
        keyed_checkpoint::encode(&parts, &mut bytes);
        debug_assert!(bytes.len() as u64 <= keyed_checkpoint::file_bytes_max(cfg), "a checkpoint within its plan");
        (bytes, covers)
    }

    /// Loads a checkpoint (recovery, before it scans any segment of a keyed topic): each
    /// state it holds of a topic still keyed with the same strategy, and on a top gateway
    /// what was copied. Returns what it covers per half (the records recovery skips) and
    /// what could not be loaded (a state of another strategy or over a lowered limit, a
    /// topic no longer keyed): those states are rebuilt from the segments kept.
    pub fn restore(
        &mut self,
        cfg: &NodeConfig,
        bytes: &[u8],
    ) -> Result<(BTreeMap<TopicIdx, Seq>, Vec<String>), KeyedCheckpointError> {
        let parts = keyed_checkpoint::decode(bytes)?;
        let (mut covered, mut problems) = (BTreeMap::new(), Vec::new());
        for part in parts {
            let halves: Vec<(TopicIdx, Seq)> = part
                .halves
                .iter()
                .filter_map(|&(sync, c)| {
                    let t = cfg.topics.iter().position(|t| t.name == part.name && t.sync == sync)?;
                    Some((TopicIdx(t as u16), c))
                })
                .collect();
            let Some(i) = halves.iter().find_map(|&(t, _)| self.of_topic[t.0 as usize]) else {
                problems.push(format!("topic {:?} is no longer keyed here; its checkpointed state is left", part.name));
                continue;
            };
            let not_loaded = self.load_state(cfg, (halves[0].0 .0 as usize, i), part.state, part.observed).err();
            if let Some(why) = not_loaded {
                self.rebuilt_short[i] = halves.iter().any(|&(_, c)| c > 0);
                problems.push(format!(
                    "the checkpointed state of topic {:?} is not loaded ({why}); it is rebuilt from the segments \
                     kept, without the writes of segments deleted behind the checkpoint",
                    part.name
                ));
                continue;
            }
            if let Some(f) = &mut self.fan_out {
                if let Some(&(up, _)) = halves.iter().find(|&&(t, _)| f.up_half(t) == Some(t)) {
                    if part.relayed.len() as u64 > cfg.gateway.streams_max as u64 {
                        problems.push(format!("topic {:?}: more copied streams than gateway.streams_max", part.name));
                    } else {
                        f.restore_relayed(up, &part.relayed);
                    }
                }
            }
            for &(t, c) in &halves {
                self.fed_to[t.0 as usize] = c;
            }
            covered.extend(halves);
        }
        Ok((covered, problems))
    }

    /// A commit's keyed writes are merged: the fan-out lets go of what is copied, and the
    /// copies it made durable are handed out once.
    pub fn on_committed(&mut self) -> Vec<CopyMade> {
        if let Some(f) = &mut self.fan_out {
            f.on_committed();
        }
        self.take_copies_made()
    }

    /// The copies merged since this was last asked that this node made (at recovery, of
    /// newest segments only).
    pub fn take_copies_made(&mut self) -> Vec<CopyMade> {
        std::mem::take(&mut self.copies_made)
    }

    /// Batches recovery found not copied beyond what the fan-out's queue takes.
    pub fn copies_deferred(&self) -> u64 {
        self.fan_out.as_ref().map_or(0, |f| f.overflowed)
    }

    /// A commit failed: the copies it carried are handed again.
    pub fn on_commit_failed(&mut self) {
        if let Some(f) = &mut self.fan_out {
            f.on_commit_failed();
        }
    }

    /// The next copy of an edge's write for the commit (see `keyed_fanout`).
    pub fn take_copy(&mut self, dec: &mut BatchDecoder) -> Option<KeyedCopy> {
        self.fan_out.as_mut()?.take(dec)
    }

    /// A copy the commit could not take now.
    pub fn put_back_copy(&mut self, c: KeyedCopy) {
        self.fan_out.as_mut().expect("taken from the fan-out").put_back(c);
    }

    /// Writes durable here not yet copied for the other edges.
    pub fn copies_waiting(&self) -> u64 {
        self.fan_out.as_ref().map_or(0, KeyedFanOut::waiting_records)
    }

    /// Writes of keyed topic `topic` (either half) durable here not yet copied.
    pub fn copies_waiting_of(&self, topic: TopicIdx) -> u64 {
        let Some(f) = &self.fan_out else { return 0 };
        f.up_half(topic).map_or(0, |up| f.waiting_records_of(up))
    }

    /// Bytes of batches waiting for their copies: room the receiver gives up.
    pub fn copies_queued_bytes(&self) -> u64 {
        self.fan_out.as_ref().map_or(0, KeyedFanOut::queued_bytes)
    }

    /// Bytes the fan-out holds (memory part `GatewayPending`).
    pub fn fan_out_bytes(&self) -> u64 {
        self.fan_out.as_ref().map_or(0, KeyedFanOut::bytes)
    }
}

/// The keyed states' planned memory: each state's limits and newest writes per origin
/// (one per keyed topic name), and the copy a commit in flight keeps of what it writes to
/// keyed topics (at most its appends). (A checkpoint being written takes the share recovery plans for reading one
/// whole: the node writes none while it recovers, `recovery::planned`.)
pub(crate) fn planned(cfg: &NodeConfig, b: &PlanBasis) -> MemoryUsage {
    let mut m = MemoryUsage::default();
    let keyed = KeyedTopics::new(cfg);
    if keyed.states.is_empty() {
        return m;
    }
    let states: u64 = keyed.states.iter().map(|s| s.limits().planned_bytes()).sum();
    m.set(MemoryPart::Index, states + keyed.states.len() as u64 * Observed::planned_bytes());
    m.set(MemoryPart::ProduceBuffer, crate::commit::appends_planned(b));
    if keyed.fan_out.is_some() {
        m.set(MemoryPart::GatewayPending, crate::keyed_fanout::planned_bytes(cfg, b.record_max));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_batch, Compression, RecordRef};
    use crate::config::{KeyedTopic, Role, TopicConfig};
    use crate::hlc::Hlc;
    use crate::keyed::{KeyedLimits, Strategy, VersionVector};

    /// A batch of `n` puts of 1 KiB values from `origin`, each to a key of its own.
    fn puts(origin: u64, base_seq: Seq, n: usize) -> Vec<u8> {
        let mut value = Vec::new();
        let op = KeyedOp { context: VersionVector::new(), cloud: false, relayed: None, kind: OpKind::Put(&[7; 1024]) };
        op.encode(&mut value);
        let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("key-{origin}-{base_seq}-{i}").into_bytes()).collect();
        let recs: Vec<RecordRef<'_>> =
            keys.iter().map(|k| RecordRef { hlc: Hlc(1 << 20), key: Some(k), value: &value }).collect();
        let mut out = Vec::new();
        encode_batch(NodeId(origin), base_seq, &recs, Compression::None, &mut out);
        out
    }

    /// A batch of `n` increments by 1 of key `stock` from `origin`.
    fn increments(origin: u64, base_seq: Seq, n: usize) -> Vec<u8> {
        let mut value = Vec::new();
        let op = KeyedOp { context: VersionVector::new(), cloud: false, relayed: None, kind: OpKind::Increment(1) };
        op.encode(&mut value);
        let recs: Vec<RecordRef<'_>> =
            (0..n).map(|_| RecordRef { hlc: Hlc(1 << 20), key: Some(b"stock"), value: &value }).collect();
        let mut out = Vec::new();
        encode_batch(NodeId(origin), base_seq, &recs, Compression::None, &mut out);
        out
    }

    /// Recovery merges a batch that straddles what the loaded checkpoint covers whole (its
    /// log lost records the checkpoint holds, and a replica received them again at the same
    /// offsets; swarm seed 1449): the writes below the covered point are `Seen`, so a
    /// counter (whose increments are not idempotent by value) counts each write once.
    #[test]
    fn a_batch_straddling_the_checkpoint_is_merged_once() {
        let mut t = TopicConfig::new("stock", SyncDirection::Local);
        t.keyed = Some(KeyedTopic { strategy: Strategy::Counter, limits: KeyedTopic::DEFAULT_LIMITS, merge: None });
        let cfg = NodeConfig::new(NodeId(1), Role::Edge, vec![t]);
        let (mut k, mut dec, topic) = (KeyedTopics::new(&cfg), BatchDecoder::new(), TopicIdx(0));
        k.apply_batch(topic, &increments(2, 0, 3), 0..3, &mut dec, Feed::Committed);
        let (bytes, covers) = k.checkpoint(&cfg);
        assert_eq!(covers, vec![(topic, 3)]);
        let mut restored = KeyedTopics::new(&cfg);
        let (covered, problems) = restored.restore(&cfg, &bytes).expect("decodes");
        assert_eq!((covered.get(&topic), problems.len()), (Some(&3), 0));
        // The segment after the checkpoint holds writes 1..5 of origin 2, in one batch.
        restored.apply_batch(topic, &increments(2, 1, 4), 1..5, &mut dec, Feed::Recovered { newest: true });
        let value = |k: &KeyedTopics| match k.state(topic).map(|s| s.get(b"stock")) {
            Some(crate::keyed::Value::Number(n)) => n,
            other => panic!("a counter answers a number: {other:?}"),
        };
        assert_eq!(value(&restored), 5, "writes 0..5, each once");
        assert_eq!(restored.counters.applied, 2, "only writes 3 and 4 are new");
        k.apply_batch(topic, &increments(2, 3, 2), 3..5, &mut dec, Feed::Committed);
        assert_eq!(value(&restored), value(&k), "as the replica that never restarted");
    }

    /// A member's strong keyed topic is merged as the site's Raft applies it, with the
    /// cluster as every write's origin, never from the member's log (whose batches name the
    /// member); its state travels in the site's snapshots, and a member takes a snapshot's
    /// state only when it holds more of the cluster's stream than its own.
    #[test]
    fn a_strong_keyed_topic_is_merged_from_the_site_and_taken_from_its_snapshots() {
        let mut t = TopicConfig::new("stock", SyncDirection::EdgeToCloud);
        t.consistency = crate::config::Consistency::Strong;
        t.keyed = Some(KeyedTopic { strategy: Strategy::Counter, limits: KeyedTopic::DEFAULT_LIMITS, merge: None });
        let mut cfg = NodeConfig::new(NodeId(1), Role::Edge, vec![t]);
        let cluster = NodeId(9);
        cfg.cluster = Some(crate::config::ClusterConfig::new("shop", cluster, vec![NodeId(1), NodeId(2), NodeId(3)]));
        let (mut k, mut dec, topic) = (KeyedTopics::new(&cfg), BatchDecoder::new(), TopicIdx(0));
        assert!(k.is_site_fed(topic));
        let mut op = Vec::new();
        KeyedOp { context: VersionVector::new(), cloud: false, relayed: None, kind: OpKind::Increment(1) }
            .encode(&mut op);
        let write = |k: &mut KeyedTopics, seq: Seq| {
            k.apply_site_write(topic, Dot { origin: cluster, seq }, Hlc(1 << 20), Some(b"stock"), &op)
        };
        let value = |k: &KeyedTopics| match k.state(topic).map(|s| s.get(b"stock")) {
            Some(crate::keyed::Value::Number(n)) => n,
            other => panic!("a counter answers a number: {other:?}"),
        };
        for seq in 0..3 {
            write(&mut k, seq);
        }
        assert_eq!(value(&k), 3);
        // The member's own log of the same records (its id as their batches' origin).
        k.apply_batch(topic, &increments(1, 0, 3), 0..3, &mut dec, Feed::Committed);
        assert_eq!(value(&k), 3, "the log feeds no site-fed state");
        assert_eq!(k.observed[0].of(cluster).map(|(seq, _)| seq), Some(2));
        assert_eq!(k.checkpoint(&cfg).1, vec![(topic, Seq::MAX)], "it holds no segment back");

        let snapshot = k.site_snapshot(&cfg);
        let mut behind = KeyedTopics::new(&cfg);
        write(&mut behind, 0);
        assert!(behind.restore_site_snapshot(&cfg, &snapshot, cluster).is_empty());
        assert_eq!(value(&behind), 3, "a member behind takes the snapshot's state");
        write(&mut behind, 1);
        assert_eq!(value(&behind), 3, "Raft applying an entry again after the snapshot's point changes nothing");
        write(&mut behind, 3);
        assert_eq!(value(&behind), 4);
        assert!(behind.restore_site_snapshot(&cfg, &snapshot, cluster).is_empty());
        assert_eq!(value(&behind), 4, "a member ahead of a snapshot keeps its own state");
        let problems = behind.restore_site_snapshot(&cfg, b"not a checkpoint", cluster);
        assert!(problems.len() == 1 && problems[0].contains("do not decode"), "{problems:?}");
        assert_eq!(value(&behind), 4);
    }

    /// A write the state had no room for is in the log and not in the state: no checkpoint
    /// covers its batch, so its segment stays for a restart with a higher limit to merge.
    #[test]
    fn a_checkpoint_covers_nothing_from_a_write_the_state_refused() {
        let mut t = TopicConfig::new("prices", SyncDirection::Local);
        let limits = KeyedLimits { state_bytes_max: 8 << 10, conflict_log_bytes_max: 1 << 10 };
        t.keyed = Some(KeyedTopic { strategy: Strategy::LastWriteWins, limits, merge: None });
        let cfg = NodeConfig::new(NodeId(1), Role::Edge, vec![t]);
        let (mut k, mut dec, topic) = (KeyedTopics::new(&cfg), BatchDecoder::new(), TopicIdx(0));
        k.apply_batch(topic, &puts(2, 0, 2), 0..2, &mut dec, Feed::Committed);
        assert_eq!(k.checkpoint(&cfg).1, vec![(topic, 2)], "everything merged is covered");
        k.apply_batch(topic, &puts(2, 2, 8), 2..10, &mut dec, Feed::Committed);
        assert!(k.counters.refused_full > 0, "the state is full");
        k.apply_batch(topic, &puts(3, 0, 1), 10..11, &mut dec, Feed::Committed);
        assert_eq!(k.fed_beyond(|_| 0), 11);
        let (bytes, covers) = k.checkpoint(&cfg);
        assert_eq!(covers, vec![(topic, 2)], "not from the batch with a refused write on");
        let mut restored = KeyedTopics::new(&cfg);
        let (covered, problems) = restored.restore(&cfg, &bytes).expect("decodes");
        assert_eq!((covered.get(&topic), problems.len()), (Some(&2), 0));
        assert_eq!(restored.state(topic).map(KeyedState::key_count), k.state(topic).map(KeyedState::key_count));
        assert_eq!(restored.observed, k.observed, "what reads rest on is checkpointed");
        let bounded = ReadConsistency::Bounded { staleness_max_ms: u64::MAX };
        assert!(
            matches!(k.decide_read(&cfg, topic, 0, bounded), Some(Err(ReadRefused::Incomplete(_)))),
            "a state missing a write it refused does not vouch for its staleness"
        );
        let stamp = restored.decide_read(&cfg, topic, 0, bounded);
        assert_eq!(stamp.map(|r| r.map(|s| s.staleness_ms)), Some(Ok(Some(0))), "a clock behind the writes'");

        // A checkpoint that does not load (the strategy changed): the state is rebuilt from
        // the segments kept, which may lack what went behind it; it vouches for nothing.
        let mut changed = cfg.clone();
        changed.topics[0].keyed.as_mut().expect("keyed").strategy = Strategy::FirstWriteWins;
        let mut rebuilt = KeyedTopics::new(&changed);
        let (_, problems) = rebuilt.restore(&changed, &bytes).expect("decodes");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(matches!(rebuilt.decide_read(&changed, topic, 0, bounded), Some(Err(ReadRefused::Incomplete(_)))));
        let eventual = rebuilt.decide_read(&changed, topic, 0, ReadConsistency::Eventual);
        assert!(matches!(eventual, Some(Ok(ReadStamp { staleness_ms: None, .. }))), "and states no staleness");
    }
}

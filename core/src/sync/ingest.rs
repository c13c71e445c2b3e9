//! The gateway's side of sync: sessions per origin, and per (origin, topic) stream the
//! high-water marks that make delivery exactly-once.
//!
//! - `appended`: one past the last sequence accepted into the log (maybe not durable).
//! - `durable`: one past the last sequence made durable; only this is ever acknowledged.
//!
//! A batch below `appended` is a duplicate and dropped. A batch starting above it follows
//! a gap (an earlier message was lost): it is kept, within half the receive budget, and
//! answered `Refusal::Missing`, so the peer sends again only the lost range; once that
//! arrives, the kept batches are taken in order. A gap with no room to keep what follows
//! is refused with `Refusal::SendAgain`, and the peer sends everything again from the mark.

use super::proto::{Refusal, SkipReason, SyncMsg, TopicStatus};
use crate::codec::{BatchDecoder, BatchEncoder, BatchHeader, Compression, DecodedBatch, RecordRef};
use crate::config::NodeConfig;
use crate::effects::{Ctx, Fx};
use crate::hlc::Hlc;
use crate::io::Event;
use crate::memory::{MemoryPart, MemoryUsage, PlanBasis};
use crate::types::{Instant, NodeId, Seq, TopicIdx};
use std::collections::BTreeMap;

/// Heap bytes one stream's marks cost in `Ingest`, with the map's slack (for the memory
/// plan and `index_bytes`).
pub const GATEWAY_STREAM_ENTRY_BYTES: u64 = 64;
/// Heap bytes one session costs in `Ingest`, with the map's slack.
pub const GATEWAY_SESSION_ENTRY_BYTES: u64 = 64;

/// Ingest's planned memory: the marks and sessions of `gateway.streams_max` streams on a
/// gateway; on an edge, one session and a mark per `cloud-to-edge` topic.
pub(crate) fn planned(cfg: &NodeConfig, b: &PlanBasis) -> MemoryUsage {
    let streams = match (b.edge, b.down) {
        (false, _) => cfg.gateway.streams_max as u64,
        (true, 0) => 0,
        (true, down) => down + 1,
    };
    let mut m = MemoryUsage::default();
    m.set(MemoryPart::Index, streams * (GATEWAY_STREAM_ENTRY_BYTES + GATEWAY_SESSION_ENTRY_BYTES));
    m
}

/// Durable and accepted high-water marks of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GwStream {
    pub appended: Seq,
    pub durable: Seq,
}

#[derive(Clone, Copy, Debug)]
struct GwSession {
    id: u64,
    last_heard: Instant,
}

/// A batch accepted from a peer, waiting for the next group commit.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The stream it continues: its origin (for a stream that comes down, the peer it
    /// comes from, see `Ingest::stream_origin`) and topic.
    pub origin: NodeId,
    pub topic: TopicIdx,
    /// The origin its header names: whose records they are.
    pub identity: NodeId,
    /// The peer that sent it (a relay forwards other origins' streams).
    pub via: NodeId,
    pub base_seq: Seq,
    pub count: u32,
    pub batch: Vec<u8>,
    pub value_crcs: Vec<u32>,
    /// The records' keys and values, in bytes (`Event::Stored::payload_bytes`).
    pub payload_bytes: u64,
    pub max_record_hlc: Hlc,
    pub received_hlc: Hlc,
    pub hlc_rejected: bool,
    /// What it draws from the memory budget (`GatewayPending`) until it is durable.
    pub cost: u64,
}

impl Accepted {
    fn cost_of(batch: &[u8], records: usize) -> u64 {
        (std::mem::size_of::<Accepted>() + batch.len() + 4 * records) as u64
    }
}

/// A batch of a peer's own stream that arrived beyond a gap, kept until the gap fills.
#[derive(Debug)]
struct Kept {
    bytes: Vec<u8>,
    /// The peer that sent it (a relay forwards other origins' streams).
    via: NodeId,
    received_hlc: Hlc,
    hlc_rejected: bool,
    /// What it draws from the receive budget (in `Ingest::pending_bytes`).
    cost: u64,
}

impl Kept {
    /// Its bytes and its entry, twice (the map's nodes hold entries with slack).
    fn cost_of(bytes: &[u8]) -> u64 {
        (bytes.len() + 2 * (std::mem::size_of::<Kept>() + std::mem::size_of::<(NodeId, TopicIdx, Seq)>())) as u64
    }
}

/// A batch as `Ingest::take` takes it: its bytes, its header, and what came with it.
struct Arrived<'b> {
    bytes: &'b [u8],
    header: BatchHeader,
    via: NodeId,
    received_hlc: Hlc,
    hlc_rejected: bool,
}

/// Which kept batches `Ingest::forget_kept` forgets.
#[derive(Clone, Copy)]
enum Forget {
    /// What this peer sent (of its own streams, or those it relays).
    Sent(NodeId),
    /// What is kept of one stream.
    Stream(NodeId, TopicIdx),
}

/// Why `Ingest::take` took nothing: the rest of the message is not taken either.
struct NoRoom;

/// The gateway's sync state machine.
#[derive(Debug, Default)]
pub struct Ingest {
    streams: BTreeMap<(NodeId, TopicIdx), GwStream>,
    sessions: BTreeMap<NodeId, GwSession>,
    /// Batches beyond a gap, by stream and first sequence.
    kept: BTreeMap<(NodeId, TopicIdx, Seq), Kept>,
    /// Memory of batches accepted and not yet durable (see `Accepted::cost`), and of kept
    /// batches (`kept_bytes` of it).
    pub pending_bytes: u64,
    pub kept_bytes: u64,
    /// Batches kept beyond a gap.
    pub batches_kept: u64,
    /// Data refused because the storage budget had no room for it (the edge resends).
    pub storage_refused: u64,
    pub duplicates_dropped: u64,
    pub gaps_refused: u64,
}

/// A Data message as `Ingest::on_data` takes it: who sent it, in which session, for which
/// topic, its batches, and whether its sender's timestamp was rejected as too far ahead.
pub struct DataIn<'m> {
    pub from: NodeId,
    pub session: u64,
    pub topic: &'m str,
    pub batches: Vec<Vec<u8>>,
    pub hlc_rejected: bool,
}

/// What the node must do with an accepted Data message.
pub struct DataOutcome {
    pub accepted: Vec<Accepted>,
}

impl Ingest {
    /// Starts from the high-water marks recovered from the log.
    pub fn recovered(marks: BTreeMap<(NodeId, TopicIdx), Seq>) -> Ingest {
        let streams = marks.into_iter().map(|(k, s)| (k, GwStream { appended: s, durable: s })).collect();
        Ingest { streams, ..Ingest::default() }
    }

    pub fn stream(&self, origin: NodeId, topic: TopicIdx) -> Option<GwStream> {
        self.streams.get(&(origin, topic)).copied()
    }

    pub fn streams(&self) -> impl Iterator<Item = (&(NodeId, TopicIdx), &GwStream)> {
        self.streams.iter()
    }

    /// Every stream's durable mark, in stream order: what a checkpoint of the marks holds
    /// (`crate::marks`).
    pub fn durable_marks(&self) -> impl ExactSizeIterator<Item = ((NodeId, TopicIdx), Seq)> + '_ {
        self.streams.iter().map(|(&k, s)| (k, s.durable))
    }

    /// Heap bytes of the stream marks and sessions.
    pub fn index_bytes(&self) -> u64 {
        self.streams.len() as u64 * GATEWAY_STREAM_ENTRY_BYTES
            + self.sessions.len() as u64 * GATEWAY_SESSION_ENTRY_BYTES
    }

    /// A topic this node receives from peer `from` by that name, and whether it comes
    /// down (from this node's upstream: its `cloud-to-edge` topics) rather than up (on a
    /// gateway, from any other peer: the topics that go up). Any other is answered as
    /// unknown, so that a topic's log holds only streams that arrive the way its
    /// direction says; so is a classified topic this node's zone may not hold (its
    /// senders check the zone its Welcome states; this holds if one did not).
    pub(crate) fn topic_idx(cfg: &NodeConfig, name: &str, from: NodeId) -> Option<(TopicIdx, bool)> {
        let down = cfg.upstream == Some(from);
        let here = cfg.zone.as_deref();
        let received = |t: &crate::config::TopicConfig| match (down, cfg.role) {
            _ if t.placement.as_ref().is_some_and(|p| !p.allows(here)) => false,
            (true, _) => t.sync.goes_down(),
            (false, crate::config::Role::Gateway) => t.sync.goes_up(),
            (false, crate::config::Role::Edge) => false,
        };
        let i = cfg.topics.iter().position(|t| t.name == name && received(t))?;
        Some((TopicIdx(i as u16), down))
    }

    /// The stream a batch or skip from peer `from` naming `origin` continues. A stream
    /// that comes down is keyed by the peer it comes from: the log holds that one stream,
    /// whichever tier wrote it. A stream that goes up is the origin's own, which only the
    /// origin itself or a relay below this gateway (`gateway.relays`) may send.
    fn stream_origin(cfg: &NodeConfig, from: NodeId, origin: NodeId, down: bool) -> Result<NodeId, String> {
        if down {
            Ok(from)
        } else if origin == from || cfg.gateway.relays.contains(&from) {
            Ok(origin)
        } else {
            Err(format!("batch claims origin {origin}, and node {from} is not a relay of this gateway"))
        }
    }

    /// The session `origin` has open here, if any.
    pub fn session_of(&self, origin: NodeId) -> Option<u64> {
        self.sessions.get(&origin).map(|s| s.id)
    }

    /// A Hello: remember the session and answer with the durable marks.
    pub(crate) fn on_hello(
        &mut self,
        cx: &mut Ctx<'_>,
        from: NodeId,
        origin: NodeId,
        session: u64,
        topics: Vec<String>,
    ) {
        let (now, hlc, cfg, fx) = (cx.now, cx.hlc, cx.cfg, &mut *cx.fx);
        if origin != from {
            fx.event(Event::BadMessage { from, error: format!("hello claims origin {origin}") });
            return;
        }
        if !self.sessions.contains_key(&origin) && self.sessions.len() >= cfg.gateway.streams_max {
            // Sessions are bounded like streams: refuse every topic, the edge retries later.
            let answer = topics.into_iter().map(|name| (name, TopicStatus::TooManyStreams, 0)).collect();
            let batch_raw_max = cfg.receive_batch_raw_max();
            return fx
                .send(from, &SyncMsg::Welcome { session, hlc, topics: answer, batch_raw_max, zone: cfg.zone.clone() });
        }
        self.sessions.insert(origin, GwSession { id: session, last_heard: now });
        // A new session starts from the durable marks: what was kept of the last one is
        // sent again (by then the sender may hold other records under those sequences,
        // if its storage was replaced).
        self.forget_kept(Forget::Sent(origin));
        let relay = cfg.gateway.relays.contains(&from);
        let mut answer = Vec::with_capacity(topics.len());
        for name in topics {
            let Some((idx, down)) = Self::topic_idx(cfg, &name, from) else {
                answer.push((name, TopicStatus::UnknownTopic, 0));
                continue;
            };
            if relay && !down {
                // A relay sends its edges' streams, not one of its own: their marks are
                // made as they arrive, and it starts from what it knows was acknowledged.
                answer.push((name, TopicStatus::Accepted, 0));
                continue;
            }
            let known = self.streams.contains_key(&(origin, idx));
            if !known && self.streams.len() >= cfg.gateway.streams_max {
                answer.push((name, TopicStatus::TooManyStreams, 0));
                continue;
            }
            let st = self.streams.entry((origin, idx)).or_default();
            answer.push((name, TopicStatus::Accepted, st.durable));
        }
        let batch_raw_max = cfg.receive_batch_raw_max();
        fx.send(from, &SyncMsg::Welcome { session, hlc, topics: answer, batch_raw_max, zone: cfg.zone.clone() });
    }

    /// A Data message: accept what continues each stream, drop duplicates, refuse gaps.
    /// `(storage_room, pending_max)`: the storage it may reserve, and what accepted
    /// batches may hold in memory at most (`gateway.pending_bytes_max` less what held
    /// messages take of it).
    pub(crate) fn on_data(
        &mut self,
        cx: &mut Ctx<'_>,
        data: DataIn<'_>,
        (mut storage_room, pending_max): (u64, u64),
        codec: (&mut BatchEncoder, &mut BatchDecoder),
    ) -> DataOutcome {
        let DataIn { from, session, topic, batches, hlc_rejected } = data;
        let (now, received_hlc, cfg, fx) = (cx.now, cx.hlc, cx.cfg, &mut *cx.fx);
        let (enc, dec) = codec;
        let mut accepted = Vec::new();
        match self.sessions.get_mut(&from) {
            Some(s) if s.id == session => s.last_heard = now,
            _ => {
                // Unknown session: we restarted, or it is stale. Tell the edge to start over.
                fx.send(from, &SyncMsg::Reset { session });
                return DataOutcome { accepted };
            }
        }
        let Some((idx, down)) = Self::topic_idx(cfg, topic, from) else {
            fx.event(Event::BadMessage { from, error: format!("data for unknown topic {topic:?}") });
            return DataOutcome { accepted };
        };
        // Streams whose marks answer the message: the ones refused (an origin's batch
        // refused refuses its later ones; a relay's other origins go on), and every one
        // seen when nothing was accepted.
        let mut seen: Vec<NodeId> = self.streams.contains_key(&(from, idx)).then_some(from).into_iter().collect();
        let mut refused: Vec<NodeId> = Vec::new();
        let mut stop = false;
        for bytes in batches {
            let batch = match DecodedBatch::decode_with(&bytes, dec) {
                Ok(b) => b,
                Err(e) => {
                    fx.event(Event::BadMessage { from, error: format!("batch rejected: {e}") });
                    stop = true;
                    break;
                }
            };
            let h: BatchHeader = batch.header;
            if u64::from(h.raw_len) > cfg.receive_batch_raw_max() {
                let max = cfg.receive_batch_raw_max();
                let what = match cfg.role {
                    crate::config::Role::Gateway => "gateway.batch_raw_bytes_max",
                    crate::config::Role::Edge => "what this edge's sync.batch_bytes_max and log.value_bytes_max allow",
                };
                let error = format!("batch of {} record bytes exceeds {what} = {max}", h.raw_len);
                fx.event(Event::BadMessage { from, error });
                stop = true;
                break;
            }
            let key = match Self::stream_origin(cfg, from, h.origin, down) {
                Ok(k) => k,
                Err(error) => {
                    fx.event(Event::BadMessage { from, error });
                    stop = true;
                    break;
                }
            };
            if refused.contains(&key) {
                continue;
            }
            if !self.streams.contains_key(&(key, idx)) {
                // An edge's streams are made at its Hello; a relayed one when it first
                // arrives, within the same bound.
                if key == from || self.streams.len() >= cfg.gateway.streams_max {
                    refused.push(key);
                    continue;
                }
                self.streams.insert((key, idx), GwStream::default());
            }
            if !seen.contains(&key) {
                seen.push(key);
            }
            let appended = self.streams[&(key, idx)].appended;
            if h.end_seq() <= appended {
                self.duplicates_dropped += u64::from(h.count);
                continue;
            }
            let arrived = Arrived { bytes: &bytes, header: h, via: from, received_hlc, hlc_rejected };
            if h.base_seq > appended {
                if self.keep((key, idx), &arrived, pending_max) {
                    continue;
                }
                self.gaps_refused += 1;
                refused.push(key);
                continue;
            }
            // No room: nothing after it is taken either; the senders resend.
            let taken = self.take((key, idx), arrived, &batch, (&mut storage_room, pending_max), enc).and_then(|a| {
                accepted.push(a);
                self.take_kept((key, idx), (&mut storage_room, pending_max), (&mut *enc, &mut *dec), &mut accepted)
            });
            if taken.is_err() {
                refused.push(key);
                stop = true;
                break;
            }
        }
        let mut answer = if accepted.is_empty() || stop { seen.clone() } else { refused.clone() };
        // A stream that still lacks a range before batches kept here says so, whatever
        // else the message did.
        let lacking: Vec<NodeId> =
            seen.iter().filter(|&&k| !answer.contains(&k) && self.first_kept(k, idx).is_some()).copied().collect();
        answer.extend(lacking);
        for origin in answer {
            let Some(st) = self.streams.get(&(origin, idx)) else { continue };
            let (next_seq, expected, topic) = (st.durable, st.appended, topic.to_string());
            let refused = match self.first_kept(origin, idx) {
                _ if refused.contains(&origin) => Refusal::SendAgain,
                Some(to) => Refusal::Missing { to },
                None => Refusal::None,
            };
            let ack = SyncMsg::Ack { session, hlc: received_hlc, topic, origin, next_seq, expected, refused };
            fx.send(from, &ack);
        }
        DataOutcome { accepted }
    }

    /// Takes a batch that continues its stream (`base_seq <= appended < end_seq`): its
    /// records from `appended` on, if the receive budget and the storage have room.
    fn take(
        &mut self,
        (key, idx): (NodeId, TopicIdx),
        a: Arrived<'_>,
        batch: &DecodedBatch<'_>,
        (storage_room, pending_max): (&mut u64, u64),
        enc: &mut BatchEncoder,
    ) -> Result<Accepted, NoRoom> {
        let h = a.header;
        let cost = Accepted::cost_of(a.bytes, h.count as usize);
        if self.pending_bytes + cost > pending_max {
            return Err(NoRoom);
        }
        let need = a.bytes.len() as u64 + crate::log::LOG_FRAME_OVERHEAD as u64;
        if need > *storage_room {
            self.storage_refused += 1;
            return Err(NoRoom);
        }
        *storage_room -= need;
        let stream = self.streams.get_mut(&(key, idx)).expect("a known stream");
        debug_assert!(h.base_seq <= stream.appended && stream.appended < h.end_seq());
        let skip = (stream.appended - h.base_seq) as usize;
        self.duplicates_dropped += skip as u64;
        let records: Vec<RecordRef<'_>> = batch.records().skip(skip).collect();
        let value_crcs = records.iter().map(|r| crc32c::crc32c(r.value)).collect();
        let payload_bytes = records.iter().map(|r| r.payload_len() as u64).sum();
        let max_record_hlc = records.iter().map(|r| r.hlc).max().unwrap_or(Hlc::ZERO);
        let stored = if skip == 0 {
            a.bytes.to_vec()
        } else {
            let mut b = Vec::new();
            enc.encode(h.origin, stream.appended, &records, Compression::Zstd, &mut b);
            // The encoder reserved room for the raw records; keep only what it holds,
            // as the memory accounting counts (see `Accepted::cost_of`).
            b.shrink_to_fit();
            b
        };
        let count = records.len() as u32;
        let cost = Accepted::cost_of(&stored, records.len());
        self.pending_bytes += cost;
        let base_seq = stream.appended;
        stream.appended += u64::from(count);
        Ok(Accepted {
            origin: key,
            topic: idx,
            identity: h.origin,
            via: a.via,
            base_seq,
            count,
            batch: stored,
            value_crcs,
            payload_bytes,
            max_record_hlc,
            received_hlc: a.received_hlc,
            hlc_rejected: a.hlc_rejected,
            cost,
        })
    }

    /// Keeps a batch that arrived beyond a gap in its stream, if it fits in
    /// half the receive budget (the rest stays for batches that continue streams). A copy
    /// of one already kept is dropped as a duplicate.
    fn keep(&mut self, (key, idx): (NodeId, TopicIdx), a: &Arrived<'_>, pending_max: u64) -> bool {
        let at = (key, idx, a.header.base_seq);
        if self.kept.get(&at).is_some_and(|k| k.bytes == a.bytes) {
            self.duplicates_dropped += u64::from(a.header.count);
            return true;
        }
        let cost = Kept::cost_of(a.bytes);
        if self.kept.contains_key(&at)
            || self.kept_bytes + cost > pending_max / 2
            || self.pending_bytes + cost > pending_max
        {
            return false;
        }
        let (received_hlc, hlc_rejected) = (a.received_hlc, a.hlc_rejected);
        let kept = Kept { bytes: a.bytes.to_vec(), via: a.via, received_hlc, hlc_rejected, cost };
        self.kept.insert(at, kept);
        self.pending_bytes += cost;
        self.kept_bytes += cost;
        self.batches_kept += 1;
        true
    }

    /// Takes the kept batches that now continue `key`'s stream, in order, until one does
    /// not fit (it stays kept).
    fn take_kept(
        &mut self,
        (key, idx): (NodeId, TopicIdx),
        room: (&mut u64, u64),
        (enc, dec): (&mut BatchEncoder, &mut BatchDecoder),
        accepted: &mut Vec<Accepted>,
    ) -> Result<(), NoRoom> {
        let (storage_room, pending_max) = room;
        loop {
            let appended = self.streams[&(key, idx)].appended;
            let Some((&at, _)) = self.kept.range((key, idx, 0)..=(key, idx, appended)).next() else {
                return Ok(());
            };
            let kept = self.kept.remove(&at).expect("found above");
            self.pending_bytes -= kept.cost;
            self.kept_bytes -= kept.cost;
            // (It decoded when it arrived; the same bytes decode the same way.)
            let Ok(batch) = DecodedBatch::decode_with(&kept.bytes, dec) else { continue };
            let header = batch.header;
            if header.end_seq() <= appended {
                self.duplicates_dropped += u64::from(header.count);
                continue;
            }
            let (received_hlc, hlc_rejected) = (kept.received_hlc, kept.hlc_rejected);
            let arrived = Arrived { bytes: &kept.bytes, header, via: kept.via, received_hlc, hlc_rejected };
            match self.take((key, idx), arrived, &batch, (&mut *storage_room, pending_max), enc) {
                Ok(a) => accepted.push(a),
                Err(NoRoom) => {
                    drop(batch);
                    self.pending_bytes += kept.cost;
                    self.kept_bytes += kept.cost;
                    self.kept.insert(at, kept);
                    return Err(NoRoom);
                }
            }
        }
    }

    /// Where the first batch kept of `key`'s stream starts, if any.
    fn first_kept(&self, key: NodeId, idx: TopicIdx) -> Option<Seq> {
        self.kept.range((key, idx, 0)..=(key, idx, Seq::MAX)).next().map(|(&(_, _, base), _)| base)
    }

    /// Forgets the batches kept that `peer` sent (`Forget::Sent`), or of one stream.
    fn forget_kept(&mut self, which: Forget) {
        let dropped: Vec<_> = self
            .kept
            .iter()
            .filter(|&(&(k, t, _), kept)| match which {
                Forget::Sent(peer) => kept.via == peer,
                Forget::Stream(key, idx) => (k, t) == (key, idx),
            })
            .map(|(&at, _)| at)
            .collect();
        for at in dropped {
            let kept = self.kept.remove(&at).expect("listed above");
            self.pending_bytes -= kept.cost;
            self.kept_bytes -= kept.cost;
        }
    }

    /// A Skip: `origin`'s stream will never hold `from..to`. Accepted only where the
    /// stream stands (`from <= appended < to`) with nothing awaiting a commit, so the
    /// durable mark moves past the hole in order; otherwise answered with the marks, like
    /// a refused Data. A relay forwards its edges' holes the same way.
    ///
    /// The hole is not written to the log: after a restart the gateway's mark comes back
    /// at the hole's start and the edge skips it again (or, if it has since deleted the
    /// range, skips it as `Deleted`).
    pub(crate) fn on_skip(
        &mut self,
        cx: &mut Ctx<'_>,
        (peer, session): (NodeId, u64),
        (topic, origin): (&str, NodeId),
        (from, to): (Seq, Seq),
        reason: SkipReason,
    ) -> Option<TopicIdx> {
        let (now, hlc, cfg, fx) = (cx.now, cx.hlc, cx.cfg, &mut *cx.fx);
        match self.sessions.get_mut(&peer) {
            Some(s) if s.id == session => s.last_heard = now,
            _ => {
                fx.send(peer, &SyncMsg::Reset { session });
                return None;
            }
        }
        let Some((idx, down)) = Self::topic_idx(cfg, topic, peer) else {
            fx.event(Event::BadMessage { from: peer, error: format!("skip for unknown topic {topic:?}") });
            return None;
        };
        let key = match Self::stream_origin(cfg, peer, origin, down) {
            Ok(k) => k,
            Err(error) => {
                fx.event(Event::BadMessage { from: peer, error });
                return None;
            }
        };
        if key != peer && !self.streams.contains_key(&(key, idx)) && self.streams.len() < cfg.gateway.streams_max {
            self.streams.insert((key, idx), GwStream::default());
        }
        let stream = self.streams.get_mut(&(key, idx))?;
        let mut moved = None;
        // Refused: a gap before it, or a commit in flight where it would start (a skip of
        // what the stream already holds is only answered).
        let refused = if from > stream.appended {
            self.gaps_refused += 1;
            Refusal::SendAgain
        } else if to > stream.appended && stream.durable == stream.appended {
            let start = stream.appended;
            stream.appended = to;
            stream.durable = to;
            fx.event(Event::Skipped { origin: key, topic: idx, from: start, to, reason });
            moved = Some(idx);
            Refusal::None
        } else if to > stream.appended {
            Refusal::SendAgain
        } else {
            Refusal::None
        };
        let (next_seq, expected) = (stream.durable, stream.appended);
        // What was kept beyond the hole is not taken here (a skip carries no batches to
        // commit): forgotten, and the sender goes back for it.
        let refused = if moved.is_some() && self.first_kept(key, idx).is_some() {
            self.forget_kept(Forget::Stream(key, idx));
            Refusal::SendAgain
        } else {
            refused
        };
        let topic = topic.to_string();
        fx.send(peer, &SyncMsg::Ack { session, hlc, topic, origin: key, next_seq, expected, refused });
        moved
    }

    /// The group commit holding these batches is durable: advance and acknowledge, to the
    /// peer that sent each (the origin itself, or the relay that forwarded it).
    pub(crate) fn on_durable(&mut self, batches: &[Accepted], hlc: Hlc, cfg: &NodeConfig, fx: &mut Fx) {
        let mut touched = std::collections::BTreeSet::new();
        for b in batches {
            let st = self.streams.get_mut(&(b.origin, b.topic)).expect("accepted batches belong to known streams");
            let end = b.base_seq + u64::from(b.count);
            assert_eq!(st.durable, b.base_seq, "durable marks advance without gaps");
            st.durable = end;
            debug_assert!(st.durable <= st.appended);
            self.pending_bytes -= b.cost;
            touched.insert((b.via, b.origin, b.topic));
        }
        for (via, origin, topic) in touched {
            let Some(session) = self.sessions.get(&via) else {
                continue;
            };
            let st = self.streams[&(origin, topic)];
            let name = cfg.topics[topic.0 as usize].name.clone();
            let (next_seq, expected) = (st.durable, st.appended);
            let refused = Refusal::None;
            let ack = SyncMsg::Ack { session: session.id, hlc, topic: name, origin, next_seq, expected, refused };
            fx.send(via, &ack);
        }
    }

    /// The group commit failed: everything not durable is forgotten and will be resent.
    pub fn on_commit_failed(&mut self) {
        for st in self.streams.values_mut() {
            st.appended = st.durable;
        }
        self.kept.clear();
        self.pending_bytes = 0;
        self.kept_bytes = 0;
    }

    /// Forgets sessions not heard from for `cfg.sync.gateway_idle_timeout`.
    pub fn expire_sessions(&mut self, now: Instant, cfg: &NodeConfig) {
        let idle = cfg.sync.gateway_idle_timeout;
        let expired: Vec<NodeId> =
            self.sessions.iter().filter(|(_, s)| now.saturating_since(s.last_heard) > idle).map(|(&k, _)| k).collect();
        for origin in expired {
            self.sessions.remove(&origin);
            self.forget_kept(Forget::Sent(origin));
        }
    }
}

/// Stream marks found by scanning a gateway log frame at recovery.
pub fn note_recovered(marks: &mut BTreeMap<(NodeId, TopicIdx), Seq>, topic: TopicIdx, h: &BatchHeader) {
    let m = marks.entry((h.origin, topic)).or_default();
    *m = (*m).max(h.end_seq());
}

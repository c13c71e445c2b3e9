//! The sending side of sync: one session to a peer, one stream per topic this node
//! writes and sends that way. An edge runs one towards its gateway (topics that go up);
//! a gateway runs one per edge for `cloud-to-edge` topics (`super::downlinks`). The
//! receiving side is `super::ingest` on either.
//!
//! Guarantees enforced here:
//! - Only durable records are sent (`sent <= durable_offset`, asserted), so a crash of the
//!   edge can never reuse a sequence number the gateway already holds.
//! - Bounded: batches by `batch_records_max`/`batch_bytes_max` (and half the window,
//!   `super::pace`), bytes in flight by
//!   `window_bytes_max` (less on a slow link: twice what it carries in a round trip,
//!   `super::pace`), one read in flight per stream, one held batch per stream.
//! - Each byte read once: a read returns `log.read_chunk_bytes`, far more than one batch
//!   takes once the log's compression is undone, so the durable frames a read returned
//!   beyond its batch stay in the stream's `ReadAhead`, and the next batches are built
//!   from them without reading the disk again.
//! - Progress: a lost message is resent after a gap report or `retransmit_timeout`; a dead
//!   session is replaced after `session_timeout`, with capped exponential backoff and
//!   seeded jitter so that a fleet does not reconnect in lockstep.
//! - Never silent: a range the edge cannot send (frames that fail their checksum, an
//!   unwritten range after a cut tail, a range retention deleted) is sent as a `Skip`
//!   naming it, so the gateway records the hole instead of waiting for it forever, and
//!   a stream never stalls on one bad frame.

use super::bucket::TokenBucket;
use super::pace::{LinkPace, SentMark};
use super::proto::{Refusal, SkipReason, SyncMsg, TopicStatus, BATCHES_PER_DATA_MAX};
use crate::codec::{self, BatchDecoder, BatchEncoder, Compression, DecodedBatch, RecordRef};
use crate::commit::Tail;
use crate::config::{NodeConfig, SyncConfig, TopicConfig};
use crate::effects::{Ctx, Fx, Owner};
use crate::hlc::Hlc;
use crate::io::{DiskOpId, DiskRequest, Event};
use crate::log::{self, Resync, ScanStop, Segment, TopicLog};
use crate::memory::{MemoryPart, MemoryUsage, PlanBasis};
use crate::types::{Duration, Instant, NodeId, Seq, TopicIdx};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, VecDeque};

/// Flights (sent, unacknowledged sync messages) per stream at most.
pub const FLIGHTS_PER_STREAM_MAX: usize = 1024;

/// The uplink's planned memory: its streams and their flights, batches held back by the
/// bandwidth limit, the window of unacknowledged bytes, one read per stream, and a
/// relay's marks.
pub(crate) fn planned(cfg: &NodeConfig, b: &PlanBasis) -> MemoryUsage {
    // A stream's flight queue grows by doubling up to the first power of two that holds
    // FLIGHTS_PER_STREAM_MAX flights (swarm seed 1181: a satellite link kept 1024 small
    // flights in flight, and the plan had counted 48 bytes for a 56-byte flight).
    let mut m = planned_streams(b.up, b.held_max, b.read_max);
    let window = b.edge || b.up > 0;
    m.set(MemoryPart::SyncWindow, if window { cfg.sync.window_bytes_max + b.up * b.held_max } else { 0 });
    if cfg.is_middle_tier() {
        // A relay's marks, one per stream the gateway tracks at most, and what its flights
        // carry: up to `RELAY_ORIGINS_PER_MESSAGE_MAX` origins each.
        let flights = (FLIGHTS_PER_STREAM_MAX + 1).next_power_of_two() as u64;
        let carried = (flights * RELAY_ORIGINS_PER_MESSAGE_MAX as u64).next_power_of_two() * RELAYED_ENTRY_BYTES;
        m.grow(MemoryPart::Index, relay_marks_bytes(cfg.gateway.streams_max as u64) + b.up * carried);
    }
    m
}

/// What `streams` streams of one sender plan for: their state and flights (`Index`), and
/// a held message and a read each (`SyncHeld`): a read in flight, or the read-ahead it
/// left (never both), counted as the sender's wherever its bytes are.
pub(crate) fn planned_streams(streams: u64, held_max: u64, read_max: u64) -> MemoryUsage {
    let flight_slots = (FLIGHTS_PER_STREAM_MAX + 1).next_power_of_two() as u64;
    let flights = streams * flight_slots * FLIGHT_ENTRY_BYTES;
    let mut m = MemoryUsage::default();
    m.set(MemoryPart::Index, streams_map_bytes(streams) + streams * 256 + flights);
    m.set(MemoryPart::SyncHeld, streams * (held_max + read_max));
    m
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Session {
    Connecting {
        id: u64,
        retry_at: Instant,
    },
    /// `unanswered_since`: when we first sent something the gateway has not answered
    /// since; a rewind does not reset it, only hearing from the gateway does.
    Active {
        id: u64,
        unanswered_since: Option<Instant>,
    },
}

/// Where in a segment file the frame holding log offset `offset` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    base: u64,
    pos: u64,
    offset: u64,
}

/// A sent, unacknowledged message: its records and where they start in the log, so a
/// rewind seeks there instead of rescanning the segment (`None`: rescan).
#[derive(Clone, Copy, Debug)]
struct Flight {
    start: Seq,
    end: Seq,
    raw: u64,
    cursor: Option<Cursor>,
    /// When it was sent, for the link's measurements (`LinkPace`).
    sent: SentMark,
    /// It carries what was sent before (a rewind's, or a patch sent it again): its
    /// acknowledgement may answer an earlier copy, so it measures nothing (Karn's rule; a
    /// delay too short would shrink the window for good).
    again: bool,
}

/// What a relay's message carries of one origin's stream: sequences `from..to`, by which
/// the peer acknowledges it (the flight's `start..end` are the relay's log offsets). A
/// message carries up to `RELAY_ORIGINS_PER_MESSAGE_MAX` origins; `last` marks its last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Relayed {
    origin: NodeId,
    from: Seq,
    to: Seq,
    last: bool,
}

/// Origins one relay message carries at most (what its flight's identities cost is
/// planned from it).
pub const RELAY_ORIGINS_PER_MESSAGE_MAX: usize = 16;

/// Heap bytes of one relayed flight's identity (beside its `Flight`).
pub const RELAYED_ENTRY_BYTES: u64 = std::mem::size_of::<Relayed>() as u64;

/// A middle tier's knowledge of the next tier's marks (`Uplink::relay`).
#[derive(Debug, Default)]
struct RelayMarks {
    /// The next tier's durable mark per (origin, topic), as heard in this session.
    acked: BTreeMap<(NodeId, TopicIdx), Seq>,
    /// Per (origin, topic), where the batches read since the stream last started over
    /// end: the origin's next batch must start there, or the log has a hole (the tier
    /// below skipped it) that is forwarded as a `Skip`.
    passed: BTreeMap<(NodeId, TopicIdx), Seq>,
    /// Per (origin, topic), where a skip this tier accepted ended, until the next tier
    /// acknowledges past it: once the stream has sent its whole log, a hole up to there is
    /// forwarded at once, not when the origin's next batch comes (it may never come: swarm
    /// seed 452, an edge whose last records storage destroyed; 1034: a forwarded hole the
    /// next tier refused, sent again after the rewind).
    skipped: BTreeMap<(NodeId, TopicIdx), Seq>,
}

/// Heap bytes of a relay's marks of `n` streams (all three maps full).
pub(crate) const fn relay_marks_bytes(n: u64) -> u64 {
    3 * crate::memory::btree_bytes(n, std::mem::size_of::<(NodeId, TopicIdx)>(), std::mem::size_of::<Seq>())
}

/// A search for the next good frame after one that failed its checksum (`bad`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Skipping {
    bad: Cursor,
    /// File position to read from next, and the least to read.
    search: u64,
    min_len: usize,
}

#[derive(Clone, Debug)]
struct Held {
    bytes: Vec<u8>,
    start: Seq,
    end: Seq,
    cursor: Option<Cursor>,
    relayed: Vec<Relayed>,
    /// Uncompressed record bytes: what the window counts, so that compression cannot
    /// multiply the records in flight (and resent after a loss).
    raw: u64,
    /// Part of a `Patch`: records of flights already open, sent again.
    patch: bool,
}

/// Sending again a range the peer lacks while it keeps what followed
/// (`Refusal::Missing`): `sent` runs from the range's start to `end`, in batches sent
/// without new flights, then returns to `resume` (and the cursor to `resume_cursor`).
#[derive(Clone, Copy, Debug)]
struct Patch {
    end: Seq,
    resume: Seq,
    resume_cursor: Option<Cursor>,
}

/// Durable whole frames a read returned and no batch has taken yet: bytes from file
/// position `pos` of segment `base`. Never bytes past the durable end when read (a failed
/// commit may write other frames there), and never while the stream's read is in flight,
/// so a stream holds one read's bytes at most (planned as `SyncHeld`).
#[derive(Clone, Debug)]
struct ReadAhead {
    base: u64,
    pos: u64,
    bytes: Vec<u8>,
}

impl ReadAhead {
    /// Its bytes from file position `pos` on, if it holds that position.
    fn from(&self, base: u64, pos: u64) -> Option<&[u8]> {
        let end = self.pos + self.bytes.len() as u64;
        (self.base == base && self.pos <= pos && pos < end).then(|| &self.bytes[(pos - self.pos) as usize..])
    }
}

#[derive(Clone, Debug)]
struct UpStream {
    name: String,
    /// The peer's last Welcome stated a zone the topic's placement does not allow: it gets
    /// nothing of the topic (guarantee 7).
    not_placed: bool,
    accepted: bool,
    /// The gateway's durable high-water mark, as last heard.
    acked: Seq,
    /// Next sequence to send.
    sent: Seq,
    /// The end of the furthest message sent since this sender started: what is sent
    /// below it is sent again (`SendCounters::records_resent`).
    sent_high: Seq,
    /// The end of the furthest flight transmitted: a flight starting below it is sent again.
    transmitted_high: Seq,
    /// Sent and unacknowledged messages, oldest first.
    inflight: VecDeque<Flight>,
    last_progress: Instant,
    /// The read of the log in flight, if any (one per stream at a time).
    reading: Option<Reading>,
    ahead: Option<ReadAhead>,
    cursor: Option<Cursor>,
    read_len_min: u32,
    held: Option<Held>,
    waiting_since: Option<Instant>,
    rewound: Option<(Seq, Instant)>,
    patch: Option<Patch>,
    /// The group commit in flight copies what it writes to this stream's log for it
    /// (`Uplink::on_committed`): no read until it lands, as a stream holds one.
    tail_pending: bool,
    /// The retransmit timeout went back over the window: one message at a time until the
    /// peer answers, so that a dead link is not sent the whole window at every timeout.
    probing: bool,
    skipping: Option<Skipping>,
    /// A relay's: what each flight carries, in step with `inflight` (empty otherwise, so
    /// that an edge's flights cost what they did).
    relayed: VecDeque<Relayed>,
}

impl UpStream {
    /// Whether a report of a gap at `place` is new: the stream did not go back (or patch)
    /// there within `guard`, so the report does not answer a message sent before it did.
    fn fresh_gap(&self, place: Seq, now: Instant, guard: Duration) -> bool {
        self.rewound.is_none_or(|(at, when)| at != place || now.saturating_since(when) > guard)
    }

    /// Probing after a retransmit timeout, with the probe still unanswered.
    fn probe_out(&self) -> bool {
        self.probing && !self.inflight.is_empty()
    }

    /// How many bytes of what a commit appends to `log` the stream could take as its
    /// read-ahead (`Uplink::on_committed`), of the `chunk` it holds at most: it reads
    /// nothing and holds no batch, and has sent the whole log but what its read-ahead holds,
    /// which ends at the log's end.
    fn tail_room(&self, log: &TopicLog, chunk: u64) -> u64 {
        let idle = self.reading.is_none() && self.held.is_none() && self.patch.is_none() && !self.tail_pending;
        let clean = self.skipping.is_none() && self.read_len_min == 0 && log.durable_offset() == log.end_offset();
        if !(self.accepted && idle && clean) {
            return 0;
        }
        match (&self.ahead, log.newest()) {
            (Some(a), Some(seg)) if a.base == seg.base && a.pos + a.bytes.len() as u64 == seg.len => {
                chunk.saturating_sub(a.bytes.len() as u64)
            }
            (None, _) if self.cursor.is_some_and(|c| c.offset == self.sent) && self.sent == log.end_offset() => chunk,
            _ => 0,
        }
    }
}

/// The session as `outpost sync status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// No session: the next Hello leaves at `retry_at` (`attempt` Hellos unanswered so far).
    Connecting {
        retry_at: Instant,
        attempt: u32,
    },
    Active,
}

/// One stream as `outpost sync status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStatus {
    pub topic: TopicIdx,
    pub name: String,
    /// The gateway accepted the stream in the current session.
    pub accepted: bool,
    /// The gateway's durable mark as last heard: every record below it is at the gateway.
    pub acked: Seq,
    /// The next sequence to send.
    pub sent: Seq,
    pub durable_end: Seq,
    /// Records held that the gateway has not acknowledged.
    pub unsynced_records: u64,
    pub in_flight: usize,
}

/// The uplink as `outpost sync status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkStatus {
    pub gateway: NodeId,
    pub paused: bool,
    pub session: SessionStatus,
    pub streams: Vec<StreamStatus>,
    pub sessions_opened: u64,
    pub retransmits: u64,
    pub records_sent: u64,
    pub bytes_sent: u64,
    pub window_bytes: u64,
}

/// What a sender counts, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendCounters {
    pub sessions_opened: u64,
    pub retransmits: u64,
    pub reads: u64,
    pub read_bytes: u64,
    pub records_sent: u64,
    /// Records sent again that this sender had already sent (since it started: a restart
    /// sends from the peer's mark, which holds everything that arrived before).
    pub records_resent: u64,
    pub bytes_sent: u64,
    /// Sequences skipped because their frames failed the checksum.
    pub corrupted_skipped: u64,
}

impl SendCounters {
    pub fn add(&mut self, o: &SendCounters) {
        self.sessions_opened += o.sessions_opened;
        self.retransmits += o.retransmits;
        self.reads += o.reads;
        self.read_bytes += o.read_bytes;
        self.records_sent += o.records_sent;
        self.records_resent += o.records_resent;
        self.bytes_sent += o.bytes_sent;
        self.corrupted_skipped += o.corrupted_skipped;
    }
}

/// The edge's sync state machine.
#[derive(Debug)]
pub struct Uplink {
    gateway: NodeId,
    session: Session,
    streams: BTreeMap<TopicIdx, UpStream>,
    bucket: Option<TokenBucket>,
    attempt: u32,
    /// The operator paused sync (`outpost sync pause`): no Hello and no new data leave;
    /// what is in flight may still be acknowledged.
    paused: bool,
    pub counters: SendCounters,
    /// Names this uplink's reads (`Owner::Uplink`): a node may run a second uplink for
    /// its site cluster, replaced at each leader change, and a read one issued must not
    /// be delivered to another. Zero for the node's own uplink.
    pub(crate) tag: u64,
    /// Say Hello again after `sync.keepalive_interval` of silence (an edge that receives
    /// `cloud-to-edge` topics: its gateway must learn it is there after a restart).
    pub(crate) keepalive: bool,
    /// When this sender last sent anything, for the keepalive.
    last_sent: Instant,
    /// The largest records section the peer stores, from its Welcome: no batch is built
    /// larger (an edge's may be below a gateway's batches).
    peer_batch_raw_max: u64,
    /// Batches carry the origin their log's frames name rather than this node's: a
    /// gateway's sender of what comes down, whose log may be a replica of the tier above.
    origin_from_log: bool,
    /// A middle tier's sender of its edges' streams (`Uplink::relay`): it forwards its
    /// log's batches as they are, each under its origin's identity, and its streams'
    /// `acked`/`sent` are log offsets, which the next tier's marks per origin move.
    relay: Option<RelayMarks>,
    /// The bytes in flight, and what the link's answers measured: the window, and how
    /// long a gap filled again is still reported.
    pace: LinkPace,
}

/// Heap bytes of the map of `n` streams' state (names and flights apart).
pub const fn streams_map_bytes(n: u64) -> u64 {
    crate::memory::btree_bytes(n, std::mem::size_of::<TopicIdx>(), std::mem::size_of::<UpStream>())
}
/// Heap bytes of one flight in a stream's queue.
pub const FLIGHT_ENTRY_BYTES: u64 = std::mem::size_of::<Flight>() as u64;

/// The node's batch encoder and decoder, lent to a step that builds batches.
pub(crate) type Codec<'a> = (&'a mut BatchEncoder, &'a mut BatchDecoder);

/// How long to wait for more durable records before sending a partial batch.
pub const LINGER: Duration = Duration::from_millis(200);

fn backoff(cfg: &SyncConfig, attempt: u32, rng: &mut Xoshiro256PlusPlus) -> Duration {
    let base = cfg.backoff_min.as_nanos().saturating_mul(1u64 << attempt.min(30)).min(cfg.backoff_max.as_nanos());
    let spread = base / 100 * u64::from(cfg.backoff_jitter_percent);
    let jitter = if spread == 0 { 0 } else { rng.gen_range(0..=2 * spread) };
    Duration((base - spread + jitter).max(1))
}

/// A stream's read of the log in flight: the request, the segment's base, the position in
/// its file, and the stream's `sent` when issued.
#[derive(Clone, Copy, Debug)]
struct Reading {
    id: DiskOpId,
    base: u64,
    pos: u64,
    sent: Seq,
}

/// Where a read of the log was issued, as `on_read` takes it.
struct ReadAt {
    topic: TopicIdx,
    base: u64,
    pos: u64,
    sent: Seq,
}

impl Uplink {
    /// An edge's sender of the topics that go up, to its gateway.
    pub fn new(cfg: &NodeConfig, gateway: NodeId, now: Instant, rng: &mut Xoshiro256PlusPlus) -> Uplink {
        Uplink::of_topics(cfg, gateway, now, rng, |t| cfg.sends_up(t))
    }

    /// A gateway's sender of the topics that go down to one edge (or to a middle tier):
    /// those it subscribes to ([`TopicConfig::sent_down_to`]).
    pub fn down(cfg: &NodeConfig, edge: NodeId, now: Instant, rng: &mut Xoshiro256PlusPlus) -> Uplink {
        let mut u = Uplink::of_topics(cfg, edge, now, rng, |t| t.sent_down_to(edge));
        u.origin_from_log = true;
        u
    }

    /// A middle tier's sender to the next tier up of the topics that go up: its log of each
    /// holds many edges' streams, which it forwards keeping their identities, so that
    /// every tier holds each record once (`Ingest::stream_origin` at the receiver).
    pub fn relay(cfg: &NodeConfig, upstream: NodeId, now: Instant, rng: &mut Xoshiro256PlusPlus) -> Uplink {
        let mut u = Uplink::of_topics(cfg, upstream, now, rng, |t| cfg.sends_up(t));
        u.relay = Some(RelayMarks::default());
        u
    }

    fn of_topics(
        cfg: &NodeConfig,
        gateway: NodeId,
        now: Instant,
        rng: &mut Xoshiro256PlusPlus,
        sends: impl Fn(&TopicConfig) -> bool,
    ) -> Uplink {
        let streams = cfg
            .topics
            .iter()
            .enumerate()
            .filter(|(_, t)| sends(t))
            .map(|(i, t)| {
                let s = UpStream {
                    name: t.name.clone(),
                    not_placed: false,
                    accepted: false,
                    acked: 0,
                    sent: 0,
                    sent_high: 0,
                    transmitted_high: 0,
                    inflight: VecDeque::new(),
                    last_progress: now,
                    reading: None,
                    ahead: None,
                    cursor: None,
                    read_len_min: 0,
                    held: None,
                    waiting_since: None,
                    rewound: None,
                    patch: None,
                    tail_pending: false,
                    probing: false,
                    skipping: None,
                    relayed: VecDeque::new(),
                };
                (TopicIdx(i as u16), s)
            })
            .collect();
        let bucket = cfg.sync.bandwidth_bytes_per_sec.map(|r| TokenBucket::new(r, cfg.sync.bandwidth_burst_bytes, now));
        Uplink {
            gateway,
            session: Session::Connecting { id: rng.gen(), retry_at: now },
            streams,
            bucket,
            attempt: 0,
            paused: false,
            counters: SendCounters::default(),
            tag: 0,
            keepalive: false,
            last_sent: now,
            peer_batch_raw_max: codec::MAX_BATCH_RAW_BYTES as u64,
            origin_from_log: false,
            relay: None,
            pace: LinkPace::new(now),
        }
    }

    /// Whether the peer's last Welcome stated a zone classified topic `topic` may not be
    /// held in: nothing written to it now could be sent.
    pub fn not_placed(&self, topic: TopicIdx) -> bool {
        self.streams.get(&topic).is_some_and(|s| s.not_placed)
    }

    pub fn gateway(&self) -> NodeId {
        self.gateway
    }

    /// The gateway's durable high-water mark of a topic, as last heard (0 before any).
    /// Retention never deletes a segment at or above it.
    pub fn acked(&self, topic: TopicIdx) -> Option<Seq> {
        self.streams.get(&topic).map(|s| s.acked)
    }

    /// The peer's durable mark of a topic, once it has accepted the stream in this session.
    pub fn accepted_acked(&self, topic: TopicIdx) -> Option<Seq> {
        self.streams.get(&topic).filter(|s| s.accepted).map(|s| s.acked)
    }

    /// The gateway's mark of a topic as last heard, and the next sequence to send.
    pub fn progress(&self, topic: TopicIdx) -> Option<(Seq, Seq)> {
        self.streams.get(&topic).map(|s| (s.acked, s.sent))
    }

    /// Whether, in an open session, the peer acknowledged everything durable of every
    /// stream it accepted, with nothing in flight: the sender can be dropped and built
    /// again from the peer's marks when the peer next says Hello.
    pub fn is_caught_up(&self, logs: &[TopicLog]) -> bool {
        self.is_active()
            && self.pace.in_flight == 0
            && self.streams.iter().all(|(i, s)| {
                !s.accepted
                    || (s.reading.is_none() && s.held.is_none() && s.acked >= logs[i.0 as usize].durable_offset())
            })
    }

    pub fn is_active(&self) -> bool {
        matches!(self.session, Session::Active { .. })
    }

    /// Heap bytes of the per-stream state (not the held batches).
    pub fn index_bytes(&self) -> u64 {
        let flights: u64 = (self.streams.values())
            .map(|s| {
                s.inflight.capacity() as u64 * FLIGHT_ENTRY_BYTES + s.relayed.capacity() as u64 * RELAYED_ENTRY_BYTES
            })
            .sum();
        let names: usize = self.streams.values().map(|s| s.name.capacity()).sum();
        let relay = self.relay.as_ref().map_or(0, |r| {
            let n = r.acked.len().max(r.passed.len()).max(r.skipped.len()) as u64;
            relay_marks_bytes(n)
        });
        streams_map_bytes(self.streams.len() as u64) + flights + names as u64 + relay
    }

    /// Heap bytes of encoded batches held back by the bandwidth limit, and of read-aheads.
    pub fn held_bytes(&self) -> u64 {
        let held: usize = self.streams.values().filter_map(|s| s.held.as_ref()).map(|h| h.bytes.capacity()).sum();
        let ahead: usize = self.streams.values().filter_map(|s| s.ahead.as_ref()).map(|a| a.bytes.capacity()).sum();
        (held + ahead) as u64
    }

    /// Uncompressed bytes sent and not yet acknowledged.
    pub fn window_bytes(&self) -> u64 {
        self.pace.in_flight
    }

    /// Records the edge holds that the gateway has not acknowledged, per topic.
    pub fn backlog(&self, topic: TopicIdx, log: &TopicLog) -> u64 {
        self.streams.get(&topic).map_or(0, |s| log.records_from(s.acked))
    }

    /// Pauses or resumes sending (`outpost sync pause|resume`). Not persisted: a restart
    /// resumes. While paused, a session is neither opened nor fed; one that is open stays
    /// open until it times out, so acknowledgements of what was in flight still arrive.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Syncs now (`outpost sync now`): resumes, tries to connect at once if waiting out a
    /// backoff (and starts the backoff over), and sends partial batches without lingering.
    pub(crate) fn sync_now(&mut self, now: Instant) {
        self.paused = false;
        self.link_up(now);
        if let Session::Active { .. } = self.session {
            let lingered = Instant(now.as_nanos().saturating_sub(LINGER.as_nanos()));
            for s in self.streams.values_mut() {
                if let Some(w) = &mut s.waiting_since {
                    *w = (*w).min(lingered);
                }
            }
        }
    }

    /// The transport reconnected: if waiting out a backoff, say Hello at once.
    pub(crate) fn link_up(&mut self, now: Instant) {
        if let Session::Connecting { retry_at, .. } = &mut self.session {
            *retry_at = (*retry_at).min(now);
            self.attempt = 0;
        }
    }

    /// What `outpost sync status` shows.
    pub fn status(&self, logs: &[TopicLog]) -> UplinkStatus {
        let session = match self.session {
            Session::Connecting { retry_at, .. } => SessionStatus::Connecting { retry_at, attempt: self.attempt },
            Session::Active { .. } => SessionStatus::Active,
        };
        let streams = self
            .streams
            .iter()
            .map(|(&idx, s)| {
                let log = &logs[idx.0 as usize];
                StreamStatus {
                    topic: idx,
                    name: s.name.clone(),
                    accepted: s.accepted,
                    acked: s.acked,
                    sent: s.sent,
                    durable_end: log.durable_offset(),
                    unsynced_records: log.records_from(s.acked),
                    in_flight: s.inflight.len(),
                }
            })
            .collect();
        UplinkStatus {
            gateway: self.gateway,
            paused: self.paused,
            session,
            streams,
            sessions_opened: self.counters.sessions_opened,
            retransmits: self.counters.retransmits,
            records_sent: self.counters.records_sent,
            bytes_sent: self.counters.bytes_sent,
            window_bytes: self.pace.in_flight,
        }
    }

    /// Hellos sent and not answered since the last session came up (or the start).
    pub fn unanswered_hellos(&self) -> u32 {
        self.attempt
    }

    /// The id of the current (or next) session: the gateway's answers carry it.
    pub fn session_id(&self) -> u64 {
        match self.session {
            Session::Connecting { id, .. } | Session::Active { id, .. } => id,
        }
    }

    /// Per topic of `logs`: how much of what the next commit writes at the end of its log
    /// this sender would take from it rather than read back (`GroupCommit::start`), within
    /// one read chunk of read-ahead.
    pub(crate) fn follows(&self, logs: &[TopicLog], chunk: u64) -> Vec<u64> {
        let live = self.is_active() && !self.paused && self.relay.is_none();
        (0..logs.len())
            .map(|i| match self.streams.get(&TopicIdx(i as u16)) {
                Some(s) if live => s.tail_room(&logs[i], chunk),
                _ => 0,
            })
            .collect()
    }

    /// The commit in flight copies what it writes to these topics (`tails`: topic and
    /// length); a stream that had room for its topic's (`follows`, as this sender said
    /// before the commit started) waits for it instead of reading.
    pub(crate) fn tails_taken(&mut self, tails: &[(TopicIdx, u64)], follows: &[u64]) {
        for &(t, len) in tails {
            match self.streams.get_mut(&t) {
                Some(s) if len <= follows.get(t.0 as usize).copied().unwrap_or(0) => s.tail_pending = true,
                _ => {}
            }
        }
    }

    /// The commit is durable: each stream still waiting where its frames begin takes them
    /// as its read-ahead, as if it had read them (they are durable whole frames).
    pub(crate) fn on_committed(&mut self, tails: &[Tail], logs: &[TopicLog]) {
        for &Tail { topic, base, pos, ref bytes } in tails {
            let Some(s) = self.streams.get_mut(&topic) else { continue };
            s.tail_pending = false;
            // Where `pump_stream` reads next (`sent` is still the old durable end, now
            // inside the log the commit made longer): the frames' position, or they are
            // not what it reads next.
            let Some(seg) = logs[topic.0 as usize].segment_for(s.sent) else { continue };
            let next = match s.cursor {
                Some(c) if c.base == seg.base && c.offset <= s.sent => (c.base, c.pos),
                _ => (seg.base, 0),
            };
            let idle = s.reading.is_none() && s.held.is_none() && s.patch.is_none();
            if !idle || s.skipping.is_some() || s.read_len_min > 0 {
                continue;
            }
            match &mut s.ahead {
                // What it has not sent of the log, and these frames right after it.
                Some(a) if a.base == base && a.pos + a.bytes.len() as u64 == pos && a.from(base, next.1).is_some() => {
                    a.bytes.extend_from_slice(bytes);
                }
                None if next == (base, pos) => s.ahead = Some(ReadAhead { base, pos, bytes: bytes.clone() }),
                _ => {}
            }
        }
    }

    /// The commit failed: nothing it wrote is for the senders.
    pub(crate) fn tails_failed(&mut self) {
        for s in self.streams.values_mut() {
            s.tail_pending = false;
        }
    }

    fn reset_streams(&mut self) {
        for s in self.streams.values_mut() {
            // Where the next session starts reading: the oldest open flight's frame, at or
            // before anything the peer may still lack (`pump_stream` checks it against
            // where the session starts, else reads the segment from its first frame).
            s.cursor = s.inflight.front().map_or(s.cursor, |f| f.cursor);
            s.accepted = false;
            s.inflight.clear();
            s.relayed.clear();
            s.held = None;
            s.ahead = None;
            s.waiting_since = None;
            s.rewound = None;
            s.patch = None;
            s.probing = false;
            s.skipping = None;
        }
        self.pace.in_flight = 0;
    }

    /// The peer started a new session of its own (it restarted): start ours over at once,
    /// so that its Welcome tells where its storage ends.
    pub(crate) fn restart_session(&mut self, now: Instant, rng: &mut Xoshiro256PlusPlus) {
        if self.is_active() {
            self.reset_streams();
            self.session = Session::Connecting { id: rng.gen(), retry_at: now };
        } else {
            self.link_up(now);
        }
    }

    fn lose_session(&mut self, now: Instant, cfg: &SyncConfig, rng: &mut Xoshiro256PlusPlus, fx: &mut Fx) {
        let id = self.session_id();
        fx.event(Event::SessionLost { peer: self.gateway, session: id });
        self.reset_streams();
        let delay = backoff(cfg, self.attempt, rng);
        self.attempt = self.attempt.saturating_add(1);
        self.session = Session::Connecting { id: rng.gen(), retry_at: now.saturating_add(delay) };
    }

    /// A message from the gateway. `configs`: the node's topic configurations, by index.
    pub(crate) fn on_message(
        &mut self,
        msg: SyncMsg,
        now: Instant,
        (logs, configs): (&[TopicLog], &[TopicConfig]),
        fx: &mut Fx,
    ) {
        match msg {
            SyncMsg::Welcome { session, topics, batch_raw_max, zone, .. } => {
                if let Session::Active { id, unanswered_since } = &mut self.session {
                    // The answer to a keepalive Hello: the peer is there. (Its marks are not
                    // taken: a late answer to an earlier Hello would carry older ones.)
                    if *id == session && self.keepalive {
                        *unanswered_since = (self.pace.in_flight > 0).then_some(now);
                        // A peer that restarted in another zone answers the keepalive of a
                        // session it has forgotten: start over, so that its zone decides.
                        let placed_as_before = self.streams.iter().all(|(i, s)| {
                            let placement = configs[i.0 as usize].placement.as_ref();
                            s.not_placed == placement.is_some_and(|p| !p.allows(zone.as_deref()))
                        });
                        if !placed_as_before {
                            let next = id.wrapping_add(1);
                            self.reset_streams();
                            self.session = Session::Connecting { id: next, retry_at: now };
                        }
                    }
                    return;
                }
                let Session::Connecting { id, .. } = self.session else {
                    return;
                };
                if session != id {
                    return;
                }
                self.reset_streams();
                for (name, status, next) in topics {
                    let Some((&idx, s)) = self.streams.iter_mut().find(|(_, s)| s.name == name) else {
                        continue;
                    };
                    s.accepted = status == TopicStatus::Accepted;
                    let placement = configs[idx.0 as usize].placement.as_ref();
                    s.not_placed = placement.is_some_and(|p| !p.allows(zone.as_deref()));
                    if s.not_placed {
                        // The receiver says it is in a zone the topic may not reach: it gets
                        // nothing of it, whatever it answered for the topic (guarantee 7).
                        s.accepted = false;
                        fx.event(Event::NotPlaced { peer: self.gateway, topic: idx, zone: zone.clone() });
                    }
                    if !s.accepted {
                        continue;
                    }
                    let log = &logs[idx.0 as usize];
                    if let Some(r) = &mut self.relay {
                        // A relay's streams are its edges': it starts over from what it knows
                        // the next tier acknowledged (its log's start after a restart), and
                        // the next tier drops what it already holds. Its marks are learnt
                        // again from its answers: one that restarted holds the holes it
                        // accepted no longer (they are not in its log) and must be sent them
                        // again (swarm seed 1792).
                        r.passed.retain(|&(_, t), _| t != idx);
                        r.acked.retain(|&(_, t), _| t != idx);
                        s.sent = s.acked.max(log.start_offset());
                        s.last_progress = now;
                        continue;
                    }
                    // The gateway never holds more of our stream than we wrote durably,
                    // unless this device's storage was replaced under the same identity,
                    // or the stream is a site cluster's: an earlier leader may have sent
                    // records this member has not yet written (it sends from there on
                    // once it has).
                    debug_assert!(self.tag != 0 || next <= log.durable_offset() || log.durable_offset() == 0);
                    s.acked = next;
                    s.sent = next.max(log.start_offset());
                    s.last_progress = now;
                }
                self.attempt = 0;
                self.counters.sessions_opened += 1;
                self.last_sent = now;
                self.peer_batch_raw_max = batch_raw_max.min(codec::MAX_BATCH_RAW_BYTES as u64);
                self.session = Session::Active { id, unanswered_since: None };
                fx.event(Event::SessionUp { peer: self.gateway, session: id });
            }
            SyncMsg::Ack { session, topic, origin, next_seq, expected, refused, .. } => {
                let Session::Active { id, ref mut unanswered_since } = self.session else {
                    return;
                };
                if session != id {
                    return;
                }
                *unanswered_since = None;
                if self.relay.is_some() {
                    self.on_relay_ack(&topic, origin, (next_seq, expected, refused), now);
                    self.restart_unanswered(now);
                    return;
                }
                let Some(s) = self.streams.values_mut().find(|s| s.name == topic) else {
                    return;
                };
                let probing = std::mem::take(&mut s.probing);
                if next_seq > s.acked {
                    s.acked = next_seq;
                    s.last_progress = now;
                }
                if s.patch.is_some_and(|p| s.acked >= p.end) {
                    Self::end_patch(s);
                }
                let mut newest_acked = None;
                while s.inflight.front().is_some_and(|f| f.end <= s.acked) {
                    let f = s.inflight.pop_front().expect("front exists");
                    self.pace.acked(f.raw);
                    newest_acked = Some(f).filter(|f| !f.again).map(|f| f.sent);
                }
                if let Some(sent) = newest_acked {
                    self.pace.sample(sent, now);
                }
                if s.acked > s.sent {
                    // (The cursor, at or before the old `sent`, still leads there.)
                    s.sent = s.acked;
                    s.skipping = None;
                }
                // The gateway refused a message, expecting `expected` next, and we are past
                // it: something was lost. Go back once per gap (not once per later message
                // the gateway refused). An answer that refused nothing says where the
                // gateway stands while later messages are still on their way: going back
                // then sent again what it was about to receive (the first efficiency
                // reports: vehicle-offline resent a third of its records, most of them
                // dropped as duplicates).
                let guard = self.pace.gap_guard();
                let fresh_gap = s.fresh_gap(expected, now, guard);
                // The answer to a probe says what the peer holds: nothing from `expected`
                // on, unless it reports a gap it kept beyond.
                let lacks = expected >= s.acked && expected < s.sent;
                let idx = idx_of(&self.streams, &topic);
                match refused {
                    Refusal::SendAgain if lacks && fresh_gap => self.rewind(idx, expected, now),
                    Refusal::Missing { to } if lacks && fresh_gap => self.start_patch(idx, (expected, to), now),
                    Refusal::None if lacks && probing => self.rewind(idx, expected, now),
                    _ => {}
                }
                self.restart_unanswered(now);
            }
            SyncMsg::Reset { session } => {
                if session == self.session_id() && self.is_active() {
                    // The gateway restarted and forgot us: reconnect at once.
                    self.reset_streams();
                    self.session = Session::Connecting { id: session.wrapping_add(1), retry_at: now };
                }
            }
            SyncMsg::Hello { .. } | SyncMsg::Data { .. } | SyncMsg::Skip { .. } => {}
        }
    }

    /// An answer came: while answers to what remains in flight are still awaited, their
    /// clock starts again from now.
    fn restart_unanswered(&mut self, now: Instant) {
        let waiting = self.pace.in_flight > 0;
        if let Session::Active { unanswered_since, .. } = &mut self.session {
            *unanswered_since = waiting.then_some(now);
        }
    }

    /// The next tier's marks of one origin's stream, as a relay hears them: flights it
    /// holds wholly are done, and the relay's `acked` (a log offset) moves to the oldest
    /// flight still open. A gap (a refusal, or the peer lacks a range it cannot still be
    /// receiving) makes the stream go back to the flight holding that range.
    fn on_relay_ack(
        &mut self,
        topic: &str,
        origin: NodeId,
        (next_seq, expected, refused): (Seq, Seq, Refusal),
        now: Instant,
    ) {
        let Some(idx) = idx_of(&self.streams, topic) else { return };
        let r = self.relay.as_mut().expect("a relay");
        let mark = r.acked.entry((origin, idx)).or_default();
        *mark = (*mark).max(next_seq);
        if r.skipped.get(&(origin, idx)).is_some_and(|&to| to <= *mark) {
            r.skipped.remove(&(origin, idx));
        }
        let s = self.streams.get_mut(&idx).expect("stream exists");
        let done = |x: &Relayed| r.acked.get(&(x.origin, idx)).is_some_and(|&m| m >= x.to);
        loop {
            // The oldest flight's identities: up to and with the first marked last.
            let n = s.relayed.iter().position(|x| x.last).map_or(0, |k| k + 1);
            if n == 0 || !s.relayed.iter().take(n).all(done) {
                break;
            }
            s.relayed.drain(..n);
            let f = s.inflight.pop_front().expect("flights and their identities go in step");
            self.pace.acked(f.raw);
            s.last_progress = now;
            if !f.again {
                self.pace.sample(f.sent, now);
            }
        }
        Self::settle_relay_acked(s);
        // The oldest of this origin's ranges in flight the peer lacks. The peer has none of
        // it when it expects less than its start (the log's hole, not yet known as one), or
        // when it expects its start and has already made durable a range sent after it:
        // the peer accepts in order and commits in order, so that one was lost or refused.
        // A refusal says so: the peer did not take something of this origin beyond
        // `expected` (messages overtook each other, one was lost, it had no room), so the
        // relay goes back to the flight holding `expected` at once, not after the
        // retransmit timeout. Once per place, like an edge: the peer refuses each later
        // message of the same gap too.
        if let Refusal::Missing { to } = refused {
            // The peer kept what followed: send again the flights holding `expected..to`
            // of this origin, as they were.
            let (mut flight, mut first, mut last) = (0, None, None);
            for x in &s.relayed {
                if x.origin == origin && x.from < to && x.to > expected {
                    first.get_or_insert(flight);
                    last = Some(flight);
                }
                flight += usize::from(x.last);
            }
            if let (Some(a), Some(b)) = (first, last) {
                let (from, end) = (s.inflight[a].start, s.inflight[b].end);
                let guard = self.pace.gap_guard();
                if s.fresh_gap(from, now, guard) {
                    self.start_patch(Some(idx), (from, end), now);
                }
                return;
            }
        }
        let lacking = s.relayed.iter().position(|x| x.origin == origin && x.to > expected);
        // (The peer made durable a later flight and lacks this one, which starts where it
        // expects: this one was lost, and the peer kept what followed.)
        let lost = lacking.is_some_and(|k| {
            let x = s.relayed[k];
            !refused.any() && x.from == expected && s.relayed.iter().skip(k + 1).any(done)
        });
        let gap = lacking.is_some_and(|k| refused.any() || s.relayed[k].from > expected) || lost;
        let Some(k) = lacking.filter(|_| gap) else { return };
        let flight = s.relayed.iter().take(k).filter(|x| x.last).count();
        let to = s.inflight.get(flight).map_or(s.acked, |f| f.start);
        let guard = self.pace.gap_guard();
        let fresh = s.fresh_gap(to, now, guard);
        match s.inflight.get(flight) {
            // Only the lost flight again, as it was (going back over the whole window
            // resent about three flights per loss: offshore-relay seed 1).
            Some(f) if fresh && lost => {
                let range = (f.start, f.end);
                self.start_patch(Some(idx), range, now);
            }
            _ if fresh => self.rewind(Some(idx), to, now),
            _ => {}
        }
    }

    /// This middle tier accepted a skip of `origin`'s stream of `topic` up to `to`: the
    /// relay forwards the hole once it has sent its whole log (`forward_skipped`).
    pub(crate) fn note_skipped(&mut self, origin: NodeId, topic: TopicIdx, to: Seq) {
        if let Some(r) = self.relay.as_mut().filter(|_| self.streams.contains_key(&topic)) {
            let end = r.skipped.entry((origin, topic)).or_default();
            *end = (*end).max(to);
        }
    }

    /// A relay that has sent its whole log of `idx`: each origin whose skip ends beyond
    /// what this pass sent of it (or, with nothing of it in the pass, what the next tier
    /// acknowledged, else 0: the next tier moves only from where it stands) has a hole
    /// there that no later batch has shown yet; it goes now, as its own message.
    fn forward_skipped(&mut self, idx: TopicIdx, cx: &mut Ctx<'_>) {
        let Session::Active { id: session, .. } = self.session else { return };
        let r = self.relay.as_mut().expect("a relay");
        let s = self.streams.get_mut(&idx).expect("stream exists");
        let due: Vec<((NodeId, TopicIdx), Seq)> =
            r.skipped.iter().filter(|(k, _)| k.1 == idx).map(|(k, v)| (*k, *v)).collect();
        for (key, to) in due {
            // (Kept until the next tier acknowledges past it: a rewind resends it.)
            let from = r.passed.get(&key).or(r.acked.get(&key)).copied().unwrap_or(0);
            if from >= to {
                continue;
            }
            r.passed.insert(key, to);
            let x = Relayed { origin: key.0, from, to, last: true };
            let (topic, reason) = (s.name.clone(), SkipReason::Hole);
            let mut bytes = Vec::new();
            SyncMsg::Skip { session, hlc: cx.hlc, topic, origin: x.origin, from, to, reason }.encode(&mut bytes);
            let held =
                Held { bytes, start: s.sent, end: s.sent, cursor: s.cursor, relayed: vec![x], raw: 0, patch: false };
            Self::transmit(s, &mut self.pace, &mut self.session, held, cx.now, self.gateway, cx.fx);
        }
    }

    /// A relay's `acked`: the start of its oldest open flight, else of its held message,
    /// else where it has read to (ranges it passed without a message, damaged frames,
    /// have nothing to wait for).
    fn settle_relay_acked(s: &mut UpStream) {
        let open = s.inflight.front().map(|f| f.start).or(s.held.as_ref().map(|h| h.start));
        s.acked = s.acked.max(open.unwrap_or(s.sent));
    }

    /// The peer lacks `from..to` and kept what followed: send again the flights holding
    /// that range, from the first one's frame, then go on where the stream was. Goes back
    /// over everything instead where it cannot (no frame to start from, a batch held or a
    /// damaged frame being searched past).
    fn start_patch(&mut self, topic: Option<TopicIdx>, (from, to): (Seq, Seq), now: Instant) {
        let Some(s) = topic.and_then(|t| self.streams.get_mut(&t)) else {
            return;
        };
        if s.patch.is_some() {
            // (The peer reports its next gap once this one is filled.)
            return;
        }
        let first = s.inflight.iter().find(|f| f.start <= from && from < f.end).copied();
        let end = s.inflight.iter().take_while(|f| f.start < to).last().map_or(from, |f| f.end).min(s.sent);
        let free = s.held.is_none() && s.skipping.is_none();
        let Some(cursor) = first.and_then(|f| f.cursor).filter(|_| free && end > from) else {
            return self.rewind(topic, from, now);
        };
        for f in s.inflight.iter_mut().filter(|f| f.start < end && f.end > from) {
            f.again = true;
        }
        s.patch = Some(Patch { end, resume: s.sent, resume_cursor: s.cursor });
        // (A read in flight for the old position is discarded when it lands.)
        s.sent = from;
        s.cursor = Some(cursor);
        s.ahead = None;
        s.rewound = Some((from, now));
        s.last_progress = now;
        self.counters.retransmits += 1;
    }

    /// A patch is done (or the peer acknowledged past it): back where the stream was.
    fn end_patch(s: &mut UpStream) {
        let p = s.patch.take().expect("a patch under way");
        s.sent = p.resume.max(s.acked);
        s.cursor = p.resume_cursor;
    }

    /// A patch met what it cannot send as the flights' frames (a skip's range, a damaged
    /// frame, a range evicted since): the stream goes back to where the patch stands
    /// instead, and takes that range in order, skipping it if need be. Ending the patch
    /// without sending left the peer's gap open, and the probe after each retransmit
    /// timeout patched the same skip again, forever (swarm seed 1799).
    fn abandon_patch(&mut self, idx: TopicIdx, now: Instant) {
        let s = self.streams.get_mut(&idx).expect("stream exists");
        let at = s.sent;
        Self::end_patch(s);
        self.rewind(Some(idx), at, now);
    }

    fn rewind(&mut self, topic: Option<TopicIdx>, to: Seq, now: Instant) {
        let Some(s) = topic.and_then(|t| self.streams.get_mut(&t)) else {
            return;
        };
        let relay = self.relay.is_some();
        let mut seek = None;
        // (A relay's skip message takes no offsets: one at `to` is rewound too.)
        while s.inflight.back().is_some_and(|f| f.end > to || (relay && f.start >= to)) {
            let f = s.inflight.pop_back().expect("back exists");
            if s.relayed.pop_back().is_some() {
                while s.relayed.back().is_some_and(|x| !x.last) {
                    s.relayed.pop_back();
                }
            }
            self.pace.in_flight -= f.raw;
            if f.start <= to {
                seek = Some(f.cursor);
            }
        }
        if let Some(r) = &mut self.relay {
            // A relay starts its pass over from the flights it keeps: each origin's batches
            // must continue what they carry, else the log has a hole there (store-tiers
            // seed 1: a pass that forgot a flight still out took its origin's next batch for
            // one after a hole, and skipped an acknowledged record).
            let idx = topic.expect("found above");
            r.passed.retain(|&(_, t), _| t != idx);
            for x in &s.relayed {
                let end = r.passed.entry((x.origin, idx)).or_default();
                *end = (*end).max(x.to);
            }
        }
        if let Some(c) = seek {
            s.cursor = c;
        }
        s.skipping = None;
        // A read in flight for the old position is discarded when it lands.
        s.sent = to;
        s.held = None;
        s.patch = None;
        s.rewound = Some((to, now));
        s.last_progress = now;
        self.counters.retransmits += 1;
    }

    /// Sends, reads and times out whatever is due. Called after every input.
    pub(crate) fn pump(&mut self, cx: &mut Ctx<'_>, logs: &[TopicLog], rng: &mut Xoshiro256PlusPlus, codec: Codec<'_>) {
        let (enc, dec) = codec;
        let (now, cfg, hlc) = (cx.now, cx.cfg, cx.hlc);
        match self.session {
            Session::Connecting { .. } if self.paused => {}
            Session::Connecting { id, retry_at } => {
                if now >= retry_at {
                    let topics = self.streams.values().map(|s| s.name.clone()).collect();
                    cx.fx.send(self.gateway, &SyncMsg::Hello { origin: cfg.id, session: id, hlc, topics });
                    let delay = backoff(&cfg.sync, self.attempt, rng);
                    self.attempt = self.attempt.saturating_add(1);
                    self.session = Session::Connecting { id, retry_at: now.saturating_add(delay) };
                }
            }
            Session::Active { unanswered_since: Some(since), .. }
                if now.saturating_since(since) > cfg.sync.session_timeout =>
            {
                self.lose_session(now, &cfg.sync, rng, cx.fx);
            }
            Session::Active { .. } if self.paused => {}
            Session::Active { id, unanswered_since } => {
                let idxs: Vec<TopicIdx> = self.streams.keys().copied().collect();
                for idx in idxs {
                    self.pump_stream(idx, cx, &logs[idx.0 as usize], (&mut *enc, &mut *dec));
                }
                if self.pace.in_flight > 0 {
                    self.last_sent = now;
                } else if self.keepalive && now.saturating_since(self.last_sent) >= cfg.sync.keepalive_interval {
                    let topics = self.streams.values().map(|s| s.name.clone()).collect();
                    cx.fx.send(self.gateway, &SyncMsg::Hello { origin: cfg.id, session: id, hlc, topics });
                    self.last_sent = now;
                    self.session = Session::Active { id, unanswered_since: unanswered_since.or(Some(now)) };
                }
            }
        }
    }

    fn pump_stream(&mut self, idx: TopicIdx, cx: &mut Ctx<'_>, log: &TopicLog, codec: Codec<'_>) {
        let (now, cfg) = (cx.now, cx.cfg);
        let s = self.streams.get_mut(&idx).expect("stream exists");
        if !s.accepted {
            return;
        }
        if let Some(first) =
            s.inflight.front().filter(|_| now.saturating_since(s.last_progress) > cfg.sync.retransmit_timeout)
        {
            // Nothing heard for a while: the link may be down, or only answers were lost.
            // Send the oldest flight again as a probe, and nothing new until the peer
            // answers: its answer says what it lacks (going back over the whole window
            // sent it into a dead link at every timeout).
            // (A relay goes back: its flights carry other origins' ranges, which it
            // rebuilds from where it goes back to.)
            let (range, to) = ((first.start.max(s.acked), first.end), s.acked);
            if self.relay.is_some() {
                self.rewind(Some(idx), to, now);
            } else {
                s.probing = true;
                s.last_progress = now;
                self.start_patch(Some(idx), range, now);
            }
        }
        let s = self.streams.get_mut(&idx).expect("stream exists");
        if let Some(held) = s.held.take() {
            let ok = self.bucket.as_mut().is_none_or(|b| b.try_take(held.bytes.len() as u64, now));
            let s = self.streams.get_mut(&idx).expect("stream exists");
            if ok {
                Self::transmit(s, &mut self.pace, &mut self.session, held, now, self.gateway, cx.fx);
            } else {
                s.held = Some(held);
                return;
            }
        }
        let s = self.streams.get_mut(&idx).expect("stream exists");
        let durable = log.durable_offset();
        let flights_full = s.inflight.len() >= FLIGHTS_PER_STREAM_MAX;
        if self.relay.is_some() && s.reading.is_none() && s.held.is_none() && s.sent >= durable && !flights_full {
            self.forward_skipped(idx, cx);
        }
        let s = self.streams.get_mut(&idx).expect("stream exists");
        // A patch sends again what flights already hold: no window, no linger.
        let patching = s.patch.is_some();
        let window_full = self.pace.in_flight >= self.pace.window(cfg.sync.window_bytes_max) || flights_full;
        if s.reading.is_some() || s.tail_pending || s.sent >= durable || (!patching && (window_full || s.probe_out())) {
            if s.sent >= durable {
                s.waiting_since = None;
            }
            return;
        }
        if !patching {
            let since = *s.waiting_since.get_or_insert(now);
            let full_batch = durable - s.sent >= u64::from(cfg.sync.batch_records_max);
            if !full_batch && now.saturating_since(since) < LINGER {
                return;
            }
        }
        let Some(seg) = log.segment_for(s.sent) else {
            // Eviction under a lossy policy deleted records the gateway never had; or
            // retention deleted what it acknowledged, and it lost its mark since (a gateway
            // forgets skipped ranges when it restarts, see `Ingest::on_skip`). Say so, once.
            let (from, to) = (s.sent, log.start_offset());
            debug_assert!(from < to, "an offset below durable is stored or was deleted");
            let reason = if from < log.evicted_unsynced_end() { SkipReason::Evicted } else { SkipReason::Deleted };
            return self.skip(idx, (from, to), reason, None, cx);
        };
        // Where to read: the frame the stream knows, else the nearest the log marks below
        // `sent` (a new sender, or one resuming at its peer's mark, scanned the segment
        // from its first frame: most of what site-power-cuts and worn-sd-card read).
        let marked = log.frame_at_or_below(s.sent).map(|m| Cursor { base: seg.base, pos: m.pos, offset: m.offset });
        let cursor = match s.cursor {
            Some(c) if c.base == seg.base && c.offset <= s.sent => marked.filter(|m| m.offset > c.offset).unwrap_or(c),
            _ => marked.unwrap_or(Cursor { base: seg.base, pos: 0, offset: seg.base }),
        };
        s.cursor = Some(cursor);
        let (pos, min_len) = match s.skipping {
            Some(k) if k.bad.base == seg.base => (k.search, k.min_len),
            _ if cursor.pos >= seg.len => {
                // Past the last frame and still short of the segment's end: recovery cut
                // a tail here and moved the sequence on (see `log`). Nothing to read.
                let range = (s.sent, seg.end.min(durable));
                return self.skip(idx, range, SkipReason::Unwritten, Some(cursor), cx);
            }
            _ => (cursor.pos, s.read_len_min as usize),
        };
        if let Some(ahead) = s.ahead.take().filter(|_| s.skipping.is_none() && min_len == 0) {
            if let Some(bytes) = ahead.from(seg.base, pos) {
                let at = ReadAt { topic: idx, base: seg.base, pos, sent: s.sent };
                if let Some(durable_end) = self.on_read(cx, at, bytes, log, codec) {
                    self.keep_ahead(idx, (seg.base, pos, durable_end), ahead);
                }
                return;
            }
        }
        let len = (cfg.log.read_chunk_bytes as usize).max(min_len);
        let len = u32::try_from(len as u64).unwrap_or(u32::MAX);
        let len = len.min(u32::try_from(seg.len.saturating_sub(pos)).unwrap_or(u32::MAX)).max(1);
        let id = cx
            .fx
            .disk(DiskRequest::Read { file: log.file(seg.base), offset: pos, len }, Owner::Uplink { tag: self.tag });
        s.reading = Some(Reading { id, base: seg.base, pos, sent: s.sent });
    }

    /// Tells the gateway that `from..to` of this stream will never be sent, as a message
    /// in the stream's pipeline (acknowledged, resent and rewound like data). `cursor`:
    /// where to read again if the gateway asks for `from` once more.
    fn skip(
        &mut self,
        idx: TopicIdx,
        (from, to): (Seq, Seq),
        reason: SkipReason,
        cursor: Option<Cursor>,
        cx: &mut Ctx<'_>,
    ) {
        let (now, hlc, fx) = (cx.now, cx.hlc, &mut *cx.fx);
        let s = self.streams.get_mut(&idx).expect("stream exists");
        if s.patch.is_some() {
            // A patch sends again what flights held as frames; this range has none (a
            // skip's flight, or evicted since): it is skipped in order after a rewind.
            return self.abandon_patch(idx, now);
        }
        s.skipping = None;
        if from >= to {
            return;
        }
        if self.relay.is_some() {
            // A relay's offsets are no origin's sequences: it passes the range, and each
            // origin's hole in it is forwarded when that origin's next frame is read.
            if reason == SkipReason::Corrupted {
                self.counters.corrupted_skipped += to - from;
                fx.event(Event::Corrupted { topic: idx, from, to });
            }
            s.sent = s.sent.max(to);
            return Self::settle_relay_acked(s);
        }
        let Session::Active { id: session, .. } = self.session else {
            return;
        };
        let mut bytes = Vec::new();
        let (topic, origin) = (s.name.clone(), cx.cfg.id);
        SyncMsg::Skip { session, hlc, topic, origin, from, to, reason }.encode(&mut bytes);
        if reason == SkipReason::Corrupted {
            self.counters.corrupted_skipped += to - from;
            fx.event(Event::Corrupted { topic: idx, from, to });
        }
        let held = Held { bytes, start: from, end: to, cursor, relayed: Vec::new(), raw: 0, patch: false };
        Self::transmit(s, &mut self.pace, &mut self.session, held, now, self.gateway, fx);
    }

    fn transmit(
        s: &mut UpStream,
        pace: &mut LinkPace,
        session: &mut Session,
        held: Held,
        now: Instant,
        gateway: NodeId,
        fx: &mut Fx,
    ) {
        if s.inflight.is_empty() {
            s.last_progress = now;
        }
        if let Session::Active { unanswered_since: since @ None, .. } = session {
            *since = Some(now);
        }
        if !held.patch {
            let n = held.raw;
            let again = held.start < s.transmitted_high;
            s.transmitted_high = s.transmitted_high.max(held.end);
            let sent = pace.mark(now);
            s.inflight.push_back(Flight { start: held.start, end: held.end, raw: n, cursor: held.cursor, sent, again });
            s.relayed.extend(held.relayed);
            debug_assert!(s.relayed.back().is_none_or(|x| x.last), "a relayed flight's identities end with its last");
            pace.in_flight += n;
            s.sent = held.end;
        }
        fx.send_bytes(gateway, held.bytes);
    }
    /// The read `id` of one of its streams completed (`logs`: every topic's).
    pub(crate) fn on_read_done(
        &mut self,
        cx: &mut Ctx<'_>,
        id: DiskOpId,
        bytes: &[u8],
        logs: &[TopicLog],
        codec: (&mut BatchEncoder, &mut BatchDecoder),
    ) {
        let found = self.streams.iter().find_map(|(&t, s)| s.reading.filter(|r| r.id == id).map(|r| (t, r)));
        let Some((topic, r)) = found else { return };
        self.counters.reads += 1;
        self.counters.read_bytes += bytes.len() as u64;
        let at = ReadAt { topic, base: r.base, pos: r.pos, sent: r.sent };
        if let Some(durable_end) = self.on_read(cx, at, bytes, &logs[topic.0 as usize], codec) {
            // Only what the batch left is copied (`keep_ahead` checks the rest).
            let cursor = self.streams.get(&topic).and_then(|s| s.cursor).filter(|c| c.base == r.base);
            let from = cursor.map_or(durable_end, |c| c.pos.clamp(r.pos, durable_end));
            let bytes = bytes[(from - r.pos) as usize..(durable_end - r.pos) as usize].to_vec();
            self.keep_ahead(topic, (r.base, r.pos, durable_end), ReadAhead { base: r.base, pos: from, bytes });
        }
    }

    /// After a read (from the disk or the read-ahead) that ended its durable whole frames
    /// at file position `durable_end`: what the stream has not sent of them stays ahead,
    /// if the read sent something (else the next attempt reads the disk, at least as much
    /// as it needs) and no read was issued meanwhile.
    fn keep_ahead(&mut self, idx: TopicIdx, (base, read_pos, durable_end): (u64, u64, u64), mut ahead: ReadAhead) {
        let Some(s) = self.streams.get_mut(&idx) else { return };
        let Some(c) = s.cursor.filter(|c| c.base == base && c.pos >= read_pos && c.pos < durable_end) else {
            return;
        };
        let unusable = s.reading.is_some() || s.skipping.is_some() || s.read_len_min > 0;
        if unusable || ahead.from(base, c.pos).is_none() {
            return;
        }
        ahead.bytes.truncate((durable_end - ahead.pos) as usize);
        s.ahead = Some(ahead);
    }

    /// Bytes of the log at file position `pos` arrived (a read finished, or the read-ahead
    /// holds them): build one batch from them and send (or hold) it. Returns the file
    /// position where their durable whole frames end, if they were taken as the stream's
    /// next bytes (see `keep_ahead`).
    fn on_read(&mut self, cx: &mut Ctx<'_>, at: ReadAt, bytes: &[u8], log: &TopicLog, codec: Codec<'_>) -> Option<u64> {
        let ReadAt { topic: idx, base, pos, sent: sent_at_issue } = at;
        let (now, cfg, hlc) = (cx.now, cx.cfg, cx.hlc);
        let (enc, dec) = codec;
        let session = match self.session {
            Session::Active { id, .. } => id,
            Session::Connecting { .. } => {
                self.finish_read(idx);
                return None;
            }
        };
        let s = self.streams.get_mut(&idx)?;
        s.reading = None;
        // (None: the stream was rewound or moved while the read was in flight.)
        let seg = log.segment_for(s.sent).filter(|seg| seg.base == base && s.sent == sent_at_issue).cloned()?;
        if let Some(k) = s.skipping {
            if k.bad.base == base && k.search == pos {
                self.on_search_read(idx, &seg, pos, bytes, log.durable_offset(), cx);
            }
            return None;
        }
        let cursor = s.cursor.filter(|c| c.base == base && c.pos == pos)?;
        let durable = log.durable_offset();
        let mut frames = Vec::new();
        let stop = log::scan(bytes, pos, cursor.offset, |f| frames.push(f));
        let durable_end = frames.iter().take_while(|f| f.end() <= durable).last().map_or(pos, |f| f.pos + f.len);
        if self.relay.is_some() {
            self.on_relay_read(cx, (idx, session), &frames, (stop.as_ref(), seg.len), (durable, dec));
            return Some(durable_end);
        }
        let mut next_cursor = cursor;
        let mut decoded: Vec<(DecodedBatch<'_>, u64, u64)> = Vec::new();
        let mut taken_records = 0u64;
        let mut taken_bytes = 0u64;
        // (A patch's batches end where it does: the peer holds what follows.)
        let max_records = u64::from(cfg.sync.batch_records_max).min(s.patch.map_or(u64::MAX, |p| p.end - s.sent));
        let max_bytes = self.pace.message_max(u64::from(cfg.sync.batch_bytes_max), cfg.sync.window_bytes_max);
        // The records section as the peer will decode it, against what it stores at most
        // (its first record's timestamp is the batch's base).
        let (mut section, mut base_hlc) = (0u64, None);
        let section_max = self.peer_batch_raw_max;
        let mut corrupt = None;
        // The frame holding the batch's first record: where a rewind to it reads again
        // (not where this read began, which may be far before: swarm worlds on satellite
        // rescanned a megabyte of passed frames at every rewind).
        let mut batch_cursor = None;
        for f in &frames {
            if f.end() <= s.sent {
                next_cursor = Cursor { base, pos: f.pos + f.len, offset: f.end() };
                continue;
            }
            if f.base >= durable || taken_records >= max_records || taken_bytes >= max_bytes {
                break;
            }
            batch_cursor.get_or_insert(Cursor { base, pos: f.pos, offset: f.base });
            let batch = match DecodedBatch::decode_with(f.batch, dec) {
                Ok(b) => b,
                Err(e) => {
                    // The checksum held but the batch does not decode: a bug, or damage
                    // the checksum missed. Either way these records cannot be sent.
                    corrupt = Some((format!("{e}"), Cursor { base, pos: f.pos, offset: f.base }));
                    break;
                }
            };
            let first = s.sent.max(f.base) - f.base;
            let mut n = 0;
            for r in batch.records().skip(first as usize) {
                let seq = f.base + first + n;
                if seq >= durable || taken_records >= max_records || (taken_bytes >= max_bytes) {
                    break;
                }
                let len = r.encoded_len(*base_hlc.get_or_insert(r.hlc)) as u64;
                if taken_records > 0 && section + len > section_max {
                    taken_bytes = max_bytes;
                    break;
                }
                section += len;
                taken_bytes += r.payload_len() as u64 + 8;
                taken_records += 1;
                n += 1;
            }
            let whole = f.base + first + n == f.end();
            decoded.push((batch, first, n));
            if whole {
                next_cursor = Cursor { base, pos: f.pos + f.len, offset: f.end() };
            } else {
                break;
            }
        }
        if let Some((err, _)) = &corrupt {
            cx.fx.event(Event::StorageProblem {
                detail: format!("log of topic {} unreadable at seq {}: {err}", idx.0, s.sent),
            });
        }
        s.cursor = Some(next_cursor);
        if taken_records == 0 && s.patch.is_some() {
            // (A damaged frame: the search past it starts from a rewind.)
            self.abandon_patch(idx, now);
            return None;
        }
        if taken_records == 0 {
            Self::search_past_damage(s, stop.as_ref(), seg.len, corrupt.map(|(_, at)| at));
            return None;
        }
        s.read_len_min = 0;
        let records: Vec<RecordRef<'_>> =
            decoded.iter().flat_map(|(b, first, n)| b.records().skip(*first as usize).take(*n as usize)).collect();
        let first_seq = s.sent;
        let end = first_seq + taken_records;
        assert!(end <= durable, "only durable records are ever sent");
        let mut batch = Vec::with_capacity(taken_bytes as usize / 2 + codec::BATCH_HEADER_LEN);
        // (A gateway's log of what comes down may be a replica of the tier above's stream:
        // its records keep that identity.)
        let origin = match decoded.first() {
            Some((b, _, _)) if self.origin_from_log => b.header.origin,
            _ => cfg.id,
        };
        enc.encode(origin, first_seq, &records, Compression::Zstd, &mut batch);
        let mut bytes = Vec::with_capacity(batch.len() + 64 + s.name.len());
        // The message's timestamp covers its records: a middle tier's log of what comes
        // down holds the tier above's, which its own clock may have refused as too far
        // ahead (its own records are below its clock's last timestamp anyway).
        let hlc = records.iter().map(|r| r.hlc).fold(hlc, Hlc::max);
        SyncMsg::Data { session, hlc, topic: s.name.clone(), batches: vec![batch] }.encode(&mut bytes);
        let patch = s.patch.is_some();
        if !patch {
            s.waiting_since = if durable - end >= max_records { s.waiting_since } else { None };
        }
        self.counters.records_sent += taken_records;
        self.counters.records_resent += end.min(s.sent_high).saturating_sub(first_seq);
        s.sent_high = s.sent_high.max(end);
        self.counters.bytes_sent += bytes.len() as u64;
        let cursor = batch_cursor.or(Some(cursor));
        let held = Held { bytes, start: first_seq, end, cursor, relayed: Vec::new(), raw: taken_bytes, patch };
        let ok = self.bucket.as_mut().is_none_or(|b| b.try_take(held.bytes.len() as u64, now));
        let s = self.streams.get_mut(&idx).expect("stream exists");
        if ok {
            Self::transmit(s, &mut self.pace, &mut self.session, held, now, self.gateway, cx.fx);
        } else {
            s.held = Some(held);
        }
        s.sent = end;
        if s.patch.is_some_and(|p| end >= p.end) {
            Self::end_patch(s);
        }
        Some(durable_end)
    }

    /// A read gave nothing to send: the first frame needed is damaged (search for the next
    /// good one), or longer than what was read (read at least that much next time).
    /// `corrupt`: a frame whose checksum held but whose batch does not decode.
    fn search_past_damage(s: &mut UpStream, stop: Option<&ScanStop>, seg_len: u64, corrupt: Option<Cursor>) {
        let Some(at) = s.cursor else { return };
        let damaged = stop.and_then(|st| st.damaged_at(seg_len)) == Some(at.pos);
        let bad = match (corrupt, stop) {
            (Some(c), _) => Some(c),
            _ if damaged => Some(at),
            (None, Some(ScanStop::Incomplete { pos: p, needed })) if *p == at.pos => {
                s.read_len_min = u32::try_from(*needed).unwrap_or(u32::MAX);
                None
            }
            _ => None,
        };
        if let Some(bad) = bad {
            s.read_len_min = 0;
            s.skipping = Some(Skipping { bad, search: bad.pos + 1, min_len: 0 });
        }
    }

    /// A relay's read: forwards the whole durable frames read, as they are stored, in
    /// messages of at most a batch's worth of records and bytes (and the peer's largest
    /// records section, and `RELAY_ORIGINS_PER_MESSAGE_MAX` origins), while the window has
    /// room; where an origin's next frame does not continue where its last one ended,
    /// first a `Skip` of the hole between (the tier below skipped it).
    fn on_relay_read(
        &mut self,
        cx: &mut Ctx<'_>,
        (idx, session): (TopicIdx, u64),
        frames: &[log::LogFrame<'_>],
        (stop, seg_len): (Option<&ScanStop>, u64),
        (durable, dec): (Seq, &mut BatchDecoder),
    ) {
        let (now, cfg, hlc) = (cx.now, cx.cfg, cx.hlc);
        let max_records = u64::from(cfg.sync.batch_records_max);
        let max_bytes = self.pace.message_max(u64::from(cfg.sync.batch_bytes_max), cfg.sync.window_bytes_max);
        let r = self.relay.as_mut().expect("a relay");
        let s = self.streams.get_mut(&idx).expect("stream exists");
        let Some(start) = s.cursor else { return };
        let mut cursor = start;
        let sent = s.sent;
        // (Frames already sent are passed over, as the cursor is.)
        for f in frames.iter().take_while(|f| f.end() <= sent) {
            cursor = Cursor { base: start.base, pos: f.pos + f.len, offset: f.end() };
        }
        if let Some(p) = s.patch {
            // Flights the peer lacks, sent again as they were: their frames from `sent`.
            let read_from = cursor;
            let (mut batches, mut records, mut raw, mut newest) = (Vec::new(), 0u64, 0u64, hlc);
            for f in frames.iter().skip_while(|f| f.end() <= sent) {
                let full = records >= max_records || raw >= max_bytes || batches.len() >= BATCHES_PER_DATA_MAX;
                if f.base >= p.end || f.end() > durable || full {
                    break;
                }
                records += u64::from(f.header.count);
                raw += u64::from(f.header.raw_len);
                if let Ok(b) = DecodedBatch::decode_with(f.batch, dec) {
                    newest = b.records().map(|r| r.hlc).fold(newest, Hlc::max);
                }
                batches.push(f.batch.to_vec());
                cursor = Cursor { base: start.base, pos: f.pos + f.len, offset: f.end() };
            }
            if batches.is_empty() {
                // (A damaged frame: the search past it starts from a rewind.)
                return self.abandon_patch(idx, now);
            }
            let end = cursor.offset;
            let mut bytes = Vec::with_capacity(raw as usize / 2 + 64 + s.name.len());
            SyncMsg::Data { session, hlc: newest, topic: s.name.clone(), batches }.encode(&mut bytes);
            self.counters.records_sent += records;
            self.counters.records_resent += end.min(s.sent_high).saturating_sub(s.sent).min(records);
            self.counters.bytes_sent += bytes.len() as u64;
            let held =
                Held { bytes, start: s.sent, end, cursor: Some(read_from), relayed: Vec::new(), raw, patch: true };
            if self.bucket.as_mut().is_none_or(|b| b.try_take(held.bytes.len() as u64, now)) {
                Self::transmit(s, &mut self.pace, &mut self.session, held, now, self.gateway, cx.fx);
            } else {
                s.held = Some(held);
            }
            s.sent = end;
            s.cursor = Some(cursor);
            if end >= p.end {
                Self::end_patch(s);
            }
            return;
        }
        let mut frames = frames.iter().skip_while(|f| f.end() <= sent).peekable();
        let (mut sent_any, mut sent_data) = (false, false);
        loop {
            // One Data message per read, as an edge's uplink sends: messages sent at one
            // instant arrive in any order over a link with jitter, and each one out of
            // order is refused as a gap and sent again (swarm seeds 136 and 722: a relay
            // that sent four at once fell back on the retransmit timeout at every burst).
            let room = self.pace.in_flight < self.pace.window(cfg.sync.window_bytes_max)
                && s.inflight.len() < FLIGHTS_PER_STREAM_MAX;
            if sent_data || (sent_any && (!room || s.held.is_some())) {
                break;
            }
            let read_from = cursor;
            let mut batches = Vec::new();
            let (mut records, mut raw) = (0u64, 0u64);
            let mut carried: Vec<Relayed> = Vec::new();
            let mut hole = None;
            // The message's timestamp covers its records, which this tier's clock may have
            // refused as too far ahead: the tier above judges them itself.
            let mut newest = hlc;
            while let Some(f) = frames.peek() {
                let h = f.header;
                let full = records >= max_records || raw >= max_bytes || batches.len() >= BATCHES_PER_DATA_MAX;
                let section_max = self.peer_batch_raw_max.max(max_bytes);
                let too_large = !batches.is_empty() && raw + u64::from(h.raw_len) > section_max;
                let known = carried.iter().any(|c| c.origin == h.origin);
                let crowded = !known && carried.len() >= RELAY_ORIGINS_PER_MESSAGE_MAX;
                if f.end() > durable || full || too_large || crowded {
                    break;
                }
                let key = (h.origin, idx);
                if let Some(e) = r.passed.get(&key).or(r.acked.get(&key)).copied().filter(|&e| e < h.base_seq) {
                    if batches.is_empty() {
                        hole = Some(Relayed { origin: h.origin, from: e, to: h.base_seq, last: true });
                    }
                    break;
                }
                match carried.iter_mut().find(|c| c.origin == h.origin) {
                    Some(c) => c.to = c.to.max(h.end_seq()),
                    None => carried.push(Relayed { origin: h.origin, from: h.base_seq, to: h.end_seq(), last: false }),
                }
                let passed = r.passed.entry(key).or_default();
                *passed = (*passed).max(h.end_seq());
                records += u64::from(h.count);
                raw += u64::from(h.raw_len);
                if let Ok(b) = DecodedBatch::decode_with(f.batch, dec) {
                    newest = b.records().map(|r| r.hlc).fold(newest, Hlc::max);
                }
                batches.push(f.batch.to_vec());
                cursor = Cursor { base: start.base, pos: f.pos + f.len, offset: f.end() };
                frames.next();
            }
            let held = if let Some(x) = hole {
                // The hole goes first, as its own message at the frame's offset.
                r.passed.insert((x.origin, idx), x.to);
                let (topic, reason) = (s.name.clone(), SkipReason::Hole);
                let (origin, from, to) = (x.origin, x.from, x.to);
                let mut bytes = Vec::new();
                SyncMsg::Skip { session, hlc, topic, origin, from, to, reason }.encode(&mut bytes);
                let at = cursor.offset.max(s.sent);
                Held { bytes, start: at, end: at, cursor: Some(cursor), relayed: vec![x], raw: 0, patch: false }
            } else if let Some(c) = carried.last_mut() {
                c.last = true;
                sent_data = true;
                let end = cursor.offset;
                assert!(end <= durable, "only durable records are ever sent");
                let mut bytes = Vec::with_capacity(raw as usize / 2 + 64 + s.name.len());
                SyncMsg::Data { session, hlc: newest, topic: s.name.clone(), batches }.encode(&mut bytes);
                self.counters.records_sent += records;
                self.counters.records_resent += end.min(s.sent_high).saturating_sub(s.sent).min(records);
                s.sent_high = s.sent_high.max(end);
                self.counters.bytes_sent += bytes.len() as u64;
                Held { bytes, start: s.sent, end, cursor: Some(read_from), relayed: carried, raw, patch: false }
            } else {
                break;
            };
            sent_any = true;
            if self.bucket.as_mut().is_none_or(|b| b.try_take(held.bytes.len() as u64, now)) {
                Self::transmit(s, &mut self.pace, &mut self.session, held, now, self.gateway, cx.fx);
            } else {
                s.sent = s.sent.max(held.end);
                s.held = Some(held);
            }
        }
        s.cursor = Some(cursor);
        if !sent_any {
            return Self::search_past_damage(s, stop, seg_len, None);
        }
        s.read_len_min = 0;
        s.waiting_since = if durable - s.sent >= max_records { s.waiting_since } else { None };
    }

    /// A read of the search past a bad frame finished.
    fn on_search_read(&mut self, idx: TopicIdx, seg: &Segment, pos: u64, bytes: &[u8], durable: Seq, cx: &mut Ctx<'_>) {
        let s = self.streams.get_mut(&idx).expect("stream exists");
        let k = s.skipping.expect("searching");
        let eof = bytes.is_empty() || pos + bytes.len() as u64 >= seg.len;
        // Frames past the durable end may still be in the page cache only: the hole must
        // end at a durable offset.
        let end = seg.end.min(durable);
        match log::resync(bytes, pos, seg.len, eof, k.bad.offset) {
            Resync::Found { pos: q, base: b } if b <= end => {
                let from = s.sent;
                s.cursor = Some(Cursor { base: seg.base, pos: q, offset: b });
                self.skip(idx, (from, b), SkipReason::Corrupted, Some(k.bad), cx);
            }
            Resync::ReadFrom { pos: p, min_len } => {
                s.skipping = Some(Skipping { search: p, min_len, ..k });
            }
            Resync::Found { .. } | Resync::NotFound if seg.end <= durable => {
                let from = s.sent;
                self.skip(idx, (from, end), SkipReason::Corrupted, Some(k.bad), cx);
            }
            Resync::Found { .. } | Resync::NotFound => {
                // The frames after the damage are not all durable yet: look again later.
                s.skipping = Some(Skipping { search: k.bad.pos + 1, min_len: 0, ..k });
            }
        }
    }

    fn finish_read(&mut self, idx: TopicIdx) {
        if let Some(s) = self.streams.get_mut(&idx) {
            s.reading = None;
        }
    }

    /// When `pump` next has something to do.
    pub fn poll_timeout(&self, cfg: &SyncConfig, logs: &[TopicLog]) -> Option<Instant> {
        match self.session {
            Session::Connecting { .. } if self.paused => None,
            Session::Connecting { retry_at, .. } => Some(retry_at),
            Session::Active { unanswered_since, .. } if self.paused => {
                unanswered_since.map(|since| since.saturating_add(Duration(cfg.session_timeout.0 + 1)))
            }
            Session::Active { unanswered_since, .. } => {
                let mut t: Option<Instant> = None;
                let mut at = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
                if let Some(since) = unanswered_since {
                    at(since.saturating_add(Duration(cfg.session_timeout.0 + 1)));
                }
                if self.keepalive && self.pace.in_flight == 0 {
                    at(self.last_sent.saturating_add(cfg.keepalive_interval));
                }
                for (idx, s) in &self.streams {
                    if !s.inflight.is_empty() {
                        at(s.last_progress.saturating_add(Duration(cfg.retransmit_timeout.0 + 1)));
                    }
                    if let Some(h) = &s.held {
                        if let Some(b) = &self.bucket {
                            at(b.ready_at(h.bytes.len() as u64));
                        }
                    } else if let Some(w) = s.waiting_since {
                        // Mirror pump_stream's conditions, or a past deadline would spin the driver.
                        let window_open = self.pace.in_flight < self.pace.window(cfg.window_bytes_max)
                            && s.inflight.len() < FLIGHTS_PER_STREAM_MAX
                            && !s.probe_out();
                        if s.accepted
                            && window_open
                            && s.reading.is_none()
                            && !s.tail_pending
                            && s.sent < logs[idx.0 as usize].durable_offset()
                        {
                            at(w.saturating_add(LINGER));
                        }
                    }
                }
                t
            }
        }
    }
}

fn idx_of(streams: &BTreeMap<TopicIdx, UpStream>, name: &str) -> Option<TopicIdx> {
    streams.iter().find(|(_, s)| s.name == name).map(|(i, _)| *i)
}

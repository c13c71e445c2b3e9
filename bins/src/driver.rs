//! The driver both shells share: it owns the [`Node`], keeps the driver's rule (drain every
//! output after every input), routes replies to whoever asked, and turns events into logs
//! and counters. It does no I/O itself: disk requests and frames to send come back as
//! [`Effects`] for the shell to perform. So the shells differ only in how they wait.
//!
//! This is where time enters: the driver reads the monotonic and wall clocks and hands
//! both to the core as values, hence the one exception to the workspace's clock ban.
#![allow(clippy::disallowed_types)]

use crate::keyed::{self, KeyedAnswer, KeyedCall, ReadOption};
use crate::status::{Counters, Status};
use outpost_core::config::NodeConfig;
use outpost_core::io::{
    Control, DiskError, DiskOpId, DiskRequest, DiskResponse, Event, FetchError, Fetched, Input, Output, ProduceAck,
    ProduceError, ReqId,
};
use outpost_core::keyed::Dot;
use outpost_core::keyed_reads::ReadConsistency;
use outpost_core::types::{Instant, NodeId, Now, Seq, TopicIdx};
use outpost_core::{Node, NodeSeed};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Called once with the answer to a produce.
pub type ProduceReply = Box<dyn FnOnce(Result<ProduceAck, ProduceError>) + Send>;
/// Called once with the answers to a batch of produces, one per record in order.
pub type BatchReply = Box<dyn FnOnce(Vec<Result<ProduceAck, ProduceError>>) + Send>;
/// Called once with the answer to a call on a keyed topic.
pub type KeyedReply = Box<dyn FnOnce(KeyedAnswer) + Send>;
/// Called once with the answer to a fetch.
pub type FetchReply = Box<dyn FnOnce(Result<Fetched, FetchError>) + Send>;

/// What the shell must do after an input: perform these disk requests in order, and send
/// these frames (each may be dropped if the peer is not connected; the protocol copes).
#[derive(Debug, Default)]
pub struct Effects {
    pub disk: Vec<(DiskOpId, DiskRequest)>,
    pub sends: Vec<(NodeId, Vec<u8>)>,
}

/// Static facts about the process the status report shows.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    pub location: Option<String>,
    /// Node names the shell knows, by id (the gateway's, or the edges that connected).
    pub names: BTreeMap<NodeId, String>,
    /// The end-to-end encrypted topics produced to on this node, by the topic it produces to.
    pub seals: BTreeMap<TopicIdx, Sealing>,
}

/// What this node does with a value produced to an end-to-end encrypted topic.
#[derive(Clone, Debug)]
pub enum Sealing {
    /// It holds the topic's keys: it seals the value.
    Here { topic: String, keys: crate::e2e::Keyring },
    /// It holds none (a gateway, or an edge whose application seals): the value must come
    /// sealed, and one that is not is refused rather than stored in clear.
    Elsewhere { topic: String },
}

impl Identity {
    /// Reads the key files of `settings`' encrypted topics; an error names the file.
    pub fn seals_of(settings: &crate::config::Settings) -> Result<BTreeMap<TopicIdx, Sealing>, String> {
        let names = settings.node.topic_names();
        let mut seals = BTreeMap::new();
        for (topic, keys) in &settings.encrypted {
            let Some(idx) = names.to_produce(topic) else { continue };
            let sealing = match keys {
                Some(path) => Sealing::Here {
                    topic: topic.clone(),
                    keys: crate::e2e::Keyring::load(path).map_err(|e| format!("the keys of topic {topic:?}: {e}"))?,
                },
                None => Sealing::Elsewhere { topic: topic.clone() },
            };
            seals.insert(idx, sealing);
        }
        Ok(seals)
    }
}

pub struct Driver {
    /// This node's id: the origin its sealed values are bound to.
    id: NodeId,
    node: Node,
    start: std::time::Instant,
    pub identity: Identity,
    next_req: u64,
    produces: BTreeMap<ReqId, ProduceReply>,
    /// Batches being answered, by the request id of their first record (their records
    /// have consecutive ids).
    batches: BTreeMap<ReqId, PendingBatch>,
    fetches: BTreeMap<ReqId, FetchReply>,
    pub counters: Counters,
}

/// The results of a batch as they come, answered when the last does.
struct PendingBatch {
    results: Vec<Option<Result<ProduceAck, ProduceError>>>,
    unanswered: usize,
    reply: BatchReply,
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A seed that differs at every start (session ids must not repeat across restarts); the
/// core draws nothing else from it that matters for correctness.
fn start_seed() -> NodeSeed {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64, so that close start times give unrelated seeds.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    NodeSeed(x ^ (x >> 31))
}

impl Driver {
    /// Starts the node (in recovery: the first effect is the listing of its files).
    pub fn new(cfg: NodeConfig, identity: Identity, fx: &mut Effects) -> Driver {
        let start = std::time::Instant::now();
        let now = Now { mono: Instant(0), wall_ms: wall_ms() };
        let mut d = Driver {
            id: cfg.id,
            node: Node::new(cfg, start_seed(), now),
            start,
            identity,
            next_req: 0,
            produces: BTreeMap::new(),
            batches: BTreeMap::new(),
            fetches: BTreeMap::new(),
            counters: Counters::default(),
        };
        d.collect(fx);
        d
    }

    fn now(&self) -> Now {
        Now { mono: Instant(self.start.elapsed().as_nanos() as u64), wall_ms: wall_ms() }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    fn req(&mut self) -> ReqId {
        self.next_req += 1;
        ReqId(self.next_req)
    }

    fn input(&mut self, input: Input, fx: &mut Effects) {
        let now = self.now();
        self.node.handle(now, input);
        self.collect(fx);
    }

    pub fn produce(
        &mut self,
        topic: TopicIdx,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        reply: ProduceReply,
        fx: &mut Effects,
    ) {
        let value = match self.sealed(topic, key.as_deref(), value) {
            Ok(v) => v,
            Err(e) => {
                self.counters.refuse(&e);
                return reply(Err(e));
            }
        };
        let req = self.req();
        self.produces.insert(req, reply);
        self.input(Input::Produce { req, topic, key, value }, fx);
    }

    /// Answers a call on keyed topic `topic` (named `name`): a read or the conflict log at
    /// once from the node's state; a write once it is durable, as a produce is.
    pub fn keyed(&mut self, topic: TopicIdx, name: &str, call: KeyedCall, reply: KeyedReply, fx: &mut Effects) {
        let names = keyed::Names { known: &self.identity.names, own: (self.id, &self.identity.name) };
        let state = self.node.keyed(topic);
        match (call, state) {
            (_, None) => reply(KeyedAnswer::NotKeyed),
            (KeyedCall::Get { key, read }, Some(s)) => {
                let session = match &read {
                    ReadOption::Causal(bytes) => match keyed::session_of(name, bytes) {
                        Ok(t) => Some(t),
                        Err(e) => return reply(KeyedAnswer::BadToken(e)),
                    },
                    _ => None,
                };
                let consistency = match (&read, &session) {
                    (ReadOption::Bounded { staleness_max_ms }, _) => {
                        ReadConsistency::Bounded { staleness_max_ms: *staleness_max_ms }
                    }
                    (_, Some(t)) => ReadConsistency::Causal(t),
                    (_, None) => ReadConsistency::Eventual,
                };
                match self.node.keyed_read(topic, consistency, self.now().wall_ms) {
                    None => reply(KeyedAnswer::NotKeyed),
                    Some(Err(refused)) => reply(KeyedAnswer::NotRead(refused)),
                    Some(Ok(stamp)) => reply(KeyedAnswer::Value(keyed::key_json(name, s, &key, &names, &read, &stamp))),
                }
            }
            (KeyedCall::Conflicts { max }, Some(s)) => {
                reply(KeyedAnswer::Conflicts(keyed::conflicts_json(name, s, max, &names)))
            }
            (KeyedCall::Write { key, op, session }, Some(_)) => {
                let session = match session.map(|b| keyed::session_of(name, &b)).transpose() {
                    Ok(t) => t,
                    Err(e) => return reply(KeyedAnswer::BadToken(e)),
                };
                let writer = self.id;
                match self.node.keyed_prepare(topic, &key, op.kind()) {
                    Ok(value) => {
                        // The session's token with this write: what its next read must hold.
                        let answer = move |r: Result<ProduceAck, ProduceError>| {
                            let token = match (&r, session) {
                                // (None past the origins a token holds: such a topic has no
                                // causal reads, `keyed_reads::OBSERVED_ORIGINS_MAX`.)
                                (Ok(ack), Some(mut t)) => t.add(Dot { origin: writer, seq: ack.seq }).then_some(t),
                                _ => None,
                            };
                            reply(KeyedAnswer::Written(r, token))
                        };
                        self.produce(topic, Some(key), value, Box::new(answer), fx)
                    }
                    Err(e) => reply(KeyedAnswer::Refused(e)),
                }
            }
        }
    }

    /// `value` as the core is to store it: sealed end to end if this node seals `topic`;
    /// refused if the topic is sealed elsewhere and the value is not sealed; else as it is.
    fn sealed(&self, topic: TopicIdx, key: Option<&[u8]>, value: Vec<u8>) -> Result<Vec<u8>, ProduceError> {
        match self.identity.seals.get(&topic) {
            Some(Sealing::Here { topic, keys }) => {
                Ok(keys.seal(&crate::e2e::Context { topic, origin: self.id, key }, &value))
            }
            Some(Sealing::Elsewhere { topic }) if !crate::e2e::is_sealed(&value) => {
                Err(ProduceError::Invalid(format!(
                    "topic {topic:?} is end-to-end encrypted and this node holds none of its keys: produce values \
                 sealed with the topic's key file (outpost::e2e::Keyring::seal; the envelope in PROTOCOL.md), or \
                 give the producing edge `keys`"
                )))
            }
            Some(Sealing::Elsewhere { .. }) | None => Ok(value),
        }
    }

    /// Hands the records to the core in order, under one reading of the clocks, and calls
    /// `reply` once every record is answered. The first record refused as it is handed
    /// over with a retryable error (busy, clock, storage full…) stops the batch: it and
    /// every record after it get that refusal and are not written, so that what is written
    /// of a batch is in its order and a client resends the refused tail as it is.
    pub fn produce_batch(
        &mut self,
        topic: TopicIdx,
        records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
        reply: BatchReply,
        fx: &mut Effects,
    ) {
        let n = records.len();
        assert!(n > 0, "the decoders refuse empty batches");
        let first = ReqId(self.next_req + 1);
        self.next_req += n as u64;
        self.batches.insert(first, PendingBatch { results: vec![None; n], unanswered: n, reply });
        let now = self.now();
        for (i, (key, value)) in records.into_iter().enumerate() {
            let req = ReqId(first.0 + i as u64);
            match self.sealed(topic, key.as_deref(), value) {
                Ok(value) => {
                    self.node.handle(now, Input::Produce { req, topic, key, value });
                    self.collect(fx);
                }
                // Refused for itself, as a record too large is: the batch goes on.
                Err(e) => {
                    self.counters.refuse(&e);
                    self.answer_produce(req, Err(e));
                }
            }
            let Some(batch) = self.batches.get_mut(&first) else { return };
            let refused = match &batch.results[i] {
                Some(Err(e)) if e.is_retryable() => e.clone(),
                _ => continue,
            };
            for _ in i + 1..n {
                self.counters.refuse(&refused);
            }
            batch.results[i + 1..].fill(Some(Err(refused)));
            batch.unanswered -= n - i - 1;
            if batch.unanswered == 0 {
                self.answer_batch(first);
            }
            return;
        }
    }

    fn answer_batch(&mut self, first: ReqId) {
        let batch = self.batches.remove(&first).expect("a batch answered once");
        let results = batch.results.into_iter().map(|r| r.expect("every record is answered")).collect();
        (batch.reply)(results);
    }

    /// Passes the core's answer to a produce to whoever asked.
    fn answer_produce(&mut self, req: ReqId, result: Result<ProduceAck, ProduceError>) {
        if let Some(reply) = self.produces.remove(&req) {
            return reply(result);
        }
        let (&first, batch) =
            self.batches.range_mut(..=req).next_back().expect("a reply answers a produce or a batch we made");
        let slot = &mut batch.results[(req.0 - first.0) as usize];
        assert!(slot.is_none(), "a record is answered once");
        *slot = Some(result);
        batch.unanswered -= 1;
        if batch.unanswered == 0 {
            self.answer_batch(first);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn fetch(
        &mut self,
        topic: TopicIdx,
        from: Seq,
        max_records: u32,
        max_bytes: u32,
        reply: FetchReply,
        fx: &mut Effects,
    ) {
        let req = self.req();
        self.fetches.insert(req, reply);
        self.input(Input::Fetch { req, topic, from, max_records, max_bytes }, fx);
    }

    pub fn message(&mut self, from: NodeId, bytes: Vec<u8>, fx: &mut Effects) {
        self.counters.frames_received += 1;
        self.input(Input::Message { from, bytes }, fx);
    }

    pub fn disk_done(&mut self, id: DiskOpId, result: Result<DiskResponse, DiskError>, fx: &mut Effects) {
        if let Err(e) = &result {
            tracing::warn!(op = id.0, error = %e, "storage request failed");
        }
        self.input(Input::DiskDone { id, result }, fx);
    }

    pub fn control(&mut self, c: Control, fx: &mut Effects) {
        if c == Control::LinkUp {
            tracing::debug!("the link to the gateway is up");
        } else {
            tracing::info!(command = ?c, "sync control");
        }
        self.input(Input::Control(c), fx);
    }

    /// Call when [`next_wake`](Self::next_wake) has passed.
    pub fn timeout(&mut self, fx: &mut Effects) {
        let now = self.now();
        self.node.handle_timeout(now);
        self.collect(fx);
    }

    /// When to call [`timeout`](Self::timeout) next.
    pub fn next_wake(&self) -> Option<std::time::Instant> {
        self.node.poll_timeout().map(|at| self.start + std::time::Duration::from_nanos(at.as_nanos()))
    }

    fn collect(&mut self, fx: &mut Effects) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Disk { id, req } => fx.disk.push((id, req)),
                Output::Send { to, bytes } => {
                    self.counters.frames_sent += 1;
                    fx.sends.push((to, bytes));
                }
                Output::SendAs { from, .. } => {
                    unreachable!("only site members send as cluster {from}, and the daemon runs no site cluster")
                }
                Output::Reply { req, result } => {
                    match &result {
                        Ok(_) => self.counters.records_acked += 1,
                        Err(e) => self.counters.refuse(e),
                    }
                    self.answer_produce(req, result);
                }
                Output::Fetched { req, result } => {
                    let reply = self.fetches.remove(&req).expect("a fetch answer answers a fetch we made");
                    reply(result);
                }
                Output::StrongRead { .. } => {
                    unreachable!("only site members answer strong reads, and the daemon runs no site cluster")
                }
                Output::Event(e) => self.event(e),
            }
        }
    }

    fn name_of(&self, id: NodeId) -> String {
        self.identity.names.get(&id).cloned().unwrap_or_else(|| id.to_string())
    }

    fn topic_name(&self, t: TopicIdx) -> &str {
        self.node.config().topics.get(t.0 as usize).map_or("?", |c| c.name.as_str())
    }

    /// Records `from..to` of `topic` were deleted before the next hop had them: counted,
    /// and said in the log.
    fn deleted_unsynced(
        &mut self,
        topic: TopicIdx,
        (from, to): (u64, u64),
        (records, bytes): (u64, u64),
        policy: &str,
        why: &str,
    ) {
        self.counters.evicted_unsynced += records;
        tracing::warn!(topic = self.topic_name(topic), from, to, records, bytes, policy, "{why}");
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Stored { origin, topic, value_crcs, replay: false, .. } => {
                self.counters.records_stored += value_crcs.len() as u64;
                tracing::debug!(origin = %self.name_of(origin), topic = self.topic_name(topic), records = value_crcs.len(), "stored");
            }
            Event::Stored { .. } => {}
            Event::KeyedCopied { copies } => tracing::debug!(copies = copies.len(), "keyed writes copied to the edges"),
            Event::KeyedCopiesDeferred { batches } => tracing::warn!(
                batches,
                "keyed writes found at recovery not yet copied to the other edges, more than the fan-out queue \
                 (gateway.pending_bytes_max) holds: these batches are copied after another restart; raise \
                 gateway.pending_bytes_max to copy them at once"
            ),
            Event::Recovered { topics, records, truncated_bytes } => {
                tracing::info!(topics, records, truncated_bytes, "recovered the log; accepting writes")
            }
            Event::TailTruncated { file, at, cut_bytes, reason, skipped } => {
                self.counters.tail_bytes_cut += cut_bytes;
                tracing::warn!(
                    file = %file, at, cut_bytes, reason = %reason, skipped = ?skipped,
                    "cut a torn or corrupt tail: these bytes were never acknowledged as a whole record"
                );
            }
            Event::Corrupted { topic, from, to } => {
                tracing::error!(
                    topic = self.topic_name(topic),
                    from,
                    to,
                    "records fail their checksum: storage destroyed them"
                )
            }
            Event::Skipped { origin, topic, from, to, reason } => {
                tracing::warn!(origin = %self.name_of(origin), topic = self.topic_name(topic), from, to, reason = ?reason, "an edge skipped a range")
            }
            Event::SessionUp { peer, session } => {
                self.counters.sessions_up += 1;
                tracing::info!(peer = %self.name_of(peer), session, "sync session up");
            }
            Event::SessionLost { peer, session } => {
                self.counters.sessions_lost += 1;
                tracing::warn!(peer = %self.name_of(peer), session, "sync session lost (no answer in time); reconnecting with backoff");
            }
            Event::NotPlaced { peer, topic, zone } => tracing::error!(
                peer = %self.name_of(peer),
                topic = self.topic_name(topic),
                zone = zone.as_deref().unwrap_or("none"),
                "the peer says it is in a zone this topic's classification does not allow: nothing of it is sent \
                 there; give the peer the zone it is in, or route the topic to a node in an allowed zone"
            ),
            Event::HlcRejected { from, remote } => {
                self.counters.hlc_rejected += 1;
                tracing::warn!(peer = %self.name_of(from), remote = %remote, "a peer's clock is too far ahead; its timestamp was not adopted");
            }
            Event::ClockWaits { bound_ms, wait_ms } => tracing::info!(
                bound_ms,
                wait_ms,
                "waiting {:.1} s for the wall clock to pass the clock bound persisted before the restart, so that \
                 timestamps do not run ahead of it; writes are refused until then (retryable, with the time left)",
                wait_ms as f64 / 1e3
            ),
            Event::ClockAheadOfWall { bound_ms, behind_ms } => tracing::warn!(
                bound_ms,
                behind_ms,
                "the wall clock is {:.1} s behind the clock bound persisted before the restart: it went back, or the \
                 device has no real-time clock; timestamps continue from the bound, ahead of the wall clock until it \
                 catches up (check the time source)",
                behind_ms as f64 / 1e3
            ),
            Event::HeldMessageDropped { from, bytes } => tracing::warn!(
                peer = %self.name_of(from),
                bytes,
                "dropped a message that was waiting for the clock: no room left under gateway.pending_bytes_max; \
                 the peer resends it"
            ),
            Event::BadMessage { from, error } => {
                self.counters.bad_messages += 1;
                tracing::warn!(peer = %self.name_of(from), error = %error, "dropped a bad message");
            }
            Event::StorageProblem { detail } => tracing::error!(detail = %detail, "storage problem"),
            Event::StorageFreed { bytes } => {
                tracing::info!(bytes, "storage has room again: freed segments the gateway holds; produces are taken")
            }
            Event::SiteLeader { cluster, term } => tracing::info!(cluster = %cluster, term, "leading the site cluster"),
            Event::SegmentDeleted { file, records } => tracing::debug!(file = %file, records, "segment deleted"),
            Event::Evicted { topic, from, to, records, bytes, policy } => {
                let why = "storage budget full: evicted records the gateway never had";
                self.deleted_unsynced(topic, (from, to), (records, bytes), policy, why);
            }
            Event::Expired { topic, from, to, records, bytes } => {
                let why = "retention_age expired records an edge had not acknowledged: it will be told they are gone";
                self.deleted_unsynced(topic, (from, to), (records, bytes), "retention_age", why);
            }
        }
    }

    /// The whole state as the CLI, `/health` and `/metrics` show it.
    pub fn status(&self, link: crate::status::Link) -> Status {
        crate::status::build(self, link, self.start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::config::{Role, SyncDirection, TopicConfig};
    use outpost_core::io::FileId;
    use std::sync::{Arc, Mutex};

    /// Performs the driver's disk requests over files in memory until none is left.
    fn run_disk(d: &mut Driver, fx: &mut Effects, files: &mut BTreeMap<FileId, Vec<u8>>) {
        while !fx.disk.is_empty() {
            for (id, req) in std::mem::take(&mut fx.disk) {
                let result = match req {
                    DiskRequest::List => {
                        Ok(DiskResponse::Listed(files.iter().map(|(f, b)| (*f, b.len() as u64)).collect()))
                    }
                    DiskRequest::Append { file, bytes } => {
                        files.entry(file).or_default().extend_from_slice(&bytes);
                        Ok(DiskResponse::Done)
                    }
                    DiskRequest::Read { file, offset, len } => {
                        let b = files.get(&file).map_or(&[][..], Vec::as_slice);
                        let start = (offset as usize).min(b.len());
                        Ok(DiskResponse::Read(b[start..(start + len as usize).min(b.len())].to_vec()))
                    }
                    DiskRequest::Delete { file } => {
                        files.remove(&file);
                        Ok(DiskResponse::Done)
                    }
                    DiskRequest::Truncate { file, len } => {
                        files.entry(file).or_default().truncate(len as usize);
                        Ok(DiskResponse::Done)
                    }
                    DiskRequest::Sync { .. } => Ok(DiskResponse::Done),
                };
                d.disk_done(id, result, fx);
            }
        }
    }

    /// A batch that fills the produce buffer stops at its first retryable refusal: the
    /// small record after the refused one is refused too, not written after it, so that
    /// what a batch writes is in its order and the client resends the refused tail as is.
    #[test]
    fn a_batch_stops_at_its_first_retryable_refusal() {
        let cfg = NodeConfig::new(NodeId(1), Role::Edge, vec![TopicConfig::new("t", SyncDirection::Local)]);
        let identity = Identity { name: "e".into(), location: None, names: BTreeMap::new(), seals: BTreeMap::new() };
        let (mut fx, mut files) = (Effects::default(), BTreeMap::new());
        let mut d = Driver::new(cfg, identity, &mut fx);
        run_disk(&mut d, &mut fx, &mut files);
        assert!(d.node().is_running(), "recovered over empty storage");
        let mut records: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..6).map(|_| (None, vec![7u8; 900 << 10])).collect();
        records.push((None, b"small".to_vec()));
        let answer = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&answer);
        d.produce_batch(TopicIdx(0), records, Box::new(move |r| *slot.lock().expect("one thread") = Some(r)), &mut fx);
        run_disk(&mut d, &mut fx, &mut files);
        let results = answer.lock().expect("one thread").take().expect("the batch is answered");
        let written = results.iter().take_while(|r| r.is_ok()).count();
        assert!((1..6).contains(&written), "the 4 MiB produce buffer takes some 900 KiB records: {written}");
        assert!(
            results[written..].iter().all(|r| matches!(r, Err(ProduceError::Busy { .. }))),
            "every record from the first refusal on is refused as busy: {results:?}"
        );
        let seqs: Vec<u64> = results[..written].iter().map(|r| r.as_ref().expect("acked").seq).collect();
        assert_eq!(seqs, (0..written as u64).collect::<Vec<_>>(), "written in order");
        assert_eq!(d.node().log(TopicIdx(0)).end_offset(), written as u64, "nothing after the refusal was written");
    }
}

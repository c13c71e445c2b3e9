//! Reads by offset range: `Input::Fetch` → disk reads → `Output::Fetched`.
//!
//! Guarantees: only durable records are returned (a reader never sees a record a crash
//! could take back); records come in sequence order without gaps from `from`, except
//! that `next` jumps over an unwritten range (sequences recovery moved past, see `log`),
//! and a frame that fails its checksum is [`FetchError::Corrupted`] naming the destroyed
//! range, so a reader can step past it; a fetch
//! reads at most one segment and returns at most `max_records` and, after its first
//! record, at most `max_bytes` of keys and values (counting
//! [`FETCH_RECORD_OVERHEAD`] more per record, so that many empty records cannot pass
//! the memory budget); at most `fetch.in_flight_max` fetches are in flight, and
//! `max_bytes` is capped at `fetch.bytes_max`. Segments have no offset index; a fetch
//! starts where the last fetch of the topic stopped if `from` lies at or after it in the
//! same segment (a consumer reading on: one cursor per topic), and otherwise scans its
//! segment from the start up to `from` (bounded by the segment size). Profiling
//! `bench-e2e` found the gateway spending most of a drain re-reading and re-checksumming
//! segments from their start for a consumer that fetched on from where it stopped.

use crate::codec::{BatchDecoder, DecodedBatch, MAX_BATCH_RECORDS};
use crate::effects::{Ctx, Fx, Owner};
use crate::io::{DiskOpId, DiskRequest, FetchError, Fetched, FetchedRecord, Output, ReqId};
use crate::log::{self, Resync, ScanStop, TopicLog};
use crate::memory::{MemoryPart, MemoryUsage, PlanBasis};
use crate::types::{Seq, TopicIdx};
use std::collections::BTreeMap;

/// Bytes a fetch counts per record on top of its key and value, against `max_bytes`.
pub const FETCH_RECORD_OVERHEAD: u64 = 2 * std::mem::size_of::<crate::io::FetchedRecord>() as u64;

#[derive(Debug)]
struct Pending {
    topic: TopicIdx,
    base: u64,
    /// File position and log offset of the next frame to read.
    pos: u64,
    offset: u64,
    max_records: usize,
    max_bytes: usize,
    bytes: usize,
    records: Vec<FetchedRecord>,
    next: Seq,
    /// Searching past a bad frame that started at `offset` (see `log::resync`).
    searching: bool,
}

/// Where the last fetch of a topic stopped: the start of a frame that is durable, in
/// segment `base`. Segments are append-only while a node runs (a rollback cuts only what
/// was never durable; segments are deleted whole), so it stays a frame boundary for as
/// long as the segment exists.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    base: u64,
    pos: u64,
    offset: u64,
}

/// What a topic's cursor costs at most, counted with the fetch results (a map entry with
/// its share of the map's nodes).
pub const CURSOR_BYTES: u64 = 128;

/// Fetch's planned memory: the records of `fetch.in_flight_max` fetches, a cursor per
/// topic, and one read per fetch.
pub(crate) fn planned(cfg: &crate::config::NodeConfig, b: &PlanBasis) -> MemoryUsage {
    let fetch_max = u64::from(cfg.fetch.bytes_max) + b.record_max + FETCH_RECORD_OVERHEAD;
    let mut m = MemoryUsage::default();
    m.set(MemoryPart::FetchResults, b.fetches * fetch_max + b.topics * CURSOR_BYTES);
    m.set(MemoryPart::Reads, b.fetches * b.read_max);
    m
}
const _: () = assert!(std::mem::size_of::<Cursor>() as u64 + 8 <= CURSOR_BYTES / 2);

/// Fetches in flight, and one cursor per topic.
#[derive(Debug, Default)]
pub struct Fetches {
    pending: BTreeMap<ReqId, Pending>,
    /// The read in flight of each fetch.
    reads: BTreeMap<DiskOpId, ReqId>,
    cursors: BTreeMap<TopicIdx, Cursor>,
}

fn reply(fx: &mut Fx, req: ReqId, result: Result<Fetched, FetchError>) {
    fx.out.push_back(Output::Fetched { req, result });
}

/// A fetch as an application asks for it (`Input::Fetch`).
pub(crate) struct FetchRequest {
    pub req: ReqId,
    pub topic: TopicIdx,
    pub from: Seq,
    pub max_records: u32,
    pub max_bytes: u32,
}

impl Fetches {
    /// Starts a fetch of `log` (the log of `r.topic`), or answers it at once when there is
    /// nothing to read.
    pub(crate) fn start(&mut self, cx: &mut Ctx<'_>, r: FetchRequest, log: &TopicLog) {
        let FetchRequest { req, topic, from, max_records, max_bytes } = r;
        let (cfg, chunk, fx) = (&cx.cfg.fetch, cx.cfg.log.read_chunk_bytes, &mut *cx.fx);
        let (start, durable_end) = (log.start_offset(), log.durable_offset());
        if from < start || from > durable_end {
            return reply(fx, req, Err(FetchError::OutOfRange { from, start, durable_end }));
        }
        if from == durable_end || max_records == 0 {
            return reply(fx, req, Ok(Fetched { records: Vec::new(), next: from, durable_end }));
        }
        if self.pending.len() >= cfg.in_flight_max as usize {
            return reply(fx, req, Err(FetchError::Busy { in_flight: self.pending.len() }));
        }
        let seg = log.segment_for(from).expect("from is within start..durable_end");
        let (pos, offset) = match self.cursors.get(&topic) {
            Some(c) if c.base == seg.base && c.offset <= from => (c.pos, c.offset),
            _ => (0, seg.base),
        };
        let p = Pending {
            topic,
            base: seg.base,
            pos,
            offset,
            max_records: (max_records as usize).min(MAX_BATCH_RECORDS),
            max_bytes: max_bytes.min(cfg.bytes_max) as usize,
            bytes: 0,
            records: Vec::new(),
            next: from,
            searching: false,
        };
        Self::read(&mut self.reads, req, &p, log, (chunk, 0), fx);
        self.pending.insert(req, p);
    }

    fn read(
        reads: &mut BTreeMap<DiskOpId, ReqId>,
        req: ReqId,
        p: &Pending,
        log: &TopicLog,
        (chunk, min_len): (u32, usize),
        fx: &mut Fx,
    ) {
        let len = (chunk as usize).max(min_len) as u32;
        let id = fx.disk(DiskRequest::Read { file: log.file(p.base), offset: p.pos, len }, Owner::Fetch);
        reads.insert(id, req);
    }

    /// The read `id` completed: the fetch it belongs to goes on (`logs`: every topic's).
    pub(crate) fn on_read_done(
        &mut self,
        id: DiskOpId,
        bytes: Option<&[u8]>,
        logs: &[TopicLog],
        chunk: u32,
        dec: &mut BatchDecoder,
        fx: &mut Fx,
    ) {
        let Some(req) = self.reads.remove(&id) else { return };
        let Some(topic) = self.pending.get(&req).map(|p| p.topic) else { return };
        self.on_read(req, bytes, &logs[topic.0 as usize], chunk, dec, fx);
    }

    /// Heap bytes of the records gathered by fetches in flight.
    pub fn held_bytes(&self) -> u64 {
        // A fetch in flight: its entry, its read's entry (16 bytes), and the maps' slack.
        let per = std::mem::size_of::<Pending>() as u64 + 64;
        let pending: u64 = self
            .pending
            .values()
            .map(|p| per + p.bytes as u64 + (p.records.capacity() * std::mem::size_of::<FetchedRecord>()) as u64)
            .sum();
        pending + self.cursors.len() as u64 * CURSOR_BYTES
    }

    /// A read for fetch `req` completed (`None`: it failed).
    fn on_read(
        &mut self,
        req: ReqId,
        bytes: Option<&[u8]>,
        log: &TopicLog,
        chunk: u32,
        dec: &mut BatchDecoder,
        fx: &mut Fx,
    ) {
        let mut p = self.pending.remove(&req).expect("a read belongs to a pending fetch");
        debug_assert_eq!(p.topic, log.topic);
        let durable_end = log.durable_offset();
        let Some(seg) = log.segment_for(p.next).filter(|s| s.base == p.base) else {
            // Retention or eviction deleted the segment while the read was in flight.
            return reply(
                fx,
                req,
                Err(FetchError::OutOfRange { from: p.next, start: log.start_offset(), durable_end }),
            );
        };
        let Some(bytes) = bytes else {
            return reply(fx, req, Err(FetchError::Storage(format!("segment {} could not be read", p.base))));
        };
        let seg_end = seg.end.min(durable_end);
        if p.searching {
            let eof = bytes.is_empty() || p.pos + bytes.len() as u64 >= seg.len;
            return match log::resync(bytes, p.pos, seg.len, eof, p.offset) {
                Resync::ReadFrom { pos, min_len } => {
                    p.pos = pos;
                    Self::read(&mut self.reads, req, &p, log, (chunk, min_len), fx);
                    self.pending.insert(req, p);
                }
                Resync::Found { pos, base } if base <= p.next => {
                    // The damage lies wholly before `from`: read on from the good frame.
                    (p.pos, p.offset, p.searching) = (pos, base, false);
                    Self::read(&mut self.reads, req, &p, log, (chunk, 0), fx);
                    self.pending.insert(req, p);
                }
                found => {
                    let to = match found {
                        Resync::Found { base, .. } => base.min(seg_end),
                        _ => seg_end,
                    };
                    reply(fx, req, Err(FetchError::Corrupted { from: p.next, to }))
                }
            };
        }
        let mut frames = Vec::new();
        let stop = log::scan(bytes, p.pos, p.offset, |f| frames.push(f));
        let mut full = false;
        for f in &frames {
            if f.base >= seg_end {
                // Not durable yet: a rollback may still cut it, so neither read it nor
                // move the cursor past it.
                break;
            }
            if f.end() > p.next {
                let Ok(batch) = DecodedBatch::decode_with(f.batch, dec) else {
                    // A checksum that holds around records that do not decode (a bug wrote
                    // them, or someone crafted them: fuzz target `recovery`): the records are
                    // lost as if the checksum had failed, and a consumer must be able to
                    // step past them. Records gathered so far go out first.
                    if !p.records.is_empty() {
                        return reply(fx, req, Ok(Fetched { records: p.records, next: p.next, durable_end }));
                    }
                    return reply(fx, req, Err(FetchError::Corrupted { from: p.next, to: f.end().min(seg_end) }));
                };
                let (origin, origin_base) = (batch.header.origin, batch.header.base_seq);
                for ((seq, origin_seq), r) in (f.base..).zip(origin_base..).zip(batch.records()) {
                    if seq < p.next || seq >= seg_end {
                        continue;
                    }
                    let size = r.payload_len() + FETCH_RECORD_OVERHEAD as usize;
                    if p.records.len() >= p.max_records || (!p.records.is_empty() && p.bytes + size > p.max_bytes) {
                        full = true;
                        break;
                    }
                    p.bytes += size;
                    p.records.push(FetchedRecord {
                        seq,
                        origin,
                        origin_seq,
                        hlc: r.hlc,
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.to_vec(),
                    });
                    p.next = seq + 1;
                }
            }
            if full {
                break;
            }
            p.pos = f.pos + f.len;
            p.offset = f.end();
        }
        let done = full || p.next >= seg_end;
        let damaged = stop.as_ref().and_then(|st| st.damaged_at(seg.len)).filter(|&pos| pos == p.pos);
        match stop {
            _ if done => {
                // `pos`/`offset` point at the first frame not wholly returned.
                self.cursors.insert(p.topic, Cursor { base: p.base, pos: p.pos, offset: p.offset });
                reply(fx, req, Ok(Fetched { records: p.records, next: p.next, durable_end }))
            }
            // Records already gathered go out first; the next fetch meets the damage.
            _ if damaged.is_some() && !p.records.is_empty() => {
                reply(fx, req, Ok(Fetched { records: p.records, next: p.next, durable_end }))
            }
            _ if damaged.is_some() => {
                let pos = damaged.expect("checked");
                p.searching = true;
                p.pos = pos + 1;
                Self::read(&mut self.reads, req, &p, log, (chunk, 0), fx);
                self.pending.insert(req, p);
            }
            Some(ScanStop::Incomplete { pos, needed }) if pos == p.pos && !bytes.is_empty() => {
                Self::read(&mut self.reads, req, &p, log, (chunk, needed), fx);
                self.pending.insert(req, p);
            }
            // The end of the file before the end of the segment: an unwritten range (see
            // `log`) that holds no records. Continue after it.
            None if bytes.is_empty() => reply(fx, req, Ok(Fetched { records: p.records, next: seg_end, durable_end })),
            None | Some(ScanStop::Incomplete { .. }) if !bytes.is_empty() => {
                Self::read(&mut self.reads, req, &p, log, (chunk, 0), fx);
                self.pending.insert(req, p);
            }
            _ => reply(fx, req, Err(FetchError::Storage(format!("segment {} unreadable at seq {}", p.base, p.next)))),
        }
    }
}

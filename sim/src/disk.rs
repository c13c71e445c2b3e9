//! The simulated disk of one node: files in memory, a page cache that a crash empties,
//! torn writes at the tail, bits that flip in durable blocks, a capacity, and latencies
//! drawn from the device profile.
//!
//! Requests are served one at a time in the order issued (what the core relies on, see
//! `outpost_core::io`). An operation's effect happens when it completes; a crash drops the
//! operation in service and every queued one.

use crate::profiles::DiskProfile;
use crate::rng::SimRng;
use outpost_core::io::{DiskError, DiskOpId, DiskRequest, DiskResponse, FileId};
use outpost_core::log::{self, Resync};
use outpost_core::types::TopicIdx;
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Debug, Default)]
struct SimFile {
    data: Vec<u8>,
    /// Bytes a crash cannot take away.
    durable_len: usize,
    /// Whether the file's directory entry is durable (an fsync happened since creation).
    entry_durable: bool,
}

/// A change to what a disk holds durably, for the durability checks (`crate::durability`),
/// which read the bytes it names right after the operation that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskChange {
    /// An fsync made `from..to` of the file durable.
    Synced { file: FileId, from: u64, to: u64 },
    /// The file was cut to `len` bytes.
    Truncated { file: FileId, len: u64 },
    /// The file was deleted.
    Deleted { file: FileId },
}

/// What a crash did to one node's storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashDamage {
    pub files_lost: u32,
    pub bytes_lost: u64,
    pub torn_files: u32,
}

/// The unit a `disk-corrupt` fault damages: one flash page / filesystem block.
pub const CORRUPT_BLOCK: u64 = 4096;

/// What a `disk-corrupt` fault did: bits flipped in one durable block of a segment file,
/// and the log offsets of every frame they touched (the records whose copy here is gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    pub file: FileId,
    pub topic: TopicIdx,
    pub block_at: u64,
    pub bits: u32,
    pub destroyed: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub struct SimDisk {
    files: BTreeMap<FileId, SimFile>,
    queue: VecDeque<(DiskOpId, DiskRequest)>,
    in_service: bool,
    capacity: u64,
    used: u64,
    /// A disk-full fault: no append succeeds while set.
    pub full: bool,
    profile: DiskProfile,
    pub bytes_written: u64,
    /// Bytes every read returned (sync, fetches, recovery).
    pub bytes_read: u64,
    pub syncs: u64,
    /// Changes applied since the world last took them (see [`SimDisk::take_changes`]).
    changes: Vec<DiskChange>,
}

impl SimDisk {
    pub fn new(profile: DiskProfile, capacity: u64) -> SimDisk {
        SimDisk {
            files: BTreeMap::new(),
            queue: VecDeque::new(),
            in_service: false,
            capacity,
            used: 0,
            full: false,
            profile,
            bytes_written: 0,
            bytes_read: 0,
            syncs: 0,
            changes: Vec::new(),
        }
    }

    /// The changes to durable state applied since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<DiskChange> {
        std::mem::take(&mut self.changes)
    }

    /// A file's bytes up to its durable length (what a crash now would leave, torn bytes
    /// a crash already kept included), or `None` if there is no such file.
    pub fn durable_bytes(&self, file: FileId) -> Option<&[u8]> {
        self.files.get(&file).map(|f| &f.data[..f.durable_len])
    }

    /// The files on the disk now.
    pub fn file_ids(&self) -> impl Iterator<Item = FileId> + '_ {
        self.files.keys().copied()
    }

    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Queues a request. Returns the service time if the disk was idle and starts it now.
    pub fn submit(&mut self, id: DiskOpId, req: DiskRequest, rng: &mut SimRng) -> Option<u64> {
        self.queue.push_back((id, req));
        if self.in_service {
            return None;
        }
        self.in_service = true;
        Some(self.service_time(rng))
    }

    fn service_time(&self, rng: &mut SimRng) -> u64 {
        let p = &self.profile;
        let (_, req) = self.queue.front().expect("a request is in service");
        let transfer = |len: u64| len.saturating_mul(1_000_000_000) / p.write_bytes_per_sec.max(1);
        match req {
            DiskRequest::Append { bytes, .. } => p.write_latency.as_nanos() + transfer(bytes.len() as u64),
            DiskRequest::Sync { .. } => fsync_latency(p, rng),
            // Reads come from the page cache or flash, several times faster than writes.
            DiskRequest::Read { len, .. } => p.read_latency.as_nanos() + transfer(u64::from(*len)) / 4,
            DiskRequest::List | DiskRequest::Truncate { .. } | DiskRequest::Delete { .. } => p.write_latency.as_nanos(),
        }
    }

    /// Completes the request in service; returns it, its result, and the service time of
    /// the next request if one is queued.
    pub fn complete(&mut self, rng: &mut SimRng) -> (DiskOpId, Result<DiskResponse, DiskError>, Option<u64>) {
        let (id, req) = self.queue.pop_front().expect("completion with a request in service");
        let result = self.apply(req);
        let next = if self.queue.is_empty() {
            self.in_service = false;
            None
        } else {
            Some(self.service_time(rng))
        };
        (id, result, next)
    }

    fn apply(&mut self, req: DiskRequest) -> Result<DiskResponse, DiskError> {
        match req {
            DiskRequest::List => {
                Ok(DiskResponse::Listed(self.files.iter().map(|(id, f)| (*id, f.data.len() as u64)).collect()))
            }
            DiskRequest::Append { file, bytes } => {
                if self.full || self.used + bytes.len() as u64 > self.capacity {
                    return Err(DiskError::NoSpace);
                }
                self.used += bytes.len() as u64;
                self.bytes_written += bytes.len() as u64;
                self.files.entry(file).or_default().data.extend_from_slice(&bytes);
                Ok(DiskResponse::Done)
            }
            DiskRequest::Sync { file } => {
                let f = self.files.get_mut(&file).ok_or(DiskError::NotFound)?;
                let from = f.durable_len as u64;
                f.durable_len = f.data.len();
                f.entry_durable = true;
                self.syncs += 1;
                if f.durable_len as u64 > from {
                    self.changes.push(DiskChange::Synced { file, from, to: f.durable_len as u64 });
                }
                Ok(DiskResponse::Done)
            }
            DiskRequest::Read { file, offset, len } => {
                let f = self.files.get(&file).ok_or(DiskError::NotFound)?;
                let start = (offset as usize).min(f.data.len());
                let end = start.saturating_add(len as usize).min(f.data.len());
                self.bytes_read += (end - start) as u64;
                Ok(DiskResponse::Read(f.data[start..end].to_vec()))
            }
            DiskRequest::Truncate { file, len } => {
                let f = self.files.get_mut(&file).ok_or(DiskError::NotFound)?;
                let len = (len as usize).min(f.data.len());
                self.used -= (f.data.len() - len) as u64;
                f.data.truncate(len);
                f.durable_len = f.durable_len.min(len);
                f.entry_durable = true;
                self.changes.push(DiskChange::Truncated { file, len: len as u64 });
                Ok(DiskResponse::Done)
            }
            DiskRequest::Delete { file } => {
                let f = self.files.remove(&file).ok_or(DiskError::NotFound)?;
                self.used -= f.data.len() as u64;
                self.changes.push(DiskChange::Deleted { file });
                Ok(DiskResponse::Done)
            }
        }
    }

    /// Power loss: the page cache is gone. Each file keeps its durable bytes, plus perhaps
    /// a prefix of what was written after them (the kernel flushed some pages on its own),
    /// whose last bytes may be garbage (a torn sector). A file whose creation was never
    /// synced may vanish. Queued and in-service requests are dropped.
    pub fn crash(&mut self, rng: &mut SimRng) -> CrashDamage {
        self.queue.clear();
        self.in_service = false;
        let mut damage = CrashDamage::default();
        let mut gone = Vec::new();
        for (id, f) in &mut self.files {
            if !f.entry_durable && rng.gen_bool(0.5) {
                gone.push(*id);
                continue;
            }
            let unsynced = f.data.len() - f.durable_len;
            if unsynced == 0 {
                continue;
            }
            let keep = if rng.gen_bool(0.5) { 0 } else { rng.gen_range(0..=unsynced) };
            let new_len = f.durable_len + keep;
            if keep > 0 && rng.gen_bool(0.3) {
                let garbage = keep.min(rng.gen_range(1..=64));
                for b in &mut f.data[new_len - garbage..new_len] {
                    *b = rng.gen();
                }
                damage.torn_files += 1;
            }
            damage.bytes_lost += (f.data.len() - new_len) as u64;
            f.data.truncate(new_len);
            if keep > 0 {
                // The kernel flushed these on its own: they are as durable now as synced
                // bytes (torn garbage included, which no frame scan accepts).
                self.changes.push(DiskChange::Synced { file: *id, from: f.durable_len as u64, to: new_len as u64 });
            }
            f.durable_len = new_len;
        }
        for id in gone {
            self.changes.push(DiskChange::Deleted { file: id });
            let f = self.files.remove(&id).expect("listed above");
            damage.bytes_lost += f.data.len() as u64;
            damage.files_lost += 1;
        }
        self.used = self.files.values().map(|f| f.data.len() as u64).sum();
        damage
    }
}

impl SimDisk {
    /// A `disk-corrupt` fault: flips 1 to 8 bits in one durable block, drawn uniformly
    /// from the durable blocks of all segment files. Returns `None` if no segment holds
    /// durable bytes. The meta log is never hit (see docs/SCENARIOS.md).
    pub fn corrupt(&mut self, rng: &mut SimRng) -> Option<Corruption> {
        let blocks = |f: &SimFile| (f.durable_len as u64).div_ceil(CORRUPT_BLOCK);
        let segments = || self.files.iter().filter(|(id, _)| matches!(id, FileId::Segment { .. }));
        let total: u64 = segments().map(|(_, f)| blocks(f)).sum();
        if total == 0 {
            return None;
        }
        let mut pick = rng.gen_range(0..total);
        let (file, block) = segments()
            .find_map(|(id, f)| {
                if pick < blocks(f) {
                    Some((*id, pick))
                } else {
                    pick -= blocks(f);
                    None
                }
            })
            .expect("pick < total");
        let FileId::Segment { topic, base } = file else { unreachable!("only segments are picked") };
        let f = self.files.get_mut(&file).expect("picked from the map");
        let start = block * CORRUPT_BLOCK;
        let end = (start + CORRUPT_BLOCK).min(f.durable_len as u64);
        let bits = rng.gen_range(1..=8u32);
        let flips: Vec<(u64, u8)> =
            (0..bits).map(|_| (rng.gen_range(start..end), 1u8 << rng.gen_range(0..8))).collect();
        let frames = frame_ranges(&f.data[..f.durable_len], base);
        let mut destroyed: Vec<(u64, u64)> = frames
            .iter()
            .filter(|fr| flips.iter().any(|&(p, _)| fr.0 <= p && p < fr.1))
            .map(|fr| (fr.2, fr.3))
            .collect();
        destroyed.dedup();
        for (p, mask) in flips {
            f.data[p as usize] ^= mask;
        }
        Some(Corruption { file, topic, block_at: start, bits, destroyed })
    }
}

impl SimDisk {
    /// A `corrupt-tail` fault's damage: flips 1 to 4 bits in each of the last 1 to 3
    /// frames holding records in the durable bytes of the newest segment of a topic
    /// `eligible` accepts, the topic drawn uniformly among those with such frames.
    /// Returns `None` if there is none.
    pub fn corrupt_tail(&mut self, rng: &mut SimRng, eligible: impl Fn(TopicIdx) -> bool) -> Option<Corruption> {
        let mut newest: BTreeMap<TopicIdx, FileId> = BTreeMap::new();
        for (id, f) in &self.files {
            if let FileId::Segment { topic, .. } = *id {
                if eligible(topic) && f.durable_len > 0 {
                    newest.insert(topic, *id);
                }
            }
        }
        let candidates: Vec<(FileId, Vec<FrameRange>)> = newest
            .into_values()
            .filter_map(|id| {
                let FileId::Segment { base, .. } = id else { unreachable!("segments only") };
                let f = &self.files[&id];
                let frames: Vec<_> =
                    frame_ranges(&f.data[..f.durable_len], base).into_iter().filter(|r| r.3 > r.2).collect();
                (!frames.is_empty()).then_some((id, frames))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (file, frames) = &candidates[rng.gen_range(0..candidates.len())];
        let FileId::Segment { topic, .. } = *file else { unreachable!("segments only") };
        let hit = rng.gen_range(1..=3usize).min(frames.len());
        let f = self.files.get_mut(file).expect("picked from the map");
        let mut bits = 0;
        let mut destroyed = Vec::new();
        for &(pos, end_pos, first, end) in &frames[frames.len() - hit..] {
            // Distinct bits, so that no two flips cancel out.
            let flips: std::collections::BTreeSet<(u64, u8)> =
                (0..rng.gen_range(1..=4u32)).map(|_| (rng.gen_range(pos..end_pos), rng.gen_range(0..8))).collect();
            for (p, bit) in flips {
                f.data[p as usize] ^= 1u8 << bit;
                bits += 1;
            }
            destroyed.push((first, end));
        }
        let block_at = frames[frames.len() - hit].0 / CORRUPT_BLOCK * CORRUPT_BLOCK;
        Some(Corruption { file: *file, topic, block_at, bits, destroyed })
    }
}

/// A frame's `(pos, end_pos, first offset, end offset)`.
type FrameRange = (u64, u64, u64, u64);

/// The frames of a segment's bytes as `(pos, end_pos, first offset, end offset)`, found
/// the way the core finds them: scanning, and resyncing past frames already damaged (whose
/// bytes are returned as one range covering the offsets they held).
fn frame_ranges(data: &[u8], base: u64) -> Vec<FrameRange> {
    let mut out = Vec::new();
    let (mut pos, mut next) = (0u64, base);
    loop {
        let stop = log::scan(&data[pos as usize..], pos, next, |f| {
            out.push((f.pos, f.pos + f.len, f.base, f.end()));
            next = f.end();
        });
        // A frame "cut short" may be one whose length field an earlier fault hit: search
        // past it like any bad frame (the core does the same).
        let bad = match stop {
            None => return out,
            Some(
                log::ScanStop::Incomplete { pos, .. }
                | log::ScanStop::Bad { pos, .. }
                | log::ScanStop::Misplaced { pos },
            ) => pos,
        };
        let len = data.len() as u64;
        match log::resync(&data[bad as usize + 1..], bad + 1, len, true, next) {
            Resync::Found { pos: q, base: b } => {
                out.push((bad, q, next, b));
                (pos, next) = (q, b);
            }
            Resync::ReadFrom { .. } | Resync::NotFound => {
                out.push((bad, len, next, next));
                return out;
            }
        }
    }
}

/// An fsync latency: log-normal with the profile's median and 99th percentile.
fn fsync_latency(p: &DiskProfile, rng: &mut SimRng) -> u64 {
    let median = p.fsync_latency_median.as_nanos().max(1) as f64;
    let p99 = (p.fsync_latency_p99.as_nanos() as f64).max(median);
    let sigma = (p99 / median).ln() / 2.326;
    // Box–Muller from two uniforms of the disk's own stream.
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    // Cap at 20× the p99 so one draw cannot stall a run for simulated hours.
    (median * (sigma * z).exp()).min(p99 * 20.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;
    use outpost_core::types::{Duration, TopicIdx};

    fn profile() -> DiskProfile {
        DiskProfile {
            write_latency: Duration::from_micros(50),
            fsync_latency_median: Duration::from_millis(2),
            fsync_latency_p99: Duration::from_millis(50),
            write_bytes_per_sec: 20_000_000,
            read_latency: Duration::from_micros(50),
        }
    }

    fn run(d: &mut SimDisk, req: DiskRequest, rng: &mut SimRng) -> Result<DiskResponse, DiskError> {
        d.submit(DiskOpId(0), req, rng).expect("idle disk starts at once");
        d.complete(rng).1
    }

    const F: FileId = FileId::Segment { topic: TopicIdx(0), base: 0 };

    #[test]
    fn synced_bytes_survive_every_crash() {
        for seed in 0..200 {
            let mut rng = stream(seed, "test");
            let mut d = SimDisk::new(profile(), 1 << 20);
            run(&mut d, DiskRequest::Append { file: F, bytes: vec![1; 100] }, &mut rng).unwrap();
            run(&mut d, DiskRequest::Sync { file: F }, &mut rng).unwrap();
            run(&mut d, DiskRequest::Append { file: F, bytes: vec![2; 100] }, &mut rng).unwrap();
            d.crash(&mut rng);
            let Ok(DiskResponse::Read(b)) = run(&mut d, DiskRequest::Read { file: F, offset: 0, len: 1000 }, &mut rng)
            else {
                panic!("file must survive: it was synced")
            };
            assert!(b.len() >= 100 && b.len() <= 200);
            assert_eq!(&b[..100], &[1; 100][..]);
        }
    }

    #[test]
    fn corruption_reports_exactly_the_offsets_the_core_can_no_longer_read() {
        use outpost_core::codec::{encode_batch, Compression, RecordRef};
        use outpost_core::hlc::Hlc;
        use outpost_core::types::NodeId;
        let mut bytes = Vec::new();
        for base in (0..600u64).step_by(3) {
            let vals: Vec<Vec<u8>> = (0..3).map(|i| vec![(base + i) as u8; 20 + (base % 7) as usize]).collect();
            let recs: Vec<RecordRef<'_>> =
                vals.iter().map(|v| RecordRef { hlc: Hlc::new(1000, 0), key: None, value: v }).collect();
            let mut batch = Vec::new();
            encode_batch(NodeId(1), base, &recs, Compression::None, &mut batch);
            log::encode_log_frame(base, &batch, &mut bytes);
        }
        for seed in 0..100 {
            let mut rng = stream(seed, "test");
            let mut d = SimDisk::new(profile(), 1 << 24);
            run(&mut d, DiskRequest::Append { file: F, bytes: bytes.clone() }, &mut rng).unwrap();
            run(&mut d, DiskRequest::Sync { file: F }, &mut rng).unwrap();
            let mut destroyed = Vec::new();
            for _ in 0..3 {
                let c = d.corrupt(&mut rng).expect("durable bytes exist");
                destroyed.extend(c.destroyed);
            }
            // What the core reads back: the frames that still pass their checksum.
            let data = &d.files[&F].data;
            let readable: Vec<(u64, u64)> = frame_ranges(data, 0)
                .into_iter()
                .filter(|r| r.3 > r.2 && log::scan(&data[r.0 as usize..r.1 as usize], r.0, r.2, |_| {}).is_none())
                .map(|r| (r.2, r.3))
                .collect();
            for seq in 0..600 {
                let ok = readable.iter().any(|&(a, b)| a <= seq && seq < b);
                let gone = destroyed.iter().any(|&(a, b)| a <= seq && seq < b);
                assert!(ok != gone, "seed {seed} seq {seq}: readable {ok}, reported destroyed {gone}");
            }
        }
    }

    #[test]
    fn a_corrupt_tail_destroys_the_newest_durable_frames_and_says_which() {
        use outpost_core::codec::{encode_batch, Compression, RecordRef};
        use outpost_core::hlc::Hlc;
        use outpost_core::types::NodeId;
        let frames = |from: u64| {
            let mut bytes = Vec::new();
            for base in (from..from + 60).step_by(3) {
                let vals: Vec<Vec<u8>> = (0..3).map(|i| vec![(base + i) as u8; 40]).collect();
                let recs: Vec<RecordRef<'_>> =
                    vals.iter().map(|v| RecordRef { hlc: Hlc::new(1000, 0), key: None, value: v }).collect();
                let mut batch = Vec::new();
                encode_batch(NodeId(1), base, &recs, Compression::None, &mut batch);
                log::encode_log_frame(base, &batch, &mut bytes);
            }
            bytes
        };
        let older = FileId::Segment { topic: TopicIdx(0), base: 0 };
        let newest = FileId::Segment { topic: TopicIdx(0), base: 60 };
        for seed in 0..50 {
            let mut rng = stream(seed, "test");
            let mut d = SimDisk::new(profile(), 1 << 24);
            for (f, from) in [(older, 0), (newest, 60)] {
                run(&mut d, DiskRequest::Append { file: f, bytes: frames(from) }, &mut rng).unwrap();
                run(&mut d, DiskRequest::Sync { file: f }, &mut rng).unwrap();
            }
            assert_eq!(d.corrupt_tail(&mut rng, |t| t != TopicIdx(0)), None, "no eligible topic");
            let c = d.corrupt_tail(&mut rng, |_| true).expect("durable frames");
            assert_eq!(c.file, newest);
            let n = c.destroyed.len() as u64;
            assert!((1..=3).contains(&n));
            assert_eq!(c.destroyed.last(), Some(&(117, 120)), "the newest frame");
            assert_eq!(c.destroyed[0].0, 120 - 3 * n);
            // What the core reads back: every frame before the destroyed ones.
            let data = &d.files[&newest].data;
            let mut good = 60;
            log::scan(data, 0, 60, |f| good = f.end());
            assert_eq!(good, 120 - 3 * n, "seed {seed}");
        }
    }

    #[test]
    fn full_disk_refuses_appends_without_writing() {
        let mut rng = stream(1, "test");
        let mut d = SimDisk::new(profile(), 150);
        run(&mut d, DiskRequest::Append { file: F, bytes: vec![1; 100] }, &mut rng).unwrap();
        assert_eq!(
            run(&mut d, DiskRequest::Append { file: F, bytes: vec![1; 100] }, &mut rng),
            Err(DiskError::NoSpace)
        );
        assert_eq!(d.used_bytes(), 100);
        d.full = true;
        assert_eq!(run(&mut d, DiskRequest::Append { file: F, bytes: vec![1; 10] }, &mut rng), Err(DiskError::NoSpace));
    }

    #[test]
    fn fsync_latency_has_the_profile_median() {
        let mut rng = stream(3, "test");
        let mut v: Vec<u64> = (0..5001).map(|_| fsync_latency(&profile(), &mut rng)).collect();
        v.sort_unstable();
        let median = v[2500] as f64 / 1e6;
        assert!((1.7..2.3).contains(&median), "median {median} ms");
        let p99 = v[4950] as f64 / 1e6;
        assert!((35.0..70.0).contains(&p99), "p99 {p99} ms");
    }
}

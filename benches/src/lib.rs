//! What the benchmarks drive: core nodes over storage that completes at once, in memory,
//! and a network that delivers at once — the simulator's zero-latency disk and link
//! without its event queue and checkers, so that a figure measures the core and nothing
//! else. The criterion suite (`benches/core.rs`) and `bench-e2e` (real daemons) use it or
//! the real binary; see docs/PERFORMANCE.md for what each figure means.

use outpost_core::config::{NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::io::{DiskError, DiskRequest, DiskResponse, Event, FileId, Input, Output, ReqId};
use outpost_core::types::{Duration, Instant, NodeId, Now, TopicIdx};
use outpost_core::{Node, NodeSeed};
use std::collections::BTreeMap;

pub const EDGE: NodeId = NodeId(1);
pub const GATEWAY: NodeId = NodeId(9);
const START: Now = Now { mono: Instant(1_000_000_000), wall_ms: 1_767_225_600_000 };
/// Virtual time that passes per round of [`Site::step`]: about what a round of real work
/// takes, so that timers (batch linger, retransmits) fire as often as they would.
const ROUND: Duration = Duration(100_000);

/// Storage that performs a request at once, in order.
pub trait Disk {
    fn perform(&mut self, req: DiskRequest) -> Result<DiskResponse, DiskError>;
}

/// Files in memory.
#[derive(Default)]
pub struct MemDisk {
    files: BTreeMap<FileId, Vec<u8>>,
}

impl Disk for MemDisk {
    fn perform(&mut self, req: DiskRequest) -> Result<DiskResponse, DiskError> {
        match req {
            DiskRequest::List => {
                Ok(DiskResponse::Listed(self.files.iter().map(|(f, b)| (*f, b.len() as u64)).collect()))
            }
            DiskRequest::Append { file, bytes } => {
                self.files.entry(file).or_default().extend_from_slice(&bytes);
                Ok(DiskResponse::Done)
            }
            DiskRequest::Sync { .. } => Ok(DiskResponse::Done),
            DiskRequest::Read { file, offset, len } => {
                let b = self.files.get(&file).ok_or(DiskError::NotFound)?;
                let s = (offset as usize).min(b.len());
                let e = (s + len as usize).min(b.len());
                Ok(DiskResponse::Read(b[s..e].to_vec()))
            }
            DiskRequest::Truncate { file, len } => {
                self.files.get_mut(&file).ok_or(DiskError::NotFound)?.truncate(len as usize);
                Ok(DiskResponse::Done)
            }
            DiskRequest::Delete { file } => {
                self.files.remove(&file).map(|_| DiskResponse::Done).ok_or(DiskError::NotFound)
            }
        }
    }
}

/// The daemon's storage: real files, fdatasync on every `Sync`.
impl Disk for outpost::store::Store {
    fn perform(&mut self, req: DiskRequest) -> Result<DiskResponse, DiskError> {
        outpost::store::Store::perform(self, &req)
    }
}

/// A value of `len` bytes that looks like telemetry: a JSON object with changing numbers,
/// padded with text, so that compression has about as much to do as on real records.
pub fn telemetry_value(i: usize, len: usize) -> Vec<u8> {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let mut v =
        format!(r#"{{"sensor":{},"seq":{i},"temp_c":{}.{},"state":"ok","note":""#, i % 17, x % 90, x % 10).into_bytes();
    v.extend(b"nominal reading, no alarms raised ".iter().cycle().take(len.saturating_sub(v.len() + 2)));
    v.extend_from_slice(b"\"}");
    v.truncate(len);
    v
}

/// `n` different telemetry values of `len` bytes, for producers to take in turn.
pub fn telemetry_values(n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| telemetry_value(i, len)).collect()
}

/// One node and its storage.
pub struct Host {
    pub node: Node,
    pub disk: Box<dyn Disk>,
    /// Storage requests performed, and of them `Sync`s (fsyncs, on real files).
    pub requests: u64,
    pub syncs: u64,
}

/// What a round of [`Site::step`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Produces acknowledged (durable) at the edge.
    pub acked: u64,
    /// Produces refused for now (write buffer full, clock bound not yet durable); produced again.
    pub busy: u64,
    /// Records the gateway made durable.
    pub stored: u64,
}

/// An edge, and a gateway it syncs to if the topic goes up. One topic, `events`.
pub struct Site {
    pub edge: Host,
    pub gateway: Option<Host>,
    pub now: Now,
    pub counts: Counts,
    next_req: u64,
}

fn config(id: NodeId, role: Role, sync: SyncDirection) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, role, vec![TopicConfig::new("events", sync)]);
    if role == Role::Edge && sync.goes_up() {
        cfg.upstream = Some(GATEWAY);
    }
    cfg
}

impl Site {
    /// A lone edge whose topic stays local: the log alone.
    pub fn edge_only() -> Site {
        Site::boot(SyncDirection::Local, Box::<MemDisk>::default())
    }

    /// The same over `disk` (real files: durable ingest with fsync, no network).
    pub fn edge_only_on(disk: Box<dyn Disk>) -> Site {
        Site::boot(SyncDirection::Local, disk)
    }

    /// An edge whose topic syncs up, and its gateway.
    pub fn with_gateway() -> Site {
        Site::boot(SyncDirection::EdgeToCloud, Box::<MemDisk>::default())
    }

    fn boot(sync: SyncDirection, edge_disk: Box<dyn Disk>) -> Site {
        let host = |id: NodeId, role, disk| Host {
            node: Node::new(config(id, role, sync), NodeSeed(id.0), START),
            disk,
            requests: 0,
            syncs: 0,
        };
        let mut site = Site {
            edge: host(EDGE, Role::Edge, edge_disk),
            gateway: sync.goes_up().then(|| host(GATEWAY, Role::Gateway, Box::<MemDisk>::default())),
            now: START,
            counts: Counts::default(),
            next_req: 0,
        };
        while !site.edge.node.is_running() || site.gateway.as_ref().is_some_and(|g| !g.node.is_running()) {
            site.step();
        }
        site
    }

    /// Hands `n` produces to the edge at once (a window of requests in flight); the values
    /// are taken from `values` in turn.
    pub fn produce(&mut self, n: u64, values: &[Vec<u8>]) {
        for _ in 0..n {
            self.next_req += 1;
            let value = &values[self.next_req as usize % values.len()];
            let input =
                Input::Produce { req: ReqId(self.next_req), topic: TopicIdx(0), key: None, value: value.to_vec() };
            self.edge.node.handle(self.now, input);
        }
    }

    /// Produces `n` records (values from `values` in turn), `window` at a time, until the
    /// edge acknowledged all.
    pub fn produce_durably(&mut self, n: u64, values: &[Vec<u8>], window: u64) {
        let target = self.counts.acked + n;
        let mut handed = 0;
        while self.counts.acked < target {
            let in_flight = handed - (self.counts.acked + self.counts.busy - (target - n));
            let more = window.saturating_sub(in_flight).min(n - handed);
            self.produce(more, values);
            handed += more;
            self.step();
            // A refused produce is handed in again.
            let busy = std::mem::take(&mut self.counts.busy);
            handed -= busy;
        }
    }

    /// Steps until the gateway has acknowledged everything the edge holds.
    pub fn sync_all(&mut self) {
        while self.edge.node.unsynced_records() > 0 {
            self.step();
        }
    }

    /// One round: time passes, due timers fire, every output is performed or delivered.
    pub fn step(&mut self) {
        self.now = Now { mono: Instant(self.now.mono.0 + ROUND.0), wall_ms: self.now.wall_ms + ROUND.0 / 1_000_000 };
        for host in std::iter::once(&mut self.edge).chain(self.gateway.as_mut()) {
            if host.node.poll_timeout().is_some_and(|t| t <= self.now.mono) {
                host.node.handle_timeout(self.now);
            }
        }
        loop {
            let mut idle = true;
            idle &= !Self::drain(&mut self.edge, self.gateway.as_mut(), self.now, &mut self.counts, EDGE);
            if let Some(g) = self.gateway.as_mut() {
                idle &= !Self::drain(g, Some(&mut self.edge), self.now, &mut self.counts, GATEWAY);
            }
            if idle {
                return;
            }
        }
    }

    /// Performs `host`'s outputs; true if there were any.
    fn drain(host: &mut Host, mut peer: Option<&mut Host>, now: Now, counts: &mut Counts, me: NodeId) -> bool {
        let mut any = false;
        while let Some(o) = host.node.poll_output() {
            any = true;
            match o {
                Output::Disk { id, req } => {
                    host.requests += 1;
                    host.syncs += u64::from(matches!(req, DiskRequest::Sync { .. }));
                    let result = host.disk.perform(req);
                    host.node.handle(now, Input::DiskDone { id, result });
                }
                Output::Send { bytes, .. } => {
                    if let Some(p) = peer.as_deref_mut() {
                        p.node.handle(now, Input::Message { from: me, bytes });
                    }
                }
                Output::Reply { result: Ok(_), .. } => counts.acked += 1,
                // Busy (the write buffer is full) or Clock (the HLC bound is not yet durable).
                Output::Reply { result: Err(e), .. } if e.is_retryable() => counts.busy += 1,
                Output::Reply { result: Err(e), .. } => panic!("a produce failed: {e}"),
                Output::Event(Event::Stored { value_crcs, replay: false, .. }) => {
                    counts.stored += value_crcs.len() as u64
                }
                Output::Event(_) | Output::Fetched { .. } => {}
                Output::SendAs { .. } | Output::StrongRead { .. } => unreachable!("the benchmarks run no site cluster"),
            }
        }
        any
    }
}

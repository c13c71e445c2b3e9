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

/// Files in memory; every request completes at once and in order.
#[derive(Default)]
pub struct MemDisk {
    files: BTreeMap<FileId, Vec<u8>>,
}

impl MemDisk {
    pub fn perform(&mut self, req: DiskRequest) -> Result<DiskResponse, DiskError> {
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

    pub fn bytes(&self) -> u64 {
        self.files.values().map(|b| b.len() as u64).sum()
    }
}

/// One node and its storage.
pub struct Host {
    pub node: Node,
    pub disk: MemDisk,
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
        Site::boot(SyncDirection::Local)
    }

    /// An edge whose topic syncs up, and its gateway.
    pub fn with_gateway() -> Site {
        Site::boot(SyncDirection::EdgeToCloud)
    }

    fn boot(sync: SyncDirection) -> Site {
        let host = |id, role| Host {
            node: Node::new(config(id, role, sync), NodeSeed(id.0), START),
            disk: MemDisk::default(),
        };
        let mut site = Site {
            edge: host(EDGE, Role::Edge),
            gateway: sync.goes_up().then(|| host(GATEWAY, Role::Gateway)),
            now: START,
            counts: Counts::default(),
            next_req: 0,
        };
        while !site.edge.node.is_running() || site.gateway.as_ref().is_some_and(|g| !g.node.is_running()) {
            site.step();
        }
        site
    }

    /// Hands `n` produces of `value` to the edge at once (a window of requests in flight).
    pub fn produce(&mut self, n: u64, value: &[u8]) {
        for _ in 0..n {
            self.next_req += 1;
            let input =
                Input::Produce { req: ReqId(self.next_req), topic: TopicIdx(0), key: None, value: value.to_vec() };
            self.edge.node.handle(self.now, input);
        }
    }

    /// Produces `n` records of `value`, `window` at a time, until the edge acknowledged all.
    pub fn produce_durably(&mut self, n: u64, value: &[u8], window: u64) {
        let target = self.counts.acked + n;
        let mut handed = 0;
        while self.counts.acked < target {
            let in_flight = handed - (self.counts.acked + self.counts.busy - (target - n));
            let more = window.saturating_sub(in_flight).min(n - handed);
            self.produce(more, value);
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
            }
        }
        any
    }
}

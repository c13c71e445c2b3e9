//! The run report (DESIGN §4) and how a run is judged.

use crate::checker::{Counts, Violation};
use crate::net::NetStats;
use crate::scenario::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;

/// Per-node figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeReport {
    pub crashes: u32,
    pub torn_tails_cut: u64,
    pub bytes_cut_at_recovery: u64,
    pub sessions_opened: u64,
    pub retransmits: u64,
    pub sync_reads: u64,
    pub sync_read_bytes: u64,
    pub sync_records_sent: u64,
    /// Records this node's senders sent again (`SendCounters::records_resent`).
    pub sync_records_resent: u64,
    pub sync_bytes_sent: u64,
    pub duplicates_dropped: u64,
    /// Gaps answered `SendAgain`: the sender went back over everything after it.
    pub gaps_refused: u64,
    /// Batches a receiver kept beyond a gap until it filled (`Refusal::Missing`).
    pub batches_kept: u64,
    pub hlc_rejected: u64,
    pub commits: u64,
    pub commit_failures: u64,
    pub segments_deleted: u64,
    pub disk_bytes_written: u64,
    pub disk_bytes_read: u64,
    pub disk_syncs: u64,
    pub disk_used_bytes_at_end: u64,
    /// `disk-corrupt` faults applied to this node's disk.
    pub corruptions: u32,
    /// Sequences this edge's sync skipped because their frames failed the checksum.
    pub corrupted_skipped: u64,
    /// The node's budgets (from the scenario's `memory`/`storage` or the device).
    pub memory_limit_bytes: u64,
    pub storage_limit_bytes: u64,
    /// Records this edge evicted before the gateway acknowledged them, and the first
    /// ranges (topic, from, to) as its `Evicted` events named them.
    pub evicted_unsynced: u64,
    pub evicted_ranges: Vec<(String, u64, u64)>,
    /// Segments evicted whose records the gateway already held.
    pub evicted_synced_segments: u64,
    /// Produces refused as `StorageFull`: the budget was full and nothing more could go.
    pub storage_refused: u64,
    /// Produces refused as `StorageFull` while the device reported no space.
    pub device_full_refused: u64,
    /// Gateway: Data refused for lack of storage budget.
    pub gateway_storage_refused: u64,
    /// Times storage reported no space to this node.
    pub device_full_events: u64,
    /// Site members: strong writes this node acknowledged, refused without a quorum,
    /// refused as unavailable (no leader, the leader refused), answered unconfirmed; times
    /// it became leader; Raft log compactions; snapshots it installed from a leader.
    pub strong_acknowledged: u64,
    pub strong_refused_no_quorum: u64,
    pub strong_refused_unavailable: u64,
    pub strong_unconfirmed: u64,
    pub site_elected: u64,
    pub raft_compactions: u64,
    pub raft_snapshots_installed: u64,
}

/// Everything beyond the contract's fields, for diagnosis.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Details {
    pub refused: BTreeMap<String, u64>,
    /// Site clusters: strong writes over all members (absent without clusters).
    pub strong: Option<StrongReport>,
    pub produced_while_down: u64,
    pub unknown_fate_at_crash: u64,
    pub local_acked: u64,
    pub counts: Counts,
    pub violation_count: u64,
    pub undelivered_at_end: u64,
    /// Edges whose settle probe (see `World::sample`) was still refused when the run
    /// ended unconverged, with the last refusal.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub writes_refused_at_end: BTreeMap<String, String>,
    /// Edges whose settle probe was refused for storage that their local topics' data
    /// holds (half of it or more), with the refusal: excused, as that data never syncs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub writes_refused_local_data: BTreeMap<String, String>,
    /// Edges excused, during the settle phase, from holding what their gateways sent down,
    /// because their local topics' data held half their storage or more: how many
    /// acknowledged `cloud-to-edge` records each still lacked then.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub down_refused_local_data: BTreeMap<String, u64>,
    pub net: NetStats,
    pub nodes: BTreeMap<String, NodeReport>,
    pub events: u64,
    /// Frames carrying records of a classified topic, each checked against the zone of
    /// the node it was sent to (guarantee 7; absent without classified topics).
    #[serde(skip_serializing_if = "is_zero")]
    pub placement_checked_sends: u64,
    /// Per impostor fault's edge: what it forged and replayed, and how often its gateway
    /// refused it (absent without impostors).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub impostors: BTreeMap<String, ImpostorReport>,
    /// Keyed topics with a conflict strategy: writes, conflicts, answers checked against
    /// the oracle (absent without such topics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyed: Option<crate::keyed_check::KeyedReport>,
}

/// What an impostor (`crate::impostor`) did, and how often its gateway refused it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImpostorReport {
    pub forged: u64,
    pub replayed: u64,
    pub refused: u64,
}

pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Strong writes of a run with site clusters, summed over members.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StrongReport {
    pub acknowledged: u64,
    /// Refused at once because the member had no quorum (`no quorum: …`).
    pub refused_no_quorum: u64,
    pub refused_unavailable: u64,
    pub unconfirmed: u64,
    pub leaders_elected: u64,
    pub raft_compactions: u64,
    pub raft_snapshots_installed: u64,
}

/// What links and disks paid for the run (DESIGN §4), summed over nodes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Efficiency {
    /// Bytes of every message handed to a link, those lost included.
    pub link_bytes_sent: u64,
    /// Keys and values of the records receivers stored for the first time, at every hop.
    pub payload_bytes_delivered: u64,
    /// Records sync sent, and how many of them a sender had sent before.
    pub records_sent: u64,
    pub records_resent: u64,
    /// Bytes every disk read returned, and those sync read to send.
    pub disk_read_bytes: u64,
    pub sync_bytes_read: u64,
    /// Bytes of the sync messages that carried records (what `sync_bytes_read` is
    /// weighed against: a byte read once per send is a ratio of about 1).
    pub sync_bytes_sent: u64,
}

impl Efficiency {
    pub fn add(&mut self, o: &Efficiency) {
        self.link_bytes_sent += o.link_bytes_sent;
        self.payload_bytes_delivered += o.payload_bytes_delivered;
        self.records_sent += o.records_sent;
        self.records_resent += o.records_resent;
        self.disk_read_bytes += o.disk_read_bytes;
        self.sync_bytes_read += o.sync_bytes_read;
        self.sync_bytes_sent += o.sync_bytes_sent;
    }

    /// Records resent per record sent.
    pub fn resent_share(&self) -> f64 {
        self.records_resent as f64 / self.records_sent.max(1) as f64
    }

    /// Bytes sync read from disk per byte it sent.
    pub fn read_per_sent(&self) -> f64 {
        self.sync_bytes_read as f64 / self.sync_bytes_sent.max(1) as f64
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "links carried {} B for {} B of payload delivered; {} records sent, {} of them again ({:.2}%); \
             disks read {} B, sync {} B for {} B sent ({:.2}x)",
            self.link_bytes_sent,
            self.payload_bytes_delivered,
            self.records_sent,
            self.records_resent,
            100.0 * self.resent_share(),
            self.disk_read_bytes,
            self.sync_bytes_read,
            self.sync_bytes_sent,
            self.read_per_sent(),
        )
    }
}

/// The report of one run, as `outpost-sim run --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub sim_secs: f64,
    pub wall_secs: f64,
    pub produced: u64,
    pub acked: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub evicted_unsynced: u64,
    pub corrupted: u64,
    pub max_backlog: u64,
    /// The largest accounted memory of each node after any step (guarantee 8 checks it
    /// against the node's limit at every step).
    pub peak_memory_bytes: BTreeMap<String, Option<u64>>,
    pub efficiency: Efficiency,
    pub converged: bool,
    pub converge_secs: Option<f64>,
    pub violations: Vec<Violation>,
    pub trace_hash: String,
    pub details: Details,
}

/// How a run ended, worst first; the process exit code of `outpost-sim run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass = 0,
    /// A safety guarantee was violated.
    Violation = 1,
    /// Faults healed but the run did not converge within its bound.
    Liveness = 3,
    /// An `[expect]` bound failed, or the workload made no progress.
    Expectation = 4,
    /// The core or the simulator panicked (an assertion caught an invariant violation).
    Panic = 101,
}

impl Report {
    /// Judges the run against the guarantees and the scenario's `[expect]`; returns the
    /// verdict and one line per failure.
    pub fn judge(&self, scenario: &Scenario) -> (Verdict, Vec<String>) {
        let mut fails = Vec::new();
        let mut verdict = Verdict::Pass;
        let mut worst = |v: Verdict, msg: String, fails: &mut Vec<String>| {
            fails.push(msg);
            if verdict == Verdict::Pass || (v as u8) < (verdict as u8) {
                verdict = v;
            }
        };
        if self.details.violation_count > 0 {
            let first = self
                .violations
                .first()
                .map_or(String::new(), |v| format!(" first: [{}] at {:.3}s: {}", v.invariant, v.at, v.detail));
            worst(
                Verdict::Violation,
                format!("{} guarantee violations;{first}", self.details.violation_count),
                &mut fails,
            );
        }
        if !self.converged {
            let refused: Vec<String> =
                self.details.writes_refused_at_end.iter().map(|(node, e)| format!("{node}: {e}")).collect();
            let refused = if refused.is_empty() {
                String::new()
            } else {
                format!("; writes still refused on {}", refused.join(", "))
            };
            worst(
                Verdict::Liveness,
                format!(
                    "did not converge within the settle phase ({} acknowledged records undelivered{refused})",
                    self.details.undelivered_at_end
                ),
                &mut fails,
            );
        }
        let e = &scenario.expect;
        let mut bound = |name: &str, got: u64, max: Option<u64>, fails: &mut Vec<String>| {
            if let Some(max) = max.filter(|&m| got > m) {
                worst(Verdict::Expectation, format!("expect.{name} = {max}, got {got}"), fails);
            }
        };
        bound("lost", self.lost, e.lost, &mut fails);
        bound("duplicates", self.duplicates, e.duplicates, &mut fails);
        bound("out_of_order", self.out_of_order, e.out_of_order, &mut fails);
        if let (Some(within), Some(took)) = (e.converge_within, self.converge_secs) {
            if took > within.as_secs_f64() {
                worst(
                    Verdict::Expectation,
                    format!("expect.converge_within = {}s, took {took:.1}s", within.as_secs_f64()),
                    &mut fails,
                );
            }
        }
        if let Some(min) = e.min_delivered.filter(|&m| self.delivered < m) {
            worst(Verdict::Expectation, format!("expect.min_delivered = {min}, got {}", self.delivered), &mut fails);
        }
        if let Some(min) = e.min_evicted_unsynced.filter(|&m| self.evicted_unsynced < m) {
            worst(
                Verdict::Expectation,
                format!(
                    "expect.min_evicted_unsynced = {min}, got {}: the storage pressure never came",
                    self.evicted_unsynced
                ),
                &mut fails,
            );
        }
        let syncs_up = !scenario.workloads.is_empty()
            && scenario.workloads.iter().any(|w| crate::world::topic_goes_up(&scenario.topics[w.topic]));
        if self.acked == 0 || (syncs_up && self.delivered == 0) {
            worst(
                Verdict::Expectation,
                format!("the run made no progress: {} acknowledged, {} delivered", self.acked, self.delivered),
                &mut fails,
            );
        }
        (verdict, fails)
    }
}

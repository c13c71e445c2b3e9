//! Partition detection for a site cluster: can this member reach its peers, and,
//! separately, can it reach the cloud gateway.
//!
//! A site runs 2–5 devices in one Raft group; each device also has its own link to the
//! cloud gateway. "The cloud is unreachable" (records queue up locally, the site works on)
//! and "my peers are unreachable" (no quorum: the site cluster cannot commit) are different
//! conditions with different remedies, so a [`SiteView`] reports them separately: peer
//! health as [`PeerHealth`] and [`SiteState`], the cloud link as [`CloudLink`].
//!
//! # Peers: phi accrual, not SWIM
//!
//! Each peer is watched by a [`PhiAccrual`] detector (Hayashibara et al., "The φ Accrual
//! Failure Detector", 2004, in the form Akka and Cassandra use). Decision: phi accrual,
//! not SWIM. SWIM's indirect probes and gossip exist to keep detection cost constant in
//! groups of hundreds of members and to tell a slow link from a dead node through third
//! parties; a site has 2–5 members that all talk to each other directly, every message
//! between them (every Raft heartbeat included) is a sample, so indirect probes would add
//! traffic and little information. Phi instead learns the distribution of inter-arrival
//! times, so it adapts to a lossy Wi-Fi LAN's jitter without a hand-tuned timeout.
//!
//! Precondition the driver must meet: every member hears from every other member
//! regularly. Raft alone does not give that — followers do not message each other in
//! steady state — so the driver must send a small all-to-all liveness ping (at 2–5
//! members, at most 20 messages per round), or a follower will see the other followers
//! go [`PeerHealth::Partitioned`].
//!
//! # Peers never heard from
//!
//! A peer never heard from since the detector started is [`PeerHealth::Suspect`] until
//! `first_heartbeat_estimate + acceptable_heartbeat_pause` has passed since the start,
//! then [`PeerHealth::Partitioned`]. Not `Healthy`: there is no evidence of that. Not
//! `Partitioned` at once: at boot nothing has had time to arrive, and reporting a
//! partition the detector could not yet observe would fail every write for the first
//! moments of every start. The grace is exactly what a first heartbeat is allowed.
//!
//! # The cloud link: outcomes, not arrivals
//!
//! The cloud link carries bursts (uploads when records are pending), then nothing. Phi
//! over reply arrivals would call an idle link failed, so the cloud link is judged on the
//! outcomes of the attempts made: [`SiteDetector::cloud_heard`] reports a successful
//! exchange, [`SiteDetector::cloud_failed`] a failed attempt (refused, timed out, reset).
//! The link is [`CloudLink::Up`] while the last outcome was a success (or no attempt was
//! made yet: idle is not failed), [`CloudLink::Suspect`] after a failure, and
//! [`CloudLink::Down`] once `cloud_down_failures` consecutive attempts failed or the
//! failures have lasted `cloud_down_after`. The time-based rule may escalate with no new
//! attempt: after a failed attempt the data is still pending, so there has been
//! "something to send" from the first failure on.
//!
//! # Bounds
//!
//! The interval window is a ring allocated once with `window_max` slots; the member set is
//! fixed at construction; unknown peers are ignored. Nothing grows with time or traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::{LN_10, LOG10_2};
use std::fmt;

use crate::types::{Duration, Instant, NodeId};

/// The largest interval window [`DetectorConfig::validate`] accepts.
pub const WINDOW_MAX_LIMIT: usize = 10_000;

/// Intervals are clamped to 2^56 ns (about 2.3 years), so that the `u128` sum of squares
/// of a full window of [`WINDOW_MAX_LIMIT`] intervals is exact and cannot overflow.
const INTERVAL_MAX_NANOS: u64 = 1 << 56;

/// Tuning of the detector. Check with [`DetectorConfig::validate`]; the constructors do not,
/// but no configuration can make phi NaN or make a constructor panic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorConfig {
    /// Phi at or above which a peer is [`PeerHealth::Suspect`].
    pub phi_suspect: f64,
    /// Phi at or above which a peer is [`PeerHealth::Partitioned`].
    pub phi_partitioned: f64,
    /// How many recent inter-arrival intervals the distribution is estimated from.
    pub window_max: usize,
    /// Floor of the standard deviation, so that perfectly regular arrivals do not make
    /// the detector hair-trigger.
    pub min_std_deviation: Duration,
    /// Added to the mean interval: silence this much longer than usual is expected
    /// (lost packets, a busy peer). Phi stays at most log10(2) until it has passed.
    pub acceptable_heartbeat_pause: Duration,
    /// The mean interval assumed until the first interval is measured (its standard
    /// deviation is a quarter of it, as in Akka).
    pub first_heartbeat_estimate: Duration,
    /// Consecutive failed cloud attempts after which the cloud link is `Down`.
    pub cloud_down_failures: u32,
    /// How long cloud failures may last, from the first failure after a success, before
    /// the link is `Down` whatever the count.
    pub cloud_down_after: Duration,
}

impl Default for DetectorConfig {
    /// Tuned for Raft heartbeats every 100 ms: regular arrivals are `Suspect` after about
    /// 0.9 s of silence and `Partitioned` after about 1.1 s, near the election timeout.
    fn default() -> Self {
        DetectorConfig {
            phi_suspect: 3.0,
            phi_partitioned: 8.0,
            window_max: 100,
            min_std_deviation: Duration::from_millis(100),
            acceptable_heartbeat_pause: Duration::from_millis(500),
            first_heartbeat_estimate: Duration::from_millis(500),
            cloud_down_failures: 3,
            cloud_down_after: Duration::from_secs(30),
        }
    }
}

impl DetectorConfig {
    /// Checks the relations the detector relies on; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.phi_suspect.is_finite() && self.phi_suspect > LOG10_2) {
            return Err(format!(
                "detector.phi_suspect must be finite and above log10(2) = {LOG10_2:.5}, \
                 the phi of a heartbeat exactly as late as expected"
            ));
        }
        if !(self.phi_partitioned.is_finite() && self.phi_partitioned > self.phi_suspect) {
            return Err("detector.phi_partitioned must be finite and above detector.phi_suspect".into());
        }
        if !(2..=WINDOW_MAX_LIMIT).contains(&self.window_max) {
            return Err(format!("detector.window_max must be between 2 and {WINDOW_MAX_LIMIT}"));
        }
        if self.min_std_deviation == Duration::ZERO {
            return Err("detector.min_std_deviation must be above zero".into());
        }
        if self.first_heartbeat_estimate == Duration::ZERO {
            return Err("detector.first_heartbeat_estimate must be above zero".into());
        }
        if self.cloud_down_failures == 0 {
            return Err("detector.cloud_down_failures must be at least 1".into());
        }
        if self.cloud_down_after == Duration::ZERO {
            return Err("detector.cloud_down_after must be above zero".into());
        }
        Ok(())
    }
}

/// A phi accrual failure detector for one monitored peer.
///
/// Guarantees: [`PhiAccrual::phi`] is finite, never NaN and never negative; between two
/// heartbeats it is non-decreasing in `now` (in real arithmetic; every float step of the
/// evaluation is monotone too, and a proptest checks the result); it is at most log10(2) ≈ 0.301 while the silence
/// is at most the mean interval plus `acceptable_heartbeat_pause`. Memory is fixed at
/// construction (`window_max` intervals).
#[derive(Clone, Debug)]
pub struct PhiAccrual {
    /// Ring of the most recent intervals in nanoseconds; `len` valid from `head` (oldest).
    ring: Box<[u64]>,
    head: usize,
    len: usize,
    /// Exact sums over the valid intervals.
    sum: u128,
    sum_sq: u128,
    last: Option<Instant>,
    min_std_ns: f64,
    pause_ns: f64,
    estimate_ns: f64,
}

impl PhiAccrual {
    /// A detector that has heard nothing yet. An out-of-range `window_max` is clamped to
    /// `2..=WINDOW_MAX_LIMIT` and a zero `min_std_deviation` to 1 ns.
    pub fn new(cfg: &DetectorConfig) -> PhiAccrual {
        PhiAccrual {
            ring: vec![0; cfg.window_max.clamp(2, WINDOW_MAX_LIMIT)].into_boxed_slice(),
            head: 0,
            len: 0,
            sum: 0,
            sum_sq: 0,
            last: None,
            min_std_ns: cfg.min_std_deviation.as_nanos().max(1) as f64,
            pause_ns: cfg.acceptable_heartbeat_pause.as_nanos() as f64,
            estimate_ns: cfg.first_heartbeat_estimate.as_nanos().max(1) as f64,
        }
    }

    /// Records an arrival at `now`. The interval since the previous arrival joins the
    /// window, evicting the oldest when full. Arrivals at the same instant as the previous
    /// one are one delivery and add no interval; a `now` before it is treated as it.
    pub fn heartbeat(&mut self, now: Instant) {
        let Some(last) = self.last else {
            self.last = Some(now);
            return;
        };
        let interval = now.saturating_since(last).as_nanos().min(INTERVAL_MAX_NANOS);
        if interval == 0 {
            return;
        }
        self.last = Some(now);
        let cap = self.ring.len();
        if self.len == cap {
            let old = u128::from(self.ring[self.head]);
            self.sum -= old;
            self.sum_sq -= old * old;
            self.ring[self.head] = interval;
            self.head = (self.head + 1) % cap;
        } else {
            self.ring[(self.head + self.len) % cap] = interval;
            self.len += 1;
        }
        let x = u128::from(interval);
        self.sum += x;
        self.sum_sq += x * x;
    }

    /// The instant of the latest arrival, if any.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.last
    }

    /// How many measured intervals the window holds (at most `window_max`).
    pub fn samples(&self) -> usize {
        self.len
    }

    /// The mean of the measured intervals in the window, if there is one.
    pub fn mean_interval(&self) -> Option<Duration> {
        (self.len > 0).then(|| Duration((self.sum / self.len as u128) as u64))
    }

    /// Mean and floored standard deviation of the interval distribution, in nanoseconds.
    fn distribution(&self) -> (f64, f64) {
        if self.len == 0 {
            return (self.estimate_ns, (self.estimate_ns / 4.0).max(self.min_std_ns));
        }
        let n = self.len as f64;
        let mean = self.sum as f64 / n;
        let variance = (self.sum_sq as f64 / n - mean * mean).max(0.0);
        (mean, variance.sqrt().max(self.min_std_ns))
    }

    /// Suspicion that the peer is gone, at `now`: −log10 of the probability that a
    /// heartbeat would arrive even later than `now`, under a normal distribution of mean
    /// (mean interval + `acceptable_heartbeat_pause`) and the floored standard deviation,
    /// with Akka's logistic approximation of the normal CDF. 1 means a 10% chance that the
    /// peer is merely late, 8 a chance of 10⁻⁸. Zero before the first heartbeat: no
    /// evidence either way ([`SiteDetector`] applies its start-up grace instead).
    pub fn phi(&self, now: Instant) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let (mean, std) = self.distribution();
        let elapsed = now.saturating_since(last).as_nanos() as f64;
        let y = (elapsed - (mean + self.pause_ns)) / std;
        // F(y) ≈ 1/(1+e^-z) with z = y(1.5976 + 0.070566y²), so
        // phi = -log10(1 - F(y)) = log10(1 + e^z): a softplus, evaluated without
        // overflow on either side (Akka evaluates the same quantity in two branches).
        let z = y * (1.5976 + 0.070566 * y * y);
        let softplus = if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
        softplus / LN_10
    }
}

/// How one peer looks from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerHealth {
    /// Phi below `phi_suspect`.
    Healthy,
    /// Phi at or above `phi_suspect`, or never heard from within the start-up grace.
    Suspect,
    /// Phi at or above `phi_partitioned`, or never heard from after the start-up grace.
    /// Not counted as reachable.
    Partitioned,
}

impl fmt::Display for PeerHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerHealth::Healthy => "healthy",
            PeerHealth::Suspect => "suspect",
            PeerHealth::Partitioned => "partitioned",
        })
    }
}

/// The state of the link to the cloud gateway, from the outcomes of the attempts made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloudLink {
    /// The last attempt succeeded, or none was made yet.
    Up,
    /// The last attempt failed, but not yet enough of them, nor for long enough.
    Suspect,
    /// `cloud_down_failures` consecutive failures, or failing for `cloud_down_after`.
    Down,
}

impl fmt::Display for CloudLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloudLink::Up => "up",
            CloudLink::Suspect => "suspect",
            CloudLink::Down => "down",
        })
    }
}

/// The site cluster as this member sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SiteState {
    /// Quorum held and every peer healthy.
    Healthy,
    /// Quorum held, but at least one peer is suspect or partitioned.
    Suspect,
    /// No quorum: this member cannot reach a majority, itself included.
    Partitioned,
}

impl fmt::Display for SiteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SiteState::Healthy => "healthy",
            SiteState::Suspect => "suspect",
            SiteState::Partitioned => "partitioned",
        })
    }
}

/// One peer in a [`SiteView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub id: NodeId,
    pub health: PeerHealth,
    pub last_heard: Option<Instant>,
}

/// A snapshot of one member's view of its site, taken by [`SiteDetector::view`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteView {
    pub me: NodeId,
    /// Members of the group, this one included.
    pub members: usize,
    /// Every other member, in `NodeId` order.
    pub peers: Vec<PeerView>,
    /// Members, this one included, whose health is not `Partitioned`.
    pub reachable: usize,
    /// `reachable > members / 2`.
    pub has_quorum: bool,
    pub state: SiteState,
    /// The latest leader reported by [`SiteDetector::leader_seen`] and when.
    pub last_leader: Option<(NodeId, Instant)>,
    /// Independent of the peers: any combination of `state` and `cloud` can occur.
    pub cloud: CloudLink,
}

impl SiteView {
    /// The error to give a caller that needs the cluster (a write to be committed, a
    /// linearizable read) when this view has no quorum; `None` when it has one.
    pub fn no_quorum_error(&self, now: Instant) -> Option<NoQuorum> {
        (!self.has_quorum).then(|| NoQuorum {
            reachable: self.reachable,
            members: self.members,
            last_leader: self.last_leader.map(|(id, at)| (id, now.saturating_since(at))),
        })
    }
}

/// The site cluster has no quorum from here. Displays as
/// `no quorum: reachable 1 of 3 members; last leader n2 seen 14s ago` (whole seconds,
/// rounded down) or `no quorum: reachable 1 of 3 members; no leader seen since start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoQuorum {
    pub reachable: usize,
    pub members: usize,
    /// The last leader seen and how long before the error it was seen.
    pub last_leader: Option<(NodeId, Duration)>,
}

impl fmt::Display for NoQuorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no quorum: reachable {} of {} members; ", self.reachable, self.members)?;
        match self.last_leader {
            Some((id, ago)) => write!(f, "last leader {id} seen {}s ago", ago.as_nanos() / 1_000_000_000),
            None => f.write_str("no leader seen since start"),
        }
    }
}

impl std::error::Error for NoQuorum {}

/// One member's detector for its site: a [`PhiAccrual`] per peer, the last leader seen,
/// and the cloud link's recent outcomes. Feed it every arrival; ask for a [`SiteView`].
#[derive(Clone, Debug)]
pub struct SiteDetector {
    me: NodeId,
    cfg: DetectorConfig,
    started: Instant,
    /// Members, this one included; fixed at construction.
    members: usize,
    peers: BTreeMap<NodeId, PhiAccrual>,
    last_leader: Option<(NodeId, Instant)>,
    /// Consecutive failed cloud attempts, and when the first of them failed.
    cloud_failures: u32,
    cloud_failing_since: Option<Instant>,
}

impl SiteDetector {
    /// The detector of member `me` of the group `members` (`me` is added if missing),
    /// started at `now`.
    pub fn new(me: NodeId, mut members: BTreeSet<NodeId>, cfg: DetectorConfig, now: Instant) -> SiteDetector {
        members.insert(me);
        let peers = members.iter().filter(|&&id| id != me).map(|&id| (id, PhiAccrual::new(&cfg))).collect();
        SiteDetector {
            me,
            cfg,
            started: now,
            members: members.len(),
            peers,
            last_leader: None,
            cloud_failures: 0,
            cloud_failing_since: None,
        }
    }

    /// Any message from `peer` arrived at `now`: it counts as a heartbeat. Messages from
    /// this member itself or from non-members are ignored.
    pub fn heard_from(&mut self, peer: NodeId, now: Instant) {
        if let Some(detector) = self.peers.get_mut(&peer) {
            detector.heartbeat(now);
        }
    }

    /// `leader` was known to lead at `now` (this member included). Not a heartbeat: the
    /// driver reports the leader's messages through [`SiteDetector::heard_from`]. A
    /// non-member is ignored.
    pub fn leader_seen(&mut self, leader: NodeId, now: Instant) {
        if leader == self.me || self.peers.contains_key(&leader) {
            self.last_leader = Some((leader, now));
        }
    }

    /// An exchange with the cloud gateway succeeded at `now`. The link is `Up` from here
    /// until the next failure, however long it then stays idle.
    pub fn cloud_heard(&mut self, _now: Instant) {
        self.cloud_failures = 0;
        self.cloud_failing_since = None;
    }

    /// An attempt to reach the cloud gateway failed at `now`.
    pub fn cloud_failed(&mut self, now: Instant) {
        if self.cloud_failures == 0 {
            self.cloud_failing_since = Some(now);
        }
        self.cloud_failures = self.cloud_failures.saturating_add(1);
    }

    /// The cloud link at `now` (see the module documentation).
    pub fn cloud(&self, now: Instant) -> CloudLink {
        match self.cloud_failing_since {
            None => CloudLink::Up,
            Some(since)
                if self.cloud_failures >= self.cfg.cloud_down_failures
                    || now.saturating_since(since) >= self.cfg.cloud_down_after =>
            {
                CloudLink::Down
            }
            Some(_) => CloudLink::Suspect,
        }
    }

    /// Phi of `peer` at `now`; `None` for a non-member or this member.
    pub fn phi(&self, peer: NodeId, now: Instant) -> Option<f64> {
        self.peers.get(&peer).map(|d| d.phi(now))
    }

    fn health(&self, detector: &PhiAccrual, now: Instant) -> PeerHealth {
        if detector.last_heartbeat().is_none() {
            let grace = Duration(
                self.cfg
                    .first_heartbeat_estimate
                    .as_nanos()
                    .saturating_add(self.cfg.acceptable_heartbeat_pause.as_nanos()),
            );
            return if now.saturating_since(self.started) < grace {
                PeerHealth::Suspect
            } else {
                PeerHealth::Partitioned
            };
        }
        let phi = detector.phi(now);
        if phi >= self.cfg.phi_partitioned {
            PeerHealth::Partitioned
        } else if phi >= self.cfg.phi_suspect {
            PeerHealth::Suspect
        } else {
            PeerHealth::Healthy
        }
    }

    /// Health of `peer` at `now`; `None` for a non-member or this member.
    pub fn peer_health(&self, peer: NodeId, now: Instant) -> Option<PeerHealth> {
        self.peers.get(&peer).map(|d| self.health(d, now))
    }

    /// This member's view of the site at `now`.
    pub fn view(&self, now: Instant) -> SiteView {
        let peers: Vec<PeerView> = self
            .peers
            .iter()
            .map(|(&id, d)| PeerView { id, health: self.health(d, now), last_heard: d.last_heartbeat() })
            .collect();
        let reachable = 1 + peers.iter().filter(|p| p.health != PeerHealth::Partitioned).count();
        let has_quorum = reachable > self.members / 2;
        let state = if !has_quorum {
            SiteState::Partitioned
        } else if peers.iter().all(|p| p.health == PeerHealth::Healthy) {
            SiteState::Healthy
        } else {
            SiteState::Suspect
        };
        SiteView {
            me: self.me,
            members: self.members,
            peers,
            reachable,
            has_quorum,
            state,
            last_leader: self.last_leader,
            cloud: self.cloud(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(x: u64) -> Instant {
        Instant::from_millis(x)
    }

    /// A detector fed heartbeats at `start`, `start + every`, …, `count` of them; returns
    /// the detector and the instant of the last heartbeat.
    fn regular(cfg: &DetectorConfig, start: u64, every: u64, count: u64) -> (PhiAccrual, Instant) {
        let mut d = PhiAccrual::new(cfg);
        for i in 0..count {
            d.heartbeat(ms(start + i * every));
        }
        (d, ms(start + (count - 1) * every))
    }

    fn after(t: Instant, millis: u64) -> Instant {
        t.saturating_add(Duration::from_millis(millis))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn default_config_is_valid_and_validate_names_fields() {
        let cfg = DetectorConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        let bad = |f: fn(&mut DetectorConfig)| {
            let mut c = DetectorConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.phi_suspect = 0.0).starts_with("detector.phi_suspect "));
        assert!(bad(|c| c.phi_suspect = f64::NAN).starts_with("detector.phi_suspect "));
        assert!(bad(|c| c.phi_partitioned = 3.0).starts_with("detector.phi_partitioned "));
        assert!(bad(|c| c.phi_partitioned = f64::INFINITY).starts_with("detector.phi_partitioned "));
        assert!(bad(|c| c.window_max = 1).starts_with("detector.window_max "));
        assert!(bad(|c| c.window_max = WINDOW_MAX_LIMIT + 1).starts_with("detector.window_max "));
        assert!(bad(|c| c.min_std_deviation = Duration::ZERO).starts_with("detector.min_std_deviation "));
        assert!(bad(|c| c.first_heartbeat_estimate = Duration::ZERO).starts_with("detector.first_heartbeat_estimate "));
        assert!(bad(|c| c.cloud_down_failures = 0).starts_with("detector.cloud_down_failures "));
        assert!(bad(|c| c.cloud_down_after = Duration::ZERO).starts_with("detector.cloud_down_after "));
    }

    #[test]
    fn phi_matches_akkas_two_branch_formula() {
        // Akka's `phi(timeDiff, mean, stdDeviation)`, transcribed.
        let akka = |t: f64, mean: f64, std: f64| {
            let y = (t - mean) / std;
            let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
            if t > mean {
                -(e / (1.0 + e)).log10()
            } else {
                -(1.0 - 1.0 / (1.0 + e)).log10()
            }
        };
        let cfg = DetectorConfig::default();
        let (d, last) = regular(&cfg, 0, 100, 11); // mean 100 ms, std floored to 100 ms
        for delay in [0, 300, 600, 700, 900, 1100, 1300] {
            let expected = akka(delay as f64, 600.0, 100.0);
            assert!(close(d.phi(after(last, delay)), expected), "delay {delay}");
        }
        assert!(close(d.phi(after(last, 600)), LOG10_2));
    }

    #[test]
    fn phi_grows_with_silence_and_drops_after_a_heartbeat() {
        let cfg = DetectorConfig::default();
        let (mut d, last) = regular(&cfg, 0, 100, 21);
        assert_eq!(d.samples(), 20);
        assert_eq!(d.mean_interval(), Some(Duration::from_millis(100)));
        let phis: Vec<f64> = [0, 300, 600, 800, 1000].iter().map(|&x| d.phi(after(last, x))).collect();
        assert!(phis.windows(2).all(|w| w[0] < w[1]), "{phis:?}");
        assert!(phis[0] < 1e-6);
        assert!(close(phis[2], LOG10_2)); // exactly as late as expected
        assert!(close(phis[3], 1.6428278854871123), "{}", phis[3]);
        assert!(close(phis[4], 4.736694582705181), "{}", phis[4]);
        d.heartbeat(after(last, 1000));
        let now = after(last, 1000);
        assert_eq!(d.samples(), 21);
        // The 1 s interval joined the window: mean 142.9 ms, std 191.7 ms.
        assert!(close(d.phi(now), 0.00014260635648476218), "{}", d.phi(now));
        assert!(close(d.phi(after(now, 1000)), 1.5049539210772815), "{}", d.phi(after(now, 1000)));
    }

    #[test]
    fn regular_heartbeats_every_100ms() {
        let cfg = DetectorConfig::default();
        let (d, last) = regular(&cfg, 0, 100, 50);
        assert!(d.phi(after(last, 100)) < 1.0);
        assert!(d.phi(after(last, 2000)) > cfg.phi_partitioned);
        // Suspect after about 0.9 s of silence, partitioned after about 1.1 s.
        assert!(d.phi(after(last, 880)) < cfg.phi_suspect && d.phi(after(last, 920)) >= cfg.phi_suspect);
        assert!(d.phi(after(last, 1100)) < cfg.phi_partitioned && d.phi(after(last, 1140)) >= cfg.phi_partitioned);
    }

    #[test]
    fn first_interval_uses_the_estimate() {
        let cfg = DetectorConfig::default();
        let mut d = PhiAccrual::new(&cfg);
        assert_eq!(d.phi(ms(5_000)), 0.0);
        d.heartbeat(ms(1_000));
        assert_eq!(d.samples(), 0);
        assert_eq!(d.mean_interval(), None);
        // Mean 500 ms + pause 500 ms, std max(125 ms, 100 ms).
        assert!(close(d.phi(ms(2_000)), LOG10_2));
        assert!(d.phi(ms(2_500)) > cfg.phi_suspect && d.phi(ms(2_500)) < cfg.phi_partitioned);
    }

    #[test]
    fn jitter_raises_the_tolerance() {
        let cfg = DetectorConfig::default();
        let (steady, s_last) = regular(&cfg, 0, 200, 41); // mean 200 ms, std 0 -> 100 ms
        let mut jittery = PhiAccrual::new(&cfg);
        let mut t = 0;
        jittery.heartbeat(ms(t));
        for i in 0..40 {
            t += if i % 2 == 0 { 50 } else { 350 }; // mean 200 ms, std 150 ms
            jittery.heartbeat(ms(t));
        }
        assert_eq!(jittery.mean_interval(), steady.mean_interval());
        let (p_steady, p_jittery) = (steady.phi(after(s_last, 1100)), jittery.phi(after(ms(t), 1100)));
        // 1.1 s of silence against a mean of 200 ms + 500 ms pause: y = 4 against y = 2.67.
        assert!(close(p_steady, 4.736694582705181), "{p_steady}");
        assert!(close(p_jittery, 2.432962866313744), "{p_jittery}");
        assert!(p_jittery < cfg.phi_suspect && p_steady >= cfg.phi_suspect);
    }

    #[test]
    fn the_window_forgets_old_intervals() {
        let cfg = DetectorConfig { window_max: 100, ..DetectorConfig::default() };
        // 100 ms intervals, then a full window of 1 s intervals.
        let (mut d, mut last) = regular(&cfg, 0, 100, 101);
        assert_eq!(d.mean_interval(), Some(Duration::from_millis(100)));
        // With the fast history, 1.5 s of silence is a partition.
        assert!(d.phi(after(last, 1500)) > cfg.phi_partitioned);
        for _ in 0..50 {
            last = after(last, 1000);
            d.heartbeat(last);
        }
        assert_eq!(d.samples(), 100);
        assert_eq!(d.mean_interval(), Some(Duration::from_millis(550)));
        for _ in 0..50 {
            last = after(last, 1000);
            d.heartbeat(last);
        }
        assert_eq!(d.samples(), 100);
        assert_eq!(d.mean_interval(), Some(Duration::from_secs(1)));
        let (mean, std) = d.distribution();
        assert_eq!((mean, std), (1e9, 1e8)); // no trace of the 100 ms intervals: std floored
        assert!(d.phi(after(last, 300)) < 1e-6, "a 300 ms gap is not suspicious");
        assert!(close(d.phi(after(last, 1500)), LOG10_2));
    }

    fn three(now: Instant) -> SiteDetector {
        let members = [NodeId(1), NodeId(2), NodeId(3)].into_iter().collect();
        SiteDetector::new(NodeId(1), members, DetectorConfig::default(), now)
    }

    /// Heartbeats from `peers` every 100 ms in `[from, to]`.
    fn feed(s: &mut SiteDetector, peers: &[u64], from: u64, to: u64) {
        for t in (from..=to).step_by(100) {
            for &p in peers {
                s.heard_from(NodeId(p), ms(t));
            }
        }
    }

    #[test]
    fn never_heard_peers_are_suspect_then_partitioned() {
        let s = three(ms(1_000));
        let v = s.view(ms(1_999));
        assert_eq!(v.members, 3);
        assert_eq!(v.peers.iter().map(|p| p.health).collect::<Vec<_>>(), [PeerHealth::Suspect; 2]);
        assert_eq!((v.reachable, v.has_quorum, v.state), (3, true, SiteState::Suspect));
        let v = s.view(ms(2_000));
        assert_eq!(
            v.peers.iter().map(|p| (p.health, p.last_heard)).collect::<Vec<_>>(),
            [(PeerHealth::Partitioned, None); 2]
        );
        assert_eq!((v.reachable, v.has_quorum, v.state), (1, false, SiteState::Partitioned));
        assert_eq!(
            v.no_quorum_error(ms(2_000)).unwrap().to_string(),
            "no quorum: reachable 1 of 3 members; no leader seen since start"
        );
    }

    #[test]
    fn one_silent_peer_is_suspect_with_quorum_two_are_a_partition() {
        let mut s = three(ms(0));
        s.heard_from(NodeId(9), ms(0)); // not a member: ignored
        s.heard_from(NodeId(1), ms(0)); // me: ignored
        feed(&mut s, &[2, 3], 0, 10_000);
        s.leader_seen(NodeId(2), ms(10_000));
        let v = s.view(ms(10_050));
        assert_eq!(v.peers.len(), 2);
        assert_eq!((v.reachable, v.has_quorum, v.state), (3, true, SiteState::Healthy));
        assert_eq!(v.no_quorum_error(ms(10_050)), None);

        // n3 goes silent; n2 keeps talking.
        feed(&mut s, &[2], 10_100, 11_000);
        let v = s.view(ms(11_000));
        let n3 = v.peers[1];
        assert_eq!((n3.id, n3.health, n3.last_heard), (NodeId(3), PeerHealth::Suspect, Some(ms(10_000))));
        assert_eq!((v.reachable, v.has_quorum, v.state), (3, true, SiteState::Suspect));
        feed(&mut s, &[2], 11_100, 12_000);
        let v = s.view(ms(12_000));
        assert_eq!(v.peers[1].health, PeerHealth::Partitioned);
        assert_eq!(v.peers[0].health, PeerHealth::Healthy);
        assert_eq!((v.reachable, v.has_quorum, v.state), (2, true, SiteState::Suspect));

        // Both silent from 12 s; the leader was last seen at 10 s.
        let v = s.view(ms(24_500));
        assert_eq!((v.reachable, v.has_quorum, v.state), (1, false, SiteState::Partitioned));
        assert_eq!(v.last_leader, Some((NodeId(2), ms(10_000))));
        let err = v.no_quorum_error(ms(24_999)).unwrap();
        assert_eq!(
            err,
            NoQuorum { reachable: 1, members: 3, last_leader: Some((NodeId(2), Duration::from_millis(14_999))) }
        );
        assert_eq!(err.to_string(), "no quorum: reachable 1 of 3 members; last leader n2 seen 14s ago");

        // n2 comes back: quorum again.
        s.heard_from(NodeId(2), ms(25_000));
        let v = s.view(ms(25_010));
        assert_eq!((v.reachable, v.has_quorum, v.state), (2, true, SiteState::Suspect));
        assert_eq!(v.no_quorum_error(ms(25_010)), None);
    }

    #[test]
    fn leader_seen_ignores_non_members_and_accepts_me() {
        let mut s = three(ms(0));
        s.leader_seen(NodeId(7), ms(5));
        assert_eq!(s.view(ms(5)).last_leader, None);
        s.leader_seen(NodeId(1), ms(6));
        assert_eq!(s.view(ms(6)).last_leader, Some((NodeId(1), ms(6))));
        // Not a heartbeat.
        s.leader_seen(NodeId(2), ms(7));
        assert_eq!(s.view(ms(7)).peers[0].last_heard, None);
    }

    #[test]
    fn cloud_link_follows_attempt_outcomes() {
        let mut s = three(ms(0));
        assert_eq!(s.cloud(ms(0)), CloudLink::Up); // no attempt yet
        s.cloud_heard(ms(1_000));
        assert_eq!(s.cloud(ms(3_600_000)), CloudLink::Up); // an idle hour is not a failure
        s.cloud_failed(ms(3_600_000));
        assert_eq!(s.cloud(ms(3_600_000)), CloudLink::Suspect);
        s.cloud_failed(ms(3_601_000));
        assert_eq!(s.cloud(ms(3_601_000)), CloudLink::Suspect);
        s.cloud_failed(ms(3_602_000));
        assert_eq!(s.cloud(ms(3_602_000)), CloudLink::Down); // three in a row
        s.cloud_heard(ms(3_603_000));
        assert_eq!(s.cloud(ms(3_603_000)), CloudLink::Up);
        // One failure, then 30 s with the data still pending.
        s.cloud_failed(ms(4_000_000));
        assert_eq!(s.cloud(ms(4_029_999)), CloudLink::Suspect);
        assert_eq!(s.cloud(ms(4_030_000)), CloudLink::Down);
        assert_eq!(CloudLink::Down.to_string(), "down");
        assert_eq!(PeerHealth::Partitioned.to_string(), "partitioned");
        assert_eq!(SiteState::Suspect.to_string(), "suspect");
    }

    #[test]
    fn cloud_and_peers_are_independent() {
        // Peers healthy, cloud down.
        let mut s = three(ms(0));
        feed(&mut s, &[2, 3], 0, 5_000);
        for t in [1_000, 2_000, 3_000] {
            s.cloud_failed(ms(t));
        }
        let v = s.view(ms(5_000));
        assert_eq!((v.state, v.has_quorum, v.cloud), (SiteState::Healthy, true, CloudLink::Down));

        // Peers partitioned, cloud up.
        let mut s = three(ms(0));
        feed(&mut s, &[2, 3], 0, 5_000);
        s.cloud_heard(ms(9_000));
        let v = s.view(ms(9_000));
        assert_eq!((v.state, v.has_quorum, v.cloud), (SiteState::Partitioned, false, CloudLink::Up));
        assert!(v.no_quorum_error(ms(9_000)).is_some());
    }

    fn gap() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..2_000_000_000,
            1 => 0u64..1_000,
            1 => 0u64..(1 << 60),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn phi_is_never_nan_or_negative_and_grows_between_heartbeats(
            window_max in 0usize..40,
            min_std in 0u64..2_000_000_000,
            pause in 0u64..5_000_000_000,
            estimate in 0u64..5_000_000_000,
            gaps in proptest::collection::vec(gap(), 0..120),
            probes in proptest::collection::vec(0u64..=1000, 1..8),
            tail in proptest::collection::vec(0u64..(1 << 63), 1..8),
        ) {
            let cfg = DetectorConfig {
                window_max,
                min_std_deviation: Duration(min_std),
                acceptable_heartbeat_pause: Duration(pause),
                first_heartbeat_estimate: Duration(estimate),
                ..DetectorConfig::default()
            };
            // Probe between each heartbeat and the next (per mille of the gap), and after
            // the last one (arbitrary offsets).
            let check = |d: &PhiAccrual, now: Instant, mut offsets: Vec<u64>| -> Result<(), TestCaseError> {
                offsets.sort_unstable();
                let mut previous = 0.0f64;
                for off in offsets {
                    let phi = d.phi(now.saturating_add(Duration(off)));
                    prop_assert!(phi.is_finite() && phi >= 0.0, "phi {phi} at +{off}");
                    prop_assert!(phi >= previous, "phi fell from {previous} to {phi} at +{off}");
                    previous = phi;
                }
                Ok(())
            };
            let mut d = PhiAccrual::new(&cfg);
            let mut now = Instant(0);
            for g in gaps {
                d.heartbeat(now);
                let mut offsets: Vec<u64> = probes.iter().map(|&p| (u128::from(g) * u128::from(p) / 1000) as u64).collect();
                offsets.extend([0, g.saturating_sub(1)]);
                check(&d, now, offsets)?;
                now = now.saturating_add(Duration(g));
            }
            d.heartbeat(now);
            check(&d, now, tail)?;
        }
    }
}

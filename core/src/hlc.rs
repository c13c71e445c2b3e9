//! Hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014).
//!
//! A timestamp is 48 bits of physical milliseconds since the Unix epoch followed by a
//! 16-bit logical counter, so timestamps compare as plain `u64`s. The clock guarantees
//! (design guarantee 6):
//!
//! * every timestamp it issues is strictly greater than every timestamp it issued before,
//!   including before a crash, whatever the wall clock does (jumps back, restarts at 1970);
//! * after it accepted a remote timestamp, everything it issues is greater than that
//!   timestamp (happened-before is respected across nodes).
//!
//! Surviving a crash needs one durable fact: an upper bound on the physical part of every
//! timestamp issued so far. The clock never issues a physical part at or past the bound
//! that is known durable, and asks its driver (`bound_to_persist`) to write a new bound
//! well before it runs out.
//!
//! After a crash the persisted bound is a ceiling on what may have been issued, not where
//! the clock starts (issue 15: starting from it put a restarted clock up to a window ahead
//! of the wall clock, and quick restarts added up, 10 s at each). `recover` compares it
//! with the wall clock ([`ClockStart`]):
//!
//! * wall clock at or past the bound: timestamps follow the wall clock at once;
//! * wall clock behind by no more than a clock that is right can be (`max_offset_ms +
//!   bound_window_ms`: a peer may have dragged the clock `max_offset_ms` ahead, and the
//!   bound reaches a window further): nothing is issued until the wall clock passes the
//!   bound, at most that long and usually less than a window, so timestamps start from the
//!   wall clock ([`HlcError::WaitingForWall`] says how long);
//! * wall clock further behind: it went back, or the device has no real-time clock and
//!   started at 1970. Waiting could take hours, so timestamps continue from the bound and
//!   run ahead of the wall clock until it catches up.
//!
//! The bound is renewed when the clock comes within half a window of it, at an input or a
//! timer of the node (its housekeeping runs once a minute), never on a timer of its own
//! (but for the wake-up half a window before a restart's wait ends, [`HlcClock::wake_at_ms`]):
//! proactive renewal would keep an idle device writing every second for nothing. So the
//! first timestamp after an idle stretch finds the bound lapsed: a gateway holds the
//! message that needs it until a new bound is durable (see `node`, `hold`); a produce takes
//! the physical part just below the lapsed bound (behind the wall clock by up to a minute,
//! the time since the last renewal), and its acknowledgement waits for its own fsync,
//! queued after the new bound's, anyway.
//!
//! Sans-IO: the wall clock comes in as a value on every call; the clock does no I/O.

use std::fmt;

/// Number of bits of the logical counter in an [`Hlc`].
const LOGICAL_BITS: u32 = 16;

/// The largest physical time an [`Hlc`] can carry (48 bits of milliseconds, year 10889).
pub const MAX_PHYSICAL_MS: u64 = (1 << (64 - LOGICAL_BITS)) - 1;

/// The largest bound that means anything: every physical time is below it.
const MAX_BOUND_MS: u64 = MAX_PHYSICAL_MS + 1;

/// A hybrid logical clock timestamp: 48-bit physical milliseconds since the Unix epoch in
/// the high bits, a 16-bit logical counter in the low bits. Ordered as the `u64`, which is
/// the order of (physical, logical). Every `u64` is a valid timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc(pub u64);

impl Hlc {
    /// The smallest timestamp. A clock never issues it.
    pub const ZERO: Hlc = Hlc(0);

    /// The timestamp with the given parts.
    ///
    /// # Panics
    /// If `physical_ms` exceeds [`MAX_PHYSICAL_MS`] (a caller bug: the clock clamps wall
    /// time before building timestamps).
    pub const fn new(physical_ms: u64, logical: u16) -> Hlc {
        assert!(physical_ms <= MAX_PHYSICAL_MS, "HLC physical time exceeds 48 bits");
        Hlc(physical_ms << LOGICAL_BITS | logical as u64)
    }

    /// Milliseconds since the Unix epoch (the high 48 bits).
    pub const fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical counter (the low 16 bits).
    pub const fn logical(self) -> u16 {
        // Truncation is the point: the low 16 bits are the counter.
        self.0 as u16
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.logical())
    }
}

/// Tuning of an [`HlcClock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlcConfig {
    /// A remote timestamp whose physical part is more than this ahead of the local wall
    /// clock is rejected, so one node with a clock in the far future cannot drag every
    /// clock it talks to there.
    pub max_offset_ms: u64,
    /// How far ahead of current time each persisted bound reaches. A new bound is
    /// requested when less than half of the window is left. Must be at least 2.
    ///
    /// The trade: a busy node writes (and fsyncs) one bound per half window, and a node
    /// restarted quickly waits up to one window before it issues timestamps again (the
    /// bound it persisted last reaches that far past its wall clock).
    pub bound_window_ms: u64,
}

impl Default for HlcConfig {
    /// 60 s of tolerated skew; bounds 2 s ahead. A busy node adds one small meta fsync a
    /// second to its group commits (a node writing a record every few seconds already
    /// needs one bound per record, whatever the window; an idle node renews its bound only
    /// when its housekeeping runs, once a minute, as with the 10 s window); a quick restart
    /// waits 1 to 2 s for its wall clock, instead of 5 to 10 s with the 10 s window used
    /// before issue 15.
    fn default() -> Self {
        HlcConfig { max_offset_ms: 60_000, bound_window_ms: 2_000 }
    }
}

/// How a clock recovered from its persisted bound starts, given the wall clock then (see
/// the module docs). The shells log the last two, which an operator should know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockStart {
    /// No bound was persisted: a new node.
    New,
    /// The wall clock is at or past the persisted bound: timestamps follow it at once.
    FromWall,
    /// The wall clock is `wait_ms` behind the bound, no more than a clock that is right can
    /// be: nothing is issued until it passes `bound_ms`, so that timestamps start from the
    /// wall clock rather than ahead of it.
    WaitForWall { bound_ms: u64, wait_ms: u64 },
    /// The wall clock is `behind_ms` behind the bound, more than a clock that is right can
    /// be: it went back, or the device has no real-time clock and started at 1970.
    /// Timestamps continue from `bound_ms`, ahead of the wall clock until it catches up.
    FromBound { bound_ms: u64, behind_ms: u64 },
}

/// Why the clock refused an operation. The clock's state is unchanged by a refusal
/// (except the counter of rejected remote timestamps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HlcError {
    /// Remote timestamp is more than `max_offset_ms` ahead of our wall clock: not adopted.
    RemoteTooFarAhead { remote: Hlc, wall_ms: u64, max_offset_ms: u64 },
    /// Issuing would need a physical time of `needed_ms`, which is not below the durable
    /// upper bound `durable_bound_ms`; the caller must persist a new bound (see
    /// [`HlcClock::bound_to_persist`]) and retry after [`HlcClock::bound_persisted`].
    BoundNotDurable { needed_ms: u64, durable_bound_ms: u64 },
    /// After a restart ([`ClockStart::WaitForWall`]), nothing is issued until the wall
    /// clock (`wall_ms` now) reaches `until_ms`, the bound persisted before the restart.
    /// Retry then.
    WaitingForWall { until_ms: u64, wall_ms: u64 },
}

impl fmt::Display for HlcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HlcError::RemoteTooFarAhead { remote, wall_ms, max_offset_ms } => write!(
                f,
                "remote HLC timestamp {remote} is more than {max_offset_ms} ms ahead of the \
                 local wall clock ({wall_ms} ms) and was not adopted; check the clocks of the \
                 sending node and of this one"
            ),
            HlcError::BoundNotDurable { needed_ms, durable_bound_ms } => write!(
                f,
                "issuing an HLC timestamp needs physical time {needed_ms} ms, which is not \
                 below the durable clock bound {durable_bound_ms} ms; persist a new bound and \
                 retry once it is durable"
            ),
            HlcError::WaitingForWall { until_ms, wall_ms } => {
                let secs = until_ms.saturating_sub(*wall_ms) as f64 / 1e3;
                write!(
                    f,
                    "waiting {secs:.1} s more for the wall clock to pass the clock bound persisted before \
                     the restart, so that timestamps do not run ahead of it; retry in {secs:.1} s"
                )
            }
        }
    }
}

/// A hybrid logical clock with a persisted upper bound, as a sans-IO state machine.
///
/// Invariants (asserted): every issued timestamp is greater than `last` before the call;
/// every issued timestamp has a physical part below `durable_bound_ms`; the durable bound
/// never decreases; nothing is issued while the wall clock is below `wait_until_ms`.
#[derive(Clone, Debug)]
pub struct HlcClock {
    cfg: HlcConfig,
    /// The greatest timestamp issued or accepted from a remote (after recovery: the greatest
    /// one that may have been issued before the crash).
    last: Hlc,
    /// Every physical part issued is below this; it is on durable storage.
    durable_bound_ms: u64,
    /// A bound handed to the driver for writing and not yet confirmed or failed.
    in_flight: Option<u64>,
    /// How many remote timestamps `observe` rejected.
    rejected_remote: u64,
    /// After a restart: nothing is issued until the wall clock reaches this (the bound
    /// persisted before the restart). Cleared once it did.
    wait_until_ms: Option<u64>,
}

impl HlcClock {
    /// Start from the persisted upper bound (`None` on a brand-new node), with the wall
    /// clock at `wall_ms`; says how it starts (see the module docs).
    ///
    /// Every timestamp issued before the crash had a physical part below that bound, so
    /// the clock starts as if it had issued the greatest such timestamp, `(bound - 1,
    /// 0xffff)`: everything it issues next is at least `Hlc::new(bound, 0)`, which keeps
    /// monotonicity even when the device rebooted with its wall clock at 1970. With a wall
    /// clock a little behind the bound ([`ClockStart::WaitForWall`]), nothing is issued
    /// until it passes the bound, so that the next timestamps come from the wall clock
    /// rather than from the bound, ahead of it. Nothing can be issued either until a bound
    /// above the next timestamp is durable: [`bound_to_persist`](Self::bound_to_persist)
    /// asks for one at once (during a wait, once the wall clock is within half a window of
    /// its end).
    ///
    /// # Panics
    /// If `cfg.bound_window_ms < 2` (a configuration bug: the clock could never advance).
    pub fn recover(persisted_bound_ms: Option<u64>, wall_ms: u64, cfg: HlcConfig) -> (HlcClock, ClockStart) {
        assert!(cfg.bound_window_ms >= 2, "HlcConfig::bound_window_ms must be at least 2");
        let bound = persisted_bound_ms.unwrap_or(0).min(MAX_BOUND_MS);
        let last = match bound {
            0 => Hlc::ZERO,
            b => Hlc::new(b - 1, u16::MAX),
        };
        let wall = wall_ms.min(MAX_PHYSICAL_MS);
        // How far behind the bound a clock that is right can be: the clock may have
        // adopted a remote timestamp `max_offset_ms` ahead of it (one more millisecond for
        // a full logical counter), and the bound reaches a window past what it needed.
        let sane_ms = cfg.max_offset_ms.saturating_add(cfg.bound_window_ms).saturating_add(1);
        let start = match persisted_bound_ms {
            None => ClockStart::New,
            Some(_) if wall >= bound => ClockStart::FromWall,
            Some(_) if bound - wall <= sane_ms => ClockStart::WaitForWall { bound_ms: bound, wait_ms: bound - wall },
            Some(_) => ClockStart::FromBound { bound_ms: bound, behind_ms: bound - wall },
        };
        let wait_until_ms = match start {
            ClockStart::WaitForWall { bound_ms, .. } => Some(bound_ms),
            _ => None,
        };
        let clock = HlcClock { cfg, last, durable_bound_ms: bound, in_flight: None, rejected_remote: 0, wait_until_ms };
        (clock, start)
    }

    /// While waiting after a restart: the time the wall clock must reach, cleared once it
    /// did (a wall clock that goes back later does not start the wait again).
    fn waiting(&mut self, wall_ms: u64) -> Option<u64> {
        if self.wait_until_ms.is_some_and(|until| wall_ms >= until) {
            self.wait_until_ms = None;
        }
        self.wait_until_ms
    }

    /// The timestamp [`now`](Self::now) would issue, or why it cannot.
    fn next(&self, wall_ms: u64) -> Result<Hlc, HlcError> {
        if let Some(until_ms) = self.wait_until_ms.filter(|&until| wall_ms < until) {
            return Err(HlcError::WaitingForWall { until_ms, wall_ms });
        }
        let refuse = |needed_ms| HlcError::BoundNotDurable { needed_ms, durable_bound_ms: self.durable_bound_ms };
        // The successor of `last` (logical overflow carries into the physical part).
        let Some(next) = self.last.0.checked_add(1).map(Hlc) else {
            return Err(refuse(MAX_BOUND_MS));
        };
        let Some(ceiling_ms) = self.durable_bound_ms.checked_sub(1) else {
            return Err(refuse(wall_ms.min(MAX_PHYSICAL_MS).max(next.physical_ms())));
        };
        let from_wall = Hlc::new(wall_ms.min(ceiling_ms), 0);
        let ts = next.max(from_wall);
        if ts.physical_ms() > ceiling_ms {
            return Err(refuse(ts.physical_ms()));
        }
        Ok(ts)
    }

    /// Whether [`now`](Self::now) at `wall_ms` would issue a timestamp below the wall clock:
    /// the wall clock has reached the durable bound (nothing asked for a newer one while
    /// the node was idle), so the physical part would stay at `bound - 1`. A caller that
    /// can wait for the next bound stamps from the wall clock then instead.
    pub fn behind_wall(&self, wall_ms: u64) -> bool {
        self.wait_until_ms.is_none()
            && self.durable_bound_ms > 0
            && wall_ms.min(MAX_PHYSICAL_MS) >= self.durable_bound_ms
    }

    /// Whether a timestamp asked for at `wall_ms` should wait for the next durable bound
    /// rather than be issued or refused now: none is left below the bound (a new node's
    /// first bound is not durable yet, or the counter or an adopted remote timestamp
    /// reached it), or one would be issued [`behind_wall`](Self::behind_wall). A bound is
    /// asked for in either case; waiting after a restart is no such case (it can last the
    /// whole offset, so it refuses with how long).
    pub fn waits_for_bound(&self, wall_ms: u64) -> bool {
        match self.next(wall_ms) {
            Ok(_) => self.behind_wall(wall_ms),
            Err(e) => matches!(e, HlcError::BoundNotDurable { .. }),
        }
    }

    /// Whether [`now`](Self::now) would issue a timestamp at `wall_ms` (changes nothing).
    pub fn can_issue(&self, wall_ms: u64) -> bool {
        self.next(wall_ms).is_ok()
    }

    /// Issue a timestamp for a local or send event.
    ///
    /// The result is strictly greater than every timestamp issued before by this clock
    /// (and, after [`recover`](Self::recover), before the crash) and than every remote
    /// timestamp accepted by [`observe`](Self::observe). Its physical part is
    /// `max(wall_ms, last.physical)` when the counter allows, and is never at or past the
    /// durable bound: if wall time has passed the bound, the physical part stays at
    /// `bound - 1` and the logical counter increments. Logical overflow otherwise advances
    /// the physical part by 1 ms. If no timestamp below the bound is left (counter overflow
    /// at `bound - 1`, or `last` has reached the bound through `observe`), returns
    /// [`HlcError::BoundNotDurable`]; while waiting after a restart for the wall clock to
    /// pass the bound persisted before it, [`HlcError::WaitingForWall`]. Either way it
    /// changes nothing.
    pub fn now(&mut self, wall_ms: u64) -> Result<Hlc, HlcError> {
        let prev = self.last;
        let ts = self.next(wall_ms)?;
        self.wait_until_ms = None;
        debug_assert!(ts > prev, "HLC went backwards: {ts} after {prev}");
        debug_assert!(ts.physical_ms() < self.durable_bound_ms);
        self.last = ts;
        Ok(ts)
    }

    /// Merge a remote timestamp (receive event).
    ///
    /// Rejects it, leaving the clock unchanged apart from the
    /// [`rejected_remote`](Self::rejected_remote) counter, if its physical part is more than
    /// `max_offset_ms` ahead of `wall_ms`. Otherwise sets `last = max(last, remote)`, so the
    /// next [`now`](Self::now) is greater than `remote`.
    pub fn observe(&mut self, wall_ms: u64, remote: Hlc) -> Result<(), HlcError> {
        if remote.physical_ms() > wall_ms.saturating_add(self.cfg.max_offset_ms) {
            self.rejected_remote += 1;
            return Err(HlcError::RemoteTooFarAhead { remote, wall_ms, max_offset_ms: self.cfg.max_offset_ms });
        }
        self.last = self.last.max(remote);
        Ok(())
    }

    /// If a new bound should be written to durable storage now, returns it and marks it in
    /// flight; the driver then reports [`bound_persisted`](Self::bound_persisted) or
    /// [`bound_persist_failed`](Self::bound_persist_failed).
    ///
    /// With `base = max(p, wall_ms)`, where `p` is the physical part of the successor of
    /// `last` (`last.physical`, or one more when the logical counter is full), a bound is
    /// asked for when nothing is in flight and `base + bound_window_ms / 2 >= durable bound`;
    /// it is then `base + bound_window_ms` (capped at the end of 48-bit time). A new node
    /// and one recovered without a wait ask immediately. While waiting after a restart,
    /// `base` is the wall clock (nothing is issued below it, unless a remote timestamp
    /// adopted meanwhile needs more): the bound is renewed as the wall clock nears the end
    /// of the wait, not a window past the old bound at once, so that crashes during waits
    /// do not push the bound ahead of the wall clock. Returned bounds never decrease, so
    /// whichever of an older or newer bound survives a crash on disk is safe to recover
    /// from.
    pub fn bound_to_persist(&mut self, wall_ms: u64) -> Option<u64> {
        let wall = wall_ms.min(MAX_PHYSICAL_MS);
        let waiting = self.waiting(wall);
        if self.in_flight.is_some() {
            return None;
        }
        // The physical part the next timestamp needs at least (`last` + 1, carrying a full
        // logical counter into the physical part).
        let next_physical_ms = Hlc(self.last.0.saturating_add(1)).physical_ms();
        let base = match waiting {
            Some(until) if next_physical_ms <= until => wall,
            _ => next_physical_ms.max(wall),
        };
        if base.saturating_add(self.cfg.bound_window_ms / 2) < self.durable_bound_ms {
            return None;
        }
        let bound = base.saturating_add(self.cfg.bound_window_ms).min(MAX_BOUND_MS);
        if bound <= self.durable_bound_ms {
            // Only at the end of 48-bit time: nothing further to ask for.
            return None;
        }
        self.in_flight = Some(bound);
        Some(bound)
    }

    /// The bound returned by [`bound_to_persist`](Self::bound_to_persist) is now durable
    /// (its fsync completed). The durable bound never decreases.
    pub fn bound_persisted(&mut self, bound_ms: u64) {
        debug_assert_eq!(self.in_flight, Some(bound_ms), "bound_persisted for a bound that is not in flight");
        self.in_flight = None;
        self.durable_bound_ms = self.durable_bound_ms.max(bound_ms.min(MAX_BOUND_MS));
    }

    /// The write of the in-flight bound failed: forget it, so that
    /// [`bound_to_persist`](Self::bound_to_persist) can ask again.
    pub fn bound_persist_failed(&mut self) {
        self.in_flight = None;
    }

    /// The greatest timestamp issued or accepted so far (after recovery: the greatest that
    /// may have been issued before the crash). The next [`now`](Self::now) is greater.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The durable upper bound: every issued physical part is below it.
    pub fn durable_bound_ms(&self) -> u64 {
        self.durable_bound_ms
    }

    /// While waiting after a restart (wall clock at `wall_ms`): the wall-clock time at which
    /// to call again, half a window before the wait ends (to ask for a bound) and when it
    /// ends. `None` when not waiting.
    pub fn wake_at_ms(&self, wall_ms: u64) -> Option<u64> {
        let until = self.wait_until_ms?;
        let ask = until.saturating_sub(self.cfg.bound_window_ms / 2);
        [ask, until].into_iter().find(|&t| t > wall_ms)
    }

    /// How many remote timestamps [`observe`](Self::observe) rejected since this clock
    /// was created.
    pub fn rejected_remote(&self) -> u64 {
        self.rejected_remote
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CFG: HlcConfig = HlcConfig { max_offset_ms: 60_000, bound_window_ms: 10_000 };

    /// A brand-new clock.
    fn new_clock(cfg: HlcConfig) -> HlcClock {
        let (c, start) = HlcClock::recover(None, 1_000, cfg);
        assert_eq!(start, ClockStart::New);
        c
    }

    /// Persist whatever bound the clock asks for, immediately.
    fn persist(clock: &mut HlcClock, wall_ms: u64) -> Option<u64> {
        let bound = clock.bound_to_persist(wall_ms)?;
        clock.bound_persisted(bound);
        Some(bound)
    }

    /// Issue a timestamp, persisting a new bound first if the clock needs one.
    fn issue(clock: &mut HlcClock, wall_ms: u64) -> Hlc {
        persist(clock, wall_ms);
        match clock.now(wall_ms) {
            Ok(ts) => ts,
            Err(e) => panic!("clock could not issue after persisting a bound: {e}"),
        }
    }

    #[test]
    fn hlc_parts_round_trip() {
        let ts = Hlc::new(MAX_PHYSICAL_MS, 0xabcd);
        assert_eq!(ts.physical_ms(), MAX_PHYSICAL_MS);
        assert_eq!(ts.logical(), 0xabcd);
        assert_eq!(Hlc::new(3, 1).to_string(), "3.1");
        assert!(Hlc::new(1, u16::MAX) < Hlc::new(2, 0));
        assert_eq!(HlcConfig::default(), HlcConfig { max_offset_ms: 60_000, bound_window_ms: 2_000 });
    }

    #[test]
    #[should_panic(expected = "48 bits")]
    fn hlc_new_rejects_physical_past_48_bits() {
        let _ = Hlc::new(MAX_PHYSICAL_MS + 1, 0);
    }

    #[test]
    fn new_node_asks_for_a_bound_before_issuing() {
        let mut c = new_clock(CFG);
        assert_eq!(c.now(1_000), Err(HlcError::BoundNotDurable { needed_ms: 1_000, durable_bound_ms: 0 }));
        assert_eq!(c.bound_to_persist(1_000), Some(11_000));
        // Nothing else is asked for while one bound is in flight.
        assert_eq!(c.bound_to_persist(50_000), None);
        c.bound_persisted(11_000);
        assert_eq!(c.durable_bound_ms(), 11_000);
        assert_eq!(c.now(1_000), Ok(Hlc::new(1_000, 0)));
        assert_eq!(c.now(1_000), Ok(Hlc::new(1_000, 1)));
        assert_eq!(c.now(900), Ok(Hlc::new(1_000, 2)));
        assert_eq!(c.now(1_001), Ok(Hlc::new(1_001, 0)));
        // Not yet within half a window of the bound.
        assert_eq!(c.bound_to_persist(5_999), None);
        assert_eq!(c.bound_to_persist(6_000), Some(16_000));
    }

    #[test]
    fn reboot_to_wall_zero_after_persisting_a_bound_stays_monotonic() {
        let mut c = new_clock(CFG);
        let before = issue(&mut c, 1_700_000_000_000);
        let bound = c.durable_bound_ms();
        assert!(before.physical_ms() < bound);

        // Crash; the device comes back with its clock at 1970: far behind the bound, so the
        // clock continues from it at once rather than wait for decades.
        let (mut c, start) = HlcClock::recover(Some(bound), 0, CFG);
        assert_eq!(start, ClockStart::FromBound { bound_ms: bound, behind_ms: bound });
        assert_eq!(c.wake_at_ms(0), None);
        assert!(matches!(c.now(0), Err(HlcError::BoundNotDurable { .. })));
        assert_eq!(c.bound_to_persist(0), Some(bound + CFG.bound_window_ms));
        c.bound_persisted(bound + CFG.bound_window_ms);
        let after = c.now(0).expect("bound is durable");
        assert!(after > before);
        assert_eq!(after, Hlc::new(bound, 0));
        assert!(c.now(0).expect("counter left") > after);
    }

    #[test]
    fn failed_bound_write_can_be_retried() {
        let mut c = new_clock(CFG);
        assert_eq!(c.bound_to_persist(100), Some(10_100));
        c.bound_persist_failed();
        assert_eq!(c.durable_bound_ms(), 0);
        assert_eq!(c.bound_to_persist(200), Some(10_200));
        c.bound_persisted(10_200);
        assert_eq!(c.now(200), Ok(Hlc::new(200, 0)));
    }

    #[test]
    fn a_restart_a_little_behind_the_bound_waits_for_the_wall_clock_and_says_how_long() {
        let t0 = 1_767_225_600_000;
        let mut c = new_clock(CFG);
        let before = issue(&mut c, t0);
        let bound = c.durable_bound_ms();
        assert_eq!(bound, t0 + 10_000);
        // kill -9, back 8.6 s before the bound.
        let wall = bound - 8_600;
        let (mut c, start) = HlcClock::recover(Some(bound), wall, CFG);
        assert_eq!(start, ClockStart::WaitForWall { bound_ms: bound, wait_ms: 8_600 });
        let err = c.now(wall).unwrap_err();
        assert_eq!(err, HlcError::WaitingForWall { until_ms: bound, wall_ms: wall });
        assert_eq!(
            err.to_string(),
            "waiting 8.6 s more for the wall clock to pass the clock bound persisted before the restart, so that \
             timestamps do not run ahead of it; retry in 8.6 s"
        );
        // Woken half a window before the end to renew the bound, then at the end.
        assert_eq!(c.wake_at_ms(wall), Some(bound - 5_000));
        assert_eq!(c.bound_to_persist(bound - 5_001), None);
        assert_eq!(c.bound_to_persist(bound - 5_000), Some(bound + 5_000));
        c.bound_persisted(bound + 5_000);
        assert_eq!(c.wake_at_ms(bound - 5_000), Some(bound));
        assert!(matches!(c.now(bound - 1), Err(HlcError::WaitingForWall { .. })));
        assert_eq!(c.wake_at_ms(bound), None);
        // From the wall clock, above everything issued before the crash.
        let ts = c.now(bound + 3).expect("the wait is over and a bound is durable");
        assert_eq!(ts, Hlc::new(bound + 3, 0));
        assert!(ts > before);
        // A wall clock that goes back now does not start the wait again.
        assert_eq!(c.now(bound - 100), Ok(Hlc::new(bound + 3, 1)));
    }

    /// Crashes every 3 s, each during the wait that follows the one before (the process
    /// dies before it issues anything): the bound renewed during a wait reaches a window
    /// past the wall clock, not a window past the old bound, so waits do not grow.
    #[test]
    fn crashes_during_waits_do_not_push_the_bound_ahead_of_the_wall_clock() {
        let mut wall = 1_767_225_600_000;
        let mut c = new_clock(CFG);
        issue(&mut c, wall);
        let mut on_disk = c.durable_bound_ms();
        for _ in 0..100 {
            wall += 3_000;
            let (mut r, start) = HlcClock::recover(Some(on_disk), wall, CFG);
            if let ClockStart::WaitForWall { wait_ms, .. } = start {
                assert!(wait_ms <= CFG.bound_window_ms, "waits {wait_ms} ms");
            }
            // Whatever it asks for lands; it dies 3 s later.
            for w in [wall, wall + 1_500, wall + 2_999] {
                if let Some(b) = r.bound_to_persist(w) {
                    r.bound_persisted(b);
                    on_disk = b;
                }
            }
            assert!(on_disk <= wall + 3_000 + CFG.bound_window_ms);
        }
    }

    #[test]
    fn remote_too_far_ahead_is_rejected_and_counted() {
        let mut c = new_clock(CFG);
        let local = issue(&mut c, 10_000);
        let far = Hlc::new(10_000 + CFG.max_offset_ms + 1, 0);
        assert_eq!(
            c.observe(10_000, far),
            Err(HlcError::RemoteTooFarAhead { remote: far, wall_ms: 10_000, max_offset_ms: CFG.max_offset_ms })
        );
        assert_eq!(c.rejected_remote(), 1);
        assert_eq!(c.last(), local);
        // Exactly at the limit is accepted, and the next timestamp is above it.
        let edge = Hlc::new(10_000 + CFG.max_offset_ms, 7);
        assert_eq!(c.observe(10_000, edge), Ok(()));
        assert_eq!(c.rejected_remote(), 1);
        assert_eq!(c.last(), edge);
        assert!(issue(&mut c, 10_000) > edge);
        let msg = HlcError::RemoteTooFarAhead { remote: far, wall_ms: 10_000, max_offset_ms: 60_000 }.to_string();
        assert!(msg.contains("not adopted"), "{msg}");
    }

    #[test]
    fn older_remote_does_not_move_the_clock() {
        let mut c = new_clock(CFG);
        let local = issue(&mut c, 5_000);
        assert_eq!(c.observe(5_000, Hlc::new(10, 3)), Ok(()));
        assert_eq!(c.last(), local);
    }

    #[test]
    fn wall_past_bound_pins_physical_then_exhausts() {
        let cfg = HlcConfig { max_offset_ms: 60_000, bound_window_ms: 4 };
        let mut c = new_clock(cfg);
        assert_eq!(persist(&mut c, 0), Some(4));
        // Wall time jumps far past the bound: physical stays at bound - 1.
        let mut prev = Hlc::ZERO;
        for i in 0..=u16::MAX {
            let ts = c.now(1_000_000).expect("counter left at bound - 1");
            assert_eq!(ts, Hlc::new(3, i));
            assert!(ts > prev || i == 0);
            prev = ts;
        }
        let err = c.now(1_000_000).unwrap_err();
        assert_eq!(err, HlcError::BoundNotDurable { needed_ms: 4, durable_bound_ms: 4 });
        assert!(err.to_string().contains("persist a new bound"));
        // The state did not change; once a new bound is durable, issuing resumes.
        assert_eq!(c.last(), prev);
        assert_eq!(c.bound_to_persist(1_000_000), Some(1_000_004));
        assert!(c.now(1_000_000).is_err());
        c.bound_persisted(1_000_004);
        assert_eq!(c.now(1_000_000), Ok(Hlc::new(1_000_000, 0)));
    }

    #[test]
    fn logical_overflow_advances_physical() {
        let mut c = new_clock(CFG);
        persist(&mut c, 0);
        assert_eq!(c.observe(0, Hlc::new(5, u16::MAX)), Ok(()));
        assert_eq!(c.now(0), Ok(Hlc::new(6, 0)));
    }

    #[test]
    fn observed_remote_at_the_bound_needs_a_new_bound() {
        let mut c = new_clock(CFG);
        persist(&mut c, 0);
        let bound = c.durable_bound_ms();
        let remote = Hlc::new(bound + 100, 0);
        assert_eq!(c.observe(bound, remote), Ok(()));
        assert_eq!(c.now(0), Err(HlcError::BoundNotDurable { needed_ms: bound + 100, durable_bound_ms: bound }));
        assert!(issue(&mut c, 0) > remote);
    }

    #[test]
    fn end_of_time_is_refused_not_wrapped() {
        let (mut c, _) = HlcClock::recover(Some(u64::MAX), 0, CFG);
        assert_eq!(c.durable_bound_ms(), MAX_BOUND_MS);
        assert_eq!(c.last(), Hlc(u64::MAX));
        assert_eq!(c.bound_to_persist(u64::MAX), None);
        assert!(matches!(c.now(u64::MAX), Err(HlcError::BoundNotDurable { .. })));
        // A huge wall clock is clamped to 48 bits rather than overflowing.
        let mut c = new_clock(CFG);
        assert_eq!(c.bound_to_persist(u64::MAX), Some(MAX_BOUND_MS));
        c.bound_persisted(MAX_BOUND_MS);
        assert_eq!(c.now(u64::MAX), Ok(Hlc::new(MAX_PHYSICAL_MS, 0)));
    }

    #[test]
    #[should_panic(expected = "bound_window_ms")]
    fn tiny_window_is_a_config_bug() {
        let _ = HlcClock::recover(None, 0, HlcConfig { max_offset_ms: 0, bound_window_ms: 1 });
    }

    /// Wall clocks that jump back and forth, including to 0 and past 48 bits.
    fn wall() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            0..200_000u64,
            1_700_000_000_000..1_700_000_100_000u64,
            MAX_PHYSICAL_MS - 20_000..=u64::MAX,
        ]
    }

    #[derive(Clone, Debug)]
    enum Op {
        Now(u64),
        /// Observe at a wall time a remote whose physical part is `wall + delta` (saturated).
        Observe(u64, i64, u16),
        AskBound(u64),
        BoundDone,
        BoundFailed,
        /// Crash; `landed` says whether an in-flight bound write reached the disk; the
        /// node restarts with its wall clock at `wall`.
        Crash {
            landed: bool,
            wall: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => wall().prop_map(Op::Now),
            2 => (wall(), -100_000i64..100_000, any::<u16>())
                .prop_map(|(w, d, l)| Op::Observe(w, d, l)),
            2 => wall().prop_map(Op::AskBound),
            2 => Just(Op::BoundDone),
            1 => Just(Op::BoundFailed),
            1 => (any::<bool>(), wall()).prop_map(|(landed, wall)| Op::Crash { landed, wall }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Issued timestamps strictly increase over the whole history, across crashes.
        #[test]
        fn issued_timestamps_strictly_increase_across_crashes(
            window in 2u64..30_000,
            far_future in proptest::bool::weighted(0.1),
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            // A wall clock past the end of 48-bit time pins the clock there for good, so most
            // cases keep wall clocks below it (a jump to the year 2027 instead).
            let ops = ops.into_iter().map(|op| {
                let w = |w: u64| if far_future { w } else { w.min(1_800_000_000_000) };
                match op {
                    Op::Now(x) => Op::Now(w(x)),
                    Op::Observe(x, d, l) => Op::Observe(w(x), d, l),
                    Op::AskBound(x) => Op::AskBound(w(x)),
                    Op::Crash { landed, wall } => Op::Crash { landed, wall: w(wall) },
                    other => other,
                }
            });
            let cfg = HlcConfig { max_offset_ms: 60_000, bound_window_ms: window };
            let mut clock = new_clock(cfg);
            let mut on_disk: Option<u64> = None;
            let mut in_flight: Option<u64> = None;
            let mut last_issued = Hlc::ZERO;
            // After a restart that waits: the bound the wall clock must pass first.
            let mut waiting_for: Option<u64> = None;
            for op in ops {
                match op {
                    Op::Now(w) => match clock.now(w) {
                        Ok(ts) => {
                            prop_assert!(ts > last_issued, "{ts} after {last_issued}");
                            prop_assert!(ts.physical_ms() < clock.durable_bound_ms());
                            prop_assert!(on_disk.is_some_and(|b| ts.physical_ms() < b));
                            prop_assert!(waiting_for.is_none_or(|b| w >= b), "issued at wall {w} before {waiting_for:?}");
                            waiting_for = None;
                            last_issued = ts;
                        }
                        Err(HlcError::WaitingForWall { until_ms, wall_ms }) => {
                            prop_assert_eq!(Some(until_ms), waiting_for);
                            prop_assert!(wall_ms == w && w < until_ms);
                        }
                        Err(_) => {}
                    },
                    Op::Observe(w, delta, logical) => {
                        let phys = w.min(MAX_PHYSICAL_MS).saturating_add_signed(delta)
                            .min(MAX_PHYSICAL_MS);
                        let _ = clock.observe(w, Hlc::new(phys, logical));
                    }
                    Op::AskBound(w) => {
                        // The wall clock reached the bound: the wait is over for good.
                        if waiting_for.is_some_and(|b| w.min(MAX_PHYSICAL_MS) >= b) {
                            waiting_for = None;
                        }
                        if let Some(b) = clock.bound_to_persist(w) {
                            prop_assert!(in_flight.is_none());
                            prop_assert!(b > clock.durable_bound_ms());
                            in_flight = Some(b);
                        }
                    }
                    Op::BoundDone => {
                        if let Some(b) = in_flight.take() {
                            prop_assert!(on_disk.is_none_or(|d| d <= b));
                            on_disk = Some(b);
                            clock.bound_persisted(b);
                        }
                    }
                    Op::BoundFailed => {
                        if in_flight.take().is_some() {
                            clock.bound_persist_failed();
                        }
                    }
                    Op::Crash { landed, wall } => {
                        if let Some(b) = in_flight.take().filter(|_| landed) {
                            on_disk = Some(b);
                        }
                        let start;
                        (clock, start) = HlcClock::recover(on_disk, wall, cfg);
                        waiting_for = match start {
                            ClockStart::WaitForWall { bound_ms, wait_ms } => {
                                prop_assert!(wait_ms <= cfg.max_offset_ms + window + 1);
                                Some(bound_ms)
                            }
                            _ => None,
                        };
                    }
                }
            }
            // Liveness: unless at the end of time, one persisted bound lets the clock issue,
            // at once or, after a restart that waits, once the wall clock passed the bound.
            if clock.last().physical_ms() < MAX_PHYSICAL_MS - 1 {
                if in_flight.is_some() {
                    clock.bound_persist_failed();
                }
                let mut w = 0;
                while let Some(t) = clock.wake_at_ms(w) {
                    prop_assert!(t > w);
                    w = t;
                }
                let ts = issue(&mut clock, w);
                prop_assert!(ts > last_issued);
            }
        }

        /// A node whose wall clock is right, restarted again and again (its last bound
        /// write landing or not), with peers ahead of it by up to `max_offset_ms`: every
        /// timestamp it issues is at or after its wall clock and at most `max_offset_ms`
        /// (one more millisecond for a full logical counter) ahead of it: restarts add
        /// nothing. It waits after a restart at most `max_offset_ms + bound_window_ms`, and
        /// never continues from its bound.
        #[test]
        fn restarts_with_a_right_wall_clock_stay_near_it(
            window in 2u64..30_000,
            steps in proptest::collection::vec(
                (0u64..15_000, 0u8..10, 0u64..=60_000, any::<u16>(), any::<bool>()),
                1..300,
            ),
        ) {
            let cfg = HlcConfig { max_offset_ms: 60_000, bound_window_ms: window };
            let mut clock = new_clock(cfg);
            let mut on_disk: Option<u64> = None;
            let mut wall = 1_767_225_600_000u64;
            let mut last_issued = Hlc::ZERO;
            for (dt, what, ahead, logical, landed) in steps {
                wall += dt;
                match what {
                    // A peer's timestamp, within the tolerated offset.
                    0..=2 => prop_assert!(clock.observe(wall, Hlc::new(wall + ahead, logical)).is_ok()),
                    // Crash. A bound write in flight lands or not (here: asked, not yet done).
                    3 => {
                        if let (Some(b), true) = (clock.bound_to_persist(wall), landed) {
                            on_disk = Some(b);
                        }
                        let start;
                        (clock, start) = HlcClock::recover(on_disk, wall, cfg);
                        match start {
                            ClockStart::FromBound { .. } => prop_assert!(false, "{start:?} with a right wall clock"),
                            ClockStart::WaitForWall { wait_ms, .. } => {
                                prop_assert!(wait_ms <= cfg.max_offset_ms + window + 1);
                                // The wait passes (the node issues nothing meanwhile).
                                while let Some(t) = clock.wake_at_ms(wall) {
                                    wall = t;
                                    if let Some(b) = clock.bound_to_persist(wall) {
                                        clock.bound_persisted(b);
                                        on_disk = Some(b);
                                    }
                                }
                            }
                            ClockStart::New | ClockStart::FromWall => {}
                        }
                    }
                    // Issue, the driver persisting what the clock asks for first.
                    _ => {
                        if let Some(b) = clock.bound_to_persist(wall) {
                            clock.bound_persisted(b);
                            on_disk = Some(b);
                        }
                        let ts = clock.now(wall).expect("a right clock with a durable bound issues");
                        prop_assert!(ts > last_issued);
                        prop_assert!(ts.physical_ms() >= wall, "{ts} behind the wall clock {wall}");
                        prop_assert!(
                            ts.physical_ms() <= wall + cfg.max_offset_ms + 1,
                            "{ts} is {} ms ahead of the wall clock {wall}",
                            ts.physical_ms() - wall
                        );
                        last_issued = ts;
                    }
                }
            }
        }

        /// Recovery with the wall clock anywhere around the persisted bound: at or past it,
        /// timestamps follow the wall clock at once; a little behind, nothing is issued until
        /// it passes the bound, and then from the wall clock; far behind (a jump back, a
        /// device at 1970), from the bound at once. Always above everything issued before.
        #[test]
        fn recovery_waits_for_a_wall_clock_a_little_behind_and_not_for_one_far_behind(
            window in 2u64..30_000,
            bound in 1_000_000u64..1_800_000_000_000,
            wall_vs_bound in prop_oneof![
                -100_000i64..100_000,
                -10_000_000_000i64..10_000_000_000,
                Just(i64::MIN),
            ],
            issued_below in 1u64..1_000,
        ) {
            let cfg = HlcConfig { max_offset_ms: 60_000, bound_window_ms: window };
            let before = Hlc::new(bound - issued_below.min(bound), 7);
            let wall = bound.saturating_add_signed(wall_vs_bound);
            let (mut c, start) = HlcClock::recover(Some(bound), wall, cfg);
            let sane = cfg.max_offset_ms + window + 1;
            let at = match start {
                ClockStart::FromWall => {
                    prop_assert!(wall >= bound);
                    prop_assert_eq!(c.wake_at_ms(wall), None);
                    wall
                }
                ClockStart::WaitForWall { bound_ms, wait_ms } => {
                    prop_assert!(wall < bound && bound - wall <= sane);
                    prop_assert_eq!((bound_ms, wait_ms), (bound, bound - wall));
                    // Refused, saying how long, until the wall clock passes the bound; no
                    // bound asked for until half a window before that.
                    let err = c.now(wall).unwrap_err();
                    prop_assert_eq!(&err, &HlcError::WaitingForWall { until_ms: bound, wall_ms: wall });
                    prop_assert!(err.to_string().contains("retry in"));
                    if bound - wall > window / 2 {
                        prop_assert_eq!(c.bound_to_persist(wall), None);
                    }
                    prop_assert!(c.now(bound - 1).is_err());
                    bound
                }
                ClockStart::FromBound { bound_ms, behind_ms } => {
                    prop_assert!(wall < bound && bound - wall > sane);
                    prop_assert_eq!((bound_ms, behind_ms), (bound, bound - wall));
                    prop_assert_eq!(c.wake_at_ms(wall), None);
                    wall
                }
                ClockStart::New => {
                    prop_assert!(false, "a persisted bound is not a new node");
                    wall
                }
            };
            let ts = issue(&mut c, at);
            prop_assert!(ts > before && ts >= Hlc::new(bound, 0));
            let expected = if matches!(start, ClockStart::FromBound { .. }) { bound } else { at };
            prop_assert_eq!(ts.physical_ms(), expected);
        }

        /// Happened-before across clocks with arbitrary skews: a timestamp accepted by a
        /// receiver is below everything the receiver issues afterwards, transitively.
        #[test]
        fn happened_before_across_skewed_clocks(
            skews in proptest::collection::vec(
                prop_oneof![-100_000i64..100_000, -3_000_000i64..3_000_000],
                2..6,
            ),
            steps in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0u64..5_000,
                 any::<bool>()),
                1..200,
            ),
        ) {
            let n = skews.len();
            let mut clocks: Vec<HlcClock> =
                (0..n).map(|_| new_clock(CFG)).collect();
            // floor[i]: the greatest timestamp that happened-before node i's next event.
            let mut floor = vec![Hlc::ZERO; n];
            let mut true_ms: u64 = 1_000_000;
            for (from, to, dt, local_event) in steps {
                true_ms += dt;
                let wall = |i: usize| true_ms.saturating_add_signed(skews[i]);
                let (a, b) = (from.index(n), to.index(n));
                let ts = issue(&mut clocks[a], wall(a));
                prop_assert!(ts > floor[a], "node {a} issued {ts} not above {}", floor[a]);
                floor[a] = ts;
                if local_event || a == b {
                    continue;
                }
                if clocks[b].observe(wall(b), ts).is_ok() {
                    floor[b] = floor[b].max(ts);
                    let next = issue(&mut clocks[b], wall(b));
                    prop_assert!(next > floor[b], "node {b} issued {next} not above {ts}");
                    floor[b] = next;
                } else {
                    prop_assert!(ts.physical_ms() > wall(b) + CFG.max_offset_ms);
                }
            }
        }
    }
}

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
//! well before it runs out. After a crash, `recover` starts above the persisted bound.
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
    pub bound_window_ms: u64,
}

impl Default for HlcConfig {
    /// 60 s of tolerated skew, bounds written every ~5 s of clock progress.
    fn default() -> Self {
        HlcConfig { max_offset_ms: 60_000, bound_window_ms: 10_000 }
    }
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
        }
    }
}

/// A hybrid logical clock with a persisted upper bound, as a sans-IO state machine.
///
/// Invariants (asserted): every issued timestamp is greater than `last` before the call;
/// every issued timestamp has a physical part below `durable_bound_ms`; the durable bound
/// never decreases.
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
}

impl HlcClock {
    /// Start from the persisted upper bound (`None` on a brand-new node).
    ///
    /// Every timestamp issued before the crash had a physical part below that bound, so
    /// the clock starts as if it had issued the greatest such timestamp, `(bound - 1,
    /// 0xffff)`: everything it issues next is at least `Hlc::new(bound, 0)`, which keeps
    /// monotonicity even when the device rebooted with its wall clock at 1970. Nothing can be
    /// issued until a bound above that is durable: [`bound_to_persist`](Self::bound_to_persist)
    /// asks for one immediately.
    ///
    /// # Panics
    /// If `cfg.bound_window_ms < 2` (a configuration bug: the clock could never advance).
    pub fn recover(persisted_bound_ms: Option<u64>, cfg: HlcConfig) -> HlcClock {
        assert!(cfg.bound_window_ms >= 2, "HlcConfig::bound_window_ms must be at least 2");
        let bound = persisted_bound_ms.unwrap_or(0).min(MAX_BOUND_MS);
        let last = match bound {
            0 => Hlc::ZERO,
            b => Hlc::new(b - 1, u16::MAX),
        };
        HlcClock { cfg, last, durable_bound_ms: bound, in_flight: None, rejected_remote: 0 }
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
    /// [`HlcError::BoundNotDurable`] and changes nothing.
    pub fn now(&mut self, wall_ms: u64) -> Result<Hlc, HlcError> {
        let prev = self.last;
        let refuse = |needed_ms| HlcError::BoundNotDurable { needed_ms, durable_bound_ms: self.durable_bound_ms };
        // The successor of `last` (logical overflow carries into the physical part).
        let Some(next) = prev.0.checked_add(1).map(Hlc) else {
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
    /// (`recover(None)`) and a recovered one ask immediately. Returned bounds never decrease, so whichever of an
    /// older or newer bound survives a crash on disk is safe to recover from.
    pub fn bound_to_persist(&mut self, wall_ms: u64) -> Option<u64> {
        if self.in_flight.is_some() {
            return None;
        }
        // The physical part the next timestamp needs at least (`last` + 1, carrying a full
        // logical counter into the physical part).
        let next_physical_ms = Hlc(self.last.0.saturating_add(1)).physical_ms();
        let base = next_physical_ms.max(wall_ms.min(MAX_PHYSICAL_MS));
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
        assert_eq!(HlcConfig::default(), CFG);
    }

    #[test]
    #[should_panic(expected = "48 bits")]
    fn hlc_new_rejects_physical_past_48_bits() {
        let _ = Hlc::new(MAX_PHYSICAL_MS + 1, 0);
    }

    #[test]
    fn new_node_asks_for_a_bound_before_issuing() {
        let mut c = HlcClock::recover(None, CFG);
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
        let mut c = HlcClock::recover(None, CFG);
        let before = issue(&mut c, 1_700_000_000_000);
        let bound = c.durable_bound_ms();
        assert!(before.physical_ms() < bound);

        // Crash; the device comes back with its clock at 1970.
        let mut c = HlcClock::recover(Some(bound), CFG);
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
        let mut c = HlcClock::recover(None, CFG);
        assert_eq!(c.bound_to_persist(100), Some(10_100));
        c.bound_persist_failed();
        assert_eq!(c.durable_bound_ms(), 0);
        assert_eq!(c.bound_to_persist(200), Some(10_200));
        c.bound_persisted(10_200);
        assert_eq!(c.now(200), Ok(Hlc::new(200, 0)));
    }

    #[test]
    fn remote_too_far_ahead_is_rejected_and_counted() {
        let mut c = HlcClock::recover(None, CFG);
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
        let mut c = HlcClock::recover(None, CFG);
        let local = issue(&mut c, 5_000);
        assert_eq!(c.observe(5_000, Hlc::new(10, 3)), Ok(()));
        assert_eq!(c.last(), local);
    }

    #[test]
    fn wall_past_bound_pins_physical_then_exhausts() {
        let cfg = HlcConfig { max_offset_ms: 60_000, bound_window_ms: 4 };
        let mut c = HlcClock::recover(None, cfg);
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
        let mut c = HlcClock::recover(None, CFG);
        persist(&mut c, 0);
        assert_eq!(c.observe(0, Hlc::new(5, u16::MAX)), Ok(()));
        assert_eq!(c.now(0), Ok(Hlc::new(6, 0)));
    }

    #[test]
    fn observed_remote_at_the_bound_needs_a_new_bound() {
        let mut c = HlcClock::recover(None, CFG);
        persist(&mut c, 0);
        let bound = c.durable_bound_ms();
        let remote = Hlc::new(bound + 100, 0);
        assert_eq!(c.observe(bound, remote), Ok(()));
        assert_eq!(c.now(0), Err(HlcError::BoundNotDurable { needed_ms: bound + 100, durable_bound_ms: bound }));
        assert!(issue(&mut c, 0) > remote);
    }

    #[test]
    fn end_of_time_is_refused_not_wrapped() {
        let mut c = HlcClock::recover(Some(u64::MAX), CFG);
        assert_eq!(c.durable_bound_ms(), MAX_BOUND_MS);
        assert_eq!(c.last(), Hlc(u64::MAX));
        assert_eq!(c.bound_to_persist(u64::MAX), None);
        assert!(matches!(c.now(u64::MAX), Err(HlcError::BoundNotDurable { .. })));
        // A huge wall clock is clamped to 48 bits rather than overflowing.
        let mut c = HlcClock::recover(None, CFG);
        assert_eq!(c.bound_to_persist(u64::MAX), Some(MAX_BOUND_MS));
        c.bound_persisted(MAX_BOUND_MS);
        assert_eq!(c.now(u64::MAX), Ok(Hlc::new(MAX_PHYSICAL_MS, 0)));
    }

    #[test]
    #[should_panic(expected = "bound_window_ms")]
    fn tiny_window_is_a_config_bug() {
        let _ = HlcClock::recover(None, HlcConfig { max_offset_ms: 0, bound_window_ms: 1 });
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
        /// Crash; `landed` says whether an in-flight bound write reached the disk.
        Crash {
            landed: bool,
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
            1 => any::<bool>().prop_map(|landed| Op::Crash { landed }),
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
                    other => other,
                }
            });
            let cfg = HlcConfig { max_offset_ms: 60_000, bound_window_ms: window };
            let mut clock = HlcClock::recover(None, cfg);
            let mut on_disk: Option<u64> = None;
            let mut in_flight: Option<u64> = None;
            let mut last_issued = Hlc::ZERO;
            for op in ops {
                match op {
                    Op::Now(w) => {
                        if let Ok(ts) = clock.now(w) {
                            prop_assert!(ts > last_issued, "{ts} after {last_issued}");
                            prop_assert!(ts.physical_ms() < clock.durable_bound_ms());
                            prop_assert!(on_disk.is_some_and(|b| ts.physical_ms() < b));
                            last_issued = ts;
                        }
                    }
                    Op::Observe(w, delta, logical) => {
                        let phys = w.min(MAX_PHYSICAL_MS).saturating_add_signed(delta)
                            .min(MAX_PHYSICAL_MS);
                        let _ = clock.observe(w, Hlc::new(phys, logical));
                    }
                    Op::AskBound(w) => {
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
                    Op::Crash { landed } => {
                        if let Some(b) = in_flight.take().filter(|_| landed) {
                            on_disk = Some(b);
                        }
                        clock = HlcClock::recover(on_disk, cfg);
                    }
                }
            }
            // Liveness: unless at the end of time, one persisted bound lets the clock issue.
            if clock.last().physical_ms() < MAX_PHYSICAL_MS - 1 {
                if in_flight.is_some() {
                    clock.bound_persist_failed();
                }
                let ts = issue(&mut clock, 0);
                prop_assert!(ts > last_issued);
            }
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
                (0..n).map(|_| HlcClock::recover(None, CFG)).collect();
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

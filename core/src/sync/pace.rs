//! `LinkPace`: what a sender measures of its link from its acknowledgements, and the two
//! things it sizes from that: the window of bytes in flight, and how long a gap it has
//! just filled stays reported by answers that were already on their way.
//!
//! **Window.** A fixed window of `sync.window_bytes_max` (1 MiB of records) is many
//! seconds of a slow link: over satellite (100 KB/s) the messages queue for longer than the
//! retransmit timeout, so a sender times out on messages still queued, and its resends
//! queue behind them in turn. The window is sized instead to twice the link's
//! bandwidth-delay product, measured as the largest delivery rate of the last two periods
//! (bytes acknowledged between a message's sending and its acknowledgement, over that
//! time) times the smallest delay from sending to acknowledgement since the sender
//! started (the link's own delay, before any queue built up). Twice, so that a window
//! that limits the rate doubles each round until the link does; within
//! [`WINDOW_MIN`] and `sync.window_bytes_max`; the maximum until the first measurement.
//! All sizes are of records (uncompressed), as the window counts them.
//!
//! **Messages.** A message carries at most half the window (one bandwidth-delay
//! product): several fit in it, and none waits in the link's queue behind the others for
//! longer than the window takes to drain.
//!
//! **Gap guard.** After a sender fills a gap again, the peer's answers to messages sent
//! before still report it for about one acknowledgement delay: twice the smoothed delay,
//! at least [`GAP_GUARD_MIN`], at most [`GAP_GUARD_MAX`].
//!
//! Pure integer arithmetic on the times the node is given: deterministic.

use crate::types::{Duration, Instant};

/// The smallest window: a few batches of small records, whatever the link measured.
pub const WINDOW_MIN: u64 = 64 << 10;
/// The shortest guard against repeated reports of one gap.
pub const GAP_GUARD_MIN: Duration = Duration::from_secs(1);
/// The longest guard: a report still repeated after this is a new loss.
pub const GAP_GUARD_MAX: Duration = Duration::from_secs(30);
/// How long one period of the delivery-rate filter lasts; the filter keeps two.
const RATE_PERIOD: Duration = Duration::from_secs(10);

/// What a message carried when it was sent, for its acknowledgement's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentMark {
    pub at: Instant,
    /// [`LinkPace::delivered`] when it was sent.
    pub delivered: u64,
}

/// A sender's use of its link and its measurements of it (one per sender: one peer, one
/// link).
#[derive(Clone, Debug)]
pub struct LinkPace {
    /// Bytes of records sent and not yet acknowledged, all streams together: what the
    /// window bounds (the sender adds what it sends and takes off what is acknowledged
    /// or will be sent again).
    pub in_flight: u64,
    /// Bytes of records acknowledged since the sender started.
    delivered: u64,
    /// Largest delivery rate (bytes/s) of the current period and of the one before.
    rate_max: [u64; 2],
    /// When the current period started.
    period_start: Instant,
    /// Smallest delay from sending to acknowledgement (ns); 0 before the first.
    delay_min_ns: u64,
    /// Smoothed (1/8) delay from sending to acknowledgement (ns); 0 before the first.
    delay_smoothed_ns: u64,
}

impl LinkPace {
    pub fn new(now: Instant) -> LinkPace {
        LinkPace {
            in_flight: 0,
            delivered: 0,
            rate_max: [0; 2],
            period_start: now,
            delay_min_ns: 0,
            delay_smoothed_ns: 0,
        }
    }

    /// The mark of a message sent now.
    pub fn mark(&self, now: Instant) -> SentMark {
        SentMark { at: now, delivered: self.delivered }
    }

    /// A message of `bytes` of records was acknowledged.
    pub fn acked(&mut self, bytes: u64) {
        self.in_flight -= bytes;
        self.delivered += bytes;
    }

    /// The newest message an acknowledgement completed was sent with `mark` (and sent
    /// once: a resent message's acknowledgement may answer either copy). Call after
    /// [`acked`](Self::acked) has counted what it completed.
    pub fn sample(&mut self, mark: SentMark, now: Instant) {
        let delay = now.saturating_since(mark.at).as_nanos();
        if delay == 0 {
            return;
        }
        self.delay_min_ns = if self.delay_min_ns == 0 { delay } else { self.delay_min_ns.min(delay) };
        self.delay_smoothed_ns = if self.delay_smoothed_ns == 0 {
            delay
        } else {
            self.delay_smoothed_ns - self.delay_smoothed_ns / 8 + delay / 8
        };
        let bytes = self.delivered.saturating_sub(mark.delivered);
        let rate = (u128::from(bytes) * 1_000_000_000 / u128::from(delay)).min(u128::from(u64::MAX)) as u64;
        if now.saturating_since(self.period_start) >= RATE_PERIOD {
            self.rate_max = [0, self.rate_max[0]];
            self.period_start = now;
        }
        self.rate_max[0] = self.rate_max[0].max(rate);
    }

    /// The bytes of records the sender may have in flight: twice the measured
    /// bandwidth-delay product within [`WINDOW_MIN`] and `max`; `max` before a measurement.
    pub fn window(&self, max: u64) -> u64 {
        let rate = self.rate_max[0].max(self.rate_max[1]);
        if rate == 0 || self.delay_min_ns == 0 {
            return max;
        }
        let bdp = u128::from(rate) * u128::from(self.delay_min_ns) / 1_000_000_000;
        (2 * bdp).clamp(u128::from(WINDOW_MIN.min(max)), u128::from(max)) as u64
    }

    /// The bytes of records one message may carry: half the window (one bandwidth-delay
    /// product), at least half of [`WINDOW_MIN`], at most `batch_max`. A message larger
    /// than the window queues behind the other streams' for longer than the retransmit
    /// timeout on a slow link, and is sent again whole while still on its way
    /// (offshore-relay seed 1: a relay's 573 alarms in one message, every 8 s).
    pub fn message_max(&self, batch_max: u64, window_max: u64) -> u64 {
        (self.window(window_max) / 2).max(WINDOW_MIN / 2).min(batch_max)
    }

    /// How long after filling a gap its repeated reports are taken as answers to what
    /// was sent before.
    pub fn gap_guard(&self) -> Duration {
        Duration(self.delay_smoothed_ns.saturating_mul(2)).max(GAP_GUARD_MIN).min(GAP_GUARD_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant(ms * 1_000_000)
    }

    /// A message of `bytes` sent at `sent_ms` and acknowledged at `acked_ms`.
    fn round(p: &mut LinkPace, bytes: u64, sent_ms: u64, acked_ms: u64) {
        let m = p.mark(at(sent_ms));
        p.in_flight += bytes;
        p.acked(bytes);
        p.sample(m, at(acked_ms));
    }

    #[test]
    fn the_window_is_twice_the_rate_times_the_smallest_delay_within_its_bounds() {
        let mut p = LinkPace::new(at(0));
        assert_eq!(p.window(1 << 20), 1 << 20, "the maximum until measured");
        // 100 KB acknowledged 1 s after it was sent: 100 KB/s, 1 s.
        round(&mut p, 100_000, 0, 1_000);
        assert_eq!(p.window(1 << 20), 200_000);
        // A queue builds: later messages take 3 s. The delay measured is the smallest.
        round(&mut p, 300_000, 1_000, 4_000);
        assert_eq!(p.window(1 << 20), 200_000, "100 KB/s over 1 s, not the queue's 3 s");
        assert_eq!(p.window(150_000), 150_000);
        assert_eq!(p.in_flight, 0);
        // A slow spell for long enough: the rate of two periods ago is forgotten.
        for s in [15_000, 26_000] {
            round(&mut p, 1_000, s - 1_000, s);
        }
        assert_eq!(p.window(1 << 20), WINDOW_MIN);
    }

    #[test]
    fn a_message_carries_at_most_half_the_window_within_its_bounds() {
        let mut p = LinkPace::new(at(0));
        assert_eq!(p.message_max(256 << 10, 1 << 20), 256 << 10, "a batch until measured");
        round(&mut p, 100_000, 0, 1_000);
        assert_eq!(p.window(1 << 20), 200_000);
        assert_eq!(p.message_max(256 << 10, 1 << 20), 100_000, "one bandwidth-delay product");
        assert_eq!(p.message_max(50_000, 1 << 20), 50_000, "never more than a batch");
        assert_eq!(p.message_max(256 << 10, 64 << 10), WINDOW_MIN / 2, "never less than half the smallest window");
    }

    #[test]
    fn the_gap_guard_follows_the_smoothed_delay_within_its_bounds() {
        let mut p = LinkPace::new(at(0));
        assert_eq!(p.gap_guard(), GAP_GUARD_MIN);
        round(&mut p, 1, 0, 2_000);
        assert_eq!(p.gap_guard(), Duration::from_secs(4));
        for i in 0..100 {
            round(&mut p, 1, 10_000 * i, 10_000 * i + 20);
        }
        assert_eq!(p.gap_guard(), GAP_GUARD_MIN, "a fast link: the floor");
        round(&mut p, 1, 0, 3_600_000);
        assert_eq!(p.gap_guard(), GAP_GUARD_MAX);
    }
}

//! A token bucket: the per-link upload bandwidth limit.

use crate::types::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_bytes_per_sec: u64,
    burst_bytes: u64,
    tokens: u64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(rate_bytes_per_sec: u64, burst_bytes: u64, now: Instant) -> TokenBucket {
        assert!(rate_bytes_per_sec > 0 && burst_bytes > 0);
        TokenBucket { rate_bytes_per_sec, burst_bytes, tokens: burst_bytes, refilled_at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_since(self.refilled_at).as_nanos();
        let add = (u128::from(elapsed) * u128::from(self.rate_bytes_per_sec) / 1_000_000_000) as u64;
        if add > 0 {
            self.tokens = (self.tokens + add).min(self.burst_bytes);
            // Advance only by the time the whole tokens account for, so no rate is lost to rounding.
            let used_ns = (u128::from(add) * 1_000_000_000 / u128::from(self.rate_bytes_per_sec)) as u64;
            self.refilled_at = Instant(self.refilled_at.0 + used_ns.min(elapsed));
        }
    }

    /// Takes `bytes` tokens if available. A message larger than the burst may go once the
    /// bucket is full, so a single large batch can never wait forever.
    pub fn try_take(&mut self, bytes: u64, now: Instant) -> bool {
        self.refill(now);
        let need = bytes.min(self.burst_bytes);
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }

    /// When `bytes` tokens will be available.
    pub fn ready_at(&self, bytes: u64) -> Instant {
        let need = bytes.min(self.burst_bytes).saturating_sub(self.tokens);
        let ns = (u128::from(need) * 1_000_000_000).div_ceil(u128::from(self.rate_bytes_per_sec)) as u64;
        self.refilled_at.saturating_add(Duration(ns.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_honoured_over_time() {
        let mut b = TokenBucket::new(1000, 500, Instant(0));
        let mut now = Instant(0);
        let mut sent = 0u64;
        while now < Instant::from_secs(10) {
            if b.try_take(100, now) {
                sent += 100;
            } else {
                now = b.ready_at(100);
            }
        }
        // 500 burst + 10 s × 1000 B/s, within one message.
        assert!((10_400..=10_600).contains(&sent), "sent {sent}");
    }

    #[test]
    fn oversized_message_goes_when_bucket_full() {
        let mut b = TokenBucket::new(10, 100, Instant(0));
        assert!(b.try_take(1000, Instant(0)));
        assert!(!b.try_take(1000, Instant(0)));
        let at = b.ready_at(1000);
        assert!(b.try_take(1000, at));
    }
}

//! The bounds both shells keep on what the outside world can make them hold (engineering
//! rule 2): connections, queues, frames and how long a peer may take.

use std::time::Duration;

/// Frames queued to one peer at most; more are dropped (the sync protocol resends).
pub const PEER_SEND_QUEUE: usize = 256;
/// Requests one binary-protocol connection may have unanswered.
pub const BINARY_IN_FLIGHT_MAX: usize = 1024;
/// Open application connections (HTTP and binary, each) at most; more are refused.
pub const API_CONNECTIONS_MAX: usize = 256;
/// Edges connected to a gateway at most.
pub const PEER_CONNECTIONS_MAX: usize = 4096;
/// How long a peer has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send the rest of a request it started.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A keep-alive connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A peer that sends nothing for this long is taken as gone (the sync protocol talks far
/// more often: retransmits, Hellos, acks).
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest HTTP body accepted: a batch of records.
pub const HTTP_BODY_MAX: usize = 8 << 20;
/// Reconnect backoff to the gateway.
pub const RECONNECT_MIN: Duration = Duration::from_millis(200);
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// The largest sync frame an edge accepts from its gateway, and a gateway from an edge.
pub fn peer_frame_max(cfg: &outpost_core::config::NodeConfig) -> usize {
    let batch = (cfg.sync.batch_bytes_max as usize).max(cfg.gateway.batch_raw_bytes_max as usize);
    batch.max(1 << 20) + (64 << 10)
}

/// The delay before reconnect attempt `failures` (1 = after the first failure): doubling
/// from [`RECONNECT_MIN`] to [`RECONNECT_MAX`], plus up to a quarter more drawn from
/// `salt`, so that a fleet cut off together does not reconnect in step.
pub fn reconnect_delay(failures: u64, salt: u64) -> Duration {
    let base = RECONNECT_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(RECONNECT_MAX);
    let spread = base.as_nanos() as u64 / 4 + 1;
    let mut x = salt ^ failures.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    base + Duration::from_nanos((x ^ (x >> 29)) % spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_doubles_to_its_cap_with_bounded_jitter() {
        let mut last = Duration::ZERO;
        for f in 1..20 {
            let d = reconnect_delay(f, 7);
            let base = RECONNECT_MIN.saturating_mul(1 << (f - 1).min(16)).min(RECONNECT_MAX);
            assert!(d >= base && d <= base + base / 4, "attempt {f}: {d:?} for base {base:?}");
            assert!(d + base / 4 >= last, "never much shorter than the previous one");
            last = d;
        }
        assert!(reconnect_delay(50, 7) <= RECONNECT_MAX + RECONNECT_MAX / 4);
        assert_ne!(reconnect_delay(3, 1), reconnect_delay(3, 2), "different devices, different delays");
    }
}

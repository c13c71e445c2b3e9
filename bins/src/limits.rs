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

/// A link to the gateway that lasted this long resets the backoff to [`RECONNECT_MIN`]; a
/// shorter one does not. Longer than the longest wait with its jitter (37.5 s), so that two
/// edges that keep replacing each other at the gateway (a duplicated name) stay slow.
pub const LINK_STABLE: Duration = Duration::from_secs(60);
/// How long an accept loop waits after an error that is not one connection's (out of file
/// descriptors, usually: the listener stays ready, so retrying at once would spin a core).
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Commands queued to the tokio shell's node task at most; senders wait beyond it.
pub const COMMAND_QUEUE: usize = 1024;

/// Up to a quarter of `backoff`, different for each edge (`seed` comes from its name) and
/// each attempt. Not the process id: every container's daemon is pid 1, and identical
/// images booted by systemd tend to give it the same pid, so a fleet would stay in step.
pub fn jitter(seed: u64, attempt: u64, backoff: Duration) -> Duration {
    // splitmix64's finaliser: a well-spread value from (seed, attempt).
    let mut x = seed ^ attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let jitter = Duration::from_nanos(x % (backoff.as_nanos() as u64 / 4 + 1));
    debug_assert!(jitter <= backoff / 4);
    jitter
}

/// The reconnect schedule of an edge's link to its gateway, the same in both shells: a
/// doubling backoff from [`RECONNECT_MIN`] to [`RECONNECT_MAX`], plus [`jitter`]. Only a
/// link that lasted [`LINK_STABLE`] starts it over: a gateway that welcomes the edge and
/// drops it at once is retried ever more slowly, as one that cannot be reached is.
#[derive(Clone, Debug)]
pub struct Backoff {
    wait: Duration,
    seed: u64,
    attempts: u64,
}

impl Backoff {
    /// For the edge named `name` (its jitter follows from the name).
    pub fn new(name: &str) -> Backoff {
        Backoff { wait: RECONNECT_MIN, seed: crate::config::node_id_of(name).0, attempts: 0 }
    }

    /// An attempt to connect starts.
    pub fn attempt(&mut self) {
        self.attempts += 1;
    }

    /// A link that was up for `lasted` ended.
    pub fn link_lasted(&mut self, lasted: Duration) {
        if lasted >= LINK_STABLE {
            self.wait = RECONNECT_MIN;
        }
    }

    /// How long to wait before the next attempt; the backoff doubles.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.wait + jitter(self.seed, self.attempts, self.wait);
        self.wait = (self.wait * 2).min(RECONNECT_MAX);
        wait
    }
}

/// What a shell may hold outside the core's accounting, sized from the process budget
/// `resources.max_memory`; the core is given the rest ([`ShellBudget::core_memory`]), so
/// that the two together stay within it.
///
/// The shell's buffers, and their bounds:
/// - per application connection: a request head (≤ [`http::HEADER_BYTES_MAX`]), one read
///   chunk, answers waiting to be written (a connection's next request is not read while
///   more than `write_buffer_max` waits), one fetch answer (`max_bytes` is capped at
///   `fetch_bytes_max`, plus one record of at most `codec::MAX_VALUE_BYTES`), and the
///   acknowledgements of its requests in flight (≤ [`BINARY_IN_FLIGHT_MAX`] × 32 B);
/// - request bodies and frames (from applications, and from edges on a gateway), reserved
///   whole from one shared `ingress_bytes_max` before they are read, and released once the
///   core holds them (it accounts them from there);
/// - frames to peers: the sync window, which the core accounts (`sync_window`).
///
/// [`http::HEADER_BYTES_MAX`]: crate::http::HEADER_BYTES_MAX
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShellBudget {
    /// Application connections (HTTP and binary together) at most.
    pub connections_max: usize,
    pub ingress_bytes_max: usize,
    pub write_buffer_max: usize,
    pub fetch_bytes_max: u32,
    /// The largest HTTP body: within the ingress budget.
    pub http_body_max: usize,
    /// The largest binary-protocol request frame: a largest value and key, and its head.
    pub request_frame_max: usize,
    /// The bytes all of the above may take at most.
    pub reserve: u64,
}

/// A read from a socket takes at most this at a time.
pub const READ_CHUNK: usize = 16 << 10;
const ACK_ANSWER_BYTES: usize = 32;
/// A request frame's fields around its key and value (kind, id, topic, lengths).
const REQUEST_HEAD_BYTES: usize = 512;

impl ShellBudget {
    /// The shell's share of a process budget of `memory` when values are at most
    /// `value_max` bytes.
    pub fn new(memory: u64, value_max: u32) -> ShellBudget {
        let value_max = value_max as usize;
        let key_max = outpost_core::codec::MAX_KEY_BYTES;
        let connections_max = ((memory >> 23) as usize).clamp(2, API_CONNECTIONS_MAX);
        let request_frame_max = (4 + value_max + key_max + REQUEST_HEAD_BYTES).min(crate::binproto::REQUEST_FRAME_MAX);
        let ingress_bytes_max = ((memory / 16) as usize).clamp(2 * request_frame_max, 64 << 20);
        let write_buffer_max = 64 << 10;
        let fetch_bytes_max = 256 << 10;
        let fetch_answer = fetch_bytes_max + value_max + key_max;
        let per_connection = crate::http::HEADER_BYTES_MAX
            + READ_CHUNK
            + write_buffer_max
            + fetch_answer
            + BINARY_IN_FLIGHT_MAX * ACK_ANSWER_BYTES;
        ShellBudget {
            connections_max,
            ingress_bytes_max,
            write_buffer_max,
            fetch_bytes_max: fetch_bytes_max as u32,
            http_body_max: HTTP_BODY_MAX.min(ingress_bytes_max),
            request_frame_max,
            reserve: (connections_max * per_connection + ingress_bytes_max) as u64,
        }
    }

    /// The largest value `fit_to_budgets` gives a budget of `memory` (it scales values
    /// with memory): the bound the shell is sized for before the file's own limits apply.
    pub fn fitted_value_max(memory: u64) -> u32 {
        (memory / 80).clamp(4 << 10, outpost_core::codec::MAX_VALUE_BYTES as u64) as u32
    }

    /// What the core is given of a process budget of `memory`.
    pub fn core_memory(&self, memory: u64) -> u64 {
        memory.saturating_sub(self.reserve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_takes_a_bounded_share_of_the_process_budget() {
        for (mib, conns) in [(8u64, 2usize), (16, 2), (64, 8), (256, 32), (4096, 256)] {
            let memory = mib << 20;
            let b = ShellBudget::new(memory, ShellBudget::fitted_value_max(memory));
            assert_eq!(b.connections_max, conns, "{mib} MiB");
            assert!(b.http_body_max <= b.ingress_bytes_max);
            assert!(b.ingress_bytes_max >= 2 * b.request_frame_max, "two largest frames fit at once");
            assert!(b.reserve * 4 <= memory, "{mib} MiB: the shell takes {} of it", b.reserve);
        }
        let small = ShellBudget::new(8 << 20, 100 << 10);
        let large = ShellBudget::new(8 << 20, 1 << 20);
        assert!(large.reserve > small.reserve && large.request_frame_max > small.request_frame_max);
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_and_only_a_stable_link_starts_it_over() {
        let mut b = Backoff::new("edge-1");
        let mut base = RECONNECT_MIN;
        for _ in 0..12 {
            b.attempt();
            let w = b.next_wait();
            assert!(w >= base && w <= base + base / 4, "{w:?} for {base:?}");
            base = (base * 2).min(RECONNECT_MAX);
        }
        b.link_lasted(LINK_STABLE - Duration::from_secs(1));
        b.attempt();
        assert!(b.next_wait() >= RECONNECT_MAX, "a short link keeps the backoff");
        b.link_lasted(LINK_STABLE);
        b.attempt();
        assert!(b.next_wait() <= RECONNECT_MIN + RECONNECT_MIN / 4, "a stable link starts it over");
    }
}

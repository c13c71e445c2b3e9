//! The bounds both shells keep on what the outside world can make them hold (engineering
//! rule 2): connections, queues, frames and how long a peer may take.

use std::time::Duration;

/// Frames queued to one peer at most; more are dropped (the sync protocol resends).
pub const PEER_SEND_QUEUE: usize = 256;
/// Records one binary-protocol connection may have unanswered: a Produce or a Fetch
/// counts one, a ProduceBatch each of its records (what its answer holds a result for).
pub const BINARY_IN_FLIGHT_MAX: usize = 1024;
const _: () = assert!(crate::binproto::PRODUCE_BATCH_RECORDS_MAX <= BINARY_IN_FLIGHT_MAX, "a batch always fits");
/// Connections one application listener (HTTP or binary) admits at most, whatever the
/// memory budget; fewer on small budgets ([`ShellBudget`]).
pub const API_CONNECTIONS_MAX: usize = 256;
/// Connections the gateway's listener for edges admits at most (handshaking or linked).
pub const PEER_CONNECTIONS_MAX: usize = 4096;
/// How long a peer has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request for this long is closed. (A request that has
/// started runs on [`crate::guard::RequestClock`]'s deadline instead.)
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a request waits for room in the ingress budget before it is answered "busy".
pub const BUDGET_WAIT: Duration = Duration::from_secs(2);
/// After an answer that closes the connection, how long (and how many bytes) of what the
/// client is still sending are read and dropped, so that the answer is not lost to a reset
/// (a "lingering close", as HTTP servers do).
pub const LINGER: Duration = Duration::from_secs(2);
pub const LINGER_BYTES_MAX: usize = 16 << 20;
/// A peer that sends nothing for this long is taken as gone (the sync protocol talks far
/// more often: retransmits, Hellos, acks).
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the gateway waits to take a frame from an edge into its ingress budget before
/// it drops the frame (the sync protocol resends), so that one link never waits behind others.
pub const PEER_FRAME_WAIT: Duration = Duration::from_secs(5);
/// The largest HTTP body accepted: a batch of records.
pub const HTTP_BODY_MAX: usize = 8 << 20;
/// The largest frame an edge accepts from its gateway: the gateway sends it control frames
/// only (welcome, acks, resets, skips).
pub const CONTROL_FRAME_MAX: usize = 64 << 10;

/// The largest sync frame a node accepts from a peer: a gateway, the largest batch an
/// edge may send; an edge, [`CONTROL_FRAME_MAX`].
pub fn peer_frame_max(cfg: &outpost_core::config::NodeConfig) -> usize {
    if cfg.role == outpost_core::config::Role::Edge {
        return CONTROL_FRAME_MAX;
    }
    let batch = (cfg.sync.batch_bytes_max as usize).max(cfg.gateway.batch_raw_bytes_max as usize);
    batch.max(1 << 20) + (64 << 10)
}

/// A link to the gateway that lasted this long (or twice the longest wait, if more) resets
/// the backoff to its start; a shorter one does not. Longer than the longest default wait
/// with its jitter (37.5 s), so that two edges that keep replacing each other at the gateway
/// (a duplicated name) stay slow.
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
/// doubling backoff from `sync.backoff_min` to `sync.backoff_max` (the config file's), plus
/// [`jitter`]. Only a link that lasted [`LINK_STABLE`] (or twice the longest wait) starts it
/// over: a gateway that welcomes the edge and drops it at once is retried ever more slowly,
/// as one that cannot be reached is.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    wait: Duration,
    seed: u64,
    attempts: u64,
}

impl Backoff {
    /// For the edge named `name` (its jitter follows from the name), waiting `min` at first
    /// and at most `max` (plus jitter).
    pub fn new(name: &str, min: Duration, max: Duration) -> Backoff {
        assert!(!min.is_zero() && min <= max, "the config loader checks 0 < backoff_min <= backoff_max");
        Backoff { min, max, wait: min, seed: crate::config::node_id_of(name).0, attempts: 0 }
    }

    /// The schedule `sync` asks for (`sync.backoff_min`, `sync.backoff_max`).
    pub fn from_config(name: &str, sync: &outpost_core::config::SyncConfig) -> Backoff {
        let d = |d: outpost_core::types::Duration| Duration::from_nanos(d.0);
        Backoff::new(name, d(sync.backoff_min), d(sync.backoff_max))
    }

    /// An attempt to connect starts.
    pub fn attempt(&mut self) {
        self.attempts += 1;
    }

    /// A link that was up for `lasted` ended.
    pub fn link_lasted(&mut self, lasted: Duration) {
        if lasted >= LINK_STABLE.max(self.max * 2) {
            self.wait = self.min;
        }
    }

    /// How long to wait before the next attempt; the backoff doubles.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.wait + jitter(self.seed, self.attempts, self.wait);
        self.wait = (self.wait * 2).min(self.max);
        wait
    }
}

/// What a shell may hold outside the core's accounting, sized from the process budget
/// `resources.max_memory`; the core is given the rest ([`ShellBudget::core_memory`]), so
/// that the two together stay within it.
///
/// The shell's buffers, and their bounds:
/// - per application connection, on each of the two listeners (`http_connections_max`,
///   `binary_connections_max`): a request head (≤ [`http::HEADER_BYTES_MAX`]), one read
///   chunk, answers waiting to be written (a connection's next request is not read while
///   more than `write_buffer_max` waits), and on a binary connection the acknowledgements
///   or results of its records in flight (≤ [`BINARY_IN_FLIGHT_MAX`] × 32 B);
/// - fetch answers (`max_bytes` is capped at `fetch_bytes_max`, plus one record of at most
///   `codec::MAX_VALUE_BYTES`), at most `fetch_answers_max` at once over all connections;
/// - request bodies and frames from applications, reserved whole from `ingress_bytes_max`
///   before they are read and released once the core holds them (it accounts them from
///   there); every request the listeners accept fits it whole, so none waits for ever;
/// - frames from peers (edges on a gateway, the gateway on an edge), reserved the same way
///   from a budget of their own, `peer_ingress_bytes_max`, so that applications and the
///   gateway link never wait for each other;
/// - frames to peers: the sync window, which the core accounts (`sync_window`).
///
/// [`http::HEADER_BYTES_MAX`]: crate::http::HEADER_BYTES_MAX
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShellBudget {
    /// Connections each application listener (HTTP, binary) admits at most.
    pub http_connections_max: usize,
    pub binary_connections_max: usize,
    pub ingress_bytes_max: usize,
    pub peer_ingress_bytes_max: usize,
    pub write_buffer_max: usize,
    pub fetch_bytes_max: u32,
    /// Fetch answers the shell holds at once, over all connections.
    pub fetch_answers_max: usize,
    /// The largest HTTP body: its request, head included, fits the ingress budget whole.
    pub http_body_max: usize,
    /// The largest binary-protocol request frame: a largest value and key, and its head.
    pub request_frame_max: usize,
    /// One custom merge at a time (`Merge::call_bytes_max` of the largest).
    pub merge_bytes: u64,
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
    /// `value_max` bytes and peers send frames of at most `peer_frame_max` bytes.
    pub fn new(memory: u64, value_max: u32, peer_frame_max: usize) -> ShellBudget {
        let value_max = value_max as usize;
        let key_max = outpost_core::codec::MAX_KEY_BYTES;
        let connections_max = ((memory >> 22) as usize).clamp(4, API_CONNECTIONS_MAX);
        let request_frame_max = (4 + value_max + key_max + REQUEST_HEAD_BYTES).min(crate::binproto::REQUEST_FRAME_MAX);
        let head_max = crate::http::HEADER_BYTES_MAX;
        let ingress_bytes_max = ((memory / 16) as usize).clamp(2 * request_frame_max.max(head_max), 64 << 20);
        // A gateway takes batches from many edges at once; an edge only control frames.
        let peer_ingress_bytes_max = if peer_frame_max > CONTROL_FRAME_MAX {
            ((memory / 16) as usize).clamp(2 * peer_frame_max, (64 << 20).max(2 * peer_frame_max))
        } else {
            2 * peer_frame_max
        };
        let write_buffer_max = 64 << 10;
        let fetch_bytes_max = if memory < 16 << 20 { 128 << 10 } else { 256 << 10 };
        let fetch_answers_max = ((memory >> 24) as usize).clamp(1, 16);
        let fetch_answer = fetch_bytes_max + value_max + key_max;
        let per_http = head_max + READ_CHUNK + write_buffer_max;
        let per_binary = READ_CHUNK + write_buffer_max + BINARY_IN_FLIGHT_MAX * ACK_ANSWER_BYTES;
        let reserve = connections_max * (per_http + per_binary)
            + fetch_answers_max * fetch_answer
            + ingress_bytes_max
            + peer_ingress_bytes_max;
        let http_body_max = HTTP_BODY_MAX.min(ingress_bytes_max - head_max);
        debug_assert!(http_body_max + head_max <= ingress_bytes_max, "every accepted request fits the budget");
        ShellBudget {
            http_connections_max: connections_max,
            binary_connections_max: connections_max,
            ingress_bytes_max,
            peer_ingress_bytes_max,
            write_buffer_max,
            fetch_bytes_max: fetch_bytes_max as u32,
            fetch_answers_max,
            http_body_max,
            request_frame_max,
            merge_bytes: 0,
            reserve: reserve as u64,
        }
    }

    /// The same budget with room for the largest call of the custom merges of `cfg`'s
    /// topics: the node's thread runs one at a time, when a key is read.
    pub fn with_merges(mut self, cfg: &outpost_core::config::NodeConfig) -> ShellBudget {
        let merges = cfg.topics.iter().filter_map(|t| t.keyed.as_ref()?.merge.as_ref());
        self.merge_bytes = merges.map(|m| m.0.call_bytes_max()).max().unwrap_or(0);
        self.reserve += self.merge_bytes;
        self
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
        let frame = CONTROL_FRAME_MAX;
        for (mib, conns) in [(8u64, 4usize), (16, 4), (64, 16), (256, 64), (4096, 256)] {
            let memory = mib << 20;
            let b = ShellBudget::new(memory, ShellBudget::fitted_value_max(memory), frame);
            assert_eq!((b.http_connections_max, b.binary_connections_max), (conns, conns), "{mib} MiB");
            assert!(b.http_body_max + crate::http::HEADER_BYTES_MAX <= b.ingress_bytes_max, "a whole request fits");
            assert!(b.ingress_bytes_max >= 2 * b.request_frame_max, "two largest frames fit at once");
            assert!(b.peer_ingress_bytes_max >= 2 * frame);
            assert!(b.reserve * 4 <= memory, "{mib} MiB: the shell takes {} of it", b.reserve);
        }
        let small = ShellBudget::new(8 << 20, 100 << 10, frame);
        let large = ShellBudget::new(8 << 20, 1 << 20, frame);
        assert!(large.reserve > small.reserve && large.request_frame_max > small.request_frame_max);
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_and_only_a_stable_link_starts_it_over() {
        let (min, max) = (Duration::from_millis(200), Duration::from_secs(30));
        let mut b = Backoff::new("edge-1", min, max);
        let mut base = min;
        for _ in 0..12 {
            b.attempt();
            let w = b.next_wait();
            assert!(w >= base && w <= base + base / 4, "{w:?} for {base:?}");
            base = (base * 2).min(max);
        }
        b.link_lasted(LINK_STABLE - Duration::from_secs(1));
        b.attempt();
        assert!(b.next_wait() >= max, "a short link keeps the backoff");
        b.link_lasted(LINK_STABLE);
        b.attempt();
        assert!(b.next_wait() <= min + min / 4, "a stable link starts it over");
    }

    #[test]
    fn the_backoff_follows_the_configured_bounds() {
        let mut b = Backoff::new("edge-1", Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..10)
            .map(|_| {
                b.attempt();
                b.next_wait()
            })
            .collect();
        assert!(waits[0] >= Duration::from_millis(100) && waits[0] <= Duration::from_millis(125));
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(1250)), "{waits:?}");
        assert!(waits[9] >= Duration::from_secs(1), "it reaches the cap");
    }
}

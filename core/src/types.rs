//! The small value types every part of the core shares: node and stream identity, and time.

use std::fmt;

/// A node's identity, stable across restarts. The origin of every record it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Index of a topic in the node's configuration (`NodeConfig::topics`).
///
/// Topics are addressed by index inside the core and by name on the wire, so a
/// configuration that reorders topics never confuses two streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicIdx(pub u16);

/// Sequence number of a record inside its origin stream. Dense: 0, 1, 2, …
pub type Seq = u64;

/// The identity of a record: which node wrote it, into which topic, at which sequence.
/// The gateway and every replica hold each identity at most once (guarantee 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    pub origin: NodeId,
    pub topic: TopicIdx,
    pub seq: Seq,
}

/// Monotonic time handed to the core by its driver, in nanoseconds since an arbitrary
/// epoch (the process start in the shells, zero in the simulator). Never goes backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    pub const fn from_secs(s: u64) -> Instant {
        Instant(s * 1_000_000_000)
    }
    pub const fn from_millis(ms: u64) -> Instant {
        Instant(ms * 1_000_000)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
    pub fn saturating_sub_duration(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d.0))
    }
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

/// A span of time in nanoseconds. Our own type so that config, core and simulator
/// agree on one unit and one overflow behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub u64);

impl Duration {
    pub const ZERO: Duration = Duration(0);
    pub const fn from_secs(s: u64) -> Duration {
        Duration(s * 1_000_000_000)
    }
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(ms * 1_000_000)
    }
    pub const fn from_micros(us: u64) -> Duration {
        Duration(us * 1_000)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// What the driver knows of time at one call: the monotonic instant (for timers) and the
/// node's wall clock in milliseconds since the Unix epoch (for the HLC). The wall clock
/// may jump in either direction and may start at zero on a device without an RTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall_ms: u64,
}

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

/// A byte count for people: `1.0 GiB`, `512 KiB`, `17 B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

/// Why text is not a byte count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BytesParseError {
    /// Not a whole number with one of the units [`Bytes::parse`] accepts.
    Malformed,
    /// More than `u64::MAX` bytes.
    TooLarge,
}

impl Bytes {
    /// Parses a size as people write it in config and scenario files: a whole number with
    /// an optional unit, `B`, `KB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`,
    /// `TiB` (powers of 1024), with or without a space: `"64MiB"`, `"256 KiB"`, `"1000"`.
    /// One definition of the units for every file format.
    pub fn parse(text: &str) -> Result<u64, BytesParseError> {
        let text = text.trim();
        let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let number: u64 = text[..digits_end].parse().map_err(|_| BytesParseError::Malformed)?;
        let unit: u64 = match text[digits_end..].trim_start() {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(BytesParseError::Malformed),
        };
        number.checked_mul(unit).ok_or(BytesParseError::TooLarge)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < UNITS.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[u])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_every_unit_and_refuse_the_rest() {
        assert_eq!(Bytes::parse("1000"), Ok(1000));
        assert_eq!(Bytes::parse(" 64 MiB "), Ok(64 << 20));
        assert_eq!(Bytes::parse("256KiB"), Ok(256 << 10));
        assert_eq!(Bytes::parse("5MB"), Ok(5_000_000));
        assert_eq!(Bytes::parse("2TiB"), Ok(2 << 40));
        assert_eq!(Bytes::parse("0B"), Ok(0));
        for bad in ["", "MiB", "1.5MiB", "-1", "64 mib", "64 MiBs", "1 PiB"] {
            assert_eq!(Bytes::parse(bad), Err(BytesParseError::Malformed), "{bad:?}");
        }
        assert_eq!(Bytes::parse("20000000 TiB"), Err(BytesParseError::TooLarge));
    }

    #[test]
    fn bytes_print_for_people() {
        assert_eq!(Bytes(17).to_string(), "17 B");
        assert_eq!(Bytes(1 << 30).to_string(), "1.0 GiB");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
    }
}

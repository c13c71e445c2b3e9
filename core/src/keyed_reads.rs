//! Reads of keyed topics that state their consistency (docs/KEYED.md, "Reads"):
//!
//! * `eventual`: the node's state as it is.
//! * `causal`: the read carries a [`SessionToken`], what its session wrote and observed
//!   (per origin, the highest sequence); the node answers only once its state holds all of
//!   it, else it says what is missing ([`ReadRefused::NotYet`]). The answer's token adds
//!   what this node holds, so the next read of the session, at any node, sees at least as
//!   much.
//! * `bounded`: the answer carries its staleness, from the newest write merged of each
//!   origin ([`Observed`]), and is refused rather than exceed the bound asked for.
//!
//! Both rest on one fact the log guarantees: a node receives each origin's writes of a
//! topic in sequence order, exactly once (guarantees 2 and 3; the top gateway copies an
//! edge's writes in that order too, `keyed_fanout`). So the newest merged write of an
//! origin says every earlier one of that origin is merged: by sequence (causal), and,
//! since an origin's timestamps only grow (guarantee 6), by timestamp (bounded).
//!
//! Pure: the time a read is made at comes in as a value.

use crate::codec::{put_varint, ReadError, Reader};
use crate::hlc::Hlc;
use crate::keyed::{Dot, VersionVector};
use crate::types::{NodeId, Seq};
use std::fmt;

/// Origins a node keeps the newest merged write of, per keyed topic; a topic written by
/// more has no causal or bounded reads ([`ReadRefused::Incomplete`]). Also the most
/// entries a session token carries.
pub const OBSERVED_ORIGINS_MAX: usize = 1024;

/// What one origin's entry costs in memory (origin, sequence, timestamp).
const OBSERVED_ENTRY_BYTES: u64 = 24;

/// A session token's format version.
const TOKEN_VERSION: u8 = 1;

/// Per origin, the newest write of a keyed topic this node merged: its sequence and
/// timestamp. Sorted by origin; at most [`OBSERVED_ORIGINS_MAX`] entries, beyond which
/// it stops answering for the topic (`overflowed`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    newest: Vec<(NodeId, Seq, Hlc)>,
    overflowed: bool,
}

impl Observed {
    /// Notes a write merged (or found merged already) into the topic's state.
    pub fn note(&mut self, dot: Dot, hlc: Hlc) {
        match self.newest.binary_search_by_key(&dot.origin, |&(o, _, _)| o) {
            Ok(i) => {
                let (_, seq, at) = &mut self.newest[i];
                // An origin's writes come in order; one merged again (a replica's records
                // received again after a fault) is older, and changes nothing. (Its
                // timestamps grow with its sequence; bytes from a peer are not trusted to.)
                if dot.seq > *seq {
                    (*seq, *at) = (dot.seq, (*at).max(hlc));
                }
            }
            Err(_) if self.newest.len() >= OBSERVED_ORIGINS_MAX => self.overflowed = true,
            Err(i) => self.newest.insert(i, (dot.origin, dot.seq, hlc)),
        }
    }

    /// The newest merged write of `origin`.
    pub fn of(&self, origin: NodeId) -> Option<(Seq, Hlc)> {
        let i = self.newest.binary_search_by_key(&origin, |&(o, _, _)| o).ok()?;
        Some((self.newest[i].1, self.newest[i].2))
    }

    /// The entries of a token that this node has not merged yet (empty: it holds it all).
    pub fn missing(&self, token: &SessionToken) -> Vec<Dot> {
        token.entries().filter(|d| self.of(d.origin).is_none_or(|(seq, _)| seq < d.seq)).collect()
    }

    /// How stale a read made now (`as_of_ms`) at node `own` is: over every other origin
    /// (the node's own writes are merged as they are acknowledged), the most time since
    /// the last millisecond of which all its writes are surely merged: the one before its
    /// newest merged write's, as the origin's next write may share that millisecond (found
    /// by the simulator's staleness checker). `None` when it has merged nothing of any other
    /// node: a node that never heard from anyone cannot say how stale it is.
    pub fn staleness_ms(&self, own: NodeId, as_of_ms: u64) -> Option<u64> {
        let others = self.newest.iter().filter(|&&(o, _, _)| o != own);
        others.map(|&(_, _, at)| (as_of_ms + 1).saturating_sub(at.physical_ms())).max()
    }

    /// A token of everything this node holds.
    pub fn token(&self, topic: &str) -> SessionToken {
        let seen = self.newest.iter().map(|&(origin, seq, _)| Dot { origin, seq }).collect();
        SessionToken { topic: topic_tag(topic), seen }
    }

    /// Whether it stopped answering: more origins than it keeps.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The entries, for a checkpoint.
    pub fn entries(&self) -> &[(NodeId, Seq, Hlc)] {
        &self.newest
    }

    /// From a checkpoint's entries: sorted by origin, at most the limit, else `None`.
    pub fn from_entries(newest: Vec<(NodeId, Seq, Hlc)>, overflowed: bool) -> Option<Observed> {
        let sorted = newest.windows(2).all(|p| p[0].0 < p[1].0);
        (sorted && newest.len() <= OBSERVED_ORIGINS_MAX).then_some(Observed { newest, overflowed })
    }

    /// Heap held (a vector grown by inserts holds at most twice its length).
    pub fn bytes(&self) -> u64 {
        2 * OBSERVED_ENTRY_BYTES * self.newest.len() as u64
    }

    /// The most it holds.
    pub const fn planned_bytes() -> u64 {
        2 * OBSERVED_ENTRY_BYTES * OBSERVED_ORIGINS_MAX as u64
    }
}

/// A tag of a topic's name in its tokens (CRC-32C), so a token of another topic is
/// refused rather than read as this one's.
fn topic_tag(topic: &str) -> u32 {
    crc32c::crc32c(topic.as_bytes())
}

/// What a session wrote and observed of one keyed topic: per origin, the highest
/// sequence. A client keeps it between reads and writes, at any node of the site or the
/// fleet; it carries no secret (sequences and node ids).
///
/// ```text
/// version u8 (1), topic tag u32 LE (CRC-32C of the name),
/// n varint (<= 1024), n × (origin varint, seq varint), origins increasing
/// ```
/// As text (HTTP, the CLI): the bytes in lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionToken {
    topic: u32,
    /// At most [`OBSERVED_ORIGINS_MAX`] origins.
    seen: VersionVector,
}

/// Why a token's bytes are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    Truncated(ReadError),
    Version(u8),
    /// Not hex (text form).
    NotHex,
    TooManyEntries(u64),
    /// Origins not strictly increasing.
    OutOfOrder,
    TrailingBytes,
    /// A token of another topic.
    OtherTopic,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Truncated(e) => write!(f, "session token truncated: {e}"),
            TokenError::Version(v) => write!(f, "session token version {v}; this build reads {TOKEN_VERSION}"),
            TokenError::NotHex => write!(f, "a session token is lowercase hex, as a previous answer gave it"),
            TokenError::TooManyEntries(n) => {
                write!(f, "session token with {n} origins; at most {OBSERVED_ORIGINS_MAX}")
            }
            TokenError::OutOfOrder => write!(f, "session token's origins are not in increasing order"),
            TokenError::TrailingBytes => write!(f, "bytes after the session token"),
            TokenError::OtherTopic => {
                write!(f, "the session token is of another topic: keep one token per topic")
            }
        }
    }
}

impl std::error::Error for TokenError {}

impl SessionToken {
    /// A session that has seen nothing of `topic` yet.
    pub fn new(topic: &str) -> SessionToken {
        SessionToken { topic: topic_tag(topic), seen: VersionVector::new() }
    }

    /// The session made (and was acknowledged) write `dot`; `false` (and unchanged) when
    /// that would be more origins than a token holds ([`OBSERVED_ORIGINS_MAX`]).
    pub fn add(&mut self, dot: Dot) -> bool {
        let fits = self.seen.len() < OBSERVED_ORIGINS_MAX || self.seen.get(dot.origin).is_some();
        if fits {
            self.seen.add(dot);
        }
        fits
    }

    /// The union of two tokens of one topic; `false` (and unchanged) when it would hold
    /// more origins than a token holds.
    pub fn merge(&mut self, other: &SessionToken) -> bool {
        debug_assert_eq!(self.topic, other.topic, "tokens of one topic");
        let new = other.seen.iter().filter(|d| self.seen.get(d.origin).is_none()).count();
        let fits = self.seen.len() + new <= OBSERVED_ORIGINS_MAX;
        if fits {
            self.seen.merge(&other.seen);
        }
        fits
    }

    /// The highest sequence of each origin it holds, in origin order.
    pub fn entries(&self) -> impl Iterator<Item = Dot> + '_ {
        self.seen.iter()
    }

    /// Whether it is a token of `topic`.
    pub fn is_of(&self, topic: &str) -> bool {
        self.topic == topic_tag(topic)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(TOKEN_VERSION);
        out.extend_from_slice(&self.topic.to_le_bytes());
        put_varint(out, self.seen.len() as u64);
        for d in self.seen.iter() {
            put_varint(out, d.origin.0);
            put_varint(out, d.seq);
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<SessionToken, TokenError> {
        let mut r = Reader::new(bytes);
        match r.u8().map_err(TokenError::Truncated)? {
            TOKEN_VERSION => {}
            v => return Err(TokenError::Version(v)),
        }
        let topic = r.u32().map_err(TokenError::Truncated)?;
        let n = r.varint().map_err(TokenError::Truncated)?;
        if n > OBSERVED_ORIGINS_MAX as u64 {
            return Err(TokenError::TooManyEntries(n));
        }
        let mut entries: Vec<(NodeId, Seq)> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let origin = NodeId(r.varint().map_err(TokenError::Truncated)?);
            entries.push((origin, r.varint().map_err(TokenError::Truncated)?));
        }
        if !r.is_empty() {
            return Err(TokenError::TrailingBytes);
        }
        let seen = VersionVector::from_sorted(entries).ok_or(TokenError::OutOfOrder)?;
        Ok(SessionToken { topic, seen })
    }

    /// The token as text: its bytes in lowercase hex.
    pub fn to_text(&self) -> String {
        let mut bytes = Vec::new();
        self.encode(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A token of `topic` from its text.
    pub fn from_text(topic: &str, text: &str) -> Result<SessionToken, TokenError> {
        SessionToken::decode_of(topic, &bytes_of_text(text)?)
    }

    /// A token of `topic` from its bytes.
    pub fn decode_of(topic: &str, bytes: &[u8]) -> Result<SessionToken, TokenError> {
        let token = SessionToken::decode(bytes)?;
        if !token.is_of(topic) {
            return Err(TokenError::OtherTopic);
        }
        Ok(token)
    }
}

/// The bytes of a token's text (lowercase hex, no longer than the largest token's).
pub fn bytes_of_text(text: &str) -> Result<Vec<u8>, TokenError> {
    let t = text.as_bytes();
    if t.len() % 2 != 0 || t.len() > 2 * TOKEN_BYTES_MAX {
        return Err(TokenError::NotHex);
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes: Option<Vec<u8>> = t.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect();
    bytes.ok_or(TokenError::NotHex)
}

/// The largest token's bytes: head, count, and every entry's two longest varints.
pub const TOKEN_BYTES_MAX: usize = 5 + 10 + 20 * OBSERVED_ORIGINS_MAX;

/// The consistency a read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency<'t> {
    /// The node's state as it is.
    Eventual,
    /// At least what the session wrote and observed.
    Causal(&'t SessionToken),
    /// No staler than this.
    Bounded { staleness_max_ms: u64 },
}

/// What a read that states its consistency answers besides the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadStamp {
    /// What the session holds after this read (the token it came with, and everything
    /// this node holds): pass it to the next read of the session.
    pub token: SessionToken,
    /// The node's time the read was made at (its clock, never behind a timestamp it saw).
    pub as_of_ms: u64,
    /// Every write of every other origin this node merged anything of, made (timestamped)
    /// at or before `as_of_ms - staleness_ms` and acknowledged, is in the answer. `None`:
    /// nothing of any other node merged yet.
    pub staleness_ms: Option<u64>,
}

/// Why a read is not answered at the consistency asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadRefused {
    /// Causal: this node has not merged these writes of the session yet (ask again later,
    /// or at another node).
    NotYet { missing: Vec<Dot> },
    /// Bounded: the answer would be staler than asked (`staleness_ms: None`, nothing of
    /// any other node merged yet).
    TooStale { staleness_ms: Option<u64>, bound_ms: u64 },
    /// The state cannot vouch for what it holds: a write it had no room for
    /// (`keyed_state_max`), more origins than it keeps ([`OBSERVED_ORIGINS_MAX`]), or a
    /// checkpoint that did not load (rebuilt from the segments kept).
    Incomplete(&'static str),
    /// The token is of another topic.
    OtherTopic,
}

impl fmt::Display for ReadRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadRefused::NotYet { missing } => {
                write!(f, "not yet: this node has not merged {} of the session's writes yet (", missing.len())?;
                for (i, d) in missing.iter().take(4).enumerate() {
                    write!(f, "{}node {} up to {}", if i > 0 { ", " } else { "" }, d.origin, d.seq)?;
                }
                let more = missing.len().saturating_sub(4);
                if more > 0 {
                    write!(f, ", {more} more")?;
                }
                write!(f, "); ask again later or at the node the session last used")
            }
            ReadRefused::TooStale { staleness_ms: Some(s), bound_ms } => write!(
                f,
                "too stale: this node's newest state of some origin is {s} ms old, more than the {bound_ms} ms \
                 asked for; read where that origin's writes arrive sooner, or allow more staleness"
            ),
            ReadRefused::TooStale { staleness_ms: None, .. } => write!(
                f,
                "too stale: this node has merged nothing of any other node yet, so it cannot bound its staleness"
            ),
            ReadRefused::Incomplete(why) => write!(f, "this node cannot vouch for its state of the topic: {why}"),
            ReadRefused::OtherTopic => write!(f, "the session token is of another topic: keep one token per topic"),
        }
    }
}

impl std::error::Error for ReadRefused {}

/// Why a strong (linearizable) read is not answered (`Input::StrongRead`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrongReadRefused {
    /// The topic is not a strong keyed topic of this node's site.
    NotStrong,
    /// The node is still recovering.
    Recovering,
    /// Only the site's leader answers strong reads: ask it (`None`: an election is on).
    NotLeader { leader: Option<NodeId> },
    /// The leader was just elected and has not committed an entry of its term yet: ask
    /// again shortly.
    NotReady,
    /// Too many strong reads wait for the leader's confirmation (`raft.pending_reads_max`).
    Busy,
    /// This member stopped leading before a majority confirmed the read: ask the new
    /// leader.
    LeadershipLost,
    /// The state cannot vouch for what it holds (see [`ReadRefused::Incomplete`]).
    Incomplete(&'static str),
}

impl fmt::Display for StrongReadRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrongReadRefused::NotStrong => {
                write!(f, "strong reads are of topics with consistency \"strong\" and a conflict strategy")
            }
            StrongReadRefused::Recovering => write!(f, "the node is still recovering; ask again shortly"),
            StrongReadRefused::NotLeader { leader: Some(l) } => {
                write!(f, "only the site's leader answers strong reads: ask node {l}")
            }
            StrongReadRefused::NotLeader { leader: None } => {
                write!(f, "only the site's leader answers strong reads, and an election is in progress")
            }
            StrongReadRefused::NotReady => {
                write!(f, "the leader was just elected and has not committed in its term yet; ask again shortly")
            }
            StrongReadRefused::Busy => write!(f, "too many strong reads wait for the leader's confirmation"),
            StrongReadRefused::LeadershipLost => {
                write!(f, "this member stopped leading before the read was confirmed; ask the new leader")
            }
            StrongReadRefused::Incomplete(why) => {
                write!(f, "this node cannot vouch for its state of the topic: {why}")
            }
        }
    }
}

impl std::error::Error for StrongReadRefused {}

/// Decides a read at node `own` made at `as_of_ms`, over the topic's `observed` writes;
/// `incomplete`: why the state cannot vouch for what it holds, if so.
pub fn decide(
    topic: &str,
    observed: &Observed,
    incomplete: Option<&'static str>,
    own: NodeId,
    as_of_ms: u64,
    read: ReadConsistency<'_>,
) -> Result<ReadStamp, ReadRefused> {
    let with = match read {
        ReadConsistency::Causal(t) => Some(t),
        _ => None,
    };
    if with.is_some_and(|t| !t.is_of(topic)) {
        return Err(ReadRefused::OtherTopic);
    }
    let mut token = observed.token(topic);
    let fits = with.is_none_or(|w| token.merge(w));
    let incomplete = incomplete
        .or(observed
            .overflowed()
            .then_some("more origins write the topic than a node keeps the newest write of (1,024)"))
        .or((!fits).then_some("the session has seen more origins than a token holds (1,024)"));
    let stamp = ReadStamp {
        token,
        as_of_ms,
        // A state that cannot vouch for what it holds states no staleness.
        staleness_ms: observed.staleness_ms(own, as_of_ms).filter(|_| incomplete.is_none()),
    };
    match (read, incomplete) {
        (ReadConsistency::Eventual, _) => return Ok(stamp),
        (_, Some(why)) => return Err(ReadRefused::Incomplete(why)),
        (_, None) => {}
    }
    match read {
        ReadConsistency::Eventual => Ok(stamp),
        ReadConsistency::Causal(t) => match observed.missing(t) {
            missing if missing.is_empty() => Ok(stamp),
            missing => Err(ReadRefused::NotYet { missing }),
        },
        ReadConsistency::Bounded { staleness_max_ms } => match stamp.staleness_ms {
            Some(s) if s <= staleness_max_ms => Ok(stamp),
            staleness_ms => Err(ReadRefused::TooStale { staleness_ms, bound_ms: staleness_max_ms }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(o: u64, s: Seq) -> Dot {
        Dot { origin: NodeId(o), seq: s }
    }

    fn at(ms: u64) -> Hlc {
        Hlc::new(ms, 0)
    }

    #[test]
    fn a_causal_read_waits_for_every_write_of_its_session() {
        let mut seen = Observed::default();
        seen.note(dot(1, 4), at(100));
        let mut session = SessionToken::new("prices");
        session.add(dot(1, 4));
        session.add(dot(2, 0));
        let read = ReadConsistency::Causal(&session);
        assert_eq!(
            decide("prices", &seen, None, NodeId(1), 500, read),
            Err(ReadRefused::NotYet { missing: vec![dot(2, 0)] }),
            "node 2's write is not here"
        );
        seen.note(dot(2, 3), at(200));
        let stamp = decide("prices", &seen, None, NodeId(1), 500, read).expect("everything the session saw");
        assert_eq!(stamp.token.entries().collect::<Vec<_>>(), vec![dot(1, 4), dot(2, 3)], "and what this node holds");
        let other = SessionToken::new("stock");
        assert_eq!(
            decide("prices", &seen, None, NodeId(1), 500, ReadConsistency::Causal(&other)),
            Err(ReadRefused::OtherTopic)
        );
        assert!(matches!(
            decide("prices", &seen, Some("full"), NodeId(1), 500, read),
            Err(ReadRefused::Incomplete("full"))
        ));
    }

    #[test]
    fn staleness_is_the_oldest_newest_write_of_the_other_origins() {
        let mut seen = Observed::default();
        let bounded = |ms| ReadConsistency::Bounded { staleness_max_ms: ms };
        seen.note(dot(1, 0), at(50));
        assert_eq!(
            decide("t", &seen, None, NodeId(1), 1_000, bounded(10_000)),
            Err(ReadRefused::TooStale { staleness_ms: None, bound_ms: 10_000 }),
            "its own writes say nothing of the others'"
        );
        seen.note(dot(2, 7), at(400));
        seen.note(dot(3, 1), at(900));
        seen.note(dot(2, 6), at(300));
        assert_eq!(seen.of(NodeId(2)), Some((7, at(400))), "a write merged again changes nothing");
        // Node 2's next write may share the millisecond 400 of its newest here.
        assert_eq!(decide("t", &seen, None, NodeId(1), 1_000, bounded(601)).map(|s| s.staleness_ms), Ok(Some(601)));
        assert_eq!(
            decide("t", &seen, None, NodeId(1), 1_000, bounded(600)),
            Err(ReadRefused::TooStale { staleness_ms: Some(601), bound_ms: 600 })
        );
        assert_eq!(seen.staleness_ms(NodeId(1), 100), Some(0), "a clock behind a peer's is not negative staleness");
        assert_eq!(seen.staleness_ms(NodeId(1), 900), Some(501));
    }

    #[test]
    fn past_its_origins_limit_a_topic_refuses_reads_that_need_them() {
        let mut seen = Observed::default();
        for o in 0..=OBSERVED_ORIGINS_MAX as u64 {
            seen.note(dot(o + 10, 0), at(1));
        }
        assert!(seen.overflowed() && seen.bytes() <= Observed::planned_bytes());
        let t = SessionToken::new("t");
        assert!(matches!(
            decide("t", &seen, None, NodeId(1), 5, ReadConsistency::Causal(&t)),
            Err(ReadRefused::Incomplete(_))
        ));
        assert!(decide("t", &seen, None, NodeId(1), 5, ReadConsistency::Eventual).is_ok());

        // A token holds as many origins as a node keeps, no more: a session that saw more
        // (a node's 600 and its own 600 others) has no causal read.
        let mut full = SessionToken::new("t");
        assert!((0..OBSERVED_ORIGINS_MAX as u64).all(|o| full.add(dot(o + 10, 0))));
        assert!(!full.add(dot(5_000, 0)) && full.add(dot(10, 7)), "a new origin does not fit, a known one does");
        let (mut half, mut other) = (Observed::default(), SessionToken::new("t"));
        for o in 0..600 {
            half.note(dot(o, 0), at(1));
            assert!(other.add(dot(o + 600, 0)));
        }
        assert!(matches!(
            decide("t", &half, None, NodeId(1), 5, ReadConsistency::Causal(&other)),
            Err(ReadRefused::Incomplete(_))
        ));
    }

    #[test]
    fn a_token_round_trips_as_bytes_and_text_and_hostile_ones_are_refused() {
        let mut t = SessionToken::new("prices");
        t.add(dot(3, 9));
        t.add(dot(1, 1 << 40));
        let text = t.to_text();
        assert_eq!(SessionToken::from_text("prices", &text), Ok(t.clone()));
        assert_eq!(SessionToken::from_text("stock", &text), Err(TokenError::OtherTopic));
        assert_eq!(SessionToken::from_text("prices", "0G"), Err(TokenError::NotHex));
        assert_eq!(SessionToken::from_text("prices", &text.to_uppercase()), Err(TokenError::NotHex));
        let mut bytes = Vec::new();
        t.encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(SessionToken::decode(&bytes[..cut]).is_err(), "torn at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(SessionToken::decode(&longer), Err(TokenError::TrailingBytes));
        let mut disorder = bytes[..5].to_vec();
        disorder.extend_from_slice(&[2, 3, 0, 1, 0]);
        assert_eq!(SessionToken::decode(&disorder), Err(TokenError::OutOfOrder));
        let mut many = bytes[..5].to_vec();
        put_varint(&mut many, OBSERVED_ORIGINS_MAX as u64 + 1);
        assert_eq!(SessionToken::decode(&many), Err(TokenError::TooManyEntries(OBSERVED_ORIGINS_MAX as u64 + 1)));
        let mut version = bytes;
        version[0] = 2;
        assert_eq!(SessionToken::decode(&version), Err(TokenError::Version(2)));
    }
}

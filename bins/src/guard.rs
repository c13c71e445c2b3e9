//! What the shells do against clients that are slow, greedy or hostile, as plain state
//! machines that both shells drive and unit tests drive with made-up time (issue 15's
//! defects 1, 3 and 10): which connection a listener admits and which it drops to make room
//! ([`ConnTable`]), by when a request must have arrived ([`RequestClock`]), the shared byte
//! budget request bodies are read into ([`Budget`]), and how fast a source address may
//! fail to authenticate at the gateway ([`AuthThrottle`]).
//!
//! Time comes in as a value (a `std::time::Instant` the shell read), so nothing here waits
//! or reads a clock.
#![allow(clippy::disallowed_types)] // The shells' time is std::time::Instant; it is only passed in.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A request must keep arriving at this average rate once [`REQUEST_GRACE`] has passed: a
/// local client sends far faster; a client that trickles bytes to hold a connection or
/// body budget does not. (Apache's mod_reqtimeout and nginx's client timeouts do the same.)
pub const REQUEST_MIN_RATE_BYTES_PER_SEC: u64 = 64 << 10;
/// How long any request may take before the minimum rate applies.
pub const REQUEST_GRACE: Duration = Duration::from_secs(5);
/// A request's rate is measured over at least this long (its first bytes came "at once").
const RATE_WINDOW_MIN: Duration = Duration::from_millis(10);

/// The deadline of one request (head and body, or one binary frame), counted from its first
/// byte: [`REQUEST_GRACE`] plus the time its bytes so far take at the minimum rate. A client
/// that sends nothing has the grace; one that sends fast earns time for the rest; one that
/// trickles runs out — however often a byte arrives (an idle timer reset by each byte never
/// would).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestClock {
    started: Instant,
    received: u64,
}

impl RequestClock {
    /// The first bytes of a request (`n` of them) arrived at `now`.
    pub fn start(now: Instant, n: usize) -> RequestClock {
        RequestClock { started: now, received: n as u64 }
    }

    /// `n` more bytes of the request arrived.
    pub fn received(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// When the request is late if it is not whole by then.
    pub fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / REQUEST_MIN_RATE_BYTES_PER_SEC as f64);
        self.started + REQUEST_GRACE + earned
    }

    pub fn started(&self) -> Instant {
        self.started
    }
}

/// A connection's id in a [`ConnTable`].
pub type ConnId = u64;

/// What a connection is doing, for the choice of which one to drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between requests (an HTTP keep-alive, a binary client with nothing in flight), since.
    Idle(Instant),
    /// Reading a request that started then, of which this many bytes came.
    Reading(Instant, u64),
    /// The node is answering it (or answers wait to be written): never dropped for room.
    Busy,
}

/// The connections of one listener, at most `max` of them. A new connection is admitted
/// while there is room; when there is none, the listener drops the connection that is least
/// useful to keep — of the requests arriving slower than
/// [`REQUEST_MIN_RATE_BYTES_PER_SEC`], the slowest; else the longest idle connection — and
/// admits the new one. A request arriving at a client's normal speed is never dropped, nor
/// is a connection whose request the node is answering, so when every connection is one of
/// those the newcomer is refused. So a few hundred clients that open connections and trickle
/// bytes — reconnecting as fast as they are dropped — cannot keep an application out: each
/// newcomer takes the place of the slowest of them.
#[derive(Debug)]
pub struct ConnTable<H> {
    max: usize,
    next_id: ConnId,
    conns: BTreeMap<ConnId, (Phase, H)>,
    evicted: u64,
    refused: u64,
}

/// The answer to a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<H> {
    /// Admitted as `id`; `evicted`: the connection dropped to make room (close it).
    Yes { id: ConnId, evicted: Option<(ConnId, H)> },
    /// Every connection is busy: refuse this one.
    No,
}

impl<H> ConnTable<H> {
    pub fn new(max: usize) -> ConnTable<H> {
        assert!(max > 0, "a listener admits at least one connection");
        ConnTable { max, next_id: 0, conns: BTreeMap::new(), evicted: 0, refused: 0 }
    }

    /// A connection arrived at `now`; `handle` is what the shell needs to close it later.
    pub fn admit(&mut self, now: Instant, handle: H) -> Admit<H> {
        let mut evicted = None;
        if self.conns.len() >= self.max {
            let Some(victim) = self.victim(now) else {
                self.refused += 1;
                return Admit::No;
            };
            let (_, h) = self.conns.remove(&victim).expect("the victim is a connection");
            self.evicted += 1;
            evicted = Some((victim, h));
        }
        self.next_id += 1;
        let id = self.next_id;
        self.conns.insert(id, (Phase::Idle(now), handle));
        debug_assert!(self.conns.len() <= self.max);
        Admit::Yes { id, evicted }
    }

    /// The connection to drop for a newcomer: the slowest request arriving below the
    /// minimum rate (the earliest of equally slow ones), else the longest idle connection.
    fn victim(&self, now: Instant) -> Option<ConnId> {
        let slow = self
            .conns
            .iter()
            .filter_map(|(&id, (p, _))| match *p {
                Phase::Reading(since, received) => {
                    let window = now.saturating_duration_since(since).max(RATE_WINDOW_MIN);
                    // Bytes per second, in integers so that equal rates compare equal.
                    let rate = (received as u128 * 1_000_000 / window.as_micros().max(1)) as u64;
                    (rate < REQUEST_MIN_RATE_BYTES_PER_SEC).then_some((rate, since, id))
                }
                _ => None,
            })
            .min()
            .map(|(_, since, id)| (since, id));
        let idle = || {
            self.conns
                .iter()
                .filter_map(|(&id, (p, _))| match *p {
                    Phase::Idle(since) => Some((since, id)),
                    _ => None,
                })
                .min()
        };
        slow.or_else(idle).map(|(_, id)| id)
    }

    /// `n` bytes of a request on `id` arrived at `now` (the first ones start it).
    pub fn reading(&mut self, id: ConnId, now: Instant, n: usize) {
        if let Some((p, _)) = self.conns.get_mut(&id) {
            match p {
                Phase::Reading(_, received) => *received += n as u64,
                _ => *p = Phase::Reading(now, n as u64),
            }
        }
    }

    /// `id` is reading a request that started at `since`, of which `received` bytes came
    /// (for a shell that keeps the count itself).
    pub fn set_reading(&mut self, id: ConnId, since: Instant, received: u64) {
        if let Some((p, _)) = self.conns.get_mut(&id) {
            *p = Phase::Reading(since, received);
        }
    }

    /// `id`'s request is whole: the node answers it.
    pub fn busy(&mut self, id: ConnId) {
        if let Some((p, _)) = self.conns.get_mut(&id) {
            *p = Phase::Busy;
        }
    }

    /// `id` has nothing in flight and no request started, since `now`.
    pub fn idle(&mut self, id: ConnId, now: Instant) {
        if let Some((p, _)) = self.conns.get_mut(&id) {
            *p = Phase::Idle(now);
        }
    }

    /// `id`'s answers are all written; unless it has started reading its next request, it
    /// is idle since `now`.
    pub fn idle_unless_reading(&mut self, id: ConnId, now: Instant) {
        if let Some((p @ Phase::Busy, _)) = self.conns.get_mut(&id) {
            *p = Phase::Idle(now);
        }
    }

    /// `id` closed (or was dropped).
    pub fn remove(&mut self, id: ConnId) {
        self.conns.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections dropped to make room for newer ones.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Connections refused because every connection was busy.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

/// A budget of bytes shared by connections (request bodies and frames, read whole into
/// memory): a reservation is taken whole or not at all, so two half-read requests can
/// never each hold what the other needs. Unlike a fair semaphore, a reservation that does
/// not fit does not make smaller ones behind it wait: the shell decides how long one may
/// wait (and answers "busy" after that), so nothing queues behind a large request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    max: usize,
    used: usize,
}

impl Budget {
    pub fn new(max: usize) -> Budget {
        Budget { max, used: 0 }
    }

    /// Takes `n` bytes if they fit now.
    pub fn try_reserve(&mut self, n: usize) -> bool {
        if n > self.max - self.used {
            return false;
        }
        self.used += n;
        true
    }

    /// Whether `n` bytes could ever fit (a request larger than the whole budget is refused
    /// at once, never waited for).
    pub fn can_ever_hold(&self, n: usize) -> bool {
        n <= self.max
    }

    pub fn release(&mut self, n: usize) {
        assert!(n <= self.used, "released {n} bytes of {} reserved", self.used);
        self.used -= n;
    }

    pub fn used(&self) -> usize {
        self.used
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// Failed handshakes a source address may make in a burst before it is throttled.
pub const AUTH_FAILURES_BURST: u32 = 5;
/// After the burst, one more attempt per this interval.
pub const AUTH_FAILURE_REFILL: Duration = Duration::from_secs(2);
/// Source addresses remembered at most; the one whose last failure is oldest is forgotten.
pub const AUTH_ADDRESSES_MAX: usize = 4096;

/// How often each source address may fail to authenticate at the gateway: a burst of
/// [`AUTH_FAILURES_BURST`], then one per [`AUTH_FAILURE_REFILL`] (a token bucket per
/// address). While an address has no attempt left, its hellos are refused without their
/// token being looked at, so guessing gains nothing from speed. Successful handshakes cost
/// nothing.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    buckets: BTreeMap<IpAddr, AuthBucket>,
}

#[derive(Clone, Copy, Debug)]
struct AuthBucket {
    /// Attempts left, as of `at`.
    left: f64,
    at: Instant,
}

impl AuthBucket {
    fn refilled(self, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / AUTH_FAILURE_REFILL.as_secs_f64();
        (self.left + gained).min(f64::from(AUTH_FAILURES_BURST))
    }
}

impl AuthThrottle {
    /// `None` when `addr` may try now; otherwise how long until it may.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let b = self.buckets.get(&addr)?;
        let left = b.refilled(now);
        (left < 1.0).then(|| AUTH_FAILURE_REFILL.mul_f64(1.0 - left))
    }

    /// `addr` failed to authenticate at `now`.
    pub fn failed(&mut self, addr: IpAddr, now: Instant) {
        let burst = f64::from(AUTH_FAILURES_BURST);
        let left = self.buckets.get(&addr).map_or(burst, |b| b.refilled(now));
        if !self.buckets.contains_key(&addr) && self.buckets.len() >= AUTH_ADDRESSES_MAX {
            let oldest = self.buckets.iter().min_by_key(|(_, b)| b.at).map(|(a, _)| *a).expect("full, so not empty");
            self.buckets.remove(&oldest);
        }
        self.buckets.insert(addr, AuthBucket { left: (left - 1.0).max(0.0), at: now });
        debug_assert!(self.buckets.len() <= AUTH_ADDRESSES_MAX);
    }

    /// Addresses remembered (for tests and status).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn a_trickling_request_runs_out_of_time_however_often_a_byte_comes() {
        let start = t0();
        let mut c = RequestClock::start(start, 1);
        for _ in 0..3 {
            c.received(1);
        }
        assert!(c.deadline() < start + REQUEST_GRACE + Duration::from_millis(1), "4 bytes earn nothing");
        // A client sending 1 MiB fast earns the time that megabyte takes at the minimum rate.
        let mut fast = RequestClock::start(start, 1 << 20);
        assert_eq!(fast.deadline(), start + REQUEST_GRACE + Duration::from_secs(16));
        fast.received(1 << 20);
        assert_eq!(fast.deadline(), start + REQUEST_GRACE + Duration::from_secs(32));
    }

    #[test]
    fn a_full_listener_drops_its_slowest_request_for_a_newcomer_but_never_a_busy_or_fast_one() {
        let now = t0();
        let at = |ms: u64| now + Duration::from_millis(ms);
        let mut t = ConnTable::new(3);
        let ids: Vec<ConnId> = (0..3)
            .map(|i| match t.admit(now, i) {
                Admit::Yes { id, evicted: None } => id,
                other => panic!("room for three: {other:?}"),
            })
            .collect();
        t.busy(ids[0]);
        // A client sending its request fast, and one trickling a byte a second.
        t.reading(ids[1], now, 100_000);
        t.reading(ids[2], now, 1);
        t.reading(ids[2], at(1000), 1);
        match t.admit(at(1000), 9) {
            Admit::Yes { evicted: Some((victim, handle)), .. } => {
                assert_eq!((victim, handle), (ids[2], 2), "the trickle")
            }
            other => panic!("{other:?}"),
        }
        // A connection that reconnected a moment ago and trickles is as slow as any.
        let newest = t.conns.keys().copied().max().expect("admitted");
        t.reading(newest, at(1000), 1);
        match t.admit(at(1001), 10) {
            Admit::Yes { evicted: Some((victim, _)), .. } => assert_eq!(victim, newest),
            other => panic!("{other:?}"),
        }
        // Idle connections go when no request is slow; a fast request and a busy one never.
        let idle = t.conns.keys().copied().max().expect("admitted");
        match t.admit(at(1002), 11) {
            Admit::Yes { evicted: Some((victim, _)), .. } => assert_eq!(victim, idle, "the idle one"),
            other => panic!("{other:?}"),
        }
        let last = t.conns.keys().copied().max().expect("admitted");
        t.busy(last);
        assert_eq!(t.admit(at(1003), 12), Admit::No, "busy, fast and busy");
        assert_eq!((t.len(), t.evicted(), t.refused()), (3, 3, 1));
        t.remove(ids[0]);
        assert!(matches!(t.admit(at(1004), 13), Admit::Yes { evicted: None, .. }));
    }

    #[test]
    fn a_budget_is_taken_whole_or_not_at_all() {
        let mut b = Budget::new(100);
        assert!(b.try_reserve(60));
        assert!(!b.try_reserve(41), "41 more do not fit");
        assert!(b.try_reserve(40), "40 do: nothing queues behind the refused 41");
        assert!(b.can_ever_hold(100) && !b.can_ever_hold(101));
        b.release(60);
        assert_eq!(b.used(), 40);
    }

    #[test]
    fn guesses_from_one_address_are_throttled_after_a_burst_and_others_are_not() {
        let now = t0();
        let mut a = AuthThrottle::default();
        let guesser: IpAddr = "10.0.0.9".parse().unwrap();
        let edge: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..AUTH_FAILURES_BURST {
            assert_eq!(a.check(guesser, now), None);
            a.failed(guesser, now);
        }
        let wait = a.check(guesser, now).expect("throttled after the burst");
        assert!(wait <= AUTH_FAILURE_REFILL);
        assert_eq!(a.check(edge, now), None, "another address is not");
        assert_eq!(a.check(guesser, now + AUTH_FAILURE_REFILL), None, "one more attempt per refill");
        a.failed(guesser, now + AUTH_FAILURE_REFILL);
        assert!(a.check(guesser, now + AUTH_FAILURE_REFILL).is_some());
    }

    #[test]
    fn the_throttle_remembers_a_bounded_number_of_addresses() {
        let now = t0();
        let mut a = AuthThrottle::default();
        for i in 0..(AUTH_ADDRESSES_MAX as u32 + 10) {
            a.failed(IpAddr::from(i.to_be_bytes()), now + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(a.tracked(), AUTH_ADDRESSES_MAX);
        assert_eq!(a.check(IpAddr::from(0u32.to_be_bytes()), now), None, "the oldest was forgotten");
    }
}

//! The decisions of a link between two nodes, as plain state machines both shells drive
//! (the tokio shell from its tasks, edge-lite from its one loop): the edge's side of the
//! handshake ([`Dialing`]), the gateway's ([`GatewayAuth::answer`]), when to dial again
//! and what to log about it ([`Redial`]), and what the status reports of each peer
//! ([`PeerState`]). The bytes on the wire are [`crate::peer`]'s.
//!
//! Time comes in as a value (a `std::time::Instant` the shell read), so nothing here waits,
//! reads a clock or touches a socket: the unit tests below drive it with made-up time, and
//! `link_tests.rs` drives it through the tokio shell on turmoil's simulated network.
#![allow(clippy::disallowed_types)] // The shells' time is std::time::Instant; it is only passed in.

use crate::guard::AuthThrottle;
use crate::limits::Backoff;
use crate::peer::{self, PeerHello, Verdict};
use crate::status::PeerLink;
use rustls::pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The edge's side of the handshake: the hello to send, then the gateway's answer as it
/// arrives.
#[derive(Debug)]
pub struct Dialing {
    hello: Vec<u8>,
    answer: Vec<u8>,
}

impl Dialing {
    /// Refuses a hello its one-byte lengths cannot carry (the config loader refuses such a
    /// name or token first).
    pub fn new(hello: &PeerHello) -> Result<Dialing, String> {
        let mut bytes = Vec::new();
        peer::encode_hello(hello, &mut bytes).map_err(|e| format!("cannot say hello: {e}"))?;
        Ok(Dialing { hello: bytes, answer: Vec::new() })
    }

    /// The hello bytes to send first.
    pub fn hello(&self) -> &[u8] {
        &self.hello
    }

    /// Bytes of the answer still needed (0: it is whole).
    pub fn needs(&self) -> usize {
        peer::answer_needs(&self.answer)
    }

    /// Answer bytes arrived (at most [`Dialing::needs`] of them).
    pub fn received(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= self.needs(), "read past the answer");
        self.answer.extend_from_slice(bytes);
    }

    /// Once the answer is whole: the gateway's name if it welcomed this edge, otherwise
    /// why not, as the edge logs and reports it.
    pub fn outcome(&self) -> Option<Result<String, String>> {
        if self.needs() > 0 {
            return None;
        }
        Some(match peer::decode_answer(&self.answer) {
            Some((Verdict::Welcome, gw, _)) => Ok(gw),
            Some((_, gw, msg)) => Err(peer::refusal(&gw, &msg)),
            None => Err("the answer to the handshake is not an Outpost gateway's".into()),
        })
    }
}

/// When the edge dials its gateway again, and what it logs: loud at the first failure,
/// quiet after (an edge may be offline for days); the backoff of [`Backoff`], started over
/// only after a stable link.
#[derive(Debug)]
pub struct Redial {
    addr: String,
    /// The gateway's name in the edge's config (`cloud.gateway_name`).
    name: String,
    backoff: Backoff,
    failures: u64,
}

impl Redial {
    pub fn new(addr: &str, name: &str, backoff: Backoff) -> Redial {
        Redial { addr: addr.to_owned(), name: name.to_owned(), backoff, failures: 0 }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The gateway's name in the edge's config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A dial starts.
    pub fn attempt(&mut self) {
        self.backoff.attempt();
    }

    /// The handshake succeeded with the gateway that calls itself `answered`.
    pub fn connected(&mut self, answered: &str) {
        if answered != self.name {
            tracing::warn!(expected = %self.name, %answered, "the gateway's name differs from cloud.gateway_name");
        }
        tracing::info!(gateway = %self.addr, "connected to the gateway");
        self.failures = 0;
    }

    /// A dial failed: how long to wait before the next.
    pub fn failed(&mut self, error: &str) -> Duration {
        self.failures += 1;
        if self.failures == 1 {
            tracing::warn!(gateway = %self.addr, %error, "cannot reach the gateway; records stay queued, retrying");
        } else {
            tracing::debug!(gateway = %self.addr, %error, failures = self.failures, "cannot reach the gateway");
        }
        self.backoff.next_wait()
    }

    /// A link that was up for `lasted` ended: how long to wait before dialing again.
    pub fn lost(&mut self, why: &str, lasted: Duration) -> Duration {
        tracing::warn!(gateway = %self.addr, reason = %why, "link to the gateway lost; reconnecting");
        self.backoff.link_lasted(lasted);
        self.backoff.next_wait()
    }

    /// `outpost sync now` cut the wait short.
    pub fn dial_now(&self) {
        tracing::info!(gateway = %self.addr, "sync now: reconnecting at once");
    }
}

/// One peer as the status reports it: up or down since when, how often it came back, and
/// why it last failed while it is down.
#[derive(Clone, Debug)]
pub struct PeerState {
    pub name: String,
    pub addr: String,
    connected: bool,
    since: Instant,
    /// Connections after the first: a first connection after failed attempts is none.
    reconnects: u64,
    ever_connected: bool,
    last_error: Option<String>,
}

impl PeerState {
    pub fn new(name: String, addr: String, now: Instant) -> PeerState {
        PeerState { name, addr, connected: false, since: now, reconnects: 0, ever_connected: false, last_error: None }
    }

    /// How long it has been up (or down).
    pub fn for_time(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }

    /// The link came up.
    pub fn up(&mut self, now: Instant) {
        self.reconnects += u64::from(self.ever_connected);
        self.ever_connected = true;
        self.connected = true;
        self.last_error = None;
        self.since = now;
    }

    /// The link went down (`error`: why, if known).
    pub fn down(&mut self, now: Instant, error: Option<String>) {
        if self.connected {
            self.since = now;
        }
        self.connected = false;
        self.last_error = error;
    }

    /// A dial failed while the link was down.
    pub fn dial_failed(&mut self, error: String) {
        self.last_error = Some(error);
    }

    pub fn status(&self, now: Instant) -> PeerLink {
        PeerLink {
            name: self.name.clone(),
            addr: self.addr.clone(),
            connected: self.connected,
            for_secs: self.for_time(now).as_secs_f64(),
            reconnects: self.reconnects,
            last_error: self.last_error.clone(),
        }
    }
}

/// Who the gateway accepts (`gateway.tokens`, `gateway.open`), and the throttle on failed
/// attempts per source address.
#[derive(Debug)]
pub struct GatewayAuth {
    name: String,
    tokens: BTreeMap<String, String>,
    open: bool,
    throttle: AuthThrottle,
}

/// The gateway's answer to a hello: the bytes to send, and the edge's hello if it may link
/// (otherwise what the gateway logs).
#[derive(Debug)]
pub struct Answer {
    pub bytes: Vec<u8>,
    pub result: Result<PeerHello, String>,
}

impl GatewayAuth {
    pub fn new(name: &str, tokens: BTreeMap<String, String>, open: bool) -> GatewayAuth {
        GatewayAuth { name: name.to_owned(), tokens, open, throttle: AuthThrottle::default() }
    }

    /// Whether the bytes read so far can still become a hello: a peer that does not start
    /// with the magic is answered at once, without waiting for more.
    pub fn hello_needs(buf: &[u8]) -> usize {
        if buf.len() >= 8 && &buf[..8] != peer::HELLO_MAGIC {
            return 0;
        }
        peer::hello_needs(buf)
    }

    /// Replaces the tokens (a reload); links already up are checked with [`still_accepts`].
    ///
    /// [`still_accepts`]: GatewayAuth::still_accepts
    pub fn set_tokens(&mut self, tokens: BTreeMap<String, String>) {
        self.tokens = tokens;
    }

    /// Whether an edge linked by the token in `h` would still be accepted (after a reload).
    pub fn still_accepts(&self, h: &PeerHello) -> Result<(), String> {
        match self.tokens.get(&h.name) {
            Some(t) if peer::tokens_match(t, &h.token) => Ok(()),
            None if self.open => Ok(()),
            Some(_) => Err("its token was changed in gateway.tokens".to_owned()),
            None => Err("it is no longer in gateway.tokens".to_owned()),
        }
    }

    /// The answer to the hello `buf` (whole, or not a hello) from `from`. `certificate` is
    /// the one the edge proved over TLS, verified against the fleet CA: it, not a token,
    /// then authenticates the edge, for the name it was issued to only.
    pub fn answer(
        &mut self,
        buf: &[u8],
        from: IpAddr,
        now: Instant,
        certificate: Option<&CertificateDer<'_>>,
    ) -> Answer {
        let mut bytes = Vec::new();
        let hello = match peer::decode_hello(buf) {
            Ok(h) => h,
            Err(e) => {
                peer::encode_answer(Verdict::BadHello, &self.name, &e.to_string(), &mut bytes);
                return Answer { bytes, result: Err(format!("bad hello: {e}")) };
            }
        };
        match self.check(from, &hello, now, certificate) {
            Ok(()) => {
                peer::encode_answer(Verdict::Welcome, &self.name, "", &mut bytes);
                Answer { bytes, result: Ok(hello) }
            }
            Err((told, logged)) => {
                peer::encode_answer(Verdict::Unauthorized, &self.name, &told, &mut bytes);
                Answer { bytes, result: Err(logged) }
            }
        }
    }

    /// Whether the edge at `from` that says `h` may link. A refusal is `(what the edge is
    /// told, what the gateway logs)`: the edge is not told whether its name is known.
    fn check(
        &mut self,
        from: IpAddr,
        h: &PeerHello,
        now: Instant,
        certificate: Option<&CertificateDer<'_>>,
    ) -> Result<(), (String, String)> {
        // A certificate cannot be guessed: it is not throttled, so that a device shares no
        // fate with a guesser behind the same address.
        if let Some(cert) = certificate {
            if crate::tls::certificate_is_for(cert, &h.name) {
                return Ok(());
            }
            self.throttle.failed(from, now);
            return Err((
                "this certificate was issued for another node: it speaks for that name only".to_owned(),
                format!("edge {:?} refused: its certificate was issued for another name", h.name),
            ));
        }
        if let Some(wait) = self.throttle.check(from, now) {
            let told = format!(
                "too many failed attempts from {from}; retry in {} s (the token was not checked)",
                wait.as_secs().max(1)
            );
            return Err((told, format!("throttled: too many failed attempts from {from}")));
        }
        let verdict = match self.tokens.get(&h.name) {
            Some(t) if peer::tokens_match(t, &h.token) => Ok(()),
            None if self.tokens.is_empty() && !self.open => Err((
                "this gateway accepts no edge yet: it has no gateway.tokens; add a token for this edge there, or set \
                 gateway.open = true on a trusted network"
                    .to_owned(),
                format!("edge {:?} refused: gateway.tokens is empty and gateway.open is off", h.name),
            )),
            _ if h.token.is_empty() && !self.open => Err((
                "this edge sent no token: set cloud.token in its file to its entry in the gateway's gateway.tokens"
                    .to_owned(),
                format!("edge {:?} sent no token", h.name),
            )),
            Some(_) => Err((peer::UNAUTHORIZED.to_owned(), format!("wrong token for edge {:?}", h.name))),
            None if self.open => Ok(()),
            None => Err((peer::UNAUTHORIZED.to_owned(), format!("edge {:?} is not in gateway.tokens", h.name))),
        };
        if verdict.is_err() {
            self.throttle.failed(from, now);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(name: &str, token: &str) -> Vec<u8> {
        let mut b = Vec::new();
        peer::encode_hello(&PeerHello { name: name.into(), token: token.into() }, &mut b).expect("valid");
        b
    }

    /// Feeds `answer` to a dialing edge one byte at a time, as a slow link would.
    fn dial_with(answer: &[u8]) -> Result<String, String> {
        let mut d = Dialing::new(&PeerHello { name: "till-1".into(), token: "t".into() }).expect("valid hello");
        let mut at = 0;
        while d.outcome().is_none() {
            assert!(d.needs() > 0 && at < answer.len(), "the answer ended early");
            d.received(&answer[at..at + 1]);
            at += 1;
        }
        assert_eq!(at, answer.len(), "no byte past the answer is read");
        d.outcome().expect("whole")
    }

    #[test]
    fn a_dialing_edge_reads_exactly_the_answer_and_reports_refusals_by_the_gateways_name() {
        let mut gw = GatewayAuth::new("store-box", BTreeMap::from([("till-1".into(), "t".into())]), false);
        let ip: IpAddr = [10, 0, 0, 7].into();
        let now = Instant::now();
        let ok = gw.answer(&hello("till-1", "t"), ip, now, None);
        assert_eq!(ok.result.map(|h| h.name), Ok("till-1".to_owned()));
        assert_eq!(dial_with(&ok.bytes), Ok("store-box".to_owned()));
        let wrong = gw.answer(&hello("till-1", "x"), ip, now, None);
        assert_eq!(wrong.result, Err("wrong token for edge \"till-1\"".to_owned()));
        let told = dial_with(&wrong.bytes).expect_err("refused");
        assert!(told.contains("\"store-box\"") && told.contains("unauthorized"), "{told}");
        // An unknown name is told the same words as a wrong token.
        let unknown = gw.answer(&hello("intruder", "x"), ip, now, None);
        assert_eq!(dial_with(&unknown.bytes).expect_err("refused"), told);
        // A whole answer with a verdict no gateway sends.
        let not_outpost = [9, 0, 0, 0];
        assert_eq!(dial_with(&not_outpost), Err("the answer to the handshake is not an Outpost gateway's".into()));
    }

    #[test]
    fn the_gateway_refuses_what_is_not_a_hello_at_once_and_throttles_guessing() {
        assert_eq!(GatewayAuth::hello_needs(b"GET / HT"), 0, "not a hello: answered without reading more");
        assert!(GatewayAuth::hello_needs(b"OUTPOST1") > 0);
        let mut gw = GatewayAuth::new("gw", BTreeMap::from([("e".into(), "secret".into())]), false);
        let now = Instant::now();
        let bad = gw.answer(b"GET / HTTP/1.1\r\n", [10, 0, 0, 1].into(), now, None);
        assert!(bad.result.as_ref().is_err_and(|e| e.starts_with("bad hello")), "{:?}", bad.result);
        let ip: IpAddr = [10, 0, 0, 2].into();
        let refusals: Vec<String> = (0..40)
            .map(|i| gw.answer(&hello("e", &format!("guess{i}")), ip, now, None).result.expect_err("wrong"))
            .collect();
        assert!(refusals.iter().any(|e| e.starts_with("throttled")), "guessing is throttled: {refusals:?}");
        let right = gw.answer(&hello("e", "secret"), ip, now, None).result;
        assert!(right.is_err_and(|e| e.starts_with("throttled")), "a throttled address is not checked at all");
        let later = now + Duration::from_secs(3600);
        assert_eq!(gw.answer(&hello("e", "secret"), ip, later, None).result.map(|h| h.name), Ok("e".to_owned()));
        let open = GatewayAuth::new("gw", BTreeMap::new(), false).answer(&hello("e", ""), ip, now, None);
        assert!(open.result.is_err_and(|e| e.contains("gateway.tokens is empty")), "no tokens: no open mode");
    }

    #[test]
    fn redial_backs_off_and_starts_over_only_after_a_stable_link() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let mut r = Redial::new("gw:7000", "gw", Backoff::new("edge", min, max));
        let waits: Vec<Duration> = (0..8)
            .map(|_| {
                r.attempt();
                r.failed("refused")
            })
            .collect();
        assert!(waits[0] >= min && waits[0] < 2 * min, "{waits:?}");
        assert!(waits.windows(2).all(|w| w[1] >= w[0] || w[1] >= max), "doubles: {waits:?}");
        assert!(waits[7] >= max, "reaches the maximum: {waits:?}");
        r.connected("gw");
        assert!(r.lost("reset", Duration::from_secs(1)) >= max, "a short link keeps the backoff");
        r.connected("gw");
        assert!(r.lost("reset", Duration::from_secs(3600)) < 2 * min, "a stable link starts it over");
    }

    #[test]
    fn peer_state_counts_reconnects_after_the_first_and_keeps_the_last_error_while_down() {
        let t0 = Instant::now();
        let mut p = PeerState::new("gw".into(), "gw:7000".into(), t0);
        p.dial_failed("Connection refused".into());
        p.dial_failed("Connection refused".into());
        let s = p.status(t0 + Duration::from_secs(5));
        assert_eq!((s.connected, s.reconnects, s.last_error.as_deref()), (false, 0, Some("Connection refused")));
        p.up(t0 + Duration::from_secs(5));
        let s = p.status(t0 + Duration::from_secs(7));
        assert_eq!((s.connected, s.reconnects, s.last_error), (true, 0, None), "the first connection is no reconnect");
        assert_eq!(s.for_secs, 2.0);
        p.down(t0 + Duration::from_secs(9), Some("closed by the peer".into()));
        p.up(t0 + Duration::from_secs(10));
        assert_eq!(p.status(t0 + Duration::from_secs(10)).reconnects, 1);
    }
}

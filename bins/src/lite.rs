//! The edge-lite shell: one thread, no async runtime, for the smallest devices. `mio`
//! tells it which sockets are ready; storage requests are performed inline, in order, as
//! the core issues them. It serves the same HTTP and binary APIs and the same link to the
//! gateway as the tokio shell, through the same [`Driver`], so only the waiting differs.
//!
//! One loop turn: wait for sockets or the next timer (not at all while a connection has
//! more to read); serve every ready connection once, round-robin: write its answers, then
//! read at most [`TURN_READ_MAX`] bytes and hand the requests to the node; perform the
//! storage requests that produced (the first produce of a turn starts a group commit; the
//! others wait for the next, so a busy turn costs two fsyncs, not one per record) and put
//! the answers in their connections' buffers, to be written next turn. While an fsync runs
//! nothing else does — the kernel's socket buffers hold what arrives meanwhile. The bound
//! per turn is what keeps the loop fair: a connection whose answers came back reads no
//! more until every other ready connection has had its turn.
//!
//! There is no signal handler: SIGTERM ends the process at once, which loses nothing,
//! since every acknowledged record is already durable.
#![allow(clippy::disallowed_types)] // The shell keeps real time (std::time::Instant).

use crate::api::{self, BrowserGuard, Call};
use crate::binproto;
use crate::config::Settings;
use crate::driver::{Driver, Effects, Identity};
use crate::guard::{Admit, Budget, ConnId, ConnTable, RequestClock};
use crate::http;
use crate::keyed;
use crate::limits::{
    self, ShellBudget, BINARY_IN_FLIGHT_MAX, BUDGET_WAIT, IDLE_TIMEOUT, LINGER, LINGER_BYTES_MAX, PEER_IDLE_TIMEOUT,
    READ_CHUNK,
};
use crate::link::{Dialing, PeerState, Redial};
use crate::peer::{self, PeerHello};
use crate::status::Link;
use crate::store::Store;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use outpost_core::config::TopicNames;
use outpost_core::io::{ProduceAck, ProduceError};
use outpost_core::types::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HTTP_LISTENER: Token = Token(0);
const BINARY_LISTENER: Token = Token(1);
const UPLINK: Token = Token(2);
const FIRST_CONN: usize = 3;
/// Bytes queued to the gateway at most; frames beyond are dropped (the protocol resends).
const UPLINK_WRITE_MAX: usize = 4 << 20;
/// How often deadlines are checked: a late request is closed at most this much late.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// Bytes one connection may read per loop turn; one with more waiting is served again
/// next turn, after the others.
const TURN_READ_MAX: usize = 4 * READ_CHUNK;

/// What an answer does to its connection once written into its buffer.
enum Done {
    /// An HTTP response: the connection may read its next request.
    Http { close: bool },
    /// A binary answer: the places its request held in flight are free.
    Binary { places: usize },
}

/// An answer the node's replies produce, for the loop to put into a connection's buffer:
/// the connection, the bytes, what it completes, and whether it is a fetch's answer.
type Answered = (Token, Vec<u8>, Done, bool);
type Outbox = Arc<Mutex<Vec<Answered>>>;

enum Kind {
    Http {
        waiting: bool,
    },
    /// `authenticated`: an Auth with a token of the port came (`api.token`).
    Binary {
        in_flight: usize,
        authenticated: bool,
    },
}

struct Conn {
    stream: TcpStream,
    kind: Kind,
    /// Its place in its listener's table.
    id: ConnId,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    close_after_write: bool,
    /// After the last answer is written: read and drop what the client still sends, until
    /// then, so that it reads the answer rather than a reset.
    linger_until: Option<Instant>,
    lingered_bytes: usize,
    eof: bool,
    /// The request being read (its first byte has come), on its deadline.
    clock: Option<RequestClock>,
    /// Since when nothing has been in flight and no request started.
    idle_since: Instant,
    /// Bytes of the shared ingress budget held for the request being read.
    reserved: usize,
    /// Since when the request waits for ingress budget (or a fetch answer's place).
    blocked_since: Option<Instant>,
    /// `100 Continue` was sent for the request being read.
    continued: bool,
    /// A fetch answer is in `wbuf`, not yet written whole.
    fetch_unwritten: bool,
}

impl Conn {
    fn new(stream: TcpStream, kind: Kind, id: ConnId, now: Instant) -> Conn {
        Conn {
            stream,
            kind,
            id,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            close_after_write: false,
            linger_until: None,
            lingered_bytes: 0,
            eof: false,
            clock: None,
            idle_since: now,
            reserved: 0,
            blocked_since: None,
            continued: false,
            fetch_unwritten: false,
        }
    }

    fn is_http(&self) -> bool {
        matches!(self.kind, Kind::Http { .. })
    }

    /// The node is answering one of its requests.
    fn busy(&self) -> bool {
        match self.kind {
            Kind::Http { waiting } => waiting,
            Kind::Binary { in_flight, .. } => in_flight > 0,
        }
    }

    /// Answers `resp` and closes once it is written (lingering: the client may still be
    /// sending the request it answers).
    fn refuse(&mut self, resp: http::Response) {
        http::Response { close: true, ..resp }.encode(&mut self.wbuf);
        self.close_after_write = true;
    }
}

enum LinkState {
    Idle {
        retry_at: Instant,
    },
    /// `hello`: what is left to send of the hello.
    Connecting {
        stream: LinkSocket,
        dialing: Dialing,
        hello: Vec<u8>,
        since: Instant,
    },
    Up {
        stream: LinkSocket,
        rbuf: Vec<u8>,
        wbuf: Vec<u8>,
        last_heard: Instant,
    },
}

/// The uplink's socket: TCP, or a TLS 1.3 client session (rustls) over it, driven by hand
/// over the non-blocking socket: [`Read`] gives the plaintext that arrived, [`Write`] takes
/// plaintext once every TLS record before it is on the socket (so rustls holds at most one
/// write's worth), and `flush` sends what rustls holds (the handshake's records included).
/// Both end in `WouldBlock` as a socket does, so the loop's readiness rules hold.
struct LinkSocket {
    tcp: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
}

impl LinkSocket {
    fn new(tcp: TcpStream, tls: Option<(&Arc<rustls::ClientConfig>, &str)>) -> Result<LinkSocket, String> {
        let tls = match tls {
            Some((config, gateway)) => {
                let name = crate::tls::server_name(gateway)?;
                Some(Box::new(rustls::ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS: {e}"))?))
            }
            None => None,
        };
        Ok(LinkSocket { tcp, tls })
    }
}

/// Writes the TLS records rustls holds until none is left or the socket is full.
fn send_tls(tls: &mut rustls::ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        if tls.write_tls(tcp)? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

impl Read for LinkSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else { return self.tcp.read(buf) };
        loop {
            match tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            if tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                // Tell the gateway why (an alert) before the link is dropped.
                let _ = tls.write_tls(&mut self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
            }
            // The handshake's answers; what the socket does not take now goes at the next write.
            match send_tls(tls, &mut self.tcp) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
    }
}

impl Write for LinkSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else { return self.tcp.write(buf) };
        send_tls(tls, &mut self.tcp)?;
        tls.writer().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => send_tls(tls, &mut self.tcp),
            None => Ok(()),
        }
    }
}

struct Uplink {
    id: NodeId,
    hello: PeerHello,
    /// TLS with the gateway (`[tls]`), or None: clear text.
    tls: Option<Arc<rustls::ClientConfig>>,
    state: LinkState,
    redial: Redial,
    peer: PeerState,
    frame_max: usize,
}

struct Lite {
    poll: Poll,
    driver: Driver,
    fx: Effects,
    store: Store,
    http: TcpListener,
    binary: TcpListener,
    conns: BTreeMap<Token, Conn>,
    http_table: ConnTable<Token>,
    binary_table: ConnTable<Token>,
    next_token: usize,
    outbox: Outbox,
    uplink: Option<Uplink>,
    topics: TopicNames,
    budget: ShellBudget,
    browser: BrowserGuard,
    api_auth: api::ApiAuth,
    process_memory_max: u64,
    ingress: Budget,
    /// Fetches issued whose answers are not yet written whole (at most `fetch_answers_max`).
    fetches_held: usize,
    /// Connections waiting for ingress budget or a fetch answer's place.
    blocked: BTreeSet<Token>,
    /// Connections to serve next turn: a socket became ready, answers came, or the turn's
    /// read bound stopped it with more to read (the poller says nothing more of those).
    ready: BTreeSet<Token>,
}

/// Runs an edge until `stop` is set (tests) or the process is killed.
pub fn run(settings: Settings, stop: &AtomicBool) -> Result<(), String> {
    let cfg = settings.node.clone();
    if settings.gateway.is_some() {
        return Err("the edge-lite shell runs edges only; run the gateway with the default (tokio) build".into());
    }
    let tls = match &settings.links {
        crate::config::LinkSecurity::Tls(files) if settings.cloud.is_some() => Some(crate::tls::client_config(files)?),
        crate::config::LinkSecurity::Tls(_) => None,
        crate::config::LinkSecurity::Plain { explicit: true } => {
            tracing::warn!(
                "tls.plaintext = true: the link to the gateway is in clear text, readable and forgeable by anyone \
                 on the network (the token included); for a test network only"
            );
            None
        }
        crate::config::LinkSecurity::Plain { explicit: false } => None,
    };
    let store = Store::open(&settings.data_dir, &cfg.topics).map_err(|e| e.to_string())?;
    let poll = Poll::new().map_err(|e| format!("cannot create a poller: {e}"))?;
    let mut http = TcpListener::bind(settings.http)
        .map_err(|e| format!("cannot listen for HTTP on {} (api.http): {e}", settings.http))?;
    let mut binary = TcpListener::bind(settings.binary)
        .map_err(|e| format!("cannot listen for the binary protocol on {} (api.binary): {e}", settings.binary))?;
    poll.registry().register(&mut http, HTTP_LISTENER, Interest::READABLE).map_err(|e| e.to_string())?;
    poll.registry().register(&mut binary, BINARY_LISTENER, Interest::READABLE).map_err(|e| e.to_string())?;
    let mut known = BTreeMap::new();
    known.insert(cfg.id, settings.node_name.clone());
    let now = Instant::now();
    let uplink = match (&settings.cloud, cfg.upstream) {
        (Some(c), Some(up)) => {
            known.insert(up, c.gateway_name.clone());
            let backoff = limits::Backoff::from_config(&settings.node_name, &cfg.sync);
            Some(Uplink {
                id: up,
                hello: PeerHello { name: settings.node_name.clone(), token: c.token.clone().unwrap_or_default() },
                tls,
                state: LinkState::Idle { retry_at: now },
                redial: Redial::new(&c.gateway_addr, &c.gateway_name, backoff),
                peer: PeerState::new(c.gateway_name.clone(), c.gateway_addr.clone(), now),
                frame_max: limits::peer_frame_max(&cfg),
            })
        }
        _ => None,
    };
    tracing::info!(
        node = %settings.node_name, id = cfg.id.0, shell = "edge-lite", data_dir = %settings.data_dir.display(),
        http = %settings.http, binary = %settings.binary, "starting"
    );
    let seals = Identity::seals_of(&settings)?;
    let identity =
        Identity { name: settings.node_name.clone(), location: settings.location.clone(), names: known, seals };
    let topics = cfg.topic_names();
    let mut fx = Effects::default();
    let driver = Driver::new(cfg, identity, &mut fx);
    let budget = settings.shell;
    let mut lite = Lite {
        poll,
        driver,
        fx,
        store,
        http,
        binary,
        conns: BTreeMap::new(),
        http_table: ConnTable::new(budget.http_connections_max),
        binary_table: ConnTable::new(budget.binary_connections_max),
        next_token: FIRST_CONN,
        outbox: Arc::new(Mutex::new(Vec::new())),
        uplink,
        topics,
        budget,
        browser: settings.browser.clone(),
        api_auth: settings.api_auth.clone(),
        process_memory_max: settings.max_memory,
        ingress: Budget::new(budget.ingress_bytes_max),
        fetches_held: 0,
        blocked: BTreeSet::new(),
        ready: BTreeSet::new(),
    };
    lite.run(stop)
}

impl Lite {
    fn run(&mut self, stop: &AtomicBool) -> Result<(), String> {
        let mut events = Events::with_capacity(256);
        let mut housekeeping = Instant::now();
        self.settle();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut wake = now + HOUSEKEEPING;
            if let Some(w) = self.driver.next_wake() {
                wake = wake.min(w);
            }
            if let Some(LinkState::Idle { retry_at }) = self.uplink.as_ref().map(|u| &u.state) {
                wake = wake.min(*retry_at);
            }
            // Stop is polled at least every 100 ms; not waited for while a connection is ready.
            let wait = if self.ready.is_empty() {
                wake.saturating_duration_since(now).min(Duration::from_millis(100))
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll failed: {e}"));
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    HTTP_LISTENER => self.accept(true),
                    BINARY_LISTENER => self.accept(false),
                    UPLINK => self.uplink_ready(),
                    t => {
                        self.ready.insert(t);
                    }
                }
            }
            for t in std::mem::take(&mut self.ready) {
                self.service(t);
            }
            if self.driver.next_wake().is_some_and(|w| w <= Instant::now()) {
                self.driver.timeout(&mut self.fx);
            }
            self.uplink_tick();
            self.settle();
            self.retry_blocked();
            if housekeeping.elapsed() >= HOUSEKEEPING {
                housekeeping = Instant::now();
                self.enforce_deadlines();
            }
        }
        Ok(())
    }

    /// Performs storage requests, sends frames and delivers answers until none is left.
    fn settle(&mut self) {
        loop {
            let disk = std::mem::take(&mut self.fx.disk);
            let sends = std::mem::take(&mut self.fx.sends);
            let answers = std::mem::take(&mut *self.outbox.lock().expect("not poisoned"));
            if disk.is_empty() && sends.is_empty() && answers.is_empty() {
                break;
            }
            for (id, req) in disk {
                let result = self.store.perform(&req);
                self.driver.disk_done(id, result, &mut self.fx);
            }
            for (to, bytes) in sends {
                self.send_to_gateway(to, &bytes);
            }
            let mut touched = Vec::new();
            for (token, bytes, done, fetch) in answers {
                let Some(c) = self.conns.get_mut(&token) else {
                    // The connection went away before its fetch answer: its place is free.
                    self.fetches_held -= usize::from(fetch);
                    continue;
                };
                c.wbuf.extend_from_slice(&bytes);
                c.fetch_unwritten |= fetch;
                match (&mut c.kind, done) {
                    (Kind::Http { waiting }, Done::Http { close }) => {
                        *waiting = false;
                        c.close_after_write |= close;
                        c.idle_since = Instant::now();
                    }
                    (Kind::Binary { in_flight, .. }, Done::Binary { places }) => {
                        *in_flight -= places;
                        if *in_flight == 0 {
                            c.idle_since = Instant::now();
                        }
                    }
                    _ => unreachable!("answers match their connection's kind"),
                }
                touched.push(token);
            }
            // Written, and what the answers unblocked read, at the connections' next turn.
            self.ready.extend(touched);
        }
        self.flush_uplink();
    }

    /// Connections that waited for budget or a fetch answer's place try again.
    fn retry_blocked(&mut self) {
        if self.blocked.is_empty() {
            return;
        }
        for t in std::mem::take(&mut self.blocked) {
            self.service(t);
        }
    }

    fn accept(&mut self, is_http: bool) {
        loop {
            let listener = if is_http { &self.http } else { &self.binary };
            let (mut stream, addr) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return tracing::warn!(error = %e, "accept failed"),
            };
            let token = Token(self.next_token);
            let now = Instant::now();
            let table = if is_http { &mut self.http_table } else { &mut self.binary_table };
            let id = match table.admit(now, token) {
                Admit::Yes { id, evicted } => {
                    if let Some((_, victim)) = evicted {
                        tracing::debug!(%addr, "dropped the slowest connection to admit a new one");
                        self.close(victim);
                    }
                    id
                }
                Admit::No => {
                    tracing::warn!(%addr, "every connection is busy; refused a new one");
                    if is_http {
                        let busy = http::Response::error(
                            503,
                            "too_many_connections",
                            true,
                            "every connection is busy; retry shortly",
                        );
                        let mut out = Vec::new();
                        http::Response { close: true, ..busy }.encode(&mut out);
                        let _ = stream.write(&out);
                    }
                    continue;
                }
            };
            self.next_token += 1;
            // Answers are small and someone waits for each: do not hold them back (Nagle).
            let _ = stream.set_nodelay(true);
            if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE) {
                tracing::warn!(error = %e, "cannot watch a connection");
                self.table(is_http).remove(id);
                continue;
            }
            let kind = if is_http {
                Kind::Http { waiting: false }
            } else {
                Kind::Binary { in_flight: 0, authenticated: false }
            };
            self.conns.insert(token, Conn::new(stream, kind, id, now));
        }
    }

    fn table(&mut self, is_http: bool) -> &mut ConnTable<Token> {
        if is_http {
            &mut self.http_table
        } else {
            &mut self.binary_table
        }
    }

    /// Closes a connection at once, giving back what it held.
    fn close(&mut self, token: Token) {
        let Some(mut c) = self.conns.remove(&token) else { return };
        self.release(&mut c);
        self.fetches_held -= usize::from(c.fetch_unwritten);
        self.blocked.remove(&token);
        let is_http = c.is_http();
        self.table(is_http).remove(c.id);
        let _ = self.poll.registry().deregister(&mut c.stream);
    }

    /// Writes what a connection has to write, reads what it can, and handles whole
    /// requests; closes it when done.
    fn service(&mut self, token: Token) {
        let Some(mut c) = self.conns.remove(&token) else { return };
        let alive = self.service_conn(token, &mut c);
        self.conns.insert(token, c);
        if !alive {
            self.close(token);
        }
    }

    fn service_conn(&mut self, token: Token, c: &mut Conn) -> bool {
        if !self.write(c) {
            return false;
        }
        if c.linger_until.is_some() {
            return self.linger(c);
        }
        if c.wbuf.is_empty() && c.close_after_write {
            return self.start_linger(c);
        }
        let mut turn_left = TURN_READ_MAX;
        loop {
            // Handle what is buffered before reading more, so a client cannot make us buffer
            // past one request (HTTP) or the in-flight limit (binary).
            let progressed = match c.kind {
                _ if c.wbuf.len() > self.budget.write_buffer_max => false,
                Kind::Http { waiting: true } => false,
                Kind::Http { waiting: false } => self.next_http(token, c),
                Kind::Binary { in_flight, .. } if in_flight >= BINARY_IN_FLIGHT_MAX => false,
                Kind::Binary { .. } => self.next_binary(token, c),
            };
            if c.close_after_write {
                break;
            }
            if progressed {
                continue;
            }
            let blocked = match c.kind {
                Kind::Http { waiting } => waiting,
                Kind::Binary { in_flight, .. } => in_flight >= BINARY_IN_FLIGHT_MAX,
            };
            if blocked || c.eof || c.wbuf.len() > self.budget.write_buffer_max {
                break;
            }
            if turn_left == 0 {
                // Its turn is over; the others go first.
                self.ready.insert(token);
                break;
            }
            let Some(room) = self.room_to_read(token, c) else { break };
            let mut chunk = [0u8; READ_CHUNK];
            match c.stream.read(&mut chunk[..room.min(turn_left)]) {
                Ok(0) => c.eof = true,
                Ok(n) => {
                    c.rbuf.extend_from_slice(&chunk[..n]);
                    self.received(c, n);
                    turn_left -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if !self.write(c) {
            return false;
        }
        if c.wbuf.is_empty() && c.close_after_write {
            return self.start_linger(c);
        }
        self.note_phase(c);
        !(c.wbuf.is_empty() && c.eof && !c.busy())
    }

    /// `n` bytes of a request arrived: its clock starts with its first byte.
    fn received(&mut self, c: &mut Conn, n: usize) {
        match &mut c.clock {
            Some(clock) => clock.received(n),
            None => c.clock = Some(RequestClock::start(Instant::now(), n)),
        }
    }

    /// Tells the listener's table whether the connection is busy, reading (and how much of
    /// its request came) or idle.
    fn note_phase(&mut self, c: &mut Conn) {
        let (is_http, id) = (c.is_http(), c.id);
        match c.clock {
            _ if c.busy() => self.table(is_http).busy(id),
            None => self.table(is_http).idle(id, c.idle_since),
            Some(clock) => self.table(is_http).set_reading(id, clock.started(), c.rbuf.len() as u64),
        }
    }

    /// Writes as much as the socket takes; a fetch answer written whole frees its place.
    fn write(&mut self, c: &mut Conn) -> bool {
        let ok = write_out(&mut c.stream, &mut c.wbuf);
        if c.wbuf.is_empty() && c.fetch_unwritten {
            c.fetch_unwritten = false;
            self.fetches_held -= 1;
            c.idle_since = Instant::now();
        }
        ok
    }

    /// The connection's last answer is written: stop writing, and read and drop what the
    /// client still sends for [`LINGER`].
    fn start_linger(&mut self, c: &mut Conn) -> bool {
        if c.eof {
            return false;
        }
        self.release(c);
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        c.linger_until = Some(Instant::now() + LINGER);
        self.linger(c)
    }

    fn linger(&mut self, c: &mut Conn) -> bool {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            if c.lingered_bytes >= LINGER_BYTES_MAX {
                return false;
            }
            match c.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => c.lingered_bytes += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Handles one HTTP request if a whole one is buffered.
    fn next_http(&mut self, token: Token, c: &mut Conn) -> bool {
        let (req, used) = match http::parse(&c.rbuf, self.budget.http_body_max) {
            Ok(Some(x)) => x,
            Ok(None) => return false,
            Err(e) => {
                c.refuse(e.response());
                return true;
            }
        };
        // Counted as a held fetch answer only if it will be answered by a fetch.
        let served = self.browser.check(&req).is_ok() && self.api_auth.grant(req.bearer.as_deref()) != api::Grant::None;
        if matches!(api::route(&req), Ok(Call::Fetch(_))) && served {
            if self.fetches_held >= self.budget.fetch_answers_max {
                self.blocked.insert(token);
                return false;
            }
            self.fetches_held += 1;
        }
        c.rbuf.drain(..used);
        self.release(c);
        c.clock = None;
        c.continued = false;
        c.blocked_since = None;
        let close = !req.keep_alive;
        match self.answer_http(token, &req, close) {
            Some(resp) => {
                let close = close || resp.close;
                http::Response { close, ..resp }.encode(&mut c.wbuf);
                c.close_after_write |= close;
                c.idle_since = Instant::now();
            }
            None => c.kind = Kind::Http { waiting: true },
        }
        true
    }

    /// The response now, or `None` when it will come through the outbox.
    fn answer_http(&mut self, token: Token, req: &http::Request, close: bool) -> Option<http::Response> {
        if let Err(resp) = self.browser.check(req) {
            return Some(resp);
        }
        let call = match api::route(req) {
            Ok(c) => c,
            Err(resp) => return Some(resp),
        };
        if let Err(resp) = self.api_auth.check_http(req, &call) {
            return Some(resp);
        }
        let status = || self.driver.status(self.link());
        Some(match call {
            Call::Show(show) => api::show_http(show, &status()),
            Call::Control(ctl) => {
                if let Some(refused) = api::control_refused(self.driver.node().config().role) {
                    return Some(refused);
                }
                if let (outpost_core::io::Control::SyncNow, Some(u)) = (ctl, &mut self.uplink) {
                    if let LinkState::Idle { retry_at } = &mut u.state {
                        u.redial.dial_now();
                        *retry_at = Instant::now();
                    }
                }
                self.driver.control(ctl, &mut self.fx);
                api::control_http(ctl)
            }
            Call::Produce { topic, records, batch } => {
                let idx = match api::produce_topic(&self.topics, &topic) {
                    Ok(idx) => idx,
                    Err((resp, _)) => return Some(resp),
                };
                let outbox = self.outbox.clone();
                let reply = Box::new(move |results: Vec<Result<ProduceAck, ProduceError>>| {
                    let resp = api::produce_http(&topic, &results, batch);
                    let mut out = Vec::new();
                    http::Response { close, ..resp }.encode(&mut out);
                    outbox.lock().expect("not poisoned").push((token, out, Done::Http { close }, false));
                });
                self.driver.produce_batch(idx, records, reply, &mut self.fx);
                return None;
            }
            Call::Keyed { topic, call } => {
                let idx = match api::produce_topic(&self.topics, &topic) {
                    Ok(idx) => idx,
                    Err((resp, _)) => return Some(resp),
                };
                let outbox = self.outbox.clone();
                let name = topic.clone();
                let reply = Box::new(move |answer| {
                    let resp = keyed::answer_http(&topic, answer);
                    let mut out = Vec::new();
                    http::Response { close, ..resp }.encode(&mut out);
                    outbox.lock().expect("not poisoned").push((token, out, Done::Http { close }, false));
                });
                self.driver.keyed(idx, &name, call, reply, &mut self.fx);
                return None;
            }
            Call::Fetch(binproto::FetchRequest { topic, way, from, max_records, max_bytes }) => {
                let idx = match api::fetch_topic(&self.topics, &topic, way) {
                    Ok(idx) => idx,
                    Err((resp, _)) => {
                        self.fetches_held -= 1;
                        return Some(resp);
                    }
                };
                let names: BTreeMap<u64, String> =
                    self.driver.identity.names.iter().map(|(k, v)| (k.0, v.clone())).collect();
                let outbox = self.outbox.clone();
                let reply = Box::new(move |r| {
                    let resp = api::fetch_http(&r, &names);
                    let mut out = Vec::new();
                    http::Response { close, ..resp }.encode(&mut out);
                    outbox.lock().expect("not poisoned").push((token, out, Done::Http { close }, true));
                });
                let max_bytes = max_bytes.min(self.budget.fetch_bytes_max);
                self.driver.fetch(idx, from, max_records, max_bytes, reply, &mut self.fx);
                return None;
            }
        })
    }

    /// Handles one binary request if a whole frame is buffered.
    fn next_binary(&mut self, token: Token, c: &mut Conn) -> bool {
        let Some(prefix) = c.rbuf.first_chunk::<4>() else { return false };
        let bad = |c: &mut Conn, id: u32, message: String| {
            let e = binproto::Response::Error { code: binproto::Code::BadRequest, retryable: false, message };
            binproto::encode_response(id, &e, &mut c.wbuf);
            c.close_after_write = true;
            true
        };
        let len = match binproto::frame_len(*prefix, self.budget.request_frame_max) {
            Ok(n) => n,
            Err(e) => return bad(c, 0, e.to_string()),
        };
        if c.rbuf.len() < 4 + len {
            return false;
        }
        let decoded = binproto::decode_request(&c.rbuf[4..4 + len]);
        let (id, req) = match decoded {
            Ok(x) => x,
            Err((id, e)) => return bad(c, id.unwrap_or(0), e.to_string()),
        };
        let authenticated = matches!(c.kind, Kind::Binary { authenticated: true, .. });
        match self.api_auth.gate_binary(authenticated, &req) {
            api::BinaryGate::Serve => {}
            api::BinaryGate::Welcome => {
                c.rbuf.drain(..4 + len);
                self.release(c);
                c.clock = (!c.rbuf.is_empty()).then(|| RequestClock::start(Instant::now(), c.rbuf.len()));
                if let Kind::Binary { authenticated, .. } = &mut c.kind {
                    *authenticated = true;
                }
                binproto::encode_response(id, &binproto::Response::Welcome, &mut c.wbuf);
                return true;
            }
            api::BinaryGate::Refuse(resp) => {
                binproto::encode_response(id, &resp, &mut c.wbuf);
                c.close_after_write = true;
                return true;
            }
        }
        let is_fetch = matches!(req, binproto::Request::Fetch(_));
        if is_fetch && self.fetches_held >= self.budget.fetch_answers_max {
            self.blocked.insert(token);
            return false;
        }
        // A batch holds a place per record: it waits for its answers' room.
        let places = match &req {
            binproto::Request::ProduceBatch { records, .. } => records.len(),
            binproto::Request::Produce { .. } | binproto::Request::Fetch(_) | binproto::Request::Keyed { .. } => 1,
            binproto::Request::Auth { .. } => unreachable!("the gate answers an Auth"),
        };
        if matches!(c.kind, Kind::Binary { in_flight, .. } if in_flight + places > BINARY_IN_FLIGHT_MAX) {
            return false;
        }
        c.rbuf.drain(..4 + len);
        self.release(c);
        // A next frame already buffered started when this one ended.
        c.clock = (!c.rbuf.is_empty()).then(|| RequestClock::start(Instant::now(), c.rbuf.len()));
        c.blocked_since = None;
        let topic = match &req {
            binproto::Request::Produce { topic, .. }
            | binproto::Request::ProduceBatch { topic, .. }
            | binproto::Request::Keyed { topic, .. } => api::produce_topic(&self.topics, topic),
            binproto::Request::Fetch(f) => api::fetch_topic(&self.topics, &f.topic, f.way),
            binproto::Request::Auth { .. } => unreachable!("the gate answers an Auth"),
        };
        let idx = match topic {
            Ok(idx) => idx,
            Err((_, resp)) => {
                binproto::encode_response(id, &resp, &mut c.wbuf);
                return true;
            }
        };
        if let Kind::Binary { in_flight, .. } = &mut c.kind {
            *in_flight += places;
        }
        let outbox = self.outbox.clone();
        match req {
            binproto::Request::Produce { key, value, .. } => {
                let reply = Box::new(move |r| {
                    let mut out = Vec::new();
                    binproto::encode_response(id, &api::produce_binary(&r), &mut out);
                    outbox.lock().expect("not poisoned").push((token, out, Done::Binary { places: 1 }, false));
                });
                self.driver.produce(idx, key, value, reply, &mut self.fx);
            }
            binproto::Request::ProduceBatch { records, .. } => {
                let reply = Box::new(move |r: Vec<_>| {
                    let mut out = Vec::new();
                    binproto::encode_response(id, &api::produce_batch_binary(&r), &mut out);
                    outbox.lock().expect("not poisoned").push((token, out, Done::Binary { places }, false));
                });
                self.driver.produce_batch(idx, records, reply, &mut self.fx);
            }
            binproto::Request::Fetch(binproto::FetchRequest { from, max_records, max_bytes, .. }) => {
                self.fetches_held += 1;
                let reply = Box::new(move |r| {
                    let mut out = Vec::new();
                    binproto::encode_response(id, &api::fetch_binary(r), &mut out);
                    outbox.lock().expect("not poisoned").push((token, out, Done::Binary { places: 1 }, true));
                });
                let max_bytes = max_bytes.min(self.budget.fetch_bytes_max);
                self.driver.fetch(idx, from, max_records, max_bytes, reply, &mut self.fx);
            }
            binproto::Request::Keyed { topic, call } => {
                let name = topic.clone();
                let reply = Box::new(move |a| {
                    let mut out = Vec::new();
                    binproto::encode_response(id, &keyed::answer_binary(&topic, a), &mut out);
                    outbox.lock().expect("not poisoned").push((token, out, Done::Binary { places: 1 }, false));
                });
                self.driver.keyed(idx, &name, call, reply, &mut self.fx);
            }
            binproto::Request::Auth { .. } => unreachable!("the gate answers an Auth"),
        }
        true
    }

    /// How many bytes a connection may read now; `None` while the request it is reading
    /// waits for ingress budget. A request whose length is known (an HTTP head with its
    /// Content-Length, a frame's prefix) reserves all of it before its body is read, so two
    /// half-read bodies can never hold the budget each other needs; every request the
    /// parsers accept fits the budget whole, so none waits for ever.
    fn room_to_read(&mut self, token: Token, c: &mut Conn) -> Option<usize> {
        let (need, expect_continue) = match c.kind {
            Kind::Binary { .. } => (
                c.rbuf
                    .first_chunk::<4>()
                    .and_then(|p| binproto::frame_len(*p, self.budget.request_frame_max).ok())
                    .map(|n| n + 4),
                false,
            ),
            Kind::Http { .. } => match http::head_info(&c.rbuf, self.budget.http_body_max).ok().flatten() {
                Some(info) => (Some(info.total), info.expect_continue),
                None => (None, false),
            },
        };
        // A head, or a length the next parse refuses: bounded per connection.
        let Some(need) = need else { return Some(READ_CHUNK) };
        if c.rbuf.len() >= need {
            // The whole request is here and waits (for a fetch answer's place): read no more.
            return None;
        }
        if need > c.reserved {
            if !self.ingress.try_reserve(need - c.reserved) {
                c.blocked_since.get_or_insert_with(Instant::now);
                self.blocked.insert(token);
                return None;
            }
            c.reserved = need;
            if c.blocked_since.take().is_some() {
                // Waiting was the daemon's doing: the request's time starts now.
                c.clock = Some(RequestClock::start(Instant::now(), c.rbuf.len()));
            }
        }
        if expect_continue && !c.continued && c.rbuf.len() < need {
            c.wbuf.extend_from_slice(http::CONTINUE);
            c.continued = true;
        }
        Some((need - c.rbuf.len()).min(READ_CHUNK))
    }

    /// The request read is consumed: its budget goes back.
    fn release(&mut self, c: &mut Conn) {
        self.ingress.release(c.reserved);
        c.reserved = 0;
    }

    /// Closes what is late: a request past its [`RequestClock`] deadline (HTTP: answered
    /// 408 first), an HTTP request that waited [`BUDGET_WAIT`] for budget (answered "busy"),
    /// a connection idle for [`IDLE_TIMEOUT`], a linger that is over; and the link to the
    /// gateway when it went quiet.
    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        let mut late = Vec::new();
        for (&t, c) in &self.conns {
            let waited = c.blocked_since.is_some_and(|b| now.duration_since(b) >= BUDGET_WAIT);
            let overdue = c.blocked_since.is_none() && c.clock.is_some_and(|k| now > k.deadline());
            let idle = c.clock.is_none() && !c.busy() && now.duration_since(c.idle_since) > IDLE_TIMEOUT;
            let lingered = c.linger_until.is_some_and(|u| now >= u);
            if lingered || idle || (!c.busy() && c.linger_until.is_none() && (overdue || (waited && c.is_http()))) {
                late.push((t, waited, overdue));
            }
        }
        for (t, waited, overdue) in late {
            let Some(c) = self.conns.get_mut(&t) else { continue };
            if c.linger_until.is_none() && c.is_http() && (waited || overdue) && !c.close_after_write {
                let took = c.clock.map_or(Duration::ZERO, |k| now.duration_since(k.started()));
                c.refuse(if waited { api::busy_ingress() } else { api::request_late(took) });
                self.blocked.remove(&t);
                self.service(t);
            } else {
                self.close(t);
            }
        }
        if let Some(u) = &self.uplink {
            let dead = match &u.state {
                LinkState::Up { last_heard, .. } => now.duration_since(*last_heard) > PEER_IDLE_TIMEOUT,
                LinkState::Connecting { since, .. } => now.duration_since(*since) > limits::HANDSHAKE_TIMEOUT,
                LinkState::Idle { .. } => false,
            };
            if dead {
                self.link_lost("no answer in time".into());
            }
        }
    }

    fn link(&self) -> Link {
        let now = Instant::now();
        let peers = self.uplink.iter().map(|u| u.peer.status(now)).collect();
        let (h, b) = (&self.http_table, &self.binary_table);
        Link {
            peers,
            api_connections: self.conns.len() as u64,
            api_connections_refused: h.refused() + b.refused(),
            api_connections_evicted: h.evicted() + b.evicted(),
            process_memory_max: self.process_memory_max,
            shell_reserve: self.budget.reserve,
        }
    }

    fn uplink_tick(&mut self) {
        let Some(u) = &mut self.uplink else { return };
        let LinkState::Idle { retry_at } = u.state else { return };
        if Instant::now() < retry_at {
            return;
        }
        u.redial.attempt();
        let addr = u.redial.addr().to_socket_addrs().ok().and_then(|mut a| a.next());
        let Some(addr) = addr else {
            let error = format!("cannot resolve {}", u.redial.addr());
            return self.link_failed(error);
        };
        match TcpStream::connect(addr) {
            Ok(mut tcp) => {
                if let Err(e) = self.poll.registry().register(&mut tcp, UPLINK, Interest::READABLE | Interest::WRITABLE)
                {
                    return self.link_failed(e.to_string());
                }
                let started = Dialing::new(&u.hello).and_then(|d| {
                    let name = u.redial.name().to_owned();
                    Ok((d, LinkSocket::new(tcp, u.tls.as_ref().map(|c| (c, name.as_str())))?))
                });
                let (dialing, stream) = match started {
                    Ok(x) => x,
                    Err(e) => return self.link_failed(e),
                };
                let hello = dialing.hello().to_vec();
                u.state = LinkState::Connecting { stream, dialing, hello, since: Instant::now() };
            }
            Err(e) => self.link_failed(e.to_string()),
        }
    }

    /// A dial failed: the next waits as [`Redial`] says.
    fn link_failed(&mut self, error: String) {
        let Some(u) = &mut self.uplink else { return };
        let delay = u.redial.failed(&error);
        u.peer.dial_failed(error);
        self.link_down(delay);
    }

    /// The link (or a dial in progress) ended.
    fn link_lost(&mut self, why: String) {
        let Some(u) = &mut self.uplink else { return };
        let LinkState::Up { .. } = u.state else { return self.link_failed(why) };
        let now = Instant::now();
        let delay = u.redial.lost(&why, u.peer.for_time(now));
        u.peer.down(now, Some(why));
        self.link_down(delay);
    }

    fn link_down(&mut self, delay: Duration) {
        let Some(u) = &mut self.uplink else { return };
        if let LinkState::Connecting { stream, .. } | LinkState::Up { stream, .. } = &mut u.state {
            let _ = self.poll.registry().deregister(&mut stream.tcp);
        }
        u.state = LinkState::Idle { retry_at: Instant::now() + delay };
    }

    fn uplink_ready(&mut self) {
        let Some(u) = &mut self.uplink else { return };
        match &mut u.state {
            LinkState::Idle { .. } => {}
            LinkState::Connecting { stream, dialing, hello, .. } => {
                if let Ok(Some(e)) | Err(e) = stream.tcp.take_error() {
                    return self.link_failed(e.to_string());
                }
                if stream.tcp.peer_addr().is_err() {
                    return; // Not connected yet.
                }
                // Also when the hello is out: TLS may hold records of its handshake.
                if !write_out(stream, hello) {
                    return self.link_failed("connection closed during the handshake".into());
                }
                if !hello.is_empty() {
                    return;
                }
                let outcome = loop {
                    if let Some(outcome) = dialing.outcome() {
                        break outcome;
                    }
                    let mut b = vec![0u8; dialing.needs()];
                    match stream.read(&mut b) {
                        Ok(0) => return self.link_failed("closed by the gateway during the handshake".into()),
                        Ok(n) => dialing.received(&b[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) => return self.link_failed(format!("handshake: {e}")),
                    }
                };
                match outcome {
                    Ok(gw) => {
                        u.redial.connected(&gw);
                        let LinkState::Connecting { stream, .. } =
                            std::mem::replace(&mut u.state, LinkState::Idle { retry_at: Instant::now() })
                        else {
                            unreachable!("matched above")
                        };
                        let _ = stream.tcp.set_nodelay(true);
                        u.peer.up(Instant::now());
                        u.state =
                            LinkState::Up { stream, rbuf: Vec::new(), wbuf: Vec::new(), last_heard: Instant::now() };
                        self.driver.control(outpost_core::io::Control::LinkUp, &mut self.fx);
                        self.uplink_ready();
                    }
                    Err(refused) => self.link_failed(refused),
                }
            }
            LinkState::Up { stream, rbuf, wbuf, last_heard } => {
                if !write_out(stream, wbuf) {
                    return self.link_lost("write failed".into());
                }
                let mut frames = Vec::new();
                let mut failure = None;
                loop {
                    let mut chunk = [0u8; 16 << 10];
                    match stream.read(&mut chunk) {
                        Ok(0) => {
                            failure = Some("closed by the peer".to_string());
                            break;
                        }
                        Ok(n) => {
                            rbuf.extend_from_slice(&chunk[..n]);
                            *last_heard = Instant::now();
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failure = Some(e.to_string());
                            break;
                        }
                    }
                    // Split whole frames out as they come, so the buffer holds at most one.
                    while let Some(header) = rbuf.first_chunk::<{ outpost_core::codec::FRAME_HEADER_LEN }>() {
                        let total = match peer::frame_len(header, u.frame_max) {
                            Ok(n) => n,
                            Err(e) => {
                                failure = Some(format!("bad frame, connection closed: {e}"));
                                break;
                            }
                        };
                        if rbuf.len() < total {
                            break;
                        }
                        frames.push(rbuf.drain(..total).collect::<Vec<u8>>());
                    }
                    if failure.is_some() {
                        break;
                    }
                }
                let id = u.id;
                for f in frames {
                    self.driver.message(id, f, &mut self.fx);
                }
                if let Some(why) = failure {
                    self.link_lost(why);
                }
            }
        }
    }

    fn send_to_gateway(&mut self, to: NodeId, bytes: &[u8]) {
        let Some(u) = &mut self.uplink else { return };
        if let LinkState::Up { wbuf, .. } = &mut u.state {
            // Full: dropped, as a lossy network would; the protocol resends.
            if u.id == to && wbuf.len() + bytes.len() <= UPLINK_WRITE_MAX {
                wbuf.extend_from_slice(bytes);
            }
        }
    }

    fn flush_uplink(&mut self) {
        let Some(u) = &mut self.uplink else { return };
        if let LinkState::Up { stream, wbuf, .. } = &mut u.state {
            if !write_out(stream, wbuf) {
                self.link_lost("write failed".into());
            }
        }
    }
}

/// Writes as much of `buf` as the socket takes, and what a TLS session holds; false when
/// the connection is broken.
fn write_out<W: Write>(stream: &mut W, buf: &mut Vec<u8>) -> bool {
    let mut written = 0;
    let ok = loop {
        if written == buf.len() {
            break true;
        }
        match stream.write(&buf[written..]) {
            Ok(0) => break false,
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    let flushed = match stream.flush() {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    let ok = ok && flushed;
    buf.drain(..written);
    if buf.is_empty() && buf.capacity() > 1 << 20 {
        *buf = Vec::new();
    }
    ok
}

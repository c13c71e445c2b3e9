//! The tokio shell: the default way `outpost run` and `outpost gateway` drive a node.
//!
//! One task owns the [`Driver`] (no locks around the core). Everything else talks to it
//! through one bounded command channel: the HTTP and binary API connections, the peer
//! connections, and the operator. Storage requests run on one dedicated thread, in order
//! (the core relies on it), and come back on their own channel, which the node task serves
//! first so completions are never stuck behind a full command queue. The shell holds no
//! protocol or storage logic: it moves bytes and time.

use crate::api::{self, Call};
use crate::binproto::{self, REQUEST_FRAME_MAX};
use crate::config::Settings;
use crate::driver::{Driver, Effects, Identity};
use crate::http;
use crate::peer::{self, PeerHello, Verdict};
use crate::status::{self, Link, PeerLink, Status};
use crate::store::Store;
use outpost_core::io::{
    Control, DiskError, DiskOpId, DiskRequest, DiskResponse, FetchError, Fetched, ProduceAck, ProduceError,
};
use outpost_core::types::{NodeId, Seq, TopicIdx};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout, Instant as TokioInstant};

/// Commands queued to the node task at most; senders wait beyond it (backpressure).
const COMMAND_QUEUE: usize = 1024;
/// Frames queued to one peer at most; more are dropped (the sync protocol resends).
const PEER_SEND_QUEUE: usize = 256;
/// Requests one binary-protocol connection may have unanswered.
const BINARY_IN_FLIGHT_MAX: usize = 1024;
/// Open application connections (HTTP and binary, each) at most; more are refused.
const API_CONNECTIONS_MAX: usize = 256;
/// Edges connected to a gateway at most.
const PEER_CONNECTIONS_MAX: usize = 4096;
/// How long a peer has to finish its handshake, and a client to send a whole request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A keep-alive connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A peer that sends nothing for this long is taken as gone (the sync protocol talks far
/// more often: retransmits, Hellos, acks).
const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest HTTP body accepted: a batch of records.
pub const HTTP_BODY_MAX: usize = 8 << 20;
/// Reconnect backoff to the gateway.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

type Reply<T> = Box<dyn FnOnce(T) + Send>;

enum Cmd {
    Produce {
        topic: TopicIdx,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        reply: Reply<Result<ProduceAck, ProduceError>>,
    },
    Fetch {
        topic: TopicIdx,
        from: Seq,
        max_records: u32,
        max_bytes: u32,
        reply: Reply<Result<Fetched, FetchError>>,
    },
    Control(Control),
    Status(oneshot::Sender<Status>),
    PeerUp {
        id: NodeId,
        name: String,
        addr: String,
        conn: u64,
        tx: mpsc::Sender<Vec<u8>>,
    },
    PeerDown {
        id: NodeId,
        conn: u64,
        error: Option<String>,
    },
    /// An attempt to reach the gateway failed.
    LinkFailed {
        id: NodeId,
        name: String,
        addr: String,
        error: String,
    },
    Frame {
        from: NodeId,
        bytes: Vec<u8>,
    },
}

/// What the API connections share.
struct Api {
    node: mpsc::Sender<Cmd>,
    topics: BTreeMap<String, TopicIdx>,
    names: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl Api {
    fn topic(&self, name: &str) -> Result<TopicIdx, (http::Response, binproto::Response)> {
        self.topics.get(name).copied().ok_or_else(|| {
            let known: Vec<&str> = self.topics.keys().map(String::as_str).collect();
            api::unknown_topic(name, &known)
        })
    }

    async fn status(&self) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        self.node.send(Cmd::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    async fn fetch(&self, topic: TopicIdx, from: Seq, max_records: u32, max_bytes: u32) -> Result<Fetched, FetchError> {
        let (tx, rx) = oneshot::channel();
        let reply: Reply<_> = Box::new(move |r| {
            let _ = tx.send(r);
        });
        if self.node.send(Cmd::Fetch { topic, from, max_records, max_bytes, reply }).await.is_err() {
            return Err(FetchError::Recovering);
        }
        rx.await.unwrap_or(Err(FetchError::Recovering))
    }
}

/// A peer as the node task tracks it.
struct Peer {
    name: String,
    addr: String,
    conn: Option<(u64, mpsc::Sender<Vec<u8>>)>,
    since: TokioInstant,
    reconnects: u64,
    last_error: Option<String>,
}

/// Runs the daemon (edge) or gateway described by `settings` until `shutdown` resolves.
/// Returns an error only when it cannot start (a port in use, a data directory locked).
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    let cfg = settings.node.clone();
    let topic_names: Vec<String> = cfg.topics.iter().map(|t| t.name.clone()).collect();
    let store = Store::open(&settings.data_dir, &topic_names).map_err(|e| e.to_string())?;
    for d in store.unknown_topic_dirs() {
        tracing::warn!(
            dir = %settings.data_dir.join("topics").join(&d).display(),
            "a topic directory that no configured topic names: kept, not read; add the topic back to read it"
        );
    }
    let http_listener = TcpListener::bind(settings.http)
        .await
        .map_err(|e| format!("cannot listen for HTTP on {} (api.http): {e}", settings.http))?;
    let binary_listener = TcpListener::bind(settings.binary)
        .await
        .map_err(|e| format!("cannot listen for the binary protocol on {} (api.binary): {e}", settings.binary))?;
    let peer_listener = match &settings.gateway {
        Some(g) => Some(
            TcpListener::bind(g.listen)
                .await
                .map_err(|e| format!("cannot listen for edges on {} (gateway.listen): {e}", g.listen))?,
        ),
        None => None,
    };
    let names = Arc::new(Mutex::new(BTreeMap::new()));
    let mut known = BTreeMap::new();
    known.insert(cfg.id, settings.node_name.clone());
    if let (Some(c), Some(up)) = (&settings.cloud, cfg.upstream) {
        known.insert(up, c.gateway_name.clone());
    }
    names.lock().expect("not poisoned").extend(known.iter().map(|(k, v)| (k.0, v.clone())));
    let identity = Identity { name: settings.node_name.clone(), location: settings.location.clone(), names: known };

    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (disk_tx, disk_rx) = mpsc::unbounded_channel();
    let disk = spawn_disk_thread(store, disk_tx);
    let api = Arc::new(Api {
        node: cmd_tx.clone(),
        topics: cfg.topics.iter().enumerate().map(|(i, t)| (t.name.clone(), TopicIdx(i as u16))).collect(),
        names: names.clone(),
    });
    tracing::info!(
        node = %settings.node_name, id = cfg.id.0, role = ?cfg.role, data_dir = %settings.data_dir.display(),
        http = %settings.http, binary = %settings.binary, config = ?settings.path,
        "starting"
    );
    let node_task = tokio::spawn(node_loop(cfg.clone(), identity, cmd_rx, disk_rx, disk));
    let http_task = tokio::spawn(serve_http(http_listener, api.clone()));
    let binary_task = tokio::spawn(serve_binary(binary_listener, api.clone()));
    let peer_task = match (peer_listener, &settings.gateway) {
        (Some(l), Some(g)) => {
            if g.tokens.is_empty() {
                tracing::warn!(
                    "gateway.tokens is empty: any edge that connects is accepted (fine on a laptop, not in production)"
                );
            }
            let gw = GatewayAuth { name: settings.node_name.clone(), tokens: g.tokens.clone() };
            let max = cfg.gateway.batch_raw_bytes_max as usize + (64 << 10);
            Some(tokio::spawn(serve_peers(l, gw, cmd_tx.clone(), names.clone(), max)))
        }
        _ => None,
    };
    let uplink_task = match (&settings.cloud, cfg.upstream) {
        (Some(c), Some(up)) => {
            let hello = PeerHello { name: settings.node_name.clone(), token: c.token.clone().unwrap_or_default() };
            let max = (cfg.sync.batch_bytes_max as usize).max(1 << 20) + (64 << 10);
            Some(tokio::spawn(uplink(c.gateway_addr.clone(), c.gateway_name.clone(), up, hello, cmd_tx.clone(), max)))
        }
        _ => None,
    };
    drop(cmd_tx);
    tokio::select! {
        _ = shutdown => tracing::info!("shutting down: every acknowledged record is already durable"),
        r = node_task => match r {
            Ok(()) => tracing::error!("the node task ended"),
            Err(e) => return Err(format!("the node task failed: {e}")),
        },
    }
    http_task.abort();
    binary_task.abort();
    if let Some(t) = peer_task {
        t.abort();
    }
    if let Some(t) = uplink_task {
        t.abort();
    }
    Ok(())
}

/// Performs storage requests in the order issued, on a thread of their own.
fn spawn_disk_thread(
    mut store: Store,
    done: mpsc::UnboundedSender<(DiskOpId, Result<DiskResponse, DiskError>)>,
) -> std::sync::mpsc::Sender<(DiskOpId, DiskRequest)> {
    let (tx, rx) = std::sync::mpsc::channel::<(DiskOpId, DiskRequest)>();
    std::thread::Builder::new()
        .name("outpost-disk".into())
        .spawn(move || {
            while let Ok((id, req)) = rx.recv() {
                let result = store.perform(&req);
                if done.send((id, result)).is_err() {
                    return;
                }
            }
        })
        .expect("a thread can be spawned at start");
    tx
}

async fn node_loop(
    cfg: outpost_core::config::NodeConfig,
    identity: Identity,
    mut cmds: mpsc::Receiver<Cmd>,
    mut disk_done: mpsc::UnboundedReceiver<(DiskOpId, Result<DiskResponse, DiskError>)>,
    disk: std::sync::mpsc::Sender<(DiskOpId, DiskRequest)>,
) {
    let mut fx = Effects::default();
    let mut driver = Driver::new(cfg, identity, &mut fx);
    let mut peers: BTreeMap<NodeId, Peer> = BTreeMap::new();
    let mut api_link = Link::default();
    loop {
        for (id, req) in fx.disk.drain(..) {
            if disk.send((id, req)).is_err() {
                tracing::error!("the storage thread is gone; stopping");
                return;
            }
        }
        for (to, bytes) in fx.sends.drain(..) {
            if let Some((_, tx)) = peers.get(&to).and_then(|p| p.conn.as_ref()) {
                // Full or closed: dropped, as a lossy network would; the protocol resends.
                let _ = tx.try_send(bytes);
            }
        }
        let wake = driver.next_wake().map(TokioInstant::from_std);
        tokio::select! {
            biased;
            Some((id, result)) = disk_done.recv() => driver.disk_done(id, result, &mut fx),
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                match cmd {
                    Cmd::Produce { topic, key, value, reply } => driver.produce(topic, key, value, reply, &mut fx),
                    Cmd::Fetch { topic, from, max_records, max_bytes, reply } => {
                        driver.fetch(topic, from, max_records, max_bytes, reply, &mut fx)
                    }
                    Cmd::Control(c) => driver.control(c, &mut fx),
                    Cmd::Status(tx) => {
                        api_link.peers = peers.values().map(peer_link).collect();
                        let _ = tx.send(driver.status(api_link.clone()));
                    }
                    Cmd::PeerUp { id, name, addr, conn, tx } => {
                        let p = peers.entry(id).or_insert_with(|| Peer {
                            name: name.clone(),
                            addr: addr.clone(),
                            conn: None,
                            since: TokioInstant::now(),
                            reconnects: 0,
                            last_error: None,
                        });
                        if p.conn.is_some() {
                            tracing::info!(peer = %name, "a newer connection replaces the old one");
                        }
                        p.reconnects += u64::from(p.conn.is_some() || p.last_error.is_some());
                        (p.name, p.addr, p.conn, p.since) = (name.clone(), addr, Some((conn, tx)), TokioInstant::now());
                        driver.identity.names.insert(id, name);
                        driver.control(Control::LinkUp, &mut fx);
                    }
                    Cmd::PeerDown { id, conn, error } => {
                        if let Some(p) = peers.get_mut(&id) {
                            if p.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
                                p.conn = None;
                                p.since = TokioInstant::now();
                                p.last_error = error;
                            }
                        }
                    }
                    Cmd::LinkFailed { id, name, addr, error } => {
                        let p = peers.entry(id).or_insert_with(|| Peer {
                            name,
                            addr,
                            conn: None,
                            since: TokioInstant::now(),
                            reconnects: 0,
                            last_error: None,
                        });
                        p.last_error = Some(error);
                    }
                    Cmd::Frame { from, bytes } => driver.message(from, bytes, &mut fx),
                }
            }
            () = async { if let Some(w) = wake { tokio::time::sleep_until(w).await } }, if wake.is_some() => {
                driver.timeout(&mut fx)
            }
        }
    }
}

fn peer_link(p: &Peer) -> PeerLink {
    PeerLink {
        name: p.name.clone(),
        addr: p.addr.clone(),
        connected: p.conn.is_some(),
        for_secs: p.since.elapsed().as_secs_f64(),
        reconnects: p.reconnects,
        last_error: p.last_error.clone(),
    }
}

static NEXT_CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_conn() -> u64 {
    NEXT_CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Moves frames between a peer's socket and the node until either side ends. Returns why
/// the connection ended.
async fn run_peer(
    stream: TcpStream,
    id: NodeId,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    node: mpsc::Sender<Cmd>,
    max: usize,
) -> String {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let writer = async move {
        let mut wr = BufWriter::new(wr);
        while let Some(frame) = outbox.recv().await {
            wr.write_all(&frame).await?;
            while let Ok(more) = outbox.try_recv() {
                wr.write_all(&more).await?;
            }
            wr.flush().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let reader = async move {
        let mut header = [0u8; outpost_core::codec::FRAME_HEADER_LEN];
        loop {
            match timeout(PEER_IDLE_TIMEOUT, rd.read_exact(&mut header)).await {
                Err(_) => return format!("nothing heard for {}s", PEER_IDLE_TIMEOUT.as_secs()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return "closed by the peer".to_string(),
                Ok(Err(e)) => return e.to_string(),
                Ok(Ok(_)) => {}
            }
            let total = match peer::frame_len(&header, max) {
                Ok(n) => n,
                Err(e) => return format!("bad frame, connection closed: {e}"),
            };
            let mut frame = vec![0u8; total];
            frame[..header.len()].copy_from_slice(&header);
            match timeout(REQUEST_TIMEOUT, rd.read_exact(&mut frame[header.len()..])).await {
                Err(_) => return "a frame did not arrive whole in time".to_string(),
                Ok(Err(e)) => return e.to_string(),
                Ok(Ok(_)) => {}
            }
            if node.send(Cmd::Frame { from: id, bytes: frame }).await.is_err() {
                return "the node stopped".to_string();
            }
        }
    };
    tokio::select! {
        why = reader => why,
        r = writer => match r {
            Ok(()) => "replaced by a newer connection".to_string(),
            Err(e) => e.to_string(),
        },
    }
}

/// The edge's link to its gateway: connect, hand over to [`run_peer`], and reconnect with
/// a doubling backoff (with jitter, so that a fleet does not reconnect in step).
async fn uplink(addr: String, name: String, id: NodeId, hello: PeerHello, node: mpsc::Sender<Cmd>, max: usize) {
    let mut backoff = RECONNECT_MIN;
    let mut failures = 0u64;
    loop {
        match timeout(HANDSHAKE_TIMEOUT, connect_gateway(&addr, &hello))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        {
            Ok((stream, gw_name)) => {
                if gw_name != name {
                    tracing::warn!(expected = %name, answered = %gw_name, "the gateway's name differs from cloud.gateway_name");
                }
                tracing::info!(gateway = %addr, "connected to the gateway");
                backoff = RECONNECT_MIN;
                failures = 0;
                let conn = next_conn();
                let (tx, rx) = mpsc::channel(PEER_SEND_QUEUE);
                let up = Cmd::PeerUp { id, name: name.clone(), addr: addr.clone(), conn, tx };
                if node.send(up).await.is_err() {
                    return;
                }
                let why = run_peer(stream, id, rx, node.clone(), max).await;
                tracing::warn!(gateway = %addr, reason = %why, "link to the gateway lost; reconnecting");
                if node.send(Cmd::PeerDown { id, conn, error: Some(why) }).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                failures += 1;
                // Loud the first time, then quiet: an edge may be offline for days.
                if failures == 1 {
                    tracing::warn!(gateway = %addr, %error, "cannot reach the gateway; records stay queued, retrying");
                } else {
                    tracing::debug!(gateway = %addr, %error, failures, "cannot reach the gateway");
                }
                let failed = Cmd::LinkFailed { id, name: name.clone(), addr: addr.clone(), error };
                if node.send(failed).await.is_err() {
                    return;
                }
            }
        }
        let jitter = Duration::from_nanos(
            u64::from(std::process::id()).wrapping_mul(failures + 1) % (backoff.as_nanos() as u64 / 4 + 1),
        );
        sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

async fn connect_gateway(addr: &str, hello: &PeerHello) -> Result<(TcpStream, String), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    peer::encode_hello(hello, &mut buf);
    stream.write_all(&buf).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    loop {
        let need = peer::answer_needs(&answer);
        if need == 0 {
            break;
        }
        let at = answer.len();
        answer.resize(at + need, 0);
        stream.read_exact(&mut answer[at..]).await.map_err(|e| format!("handshake: {e}"))?;
    }
    match peer::decode_answer(&answer) {
        Some((Verdict::Welcome, gw, _)) => Ok((stream, gw)),
        Some((v, gw, msg)) => Err(format!("gateway {gw} refused this edge ({v:?}): {msg}")),
        None => Err("the answer to the handshake is not an Outpost gateway's".into()),
    }
}

struct GatewayAuth {
    name: String,
    tokens: BTreeMap<String, String>,
}

impl GatewayAuth {
    fn check(&self, h: &PeerHello) -> Result<(), String> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        match self.tokens.get(&h.name) {
            Some(t) if peer::tokens_match(t, &h.token) => Ok(()),
            Some(_) => Err(format!("wrong token for edge {:?}", h.name)),
            None => Err(format!("edge {:?} is not in gateway.tokens", h.name)),
        }
    }
}

async fn serve_peers(
    listener: TcpListener,
    auth: GatewayAuth,
    node: mpsc::Sender<Cmd>,
    names: Arc<Mutex<BTreeMap<u64, String>>>,
    max: usize,
) {
    let auth = Arc::new(auth);
    let slots = Arc::new(Semaphore::new(PEER_CONNECTIONS_MAX));
    loop {
        let Ok((stream, addr)) = listener.accept().await else { continue };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many edge connections; refused");
            continue;
        };
        let (auth, node, names) = (auth.clone(), node.clone(), names.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let hello = match timeout(HANDSHAKE_TIMEOUT, accept_edge(stream, &auth)).await {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return tracing::warn!(%addr, error = %e, "edge refused"),
                Err(_) => return tracing::warn!(%addr, "edge refused: no handshake in time"),
            };
            let (stream, name) = hello;
            let id = crate::config::node_id_of(&name);
            names.lock().expect("not poisoned").insert(id.0, name.clone());
            tracing::info!(edge = %name, %addr, "edge connected");
            let conn = next_conn();
            let (tx, rx) = mpsc::channel(PEER_SEND_QUEUE);
            let up = Cmd::PeerUp { id, name: name.clone(), addr: addr.to_string(), conn, tx };
            if node.send(up).await.is_err() {
                return;
            }
            let why = run_peer(stream, id, rx, node.clone(), max).await;
            tracing::info!(edge = %name, %addr, reason = %why, "edge disconnected");
            let _ = node.send(Cmd::PeerDown { id, conn, error: Some(why) }).await;
        });
    }
}

async fn accept_edge(mut stream: TcpStream, auth: &GatewayAuth) -> Result<(TcpStream, String), String> {
    let mut buf = Vec::new();
    loop {
        let need = peer::hello_needs(&buf);
        if need == 0 {
            break;
        }
        let at = buf.len();
        buf.resize(at + need, 0);
        stream.read_exact(&mut buf[at..]).await.map_err(|e| format!("handshake: {e}"))?;
        if buf.len() >= 8 && &buf[..8] != peer::HELLO_MAGIC {
            break;
        }
    }
    let mut answer = Vec::new();
    let hello = match peer::decode_hello(&buf) {
        Ok(h) => h,
        Err(e) => {
            peer::encode_answer(Verdict::BadHello, &auth.name, &e.to_string(), &mut answer);
            let _ = stream.write_all(&answer).await;
            return Err(format!("bad hello: {e}"));
        }
    };
    if let Err(e) = auth.check(&hello) {
        peer::encode_answer(Verdict::Unauthorized, &auth.name, &e, &mut answer);
        let _ = stream.write_all(&answer).await;
        return Err(e);
    }
    peer::encode_answer(Verdict::Welcome, &auth.name, "", &mut answer);
    stream.write_all(&answer).await.map_err(|e| e.to_string())?;
    Ok((stream, hello.name))
}

async fn serve_http(listener: TcpListener, api: Arc<Api>) {
    let slots = Arc::new(Semaphore::new(API_CONNECTIONS_MAX));
    loop {
        let Ok((mut stream, addr)) = listener.accept().await else { continue };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let busy = http::Response::error(503, "too_many_connections", true, "too many connections; retry shortly");
            let mut out = Vec::new();
            http::Response { close: true, ..busy }.encode(&mut out);
            tokio::spawn(async move {
                let _ = stream.write_all(&out).await;
            });
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            if let Err(e) = http_connection(stream, &api, permit).await {
                tracing::debug!(%addr, error = %e, "HTTP connection ended");
            }
        });
    }
}

async fn http_connection(mut stream: TcpStream, api: &Api, _permit: OwnedSemaphorePermit) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let parsed = loop {
            match http::parse(&buf, HTTP_BODY_MAX) {
                Ok(Some(x)) => break Ok(x),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let wait = if buf.is_empty() { IDLE_TIMEOUT } else { REQUEST_TIMEOUT };
            match timeout(wait, stream.read(&mut chunk)).await {
                Err(_) | Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(e),
            }
        };
        let (resp, keep_alive) = match parsed {
            Ok((req, used)) => {
                buf.drain(..used);
                let keep = req.keep_alive;
                (answer_http(&req, api).await, keep)
            }
            Err(e) => (e.response(), false),
        };
        let close = resp.close || !keep_alive;
        let mut out = Vec::with_capacity(resp.body.len() + 128);
        http::Response { close, ..resp }.encode(&mut out);
        stream.write_all(&out).await?;
        if close {
            return Ok(());
        }
        if buf.capacity() > 1 << 20 && buf.is_empty() {
            buf = Vec::with_capacity(4096);
        }
    }
}

async fn answer_http(req: &http::Request, api: &Api) -> http::Response {
    let call = match api::route(req) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let unavailable = || http::Response::error(503, "stopping", true, "the node is stopping");
    match call {
        Call::Health => match api.status().await {
            Some(s) => {
                let (state, reasons) = status::health(&s);
                let code = if state == "unhealthy" { 503 } else { 200 };
                http::Response::json(
                    code,
                    &serde_json::json!({ "status": state, "reasons": reasons, "node": s.node, "role": s.role }),
                )
            }
            None => unavailable(),
        },
        Call::Metrics => match api.status().await {
            Some(s) => http::Response::text(200, "text/plain; version=0.0.4", status::render_metrics(&s)),
            None => unavailable(),
        },
        Call::Status => match api.status().await {
            Some(s) => http::Response::json(200, &serde_json::to_value(&s).expect("status serializes")),
            None => unavailable(),
        },
        Call::Topics => match api.status().await {
            Some(s) => http::Response::json(200, &serde_json::json!({ "topics": s.topics })),
            None => unavailable(),
        },
        Call::Control(c) => {
            if api.node.send(Cmd::Control(c)).await.is_err() {
                return unavailable();
            }
            http::Response::json(200, &serde_json::json!({ "ok": true, "command": format!("{c:?}") }))
        }
        Call::Produce { topic, records, batch } => {
            let idx = match api.topic(&topic) {
                Ok(i) => i,
                Err((resp, _)) => return resp,
            };
            // Every record is handed over first, so one group commit covers the batch.
            let mut waiting = Vec::with_capacity(records.len());
            for (key, value) in records {
                let (tx, rx) = oneshot::channel();
                let reply: Reply<_> = Box::new(move |r| {
                    let _ = tx.send(r);
                });
                if api.node.send(Cmd::Produce { topic: idx, key, value, reply }).await.is_err() {
                    return unavailable();
                }
                waiting.push(rx);
            }
            let mut results = Vec::with_capacity(waiting.len());
            for rx in waiting {
                results.push(rx.await.unwrap_or(Err(ProduceError::Recovering)));
            }
            api::produce_http(&topic, &results, batch)
        }
        Call::Fetch { topic, from, max_records, max_bytes } => {
            let idx = match api.topic(&topic) {
                Ok(i) => i,
                Err((resp, _)) => return resp,
            };
            let result = api.fetch(idx, from, max_records, max_bytes).await;
            let names = api.names.lock().expect("not poisoned").clone();
            api::fetch_http(&result, &|id| names.get(&id).cloned().unwrap_or_else(|| format!("n{id}")))
        }
    }
}

async fn serve_binary(listener: TcpListener, api: Arc<Api>) {
    let slots = Arc::new(Semaphore::new(API_CONNECTIONS_MAX));
    loop {
        let Ok((stream, addr)) = listener.accept().await else { continue };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many binary-protocol connections; refused");
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = binary_connection(stream, api).await {
                tracing::debug!(%addr, error = %e, "binary connection ended");
            }
        });
    }
}

/// One answer on a binary connection, holding the in-flight permit of its request until
/// it is written, so that a client that does not read cannot grow the queue.
struct Answer {
    id: u32,
    resp: binproto::Response,
    close: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

async fn binary_connection(stream: TcpStream, api: Arc<Api>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Answer>();
    let writer = tokio::spawn(async move {
        let mut wr = BufWriter::new(wr);
        let mut out = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            let mut closing = false;
            while let Some(a) = next.take() {
                out.clear();
                binproto::encode_response(a.id, &a.resp, &mut out);
                wr.write_all(&out).await?;
                closing = a.close;
                if !closing {
                    next = rx.try_recv().ok();
                }
            }
            wr.flush().await?;
            if closing {
                wr.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
        }
        Ok(())
    });
    let in_flight = Arc::new(Semaphore::new(BINARY_IN_FLIGHT_MAX));
    let bad = |id: u32, message: String| {
        let resp = binproto::Response::Error { code: binproto::Code::BadRequest, retryable: false, message };
        Answer { id, resp, close: true, _permit: None }
    };
    loop {
        let mut prefix = [0u8; 4];
        match timeout(IDLE_TIMEOUT, rd.read_exact(&mut prefix)).await {
            Err(_) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
        let len = match binproto::frame_len(prefix, REQUEST_FRAME_MAX) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(bad(0, e.to_string()));
                break;
            }
        };
        let mut body = vec![0u8; len];
        match timeout(REQUEST_TIMEOUT, rd.read_exact(&mut body)).await {
            Ok(Ok(_)) => {}
            Err(_) => {
                let secs = REQUEST_TIMEOUT.as_secs();
                let _ = tx.send(bad(0, format!("a frame of {len} bytes did not arrive whole within {secs}s")));
                break;
            }
            Ok(Err(_)) => break,
        }
        let (id, req) = match binproto::decode_request(&body) {
            Ok(x) => x,
            Err((id, e)) => {
                let _ = tx.send(bad(id.unwrap_or(0), e.to_string()));
                break;
            }
        };
        let permit = in_flight.clone().acquire_owned().await.expect("never closed");
        let topic = match &req {
            binproto::Request::Produce { topic, .. } | binproto::Request::Fetch { topic, .. } => api.topic(topic),
        };
        let idx = match topic {
            Ok(idx) => idx,
            Err((_, resp)) => {
                let _ = tx.send(Answer { id, resp, close: false, _permit: Some(permit) });
                continue;
            }
        };
        let answer = tx.clone();
        let cmd = match req {
            binproto::Request::Produce { key, value, .. } => {
                let reply: Reply<_> = Box::new(move |r| {
                    let _ =
                        answer.send(Answer { id, resp: api::produce_binary(&r), close: false, _permit: Some(permit) });
                });
                Cmd::Produce { topic: idx, key, value, reply }
            }
            binproto::Request::Fetch { from, max_records, max_bytes, .. } => {
                let reply: Reply<_> = Box::new(move |r| {
                    let _ = answer.send(Answer { id, resp: api::fetch_binary(r), close: false, _permit: Some(permit) });
                });
                Cmd::Fetch { topic: idx, from, max_records, max_bytes, reply }
            }
        };
        if api.node.send(cmd).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer.await.map_err(std::io::Error::other)?
}

/// Waits for SIGINT or SIGTERM.
pub async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handlers can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The address a CLI should use to reach a daemon whose HTTP API listens on `http`.
pub fn admin_addr(http: SocketAddr) -> SocketAddr {
    if http.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), http.port())
    } else {
        http
    }
}

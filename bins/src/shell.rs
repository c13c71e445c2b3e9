//! The tokio shell: the default way `outpost run` and `outpost gateway` drive a node.
//!
//! One task owns the [`Driver`] (no locks around the core). Everything else talks to it
//! through one bounded command channel: the HTTP and binary API connections, the peer
//! connections, and the operator. Storage requests run on one dedicated thread, in order
//! (the core relies on it), and come back on their own channel, which the node task serves
//! first so completions are never stuck behind a full command queue. The shell holds no
//! protocol or storage logic: it moves bytes and time.

use crate::api::{self, Call};
use crate::binproto;
use crate::config::Settings;
use crate::driver::{Driver, Effects, Identity};
use crate::http;
use crate::peer::{self, PeerHello, Verdict};
use crate::status::{Link, PeerLink, Status};
use crate::store::Store;
use outpost_core::io::{
    Control, DiskError, DiskOpId, DiskRequest, DiskResponse, FetchError, Fetched, ProduceAck, ProduceError,
};
use outpost_core::types::{NodeId, Seq, TopicIdx};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout, Instant as TokioInstant};

use crate::limits::{
    Backoff, ShellBudget, ACCEPT_ERROR_PAUSE, BINARY_IN_FLIGHT_MAX, COMMAND_QUEUE, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT,
    PEER_CONNECTIONS_MAX, PEER_IDLE_TIMEOUT, PEER_SEND_QUEUE, READ_CHUNK, REQUEST_TIMEOUT,
};

type Reply<T> = Box<dyn FnOnce(T) + Send>;

enum Cmd {
    /// `ingress`: the value's share of the ingress budget, given back once the core holds
    /// the value (and accounts it).
    Produce {
        topic: TopicIdx,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        reply: Reply<Result<ProduceAck, ProduceError>>,
        ingress: Option<OwnedSemaphorePermit>,
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
        ingress: Option<OwnedSemaphorePermit>,
    },
}

/// What a peer connection may read: frames up to `max` bytes, each reserved whole from
/// the shared ingress budget before it is read.
#[derive(Clone)]
struct FrameLimits {
    max: usize,
    ingress: Arc<Semaphore>,
}

/// Permits for `bytes` of the ingress budget (a request or frame never exceeds the
/// budget: `ShellBudget` sizes it for two of the largest).
async fn reserve(ingress: &Arc<Semaphore>, bytes: usize) -> OwnedSemaphorePermit {
    let n = u32::try_from(bytes).unwrap_or(u32::MAX);
    ingress.clone().acquire_many_owned(n).await.expect("the ingress budget is never closed")
}

/// What the API connections share.
struct Api {
    node: mpsc::Sender<Cmd>,
    topics: BTreeMap<String, TopicIdx>,
    names: Arc<Mutex<BTreeMap<u64, String>>>,
    budget: ShellBudget,
    ingress: Arc<Semaphore>,
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
    let ingress = Arc::new(Semaphore::new(settings.shell.ingress_bytes_max));
    let api = Arc::new(Api {
        node: cmd_tx.clone(),
        topics: cfg.topics.iter().enumerate().map(|(i, t)| (t.name.clone(), TopicIdx(i as u16))).collect(),
        names: names.clone(),
        budget: settings.shell,
        ingress: ingress.clone(),
    });
    let frames = FrameLimits { max: crate::limits::peer_frame_max(&cfg), ingress };
    let shell_link =
        Link { process_memory_max: settings.max_memory, shell_reserve: settings.shell.reserve, ..Link::default() };
    tracing::info!(
        node = %settings.node_name, id = cfg.id.0, role = ?cfg.role, data_dir = %settings.data_dir.display(),
        http = %settings.http, binary = %settings.binary, config = ?settings.path,
        "starting"
    );
    // `outpost sync now` also cuts short the link's wait to reconnect.
    let relink = Arc::new(Notify::new());
    let node_task = tokio::spawn(node_loop(cfg.clone(), identity, shell_link, relink.clone(), cmd_rx, disk_rx, disk));
    let connections = Arc::new(Semaphore::new(settings.shell.connections_max));
    let http_task = tokio::spawn(serve_http(http_listener, api.clone(), connections.clone()));
    let binary_task = tokio::spawn(serve_binary(binary_listener, api.clone(), connections));
    let peer_task = match (peer_listener, &settings.gateway) {
        (Some(l), Some(g)) => {
            if g.tokens.is_empty() {
                tracing::warn!(
                    "gateway.tokens is empty: any edge that connects is accepted (fine on a laptop, not in production)"
                );
            }
            let gw = GatewayAuth { name: settings.node_name.clone(), tokens: g.tokens.clone() };
            Some(tokio::spawn(serve_peers::<TokioNet>(l, gw, cmd_tx.clone(), names.clone(), frames.clone())))
        }
        _ => None,
    };
    let uplink_task = match (&settings.cloud, cfg.upstream) {
        (Some(c), Some(up)) => {
            let hello = PeerHello { name: settings.node_name.clone(), token: c.token.clone().unwrap_or_default() };
            let (addr, name) = (c.gateway_addr.clone(), c.gateway_name.clone());
            Some(tokio::spawn(uplink::<TokioNet>(addr, name, up, hello, cmd_tx.clone(), frames, relink)))
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
    mut api_link: Link,
    relink: Arc<Notify>,
    mut cmds: mpsc::Receiver<Cmd>,
    mut disk_done: mpsc::UnboundedReceiver<(DiskOpId, Result<DiskResponse, DiskError>)>,
    disk: std::sync::mpsc::Sender<(DiskOpId, DiskRequest)>,
) {
    let mut fx = Effects::default();
    let mut driver = Driver::new(cfg, identity, &mut fx);
    let mut peers: BTreeMap<NodeId, Peer> = BTreeMap::new();
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
                    Cmd::Produce { topic, key, value, reply, ingress } => {
                        driver.produce(topic, key, value, reply, &mut fx);
                        drop(ingress);
                    }
                    Cmd::Fetch { topic, from, max_records, max_bytes, reply } => {
                        driver.fetch(topic, from, max_records, max_bytes, reply, &mut fx)
                    }
                    Cmd::Control(c) => {
                        if c == Control::SyncNow {
                            relink.notify_one();
                        }
                        driver.control(c, &mut fx)
                    }
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
                            // A reconnect after a silent loss, or two devices sharing one name
                            // (a cloned SD card): those would be one origin, and the gateway
                            // would keep one of two records with equal sequence numbers.
                            tracing::warn!(
                                peer = %name,
                                "a newer connection replaces a live one; if this repeats, two devices may share this name"
                            );
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
                    Cmd::Frame { from, bytes, ingress } => {
                        driver.message(from, bytes, &mut fx);
                        drop(ingress);
                    }
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

/// The TCP that the edge ↔ gateway link runs over: [`TokioNet`] in production. The link's
/// functions ([`uplink`], [`serve_peers`] and what they call) take it as a type parameter
/// so that the tests run the same code over turmoil's simulated network, where partitions,
/// crashes and minutes of backoff are deterministic and cost nothing.
trait Net: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    type Listener: Send + Sync + 'static;
    fn connect(addr: &str) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
    fn accept(listener: &Self::Listener) -> impl Future<Output = std::io::Result<(Self::Stream, SocketAddr)>> + Send;
}

/// The operating system's TCP, through tokio.
struct TokioNet;

impl Net for TokioNet {
    type Stream = TcpStream;
    type Listener = TcpListener;

    async fn connect(addr: &str) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        // Sync frames are small and someone waits for each: do not hold them back (Nagle).
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, addr))
    }
}

/// Called after a failed accept. A connection reset before it was accepted is only
/// skipped; anything else pauses the loop for [`ACCEPT_ERROR_PAUSE`], because the listener
/// stays ready and retrying at once would spin a core until descriptors are freed.
async fn after_accept_error(listener: &str, error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    let pause_ms = ACCEPT_ERROR_PAUSE.as_millis();
    tracing::warn!(listener, %error, pause_ms, "cannot accept connections (out of file descriptors?); pausing");
    sleep(ACCEPT_ERROR_PAUSE).await;
}

/// Moves frames between a peer's socket and the node until either side ends. Returns why
/// the connection ended.
async fn run_peer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    id: NodeId,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    node: mpsc::Sender<Cmd>,
    limits: FrameLimits,
) -> String {
    let (mut rd, wr) = tokio::io::split(stream);
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
            let total = match peer::frame_len(&header, limits.max) {
                Ok(n) => n,
                Err(e) => return format!("bad frame, connection closed: {e}"),
            };
            let ingress = reserve(&limits.ingress, total).await;
            let mut frame = vec![0u8; total];
            frame[..header.len()].copy_from_slice(&header);
            match timeout(REQUEST_TIMEOUT, rd.read_exact(&mut frame[header.len()..])).await {
                Err(_) => return "a frame did not arrive whole in time".to_string(),
                Ok(Err(e)) => return e.to_string(),
                Ok(Ok(_)) => {}
            }
            if node.send(Cmd::Frame { from: id, bytes: frame, ingress: Some(ingress) }).await.is_err() {
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

/// The edge's link to its gateway: connect, hand over to [`run_peer`], and reconnect on
/// the schedule of [`Backoff`] (doubling, jittered by the edge's name, started over only
/// after a link that lasted [`LINK_STABLE`](crate::limits::LINK_STABLE)).
async fn uplink<N: Net>(
    addr: String,
    name: String,
    id: NodeId,
    hello: PeerHello,
    node: mpsc::Sender<Cmd>,
    limits: FrameLimits,
    relink: Arc<Notify>,
) {
    let mut backoff = Backoff::new(&hello.name);
    let mut failures = 0u64;
    loop {
        backoff.attempt();
        match timeout(HANDSHAKE_TIMEOUT, connect_gateway::<N>(&addr, &hello))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        {
            Ok((stream, gw_name)) => {
                if gw_name != name {
                    tracing::warn!(expected = %name, answered = %gw_name, "the gateway's name differs from cloud.gateway_name");
                }
                tracing::info!(gateway = %addr, "connected to the gateway");
                failures = 0;
                let conn = next_conn();
                let (tx, rx) = mpsc::channel(PEER_SEND_QUEUE);
                let up = Cmd::PeerUp { id, name: name.clone(), addr: addr.clone(), conn, tx };
                if node.send(up).await.is_err() {
                    return;
                }
                let up_at = TokioInstant::now();
                let why = run_peer(stream, id, rx, node.clone(), limits.clone()).await;
                backoff.link_lasted(up_at.elapsed());
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
        tokio::select! {
            () = sleep(backoff.next_wait()) => {}
            () = relink.notified() => tracing::info!(gateway = %addr, "sync now: reconnecting at once"),
        }
    }
}

async fn connect_gateway<N: Net>(addr: &str, hello: &PeerHello) -> Result<(N::Stream, String), String> {
    let mut stream = N::connect(addr).await.map_err(|e| e.to_string())?;
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

async fn serve_peers<N: Net>(
    listener: N::Listener,
    auth: GatewayAuth,
    node: mpsc::Sender<Cmd>,
    names: Arc<Mutex<BTreeMap<u64, String>>>,
    limits: FrameLimits,
) {
    let auth = Arc::new(auth);
    let slots = Arc::new(Semaphore::new(PEER_CONNECTIONS_MAX));
    loop {
        let (stream, addr) = match N::accept(&listener).await {
            Ok(x) => x,
            Err(e) => {
                after_accept_error("gateway.listen", e).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many edge connections; refused");
            continue;
        };
        let (auth, node, names, limits) = (auth.clone(), node.clone(), names.clone(), limits.clone());
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
            let why = run_peer(stream, id, rx, node.clone(), limits.clone()).await;
            tracing::info!(edge = %name, %addr, reason = %why, "edge disconnected");
            let _ = node.send(Cmd::PeerDown { id, conn, error: Some(why) }).await;
        });
    }
}

async fn accept_edge<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    auth: &GatewayAuth,
) -> Result<(S, String), String> {
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

async fn serve_http(listener: TcpListener, api: Arc<Api>, slots: Arc<Semaphore>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                after_accept_error("api.http", e).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let busy = http::Response::error(503, "too_many_connections", true, "too many connections; retry shortly");
            let mut out = Vec::new();
            http::Response { close: true, ..busy }.encode(&mut out);
            // Best effort, without waiting: a flood of refused connections costs nothing.
            let _ = stream.try_write(&out);
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
    let body_max = api.budget.http_body_max;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        // The whole request is reserved from the ingress budget once its head says how
        // long it is, before its body is read; given back once it is answered.
        let mut reserved: Option<OwnedSemaphorePermit> = None;
        let parsed = loop {
            match http::parse(&buf, body_max) {
                Ok(Some(x)) => break Ok(x),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            let mut room = READ_CHUNK;
            if let Ok(Some(total)) = http::request_len(&buf, body_max) {
                let held = reserved.as_ref().map_or(0, |p| p.num_permits());
                if total > held {
                    let more = reserve(&api.ingress, total - held).await;
                    match &mut reserved {
                        Some(p) => p.merge(more),
                        None => reserved = Some(more),
                    }
                }
                room = room.min(total - buf.len());
            }
            let wait = if buf.is_empty() { IDLE_TIMEOUT } else { REQUEST_TIMEOUT };
            match timeout(wait, stream.read(&mut chunk[..room])).await {
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
        drop(reserved);
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
        Call::Show(show) => match api.status().await {
            Some(s) => api::show_http(show, &s),
            None => unavailable(),
        },
        Call::Control(c) => {
            if api.node.send(Cmd::Control(c)).await.is_err() {
                return unavailable();
            }
            api::control_http(c)
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
                if api.node.send(Cmd::Produce { topic: idx, key, value, reply, ingress: None }).await.is_err() {
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
            let result = api.fetch(idx, from, max_records, max_bytes.min(api.budget.fetch_bytes_max)).await;
            let names = api.names.lock().expect("not poisoned").clone();
            api::fetch_http(&result, &names)
        }
    }
}

async fn serve_binary(listener: TcpListener, api: Arc<Api>, slots: Arc<Semaphore>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                after_accept_error("api.binary", e).await;
                continue;
            }
        };
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
        let len = match binproto::frame_len(prefix, api.budget.request_frame_max) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(bad(0, e.to_string()));
                break;
            }
        };
        let ingress = reserve(&api.ingress, len).await;
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
                Cmd::Produce { topic: idx, key, value, reply, ingress: Some(ingress) }
            }
            binproto::Request::Fetch { from, max_records, max_bytes, .. } => {
                let reply: Reply<_> = Box::new(move |r| {
                    let _ = answer.send(Answer { id, resp: api::fetch_binary(r), close: false, _permit: Some(permit) });
                });
                let max_bytes = max_bytes.min(api.budget.fetch_bytes_max);
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

#[cfg(test)]
#[path = "link_tests.rs"]
mod link_tests;

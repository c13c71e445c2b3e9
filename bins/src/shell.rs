//! The tokio shell: the default way `outpost run` and `outpost gateway` drive a node.
//!
//! One task owns the [`Driver`] (no locks around the core). Everything else talks to it
//! through one bounded command channel: the HTTP and binary API connections, the peer
//! connections, and the operator. Storage requests run on one dedicated thread, in order
//! (the core relies on it), and come back on their own channel, which the node task serves
//! first so completions are never stuck behind a full command queue. The shell holds no
//! protocol or storage logic: it moves bytes and time.

use crate::api::{self, BrowserGuard, Call};
use crate::binproto;
use crate::config::{LinkSecurity, Settings};
use crate::driver::{Driver, Effects, Identity};
use crate::guard::{Admit, Budget, ConnId, ConnTable, RequestClock};
use crate::http;
use crate::keyed::{self, KeyedAnswer, KeyedCall};
use crate::limits::{
    Backoff, ShellBudget, ACCEPT_ERROR_PAUSE, BINARY_IN_FLIGHT_MAX, BUDGET_WAIT, COMMAND_QUEUE, HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT, LINGER, LINGER_BYTES_MAX, PEER_CONNECTIONS_MAX, PEER_FRAME_WAIT, PEER_IDLE_TIMEOUT, PEER_SEND_QUEUE,
    READ_CHUNK,
};
use crate::link::{Dialing, GatewayAuth, PeerState, Redial};
use crate::peer::{self, PeerHello};
use crate::status::{Link, Status};
use crate::store::Store;
use crate::tls::{self, ServerTls};
use outpost_core::config::{Role, TopicNames};
use outpost_core::io::{
    Control, DiskError, DiskOpId, DiskRequest, DiskResponse, FetchError, Fetched, ProduceAck, ProduceError,
};
use outpost_core::types::{NodeId, Seq, TopicIdx};
use rustls::pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout, timeout_at, Instant as TokioInstant};

type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// Now, as the guards take it: tokio's clock (which the link's tests pause and advance),
/// as a `std::time::Instant` value.
#[allow(clippy::disallowed_types)]
fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

enum Cmd {
    /// `ingress`: the value's share of the ingress budget, given back once the core holds
    /// the value (and accounts it).
    Produce {
        topic: TopicIdx,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        reply: Reply<Result<ProduceAck, ProduceError>>,
        ingress: Option<Reservation>,
    },
    /// A batch of produces, handed to the core in order and answered once.
    ProduceBatch {
        topic: TopicIdx,
        records: Vec<binproto::KeyValue>,
        reply: Reply<Vec<Result<ProduceAck, ProduceError>>>,
        ingress: Option<Reservation>,
    },
    Fetch {
        topic: TopicIdx,
        from: Seq,
        max_records: u32,
        max_bytes: u32,
        reply: Reply<Result<Fetched, FetchError>>,
    },
    /// A key of a keyed topic (`name` for answers), or its conflict log.
    Keyed {
        topic: TopicIdx,
        name: String,
        call: KeyedCall,
        reply: Reply<KeyedAnswer>,
        ingress: Option<Reservation>,
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
        ingress: Option<Reservation>,
    },
}

/// A [`Budget`] shared by connection tasks: a reservation is taken whole, and a task that
/// waits for room wakes whenever some is given back (no queue: nothing waits behind a
/// large reservation, see [`Budget`]).
struct SharedBudget {
    budget: Mutex<Budget>,
    freed: Notify,
}

/// Bytes of a [`SharedBudget`], given back when dropped.
struct Reservation {
    from: Arc<SharedBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.from.budget.lock().expect("not poisoned").release(self.bytes);
        self.from.freed.notify_waiters();
    }
}

impl SharedBudget {
    fn new(max: usize) -> Arc<SharedBudget> {
        Arc::new(SharedBudget { budget: Mutex::new(Budget::new(max)), freed: Notify::new() })
    }

    fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let taken = self.budget.lock().expect("not poisoned").try_reserve(bytes);
        taken.then(|| Reservation { from: self.clone(), bytes })
    }

    /// `bytes` of the budget, waiting up to `wait` for them; None if they did not free up
    /// in time. `bytes` never exceeds the budget: the listeners refuse larger requests.
    async fn reserve_within(self: &Arc<Self>, bytes: usize, wait: std::time::Duration) -> Option<Reservation> {
        assert!(self.budget.lock().expect("not poisoned").can_ever_hold(bytes), "{bytes} bytes can never fit");
        let deadline = TokioInstant::now() + wait;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the attempt, so a release between the two is not missed.
            freed.as_mut().enable();
            if let Some(r) = self.try_reserve(bytes) {
                return Some(r);
            }
            if timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }
}

/// The connections of one listener ([`ConnTable`]) and the signal that closes each.
struct Slots {
    listener: &'static str,
    table: Mutex<ConnTable<Arc<Notify>>>,
}

/// One admitted connection: its place in its listener's table until dropped.
struct Slot {
    slots: Arc<Slots>,
    id: ConnId,
    evicted: Arc<Notify>,
}

impl Slots {
    fn new(listener: &'static str, max: usize) -> Arc<Slots> {
        Arc::new(Slots { listener, table: Mutex::new(ConnTable::new(max)) })
    }

    /// A place for a new connection, made by dropping the slowest or longest idle one if
    /// the listener is full; None when every connection is busy.
    fn admit(self: &Arc<Self>, addr: SocketAddr) -> Option<Slot> {
        let evicted = Arc::new(Notify::new());
        let admitted = self.table.lock().expect("not poisoned").admit(now(), evicted.clone());
        match admitted {
            Admit::Yes { id, evicted: victim } => {
                if let Some((_, close)) = victim {
                    tracing::debug!(listener = self.listener, %addr, "dropped the slowest connection to admit a new one");
                    close.notify_one();
                }
                Some(Slot { slots: self.clone(), id, evicted })
            }
            Admit::No => {
                tracing::warn!(listener = self.listener, %addr, "every connection is busy; refused a new one");
                None
            }
        }
    }

    /// (open now, dropped for room, refused) connections.
    fn counts(&self) -> (u64, u64, u64) {
        let t = self.table.lock().expect("not poisoned");
        (t.len() as u64, t.evicted(), t.refused())
    }
}

impl Slot {
    /// `n` more bytes of a request came (the first ones start it).
    fn reading(&self, n: usize) {
        self.slots.table.lock().expect("not poisoned").reading(self.id, now(), n);
    }

    fn busy(&self) {
        self.slots.table.lock().expect("not poisoned").busy(self.id);
    }

    fn idle(&self) {
        self.slots.table.lock().expect("not poisoned").idle(self.id, now());
    }

    fn idle_unless_reading(&self) {
        self.slots.table.lock().expect("not poisoned").idle_unless_reading(self.id, now());
    }

    /// Resolves when the listener dropped this connection to admit another.
    async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.table.lock().expect("not poisoned").remove(self.id);
    }
}

/// What a peer connection may read: frames up to `max` bytes, each reserved whole from the
/// peers' ingress budget (not the applications') before it is read.
#[derive(Clone)]
struct FrameLimits {
    max: usize,
    ingress: Arc<SharedBudget>,
}

/// What the API connections share.
struct Api {
    node: mpsc::Sender<Cmd>,
    role: Role,
    topics: TopicNames,
    names: Arc<Mutex<BTreeMap<u64, String>>>,
    budget: ShellBudget,
    ingress: Arc<SharedBudget>,
    /// Fetch answers held at once, over all connections (`ShellBudget::fetch_answers_max`).
    fetch_answers: Arc<Semaphore>,
    browser: BrowserGuard,
    auth: api::ApiAuth,
}

impl Api {
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

/// A peer as the node task tracks it: its connection, if any, and what the status says of it.
struct Peer {
    conn: Option<(u64, mpsc::Sender<Vec<u8>>)>,
    state: PeerState,
}

impl Peer {
    fn new(name: String, addr: String) -> Peer {
        Peer { conn: None, state: PeerState::new(name, addr, now()) }
    }
}

/// The listeners' connection tables, for the status.
#[derive(Clone)]
struct ApiSlots {
    http: Arc<Slots>,
    binary: Arc<Slots>,
}

/// Runs the daemon (edge) or gateway described by `settings` until `shutdown` resolves.
/// Returns an error only when it cannot start (a port in use, a data directory locked).
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    let cfg = settings.node.clone();
    let store = Store::open(&settings.data_dir, &cfg.topics).map_err(|e| e.to_string())?;
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
    // The peers a gateway knows by name, so that status names a subscriber it has not
    // heard from yet.
    if let Some(g) = &settings.gateway {
        known.extend(g.tokens.keys().chain(&g.relays).map(|n| (crate::config::node_id_of(n), n.clone())));
    }
    names.lock().expect("not poisoned").extend(known.iter().map(|(k, v)| (k.0, v.clone())));
    let seals = Identity::seals_of(&settings)?;
    let identity =
        Identity { name: settings.node_name.clone(), location: settings.location.clone(), names: known, seals };

    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (disk_tx, disk_rx) = mpsc::unbounded_channel();
    let disk = spawn_disk_thread(store, disk_tx);
    let budget = settings.shell;
    let api = Arc::new(Api {
        node: cmd_tx.clone(),
        role: cfg.role,
        topics: cfg.topic_names(),
        names: names.clone(),
        budget,
        ingress: SharedBudget::new(budget.ingress_bytes_max),
        fetch_answers: Arc::new(Semaphore::new(budget.fetch_answers_max)),
        browser: settings.browser.clone(),
        auth: settings.api_auth.clone(),
    });
    let frames = FrameLimits {
        max: crate::limits::peer_frame_max(&cfg),
        ingress: SharedBudget::new(budget.peer_ingress_bytes_max),
    };
    assert!(frames.max <= budget.peer_ingress_bytes_max, "the config loader sizes the peers' budget for their frames");
    let slots = ApiSlots {
        http: Slots::new("api.http", budget.http_connections_max),
        binary: Slots::new("api.binary", budget.binary_connections_max),
    };
    let shell_link = Link { process_memory_max: settings.max_memory, shell_reserve: budget.reserve, ..Link::default() };
    tracing::info!(
        node = %settings.node_name, id = cfg.id.0, role = ?cfg.role, data_dir = %settings.data_dir.display(),
        http = %settings.http, binary = %settings.binary, config = ?settings.path,
        "starting"
    );
    // `outpost sync now` also cuts short the link's wait to reconnect.
    let relink = Arc::new(Notify::new());
    let node_task = tokio::spawn(node_loop(
        cfg.clone(),
        identity,
        (shell_link, slots.clone()),
        relink.clone(),
        cmd_rx,
        disk_rx,
        disk,
    ));
    let http_task = tokio::spawn(serve_http(http_listener, api.clone(), slots.http));
    let binary_task = tokio::spawn(serve_binary(binary_listener, api.clone(), slots.binary));
    let creds = link_credentials(&settings)?;
    let auth = Arc::new(Mutex::new(match &settings.gateway {
        Some(g) => GatewayAuth::new(&settings.node_name, g.tokens.clone(), g.open),
        None => GatewayAuth::new(&settings.node_name, BTreeMap::new(), false),
    }));
    let (creds_tx, creds) = watch::channel(creds);
    let reload_task =
        settings.path.clone().map(|path| tokio::spawn(reload_on_hangup(path, cfg.role, auth.clone(), creds_tx)));
    let peer_task = match (peer_listener, &settings.gateway) {
        (Some(l), Some(g)) => {
            if g.open {
                tracing::warn!(
                    "gateway.open = true: edges whose names are not in gateway.tokens are accepted without a token; \
                     any device that reaches gateway.listen can send as any such name (a trusted network only)"
                );
            } else if g.tokens.is_empty() && creds.borrow().server.is_none() {
                tracing::warn!(
                    "gateway.tokens is empty and gateway.open is off: every edge will be refused; add a token per \
                     edge, or set gateway.open = true on a trusted network"
                );
            }
            let peers = (cmd_tx.clone(), names.clone(), frames.clone());
            Some(tokio::spawn(serve_peers::<TokioNet>(l, auth.clone(), creds.clone(), peers)))
        }
        _ => None,
    };
    let uplink_task = match (&settings.cloud, cfg.upstream) {
        (Some(c), Some(up)) => {
            let hello = PeerHello { name: settings.node_name.clone(), token: c.token.clone().unwrap_or_default() };
            let backoff = Backoff::from_config(&settings.node_name, &cfg.sync);
            let redial = Redial::new(&c.gateway_addr, &c.gateway_name, backoff);
            Some(tokio::spawn(uplink::<TokioNet>(up, hello, creds.clone(), cmd_tx.clone(), frames, relink, redial)))
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
    if let Some(t) = reload_task {
        t.abort();
    }
    Ok(())
}

/// What secures this node's links, as last (re)loaded from `[tls]`.
#[derive(Clone, Debug, Default)]
struct LinkCredentials {
    /// How to dial the gateway above; None: in clear text.
    client: Option<Arc<rustls::ClientConfig>>,
    /// How to accept edges; None: in clear text.
    server: Option<ServerTls>,
}

/// Reads the files of `[tls]` into the configurations the links run with, and says at
/// every start when links are in clear text.
fn link_credentials(settings: &Settings) -> Result<LinkCredentials, String> {
    match &settings.links {
        LinkSecurity::Plain { explicit: true } => {
            tracing::warn!(
                "tls.plaintext = true: links to other nodes are in clear text, readable and forgeable by anyone on \
                 the network (tokens included); for a test network only"
            );
            Ok(LinkCredentials::default())
        }
        LinkSecurity::Plain { explicit: false } => {
            if settings.cloud.is_some() || settings.gateway.is_some() {
                tracing::info!("links stay on this host (loopback addresses): clear text, no [tls] needed");
            }
            Ok(LinkCredentials::default())
        }
        LinkSecurity::Tls(files) => Ok(LinkCredentials {
            client: settings.cloud.as_ref().map(|_| tls::client_config(files)).transpose()?,
            server: settings.gateway.as_ref().map(|_| tls::server_config(files)).transpose()?,
        }),
    }
}

/// On SIGHUP, reads the config file again and takes its `gateway.tokens` and the files of
/// `[tls]` (a new revocation list, a renewed certificate) without a restart. Links already
/// up are checked again: an edge whose certificate was revoked, or whose token changed, is
/// disconnected. A file that does not load is logged, and the credentials in use stay.
async fn reload_on_hangup(
    path: std::path::PathBuf,
    role: Role,
    auth: Arc<Mutex<GatewayAuth>>,
    creds: watch::Sender<LinkCredentials>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return tracing::warn!("cannot catch SIGHUP: tokens and certificates change only with a restart");
    };
    while hangups.recv().await.is_some() {
        let loaded = crate::config::load(Some(&path), role)
            .map_err(|e| e.to_string())
            .and_then(|s| link_credentials(&s).map(|c| (s, c)));
        let (settings, fresh) = match loaded {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the tokens and certificates in use stay");
                continue;
            }
        };
        let current = creds.borrow().clone();
        if current.client.is_some() != fresh.client.is_some() || current.server.is_some() != fresh.server.is_some() {
            tracing::error!("reload refused: switching links between clear text and TLS needs a restart");
            continue;
        }
        // The tokens first: the change of credentials wakes the linked edges' checks.
        let tokens = settings.gateway.map(|g| g.tokens);
        let count = tokens.as_ref().map(BTreeMap::len);
        if let Some(tokens) = tokens {
            auth.lock().expect("not poisoned").set_tokens(tokens);
        }
        creds.send_replace(fresh);
        match count {
            Some(count) => {
                tracing::info!(config = %path.display(), tokens = count, "reloaded gateway.tokens and the files of [tls]")
            }
            None => tracing::info!(config = %path.display(), "reloaded the files of [tls]"),
        }
    }
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
    (mut api_link, slots): (Link, ApiSlots),
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
                    Cmd::ProduceBatch { topic, records, reply, ingress } => {
                        driver.produce_batch(topic, records, reply, &mut fx);
                        drop(ingress);
                    }
                    Cmd::Fetch { topic, from, max_records, max_bytes, reply } => {
                        driver.fetch(topic, from, max_records, max_bytes, reply, &mut fx)
                    }
                    Cmd::Keyed { topic, name, call, reply, ingress } => {
                        driver.keyed(topic, &name, call, reply, &mut fx);
                        drop(ingress);
                    }
                    Cmd::Control(c) => {
                        if c == Control::SyncNow {
                            relink.notify_one();
                        }
                        driver.control(c, &mut fx)
                    }
                    Cmd::Status(tx) => {
                        api_link.peers = peers.values().map(|p| p.state.status(now())).collect();
                        let (h, b) = (slots.http.counts(), slots.binary.counts());
                        (api_link.api_connections, api_link.api_connections_evicted, api_link.api_connections_refused) =
                            (h.0 + b.0, h.1 + b.1, h.2 + b.2);
                        let _ = tx.send(driver.status(api_link.clone()));
                    }
                    Cmd::PeerUp { id, name, addr, conn, tx } => {
                        let p = peers.entry(id).or_insert_with(|| Peer::new(name.clone(), addr.clone()));
                        if p.conn.is_some() {
                            // A reconnect after a silent loss, or two devices sharing one name
                            // (a cloned SD card): those would be one origin, and the gateway
                            // would keep one of two records with equal sequence numbers.
                            tracing::warn!(
                                peer = %name,
                                "a newer connection replaces a live one; if this repeats, two devices may share this name"
                            );
                        }
                        p.state.up(now());
                        (p.state.name, p.state.addr, p.conn) = (name.clone(), addr, Some((conn, tx)));
                        driver.identity.names.insert(id, name);
                        driver.control(Control::LinkUp, &mut fx);
                    }
                    Cmd::PeerDown { id, conn, error } => {
                        if let Some(p) = peers.get_mut(&id) {
                            if p.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
                                p.conn = None;
                                p.state.down(now(), error);
                            }
                        }
                    }
                    Cmd::LinkFailed { id, name, addr, error } => {
                        peers.entry(id).or_insert_with(|| Peer::new(name, addr)).state.dial_failed(error);
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
            let clock = RequestClock::start(now(), header.len());
            let total = match peer::frame_len(&header, limits.max) {
                Ok(n) => n,
                Err(e) => return format!("bad frame, connection closed: {e}"),
            };
            // The frame arrives whole by its deadline (a rate, not an idle timer), whether it
            // is kept or, when the peers' budget stays full, read past and dropped (the sync
            // protocol resends it).
            let deadline = TokioInstant::from_std(RequestClock::start(clock.started(), total).deadline());
            let Some(ingress) = limits.ingress.reserve_within(total, PEER_FRAME_WAIT).await else {
                tracing::debug!(peer = %id, bytes = total, "the peers' ingress budget stayed full; dropping a frame");
                if timeout_at(deadline, skip(&mut rd, total - header.len())).await.map_or(true, |r| r.is_err()) {
                    return "a frame did not arrive whole in time".to_string();
                }
                continue;
            };
            let mut frame = vec![0u8; total];
            frame[..header.len()].copy_from_slice(&header);
            match timeout_at(deadline, rd.read_exact(&mut frame[header.len()..])).await {
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

/// Reads and drops `n` bytes.
async fn skip<R: AsyncRead + Unpin>(rd: &mut R, mut n: usize) -> std::io::Result<()> {
    let mut scratch = [0u8; 4096];
    while n > 0 {
        let want = n.min(scratch.len());
        rd.read_exact(&mut scratch[..want]).await?;
        n -= want;
    }
    Ok(())
}

/// The edge's link to its gateway: connect, hand over to [`run_peer`], and reconnect when
/// [`Redial`] says (doubling from `sync.backoff_min` to `sync.backoff_max`, jittered by the
/// edge's name, started over only after a stable link).
async fn uplink<N: Net>(
    id: NodeId,
    hello: PeerHello,
    creds: watch::Receiver<LinkCredentials>,
    node: mpsc::Sender<Cmd>,
    limits: FrameLimits,
    relink: Arc<Notify>,
    mut redial: Redial,
) {
    let addr = redial.addr().to_owned();
    loop {
        redial.attempt();
        let client = creds.borrow().client.clone();
        let wait = match timeout(HANDSHAKE_TIMEOUT, connect_gateway::<N>(&addr, redial.name(), &hello, client))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        {
            Ok((stream, gw_name)) => {
                redial.connected(&gw_name);
                let conn = next_conn();
                let (tx, rx) = mpsc::channel(PEER_SEND_QUEUE);
                let up = Cmd::PeerUp { id, name: redial.name().to_owned(), addr: addr.clone(), conn, tx };
                if node.send(up).await.is_err() {
                    return;
                }
                let up_at = TokioInstant::now();
                let why = run_peer(stream, id, rx, node.clone(), limits.clone()).await;
                let wait = redial.lost(&why, up_at.elapsed());
                if node.send(Cmd::PeerDown { id, conn, error: Some(why) }).await.is_err() {
                    return;
                }
                wait
            }
            Err(error) => {
                let wait = redial.failed(&error);
                let failed = Cmd::LinkFailed { id, name: redial.name().to_owned(), addr: addr.clone(), error };
                if node.send(failed).await.is_err() {
                    return;
                }
                wait
            }
        };
        tokio::select! {
            () = sleep(wait) => {}
            () = relink.notified() => redial.dial_now(),
        }
    }
}

/// A link's bytes: TCP, or TLS over it.
trait LinkIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> LinkIo for T {}
type LinkStream = Box<dyn LinkIo>;

/// Connects to the gateway `name` at `addr` (over TLS with `client`, verifying that its
/// certificate is `name`'s) and says hello. Returns the link and the name the gateway gave.
async fn connect_gateway<N: Net>(
    addr: &str,
    name: &str,
    hello: &PeerHello,
    client: Option<Arc<rustls::ClientConfig>>,
) -> Result<(LinkStream, String), String> {
    let mut dialing = Dialing::new(hello)?;
    let tcp = N::connect(addr).await.map_err(|e| e.to_string())?;
    let mut stream: LinkStream = match client {
        Some(config) => {
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(tls::server_name(name)?, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            Box::new(tls)
        }
        None => Box::new(tcp),
    };
    stream.write_all(dialing.hello()).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    loop {
        if let Some(outcome) = dialing.outcome() {
            return outcome.map(|gw| (stream, gw));
        }
        let mut answer = vec![0; dialing.needs()];
        stream.read_exact(&mut answer).await.map_err(|e| format!("handshake: {e}"))?;
        dialing.received(&answer);
    }
}

/// Where a gateway's accepted links go: the node, the names it shows in status, and the
/// frames' limits.
type PeerSinks = (mpsc::Sender<Cmd>, Arc<Mutex<BTreeMap<u64, String>>>, FrameLimits);

async fn serve_peers<N: Net>(
    listener: N::Listener,
    auth: Arc<Mutex<GatewayAuth>>,
    creds: watch::Receiver<LinkCredentials>,
    (node, names, limits): PeerSinks,
) {
    let slots = Slots::new("gateway.listen", PEER_CONNECTIONS_MAX);
    loop {
        let (stream, addr) = match N::accept(&listener).await {
            Ok(x) => x,
            Err(e) => {
                after_accept_error("gateway.listen", e).await;
                continue;
            }
        };
        // A connection still in its handshake is "reading" (and may be dropped for a
        // newcomer once it is slow); a linked edge is "busy" and never is.
        let Some(slot) = slots.admit(addr) else { continue };
        slot.reading(0);
        let (auth, node, names, limits) = (auth.clone(), node.clone(), names.clone(), limits.clone());
        let creds = creds.clone();
        tokio::spawn(async move {
            let server = creds.borrow().server.clone();
            let handshake = tokio::select! {
                r = timeout(HANDSHAKE_TIMEOUT, accept_edge(stream, addr.ip(), &auth, server)) => r,
                () = slot.evicted() => return tracing::debug!(%addr, "a slow handshake was dropped for a newer one"),
            };
            let (stream, hello, chain) = match handshake {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return tracing::warn!(%addr, error = %e, "edge refused"),
                Err(_) => return tracing::warn!(%addr, "edge refused: no handshake in time"),
            };
            slot.busy();
            let name = hello.name.clone();
            let id = crate::config::node_id_of(&name);
            names.lock().expect("not poisoned").insert(id.0, name.clone());
            tracing::info!(edge = %name, %addr, "edge connected");
            let conn = next_conn();
            let (tx, rx) = mpsc::channel(PEER_SEND_QUEUE);
            let up = Cmd::PeerUp { id, name: name.clone(), addr: addr.to_string(), conn, tx };
            if node.send(up).await.is_err() {
                return;
            }
            let why = tokio::select! {
                why = run_peer(stream, id, rx, node.clone(), limits.clone()) => why,
                why = no_longer_accepted(creds, &auth, &hello, chain) => {
                    tracing::warn!(edge = %name, %addr, reason = %why, "edge disconnected after a reload");
                    why
                }
            };
            tracing::info!(edge = %name, %addr, reason = %why, "edge disconnected");
            let _ = node.send(Cmd::PeerDown { id, conn, error: Some(why) }).await;
            drop(slot);
        });
    }
}

/// Resolves, with the reason, once a reload stops accepting a linked edge: its certificate
/// chain (`chain`, over TLS) no longer verifies, or its token no longer matches.
async fn no_longer_accepted(
    mut creds: watch::Receiver<LinkCredentials>,
    auth: &Mutex<GatewayAuth>,
    hello: &PeerHello,
    chain: Option<Vec<CertificateDer<'static>>>,
) -> String {
    loop {
        if creds.changed().await.is_err() {
            return std::future::pending().await;
        }
        let verdict = match (&chain, &creds.borrow_and_update().server) {
            (Some(chain), Some(server)) => {
                server.still_accepts(chain).map_err(|e| format!("its certificate is no longer accepted: {e}"))
            }
            (Some(_), None) => Err("the gateway no longer runs TLS".to_owned()),
            (None, _) => auth.lock().expect("not poisoned").still_accepts(hello),
        };
        if let Err(why) = verdict {
            return why;
        }
    }
}

/// Why a TLS handshake with an edge failed, in the words an operator acts on.
fn tls_refusal(e: std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidMessage(_)) => {
            format!("not TLS ({e}): an edge in clear text? give it [tls] with the fleet's tls.ca")
        }
        Some(rustls::Error::InvalidCertificate(_)) => format!(
            "TLS: {e}: its certificate is not one of the fleet's, or has expired or been revoked (`outpost certs`)"
        ),
        _ => format!("TLS: {e}"),
    }
}

/// The certificate chain an edge proved over TLS (None: it sent none, or the link is in
/// clear text).
type ProvenChain = Option<Vec<CertificateDer<'static>>>;

/// A gateway's side of a new link: TLS with `server` (else clear text), then the edge's
/// hello, answered. Returns the link, the hello and the chain the edge proved.
async fn accept_edge<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    tcp: S,
    from: IpAddr,
    auth: &Mutex<GatewayAuth>,
    server: Option<ServerTls>,
) -> Result<(LinkStream, PeerHello, ProvenChain), String> {
    let (mut stream, chain): (LinkStream, ProvenChain) = match server {
        Some(server) => {
            let tls = tokio_rustls::TlsAcceptor::from(server.config).accept(tcp).await.map_err(tls_refusal)?;
            let chain = tls.get_ref().1.peer_certificates().map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
            (Box::new(tls), chain)
        }
        None => (Box::new(tcp), None),
    };
    let mut buf = Vec::new();
    loop {
        let need = GatewayAuth::hello_needs(&buf);
        if need == 0 {
            break;
        }
        let at = buf.len();
        buf.resize(at + need, 0);
        stream.read_exact(&mut buf[at..]).await.map_err(|e| format!("handshake: {e}"))?;
    }
    let end_entity = chain.as_ref().and_then(|c| c.first());
    let answer = auth.lock().expect("not poisoned").answer(&buf, from, now(), end_entity);
    match answer.result {
        Ok(hello) => {
            stream.write_all(&answer.bytes).await.map_err(|e| e.to_string())?;
            stream.flush().await.map_err(|e| e.to_string())?;
            Ok((stream, hello, chain))
        }
        Err(logged) => {
            let _ = stream.write_all(&answer.bytes).await;
            let _ = stream.flush().await;
            Err(logged)
        }
    }
}

async fn serve_http(listener: TcpListener, api: Arc<Api>, slots: Arc<Slots>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                after_accept_error("api.http", e).await;
                continue;
            }
        };
        let Some(slot) = slots.admit(addr) else {
            let busy =
                http::Response::error(503, "too_many_connections", true, "every connection is busy; retry shortly");
            let mut out = Vec::new();
            http::Response { close: true, ..busy }.encode(&mut out);
            // Best effort, without waiting: a flood of refused connections costs nothing.
            let _ = stream.try_write(&out);
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            if let Err(e) = http_connection(stream, &api, slot).await {
                tracing::debug!(%addr, error = %e, "HTTP connection ended");
            }
        });
    }
}

/// How reading one HTTP request ended.
enum Read {
    /// A whole request, and the bytes it took of the buffer; its body's reservation.
    Request(Box<http::Request>, usize, Option<Reservation>),
    /// An answer to send before closing (a refusal, a late or busy request).
    Refuse(http::Response),
    /// The connection ended (closed by the client, idle too long, dropped for room).
    Ended,
}

async fn http_connection(mut stream: TcpStream, api: &Api, slot: Slot) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let (req, used, reservation) = match read_request(&mut stream, api, &slot, &mut buf, &mut chunk).await? {
            Read::Request(req, used, r) => (req, used, r),
            Read::Refuse(resp) => {
                let mut out = Vec::new();
                http::Response { close: true, ..resp }.encode(&mut out);
                stream.write_all(&out).await?;
                return linger(stream).await;
            }
            Read::Ended => return Ok(()),
        };
        slot.busy();
        buf.drain(..used);
        let (resp, fetch_permit) = answer_http(&req, api).await;
        drop(reservation);
        let close = resp.close || !req.keep_alive;
        let mut out = Vec::with_capacity(resp.body.len() + 128);
        http::Response { close, ..resp }.encode(&mut out);
        stream.write_all(&out).await?;
        drop(fetch_permit);
        if close {
            return Ok(());
        }
        slot.idle();
        if buf.capacity() > 1 << 20 && buf.is_empty() {
            buf = Vec::with_capacity(4096);
        }
    }
}

/// Reads one request into `buf`: the head, then — once the head says how long the request
/// is — a reservation of all of it from the ingress budget (a request that could never fit
/// was refused by the parser; one that does not fit within [`BUDGET_WAIT`] is answered
/// "busy"), `100 Continue` if the client waits for it, then the body. The whole request
/// must arrive by its [`RequestClock`] deadline; a connection with no request started is
/// closed after [`IDLE_TIMEOUT`]; either may be dropped for a newer connection.
async fn read_request(
    stream: &mut TcpStream,
    api: &Api,
    slot: &Slot,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
) -> std::io::Result<Read> {
    let body_max = api.budget.http_body_max;
    let mut clock = (!buf.is_empty()).then(|| RequestClock::start(now(), buf.len()));
    if clock.is_some() {
        slot.reading(buf.len());
    }
    let mut reservation: Option<Reservation> = None;
    let mut continued = false;
    loop {
        match http::parse(buf, body_max) {
            Ok(Some((req, used))) => return Ok(Read::Request(Box::new(req), used, reservation)),
            Ok(None) => {}
            Err(e) => return Ok(Read::Refuse(e.response())),
        }
        let mut room = chunk.len();
        if let Ok(Some(info)) = http::head_info(buf, body_max) {
            if reservation.is_none() {
                reservation = api.ingress.reserve_within(info.total, BUDGET_WAIT).await;
                if reservation.is_none() {
                    return Ok(Read::Refuse(api::busy_ingress()));
                }
            }
            if info.expect_continue && !continued {
                stream.write_all(http::CONTINUE).await?;
                continued = true;
            }
            room = room.min(info.total - buf.len());
        }
        let deadline = clock.map_or_else(|| now() + IDLE_TIMEOUT, |c| c.deadline());
        let read = tokio::select! {
            r = timeout_at(TokioInstant::from_std(deadline), stream.read(&mut chunk[..room])) => r,
            () = slot.evicted() => return Ok(Read::Ended),
        };
        match read {
            Err(_) if clock.is_some() => {
                let took = clock.map_or(std::time::Duration::ZERO, |c| now().saturating_duration_since(c.started()));
                return Ok(Read::Refuse(api::request_late(took)));
            }
            Err(_) | Ok(Ok(0)) => return Ok(Read::Ended),
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                slot.reading(n);
                match &mut clock {
                    Some(c) => c.received(n),
                    None => clock = Some(RequestClock::start(now(), n)),
                }
            }
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// After an answer that closes the connection: stop writing, then read and drop what the
/// client is still sending for a moment, so that it reads the answer instead of a reset.
async fn linger(mut stream: TcpStream) -> std::io::Result<()> {
    stream.shutdown().await?;
    let mut scratch = [0u8; 4096];
    let mut left = LINGER_BYTES_MAX;
    let _ = timeout(LINGER, async {
        while left > 0 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    Ok(())
}

/// Answers a whole request; a fetch's answer comes with the permit that counts it among
/// the fetch answers the shell holds, to be dropped once it is written.
async fn answer_http(req: &http::Request, api: &Api) -> (http::Response, Option<OwnedSemaphorePermit>) {
    if let Err(resp) = api.browser.check(req) {
        return (resp, None);
    }
    let call = match api::route(req) {
        Ok(c) => c,
        Err(resp) => return (resp, None),
    };
    if let Err(resp) = api.auth.check_http(req, &call) {
        return (resp, None);
    }
    let unavailable = || http::Response::error(503, "stopping", true, "the node is stopping");
    let resp = match call {
        Call::Show(show) => match api.status().await {
            Some(s) => api::show_http(show, &s),
            None => unavailable(),
        },
        Call::Control(c) => {
            if let Some(refused) = api::control_refused(api.role) {
                return (refused, None);
            }
            if api.node.send(Cmd::Control(c)).await.is_err() {
                return (unavailable(), None);
            }
            api::control_http(c)
        }
        Call::Produce { topic, records, batch } => {
            let idx = match api::produce_topic(&api.topics, &topic) {
                Ok(i) => i,
                Err((resp, _)) => return (resp, None),
            };
            // The records go over together, so one group commit usually covers them.
            let n = records.len();
            let (tx, rx) = oneshot::channel();
            let reply: Reply<_> = Box::new(move |r| {
                let _ = tx.send(r);
            });
            if api.node.send(Cmd::ProduceBatch { topic: idx, records, reply, ingress: None }).await.is_err() {
                return (unavailable(), None);
            }
            let results = rx.await.unwrap_or_else(|_| vec![Err(ProduceError::Recovering); n]);
            api::produce_http(&topic, &results, batch)
        }
        Call::Keyed { topic, call } => {
            let idx = match api::produce_topic(&api.topics, &topic) {
                Ok(i) => i,
                Err((resp, _)) => return (resp, None),
            };
            let (tx, rx) = oneshot::channel();
            let reply: Reply<_> = Box::new(move |r| {
                let _ = tx.send(r);
            });
            let cmd = Cmd::Keyed { topic: idx, name: topic.clone(), call, reply, ingress: None };
            if api.node.send(cmd).await.is_err() {
                return (unavailable(), None);
            }
            match rx.await {
                Ok(answer) => keyed::answer_http(&topic, answer),
                Err(_) => unavailable(),
            }
        }
        Call::Fetch(binproto::FetchRequest { topic, way, from, max_records, max_bytes }) => {
            let idx = match api::fetch_topic(&api.topics, &topic, way) {
                Ok(i) => i,
                Err((resp, _)) => return (resp, None),
            };
            let permit = api.fetch_answers.clone().acquire_owned().await.expect("never closed");
            let result = api.fetch(idx, from, max_records, max_bytes.min(api.budget.fetch_bytes_max)).await;
            let names = api.names.lock().expect("not poisoned").clone();
            return (api::fetch_http(&result, &names), Some(permit));
        }
    };
    (resp, None)
}

async fn serve_binary(listener: TcpListener, api: Arc<Api>, slots: Arc<Slots>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                after_accept_error("api.binary", e).await;
                continue;
            }
        };
        let Some(slot) = slots.admit(addr) else { continue };
        let api = api.clone();
        tokio::spawn(async move {
            if let Err(e) = binary_connection(stream, api, slot).await {
                tracing::debug!(%addr, error = %e, "binary connection ended");
            }
        });
    }
}

/// One answer on a binary connection, holding the in-flight permit of its request (and a
/// fetch's place among the fetch answers) until it is written, so that a client that does
/// not read cannot grow the queue.
struct Answer {
    id: u32,
    resp: binproto::Response,
    close: bool,
    _permit: Option<OwnedSemaphorePermit>,
    _fetch: Option<OwnedSemaphorePermit>,
}

impl Answer {
    fn bad(id: u32, message: String) -> Answer {
        let resp = binproto::Response::Error { code: binproto::Code::BadRequest, retryable: false, message };
        Answer { id, resp, close: true, _permit: None, _fetch: None }
    }
}

/// How reading one binary frame ended.
enum Frame {
    /// A whole request frame and its reservation.
    Whole(Vec<u8>, Reservation),
    /// A frame that did not find room in the ingress budget in time: read past, to be
    /// answered "busy" (its id is its body's bytes 1..5).
    Skipped(u32),
    /// A refusal that closes the connection.
    Refuse(String),
    Ended,
}

async fn binary_connection(stream: TcpStream, api: Arc<Api>, slot: Slot) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Answer>();
    let mut authenticated = false;
    let in_flight = Arc::new(Semaphore::new(BINARY_IN_FLIGHT_MAX));
    let slot = Arc::new(slot);
    let writer = {
        let (in_flight, slot) = (in_flight.clone(), slot.clone());
        tokio::spawn(async move {
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
                if in_flight.available_permits() == BINARY_IN_FLIGHT_MAX {
                    slot.idle_unless_reading();
                }
            }
            Ok(())
        })
    };
    loop {
        let body = match read_frame(&mut rd, &api, &slot).await {
            Frame::Whole(body, reservation) => (body, reservation),
            Frame::Skipped(id) => {
                let resp = binproto::Response::Error {
                    code: binproto::Code::Busy,
                    retryable: true,
                    message: "the daemon's buffers for requests are full; retry shortly".into(),
                };
                let _ = tx.send(Answer { id, resp, close: false, _permit: None, _fetch: None });
                continue;
            }
            Frame::Refuse(message) => {
                let _ = tx.send(Answer::bad(0, message));
                break;
            }
            Frame::Ended => break,
        };
        let (body, ingress) = body;
        let (id, req) = match binproto::decode_request(&body) {
            Ok(x) => x,
            Err((id, e)) => {
                let _ = tx.send(Answer::bad(id.unwrap_or(0), e.to_string()));
                break;
            }
        };
        drop(body);
        match api.auth.gate_binary(authenticated, &req) {
            api::BinaryGate::Serve => {}
            api::BinaryGate::Welcome => {
                authenticated = true;
                let resp = binproto::Response::Welcome;
                let _ = tx.send(Answer { id, resp, close: false, _permit: None, _fetch: None });
                continue;
            }
            api::BinaryGate::Refuse(resp) => {
                let _ = tx.send(Answer { id, resp, close: true, _permit: None, _fetch: None });
                break;
            }
        }
        // A batch holds a place per record: what its answer will hold.
        let places = match &req {
            binproto::Request::ProduceBatch { records, .. } => records.len() as u32,
            binproto::Request::Produce { .. } | binproto::Request::Fetch(_) | binproto::Request::Keyed { .. } => 1,
            binproto::Request::Auth { .. } => unreachable!("the gate answers an Auth"),
        };
        let permit = in_flight.clone().acquire_many_owned(places).await.expect("never closed");
        slot.busy();
        let topic = match &req {
            binproto::Request::Produce { topic, .. }
            | binproto::Request::ProduceBatch { topic, .. }
            | binproto::Request::Keyed { topic, .. } => api::produce_topic(&api.topics, topic),
            binproto::Request::Fetch(f) => api::fetch_topic(&api.topics, &f.topic, f.way),
            binproto::Request::Auth { .. } => unreachable!("the gate answers an Auth"),
        };
        let idx = match topic {
            Ok(idx) => idx,
            Err((_, resp)) => {
                let _ = tx.send(Answer { id, resp, close: false, _permit: Some(permit), _fetch: None });
                continue;
            }
        };
        let answer = tx.clone();
        let cmd = match req {
            binproto::Request::Produce { key, value, .. } => {
                let reply: Reply<_> = Box::new(move |r| {
                    let resp = api::produce_binary(&r);
                    let _ = answer.send(Answer { id, resp, close: false, _permit: Some(permit), _fetch: None });
                });
                Cmd::Produce { topic: idx, key, value, reply, ingress: Some(ingress) }
            }
            binproto::Request::ProduceBatch { records, .. } => {
                let reply: Reply<_> = Box::new(move |r: Vec<_>| {
                    let resp = api::produce_batch_binary(&r);
                    let _ = answer.send(Answer { id, resp, close: false, _permit: Some(permit), _fetch: None });
                });
                Cmd::ProduceBatch { topic: idx, records, reply, ingress: Some(ingress) }
            }
            binproto::Request::Fetch(binproto::FetchRequest { from, max_records, max_bytes, .. }) => {
                drop(ingress);
                let fetch = api.fetch_answers.clone().acquire_owned().await.expect("never closed");
                let reply: Reply<_> = Box::new(move |r| {
                    let resp = api::fetch_binary(r);
                    let _ = answer.send(Answer { id, resp, close: false, _permit: Some(permit), _fetch: Some(fetch) });
                });
                let max_bytes = max_bytes.min(api.budget.fetch_bytes_max);
                Cmd::Fetch { topic: idx, from, max_records, max_bytes, reply }
            }
            binproto::Request::Keyed { topic, call } => {
                let name = topic.clone();
                let reply: Reply<_> = Box::new(move |a| {
                    let resp = keyed::answer_binary(&topic, a);
                    let _ = answer.send(Answer { id, resp, close: false, _permit: Some(permit), _fetch: None });
                });
                Cmd::Keyed { topic: idx, name, call, reply, ingress: Some(ingress) }
            }
            binproto::Request::Auth { .. } => unreachable!("the gate answers an Auth"),
        };
        if api.node.send(cmd).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer.await.map_err(std::io::Error::other)?
}

/// Reads one request frame: its length prefix (a connection with nothing started waits up
/// to [`IDLE_TIMEOUT`]), then a reservation of it from the ingress budget, then the rest by
/// the frame's [`RequestClock`] deadline.
async fn read_frame(rd: &mut tokio::net::tcp::OwnedReadHalf, api: &Api, slot: &Slot) -> Frame {
    let mut prefix = [0u8; 4];
    let first = tokio::select! {
        r = timeout(IDLE_TIMEOUT, rd.read(&mut prefix)) => r,
        () = slot.evicted() => return Frame::Ended,
    };
    let got = match first {
        Ok(Ok(n)) if n > 0 => n,
        _ => return Frame::Ended,
    };
    slot.reading(got);
    let mut clock = RequestClock::start(now(), got);
    let deadline = |c: &RequestClock| TokioInstant::from_std(c.deadline());
    if got < prefix.len() {
        let rest = tokio::select! {
            r = timeout_at(deadline(&clock), rd.read_exact(&mut prefix[got..])) => r,
            () = slot.evicted() => return Frame::Ended,
        };
        match rest {
            Ok(Ok(_)) => {
                clock.received(prefix.len() - got);
                slot.reading(prefix.len() - got);
            }
            Ok(Err(_)) => return Frame::Ended,
            Err(_) => return Frame::Refuse("a frame's length did not arrive in time".into()),
        }
    }
    let len = match binproto::frame_len(prefix, api.budget.request_frame_max) {
        Ok(n) => n,
        Err(e) => return Frame::Refuse(e.to_string()),
    };
    // The frame earns the time its announced length takes at the minimum rate.
    let by = deadline(&RequestClock::start(clock.started(), 4 + len));
    let late = || Frame::Refuse(format!("a frame of {len} bytes did not arrive whole in time"));
    let Some(reservation) = api.ingress.reserve_within(len, BUDGET_WAIT).await else {
        // Read past it, keeping the stream's framing, and answer it "busy".
        let mut head = [0u8; 5];
        let n = head.len().min(len);
        let skipped = async {
            rd.read_exact(&mut head[..n]).await?;
            skip(rd, len - n).await
        };
        return match timeout_at(by, skipped).await {
            Ok(Ok(())) if n == 5 => Frame::Skipped(u32::from_le_bytes([head[1], head[2], head[3], head[4]])),
            Ok(Ok(())) => Frame::Refuse(format!("a frame of {len} bytes is shorter than its 5-byte head")),
            Ok(Err(_)) => Frame::Ended,
            Err(_) => late(),
        };
    };
    let mut body = vec![0u8; len];
    let mut at = 0;
    while at < len {
        // Read in pieces, so that the listener sees the frame arrive at its speed.
        let read = tokio::select! {
            r = timeout_at(by, rd.read(&mut body[at..len.min(at + READ_CHUNK)])) => r,
            () = slot.evicted() => return Frame::Ended,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Frame::Ended,
            Ok(Ok(n)) => {
                at += n;
                slot.reading(n);
            }
            Err(_) => return late(),
        }
    }
    Frame::Whole(body, reservation)
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

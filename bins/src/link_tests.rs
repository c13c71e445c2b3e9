//! The edge ↔ gateway link of the tokio shell on turmoil's simulated network: the real
//! [`uplink`], [`connect_gateway`], [`serve_peers`], [`accept_edge`] and [`run_peer`],
//! through partitions, a gateway that crashes and restarts, wrong tokens and hostile peers.
//! The decisions they make ([`crate::link`]: handshakes, authentication, when to dial
//! again, what the status says of a peer) are the ones edge-lite makes too.
//! The node tasks are stand-ins that record what reached them and when.
//!
//! Time is turmoil's (each host runs on tokio's paused clock), so the real constants apply:
//! minutes of backoff and the 300 s idle timeout cost nothing. Every link has one fixed
//! latency: turmoil draws latencies from an rng that this crate cannot seed (it has no
//! `rand`), and with a single value there is nothing to draw, so every run is the same run.

use super::*;
use crate::config::node_id_of;
use crate::limits::jitter;
use crate::peer::Verdict;
use outpost_core::codec::{encode_frame, FrameKind};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use turmoil::{Builder, Sim};

/// [`Net`] over turmoil's simulated TCP.
struct SimNet;

impl Net for SimNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = turmoil::net::TcpListener;

    async fn connect(addr: &str) -> std::io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr).await
    }

    async fn accept(listener: &Self::Listener) -> std::io::Result<(Self::Stream, SocketAddr)> {
        listener.accept().await
    }
}

const GATEWAY: &str = "gateway";
/// The edges' reconnect schedule in these tests (`sync.backoff_min`, `sync.backoff_max`).
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
const PORT: u16 = 7000;
const FRAME_MAX: usize = 1 << 20;

/// The link's frame limits in these tests: frames up to [`FRAME_MAX`], from an ingress
/// budget of a few of them (as `ShellBudget` sizes it: at least two of the largest).
fn frames() -> FrameLimits {
    FrameLimits { max: FRAME_MAX, ingress: SharedBudget::new(4 * FRAME_MAX) }
}
/// The one-way latency of every link, unless a test says otherwise.
const LATENCY: Duration = Duration::from_millis(5);
/// Added to an exact expectation: a few latencies (a handshake is three) and ticks.
const SLACK: Duration = Duration::from_millis(50);
/// While linked, the stand-in edge node sends a probe this often, as the sync protocol's
/// Hellos and acks would: a link is quiet for [`PEER_IDLE_TIMEOUT`] only when it is cut.
const PROBE_EVERY: Duration = Duration::from_secs(60);

/// What a stand-in node task (or a raw peer) saw.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// `PeerUp`, with the peer's name.
    Up(String),
    /// `PeerDown`, with the peer's name and the reason.
    Down(String, Option<String>),
    /// `LinkFailed`, with the error.
    Failed(String),
    /// A frame handed to the link.
    Sent(Vec<u8>),
    /// A frame that arrived (`Cmd::Frame`), with the sender's name.
    Frame(String, Vec<u8>),
}

/// What one host saw, each with the simulated time since the start of the run.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(Duration, Seen)>>>);

impl Log {
    fn push(&self, seen: Seen) {
        let at = turmoil::sim_elapsed().expect("called inside the simulation");
        self.0.lock().expect("not poisoned").push((at, seen));
    }

    fn times(&self, pick: impl Fn(&Seen) -> bool) -> Vec<Duration> {
        self.0.lock().expect("not poisoned").iter().filter(|(_, s)| pick(s)).map(|(at, _)| *at).collect()
    }

    fn events(&self, pick: impl Fn(&Seen) -> bool) -> Vec<(Duration, Seen)> {
        self.0.lock().expect("not poisoned").iter().filter(|(_, s)| pick(s)).cloned().collect()
    }

    /// The frames sent (`Sent`) and received (`Frame`), in order, from `since` on.
    fn frames(&self, since: Duration) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        for (at, seen) in self.0.lock().expect("not poisoned").iter() {
            match seen {
                Seen::Sent(f) if *at >= since => sent.push(f.clone()),
                Seen::Frame(_, f) if *at >= since => got.push(f.clone()),
                _ => {}
            }
        }
        (sent, got)
    }
}

fn is_up(s: &Seen) -> bool {
    matches!(s, Seen::Up(_))
}
fn is_down(s: &Seen) -> bool {
    matches!(s, Seen::Down(..))
}
fn is_failed(s: &Seen) -> bool {
    matches!(s, Seen::Failed(_))
}

/// A real core frame, told apart from the others by `n`.
fn probe(n: u64) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(FrameKind::SyncReset, &n.to_le_bytes(), &mut v);
    v
}

/// Links in clear text, never reloaded.
fn clear_text() -> watch::Receiver<LinkCredentials> {
    watch::channel(LinkCredentials::default()).1
}

fn tokens(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect()
}

fn sim<'a>(latency: Duration) -> Sim<'a> {
    Builder::new()
        .simulation_duration(Duration::from_secs(24 * 3600))
        .min_message_latency(latency)
        .max_message_latency(latency)
        .build()
}

fn run_until(sim: &mut Sim, at: Duration) {
    while sim.elapsed() < at {
        sim.step().expect("no host fails");
    }
}

/// The wait after `doublings` doublings of the backoff, without its jitter.
fn backoff(doublings: usize) -> Duration {
    (0..doublings).fold(RECONNECT_MIN, |b, _| (b * 2).min(RECONNECT_MAX))
}

/// Asserts that each attempt after `times[0]` came `cost + backoff + jitter` after the one
/// before, the backoff doubling from [`RECONNECT_MIN`] each time up to [`RECONNECT_MAX`],
/// the jitter at most a quarter of it.
fn assert_backs_off(times: &[Duration], cost: Duration) {
    for (i, pair) in times.windows(2).enumerate() {
        let (gap, wait) = (pair[1] - pair[0], backoff(i));
        let (low, high) = (cost + wait, cost + wait + wait / 4 + SLACK);
        assert!(
            (low..=high).contains(&gap),
            "attempt {} came {gap:?} after the one before, not within {low:?}..={high:?}; all: {times:?}",
            i + 1
        );
    }
}

/// Queues `frame` to a link, as `node_loop` does; false if the link has just ended (its
/// `PeerDown` is on the way).
fn hand_over(link: &mpsc::Sender<Vec<u8>>, frame: Vec<u8>) -> bool {
    match link.try_send(frame) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(_)) => panic!("a link's queue filled up"),
    }
}

/// Runs the real [`uplink`] from an edge named `name`, and stands in for its node task: on
/// every `PeerUp` it sends a burst of three probes (the link's writer batches them, the
/// gateway's reader must split them), then one every [`PROBE_EVERY`] while linked.
async fn edge(name: String, token: String, log: Log) -> turmoil::Result {
    let (node, mut cmds) = mpsc::channel(COMMAND_QUEUE);
    let backoff = Backoff::new(&name, RECONNECT_MIN, RECONNECT_MAX);
    let hello = PeerHello { name, token };
    let addr = format!("{GATEWAY}:{PORT}");
    let redial = Redial::new(&addr, GATEWAY, backoff);
    let creds = clear_text();
    tokio::spawn(uplink::<SimNet>(node_id_of(GATEWAY), hello, creds, node, frames(), Arc::new(Notify::new()), redial));
    let mut link: Option<mpsc::Sender<Vec<u8>>> = None;
    let mut probes = 0u64;
    let mut send = |link: &mpsc::Sender<Vec<u8>>| {
        probes += 1;
        if hand_over(link, probe(probes)) {
            log.push(Seen::Sent(probe(probes)));
        }
    };
    let mut every = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd.expect("the uplink never ends") {
                Cmd::PeerUp { name, tx, .. } => {
                    log.push(Seen::Up(name));
                    for _ in 0..3 {
                        send(&tx);
                    }
                    link = Some(tx);
                }
                Cmd::PeerDown { error, .. } => {
                    log.push(Seen::Down(GATEWAY.to_string(), error));
                    link = None;
                }
                Cmd::LinkFailed { error, .. } => log.push(Seen::Failed(error)),
                Cmd::Frame { bytes, .. } => log.push(Seen::Frame(GATEWAY.to_string(), bytes)),
                _ => unreachable!("the uplink sends no other command"),
            },
            _ = every.tick() => {
                if let Some(tx) = &link {
                    send(tx);
                }
            }
        }
    }
}

/// Runs the real [`serve_peers`] and stands in for the gateway's node task: it keeps the
/// newest connection of each peer (dropping the older one's sender, which closes it, as
/// `node_loop` does) and echoes every frame back to its sender.
async fn gateway(tokens: BTreeMap<String, String>, log: Log) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let (node, mut cmds) = mpsc::channel(COMMAND_QUEUE);
    let auth = GatewayAuth::new(GATEWAY, tokens, false);
    let auth = Arc::new(Mutex::new(auth));
    tokio::spawn(serve_peers::<SimNet>(listener, auth, clear_text(), (node, Arc::default(), frames())));
    let mut names: BTreeMap<NodeId, String> = BTreeMap::new();
    let mut links: BTreeMap<NodeId, (u64, mpsc::Sender<Vec<u8>>)> = BTreeMap::new();
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Cmd::PeerUp { id, name, conn, tx, .. } => {
                log.push(Seen::Up(name.clone()));
                names.insert(id, name);
                links.insert(id, (conn, tx));
            }
            Cmd::PeerDown { id, conn, error } => {
                log.push(Seen::Down(names[&id].clone(), error));
                if links.get(&id).is_some_and(|(c, _)| *c == conn) {
                    links.remove(&id);
                }
            }
            Cmd::Frame { from, bytes, .. } => {
                log.push(Seen::Frame(names[&from].clone(), bytes.clone()));
                if let Some((_, tx)) = links.get(&from) {
                    hand_over(tx, bytes);
                }
            }
            _ => unreachable!("serve_peers sends no other command"),
        }
    }
    Ok(())
}

fn start_gateway(sim: &mut Sim, tokens: BTreeMap<String, String>, log: &Log) {
    let log = log.clone();
    sim.host(GATEWAY, move || gateway(tokens.clone(), log.clone()));
}

/// An edge host `host` whose hello names it `name`.
fn start_edge(sim: &mut Sim, host: &str, name: &str, token: &str, log: &Log) {
    let (name, token, log) = (name.to_string(), token.to_string(), log.clone());
    sim.host(host, move || edge(name.clone(), token.clone(), log.clone()));
}

#[test]
fn frames_cross_the_link_whole_in_both_directions() {
    for latency in [1, 5, 40].map(Duration::from_millis) {
        let (edge_log, gw_log) = (Log::default(), Log::default());
        let mut sim = sim(latency);
        start_gateway(&mut sim, tokens(&[("edge-1", "s3cret")]), &gw_log);
        start_edge(&mut sim, "edge-1", "edge-1", "s3cret", &edge_log);
        run_until(&mut sim, Duration::from_secs(150));

        let ups = edge_log.events(is_up);
        assert_eq!(ups.len(), 1, "{latency:?}: one link, never lost: {ups:?}");
        assert_eq!(ups[0].1, Seen::Up(GATEWAY.into()), "the edge's node learns the gateway's name");
        assert!(
            ups[0].0 <= latency * 4 + SLACK,
            "{latency:?}: linked at {:?}, a handshake takes three trips",
            ups[0].0
        );
        assert!(edge_log.times(|s| is_down(s) || is_failed(s)).is_empty());
        assert_eq!(
            gw_log.events(is_up).iter().map(|e| e.1.clone()).collect::<Vec<_>>(),
            vec![Seen::Up("edge-1".into())]
        );

        let (sent, echoed) = edge_log.frames(Duration::ZERO);
        let (_, arrived) = gw_log.frames(Duration::ZERO);
        assert_eq!(sent.len(), 3 + 2, "a burst on PeerUp, then probes at 60 s and 120 s");
        assert_eq!(arrived, sent, "{latency:?}: each frame reaches the gateway whole and in order");
        assert_eq!(echoed, sent, "{latency:?}: and each comes back the same");
        assert!(gw_log.events(|s| matches!(s, Seen::Frame(from, _) if from != "edge-1")).is_empty());
    }
}

#[test]
fn a_partition_ends_the_link_by_idle_timeout_and_the_edge_backs_off_until_it_heals() {
    let (edge_log, gw_log) = (Log::default(), Log::default());
    let mut sim = sim(LATENCY);
    start_gateway(&mut sim, tokens(&[("edge-1", "s3cret")]), &gw_log);
    start_edge(&mut sim, "edge-1", "edge-1", "s3cret", &edge_log);
    let cut = Duration::from_secs(90);
    let heal = cut + PEER_IDLE_TIMEOUT + Duration::from_secs(400);
    run_until(&mut sim, cut);
    sim.partition("edge-1", GATEWAY);
    run_until(&mut sim, heal);
    sim.repair("edge-1", GATEWAY);
    run_until(&mut sim, heal + RECONNECT_MAX * 2);

    // Both ends give up on the silent connection after PEER_IDLE_TIMEOUT, not before.
    let heard_last = *edge_log.times(|s| matches!(s, Seen::Frame(..))).iter().rfind(|t| **t < cut).expect("echoes");
    let downs = edge_log.events(is_down);
    let idle = Some(format!("nothing heard for {}s", PEER_IDLE_TIMEOUT.as_secs()));
    assert_eq!(downs.iter().map(|e| e.1.clone()).collect::<Vec<_>>(), vec![Seen::Down(GATEWAY.into(), idle.clone())]);
    let down = downs[0].0;
    let expected = heard_last + PEER_IDLE_TIMEOUT;
    assert!((expected..=expected + SLACK).contains(&down), "the edge gave up at {down:?}, expected {expected:?}");
    let gw_downs = gw_log.events(is_down);
    assert_eq!(gw_downs.iter().map(|e| e.1.clone()).collect::<Vec<_>>(), vec![Seen::Down("edge-1".into(), idle)]);
    assert!(gw_downs[0].0 >= cut + PEER_IDLE_TIMEOUT - PROBE_EVERY, "the gateway too waited the idle timeout");

    // Then attempts fail (the partition refuses them at once), ever more slowly: the first
    // after RECONNECT_MIN (the lost link had lasted over LINK_STABLE), up to RECONNECT_MAX.
    let ups = edge_log.times(is_up);
    assert_eq!(ups.len(), 2, "linked at the start and once more after the heal: {ups:?}");
    let failed = edge_log.times(is_failed);
    assert!(failed.iter().all(|t| (down..heal).contains(t)), "failures only while cut: {failed:?}");
    assert_backs_off(&[&[down][..], &failed[..]].concat(), Duration::ZERO);
    let capped = failed.windows(2).filter(|w| w[1] - w[0] >= RECONNECT_MAX).count();
    assert!(capped >= 10, "the backoff reached RECONNECT_MAX and stayed there: {failed:?}");
    assert!(failed.len() <= 8 + (heal - down).as_secs() as usize / 30 + 1, "no more attempts than the backoff allows");

    // After the heal the edge is back within one longest wait, and frames flow again.
    let back = ups[1];
    assert!((heal..=heal + RECONNECT_MAX * 5 / 4 + SLACK).contains(&back), "relinked at {back:?}, healed at {heal:?}");
    let (sent, echoed) = edge_log.frames(back);
    assert!(sent.len() >= 3 && echoed.starts_with(&sent[..3]), "the burst after relinking came back: {echoed:?}");
    assert_eq!(gw_log.times(is_up).len(), 2, "the gateway saw the edge come back too");
}

#[test]
fn a_gateway_that_crashes_is_retried_with_backoff_and_found_again_after_its_restart() {
    let (edge_log, gw_log) = (Log::default(), Log::default());
    let mut sim = sim(LATENCY);
    start_gateway(&mut sim, tokens(&[("edge-1", "s3cret")]), &gw_log);
    start_edge(&mut sim, "edge-1", "edge-1", "s3cret", &edge_log);
    let crash = Duration::from_secs(90);
    let restart = crash + Duration::from_secs(300);
    run_until(&mut sim, crash);
    sim.crash(GATEWAY);
    run_until(&mut sim, restart);
    sim.bounce(GATEWAY);
    run_until(&mut sim, restart + RECONNECT_MAX * 2);

    // The crashed process's sockets are closed, so the edge learns at once.
    let downs = edge_log.events(is_down);
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(downs[0].1, Seen::Down(GATEWAY.into(), Some("closed by the peer".into())));
    let down = downs[0].0;
    assert!((crash..=crash + SLACK).contains(&down), "link lost at {down:?}, crashed at {crash:?}");
    assert!(gw_log.events(is_down).is_empty(), "a crashed node reports nothing");

    // Nothing answers a connection to the dead host: each attempt waits HANDSHAKE_TIMEOUT,
    // then the backoff, from RECONNECT_MIN again (the lost link had lasted over LINK_STABLE).
    let failed = edge_log.events(is_failed);
    let while_down: Vec<Duration> = failed.iter().map(|e| e.0).filter(|t| *t < restart).collect();
    assert!(while_down.len() >= 10, "{failed:?}");
    for (_, seen) in failed.iter().filter(|e| e.0 < restart) {
        assert_eq!(seen, &Seen::Failed("timed out".into()));
    }
    assert_backs_off(&[&[down][..], &while_down[..]].concat(), HANDSHAKE_TIMEOUT);

    // The restarted gateway is found within one longest wait, and echoes again.
    let ups = edge_log.times(is_up);
    assert_eq!(ups.len(), 2, "{ups:?}");
    assert!((restart..=restart + RECONNECT_MAX * 5 / 4 + SLACK).contains(&ups[1]), "relinked at {:?}", ups[1]);
    let (sent, echoed) = edge_log.frames(ups[1]);
    assert!(sent.len() >= 3 && echoed.starts_with(&sent[..3]), "the burst after relinking came back: {echoed:?}");
    let gw_ups = gw_log.times(is_up);
    assert_eq!(gw_ups.len(), 2, "once per life of the gateway: {gw_ups:?}");
    assert!(gw_ups[1] >= restart);
}

#[test]
fn a_refused_edge_says_why_and_keeps_retrying_with_backoff_out_of_step_with_others() {
    let (gw_log, one, two, stranger) = (Log::default(), Log::default(), Log::default(), Log::default());
    let mut sim = sim(LATENCY);
    start_gateway(&mut sim, tokens(&[("edge-1", "right"), ("edge-2", "right")]), &gw_log);
    start_edge(&mut sim, "edge-1", "edge-1", "wrong", &one);
    start_edge(&mut sim, "edge-2", "edge-2", "wrong", &two);
    start_edge(&mut sim, "stranger", "stranger", "right", &stranger);
    let end = Duration::from_secs(600);
    run_until(&mut sim, end);

    assert!(gw_log.events(|_| true).is_empty(), "a refused edge never reaches the gateway's node");
    for (log, name) in [(&one, "edge-1"), (&two, "edge-2"), (&stranger, "stranger")] {
        let events = log.events(|_| true);
        assert!(events.iter().all(|e| is_failed(&e.1)), "{name}: only failures: {events:?}");
        // Refused alike, whether the name is unknown or the token wrong; after a burst of
        // failures, without the token being checked.
        let Seen::Failed(error) = &events[0].1 else { unreachable!() };
        assert_eq!(error, &peer::refusal(GATEWAY, peer::UNAUTHORIZED), "{name}");
        for e in &events {
            let Seen::Failed(error) = &e.1 else { unreachable!() };
            assert!(
                error.contains(peer::UNAUTHORIZED) || error.contains("too many failed attempts"),
                "{name}: {error}"
            );
        }
        let times = log.times(is_failed);
        assert_backs_off(&times, Duration::ZERO);
        // About eight attempts to reach the cap, then one per RECONNECT_MAX: no spinning,
        // and no giving up either.
        assert!((20..=8 + 600 / 30 + 1).contains(&times.len()), "{name}: {} attempts in {end:?}", times.len());
        assert!(times.last().is_some_and(|t| *t >= end - RECONNECT_MAX * 5 / 4 - SLACK), "{name} still retries");
    }

    // Two edges that started together do not retry together: their jitter differs.
    let (a, b) = (one.times(is_failed), two.times(is_failed));
    let together = a.iter().zip(&b).skip(1).filter(|(x, y)| x.abs_diff(**y) < Duration::from_millis(1)).count();
    assert_eq!(together, 0, "edge-1 {a:?}\nedge-2 {b:?}");
}

/// Connects to the gateway as `name` with a hand-made handshake, as a misbehaving peer.
async fn raw_peer(name: &str, token: &str) -> std::io::Result<(turmoil::net::TcpStream, Option<Verdict>)> {
    let mut s = turmoil::net::TcpStream::connect((GATEWAY, PORT)).await?;
    let mut hello = Vec::new();
    peer::encode_hello(&PeerHello { name: name.into(), token: token.into() }, &mut hello).expect("a valid hello");
    s.write_all(&hello).await?;
    let mut answer = Vec::new();
    while peer::answer_needs(&answer) > 0 {
        let at = answer.len();
        answer.resize(at + peer::answer_needs(&answer), 0);
        s.read_exact(&mut answer[at..]).await?;
    }
    Ok((s, peer::decode_answer(&answer).map(|(v, _, _)| v)))
}

/// A peer that sends frames back to back and byte by byte, then a header that is not one.
async fn rogue(log: Log) -> turmoil::Result {
    sleep(Duration::from_secs(10)).await;
    let (mut s, verdict) = raw_peer("rogue", "r0gue").await?;
    assert_eq!(verdict, Some(Verdict::Welcome));
    let frames = [probe(101), probe(102), probe(103), probe(104)];
    s.write_all(&frames[..3].concat()).await?;
    for byte in &frames[3] {
        s.write_all(&[*byte]).await?;
        sleep(Duration::from_millis(10)).await;
    }
    for f in &frames {
        log.push(Seen::Sent(f.clone()));
    }
    sleep(Duration::from_secs(1)).await;
    s.write_all(&[b'G'; outpost_core::codec::FRAME_HEADER_LEN]).await?;
    let mut echoed = Vec::new();
    s.read_to_end(&mut echoed).await?;
    log.push(Seen::Frame(GATEWAY.into(), echoed));
    log.push(Seen::Down(GATEWAY.into(), None));
    Ok(())
}

/// A peer that speaks HTTP to the peer port.
async fn stray(log: Log) -> turmoil::Result {
    sleep(Duration::from_secs(20)).await;
    let mut s = turmoil::net::TcpStream::connect((GATEWAY, PORT)).await?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n").await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    let (verdict, _, message) = peer::decode_answer(&answer).expect("an answer, then the end");
    log.push(Seen::Failed(format!("{verdict:?}: {message}")));
    Ok(())
}

#[test]
fn a_peer_that_breaks_framing_is_dropped_with_a_reason_and_the_others_are_kept() {
    let (gw_log, edge_log, rogue_log, stray_log) = (Log::default(), Log::default(), Log::default(), Log::default());
    let mut sim = sim(LATENCY);
    start_gateway(&mut sim, tokens(&[("edge-1", "s3cret"), ("rogue", "r0gue")]), &gw_log);
    start_edge(&mut sim, "edge-1", "edge-1", "s3cret", &edge_log);
    let log = rogue_log.clone();
    sim.host("rogue", move || rogue(log.clone()));
    let log = stray_log.clone();
    sim.host("stray", move || stray(log.clone()));
    run_until(&mut sim, Duration::from_secs(150));

    // The rogue's frames were split correctly, however they were written, and echoed.
    let (sent, _) = rogue_log.frames(Duration::ZERO);
    let from_rogue: Vec<Vec<u8>> = gw_log
        .events(|s| matches!(s, Seen::Frame(from, _) if from == "rogue"))
        .into_iter()
        .map(|e| match e.1 {
            Seen::Frame(_, f) => f,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(from_rogue, sent);
    assert_eq!(rogue_log.frames(Duration::ZERO).1, vec![sent.concat()], "the echoes, then the gateway closed");

    // Then its junk header closed its connection, with the reason.
    let downs = gw_log.events(is_down);
    assert_eq!(downs.len(), 1, "{downs:?}");
    let Seen::Down(who, Some(why)) = &downs[0].1 else { panic!("{downs:?}") };
    assert_eq!(who, "rogue");
    assert!(why.starts_with("bad frame, connection closed"), "{why}");
    assert_eq!(stray_log.events(|_| true)[0].1, Seen::Failed(format!("BadHello: {}", peer::HandshakeError::BadMagic)));

    // Meanwhile the well-behaved edge kept its link, and its frames kept coming back.
    assert_eq!(edge_log.times(is_up).len(), 1);
    assert!(edge_log.times(|s| is_down(s) || is_failed(s)).is_empty());
    let (sent, echoed) = edge_log.frames(Duration::ZERO);
    assert_eq!((sent.len(), &echoed), (5, &sent), "the burst, then probes at 60 s and 120 s");
    assert!(edge_log.times(|s| matches!(s, Seen::Frame(..))).last().is_some_and(|t| *t > downs[0].0));
}

/// A peer that connects and says nothing; it logs when it connected and when it was closed.
async fn silent(log: Log) -> turmoil::Result {
    let mut s = turmoil::net::TcpStream::connect((GATEWAY, PORT)).await?;
    log.push(Seen::Up(GATEWAY.into()));
    s.read_to_end(&mut Vec::new()).await?;
    log.push(Seen::Down(GATEWAY.into(), None));
    Ok(())
}

/// A peer that completes its handshake as `name`, sends `bytes`, then waits to be closed.
async fn sends(name: &str, bytes: Vec<u8>, log: Log) -> turmoil::Result {
    let (mut s, verdict) = raw_peer(name, "t0ken").await?;
    assert_eq!(verdict, Some(Verdict::Welcome));
    s.write_all(&bytes).await?;
    log.push(Seen::Sent(bytes));
    s.read_to_end(&mut Vec::new()).await?;
    log.push(Seen::Down(GATEWAY.into(), None));
    Ok(())
}

#[test]
fn peers_that_stall_or_announce_too_much_are_cut_off_in_time() {
    let (gw_log, silent_log, halfway_log, huge_log) = (Log::default(), Log::default(), Log::default(), Log::default());
    let mut sim = sim(LATENCY);
    start_gateway(&mut sim, tokens(&[("halfway", "t0ken"), ("huge", "t0ken")]), &gw_log);
    let log = silent_log.clone();
    sim.host("silent", move || silent(log.clone()));
    let log = halfway_log.clone();
    let half = probe(1)[..outpost_core::codec::FRAME_HEADER_LEN + 2].to_vec();
    sim.host("halfway", move || sends("halfway", half.clone(), log.clone()));
    let log = huge_log.clone();
    let mut huge = Vec::new();
    encode_frame(FrameKind::SyncReset, &vec![0; FRAME_MAX], &mut huge);
    huge.truncate(outpost_core::codec::FRAME_HEADER_LEN);
    sim.host("huge", move || sends("huge", huge.clone(), log.clone()));
    run_until(&mut sim, Duration::from_secs(60));

    // No hello: closed after HANDSHAKE_TIMEOUT, and the node never hears of it.
    let (connected, closed) = (silent_log.times(is_up), silent_log.times(is_down));
    assert_eq!((connected.len(), closed.len()), (1, 1));
    let waited = closed[0] - connected[0];
    assert!((HANDSHAKE_TIMEOUT..=HANDSHAKE_TIMEOUT + SLACK).contains(&waited), "closed after {waited:?}");

    // Half a frame: closed once its deadline passed (the grace: 22 bytes earn nothing), with the reason.
    let sent = halfway_log.times(|s| matches!(s, Seen::Sent(_)))[0];
    let downs = gw_log.events(|s| matches!(s, Seen::Down(who, _) if who == "halfway"));
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(downs[0].1, Seen::Down("halfway".into(), Some("a frame did not arrive whole in time".into())));
    let waited = downs[0].0 - sent;
    let grace = crate::guard::REQUEST_GRACE;
    assert!((grace..=grace + SLACK).contains(&waited), "cut after {waited:?}");

    // A header announcing more than the largest frame: closed at once, before any payload.
    let downs = gw_log.events(|s| matches!(s, Seen::Down(who, _) if who == "huge"));
    let [(at, Seen::Down(_, Some(why)))] = &downs[..] else { panic!("{downs:?}") };
    assert!(why.contains(&format!("larger than the {FRAME_MAX} accepted")), "{why}");
    assert!(*at <= huge_log.times(|s| matches!(s, Seen::Sent(_)))[0] + SLACK);
    assert!(huge_log.times(is_down)[0] <= *at + SLACK, "and the peer saw its connection end");

    assert_eq!(gw_log.times(is_up).len(), 2, "only the peers that completed a handshake reached the node");
    assert!(gw_log.times(|s| matches!(s, Seen::Frame(..))).is_empty(), "and no partial frame did");
}

#[test]
fn two_edges_with_one_name_replace_each_other_ever_more_slowly() {
    let (gw_log, a, b) = (Log::default(), Log::default(), Log::default());
    let mut sim = sim(LATENCY);
    start_gateway(&mut sim, tokens(&[("edge-1", "s3cret")]), &gw_log);
    start_edge(&mut sim, "edge-a", "edge-1", "s3cret", &a);
    start_edge(&mut sim, "edge-b", "edge-1", "s3cret", &b);
    let end = Duration::from_secs(600);
    run_until(&mut sim, end);

    // Each new connection replaces the other edge's; each edge's link is short, so it does
    // not reset its backoff, and the two settle at about one reconnect per RECONNECT_MAX.
    for (log, host) in [(&a, "edge-a"), (&b, "edge-b")] {
        let ups = log.times(is_up);
        assert!(ups.len() >= 10, "{host} keeps coming back: {ups:?}");
        let late = ups.iter().filter(|t| **t >= end / 2).count();
        assert!(late <= (end / 2).as_secs() as usize / RECONNECT_MAX.as_secs() as usize + 1, "{host}: {ups:?}");
        let downs = log.events(is_down);
        assert!(downs.iter().all(|e| e.1 == Seen::Down(GATEWAY.into(), Some("closed by the peer".into()))));
    }
    let replaced = gw_log.events(|s| matches!(s, Seen::Down(_, Some(why)) if why == "replaced by a newer connection"));
    assert!(replaced.len() + 1 >= gw_log.times(is_up).len(), "every connection but the last was replaced");
}

#[test]
fn jitter_is_at_most_a_quarter_of_the_backoff_and_differs_between_edges() {
    for attempt in 0..1000 {
        for wait in [RECONNECT_MIN, Duration::from_secs(1), RECONNECT_MAX] {
            assert!(jitter(node_id_of("edge-1").0, attempt, wait) <= wait / 4);
        }
    }
    let spread: BTreeSet<u128> =
        (0..100).map(|i| jitter(node_id_of(&format!("edge-{i}")).0, 1, RECONNECT_MAX).as_millis()).collect();
    assert!(spread.len() >= 95, "100 edges, {} distinct waits", spread.len());
}

/// A listener whose accepts fail: first a few connections reset before they were accepted,
/// then out of file descriptors, for ever.
struct Exhausted;

impl Net for Exhausted {
    type Stream = turmoil::net::TcpStream;
    type Listener = Arc<AtomicUsize>;

    async fn connect(_: &str) -> std::io::Result<Self::Stream> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    async fn accept(calls: &Arc<AtomicUsize>) -> std::io::Result<(Self::Stream, SocketAddr)> {
        match calls.fetch_add(1, Ordering::Relaxed) {
            0..5 => Err(std::io::ErrorKind::ConnectionAborted.into()),
            // Bounded, so that a loop that spins shows as a count instead of a hang.
            5..10_000 => Err(std::io::Error::other("Too many open files (os error 24)")),
            _ => std::future::pending().await,
        }
    }
}

#[test]
fn a_failing_accept_pauses_instead_of_spinning() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut sim = sim(LATENCY);
    let listener = calls.clone();
    sim.host(GATEWAY, move || {
        let listener = listener.clone();
        async move {
            let (node, _cmds) = mpsc::channel(COMMAND_QUEUE);
            let auth = GatewayAuth::new(GATEWAY, BTreeMap::new(), false);
            let auth = Arc::new(Mutex::new(auth));
            serve_peers::<Exhausted>(listener, auth, clear_text(), (node, Arc::default(), frames())).await;
            Ok(())
        }
    });
    run_until(&mut sim, Duration::from_secs(10) + SLACK);
    // Five skipped at once, then one per ACCEPT_ERROR_PAUSE: at 0 s, 1 s, ... 10 s.
    assert_eq!(calls.load(Ordering::Relaxed), 5 + 11);
}

//! What a new user and a hostile local client did to the release daemons (issue 15), each
//! against real processes of both shells: request bodies at and around the ingress budget,
//! hundreds of slow connections, HTTP framing tricks, a web page driving the local API, token
//! guessing at the gateway, and the reconnect schedule a config file asks for.

// Real processes wait on real time: deadlines for answers, a client that trickles bytes.
#![allow(clippy::disallowed_types)]

mod common;

use common::{free_addr, http, parse_response, produce, Daemon};
use outpost::peer::{self, Verdict};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a daemon may take to answer a request it can serve at all. Generous: the
/// machines that run these tests are shared. A wedged daemon never answers.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// Writes `head` then `body` and reads the answer until the daemon closes or `ANSWER_WITHIN`
/// passes; `None` when no HTTP answer came. A write the daemon does not take in time is
/// abandoned: the answer may come before the body is read (a refusal from the head).
fn exchange(addr: SocketAddr, head: &[u8], body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(ANSWER_WITHIN)).ok()?;
    s.set_write_timeout(Some(ANSWER_WITHIN)).ok()?;
    s.write_all(head).ok()?;
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn post_head(path: &str, content_type: &str, len: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\ncontent-length: {len}\r\n\
         connection: close\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A JSON batch of exactly `len` bytes: records of 1000-byte values, the last one sized to fit.
fn batch_body(len: usize) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"records\":[";
    const TAIL: &[u8] = b"]}";
    const RECORD: usize = 1012; // {"value":"<1000 bytes>"}
    let record = |value: usize| [b"{\"value\":\"".as_slice(), &vec![b'x'; value], b"\"}"].concat();
    let mut body = HEAD.to_vec();
    while len - body.len() - TAIL.len() > 2 * (RECORD + 1) {
        body.extend(record(1000));
        body.push(b',');
    }
    let last = len - body.len() - TAIL.len() - 12;
    body.extend(record(last));
    body.extend_from_slice(TAIL);
    assert_eq!(body.len(), len);
    body
}

/// An HTTP produce as a well-behaved application makes it: tried again while the node says
/// it is still recovering or its clock is not ready yet (both retryable, and not about
/// connections, which these tests are about).
fn http_produce(addr: SocketAddr, value: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    for _ in 0..100 {
        let (code, body) = http(addr, "POST", "/v1/topics/events/records", None, value)?;
        let code_name = serde_json::from_slice::<serde_json::Value>(&body).ok().map(|v| v["code"].clone());
        if code == 503 && matches!(code_name.as_ref().and_then(|c| c.as_str()), Some("clock" | "recovering")) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        return Ok((code, body));
    }
    Ok((503, b"still not ready after 5 s".to_vec()))
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn start_pair(dir: &std::path::Path, lite: bool) -> (Daemon, Daemon) {
    let listen = free_addr();
    let mut gw = Daemon::gateway(dir, listen, &[("edge-1", "t1")]);
    gw.start();
    let mut edge = Daemon::edge(dir, "edge-1", listen, "t1", "");
    if lite {
        edge = edge.lite();
    }
    edge.start();
    (gw, edge)
}

/// Every record produced so far reaches the gateway: sync still works.
fn sync_drains(edge: &Daemon, gw: &Daemon, topic: &str) {
    common::wait_until(60, "the edge's backlog to reach the gateway", || edge.unsynced(topic) == 0);
    let at_edge = edge.read_all(topic).len();
    assert_eq!(gw.read_all(topic).len(), at_edge, "the gateway holds what the edge holds");
}

// ---- defect 1: a request body the ingress budget can never hold wedged the edge ----

#[test]
fn bodies_around_the_ingress_budget_are_answered_and_nothing_wedges() {
    bodies_around_the_budget(false);
}

#[test]
fn the_edge_lite_shell_answers_bodies_around_the_ingress_budget() {
    bodies_around_the_budget(true);
}

fn bodies_around_the_budget(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, edge) = start_pair(dir.path(), lite);
    let budget = edge.settings().shell;
    let limit = budget.http_body_max;
    let path = "/v1/topics/events/records";
    for (len, over) in [
        (limit - 1, false),
        (limit, false),
        (limit + 1, true),
        (budget.ingress_bytes_max, true),
        (budget.ingress_bytes_max + 1, true),
    ] {
        let body = batch_body(len);
        let answer = exchange(edge.http, &post_head(path, "application/json", len, ""), &body);
        let (code, reply) = answer.unwrap_or_else(|| {
            panic!("a body of {len} bytes (limit {limit}, ingress budget {}) got no answer", budget.ingress_bytes_max)
        });
        let code_name = json(&reply)["code"].as_str().map(str::to_owned);
        if over {
            assert_eq!(code, 413, "{len} bytes: {}", String::from_utf8_lossy(&reply));
            assert_eq!(code_name.as_deref(), Some("body_too_large"));
        } else {
            assert!(code == 200 || code == 503, "{len} bytes: {code} {}", String::from_utf8_lossy(&reply));
            assert_ne!(code_name.as_deref(), Some("body_too_large"), "{len} bytes is within the limit");
        }
    }
    // Afterwards everything still works: a 100 KiB body, a binary produce, and sync.
    let (code, reply) = http_produce(edge.http, &vec![b'v'; 100 << 10]).expect("an answer");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&reply));
    let mut c = edge.client();
    common::produce(&mut c, "events", b"after the large bodies");
    sync_drains(&edge, &gw, "events");
}

// ---- defect 3: slow connections locked applications out ----

/// Connections that each send one byte every `every`, reopened when the daemon closes
/// them, until stopped: what a hostile local process (or a buggy one) does.
struct SlowClients {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl SlowClients {
    fn start(targets: Vec<(SocketAddr, &'static [u8])>, per_target: usize, every: Duration) -> SlowClients {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<(SocketAddr, &[u8], Option<TcpStream>, usize)> = targets
                .iter()
                .flat_map(|&(addr, bytes)| (0..per_target).map(move |_| (addr, bytes, None, 0)))
                .collect();
            let mut opened = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let round = Instant::now();
                for (addr, bytes, conn, sent) in conns.iter_mut() {
                    if conn.is_none() {
                        *conn = TcpStream::connect_timeout(addr, Duration::from_millis(500)).ok();
                        *sent = 0;
                        opened += u64::from(conn.is_some());
                        if let Some(s) = conn {
                            let _ = s.set_nonblocking(true);
                        }
                    }
                    let Some(s) = conn.as_mut() else { continue };
                    let byte = bytes[*sent % bytes.len()];
                    let mut open = match s.write(&[byte]) {
                        Ok(1) => {
                            *sent += 1;
                            true
                        }
                        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                        _ => false,
                    };
                    // Whatever the daemon answered (a refusal), and whether it closed.
                    let mut sink = [0u8; 4096];
                    match s.read(&mut sink) {
                        Ok(0) => open = false,
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => open = false,
                        _ => {}
                    }
                    if !open {
                        *conn = None;
                    }
                }
                std::thread::sleep(every.saturating_sub(round.elapsed()));
            }
            opened
        });
        SlowClients { stop, thread: Some(thread) }
    }

    /// Stops them; returns how many connections they opened.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().expect("running").join().expect("the slow clients do not panic")
    }
}

#[test]
fn hundreds_of_slow_connections_do_not_lock_out_applications_or_sync() {
    slow_connections(false);
}

#[test]
fn the_edge_lite_shell_serves_applications_beside_hundreds_of_slow_connections() {
    slow_connections(true);
}

fn slow_connections(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gw, edge) = start_pair(dir.path(), lite);
    let http_trickle: &[u8] = b"POST /v1/topics/events/records HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n";
    // A frame that says it is 200 bytes long, sent a byte at a time.
    let binary_trickle: &[u8] = &[200, 0, 0, 0, 1, 7, 0, 0, 0, 6, b'e', b'v', b'e', b'n', b't', b's', 0];
    let slow = SlowClients::start(
        vec![(edge.http, http_trickle), (edge.binary, binary_trickle), (gw.http, http_trickle)],
        200,
        Duration::from_secs(2),
    );
    std::thread::sleep(Duration::from_secs(3));
    // For longer than any per-request deadline, the application keeps being served.
    let start = Instant::now();
    let mut produced = 0;
    let mut failures = Vec::new();
    while start.elapsed() < Duration::from_secs(40) {
        let at = start.elapsed().as_secs();
        match edge_client(&edge).and_then(|mut c| c.produce("events", None, b"legit").map_err(|e| e.to_string())) {
            Ok(_) => produced += 1,
            Err(e) => failures.push(format!("{at}s binary produce: {e}")),
        }
        match http_produce(edge.http, b"legit over http") {
            Ok((200, _)) => produced += 1,
            other => failures.push(format!("{at}s HTTP produce: {}", describe(other))),
        }
        for (who, addr) in [("edge", edge.http), ("gateway", gw.http)] {
            match http(addr, "GET", "/health", None, b"") {
                Ok((200, _)) => {}
                other => failures.push(format!("{at}s {who} /health: {}", describe(other))),
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let opened = slow.stop();
    assert!(
        failures.is_empty(),
        "{} failures beside {opened} slow connections:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(opened >= 600, "the slow clients held their connections ({opened} opened)");
    assert!(produced > 20);
    sync_drains(&edge, &gw, "events");
    for d in [&edge, &gw] {
        let max = d.settings().max_memory;
        let peak = d.peak_rss();
        assert!(peak <= max, "{}: peak RSS {peak} bytes above max_memory {max}", d.name);
    }
}

fn edge_client(edge: &Daemon) -> Result<outpost::client::Client, String> {
    let c = outpost::client::Client::connect(edge.binary).map_err(|e| e.to_string())?;
    Ok(c)
}

fn describe(answer: std::io::Result<(u16, Vec<u8>)>) -> String {
    match answer {
        Ok((code, body)) => format!("{code} {}", String::from_utf8_lossy(&body).trim()),
        Err(e) => format!("no answer: {e}"),
    }
}

// ---- defect 7: the reconnect delay ignored sync.backoff_min and sync.backoff_max ----

#[test]
fn the_edge_reconnects_on_the_schedule_its_config_file_gives() {
    reconnect_schedule(false);
}

#[test]
fn the_edge_lite_shell_reconnects_on_the_configured_schedule() {
    reconnect_schedule(true);
}

fn reconnect_schedule(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let sync = "backoff_min = \"100ms\"\nbackoff_max = \"1s\"\n";
    let mut edge = Daemon::edge_with_sync(dir.path(), "edge-1", listen, "t1", sync, "");
    if lite {
        edge = edge.lite();
    }
    edge.start();
    // Long enough for a doubling from 200 ms to pass 10 s between attempts.
    std::thread::sleep(Duration::from_secs(20));
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);
    gw.start();
    let back = Instant::now();
    let connected = || edge.status()["link"]["peers"][0]["connected"] == serde_json::Value::Bool(true);
    while !connected() {
        assert!(
            back.elapsed() < Duration::from_secs(6),
            "with backoff_max = 1s the edge did not reconnect within 6 s of the gateway's return"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- defect 8: HTTP framing ----

#[test]
fn conflicting_content_lengths_are_refused_and_expect_continue_is_answered() {
    framing(false);
}

#[test]
fn the_edge_lite_shell_frames_http_the_same_way() {
    framing(true);
}

fn framing(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_gw, edge) = start_pair(dir.path(), lite);
    // The exchanges below expect a 200 at the first attempt: first the edge takes writes
    // (a fresh edge answers a retryable `clock` until its first clock bound is durable,
    // which a loaded machine let one of them see: CI, 2026-12-06).
    produce(&mut edge.client(), "events", b"ready");
    let before = edge.read_all("events").len();
    let smuggle = b"POST /v1/topics/events/records HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 5\r\n\
                    content-length: 3\r\nconnection: close\r\n\r\nhello";
    let (code, body) = exchange(edge.http, smuggle, b"").expect("an answer");
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("Content-Length"), "{}", String::from_utf8_lossy(&body));
    assert_eq!(edge.read_all("events").len(), before, "nothing stored");

    // Expect: 100-continue: the go-ahead comes before the body is sent.
    let value = vec![b'x'; 300 << 10];
    let mut s = TcpStream::connect(edge.http).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(&post_head(
        "/v1/topics/events/records",
        "application/octet-stream",
        value.len(),
        "expect: 100-continue\r\n",
    ))
    .expect("head written");
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).expect("an interim answer before the body is sent");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(&value).expect("body written");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("the final answer");
    let (code, body) = parse_response(&raw).expect("HTTP");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));

    // A body over the limit is refused from its head, without the go-ahead.
    let over = edge.settings().shell.http_body_max + 1;
    let head = post_head("/v1/topics/events/records", "application/octet-stream", over, "expect: 100-continue\r\n");
    let (code, _) = exchange(edge.http, &head, b"").expect("an answer from the head alone");
    assert_eq!(code, 413);
}

// ---- defect 9: a web page could drive the local API ----

#[test]
fn a_web_page_cannot_drive_the_local_api() {
    browsers(false);
}

#[test]
fn the_edge_lite_shell_refuses_web_pages_too() {
    browsers(true);
}

fn browsers(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_gw, edge) = start_pair(dir.path(), lite);
    let before = edge.read_all("events").len();
    // What a form on another site submits with the user's browser on this device.
    let form = |path: &str, extra: &str| {
        let mut head = post_head(path, "application/x-www-form-urlencoded", 3, extra);
        head.extend_from_slice(b"a=b");
        exchange(edge.http, &head, b"").expect("an answer")
    };
    for path in ["/v1/admin/sync/pause", "/v1/topics/events/records"] {
        let (code, body) = form(path, "origin: http://evil.example\r\n");
        assert_eq!(code, 403, "{path}: {}", String::from_utf8_lossy(&body));
        let (code, _) = form(path, "sec-fetch-site: cross-site\r\n");
        assert_eq!(code, 403, "{path} from a browser that sent no Origin");
    }
    // A page whose name was rebound to 127.0.0.1 (its requests are same-origin for the browser).
    let rebound = b"GET /v1/admin/status HTTP/1.1\r\nhost: evil.example:7480\r\nconnection: close\r\n\r\n";
    let (code, _) = exchange(edge.http, rebound, b"").expect("an answer");
    assert_eq!(code, 403, "a Host that is not this machine's");
    assert_eq!(edge.status()["sync"]["paused"], serde_json::Value::Bool(false), "sync was not paused");
    assert_eq!(edge.read_all("events").len(), before, "nothing stored");
    // Programs (curl, the CLI, the client) are served as before.
    let (code, _) = http_produce(edge.http, b"from curl").expect("an answer");
    assert_eq!(code, 200);
    let local = b"GET /health HTTP/1.1\r\nhost: localhost:7480\r\nconnection: close\r\n\r\n";
    assert_eq!(exchange(edge.http, local, b"").expect("an answer").0, 200);
}

#[test]
fn an_api_open_to_the_network_serves_only_its_tokens_and_admin_operations_only_the_admin_token() {
    api_tokens(false);
}

#[test]
fn the_edge_lite_shell_checks_the_api_tokens_too() {
    api_tokens(true);
}

fn api_tokens(lite: bool) {
    use outpost::binproto::Code;
    use outpost::client::{Client, ClientError};
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, binary) = (common::free_addr(), common::free_addr());
    let config = dir.path().join("edge.toml");
    let text = format!(
        "[node]\nname = \"kiosk\"\ndata_dir = \"{}\"\n[api]\nhttp = \"0.0.0.0:{}\"\nbinary = \"0.0.0.0:{}\"\n\
         token = \"pr0ducer-7f3a9c1e\"\nadmin_token = \"0perator-b25d44e0\"\n",
        dir.path().join("kiosk").display(),
        http.port(),
        binary.port()
    );
    std::fs::write(&config, text).expect("written");
    let mut edge = Daemon::from_file(dir.path(), "kiosk", &config, http, binary);
    edge.api_token = Some("0perator-b25d44e0".into());
    if lite {
        edge = edge.lite();
    }
    edge.start();
    let call = |token: Option<&str>, method: &str, path: &str, body: &[u8]| {
        common::http_as(http, token, method, path, None, body).expect("an answer")
    };
    // HTTP: no token and a wrong one are refused; /health needs none.
    for token in [None, Some("guess")] {
        let (code, body) = call(token, "POST", "/v1/topics/events/records", b"x");
        assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("Authorization: Bearer"));
        assert_eq!(call(token, "GET", "/v1/admin/status", b"").0, 401);
    }
    assert_eq!(call(None, "GET", "/health", b"").0, 200);
    assert_eq!(call(Some("pr0ducer-7f3a9c1e"), "POST", "/v1/topics/events/records", b"by token").0, 200);
    assert_eq!(call(Some("pr0ducer-7f3a9c1e"), "GET", "/v1/topics/events/records?from=0", b"").0, 200);
    // The producers' token does not pause sync; the admin token does.
    let (code, body) = call(Some("pr0ducer-7f3a9c1e"), "POST", "/v1/admin/sync/pause", b"");
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("api.admin_token"));
    assert_eq!(edge.status()["sync"]["paused"], serde_json::Value::Bool(false));
    assert_eq!(call(Some("0perator-b25d44e0"), "POST", "/v1/admin/sync/pause", b"").0, 200);
    assert_eq!(edge.status()["sync"]["paused"], serde_json::Value::Bool(true));
    // Binary: nothing before an Auth; a wrong token ends the connection.
    let mut anonymous = Client::connect(binary).expect("connects");
    match anonymous.produce("events", None, b"anonymous") {
        Err(ClientError::Refused { code: Code::Unauthorized, message, .. }) => {
            assert!(message.contains("send Auth first"))
        }
        other => panic!("an unauthenticated produce: {other:?}"),
    }
    match Client::connect_with_token(binary, "guess") {
        Err(ClientError::Refused { code: Code::Unauthorized, .. }) => {}
        other => panic!("a wrong token: {:?}", other.err()),
    }
    let mut producer = Client::connect_with_token(binary, "pr0ducer-7f3a9c1e").expect("the producers' token");
    producer.produce("events", None, b"by binary").expect("served after Auth");
    let values: Vec<Vec<u8>> = edge.read_all("events").into_iter().map(|r| r.2).collect();
    assert_eq!(values, [b"by token".to_vec(), b"by binary".to_vec()], "nothing refused was stored");
    // The CLI sends the admin token of --config; without it, it says what to give.
    let out = std::process::Command::new(common::BIN)
        .args(["sync", "resume", "--config"])
        .arg(&config)
        .output()
        .expect("the CLI runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, _) = edge.cli(&["queue"]);
    assert_eq!(code, 3, "no token: refused");
    let log = edge.log_text();
    assert!(log.contains("API request refused") && log.contains("binary connection refused"), "{log}");
}

// ---- defect 10: the gateway link's authentication ----

/// A hand-made hello (docs/PROTOCOL.md, "Transport"): magic, name and token with their lengths.
fn hello(listen: SocketAddr, name: &str, token: &str) -> (Verdict, String) {
    let bytes =
        [peer::HELLO_MAGIC.as_slice(), &[name.len() as u8], name.as_bytes(), &[token.len() as u8], token.as_bytes()]
            .concat();
    let mut s = TcpStream::connect(listen).expect("connects");
    s.set_read_timeout(Some(ANSWER_WITHIN)).expect("timeout");
    s.write_all(&bytes).expect("hello sent");
    let mut answer = Vec::new();
    loop {
        let need = peer::answer_needs(&answer);
        if need == 0 {
            break;
        }
        let at = answer.len();
        answer.resize(at + need, 0);
        s.read_exact(&mut answer[at..]).expect("the gateway answers the hello");
    }
    let (verdict, _, message) = peer::decode_answer(&answer).expect("an answer");
    (verdict, message)
}

#[test]
fn the_gateway_refuses_guesses_alike_throttles_them_and_needs_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);
    gw.start();
    // A refusal does not tell which edge names exist.
    let (v1, unknown) = hello(listen, "intruder", "t1");
    let (v2, wrong) = hello(listen, "edge-1", "guess");
    assert_eq!((v1, v2), (Verdict::Unauthorized, Verdict::Unauthorized));
    assert_eq!(unknown, wrong, "an unknown name and a wrong token are refused alike");
    // Guessing is throttled: most of a fast burst is refused without being checked.
    let mut throttled = 0;
    for i in 0..100 {
        let (v, message) = hello(listen, "edge-1", &format!("guess-{i}"));
        assert_eq!(v, Verdict::Unauthorized);
        throttled += usize::from(message.contains("too many failed"));
    }
    assert!(throttled >= 80, "{throttled} of 100 fast guesses were throttled");
    assert!(gw.is_running());
    drop(gw);

    // A gateway with no tokens refuses edges unless open mode is switched on.
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut gw = Daemon::gateway(dir.path(), listen, &[]);
    gw.start();
    let (v, message) = hello(listen, "anyone", "");
    assert_eq!(v, Verdict::Unauthorized, "{message}");
    assert!(message.contains("open"), "the refusal says how to accept edges: {message}");
    drop(gw);
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut gw = Daemon::gateway_with(dir.path(), listen, &[], "open = true\n");
    gw.start();
    assert_eq!(hello(listen, "anyone", "").0, Verdict::Welcome);
    assert!(gw.log_text().contains("open"), "open mode is logged at start");
}

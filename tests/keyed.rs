//! Keyed topics with real processes (docs/KEYED.md): a gateway and two edges (one per
//! shell) write the same keys while the gateway is down and the edges' sync is paused;
//! once they meet again, both edges and the gateway answer the same value per key, the one
//! the topic's strategy prescribes (each edge's writes reach the other through the
//! gateway's copies), and `outpost conflicts` shows the resolutions. A `keep-both` key
//! shows all three values until a write that saw them resolves it, everywhere. A `custom`
//! topic runs the WebAssembly merge of examples/merge/notes.wat (the longest note) in both
//! shells and at the gateway.

mod common;

use common::{free_addr, http, wait_until, Daemon};
use outpost::binproto::{Code, ReadOption, WriteOp};
use outpost::client::ClientError;
use outpost_core::keyed_reads::SessionToken;
use serde_json::Value;
use std::net::SocketAddr;

const TOPICS: &str = "
[[topics]]
name = \"prices\"
sync = \"both\"
conflict = \"last-write-wins\"
keyed_state_max = \"1MiB\"

[[topics]]
name = \"stock\"
sync = \"both\"
conflict = \"counter\"
keyed_state_max = \"1MiB\"

[[topics]]
name = \"settings\"
sync = \"both\"
conflict = \"cloud-wins\"
keyed_state_max = \"1MiB\"

[[topics]]
name = \"notes\"
sync = \"both\"
conflict = \"keep-both\"
keyed_state_max = \"1MiB\"
";

/// The topics, with `journal` merged by the example WebAssembly module.
fn topics() -> String {
    let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/merge/notes.wat");
    format!(
        "{TOPICS}\n[[topics]]\nname = \"journal\"\nsync = \"both\"\nconflict = \"custom\"\nmerge = {:?}\n\
         keyed_state_max = \"1MiB\"\n",
        module.display().to_string()
    )
}
const SYNC: &str = "backoff_min = \"100ms\"\nbackoff_max = \"1s\"\nkeepalive_interval = \"1s\"\n";

/// A keyed write over HTTP, retried while the daemon says so; panics on a refusal.
fn write(addr: SocketAddr, method: &str, topic: &str, key: &str, body: &[u8]) {
    let path = format!("/v1/topics/{topic}/keys/{key}");
    let ct = (method == "POST").then_some("application/json");
    for _ in 0..500 {
        let (code, answer) = http(addr, method, &path, ct, body).expect("http");
        let answer: Value = serde_json::from_slice(&answer).expect("JSON");
        match code {
            200 => return,
            _ if answer["retryable"] == true => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => panic!("{method} {path} refused ({code}): {answer}"),
        }
    }
    panic!("{method} {path}: still retryable after 500 tries");
}

fn get(addr: SocketAddr, topic: &str, key: &str) -> Value {
    let (code, body) = http(addr, "GET", &format!("/v1/topics/{topic}/keys/{key}"), None, b"").expect("http");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let mut v: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["consistency"], "eventual");
    // What the key answers, without the fields naming where and when it was read.
    let o = v.as_object_mut().expect("an object");
    for field in ["topic", "consistency", "token", "as_of_ms", "staleness_ms"] {
        o.remove(field);
    }
    v
}

/// A read of `path` (with its query): the status and the JSON answer.
fn read(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (code, body) = http(addr, "GET", path, None, b"").expect("http");
    (code, serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body))))
}

/// A session follows its writes from one edge to another: a causal read at an edge that
/// does not hold the session's write yet says "not yet" (and a bounded read "too stale")
/// instead of answering without it; once the edge's sync resumes, the same token reads
/// the write there. Over HTTP in the tokio shell and edge-lite.
#[test]
fn a_session_reads_its_writes_at_another_edge_or_is_told_not_yet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let gw_topics = format!("\n[resources]\nmax_memory = \"512MiB\"\n{TOPICS}");
    let mut gw = Daemon::gateway_with(dir.path(), listen, &[("edge-1", "t1"), ("edge-2", "t2")], &gw_topics);
    gw.start();
    let mut e1 = Daemon::edge_with_sync(dir.path(), "edge-1", listen, "t1", SYNC, TOPICS);
    let mut e2 = Daemon::edge_with_sync(dir.path(), "edge-2", listen, "t2", SYNC, TOPICS).lite();
    e1.start();
    e2.start();
    write(gw.http, "PUT", "prices", "warmup", b"1.00");
    for (name, e) in [("edge-1", &e1), ("edge-2", &e2)] {
        wait_until(60, &format!("{name} to hold the cloud's warmup price"), || {
            get(e.http, "prices", "warmup")["found"] == true
        });
    }
    let (code, out) = e2.cli(&["sync", "pause"]);
    assert_eq!(code, 0, "sync pause: {out}");

    // A new session (an empty token) writes at edge-1.
    let path = "/v1/topics/prices/keys/pump?token=";
    let (code, body) = http(e1.http, "PUT", path, None, b"edge-1's price").expect("http");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let written: Value = serde_json::from_slice(&body).expect("JSON");
    let token = written["token"].as_str().expect("a session token").to_string();
    let causal = format!("/v1/topics/prices/keys/pump?consistency=causal&token={token}");

    // Edge-2 does not hold it: not yet, rather than an answer without it.
    let (code, v) = read(e2.http, &causal);
    assert_eq!((code, v["code"].clone(), v["retryable"].clone()), (409, "not_yet".into(), true.into()), "{v}");
    // Edge-1 does, and its answer's token carries everything it holds.
    let (code, v) = read(e1.http, &causal);
    assert_eq!((code, v["value"].clone(), v["consistency"].clone()), (200, "edge-1's price".into(), "causal".into()));
    let token = v["token"].as_str().expect("a token").to_string();
    assert!(v["staleness_ms"].is_u64(), "edge-1 heard from the gateway: {v}");

    // Bounded: edge-2 last heard of the cloud's writes at the warmup.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (code, v) = read(e2.http, "/v1/topics/prices/keys/pump?consistency=bounded&max_staleness_ms=10");
    assert_eq!((code, v["code"].clone()), (409, "too_stale".into()), "{v}");
    let (code, v) = read(e2.http, "/v1/topics/prices/keys/pump?consistency=bounded&max_staleness_ms=3600000");
    assert_eq!(code, 200, "{v}");
    let staleness = v["staleness_ms"].as_u64().expect("a staleness");
    assert!((50..=3_600_000).contains(&staleness), "{v}");
    // A token of another topic, or not a token, is refused saying so.
    let (code, v) = read(e2.http, &format!("/v1/topics/stock/keys/pump?consistency=causal&token={token}"));
    assert_eq!((code, v["code"].clone()), (400, "bad_token".into()), "{v}");
    let (code, v) = read(e2.http, "/v1/topics/prices/keys/pump?consistency=causal&token=zz");
    assert_eq!((code, v["code"].clone()), (400, "bad_token".into()), "{v}");

    // Once edge-2 syncs again, the session reads its write there.
    let (code, out) = e2.cli(&["sync", "resume"]);
    assert_eq!(code, 0, "sync resume: {out}");
    let causal = format!("/v1/topics/prices/keys/pump?consistency=causal&token={token}");
    wait_until(60, "edge-2 to answer the session's causal read", || read(e2.http, &causal).0 == 200);
    let (_, v) = read(e2.http, &causal);
    assert_eq!(v["value"], "edge-1's price", "{v}");
}

/// The (value, origin) pairs of a key's siblings, in order.
fn siblings(v: &Value) -> Vec<(String, String)> {
    v["siblings"]
        .as_array()
        .map(|s| {
            s.iter().map(|x| (x["value"].as_str().unwrap().into(), x["origin"].as_str().unwrap().into())).collect()
        })
        .unwrap_or_default()
}

#[test]
fn edges_and_the_cloud_write_the_same_keys_apart_and_converge_per_strategy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    // Eight logs (two per topic) need more than a default gateway's memory.
    let gateway_topics = format!("\n[resources]\nmax_memory = \"512MiB\"\n{}", topics());
    let mut gw = Daemon::gateway_with(dir.path(), listen, &[("edge-1", "t1"), ("edge-2", "t2")], &gateway_topics);
    gw.start();
    let mut e1 = Daemon::edge_with_sync(dir.path(), "edge-1", listen, "t1", SYNC, &topics());
    let mut e2 = Daemon::edge_with_sync(dir.path(), "edge-2", listen, "t2", SYNC, &topics()).lite();
    e1.start();
    e2.start();
    let edges = [("edge-1", &e1), ("edge-2", &e2)];

    // The way down works: a price the cloud sets reaches both edges.
    write(gw.http, "PUT", "prices", "warmup", b"1.00");
    for (name, e) in edges {
        wait_until(60, &format!("{name} to hold the cloud's warmup price"), || {
            get(e.http, "prices", "warmup")["found"] == true
        });
    }

    // The gateway goes away; the edges pause their sync so that what they write next is
    // concurrent with what the cloud writes when it is back.
    gw.kill();
    for (name, e) in edges {
        let (code, out) = e.cli(&["sync", "pause"]);
        assert_eq!(code, 0, "{name}: sync pause: {out}");
        write(e.http, "PUT", "prices", "pump", format!("{name}'s price").as_bytes());
        write(e.http, "POST", "stock", "seals", br#"{"increment": 5}"#);
        write(e.http, "PUT", "notes", "pump", format!("{name}'s note").as_bytes());
        // (edge-2's entry is the longer one.)
        let entry = if name == "edge-1" { "pump seal cracked" } else { "pump seal cracked, replaced" };
        write(e.http, "PUT", "journal", "pump", format!("{name}: {entry}").as_bytes());
    }
    gw.start();
    // Later than the edges' prices: last-write-wins answers the cloud's.
    write(gw.http, "PUT", "prices", "pump", b"the cloud's price");
    write(gw.http, "POST", "stock", "seals", br#"{"increment": 7}"#);
    write(gw.http, "PUT", "settings", "mode", b"the cloud's setting");
    write(gw.http, "PUT", "notes", "pump", b"the cloud's note");
    write(gw.http, "PUT", "journal", "pump", b"pump: check");
    // Later than the cloud's setting: cloud-wins still answers the cloud's.
    for (name, e) in edges {
        write(e.http, "PUT", "settings", "mode", format!("{name}'s setting").as_bytes());
        let (code, out) = e.cli(&["sync", "resume"]);
        assert_eq!(code, 0, "{name}: sync resume: {out}");
    }

    let all = [("edge-1", &e1), ("edge-2", &e2), ("gateway", &gw)];
    let expected = [
        ("prices", "pump", Value::from("the cloud's price")),
        // Both edges' sales and the cloud's restock.
        ("stock", "seals", Value::from(17)),
        ("settings", "mode", Value::from("the cloud's setting")),
        // The module keeps the longest entry: edge-2's, though the cloud's came later.
        ("journal", "pump", Value::from("edge-2: pump seal cracked, replaced")),
    ];
    for (topic, key, value) in &expected {
        for (at, d) in all {
            wait_until(60, &format!("{at} to answer {value} for {topic}/{key}"), || {
                get(d.http, topic, key)["value"] == *value
            });
        }
        let answers: Vec<Value> = all.iter().map(|(_, d)| get(d.http, topic, key)).collect();
        assert!(answers.iter().all(|a| *a == answers[0]), "{topic}/{key}: {answers:?}");
    }
    // keep-both: the three notes, at every replica, in the same order. (An edge names the
    // other edge by its node id: it knows only its own name and its gateway's.)
    let values = |v: &Value| siblings(v).into_iter().map(|(value, _)| value).collect::<Vec<_>>();
    for (at, d) in all {
        wait_until(60, &format!("{at} to hold the three notes of pump"), || {
            let mut s = values(&get(d.http, "notes", "pump"));
            s.sort();
            s == ["edge-1's note", "edge-2's note", "the cloud's note"]
        });
    }
    let answers: Vec<Vec<String>> = all.iter().map(|(_, d)| values(&get(d.http, "notes", "pump"))).collect();
    assert!(answers.iter().all(|a| *a == answers[0]), "notes/pump: {answers:?}");
    let mut origins: Vec<String> = siblings(&get(gw.http, "notes", "pump")).into_iter().map(|(_, o)| o).collect();
    origins.sort();
    assert_eq!(origins, ["edge-1", "edge-2", "gateway"]);

    // A write that saw the three notes resolves them, everywhere.
    write(e1.http, "PUT", "notes", "pump", b"merged by hand");
    for (at, d) in all {
        wait_until(60, &format!("{at} to answer the resolved note"), || {
            let v = get(d.http, "notes", "pump");
            v["value"] == "merged by hand" && v.get("siblings").is_none()
        });
    }

    // What each replica resolved, as the operator sees it.
    let (code, out) = gw.cli(&["conflicts", "--json"]);
    assert_eq!(code, 0, "{out}");
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    let topic = |name: &str| {
        answer["topics"].as_array().expect("topics").iter().find(|t| t["topic"] == name).cloned().expect(name)
    };
    let prices = topic("prices");
    let c = prices["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "pump" && c["winner"]["origin"] == "gateway")
        .unwrap_or_else(|| panic!("no conflict won by the cloud's price recorded: {prices}"));
    assert_eq!(c["strategy"], "last-write-wins");
    let origins: Vec<&str> = c["versions"].as_array().unwrap().iter().map(|v| v["origin"].as_str().unwrap()).collect();
    assert!(origins.contains(&"gateway") && origins.len() >= 2, "{c}");
    let settings = topic("settings");
    let c = settings["conflicts"].as_array().unwrap().iter().find(|c| c["key"] == "mode").cloned();
    assert_eq!(c.expect("a settings conflict")["winner"]["origin"], "gateway");
    let notes = topic("notes");
    let c = notes["conflicts"].as_array().unwrap().iter().find(|c| c["key"] == "pump").cloned();
    assert!(c.expect("a notes conflict")["winner"].is_null(), "keep-both names no winner");
    let journal = topic("journal");
    let c = journal["conflicts"].as_array().unwrap().iter().find(|c| c["key"] == "pump").cloned();
    let c = c.expect("a journal conflict");
    assert!(c["winner"].is_null() && c["strategy"] == "custom", "a merge names no winner: {c}");
    assert_eq!(get(gw.http, "journal", "pump")["merged"], true);
    // Each edge resolved the other edge's writes too: they came down as copies.
    let (code, out) = e2.cli(&["conflicts", "--json", "--topic", "settings"]);
    assert_eq!(code, 0, "{out}");
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    let edge_1 = format!("n{}", outpost::config::node_id_of("edge-1").0);
    let origins: Vec<String> = answer["topics"][0]["conflicts"]
        .as_array()
        .expect("conflicts")
        .iter()
        .filter(|c| c["key"] == "mode")
        .flat_map(|c| c["versions"].as_array().unwrap().iter().map(|v| v["origin"].as_str().unwrap().to_string()))
        .collect();
    assert!(origins.contains(&edge_1), "edge-2 resolved edge-1's setting: {origins:?}");
    assert_eq!(topic("stock")["conflicts_total"], 0, "a counter merges without conflicts");
    let (code, table) = e1.cli(&["conflicts", "--topic", "prices"]);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("prices (last-write-wins)") && table.contains("pump"), "{table}");
    assert!(table.contains("gateway#"), "the winner's dot: {table}");
    let (code, table) = gw.cli(&["conflicts", "--topic", "journal"]);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("journal (custom)") && table.contains("merged"), "{table}");

    // The merge's counters as metrics.
    let (_, metrics) = http(gw.http, "GET", "/metrics", None, b"").expect("http");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("outpost_keyed_conflicts_total{topic=\"prices\"} "), "{metrics}");
    assert!(metrics.contains("outpost_keyed_copies_waiting{topic=\"stock\"} 0"), "every write copied: {metrics}");
    assert!(metrics.contains("outpost_keyed_checkpoints_total{result=\"failed\"} 0"), "{metrics}");

    // A restart rebuilds the same answers from the log.
    let keys = [("prices", "pump"), ("stock", "seals"), ("notes", "pump")];
    let before: Vec<Value> = keys.iter().map(|(t, k)| get(gw.http, t, k)).collect();
    gw.kill();
    gw.start();
    let after: Vec<Value> = keys.iter().map(|(t, k)| get(gw.http, t, k)).collect();
    assert_eq!(before, after);
}

#[test]
fn keyed_requests_that_are_wrong_are_refused_saying_why_by_both_shells_and_protocols() {
    keyed_calls_of_one_edge(false);
    keyed_calls_of_one_edge(true);
}

fn keyed_calls_of_one_edge(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let topics = "\n[[topics]]\nname = \"stock\"\nsync = \"local\"\nconflict = \"counter\"\n\n\
                  [[topics]]\nname = \"events\"\nsync = \"local\"\n";
    let (http_addr, binary) = (free_addr(), free_addr());
    let config = dir.path().join("edge.toml");
    let data = dir.path().join("edge");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"edge\"\ndata_dir = \"{}\"\n\n[api]\nhttp = \"{http_addr}\"\nbinary = \"{binary}\"\n{topics}",
            data.display()
        ),
    )
    .expect("config");
    let mut e = Daemon::from_file(dir.path(), "edge", &config, http_addr, binary);
    if lite {
        e = e.lite();
    }
    e.start();
    let ask = |method: &str, path: &str, body: &[u8]| {
        let ct = (method == "POST").then_some("application/json");
        let (code, body) = http(e.http, method, path, ct, body).expect("http");
        (code, String::from_utf8_lossy(&body).into_owned())
    };
    let (code, body) = ask("PUT", "/v1/topics/stock/keys/a", b"5");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("counter topic takes no put"), "{body}");
    let (code, body) = ask("POST", "/v1/topics/stock/keys/a", br#"{"increment": "five"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("takes a whole number"), "{body}");
    let (code, body) = ask("POST", "/v1/topics/stock/keys/a", br#"{"multiply": 2}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unknown operation"), "{body}");
    let (code, body) = ask("GET", "/v1/topics/events/keys/a", b"");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("not keyed"), "{body}");
    let (code, body) = ask("GET", "/v1/topics/nope/keys/a", b"");
    assert_eq!(code, 404, "{body}");
    // A plain produce of something that is no operation is refused too.
    let (code, body) = ask("POST", "/v1/topics/stock/records?key=a", b"5");
    assert_eq!(code, 400, "{body}");

    // The first write after a start waits for the clock's first bound to be durable
    // rather than being refused (it was, 503 "clock", one run in three).
    for by in [5, -2] {
        let (code, body) = ask("POST", "/v1/topics/stock/keys/a", format!(r#"{{"increment": {by}}}"#).as_bytes());
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = ask("GET", "/v1/topics/stock/keys/a", b"");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((v["value"].clone(), v["found"].clone()), (Value::from(3), Value::from(true)), "{v}");
    ask("DELETE", "/v1/topics/stock/keys/a", b"");
    let v: Value = serde_json::from_str(&ask("GET", "/v1/topics/stock/keys/a", b"").1).expect("JSON");
    assert_eq!(v["found"], false, "{v}");
    let (code, out) = e.cli(&["conflicts", "--topic", "events"]);
    assert_eq!(code, 3, "{out}");

    // The same through the binary protocol and the Rust client.
    let mut c = e.client();
    c.keyed_write("stock", b"b", WriteOp::Increment(4)).expect("durable");
    c.keyed_write("stock", b"b", WriteOp::Increment(3)).expect("durable");
    let v = c.keyed_get("stock", b"b").expect("an answer");
    assert_eq!((v["value"].clone(), v["strategy"].clone()), (Value::from(7), Value::from("counter")), "{v}");
    let refused = c.keyed_write("stock", b"b", WriteOp::Put(b"7".to_vec())).expect_err("a counter takes no put");
    assert!(matches!(&refused, ClientError::Refused { code: Code::BadRequest, retryable: false, .. }), "{refused}");
    let refused = c.keyed_get("events", b"b").expect_err("not keyed");
    assert!(matches!(&refused, ClientError::Refused { code: Code::NotKeyed, .. }), "{refused}");
    let log = c.conflicts("stock", 10).expect("an answer");
    assert_eq!(log["conflicts_total"], 0, "{log}");

    // A session through the client: its write, then a causal read that holds it.
    let mut session = SessionToken::new("stock");
    c.keyed_write_in(&mut session, "stock", b"b", WriteOp::Increment(1)).expect("durable");
    assert_eq!(session.entries().count(), 1, "the session holds its write");
    let v = c.keyed_get_in(&mut session, "stock", b"b").expect("this node holds the session's write");
    assert_eq!((v["value"].clone(), v["consistency"].clone()), (Value::from(8), Value::from("causal")), "{v}");
    // A bounded read of a node that never heard from another cannot bound its staleness.
    let refused = c.keyed_read("stock", b"b", ReadOption::Bounded { staleness_max_ms: 60_000 }).expect_err("alone");
    assert!(matches!(&refused, ClientError::Refused { code: Code::TooStale, retryable: true, .. }), "{refused}");
    let mut other = SessionToken::new("events");
    let refused = c.keyed_get_in(&mut other, "stock", b"b").expect_err("a token of another topic");
    assert!(matches!(&refused, ClientError::Refused { code: Code::BadRequest, .. }), "{refused}");
}

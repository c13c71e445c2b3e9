//! Store-and-forward: records written while the gateway is away stay queued on the edge,
//! `outpost queue` shows the backlog grow and drain, and everything arrives exactly once.

mod common;

use common::{free_addr, http, wait_until, Daemon};

fn produce_batch(edge: &Daemon, from: usize, n: usize) {
    let records: Vec<serde_json::Value> =
        (from..from + n).map(|i| serde_json::json!({ "value": format!("r{i}") })).collect();
    let body = serde_json::to_vec(&serde_json::json!({ "records": records })).expect("json");
    let (code, resp) =
        http(edge.http, "POST", "/v1/topics/events/records", Some("application/json"), &body).expect("http");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
}

/// Unsynced records of `events` as `outpost queue --json` prints them.
fn queued(edge: &Daemon) -> u64 {
    let (code, out) = edge.cli(&["queue", "--json"]);
    assert_eq!(code, 0, "outpost queue failed: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("queue --json is JSON");
    let t = v["topics"].as_array().expect("topics").iter().find(|t| t["name"] == "events").expect("events").clone();
    t["unsynced_records"].as_u64().expect("count")
}

#[test]
fn a_backlog_written_while_the_gateway_is_down_drains_when_it_returns() {
    scenario(false);
}

#[test]
fn the_edge_lite_shell_queues_and_drains_the_same_way() {
    scenario(true);
}

fn scenario(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut edge = Daemon::edge(dir.path(), "edge-1", listen, "t1", "");
    if lite {
        edge = edge.lite();
    }
    edge.start();
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);

    // No gateway yet: the backlog grows, and the table says so.
    produce_batch(&edge, 0, 2000);
    assert_eq!(queued(&edge), 2000);
    produce_batch(&edge, 2000, 3000);
    assert_eq!(queued(&edge), 5000);
    let (_, table) = edge.cli(&["queue"]);
    assert!(table.contains("events") && table.contains("5000"), "queue table:\n{table}");
    let (code, health) = edge.cli(&["health"]);
    assert_eq!(code, 1, "degraded while the gateway is unreachable:\n{health}");
    assert!(health.contains("no connection to gateway"), "{health}");

    gw.start();
    let mut seen = vec![];
    wait_until(60, "the backlog to drain", || {
        let q = queued(&edge);
        seen.push(q);
        q == 0
    });
    assert_eq!(gw.read_all("events").len(), 5000);

    // The gateway goes away under load, and comes back.
    produce_batch(&edge, 5000, 1000);
    gw.kill();
    for k in 0..5 {
        produce_batch(&edge, 6000 + k * 1000, 1000);
    }
    let backlog = queued(&edge);
    assert!(backlog >= 5000, "records written while the gateway was down are queued: {backlog}");
    // The link has been failing for a while, so its next attempt may be many seconds off;
    // `outpost sync now` makes it at once.
    std::thread::sleep(std::time::Duration::from_secs(8));
    gw.start();
    let (code, out) = edge.cli(&["sync", "now"]);
    assert_eq!(code, 0, "{out}");
    wait_until(1, "the link back at once after sync now", || edge.status()["link"]["peers"][0]["connected"] == true);
    wait_until(60, "the second backlog to drain", || queued(&edge) == 0);

    let stored = gw.read_all("events");
    let values: Vec<String> = stored.iter().map(|(_, _, v)| String::from_utf8(v.clone()).expect("utf8")).collect();
    let expected: Vec<String> = (0..11_000).map(|i| format!("r{i}")).collect();
    assert_eq!(values, expected, "every record once, in order");
    let seqs: Vec<u64> = stored.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(seqs, (0..11_000).collect::<Vec<_>>());
    let (code, _) = edge.cli(&["health"]);
    assert_eq!(code, 0, "healthy again");
}

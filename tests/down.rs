//! `cloud-to-edge` topics with real processes: records produced at the gateway reach two
//! edges (one per shell) that were away when they were written, each exactly once and in
//! order, across a kill -9 of an edge and of the gateway; a produce to a topic written at
//! the other side is refused; a topic's `retention_age` expires at the gateway what an
//! edge away for longer lacks, and the edge is told; a `both` topic carries the edges'
//! records up and the gateway's down, each once, across a kill -9 of each side.

mod common;

use common::{free_addr, http, produce, wait_until, Daemon};
use outpost_core::config::Way;

const TOPICS: &str =
    "\n[[topics]]\nname = \"events\"\nsync = \"up\"\n\n[[topics]]\nname = \"config\"\nsync = \"down\"\n";
/// Fast redials, and a keepalive of a second so that a restarted gateway hears of its
/// edges at once.
const SYNC: &str = "backoff_min = \"100ms\"\nbackoff_max = \"2s\"\nkeepalive_interval = \"1s\"\n";

fn config_values(d: &Daemon) -> Vec<(u64, u64, String)> {
    d.read_all("config").into_iter().map(|(o, s, v)| (o, s, String::from_utf8(v).expect("utf8"))).collect()
}

fn produce_config(gw: &Daemon, from: usize, n: usize) {
    let mut c = gw.client();
    for i in from..from + n {
        produce(&mut c, "config", format!("c{i}").as_bytes());
    }
}

/// Every edge holds `config` records 0..n, from the gateway, at its sequences.
fn wait_for_all(edges: &[&Daemon], gateway_id: u64, n: usize) {
    let expected: Vec<(u64, u64, String)> = (0..n).map(|i| (gateway_id, i as u64, format!("c{i}"))).collect();
    for e in edges {
        wait_until(60, &format!("{} to hold {n} config records", e.name), || config_values(e).len() >= n);
        assert_eq!(config_values(e), expected, "{}: every record once, in order", e.name);
    }
}

#[test]
fn records_written_in_the_cloud_reach_every_edge_once_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut gw = Daemon::gateway_with(dir.path(), listen, &[("edge-1", "t1"), ("edge-2", "t2")], TOPICS);
    gw.start();
    let gateway_id = outpost::config::node_id_of("gateway").0;

    // Written while no edge is there.
    produce_config(&gw, 0, 300);
    let mut e1 = Daemon::edge_with_sync(dir.path(), "edge-1", listen, "t1", SYNC, TOPICS);
    let mut e2 = Daemon::edge_with_sync(dir.path(), "edge-2", listen, "t2", SYNC, TOPICS).lite();
    e1.start();
    e2.start();
    wait_for_all(&[&e1, &e2], gateway_id, 300);

    // Each side refuses produces to the topic the other writes.
    let (code, body) = http(e1.http, "POST", "/v1/topics/config/records", None, b"x").expect("http");
    assert_eq!(code, 405, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("not_accepted"));
    let (code, _) = http(gw.http, "POST", "/v1/topics/events/records", None, b"x").expect("http");
    assert_eq!(code, 405);

    // An edge killed, records written meanwhile, the edge back.
    e1.kill();
    produce_config(&gw, 300, 300);
    e1.start();
    wait_for_all(&[&e1, &e2], gateway_id, 600);

    // The gateway killed and back: it forgot its senders; the edges' keepalives bring
    // them back, and what is written after the restart comes down too.
    gw.kill();
    gw.start();
    produce_config(&gw, 600, 200);
    wait_for_all(&[&e1, &e2], gateway_id, 800);

    let (code, table) = gw.cli(&["sync", "status", "--gateway"]);
    assert_eq!(code, 0, "{table}");
    for edge in ["edge-1", "edge-2"] {
        assert!(table.lines().any(|l| l.starts_with(edge) && l.contains("config") && l.contains("800")), "{table}");
    }
}

#[test]
fn a_topic_with_subscribers_goes_down_to_them_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let promos = "\n[[topics]]\nname = \"promos\"\nsync = \"down\"\n";
    let edge_topics = format!("{TOPICS}{promos}");
    let gw_topics = format!("{TOPICS}{promos}subscribers = [\"edge-1*\"]\n");
    let mut gw = Daemon::gateway_with(dir.path(), listen, &[("edge-1", "t1"), ("edge-2", "t2")], &gw_topics);
    gw.start();
    let gateway_id = outpost::config::node_id_of("gateway").0;
    let mut c = gw.client();
    for i in 0..50 {
        produce(&mut c, "promos", format!("p{i}").as_bytes());
    }
    produce_config(&gw, 0, 50);
    let mut e1 = Daemon::edge_with_sync(dir.path(), "edge-1", listen, "t1", SYNC, &edge_topics);
    let mut e2 = Daemon::edge_with_sync(dir.path(), "edge-2", listen, "t2", SYNC, &edge_topics).lite();
    e1.start();
    e2.start();
    // Both get what goes to every edge; the promotions were written first, in the same
    // senders, so by then edge-2 would hold them had they been sent to it.
    wait_for_all(&[&e1, &e2], gateway_id, 50);
    wait_until(60, "edge-1 to hold 50 promos", || e1.read_all("promos").len() >= 50);
    assert_eq!(e1.read_all("promos").len(), 50);
    assert!(e2.read_all("promos").is_empty(), "edge-2 does not subscribe to promos");
    let (code, table) = gw.cli(&["sync", "status", "--gateway"]);
    assert_eq!(code, 0, "{table}");
    assert!(table.lines().any(|l| l.starts_with("edge-1") && l.contains("promos")), "{table}");
    assert!(!table.lines().any(|l| l.starts_with("edge-2") && l.contains("promos")), "{table}");
}

#[test]
fn retention_age_expires_at_the_gateway_what_an_edge_away_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let notices = "\n[[topics]]\nname = \"notices\"\nsync = \"down\"\n";
    let edge_topics = format!("{TOPICS}{notices}");
    let gw_topics = format!(
        "{TOPICS}{notices}subscribers = [\"edge-*\"]\nretention_age = \"2s\"\n\n[log]\nsegment = \"64KiB\"\n\n[resources]\nmax_storage = \"256MiB\"\n"
    );
    let mut gw = Daemon::gateway_with(dir.path(), listen, &[("edge-1", "t1"), ("edge-2", "t2")], &gw_topics);
    gw.start();
    // Written while the edges are away, in several segments (values that compress little).
    let mut c = gw.client();
    let value = |i: u64| format!("n{i} {:x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(4);
    for i in 0..3000 {
        produce(&mut c, "notices", value(i).as_bytes());
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    // A commit after they aged: retention runs, and expires all but the newest segment.
    produce(&mut c, "notices", value(3000).as_bytes());
    let topic = |d: &Daemon| {
        let s = d.status();
        s["topics"].as_array().expect("topics").iter().find(|t| t["name"] == "notices").expect("topic").clone()
    };
    let expired = topic(&gw)["evicted_unsynced"].as_u64().expect("a count");
    assert!(expired > 0 && expired < 3000, "expired {expired} of the 3000 written before the wait");
    assert!(gw.log_text().contains("retention_age expired records"), "the gateway says so in its log");
    // The subscribers it waits for are listed though no sender to them exists yet.
    let (code, table) = gw.cli(&["sync", "status", "--gateway"]);
    assert_eq!(code, 0, "{table}");
    for edge in ["edge-1", "edge-2"] {
        let row = table.lines().find(|l| l.starts_with(edge) && l.contains("notices"));
        assert!(row.is_some_and(|r| r.contains("never heard") && r.contains("3001")), "{table}");
    }

    // One edge per shell.
    let mut e1 = Daemon::edge_with_sync(dir.path(), "edge-1", listen, "t1", SYNC, &edge_topics);
    let mut e2 = Daemon::edge_with_sync(dir.path(), "edge-2", listen, "t2", SYNC, &edge_topics).lite();
    e1.start();
    e2.start();
    for e in [&e1, &e2] {
        // Its log begins where the expired range ends: a fetch below it is refused (as is
        // one past its end, until the records arrive).
        let notices_from = |from: u64| {
            let r = e.client().fetch("notices", from, 10_000, 4 << 20);
            r.map(|r| r.records.iter().map(|r| r.origin_seq).collect::<Vec<u64>>()).unwrap_or_default()
        };
        wait_until(60, &format!("{} to hold the notices the gateway kept", e.name), || {
            e.try_status().is_some() && notices_from(expired).last() == Some(&3000)
        });
        let seqs = notices_from(expired);
        assert_eq!(
            seqs,
            (expired..=3000).collect::<Vec<_>>(),
            "{}: skipped exactly what expired, then the rest",
            e.name
        );
        assert!(e.client().fetch("notices", 0, 10, 1 << 20).is_err(), "{}: nothing below what expired", e.name);
    }
}

/// `records` hold `origin`'s sequences `0..n` once, in order, with the values `{prefix}{i}`.
fn assert_stream(records: &[(u64, u64, Vec<u8>)], origin: u64, prefix: &str, n: usize, at: &str) {
    let own: Vec<(u64, String)> = records
        .iter()
        .filter(|r| r.0 == origin)
        .map(|(_, seq, v)| (*seq, String::from_utf8(v.clone()).expect("utf8")))
        .collect();
    let expected: Vec<(u64, String)> = (0..n).map(|i| (i as u64, format!("{prefix}{i}"))).collect();
    assert_eq!(own, expected, "{at}: {prefix} records once, in order");
}

#[test]
fn a_both_topic_carries_the_edges_records_up_and_the_gateways_down_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let orders = "\n[[topics]]\nname = \"orders\"\nsync = \"both\"\n";
    let mut gw = Daemon::gateway_with(dir.path(), listen, &[("edge-1", "t1"), ("edge-2", "t2")], orders);
    gw.start();
    let id = |name: &str| outpost::config::node_id_of(name).0;
    let mut e1 = Daemon::edge_with_sync(dir.path(), "edge-1", listen, "t1", SYNC, orders);
    let mut e2 = Daemon::edge_with_sync(dir.path(), "edge-2", listen, "t2", SYNC, orders).lite();
    e1.start();
    e2.start();
    let write = |d: &Daemon, prefix: &str, from: usize, n: usize| {
        let mut c = d.client();
        for i in from..from + n {
            produce(&mut c, "orders", format!("{prefix}{i}").as_bytes());
        }
    };
    let (up, down) = (Some(Way::Up), Some(Way::Down));
    let converged = |gw: &Daemon, edges: &[&Daemon], (g, a, b): (usize, usize, usize)| {
        for e in edges {
            wait_until(60, &format!("{} to hold {g} orders from the gateway", e.name), || {
                e.read_way("orders", down).len() >= g
            });
            assert_stream(&e.read_way("orders", down), id("gateway"), "g", g, &e.name);
        }
        wait_until(60, "the gateway to hold every edge's orders", || gw.read_way("orders", up).len() >= a + b);
        let held = gw.read_way("orders", up);
        assert_eq!(held.len(), a + b, "the gateway holds each edge's orders once");
        assert_stream(&held, id("edge-1"), "a", a, "gateway");
        assert_stream(&held, id("edge-2"), "b", b, "gateway");
    };
    write(&gw, "g", 0, 100);
    write(&e1, "a", 0, 100);
    write(&e2, "b", 0, 100);
    converged(&gw, &[&e1, &e2], (100, 100, 100));
    // Each edge reads its own orders in the half that goes up.
    assert_stream(&e1.read_way("orders", up), id("edge-1"), "a", 100, "edge-1");

    // A fetch must say which half it reads; curl's view of one that does.
    let (code, body) = http(e1.http, "GET", "/v1/topics/orders/records", None, b"").expect("http");
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("direction=up"), "{}", String::from_utf8_lossy(&body));
    let (code, body) = http(e2.http, "GET", "/v1/topics/orders/records?direction=down&max=1", None, b"").expect("http");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("\"g0\""), "{}", String::from_utf8_lossy(&body));

    // An edge killed while both sides write; then the gateway killed while both write.
    e1.kill();
    write(&gw, "g", 100, 100);
    write(&e2, "b", 100, 50);
    e1.start();
    write(&e1, "a", 100, 50);
    gw.kill();
    write(&e1, "a", 150, 50);
    write(&e2, "b", 150, 50);
    gw.start();
    write(&gw, "g", 200, 50);
    converged(&gw, &[&e1, &e2], (250, 200, 200));

    let (code, table) = gw.cli(&["queue"]);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("both (up)") && table.contains("both (down)"), "each half is a row: {table}");
}

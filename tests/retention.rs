//! A top gateway with `gateway.up_retention` deletes what came up past its topics'
//! retention, behind a durable checkpoint of its marks: killed with -9 and back, it does
//! not take what an edge resends of a stream it deleted whole for new records.

mod common;

use common::{free_addr, produce, wait_until, Daemon};

/// Fast redials, and a keepalive of a second.
const SYNC: &str = "backoff_min = \"100ms\"\nbackoff_max = \"2s\"\nkeepalive_interval = \"1s\"\n";

/// `n` records of `events` from `from` on, in values that compress little.
fn produce_events(d: &Daemon, from: u64, n: u64) {
    let mut c = d.client();
    for i in from..from + n {
        let value = format!("{} {i} {:x}", d.name, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).repeat(3);
        produce(&mut c, "events", value.as_bytes());
    }
}

fn events(d: &Daemon) -> serde_json::Value {
    let s = d.status();
    s["topics"].as_array().expect("topics").iter().find(|t| t["name"] == "events").expect("topic events").clone()
}

/// The origins of every record the gateway holds of `events`, from its log's start.
fn held_origins(gw: &Daemon) -> Vec<u64> {
    let t = events(gw);
    let (end, records) = (t["durable_end"].as_u64().expect("end"), t["records"].as_u64().expect("records"));
    let mut c = gw.client();
    let (mut from, mut origins) = (end - records, Vec::new());
    while from < end {
        let r = c.fetch("events", from, 10_000, 4 << 20).expect("fetch from the log's start");
        origins.extend(r.records.iter().map(|r| r.origin));
        from = r.next;
    }
    origins
}

#[test]
fn a_top_gateway_deletes_what_came_up_and_after_kill_9_takes_none_of_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let topics = "\n[[topics]]\nname = \"events\"\nsync = \"up\"\n";
    let gw_extra = format!(
        "up_retention = true\n{topics}retention = \"256KiB\"\n\n[log]\nsegment = \"64KiB\"\n\n\
         [resources]\nmax_storage = \"256MiB\"\n"
    );
    let mut gw = Daemon::gateway_with(dir.path(), listen, &[("edge-1", "t1"), ("edge-2", "t2")], &gw_extra);
    gw.start();
    let mut e1 = Daemon::edge_with_sync(dir.path(), "edge-1", listen, "t1", SYNC, topics);
    let mut e2 = Daemon::edge_with_sync(dir.path(), "edge-2", listen, "t2", SYNC, topics).lite();
    e1.start();
    e2.start();
    // edge-1 writes, the gateway holds it all, and edge-1 goes away (keeping its records:
    // its own retention is far off).
    produce_events(&e1, 0, 1500);
    wait_until(60, "edge-1's records at the gateway", || e1.unsynced("events") == 0);
    e1.kill();
    // edge-2 writes until the gateway has deleted every record of edge-1's.
    let e1_id = outpost::config::node_id_of("edge-1").0;
    let mut written = 0;
    while held_origins(&gw).contains(&e1_id) {
        assert!(written < 40_000, "the gateway keeps edge-1's records past its 256 KiB retention");
        produce_events(&e2, written, 2000);
        written += 2000;
        wait_until(60, "edge-2's records at the gateway", || e2.unsynced("events") == 0);
    }

    // Killed and back, the gateway still knows where edge-1's stream stands, though none
    // of its records is in a segment: edge-1, back too, sends nothing again.
    gw.kill();
    gw.start();
    e1.start();
    wait_until(60, "edge-1 to open a session", || e1.try_status().is_some_and(|s| s["sync"]["session"] == "active"));
    produce_events(&e2, written, 200);
    wait_until(60, "edge-2's records at the gateway", || e2.unsynced("events") == 0);
    assert_eq!(e1.unsynced("events"), 0);
    assert!(!held_origins(&gw).contains(&e1_id), "the gateway stored edge-1's deleted records again");
    let checkpoints = dir.path().join("gateway").join("marks").read_dir().expect("marks/ in the data directory");
    assert!(checkpoints.count() > 0, "a checkpoint of the marks is on disk");
}

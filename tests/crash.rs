//! Crash test: 100,000 records through the binary protocol while the edge is killed with
//! SIGKILL at several points and restarted. The gateway must end with every acknowledged
//! record exactly once, in order, with the value that was acknowledged.

mod common;

use common::{free_addr, wait_until, Daemon};
use outpost::binproto::{Request, Response};
use outpost::client::Client;
use std::collections::{BTreeMap, VecDeque};

const RECORDS: usize = 100_000;
const WINDOW: usize = 512;

fn value(i: usize) -> Vec<u8> {
    format!("record-{i:06}-{}", "x".repeat(i % 61)).into_bytes()
}

/// Connects, retrying while the daemon restarts.
fn connect(edge: &Daemon) -> Client {
    let mut last = None;
    for _ in 0..200 {
        match Client::connect(edge.binary) {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("cannot reconnect to the edge: {last:?}");
}

#[test]
fn every_acknowledged_record_reaches_the_gateway_exactly_once_across_kill_9() {
    crash_run(false);
}

#[test]
fn the_edge_lite_shell_keeps_the_same_promise_across_kill_9() {
    crash_run(true);
}

fn crash_run(lite: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);
    gw.start();
    let mut edge = Daemon::edge(dir.path(), "edge-1", listen, "t1", "");
    if lite {
        edge = edge.lite();
    }
    edge.start();

    // Kill points, as counts of acknowledged records: spread over the run, none round.
    let kills = [13_171, 38_653, 61_007, 87_919];
    let mut next_kill = 0;
    // seq → record index, for every record acknowledged.
    let mut acked: BTreeMap<u64, usize> = BTreeMap::new();
    let mut to_send: VecDeque<usize> = (0..RECORDS).collect();
    let mut client = connect(&edge);
    let mut in_flight: BTreeMap<u32, usize> = BTreeMap::new();
    let mut retried = 0usize;
    while acked.len() < RECORDS || !in_flight.is_empty() {
        while in_flight.len() < WINDOW {
            let Some(i) = to_send.pop_front() else { break };
            let req = Request::Produce { topic: "events".into(), key: None, value: value(i) };
            let id = client.send(&req).expect("queued");
            in_flight.insert(id, i);
        }
        let answer = client.recv();
        match answer {
            Ok((id, Response::Acked { seq, .. })) => {
                let i = in_flight.remove(&id).expect("an answer to a request in flight");
                assert!(acked.insert(seq, i).is_none(), "seq {seq} acknowledged twice");
            }
            Ok((id, Response::Error { retryable: true, .. })) => {
                // Busy or recovering: send it again.
                let i = in_flight.remove(&id).expect("in flight");
                to_send.push_front(i);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Ok(other) => panic!("unexpected answer {other:?}"),
            Err(_) => {
                // The edge died: whatever was unanswered may or may not be stored; resend it.
                retried += in_flight.len();
                to_send.extend(in_flight.values().copied());
                in_flight.clear();
                assert!(!edge.is_running(), "the connection broke while the edge runs: {}", edge.log_text());
                edge.start();
                client = connect(&edge);
                continue;
            }
        }
        if next_kill < kills.len() && acked.len() >= kills[next_kill] {
            next_kill += 1;
            edge.kill();
        }
    }
    assert_eq!(next_kill, kills.len(), "every kill happened");
    assert_eq!(edge.log_text().matches("recovered the log").count(), kills.len() + 1);

    wait_until(120, "the gateway to hold everything the edge has", || edge.unsynced("events") == 0);
    let stored = gw.read_all("events");
    let mut by_seq: BTreeMap<u64, &[u8]> = BTreeMap::new();
    let mut last = None;
    for (_, seq, v) in &stored {
        assert!(last.is_none_or(|l| *seq > l), "order: seq {seq} after {last:?}");
        last = Some(*seq);
        by_seq.insert(*seq, v);
    }
    for (seq, i) in &acked {
        let got =
            by_seq.get(seq).unwrap_or_else(|| panic!("acknowledged seq {seq} (record {i}) is missing at the gateway"));
        assert_eq!(*got, value(*i).as_slice(), "seq {seq} holds another value than was acknowledged");
    }
    // Records answered by no one (in flight at a kill) may be stored once more under a new
    // sequence; never more often than they were sent.
    assert!(stored.len() <= RECORDS + retried, "{} stored for {RECORDS} records and {retried} resends", stored.len());
    assert!(edge.log_text().contains("connected to the gateway"));
    eprintln!("{} acknowledged, {} stored at the gateway, {retried} resent after kills", acked.len(), stored.len());
}

//! A full device recovers by itself (issue 15, defect 4). An edge with the default
//! storage config (no `max_storage`, no `log.segment`: a 1 GiB budget and 8 MiB segments)
//! runs on a device smaller than one segment, an 8 MiB tmpfs, and fills it while its
//! gateway is away. Once the gateway is back and holds the backlog, writes must resume
//! without an operator, `/health` must say healthy again, and the device must keep taking
//! writes, several times its size, as the gateway acknowledges them. Both shells.
//!
//! The daemon fits its budget (8 MiB) and segments (512 KiB) to the device at start, so
//! on an empty tmpfs the budget fills first. With other files taking all but 512 KiB of
//! it, the device fills first, inside one open segment: the daemon must free that
//! segment once the gateway holds it (a roll to an empty one).

// Real processes wait on real time: deadlines for the backlog to drain, writes to resume.
#![allow(clippy::disallowed_types)]

mod common;

use common::{free_addr, http, Daemon};
use outpost::client::Client;
use std::time::{Duration, Instant};

/// A record that zstd cannot shrink, so the device fills at the rate the test writes.
const RECORD_BYTES: usize = 64 << 10;

fn record(i: u64) -> Vec<u8> {
    common::incompressible(i, RECORD_BYTES)
}

/// `/health`: the state and its reasons.
fn health(edge: &Daemon) -> (String, String) {
    let (_, body) = http(edge.http, "GET", "/health", None, b"").expect("/health answers");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("/health is JSON");
    (v["status"].as_str().unwrap_or_default().to_string(), v["reasons"].to_string())
}

/// Produces record `i` as a well-behaved application does: retrying what the daemon says
/// is retryable, for at most `secs`. Returns the last refusal if it never succeeds.
fn produce_retrying(c: &mut Client, i: u64, secs: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match c.produce("events", None, &record(i)) {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[test]
fn a_full_small_device_takes_writes_again_once_the_gateway_holds_its_data() {
    scenario(false, 0);
}

#[test]
fn the_edge_lite_shell_recovers_from_a_full_device_the_same_way() {
    scenario(true, 0);
}

#[test]
fn a_device_other_files_fill_frees_its_open_segment_once_the_gateway_holds_it() {
    scenario(false, 15 << 19);
}

#[test]
fn the_edge_lite_shell_frees_its_open_segment_on_a_device_other_files_fill() {
    scenario(true, 15 << 19);
}

/// `other_files`: bytes of the tmpfs taken by a file that is not the daemon's.
fn scenario(lite: bool, other_files: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut edge = Daemon::edge(dir.path(), "edge-1", listen, "t1", "").on_tmpfs("8m", other_files);
    if lite {
        edge = edge.lite();
    }
    edge.start();
    // The daemon learnt the device's size and fitted its budget and segments to it.
    let log = edge.log_text();
    assert!(log.contains("the device holding") && log.contains("has 8.0 MiB: the storage budget is lowered"), "{log}");
    assert!(log.contains("log.segment lowered from 8.0 MiB to 512.0 KiB"), "{log}");
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);
    let mut c = edge.client();

    // No gateway: write until storage refuses. The device, not the 1 GiB budget, stops it.
    // Records 0..i are acknowledged.
    let mut i = 0;
    let refusal = loop {
        match c.produce("events", None, &record(i)) {
            Ok(_) => i += 1,
            Err(e) if e.is_retryable() && e.to_string().contains("storage") => break e.to_string(),
            // The clock's first bound is not durable yet, or the write buffer is busy.
            Err(e) if e.is_retryable() => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("produce refused for good: {e}"),
        }
        assert!(i < 256, "16 MiB written to an 8 MiB device and no refusal: is the tmpfs mounted?");
    };
    // What is left of the device: 8 MiB, or 512 KiB less what the meta log takes.
    let room = if other_files == 0 { 100 } else { 4 };
    assert!(i >= room, "the device refused after {i} records: {refusal}");
    if other_files > 0 {
        assert!(refusal.contains("no space left"), "the device, not the budget, refused: {refusal}");
    }

    eprintln!("{} records filled the device; then: {refusal}", i);

    // The gateway comes back and takes the backlog.
    let back = Instant::now();
    gw.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while edge.unsynced("events") > 0 {
        assert!(Instant::now() < deadline, "the backlog did not drain in 120 s; edge status: {}", edge.status());
        std::thread::sleep(Duration::from_millis(100));
    }

    eprintln!("the backlog drained {:.1} s after the gateway started", back.elapsed().as_secs_f64());

    // Writes resume by themselves: nobody frees space or restarts anything.
    let drained = Instant::now();
    produce_retrying(&mut c, i, 60).unwrap_or_else(|last| {
        panic!(
            "writes did not resume within 60 s after the gateway acknowledged the whole backlog ({i} records); \
             while full the daemon said: {refusal}; its last refusal: {last}; /health: {:?}",
            health(&edge)
        )
    });
    i += 1;
    eprintln!("writes resumed {:.1} s after the backlog drained", drained.elapsed().as_secs_f64());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (state, reasons) = health(&edge);
        if state == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "/health still {state} 30 s after writes resumed: {reasons}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // And it stays so: three times the device's room more, with the gateway there.
    let more = Instant::now();
    for _ in 0..3 * i {
        produce_retrying(&mut c, i, 60).unwrap_or_else(|last| {
            panic!("record {i} refused for 60 s with the gateway up: {last}; /health: {:?}", health(&edge))
        });
        i += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while edge.unsynced("events") > 0 {
        assert!(Instant::now() < deadline, "the second backlog did not drain in 120 s: {}", edge.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    let counters = &edge.status()["counters"];
    eprintln!(
        "three times as much more written and synced in {:.1} s; counters {counters}",
        more.elapsed().as_secs_f64()
    );

    // Everything acknowledged is at the gateway, once each, in order and intact.
    let held = gw.read_all("events");
    assert_eq!(held.len() as u64, i, "the gateway holds every acknowledged record once");
    for (k, (_, seq, value)) in held.iter().enumerate() {
        assert_eq!(*seq, k as u64, "in order, without a gap");
        assert!(value == &record(k as u64), "record {k} arrived intact");
    }
}

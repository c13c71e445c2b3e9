//! Writes records to a running edge through the binary protocol as fast as it acknowledges
//! them, and prints the rate: a load for measuring the daemon's memory under write
//! pressure (`just rss-load`), not a benchmark of record (that is issue 6's bench-e2e).
//!
//! `cargo run --release -p outpost --example produce_load -- ADDR TOPIC RECORDS BYTES WINDOW`

#![allow(clippy::disallowed_types)] // A load generator measures real time.

use outpost::binproto::{Request, Response};
use outpost::client::Client;
use std::collections::VecDeque;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let addr = arg(0, "127.0.0.1:7481");
    let topic = arg(1, "events");
    let records: usize = arg(2, "200000").parse().expect("RECORDS is a number");
    let bytes: usize = arg(3, "100").parse().expect("BYTES is a number");
    let window: usize = arg(4, "1024").parse().expect("WINDOW is a number");
    let mut c = Client::connect(addr.as_str()).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    let start = std::time::Instant::now();
    let mut sent = 0usize;
    let mut acked = 0usize;
    let mut refused = 0usize;
    let mut in_flight = VecDeque::new();
    while acked < records {
        while in_flight.len() < window && sent < records {
            let mut value = format!("{sent:012}").into_bytes();
            value.resize(bytes, b'.');
            in_flight.push_back(c.send(&Request::Produce { topic: topic.clone(), key: None, value }).expect("send"));
            sent += 1;
        }
        match c.recv().expect("an answer") {
            (_, Response::Acked { .. }) => acked += 1,
            (_, Response::Error { retryable: true, .. }) => {
                // Busy: the write buffer is full; this load does not resend, it counts.
                refused += 1;
                acked += 1;
            }
            (_, other) => panic!("unexpected answer {other:?}"),
        }
        in_flight.pop_front();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} acknowledged, {refused} refused as busy, {bytes}-byte values, window {window}: {:.0} records/s over {secs:.2} s",
        records - refused,
        (records - refused) as f64 / secs
    );
}

//! bench-ingest: durable ingest through the core alone on one thread, to real files with
//! fdatasync (the daemon's `Store`), no network and no API: what one core can make durable
//! when records arrive `window` at a time. Run it pinned: `taskset -c 0 bench-ingest`.
//!
//! `bench-ingest [RECORDS] [SIZE] [WINDOW] [DIR]` (defaults 2000000, 100, 1024, a new
//! directory in /tmp, removed afterwards).

#![allow(clippy::disallowed_types)] // A benchmark measures real time.

use outpost_bench::Site;
use outpost_core::config::{SyncDirection, TopicConfig};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(default, |a| {
            a.replace('_', "").parse().unwrap_or_else(|_| {
                eprintln!("bench-ingest: argument {} ({a:?}) is not a number\nusage: bench-ingest [RECORDS] [SIZE] [WINDOW] [DIR]", i + 1);
                std::process::exit(2)
            })
        })
    };
    let (records, size, window) = (number(0, 2_000_000), number(1, 100) as usize, number(2, 1024));
    let keep = args.get(3).is_some();
    let dir = args
        .get(3)
        .map_or_else(|| std::env::temp_dir().join(format!("bench-ingest.{}", std::process::id())), Into::into);
    let _ = std::fs::remove_dir_all(&dir);
    let store = outpost::store::Store::open(&dir, &[TopicConfig::new("events", SyncDirection::EdgeToCloud)])
        .unwrap_or_else(|e| {
            eprintln!("bench-ingest: {}: {e}", dir.display());
            std::process::exit(1)
        });
    let mut site = Site::edge_only_on(Box::new(store));
    let values = outpost_bench::telemetry_values(1024, size);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    site.produce_durably(records, &values, window);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let bytes: u64 = std::fs::read_dir(dir.join("topics"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter_map(|f| f.metadata().ok().map(|m| m.len()))
        .sum();
    println!(
        "outpost_ingest records={records} size={size} window={window}: records_per_s={:.0} mb_per_s={:.1} secs={secs:.3} \
         cpu_s={cpu:.2} fsyncs={} records_per_fsync={:.0} log_bytes={bytes}",
        records as f64 / secs,
        (records * size as u64) as f64 / 1e6 / secs,
        site.edge.syncs,
        records as f64 / site.edge.syncs.max(1) as f64
    );
    assert_eq!(site.counts.acked, records, "every record acknowledged");
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

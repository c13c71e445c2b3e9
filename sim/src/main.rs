//! `outpost-sim`: run a scenario with a seed, or sweep many seeds.
//!
//! Exit codes: 0 pass; 1 a guarantee was violated; 2 bad usage or an unreadable or
//! invalid scenario; 3 no convergence after faults healed (liveness); 4 an `[expect]`
//! bound failed or the run made no progress; 101 the simulator or the core panicked.

// The runner measures wall time for the report; the simulation itself never reads it.
#![allow(clippy::disallowed_types)]

use clap::{Parser, Subcommand};
use outpost_sim::report::{Report, Verdict};
use outpost_sim::scenario::{self, Scenario};
use outpost_sim::{cluster, swarm, world};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "outpost-sim",
    version,
    about = "Deterministic simulator of Outpost: replays outages, crashes and skewed clocks seed by seed."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario with one seed and print its report.
    Run {
        /// A scenario file, or the name of one in scenarios/ (e.g. vehicle-offline).
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Print the trace of faults and node events to stderr.
        #[arg(long)]
        trace: bool,
    },
    /// Run many seeds; with --swarm each seed also draws the world and its faults.
    Sweep {
        /// A scenario (file or name); with --swarm, its topology gets seed-drawn faults.
        /// Without a scenario, --swarm draws whole worlds.
        scenario: Option<String>,
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed of the range.
        #[arg(long, default_value_t = 1)]
        first: u64,
        #[arg(long)]
        swarm: bool,
        /// Worker threads (each runs whole seeds; a run itself is single-threaded).
        #[arg(long)]
        jobs: Option<usize>,
        /// With --seeds 1: print the drawn world and the trace of that seed to stderr.
        #[arg(long)]
        trace: bool,
    },
    /// Run the Raft cluster world (`outpost_core::raft` alone, under partitions, crashes,
    /// slow disks and long delays, with clients on every member) over many seeds.
    Raft {
        /// Processes in the world (the group's members, and those waiting to join).
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// How many of them form the group at the start (default: all).
        #[arg(long)]
        initial_voters: Option<usize>,
        /// Add membership changes to the faults: add a learner, promote it, remove a voter.
        #[arg(long)]
        membership_changes: bool,
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// First seed of the range.
        #[arg(long, default_value_t = 1)]
        first: u64,
        #[arg(long)]
        jobs: Option<usize>,
        /// With --seeds 1: print that seed's whole report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn resolve(arg: &str) -> PathBuf {
    let p = Path::new(arg);
    if p.exists() || arg.ends_with(".toml") {
        return p.to_path_buf();
    }
    let in_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{arg}.toml"));
    if in_repo.exists() {
        return in_repo;
    }
    Path::new("scenarios").join(format!("{arg}.toml"))
}

fn load(arg: &str) -> Result<Scenario, ExitCode> {
    scenario::load(&resolve(arg)).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn print_human(r: &Report) {
    println!("scenario      {}  seed {}", r.scenario, r.seed);
    println!(
        "time          {:.0} s simulated in {:.2} s wall ({:.0}x real time)",
        r.sim_secs,
        r.wall_secs,
        r.sim_secs / r.wall_secs.max(1e-9)
    );
    println!("produced      {}  acked {}  delivered {}", r.produced, r.acked, r.delivered);
    println!(
        "lost {}  duplicates {}  out_of_order {}  evicted_unsynced {}  corrupted {}",
        r.lost, r.duplicates, r.out_of_order, r.evicted_unsynced, r.corrupted
    );
    println!("max_backlog   {} records", r.max_backlog);
    println!("efficiency    {}", r.efficiency.summary());
    if let Some(k) = &r.details.keyed {
        println!(
            "keyed         {} writes, {} conflicts; {} answers checked against the oracle, {} keys unchecked",
            k.writes, k.conflicts, k.answers_checked, k.keys_unchecked
        );
        println!("keyed reads   {}", k.reads.summary());
    }
    match r.converge_secs {
        Some(s) => println!("converged     yes, {s:.0} s after faults healed"),
        None => println!("converged     NO"),
    }
    println!("refused       {:?}", r.details.refused);
    if let Some(s) = &r.details.strong {
        println!(
            "strong        acknowledged {}  refused for no quorum {}  unavailable {}  unconfirmed {}",
            s.acknowledged, s.refused_no_quorum, s.refused_unavailable, s.unconfirmed
        );
        println!(
            "site raft     leaders elected {}  log compactions {}  snapshots installed {}",
            s.leaders_elected, s.raft_compactions, s.raft_snapshots_installed
        );
    }
    println!("violations    {}", r.details.violation_count);
    for v in &r.violations {
        println!("  [{}] at {:.3}s: {}", v.invariant, v.at, v.detail);
    }
    println!("trace_hash    {}", r.trace_hash);
}

fn run(arg: &str, seed: u64, json: bool, trace: bool) -> ExitCode {
    let s = match load(arg) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let started = Instant::now();
    let mut stderr = std::io::stderr();
    let sink: Option<&mut dyn std::io::Write> = if trace { Some(&mut stderr) } else { None };
    let w = match world::World::new(&s, seed, sink) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {}: {e}", resolve(arg).display());
            return ExitCode::from(2);
        }
    };
    let mut r = w.run();
    r.wall_secs = started.elapsed().as_secs_f64();
    if json {
        println!("{}", serde_json::to_string_pretty(&r).expect("report serialises"));
    } else {
        print_human(&r);
    }
    let (verdict, fails) = r.judge(&s);
    if verdict != Verdict::Pass {
        for f in &fails {
            eprintln!("FAIL: {f}");
        }
        eprintln!("replay: cargo run --release -p outpost-sim -- run {arg} --seed {seed} --trace");
    }
    ExitCode::from(verdict as u8)
}

/// Replays one seed of a sweep with its world and trace on stderr.
fn trace_one(arg: Option<String>, seed: u64, swarm_mode: bool) -> ExitCode {
    let s = match (arg.as_deref().map(load).transpose(), swarm_mode) {
        (Err(c), _) => return c,
        (Ok(Some(b)), true) => swarm::perturb(&b, seed),
        (Ok(Some(b)), false) => b,
        (Ok(None), _) => swarm::world(seed),
    };
    eprintln!("{s:#?}");
    let started = Instant::now();
    let mut stderr = std::io::stderr();
    let w = match world::World::new(&s, seed, Some(&mut stderr)) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut r = w.run();
    r.wall_secs = started.elapsed().as_secs_f64();
    print_human(&r);
    let (verdict, fails) = r.judge(&s);
    for f in &fails {
        eprintln!("FAIL: {f}");
    }
    ExitCode::from(verdict as u8)
}

fn sweep(arg: Option<String>, seeds: u64, first: u64, swarm_mode: bool, jobs: Option<usize>) -> ExitCode {
    let base = match arg.as_deref().map(load).transpose() {
        Ok(b) => b,
        Err(c) => return c,
    };
    if base.is_none() && !swarm_mode {
        eprintln!("error: sweep needs a scenario, or --swarm to draw worlds");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let done = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new(SweepTotals::default());
    for_each_seed(first, seeds, jobs, |seed| {
        let s = match (&base, swarm_mode) {
            (Some(b), true) => swarm::perturb(b, seed),
            (Some(b), false) => b.clone(),
            (None, _) => swarm::world(seed),
        };
        // A panic in the core or the simulator is a finding: report its seed, go on.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world::run(&s, seed)));
        let outcome = match caught {
            Ok(r) => r.map(|r| {
                let (v, fails) = r.judge(&s);
                (r, v, fails)
            }),
            Err(p) => {
                failures.lock().expect("no panics while held").push((seed, Verdict::Panic, panic_message(&*p)));
                done.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match outcome {
            Ok((r, v, fails)) => {
                let mut t = totals.lock().expect("no panics while held");
                t.acked += r.acked;
                t.delivered += r.delivered;
                t.sim_secs += r.sim_secs;
                t.efficiency.add(&r.efficiency);
                t.corrupted += r.corrupted;
                t.corruptions += r.details.nodes.values().map(|n| u64::from(n.corruptions)).sum::<u64>();
                t.evicted_unsynced += r.evicted_unsynced;
                let refused: u64 = r.details.nodes.values().map(|n| n.storage_refused).sum();
                t.storage_refused += refused;
                t.device_full_refused += r.details.nodes.values().map(|n| n.device_full_refused).sum::<u64>();
                t.placement_checked_sends += r.details.placement_checked_sends;
                t.placement_worlds += u64::from(r.details.placement_checked_sends > 0);
                t.impostor_worlds += u64::from(!r.details.impostors.is_empty());
                if let Some(k) = &r.details.keyed {
                    t.keyed_worlds += 1;
                    t.keyed.writes += k.writes;
                    t.keyed.conflicts += k.conflicts;
                    t.keyed.answers_checked += k.answers_checked;
                    t.keyed.keys_unchecked += k.keys_unchecked;
                    t.keyed.reads.add(&k.reads);
                }
                for i in r.details.impostors.values() {
                    (t.impostor.forged, t.impostor.replayed) =
                        (t.impostor.forged + i.forged, t.impostor.replayed + i.replayed);
                    t.impostor.refused += i.refused;
                }
                if refused > 0 || r.evicted_unsynced > 0 {
                    t.pressured_worlds += 1;
                }
                for (name, peak) in &r.peak_memory_bytes {
                    let limit = r.details.nodes.get(name).map_or(0, |n| n.memory_limit_bytes);
                    if let (Some(peak), true) = (peak, limit > 0) {
                        t.peak_memory_share = t.peak_memory_share.max(*peak as f64 / limit as f64);
                    }
                }
                drop(t);
                if v != Verdict::Pass {
                    failures.lock().expect("no panics while held").push((seed, v, fails.join("; ")));
                }
            }
            Err(e) => failures.lock().expect("no panics while held").push((seed, Verdict::Expectation, e.to_string())),
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if n % 100 == 0 {
            eprintln!("  {n}/{seeds} seeds, {:.0} s", started.elapsed().as_secs_f64());
        }
    });
    let mut failures = failures.into_inner().expect("threads joined");
    failures.sort_by_key(|f| f.0);
    let t = totals.into_inner().expect("threads joined");
    let wall = started.elapsed().as_secs_f64();
    println!(
        "swept {seeds} seeds ({}) in {wall:.1} s wall on {jobs} threads: {} failed; {} records acked, {} delivered, \
         {:.1} h simulated; {} disk corruptions destroyed {} acknowledged, undelivered records, all reported; \
         storage filled or retention expired in {} worlds: {} acknowledged records evicted under lossy policies \
         or expired by a topic's retention_age before an edge had them, {} produces refused \
         as the budget was full, {} while the device was full; highest accounted memory {:.1}% of its node's limit",
        if swarm_mode { "swarm" } else { "fixed world" },
        failures.len(),
        t.acked,
        t.delivered,
        t.sim_secs / 3600.0,
        t.corruptions,
        t.corrupted,
        t.pressured_worlds,
        t.evicted_unsynced,
        t.storage_refused,
        t.device_full_refused,
        t.peak_memory_share * 100.0,
    );
    println!("efficiency: {}", t.efficiency.summary());
    println!(
        "placement: {} frames of classified topics checked against their receivers' zones in {} worlds",
        t.placement_checked_sends, t.placement_worlds
    );
    println!(
        "impostors: {} worlds; {} frames forged, {} replayed, {} refused by their gateways",
        t.impostor_worlds, t.impostor.forged, t.impostor.replayed, t.impostor.refused
    );
    println!(
        "keyed: {} worlds; {} writes merged, {} conflicts recorded, {} answers checked against the oracle, {} keys \
         left unchecked after a crash",
        t.keyed_worlds, t.keyed.writes, t.keyed.conflicts, t.keyed.answers_checked, t.keyed.keys_unchecked
    );
    println!("keyed reads: {}", t.keyed.reads.summary());
    for (seed, v, why) in &failures {
        println!("  seed {seed}: {v:?}: {why}");
    }
    if let Some((seed, v, _)) = failures.first() {
        let target = arg.as_deref().unwrap_or("");
        let how = if swarm_mode { " --swarm" } else { "" };
        println!("replay: cargo run --release -p outpost-sim -- sweep {target} --first {seed} --seeds 1{how} --trace");
        return ExitCode::from(*v as u8);
    }
    ExitCode::SUCCESS
}

/// Every allocation tagged with the simulated node that made it: the world compares each
/// node's real heap with its accounting after every step (see `outpost_sim::heap`).
#[global_allocator]
static ALLOCATOR: outpost_sim::heap::TaggingAllocator = outpost_sim::heap::TaggingAllocator;

fn main() -> ExitCode {
    outpost_sim::heap::install();
    match Cli::parse().cmd {
        Cmd::Run { scenario, seed, json, trace } => run(&scenario, seed, json, trace),
        Cmd::Sweep { trace: true, scenario, seeds: 1, first, swarm, .. } => trace_one(scenario, first, swarm),
        Cmd::Sweep { trace: true, .. } => {
            eprintln!("error: --trace replays one seed: add --seeds 1 and --first SEED");
            ExitCode::from(2)
        }
        Cmd::Sweep { scenario, seeds, first, swarm, jobs, .. } => sweep(scenario, seeds, first, swarm, jobs),
        Cmd::Raft { members, initial_voters, membership_changes, seeds, first, jobs, json } => {
            let mut cfg = cluster::ClusterConfig::new(members);
            cfg.initial_voters = initial_voters.unwrap_or(members);
            cfg.membership_changes = membership_changes;
            raft_sweep(cfg, seeds, first, jobs, json)
        }
    }
}

/// Runs `f` for each seed of `first..first + seeds` on `jobs` threads (each seed whole on
/// one thread, so each run stays deterministic).
fn for_each_seed(first: u64, seeds: u64, jobs: usize, f: impl Fn(u64) + Sync) {
    let next = AtomicU64::new(first);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + seeds {
                    break;
                }
                f(seed);
            });
        }
    });
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

fn raft_sweep(cfg: cluster::ClusterConfig, seeds: u64, first: u64, jobs: Option<usize>, json: bool) -> ExitCode {
    let members = cfg.members;
    if !(1..=9).contains(&members) {
        eprintln!("error: --members must be 1 to 9 (a site cluster), not {members}");
        return ExitCode::from(2);
    }
    if !(1..=members).contains(&cfg.initial_voters) {
        eprintln!("error: --initial-voters must be 1 to --members ({members}), not {}", cfg.initial_voters);
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let reports = Mutex::new(Vec::new());
    let panics = Mutex::new(Vec::new());
    for_each_seed(first, seeds, jobs, |seed| match std::panic::catch_unwind(|| cluster::run(&cfg, seed)) {
        Ok(r) => reports.lock().expect("no panics while held").push(r),
        Err(p) => panics.lock().expect("no panics while held").push((seed, panic_message(&*p))),
    });
    let mut reports = reports.into_inner().expect("threads joined");
    reports.sort_by_key(|r| r.seed);
    let mut panics = panics.into_inner().expect("threads joined");
    panics.sort();
    if json && seeds == 1 {
        if let Some(r) = reports.first() {
            println!("{}", serde_json::to_string_pretty(r).expect("report serialises"));
        }
    }
    let sum = |f: fn(&cluster::ClusterReport) -> u64| reports.iter().map(f).sum::<u64>();
    println!(
        "raft: {seeds} seeds of a {members}-member group in {:.1} s wall: {} leaders elected (highest term {}), \
         {} entries committed; clients: {} puts and {} gets acknowledged ({} by ReadIndex, {} under a lease), {} refused, \
         {} indeterminate; faults: {} crashes, {} partitions; {} messages, {} persists; {} snapshots taken, {} \
         installed from a leader; {} membership changes",
        started.elapsed().as_secs_f64(),
        sum(|r| r.leaders_elected as u64),
        reports.iter().map(|r| r.terms_max).max().unwrap_or(0),
        sum(|r| r.entries_committed as u64),
        sum(|r| r.puts_acked),
        sum(|r| r.gets_acked),
        sum(|r| r.reads_by_read_index),
        sum(|r| r.reads_by_lease),
        sum(|r| r.refused),
        sum(|r| r.indeterminate),
        sum(|r| r.crashes),
        sum(|r| r.partitions),
        sum(|r| r.messages),
        sum(|r| r.persists),
        sum(|r| r.snapshots_taken),
        sum(|r| r.snapshots_installed),
        sum(|r| r.membership_changes),
    );
    let mut code = ExitCode::SUCCESS;
    for (seed, msg) in &panics {
        println!("  seed {seed}: panic: {msg}");
        code = ExitCode::from(Verdict::Panic as u8);
    }
    for r in reports.iter().filter(|r| !r.passed()) {
        for v in &r.violations {
            println!("  seed {}: violation: {v}", r.seed);
        }
        if let Some(l) = &r.liveness {
            println!("  seed {}: liveness: {l}", r.seed);
        }
        if code == ExitCode::SUCCESS {
            code = ExitCode::from(if r.violations.is_empty() { Verdict::Liveness } else { Verdict::Violation } as u8);
        }
    }
    if code != ExitCode::SUCCESS {
        let changes = if cfg.membership_changes { " --membership-changes" } else { "" };
        println!(
            "replay: cargo run --release -p outpost-sim -- raft --members {members} --initial-voters {}{changes} \
             --first SEED --seeds 1 --json",
            cfg.initial_voters
        );
    }
    code
}

/// What a sweep adds up over its seeds.
#[derive(Default)]
struct SweepTotals {
    acked: u64,
    delivered: u64,
    sim_secs: f64,
    /// `disk-corrupt` faults applied.
    corruptions: u64,
    /// Acknowledged records they destroyed before delivery (each reported by the edge).
    corrupted: u64,
    /// Runs in which storage filled: records evicted or produces refused.
    pressured_worlds: u64,
    evicted_unsynced: u64,
    storage_refused: u64,
    device_full_refused: u64,
    /// The highest peak accounted memory of any node, as a share of its limit.
    peak_memory_share: f64,
    efficiency: outpost_sim::report::Efficiency,
    /// Runs with a classified topic's records on the wire, and those frames, each checked
    /// against the receiver's zone.
    placement_worlds: u64,
    placement_checked_sends: u64,
    /// Runs with an impostor, and what all of them forged, replayed and had refused.
    impostor_worlds: u64,
    impostor: outpost_sim::report::ImpostorReport,
    /// Runs with keyed topics merged per key, and what their keyed checks saw.
    keyed_worlds: u64,
    keyed: outpost_sim::keyed_check::KeyedReport,
}

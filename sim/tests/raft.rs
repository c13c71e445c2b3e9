//! The Raft cluster world inside `cargo test`: seeds of 3- and 5-member groups under
//! partitions, crashes, slow disks and long delays, each checked for election safety,
//! leader completeness, state machine safety, log matching, acknowledged puts present
//! once, linearizability of every client operation, and convergence after healing.
//! `outpost-sim raft --seeds N` runs more.

use outpost_sim::cluster::{self, ClusterConfig};

fn sweep(members: usize, seeds: std::ops::Range<u64>) {
    let cfg = ClusterConfig::new(members);
    let mut failures = Vec::new();
    let mut acked = 0;
    for seed in seeds {
        let r = cluster::run(&cfg, seed);
        acked += r.puts_acked + r.gets_acked;
        if !r.passed() {
            failures.push(format!("seed {seed}: {:?} {:?}", r.violations, r.liveness));
        }
    }
    assert!(failures.is_empty(), "{members} members:\n{}", failures.join("\n"));
    assert!(acked > 0, "the clients got nothing done");
}

#[test]
fn three_member_groups_stay_safe_and_converge() {
    sweep(3, 1..41);
}

#[test]
fn five_member_groups_stay_safe_and_converge() {
    sweep(5, 1..11);
}

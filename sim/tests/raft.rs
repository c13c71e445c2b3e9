//! The Raft cluster world inside `cargo test`: seeds of 3- and 5-member groups under
//! partitions, crashes, slow disks and long delays (and membership changes in one sweep), each checked for election safety,
//! leader completeness, state machine safety, log matching, acknowledged puts present
//! once, linearizability of every client operation, and convergence after healing.
//! `outpost-sim raft --seeds N` runs more.

use outpost_sim::cluster::{self, ClusterConfig};

fn sweep(cfg: ClusterConfig, seeds: std::ops::Range<u64>) {
    let members = cfg.members;
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
    sweep(ClusterConfig::new(3), 1..41);
}

#[test]
fn five_member_groups_stay_safe_and_converge() {
    sweep(ClusterConfig::new(5), 1..11);
}

#[test]
fn groups_that_change_membership_during_partitions_stay_safe_and_converge() {
    let mut cfg = ClusterConfig::new(5);
    cfg.initial_voters = 3;
    cfg.membership_changes = true;
    sweep(cfg, 1..21);
}

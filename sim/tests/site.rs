//! Site clusters in the whole simulator: real `Node`s running Raft over the simulated
//! LAN, each with its own link to the gateway.
//!
//! - A member cut off from its site refuses a strong write at once, with the error that
//!   says what it sees, and still takes eventual writes.
//! - A leader that dies while it forwards the cluster's stream leaves the gateway with
//!   neither a gap nor a duplicate once another member leads.

use outpost_core::detector::CloudLink;
use outpost_core::io::ProduceError;
use outpost_core::raft::Role as RaftRole;
use outpost_sim::report::Verdict;
use outpost_sim::scenario;
use outpost_sim::world::{self, World};

const SECOND: u64 = 1_000_000_000;

fn site(faults: &str) -> scenario::Scenario {
    let text = format!(
        r#"
name = "site-test"
about = "Three tills of one site cluster and the cloud."
duration = "4m"
settle = "3m"

[[node]]
id = "a"
role = "edge"
device = "pi4"
cluster = "shop"

[[node]]
id = "b"
role = "edge"
device = "pi4"
cluster = "shop"

[[node]]
id = "c"
role = "edge"
device = "pi4"
cluster = "shop"

[[node]]
id = "cloud"
role = "gateway"
device = "cloud"

[[link]]
between = ["a", "b"]
net = "lan"

[[link]]
between = ["a", "c"]
net = "lan"

[[link]]
between = ["b", "c"]
net = "lan"

[[link]]
between = ["a", "cloud"]
net = "wifi"

[[link]]
between = ["b", "cloud"]
net = "wifi"

[[link]]
between = ["c", "cloud"]
net = "wifi"

[[topic]]
name = "payments"
sync = "edge-to-cloud"
consistency = "strong"

[[topic]]
name = "scans"
sync = "edge-to-cloud"

[[workload]]
node = "a"
topic = "payments"
rate = 20
size = 100

[[workload]]
node = "b"
topic = "payments"
rate = 20
size = 100

[[workload]]
node = "c"
topic = "payments"
rate = 20
size = 100

[[workload]]
node = "a"
topic = "scans"
rate = 5
size = 100
{faults}
"#
    );
    scenario::parse(&text, "site-test.toml").expect("a valid scenario")
}

/// Runs until `f` holds (checked every 100 ms of simulated time), at most until `limit`.
fn run_until(w: &mut World<'_>, limit_secs: u64, mut f: impl FnMut(&World<'_>) -> bool) {
    while !f(w) {
        let next = w.now_nanos() + SECOND / 10;
        assert!(next <= limit_secs * SECOND, "condition not reached by {limit_secs} s");
        w.run_until(next);
    }
}

#[test]
fn a_minority_member_refuses_strong_writes_with_no_quorum_and_takes_eventual_ones() {
    let s = site(
        r#"
[[fault]]
kind = "partition"
groups = [["a"], ["b", "c", "cloud"]]
at = "60s"
for = "60s"
"#,
    );
    let mut w = World::new(&s, 7, None).expect("supported");
    w.run_until(90 * SECOND);
    let now = w.now_nanos();
    let a = w.node("a").expect("a runs");
    let site = a.site().expect("a is a site member");
    let view = site.view(outpost_core::types::Instant(now));
    assert!(!view.has_quorum, "a has been cut off for 30 s: {view:?}");
    let (leader, seen) = view.last_leader.expect("a saw a leader before the split");
    let ago = (now - seen.as_nanos()) / SECOND;
    assert!((25..=31).contains(&ago), "a heard the leader until the split, 30 s ago (got {ago} s)");

    // The cloud link is judged apart: a is cut from the cloud too, b is not.
    assert_ne!(view.cloud, CloudLink::Up, "a's sessions to the cloud fail: {view:?}");
    let b = w.node("b").and_then(|n| n.site()).expect("b is a member").view(outpost_core::types::Instant(now));
    assert!(b.has_quorum && b.cloud == CloudLink::Up, "b has its peer c and the cloud: {b:?}");

    let strong = w.probe_produce("a", "payments", b"card 4242, 12.50 EUR".to_vec());
    let eventual = w.probe_produce("a", "scans", b"sku 1234".to_vec());
    match w.probe_reply(strong) {
        Some(Err(e @ ProduceError::NoQuorum(_))) => {
            assert_eq!(
                e.to_string(),
                format!("no quorum: reachable 1 of 3 members; last leader {leader} seen {ago}s ago")
            );
            assert!(e.is_retryable());
        }
        other => panic!("a strong write on the minority must be refused at once with NoQuorum, got {other:?}"),
    }
    run_until(&mut w, 100, |w| w.probe_reply(eventual).is_some());
    assert!(
        matches!(w.probe_reply(eventual), Some(Ok(_))),
        "the eventual write is taken: {:?}",
        w.probe_reply(eventual)
    );

    // The majority side goes on taking strong writes.
    let majority = w.probe_produce("b", "payments", b"card 5555, 3.20 EUR".to_vec());
    run_until(&mut w, 110, |w| w.probe_reply(majority).is_some());
    assert!(matches!(w.probe_reply(majority), Some(Ok(_))), "b and c are a majority: {:?}", w.probe_reply(majority));

    let report = w.run();
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert!(report.converged);
    let strong = report.details.strong.expect("a run with a site");
    assert!(strong.refused_no_quorum > 0, "a's own workload was refused too while cut off");
    assert!(strong.acknowledged > 1000);
}

#[test]
fn a_leader_change_mid_sync_leaves_the_gateway_no_gap_and_no_duplicate() {
    let s = site("");
    let mut w = World::new(&s, 11, None).expect("supported");
    let cluster = w.cluster_id("shop").expect("the site");
    let payments = outpost_core::types::TopicIdx(0);
    let leader_of = |w: &World<'_>| {
        ["a", "b", "c"]
            .into_iter()
            .find(|n| w.node(n).and_then(|x| x.site()).is_some_and(|s| s.raft().role() == RaftRole::Leader))
    };
    // Mid-sync: the leader has sent part of the stream and has more in flight.
    run_until(&mut w, 120, |w| {
        let Some(l) = leader_of(w) else { return false };
        let at_gateway = w.node("cloud").and_then(|g| g.ingest()).and_then(|i| i.stream(cluster, payments));
        let up = w.node(l).and_then(|x| x.site()).and_then(|s| s.uplink()).and_then(|u| u.progress(payments));
        w.now_nanos() > 30 * SECOND
            && at_gateway.is_some_and(|g| g.durable > 100)
            && up.is_some_and(|(acked, sent)| sent > acked)
    });
    let old = leader_of(&w).expect("a leader");
    let stored_before =
        w.node("cloud").and_then(|g| g.ingest()).and_then(|i| i.stream(cluster, payments)).expect("stream").durable;
    w.crash_now(old, Some(20 * SECOND));
    run_until(&mut w, 180, |w| leader_of(w).is_some_and(|l| l != old));
    let new = leader_of(&w).expect("a new leader");
    w.run_until(400 * SECOND);
    let stored_after =
        w.node("cloud").and_then(|g| g.ingest()).and_then(|i| i.stream(cluster, payments)).expect("stream").durable;

    let report = w.run();
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert!(report.converged, "every acknowledged write reached the gateway");
    assert_eq!((report.lost, report.duplicates, report.out_of_order), (0, 0, 0));
    let strong = report.details.strong.expect("a run with a site");
    assert!(strong.leaders_elected >= 2, "{old} led, then {new}");
    // The checker saw every record of the cluster's stream stored once, in order, and
    // each acknowledged write at the sequence it was acknowledged with. The gateway's mark
    // moved on after the change: the new leader forwarded the rest, from where it was.
    assert!(stored_after > stored_before + 100, "{stored_before} stored before the crash, {stored_after} after");
    assert!(strong.acknowledged <= stored_after, "every acknowledged write is in the stream");
}

#[test]
fn with_the_cloud_away_the_site_log_fills_to_its_limit_then_pushes_back_and_loses_nothing() {
    // The site's Raft log can only be compacted below records the gateway holds: with the
    // cloud unreachable it grows to `cluster.log_bytes_max`, and strong writes are then
    // refused (memory stays within the plan; the world checks it after every step).
    let mut s = site("");
    for l in s.links.iter_mut().filter(|l| s.nodes[l.b].id == "cloud") {
        l.outages = vec![scenario::Window {
            at: outpost_core::types::Duration::ZERO,
            length: outpost_core::types::Duration::from_secs(180),
        }];
    }
    for w in s.workloads.iter_mut().filter(|w| w.topic == 0) {
        w.rate = 300.0;
        w.size = 200;
    }
    let report = World::new(&s, 3, None).expect("supported").run();
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert!(report.converged, "everything acknowledged reached the cloud once it was back");
    let full = report.details.refused.get("site_unavailable").copied().unwrap_or(0);
    assert!(full > 1000, "strong writes were refused once the log was full: {:?}", report.details.refused);
    let strong = report.details.strong.expect("a run with a site");
    assert!(strong.raft_compactions > 0, "compaction resumed once the gateway acknowledged");
}

/// Issue 3's first acceptance line, in `cargo test`: `split-brain` seeds 1 to 50 pass,
/// every acknowledged strong write reaches the gateway exactly once, and the reports count
/// strong writes refused for lack of quorum.
#[test]
fn split_brain_seeds_1_to_50_pass() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/split-brain.toml");
    let s = scenario::load(&path).expect("the scenario loads");
    let mut refused = 0;
    for seed in 1..=50 {
        let r = world::run(&s, seed).expect("supported");
        let (verdict, fails) = r.judge(&s);
        assert_eq!(verdict, Verdict::Pass, "seed {seed}: {fails:?} {:#?}", r.violations);
        assert_eq!((r.lost, r.duplicates), (0, 0), "seed {seed}");
        let strong = r.details.strong.expect("a run with a site");
        assert!(strong.acknowledged > 0, "seed {seed}: no strong write acknowledged");
        refused += strong.refused_no_quorum;
    }
    assert!(refused > 0, "the minority refused strong writes in the 2|1 and 1|1|1 phases");
}

/// Compaction must stop below records the gateway lacks: a member that fell behind while
/// the cloud was away catches up, and may then lead and forward the cluster's stream; it
/// must hold every record the gateway does not. (With compaction that ignored the
/// gateway's marks, the lagging member installed a snapshot and, leading, skipped records
/// nobody had forwarded: seeds of this test failed with lost acknowledged writes.)
#[test]
fn a_member_that_fell_behind_while_the_cloud_was_away_leads_without_losing_records() {
    let mut s = site(
        r#"
[[fault]]
kind = "partition"
groups = [["c"], ["a", "b"]]
at = "20s"
for = "100s"

[[fault]]
kind = "crash"
node = "a"
at = "150s"
restart_after = "90s"

[[fault]]
kind = "crash"
node = "b"
at = "170s"
restart_after = "5s"
"#,
    );
    for l in s.links.iter_mut().filter(|l| s.nodes[l.b].id == "cloud") {
        l.outages = vec![scenario::Window {
            at: outpost_core::types::Duration::ZERO,
            length: outpost_core::types::Duration::from_secs(200),
        }];
    }
    let mut led_by_c = 0;
    for seed in 1..=12 {
        let mut w = World::new(&s, seed, None).expect("supported");
        w.run_until(200 * SECOND);
        let c = w.node("c").and_then(|n| n.site()).map(|x| x.raft().role());
        led_by_c += u32::from(c == Some(RaftRole::Leader));
        let report = w.run();
        assert!(report.violations.is_empty(), "seed {seed}: {:#?}", report.violations);
        assert!(report.converged, "seed {seed}");
    }
    assert!(led_by_c > 0, "in some seeds the member that fell behind leads when the cloud returns");
}

/// Members of a site losing power every few seconds (`site-power-cuts`): Raft hears that
/// its state is stored only after the fsync. (Told at issue instead, seeds 18 and 20 of
/// this scenario lost committed entries.)
#[test]
fn site_power_cuts_seeds_1_to_30_pass() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/site-power-cuts.toml");
    let s = scenario::load(&path).expect("the scenario loads");
    for seed in 1..=30 {
        let r = world::run(&s, seed).expect("supported");
        let (verdict, fails) = r.judge(&s);
        assert_eq!(verdict, Verdict::Pass, "seed {seed}: {fails:?} {:#?}", r.violations);
        assert!(r.details.strong.expect("a site").acknowledged > 0, "seed {seed}");
    }
}

/// Strong keyed topics (`site-stock`): stock counters and prices written through the site's
/// Raft, read linearizably at the leader, through a member's long split (it comes back
/// behind a compacted log and installs a snapshot carrying the keyed states), a 2|1 split
/// and the leader's power cut. Every strong read holds every write acknowledged before it
/// and answers what the oracle computes over the prefix it holds; once healed, every
/// member's state and the cloud's answer what the oracle computes from what they hold.
#[test]
fn site_stock_seeds_1_to_20_pass() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/site-stock.toml");
    let s = scenario::load(&path).expect("the scenario loads");
    let (mut snapshots, mut values_checked) = (0, 0);
    for seed in 1..=20 {
        let r = world::run(&s, seed).expect("supported");
        let (verdict, fails) = r.judge(&s);
        assert_eq!(verdict, Verdict::Pass, "seed {seed}: {fails:?} {:#?}", r.violations);
        snapshots += r.details.strong.expect("a site").raft_snapshots_installed;
        let keyed = r.details.keyed.expect("keyed topics");
        assert!(keyed.answers_checked > 0, "seed {seed}: no member's state judged");
        assert!(keyed.reads.strong.answered > 0, "seed {seed}: no strong read answered");
        values_checked += keyed.reads.strong.values_checked;
    }
    assert!(snapshots > 0, "the member split off installed snapshots");
    assert!(values_checked > 1000, "strong reads' values judged: {values_checked}");
}

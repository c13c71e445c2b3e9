//! Each scenario in `scenarios/` with a fixed seed: it must pass, and its report (minus
//! wall time) must match the reviewed snapshot, so any change of behaviour or of
//! determinism shows up in review. Update with `cargo insta review` after checking why.

use outpost_sim::report::Verdict;
use outpost_sim::{scenario, world};
use std::path::Path;

fn run_and_snapshot(name: &str, seed: u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{name}.toml"));
    let s = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let report = world::run(&s, seed).unwrap_or_else(|e| panic!("{e}"));
    let (verdict, fails) = report.judge(&s);
    assert_eq!(verdict, Verdict::Pass, "{name} seed {seed}: {fails:?}");
    assert!(report.acked > 0 && report.delivered > 0);
    assert_eq!((report.lost, report.duplicates, report.out_of_order), (0, 0, 0));
    let mut json = serde_json::to_value(&report).expect("report serialises");
    json.as_object_mut().expect("an object").remove("wall_secs");
    insta::assert_json_snapshot!(format!("{name}-seed{seed}"), json);
}

#[test]
fn vehicle_offline_seed_1() {
    run_and_snapshot("vehicle-offline", 1);
}

#[test]
fn cellular_outage_seed_1() {
    run_and_snapshot("cellular-outage", 1);
}

#[test]
fn fleet_clock_chaos_seed_1() {
    run_and_snapshot("fleet-clock-chaos", 1);
}

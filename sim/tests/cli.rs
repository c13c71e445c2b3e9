//! The `outpost-sim` binary as a user meets it: errors that name the file, the field and
//! what was expected; the JSON report with the contract's fields; exit codes per verdict.

use std::process::Command;

fn sim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost-sim")).args(args).output().expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn write_scenario(name: &str, body: &str) -> String {
    let dir = std::env::temp_dir().join(format!("outpost-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write scenario");
    path.to_string_lossy().into_owned()
}

const SMALL: &str = r#"
name = "small"
about = "two nodes, ten minutes"
duration = "10m"
settle = "10m"
[[node]]
id = "e"
role = "edge"
device = "pi4"
[[node]]
id = "c"
role = "gateway"
device = "cloud"
[[link]]
between = ["e", "c"]
net = "wifi"
outages = [ { at = "2m", for = "3m" } ]
[[topic]]
name = "t"
sync = "edge-to-cloud"
[[workload]]
node = "e"
topic = "t"
rate = 20
size = 100
[[fault]]
kind = "crash"
node = "e"
at = "6m"
restart_after = "5s"
"#;

#[test]
fn json_report_has_the_contract_fields_and_passes() {
    let path = write_scenario("small.toml", SMALL);
    let (code, out, err) = sim(&["run", &path, "--seed", "3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    for key in [
        "scenario",
        "seed",
        "sim_secs",
        "wall_secs",
        "produced",
        "acked",
        "delivered",
        "lost",
        "duplicates",
        "out_of_order",
        "evicted_unsynced",
        "corrupted",
        "max_backlog",
        "peak_memory_bytes",
        "converged",
        "converge_secs",
        "violations",
        "trace_hash",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {out}");
    }
    assert_eq!(v["seed"], 3);
    assert_eq!(v["lost"], 0);
    assert_eq!(v["converged"], true);
    assert!(v["delivered"].as_u64().unwrap_or(0) > 10_000);
}

#[test]
fn an_unknown_node_in_a_link_names_file_field_and_choices() {
    let path = write_scenario("bad-link.toml", &SMALL.replace(r#"between = ["e", "c"]"#, r#"between = ["e", "clod"]"#));
    let (code, _, err) = sim(&["run", &path]);
    assert_eq!(code, 2);
    assert!(err.contains("bad-link.toml:"), "{err}");
    assert!(err.contains("link[0].between[1]"), "{err}");
    assert!(err.contains("\"clod\"") && err.contains("e, c"), "{err}");
}

#[test]
fn a_bad_duration_and_an_unknown_key_are_explained() {
    let path = write_scenario("bad-duration.toml", &SMALL.replace(r#"at = "6m""#, r#"at = "6 minutez""#));
    let (code, _, err) = sim(&["run", &path]);
    assert_eq!(code, 2);
    assert!(err.contains("fault[0].at") && err.contains("duration"), "{err}");
    let path = write_scenario("bad-key.toml", &SMALL.replace("rate = 20", "rate = 20\nspeed = 3"));
    let (code, _, err) = sim(&["run", &path]);
    assert_eq!(code, 2);
    assert!(err.contains("speed"), "{err}");
}

#[test]
fn what_is_not_built_is_refused_not_passed() {
    let body = SMALL.replace(
        "restart_after = \"5s\"",
        "restart_after = \"5s\"\n[[fault]]\nkind = \"disk-corrupt\"\nnode = \"c\"\nat = \"7m\"",
    );
    let path = write_scenario("corrupt.toml", &body);
    let (code, _, err) = sim(&["run", &path]);
    assert_eq!(code, 2);
    assert!(err.contains("disk-corrupt on gateway \"c\""), "{err}");
    assert!(err.contains("corrupt an edge instead"), "{err}");
}

#[test]
fn a_run_that_cannot_converge_fails_with_the_replay_command() {
    // 8 minutes of 40 kB/s (until settle begins) queued behind a satellite link (100 kB/s, 300 ms each way):
    // no settle phase of one second can drain it.
    let body = SMALL
        .replace("settle = \"10m\"", "settle = \"1s\"")
        .replace("net = \"wifi\"", "net = \"satellite\"")
        .replace("at = \"2m\", for = \"3m\"", "at = \"2m\", for = \"8m\"")
        .replace("size = 100", "size = 2000");
    let path = write_scenario("short-settle.toml", &body);
    let (code, _, err) = sim(&["run", &path, "--seed", "5"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("did not converge"), "{err}");
    assert!(err.contains("--seed 5"), "{err}");
}

#[test]
fn raft_sweeps_report_their_totals_and_refuse_bad_sizes() {
    let (code, out, err) = sim(&["raft", "--seeds", "2", "--jobs", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("raft: 2 seeds of a 3-member group"), "{out}");
    assert!(out.contains("puts and") && out.contains("membership changes"), "{out}");
    let (code, out, _) = sim(&["raft", "--seeds", "1", "--first", "5", "--json"]);
    assert_eq!(code, 0);
    let json_start = out.find('{').expect("a JSON report");
    let json_end = out.rfind('}').expect("a JSON report") + 1;
    let report: serde_json::Value = serde_json::from_str(&out[json_start..json_end]).expect("valid JSON");
    assert_eq!(report["seed"], 5);
    assert_eq!(report["linearizability"], "linearizable");
    assert!(report["puts_acked"].as_u64().expect("a count") > 0);
    let (code, _, err) = sim(&["raft", "--members", "12"]);
    assert_eq!(code, 2);
    assert!(err.contains("--members must be 1 to 9"), "{err}");
    let (code, _, err) = sim(&["raft", "--members", "3", "--initial-voters", "4"]);
    assert_eq!(code, 2);
    assert!(err.contains("--initial-voters must be 1 to --members (3), not 4"), "{err}");
}

//! The operator CLI and the config checks as a new user meets them (issue 15, defects 6 and
//! 11): what `outpost check`, `outpost sync`, `--addr`, `--json` and `--help` print, and what
//! the status says about the link to the gateway.

mod common;

use common::{free_addr, Daemon, BIN};
use std::process::Command;
use std::time::Duration;

/// Runs `outpost ARGS`; returns (exit code, stdout, stderr).
fn outpost(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("outpost runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn a_token_longer_than_the_handshake_carries_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("edge.toml");
    let token = "t".repeat(256);
    std::fs::write(&file, format!("[node]\nname = \"edge-1\"\n\n[cloud]\ntoken = \"{token}\"\n")).expect("written");
    let path = file.to_str().expect("UTF-8");
    let (code, _, err) = outpost(&["check", "--config", path]);
    assert_eq!(code, 2, "check refuses it: {err}");
    assert!(err.contains("cloud.token") && err.contains("255"), "{err}");
    let (code, _, err) = outpost(&["run", "--config", path]);
    assert_eq!(code, 2, "run refuses it before starting: {err}");
    assert!(err.contains("cloud.token"), "{err}");
}

#[test]
fn check_prints_json_when_asked() {
    let (code, out, err) = outpost(&["check", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["valid"], serde_json::Value::Bool(true));
    assert_eq!(v["role"], "edge");
    assert!(v["topics"].as_array().is_some_and(|t| !t.is_empty()), "{v}");
}

#[test]
fn every_command_has_help_text() {
    for (args, subcommands) in
        [(vec!["sync", "--help"], vec!["status", "now", "pause", "resume"]), (vec!["mesh", "--help"], vec!["peers"])]
    {
        let (code, out, _) = outpost(&args);
        assert_eq!(code, 0);
        for sub in subcommands {
            let line = out.lines().find(|l| l.trim_start().starts_with(sub)).unwrap_or_else(|| panic!("{sub}: {out}"));
            assert!(line.trim() != sub, "`outpost {}` lists {sub} without a description:\n{out}", args[0]);
        }
    }
    let (_, out, _) = outpost(&["run", "--help"]);
    let line = out.lines().find(|l| l.contains("--config")).expect("--config is listed");
    assert!(line.split("--config").nth(1).is_some_and(|rest| rest.split_whitespace().count() > 1), "{out}");
}

#[test]
fn sync_commands_answer_in_json_take_host_names_and_refuse_a_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);
    gw.start();
    let mut edge = Daemon::edge(dir.path(), "edge-1", listen, "t1", "");
    edge.start();
    let by_name = format!("localhost:{}", edge.http.port());
    for (command, paused) in [("pause", true), ("resume", false), ("now", false)] {
        let (code, out, err) = outpost(&["sync", command, "--json", "--addr", &by_name]);
        assert_eq!(code, 0, "sync {command}: {err}");
        let v = json(&out);
        assert_eq!(v["ok"], serde_json::Value::Bool(true), "{v}");
        assert_eq!(edge.status()["sync"]["paused"], serde_json::Value::Bool(paused));
    }
    let (code, out, _) = outpost(&["health", "--json", "--addr", &by_name]);
    assert!(code <= 1, "health answers by host name");
    assert_eq!(json(&out)["node"], "edge-1");
    let gateway = gw.http.to_string();
    let (code, out, err) = outpost(&["sync", "pause", "--addr", &gateway]);
    assert_ne!(code, 0, "pausing a gateway is refused: {out}");
    assert!(!out.contains("done"), "{out}");
    assert!(err.contains("gateway"), "{err}");
}

#[test]
fn the_link_status_counts_reconnects_and_errors_as_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut edge = Daemon::edge(dir.path(), "edge-1", listen, "t1", "");
    edge.start();
    common::wait_until(10, "a failed attempt to reach the gateway", || {
        !edge.status()["link"]["peers"][0]["last_error"].is_null()
    });
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);
    gw.start();
    common::wait_until(30, "the link to come up", || edge.status()["link"]["peers"][0]["connected"] == true);
    let peer = edge.status()["link"]["peers"][0].clone();
    assert_eq!(peer["reconnects"], 0, "the first connection is not a reconnect: {peer}");
    assert!(peer["last_error"].is_null(), "no error while connected: {peer}");
    let (_, out, _) = outpost(&["sync", "status", "--addr", &edge.http.to_string()]);
    assert!(!out.contains("refused"), "{out}");
}

#[test]
fn a_refused_edge_is_told_what_to_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let mut gw = Daemon::gateway(dir.path(), listen, &[("edge-1", "t1")]);
    gw.start();
    // An edge whose file has no token at all.
    let (http, binary) = (free_addr(), free_addr());
    let text = format!(
        "[node]\nname = \"edge-1\"\ndata_dir = \"{}\"\n[api]\nhttp = \"{http}\"\nbinary = \"{binary}\"\n\
         [cloud]\ngateway = \"{listen}\"\n[sync]\nbackoff_min = \"100ms\"\nbackoff_max = \"1s\"\n",
        dir.path().join("edge-1").display()
    );
    let file = dir.path().join("edge-1.toml");
    std::fs::write(&file, text).expect("written");
    let mut edge = Daemon::from_file(dir.path(), "edge-1", &file, http, binary);
    edge.start();
    common::wait_until(20, "the gateway's refusal", || edge.status()["link"]["peers"][0]["last_error"].is_string());
    std::thread::sleep(Duration::from_millis(500));
    let error = edge.status()["link"]["peers"][0]["last_error"].as_str().expect("an error").to_owned();
    assert!(error.contains("cloud.token"), "the refusal says what to set: {error}");
    assert!(!error.contains("wrong token"), "no token is not a wrong token: {error}");
    assert!(!error.contains("gateway gateway"), "{error}");
}

//! The operator CLI's side: asks a running daemon over its local HTTP API and prints
//! tables (or the JSON, for scripts).

use crate::status::{self, Status};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Why the CLI could not get an answer.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One HTTP request to the daemon; returns the status code and body.
/// A running daemon's HTTP API, and the token to send it (`api.admin_token`).
#[derive(Clone, Debug)]
pub struct Daemon {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

pub fn request(daemon: &Daemon, method: &str, path: &str) -> Result<(u16, Vec<u8>), CliError> {
    let addr = daemon.addr;
    let unreachable = |e: std::io::Error| {
        CliError(format!(
            "cannot reach an outpost daemon at {addr}: {e}. Is `outpost run` (or `outpost gateway`) running? \
             Point at it with --addr HOST:PORT or --config FILE"
        ))
    };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(unreachable)?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(unreachable)?;
    let auth = daemon.token.as_ref().map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(unreachable)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(unreachable)?;
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let at = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => {
            return Err(CliError(format!(
                "the answer from {addr} is not HTTP; is that port an outpost daemon's api.http?"
            )))
        }
    };
    Ok((resp.code.unwrap_or(0), raw[at..].to_vec()))
}

pub fn fetch_status(daemon: &Daemon) -> Result<Status, CliError> {
    let addr = daemon.addr;
    let (code, body) = request(daemon, "GET", "/v1/admin/status")?;
    if code == 401 {
        return Err(unauthorized(addr, &body));
    }
    if code != 200 {
        return Err(CliError(format!("{addr} answered {code}: {}", String::from_utf8_lossy(&body))));
    }
    serde_json::from_slice(&body)
        .map_err(|e| CliError(format!("the status from {addr} does not parse ({e}); is it the same outpost version?")))
}

/// What the operator asked to see.
#[derive(Clone, Copy, Debug)]
pub enum View {
    Sync,
    Queue,
    Resources,
    Health,
    Peers,
}

/// Prints a view; returns the process exit code (health: 0 healthy, 1 degraded,
/// 2 unhealthy).
pub fn show(daemon: &Daemon, view: View, json: bool) -> Result<i32, CliError> {
    let s = fetch_status(daemon)?;
    let code = match (view, status::health(&s).0) {
        (View::Health, "degraded") => 1,
        (View::Health, "unhealthy") => 2,
        _ => 0,
    };
    if json {
        let v = match view {
            View::Sync => serde_json::json!({ "sync": s.sync, "topics": s.topics, "link": s.link }),
            View::Queue => serde_json::json!({ "topics": s.topics }),
            View::Resources => serde_json::json!({
                "memory_used": s.memory_used, "memory_max": s.memory_max, "memory_parts": s.memory_parts,
                "storage_used": s.storage_used, "storage_max": s.storage_max, "device_full": s.device_full,
                "topics": s.topics,
            }),
            View::Health => {
                let (state, reasons) = status::health(&s);
                serde_json::json!({ "status": state, "reasons": reasons, "node": s.node, "role": s.role, "uptime_secs": s.uptime_secs })
            }
            View::Peers => serde_json::json!({ "peers": s.link.peers }),
        };
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON values serialize"));
    } else {
        let text = match view {
            View::Sync => status::render_sync(&s),
            View::Queue => status::render_queue(&s),
            View::Resources => status::render_resources(&s),
            View::Health => status::render_health(&s),
            View::Peers => status::render_peers(&s),
        };
        print!("{text}");
    }
    Ok(code)
}

/// `outpost sync pause|resume|now`: the daemon's answer.
pub fn sync_command(daemon: &Daemon, command: &str) -> Result<serde_json::Value, CliError> {
    let addr = daemon.addr;
    let (code, body) = request(daemon, "POST", &format!("/v1/admin/sync/{command}"))?;
    if code == 401 {
        return Err(unauthorized(addr, &body));
    }
    let answer: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    if code != 200 {
        let why = answer
            .as_ref()
            .and_then(|a| a["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(CliError(format!("{addr} refused `sync {command}` ({code}): {why}")));
    }
    answer.ok_or_else(|| CliError(format!("the answer from {addr} is not JSON; is it the same outpost version?")))
}

fn unauthorized(addr: SocketAddr, body: &[u8]) -> CliError {
    CliError(format!(
        "{addr} needs a token ({}): give --config FILE of the daemon (its api.admin_token is read), --token, or \
         OUTPOST_TOKEN",
        String::from_utf8_lossy(body)
    ))
}

/// `outpost conflicts`: the newest `max` conflicts of each keyed topic (or of `topic`), as
/// a table or (`json`) the daemon's answers.
pub fn conflicts(daemon: &Daemon, topic: Option<&str>, max: usize, json: bool) -> Result<i32, CliError> {
    let addr = daemon.addr;
    let status = fetch_status(daemon)?;
    let topics: Vec<&str> = match topic {
        Some(t) if status.keyed.iter().any(|k| k.topic == t) => vec![t],
        Some(t) => {
            let keyed: Vec<&str> = status.keyed.iter().map(|k| k.topic.as_str()).collect();
            return Err(CliError(format!(
                "{addr} has no keyed topic {t:?}; its keyed topics: {}",
                if keyed.is_empty() { "none (no topic has a conflict strategy)".into() } else { keyed.join(", ") }
            )));
        }
        None => status.keyed.iter().map(|k| k.topic.as_str()).collect(),
    };
    let mut answers = Vec::new();
    for t in topics {
        let (code, body) = request(daemon, "GET", &format!("/v1/topics/{t}/conflicts?max={max}"))?;
        if code == 401 {
            return Err(unauthorized(addr, &body));
        }
        if code != 200 {
            return Err(CliError(format!("{addr} answered {code}: {}", String::from_utf8_lossy(&body))));
        }
        let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            CliError(format!("the conflicts from {addr} do not parse ({e}); is it the same outpost version?"))
        })?;
        answers.push(answer);
    }
    if json {
        let v = serde_json::json!({ "node": status.node, "topics": answers });
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON values serialize"));
    } else {
        print!("{}", render_conflicts(&status.node, &answers));
    }
    Ok(0)
}

fn render_conflicts(node: &str, answers: &[serde_json::Value]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if answers.is_empty() {
        let _ = writeln!(o, "{node}: no keyed topics (no topic has a conflict strategy)");
        return o;
    }
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let dot = |v: &serde_json::Value| format!("{}#{}", text(&v["origin"]), v["origin_seq"]);
    for a in answers {
        let _ = writeln!(
            o,
            "{} ({}): {} conflicts, the newest {} kept",
            text(&a["topic"]),
            text(&a["strategy"]),
            a["conflicts_total"],
            a["conflicts_kept"]
        );
        let rows = a["conflicts"].as_array().map_or(&[][..], Vec::as_slice);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(o, "  {:<24} {:<20} VERSIONS (origin#seq hlc)", "KEY", "WINNER");
        for c in rows {
            let key = c.get("key").or_else(|| c.get("key_hex")).map(text).unwrap_or_default();
            let winner = match (c["winner"].is_null(), c["strategy"].as_str()) {
                (true, Some("custom")) => "merged".to_string(),
                (true, _) => "kept both".to_string(),
                (false, _) => dot(&c["winner"]),
            };
            let versions: Vec<String> = c["versions"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|v| {
                    let deleted = if v["deleted"] == true { " deleted" } else { "" };
                    format!("{} {}{deleted}", dot(v), text(&v["hlc"]))
                })
                .collect();
            let _ = writeln!(o, "  {key:<24} {winner:<20} {}", versions.join(", "));
        }
    }
    o
}

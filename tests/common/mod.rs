//! Real `outpost` processes on 127.0.0.1 for the integration tests: configs in a
//! temporary directory, ports picked free, start, wait until running, kill -9, restart.

#![allow(dead_code)]
// Each test binary uses a different part of this module.
// Real processes wait on real time: deadlines for a daemon to start or a queue to drain.
#![allow(clippy::disallowed_types)]

use outpost::client::Client;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_outpost");

/// A port free now and not handed out before by this process: the OS may give the same
/// ephemeral port to two binds in a row once the first listener is dropped.
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = l.local_addr().expect("bound");
        if GIVEN.lock().expect("not poisoned").insert(addr.port()) {
            return addr;
        }
    }
}

/// One daemon (edge or gateway) with its config, data directory and log file.
pub struct Daemon {
    pub name: String,
    pub gateway: bool,
    pub config: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    pub http: SocketAddr,
    pub binary: SocketAddr,
    /// Extra arguments of `outpost run` (`--shell lite`).
    pub args: Vec<String>,
    /// The size of a tmpfs mounted on the data directory for the process alone, and the
    /// bytes of another file written there first (see [`Daemon::on_tmpfs`]).
    pub tmpfs: Option<(String, u64)>,
    /// `api.admin_token` of its file, which the helpers send (status, the client).
    pub api_token: Option<String>,
    child: Option<Child>,
    starts: u32,
}

impl Daemon {
    /// An edge named `name` that syncs to the gateway at `gateway` with `token`.
    pub fn edge(dir: &Path, name: &str, gateway: SocketAddr, token: &str, extra: &str) -> Daemon {
        Daemon::edge_with_sync(dir, name, gateway, token, "backoff_min = \"100ms\"\nbackoff_max = \"2s\"\n", extra)
    }

    /// The same, with `sync` as the body of its `[sync]` table.
    pub fn edge_with_sync(dir: &Path, name: &str, gateway: SocketAddr, token: &str, sync: &str, extra: &str) -> Daemon {
        let (http, binary) = (free_addr(), free_addr());
        let data = dir.join(name);
        let text = format!(
            "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\n\n[api]\nhttp = \"{http}\"\nbinary = \"{binary}\"\n\n\
             [cloud]\ngateway = \"{gateway}\"\ntoken = \"{token}\"\n\n[sync]\n{sync}\n{extra}",
            data.display()
        );
        Daemon::with_config(dir, name, false, &text, http, binary, data)
    }

    /// The same edge run by the single-threaded edge-lite shell.
    pub fn lite(mut self) -> Daemon {
        self.args = vec!["--shell".into(), "lite".into()];
        self
    }

    /// A gateway listening for edges on `listen`, accepting the `(edge, token)` pairs.
    pub fn gateway(dir: &Path, listen: SocketAddr, tokens: &[(&str, &str)]) -> Daemon {
        Daemon::gateway_with(dir, listen, tokens, "")
    }

    /// The same, with `extra` lines in its `[gateway]` table (`open = true`).
    pub fn gateway_with(dir: &Path, listen: SocketAddr, tokens: &[(&str, &str)], extra: &str) -> Daemon {
        Daemon::gateway_named(dir, "gateway", listen, tokens, extra, "")
    }

    /// A gateway named `name`, with `extra` lines in its `[gateway]` table and `tables`
    /// after it (a `[cloud]` table makes it a middle tier).
    pub fn gateway_named(
        dir: &Path,
        name: &str,
        listen: SocketAddr,
        tokens: &[(&str, &str)],
        extra: &str,
        tables: &str,
    ) -> Daemon {
        let (http, binary) = (free_addr(), free_addr());
        let data = dir.join(name);
        let mut text = format!(
            "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\n\n[api]\nhttp = \"{http}\"\nbinary = \"{binary}\"\n\n\
             {tables}\n[gateway]\nlisten = \"{listen}\"\n{extra}\n[gateway.tokens]\n",
            data.display()
        );
        for (edge, token) in tokens {
            text.push_str(&format!("\"{edge}\" = \"{token}\"\n"));
        }
        Daemon::with_config(dir, name, true, &text, http, binary, data)
    }

    /// An edge whose config file the test wrote itself, naming `http` and `binary`.
    pub fn from_file(dir: &Path, name: &str, config: &Path, http: SocketAddr, binary: SocketAddr) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let data = dir.join(name);
        Daemon {
            name: name.into(),
            gateway: false,
            config: config.to_path_buf(),
            data,
            log,
            http,
            binary,
            args: Vec::new(),
            tmpfs: None,
            api_token: None,
            child: None,
            starts: 0,
        }
    }

    fn with_config(
        dir: &Path,
        name: &str,
        gateway: bool,
        text: &str,
        http: SocketAddr,
        binary: SocketAddr,
        data: PathBuf,
    ) -> Daemon {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).expect("config written");
        let mut d = Daemon::from_file(dir, name, &config, http, binary);
        d.gateway = gateway;
        d.data = data;
        d
    }

    /// The same daemon with its data directory on a tmpfs of `size` (`"8m"`) that only
    /// its process sees: a small device. Each start mounts a new, empty one, in a user
    /// and mount namespace of its own (`unshare --user --map-root-user --mount`), so no
    /// root is needed and nothing stays mounted. Panics, saying why, where that is not
    /// possible: [`tmpfs_supported`]. `other_files` bytes of a file that is not the
    /// daemon's (`other-files`, in the data directory) take room on it from the start.
    pub fn on_tmpfs(mut self, size: &str, other_files: u64) -> Daemon {
        if let Err(why) = tmpfs_supported() {
            panic!("this test needs a small device, a tmpfs on the data directory, and cannot mount one: {why}");
        }
        self.tmpfs = Some((size.into(), other_files));
        self
    }

    /// Starts the process (appending to its log) and waits until it accepts writes.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let cmd = if self.gateway { "gateway" } else { "run" };
        let mut command = match &self.tmpfs {
            None => Command::new(BIN),
            Some((size, other)) => {
                std::fs::create_dir_all(&self.data).expect("the mount point");
                let mut c = Command::new("unshare");
                c.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
                    .arg(format!(
                        "mount -t tmpfs -o size={size} tmpfs \"$0\" && head -c {other} /dev/zero > \"$0/other-files\" \
                         && exec \"$@\""
                    ))
                    .arg(&self.data)
                    .arg(BIN);
                c
            }
        };
        let child = command
            .args([cmd, "--config"])
            .arg(&self.config)
            .args(&self.args)
            .env("OUTPOST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("outpost starts");
        self.child = Some(child);
        self.starts += 1;
        self.wait_running();
    }

    fn wait_running(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.try_status() {
                if s["running"] == serde_json::Value::Bool(true) {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{} exited with {status} while starting; log:\n{}", self.name, self.log_text());
            }
            assert!(Instant::now() < deadline, "{} did not start in 30 s; log:\n{}", self.name, self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9: no shutdown code runs.
    pub fn kill(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().expect("kill -9");
        c.wait().expect("reaped");
    }

    /// The process id of the running daemon.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The daemon's peak resident memory so far (`VmHWM` of /proc), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc/PID/status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmHWM in kB");
        kib << 10
    }

    /// The settings the daemon runs with, as its config loader reads its file.
    pub fn settings(&self) -> outpost::config::Settings {
        let role = if self.gateway { outpost_core::config::Role::Gateway } else { outpost_core::config::Role::Edge };
        outpost::config::load(Some(&self.config), role).expect("the test's config loads")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn try_status(&self) -> Option<serde_json::Value> {
        let (code, body) = http_as(self.http, self.api_token.as_deref(), "GET", "/v1/admin/status", None, b"").ok()?;
        (code == 200).then(|| serde_json::from_slice(&body).ok()).flatten()
    }

    pub fn status(&self) -> serde_json::Value {
        self.try_status().unwrap_or_else(|| panic!("{} answers its status; log:\n{}", self.name, self.log_text()))
    }

    /// Records of `topic` not yet acknowledged by the gateway.
    pub fn unsynced(&self, topic: &str) -> u64 {
        let s = self.status();
        let t =
            s["topics"].as_array().expect("topics").iter().find(|t| t["name"] == topic).expect("topic exists").clone();
        t["unsynced_records"].as_u64().expect("a count")
    }

    pub fn client(&self) -> Client {
        match &self.api_token {
            Some(t) => Client::connect_with_token(self.binary, t).expect("binary port answers the token"),
            None => Client::connect(self.binary).expect("binary port answers"),
        }
    }

    /// Runs the CLI against this daemon and returns (exit code, stdout).
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(BIN).args(args).arg("--addr").arg(self.http.to_string()).output().expect("cli runs");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every record of `topic` this node holds, in its log's order: (origin_seq, value).
    pub fn read_all(&self, topic: &str) -> Vec<(u64, u64, Vec<u8>)> {
        self.read_way(topic, None)
    }

    /// As `read_all`, of one half of a `both` topic.
    pub fn read_way(&self, topic: &str, way: Option<outpost_core::config::Way>) -> Vec<(u64, u64, Vec<u8>)> {
        let mut c = self.client();
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let r = c.fetch_way(topic, way, from, 10_000, 1 << 20).expect("fetch");
            out.extend(r.records.into_iter().map(|r| (r.origin, r.origin_seq, r.value)));
            if r.next >= r.durable_end {
                return out;
            }
            from = r.next;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether this machine lets a process mount a tmpfs of its own without root (user and
/// mount namespaces: `unshare --user --map-root-user --mount`); the error says why not.
pub fn tmpfs_supported() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs \"$0\""])
        .arg(dir.path())
        .output()
        .map_err(|e| format!("cannot run unshare (util-linux): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "`unshare --user --map-root-user --mount sh -c 'mount -t tmpfs ...'` failed ({}): {}; unprivileged user \
         namespaces may be disabled (sysctl kernel.unprivileged_userns_clone or user.max_user_namespaces)",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// One HTTP/1.1 request with `connection: close`; returns the status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    http_as(addr, None, method, path, content_type, body)
}

/// The same, with `Authorization: Bearer TOKEN` when `token` is given.
pub fn http_as(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    if let Some(t) = token {
        req.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    if let Some(t) = content_type {
        req.push_str(&format!("content-type: {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| std::io::Error::other(format!("not HTTP: {:?}", String::from_utf8_lossy(&raw))))
}

pub fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..at]).ok()?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, raw[at..].to_vec()))
}

/// `n` bytes that no compressor shrinks, the same for the same `seed` (xorshift64): a
/// record that fills a device at the rate it is written, or a value a search of a data
/// directory finds verbatim wherever it is stored in clear.
pub fn incompressible(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Polls `f` every 50 ms until it is true, for at most `secs`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces one record, retrying while the daemon says so (recovering, clock bound not
/// yet durable, busy) — what a well-behaved application does.
pub fn produce(c: &mut Client, topic: &str, value: &[u8]) -> outpost::client::Ack {
    for _ in 0..500 {
        match c.produce(topic, None, value) {
            Ok(a) => return a,
            Err(e) if e.is_retryable() => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("produce refused: {e}"),
        }
    }
    panic!("produce still refused after 5 s of retries")
}

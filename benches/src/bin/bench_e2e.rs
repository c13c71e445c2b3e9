//! bench-e2e: a real edge daemon and gateway on loopback, N records of S bytes from K
//! producers through the binary protocol. Prints records/s, MB/s, produce→ack latency
//! (p50/p99/p999), produce→stored-at-gateway latency (p50/p99), and each process's peak
//! RSS and CPU time. A benchmark, not a test: it checks that the gateway holds every record
//! exactly once, and says so, but its figures are for reading (docs/PERFORMANCE.md).
//!
//! `just bench-e2e` builds the release binaries and runs it; `bench-e2e --help` lists the
//! options. `--batch B` sends B records per request (a ProduceBatch, or with `--protocol
//! http` a JSON batch); latencies stay per record: from its request's send to its answer. `--mode live` (the default) runs the gateway throughout; `--mode offline`
//! writes everything with the gateway down (durable ingest alone), then starts it and
//! times the drain (edge → gateway sync alone).

#![allow(clippy::disallowed_types)] // A benchmark of real processes measures real time.

use outpost::binproto::{RecordResult, Request, Response};
use outpost::client::Client;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOPIC: &str = "events";
const USAGE: &str = "\
usage: bench-e2e [options]
  --records N        records in all (default 1000000)
  --size S           value bytes per record (default 100)
  --producers K      producer connections, one thread each (default 4)
  --window W         records in flight per producer (default 1024): W / B requests of --batch B
                     records (at least one); with --protocol http, one request at a time
  --batch B          records per produce request (default 1: a Produce each; above, a ProduceBatch)
  --protocol binary|http  the binary protocol (default), or HTTP JSON batches of B records
  --mode live|offline  gateway up throughout, or down while producing then drained (default live)
  --shell tokio|lite the edge's shell (default tokio)
  --pin-edge CPUS    run the edge under `taskset -c CPUS` (e.g. 0: one core)
  --pin-gateway CPUS run the gateway under `taskset -c CPUS`
  --edge-memory M    the edge's resources.max_memory (default \"64 MiB\", the edge default)
  --tls              TLS 1.3 between edge and gateway, with certificates `outpost certs` makes
  --encrypt          the topic sealed end to end (encrypt = true; the edge holds the key file)
  --outpost PATH     the outpost binary (default: beside this one)
  --dir PATH         where data directories and logs go (default: a new directory in /tmp)
Run the load on other cores than the edge: taskset -c 1 bench-e2e --pin-edge 0";

struct Options {
    records: u64,
    size: usize,
    producers: u64,
    window: usize,
    batch: usize,
    http: bool,
    offline: bool,
    shell: String,
    pin_edge: Option<String>,
    pin_gateway: Option<String>,
    edge_memory: String,
    tls: bool,
    encrypt: bool,
    outpost: PathBuf,
    dir: Option<PathBuf>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        records: 1_000_000,
        size: 100,
        producers: 4,
        window: 1024,
        batch: 1,
        http: false,
        offline: false,
        shell: "tokio".into(),
        pin_edge: None,
        pin_gateway: None,
        edge_memory: "64 MiB".into(),
        tls: false,
        encrypt: false,
        outpost: std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("outpost"),
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        match flag.as_str() {
            "--tls" => {
                o.tls = true;
                continue;
            }
            "--encrypt" => {
                o.encrypt = true;
                continue;
            }
            _ => {}
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.replace('_', "").parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--records" => o.records = number(&value)?,
            "--size" => o.size = number(&value)? as usize,
            "--producers" => o.producers = number(&value)?,
            "--window" => o.window = number(&value)? as usize,
            "--batch" => o.batch = number(&value)? as usize,
            "--protocol" => match value.as_str() {
                "binary" => o.http = false,
                "http" => o.http = true,
                _ => return Err(format!("--protocol: {value:?} is neither binary nor http")),
            },
            "--mode" => match value.as_str() {
                "live" => o.offline = false,
                "offline" => o.offline = true,
                _ => return Err(format!("--mode: {value:?} is neither live nor offline")),
            },
            "--shell" => o.shell = value,
            "--pin-edge" => o.pin_edge = Some(value),
            "--pin-gateway" => o.pin_gateway = Some(value),
            "--edge-memory" => o.edge_memory = value,
            "--outpost" => o.outpost = value.into(),
            "--dir" => o.dir = Some(value.into()),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.records == 0 || o.producers == 0 || o.window == 0 || o.size < 8 {
        return Err("--records, --producers and --window must be above 0, --size at least 8".into());
    }
    if o.batch == 0 || o.batch > outpost::binproto::PRODUCE_BATCH_RECORDS_MAX {
        return Err(format!("--batch must be 1 to {}", outpost::binproto::PRODUCE_BATCH_RECORDS_MAX));
    }
    if !o.outpost.exists() {
        return Err(format!(
            "{} not found: build it (cargo build --release -p outpost) or pass --outpost",
            o.outpost.display()
        ));
    }
    Ok(o)
}

/// Runs `outpost ARGS` (certificates, keys), which must succeed.
fn outpost_command(o: &Options, args: &[&str]) {
    let out = Command::new(&o.outpost).args(args).output().expect("outpost runs");
    assert!(out.status.success(), "outpost {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port on 127.0.0.1")
}

/// One daemon started from a config file, stopped (kill) on drop.
struct Daemon {
    name: &'static str,
    child: Child,
    binary: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    fn start(o: &Options, dir: &Path, name: &'static str, config: &str, binary: SocketAddr) -> Daemon {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).expect("config written");
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let (command, pin) = if name == "gateway" { ("gateway", &o.pin_gateway) } else { ("run", &o.pin_edge) };
        let mut cmd = match pin {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&o.outpost);
                c
            }
            None => Command::new(&o.outpost),
        };
        cmd.args([command, "--config"]).arg(&config_path).env("OUTPOST_LOG", "warn");
        if name == "edge" {
            cmd.args(["--shell", &o.shell]);
        }
        let child =
            cmd.stdout(Stdio::null()).stderr(log_file).spawn().unwrap_or_else(|e| panic!("{name}: cannot start: {e}"));
        let mut d = Daemon { name, child, binary, log };
        d.wait_ready();
        d
    }

    /// Until the binary port answers a fetch (recovery done).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = Client::connect(self.binary) {
                if c.fetch(TOPIC, 0, 1, 1).is_ok() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status}; log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "{} not ready in 30 s", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process (not `taskset`, which execs into it) from /proc: peak RSS in bytes and
    /// CPU seconds (user + system).
    fn usage(&self) -> (u64, f64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (in parentheses): utime and stime are the 12th and 13th.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
        (hwm_kib * 1024, ticks as f64 / clock_ticks_per_sec())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// What one producer saw: per record, its sequence, when it was sent and acknowledged
/// (nanoseconds since the run's start); and how many produces were refused as busy.
struct Produced {
    acks: Vec<(u64, u64, u64)>,
    busy: u64,
}

/// What one producer is asked for.
#[derive(Clone, Copy)]
struct Load {
    producer: u64,
    records: u64,
    size: usize,
    window: usize,
    batch: usize,
}

impl Load {
    /// The records of the next request: those refused for now first, then new ones.
    fn next_request(&self, resend: &mut VecDeque<u64>, next: &mut u64) -> Vec<u64> {
        let mut take = Vec::with_capacity(self.batch);
        while take.len() < self.batch {
            match resend.pop_front() {
                Some(i) => take.push(i),
                None if *next < self.records => {
                    take.push(*next);
                    *next += 1;
                }
                None => break,
            }
        }
        take
    }

    /// Record `i`'s value, one of `pool` (`telemetry_values`).
    fn value<'a>(&self, pool: &'a [Vec<u8>], i: u64) -> &'a [u8] {
        &pool[(self.producer * 7 + i) as usize % pool.len()]
    }
}

/// Produces over the binary protocol: Produce requests, or ProduceBatch of `load.batch`.
fn produce(addr: SocketAddr, load: Load, t0: Instant) -> Produced {
    let mut c = Client::connect(addr).expect("the edge's binary port");
    let mut out = Produced { acks: Vec::with_capacity(load.records as usize), busy: 0 };
    let requests_max = (load.window / load.batch).max(1);
    let mut in_flight: VecDeque<(u32, Vec<u64>, u64)> = VecDeque::with_capacity(requests_max);
    let mut resend: VecDeque<u64> = VecDeque::new();
    let mut next = 0u64;
    let pool = outpost_bench::telemetry_values(1024, load.size);
    let value = |i| load.value(&pool, i);
    while (out.acks.len() as u64) < load.records {
        while in_flight.len() < requests_max {
            let take = load.next_request(&mut resend, &mut next);
            if take.is_empty() {
                break;
            }
            let sent = t0.elapsed().as_nanos() as u64;
            let id = if load.batch == 1 {
                c.send(&Request::Produce { topic: TOPIC.into(), key: None, value: value(take[0]).to_vec() })
            } else {
                let records: Vec<(Option<&[u8]>, &[u8])> = take.iter().map(|&i| (None, value(i))).collect();
                c.send_batch(TOPIC, &records)
            }
            .expect("send");
            in_flight.push_back((id, take, sent));
        }
        let (id, resp) = c.recv().expect("an answer from the edge");
        let (expected, take, sent) = in_flight.pop_front().expect("an answer to a request in flight");
        assert_eq!(id, expected, "answers come in order");
        let acked = t0.elapsed().as_nanos() as u64;
        match resp {
            Response::Acked { seq, .. } => out.acks.push((seq, sent, acked)),
            Response::Results(results) => {
                for (i, r) in take.into_iter().zip(results) {
                    match r {
                        RecordResult::Acked { seq, .. } => out.acks.push((seq, sent, acked)),
                        RecordResult::Refused { retryable: true, .. } => {
                            out.busy += 1;
                            resend.push_back(i);
                        }
                        other => panic!("the edge refused a produce: {other:?}"),
                    }
                }
            }
            Response::Error { retryable: true, .. } => {
                out.busy += take.len() as u64;
                resend.extend(take);
            }
            other => panic!("the edge refused a produce: {other:?}"),
        }
    }
    out
}

/// Produces over HTTP: JSON batches of `load.batch` records (values as JSON strings), one
/// request at a time on a keep-alive connection.
fn produce_http(addr: SocketAddr, load: Load, t0: Instant) -> Produced {
    let stream = TcpStream::connect(addr).expect("the edge's HTTP port");
    stream.set_nodelay(true).expect("nodelay");
    let mut rd = BufReader::new(stream.try_clone().expect("a second handle"));
    let mut wr = stream;
    let mut out = Produced { acks: Vec::with_capacity(load.records as usize), busy: 0 };
    let mut resend: VecDeque<u64> = VecDeque::new();
    let mut next = 0u64;
    let pool = outpost_bench::telemetry_values(1024, load.size);
    let value = |i| load.value(&pool, i);
    let mut body = Vec::new();
    while (out.acks.len() as u64) < load.records {
        let take = load.next_request(&mut resend, &mut next);
        body.clear();
        body.extend_from_slice(b"{\"records\":[");
        for (n, &i) in take.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            let text = std::str::from_utf8(value(i)).expect("telemetry values are UTF-8");
            body.extend_from_slice(b"{\"value\":");
            serde_json::to_writer(&mut body, text).expect("a string serializes");
            body.push(b'}');
        }
        body.extend_from_slice(b"]}");
        let sent = t0.elapsed().as_nanos() as u64;
        let head = format!(
            "POST /v1/topics/{TOPIC}/records HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        wr.write_all(head.as_bytes()).and_then(|()| wr.write_all(&body)).expect("a request written");
        let answer = read_http_body(&mut rd);
        let acked = t0.elapsed().as_nanos() as u64;
        let v: serde_json::Value = serde_json::from_slice(&answer).expect("a JSON answer");
        let results = v["results"].as_array().unwrap_or_else(|| panic!("the edge refused a batch: {v}"));
        for (i, r) in take.into_iter().zip(results) {
            match (r["offset"].as_u64(), r["retryable"].as_bool()) {
                (Some(seq), _) => out.acks.push((seq, sent, acked)),
                (None, Some(true)) => {
                    out.busy += 1;
                    resend.push_back(i);
                }
                _ => panic!("the edge refused a produce: {r}"),
            }
        }
    }
    out
}

/// The body of the next HTTP response (by its Content-Length).
fn read_http_body(rd: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut length = None;
    let mut line = String::new();
    loop {
        line.clear();
        rd.read_line(&mut line).expect("a response head");
        assert!(!line.is_empty(), "the edge closed the connection");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, v)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = vec![0u8; length.expect("a Content-Length")];
    rd.read_exact(&mut body).expect("a response body");
    body
}

/// Reads the gateway's copy of the topic until it holds `records` distinct records:
/// per record, its sequence at the edge and when it was first seen (nanoseconds since t0).
/// The resolution of "seen" is one fetch round trip.
fn consume(addr: SocketAddr, records: u64, t0: Instant, deadline: Duration) -> (Vec<u64>, u64) {
    let mut c = loop {
        match Client::connect(addr) {
            Ok(c) => break c,
            Err(_) if t0.elapsed() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("the gateway's binary port: {e}"),
        }
    };
    let mut seen = vec![u64::MAX; records as usize];
    let (mut distinct, mut duplicates, mut from) = (0u64, 0u64, 0u64);
    while distinct < records {
        assert!(t0.elapsed() < deadline, "the gateway holds {distinct} of {records} records after {deadline:?}");
        let r = c.fetch(TOPIC, from, 10_000, 1 << 20).expect("fetch at the gateway");
        let now = t0.elapsed().as_nanos() as u64;
        if r.records.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
        }
        for rec in r.records {
            let slot = seen
                .get_mut(rec.origin_seq as usize)
                .unwrap_or_else(|| panic!("origin_seq {} out of range", rec.origin_seq));
            if *slot == u64::MAX {
                *slot = now;
                distinct += 1;
            } else {
                duplicates += 1;
            }
        }
        from = r.next;
    }
    (seen, duplicates)
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize] as f64 / 1000.0
}

fn main() {
    let o = options().unwrap_or_else(|e| {
        eprintln!("bench-e2e: {e}\n{USAGE}");
        std::process::exit(2);
    });
    let dir = o.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("bench-e2e.{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    let [listen, g_http, g_bin, e_http, e_bin] = [(); 5].map(|_| free_addr());
    let storage = (o.records * (o.size as u64 + 64) * 2).max(1 << 30);
    let topic = format!("[[topics]]\nname = \"{TOPIC}\"\nsync = \"up\"\nretention = \"{storage} B\"\n");
    let (edge_topic, gateway_topic) = if o.encrypt {
        let keys = dir.join("events.keys");
        outpost_command(&o, &["keys", "add", "--file", &keys.display().to_string()]);
        (format!("{topic}encrypt = true\nkeys = \"{}\"\n", keys.display()), format!("{topic}encrypt = true\n"))
    } else {
        (topic.clone(), topic)
    };
    let (edge_tls, gateway_tls) = if o.tls {
        let (ca, certs) = (dir.join("ca"), dir.join("certs"));
        outpost_command(&o, &["certs", "ca", "--dir", &ca.display().to_string()]);
        for name in ["edge", "gateway"] {
            let (ca, out) = (ca.display().to_string(), certs.display().to_string());
            outpost_command(&o, &["certs", "issue", "--dir", &ca, "--name", name, "--out", &out]);
        }
        let table = |name: &str| {
            format!(
                "\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                ca.join("ca.pem").display(),
                certs.join(format!("{name}.pem")).display(),
                certs.join(format!("{name}.key")).display()
            )
        };
        (table("edge"), table("gateway"))
    } else {
        (String::new(), String::new())
    };
    let gateway_config = format!(
        "[node]\nname = \"gateway\"\ndata_dir = \"{}\"\n\n[api]\nhttp = \"{g_http}\"\nbinary = \"{g_bin}\"\n\n\
         [gateway]\nlisten = \"{listen}\"\n\n[gateway.tokens]\n\"edge\" = \"bench\"\n\n\
         [resources]\nmax_storage = \"{} B\"\n\n{gateway_topic}{gateway_tls}",
        dir.join("gateway-data").display(),
        storage * 2
    );
    let edge_config = format!(
        "[node]\nname = \"edge\"\ndata_dir = \"{}\"\n\n[api]\nhttp = \"{e_http}\"\nbinary = \"{e_bin}\"\n\n\
         [cloud]\ngateway = \"{listen}\"\ntoken = \"bench\"\n\n[sync]\nbackoff_min = \"100ms\"\nbackoff_max = \"500ms\"\n\n\
         [resources]\nmax_memory = \"{}\"\nmax_storage = \"{storage} B\"\n\n{edge_topic}{edge_tls}",
        dir.join("edge-data").display(),
        o.edge_memory
    );
    println!(
        "outpost_e2e mode={} shell={} protocol={} records={} size={} producers={} window={} batch={} tls={} encrypt={} \
         pin_edge={} dir={}",
        if o.offline { "offline" } else { "live" },
        o.shell,
        if o.http { "http" } else { "binary" },
        o.records,
        o.size,
        o.producers,
        o.window,
        o.batch,
        o.tls,
        o.encrypt,
        o.pin_edge.as_deref().unwrap_or("none"),
        dir.display()
    );
    let start_gateway = || Daemon::start(&o, &dir, "gateway", &gateway_config, g_bin);
    let mut gateway = (!o.offline).then(start_gateway);
    let edge = Daemon::start(&o, &dir, "edge", &edge_config, e_bin);

    let t0 = Instant::now();
    let deadline = Duration::from_secs(600);
    let consumer = (!o.offline).then(|| {
        let (addr, n) = (g_bin, o.records);
        std::thread::spawn(move || consume(addr, n, t0, deadline))
    });
    let producers: Vec<_> = (0..o.producers)
        .map(|p| {
            let n = o.records / o.producers + u64::from(p < o.records % o.producers);
            let load = Load { producer: p, records: n, size: o.size, window: o.window, batch: o.batch };
            let http = o.http;
            std::thread::spawn(move || if http { produce_http(e_http, load, t0) } else { produce(e_bin, load, t0) })
        })
        .collect();
    let produced: Vec<Produced> = producers.into_iter().map(|h| h.join().expect("a producer")).collect();
    let produce_end = produced.iter().flat_map(|p| p.acks.iter().map(|a| a.2)).max().unwrap_or(0);
    let mut send_at = vec![u64::MAX; o.records as usize];
    let mut ack_latency: Vec<u64> = Vec::with_capacity(o.records as usize);
    for (seq, sent, acked) in produced.iter().flat_map(|p| p.acks.iter().copied()) {
        *send_at.get_mut(seq as usize).unwrap_or_else(|| panic!("the edge acknowledged seq {seq} of a fresh log")) =
            sent;
        ack_latency.push(acked - sent);
    }
    ack_latency.sort_unstable();
    let secs = produce_end as f64 / 1e9;
    let busy: u64 = produced.iter().map(|p| p.busy).sum();
    let mb = (o.records * o.size as u64) as f64 / 1e6;
    println!(
        "{}: records_per_s={:.0} mb_per_s={:.1} secs={secs:.3} busy_refusals={busy}",
        if o.offline { "ingest" } else { "produce" },
        o.records as f64 / secs,
        mb / secs
    );
    println!(
        "produce_to_ack_us p50={:.0} p99={:.0} p999={:.0} max={:.0}",
        percentile(&ack_latency, 0.5),
        percentile(&ack_latency, 0.99),
        percentile(&ack_latency, 0.999),
        percentile(&ack_latency, 1.0)
    );
    let (edge_rss, edge_cpu_ingest) = edge.usage();

    let (seen, duplicates, drain_start) = match consumer {
        Some(c) => {
            let (seen, dups) = c.join().expect("the consumer");
            (seen, dups, 0)
        }
        None => {
            let drain_start = t0.elapsed().as_nanos() as u64;
            gateway = Some(start_gateway());
            let _ = Command::new(&o.outpost).args(["sync", "now", "--addr", &e_http.to_string()]).output();
            let (seen, dups) = consume(g_bin, o.records, t0, deadline);
            (seen, dups, drain_start)
        }
    };
    let last_stored = seen.iter().copied().max().unwrap_or(0);
    if o.offline {
        let secs = (last_stored - drain_start) as f64 / 1e9;
        println!(
            "drain: records_per_s={:.0} mb_per_s={:.1} secs={secs:.3} (gateway start → all stored at the gateway)",
            o.records as f64 / secs,
            mb / secs
        );
    } else {
        let mut stored_latency: Vec<u64> = seen.iter().zip(&send_at).map(|(s, a)| s.saturating_sub(*a)).collect();
        stored_latency.sort_unstable();
        println!(
            "produce_to_stored_at_gateway_us p50={:.0} p99={:.0} (resolution: one fetch round trip)",
            percentile(&stored_latency, 0.5),
            percentile(&stored_latency, 0.99)
        );
        let secs = last_stored as f64 / 1e9;
        println!(
            "end_to_end: records_per_s={:.0} mb_per_s={:.1} secs={secs:.3} (first produce → all stored at the gateway)",
            o.records as f64 / secs,
            mb / secs
        );
    }
    let gateway = gateway.expect("started");
    let (edge_rss_end, edge_cpu) = edge.usage();
    let (gw_rss, gw_cpu) = gateway.usage();
    println!(
        "edge: peak_rss_mib={:.1} cpu_s={edge_cpu:.2} ingest_cpu_s={edge_cpu_ingest:.2} records_per_ingest_cpu_s={:.0}",
        edge_rss.max(edge_rss_end) as f64 / (1 << 20) as f64,
        o.records as f64 / edge_cpu_ingest.max(0.01)
    );
    println!("gateway: peak_rss_mib={:.1} cpu_s={gw_cpu:.2}", gw_rss as f64 / (1 << 20) as f64);
    let lost = seen.iter().filter(|s| **s == u64::MAX).count();
    println!("check: lost={lost} duplicates={duplicates}");
    drop((edge, gateway));
    if o.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if lost > 0 {
        std::process::exit(1);
    }
}

//! `outpost`: the edge daemon, the gateway and the operator CLI.

use clap::{Parser, Subcommand};
use outpost::cli::{self, View};
use outpost::config::{self, LogFormat, Settings};
use outpost_core::config::Role;
use outpost_core::types::Bytes;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "outpost", version, about = "Offline-first data engine for edge devices")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// The daemon's HTTP API as HOST:PORT, e.g. localhost:7480 (default: api.http of
    /// --config, or of ./outpost.toml, or 127.0.0.1:7480).
    #[arg(long)]
    addr: Option<String>,
    /// Read the daemon's address from this config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Ask a gateway (its default address, 127.0.0.1:7490) rather than an edge.
    #[arg(long)]
    gateway: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The daemon's api.admin_token (default: $OUTPOST_TOKEN, else api.admin_token of
    /// --config or ./outpost.toml).
    #[arg(long)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge daemon (config: --config, else ./outpost.toml, else defaults).
    Run {
        /// The config file (default: ./outpost.toml if it exists, else the defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// `tokio` (the default build's) or `lite` (one thread, no async runtime).
        #[arg(long, value_enum, default_value_t = Shell::default())]
        shell: Shell,
    },
    /// Run the gateway that edges sync to.
    Gateway {
        /// The config file (default: ./outpost.toml if it exists, else the defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Accept edges whose names are not in gateway.tokens without a token
        /// (gateway.open = true): for a laptop or a trusted network only.
        #[arg(long)]
        open: bool,
    },
    /// Check a config file and print what it sets, without starting anything.
    Check {
        /// The config file (default: ./outpost.toml if it exists, else the defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Read it as a gateway's file.
        #[arg(long)]
        gateway: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Sync to the gateway: status, or pause / resume / now.
    Sync {
        #[command(subcommand)]
        action: SyncAction,
    },
    /// Per topic: records not yet at the gateway, their bytes, the oldest one's age.
    Queue(Target),
    /// Memory and storage against their limits.
    Resources(Target),
    /// healthy / degraded / unhealthy, with reasons (exit code 0 / 1 / 2).
    Health(Target),
    /// Conflicts the keyed topics' merges resolved: key, competing versions, winner.
    Conflicts {
        #[command(flatten)]
        target: Target,
        /// Only this keyed topic (default: every topic with a conflict strategy).
        #[arg(long)]
        topic: Option<String>,
        /// The newest conflicts to show per topic.
        #[arg(long, default_value_t = outpost::keyed::CONFLICTS_DEFAULT)]
        max: usize,
    },
    /// The site cluster view (today: this node's sync links).
    Mesh {
        #[command(subcommand)]
        action: MeshAction,
    },
    /// End-to-end keys of encrypted topics (`encrypt = true`, docs/SECURITY.md).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The fleet's certificates for TLS between nodes: a CA, a node's certificate, a
    /// revocation (docs/SECURITY.md).
    #[cfg(feature = "tokio-shell")]
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Add a new random key to a topic's key file (created, mode 0600, if missing), with
    /// the next id: it seals from the next start of each producer given the file.
    Add {
        /// The key file (a topic's `keys`).
        #[arg(long)]
        file: PathBuf,
    },
}

#[cfg(feature = "tokio-shell")]
#[derive(Subcommand)]
enum CertsAction {
    /// Create a fleet CA: ca.pem (every node's tls.ca), ca.key (keep it off the devices),
    /// issued.tsv and crl.pem (every gateway's tls.crl).
    Ca {
        /// The CA's directory (created; refused if it holds a CA already).
        #[arg(long)]
        dir: PathBuf,
        /// The fleet's name, in the CA's subject.
        #[arg(long, default_value = "outpost")]
        fleet: String,
        /// Days the CA is valid for.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a node's certificate and key (NAME.pem, NAME.key) for its node.name.
    Issue {
        /// The CA's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node's node.name: the only name the certificate speaks for.
        #[arg(long)]
        name: String,
        /// Days the certificate is valid for.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write NAME.pem and NAME.key.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Revoke every certificate issued for a node and write the CA's new crl.pem.
    Revoke {
        /// The CA's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node whose certificates are revoked.
        #[arg(long)]
        name: String,
    },
}

#[cfg(feature = "tokio-shell")]
fn certs(action: CertsAction) -> ExitCode {
    use outpost::certs;
    let done = match action {
        CertsAction::Ca { dir, fleet, days } => certs::create_ca(&dir, &fleet, days).map(|files| {
            files.iter().for_each(|f| println!("wrote {}", f.display()));
            println!("next: `outpost certs issue --dir {} --name NODE` for each node", dir.display());
        }),
        CertsAction::Issue { dir, name, days, out } => certs::issue(&dir, &name, days, &out).map(|files| {
            files.iter().for_each(|f| println!("wrote {}", f.display()));
            println!("on {name}: tls.cert and tls.key are these files, tls.ca is {}", dir.join("ca.pem").display());
        }),
        CertsAction::Revoke { dir, name } => certs::revoke(&dir, &name).map(|(n, crl)| {
            println!("revoked {n} certificate(s) of {name}; wrote {}", crl.display());
            println!("copy it to every gateway's tls.crl and send them SIGHUP: linked edges it revokes are cut off");
        }),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost certs: {e}");
            ExitCode::from(2)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Shell {
    Tokio,
    Lite,
}

impl Default for Shell {
    fn default() -> Shell {
        if cfg!(feature = "tokio-shell") {
            Shell::Tokio
        } else {
            Shell::Lite
        }
    }
}

#[derive(Subcommand)]
enum SyncAction {
    /// The sync session, the link to the gateway and per topic what is durable and acknowledged.
    Status(Target),
    /// Sync now: connect at once and send partial batches (also resumes).
    Now(Target),
    /// Stop sending until resumed (not kept across a restart).
    Pause(Target),
    /// Send again after a pause.
    Resume(Target),
}

#[derive(Subcommand)]
enum MeshAction {
    /// This node's links to its peers (today: the sync link to the gateway, or the edges).
    Peers(Target),
}

#[cfg(feature = "tokio-shell")]
fn init_logging(s: &Settings) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("OUTPOST_LOG").unwrap_or_else(|_| EnvFilter::new(&s.logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match s.logging.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// The small build has no filter directives and no JSON: one level, human lines.
#[cfg(not(feature = "tokio-shell"))]
fn init_logging(s: &Settings) {
    use std::io::IsTerminal;
    let level = std::env::var("OUTPOST_LOG").unwrap_or_else(|_| s.logging.level.clone());
    let level: tracing_subscriber::filter::LevelFilter =
        level.parse().unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    if s.logging.format == LogFormat::Json {
        tracing::warn!("logging.format = \"json\" needs the default build; logging human lines");
    }
}

fn serve(config: Option<PathBuf>, role: Role, shell: Shell, open: bool) -> ExitCode {
    let mut settings = match config::load(config.as_deref(), role) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outpost: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(g) = &mut settings.gateway {
        g.open |= open;
    }
    init_logging(&settings);
    // A daemon with a part that panicked (a task, a thread) must not go on without it,
    // taking writes it will never sync: it stops, and its supervisor restarts it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(%info, "a part of the daemon panicked; stopping so that it is restarted whole");
        default_hook(info);
        std::process::abort();
    }));
    match outpost::store::fit_to_device(&mut settings) {
        Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("outpost: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match shell {
        Shell::Lite => outpost::lite::run(settings, &std::sync::atomic::AtomicBool::new(false)),
        Shell::Tokio => run_tokio(settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("outpost: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "tokio-shell")]
fn run_tokio(settings: Settings) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime can be built");
    rt.block_on(outpost::shell::run(settings, outpost::shell::signals()))
}

#[cfg(not(feature = "tokio-shell"))]
fn run_tokio(_: Settings) -> Result<(), String> {
    Err("this is the edge-lite build: it has only `outpost run` with the lite shell; \
         build with default features for the tokio shell and the gateway"
        .into())
}

fn admin_addr(http: SocketAddr) -> SocketAddr {
    if http.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), http.port())
    } else {
        http
    }
}

/// The daemon a command asks: its address and token, from the flags, else the environment
/// and the config file.
fn daemon_of(t: &Target) -> Result<cli::Daemon, String> {
    let flag_token = t.token.clone().or_else(|| std::env::var("OUTPOST_TOKEN").ok().filter(|v| !v.is_empty()));
    if let Some(a) = &t.addr {
        let mut found = a
            .to_socket_addrs()
            .map_err(|e| format!("--addr {a}: {e}; expected HOST:PORT, e.g. localhost:7480 or 10.0.0.5:7480"))?;
        let addr = found.next().ok_or_else(|| format!("--addr {a}: the name has no address"))?;
        let token = flag_token.or_else(|| {
            let role = if t.gateway { Role::Gateway } else { Role::Edge };
            let file = t.config.as_deref()?;
            config::load(Some(file), role).ok()?.api_auth.admin_token().map(str::to_owned)
        });
        return Ok(cli::Daemon { addr, token });
    }
    let role = if t.gateway { Role::Gateway } else { Role::Edge };
    let s = config::load(t.config.as_deref(), role).map_err(|e| e.to_string())?;
    let token = flag_token.or_else(|| s.api_auth.admin_token().map(str::to_owned));
    Ok(cli::Daemon { addr: admin_addr(s.http), token })
}

fn ask(t: &Target, view: View) -> ExitCode {
    let run = || -> Result<i32, String> {
        let daemon = daemon_of(t)?;
        cli::show(&daemon, view, t.json).map_err(|e| e.to_string())
    };
    match run() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("outpost: {e}");
            ExitCode::from(3)
        }
    }
}

fn command(t: &Target, what: &str) -> ExitCode {
    let run = || -> Result<serde_json::Value, String> {
        let daemon = daemon_of(t)?;
        cli::sync_command(&daemon, what).map_err(|e| e.to_string())
    };
    match run() {
        Ok(answer) => {
            if t.json {
                println!("{answer}");
            } else {
                println!("sync {what}: done");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outpost: {e}");
            ExitCode::from(3)
        }
    }
}

/// `outpost check`: what the file sets, as a table.
fn print_check(s: &Settings) {
    let from = s.path.as_ref().map_or("defaults (no config file)".to_string(), |p| p.display().to_string());
    println!("{from}: valid");
    println!("node      {} (id {}), {:?}", s.node_name, s.node.id.0, s.node.role);
    println!("data_dir  {}", s.data_dir.display());
    println!("api       http {}  binary {}", s.http, s.binary);
    if let Some(c) = &s.cloud {
        println!("gateway   {} at {}", c.gateway_name, c.gateway_addr);
    }
    if let Some(g) = &s.gateway {
        let open = if g.open { ", open to any other edge" } else { "" };
        println!("listen    {} ({} edge tokens{open})", g.listen, g.tokens.len());
    }
    println!("links     {}", links_summary(&s.links));
    println!(
        "budgets   max_memory {} (the core {}, the shell {}), max_storage {}",
        Bytes(s.max_memory),
        Bytes(s.node.resources.memory_bytes_max),
        Bytes(s.shell.reserve),
        Bytes(s.node.resources.storage_bytes_max)
    );
    for t in &s.node.topics {
        let sealed = match s.encrypted.get(&t.name) {
            Some(Some(keys)) => format!(" encrypted, sealed here with {}", keys.display()),
            Some(None) => " encrypted, sealed elsewhere (no keys here)".to_owned(),
            None => String::new(),
        };
        let keyed = t.keyed.as_ref().map_or(String::new(), |k| {
            format!(
                " conflict {} (state {}, conflict log {})",
                k.strategy,
                Bytes(k.limits.state_bytes_max),
                Bytes(k.limits.conflict_log_bytes_max)
            )
        });
        println!(
            "topic     {} sync {:?} priority {} eviction {}{keyed}{sealed}",
            t.name,
            t.sync,
            t.priority,
            t.eviction.name()
        );
    }
}

fn links_summary(links: &config::LinkSecurity) -> String {
    match links {
        config::LinkSecurity::Plain { explicit: true } => "clear text (tls.plaintext: a test network only)".into(),
        config::LinkSecurity::Plain { explicit: false } => "clear text (on this host only)".into(),
        config::LinkSecurity::Tls(f) => format!(
            "TLS 1.3, CA {}{}{}",
            f.ca.display(),
            f.identity.as_ref().map_or(", no certificate (cloud.token authenticates)".into(), |(c, _)| format!(
                ", certificate {}",
                c.display()
            )),
            f.crl.as_ref().map_or(String::new(), |c| format!(", revocations {}", c.display()))
        ),
    }
}

/// `outpost check --json`: the same, for scripts.
fn check_json(s: &Settings) -> serde_json::Value {
    let role = if s.node.role == Role::Edge { "edge" } else { "gateway" };
    serde_json::json!({
        "valid": true,
        "file": s.path.as_ref().map(|p| p.display().to_string()),
        "node": s.node_name,
        "id": s.node.id.0,
        "role": role,
        "data_dir": s.data_dir.display().to_string(),
        "http": s.http.to_string(),
        "binary": s.binary.to_string(),
        "gateway": s.cloud.as_ref().map(|c| serde_json::json!({ "name": c.gateway_name, "addr": c.gateway_addr })),
        "listen": s.gateway.as_ref().map(|g| serde_json::json!({
            "addr": g.listen.to_string(), "edge_tokens": g.tokens.len(), "open": g.open,
        })),
        "links": match &s.links {
            config::LinkSecurity::Plain { explicit } => serde_json::json!({ "tls": false, "plaintext": explicit }),
            config::LinkSecurity::Tls(f) => serde_json::json!({
                "tls": true, "ca": f.ca, "cert": f.identity.as_ref().map(|(c, _)| c), "crl": f.crl,
            }),
        },
        "max_memory": s.max_memory,
        "core_memory": s.node.resources.memory_bytes_max,
        "shell_memory": s.shell.reserve,
        "max_storage": s.node.resources.storage_bytes_max,
        "topics": s.node.topics.iter().map(|t| serde_json::json!({
            "name": t.name, "sync": format!("{:?}", t.sync), "priority": t.priority, "eviction": t.eviction.name(),
            "keyed": t.keyed.as_ref().map(|k| serde_json::json!({
                "conflict": k.strategy.name(),
                "keyed_state_max": k.limits.state_bytes_max,
                "conflict_log_max": k.limits.conflict_log_bytes_max,
            })),
        })).collect::<Vec<_>>(),
    })
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config, shell } => serve(config, Role::Edge, shell, false),
        Command::Gateway { config, open } => serve(config, Role::Gateway, Shell::Tokio, open),
        Command::Check { config, gateway, json } => {
            let role = if gateway { Role::Gateway } else { Role::Edge };
            // What `run` would start with: the file, then fitted to the device it names.
            let loaded = config::load(config.as_deref(), role).map_err(|e| e.to_string()).and_then(|mut s| {
                let warnings = outpost::store::fit_to_device(&mut s)?;
                Ok((s, warnings))
            });
            match loaded {
                Ok((s, warnings)) if json => {
                    let mut v = check_json(&s);
                    v["warnings"] = serde_json::json!(warnings);
                    println!("{}", serde_json::to_string_pretty(&v).expect("JSON values serialize"));
                    ExitCode::SUCCESS
                }
                Ok((s, warnings)) => {
                    print_check(&s);
                    for w in warnings {
                        println!("warning   {w}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("outpost: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Sync { action } => match action {
            SyncAction::Status(t) => ask(&t, View::Sync),
            SyncAction::Now(t) => command(&t, "now"),
            SyncAction::Pause(t) => command(&t, "pause"),
            SyncAction::Resume(t) => command(&t, "resume"),
        },
        Command::Queue(t) => ask(&t, View::Queue),
        Command::Resources(t) => ask(&t, View::Resources),
        Command::Health(t) => ask(&t, View::Health),
        Command::Conflicts { target, topic, max } => {
            let run = || -> Result<i32, String> {
                let daemon = daemon_of(&target)?;
                cli::conflicts(&daemon, topic.as_deref(), max, target.json).map_err(|e| e.to_string())
            };
            match run() {
                Ok(code) => ExitCode::from(code as u8),
                Err(e) => {
                    eprintln!("outpost: {e}");
                    ExitCode::from(3)
                }
            }
        }
        Command::Mesh { action: MeshAction::Peers(t) } => ask(&t, View::Peers),
        #[cfg(feature = "tokio-shell")]
        Command::Certs { action } => certs(action),
        Command::Keys { action: KeysAction::Add { file } } => match outpost::e2e::add_key(&file) {
            Ok(id) => {
                println!(
                    "added key {id} to {}; copy the file to every producer and consumer of the topic",
                    file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("outpost keys: {e}");
                ExitCode::from(2)
            }
        },
    }
}

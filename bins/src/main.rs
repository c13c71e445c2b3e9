//! `outpost`: the edge daemon, the gateway and the operator CLI.

use clap::{Parser, Subcommand};
use outpost::cli::{self, View};
use outpost::config::{self, LogFormat, Settings};
use outpost_core::config::Role;
use outpost_core::resources::Bytes;
use std::net::SocketAddr;
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
    /// The daemon's HTTP API (default: api.http of --config, or of ./outpost.toml, or 127.0.0.1:7480).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Read the daemon's address from this config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Ask a gateway (its default address, 127.0.0.1:7490) rather than an edge.
    #[arg(long)]
    gateway: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge daemon (config: --config, else ./outpost.toml, else defaults).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        /// `tokio` (the default build's) or `lite` (one thread, no async runtime).
        #[arg(long, value_enum, default_value_t = Shell::default())]
        shell: Shell,
    },
    /// Run the gateway that edges sync to.
    Gateway {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a config file and print what it sets, without starting anything.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        gateway: bool,
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
    /// The site cluster view (today: this node's sync links).
    Mesh {
        #[command(subcommand)]
        action: MeshAction,
    },
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
    Status(Target),
    /// Sync now: connect at once and send partial batches (also resumes).
    Now(Target),
    /// Stop sending until resumed (not kept across a restart).
    Pause(Target),
    Resume(Target),
}

#[derive(Subcommand)]
enum MeshAction {
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

fn serve(config: Option<PathBuf>, role: Role, shell: Shell) -> ExitCode {
    let settings = match config::load(config.as_deref(), role) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("outpost: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings);
    let mut settings = settings;
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

fn addr_of(t: &Target) -> Result<SocketAddr, String> {
    if let Some(a) = t.addr {
        return Ok(a);
    }
    let role = if t.gateway { Role::Gateway } else { Role::Edge };
    let s = config::load(t.config.as_deref(), role).map_err(|e| e.to_string())?;
    Ok(admin_addr(s.http))
}

fn ask(t: &Target, view: View) -> ExitCode {
    let run = || -> Result<i32, String> {
        let addr = addr_of(t)?;
        cli::show(addr, view, t.json).map_err(|e| e.to_string())
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
    let run = || -> Result<(), String> {
        let addr = addr_of(t)?;
        cli::sync_command(addr, what).map_err(|e| e.to_string())
    };
    match run() {
        Ok(()) => {
            println!("sync {what}: done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("outpost: {e}");
            ExitCode::from(3)
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config, shell } => serve(config, Role::Edge, shell),
        Command::Gateway { config } => serve(config, Role::Gateway, Shell::Tokio),
        Command::Check { config, gateway } => {
            let role = if gateway { Role::Gateway } else { Role::Edge };
            match config::load(config.as_deref(), role) {
                Ok(s) => {
                    let from =
                        s.path.as_ref().map_or("defaults (no config file)".to_string(), |p| p.display().to_string());
                    println!("{from}: valid");
                    println!("node      {} (id {}), {:?}", s.node_name, s.node.id.0, s.node.role);
                    println!("data_dir  {}", s.data_dir.display());
                    println!("api       http {}  binary {}", s.http, s.binary);
                    if let Some(c) = &s.cloud {
                        println!("gateway   {} at {}", c.gateway_name, c.gateway_addr);
                    }
                    if let Some(g) = &s.gateway {
                        println!("listen    {} ({} edge tokens)", g.listen, g.tokens.len());
                    }
                    println!(
                        "budgets   max_memory {} (the core {}, the shell {}), max_storage {}",
                        Bytes(s.max_memory),
                        Bytes(s.node.resources.memory_bytes_max),
                        Bytes(s.shell.reserve),
                        Bytes(s.node.resources.storage_bytes_max)
                    );
                    for t in &s.node.topics {
                        println!(
                            "topic     {} sync {:?} priority {} eviction {}",
                            t.name,
                            t.sync,
                            t.priority,
                            t.eviction.name()
                        );
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
        Command::Mesh { action: MeshAction::Peers(t) } => ask(&t, View::Peers),
    }
}

//! The configuration file of the `outpost` binary (`outpost.toml`): reading it, filling in
//! what it leaves out, sizing the core's limits to the device's budgets, and reporting each
//! mistake as one line with the file, the line and the field to change.
//!
//! A file is read in two steps, as scenario files are (`outpost_sim::scenario`). Serde reads
//! the TOML into raw structs that mirror the file and refuse unknown keys; [`parse`] then
//! checks names, sizes, durations and addresses and builds the core's [`NodeConfig`] in a
//! fixed order: the defaults of the role, `fit_to_budgets` for the memory and storage
//! budgets, every limit the file sets explicitly (the file beats the fit), and last
//! `NodeConfig::validate`. The core names its own fields in a validation error; `LIMITS`
//! maps them back to the file's, so the user is pointed at a line they can edit.
//!
//! docs/OPERATIONS.md (Configuration) is the user-facing reference of this format; keep the
//! two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::limits::ShellBudget;
use outpost_core::config::DEFAULT_PLACEMENT_TOML;
use outpost_core::config::{
    ConfigError, Eviction, KeyedTopic, NodeConfig, PlacementTable, Role, SyncDirection, TopicConfig,
};
use outpost_core::keyed::{MergeFn, Strategy};
use outpost_core::resources::{fit_to_budgets, fit_write_buffer_to_storage};
use outpost_core::types::{Bytes, BytesParseError};
use outpost_core::types::{Duration, NodeId};
use serde::de::{self, Visitor};
use serde::Deserialize;
use toml_edit::{Item, TableLike, Value};

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "outpost.toml";

/// Longest node name: names appear in logs, metrics and the gateway's token table.
const NAME_LEN_MAX: usize = 64;
/// Where Linux keeps this machine's hostname, the default name of an edge.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";
/// An edge's name when the machine has no readable hostname.
const EDGE_NAME_FALLBACK: &str = "outpost-edge";
/// A gateway's name, and the name an edge expects of its gateway, when the file gives none.
const GATEWAY_NAME_DEFAULT: &str = "gateway";
/// The one topic of a file that names none: what an edge sends and a gateway accepts.
const DEFAULT_TOPIC: &str = "events";
/// Where an edge finds its gateway, and where a gateway listens, by default.
const GATEWAY_ADDR_DEFAULT: SocketAddr = loopback(7400);
const LOG_LEVEL_DEFAULT: &str = "info";
/// The shortest `api.token` and `api.admin_token`.
const API_TOKEN_LEN_MIN: usize = 16;

const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

// ---------------------------------------------------------------------------------------
// What the shells get
// ---------------------------------------------------------------------------------------

/// A loaded configuration. `node` has passed `NodeConfig::validate`, so the shell can start
/// a `Node` with it as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The file read, or None when defaults were used (no file).
    pub path: Option<PathBuf>,
    /// The core's config, with `role` set from the command (edge for `outpost run`,
    /// gateway for `outpost gateway`), `fit_to_budgets` applied, explicit overrides applied
    /// after it, and `validate()` passed.
    pub node: NodeConfig,
    /// The node's name as written (or the default), and `node.id == node_id_of(&name)`.
    pub node_name: String,
    /// Where the node keeps its segments and meta log; relative to the working directory
    /// when relative.
    pub data_dir: PathBuf,
    /// Free text naming where the device is (`Store #001`), for operators.
    pub location: Option<String>,
    /// The application HTTP API (and /metrics, /health, admin endpoints).
    pub http: SocketAddr,
    /// The application binary TCP protocol.
    pub binary: SocketAddr,
    /// Some on an edge, None on a gateway.
    pub cloud: Option<CloudSettings>,
    /// Some on a gateway, None on an edge.
    pub gateway: Option<GatewaySettings>,
    /// How this node's links to other nodes (its gateway above, its edges below) are
    /// secured: `[tls]`.
    pub links: LinkSecurity,
    /// The topics with `encrypt = true`, by name, and the key file this node seals with
    /// (`keys`; None: the node stores and forwards sealed values it cannot open).
    pub encrypted: BTreeMap<String, Option<PathBuf>>,
    pub logging: Logging,
    /// `resources.max_memory`: the whole process's budget. The shell keeps its buffers
    /// within `shell.reserve` of it and the core gets the rest (`node.resources`).
    pub max_memory: u64,
    pub shell: ShellBudget,
    /// What the HTTP API refuses of requests web pages make (`api.allowed_origins`,
    /// `api.allowed_hosts`).
    pub browser: crate::api::BrowserGuard,
    /// `api.token` and `api.admin_token`.
    pub api_auth: crate::api::ApiAuth,
}

/// How an edge reaches its gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudSettings {
    /// `host:port`; the host may be a DNS name, resolved by the shell at each connect.
    pub gateway_addr: String,
    /// The gateway's `node.name`: `node.upstream` is `node_id_of` it.
    pub gateway_name: String,
    /// Presented to the gateway, which checks it against its `gateway.tokens`.
    pub token: Option<String>,
}

/// What a gateway listens on and whom it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Where edges connect.
    pub listen: SocketAddr,
    /// Edge name → token.
    pub tokens: BTreeMap<String, String>,
    /// `gateway.open`: accept edges whose names are not in `tokens` without a token (a
    /// trusted network, a laptop). Off, a gateway with no tokens accepts no edge.
    pub open: bool,
    /// `gateway.relays`: the middle tiers below it, by name.
    pub relays: Vec<String>,
}

/// `[tls]`: TLS 1.3 on the links between nodes (docs/SECURITY.md), or clear text.
#[derive(Clone, Debug, PartialEq)]
pub enum LinkSecurity {
    /// Clear text: `tls.plaintext = true`, or a node whose every link stays on this host
    /// (loopback addresses only), where there is no network to read it from.
    Plain {
        /// Whether the file asked for it (a test network) rather than loopback allowing it.
        explicit: bool,
    },
    Tls(TlsFiles),
}

/// The PEM files of `[tls]`, as the file names them (relative paths are taken from the
/// working directory, as `node.data_dir` is). They are read when the node starts, and a
/// gateway reads them again on SIGHUP.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsFiles {
    /// `tls.ca`: the fleet CA's certificate(s), which every peer's certificate must chain to.
    pub ca: PathBuf,
    /// `tls.cert` and `tls.key`: this node's certificate, issued for its `node.name`, and its
    /// private key. A gateway must have them; an edge without them sends `cloud.token`
    /// over a link that authenticates only the gateway.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// `tls.crl`: the fleet's revoked certificates (a gateway's).
    pub crl: Option<PathBuf>,
}

/// The process's own log (not the storage log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logging {
    pub format: LogFormat,
    /// A tracing filter directive (`info`, `outpost=debug,info`), passed through as written.
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event, for a terminal or journald.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Why the configuration could not be loaded. Renders as one line:
/// `edge.toml:12: topics[1].eviction: unknown policy "fifo"; expected one of keep, oldest, priority, lru, compact`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFileError {
    /// The file, or None when the defaults were used (no file): rendered `<defaults>`.
    pub path: Option<PathBuf>,
    /// 1-based line of the offending text; None when the file does not hold it (a value
    /// that came from the defaults, an unreadable file).
    pub line: Option<usize>,
    /// The field as a path in the file (`topics[1].eviction`); empty when the error is
    /// about the whole file (TOML syntax, unreadable).
    pub field: String,
    /// What is wrong and what to change.
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}", path.display())?,
            None => f.write_str("<defaults>")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigFileError {}

/// The identity of the node called `name`: FNV-1a (64-bit) of its UTF-8 bytes.
///
/// The name is the identity of the node's records forever: every record it writes carries
/// this id as its origin, and the gateway keeps each (origin, topic, sequence) once. A
/// renamed device is therefore a new origin that starts its streams again, and two devices
/// given one name are one origin to the gateway, which would keep only one of each pair of
/// records they both numbered. Give every device its own name and never change it.
pub fn node_id_of(name: &str) -> NodeId {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    NodeId(name.bytes().fold(OFFSET_BASIS, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME)))
}

/// Loads the configuration of a node of `role`. With `Some(path)` the file must exist.
/// With None, `./outpost.toml` is read if it exists, else the defaults are used (and
/// `Settings::path` is None).
pub fn load(path: Option<&Path>, role: Role) -> Result<Settings, ConfigFileError> {
    let (file, given) = match path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CONFIG_FILE), false),
    };
    match std::fs::read_to_string(file) {
        Ok(text) => parse(&text, Some(file), role),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !given => parse("", None, role),
        Err(e) => {
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no such file; omit --config to read ./{DEFAULT_CONFIG_FILE}, or the defaults when there is none"
                )
            } else {
                format!("cannot read the file: {e}")
            };
            Err(ConfigFileError { path: Some(file.to_path_buf()), line: None, field: String::new(), message })
        }
    }
}

/// Parses configuration `text` for a node of `role`; `path` names the file in
/// `Settings::path` and in errors (None: the defaults, `text` empty).
pub fn parse(text: &str, path: Option<&Path>, role: Role) -> Result<Settings, ConfigFileError> {
    let places = places(text);
    let error = |line: Option<usize>, field: String, message: String| ConfigFileError {
        path: path.map(Path::to_path_buf),
        line,
        field,
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().filter(|s| !s.is_empty());
        let field = span.as_ref().map(|s| field_at(&places, s)).unwrap_or_default();
        // Syntax errors span several lines ("invalid table header\nexpected `.`, `]`").
        let mut message = plain_types(&e.message().trim().replace('\n', "; "));
        if field.ends_with(".local_topics") {
            message.push_str("; local_topics is a top-level key, so it must come before the first [table] of the file");
        }
        error(span.and_then(|s| line_of(text, s.start)), field, message)
    })?;
    settings(&raw, path, role, &places).map_err(|p| {
        let line = place_of(&places, &p.field).and_then(|place| line_of(text, place.span.start));
        error(line, p.field, p.message)
    })
}

// ---------------------------------------------------------------------------------------
// Raw file structure (serde)
// ---------------------------------------------------------------------------------------

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    api: RawApi,
    cloud: Option<RawCloud>,
    gateway: Option<RawGateway>,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    resources: RawResources,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    topics: Vec<RawTopic>,
    #[serde(default)]
    local_topics: Vec<String>,
    #[serde(default)]
    mesh: RawMesh,
    #[serde(default)]
    logging: RawLogging,
    tls: Option<RawTls>,
    /// Classification -> the zones its records may be held in, over the default table.
    #[serde(default)]
    placement: BTreeMap<String, Vec<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    crl: Option<String>,
    #[serde(default)]
    plaintext: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Option<String>,
    data_dir: Option<String>,
    location: Option<String>,
    zone: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    http: Option<String>,
    binary: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    token: Option<String>,
    admin_token: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    gateway: Option<String>,
    gateway_name: Option<String>,
    token: Option<String>,
    zone: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    listen: Option<String>,
    streams_max: Option<usize>,
    downlinks_max: Option<usize>,
    pending: Option<RawSize>,
    #[serde(default)]
    open: bool,
    #[serde(default)]
    tokens: BTreeMap<String, String>,
    #[serde(default)]
    relays: Vec<String>,
    /// Named lists of edges, for topics' `subscribers` (`"@store-12"`).
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    up_retention: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    batch_records: Option<u32>,
    batch_bytes: Option<RawSize>,
    window: Option<RawSize>,
    bandwidth: Option<RawSize>,
    bandwidth_burst: Option<RawSize>,
    retransmit_timeout: Option<String>,
    session_timeout: Option<String>,
    backoff_min: Option<String>,
    backoff_max: Option<String>,
    keepalive_interval: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    max_memory: Option<RawSize>,
    max_storage: Option<RawSize>,
    compact_index: Option<RawSize>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    segment: Option<RawSize>,
    write_buffer: Option<RawSize>,
    value_max: Option<RawSize>,
    read_chunk: Option<RawSize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: String,
    sync: Option<String>,
    priority: Option<u8>,
    eviction: Option<String>,
    retention: Option<RawSize>,
    retention_age: Option<String>,
    subscribers: Option<Vec<String>>,
    #[serde(default)]
    encrypt: bool,
    keys: Option<String>,
    classification: Option<String>,
    /// Makes the topic keyed: its writes are merged per key by this strategy.
    conflict: Option<String>,
    keyed_state_max: Option<RawSize>,
    conflict_log_max: Option<RawSize>,
    /// A `custom` topic's WebAssembly module, and what one call of it may spend.
    merge: Option<PathBuf>,
    merge_fuel: Option<u64>,
    merge_memory_max: Option<RawSize>,
}

/// Site clusters are not built; the section exists so that a file written for them fails
/// loudly rather than running without what it asked for.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMesh {
    #[serde(default)]
    enabled: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    format: Option<String>,
    level: Option<String>,
}

/// A size as written: `"64MiB"` or a plain byte count (`1000` or `"1000"`).
enum RawSize {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawSizeVisitor)
    }
}

struct RawSizeVisitor;

impl Visitor<'_> for RawSizeVisitor {
    type Value = RawSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"64MiB\", \"256 KiB\" or a byte count")
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawSize, E> {
        Ok(RawSize::Bytes(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
        u64::try_from(v).map(RawSize::Bytes).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawSize, E> {
        Ok(RawSize::Text(v.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------
// Building the settings
// ---------------------------------------------------------------------------------------

/// A mistake before it is placed in the file: `field` is a path in the file.
struct Problem {
    field: String,
    message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { field: field.into(), message: message.into() }
}

fn settings(raw: &RawFile, path: Option<&Path>, role: Role, places: &[Place]) -> Result<Settings, Problem> {
    if raw.mesh.enabled {
        return Err(problem(
            "mesh.enabled",
            "the daemon does not run site clusters (mesh) yet (they run in the simulator); remove [mesh] or set enabled = false",
        ));
    }
    let node_name = node_name(&raw.node, role)?;
    let (data_dir_default, http_default, binary_default) = match role {
        Role::Edge => ("outpost-data", loopback(7480), loopback(7481)),
        Role::Gateway => ("outpost-gateway-data", loopback(7490), loopback(7491)),
    };
    let data_dir = match raw.node.data_dir.as_deref() {
        Some("") => return Err(problem("node.data_dir", "empty; expected a directory, e.g. \"/var/lib/outpost\"")),
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(data_dir_default),
    };
    let http = socket_addr("api.http", raw.api.http.as_deref(), http_default)?;
    let binary = socket_addr("api.binary", raw.api.binary.as_deref(), binary_default)?;
    let cloud = cloud(raw.cloud.as_ref(), role, &node_name)?;
    let gateway = gateway(raw.gateway.as_ref(), role)?;
    let mut listeners = vec![("api.http", http), ("api.binary", binary)];
    if let Some(g) = &gateway {
        listeners.push(("gateway.listen", g.listen));
    }
    check_listeners(&listeners, places)?;
    let (node, max_memory, shell) = node_config(raw, role, &node_name, cloud.as_ref(), places)?;
    check_placement(raw, &node, &node_name, cloud.as_ref())?;
    for (i, origin) in raw.api.allowed_origins.iter().enumerate() {
        let ok = origin.starts_with("http://") || origin.starts_with("https://");
        if !ok || origin.ends_with('/') {
            return Err(problem(
                format!("api.allowed_origins[{i}]"),
                format!("{origin:?} is not an origin; expected a scheme, a host and an optional port, e.g. \"http://dashboard.local:8080\""),
            ));
        }
    }
    let browser = crate::api::BrowserGuard::new(http, &raw.api.allowed_origins, &raw.api.allowed_hosts);
    let api_auth = api_auth(&raw.api, http, binary)?;
    let links = link_security(raw.tls.as_ref(), cloud.as_ref(), gateway.as_ref())?;
    let encrypted = encrypted_topics(raw, role)?;
    Ok(Settings {
        path: path.map(Path::to_path_buf),
        node,
        node_name,
        data_dir,
        location: raw.node.location.clone(),
        http,
        binary,
        cloud,
        gateway,
        links,
        encrypted,
        logging: logging(&raw.logging)?,
        max_memory,
        shell,
        browser,
        api_auth,
    })
}

fn node_name(raw: &RawNode, role: Role) -> Result<String, Problem> {
    if let Some(name) = &raw.name {
        check_name("node.name", name)?;
        return Ok(name.clone());
    }
    if role == Role::Gateway {
        return Ok(GATEWAY_NAME_DEFAULT.to_owned());
    }
    let hostname = std::fs::read_to_string(HOSTNAME_FILE).map(|h| h.trim().to_owned()).unwrap_or_default();
    if hostname.is_empty() {
        return Ok(EDGE_NAME_FALLBACK.to_owned());
    }
    if !is_valid_name(&hostname) {
        return Err(problem(
            "node.name",
            format!(
                "not in the file, and this machine's hostname {hostname:?} is not a valid node name \
                 ({}); set name under [node]",
                name_rule()
            ),
        ));
    }
    Ok(hostname)
}

/// Where this node syncs up to: an edge's gateway (defaults apply), or, for a gateway with
/// `[cloud]`, the tier above it: it is then a middle tier, which relays, and must name the
/// address (its own `gateway.listen` defaults to the same one).
fn cloud(raw: Option<&RawCloud>, role: Role, node_name: &str) -> Result<Option<CloudSettings>, Problem> {
    if role == Role::Gateway {
        match raw {
            None => return Ok(None),
            Some(c) if c.gateway.is_none() => {
                return Err(problem(
                    "cloud",
                    "no gateway: a gateway with [cloud] is a middle tier and relays to the gateway above it; set \
                     cloud.gateway to that gateway's host:port (its gateway.listen), or remove [cloud] to make this \
                     the top gateway",
                ))
            }
            Some(_) => {}
        }
    }
    let defaults = RawCloud::default();
    let raw = raw.unwrap_or(&defaults);
    let gateway_addr = match &raw.gateway {
        Some(text) => host_port("cloud.gateway", text)?,
        None => GATEWAY_ADDR_DEFAULT.to_string(),
    };
    let gateway_name = raw.gateway_name.clone().unwrap_or_else(|| GATEWAY_NAME_DEFAULT.to_owned());
    check_name("cloud.gateway_name", &gateway_name)?;
    if gateway_name == node_name {
        // Point at whichever of the two names the file wrote.
        return Err(match raw.gateway_name {
            Some(_) => problem(
                "cloud.gateway_name",
                format!("{gateway_name:?} is this edge's own name; expected the gateway's node.name"),
            ),
            None => problem(
                "node.name",
                format!("{node_name:?} is the gateway's name (cloud.gateway_name); give the edge another name"),
            ),
        });
    }
    if raw.token.as_deref() == Some("") {
        return Err(problem("cloud.token", "empty; remove it to connect without a token"));
    }
    if let Some(token) = raw.token.as_deref().filter(|t| t.len() > crate::peer::TOKEN_LEN_MAX) {
        return Err(problem(
            "cloud.token",
            format!(
                "{} bytes long; the handshake carries at most {} bytes: use a shorter secret (and the same in the \
                 gateway's gateway.tokens)",
                token.len(),
                crate::peer::TOKEN_LEN_MAX
            ),
        ));
    }
    if let Some(zone) = &raw.zone {
        check_name("cloud.zone", zone)?;
    }
    Ok(Some(CloudSettings { gateway_addr, gateway_name, token: raw.token.clone() }))
}

/// `api.token` and `api.admin_token`: both or neither, different, and required when a
/// port accepts other machines.
fn api_auth(raw: &RawApi, http: SocketAddr, binary: SocketAddr) -> Result<crate::api::ApiAuth, Problem> {
    for (field, t) in [("api.token", &raw.token), ("api.admin_token", &raw.admin_token)] {
        match t.as_deref().map(str::len) {
            Some(0) => return Err(problem(field, "empty; expected a long random secret")),
            // Failed tokens are not throttled on these ports (one client's mistakes would
            // lock out every client behind its address), so a token must be unguessable.
            Some(n) if n < API_TOKEN_LEN_MIN => {
                return Err(problem(
                    field,
                    format!(
                        "{n} bytes: a short token can be guessed; use at least {API_TOKEN_LEN_MIN} random bytes, \
                         e.g. the output of `openssl rand -hex 16`"
                    ),
                ))
            }
            Some(n) if n > crate::peer::TOKEN_LEN_MAX => {
                return Err(problem(
                    field,
                    format!("{n} bytes; the binary protocol's Auth carries at most {}", crate::peer::TOKEN_LEN_MAX),
                ))
            }
            _ => {}
        }
    }
    match (&raw.token, &raw.admin_token) {
        (Some(_), None) => Err(problem(
            "api.token",
            "set without api.admin_token: pause, resume and sync now need a token of their own; set both",
        )),
        (None, Some(_)) => {
            Err(problem("api.admin_token", "set without api.token (the producers' and readers'); set both"))
        }
        (Some(a), Some(b)) if a == b => {
            Err(problem("api.admin_token", "the same as api.token; admin operations need a token of their own"))
        }
        (None, None) => {
            let exposed = [("api.http", http), ("api.binary", binary)].into_iter().find(|(_, a)| !a.ip().is_loopback());
            match exposed {
                Some((field, addr)) => Err(problem(
                    field,
                    format!(
                        "\"{addr}\" accepts connections from other machines, and api.token is not set: anyone who \
                         reaches it could write, read and pause sync; set api.token and api.admin_token, or listen on \
                         127.0.0.1"
                    ),
                )),
                None => Ok(crate::api::ApiAuth::default()),
            }
        }
        (token, admin) => Ok(crate::api::ApiAuth::new(token.clone(), admin.clone())),
    }
}

/// The topics whose values are sealed end to end (`encrypt`, `keys`; docs/SECURITY.md).
fn encrypted_topics(raw: &RawFile, role: Role) -> Result<BTreeMap<String, Option<PathBuf>>, Problem> {
    let mut out = BTreeMap::new();
    for (i, t) in raw.topics.iter().enumerate() {
        let field = format!("topics[{i}].keys");
        match (t.encrypt, t.keys.as_deref()) {
            (false, None) => continue,
            (false, Some(_)) => {
                return Err(problem(field, "set without encrypt = true: add it, or remove keys"));
            }
            (true, Some("")) => return Err(problem(field, "empty; expected the path of a key file")),
            (true, Some(_)) if role == Role::Gateway => {
                return Err(problem(
                    field,
                    "a gateway must not hold the keys of an end-to-end encrypted topic: it stores and forwards what \
                     it cannot read; remove keys here (the producers and consumers hold them)",
                ))
            }
            (true, keys) => {
                out.insert(t.name.clone(), keys.map(PathBuf::from));
            }
        }
    }
    Ok(out)
}

/// `[tls]`, checked against the links the node has: a link that leaves this host is
/// encrypted unless the file says `tls.plaintext = true`.
fn link_security(
    raw: Option<&RawTls>,
    cloud: Option<&CloudSettings>,
    gateway: Option<&GatewaySettings>,
) -> Result<LinkSecurity, Problem> {
    let path = |field: &str, text: &Option<String>| -> Result<Option<PathBuf>, Problem> {
        match text.as_deref() {
            Some("") => Err(problem(field, "empty; expected the path of a PEM file")),
            Some(p) => Ok(Some(PathBuf::from(p))),
            None => Ok(None),
        }
    };
    let leaving = cloud
        .filter(|c| !is_loopback_host(&c.gateway_addr))
        .map(|c| ("cloud.gateway", c.gateway_addr.clone()))
        .or_else(|| gateway.filter(|g| !g.listen.ip().is_loopback()).map(|g| ("gateway.listen", g.listen.to_string())));
    let Some(raw) = raw else {
        return match leaving {
            Some((field, addr)) => Err(problem(
                field,
                format!(
                    "{addr:?} leaves this host, and the file has no [tls]: links between nodes are encrypted; add \
                     [tls] with ca, cert and key (made by `outpost certs`), or tls.plaintext = true on a test network"
                ),
            )),
            None => Ok(LinkSecurity::Plain { explicit: false }),
        };
    };
    let (ca, cert, key, crl) = (
        path("tls.ca", &raw.ca)?,
        path("tls.cert", &raw.cert)?,
        path("tls.key", &raw.key)?,
        path("tls.crl", &raw.crl)?,
    );
    if raw.plaintext {
        if let Some(field) = [("tls.ca", &ca), ("tls.cert", &cert), ("tls.key", &key), ("tls.crl", &crl)]
            .iter()
            .find_map(|(f, p)| p.as_ref().map(|_| *f))
        {
            return Err(problem(
                "tls.plaintext",
                format!("true, and {field} is set: choose clear text (a test network) or TLS, not both"),
            ));
        }
        return Ok(LinkSecurity::Plain { explicit: true });
    }
    let Some(ca) = ca else {
        return Err(problem(
            "tls",
            "no ca: set tls.ca to the fleet CA's certificate (`outpost certs ca`), or tls.plaintext = true on a test \
             network",
        ));
    };
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => return Err(problem("tls.cert", "set without tls.key: its private key goes with it")),
        (None, Some(_)) => return Err(problem("tls.key", "set without tls.cert: its certificate goes with it")),
    };
    if gateway.is_some() && identity.is_none() {
        return Err(problem(
            "tls",
            "no cert: a gateway proves its name to edges with a certificate; set tls.cert and tls.key \
             (`outpost certs issue --name` this gateway's node.name)",
        ));
    }
    if crl.is_some() && gateway.is_none() {
        return Err(problem("tls.crl", "only a gateway checks revocations (of the edges it accepts); remove it"));
    }
    Ok(LinkSecurity::Tls(TlsFiles { ca, identity, crl }))
}

/// Whether `host:port` names this machine: `localhost` or a loopback address.
fn is_loopback_host(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn gateway(raw: Option<&RawGateway>, role: Role) -> Result<Option<GatewaySettings>, Problem> {
    if role == Role::Edge {
        return match raw {
            Some(_) => Err(problem("gateway", "only a gateway accepts edges; remove [gateway] from an edge's file")),
            None => Ok(None),
        };
    }
    let defaults = RawGateway::default();
    let raw = raw.unwrap_or(&defaults);
    let listen = socket_addr("gateway.listen", raw.listen.as_deref(), GATEWAY_ADDR_DEFAULT)?;
    for (edge, token) in &raw.tokens {
        let field = format!("gateway.tokens.{edge}");
        check_name(&field, edge)?;
        if token.is_empty() {
            return Err(problem(field, "empty token; give the edge a secret, or remove the line"));
        }
        if token.len() > crate::peer::TOKEN_LEN_MAX {
            let max = crate::peer::TOKEN_LEN_MAX;
            return Err(problem(
                field,
                format!("{} bytes long; the handshake carries at most {max} bytes", token.len()),
            ));
        }
    }
    for (i, name) in raw.relays.iter().enumerate() {
        check_name(&format!("gateway.relays[{i}]"), name)?;
    }
    Ok(Some(GatewaySettings { listen, tokens: raw.tokens.clone(), open: raw.open, relays: raw.relays.clone() }))
}

/// Two listeners on one port would fail at bind time with a message that names neither.
/// Port 0 (any free port) never conflicts. The error points at a listener the file wrote.
fn check_listeners(listeners: &[(&str, SocketAddr)], places: &[Place]) -> Result<(), Problem> {
    for (i, &(field, addr)) in listeners.iter().enumerate() {
        let clash = listeners[..i].iter().find(|(_, other)| {
            addr.port() != 0
                && other.port() == addr.port()
                && (other.ip() == addr.ip() || other.ip().is_unspecified() || addr.ip().is_unspecified())
        });
        if let Some(&(other_field, other)) = clash {
            let ((field, addr), (other_field, other)) = match place_of(places, field) {
                Some(_) => ((field, addr), (other_field, other)),
                None => ((other_field, other), (field, addr)),
            };
            return Err(problem(field, format!("{addr} takes the port of {other_field} ({other}); give each its own")));
        }
    }
    Ok(())
}

fn logging(raw: &RawLogging) -> Result<Logging, Problem> {
    let format = match raw.format.as_deref() {
        None | Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(problem("logging.format", format!("unknown format {other:?}; expected human or json")))
        }
    };
    let level = raw.level.clone().unwrap_or_else(|| LOG_LEVEL_DEFAULT.to_owned());
    if level.trim().is_empty() {
        return Err(problem(
            "logging.level",
            "empty; expected a tracing filter such as \"info\" or \"outpost=debug,info\"",
        ));
    }
    Ok(Logging { format, level })
}

/// The core's configuration, in the order the module documentation gives.
fn node_config(
    raw: &RawFile,
    role: Role,
    node_name: &str,
    cloud: Option<&CloudSettings>,
    places: &[Place],
) -> Result<(NodeConfig, u64, ShellBudget), Problem> {
    let r = &raw.resources;
    let memory = optional(r.max_memory.as_ref(), |s| size("resources.max_memory", s))?;
    let storage = optional(r.max_storage.as_ref(), |s| size("resources.max_storage", s))?;
    let defaults = NodeConfig::new(node_id_of(node_name), role, Vec::new());
    let memory = memory.unwrap_or(defaults.resources.memory_bytes_max);
    let storage = storage.unwrap_or(defaults.resources.storage_bytes_max);
    let (cfg, shell) = sized_config(raw, role, node_name, cloud, memory, storage)?;
    outpost_core::Node::check_config(&cfg).map_err(|mut e| {
        if e.field == "resources.memory_bytes_max" {
            let minimum = minimum_memory(raw, role, node_name, cloud, memory, storage)
                .map_or(String::new(), |m| format!(" (with this file, at least {} is needed)", Bytes(m)));
            e.message = format!(
                "{} is the whole process's budget{minimum}; the shell keeps {} of it ({} connections per listener, \
                 {} for request bodies{}), and the core's {}",
                Bytes(memory),
                Bytes(shell.reserve),
                shell.http_connections_max,
                Bytes(shell.ingress_bytes_max as u64),
                if shell.merge_bytes > 0 {
                    format!(", {} for a custom merge: lower merge_memory_max", Bytes(shell.merge_bytes))
                } else {
                    String::new()
                },
                e.message
            );
        }
        core_problem(e, &cfg, raw, places)
    })?;
    Ok((cfg, memory, shell))
}

/// The core's configuration and the shell's budget for a process budget of `memory` and a
/// storage budget of `storage`, not yet validated.
fn sized_config(
    raw: &RawFile,
    role: Role,
    node_name: &str,
    cloud: Option<&CloudSettings>,
    memory: u64,
    storage: u64,
) -> Result<(NodeConfig, ShellBudget), Problem> {
    let mut cfg = NodeConfig::new(node_id_of(node_name), role, topics(raw)?);
    cfg.split_both_ways();
    cfg.upstream = cloud.map(|c| node_id_of(&c.gateway_name));
    cfg.zone = raw.node.zone.clone();
    cfg.upstream_zone = raw.cloud.as_ref().and_then(|c| c.zone.clone()).filter(|_| cloud.is_some());
    // The shell's share first, sized for the values the fit allows and the frames peers may
    // send; the core gets the rest.
    let fitted_value_max = ShellBudget::fitted_value_max(memory);
    let frame_max = crate::limits::peer_frame_max(&cfg);
    let mut shell = ShellBudget::new(memory, fitted_value_max, frame_max).with_merges(&cfg);
    fit_to_budgets(&mut cfg, shell.core_memory(memory), storage);
    if apply_keyed_limits(&mut cfg, raw)? {
        fit_write_buffer_to_storage(&mut cfg);
    }
    apply_sync_limits(&mut cfg, &raw.sync)?;
    apply_log_limits(&mut cfg, &raw.log)?;
    let frames_now = crate::limits::peer_frame_max(&cfg);
    if cfg.log.value_bytes_max > fitted_value_max || frames_now > frame_max {
        // The file allows larger values or batches than the fit would: the shell buffers
        // more of them.
        let value_max = cfg.log.value_bytes_max.max(fitted_value_max);
        shell = ShellBudget::new(memory, value_max, frames_now.max(frame_max)).with_merges(&cfg);
        cfg.resources.memory_bytes_max = shell.core_memory(memory);
    }
    set(
        &mut cfg.resources.compact_index_bytes_max,
        optional(raw.resources.compact_index.as_ref(), |s| size("resources.compact_index", s))?,
    );
    if let Some(g) = &raw.gateway {
        if g.streams_max == Some(0) {
            return Err(problem("gateway.streams_max", "0; expected at least 1, or no edge could connect"));
        }
        set(&mut cfg.gateway.streams_max, g.streams_max);
        if g.downlinks_max == Some(0) {
            return Err(problem(
                "gateway.downlinks_max",
                "0; expected at least 1, or no edge could receive the cloud-to-edge topics",
            ));
        }
        set(&mut cfg.gateway.downlinks_max, g.downlinks_max);
        set(&mut cfg.gateway.pending_bytes_max, optional(g.pending.as_ref(), |s| size("gateway.pending", s))?);
        if g.up_retention.is_some() && cloud.is_some() {
            return Err(problem(
                "gateway.up_retention",
                "a middle tier (a gateway with [cloud]) always deletes what the tier above acknowledged; remove it \
                 (it is for the top gateway, the store of record)",
            ));
        }
        set(&mut cfg.gateway.up_retention, g.up_retention);
        // The middle tiers below this gateway: they forward their edges' records as those
        // edges' (a peer not named here may send only its own).
        cfg.gateway.relays = g.relays.iter().map(|name| node_id_of(name)).collect();
    }
    for (i, t) in raw.topics.iter().enumerate() {
        let Some(entries) = &t.subscribers else { continue };
        let field = format!("topics[{i}].subscribers");
        let Some(g) = raw.gateway.as_ref().filter(|_| role == Role::Gateway) else {
            return Err(problem(
                field,
                "only a gateway sends topics down to subscribers; remove it from an edge's file",
            ));
        };
        let names = subscribers(&field, entries, g)?;
        // (A `both` topic's subscribers get the half that comes down, the last of its name.)
        let at = cfg.topics.iter().rposition(|c| c.name == t.name).expect("the file's topic is in the config");
        cfg.topics[at].subscribers = Some(names.iter().map(|n| node_id_of(n)).collect());
    }
    Ok((cfg, shell))
}

/// The names a topic's `subscribers` stand for. Each entry is a peer's name, a pattern
/// (`till-*`: `*`, `?` and `[...]` as in shell globs) matched against the names the
/// gateway knows (`[gateway.tokens]` and `gateway.relays`), or `@group` for a list of
/// `[gateway.groups]` (of names and patterns).
fn subscribers(field: &str, entries: &[String], g: &RawGateway) -> Result<std::collections::BTreeSet<String>, Problem> {
    if entries.is_empty() {
        return Err(problem(field, "empty, so no edge would get the topic; leave it out to send it to every edge"));
    }
    let known: Vec<&String> = g.tokens.keys().chain(&g.relays).collect();
    let mut names = std::collections::BTreeSet::new();
    for (k, entry) in entries.iter().enumerate() {
        let at = format!("{field}[{k}]");
        let (members, within): (&[String], String) = match entry.strip_prefix('@') {
            Some(group) => match g.groups.get(group) {
                Some(list) => (list, format!("gateway.groups.{group}")),
                None => {
                    let groups: Vec<&str> = g.groups.keys().map(String::as_str).collect();
                    let message = format!("no group {group:?} in [gateway.groups] (it has: {})", groups.join(", "));
                    return Err(problem(at, message));
                }
            },
            None => (std::slice::from_ref(entry), at.clone()),
        };
        for (m, member) in members.iter().enumerate() {
            let place = if entry.starts_with('@') { format!("{within}[{m}]") } else { within.clone() };
            if !member.contains(['*', '?', '[']) {
                check_name(&place, member)?;
                names.insert(member.clone());
                continue;
            }
            let pattern =
                glob::Pattern::new(member).map_err(|e| problem(&place, format!("{member:?} is not a pattern: {e}")))?;
            let matched: Vec<&&String> = known.iter().filter(|n| pattern.matches(n)).collect();
            if matched.is_empty() {
                return Err(problem(
                    place,
                    format!(
                        "{member:?} matches no name in [gateway.tokens] or gateway.relays; a pattern matches the \
                         names the gateway knows (list the edges, or name them one by one)"
                    ),
                ));
            }
            names.extend(matched.into_iter().map(|n| (*n).clone()));
        }
    }
    Ok(names)
}

/// The smallest `resources.max_memory` (to the MiB) with which this file's limits fit,
/// searched up to 1 TiB; None when even that is not enough.
fn minimum_memory(
    raw: &RawFile,
    role: Role,
    node_name: &str,
    cloud: Option<&CloudSettings>,
    memory: u64,
    storage: u64,
) -> Option<u64> {
    const MIB: u64 = 1 << 20;
    let fits = |m: u64| {
        sized_config(raw, role, node_name, cloud, m, storage).is_ok_and(|(cfg, _)| {
            outpost_core::Node::check_config(&cfg).map_or_else(|e| e.field != "resources.memory_bytes_max", |()| true)
        })
    };
    let (mut low, mut high) = (memory / MIB, memory.div_ceil(MIB).max(1));
    while !fits(high * MIB) {
        if high >= 1 << 20 {
            return None;
        }
        (low, high) = (high, high * 2);
    }
    // `low` MiB does not fit, `high` MiB does: bisect.
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if fits(mid * MIB) {
            high = mid;
        } else {
            low = mid;
        }
    }
    Some(high * MIB)
}

/// Serde names Rust's types in its messages ("expected u8"); the file's reader knows numbers.
fn plain_types(message: &str) -> String {
    [
        ("expected u8", "expected an integer from 0 to 255"),
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
    ]
    .iter()
    .fold(message.to_owned(), |m, (rust, plain)| m.replace(rust, plain))
}

/// The file's topics: `[[topics]]` in order, then `local_topics`; `events` when it has none.
fn topics(raw: &RawFile) -> Result<Vec<TopicConfig>, Problem> {
    if raw.topics.is_empty() && raw.local_topics.is_empty() {
        return Ok(vec![TopicConfig::new(DEFAULT_TOPIC, SyncDirection::EdgeToCloud)]);
    }
    let table = placement_table(raw)?;
    let mut topics = Vec::with_capacity(raw.topics.len() + raw.local_topics.len());
    for (i, t) in raw.topics.iter().enumerate() {
        topics.push(topic(&format!("topics[{i}]"), t, &table)?);
    }
    for (j, name) in raw.local_topics.iter().enumerate() {
        if let Some(i) = raw.topics.iter().position(|t| t.name == *name) {
            return Err(problem(
                format!("local_topics[{j}]"),
                format!("{name:?} is also topics[{i}].name; a topic is in [[topics]] or in local_topics, not both"),
            ));
        }
        topics.push(TopicConfig::new(name, SyncDirection::Local));
    }
    Ok(topics)
}

fn topic(field: &str, raw: &RawTopic, table: &PlacementTable) -> Result<TopicConfig, Problem> {
    let sync = optional(raw.sync.as_deref(), |s| sync_direction(&format!("{field}.sync"), s))?;
    let mut t = TopicConfig::new(&raw.name, sync.unwrap_or(SyncDirection::EdgeToCloud));
    set(&mut t.priority, raw.priority);
    set(&mut t.eviction, optional(raw.eviction.as_deref(), |e| eviction(&format!("{field}.eviction"), e))?);
    set(&mut t.retention_bytes, optional(raw.retention.as_ref(), |s| size(&format!("{field}.retention"), s))?);
    t.retention_age = optional(raw.retention_age.as_deref(), |d| duration(&format!("{field}.retention_age"), d))?;
    if let Some(classification) = &raw.classification {
        let placement = table.placement(classification).map_err(|m| problem(format!("{field}.classification"), m))?;
        t.placement = Some(placement);
    }
    t.keyed = keyed(field, raw)?;
    Ok(t)
}

/// A topic's `conflict` strategy and the limits of its keyed state (docs/KEYED.md).
fn keyed(field: &str, raw: &RawTopic) -> Result<Option<KeyedTopic>, Problem> {
    let Some(name) = raw.conflict.as_deref() else {
        let given = [
            (raw.keyed_state_max.is_some(), "keyed_state_max"),
            (raw.conflict_log_max.is_some(), "conflict_log_max"),
            (raw.merge.is_some(), "merge"),
            (raw.merge_fuel.is_some(), "merge_fuel"),
            (raw.merge_memory_max.is_some(), "merge_memory_max"),
        ];
        for (given, key) in given {
            if given {
                return Err(problem(
                    format!("{field}.{key}"),
                    "set on a topic without a conflict strategy: add conflict = \"...\", or remove it",
                ));
            }
        }
        return Ok(None);
    };
    let strategy = Strategy::from_name(name).ok_or_else(|| {
        let names = Strategy::NAMED.map(Strategy::name);
        problem(format!("{field}.conflict"), format!("unknown strategy {name:?}; expected one of {}", names.join(", ")))
    })?;
    if raw.encrypt {
        return Err(problem(
            format!("{field}.encrypt"),
            "a keyed topic cannot be end-to-end encrypted: every replica reads its values to merge them; \
             remove encrypt, or conflict",
        ));
    }
    // The defaults, which the fit sizes to the budgets; `apply_keyed_limits` sets what the
    // file says after it.
    let limits = KeyedTopic::DEFAULT_LIMITS;
    let merge = merge(field, raw, strategy)?;
    Ok(Some(KeyedTopic { strategy, limits, merge }))
}

/// The keyed limits the file sets: they beat the fit's, as every explicit limit does.
/// Whether it sets any.
fn apply_keyed_limits(cfg: &mut NodeConfig, raw: &RawFile) -> Result<bool, Problem> {
    let mut any = false;
    for (i, r) in raw.topics.iter().enumerate() {
        let field = format!("topics[{i}]");
        let state = optional(r.keyed_state_max.as_ref(), |s| size(&format!("{field}.keyed_state_max"), s))?;
        let log = optional(r.conflict_log_max.as_ref(), |s| size(&format!("{field}.conflict_log_max"), s))?;
        // (Both halves of a `both` topic carry its limits.)
        for k in cfg.topics.iter_mut().filter(|t| t.name == r.name).filter_map(|t| t.keyed.as_mut()) {
            set(&mut k.limits.state_bytes_max, state);
            set(&mut k.limits.conflict_log_bytes_max, log);
            any |= state.is_some() || log.is_some();
        }
    }
    Ok(any)
}

/// A `custom` topic's merge: the WebAssembly module its `merge` names, loaded and checked
/// now, so that a bad module stops the daemon at start rather than at the first conflict.
fn merge(field: &str, raw: &RawTopic, strategy: Strategy) -> Result<Option<MergeFn>, Problem> {
    if strategy != Strategy::Custom {
        for (given, key) in [
            (raw.merge.is_some(), "merge"),
            (raw.merge_fuel.is_some(), "merge_fuel"),
            (raw.merge_memory_max.is_some(), "merge_memory_max"),
        ] {
            if given {
                return Err(problem(
                    format!("{field}.{key}"),
                    format!("set on a {strategy} topic: a merge module serves conflict = \"custom\" only; remove it"),
                ));
            }
        }
        return Ok(None);
    }
    let Some(path) = &raw.merge else {
        return Err(problem(
            format!("{field}.merge"),
            "a \"custom\" topic needs merge = \"path/to/module.wasm\" (or .wat): the WebAssembly module that \
             merges concurrent versions (docs/KEYED.md, \"Custom merges\")",
        ));
    };
    load_merge(field, path, raw)
}

#[cfg(feature = "wasm-merge")]
fn load_merge(field: &str, path: &Path, raw: &RawTopic) -> Result<Option<MergeFn>, Problem> {
    let mut limits = outpost_wasm_merge::WasmLimits::default();
    if let Some(fuel) = raw.merge_fuel {
        if fuel == 0 {
            return Err(problem(format!("{field}.merge_fuel"), "0; expected the fuel one call may spend, above zero"));
        }
        limits.fuel = fuel;
    }
    if let Some(m) = &raw.merge_memory_max {
        let bytes = size(&format!("{field}.merge_memory_max"), m)?;
        limits.memory_bytes_max = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    let module = outpost_wasm_merge::WasmMerge::from_file(path, limits)
        .map_err(|e| problem(format!("{field}.merge"), e.to_string()))?;
    Ok(Some(MergeFn::new(module)))
}

#[cfg(not(feature = "wasm-merge"))]
fn load_merge(field: &str, _path: &Path, _raw: &RawTopic) -> Result<Option<MergeFn>, Problem> {
    Err(problem(
        format!("{field}.merge"),
        "this build runs no WebAssembly (edge-lite leaves the interpreter out): use a built-in strategy, \
         or the default build",
    ))
}

/// The placement table: the default one (`outpost_core::config::DEFAULT_PLACEMENT_TOML`)
/// with the file's `[placement]` over it, every name checked.
fn placement_table(raw: &RawFile) -> Result<PlacementTable, Problem> {
    let defaults = toml::from_str(DEFAULT_PLACEMENT_TOML).expect("the default placement table is valid TOML");
    let table = PlacementTable::new(defaults, &raw.placement).map_err(|e| problem(e.field, e.message))?;
    for (field, name) in table.names() {
        check_name(&field, name)?;
    }
    Ok(table)
}

/// Guarantee 7 at load: a node writes a classified topic only where it may hold it, and an
/// edge sends one up only to a gateway in one of its zones (`cloud.zone`, which the
/// gateway's Welcome must confirm). A middle tier whose upstream may not take a topic keeps
/// it: it is that topic's top.
fn check_placement(
    raw: &RawFile,
    cfg: &NodeConfig,
    node_name: &str,
    cloud: Option<&CloudSettings>,
) -> Result<(), Problem> {
    if let Some(zone) = &raw.node.zone {
        check_name("node.zone", zone)?;
    }
    for t in cfg.topics.iter().filter(|t| cfg.writes(t)) {
        let Some(p) = &t.placement else { continue };
        let i = raw.topics.iter().position(|r| r.name == t.name).unwrap_or_default();
        let field = format!("topics[{i}].classification");
        if let Some(why) = p.refuses_holder(&t.name, &format!("this node {node_name:?}"), cfg.zone.as_deref()) {
            return Err(problem(field, format!("{why}; set node.zone, or write the topic elsewhere")));
        }
        let Some(c) = cloud.filter(|_| t.sync.goes_up() && !cfg.sends_up(t)) else { continue };
        let from = (node_name, cfg.zone.as_deref());
        let to = (c.gateway_name.as_str(), cfg.upstream_zone.as_deref());
        let why = p.refuses_route(&t.name, from, to).expect("sends_up said the zone is not allowed");
        let hint = if cfg.upstream_zone.is_none() { " (set cloud.zone to the gateway's zone)" } else { "" };
        return Err(problem(field, format!("{why}{hint}")));
    }
    Ok(())
}

/// The names a topic's `sync` accepts: the short ones first, then the long ones of the
/// seed's edge.yaml.
const SYNC_DIRECTIONS: [(&str, SyncDirection); 7] = [
    ("up", SyncDirection::EdgeToCloud),
    ("down", SyncDirection::CloudToEdge),
    ("both", SyncDirection::Bidirectional),
    ("local", SyncDirection::Local),
    ("edge_to_cloud", SyncDirection::EdgeToCloud),
    ("cloud_to_edge", SyncDirection::CloudToEdge),
    ("bidirectional", SyncDirection::Bidirectional),
];

fn sync_direction(field: &str, text: &str) -> Result<SyncDirection, Problem> {
    SYNC_DIRECTIONS.iter().find(|(name, _)| *name == text).map(|&(_, direction)| direction).ok_or_else(|| {
        problem(
            field,
            format!(
                "unknown direction {text:?}; expected one of up, down, both, local \
                 (or edge_to_cloud, cloud_to_edge, bidirectional)"
            ),
        )
    })
}

fn eviction(field: &str, text: &str) -> Result<Eviction, Problem> {
    const POLICIES: [Eviction; 5] =
        [Eviction::Keep, Eviction::Oldest, Eviction::Priority, Eviction::Lru, Eviction::Compact];
    POLICIES.into_iter().find(|p| p.name() == text).ok_or_else(|| {
        let names: Vec<&str> = POLICIES.iter().map(|p| p.name()).collect();
        problem(field, format!("unknown policy {text:?}; expected one of {}", names.join(", ")))
    })
}

fn apply_sync_limits(cfg: &mut NodeConfig, raw: &RawSync) -> Result<(), Problem> {
    let s = &mut cfg.sync;
    set(&mut s.batch_records_max, raw.batch_records);
    set(&mut s.batch_bytes_max, optional(raw.batch_bytes.as_ref(), |v| size_u32("sync.batch_bytes", v))?);
    set(&mut s.window_bytes_max, optional(raw.window.as_ref(), |v| size("sync.window", v))?);
    if let Some(bandwidth) = optional(raw.bandwidth.as_ref(), |v| size("sync.bandwidth", v))? {
        s.bandwidth_bytes_per_sec = Some(bandwidth);
    }
    set(&mut s.bandwidth_burst_bytes, optional(raw.bandwidth_burst.as_ref(), |v| size("sync.bandwidth_burst", v))?);
    let time = |field: &str, text: Option<&str>| optional(text, |t| duration(field, t));
    set(&mut s.retransmit_timeout, time("sync.retransmit_timeout", raw.retransmit_timeout.as_deref())?);
    set(&mut s.session_timeout, time("sync.session_timeout", raw.session_timeout.as_deref())?);
    set(&mut s.backoff_min, time("sync.backoff_min", raw.backoff_min.as_deref())?);
    set(&mut s.backoff_max, time("sync.backoff_max", raw.backoff_max.as_deref())?);
    set(&mut s.keepalive_interval, time("sync.keepalive_interval", raw.keepalive_interval.as_deref())?);
    Ok(())
}

fn apply_log_limits(cfg: &mut NodeConfig, raw: &RawLog) -> Result<(), Problem> {
    let l = &mut cfg.log;
    set(&mut l.segment_bytes_max, optional(raw.segment.as_ref(), |v| size("log.segment", v))?);
    set(&mut l.pending_bytes_max, optional(raw.write_buffer.as_ref(), |v| size("log.write_buffer", v))?);
    set(&mut l.value_bytes_max, optional(raw.value_max.as_ref(), |v| size_u32("log.value_max", v))?);
    set(&mut l.read_chunk_bytes, optional(raw.read_chunk.as_ref(), |v| size_u32("log.read_chunk", v))?);
    Ok(())
}

/// Overwrites `target` with what the file gave, if it gave anything.
fn set<T>(target: &mut T, given: Option<T>) {
    if let Some(value) = given {
        *target = value;
    }
}

/// Parses a field the file may leave out.
fn optional<R, T>(raw: Option<R>, parse: impl FnOnce(R) -> Result<T, Problem>) -> Result<Option<T>, Problem> {
    raw.map(parse).transpose()
}

// ---------------------------------------------------------------------------------------
// The core's field names in the file
// ---------------------------------------------------------------------------------------

/// One core limit the file sets.
struct Limit {
    /// The field as `NodeConfig::validate` names it.
    core: &'static str,
    /// The field as the file names it.
    file: &'static str,
    /// Where the value comes from when the file does not give it.
    origin: Origin,
    /// The value, for people: what the file would have to change.
    value: fn(&NodeConfig) -> String,
}

impl Limit {
    const fn new(core: &'static str, file: &'static str, origin: Origin, value: fn(&NodeConfig) -> String) -> Limit {
        Limit { core, file, origin, value }
    }
}

#[derive(Clone, Copy)]
enum Origin {
    /// `NodeConfig::new` for the role.
    RoleDefault,
    /// `NodeConfig::new`, then `fit_to_budgets` (which may lower it for small budgets).
    Fitted,
    /// `NodeConfig::new`, unchanged by the budgets.
    Default,
}

/// Every core limit the file sets, core name → file name. Validation errors and the
/// names inside their messages are translated with it.
const LIMITS: [Limit; 20] = [
    Limit::new("resources.memory_bytes_max", "resources.max_memory", Origin::RoleDefault, |c| {
        show_size(c.resources.memory_bytes_max)
    }),
    Limit::new("resources.storage_bytes_max", "resources.max_storage", Origin::RoleDefault, |c| {
        show_size(c.resources.storage_bytes_max)
    }),
    Limit::new("resources.compact_index_bytes_max", "resources.compact_index", Origin::Fitted, |c| {
        show_size(c.resources.compact_index_bytes_max)
    }),
    Limit::new("log.segment_bytes_max", "log.segment", Origin::Fitted, |c| show_size(c.log.segment_bytes_max)),
    Limit::new("log.pending_bytes_max", "log.write_buffer", Origin::Fitted, |c| show_size(c.log.pending_bytes_max)),
    Limit::new("log.value_bytes_max", "log.value_max", Origin::Fitted, |c| show_size(c.log.value_bytes_max.into())),
    Limit::new("log.read_chunk_bytes", "log.read_chunk", Origin::Fitted, |c| show_size(c.log.read_chunk_bytes.into())),
    Limit::new("sync.batch_records_max", "sync.batch_records", Origin::Fitted, |c| {
        c.sync.batch_records_max.to_string()
    }),
    Limit::new("sync.batch_bytes_max", "sync.batch_bytes", Origin::Fitted, |c| {
        show_size(c.sync.batch_bytes_max.into())
    }),
    Limit::new("sync.window_bytes_max", "sync.window", Origin::Fitted, |c| show_size(c.sync.window_bytes_max)),
    Limit::new("sync.bandwidth_bytes_per_sec", "sync.bandwidth", Origin::Default, |c| {
        c.sync.bandwidth_bytes_per_sec.map_or("unlimited".to_owned(), |b| format!("{} per second", show_size(b)))
    }),
    Limit::new("sync.bandwidth_burst_bytes", "sync.bandwidth_burst", Origin::Default, |c| {
        show_size(c.sync.bandwidth_burst_bytes)
    }),
    Limit::new("sync.retransmit_timeout", "sync.retransmit_timeout", Origin::Default, |c| {
        show_duration(c.sync.retransmit_timeout)
    }),
    Limit::new("sync.session_timeout", "sync.session_timeout", Origin::Default, |c| {
        show_duration(c.sync.session_timeout)
    }),
    Limit::new("sync.backoff_min", "sync.backoff_min", Origin::Default, |c| show_duration(c.sync.backoff_min)),
    Limit::new("sync.backoff_max", "sync.backoff_max", Origin::Default, |c| show_duration(c.sync.backoff_max)),
    Limit::new("sync.keepalive_interval", "sync.keepalive_interval", Origin::Default, |c| {
        show_duration(c.sync.keepalive_interval)
    }),
    Limit::new("gateway.streams_max", "gateway.streams_max", Origin::Fitted, |c| c.gateway.streams_max.to_string()),
    Limit::new("gateway.downlinks_max", "gateway.downlinks_max", Origin::Default, |c| {
        c.gateway.downlinks_max.to_string()
    }),
    Limit::new("gateway.pending_bytes_max", "gateway.pending", Origin::Fitted, |c| {
        show_size(c.gateway.pending_bytes_max)
    }),
];

/// A validation error of the core, in the file's names. When the file does not give the
/// field, the message says where the value came from, so the user knows what to set.
fn core_problem(e: ConfigError, cfg: &NodeConfig, raw: &RawFile, places: &[Place]) -> Problem {
    let message = LIMITS.iter().fold(e.message, |m, limit| m.replace(limit.core, limit.file));
    let Some(limit) = LIMITS.iter().find(|limit| limit.core == e.field) else {
        return problem(file_topic_field(&e.field, cfg, raw).unwrap_or(e.field), message);
    };
    if place_of(places, limit.file).is_some() {
        return problem(limit.file, message);
    }
    let origin = match (limit.origin, cfg.role) {
        (Origin::RoleDefault, Role::Edge) => "the default for an edge",
        (Origin::RoleDefault, Role::Gateway) => "the default for a gateway",
        (Origin::Fitted, _) => "the default fitted to resources.max_memory and resources.max_storage",
        (Origin::Default, _) => "the default",
    };
    let value = (limit.value)(cfg);
    let (section, key) = limit.file.split_once('.').unwrap_or(("", limit.file));
    problem(
        limit.file,
        format!("{message} (the file does not set {}: {value} is {origin}; set {key} under [{section}])", limit.file),
    )
}

/// The file's name of the core's `topics[i]…` when topic `i` came from `local_topics`
/// (whose entries are bare names) or is the half of a `both` topic that comes down (after
/// them: `NodeConfig::split_both_ways`); None when the core's name is the file's.
fn file_topic_field(core_field: &str, cfg: &NodeConfig, raw: &RawFile) -> Option<String> {
    let (index, rest) = core_field.strip_prefix("topics[")?.split_once(']')?;
    let index = index.parse::<usize>().ok()?;
    let local = index.checked_sub(raw.topics.len())?;
    if local < raw.local_topics.len() {
        return Some(format!("local_topics[{local}]"));
    }
    let name = &cfg.topics.get(index)?.name;
    let i = raw.topics.iter().position(|t| t.name == *name)?;
    Some(format!("topics[{i}]{rest}"))
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn name_rule() -> String {
    format!("1 to {NAME_LEN_MAX} ASCII letters, digits, '-', '_' or '.'")
}

fn check_name(field: &str, name: &str) -> Result<(), Problem> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(problem(field, format!("{name:?} is not a valid node name; expected {}", name_rule())))
    }
}

/// A size of more than zero bytes.
fn size(field: &str, raw: &RawSize) -> Result<u64, Problem> {
    let text = match raw {
        RawSize::Bytes(0) => return Err(problem(field, "0 bytes; expected more than zero")),
        RawSize::Bytes(bytes) => return Ok(*bytes),
        RawSize::Text(text) => text.trim(),
    };
    let bad = || {
        problem(
            field,
            format!(
                "{text:?} is not a size; expected a whole number of bytes with an optional unit \
                 (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. \"256KiB\", \"64 MiB\" or 1000"
            ),
        )
    };
    match Bytes::parse(text) {
        Ok(0) => Err(problem(field, format!("{text:?} is zero; expected more than zero"))),
        Ok(bytes) => Ok(bytes),
        Err(BytesParseError::Malformed) => Err(bad()),
        Err(BytesParseError::TooLarge) => Err(problem(field, format!("{text:?} is too large; sizes stop at 16 EiB"))),
    }
}

/// A size for a core field held in 32 bits.
fn size_u32(field: &str, raw: &RawSize) -> Result<u32, Problem> {
    let bytes = size(field, raw)?;
    u32::try_from(bytes)
        .map_err(|_| problem(field, format!("{} is too large; expected less than 4 GiB", show_size(bytes))))
}

/// A duration of more than zero.
fn duration(field: &str, text: &str) -> Result<Duration, Problem> {
    let parsed = humantime::parse_duration(text).map_err(|_| {
        problem(
            field,
            format!(
                "{text:?} is not a duration; expected a number and a unit, e.g. \"500ms\", \"20s\", \"5m\", \"7d\""
            ),
        )
    })?;
    let nanos = u64::try_from(parsed.as_nanos())
        .map_err(|_| problem(field, format!("{text:?} is too long; durations stop at about 584 years")))?;
    if nanos == 0 {
        return Err(problem(field, format!("{text:?} is zero; expected a positive duration")));
    }
    Ok(Duration(nanos))
}

/// An address to listen on: an IP address and a port (names are not resolved).
fn socket_addr(field: &str, text: Option<&str>, default: SocketAddr) -> Result<SocketAddr, Problem> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse().map_err(|_| {
        problem(
            field,
            format!(
                "{text:?} is not an address to listen on; expected an IP address and a port, \
                 e.g. \"127.0.0.1:7480\", \"0.0.0.0:7480\" or \"[::1]:7480\""
            ),
        )
    })
}

/// An address to connect to: a DNS name or an IP address, and a port other than 0.
fn host_port(field: &str, text: &str) -> Result<String, Problem> {
    let bad = || {
        problem(
            field,
            format!(
                "{text:?} is not host:port; expected e.g. \"gateway.example.com:7400\", \"10.0.0.5:7400\" \
                 or \"[2001:db8::1]:7400\""
            ),
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => ipv6.parse::<Ipv6Addr>().is_ok(),
        None => !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
    };
    if !host_ok || !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return Err(bad());
    }
    Ok(text.to_owned())
}

/// A byte count in the largest binary unit that divides it, as the file would write it:
/// `512 KiB`, `1000 B`.
fn show_size(bytes: u64) -> String {
    for (unit, name) in [(1u64 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

fn show_duration(d: Duration) -> String {
    humantime::format_duration(std::time::Duration::from_nanos(d.0)).to_string()
}

// ---------------------------------------------------------------------------------------
// Locating fields: byte spans <-> field paths
// ---------------------------------------------------------------------------------------

/// A field path and a span of text that belongs to it.
struct Place {
    path: String,
    span: Range<usize>,
}

/// Every key and value of `text` with its path, keys first. Read with toml_edit rather than
/// through `toml::Spanned` as the simulator does: `Spanned` fails on a table that exists
/// only through a dotted key or header (`[gateway.tokens]` with no `[gateway]`), which
/// would leave such a file's errors without lines. Empty when `text` is not TOML.
fn places(text: &str) -> Vec<Place> {
    let mut out = Vec::new();
    if let Ok(document) = toml_edit::ImDocument::parse(text) {
        table_places(document.as_table(), "", &mut out);
    }
    out
}

fn table_places(table: &dyn TableLike, path: &str, out: &mut Vec<Place>) {
    for (name, item) in table.iter() {
        let key_path = if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
        // The key first: an error about a field points at the line that names it.
        let key_span = table.get_key_value(name).and_then(|(key, _)| key.span());
        out.extend(key_span.into_iter().chain(item.span()).map(|span| Place { path: key_path.clone(), span }));
        match item {
            Item::Table(t) => table_places(t, &key_path, out),
            Item::ArrayOfTables(tables) => {
                for (i, t) in tables.iter().enumerate() {
                    let item_path = format!("{key_path}[{i}]");
                    out.extend(t.span().map(|span| Place { path: item_path.clone(), span }));
                    table_places(t, &item_path, out);
                }
            }
            Item::Value(v) => value_places(v, &key_path, out),
            Item::None => {}
        }
    }
}

fn value_places(value: &Value, path: &str, out: &mut Vec<Place>) {
    match value {
        Value::InlineTable(t) => table_places(t, path, out),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.extend(v.span().map(|span| Place { path: item_path.clone(), span }));
                value_places(v, &item_path, out);
            }
        }
        _ => {}
    }
}

/// The path of the innermost key or value whose text covers all of `span`; empty when
/// none does (an error about the top-level table).
fn field_at(places: &[Place], span: &Range<usize>) -> String {
    places
        .iter()
        .filter(|p| p.span.start <= span.start && span.end <= p.span.end)
        .min_by_key(|p| (p.span.len(), std::cmp::Reverse(p.path.len())))
        .map(|p| p.path.clone())
        .unwrap_or_default()
}

/// Where the file writes `field`, if it does.
fn place_of<'a>(places: &'a [Place], field: &str) -> Option<&'a Place> {
    places.iter().find(|place| place.path == field)
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> Option<usize> {
    Some(text.get(..offset)?.matches('\n').count() + 1)
}

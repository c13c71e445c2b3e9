//! The configuration loader against the format documented in docs/OPERATIONS.md
//! (Configuration): defaults, the example files, the order defaults → fit → explicit →
//! validate, and errors that name the file, line and field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use outpost::config::{
    load, node_id_of, parse, ConfigFileError, LinkSecurity, LogFormat, TlsFiles, DEFAULT_CONFIG_FILE,
};
use outpost::limits::ShellBudget;
use outpost_core::config::{Consistency, Eviction, KeyedTopic, NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::keyed::Strategy;
use outpost_core::resources::fit_to_budgets;
use outpost_core::types::{Duration, NodeId};

const MIB: u64 = 1 << 20;
/// The shell's share of an edge's default 64 MiB, and the core's rest.
const RESERVE_64: u64 = 12_153_648;
const CORE_64: u64 = 64 * MIB - RESERVE_64;
/// The core's share of a gateway's default 256 MiB.
const CORE_GATEWAY_256: u64 = 200_212_480;
const KIB: u64 = 1 << 10;

/// What an edge's core gets of a process budget: the rest after the shell's share.
fn core(memory: u64) -> u64 {
    let frame = outpost::limits::CONTROL_FRAME_MAX;
    ShellBudget::new(memory, ShellBudget::fitted_value_max(memory), frame).core_memory(memory)
}

/// What a gateway's core gets: its shell also holds batches from edges.
fn gateway_core(memory: u64) -> u64 {
    let frame = outpost::limits::peer_frame_max(&NodeConfig::new(node_id_of("gateway"), Role::Gateway, Vec::new()));
    ShellBudget::new(memory, ShellBudget::fitted_value_max(memory), frame).core_memory(memory)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config").join(name)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// The error for `text`, read as `edge.toml` by a node of `role`; the text must be rejected.
fn error(text: &str, role: Role) -> ConfigFileError {
    match parse(text, Some(Path::new("edge.toml")), role) {
        Ok(settings) => panic!("accepted a bad configuration: {settings:?}"),
        Err(e) => e,
    }
}

/// What an edge's name defaults to on this machine.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    if name.is_empty() {
        "outpost-edge".to_owned()
    } else {
        name
    }
}

#[test]
fn node_ids_are_fnv1a_of_the_name() {
    // Reference values of 64-bit FNV-1a.
    assert_eq!(node_id_of("").0, 0xcbf2_9ce4_8422_2325);
    assert_eq!(node_id_of("a").0, 0xaf63_dc4c_8601_ec8c);
    assert_eq!(node_id_of("foobar").0, 0x8594_4171_f739_67e8);
    assert_ne!(node_id_of("kiosk-7"), node_id_of("kiosk-8"));
}

#[test]
fn an_edge_without_a_file_gets_the_documented_defaults() {
    let s = parse("", None, Role::Edge).expect("the defaults are valid");
    assert_eq!(s.path, None);
    assert_eq!(s.node_name, hostname());
    assert_eq!(s.node.id, node_id_of(&s.node_name));
    assert_eq!(s.data_dir, PathBuf::from("outpost-data"));
    assert_eq!(s.location, None);
    assert_eq!(s.http, addr("127.0.0.1:7480"));
    assert_eq!(s.binary, addr("127.0.0.1:7481"));
    let cloud = s.cloud.expect("an edge syncs to a gateway");
    assert_eq!(cloud.gateway_addr, "127.0.0.1:7400");
    assert_eq!(cloud.gateway_name, "gateway");
    assert_eq!(cloud.token, None);
    assert_eq!(s.gateway, None);
    assert_eq!(s.logging.format, LogFormat::Human);
    assert_eq!(s.logging.level, "info");

    let mut expected = NodeConfig::new(
        node_id_of(&s.node_name),
        Role::Edge,
        vec![TopicConfig::new("events", SyncDirection::EdgeToCloud)],
    );
    expected.upstream = Some(node_id_of("gateway"));
    fit_to_budgets(&mut expected, core(64 * MIB), 1 << 30);
    assert_eq!(s.node, expected);
    assert_eq!(s.max_memory, 64 * MIB);
    assert_eq!(s.node.resources.memory_bytes_max, core(64 * MIB), "the shell's share is set aside");
    assert_eq!((s.shell.http_connections_max, s.shell.binary_connections_max), (16, 16));
    assert_eq!(s.shell.reserve, RESERVE_64, "16 + 16 connections, 4 fetch answers, 4 MiB for request bodies");
    assert_eq!(core(64 * MIB), CORE_64);
    assert_eq!(s.node.log.pending_bytes_max, CORE_64 / 16, "a sixteenth of the core's memory");
    // Below 64 MiB for the core: the small batches and reads.
    assert_eq!(s.node.sync.batch_bytes_max, 64 * KIB as u32);
    assert_eq!(s.node.sync.batch_records_max, 1024);
    assert_eq!(s.node.log.read_chunk_bytes, 64 * KIB as u32);
    assert_eq!(u64::from(s.node.log.value_bytes_max), CORE_64 / (16 * 5), "the core's memory / (16 × (1 topic + 4))");
    assert_eq!(s.node.resources.storage_bytes_max, 1 << 30);
    assert_eq!(s.node.topics[0].eviction, Eviction::Keep);
}

#[test]
fn a_gateway_without_a_file_gets_the_documented_defaults() {
    let s = parse("", None, Role::Gateway).expect("the defaults are valid");
    assert_eq!(s.node_name, "gateway");
    assert_eq!(s.node.id, node_id_of("gateway"));
    assert_eq!(s.data_dir, PathBuf::from("outpost-gateway-data"));
    assert_eq!(s.http, addr("127.0.0.1:7490"));
    assert_eq!(s.binary, addr("127.0.0.1:7491"));
    assert_eq!(s.cloud, None);
    let gateway = s.gateway.expect("a gateway accepts edges");
    assert_eq!(gateway.listen, addr("127.0.0.1:7400"));
    assert!(gateway.tokens.is_empty());

    let mut expected = NodeConfig::new(
        node_id_of("gateway"),
        Role::Gateway,
        vec![TopicConfig::new("events", SyncDirection::EdgeToCloud)],
    );
    fit_to_budgets(&mut expected, gateway_core(256 * MIB), 64 << 30);
    assert_eq!(s.node, expected);
    assert_eq!(s.node.upstream, None);
    assert_eq!(s.node.resources.memory_bytes_max, gateway_core(256 * MIB));
    assert_eq!((s.shell.http_connections_max, s.shell.binary_connections_max), (64, 64));
    assert_eq!(gateway_core(256 * MIB), CORE_GATEWAY_256);
    assert_eq!(
        s.node.gateway.pending_bytes_max,
        CORE_GATEWAY_256 / 16,
        "a sixteenth of the core's memory, below 16 MiB"
    );
    assert_eq!(s.node.sync.batch_bytes_max, 256 * KIB as u32, "the core has more than 64 MiB");
    assert_eq!(s.node.resources.storage_bytes_max, 64 << 30);
}

/// The only test that changes the working directory; every other test uses absolute paths.
#[test]
fn without_config_the_working_directory_file_is_read_if_it_exists() {
    let dir = std::env::temp_dir().join(format!("outpost-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let before = std::env::current_dir().expect("a working directory");
    std::env::set_current_dir(&dir).expect("enter the temporary directory");

    let defaults = load(None, Role::Edge);
    std::fs::write(DEFAULT_CONFIG_FILE, "[node]\nname = \"from-cwd\"\n").expect("write outpost.toml");
    let from_file = load(None, Role::Edge);

    std::env::set_current_dir(before).expect("leave the temporary directory");
    std::fs::remove_dir_all(&dir).expect("remove the temporary directory");
    let defaults = defaults.expect("no file: the defaults");
    assert_eq!(defaults.path, None);
    assert_eq!(defaults.node_name, hostname());
    let from_file = from_file.expect("./outpost.toml is valid");
    assert_eq!(from_file.path, Some(PathBuf::from(DEFAULT_CONFIG_FILE)));
    assert_eq!(from_file.node_name, "from-cwd");
}

#[test]
fn the_edge_example_gives_the_values_written() {
    let path = example("edge.toml");
    let s = load(Some(&path), Role::Edge).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.path, Some(path));
    assert_eq!(s.node_name, "store-001-pos");
    assert_eq!(s.node.id, node_id_of("store-001-pos"));
    assert_eq!(s.node.role, Role::Edge);
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/outpost"));
    assert_eq!(s.location.as_deref(), Some("Store #001"));
    assert_eq!((s.http, s.binary), (addr("127.0.0.1:7480"), addr("127.0.0.1:7481")));
    let cloud = s.cloud.expect("an edge syncs to a gateway");
    assert_eq!(cloud.gateway_addr, "gateway.example.com:7400");
    assert_eq!(cloud.gateway_name, "gateway");
    assert_eq!(cloud.token.as_deref(), Some("change-me"));
    assert_eq!(s.node.upstream, Some(node_id_of("gateway")));
    assert_eq!(s.gateway, None);
    let tls = |f: &str| PathBuf::from("/etc/outpost/tls").join(f);
    let identity = Some((tls("store-001-pos.pem"), tls("store-001-pos.key")));
    assert_eq!(s.links, LinkSecurity::Tls(TlsFiles { ca: tls("ca.pem"), identity, crl: None }));
    assert_eq!(s.node.sync.bandwidth_bytes_per_sec, Some(MIB));
    assert_eq!(s.node.resources.memory_bytes_max, core(64 * MIB));
    assert_eq!(s.node.resources.storage_bytes_max, 1 << 30);

    let topic = |name: &str, sync, priority, eviction, retention_bytes, retention_age| TopicConfig {
        name: name.to_owned(),
        sync,
        priority,
        eviction,
        retention_bytes,
        retention_age,
        consistency: Consistency::Eventual,
        subscribers: None,
        both_ways: false,
        placement: None,
        keyed: None,
    };
    let week = Some(Duration::from_secs(7 * 24 * 3600));
    assert_eq!(
        s.node.topics,
        [
            topic("pos.transactions", SyncDirection::EdgeToCloud, 9, Eviction::Keep, 256 * MIB, None),
            topic("inventory.updates", SyncDirection::CloudToEdge, 5, Eviction::Keep, 256 * MIB, None),
            topic("telemetry", SyncDirection::EdgeToCloud, 1, Eviction::Oldest, 64 * MIB, week),
            topic("local.cache", SyncDirection::Local, 5, Eviction::Keep, 256 * MIB, None),
        ]
    );
    // The values the commented-out lines show (checked in full by the next test).
    assert_eq!(s.node.log.value_bytes_max, 429_337, "the core's memory / (16 × (4 topics + 4))");
    assert_eq!(u64::from(s.node.log.value_bytes_max), core(64 * MIB) / (16 * 8));
    assert_eq!(s.node.log.pending_bytes_max, 3_434_701, "a sixteenth of the core's memory");
    assert_eq!(s.node.sync.window_bytes_max, MIB);
    assert_eq!((s.logging.format, s.logging.level.as_str()), (LogFormat::Human, "info"));
}

#[test]
fn the_gateway_example_gives_the_values_written() {
    let path = example("gateway.toml");
    let s = load(Some(&path), Role::Gateway).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.node_name, "gateway");
    assert_eq!(s.node.role, Role::Gateway);
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/outpost-gateway"));
    assert_eq!(s.location.as_deref(), Some("eu-west-1"));
    assert_eq!((s.http, s.binary), (addr("127.0.0.1:7490"), addr("127.0.0.1:7491")));
    assert_eq!(s.cloud, None);
    let gateway = s.gateway.expect("a gateway accepts edges");
    assert_eq!(gateway.listen, addr("0.0.0.0:7400"));
    let tokens: Vec<(&str, &str)> = gateway.tokens.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(tokens, [("store-001-pos", "change-me"), ("store-002-pos", "change-me-too")]);
    let tls = |f: &str| PathBuf::from("/etc/outpost/tls").join(f);
    let identity = Some((tls("gateway.pem"), tls("gateway.key")));
    assert_eq!(s.links, LinkSecurity::Tls(TlsFiles { ca: tls("ca.pem"), identity, crl: Some(tls("crl.pem")) }));
    let topics: Vec<(&str, SyncDirection, u8, u64)> =
        s.node.topics.iter().map(|t| (t.name.as_str(), t.sync, t.priority, t.retention_bytes)).collect();
    assert_eq!(
        topics,
        [
            ("pos.transactions", SyncDirection::EdgeToCloud, 9, 16 << 30),
            ("inventory.updates", SyncDirection::CloudToEdge, 5, 16 << 30),
            ("telemetry", SyncDirection::EdgeToCloud, 1, 8 << 30),
        ]
    );
    assert_eq!(s.node.topics[2].retention_age, Some(Duration::from_secs(30 * 24 * 3600)));
    assert_eq!(s.node.resources.memory_bytes_max, gateway_core(256 * MIB));
    assert_eq!(s.node.resources.storage_bytes_max, 64 << 30);
    assert_eq!(s.node.gateway.streams_max, 100_000);
    assert_eq!(s.node.gateway.pending_bytes_max, 12_513_280, "12220 KiB: a sixteenth of the core's memory");
    assert_eq!((s.logging.format, s.logging.level.as_str()), (LogFormat::Json, "info,outpost=debug"));
}

/// `text` with every commented-out setting (`# key = value`) made active.
fn uncommented(text: &str) -> String {
    let setting = |line: &str| {
        let key_end = line.find(" = ").unwrap_or(0);
        key_end > 0 && line[..key_end].bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    };
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if setting(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_examples_show_the_values_they_get_in_their_commented_out_lines() {
    for (file, role) in [("edge.toml", Role::Edge), ("gateway.toml", Role::Gateway)] {
        let text = std::fs::read_to_string(example(file)).expect("the example exists");
        let all = uncommented(&text);
        assert_ne!(all, text, "{file} shows commented-out settings");
        let as_is = parse(&text, None, role).unwrap_or_else(|e| panic!("{file}: {e}"));
        let with_all = parse(&all, None, role).unwrap_or_else(|e| panic!("{file} uncommented: {e}"));
        assert_eq!(as_is, with_all, "{file}: a commented-out line shows another value than the one the file gets");
    }
}

#[test]
fn explicit_limits_beat_the_fit_and_small_budgets_validate_through_it() {
    let fitted = parse("[resources]\nmax_memory = \"8MiB\"\n", None, Role::Edge)
        .expect("8 MiB is enough once the limits are fitted");
    assert_eq!(fitted.node.resources.memory_bytes_max, core(8 * MIB));
    assert_eq!(fitted.node.resources.memory_bytes_max, 8 * MIB - fitted.shell.reserve);
    assert_eq!(fitted.shell.reserve, 1_747_353, "4 + 4 connections, a fetch answer, 512 KiB for request bodies");
    assert_eq!(fitted.node.log.pending_bytes_max, 415_078, "a sixteenth of the core's 6.3 MiB");
    assert_eq!(fitted.node.sync.batch_bytes_max, 64 * KIB as u32);
    assert_eq!(fitted.node.sync.window_bytes_max, 415_078, "a sixteenth of the core's memory");

    let text = "[resources]\nmax_memory = \"8MiB\"\n\
                [log]\nwrite_buffer = \"256 KiB\"\n[sync]\nwindow = \"128KiB\"\n";
    let explicit = parse(text, None, Role::Edge).expect("smaller than the fit");
    assert_eq!(explicit.node.log.pending_bytes_max, 256 * KIB);
    assert_eq!(explicit.node.sync.window_bytes_max, 128 * KIB);
    assert_eq!(explicit.node.sync.batch_bytes_max, fitted.node.sync.batch_bytes_max, "the rest stays fitted");

    // The core's share reaches the 64 MiB of the larger batches from a budget of 78 MiB.
    let batch = |mib: u64| {
        let s = parse(&format!("[resources]\nmax_memory = \"{mib}MiB\"\n"), None, Role::Edge).expect("valid");
        (s.node.resources.memory_bytes_max >= 64 * MIB, s.node.sync.batch_bytes_max)
    };
    assert_eq!(batch(77), (false, 64 * KIB as u32));
    assert_eq!(batch(78), (true, 256 * KIB as u32));

    // The fit lowers the largest value with the memory; a written one goes above it.
    let default = parse("", None, Role::Edge).expect("the defaults are valid");
    assert!(default.node.log.value_bytes_max < MIB as u32);
    let raised = parse("[log]\nvalue_max = \"1MiB\"\n", None, Role::Edge).expect("1 MiB values fit in 64 MiB");
    assert_eq!(raised.node.log.value_bytes_max, MIB as u32);
    // The shell is sized for the larger values, and the core gets less of the 64 MiB.
    assert!(raised.shell.request_frame_max > default.shell.request_frame_max);
    assert_eq!(raised.shell.reserve, 12_992_512);
    assert_eq!(raised.node.resources.memory_bytes_max, 64 * MIB - raised.shell.reserve);
    assert!(raised.node.resources.memory_bytes_max < default.node.resources.memory_bytes_max);
}

#[test]
fn sizes_take_decimal_and_binary_units() {
    let window = |value: &str| {
        let text = format!("[sync]\nbatch_bytes = 1000\nwindow = {value}\n");
        parse(&text, None, Role::Edge).map(|s| s.node.sync.window_bytes_max).map_err(|e| e.to_string())
    };
    assert_eq!(window("4096"), Ok(4096));
    assert_eq!(window("\"4096\""), Ok(4096));
    assert_eq!(window("\"1000 B\""), Ok(1000));
    assert_eq!(window("\"2KB\""), Ok(2_000));
    assert_eq!(window("\"3 MB\""), Ok(3_000_000));
    assert_eq!(window("\"512KiB\""), Ok(512 * KIB));
    assert_eq!(window("\"2 MiB\""), Ok(2 * MIB));
    for bad in ["\"1.5MiB\"", "\"1 mib\"", "\"MiB\"", "-1", "0", "\"0KiB\"", "\"99999999TiB\""] {
        let e = window(bad).expect_err(bad);
        assert!(e.starts_with("<defaults>:3: sync.window: "), "{bad}: {e}");
    }
}

/// Each bad file, the role reading it, the line the error names and what its Display holds.
const BAD_FILES: &[(&str, Role, Option<usize>, &str)] = &[
    (
        "[node]\nname = \"kiosk-7\"\n\n[sync]\nbatch_records = 1024\nwindw = \"1MiB\"\n",
        Role::Edge,
        Some(6),
        "edge.toml:6: sync.windw: unknown field `windw`, expected one of `batch_records`",
    ),
    ("[log]\nsegment = \"8 mb\"\n", Role::Edge, Some(2), "edge.toml:2: log.segment: \"8 mb\" is not a size; expected"),
    (
        "[sync]\nsession_timeout = \"20\"\n",
        Role::Edge,
        Some(2),
        "edge.toml:2: sync.session_timeout: \"20\" is not a duration; expected a number and a unit",
    ),
    (
        "[[topics]]\nname = \"a\"\nretention_age = \"a week\"\n",
        Role::Edge,
        Some(3),
        "edge.toml:3: topics[0].retention_age: \"a week\" is not a duration",
    ),
    (
        "[[topics]]\nname = \"a\"\nsync = \"sideways\"\n",
        Role::Edge,
        Some(3),
        "edge.toml:3: topics[0].sync: unknown direction \"sideways\"; expected one of up, down, both, local",
    ),
    (
        "[gateway]\nlisten = \"0.0.0.0:7400\"\n",
        Role::Edge,
        Some(1),
        "edge.toml:1: gateway: only a gateway accepts edges; remove [gateway] from an edge's file",
    ),
    (
        "[node]\nname = \"gw\"\n\n[cloud]\ntoken = \"x\"\n",
        Role::Gateway,
        Some(4),
        "edge.toml:4: cloud: no gateway: a gateway with [cloud] is a middle tier and relays to the gateway above it",
    ),
    (
        "[mesh]\nenabled = true\n",
        Role::Edge,
        Some(2),
        "edge.toml:2: mesh.enabled: the daemon does not run site clusters (mesh) yet (they run in the simulator); remove [mesh] or set enabled = false",
    ),
    (
        "local_topics = [\"cache\", \"b\"]\n\n[[topics]]\nname = \"a\"\n\n[[topics]]\nname = \"b\"\n",
        Role::Edge,
        Some(1),
        "edge.toml:1: local_topics[1]: \"b\" is also topics[1].name; a topic is in [[topics]] or in local_topics",
    ),
    ("local_topics = [\"a\", \"a\"]\n", Role::Edge, Some(1), "edge.toml:1: local_topics[1]: duplicate topic \"a\""),
    (
        "[[topics]]\nname = \"a\"\nlocal_topics = [\"b\"]\n",
        Role::Edge,
        Some(3),
        "local_topics is a top-level key, so it must come before the first [table] of the file",
    ),
    (
        "[sync]\nbatch_bytes = \"64KiB\"\nwindow = \"1KiB\"\n",
        Role::Edge,
        Some(3),
        "edge.toml:3: sync.window: must hold at least one batch",
    ),
    (
        "[sync]\nbatch_bytes = \"2MiB\"\n",
        Role::Edge,
        None,
        "edge.toml: sync.window: must hold at least one batch (the file does not set sync.window: 1 MiB is the \
         default fitted to resources.max_memory and resources.max_storage; set window under [sync])",
    ),
    (
        "[log]\nvalue_max = \"1MiB\"\nwrite_buffer = \"64KiB\"\n",
        Role::Edge,
        Some(3),
        "edge.toml:3: log.write_buffer: must hold the largest record (1052864 bytes with log.value_max); raise it \
         or lower log.value_max",
    ),
    (
        "[resources]\nmax_memory = \"2MiB\"\n",
        Role::Edge,
        Some(2),
        "raise it, or lower log.write_buffer, sync.batch_bytes, sync.window or log.read_chunk",
    ),
    (
        "[resources]\nmax_memory = \"8MiB\"\n",
        Role::Gateway,
        Some(2),
        "edge.toml:2: resources.max_memory: 8.0 MiB is the whole process's budget (with this file, at least 113.0 MiB \
         is needed); the shell keeps 9.7 MiB of it (4 connections per listener, 512.0 KiB for request bodies), and \
         the core's 0 B is less than the",
    ),
    (
        "[node]\nname = \"kiosk 7\"\n",
        Role::Edge,
        Some(2),
        "edge.toml:2: node.name: \"kiosk 7\" is not a valid node name; expected 1 to 64 ASCII letters",
    ),
    (
        "[node]\nname = \"gateway\"\n",
        Role::Edge,
        Some(2),
        "edge.toml:2: node.name: \"gateway\" is the gateway's name (cloud.gateway_name)",
    ),
    (
        "[node]\nname = \"kiosk-7\"\n[cloud]\ngateway_name = \"kiosk-7\"\n",
        Role::Edge,
        Some(4),
        "edge.toml:4: cloud.gateway_name: \"kiosk-7\" is this edge's own name; expected the gateway's node.name",
    ),
    (
        "[api]\nhttp = \"localhost:7480\"\n",
        Role::Edge,
        Some(2),
        "edge.toml:2: api.http: \"localhost:7480\" is not an address to listen on",
    ),
    (
        "[api]\nbinary = \"127.0.0.1:74810\"\n",
        Role::Edge,
        Some(2),
        "edge.toml:2: api.binary: \"127.0.0.1:74810\" is not an address to listen on",
    ),
    (
        "[api]\nhttp = \"0.0.0.0:7400\"\n",
        Role::Gateway,
        Some(2),
        "edge.toml:2: api.http: 0.0.0.0:7400 takes the port of gateway.listen (127.0.0.1:7400); give each its own",
    ),
    (
        "[api]\nhttp = \"127.0.0.1:7000\"\nbinary = \"127.0.0.1:7000\"\n",
        Role::Edge,
        Some(3),
        "edge.toml:3: api.binary: 127.0.0.1:7000 takes the port of api.http (127.0.0.1:7000)",
    ),
    (
        "[cloud]\ngateway = \"gateway.example.com\"\n",
        Role::Edge,
        Some(2),
        "edge.toml:2: cloud.gateway: \"gateway.example.com\" is not host:port",
    ),
    (
        "[gateway.tokens]\n\"kiosk 7\" = \"s3cret\"\n",
        Role::Gateway,
        Some(2),
        "edge.toml:2: gateway.tokens.kiosk 7: \"kiosk 7\" is not a valid node name",
    ),
    (
        "[logging]\nformat = \"xml\"\n",
        Role::Edge,
        Some(2),
        "edge.toml:2: logging.format: unknown format \"xml\"; expected human or json",
    ),
    (
        "# Dotted keys and inline tables are located as well.\nsync.batch_bytes = \"64KiB\"\nsync.window = \"1KiB\"\n",
        Role::Edge,
        Some(3),
        "edge.toml:3: sync.window: must hold at least one batch",
    ),
    (
        "\n[resources]\nmax_memory = \"64MiB\"\n\n[log]\nwrite_buffer = \"64KiB\"\nvalue_max = \"1MiB\"\n",
        Role::Edge,
        Some(6),
        "edge.toml:6: log.write_buffer: must hold the largest record",
    ),
    ("sync = { batch_records = 0 }\n", Role::Edge, Some(1), "edge.toml:1: sync.batch_records: must be 1 to 65536"),
    (
        "[[topics]]\nname = \"a\"\n\n[[topics]]\npriority = 3\n",
        Role::Edge,
        Some(4),
        "edge.toml:4: topics[1]: missing field `name`",
    ),
    (
        "[[topics]]\nname = \"a\"\npriority = 300\n",
        Role::Edge,
        Some(3),
        "edge.toml:3: topics[0].priority: invalid value: integer `300`, expected an integer from 0 to 255",
    ),
    ("[[topics]]\nname = \"\"\n", Role::Edge, Some(2), "edge.toml:2: topics[0].name: must be 1 to 255 bytes"),
    ("[sync\nwindow = 1\n", Role::Edge, Some(1), "edge.toml:1: invalid table header"),
    (
        "[[topics]]\nname = \"promos\"\nsync = \"down\"\nsubscribers = [\"till-1\"]\n",
        Role::Edge,
        Some(4),
        "edge.toml:4: topics[0].subscribers: only a gateway sends topics down to subscribers",
    ),
    (
        "[[topics]]\nname = \"sales\"\nsubscribers = [\"till-1\"]\n\n[gateway]\nopen = true\n",
        Role::Gateway,
        Some(3),
        "edge.toml:3: topics[0].subscribers: topic \"sales\": only a gateway's topics that go down have subscribers",
    ),
    (
        "[[topics]]\nname = \"promos\"\nsync = \"down\"\nsubscribers = []\n\n[gateway]\nopen = true\n",
        Role::Gateway,
        Some(4),
        "edge.toml:4: topics[0].subscribers: empty, so no edge would get the topic; leave it out",
    ),
    (
        "[[topics]]\nname = \"promos\"\nsync = \"down\"\nsubscribers = [\"till-1\", \"kiosk-*\"]\n\n[gateway.tokens]\ntill-1 = \"a\"\n",
        Role::Gateway,
        Some(4),
        "topics[0].subscribers[1]: \"kiosk-*\" matches no name in [gateway.tokens] or gateway.relays",
    ),
    (
        "[[topics]]\nname = \"promos\"\nsync = \"down\"\nsubscribers = [\"@store-9\"]\n\n[gateway.groups]\nstore-1 = [\"till-1\"]\n",
        Role::Gateway,
        Some(4),
        "topics[0].subscribers[0]: no group \"store-9\" in [gateway.groups] (it has: store-1)",
    ),
    (
        "[node]\nname = \"box-1\"\n\n[cloud]\ngateway = \"10.0.0.1:7400\"\n\n[gateway]\nup_retention = true\n",
        Role::Gateway,
        Some(8),
        "gateway.up_retention: a middle tier (a gateway with [cloud]) always deletes what the tier above acknowledged",
    ),
];

#[test]
fn a_topic_goes_down_to_the_edges_its_subscribers_name_match_or_group() {
    let text = "[[topics]]\nname = \"promos\"\nsync = \"down\"\nsubscribers = [\"till-*\", \"@north\"]\n\n\
                [[topics]]\nname = \"config\"\nsync = \"down\"\n\n\
                [gateway]\nrelays = [\"box-2\"]\n\n[gateway.groups]\nnorth = [\"kiosk-7\", \"box-*\"]\n\n\
                [gateway.tokens]\ntill-1 = \"a\"\ntill-2 = \"b\"\nkiosk-3 = \"c\"\nbox-2 = \"d\"\n";
    let s = parse(text, None, Role::Gateway).expect("a valid file");
    let mut expected: Vec<NodeId> = ["till-1", "till-2", "kiosk-7", "box-2"].iter().map(|n| node_id_of(n)).collect();
    expected.sort();
    let mut got = s.node.topics[0].subscribers.clone().expect("promos names its subscribers");
    got.sort();
    assert_eq!(got, expected, "kiosk-3 is in no pattern or group; kiosk-7 is named though no token lists it");
    assert_eq!(s.node.topics[1].subscribers, None, "config goes to every edge");
}

#[test]
fn a_both_topic_is_a_half_each_way_and_its_subscribers_get_the_half_that_comes_down() {
    let text = "[[topics]]\nname = \"orders\"\nsync = \"both\"\nsubscribers = [\"till-1\"]\n\n\
                [[topics]]\nname = \"sales\"\n\n[gateway.tokens]\ntill-1 = \"a\"\n";
    let s = parse(text, None, Role::Gateway).expect("a valid file");
    let halves: Vec<(&str, SyncDirection, bool, Option<Vec<NodeId>>)> =
        s.node.topics.iter().map(|t| (t.name.as_str(), t.sync, t.both_ways, t.subscribers.clone())).collect();
    assert_eq!(
        halves,
        [
            ("orders", SyncDirection::EdgeToCloud, true, None),
            ("sales", SyncDirection::EdgeToCloud, false, None),
            ("orders", SyncDirection::CloudToEdge, true, Some(vec![node_id_of("till-1")])),
        ],
        "the half that comes down is last, so every other topic keeps its place (and its directory)"
    );
    let edge = parse("[[topics]]\nname = \"orders\"\nsync = \"bidirectional\"\n", None, Role::Edge);
    assert_eq!(edge.expect("valid").node.topics.len(), 2);
}

#[test]
fn a_topic_with_a_conflict_strategy_is_keyed_with_its_limits() {
    let text = "[[topics]]\nname = \"prices\"\nsync = \"both\"\nconflict = \"last-write-wins\"\n\
                keyed_state_max = \"1MiB\"\n\n[[topics]]\nname = \"stock\"\nconflict = \"counter\"\n\n\
                [[topics]]\nname = \"events\"\n";
    let s = parse(text, None, Role::Edge).expect("a valid file");
    type Keyed = Option<(Strategy, u64, u64)>;
    let keyed: Vec<(&str, Keyed)> = s
        .node
        .topics
        .iter()
        .map(|t| {
            let k = t.keyed.as_ref().map(|k| (k.strategy, k.limits.state_bytes_max, k.limits.conflict_log_bytes_max));
            (t.name.as_str(), k)
        })
        .collect();
    // The fit gives the two keyed topics an eighth of the core's memory (below the 4 MiB
    // default at a default edge), each conflict log a sixteenth of that; the file's
    // keyed_state_max beats the fit.
    let fitted = s.node.resources.memory_bytes_max / 8 / 2;
    assert!(fitted < KeyedTopic::DEFAULT_LIMITS.state_bytes_max, "{fitted}");
    let log = fitted / 16;
    assert_eq!(
        keyed,
        [
            ("prices", Some((Strategy::LastWriteWins, 1 << 20, log))),
            ("stock", Some((Strategy::Counter, fitted, log))),
            ("events", None),
            ("prices", Some((Strategy::LastWriteWins, 1 << 20, log))),
        ],
        "both halves of a both topic are keyed alike"
    );
    // Three keyed topics both ways at the defaults fit a default edge (the core needed
    // 58.0 MiB of its 52.4 before the fit sized keyed states).
    let three: String = ["prices", "stock", "notes"]
        .iter()
        .map(|n| format!("[[topics]]\nname = \"{n}\"\nsync = \"both\"\nconflict = \"max\"\n\n"))
        .collect();
    let s = parse(&three, None, Role::Edge).expect("three keyed topics fit a default edge");
    assert!(s.node.topics.iter().all(|t| t.keyed.as_ref().is_some_and(|k| k.limits.state_bytes_max < 4 << 20)));
    let e = error("[[topics]]\nname = \"p\"\nconflict = \"newest\"\n", Role::Edge);
    assert_eq!((e.line, e.field.as_str()), (Some(3), "topics[0].conflict"));
    assert!(e.message.contains("expected one of last-write-wins, first-write-wins"), "{e}");
    let e = error("[[topics]]\nname = \"p\"\nkeyed_state_max = \"1MiB\"\n", Role::Edge);
    assert!(e.message.contains("without a conflict strategy"), "{e}");
    let e = error("[[topics]]\nname = \"p\"\nconflict = \"max\"\neviction = \"oldest\"\n", Role::Edge);
    assert_eq!(e.field, "topics[0].eviction");
    assert!(e.message.contains("keeps its records"), "{e}");
    let e = error("[[topics]]\nname = \"p\"\nconflict = \"max\"\nencrypt = true\nkeys = \"k\"\n", Role::Edge);
    assert_eq!(e.field, "topics[0].encrypt");
}

/// `custom` takes a WebAssembly module, loaded and checked when the file is, with what one
/// call may spend; every mistake names its field and what to do.
#[test]
fn a_custom_topic_loads_its_merge_module_when_the_file_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/merge/notes.wat");
    let text = format!(
        "[[topics]]\nname = \"notes\"\nconflict = \"custom\"\nmerge = {:?}\nmerge_fuel = 5000\nmerge_memory_max = \"1MiB\"\n",
        example.display().to_string()
    );
    let s = parse(&text, None, Role::Edge).expect("a valid file");
    let k = s.node.topics[0].keyed.as_ref().expect("keyed");
    assert_eq!(k.strategy, Strategy::Custom);
    assert!(k.merge.is_some(), "the module is loaded");
    // One call at a time: the module's memory, the input and the answer, kept from the core.
    assert_eq!(s.shell.merge_bytes, 2 * (1 << 20) + (1 << 20));
    let plain = parse("[[topics]]\nname = \"notes\"\nconflict = \"keep-both\"\n", None, Role::Edge).expect("valid");
    assert_eq!(plain.shell.merge_bytes, 0);
    assert_eq!(s.shell.reserve, plain.shell.reserve + s.shell.merge_bytes);
    let at = |text: &str| {
        let e = error(text, Role::Edge);
        (e.field, e.message)
    };
    let (field, message) = at("[[topics]]\nname = \"n\"\nconflict = \"custom\"\n");
    assert_eq!(field, "topics[0].merge");
    assert!(message.contains("needs merge = \"path/to/module.wasm\""), "{message}");
    let (field, message) = at("[[topics]]\nname = \"n\"\nconflict = \"custom\"\nmerge = \"/no/such/merge.wasm\"\n");
    assert_eq!(field, "topics[0].merge");
    assert!(message.contains("cannot read the merge module /no/such/merge.wasm"), "{message}");
    let (field, message) = at(&format!(
        "[[topics]]\nname = \"n\"\nconflict = \"keep-both\"\nmerge = {:?}\n",
        example.display().to_string()
    ));
    assert_eq!(field, "topics[0].merge");
    assert!(message.contains("serves conflict = \"custom\" only"), "{message}");
    let (field, _) = at("[[topics]]\nname = \"n\"\nmerge_fuel = 10\n");
    assert_eq!(field, "topics[0].merge_fuel");
    let e = error("[[topics]]\nname = \"p\"\nconflict = \"newest\"\n", Role::Edge);
    assert!(e.message.contains("add-wins-set, custom"), "custom is one of the strategies: {e}");
}

#[test]
fn bad_files_are_refused_with_the_line_and_field_to_fix() {
    for &(text, role, line, expected) in BAD_FILES {
        let e = error(text, role);
        let shown = e.to_string();
        assert_eq!(e.line, line, "{shown}");
        assert!(shown.contains(expected), "{shown:?}\nlacks {expected:?}");
        assert!(!shown.contains('\n'), "not one line: {shown}");
        assert_eq!(e.path.as_deref(), Some(Path::new("edge.toml")));
    }
}

#[test]
fn what_a_new_user_gets_wrong_is_explained_in_the_file_s_terms() {
    // A type error names the numbers allowed, not Rust's types.
    let e = error("[[topics]]\nname = \"a\"\npriority = \"high\"\n", Role::Edge).to_string();
    assert!(e.contains("expected an integer from 0 to 255") && !e.contains("u8"), "{e}");
    // Too little memory: the smallest budget that works, and only advice the file can follow.
    let e = error("[resources]\nmax_memory = \"2MiB\"\n", Role::Edge).to_string();
    assert!(e.contains("at least 6.0 MiB is needed"), "{e}");
    assert!(!e.contains("fetch."), "[fetch] is not a section of the file: {e}");
    assert!(parse("[resources]\nmax_memory = \"6MiB\"\n", None, Role::Edge).is_ok(), "and that minimum does work");
    assert!(parse("[resources]\nmax_memory = \"5MiB\"\n", None, Role::Edge).is_err(), "and it is the minimum");
    // A token the handshake cannot carry is refused at load, not by a panic at the first connect.
    let text = format!("[cloud]\ntoken = \"{}\"\n", "t".repeat(256));
    let e = error(&text, Role::Edge);
    assert_eq!((e.line, e.field.as_str()), (Some(2), "cloud.token"));
    assert!(e.message.contains("at most 255 bytes"), "{e}");
    let text = format!("[gateway.tokens]\n\"edge-1\" = \"{}\"\n", "t".repeat(300));
    assert_eq!(error(&text, Role::Gateway).field, "gateway.tokens.edge-1");
    assert!(parse(&format!("[cloud]\ntoken = \"{}\"\n", "t".repeat(255)), None, Role::Edge).is_ok());
    // A gateway is closed to unknown edges unless the file opens it; a web page's origin
    // must be one.
    let open = parse("[gateway]\nopen = true\n", None, Role::Gateway).expect("valid");
    assert!(open.gateway.expect("a gateway").open);
    assert!(!parse("", None, Role::Gateway).expect("valid").gateway.expect("a gateway").open);
    let e = error("[api]\nallowed_origins = [\"dash.local\"]\n", Role::Edge);
    assert_eq!(e.field, "api.allowed_origins[0]");
}

#[test]
fn links_that_leave_the_host_are_encrypted_unless_the_file_says_plaintext() {
    let at = |text: &str, role| {
        let e = error(text, role);
        (e.line, e.field, e.message)
    };
    // On this host only: clear text without a word.
    let local = parse("[cloud]\ngateway = \"localhost:7400\"\n", None, Role::Edge).expect("loopback");
    assert_eq!(local.links, LinkSecurity::Plain { explicit: false });
    let (line, field, message) = at("[cloud]\ngateway = \"10.0.0.1:7400\"\n", Role::Edge);
    assert_eq!((line, field.as_str()), (Some(2), "cloud.gateway"));
    assert!(
        message.contains("add [tls] with ca, cert and key") && message.contains("tls.plaintext = true"),
        "{message}"
    );
    let (line, field, _) = at("[gateway]\nlisten = \"0.0.0.0:7400\"\n", Role::Gateway);
    assert_eq!((line, field.as_str()), (Some(2), "gateway.listen"));
    let plain = parse("[cloud]\ngateway = \"10.0.0.1:7400\"\n[tls]\nplaintext = true\n", None, Role::Edge);
    assert_eq!(plain.expect("a test network").links, LinkSecurity::Plain { explicit: true });
    let cases = [
        ("[tls]\nplaintext = true\nca = \"ca.pem\"\n", Role::Edge, "tls.plaintext", "choose clear text"),
        ("[tls]\ncert = \"e.pem\"\n", Role::Edge, "tls", "no ca: set tls.ca"),
        ("[tls]\nca = \"ca.pem\"\ncert = \"e.pem\"\n", Role::Edge, "tls.cert", "its private key goes with it"),
        ("[tls]\nca = \"ca.pem\"\nkey = \"e.key\"\n", Role::Edge, "tls.key", "its certificate goes with it"),
        ("[tls]\nca = \"\"\n", Role::Edge, "tls.ca", "empty"),
        ("[tls]\nca = \"ca.pem\"\ncrl = \"crl.pem\"\n", Role::Edge, "tls.crl", "only a gateway"),
        ("[tls]\nca = \"ca.pem\"\n", Role::Gateway, "tls", "a gateway proves its name"),
        ("[tls]\nca = \"ca.pem\"\nkeys = \"x\"\n", Role::Edge, "tls.keys", "unknown field"),
    ];
    for (text, role, want_field, want) in cases {
        let (line, field, message) = at(text, role);
        assert_eq!(field, want_field, "{text}");
        assert!(line.is_some(), "{text}: points at a line");
        assert!(message.contains(want), "{text}: {message}");
    }
    // Token mode: the CA alone, on an edge.
    let token =
        parse("[cloud]\ngateway = \"10.0.0.1:7400\"\ntoken = \"t\"\n[tls]\nca = \"ca.pem\"\n", None, Role::Edge);
    let want = LinkSecurity::Tls(TlsFiles { ca: PathBuf::from("ca.pem"), identity: None, crl: None });
    assert_eq!(token.expect("server-authenticated TLS and a token").links, want);
}

#[test]
fn an_encrypted_topic_is_sealed_where_its_keys_are_and_a_gateway_holds_none() {
    let edge = parse(
        "[[topics]]\nname = \"pos\"\nencrypt = true\nkeys = \"pos.keys\"\n[[topics]]\nname = \"t\"\n",
        None,
        Role::Edge,
    )
    .expect("an edge with keys");
    assert_eq!(edge.encrypted, BTreeMap::from([("pos".to_owned(), Some(PathBuf::from("pos.keys")))]));
    let gateway = parse("[[topics]]\nname = \"pos\"\nencrypt = true\n", None, Role::Gateway).expect("no keys");
    assert_eq!(gateway.encrypted, BTreeMap::from([("pos".to_owned(), None)]));
    let cases = [
        ("[[topics]]\nname = \"pos\"\nencrypt = true\nkeys = \"k\"\n", Role::Gateway, "must not hold the keys"),
        ("[[topics]]\nname = \"pos\"\nkeys = \"k\"\n", Role::Edge, "set without encrypt = true"),
        ("[[topics]]\nname = \"pos\"\nencrypt = true\nkeys = \"\"\n", Role::Edge, "empty"),
    ];
    for (text, role, want) in cases {
        let e = error(text, role);
        let keys_line = text.lines().position(|l| l.starts_with("keys")).map(|i| i + 1);
        assert_eq!((e.line, e.field.as_str()), (keys_line, "topics[0].keys"), "{text}");
        assert!(e.message.contains(want), "{text}: {e}");
    }
}

#[test]
fn a_classified_topic_is_written_and_sent_only_where_its_zones_allow() {
    let topic = "[[topics]]\nname = \"patients\"\nclassification = \"gdpr\"\n";
    let edge = |node_zone: &str, cloud_zone: &str| {
        format!("[node]\nname = \"clinic-7\"\n{node_zone}[cloud]\ngateway_name = \"gw-eu\"\n{cloud_zone}{topic}")
    };
    let ok = parse(&edge("zone = \"eu\"\n", "zone = \"eu\"\n"), None, Role::Edge).expect("placed");
    let p = ok.node.topics[0].placement.clone().expect("classified");
    assert_eq!((p.classification.as_str(), &p.zones[..]), ("gdpr", &["eu".to_owned()][..]), "the default table");
    assert_eq!((ok.node.zone.as_deref(), ok.node.upstream_zone.as_deref()), (Some("eu"), Some("eu")));
    // The gateway in another zone: the route, named as the simulator names it.
    let e = error(&edge("zone = \"eu\"\n", "zone = \"us\"\n"), Role::Edge);
    let route = p.refuses_route("patients", ("clinic-7", Some("eu")), ("gw-eu", Some("us"))).expect("us is not eu");
    assert_eq!((e.field.as_str(), e.line, e.message.as_str()), ("topics[0].classification", Some(9), route.as_str()));
    let e = error(&edge("zone = \"eu\"\n", ""), Role::Edge);
    assert!(
        e.message.contains("(no zone) leaves them") && e.message.ends_with("(set cloud.zone to the gateway's zone)"),
        "{e}"
    );
    let e = error(&edge("zone = \"us\"\n", "zone = \"eu\"\n"), Role::Edge);
    assert!(e.message.contains("may be held only in zones [eu]; this node \"clinic-7\" is in zone us"), "{e}");
    // A middle tier whose upstream is outside the zones keeps the topic: it is its top.
    let tier = "[node]\nname = \"gw-eu\"\nzone = \"eu\"\n[cloud]\ngateway = \"127.0.0.1:7400\"\nzone = \"global\"\n";
    let tier = parse(&format!("{tier}[gateway]\nopen = true\n{topic}"), None, Role::Gateway).expect("a top for gdpr");
    assert!(!tier.node.sends_up(&tier.node.topics[0]));
    // [placement] adds classifications; an unknown one is named with those known.
    let own = format!("[placement]\nlab = [\"eu\", \"ch\"]\n{}", topic.replace("gdpr", "lab"));
    let lab = parse(&format!("[node]\nzone = \"ch\"\n[cloud]\nzone = \"eu\"\n{own}"), None, Role::Edge).expect("lab");
    assert_eq!(lab.node.topics[0].placement.as_ref().map(|p| p.zones.len()), Some(2));
    let e = error(&topic.replace("gdpr", "pii"), Role::Edge);
    assert!(e.message.starts_with("unknown classification \"pii\"; known: gdpr, hipaa, sox"), "{e}");
}

#[test]
fn an_api_open_to_other_machines_needs_its_two_tokens() {
    let cases = [
        ("[api]\nhttp = \"0.0.0.0:7480\"\n", "api.http", 2, "accepts connections from other machines"),
        ("[api]\nbinary = \"10.0.0.5:7481\"\n", "api.binary", 2, "set api.token and api.admin_token"),
        ("[api]\ntoken = \"0123456789abcdef\"\n", "api.token", 2, "set without api.admin_token"),
        ("[api]\nadmin_token = \"0123456789abcdef\"\n", "api.admin_token", 2, "set without api.token"),
        (
            "[api]\ntoken = \"0123456789abcdef\"\nadmin_token = \"0123456789abcdef\"\n",
            "api.admin_token",
            3,
            "the same as api.token",
        ),
        ("[api]\ntoken = \"\"\n", "api.token", 2, "empty"),
        ("[api]\ntoken = \"s3cret\"\n", "api.token", 2, "6 bytes: a short token can be guessed"),
    ];
    for (text, field, line, want) in cases {
        let e = error(text, Role::Edge);
        assert_eq!((e.line, e.field.as_str()), (Some(line), field), "{text}");
        assert!(e.message.contains(want), "{text}: {e}");
    }
    let open = "[api]\nhttp = \"0.0.0.0:7480\"\ntoken = \"producers-0123456\"\nadmin_token = \"operators-0123456\"\n";
    let s = parse(open, None, Role::Edge).expect("both tokens");
    assert!(s.api_auth.required());
    assert_eq!(s.api_auth.admin_token(), Some("operators-0123456"));
    assert!(!parse("", None, Role::Edge).expect("defaults").api_auth.required(), "loopback: no token needed");
}

#[test]
fn an_unknown_eviction_policy_reads_as_documented() {
    let text = "[node]\nname = \"kiosk-7\"\n\n[cloud]\ngateway = \"10.0.0.5:7400\"\n\n\
                [[topics]]\nname = \"pos.transactions\"\n\n[[topics]]\nname = \"telemetry\"\n\
                eviction = \"fifo\"\n";
    let e = error(text, Role::Edge);
    assert_eq!((e.line, e.field.as_str()), (Some(12), "topics[1].eviction"));
    assert_eq!(
        e.to_string(),
        "edge.toml:12: topics[1].eviction: unknown policy \"fifo\"; expected one of keep, oldest, priority, lru, compact"
    );
}

#[test]
fn a_missing_config_file_is_named_with_how_to_run_without_it() {
    let path = std::env::temp_dir().join("outpost-config-test-no-such-file.toml");
    let e = load(Some(&path), Role::Edge).expect_err("the file does not exist");
    assert_eq!(e.path.as_deref(), Some(path.as_path()));
    assert_eq!(e.line, None);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: no such file; omit --config to read ./outpost.toml, or the defaults when there is none",
            path.display()
        )
    );
}

/// docs/OPERATIONS.md shows these errors as the loader prints them for config/edge.toml
/// with one value changed; keep the two in step.
#[test]
fn the_error_examples_of_the_operations_guide_are_what_the_loader_prints() {
    let guide = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md"))
        .expect("docs/OPERATIONS.md exists");
    let text = std::fs::read_to_string(example("edge.toml")).expect("the example exists");
    let changes = [
        ("eviction = \"oldest\"", "eviction = \"fifo\""),
        ("bandwidth = \"1 MiB\"", "bandwith = \"1 MiB\""),
        ("retention_age = \"7d\"", "retention_age = \"a week\""),
        ("# window = \"1 MiB\"", "window = \"16 KiB\""),
        ("max_memory = \"64 MiB\"", "max_memory = \"4 MiB\""),
        ("[sync]\n", "[sync]\nbatch_bytes = \"2 MiB\"\n"),
    ];
    for (from, to) in changes {
        assert!(text.contains(from), "config/edge.toml lacks {from:?}");
        let e = error(&text.replacen(from, to, 1), Role::Edge);
        assert!(guide.contains(&format!("\n{e}\n")), "docs/OPERATIONS.md lacks the error for {to:?}:\n{e}");
    }
    let missing = load(Some(Path::new("/etc/outpost/edge.toml")), Role::Edge).expect_err("no such file here");
    assert!(guide.contains(&format!("\n{missing}\n")), "docs/OPERATIONS.md lacks:\n{missing}");
}

//! The budgets against real configurations: `Node::check_config` (the config's own rules,
//! then `resources::check_budgets` with the real sizes of `Node`) for configs that are
//! too small, and for what `fit_to_budgets` and `fit_to_device` make.

use outpost_core::config::{Eviction, NodeConfig, Role, SyncDirection, TopicConfig};
use outpost_core::resources::{fit_to_budgets, fit_to_device, DeviceFit};
use outpost_core::types::NodeId;
use outpost_core::Node;

#[test]
fn budgets_too_small_say_what_to_change() {
    let mut cfg = NodeConfig::new(NodeId(1), Role::Edge, vec![TopicConfig::new("t", SyncDirection::Local)]);
    cfg.resources.memory_bytes_max = 1 << 20;
    let e = Node::check_config(&cfg).expect_err("1 MiB cannot hold the default limits");
    assert_eq!(e.field, "resources.memory_bytes_max");
    assert!(e.message.contains("1.0 MiB is less than the"), "{e}");
    assert!(e.message.contains("lower log.pending_bytes_max"), "{e}");
    cfg.resources.memory_bytes_max = 64 << 20;
    cfg.resources.storage_bytes_max = 8 << 20;
    let e = Node::check_config(&cfg).expect_err("8 MiB cannot hold four 8 MiB segments");
    assert_eq!(e.field, "resources.storage_bytes_max");
    assert!(e.message.contains("lower log.segment_bytes_max"), "{e}");
}

/// A middle tier (a gateway with an upstream) relays: its plan adds a sender's streams of
/// whole stored batches and its marks per origin. At the default gateway budget it fits.
#[test]
fn a_fitted_middle_tier_passes_at_the_default_gateway_budget() {
    let topics = vec![
        TopicConfig::new("sales", SyncDirection::EdgeToCloud),
        TopicConfig::new("promotions", SyncDirection::CloudToEdge),
    ];
    let mut cfg = NodeConfig::new(NodeId(1), Role::Gateway, topics);
    cfg.upstream = Some(NodeId(2));
    let (memory, storage) = (cfg.resources.memory_bytes_max, cfg.resources.storage_bytes_max);
    fit_to_budgets(&mut cfg, memory, storage);
    assert_eq!(Node::check_config(&cfg), Ok(()));
}

/// A gateway's senders of what goes down plan a read and a held message per topic: with
/// several such topics the fit lowers how many run at once, so the default shell's core
/// share still holds them (two topics did not fit the daemon's default 256 MiB).
/// A middle tier relays up and sends down: with a `both` topic beside one up and one down
/// topic it still fits the core's share of the daemon's default gateway budget (it did
/// not: 206 MiB planned for 191, before its senders got an eighth of memory rather than a
/// quarter). Two `both` topics beside them do not fit (190.3 MiB): the loader names the
/// memory such a file needs (OPERATIONS.md, Tiers).
#[test]
fn a_middle_tier_with_a_topic_both_ways_fits_the_default_gateway_budget() {
    for both in 0..2 {
        let mut topics = vec![
            TopicConfig::new("sales", SyncDirection::EdgeToCloud),
            TopicConfig::new("promotions", SyncDirection::CloudToEdge),
        ];
        topics.extend((0..both).map(|i| TopicConfig::new(&format!("stock{i}"), SyncDirection::Bidirectional)));
        let mut cfg = NodeConfig::new(NodeId(1), Role::Gateway, topics);
        cfg.upstream = Some(NodeId(2));
        cfg.split_both_ways();
        let storage = cfg.resources.storage_bytes_max;
        fit_to_budgets(&mut cfg, 190 << 20, storage);
        assert_eq!(Node::check_config(&cfg), Ok(()), "{both} both topics");
    }
}

#[test]
fn a_gateway_with_several_topics_going_down_fits_by_running_fewer_senders() {
    for n in [1, 2, 4, 8] {
        let topics = (0..n).map(|i| TopicConfig::new(&format!("down{i}"), SyncDirection::CloudToEdge)).collect();
        let mut cfg = NodeConfig::new(NodeId(1), Role::Gateway, topics);
        let storage = cfg.resources.storage_bytes_max;
        // The core's share of the daemon's default gateway budget (OPERATIONS.md).
        fit_to_budgets(&mut cfg, 190 << 20, storage);
        assert_eq!(Node::check_config(&cfg), Ok(()), "{n} topics going down");
        assert!(cfg.gateway.downlinks_max >= 1, "{n} topics going down");
    }
}

#[test]
fn fitted_configs_pass_for_small_and_large_devices() {
    let cases = [(8u64 << 20, 16u64 << 20, 4, Role::Edge), (24 << 20, 64 << 20, 16, Role::Edge)];
    let big = [
        (128 << 20, 1 << 30, 3, Role::Gateway),
        (16 << 30, 1 << 40, 3, Role::Edge),
        (16 << 30, 1 << 40, 3, Role::Gateway),
    ];
    // (Edges sync up to node 2; gateways are top gateways, and below a middle tier.)
    for (mem, storage, ntopics, role) in cases.into_iter().chain(big) {
        {
            let mut topics: Vec<TopicConfig> =
                (0..ntopics).map(|i| TopicConfig::new(&format!("t{i}"), SyncDirection::EdgeToCloud)).collect();
            topics[0].eviction = Eviction::Compact;
            let mut cfg = NodeConfig::new(NodeId(1), role, topics);
            cfg.upstream = (role == Role::Edge).then_some(NodeId(2));
            fit_to_budgets(&mut cfg, mem, storage);
            assert_eq!(
                Node::check_config(&cfg),
                Ok(()),
                "{mem} B memory, {storage} B storage, {ntopics} topics, {role:?}"
            );
        }
    }
}

/// Keyed topics at the default limits (4 MiB of state each) fit a default edge when the
/// fit sizes them: three of them did not fit the core's 52.4 MiB share of a default edge's
/// 64 MiB (58.0 MiB planned), with a clear refusal. Three or four both ways fit down to
/// 32 MiB (at 24 MiB the copies a commit keeps of keyed writes do not fit beside six
/// topic halves, whatever the states' limits). A large budget keeps the defaults.
#[test]
fn keyed_topics_at_default_limits_fit_by_sizing_their_states() {
    use outpost_core::config::KeyedTopic;
    use outpost_core::keyed::Strategy;
    let keyed = |name: &str, strategy| {
        let mut t = TopicConfig::new(name, SyncDirection::Bidirectional);
        t.keyed = Some(KeyedTopic { strategy, limits: KeyedTopic::DEFAULT_LIMITS, merge: None });
        t
    };
    let strategies = [Strategy::LastWriteWins, Strategy::Counter, Strategy::KeepBoth, Strategy::AddWinsSet];
    let topics: Vec<TopicConfig> = strategies.iter().enumerate().map(|(i, &s)| keyed(&format!("k{i}"), s)).collect();
    for (n, memory, storage) in
        [(3, 52 << 20, 1u64 << 30), (4, 52 << 20, 1 << 30), (3, 32 << 20, 64 << 20), (4, 32 << 20, 64 << 20)]
    {
        let mut cfg = NodeConfig::new(NodeId(1), Role::Edge, topics[..n].to_vec());
        cfg.upstream = Some(NodeId(2));
        cfg.split_both_ways();
        let mut unfitted = cfg.clone();
        unfitted.resources.memory_bytes_max = memory;
        unfitted.resources.storage_bytes_max = storage;
        assert!(Node::check_config(&unfitted).is_err(), "{n} keyed topics at the defaults do not fit {memory} B");
        fit_to_budgets(&mut cfg, memory, storage);
        assert_eq!(Node::check_config(&cfg), Ok(()), "{n} keyed topics, {memory} B memory, {storage} B storage");
        for t in &cfg.topics {
            let limits = t.keyed.as_ref().expect("keyed").limits;
            assert!(limits.state_bytes_max < KeyedTopic::DEFAULT_LIMITS.state_bytes_max, "{n}: lowered");
            assert!(limits.state_bytes_max >= 64 << 10 && limits.conflict_log_bytes_max >= 4 << 10);
        }
    }
    // A top gateway copies the edges' keyed writes for the other edges, which holds what
    // a commit writes twice more: its buffers get a thirty-second of memory each, so one
    // keyed topic both ways fits the core's share of the default 256 MiB gateway (it
    // needed 301 MiB); each more one adds about 24 MiB (OPERATIONS.md).
    let mut cfg = NodeConfig::new(NodeId(1), Role::Gateway, topics[..1].to_vec());
    cfg.split_both_ways();
    let (memory, storage) = (200_212_480, cfg.resources.storage_bytes_max);
    fit_to_budgets(&mut cfg, memory, storage);
    assert_eq!(Node::check_config(&cfg), Ok(()), "one keyed topic both ways at the default gateway");
    assert_eq!(cfg.gateway.pending_bytes_max, memory / 32);
    let mut cfg = NodeConfig::new(NodeId(1), Role::Gateway, topics[..3].to_vec());
    cfg.split_both_ways();
    fit_to_budgets(&mut cfg, 16 << 30, 1 << 40);
    assert_eq!(Node::check_config(&cfg), Ok(()));
    assert!(cfg.topics.iter().all(|t| t.keyed.as_ref().expect("keyed").limits == KeyedTopic::DEFAULT_LIMITS));
}

#[test]
fn a_small_device_lowers_the_budget_and_the_segments_a_large_one_nothing() {
    let topics = vec![TopicConfig::new("t", SyncDirection::EdgeToCloud)];
    let mut default = NodeConfig::new(NodeId(1), Role::Edge, topics.clone());
    default.upstream = Some(NodeId(2));
    // The device: an 8 MiB tmpfs under the defaults (1 GiB, 8 MiB segments).
    let mut cfg = default.clone();
    let fit = fit_to_device(&mut cfg, 8 << 20);
    assert_eq!(fit, DeviceFit { storage_was: Some(1 << 30), segment_was: Some(8 << 20) });
    assert_eq!((cfg.resources.storage_bytes_max, cfg.log.segment_bytes_max), (8 << 20, 512 << 10));
    assert_eq!(Node::check_config(&cfg), Ok(()));
    // Three topics on a device just under the budget: only the segments shrink.
    let mut cfg = default.clone();
    cfg.topics = vec![topics[0].clone(); 3];
    cfg.topics[1].name = "u".into();
    cfg.topics[2].name = "v".into();
    cfg.resources.storage_bytes_max = 64 << 20;
    let fit = fit_to_device(&mut cfg, 100 << 20);
    assert_eq!(fit, DeviceFit { storage_was: None, segment_was: Some(8 << 20) });
    assert_eq!(cfg.log.segment_bytes_max, (64 << 20) / 48);
    assert_eq!(Node::check_config(&cfg), Ok(()));
    // A device larger than the budget and segments already small: nothing changes.
    let mut cfg = default.clone();
    assert_eq!(fit_to_device(&mut cfg, 32 << 30), DeviceFit::default());
    assert_eq!(cfg, default);
    // Too small for anything: the floor of 64 KiB segments stays, and validation says so.
    let mut cfg = default.clone();
    fit_to_device(&mut cfg, 256 << 10);
    assert_eq!(cfg.log.segment_bytes_max, 64 << 10);
    let e = Node::check_config(&cfg).expect_err("256 KiB holds no four segments and the meta log");
    assert_eq!(e.field, "resources.storage_bytes_max");
}

/// A site member's strong keyed states ride in its Raft snapshot (at most 7 MiB of keyed
/// states) and are planned about six times over: left unset, the fit sizes them to half
/// the snapshot's room and a sixty-fourth of memory; set too large, the start is refused
/// with what to lower.
#[test]
fn strong_keyed_topics_fit_the_sites_snapshot() {
    use outpost_core::config::{ClusterConfig, Consistency, KeyedTopic};
    use outpost_core::keyed::{KeyedLimits, Strategy};
    let strong = |name: &str, strategy| {
        let mut t = TopicConfig::new(name, SyncDirection::EdgeToCloud);
        t.consistency = Consistency::Strong;
        t.keyed = Some(KeyedTopic { strategy, limits: KeyedTopic::DEFAULT_LIMITS, merge: None });
        t
    };
    let member = |topics: Vec<TopicConfig>| {
        let mut cfg = NodeConfig::new(NodeId(1), Role::Edge, topics);
        cfg.upstream = Some(NodeId(9));
        cfg.cluster = Some(ClusterConfig::new("shop", NodeId(8), vec![NodeId(1), NodeId(2), NodeId(3)]));
        cfg
    };
    let topics = vec![strong("stock", Strategy::Counter), strong("prices", Strategy::LastWriteWins)];
    // (A site member plans its Raft log twice and the records it materialises: 128 MiB.)
    let mut cfg = member(topics.clone());
    let (memory, storage) = (128 << 20, cfg.resources.storage_bytes_max);
    fit_to_budgets(&mut cfg, memory, storage);
    assert_eq!(Node::check_config(&cfg), Ok(()), "two strong keyed topics at a 128 MiB member");
    for t in &cfg.topics {
        let limits = t.keyed.as_ref().expect("keyed").limits;
        assert!(limits.state_bytes_max <= memory / 64 / 2, "{limits:?}");
    }
    let mut too_large = member(topics);
    for t in &mut too_large.topics {
        t.keyed.as_mut().expect("keyed").limits =
            KeyedLimits { state_bytes_max: 4 << 20, conflict_log_bytes_max: 256 << 10 };
    }
    too_large.resources.memory_bytes_max = 1 << 30;
    let e = Node::check_config(&too_large).expect_err("8.5 MiB of states in a 7 MiB snapshot");
    assert_eq!(e.field, "topics.keyed_state_max");
    assert!(e.message.contains("Raft snapshot") && e.message.contains("7.0 MiB"), "{e}");
}

//! Replays every committed corpus (`fuzz/corpus/TARGET/*`: seeds, and inputs the fuzzers
//! found, crashes among them as regressions) through its target in `cargo test`.

use std::path::Path;

#[test]
fn every_target_has_a_corpus_and_every_input_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in outpost_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!("{}: {e}; run `cargo run -p outpost-fuzz --example seed_corpora`", dir.display())
            })
            .map(|e| e.expect("entry").path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "target {name} has an empty corpus");
        for input in inputs {
            let bytes = std::fs::read(&input).expect("readable");
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "target {name} fails on {}", input.display());
        }
    }
}

/// The recovery target checks what a node serves, so the seed must be served whole:
/// 60 records over several segments of two topics.
#[test]
fn the_recovery_seed_is_served_whole() {
    use outpost_core::io::FileId;
    use outpost_core::types::TopicIdx;
    use outpost_fuzz::recovery::{decode_files, Harness};
    let seed = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/recovery/seed-whole")).expect("seed");
    let files = decode_files(&seed);
    assert!(files.keys().filter(|f| matches!(f, FileId::Segment { .. })).count() > 2, "several segments");
    let mut h = Harness::boot(files);
    assert!(h.node.is_running());
    let mut served = 0;
    for topic in [TopicIdx(0), TopicIdx(1)] {
        let mut from = 0;
        loop {
            let f = h.fetch(topic, from).expect("a whole log");
            served += f.records.len();
            from = f.next;
            if from >= f.durable_end {
                break;
            }
        }
    }
    assert_eq!(served, 60);
}

/// The `raft_store` seeds are what a member's driver reads: a whole generation (checkpoint,
/// then persists with a vote, a truncation and appends), the same torn, a checkpoint
/// without its entries; the `chunks` seed is the whole generation before the target frames it.
#[test]
fn the_raft_store_seeds_replay_as_written() {
    use outpost_core::raft::store::{self, StoreError};
    let seed = |name: &str| {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/raft_store").join(name)).expect("seed")
    };
    let whole = store::replay(&seed("seed-generation")).expect("a whole generation");
    assert_eq!((whole.hard.term, whole.hard.vote, whole.cut), (5, None, None));
    assert_eq!((whole.snapshot.index, whole.log.len(), whole.log.last().map(|e| e.term)), (7, 5, Some(4)));
    let torn = store::replay(&seed("seed-torn")).expect("a torn tail is cut, not fatal");
    assert!(torn.cut.is_some());
    assert_eq!((torn.hard.term, torn.log.len()), (4, 5), "the last persist (a hard state alone) is cut");
    assert!(matches!(store::replay(&seed("seed-incomplete")), Err(StoreError::MissingEntries { .. })));
    assert_eq!(store::replay(&seed("seed-fresh")).map(|r| r.log.len()), Ok(0));
    assert!(store::replay(&seed("seed-chunks")).is_err(), "unframed: only the target's framing makes it a file");
}

/// Every `site_msg` seed decodes as what its name says: a whole `Site` frame, a frame's
/// payload (which the target frames itself), a command or a snapshot.
#[test]
fn the_site_msg_seeds_decode() {
    use outpost_core::codec::{self, FrameKind};
    use outpost_core::site::msg::{Command, SiteMsg, StrongSnapshot};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/site_msg");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("a name").to_owned();
        let Some(name) = name.strip_prefix("seed-") else { continue };
        let bytes = std::fs::read(&path).expect("readable");
        let ok = if name.starts_with("frame-") {
            SiteMsg::decode(&bytes).is_ok()
        } else if name.starts_with("command-") {
            Command::decode(&bytes).is_ok()
        } else if name == "snapshot" {
            StrongSnapshot::decode(&bytes).is_ok_and(|s| s.topics.len() == 2)
        } else {
            let mut framed = Vec::new();
            codec::encode_frame(FrameKind::Site, &bytes, &mut framed);
            SiteMsg::decode(&framed).is_ok()
        };
        assert!(ok, "seed-{name} does not decode as its name says");
        seen += 1;
    }
    assert!(seen >= 16, "every kind of site message, command and the snapshot: {seen} seeds");
}

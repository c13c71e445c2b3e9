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

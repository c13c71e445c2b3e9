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

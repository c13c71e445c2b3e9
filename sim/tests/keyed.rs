//! Replicas of a keyed topic converge: nodes that write and exchange writes at random, each
//! origin's in order, answer the same for every key once everything reached everyone, and
//! that answer is the oracle's (`outpost_sim::keyed_oracle`, computed from the whole
//! history without the core's merge code). Collecting tombstones below what every replica
//! has seen changes no answer, then or later. `custom` runs the WebAssembly example merge
//! (examples/merge/notes.wat), which the oracle calls on the versions it finds live.

use std::sync::OnceLock;

use outpost_core::hlc::Hlc;
use outpost_core::keyed::{
    Applied, Dot, KeyedLimits, KeyedOp, KeyedState, MergeFn, OpKind, Strategy, VersionVector, Write,
};
use outpost_core::types::NodeId;
use outpost_sim::keyed_oracle::{self, Answer, KeyedWrite};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const ROOMY: KeyedLimits = KeyedLimits { state_bytes_max: 1 << 24, conflict_log_bytes_max: 1 << 16 };
const KEYS: [&[u8]; 2] = [b"price/sku-1", b"price/sku-2"];

/// The merge of a `custom` topic (every strategy is run, `custom` with this): the example
/// module, loaded once.
fn merge_of(strategy: Strategy) -> Option<&'static MergeFn> {
    static EXAMPLE: OnceLock<MergeFn> = OnceLock::new();
    (strategy == Strategy::Custom).then(|| {
        EXAMPLE.get_or_init(|| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/merge/notes.wat");
            let module = outpost_wasm_merge::WasmMerge::from_file(&path, Default::default()).expect("the example");
            MergeFn::new(module)
        })
    })
}

/// A replica: its state and how far it has taken each origin's log.
struct Replica {
    id: NodeId,
    cloud: bool,
    state: KeyedState,
    taken: Vec<usize>,
}

fn take(node: &mut Replica, logs: &[Vec<KeyedWrite>], from: usize) {
    let w = &logs[from][node.taken[from]];
    node.taken[from] += 1;
    let op = KeyedOp::decode(&w.op).expect("written by encode");
    let applied = node.state.apply(Write { key: &w.key, dot: w.dot, hlc: w.hlc, op }).expect("roomy limits");
    // Another origin's write may come after one that saw it; one's own never does.
    assert!(applied != Applied::Seen || w.dot.origin != node.id, "a local write was taken as seen");
}

fn answers(nodes: &[Replica]) -> Vec<Vec<Answer>> {
    nodes.iter().map(|r| KEYS.iter().map(|k| Answer::of(&r.state, k)).collect()).collect()
}

/// `replicas` nodes write and take each other's writes at random; at the end everything
/// reaches everyone. Returns every origin's log and the replicas.
fn run(
    strategy: Strategy,
    seed: u64,
    replicas: usize,
    steps: usize,
    collect: bool,
) -> (Vec<Vec<KeyedWrite>>, Vec<Replica>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut logs: Vec<Vec<KeyedWrite>> = vec![Vec::new(); replicas];
    let mut nodes: Vec<Replica> = (0..replicas)
        .map(|i| Replica {
            id: NodeId(i as u64 + 1),
            cloud: i == 0,
            state: match merge_of(strategy) {
                Some(m) => KeyedState::new(strategy, ROOMY).with_merge(m.clone()),
                None => KeyedState::new(strategy, ROOMY),
            },
            taken: vec![0; replicas],
        })
        .collect();
    for _ in 0..steps {
        let i = rng.gen_range(0..replicas);
        if rng.gen_bool(0.4) {
            let key = KEYS[rng.gen_range(0..KEYS.len())];
            // Values of different lengths, so that the example merge has a choice to make.
            let value = [b'v', rng.gen_range(b'a'..=b'e'), b'!'];
            let value = &value[..rng.gen_range(1..=3)];
            let element: &[u8] = [b"a".as_slice(), b"b", b"c"][rng.gen_range(0..3)];
            let kind = match (strategy, rng.gen_range(0..10)) {
                (_, 0) => OpKind::Delete(vec![]),
                (Strategy::Counter, _) => OpKind::Increment(rng.gen_range(-5..=5)),
                (Strategy::Max, _) => OpKind::Max(rng.gen_range(-10..=10)),
                (Strategy::AddWinsSet, 1..=3) => OpKind::Remove(element),
                (Strategy::AddWinsSet, _) => OpKind::Add(element),
                _ => OpKind::Put(value),
            };
            let node = &mut nodes[i];
            let mut op = Vec::new();
            node.state.prepare(key, kind, node.cloud).expect("an op of the strategy").encode(&mut op);
            // Small HLCs, so that ties happen: the strategies break them by origin.
            let dot = Dot { origin: node.id, seq: logs[i].len() as u64 };
            logs[i].push(KeyedWrite { key: key.to_vec(), dot, hlc: Hlc(rng.gen_range(0..8)), op });
            take(node, &logs, i);
        } else {
            let from = rng.gen_range(0..replicas);
            if nodes[i].taken[from] < logs[from].len() {
                take(&mut nodes[i], &logs, from);
            }
        }
        if collect && rng.gen_bool(0.05) {
            // What every replica has taken of every origin: no write still to come is below.
            let stable: VersionVector = (0..replicas)
                .filter_map(|o| {
                    let n = nodes.iter().map(|r| r.taken[o]).min().expect("replicas");
                    (n > 0).then(|| Dot { origin: NodeId(o as u64 + 1), seq: n as u64 - 1 })
                })
                .collect();
            let before = answers(&nodes);
            for r in &mut nodes {
                r.state.collect(&stable);
            }
            assert_eq!(before, answers(&nodes), "collecting changes no answer");
        }
    }
    for node in &mut nodes {
        for from in 0..replicas {
            while node.taken[from] < logs[from].len() {
                take(node, &logs, from);
            }
        }
    }
    (logs, nodes)
}

fn check_converges(strategy: Strategy, seed: u64, replicas: usize, steps: usize, collect: bool) {
    let (logs, nodes) = run(strategy, seed, replicas, steps, collect);
    let history: Vec<KeyedWrite> = logs.into_iter().flatten().collect();
    for key in KEYS {
        for r in &nodes {
            let checked = keyed_oracle::check(strategy, merge_of(strategy), &history, key, Answer::of(&r.state, key));
            assert_eq!(checked, Ok(()), "{strategy} seed {seed}: replica {}", r.id);
            assert!(r.state.bytes() <= ROOMY.state_bytes_max);
        }
    }
    if !collect {
        let bytes: Vec<u64> = nodes.iter().map(|r| r.state.bytes()).collect();
        assert!(bytes.windows(2).all(|w| w[0] == w[1]), "{strategy} seed {seed}: replicas account {bytes:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge_on_what_the_history_prescribes(seed in any::<u64>(), replicas in 2usize..5, steps in 1usize..160) {
        for strategy in Strategy::NAMED {
            check_converges(strategy, seed, replicas, steps, false);
        }
    }

    #[test]
    fn collecting_what_every_replica_saw_changes_no_answer(seed in any::<u64>(), steps in 1usize..200) {
        for strategy in Strategy::NAMED {
            check_converges(strategy, seed, 3, steps, true);
        }
    }
}

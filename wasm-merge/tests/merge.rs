//! The WebAssembly merge: the example module answers as it says, bad modules are refused
//! at load with what is wrong, and a module that misbehaves at a call fails that call
//! (fuel, memory, bounds) without hanging or crashing the caller.

use std::path::Path;

use outpost_core::hlc::Hlc;
use outpost_core::keyed::{
    Dot, KeyedLimits, KeyedOp, KeyedState, Merge, MergeFn, OpKind, Strategy, Value, Version, VersionVector, Write,
};
use outpost_core::types::NodeId;
use outpost_wasm_merge::{WasmLimits, WasmMerge};

fn example() -> WasmMerge {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/merge/notes.wat");
    WasmMerge::from_file(&path, WasmLimits::default()).expect("the example loads")
}

fn version(origin: u64, seq: u64, value: Option<&[u8]>) -> Version {
    Version {
        dot: Dot { origin: NodeId(origin), seq },
        hlc: Hlc::new(1_000 + seq, 0),
        cloud: false,
        value: value.map(<[u8]>::to_vec),
    }
}

fn merge(m: &dyn Merge, versions: &[Version]) -> Result<Option<Vec<u8>>, String> {
    let refs: Vec<&Version> = versions.iter().collect();
    m.merge(b"note-7", &refs).map_err(|e| e.to_string())
}

#[test]
fn the_example_keeps_the_longest_note_and_an_edit_over_a_deletion() {
    let m = example();
    let (a, b) = (version(1, 4, Some(b"fix the pump")), version(2, 9, Some(b"fix the pump; seal cracked")));
    assert_eq!(merge(&m, &[a.clone(), b.clone()]), Ok(Some(b"fix the pump; seal cracked".to_vec())));
    let tie = version(3, 2, Some(b"FIX THE PUMP"));
    assert_eq!(merge(&m, &[a.clone(), tie]), Ok(Some(b"FIX THE PUMP".to_vec())), "a tie goes to the later dot");
    let deleted = version(2, 10, None);
    assert_eq!(merge(&m, &[a, deleted.clone()]), Ok(Some(b"fix the pump".to_vec())), "an edit beats a deletion");
    assert_eq!(merge(&m, &[deleted, version(3, 3, None)]), Ok(None), "deletions alone answer absent");
}

/// A keyed state with the module answers the merge of concurrent writes, whatever order
/// they arrived in, and a single version as it is.
#[test]
fn a_custom_topic_answers_the_modules_merge_in_any_order() {
    let merge = MergeFn::new(example());
    let limits = KeyedLimits { state_bytes_max: 1 << 20, conflict_log_bytes_max: 1 << 16 };
    let put = |origin: u64, seq: u64, value: &'static [u8]| Write {
        key: b"note-7",
        dot: Dot { origin: NodeId(origin), seq },
        hlc: Hlc::new(5_000, seq as u16),
        op: KeyedOp { context: VersionVector::new(), cloud: false, relayed: None, kind: OpKind::Put(value) },
    };
    let writes = [put(1, 1, b"short"), put(2, 1, b"the longer one"), put(3, 1, b"mid size")];
    let mut answers = Vec::new();
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut state = KeyedState::new(Strategy::Custom, limits).with_merge(merge.clone());
        assert_eq!(state.get(b"note-7"), Value::Absent);
        state.apply(writes[order[0]].clone()).expect("room");
        assert!(matches!(state.get(b"note-7"), Value::Bytes(_)), "one version answers as written");
        for &i in &order[1..] {
            state.apply(writes[i].clone()).expect("room");
        }
        answers.push(state.get(b"note-7").into_owned_for_test());
        assert_eq!(state.conflicts_total(), 2, "each concurrent write is a conflict recorded");
        assert!(state.conflicts().all(|c| c.winner.is_none()), "a merge names no winner");
    }
    assert_eq!(answers, vec![Some(b"the longer one".to_vec()); 3]);
}

trait Owned {
    fn into_owned_for_test(self) -> Option<Vec<u8>>;
}

impl Owned for Value<'_> {
    fn into_owned_for_test(self) -> Option<Vec<u8>> {
        match self {
            Value::Merged(v) => Some(v),
            other => panic!("expected a merged value, got {other:?}"),
        }
    }
}

const HEADER: &str = r#"(memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))"#;

fn load(body: &str, limits: WasmLimits) -> Result<WasmMerge, String> {
    WasmMerge::from_bytes("test.wat", format!("(module {body})").as_bytes(), limits).map_err(|e| e.to_string())
}

#[test]
fn a_module_that_is_not_a_merge_is_refused_at_load_with_what_is_wrong() {
    let limits = WasmLimits::default();
    let e = load("(func", limits).expect_err("not a module");
    assert!(e.contains("test.wat") && e.contains("not a valid WebAssembly module"), "{e}");
    let e = load(&format!(r#"(import "env" "clock" (func (result i64))) {HEADER}"#), limits).expect_err("imports");
    assert!(e.contains("imports env::clock") && e.contains("may import nothing"), "{e}");
    let e = load(HEADER, limits).expect_err("no merge");
    assert!(e.contains("exports no merge(i32, i32) -> i64"), "{e}");
    let e = load(&format!(r#"{HEADER} (func (export "merge") (param i32) (result i64) (i64.const 0))"#), limits)
        .expect_err("wrong type");
    assert!(e.contains("exports no merge(i32, i32) -> i64"), "{e}");
}

#[test]
fn a_module_that_loops_forever_runs_out_of_fuel_and_fails_the_call() {
    let body =
        format!(r#"{HEADER} (func (export "merge") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#);
    let m = load(&body, WasmLimits { fuel: 100_000, ..WasmLimits::default() }).expect("a valid module");
    let e = merge(&m, &[version(1, 1, Some(b"a")), version(2, 1, Some(b"b"))]).expect_err("out of fuel");
    assert!(e.contains("test.wat") && e.contains("the call stopped") && e.contains("fuel"), "{e}");
}

#[test]
fn a_module_that_answers_outside_its_memory_or_grows_past_its_limit_fails_the_call() {
    let outside =
        format!(r#"{HEADER} (func (export "merge") (param i32 i32) (result i64) (i64.const 0x0001000000000010))"#);
    let m = load(&outside, WasmLimits::default()).expect("a valid module");
    let e = merge(&m, &[version(1, 1, Some(b"a")), version(2, 1, Some(b"b"))]).expect_err("outside");
    assert!(e.contains("outside its memory"), "{e}");
    let greedy = r#"(memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (drop (memory.grow (i32.const 1000))) (i32.const 0))
      (func (export "merge") (param i32 i32) (result i64) (i64.const -1))"#;
    let m = load(greedy, WasmLimits { memory_bytes_max: 1 << 20, ..WasmLimits::default() }).expect("a valid module");
    // The refused growth returns -1 to the module, which then answers; its memory stayed
    // within the limit, and the answer is what it said.
    assert_eq!(merge(&m, &[version(1, 1, Some(b"a")), version(2, 1, Some(b"b"))]), Ok(None));
    let big = vec![7u8; 2 << 20];
    let e = merge(&m, &[version(1, 1, Some(&big)), version(2, 1, Some(b"b"))]).expect_err("input past the limit");
    assert!(e.contains("do not fit the module's memory limit"), "{e}");
    let small = vec![7u8; 100 << 10];
    let e = merge(&m, &[version(1, 1, Some(&small)), version(2, 1, Some(b"b"))]).expect_err("input past its memory");
    assert!(e.contains("outside its memory"), "alloc answered a place the input does not fit: {e}");
    assert_eq!(m.call_bytes_max(), 2 * (1 << 20) + (1 << 20), "the memory a call may take, for the shell's plan");
}

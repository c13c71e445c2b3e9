//! The keyed state's strategies, one situation each: concurrent writes in both orders,
//! siblings resolved by a write that saw them, late writes, resets, removals, limits.
//! That replicas converge on what the history prescribes, whatever the order, is
//! `sim/tests/keyed.rs` (against the simulator's oracle).

use outpost_core::hlc::Hlc;
use outpost_core::keyed::{
    Applied, Dot, KeyedError, KeyedLimits, KeyedOp, KeyedState, OpKind, Strategy, Value, VersionVector, Write,
};
use outpost_core::types::NodeId;

const ROOMY: KeyedLimits = KeyedLimits { state_bytes_max: 1 << 24, conflict_log_bytes_max: 1 << 16 };

fn dot(origin: u64, seq: u64) -> Dot {
    Dot { origin: NodeId(origin), seq }
}

/// A write of `kind` by `origin` at `seq` with the context `seen` (origin, seq pairs).
fn w<'a>(origin: u64, seq: u64, hlc: u64, cloud: bool, seen: &[(u64, u64)], kind: OpKind<'a>) -> Write<'a> {
    let context = seen.iter().map(|&(o, s)| dot(o, s)).collect();
    Write { key: b"k", dot: dot(origin, seq), hlc: Hlc(hlc), op: KeyedOp { context, cloud, relayed: None, kind } }
}

/// The outcomes table of docs/KEYED.md: two concurrent writes, in both orders.
#[test]
fn concurrent_writes_resolve_as_the_table_says() {
    let edge_put = || w(2, 0, 20, false, &[], OpKind::Put(b"edge"));
    let cloud_put = || w(1, 0, 10, true, &[], OpKind::Put(b"cloud"));
    let cloud_delete = || w(1, 0, 30, true, &[], OpKind::Delete(vec![]));
    let rows: Vec<(Strategy, Vec<Write<'static>>, Value<'static>)> = vec![
        (Strategy::LastWriteWins, vec![edge_put(), cloud_put()], Value::Bytes(b"edge")),
        (Strategy::FirstWriteWins, vec![edge_put(), cloud_put()], Value::Bytes(b"cloud")),
        (Strategy::CloudWins, vec![edge_put(), cloud_put()], Value::Bytes(b"cloud")),
        (Strategy::EdgeWins, vec![edge_put(), cloud_put()], Value::Bytes(b"edge")),
        (Strategy::LastWriteWins, vec![edge_put(), cloud_delete()], Value::Absent),
        (Strategy::FirstWriteWins, vec![edge_put(), cloud_delete()], Value::Bytes(b"edge")),
        (Strategy::CloudWins, vec![edge_put(), cloud_delete()], Value::Absent),
        (Strategy::EdgeWins, vec![edge_put(), cloud_delete()], Value::Bytes(b"edge")),
        (Strategy::KeepBoth, vec![edge_put(), cloud_delete()], Value::Bytes(b"edge")),
    ];
    for (strategy, writes, expected) in rows {
        for order in [false, true] {
            let mut s = KeyedState::new(strategy, ROOMY);
            let mut ws = writes.clone();
            if order {
                ws.reverse();
            }
            let outcomes: Vec<Applied> = ws.into_iter().map(|x| s.apply(x).unwrap()).collect();
            assert_eq!(outcomes, vec![Applied::Taken, Applied::Conflict], "{strategy}");
            assert_eq!(s.get(b"k"), expected, "{strategy}, reversed: {order}");
            let c = s.conflicts().next().expect("recorded");
            assert_eq!((c.key.as_slice(), c.strategy, c.versions.len()), (b"k".as_slice(), strategy, 2));
        }
    }
}

#[test]
fn keep_both_answers_siblings_until_a_write_that_saw_them() {
    let mut s = KeyedState::new(Strategy::KeepBoth, ROOMY);
    s.apply(w(1, 0, 10, false, &[], OpKind::Put(b"tablet-a"))).unwrap();
    assert_eq!(s.apply(w(2, 0, 11, false, &[], OpKind::Put(b"tablet-b"))).unwrap(), Applied::Conflict);
    let Value::Siblings(v) = s.get(b"k") else { panic!("two concurrent notes are siblings") };
    assert_eq!(v.iter().map(|v| v.value.as_deref().unwrap()).collect::<Vec<_>>(), [b"tablet-a", b"tablet-b"]);
    assert_eq!(s.conflicts().next().unwrap().winner, None, "keep-both chooses none");
    let merged = s.prepare(b"k", OpKind::Put(b"merged"), false).unwrap();
    assert_eq!(merged.context, [dot(1, 0), dot(2, 0)].into_iter().collect());
    let resolved = Write { key: b"k", dot: dot(1, 1), hlc: Hlc(12), op: merged };
    assert_eq!(s.apply(resolved).unwrap(), Applied::Taken);
    assert_eq!(s.get(b"k"), Value::Bytes(b"merged"));
    assert_eq!(s.versions(b"k").len(), 1);
}

#[test]
fn a_write_that_arrives_after_one_that_saw_it_is_seen_and_a_deleted_key_stays_deleted() {
    let mut s = KeyedState::new(Strategy::LastWriteWins, ROOMY);
    // Origin 3 saw origin 1's write (hlc 50, later than its own) and deleted the key.
    s.apply(w(3, 0, 40, false, &[(1, 0)], OpKind::Delete(vec![]))).unwrap();
    assert_eq!(s.apply(w(1, 0, 50, false, &[], OpKind::Put(b"old"))).unwrap(), Applied::Seen);
    assert_eq!(s.get(b"k"), Value::Absent, "no resurrection by a late, overwritten write");
    assert_eq!(s.collect(&[dot(1, 0), dot(3, 0)].into_iter().collect()), 1, "the tombstone goes once stable");
    assert_eq!(s.bytes(), KeyedState::new(Strategy::LastWriteWins, ROOMY).bytes(), "back to an empty state");
    s.apply(w(1, 1, 60, false, &[(1, 0), (3, 0)], OpKind::Put(b"new"))).unwrap();
    assert_eq!(s.get(b"k"), Value::Bytes(b"new"), "only a newer write brings it back");
}

#[test]
fn a_counter_reset_removes_only_what_its_author_had_counted() {
    let mut s = KeyedState::new(Strategy::Counter, ROOMY);
    s.apply(w(1, 0, 1, false, &[], OpKind::Increment(5))).unwrap();
    s.apply(w(2, 0, 2, false, &[], OpKind::Increment(-2))).unwrap();
    let reset = s.prepare(b"k", OpKind::Delete(vec![]), false).unwrap();
    s.apply(w(1, 1, 3, false, &[], OpKind::Increment(4))).unwrap();
    s.apply(Write { key: b"k", dot: dot(3, 0), hlc: Hlc(4), op: reset }).unwrap();
    assert_eq!(s.get(b"k"), Value::Number(4), "the increment the reset did not see survives");
}

#[test]
fn a_concurrent_add_wins_over_a_remove() {
    let mut s = KeyedState::new(Strategy::AddWinsSet, ROOMY);
    s.apply(w(1, 0, 1, false, &[], OpKind::Add(b"milk"))).unwrap();
    s.apply(w(2, 0, 2, false, &[], OpKind::Add(b"milk"))).unwrap();
    s.apply(w(3, 0, 3, false, &[(1, 0)], OpKind::Remove(b"milk"))).unwrap();
    assert_eq!(s.get(b"k"), Value::Elements(vec![b"milk"]), "origin 2's add was not seen");
    s.apply(w(3, 1, 4, false, &[(1, 0), (2, 0)], OpKind::Remove(b"milk"))).unwrap();
    assert_eq!(s.get(b"k"), Value::Absent);
}

/// Collecting accounts as `apply` does, by what the entry holds after: dropping removed
/// elements frees their slots too, so a replica that collected accounts what one that
/// never held them does (and what a snapshot of its state recomputes).
#[test]
fn collecting_a_sets_removed_elements_frees_their_slots_too() {
    let mut collected = KeyedState::new(Strategy::AddWinsSet, ROOMY);
    collected.apply(w(1, 0, 1, false, &[], OpKind::Add(b"a"))).unwrap();
    collected.apply(w(1, 1, 2, false, &[], OpKind::Add(b"d"))).unwrap();
    collected.apply(w(1, 2, 3, false, &[], OpKind::Add(b"b"))).unwrap();
    collected.apply(w(1, 3, 4, false, &[(1, 2)], OpKind::Remove(b"b"))).unwrap();
    assert_eq!(collected.collect(&[dot(1, 3)].into_iter().collect()), 0, "the key answers a and d");
    let mut never = KeyedState::new(Strategy::AddWinsSet, ROOMY);
    never.apply(w(1, 0, 1, false, &[], OpKind::Add(b"a"))).unwrap();
    never.apply(w(1, 1, 2, false, &[], OpKind::Add(b"d"))).unwrap();
    // Removals of an element never added leave nothing but the key's vector.
    never.apply(w(1, 2, 3, false, &[], OpKind::Remove(b"c"))).unwrap();
    never.apply(w(1, 3, 4, false, &[], OpKind::Remove(b"c"))).unwrap();
    assert_eq!(collected.get(b"k"), never.get(b"k"));
    assert_eq!(collected.bytes(), never.bytes());
}

#[test]
fn a_full_state_refuses_and_changes_nothing_and_the_conflict_log_keeps_its_newest() {
    let limits = KeyedLimits { state_bytes_max: 4000, conflict_log_bytes_max: 600 };
    let mut s = KeyedState::new(Strategy::LastWriteWins, limits);
    let mut refused = 0;
    for i in 0..20u64 {
        let key = format!("key-{i}");
        let write = Write {
            key: key.as_bytes(),
            dot: dot(1, i),
            hlc: Hlc(i),
            op: KeyedOp {
                context: VersionVector::new(),
                cloud: false,
                relayed: None,
                kind: OpKind::Put(b"0123456789"),
            },
        };
        match s.apply(write) {
            Ok(_) => {}
            Err(KeyedError::Full { used, limit, .. }) => {
                refused += 1;
                assert_eq!((used, limit), (s.bytes(), 4000));
                assert_eq!(s.get(key.as_bytes()), Value::Absent, "a refused write changes nothing");
            }
            Err(e) => panic!("{e}"),
        }
        assert!(s.bytes() <= 4000);
    }
    assert!(refused > 0 && s.key_count() > 0, "{refused} refused, {} kept", s.key_count());
    let mut s = KeyedState::new(
        Strategy::LastWriteWins,
        KeyedLimits { state_bytes_max: 1 << 16, conflict_log_bytes_max: 2000 },
    );
    for origin in 0..10u64 {
        s.apply(w(origin, 0, origin, false, &[], OpKind::Put(b"x"))).unwrap();
    }
    assert_eq!(s.conflicts_total(), 9);
    let kept: Vec<usize> = s.conflicts().map(|c| c.versions.len()).collect();
    assert!(!kept.is_empty() && kept.len() < 9, "the log is bounded: {kept:?}");
    assert_eq!(*kept.last().unwrap(), 10, "the newest conflict is kept");
}

#[test]
fn a_topic_refuses_operations_of_another_type() {
    let mut s = KeyedState::new(Strategy::Counter, ROOMY);
    let e = s.apply(w(1, 0, 1, false, &[], OpKind::Put(b"x"))).unwrap_err();
    assert_eq!(e, KeyedError::WrongOp { op: "put", strategy: Strategy::Counter });
    assert!(e.to_string().contains("a counter topic takes no put"), "{e}");
    assert!(s.prepare(b"k", OpKind::Add(b"x"), false).is_err());
    let mut lww = KeyedState::new(Strategy::LastWriteWins, ROOMY);
    let reset = OpKind::Delete(vec![outpost_core::keyed::Counted { origin: NodeId(1), up: 1, down: 0 }]);
    assert!(lww.apply(w(1, 0, 1, false, &[], reset)).is_err(), "only a counter's delete names counts");
}

/// A merge the application registers: the values joined in dot order, a deletion as "-".
#[derive(Debug)]
struct Joined;

impl outpost_core::keyed::Merge for Joined {
    fn merge(
        &self,
        _key: &[u8],
        versions: &[&outpost_core::keyed::Version],
    ) -> Result<Option<Vec<u8>>, outpost_core::keyed::MergeError> {
        let parts: Vec<&[u8]> = versions.iter().map(|v| v.value.as_deref().unwrap_or(b"-")).collect();
        Ok(Some(parts.join(&b'|')))
    }
}

/// `custom`: one version answers itself, concurrent ones what the registered merge makes
/// of them (in dot order, so in any order of arrival), a write that saw them replaces
/// them; without a merge the versions are answered with the error; and a node's config
/// refuses `custom` without a merge and a merge on another strategy.
#[test]
fn a_custom_topic_answers_the_registered_merge_of_its_concurrent_versions() {
    use outpost_core::config::{KeyedTopic, NodeConfig, Role, SyncDirection, TopicConfig};
    use outpost_core::keyed::MergeFn;
    let merge = MergeFn::new(Joined);
    let writes = || [w(2, 0, 20, false, &[], OpKind::Put(b"edge")), w(1, 0, 10, true, &[], OpKind::Delete(vec![]))];
    for reversed in [false, true] {
        let mut s = KeyedState::new(Strategy::Custom, ROOMY).with_merge(merge.clone());
        let mut ws = writes();
        if reversed {
            ws.reverse();
        }
        let [first, second] = ws;
        s.apply(first).expect("room");
        assert!(matches!(s.get(b"k"), Value::Bytes(_) | Value::Absent), "one version answers itself");
        s.apply(second).expect("room");
        assert_eq!(s.get(b"k"), Value::Merged(b"-|edge".to_vec()), "dot order: origin 1 first");
        assert!(s.conflicts().all(|c| c.winner.is_none() && c.strategy == Strategy::Custom));
        s.apply(w(3, 0, 30, false, &[(1, 0), (2, 0)], OpKind::Put(b"resolved"))).expect("room");
        assert_eq!(s.get(b"k"), Value::Bytes(b"resolved"));
    }
    let mut unmerged = KeyedState::new(Strategy::Custom, ROOMY);
    for x in writes() {
        unmerged.apply(x).expect("room");
    }
    let Value::MergeFailed(e, versions) = unmerged.get(b"k") else { panic!("no merge, no answer") };
    assert!(e.to_string().contains("no merge is registered"), "{e}");
    assert_eq!(versions.len(), 2, "every version, the deletion too");

    let config = |strategy, merge: Option<MergeFn>| {
        let mut t = TopicConfig::new("notes", SyncDirection::Local);
        t.keyed = Some(KeyedTopic { strategy, limits: KeyedTopic::DEFAULT_LIMITS, merge });
        NodeConfig::new(NodeId(1), Role::Edge, vec![t]).validate()
    };
    assert!(config(Strategy::Custom, Some(merge.clone())).is_ok());
    let e = config(Strategy::Custom, None).expect_err("a custom topic needs a merge");
    assert!(e.to_string().contains("needs a merge"), "{e}");
    let e = config(Strategy::KeepBoth, Some(merge)).expect_err("only custom takes a merge");
    assert!(e.to_string().contains("only a \"custom\" topic takes a merge"), "{e}");
}

//! The oracle of keyed topics: what each key must answer, computed from the recorded
//! history of its writes by each strategy's definition (docs/KEYED.md), without the core's
//! merge code. A replica that took every write of a key must answer exactly this.
//!
//! The history is a set: no order between writes is used, only what each write's context
//! says it saw, so the answer is the one every order of delivery must reach.

use outpost_core::hlc::Hlc;
use outpost_core::keyed::{Dot, KeyedOp, KeyedState, MergeFn, OpKind, Strategy, Value, Version};

/// One write of a keyed topic, as the history records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedWrite {
    pub key: Vec<u8>,
    pub dot: Dot,
    pub hlc: Hlc,
    /// The record's value: the encoded operation.
    pub op: Vec<u8>,
}

impl KeyedWrite {
    fn op(&self) -> KeyedOp<'_> {
        KeyedOp::decode(&self.op).expect("the history records only operations that were taken")
    }
}

/// What a key answers, owning its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Absent,
    Bytes(Vec<u8>),
    Siblings(Vec<Version>),
    Number(i64),
    Elements(Vec<Vec<u8>>),
    /// `custom`: the merge failed (its error), over these versions.
    MergeFailed(String, Vec<Version>),
}

impl Answer {
    /// What a replica's state answers for `key`.
    pub fn of(state: &KeyedState, key: &[u8]) -> Answer {
        match state.get(key) {
            Value::Absent => Answer::Absent,
            Value::Bytes(b) => Answer::Bytes(b.to_vec()),
            Value::Siblings(v) => Answer::Siblings(v.into_iter().cloned().collect()),
            Value::Number(n) => Answer::Number(n),
            Value::Elements(e) => Answer::Elements(e.into_iter().map(<[u8]>::to_vec).collect()),
            Value::Merged(b) => Answer::Bytes(b),
            Value::MergeFailed(e, v) => Answer::MergeFailed(e.0, v.into_iter().cloned().collect()),
        }
    }
}

/// How a replica's answer for a key breaks the strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedViolation {
    /// The history deletes the key (or its every element or value), and the replica still
    /// answers something: a write came back without a newer one.
    Resurrected { key: Vec<u8>, answered: Answer },
    /// The replica answers other than the strategy prescribes.
    Diverged { key: Vec<u8>, expected: Answer, answered: Answer },
}

/// Checks a replica's answer for `key` against the history of that key (every write the
/// replica took; writes of other keys are ignored). `merge`: a `custom` topic's.
pub fn check(
    strategy: Strategy,
    merge: Option<&MergeFn>,
    history: &[KeyedWrite],
    key: &[u8],
    answered: Answer,
) -> Result<(), KeyedViolation> {
    let expected = expected(strategy, merge, history, key);
    if expected == answered {
        return Ok(());
    }
    let key = key.to_vec();
    Err(if expected == Answer::Absent && history.iter().any(|w| w.key == key) {
        KeyedViolation::Resurrected { key, answered }
    } else {
        KeyedViolation::Diverged { key, expected, answered }
    })
}

/// What `key` must answer after every write of `history` (writes of other keys ignored).
/// A `custom` topic answers what its `merge` makes of the versions the oracle finds live:
/// the merge is the user's function, called on the oracle's set, not the core's.
pub fn expected(strategy: Strategy, merge: Option<&MergeFn>, history: &[KeyedWrite], key: &[u8]) -> Answer {
    let writes: Vec<(&KeyedWrite, KeyedOp<'_>)> =
        history.iter().filter(|w| w.key == key).map(|w| (w, w.op())).collect();
    let covered_by_a_delete =
        |dot: Dot| writes.iter().any(|(_, o)| matches!(o.kind, OpKind::Delete(_)) && o.context.covers(dot));
    match strategy {
        Strategy::Counter => counter(&writes),
        Strategy::Max => writes
            .iter()
            .filter(|(w, _)| !covered_by_a_delete(w.dot))
            .filter_map(|(_, o)| match o.kind {
                OpKind::Max(v) => Some(v),
                _ => None,
            })
            .max()
            .map_or(Answer::Absent, Answer::Number),
        Strategy::AddWinsSet => {
            let mut present: Vec<Vec<u8>> = Vec::new();
            for (w, o) in &writes {
                let OpKind::Add(e) = o.kind else { continue };
                let removed = covered_by_a_delete(w.dot)
                    || writes
                        .iter()
                        .any(|(_, r)| matches!(r.kind, OpKind::Remove(x) if x == e) && r.context.covers(w.dot));
                if !removed && !present.iter().any(|p| p == e) {
                    present.push(e.to_vec());
                }
            }
            present.sort();
            if present.is_empty() {
                Answer::Absent
            } else {
                Answer::Elements(present)
            }
        }
        _ => register(strategy, merge, key, &writes),
    }
}

/// Per origin: the sum of its increments and of its decrements, less the most any delete
/// had counted of it.
fn counter(writes: &[(&KeyedWrite, KeyedOp<'_>)]) -> Answer {
    let mut origins: Vec<_> = writes.iter().map(|(w, _)| w.dot.origin).collect();
    for (_, o) in writes {
        if let OpKind::Delete(counted) = &o.kind {
            origins.extend(counted.iter().map(|c| c.origin));
        }
    }
    origins.sort();
    origins.dedup();
    let (mut total, mut any) = (0i128, false);
    for origin in origins {
        let (mut up, mut down, mut reset_up, mut reset_down) = (0u64, 0u64, 0u64, 0u64);
        for (w, o) in writes {
            match &o.kind {
                OpKind::Increment(n) if w.dot.origin == origin && *n >= 0 => up = up.saturating_add(n.unsigned_abs()),
                OpKind::Increment(n) if w.dot.origin == origin => down = down.saturating_add(n.unsigned_abs()),
                OpKind::Delete(counted) => {
                    for c in counted.iter().filter(|c| c.origin == origin) {
                        reset_up = reset_up.max(c.up);
                        reset_down = reset_down.max(c.down);
                    }
                }
                _ => {}
            }
        }
        any |= up > reset_up || down > reset_down;
        total += i128::from(up.saturating_sub(reset_up)) - i128::from(down.saturating_sub(reset_down));
    }
    if any {
        Answer::Number(total.clamp(i64::MIN.into(), i64::MAX.into()) as i64)
    } else {
        Answer::Absent
    }
}

/// The versions no write overwrote (its context covers them, or it is a later write of
/// the same origin), and the strategy's choice among them.
fn register(strategy: Strategy, merge: Option<&MergeFn>, key: &[u8], writes: &[(&KeyedWrite, KeyedOp<'_>)]) -> Answer {
    let overwritten = |w: &KeyedWrite| {
        writes.iter().any(|(o, op)| {
            o.dot != w.dot && (op.context.covers(w.dot) || (o.dot.origin == w.dot.origin && o.dot.seq > w.dot.seq))
        })
    };
    let mut live: Vec<Version> = writes
        .iter()
        .filter(|(w, _)| !overwritten(w))
        .map(|(w, op)| Version {
            dot: w.dot,
            hlc: w.hlc,
            cloud: op.cloud,
            value: match op.kind {
                OpKind::Put(v) => Some(v.to_vec()),
                _ => None,
            },
        })
        .collect();
    live.sort_by_key(|v| v.dot);
    let order = |v: &&Version| (v.hlc, v.dot.origin);
    let last = |among: Vec<&Version>| among.into_iter().max_by_key(order).cloned();
    let side = |cloud: bool| {
        let mine: Vec<&Version> = live.iter().filter(|v| v.cloud == cloud).collect();
        last(if mine.is_empty() { live.iter().collect() } else { mine })
    };
    let chosen = match strategy {
        Strategy::LastWriteWins => last(live.iter().collect()),
        Strategy::FirstWriteWins => live.iter().min_by_key(order).cloned(),
        Strategy::CloudWins => side(true),
        Strategy::EdgeWins => side(false),
        Strategy::Custom if live.len() > 1 => {
            let all: Vec<&Version> = live.iter().collect();
            let merged = merge.expect("a custom topic has a merge").0.merge(key, &all);
            return match merged {
                Ok(v) => v.map_or(Answer::Absent, Answer::Bytes),
                Err(e) => Answer::MergeFailed(e.0, live),
            };
        }
        Strategy::Custom => live.pop(),
        _ => {
            let mut values: Vec<Version> = live.into_iter().filter(|v| v.value.is_some()).collect();
            return match values.len() {
                0 => Answer::Absent,
                1 => Answer::Bytes(values.remove(0).value.expect("filtered on a value")),
                _ => Answer::Siblings(values),
            };
        }
    };
    chosen.and_then(|v| v.value).map_or(Answer::Absent, Answer::Bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_core::keyed::VersionVector;
    use outpost_core::types::NodeId;

    fn write(origin: u64, seq: u64, hlc: u64, seen: &[(u64, u64)], cloud: bool, kind: OpKind<'_>) -> KeyedWrite {
        let context: VersionVector = seen.iter().map(|&(o, s)| Dot { origin: NodeId(o), seq: s }).collect();
        let mut op = Vec::new();
        KeyedOp { context, cloud, relayed: None, kind }.encode(&mut op);
        KeyedWrite { key: b"k".to_vec(), dot: Dot { origin: NodeId(origin), seq }, hlc: Hlc(hlc), op }
    }

    #[test]
    fn a_replica_answering_the_older_of_two_concurrent_writes_diverges_under_last_write_wins() {
        // The edge's clock is behind (HLC 10) but its write came later by wall time: the
        // oracle goes by HLC alone.
        let h = [
            write(1, 0, 20, &[], true, OpKind::Put(b"head-office")),
            write(2, 0, 10, &[], false, OpKind::Put(b"till")),
        ];
        assert_eq!(check(Strategy::LastWriteWins, None, &h, b"k", Answer::Bytes(b"head-office".to_vec())), Ok(()));
        let wrong = check(Strategy::LastWriteWins, None, &h, b"k", Answer::Bytes(b"till".to_vec()));
        assert!(matches!(wrong, Err(KeyedViolation::Diverged { .. })), "{wrong:?}");
        assert_eq!(check(Strategy::FirstWriteWins, None, &h, b"k", Answer::Bytes(b"till".to_vec())), Ok(()));
        assert_eq!(check(Strategy::EdgeWins, None, &h, b"k", Answer::Bytes(b"till".to_vec())), Ok(()));
        let both = check(Strategy::KeepBoth, None, &h, b"k", Answer::Bytes(b"till".to_vec()));
        assert!(
            matches!(both, Err(KeyedViolation::Diverged { expected: Answer::Siblings(ref s), .. }) if s.len() == 2)
        );
    }

    #[test]
    fn a_value_answered_after_a_delete_that_saw_it_is_a_resurrection() {
        let h = [
            write(1, 0, 10, &[], false, OpKind::Put(b"note")),
            write(2, 0, 5, &[(1, 0)], false, OpKind::Delete(vec![])),
        ];
        for strategy in [Strategy::LastWriteWins, Strategy::FirstWriteWins, Strategy::KeepBoth] {
            assert_eq!(expected(strategy, None, &h, b"k"), Answer::Absent, "{strategy}: the delete saw the put");
            let back = check(strategy, None, &h, b"k", Answer::Bytes(b"note".to_vec()));
            assert!(matches!(back, Err(KeyedViolation::Resurrected { .. })), "{strategy}: {back:?}");
        }
    }

    #[test]
    fn convergent_types_count_what_no_delete_saw() {
        let counter = [
            write(1, 0, 1, &[], false, OpKind::Increment(5)),
            write(
                2,
                0,
                2,
                &[],
                false,
                OpKind::Delete(vec![outpost_core::keyed::Counted { origin: NodeId(1), up: 5, down: 0 }]),
            ),
            write(1, 1, 3, &[], false, OpKind::Increment(-2)),
        ];
        assert_eq!(expected(Strategy::Counter, None, &counter, b"k"), Answer::Number(-2));
        assert!(check(Strategy::Counter, None, &counter, b"k", Answer::Number(3)).is_err(), "a reset ignored");
        let max = [
            write(1, 0, 1, &[], false, OpKind::Max(9)),
            write(2, 0, 2, &[(1, 0)], false, OpKind::Delete(vec![])),
            write(1, 1, 3, &[], false, OpKind::Max(4)),
        ];
        assert_eq!(expected(Strategy::Max, None, &max, b"k"), Answer::Number(4));
        assert!(matches!(
            check(Strategy::Max, None, &max, b"k", Answer::Number(9)),
            Err(KeyedViolation::Diverged { .. })
        ));
        let set = [
            write(1, 0, 1, &[], false, OpKind::Add(b"milk")),
            write(2, 0, 2, &[(1, 0)], false, OpKind::Remove(b"milk")),
        ];
        assert!(matches!(
            check(Strategy::AddWinsSet, None, &set, b"k", Answer::Elements(vec![b"milk".to_vec()])),
            Err(KeyedViolation::Resurrected { .. })
        ));
    }
}

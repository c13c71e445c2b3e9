//! A linearizability checker for histories of a key-value register: the Wing & Gong search
//! with Lowe's memoization, as Porcupine's `checkSingle`. It checks the strong
//! (Raft-replicated) operations the simulator records.
//!
//! A register per key is P-compositional: a history is linearizable iff each key's
//! sub-history is, so keys are checked one at a time, in ascending order. Per key, the search
//! walks a doubly linked list of call and return events in time order and tries to
//! linearize ("lift") an operation whose call it reaches; reaching the return of an
//! operation not yet linearized means the current order cannot be extended, so it
//! backtracks. A cache of (linearized set, register value) prunes states already explored.
//!
//! Deterministic: no hashing, threads, clock or randomness; the search is bounded by a
//! step limit so that a pathological history yields `Unknown` instead of hanging a run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One operation as a client saw it. Times are virtual nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub call: u64,
    /// `None`: the client never learned the outcome (timeout, crash, lost answer). A Put may
    /// then have taken effect at any point after `call`, or never; a Get without an answer
    /// says nothing and is ignored.
    pub ret: Option<u64>,
    pub op: KvOp,
    /// The answer: `Some(KvResult::Written)` for a Put that returned,
    /// `Some(KvResult::Read(v))` for a Get that returned; `None` iff `ret` is `None`.
    pub result: Option<KvResult>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    Put { key: u64, value: u64 },
    Get { key: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvResult {
    Written,
    /// `Read(None)`: the key was never written.
    Read(Option<u64>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the operations on `key`; `ops` are indexes into the history of the
    /// operations on that key (all of them, sorted), and `longest_prefix` how many of them
    /// the best attempt managed to linearize.
    NotLinearizable {
        key: u64,
        ops: Vec<usize>,
        longest_prefix: usize,
    },
    /// The search passed `step_limit` steps on `key` before deciding.
    Unknown {
        key: u64,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable { key, ops, longest_prefix } => write!(
                f,
                "not linearizable: key {key}, {} operations, at most {longest_prefix} could be ordered",
                ops.len()
            ),
            Verdict::Unknown { key } => {
                write!(f, "unknown: the search on key {key} passed its step limit before deciding")
            }
        }
    }
}

impl KvOp {
    fn key(self) -> u64 {
        match self {
            KvOp::Put { key, .. } | KvOp::Get { key } => key,
        }
    }
}

/// Checks `history`; each attempt to linearize an operation is one step, and a key whose
/// search passes `step_limit` steps yields `Unknown`.
///
/// Panics on a malformed history (a bug of the caller): `call > ret`, or a result missing,
/// present without a return, or of the wrong kind for its operation.
pub fn check(history: &[Operation], step_limit: u64) -> Verdict {
    let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, o) in history.iter().enumerate() {
        validate(i, o);
        by_key.entry(o.op.key()).or_default().push(i);
    }
    for (key, ops) in by_key {
        match check_key(history, &ops, step_limit) {
            Search::Linearizable => {}
            Search::Stuck { longest_prefix } => return Verdict::NotLinearizable { key, ops, longest_prefix },
            Search::OutOfSteps => return Verdict::Unknown { key },
        }
    }
    Verdict::Linearizable
}

fn validate(i: usize, o: &Operation) {
    if let Some(ret) = o.ret {
        assert!(o.call <= ret, "linearizable: operation {i} returns ({ret}) before its call ({})", o.call);
    }
    match (o.op, o.ret, o.result) {
        (_, None, None)
        | (KvOp::Put { .. }, Some(_), Some(KvResult::Written))
        | (KvOp::Get { .. }, Some(_), Some(KvResult::Read(_))) => {}
        _ => panic!(
            "linearizable: operation {i} is malformed: {:?} with ret {:?} and result {:?} \
             (a result is present iff ret is, Written for a Put, Read for a Get)",
            o.op, o.ret, o.result
        ),
    }
}

enum Search {
    Linearizable,
    Stuck { longest_prefix: usize },
    OutOfSteps,
}

const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// A node of the event list; node `HEAD` is a sentinel.
#[derive(Clone, Copy)]
struct Node {
    prev: usize,
    next: usize,
    /// Index into the searched operations.
    op: usize,
    is_call: bool,
    /// For a call, its return's node (and the other way round).
    matching: usize,
}

/// The register: applies `o` to `state`; `None` if the recorded answer is impossible there.
fn step(state: Option<u64>, o: &Operation) -> Option<Option<u64>> {
    match (o.op, o.result) {
        (KvOp::Put { value, .. }, _) => Some(Some(value)),
        (KvOp::Get { .. }, Some(KvResult::Read(read))) => (read == state).then_some(state),
        (KvOp::Get { .. }, _) => unreachable!("unanswered Gets are dropped before the search"),
    }
}

fn check_key(history: &[Operation], ops: &[usize], step_limit: u64) -> Search {
    // Drop what cannot constrain the order. A Get without an answer says nothing. A Put
    // without an answer may take effect at any point after its call, or never: we give it an
    // infinite return time, so it can be linearized anywhere after its call (at the very end
    // being the same as never). Going further, if no answered Get read its value it can be
    // dropped altogether: removing it from a valid order leaves the order valid, since no
    // Get sits between it and the next Put (such a Get would have read its value), and
    // conversely it can always be appended at the end. This keeps timed-out writes from
    // multiplying the search space.
    let read: BTreeSet<u64> = ops
        .iter()
        .filter_map(|&i| match history[i].result {
            Some(KvResult::Read(v)) => v,
            _ => None,
        })
        .collect();
    let live: Vec<&Operation> = ops
        .iter()
        .map(|&i| &history[i])
        .filter(|o| match o.op {
            KvOp::Get { .. } => o.ret.is_some(),
            KvOp::Put { value, .. } => o.ret.is_some() || read.contains(&value),
        })
        .collect();

    // Events sorted by (time, returns after calls, operation). A precedes B only if
    // A.ret < B.call: two operations whose intervals touch at a single instant are
    // concurrent (the permissive choice, as the instant tells nothing of which took effect
    // first), so at equal times calls come before returns. An unanswered Put returns at
    // `u64::MAX`, which, with that tie rule, is after every call: infinity in effect.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * live.len());
    for (j, o) in live.iter().enumerate() {
        events.push((o.call, false, j));
        events.push((o.ret.unwrap_or(u64::MAX), true, j));
    }
    events.sort_unstable();
    let mut nodes = vec![Node { prev: NIL, next: NIL, op: NIL, is_call: false, matching: NIL }; events.len() + 1];
    let mut call_node = vec![NIL; live.len()];
    for (k, &(_, is_return, j)) in events.iter().enumerate() {
        let n = k + 1;
        nodes[n].op = j;
        nodes[n].is_call = !is_return;
        nodes[n - 1].next = n;
        nodes[n].prev = n - 1;
        if is_return {
            nodes[n].matching = call_node[j];
            nodes[call_node[j]].matching = n;
        } else {
            call_node[j] = n;
        }
    }

    let mut state: Option<u64> = None;
    let mut linearized = vec![0u64; live.len().div_ceil(64)];
    // Memo key: (set of linearized operations, register value). Two paths reaching the same
    // pair have the same future, since what remains to order and its constraints depend
    // only on the set, and the model only on the value; a pair in the cache was already
    // explored without success (success ends the search), so it is skipped.
    let mut cache: BTreeSet<(Vec<u64>, Option<u64>)> = BTreeSet::new();
    // Backtracking stack: (call node linearized, register value before it).
    let mut calls: Vec<(usize, Option<u64>)> = Vec::new();
    let mut longest_prefix = 0;
    let mut steps = 0u64;
    // The list's last node is always a return, so walking forward never reaches NIL.
    let mut entry = nodes[HEAD].next;
    while nodes[HEAD].next != NIL {
        let node = nodes[entry];
        if node.is_call {
            steps += 1;
            if steps > step_limit {
                return Search::OutOfSteps;
            }
            if let Some(next_state) = step(state, live[node.op]) {
                let (word, bit) = (node.op / 64, 1u64 << (node.op % 64));
                linearized[word] |= bit;
                if cache.insert((linearized.clone(), next_state)) {
                    calls.push((entry, state));
                    longest_prefix = longest_prefix.max(calls.len());
                    state = next_state;
                    lift(&mut nodes, entry);
                    entry = nodes[HEAD].next;
                    continue;
                }
                linearized[word] &= !bit;
            }
            entry = node.next;
        } else {
            // The return of an operation not linearized: every order extending the current
            // one would place it after its return. Undo the latest choice and try the next.
            let Some((call, previous)) = calls.pop() else {
                return Search::Stuck { longest_prefix };
            };
            let op = nodes[call].op;
            linearized[op / 64] &= !(1u64 << (op % 64));
            state = previous;
            unlift(&mut nodes, call);
            entry = nodes[call].next;
        }
    }
    Search::Linearizable
}

/// Unlinks a call and its return (dancing links: the nodes keep their own pointers).
fn lift(nodes: &mut [Node], call: usize) {
    for n in [call, nodes[call].matching] {
        let Node { prev, next, .. } = nodes[n];
        nodes[prev].next = next;
        if next != NIL {
            nodes[next].prev = prev;
        }
    }
}

/// Relinks what `lift` unlinked, in the reverse order.
fn unlift(nodes: &mut [Node], call: usize) {
    for n in [nodes[call].matching, call] {
        let Node { prev, next, .. } = nodes[n];
        nodes[prev].next = n;
        if next != NIL {
            nodes[next].prev = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: u64 = 1_000_000;

    fn put(client: u64, call: u64, ret: Option<u64>, key: u64, value: u64) -> Operation {
        Operation { client, call, ret, op: KvOp::Put { key, value }, result: ret.map(|_| KvResult::Written) }
    }

    fn get(client: u64, call: u64, ret: u64, key: u64, read: Option<u64>) -> Operation {
        Operation { client, call, ret: Some(ret), op: KvOp::Get { key }, result: Some(KvResult::Read(read)) }
    }

    fn not_lin(key: u64, ops: &[usize], longest_prefix: usize) -> Verdict {
        Verdict::NotLinearizable { key, ops: ops.to_vec(), longest_prefix }
    }

    #[test]
    fn empty_and_sequential() {
        assert_eq!(check(&[], 0), Verdict::Linearizable);
        let h = [put(1, 0, Some(10), 7, 5), get(2, 20, 30, 7, Some(5))];
        assert_eq!(check(&h, LIMIT), Verdict::Linearizable);
        let h = [get(2, 0, 5, 7, None), put(1, 10, Some(20), 7, 5)];
        assert_eq!(check(&h, LIMIT), Verdict::Linearizable);
    }

    #[test]
    fn stale_reads() {
        let h = [put(1, 0, Some(10), 1, 1), get(2, 20, 30, 1, None)];
        assert_eq!(check(&h, LIMIT), not_lin(1, &[0, 1], 1));
        let h = [put(1, 0, Some(10), 1, 1), put(1, 20, Some(30), 1, 2), get(2, 40, 50, 1, Some(1))];
        assert_eq!(check(&h, LIMIT), not_lin(1, &[0, 1, 2], 2));
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The Put returns at the very instant the Get is called: either order is allowed.
        let h = [put(1, 0, Some(10), 1, 1), get(2, 10, 20, 1, None)];
        assert_eq!(check(&h, LIMIT), Verdict::Linearizable);
        let h = [put(1, 0, Some(10), 1, 1), get(2, 11, 20, 1, None)];
        assert_eq!(check(&h, LIMIT), not_lin(1, &[0, 1], 1));
    }

    #[test]
    fn concurrent_puts() {
        let puts = [put(1, 0, Some(10), 4, 1), put(2, 5, Some(15), 4, 2)];
        for read in [1, 2] {
            let h = [puts[0].clone(), puts[1].clone(), get(3, 20, 30, 4, Some(read))];
            assert_eq!(check(&h, LIMIT), Verdict::Linearizable, "read {read}");
        }
        let h = [puts[0].clone(), puts[1].clone(), get(3, 20, 30, 4, Some(3))];
        assert_eq!(check(&h, LIMIT), not_lin(4, &[0, 1, 2], 2));
    }

    #[test]
    fn unanswered_put() {
        let p = put(1, 10, None, 2, 9);
        // Read after its call: it took effect.
        let h = [get(2, 0, 5, 2, None), p.clone(), get(2, 20, 30, 2, Some(9))];
        assert_eq!(check(&h, LIMIT), Verdict::Linearizable);
        // Long after, still unread: it may also never take effect.
        let h = [p.clone(), get(2, 1_000, 1_010, 2, None)];
        assert_eq!(check(&h, LIMIT), Verdict::Linearizable);
        // Read before its call: nothing wrote that value yet.
        let h = [get(2, 0, 5, 2, Some(9)), p.clone()];
        assert_eq!(check(&h, LIMIT), not_lin(2, &[0, 1], 0));
        // Read, then not read again by a later read: it cannot have taken effect twice.
        let h = [p, get(2, 20, 30, 2, Some(9)), get(3, 40, 50, 2, None)];
        assert_eq!(check(&h, LIMIT), not_lin(2, &[0, 1, 2], 2));
    }

    #[test]
    fn unanswered_get_is_ignored() {
        let lost = Operation { client: 3, call: 0, ret: None, op: KvOp::Get { key: 1 }, result: None };
        let h = [put(1, 0, Some(10), 1, 1), lost, get(2, 20, 30, 1, Some(1))];
        assert_eq!(check(&h, LIMIT), Verdict::Linearizable);
    }

    #[test]
    fn unread_unanswered_puts_cost_nothing() {
        // 200 timed-out writes nobody read are dropped: a handful of steps suffice.
        let mut h: Vec<Operation> = (0..200).map(|v| put(v, 0, None, 1, v + 100)).collect();
        h.push(put(1, 0, Some(10), 1, 1));
        h.push(get(2, 20, 30, 1, Some(1)));
        assert_eq!(check(&h, 4), Verdict::Linearizable);
    }

    #[test]
    fn non_monotonic_reads() {
        let mut h = vec![
            put(1, 0, Some(10), 1, 1),
            put(2, 20, Some(100), 1, 2),
            get(3, 30, 40, 1, Some(2)),
            get(4, 50, 60, 1, Some(1)),
        ];
        assert_eq!(check(&h, LIMIT), not_lin(1, &[0, 1, 2, 3], 3));
        // The same reads overlapping each other: the old one may be ordered first.
        h[3].call = 35;
        assert_eq!(check(&h, LIMIT), Verdict::Linearizable);
    }

    #[test]
    fn keys_are_independent() {
        let h = [
            put(1, 0, Some(10), 3, 1),
            get(2, 20, 30, 3, None), // key 3 is broken too, but key 2 comes first
            put(1, 0, Some(10), 2, 1),
            put(1, 0, Some(10), 1, 1),
            get(2, 20, 30, 1, Some(1)),
            get(2, 20, 30, 2, None),
        ];
        assert_eq!(check(&h, LIMIT), not_lin(2, &[2, 5], 1));
        assert_eq!(check(&h[2..], LIMIT), not_lin(2, &[0, 3], 1));
        assert_eq!(check(&h[3..5], LIMIT), Verdict::Linearizable);
    }

    fn concurrent_puts_then_bad_read(n: u64) -> Vec<Operation> {
        let mut h: Vec<Operation> = (0..n).map(|v| put(v, 0, Some(100), 1, v)).collect();
        h.push(get(n, 200, 300, 1, Some(999)));
        h
    }

    #[test]
    fn step_limit() {
        // 40 mutually concurrent Puts: (set, last value) pairs are too many to exhaust.
        let h = concurrent_puts_then_bad_read(40);
        assert_eq!(check(&h, 1_000), Verdict::Unknown { key: 1 });
        // Few enough to exhaust, the search decides.
        let h = concurrent_puts_then_bad_read(6);
        let ops: Vec<usize> = (0..7).collect();
        assert_eq!(check(&h, LIMIT), not_lin(1, &ops, 6));
    }

    #[test]
    #[should_panic(expected = "operation 1 is malformed")]
    fn put_with_a_read_panics() {
        let mut bad = put(1, 0, Some(1), 1, 1);
        bad.result = Some(KvResult::Read(None));
        check(&[put(1, 0, Some(1), 1, 1), bad], LIMIT);
    }

    #[test]
    #[should_panic(expected = "operation 0 returns (1) before its call (2)")]
    fn return_before_call_panics() {
        check(&[get(1, 2, 1, 1, None)], LIMIT);
    }

    #[test]
    fn display() {
        assert_eq!(Verdict::Linearizable.to_string(), "linearizable");
        assert_eq!(
            not_lin(3, &[0, 1, 2, 4, 5], 3).to_string(),
            "not linearizable: key 3, 5 operations, at most 3 could be ordered"
        );
        assert_eq!(
            Verdict::Unknown { key: 3 }.to_string(),
            "unknown: the search on key 3 passed its step limit before deciding"
        );
    }

    /// A sequential execution against a real register: (key, `Some(value)` for a Put,
    /// `None` for a Get); operation `i` runs in [10i, 10i + 1].
    fn sequential(ops: &[(u64, Option<u64>)]) -> Vec<Operation> {
        let mut register: BTreeMap<u64, u64> = BTreeMap::new();
        let mut history = Vec::new();
        for (i, &(key, value)) in ops.iter().enumerate() {
            let (i, t) = (i as u64, 10 * i as u64);
            history.push(match value {
                Some(value) => {
                    register.insert(key, value);
                    put(i % 4, t, Some(t + 1), key, value)
                }
                None => get(i % 4, t, t + 1, key, register.get(&key).copied()),
            });
        }
        history
    }

    fn ops() -> impl Strategy<Value = Vec<(u64, Option<u64>)>> {
        prop::collection::vec((0..3u64, prop::option::of(0..4u64)), 1..40)
    }

    proptest! {
        #[test]
        fn widened_sequential_histories_stay_linearizable(
            ops in ops(),
            widen in prop::collection::vec((0..30u64, 0..30u64, 0..8u8), 40),
        ) {
            let mut history = sequential(&ops);
            for (o, &(earlier, later, lose)) in history.iter_mut().zip(&widen) {
                o.call = o.call.saturating_sub(earlier);
                o.ret = o.ret.map(|r| r + later);
                // Losing the answer is a widening too: to infinity for a Put.
                if lose == 0 {
                    o.ret = None;
                    o.result = None;
                }
            }
            prop_assert_eq!(check(&history, LIMIT), Verdict::Linearizable);
        }

        #[test]
        fn a_wrong_read_is_caught(
            ops in ops(),
            pick in any::<prop::sample::Index>(),
            to_none in any::<bool>(),
        ) {
            let mut history = sequential(&ops);
            let gets: Vec<usize> = (0..history.len())
                .filter(|&i| matches!(history[i].op, KvOp::Get { .. }))
                .collect();
            prop_assume!(!gets.is_empty());
            let i = gets[pick.index(gets.len())];
            let wrong = match history[i].result {
                Some(KvResult::Read(Some(_))) if to_none => None,
                Some(KvResult::Read(Some(v))) => Some(v + 1),
                _ => Some(0),
            };
            history[i].result = Some(KvResult::Read(wrong));
            let key = history[i].op.key();
            let verdict = check(&history, LIMIT);
            prop_assert!(
                matches!(verdict, Verdict::NotLinearizable { key: k, .. } if k == key),
                "{verdict:?}"
            );
        }
    }
}

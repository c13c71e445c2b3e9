//! The HLC-ahead-of-wall checker: a node's issued timestamps never run ahead of its own
//! wall clock by more than its configured `max_offset_ms`, unless its wall clock went back.
//!
//! Why the bound holds for a node with a sane clock: the clock issues
//! `max(wall, last + 1)`, and `last` moves ahead of the wall only by adopting a remote
//! timestamp, which `observe` accepts only up to `wall + max_offset_ms`; a restart starts
//! from the wall clock (waiting out the persisted bound), not from the bound. The one
//! legitimate exception is a wall clock that went back (a `clock-jump` by a negative
//! amount, or a device without a real-time clock restarting at 1970): the clock then keeps
//! its timestamps above everything issued before, and a restart may start from a bound
//! persisted while the wall clock read more. So the node is exempt until its wall clock is
//! back at the highest reading it had before it went back and within `max_offset_ms` of
//! the clock's greatest timestamp (the world hands the checker `Node::hlc` with each
//! timestamp, at or above every timestamp the node issued, those nobody saw included).
//!
//! The world feeds it every timestamp a node issues that others can see: producer
//! acknowledgements (`ProduceAck::hlc`) and a gateway's receive timestamp of a stored
//! batch (`Event::Stored::received_hlc`). Each is checked against the wall clock at the
//! moment the world sees it, which is at or after the moment it was issued, so the check
//! never flags a timestamp that was within the bound when it was issued (a wall clock that
//! went back in between exempts the node, as above).

use outpost_core::hlc::Hlc;
use std::collections::BTreeMap;

/// Per node: what its wall clock has shown.
#[derive(Clone, Copy, Debug, Default)]
struct NodeClock {
    /// The highest wall reading seen (with an issued timestamp, or just before the wall
    /// clock went back).
    max_wall_ms: u64,
    /// Its wall clock went back, and has not yet caught up (see the module docs).
    behind: bool,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct HlcAheadCheck {
    nodes: BTreeMap<usize, NodeClock>,
}

impl HlcAheadCheck {
    /// Node `node`'s wall clock went back from `wall_before_ms` (a negative jump, or a
    /// restart of a device without a real-time clock): its timestamps may run ahead of the
    /// wall until it catches up.
    pub fn on_wall_back(&mut self, node: usize, wall_before_ms: u64) {
        let c = self.nodes.entry(node).or_default();
        c.behind = true;
        c.max_wall_ms = c.max_wall_ms.max(wall_before_ms);
    }

    /// Node `node` (named `name`) issued `hlc`, seen when its wall clock reads `wall_ms`
    /// and its clock's greatest timestamp is `clock_last` (at or above everything it
    /// issued, those nobody saw included: a produce stamped and then refused for its
    /// storage). Returns what is wrong if the timestamp is more than `max_offset_ms` ahead
    /// of the wall clock (one more millisecond is allowed: adopting a remote timestamp
    /// with a full logical counter carries into the physical part) while the wall clock
    /// did not go back, or went back and has since caught up.
    pub fn on_issued(
        &mut self,
        node: usize,
        name: &str,
        hlc: Hlc,
        wall_ms: u64,
        clock_last: Hlc,
        max_offset_ms: u64,
    ) -> Option<String> {
        let c = self.nodes.entry(node).or_default();
        let limit = wall_ms.saturating_add(max_offset_ms + 1);
        if wall_ms < c.max_wall_ms {
            // Seen directly: the wall reads less than it did at an earlier timestamp.
            c.behind = true;
        }
        if c.behind && wall_ms >= c.max_wall_ms && clock_last.max(hlc).physical_ms() <= limit {
            c.behind = false;
        }
        c.max_wall_ms = c.max_wall_ms.max(wall_ms);
        (!c.behind && hlc.physical_ms() > limit).then(|| {
            format!(
                "{name} issued HLC {hlc} while its wall clock read {wall_ms} ms: {:.3} s ahead, more than \
                 max_offset_ms = {max_offset_ms}, and its wall clock never went back",
                (hlc.physical_ms() - wall_ms) as f64 / 1e3
            )
        })
    }
}

/// The HLC-behind-wall check: a timestamp issued for a produce is at least the wall clock
/// when the produce arrived. The clock issues `max(wall, last + 1)`, so a timestamp below
/// it means the clock stamped from something older than the wall: its durable bound, which
/// it reached while idle (found by a real gateway and edge, docs/KEYED.md: the first write
/// after a few idle seconds lost a last-write-wins conflict to an older one). Exempt: a wall
/// clock that read less when the world saw the acknowledgement than when the produce
/// arrived (it went back meanwhile).
pub fn behind_wall(name: &str, hlc: Hlc, wall_at_produce_ms: u64, wall_at_ack_ms: u64) -> Option<String> {
    (wall_at_ack_ms >= wall_at_produce_ms && hlc.physical_ms() < wall_at_produce_ms).then(|| {
        format!(
            "{name} stamped a produce with HLC {hlc}, {:.3} s behind its wall clock when the produce arrived \
             ({wall_at_produce_ms} ms), and its wall clock did not go back",
            (wall_at_produce_ms - hlc.physical_ms()) as f64 / 1e3
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_wall_catches_a_stamp_older_than_the_produce_unless_the_clock_went_back() {
        assert!(behind_wall("n", Hlc::new(1_000, 0), 1_000, 1_005).is_none());
        assert!(behind_wall("n", Hlc::new(1_003, 7), 1_000, 1_005).is_none());
        let e = behind_wall("n", Hlc::new(900, 3), 1_000, 1_005).expect("100 ms behind");
        assert!(e.contains("0.100 s behind"), "{e}");
        assert!(behind_wall("n", Hlc::new(900, 3), 1_000, 950).is_none(), "the wall clock went back");
    }

    const MAX_OFFSET_MS: u64 = 60_000;
    const WINDOW_MS: u64 = 10_000;
    const T0: u64 = 1_767_225_600_000;

    /// Node `n` issued `hlc` (its clock's greatest timestamp) at wall time `wall`.
    fn issue(check: &mut HlcAheadCheck, n: usize, hlc: Hlc, wall: u64) -> Option<String> {
        check.on_issued(n, &format!("n{n}"), hlc, wall, hlc, MAX_OFFSET_MS)
    }

    /// What the recovery before issue 15 did: a restarted clock issued from its persisted
    /// bound (`last` set to `(bound - 1, 0xffff)`), and the next bound was a window past
    /// that. With restarts a few seconds apart and one timestamp after each, it gains
    /// `window - downtime` on the wall clock at every restart (the daemon showed 9 ms,
    /// 9.7 s, 19.4 s, 29.2 s after four kill -9 restarts).
    #[test]
    fn catches_the_recovery_that_started_from_the_persisted_bound() {
        let mut check = HlcAheadCheck::default();
        let mut wall = T0;
        let mut issued = Hlc::new(wall, 0);
        let mut bound = wall + WINDOW_MS;
        assert_eq!(issue(&mut check, 0, issued, wall), None);
        let mut caught = None;
        for restart in 1..=20 {
            // kill -9, back 300 ms later; the clock starts at the bound.
            wall += 300;
            issued = Hlc::new(bound.max(wall), 0);
            bound = issued.physical_ms() + WINDOW_MS;
            if let Some(v) = issue(&mut check, 0, issued, wall) {
                caught.get_or_insert((restart, v));
            }
        }
        let (restart, v) = caught.expect("the drift is caught");
        assert_eq!(restart, 7, "{v}");
        assert!(v.contains("67.900 s ahead") && v.contains("never went back"), "{v}");
    }

    #[test]
    fn a_clock_that_follows_the_wall_or_a_peer_within_the_offset_passes() {
        let mut check = HlcAheadCheck::default();
        for s in 0..100 {
            let wall = T0 + s * 1_000;
            assert_eq!(issue(&mut check, 1, Hlc::new(wall, 3), wall), None);
            // A peer's timestamp adopted at the limit, with a full logical counter.
            let peer = Hlc::new(wall + MAX_OFFSET_MS, u16::MAX);
            assert_eq!(issue(&mut check, 1, Hlc(peer.0 + 1), wall), None);
        }
        let wall = T0 + 200_000;
        assert!(issue(&mut check, 1, Hlc::new(wall + MAX_OFFSET_MS + 2, 0), wall).is_some());
    }

    #[test]
    fn a_wall_clock_that_went_back_exempts_the_node_until_its_clock_is_near_it_again() {
        let mut check = HlcAheadCheck::default();
        let high = T0 + 3_600_000;
        let far = Hlc::new(high + WINDOW_MS, 0);
        assert_eq!(issue(&mut check, 2, Hlc::new(high, 0), high), None);
        // A device without an RTC restarts at 1970 and continues from its bound.
        check.on_wall_back(2, high + 500);
        assert_eq!(issue(&mut check, 2, far, 5_000), None);
        // Its clock holds a timestamp nobody saw (a produce refused for its storage),
        // further ahead: still exempt while the wall clock is far behind that.
        let unseen = Hlc::new(high + 10 * MAX_OFFSET_MS, 0);
        assert_eq!(check.on_issued(2, "n2", far, 6_000, unseen, MAX_OFFSET_MS), None);
        // NTP puts the wall clock right, back past its reading before the restart: the
        // clock is within the bound again.
        assert_eq!(issue(&mut check, 2, Hlc::new(high + WINDOW_MS, 9), high + 1_000), None);
        // Seen directly (no notice): a jump back by two hours.
        let mut other = HlcAheadCheck::default();
        assert_eq!(issue(&mut other, 3, Hlc::new(high, 0), high), None);
        assert_eq!(issue(&mut other, 3, Hlc::new(high + 90_000, 0), high - 7_200_000), None);
        // Once the clock came within the bound, it applies again.
        let later = high + WINDOW_MS + 5_000;
        assert_eq!(issue(&mut check, 2, Hlc::new(later, 0), later), None);
        let v = issue(&mut check, 2, Hlc::new(later + 2 * MAX_OFFSET_MS, 0), later);
        assert!(v.is_some_and(|v| v.contains("n2 issued")));
    }

    /// A node whose wall clock jumped ahead persists bounds there without issuing a
    /// timestamp anybody sees; after it jumps back, its clock follows the wall clock, and
    /// a restart may then start from such a bound: still exempt until the wall clock is
    /// back at its reading before the jump.
    #[test]
    fn a_restart_after_a_jump_back_may_start_from_a_bound_persisted_before_it() {
        let mut check = HlcAheadCheck::default();
        assert_eq!(issue(&mut check, 4, Hlc::new(T0, 0), T0), None);
        let ahead = T0 + 2_922_000;
        check.on_wall_back(4, ahead);
        let wall = ahead - 1_051_000;
        assert_eq!(issue(&mut check, 4, Hlc::new(wall, 0), wall), None);
        let restarted = wall + 60_000;
        assert_eq!(issue(&mut check, 4, Hlc::new(ahead + WINDOW_MS, 0), restarted), None);
        let caught_up = ahead + WINDOW_MS;
        assert_eq!(issue(&mut check, 4, Hlc::new(caught_up, 1), caught_up), None);
        assert!(issue(&mut check, 4, Hlc::new(caught_up + MAX_OFFSET_MS + 2, 0), caught_up).is_some());
    }
}

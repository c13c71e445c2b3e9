//! Peer messages that wait for the clock (issue 15, defect 5).
//!
//! A gateway stores a Data message's batches under a receive timestamp, issued after it
//! adopted the sender's clock. When its clock cannot issue one (its bound lapsed while it
//! heard nothing and the sender's timestamp is past it, so a new bound must be durable
//! first; or it waits after a restart for its wall clock to pass the bound persisted
//! before), the message waits here rather than being dropped, and so does every message
//! after it, in arrival order, until the clock can issue again. The node then takes them
//! out first, before anything else it does.
//!
//! Bounded in bytes by the caller (a gateway shares `gateway.pending_bytes_max` between
//! held messages and batches accepted and not yet durable, which they become); a message
//! that does not fit is given back to the caller, which drops it and says so (the peer
//! resends it, as it resends Data the gateway had no room for).

use crate::types::NodeId;
use std::collections::VecDeque;

/// Bytes a held message costs beyond its own: its entry in the queue, which may have
/// doubled.
pub const HELD_ENTRY_BYTES: u64 = 2 * std::mem::size_of::<Held>() as u64;

/// One message waiting for the clock.
#[derive(Debug)]
pub struct Held {
    pub from: NodeId,
    pub bytes: Vec<u8>,
    /// Set once its HLC was merged into the clock (whether it was rejected as too far
    /// ahead), so that handling it again does not merge it twice.
    pub observed: Option<bool>,
}

impl Held {
    fn cost(&self) -> u64 {
        self.bytes.capacity() as u64 + HELD_ENTRY_BYTES
    }
}

/// The queue of held messages. Invariant: `bytes` is the sum of their costs.
#[derive(Debug, Default)]
pub struct MessageHold {
    queue: VecDeque<Held>,
    bytes: u64,
}

impl MessageHold {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Memory held (see [`HELD_ENTRY_BYTES`]).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Holds `m` behind the others if its cost fits in `room` bytes; gives it back if not.
    pub fn push_back(&mut self, m: Held, room: u64) -> Result<(), Held> {
        let cost = m.cost();
        if cost > room {
            return Err(m);
        }
        self.bytes += cost;
        self.queue.push_back(m);
        Ok(())
    }

    /// Puts back at the head a message just taken out that must wait again (it fitted
    /// when it came, and nothing came in since).
    pub fn push_front(&mut self, m: Held) {
        self.bytes += m.cost();
        self.queue.push_front(m);
    }

    pub fn pop_front(&mut self) -> Option<Held> {
        let m = self.queue.pop_front()?;
        self.bytes -= m.cost();
        if self.queue.is_empty() {
            // A burst may have grown the queue; do not keep its slots.
            self.queue = VecDeque::new();
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u8, len: usize) -> Held {
        Held { from: NodeId(u64::from(n)), bytes: vec![n; len], observed: None }
    }

    #[test]
    fn holds_in_order_within_its_room_and_accounts_every_byte() {
        let mut h = MessageHold::default();
        assert!(h.is_empty());
        let cost = 100 + HELD_ENTRY_BYTES;
        h.push_back(msg(1, 100), cost).expect("fits");
        let refused = h.push_back(msg(2, 100), cost - 1).expect_err("no room");
        assert_eq!(refused.from, NodeId(2));
        h.push_back(msg(3, 100), cost).expect("fits");
        assert_eq!(h.bytes(), 2 * cost);
        let first = h.pop_front().expect("held");
        assert_eq!(first.from, NodeId(1));
        assert_eq!(h.bytes(), cost);
        h.push_front(first);
        assert_eq!(h.bytes(), 2 * cost);
        assert_eq!(h.pop_front().map(|m| m.from), Some(NodeId(1)));
        assert_eq!(h.pop_front().map(|m| m.from), Some(NodeId(3)));
        assert!(h.pop_front().is_none());
        assert_eq!(h.bytes(), 0);
    }
}

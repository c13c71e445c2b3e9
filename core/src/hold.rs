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

/// Bytes of one slot of the queue.
const SLOT_BYTES: usize = std::mem::size_of::<Held>();
/// Slots the queue's first allocation holds.
const FIRST_SLOTS: usize = 4;

/// One message waiting for the clock.
#[derive(Debug)]
pub struct Held {
    pub from: NodeId,
    pub bytes: Vec<u8>,
    /// Set once its HLC was merged into the clock (whether it was rejected as too far
    /// ahead), so that handling it again does not merge it twice.
    pub observed: Option<bool>,
}

/// The queue of held messages. Invariant: `payload` is the sum of their buffers'
/// capacities.
///
/// The queue's slots are accounted as allocated, not per message: after a burst drained
/// to a few messages, the slots the burst needed are still held until the queue empties
/// (swarm seed 726: a gateway on a full device held 3,000 messages, released all but a
/// few, and its real heap stood 41 KB above an accounting of two slots per message).
#[derive(Debug, Default)]
pub struct MessageHold {
    queue: VecDeque<Held>,
    payload: u64,
}

impl MessageHold {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Memory held: the messages' buffers and the queue's slots.
    pub fn bytes(&self) -> u64 {
        self.payload + (self.queue.capacity() * SLOT_BYTES) as u64
    }

    /// Holds `m` behind the others if it fits in `room` bytes, with the slots the queue
    /// must grow by to take it; gives it back if not.
    pub fn push_back(&mut self, m: Held, room: u64) -> Result<(), Held> {
        let (len, capacity) = (self.queue.len(), self.queue.capacity());
        let grow = if len == capacity { capacity.max(FIRST_SLOTS) } else { 0 };
        if m.bytes.capacity() as u64 + (grow * SLOT_BYTES) as u64 > room {
            return Err(m);
        }
        // Exactly this many: the growth was checked against the room.
        self.queue.reserve_exact(grow);
        self.payload += m.bytes.capacity() as u64;
        self.queue.push_back(m);
        Ok(())
    }

    /// Puts back at the head a message just taken out that must wait again (it fitted
    /// when it came, and nothing came in since).
    pub fn push_front(&mut self, m: Held) {
        if self.queue.capacity() == 0 {
            self.queue.reserve_exact(FIRST_SLOTS);
        }
        self.payload += m.bytes.capacity() as u64;
        self.queue.push_front(m);
    }

    pub fn pop_front(&mut self) -> Option<Held> {
        let m = self.queue.pop_front()?;
        self.payload -= m.bytes.capacity() as u64;
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
        let first = 100 + (FIRST_SLOTS * SLOT_BYTES) as u64;
        h.push_back(msg(1, 100), first).expect("fits, with the queue's first slots");
        assert_eq!(h.bytes(), first);
        let refused = h.push_back(msg(2, 100), 99).expect_err("no room");
        assert_eq!(refused.from, NodeId(2));
        h.push_back(msg(3, 100), 100).expect("fits in a free slot");
        assert_eq!(h.bytes(), first + 100);
        let first_out = h.pop_front().expect("held");
        assert_eq!(first_out.from, NodeId(1));
        assert_eq!(h.bytes(), first);
        h.push_front(first_out);
        assert_eq!(h.bytes(), first + 100);
        assert_eq!(h.pop_front().map(|m| m.from), Some(NodeId(1)));
        assert_eq!(h.pop_front().map(|m| m.from), Some(NodeId(3)));
        assert!(h.pop_front().is_none());
        assert_eq!(h.bytes(), 0, "an empty queue gives its slots back");
    }

    /// A burst grows the queue; drained to one message, the slots stay until it is empty,
    /// and the accounting says so. A message that would need the queue to grow fits only
    /// with the growth in its room.
    #[test]
    fn slots_are_accounted_as_allocated() {
        let mut h = MessageHold::default();
        for n in 0..8 {
            h.push_back(msg(n, 10), u64::MAX).expect("room");
        }
        assert_eq!(h.bytes(), 80 + (8 * SLOT_BYTES) as u64);
        let grow = 10 + (8 * SLOT_BYTES) as u64;
        assert!(h.push_back(msg(8, 10), grow - 1).is_err(), "the queue must double to take it");
        h.push_back(msg(8, 10), grow).expect("fits with its growth");
        for _ in 0..8 {
            h.pop_front();
        }
        assert_eq!(h.bytes(), 10 + (16 * SLOT_BYTES) as u64, "drained to one: the slots are still held");
    }
}

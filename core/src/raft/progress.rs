//! What a leader knows of one follower's log, and how much it may send it.

use std::collections::VecDeque;

use super::Index;

/// Heartbeat ticks without progress after which a pipeline is presumed to have lost a
/// message and falls back to probing from the match.
const STALLED_TICKS_MAX: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// One append at a time until the follower's log is found to match at `next - 1`.
    Probe,
    /// Appends pipelined up to `inflight_appends_max`, `next` advanced optimistically.
    Replicate,
    /// The leader's snapshot at this index is on its way; nothing else is sent until it
    /// is acknowledged or presumed lost.
    Snapshot(Index),
}

#[derive(Debug)]
pub(super) struct Progress {
    /// The next index to send.
    pub next: Index,
    /// The highest index known to be durable and matching on the follower.
    pub matched: Index,
    state: State,
    /// Probe: an append is out; wait for its answer or a heartbeat answer.
    pub probe_paused: bool,
    /// Replicate: the last index of each append not yet answered, oldest first.
    inflight: VecDeque<Index>,
    /// Heard from since the last quorum check.
    pub recent_active: bool,
    /// The highest heartbeat round the follower answered (ReadIndex).
    pub read_seq_acked: u64,
    stalled_ticks: u32,
}

impl Progress {
    pub fn new(next: Index) -> Progress {
        Progress {
            next,
            matched: 0,
            state: State::Probe,
            probe_paused: false,
            inflight: VecDeque::new(),
            recent_active: false,
            read_seq_acked: 0,
            stalled_ticks: 0,
        }
    }

    /// Whether an append may go out now to a follower of a leader whose log ends at `last`.
    pub fn may_send(&self, last: Index, inflight_max: usize) -> bool {
        match self.state {
            State::Probe => !self.probe_paused,
            State::Replicate => self.next <= last && self.inflight.len() < inflight_max,
            State::Snapshot(_) => false,
        }
    }

    /// The leader's snapshot at `index` went out.
    pub fn on_snapshot_sent(&mut self, index: Index) {
        self.state = State::Snapshot(index);
        self.inflight.clear();
        self.stalled_ticks = 0;
    }

    /// An append ending at `sent_last` went out.
    pub fn on_sent(&mut self, sent_last: Index) {
        match self.state {
            State::Snapshot(_) => unreachable!("nothing is sent while a snapshot is on its way"),
            State::Probe => self.probe_paused = true,
            State::Replicate => {
                assert!(sent_last >= self.next, "a pipelined append carries at least one entry");
                self.inflight.push_back(sent_last);
                self.next = sent_last + 1;
            }
        }
    }

    /// The follower holds `index` durably. Returns whether the match advanced.
    pub fn on_accepted(&mut self, index: Index) -> bool {
        let advanced = index > self.matched;
        if advanced {
            self.matched = index;
            self.stalled_ticks = 0;
        }
        if matches!(self.state, State::Snapshot(at) if index < at) {
            return advanced;
        }
        if self.state != State::Replicate {
            self.state = State::Replicate;
            self.inflight.clear();
            self.next = self.matched + 1;
        }
        self.next = self.next.max(self.matched + 1);
        while self.inflight.front().is_some_and(|i| *i <= index) {
            self.inflight.pop_front();
        }
        self.probe_paused = false;
        advanced
    }

    /// The follower refused an append at `prev_index`, its log ending at `hint`. Returns
    /// whether the refusal is current (a stale one, from before a rewind, is ignored).
    pub fn on_refused(&mut self, prev_index: Index, hint: Index) -> bool {
        let stale_probe = self.state == State::Probe && prev_index + 1 != self.next;
        if prev_index <= self.matched || stale_probe || matches!(self.state, State::Snapshot(_)) {
            return false;
        }
        self.state = State::Probe;
        self.inflight.clear();
        self.probe_paused = false;
        self.next = (hint + 1).min(prev_index).max(self.matched + 1);
        true
    }

    /// A heartbeat interval passed: a pipeline that made no progress for
    /// `STALLED_TICKS_MAX` intervals lost a message; probe again from the match. A paused
    /// probe is retried, in case it was lost.
    pub fn on_heartbeat_tick(&mut self) {
        match self.state {
            State::Snapshot(_) => {
                self.stalled_ticks += 1;
                if self.stalled_ticks >= STALLED_TICKS_MAX {
                    self.state = State::Probe;
                    self.next = self.matched + 1;
                    self.stalled_ticks = 0;
                }
            }
            State::Replicate if !self.inflight.is_empty() => {
                self.stalled_ticks += 1;
                if self.stalled_ticks >= STALLED_TICKS_MAX {
                    self.state = State::Probe;
                    self.inflight.clear();
                    self.next = self.matched + 1;
                    self.stalled_ticks = 0;
                }
            }
            _ => self.stalled_ticks = 0,
        }
        if self.state == State::Probe {
            self.probe_paused = false;
        }
    }
}

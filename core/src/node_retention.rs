//! Retention: deleting each topic's oldest segments past its limits, never one its next
//! hop has not acknowledged; on a middle tier, only once a durable checkpoint of its
//! receivers' marks covers them (`crate::marks`); of what a gateway sends down, only what
//! every subscriber it names acknowledged, unless the topic's `retention_age` expires it;
//! of a keyed topic, only what a durable checkpoint of the keyed states covers
//! (`crate::keyed_checkpoint`).

use super::Node;
use crate::config::Role;
use crate::io::{DiskError, DiskOpId, DiskResponse};
use crate::types::{Seq, TopicIdx};

/// The fewest records merged beyond the last keyed checkpoint that make the next one due
/// without retention waiting for it (see `checkpoint_keyed_if_due`).
pub(crate) const KEYED_CHECKPOINT_RECORDS_MIN: u64 = 1024;

impl Node {
    /// Where topic `i` may be deleted below: what its next hop acknowledged; `u64::MAX` for
    /// what never leaves (or, on an edge, is a replica of what came down); on a gateway
    /// what every subscriber a `cloud-to-edge` topic names acknowledged (`Downlinks`); of
    /// the topics that go up, 0 (a restart rebuilds its marks from its segments) unless a
    /// durable checkpoint of the marks covers them: on a middle tier below what the tier
    /// above acknowledged too, on a top with `gateway.up_retention` below what it holds.
    ///
    /// A keyed topic merged per key: no further than the last durable checkpoint of the
    /// keyed states covers (`crate::keyed_checkpoint`): below it, its log is no longer
    /// the only copy of what its state holds.
    fn retention_mark(&self, i: usize) -> Seq {
        let mark = self.retention_mark_of_records(i);
        match &self.keyed_checkpoints {
            Some(k) if self.cfg.topics[i].keyed.is_some() => mark.min(k.covered(TopicIdx(i as u16))),
            _ => mark,
        }
    }

    /// Where topic `i` may be deleted below for what its records are to the next hop and
    /// the subscribers (`retention_mark` without the keyed states).
    fn retention_mark_of_records(&self, i: usize) -> Seq {
        let (tcfg, topic) = (&self.cfg.topics[i], TopicIdx(i as u16));
        let acked = self.uplink.as_ref().and_then(|u| u.acked(topic));
        match (self.cfg.role, self.site.as_deref()) {
            (Role::Gateway, _) if tcfg.sync.goes_down() => {
                self.downlinks.as_ref().map_or(0, |d| d.retained_for(tcfg, topic))
            }
            (Role::Gateway, _) if !tcfg.sync.goes_up() => u64::MAX,
            // A classified topic that may go no further up: this middle tier is its top and
            // the store of record of it, so it keeps it all (it deletes only what the tier
            // above acknowledged, and that tier never gets it).
            (Role::Gateway, _) if self.cfg.is_middle_tier() && !self.cfg.sends_up(tcfg) => 0,
            (Role::Gateway, _) => match (&self.marks, acked) {
                (Some(m), Some(acked)) => acked.min(m.covered(topic)),
                (Some(m), None) if self.cfg.deletes_what_came_up() => m.covered(topic),
                _ => 0,
            },
            // Strong topics are acknowledged through the site's leader.
            (Role::Edge, Some(site)) if tcfg.is_strong() && tcfg.sync.goes_up() => site.gateway_mark(topic),
            (Role::Edge, _) if tcfg.sync.goes_up() => acked.unwrap_or(0),
            (Role::Edge, _) => u64::MAX,
        }
    }

    pub(super) fn apply_retention(&mut self) {
        let marks: Vec<Seq> = (0..self.logs.len()).map(|i| self.retention_mark(i)).collect();
        let wall = self.now.wall_ms;
        self.space.apply_retention((&self.cfg, wall), &mut self.fx, &mut self.logs, |i| marks[i]);
        if let Some(d) = &self.downlinks {
            for (i, log) in self.logs.iter_mut().enumerate().filter(|(i, _)| self.cfg.topics[*i].sync.goes_down()) {
                let acked = d.acked_by_known(&self.cfg.topics[i], TopicIdx(i as u16));
                self.space.expire_by_age((&self.cfg, wall), &mut self.fx, log, acked);
            }
        }
        self.checkpoint_marks_if_due();
        self.checkpoint_keyed_if_due();
        self.reclaim_full_device();
    }

    /// Writes a checkpoint of the keyed states when one is due. A checkpoint is *paid for*
    /// once a restart would merge again more records than the states hold keys (at least
    /// [`KEYED_CHECKPOINT_RECORDS_MIN`]): writing it costs about what those records do.
    /// Due: at once when an edge's device is full; when retention waits only for one (a
    /// keyed topic holds segments past its limits that the next hop holds and no durable
    /// checkpoint covers) and it is paid for or `log.retention_check_interval` passed since
    /// the last; and once per interval when it is paid for, so that recovery merges at most
    /// about as many records as loading the checkpoint costs.
    fn checkpoint_keyed_if_due(&mut self) {
        let Some(k) = &self.keyed_checkpoints else { return };
        if k.is_writing() {
            return;
        }
        let wall = self.now.wall_ms;
        let keyed = |i: &usize| self.cfg.topics[*i].keyed.is_some();
        let retention_waits = (0..self.logs.len()).filter(keyed).any(|i| {
            let (mark, covered) = (self.retention_mark_of_records(i), k.covered(TopicIdx(i as u16)));
            mark > covered && crate::space::retention_due(&self.logs[i], &self.cfg.topics[i], wall, mark)
        });
        let beyond = self.keyed.fed_beyond(|t| k.covered(t));
        let paid_for = beyond >= self.keyed.key_count().max(KEYED_CHECKPOINT_RECORDS_MIN);
        let quiet = k.quiet_for(self.now.mono, self.cfg.log.retention_check_interval);
        // A full device frees segments an edge's gateway holds, of a keyed topic only
        // what a checkpoint covers (`synced_below`).
        let room_waits = self.space.is_device_full() && self.cfg.role == Role::Edge;
        let due = room_waits || (retention_waits && (paid_for || quiet)) || (paid_for && quiet);
        if !(beyond > 0 && due) {
            return;
        }
        let (bytes, covers) = self.keyed.checkpoint(&self.cfg);
        let k = self.keyed_checkpoints.as_mut().expect("checked above");
        k.write((&mut self.fx, self.now.mono), bytes, covers);
    }

    /// A request of the keyed checkpoint completed: once durable, what it covers may go.
    pub(super) fn keyed_checkpoint_done(&mut self, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        let k = self.keyed_checkpoints.as_mut().expect("only a node with keyed topics writes keyed checkpoints");
        k.on_disk(&mut self.fx, id, result);
        if !k.is_writing() {
            self.apply_retention();
        }
    }

    /// Writes a checkpoint of the marks when one is due: at once on a gateway that deletes
    /// what came up whose retention waits only for one (the tier above, or on a top the
    /// top itself, holds segments no durable checkpoint covers yet); at most once per
    /// `log.retention_check_interval` when a subscriber's mark moved (a checkpoint older
    /// than the marks only deletes less after a restart).
    fn checkpoint_marks_if_due(&mut self) {
        let Some(m) = &self.marks else { return };
        if m.is_writing() {
            return;
        }
        let wall = self.now.wall_ms;
        // What each topic that goes up may be deleted below once the checkpoint is
        // durable: on a middle tier what the tier above acknowledged, on a top what it holds.
        let ingest = self.ingest.as_ref().filter(|_| self.cfg.deletes_what_came_up());
        let up = |i: &usize| self.cfg.topics[*i].sync.goes_up();
        let covers: Vec<(TopicIdx, Seq)> = match (ingest, &self.uplink) {
            (None, _) => Vec::new(),
            (Some(_), Some(u)) => (0..self.logs.len())
                .filter(up)
                .filter_map(|i| u.acked(TopicIdx(i as u16)).map(|a| (TopicIdx(i as u16), a)))
                .collect(),
            (Some(_), None) => {
                (0..self.logs.len()).filter(up).map(|i| (TopicIdx(i as u16), self.logs[i].durable_offset())).collect()
            }
        };
        let retention_waits = covers.iter().any(|&(t, acked)| {
            let (log, tcfg) = (&self.logs[t.0 as usize], &self.cfg.topics[t.0 as usize]);
            acked > m.covered(t) && crate::space::retention_due(log, tcfg, wall, acked)
        });
        let moved = self.downlinks.as_ref().is_some_and(|d| d.marks_moved())
            && m.quiet_for(self.now.mono, self.cfg.log.retention_check_interval);
        if !retention_waits && !moved {
            return;
        }
        let subscribers = self.downlinks.as_mut().map(|d| d.take_marks_for_checkpoint()).unwrap_or_default();
        let m = self.marks.as_mut().expect("checked above");
        let at = (&mut self.fx, self.now.mono);
        let bytes = match ingest {
            Some(g) => crate::marks::encoded(g.durable_marks(), subscribers.into_iter()),
            None => crate::marks::encoded(std::iter::empty(), subscribers.into_iter()),
        };
        m.write(at, bytes, covers);
    }

    /// A request of the marks checkpoint completed: once durable, what it covers may go.
    pub(super) fn marks_done(&mut self, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        let m = self.marks.as_mut().expect("only a node that writes marks checkpoints completes their requests");
        m.on_disk(&mut self.fx, id, result);
        if !m.is_writing() {
            self.apply_retention();
        }
    }
}

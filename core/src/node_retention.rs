//! Retention: deleting each topic's oldest segments past its limits, never one its next
//! hop has not acknowledged; on a middle tier, only once a durable checkpoint of its
//! receivers' marks covers them (`crate::marks`).

use super::Node;
use crate::config::Role;
use crate::io::{DiskError, DiskOpId, DiskResponse};
use crate::types::{Seq, TopicIdx};

impl Node {
    /// Where topic `i` may be deleted below: what its next hop acknowledged; on an edge
    /// `u64::MAX` for what never leaves (or is a replica of what came down); on a gateway
    /// 0 (a restart rebuilds its marks from its segments), except a middle tier's topics
    /// that go up, which may go below what the tier above acknowledged and the last
    /// durable checkpoint of the marks covers.
    fn retention_mark(&self, i: usize) -> Seq {
        let (tcfg, topic) = (&self.cfg.topics[i], TopicIdx(i as u16));
        let acked = self.uplink.as_ref().and_then(|u| u.acked(topic));
        match (self.cfg.role, self.site.as_deref()) {
            (Role::Gateway, _) => match (&self.marks, acked) {
                (Some(m), Some(acked)) if tcfg.sync.goes_up() => acked.min(m.covered(topic)),
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
        self.checkpoint_marks_if_due();
        self.reclaim_full_device();
    }

    /// A middle tier whose retention waits only for a checkpoint (the tier above holds
    /// segments no durable checkpoint covers yet) writes one of every mark, durable now.
    fn checkpoint_marks_if_due(&mut self) {
        let (Some(m), Some(u), Some(g)) = (&self.marks, &self.uplink, &self.ingest) else { return };
        if m.is_writing() {
            return;
        }
        let wall = self.now.wall_ms;
        let up = |i: &usize| self.cfg.topics[*i].sync.goes_up();
        let covers: Vec<(TopicIdx, Seq)> = (0..self.logs.len())
            .filter(up)
            .filter_map(|i| u.acked(TopicIdx(i as u16)).map(|a| (TopicIdx(i as u16), a)))
            .collect();
        let due = covers.iter().any(|&(t, acked)| {
            let (log, tcfg) = (&self.logs[t.0 as usize], &self.cfg.topics[t.0 as usize]);
            acked > m.covered(t) && crate::space::retention_due(log, tcfg, wall, acked)
        });
        if !due {
            return;
        }
        let m = self.marks.as_mut().expect("checked above");
        m.write(&mut self.fx, g.durable_marks(), covers);
    }

    /// A request of the marks checkpoint completed: once durable, what it covers may go.
    pub(super) fn marks_done(&mut self, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        let m = self.marks.as_mut().expect("only a middle tier writes marks");
        m.on_disk(&mut self.fx, id, result);
        if !m.is_writing() {
            self.apply_retention();
        }
    }
}

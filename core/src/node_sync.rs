//! How a [`Node`] routes sync: peer messages (held while the clock cannot issue the
//! timestamp a gateway's Data needs), operator controls, and the completions of sync and
//! fetch reads, to the uplink, the site's uplink, ingest and fetches.

use super::Node;
use crate::config::Role;
use crate::effects::Ctx;
use crate::hlc::Hlc;
use crate::hold::Held;
use crate::io::{Control, DiskError, DiskOpId, DiskResponse, Event};
use crate::sync::downlinks::Downlinks;
use crate::sync::ingest::DataIn;
use crate::sync::proto::SyncMsg;
use crate::types::{NodeId, Seq, TopicIdx};

impl Node {
    /// Each sender of `cloud-to-edge` topics to an edge, as `outpost sync status` shows it.
    pub fn downlink_status(&self) -> Vec<(NodeId, crate::sync::uplink::UplinkStatus)> {
        let Some(d) = &self.downlinks else { return Vec::new() };
        d.senders().map(|(&edge, s)| (edge, s.status(&self.logs))).collect()
    }

    /// The subscribers `cloud-to-edge` topics name that have no sender now: (edge, topic,
    /// what it had acknowledged if known, the topic's durable end). Retention of the topic
    /// waits for them.
    pub fn idle_subscribers(&self) -> Vec<(NodeId, TopicIdx, Option<Seq>, Seq)> {
        let Some(d) = &self.downlinks else { return Vec::new() };
        let end = |t: TopicIdx| self.logs[t.0 as usize].durable_offset();
        d.subscribers_without_sender(&self.cfg).map(|(e, t, m)| (e, t, m, end(t))).collect()
    }

    pub(super) fn on_control(&mut self, c: Control) {
        let now = self.now.mono;
        let Some(u) = &mut self.uplink else { return };
        match c {
            Control::PauseSync => u.set_paused(true),
            Control::ResumeSync => u.set_paused(false),
            Control::SyncNow => u.sync_now(now),
            Control::LinkUp => u.link_up(now),
        }
    }

    pub(super) fn on_message(&mut self, from: NodeId, bytes: Vec<u8>) {
        if !self.is_running() {
            return;
        }
        // A site's frames never wait for the clock, nor behind sync messages that do: a
        // member's Raft and failure detector must hear its peers whatever its receiver of
        // `cloud-to-edge` topics waits for (swarm seeds 305 and 343: members that held
        // their peers' pings behind a gateway's Data refused writes they had quorum for).
        if crate::site::msg::is_site_frame(&bytes) {
            return self.site_message(from, &bytes);
        }
        let m = Held { from, bytes, observed: None };
        // Behind a message waiting for the clock, every message to the receiver waits: they
        // are handled in the order they came. Answers to this node's senders need no
        // timestamp and wait for nothing (swarm seed 354: an edge whose device was full
        // could not persist its clock's bound, held its gateway's Data, and with it the
        // Welcome its uplink needed to free the device).
        // (Checked only when something is held: the common path decodes each frame once.)
        let go = self.held.is_empty() || crate::sync::proto::is_answer_frame(&m.bytes);
        let waiting = if go { self.handle_message(m) } else { Some(m) };
        if let Some(m) = waiting {
            self.hold(m);
        }
    }

    /// Holds a message until the clock can issue, if it fits; a receiver shares
    /// `NodeConfig::receive_pending_max` between held messages and accepted batches not
    /// yet durable (a node that receives nothing never holds: it stamps no message).
    fn hold(&mut self, m: Held) {
        let room = match &self.ingest {
            Some(g) => self.cfg.receive_pending_max().saturating_sub(g.pending_bytes + self.held.bytes()),
            None => 0,
        };
        if let Err(m) = self.held.push_back(m, room) {
            self.fx.event(Event::HeldMessageDropped { from: m.from, bytes: m.bytes.len() as u64 });
        }
    }

    /// Handles the messages held for the clock, in order, as long as it can issue.
    pub(super) fn release_held(&mut self) {
        while !self.held.is_empty() && self.hlc.can_issue(self.now.wall_ms) {
            let m = self.held.pop_front().expect("not empty");
            if let Some(m) = self.handle_message(m) {
                // Its sender's timestamp put the clock past its bound: a new one first.
                self.held.push_front(m);
                return;
            }
        }
    }

    /// Handles one message; gives it back if it must wait for the clock.
    fn handle_message(&mut self, m: Held) -> Option<Held> {
        let Held { from, bytes, observed } = m;
        let msg = match SyncMsg::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.fx.event(Event::BadMessage { from, error: e.to_string() });
                return None;
            }
        };
        let remote = match &msg {
            SyncMsg::Hello { hlc, .. }
            | SyncMsg::Welcome { hlc, .. }
            | SyncMsg::Data { hlc, .. }
            | SyncMsg::Ack { hlc, .. }
            | SyncMsg::Skip { hlc, .. } => Some(*hlc),
            SyncMsg::Reset { .. } => None,
        };
        let rejected = match (observed, remote) {
            (Some(rejected), _) => rejected,
            (None, Some(h)) if self.hlc.observe(self.now.wall_ms, h).is_err() => {
                self.fx.event(Event::HlcRejected { from, remote: h });
                true
            }
            (None, _) => false,
        };
        // The timestamp that proves a Data batch happened before its storage here. When
        // the clock cannot issue it (its bound lapsed while idle, or it waits after a
        // restart), the message waits for it instead of being dropped.
        let received = match (&msg, &self.ingest) {
            (SyncMsg::Data { .. }, Some(_)) => match self.hlc.now(self.now.wall_ms) {
                Ok(h) => h,
                Err(_) => return Some(Held { from, bytes, observed: Some(rejected) }),
            },
            _ => Hlc::ZERO,
        };
        match msg {
            SyncMsg::Welcome { .. } | SyncMsg::Ack { .. } | SyncMsg::Reset { .. } => self.route_to_sender(from, msg),
            SyncMsg::Hello { .. } | SyncMsg::Data { .. } | SyncMsg::Skip { .. } => {
                self.route_to_receiver(from, msg, received, rejected)
            }
        }
        None
    }

    /// An answer to one of this node's senders: an edge's uplink (its own or its site's),
    /// or a gateway's sender to that edge.
    fn route_to_sender(&mut self, from: NodeId, msg: SyncMsg) {
        match self.cfg.role {
            Role::Edge => {
                if self.site_uplink_message(from, &msg) {
                    let site = self.site.as_mut().expect("routed to the site's uplink");
                    let u = site.uplink.as_mut().expect("routed to the site's uplink");
                    self.fx.send_as = Some(site.cfg.id);
                    u.on_message(msg, self.now.mono, (&self.logs, &self.cfg.topics), &mut self.fx);
                    self.fx.send_as = None;
                    self.apply_retention();
                } else if let Some(u) = &mut self.uplink {
                    if from == u.gateway() {
                        u.on_message(msg, self.now.mono, (&self.logs, &self.cfg.topics), &mut self.fx);
                        self.apply_retention();
                    }
                }
            }
            Role::Gateway => match &mut self.uplink {
                // A middle tier's relay hears from the tier above; its senders down, from below.
                Some(u) if from == u.gateway() => {
                    u.on_message(msg, self.now.mono, (&self.logs, &self.cfg.topics), &mut self.fx);
                    self.apply_retention();
                }
                _ => {
                    if let Some(d) = &mut self.downlinks {
                        let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
                        d.on_message(&mut cx, from, msg, &self.logs);
                    }
                }
            },
        }
    }

    /// A sender's message to this node's receiver: on a gateway from any edge (and on a
    /// middle tier from its upstream), on an edge only from its gateway (an edge receives
    /// `cloud-to-edge` topics from it alone).
    fn route_to_receiver(&mut self, from: NodeId, msg: SyncMsg, received: Hlc, rejected: bool) {
        if self.cfg.role == Role::Edge && self.cfg.upstream != Some(from) {
            return;
        }
        if self.ingest.is_none() {
            return;
        }
        match msg {
            SyncMsg::Hello { origin, session, topics, .. } => {
                let g = self.ingest.as_mut().expect("checked above");
                let below = self.cfg.upstream != Some(from);
                if let Some(d) = self.downlinks.as_mut().filter(|_| below) {
                    // An edge that says Hello is reachable: its sender of what goes down
                    // tries at once.
                    let new_session = g.session_of(from) != Some(session);
                    let cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
                    d.heard_from(&cx, (from, new_session), &self.logs, &mut self.rng);
                }
                let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
                g.on_hello(&mut cx, from, origin, session, topics);
            }
            SyncMsg::Data { session, topic, batches, .. } => {
                // (Only for the session the receiver knows: Data it will refuse evicts nothing.)
                let known = self.ingest.as_ref().and_then(|g| g.session_of(from)) == Some(session);
                if self.cfg.role == Role::Edge && known {
                    self.make_room_for(from, &topic, &batches);
                }
                let room = self.with_space(|s, cx| s.room(cx));
                // Held messages share the pending budget with accepted batches, and with
                // the batches whose keyed writes wait to be copied to the other edges.
                let waiting = self.held.bytes() + self.keyed.copies_queued_bytes();
                let pending_max = self.cfg.receive_pending_max().saturating_sub(waiting);
                let g = self.ingest.as_mut().expect("checked above");
                let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: received, fx: &mut self.fx };
                let data = DataIn { from, session, topic: &topic, batches, hlc_rejected: rejected };
                let outcome = g.on_data(&mut cx, data, (room, pending_max), (&mut self.enc, &mut self.dec));
                for a in outcome.accepted {
                    self.commit.accept(a);
                }
            }
            SyncMsg::Skip { session, topic, origin, from: f, to, reason, .. } => {
                let g = self.ingest.as_mut().expect("checked above");
                let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
                if let Some(idx) = g.on_skip(&mut cx, (from, session), (&topic, origin), (f, to), reason) {
                    if self.cfg.upstream == Some(from) {
                        // A replica of what comes down stays at the sender's sequences.
                        self.logs[idx.0 as usize].skip_to(to);
                    } else if let Some(u) = self.uplink.as_mut().filter(|_| self.cfg.is_middle_tier()) {
                        // A middle tier forwards the hole up.
                        u.note_skipped(origin, idx, to);
                    }
                }
            }
            SyncMsg::Welcome { .. } | SyncMsg::Ack { .. } | SyncMsg::Reset { .. } => {}
        }
    }

    /// An edge makes room for what its gateway sends, as for a produce: under the
    /// topics' eviction policies, never evicting what the policies keep.
    fn make_room_for(&mut self, from: NodeId, topic: &str, batches: &[Vec<u8>]) {
        // (The topic the receiver will store them in: of a `both` topic, the half that comes down.)
        let Some((t, _)) = crate::sync::ingest::Ingest::topic_idx(&self.cfg, topic, from) else { return };
        let need = batches.iter().map(|b| (b.len() + crate::log::LOG_FRAME_OVERHEAD) as u64).sum();
        self.with_space(|s, cx| s.make_room(cx, t, need));
    }

    /// A fetch's read completed.
    pub(super) fn fetch_read_done(&mut self, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        let bytes = match &result {
            Ok(DiskResponse::Read(b)) => Some(b.as_slice()),
            _ => None,
        };
        let chunk = self.cfg.log.read_chunk_bytes;
        self.fetches.on_read_done(id, bytes, &self.logs, chunk, &mut self.dec, &mut self.fx);
    }

    /// A read of the uplink `tag` completed: this node's own (0), its site's, or one of a
    /// gateway's senders to its edges.
    pub(super) fn uplink_read_done(&mut self, tag: u64, id: DiskOpId, result: Result<DiskResponse, DiskError>) {
        if Downlinks::owns(tag) {
            let bytes = match result {
                Ok(DiskResponse::Read(b)) => b,
                _ => Vec::new(),
            };
            let Some(d) = &mut self.downlinks else { return };
            let mut cx = Ctx { now: self.now.mono, cfg: &self.cfg, hlc: self.hlc.last(), fx: &mut self.fx };
            return d.on_read_done(&mut cx, tag, id, &bytes, &self.logs, (&mut self.enc, &mut self.dec));
        }
        let own = tag == 0;
        let hlc = if own { self.hlc.last() } else { self.site_uplink_hlc() };
        let (u, cfg) = match (own, &mut self.site) {
            (true, _) => (self.uplink.as_mut(), &self.cfg),
            (false, Some(site)) if site.uplink_tag == tag => (site.uplink.as_mut(), &site.sync_cfg),
            (false, _) => (None, &self.cfg),
        };
        let Some(u) = u else { return };
        let bytes = match result {
            Ok(DiskResponse::Read(b)) => b,
            _ => Vec::new(),
        };
        if !own {
            self.fx.send_as = Some(cfg.id);
        }
        let mut cx = Ctx { now: self.now.mono, cfg, hlc, fx: &mut self.fx };
        u.on_read_done(&mut cx, id, &bytes, &self.logs, (&mut self.enc, &mut self.dec));
        self.fx.send_as = None;
    }
}

//! How a [`Node`] drives its site cluster (see `crate::site` for the design): strong
//! produces, site messages, Raft's actions, its storage, and the cluster uplink.

use super::Node;
use crate::commit::PendingRecord;
use crate::effects::{Ctx, Owner};
use crate::io::{DiskRequest, Event, FileId, ProduceError, ReqId};
use crate::keyed_reads::{ReadConsistency, ReadStamp, StrongReadRefused};
use crate::raft::{self, Action, EntryKind, Role as RaftRole};
use crate::site::msg::{Command, SiteMsg, StrongSnapshot, Write};
use crate::site::{StrongReadWait, StrongState, Waiting};
use crate::sync::proto::SyncMsg;
use crate::sync::uplink::Uplink;
use crate::types::{Duration, Instant, NodeId, TopicIdx};

/// After a failed write of Raft state, the next attempt waits this long.
const RAFT_WRITE_RETRY: Duration = Duration::from_secs(1);

impl Node {
    /// A produce to a strong topic (already checked: running, known topic, sizes).
    pub(super) fn site_produce(&mut self, req: ReqId, topic: TopicIdx, key: Option<Vec<u8>>, value: Vec<u8>) {
        let now = self.now.mono;
        let site = self.site.as_mut().expect("strong topics need a site (NodeConfig::validate)");
        if let Some(e) = site.no_quorum(now) {
            site.stats.refused_no_quorum += 1;
            return self.reply(req, Err(ProduceError::NoQuorum(e)));
        }
        let unavailable = |reason: String| Err(ProduceError::SiteUnavailable { reason });
        if site.waiting.len() >= site.cfg.strong_pending_max {
            let reason = format!("{} strong writes of this member wait for commit", site.waiting.len());
            return self.reply(req, unavailable(reason));
        }
        if site.log_bytes() >= site.cfg.log_bytes_max {
            let reason = format!(
                "its log holds {} bytes of records not yet at the gateway (cluster.log_bytes_max)",
                site.log_bytes()
            );
            return self.reply(req, unavailable(reason));
        }
        let leader = match site.raft.role() {
            RaftRole::Leader => None,
            _ => match site.raft.leader() {
                Some(l) => Some(l),
                None => {
                    site.stats.refused_no_leader += 1;
                    return self.reply(req, unavailable("no leader is known: an election is in progress".into()));
                }
            },
        };
        let hlc = match self.hlc.now(self.now.wall_ms) {
            Ok(h) => h,
            Err(e) => return self.reply(req, Err(ProduceError::Clock(e))),
        };
        let site = self.site.as_mut().expect("checked above");
        let name = self.cfg.topics[topic.0 as usize].name.clone();
        let write = Write { origin: self.cfg.id, hlc, topic: name, key, value };
        match leader {
            None => {
                if let Err(e) = site.raft.propose(now, Command::Write(write).encode()) {
                    site.stats.refused_no_leader += 1;
                    return self.reply(req, unavailable(e.to_string()));
                }
            }
            Some(l) => {
                let mut bytes = Vec::new();
                SiteMsg::Forward { term: site.raft.term(), write }.encode(&mut bytes);
                self.fx.send_bytes(l, bytes);
            }
        }
        let deadline = now.saturating_add(site.cfg.strong_write_timeout);
        site.waiting.insert(hlc, Waiting { req, deadline });
    }

    /// A strong read of `topic` (`Input::StrongRead`): Raft's ReadIndex at the leader.
    pub(super) fn site_strong_read(&mut self, req: ReqId, topic: TopicIdx) {
        if !self.keyed.is_site_fed(topic) {
            return self.answer_strong_read(req, Err(StrongReadRefused::NotStrong));
        }
        if !self.is_running() {
            return self.answer_strong_read(req, Err(StrongReadRefused::Recovering));
        }
        let now = self.now.mono;
        let site = self.site.as_mut().expect("a site-fed topic needs a site");
        let ctx = site.next_read_ctx;
        site.next_read_ctx += 1;
        match site.raft.read_index(now, ctx) {
            Ok(()) => {
                site.strong_reads.insert(ctx, StrongReadWait { req, topic, index: None });
            }
            Err(e) => {
                let refused = match e {
                    raft::ReadError::NotLeader { leader } => StrongReadRefused::NotLeader { leader },
                    raft::ReadError::NotReady | raft::ReadError::NoLease => StrongReadRefused::NotReady,
                    raft::ReadError::Busy => StrongReadRefused::Busy,
                };
                self.answer_strong_read(req, Err(refused));
            }
        }
    }

    /// Answers the strong reads the leader confirmed whose index this member applied: its
    /// state then holds every write committed when the read arrived.
    fn answer_applied_reads(&mut self) {
        let Some(site) = &mut self.site else { return };
        let applied = site.raft.applied_index();
        let ready: Vec<u64> =
            site.strong_reads.iter().filter(|(_, r)| r.index.is_some_and(|i| i <= applied)).map(|(&c, _)| c).collect();
        for ctx in ready {
            let site = self.site.as_mut().expect("checked above");
            let r = site.strong_reads.remove(&ctx).expect("listed above");
            let result = match self.keyed.incomplete(r.topic) {
                Some(why) => Err(StrongReadRefused::Incomplete(why)),
                None => match self.keyed_read(r.topic, ReadConsistency::Eventual, self.now.wall_ms) {
                    Some(Ok(stamp)) => Ok(stamp),
                    other => unreachable!("an eventual read of a keyed topic is answered: {other:?}"),
                },
            };
            self.answer_strong_read(r.req, result);
        }
    }

    fn answer_strong_read(&mut self, req: ReqId, result: Result<ReadStamp, StrongReadRefused>) {
        self.fx.out.push_back(crate::io::Output::StrongRead { req, result });
    }

    /// A `Site` frame from a peer.
    pub(super) fn site_message(&mut self, from: NodeId, bytes: &[u8]) {
        let now = self.now.mono;
        let Some(site) = &mut self.site else {
            return self
                .fx
                .event(Event::BadMessage { from, error: "site message, but this node is in no site".into() });
        };
        if !site.cfg.members.contains(&from) {
            return self
                .fx
                .event(Event::BadMessage { from, error: "site message from a node outside the site".into() });
        }
        let msg = match SiteMsg::decode(bytes) {
            Ok(m) => m,
            Err(e) => return self.fx.event(Event::BadMessage { from, error: e.to_string() }),
        };
        site.detector.heard_from(from, now);
        if site.raft.leader() == Some(from) {
            site.detector.leader_seen(from, now);
        }
        match msg {
            SiteMsg::Ping => {}
            SiteMsg::Raft(env) => {
                if env.from != from || env.to != self.cfg.id {
                    let error = format!("raft message from {} to {} arrived from {from}", env.from, env.to);
                    return self.fx.event(Event::BadMessage { from, error });
                }
                site.raft.step(now, env);
            }
            SiteMsg::Forward { term, write } => {
                if write.origin != from {
                    let error = format!("forwarded write claims origin {}", write.origin);
                    return self.fx.event(Event::BadMessage { from, error });
                }
                // Only the leader of the term the forward names proposes it, once; a
                // duplicate or a stale forward is dropped without an answer (its origin's
                // timeout says "unconfirmed", which is true).
                if site.raft.role() != RaftRole::Leader || site.raft.term() != term {
                    return;
                }
                if !site.forwards.first_time(term, write.origin, write.hlc) {
                    return;
                }
                let hlc = write.hlc;
                let refused = if site.log_bytes() >= site.cfg.log_bytes_max {
                    Some("the site's log is full until the gateway acknowledges its records".to_string())
                } else {
                    site.raft.propose(now, Command::Write(write).encode()).err().map(|e| e.to_string())
                };
                if let Some(reason) = refused {
                    let mut bytes = Vec::new();
                    SiteMsg::ForwardRefused { hlc, reason }.encode(&mut bytes);
                    self.fx.send_bytes(from, bytes);
                }
            }
            SiteMsg::ForwardRefused { hlc, reason } => {
                if let Some(w) = site.waiting.remove(&hlc) {
                    site.stats.refused_no_leader += 1;
                    self.reply(
                        w.req,
                        Err(ProduceError::SiteUnavailable { reason: format!("the leader refused it: {reason}") }),
                    );
                }
            }
        }
    }

    /// Whether a sync message from the gateway belongs to the site's cluster uplink (its
    /// session), rather than this edge's own.
    pub(super) fn site_uplink_message(&self, from: NodeId, msg: &SyncMsg) -> bool {
        let Some(u) = self.site.as_ref().and_then(|s| s.uplink.as_ref()) else { return false };
        let session = match msg {
            SyncMsg::Welcome { session, .. } | SyncMsg::Ack { session, .. } | SyncMsg::Reset { session } => *session,
            _ => return false,
        };
        from == u.gateway() && session == u.session_id()
    }

    /// Timers: Raft's, pings, strong writes that waited too long, the leader's marks.
    pub(super) fn site_tick(&mut self) {
        let now = self.now.mono;
        let Some(site) = &mut self.site else { return };
        if site.raft.poll_timeout().is_some_and(|t| t <= now) {
            site.raft.tick(now);
        }
        if now >= site.next_ping {
            site.next_ping = now.saturating_add(site.cfg.ping_interval);
            let mut bytes = Vec::new();
            SiteMsg::Ping.encode(&mut bytes);
            let peers: Vec<NodeId> = site.peers().collect();
            for p in peers {
                self.fx.send_bytes(p, bytes.clone());
            }
        }
        let site = self.site.as_mut().expect("checked above");
        if site.raft.role() == RaftRole::Leader {
            site.detector.leader_seen(self.cfg.id, now);
        }
        while let Some((&hlc, w)) = site.waiting.first_key_value() {
            if w.deadline > now {
                break;
            }
            let req = w.req;
            site.waiting.remove(&hlc);
            site.stats.unconfirmed += 1;
            let waited = site.cfg.strong_write_timeout;
            self.fx.out.push_back(crate::io::Output::Reply { req, result: Err(ProduceError::Unconfirmed { waited }) });
        }
        let site = self.site.as_mut().expect("checked above");
        if site.raft.role() == RaftRole::Leader && now >= site.next_marks {
            site.next_marks = now.saturating_add(site.cfg.marks_interval);
            if let Some(u) = &site.uplink {
                let marks: Vec<(String, u64)> = self
                    .cfg
                    .topics
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| {
                        let acked = u.acked(TopicIdx(i as u16))?;
                        (t.is_strong() && acked > site.strong.gw_mark[i]).then(|| (t.name.clone(), acked))
                    })
                    .collect();
                if !marks.is_empty() {
                    // Refused (a transfer, a full log): the next interval tries again.
                    let _ = site.raft.propose(now, Command::Marks(marks).encode());
                }
            }
        }
    }

    /// When the site needs `handle_timeout` next.
    pub(super) fn site_poll_timeout(&self) -> Option<Instant> {
        let site = self.site.as_ref()?;
        let mut t = site.next_ping;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = t.min(x);
            }
        };
        consider(site.raft.poll_timeout());
        consider(site.persister.retry_at);
        // Deadlines grow with the timestamps the map is ordered by.
        consider(site.waiting.values().next().map(|w| w.deadline));
        if site.raft.role() == RaftRole::Leader {
            consider(Some(site.next_marks));
        }
        consider(site.uplink.as_ref().and_then(|u| u.poll_timeout(&site.sync_cfg.sync, &self.logs)));
        Some(t)
    }

    /// After any input: carry out Raft's actions, write its state, compact its log.
    pub(super) fn site_step(&mut self) {
        let now = self.now.mono;
        let Some(site) = &mut self.site else { return };
        let mut actions = Vec::new();
        while let Some(a) = site.raft.poll_action() {
            actions.push(a);
        }
        for a in actions {
            self.site_action(a);
        }
        self.answer_applied_reads();
        let site = self.site.as_mut().expect("checked above");
        if let Some((file, bytes)) = site.persister.next_write(&site.raft, now) {
            self.fx.disk(DiskRequest::Append { file, bytes }, Owner::Site);
            self.fx.disk(DiskRequest::Sync { file }, Owner::Site);
        }
        self.site_compact();
    }

    fn site_action(&mut self, a: Action) {
        let now = self.now.mono;
        let site = self.site.as_mut().expect("called with a site");
        match a {
            Action::Persist(p) => {
                site.note_persist(&p);
                // (Past its checkpoint's snapshot, which may hold keyed states.)
                let limit = site.cfg.log_bytes_max * crate::site::RAFT_FILE_BYTES_FACTOR;
                site.persister.queue(&p, limit + site.raft.snapshot().data.len() as u64);
            }
            Action::Send(env) => {
                let to = env.to;
                let mut bytes = Vec::new();
                SiteMsg::Raft(env).encode(&mut bytes);
                self.fx.send_bytes(to, bytes);
            }
            Action::Apply(entry) => {
                if let EntryKind::Command(bytes) = entry.kind {
                    self.site_apply(entry.index, &bytes);
                }
            }
            Action::Restore(snapshot) => {
                let snap = StrongSnapshot::decode(&snapshot.data).unwrap_or_else(|e| {
                    self.fx.event(Event::BadMessage {
                        from: self.cfg.id,
                        error: format!("the leader's snapshot does not decode ({e}); state starts empty"),
                    });
                    StrongSnapshot::default()
                });
                let site = self.site.as_mut().expect("called with a site");
                site.strong = StrongState::restore(&self.cfg, &snap);
                site.stats.snapshots_installed += 1;
                site.durable_applied = site.durable_applied.max(snapshot.index);
                let cluster = site.cfg.id;
                for error in self.keyed.restore_site_snapshot(&self.cfg, &snap.keyed, cluster) {
                    self.fx.event(Event::BadMessage { from: self.cfg.id, error });
                }
            }
            Action::ReadReady { ctx, index } => {
                if let Some(r) = site.strong_reads.get_mut(&ctx) {
                    r.index = Some(index);
                }
            }
            Action::ReadFailed { ctx } => {
                if let Some(r) = site.strong_reads.remove(&ctx) {
                    self.answer_strong_read(r.req, Err(StrongReadRefused::LeadershipLost));
                }
            }
            Action::RoleChanged { role, leader, term } => {
                if let Some(l) = leader {
                    site.detector.leader_seen(l, now);
                }
                if role == RaftRole::Leader {
                    self.fx.event(Event::SiteLeader { cluster: site.cfg.id, term });
                }
                match (role, site.uplink.is_some()) {
                    (RaftRole::Leader, false) => {
                        site.stats.elected += 1;
                        if let Some(gw) = self.cfg.upstream {
                            let mut u = Uplink::new(&site.sync_cfg, gw, now, &mut self.rng);
                            site.uplink_tag += 1;
                            u.tag = site.uplink_tag;
                            site.uplink = Some(u);
                        }
                    }
                    (RaftRole::Leader, true) => {}
                    (_, _) => site.uplink = None,
                }
            }
        }
    }

    /// A committed command: give a write its sequence and materialise it.
    fn site_apply(&mut self, index: raft::Index, bytes: &[u8]) {
        let site = self.site.as_mut().expect("called with a site");
        let cmd = match Command::decode(bytes) {
            Ok(c) => c,
            Err(e) => {
                // Every member skips the same entry the same way.
                let error = format!("raft entry {index} is not a site command ({e}); skipped");
                return self.fx.event(Event::BadMessage { from: self.cfg.id, error });
            }
        };
        let w = match cmd {
            Command::Marks(m) => return site.strong.note_marks(&self.cfg, &m),
            Command::Write(w) => w,
        };
        let Some(i) = self.cfg.topics.iter().position(|t| t.name == w.topic && t.is_strong()) else {
            let error = format!("raft entry {index} writes {:?}, not a strong topic here; skipped", w.topic);
            return self.fx.event(Event::BadMessage { from: self.cfg.id, error });
        };
        let topic = TopicIdx(i as u16);
        // The write happened before its commit here: this member's clock moves past it,
        // so the leader's messages to the gateway carry a time after every record's.
        if self.hlc.observe(self.now.wall_ms, w.hlc).is_err() {
            self.fx.event(Event::HlcRejected { from: w.origin, remote: w.hlc });
        }
        let site = self.site.as_mut().expect("called with a site");
        let (seq, hlc) = site.strong.assign(index, topic, w.hlc);
        if self.keyed.is_site_fed(topic) {
            // Also when Raft applies it again after a restart: the state may be older than
            // the log (it comes from a snapshot or a checkpoint).
            let dot = crate::keyed::Dot { origin: site.cfg.id, seq };
            self.keyed.apply_site_write(topic, dot, hlc, w.key.as_deref(), &w.value);
        }
        let req = if w.origin == self.cfg.id { site.waiting.remove(&w.hlc).map(|x| x.req) } else { None };
        let next = self.commit.next_strong(topic, &self.logs[i]);
        if seq < next {
            // Materialised before a restart; Raft applies again from its snapshot.
            return;
        }
        let record = PendingRecord { req, hlc, key: w.key, value: w.value, strong: Some(seq) };
        self.commit.push(topic, record);
    }

    /// Compacts the Raft log below entries whose records are durable here and at the
    /// gateway, once enough of them can go.
    fn site_compact(&mut self) {
        let now = self.now.mono;
        let quiet = self.commit.strong_quiet(&self.cfg);
        let Some(site) = &mut self.site else { return };
        if quiet {
            site.durable_applied = site.durable_applied.max(site.raft.applied_index());
        }
        let min = site.cfg.compact_entries_min as u64;
        if (site.raft.log_len() as u64) < min {
            return;
        }
        let limit = site.raft.applied_index().min(site.durable_applied);
        let (point, mut snap) = site.strong.compaction_point(&self.cfg, limit);
        if point >= site.raft.snapshot_index() + min {
            // The keyed states as applied (up to `applied_index`, past `point`): Raft applies
            // the entries after `point` again after a restore, which merges them as `Seen`.
            snap.keyed = self.keyed.site_snapshot(&self.cfg);
            match site.raft.compact(now, point, snap.encode()) {
                Ok(()) => site.stats.compactions += 1,
                Err(e) => panic!("compaction at applied index {point} refused: {e:?}"),
            }
            let mut actions = Vec::new();
            while let Some(a) = site.raft.poll_action() {
                actions.push(a);
            }
            for a in actions {
                self.site_action(a);
            }
        }
    }

    /// A Raft write's append or sync completed.
    pub(super) fn site_write_done(&mut self, ok: bool) {
        let now = self.now.mono;
        if self.site.is_none() {
            return;
        }
        if !ok {
            self.fx.event(Event::StorageProblem {
                detail: "writing the site's raft state failed; writing it again as a new generation".into(),
            });
        }
        let site = self.site.as_mut().expect("checked above");
        let Some((ids, obsolete)) = site.persister.completed(ok, now, RAFT_WRITE_RETRY) else { return };
        for id in ids {
            site.raft.persisted(now, id);
        }
        for generation in obsolete {
            self.fx.disk(DiskRequest::Delete { file: FileId::Raft { generation } }, Owner::Unheeded);
        }
    }

    /// Reports the cloud link's outcomes to the detector, from this node's own uplink: a
    /// session coming up is a success; a session lost, or a Hello unanswered, a failure.
    pub(super) fn site_note_cloud(&mut self) {
        let (Some(site), Some(u)) = (&mut self.site, &self.uplink) else { return };
        let now = (u.is_active(), u.unanswered_hellos());
        let (was_active, was_unanswered) = site.cloud_seen;
        if now.0 && !was_active {
            site.detector.cloud_heard(self.now.mono);
        } else if (was_active && !now.0) || now.1 > was_unanswered.max(1) {
            site.detector.cloud_failed(self.now.mono);
        }
        site.cloud_seen = now;
    }

    /// The leader's cluster uplink sends what its log holds of the cluster's stream.
    pub(super) fn site_pump_uplink(&mut self) {
        let hlc = self.site_uplink_hlc();
        let Some(site) = &mut self.site else { return };
        let Some(u) = &mut site.uplink else { return };
        self.fx.send_as = Some(site.cfg.id);
        let mut cx = Ctx { now: self.now.mono, cfg: &site.sync_cfg, hlc, fx: &mut self.fx };
        u.pump(&mut cx, &self.logs, &mut self.rng, (&mut self.enc, &mut self.dec));
        self.fx.send_as = None;
    }

    /// The timestamp the cluster uplink's messages carry: this member's clock, or the
    /// newest record of the cluster's stream if that is later. The stream holds other
    /// members' timestamps, and this clock may have refused one as too far ahead (or
    /// restarted below them): the gateway must see a time after every record it stores,
    /// and judge for itself whether that time is too far ahead.
    pub(super) fn site_uplink_hlc(&self) -> crate::hlc::Hlc {
        let newest = self.site.as_ref().and_then(|s| s.strong.last_hlc.iter().max().copied());
        newest.map_or(self.hlc.last(), |h| h.max(self.hlc.last()))
    }
}

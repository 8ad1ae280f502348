//! Raft: messages in, the Ready loop out (disk first, then messages),
//! committed entries applied, reads served and roles tracked.

use super::*;
use std::sync::Arc;

impl MetaCore {
    pub(crate) fn on_raft_msg(&mut self, h: &mut Host<'_>, m: RaftMsg) {
        if m.cluster == 0 || (self.cluster != 0 && m.cluster != self.cluster) {
            self.counters.raft_refused += 1;
            return;
        }
        let Some(msg) = decode_pb::<RaftMessage>(&m.msg) else {
            self.counters.raft_refused += 1;
            return;
        };
        if msg.to != raft_id(&h.identity.id) || msg.from != raft_id(&m.from.id) {
            self.counters.raft_refused += 1;
            return;
        }
        if self.peers.len() < 64 || self.peers.contains_key(&msg.from) {
            self.peers.insert(msg.from, m.from.id.clone());
        }
        if self.raw.is_none() && !self.join_as_voter(h, m.cluster) {
            return;
        }
        if !self.catch_up_allows(h, &msg) {
            return;
        }
        if let Some(raw) = self.raw.as_mut() {
            let mut msg = msg;
            // A leader that still counts this voter's acknowledgements from
            // before it lost its log sends a commit index past its last
            // entry; raft-rs would panic. Commit only what is held, and
            // tell the leader what is missing (below).
            let last = raw.raft.raft_log.last_index();
            let mut lacking = None;
            if msg.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat && msg.commit > last {
                self.counters.raft_refused += 1;
                lacking = Some((msg.from, msg.commit));
                msg.commit = last;
            }
            let _ = raw.step(msg);
            if let Some((leader, commit)) = lacking {
                self.ask_for_snapshot(leader, commit);
            }
            self.after_raft(h);
        }
        if let (Some(c), Some(raw)) = (self.catching_up, self.raw.as_ref())
            && c.heard
            && raw.raft.raft_log.persisted >= c.needed
            && raw.raft.raft_log.last_index() >= c.needed
        {
            self.catching_up = None;
            tracing::info!(
                index = c.needed,
                "metadata voter caught up with the leader; it votes again"
            );
        }
    }

    /// Tells `leader`, whose heartbeat carried commit index `commit` past
    /// this voter's log, that the voter lacks it. Such a leader still
    /// counts the voter as holding up to `commit` (acknowledged before the
    /// voter lost its log): it would only ever send heartbeats, and it
    /// takes an ordinary append rejection at that index for a stale one. A
    /// rejection that asks for a snapshot at `commit` is not stale to it
    /// (the heartbeat's commit is what it counts the voter as holding,
    /// unless it holds acknowledged entries not yet committed: then the
    /// next heartbeat asks again): it probes again and sends its snapshot,
    /// and the voter catches up with no further writes needed.
    fn ask_for_snapshot(&mut self, leader: RaftId, commit: u64) {
        let Some(raw) = self.raw.as_mut() else {
            return;
        };
        let r = &mut raw.raft;
        if r.state != raft::StateRole::Follower || r.leader_id != leader {
            return;
        }
        let hint = r.raft_log.last_index();
        let mut m = RaftMessage::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgAppendResponse);
        m.to = leader;
        m.from = r.id;
        m.term = r.term;
        m.index = commit;
        m.reject = true;
        m.reject_hint = hint;
        m.log_term = r.raft_log.term(hint).unwrap_or(0);
        m.commit = r.raft_log.committed;
        m.request_snapshot = commit;
        r.msgs.push(m);
    }

    /// A leader is adding this node: it joins as an empty voter and catches
    /// up from the leader's snapshot. Whether it now runs Raft.
    fn join_as_voter(&mut self, h: &mut Host<'_>, cluster: u64) -> bool {
        if !self.cfg.voter || h.left {
            self.counters.raft_refused += 1;
            return false;
        }
        let Some(disk) = self.disk.take() else {
            return false;
        };
        match RaftStore::open(disk) {
            Ok((store, initialized)) => {
                self.cluster = cluster;
                self.grant = None;
                self.asking = None;
                self.catching_up = (!initialized).then(CatchUp::default);
                self.start_raft(h, store);
                true
            }
            Err(e) => {
                self.disk_lost(&e, "raft state unreadable");
                false
            }
        }
    }

    /// While this voter catches up (see [`CatchUp`]), notes what a leader
    /// told it. Whether `msg` may be stepped: a vote request is withheld
    /// from a voter that was one before (no earlier life's advert among
    /// its peers' state means it acknowledged nothing: it may vote), or
    /// that cannot tell yet (before its first push-pull).
    fn catch_up_allows(&mut self, h: &Host<'_>, msg: &RaftMessage) -> bool {
        use raft::eraftpb::MessageType as T;
        let Some(c) = self.catching_up.as_mut() else {
            return true;
        };
        match msg.get_msg_type() {
            T::MsgRequestVote | T::MsgRequestPreVote => {
                let s = h.shared.lock();
                if s.was_voter || !s.synced {
                    drop(s);
                    self.counters.votes_withheld += 1;
                    return false;
                }
            }
            T::MsgAppend => {
                c.heard = true;
                c.needed = c.needed.max(msg.commit);
            }
            T::MsgSnapshot => {
                c.heard = true;
                c.needed = c.needed.max(msg.get_snapshot().get_metadata().index);
            }
            _ => {}
        }
        true
    }

    /// Handles every `Ready` raft-rs has, then tracks role changes.
    pub(super) fn after_raft(&mut self, h: &mut Host<'_>) {
        let mut guard = 0;
        while guard < 64 {
            guard += 1;
            let Some(raw) = self.raw.as_mut() else {
                return;
            };
            if !raw.has_ready() {
                break;
            }
            let mut rd = raw.ready();
            let msgs = rd.take_messages();
            self.send_raft(h, msgs);
            let Some(raw) = self.raw.as_mut() else {
                return;
            };
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                let before = raw.store().machine.placement.clone();
                if let Err(e) = raw.mut_store().apply_snapshot(&snap) {
                    return self.disk_failed(h, e);
                }
                self.placement_replaced(h, before);
                self.advert_dirty = true;
                let names = self.machine().voter_names();
                h.events.push_back(Event::VotersChanged(names));
            }
            let committed = rd.take_committed_entries();
            if !self.apply_committed(h, committed) {
                return;
            }
            let Some(raw) = self.raw.as_mut() else {
                return;
            };
            if !rd.entries().is_empty()
                && let Err(e) = raw.mut_store().append(rd.entries())
            {
                return self.disk_failed(h, e);
            }
            if let Some(hs) = rd.hs()
                && let Err(e) = raw.mut_store().set_hard_state(hs)
            {
                return self.disk_failed(h, e);
            }
            let reads = rd.take_read_states();
            let persisted = rd.take_persisted_messages();
            let mut light = raw.advance(rd);
            if let Some(c) = light.commit_index()
                && let Err(e) = raw.mut_store().set_commit(c)
            {
                return self.disk_failed(h, e);
            }
            let more = light.take_messages();
            let committed = light.take_committed_entries();
            self.send_raft(h, persisted);
            self.send_raft(h, more);
            for rs in reads {
                if let Ok(ctx) = postcard::from_bytes::<ProposalCtx>(&rs.request_ctx)
                    && ctx.proposer == h.identity.id
                    && let Some(s) = self.serving.get_mut(&ctx.token)
                {
                    s.read_at = Some(rs.index);
                }
            }
            if !self.apply_committed(h, committed) {
                return;
            }
            let Some(raw) = self.raw.as_mut() else {
                return;
            };
            raw.advance_apply();
            match raw.mut_store().maybe_compact() {
                Ok(_) => {}
                Err(e) => return self.disk_failed(h, e),
            }
            // A snapshot handed to the transport is reported sent, as
            // raft-rs asks of its transport: the voter's progress then
            // leaves the snapshot state (it would stay there, and get no
            // entry again, when the snapshot is no newer than what the
            // leader thought it held) and a snapshot it asked for is no
            // longer pending (it would be sent again on every append).
            for to in std::mem::take(&mut self.snapshots_sent) {
                raw.report_snapshot(to, raft::SnapshotStatus::Finish);
            }
        }
        self.serve_reads(h);
        self.track_role(h);
    }

    pub(super) fn send_raft(&mut self, h: &mut Host<'_>, msgs: Vec<RaftMessage>) {
        let cluster = self.cluster;
        for m in msgs {
            let Some(to) = self.raft_peer_addr(h, m.to) else {
                continue;
            };
            if m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
            let msg = RaftMsg {
                from: h.identity.clone(),
                cluster,
                msg: encode_pb(&m),
            };
            h.io.send_msg(to, &Message::Raft(msg));
        }
    }

    pub(super) fn raft_peer_addr(&self, h: &View<'_>, id: RaftId) -> Option<std::net::SocketAddr> {
        // A voter still catching up has no names yet: it answers the peers
        // that wrote to it.
        let name = self
            .machine()
            .names
            .get(&id)
            .or_else(|| self.peers.get(&id))?;
        h.members
            .member(name)
            .filter(|m| m.state != MemberState::Left)
            .map(|m| m.identity.addr)
    }

    /// Applies committed entries; `false` when Raft stopped on the way.
    pub(super) fn apply_committed(&mut self, h: &mut Host<'_>, entries: Vec<Entry>) -> bool {
        for e in entries {
            let Some(raw) = self.raw.as_mut() else {
                return false;
            };
            if e.index <= raw.store().machine.applied {
                continue;
            }
            let etype = e.get_entry_type();
            if let Some(cc) = parse_conf_change(etype, &e.data) {
                let cs = match raw.apply_conf_change(&cc) {
                    Ok(cs) => cs,
                    Err(err) => {
                        tracing::warn!(error = %err, "configuration change refused");
                        raw.mut_store().machine.skip(e.index, e.term);
                        continue;
                    }
                };
                let conf = Conf::from_raft(&cs);
                let machine = &mut raw.mut_store().machine;
                let voters = apply_conf_entry(machine, conf.clone(), &e.context, e.index, e.term);
                h.events.push_back(Event::VotersChanged(voters));
                self.advert_dirty = true;
                self.advert_urgent = true;
                let me = raft_id(&h.identity.id);
                let member = conf.voters.contains(&me)
                    || conf.voters_outgoing.contains(&me)
                    || conf.learners.contains(&me)
                    || conf.learners_next.contains(&me);
                if !member {
                    tracing::info!("removed from the metadata voters");
                    self.stop_raft(h, true);
                    return false;
                }
                continue;
            }
            let machine = &mut raw.mut_store().machine;
            let reply = match apply_normal_entry(machine, &e.data, e.index, e.term) {
                Some((entry, before, reply)) => {
                    self.entry_applied(h, &entry, before, e.index);
                    reply
                }
                None => None,
            };
            self.advert_dirty = true;
            if let (Some(r), Ok(ctx)) = (reply, postcard::from_bytes::<ProposalCtx>(&e.context))
                && ctx.proposer == h.identity.id
                && let Some(s) = self.serving.remove(&ctx.token)
            {
                self.finish_serving(h, s, Ok(r));
            }
        }
        true
    }

    /// Events for an applied entry.
    pub(super) fn entry_applied(
        &mut self,
        h: &mut Host<'_>,
        e: &LogEntry,
        before: Option<Arc<Table>>,
        index: u64,
    ) {
        match e {
            LogEntry::Op(op) => self.meta_changed(h, op, index),
            LogEntry::Placement(t) => {
                self.placement_proposed = None;
                let diff = t.diff(before.as_deref());
                if !diff.is_empty() {
                    h.events.push_back(Event::PlacementChanged(diff));
                }
            }
        }
    }

    /// A `PlacementChanged` event when a snapshot replaced the table.
    pub(super) fn placement_replaced(&mut self, h: &mut Host<'_>, before: Option<Arc<Table>>) {
        if let Some(t) = &self.machine().placement {
            let diff = t.diff(before.as_deref());
            if !diff.is_empty() {
                h.events.push_back(Event::PlacementChanged(diff));
            }
        }
    }

    pub(super) fn meta_changed(&mut self, h: &mut Host<'_>, op: &MetaOp, index: u64) {
        if op.is_read() {
            return;
        }
        let value = self.machine().kv.get(op.key()).cloned();
        h.events.push_back(Event::MetadataChanged {
            key: op.key().to_owned(),
            value,
            index,
        });
    }

    pub(super) fn serve_reads(&mut self, h: &mut Host<'_>) {
        let applied = self.machine().applied;
        let ready: Vec<u64> = self
            .serving
            .iter()
            .filter(|(_, s)| s.read_at.is_some_and(|i| i <= applied))
            .map(|(t, _)| *t)
            .collect();
        for t in ready {
            if let Some(s) = self.serving.remove(&t) {
                let r = self.machine().read(&s.op);
                self.finish_serving(h, s, Ok(r));
            }
        }
    }

    pub(super) fn track_role(&mut self, h: &mut Host<'_>) {
        let Some(raw) = self.raw.as_mut() else {
            return;
        };
        let now = (raw.raft.state, raw.raft.term);
        if self.last_role != Some(now) {
            self.last_role = Some(now);
            let e = self.cfg.election_ticks.max(2);
            let t = h.rng.random_range(e..2 * e);
            if let Some(raw) = self.raw.as_mut() {
                raw.raft.set_randomized_election_timeout(t);
            }
            self.advert_dirty = true;
            self.advert_urgent = true;
        }
        let Some(raw) = self.raw.as_ref() else {
            return;
        };
        let leader = raw.raft.leader_id;
        let term = raw.raft.term;
        if leader != self.last_leader {
            self.last_leader = leader;
            self.counters.leader_changes += 1;
            let name = self.machine().names.get(&leader).cloned();
            h.events
                .push_back(Event::LeaderChanged { leader: name, term });
            self.advert_dirty = true;
            self.advert_urgent = true;
        }
    }
}

// ----- applying committed entries -----
//
// A voter applies what Raft commits; a non-voter applies the same entries
// pushed to its copy. Both go through these two functions, so an entry
// means the same on every copy.

/// Applies a configuration change, decided by the caller (`conf`), to
/// `machine`, with the voters' names from the entry's context. The voters'
/// names after it.
pub(crate) fn apply_conf_entry(
    machine: &mut Machine,
    conf: Conf,
    context: &[u8],
    index: u64,
    term: u64,
) -> Vec<NodeId> {
    let names: ConfNames = postcard::from_bytes(context).unwrap_or_default();
    machine.apply_conf(conf, names, index, term);
    machine.voter_names()
}

/// Applies a normal entry to `machine`: the entry, the placement table
/// before it (for the events) and the answer for its proposer; `None`, the
/// index skipped, when the data is empty (a new leader's entry) or does
/// not decode.
pub(crate) fn apply_normal_entry(
    machine: &mut Machine,
    data: &[u8],
    index: u64,
    term: u64,
) -> Option<(LogEntry, Option<Arc<Table>>, Option<MetaReply>)> {
    let Some(entry) = (!data.is_empty())
        .then(|| postcard::from_bytes::<LogEntry>(data).ok())
        .flatten()
    else {
        machine.skip(index, term);
        return None;
    };
    let before = machine.placement.clone();
    let reply = machine.apply_entry(&entry, index, term);
    Some((entry, before, reply))
}

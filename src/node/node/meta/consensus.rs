//! Raft: messages in, the Ready loop out (disk first, then messages),
//! committed entries applied, reads served and roles tracked.

use super::*;

impl Node {
    pub(in crate::node::node) fn on_raft_msg(&mut self, m: RaftMsg) {
        if m.cluster == 0 || (self.meta.cluster != 0 && m.cluster != self.meta.cluster) {
            self.meta.counters.raft_refused += 1;
            return;
        }
        let Some(msg) = decode_pb::<RaftMessage>(&m.msg) else {
            self.meta.counters.raft_refused += 1;
            return;
        };
        if msg.to != raft_id(&self.identity.id) || msg.from != raft_id(&m.from.id) {
            self.meta.counters.raft_refused += 1;
            return;
        }
        if self.meta.peers.len() < 64 || self.meta.peers.contains_key(&msg.from) {
            self.meta.peers.insert(msg.from, m.from.id.clone());
        }
        if self.meta.raw.is_none() {
            // A leader is adding this node: join as an empty voter and
            // catch up from its snapshot.
            if !self.meta.cfg.voter || self.left {
                self.meta.counters.raft_refused += 1;
                return;
            }
            let Some(disk) = self.meta.disk.take() else {
                return;
            };
            match RaftStore::open(disk) {
                Ok((store, initialized)) => {
                    self.meta.cluster = m.cluster;
                    self.meta.grant = None;
                    self.meta.asking = None;
                    self.meta.catching_up = (!initialized).then(CatchUp::default);
                    self.start_raft(store);
                }
                Err(e) => {
                    self.disk_lost(&e, "raft state unreadable");
                    return;
                }
            }
        }
        if let Some(c) = self.meta.catching_up.as_mut() {
            use raft::eraftpb::MessageType as T;
            match msg.get_msg_type() {
                T::MsgRequestVote | T::MsgRequestPreVote => {
                    // A voter that never was one before (no earlier life's
                    // advert among its peers' state) acknowledged nothing:
                    // it may vote. Until its first push-pull it cannot tell.
                    let s = self.shared.lock();
                    if s.was_voter || !s.synced {
                        drop(s);
                        self.meta.counters.votes_withheld += 1;
                        return;
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
        }
        if let Some(raw) = self.meta.raw.as_mut() {
            let mut msg = msg;
            // A leader that still counts this voter's acknowledgements from
            // before it lost its log sends a commit index past its last
            // entry; raft-rs would panic. Commit only what is held: the
            // leader then finds the gap and sends the rest.
            let last = raw.raft.raft_log.last_index();
            if msg.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat && msg.commit > last {
                self.meta.counters.raft_refused += 1;
                msg.commit = last;
            }
            let _ = raw.step(msg);
            self.after_raft();
        }
        if let (Some(c), Some(raw)) = (self.meta.catching_up, self.meta.raw.as_ref())
            && c.heard
            && raw.raft.raft_log.persisted >= c.needed
            && raw.raft.raft_log.last_index() >= c.needed
        {
            self.meta.catching_up = None;
            tracing::info!(
                index = c.needed,
                "metadata voter caught up with the leader; it votes again"
            );
        }
    }

    /// Handles every `Ready` raft-rs has, then tracks role changes.
    pub(in crate::node::node::meta) fn after_raft(&mut self) {
        let mut guard = 0;
        while guard < 64 {
            guard += 1;
            let Some(raw) = self.meta.raw.as_mut() else {
                return;
            };
            if !raw.has_ready() {
                break;
            }
            let mut rd = raw.ready();
            let msgs = rd.take_messages();
            self.send_raft(msgs);
            let Some(raw) = self.meta.raw.as_mut() else {
                return;
            };
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                let before = raw.store().machine.placement.clone();
                if let Err(e) = raw.mut_store().apply_snapshot(&snap) {
                    return self.disk_failed(e);
                }
                self.placement_replaced(before);
                self.meta.advert_dirty = true;
                let names = self.meta.machine().voter_names();
                self.events.push_back(Event::VotersChanged(names));
            }
            let committed = rd.take_committed_entries();
            if !self.apply_committed(committed) {
                return;
            }
            let Some(raw) = self.meta.raw.as_mut() else {
                return;
            };
            if !rd.entries().is_empty()
                && let Err(e) = raw.mut_store().append(rd.entries())
            {
                return self.disk_failed(e);
            }
            if let Some(hs) = rd.hs()
                && let Err(e) = raw.mut_store().set_hard_state(hs)
            {
                return self.disk_failed(e);
            }
            let reads = rd.take_read_states();
            let persisted = rd.take_persisted_messages();
            let mut light = raw.advance(rd);
            if let Some(c) = light.commit_index()
                && let Err(e) = raw.mut_store().set_commit(c)
            {
                return self.disk_failed(e);
            }
            let more = light.take_messages();
            let committed = light.take_committed_entries();
            self.send_raft(persisted);
            self.send_raft(more);
            for rs in reads {
                if let Ok(ctx) = postcard::from_bytes::<ProposalCtx>(&rs.request_ctx)
                    && ctx.proposer == self.identity.id
                    && let Some(s) = self.meta.serving.get_mut(&ctx.token)
                {
                    s.read_at = Some(rs.index);
                }
            }
            if !self.apply_committed(committed) {
                return;
            }
            let Some(raw) = self.meta.raw.as_mut() else {
                return;
            };
            raw.advance_apply();
            match raw.mut_store().maybe_compact() {
                Ok(_) => {}
                Err(e) => return self.disk_failed(e),
            }
        }
        self.serve_reads();
        self.track_role();
    }

    pub(in crate::node::node::meta) fn send_raft(&mut self, msgs: Vec<RaftMessage>) {
        let cluster = self.meta.cluster;
        for m in msgs {
            let Some(to) = self.raft_peer_addr(m.to) else {
                continue;
            };
            let msg = RaftMsg {
                from: self.identity.clone(),
                cluster,
                msg: encode_pb(&m),
            };
            self.io.send_msg(to, &Message::Raft(msg));
        }
    }

    pub(in crate::node::node::meta) fn raft_peer_addr(
        &self,
        id: RaftId,
    ) -> Option<std::net::SocketAddr> {
        // A voter still catching up has no names yet: it answers the peers
        // that wrote to it.
        let name = self
            .meta
            .machine()
            .names
            .get(&id)
            .or_else(|| self.meta.peers.get(&id))?;
        self.member(name)
            .filter(|m| m.state != MemberState::Left)
            .map(|m| m.identity.addr)
    }

    /// Applies committed entries; `false` when Raft stopped on the way.
    pub(in crate::node::node::meta) fn apply_committed(&mut self, entries: Vec<Entry>) -> bool {
        for e in entries {
            let Some(raw) = self.meta.raw.as_mut() else {
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
                self.events.push_back(Event::VotersChanged(voters));
                self.meta.advert_dirty = true;
                self.meta.advert_urgent = true;
                let me = raft_id(&self.identity.id);
                let member = conf.voters.contains(&me)
                    || conf.voters_outgoing.contains(&me)
                    || conf.learners.contains(&me)
                    || conf.learners_next.contains(&me);
                if !member {
                    tracing::info!("removed from the metadata voters");
                    self.stop_raft(true);
                    return false;
                }
                continue;
            }
            let machine = &mut raw.mut_store().machine;
            let reply = match apply_normal_entry(machine, &e.data, e.index, e.term) {
                Some((entry, before, reply)) => {
                    self.entry_applied(&entry, before, e.index);
                    reply
                }
                None => None,
            };
            self.meta.advert_dirty = true;
            if let (Some(r), Ok(ctx)) = (reply, postcard::from_bytes::<ProposalCtx>(&e.context))
                && ctx.proposer == self.identity.id
                && let Some(s) = self.meta.serving.remove(&ctx.token)
            {
                self.finish_serving(s, Ok(r));
            }
        }
        true
    }

    /// Events for an applied entry.
    pub(in crate::node::node::meta) fn entry_applied(
        &mut self,
        e: &LogEntry,
        before: Option<Table>,
        index: u64,
    ) {
        match e {
            LogEntry::Op(op) => self.meta_changed(op, index),
            LogEntry::Placement(t) => {
                self.meta.placement_proposed = None;
                let diff = t.diff(before.as_ref());
                if !diff.is_empty() {
                    self.events.push_back(Event::PlacementChanged(diff));
                }
            }
        }
    }

    /// A `PlacementChanged` event when a snapshot replaced the table.
    pub(in crate::node::node::meta) fn placement_replaced(&mut self, before: Option<Table>) {
        if let Some(t) = &self.meta.machine().placement {
            let diff = t.diff(before.as_ref());
            if !diff.is_empty() {
                self.events.push_back(Event::PlacementChanged(diff));
            }
        }
    }

    pub(in crate::node::node::meta) fn meta_changed(&mut self, op: &MetaOp, index: u64) {
        if op.is_read() {
            return;
        }
        let value = self.meta.machine().kv.get(op.key()).cloned();
        self.events.push_back(Event::MetadataChanged {
            key: op.key().to_owned(),
            value,
            index,
        });
    }

    pub(in crate::node::node::meta) fn serve_reads(&mut self) {
        let applied = self.meta.machine().applied;
        let ready: Vec<u64> = self
            .meta
            .serving
            .iter()
            .filter(|(_, s)| s.read_at.is_some_and(|i| i <= applied))
            .map(|(t, _)| *t)
            .collect();
        for t in ready {
            if let Some(s) = self.meta.serving.remove(&t) {
                let r = self.meta.machine().read(&s.op);
                self.finish_serving(s, Ok(r));
            }
        }
    }

    pub(in crate::node::node::meta) fn track_role(&mut self) {
        let Some(raw) = self.meta.raw.as_mut() else {
            return;
        };
        let now = (raw.raft.state, raw.raft.term);
        if self.meta.last_role != Some(now) {
            self.meta.last_role = Some(now);
            let e = self.meta.cfg.election_ticks.max(2);
            let t = self.rng.random_range(e..2 * e);
            if let Some(raw) = self.meta.raw.as_mut() {
                raw.raft.set_randomized_election_timeout(t);
            }
            self.meta.advert_dirty = true;
            self.meta.advert_urgent = true;
        }
        let Some(raw) = self.meta.raw.as_ref() else {
            return;
        };
        let leader = raw.raft.leader_id;
        let term = raw.raft.term;
        if leader != self.meta.last_leader {
            self.meta.last_leader = leader;
            self.meta.counters.leader_changes += 1;
            let name = self.meta.machine().names.get(&leader).cloned();
            self.events
                .push_back(Event::LeaderChanged { leader: name, term });
            self.meta.advert_dirty = true;
            self.meta.advert_urgent = true;
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
pub(in crate::node::node::meta) fn apply_conf_entry(
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
pub(in crate::node::node::meta) fn apply_normal_entry(
    machine: &mut Machine,
    data: &[u8],
    index: u64,
    term: u64,
) -> Option<(LogEntry, Option<Table>, Option<MetaReply>)> {
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

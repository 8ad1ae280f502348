//! The leader's upkeep: the voter set, requested removals, the placement
//! table, and stepping down when cut off.

use super::*;

impl MetaCore {
    pub(super) fn maybe_change_voters(&mut self, h: &mut Host<'_>) {
        let Some(raw) = self.raw.as_ref() else {
            return;
        };
        if raw.raft.state != StateRole::Leader {
            return;
        }
        let machine = &raw.store().machine;
        if raw.raft.pending_conf_index > machine.applied || !machine.conf.voters_outgoing.is_empty()
        {
            return;
        }
        let voters: Vec<Voter> = machine
            .conf
            .voters
            .iter()
            .filter_map(|id| machine.names.get(id))
            .map(|id| Voter {
                id: id.clone(),
                zone: self.zone_of(h, id),
                healthy: *id == h.identity.id
                    || h.members.member(id).is_some_and(|m| {
                        matches!(m.state, MemberState::Alive | MemberState::Suspect)
                    }),
                removal_asked: self.removal_asked(h, id),
            })
            .collect();
        let mut candidates: Vec<Candidate> = h
            .members
            .views()
            .filter(|m| m.state == MemberState::Alive && self.eligible(h, &m.identity.id))
            .map(|m| Candidate {
                id: m.identity.id.clone(),
                zone: self.zone_of(h, &m.identity.id),
                up_since: m.since,
            })
            .collect();
        // The initial voters chosen at bootstrap come first.
        let preferred: Vec<Candidate> = candidates
            .iter()
            .filter(|c| self.preferred.contains(&c.id) && !voters.iter().any(|v| v.id == c.id))
            .cloned()
            .collect();
        if !preferred.is_empty() {
            candidates = preferred;
        } else {
            self.preferred.clear();
        }
        let Some(change) = policy::next_change(&voters, &candidates, self.cfg.target_voters) else {
            self.clean_up_removals(h);
            return;
        };
        let (cc, names) = conf_change_for(&change);
        tracing::info!(change = ?change, "changing the metadata voters");
        let ctx = postcard::to_stdvec(&names).unwrap_or_default();
        if let Some(raw) = self.raw.as_mut() {
            let _ = raw.propose_conf_change(ctx, cc);
        }
        self.after_raft(h);
    }

    /// On the leader, with no voter change under way: deletes one
    /// voter-removal request (`roster voters remove`) whose voter is no
    /// longer a voter, so that it cannot apply to a later voter of the same
    /// name. One proposal per [`PLACEMENT_RETRY`] at most.
    pub(super) fn clean_up_removals(&mut self, h: &mut Host<'_>) {
        let now = h.io.now;
        if self
            .removal_cleanup_proposed
            .is_some_and(|t| now < t + PLACEMENT_RETRY)
        {
            return;
        }
        let machine = self.machine();
        let prefix = crate::node::meta::REMOVE_VOTER_PREFIX;
        let voters = machine.voter_names();
        let done = machine
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .find(|k| !voters.iter().any(|v| v.as_str() == &k[prefix.len()..]));
        let Some(key) = done else {
            return;
        };
        let data = postcard::to_stdvec(&LogEntry::Op(MetaOp::Delete { key })).unwrap_or_default();
        if let Some(raw) = self.raw.as_mut()
            && raw.propose(Vec::new(), data).is_ok()
        {
            self.removal_cleanup_proposed = Some(now);
        }
        self.after_raft(h);
    }

    /// Whether a member may own partitions (its `owner` tag is not
    /// "false").
    pub(super) fn owner_eligible(&self, h: &View<'_>, id: &NodeId) -> bool {
        if *id == h.identity.id && !self.cfg.owner {
            return false;
        }
        h.shared
            .lock()
            .store
            .get(id, "tag:owner")
            .is_none_or(|v| v != b"false")
    }

    /// The leader recomputes the placement when the eligible owners (live
    /// members, Suspect included, Down and Left excluded) differ from the
    /// ones the committed table was made for, and commits it.
    pub(super) fn maybe_place(&mut self, h: &mut Host<'_>) {
        let now = h.io.now;
        let Some(raw) = self.raw.as_ref() else {
            return;
        };
        if raw.raft.state != StateRole::Leader {
            return;
        }
        if self
            .placement_proposed
            .is_some_and(|t| now < t + PLACEMENT_RETRY)
        {
            return;
        }
        let machine = &raw.store().machine;
        if machine.partition_count == 0 {
            return;
        }
        let mut owners: Vec<Owner> = Vec::new();
        let me = h.identity.id.clone();
        let candidates = std::iter::once(me).chain(
            h.members
                .views()
                .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
                .map(|m| m.identity.id.clone()),
        );
        for id in candidates {
            if self.owner_eligible(h, &id) {
                owners.push(Owner {
                    zone: self.zone_of(h, &id),
                    id,
                });
            }
        }
        owners.sort_by(|a, b| a.id.cmp(&b.id));
        let ids: Vec<NodeId> = owners.iter().map(|o| o.id.clone()).collect();
        let prev = machine.placement.as_deref();
        if prev.is_some_and(|t| t.nodes == ids) {
            return;
        }
        let table = placement::assign(
            prev,
            &owners,
            machine.partition_count,
            machine.replication_factor,
        );
        let data = postcard::to_stdvec(&LogEntry::Placement(table)).unwrap_or_default();
        if let Some(raw) = self.raw.as_mut()
            && raw.propose(Vec::new(), data).is_ok()
        {
            tracing::info!(owners = ids.len(), "proposing a new partition placement");
            self.placement_proposed = Some(now);
        }
        self.after_raft(h);
    }

    pub(super) fn zone_of(&self, h: &View<'_>, id: &NodeId) -> Option<String> {
        h.shared
            .lock()
            .store
            .get(id, "tag:zone")
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// A voter that was removed while it was cut off never hears of its
    /// removal (the leader stops writing to it). Once it has had no leader
    /// for [`ZOMBIE_AFTER`] while a live member advertises itself leader of
    /// this cluster, at an applied index at least this node's, with a voter
    /// list that leaves this node out, it drops its Raft state and follows
    /// as a non-voter (a leader adds it back through a snapshot if chosen
    /// again). A voter still in the configuration is never dropped this way.
    /// The same holds for a node made a voter that went down before it
    /// applied its first configuration.
    pub(super) fn maybe_step_down_zombie(&mut self, h: &mut Host<'_>) {
        let now = h.io.now;
        let Some(raw) = self.raw.as_ref() else {
            self.leaderless_since = None;
            return;
        };
        // A node made a voter that went down before it applied its first
        // configuration is in no configuration of its own: it never
        // campaigns, and still names the leader that added it.
        if raw.raft.leader_id != raft::INVALID_ID && raw.raft.promotable() {
            self.leaderless_since = None;
            return;
        }
        let since = *self.leaderless_since.get_or_insert(now);
        if now < since + ZOMBIE_AFTER {
            return;
        }
        let applied = raw.store().machine.applied;
        let cluster = self.cluster;
        let me = h.identity.id.clone();
        let removed = self.adverts(h).into_iter().any(|(id, a)| {
            a.cluster == cluster
                && a.voter
                && a.applied >= applied
                && a.leader.as_ref() == Some(&id)
                && !a.voters.is_empty()
                && !a.voters.contains(&me)
                && h.members
                    .member(&id)
                    .is_some_and(|m| m.state == MemberState::Alive)
        });
        if removed {
            tracing::warn!(
                "removed from the metadata voters while cut off; following as a non-voter"
            );
            self.stop_raft(h, true);
        }
    }
}

/// The Raft configuration change that carries out `change`, and the names
/// of the voters it adds (the entry's context).
fn conf_change_for(change: &VoterChange) -> (ConfChangeV2, ConfNames) {
    let single = |id: &NodeId, t: ConfChangeType| {
        let mut c = ConfChangeSingle {
            node_id: raft_id(id),
            ..Default::default()
        };
        c.set_change_type(t);
        c
    };
    let mut cc = ConfChangeV2::default();
    let names: ConfNames = match change {
        VoterChange::Add(id) => {
            cc.mut_changes().push(single(id, ConfChangeType::AddNode));
            vec![(raft_id(id), id.clone())]
        }
        VoterChange::Replace { add, remove } => {
            cc.set_transition(ConfChangeTransition::Auto);
            cc.mut_changes().push(single(add, ConfChangeType::AddNode));
            cc.mut_changes()
                .push(single(remove, ConfChangeType::RemoveNode));
            vec![(raft_id(add), add.clone())]
        }
        VoterChange::Remove(id) => {
            cc.mut_changes()
                .push(single(id, ConfChangeType::RemoveNode));
            Vec::new()
        }
    };
    (cc, names)
}

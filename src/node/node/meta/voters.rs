//! The leader's upkeep: the voter set, requested removals, the placement
//! table, and stepping down when cut off.

use super::*;

impl Node {
    pub(in crate::node::node::meta) fn maybe_change_voters(&mut self) {
        let Some(raw) = self.meta.raw.as_ref() else {
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
                zone: self.zone_of(id),
                healthy: *id == self.identity.id
                    || self.member(id).is_some_and(|m| {
                        matches!(m.state, MemberState::Alive | MemberState::Suspect)
                    }),
                removal_asked: self.removal_asked(id),
            })
            .collect();
        let mut candidates: Vec<Candidate> = self
            .views()
            .filter(|m| m.state == MemberState::Alive && self.eligible(&m.identity.id))
            .map(|m| Candidate {
                id: m.identity.id.clone(),
                zone: self.zone_of(&m.identity.id),
                up_since: m.since,
            })
            .collect();
        // The initial voters chosen at bootstrap come first.
        let preferred: Vec<Candidate> = candidates
            .iter()
            .filter(|c| self.meta.preferred.contains(&c.id) && !voters.iter().any(|v| v.id == c.id))
            .cloned()
            .collect();
        if !preferred.is_empty() {
            candidates = preferred;
        } else {
            self.meta.preferred.clear();
        }
        let Some(change) = policy::next_change(&voters, &candidates, self.meta.cfg.target_voters)
        else {
            self.clean_up_removals();
            return;
        };
        let single = |id: &NodeId, t: ConfChangeType| {
            let mut c = ConfChangeSingle {
                node_id: raft_id(id),
                ..Default::default()
            };
            c.set_change_type(t);
            c
        };
        let mut cc = ConfChangeV2::default();
        let names: ConfNames = match &change {
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
        tracing::info!(change = ?change, "changing the metadata voters");
        let ctx = postcard::to_stdvec(&names).unwrap_or_default();
        if let Some(raw) = self.meta.raw.as_mut() {
            let _ = raw.propose_conf_change(ctx, cc);
        }
        self.after_raft();
    }

    /// On the leader, with no voter change under way: deletes one
    /// voter-removal request (`roster voters remove`) whose voter is no
    /// longer a voter, so that it cannot apply to a later voter of the same
    /// name. One proposal per [`PLACEMENT_RETRY`] at most.
    pub(in crate::node::node::meta) fn clean_up_removals(&mut self) {
        let now = self.io.now;
        if self
            .meta
            .removal_cleanup_proposed
            .is_some_and(|t| now < t + PLACEMENT_RETRY)
        {
            return;
        }
        let machine = self.meta.machine();
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
        if let Some(raw) = self.meta.raw.as_mut()
            && raw.propose(Vec::new(), data).is_ok()
        {
            self.meta.removal_cleanup_proposed = Some(now);
        }
        self.after_raft();
    }

    /// Whether a member may own partitions (its `owner` tag is not
    /// "false").
    pub(in crate::node::node::meta) fn owner_eligible(&self, id: &NodeId) -> bool {
        if *id == self.identity.id && !self.meta.cfg.owner {
            return false;
        }
        self.shared
            .lock()
            .store
            .get(id, "tag:owner")
            .is_none_or(|v| v != b"false")
    }

    /// The leader recomputes the placement when the eligible owners (live
    /// members, Suspect included, Down and Left excluded) differ from the
    /// ones the committed table was made for, and commits it.
    pub(in crate::node::node::meta) fn maybe_place(&mut self) {
        let now = self.io.now;
        let Some(raw) = self.meta.raw.as_ref() else {
            return;
        };
        if raw.raft.state != StateRole::Leader {
            return;
        }
        if self
            .meta
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
        let me = self.identity.id.clone();
        let candidates = std::iter::once(me).chain(
            self.views()
                .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
                .map(|m| m.identity.id.clone()),
        );
        for id in candidates {
            if self.owner_eligible(&id) {
                owners.push(Owner {
                    zone: self.zone_of(&id),
                    id,
                });
            }
        }
        owners.sort_by(|a, b| a.id.cmp(&b.id));
        let ids: Vec<NodeId> = owners.iter().map(|o| o.id.clone()).collect();
        let prev = machine.placement.as_ref();
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
        if let Some(raw) = self.meta.raw.as_mut()
            && raw.propose(Vec::new(), data).is_ok()
        {
            tracing::info!(owners = ids.len(), "proposing a new partition placement");
            self.meta.placement_proposed = Some(now);
        }
        self.after_raft();
    }

    pub(in crate::node::node::meta) fn zone_of(&self, id: &NodeId) -> Option<String> {
        self.shared
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
    pub(in crate::node::node::meta) fn maybe_step_down_zombie(&mut self) {
        let now = self.io.now;
        let Some(raw) = self.meta.raw.as_ref() else {
            self.meta.leaderless_since = None;
            return;
        };
        // A node made a voter that went down before it applied its first
        // configuration is in no configuration of its own: it never
        // campaigns, and still names the leader that added it.
        if raw.raft.leader_id != raft::INVALID_ID && raw.raft.promotable() {
            self.meta.leaderless_since = None;
            return;
        }
        let since = *self.meta.leaderless_since.get_or_insert(now);
        if now < since + ZOMBIE_AFTER {
            return;
        }
        let applied = raw.store().machine.applied;
        let cluster = self.meta.cluster;
        let me = self.identity.id.clone();
        let removed = self.adverts().into_iter().any(|(id, a)| {
            a.cluster == cluster
                && a.voter
                && a.applied >= applied
                && a.leader.as_ref() == Some(&id)
                && !a.voters.is_empty()
                && !a.voters.contains(&me)
                && self
                    .member(&id)
                    .is_some_and(|m| m.state == MemberState::Alive)
        });
        if removed {
            tracing::warn!(
                "removed from the metadata voters while cut off; following as a non-voter"
            );
            self.stop_raft(true);
        }
    }
}

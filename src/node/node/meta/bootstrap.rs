//! Bootstrap with no seed: the lowest NodeId of a settled view asks the
//! other initial voters, and starts the cluster once all have granted.

use super::*;

impl Node {
    /// The live eligible view for a bootstrap, or `None` when the view is
    /// not clean and settled (a member suspected or recently Down, a join
    /// address that never answered, members still coming).
    pub(in crate::node::node::meta) fn bootstrap_view(&mut self) -> Option<Vec<NodeId>> {
        // A node that expects to bootstrap alone and has no one to join need
        // not wait to have joined anyone.
        let alone = self.meta.cfg.bootstrap_expect <= 1 && self.seeds.is_empty();
        if !self.meta.cfg.voter || !(self.joined || alone) || self.left {
            return None;
        }
        if self.meta.raw.is_some() || self.meta_cluster().is_some() {
            return None;
        }
        let now = self.io.now;
        let grace = self.meta.cfg.bootstrap_down_grace;
        // This runs on every metadata tick of every node until a cluster
        // exists: fingerprint the live set first (no allocation), build the
        // list only once it has settled.
        let mut fingerprint = self.identity.id.fingerprint();
        for m in self.views() {
            match m.state {
                MemberState::Alive => {
                    fingerprint = fingerprint.wrapping_add(m.identity.id.fingerprint());
                }
                MemberState::Suspect => return None,
                MemberState::Down if now < m.since + grace => return None,
                MemberState::Down | MemberState::Left => {}
            }
        }
        let seeds_ok = now >= self.meta.started + grace
            || self.seeds.iter().all(|s| {
                self.answered_seeds.contains(s)
                    || self
                        .views()
                        .any(|m| m.identity.addr == *s && m.state == MemberState::Alive)
            });
        if !seeds_ok {
            return None;
        }
        if fingerprint != self.meta.alive_view {
            self.meta.alive_view = fingerprint;
            self.meta.alive_changed = now;
        }
        if now < self.meta.alive_changed + self.meta.cfg.bootstrap_settle {
            return None;
        }
        let mut alive: Vec<NodeId> = std::iter::once(self.identity.id.clone())
            .chain(
                self.views()
                    .filter(|m| m.state == MemberState::Alive)
                    .map(|m| m.identity.id.clone()),
            )
            .collect();
        alive.sort();
        let eligible: Vec<NodeId> = alive
            .into_iter()
            .filter(|id| *id == self.identity.id || self.eligible(id))
            .collect();
        (eligible.len() >= self.meta.cfg.bootstrap_expect.max(1)).then_some(eligible)
    }

    /// Whether a member may be a voter (its `voter` tag is not "false").
    pub(in crate::node::node::meta) fn eligible(&self, id: &NodeId) -> bool {
        self.shared
            .lock()
            .store
            .get(id, "tag:voter")
            .is_none_or(|v| v != b"false")
    }

    pub(in crate::node::node::meta) fn maybe_bootstrap(&mut self) {
        let now = self.io.now;
        if let Some(a) = &self.meta.asking
            && now >= a.deadline
        {
            self.meta.asking = None;
        }
        if self.meta.asking.is_some() {
            return;
        }
        let Some(eligible) = self.bootstrap_view() else {
            return;
        };
        let set = policy::bootstrap_set(&eligible, self.meta.cfg.target_voters);
        if set.first() != Some(&self.identity.id) {
            return;
        }
        if let Some((c, _, until)) = &self.meta.grant
            && now < *until
            && *c != 0
        {
            // Granted to another candidate: wait for it.
            return;
        }
        // One id per candidate, kept across attempts, so members that
        // granted an earlier attempt grant this one too.
        if self.meta.my_cluster == 0 {
            self.meta.my_cluster = self.rng.random::<u64>().max(1);
        }
        let cluster = self.meta.my_cluster;
        self.meta.grant = Some((cluster, self.identity.id.clone(), now + ASK_WINDOW));
        self.meta.asking = Some(Asking {
            cluster,
            voters: set.clone(),
            granted: BTreeSet::from([self.identity.id.clone()]),
            deadline: now + ASK_WINDOW,
        });
        if set.len() == 1 {
            self.bootstrap(cluster, set);
            return;
        }
        let from = self.identity.clone();
        for id in &set[1..] {
            if let Some(m) = self.member(id) {
                let addr = m.identity.addr;
                self.io.send_msg(
                    addr,
                    &Message::BootstrapAsk(BootstrapAsk {
                        from: from.clone(),
                        cluster,
                        voters: set.clone(),
                    }),
                );
            }
        }
    }

    pub(in crate::node::node) fn on_bootstrap_ask(&mut self, a: BootstrapAsk) {
        let now = self.io.now;
        let view = self.bootstrap_view();
        let agrees = view.is_some_and(|v| {
            policy::bootstrap_set(&v, self.meta.cfg.target_voters) == a.voters
                && a.voters.first() == Some(&a.from.id)
                && a.voters.contains(&self.identity.id)
        });
        let free = match &self.meta.grant {
            Some((c, _, until)) => now >= *until || *c == a.cluster,
            None => true,
        };
        let granted = agrees && free && self.meta.asking.is_none();
        if granted {
            self.meta.grant = Some((a.cluster, a.from.id.clone(), now + GRANT_TTL));
        }
        let from = self.identity.clone();
        self.io.send_msg(
            a.from.addr,
            &Message::BootstrapGrant(BootstrapGrant {
                from,
                cluster: a.cluster,
                granted,
            }),
        );
    }

    pub(in crate::node::node) fn on_bootstrap_grant(&mut self, g: BootstrapGrant) {
        let now = self.io.now;
        let Some(a) = self.meta.asking.as_mut() else {
            return;
        };
        if a.cluster != g.cluster || !a.voters.contains(&g.from.id) {
            return;
        }
        if !g.granted || now >= a.deadline {
            self.meta.asking = None;
            return;
        }
        a.granted.insert(g.from.id);
        if a.granted.len() == a.voters.len() {
            let (cluster, voters) = (a.cluster, a.voters.clone());
            self.meta.asking = None;
            // Still clean and alone? (Another cluster may have appeared.)
            if self.meta_cluster().is_none() && self.meta.raw.is_none() {
                self.bootstrap(cluster, voters);
            }
        }
    }

    pub(in crate::node::node::meta) fn bootstrap(&mut self, cluster: u64, voters: Vec<NodeId>) {
        let Some(disk) = self.meta.disk.take() else {
            return;
        };
        let me = raft_id(&self.identity.id);
        let machine = Machine {
            cluster,
            names: BTreeMap::from([(me, self.identity.id.clone())]),
            conf: Conf {
                voters: vec![me],
                ..Default::default()
            },
            partition_count: self.meta.cfg.partition_count.max(1),
            replication_factor: self.meta.cfg.replication_factor.max(1),
            ..Default::default()
        };
        let store = match RaftStore::open(disk) {
            Ok((mut s, _)) => match s.bootstrap(machine) {
                Ok(()) => s,
                Err(e) => {
                    let (disk, _) = s.into_parts();
                    self.meta.disk = Some(disk);
                    self.meta.counters.disk_errors += 1;
                    tracing::error!(error = %e, "bootstrap failed");
                    return;
                }
            },
            Err(e) => {
                self.disk_lost(&e, "bootstrap failed");
                return;
            }
        };
        tracing::info!(cluster = format!("{cluster:016x}"), voters = ?voters, "bootstrapped the metadata cluster");
        self.meta.cluster = cluster;
        self.meta.preferred = voters;
        self.events.push_back(Event::MetaBootstrapped { cluster });
        self.start_raft(store);
        if let Some(raw) = self.meta.raw.as_mut() {
            let _ = raw.campaign();
        }
        self.after_raft();
        self.advertise();
    }
}

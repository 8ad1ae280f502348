//! Bootstrap with no seed: the lowest NodeId of a settled view asks the
//! other initial voters, and starts the cluster once all have granted.

use super::*;

/// What the bootstrap reads from a node's listing of its members.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listed {
    /// Sum of the fingerprints of the members listed Alive.
    alive: u64,
    /// Whether any member is listed Suspect.
    suspect: bool,
    /// When the member listed Down most recently went Down.
    last_down: Option<Duration>,
}

impl Listed {
    fn read(members: &Members<'_>) -> Self {
        let mut listed = Self {
            alive: 0,
            suspect: false,
            last_down: None,
        };
        for (identity, state, since) in members.listed() {
            match state {
                MemberState::Alive => {
                    listed.alive = listed.alive.wrapping_add(identity.id.fingerprint());
                }
                MemberState::Suspect => listed.suspect = true,
                MemberState::Down => {
                    listed.last_down = Some(listed.last_down.map_or(since, |d| d.max(since)));
                }
                MemberState::Left => {}
            }
        }
        listed
    }
}

impl MetaCore {
    /// The initial voters this node's view gives (see
    /// [`policy::initial_voters`]), or `None` when the view is not clean and
    /// settled (a member suspected or recently Down, a join address that
    /// never answered, members still coming) or holds too few eligible
    /// members.
    pub(super) fn bootstrap_voters(&mut self, h: &mut Host<'_>) -> Option<Vec<NodeId>> {
        // A node that expects to bootstrap alone and has no one to join need
        // not wait to have joined anyone.
        let alone = self.cfg.bootstrap_expect <= 1 && h.seeds.is_empty();
        if !self.cfg.voter || !(h.joined || alone) || h.left {
            return None;
        }
        if self.raw.is_some() || self.meta_cluster(h).is_some() {
            return None;
        }
        let now = h.io.now;
        let grace = self.cfg.bootstrap_down_grace;
        // This runs on every metadata tick of every node until a cluster
        // exists: fingerprint the live set first (no allocation), build the
        // list only once it has settled; with the native engine, read the
        // listing again only once it changed (at 10,000 simulated nodes that
        // pass on every tick of every node was 4% of the run's samples).
        let version = h.members.listed_version();
        let listed = match (version, self.listed) {
            (Some(v), Some((read, listed))) if read == v => listed,
            _ => {
                let listed = Listed::read(&h.members);
                self.listed = version.map(|v| (v, listed));
                listed
            }
        };
        if listed.suspect || listed.last_down.is_some_and(|since| now < since + grace) {
            return None;
        }
        let fingerprint = h.identity.id.fingerprint().wrapping_add(listed.alive);
        let seeds_ok = now >= self.started + grace
            || h.seeds.iter().all(|s| {
                h.answered_seeds.contains(s)
                    || h.members
                        .listed()
                        .any(|(id, state, _)| id.addr == *s && state == MemberState::Alive)
            });
        if !seeds_ok {
            return None;
        }
        if fingerprint != self.alive_view {
            self.alive_view = fingerprint;
            self.alive_changed = now;
        }
        if now < self.alive_changed + self.cfg.bootstrap_settle {
            return None;
        }
        let me = &h.identity.id;
        let alive = std::iter::once(me).chain(
            h.members
                .listed()
                .filter(|(_, state, _)| *state == MemberState::Alive)
                .map(|(identity, _, _)| &identity.id),
        );
        policy::initial_voters(
            alive,
            self.cfg.target_voters,
            self.cfg.bootstrap_expect,
            |id| id == me || self.eligible(h, id),
        )
    }

    /// Whether a member may be a voter (its `voter` tag is not "false").
    pub(super) fn eligible(&self, h: &View<'_>, id: &NodeId) -> bool {
        h.shared
            .lock()
            .store
            .get(id, "tag:voter")
            .is_none_or(|v| v != b"false")
    }

    pub(super) fn maybe_bootstrap(&mut self, h: &mut Host<'_>) {
        let now = h.io.now;
        if let Some(a) = &self.asking
            && now >= a.deadline
        {
            self.asking = None;
        }
        if self.asking.is_some() {
            return;
        }
        let Some(set) = self.bootstrap_voters(h) else {
            return;
        };
        if set.first() != Some(&h.identity.id) {
            return;
        }
        if let Some((c, _, until)) = &self.grant
            && now < *until
            && *c != 0
        {
            // Granted to another candidate: wait for it.
            return;
        }
        // One id per candidate, kept across attempts, so members that
        // granted an earlier attempt grant this one too.
        if self.my_cluster == 0 {
            self.my_cluster = h.rng.random::<u64>().max(1);
        }
        let cluster = self.my_cluster;
        self.grant = Some((cluster, h.identity.id.clone(), now + ASK_WINDOW));
        self.asking = Some(Asking {
            cluster,
            voters: set.clone(),
            granted: BTreeSet::from([h.identity.id.clone()]),
            deadline: now + ASK_WINDOW,
        });
        if set.len() == 1 {
            self.bootstrap(h, cluster, set);
            return;
        }
        let from = h.identity.clone();
        for id in &set[1..] {
            if let Some(m) = h.members.member(id) {
                let addr = m.identity.addr;
                h.io.send_msg(
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

    pub(crate) fn on_bootstrap_ask(&mut self, h: &mut Host<'_>, a: BootstrapAsk) {
        let now = h.io.now;
        let set = self.bootstrap_voters(h);
        let agrees = set.is_some_and(|set| {
            set == a.voters
                && a.voters.first() == Some(&a.from.id)
                && a.voters.contains(&h.identity.id)
        });
        let free = match &self.grant {
            Some((c, _, until)) => now >= *until || *c == a.cluster,
            None => true,
        };
        let granted = agrees && free && self.asking.is_none();
        if granted {
            self.grant = Some((a.cluster, a.from.id.clone(), now + GRANT_TTL));
        }
        let from = h.identity.clone();
        h.io.send_msg(
            a.from.addr,
            &Message::BootstrapGrant(BootstrapGrant {
                from,
                cluster: a.cluster,
                granted,
            }),
        );
    }

    pub(crate) fn on_bootstrap_grant(&mut self, h: &mut Host<'_>, g: BootstrapGrant) {
        let now = h.io.now;
        let Some(a) = self.asking.as_mut() else {
            return;
        };
        if a.cluster != g.cluster || !a.voters.contains(&g.from.id) {
            return;
        }
        if !g.granted || now >= a.deadline {
            self.asking = None;
            return;
        }
        a.granted.insert(g.from.id);
        if a.granted.len() == a.voters.len() {
            let (cluster, voters) = (a.cluster, a.voters.clone());
            self.asking = None;
            // Still clean and alone? (Another cluster may have appeared.)
            if self.meta_cluster(h).is_none() && self.raw.is_none() {
                self.bootstrap(h, cluster, voters);
            }
        }
    }

    pub(super) fn bootstrap(&mut self, h: &mut Host<'_>, cluster: u64, voters: Vec<NodeId>) {
        let Some(disk) = self.disk.take() else {
            return;
        };
        let me = raft_id(&h.identity.id);
        let machine = Machine {
            cluster,
            names: BTreeMap::from([(me, h.identity.id.clone())]),
            conf: Conf {
                voters: vec![me],
                ..Default::default()
            },
            partition_count: self.cfg.partition_count.max(1),
            replication_factor: self.cfg.replication_factor.max(1),
            ..Default::default()
        };
        let store = match RaftStore::open(disk) {
            Ok((mut s, _)) => match s.bootstrap(machine) {
                Ok(()) => s,
                Err(e) => {
                    let (disk, _) = s.into_parts();
                    self.disk = Some(disk);
                    self.counters.disk_errors += 1;
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
        self.cluster = cluster;
        self.preferred = voters;
        h.events.push_back(Event::MetaBootstrapped { cluster });
        self.start_raft(h, store);
        if let Some(raw) = self.raw.as_mut() {
            let _ = raw.campaign();
        }
        self.after_raft(h);
        self.advertise(h);
    }
}

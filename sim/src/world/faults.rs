//! The scenario's actions: starts, crashes, leaves, partitions, loss, clock
//! jumps, pauses, forged writes and the metadata drills.

use super::*;

impl World {
    /// Crashes a random one of `candidates` (not empty), recording when.
    pub(super) fn crash_one_of(&mut self, candidates: &[usize]) {
        let n = candidates[self.rng.random_range(0..candidates.len())];
        self.m
            .crash_times
            .push((self.now, self.slots[n].id.clone()));
        self.act(Action::Crash(n));
    }

    // One arm per fault or workload action of the scenario table: long
    // because the actions are many; the longer arms call methods of their own.
    pub(super) fn act(&mut self, a: Action) {
        match a {
            Action::Start(n) => self.start(n),
            Action::Crash(n) => {
                if let Some(node) = self.slots[n].node.take() {
                    let identity = node.identity().clone();
                    let observers: Vec<usize> = self.running();
                    self.crashes.push((n, identity, self.now, observers));
                }
            }
            Action::Leave(n) => {
                let now = self.now_of(n);
                if let Some(node) = self.slots[n].node.as_mut() {
                    node.leave(now);
                }
                self.after(n);
                self.slots[n].node = None;
            }
            Action::Write(n) => self.write(n),
            Action::TagFifth => {
                for n in self.running().into_iter().filter(|n| n % 5 == 0) {
                    let now = self.now_of(n);
                    if let Some(node) = self.slots[n].node.as_mut() {
                        let _ = node.set_tag(now, "role", "db");
                    }
                    self.after(n);
                }
            }
            Action::QueryRandom { tagged, relay } => {
                let running = self.running();
                if !running.is_empty() {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.ask(n, tagged, relay);
                }
            }
            Action::MeasureCoordinates => {
                if let Some((p50, p90)) = self.coord_error() {
                    self.m.coord_errors.push((self.now, p50, p90));
                }
            }
            Action::EventRandom => {
                let running = self.up();
                if !running.is_empty() {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.send_event(n);
                }
            }
            Action::WriteRandom => {
                let running = self.up();
                if !running.is_empty() {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.write(n);
                }
            }
            Action::Replace { crash } => {
                let running = self.running();
                if running.len() > 1 {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.act(if crash {
                        Action::Crash(n)
                    } else {
                        Action::Leave(n)
                    });
                    let fresh = self.add_slot();
                    self.start(fresh);
                }
            }
            Action::CrashRestart { after } => {
                let running = self.running();
                if running.len() > 1 {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.act(Action::Crash(n));
                    self.at(self.now + after, Action::Start(n));
                }
            }
            Action::Partition(p) => {
                if p.is_none() && self.net.partition.is_some() {
                    self.heal_at = Some(self.now);
                }
                if p.is_some() && self.split_at.is_none() {
                    self.split_at = Some(self.now);
                }
                self.net.partition = p;
                self.topology_changed = Some(self.now);
            }
            Action::Loss(p) => self.net.loss = p,
            Action::NodeLoss(n, p) => self.net.node_loss[n] = p,
            Action::Deaf(n, d) => {
                self.net.deaf[n] = d;
                self.topology_changed = Some(self.now);
            }
            Action::ClockJump(n, ms) => self.slots[n].clock.jumped_ms += ms,
            Action::Forge => self.forge(),
            Action::FaultsEnd => self.faults_end(),
            Action::StaleRestart => self.stale_restart(),
            Action::CrashLeader { restart_after } => self.crash_leader(restart_after),
            Action::CrashVoters(k) => self.crash_voters(k),
            Action::MarkVoterLoss => self.m.voter_loss_at = Some(self.now),
            Action::WipeDisk(n) => {
                if self.slots[n].node.is_none() {
                    self.slots[n].disk = MemDisk::default();
                }
            }
            Action::VoterWipeDrill => self.voter_wipe_drill(),
            Action::AddNode => {
                let fresh = self.add_slot();
                self.start(fresh);
            }
            Action::LeaveRandom => {
                let running = self.running();
                if running.len() > 1 {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.act(Action::Leave(n));
                    self.placement_check();
                }
            }
            Action::CrashRandom => {
                let running = self.running();
                if running.len() > 1 {
                    self.crash_one_of(&running);
                    self.placement_check();
                }
            }
            Action::CrashHealthy => self.crash_healthy(),
            Action::PauseRandom(len) => self.pause_random(len),
            Action::Resume(n) => self.resume(n),
            Action::Freeze(n) => {
                if self.slots[n].node.is_some() {
                    self.slots[n].paused = true;
                }
            }
            Action::PlanTick => self.plan_tick(),
            Action::PlanSample => self.plan_sample(),
            Action::MetaClient { keys } => self.meta_client(keys),
            Action::MetaFinalReads { keys } => {
                let running = self.up();
                if running.is_empty() {
                    return;
                }
                for k in 0..keys {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.meta_submit(
                        n,
                        MetaOp::Get {
                            key: format!("key{k}"),
                        },
                    );
                }
            }
        }
    }

    /// The fault phase is over (and, planted, a partition that never heals starts).
    fn faults_end(&mut self) {
        self.faults_end = Some(self.now);
        let running = self.running();
        if running.len() > 2 && self.planted.fire_at_end(Plant::NoHeal) {
            let cut = running[self.rng.random_range(0..running.len())];
            let mut groups = vec![0u8; self.slots.len()];
            groups[cut] = 1;
            self.net.partition = Some(groups);
            self.topology_changed = Some(self.now);
        }
    }

    /// The [`Plant::StaleGeneration`] bug (see [`Action::StaleRestart`]).
    fn stale_restart(&mut self) {
        let running = self.running();
        if running.is_empty() {
            return;
        }
        let n = running[self.rng.random_range(0..running.len())];
        // A restart as it should be (generation g + 1), then one
        // under generation g again.
        self.act(Action::Crash(n));
        self.start(n);
        self.act(Action::Crash(n));
        self.slots[n].generation -= 2;
        self.start(n);
    }

    /// Crashes the metadata leader, restarting it `restart_after` later.
    fn crash_leader(&mut self, restart_after: Option<Nanos>) {
        let leader = self.running().into_iter().find(|&i| {
            self.slots[i]
                .node
                .as_ref()
                .is_some_and(|x| x.meta_status().role == RaftRole::Leader)
        });
        if let Some(l) = leader {
            self.m.voter_loss_at = Some(self.now);
            self.act(Action::Crash(l));
            if let Some(after) = restart_after {
                self.at(self.now + after, Action::Start(l));
            }
        }
    }

    /// Crashes `k` running voters at once, the leader among them.
    fn crash_voters(&mut self, k: usize) {
        let voters: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|&i| {
                self.slots[i]
                    .node
                    .as_ref()
                    .is_some_and(|x| !matches!(x.meta_status().role, RaftRole::NonVoter))
            })
            .collect();
        let mut picked: Vec<usize> = voters
            .iter()
            .copied()
            .filter(|&i| {
                self.slots[i]
                    .node
                    .as_ref()
                    .is_some_and(|x| x.meta_status().role == RaftRole::Leader)
            })
            .take(1)
            .collect();
        let mut rest: Vec<usize> = voters.into_iter().filter(|i| !picked.contains(i)).collect();
        while picked.len() < k && !rest.is_empty() {
            let j = self.rng.random_range(0..rest.len());
            picked.push(rest.swap_remove(j));
        }
        self.m.voter_loss_at = Some(self.now);
        for v in picked {
            self.act(Action::Crash(v));
        }
    }

    /// The lost-disk drill (see [`Action::VoterWipeDrill`]).
    fn voter_wipe_drill(&mut self) {
        let role = |w: &World, i: usize| {
            w.slots[i]
                .node
                .as_ref()
                .map_or(RaftRole::NonVoter, |x| x.meta_status().role)
        };
        let running = self.running();
        let Some(leader) = running
            .iter()
            .copied()
            .find(|&i| role(self, i) == RaftRole::Leader)
        else {
            return;
        };
        let followers: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&i| i != leader && role(self, i) == RaftRole::Follower)
            .collect();
        if followers.len() < 2 {
            return;
        }
        let (v, c) = (followers[0], followers[1]);
        let groups: Vec<u8> = (0..self.slots.len()).map(|i| u8::from(i == c)).collect();
        self.act(Action::Partition(Some(groups)));
        let t = self.now;
        self.at(t + 5 * SEC, Action::Crash(leader));
        self.at(t + 5 * SEC, Action::Crash(v));
        self.at(t + 5 * SEC, Action::WipeDisk(v));
        self.at(t + 5 * SEC, Action::Partition(None));
        self.at(t + 5 * SEC, Action::Start(v));
        self.at(t + 15 * SEC, Action::Start(leader));
    }

    /// Crashes a random running node the network model does not impair.
    fn crash_healthy(&mut self) {
        let healthy: Vec<usize> = self
            .running()
            .into_iter()
            .filter(|&n| !self.impaired(n))
            .collect();
        if !healthy.is_empty() {
            self.crash_one_of(&healthy);
            // Detection is measured on the healthy observers: a node
            // that cannot hear (or is cut off) has no evidence, and
            // Lifeguard has it defer its verdicts on purpose. The
            // end-of-run convergence check still covers it.
            let impaired: Vec<bool> = (0..self.slots.len()).map(|o| self.impaired(o)).collect();
            if let Some((_, _, _, observers)) = self.crashes.last_mut() {
                observers.retain(|&o| !impaired[o]);
            }
        }
    }

    pub(super) fn pause_random(&mut self, len: Nanos) {
        let running = self.running();
        if running.len() < 2 {
            return;
        }
        let n = running[self.rng.random_range(0..running.len())];
        let node = self.slots[n].node.as_ref().expect("running");
        let c = node.config();
        let window = node.timing().suspicion_window;
        let verdict = window + c.probe_period * 2 + c.verify_timeout * 2;
        self.m.pause = Some(Paused {
            node: n,
            identity: node.identity().clone(),
            at: self.now,
            len,
            window: window.as_nanos() as Nanos,
            verdict: verdict.as_nanos() as Nanos,
            resumed: None,
            declared_down: 0,
            back_alive: None,
            it_declared_down: 0,
            rejoined: false,
            dropped: 0,
        });
        self.slots[n].paused = true;
        self.at(self.now + len, Action::Resume(n));
    }

    /// Unfreezes `n`: its overdue timers fire first, then what waited in its
    /// receive buffer arrives, in order.
    pub(super) fn resume(&mut self, n: usize) {
        let slot = &mut self.slots[n];
        slot.paused = false;
        slot.resumed_at = Some(self.now);
        slot.held_bytes = 0;
        let held = std::mem::take(&mut slot.held);
        if let Some(p) = &mut self.m.pause
            && p.node == n
        {
            p.resumed = Some(self.now);
        }
        let now = self.now_of(n);
        if let Some(node) = self.slots[n].node.as_mut() {
            node.handle_timeout(now);
        }
        self.after(n);
        for (from, stream, bytes) in held {
            self.deliver(n, from, stream, &bytes);
        }
    }

    /// Whether every running node holds the paused node Alive at the
    /// identity it had when it froze.
    pub(super) fn pause_healed(&self, p: &Paused) -> bool {
        self.running()
            .into_iter()
            .filter(|&i| i != p.node)
            .all(|i| {
                let node = self.slots[i].node.as_ref().expect("running");
                node.member(&p.identity.id)
                    .is_some_and(|v| v.identity == p.identity && v.state == MemberState::Alive)
            })
    }

    /// The `Forge` fault: picks a key some running member wrote, a forger
    /// and a target among the others, and delivers to the target a push-pull
    /// message from the forger carrying a newer value for that key.
    pub(super) fn forge(&mut self) {
        let running = self.running();
        let owned: Vec<(usize, String)> = self
            .checkers
            .delivery
            .keys()
            .filter(|(o, _)| running.contains(o))
            .cloned()
            .collect();
        if running.len() < 3 || owned.is_empty() {
            return;
        }
        let (owner, key) = owned[self.rng.random_range(0..owned.len())].clone();
        let others: Vec<usize> = running.iter().copied().filter(|&i| i != owner).collect();
        let forger = others[self.rng.random_range(0..others.len())];
        let targets: Vec<usize> = others.iter().copied().filter(|&i| i != forger).collect();
        let target = targets[self.rng.random_range(0..targets.len())];
        let (from, owner_id, stamp) = {
            let f = self.slots[forger].node.as_ref().expect("running");
            (
                f.identity().clone(),
                self.slots[owner].id.clone(),
                Hlc(f.hlc().0 + 1),
            )
        };
        let msg = roster::wire::Message::SyncDeltas(roster::wire::SyncDeltas {
            from,
            deltas: vec![roster::node::Delta {
                owner: owner_id.clone(),
                key: key.clone(),
                value: Some(b"forged".to_vec()),
                hlc: stamp,
            }],
            members: Vec::new(),
            state: None,
            hlc: stamp,
        });
        let Ok(bytes) = msg.encode() else {
            return;
        };
        let truth = self.slots[owner]
            .node
            .as_ref()
            .and_then(|o| o.state(&owner_id, &key));
        self.deliver(target, forger, true, &bytes);
        let took_hold = self.slots[target]
            .node
            .as_ref()
            .is_some_and(|t| t.state(&owner_id, &key).as_deref() == Some(b"forged"));
        self.m.forgeries.push(Forgery {
            owner,
            key,
            truth,
            at: self.now,
            took_hold,
            restored: None,
        });
    }

    /// Marks forgeries after which every running node holds the owner's own
    /// value again.
    pub(super) fn check_forgeries(&mut self) {
        let running = self.running();
        for i in 0..self.m.forgeries.len() {
            let f = &self.m.forgeries[i];
            if f.restored.is_some() {
                continue;
            }
            let id = &self.slots[f.owner].id;
            let all = running.iter().all(|&n| {
                self.slots[n]
                    .node
                    .as_ref()
                    .is_some_and(|x| x.state(id, &f.key) == f.truth)
            });
            if all {
                let at = f.at;
                self.m.forgeries[i].restored = Some(self.now - at);
            }
        }
    }
}

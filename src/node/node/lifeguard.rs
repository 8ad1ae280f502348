//! The node's side of roster's Lifeguard layer around foca (its memory and
//! the decisions that read only it are [`Lifeguard`]): what a packet says
//! before foca sees it, suspicions learned by gossip, local health and the
//! final check before a Down verdict, refutations and bringing back members
//! that prove they are alive. Each decision is carried out here on foca,
//! the member listing, the timers and the outgoing queue.

use super::*;

/// The nonce of the notice a node too unhealthy to judge sends a suspect
/// (see `defer_verdict`): a final check's nonce is random, so a notice's
/// answer never passes for a check's.
const NOTICE_NONCE: u64 = 0;

impl Node {
    /// Lifeguard's look at a packet before foca: answers "you are Down"
    /// with a refutation (returns `true`: foca must not see it), brings back
    /// locally Down members that prove a higher incarnation, notices
    /// refuted suspicions and successful probes.
    pub(super) fn lifeguard_prescan(&mut self, p: &swim::Prescan) -> bool {
        let h = &p.header;
        if h.dst == self.identity && h.message == foca::Message::TurnUndead {
            self.answer_you_are_down(&h.src.id);
            return true;
        }
        match h.message {
            foca::Message::Ack(n)
            | foca::Message::ForwardedAck {
                probe_number: n, ..
            } => {
                self.io.probe_acked(n);
            }
            _ => {}
        }
        self.observe(&h.src, u32::from(h.src_incarnation), State::Alive);
        for m in &p.updates {
            self.observe(m.id(), u32::from(m.incarnation()), m.state());
            if m.state() != State::Alive {
                self.lifeguard.gossiped(
                    m.id().clone(),
                    u32::from(m.incarnation()),
                    m.state() == State::Down,
                );
            }
        }
        false
    }

    /// `accuser` holds this node Down ("you are Down"): refute instead of
    /// rejoining.
    fn answer_you_are_down(&mut self, accuser: &NodeId) {
        self.metrics.turn_undead_refuted += 1;
        let (now, window) = (self.io.now, self.timing.suspicion_window);
        if self.lifeguard.accused(accuser, now, window) {
            self.io.health_up();
        }
        // Refuting every message would run the incarnation (16 bits) up by
        // one per message.
        if self.lifeguard.refuted_within(now, self.config.probe_period) {
            self.metrics.refutations_rate_limited += 1;
        } else {
            self.refute_with(self.io.self_incarnation, false);
        }
    }

    /// A claim that `id` is at `incarnation`: resurrects a locally Down
    /// member that has moved past its verdict, and clears a refuted
    /// suspicion in the member view.
    pub(super) fn observe(&mut self, id: &Identity, incarnation: Incarnation, claim: State) {
        let refuted = self.note_incarnation(id, incarnation, claim);
        // Only a claim that the member is Alive past the incarnation it was
        // declared Down at brings it back: a suspicion at a higher
        // incarnation says it refuted once, not that it is alive now (a
        // node that refuted and then crashed would come back as a ghost).
        if claim == State::Alive
            && let Some((down_id, at)) = self.downs.get(&id.id)
            && down_id == id
            && incarnation > *at
        {
            self.downs.remove(&id.id);
            self.metrics.resurrections += 1;
            // foca treats Down as terminal: forget the member so the packet
            // that proved it alive adds it back.
            let _ = self
                .swim
                .handle_timer(Timer::RemoveDown(id.clone()), &mut self.io);
        }
        if refuted {
            self.lifeguard.forget_report(&id.id);
        }
    }

    /// The member view's side of a claim that `id` is at `incarnation`
    /// (with Lifeguard off, the only side): the highest incarnation seen,
    /// and a suspicion the claim refutes cleared (`true`, with its event).
    /// One lookup: this runs for every member of every full view merged.
    pub(super) fn note_incarnation(
        &mut self,
        id: &Identity,
        incarnation: Incarnation,
        claim: State,
    ) -> bool {
        let Some(v) = self.members.get_mut(&id.id) else {
            return false;
        };
        if v.identity != *id {
            return false;
        }
        v.incarnation = v.incarnation.max(incarnation);
        let refuted = claim != State::Down
            && v.state == MemberState::Suspect
            && v.suspect_incarnation.is_some_and(|s| incarnation > s);
        if refuted {
            v.state = MemberState::Alive;
            v.suspect_incarnation = None;
            v.since = self.io.now;
            self.metrics.suspicions_refuted += 1;
            self.events.push_back(Event::MemberRefuted(id.clone()));
        }
        refuted
    }

    /// Refutes a suspicion of this node at `incarnation` (SWIM §4.2): foca
    /// moves to a higher incarnation and gossips it.
    pub(super) fn refute(&mut self, incarnation: Incarnation) {
        self.refute_with(incarnation, true);
    }

    /// [`Self::refute`], raising the health score or not.
    fn refute_with(&mut self, incarnation: Incarnation, raise_health: bool) {
        let before = self.io.self_incarnation;
        let _ = self.swim.apply_many(
            std::iter::once(Member::new(
                self.identity.clone(),
                swim::to_foca(incarnation),
                State::Suspect,
            )),
            true,
            &mut self.io,
        );
        if before <= incarnation {
            self.io.self_incarnation = incarnation.max(before).saturating_add(1);
            self.metrics.self_refutations += 1;
            if raise_health {
                self.io.health_up();
            }
            self.lifeguard.refuted(self.io.now);
            self.events.push_back(Event::Refuted {
                incarnation: self.io.self_incarnation,
            });
        }
    }

    /// Whether nothing at all arrived from any peer since this node began
    /// suspecting `member`, while other members it could have heard exist.
    fn heard_nothing_since_suspecting(&self, member: &Identity) -> bool {
        let Some(v) = self.members.get(&member.id) else {
            return false;
        };
        let others = self
            .members
            .values()
            .filter(|m| m.identity.id != member.id)
            .any(|m| m.state == MemberState::Alive);
        others && self.lifeguard.silent_since(v.since)
    }

    /// Whether `incarnation` refutes this node's suspicion of `member`.
    fn refutes_suspicion(&self, member: &Identity, incarnation: Incarnation) -> bool {
        self.members.get(&member.id).is_some_and(|v| {
            v.identity == *member
                && v.state == MemberState::Suspect
                && v.suspect_incarnation.is_some_and(|s| incarnation > s)
        })
    }

    pub(super) fn still_suspected(&self, member: &Identity, incarnation: Incarnation) -> bool {
        self.members.get(&member.id).is_some_and(|v| {
            v.identity == *member
                && v.state == MemberState::Suspect
                && v.suspect_incarnation == Some(incarnation)
        })
    }

    /// Lifeguard: a node whose own probes fail (local health score above
    /// [`Config::judge_max_health`]) is more likely the problem than the
    /// member it suspects, so it reaches no Down verdict of its own: it
    /// adopts the verdicts of others (see [`Self::adopt_reported_down`]) and
    /// defers the rest until it recovers.
    pub(super) fn too_unhealthy_to_judge(&self) -> bool {
        self.config.lifeguard && self.io.health > self.config.judge_max_health
    }

    /// A node too unhealthy to judge: adopts a Down that another member
    /// declared and gossiped about this suspicion, else puts the verdict off
    /// (never drops it): the suspicion runs again after one scaled probe
    /// period.
    fn defer_verdict(
        &mut self,
        member: Identity,
        incarnation: Incarnation,
        token: foca::TimerToken,
    ) {
        if self.adopt_reported_down(&member) {
            return;
        }
        // No verdict, but the suspect hears of the suspicion (Lifeguard's
        // buddy system): alive, it refutes at once, and the refutation
        // clears the suspicion here. Without it, a suspicion raised while
        // this node's own loss swallowed its gossip outlives the loss: the
        // suspect never learns of it, and this node judges nothing until
        // its health recovers.
        let notice = Verify {
            origin: self.identity.clone(),
            target: member.clone(),
            incarnation,
            nonce: NOTICE_NONCE,
        };
        self.io.send_msg(member.addr, &Message::Verify(notice));
        self.metrics.downs_deferred += 1;
        let wait = self.config.probe_period * self.io.health_multiplier();
        self.rearm_suspicion(wait, member, incarnation, token);
    }

    /// Declares `member` Down on the word of another member that declared
    /// it Down (a gossiped Down) at an incarnation this node has seen no
    /// refutation past. `false` when there is no such report.
    pub(super) fn adopt_reported_down(&mut self, member: &Identity) -> bool {
        let Some(at) = self.lifeguard.reported_down(&member.id) else {
            return false;
        };
        let current = self.members.get(&member.id).is_some_and(|v| {
            v.identity == *member
                && matches!(v.state, MemberState::Alive | MemberState::Suspect)
                && v.incarnation <= at
        });
        if !current {
            self.lifeguard.forget_report(&member.id);
            return false;
        }
        self.metrics.downs_adopted += 1;
        self.io.verdict = Some(swim::Verdict {
            member: member.clone(),
            incarnation: at,
            applied: false,
        });
        let _ = self.swim.apply_many(
            std::iter::once(Member::new(member.clone(), swim::to_foca(at), State::Down)),
            true,
            &mut self.io,
        );
        self.note_verdict();
        true
    }

    /// Runs the suspicion of `member` at `incarnation` again after `wait`.
    fn rearm_suspicion(
        &mut self,
        wait: std::time::Duration,
        member: Identity,
        incarnation: Incarnation,
        token: foca::TimerToken,
    ) {
        self.io.schedule(
            wait,
            TimerKind::Suspect {
                member,
                incarnation,
                token,
            },
        );
    }

    /// foca ignores every timer armed before its token changed (it does so
    /// when it finds itself Down, runs out of members or takes a new
    /// identity), and with them the verdicts on members it still holds
    /// Suspect: those would stay Suspect for good. Once foca runs timers
    /// under a new token, each member listed Suspect gets its suspicion
    /// timer again. O(members), on a token change only.
    pub(super) fn rearm_orphaned_suspicions(&mut self) {
        self.lifeguard.set_token(self.io.token);
        if self.native.is_some() {
            return;
        }
        let suspects: Vec<(Identity, Incarnation)> = self
            .members
            .values()
            .filter(|v| v.state == MemberState::Suspect)
            .map(|v| {
                (
                    v.identity.clone(),
                    v.suspect_incarnation.unwrap_or(v.incarnation),
                )
            })
            .collect();
        let wait = self.timing.suspicion_window;
        let token = self.io.token;
        for (member, incarnation) in suspects {
            let t = if self.config.lifeguard {
                TimerKind::Suspect {
                    member,
                    incarnation,
                    token,
                }
            } else {
                TimerKind::Foca(Timer::ChangeSuspectToDown {
                    member_id: member,
                    incarnation: swim::to_foca(incarnation),
                    token,
                })
            };
            self.io.schedule(wait, t);
        }
    }

    /// Another member suspects (or declared Down) `id` at `incarnation`.
    /// foca only times out suspicions its own probes raised; with Lifeguard
    /// every node confirms a failure itself, so it starts its own suspicion
    /// timer here (SWIM §4.2: a suspected member has the suspicion timeout
    /// to refute).
    ///
    /// `down`: the claim is another member's Down verdict, reached after a
    /// whole suspicion window and an unanswered final check of its own.
    /// That is the strongest confirmation a suspicion can get (Lifeguard's
    /// dynamic suspicion shrinks the window as confirmations arrive), so
    /// this node runs its final check at once instead of a window of its
    /// own. A node too unhealthy to judge adopts the verdict once its own
    /// suspicion of the member has run out.
    pub(super) fn suspect_from_gossip(
        &mut self,
        id: Identity,
        incarnation: Incarnation,
        mut down: bool,
    ) {
        let Some(v) = self.members.get_mut(&id.id) else {
            return;
        };
        let active = matches!(v.state, MemberState::Alive | MemberState::Suspect);
        if v.identity != id || incarnation < v.incarnation || !active {
            return;
        }
        if down {
            // This node's own suspicion of it has run its course.
            let ran_out = v.state == MemberState::Suspect
                && self.io.now >= v.since + self.timing.suspicion_window;
            self.lifeguard.report_down(&id.id, incarnation);
            if self.too_unhealthy_to_judge() {
                // It adopts the verdict once its own suspicion agrees (a
                // stale report about a member it hears from, as after a
                // partition heals, must not take a live member down); until
                // then the suspicion runs as any other.
                if ran_out {
                    self.adopt_reported_down(&id);
                    return;
                }
                down = false;
            }
        }
        let Some(v) = self.members.get_mut(&id.id) else {
            return;
        };
        let newly = v.state == MemberState::Alive;
        if newly {
            v.state = MemberState::Suspect;
            v.since = self.io.now;
            self.metrics.suspicions_raised += 1;
            self.events.push_back(Event::MemberSuspected(id.clone()));
        } else if !down {
            return;
        }
        if v.suspect_incarnation.is_none_or(|s| s < incarnation) {
            v.suspect_incarnation = Some(incarnation);
        }
        let token = self.io.token;
        if down {
            if !self.lifeguard.checking(&id.id) {
                self.start_final_check(id, incarnation, token);
            }
        } else {
            let wait = self.timing.suspicion_window;
            self.io.schedule(
                wait,
                TimerKind::Suspect {
                    member: id,
                    incarnation,
                    token,
                },
            );
        }
    }

    /// foca's suspicion ran out. Lifeguard first makes sure this node is
    /// healthy enough to judge, then asks the suspect directly and through
    /// relays before letting foca declare it Down.
    pub(super) fn on_suspect_timeout(
        &mut self,
        member: Identity,
        incarnation: Incarnation,
        token: foca::TimerToken,
    ) {
        if !self.still_suspected(&member, incarnation) {
            self.settle_stale_suspicion(&member, incarnation);
            return;
        }
        if self.too_unhealthy_to_judge() {
            self.defer_verdict(member, incarnation, token);
            return;
        }
        // A check already running (started by a reported Down) decides.
        if self.lifeguard.checking(&member.id) {
            return;
        }
        self.start_final_check(member, incarnation, token);
    }

    /// Asks the suspect directly and through relays whether it is alive;
    /// [`Self::on_verify_timeout`] reads the outcome.
    fn start_final_check(
        &mut self,
        member: Identity,
        incarnation: Incarnation,
        token: foca::TimerToken,
    ) {
        let nonce: u64 = self.rng.random();
        self.metrics.verifications_started += 1;
        let v = Verify {
            origin: self.identity.clone(),
            target: member.clone(),
            incarnation,
            nonce,
        };
        self.io.send_msg(member.addr, &Message::Verify(v.clone()));
        let relays = self.random_members(self.config.verify_relays, |m| m.id != member.id);
        for r in relays {
            self.io.send_msg(r.addr, &Message::VerifyRelay(v.clone()));
        }
        self.lifeguard.start_check(member.clone(), nonce);
        let wait = self.config.verify_timeout * self.io.health_multiplier();
        self.io.schedule(
            wait,
            TimerKind::VerifyTimeout {
                member,
                incarnation,
                token,
                nonce,
            },
        );
    }

    pub(super) fn on_verify_timeout(
        &mut self,
        member: Identity,
        incarnation: Incarnation,
        token: foca::TimerToken,
        nonce: u64,
    ) {
        let answered = match self.lifeguard.end_check(&member.id, nonce) {
            CheckEnd::Superseded => return,
            CheckEnd::Answered(inc) => Some(inc),
            CheckEnd::Silent => None,
        };
        if answered.is_none() && !self.still_suspected(&member, incarnation) {
            // Refuted meanwhile (seen in gossip rather than in an answer).
            self.settle_stale_suspicion(&member, incarnation);
            return;
        }
        match answered {
            // Refuted: the answer already told foca (see `on_verify_ack`).
            Some(inc) if inc > incarnation => {}
            Some(_) => {
                // Answered without refuting yet: give the refutation time.
                let wait = self.timing.suspicion_window;
                self.rearm_suspicion(wait, member, incarnation, token);
            }
            None if self.too_unhealthy_to_judge() => {
                self.defer_verdict(member, incarnation, token);
            }
            None if self.heard_nothing_since_suspecting(&member) => {
                // Not one message from anyone since the suspicion began:
                // this node cannot hear, so the silence says nothing about
                // the member (Lifeguard: the node is the likelier problem).
                self.io.health_up();
                self.defer_verdict(member, incarnation, token);
            }
            None => self.deliver_down(member, incarnation, token),
        }
    }

    /// A suspicion timer ran out after the suspicion ended (the member
    /// refuted, was replaced or is already Down): nothing goes to foca. If
    /// this node saw the refutation in a packet foca ignored (foca drops the
    /// updates carried by a member it holds Down), foca is told it here, so
    /// it does not keep the member Suspect.
    fn settle_stale_suspicion(&mut self, member: &Identity, incarnation: Incarnation) {
        let Some(v) = self.members.get(&member.id) else {
            return;
        };
        if v.identity == *member && v.state == MemberState::Alive && v.incarnation > incarnation {
            let m = Member::new(member.clone(), swim::to_foca(v.incarnation), State::Alive);
            let _ = self.swim.apply_many(std::iter::once(m), true, &mut self.io);
        }
    }

    pub(super) fn deliver_down(
        &mut self,
        member: Identity,
        incarnation: Incarnation,
        token: foca::TimerToken,
    ) {
        self.fire(TimerKind::Foca(Timer::ChangeSuspectToDown {
            member_id: member,
            incarnation: swim::to_foca(incarnation),
            token,
        }));
    }

    pub(super) fn on_verify(&mut self, v: Verify) {
        if v.target != self.identity {
            return;
        }
        if v.incarnation >= self.io.self_incarnation {
            self.refute(v.incarnation);
        }
        let ack = VerifyAck {
            from: self.identity.clone(),
            incarnation: self.io.self_incarnation,
            nonce: v.nonce,
        };
        self.io.send_msg(v.origin.addr, &Message::VerifyAck(ack));
    }

    pub(super) fn on_verify_ack(&mut self, a: VerifyAck) {
        if self.lifeguard.answer(&a.from, a.nonce, a.incarnation) {
            self.metrics.verifications_answered += 1;
            self.io.health_down();
        } else if a.nonce != NOTICE_NONCE || !self.refutes_suspicion(&a.from, a.incarnation) {
            // Neither the answer to a running check nor one to a deferred
            // verdict's notice (see `defer_verdict`) that carries a
            // refutation.
            return;
        }
        // The answer proves the member alive at its new incarnation; foca
        // clears the suspicion and spreads the news.
        let _ = self.swim.apply_many(
            std::iter::once(Member::new(
                a.from.clone(),
                swim::to_foca(a.incarnation),
                State::Alive,
            )),
            true,
            &mut self.io,
        );
        self.observe(&a.from, a.incarnation, State::Alive);
    }
}

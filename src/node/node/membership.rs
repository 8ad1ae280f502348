//! After every call into the membership engine: joining and going idle,
//! leaves, verdicts and the engine's notifications turned into events.

use super::*;

impl Node {
    /// The first other member became active: the node has joined.
    pub(in crate::node::node) fn became_active(&mut self) {
        if self.joined {
            return;
        }
        self.joined = true;
        self.catch_up_hash = None;
        self.events.push_back(Event::Joined);
        // Gossip alone leaves a few members unknown to a few nodes when many
        // join at once: a few quick push-pulls right after joining close
        // those gaps in seconds instead of one sync interval.
        let wait = self.config.gossip_interval * 2;
        self.io.schedule(wait, TimerKind::CatchUpSync { round: 1 });
    }

    /// No other member is active any more: try the seeds again.
    pub(in crate::node::node) fn became_idle(&mut self) {
        self.joined = false;
        if !self.join_retry_pending && !self.left {
            self.join_retry_pending = true;
            let d = self.config.join_retry_initial;
            self.io.schedule(d, TimerKind::JoinRetry { attempt: 1 });
        }
    }

    pub(in crate::node::node) fn after_swim(&mut self) {
        if let Some((n, dst)) = self.io.ping_sent.take()
            && self.config.coordinates
        {
            self.coord_probe_sent(n, &dst);
        }
        self.reassert_own_keys();
        self.drain_native();
        if self.lifeguard.token_changed(self.io.token) {
            self.rearm_orphaned_suspicions();
        }
        for (id, inc) in std::mem::take(&mut self.io.suspected) {
            self.metrics.suspicions_raised += 1;
            // A suspicion below an incarnation the view has already seen
            // is refuted before it starts.
            if let Some(v) = self.members.get_mut(&id.id)
                && v.identity == id
                && matches!(v.state, MemberState::Alive | MemberState::Suspect)
                && inc >= v.incarnation
            {
                v.state = MemberState::Suspect;
                v.suspect_incarnation = Some(inc);
                v.since = self.io.now;
                self.events.push_back(Event::MemberSuspected(id));
            }
        }
        self.drain_notifications();
        let (events, leaves, parked, queries, event_wait) = {
            let mut s = self.shared.lock();
            // Only when no wait timer is armed: the armed one covers the
            // earliest wait.
            let event_wait = (!self.user_events_pending)
                .then(|| s.user_events.next_expiry(self.config.event_reorder_wait))
                .flatten();
            (
                std::mem::take(&mut s.events),
                std::mem::take(&mut s.pending_leaves),
                !s.parked.is_empty(),
                std::mem::take(&mut s.queries_in),
                event_wait,
            )
        };
        self.on_queries(queries);
        let mut adverts = false;
        for e in &events {
            if let Event::StateChanged {
                key, owner, value, ..
            } = e
                && key == crate::node::meta::ADVERT_KEY
                && *owner != self.identity.id
            {
                adverts = true;
                self.note_advert(owner, value.as_deref());
            }
        }
        self.events.extend(events);
        if adverts {
            self.on_advert_changed();
        }
        if let Some(at) = event_wait
            && !self.user_events_pending
        {
            self.user_events_pending = true;
            let wait = at.saturating_sub(self.io.now);
            self.io.schedule(wait, TimerKind::UserEvents);
        }
        if parked && !self.unpark_pending && !self.left {
            self.unpark_pending = true;
            let wait = self.config.max_drift / 4;
            self.io.schedule(wait, TimerKind::Unpark);
        }
        for l in leaves {
            self.apply_leave(l);
        }
    }

    pub(in crate::node::node) fn apply_leave(&mut self, l: Leave) {
        if l.identity.id == self.identity.id {
            return;
        }
        let held = self
            .member(&l.identity.id)
            .filter(|v| v.identity == l.identity)
            .map(|v| v.state);
        if held == Some(MemberState::Down) {
            // Only the listing changes (see `down_to_left`).
            self.down_to_left(&l.identity);
            return;
        }
        if let Some(e) = self.native.as_mut() {
            e.mark_left(&l.identity, l.incarnation);
            self.drain_native();
            return;
        }
        if matches!(held, Some(MemberState::Alive | MemberState::Suspect)) {
            let _ = self.swim.apply_many(
                std::iter::once(Member::new(
                    l.identity.clone(),
                    swim::to_foca(l.incarnation),
                    State::Down,
                )),
                false,
                &mut self.io,
            );
            // The notification foca just queued is classified as a leave.
            self.drain_notifications();
        }
    }

    /// Records the incarnation of a Down verdict foca just applied, so that
    /// only a claim past it brings the member back (see `observe`).
    pub(in crate::node::node) fn note_verdict(&mut self) {
        if let Some(v) = self.io.verdict.take()
            && v.applied
        {
            self.downs
                .insert(v.member.id.clone(), (v.member, v.incarnation));
        }
    }

    /// Brings the member view up to date with what foca reported.
    pub(in crate::node::node) fn drain_notifications(&mut self) {
        for n in std::mem::take(&mut self.io.notes) {
            self.on_notification(n);
        }
        self.resize();
    }

    /// Recomputes the timing when the number of live members changed, and
    /// hands foca its part (memberlist likewise sizes its suspicion timeout,
    /// retransmit limit and push-pull interval from the current count).
    pub(in crate::node::node) fn resize(&mut self) {
        let live = self.active_members() + 1;
        if live == self.timing.members {
            return;
        }
        let timing = self.config.timing(live);
        let foca_changed = timing.retransmits != self.timing.retransmits
            || timing.suspicion_window != self.timing.suspicion_window;
        self.timing = timing;
        if let Some(e) = self.native.as_mut() {
            e.set_timing(timing);
        } else if foca_changed {
            // Only sizes change, which foca accepts at any time.
            let _ = self.swim.set_config(self.config.foca(&timing));
        }
    }

    /// Whether `id` left at its generation or a later one, as the gossiped
    /// leaves record it.
    pub(in crate::node::node) fn has_left_at(&self, id: &Identity) -> bool {
        self.shared
            .lock()
            .left
            .get(&id.id)
            .is_some_and(|g| *g >= id.generation)
    }

    /// Lists `id` in `state` since `now` in the member map kept beside
    /// foca; the highest incarnation seen of this identity carries over.
    fn list_foca(&mut self, id: &Identity, state: MemberState, now: Duration) {
        let incarnation = self
            .members
            .get(&id.id)
            .filter(|v| v.identity == *id)
            .map_or(0, |v| v.incarnation);
        self.members.insert(
            id.id.clone(),
            MemberView {
                identity: id.clone(),
                incarnation,
                state,
                suspect_incarnation: None,
                since: now,
            },
        );
    }

    pub(in crate::node::node) fn on_notification(&mut self, n: OwnedNotification<Identity>) {
        let now = self.io.now;
        // A member's suspicion ends when it goes up, down or is replaced.
        if let OwnedNotification::MemberUp(id)
        | OwnedNotification::MemberDown(id)
        | OwnedNotification::Rename(id, _) = &n
        {
            self.lifeguard.forget_report(&id.id);
        }
        match n {
            OwnedNotification::MemberUp(id) => {
                self.downs.remove(&id.id);
                self.list_foca(&id, MemberState::Alive, now);
                self.events.push_back(Event::MemberUp(id));
            }
            OwnedNotification::MemberDown(id) => {
                let left = self.has_left_at(&id);
                let state = if left {
                    MemberState::Left
                } else {
                    // The incarnation of this node's own verdict (see
                    // `note_verdict`); 0 for a Down learned otherwise.
                    let at = match self.downs.get(&id.id) {
                        Some((m, inc)) if *m == id => *inc,
                        _ => 0,
                    };
                    self.downs.insert(id.id.clone(), (id.clone(), at));
                    self.metrics.downs_declared += 1;
                    MemberState::Down
                };
                self.list_foca(&id, state, now);
                self.events.push_back(if left {
                    Event::MemberLeft(id)
                } else {
                    Event::MemberDown(id)
                });
            }
            OwnedNotification::Rename(old, new) => {
                self.downs.remove(&old.id);
                if let Some(v) = self.members.get_mut(&new.id) {
                    v.identity = new.clone();
                    v.suspect_incarnation = None;
                    if v.state == MemberState::Suspect {
                        v.state = MemberState::Alive;
                    }
                    if matches!(v.state, MemberState::Alive) {
                        v.since = now;
                        self.events.push_back(Event::MemberUp(new));
                    }
                }
            }
            OwnedNotification::Active => self.became_active(),
            OwnedNotification::Idle => self.became_idle(),
            OwnedNotification::Rejoin(id) => {
                self.metrics.forced_rejoins += 1;
                self.identity = id.clone();
                self.io.self_incarnation = 0;
                self.events.push_back(Event::Rejoined(id));
            }
            OwnedNotification::Defunct => {
                self.events.push_back(Event::Defunct);
            }
            _ => {}
        }
    }
}

//! Push-pull anti-entropy and joining: hashes first, member lists and
//! per-owner state digests only when they differ (with the native engine,
//! right after joining, member lists cut by a summary of what the other
//! side holds: [`SyncAsk`]).

use super::*;

impl Node {
    pub(super) fn members_hash(&self) -> u64 {
        use crate::node::hash::{FNV_OFFSET, fnv1a};
        if let Some(e) = &self.native {
            // Kept up to date on every change: O(1).
            return e.fingerprint();
        }
        // foca's table is in random order: hash an order-independent sum.
        let mut acc: u64 = 0;
        for m in self.swim.iter_membership_state() {
            if swim::is_active(m.state()) {
                let id = m.id();
                let h = fnv1a(FNV_OFFSET, id.id.as_str().as_bytes());
                let h = fnv1a(h, &id.generation.0.to_le_bytes());
                acc = acc.wrapping_add(fnv1a(h, &m.incarnation().to_le_bytes()));
            }
        }
        // Include ourselves so both sides hash the same set.
        let h = fnv1a(FNV_OFFSET, self.identity.id.as_str().as_bytes());
        let h = fnv1a(h, &self.identity.generation.0.to_le_bytes());
        acc.wrapping_add(fnv1a(
            h,
            &swim::to_foca(self.io.self_incarnation).to_le_bytes(),
        ))
    }

    pub(super) fn full_view(&self) -> SyncFull {
        let mut members: Vec<MemberDigest> = match &self.native {
            Some(e) => native_digests(e.members()).collect(),
            None => self
                .swim
                .iter_membership_state()
                .map(|m| MemberDigest {
                    identity: m.id().clone(),
                    incarnation: Incarnation::from(m.incarnation()),
                    state: match m.state() {
                        State::Alive => WireState::Alive,
                        State::Suspect => WireState::Suspect,
                        State::Down => WireState::Down,
                    },
                })
                .collect(),
        };
        members.push(self.own_digest());
        // foca's table is in random order: sort it (one entry per NodeId, so
        // an unstable sort gives the one order). The native engine's rows
        // are in a deterministic order already, and its merge takes any.
        if self.native.is_none() {
            members.sort_unstable_by(|a, b| a.identity.cmp(&b.identity));
        }
        SyncFull {
            members,
            state: self.shared.lock().store.digest(),
        }
    }

    /// What a join carries: this node's state digests, and its member list
    /// while it is alone (itself, and members it holds Down). A node that
    /// knows members already sends them after the answer instead, cut to
    /// what the peer lacks (see [`members_unlike`], and with the native
    /// engine [`Node::members_not_in`]): at scale, a join retry used to
    /// carry thousands of entries the peer held already.
    fn join_view(&self) -> SyncFull {
        if self.active_members() == 0 {
            return self.full_view();
        }
        SyncFull {
            members: Vec::new(),
            state: self.shared.lock().store.digest(),
        }
    }

    pub(super) fn sync_request(&self, join: bool) -> SyncRequest {
        let (state_hash, hlc) = {
            let s = self.shared.lock();
            (s.store.state_hash(), s.hlc.last())
        };
        SyncRequest {
            from: self.identity.clone(),
            incarnation: self.incarnation(),
            engine: self.engine_byte(),
            join,
            members_hash: self.members_hash(),
            state_hash,
            full: join.then(|| self.join_view()),
            hlc,
        }
    }

    pub(super) fn send_join(&mut self) {
        let alone = self.active_members() == 0;
        // A node that knows members already asks with a summary of its
        // list, so the answers leave out what it holds (see
        // `start_catch_up`).
        let req = if alone {
            Message::SyncRequest(self.sync_request(true))
        } else {
            self.sync_ask(true)
        };
        let mut targets: Vec<SocketAddr> = self
            .seeds
            .iter()
            .filter(|s| alone || !self.answered_seeds.contains(s))
            .copied()
            .collect();
        for m in self.random_members(3, |_| true) {
            if !targets.contains(&m.addr) {
                targets.push(m.addr);
            }
        }
        for t in targets {
            self.metrics.join_attempts += 1;
            self.io.send_msg(t, &req);
        }
    }

    pub(super) fn start_sync(&mut self) {
        let Some(peer) = self.sync_peer() else { return };
        self.metrics.syncs_started += 1;
        let req = Message::SyncRequest(self.sync_request(false));
        self.io.send_msg(peer.addr, &req);
    }

    /// Who a push-pull goes to: a random member, and now and then one held
    /// Down (that is how two sides of a healed partition find each other
    /// again).
    fn sync_peer(&mut self) -> Option<Identity> {
        let down = self.held_down();
        if !down.is_empty() && self.rng.random_bool(0.5) {
            let i = self.rng.random_range(0..down.len());
            Some(down[i].clone())
        } else {
            self.random_members(1, |_| true).pop()
        }
    }

    /// One of the push-pull rounds right after joining. With the native
    /// engine its opening carries a summary of this node's member list
    /// ([`ViewFilter`]) and the answer leaves out what this node holds:
    /// while a large cluster forms, most of a peer's list is no news (at
    /// 5,000 nodes four entries in five), and decoding and merging those
    /// entries was most of the work of forming it. A node whose list has
    /// not changed since its last round sends the plain opening instead:
    /// its view has most likely formed, and then the peer's answer is only
    /// that the two hashes agree. So does the `last` round: if the views
    /// still differ, the peer answers with its whole list, which no false
    /// positive of a summary can cut.
    pub(super) fn start_catch_up(&mut self, last: bool) {
        if self.native.is_none() {
            return self.start_sync();
        }
        let hash = self.members_hash();
        let settled = self.catch_up_hash.replace(hash) == Some(hash);
        if settled || last {
            return self.start_sync();
        }
        let Some(peer) = self.sync_peer() else { return };
        self.metrics.syncs_started += 1;
        let ask = self.sync_ask(false);
        self.io.send_msg(peer.addr, &ask);
    }

    /// A push-pull opening with a summary of this node's list ([`SyncAsk`])
    /// with the native engine; the plain opening with foca, and past
    /// [`ViewFilter::MAX_ENTRIES`] members (a summary capped in size would
    /// leave out too many entries by false positives).
    fn sync_ask(&mut self, join: bool) -> Message<'static> {
        let request = self.sync_request(join);
        match &self.native {
            Some(e) if e.members_len() < ViewFilter::MAX_ENTRIES => Message::SyncAsk(SyncAsk {
                request,
                have: self.view_filter(),
            }),
            _ => Message::SyncRequest(request),
        }
    }

    /// A summary of this node's member list, itself included (native
    /// engine; empty with foca, which never sends one).
    fn view_filter(&mut self) -> ViewFilter {
        let salt = self.rng.random::<u64>();
        let Some(e) = &self.native else {
            return ViewFilter::with_capacity(salt, 0);
        };
        let mut f = ViewFilter::with_capacity(salt, e.members_len() + 1);
        for (id, incarnation, state) in wire_rows(e.members()) {
            f.insert(ViewFilter::print(id, incarnation, state));
        }
        let own = self.own_digest();
        f.insert(ViewFilter::print(&own.identity, own.incarnation, own.state));
        f
    }

    /// This node's member list cut by a peer's summary: the entries `have`
    /// does not hold, and every Suspect entry (each counts as a
    /// confirmation of the suspicion).
    ///
    /// The entry about the asker itself is kept too unless it holds the
    /// asker Alive at `asker_incarnation` or later: a false positive must
    /// not hide from a member that it is held Down (it would not refute).
    fn view_cut(
        &self,
        have: &ViewFilter,
        asker: &NodeId,
        asker_incarnation: Incarnation,
    ) -> SyncFull {
        if self.native.is_none() {
            return self.full_view();
        }
        SyncFull {
            members: self.members_where(|id, incarnation, state| {
                let about_asker = id.id == *asker
                    && !(state == WireState::Alive && incarnation >= asker_incarnation);
                state == WireState::Suspect
                    || about_asker
                    || !have.contains(ViewFilter::print(id, incarnation, state))
            }),
            state: self.shared.lock().store.digest(),
        }
    }

    /// The entries of this node's member list that a peer's summary does
    /// not hold (sent back after merging the peer's cut list).
    fn members_not_in(&self, have: &ViewFilter) -> Vec<MemberDigest> {
        self.members_where(|id, incarnation, state| {
            !have.contains(ViewFilter::print(id, incarnation, state))
        })
    }

    /// The entries of this node's member list, itself included, that
    /// `keep` keeps (native engine; none with foca).
    fn members_where(
        &self,
        keep: impl Fn(&Identity, Incarnation, WireState) -> bool,
    ) -> Vec<MemberDigest> {
        let Some(e) = &self.native else {
            return Vec::new();
        };
        let mut out: Vec<MemberDigest> = wire_rows(e.members())
            .filter(|&(id, incarnation, state)| keep(id, incarnation, state))
            .map(|(id, incarnation, state)| MemberDigest {
                identity: id.clone(),
                incarnation,
                state,
            })
            .collect();
        let own = self.own_digest();
        if keep(&own.identity, own.incarnation, own.state) {
            out.push(own);
        }
        out
    }

    /// Sends a push-pull opening to one random member held Down. If it is
    /// alive, the exchange tells it where it is held Down (it refutes) and
    /// brings it back here once it proves a higher incarnation.
    pub(super) fn reach_for_the_down(&mut self) {
        let down = self.held_down();
        if down.is_empty() {
            return;
        }
        let addr = down[self.rng.random_range(0..down.len())].addr;
        self.metrics.reconnect_attempts += 1;
        let req = Message::SyncRequest(self.sync_request(false));
        self.io.send_msg(addr, &req);
    }

    /// Members this node holds Down, by NodeId (the random draws over
    /// them depend on the order).
    fn held_down(&self) -> Vec<Identity> {
        let mut down: Vec<Identity> = self
            .listing()
            .listed()
            .filter(|(_, state, _)| *state == MemberState::Down)
            .map(|(identity, _, _)| identity.clone())
            .collect();
        down.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        down
    }

    /// This node's engine as push-pull names it.
    fn engine_byte(&self) -> u8 {
        match self.config.engine {
            EngineKind::Foca => wire::ENGINE_FOCA,
            EngineKind::Native => wire::ENGINE_NATIVE,
        }
    }

    /// Whether a push-pull from a node running `engine` is refused (the
    /// other engine: a mixed cluster must not form).
    fn other_engine(&mut self, engine: u8) -> bool {
        let other = engine != self.engine_byte();
        if other {
            self.metrics.engine_mismatch_dropped += 1;
        }
        other
    }

    pub(super) fn on_sync_request(&mut self, from: SocketAddr, r: SyncRequest) {
        self.answer_sync(from, r, None);
    }

    /// A push-pull opening with a summary of the sender's list: answered
    /// with this node's list cut by it, and this node's own summary.
    pub(super) fn on_sync_ask(&mut self, from: SocketAddr, a: SyncAsk) {
        if !a.have.is_valid() {
            self.metrics.malformed_dropped += 1;
            return;
        }
        self.answer_sync(from, a.request, Some(&a.have));
    }

    fn answer_sync(&mut self, from: SocketAddr, r: SyncRequest, have: Option<&ViewFilter>) {
        if r.from.id == self.identity.id || self.other_engine(r.engine) {
            return;
        }
        self.introduce(&r.from, r.incarnation, r.join);
        let mine_hash = self.members_hash();
        let state_hash = self.shared.lock().store.state_hash();
        let deltas = match &r.full {
            Some(full) => {
                self.merge_members(&full.members);
                self.shared.lock().store.deltas_missing_from(&full.state)
            }
            None => Vec::new(),
        };
        let in_sync = !r.join
            && r.full.is_none()
            && r.members_hash == mine_hash
            && r.state_hash == state_hash;
        if in_sync {
            self.metrics.syncs_in_sync += 1;
        }
        let full = match (in_sync, have) {
            (true, _) => None,
            (false, Some(have)) => Some(self.view_cut(have, &r.from.id, r.incarnation)),
            (false, None) => Some(self.full_view()),
        };
        let reply = SyncReply {
            from: self.identity.clone(),
            incarnation: self.incarnation(),
            engine: self.engine_byte(),
            full,
            deltas,
            hlc: self.shared.lock().hlc.last(),
        };
        // Reply to the address the request came from: the requester may not
        // be in the member table yet.
        let msg = match have {
            None => Message::SyncReply(reply),
            Some(_) => {
                let have = reply.full.is_some().then(|| self.view_filter());
                Message::SyncAnswer(SyncAnswer { reply, have })
            }
        };
        self.io.send_msg(from, &msg);
    }

    /// The answer to this node's [`SyncAsk`]: its list is cut by this
    /// node's summary, so what goes back is what the peer's summary lacks.
    pub(super) fn on_sync_answer(&mut self, from: SocketAddr, a: SyncAnswer) {
        if a.have.as_ref().is_some_and(|h| !h.is_valid()) {
            self.metrics.malformed_dropped += 1;
            return;
        }
        self.take_reply(from, a.reply, Some(a.have.as_ref()));
    }

    pub(super) fn on_sync_reply(&mut self, from: SocketAddr, r: SyncReply) {
        self.take_reply(from, r, None);
    }

    /// A push-pull answer. `cut` is `Some` for the answer to a
    /// [`SyncAsk`], holding the peer's summary if it sent one.
    fn take_reply(&mut self, from: SocketAddr, r: SyncReply, cut: Option<Option<&ViewFilter>>) {
        if r.from.id == self.identity.id || self.other_engine(r.engine) {
            return;
        }
        if self.seeds.contains(&from) && !self.answered_seeds.contains(&from) {
            self.answered_seeds.push(from);
        }
        self.introduce(&r.from, r.incarnation, false);
        let spread = self.joined;
        self.merge_deltas(&r.deltas, spread, Some(&r.from.id));
        self.shared.lock().synced = true;
        if let Some(full) = r.full {
            let me_held = self.merge_members(&full.members);
            let (deltas, state) = {
                let s = self.shared.lock();
                let mine = s.store.digest();
                // Ask for the owners where the two sides differ.
                let want = (mine != full.state).then_some(mine);
                (s.store.deltas_missing_from(&full.state), want)
            };
            let msg = SyncDeltas {
                from: self.identity.clone(),
                deltas,
                members: match cut {
                    None => self.members_unlike_merged(&full.members, me_held),
                    Some(Some(have)) => self.members_not_in(have),
                    Some(None) => Vec::new(),
                },
                state,
                hlc: self.shared.lock().hlc.last(),
            };
            self.io.send_msg(r.from.addr, &Message::SyncDeltas(msg));
        }
    }

    pub(super) fn on_sync_deltas(&mut self, d: SyncDeltas) {
        if d.from.id == self.identity.id {
            return;
        }
        self.merge_members(&d.members);
        self.merge_deltas(&d.deltas, true, Some(&d.from.id));
        if let Some(theirs) = d.state {
            let deltas = self.shared.lock().store.deltas_missing_from(&theirs);
            if !deltas.is_empty() {
                let msg = SyncDeltas {
                    from: self.identity.clone(),
                    deltas,
                    members: Vec::new(),
                    state: None,
                    hlc: self.shared.lock().hlc.last(),
                };
                self.io.send_msg(d.from.addr, &Message::SyncDeltas(msg));
            }
        }
    }

    /// A member that contacted us directly is alive at `incarnation`.
    pub(super) fn introduce(&mut self, who: &Identity, incarnation: Incarnation, broadcast: bool) {
        if let Some(e) = self.native.as_mut() {
            use crate::node::engine::packet::WireState as W;
            e.merge(
                self.io.now,
                [(who.clone(), incarnation, W::Alive)],
                broadcast,
            );
            self.drain_native();
            return;
        }
        self.observe(who, incarnation, State::Alive);
        let _ = self.swim.apply_many(
            std::iter::once(Member::new(
                who.clone(),
                swim::to_foca(incarnation),
                State::Alive,
            )),
            broadcast,
            &mut self.io,
        );
    }

    /// Merges a remote member list. A remote `Down` is a suspicion here
    /// (this node confirms failures itself); a claim about this node that it
    /// is not alive is refuted. Returns whether the list holds this node as
    /// it is now (native engine; `false` with foca), for
    /// [`Node::members_unlike_merged`].
    pub(super) fn merge_members(&mut self, list: &[MemberDigest]) -> bool {
        if let Some(e) = self.native.as_mut() {
            use crate::node::engine::packet::WireState as W;
            let claims = list.iter().map(|m| {
                let state = match m.state {
                    WireState::Alive => W::Alive,
                    WireState::Suspect => W::Suspect,
                    WireState::Down => W::Down,
                };
                (&m.identity, m.incarnation, state)
            });
            let me_held = e.merge_marked(self.io.now, claims);
            self.drain_native();
            return me_held;
        }
        self.merge_members_foca(list);
        false
    }

    /// Right after [`Node::merge_members`] of `theirs` (which returned
    /// `me_held`): the entries of this node's full view that `theirs` does
    /// not hold exactly so (see [`members_unlike`]). With the native engine
    /// the merge marked the rows the peer holds alike, so this is one pass
    /// over the rows, with no lookups and no copy of the whole view.
    fn members_unlike_merged(&self, theirs: &[MemberDigest], me_held: bool) -> Vec<MemberDigest> {
        let Some(e) = &self.native else {
            return members_unlike(self.full_view().members, theirs);
        };
        let mut out: Vec<MemberDigest> = native_digests(e.unlike()).collect();
        if !me_held {
            out.push(self.own_digest());
        }
        out
    }

    /// This node's own entry in a member list.
    fn own_digest(&self) -> MemberDigest {
        MemberDigest {
            identity: self.identity.clone(),
            incarnation: self.incarnation(),
            state: WireState::Alive,
        }
    }

    /// [`Node::merge_members`] on the foca engine.
    fn merge_members_foca(&mut self, list: &[MemberDigest]) {
        // foca's member table is searched linearly per update: index it once
        // (a vector sorted by NodeId, one entry each, searched by halves) and
        // hand foca only what would change it, so merging a full view costs
        // O(n log n) instead of O(n^2).
        let mut known: Vec<(&NodeId, (&Identity, Incarnation, State))> = self
            .swim
            .iter_membership_state()
            .map(|m| (&m.id().id, (m.id(), u32::from(m.incarnation()), m.state())))
            .collect();
        known.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut updates = Vec::new();
        let mut refute_at = None;
        let mut observed = Vec::new();
        let mut suspects = Vec::new();
        for m in list {
            if m.identity.id == self.identity.id {
                if m.identity == self.identity
                    && m.state != WireState::Alive
                    && m.incarnation >= self.io.self_incarnation
                {
                    refute_at = Some(m.incarnation);
                }
                continue;
            }
            let state = self.foca_claim(m.state);
            let found = known
                .binary_search_by(|(k, _)| (*k).cmp(&m.identity.id))
                .ok()
                .map(|i| &known[i].1);
            let news = match found {
                None => true,
                Some((id, inc, st)) => {
                    if **id != m.identity {
                        true
                    } else {
                        observed.push((m.identity.clone(), m.incarnation, state));
                        news_to_foca(*st, *inc, state, m.incarnation)
                    }
                }
            };
            // A Down read as a suspicion is kept as a report even when it
            // is no news to foca: a node too unhealthy to judge adopts it.
            let down = m.state == WireState::Down;
            if state == State::Suspect && (news || down) {
                suspects.push((m.identity.clone(), m.incarnation, down));
            }
            if news {
                updates.push(Member::new(
                    m.identity.clone(),
                    swim::to_foca(m.incarnation),
                    state,
                ));
            }
        }
        drop(known);
        if let Some(inc) = refute_at {
            self.refute(inc);
        }
        for (id, inc, claim) in observed {
            self.observe(&id, inc, claim);
        }
        if !updates.is_empty() {
            let _ = self
                .swim
                .apply_many(updates.into_iter(), false, &mut self.io);
        }
        self.drain_notifications();
        if self.config.lifeguard {
            for (id, inc, down) in suspects {
                self.suspect_from_gossip(id, inc, down);
            }
        }
    }

    /// The state foca is given for a gossiped member `state`: with
    /// Lifeguard a Down is read as a suspicion, which the final check
    /// settles.
    fn foca_claim(&self, state: WireState) -> State {
        match state {
            WireState::Alive => State::Alive,
            WireState::Suspect => State::Suspect,
            WireState::Down if self.config.lifeguard => State::Suspect,
            WireState::Down => State::Down,
        }
    }

    /// Merges deltas a push-pull peer (`from`) sent, spreading the new ones
    /// when `spread`.
    pub(super) fn merge_deltas(&mut self, deltas: &[Delta], spread: bool, from: Option<&NodeId>) {
        if deltas.is_empty() {
            return;
        }
        // The engine's handler, which merges a spread delta, does not learn
        // the peer: it reads it from here.
        self.shared.lock().relay = from.cloned();
        for d in deltas {
            if !spread {
                self.shared.lock().merge_remote(d, from);
                continue;
            }
            if !self.shared.lock().check_drift(d) {
                continue;
            }
            // Through the engine's backlog, so news learned by push-pull
            // spreads like a fresh write (the handler merges it).
            match swim::encode_item(&Item::Delta(d.clone())) {
                Some(bytes) if self.add_item(&bytes, None) => {}
                _ => {
                    self.shared.lock().merge(d, from);
                }
            }
        }
        self.shared.lock().relay = None;
    }
}

/// The native engine's members as a push-pull list carries them. Left
/// members stay out: Left is terminal, nobody needs news of it.
fn native_digests<'a>(
    rows: impl Iterator<Item = (&'a Identity, Incarnation, crate::node::engine::table::State)>,
) -> impl Iterator<Item = MemberDigest> {
    wire_rows(rows).map(|(id, incarnation, state)| MemberDigest {
        identity: id.clone(),
        incarnation,
        state,
    })
}

/// The native engine's rows as a member list holds them: Left ones left
/// out (a graceful leave spreads by itself), nothing copied.
fn wire_rows<'a>(
    rows: impl Iterator<Item = (&'a Identity, Incarnation, crate::node::engine::table::State)>,
) -> impl Iterator<Item = (&'a Identity, Incarnation, WireState)> {
    use crate::node::engine::table::State as Native;
    rows.filter_map(|(id, incarnation, st)| {
        let state = match st {
            Native::Alive => WireState::Alive,
            Native::Suspect => WireState::Suspect,
            Native::Down => WireState::Down,
            Native::Left => return None,
        };
        Some((id, incarnation, state))
    })
}

/// The entries of `mine` that `theirs` (a peer's full view) does not hold
/// exactly so: what the peer lacks or holds otherwise. The rest would be
/// no news to it, and at scale they are nearly all of a view (a joining
/// node's answer to a seed used to carry the seed's whole list back).
/// O(n log n).
fn members_unlike(mine: Vec<MemberDigest>, theirs: &[MemberDigest]) -> Vec<MemberDigest> {
    let mut index: Vec<&MemberDigest> = theirs.iter().collect();
    index.sort_unstable_by(|a, b| a.identity.id.cmp(&b.identity.id));
    mine.into_iter()
        .filter(|m| {
            index
                .binary_search_by(|t| t.identity.id.cmp(&m.identity.id))
                .map_or(true, |i| index[i] != m)
        })
        .collect()
}

/// Whether foca, holding a member's identity in `held` at `held_inc`,
/// changes on hearing `claim` at `inc` about the same identity.
fn news_to_foca(held: State, held_inc: Incarnation, claim: State, inc: Incarnation) -> bool {
    match (held, claim) {
        (State::Down, _) => inc > held_inc,
        (_, State::Down) => true,
        (State::Alive, State::Suspect) => inc >= held_inc,
        _ => inc > held_inc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::identity::Generation;

    fn digest(name: &str, generation: u64, incarnation: u32, state: WireState) -> MemberDigest {
        let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        MemberDigest {
            identity: Identity::new(NodeId::new(name).unwrap(), addr, Generation(generation)),
            incarnation,
            state,
        }
    }

    #[test]
    fn a_peer_is_sent_only_the_members_it_lacks_or_holds_otherwise() {
        use WireState::{Alive, Down, Suspect};
        let mine = vec![
            digest("same", 1, 3, Alive),
            digest("missing", 1, 0, Alive),
            digest("newer-incarnation", 1, 5, Alive),
            digest("other-state", 1, 2, Down),
            digest("new-generation", 2, 0, Alive),
            digest("a-long-name-that-is-hashed-not-packed", 1, 1, Suspect),
        ];
        let theirs = vec![
            digest("new-generation", 1, 9, Alive),
            digest("other-state", 1, 2, Alive),
            digest("a-long-name-that-is-hashed-not-packed", 1, 1, Suspect),
            digest("newer-incarnation", 1, 4, Alive),
            digest("same", 1, 3, Alive),
            digest("only-theirs", 1, 0, Alive),
        ];
        let names: Vec<String> = members_unlike(mine, &theirs)
            .iter()
            .map(|m| m.identity.id.as_str().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "missing",
                "newer-incarnation",
                "other-state",
                "new-generation"
            ]
        );
        // Nothing is left out against an empty view, and nothing is sent
        // to a peer that holds everything alike.
        let all = vec![digest("x", 1, 0, Alive), digest("y", 1, 0, Down)];
        assert_eq!(members_unlike(all.clone(), &[]), all);
        assert!(members_unlike(all.clone(), &all).is_empty());
    }
}

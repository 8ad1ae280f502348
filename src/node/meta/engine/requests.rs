//! Client requests: submitted by this node, forwarded to a voter, served by
//! one, answered or retried.

use super::*;

impl MetaCore {
    /// Starts a metadata request; its result comes out of
    /// [`Node::poll_meta_result`] with the returned number.
    pub(crate) fn meta_request(&mut self, h: &mut Host<'_>, op: MetaOp, mode: ReadMode) -> u64 {
        self.submit_meta(h, op, mode, false)
    }

    /// Revokes (or, with `revoke` false, reinstates) the certificate of
    /// node `id` cluster-wide: a metadata write under [`REVOKED_PREFIX`],
    /// which clients cannot make directly. Its result comes out of
    /// [`Node::poll_meta_result`] with the returned number.
    ///
    /// [`REVOKED_PREFIX`]: crate::node::meta::REVOKED_PREFIX
    pub(crate) fn revoke_certificate(
        &mut self,
        h: &mut Host<'_>,
        id: &NodeId,
        revoke: bool,
    ) -> u64 {
        let key = format!("{}{id}", crate::node::meta::REVOKED_PREFIX);
        let op = if revoke {
            MetaOp::Put {
                key,
                value: b"revoked".to_vec(),
            }
        } else {
            MetaOp::Delete { key }
        };
        self.submit_meta(h, op, ReadMode::Linearizable, true)
    }

    /// Asks the leader to remove the dead voter `id` from the metadata
    /// voters by hand (as `consul operator raft remove-peer` does): a
    /// metadata write under [`REMOVE_VOTER_PREFIX`] naming the member's
    /// generation (any generation when this node does not list it). Once
    /// gossip holds that generation Down or Left, the
    /// leader replaces the voter, or removes it even when no member can
    /// take its place (the voters then shrink below their target; the last
    /// voter is never removed). A live voter is refused: its removal would
    /// be undone as soon as the leader added it back. The result (the
    /// write's log index) comes out of [`Node::poll_meta_result`] with the
    /// returned number.
    ///
    /// [`REMOVE_VOTER_PREFIX`]: crate::node::meta::REMOVE_VOTER_PREFIX
    pub(crate) fn remove_voter(&mut self, h: &mut Host<'_>, id: &NodeId) -> u64 {
        let voters = self.machine().voter_names();
        let refused = if self.meta_cluster(h).is_none() {
            Some(self.no_cluster(h))
        } else if !voters.contains(id) {
            let list: Vec<&str> = voters.iter().map(NodeId::as_str).collect();
            Some(MetaError::Invalid(format!(
                "{id} is not a metadata voter (voters: {})",
                if list.is_empty() {
                    "none known".to_owned()
                } else {
                    list.join(", ")
                }
            )))
        } else if *id == h.identity.id {
            Some(MetaError::Invalid(format!(
                "{id} is this node and it is alive; ask another member to remove it once it is down"
            )))
        } else {
            match h.members.member(id).map(|m| m.state) {
                Some(s @ (MemberState::Alive | MemberState::Suspect)) => {
                    Some(MetaError::Invalid(format!(
                        "{id} is {s:?} here; only a voter that is down (or left) is removed by hand, and the leader already replaces a dead voter when another member can take its place"
                    )))
                }
                _ => None,
            }
        };
        if let Some(e) = refused {
            let req = self.next_req;
            self.next_req += 1;
            self.complete(req, Err(e));
            return req;
        }
        // The generation this node holds it at; none (any generation) when
        // it does not list the member (it joined after the voter died, or
        // already forgot it).
        let value = h
            .members
            .member(id)
            .map(|m| m.identity.generation.0.to_string().into_bytes())
            .unwrap_or_default();
        let op = MetaOp::Put {
            key: format!("{}{id}", crate::node::meta::REMOVE_VOTER_PREFIX),
            value,
        };
        self.submit_meta(h, op, ReadMode::Linearizable, true)
    }

    /// Whether an operator asked for the removal of voter `id` as it is now
    /// (the request named no generation, or the one gossip holds, or gossip
    /// no longer lists the member).
    pub(super) fn removal_asked(&self, h: &View<'_>, id: &NodeId) -> bool {
        let key = format!("{}{id}", crate::node::meta::REMOVE_VOTER_PREFIX);
        let Some(v) = self.machine().kv.get(&key) else {
            return false;
        };
        if v.is_empty() {
            return true;
        }
        let asked = std::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<u64>().ok());
        match h.members.member(id) {
            None => true,
            Some(m) => asked == Some(m.identity.generation.0),
        }
    }

    /// NodeIds whose certificates are revoked, in this node's copy of the
    /// metadata.
    pub(crate) fn revoked(&self) -> Vec<NodeId> {
        let prefix = crate::node::meta::REVOKED_PREFIX;
        self.machine()
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, _)| NodeId::new(&k[prefix.len()..]).ok())
            .collect()
    }

    pub(super) fn submit_meta(
        &mut self,
        h: &mut Host<'_>,
        op: MetaOp,
        mode: ReadMode,
        system: bool,
    ) -> u64 {
        let id = self.next_req;
        self.next_req += 1;
        if h.left {
            self.complete(id, Err(MetaError::Stopped));
            return id;
        }
        if self.requests.len() >= MAX_IN_FLIGHT {
            self.complete(id, Err(MetaError::Busy(MAX_IN_FLIGHT)));
            return id;
        }
        if let Err(e) = self.machine().validate(&op, &self.cfg.limits) {
            self.complete(id, Err(e));
            return id;
        }
        if !system
            && !op.is_read()
            && op
                .key()
                .starts_with(crate::node::meta::RESERVED_META_PREFIX)
        {
            self.complete(id, Err(MetaError::Reserved(op.key().to_owned())));
            return id;
        }
        if mode == ReadMode::Stale && op.is_read() {
            let r = if self.meta_cluster(h).is_some() {
                Ok(self.machine().read(&op))
            } else {
                Err(self.no_cluster(h))
            };
            self.complete(id, r);
            return id;
        }
        let deadline = h.io.now + self.cfg.request_timeout;
        self.requests.insert(
            id,
            Pending {
                op,
                mode,
                deadline,
                retry_at: None,
                last_error: None,
            },
        );
        self.dispatch(h, id);
        h.after_swim = true;
        id
    }

    /// Next finished request: its number and outcome.
    pub(crate) fn poll_meta_result(&mut self) -> Option<(u64, Result<MetaReply, MetaError>)> {
        self.results.pop_front()
    }

    pub(super) fn complete(&mut self, id: u64, r: Result<MetaReply, MetaError>) {
        if r.is_err() {
            self.counters.failed += 1;
        }
        self.results.push_back((id, r));
    }

    /// Why there is no metadata cluster yet, with the bootstrap's progress
    /// (O(members): only on a request's error path).
    pub(super) fn no_cluster(&self, h: &View<'_>) -> MetaError {
        let seen = 1 + h
            .members
            .views()
            .filter(|m| m.state == MemberState::Alive && self.eligible(h, &m.identity.id))
            .count();
        MetaError::NoCluster {
            seen,
            expect: self.cfg.bootstrap_expect.max(1),
        }
    }

    pub(super) fn retry_later(&mut self, h: &mut Host<'_>, id: u64, e: MetaError) {
        let now = h.io.now;
        let wait = Duration::from_millis(h.rng.random_range(100..300));
        if let Some(p) = self.requests.get_mut(&id) {
            p.last_error = Some(e);
            p.retry_at = Some(now + wait);
        }
    }

    pub(super) fn dispatch(&mut self, h: &mut Host<'_>, id: u64) {
        let Some(p) = self.requests.get_mut(&id) else {
            return;
        };
        p.retry_at = None;
        let (op, mode) = (p.op.clone(), p.mode);
        let op_is_read = op.is_read();
        let me = h.identity.clone();
        if self.raw.is_some() {
            match self.serve(h, me, id, op, mode) {
                Err(e) => self.retry_later(h, id, e),
                // Proposed (or asked of the leader): it now succeeds, fails
                // or times out, and is not retried.
                Ok(()) => {
                    if let Some(p) = self.requests.get_mut(&id) {
                        p.last_error = None;
                    }
                }
            }
            return;
        }
        match self.pick_voter(h) {
            Some((_, addr)) => {
                h.io.send_msg(
                    addr,
                    &Message::MetaRequest(MetaRequest {
                        from: me,
                        req: id,
                        op,
                        mode,
                    }),
                );
                // A read is retried elsewhere if this voter does not answer
                // in half the timeout; a write is not (it may have been
                // proposed): it succeeds, fails, or times out.
                let is_read = op_is_read;
                if let Some(p) = self.requests.get_mut(&id) {
                    p.last_error = None;
                    if is_read {
                        p.retry_at = Some(h.io.now + self.cfg.request_timeout / 2);
                    }
                }
            }
            None if self.meta_cluster(h).is_some() => {
                self.retry_later(h, id, MetaError::NoLeader("no live voter known".into()));
            }
            None => {
                let e = self.no_cluster(h);
                self.retry_later(h, id, e);
            }
        }
    }

    /// The advertised leader if alive, else a random live voter.
    pub(super) fn pick_voter(
        &mut self,
        h: &mut Host<'_>,
    ) -> Option<(NodeId, std::net::SocketAddr)> {
        let adverts = self.adverts(h);
        let cluster = self.meta_cluster(h)?;
        let alive = |n: &Members<'_>, id: &NodeId| {
            n.member(id)
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.identity.addr)
        };
        let newest = adverts
            .iter()
            .filter(|(_, a)| a.cluster == cluster && a.voter)
            .max_by_key(|(_, a)| a.term)
            .and_then(|(_, a)| a.leader.clone());
        if let Some(l) = newest
            && let Some(addr) = alive(&h.members, &l)
        {
            return Some((l, addr));
        }
        let live: Vec<(NodeId, std::net::SocketAddr)> = adverts
            .iter()
            .filter(|(_, a)| a.cluster == cluster && a.voter)
            .filter_map(|(id, _)| alive(&h.members, id).map(|a| (id.clone(), a)))
            .collect();
        if live.is_empty() {
            return None;
        }
        let i = h.rng.random_range(0..live.len());
        Some(live[i].clone())
    }

    /// Serves a request on this voter: a proposal or a ReadIndex.
    pub(super) fn serve(
        &mut self,
        h: &mut Host<'_>,
        origin: Identity,
        req: u64,
        op: MetaOp,
        mode: ReadMode,
    ) -> Result<(), MetaError> {
        let Some(raw) = self.raw.as_mut() else {
            return Err(MetaError::NoLeader("not a voter".into()));
        };
        if raw.raft.leader_id == raft::INVALID_ID {
            return Err(MetaError::NoLeader(
                "the voters have no leader (no quorum?)".into(),
            ));
        }
        raw.store().machine.validate(&op, &self.cfg.limits)?;
        let token = self.next_token;
        self.next_token += 1;
        let ctx = postcard::to_stdvec(&ProposalCtx {
            proposer: h.identity.id.clone(),
            token,
        })
        .unwrap_or_default();
        if op.is_read() && mode == ReadMode::Linearizable {
            raw.read_index(ctx);
        } else {
            let data = postcard::to_stdvec(&LogEntry::Op(op.clone())).unwrap_or_default();
            if raw.propose(ctx, data).is_err() {
                return Err(MetaError::NoLeader("proposal dropped: no leader".into()));
            }
            self.counters.proposals += 1;
        }
        let deadline = h.io.now + self.cfg.request_timeout;
        self.serving.insert(
            token,
            Serving {
                origin,
                req,
                op,
                deadline,
                read_at: None,
            },
        );
        self.after_raft(h);
        Ok(())
    }

    pub(super) fn finish_serving(
        &mut self,
        h: &mut Host<'_>,
        s: Serving,
        r: Result<MetaReply, MetaError>,
    ) {
        if s.origin.id == h.identity.id {
            if r.as_ref().is_err_and(MetaError::retryable) {
                self.retry_later(h, s.req, r.err().unwrap_or(MetaError::Stopped));
            } else if self.requests.remove(&s.req).is_some() {
                self.complete(s.req, r);
            }
        } else {
            let from = h.identity.clone();
            h.io.send_msg(
                s.origin.addr,
                &Message::MetaResponse(MetaResponse {
                    from,
                    req: s.req,
                    result: r,
                }),
            );
        }
    }

    pub(crate) fn on_meta_request(&mut self, h: &mut Host<'_>, m: MetaRequest) {
        let origin = m.from.clone();
        if let Err(e) = self.serve(h, m.from, m.req, m.op, m.mode) {
            let from = h.identity.clone();
            h.io.send_msg(
                origin.addr,
                &Message::MetaResponse(MetaResponse {
                    from,
                    req: m.req,
                    result: Err(e),
                }),
            );
        }
    }

    pub(crate) fn on_meta_response(&mut self, h: &mut Host<'_>, m: MetaResponse) {
        if !self.requests.contains_key(&m.req) {
            return;
        }
        match m.result {
            Err(e) if e.retryable() => self.retry_later(h, m.req, e),
            r => {
                self.requests.remove(&m.req);
                self.complete(m.req, r);
            }
        }
    }
}

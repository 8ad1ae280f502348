//! The node's side of the metadata engine ([`MetaCore`], in
//! `node/meta/engine/`): the node owns one engine and hands it each input
//! (a message, a tick, a client request) with a [`Host`] lent from the
//! node's other parts, then carries out what the call left for it.

use super::Node;
use crate::node::Members;
use crate::node::Now;
use crate::node::identity::NodeId;
use crate::node::meta::engine::{Host, MetaCore, MetaCounters, View};
use crate::node::meta::machine::Machine;
use crate::node::meta::placement::{Role, Table};
use crate::node::meta::{ADVERT_KEY, MetaError, MetaOp, MetaReply, MetaStatus, ReadMode};
use crate::node::wire::Message;

impl Node {
    /// The engine and what it works with, borrowed from the node's other
    /// parts.
    fn meta_parts(&mut self) -> (&mut MetaCore, Host<'_>) {
        let view = View {
            identity: &self.identity,
            shared: &self.shared,
            members: Members {
                native: self.native.as_deref(),
                members: &self.members,
            },
            left: self.left,
            joined: self.joined,
            seeds: &self.seeds,
            answered_seeds: &self.answered_seeds,
            max_value_bytes: self.config.state_limits.max_value_bytes.get(),
        };
        let host = Host {
            view,
            io: &mut self.io,
            rng: &mut self.rng,
            events: &mut self.events,
            advert: None,
            after_swim: false,
        };
        (&mut self.meta, host)
    }

    /// What the engine reads of the node, for a query.
    fn meta_view(&self) -> View<'_> {
        View {
            identity: &self.identity,
            shared: &self.shared,
            members: self.listing(),
            left: self.left,
            joined: self.joined,
            seeds: &self.seeds,
            answered_seeds: &self.answered_seeds,
            max_value_bytes: self.config.state_limits.max_value_bytes.get(),
        }
    }

    /// One call into the engine: `f` gets the engine and the host lent
    /// for the call; then the node carries out what the call left for it.
    fn with_meta<R>(&mut self, f: impl FnOnce(&mut MetaCore, &mut Host<'_>) -> R) -> R {
        let (meta, mut h) = self.meta_parts();
        let r = f(meta, &mut h);
        let (advert, after_swim) = (h.advert, h.after_swim);
        self.meta_done(advert, after_swim);
        r
    }

    /// Carries out what a call into the engine left for the node.
    fn meta_done(&mut self, advert: Option<Vec<u8>>, after_swim: bool) {
        if let Some(bytes) = advert {
            let now = Now {
                mono: self.io.now,
                wall_ms: self.shared.lock().wall_ms,
            };
            if let Err(e) = self.write(now, ADVERT_KEY, Some(bytes)) {
                tracing::warn!(error = %e, "could not advertise the metadata cluster");
            }
        }
        if after_swim {
            self.after_swim();
        }
    }

    /// Hands the metadata engine one of its messages (Raft, forwarded
    /// requests and their answers, copies, bootstrap); other kinds never
    /// reach here.
    pub(in crate::node::node) fn on_meta_message(&mut self, msg: Message) {
        self.with_meta(|meta, h| match msg {
            Message::Raft(m) => meta.on_raft_msg(h, m),
            Message::MetaRequest(m) => meta.on_meta_request(h, m),
            Message::MetaResponse(m) => meta.on_meta_response(h, m),
            Message::MetaPull(p) => meta.on_meta_pull(h, p),
            Message::MetaPush(p) => meta.on_meta_push(h, p),
            Message::BootstrapAsk(a) => meta.on_bootstrap_ask(h, a),
            Message::BootstrapGrant(g) => meta.on_bootstrap_grant(h, g),
            _ => {}
        });
    }

    /// Keeps the decoded adverts of other members (a handful: the voters
    /// and former voters), so reading them costs nothing per member.
    pub(in crate::node::node) fn note_advert(&mut self, owner: &NodeId, value: Option<&[u8]>) {
        self.meta.note_advert(owner, value)
    }

    /// Reacts to a gossiped advert: a member behind pulls at once.
    pub(in crate::node::node) fn on_advert_changed(&mut self) {
        self.with_meta(|meta, h| meta.on_advert_changed(h));
    }

    /// Opens the Raft state saved on the disk, if any (a voter restarting).
    pub(in crate::node::node) fn meta_start(&mut self) {
        self.with_meta(|meta, h| meta.meta_start(h));
    }

    pub(in crate::node::node) fn on_meta_tick(&mut self) {
        self.with_meta(|meta, h| meta.on_meta_tick(h));
    }

    /// The Raft term this node leads, while it is the metadata leader
    /// (cheaper than [`Node::meta_status`]).
    pub fn meta_leading_term(&self) -> Option<u64> {
        self.meta.meta_leading_term()
    }

    /// The metadata cluster as this node sees it.
    pub fn meta_status(&self) -> MetaStatus {
        self.meta.meta_status(&self.meta_view())
    }

    /// The committed partition placement in this node's copy.
    pub fn partitions(&self) -> Option<&Table> {
        self.meta.partitions()
    }

    /// The partition of `key` (`None` before a cluster formed).
    pub fn partition_for_key(&self, key: &[u8]) -> Option<u32> {
        self.meta.partition_for_key(key)
    }

    /// The primary owner of `key`.
    pub fn primary_for_key(&self, key: &[u8]) -> Option<NodeId> {
        self.meta.primary_for_key(key)
    }

    /// The replica owners of `key` (primary excluded).
    pub fn replicas_for_key(&self, key: &[u8]) -> Vec<NodeId> {
        self.meta.replicas_for_key(key)
    }

    /// Whether this node is `key`'s primary.
    pub fn is_primary_for_key(&self, key: &[u8]) -> bool {
        self.meta.is_primary_for_key(&self.meta_view(), key)
    }

    /// This node's role for `key`.
    pub fn should_handle_key(&self, key: &[u8]) -> Role {
        self.meta.should_handle_key(&self.meta_view(), key)
    }

    /// This node's copy of one metadata key (a stale read, no I/O).
    pub fn meta_local(&self, key: &str) -> Option<Vec<u8>> {
        self.meta.meta_local(key)
    }

    /// This node's copy of the metadata store.
    pub fn meta_machine(&self) -> &Machine {
        self.meta.meta_machine()
    }

    /// Metadata counters.
    pub fn meta_counters(&self) -> MetaCounters {
        self.meta.meta_counters()
    }

    /// Starts a metadata request; its result comes out of
    /// [`Node::poll_meta_result`] with the returned number.
    pub fn meta_request(&mut self, now: Now, op: MetaOp, mode: ReadMode) -> u64 {
        self.set_now(now);
        self.with_meta(|meta, h| meta.meta_request(h, op, mode))
    }

    /// Revokes (or, with `revoke` false, reinstates) the certificate of
    /// node `id` cluster-wide: a metadata write under [`REVOKED_PREFIX`],
    /// which clients cannot make directly. Its result comes out of
    /// [`Node::poll_meta_result`] with the returned number.
    ///
    /// [`REVOKED_PREFIX`]: crate::node::meta::REVOKED_PREFIX
    pub fn revoke_certificate(&mut self, now: Now, id: &NodeId, revoke: bool) -> u64 {
        self.set_now(now);
        self.with_meta(|meta, h| meta.revoke_certificate(h, id, revoke))
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
    pub fn remove_voter(&mut self, now: Now, id: &NodeId) -> u64 {
        self.set_now(now);
        self.with_meta(|meta, h| meta.remove_voter(h, id))
    }

    /// NodeIds whose certificates are revoked, in this node's copy of the
    /// metadata.
    pub fn revoked(&self) -> Vec<NodeId> {
        self.meta.revoked()
    }

    /// Next finished request: its number and outcome.
    pub fn poll_meta_result(&mut self) -> Option<(u64, Result<MetaReply, MetaError>)> {
        self.meta.poll_meta_result()
    }
}

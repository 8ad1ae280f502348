//! The end of a member's listing: an operator forcing a Down member out
//! (Serf's `force-leave`), and reaping Down and Left members after
//! `remove_down_after` / `remove_left_after` (Serf's reconnect and
//! tombstone timeouts).

use super::*;

/// Why [`Node::force_leave`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForceLeaveError {
    /// This node lists no member of that name.
    #[error("no member named {0} is listed here")]
    Unknown(NodeId),
    /// The member is Alive or Suspect: it would refute, and a live node
    /// leaves by itself (SIGTERM, `roster leave`).
    #[error(
        "{id} is {state:?}, not Down: force-leave is for a member that failed; a live member leaves by itself (SIGTERM or `roster leave` on it)"
    )]
    NotDown {
        /// Who.
        id: NodeId,
        /// How this node holds it.
        state: MemberState,
    },
    /// The name is this node's own.
    #[error("{0} is this node; stop it (SIGTERM) or use `roster leave` to leave")]
    Itself(NodeId),
    /// This node has left or is stopping.
    #[error("node is not running")]
    Stopped,
}

/// How often listed Down and Left members are checked for reaping: a
/// quarter of the shorter retention, between 100 ms and one minute.
pub(super) fn reap_interval(config: &Config) -> Duration {
    (config.remove_down_after.min(config.remove_left_after) / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(60))
}

impl Node {
    /// Turns a member held Down into Left on every node (as Serf's
    /// `force-leave` does): the leave spreads like the member's own
    /// graceful leave would have, so every node stops trying to reach it
    /// and reaps it after `remove_left_after`. Only the listing changes: a
    /// member that was in fact alive behind a partition comes back once it
    /// proves it (it refutes at a higher incarnation, as a Serf member
    /// forced out while alive rejoins). Forcing a member already Left
    /// again is accepted and changes nothing.
    pub fn force_leave(&mut self, now: Now, id: &NodeId) -> Result<Identity, ForceLeaveError> {
        if self.left {
            return Err(ForceLeaveError::Stopped);
        }
        if *id == self.identity.id {
            return Err(ForceLeaveError::Itself(id.clone()));
        }
        let Some(view) = self.member(id) else {
            return Err(ForceLeaveError::Unknown(id.clone()));
        };
        let (identity, seen) = (view.identity.clone(), view.incarnation);
        match view.state {
            MemberState::Left => return Ok(identity),
            MemberState::Down => {}
            state => {
                return Err(ForceLeaveError::NotDown {
                    id: id.clone(),
                    state,
                });
            }
        }
        self.set_now(now);
        let incarnation = match self.downs.get(id) {
            Some((m, inc)) if *m == identity => (*inc).max(seen),
            _ => seen,
        };
        let leave = Leave {
            identity: identity.clone(),
            incarnation,
        };
        self.metrics.forced_leaves += 1;
        // As a graceful leave spreads: piggybacked on gossip (the item's
        // handler records it and queues it here), and told directly to a
        // few members.
        if let Some(bytes) = swim::encode_item(&Item::Left(leave.clone())) {
            self.add_item(&bytes, None);
        }
        self.tell_leave(&leave);
        self.after_swim();
        Ok(identity)
    }

    /// A leave for a member this node already holds Down (a forced leave,
    /// or the member's own leave arriving late): the listing says Left
    /// from now on, and the member is no longer tried. The Down verdict is
    /// kept (`downs`), so a member proving it is alive past it still comes
    /// back; the SWIM engine keeps holding it Down.
    pub(super) fn down_to_left(&mut self, identity: &Identity) {
        let now = self.io.now;
        let moved = match self.native.as_mut() {
            None => self.members.get_mut(&identity.id).is_some_and(|v| {
                let down = v.identity == *identity && v.state == MemberState::Down;
                if down {
                    v.state = MemberState::Left;
                    v.since = now;
                }
                down
            }),
            Some(e) => e.listing_mut(&identity.id).is_some_and(|(held, l)| {
                let Some(l) = l.as_mut().filter(|l| l.state == MemberState::Down) else {
                    return false;
                };
                if *held != *identity {
                    return false;
                }
                l.set(MemberState::Left, now);
                true
            }),
        };
        if moved {
            self.events.push_back(Event::MemberLeft(identity.clone()));
        }
    }

    /// Forgets members held Down longer than `remove_down_after` and Left
    /// longer than `remove_left_after`. Runs every [`reap_interval`]; the
    /// scan is O(members), like the reconnect round.
    pub(super) fn reap(&mut self) {
        let now = self.io.now;
        let (down_after, left_after) =
            (self.config.remove_down_after, self.config.remove_left_after);
        let expired: Vec<NodeId> = self
            .views()
            .filter(|m| match m.state {
                MemberState::Down => now.saturating_sub(m.since) >= down_after,
                MemberState::Left => now.saturating_sub(m.since) >= left_after,
                _ => false,
            })
            .map(|m| m.identity.id.clone())
            .collect();
        for id in expired {
            let reaped = match self.native.as_mut() {
                None => self.members.remove(&id).map(|v| v.identity),
                Some(e) => e
                    .listing_mut(&id)
                    .and_then(|(held, l)| l.take().map(|_| held.clone())),
            };
            if let Some(identity) = reaped {
                self.downs.remove(&id);
                self.lifeguard.forget_report(&id);
                self.metrics.members_reaped += 1;
                self.events.push_back(Event::MemberReaped(identity));
            }
        }
    }
}

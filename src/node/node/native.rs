//! The node's side of the native engine: packets in, the engine's
//! transmits and events out, application items both ways.

use super::*;
use crate::node::engine::table::Listing;

impl Node {
    /// Hands an application item (a state delta, a leave) to whichever
    /// engine runs: foca's custom broadcasts, or the handler then the
    /// native engine's queue. `false` when it could not be queued (too
    /// large to piggyback).
    pub(super) fn add_item(&mut self, bytes: &[u8], from: Option<&Identity>) -> bool {
        let Some(e) = self.native.as_mut() else {
            return self.swim.add_broadcast(bytes).is_ok();
        };
        let datagram = self.config.max_datagram_bytes.get();
        let room = (datagram - crate::node::config::ITEM_HEADROOM).max(datagram / 2);
        if bytes.len() > room {
            return false;
        }
        use foca::BroadcastHandler;
        match self.items.receive_item(bytes, from) {
            Ok(Some(key)) => {
                e.push_item(swim::item_slot(&key), bytes);
                true
            }
            Ok(None) => true,
            Err(_) => {
                self.metrics.invalid_items += 1;
                true
            }
        }
    }

    /// A native engine packet.
    pub(super) fn on_member(
        &mut self,
        packet: &[u8],
        peer: Option<&NodeId>,
    ) -> Result<(), InputError> {
        let Some(e) = self.native.as_mut() else {
            self.metrics.swim_errors += 1;
            return Err(InputError::Swim(
                "a native engine packet; this node runs the foca engine".into(),
            ));
        };
        if let Some(peer) = peer
            && let Some(claimed) = crate::node::engine::sender(packet)
            && claimed != *peer
        {
            return Err(self.wrong_sender(claimed, peer));
        }
        let now = self.io.now;
        match e.handle_packet(now, packet) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.metrics.swim_errors += 1;
                Err(InputError::Swim(err.to_string()))
            }
        }
    }

    /// Moves the native engine's transmits to the node's output and brings
    /// the member view up to date with its events.
    pub(super) fn drain_native(&mut self) {
        let Some(e) = self.native.as_mut() else {
            return;
        };
        while let Some((dst, bytes)) = e.poll_transmit() {
            self.io.send(dst, Kind::Member, wire::encode_member(&bytes));
        }
        while let Some(ev) = self.native.as_mut().and_then(|e| e.poll_event()) {
            self.on_engine_event(ev);
        }
        self.resize();
    }

    fn on_engine_event(&mut self, ev: EngineEvent) {
        let now = self.io.now;
        let listing = |state, suspect_incarnation| Listing::new(state, suspect_incarnation, now);
        match ev {
            EngineEvent::Up(id) => {
                self.downs.remove(&id.id);
                self.list(&id, false, listing(MemberState::Alive, None));
                self.events.push_back(Event::MemberUp(id));
            }
            EngineEvent::Replaced { old, .. } => {
                // The row (and with it the listing) now holds the new
                // identity.
                self.downs.remove(&old.id);
            }
            EngineEvent::Suspected {
                member,
                incarnation,
            } => {
                if self.list(
                    &member,
                    true,
                    listing(MemberState::Suspect, Some(incarnation)),
                ) {
                    self.events.push_back(Event::MemberSuspected(member));
                }
            }
            EngineEvent::Refuted(id) => {
                if self.list(&id, true, listing(MemberState::Alive, None)) {
                    self.events.push_back(Event::MemberRefuted(id));
                }
            }
            EngineEvent::Down(id) | EngineEvent::Left(id) => {
                let left = self.has_left_at(&id);
                let (incarnation, held) = self
                    .native
                    .as_ref()
                    .and_then(|e| e.member(&id.id))
                    .map_or((0, None), |m| (m.1, Some(m.2)));
                let left = left || held == Some(crate::node::engine::table::State::Left);
                if left {
                    self.downs.remove(&id.id);
                } else {
                    self.downs.insert(id.id.clone(), (id.clone(), incarnation));
                }
                let state = if left {
                    MemberState::Left
                } else {
                    MemberState::Down
                };
                self.list(&id, false, listing(state, None));
                self.events.push_back(if left {
                    Event::MemberLeft(id)
                } else {
                    Event::MemberDown(id)
                });
            }
            EngineEvent::SelfRefuted(incarnation) => {
                self.lifeguard.refuted(now);
                self.events.push_back(Event::Refuted { incarnation });
            }
            EngineEvent::Joined => self.became_active(),
            EngineEvent::Alone => self.became_idle(),
            EngineEvent::Item { bytes, from } => {
                // A leave lands in `pending_leaves`, a delta raises its event
                // through the shared state: `after_swim` takes both.
                self.add_item(&bytes, Some(&from));
            }
            EngineEvent::Rtt { member, rtt } if self.config.coordinates => {
                self.coord_rtt(&member, rtt);
            }
            EngineEvent::Probed(by) if self.config.coordinates => self.send_coordinate(&by),
            EngineEvent::Rtt { .. } | EngineEvent::Probed(_) => {}
        }
    }

    /// Sets the native engine's listing of `id`'s row, when the row holds
    /// `id` (and, with `listed_only`, when it is already listed). `true`
    /// when it was set.
    fn list(&mut self, id: &Identity, listed_only: bool, to: Listing) -> bool {
        let Some((held, listing)) = self.native.as_mut().and_then(|e| e.listing_mut(&id.id)) else {
            return false;
        };
        if *held != *id || (listed_only && listing.is_none()) {
            return false;
        }
        *listing = Some(to);
        true
    }
}

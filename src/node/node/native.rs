//! The node's side of the native engine: packets in, the engine's
//! transmits and events out, application items both ways.

use super::*;

impl Node {
    /// Hands an application item (a state delta, a leave) to whichever
    /// engine runs: foca's custom broadcasts, or the handler then the
    /// native engine's queue. `false` when it could not be queued (too
    /// large to piggyback).
    pub(super) fn add_item(&mut self, bytes: &[u8], from: Option<&Identity>) -> bool {
        let Some(e) = self.native.as_mut() else {
            return self.swim.add_broadcast(bytes).is_ok();
        };
        let room = self.config.max_datagram_bytes.get() / 2;
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
        let incarnation_of = |node: &Node, id: &NodeId| {
            node.native
                .as_ref()
                .and_then(|e| e.member(id).map(|m| m.1))
                .unwrap_or(0)
        };
        match ev {
            EngineEvent::Up(id) => {
                self.downs.remove(&id.id);
                let incarnation = incarnation_of(self, &id.id);
                self.members.insert(
                    id.id.clone(),
                    MemberView {
                        identity: id.clone(),
                        incarnation,
                        state: MemberState::Alive,
                        suspect_incarnation: None,
                        since: now,
                    },
                );
                self.events.push_back(Event::MemberUp(id));
            }
            EngineEvent::Replaced { old, new } => {
                self.downs.remove(&old.id);
                if let Some(v) = self.members.get_mut(&new.id) {
                    v.identity = new;
                }
            }
            EngineEvent::Suspected {
                member,
                incarnation,
            } => {
                if let Some(v) = self.members.get_mut(&member.id)
                    && v.identity == member
                {
                    v.state = MemberState::Suspect;
                    v.incarnation = incarnation;
                    v.suspect_incarnation = Some(incarnation);
                    v.since = now;
                    self.events.push_back(Event::MemberSuspected(member));
                }
            }
            EngineEvent::Refuted(id) => {
                let incarnation = incarnation_of(self, &id.id);
                if let Some(v) = self.members.get_mut(&id.id)
                    && v.identity == id
                {
                    v.state = MemberState::Alive;
                    v.incarnation = incarnation;
                    v.suspect_incarnation = None;
                    v.since = now;
                    self.events.push_back(Event::MemberRefuted(id));
                }
            }
            EngineEvent::Down(id) | EngineEvent::Left(id) => {
                let left = self
                    .shared
                    .lock()
                    .left
                    .get(&id.id)
                    .is_some_and(|g| *g >= id.generation);
                let engine_left = self
                    .native
                    .as_ref()
                    .and_then(|e| e.member(&id.id))
                    .is_some_and(|m| m.2 == crate::node::engine::table::State::Left);
                let left = left || engine_left;
                let incarnation = incarnation_of(self, &id.id);
                if left {
                    self.downs.remove(&id.id);
                } else {
                    self.downs.insert(id.id.clone(), (id.clone(), incarnation));
                }
                self.members.insert(
                    id.id.clone(),
                    MemberView {
                        identity: id.clone(),
                        incarnation,
                        state: if left {
                            MemberState::Left
                        } else {
                            MemberState::Down
                        },
                        suspect_incarnation: None,
                        since: now,
                    },
                );
                self.events.push_back(if left {
                    Event::MemberLeft(id)
                } else {
                    Event::MemberDown(id)
                });
            }
            EngineEvent::SelfRefuted(incarnation) => {
                self.last_refutation = Some(now);
                self.events.push_back(Event::Refuted { incarnation });
            }
            EngineEvent::Joined => self.became_active(),
            EngineEvent::Alone => self.became_idle(),
            EngineEvent::Item { bytes, from } => {
                // A leave lands in `pending_leaves`, a delta raises its event
                // through the shared state: `after_swim` takes both.
                self.add_item(&bytes, Some(&from));
            }
        }
    }
}

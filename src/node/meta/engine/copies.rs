//! The cluster in gossip: voters advertise their applied index; a member
//! behind pulls the committed entries or a snapshot from one.

use super::consensus::{apply_conf_entry, apply_normal_entry};
use super::*;

impl MetaCore {
    /// Keeps the decoded adverts of other members (a handful: the voters
    /// and former voters), so reading them costs nothing per member.
    pub(crate) fn note_advert(&mut self, owner: &NodeId, value: Option<&[u8]>) {
        match value.and_then(Advert::decode) {
            Some(a) => {
                self.adverts.insert(owner.clone(), a);
            }
            None => {
                self.adverts.remove(owner);
            }
        }
    }

    pub(super) fn adverts(&self, h: &View<'_>) -> Vec<(NodeId, Advert)> {
        self.listed_adverts(h)
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect()
    }

    /// The adverts of the members this node lists, borrowed: no copies,
    /// one lookup per advert.
    fn listed_adverts<'s>(
        &'s self,
        h: &'s View<'_>,
    ) -> impl Iterator<Item = (&'s NodeId, &'s Advert)> + 's {
        self.adverts
            .iter()
            .filter(|(id, _)| h.members.listed_one(id).is_some())
    }

    /// The cluster this node belongs to or follows, if any.
    pub(super) fn meta_cluster(&self, h: &View<'_>) -> Option<u64> {
        if self.cluster != 0 {
            return Some(self.cluster);
        }
        if self.copy.cluster != 0 {
            return Some(self.copy.cluster);
        }
        self.listed_adverts(h)
            .filter(|(_, a)| a.voter)
            .max_by_key(|(_, a)| (a.applied, a.term))
            .map(|(_, a)| a.cluster)
    }

    pub(super) fn advertise(&mut self, h: &mut Host<'_>) {
        self.advert_dirty = false;
        self.advert_urgent = false;
        self.last_advert = Some(h.io.now);
        let advert = match self.raw.as_ref() {
            Some(raw) => Advert {
                cluster: self.cluster,
                term: raw.raft.term,
                leader: self.machine().names.get(&raw.raft.leader_id).cloned(),
                applied: raw.store().machine.applied,
                voter: true,
                voters: raw.store().machine.voter_names(),
            },
            None => {
                let had = h
                    .shared
                    .lock()
                    .store
                    .get(&h.identity.id, ADVERT_KEY)
                    .is_some();
                if !had {
                    return;
                }
                Advert {
                    cluster: self.cluster,
                    term: 0,
                    leader: None,
                    applied: self.copy.applied,
                    voter: false,
                    voters: Vec::new(),
                }
            }
        };
        let mut advert = advert;
        let mut bytes = advert.encode();
        if bytes.len() > h.max_value_bytes {
            advert.voters.clear();
            bytes = advert.encode();
        }
        h.advert = Some(bytes);
    }

    /// Reacts to a gossiped advert: a member behind pulls at once.
    pub(crate) fn on_advert_changed(&mut self, h: &mut Host<'_>) {
        if self.raw.is_none() {
            self.maybe_pull(h);
        }
    }

    pub(super) fn maybe_pull(&mut self, h: &mut Host<'_>) {
        if self.raw.is_some() || h.left {
            return;
        }
        let now = h.io.now;
        if self.pull_deadline.is_some_and(|d| now < d) {
            return;
        }
        self.pull_deadline = None;
        let Some(cluster) = self.meta_cluster(h) else {
            return;
        };
        let have = if self.copy.cluster == cluster {
            self.copy.applied
        } else {
            0
        };
        let ahead: Vec<std::net::SocketAddr> = self
            .listed_adverts(h)
            .filter(|(_, a)| a.cluster == cluster && a.voter && a.applied > have)
            .filter_map(|(id, _)| {
                h.members
                    .listed_one(id)
                    .filter(|(_, state)| *state == MemberState::Alive)
                    .map(|(identity, _)| identity.addr)
            })
            .collect();
        if ahead.is_empty() {
            return;
        }
        let addr = ahead[h.rng.random_range(0..ahead.len())];
        self.pull_deadline = Some(now + PULL_TIMEOUT);
        self.counters.pulls += 1;
        let from = h.identity.clone();
        h.io.send_msg(
            addr,
            &Message::MetaPull(MetaPull {
                from,
                cluster,
                after: have,
            }),
        );
    }

    pub(crate) fn on_meta_pull(&mut self, h: &mut Host<'_>, p: MetaPull) {
        let Some(raw) = self.raw.as_ref() else {
            return;
        };
        if p.cluster != self.cluster {
            return;
        }
        let store = raw.store();
        let applied = store.machine.applied;
        if p.after >= applied {
            return;
        }
        let (snapshot, entries) = match store.committed_after(p.after, applied, PUSH_BYTES) {
            Some(es) => (None, es),
            None => (Some(store.machine.encode()), Vec::new()),
        };
        let entries = entries
            .into_iter()
            .map(|e| PushedEntry {
                index: e.index,
                term: e.term,
                kind: e.get_entry_type() as u8,
                data: e.data.to_vec(),
                context: e.context.to_vec(),
            })
            .collect();
        let from = h.identity.clone();
        h.io.send_msg(
            p.from.addr,
            &Message::MetaPush(MetaPush {
                from,
                cluster: p.cluster,
                snapshot,
                entries,
            }),
        );
    }

    pub(crate) fn on_meta_push(&mut self, h: &mut Host<'_>, p: MetaPush) {
        if self.raw.is_some() {
            return;
        }
        if self.cluster != 0 && p.cluster != self.cluster {
            return;
        }
        self.pull_deadline = None;
        if let Some(snap) = p.snapshot.as_deref() {
            match Machine::decode(snap) {
                Some(m) if m.cluster == p.cluster && m.applied > self.copy.applied => {
                    let before = self.copy.placement.take();
                    self.copy = m;
                    self.placement_replaced(h, before);
                    let names = self.copy.voter_names();
                    h.events.push_back(Event::VotersChanged(names));
                }
                Some(_) => {}
                None => return,
            }
        }
        if self.copy.cluster == 0 {
            self.copy.cluster = p.cluster;
        }
        for e in p.entries {
            if e.index != self.copy.applied + 1 {
                continue;
            }
            let etype = match e.kind {
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                _ => EntryType::EntryNormal,
            };
            if let Some(cc) = parse_conf_change(etype, &e.data) {
                let conf = conf_after(&self.copy.conf, &cc);
                let copy = &mut self.copy;
                let names = apply_conf_entry(copy, conf, &e.context, e.index, e.term);
                h.events.push_back(Event::VotersChanged(names));
            } else if let Some((entry, before, _)) =
                apply_normal_entry(&mut self.copy, &e.data, e.index, e.term)
            {
                self.entry_applied(h, &entry, before, e.index);
            }
        }
        self.maybe_pull(h);
    }
}

//! The cluster in gossip: voters advertise their applied index; a member
//! behind pulls the committed entries or a snapshot from one.

use super::consensus::{apply_conf_entry, apply_normal_entry};
use super::*;

impl Node {
    /// Keeps the decoded adverts of other members (a handful: the voters
    /// and former voters), so reading them costs nothing per member.
    pub(in crate::node::node) fn note_advert(&mut self, owner: &NodeId, value: Option<&[u8]>) {
        match value.and_then(Advert::decode) {
            Some(a) => {
                self.meta.adverts.insert(owner.clone(), a);
            }
            None => {
                self.meta.adverts.remove(owner);
            }
        }
    }

    pub(in crate::node::node::meta) fn adverts(&self) -> Vec<(NodeId, Advert)> {
        self.meta
            .adverts
            .iter()
            .filter(|(id, _)| self.member(id).is_some())
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect()
    }

    /// The cluster this node belongs to or follows, if any.
    pub(in crate::node::node::meta) fn meta_cluster(&self) -> Option<u64> {
        if self.meta.cluster != 0 {
            return Some(self.meta.cluster);
        }
        if self.meta.copy.cluster != 0 {
            return Some(self.meta.copy.cluster);
        }
        self.adverts()
            .into_iter()
            .filter(|(_, a)| a.voter)
            .max_by_key(|(_, a)| (a.applied, a.term))
            .map(|(_, a)| a.cluster)
    }

    pub(in crate::node::node::meta) fn advertise(&mut self) {
        self.meta.advert_dirty = false;
        self.meta.advert_urgent = false;
        self.meta.last_advert = Some(self.io.now);
        let advert = match self.meta.raw.as_ref() {
            Some(raw) => Advert {
                cluster: self.meta.cluster,
                term: raw.raft.term,
                leader: self.meta.machine().names.get(&raw.raft.leader_id).cloned(),
                applied: raw.store().machine.applied,
                voter: true,
                voters: raw.store().machine.voter_names(),
            },
            None => {
                let had = self.state(&self.identity.id.clone(), ADVERT_KEY).is_some();
                if !had {
                    return;
                }
                Advert {
                    cluster: self.meta.cluster,
                    term: 0,
                    leader: None,
                    applied: self.meta.copy.applied,
                    voter: false,
                    voters: Vec::new(),
                }
            }
        };
        let mut advert = advert;
        let mut bytes = advert.encode();
        if bytes.len() > self.config.state_limits.max_value_bytes.get() {
            advert.voters.clear();
            bytes = advert.encode();
        }
        let now = self.now_full();
        if let Err(e) = self.write(now, ADVERT_KEY, Some(bytes)) {
            tracing::warn!(error = %e, "could not advertise the metadata cluster");
        }
    }

    /// Reacts to a gossiped advert: a member behind pulls at once.
    pub(in crate::node::node) fn on_advert_changed(&mut self) {
        if self.meta.raw.is_none() {
            self.maybe_pull();
        }
    }

    pub(in crate::node::node::meta) fn maybe_pull(&mut self) {
        if self.meta.raw.is_some() || self.left {
            return;
        }
        let now = self.io.now;
        if self.meta.pull_deadline.is_some_and(|d| now < d) {
            return;
        }
        self.meta.pull_deadline = None;
        let Some(cluster) = self.meta_cluster() else {
            return;
        };
        let have = if self.meta.copy.cluster == cluster {
            self.meta.copy.applied
        } else {
            0
        };
        let ahead: Vec<(NodeId, std::net::SocketAddr)> = self
            .adverts()
            .into_iter()
            .filter(|(_, a)| a.cluster == cluster && a.voter && a.applied > have)
            .filter_map(|(id, _)| {
                self.member(&id)
                    .filter(|m| m.state == MemberState::Alive)
                    .map(|m| (id, m.identity.addr))
            })
            .collect();
        if ahead.is_empty() {
            return;
        }
        let (_, addr) = ahead[self.rng.random_range(0..ahead.len())].clone();
        self.meta.pull_deadline = Some(now + PULL_TIMEOUT);
        self.meta.counters.pulls += 1;
        let from = self.identity.clone();
        self.io.send_msg(
            addr,
            &Message::MetaPull(MetaPull {
                from,
                cluster,
                after: have,
            }),
        );
    }

    pub(in crate::node::node) fn on_meta_pull(&mut self, p: MetaPull) {
        let Some(raw) = self.meta.raw.as_ref() else {
            return;
        };
        if p.cluster != self.meta.cluster {
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
        let from = self.identity.clone();
        self.io.send_msg(
            p.from.addr,
            &Message::MetaPush(MetaPush {
                from,
                cluster: p.cluster,
                snapshot,
                entries,
            }),
        );
    }

    pub(in crate::node::node) fn on_meta_push(&mut self, p: MetaPush) {
        if self.meta.raw.is_some() {
            return;
        }
        if self.meta.cluster != 0 && p.cluster != self.meta.cluster {
            return;
        }
        self.meta.pull_deadline = None;
        if let Some(snap) = p.snapshot.as_deref() {
            match Machine::decode(snap) {
                Some(m) if m.cluster == p.cluster && m.applied > self.meta.copy.applied => {
                    let before = self.meta.copy.placement.take();
                    self.meta.copy = m;
                    self.placement_replaced(before);
                    let names = self.meta.copy.voter_names();
                    self.events.push_back(Event::VotersChanged(names));
                }
                Some(_) => {}
                None => return,
            }
        }
        if self.meta.copy.cluster == 0 {
            self.meta.copy.cluster = p.cluster;
        }
        for e in p.entries {
            if e.index != self.meta.copy.applied + 1 {
                continue;
            }
            let etype = match e.kind {
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                _ => EntryType::EntryNormal,
            };
            if let Some(cc) = parse_conf_change(etype, &e.data) {
                let conf = conf_after(&self.meta.copy.conf, &cc);
                let copy = &mut self.meta.copy;
                let names = apply_conf_entry(copy, conf, &e.context, e.index, e.term);
                self.events.push_back(Event::VotersChanged(names));
            } else if let Some((entry, before, _)) =
                apply_normal_entry(&mut self.meta.copy, &e.data, e.index, e.term)
            {
                self.entry_applied(&entry, before, e.index);
            }
        }
        self.maybe_pull();
    }
}

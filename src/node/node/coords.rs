//! The node's side of network coordinates (see [`crate::node::coords`]):
//! round trips measured by this node's direct probes, the coordinates that
//! probed members send back (kept, as Serf keeps those from its acks, for
//! the estimates between any two of them), and the estimates.

use super::*;
use crate::node::coords::Coordinate;
use crate::node::wire::CoordMsg;

/// Coordinates of other members cached from their `Coord` answers, at
/// most; past it the cache starts again (the state copies remain).
const CACHE_MAX: usize = 4096;

/// The network-coordinate state of a node.
#[derive(Debug, Default)]
pub(super) struct Coords {
    pub(super) vivaldi: crate::node::coords::Vivaldi,
    /// Coordinates from `Coord` answers: member, its coordinate, when.
    cache: BTreeMap<NodeId, (Coordinate, Duration)>,
    /// A direct probe this node sent: its number, the member, when.
    probe: Option<(foca::ProbeNumber, Identity, Duration)>,
    /// A round trip measured, waiting for the member's coordinate: the
    /// member, the round trip, when it was measured.
    pending: Option<(NodeId, Duration, Duration)>,
    /// Coordinates this node sent to its probers asking for theirs back:
    /// when, by prober.
    asked: BTreeMap<NodeId, Duration>,
}

/// Probers asked for their coordinate back, at most at once.
const ASKED_MAX: usize = 64;

impl Node {
    /// foca sent a direct probe `n` to `dst`.
    pub(super) fn coord_probe_sent(&mut self, n: foca::ProbeNumber, dst: &Identity) {
        if self.coords.probe.as_ref().is_none_or(|(p, _, _)| *p != n) {
            self.coords.probe = Some((n, dst.clone(), self.io.now));
        }
    }

    /// A foca packet arrived from `src`: an ack of this node's direct probe
    /// measures a round trip; a direct probe of this node is answered with
    /// its coordinate.
    pub(super) fn coord_on_swim(
        &mut self,
        src: &Identity,
        dst: &Identity,
        m: &foca::Message<Identity>,
    ) {
        if *dst != self.identity {
            return;
        }
        match m {
            foca::Message::Ack(n) => {
                if let Some((p, target, at)) = self.coords.probe.take() {
                    if p == *n && target == *src {
                        let rtt = self.io.now.saturating_sub(at);
                        self.coord_rtt(src, rtt);
                    } else {
                        self.coords.probe = Some((p, target, at));
                    }
                }
            }
            foca::Message::Ping(_) => self.send_coordinate(src),
            _ => {}
        }
    }

    /// The native engine measured `rtt` to `member` (a direct probe).
    pub(super) fn coord_rtt(&mut self, member: &Identity, rtt: Duration) {
        let now = self.io.now;
        // Their answer to this very probe, or a recent one, serves.
        match self.coords.cache.get(&member.id) {
            Some((c, at)) if now.saturating_sub(*at) <= rtt + self.config.probe_period => {
                let c = *c;
                self.coord_sample(&member.id, &c, rtt);
            }
            _ => self.coords.pending = Some((member.id.clone(), rtt, now)),
        }
    }

    /// Sends this node's coordinate to `prober`, asking for its own back
    /// (which times a round trip for this node).
    pub(super) fn send_coordinate(&mut self, prober: &Identity) {
        let now = self.io.now;
        let expired = 2 * self.config.probe_period;
        let asked = &mut self.coords.asked;
        asked.retain(|_, at| now.saturating_sub(*at) <= expired);
        if asked.len() < ASKED_MAX {
            asked.insert(prober.id.clone(), now);
        }
        self.coord_to(prober.addr, true);
    }

    fn coord_to(&mut self, addr: SocketAddr, echo: bool) {
        let msg = CoordMsg {
            from: self.identity.clone(),
            coord: self.coords.vivaldi.coordinate().pack(),
            echo,
        };
        self.io.send_msg(addr, &Message::Coord(msg));
    }

    /// A probed member's coordinate arrived.
    pub(super) fn on_coord(&mut self, m: CoordMsg) {
        let Some(c) = Coordinate::unpack(&m.coord) else {
            self.metrics.invalid_items += 1;
            return;
        };
        let now = self.io.now;
        if self.coords.cache.len() >= CACHE_MAX && !self.coords.cache.contains_key(&m.from.id) {
            self.coords.cache.clear();
        }
        self.coords.cache.insert(m.from.id.clone(), (c, now));
        if m.echo {
            self.coord_to(m.from.addr, false);
        } else if let Some(at) = self.coords.asked.remove(&m.from.id)
            && now.saturating_sub(at) <= 2 * self.config.probe_period
        {
            let rtt = now.saturating_sub(at);
            self.coord_sample(&m.from.id, &c, rtt);
            return;
        }
        if let Some((id, rtt, at)) = self.coords.pending.take() {
            if id == m.from.id && now.saturating_sub(at) <= self.config.probe_period {
                self.coord_sample(&id, &c, rtt);
            } else if now.saturating_sub(at) <= self.config.probe_period {
                self.coords.pending = Some((id, rtt, at));
            }
        }
    }

    fn coord_sample(&mut self, peer: &NodeId, theirs: &Coordinate, rtt: Duration) {
        let v = &mut self.coords.vivaldi;
        v.sample(peer, theirs, rtt, &mut self.coord_rng);
    }

    // ----- queries -----

    /// This node's network coordinate.
    pub fn coordinate(&self) -> Coordinate {
        self.coords.vivaldi.coordinate()
    }

    /// The coordinate of `id` this node knows: its own, or the one `id`
    /// sent with its last answer to this node's probe (every member is
    /// probed in turn, so every active member's is known after one round
    /// of probes).
    pub fn coordinate_of(&self, id: &NodeId) -> Option<Coordinate> {
        if *id == self.identity.id {
            return Some(self.coordinate());
        }
        self.coords.cache.get(id).map(|(c, _)| *c)
    }

    /// The estimated round trip between members `a` and `b` (either may be
    /// this node), when both coordinates are known.
    pub fn rtt_between(&self, a: &NodeId, b: &NodeId) -> Option<Duration> {
        Some(self.coordinate_of(a)?.rtt_to(&self.coordinate_of(b)?))
    }

    /// The estimated round trip from this node to `id`.
    pub fn rtt_to(&self, id: &NodeId) -> Option<Duration> {
        self.rtt_between(&self.identity.id.clone(), id)
    }

    /// The `k` active members nearest to this node by estimated round trip,
    /// nearest first (members without a known coordinate are left out).
    /// O(members log members).
    pub fn nearest(&self, k: usize) -> Vec<(NodeId, Duration)> {
        let me = self.coordinate();
        let mut all: Vec<(NodeId, Duration)> = self
            .members()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .filter(|m| m.identity.id != self.identity.id)
            .filter_map(|m| {
                let c = self.coordinate_of(&m.identity.id)?;
                Some((m.identity.id, me.rtt_to(&c)))
            })
            .collect();
        all.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }
}

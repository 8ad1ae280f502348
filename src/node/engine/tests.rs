//! Property tests of the engine's state machine: many engines on a lossy
//! simulated network with pauses and forged claims, seeded, with the
//! invariants checked after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::{Rng, RngExt, SeedableRng};

use super::packet::{Body, Update, WireState};
use super::table::State;
use super::{Engine, EngineEvent, Header, News};
use crate::node::config::Config;
use crate::node::identity::{Generation, Identity, NodeId};

const MS: Duration = Duration::from_millis(1);

fn ident(i: usize) -> Identity {
    Identity::new(
        NodeId::new(format!("n{i}")).expect("valid name"),
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 7000 + i as u16)),
        Generation(1),
    )
}

/// Where a member stands in one engine's view: `(incarnation, rank)`,
/// compared in that order. Only Alive at a higher incarnation may follow a
/// worse state.
fn rank(state: State) -> u8 {
    match state {
        State::Alive => 0,
        State::Suspect => 1,
        State::Down => 2,
        State::Left => 3,
    }
}

struct Net {
    engines: Vec<Engine>,
    /// Paused engines get no input and send nothing until the time given.
    paused: Vec<Option<Duration>>,
    /// In flight: (arrival, sequence) -> (to, bytes).
    flight: BTreeMap<(Duration, u64), (usize, Vec<u8>)>,
    seq: u64,
    now: Duration,
    loss: f64,
    rng: rand::rngs::Xoshiro256PlusPlus,
    /// Each engine's view, as of the last check.
    views: Vec<BTreeMap<NodeId, (u32, State)>>,
    /// Down verdicts checked against their cause.
    verdicts: u64,
    adopted: u64,
}

impl Net {
    fn new(n: usize, seed: u64) -> Self {
        let mut config = Config::lan();
        config.max_health_score = 8;
        let mut engines: Vec<Engine> = (0..n)
            .map(|i| {
                Engine::new(
                    ident(i),
                    &config,
                    seed * 1000 + i as u64,
                    Duration::ZERO,
                    1200,
                )
            })
            .collect();
        let timing = config.timing(n);
        for (i, e) in engines.iter_mut().enumerate() {
            e.set_timing(timing);
            let others = (0..n)
                .filter(|&j| j != i)
                .map(|j| (ident(j), 0, WireState::Alive));
            e.merge(Duration::ZERO, others, false);
            while e.poll_event().is_some() {}
        }
        Self {
            engines,
            paused: vec![None; n],
            flight: BTreeMap::new(),
            seq: 0,
            now: Duration::ZERO,
            loss: 0.0,
            rng: rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed),
            views: vec![BTreeMap::new(); n],
            verdicts: 0,
            adopted: 0,
        }
    }

    fn index(addr: SocketAddr) -> usize {
        usize::from(addr.port() - 7000)
    }

    fn is_paused(&self, i: usize) -> bool {
        self.paused[i].is_some_and(|t| self.now < t)
    }

    /// Moves every transmit into flight (lost ones dropped).
    fn collect(&mut self, i: usize) {
        while let Some((to, bytes)) = self.engines[i].poll_transmit() {
            if self.rng.random_bool(self.loss) {
                continue;
            }
            let delay = MS * self.rng.random_range(1..20);
            self.seq += 1;
            self.flight
                .insert((self.now + delay, self.seq), (Self::index(to), bytes));
        }
    }

    /// One step: the earliest timer or arrival. Checks the invariants.
    fn step(&mut self) {
        let next_msg = self.flight.keys().next().map(|k| k.0);
        let next_timer = (0..self.engines.len())
            .filter(|&i| !self.is_paused(i))
            .filter_map(|i| self.engines[i].poll_timeout())
            .min();
        let resume = self
            .paused
            .iter()
            .flatten()
            .filter(|&&t| t > self.now)
            .min()
            .copied();
        let Some(t) = [next_msg, next_timer, resume].into_iter().flatten().min() else {
            return;
        };
        self.now = self.now.max(t);
        // Suspicions before the step, for the verdict check.
        let before: Vec<BTreeMap<u32, Duration>> = self
            .engines
            .iter()
            .map(|e| e.suspicions.iter().map(|(r, s)| (*r, s.start)).collect())
            .collect();
        let counters: Vec<_> = self.engines.iter().map(|e| e.counters()).collect();
        if next_msg == Some(t) {
            let (key, (to, bytes)) = self.flight.pop_first().expect("a message");
            debug_assert_eq!(key.0, t);
            if !self.is_paused(to) {
                // Errors are only for malformed packets, which none is.
                self.engines[to]
                    .handle_packet(self.now, &bytes)
                    .expect("well-formed");
                self.after(to, &before[to], counters[to]);
            }
        } else {
            for i in 0..self.engines.len() {
                if self.is_paused(i) {
                    continue;
                }
                if self.engines[i]
                    .poll_timeout()
                    .is_some_and(|d| d <= self.now)
                {
                    self.engines[i].handle_timeout(self.now);
                    self.after(i, &before[i], counters[i]);
                }
            }
        }
    }

    /// After engine `i` ran: its transmits go out, its Down verdicts are
    /// checked against their cause, its view against the last one.
    fn after(&mut self, i: usize, before: &BTreeMap<u32, Duration>, c0: super::EngineCounters) {
        self.collect(i);
        let c1 = self.engines[i].counters();
        let min = self.engines[i].timing.suspicion_min;
        while let Some(ev) = self.engines[i].poll_event() {
            if let EngineEvent::Down(id) = ev {
                let row = self.engines[i].table.find(&id.id).expect("a known member");
                let timed_out = before
                    .get(&row)
                    .is_some_and(|start| *start + min <= self.now);
                let adopted = c1.downs_adopted > c0.downs_adopted;
                assert!(
                    timed_out || adopted,
                    "n{i} declared {id} Down at {:?} without a timed-out suspicion or an adopted Down",
                    self.now
                );
                self.verdicts += u64::from(timed_out);
                self.adopted += u64::from(adopted);
            }
        }
        let view: BTreeMap<NodeId, (u32, State)> = self.engines[i]
            .members()
            .map(|(id, inc, st)| (id.id.clone(), (inc, st)))
            .collect();
        for (id, &(inc, st)) in &view {
            if let Some(&(inc0, st0)) = self.views[i].get(id) {
                let forward = inc > inc0 || (inc == inc0 && rank(st) >= rank(st0));
                let left_stays = st0 != State::Left || st == State::Left;
                assert!(
                    forward && left_stays,
                    "n{i}'s view of {id} went from {st0:?}@{inc0} to {st:?}@{inc} at {:?}",
                    self.now
                );
            }
        }
        self.views[i] = view;
    }

    /// A forged claim about `about`, as if `from` had gossiped it, handed
    /// to `to`.
    fn forge(&mut self, from: usize, to: usize, about: usize, state: WireState) {
        let Some((_, inc, _)) = self.engines[to].member(&ident(about).id) else {
            return;
        };
        let header = Header {
            from: ident(from),
            incarnation: self.engines[from].incarnation(),
            body: Body::Gossip,
        };
        let news = vec![News::Member(Update {
            member: ident(about),
            incarnation: inc,
            state,
            by: Some(ident(from).id),
        })];
        let mut bytes = postcard::to_allocvec(&header).expect("encodes");
        bytes.extend(postcard::to_allocvec(&news).expect("encodes"));
        self.seq += 1;
        self.flight.insert((self.now + MS, self.seq), (to, bytes));
    }

    fn run_until(&mut self, end: Duration, mut fault: impl FnMut(&mut Self)) {
        let mut steps = 0u64;
        while self.now < end {
            steps += 1;
            assert!(steps < 5_000_000, "bounded");
            fault(self);
            let before = self.now;
            self.step();
            if self.now == before
                && self.flight.is_empty()
                && (0..self.engines.len()).all(|i| self.engines[i].poll_timeout().is_none())
            {
                break;
            }
        }
    }
}

/// Under loss, pauses and forged Suspect and Down claims, every engine's
/// view only moves forward, every Down has a cause, and once the faults
/// stop every engine holds every other Alive again: a member declared Down
/// refutes and comes back with the same identity.
#[test]
fn views_move_forward_downs_have_a_cause_and_refuted_members_come_back() {
    let mut total_verdicts = 0;
    let mut total_adopted = 0;
    for seed in 1..=12u64 {
        let n = 8;
        let mut net = Net::new(n, seed);
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xfeed);
        net.loss = 0.05 + 0.1 * rng.random::<f64>();
        let faults_end = Duration::from_secs(120);
        let mut next_fault = Duration::from_secs(5);
        net.run_until(faults_end, |net| {
            if net.now < next_fault {
                return;
            }
            next_fault = net.now + Duration::from_secs(rng.random_range(2..8));
            let (a, b, c) = (
                rng.random_range(0..n),
                rng.random_range(0..n),
                rng.random_range(0..n),
            );
            match rng.random_range(0..4) {
                // A pause long enough to be declared Down.
                0 => net.paused[a] = Some(net.now + Duration::from_secs(rng.random_range(1..30))),
                1 if a != b && b != c => net.forge(a, b, c, WireState::Suspect),
                2 if a != b && b != c => net.forge(a, b, c, WireState::Down),
                _ => {}
            }
        });
        net.loss = 0.0;
        let settle = faults_end + Duration::from_secs(90);
        net.run_until(settle, |_| {});
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                let m = net.engines[i].member(&ident(j).id).map(|m| m.2);
                assert_eq!(
                    m,
                    Some(State::Alive),
                    "seed {seed}: n{i} holds n{j} {m:?} after the faults ended"
                );
            }
        }
        total_verdicts += net.verdicts;
        total_adopted += net.adopted;
    }
    // The faults did cause Downs, so the checks above were exercised.
    assert!(
        total_verdicts > 0 && total_adopted > 0,
        "{total_verdicts} verdicts, {total_adopted} adopted"
    );
}

/// A suspicion confirmed by others ends sooner than one nobody confirms
/// (dynamic suspicion), and both end in Down for a member that is gone.
#[test]
fn confirmed_suspicions_end_sooner() {
    let n = 12;
    let crash_at = Duration::from_secs(20);
    let mut net = Net::new(n, 77);
    net.run_until(crash_at, |_| {});
    // n0 is gone for good.
    net.paused[0] = Some(Duration::from_secs(100_000));
    let mut first_down: BTreeMap<usize, Duration> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let end = crash_at + Duration::from_secs(60);
    while net.now < end {
        net.step();
        for i in 1..n {
            if !seen.contains(&i)
                && net.engines[i]
                    .member(&ident(0).id)
                    .is_some_and(|m| m.2 == State::Down)
            {
                seen.insert(i);
                first_down.insert(i, net.now - crash_at);
            }
        }
    }
    assert_eq!(first_down.len(), n - 1, "every survivor holds n0 Down");
    let max = net.engines[1].timing.suspicion_max;
    let slowest = first_down.values().max().copied().unwrap_or_default();
    assert!(
        slowest < max,
        "with confirmations every survivor is done ({slowest:?}) before an unconfirmed window ends ({max:?})"
    );
    let confirmations: u64 = net.engines.iter().map(|e| e.counters().confirmations).sum();
    assert!(confirmations > 0);
}

/// A ping to a suspected member carries the suspicion and the member
/// refutes at once (Lifeguard's buddy system).
#[test]
fn a_suspected_member_refutes_when_probed() {
    let config = Config::lan();
    let mut e = Engine::new(ident(1), &config, 5, Duration::ZERO, 1200);
    let inc = e.incarnation();
    let header = Header {
        from: ident(2),
        incarnation: 0,
        body: Body::Ping {
            seq: 9,
            target: ident(1).id,
            suspected: Some(inc),
        },
    };
    let mut bytes = postcard::to_allocvec(&header).expect("encodes");
    bytes.extend(postcard::to_allocvec(&Vec::<News>::new()).expect("encodes"));
    e.handle_packet(MS, &bytes).expect("well-formed");
    assert!(e.incarnation() > inc, "refuted");
    let (_, ack) = e.poll_transmit().expect("an ack");
    let (h, rest): (Header, &[u8]) = postcard::take_from_bytes(&ack).expect("decodes");
    assert_eq!(h.body, Body::Ack { seq: 9 });
    assert_eq!(h.incarnation, e.incarnation());
    // The refutation rides on the ack.
    let news: Vec<News> = postcard::from_bytes(rest).expect("decodes");
    assert!(news.iter().any(|n| matches!(n, News::Member(u) if u.member.id == ident(1).id && u.state == WireState::Alive && u.incarnation == e.incarnation())));
}

/// Malformed packets are refused and change nothing.
#[test]
fn malformed_packets_are_refused() {
    let config = Config::lan();
    let mut e = Engine::new(ident(1), &config, 5, Duration::ZERO, 1200);
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(3);
    for len in 0..200 {
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        let _ = e.handle_packet(MS, &b);
    }
    assert!(e.handle_packet(MS, &[]).is_err());
    // Nothing random bytes said made this node refute or leave.
    assert_eq!(e.incarnation(), 0);
    assert!(e.poll_timeout().is_some());
}

/// After `merge_marked` of a peer's list, `unlike` gives exactly the
/// members (Left ones aside) the peer does not hold as this engine now
/// does: a missing one, one at another incarnation or state, one of another
/// generation, one the merge changed to something else than the claim; and
/// the return value says whether the peer holds this engine as it is.
#[test]
fn a_marked_merge_leaves_out_exactly_what_the_peer_holds_alike() {
    let config = Config::lan();
    let mut e = Engine::new(ident(0), &config, 1, Duration::ZERO, 1200);
    let now = Duration::from_secs(1);
    let alive = |i: usize, inc: u32| (ident(i), inc, WireState::Alive);
    // This engine holds n1..n6 Alive at incarnation 1, n7 Left.
    e.merge(now, (1..=7).map(|i| alive(i, 1)), false);
    e.merge(now, [(ident(7), 1, WireState::Left)], false);
    let newer_gen = Identity::new(ident(5).id, ident(5).addr, Generation(2));
    let peer: Vec<(Identity, u32, WireState)> = vec![
        alive(1, 1),                              // alike
        alive(2, 1),                              // alike
        alive(3, 0),                              // older incarnation: differs
        (ident(4), 1, WireState::Down),           // another state: differs
        (newer_gen.clone(), 0, WireState::Alive), // replaces n5 here: then alike
        alive(8, 1),                              // new here: inserted, then alike
        (ident(0), 0, WireState::Alive),          // this engine, as it is
                                                  // n6 missing: differs; n7 Left: never sent
    ];
    let me_held = e.merge_marked(now, peer.iter().map(|(i, n, s)| (i, *n, *s)));
    assert!(me_held, "the peer holds this engine at its incarnation");
    let unlike: BTreeSet<String> = e
        .unlike()
        .map(|(id, inc, st)| format!("{}:{}:{inc}:{st:?}", id.id, id.generation.0))
        .collect();
    let want: BTreeSet<String> = [
        "n3:1:1:Alive",
        // A remote Down is a suspicion here, raised at incarnation 1.
        "n4:1:1:Suspect",
        "n6:1:1:Alive",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(unlike, want);
    assert!(
        e.member(&newer_gen.id)
            .is_some_and(|(i, _, _)| *i == newer_gen)
    );
    // A second merge starts afresh: a peer that holds nothing alike.
    let me_held = e.merge_marked(now, std::iter::empty());
    assert!(!me_held);
    assert_eq!(e.unlike().count(), 7, "n1..n6 and n8, Left n7 aside");
}

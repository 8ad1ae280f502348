//! Lifeguard and push-pull at the level of `Node`: a few nodes wired
//! together by a hand-driven network, so a test decides exactly which
//! datagrams are lost and reads every message sent.

use std::net::SocketAddr;
use std::time::Duration;

use roster::node::{
    Config, EngineKind, Generation, Identity, MemberCounts, MemberState, Node, NodeId, Now,
};
use roster::wire::{Kind, Message};

fn now(ms: u64) -> Now {
    Now {
        mono: Duration::from_millis(ms),
        wall_ms: 1_767_225_600_000 + ms,
    }
}

/// Which datagrams get through: `(time in ms, from, to)`, nodes by index.
type Links = dyn Fn(u64, usize, usize) -> bool;

/// Nodes on a lossless network with a 1 ms hop, stepped 10 ms at a time.
struct Net {
    nodes: Vec<Node>,
    t: u64,
    /// Messages in flight: (deliver at, from, to, stream, bytes).
    flight: Vec<(u64, usize, usize, bool, Vec<u8>)>,
    /// Every SWIM packet sent: (time, from, to, packet).
    swim_log: Vec<(u64, usize, usize, Vec<u8>)>,
    /// Every stream message sent, in order: (from, to, message).
    stream_log: Vec<(usize, usize, Vec<u8>)>,
}

impl Net {
    fn new(n: usize, config: Config) -> Self {
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let addr: SocketAddr = format!("127.0.0.1:{}", 7000 + i).parse().unwrap();
                let id = Identity::new(NodeId::new(format!("n{i}")).unwrap(), addr, Generation(1));
                Node::new(id, config.clone(), 1 + i as u64, now(0)).unwrap()
            })
            .collect();
        let mut net = Self {
            nodes,
            t: 0,
            flight: Vec::new(),
            swim_log: Vec::new(),
            stream_log: Vec::new(),
        };
        let first = net.nodes[0].identity().addr;
        for i in 1..n {
            net.nodes[i].join(now(0), [first]);
        }
        net
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.identity().addr == addr)
    }

    /// Runs until `done` holds (returns the time) or `until_ms` passes
    /// (panics), delivering what `links` lets through.
    fn run_until(&mut self, until_ms: u64, links: &Links, done: impl Fn(&Net) -> bool) -> u64 {
        while self.t < until_ms {
            if done(self) {
                return self.t;
            }
            self.step(links);
        }
        panic!("condition not reached within {until_ms} ms");
    }

    /// Runs for `ms` whatever happens.
    fn run_for(&mut self, ms: u64, links: &Links) {
        let end = self.t + ms;
        while self.t < end {
            self.step(links);
        }
    }

    fn step(&mut self, links: &Links) {
        self.t += 10;
        let t = self.t;
        let due: Vec<_> = {
            let (due, later) = std::mem::take(&mut self.flight)
                .into_iter()
                .partition(|f| f.0 <= t);
            self.flight = later;
            due
        };
        for (_, from, to, stream, bytes) in due {
            let src = self.nodes[from].identity().addr;
            let node = &mut self.nodes[to];
            let _ = if stream {
                node.handle_message(now(t), src, &bytes)
            } else {
                node.handle_datagram(now(t), src, &bytes)
            };
        }
        for i in 0..self.nodes.len() {
            self.nodes[i].handle_timeout(now(t));
            while let Some(tx) = self.nodes[i].poll_transmit() {
                let Some(to) = self.index_of(tx.dst) else {
                    continue;
                };
                let stream = tx.kind.is_stream();
                if tx.kind == Kind::Swim
                    && let Ok(Message::Swim(p)) = Message::decode(&tx.bytes)
                {
                    self.swim_log.push((t, i, to, p.to_vec()));
                }
                if stream {
                    self.stream_log.push((i, to, tx.bytes.clone()));
                }
                // `links` cuts streams and datagrams alike (streams are
                // reliable against loss, not against a cut).
                if links(t, i, to) {
                    self.flight.push((t + 1, i, to, stream, tx.bytes));
                }
            }
            while self.nodes[i].poll_event().is_some() {}
        }
    }

    fn state_of(&self, observer: usize, member: usize) -> Option<MemberState> {
        let id = &self.nodes[member].identity().id;
        self.nodes[observer].member(id).map(|v| v.state)
    }
}

fn all_links(_: u64, _: usize, _: usize) -> bool {
    true
}

/// Whether a SWIM packet is foca's "you are Down" (`TurnUndead`).
fn is_turn_undead(packet: &[u8]) -> bool {
    postcard::take_from_bytes::<foca::Header<Identity>>(packet)
        .is_ok_and(|(h, _)| h.message == foca::Message::TurnUndead)
}

fn joined(net: &Net) -> bool {
    let n = net.nodes.len();
    net.nodes.iter().all(|x| x.active_members() == n - 1)
}

/// SWIM §4.2 with Lifeguard: a suspicion the member refutes ends there.
/// Every node times a gossiped suspicion itself; when those timers run out
/// after the refutation, no node may tell the member "you are Down" (each
/// such message forces one more refutation and counts one more accuser
/// against the member's health).
#[test]
fn refuted_suspicion_sends_no_you_are_down_to_the_member() {
    let mut net = Net::new(4, Config::local());
    net.run_until(20_000, &all_links, joined);
    let victim = 3;
    // Nothing from the victim gets through for 1.2 s: whoever probes it in
    // that time suspects it; the victim still hears the suspicion and
    // refutes, and its refutation spreads once it can send again.
    let start = net.t;
    let cut = move |t: u64, from: usize, _to: usize| from != victim || t >= start + 1_200;
    let suspected = net.run_until(start + 30_000, &cut, |n| {
        (0..n.nodes.len())
            .filter(|&i| i != victim)
            .any(|i| n.state_of(i, victim) == Some(MemberState::Suspect))
    });
    let refuted_at = net.run_until(suspected + 30_000, &cut, |n| {
        n.nodes[victim].incarnation() >= 1
            && (0..n.nodes.len())
                .filter(|&i| i != victim)
                .all(|i| n.state_of(i, victim) == Some(MemberState::Alive))
    });
    // Every suspicion timer started for it has run out well after this.
    let log_from = net.swim_log.len();
    net.run_for(10_000, &all_links);
    let undead: Vec<_> = net.swim_log[log_from..]
        .iter()
        .filter(|(_, _, to, p)| *to == victim && is_turn_undead(p))
        .map(|(t, from, _, _)| (t, from))
        .collect();
    assert!(
        undead.is_empty(),
        "\"you are Down\" sent to the refuted member after {refuted_at} ms: {undead:?}"
    );
    // The case was exercised: some node saw the refutation while its own
    // suspicion timer was running (timers are never dropped, so it ran out
    // within the 10 s above).
    let saw_refuted: u64 = (0..victim)
        .map(|i| net.nodes[i].metrics().suspicions_refuted)
        .sum();
    assert!(saw_refuted >= 1, "no node saw the suspicion refuted");
    let v = net.nodes[victim].metrics();
    assert_eq!(v.turn_undead_refuted, 0);
    assert_eq!(v.forced_rejoins, 0);
    for i in 0..victim {
        assert_eq!(net.state_of(i, victim), Some(MemberState::Alive));
        assert_eq!(net.nodes[i].metrics().downs_declared, 0);
    }
}

/// Lifeguard: a node whose own probes fail is the likelier problem, so it
/// reaches no Down verdict of its own; it adopts the verdict of members that
/// reached one (a gossiped Down) instead of keeping a crashed member Suspect
/// until its own health recovers.
#[test]
fn a_node_too_unhealthy_to_judge_adopts_a_gossiped_down() {
    let mut net = Net::new(5, Config::local());
    net.run_until(20_000, &all_links, joined);
    let (deaf, crashed) = (0, 4);
    let start = net.t;
    // `deaf` hears nothing for 8 s; `crashed` is gone for good from 3 s.
    let links = move |t: u64, from: usize, to: usize| {
        let gone = t >= start + 3_000 && (from == crashed || to == crashed);
        let unheard = to == deaf && t < start + 8_000;
        !gone && !unheard
    };
    net.run_for(8_000, &links);
    assert!(
        net.nodes[deaf].health_score() > Config::local().judge_max_health,
        "the deaf node should be too unhealthy to judge, health {}",
        net.nodes[deaf].health_score()
    );
    for i in 1..crashed {
        assert_eq!(net.state_of(i, crashed), Some(MemberState::Down));
    }
    let heard_again = net.t;
    let done = net.run_until(heard_again + 30_000, &links, |n| {
        n.state_of(deaf, crashed) == Some(MemberState::Down)
    });
    let m = net.nodes[deaf].metrics();
    assert!(
        m.downs_adopted >= 1,
        "held {:?} Down after {} ms without adopting: {m:?}",
        net.state_of(deaf, crashed),
        done - heard_again
    );
    // Not after its own health recovered (it takes tens of seconds).
    assert!(
        done - heard_again < 5_000,
        "adopted only after {} ms",
        done - heard_again
    );
    // It judged no healthy member, before or after.
    net.run_for(10_000, &links);
    for i in 1..crashed {
        assert_eq!(net.state_of(deaf, i), Some(MemberState::Alive));
    }
    assert_eq!(net.nodes[deaf].metrics().downs_declared, 1);
}

/// `member_counts` (what `/v1/status` reports) agrees with the listing it
/// summarises at every step, through a suspicion, a Down and a leave, with
/// both engines.
#[test]
fn member_counts_agree_with_the_listing_throughout() {
    for engine in [EngineKind::Foca, EngineKind::Native] {
        let mut net = Net::new(
            5,
            Config {
                engine,
                ..Config::local()
            },
        );
        let agree = |net: &Net| {
            net.nodes.iter().all(|n| {
                let mut c = MemberCounts {
                    alive: 1,
                    ..MemberCounts::default()
                };
                n.members().for_each(|m| c.add(m.state));
                c == n.member_counts()
            })
        };
        net.run_until(20_000, &all_links, joined);
        assert!(agree(&net), "{engine:?}: after joining");
        assert_eq!(net.nodes[0].member_counts().alive, 5, "{engine:?}");
        let (crashed, leaver) = (4, 3);
        let start = net.t;
        let links = move |_: u64, from: usize, to: usize| from != crashed && to != crashed;
        let done = net.run_until(start + 30_000, &links, |n| {
            assert!(agree(n), "{engine:?}: at {} ms", n.t);
            n.state_of(0, crashed) == Some(MemberState::Down)
        });
        assert!(done < start + 30_000, "{engine:?}: never Down");
        assert_eq!(net.nodes[0].member_counts().down, 1, "{engine:?}");
        let t = net.t;
        net.nodes[leaver].leave(now(t));
        net.run_until(t + 10_000, &links, |n| {
            assert!(agree(n), "{engine:?}: at {} ms", n.t);
            n.state_of(0, leaver) == Some(MemberState::Left)
        });
        let c = net.nodes[0].member_counts();
        assert_eq!((c.alive, c.down, c.left), (3, 1, 1), "{engine:?}: {c:?}");
    }
}

/// The native engine's catch-up push-pulls after joining: the opening
/// carries a summary of the asker's member list, the answer leaves out
/// every entry the summary holds (Suspect ones aside), and the closing leg
/// leaves out every entry the answer's own summary holds. The views still
/// form completely.
#[test]
fn catch_up_answers_leave_out_what_the_asker_holds() {
    use roster::wire::{MemberDigest, ViewFilter, WireState};
    let n = 30;
    let mut net = Net::new(
        n,
        Config {
            engine: EngineKind::Native,
            ..Config::local()
        },
    );
    net.run_until(20_000, &all_links, joined);
    // Let every catch-up round run.
    net.run_for(10_000, &all_links);
    let held = |f: &ViewFilter, m: &MemberDigest| {
        f.contains(ViewFilter::print(&m.identity, m.incarnation, m.state))
    };
    // The last summary each pair sent the other: (from, to) -> summary.
    let mut asked = std::collections::BTreeMap::new();
    let mut answered = std::collections::BTreeMap::new();
    let (mut asks, mut answer_entries, mut closing_entries) = (0, 0, 0);
    for (from, to, bytes) in &net.stream_log {
        match Message::decode(bytes).unwrap() {
            Message::SyncAsk(a) => {
                asks += 1;
                asked.insert((*from, *to), a.have);
            }
            Message::SyncAnswer(a) => {
                let have = asked.get(&(*to, *from)).expect("an answer follows an ask");
                let list = a.reply.full.map(|f| f.members).unwrap_or_default();
                for m in &list {
                    answer_entries += 1;
                    assert!(
                        m.state == WireState::Suspect || !held(have, m),
                        "n{from} answered n{to} with {} that n{to} holds",
                        m.identity
                    );
                }
                if let Some(h) = a.have {
                    answered.insert((*from, *to), h);
                }
            }
            Message::SyncDeltas(d) => {
                // The closing leg of an ask this node made of `to`.
                if let Some(have) = answered.remove(&(*to, *from)) {
                    for m in &d.members {
                        closing_entries += 1;
                        assert!(
                            !held(&have, m),
                            "n{from} sent back {} that n{to} holds",
                            m.identity
                        );
                    }
                }
            }
            _ => {}
        }
    }
    // Every node but the seed asks at least once (its first round), and
    // the answers carry a small part of what full lists would have.
    assert!(asks >= n - 1, "{asks} catch-up asks");
    assert!(
        answer_entries * 4 < asks * n,
        "{answer_entries} entries in {asks} answers of up to {n}"
    );
    assert!(joined(&net));
    eprintln!("{asks} asks, {answer_entries} answered entries, {closing_entries} sent back");
}

//! Cost of [`Node::handle_datagram`] on a live node.
//!
//! Two nodes join each other over a perfect in-memory network driven in
//! virtual time (every transmit is handed straight to the other node). The
//! probe traffic that follows is captured, and one real SWIM ping from `a`
//! to `b` is replayed into `b`:
//!
//! `node/swim_ping_roundtrip` times the ping in and `b`'s ack (and anything
//! else it queues) drained out, on `b`'s steady joined state. foca answers
//! every ping with an ack and a replayed ping carries no news, so each
//! iteration does the same work.
//!
//! `Node` is not `Clone`, so a per-iteration fresh node would mean a whole
//! join in each setup, which costs far more than the datagram being timed
//! and makes criterion's runs impractically long; the replay is used
//! instead.
//!
//! Run with `cargo bench -p roster --bench node` (add `-- --quick` for a
//! faster, rougher pass).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use roster::node::{Config, Generation, Identity, Node, NodeId, Now, Transmit};
use roster::wire::{self, Kind, Message};

/// Some Unix time in milliseconds, the wall clock at virtual time zero.
const WALL_MS: u64 = 1_700_000_000_000;
/// Upper bound on virtual time for the join (the local preset retries
/// within a second).
const JOIN_DEADLINE: Duration = Duration::from_secs(30);
/// Probe periods to capture traffic over after the join.
const CAPTURE_PERIODS: u32 = 4;

fn at(mono: Duration) -> Now {
    Now {
        mono,
        wall_ms: WALL_MS + mono.as_millis() as u64,
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7946 + i as u16))
}

/// Two nodes on a perfect network, in virtual time.
struct Pair {
    nodes: [Node; 2],
    now: Duration,
}

impl Pair {
    /// `b` (index 1) joins through `a` (index 0); returns once both are
    /// joined and every message in flight is delivered.
    fn joined() -> Self {
        let now = Duration::ZERO;
        let node = |i: usize| {
            let id = Identity::new(
                NodeId::new(format!("node-{i}")).expect("valid node id"),
                addr(i),
                Generation(1),
            );
            Node::new(id, Config::local(), 42 + i as u64, at(now)).expect("valid config")
        };
        let mut pair = Pair {
            nodes: [node(0), node(1)],
            now,
        };
        pair.nodes[1].join(at(now), [addr(0)]);
        pair.deliver_all();
        while !pair.nodes.iter().all(Node::is_joined) {
            assert!(pair.now < JOIN_DEADLINE, "nodes did not join");
            pair.advance();
            pair.deliver_all();
        }
        pair
    }

    fn index_of(dst: SocketAddr) -> usize {
        usize::from(dst != addr(0))
    }

    /// Hands one transmit to its destination.
    fn deliver(&mut self, from: usize, t: &Transmit) {
        let now = at(self.now);
        let to = &mut self.nodes[Self::index_of(t.dst)];
        let r = if t.kind.is_stream() {
            to.handle_message(now, addr(from), &t.bytes)
        } else {
            to.handle_datagram(now, addr(from), &t.bytes)
        };
        r.expect("a node accepts its peer's messages");
    }

    /// Delivers until no node has anything left to send; drops events.
    fn deliver_all(&mut self) {
        loop {
            let mut idle = true;
            for from in 0..2 {
                while let Some(t) = self.nodes[from].poll_transmit() {
                    idle = false;
                    self.deliver(from, &t);
                }
                while self.nodes[from].poll_event().is_some() {}
            }
            if idle {
                return;
            }
        }
    }

    /// Moves virtual time to the next deadline and fires due timers.
    /// Returns what the timers made each node send, undelivered.
    fn advance(&mut self) -> [Vec<Transmit>; 2] {
        let next = self
            .nodes
            .iter()
            .filter_map(Node::poll_timeout)
            .min()
            .expect("a live node always has a timer");
        self.now = self.now.max(next);
        let now = at(self.now);
        let mut out = [Vec::new(), Vec::new()];
        for (node, out) in self.nodes.iter_mut().zip(&mut out) {
            node.handle_timeout(now);
            out.extend(std::iter::from_fn(|| node.poll_transmit()));
        }
        out
    }
}

/// Whether `t` carries a foca ping.
fn is_ping(t: &Transmit) -> bool {
    if t.kind != Kind::Swim {
        return false;
    }
    let Ok(Message::Swim(packet)) = Message::decode(&t.bytes) else {
        return false;
    };
    postcard::take_from_bytes::<foca::Header<Identity>>(packet)
        .is_ok_and(|(h, _)| matches!(h.message, foca::Message::Ping(_)))
}

/// A joined pair and a real ping from `a` to `b`: the first one `a`'s timers
/// produce after a few probe periods of normal traffic. The pair is left
/// with that ping undelivered and everything else delivered.
fn pair_and_ping() -> (Pair, Vec<u8>) {
    let mut pair = Pair::joined();
    let until = pair.now + Config::local().probe_period * CAPTURE_PERIODS;
    let mut ping = None;
    while ping.is_none() {
        assert!(pair.now < JOIN_DEADLINE * 2, "a never pinged b");
        let out = pair.advance();
        for (from, transmits) in out.iter().enumerate() {
            for t in transmits {
                if ping.is_none() && pair.now >= until && from == 0 && is_ping(t) {
                    ping = Some(t.bytes.clone());
                } else {
                    pair.deliver(from, t);
                }
            }
        }
        pair.deliver_all();
    }
    (pair, ping.expect("captured a ping"))
}

/// Hands `ping` to `b` and drains what it answers; returns the number of
/// SWIM datagrams sent back to `a` (the ack).
fn ping_roundtrip(b: &mut Node, now: Now, ping: &[u8]) -> usize {
    b.handle_datagram(now, addr(0), ping)
        .expect("b accepts the ping");
    let mut acks = 0;
    while let Some(t) = b.poll_transmit() {
        acks += usize::from(t.kind == Kind::Swim && t.dst == addr(0));
        black_box(t);
    }
    while b.poll_event().is_some() {}
    acks
}

fn bench_node(c: &mut Criterion) {
    let (pair, ping) = pair_and_ping();
    assert!(matches!(wire::split_envelope(&ping), Ok((Kind::Swim, _))));

    let mut g = c.benchmark_group("node");
    g.throughput(Throughput::Elements(1));

    // Steady state: the same joined `b` handles the ping over and over.
    let now = at(pair.now);
    let [_, mut b] = pair.nodes;
    assert_eq!(ping_roundtrip(&mut b, now, &ping), 1, "b acks the ping");
    assert_eq!(ping_roundtrip(&mut b, now, &ping), 1, "b acks a replay");
    g.bench_function("swim_ping_roundtrip", |bench| {
        bench.iter(|| ping_roundtrip(&mut b, now, black_box(&ping)))
    });

    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_node
}
criterion_main!(benches);

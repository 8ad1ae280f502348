//! Bad input to a node: random bytes, truncated and oversized datagrams
//! never panic, are counted, and leave the node working.

use std::net::SocketAddr;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use roster::node::{Config, EngineKind, Generation, Identity, Node, NodeId, Now};
use roster::wire::{Kind, VERSION};

fn now(ms: u64) -> Now {
    Now {
        mono: Duration::from_millis(ms),
        wall_ms: 1_767_225_600_000 + ms,
    }
}

fn node(name: &str, port: u16) -> Node {
    node_with(EngineKind::Foca, name, port)
}

fn node_with(engine: EngineKind, name: &str, port: u16) -> Node {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let id = Identity::new(NodeId::new(name).unwrap(), addr, Generation(1));
    let mut config = Config::local();
    config.engine = engine;
    Node::new(id, config, 1, now(0)).unwrap()
}

fn shuttle(x: &mut Node, y: &mut Node, t: u64) {
    while let Some(tx) = x.poll_transmit() {
        if tx.dst == y.identity().addr {
            let from = x.identity().addr;
            let _ = if tx.kind.is_stream() {
                y.handle_message(now(t), from, &tx.bytes)
            } else {
                y.handle_datagram(now(t), from, &tx.bytes)
            };
        }
    }
}

/// Shuttles messages between two nodes until `done` or the step budget ends.
fn pump(a: &mut Node, b: &mut Node, until_ms: u64, done: impl Fn(&Node, &Node) -> bool) -> u64 {
    let mut t = 0;
    while t < until_ms {
        shuttle(a, b, t);
        shuttle(b, a, t);
        if done(a, b) {
            return t;
        }
        t += 10;
        a.handle_timeout(now(t));
        b.handle_timeout(now(t));
    }
    panic!("condition not reached within {until_ms} ms");
}

#[test]
fn random_bytes_never_panic_and_are_counted() {
    let mut n = node("a", 7000);
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(3);
    let mut refused = 0u64;
    for i in 0..20_000u64 {
        let len = rng.random_range(0..1300);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if len >= 2 && rng.random_bool(0.7) {
            buf[0] = VERSION;
            buf[1] = Kind::ALL[rng.random_range(0..Kind::ALL.len())] as u8;
        }
        if n.handle_datagram(now(i), from, &buf).is_err() {
            refused += 1;
        }
        let _ = n.handle_message(now(i), from, &buf);
        while n.poll_transmit().is_some() {}
    }
    let m = n.metrics();
    assert!(refused > 0);
    assert!(m.malformed_dropped + m.swim_errors + m.oversized_dropped > 0);
}

/// Random payloads under every message kind's header, on both engines and
/// both paths (datagram, stream): each kind's garbage is refused, never a
/// panic, and the node still joins a peer afterwards.
#[test]
fn garbage_of_every_message_kind_is_refused_and_leaves_the_node_working() {
    for engine in [EngineKind::Foca, EngineKind::Native] {
        let mut a = node_with(engine, "a", 7000);
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(5);
        for kind in Kind::ALL {
            let mut refused = 0;
            for _ in 0..500 {
                let len = rng.random_range(2..1200);
                let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                buf[0] = VERSION;
                buf[1] = kind as u8;
                let r = if kind.is_stream() {
                    a.handle_message(now(0), from, &buf)
                } else {
                    a.handle_datagram(now(0), from, &buf)
                };
                refused += u32::from(r.is_err());
                while a.poll_transmit().is_some() {}
            }
            assert!(refused > 0, "{engine:?}: no garbage {kind:?} was refused");
        }
        let m = a.metrics();
        assert!(m.malformed_dropped + m.swim_errors > 0, "{engine:?}: {m:?}");
        let mut b = node_with(engine, "b", 7001);
        a.join(now(0), [b.identity().addr]);
        pump(&mut a, &mut b, 10_000, |a, b| {
            a.active_members() == 1 && b.active_members() == 1
        });
    }
}

#[test]
fn oversized_datagrams_are_refused_and_counted() {
    let mut n = node("a", 7000);
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut big = vec![VERSION, Kind::Swim as u8];
    big.resize(5000, 0);
    assert!(n.handle_datagram(now(1), from, &big).is_err());
    assert_eq!(n.metrics().oversized_dropped, 1);
}

#[test]
fn two_nodes_join_share_state_and_survive_garbage() {
    let mut a = node("a", 7000);
    let mut b = node("b", 7001);
    a.join(now(0), [b.identity().addr]);
    pump(&mut a, &mut b, 10_000, |a, b| {
        a.active_members() == 1 && b.active_members() == 1
    });
    // Garbage in between does not disturb the pair.
    let junk = [VERSION, Kind::Swim as u8, 0xff, 0xff, 0xff];
    assert!(
        b.handle_datagram(now(20_000), a.identity().addr, &junk)
            .is_err()
    );
    a.set_state(now(20_000), "role", b"web").unwrap();
    let a_id = a.identity().id.clone();
    pump(&mut a, &mut b, 30_000, |_, b| {
        b.state(&a_id, "role").as_deref() == Some(b"web")
    });
    assert_eq!(b.active_members(), 1);
}

#[test]
fn state_limits_are_typed_errors() {
    let mut n = node("a", 7000);
    let err = n.set_state(now(1), "", b"x").unwrap_err();
    assert_eq!(err, roster::node::StateError::EmptyKey);
    let big = vec![0u8; 10_000];
    assert!(matches!(
        n.set_state(now(1), "k", &big),
        Err(roster::node::StateError::ValueTooLarge { .. })
    ));
}

#[test]
fn a_graceful_leave_is_seen_as_left() {
    let mut a = node("a", 7000);
    let mut b = node("b", 7001);
    a.join(now(0), [b.identity().addr]);
    pump(&mut a, &mut b, 10_000, |a, b| {
        a.active_members() == 1 && b.active_members() == 1
    });
    b.leave(now(10_000));
    let b_id = b.identity().id.clone();
    pump(&mut a, &mut b, 15_000, |a, _| {
        a.member(&b_id).map(|m| m.state) == Some(roster::node::MemberState::Left)
    });
    assert_eq!(a.active_members(), 0);
}

#[test]
fn messages_claiming_another_sender_than_the_authenticated_peer_are_refused() {
    let mut a = node("a", 7000);
    let mut b = node("b", 7001);
    a.join(now(0), [b.identity().addr]);
    pump(&mut a, &mut b, 10_000, |a, b| {
        a.active_members() == 1 && b.active_members() == 1
    });
    // Capture a's next transmissions (SWIM and others) towards b.
    let mut captured = Vec::new();
    let mut t = 10_000;
    while captured.len() < 5 && t < 30_000 {
        t += 10;
        a.handle_timeout(now(t));
        while let Some(tx) = a.poll_transmit() {
            captured.push(tx);
        }
    }
    assert!(!captured.is_empty());
    let mallory = NodeId::new("mallory").unwrap();
    let a_id = a.identity().id.clone();
    for tx in &captured {
        let from = a.identity().addr;
        let bad = if tx.kind.is_stream() {
            b.handle_message_from(now(t), from, &mallory, &tx.bytes)
        } else {
            b.handle_datagram_from(now(t), from, &mallory, &tx.bytes)
        };
        assert!(
            matches!(bad, Err(roster::node::InputError::WrongSender { .. })),
            "{:?}: {bad:?}",
            tx.kind
        );
        // The same bytes from the right peer are taken.
        let good = if tx.kind.is_stream() {
            b.handle_message_from(now(t), from, &a_id, &tx.bytes)
        } else {
            b.handle_datagram_from(now(t), from, &a_id, &tx.bytes)
        };
        assert!(!matches!(
            good,
            Err(roster::node::InputError::WrongSender { .. })
        ));
    }
    assert_eq!(b.metrics().wrong_sender_dropped, captured.len() as u64);
}

/// Delivers every queued transmission between the nodes, then advances
/// their clocks, until `done` or the step budget ends.
fn pump_all(
    nodes: &mut [Node],
    from_ms: u64,
    until_ms: u64,
    done: impl Fn(&[Node]) -> bool,
) -> u64 {
    let mut t = from_ms;
    while t < until_ms {
        for i in 0..nodes.len() {
            while let Some(tx) = nodes[i].poll_transmit() {
                let src = nodes[i].identity().addr;
                let src_id = nodes[i].identity().id.clone();
                if let Some(dst) = nodes.iter_mut().find(|n| n.identity().addr == tx.dst) {
                    let _ = if tx.kind.is_stream() {
                        dst.handle_message_from(now(t), src, &src_id, &tx.bytes)
                    } else {
                        dst.handle_datagram_from(now(t), src, &src_id, &tx.bytes)
                    };
                }
            }
        }
        if done(nodes) {
            return t;
        }
        t += 10;
        for n in nodes.iter_mut() {
            n.handle_timeout(now(t));
        }
    }
    panic!("condition not reached within {until_ms} ms");
}

/// A forged write of `a`'s key, sent by `mallory` (a member with a valid
/// identity) to `b` in a push-pull message.
fn forged_sync(
    mallory: &Node,
    owner: &NodeId,
    key: &str,
    value: &[u8],
    hlc: roster::node::Hlc,
) -> Vec<u8> {
    roster::wire::Message::SyncDeltas(roster::wire::SyncDeltas {
        from: mallory.identity().clone(),
        deltas: vec![roster::node::Delta {
            owner: owner.clone(),
            key: key.into(),
            value: Some(value.to_vec()),
            hlc,
        }],
        members: Vec::new(),
        state: None,
        hlc,
    })
    .encode()
    .unwrap()
}

#[test]
fn a_forged_write_of_another_owners_key_is_overwritten_by_the_owner() {
    let mut nodes = vec![node("a", 7000), node("b", 7001), node("mallory", 7002)];
    let a_addr = nodes[0].identity().addr;
    nodes[1].join(now(0), [a_addr]);
    nodes[2].join(now(0), [a_addr]);
    pump_all(&mut nodes, 0, 20_000, |ns| {
        ns.iter().all(|n| n.active_members() == 2)
    });
    let a_id = nodes[0].identity().id.clone();
    let b_id = nodes[1].identity().id.clone();
    nodes[0].set_state(now(20_000), "role", b"web").unwrap();
    pump_all(&mut nodes, 20_000, 40_000, |ns| {
        ns.iter()
            .all(|n| n.state(&a_id, "role").as_deref() == Some(b"web"))
    });
    // Mallory tells b that a's key is now "evil", with a newer stamp.
    let stamp = roster::node::Hlc::new(now(30_000).wall_ms, 0);
    let bytes = forged_sync(&nodes[2], &a_id, "role", b"evil", stamp);
    let m_addr = nodes[2].identity().addr;
    let m_id = nodes[2].identity().id.clone();
    nodes[1]
        .handle_message_from(now(30_000), m_addr, &m_id, &bytes)
        .unwrap();
    assert_eq!(nodes[1].state(&a_id, "role").as_deref(), Some(&b"evil"[..]));
    let took = pump_all(&mut nodes, 30_000, 60_000, |ns| {
        ns.iter()
            .all(|n| n.state(&a_id, "role").as_deref() == Some(b"web"))
    }) - 30_000;
    assert!(took <= 3_000, "the owner's value came back after {took} ms");
    let m = nodes[0].metrics();
    assert_eq!(m.state_forgeries_refuted, 1);
    assert_eq!(m.stale_own_state_retired, 0);
    // b's own keys are b's too: a forged key b never wrote is deleted.
    let bytes = forged_sync(&nodes[2], &b_id, "extra", b"evil", stamp);
    nodes[0]
        .handle_message_from(now(60_000), m_addr, &m_id, &bytes)
        .unwrap();
    pump_all(&mut nodes, 60_000, 90_000, |ns| {
        ns.iter().all(|n| n.state(&b_id, "extra").is_none())
    });
    assert_eq!(nodes[1].metrics().state_forgeries_refuted, 1);
}

#[test]
fn a_restarted_node_retires_its_earlier_lifes_state() {
    let mut nodes = vec![node("a", 7000), node("b", 7001)];
    let a_addr = nodes[0].identity().addr;
    nodes[1].join(now(0), [a_addr]);
    pump_all(&mut nodes, 0, 20_000, |ns| {
        ns.iter().all(|n| n.active_members() == 1)
    });
    let a_id = nodes[0].identity().id.clone();
    nodes[0].set_state(now(20_000), "old", b"1").unwrap();
    pump_all(&mut nodes, 20_000, 40_000, |ns| {
        ns[1].state(&a_id, "old").as_deref() == Some(b"1")
    });
    // a restarts empty (same id, next generation) and rejoins b.
    let id = Identity::new(a_id.clone(), a_addr, Generation(2));
    nodes[0] = Node::new(id, Config::local(), 2, now(40_000)).unwrap();
    nodes[0].set_state(now(40_000), "new", b"2").unwrap();
    let b_addr = nodes[1].identity().addr;
    nodes[0].join(now(40_000), [b_addr]);
    pump_all(&mut nodes, 40_000, 80_000, |ns| {
        ns.iter().all(|n| {
            n.state(&a_id, "old").is_none() && n.state(&a_id, "new").as_deref() == Some(b"2")
        }) && ns[0].metrics().stale_own_state_retired > 0
    });
    assert_eq!(nodes[0].metrics().state_forgeries_refuted, 0);
}

/// A push-pull opening from `from` (native engine, at its incarnation)
/// with a summary of the given words, encoded.
fn summary_ask(from: &Node, words: Vec<u64>) -> Vec<u8> {
    use roster::wire::{ENGINE_NATIVE, Message, SyncAsk, SyncRequest, ViewFilter};
    Message::SyncAsk(SyncAsk {
        request: SyncRequest {
            from: from.identity().clone(),
            incarnation: from.incarnation(),
            engine: ENGINE_NATIVE,
            join: false,
            members_hash: 1,
            state_hash: 1,
            full: None,
            hlc: roster::node::Hlc(0),
        },
        have: ViewFilter { salt: 7, words },
    })
    .encode()
    .unwrap()
}

/// A push-pull opening whose member summary is malformed (no words, not a
/// power of two of them, or over the limit) is refused and counted: no
/// answer, and nothing learned from it. A well-formed one is answered.
#[test]
fn a_malformed_member_summary_is_refused_and_counted() {
    use roster::wire::ViewFilter;
    let mut a = node_with(EngineKind::Native, "a", 7000);
    let b = node_with(EngineKind::Native, "b", 7001);
    let ask = |words: usize| summary_ask(&b, vec![0; words]);
    let from = b.identity().addr;
    for words in [0, 3, ViewFilter::MAX_WORDS * 2] {
        let before = a.metrics().malformed_dropped;
        let _ = a.handle_message(now(0), from, &ask(words));
        assert_eq!(a.metrics().malformed_dropped, before + 1, "{words} words");
        assert!(a.poll_transmit().is_none(), "{words} words: answered");
        assert_eq!(a.active_members(), 0, "{words} words: learned from it");
    }
    let _ = a.handle_message(now(0), from, &ask(4));
    let answer = std::iter::from_fn(|| a.poll_transmit()).find(|tx| tx.kind == Kind::SyncAnswer);
    assert!(answer.is_some_and(|tx| tx.dst == from));
    assert_eq!(a.active_members(), 1);
}

/// A member held Down asks with a summary that claims to hold everything
/// (every bit set: what a false positive does to one entry). The answer
/// still carries the entry about the asker, so the asker learns it is
/// held Down, refutes it, and comes back Alive with the same identity.
#[test]
fn a_summary_never_hides_a_down_from_the_member_it_concerns() {
    use roster::node::MemberState;
    use roster::wire::{Message, WireState};
    // `a` judges with every probe failing (`b` is its only member).
    let mut config = Config::local();
    config.engine = EngineKind::Native;
    config.judge_max_health = config.max_health_score;
    let a_id = Identity::new(
        NodeId::new("a").unwrap(),
        "127.0.0.1:7000".parse().unwrap(),
        Generation(1),
    );
    let mut a = Node::new(a_id, config, 1, now(0)).unwrap();
    let mut b = node_with(EngineKind::Native, "b", 7001);
    let (a_addr, b_addr, b_id) = (
        a.identity().addr,
        b.identity().addr,
        b.identity().id.clone(),
    );
    let ask = |b: &Node, word: u64| summary_ask(b, vec![word; 4]);
    // `a` learns of `b`, then `b` falls silent until `a` holds it Down.
    let _ = a.handle_message(now(0), b_addr, &ask(&b, 0));
    let held_down = |a: &Node| {
        a.member(&b_id)
            .is_some_and(|m| m.state == MemberState::Down)
    };
    let mut t = 0;
    while !held_down(&a) && t < 60_000 {
        t += 10;
        a.handle_timeout(now(t));
        while a.poll_transmit().is_some() {}
    }
    assert!(held_down(&a), "a never held b Down: {:?}", a.member(&b_id));
    let before = b.incarnation();
    let _ = a.handle_message(now(t), b_addr, &ask(&b, u64::MAX));
    let answer = std::iter::from_fn(|| a.poll_transmit())
        .find(|tx| tx.kind == Kind::SyncAnswer && tx.dst == b_addr)
        .expect("a answers b's summary");
    let Ok(Message::SyncAnswer(decoded)) = Message::decode(&answer.bytes) else {
        panic!("not a SyncAnswer");
    };
    let listed: Vec<_> = decoded.reply.full.expect("a list").members;
    assert!(
        listed
            .iter()
            .any(|m| m.identity.id == b_id && m.state == WireState::Down),
        "the answer hid b's Down from b: {listed:?}"
    );
    // The summary did cut the answer: `a`'s own entry, which it claims to
    // hold, is left out.
    assert!(
        listed.iter().all(|m| m.identity.id != a.identity().id),
        "the answer ignored the summary: {listed:?}"
    );
    let _ = if answer.kind.is_stream() {
        b.handle_message(now(t), a_addr, &answer.bytes)
    } else {
        b.handle_datagram(now(t), a_addr, &answer.bytes)
    };
    assert!(b.incarnation() > before, "b did not refute");
    shuttle(&mut b, &mut a, t);
    let seen = a.member(&b_id).expect("a lists b");
    assert_eq!(seen.state, MemberState::Alive, "{seen:?}");
    assert_eq!(seen.incarnation, b.incarnation());
    assert_eq!(
        seen.identity,
        *b.identity(),
        "b came back with another identity"
    );
}

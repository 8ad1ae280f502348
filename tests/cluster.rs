//! Real nodes over QUIC on 127.0.0.1, in one process.
//!
//! Every wait is on a condition with a deadline; nothing sleeps and hopes.

mod common;
use common::wait_async;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use roster::node::{Config, MemberState, NodeId};
use roster::runtime::tls::ClusterCa;
use roster::{Member, Roster};

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start(ca: &ClusterCa, name: &str, join: Option<SocketAddr>, config: Config) -> Roster {
    let mut b = Roster::builder()
        .tls(ca.issue(&id(name)).unwrap())
        .bind(loopback())
        .config(config);
    if let Some(j) = join {
        b = b.join(j);
    }
    b.start().await.unwrap()
}

async fn states(r: &Roster) -> Vec<Member> {
    r.members().await.unwrap_or_default()
}

async fn all_see(
    nodes: &[&Roster],
    expect: usize,
    state: MemberState,
    who: Option<&NodeId>,
) -> bool {
    for n in nodes {
        let m = states(n).await;
        let count = m
            .iter()
            .filter(|m| m.state == state && who.is_none_or(|w| &m.id == w))
            .count();
        if count != expect {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_join_through_different_members_and_see_each_other() {
    let ca = ClusterCa::generate("test").unwrap();
    let mut nodes: Vec<Roster> = Vec::new();
    for i in 0..10 {
        // Each node joins through a different earlier node.
        let join = (i > 0).then(|| nodes[i - 1].local_addr());
        nodes.push(start(&ca, &format!("n{i}"), join, Config::lan()).await);
    }
    let refs: Vec<&Roster> = nodes.iter().collect();
    let took = wait_async(Duration::from_secs(3), "10 Alive everywhere", || {
        all_see(&refs, 10, MemberState::Alive, None)
    })
    .await;
    eprintln!("all 10 nodes saw 10 Alive members {took:?} after the last start");
    for n in nodes {
        n.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_leave_state_and_restart() {
    let ca = ClusterCa::generate("test").unwrap();
    let dir = std::env::temp_dir().join(format!("roster-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut nodes: Vec<Roster> = Vec::new();
    for i in 0..5 {
        let join = (i > 0).then(|| nodes[0].local_addr());
        let b = Roster::builder()
            .tls(ca.issue(&id(&format!("n{i}"))).unwrap())
            .bind(loopback())
            .data_dir(dir.join(format!("n{i}")))
            .config(Config::lan());
        let b = match join {
            Some(j) => b.join(j),
            None => b,
        };
        nodes.push(b.start().await.unwrap());
    }
    {
        let refs: Vec<&Roster> = nodes.iter().collect();
        wait_async(Duration::from_secs(5), "5 Alive", || {
            all_see(&refs, 5, MemberState::Alive, None)
        })
        .await;
    }

    // State spreads.
    nodes[1].set_state("service", b"web").await.unwrap();
    let n1 = id("n1");
    let took = wait_async(Duration::from_secs(2), "state everywhere", || async {
        for n in &nodes {
            let s = n.state_of(&n1).await.unwrap();
            if !s.iter().any(|(k, v)| k == "service" && v == b"web") {
                return false;
            }
        }
        true
    })
    .await;
    eprintln!("state key visible on all nodes after {took:?}");

    // A crash (no goodbye) is Down everywhere.
    let crashed = nodes.pop().unwrap();
    let crashed_id = crashed.identity().id.clone();
    let crashed_addr = crashed.local_addr();
    crashed.kill().await;
    {
        let refs: Vec<&Roster> = nodes.iter().collect();
        let took = wait_async(
            Duration::from_secs(15),
            "crashed node Down everywhere",
            || all_see(&refs, 1, MemberState::Down, Some(&crashed_id)),
        )
        .await;
        eprintln!("crashed node Down on every survivor after {took:?}");
    }

    // Restart on the same data dir: same NodeId, higher generation, Alive
    // again everywhere; no --join needed (the member cache is used).
    let restarted = Roster::builder()
        .tls(ca.issue(&crashed_id).unwrap())
        .bind(crashed_addr)
        .data_dir(dir.join(crashed_id.as_str()))
        .config(Config::lan())
        .start()
        .await
        .unwrap();
    assert_eq!(restarted.identity().id, crashed_id);
    assert!(
        restarted.identity().generation.0 >= 2,
        "{:?}",
        restarted.identity()
    );
    let generation = restarted.identity().generation;
    nodes.push(restarted);
    {
        let refs: Vec<&Roster> = nodes.iter().collect();
        let took = wait_async(
            Duration::from_secs(10),
            "restarted node Alive everywhere",
            || async {
                for n in &refs {
                    let m = states(n).await;
                    if !m.iter().any(|m| {
                        m.id == crashed_id
                            && m.state == MemberState::Alive
                            && m.generation == generation
                    }) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        eprintln!("restarted node (generation {generation}) Alive everywhere after {took:?}");
    }

    // A graceful leave is Left everywhere.
    let leaver = nodes.remove(2);
    let leaver_id = leaver.identity().id.clone();
    leaver.leave().await;
    {
        let refs: Vec<&Roster> = nodes.iter().collect();
        let took = wait_async(Duration::from_secs(3), "leaver Left everywhere", || {
            all_see(&refs, 1, MemberState::Left, Some(&leaver_id))
        })
        .await;
        eprintln!("left node Left everywhere after {took:?}");
    }
    for n in nodes {
        n.leave().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_from_another_ca_never_appears() {
    let ca = ClusterCa::generate("cluster").unwrap();
    let rogue_ca = ClusterCa::generate("rogue").unwrap();
    let a = start(&ca, "a", None, Config::local()).await;
    let b = start(&ca, "b", Some(a.local_addr()), Config::local()).await;
    let rogue = start(&rogue_ca, "rogue", Some(a.local_addr()), Config::local()).await;
    let ab = [&a, &b];
    wait_async(Duration::from_secs(5), "a and b see each other", || {
        all_see(&ab, 2, MemberState::Alive, None)
    })
    .await;
    wait_async(Duration::from_secs(5), "refusal counted", || async {
        a.runtime_metrics().tls_refusals + rogue.runtime_metrics().tls_refusals > 0
    })
    .await;
    // Give the rogue several join retries, then check it never got in.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for n in [&a, &b] {
            let m = states(n).await;
            assert!(
                !m.iter().any(|m| m.id.as_str() == "rogue"),
                "rogue appeared in {:?}",
                n.identity()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(states(&rogue).await.len(), 1, "the rogue sees no one");
    eprintln!(
        "tls refusals: a={} b={} rogue={}",
        a.runtime_metrics().tls_refusals,
        b.runtime_metrics().tls_refusals,
        rogue.runtime_metrics().tls_refusals
    );
    for n in [a, b, rogue] {
        n.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_keys_spread_without_oversized_datagrams() {
    let ca = ClusterCa::generate("test").unwrap();
    let a = start(&ca, "a", None, Config::local()).await;
    let b = start(&ca, "b", Some(a.local_addr()), Config::local()).await;
    let c = start(&ca, "c", Some(b.local_addr()), Config::local()).await;
    let abc = [&a, &b, &c];
    wait_async(Duration::from_secs(5), "3 Alive", || {
        all_see(&abc, 3, MemberState::Alive, None)
    })
    .await;
    let value = vec![b'x'; 100];
    for i in 0..200 {
        a.set_state(&format!("key-{i:03}"), &value).await.unwrap();
    }
    let a_id = a.identity().id.clone();
    let took = wait_async(Duration::from_secs(20), "200 keys everywhere", || async {
        for n in [&b, &c] {
            let keys = n.state_of(&a_id).await.unwrap();
            // The node's own keys (`roster:*`, `tag:*`) are not counted.
            if keys.iter().filter(|(k, _)| k.starts_with("key-")).count() != 200 {
                return false;
            }
        }
        true
    })
    .await;
    eprintln!("200 keys of 100 bytes on every node after {took:?}");
    for n in [&a, &b, &c] {
        assert_eq!(n.runtime_metrics().datagrams_too_large, 0);
    }
    for n in [a, b, c] {
        n.leave().await;
    }
}

/// A member with a valid certificate ("mallory", never joined) dials node
/// `b` over QUIC and pushes, in a push-pull message, a newer value for
/// node `a`'s key. `a` overwrites it with its true value everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_write_from_a_certified_peer_is_overwritten_by_the_owner() {
    use roster::node::{Delta, Generation, Hlc, Identity};
    use roster::wire::{Message, SyncDeltas};

    let ca = ClusterCa::generate("test").unwrap();
    let a = start(&ca, "a", None, Config::lan()).await;
    let b = start(&ca, "b", Some(a.local_addr()), Config::lan()).await;
    let c = start(&ca, "c", Some(a.local_addr()), Config::lan()).await;
    let abc = [&a, &b, &c];
    wait_async(Duration::from_secs(5), "3 Alive", || {
        all_see(&abc, 3, MemberState::Alive, None)
    })
    .await;
    a.set_state("service", b"web").await.unwrap();
    let a_id = a.identity().id.clone();
    let everywhere = |want: &'static [u8]| {
        let a_id = a_id.clone();
        move || {
            let a_id = a_id.clone();
            async move {
                for n in abc {
                    if n.state(&a_id, "service").await.unwrap().as_deref() != Some(want) {
                        return false;
                    }
                }
                true
            }
        }
    };
    wait_async(
        Duration::from_secs(3),
        "a's value everywhere",
        everywhere(b"web"),
    )
    .await;
    assert_eq!(a.node_metrics().await.unwrap().state_forgeries_refuted, 0);

    // Mallory's forged push, over a real QUIC connection with a valid
    // certificate.
    let mallory_cert = ca.issue(&id("mallory")).unwrap();
    let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
    endpoint.set_default_client_config(mallory_cert.client_config().unwrap());
    let conn = endpoint
        .connect(b.local_addr(), roster::runtime::tls::CLUSTER_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    // A test is a driver: it may read the wall clock.
    #[allow(clippy::disallowed_methods)]
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stamp = Hlc::new(wall_ms, 0);
    let forged = Message::SyncDeltas(SyncDeltas {
        from: Identity::new(id("mallory"), endpoint.local_addr().unwrap(), Generation(1)),
        deltas: vec![Delta {
            owner: a_id.clone(),
            key: "service".into(),
            value: Some(b"evil".to_vec()),
            hlc: stamp,
        }],
        members: Vec::new(),
        state: None,
        hlc: stamp,
    })
    .encode()
    .unwrap();
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(&forged).await.unwrap();
    s.finish().unwrap();
    let sent = Instant::now();

    wait_async(Duration::from_secs(3), "a refutes the forgery", || async {
        a.node_metrics().await.unwrap().state_forgeries_refuted >= 1
    })
    .await;
    wait_async(
        Duration::from_secs(3),
        "a's true value back everywhere",
        everywhere(b"web"),
    )
    .await;
    let took = sent.elapsed();
    eprintln!("forged value replaced by the owner's on every node {took:?} after it was sent");
    assert!(took <= Duration::from_secs(3), "{took:?}");
    conn.close(0u32.into(), b"done");
    for n in [a, b, c] {
        n.leave().await;
    }
}

/// Certificate lifetimes: a node refuses to start with an expired
/// certificate, and a peer presenting one is refused at the handshake and
/// counted, as is one whose certificate is not valid yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    // A test is a driver: it may read the wall clock.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    let ca = ClusterCa::generate("test").unwrap();
    let a = start(&ca, "a", None, Config::local()).await;
    let cert = ca.issue(&id("a")).unwrap();
    let left = cert.not_after().unwrap().duration_since(now).unwrap();
    assert!(left > 364 * day && left <= 365 * day, "{left:?}");

    let expired = ca
        .issue_valid(&id("late"), now - 2 * day, now - day)
        .unwrap();
    let err = Roster::builder()
        .tls(expired.clone())
        .bind(loopback())
        .start()
        .await
        .expect_err("an expired certificate is refused at start");
    assert!(err.to_string().contains("expired 1 days ago"), "{err}");

    let early = ca
        .issue_valid(&id("early"), now + day, now + 2 * day)
        .unwrap();
    for (what, cert) in [("expired", expired), ("not yet valid", early)] {
        let before = a.runtime_metrics().tls_refusals;
        let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
        endpoint.set_default_client_config(cert.client_config().unwrap());
        let handshake = endpoint
            .connect(a.local_addr(), roster::runtime::tls::CLUSTER_SERVER_NAME)
            .unwrap()
            .await;
        // TLS 1.3: the client may finish before the server has checked its
        // certificate; then the connection closes at once.
        if let Ok(conn) = handshake {
            let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            assert!(closed.is_ok(), "{what}: the connection stayed open");
        }
        wait_async(Duration::from_secs(5), "the refusal is counted", || async {
            a.runtime_metrics().tls_refusals > before
        })
        .await;
        assert!(
            !states(&a).await.iter().any(|m| m.id.as_str() != "a"),
            "{what}: a peer got in"
        );
    }
    a.leave().await;
}

/// Tries a QUIC handshake with `cert` against `addr`: `true` when the
/// connection is up and stays up for a moment (a server that refuses the
/// client certificate closes it at once).
async fn handshake_holds(cert: &roster::runtime::tls::NodeCert, addr: SocketAddr) -> bool {
    let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
    endpoint.set_default_client_config(cert.client_config().unwrap());
    let Ok(conn) = endpoint
        .connect(addr, roster::runtime::tls::CLUSTER_SERVER_NAME)
        .unwrap()
        .await
    else {
        return false;
    };
    let held = tokio::time::timeout(Duration::from_millis(500), conn.closed())
        .await
        .is_err();
    conn.close(0u32.into(), b"done");
    held
}

/// A revoked certificate: once the revocation is committed, every node
/// refuses that NodeId at the handshake (counted), drops its connections,
/// and the cluster holds it Down; reinstating lets it in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_everywhere() {
    let ca = ClusterCa::generate("test").unwrap();
    let a = start(&ca, "a", None, Config::local()).await;
    let b = start(&ca, "b", Some(a.local_addr()), Config::local()).await;
    let c = start(&ca, "c", Some(a.local_addr()), Config::local()).await;
    let d = start(&ca, "d", Some(a.local_addr()), Config::local()).await;
    let abc = [&a, &b, &c];
    wait_async(Duration::from_secs(5), "4 Alive", || {
        all_see(&abc, 4, MemberState::Alive, None)
    })
    .await;
    let d_id = d.identity().id.clone();
    let d_cert = ca.issue(&d_id).unwrap();
    assert!(handshake_holds(&d_cert, b.local_addr()).await);

    // The metadata cluster forms, then a revokes d through it.
    let mut revoked = None;
    for _ in 0..100 {
        match a.revoke(&d_id).await {
            Ok(i) => {
                revoked = Some(i);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    revoked.expect("the revocation is committed within 10 s");
    let refusals_before = b.runtime_metrics().tls_refusals;
    wait_async(
        Duration::from_secs(5),
        "every node lists d revoked",
        || async {
            for n in abc {
                if n.revoked().await.unwrap() != vec![d_id.clone()] {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert!(!handshake_holds(&d_cert, b.local_addr()).await);
    wait_async(Duration::from_secs(5), "b counts the refusal", || async {
        b.runtime_metrics().tls_refusals > refusals_before
    })
    .await;
    let took = wait_async(Duration::from_secs(20), "d Down everywhere", || {
        all_see(&abc, 1, MemberState::Down, Some(&d_id))
    })
    .await;
    eprintln!("revoked node Down on every other node {took:?} after the revocation spread");

    // Reinstated: its certificate is accepted again.
    a.reinstate(&d_id).await.unwrap();
    wait_async(
        Duration::from_secs(5),
        "no node lists d revoked",
        || async {
            for n in abc {
                if !n.revoked().await.unwrap().is_empty() {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert!(handshake_holds(&d_cert, b.local_addr()).await);
    for n in [a, b, c, d] {
        n.leave().await;
    }
}

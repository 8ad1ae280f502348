//! Fault injection on real nodes (5 on loopback QUIC): cutting node 3 off
//! on every peer makes it Down everywhere, healing brings it back Alive
//! everywhere, and a one-way block makes no healthy node Down.

mod common;
use common::wait_async;

use std::time::Duration;

use roster::node::{Config, MemberState, NodeId};
use roster::runtime::chaos::ChaosRules;
use roster::runtime::tls::ClusterCa;
use roster::{Member, Roster};
use tokio::time::Instant;

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

async fn state_of(r: &Roster, who: &NodeId) -> Option<MemberState> {
    let m: Vec<Member> = r.members().await.unwrap_or_default();
    m.into_iter().find(|m| &m.id == who).map(|m| m.state)
}

/// Whether every node of `observers` holds `who` in `state`.
async fn all_see(nodes: &[Roster], observers: &[usize], who: &NodeId, state: MemberState) -> bool {
    for &i in observers {
        if state_of(&nodes[i], who).await != Some(state) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_a_node_makes_it_down_and_healing_brings_it_back() {
    let ca = ClusterCa::generate("chaos").unwrap();
    let mut nodes: Vec<Roster> = Vec::new();
    for i in 0..5 {
        let mut b = Roster::builder()
            .tls(ca.issue(&id(&format!("n{i}"))).unwrap())
            .bind("127.0.0.1:0".parse().unwrap())
            .config(Config::local());
        if let Some(first) = nodes.first() {
            b = b.join(first.local_addr());
        }
        nodes.push(b.start().await.unwrap());
    }
    let n3 = id("n3");
    let others: Vec<usize> = vec![0, 1, 2, 4];
    wait_async(Duration::from_secs(20), "5 alive everywhere", || async {
        for n in &nodes {
            let m = n.members().await.unwrap();
            if m.iter().filter(|m| m.state == MemberState::Alive).count() != 5 {
                return false;
            }
        }
        true
    })
    .await;

    // Cut n3 off both ways on every peer.
    for &i in &others {
        nodes[i]
            .set_chaos(ChaosRules {
                block: vec![n3.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let down = wait_async(Duration::from_secs(30), "n3 Down on every peer", || {
        all_see(&nodes, &others, &n3, MemberState::Down)
    })
    .await;
    println!("n3 Down on every peer {down:?} after the block");
    let (rules, dropped) = nodes[0].chaos().await.unwrap();
    assert!(rules.is_some() && dropped > 0);

    // Heal: n3 Alive everywhere again within 30 s.
    for &i in &others {
        nodes[i].heal_chaos().await.unwrap();
    }
    let back = wait_async(Duration::from_secs(30), "n3 Alive everywhere", || {
        all_see(&nodes, &others, &n3, MemberState::Alive)
    })
    .await;
    println!("n3 Alive everywhere {back:?} after healing");
    assert!(nodes[0].chaos().await.unwrap().0.is_none());

    // One way: the peers stop hearing n3, n3 still hears them. n3 ends up
    // Down on the peers; no healthy node may be declared Down by another.
    for &i in &others {
        nodes[i]
            .set_chaos(ChaosRules {
                block_in: vec![n3.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    wait_async(
        Duration::from_secs(30),
        "n3 Down under a one-way block",
        || async { state_of(&nodes[0], &n3).await == Some(MemberState::Down) },
    )
    .await;
    // Watch the healthy side for 10 more seconds.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for &i in &others {
            for &j in &others {
                if i != j {
                    // Suspect is allowed (a probe through the loaded
                    // machine may time out and be refuted); Down is not.
                    let s = state_of(&nodes[i], &id(&format!("n{j}"))).await;
                    assert!(
                        matches!(s, Some(MemberState::Alive | MemberState::Suspect)),
                        "n{i} holds healthy n{j} {s:?}"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("one-way block of n3: no healthy node declared Down in 10 s");
    for &i in &others {
        nodes[i].heal_chaos().await.unwrap();
    }
    // Rules may also expire by themselves.
    nodes[1]
        .set_chaos(ChaosRules {
            drop: 1.0,
            for_secs: Some(0.5),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(nodes[1].chaos().await.unwrap().0.is_none());
    assert!(
        nodes[1]
            .set_chaos(ChaosRules {
                drop: 2.0,
                ..Default::default()
            })
            .await
            .is_err()
    );
    for n in nodes {
        n.kill().await;
    }
}

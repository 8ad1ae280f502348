//! Metadata put latency through the leader on loopback: three agents in one
//! process (QUIC between them, Raft logs in redb data dirs, each commit
//! synced to disk on a majority), puts issued one at a time on the
//! leader's handle.
//!
//! Criterion reports the mean and median per put; the bench also prints the
//! p50 and p99 of 2,000 sequential puts measured one by one. Run with
//! `cargo bench -p roster --bench meta`.
#![allow(clippy::disallowed_methods)] // a bench measures wall time

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use roster::Roster;
use roster::node::{Config, NodeId};
use roster::runtime::tls::ClusterCa;

async fn cluster(dir: &std::path::Path) -> Vec<Roster> {
    let ca = ClusterCa::generate("bench").expect("CA");
    let mut nodes: Vec<Roster> = Vec::new();
    for i in 0..3 {
        let name = NodeId::new(format!("b{i}")).expect("name");
        let mut b = Roster::builder()
            .tls(ca.issue(&name).expect("cert"))
            .bind("127.0.0.1:0".parse().expect("addr"))
            .data_dir(dir.join(format!("b{i}")))
            .config(Config::local());
        if let Some(first) = nodes.first() {
            b = b.join(first.local_addr());
        }
        nodes.push(b.start().await.expect("start"));
    }
    nodes
}

async fn leader(nodes: &[Roster]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(s) = nodes[0].meta_status().await
            && s.voters.len() == 3
            && let Some(l) = s.leader
            && let Some(i) = nodes.iter().position(|n| n.identity().id == l)
        {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader with 3 voters within 60 s");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("roster-bench-meta-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let nodes = rt.block_on(cluster(&dir));
    let l = rt.block_on(leader(&nodes));
    let value = vec![b'x'; 100];

    // p50 / p99 of single puts.
    let mut samples: Vec<Duration> = rt.block_on(async {
        let mut s = Vec::with_capacity(2000);
        for i in 0..2000 {
            let t = Instant::now();
            nodes[l]
                .meta_put(&format!("bench/{}", i % 100), &value)
                .await
                .expect("put");
            s.push(t.elapsed());
        }
        s
    });
    samples.sort();
    let q = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "meta put through the leader, 3 voters on loopback, 2000 puts: p50 {:?}, p99 {:?}, max {:?}",
        q(0.5),
        q(0.99),
        samples[samples.len() - 1]
    );

    let mut g = c.benchmark_group("meta");
    g.sample_size(50);
    let mut i = 0u64;
    g.bench_function("put_through_leader_3_voters", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(nodes[l].meta_put(&format!("bench/{}", i % 100), &value))
                .expect("put")
        })
    });
    g.finish();
    rt.block_on(async {
        for n in &nodes {
            n.leave().await;
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! What opening a node-to-node QUIC connection costs: two endpoints on
//! loopback, in one single-threaded runtime, with the configurations a node
//! runs ([`roster::runtime::quic_configs`]). One iteration is a whole
//! handshake (both sides, mutual TLS with node certificates) until both
//! sides hold the connection, then its close. A forming cluster opens one
//! such connection per pair of members that talk, so this is the unit of
//! its start-up CPU.
//!
//! Run with `cargo bench --bench handshake` (add `-- --quick` for a faster,
//! rougher pass).

use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use roster::node::NodeId;
use roster::runtime::quic_configs;
use roster::runtime::tls::{CLUSTER_SERVER_NAME, ClusterCa, Revoked};

fn endpoint(name: &str, ca: &ClusterCa) -> quinn::Endpoint {
    let cert = ca
        .issue(&NodeId::new(name).expect("node id"))
        .expect("issue");
    let (server, client) = quic_configs(&cert, &Revoked::default()).expect("configs");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut e = quinn::Endpoint::server(server, addr).expect("endpoint");
    e.set_default_client_config(client);
    e
}

fn handshake(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ca = ClusterCa::generate("bench").expect("ca");
    let (a, b) = rt.block_on(async { (endpoint("bench-a", &ca), endpoint("bench-b", &ca)) });
    let b_addr = b.local_addr().expect("addr");
    let b = Arc::new(b);
    c.bench_function("quic_handshake_node_to_node", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let connecting = a.connect(b_addr, CLUSTER_SERVER_NAME).expect("connect");
                let incoming = b.accept();
                let (client, server) = tokio::join!(connecting, async {
                    incoming.await.expect("incoming").await
                });
                let (client, server) = (client.expect("client side"), server.expect("server side"));
                client.close(0u32.into(), b"");
                server.close(0u32.into(), b"");
            })
        })
    });
    rt.block_on(async {
        a.close(0u32.into(), b"");
        b.close(0u32.into(), b"");
        a.wait_idle().await;
        b.wait_idle().await;
    });
}

criterion_group!(benches, handshake);
criterion_main!(benches);

//! Encode and decode cost of every wire message kind, at realistic sizes:
//! a 1000-byte SWIM packet, push-pull legs carrying a full view of 100
//! members and 100 owner digests (and 100 deltas where the kind carries
//! them), and the small final-check and leave datagrams.
//!
//! Run with `cargo bench -p roster --bench wire` (add `-- --quick` for a
//! faster, rougher pass).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use roster::node::delta::OwnerDigest;
use roster::node::{Delta, Generation, Hlc, Identity, NodeId};
use roster::wire::{
    self, Leave, MemberDigest, Message, SyncDeltas, SyncFull, SyncReply, SyncRequest, Verify,
    VerifyAck, WireState,
};

/// Members in a full view, owners in a digest and deltas in a batch.
const VIEW: usize = 100;
/// Size of the raw SWIM packet.
const SWIM_BYTES: usize = 1000;
/// Size of a state value in a delta (the default limit is 512).
const VALUE_BYTES: usize = 64;
/// Some Unix time in milliseconds.
const WALL_MS: u64 = 1_700_000_000_000;

fn node_id(i: usize) -> NodeId {
    NodeId::new(format!("node-{i:03}.eu-west-1.example")).expect("valid node id")
}

fn identity(i: usize) -> Identity {
    let addr = SocketAddr::from((
        Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1),
        7946,
    ));
    Identity::new(node_id(i), addr, Generation(3 + i as u64))
}

fn members() -> Vec<MemberDigest> {
    (0..VIEW)
        .map(|i| MemberDigest {
            identity: identity(i),
            incarnation: (i % 7) as u32,
            state: match i % 10 {
                0 => WireState::Suspect,
                1 => WireState::Down,
                _ => WireState::Alive,
            },
        })
        .collect()
}

fn full_view() -> SyncFull {
    SyncFull {
        members: members(),
        state: (0..VIEW)
            .map(|i| {
                let digest = OwnerDigest {
                    max_hlc: Hlc::new(WALL_MS + i as u64 * 17, (i % 5) as u16),
                    hash: 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1),
                    len: 8 + (i % 16) as u32,
                };
                (node_id(i), digest)
            })
            .collect(),
    }
}

fn deltas() -> Vec<Delta> {
    (0..VIEW)
        .map(|i| Delta {
            owner: node_id(i),
            key: format!("service/http/{}", i % 8),
            value: (i % 10 != 0).then(|| vec![b'x'; VALUE_BYTES]),
            hlc: Hlc::new(WALL_MS + i as u64, 0),
        })
        .collect()
}

fn verify() -> Verify {
    Verify {
        origin: identity(0),
        target: identity(1),
        incarnation: 4,
        nonce: 0x0123_4567_89ab_cdef,
    }
}

fn bench_wire(c: &mut Criterion) {
    let swim_packet: Vec<u8> = (0..SWIM_BYTES).map(|i| (i * 31) as u8).collect();
    let cases: Vec<(&str, Message<'_>)> = vec![
        ("swim_1000b", Message::Swim(&swim_packet)),
        (
            "sync_request_join_full100",
            Message::SyncRequest(SyncRequest {
                from: identity(0),
                incarnation: 2,
                engine: 0,
                join: true,
                members_hash: 0xdead_beef,
                state_hash: 0xfeed_face,
                full: Some(full_view()),
                hlc: Hlc::new(WALL_MS, 3),
            }),
        ),
        (
            "sync_request_hashes_only",
            Message::SyncRequest(SyncRequest {
                from: identity(0),
                incarnation: 2,
                engine: 0,
                join: false,
                members_hash: 0xdead_beef,
                state_hash: 0xfeed_face,
                full: None,
                hlc: Hlc::new(WALL_MS, 3),
            }),
        ),
        (
            "sync_reply_full100_deltas100",
            Message::SyncReply(SyncReply {
                from: identity(1),
                incarnation: 5,
                engine: 0,
                full: Some(full_view()),
                deltas: deltas(),
                hlc: Hlc::new(WALL_MS, 4),
            }),
        ),
        (
            "sync_deltas_100_members100",
            Message::SyncDeltas(SyncDeltas {
                from: identity(0),
                deltas: deltas(),
                members: members(),
                state: Some(full_view().state),
                hlc: Hlc::new(WALL_MS, 5),
            }),
        ),
        ("verify", Message::Verify(verify())),
        ("verify_relay", Message::VerifyRelay(verify())),
        (
            "verify_ack",
            Message::VerifyAck(VerifyAck {
                from: identity(1),
                incarnation: 5,
                nonce: 0x0123_4567_89ab_cdef,
            }),
        ),
        (
            "leave",
            Message::Leave(Leave {
                identity: identity(2),
                incarnation: 9,
            }),
        ),
    ];

    for (name, msg) in &cases {
        let bytes = msg.encode().expect("encodes");
        assert_eq!(&Message::decode(&bytes).expect("decodes"), msg);

        let mut g = c.benchmark_group(format!("wire/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("encode", |b| b.iter(|| black_box(msg).encode()));
        g.bench_function("decode", |b| b.iter(|| Message::decode(black_box(&bytes))));
        if let Message::Swim(packet) = msg {
            g.bench_function("encode_swim", |b| {
                b.iter(|| wire::encode_swim(black_box(packet)))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_wire
}
criterion_main!(benches);

//! Arbitrary sequences of inputs to one `Node`: datagrams and stream
//! messages (raw, or a valid envelope around fuzzed payload), time passing,
//! joins, state writes and metadata requests, with either SWIM engine (the
//! first byte chooses). The node must never panic.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use roster::node::{Config, EngineKind, Generation, Identity, MetaOp, Node, NodeId, Now, ReadMode};
use roster::wire::{Kind, VERSION};

fuzz_target!(|data: &[u8]| {
    let me = Identity::new(
        NodeId::new("fuzz").expect("valid"),
        "127.0.0.1:7000".parse::<SocketAddr>().expect("addr"),
        Generation(1),
    );
    let mut now = Now {
        mono: Duration::from_secs(1),
        wall_ms: 1_700_000_000_000,
    };
    let Some((first, data)) = data.split_first() else {
        return;
    };
    let config = Config {
        engine: if first % 2 == 1 { EngineKind::Native } else { EngineKind::Foca },
        ..Config::local()
    };
    let Ok(mut node) = Node::new(me, config, 7, now) else {
        return;
    };
    let peer: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
    let mut rest = data;
    let mut steps = 0;
    while let [op, len, tail @ ..] = rest {
        steps += 1;
        if steps > 256 {
            break;
        }
        let n = (*len as usize).min(tail.len());
        let (chunk, next) = tail.split_at(n);
        rest = next;
        match op % 8 {
            0 => {
                let _ = node.handle_datagram(now, peer, chunk);
            }
            1 => {
                let _ = node.handle_message(now, peer, chunk);
            }
            2 | 3 => {
                // A valid envelope of some kind around fuzzed payload.
                let kind = Kind::ALL[usize::from(*len) % Kind::ALL.len()];
                let mut m = vec![VERSION, kind as u8];
                m.extend_from_slice(chunk);
                let _ = if kind.is_stream() {
                    node.handle_message(now, peer, &m)
                } else {
                    node.handle_datagram(now, peer, &m)
                };
            }
            4 => {
                now.mono += Duration::from_millis(u64::from(*len) * 40);
                now.wall_ms += u64::from(*len) * 40;
                node.handle_timeout(now);
            }
            5 => node.join(now, [peer]),
            6 => {
                let key = String::from_utf8_lossy(chunk).into_owned();
                let _ = node.set_state(now, &key, chunk);
            }
            _ => {
                let key = String::from_utf8_lossy(chunk).into_owned();
                node.meta_request(now, MetaOp::Put { key, value: chunk.to_vec() }, ReadMode::Linearizable);
            }
        }
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
        while node.poll_meta_result().is_some() {}
    }
});

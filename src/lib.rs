//! roster: gossip-based peer-to-peer membership.
//!
//! The core is [`node::Node`], a sans-IO state machine: SWIM failure
//! detection (through foca) with a Lifeguard layer, HLC-stamped state deltas
//! and push-pull anti-entropy. The same `Node` runs in the deterministic
//! simulator (`roster-sim`) and, driven by the QUIC runtime, in real agents.
//!
//! ```
//! use std::time::Duration;
//! use roster::node::{Config, Generation, Identity, Node, NodeId, Now};
//!
//! let now = Now { mono: Duration::ZERO, wall_ms: 1_700_000_000_000 };
//! let id = Identity::new(NodeId::new("a").unwrap(), "127.0.0.1:7946".parse().unwrap(), Generation(1));
//! let mut a = Node::new(id, Config::local(), 42, now).unwrap();
//! a.join(now, ["127.0.0.1:7947".parse().unwrap()]);
//! // The join request is waiting to be sent.
//! let t = a.poll_transmit().unwrap();
//! assert_eq!(t.dst.port(), 7947);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod node;
pub mod runtime;
pub mod wire;

pub use runtime::{Builder, Events, Member, Roster, StartError};

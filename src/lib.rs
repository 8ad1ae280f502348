//! roster: gossip-based peer-to-peer membership.
//!
//! Every node runs SWIM failure detection over QUIC with a Lifeguard layer,
//! spreads HLC-stamped state deltas, and keeps a member list that converges
//! without any fixed seed or coordinator.
//!
//! # Two nodes on loopback
//!
//! Nodes authenticate each other with certificates from one cluster CA (the
//! certificate's subject is the node's name). Start two nodes, let the second
//! join through the first, and wait until each sees the other:
//!
//! ```
//! use std::time::Duration;
//! use roster::node::{Config, Event, MemberState, NodeId};
//! use roster::runtime::tls::ClusterCa;
//! use roster::Roster;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = ClusterCa::generate("example cluster")?;
//! let a = Roster::builder()
//!     .tls(ca.issue(&NodeId::new("a")?)?)
//!     .bind("127.0.0.1:0".parse()?)
//!     .config(Config::local())
//!     .start()
//!     .await?;
//! let b = Roster::builder()
//!     .tls(ca.issue(&NodeId::new("b")?)?)
//!     .bind("127.0.0.1:0".parse()?)
//!     .join(a.local_addr())
//!     .config(Config::local())
//!     .start()
//!     .await?;
//!
//! // Wait (at most 10 s) until both see two Alive members, themselves included.
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
//! loop {
//!     let alive = |m: Vec<roster::Member>| m.iter().filter(|m| m.state == MemberState::Alive).count();
//!     if alive(a.members().await?) == 2 && alive(b.members().await?) == 2 {
//!         break;
//!     }
//!     assert!(tokio::time::Instant::now() < deadline, "nodes did not meet");
//!     tokio::time::sleep(Duration::from_millis(50)).await;
//! }
//!
//! // State written on one node reaches the other, as an event.
//! let mut events = b.subscribe();
//! a.set_state("service", b"web").await?;
//! let change = tokio::time::timeout(Duration::from_secs(10), async {
//!     loop {
//!         if let Some(Event::StateChanged { key, value, .. }) = events.next().await {
//!             break (key, value);
//!         }
//!     }
//! })
//! .await?;
//! assert_eq!(change, ("service".to_string(), Some(b"web".to_vec())));
//!
//! b.leave().await;
//! a.leave().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! - [`node`]: the sans-IO core. [`node::Node`] is a state machine driven by
//!   datagrams, messages and timeouts; it reads no clock and owns a seeded
//!   RNG, so the simulator (`roster-sim`) runs the very same code.
//! - [`runtime`]: drives a `Node` from a quinn endpoint with mutual TLS, and
//!   keeps its identity in a data directory. [`Roster`] is the handle.
//! - [`wire`]: the versioned wire format (part of the core, re-exported
//!   here: [`node::wire`]).
//! - [`api`]: the agent's HTTP API and dashboard.
//! - the `roster` command (`src/main.rs`, `src/cli/`: the agent, client
//!   commands, `cluster`, `demo`, `cert`) is a binary on top of these.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "http")]
pub mod api;
pub mod node;
#[cfg(feature = "plan")]
pub mod plan;
#[cfg(feature = "runtime")]
pub mod runtime;

pub use node::wire;

#[cfg(feature = "runtime")]
pub use runtime::{Builder, Events, Member, Roster, StartError};

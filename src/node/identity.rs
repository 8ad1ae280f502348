//! Who a member is: a stable [`NodeId`], the address it advertises, and a
//! [`Generation`] that grows each time the same node starts again.
//!
//! foca keys its member table by [`foca::Identity::addr`], which here is the
//! `NodeId`: a newer generation of the same node replaces the older one
//! (SWIM's "rejoin under a new identity"), so the table stays bounded by the
//! number of nodes, not the number of restarts.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest accepted [`NodeId`], in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

/// A node's stable name. It is the subject of the node's certificate and the
/// key of the member list. Cloning is cheap (a shared string): foca clones
/// the address of every member it scans.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeId(Arc<str>);

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeId::new(s).map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a valid [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// The name is empty.
    #[error("node id is empty")]
    Empty,
    /// The name is longer than [`MAX_NODE_ID_LEN`] bytes.
    #[error("node id is {0} bytes long, the limit is {MAX_NODE_ID_LEN}")]
    TooLong(usize),
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    #[error("node id holds {0:?}; only ASCII letters, digits, '.', '_' and '-' are allowed")]
    BadChar(char),
}

impl NodeId {
    /// Checks and wraps a node name.
    pub fn new(name: impl Into<String>) -> Result<Self, NodeIdError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if name.len() > MAX_NODE_ID_LEN {
            return Err(NodeIdError::TooLong(name.len()));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NodeIdError::BadChar(c));
        }
        Ok(Self(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// How many times a node with this [`NodeId`] has started (or renewed its
/// identity). A higher generation always wins over a lower one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Generation(pub u64);

impl Generation {
    /// The next generation.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// SWIM incarnation number, owned by the member it describes; it grows each
/// time the member refutes a suspicion (SWIM §4.2).
pub type Incarnation = foca::Incarnation;

/// The identity gossiped for a member: what SWIM probes and what the member
/// list shows.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// Stable name.
    pub id: NodeId,
    /// Address peers reach the node at.
    pub addr: SocketAddr,
    /// Start count of this node.
    pub generation: Generation,
}

impl Identity {
    /// A new identity.
    pub fn new(id: NodeId, addr: SocketAddr, generation: Generation) -> Self {
        Self {
            id,
            addr,
            generation,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}@{}", self.id, self.generation, self.addr)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl foca::Identity for Identity {
    type Addr = NodeId;

    /// Renewal bumps the generation, so the renewed identity wins every
    /// conflict with the old one.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            id: self.id.clone(),
            addr: self.addr,
            generation: self.generation.next(),
        })
    }

    fn addr(&self) -> NodeId {
        self.id.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Higher generation wins; an equal generation with another address
        // (a misconfigured duplicate) is settled by address so every node
        // picks the same winner.
        (self.generation, self.addr) > (adversary.generation, adversary.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity as _;

    #[test]
    fn node_id_rejects_bad_names() {
        assert_eq!(NodeId::new(""), Err(NodeIdError::Empty));
        assert_eq!(NodeId::new("a b"), Err(NodeIdError::BadChar(' ')));
        assert!(matches!(
            NodeId::new("x".repeat(65)),
            Err(NodeIdError::TooLong(65))
        ));
        assert!(NodeId::new("node-1.eu_west").is_ok());
    }

    #[test]
    fn renewed_identity_wins_the_conflict() {
        let a = Identity::new(
            NodeId::new("a").unwrap(),
            "127.0.0.1:1".parse().unwrap(),
            Generation(3),
        );
        let b = a.renew().unwrap();
        assert_eq!(b.generation, Generation(4));
        assert_eq!(a.addr(), b.addr());
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }
}

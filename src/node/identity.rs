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
/// key of the member list. Cloning is cheap (a shared string).
///
/// It also carries a 128-bit key, computed once, held inline: a name shorter
/// than 16 bytes is packed into it (its bytes, zero-padded, then its length),
/// a longer one is digested (two SipHash-1-3 values, the top bit set, so it
/// never equals a packed name). foca compares the key as the member's address
/// on every member it scans (its member table is a vector searched linearly
/// on every update), and ordering two short names compares two integers
/// instead of following two pointers: both dominate the simulator's profile at
/// thousands of nodes. The key never leaves the process.
#[derive(Clone)]
pub struct NodeId {
    name: Arc<str>,
    key: [u64; 2],
}

/// Top bit of `key[0]`: the key is a digest (a name of 16 bytes or more).
/// A packed name starts with an ASCII byte, so its top bit is clear.
const DIGESTED: u64 = 1 << 63;

impl NodeId {
    fn is_packed(&self) -> bool {
        self.key[0] & DIGESTED == 0
    }
}

impl PartialEq for NodeId {
    fn eq(&self, other: &Self) -> bool {
        // A packed key is the name itself; a digest is checked against it.
        self.key == other.key && (self.is_packed() || self.name == other.name)
    }
}

impl Eq for NodeId {}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeId {
    /// By name. Two packed keys compare as the names do: the bytes in order,
    /// zero-padded (names hold no NUL), so a prefix sorts first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.is_packed() && other.is_packed() {
            self.key.cmp(&other.key)
        } else {
            self.name.cmp(&other.name)
        }
    }
}

impl std::hash::Hash for NodeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed from the input where the format allows it, so a decoded
        // name costs one allocation (its shared string), not two.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NodeId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NodeId, E> {
                NodeId::from_str_checked(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A 64-bit finaliser (SplitMix64's): every input bit reaches every output bit.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `name`'s key (see [`NodeId`]). Two words rather than a `u128`, whose
/// 16-byte alignment would pad every structure holding a `NodeId`.
fn key_of(name: &str) -> [u64; 2] {
    let b = name.as_bytes();
    if b.len() < 16 {
        let mut buf = [0u8; 16];
        buf[..b.len()].copy_from_slice(b);
        buf[15] = b.len() as u8;
        let (hi, lo) = buf.split_at(8);
        let word = |w: &[u8]| u64::from_be_bytes(w.try_into().unwrap_or_default());
        return [word(hi), word(lo)];
    }
    // Two independent SipHash-1-3 values (fixed keys: the same in every run
    // of one build).
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        name.hash(&mut h);
        h.finish()
    };
    [half(1) | DIGESTED, half(2)]
}

/// Values in use in this process, by key, held once: every node of a
/// simulated cluster, and every decoded packet of an agent, names the same
/// members. Only weak references are kept, so a value nobody holds is
/// freed; the map is pruned as it grows. What it holds, and its order,
/// never reach any output (it only decides which allocation equal values
/// share).
pub(crate) struct Interner<K, T: ?Sized> {
    held: std::collections::HashMap<K, std::sync::Weak<T>, KeyHash>,
    /// Size of `held` after the last prune.
    kept: usize,
}

/// The interner's hasher: keys are built from names' keys (already mixed
/// or packed bytes), so a fixed mix is enough and the same in every run.
#[derive(Default, Clone, Copy)]
struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = mix64(self.0 ^ x);
    }
}

impl<K: std::hash::Hash + Eq, T: ?Sized + PartialEq> Interner<K, T> {
    pub(crate) const fn new() -> Self {
        Self {
            held: std::collections::HashMap::with_hasher(KeyHash),
            kept: 0,
        }
    }

    /// The shared copy of `value` (whose key is `key`), made by `make` when
    /// none is held.
    pub(crate) fn share(&mut self, key: K, value: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        if let Some(held) = self.held.get(&key).and_then(std::sync::Weak::upgrade)
            && *held == *value
        {
            return held;
        }
        let fresh = make();
        self.held.insert(key, Arc::downgrade(&fresh));
        // Drop values nobody holds once the map has doubled since the last
        // prune: amortised O(1) per new value.
        if self.held.len() > 2 * self.kept + 1024 {
            self.held.retain(|_, w| w.strong_count() > 0);
            self.kept = self.held.len();
        }
        fresh
    }
}

static NAMES: std::sync::Mutex<Interner<[u64; 2], str>> = std::sync::Mutex::new(Interner::new());

/// The shared string for `name` (whose key is `key`).
fn intern(key: [u64; 2], name: &str) -> Arc<str> {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names.share(key, name, || Arc::from(name))
}

type IdentityKey = ([u64; 2], u64, SocketAddr);

static IDENTITIES: std::sync::Mutex<Interner<IdentityKey, Identity>> =
    std::sync::Mutex::new(Interner::new());

/// The shared copy of `identity`: a member table's row holds a pointer to
/// it instead of the identity itself (8 bytes instead of 72).
pub(crate) fn share(identity: &Identity) -> Arc<Identity> {
    let key = (identity.id.key(), identity.generation.0, identity.addr);
    let mut held = IDENTITIES.lock().unwrap_or_else(|e| e.into_inner());
    held.share(key, identity, || Arc::new(identity.clone()))
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
        Self::from_str_checked(&name.into())
    }

    fn from_str_checked(name: &str) -> Result<Self, NodeIdError> {
        if name.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if name.len() > MAX_NODE_ID_LEN {
            return Err(NodeIdError::TooLong(name.len()));
        }
        if let Some(at) = name
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
        {
            // Every byte before `at` is ASCII, so `at` starts a character.
            let c = name[at..]
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(NodeIdError::BadChar(c));
        }
        let key = key_of(name);
        Ok(Self {
            key,
            name: intern(key, name),
        })
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// A 64-bit mix of the key, for order-independent fingerprints of sets
    /// of members (compared within one build, never stored).
    pub fn fingerprint(&self) -> u64 {
        mix64(self.key[0] ^ mix64(self.key[1]))
    }

    /// The name's 128-bit key (see the type's documentation).
    pub fn key(&self) -> [u64; 2] {
        self.key
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
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
/// time the member refutes a suspicion (SWIM §4.2). 32 bits; the foca
/// engine's wire carries 16 of them (see `swim::to_foca`).
pub type Incarnation = u32;

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
    /// The name's key: foca compares it for every member it scans.
    type Addr = [u64; 2];

    /// Renewal bumps the generation, so the renewed identity wins every
    /// conflict with the old one.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            id: self.id.clone(),
            addr: self.addr,
            generation: self.generation.next(),
        })
    }

    fn addr(&self) -> [u64; 2] {
        self.id.key
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
    fn node_ids_order_and_compare_as_their_names() {
        let names = [
            "a",
            "ab",
            "abc",
            "b",
            "n1",
            "n10",
            "n2",
            "node-0001",
            "node-0002",
            "abcdefghijklmn",
            "abcdefghijklmno",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnoq",
            "abcdefghijklmnp",
            "zz",
            "Z",
            "_",
            "0",
            "9-9.9",
            "edge-us-east-1a-node-0042",
            "edge-us-east-1a-node-0043",
        ];
        let ids: Vec<NodeId> = names.iter().map(|n| NodeId::new(*n).unwrap()).collect();
        for (a, x) in names.iter().zip(&ids) {
            for (b, y) in names.iter().zip(&ids) {
                assert_eq!(x.cmp(y), a.cmp(b), "{a} vs {b}");
                assert_eq!(x == y, a == b, "{a} == {b}");
                assert_eq!(x.key() == y.key(), a == b, "keys of {a} and {b}");
            }
        }
        // A clone built from the same string is equal, whatever its length.
        for n in names {
            assert_eq!(NodeId::new(n).unwrap(), NodeId::new(n.to_string()).unwrap());
        }
    }

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

    #[test]
    fn equal_names_and_identities_share_one_allocation_and_are_freed_unused() {
        let a = NodeId::new("shared-name-for-a-test").unwrap();
        let b = NodeId::new("shared-name-for-a-test").unwrap();
        assert!(Arc::ptr_eq(&a.name, &b.name));
        let c = NodeId::new("another-name-for-a-test").unwrap();
        assert!(!Arc::ptr_eq(&a.name, &c.name));
        assert_eq!(c.as_str(), "another-name-for-a-test");

        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let one = Identity::new(a.clone(), addr, Generation(1));
        let (x, y) = (share(&one), share(&one.clone()));
        assert!(Arc::ptr_eq(&x, &y));
        // Another generation or address is another identity.
        let two = Identity::new(a.clone(), addr, Generation(2));
        assert!(!Arc::ptr_eq(&x, &share(&two)));
        assert_eq!(*share(&two), two);
        let moved = Identity::new(a, "127.0.0.1:10".parse().unwrap(), Generation(1));
        assert!(!Arc::ptr_eq(&x, &share(&moved)));

        // Nobody holds it any more: the next one is a new allocation with
        // the same value.
        let weak = Arc::downgrade(&x);
        drop((x, y));
        assert_eq!(weak.strong_count(), 0);
        assert_eq!(*share(&one), one);
    }
}

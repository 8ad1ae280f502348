//! Each node's key/value state and how copies of it converge.
//!
//! Every node owns a small map (its tags and service state). Every write is a
//! [`Delta`] `(owner, key, value | tombstone, hlc)`. Merging is last writer
//! wins under a total order — HLC, then writer `NodeId`, then tombstone over
//! value, then value bytes — so any two nodes that saw the same deltas, in any
//! order, hold the same map.
//!
//! Anti-entropy compares per-owner digests (newest stamp and an
//! order-independent hash of `(key, stamp, tombstone)`), so two nodes in sync
//! exchange only a few bytes.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use super::hash::{FNV_OFFSET, fnv1a};
use super::hlc::Hlc;
use super::identity::NodeId;

/// Size limits on a node's state, enforced on local writes and on every
/// delta received from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Keys per owner, tombstones included. Default 1024.
    pub max_keys: NonZeroUsize,
    /// Bytes in a key. Default 128.
    pub max_key_bytes: NonZeroUsize,
    /// Bytes in a value. Default 512, so one delta always fits in one SWIM
    /// datagram (1160 bytes) beside its header.
    pub max_value_bytes: NonZeroUsize,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            max_keys: NonZeroUsize::new(1024).expect("non-zero"),
            max_key_bytes: NonZeroUsize::new(128).expect("non-zero"),
            max_value_bytes: NonZeroUsize::new(512).expect("non-zero"),
        }
    }
}

/// Why a write or a received delta was refused. State is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Keys must not be empty.
    #[error("state key is empty")]
    EmptyKey,
    /// `tag:*` and `roster:*` keys are written by the node itself (tags from
    /// its configuration, roster's own adverts).
    #[error("state key {0:?} is reserved: tag:* and roster:* keys are written by the agent itself")]
    Reserved(String),
    /// The key is over [`StateLimits::max_key_bytes`].
    #[error("state key is {len} bytes, the limit is {max}")]
    KeyTooLong {
        /// Key length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The value is over [`StateLimits::max_value_bytes`].
    #[error("state value is {len} bytes, the limit is {max}")]
    ValueTooLarge {
        /// Value length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The owner already holds [`StateLimits::max_keys`] keys; delete one first.
    #[error("owner already holds {max} keys (the limit); delete a key first")]
    TooManyKeys {
        /// Limit.
        max: usize,
    },
}

/// One write to one owner's map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The node whose map this key belongs to.
    pub owner: NodeId,
    /// The key.
    pub key: String,
    /// The new value, or `None` for a deletion (tombstone).
    pub value: Option<Vec<u8>>,
    /// When it was written, on the owner's HLC.
    pub hlc: Hlc,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Value, `None` when deleted.
    pub value: Option<Vec<u8>>,
    /// Stamp of the write that produced it.
    pub hlc: Hlc,
}

/// Summary of one owner's map for anti-entropy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerDigest {
    /// Newest stamp held.
    pub max_hlc: Hlc,
    /// XOR of the entry hashes: independent of insertion order.
    pub hash: u64,
    /// Number of entries, tombstones included.
    pub len: u32,
}

#[derive(Debug, Default, Clone)]
struct OwnerState {
    entries: BTreeMap<String, Entry>,
    digest: OwnerDigest,
}

/// All owners' maps as this node knows them.
#[derive(Debug, Clone)]
pub struct StateStore {
    owners: BTreeMap<NodeId, OwnerState>,
    limits: StateLimits,
}

fn entry_hash(key: &str, e: &Entry) -> u64 {
    let h = fnv1a(FNV_OFFSET, key.as_bytes());
    let h = fnv1a(h, &e.hlc.0.to_le_bytes());
    fnv1a(h, &[u8::from(e.value.is_some())])
}

/// Total order of competing writes to one key (see the module docs).
pub(crate) fn wins(new_hlc: Hlc, new_value: &Option<Vec<u8>>, old: &Entry) -> bool {
    use std::cmp::Ordering::*;
    match new_hlc.cmp(&old.hlc) {
        Greater => true,
        Less => false,
        // Same stamp from the same owner: tombstone first, then larger bytes.
        Equal => match (new_value, &old.value) {
            (None, Some(_)) => true,
            (Some(_), None) | (None, None) => false,
            (Some(a), Some(b)) => a > b,
        },
    }
}

impl StateStore {
    /// An empty store enforcing `limits`.
    pub fn new(limits: StateLimits) -> Self {
        Self {
            owners: BTreeMap::new(),
            limits,
        }
    }

    /// The enforced limits.
    pub fn limits(&self) -> StateLimits {
        self.limits
    }

    /// Checks a key and value against the limits.
    pub fn validate(&self, key: &str, value: Option<&[u8]>) -> Result<(), StateError> {
        if key.is_empty() {
            return Err(StateError::EmptyKey);
        }
        if key.len() > self.limits.max_key_bytes.get() {
            return Err(StateError::KeyTooLong {
                len: key.len(),
                max: self.limits.max_key_bytes.get(),
            });
        }
        if let Some(v) = value
            && v.len() > self.limits.max_value_bytes.get()
        {
            return Err(StateError::ValueTooLarge {
                len: v.len(),
                max: self.limits.max_value_bytes.get(),
            });
        }
        Ok(())
    }

    /// Checks whether `owner` may take `key` (an existing key always may).
    pub fn check_room(&self, owner: &NodeId, key: &str) -> Result<(), StateError> {
        let max = self.limits.max_keys.get();
        match self.owners.get(owner) {
            Some(o) if !o.entries.contains_key(key) && o.entries.len() >= max => {
                Err(StateError::TooManyKeys { max })
            }
            _ => Ok(()),
        }
    }

    /// Merges one delta. `Ok(true)` when it changed the store (new
    /// information, worth spreading); `Ok(false)` when it was stale or a
    /// duplicate.
    pub fn merge(&mut self, d: &Delta) -> Result<bool, StateError> {
        self.validate(&d.key, d.value.as_deref())?;
        if let Some(old) = self
            .owners
            .get(&d.owner)
            .and_then(|o| o.entries.get(&d.key))
            && !wins(d.hlc, &d.value, old)
        {
            return Ok(false);
        }
        self.check_room(&d.owner, &d.key)?;
        let owner = self.owners.entry(d.owner.clone()).or_default();
        let new = Entry {
            value: d.value.clone(),
            hlc: d.hlc,
        };
        let new_hash = entry_hash(&d.key, &new);
        match owner.entries.insert(d.key.clone(), new) {
            Some(old) => owner.digest.hash ^= entry_hash(&d.key, &old) ^ new_hash,
            None => {
                owner.digest.hash ^= new_hash;
                owner.digest.len += 1;
            }
        }
        owner.digest.max_hlc = owner.digest.max_hlc.max(d.hlc);
        Ok(true)
    }

    /// The live value of `owner`'s `key`.
    pub fn get(&self, owner: &NodeId, key: &str) -> Option<&[u8]> {
        self.entry(owner, key).and_then(|e| e.value.as_deref())
    }

    /// The entry (tombstones included) of `owner`'s `key`.
    pub fn entry(&self, owner: &NodeId, key: &str) -> Option<&Entry> {
        self.owners.get(owner).and_then(|o| o.entries.get(key))
    }

    /// Live `(key, value)` pairs of one owner, in key order.
    pub fn live_entries<'a>(
        &'a self,
        owner: &NodeId,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.owners
            .get(owner)
            .into_iter()
            .flat_map(|o| o.entries.iter())
            .filter_map(|(k, e)| e.value.as_deref().map(|v| (k.as_str(), v)))
    }

    /// Every owner's digest, in owner order.
    pub fn digest(&self) -> Vec<(NodeId, OwnerDigest)> {
        self.owners
            .iter()
            .map(|(id, o)| (id.clone(), o.digest))
            .collect()
    }

    /// One hash over all digests: equal on two nodes holding the same state.
    pub fn state_hash(&self) -> u64 {
        self.owners.iter().fold(FNV_OFFSET, |h, (id, o)| {
            let h = fnv1a(h, id.as_str().as_bytes());
            let h = fnv1a(h, &o.digest.hash.to_le_bytes());
            fnv1a(h, &o.digest.max_hlc.0.to_le_bytes())
        })
    }

    /// Digest of one owner (zero when unknown).
    pub fn owner_digest(&self, owner: &NodeId) -> OwnerDigest {
        self.owners.get(owner).map(|o| o.digest).unwrap_or_default()
    }

    /// All of `owner`'s entries as deltas, tombstones included.
    pub fn deltas_of(&self, owner: &NodeId) -> Vec<Delta> {
        self.owners
            .get(owner)
            .map(|o| {
                o.entries
                    .iter()
                    .map(|(k, e)| Delta {
                        owner: owner.clone(),
                        key: k.clone(),
                        value: e.value.clone(),
                        hlc: e.hlc,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Deltas the holder of `remote` lacks or holds differently: every
    /// entry of each owner whose digest differs. LWW makes resending
    /// entries the peer already has harmless.
    pub fn deltas_missing_from(&self, remote: &[(NodeId, OwnerDigest)]) -> Vec<Delta> {
        let remote: BTreeMap<&NodeId, &OwnerDigest> = remote.iter().map(|(k, v)| (k, v)).collect();
        let mut out = Vec::new();
        for (owner, state) in &self.owners {
            if remote.get(owner).copied() != Some(&state.digest) {
                out.extend(self.deltas_of(owner));
            }
        }
        out
    }

    /// Number of owners with state.
    pub fn owner_count(&self) -> usize {
        self.owners.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn d(owner: &str, key: &str, value: Option<&str>, hlc: u64) -> Delta {
        Delta {
            owner: id(owner),
            key: key.into(),
            value: value.map(|v| v.as_bytes().to_vec()),
            hlc: Hlc(hlc),
        }
    }

    #[test]
    fn lww_merge_table() {
        // (first, second, expected live value after both)
        let cases = [
            (
                d("a", "k", Some("1"), 10),
                d("a", "k", Some("2"), 11),
                Some("2"),
            ),
            (
                d("a", "k", Some("2"), 11),
                d("a", "k", Some("1"), 10),
                Some("2"),
            ),
            (d("a", "k", Some("1"), 10), d("a", "k", None, 11), None),
            (d("a", "k", None, 11), d("a", "k", Some("1"), 10), None),
            // Same stamp: tombstone wins, then larger bytes.
            (d("a", "k", Some("x"), 10), d("a", "k", None, 10), None),
            (
                d("a", "k", Some("x"), 10),
                d("a", "k", Some("y"), 10),
                Some("y"),
            ),
            (
                d("a", "k", Some("y"), 10),
                d("a", "k", Some("x"), 10),
                Some("y"),
            ),
        ];
        for (first, second, expected) in cases {
            for order in [[&first, &second], [&second, &first]] {
                let mut s = StateStore::new(StateLimits::default());
                for delta in order {
                    s.merge(delta).unwrap();
                }
                assert_eq!(
                    s.get(&id("a"), "k"),
                    expected.map(str::as_bytes),
                    "{first:?} / {second:?}"
                );
            }
        }
    }

    #[test]
    fn duplicates_and_stale_deltas_are_not_new_information() {
        let mut s = StateStore::new(StateLimits::default());
        assert!(s.merge(&d("a", "k", Some("1"), 10)).unwrap());
        assert!(!s.merge(&d("a", "k", Some("1"), 10)).unwrap());
        assert!(!s.merge(&d("a", "k", Some("0"), 9)).unwrap());
    }

    #[test]
    fn digests_match_regardless_of_order_and_spot_differences() {
        let deltas = [
            d("a", "x", Some("1"), 1),
            d("a", "y", Some("2"), 2),
            d("b", "x", None, 3),
            d("a", "x", Some("3"), 4),
        ];
        let mut s1 = StateStore::new(StateLimits::default());
        let mut s2 = StateStore::new(StateLimits::default());
        for x in &deltas {
            s1.merge(x).unwrap();
        }
        for x in deltas.iter().rev() {
            s2.merge(x).unwrap();
        }
        assert_eq!(s1.digest(), s2.digest());
        assert_eq!(s1.state_hash(), s2.state_hash());
        assert!(s1.deltas_missing_from(&s2.digest()).is_empty());

        s2.merge(&d("b", "z", Some("new"), 5)).unwrap();
        assert_ne!(s1.state_hash(), s2.state_hash());
        let missing = s2.deltas_missing_from(&s1.digest());
        assert!(missing.iter().all(|x| x.owner == id("b")));
        for x in &missing {
            s1.merge(x).unwrap();
        }
        assert_eq!(s1.state_hash(), s2.state_hash());
    }

    #[test]
    fn limits_are_enforced_with_typed_errors() {
        let limits = StateLimits {
            max_keys: NonZeroUsize::new(2).unwrap(),
            max_key_bytes: NonZeroUsize::new(4).unwrap(),
            max_value_bytes: NonZeroUsize::new(3).unwrap(),
        };
        let mut s = StateStore::new(limits);
        assert_eq!(
            s.merge(&d("a", "", Some("1"), 1)),
            Err(StateError::EmptyKey)
        );
        assert_eq!(
            s.merge(&d("a", "toolong", Some("1"), 1)),
            Err(StateError::KeyTooLong { len: 7, max: 4 })
        );
        assert_eq!(
            s.merge(&d("a", "k", Some("1234"), 1)),
            Err(StateError::ValueTooLarge { len: 4, max: 3 })
        );
        s.merge(&d("a", "k1", Some("1"), 1)).unwrap();
        s.merge(&d("a", "k2", Some("1"), 2)).unwrap();
        assert_eq!(
            s.merge(&d("a", "k3", Some("1"), 3)),
            Err(StateError::TooManyKeys { max: 2 })
        );
        // Overwriting an existing key is always allowed.
        assert!(s.merge(&d("a", "k1", Some("2"), 4)).unwrap());
        assert_eq!(s.get(&id("a"), "k3"), None);
    }
}

//! The replicated state machine: a key/value store, the voters' names and
//! the cluster's identity, with the Raft configuration it was applied
//! under. The same code applies entries on voters (from Raft) and on
//! non-voters (from entries pulled after a gossiped commit).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::placement::Table;
use super::{MetaError, MetaOp, MetaReply, RaftId};

/// What a log entry carries: a client operation, or a placement table the
/// leader computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEntry {
    /// A client operation.
    Op(MetaOp),
    /// A new partition placement.
    Placement(Table),
}
use crate::node::identity::NodeId;

/// Limits of the replicated store, checked before a write is proposed:
/// sizes over them fail with [`MetaError::Invalid`], a full prefix with
/// [`MetaError::Quota`], a full store with [`MetaError::StoreFull`].
///
/// Quotas are per prefix — a key's text up to and including its first `/`
/// (`app1/config` is under `app1/`; keys without `/` share the empty
/// prefix) — so one client writing under its own prefix cannot fill the
/// store for the others. The store keeps `system_reserve_*` free for
/// roster's own `roster/` entries, which no quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaLimits {
    /// Longest key, bytes. 256.
    pub max_key_bytes: usize,
    /// Longest value, bytes. 64 KiB.
    pub max_value_bytes: usize,
    /// Most keys. 10,000.
    pub max_keys: usize,
    /// Most bytes of keys and values together. 4 MiB (a snapshot must fit
    /// in one stream message).
    pub max_total_bytes: usize,
    /// Most bytes of keys and values under one prefix. 1 MiB.
    pub max_prefix_bytes: usize,
    /// Most keys under one prefix. 2,500.
    pub max_prefix_keys: usize,
    /// Bytes of `max_total_bytes` only roster's own entries may use. 256 KiB.
    pub system_reserve_bytes: usize,
    /// Keys of `max_keys` only roster's own entries may use. 100.
    pub system_reserve_keys: usize,
}

impl Default for MetaLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 256,
            max_value_bytes: 64 * 1024,
            max_keys: 10_000,
            max_total_bytes: 4 * 1024 * 1024,
            max_prefix_bytes: 1024 * 1024,
            max_prefix_keys: 2_500,
            system_reserve_bytes: 256 * 1024,
            system_reserve_keys: 100,
        }
    }
}

/// The Raft configuration as applied (raft-rs' `ConfState`, in a form the
/// snapshot can carry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conf {
    /// Voters.
    pub voters: Vec<RaftId>,
    /// Voters of the outgoing configuration while joint.
    pub voters_outgoing: Vec<RaftId>,
    /// Learners.
    pub learners: Vec<RaftId>,
    /// Learners joining with the next configuration.
    pub learners_next: Vec<RaftId>,
    /// Leave the joint configuration automatically.
    pub auto_leave: bool,
}

impl Conf {
    /// From raft-rs.
    pub fn from_raft(cs: &raft::eraftpb::ConfState) -> Self {
        Self {
            voters: cs.voters.clone(),
            voters_outgoing: cs.voters_outgoing.clone(),
            learners: cs.learners.clone(),
            learners_next: cs.learners_next.clone(),
            auto_leave: cs.auto_leave,
        }
    }

    /// To raft-rs.
    pub fn to_raft(&self) -> raft::eraftpb::ConfState {
        raft::eraftpb::ConfState {
            voters: self.voters.clone(),
            voters_outgoing: self.voters_outgoing.clone(),
            learners: self.learners.clone(),
            learners_next: self.learners_next.clone(),
            auto_leave: self.auto_leave,
            ..Default::default()
        }
    }
}

/// The replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Cluster id (0: none yet).
    pub cluster: u64,
    /// Last applied index and its term.
    pub applied: u64,
    /// Term of the last applied entry.
    pub applied_term: u64,
    /// The store.
    pub kv: BTreeMap<String, Vec<u8>>,
    /// Bytes of keys and values in `kv`.
    pub bytes: usize,
    /// Voters and learners by Raft id, with their names.
    pub names: BTreeMap<RaftId, NodeId>,
    /// The Raft configuration after the last applied entry.
    pub conf: Conf,
    /// Partitions (fixed at bootstrap).
    pub partition_count: u32,
    /// Slots per partition (fixed at bootstrap).
    pub replication_factor: u32,
    /// The committed placement, once the leader made one: shared by every
    /// copy of the process that holds the same table (see
    /// `placement::share`), so the nodes of a simulated cluster
    /// hold one table, not one each (it lists every eligible member).
    pub placement: Option<std::sync::Arc<Table>>,
}

/// The quota prefix of a key: up to and including its first `/`, or empty
/// for a key without one.
pub fn prefix_of(key: &str) -> &str {
    key.find('/').map_or("", |i| &key[..=i])
}

/// How a configuration change names the nodes it adds: carried in the
/// entry's context.
pub type ConfNames = Vec<(RaftId, NodeId)>;

impl Machine {
    /// Checks an operation against the limits (and, for writes, against the
    /// current size) before it is proposed.
    pub fn validate(&self, op: &MetaOp, limits: &MetaLimits) -> Result<(), MetaError> {
        let key = op.key();
        if !matches!(op, MetaOp::List { .. }) && key.is_empty() {
            return Err(MetaError::Invalid("empty key".into()));
        }
        if key.len() > limits.max_key_bytes {
            return Err(MetaError::Invalid(format!(
                "key of {} bytes is over the {}-byte limit",
                key.len(),
                limits.max_key_bytes
            )));
        }
        let value = match op {
            MetaOp::Put { value, .. } => Some(value),
            MetaOp::Cas { value, expect, .. } => {
                if expect
                    .as_ref()
                    .is_some_and(|e| e.len() > limits.max_value_bytes)
                {
                    return Err(MetaError::Invalid("expected value over the limit".into()));
                }
                value.as_ref()
            }
            _ => None,
        };
        if let Some(v) = value {
            if v.len() > limits.max_value_bytes {
                return Err(MetaError::Invalid(format!(
                    "value of {} bytes is over the {}-byte limit",
                    v.len(),
                    limits.max_value_bytes
                )));
            }
            self.check_room(key, v.len(), limits)?;
        }
        Ok(())
    }

    /// Whether writing `value_len` bytes at `key` keeps the store, and the
    /// key's prefix, within their limits.
    fn check_room(
        &self,
        key: &str,
        value_len: usize,
        limits: &MetaLimits,
    ) -> Result<(), MetaError> {
        let old = self.kv.get(key).map(|o| key.len() + o.len());
        let new_key = usize::from(old.is_none());
        let old = old.unwrap_or(0);
        let system = key.starts_with(super::RESERVED_META_PREFIX);
        let (max_keys, max_bytes) = if system {
            (limits.max_keys, limits.max_total_bytes)
        } else {
            (
                limits.max_keys.saturating_sub(limits.system_reserve_keys),
                limits
                    .max_total_bytes
                    .saturating_sub(limits.system_reserve_bytes),
            )
        };
        if self.kv.len() + new_key > max_keys {
            return Err(MetaError::StoreFull(format!(
                "the store holds its limit of {max_keys} keys for clients"
            )));
        }
        if self.bytes - old + key.len() + value_len > max_bytes {
            return Err(MetaError::StoreFull(format!(
                "the store would exceed its {max_bytes}-byte limit for clients ({} bytes used)",
                self.bytes
            )));
        }
        if system {
            return Ok(());
        }
        let prefix = prefix_of(key);
        let (keys, bytes) = self.usage(prefix);
        if keys + new_key > limits.max_prefix_keys {
            return Err(MetaError::Quota(format!(
                "prefix {prefix:?} holds its quota of {} keys",
                limits.max_prefix_keys
            )));
        }
        if bytes - old + key.len() + value_len > limits.max_prefix_bytes {
            return Err(MetaError::Quota(format!(
                "prefix {prefix:?} would exceed its quota of {} bytes ({bytes} used)",
                limits.max_prefix_bytes
            )));
        }
        Ok(())
    }

    /// Keys and bytes under `prefix` (as [`prefix_of`] cuts it). Walks the
    /// prefix's keys, at most the key quota of them.
    pub fn usage(&self, prefix: &str) -> (usize, usize) {
        self.kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| prefix_of(k) == prefix)
            .fold((0, 0), |(n, b), (k, v)| (n + 1, b + k.len() + v.len()))
    }

    /// Serves a read from the local copy.
    pub fn read(&self, op: &MetaOp) -> MetaReply {
        match op {
            MetaOp::List { prefix } => MetaReply::List {
                entries: self
                    .kv
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                index: self.applied,
            },
            other => MetaReply::Value {
                value: self.kv.get(other.key()).cloned(),
                index: self.applied,
            },
        }
    }

    fn set(&mut self, key: &str, value: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let old = match value {
            Some(v) => {
                self.bytes += key.len() + v.len();
                self.kv.insert(key.to_owned(), v)
            }
            None => self.kv.remove(key),
        };
        if let Some(o) = &old {
            self.bytes -= key.len() + o.len();
        }
        old
    }

    /// Applies a committed operation at `index`. Writes over the limits
    /// (possible only when the limits differ between nodes) are refused the
    /// same way on every node, so copies never diverge.
    pub fn apply(&mut self, op: &MetaOp, index: u64, term: u64) -> MetaReply {
        self.applied = index;
        self.applied_term = term;
        match op {
            MetaOp::Get { .. } | MetaOp::List { .. } => self.read(op),
            MetaOp::Put { key, value } => {
                self.set(key, Some(value.clone()));
                MetaReply::Written { index }
            }
            MetaOp::Cas { key, expect, value } => {
                let swapped = self.kv.get(key) == expect.as_ref();
                if swapped {
                    self.set(key, value.clone());
                }
                MetaReply::Cas {
                    swapped,
                    current: self.kv.get(key).cloned(),
                    index,
                }
            }
            MetaOp::Delete { key } => MetaReply::Deleted {
                existed: self.set(key, None).is_some(),
                index,
            },
        }
    }

    /// Applies a committed log entry: the reply for a client operation,
    /// `None` for a placement.
    pub fn apply_entry(&mut self, e: &LogEntry, index: u64, term: u64) -> Option<MetaReply> {
        match e {
            LogEntry::Op(op) => Some(self.apply(op, index, term)),
            LogEntry::Placement(t) => {
                self.skip(index, term);
                self.placement = Some(super::placement::share(t));
                None
            }
        }
    }

    /// Marks an entry without an operation (a leader's empty entry) applied.
    pub fn skip(&mut self, index: u64, term: u64) {
        self.applied = index;
        self.applied_term = term;
    }

    /// Applies a configuration change: the new configuration, and the names
    /// of the nodes it adds (from the entry's context).
    pub fn apply_conf(&mut self, conf: Conf, names: ConfNames, index: u64, term: u64) {
        self.skip(index, term);
        for (id, name) in names {
            self.names.insert(id, name);
        }
        let keep = |id: &RaftId| {
            conf.voters.contains(id)
                || conf.voters_outgoing.contains(id)
                || conf.learners.contains(id)
                || conf.learners_next.contains(id)
        };
        self.names.retain(|id, _| keep(id));
        self.conf = conf;
    }

    /// Voter names, sorted.
    pub fn voter_names(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .conf
            .voters
            .iter()
            .chain(self.conf.voters_outgoing.iter())
            .filter_map(|id| self.names.get(id).cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Serialises for a snapshot.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Reads a snapshot.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut m: Self = postcard::from_bytes(b).ok()?;
        m.placement = m.placement.map(|t| super::placement::share(&t));
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> MetaOp {
        MetaOp::Put {
            key: k.into(),
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn apply_put_cas_delete_and_list() {
        let mut m = Machine::default();
        assert_eq!(
            m.apply(&put("a/1", "x"), 1, 1),
            MetaReply::Written { index: 1 }
        );
        m.apply(&put("a/2", "y"), 2, 1);
        m.apply(&put("b/1", "z"), 3, 1);
        let cas = |e: Option<&str>, v: Option<&str>| MetaOp::Cas {
            key: "a/1".into(),
            expect: e.map(|s| s.as_bytes().to_vec()),
            value: v.map(|s| s.as_bytes().to_vec()),
        };
        assert!(matches!(
            m.apply(&cas(Some("nope"), Some("w")), 4, 1),
            MetaReply::Cas { swapped: false, .. }
        ));
        assert!(matches!(
            m.apply(&cas(Some("x"), Some("w")), 5, 1),
            MetaReply::Cas { swapped: true, .. }
        ));
        let MetaReply::List { entries, index } = m.read(&MetaOp::List {
            prefix: "a/".into(),
        }) else {
            panic!("list")
        };
        assert_eq!(index, 5);
        assert_eq!(
            entries,
            vec![
                ("a/1".to_string(), b"w".to_vec()),
                ("a/2".to_string(), b"y".to_vec())
            ]
        );
        assert_eq!(
            m.apply(&MetaOp::Delete { key: "a/2".into() }, 6, 2),
            MetaReply::Deleted {
                existed: true,
                index: 6
            }
        );
        assert_eq!(m.bytes, "a/1".len() + 1 + "b/1".len() + 1);
        assert_eq!(Machine::decode(&m.encode()), Some(m));
    }

    /// Every copy of the process that applies (or decodes from a snapshot)
    /// the same placement holds one table; another table is its own.
    #[test]
    fn copies_of_one_placement_share_it() {
        let table = |nodes: &[&str]| Table {
            partition_count: 2,
            replication_factor: 1,
            owners: vec![vec![NodeId::new(nodes[0]).unwrap()]; 2],
            nodes: nodes.iter().map(|n| NodeId::new(*n).unwrap()).collect(),
        };
        let entry = LogEntry::Placement(table(&["a", "b"]));
        let (mut x, mut y) = (Machine::default(), Machine::default());
        x.apply_entry(&entry, 1, 1);
        y.apply_entry(&entry, 1, 1);
        let z = Machine::decode(&x.encode()).unwrap();
        let (px, py, pz) = (
            x.placement.unwrap(),
            y.placement.unwrap(),
            z.placement.unwrap(),
        );
        assert!(std::sync::Arc::ptr_eq(&px, &py));
        assert!(std::sync::Arc::ptr_eq(&px, &pz));
        assert_eq!(*px, table(&["a", "b"]));
        let mut w = Machine::default();
        w.apply_entry(&LogEntry::Placement(table(&["a", "c"])), 1, 1);
        let pw = w.placement.unwrap();
        assert!(!std::sync::Arc::ptr_eq(&px, &pw));
        assert_eq!(*pw, table(&["a", "c"]));
    }

    #[test]
    fn limits_are_enforced_before_proposing() {
        let limits = MetaLimits {
            max_key_bytes: 4,
            max_value_bytes: 4,
            max_keys: 1,
            max_total_bytes: 8,
            system_reserve_bytes: 0,
            system_reserve_keys: 0,
            ..MetaLimits::default()
        };
        let mut m = Machine::default();
        assert!(m.validate(&put("", "x"), &limits).is_err());
        assert!(m.validate(&put("toolong", "x"), &limits).is_err());
        assert!(m.validate(&put("k", "12345"), &limits).is_err());
        assert!(m.validate(&put("k", "1"), &limits).is_ok());
        m.apply(&put("k", "1"), 1, 1);
        assert!(m.validate(&put("j", "1"), &limits).is_err());
        assert!(m.validate(&put("k", "1234"), &limits).is_ok());
        assert!(Machine::decode(&[0xff, 0xff]).is_none());
    }

    #[test]
    fn a_full_prefix_blocks_only_itself_and_roster_keeps_its_reserve() {
        let limits = MetaLimits {
            max_keys: 20,
            max_total_bytes: 200,
            max_prefix_keys: 4,
            max_prefix_bytes: 40,
            system_reserve_keys: 2,
            system_reserve_bytes: 30,
            ..MetaLimits::default()
        };
        assert_eq!(prefix_of("a/b/c"), "a/");
        assert_eq!(prefix_of("plain"), "");
        let mut m = Machine::default();
        let mut i = 1;
        // a/ fills its key quota; b/ and the unprefixed keys still write.
        for k in ["a/1", "a/2", "a/3", "a/4"] {
            m.validate(&put(k, "v"), &limits).unwrap();
            m.apply(&put(k, "v"), i, 1);
            i += 1;
        }
        assert!(matches!(
            m.validate(&put("a/5", "v"), &limits),
            Err(MetaError::Quota(_))
        ));
        // Overwriting an existing key of a full prefix is still allowed.
        m.validate(&put("a/1", "w"), &limits).unwrap();
        m.validate(&put("b/1", "v"), &limits).unwrap();
        m.validate(&put("x", "v"), &limits).unwrap();
        // Bytes: one big value fills b/ (40 bytes), the next write is refused.
        let big = "x".repeat(36);
        m.validate(&put("b/1", &big), &limits).unwrap();
        m.apply(&put("b/1", &big), i, 1);
        i += 1;
        assert_eq!(m.usage("b/"), (1, 39));
        assert!(matches!(
            m.validate(&put("b/2", "vv"), &limits),
            Err(MetaError::Quota(_))
        ));
        // Many prefixes fill the client share of the store (200 - 30 bytes)...
        for p in ["c", "d"] {
            let k = format!("{p}/1");
            m.validate(&put(&k, &big), &limits).unwrap();
            m.apply(&put(&k, &big), i, 1);
            i += 1;
        }
        assert!(matches!(
            m.validate(&put("e/1", &big), &limits),
            Err(MetaError::StoreFull(_))
        ));
        // ...and roster's own entries still have room.
        m.validate(&put("roster/revoked", "v"), &limits).unwrap();
    }
}

//! Invariants: an acknowledged metadata write is what was applied at the
//! index it was acknowledged with, and every voter in a quorum holds every
//! acknowledged write by the end. Planted bugs: `LostWrite` (the client
//! records a value it did not write) and `UnappliedWrite` (an index no
//! voter reaches).

use roster::node::{MetaStatus, NodeId, RaftRole};

use super::entries::OneEntryPerIndex;

/// Acknowledged writes: (index, key, value; `None`: deleted).
#[derive(Debug, Default)]
pub struct AckedWrites {
    acked: Vec<(u64, String, Option<Vec<u8>>)>,
}

impl AckedWrites {
    /// A client was told its write of `key` = `value` committed at `index`.
    pub fn acknowledged(&mut self, index: u64, key: String, value: Option<Vec<u8>>) {
        self.acked.push((index, key, value));
    }

    /// At the end: every acknowledged write against what was applied, and
    /// the running nodes' Raft status against the highest acknowledged
    /// index. Returns the violations in the order found.
    pub fn check<'a>(
        &mut self,
        entries: &OneEntryPerIndex,
        running: impl IntoIterator<Item = (&'a NodeId, MetaStatus)>,
    ) -> Vec<String> {
        let mut found = Vec::new();
        let max_ack = self.acked.iter().map(|a| a.0).max().unwrap_or(0);
        for (index, key, value) in std::mem::take(&mut self.acked) {
            match entries.at(index) {
                Some((k, v)) if *k == key && *v == value => {}
                other => found.push(format!(
                    "acknowledged write {key}={value:?} at {index} is not what was applied: {other:?}"
                )),
            }
        }
        for (id, st) in running {
            if st.role != RaftRole::NonVoter && st.applied_index < max_ack && st.quorum {
                found.push(format!(
                    "voter {id} applied only {} of acknowledged index {max_ack}",
                    st.applied_index
                ));
            }
        }
        found
    }
}

//! Invariant: every node applies the same metadata entry at a log index.
//! Planted bug: `DivergentApply`.

use std::collections::BTreeMap;

use roster::node::NodeId;

/// A key and the value an entry set it to (`None`: deleted).
pub type Entry = (String, Option<Vec<u8>>);

/// The entry first seen applied at each index.
#[derive(Debug, Default)]
pub struct OneEntryPerIndex {
    applied: BTreeMap<u64, Entry>,
}

impl OneEntryPerIndex {
    /// Node `id` applied `key` = `value` at `index`.
    pub fn applied(
        &mut self,
        id: &NodeId,
        key: String,
        value: Option<Vec<u8>>,
        index: u64,
    ) -> Result<(), String> {
        match self.applied.get(&index) {
            Some((k, v)) if *k != key || *v != value => Err(format!(
                "{id} applied {key}={value:?} at {index}, others {k}={v:?}"
            )),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(index, (key, value));
                Ok(())
            }
        }
    }

    /// The entry applied at `index`, if any node applied one.
    pub fn at(&self, index: u64) -> Option<&Entry> {
        self.applied.get(&index)
    }

    /// The lowest index applied, and its entry.
    pub fn first(&self) -> Option<(u64, &Entry)> {
        self.applied.iter().next().map(|(&i, e)| (i, e))
    }
}

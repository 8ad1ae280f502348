//! Invariant: one leader per Raft term, as each node claims it by its
//! own event or by its Raft state. Planted bug: `SecondLeader`.

use std::collections::BTreeMap;

use roster::node::NodeId;

/// The leader claimed in each term.
#[derive(Debug, Default)]
pub struct OneLeaderPerTerm {
    leaders: BTreeMap<u64, NodeId>,
}

impl OneLeaderPerTerm {
    /// Node `id` claims to lead `term`.
    pub fn claims(&mut self, term: u64, id: &NodeId) -> Result<(), String> {
        match self.leaders.insert(term, id.clone()) {
            Some(prev) if prev != *id => {
                Err(format!("two leaders in term {term}: {prev} and {id}"))
            }
            _ => Ok(()),
        }
    }

    /// Terms with a leader.
    pub fn terms(&self) -> usize {
        self.leaders.len()
    }

    /// The newest term with a leader, and its leader.
    pub fn newest(&self) -> Option<(u64, &NodeId)> {
        self.leaders.iter().next_back().map(|(&t, l)| (t, l))
    }
}

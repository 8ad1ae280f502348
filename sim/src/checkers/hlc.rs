//! Invariant: a node's hybrid logical clock never goes back while its
//! process runs (a restarted process starts a new clock). Planted bug:
//! `HlcBack`.

use roster::node::{Hlc, NodeId};

/// The clock each node reported after its last step.
#[derive(Debug, Default)]
pub struct HlcMonotonic {
    last: Vec<Hlc>,
}

impl HlcMonotonic {
    /// Node `n` (named `id`) reports `hlc` after a step.
    pub fn observe(&mut self, n: usize, id: &NodeId, hlc: Hlc) -> Result<(), String> {
        let prev = std::mem::replace(super::slot(&mut self.last, n), hlc);
        if hlc < prev {
            return Err(format!("hlc went back on {id}: {prev} -> {hlc}"));
        }
        Ok(())
    }

    /// Node `n` runs a new process.
    pub fn restarted(&mut self, n: usize) {
        *super::slot(&mut self.last, n) = Hlc::default();
    }
}

//! Invariant: HLC causality. A node stamps each write after every remote
//! write it has accepted. Planted bug: `CausalityBack`.

use roster::node::{Hlc, NodeId};

/// Per node, the newest stamp it accepted from another node's write.
#[derive(Debug, Default)]
pub struct Causality {
    newest_remote: Vec<Hlc>,
}

impl Causality {
    /// Node `n` accepted a remote write stamped `hlc`.
    pub fn accepted(&mut self, n: usize, hlc: Hlc) {
        let newest = super::slot(&mut self.newest_remote, n);
        *newest = (*newest).max(hlc);
    }

    /// The newest remote stamp node `n` accepted.
    pub fn newest_accepted(&self, n: usize) -> Hlc {
        self.newest_remote.get(n).copied().unwrap_or_default()
    }

    /// Node `n` (named `id`) wrote `key` stamped `hlc`.
    pub fn wrote(&self, n: usize, id: &NodeId, key: &str, hlc: Hlc) -> Result<(), String> {
        let seen = self.newest_accepted(n);
        if hlc <= seen {
            return Err(format!(
                "causality: {id} wrote {key} at {hlc} after accepting {seen}"
            ));
        }
        Ok(())
    }

    /// Node `n` runs a new process.
    pub fn restarted(&mut self, n: usize) {
        *super::slot(&mut self.newest_remote, n) = Hlc::default();
    }
}

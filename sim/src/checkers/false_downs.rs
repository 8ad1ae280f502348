//! Invariant: no healthy member is declared Down. A Down verdict about a
//! member that runs at the identity declared Down, is not impaired by the
//! network model and is connected both ways to the node that reached the
//! verdict is false, unless the network changed (or the member resumed from
//! a pause) within one verdict window before it: such a verdict was formed
//! from evidence about the network as it was, and is counted apart as a
//! transition Down. A member forced to rejoin under a new identity counts as
//! a false Down too. The count is a figure of every report; scenarios with
//! healthy members require it to be zero. Planted bug: `FalseDown`.

use crate::net::Nanos;

/// False and transition Downs of a run.
#[derive(Debug, Default, Clone)]
pub struct FalseDowns {
    /// False Downs (including forced rejoins).
    pub count: u64,
    /// Downs of healthy members within one verdict window of a change.
    pub transitions: u64,
    /// The first ten false Downs, described.
    pub detail: Vec<String>,
}

impl FalseDowns {
    /// A node declared a member Down at `now`. `healthy`: the member is
    /// healthy and connected as described above; `changes`: when the
    /// network last changed and when the member last resumed, where they
    /// did; `window`: the longest a verdict takes to form on the declaring
    /// node; `describe` the false Down.
    pub fn declared(
        &mut self,
        healthy: bool,
        changes: impl IntoIterator<Item = Nanos>,
        now: Nanos,
        window: Nanos,
        describe: impl FnOnce() -> String,
    ) {
        if !healthy {
            return;
        }
        let settled = changes.into_iter().all(|t| now.saturating_sub(t) >= window);
        if settled {
            self.count(describe);
        } else {
            self.transitions += 1;
        }
    }

    /// A member was forced to rejoin under a new identity.
    pub fn rejoined(&mut self, describe: impl FnOnce() -> String) {
        self.count(describe);
    }

    fn count(&mut self, describe: impl FnOnce() -> String) {
        self.count += 1;
        if self.detail.len() < 10 {
            self.detail.push(describe());
        }
    }
}

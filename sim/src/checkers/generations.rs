//! Invariant: the generation at which a node holds a member only grows in
//! that node's view while it runs (a member never comes back as an older
//! process). Planted bug: `GenerationBack`.

use roster::node::{Identity, NodeId};

/// No generation seen.
const NOT_SEEN: u64 = u64::MAX;

/// Per observer, the newest generation of each member seen in its
/// MemberUp events, by the member's slot (`NOT_SEEN` where none was seen):
/// eight bytes per member entry, where a map keyed by name took about
/// sixty.
#[derive(Debug, Default)]
pub struct SeenGenerations {
    seen: Vec<Vec<u64>>,
}

impl SeenGenerations {
    /// Node `n` (named `observer`) reports member `m` up at `member`.
    pub fn up(
        &mut self,
        n: usize,
        observer: &NodeId,
        m: usize,
        member: &Identity,
    ) -> Result<(), String> {
        let seen = super::slot(&mut self.seen, n);
        if seen.len() <= m {
            seen.resize(m + 1, NOT_SEEN);
        }
        let prev =
            Some(std::mem::replace(&mut seen[m], member.generation.0)).filter(|&g| g != NOT_SEEN);
        if prev.is_some_and(|g| g > member.generation.0) {
            return Err(format!(
                "{observer} saw generation of {} go back: {:?} -> {}",
                member.id, prev, member.generation
            ));
        }
        Ok(())
    }

    /// The generation node `n` last saw member `m` at, if it saw one.
    pub fn seen(&self, n: usize, m: usize) -> Option<u64> {
        let g = *self.seen.get(n)?.get(m)?;
        (g != NOT_SEEN).then_some(g)
    }

    /// Node `n` runs a new process.
    pub fn restarted(&mut self, n: usize) {
        super::slot(&mut self.seen, n).clear();
    }
}

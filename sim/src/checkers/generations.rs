//! Invariant: the generation at which a node holds a member only grows in
//! that node's view while it runs (a member never comes back as an older
//! process). Planted bug: `GenerationBack`.

use roster::node::{Identity, NodeId};

/// No generation seen.
const NOT_SEEN: u32 = u32::MAX;

/// Per observer, the newest generation of each member seen in its
/// MemberUp events, by the member's slot (`NOT_SEEN` where none was seen):
/// four bytes per member entry, allocated once for every slot, where a
/// map keyed by name took about sixty. A simulated node's generation is
/// the number of times it started, far below `NOT_SEEN`.
#[derive(Debug, Default)]
pub struct SeenGenerations {
    seen: Vec<Vec<u32>>,
}

impl SeenGenerations {
    /// Node `n` (named `observer`) reports member `m` (of `slots`) up at
    /// `member`.
    pub fn up(
        &mut self,
        n: usize,
        observer: &NodeId,
        (m, slots): (usize, usize),
        member: &Identity,
    ) -> Result<(), String> {
        let seen = super::slot(&mut self.seen, n);
        if seen.len() <= m {
            let len = slots.max(m + 1);
            seen.reserve_exact(len - seen.len());
            seen.resize(len, NOT_SEEN);
        }
        let generation = u32::try_from(member.generation.0)
            .ok()
            .filter(|&g| g != NOT_SEEN)
            .ok_or_else(|| {
                format!("{observer} saw {member} at a generation past the checker's range")
            })?;
        let prev = Some(std::mem::replace(&mut seen[m], generation)).filter(|&g| g != NOT_SEEN);
        if prev.is_some_and(|g| g > generation) {
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
        (g != NOT_SEEN).then_some(u64::from(g))
    }

    /// Node `n` runs a new process.
    pub fn restarted(&mut self, n: usize) {
        super::slot(&mut self.seen, n).clear();
    }
}

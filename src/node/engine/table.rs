//! The native engine's member table: fixed-size rows in one vector, an
//! ordered index from a member's key to its row, a dense list of the active
//! rows (for random choices in O(1)) and a shuffled probe order of row
//! indices. Nothing on the per-packet path scans the table.

use std::collections::BTreeMap;

use rand::RngExt;

use crate::node::identity::{Identity, NodeId};

/// A row number.
pub(crate) type Row = u32;

/// A member's state in the native engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum State {
    /// Answering probes.
    Alive,
    /// Suspected; still a member, still probed.
    Suspect,
    /// Declared failed; it comes back by proving a higher incarnation.
    Down,
    /// Left gracefully; terminal for its generation.
    Left,
}

impl State {
    /// Alive or Suspect.
    pub(crate) fn is_active(self) -> bool {
        matches!(self, State::Alive | State::Suspect)
    }
}

/// One member.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) identity: Identity,
    pub(crate) incarnation: u32,
    pub(crate) state: State,
    /// Position in the active list, while active.
    active_at: u32,
}

/// No position (not in the active list).
const NONE: u32 = u32::MAX;

/// The table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Entry>,
    index: BTreeMap<[u64; 2], Row>,
    /// Rows of active members, in no particular order.
    active: Vec<Row>,
    /// Probe order: row numbers, shuffled; `cursor` is the next to probe.
    order: Vec<Row>,
    cursor: usize,
    /// Order-independent fingerprint of the active members (identity and
    /// incarnation), kept up to date on every change.
    fingerprint: u64,
}

/// A member's part of [`Table::fingerprint`].
pub(crate) fn member_print(id: &Identity, incarnation: u32) -> u64 {
    use crate::node::identity::mix64;
    let f = id.id.fingerprint();
    mix64(f ^ mix64(id.generation.0 ^ (u64::from(incarnation) << 40)))
}

impl Table {
    /// The row of `id`, if known.
    pub(crate) fn find(&self, id: &NodeId) -> Option<Row> {
        let r = *self.index.get(&id.key())?;
        (self.rows[r as usize].identity.id == *id).then_some(r)
    }

    /// The entry at `row`.
    pub(crate) fn get(&self, row: Row) -> &Entry {
        &self.rows[row as usize]
    }

    /// The entry of `id`, if known.
    pub(crate) fn entry(&self, id: &NodeId) -> Option<&Entry> {
        self.find(id).map(|r| self.get(r))
    }

    /// Active members (Alive or Suspect).
    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Every member, Down and Left ones included, in row order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.rows.iter()
    }

    /// Order-independent fingerprint of the active members.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Adds a member never seen before, or replaces the row of an older
    /// generation of the same node. A new member goes to a random place in
    /// what remains of this probe round (memberlist does the same), so it
    /// is probed within the round. Returns the row.
    pub(crate) fn insert(
        &mut self,
        identity: Identity,
        incarnation: u32,
        state: State,
        rng: &mut impl rand::Rng,
    ) -> Row {
        if let Some(r) = self.index.get(&identity.id.key()).copied() {
            self.set_state(r, State::Left);
            let e = &mut self.rows[r as usize];
            e.identity = identity;
            e.incarnation = incarnation;
            self.set_state(r, state);
            return r;
        }
        let r = self.rows.len() as Row;
        self.index.insert(identity.id.key(), r);
        self.rows.push(Entry {
            identity,
            incarnation,
            state: State::Left,
            active_at: NONE,
        });
        // Appended, then swapped to a random place among the members not
        // yet probed this round: O(1).
        self.order.push(r);
        let last = self.order.len() - 1;
        let at = rng.random_range(self.cursor.min(last)..=last);
        self.order.swap(at, last);
        self.set_state(r, state);
        r
    }

    /// Changes a member's state (and incarnation), keeping the active list
    /// and the fingerprint up to date.
    pub(crate) fn update(&mut self, row: Row, incarnation: u32, state: State) {
        let e = &self.rows[row as usize];
        if e.state.is_active() {
            self.fingerprint ^= member_print(&e.identity, e.incarnation);
        }
        self.rows[row as usize].incarnation = incarnation;
        let e = &self.rows[row as usize];
        if e.state.is_active() {
            self.fingerprint ^= member_print(&e.identity, e.incarnation);
        }
        self.set_state(row, state);
    }

    fn set_state(&mut self, row: Row, state: State) {
        let e = &mut self.rows[row as usize];
        let (was, is) = (e.state.is_active(), state.is_active());
        e.state = state;
        let print = member_print(&e.identity, e.incarnation);
        if was && !is {
            let at = e.active_at as usize;
            e.active_at = NONE;
            self.active.swap_remove(at);
            if let Some(&moved) = self.active.get(at) {
                self.rows[moved as usize].active_at = at as u32;
            }
            self.fingerprint ^= print;
        } else if is && !was {
            e.active_at = self.active.len() as u32;
            self.active.push(row);
            self.fingerprint ^= print;
        }
    }

    /// The next member to probe: round-robin over a shuffled order of the
    /// active members, reshuffled after each full round (SWIM §4.3). `None`
    /// when no other member is active.
    pub(crate) fn next_probe(&mut self, rng: &mut impl rand::Rng) -> Option<Row> {
        if self.active.is_empty() {
            return None;
        }
        // Bounded: at most one full pass plus a reshuffle.
        for _ in 0..=self.order.len() + 1 {
            if self.cursor >= self.order.len() {
                self.reshuffle(rng);
            }
            let r = self.order[self.cursor];
            self.cursor += 1;
            if self.rows[r as usize].state.is_active() {
                return Some(r);
            }
        }
        None
    }

    fn reshuffle(&mut self, rng: &mut impl rand::Rng) {
        self.order.clear();
        self.order.extend_from_slice(&self.active);
        // Fisher-Yates.
        for i in (1..self.order.len()).rev() {
            let j = rng.random_range(0..=i);
            self.order.swap(i, j);
        }
        self.cursor = 0;
    }

    /// Up to `k` distinct random active members for which `keep` holds,
    /// in O(k) expected time (at most `4k` draws).
    pub(crate) fn random_active(
        &self,
        k: usize,
        rng: &mut impl rand::Rng,
        mut keep: impl FnMut(Row, &Entry) -> bool,
        out: &mut Vec<Row>,
    ) {
        out.clear();
        let n = self.active.len();
        if n == 0 || k == 0 {
            return;
        }
        if n <= 2 * k {
            // Small: take them all in a random order.
            let start = rng.random_range(0..n);
            for i in 0..n {
                let r = self.active[(start + i) % n];
                if out.len() < k && keep(r, &self.rows[r as usize]) {
                    out.push(r);
                }
            }
            return;
        }
        for _ in 0..4 * k {
            if out.len() >= k {
                break;
            }
            let r = self.active[rng.random_range(0..n)];
            if !out.contains(&r) && keep(r, &self.rows[r as usize]) {
                out.push(r);
            }
        }
    }
}

//! The native engine's member table: fixed-size rows in one vector, an
//! ordered index from a member's key to its row, a dense list of the active
//! rows (for random choices in O(1)) and a shuffled probe order of row
//! indices. Nothing on the per-packet path scans the table.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;

use crate::node::identity::{Identity, NodeId, mix64, share};
use crate::node::{MemberState, MemberView};

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

/// What the node lists for a member: its state as the application sees
/// it, and since when. It lives in the member's row, so a member costs one
/// row, not a row here and an entry in a second map. The engine never
/// reads it. Packed (13 bytes, alignment 1): with it a row is 32 bytes
/// instead of 40, and a node holds a row per member (its fields are only
/// ever read and written by value).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed)]
pub(crate) struct Listing {
    pub(crate) state: MemberState,
    /// Incarnation under suspicion; meaningful while `state` is Suspect.
    suspect: u32,
    /// When the node last changed the listed state (monotonic time, in
    /// nanoseconds: 584 years fit).
    since_nanos: u64,
}

impl Listing {
    /// `state` from `since`, with the incarnation under suspicion (Suspect
    /// only).
    pub(crate) fn new(
        state: MemberState,
        suspect_incarnation: Option<u32>,
        since: Duration,
    ) -> Self {
        Self {
            state,
            suspect: suspect_incarnation.unwrap_or(0),
            since_nanos: u64::try_from(since.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// When the node last changed the listed state.
    pub(crate) fn since(&self) -> Duration {
        Duration::from_nanos(self.since_nanos)
    }

    /// Sets the listed state from `now`.
    pub(crate) fn set(&mut self, state: MemberState, now: Duration) {
        *self = Self::new(state, None, now);
    }

    fn suspect_incarnation(&self) -> Option<u32> {
        (self.state == MemberState::Suspect).then_some(self.suspect)
    }
}

/// One member.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Shared with every other table that holds the same identity (see
    /// [`share`]).
    pub(crate) identity: Arc<Identity>,
    pub(crate) incarnation: u32,
    pub(crate) state: State,
    /// Position in the active list, while active.
    active_at: u32,
    /// The node's listing of the member: `None` until the node lists it,
    /// and again once reaped.
    pub(crate) listing: Option<Listing>,
    /// The last push-pull merge (see [`Table::new_mark`]) that found the
    /// peer holding this member exactly as this row does. Fits in the
    /// row's padding.
    mark: u16,
}

impl Entry {
    /// The member as the node lists it, if it does.
    pub(crate) fn view(&self) -> Option<MemberView> {
        let l = self.listing?;
        Some(MemberView {
            identity: (*self.identity).clone(),
            state: l.state,
            incarnation: self.incarnation,
            suspect_incarnation: l.suspect_incarnation(),
            since: l.since(),
        })
    }
}

/// No position (not in the active list).
const NONE: u32 = u32::MAX;

/// An open-addressing hash index from a member's key to its row: a slot is
/// a row number and 32 bits of the key's hash (8 bytes), at most three
/// quarters of the slots are used, collisions go to the next slot. The
/// hash bits spare a look at the row of every slot passed on the way.
/// Rows are never removed (a node's new generation takes over its row), so
/// there is no deletion.
#[derive(Debug, Default)]
struct Index {
    slots: Vec<(Row, u32)>,
    len: usize,
}

impl Index {
    /// The row whose member has `id`'s key. Bounded: a quarter of the
    /// slots at least are empty, and the scan stops at the first empty one.
    fn get(&self, id: &NodeId, rows: &[Entry]) -> Option<Row> {
        if self.slots.is_empty() {
            return None;
        }
        let (key, mask) = (id.key(), self.slots.len() - 1);
        let h = id.fingerprint();
        let tag = (h >> 32) as u32;
        let mut i = h as usize & mask;
        loop {
            let (r, t) = self.slots[i];
            if r == NONE {
                return None;
            }
            if t == tag && rows[r as usize].identity.id.key() == key {
                return Some(r);
            }
            i = (i + 1) & mask;
        }
    }

    /// Indexes `row` (whose member's key is not indexed yet).
    fn insert(&mut self, id: &NodeId, row: Row, rows: &[Entry]) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let size = (self.slots.len() * 2).max(16);
            self.slots = vec![(NONE, 0); size];
            self.len = 0;
            for (r, e) in rows.iter().enumerate() {
                if r as Row != row {
                    self.place(&e.identity.id, r as Row);
                }
            }
        }
        self.place(id, row);
    }

    fn place(&mut self, id: &NodeId, row: Row) {
        let mask = self.slots.len() - 1;
        let h = id.fingerprint();
        let mut i = h as usize & mask;
        while self.slots[i].0 != NONE {
            i = (i + 1) & mask;
        }
        self.slots[i] = (row, (h >> 32) as u32);
        self.len += 1;
    }
}

/// Appends to a vector that grows with the cluster, by a quarter at a time
/// once it is large rather than by doubling: its unused tail stays under a
/// quarter of its length (amortised O(1) still).
fn push_grow<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(16));
    }
    v.push(x);
}

/// The table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Entry>,
    index: Index,
    /// Rows of active members, in no particular order.
    active: Vec<Row>,
    /// Probe order: row numbers, shuffled; `cursor` is the next to probe.
    order: Vec<Row>,
    cursor: usize,
    /// Order-independent fingerprint of the active members (identity and
    /// incarnation), kept up to date on every change.
    fingerprint: u64,
    /// The current mark (see [`Table::new_mark`]).
    mark: u16,
    /// Changes with every change to what [`Table::iter`] gives the node's
    /// listing (a new row, a row's identity, a listing borrowed mutably):
    /// a reader can keep what it computed from the listing until then.
    /// 0 in a new table, whose listing is empty; every later version is
    /// unique in the process (see [`next_version`]).
    version: u64,
}

/// A listing version no table in the process has had (they start at 0, an
/// empty listing, and move only to versions from here): a reader keyed by
/// it cannot mistake another table (or a table made again) for the one it
/// read.
fn next_version() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A member's part of [`Table::fingerprint`].
pub(crate) fn member_print(id: &Identity, incarnation: u32) -> u64 {
    let f = id.id.fingerprint();
    mix64(f ^ mix64(id.generation.0 ^ (u64::from(incarnation) << 40)))
}

impl Table {
    /// The row of `id`, if known.
    pub(crate) fn find(&self, id: &NodeId) -> Option<Row> {
        let r = self.index.get(id, &self.rows)?;
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

    /// The node's listing of `id`, if `id` has a row.
    pub(crate) fn listing_mut(&mut self, id: &NodeId) -> Option<(&Identity, &mut Option<Listing>)> {
        let r = self.find(id)?;
        self.version = next_version();
        let e = &mut self.rows[r as usize];
        Some((&e.identity, &mut e.listing))
    }

    /// Rows: every member, Down and Left ones included.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Active members (Alive or Suspect).
    pub(crate) fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Every member, Down and Left ones included, in row order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.rows.iter()
    }

    /// Starts a new mark (for one push-pull merge): rows marked with it
    /// are those a peer holds exactly so. Amortised O(1): the marks are
    /// cleared once every 65,535 merges.
    pub(crate) fn new_mark(&mut self) {
        self.mark = self.mark.wrapping_add(1);
        if self.mark == 0 {
            for e in &mut self.rows {
                e.mark = 0;
            }
            self.mark = 1;
        }
    }

    /// Marks `row` with the current mark.
    pub(crate) fn set_mark(&mut self, row: Row) {
        self.rows[row as usize].mark = self.mark;
    }

    /// Every row not marked with the current mark.
    pub(crate) fn unmarked(&self) -> impl Iterator<Item = &Entry> {
        let m = self.mark;
        self.rows.iter().filter(move |e| e.mark != m)
    }

    /// Order-independent fingerprint of the active members.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The listing's version (see the field): equal versions, equal
    /// listings.
    pub(crate) fn version(&self) -> u64 {
        self.version
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
        self.version = next_version();
        if let Some(r) = self.index.get(&identity.id, &self.rows) {
            self.set_state(r, State::Left);
            let e = &mut self.rows[r as usize];
            e.identity = share(&identity);
            e.incarnation = incarnation;
            self.set_state(r, state);
            return r;
        }
        let r = self.rows.len() as Row;
        push_grow(
            &mut self.rows,
            Entry {
                identity: share(&identity),
                incarnation,
                state: State::Left,
                active_at: NONE,
                listing: None,
                mark: 0,
            },
        );
        self.index
            .insert(&self.rows[r as usize].identity.id, r, &self.rows);
        // Appended, then swapped to a random place among the members not
        // yet probed this round: O(1).
        push_grow(&mut self.order, r);
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
            push_grow(&mut self.active, row);
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use rand::SeedableRng;

    use super::*;
    use crate::node::identity::Generation;

    fn ident(name: &str, generation: u64) -> Identity {
        Identity::new(
            NodeId::new(name).expect("valid name"),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 7000)),
            Generation(generation),
        )
    }

    /// A node holds one row per member: at 10,000 simulated nodes every
    /// byte of it is 100 MB.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_row_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        assert_eq!(std::mem::size_of::<Option<Listing>>(), 13);
    }

    #[test]
    fn every_member_is_found_through_the_index_and_others_are_not() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        let mut t = Table::default();
        // Short names are packed into the key, long ones digested: both.
        let names: Vec<String> = (0..3000)
            .map(|i| {
                if i % 2 == 0 {
                    format!("n{i}")
                } else {
                    format!("a-long-member-name-{i}")
                }
            })
            .collect();
        for (i, n) in names.iter().enumerate() {
            let r = t.insert(ident(n, 1), 0, State::Alive, &mut rng);
            assert_eq!(r as usize, i);
        }
        for (i, n) in names.iter().enumerate() {
            let id = NodeId::new(n.as_str()).unwrap();
            assert_eq!(t.find(&id), Some(i as Row), "{n}");
        }
        for n in ["n1", "n3001", "a-long-member-name-0", "zz"] {
            assert_eq!(t.find(&NodeId::new(n).unwrap()), None, "{n}");
        }
        assert_eq!(t.active_len(), names.len());
        // The index stays at most three quarters full.
        assert!(t.index.len * 4 <= t.index.slots.len() * 3);
        // A vector that grows with the cluster keeps its unused tail small.
        assert!(t.rows.capacity() <= t.rows.len() + t.rows.len() / 4 + 16);
    }

    /// A reader that keeps what it read from the listing while the version
    /// stays the same (the metadata bootstrap) sees every change: a new row,
    /// a new generation in a row, a listing changed; and no other table has
    /// a version it read.
    #[test]
    fn the_version_changes_with_what_the_listing_gives() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(3);
        let mut t = Table::default();
        let mut seen = vec![t.version()];
        let a = ident("n1", 1);
        let r = t.insert(a.clone(), 0, State::Alive, &mut rng);
        seen.push(t.version());
        let (_, listing) = t.listing_mut(&a.id).unwrap();
        *listing = Some(Listing::new(MemberState::Alive, None, Duration::ZERO));
        seen.push(t.version());
        t.insert(ident("n1", 2), 0, State::Alive, &mut rng);
        seen.push(t.version());
        t.insert(ident("n2", 1), 0, State::Alive, &mut rng);
        seen.push(t.version());
        // The engine's own state of a member is not part of the listing.
        t.update(r, 4, State::Suspect);
        assert_eq!(t.version(), *seen.last().unwrap());
        let mut other = Table::default();
        other.insert(ident("n3", 1), 0, State::Alive, &mut rng);
        seen.push(other.version());
        let distinct: std::collections::BTreeSet<u64> = seen.iter().copied().collect();
        assert_eq!(distinct.len(), seen.len(), "{seen:?}");
    }

    #[test]
    fn a_new_generation_takes_over_its_row_and_its_listing() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(2);
        let mut t = Table::default();
        let old = ident("n1", 1);
        let r = t.insert(old.clone(), 3, State::Alive, &mut rng);
        let (_, listing) = t.listing_mut(&old.id).unwrap();
        *listing = Some(Listing::new(
            MemberState::Suspect,
            Some(3),
            Duration::from_secs(5),
        ));
        let view = t.get(r).view().unwrap();
        assert_eq!(view.suspect_incarnation, Some(3));
        assert_eq!(view.since, Duration::from_secs(5));
        let new = ident("n1", 2);
        assert_eq!(t.insert(new.clone(), 0, State::Alive, &mut rng), r);
        assert_eq!(*t.get(r).identity, new);
        assert_eq!(t.get(r).view().map(|v| v.identity), Some(new));
        assert_eq!(t.active_len(), 1);
        // Only Suspect carries the incarnation under suspicion.
        let (_, listing) = t.listing_mut(&old.id).unwrap();
        listing
            .as_mut()
            .unwrap()
            .set(MemberState::Down, Duration::from_secs(9));
        let view = t.get(r).view().unwrap();
        assert_eq!(
            (view.state, view.suspect_incarnation, view.since),
            (MemberState::Down, None, Duration::from_secs(9))
        );
    }
}

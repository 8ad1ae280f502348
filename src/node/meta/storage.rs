//! The Raft log, hard state and snapshot of one voter: raft-rs reads them
//! through [`raft::Storage`]; every change is written through to a
//! [`RaftDisk`] before the messages that depend on it leave the node.
//!
//! A snapshot is the encoded [`Machine`] at an applied index; the log keeps
//! the entries after the last snapshot. On restart the machine comes back
//! from the snapshot and raft-rs replays the committed entries after it.

use std::sync::{Arc, Mutex};

use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::machine::Machine;

/// A durable-storage failure. The voter stops taking part in Raft (the
/// node keeps running as a non-voter) rather than acknowledge what it could
/// not persist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("raft storage: {0}")]
pub struct DiskError(pub String);

/// What a disk holds, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskImage {
    /// Hard state (term, vote, commit).
    pub hard: HardState,
    /// Index and term of the snapshot, and the encoded [`Machine`].
    pub snapshot: (u64, u64, Vec<u8>),
    /// Entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

/// One atomic update of the disk.
#[derive(Debug, Default)]
pub struct DiskWrite<'a> {
    /// A new snapshot `(index, term, machine)`: entries up to its index are
    /// dropped.
    pub snapshot: Option<(u64, u64, &'a [u8])>,
    /// Drop every entry with an index at or above this first (conflicting
    /// or superseded entries).
    pub truncate_from: Option<u64>,
    /// Entries to append.
    pub entries: &'a [Entry],
    /// New hard state.
    pub hard: Option<&'a HardState>,
}

/// Durable storage of one voter's Raft state.
pub trait RaftDisk: Send {
    /// What was saved, or `None` when this node never was a voter (or was
    /// removed).
    fn load(&mut self) -> Result<Option<DiskImage>, DiskError>;
    /// Applies one update atomically.
    fn save(&mut self, w: DiskWrite<'_>) -> Result<(), DiskError>;
    /// Forgets everything (the node was removed from the voters).
    fn clear(&mut self) -> Result<(), DiskError>;
}

/// In-memory disk. Clones share the same contents, so the simulator can keep
/// a node's "disk" across a simulated crash and restart.
#[derive(Debug, Clone, Default)]
pub struct MemDisk(Arc<Mutex<Option<DiskImage>>>);

impl MemDisk {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<DiskImage>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Last saved index (for tests).
    pub fn last_index(&self) -> u64 {
        self.lock()
            .as_ref()
            .map_or(0, |i| i.entries.last().map_or(i.snapshot.0, |e| e.index))
    }
}

/// Applies a write to an image: the one definition both disks follow.
pub fn apply_write(img: &mut DiskImage, w: &DiskWrite<'_>) {
    if let Some((index, term, data)) = w.snapshot {
        img.snapshot = (index, term, data.to_vec());
        img.entries.retain(|e| e.index > index);
    }
    if let Some(from) = w.truncate_from {
        img.entries.retain(|e| e.index < from);
    }
    img.entries.extend_from_slice(w.entries);
    if let Some(h) = w.hard {
        img.hard = h.clone();
    }
}

impl RaftDisk for MemDisk {
    fn load(&mut self) -> Result<Option<DiskImage>, DiskError> {
        Ok(self.lock().clone())
    }

    fn save(&mut self, w: DiskWrite<'_>) -> Result<(), DiskError> {
        let mut g = self.lock();
        apply_write(g.get_or_insert_with(DiskImage::default), &w);
        Ok(())
    }

    fn clear(&mut self) -> Result<(), DiskError> {
        *self.lock() = None;
        Ok(())
    }
}

/// Entries to keep beyond a snapshot before compacting: 1024.
pub const COMPACT_AFTER: u64 = 1024;

/// A voter's Raft storage: the in-memory copy raft-rs reads, written
/// through to a [`RaftDisk`].
pub struct RaftStore {
    hard: HardState,
    snap_index: u64,
    snap_term: u64,
    entries: Vec<Entry>,
    /// The state machine, at `machine.applied >= snap_index`.
    pub machine: Machine,
    disk: Box<dyn RaftDisk>,
}

impl RaftStore {
    /// Loads the store from `disk`; `None` inside when the disk holds no
    /// Raft state.
    pub fn open(mut disk: Box<dyn RaftDisk>) -> Result<(Self, bool), DiskError> {
        let img = disk.load()?;
        let initialized = img.is_some();
        let img = img.unwrap_or_default();
        let machine = if img.snapshot.2.is_empty() {
            Machine::default()
        } else {
            Machine::decode(&img.snapshot.2)
                .ok_or_else(|| DiskError("snapshot does not decode".into()))?
        };
        let mut entries = img.entries;
        entries.retain(|e| e.index > img.snapshot.0);
        let contiguous = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == img.snapshot.0 + 1 + i as u64);
        if !contiguous {
            return Err(DiskError("log entries are not contiguous".into()));
        }
        Ok((
            Self {
                hard: img.hard,
                snap_index: img.snapshot.0,
                snap_term: img.snapshot.1,
                entries,
                machine,
                disk,
            },
            initialized,
        ))
    }

    /// An empty store on a throwaway disk (stands in while the real one is
    /// taken out of a stopped Raft node).
    pub fn detached() -> Self {
        Self {
            hard: HardState::default(),
            snap_index: 0,
            snap_term: 0,
            entries: Vec::new(),
            machine: Machine::default(),
            disk: Box::new(MemDisk::default()),
        }
    }

    /// The disk and the machine, once Raft stops on this node.
    pub fn into_parts(self) -> (Box<dyn RaftDisk>, Machine) {
        (self.disk, self.machine)
    }

    /// Starts a new cluster: a snapshot at index 1, term 1 holding
    /// `machine` (whose configuration names this node the only voter).
    pub fn bootstrap(&mut self, mut machine: Machine) -> Result<(), DiskError> {
        machine.applied = 1;
        machine.applied_term = 1;
        let data = machine.encode();
        let hard = HardState {
            term: 1,
            commit: 1,
            ..Default::default()
        };
        self.disk.save(DiskWrite {
            snapshot: Some((1, 1, &data)),
            truncate_from: Some(0),
            entries: &[],
            hard: Some(&hard),
        })?;
        self.hard = hard;
        self.snap_index = 1;
        self.snap_term = 1;
        self.entries.clear();
        self.machine = machine;
        Ok(())
    }

    /// Forgets the Raft state on disk (removed from the voters); the
    /// in-memory machine stays as this node's copy.
    pub fn clear_disk(&mut self) -> Result<(), DiskError> {
        self.disk.clear()
    }

    /// Appends entries from a `Ready`, replacing any conflicting suffix.
    pub fn append(&mut self, ents: &[Entry]) -> Result<(), DiskError> {
        let Some(first) = ents.first() else {
            return Ok(());
        };
        if first.index <= self.snap_index {
            return Err(DiskError(format!(
                "append at {} is at or below the snapshot {}",
                first.index, self.snap_index
            )));
        }
        if first.index > self.last() + 1 {
            return Err(DiskError(format!(
                "append at {} leaves a gap after {}",
                first.index,
                self.last()
            )));
        }
        self.disk.save(DiskWrite {
            truncate_from: Some(first.index),
            entries: ents,
            ..Default::default()
        })?;
        let keep = (first.index - self.snap_index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
        Ok(())
    }

    /// Saves a new hard state.
    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), DiskError> {
        self.disk.save(DiskWrite {
            hard: Some(hs),
            ..Default::default()
        })?;
        self.hard = hs.clone();
        Ok(())
    }

    /// Saves the commit index from a `LightReady`.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), DiskError> {
        let mut hs = self.hard.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Installs a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), DiskError> {
        let meta = snap.get_metadata();
        let machine = Machine::decode(&snap.data)
            .ok_or_else(|| DiskError("received snapshot does not decode".into()))?;
        let mut hard = self.hard.clone();
        hard.commit = hard.commit.max(meta.index);
        hard.term = hard.term.max(meta.term);
        self.disk.save(DiskWrite {
            snapshot: Some((meta.index, meta.term, &snap.data)),
            truncate_from: Some(0),
            entries: &[],
            hard: Some(&hard),
        })?;
        self.hard = hard;
        self.snap_index = meta.index;
        self.snap_term = meta.term;
        self.entries.clear();
        self.machine = machine;
        Ok(())
    }

    /// Snapshots the machine and drops the log before it once the log holds
    /// more than [`COMPACT_AFTER`] applied entries.
    pub fn maybe_compact(&mut self) -> Result<bool, DiskError> {
        let applied = self.machine.applied;
        if applied < self.snap_index + COMPACT_AFTER || applied > self.last() {
            return Ok(false);
        }
        let term = self.machine.applied_term;
        let data = self.machine.encode();
        self.disk.save(DiskWrite {
            snapshot: Some((applied, term, &data)),
            ..Default::default()
        })?;
        let drop = (applied - self.snap_index) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snap_index = applied;
        self.snap_term = term;
        Ok(true)
    }

    fn last(&self) -> u64 {
        self.snap_index + self.entries.len() as u64
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard
    }

    /// Committed entries in `(after, upto]` still in the log (for members
    /// catching up their copy), at most `max_bytes` of them; `None` when
    /// the log no longer holds `after + 1`.
    pub fn committed_after(&self, after: u64, upto: u64, max_bytes: usize) -> Option<Vec<Entry>> {
        if after < self.snap_index {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.entries.iter().skip((after - self.snap_index) as usize) {
            if e.index > upto || (bytes > max_bytes && !out.is_empty()) {
                break;
            }
            bytes += e.data.len() + e.context.len() + 16;
            out.push(e.clone());
        }
        Some(out)
    }
}

impl raft::Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard.clone(),
            self.machine.conf.to_raft(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.snap_index - 1) as usize;
        let hi = (high - self.snap_index - 1) as usize;
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_index {
            return Ok(self.snap_term);
        }
        if idx < self.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.snap_index - 1) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.machine.applied < request_index || self.machine.applied == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut s = Snapshot {
            data: self.machine.encode().into(),
            ..Default::default()
        };
        let meta = s.mut_metadata();
        meta.index = self.machine.applied;
        meta.term = self.machine.applied_term;
        meta.set_conf_state(self.machine.conf.to_raft());
        Ok(s)
    }
}

/// Encodes a raft-rs protobuf message.
pub fn encode_pb<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().unwrap_or_default()
}

/// Decodes a raft-rs protobuf message; `None` on malformed bytes.
pub fn decode_pb<M: protobuf::Message>(b: &[u8]) -> Option<M> {
    M::parse_from_bytes(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_store_survives_reopening_from_its_disk() {
        let disk = MemDisk::default();
        let (mut s, init) = RaftStore::open(Box::new(disk.clone())).unwrap();
        assert!(!init);
        s.bootstrap(Machine::default()).unwrap();
        s.append(&[entry(2, 1), entry(3, 1), entry(4, 1)]).unwrap();
        // A new leader overwrites the tail.
        s.append(&[entry(4, 2), entry(5, 2)]).unwrap();
        let hs = HardState {
            term: 2,
            commit: 5,
            ..Default::default()
        };
        s.set_hard_state(&hs).unwrap();
        let (r, init) = RaftStore::open(Box::new(disk.clone())).unwrap();
        assert!(init);
        assert_eq!(r.first_index().unwrap(), 2);
        assert_eq!(r.last_index().unwrap(), 5);
        assert_eq!(r.term(4).unwrap(), 2);
        assert_eq!(r.term(1).unwrap(), 1);
        assert!(r.term(0).is_err());
        assert!(r.term(6).is_err());
        assert_eq!(r.hard_state().commit, 5);
        assert_eq!(
            r.entries(2, 6, None, GetEntriesContext::empty(false))
                .unwrap()
                .len(),
            4
        );
        assert!(
            r.entries(1, 3, None, GetEntriesContext::empty(false))
                .is_err()
        );
        assert!(
            r.entries(2, 9, None, GetEntriesContext::empty(false))
                .is_err()
        );
        // A gap is refused.
        let (mut r, _) = RaftStore::open(Box::new(disk.clone())).unwrap();
        assert!(r.append(&[entry(9, 2)]).is_err());
        r.clear_disk().unwrap();
        assert!(!RaftStore::open(Box::new(disk)).unwrap().1);
    }

    #[test]
    fn compaction_keeps_the_machine_and_the_tail() {
        let disk = MemDisk::default();
        let (mut s, _) = RaftStore::open(Box::new(disk.clone())).unwrap();
        s.bootstrap(Machine::default()).unwrap();
        let n = COMPACT_AFTER + 10;
        let ents: Vec<Entry> = (2..=n + 1).map(|i| entry(i, 1)).collect();
        s.append(&ents).unwrap();
        s.machine.applied = n;
        s.machine.applied_term = 1;
        assert!(s.maybe_compact().unwrap());
        assert_eq!(s.first_index().unwrap(), n + 1);
        assert_eq!(s.last_index().unwrap(), n + 1);
        assert!(s.committed_after(1, n, 1 << 20).is_none());
        assert_eq!(s.committed_after(n, n + 1, 1 << 20).unwrap().len(), 1);
        let snap = s.snapshot(0, 0).unwrap();
        assert_eq!(snap.get_metadata().index, n);
        let (r, _) = RaftStore::open(Box::new(disk)).unwrap();
        assert_eq!(r.machine.applied, n);
        assert_eq!(r.first_index().unwrap(), n + 1);
    }
}

//! What a node keeps on disk (redb, in `--data-dir`): its `NodeId`, its
//! generation (raised on every start), the addresses of the members it
//! last knew, so a restarted node rejoins through them even without `--join`,
//! and, on a metadata voter, its Raft log, hard state and snapshot
//! ([`RaftTables`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};

use crate::node::meta::storage::{DiskImage, DiskWrite, decode_pb, encode_pb};
use crate::node::meta::{DiskError, RaftDisk};
use crate::node::{Generation, NodeId};
use raft::eraftpb::{Entry, HardState};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const MEMBERS: TableDefinition<&str, &str> = TableDefinition::new("members");
const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");

/// Most member addresses kept.
pub const MAX_CACHED_MEMBERS: usize = 1024;

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory could not be created.
    #[error("data dir {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("data dir database: {0}")]
    Db(Box<redb::Error>),
    /// The database file is truncated, not a redb file, or otherwise
    /// unreadable: nothing was changed.
    #[error(
        "{path} is damaged or not roster's ({reason}); nothing was changed. Restore it from a backup, or move it away to start this node with an empty data dir"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What redb said.
        reason: String,
    },
    /// A stored value does not have the expected form.
    #[error("data dir is corrupt: {0}")]
    Corrupt(&'static str),
    /// The data dir belongs to another node.
    #[error("data dir belongs to node {stored}, not {requested}; use another --data-dir")]
    OtherNode {
        /// The NodeId on disk.
        stored: String,
        /// The NodeId asked for.
        requested: NodeId,
    },
}

fn dberr<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// The data dir is for its owner only (mode 0700 on Unix), best effort: a
/// directory the operator chose to share keeps its mode.
fn private_dir(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(dir)
            && m.permissions().mode() & 0o077 != 0
        {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Opens or creates the redb file. A damaged file (redb asserts on some,
/// such as a truncated one) becomes [`StoreError::Damaged`] rather than a
/// panic; the panic message is kept out of the output meanwhile.
fn open_db(path: &Path) -> Result<Database, StoreError> {
    let damaged = |reason: String| StoreError::Damaged {
        path: path.to_owned(),
        reason,
    };
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| Database::create(path));
    std::panic::set_hook(prev);
    match r {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => {
            let e: redb::Error = e.into();
            match &e {
                redb::Error::Corrupted(_) => Err(damaged(e.to_string())),
                redb::Error::Io(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    Err(damaged(e.to_string()))
                }
                _ => Err(StoreError::Db(Box::new(e))),
            }
        }
        Err(p) => {
            let why = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "redb could not read it".into());
            Err(damaged(why))
        }
    }
}

/// A node's on-disk state.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store { .. }")
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        private_dir(dir);
        let path = dir.join("roster.redb");
        // A new database is created its owner's only from the start (redb
        // initializes an empty file), not made so after it holds data.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
        }
        let db = open_db(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StoreError::Dir {
                    path: path.clone(),
                    source,
                },
            )?;
        }
        let tx = db.begin_write().map_err(dberr)?;
        tx.open_table(META).map_err(dberr)?;
        tx.open_table(MEMBERS).map_err(dberr)?;
        tx.open_table(RAFT_LOG).map_err(dberr)?;
        tx.open_table(RAFT_STATE).map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        Ok(Self { db })
    }

    /// Records a start of node `id`: checks the directory is this node's and
    /// returns the new, higher generation.
    pub fn start(&self, id: &NodeId) -> Result<Generation, StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        let generation = {
            let mut t = tx.open_table(META).map_err(dberr)?;
            if let Some(stored) = t.get("node_id").map_err(dberr)? {
                let stored = String::from_utf8_lossy(stored.value()).into_owned();
                if stored != id.as_str() {
                    return Err(StoreError::OtherNode {
                        stored,
                        requested: id.clone(),
                    });
                }
            }
            let last = match t.get("generation").map_err(dberr)? {
                None => 0,
                Some(g) => <[u8; 8]>::try_from(g.value())
                    .map(u64::from_le_bytes)
                    .map_err(|_| StoreError::Corrupt("generation is not 8 bytes"))?,
            };
            let next = Generation(last).next();
            t.insert("node_id", id.as_str().as_bytes()).map_err(dberr)?;
            t.insert("generation", next.0.to_le_bytes().as_slice())
                .map_err(dberr)?;
            next
        };
        tx.commit().map_err(dberr)?;
        Ok(generation)
    }

    /// Raises the stored generation to at least `g` (after the node renewed
    /// its identity while running).
    pub fn raise_generation(&self, g: Generation) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(META).map_err(dberr)?;
            let last = t
                .get("generation")
                .map_err(dberr)?
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0);
            if g.0 > last {
                t.insert("generation", g.0.to_le_bytes().as_slice())
                    .map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)
    }

    /// Replaces the cached member addresses (at most [`MAX_CACHED_MEMBERS`]).
    pub fn save_members(&self, members: &[(NodeId, SocketAddr)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut t = tx.open_table(MEMBERS).map_err(dberr)?;
            t.retain(|_, _| false).map_err(dberr)?;
            for (id, addr) in members.iter().take(MAX_CACHED_MEMBERS) {
                t.insert(id.as_str(), addr.to_string().as_str())
                    .map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)
    }

    /// The cached member addresses.
    pub fn members(&self) -> Result<Vec<SocketAddr>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(MEMBERS).map_err(dberr)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(dberr)? {
            let (_, v) = row.map_err(dberr)?;
            if let Ok(a) = v.value().parse() {
                out.push(a);
            }
        }
        Ok(out)
    }
}

/// A voter's Raft state in the node's redb database: every
/// [`RaftDisk::save`] is one write transaction, committed (and synced)
/// before the node sends the messages that depend on it.
pub struct RaftTables {
    store: std::sync::Arc<Store>,
}

impl RaftTables {
    /// The Raft tables of `store`.
    pub fn new(store: std::sync::Arc<Store>) -> Self {
        Self { store }
    }
}

fn disk_err<E: std::fmt::Display>(e: E) -> DiskError {
    DiskError(e.to_string())
}

impl RaftDisk for RaftTables {
    fn load(&mut self) -> Result<Option<DiskImage>, DiskError> {
        let tx = self.store.db.begin_read().map_err(disk_err)?;
        let state = tx.open_table(RAFT_STATE).map_err(disk_err)?;
        let Some(hard) = state.get("hard").map_err(disk_err)? else {
            return Ok(None);
        };
        let hard = decode_pb::<HardState>(hard.value())
            .ok_or_else(|| DiskError("hard state does not decode".into()))?;
        let snapshot = match state.get("snapshot").map_err(disk_err)? {
            Some(v) => postcard::from_bytes::<(u64, u64, Vec<u8>)>(v.value())
                .map_err(|_| DiskError("snapshot does not decode".into()))?,
            None => (0, 0, Vec::new()),
        };
        let log = tx.open_table(RAFT_LOG).map_err(disk_err)?;
        let mut entries = Vec::new();
        for row in log.range(snapshot.0 + 1..).map_err(disk_err)? {
            let (_, v) = row.map_err(disk_err)?;
            entries.push(
                decode_pb::<Entry>(v.value())
                    .ok_or_else(|| DiskError("log entry does not decode".into()))?,
            );
        }
        Ok(Some(DiskImage {
            hard,
            snapshot,
            entries,
        }))
    }

    fn save(&mut self, w: DiskWrite<'_>) -> Result<(), DiskError> {
        let tx = self.store.db.begin_write().map_err(disk_err)?;
        {
            let mut state = tx.open_table(RAFT_STATE).map_err(disk_err)?;
            let mut log = tx.open_table(RAFT_LOG).map_err(disk_err)?;
            if let Some((index, term, data)) = w.snapshot {
                let enc = postcard::to_stdvec(&(index, term, data)).map_err(disk_err)?;
                state.insert("snapshot", enc.as_slice()).map_err(disk_err)?;
                log.retain(|k, _| k > index).map_err(disk_err)?;
            }
            if let Some(from) = w.truncate_from {
                log.retain(|k, _| k < from).map_err(disk_err)?;
            }
            for e in w.entries {
                log.insert(e.index, encode_pb(e).as_slice())
                    .map_err(disk_err)?;
            }
            if let Some(h) = w.hard {
                state
                    .insert("hard", encode_pb(h).as_slice())
                    .map_err(disk_err)?;
            } else if state.get("hard").map_err(disk_err)?.is_none() {
                // The first write of a new voter: mark the state present.
                state
                    .insert("hard", encode_pb(&HardState::default()).as_slice())
                    .map_err(disk_err)?;
            }
        }
        tx.commit().map_err(disk_err)
    }

    fn clear(&mut self) -> Result<(), DiskError> {
        let tx = self.store.db.begin_write().map_err(disk_err)?;
        {
            let mut state = tx.open_table(RAFT_STATE).map_err(disk_err)?;
            state.retain(|_, _| false).map_err(disk_err)?;
            let mut log = tx.open_table(RAFT_LOG).map_err(disk_err)?;
            log.retain(|_, _| false).map_err(disk_err)?;
        }
        tx.commit().map_err(disk_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_grows_and_members_persist() {
        let dir = std::env::temp_dir().join(format!("roster-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = NodeId::new("a").unwrap();
        {
            let s = Store::open(&dir).unwrap();
            assert_eq!(s.start(&a).unwrap(), Generation(1));
            let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
            s.save_members(&[(NodeId::new("b").unwrap(), addr)])
                .unwrap();
        }
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.start(&a).unwrap(), Generation(2));
        assert_eq!(s.members().unwrap().len(), 1);
        s.raise_generation(Generation(7)).unwrap();
        assert_eq!(s.start(&a).unwrap(), Generation(8));
        assert!(matches!(
            s.start(&NodeId::new("other").unwrap()),
            Err(StoreError::OtherNode { .. })
        ));
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn raft_tables_survive_reopening() {
        use crate::node::meta::storage::RaftStore;
        use crate::node::meta::{Machine, RaftDisk};
        let dir = std::env::temp_dir().join(format!("roster-raft-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = std::sync::Arc::new(Store::open(&dir).unwrap());
        let mut disk = RaftTables::new(store.clone());
        assert!(disk.load().unwrap().is_none());
        let (mut s, init) = RaftStore::open(Box::new(RaftTables::new(store.clone()))).unwrap();
        assert!(!init);
        s.bootstrap(Machine {
            cluster: 9,
            ..Default::default()
        })
        .unwrap();
        let e = |i: u64| Entry {
            index: i,
            term: 1,
            data: vec![i as u8].into(),
            ..Default::default()
        };
        s.append(&[e(2), e(3), e(4)]).unwrap();
        s.append(&[e(3)]).unwrap();
        s.set_commit(3).unwrap();
        drop(s);
        drop(disk);
        drop(store);
        let store = std::sync::Arc::new(Store::open(&dir).unwrap());
        let (s, init) = RaftStore::open(Box::new(RaftTables::new(store.clone()))).unwrap();
        assert!(init);
        assert_eq!(s.machine.cluster, 9);
        assert_eq!(s.hard_state().commit, 3);
        assert_eq!(raft::Storage::last_index(&s).unwrap(), 3);
        RaftTables::new(store).clear().unwrap();
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! `FilePersistence`: a directory holding a segmented write-ahead log,
//! snapshots and the node's incarnation counter, locked against a second
//! process.
//!
//! ```text
//!  DATA_DIR/
//!    LOCK            held (flock) while a process uses the directory
//!    incarnation     the start counter (temp file + rename + fsync)
//!    wal/*.wal       segments (see `wal`)
//!    snapshots/*.snap
//! ```
//!
//! Durability: with [`SyncPolicy::Always`] (the default) `append` returns
//! only after `fdatasync`, so everything the engine reports durable survives
//! a machine crash. `append` receives a whole group of records at once (the
//! engine's persistence task batches everything queued since its last
//! write), so one sync covers many records and many operations.
//!
//! The I/O is blocking; the engine calls it from its persistence task.
//! Snapshots, which may be large, are written on tokio's blocking pool
//! (inline when there is no runtime).

mod legacy_record;
mod snapshot;
mod wal;
mod wal_scan;

use crate::error::PersistenceError;
use crate::persistence::{Persistence, Recovered};
use crate::snapshot::Snapshot;
use async_trait::async_trait;
use rabia_core::protocol::PersistRecord;
use rabia_core::Slot;
use snapshot::{EncodedSnapshot, SnapshotStore};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wal::{io_error, sync_dir, Wal};

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` before every `append` returns (one per group commit).
    /// Safe against machine crashes. The default.
    Always,
    /// `fdatasync` at most this often; `append` may return before its
    /// records are on disk. Survives a process crash (the data is in the
    /// operating system's cache) but **not a machine crash**: a restarted
    /// machine may have lost records the replica already acted on, which
    /// breaks the restart rule (protocol.md). Only for deployments that
    /// accept that.
    Periodic(Duration),
}

/// Settings of a [`FilePersistence`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOptions {
    /// When to sync.
    pub sync: SyncPolicy,
    /// Start a new log segment beyond this size.
    pub segment_bytes_max: u64,
    /// Snapshots kept (the newest first; older ones are deleted).
    pub snapshots_kept: usize,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            sync: SyncPolicy::Always,
            segment_bytes_max: 64 << 20,
            snapshots_kept: 2,
        }
    }
}

/// Durable storage in a directory. See the module docs for the layout.
#[derive(Debug)]
pub struct FilePersistence {
    dir: PathBuf,
    options: FileOptions,
    _lock: File,
    wal: Option<Wal>,
    snapshots: SnapshotStore,
    /// Base slot of the newest durable snapshot (zero without one).
    snapshot_covered: Slot,
    last_sync: Instant,
    torn_bytes: u64,
}

/// Runs blocking file work on the tokio runtime's blocking pool when there
/// is a runtime (so that a node on a single-threaded runtime keeps serving
/// while a large snapshot is written), inline otherwise.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PersistenceError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime
                .spawn_blocking(work)
                .await
                .map_err(|e| PersistenceError::Unavailable {
                    reason: format!("the storage thread failed: {e}"),
                })
        }
        Err(_) => Ok(work()),
    }
}

/// Whether the caller runs on a multi-threaded tokio runtime, whose workers
/// other tasks share (docs/benchmarks.md, session 8: syncing in
/// `block_in_place` there gains 7–48 % in-process; on a current-thread
/// runtime, a thread per node, the sync stays inline: moving it to another
/// thread there measured 30 % slower).
fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

impl FilePersistence {
    /// Opens (creating if needed) the data directory `dir` and locks it.
    /// Fails with [`PersistenceError::Locked`] if another process holds it.
    pub fn open(dir: impl AsRef<Path>, options: FileOptions) -> Result<Self, PersistenceError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(PersistenceError::Locked { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&lock_path, e)),
        }
        let snapshots = SnapshotStore::open(&dir.join("snapshots"), options.snapshots_kept)?;
        Ok(FilePersistence {
            dir,
            options,
            _lock: lock,
            wal: None,
            snapshots,
            snapshot_covered: Slot::ZERO,
            last_sync: Instant::now(),
            torn_bytes: 0,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of torn records removed from the end of the log at the last
    /// recovery.
    pub fn torn_bytes(&self) -> u64 {
        self.torn_bytes
    }

    /// Number of log segment files.
    pub fn segment_count(&self) -> usize {
        self.wal.as_ref().map_or(0, Wal::segment_count)
    }

    /// Bytes of data (header and records) in the log segment being
    /// written; 0 before [`Persistence::recover`]. The segment's file is
    /// longer: the space ahead of the data is zero-filled in advance.
    pub fn current_segment_data_len(&self) -> u64 {
        self.wal.as_ref().map_or(0, Wal::current_data_len)
    }

    fn next_incarnation(&self) -> Result<u64, PersistenceError> {
        let path = self.dir.join("incarnation");
        let current = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|e| PersistenceError::Corrupted {
                    path: path.clone(),
                    offset: 0,
                    reason: format!("incarnation counter unreadable: {e}"),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error(&path, e)),
        };
        let tmp = self.dir.join("incarnation.tmp");
        let mut file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        writeln!(file, "{}", current + 1).map_err(|e| io_error(&tmp, e))?;
        file.sync_all().map_err(|e| io_error(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        Ok(current)
    }

    fn wal(&mut self) -> Result<&mut Wal, PersistenceError> {
        self.wal
            .as_mut()
            .ok_or_else(|| PersistenceError::Unavailable {
                reason: "recover() must be called before writing".into(),
            })
    }
}

#[async_trait]
impl Persistence for FilePersistence {
    async fn recover(&mut self) -> Result<Recovered, PersistenceError> {
        let incarnation = self.next_incarnation()?;
        let snapshot = self.snapshots.latest()?;
        let (wal, scan) = Wal::open(&self.dir.join("wal"), self.options.segment_bytes_max)?;
        self.wal = Some(wal);
        self.torn_bytes = scan.torn_bytes;
        let base = snapshot.as_ref().map_or(Slot::ZERO, |s| s.base_slot);
        self.snapshot_covered = base;
        let records = scan
            .records
            .into_iter()
            .filter(|r| r.slot() >= base)
            .collect();
        Ok(Recovered {
            incarnation,
            snapshot,
            records,
        })
    }

    async fn append(&mut self, records: &[PersistRecord]) -> Result<(), PersistenceError> {
        let policy = self.options.sync;
        let due = match policy {
            SyncPolicy::Always => true,
            SyncPolicy::Periodic(every) => self.last_sync.elapsed() >= every,
        };
        let wal = self.wal()?;
        wal.append(records)?;
        if !due {
            return Ok(());
        }
        if on_multi_thread_runtime() {
            // The sync waits for the disk (hundreds of microseconds): the
            // worker hands its other tasks (other replicas, the
            // application) to another thread first, and syncs here, with
            // no hand-off of the sync itself. (Only on a multi-threaded
            // runtime: `block_in_place` panics on a current-thread one,
            // which is this node's own thread; a hand-off per sync there
            // costs more than it frees.)
            tokio::task::block_in_place(|| wal.sync())?;
        } else {
            wal.sync()?;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Encodes on the caller's thread, then syncs the log and writes the
    /// file on a blocking thread (see `off_runtime`).
    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), PersistenceError> {
        let encoded = EncodedSnapshot::new(snapshot)?;
        let base = snapshot.base_slot;
        let store = self.snapshots.clone();
        // Taken for the duration of the write and put back after it; lost
        // only if the write thread panics, and then later calls fail.
        let Some(mut wal) = self.wal.take() else {
            return Err(PersistenceError::Unavailable {
                reason: "recover() must be called before writing".into(),
            });
        };
        let (wal, saved) = off_runtime(move || {
            // The log up to here must be durable before anything behind
            // the snapshot can be dropped.
            let saved = wal.sync().and_then(|()| store.write(encoded));
            (wal, saved)
        })
        .await?;
        self.wal = Some(wal);
        saved?;
        self.snapshot_covered = self.snapshot_covered.max(base);
        Ok(())
    }

    async fn truncate_before(&mut self, slot: Slot) -> Result<(), PersistenceError> {
        // The newest durable snapshot, as recovered or saved since (reading
        // it back from disk for its base slot would cost a full read).
        let limit = slot.min(self.snapshot_covered);
        self.wal()?.truncate_before(limit)?;
        Ok(())
    }
}

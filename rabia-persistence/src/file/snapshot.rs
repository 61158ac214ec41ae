//! Snapshot files: written to a temporary file, fsynced, renamed into place,
//! and the directory fsynced; the last `kept` snapshots are retained.
//!
//! ```text
//!  snapshots/00000000000000001234.snap
//!  "RABIASNP" | version u32 | base_slot u64 | epoch u64 | len u64 | crc32c u32 | bincode(Snapshot)
//! ```

use super::wal::{io_error, sync_dir};
use crate::error::PersistenceError;
use crate::snapshot::Snapshot;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const SNAPSHOT_MAGIC: &[u8; 8] = b"RABIASNP";
const SNAPSHOT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8 + 4;

/// The snapshot directory.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotStore {
    dir: PathBuf,
    kept: usize,
}

impl SnapshotStore {
    pub(crate) fn open(dir: &Path, kept: usize) -> Result<Self, PersistenceError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            kept: kept.max(1),
        })
    }

    fn files(&self) -> Result<Vec<(u64, PathBuf)>, PersistenceError> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let path = entry.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(slot) = name
                .strip_suffix(".snap")
                .and_then(|n| n.parse::<u64>().ok())
            {
                files.push((slot, path));
            } else if name.ends_with(".tmp") {
                // An interrupted save: never renamed, so never durable.
                let _ = fs::remove_file(&path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Writes an encoded snapshot durably (temporary file, sync, rename,
    /// directory sync) and drops the oldest beyond `kept`. Blocking I/O.
    pub(crate) fn write(&self, encoded: EncodedSnapshot) -> Result<(), PersistenceError> {
        let EncodedSnapshot { base_slot, bytes } = encoded;
        let name = format!("{:020}", base_slot);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(format!("{name}.snap"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .map_err(|e| io_error(&tmp, e))?;
        file.write_all(&bytes).map_err(|e| io_error(&tmp, e))?;
        file.sync_all().map_err(|e| io_error(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        let files = self.files()?;
        if files.len() > self.kept {
            for (_, old) in &files[..files.len() - self.kept] {
                fs::remove_file(old).map_err(|e| io_error(old, e))?;
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The newest valid snapshot. A corrupt newest snapshot falls back to an
    /// older valid one (with a warning); corrupt snapshots and no valid one
    /// is a fatal error naming the file.
    pub(crate) fn latest(&self) -> Result<Option<Snapshot>, PersistenceError> {
        let mut first_error = None;
        for (_, path) in self.files()?.into_iter().rev() {
            match read_snapshot(&path) {
                Ok(snapshot) => {
                    if let Some(e) = &first_error {
                        tracing::warn!(error = %e, "newest snapshot is corrupt; using an older one");
                    }
                    return Ok(Some(snapshot));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
}

/// A snapshot encoded for its file (header, checksum, payload): built on
/// the caller's thread, written by [`SnapshotStore::write`] on a blocking one.
pub(crate) struct EncodedSnapshot {
    base_slot: u64,
    bytes: Vec<u8>,
}

impl EncodedSnapshot {
    pub(crate) fn new(snapshot: &Snapshot) -> Result<Self, PersistenceError> {
        let payload = bincode::serialize(snapshot).map_err(|e| PersistenceError::Encode {
            what: "snapshot",
            reason: e.to_string(),
        })?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&snapshot.base_slot.0.to_le_bytes());
        bytes.extend_from_slice(&snapshot.epoch.0.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        Ok(EncodedSnapshot {
            base_slot: snapshot.base_slot.0,
            bytes,
        })
    }
}

fn read_snapshot(path: &Path) -> Result<Snapshot, PersistenceError> {
    let corrupted = |offset: u64, reason: String| PersistenceError::Corrupted {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io_error(path, e))?;
    if bytes.len() < HEADER_LEN || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupted(
            0,
            "not a snapshot file (bad magic or short header)".into(),
        ));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != SNAPSHOT_VERSION {
        return Err(corrupted(
            8,
            format!("unsupported snapshot version {version}"),
        ));
    }
    let base_slot = u64_at(12);
    let len = u64_at(28);
    let crc = u32::from_le_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]);
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(corrupted(
            HEADER_LEN as u64,
            format!("payload is {} bytes, header says {len}", payload.len()),
        ));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(corrupted(HEADER_LEN as u64, "checksum mismatch".into()));
    }
    let snapshot: Snapshot = bincode::deserialize(payload)
        .map_err(|e| corrupted(HEADER_LEN as u64, format!("undecodable snapshot: {e}")))?;
    if snapshot.base_slot.0 != base_slot {
        return Err(corrupted(
            12,
            "header slot differs from the snapshot's".into(),
        ));
    }
    Ok(snapshot)
}

//! The segmented write-ahead log.
//!
//! ```text
//!  wal/00000000000000000000.wal   segment: header, then records
//!  ┌──────────────────────────────┐
//!  │ "RABIAWAL" | version u32 | 0 │  16-byte header
//!  ├──────────────────────────────┤
//!  │ len u32 | crc32c u32 | bytes │  one record: bincode(PersistRecord)
//!  │ len u32 | crc32c u32 | bytes │
//!  └──────────────────────────────┘
//! ```
//!
//! A segment is named after the sequence number of its first record. Records
//! are appended in groups with one `fdatasync` per group (group commit).
//! Recovery scans every segment; a record cut short by a crash at the end of
//! the last segment (a torn tail) is truncated away, anything else that fails
//! verification is a fatal [`PersistenceError::Corrupted`].

use crate::error::PersistenceError;
use rabia_core::protocol::PersistRecord;
use rabia_core::Slot;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Segment header magic.
pub(crate) const WAL_MAGIC: &[u8; 8] = b"RABIAWAL";
/// Current WAL format version.
pub(crate) const WAL_VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;
/// A record longer than this is corruption, not data.
pub(crate) const RECORD_BYTES_MAX: u32 = 64 << 20;

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> PersistenceError {
    PersistenceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PersistenceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Highest slot of any record in the segment.
    max_slot: Option<Slot>,
    /// Bytes in the segment, header included.
    len: u64,
}

/// What a scan of the log found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) records: Vec<PersistRecord>,
    /// Bytes cut from the end of the last segment (a torn tail).
    pub(crate) torn_bytes: u64,
}

/// The open log.
#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    current: Option<File>,
    next_seq: u64,
    segment_bytes_max: u64,
    buffer: Vec<u8>,
}

impl Wal {
    /// Opens the log in `dir`, recovering every record (see module docs).
    pub(crate) fn open(
        dir: &Path,
        segment_bytes_max: u64,
    ) -> Result<(Wal, Scan), PersistenceError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
            let entry = entry.map_err(|e| io_error(dir, e))?;
            let path = entry.path();
            let Some(seq) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            names.push((seq, path));
        }
        names.sort();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            current: None,
            next_seq: 0,
            segment_bytes_max: segment_bytes_max.max(HEADER_LEN + 1),
            buffer: Vec::new(),
        };
        let mut scan = Scan::default();
        let count = names.len();
        for (i, (first_seq, path)) in names.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| io_error(&path, e))?;
            let found = scan_segment(&path, &bytes, is_last)?;
            if found.valid_len == 0 {
                // The crash came while the segment was being created.
                fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                sync_dir(dir)?;
                wal.next_seq = wal.next_seq.max(first_seq);
                continue;
            }
            if found.valid_len < bytes.len() as u64 {
                // Torn tail of the last segment: cut it off durably.
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, e))?;
                file.set_len(found.valid_len)
                    .map_err(|e| io_error(&path, e))?;
                file.sync_all().map_err(|e| io_error(&path, e))?;
                scan.torn_bytes += bytes.len() as u64 - found.valid_len;
                tracing::warn!(
                    path = %path.display(),
                    offset = found.valid_len,
                    cut = bytes.len() as u64 - found.valid_len,
                    "truncated a torn record at the end of the write-ahead log"
                );
            }
            wal.next_seq = first_seq + found.records.len() as u64;
            let max_slot = found.records.iter().map(PersistRecord::slot).max();
            scan.records.extend(found.records);
            wal.segments.push(Segment {
                path,
                max_slot,
                len: found.valid_len,
            });
        }
        match wal.segments.last() {
            Some(last) => {
                let path = last.path.clone();
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, e))?;
                wal.current = Some(file);
            }
            None => wal.start_segment()?,
        }
        Ok((wal, scan))
    }

    fn start_segment(&mut self) -> Result<(), PersistenceError> {
        let path = self.dir.join(format!("{:020}.wal", self.next_seq));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(WAL_MAGIC);
        header.extend_from_slice(&WAL_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        file.write_all(&header).map_err(|e| io_error(&path, e))?;
        file.sync_all().map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            path,
            max_slot: None,
            len: HEADER_LEN,
        });
        self.current = Some(file);
        Ok(())
    }

    /// Appends records as one write; durable after [`Wal::sync`].
    pub(crate) fn append(&mut self, records: &[PersistRecord]) -> Result<(), PersistenceError> {
        self.buffer.clear();
        let mut max_slot = None;
        for record in records {
            let payload = bincode::serialize(record).map_err(|e| PersistenceError::Encode {
                what: "write-ahead log record",
                reason: e.to_string(),
            })?;
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|len| *len <= RECORD_BYTES_MAX)
                .ok_or_else(|| PersistenceError::Encode {
                    what: "write-ahead log record",
                    reason: format!("record of {} bytes is too large", payload.len()),
                })?;
            self.buffer.extend_from_slice(&len.to_le_bytes());
            self.buffer
                .extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
            self.buffer.extend_from_slice(&payload);
            max_slot = max_slot.max(Some(record.slot()));
        }
        let (Some(file), Some(segment)) = (self.current.as_mut(), self.segments.last_mut()) else {
            return Err(PersistenceError::Unavailable {
                reason: "write-ahead log is not open".into(),
            });
        };
        file.write_all(&self.buffer)
            .map_err(|e| io_error(&segment.path, e))?;
        segment.len += self.buffer.len() as u64;
        segment.max_slot = segment.max_slot.max(max_slot);
        self.next_seq += records.len() as u64;
        Ok(())
    }

    /// Makes every appended record durable; starts a new segment when the
    /// current one is full.
    pub(crate) fn sync(&mut self) -> Result<(), PersistenceError> {
        let (Some(file), Some(segment)) = (self.current.as_ref(), self.segments.last()) else {
            return Ok(());
        };
        file.sync_data().map_err(|e| io_error(&segment.path, e))?;
        if segment.len >= self.segment_bytes_max {
            self.start_segment()?;
        }
        Ok(())
    }

    /// Deletes whole segments whose records are all below `slot` (never the
    /// segment being written).
    pub(crate) fn truncate_before(&mut self, slot: Slot) -> Result<usize, PersistenceError> {
        let mut removed = 0;
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            if first.max_slot.is_some_and(|max| max >= slot) {
                break;
            }
            fs::remove_file(&first.path).map_err(|e| io_error(&first.path, e))?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Number of segment files.
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

struct SegmentScan {
    records: Vec<PersistRecord>,
    valid_len: u64,
}

/// Verifies one segment. A bad or short record is a torn tail only at the
/// very end of the last segment; anywhere else it is corruption.
fn scan_segment(path: &Path, bytes: &[u8], is_last: bool) -> Result<SegmentScan, PersistenceError> {
    let corrupted = |offset: u64, reason: String| PersistenceError::Corrupted {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if bytes.len() < HEADER_LEN as usize {
        if is_last {
            // A crash while creating the segment: nothing in it was durable.
            return Ok(SegmentScan {
                records: Vec::new(),
                valid_len: 0,
            });
        }
        return Err(corrupted(0, "segment shorter than its header".into()));
    }
    if &bytes[..8] != WAL_MAGIC {
        return Err(corrupted(
            0,
            "not a write-ahead log segment (bad magic)".into(),
        ));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != WAL_VERSION {
        return Err(corrupted(
            8,
            format!("unsupported format version {version} (this build reads {WAL_VERSION})"),
        ));
    }
    let mut records = Vec::new();
    let mut offset = HEADER_LEN as usize;
    while offset < bytes.len() {
        let start = offset as u64;
        let torn = |reason: &str| -> Result<SegmentScan, PersistenceError> {
            Err(corrupted(start, reason.to_string()))
        };
        let Some(head) = bytes.get(offset..offset + 8) else {
            if is_last {
                break; // torn length/crc prefix
            }
            return torn("record header cut short in the middle of the log");
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > RECORD_BYTES_MAX {
            if is_last && !valid_record_follows(bytes, offset + 8) {
                break;
            }
            return torn(&format!("record length {len} exceeds the maximum"));
        }
        let end = offset + 8 + len as usize;
        let Some(payload) = bytes.get(offset + 8..end) else {
            if is_last {
                break; // torn payload
            }
            return torn("record cut short in the middle of the log");
        };
        if crc32c::crc32c(payload) != crc {
            if is_last && end == bytes.len() {
                break; // the last record was being written when the crash came
            }
            return torn("checksum mismatch");
        }
        let record: PersistRecord = bincode::deserialize(payload)
            .map_err(|e| corrupted(start, format!("undecodable record: {e}")))?;
        records.push(record);
        offset = end;
    }
    Ok(SegmentScan {
        records,
        valid_len: offset as u64,
    })
}

/// Whether any complete, checksummed record starts at or after `from`
/// (used to tell a torn tail from garbage in the middle).
fn valid_record_follows(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(8)).any(|at| {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        len > 0
            && len <= RECORD_BYTES_MAX
            && bytes
                .get(at + 8..at + 8 + len as usize)
                .is_some_and(|p| crc32c::crc32c(p) == crc)
    })
}

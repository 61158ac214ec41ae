//! Reading write-ahead log segments back: verification, the end of the
//! data, and telling a torn tail (never synced, safe to drop) from
//! corruption of synced records (a fatal error).
//!
//! Four formats are read:
//!
//! * **Version 4** (written today): the version 3 layout and records, plus
//!   one more record kind (`DecidedAsProposed`, a decision that refers to
//!   the payload of the replica's own Proposal record). Older builds cannot
//!   decode that kind, hence the new number.
//! * **Version 3** (earlier builds): the version 2 layout, with records
//!   that hold multi-batch slot values; decoded as version 4.
//! * **Version 2** (earlier builds; the same layout, records with one-batch
//!   values, decoded by `legacy_record`). A segment is zero-filled ahead of the
//!   write position, so the end of the data is the first record that does
//!   not verify. Each record carries `synced_through`: the offset up to
//!   which the segment was durable when the record was written. A crash can
//!   tear only records written after the last sync, and a torn write may
//!   persist its sectors in any order, so a bad record may be followed by
//!   good ones from the same unsynced group. The rule: a bad record at
//!   offset `x` is a torn tail unless some later record that verifies says
//!   `synced_through > x` (then `x` was durable and is now damaged:
//!   corruption).
//! * **Version 1** (earlier builds): records up to the end of the file, no
//!   preallocation; a bad record is a torn tail only at the very end of the
//!   last segment. Records with one-batch values, as in version 2.

use super::legacy_record;
use crate::error::PersistenceError;
use rabia_core::protocol::PersistRecord;
use std::path::Path;

/// Segment header magic.
pub(crate) const WAL_MAGIC: &[u8; 8] = b"RABIAWAL";
/// The format version this build writes.
pub(crate) const WAL_VERSION: u32 = 4;
/// Version 4 without `DecidedAsProposed` records, still read (by the same
/// decoder).
pub(crate) const WAL_VERSION_3: u32 = 3;
/// The version 3 layout with one-batch records, still read.
pub(crate) const WAL_VERSION_2: u32 = 2;
/// The first format, still read.
pub(crate) const WAL_VERSION_1: u32 = 1;

/// Decodes one record's payload.
type RecordDecoder = fn(&[u8]) -> Result<PersistRecord, String>;

fn decode_current(payload: &[u8]) -> Result<PersistRecord, String> {
    bincode::deserialize(payload).map_err(|e| e.to_string())
}
/// Bytes of the segment header: magic, version, reserved.
pub(crate) const HEADER_LEN: u64 = 16;
/// A record longer than this is corruption, not data.
pub(crate) const RECORD_BYTES_MAX: u32 = 64 << 20;
/// Bytes before a version 2 record's payload: length, checksum,
/// `synced_through`.
pub(crate) const RECORD_HEADER_LEN: usize = 16;
/// Bytes before a version 1 record's payload: length, checksum.
const RECORD_HEADER_LEN_V1: usize = 8;

/// Checksum of a version 2 record: covers `synced_through` and the payload.
pub(crate) fn record_crc(synced_through: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&synced_through.to_le_bytes()), payload)
}

/// What one segment holds.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    /// The format version of the segment.
    pub(crate) version: u32,
    /// Every verified record, in order.
    pub(crate) records: Vec<PersistRecord>,
    /// Where the data ends (header included); 0 when the segment was never
    /// completely created.
    pub(crate) valid_len: u64,
    /// Bytes after `valid_len` up to the last non-zero byte: what a torn
    /// tail left behind (0 for a clean end).
    pub(crate) torn_bytes: u64,
}

/// Verifies one segment. `is_last`: whether it is the segment that was
/// being written (only that one may end in a torn tail).
pub(crate) fn scan_segment(
    path: &Path,
    bytes: &[u8],
    is_last: bool,
) -> Result<SegmentScan, PersistenceError> {
    let corrupted = |offset: u64, reason: String| PersistenceError::Corrupted {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if bytes.len() < HEADER_LEN as usize {
        if is_last {
            // A crash while creating the segment: nothing in it was durable.
            return Ok(SegmentScan {
                version: WAL_VERSION,
                records: Vec::new(),
                valid_len: 0,
                torn_bytes: 0,
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
    match version {
        WAL_VERSION | WAL_VERSION_3 => scan_v2(bytes, is_last, version, decode_current)
            .map_err(|(offset, reason)| corrupted(offset, reason)),
        WAL_VERSION_2 => scan_v2(bytes, is_last, version, legacy_record::decode)
            .map_err(|(offset, reason)| corrupted(offset, reason)),
        WAL_VERSION_1 => scan_v1(bytes, is_last).map_err(|(offset, reason)| corrupted(offset, reason)),
        _ => Err(corrupted(
            8,
            format!(
                "unsupported format version {version} (this build reads {WAL_VERSION_1} to {WAL_VERSION})"
            ),
        )),
    }
}

/// One version 2 record at `offset`, if it verifies: (payload, synced_through, end).
fn record_v2_at(bytes: &[u8], offset: usize) -> Result<(&[u8], u64, usize), String> {
    let Some(head) = bytes.get(offset..offset + RECORD_HEADER_LEN) else {
        return Err("record header cut short".into());
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut synced = [0u8; 8];
    synced.copy_from_slice(&head[8..16]);
    let synced_through = u64::from_le_bytes(synced);
    if len == 0 {
        return Err("no record (zero length)".into());
    }
    if len > RECORD_BYTES_MAX {
        return Err(format!("record length {len} exceeds the maximum"));
    }
    let end = offset + RECORD_HEADER_LEN + len as usize;
    let Some(payload) = bytes.get(offset + RECORD_HEADER_LEN..end) else {
        return Err("record cut short".into());
    };
    if record_crc(synced_through, payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok((payload, synced_through, end))
}

type ScanError = (u64, String);

fn scan_v2(
    bytes: &[u8],
    is_last: bool,
    version: u32,
    decode: RecordDecoder,
) -> Result<SegmentScan, ScanError> {
    let mut records = Vec::new();
    let mut offset = HEADER_LEN as usize;
    let mut failure = None;
    while offset < bytes.len() {
        match record_v2_at(bytes, offset) {
            Ok((payload, _, end)) => {
                let record = decode(payload)
                    .map_err(|e| (offset as u64, format!("undecodable record: {e}")))?;
                records.push(record);
                offset = end;
            }
            Err(reason) => {
                failure = Some(reason);
                break;
            }
        }
    }
    let rest = &bytes[offset..];
    let torn_bytes = rest
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last as u64 + 1);
    if let Some(reason) = failure {
        if torn_bytes > 0 {
            // Something other than the zero-filled space follows the data.
            if !is_last {
                // A segment is synced before the next one starts.
                return Err((offset as u64, reason));
            }
            if let Some(at) = synced_record_follows(bytes, offset) {
                return Err((
                    offset as u64,
                    format!(
                        "{reason}, but the record at offset {at} says everything before it was synced"
                    ),
                ));
            }
        }
    }
    Ok(SegmentScan {
        version,
        records,
        valid_len: offset as u64,
        torn_bytes,
    })
}

/// The offset of a record after `from` that verifies and says the log was
/// synced past `from`.
fn synced_record_follows(bytes: &[u8], from: usize) -> Option<usize> {
    (from + 1..bytes.len().saturating_sub(RECORD_HEADER_LEN)).find(|at| {
        matches!(record_v2_at(bytes, *at), Ok((_, synced_through, _)) if synced_through > from as u64)
    })
}

fn scan_v1(bytes: &[u8], is_last: bool) -> Result<SegmentScan, ScanError> {
    let mut records = Vec::new();
    let mut offset = HEADER_LEN as usize;
    while offset < bytes.len() {
        let start = offset as u64;
        let fail =
            |reason: &str| -> Result<SegmentScan, ScanError> { Err((start, reason.to_string())) };
        let Some(head) = bytes.get(offset..offset + RECORD_HEADER_LEN_V1) else {
            if is_last {
                break; // torn length/crc prefix
            }
            return fail("record header cut short in the middle of the log");
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > RECORD_BYTES_MAX {
            if is_last && !valid_v1_record_follows(bytes, offset + RECORD_HEADER_LEN_V1) {
                break;
            }
            return fail(&format!("record length {len} exceeds the maximum"));
        }
        let end = offset + RECORD_HEADER_LEN_V1 + len as usize;
        let Some(payload) = bytes.get(offset + RECORD_HEADER_LEN_V1..end) else {
            if is_last {
                break; // torn payload
            }
            return fail("record cut short in the middle of the log");
        };
        if crc32c::crc32c(payload) != crc {
            if is_last && end == bytes.len() {
                break; // the last record was being written when the crash came
            }
            return fail("checksum mismatch");
        }
        let record = legacy_record::decode(payload)
            .map_err(|e| (start, format!("undecodable record: {e}")))?;
        records.push(record);
        offset = end;
    }
    Ok(SegmentScan {
        version: WAL_VERSION_1,
        records,
        valid_len: offset as u64,
        torn_bytes: (bytes.len() - offset) as u64,
    })
}

/// Whether any complete, checksummed version 1 record starts at or after
/// `from` (used to tell a torn tail from garbage in the middle).
fn valid_v1_record_follows(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(RECORD_HEADER_LEN_V1)).any(|at| {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        len > 0
            && len <= RECORD_BYTES_MAX
            && bytes
                .get(at + RECORD_HEADER_LEN_V1..at + RECORD_HEADER_LEN_V1 + len as usize)
                .is_some_and(|p| crc32c::crc32c(p) == crc)
    })
}

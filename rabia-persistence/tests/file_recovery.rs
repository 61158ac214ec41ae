//! Crash consistency of `FilePersistence`: crash images built from what was
//! durable, torn tails at every byte, bit flips, corrupt snapshots, locks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rabia_core::protocol::{DecidedFilter, PersistRecord};
use rabia_core::smr::SessionTable;
use rabia_core::{Epoch, Slot, SlotValue};
use rabia_persistence::{FileOptions, FilePersistence, Persistence, PersistenceError, Snapshot};
use std::path::{Path, PathBuf};

fn record(slot: u64) -> PersistRecord {
    PersistRecord::Decided {
        slot: Slot(slot),
        value: SlotValue::Null,
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn open(dir: &Path) -> FilePersistence {
    FilePersistence::open(dir, FileOptions::default()).unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// Writes `n` records, one synced group each, and returns where the data of
/// the single segment ends after each record.
fn write_records(dir: &Path, n: u64) -> Vec<u64> {
    block_on(async {
        let mut store = open(dir);
        store.recover().await.unwrap();
        let mut ends = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(3) {
            for slot in chunk {
                store.append(&[record(*slot)]).await.unwrap();
                ends.push(store.current_segment_data_len());
            }
        }
        ends
    })
}

fn recover(dir: &Path) -> Result<Vec<PersistRecord>, PersistenceError> {
    block_on(async {
        let mut store = FilePersistence::open(dir, FileOptions::default())?;
        Ok(store.recover().await?.records)
    })
}

/// Recovery of `dir` must fail with corruption: (file, offset, reason).
fn corruption(dir: &Path) -> (PathBuf, u64, String) {
    match recover(dir) {
        Err(PersistenceError::Corrupted {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn records_survive_reopen_and_incarnations_increase() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 10);
    let (a, b) = block_on(async {
        let mut store = open(dir.path());
        let a = store.recover().await.unwrap();
        drop(store);
        let mut store = open(dir.path());
        let b = store.recover().await.unwrap();
        (a, b)
    });
    assert_eq!(a.records, (0..10).map(record).collect::<Vec<_>>());
    assert_eq!(b.records.len(), 10);
    assert_eq!((a.incarnation, b.incarnation), (1, 2));
}

#[test]
fn a_second_process_cannot_open_a_locked_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    match FilePersistence::open(dir.path(), FileOptions::default()) {
        Err(PersistenceError::Locked { path }) => assert!(path.ends_with("LOCK")),
        other => panic!("expected a lock error, got {other:?}"),
    }
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte_and_nothing_before_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let ends = write_records(dir.path(), 6);
    let segment = segments(dir.path())[0].clone();
    let full = std::fs::read(&segment).unwrap();
    let last_start = ends[4] as usize;
    for cut in last_start..ends[5] as usize {
        std::fs::write(&segment, &full[..cut]).unwrap();
        let records = recover(dir.path()).unwrap();
        assert_eq!(
            records,
            (0..5).map(record).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        let repaired = std::fs::read(&segment).unwrap();
        assert_eq!(&repaired[..last_start], &full[..last_start], "data kept");
        assert!(
            repaired[last_start..].iter().all(|b| *b == 0),
            "torn bytes zeroed (cut at {cut})"
        );
    }
    // And the log keeps working after the repair.
    std::fs::write(&segment, &full).unwrap();
    assert_eq!(recover(dir.path()).unwrap().len(), 6);
}

#[test]
fn corruption_in_the_middle_is_a_fatal_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let ends = write_records(dir.path(), 6);
    let segment = segments(dir.path())[0].clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    let victim = ends[1] as usize + 10; // inside record 2's payload
    bytes[victim] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();
    let (path, offset, reason) = corruption(dir.path());
    assert_eq!(path, segment);
    assert_eq!(offset, ends[1]);
    assert!(reason.contains("checksum"), "{reason}");
}

/// A crash in the middle of a group write may leave its sectors on disk in
/// any order: a later record of the unsynced group intact after a torn
/// one. That is a torn tail (nothing in it was synced), not corruption.
#[test]
fn a_torn_group_with_a_later_record_intact_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let group_start = block_on(async {
        let mut store = open(dir.path());
        store.recover().await.unwrap();
        for slot in 0..3 {
            store.append(&[record(slot)]).await.unwrap();
        }
        let start = store.current_segment_data_len();
        store.append(&[record(3), record(4)]).await.unwrap();
        start
    });
    let segment = segments(dir.path())[0].clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    // The first record of the last group never reached the disk.
    bytes[group_start as usize..group_start as usize + 20].fill(0);
    std::fs::write(&segment, &bytes).unwrap();
    assert_eq!(
        recover(dir.path()).unwrap(),
        (0..3).map(record).collect::<Vec<_>>()
    );
    // The stale second record was zeroed: new records after the repair
    // are not followed by it.
    block_on(async {
        let mut store = open(dir.path());
        store.recover().await.unwrap();
        store.append(&[record(7)]).await.unwrap();
    });
    let mut expected: Vec<_> = (0..3).map(record).collect();
    expected.push(record(7));
    assert_eq!(recover(dir.path()).unwrap(), expected);
}

/// The same damage to a group that later records say was synced is
/// corruption.
#[test]
fn a_damaged_group_followed_by_a_synced_one_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let ends = write_records(dir.path(), 4);
    let segment = segments(dir.path())[0].clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[ends[1] as usize..ends[1] as usize + 20].fill(0);
    std::fs::write(&segment, &bytes).unwrap();
    let (_, offset, reason) = corruption(dir.path());
    assert_eq!(offset, ends[1]);
    assert!(reason.contains("synced"), "{reason}");
}

/// Segments of the earlier format (version 1: `len | crc32c | payload`
/// records up to the end of the file) are still read; new records go to a
/// new segment.
#[test]
fn version_1_segments_are_read_and_continued_in_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    let mut bytes = b"RABIAWAL".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    for slot in 0..3 {
        let payload = bincode::serialize(&record(slot)).unwrap();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
    }
    // A torn fourth record.
    bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    let old = dir.path().join("wal").join(format!("{:020}.wal", 0));
    std::fs::write(&old, &bytes).unwrap();
    block_on(async {
        let mut store = open(dir.path());
        let recovered = store.recover().await.unwrap();
        assert_eq!(recovered.records, (0..3).map(record).collect::<Vec<_>>());
        assert_eq!(store.torn_bytes(), 6);
        store.append(&[record(3)]).await.unwrap();
    });
    assert_eq!(segments(dir.path()).len(), 2, "a new segment for writing");
    assert_eq!(
        std::fs::metadata(&old).unwrap().len(),
        bytes.len() as u64 - 6
    );
    assert_eq!(
        recover(dir.path()).unwrap(),
        (0..4).map(record).collect::<Vec<_>>()
    );
}

/// Segments of version 3 (the layout of today's version 4, without its
/// newest record kind) are read by the same decoder and continued in a
/// new segment of the current version.
#[test]
fn version_3_segments_are_read_and_continued_in_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let mut store = open(dir.path());
        store.recover().await.unwrap();
        store.append(&[record(0), record(1)]).await.unwrap();
    });
    let old = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&old).unwrap();
    assert_eq!(&bytes[8..12], &4u32.to_le_bytes(), "written as version 4");
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(&old, &bytes).unwrap();
    block_on(async {
        let mut store = open(dir.path());
        let recovered = store.recover().await.unwrap();
        assert_eq!(recovered.records, vec![record(0), record(1)]);
        store.append(&[record(2)]).await.unwrap();
    });
    assert_eq!(segments(dir.path()).len(), 2, "a new segment for writing");
    assert_eq!(
        recover(dir.path()).unwrap(),
        (0..3).map(record).collect::<Vec<_>>()
    );
}

/// Snapshots are written on tokio's blocking pool inside a runtime, and
/// inline without one: both leave the same durable state.
#[test]
fn snapshots_are_saved_with_and_without_a_tokio_runtime() {
    for with_runtime in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let work = async {
            let mut store = open(dir.path());
            store.recover().await.unwrap();
            for slot in 0..12 {
                store.append(&[record(slot)]).await.unwrap();
            }
            store.save_snapshot(&snapshot(10)).await.unwrap();
            store.truncate_before(Slot(10)).await.unwrap();
            store.append(&[record(12)]).await.unwrap();
        };
        if with_runtime {
            block_on(work);
        } else {
            futures::executor::block_on(work);
        }
        let recovered = block_on(async { open(dir.path()).recover().await.unwrap() });
        assert_eq!(
            recovered.snapshot,
            Some(snapshot(10)),
            "runtime: {with_runtime}"
        );
        assert_eq!(
            recovered.records,
            (10..13).map(record).collect::<Vec<_>>(),
            "runtime: {with_runtime}"
        );
    }
}

fn snapshot(slot: u64) -> Snapshot {
    Snapshot {
        base_slot: Slot(slot),
        epoch: Epoch(0),
        state: vec![slot as u8; 32],
        sessions: SessionTable::default(),
        filter: DecidedFilter::default(),
    }
}

#[test]
fn snapshots_replace_the_log_behind_them_and_fall_back_when_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions {
        segment_bytes_max: 64,
        snapshots_kept: 2,
        ..FileOptions::default()
    };
    block_on(async {
        let mut store = FilePersistence::open(dir.path(), options.clone()).unwrap();
        store.recover().await.unwrap();
        for slot in 0..20 {
            store.append(&[record(slot)]).await.unwrap();
        }
        let before = store.segment_count();
        store.save_snapshot(&snapshot(10)).await.unwrap();
        store.truncate_before(Slot(10)).await.unwrap();
        assert!(
            store.segment_count() < before,
            "segments behind the snapshot are deleted"
        );
        store.save_snapshot(&snapshot(15)).await.unwrap();
    });
    let recovered = block_on(async {
        let mut store = FilePersistence::open(dir.path(), options.clone()).unwrap();
        store.recover().await.unwrap()
    });
    assert_eq!(recovered.snapshot.unwrap().base_slot, Slot(15));
    assert_eq!(recovered.records, (15..20).map(record).collect::<Vec<_>>());

    // Corrupt the newest snapshot: the older one is used.
    let newest = dir
        .path()
        .join("snapshots")
        .join(format!("{:020}.snap", 15));
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&newest, &bytes).unwrap();
    let recovered = block_on(async {
        let mut store = FilePersistence::open(dir.path(), options.clone()).unwrap();
        store.recover().await.unwrap()
    });
    assert_eq!(recovered.snapshot.unwrap().base_slot, Slot(10));

    // Corrupt the older one too: a clear error, not silent loss.
    let older = dir
        .path()
        .join("snapshots")
        .join(format!("{:020}.snap", 10));
    std::fs::write(&older, b"garbage").unwrap();
    let result = block_on(async {
        let mut store = FilePersistence::open(dir.path(), options).unwrap();
        store.recover().await
    });
    assert!(
        matches!(result, Err(PersistenceError::Corrupted { .. })),
        "{result:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any crash image (a prefix of the log, possibly with garbage after it)
    /// never panics; every record wholly inside the prefix is recovered or
    /// the corruption is reported.
    #[test]
    fn arbitrary_crash_images_never_panic_or_lose_complete_records(
        n in 1u64..12,
        cut_fraction in 0.0f64..1.0,
        garbage in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ends = write_records(dir.path(), n);
        let segment = segments(dir.path())[0].clone();
        let mut full = std::fs::read(&segment).unwrap();
        full.truncate(*ends.last().unwrap() as usize);
        let cut = 16 + ((full.len() - 16) as f64 * cut_fraction) as usize;
        let mut image = full[..cut].to_vec();
        image.extend_from_slice(&garbage);
        std::fs::write(&segment, &image).unwrap();
        let complete = ends.iter().filter(|end| **end as usize <= cut).count();
        match recover(dir.path()) {
            Ok(records) => {
                prop_assert!(records.len() >= complete, "lost a complete record");
                prop_assert_eq!(&records[..complete], &(0..complete as u64).map(record).collect::<Vec<_>>()[..]);
            }
            Err(PersistenceError::Corrupted { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}

/// A record that is never dropped (a learner's, with the maximum slot)
/// keeps its segment, and later segments behind a snapshot are still
/// deleted around it; the record survives a restart.
#[test]
fn a_kept_record_does_not_stop_truncation_of_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions {
        segment_bytes_max: 64,
        ..FileOptions::default()
    };
    let learner = PersistRecord::Learner {
        participate_from: Some(Slot(3)),
    };
    block_on(async {
        let mut store = FilePersistence::open(dir.path(), options.clone()).unwrap();
        store.recover().await.unwrap();
        store.append(std::slice::from_ref(&learner)).await.unwrap();
        for slot in 0..20 {
            store.append(&[record(slot)]).await.unwrap();
        }
        let before = store.segment_count();
        store.save_snapshot(&snapshot(15)).await.unwrap();
        store.truncate_before(Slot(15)).await.unwrap();
        assert!(
            store.segment_count() < before - 5,
            "segments behind the snapshot are deleted: {} of {before} left",
            store.segment_count()
        );
    });
    let recovered = block_on(async {
        let mut store = FilePersistence::open(dir.path(), options).unwrap();
        store.recover().await.unwrap()
    });
    assert_eq!(recovered.records.first(), Some(&learner));
    assert_eq!(
        recovered.records[1..],
        (15..20).map(record).collect::<Vec<_>>()[..]
    );
}

/// A data directory written by the build before multi-batch slot values
/// (WAL format 2, one-batch records; `tests/fixtures/wal-format-2`, made by
/// that build's `FilePersistence`): every record is read back as its
/// one-batch equivalent, and new records go to a new segment.
#[test]
fn a_format_2_log_from_the_previous_build_is_read_without_loss() {
    use rabia_core::protocol::{Bit, Message, VoteValue};
    use rabia_core::{Batch, BatchId, BatchList, NodeId, Operation, Phase, ValueId};
    use std::sync::Arc;

    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal-format-2");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
    std::fs::copy(fixture.join("incarnation"), dir.path().join("incarnation")).unwrap();
    let segment = "wal/00000000000000000000.wal";
    std::fs::copy(fixture.join(segment), dir.path().join(segment)).unwrap();

    let batch = |seq: u64, text: &str| {
        Arc::new(Batch {
            id: BatchId {
                origin: NodeId::from_u64(2),
                incarnation: 1,
                seq,
            },
            timestamp: 1000 + seq,
            operations: vec![Operation::new(text.as_bytes().to_vec())],
        })
    };
    let candidate = Some(ValueId::single(batch(1, "").id));
    let expected = vec![
        PersistRecord::Learner {
            participate_from: Some(Slot(0)),
        },
        PersistRecord::Sent {
            slot: Slot(0),
            message: Message::Proposal {
                slot: Slot(0),
                value: BatchList::single(batch(1, "set a 1")),
            },
        },
        PersistRecord::Sent {
            slot: Slot(0),
            message: Message::State {
                slot: Slot(0),
                phase: Phase(1),
                bit: Bit::One,
                candidate: candidate.clone(),
            },
        },
        PersistRecord::Sent {
            slot: Slot(0),
            message: Message::Vote {
                slot: Slot(0),
                phase: Phase(1),
                vote: VoteValue::Bit(Bit::One),
                candidate,
            },
        },
        PersistRecord::Decided {
            slot: Slot(0),
            value: SlotValue::Batches(BatchList::single(batch(1, "set a 1"))),
        },
        record(1),
        PersistRecord::Sent {
            slot: Slot(2),
            message: Message::Proposal {
                slot: Slot(2),
                value: BatchList::single(batch(2, "set b 2")),
            },
        },
    ];
    block_on(async {
        let mut store = open(dir.path());
        let recovered = store.recover().await.unwrap();
        assert_eq!(recovered.records, expected);
        assert_eq!(store.torn_bytes(), 0);
        store.append(&[record(3)]).await.unwrap();
    });
    assert_eq!(segments(dir.path()).len(), 2, "a new segment for writing");
    let mut after = expected;
    after.push(record(3));
    assert_eq!(recover(dir.path()).unwrap(), after);
}

/// On a multi-threaded runtime the sync runs in `block_in_place` (the
/// worker hands its other tasks over first): every record is still there,
/// in order, across segment rotations, which happen in that sync.
#[test]
fn records_synced_on_a_multi_thread_runtime_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions {
        segment_bytes_max: 4096,
        ..FileOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut store = FilePersistence::open(dir.path(), options.clone()).unwrap();
        store.recover().await.unwrap();
        for slot in 0..300 {
            store.append(&[record(slot)]).await.unwrap();
        }
    });
    drop(runtime);
    assert!(segments(dir.path()).len() > 2, "segments rotated");
    let slots: Vec<u64> = recover(dir.path())
        .unwrap()
        .iter()
        .map(|r| r.slot().0)
        .collect();
    assert_eq!(slots, (0..300).collect::<Vec<_>>());
}

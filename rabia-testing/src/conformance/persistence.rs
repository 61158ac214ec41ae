//! The `Persistence` contract (see `rabia_persistence::Persistence`), as
//! tests. Each check panics with a description when the backend breaks the
//! contract.
//!
//! `open` is called repeatedly and must return a handle to the same storage
//! each time — a restart of the node. Every check starts from an empty store
//! it gets from `open`, so run the suite against a fresh location.

// A test suite: breaking the contract (or failing to run) panics with a
// description, like any failed assertion.
#![allow(clippy::expect_used)]

use rabia_core::protocol::{DecidedFilter, Message, PersistRecord};
use rabia_core::smr::SessionTable;
use rabia_core::{Epoch, Phase, Slot, SlotValue};
use rabia_persistence::{Persistence, Snapshot};

fn decided(slot: u64) -> PersistRecord {
    PersistRecord::Decided {
        slot: Slot(slot),
        value: SlotValue::Null,
    }
}

fn sent_state(slot: u64, phase: u32) -> PersistRecord {
    PersistRecord::Sent {
        slot: Slot(slot),
        message: Message::State {
            slot: Slot(slot),
            phase: Phase(phase),
            bit: rabia_core::protocol::Bit::One,
            candidate: None,
        },
    }
}

fn snapshot(base: u64) -> Snapshot {
    Snapshot {
        base_slot: Slot(base),
        epoch: Epoch(0),
        state: format!("state at {base}").into_bytes(),
        sessions: SessionTable::default(),
        filter: DecidedFilter::default(),
    }
}

/// Runs every check in order against one storage location.
pub async fn run_all<P: Persistence>(mut open: impl FnMut() -> P) {
    empty_store_starts_at_incarnation_zero(&mut open).await;
    records_come_back_in_order_across_restarts(&mut open).await;
    incarnations_strictly_increase(&mut open).await;
    snapshots_cover_the_records_behind_them(&mut open).await;
    an_older_snapshot_never_replaces_a_newer_one(&mut open).await;
    truncation_never_passes_the_snapshot(&mut open).await;
}

/// A new store has nothing and starts at incarnation 0.
pub async fn empty_store_starts_at_incarnation_zero<P: Persistence>(open: &mut impl FnMut() -> P) {
    let mut store = open();
    let recovered = store.recover().await.expect("recover on an empty store");
    assert_eq!(recovered.incarnation, 0, "first incarnation must be 0");
    assert!(
        recovered.snapshot.is_none(),
        "an empty store has no snapshot"
    );
    assert!(
        recovered.records.is_empty(),
        "an empty store has no records"
    );
}

/// Appended records survive a restart, in append order, without holes.
pub async fn records_come_back_in_order_across_restarts<P: Persistence>(
    open: &mut impl FnMut() -> P,
) {
    let expected: Vec<PersistRecord> = {
        let mut store = open();
        let before = store.recover().await.expect("recover").records;
        let mut group = vec![sent_state(100, 1), sent_state(100, 2)];
        store.append(&group).await.expect("append a group");
        let single = vec![decided(100)];
        store.append(&single).await.expect("append one record");
        let mut all = before;
        all.append(&mut group);
        all.extend(single);
        all
    };
    let mut store = open();
    let recovered = store.recover().await.expect("recover after restart");
    assert_eq!(
        recovered.records, expected,
        "records must come back in append order"
    );
}

/// Every start gets a strictly larger incarnation.
pub async fn incarnations_strictly_increase<P: Persistence>(open: &mut impl FnMut() -> P) {
    let a = open().recover().await.expect("recover").incarnation;
    let b = open().recover().await.expect("recover").incarnation;
    let c = open().recover().await.expect("recover").incarnation;
    assert!(
        a < b && b < c,
        "incarnations {a}, {b}, {c} must strictly increase"
    );
}

/// After a snapshot at slot k, recovery returns it and only records of
/// slots ≥ k.
pub async fn snapshots_cover_the_records_behind_them<P: Persistence>(open: &mut impl FnMut() -> P) {
    {
        let mut store = open();
        store.recover().await.expect("recover");
        let records: Vec<PersistRecord> = (200..210).map(decided).collect();
        store.append(&records).await.expect("append");
        store
            .save_snapshot(&snapshot(205))
            .await
            .expect("save snapshot");
    }
    let mut store = open();
    let recovered = store.recover().await.expect("recover");
    let snap = recovered
        .snapshot
        .expect("the snapshot must survive a restart");
    assert_eq!(snap, snapshot(205), "snapshot contents must round-trip");
    assert!(
        recovered.records.iter().all(|r| r.slot() >= Slot(205)),
        "records behind the snapshot must not be returned"
    );
    for slot in 205..210 {
        assert!(
            recovered.records.contains(&decided(slot)),
            "record of slot {slot} (after the snapshot) was lost"
        );
    }
}

/// Saving an older snapshot after a newer one keeps the newer.
pub async fn an_older_snapshot_never_replaces_a_newer_one<P: Persistence>(
    open: &mut impl FnMut() -> P,
) {
    {
        let mut store = open();
        store.recover().await.expect("recover");
        store.save_snapshot(&snapshot(300)).await.expect("save");
        store
            .save_snapshot(&snapshot(250))
            .await
            .expect("save older");
    }
    let recovered = open().recover().await.expect("recover");
    assert_eq!(
        recovered.snapshot.map(|s| s.base_slot),
        Some(Slot(300)),
        "the newest snapshot must win"
    );
}

/// `truncate_before` beyond the snapshot must not drop records the snapshot
/// does not cover.
pub async fn truncation_never_passes_the_snapshot<P: Persistence>(open: &mut impl FnMut() -> P) {
    {
        let mut store = open();
        store.recover().await.expect("recover");
        let records: Vec<PersistRecord> = (300..320).map(decided).collect();
        store.append(&records).await.expect("append");
        store.truncate_before(Slot(1_000)).await.expect("truncate");
    }
    let recovered = open().recover().await.expect("recover");
    for slot in 300..320 {
        assert!(
            recovered.records.contains(&decided(slot)),
            "truncate_before dropped slot {slot}, which no snapshot covers"
        );
    }
}

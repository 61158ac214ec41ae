//! In-memory storage: the contract without the disk.

use crate::error::PersistenceError;
use crate::persistence::{Persistence, Recovered};
use crate::snapshot::Snapshot;
use async_trait::async_trait;
use rabia_core::protocol::PersistRecord;
use rabia_core::Slot;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Store {
    next_incarnation: u64,
    snapshot: Option<Snapshot>,
    records: Vec<PersistRecord>,
    /// When set, every call fails (fault injection for tests).
    failing: Option<String>,
}

/// Storage in memory. Clones share the same store, so a test can stop an
/// engine and start another on the same "disk". Nothing survives the process.
#[derive(Clone, Debug, Default)]
pub struct InMemoryPersistence {
    store: Arc<Mutex<Store>>,
}

impl InMemoryPersistence {
    /// An empty store.
    pub fn new() -> Self {
        InMemoryPersistence::default()
    }

    /// Makes every later call fail with `reason` (a simulated disk failure).
    pub fn fail_with(&self, reason: impl Into<String>) {
        if let Ok(mut store) = self.store.lock() {
            store.failing = Some(reason.into());
        }
    }

    /// Number of records held (for tests and metrics).
    pub fn record_count(&self) -> usize {
        self.store.lock().map(|s| s.records.len()).unwrap_or(0)
    }

    /// The base slot of the stored snapshot, if any.
    pub fn snapshot_slot(&self) -> Option<Slot> {
        self.store
            .lock()
            .ok()
            .and_then(|s| s.snapshot.as_ref().map(|snap| snap.base_slot))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> Result<R, PersistenceError> {
        let mut store = self
            .store
            .lock()
            .map_err(|_| PersistenceError::Unavailable {
                reason: "in-memory store poisoned by a panic".into(),
            })?;
        if let Some(reason) = &store.failing {
            return Err(PersistenceError::Unavailable {
                reason: reason.clone(),
            });
        }
        Ok(f(&mut store))
    }
}

#[async_trait]
impl Persistence for InMemoryPersistence {
    async fn recover(&mut self) -> Result<Recovered, PersistenceError> {
        self.with(|store| {
            let incarnation = store.next_incarnation;
            store.next_incarnation += 1;
            let base = store.snapshot.as_ref().map_or(Slot::ZERO, |s| s.base_slot);
            Recovered {
                incarnation,
                snapshot: store.snapshot.clone(),
                records: store
                    .records
                    .iter()
                    .filter(|r| r.slot() >= base)
                    .cloned()
                    .collect(),
            }
        })
    }

    async fn append(&mut self, records: &[PersistRecord]) -> Result<(), PersistenceError> {
        self.with(|store| store.records.extend_from_slice(records))
    }

    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), PersistenceError> {
        self.with(|store| {
            let newer = store
                .snapshot
                .as_ref()
                .map(|old| old.base_slot < snapshot.base_slot)
                .unwrap_or(true);
            if newer {
                store.snapshot = Some(snapshot.clone());
            }
        })
    }

    fn is_volatile(&self) -> bool {
        true
    }

    async fn truncate_before(&mut self, slot: Slot) -> Result<(), PersistenceError> {
        self.with(|store| {
            let covered = store
                .snapshot
                .as_ref()
                .map(|s| s.base_slot)
                .unwrap_or(Slot::ZERO);
            let limit = slot.min(covered);
            store.records.retain(|r| r.slot() >= limit);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rabia_core::protocol::DecidedFilter;
    use rabia_core::smr::SessionTable;
    use rabia_core::{Epoch, SlotValue};

    fn decided(slot: u64) -> PersistRecord {
        PersistRecord::Decided {
            slot: Slot(slot),
            value: SlotValue::Null,
        }
    }

    #[tokio::test]
    async fn truncation_never_passes_the_snapshot() {
        let mut store = InMemoryPersistence::new();
        store.recover().await.unwrap();
        store
            .append(&[decided(0), decided(1), decided(2)])
            .await
            .unwrap();
        store.truncate_before(Slot(2)).await.unwrap();
        assert_eq!(store.record_count(), 3, "no snapshot yet: nothing may go");
        let snapshot = Snapshot {
            base_slot: Slot(2),
            epoch: Epoch(0),
            state: vec![1],
            sessions: SessionTable::default(),
            filter: DecidedFilter::default(),
        };
        store.save_snapshot(&snapshot).await.unwrap();
        store.truncate_before(Slot(5)).await.unwrap();
        let recovered = store.recover().await.unwrap();
        assert_eq!(recovered.records, vec![decided(2)]);
        assert_eq!(recovered.snapshot, Some(snapshot));
        assert_eq!(recovered.incarnation, 1);
    }

    #[tokio::test]
    async fn injected_failure_is_an_error() {
        let mut store = InMemoryPersistence::new();
        store.fail_with("disk on fire");
        assert!(matches!(
            store.append(&[decided(0)]).await,
            Err(PersistenceError::Unavailable { .. })
        ));
    }
}

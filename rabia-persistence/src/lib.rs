//! # rabia-persistence
//!
//! Durable storage for Rabia replicas, behind the [`Persistence`] trait the
//! engine drives from its own task.
//!
//! * [`InMemoryPersistence`]: everything in memory. Survives an engine
//!   restart inside one process (clones share storage), not a process crash:
//!   for tests, examples and benchmarks.
//! * [`FilePersistence`]: a locked data directory with a segmented,
//!   checksummed write-ahead log (group commit: one `fdatasync` per batch of
//!   records), snapshots written atomically, and crash recovery that cuts a
//!   torn tail and refuses corruption anywhere else.
//!
//! A data directory survives the process; a second process cannot open it
//! while the first holds it:
//!
//! ```
//! use rabia_persistence::{FileOptions, FilePersistence, Persistence, PersistenceError};
//! use rabia_core::protocol::PersistRecord;
//! use rabia_core::{Slot, SlotValue};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let mut store = FilePersistence::open(dir.path(), FileOptions::default()).unwrap();
//! store.recover().await.unwrap();
//! store.append(&[PersistRecord::Decided { slot: Slot(0), value: SlotValue::Null }]).await.unwrap();
//! assert!(matches!(
//!     FilePersistence::open(dir.path(), FileOptions::default()),
//!     Err(PersistenceError::Locked { .. })
//! ));
//! drop(store);
//! let mut again = FilePersistence::open(dir.path(), FileOptions::default()).unwrap();
//! assert_eq!(again.recover().await.unwrap().records.len(), 1);
//! # });
//! ```
//!
//! ```
//! use rabia_persistence::{InMemoryPersistence, Persistence};
//! use rabia_core::protocol::PersistRecord;
//! use rabia_core::{Slot, SlotValue};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut storage = InMemoryPersistence::new();
//! let recovered = storage.recover().await.unwrap();
//! assert_eq!(recovered.incarnation, 0);
//! storage.append(&[PersistRecord::Decided { slot: Slot(0), value: SlotValue::Null }]).await.unwrap();
//! // A second start of the same node sees the record and a new incarnation.
//! let again = storage.clone().recover().await.unwrap();
//! assert_eq!((again.incarnation, again.records.len()), (1, 1));
//! # });
//! ```

mod error;
mod file;
mod memory;
mod persistence;
mod snapshot;

pub use error::PersistenceError;
pub use file::{FileOptions, FilePersistence, SyncPolicy};
pub use memory::InMemoryPersistence;
pub use persistence::{Persistence, Recovered};
pub use snapshot::Snapshot;

//! # rabia-persistence
//!
//! Durable storage for Rabia replicas, behind the [`Persistence`] trait the
//! engine drives from its own task.
//!
//! * [`InMemoryPersistence`]: everything in memory. Survives an engine
//!   restart inside one process (clones share storage), not a process crash:
//!   for tests, examples and benchmarks.
//! * File-backed persistence (write-ahead log, snapshots, crash recovery)
//!   implements the same trait (the durability issue).
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
mod memory;
mod persistence;
mod snapshot;

pub use error::PersistenceError;
pub use memory::InMemoryPersistence;
pub use persistence::{Persistence, Recovered};
pub use snapshot::Snapshot;

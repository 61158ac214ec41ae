//! The storage contract between a replica and its disk.

use crate::error::PersistenceError;
use crate::snapshot::Snapshot;
use async_trait::async_trait;
use rabia_core::protocol::PersistRecord;
use rabia_core::Slot;

/// What a replica finds in its storage when it starts.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// This start's incarnation: one more than the previous start's, durably
    /// recorded before `recover` returns (0 for a brand-new store).
    pub incarnation: u64,
    /// The latest durable snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Every durable record not covered by the snapshot, in append order.
    pub records: Vec<PersistRecord>,
}

/// Durable storage for one replica.
///
/// # Correctness contract
///
/// * **Durability before return.** When `append` returns `Ok`, every record
///   passed to it (and to every earlier call) survives a crash of the process
///   and of the machine. The engine reports records durable to the protocol
///   only then, and the protocol holds back every message that depends on
///   them: returning early can make a restarted replica equivocate.
/// * **Order, no holes.** Records are recovered in append order; a crash may
///   lose a suffix of records whose `append` had not returned, never a record
///   in the middle.
/// * **Snapshots.** `save_snapshot` is durable when it returns and replaces
///   the previous snapshot only then. Records of slots below the snapshot's
///   `base_slot` may be discarded afterwards (`truncate_before`), never before.
/// * **Incarnations.** Every `recover` returns a strictly larger incarnation
///   than the previous one for the same store, durably.
/// * **Errors are fatal.** After any error the engine stops; the store need
///   not be usable again without a restart.
#[async_trait]
pub trait Persistence: Send + 'static {
    /// Loads the durable state and starts a new incarnation.
    async fn recover(&mut self) -> Result<Recovered, PersistenceError>;

    /// Appends records durably (one group commit for the whole slice).
    async fn append(&mut self, records: &[PersistRecord]) -> Result<(), PersistenceError>;

    /// Stores a snapshot durably.
    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), PersistenceError>;

    /// Discards records of slots below `slot` (only behind a durable snapshot).
    async fn truncate_before(&mut self, slot: Slot) -> Result<(), PersistenceError>;

    /// True for storage whose calls complete without I/O (memory): the
    /// engine then calls it inline on its own task instead of through the
    /// group-commit task. Such storage does not survive a process crash.
    fn is_volatile(&self) -> bool {
        false
    }
}

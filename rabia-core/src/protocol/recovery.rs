//! What a replica starts from: nothing (a fresh node), or what survived a
//! crash (a snapshot point plus the durable records written after it).

use crate::ids::Slot;
use crate::protocol::action::PersistRecord;
use crate::protocol::filter::DecidedFilter;

/// The durable state a replica starts from.
#[derive(Clone, Debug, Default)]
pub struct RecoveredState {
    /// This start's incarnation. Must differ from every earlier start of the
    /// same node (the persistence layer bumps a durable counter), so that
    /// batch identities are never reused.
    pub incarnation: u64,
    /// The first slot not covered by the state machine's snapshot (0 for a
    /// fresh node). Deliveries resume here.
    pub base_slot: Slot,
    /// The decided-batch filter as of `base_slot` (from the snapshot).
    pub filter: Option<DecidedFilter>,
    /// Every durable record, in the order written. Records below
    /// `base_slot` are ignored.
    pub records: Vec<PersistRecord>,
}

impl RecoveredState {
    /// A brand-new node with an empty log.
    pub fn fresh(incarnation: u64) -> Self {
        RecoveredState {
            incarnation,
            ..RecoveredState::default()
        }
    }
}

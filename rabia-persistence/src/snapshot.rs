//! A snapshot: everything needed to resume applying at `base_slot`.

use rabia_core::protocol::DecidedFilter;
use rabia_core::smr::SessionTable;
use rabia_core::{Epoch, Slot};
use serde::{Deserialize, Serialize};

/// The replicated state as of the start of `base_slot`: the user's state
/// machine snapshot plus the replicated bookkeeping that must travel with it
/// (the exactly-once session table and the decided-batch filter), so a
/// restored replica de-duplicates exactly as the others do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The first slot *not* covered: applying resumes here.
    pub base_slot: Slot,
    /// The configuration epoch at `base_slot`.
    pub epoch: Epoch,
    /// The bytes `StateMachine::snapshot` produced.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
    /// Client sessions with cached replies.
    pub sessions: SessionTable,
    /// Batches already in the log.
    pub filter: DecidedFilter,
}

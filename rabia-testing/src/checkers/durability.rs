//! Durability: every operation acknowledged to a client is in the final
//! state of every live replica, whatever crashed in between.

use rabia_core::{NodeId, SessionTag};
use std::collections::BTreeSet;

/// The acknowledged operations.
#[derive(Debug, Default)]
pub struct DurabilityChecker {
    acknowledged: BTreeSet<SessionTag>,
}

impl DurabilityChecker {
    /// A client received a successful reply for `tag`.
    pub fn acknowledged(&mut self, tag: SessionTag) {
        self.acknowledged.insert(tag);
    }

    /// Number of acknowledged operations.
    pub fn len(&self) -> usize {
        self.acknowledged.len()
    }

    /// Whether nothing was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.acknowledged.is_empty()
    }

    /// Checks a live replica's applied operations at the end of a run.
    pub fn check(&self, node: NodeId, applied: &BTreeSet<SessionTag>) -> Result<(), String> {
        match self.acknowledged.iter().find(|tag| !applied.contains(tag)) {
            None => Ok(()),
            Some(tag) => Err(format!(
                "operation {}#{} was acknowledged but {node:?} never applied it",
                tag.client, tag.seq
            )),
        }
    }
}

//! Convergence: replicas that applied the same slots hold the same state.

use rabia_core::{NodeId, Slot};
use std::collections::BTreeMap;

/// The state digest after each applied slot, as first reported.
#[derive(Debug, Default)]
pub struct ConvergenceChecker {
    digest_after: BTreeMap<Slot, (u64, NodeId)>,
}

impl ConvergenceChecker {
    /// Records `node`'s state digest after applying `slot`.
    pub fn observe(&mut self, node: NodeId, slot: Slot, digest: u64) -> Result<(), String> {
        match self.digest_after.get(&slot) {
            None => {
                self.digest_after.insert(slot, (digest, node));
                Ok(())
            }
            Some((d, _)) if *d == digest => Ok(()),
            Some((d, first)) => Err(format!(
                "after {slot}: {first:?} has digest {d:016x} but {node:?} has {digest:016x}"
            )),
        }
    }
}

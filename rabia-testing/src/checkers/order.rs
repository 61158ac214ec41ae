//! Apply order: each replica applies slots strictly in order, without gaps.

use rabia_core::{NodeId, Slot};
use std::collections::BTreeMap;

/// The next slot each replica must deliver.
#[derive(Debug, Default)]
pub struct ApplyOrderChecker {
    next: BTreeMap<NodeId, Slot>,
}

impl ApplyOrderChecker {
    /// A replica (re)started with its state machine at `base`.
    pub fn reset(&mut self, node: NodeId, base: Slot) {
        self.next.insert(node, base);
    }

    /// Records a delivery.
    pub fn delivered(&mut self, node: NodeId, slot: Slot) -> Result<(), String> {
        let expected = self.next.entry(node).or_insert(Slot::ZERO);
        if slot != *expected {
            return Err(format!("{node:?} delivered {slot} but {expected} was next"));
        }
        *expected = slot.next();
        Ok(())
    }

    /// The next slot `node` will deliver.
    pub fn next(&self, node: NodeId) -> Slot {
        self.next.get(&node).copied().unwrap_or(Slot::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_gaps_and_reorders() {
        let mut c = ApplyOrderChecker::default();
        let n = NodeId::from_u64(1);
        c.delivered(n, Slot(0)).unwrap();
        assert!(c.delivered(n, Slot(2)).is_err());
        c.reset(n, Slot(0));
        c.delivered(n, Slot(0)).unwrap();
        assert!(c.delivered(n, Slot(0)).is_err());
    }
}

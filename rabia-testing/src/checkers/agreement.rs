//! Agreement: no slot is decided two ways, by any replica, ever.

use rabia_core::{NodeId, Slot, SlotValue, ValueId};
use std::collections::BTreeMap;

/// Remembers the first decision seen for every slot.
#[derive(Debug, Default)]
pub struct AgreementChecker {
    decided: BTreeMap<Slot, (Option<ValueId>, NodeId)>,
}

impl AgreementChecker {
    /// Records that `node` decided (or announced) `value` for `slot`.
    pub fn observe(&mut self, node: NodeId, slot: Slot, value: &SlotValue) -> Result<(), String> {
        self.observe_id(node, slot, value.value_id().cloned())
    }

    /// Records that `node` decided the value `id` (`None`: ⊥) for `slot`.
    pub fn observe_id(
        &mut self,
        node: NodeId,
        slot: Slot,
        id: Option<ValueId>,
    ) -> Result<(), String> {
        match self.decided.get(&slot) {
            None => {
                self.decided.insert(slot, (id, node));
                Ok(())
            }
            Some((first, _)) if *first == id => Ok(()),
            Some((first, first_node)) => Err(format!(
                "{slot}: {first_node:?} decided {first:?} but {node:?} decided {id:?}"
            )),
        }
    }

    /// The highest decided slot seen.
    pub fn highest(&self) -> Option<Slot> {
        self.decided.keys().next_back().copied()
    }

    /// The decision of `slot`, if seen.
    pub fn get(&self, slot: Slot) -> Option<Option<ValueId>> {
        self.decided.get(&slot).map(|(id, _)| id.clone())
    }

    /// Number of decided slots seen, and how many of them were ⊥.
    pub fn counts(&self) -> (usize, usize) {
        let nulls = self.decided.values().filter(|(id, _)| id.is_none()).count();
        (self.decided.len(), nulls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_two_values() {
        let mut c = AgreementChecker::default();
        c.observe(NodeId::from_u64(1), Slot(0), &SlotValue::Null)
            .unwrap();
        c.observe(NodeId::from_u64(2), Slot(0), &SlotValue::Null)
            .unwrap();
        let batch = std::sync::Arc::new(rabia_core::Batch {
            id: rabia_core::BatchId {
                origin: NodeId::from_u64(1),
                incarnation: 0,
                seq: 0,
            },
            timestamp: 0,
            operations: vec![],
        });
        assert!(c
            .observe(
                NodeId::from_u64(3),
                Slot(0),
                &SlotValue::Batches(rabia_core::BatchList::single(batch))
            )
            .is_err());
    }
}

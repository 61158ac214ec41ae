//! Validity: a decided batch is one some replica created from client
//! operations, with exactly the contents it was created with.

use super::hash_batch;
use rabia_core::{Batch, BatchId, SlotValue};
use std::collections::BTreeMap;

/// Knows every batch created by a submission.
#[derive(Debug, Default)]
pub struct ValidityChecker {
    created: BTreeMap<BatchId, u64>,
}

impl ValidityChecker {
    /// Records a batch as created (at its origin's `submit`).
    pub fn created(&mut self, batch: &Batch) {
        self.created.insert(batch.id, hash_batch(batch));
    }

    /// Records a created batch by identity and content hash.
    pub fn created_hash(&mut self, id: BatchId, hash: u64) {
        self.created.insert(id, hash);
    }

    /// Checks a decided value: each of its batches.
    pub fn check(&self, value: &SlotValue) -> Result<(), String> {
        value
            .batches()
            .iter()
            .try_for_each(|batch| self.check_batch(batch))
    }

    /// Checks one decided batch.
    pub fn check_batch(&self, batch: &Batch) -> Result<(), String> {
        match self.created.get(&batch.id) {
            None => Err(format!("decided batch {:?} was never submitted", batch.id)),
            Some(hash) if *hash != hash_batch(batch) => Err(format!(
                "decided batch {:?} differs from what was submitted",
                batch.id
            )),
            Some(_) => Ok(()),
        }
    }
}

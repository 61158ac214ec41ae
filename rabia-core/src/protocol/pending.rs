//! The pending queue (the paper's PQ): batches not yet in the log, ordered by
//! the key their origin assigned.
//!
//! A batch stays in the queue until a slot decides it; this replica's
//! proposal is the head, not a popped element, so a ⊥ slot or a slot decided
//! for another batch leaves it in place for the next slot (the paper's
//! "re-queue", §6).

use crate::ids::{BatchId, NodeId};
use crate::operation::{Batch, OrderingKey};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Outcome of inserting into the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The batch is now pending.
    Added,
    /// The batch was already pending.
    AlreadyPending,
    /// The queue is at capacity; the batch was not added.
    Full,
}

/// A bounded priority queue of pending batches, oldest key first.
#[derive(Debug, Clone)]
pub struct PendingQueue {
    by_key: BTreeMap<OrderingKey, Arc<Batch>>,
    /// How many pending batches each origin has.
    per_origin: BTreeMap<NodeId, usize>,
    capacity: usize,
}

impl PendingQueue {
    /// An empty queue holding at most `capacity` batches.
    pub fn new(capacity: usize) -> Self {
        PendingQueue {
            by_key: BTreeMap::new(),
            per_origin: BTreeMap::new(),
            capacity,
        }
    }

    /// Adds a batch unless it is already present or the queue is full.
    pub fn insert(&mut self, batch: Arc<Batch>) -> Inserted {
        let key = batch.ordering_key();
        if self.by_key.contains_key(&key) {
            return Inserted::AlreadyPending;
        }
        if self.by_key.len() >= self.capacity {
            return Inserted::Full;
        }
        self.add(key, batch);
        Inserted::Added
    }

    fn add(&mut self, key: OrderingKey, batch: Arc<Batch>) {
        *self.per_origin.entry(batch.id.origin).or_default() += 1;
        self.by_key.insert(key, batch);
    }

    /// How many pending batches `origin` created.
    pub fn count_of(&self, origin: NodeId) -> usize {
        self.per_origin.get(&origin).copied().unwrap_or(0)
    }

    /// Like [`insert`](Self::insert), but when the queue is full makes room by
    /// evicting the youngest batch that `protected` does not cover, provided
    /// it is younger than `batch`. Keeping the oldest batches is what lets
    /// every replica converge on the same head. Returns the outcome and the
    /// evicted batch, if any.
    pub fn insert_evicting(
        &mut self,
        batch: Arc<Batch>,
        protected: impl Fn(&Batch) -> bool,
    ) -> (Inserted, Option<Arc<Batch>>) {
        match self.insert(batch.clone()) {
            Inserted::Full => {}
            other => return (other, None),
        }
        let key = batch.ordering_key();
        let victim = self
            .by_key
            .iter()
            .rev()
            .find(|(_, b)| !protected(b))
            .map(|(k, _)| *k)
            .filter(|victim| *victim > key);
        match victim {
            Some(victim) => {
                let evicted = self.remove(&victim);
                self.add(key, batch);
                (Inserted::Added, evicted)
            }
            None => (Inserted::Full, None),
        }
    }

    /// Removes the batch with this key, returning it.
    pub fn remove(&mut self, key: &OrderingKey) -> Option<Arc<Batch>> {
        let batch = self.by_key.remove(key)?;
        if let Some(count) = self.per_origin.get_mut(&batch.id.origin) {
            *count -= 1;
            if *count == 0 {
                self.per_origin.remove(&batch.id.origin);
            }
        }
        Some(batch)
    }

    /// The oldest batch.
    pub fn head(&self) -> Option<&Arc<Batch>> {
        self.by_key.values().next()
    }

    /// Removes heads for which `stale` is true, then returns the new head.
    pub fn head_skipping(&mut self, stale: impl Fn(&BatchId) -> bool) -> Option<Arc<Batch>> {
        while let Some((key, batch)) = self.by_key.iter().next() {
            if stale(&batch.id) {
                let key = *key;
                self.remove(&key);
            } else {
                return Some(batch.clone());
            }
        }
        None
    }

    /// The pending batch with this key.
    pub fn get(&self, key: &OrderingKey) -> Option<&Arc<Batch>> {
        self.by_key.get(key)
    }

    /// Finds a pending batch by identity (linear; used only on the rare
    /// value-fetch path).
    pub fn find(&self, id: BatchId) -> Option<&Arc<Batch>> {
        self.by_key.values().find(|b| b.id == id)
    }

    /// Number of pending batches.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Whether no more batches fit.
    pub fn is_full(&self) -> bool {
        self.by_key.len() >= self.capacity
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// All pending batches, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Batch>> {
        self.by_key.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use proptest::prelude::*;

    fn batch(ts: u64, origin: u64, seq: u64) -> Arc<Batch> {
        Arc::new(Batch {
            id: BatchId {
                origin: NodeId::from_u64(origin),
                incarnation: 0,
                seq,
            },
            timestamp: ts,
            operations: vec![],
        })
    }

    proptest! {
        /// The queue behaves like a sorted, de-duplicated, bounded Vec.
        #[test]
        fn queue_matches_sorted_vec(
            ops in proptest::collection::vec((any::<bool>(), 0u64..20, 0u64..3, 0u64..5), 0..100),
            capacity in 1usize..12,
        ) {
            let mut queue = PendingQueue::new(capacity);
            let mut model: Vec<OrderingKey> = Vec::new();
            for (insert, ts, origin, seq) in ops {
                let b = batch(ts, origin, seq);
                let key = b.ordering_key();
                if insert {
                    let outcome = queue.insert(b);
                    if model.contains(&key) {
                        prop_assert_eq!(outcome, Inserted::AlreadyPending);
                    } else if model.len() >= capacity {
                        prop_assert_eq!(outcome, Inserted::Full);
                    } else {
                        prop_assert_eq!(outcome, Inserted::Added);
                        model.push(key);
                        model.sort();
                    }
                } else {
                    let removed = queue.remove(&key).is_some();
                    let present = model.contains(&key);
                    prop_assert_eq!(removed, present);
                    model.retain(|k| *k != key);
                }
                prop_assert_eq!(queue.len(), model.len());
                prop_assert_eq!(queue.head().map(|b| b.ordering_key()), model.first().copied());
                for o in 0u64..3 {
                    let expected = model.iter().filter(|k| k.id.origin == NodeId::from_u64(o)).count();
                    prop_assert_eq!(queue.count_of(NodeId::from_u64(o)), expected);
                }
            }
        }
    }

    #[test]
    fn full_queue_evicts_the_youngest_unprotected_batch_for_an_older_one() {
        let mut queue = PendingQueue::new(3);
        queue.insert(batch(10, 1, 0)); // protected (local)
        queue.insert(batch(20, 2, 0));
        queue.insert(batch(30, 2, 1));
        let local = |b: &Batch| b.id.origin == NodeId::from_u64(1);
        // Younger than everything evictable: refused.
        let (outcome, evicted) = queue.insert_evicting(batch(40, 3, 0), local);
        assert_eq!((outcome, evicted.is_none()), (Inserted::Full, true));
        // Older: the youngest unprotected batch (ts 30) makes room.
        let (outcome, evicted) = queue.insert_evicting(batch(5, 3, 1), local);
        assert_eq!(outcome, Inserted::Added);
        assert_eq!(evicted.map(|b| b.timestamp), Some(30));
        let order: Vec<u64> = queue.iter().map(|b| b.timestamp).collect();
        assert_eq!(order, vec![5, 10, 20]);
    }

    #[test]
    fn head_skipping_drops_stale_heads() {
        let mut queue = PendingQueue::new(10);
        queue.insert(batch(1, 1, 0));
        queue.insert(batch(2, 1, 1));
        queue.insert(batch(3, 2, 0));
        let head = queue.head_skipping(|id| id.origin == NodeId::from_u64(1));
        assert_eq!(head.map(|b| b.timestamp), Some(3));
        assert_eq!(queue.len(), 1);
    }
}

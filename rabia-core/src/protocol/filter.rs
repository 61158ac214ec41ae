//! The decided-batch filter (the paper's `in_log` dictionary, §4, §6).
//!
//! Remembers which batches the log already holds so that a late copy (a
//! delayed `Forward`, a late `Proposal`, a client retry) is neither queued
//! again nor applied twice. It is a function of the decided log prefix, so
//! every replica holds the same filter at the same slot; it travels inside
//! snapshots.
//!
//! Memory is bounded. Batch sequence numbers of one origin incarnation are
//! dense, so each stream is a watermark (every seq below it is decided) plus a
//! bounded set of decided seqs above it. A stream whose set overflows moves
//! its watermark up (the holes are batches that were lost with a crashed
//! origin), and an origin keeps at most a bounded number of incarnations:
//! older incarnations count as fully decided. Both rules are deterministic.

use crate::ids::{BatchId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stream {
    /// Every seq below this is decided.
    watermark: u64,
    /// Decided seqs at or above the watermark.
    above: BTreeSet<u64>,
}

/// The set of batch identities already decided, with bounded memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedFilter {
    streams: BTreeMap<(NodeId, u64), Stream>,
    /// Per origin: incarnations below this count as fully decided.
    retired_below: BTreeMap<NodeId, u64>,
    max_sparse: usize,
    max_incarnations: usize,
}

impl Default for DecidedFilter {
    fn default() -> Self {
        DecidedFilter::new(4096, 8)
    }
}

impl DecidedFilter {
    /// A filter keeping at most `max_sparse` out-of-order seqs per stream and
    /// `max_incarnations` incarnations per origin.
    pub fn new(max_sparse: usize, max_incarnations: usize) -> Self {
        DecidedFilter {
            streams: BTreeMap::new(),
            retired_below: BTreeMap::new(),
            max_sparse: max_sparse.max(1),
            max_incarnations: max_incarnations.max(1),
        }
    }

    /// Whether the log already holds this batch.
    pub fn contains(&self, id: &BatchId) -> bool {
        if id.incarnation < self.retired_below.get(&id.origin).copied().unwrap_or(0) {
            return true;
        }
        match self.streams.get(&(id.origin, id.incarnation)) {
            None => false,
            Some(stream) => id.seq < stream.watermark || stream.above.contains(&id.seq),
        }
    }

    /// Records a decided batch; returns false if it was already recorded.
    pub fn insert(&mut self, id: BatchId) -> bool {
        if self.contains(&id) {
            return false;
        }
        let stream = self.streams.entry((id.origin, id.incarnation)).or_default();
        stream.above.insert(id.seq);
        while stream.above.remove(&stream.watermark) {
            stream.watermark += 1;
        }
        if stream.above.len() > self.max_sparse {
            if let Some(&lowest) = stream.above.iter().next() {
                // Give up on the holes below `lowest`: they were lost.
                stream.watermark = lowest;
                while stream.above.remove(&stream.watermark) {
                    stream.watermark += 1;
                }
            }
        }
        self.retire_old_incarnations(id.origin);
        true
    }

    fn retire_old_incarnations(&mut self, origin: NodeId) {
        let incarnations: Vec<u64> = self
            .streams
            .range((origin, 0)..=(origin, u64::MAX))
            .map(|((_, inc), _)| *inc)
            .collect();
        if incarnations.len() > self.max_incarnations {
            let keep_from = incarnations[incarnations.len() - self.max_incarnations];
            for inc in incarnations.iter().filter(|inc| **inc < keep_from) {
                self.streams.remove(&(origin, *inc));
            }
            let retired = self.retired_below.entry(origin).or_insert(0);
            *retired = (*retired).max(keep_from);
        }
    }

    /// Number of remembered out-of-order entries (for metrics).
    pub fn sparse_entries(&self) -> usize {
        self.streams.values().map(|s| s.above.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(origin: u64, incarnation: u64, seq: u64) -> BatchId {
        BatchId {
            origin: NodeId::from_u64(origin),
            incarnation,
            seq,
        }
    }

    proptest! {
        /// Without overflow the filter is exactly a set.
        #[test]
        fn filter_is_a_set_without_overflow(ids in proptest::collection::vec((0u64..3, 0u64..3, 0u64..40), 0..200)) {
            let mut filter = DecidedFilter::new(1000, 10);
            let mut model = BTreeSet::new();
            for (o, i, s) in ids {
                let b = id(o, i, s);
                prop_assert_eq!(filter.insert(b), model.insert(b));
                for (o2, i2, s2) in [(o, i, s), (o, i, s + 1), (o, i + 1, 0)] {
                    let probe = id(o2, i2, s2);
                    prop_assert_eq!(filter.contains(&probe), model.contains(&probe));
                }
            }
        }
    }

    #[test]
    fn dense_stream_uses_only_a_watermark() {
        let mut filter = DecidedFilter::new(4, 2);
        for seq in (0..1000).rev() {
            filter.insert(id(1, 0, seq));
            assert!(filter.sparse_entries() <= 5);
        }
        assert!(filter.contains(&id(1, 0, 0)));
    }

    #[test]
    fn overflow_and_retirement_are_bounded_and_conservative() {
        let mut filter = DecidedFilter::new(4, 2);
        // seq 0 lost: seqs 1.. decided.
        for seq in 1..10 {
            filter.insert(id(1, 0, seq));
        }
        assert!(filter.sparse_entries() <= 4);
        assert!(
            filter.contains(&id(1, 0, 0)),
            "given up holes count as decided"
        );
        filter.insert(id(1, 1, 0));
        filter.insert(id(1, 2, 0));
        assert!(filter.contains(&id(1, 0, 100)), "retired incarnation");
        assert!(!filter.contains(&id(1, 2, 1)));
    }
}

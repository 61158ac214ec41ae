//! What an engine reports about itself: [`EngineStatus`], published on a
//! `watch` channel every `status_interval`.

use rabia_core::protocol::ReplicaMetrics;
use rabia_core::{NodeId, Slot};
use rabia_network::TransportStats;
use std::time::Duration;

/// A log-bucketed latency histogram (about 19 % relative precision), cheap
/// enough to record every operation.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_nanos: u64,
}

const SUB_BUCKETS: u64 = 4;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; (64 * SUB_BUCKETS) as usize],
            count: 0,
            max_nanos: 0,
        }
    }
}

impl Histogram {
    fn index(nanos: u64) -> usize {
        if nanos < SUB_BUCKETS {
            return nanos as usize;
        }
        let exp = 63 - u64::from(nanos.leading_zeros());
        let sub = (nanos >> (exp - 2)) & (SUB_BUCKETS - 1);
        (exp * SUB_BUCKETS + sub) as usize
    }

    fn lower_bound(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB_BUCKETS {
            return index;
        }
        let exp = index / SUB_BUCKETS;
        let sub = index % SUB_BUCKETS;
        (1u64 << exp) | (sub << (exp - 2))
    }

    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = Histogram::index(nanos).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max_nanos = self.max_nanos.max(nanos);
    }

    /// Adds every sample of `other` to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.max_nanos = self.max_nanos.max(other.max_nanos);
    }

    /// The value at quantile `q` (0..=1), as a bucket's lower bound.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(Histogram::lower_bound(i).min(self.max_nanos));
            }
        }
        Duration::from_nanos(self.max_nanos)
    }

    /// A summary for reporting.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            p50: self.quantile(0.5),
            p99: self.quantile(0.99),
            max: Duration::from_nanos(self.max_nanos),
        }
    }
}

/// Quantiles of a latency distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

/// One peer as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer.
    pub node: NodeId,
    /// Time since the last message from it (`None`: never heard).
    pub last_heard: Option<Duration>,
    /// Heard from within the peer failure timeout (`election_timeout`).
    pub reachable: bool,
}

/// A snapshot of an engine's state and counters.
#[derive(Clone, Debug, Default)]
pub struct EngineStatus {
    /// This node.
    pub node_id: Option<NodeId>,
    /// The engine loop is running.
    pub running: bool,
    /// First slot not yet decided here.
    pub next_slot: Slot,
    /// First slot not yet applied here.
    pub applied_slot: Slot,
    /// Started with an empty store as a replacement
    /// ([`EmptyStore::Rejoin`](crate::EmptyStore::Rejoin)) and still
    /// learning: it sends no votes until it reaches `participate_from`.
    pub learner: bool,
    /// The first slot this node takes part in, once known (0 for a node
    /// that never was a learner).
    pub participate_from: Option<Slot>,
    /// Protocol counters: decided and ⊥ slots, phases, fast path, drops.
    pub protocol: ReplicaMetrics,
    /// Operations waiting to be put into a batch.
    pub queued_operations: usize,
    /// Batches this node proposed (created).
    pub batches_created: u64,
    /// Mean operations per created batch.
    pub mean_batch_size: f64,
    /// Largest created batch.
    pub max_batch_size: usize,
    /// From a local batch's creation to its decision here.
    pub submit_to_decide: LatencySummary,
    /// From a decision to its application here.
    pub decide_to_apply: LatencySummary,
    /// Base slot of the latest durable snapshot.
    pub last_snapshot: Option<Slot>,
    /// Fire-and-forget operations (the guide's `operation_tx`) that were
    /// refused (oversized, or the replica was overloaded); they have no
    /// reply channel, so this counter is where they show.
    pub refused_operations: u64,
    /// Peers.
    pub peers: Vec<PeerStatus>,
    /// Transport counters.
    pub transport: TransportStats,
    /// Why the engine stopped, if it did.
    pub stopped_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_bucket_precision() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).as_micros() as f64;
        let p99 = h.quantile(0.99).as_micros() as f64;
        assert!((400.0..=500.0).contains(&p50), "p50 {p50}");
        assert!((790.0..=990.0).contains(&p99), "p99 {p99}");
        assert_eq!(h.summary().count, 1000);
        assert_eq!(h.summary().max, Duration::from_micros(1000));
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }
}

//! Cluster membership and the quorum thresholds derived from it.

use crate::error::ConfigError;
use crate::ids::{Epoch, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The membership of a cluster as seen by one node.
///
/// `ClusterConfig::new` is infallible so that the developer guide's set-up
/// code works as written; every consumer (the protocol `Replica`, the engine)
/// calls [`ClusterConfig::validate`] and refuses an invalid configuration with
/// a [`ConfigError`]. [`ClusterConfig::try_new`] validates up front.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// This node.
    pub node_id: NodeId,
    /// Every member of the cluster, this node included.
    pub nodes: BTreeSet<NodeId>,
    /// The configuration number carried by every protocol message.
    pub epoch: Epoch,
    /// The pre-shared seed of the common coin. `None` derives it from the
    /// membership, which every member computes identically.
    pub coin_seed: Option<u64>,
}

impl ClusterConfig {
    /// A configuration for `node_id` in a cluster of `nodes` (which must
    /// contain `node_id`). Not validated here: see [`ClusterConfig::validate`].
    #[allow(clippy::disallowed_types)] // the guide's API takes a HashSet; we store a BTreeSet
    pub fn new(node_id: NodeId, nodes: std::collections::HashSet<NodeId>) -> Self {
        ClusterConfig {
            node_id,
            nodes: nodes.into_iter().collect(),
            epoch: Epoch::default(),
            coin_seed: None,
        }
    }

    /// A validated configuration from any collection of members.
    pub fn try_new(
        node_id: NodeId,
        nodes: impl IntoIterator<Item = NodeId>,
    ) -> Result<Self, ConfigError> {
        let config = ClusterConfig {
            node_id,
            nodes: nodes.into_iter().collect(),
            epoch: Epoch::default(),
            coin_seed: None,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the membership is usable: non-empty, containing this node,
    /// and small enough for the wire format.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() {
            return Err(ConfigError::EmptyCluster);
        }
        if !self.nodes.contains(&self.node_id) {
            return Err(ConfigError::SelfNotMember {
                node_id: self.node_id,
            });
        }
        if self.nodes.len() > MAX_CLUSTER_SIZE {
            return Err(ConfigError::ClusterTooLarge {
                nodes: self.nodes.len(),
                max: MAX_CLUSTER_SIZE,
            });
        }
        Ok(())
    }

    /// The quorum thresholds for this membership.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds::for_cluster_size(self.nodes.len())
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: NodeId) -> bool {
        self.nodes.contains(&node)
    }

    /// Every member except this node, in ascending order.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.node_id;
        self.nodes.iter().copied().filter(move |n| *n != me)
    }

    /// The seed of the common coin: the configured one, or a hash of the
    /// sorted membership and the epoch (identical on every member).
    pub fn effective_coin_seed(&self) -> u64 {
        if let Some(seed) = self.coin_seed {
            return seed;
        }
        let mut acc = 0x5241_4249_4121_u64 ^ self.epoch.0; // "RABIA!"
        for node in &self.nodes {
            acc = crate::protocol::coin::mix64(acc ^ node.as_u64());
        }
        acc
    }
}

/// The largest supported cluster (messages are O(n²) per slot; Rabia targets
/// small clusters in one datacenter).
pub const MAX_CLUSTER_SIZE: usize = 31;

/// The three thresholds of the protocol, kept as separate formulas (they
/// coincide when n = 2f + 1 but not for n = 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Cluster size n.
    pub n: usize,
    /// Tolerated crash faults f = ⌊(n − 1) / 2⌋.
    pub f: usize,
    /// How many distinct senders a round waits for: n − f.
    pub quorum: usize,
    /// A majority of the cluster: ⌊n / 2⌋ + 1.
    pub majority: usize,
    /// Votes for one bit that decide it: f + 1.
    pub decide: usize,
}

impl Thresholds {
    /// Thresholds for a cluster of `n` nodes (n ≥ 1).
    pub const fn for_cluster_size(n: usize) -> Self {
        let f = if n == 0 { 0 } else { (n - 1) / 2 };
        Thresholds {
            n,
            f,
            quorum: n - f,
            majority: n / 2 + 1,
            decide: f + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_match_protocol_table() {
        let table = [
            (3, 1, 2, 2, 2),
            (4, 1, 3, 3, 2),
            (5, 2, 3, 3, 3),
            (7, 3, 4, 4, 4),
        ];
        for (n, f, quorum, majority, decide) in table {
            let t = Thresholds::for_cluster_size(n);
            assert_eq!(
                (t.n, t.f, t.quorum, t.majority, t.decide),
                (n, f, quorum, majority, decide)
            );
        }
    }

    #[test]
    fn validation_rejects_empty_and_foreign() {
        let me = NodeId::from_u64(1);
        assert!(matches!(
            ClusterConfig::try_new(me, []),
            Err(ConfigError::EmptyCluster)
        ));
        assert!(matches!(
            ClusterConfig::try_new(me, [NodeId::from_u64(2)]),
            Err(ConfigError::SelfNotMember { .. })
        ));
        let ok = ClusterConfig::try_new(me, (1..=3).map(NodeId::from_u64)).unwrap();
        assert_eq!(ok.thresholds().quorum, 2);
        assert_eq!(ok.peers().count(), 2);
    }

    #[test]
    fn coin_seed_is_a_function_of_membership() {
        let a = ClusterConfig::try_new(NodeId::from_u64(1), (1..=3).map(NodeId::from_u64)).unwrap();
        let b = ClusterConfig::try_new(NodeId::from_u64(3), (1..=3).map(NodeId::from_u64)).unwrap();
        assert_eq!(a.effective_coin_seed(), b.effective_coin_seed());
        let c = ClusterConfig::try_new(NodeId::from_u64(1), (1..=4).map(NodeId::from_u64)).unwrap();
        assert_ne!(a.effective_coin_seed(), c.effective_coin_seed());
    }
}

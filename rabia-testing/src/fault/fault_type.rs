//! The faults a [`NetworkSimulator`](super::NetworkSimulator) injects.

use rabia_core::NodeId;
use std::time::Duration;

/// One fault. Faults with a `duration` heal by themselves when it ends;
/// [`NetworkSimulator::heal`](super::NetworkSimulator::heal) ends every
/// fault at once.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultType {
    /// The node stops (its engine task is dropped mid-flight, as a killed
    /// process) and restarts from its persistence after `duration`. Needs
    /// the node registered with the simulator ([`TestCluster`](super::TestCluster)
    /// does that); an unregistered node is cut off from the network for
    /// `duration` instead.
    NodeCrash {
        /// The node.
        node_id: NodeId,
        /// How long it stays down.
        duration: Duration,
    },
    /// Messages between different groups are dropped. Nodes in no group form
    /// one more group of their own. With `one_way`, only messages *from* the
    /// first group to the others are dropped (the others still reach it).
    NetworkPartition {
        /// The sides.
        groups: Vec<Vec<NodeId>>,
        /// Cut one direction only.
        one_way: bool,
        /// How long it lasts (`None`: until healed).
        duration: Option<Duration>,
    },
    /// Each message is dropped with probability `rate` (0..=1).
    PacketLoss {
        /// Drop probability.
        rate: f64,
        /// How long it lasts.
        duration: Duration,
    },
    /// Each message is delayed uniformly in `[min, max]`.
    HighLatency {
        /// Shortest delay.
        min: Duration,
        /// Longest delay.
        max: Duration,
        /// How long it lasts.
        duration: Duration,
    },
    /// Every message to or from the node is delayed by `delay_factor` times
    /// the current latency (or times 1 ms when no latency fault is active).
    SlowNode {
        /// The node.
        node_id: NodeId,
        /// Delay multiplier (≥ 1).
        delay_factor: f64,
        /// How long it lasts.
        duration: Duration,
    },
    /// A fraction of messages is held back by up to `max_delay`, so later
    /// messages overtake them.
    MessageReordering {
        /// Fraction of messages held back (0..=1).
        rate: f64,
        /// Longest hold-back.
        max_delay: Duration,
        /// How long it lasts.
        duration: Duration,
    },
    /// Each message is delivered twice with probability `rate`.
    MessageDuplication {
        /// Duplication probability.
        rate: f64,
        /// How long it lasts.
        duration: Duration,
    },
    /// Every later storage call of the node fails: its engine must stop
    /// cleanly and never vote again. Needs the node registered with the
    /// simulator. Not healed by `heal()` (a dead disk stays dead; restart
    /// the node with [`FaultType::NodeCrash`] to replace it).
    DiskFailure {
        /// The node.
        node_id: NodeId,
    },
}

impl FaultType {
    /// Checks the fault's parameters.
    pub fn validate(&self) -> Result<(), String> {
        let rate = |r: f64, what: &str| {
            if (0.0..=1.0).contains(&r) {
                Ok(())
            } else {
                Err(format!("{what} must be within 0..=1, got {r}"))
            }
        };
        match self {
            FaultType::PacketLoss { rate: r, .. } => rate(*r, "PacketLoss rate"),
            FaultType::MessageDuplication { rate: r, .. } => rate(*r, "MessageDuplication rate"),
            FaultType::MessageReordering { rate: r, .. } => rate(*r, "MessageReordering rate"),
            FaultType::HighLatency { min, max, .. } if min > max => {
                Err(format!("HighLatency min {min:?} exceeds max {max:?}"))
            }
            FaultType::SlowNode { delay_factor, .. }
                if !delay_factor.is_finite() || *delay_factor < 1.0 =>
            {
                Err(format!(
                    "SlowNode delay_factor must be ≥ 1, got {delay_factor}"
                ))
            }
            FaultType::NetworkPartition { groups, .. } if groups.is_empty() => {
                Err("NetworkPartition needs at least one group".into())
            }
            _ => Ok(()),
        }
    }
}

//! Protocol-level configuration of a [`Replica`](super::Replica): every queue
//! and window is bounded here.

use crate::error::ConfigError;
use std::time::Duration;

/// Bounds and intervals of the protocol core. All have safe defaults;
/// [`ReplicaConfig::validate`] refuses nonsensical values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// Maximum batches in the pending queue (local submissions and adopted
    /// peers' batches). A full queue refuses submissions with
    /// [`SubmitError::Overloaded`](crate::error::SubmitError::Overloaded).
    pub pending_batches_max: usize,
    /// Maximum operations in one batch.
    pub batch_operations_max: usize,
    /// Maximum encoded bytes of one batch.
    pub batch_bytes_max: usize,
    /// What a start with an empty store (no records, no snapshot) means.
    pub empty_store: EmptyStore,
    /// How many slots beyond the current one messages are buffered for;
    /// messages further ahead are dropped (and trigger catch-up).
    pub slot_window: u64,
    /// How many phases beyond the current one messages are buffered for.
    pub phase_window: u32,
    /// How many decided slots are kept in memory to answer laggards. A
    /// replica further behind than this fetches a snapshot instead.
    pub decided_retention: u64,
    /// Most encoded bytes of decided batches kept in memory to answer
    /// laggards (older decisions are dropped first; the last `slot_window`
    /// decisions are kept whatever their size). Bounds memory when batches
    /// are large, where a count alone does not.
    pub decided_retention_bytes: usize,
    /// Largest snapshot chunk accepted from a peer.
    pub snapshot_chunk_bytes_max: usize,
    /// Maximum decided values in one catch-up reply.
    pub catch_up_batch_max: usize,
    /// Maximum encoded bytes of one catch-up reply (at least one value is
    /// always sent). Must leave room within the transport's frame limit.
    pub catch_up_bytes_max: usize,
    /// Re-send this replica's messages for a slot that made no progress for
    /// this long (recovers from message loss and peer restarts).
    pub retransmit_interval: Duration,
    /// Period of the progress heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a replica waits for the slot's opener (the origin of the
    /// last batch of the previous slot's value) to propose before it
    /// proposes what it has. Zero: every replica proposes at once. A
    /// throughput hint only; see `Replica` docs and docs/protocol.md.
    pub opener_wait: Duration,
    /// How long the opener of a slot waits, at most, for new batches from
    /// the replicas whose batches were in the previous value (their
    /// clients were answered at the same moment as its own); never more
    /// than half the time the previous slot took. Zero: open at once. A
    /// throughput hint only; see docs/protocol.md.
    pub contributor_wait: Duration,
    /// How long a replica whose own Proposal is already durable waits, at
    /// most, for the remaining members' proposals once n − f agreeing ones
    /// are in, before it sends its State: if all n agree it decides at once
    /// and needs neither a State nor a Vote (the unanimity shortcut), whose
    /// records would otherwise take a disk sync of their own. Only when the
    /// previous slot was unanimous here (every member proposing), and never
    /// more than half the time the previous slot took. Zero: never wait. A
    /// throughput hint only; see docs/protocol.md.
    pub unanimity_wait: Duration,
    /// After deciding a value, hold off opening the next slot with this
    /// replica's own queue until the driver calls
    /// [`Replica::hold_opening`](crate::protocol::Replica::hold_opening)
    /// with `false` (once the decided operations are applied and their
    /// clients could submit again). Joining a slot a peer opened is never
    /// held. Off by default: a driver that never releases would leave
    /// opening slots to its peers.
    pub hold_opening_after_decision: bool,
    /// When this replica opens a slot with its own queue, also send the
    /// value at once in an `Opening` message, ahead of its `Proposal`
    /// (which waits until its record is durable), so that the others copy
    /// it and write their own proposals in parallel with its write. Worth
    /// it with durable storage; one broadcast more per slot without.
    pub announce_opening: bool,
    /// Out-of-order entries the decided-batch filter keeps per stream.
    pub filter_sparse_max: usize,
    /// Incarnations per origin the decided-batch filter keeps.
    pub filter_incarnations_max: usize,
    /// A deliberately wrong variant, for the simulator's self-tests only.
    #[cfg(feature = "mutations")]
    pub mutation: Mutation,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            pending_batches_max: 4096,
            batch_operations_max: 10_000,
            batch_bytes_max: 4 << 20,
            empty_store: EmptyStore::Bootstrap,
            slot_window: 64,
            phase_window: 32,
            decided_retention: 100_000,
            decided_retention_bytes: 64 << 20,
            snapshot_chunk_bytes_max: 4 << 20,
            catch_up_batch_max: 256,
            catch_up_bytes_max: 8 << 20,
            retransmit_interval: Duration::from_millis(200),
            heartbeat_interval: Duration::from_millis(100),
            opener_wait: Duration::from_millis(10),
            contributor_wait: Duration::from_micros(200),
            unanimity_wait: Duration::from_micros(200),
            hold_opening_after_decision: false,
            announce_opening: false,
            filter_sparse_max: 4096,
            filter_incarnations_max: 8,
            #[cfg(feature = "mutations")]
            mutation: Mutation::None,
        }
    }
}

impl ReplicaConfig {
    /// Refuses zero capacities and zero intervals.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |field, value: u64| ConfigError::require_positive(field, value);
        positive("pending_batches_max", self.pending_batches_max as u64)?;
        positive("batch_operations_max", self.batch_operations_max as u64)?;
        positive("batch_bytes_max", self.batch_bytes_max as u64)?;
        positive("slot_window", self.slot_window)?;
        positive("phase_window", u64::from(self.phase_window))?;
        positive("decided_retention", self.decided_retention)?;
        positive(
            "decided_retention_bytes",
            self.decided_retention_bytes as u64,
        )?;
        positive("catch_up_batch_max", self.catch_up_batch_max as u64)?;
        positive("catch_up_bytes_max", self.catch_up_bytes_max as u64)?;
        let frame = crate::protocol::wire::DEFAULT_FRAME_BYTES_MAX;
        if self.batch_bytes_max.saturating_add(4096) > frame / 2 {
            return Err(ConfigError::InvalidSetting {
                field: "batch_bytes_max",
                reason: format!("a batch must fit in half a frame ({} bytes)", frame / 2),
            });
        }
        positive("filter_sparse_max", self.filter_sparse_max as u64)?;
        positive(
            "filter_incarnations_max",
            self.filter_incarnations_max as u64,
        )?;
        positive(
            "retransmit_interval",
            self.retransmit_interval
                .as_nanos()
                .min(u128::from(u64::MAX)) as u64,
        )?;
        positive(
            "heartbeat_interval",
            self.heartbeat_interval.as_nanos().min(u128::from(u64::MAX)) as u64,
        )?;
        if self.decided_retention < self.slot_window {
            return Err(ConfigError::InvalidSetting {
                field: "decided_retention",
                reason: format!(
                    "must be at least slot_window ({}) so laggards inside the window can be answered",
                    self.slot_window
                ),
            });
        }
        Ok(())
    }
}

/// What a replica that starts with an empty store (no records, no
/// snapshot) is: a store cannot tell a first start from a restart after it
/// was lost, so the operator says which.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmptyStore {
    /// A member of a new cluster (or one whose earlier starts never sent a
    /// Proposal, State or Vote): it takes part at once. The default.
    #[default]
    Bootstrap,
    /// A replacement for a replica that lost its store (a new disk, a
    /// wiped data directory, a restart with in-memory storage) under the
    /// same id. It is a learner until it knows how far its predecessor may
    /// have gone, and only then takes part (the fresh store guard,
    /// docs/protocol.md).
    Rejoin,
}

/// Deliberately broken protocol variants. They exist only so the simulator
/// can prove its checkers detect real bugs; never enable them elsewhere.
#[cfg(feature = "mutations")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mutation {
    /// The correct protocol.
    #[default]
    None,
    /// Decide on f votes instead of f + 1 (breaks agreement).
    DecideThresholdMinusOne,
    /// Each replica flips its own coin: a fixed bit derived from its id
    /// instead of the common coin (breaks termination).
    PerReplicaCoin,
    /// Drop this replica's proposal when the slot decides something else
    /// instead of keeping it pending (loses operations).
    NoRequeue,
    /// Send protocol messages before they are durable (equivocation after
    /// a crash-restart).
    SendBeforePersist,
    /// Deliver a decision (and so answer its clients) before this
    /// replica's own votes for it are durable (an acknowledged operation can
    /// be lost when the replica restarts and votes differently).
    DeliverBeforeVotesDurable,
    /// A replica that starts with an empty store takes part at once instead
    /// of first learning how far its forgotten predecessor went
    /// (equivocation after a lost store).
    NoFreshStoreGuard,
    /// Decide at once when n − f proposals agree instead of all n (a
    /// replica that saw a different quorum of proposals may decide ⊥:
    /// breaks agreement).
    UnanimityOfQuorum,
}

//! `RabiaConfig`: the engine's settings, with the developer guide's field
//! names, safe defaults and validation.

use rabia_core::protocol::{EmptyStore, ReplicaConfig};
use rabia_core::ConfigError;
use std::time::Duration;

/// Settings of a [`RabiaEngine`](crate::RabiaEngine).
///
/// ```
/// use rabia_engine::RabiaConfig;
/// use std::time::Duration;
///
/// let config = RabiaConfig {
///     max_batch_size: 100,
///     batch_timeout: Duration::from_millis(10),
///     ..Default::default()
/// };
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RabiaConfig {
    /// Maximum operations per batch (a slot decides a list of batches).
    pub max_batch_size: usize,
    /// Maximum encoded bytes per batch, and of the values this node
    /// proposes from its own queue.
    pub max_batch_bytes: usize,
    /// While one of this node's own batches awaits a decision, operations
    /// accumulate for at most this long (or until `max_batch_size`) before
    /// they are proposed. With none awaiting, an operation goes out at once
    /// (with those submitted in the same instant): proposed by this node if
    /// it opens the next slot, otherwise forwarded to the node that does
    /// (see `opener_wait`).
    pub batch_timeout: Duration,
    /// Period of the progress heartbeat between replicas.
    pub heartbeat_interval: Duration,
    /// **Rabia has no leader and no elections.** This field is kept so that
    /// Raft-style configurations carry over, and means the *peer failure
    /// timeout*: a peer not heard from for this long is reported as
    /// unreachable in [`EngineStatus`](crate::EngineStatus). It never affects
    /// safety or when slots are decided.
    pub election_timeout: Duration,
    /// A slot that made no progress for this long has its replica re-send its
    /// messages and ask peers for missing decisions (recovers lost messages
    /// and restarted peers).
    pub retransmit_interval: Duration,
    /// Take a snapshot at least this often (when anything was applied since).
    pub snapshot_interval: Duration,
    /// Take a snapshot when the operations applied since the last one exceed
    /// this many bytes; records behind a snapshot are truncated.
    pub max_log_size: usize,
    /// Maximum batches waiting to be decided (local and peers'). Beyond it
    /// the engine stops accepting submissions (`try_submit` reports overload).
    pub max_pending_batches: usize,
    /// Maximum submissions queued between clients and the engine task.
    pub max_queued_operations: usize,
    /// Decided values kept in memory to answer lagging peers; a peer further
    /// behind fetches a snapshot instead. At least 64.
    pub max_retained_decisions: u64,
    /// Most bytes (encoded) of decided values kept in memory to answer
    /// lagging peers, whichever of this and `max_retained_decisions` is
    /// reached first; the last 64 are kept whatever their size.
    pub max_retained_decision_bytes: usize,
    /// What starting with an empty store means: a member of a new cluster
    /// ([`EmptyStore::Bootstrap`], the default, takes part at once) or a
    /// replacement for a node that lost its store under the same id
    /// ([`EmptyStore::Rejoin`]: it learns how far its predecessor may have
    /// gone before it takes part). Has no effect on a store with data.
    pub empty_store: EmptyStore,
    /// Size of the pieces a snapshot is sent to a peer in.
    pub snapshot_chunk_bytes: usize,
    /// Largest snapshot this replica accepts from a peer.
    pub max_snapshot_bytes: u64,
    /// Replies cached per client session (operations a session may have
    /// outstanding at once).
    pub session_window: usize,
    /// Client sessions remembered (least recently used are forgotten).
    pub max_sessions: usize,
    /// How often the status snapshot is published.
    pub status_interval: Duration,
    /// How long this node waits for a slot's opener (the origin of the
    /// last batch of the previous slot's value) to propose before it
    /// proposes its own batches; zero: propose at once (more ⊥ slots under
    /// load). Keep it above a sync of your disk plus a round trip: the
    /// opener's proposal is durable before it is sent. A throughput hint,
    /// never needed for safety (docs/protocol.md, "Slot values: lists of
    /// batches").
    pub opener_wait: Duration,
    /// How long, at most, the node that opens a slot waits for the next
    /// operations of the nodes whose operations were in the previous slot
    /// (their clients were answered at the same moment as its own), so that
    /// one slot carries them all instead of clients splitting into groups
    /// that take turns. Never more than half the time the previous slot
    /// took, so it costs little where slots are fast (memory); with durable
    /// storage it raises operations per slot. Zero: open at once. A
    /// throughput hint, never needed for safety.
    pub contributor_wait: Duration,
    /// How long, at most, a node whose proposal is already on disk waits
    /// for the last peers' proposals once a quorum of agreeing ones is in,
    /// before it sends its State: if every node proposed the same value the
    /// slot is decided on the proposals alone, and the State and Vote (and
    /// the disk sync their records take) are never needed. Only after a
    /// slot where every node proposed; never more than half the time the
    /// previous slot took. Zero: never wait. A throughput hint, never
    /// needed for safety (docs/protocol.md, "The unanimity shortcut").
    pub unanimity_wait: Duration,
    /// How long, at most, a node that has just answered its clients (a
    /// slot was decided and applied) waits for their next operations
    /// before it opens or contributes to the next slot, so that one slot
    /// carries them all. Ends as soon as as many operations are back as
    /// clients were answered; never more than half the time the previous
    /// slot took. Zero: operations go out one batch at a time as they
    /// come. A throughput hint, never needed for safety.
    pub refill_wait: Duration,
    /// With durable storage, a node that opens a slot with its own
    /// operations also sends the value at once in an `Opening` message,
    /// ahead of its Proposal (which waits for its disk sync), so that the
    /// other nodes copy it and write their own proposals in parallel: one
    /// disk sync less on a slot's path. Never counted as a proposal, so
    /// never needed for safety (docs/protocol.md, "Announcing the
    /// opening"). Ignored with in-memory storage, where a Proposal does
    /// not wait. Measured 1.55× the durable throughput with each engine on
    /// its own runtime, and 1.1–1.3× with several durable engines sharing
    /// one multi-threaded runtime (docs/benchmarks.md).
    pub announce_opening: bool,
}

impl Default for RabiaConfig {
    fn default() -> Self {
        RabiaConfig {
            max_batch_size: 4096,
            max_batch_bytes: 4 << 20,
            batch_timeout: Duration::from_millis(5),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            retransmit_interval: Duration::from_millis(200),
            snapshot_interval: Duration::from_secs(60),
            max_log_size: 64 << 20,
            max_pending_batches: 4096,
            max_queued_operations: 65_536,
            max_retained_decisions: 100_000,
            max_retained_decision_bytes: 64 << 20,
            empty_store: EmptyStore::Bootstrap,
            snapshot_chunk_bytes: 1 << 20,
            max_snapshot_bytes: 1 << 30,
            session_window: 64,
            max_sessions: 100_000,
            status_interval: Duration::from_millis(100),
            opener_wait: Duration::from_millis(10),
            contributor_wait: Duration::from_micros(200),
            unanimity_wait: Duration::from_micros(200),
            refill_wait: Duration::from_micros(500),
            announce_opening: true,
        }
    }
}

impl RabiaConfig {
    /// Refuses zero sizes and intervals, and inconsistent combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |field, value: u128| ConfigError::require_positive(field, value);
        positive("max_batch_size", self.max_batch_size as u128)?;
        positive("max_batch_bytes", self.max_batch_bytes as u128)?;
        positive("heartbeat_interval", self.heartbeat_interval.as_nanos())?;
        positive("election_timeout", self.election_timeout.as_nanos())?;
        positive("retransmit_interval", self.retransmit_interval.as_nanos())?;
        positive("snapshot_interval", self.snapshot_interval.as_nanos())?;
        positive("max_log_size", self.max_log_size as u128)?;
        positive("max_pending_batches", self.max_pending_batches as u128)?;
        positive("max_queued_operations", self.max_queued_operations as u128)?;
        positive("session_window", self.session_window as u128)?;
        positive("snapshot_chunk_bytes", self.snapshot_chunk_bytes as u128)?;
        positive("max_snapshot_bytes", u128::from(self.max_snapshot_bytes))?;
        positive("max_sessions", self.max_sessions as u128)?;
        positive("status_interval", self.status_interval.as_nanos())?;
        let half_frame = rabia_core::protocol::wire::DEFAULT_FRAME_BYTES_MAX / 2;
        if self.snapshot_chunk_bytes > half_frame {
            return Err(ConfigError::InvalidSetting {
                field: "snapshot_chunk_bytes",
                reason: format!("a chunk must fit in half a frame ({half_frame} bytes)"),
            });
        }
        if self.max_pending_batches < 4 {
            return Err(ConfigError::InvalidSetting {
                field: "max_pending_batches",
                reason: "must be at least 4 (a quarter is kept for peers' batches)".into(),
            });
        }
        let day = std::time::Duration::from_secs(86_400);
        for (field, value) in [
            ("batch_timeout", self.batch_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("election_timeout", self.election_timeout),
            ("retransmit_interval", self.retransmit_interval),
            ("status_interval", self.status_interval),
            ("opener_wait", self.opener_wait),
            ("contributor_wait", self.contributor_wait),
            ("unanimity_wait", self.unanimity_wait),
            ("refill_wait", self.refill_wait),
        ] {
            if value > day {
                return Err(ConfigError::InvalidSetting {
                    field,
                    reason: "must be at most one day".into(),
                });
            }
        }
        if self.election_timeout < self.heartbeat_interval {
            return Err(ConfigError::InvalidSetting {
                field: "election_timeout",
                reason: format!(
                    "the peer failure timeout ({:?}) must be at least heartbeat_interval ({:?})",
                    self.election_timeout, self.heartbeat_interval
                ),
            });
        }
        self.replica_config().validate()
    }

    /// The protocol core's settings derived from these.
    pub fn replica_config(&self) -> ReplicaConfig {
        ReplicaConfig {
            pending_batches_max: self.max_pending_batches,
            batch_operations_max: self.max_batch_size,
            batch_bytes_max: self.max_batch_bytes,
            retransmit_interval: self.retransmit_interval,
            heartbeat_interval: self.heartbeat_interval,
            decided_retention: self.max_retained_decisions,
            decided_retention_bytes: self.max_retained_decision_bytes,
            empty_store: self.empty_store,
            // Accept what any peer may send (its chunk size may differ from
            // ours); `snapshot_chunk_bytes` only sizes the chunks we send.
            snapshot_chunk_bytes_max: rabia_core::protocol::wire::DEFAULT_FRAME_BYTES_MAX / 2,
            // Released by the driver once the decided slot is applied.
            hold_opening_after_decision: true,
            opener_wait: self.opener_wait,
            contributor_wait: self.contributor_wait,
            unanimity_wait: self.unanimity_wait,
            announce_opening: self.announce_opening,
            ..ReplicaConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zero_is_refused() {
        RabiaConfig::default().validate().unwrap();
        let bad = RabiaConfig {
            max_batch_size: 0,
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::InvalidSetting {
                field: "max_batch_size",
                ..
            })
        ));
        let inconsistent = RabiaConfig {
            election_timeout: Duration::from_millis(10),
            heartbeat_interval: Duration::from_millis(100),
            ..Default::default()
        };
        assert!(inconsistent.validate().is_err());
        let huge_chunks = RabiaConfig {
            snapshot_chunk_bytes: 9 << 20,
            ..Default::default()
        };
        assert!(matches!(
            huge_chunks.validate(),
            Err(ConfigError::InvalidSetting {
                field: "snapshot_chunk_bytes",
                ..
            })
        ));
        // Chunks up to half a frame are accepted from peers whatever the
        // size this node sends.
        let small = RabiaConfig {
            snapshot_chunk_bytes: 1024,
            ..Default::default()
        };
        assert_eq!(
            small.replica_config().snapshot_chunk_bytes_max,
            rabia_core::protocol::wire::DEFAULT_FRAME_BYTES_MAX / 2
        );
    }

    #[test]
    fn guide_production_config_is_valid() {
        let production_config = RabiaConfig {
            max_batch_size: 1000,
            batch_timeout: Duration::from_millis(5),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            snapshot_interval: Duration::from_secs(300),
            max_log_size: 10_000_000,
            ..Default::default()
        };
        production_config.validate().unwrap();
    }
}

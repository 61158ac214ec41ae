//! Engine errors: [`EngineError`] ends `run()`, [`SubmitError`] answers one
//! operation.

use rabia_core::{ClientId, ConfigError, NodeId, Operation};
use rabia_persistence::PersistenceError;
use thiserror::Error;

/// Why `RabiaEngine::run` stopped (configuration or fatal class).
#[derive(Debug, Error)]
pub enum EngineError {
    /// The configuration was refused at start-up.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// `node_id` differs from the cluster configuration's own node.
    #[error("engine node {engine} differs from the cluster configuration's node {cluster}")]
    NodeMismatch {
        /// The id passed to the engine.
        engine: NodeId,
        /// The id in the cluster configuration.
        cluster: NodeId,
    },
    /// A multi-node cluster was started without a transport.
    #[error("a cluster of {nodes} nodes needs a transport: call RabiaEngine::with_transport")]
    NoTransport {
        /// Cluster size.
        nodes: usize,
    },
    /// Storage failed: the replica stopped rather than continue without its data.
    #[error("persistence failed: {0}")]
    Persistence(#[from] PersistenceError),
    /// The state machine could not restore its snapshot at start-up.
    #[error("state machine could not restore the snapshot of slot {slot}: {message}")]
    Restore {
        /// The snapshot's base slot.
        slot: u64,
        /// The state machine's error.
        message: String,
    },
    /// The transport closed for good (another instance of this node took
    /// over its endpoint, or the network was shut down).
    #[error("transport closed")]
    TransportClosed,
    /// An internal task ended unexpectedly (a bug: the message says where).
    #[error("internal task failed: {0}")]
    Internal(String),
}

/// Why one operation got no result (rejection class: the engine keeps serving).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The engine's queues are full; the operation is handed back.
    #[error("engine overloaded; operation handed back")]
    Overloaded {
        /// The refused operation.
        operation: Operation,
    },
    /// The state machine returned an error for this operation. Every replica
    /// computed the same error; the cluster keeps serving.
    #[error("operation failed in the state machine: {message}")]
    Application {
        /// The state machine's error text.
        message: String,
    },
    /// The operation is malformed for the engine (e.g. larger than a batch).
    #[error("operation refused: {reason}")]
    Invalid {
        /// Why.
        reason: String,
    },
    /// The session's reply for this sequence number was already evicted.
    #[error("session {client} sequence {seq} is older than the session window; its reply is gone")]
    SessionExpired {
        /// The client.
        client: ClientId,
        /// The sequence number.
        seq: u64,
    },
    /// The operation's batch was decided while this replica was catching up
    /// from a peer's snapshot, so its result is not known here. It may or
    /// may not have been applied: retry it with the same session tag to
    /// learn the result without applying it twice.
    #[error("decided while this replica caught up from a snapshot; result unknown here")]
    Indeterminate,
    /// The engine stopped before the operation completed. It may or may not
    /// have been applied: retry it with the same session tag to find out
    /// without applying it twice.
    #[error("engine stopped; the operation may or may not have been applied")]
    Stopped,
}

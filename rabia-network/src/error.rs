//! Transport errors.

use rabia_core::NodeId;
use thiserror::Error;

/// Why a transport could not be set up or used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The node is not registered with the network.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The transport was shut down.
    #[error("transport closed")]
    Closed,
    /// A setting is invalid.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        reason: String,
    },
}

//! Error types of rabia-core.
//!
//! Each enum states its class: a **rejection** is bad
//! input or overload (the caller keeps serving, and gets any value back), a
//! **configuration** error stops start-up with a clear reason.

use crate::ids::NodeId;
use crate::operation::Operation;
use thiserror::Error;

/// An invalid cluster or replica configuration (fatal at start-up).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The membership is empty.
    #[error("cluster configuration has no members")]
    EmptyCluster,
    /// This node is not among the members.
    #[error("node {node_id} is not a member of its own cluster configuration")]
    SelfNotMember {
        /// This node.
        node_id: NodeId,
    },
    /// Too many members.
    #[error("cluster has {nodes} members; at most {max} are supported")]
    ClusterTooLarge {
        /// Requested members.
        nodes: usize,
        /// The supported maximum.
        max: usize,
    },
    /// A numeric setting is out of range.
    #[error("invalid setting `{field}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

impl ConfigError {
    /// Refuses a zero count, size or duration (`value` in any unit).
    pub fn require_positive(
        field: &'static str,
        value: impl Into<u128>,
    ) -> Result<(), ConfigError> {
        if value.into() == 0 {
            Err(ConfigError::InvalidSetting {
                field,
                reason: "must be greater than zero".into(),
            })
        } else {
            Ok(())
        }
    }
}

/// A refused submission (rejection class): the operations are handed back.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The pending queue is full; retry later or shed load.
    #[error("pending queue is full ({capacity} batches); operations handed back")]
    Overloaded {
        /// The refused operations.
        operations: Vec<Operation>,
        /// The configured capacity.
        capacity: usize,
    },
    /// The batch is empty, has too many operations or too many bytes.
    #[error("batch refused: {reason}")]
    InvalidBatch {
        /// The refused operations.
        operations: Vec<Operation>,
        /// Why.
        reason: String,
    },
    /// The replica stopped because of a fatal error and takes no new work.
    #[error("replica is stopped")]
    Stopped {
        /// The refused operations.
        operations: Vec<Operation>,
    },
}

impl SubmitError {
    /// Takes the refused operations back out of the error.
    pub fn into_operations(self) -> Vec<Operation> {
        match self {
            SubmitError::Overloaded { operations, .. }
            | SubmitError::InvalidBatch { operations, .. }
            | SubmitError::Stopped { operations } => operations,
        }
    }
}

/// A message that could not be decoded (rejection class: dropped and counted).
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The frame exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Unsupported wire version.
    #[error("unsupported wire version {found} (expected {expected})")]
    Version {
        /// Version found in the frame.
        found: u8,
        /// Version this build speaks.
        expected: u8,
    },
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(#[from] bincode::Error),
}

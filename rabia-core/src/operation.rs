//! Operations (what users submit), batches (the unit of agreement) and slot
//! values (what a slot decides).

use crate::ids::{BatchId, ClientId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The exactly-once tag of an operation: the client session that issued it and
/// the operation's sequence number within that session.
///
/// Replicas apply an operation with a given `(client, seq)` at most once; a
/// retry (same tag, any replica) gets the cached reply instead of a second
/// application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionTag {
    /// The client session.
    pub client: ClientId,
    /// The sequence number of the operation within the session (from 1).
    pub seq: u64,
}

/// One operation for the replicated state machine: opaque bytes that the
/// user's [`StateMachine`](crate::smr::StateMachine) knows how to decode.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    /// The operation's payload, as the state machine expects it.
    // serde_bytes: one copy instead of a per-byte visitor; the bincode
    // encoding (length, then the bytes) is unchanged.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The exactly-once tag, when the operation belongs to a client session.
    pub session: Option<SessionTag>,
}

impl Operation {
    /// An operation with the given payload and no session.
    pub fn new(data: Vec<u8>) -> Self {
        Operation {
            data,
            session: None,
        }
    }

    /// An operation that belongs to a client session: replicas apply it at
    /// most once however often it is retried.
    pub fn with_session(data: Vec<u8>, client: ClientId, seq: u64) -> Self {
        Operation {
            data,
            session: Some(SessionTag { client, seq }),
        }
    }

    /// Bytes this operation occupies in a batch, for size limits.
    pub fn encoded_len(&self) -> usize {
        // 8-byte length prefix + payload + optional 17-byte session tag.
        8 + self.data.len() + if self.session.is_some() { 17 } else { 1 }
    }
}

/// A batch of operations: the unit a slot agrees on.
///
/// A batch is created once, by one replica (its origin), which also assigns
/// its ordering timestamp. Both travel with the batch, so every replica sorts
/// every batch identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Globally unique identity.
    pub id: BatchId,
    /// The origin's hybrid-logical-clock timestamp (microseconds): the
    /// primary ordering key of the pending queue.
    pub timestamp: u64,
    /// The operations, applied in this order.
    pub operations: Vec<Operation>,
}

impl Batch {
    /// The key by which every replica orders pending batches: oldest first,
    /// ties broken by identity.
    pub fn ordering_key(&self) -> OrderingKey {
        OrderingKey {
            timestamp: self.timestamp,
            id: self.id,
        }
    }

    /// Approximate encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        40 + self
            .operations
            .iter()
            .map(Operation::encoded_len)
            .sum::<usize>()
    }
}

/// The priority of a pending batch: smaller is older and proposed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderingKey {
    /// The origin's timestamp.
    pub timestamp: u64,
    /// The batch identity (tie breaker).
    pub id: BatchId,
}

/// What a slot decides: one batch, or the null value ⊥ (a forfeited slot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotValue {
    /// ⊥: no batch had a majority; nothing is applied for this slot.
    Null,
    /// The batch proposed by a majority of replicas.
    Batch(Arc<Batch>),
}

impl SlotValue {
    /// The batch identity, if the value is a batch.
    pub fn batch_id(&self) -> Option<BatchId> {
        match self {
            SlotValue::Null => None,
            SlotValue::Batch(batch) => Some(batch.id),
        }
    }

    /// Whether this is ⊥.
    pub fn is_null(&self) -> bool {
        matches!(self, SlotValue::Null)
    }
}

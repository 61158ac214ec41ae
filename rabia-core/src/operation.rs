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

/// The identity of a proposed value: the ids of its batches, in order.
///
/// Two proposals are the same value exactly when their ids are equal, so
/// the protocol counts proposals and names the majority value (the
/// `candidate` of States and Votes) by this id. A one-batch value's id is
/// held inline (no allocation, no shared counter on the hot path).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(IdRepr);

/// Canonical: `One` for exactly one id, `Many` for two or more.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum IdRepr {
    One(BatchId),
    Many(Arc<[BatchId]>),
}

impl ValueId {
    /// The identity of the one-batch value holding the batch `id`.
    pub fn single(id: BatchId) -> Self {
        ValueId(IdRepr::One(id))
    }

    fn from_ids(ids: Vec<BatchId>) -> Option<Self> {
        match ids.len() {
            0 => None,
            1 => Some(ValueId(IdRepr::One(ids[0]))),
            _ => Some(ValueId(IdRepr::Many(ids.into()))),
        }
    }

    /// The ids of the value's batches, in order.
    pub fn batch_ids(&self) -> &[BatchId] {
        match &self.0 {
            IdRepr::One(id) => std::slice::from_ref(id),
            IdRepr::Many(ids) => ids,
        }
    }

    /// Whether the value holds the batch `id`.
    pub fn contains(&self, id: BatchId) -> bool {
        self.batch_ids().contains(&id)
    }
}

impl Serialize for ValueId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.batch_ids().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ValueId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ids = Vec::<BatchId>::deserialize(deserializer)?;
        ValueId::from_ids(ids)
            .ok_or_else(|| serde::de::Error::custom("a value id names at least one batch"))
    }
}

/// What a replica proposes for a slot and what a slot decides when it does
/// not decide ⊥: one or more pending batches, oldest first (strictly
/// increasing [`OrderingKey`]s).
///
/// A replica proposes every pending batch it holds (up to its limits), so
/// one slot carries the batches of every replica that had one: one slot's
/// messages and syncs are shared by all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchList {
    batches: BatchesRepr,
    id: ValueId,
}

/// Canonical like [`IdRepr`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum BatchesRepr {
    One(Arc<Batch>),
    Many(Arc<[Arc<Batch>]>),
}

impl BatchList {
    /// A list of the given batches, or `None` if it is empty or not in
    /// strictly increasing ordering-key order (which also rules out a batch
    /// listed twice).
    pub fn new(mut batches: Vec<Arc<Batch>>) -> Option<Self> {
        if batches.is_empty()
            || !batches
                .windows(2)
                .all(|w| w[0].ordering_key() < w[1].ordering_key())
        {
            return None;
        }
        if batches.len() == 1 {
            return batches.pop().map(BatchList::single);
        }
        let id = ValueId::from_ids(batches.iter().map(|b| b.id).collect())?;
        Some(BatchList {
            batches: BatchesRepr::Many(batches.into()),
            id,
        })
    }

    /// A list of one batch.
    pub fn single(batch: Arc<Batch>) -> Self {
        let id = ValueId::single(batch.id);
        BatchList {
            batches: BatchesRepr::One(batch),
            id,
        }
    }

    /// The batches, in order.
    pub fn batches(&self) -> &[Arc<Batch>] {
        match &self.batches {
            BatchesRepr::One(batch) => std::slice::from_ref(batch),
            BatchesRepr::Many(batches) => batches,
        }
    }

    /// The value's identity.
    pub fn id(&self) -> &ValueId {
        &self.id
    }

    /// Number of batches.
    pub fn len(&self) -> usize {
        self.batches().len()
    }

    /// Always false: a list holds at least one batch.
    pub fn is_empty(&self) -> bool {
        self.batches().is_empty()
    }

    /// Number of operations over all batches.
    pub fn operation_count(&self) -> usize {
        self.batches().iter().map(|b| b.operations.len()).sum()
    }

    /// Approximate encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        8 + self
            .batches()
            .iter()
            .map(|b| b.encoded_len())
            .sum::<usize>()
    }
}

impl Serialize for BatchList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.batches().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BatchList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let batches = Vec::<Arc<Batch>>::deserialize(deserializer)?;
        BatchList::new(batches).ok_or_else(|| {
            serde::de::Error::custom("a batch list must be non-empty and in ordering-key order")
        })
    }
}

/// What a slot decides: a list of batches, or the null value ⊥ (a
/// forfeited slot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotValue {
    /// ⊥: no value had a majority; nothing is applied for this slot.
    Null,
    /// The value proposed by a majority of replicas.
    Batches(BatchList),
}

impl SlotValue {
    /// The value's identity, unless it is ⊥.
    pub fn value_id(&self) -> Option<&ValueId> {
        match self {
            SlotValue::Null => None,
            SlotValue::Batches(list) => Some(list.id()),
        }
    }

    /// The decided batches, in order (none for ⊥).
    pub fn batches(&self) -> &[Arc<Batch>] {
        match self {
            SlotValue::Null => &[],
            SlotValue::Batches(list) => list.batches(),
        }
    }

    /// Whether this is ⊥.
    pub fn is_null(&self) -> bool {
        matches!(self, SlotValue::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn batch(timestamp: u64, seq: u64) -> Arc<Batch> {
        Arc::new(Batch {
            id: BatchId {
                origin: NodeId::from_u64(1),
                incarnation: 0,
                seq,
            },
            timestamp,
            operations: vec![Operation::new(vec![1])],
        })
    }

    #[test]
    fn a_batch_list_is_non_empty_and_in_key_order() {
        assert!(BatchList::new(vec![]).is_none());
        assert!(BatchList::new(vec![batch(2, 2), batch(1, 1)]).is_none());
        assert!(BatchList::new(vec![batch(1, 1), batch(1, 1)]).is_none());
        let list = BatchList::new(vec![batch(1, 1), batch(2, 2)]).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.id().batch_ids(), &[batch(1, 1).id, batch(2, 2).id]);
        assert!(list.id().contains(batch(2, 2).id));
        assert!(!list.id().contains(batch(3, 3).id));
    }

    #[test]
    fn one_batch_has_one_identity_however_it_is_built_or_decoded() {
        let single = BatchList::single(batch(1, 1));
        assert_eq!(BatchList::new(vec![batch(1, 1)]).unwrap(), single);
        assert_eq!(single.id(), &ValueId::single(batch(1, 1).id));
        let bytes = bincode::serialize(single.id()).unwrap();
        let decoded: ValueId = bincode::deserialize(&bytes).unwrap();
        assert_eq!(&decoded, single.id());
        let list_bytes = bincode::serialize(&single).unwrap();
        let decoded: BatchList = bincode::deserialize(&list_bytes).unwrap();
        assert_eq!(decoded, single);
    }

    #[test]
    fn malformed_lists_and_ids_do_not_decode() {
        let empty = bincode::serialize(&Vec::<BatchId>::new()).unwrap();
        assert!(bincode::deserialize::<ValueId>(&empty).is_err());
        let unordered = bincode::serialize(&vec![batch(2, 2), batch(1, 1)]).unwrap();
        assert!(bincode::deserialize::<BatchList>(&unordered).is_err());
        let none = bincode::serialize(&Vec::<Arc<Batch>>::new()).unwrap();
        assert!(bincode::deserialize::<BatchList>(&none).is_err());
    }
}

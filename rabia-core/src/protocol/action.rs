//! What a [`Replica`](super::Replica) asks its driver to do.
//!
//! The driver drains [`Action`]s with `poll_action()` after every input and
//! carries each out:
//!
//! * `Send` / `Broadcast`: hand the envelope to the transport (best effort:
//!   the protocol retransmits what matters).
//! * `Persist`: append the record to durable storage, then call
//!   `handle_persisted(token)` once it (and every earlier record) is durable.
//!   Records must become durable in token order; a crash may lose a suffix of
//!   the records not yet reported durable, never a record in the middle.
//! * `Deliver`: apply the slot's value to the state machine. Deliveries come
//!   in strict slot order with no gaps, each only after its decision is
//!   durable.
//! * `NeedSnapshot`: this replica is behind the peers' compaction point; it
//!   has asked `peer` for its snapshot (informational).
//! * `ServeSnapshot`: a peer asked for this replica's snapshot: send it as
//!   `SnapshotChunk` messages.
//! * `SnapshotChunk`: a piece of a peer's snapshot arrived; once whole,
//!   restore it and call `install_snapshot`.
//!
//! The replica itself holds back every message that depends on a record not
//! yet durable (the restart rule, docs/protocol.md), so a driver cannot send
//! a vote early by accident. A `Deliver` likewise waits until this replica's
//! own messages for the slot are durable (but not for the slot's `Decided`
//! record: the value is already fixed by durable votes).

use crate::ids::{BatchId, NodeId, Slot};
use crate::operation::{Batch, SlotValue, ValueId};
use crate::protocol::message::{Envelope, Message};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Identifies a persistence request; completions are reported in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PersistToken(pub u64);

/// A record the replica needs durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistRecord {
    /// A protocol message (Proposal, State or Vote) this replica is about to
    /// send. After a restart the replica re-sends exactly these and never a
    /// different message for the same slot, phase and kind.
    Sent {
        /// The slot.
        slot: Slot,
        /// The message.
        message: Message,
    },
    /// A decided slot.
    Decided {
        /// The slot.
        slot: Slot,
        /// Its value.
        value: SlotValue,
    },
    /// This replica started with an empty store and is a learner (the fresh
    /// store guard, docs/protocol.md): it takes part from
    /// `participate_from` on, or, while that is `None`, not at all yet.
    /// Kept so that a learner that restarts stays one.
    Learner {
        /// The first slot it may send Proposals, States and Votes for,
        /// once known.
        participate_from: Option<Slot>,
    },
    /// A decided slot whose value is the one this replica proposed for it:
    /// the payload is already in that `Sent` Proposal record (written
    /// before this one), so it is not written twice. Recovery takes the
    /// value from there. (Last, so that the encoding of the variants
    /// before it is unchanged: WAL format 3 is read as it was.)
    DecidedAsProposed {
        /// The slot.
        slot: Slot,
        /// The decided value's identity (that of the recorded Proposal).
        value: ValueId,
    },
}

impl PersistRecord {
    /// Whether something waits on this record as soon as it is issued.
    ///
    /// A `Decided` record is never waited on: the slot's delivery waits
    /// only for the replica's own Proposal, States and Votes (the value is
    /// fixed by durable votes), messages wait only for urgent records, and
    /// a crash that loses it only makes the replica learn the slot again.
    /// A driver may hold such a record back, so that it shares the sync of
    /// the next record that is waited on (typically the next slot's
    /// Proposal) instead of taking a sync of its own on the way. It must
    /// still make it durable in token order and report it only once
    /// durable.
    pub fn is_urgent(&self) -> bool {
        !matches!(
            self,
            PersistRecord::Decided { .. } | PersistRecord::DecidedAsProposed { .. }
        )
    }

    /// The slot the record belongs to: log truncation behind a snapshot at
    /// slot s drops records whose slot is below s. `Learner` records are
    /// never dropped (their slot is the maximum): the latest one must
    /// survive, or a resolved learner would find only its first record
    /// after a restart and learn again.
    pub fn slot(&self) -> Slot {
        match self {
            PersistRecord::Sent { slot, .. }
            | PersistRecord::Decided { slot, .. }
            | PersistRecord::DecidedAsProposed { slot, .. } => *slot,
            PersistRecord::Learner { .. } => Slot(u64::MAX),
        }
    }
}

/// What to do with a decided slot when its turn to be applied comes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Apply every operation of these batches, in order. A batch of the
    /// decided value that was already delivered in an earlier slot is left
    /// out (never applied twice); at least one batch remains.
    Apply(Vec<Arc<Batch>>),
    /// ⊥: nothing to apply.
    Null,
    /// Every batch of the decided value was already delivered in an earlier
    /// slot: nothing to apply.
    Duplicate(Vec<BatchId>),
}

/// A decided slot ready to be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The slot (deliveries are consecutive).
    pub slot: Slot,
    /// The identity of the decided value (`None`: ⊥), duplicates included:
    /// every replica delivers the same one for a slot.
    pub value: Option<ValueId>,
    /// What to apply.
    pub outcome: DeliveryOutcome,
}

/// An instruction from the replica to its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send to one peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        envelope: Envelope,
    },
    /// Send to every peer (not to this replica).
    Broadcast {
        /// The message.
        envelope: Envelope,
    },
    /// Make a record durable, then call `handle_persisted(token)`.
    Persist {
        /// Completion token.
        token: PersistToken,
        /// The record.
        record: PersistRecord,
    },
    /// Apply a decided slot.
    Deliver(Delivery),
    /// This replica is behind every slot `peer` still keeps and has asked it
    /// for its snapshot.
    NeedSnapshot {
        /// A peer that has it.
        peer: NodeId,
        /// The first slot the peer still keeps.
        slot: Slot,
    },
    /// Send this replica's latest snapshot to `to` as `SnapshotChunk`s.
    ServeSnapshot {
        /// The requester.
        to: NodeId,
    },
    /// A piece of a peer's snapshot.
    SnapshotChunk {
        /// The sender.
        from: NodeId,
        /// The first slot the snapshot does not cover.
        base_slot: Slot,
        /// Byte offset of `data`.
        offset: u64,
        /// Size of the whole encoded snapshot.
        total: u64,
        /// The bytes.
        data: Vec<u8>,
    },
}

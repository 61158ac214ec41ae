//! Protocol messages (listed in docs/protocol.md).
//!
//! Every message travels in an [`Envelope`] carrying the sender and the
//! epoch; every slot-scoped message names its slot. Counting is always per
//! distinct sender.

use crate::ids::{Epoch, NodeId, Phase, Slot};
use crate::operation::{Batch, BatchList, SlotValue, ValueId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A binary value of the randomized agreement: 1 means "the majority value",
/// 0 means "⊥".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bit {
    /// Decide ⊥.
    Zero = 0,
    /// Decide the majority proposal.
    One = 1,
}

/// A round-2 vote: a bit, or `?` ("no majority seen"). `?` is not a bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VoteValue {
    /// A vote for a bit.
    Bit(Bit),
    /// `?`.
    Unknown,
}

/// The protocol messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A new batch, sent by its origin to every peer so that all pending
    /// queues hold it.
    Forward {
        /// The batch.
        batch: Arc<Batch>,
    },
    /// Phase 0: the sender's proposal for `slot`.
    Proposal {
        /// The slot.
        slot: Slot,
        /// The proposed batches, payloads included.
        value: BatchList,
    },
    /// Round 1 of a binary phase.
    State {
        /// The slot.
        slot: Slot,
        /// The phase (≥ 1).
        phase: Phase,
        /// The sender's state.
        bit: Bit,
        /// When `bit` is 1 and the sender knows it: the majority value.
        candidate: Option<ValueId>,
    },
    /// Round 2 of a binary phase.
    Vote {
        /// The slot.
        slot: Slot,
        /// The phase (≥ 1).
        phase: Phase,
        /// The sender's vote.
        vote: VoteValue,
        /// When the vote is 1 and the sender knows it: the majority value.
        candidate: Option<ValueId>,
    },
    /// The decided value of a slot.
    Decision {
        /// The slot.
        slot: Slot,
        /// The value.
        value: SlotValue,
    },
    /// "I decided 1 for `slot` but do not hold the majority value."
    ProposalRequest {
        /// The slot.
        slot: Slot,
        /// The majority value's id, when the requester knows it.
        candidate: Option<ValueId>,
    },
    /// The majority value of `slot`.
    ProposalReply {
        /// The slot.
        slot: Slot,
        /// The value proposed by a majority.
        value: BatchList,
    },
    /// "Send me the decided values from `from` on."
    CatchUpRequest {
        /// The first slot wanted.
        from: Slot,
    },
    /// Decided values, in slot order, contiguous from the first.
    CatchUpReply {
        /// `(slot, value)` pairs.
        decisions: Vec<(Slot, SlotValue)>,
        /// The responder's first undecided slot.
        responder_next: Slot,
        /// When the request asked for slots the responder no longer keeps:
        /// the first slot it still has (a snapshot is needed below it).
        compacted_below: Option<Slot>,
    },
    /// "Send me your latest snapshot": the sender is behind every slot this
    /// replica still keeps.
    SnapshotRequest,
    /// One piece of a snapshot (bytes of an encoded `Snapshot` of the engine),
    /// sent in order.
    SnapshotChunk {
        /// The first slot the snapshot does not cover.
        base_slot: Slot,
        /// Byte offset of `data` in the encoded snapshot.
        offset: u64,
        /// Size of the whole encoded snapshot.
        total: u64,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Periodic liveness and progress signal.
    Heartbeat {
        /// The sender's first undecided slot.
        next_slot: Slot,
        /// The sender started with an empty store and does not yet take
        /// part in the protocol (it only learns decisions): see the fresh
        /// store guard in docs/protocol.md.
        learner: bool,
        /// A learner's probe (random, per start), or, in the answer a
        /// participant sends a learner at once, that learner's probe
        /// echoed: the learner counts only answers to its own probe, which
        /// were sent after it started. 0 otherwise.
        probe: u64,
    },
    /// The value a replica is about to propose for `slot`, sent before its
    /// `Proposal` is durable. Never counted as a proposal: a hint the
    /// others may copy (`ReplicaConfig::announce_opening`).
    Opening {
        /// The slot.
        slot: Slot,
        /// The value.
        value: BatchList,
    },
    /// Phase 0: the sender's proposal for `slot`, naming the value by its
    /// batch ids only. Sent instead of a [`Message::Proposal`] when the
    /// value was already broadcast with its payloads (the sender's own
    /// `Opening`, or the peer value the sender copied), so payloads cross
    /// the network once per slot rather than once per proposer. Counts
    /// exactly as the full Proposal once the receiver holds the batches; a
    /// receiver that does not yet keeps it until they arrive, and
    /// retransmissions always carry the payloads.
    ProposalRef {
        /// The slot.
        slot: Slot,
        /// The proposed value's identity (its batch ids, in order).
        value: ValueId,
    },
    /// "Send me your Proposal for `slot` with its payloads": the sender got
    /// it by reference without holding the batches (it missed the
    /// broadcast that carried them). Answered with the full `Proposal`, as
    /// a retransmission is, or with the decision if the slot is decided.
    ProposalFetch {
        /// The slot.
        slot: Slot,
    },
}

impl Message {
    /// The slot a slot-scoped message is about.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Message::Proposal { slot, .. }
            | Message::State { slot, .. }
            | Message::Vote { slot, .. }
            | Message::Decision { slot, .. }
            | Message::ProposalRequest { slot, .. }
            | Message::ProposalReply { slot, .. }
            | Message::Opening { slot, .. }
            | Message::ProposalRef { slot, .. }
            | Message::ProposalFetch { slot } => Some(*slot),
            Message::Forward { .. }
            | Message::CatchUpRequest { .. }
            | Message::CatchUpReply { .. }
            | Message::SnapshotRequest
            | Message::SnapshotChunk { .. }
            | Message::Heartbeat { .. } => None,
        }
    }

    /// A short name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Forward { .. } => "forward",
            Message::Proposal { .. } => "proposal",
            Message::State { .. } => "state",
            Message::Vote { .. } => "vote",
            Message::Decision { .. } => "decision",
            Message::ProposalRequest { .. } => "proposal_request",
            Message::ProposalReply { .. } => "proposal_reply",
            Message::CatchUpRequest { .. } => "catch_up_request",
            Message::CatchUpReply { .. } => "catch_up_reply",
            Message::SnapshotRequest => "snapshot_request",
            Message::SnapshotChunk { .. } => "snapshot_chunk",
            Message::Heartbeat { .. } => "heartbeat",
            Message::Opening { .. } => "opening",
            Message::ProposalRef { .. } => "proposal_ref",
            Message::ProposalFetch { .. } => "proposal_fetch",
        }
    }
}

/// A message with its sender and epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending replica.
    pub sender: NodeId,
    /// The sender's configuration number.
    pub epoch: Epoch,
    /// The message.
    pub message: Message,
}

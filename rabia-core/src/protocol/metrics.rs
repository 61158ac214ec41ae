//! Counters a replica keeps about itself: the health signals of a Rabia
//! deployment (⊥ rate, phases per slot, fast-path rate; see docs/protocol.md)
//! and the reasons inputs were dropped.

/// Why an inbound message was dropped (each is counted, none panics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Sender not a member, or envelope sender differs from the transport's.
    pub unknown_sender: u64,
    /// Epoch differs from ours.
    pub wrong_epoch: u64,
    /// Structurally invalid (phase 0 State, oversized batch, ...).
    pub invalid: u64,
    /// Slot or phase beyond the buffering window.
    pub out_of_window: u64,
    /// About a slot already decided (answered with the decision instead).
    pub stale: u64,
    /// Exact duplicate of a message already counted.
    pub duplicate: u64,
    /// A different message from a sender for the same slot, phase and kind.
    pub conflicting: u64,
    /// A batch refused because the pending queue was full.
    pub queue_full: u64,
}

/// Counters of one replica. Monotonic except `pending_batches`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaMetrics {
    /// Slots decided (by running the protocol or by adopting a decision).
    pub slots_decided: u64,
    /// Slots decided ⊥.
    pub null_slots: u64,
    /// Slots this replica decided by running the protocol itself.
    pub slots_decided_by_protocol: u64,
    /// Of those, decided in phase 1 (at most three message delays: the fast
    /// path).
    /// Includes the unanimous slots.
    pub fast_path_slots: u64,
    /// Of those, decided in the exchange because every member proposed
    /// the same value (two message delays, no State or Vote awaited; see
    /// docs/protocol.md, "The unanimity shortcut"). Counted as one phase.
    pub unanimous_slots: u64,
    /// Sum of the phases taken by slots decided by protocol.
    pub phases_total: u64,
    /// Largest number of phases one slot took.
    pub phases_max: u32,
    /// Slots decided by adopting a peer's `Decision` or catch-up reply.
    pub decisions_adopted: u64,
    /// Decided batches that were already in the log (skipped at delivery).
    pub duplicate_batches: u64,
    /// Batches this replica created from local submissions.
    pub batches_submitted: u64,
    /// Proposals this replica sent.
    pub proposals_sent: u64,
    /// Batches in the proposals this replica sent (a proposal carries
    /// every pending batch, so this over `proposals_sent` is the batches
    /// per proposal).
    pub proposed_batches: u64,
    /// Values this replica announced ahead of its Proposal (`Opening`,
    /// `ReplicaConfig::announce_opening`).
    pub openings_sent: u64,
    /// Proposals this replica sent by reference (`ProposalRef`: the peers
    /// already held the value's payloads).
    pub proposals_by_reference: u64,
    /// Proposals received by reference without their payloads, which this
    /// replica then fetched from the sender (`ProposalFetch`).
    pub proposal_fetches: u64,
    /// Times this replica re-sent its messages for a stalled slot.
    pub retransmits: u64,
    /// Own batches forwarded again because they were still pending a
    /// retransmit interval later (or because this replica is a learner).
    pub reforwards: u64,
    /// Catch-up requests sent.
    pub catch_up_requests: u64,
    /// Snapshots requested from peers (this replica was behind their logs).
    pub snapshot_requests: u64,
    /// Snapshots fetched from peers and installed.
    pub snapshots_installed: u64,
    /// Value fetches (decided 1 without holding the majority batch).
    pub value_fetches: u64,
    /// Peers' batches evicted from a full pending queue for older ones.
    pub pending_evictions: u64,
    /// Batches currently pending.
    pub pending_batches: u64,
    /// Dropped inbound messages, by reason.
    pub dropped: DropCounters,
}

impl ReplicaMetrics {
    /// Fraction of decided slots that were ⊥.
    pub fn null_rate(&self) -> f64 {
        ratio(self.null_slots, self.slots_decided)
    }

    /// Fraction of protocol-decided slots that took the fast path.
    pub fn fast_path_rate(&self) -> f64 {
        ratio(self.fast_path_slots, self.slots_decided_by_protocol)
    }

    /// Mean phases per protocol-decided slot.
    pub fn mean_phases(&self) -> f64 {
        ratio(self.phases_total, self.slots_decided_by_protocol)
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

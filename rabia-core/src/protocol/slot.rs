//! One slot's weak multi-valued consensus: the proposal
//! exchange, then State and Vote rounds of randomized binary agreement.
//!
//! ```text
//!   NotStarted ──propose──► Exchange ──n−f proposals──► Round1(1)
//!   Round1(p) ──n−f states──► Round2(p) ──n−f votes──┬─► decide b (≥ f+1 votes b)
//!                                                   └─► Round1(p+1)
//!   decide 1 without the batch ──► AwaitingValue ──batch found──► decided
//! ```
//!
//! A `SlotInstance` only records and evaluates; the replica owns sending,
//! persisting and deciding. Each evaluation happens once per round, when the
//! round's tally first reaches n − f.

use crate::cluster::Thresholds;
use crate::ids::{NodeId, Phase};
use crate::operation::{BatchList, ValueId};
use crate::protocol::message::{Bit, Message, VoteValue};
use crate::protocol::tally::{Recorded, Tally};
use std::collections::BTreeMap;

/// Where a slot instance is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Nothing sent yet (messages may already be buffered).
    NotStarted,
    /// Proposal sent; waiting for n − f proposals.
    Exchange,
    /// State of phase p sent; waiting for n − f states.
    Round1(Phase),
    /// Vote of phase p sent; waiting for n − f votes.
    Round2(Phase),
    /// Decided 1 but the majority batch is not held yet.
    AwaitingValue(Phase),
}

/// The outcome of evaluating a round once its quorum is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoundOutcome {
    /// Send this state for the given phase.
    State(Phase, Bit),
    /// Send this vote for the given phase.
    Vote(Phase, VoteValue),
    /// Decide the bit (in the given phase).
    Decide(Phase, Bit),
}

/// One slot's protocol state at one replica.
#[derive(Debug)]
pub(crate) struct SlotInstance {
    pub(crate) stage: Stage,
    /// Proposals by sender (own included).
    pub(crate) proposals: Tally<ValueId>,
    /// Payloads of the proposed values.
    pub(crate) proposed_values: BTreeMap<ValueId, BatchList>,
    pub(crate) states: BTreeMap<Phase, Tally<Bit>>,
    pub(crate) votes: BTreeMap<Phase, Tally<VoteValue>>,
    /// The majority value, once known (unique: two majorities intersect).
    pub(crate) candidate: Option<ValueId>,
    /// Messages this replica sent for the slot, with the persist token each
    /// waited for. Re-sent on retransmit; never replaced by a different one.
    pub(crate) sent: Vec<(u64, Message)>,
    /// Own messages recovered from durable storage, by (phase, is_vote).
    pub(crate) restored_states: BTreeMap<Phase, Bit>,
    pub(crate) restored_votes: BTreeMap<Phase, VoteValue>,
    pub(crate) restored_proposal: Option<BatchList>,
    /// Highest phase for which any message has been received.
    pub(crate) highest_phase_seen: Phase,
    /// A value a peer announced it is about to propose (`Opening`).
    pub(crate) announced: Option<BatchList>,
    /// Peers' proposals received by reference (`ProposalRef`) whose batches
    /// this replica does not hold yet, at most one per sender: counted once
    /// the payloads arrive.
    pub(crate) unresolved: Vec<(NodeId, ValueId)>,
}

impl SlotInstance {
    pub(crate) fn new() -> Self {
        SlotInstance {
            stage: Stage::NotStarted,
            proposals: Tally::default(),
            proposed_values: BTreeMap::new(),
            states: BTreeMap::new(),
            votes: BTreeMap::new(),
            candidate: None,
            sent: Vec::new(),
            restored_states: BTreeMap::new(),
            restored_votes: BTreeMap::new(),
            restored_proposal: None,
            highest_phase_seen: Phase::EXCHANGE,
            announced: None,
            unresolved: Vec::new(),
        }
    }

    /// The phase this instance is in (0 before and during the exchange).
    pub(crate) fn phase(&self) -> Phase {
        match self.stage {
            Stage::NotStarted | Stage::Exchange => Phase::EXCHANGE,
            Stage::Round1(p) | Stage::Round2(p) | Stage::AwaitingValue(p) => p,
        }
    }

    pub(crate) fn record_proposal(&mut self, from: NodeId, value: &BatchList) -> Recorded {
        let outcome = self.proposals.record(from, value.id().clone());
        if outcome == Recorded::New {
            self.proposed_values
                .entry(value.id().clone())
                .or_insert_with(|| value.clone());
        }
        outcome
    }

    pub(crate) fn record_state(
        &mut self,
        from: NodeId,
        phase: Phase,
        bit: Bit,
        candidate: Option<ValueId>,
    ) -> Recorded {
        self.highest_phase_seen = self.highest_phase_seen.max(phase);
        let outcome = self.states.entry(phase).or_default().record(from, bit);
        if outcome == Recorded::New && bit == Bit::One {
            self.learn_candidate(candidate);
        }
        outcome
    }

    pub(crate) fn record_vote(
        &mut self,
        from: NodeId,
        phase: Phase,
        vote: VoteValue,
        candidate: Option<ValueId>,
    ) -> Recorded {
        self.highest_phase_seen = self.highest_phase_seen.max(phase);
        let outcome = self.votes.entry(phase).or_default().record(from, vote);
        if outcome == Recorded::New && vote == VoteValue::Bit(Bit::One) {
            self.learn_candidate(candidate);
        }
        outcome
    }

    /// Records a majority-value identity learned from a peer. The first one
    /// wins; in a crash-fault system a second, different one cannot exist.
    pub(crate) fn learn_candidate(&mut self, candidate: Option<ValueId>) {
        if self.candidate.is_none() {
            self.candidate = candidate;
        }
    }

    /// The value proposed by at least `majority` senders among every
    /// proposal received so far, if any (at most one exists).
    pub(crate) fn majority_proposal(&self, majority: usize) -> Option<ValueId> {
        self.proposals
            .values()
            .find(|id| self.proposals.count(|v| v == *id) >= majority)
            .cloned()
    }

    /// The value all `n` members proposed, when every one of them has
    /// proposed and they all agree. Then any n − f of the proposals hold
    /// only this value, so every replica's exchange sets State 1 for it,
    /// every phase-1 vote is 1 and the slot can decide nothing else: a
    /// replica holding all n proposals may decide it at once (the
    /// unanimity shortcut). The tally holds members only: the replica drops
    /// every message from a non-member before it gets here.
    pub(crate) fn unanimous_proposal(&self, n: usize) -> Option<&ValueId> {
        if n == 0 || self.proposals.len() < n {
            return None;
        }
        self.agreed_proposal()
    }

    /// The value of every proposal received so far, if there is at least
    /// one and they all agree.
    pub(crate) fn agreed_proposal(&self) -> Option<&ValueId> {
        let mut values = self.proposals.values();
        let first = values.next()?;
        values.all(|v| v == first).then_some(first)
    }

    /// The persist token of this replica's own Proposal record, if it
    /// proposed in this incarnation or recovered one (token 0: durable).
    pub(crate) fn own_proposal_token(&self) -> Option<u64> {
        self.sent
            .iter()
            .find_map(|(token, m)| matches!(m, Message::Proposal { .. }).then_some(*token))
    }

    /// The value most peers proposed (ties: the smallest id) among those
    /// `usable` accepts: what a replica that has not proposed yet proposes
    /// too, so that the replicas converge on one value.
    pub(crate) fn most_proposed(&self, usable: impl Fn(&BatchList) -> bool) -> Option<BatchList> {
        self.proposed_values
            .iter()
            .filter(|(_, value)| usable(value))
            .map(|(id, value)| (self.proposals.count(|v| v == id), id, value))
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
            .map(|(_, _, value)| value.clone())
    }

    /// Evaluates the current round if its quorum is in. `coin` gives the
    /// common coin for a phase; `decide_threshold` is f + 1.
    pub(crate) fn evaluate(
        &mut self,
        t: &Thresholds,
        decide_threshold: usize,
        coin: impl Fn(Phase) -> Bit,
    ) -> Option<RoundOutcome> {
        match self.stage {
            Stage::NotStarted | Stage::AwaitingValue(_) => None,
            Stage::Exchange => {
                if self.proposals.len() < t.quorum {
                    return None;
                }
                let state = match self.majority_proposal(t.majority) {
                    Some(id) => {
                        self.learn_candidate(Some(id));
                        Bit::One
                    }
                    None => Bit::Zero,
                };
                Some(RoundOutcome::State(Phase::FIRST, state))
            }
            Stage::Round1(phase) => {
                let states = self.states.get(&phase)?;
                if states.len() < t.quorum {
                    return None;
                }
                let ones = states.count(|b| *b == Bit::One);
                let zeros = states.count(|b| *b == Bit::Zero);
                let vote = if ones >= t.majority {
                    VoteValue::Bit(Bit::One)
                } else if zeros >= t.majority {
                    VoteValue::Bit(Bit::Zero)
                } else {
                    VoteValue::Unknown
                };
                Some(RoundOutcome::Vote(phase, vote))
            }
            Stage::Round2(phase) => {
                let votes = self.votes.get(&phase)?;
                if votes.len() < t.quorum {
                    return None;
                }
                let ones = votes.count(|v| *v == VoteValue::Bit(Bit::One));
                let zeros = votes.count(|v| *v == VoteValue::Bit(Bit::Zero));
                let next = phase.next();
                Some(if ones > 0 && zeros > 0 {
                    // Impossible without equivocation (two disjoint majorities
                    // of states); fall back to the coin rather than trust either.
                    RoundOutcome::State(next, coin(phase))
                } else if ones >= decide_threshold && ones > 0 {
                    RoundOutcome::Decide(phase, Bit::One)
                } else if zeros >= decide_threshold && zeros > 0 {
                    RoundOutcome::Decide(phase, Bit::Zero)
                } else if ones > 0 {
                    RoundOutcome::State(next, Bit::One)
                } else if zeros > 0 {
                    RoundOutcome::State(next, Bit::Zero)
                } else {
                    RoundOutcome::State(next, coin(phase))
                })
            }
        }
    }

    /// The payload of a value proposed in this slot, if held.
    pub(crate) fn proposed_value(&self, id: &ValueId) -> Option<&BatchList> {
        self.proposed_values.get(id)
    }

    /// The state this replica durably sent for `phase` before a restart: it
    /// must be re-sent unchanged, whatever the new evaluation says.
    pub(crate) fn restored_override_state(&self, phase: Phase) -> Option<Bit> {
        self.restored_states.get(&phase).copied()
    }

    /// The vote this replica durably sent for `phase` before a restart.
    pub(crate) fn restored_override_vote(&self, phase: Phase) -> Option<VoteValue> {
        self.restored_votes.get(&phase).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BatchId, NodeId};
    use crate::operation::Batch;
    use std::sync::Arc;

    fn node(i: u64) -> NodeId {
        NodeId::from_u64(i)
    }

    fn batch(seq: u64) -> BatchList {
        BatchList::single(Arc::new(Batch {
            id: BatchId {
                origin: node(1),
                incarnation: 0,
                seq,
            },
            timestamp: seq,
            operations: vec![],
        }))
    }

    #[test]
    fn exchange_needs_quorum_and_finds_some_majority() {
        let t = Thresholds::for_cluster_size(5);
        let mut inst = SlotInstance::new();
        inst.stage = Stage::Exchange;
        inst.record_proposal(node(1), &batch(1));
        inst.record_proposal(node(2), &batch(2));
        assert_eq!(inst.evaluate(&t, t.decide, |_| Bit::Zero), None);
        inst.record_proposal(node(3), &batch(2));
        // 3 proposals, batch 2 has only 2 < majority 3.
        assert_eq!(
            inst.evaluate(&t, t.decide, |_| Bit::Zero),
            Some(RoundOutcome::State(Phase::FIRST, Bit::Zero))
        );
        inst.record_proposal(node(4), &batch(2));
        assert_eq!(
            inst.majority_proposal(t.majority),
            Some(batch(2).id().clone())
        );
    }

    #[test]
    fn round2_rules() {
        let t = Thresholds::for_cluster_size(3);
        let mut inst = SlotInstance::new();
        inst.stage = Stage::Round2(Phase(1));
        inst.record_vote(node(1), Phase(1), VoteValue::Bit(Bit::One), None);
        inst.record_vote(node(2), Phase(1), VoteValue::Unknown, None);
        // One vote for 1 < f + 1 = 2: adopt 1.
        assert_eq!(
            inst.evaluate(&t, t.decide, |_| Bit::Zero),
            Some(RoundOutcome::State(Phase(2), Bit::One))
        );
        inst.record_vote(node(3), Phase(1), VoteValue::Bit(Bit::One), None);
        assert_eq!(
            inst.evaluate(&t, t.decide, |_| Bit::Zero),
            Some(RoundOutcome::Decide(Phase(1), Bit::One))
        );
        let mut all_unknown = SlotInstance::new();
        all_unknown.stage = Stage::Round2(Phase(4));
        all_unknown.record_vote(node(1), Phase(4), VoteValue::Unknown, None);
        all_unknown.record_vote(node(2), Phase(4), VoteValue::Unknown, None);
        assert_eq!(
            all_unknown.evaluate(&t, t.decide, |p| if p == Phase(4) {
                Bit::One
            } else {
                Bit::Zero
            }),
            Some(RoundOutcome::State(Phase(5), Bit::One))
        );
    }
}

//! Property test: a replica fed arbitrary (well-typed but hostile) messages,
//! timeouts and durability reports never panics, never delivers out of
//! order, and never releases a message before its record is durable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rabia_core::protocol::{
    Action, Bit, Envelope, Message, PersistToken, RecoveredState, Replica, ReplicaConfig, VoteValue,
};
use rabia_core::time::Instant;
use rabia_core::{
    Batch, BatchId, BatchList, ClusterConfig, Epoch, NodeId, Operation, Phase, Slot, SlotValue,
};
use std::sync::Arc;
use std::time::Duration;

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![
        (0u64..6).prop_map(Slot),
        (0u64..200).prop_map(Slot),
        any::<u64>().prop_map(Slot),
        Just(Slot(u64::MAX)),
    ]
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![(0u32..4).prop_map(Phase), any::<u32>().prop_map(Phase)]
}

fn batch() -> impl Strategy<Value = Arc<Batch>> {
    (1u64..4, 0u64..3, 0u64..4, any::<u64>(), 0usize..3).prop_map(
        |(origin, incarnation, seq, timestamp, ops)| {
            Arc::new(Batch {
                id: BatchId {
                    origin: NodeId::from_u64(origin),
                    incarnation,
                    seq,
                },
                timestamp,
                operations: (0..ops).map(|i| Operation::new(vec![i as u8])).collect(),
            })
        },
    )
}

/// One to three batches, put in ordering-key order (duplicates dropped).
fn batch_list() -> impl Strategy<Value = BatchList> {
    proptest::collection::vec(batch(), 1..4).prop_map(|mut batches| {
        batches.sort_by_key(|b| b.ordering_key());
        batches.dedup_by_key(|b| b.ordering_key());
        BatchList::new(batches).expect("sorted and non-empty")
    })
}

fn value() -> impl Strategy<Value = SlotValue> {
    prop_oneof![
        Just(SlotValue::Null),
        batch_list().prop_map(SlotValue::Batches)
    ]
}

fn bit() -> impl Strategy<Value = Bit> {
    prop_oneof![Just(Bit::Zero), Just(Bit::One)]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        batch().prop_map(|batch| Message::Forward { batch }),
        (slot(), batch_list()).prop_map(|(slot, value)| Message::Proposal { slot, value }),
        (
            slot(),
            phase(),
            bit(),
            proptest::option::of(batch_list().prop_map(|l| l.id().clone()))
        )
            .prop_map(|(slot, phase, bit, candidate)| Message::State {
                slot,
                phase,
                bit,
                candidate
            }),
        (
            slot(),
            phase(),
            prop_oneof![Just(VoteValue::Unknown), bit().prop_map(VoteValue::Bit)],
            proptest::option::of(batch_list().prop_map(|l| l.id().clone()))
        )
            .prop_map(|(slot, phase, vote, candidate)| Message::Vote {
                slot,
                phase,
                vote,
                candidate
            }),
        (slot(), value()).prop_map(|(slot, value)| Message::Decision { slot, value }),
        (
            slot(),
            proptest::option::of(batch_list().prop_map(|l| l.id().clone()))
        )
            .prop_map(|(slot, candidate)| Message::ProposalRequest { slot, candidate }),
        (slot(), batch_list()).prop_map(|(slot, value)| Message::ProposalReply { slot, value }),
        (slot(), batch_list()).prop_map(|(slot, value)| Message::Opening { slot, value }),
        (slot(), batch_list()).prop_map(|(slot, value)| Message::ProposalRef {
            slot,
            value: value.id().clone()
        }),
        slot().prop_map(|slot| Message::ProposalFetch { slot }),
        slot().prop_map(|from| Message::CatchUpRequest { from }),
        (
            proptest::collection::vec((slot(), value()), 0..4),
            slot(),
            proptest::option::of(slot())
        )
            .prop_map(|(decisions, responder_next, compacted_below)| {
                Message::CatchUpReply {
                    decisions,
                    responder_next,
                    compacted_below,
                }
            }),
        (slot(), any::<bool>(), any::<u64>()).prop_map(|(next_slot, learner, probe)| {
            Message::Heartbeat {
                next_slot,
                learner,
                probe,
            }
        }),
        Just(Message::SnapshotRequest),
        (
            slot(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(base_slot, offset, total, data)| Message::SnapshotChunk {
                base_slot,
                offset,
                total,
                data
            }),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Message(u64, u64, Message),
    Timeout(u64),
    Persisted(u64),
    Submit,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (prop_oneof![Just(2u64), Just(3), Just(9)], prop_oneof![Just(0u64), Just(1)], message())
            .prop_map(|(from, epoch, m)| Input::Message(from, epoch, m)),
        1 => (0u64..500).prop_map(Input::Timeout),
        2 => (0u64..8).prop_map(Input::Persisted),
        1 => Just(Input::Submit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn hostile_input_never_breaks_the_replica(inputs in proptest::collection::vec(input(), 1..80)) {
        let ids: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
        let cluster = ClusterConfig::try_new(ids[0], ids.clone()).unwrap();
        let mut replica =
            Replica::new(ReplicaConfig { announce_opening: true, ..ReplicaConfig::default() }, cluster, RecoveredState::fresh(0), Instant::ZERO, 1).unwrap();
        let mut now = Instant::ZERO;
        let mut issued = 0u64;
        let mut durable = 0u64;
        let mut next_delivery: Option<Slot> = None;
        let mut sent_records: Vec<(Message, u64)> = Vec::new();
        for input in inputs {
            match input {
                Input::Message(from, epoch, message) => {
                    let envelope = Envelope { sender: NodeId::from_u64(from), epoch: Epoch(epoch), message };
                    replica.handle_message(now, NodeId::from_u64(from), envelope);
                }
                Input::Timeout(ms) => {
                    now = now + Duration::from_millis(ms);
                    replica.handle_timeout(now);
                }
                Input::Persisted(back) => {
                    let token = issued.saturating_sub(back);
                    replica.handle_persisted(now, PersistToken(token));
                    durable = durable.max(token.min(issued));
                }
                Input::Submit => {
                    let _ = replica.submit(now, 1, vec![Operation::new(vec![7])]);
                }
            }
            while let Some(action) = replica.poll_action() {
                match action {
                    Action::Persist { token, record } => {
                        prop_assert_eq!(token.0, issued + 1, "tokens are consecutive");
                        issued = token.0;
                        if let rabia_core::protocol::PersistRecord::Sent { message, .. } = record {
                            sent_records.push((message, token.0));
                        }
                    }
                    Action::Deliver(delivery) => {
                        if let Some(expected) = next_delivery {
                            prop_assert_eq!(delivery.slot, expected, "deliveries are consecutive");
                        }
                        next_delivery = Some(delivery.slot.next());
                    }
                    Action::Broadcast { envelope } | Action::Send { envelope, .. } => {
                        // Own protocol messages leave only once every record
                        // issued before them is durable.
                        if matches!(envelope.message, Message::Proposal { .. } | Message::State { .. } | Message::Vote { .. }) {
                            let record = sent_records.iter().find(|(m, _)| *m == envelope.message);
                            let Some((_, token)) = record else {
                                return Err(TestCaseError::fail(format!("{:?} sent without a record", envelope.message)));
                            };
                            prop_assert!(*token <= durable, "{:?} left before its record was durable", envelope.message);
                        }
                        // A Proposal by reference names a recorded, durable
                        // Proposal of the same slot and value.
                        if let Message::ProposalRef { slot, value } = &envelope.message {
                            let record = sent_records.iter().find(|(m, _)| {
                                matches!(m, Message::Proposal { slot: s, value: v } if s == slot && v.id() == value)
                            });
                            let Some((_, token)) = record else {
                                return Err(TestCaseError::fail(format!("{:?} sent without a record", envelope.message)));
                            };
                            prop_assert!(*token <= durable, "{:?} left before its record was durable", envelope.message);
                        }
                        prop_assert_eq!(envelope.sender, ids[0]);
                    }
                    _ => {}
                }
            }
        }
    }
}

//! Step tests of the pure protocol core: build replicas, feed inputs with an
//! explicit `now`, and assert on the exact actions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rabia_core::protocol::{
    Action, Bit, Delivery, DeliveryOutcome, EmptyStore, Envelope, Message, PersistRecord,
    PersistToken, RecoveredState, Replica, ReplicaConfig, VoteValue,
};
use rabia_core::time::Instant;
use rabia_core::{ClusterConfig, Epoch, NodeId, Operation, Phase, Slot, SlotValue, SubmitError};
use std::collections::VecDeque;
use std::time::Duration;

fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId::from_u64).collect()
}

fn replica(me: u64, n: u64, recovered: RecoveredState) -> Replica {
    replica_with(ReplicaConfig::default(), me, n, recovered)
}

fn replica_with(config: ReplicaConfig, me: u64, n: u64, recovered: RecoveredState) -> Replica {
    let cluster = ClusterConfig::try_new(NodeId::from_u64(me), ids(n)).unwrap();
    Replica::new(config, cluster, recovered, Instant::ZERO, me).unwrap()
}

/// A replica whose store shows it has taken part from slot 0 on (not a
/// learner: see the fresh store guard tests at the end).
fn member() -> RecoveredState {
    RecoveredState {
        records: vec![PersistRecord::Learner {
            participate_from: Some(Slot::ZERO),
        }],
        ..RecoveredState::fresh(0)
    }
}

fn op(text: &str) -> Vec<Operation> {
    vec![Operation::new(text.as_bytes().to_vec())]
}

/// A tiny cluster harness: instant network, optional automatic persistence.
struct Net {
    ids: Vec<NodeId>,
    replicas: Vec<Replica>,
    inbox: VecDeque<(usize, usize, Envelope)>,
    delivered: Vec<Vec<Delivery>>,
    persisted: Vec<Vec<PersistRecord>>,
    unpersisted: Vec<Vec<PersistToken>>,
    auto_persist: bool,
    /// Links (from, to) that drop everything.
    cut: Vec<(usize, usize)>,
    now: Instant,
}

impl Net {
    fn new(n: u64) -> Net {
        Net::with_config(n, ReplicaConfig::default())
    }

    fn with_config(n: u64, config: ReplicaConfig) -> Net {
        Net {
            ids: ids(n),
            replicas: (1..=n)
                .map(|i| replica_with(config.clone(), i, n, member()))
                .collect(),
            inbox: VecDeque::new(),
            delivered: vec![Vec::new(); n as usize],
            persisted: vec![Vec::new(); n as usize],
            unpersisted: vec![Vec::new(); n as usize],
            auto_persist: true,
            cut: Vec::new(),
            now: Instant::ZERO,
        }
    }

    fn index(&self, id: NodeId) -> usize {
        self.ids.iter().position(|x| *x == id).unwrap()
    }

    /// Collects every ready action of replica `i`.
    fn collect(&mut self, i: usize) {
        while let Some(action) = self.replicas[i].poll_action() {
            match action {
                Action::Broadcast { envelope } => {
                    for j in 0..self.replicas.len() {
                        if j != i && !self.cut.contains(&(i, j)) {
                            self.inbox.push_back((j, i, envelope.clone()));
                        }
                    }
                }
                Action::Send { to, envelope } => {
                    let j = self.index(to);
                    if !self.cut.contains(&(i, j)) {
                        self.inbox.push_back((j, i, envelope));
                    }
                }
                Action::Persist { token, record } => {
                    self.persisted[i].push(record);
                    if self.auto_persist {
                        self.replicas[i].handle_persisted(self.now, token);
                    } else {
                        self.unpersisted[i].push(token);
                    }
                }
                Action::Deliver(d) => self.delivered[i].push(d),
                other => panic!("unexpected snapshot traffic: {other:?}"),
            }
        }
    }

    /// Routes messages until nothing moves.
    fn settle(&mut self) {
        self.route(|_, _| {});
    }

    /// Routes messages until nothing moves, calling `after_collect` after
    /// collecting each replica's actions; returns the kind of every message
    /// delivered, in order.
    fn route(&mut self, mut after_collect: impl FnMut(&mut Net, usize)) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        loop {
            for i in 0..self.replicas.len() {
                self.collect(i);
                after_collect(self, i);
            }
            let Some((to, from, envelope)) = self.inbox.pop_front() else {
                return kinds;
            };
            kinds.push(envelope.message.kind());
            let from_id = self.ids[from];
            self.replicas[to].handle_message(self.now, from_id, envelope);
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now = self.now + by;
        for i in 0..self.replicas.len() {
            self.replicas[i].handle_timeout(self.now);
        }
        self.settle();
    }

    /// The applied values of replica `i` (⊥ left out), comma-separated.
    fn applied_joined(&self, i: usize) -> String {
        let applied: Vec<String> = self.applied_batches(i).into_iter().flatten().collect();
        applied.join(",")
    }

    fn applied_batches(&self, i: usize) -> Vec<Option<String>> {
        self.delivered[i]
            .iter()
            .map(|d| match &d.outcome {
                DeliveryOutcome::Apply(batches) => Some(
                    batches
                        .iter()
                        .map(|b| String::from_utf8_lossy(&b.operations[0].data).into_owned())
                        .collect::<Vec<_>>()
                        .join("+"),
                ),
                DeliveryOutcome::Null => None,
                DeliveryOutcome::Duplicate(_) => Some("<dup>".into()),
            })
            .collect()
    }
}

#[test]
fn one_submission_takes_the_fast_path_everywhere() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.settle();
    for i in 0..3 {
        assert_eq!(
            net.applied_batches(i),
            vec![Some("x".to_string())],
            "replica {i}"
        );
        let m = net.replicas[i].metrics();
        assert_eq!(m.slots_decided, 1);
        assert_eq!(m.null_slots, 0);
    }
    // At least the two replicas that decided by protocol took one phase.
    let fast: u64 = (0..3)
        .map(|i| net.replicas[i].metrics().fast_path_slots)
        .sum();
    assert!(fast >= 2);
}

#[test]
fn split_proposals_forfeit_the_slot_then_decide_all_batches_in_key_order() {
    let mut net = Net::new(3);
    // Each replica proposes its own batch before hearing anyone else.
    for (i, text) in ["a", "b", "c"].iter().enumerate() {
        net.replicas[i]
            .submit(net.now, 100 + i as u64, op(text))
            .unwrap();
    }
    net.settle();
    for i in 0..3 {
        let applied = net.applied_batches(i);
        assert_eq!(applied[0], None, "slot 0 must be ⊥ (no majority)");
        let batches: Vec<_> = applied.iter().flatten().cloned().collect();
        // The next slot's proposals each carry every pending batch, so one
        // slot decides all three.
        assert_eq!(
            batches,
            vec!["a+b+c"],
            "every batch exactly once, in one slot, oldest key first"
        );
    }
    assert_eq!(net.applied_batches(0), net.applied_batches(1));
    assert_eq!(net.applied_batches(1), net.applied_batches(2));
}

#[test]
fn no_message_leaves_before_its_record_is_durable() {
    let mut net = Net::new(3);
    net.auto_persist = false;
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    net.collect(0);
    // The proposal is persisted but not yet broadcast.
    assert!(matches!(
        net.persisted[0].as_slice(),
        [PersistRecord::Sent {
            message: Message::Proposal { .. },
            ..
        }]
    ));
    assert!(net.inbox.is_empty(), "proposal left before it was durable");
    let token = net.unpersisted[0].pop().unwrap();
    net.replicas[0].handle_persisted(net.now, token);
    net.collect(0);
    assert_eq!(net.inbox.len(), 2, "released to both peers once durable");
    // A token never issued is refused, releasing nothing.
    net.replicas[0].handle_persisted(net.now, PersistToken(999));
    assert_eq!(net.replicas[0].metrics().dropped.invalid, 1);
}

#[test]
fn restart_resends_exactly_what_was_recorded() {
    let mut net = Net::new(3);
    net.cut = vec![(0, 1), (0, 2)];
    net.replicas[0].submit(net.now, 1, op("first")).unwrap();
    net.settle();
    let records = net.persisted[0].clone();
    assert!(matches!(
        records.as_slice(),
        [PersistRecord::Sent { slot: Slot(0), .. }]
    ));

    // Restart with a different, older batch arriving first: the replica
    // must still re-send its recorded proposal, not propose the new head.
    let mut restarted = replica(
        1,
        3,
        RecoveredState {
            incarnation: 1,
            records,
            ..RecoveredState::default()
        },
    );
    let mut proposals = Vec::new();
    while let Some(action) = restarted.poll_action() {
        if let Action::Broadcast {
            envelope:
                Envelope {
                    message: Message::Proposal { value, .. },
                    ..
                },
        } = action
        {
            proposals
                .push(String::from_utf8_lossy(&value.batches()[0].operations[0].data).into_owned());
        }
    }
    assert_eq!(proposals, vec!["first"]);
    restarted.submit(Instant::ZERO, 0, op("older")).unwrap();
    while let Some(action) = restarted.poll_action() {
        if let Action::Broadcast {
            envelope:
                Envelope {
                    message: Message::Proposal { slot, .. },
                    ..
                },
        } = action
        {
            panic!("second proposal for {slot}");
        }
    }
    // New batches get identities of the new incarnation.
    assert_eq!(restarted.incarnation(), 1);
}

#[test]
fn recovered_decisions_are_redelivered_in_order() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    net.settle();
    net.replicas[1].submit(net.now, 2, op("y")).unwrap();
    net.settle();
    let records = net.persisted[2].clone();
    let mut restarted = replica(
        3,
        3,
        RecoveredState {
            incarnation: 1,
            records,
            ..RecoveredState::default()
        },
    );
    let mut slots = Vec::new();
    while let Some(action) = restarted.poll_action() {
        if let Action::Deliver(d) = action {
            slots.push(d.slot);
        }
    }
    assert_eq!(slots, vec![Slot(0), Slot(1)]);
    assert_eq!(restarted.next_slot(), Slot(2));
}

/// A decided value that is the replica's own recorded Proposal is recorded
/// by its identity only (`DecidedAsProposed`), and a restart takes the
/// payload from the Proposal record: the same operations are delivered.
#[test]
fn a_decision_of_the_own_proposal_is_recorded_once_and_replayed() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    net.settle();
    let records = net.persisted[0].clone();
    assert!(
        records
            .iter()
            .any(|r| matches!(r, PersistRecord::DecidedAsProposed { slot: Slot(0), .. })),
        "{records:?}"
    );
    assert!(!records
        .iter()
        .any(|r| matches!(r, PersistRecord::Decided { .. })));
    let mut restarted = replica(
        1,
        3,
        RecoveredState {
            incarnation: 1,
            records: records.clone(),
            ..RecoveredState::default()
        },
    );
    let mut applied = Vec::new();
    while let Some(action) = restarted.poll_action() {
        if let Action::Deliver(Delivery {
            slot,
            outcome: DeliveryOutcome::Apply(batches),
            ..
        }) = action
        {
            applied.push((slot, batches[0].operations[0].data.clone()));
        }
    }
    assert_eq!(applied, vec![(Slot(0), b"x".to_vec())]);
    assert_eq!(restarted.next_slot(), Slot(1));
    // Without the Proposal record the slot is not replayed (it is learned
    // again from the peers), never replayed wrongly.
    let without: Vec<PersistRecord> = records
        .into_iter()
        .filter(|r| {
            !matches!(
                r,
                PersistRecord::Sent {
                    message: Message::Proposal { .. },
                    ..
                }
            )
        })
        .collect();
    let again = replica(
        1,
        3,
        RecoveredState {
            incarnation: 2,
            records: without,
            ..RecoveredState::default()
        },
    );
    assert_eq!(again.next_slot(), Slot(0));
}

#[test]
fn stale_messages_are_answered_with_the_decision() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    net.settle();
    // A peer still asking about slot 0 a while later gets the decision.
    net.now = net.now + Duration::from_secs(1);
    let stale = Envelope {
        sender: net.ids[1],
        epoch: Epoch(0),
        message: Message::Vote {
            slot: Slot(0),
            phase: Phase(1),
            vote: VoteValue::Bit(Bit::One),
            candidate: None,
        },
    };
    net.replicas[0].handle_message(net.now, net.ids[1], stale);
    let reply = net.replicas[0].poll_action();
    assert!(
        matches!(
            &reply,
            Some(Action::Send { to, envelope: Envelope { message: Message::Decision { slot: Slot(0), value: SlotValue::Batches(_) }, .. } })
                if *to == net.ids[1]
        ),
        "{reply:?}"
    );
}

#[test]
fn invalid_input_is_dropped_and_counted() {
    let mut r = replica(1, 3, member());
    let from = NodeId::from_u64(2);
    let state = |phase| Message::State {
        slot: Slot(0),
        phase: Phase(phase),
        bit: Bit::Zero,
        candidate: None,
    };
    let env = |sender: u64, epoch: u64, message: Message| Envelope {
        sender: NodeId::from_u64(sender),
        epoch: Epoch(epoch),
        message,
    };
    r.handle_message(Instant::ZERO, from, env(2, 1, state(1))); // wrong epoch
    r.handle_message(Instant::ZERO, from, env(3, 0, state(1))); // sender mismatch
    r.handle_message(Instant::ZERO, NodeId::from_u64(9), env(9, 0, state(1))); // not a member
    r.handle_message(Instant::ZERO, from, env(2, 0, state(0))); // phase 0 state
    r.handle_message(Instant::ZERO, from, env(2, 0, state(10_000))); // beyond phase window
    r.handle_message(
        Instant::ZERO,
        from,
        env(
            2,
            0,
            Message::State {
                slot: Slot(1_000_000),
                phase: Phase(1),
                bit: Bit::One,
                candidate: None,
            },
        ),
    ); // beyond slot window
    let d = r.metrics().dropped;
    assert_eq!(d.wrong_epoch, 1);
    assert_eq!(d.unknown_sender, 2);
    assert_eq!(d.invalid, 1);
    assert_eq!(d.out_of_window, 2);
    // Nothing was sent in response to garbage.
    assert!(r.poll_action().is_none());
}

#[test]
fn overload_hands_the_operations_back() {
    let cluster = ClusterConfig::try_new(NodeId::from_u64(1), ids(3)).unwrap();
    let config = ReplicaConfig {
        pending_batches_max: 4,
        batch_operations_max: 2,
        ..ReplicaConfig::default()
    };
    let mut r = Replica::new(config, cluster, member(), Instant::ZERO, 1).unwrap();
    // A quarter of the queue is reserved for peers' batches.
    r.submit(Instant::ZERO, 1, op("a")).unwrap();
    r.submit(Instant::ZERO, 2, op("b")).unwrap();
    r.submit(Instant::ZERO, 3, op("c")).unwrap();
    match r.submit(Instant::ZERO, 4, op("d")) {
        Err(SubmitError::Overloaded {
            operations,
            capacity,
        }) => {
            assert_eq!(capacity, 3);
            assert_eq!(operations, op("d"));
        }
        other => panic!("expected overload, got {other:?}"),
    }
    let too_many = vec![Operation::new(vec![1]); 3];
    assert!(matches!(
        r.submit(Instant::ZERO, 4, too_many.clone()),
        Err(SubmitError::InvalidBatch { operations, .. }) if operations == too_many
    ));
    assert!(matches!(
        r.submit(Instant::ZERO, 5, vec![]),
        Err(SubmitError::InvalidBatch { .. })
    ));
}

#[test]
fn future_slot_messages_wait_for_their_slot() {
    // Replica 3 misses slot 0 entirely, then learns it from a decision.
    let mut net = Net::new(3);
    net.cut = vec![(0, 2), (1, 2)];
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    net.settle();
    assert!(net.delivered[2].is_empty());
    net.cut.clear();
    net.replicas[1].submit(net.now, 2, op("y")).unwrap();
    net.settle();
    // Replica 3 buffered slot-1 traffic; it catches up through the timer.
    for _ in 0..5 {
        net.tick(Duration::from_millis(250));
    }
    assert_eq!(net.applied_batches(2), net.applied_batches(0));
    assert_eq!(
        net.applied_batches(2),
        vec![Some("x".into()), Some("y".into())]
    );
}

#[test]
fn a_lagging_replica_catches_up_from_its_peers() {
    let mut net = Net::new(3);
    net.cut = vec![(0, 2), (1, 2), (2, 0), (2, 1)];
    for k in 0..20u64 {
        net.replicas[(k % 2) as usize]
            .submit(net.now, k, op(&format!("op{k}")))
            .unwrap();
        net.settle();
    }
    assert_eq!(net.delivered[0].len(), 20);
    assert!(net.delivered[2].is_empty());
    net.cut.clear();
    for _ in 0..10 {
        net.tick(Duration::from_millis(250));
    }
    assert_eq!(net.applied_batches(2), net.applied_batches(0));
    assert!(net.replicas[2].metrics().catch_up_requests >= 1);
}

#[test]
fn orphan_batch_is_adopted_from_a_proposal() {
    // Replica 1's batch reaches only replica 2 (as a proposal); replica 3
    // never sees the Forward. Replica 2 adopts it and the cluster decides it.
    let mut net = Net::new(3);
    net.cut = vec![(0, 2)];
    net.replicas[0].submit(net.now, 1, op("orphan")).unwrap();
    net.settle();
    for i in 0..3 {
        assert_eq!(
            net.applied_batches(i),
            vec![Some("orphan".into())],
            "replica {i}"
        );
    }
}

#[test]
fn coin_is_common_across_replicas() {
    use rabia_core::protocol::coin::common_coin;
    let a = ClusterConfig::try_new(NodeId::from_u64(1), ids(5)).unwrap();
    let b = ClusterConfig::try_new(NodeId::from_u64(4), ids(5)).unwrap();
    for slot in 0..50 {
        for phase in 1..10 {
            assert_eq!(
                common_coin(a.effective_coin_seed(), a.epoch, Slot(slot), Phase(phase)),
                common_coin(b.effective_coin_seed(), b.epoch, Slot(slot), Phase(phase))
            );
        }
    }
}

#[test]
fn a_peer_batch_above_this_nodes_own_limits_is_accepted() {
    // This node creates batches of at most 2 operations; a peer configured
    // with a larger limit sends one of 5. Replicas must agree on which
    // batches exist whatever their own limits, or this one could never
    // accept a decided value and would stall.
    let cluster = ClusterConfig::try_new(NodeId::from_u64(1), ids(3)).unwrap();
    let config = ReplicaConfig {
        batch_operations_max: 2,
        ..ReplicaConfig::default()
    };
    let mut r = Replica::new(config, cluster, member(), Instant::ZERO, 1).unwrap();
    let peer = NodeId::from_u64(2);
    let batch = std::sync::Arc::new(rabia_core::Batch {
        id: rabia_core::BatchId {
            origin: peer,
            incarnation: 0,
            seq: 0,
        },
        timestamp: 1,
        operations: vec![Operation::new(vec![7]); 5],
    });
    r.handle_message(
        Instant::ZERO,
        peer,
        Envelope {
            sender: peer,
            epoch: Epoch(0),
            message: Message::Forward { batch },
        },
    );
    assert_eq!(r.metrics().dropped.invalid, 0, "not refused as invalid");
    assert_eq!(r.metrics().pending_batches, 1, "queued for a slot");
    // Its own submissions still obey its own limit.
    assert!(matches!(
        r.submit(Instant::ZERO, 2, vec![Operation::new(vec![1]); 3]),
        Err(SubmitError::InvalidBatch { .. })
    ));
}

#[test]
fn decided_values_kept_for_laggards_are_bounded_in_bytes() {
    let config = ReplicaConfig {
        slot_window: 4,
        decided_retention_bytes: 1 << 20,
        ..ReplicaConfig::default()
    };
    let mut net = Net::with_config(3, config);
    let big = 64 << 10;
    for i in 0..40u8 {
        let ops = vec![Operation::new(vec![i; big])];
        net.replicas[0]
            .submit(net.now, 10 + u64::from(i), ops)
            .unwrap();
        net.settle();
    }
    let replica = &net.replicas[1];
    assert_eq!(replica.next_slot(), Slot(40));
    let kept: Vec<u64> = (0..40)
        .filter(|s| replica.decided_value(Slot(*s)).is_some())
        .collect();
    // Each value is a little over 64 KiB: 15 fit in 1 MiB, the newest ones.
    assert_eq!(kept, (25..40).collect::<Vec<u64>>());
    // The count bound still applies, and the last `slot_window` stay
    // whatever their size.
    let config = ReplicaConfig {
        slot_window: 4,
        decided_retention_bytes: 1,
        ..ReplicaConfig::default()
    };
    let mut net = Net::with_config(3, config);
    for i in 0..10u8 {
        let ops = vec![Operation::new(vec![i; big])];
        net.replicas[0]
            .submit(net.now, 10 + u64::from(i), ops)
            .unwrap();
        net.settle();
    }
    let kept = (0..10)
        .filter(|s| net.replicas[1].decided_value(Slot(*s)).is_some())
        .count();
    assert_eq!(kept, 4);
}

/// The fresh store guard: a replica back with an empty store under a used
/// id sends no Proposal, State or Vote for any slot its forgotten
/// predecessor may have spoken in (up to one past the furthest first
/// undecided slot its peers report), learns those slots from its peers,
/// and then takes part again.
#[test]
fn a_replica_back_with_an_empty_store_learns_before_it_takes_part() {
    let mut net = Net::new(3);
    for i in 0..3 {
        net.replicas[i % 3]
            .submit(net.now, 10 + i as u64, op(&format!("a{i}")))
            .unwrap();
        net.settle();
    }
    assert_eq!(net.replicas[2].next_slot(), Slot(3));
    assert!(!net.replicas[2].is_learner());
    // Replica 3 loses its store and comes back under the same id.
    let rejoin = ReplicaConfig {
        empty_store: EmptyStore::Rejoin,
        ..ReplicaConfig::default()
    };
    net.replicas[2] = replica_with(rejoin, 3, 3, RecoveredState::fresh(7));
    net.persisted[2].clear();
    net.delivered[2].clear();
    assert!(net.replicas[2].is_learner());
    net.settle();
    // It heard where the others are: it takes part from 3 + 2 on.
    assert_eq!(net.replicas[2].participate_from(), Some(Slot(5)));
    // Its own submission is forwarded, not proposed, while it learns.
    net.replicas[2].submit(net.now, 50, op("b0")).unwrap();
    net.settle();
    for i in 1..4 {
        net.replicas[i % 2]
            .submit(net.now, 60 + i as u64, op(&format!("b{i}")))
            .unwrap();
        net.settle();
        net.tick(Duration::from_millis(250));
    }
    net.tick(Duration::from_millis(250));
    assert!(!net.replicas[2].is_learner());
    assert!(net.replicas[2].next_slot() >= Slot(7));
    let sent: Vec<Slot> = net.persisted[2]
        .iter()
        .filter_map(|r| match r {
            PersistRecord::Sent { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    assert!(!sent.is_empty(), "it takes part again");
    assert!(
        sent.iter().all(|slot| *slot >= Slot(5)),
        "sent for a slot its predecessor may have used: {sent:?}"
    );
    // It learned every slot, the first five without taking part.
    let first = net.applied_batches(0);
    let mine = net.applied_batches(2);
    assert_eq!(&first[..mine.len()], &mine[..]);
    assert!(mine.len() >= 7);
    // Its first record made it a learner across restarts.
    assert_eq!(
        net.persisted[2].first(),
        Some(&PersistRecord::Learner {
            participate_from: None
        })
    );
}

/// A learner that restarts before it resolved stays a learner, though its
/// store is no longer empty.
#[test]
fn a_learner_that_restarts_stays_a_learner() {
    let recovered = RecoveredState {
        records: vec![PersistRecord::Learner {
            participate_from: None,
        }],
        ..RecoveredState::fresh(3)
    };
    let alone = replica(1, 3, recovered);
    assert!(alone.is_learner());
    assert_eq!(alone.participate_from(), None);
}

/// A brand-new cluster of empty stores (the default, `Bootstrap`) takes
/// part at once; started as replacements (`Rejoin`) they would wait for
/// participating peers that do not exist, which is why rejoining is an
/// explicit choice.
#[test]
fn empty_stores_bootstrap_by_default_and_wait_when_rejoining() {
    let mut net = Net::new(3);
    for i in 0..3 {
        net.replicas[i] = replica(i as u64 + 1, 3, RecoveredState::fresh(1));
    }
    assert!(!net.replicas.iter().any(Replica::is_learner));
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.settle();
    for i in 0..3 {
        assert_eq!(net.applied_batches(i), vec![Some("x".to_string())]);
    }
    let rejoin = ReplicaConfig {
        empty_store: EmptyStore::Rejoin,
        ..ReplicaConfig::default()
    };
    let mut net = Net::new(3);
    for i in 0..3 {
        net.replicas[i] = replica_with(rejoin.clone(), i as u64 + 1, 3, RecoveredState::fresh(1));
    }
    net.replicas[0].submit(net.now, 10, op("y")).unwrap();
    net.settle();
    net.tick(Duration::from_secs(1));
    assert!(net.replicas.iter().all(Replica::is_learner));
    assert!(net.applied_batches(0).is_empty());
}

/// A learner counts only answers to its own probe: a heartbeat that may
/// predate the loss (no probe, or another start's) proves nothing.
#[test]
fn a_learner_counts_only_answers_to_its_probe() {
    let rejoin = ReplicaConfig {
        empty_store: EmptyStore::Rejoin,
        ..ReplicaConfig::default()
    };
    let mut learner = replica_with(rejoin.clone(), 1, 3, RecoveredState::fresh(1));
    for (peer, probe) in [(2, 0), (3, 0), (2, 12345), (3, 12345)] {
        let from = NodeId::from_u64(peer);
        let envelope = Envelope {
            sender: from,
            epoch: Epoch(0),
            message: Message::Heartbeat {
                next_slot: Slot(100),
                learner: false,
                probe,
            },
        };
        learner.handle_message(Instant::ZERO, from, envelope);
    }
    assert_eq!(learner.participate_from(), None);
    // A cluster of two cannot let a learner catch up: refused.
    let cluster = ClusterConfig::try_new(NodeId::from_u64(1), ids(2)).unwrap();
    assert!(Replica::new(rejoin, cluster, RecoveredState::fresh(1), Instant::ZERO, 1).is_err());
}

// ------------------------------------------------- multi-batch values, opener

/// The slots replica `i` sent (recorded) a Proposal for.
fn proposed_slots(net: &Net, i: usize) -> Vec<Slot> {
    net.persisted[i]
        .iter()
        .filter_map(|r| match r {
            PersistRecord::Sent {
                slot,
                message: Message::Proposal { .. },
            } => Some(*slot),
            _ => None,
        })
        .collect()
}

/// After a decision, the origin of the value's last batch opens the next
/// slot; a replica that is not the opener forwards its batch and waits for
/// the opener's proposal instead of proposing its own at once, so the slot
/// does not split into different proposals.
#[test]
fn the_last_origin_opens_the_next_slot_and_the_others_join_it() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 10, op("a")).unwrap();
    net.settle();
    // Slot 0 decided [a]: replica 0 opens slot 1. Replicas 1 and 2 submit
    // at the same moment, before either hears anything.
    net.replicas[1].submit(net.now, 20, op("b")).unwrap();
    net.replicas[2].submit(net.now, 21, op("c")).unwrap();
    net.collect(1);
    net.collect(2);
    assert!(
        !proposed_slots(&net, 1).contains(&Slot(1)),
        "1 waits for the opener"
    );
    assert!(
        !proposed_slots(&net, 2).contains(&Slot(1)),
        "2 waits for the opener"
    );
    net.settle();
    for i in 0..3 {
        let m = net.replicas[i].metrics();
        assert_eq!(m.null_slots, 0, "replica {i}: no slot split");
        assert_eq!(net.applied_joined(i), "a,b,c", "replica {i}");
    }
    assert!(
        proposed_slots(&net, 0).contains(&Slot(1)),
        "0 opened slot 1"
    );
}

/// The same start without the hint (`opener_wait` zero): both propose their
/// own batch at once and the slot decides ⊥ before all batches go through.
#[test]
fn without_the_opener_hint_simultaneous_openers_forfeit_the_slot() {
    let config = ReplicaConfig {
        opener_wait: Duration::ZERO,
        ..ReplicaConfig::default()
    };
    let mut net = Net::with_config(3, config);
    net.replicas[0].submit(net.now, 10, op("a")).unwrap();
    net.settle();
    net.replicas[1].submit(net.now, 20, op("b")).unwrap();
    net.replicas[2].submit(net.now, 21, op("c")).unwrap();
    net.settle();
    for i in 0..3 {
        assert_eq!(net.replicas[i].metrics().null_slots, 1, "replica {i}");
        assert_eq!(net.applied_joined(i), "a,b+c", "replica {i}");
    }
}

/// An opener that is gone delays the others by `opener_wait` at most: then
/// a replica proposes what it has and the rest join it.
#[test]
fn a_silent_opener_costs_one_opener_wait() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 10, op("a")).unwrap();
    net.settle();
    // Replica 0 (the opener of slot 1) falls silent.
    for j in 1..3 {
        net.cut.push((0, j));
        net.cut.push((j, 0));
    }
    net.replicas[1].submit(net.now, 20, op("b")).unwrap();
    net.settle();
    assert!(!proposed_slots(&net, 1).contains(&Slot(1)), "still waiting");
    let wait = ReplicaConfig::default().opener_wait;
    assert!(net.replicas[1].poll_timeout().unwrap() <= net.now + wait);
    net.tick(wait);
    for i in 1..3 {
        assert_eq!(net.applied_joined(i), "a,b", "replica {i}");
        assert_eq!(net.replicas[i].metrics().null_slots, 0);
    }
}

/// With `hold_opening_after_decision`, a replica does not open the next slot
/// with its own queue until released, but joins a slot a peer opened.
#[test]
fn a_held_replica_joins_a_peer_value_and_opens_only_when_released() {
    let config = ReplicaConfig {
        hold_opening_after_decision: true,
        ..ReplicaConfig::default()
    };
    let mut net = Net::with_config(3, config);
    net.replicas[0].submit(net.now, 10, op("a")).unwrap();
    net.settle();
    assert!((0..3).all(|i| net.replicas[i].opening_held()));
    // Replica 1's batch reaches the opener (0), which holds.
    net.replicas[1].submit(net.now, 20, op("b")).unwrap();
    net.settle();
    assert!(
        !proposed_slots(&net, 0).contains(&Slot(1)),
        "the held opener waits"
    );
    assert!(net.replicas[0].opening_held());
    let now = net.now;
    net.replicas[0].hold_opening(now, false);
    net.settle();
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "a,b", "replica {i}");
    }
    // Held again after slot 1; replica 2 submits and, not the opener and
    // not hearing from it (cut), proposes after opener_wait: the held
    // opener joins that value rather than holding everyone up.
    net.cut.push((2, 0));
    net.replicas[2].submit(net.now, 30, op("c")).unwrap();
    net.settle();
    net.cut.clear();
    net.tick(ReplicaConfig::default().opener_wait);
    assert!(net.replicas[0].opening_held(), "joining does not release");
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "a,b,c", "replica {i}");
    }
}

/// A replica whose `Forward` was lost, and which keeps joining the values a
/// busy opener proposes, forwards its batch again a retransmit interval
/// later, so the batch does not wait for as long as the opener stays busy.
#[test]
fn a_batch_whose_forward_was_lost_is_forwarded_again() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 10, op("a")).unwrap();
    net.settle();
    // Replica 1's Forward is lost on both links.
    net.cut.push((1, 0));
    net.cut.push((1, 2));
    net.replicas[1].submit(net.now, 20, op("lost")).unwrap();
    net.settle();
    net.cut.clear();
    // Replica 0 stays busy: it opens a slot every 5 ms, well within
    // replica 1's opener_wait, and replica 1 joins each one.
    let mut seq = 0u64;
    while seq < 100 {
        seq += 1;
        net.replicas[0]
            .submit(net.now, 100 + seq, op(&format!("x{seq}")))
            .unwrap();
        net.settle();
        net.tick(Duration::from_millis(5));
        if net
            .applied_batches(0)
            .iter()
            .flatten()
            .any(|b| b.contains("lost"))
        {
            break;
        }
    }
    for i in 0..3 {
        let applied: Vec<String> = net.applied_batches(i).into_iter().flatten().collect();
        assert!(
            applied.iter().any(|b| b.contains("lost")),
            "replica {i}: {applied:?}"
        );
    }
    assert!(net.replicas[1].metrics().reforwards >= 1);
    // Within two checks of the retransmit interval (jittered), not later.
    assert!(seq * 5 <= 3 * 200 + 50, "took {seq} rounds of 5 ms");
}

/// Sets up, with the hold on, a decided slot 1 whose value holds batches of
/// replicas 1 and 0 (0's last, so 0 opens slot 2) and took `slot_time`
/// from 0's proposal to its decision; every replica is released again.
fn slot_with_two_contributors(slot_time: Duration) -> Net {
    let config = ReplicaConfig {
        hold_opening_after_decision: true,
        ..ReplicaConfig::default()
    };
    let mut net = Net::with_config(3, config);
    net.replicas[0].submit(net.now, 10, op("a")).unwrap();
    net.settle();
    release_all(&mut net);
    // Replica 1's batch reaches the (held) opener 0, which then adds its own.
    let now = net.now;
    net.replicas[0].hold_opening(now, true);
    net.replicas[1].submit(net.now, 20, op("b")).unwrap();
    net.settle();
    net.replicas[0].submit(net.now, 30, op("a2")).unwrap();
    net.replicas[0].hold_opening(now, false);
    net.collect(0);
    net.now = net.now + slot_time;
    net.settle();
    release_all(&mut net);
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "a,b+a2", "replica {i}");
    }
    net
}

fn release_all(net: &mut Net) {
    let now = net.now;
    for i in 0..net.replicas.len() {
        net.replicas[i].hold_opening(now, false);
    }
}

/// The opener of a slot waits for the next batch of a replica whose batch
/// was in the previous value, and opens as soon as it arrives: the slot
/// carries both replicas' new batches instead of only the opener's.
#[test]
fn the_opener_waits_for_the_previous_contributors_batch() {
    let mut net = slot_with_two_contributors(Duration::from_millis(2));
    // Replica 1's next batch is on its way (not delivered yet) when the
    // opener's own client submits.
    net.replicas[1].submit(net.now, 40, op("c")).unwrap();
    net.collect(1);
    net.replicas[0].submit(net.now, 50, op("d")).unwrap();
    net.collect(0);
    assert!(
        !proposed_slots(&net, 0).contains(&Slot(2)),
        "the opener waits for replica 1"
    );
    net.settle();
    assert!(proposed_slots(&net, 0).contains(&Slot(2)));
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "a,b+a2,c+d", "replica {i}");
        assert_eq!(net.replicas[i].metrics().null_slots, 0, "replica {i}");
    }
}

/// A contributor with nothing more to send costs the opener at most
/// `contributor_wait` (here less than half the previous slot's 2 ms).
#[test]
fn a_silent_contributor_costs_at_most_one_contributor_wait() {
    let mut net = slot_with_two_contributors(Duration::from_millis(2));
    net.replicas[0].submit(net.now, 50, op("d")).unwrap();
    net.settle();
    assert!(!proposed_slots(&net, 0).contains(&Slot(2)), "waiting");
    let wait = ReplicaConfig::default().contributor_wait;
    assert!(wait < Duration::from_millis(1));
    net.tick(wait / 2);
    assert!(!proposed_slots(&net, 0).contains(&Slot(2)), "still waiting");
    assert!(net.replicas[0]
        .poll_timeout()
        .is_some_and(|t| t <= net.now + wait / 2));
    net.tick(wait / 2);
    assert!(proposed_slots(&net, 0).contains(&Slot(2)), "opened alone");
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "a,b+a2,d", "replica {i}");
    }
}

/// Where slots are fast, the wait is at most half the previous slot's time:
/// with slots decided in no time at all, the opener does not wait.
#[test]
fn the_contributor_wait_never_exceeds_half_a_slot() {
    let mut net = slot_with_two_contributors(Duration::ZERO);
    // Slot 1 (b+a2) took no time: replica 0 opens slot 2 at once.
    net.replicas[0].submit(net.now, 50, op("d")).unwrap();
    net.collect(0);
    assert!(proposed_slots(&net, 0).contains(&Slot(2)));
}

// ------------------------------------------------------ the unanimity shortcut

impl Net {
    /// Hands replica `to` every queued message addressed to it (others stay
    /// queued), in order.
    fn deliver_to(&mut self, to: usize) {
        self.deliver_matching(to, |_| true);
    }

    /// Hands replica `to` the queued messages from replica `from` only.
    fn deliver_from(&mut self, from: usize, to: usize) {
        self.deliver_matching(to, |f| f == from);
    }

    /// Hands replica `to` the queued messages addressed to it whose sender
    /// `from` accepts, in order; the rest stay queued.
    fn deliver_matching(&mut self, to: usize, from: impl Fn(usize) -> bool) {
        let (mine, rest): (VecDeque<_>, VecDeque<_>) = self
            .inbox
            .drain(..)
            .partition(|(j, f, _)| *j == to && from(*f));
        self.inbox = rest;
        for (_, sender, envelope) in mine {
            let sender_id = self.ids[sender];
            self.replicas[to].handle_message(self.now, sender_id, envelope);
        }
        self.collect(to);
    }

    /// Reports replica `i`'s records durable up to its `nth` unpersisted
    /// token (1-based), keeping the later ones pending.
    fn persist_first(&mut self, i: usize, nth: usize) {
        let token = self.unpersisted[i][nth - 1];
        self.unpersisted[i].drain(..nth);
        self.replicas[i].handle_persisted(self.now, token);
        self.collect(i);
    }
}

/// Every replica proposes the opener's value, so each decides as soon as it
/// holds all three proposals: no replica needs a Vote.
#[test]
fn a_slot_every_member_proposed_alike_decides_on_the_proposals() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.settle();
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "x", "replica {i}");
        let m = net.replicas[i].metrics();
        assert_eq!(m.unanimous_slots, 1, "replica {i}");
        assert_eq!((m.fast_path_slots, m.phases_total), (1, 1), "replica {i}");
    }
    // The followers sent their State with their copy of the proposal and
    // decided before any Vote: only the opener, which had two proposals
    // (and so a State, and two States, so a Vote) before the third, voted.
    for i in 1..3 {
        assert!(
            !net.persisted[i].iter().any(|r| matches!(
                r,
                PersistRecord::Sent {
                    message: Message::Vote { .. },
                    ..
                }
            )),
            "replica {i} voted"
        );
    }
}

/// A unanimous decision is delivered once this replica's own Proposal is
/// durable, without waiting for a State or Vote it issued after it.
#[test]
fn a_unanimous_decision_waits_only_for_the_own_proposal() {
    let mut net = Net::new(3);
    net.auto_persist = false;
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.collect(0);
    net.persist_first(0, 1); // the opener's Proposal: broadcast
    net.deliver_to(1);
    net.deliver_to(2);
    // Each follower copied it: its Proposal and State, one group each.
    for i in 1..3 {
        assert_eq!(net.unpersisted[i].len(), 2, "replica {i}");
        net.persist_first(i, 2);
    }
    // The opener hears both: a State (after two proposals), a Vote (after
    // two States) and then the third proposal.
    net.deliver_to(0);
    assert!(
        !net.unpersisted[0].is_empty(),
        "the opener's State is not durable yet"
    );
    assert_eq!(net.applied_joined(0), "x", "delivered all the same");
    assert_eq!(net.replicas[0].metrics().unanimous_slots, 1);
}

/// A replica that holds all the proposals before its own is durable
/// delivers once its own is: its copy counts only once it could have
/// been sent.
#[test]
fn a_unanimous_decision_waits_for_the_own_proposal_record() {
    let mut net = Net::new(3);
    net.auto_persist = false;
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.collect(0);
    net.persist_first(0, 1);
    net.deliver_to(1);
    net.deliver_to(2);
    net.persist_first(2, 2); // replica 2's copy leaves; replica 1's does not
    net.deliver_to(1);
    assert_eq!(net.replicas[1].metrics().unanimous_slots, 1, "decided");
    assert!(net.delivered[1].is_empty(), "own Proposal not durable yet");
    net.persist_first(1, 1); // its Proposal, not yet its State
    assert_eq!(net.applied_joined(1), "x");
}

/// With one member silent there is no unanimity: the slot decides through
/// States and Votes, as before.
#[test]
fn without_every_member_the_slot_decides_through_the_rounds() {
    let mut net = Net::new(3);
    net.cut = vec![(2, 0), (2, 1), (0, 2), (1, 2)];
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.settle();
    for i in 0..2 {
        assert_eq!(net.applied_joined(i), "x", "replica {i}");
        let m = net.replicas[i].metrics();
        assert_eq!(
            (m.unanimous_slots, m.fast_path_slots),
            (0, 1),
            "replica {i}"
        );
    }
}

/// A first slot, opened by replica 0, that took 2 ms and was unanimous at
/// every replica.
fn after_a_unanimous_slot() -> Net {
    after_a_unanimous_slot_with(ReplicaConfig::default())
}

fn after_a_unanimous_slot_with(config: ReplicaConfig) -> Net {
    let mut net = Net::with_config(3, config);
    net.replicas[0].submit(net.now, 10, op("a")).unwrap();
    net.collect(0);
    net.now = net.now + Duration::from_millis(2);
    net.settle();
    for i in 0..3 {
        assert_eq!(net.replicas[i].metrics().unanimous_slots, 1, "replica {i}");
    }
    net
}

fn rounds_sent(net: &Net, i: usize, slot: Slot) -> usize {
    net.persisted[i]
        .iter()
        .filter(|r| {
            matches!(r, PersistRecord::Sent { slot: s, message: Message::State { .. } | Message::Vote { .. } } if *s == slot)
        })
        .count()
}

/// After a unanimous slot, an opener whose Proposal is durable waits for
/// the last proposal instead of sending a State on the first two: it
/// arrives, agrees, and the slot decides without the opener's State or
/// Vote (whose records would have cost it a disk sync).
#[test]
fn the_opener_waits_for_the_last_proposal_instead_of_voting() {
    let mut net = after_a_unanimous_slot();
    net.replicas[0].submit(net.now, 50, op("b")).unwrap();
    net.collect(0);
    net.deliver_to(1); // replica 1 copies: Proposal and State to 0 and 2
    net.deliver_to(0);
    assert_eq!(rounds_sent(&net, 0, Slot(1)), 0, "the opener waits");
    assert!(net.delivered[0].len() == 1, "not decided yet");
    net.deliver_to(2);
    net.deliver_to(0);
    net.settle();
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "a,b", "replica {i}");
        assert_eq!(net.replicas[i].metrics().unanimous_slots, 2, "replica {i}");
    }
    assert_eq!(rounds_sent(&net, 0, Slot(1)), 0, "no State or Vote needed");
}

/// With a member gone silent the wait costs one `unanimity_wait`, once: the
/// slot then decides through the rounds, and the next slot does not wait.
#[test]
fn a_silent_member_costs_the_opener_one_unanimity_wait() {
    let mut net = after_a_unanimous_slot();
    net.cut = vec![(2, 0), (2, 1), (0, 2), (1, 2)];
    net.replicas[0].submit(net.now, 50, op("b")).unwrap();
    net.settle();
    assert_eq!(net.applied_joined(0), "a", "waiting for replica 2");
    let wait = ReplicaConfig::default().unanimity_wait;
    assert!(wait > Duration::ZERO && wait < Duration::from_millis(1));
    assert!(net.replicas[0]
        .poll_timeout()
        .is_some_and(|t| t <= net.now + wait));
    net.tick(wait);
    for i in 0..2 {
        assert_eq!(net.applied_joined(i), "a,b", "replica {i}");
    }
    assert!(rounds_sent(&net, 0, Slot(1)) > 0);
    // Slot 1 was not unanimous: slot 2 goes through the rounds at once.
    net.replicas[0].submit(net.now, 60, op("c")).unwrap();
    net.settle();
    for i in 0..2 {
        assert_eq!(net.applied_joined(i), "a,b,c", "replica {i}");
    }
}

/// A proposal that disagrees ends the wait for unanimity at once, and
/// leaves no deadline behind (one in the past would wake the driver again
/// and again, for ever).
#[test]
fn a_disagreeing_proposal_ends_the_unanimity_wait() {
    let mut net = after_a_unanimous_slot_with(ReplicaConfig {
        opener_wait: Duration::ZERO,
        ..ReplicaConfig::default()
    });
    let wait = ReplicaConfig::default().unanimity_wait;
    net.replicas[0].submit(net.now, 50, op("b")).unwrap();
    net.collect(0);
    net.inbox.retain(|(to, _, _)| *to != 2); // replica 2 never hears b
    net.replicas[2].submit(net.now, 55, op("c")).unwrap();
    net.collect(2); // and proposes c at once
    net.deliver_to(1); // replica 1 copies b
    net.deliver_from(1, 0);
    assert_eq!(rounds_sent(&net, 0, Slot(1)), 0, "the opener waits");
    net.deliver_from(2, 0);
    assert!(
        rounds_sent(&net, 0, Slot(1)) > 0,
        "no unanimity: State at once"
    );
    net.now = net.now + wait * 2;
    net.replicas[0].handle_timeout(net.now);
    assert!(
        net.replicas[0].poll_timeout().is_some_and(|t| t > net.now),
        "no deadline left in the past"
    );
    net.settle();
    for i in 0..3 {
        // b in slot 1, then replica 2's c.
        assert_eq!(net.applied_joined(i), "a,b,c", "replica {i}");
    }
}

/// A snapshot installed while the replica waits for unanimity ends the
/// wait: no deadline is left in the past for a slot the snapshot covers.
#[test]
fn a_snapshot_installed_during_the_unanimity_wait_ends_it() {
    let mut net = after_a_unanimous_slot();
    net.replicas[0].submit(net.now, 50, op("b")).unwrap();
    net.collect(0);
    net.deliver_to(1);
    net.deliver_from(1, 0);
    assert_eq!(rounds_sent(&net, 0, Slot(1)), 0, "the opener waits");
    // The snapshot covers b, so the replica has nothing left to propose.
    let mut filter = net.replicas[0].filter().clone();
    for record in &net.persisted[0] {
        if let PersistRecord::Sent {
            message: Message::Proposal { slot, value },
            ..
        } = record
        {
            if *slot == Slot(1) {
                for batch in value.batches() {
                    filter.insert(batch.id);
                }
            }
        }
    }
    assert!(net.replicas[0].install_snapshot(net.now, Slot(5), filter));
    assert_eq!(net.replicas[0].pending_len(), 0);
    net.now = net.now + ReplicaConfig::default().unanimity_wait * 2;
    net.replicas[0].handle_timeout(net.now);
    assert!(
        net.replicas[0].poll_timeout().is_some_and(|t| t > net.now),
        "no deadline left in the past"
    );
}

// ------------------------------------------------------ announcing the opening

fn announcing() -> ReplicaConfig {
    ReplicaConfig {
        announce_opening: true,
        ..ReplicaConfig::default()
    }
}

/// The `Opening`s queued for replica `to`.
fn openings_queued_for(net: &Net, to: usize) -> usize {
    net.inbox
        .iter()
        .filter(|(j, _, e)| *j == to && matches!(e.message, Message::Opening { .. }))
        .count()
}

/// The value ids of the Proposals replica `i` recorded for `slot`.
fn proposal_ids(net: &Net, i: usize, slot: Slot) -> Vec<rabia_core::ValueId> {
    net.persisted[i]
        .iter()
        .filter_map(|r| match r {
            PersistRecord::Sent {
                slot: s,
                message: Message::Proposal { value, .. },
            } if *s == slot => Some(value.id().clone()),
            _ => None,
        })
        .collect()
}

/// With `announce_opening`, the opener's value reaches the others at once,
/// while its own Proposal still waits for its record: the followers write
/// their copies in parallel with the opener's write, and the slot is
/// unanimous as before.
#[test]
fn an_announced_opening_lets_the_followers_write_their_copies_meanwhile() {
    let mut net = Net::with_config(3, announcing());
    net.auto_persist = false;
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.collect(0);
    assert_eq!(net.unpersisted[0].len(), 1, "the opener's Proposal record");
    for j in 1..3 {
        assert_eq!(openings_queued_for(&net, j), 1, "replica {j}");
    }
    assert!(
        !net.inbox
            .iter()
            .any(|(_, _, e)| matches!(e.message, Message::Proposal { .. })),
        "no Proposal before its record is durable"
    );
    net.deliver_to(1);
    net.deliver_to(2);
    let opened = proposal_ids(&net, 0, Slot::ZERO);
    for i in 1..3 {
        assert_eq!(
            proposal_ids(&net, i, Slot::ZERO),
            opened,
            "replica {i} copied the announced value before the opener's record was durable"
        );
    }
    net.auto_persist = true;
    for i in 0..3 {
        let pending = net.unpersisted[i].len();
        net.persist_first(i, pending);
    }
    net.settle();
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "x", "replica {i}");
        assert_eq!(net.replicas[i].metrics().unanimous_slots, 1, "replica {i}");
    }
}

/// An `Opening` is a hint, never a proposal: a replica that copied an
/// announced value and holds no other Proposal has one proposal (its own),
/// short of the n − f = 2 it needs before it may send a State.
#[test]
fn an_opening_is_never_counted_as_a_proposal() {
    let mut net = Net::with_config(3, announcing());
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.collect(0);
    // Replica 1 gets only the Opening: the opener's Proposal is lost.
    net.inbox
        .retain(|(j, _, e)| *j == 1 && matches!(e.message, Message::Opening { .. }));
    net.deliver_to(1);
    assert_eq!(
        proposal_ids(&net, 1, Slot::ZERO),
        proposal_ids(&net, 0, Slot::ZERO),
        "replica 1 proposed the announced value"
    );
    assert_eq!(rounds_sent(&net, 1, Slot::ZERO), 0, "and sent no State");
    assert_eq!(net.replicas[1].metrics().slots_decided, 0);
}

/// The core's default is off (the engine turns it on with durable
/// storage, where a Proposal waits for its sync): then no `Opening` goes
/// out.
#[test]
fn openers_announce_only_when_configured() {
    let mut net = Net::new(3);
    net.auto_persist = false;
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    net.collect(0);
    assert!(!ReplicaConfig::default().announce_opening);
    assert_eq!(openings_queued_for(&net, 1), 0);
}

// ------------------------------------------------- proposals by reference

fn count(kinds: &[&str], kind: &str) -> usize {
    kinds.iter().filter(|k| **k == kind).count()
}

/// With the opening announced, the payloads travel once per slot, in the
/// `Opening`: every Proposal (the opener's and the copies) names the value
/// by its batch ids, and the slot is still decided on the proposals alone.
#[test]
fn announced_payloads_cross_the_network_once() {
    let mut net = Net::with_config(3, announcing());
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    let kinds = net.route(|_, _| {});
    assert_eq!(count(&kinds, "opening"), 2, "{kinds:?}");
    assert_eq!(count(&kinds, "proposal"), 0, "{kinds:?}");
    assert_eq!(count(&kinds, "proposal_ref"), 6, "{kinds:?}");
    assert_eq!(count(&kinds, "proposal_fetch"), 0, "{kinds:?}");
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "x", "replica {i}");
        let m = net.replicas[i].metrics();
        assert_eq!(m.unanimous_slots, 1, "replica {i}");
        assert_eq!(m.proposals_by_reference, 1, "replica {i}");
    }
    // The records keep the payloads: a restart re-sends them in full.
    for i in 0..3 {
        assert_eq!(proposal_ids(&net, i, Slot::ZERO).len(), 1, "replica {i}");
    }
}

/// Without an announcement the opener's Proposal carries the payloads and
/// the replicas that copy it propose by reference.
#[test]
fn copies_of_a_peer_value_are_proposed_by_reference() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 10, op("x")).unwrap();
    let kinds = net.route(|_, _| {});
    assert_eq!(count(&kinds, "proposal"), 2, "{kinds:?}");
    assert_eq!(count(&kinds, "proposal_ref"), 4, "{kinds:?}");
    assert_eq!(net.replicas[0].metrics().proposals_by_reference, 0);
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "x", "replica {i}");
    }
    for i in 1..3 {
        assert_eq!(net.replicas[i].metrics().proposals_by_reference, 1);
    }
}

/// A replica that missed the broadcast carrying a value's payloads and gets
/// a Proposal naming it by reference asks the sender for it at once, and
/// counts it when the full Proposal comes back.
#[test]
fn a_proposal_by_reference_without_its_payloads_is_fetched() {
    let mut net = Net::new(3);
    // Replica 3 never hears from replica 1: not its Forward, not its
    // Proposal (with the payloads).
    net.cut = vec![(0, 2)];
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    let kinds = net.route(|_, _| {});
    assert_eq!(count(&kinds, "proposal_fetch"), 1, "{kinds:?}");
    assert_eq!(net.replicas[2].metrics().proposal_fetches, 1);
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "x", "replica {i}");
    }
    // Replica 3 counted replica 2's proposal and proposed the same value.
    assert_eq!(
        proposal_ids(&net, 2, Slot::ZERO),
        proposal_ids(&net, 0, Slot::ZERO)
    );
}

/// A Proposal by reference that arrives before the payloads (which come
/// from another sender) is counted once they do, without a fetch answer
/// being needed.
#[test]
fn a_proposal_by_reference_waits_for_payloads_from_another_sender() {
    let mut net = Net::new(3);
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    net.collect(0);
    // Replica 2 copies first; replica 3 gets replica 2's reference before
    // replica 1's full Proposal.
    net.deliver_to(1);
    net.collect(1);
    net.deliver_from(1, 2);
    assert_eq!(net.replicas[2].metrics().proposal_fetches, 1);
    net.inbox
        .retain(|(_, _, e)| e.message.kind() != "proposal_fetch");
    net.deliver_from(0, 2);
    assert_eq!(
        proposal_ids(&net, 2, Slot::ZERO),
        proposal_ids(&net, 0, Slot::ZERO),
        "replica 3 copied the value"
    );
    net.settle();
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "x", "replica {i}");
        // Every replica counted all three proposals.
        assert_eq!(net.replicas[i].metrics().unanimous_slots, 1, "replica {i}");
    }
}

/// Retransmissions carry the payloads: a replica that missed the value's
/// broadcast and whose fetch was lost gets it from the next
/// retransmission, which also resolves the reference it kept.
#[test]
fn retransmitted_proposals_carry_their_payloads() {
    let mut net = Net::new(3);
    // Replica 1's Proposal (with the payloads) reaches replica 2 only.
    net.cut = vec![(0, 2)];
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    net.collect(0);
    net.deliver_to(1);
    net.collect(1); // replica 2 copies x: references to replicas 1 and 3
                    // Then replica 2 falls silent and deaf; replica 3's fetch is lost.
    net.cut = vec![(0, 1), (1, 0), (1, 2), (2, 1)];
    net.settle();
    assert_eq!(net.replicas[2].metrics().proposal_fetches, 1);
    assert_eq!(
        net.applied_joined(0),
        "",
        "replica 1 waits for a second State"
    );
    assert!(proposal_ids(&net, 2, Slot::ZERO).is_empty());
    // Replica 1 retransmits its Proposal with the payloads: replica 3
    // counts replica 2's kept reference and its own copy, and the slot
    // completes without replica 2.
    net.tick(ReplicaConfig::default().retransmit_interval);
    assert_eq!(
        proposal_ids(&net, 2, Slot::ZERO),
        proposal_ids(&net, 0, Slot::ZERO)
    );
    assert_eq!(net.applied_joined(0), "x");
    assert_eq!(net.applied_joined(2), "x");
}

/// A reference naming a batch of a non-member is invalid input.
#[test]
fn a_proposal_by_reference_naming_a_stranger_is_dropped() {
    let mut r = replica(1, 3, member());
    let stranger = rabia_core::BatchId {
        origin: NodeId::from_u64(9),
        incarnation: 1,
        seq: 1,
    };
    r.handle_message(
        Instant::ZERO,
        NodeId::from_u64(2),
        Envelope {
            sender: NodeId::from_u64(2),
            epoch: Epoch(0),
            message: Message::ProposalRef {
                slot: Slot::ZERO,
                value: rabia_core::ValueId::single(stranger),
            },
        },
    );
    assert_eq!(r.metrics().dropped.invalid, 1);
    assert!(r.poll_action().is_none());
}

// ------------------------------------------ nothing waits on a Decided record

impl Net {
    /// Reports replica `i`'s records durable up to its last urgent one
    /// (everything but `Decided` records), as a driver that holds `Decided`
    /// records back until the next urgent record does.
    fn persist_urgent(&mut self, i: usize) {
        let waiting = self.unpersisted[i].len();
        let tail = &self.persisted[i][self.persisted[i].len() - waiting..];
        if let Some(last) = tail.iter().rposition(PersistRecord::is_urgent) {
            self.persist_first(i, last + 1);
        }
    }

    /// Routes messages until nothing moves, reporting only urgent records
    /// durable.
    fn settle_holding_decided(&mut self) {
        self.route(Net::persist_urgent);
    }
}

/// A driver may hold `Decided` records back until the next urgent record
/// shares their sync (the engine does): no message and no delivery waits
/// for one. Here every `Decided` record stays unsynced, and a laggard still
/// gets its answer at once and applies what the others decided.
#[test]
fn nothing_waits_for_a_decided_record() {
    let mut net = Net::new(3);
    net.auto_persist = false;
    net.cut = vec![(0, 2), (1, 2), (2, 0), (2, 1)];
    net.replicas[0].submit(net.now, 1, op("x")).unwrap();
    net.settle_holding_decided();
    net.replicas[1].submit(net.now, 2, op("x2")).unwrap();
    net.settle_holding_decided();
    for i in 0..2 {
        assert_eq!(net.applied_joined(i), "x,x2", "replica {i}");
        assert!(
            matches!(
                net.persisted[i].last(),
                Some(PersistRecord::Decided { .. } | PersistRecord::DecidedAsProposed { .. })
            ),
            "replica {i}'s last record is its unsynced Decided record"
        );
    }
    // The laggard comes back with an operation of its own: its slot-0
    // Proposal is answered with the decision at once, though the
    // decider's Decided records are not durable.
    net.cut.clear();
    net.now = net.now + ReplicaConfig::default().retransmit_interval;
    net.replicas[2].submit(net.now, 3, op("y")).unwrap();
    net.collect(2);
    net.persist_urgent(2);
    net.inbox.retain(|(to, _, _)| *to == 0);
    net.deliver_from(2, 0);
    net.collect(0);
    assert!(
        net.inbox.iter().any(|(to, from, e)| *to == 2
            && *from == 0
            && matches!(
                e.message,
                Message::Decision {
                    slot: Slot::ZERO,
                    ..
                }
            )),
        "the decision leaves without waiting for the Decided record"
    );
    net.settle_holding_decided();
    for _ in 0..4 {
        net.now = net.now + Duration::from_millis(250);
        for i in 0..3 {
            net.replicas[i].handle_timeout(net.now);
        }
        net.settle_holding_decided();
    }
    for i in 0..3 {
        assert_eq!(net.applied_joined(i), "x,x2,y", "replica {i}");
    }
}

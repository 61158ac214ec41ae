//! The sans-I/O Rabia replica: events in, actions out.
//!
//! # Calling contract
//!
//! * Inputs: [`Replica::submit`], [`Replica::handle_message`],
//!   [`Replica::handle_persisted`], [`Replica::handle_timeout`]. Each takes
//!   the current time; none blocks or performs I/O.
//! * After **every** input, drain [`Replica::poll_action`] until `None` and
//!   carry the actions out (see [`Action`]); then sleep until
//!   [`Replica::poll_timeout`] or the next input.
//! * Report durability with `handle_persisted(token)` in token order.
//!
//! # Slot life cycle
//!
//! The replica decides one slot at a time (`next_slot`). A slot decides a
//! list of batches (docs/protocol.md, "Slot values: lists of batches"). The
//! replica proposes as soon as its pending queue holds a batch (its own, a
//! forwarded one, or one adopted from a peer's proposal): the value a peer
//! already proposed for the slot if there is one, otherwise every pending
//! batch, oldest first. The previous value's last origin opens the slot;
//! the others wait up to `opener_wait` for it, and a driver may hold the
//! opening until its clients were answered (`hold_opening`). It then runs
//! the slot instance to a decision. Messages for later slots inside
//! `slot_window` are buffered in their instances; decisions for later slots
//! are kept and consumed in order. A decided slot is persisted, sent to any
//! peer that asks for it, and delivered in slot order.
//!
//! # Durability ordering (the restart rule, docs/protocol.md)
//!
//! Every Proposal, State and Vote is written as a [`PersistRecord::Sent`]
//! before it leaves, and every outgoing message that could depend on
//! something not yet durable waits in `held` until `handle_persisted` covers
//! it. A restarted replica re-sends exactly its recorded messages and never a
//! different one for the same (slot, phase, kind): there is no equivocation,
//! so the quorum-intersection arguments of the protocol hold across crashes.
//!
//! A decision is delivered once every record issued before it is durable
//! (so this replica's own votes for the slot), without waiting for its
//! `Decided` record: the decided value is fixed by votes durable at f + 1
//! senders, so losing the `Decided` record in a crash only makes the
//! replica learn the same value again. A unanimous decision (every member
//! proposed the value) is fixed by the n proposals instead, each durable at
//! its sender: its delivery waits only for this replica's own Proposal
//! record, in a queue of its own (`held_deliveries`).

use crate::cluster::{ClusterConfig, Thresholds};
use crate::error::{ConfigError, SubmitError};
use crate::ids::{BatchId, NodeId, Phase, Slot};
use crate::operation::{Batch, BatchList, Operation, SlotValue, ValueId};
use crate::protocol::action::{Action, Delivery, DeliveryOutcome, PersistRecord, PersistToken};
use crate::protocol::coin::common_coin;
use crate::protocol::config::{EmptyStore, ReplicaConfig};
use crate::protocol::filter::DecidedFilter;
use crate::protocol::message::{Bit, Envelope, Message, VoteValue};
use crate::protocol::metrics::ReplicaMetrics;
use crate::protocol::pending::{Inserted, PendingQueue};
use crate::protocol::recovery::RecoveredState;
use crate::protocol::slot::{RoundOutcome, SlotInstance, Stage};
use crate::protocol::tally::Recorded;
use crate::time::Instant;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// The largest peer batch a replica accepts: half a frame, the same bound
/// `ReplicaConfig::validate` puts on `batch_bytes_max` (plus headroom), and
/// the same on every replica whatever its own limits.
pub(crate) const INBOUND_BATCH_BYTES_MAX: usize =
    crate::protocol::wire::DEFAULT_FRAME_BYTES_MAX / 2;

/// The most batches one proposed value may hold (a protocol bound, the same
/// on every replica). The batches' bytes together stay within
/// [`INBOUND_BATCH_BYTES_MAX`].
pub(crate) const VALUE_BATCHES_MAX: usize = 256;

/// One node's Rabia protocol state. See the module docs for the contract.
pub struct Replica {
    config: ReplicaConfig,
    cluster: ClusterConfig,
    me: NodeId,
    thresholds: Thresholds,
    coin_seed: u64,
    rng: ChaCha8Rng,
    incarnation: u64,
    next_batch_seq: u64,
    /// Hybrid logical clock (microseconds) for batch ordering keys.
    hlc: u64,
    pending: PendingQueue,
    /// Batches decided in slots below `next_slot`.
    filter: DecidedFilter,
    /// The first undecided slot.
    next_slot: Slot,
    /// The current slot's instance and buffered future ones.
    slots: BTreeMap<Slot, SlotInstance>,
    /// Decisions learned for slots after `next_slot`.
    decided_ahead: BTreeMap<Slot, SlotValue>,
    /// Recently decided values (and when this replica learned them), to
    /// answer laggards.
    log: BTreeMap<Slot, LoggedDecision>,
    /// Encoded bytes of the batches in `log`.
    log_bytes: usize,
    /// Last issued persist token (0: none yet).
    last_token: u64,
    /// Last issued token of a record something waits on
    /// ([`PersistRecord::is_urgent`]: everything but `Decided` records).
    /// Messages and deliveries wait for this one, never for a `Decided`
    /// record, which a driver may therefore hold back until the next
    /// urgent record shares its sync.
    last_urgent_token: u64,
    /// Highest token reported durable.
    durable_token: u64,
    /// Actions waiting for a token to become durable, in order.
    held: VecDeque<(u64, Action)>,
    /// Deliveries waiting for a token to become durable, in slot order.
    held_deliveries: VecDeque<(u64, Action)>,
    /// Whether the last slot this replica decided by itself was unanimous
    /// (every member proposed): then it waits a little for unanimity in
    /// the next one (`unanimity_wait`).
    last_unanimous: bool,
    /// The current slot's wait for the remaining proposals before this
    /// replica sends its State.
    unanimity_wait: TimedWait,
    /// Actions ready for the driver.
    ready: VecDeque<Action>,
    /// When the current slot last made progress (or a slot was decided).
    last_progress: Instant,
    next_check: Instant,
    next_heartbeat: Instant,
    catch_up_not_before: Instant,
    /// Each peer's latest reported first undecided slot.
    peer_next: BTreeMap<NodeId, Slot>,
    /// The first slot this replica may send Proposals, States and Votes
    /// for. `None` while a replica that started with an empty store has not
    /// yet learned how far its forgotten predecessor may have gone (the
    /// fresh store guard); `Slot::ZERO` for a replica with its own records.
    participate_from: Option<Slot>,
    /// What each peer's latest heartbeat said: (first undecided slot,
    /// learner). Feeds the fresh store guard.
    peer_heartbeats: BTreeMap<NodeId, (Slot, bool)>,
    /// Peers whose latest heartbeat said they are learners (they propose
    /// nothing, so they never open a slot).
    learner_peers: BTreeSet<NodeId>,
    /// The replica expected to open the current slot: the origin of the
    /// last batch of the previous slot's value, which every replica knows
    /// (`None` after ⊥ or at start: whoever has a batch opens it). See
    /// `maybe_start_slot`.
    opener: Option<NodeId>,
    /// This replica's wait (it is not the opener) for a proposal before it
    /// proposes what it has.
    open_wait: TimedWait,
    /// When this replica is the opener: the other replicas whose batches
    /// were in the previous value and from which no new batch has arrived
    /// since (see `waits_for_contributors`).
    contributors_awaited: BTreeSet<NodeId>,
    /// Until when the opener waits for them.
    contributor_wait_until: Option<Instant>,
    /// When this replica proposed for the current slot.
    proposed_at: Option<Instant>,
    /// How long the last slot this replica proposed in took from its
    /// proposal to its decision.
    last_slot_time: Option<Duration>,
    /// The oldest own pending batches at the last periodic check (see
    /// `reforward_batches`).
    own_pending_at_check: Vec<BatchId>,
    /// The driver asked this replica not to open a slot for now (see
    /// [`Replica::hold_opening`]).
    opening_held: bool,
    /// This start's probe while a learner (never 0).
    probe: u64,
    /// Last decision reply per peer, to rate-limit answers to laggards.
    decision_replies: BTreeMap<NodeId, (Slot, Instant)>,
    /// Last request served per peer (proposal fetch, catch-up), to throttle.
    served: BTreeMap<NodeId, (Served, Instant)>,
    metrics: ReplicaMetrics,
}

impl Replica {
    /// Builds a replica from its configuration and recovered durable state.
    ///
    /// `rng_seed` seeds the replica's local randomness (timer jitter only; the
    /// protocol's decisions never depend on it). Production logs it.
    pub fn new(
        config: ReplicaConfig,
        cluster: ClusterConfig,
        recovered: RecoveredState,
        now: Instant,
        rng_seed: u64,
    ) -> Result<Replica, ConfigError> {
        config.validate()?;
        cluster.validate()?;
        let me = cluster.node_id;
        let thresholds = cluster.thresholds();
        if config.empty_store == EmptyStore::Rejoin && thresholds.n == 2 {
            // The learner waits for the others to decide without it: two
            // nodes cannot (a cluster of two tolerates no failure).
            return Err(ConfigError::InvalidSetting {
                field: "empty_store",
                reason: "Rejoin needs a cluster of 1 or at least 3 nodes: \
                         in a cluster of 2 the other node cannot decide alone"
                    .into(),
            });
        }
        let coin_seed = cluster.effective_coin_seed();
        let filter = recovered.filter.clone().unwrap_or_else(|| {
            DecidedFilter::new(config.filter_sparse_max, config.filter_incarnations_max)
        });
        let mut replica = Replica {
            pending: PendingQueue::new(config.pending_batches_max),
            rng: ChaCha8Rng::seed_from_u64(rng_seed),
            next_check: now + config.retransmit_interval,
            next_heartbeat: now,
            config,
            cluster,
            me,
            thresholds,
            coin_seed,
            incarnation: recovered.incarnation,
            next_batch_seq: 0,
            hlc: 0,
            filter,
            next_slot: recovered.base_slot,
            slots: BTreeMap::new(),
            decided_ahead: BTreeMap::new(),
            log: BTreeMap::new(),
            log_bytes: 0,
            last_token: 0,
            last_urgent_token: 0,
            durable_token: 0,
            held: VecDeque::new(),
            held_deliveries: VecDeque::new(),
            last_unanimous: false,
            unanimity_wait: TimedWait::NotStarted,
            ready: VecDeque::new(),
            last_progress: now,
            catch_up_not_before: now,
            peer_next: BTreeMap::new(),
            participate_from: None,
            peer_heartbeats: BTreeMap::new(),
            learner_peers: BTreeSet::new(),
            opener: None,
            open_wait: TimedWait::NotStarted,
            contributors_awaited: BTreeSet::new(),
            contributor_wait_until: None,
            proposed_at: None,
            last_slot_time: None,
            own_pending_at_check: Vec::new(),
            opening_held: false,
            probe: 0,
            decision_replies: BTreeMap::new(),
            served: BTreeMap::new(),
            metrics: ReplicaMetrics::default(),
        };
        // The fresh store guard (see `resolve_participation`).
        let learner_record = recovered.records.iter().rev().find_map(|r| match r {
            PersistRecord::Learner { participate_from } => Some(*participate_from),
            _ => None,
        });
        let empty = recovered.records.is_empty() && recovered.base_slot == Slot::ZERO;
        let rejoin = replica.config.empty_store == EmptyStore::Rejoin;
        replica.participate_from = match learner_record {
            _ if replica.fresh_guard_disabled() => Some(Slot::ZERO),
            Some(recorded) => recorded,
            None if empty && rejoin => None,
            None => Some(Slot::ZERO),
        };
        if replica.participate_from.is_none() {
            replica.probe = replica.rng.next_u64().max(1);
        }
        if learner_record.is_none() && replica.participate_from.is_none() {
            // Written before anything else, so a learner that restarts (its
            // store no longer empty) stays a learner.
            replica.persist(PersistRecord::Learner {
                participate_from: None,
            });
        }
        replica.restore(recovered.records, now);
        replica.resolve_participation(now);
        if replica.participate_from.is_none() {
            // Ask where the peers are: they answer a learner at once.
            replica.send_heartbeat();
        }
        Ok(replica)
    }

    /// Whether this replica is still learning after starting with an empty
    /// store (it sends no Proposal, State or Vote yet).
    pub fn is_learner(&self) -> bool {
        self.participate_from
            .is_none_or(|from| self.next_slot < from)
    }

    /// The first slot this replica takes part in, once known (see
    /// [`Replica::is_learner`]).
    pub fn participate_from(&self) -> Option<Slot> {
        self.participate_from
    }

    /// The fresh store guard, for a replica started with an empty store
    /// and [`EmptyStore::Rejoin`]: it replaces one whose store was lost,
    /// whose Proposals, States and Votes it no longer remembers; sending
    /// different ones would be equivocation. The predecessor sent protocol
    /// messages only for slots up to one past the highest slot decided
    /// anywhere (a replica moves past a slot only by learning its
    /// decision), and every decided slot had n − f senders, so at least
    /// n − f − 1 peers other than the predecessor durably reached it. Any
    /// f + 1 participating peers include one of them: with M the largest
    /// first-undecided slot they report (in answers to this start's probe,
    /// so sent after the predecessor stopped), the predecessor touched no
    /// slot above M + 1, and this replica takes part from M + 2 on,
    /// learning the slots before by catch-up.
    fn resolve_participation(&mut self, now: Instant) {
        if self.participate_from.is_some() {
            return;
        }
        let others = self.thresholds.n.saturating_sub(1);
        let needed = (self.thresholds.f + 1).min(others);
        let participants: Vec<Slot> = self
            .peer_heartbeats
            .values()
            .filter(|(_, learner)| !learner)
            .map(|(next, _)| *next)
            .collect();
        let from = if needed == 0 {
            Slot::ZERO
        } else if participants.len() >= needed {
            let furthest = participants.iter().copied().max().unwrap_or(Slot::ZERO);
            furthest.next().next()
        } else {
            return;
        };
        self.participate_from = Some(from);
        self.persist(PersistRecord::Learner {
            participate_from: Some(from),
        });
        self.maybe_start_slot(now);
    }

    /// Replays durable records: decided slots are delivered again (the state
    /// machine restarts from the snapshot at `base_slot`), and this
    /// replica's recorded messages for undecided slots are restored so it
    /// re-sends exactly them.
    fn restore(&mut self, records: Vec<PersistRecord>, now: Instant) {
        let mut sent: Vec<(Slot, Message)> = Vec::new();
        // Own proposals by slot, for `DecidedAsProposed` records (which
        // follow their slot's Proposal record).
        let mut proposed: BTreeMap<Slot, BatchList> = BTreeMap::new();
        for record in records {
            match record {
                PersistRecord::Decided { slot, value } if slot == self.next_slot => {
                    self.commit_decision(now, value, DecisionSource::Recovered);
                    proposed.retain(|s, _| *s >= self.next_slot);
                }
                PersistRecord::DecidedAsProposed { slot, value } if slot == self.next_slot => {
                    // Without its Proposal record (which cannot happen short
                    // of damage the log scan reports) the slot is simply
                    // learned again, as when a `Decided` record is lost.
                    if let Some(list) = proposed.remove(&slot).filter(|l| *l.id() == value) {
                        self.commit_decision(
                            now,
                            SlotValue::Batches(list),
                            DecisionSource::Recovered,
                        );
                        proposed.retain(|s, _| *s >= self.next_slot);
                    }
                }
                PersistRecord::Decided { .. }
                | PersistRecord::DecidedAsProposed { .. }
                | PersistRecord::Learner { .. } => {}
                PersistRecord::Sent { slot, message } => {
                    if let Message::Proposal { value, .. } = &message {
                        if slot >= self.next_slot {
                            proposed.insert(slot, value.clone());
                        }
                    }
                    sent.push((slot, message));
                }
            }
        }
        for (slot, message) in sent {
            if slot < self.next_slot {
                continue;
            }
            let me = self.me;
            let inst = self.slots.entry(slot).or_insert_with(SlotInstance::new);
            match &message {
                Message::Proposal { value, .. } => {
                    inst.record_proposal(me, value);
                    inst.restored_proposal = Some(value.clone());
                    for batch in value.batches() {
                        if !self.filter.contains(&batch.id) {
                            self.pending.insert(batch.clone());
                        }
                    }
                }
                Message::State {
                    phase,
                    bit,
                    candidate,
                    ..
                } => {
                    inst.record_state(me, *phase, *bit, candidate.clone());
                    inst.restored_states.insert(*phase, *bit);
                }
                Message::Vote {
                    phase,
                    vote,
                    candidate,
                    ..
                } => {
                    inst.record_vote(me, *phase, *vote, candidate.clone());
                    inst.restored_votes.insert(*phase, *vote);
                }
                _ => continue,
            }
            // Already durable: token 0 is always covered.
            inst.sent.push((0, message));
        }
        for inst in self.slots.values_mut() {
            let last_state = inst.restored_states.keys().next_back().copied();
            let last_vote = inst.restored_votes.keys().next_back().copied();
            inst.stage = match (last_state, last_vote) {
                (Some(s), Some(v)) if v >= s => Stage::Round2(v),
                (Some(s), _) => Stage::Round1(s),
                (None, Some(v)) => Stage::Round2(v),
                (None, None) if inst.restored_proposal.is_some() => Stage::Exchange,
                (None, None) => Stage::NotStarted,
            };
        }
        // Tell the peers where we are straight away.
        self.retransmit_current();
        self.drive(now);
    }

    // ----------------------------------------------------------------- inputs

    /// Submits operations from local clients as one new batch.
    ///
    /// `wall_clock_micros` is the driver's wall clock; with the replica's
    /// hybrid logical clock it forms the batch's ordering key, so batches
    /// from all replicas interleave by time. Returns the batch identity.
    pub fn submit(
        &mut self,
        now: Instant,
        wall_clock_micros: u64,
        operations: Vec<Operation>,
    ) -> Result<BatchId, SubmitError> {
        if operations.is_empty() {
            return Err(SubmitError::InvalidBatch {
                operations,
                reason: "a batch needs at least one operation".into(),
            });
        }
        if operations.len() > self.config.batch_operations_max {
            let reason = format!(
                "{} operations exceed batch_operations_max = {}",
                operations.len(),
                self.config.batch_operations_max
            );
            return Err(SubmitError::InvalidBatch { operations, reason });
        }
        let bytes: usize = operations.iter().map(Operation::encoded_len).sum();
        if bytes > self.config.batch_bytes_max {
            let reason = format!(
                "{bytes} bytes exceed batch_bytes_max = {}",
                self.config.batch_bytes_max
            );
            return Err(SubmitError::InvalidBatch { operations, reason });
        }
        // A quarter of the queue is kept for peers' batches, so a replica
        // flooded by its own clients can still adopt the cluster's oldest
        // batch and agree with the others on the head.
        let local_capacity = self.pending.capacity() - self.pending.capacity() / 4;
        if self.pending.len() >= local_capacity {
            return Err(SubmitError::Overloaded {
                operations,
                capacity: local_capacity,
            });
        }
        self.hlc = self.hlc.saturating_add(1).max(wall_clock_micros);
        let id = BatchId {
            origin: self.me,
            incarnation: self.incarnation,
            seq: self.next_batch_seq,
        };
        self.next_batch_seq += 1;
        let batch = Arc::new(Batch {
            id,
            timestamp: self.hlc,
            operations,
        });
        self.pending.insert(batch.clone());
        self.metrics.batches_submitted += 1;
        // Local clients are back: nothing more to wait for.
        self.opening_held = false;
        self.maybe_start_slot(now);
        if !self.current_proposal_contains(id) {
            // The proposal would carry it; otherwise every queue must hold it.
            self.emit_now(Action::Broadcast {
                envelope: self.envelope(Message::Forward { batch }),
            });
        }
        self.drive(now);
        Ok(id)
    }

    /// Handles one inbound message from `from` (as authenticated by the
    /// transport). Invalid input is dropped and counted, never a panic.
    pub fn handle_message(&mut self, now: Instant, from: NodeId, envelope: Envelope) {
        if from == self.me || envelope.sender != from || !self.cluster.contains(from) {
            self.metrics.dropped.unknown_sender += 1;
            return;
        }
        if envelope.epoch != self.cluster.epoch {
            self.metrics.dropped.wrong_epoch += 1;
            return;
        }
        if !self.is_well_formed(&envelope.message) {
            self.metrics.dropped.invalid += 1;
            return;
        }
        if let Some(slot) = envelope.message.slot() {
            // Any slot-scoped message proves the sender reached that slot.
            self.note_peer_progress(from, slot);
        }
        match envelope.message {
            Message::Forward { batch } => self.adopt_batch(now, batch),
            Message::Proposal { slot, value } => self.on_proposal(now, from, slot, value),
            Message::State {
                slot,
                phase,
                bit,
                candidate,
            } => self.on_round_message(now, from, slot, phase, RoundMsg::State(bit, candidate)),
            Message::Vote {
                slot,
                phase,
                vote,
                candidate,
            } => self.on_round_message(now, from, slot, phase, RoundMsg::Vote(vote, candidate)),
            Message::Decision { slot, value } => self.on_decision(now, from, slot, value),
            Message::ProposalRequest { slot, candidate } => {
                self.on_proposal_request(now, from, slot, candidate)
            }
            Message::ProposalReply { slot, value } => self.on_proposal_reply(now, slot, value),
            Message::Opening { slot, value } => self.on_opening(now, slot, value),
            Message::ProposalRef { slot, value } => self.on_proposal_ref(now, from, slot, value),
            Message::ProposalFetch { slot } => self.on_proposal_fetch(now, from, slot),
            Message::CatchUpRequest { from: first } => {
                if !self.recently_served(from, Served::CatchUp(first), now) {
                    self.on_catch_up_request(from, first);
                }
            }
            Message::CatchUpReply {
                decisions,
                responder_next,
                compacted_below,
            } => self.on_catch_up_reply(now, from, decisions, responder_next, compacted_below),
            Message::Heartbeat {
                next_slot,
                learner,
                probe,
            } => {
                self.note_peer_progress(from, next_slot);
                if learner {
                    self.learner_peers.insert(from);
                } else {
                    self.learner_peers.remove(&from);
                }
                if learner || (probe != 0 && probe == self.probe) {
                    // Only answers to this start's probe count for the
                    // guard: an older report may predate the loss.
                    self.peer_heartbeats.insert(from, (next_slot, learner));
                }
                if learner && !self.is_learner() {
                    // A peer that started empty waits to hear from us:
                    // answer now rather than at our next beat (a learner
                    // beats no faster than anyone, so neither do these;
                    // learners do not answer each other, or two would
                    // answer each other for ever).
                    self.send_heartbeat_to(from, probe);
                }
                self.resolve_participation(now);
                if self.is_learner() {
                    self.maybe_catch_up(now, true);
                }
            }
            Message::SnapshotRequest => {
                if !self.recently_served(from, Served::Snapshot, now) {
                    self.emit_now(Action::ServeSnapshot { to: from });
                }
            }
            Message::SnapshotChunk {
                base_slot,
                offset,
                total,
                data,
            } => {
                // Only useful while this replica is behind the snapshot.
                if base_slot > self.next_slot {
                    self.emit_now(Action::SnapshotChunk {
                        from,
                        base_slot,
                        offset,
                        total,
                        data,
                    });
                } else {
                    self.metrics.dropped.stale += 1;
                }
            }
        }
        self.drive(now);
    }

    /// Reports that every record up to and including `token` is durable.
    pub fn handle_persisted(&mut self, now: Instant, token: PersistToken) {
        if token.0 > self.last_token {
            // A token we never issued: a driver bug. Ignore rather than
            // release messages whose records may not be durable.
            self.metrics.dropped.invalid += 1;
            return;
        }
        self.durable_token = self.durable_token.max(token.0);
        for queue in [&mut self.held, &mut self.held_deliveries] {
            while let Some((gate, _)) = queue.front() {
                if *gate > self.durable_token {
                    break;
                }
                if let Some((_, action)) = queue.pop_front() {
                    self.ready.push_back(action);
                }
            }
        }
        self.drive(now);
    }

    /// Asks the replica not to open a slot with its own queue while `held`
    /// (it still proposes a value a peer proposed first, so it never holds
    /// up the others), and opens the current slot when released if it has
    /// something to propose.
    ///
    /// A driver holds while clients it just answered are about to submit
    /// again: a slot opened at once would carry only what was already
    /// queued, and the answered clients would form a second group that
    /// alternates with the first, each slot carrying half of them.
    pub fn hold_opening(&mut self, now: Instant, held: bool) {
        // (With `hold_opening_after_decision`, every decision of a value
        // sets the hold; the driver releases it.)
        if self.opening_held == held {
            return;
        }
        self.opening_held = held;
        if !held {
            self.maybe_start_slot(now);
            self.drive(now);
        }
    }

    /// Fires due timers: heartbeat, retransmission of a stalled slot, and
    /// catch-up requests when peers are ahead.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat_interval;
            self.send_heartbeat();
        }
        if now >= self.next_check {
            let stalled = now.saturating_duration_since(self.last_progress)
                >= self.config.retransmit_interval;
            if stalled {
                self.retransmit_current();
            }
            let learner = self.is_learner();
            self.reforward_batches(learner);
            self.maybe_catch_up(now, stalled || learner);
            self.next_check = now + self.jittered(self.config.retransmit_interval);
        }
        if self
            .contributor_wait_until
            .is_some_and(|until| now >= until)
        {
            self.contributors_awaited.clear();
            self.contributor_wait_until = None;
            self.maybe_start_slot(now);
        }
        // Expired whatever became of the slot meanwhile (`drive` then
        // evaluates the exchange if it is still waiting).
        self.unanimity_wait.expire_if_due(now);
        if self.open_wait.expire_if_due(now) {
            self.maybe_start_slot(now);
        }
        self.drive(now);
    }

    // ---------------------------------------------------------------- outputs

    /// The next action for the driver, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.ready.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.next_heartbeat.min(self.next_check);
        let timers = match self.contributor_wait_until {
            Some(until) => timers.min(until),
            None => timers,
        };
        let waits = [self.unanimity_wait.deadline(), self.open_wait.deadline()];
        Some(waits.into_iter().flatten().fold(timers, Instant::min))
    }

    // ---------------------------------------------------------- observability

    /// This replica's identity.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// How long the last slot this replica proposed in took, from its
    /// proposal to its decision (`None` before the first).
    pub fn last_slot_time(&self) -> Option<Duration> {
        self.last_slot_time
    }

    /// Whether the replica holds off opening a slot ([`Replica::hold_opening`]).
    pub fn opening_held(&self) -> bool {
        self.opening_held
    }

    /// The first slot this replica has not decided.
    pub fn next_slot(&self) -> Slot {
        self.next_slot
    }

    /// Counters and health signals.
    pub fn metrics(&self) -> ReplicaMetrics {
        let mut m = self.metrics.clone();
        m.pending_batches = self.pending.len() as u64;
        m
    }

    /// The decided value of a retained slot.
    pub fn decided_value(&self, slot: Slot) -> Option<&SlotValue> {
        self.log.get(&slot).map(|entry| &entry.value)
    }

    /// The decided-batch filter as of `next_slot`: the batches decided in
    /// every slot below it. **Not** the filter of the applied state when
    /// deliveries lag decisions: a snapshot must carry the filter of the
    /// slots it covers (the engine keeps its own, updated at apply time).
    pub fn filter(&self) -> &DecidedFilter {
        &self.filter
    }

    /// Batches waiting to be decided.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The phase the current slot is in (0 when idle or exchanging).
    pub fn current_phase(&self) -> Phase {
        self.slots
            .get(&self.next_slot)
            .map(SlotInstance::phase)
            .unwrap_or(Phase::EXCHANGE)
    }

    /// Whether the current slot has started and is not decided yet (the
    /// engine batches submissions while a slot is in flight).
    pub fn slot_in_flight(&self) -> bool {
        self.slots
            .get(&self.next_slot)
            .map(|inst| inst.stage != Stage::NotStarted)
            .unwrap_or(false)
    }

    /// How many of this replica's own batches are waiting to be decided.
    /// The engine proposes a submission at once when this is 0 and
    /// otherwise accumulates submissions into one larger batch (adaptive
    /// batching: one own batch pending at a time).
    pub fn own_pending(&self) -> usize {
        self.pending.count_of(self.me)
    }

    /// Jumps to a snapshot fetched from a peer: every slot below
    /// `base_slot` is covered by it (the driver has restored the state
    /// machine and the replicated bookkeeping from it, in delivery order).
    /// Returns false and changes nothing if the replica is already there.
    ///
    /// Safe with respect to the restart rule: slots below `base_slot` are
    /// decided, so this replica never sends anything for them again.
    pub fn install_snapshot(
        &mut self,
        now: Instant,
        base_slot: Slot,
        filter: DecidedFilter,
    ) -> bool {
        if base_slot <= self.next_slot {
            return false;
        }
        self.next_slot = base_slot;
        self.filter = filter;
        // Deliveries of slots the snapshot covers must not reach the state
        // machine after it.
        let stale = |a: &Action| matches!(a, Action::Deliver(d) if d.slot < base_slot);
        self.held.retain(|(_, action)| !stale(action));
        self.held_deliveries.retain(|(_, action)| !stale(action));
        self.ready.retain(|action| !stale(action));
        self.slots = self.slots.split_off(&base_slot);
        self.decided_ahead = self.decided_ahead.split_off(&base_slot);
        // A wait for a slot the snapshot covers must not outlive it (its
        // deadline would be left in the past).
        self.unanimity_wait = TimedWait::NotStarted;
        self.log.clear();
        self.log_bytes = 0;
        let filter = &self.filter;
        let stale: Vec<_> = self
            .pending
            .iter()
            .filter(|b| filter.contains(&b.id))
            .map(|b| b.ordering_key())
            .collect();
        for key in stale {
            self.pending.remove(&key);
        }
        self.metrics.snapshots_installed += 1;
        self.last_progress = now;
        // Keep catching up from the snapshot on.
        self.catch_up_not_before = now;
        self.maybe_catch_up(now, true);
        self.maybe_start_slot(now);
        true
    }

    /// The incarnation this replica runs as.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    // ------------------------------------------------------------ validation

    fn is_well_formed(&self, message: &Message) -> bool {
        match message {
            Message::Forward { batch } => self.batch_is_acceptable(batch),
            Message::Proposal { value, .. }
            | Message::ProposalReply { value, .. }
            | Message::Opening { value, .. } => self.value_is_acceptable(value),
            Message::ProposalRef { value, .. } => {
                value.batch_ids().len() <= VALUE_BATCHES_MAX
                    && value
                        .batch_ids()
                        .iter()
                        .all(|id| self.cluster.contains(id.origin))
            }
            Message::State { phase, .. } | Message::Vote { phase, .. } => *phase >= Phase::FIRST,
            Message::Decision { value, .. } => match value {
                SlotValue::Null => true,
                SlotValue::Batches(list) => self.value_is_acceptable(list),
            },
            Message::CatchUpReply { decisions, .. } => {
                decisions.len() <= self.config.catch_up_batch_max
                    && decisions.windows(2).all(|w| w[1].0 == w[0].0.next())
                    && decisions.iter().all(|(_, v)| match v {
                        SlotValue::Null => true,
                        SlotValue::Batches(list) => self.value_is_acceptable(list),
                    })
            }
            Message::SnapshotChunk {
                offset,
                total,
                data,
                ..
            } => {
                data.len() <= self.config.snapshot_chunk_bytes_max
                    && offset
                        .checked_add(data.len() as u64)
                        .is_some_and(|end| end <= *total)
            }
            Message::ProposalRequest { .. }
            | Message::ProposalFetch { .. }
            | Message::CatchUpRequest { .. }
            | Message::SnapshotRequest
            | Message::Heartbeat { .. } => true,
        }
    }

    /// Whether a peer's batch may be considered. The bound is the
    /// protocol's, not this node's `batch_*_max` (those only limit the
    /// batches this node creates): replicas configured with different
    /// limits must still agree on which batches exist, or one of them
    /// could never accept a decided value and would stall.
    fn batch_is_acceptable(&self, batch: &Batch) -> bool {
        !batch.operations.is_empty()
            && batch.encoded_len() <= INBOUND_BATCH_BYTES_MAX
            && self.cluster.contains(batch.id.origin)
    }

    /// Whether every batch of a peer's value may be considered, and the
    /// value as a whole fits the protocol's bounds.
    fn value_is_acceptable(&self, value: &BatchList) -> bool {
        value.len() <= VALUE_BATCHES_MAX
            && value
                .batches()
                .iter()
                .map(|b| b.encoded_len())
                .sum::<usize>()
                <= INBOUND_BATCH_BYTES_MAX
            && value.batches().iter().all(|b| self.batch_is_acceptable(b))
    }

    // --------------------------------------------------------------- handlers

    fn adopt_batch(&mut self, now: Instant, batch: Arc<Batch>) {
        if self.insert_pending(batch) {
            self.resolve_proposal_refs();
            self.maybe_start_slot(now);
            // A slot that decided 1 may have been waiting for this payload.
            self.try_resolve_value(now);
        }
    }

    /// Puts a peer's batch into the pending queue (unless decided already);
    /// true if it was not there before.
    fn insert_pending(&mut self, batch: Arc<Batch>) -> bool {
        if self.filter.contains(&batch.id) {
            return false;
        }
        self.hlc = self.hlc.max(batch.timestamp);
        let origin = batch.id.origin;
        let me = self.me;
        let proposal = self
            .slots
            .get(&self.next_slot)
            .and_then(|inst| inst.proposals.get(me));
        let (outcome, evicted) = self.pending.insert_evicting(batch, |b| {
            b.id.origin == me || proposal.is_some_and(|p| p.contains(b.id))
        });
        if evicted.is_some() {
            self.metrics.pending_evictions += 1;
        }
        match outcome {
            Inserted::Added => {
                self.contributors_awaited.remove(&origin);
                true
            }
            Inserted::AlreadyPending => false,
            Inserted::Full => {
                self.metrics.dropped.queue_full += 1;
                false
            }
        }
    }

    /// A peer announced the value it is about to propose for `slot`: keep
    /// it for the slot (a replica that has not proposed there yet copies
    /// it) and queue its batches. Only a hint: never counted as a proposal.
    fn on_opening(&mut self, now: Instant, slot: Slot, value: BatchList) {
        if slot < self.next_slot {
            return;
        }
        self.queue_batches_of(&value);
        if let Some(inst) = self.instance_in_window(slot) {
            if inst.announced.is_none() {
                inst.announced = Some(value);
            }
        }
        self.resolve_proposal_refs();
        self.maybe_start_slot(now);
        // A slot that decided 1 may have been waiting for these payloads.
        self.try_resolve_value(now);
    }

    /// Puts every batch of a peer's value into the pending queue; true if
    /// any was not there before.
    fn queue_batches_of(&mut self, value: &BatchList) -> bool {
        let mut added = false;
        for batch in value.batches() {
            added |= self.insert_pending(batch.clone());
        }
        added
    }

    fn on_proposal(&mut self, now: Instant, from: NodeId, slot: Slot, value: BatchList) {
        // Recorded before its batches are queued, so that a replica that
        // has not proposed yet sees it and proposes the same value.
        if slot >= self.next_slot {
            self.record_peer_proposal(from, slot, &value);
        }
        // Orphan adoption: every proposed batch enters our queue, whatever
        // its slot.
        let added = self.queue_batches_of(&value);
        if slot < self.next_slot {
            self.metrics.dropped.stale += 1;
            self.reply_decision(now, from, slot, Phase::EXCHANGE);
            if !added {
                return;
            }
        }
        self.resolve_proposal_refs();
        self.maybe_start_slot(now);
        // A slot that decided 1 may have been waiting for these payloads.
        self.try_resolve_value(now);
    }

    /// Counts a peer's proposal for `slot` (not below the current slot).
    fn record_peer_proposal(&mut self, from: NodeId, slot: Slot, value: &BatchList) {
        if let Some(inst) = self.instance_in_window(slot) {
            match inst.record_proposal(from, value) {
                Recorded::New => {}
                Recorded::Duplicate => self.metrics.dropped.duplicate += 1,
                Recorded::Conflict => self.metrics.dropped.conflicting += 1,
            }
        }
    }

    /// A peer's proposal by reference: counted as the full Proposal if this
    /// replica holds the batches it names, otherwise kept (one per sender)
    /// until they arrive. Keeping it is only a delay of the message: until
    /// it is counted the replica behaves as if it had not arrived.
    fn on_proposal_ref(&mut self, now: Instant, from: NodeId, slot: Slot, id: ValueId) {
        if slot < self.next_slot {
            self.metrics.dropped.stale += 1;
            self.reply_decision(now, from, slot, Phase::EXCHANGE);
            return;
        }
        if let Some(value) = self.value_named(slot, &id) {
            self.on_proposal(now, from, slot, value);
            return;
        }
        let Some(inst) = self.instance_in_window(slot) else {
            return;
        };
        if inst.proposals.get(from).is_some() || inst.unresolved.iter().any(|(f, _)| *f == from) {
            self.metrics.dropped.duplicate += 1;
            return;
        }
        inst.unresolved.push((from, id));
        // It missed the broadcast that carried the payloads: ask the
        // sender for them rather than wait for its retransmission.
        self.metrics.proposal_fetches += 1;
        self.emit_now(Action::Send {
            to: from,
            envelope: self.envelope(Message::ProposalFetch { slot }),
        });
    }

    /// A peer holds this replica's proposal for `slot` by reference only:
    /// send it again with its payloads (or the decision, if decided).
    fn on_proposal_fetch(&mut self, now: Instant, from: NodeId, slot: Slot) {
        if slot < self.next_slot {
            // Decided: the decision serves the requester better, at once.
            self.reply_decision(now, from, slot, Phase(u32::MAX));
            return;
        }
        if self.recently_served(from, Served::Fetch(slot), now) {
            return;
        }
        let Some((token, proposal)) = self.slots.get(&slot).and_then(|inst| {
            inst.sent
                .iter()
                .find(|(_, m)| matches!(m, Message::Proposal { .. }))
                .cloned()
        }) else {
            return;
        };
        let envelope = self.envelope(proposal);
        self.emit_gated_at(token, Action::Send { to: from, envelope });
    }

    /// The payloads of the value `id` proposed for `slot`, if this replica
    /// holds them: a proposed or announced value of the slot, or batches in
    /// the pending queue. A batch id names one batch forever (its origin's
    /// incarnation is part of it), so the batches found are the sender's.
    fn value_named(&self, slot: Slot, id: &ValueId) -> Option<BatchList> {
        if let Some(inst) = self.slots.get(&slot) {
            if let Some(value) = inst.proposed_values.get(id) {
                return Some(value.clone());
            }
            if let Some(value) = inst.announced.as_ref().filter(|a| a.id() == id) {
                return Some(value.clone());
            }
        }
        self.value_from_pending(id)
    }

    /// Counts the proposals received by reference whose batches have
    /// arrived since.
    fn resolve_proposal_refs(&mut self) {
        let waiting: Vec<(Slot, NodeId, ValueId)> = self
            .slots
            .range(self.next_slot..)
            .flat_map(|(slot, inst)| {
                inst.unresolved
                    .iter()
                    .map(move |(from, id)| (*slot, *from, id.clone()))
            })
            .collect();
        for (slot, from, id) in waiting {
            let Some(value) = self.value_named(slot, &id) else {
                continue;
            };
            if let Some(inst) = self.slots.get_mut(&slot) {
                inst.unresolved.retain(|(f, _)| *f != from);
            }
            self.record_peer_proposal(from, slot, &value);
        }
    }

    fn on_round_message(
        &mut self,
        now: Instant,
        from: NodeId,
        slot: Slot,
        phase: Phase,
        msg: RoundMsg,
    ) {
        if slot < self.next_slot {
            self.metrics.dropped.stale += 1;
            self.reply_decision(now, from, slot, phase);
            return;
        }
        let phase_window = self.config.phase_window;
        let Some(inst) = self.instance_in_window(slot) else {
            return;
        };
        if phase.0 > inst.phase().0.saturating_add(phase_window) {
            self.metrics.dropped.out_of_window += 1;
            return;
        }
        let outcome = match msg {
            RoundMsg::State(bit, candidate) => inst.record_state(from, phase, bit, candidate),
            RoundMsg::Vote(vote, candidate) => inst.record_vote(from, phase, vote, candidate),
        };
        match outcome {
            Recorded::New => {}
            Recorded::Duplicate => self.metrics.dropped.duplicate += 1,
            Recorded::Conflict => self.metrics.dropped.conflicting += 1,
        }
        if slot == self.next_slot {
            self.try_resolve_value(now);
        }
    }

    fn on_decision(&mut self, now: Instant, from: NodeId, slot: Slot, value: SlotValue) {
        if slot < self.next_slot {
            self.metrics.dropped.stale += 1;
            return;
        }
        if slot == self.next_slot {
            self.commit_decision(now, value, DecisionSource::Adopted);
            return;
        }
        if slot.0 - self.next_slot.0 <= self.config.slot_window {
            self.decided_ahead.entry(slot).or_insert(value);
        } else {
            self.metrics.dropped.out_of_window += 1;
            self.note_peer_progress(from, slot.next());
        }
    }

    fn on_proposal_request(
        &mut self,
        now: Instant,
        from: NodeId,
        slot: Slot,
        wanted: Option<ValueId>,
    ) {
        if slot < self.next_slot {
            // It decided and only lacks the value: answer at once.
            self.reply_decision(now, from, slot, Phase(u32::MAX));
            return;
        }
        if self.recently_served(from, Served::Proposal(slot), now) {
            return;
        }
        let majority = self.thresholds.majority;
        let Some(inst) = self.slots.get(&slot) else {
            return;
        };
        // The requester may know the id (from a State/Vote tag) without this
        // replica having learned that it is the candidate.
        let known = wanted
            .or_else(|| inst.candidate.clone())
            .or_else(|| inst.majority_proposal(majority));
        if let Some(id) = known {
            if let Some(value) = inst
                .proposed_value(&id)
                .cloned()
                .or_else(|| self.value_from_pending(&id))
            {
                self.emit_gated(Action::Send {
                    to: from,
                    envelope: self.envelope(Message::ProposalReply { slot, value }),
                });
            }
        }
    }

    /// Whether an identical request from `peer` was answered within half a
    /// retransmit interval (answers are throttled per peer).
    fn recently_served(&mut self, peer: NodeId, what: Served, now: Instant) -> bool {
        let grace = self.config.retransmit_interval / 2;
        if let Some((last, at)) = self.served.get(&peer) {
            if *last == what && now.saturating_duration_since(*at) < grace {
                return true;
            }
        }
        self.served.insert(peer, (what, now));
        false
    }

    fn on_proposal_reply(&mut self, now: Instant, slot: Slot, value: BatchList) {
        if slot != self.next_slot {
            return;
        }
        if let Some(inst) = self.slots.get_mut(&slot) {
            if inst.candidate.is_none() {
                // A peer only replies with the value it counted a majority
                // of proposals for, which is unique.
                inst.candidate = Some(value.id().clone());
            }
            if inst.candidate.as_ref() == Some(value.id()) {
                inst.proposed_values
                    .entry(value.id().clone())
                    .or_insert(value);
            }
        }
        self.resolve_proposal_refs();
        self.try_resolve_value(now);
    }

    /// Rebuilds the value `id` from the pending queue, if every one of its
    /// batches is there.
    fn value_from_pending(&self, id: &ValueId) -> Option<BatchList> {
        let batches = id
            .batch_ids()
            .iter()
            .map(|batch| self.pending.find(*batch).cloned())
            .collect::<Option<Vec<_>>>()?;
        BatchList::new(batches).filter(|value| value.id() == id)
    }

    fn on_catch_up_request(&mut self, from: NodeId, first: Slot) {
        let first_kept = self.log.keys().next().copied().unwrap_or(self.next_slot);
        if first < first_kept {
            let envelope = self.envelope(Message::CatchUpReply {
                decisions: Vec::new(),
                responder_next: self.next_slot,
                compacted_below: Some(first_kept),
            });
            self.emit_gated(Action::Send { to: from, envelope });
            return;
        }
        // Bounded by count and by bytes (a reply must fit in one frame), and
        // always at least one value so a laggard makes progress.
        let mut decisions: Vec<(Slot, SlotValue)> = Vec::new();
        let mut bytes = 0usize;
        for (slot, LoggedDecision { value, .. }) in
            self.log.range(first..).take(self.config.catch_up_batch_max)
        {
            let size = match value {
                SlotValue::Null => 16,
                SlotValue::Batches(list) => list.encoded_len() + 16,
            };
            if !decisions.is_empty() && bytes + size > self.config.catch_up_bytes_max {
                break;
            }
            bytes += size;
            decisions.push((*slot, value.clone()));
        }
        if decisions.is_empty() {
            return;
        }
        let envelope = self.envelope(Message::CatchUpReply {
            decisions,
            responder_next: self.next_slot,
            compacted_below: None,
        });
        self.emit_gated(Action::Send { to: from, envelope });
    }

    fn on_catch_up_reply(
        &mut self,
        now: Instant,
        from: NodeId,
        decisions: Vec<(Slot, SlotValue)>,
        responder_next: Slot,
        compacted_below: Option<Slot>,
    ) {
        self.note_peer_progress(from, responder_next);
        if let Some(first_kept) = compacted_below {
            if first_kept > self.next_slot
                && !self.recently_served(from, Served::AskedSnapshot, now)
            {
                self.metrics.snapshot_requests += 1;
                self.emit_now(Action::Send {
                    to: from,
                    envelope: self.envelope(Message::SnapshotRequest),
                });
                self.emit_now(Action::NeedSnapshot {
                    peer: from,
                    slot: first_kept,
                });
            }
            return;
        }
        let mut progressed = false;
        for (slot, value) in decisions {
            if slot == self.next_slot {
                self.commit_decision(now, value, DecisionSource::Adopted);
                progressed = true;
            } else if slot > self.next_slot && slot.0 - self.next_slot.0 <= self.config.slot_window
            {
                self.decided_ahead.entry(slot).or_insert(value);
            }
        }
        if progressed {
            // Stream the rest without waiting for the next timer.
            self.catch_up_not_before = now;
            self.maybe_catch_up(now, true);
        }
    }

    // ------------------------------------------------------------ slot engine

    /// Returns the instance for `slot` if it is the current slot or inside
    /// the buffering window; counts and notes progress otherwise.
    fn instance_in_window(&mut self, slot: Slot) -> Option<&mut SlotInstance> {
        if slot.0 - self.next_slot.0 > self.config.slot_window {
            self.metrics.dropped.out_of_window += 1;
            return None;
        }
        Some(self.slots.entry(slot).or_insert_with(SlotInstance::new))
    }

    /// Starts the current slot if it has not started and a batch is pending.
    fn maybe_start_slot(&mut self, now: Instant) {
        let slot = self.next_slot;
        if self.participate_from.is_none_or(|from| slot < from) {
            // The fresh store guard: this replica's forgotten predecessor
            // may have spoken in this slot.
            return;
        }
        let started = self
            .slots
            .get(&slot)
            .map(|inst| inst.stage != Stage::NotStarted)
            .unwrap_or(false);
        if started || self.pending.is_empty() {
            return;
        }
        let peers_proposed = self
            .slots
            .get(&slot)
            .is_some_and(|inst| !inst.proposals.is_empty() || inst.announced.is_some());
        if !peers_proposed && (self.opening_held || self.waits_for_opener(now)) {
            return;
        }
        if !peers_proposed && self.waits_for_contributors(now) {
            return;
        }
        let Some(value) = self.choose_proposal(slot) else {
            return;
        };
        self.open_wait.cancel();
        self.contributors_awaited.clear();
        self.contributor_wait_until = None;
        self.proposed_at = Some(now);
        let me = self.me;
        let inst = self.slots.entry(slot).or_insert_with(SlotInstance::new);
        // A value a peer broadcast with its payloads (proposed, or
        // announced) is held by every peer that got that broadcast.
        let peers_hold_value = inst.proposed_values.contains_key(value.id())
            || inst
                .announced
                .as_ref()
                .is_some_and(|a| a.id() == value.id());
        inst.record_proposal(me, &value);
        inst.stage = Stage::Exchange;
        self.metrics.proposals_sent += 1;
        self.metrics.proposed_batches += value.len() as u64;
        self.last_progress = now;
        let announce = self.config.announce_opening && !peers_proposed;
        if announce {
            // Opening the slot with this replica's own queue: the others
            // may copy the value now rather than once this replica's
            // Proposal record is durable, and write theirs meanwhile.
            self.metrics.openings_sent += 1;
            self.emit_now(Action::Broadcast {
                envelope: self.envelope(Message::Opening {
                    slot,
                    value: value.clone(),
                }),
            });
        }
        // Payloads cross the network once per slot: a value the peers
        // already received goes out by reference. The Proposal record and
        // every retransmission carry the payloads.
        let by_reference = announce || peers_hold_value;
        let wire = by_reference.then(|| Message::ProposalRef {
            slot,
            value: value.id().clone(),
        });
        if by_reference {
            self.metrics.proposals_by_reference += 1;
        }
        self.send_protocol_as(slot, Message::Proposal { slot, value }, wire);
    }

    /// Whether this replica should leave opening `slot` to its opener for
    /// now. A proposal carries every pending batch, so replicas that open
    /// a slot at the same moment with different queues (typically each
    /// with only its own new batch, right after a decision emptied the
    /// queues) propose different values and the slot decides ⊥. So one
    /// replica, the origin of the last batch of the previous value (all
    /// agree on it), opens the slot; the others forward their batches to
    /// it (as every batch not proposed at once is) and propose the value
    /// it proposed. If no proposal arrives within `opener_wait` (the
    /// opener crashed or is slow), a replica proposes what it has: this
    /// is a performance hint, never needed for safety or liveness.
    fn waits_for_opener(&mut self, now: Instant) -> bool {
        let Some(opener) = self.opener else {
            return false;
        };
        let wait = self.config.opener_wait;
        if opener == self.me || wait.is_zero() || self.learner_peers.contains(&opener) {
            return false;
        }
        self.open_wait.poll(now, wait)
    }

    /// Whether this replica, the opener of the current slot, should wait a
    /// little longer for the batches of the replicas that contributed to
    /// the previous value. Those replicas answered their clients at about
    /// the same moment as this one, and their clients' next operations
    /// reach this replica as `Forward`s a message delay later: opening at
    /// once would leave them for the next slot, so that the clients split
    /// into groups taking turns, each slot carrying half of them. The wait
    /// ends as soon as a new batch from each has arrived, and lasts at most
    /// `contributor_wait` and half the time the last slot took (so it costs
    /// little where slots are fast). A throughput hint only.
    fn waits_for_contributors(&mut self, now: Instant) -> bool {
        if self.contributors_awaited.is_empty() {
            return false;
        }
        let until = match self.contributor_wait_until {
            Some(until) => until,
            None => {
                let half_slot = self.last_slot_time.map_or(Duration::ZERO, |t| t / 2);
                let until = now + self.config.contributor_wait.min(half_slot);
                self.contributor_wait_until = Some(until);
                until
            }
        };
        if now < until {
            return true;
        }
        self.contributors_awaited.clear();
        self.contributor_wait_until = None;
        false
    }

    /// What to propose for `slot`: the value peers already proposed for it
    /// (the one most of them did), so that the replicas agree on one value;
    /// otherwise every pending batch, oldest first, within this replica's
    /// byte limit and the protocol's batch count. `None` if nothing is
    /// pending.
    fn choose_proposal(&mut self, slot: Slot) -> Option<BatchList> {
        let filter = &self.filter;
        if let Some(inst) = self.slots.get(&slot) {
            let usable =
                |value: &BatchList| !value.batches().iter().any(|b| filter.contains(&b.id));
            let copied = inst
                .most_proposed(usable)
                .or_else(|| inst.announced.clone().filter(|value| usable(value)));
            if copied.is_some() {
                return copied;
            }
        }
        let head = self.pending.head_skipping(|id| filter.contains(id))?;
        let byte_limit = self.config.batch_bytes_max.min(INBOUND_BATCH_BYTES_MAX);
        let mut bytes = head.encoded_len();
        let mut batches = vec![head];
        for batch in self.pending.iter().skip(1) {
            if batches.len() >= VALUE_BATCHES_MAX {
                break;
            }
            if filter.contains(&batch.id) {
                continue;
            }
            if bytes + batch.encoded_len() > byte_limit {
                break;
            }
            bytes += batch.encoded_len();
            batches.push(batch.clone());
        }
        BatchList::new(batches)
    }

    /// Whether the value this replica proposed for the current slot holds
    /// the batch `id`.
    fn current_proposal_contains(&self, id: BatchId) -> bool {
        self.slots
            .get(&self.next_slot)
            .and_then(|inst| inst.proposals.get(self.me))
            .is_some_and(|value| value.contains(id))
    }

    /// Runs the current slot's rounds as far as the received messages allow.
    fn drive(&mut self, now: Instant) {
        loop {
            let slot = self.next_slot;
            let thresholds = self.thresholds;
            let decide_threshold = self.decide_threshold();
            let coin_seed = self.coin_seed;
            let epoch = self.cluster.epoch;
            let local_coin = self.local_coin();
            let unanimity_size = self.unanimity_size();
            let last_urgent_token = self.last_urgent_token;
            let Some(inst) = self.slots.get_mut(&slot) else {
                return;
            };
            if let Some(value) = inst
                .unanimous_proposal(unanimity_size)
                .and_then(|id| inst.proposed_value(id))
                .cloned()
            {
                // Every member proposed this value: the slot can decide
                // nothing else. The delivery waits only for this replica's
                // own Proposal record (the others' are durable at their
                // senders, who sent them), not for a State or Vote it may
                // have issued meanwhile.
                // (Recovered records carry token 0: already durable. Without
                // a record of it at all, which should not happen, wait for
                // everything issued so far.)
                let own_proposal = inst.own_proposal_token().unwrap_or(last_urgent_token);
                self.last_progress = now;
                self.metrics.unanimous_slots += 1;
                self.record_phases(Phase::FIRST);
                self.last_unanimous = true;
                self.commit_decision(
                    now,
                    SlotValue::Batches(value),
                    DecisionSource::Unanimous { own_proposal },
                );
                continue;
            }
            if inst.stage == Stage::Exchange
                && self.last_unanimous
                && waits_for_unanimity(
                    inst,
                    &thresholds,
                    self.durable_token,
                    now,
                    &mut self.unanimity_wait,
                    self.config
                        .unanimity_wait
                        .min(self.last_slot_time.map_or(Duration::ZERO, |t| t / 2)),
                )
            {
                return;
            }
            let coin = |phase: Phase| {
                local_coin.unwrap_or_else(|| common_coin(coin_seed, epoch, slot, phase))
            };
            let Some(outcome) = inst.evaluate(&thresholds, decide_threshold, coin) else {
                return;
            };
            self.last_progress = now;
            match outcome {
                RoundOutcome::State(phase, computed) => {
                    let Some(inst) = self.slots.get_mut(&slot) else {
                        return;
                    };
                    let bit = inst.restored_override_state(phase).unwrap_or(computed);
                    let candidate = if bit == Bit::One {
                        inst.candidate.clone()
                    } else {
                        None
                    };
                    inst.record_state(self.me, phase, bit, candidate.clone());
                    inst.stage = Stage::Round1(phase);
                    let already_sent = inst.restored_states.contains_key(&phase);
                    if !already_sent {
                        self.send_protocol(
                            slot,
                            Message::State {
                                slot,
                                phase,
                                bit,
                                candidate,
                            },
                        );
                    }
                }
                RoundOutcome::Vote(phase, computed) => {
                    let Some(inst) = self.slots.get_mut(&slot) else {
                        return;
                    };
                    let vote = inst.restored_override_vote(phase).unwrap_or(computed);
                    let candidate = if vote == VoteValue::Bit(Bit::One) {
                        inst.candidate.clone()
                    } else {
                        None
                    };
                    inst.record_vote(self.me, phase, vote, candidate.clone());
                    inst.stage = Stage::Round2(phase);
                    let already_sent = inst.restored_votes.contains_key(&phase);
                    if !already_sent {
                        self.send_protocol(
                            slot,
                            Message::Vote {
                                slot,
                                phase,
                                vote,
                                candidate,
                            },
                        );
                    }
                }
                RoundOutcome::Decide(phase, Bit::Zero) => {
                    self.record_phases(phase);
                    self.last_unanimous = false;
                    self.commit_decision(now, SlotValue::Null, DecisionSource::Protocol(phase));
                }
                RoundOutcome::Decide(phase, Bit::One) => {
                    self.record_phases(phase);
                    self.last_unanimous = false;
                    if let Some(inst) = self.slots.get_mut(&slot) {
                        inst.stage = Stage::AwaitingValue(phase);
                    }
                    if !self.try_resolve_value(now) {
                        self.metrics.value_fetches += 1;
                        let candidate = self.slots.get(&slot).and_then(|i| i.candidate.clone());
                        self.emit_now(Action::Broadcast {
                            envelope: self.envelope(Message::ProposalRequest { slot, candidate }),
                        });
                        return;
                    }
                }
            }
        }
    }

    /// When the current slot decided 1, looks for the majority batch; commits
    /// the decision and returns true if found.
    fn try_resolve_value(&mut self, now: Instant) -> bool {
        let slot = self.next_slot;
        let majority = self.thresholds.majority;
        let Some(inst) = self.slots.get_mut(&slot) else {
            return false;
        };
        let Stage::AwaitingValue(decided_phase) = inst.stage else {
            return false;
        };
        if inst.candidate.is_none() {
            inst.candidate = inst.majority_proposal(majority);
        }
        let Some(id) = inst.candidate.clone() else {
            return false;
        };
        let value = inst
            .proposed_value(&id)
            .cloned()
            .or_else(|| self.value_from_pending(&id));
        match value {
            Some(value) => {
                self.commit_decision(
                    now,
                    SlotValue::Batches(value),
                    DecisionSource::Protocol(decided_phase),
                );
                true
            }
            None => false,
        }
    }

    fn record_phases(&mut self, phase: Phase) {
        self.metrics.slots_decided_by_protocol += 1;
        self.metrics.phases_total += u64::from(phase.0);
        self.metrics.phases_max = self.metrics.phases_max.max(phase.0);
        if phase == Phase::FIRST {
            self.metrics.fast_path_slots += 1;
        }
    }

    /// Records the decision of `next_slot`, persists it, delivers it once
    /// durable, and moves on (consuming decisions already known for the
    /// following slots).
    fn commit_decision(&mut self, now: Instant, value: SlotValue, source: DecisionSource) {
        let slot = self.next_slot;
        let value_opener = value.batches().last().map(|b| b.id.origin);
        let contributors: BTreeSet<NodeId> = if value_opener == Some(self.me) {
            value
                .batches()
                .iter()
                .map(|b| b.id.origin)
                .filter(|origin| *origin != self.me && !self.learner_peers.contains(origin))
                .collect()
        } else {
            BTreeSet::new()
        };
        let my_proposal = self
            .slots
            .get(&slot)
            .and_then(|inst| inst.proposals.get(self.me))
            .cloned();
        self.slots.remove(&slot);
        self.metrics.slots_decided += 1;
        match source {
            DecisionSource::Protocol(_) | DecisionSource::Unanimous { .. } => {}
            DecisionSource::Adopted => self.metrics.decisions_adopted += 1,
            DecisionSource::Recovered => {}
        }
        let outcome = match &value {
            SlotValue::Null => {
                self.metrics.null_slots += 1;
                DeliveryOutcome::Null
            }
            SlotValue::Batches(list) => {
                let mut fresh = Vec::with_capacity(list.len());
                let mut duplicates = Vec::new();
                for batch in list.batches() {
                    self.pending.remove(&batch.ordering_key());
                    if self.filter.insert(batch.id) {
                        fresh.push(batch.clone());
                    } else {
                        self.metrics.duplicate_batches += 1;
                        duplicates.push(batch.id);
                    }
                }
                if fresh.is_empty() {
                    DeliveryOutcome::Duplicate(duplicates)
                } else {
                    DeliveryOutcome::Apply(fresh)
                }
            }
        };
        if self.no_requeue_mutation() {
            if let Some(mine) = &my_proposal {
                if value.value_id() != Some(mine) {
                    for id in mine.batch_ids() {
                        if let Some(batch) = self.pending.find(*id).cloned() {
                            self.pending.remove(&batch.ordering_key());
                        }
                    }
                }
            }
        }
        let decided_phase = match source {
            DecisionSource::Protocol(phase) => phase,
            // Peers' phase-1 States (sent with their proposals) are still
            // in flight: answer them as messages of the deciding phase.
            DecisionSource::Unanimous { .. } => Phase::FIRST,
            DecisionSource::Adopted | DecisionSource::Recovered => Phase::EXCHANGE,
        };
        let entry = LoggedDecision {
            bytes: value_bytes(&value),
            value: value.clone(),
            at: now,
            phase: decided_phase,
        };
        self.log_bytes += entry.bytes;
        if let Some(old) = self.log.insert(slot, entry) {
            self.log_bytes -= old.bytes;
        }
        while self.log.len() as u64 > self.config.decided_retention
            || (self.log_bytes > self.config.decided_retention_bytes
                && self.log.len() as u64 > self.config.slot_window)
        {
            if let Some((_, old)) = self.log.pop_first() {
                self.log_bytes -= old.bytes;
            }
        }
        let delivery = Action::Deliver(Delivery {
            slot,
            value: value.value_id().cloned(),
            outcome,
        });
        if source == DecisionSource::Recovered {
            // Already durable.
            self.emit_now(delivery);
        } else {
            // No Decision broadcast: in the common case every replica decides
            // from the same votes. A replica that did not decide moves to a
            // later phase, and its first message for it is answered with the
            // decision at once (`reply_decision`).
            //
            // The delivery waits for the records issued before this decision
            // (this replica's own Proposal, States and Votes), not for the
            // `Decided` record: the value is fixed by votes that are durable
            // at f + 1 senders, so a crash that loses the `Decided` record
            // only makes this replica learn the same value again.
            //
            // A unanimous decision is fixed by the n proposals, each durable
            // at its sender before it was sent; this replica's own counts
            // once its record is durable.
            let votes_durable = match source {
                DecisionSource::Unanimous { own_proposal } => own_proposal,
                _ => self.last_urgent_token,
            };
            // The common case: the value is this replica's own Proposal,
            // whose record already holds the payload.
            let record = match (&my_proposal, value.value_id()) {
                (Some(mine), Some(id)) if mine == id => PersistRecord::DecidedAsProposed {
                    slot,
                    value: id.clone(),
                },
                _ => PersistRecord::Decided { slot, value },
            };
            self.persist(record);
            if self.deliver_early_mutation() {
                self.emit_now(delivery);
            } else {
                self.emit_delivery_at(votes_durable, delivery);
            }
        }
        self.next_slot = slot.next();
        self.last_progress = now;
        self.opener = value_opener;
        self.open_wait = TimedWait::NotStarted;
        if let Some(at) = self.proposed_at.take() {
            self.last_slot_time = Some(now.saturating_duration_since(at));
        }
        self.contributors_awaited = contributors;
        self.contributor_wait_until = None;
        self.unanimity_wait = TimedWait::NotStarted;
        if self.config.hold_opening_after_decision && value_opener.is_some() {
            // The driver releases it once the decided operations are
            // applied and their clients answered (`hold_opening`).
            self.opening_held = true;
        }
        if source == DecisionSource::Recovered {
            return;
        }
        if let Some(next_value) = self.decided_ahead.remove(&self.next_slot) {
            self.commit_decision(now, next_value, DecisionSource::Adopted);
            return;
        }
        self.maybe_start_slot(now);
    }

    // -------------------------------------------------------------- catch-up

    fn note_peer_progress(&mut self, peer: NodeId, next: Slot) {
        let entry = self.peer_next.entry(peer).or_insert(next);
        *entry = (*entry).max(next);
    }

    fn maybe_catch_up(&mut self, now: Instant, stalled: bool) {
        if now < self.catch_up_not_before {
            return;
        }
        let mine = self.next_slot;
        // Any peer that is ahead can answer; pick one at random so that a
        // crashed peer's stale report cannot capture every request.
        let ahead: Vec<(NodeId, Slot)> = self
            .peer_next
            .iter()
            .filter(|(_, s)| **s > mine)
            .map(|(id, s)| (*id, *s))
            .collect();
        if ahead.is_empty() {
            return;
        }
        let furthest = ahead.iter().map(|(_, s)| *s).max().unwrap_or(mine);
        let far_behind = furthest.0.saturating_sub(mine.0) > self.config.slot_window;
        if !(stalled || far_behind) {
            return;
        }
        let pick = (self.rng.next_u64() % ahead.len() as u64) as usize;
        let peer = ahead[pick].0;
        self.metrics.catch_up_requests += 1;
        self.catch_up_not_before = now + self.config.retransmit_interval;
        self.emit_now(Action::Send {
            to: peer,
            envelope: self.envelope(Message::CatchUpRequest { from: mine }),
        });
    }

    /// Answers a message about a decided slot with the decision. A message
    /// for a later phase than the one this replica decided in comes from a
    /// replica that did not decide: it is answered at once. Messages of the
    /// deciding phase or earlier were in flight when we decided, and their
    /// senders usually decide from the same votes: they are answered only
    /// if they are still arriving half a retransmit interval later.
    fn reply_decision(&mut self, now: Instant, to: NodeId, slot: Slot, phase: Phase) {
        let grace = self.config.retransmit_interval / 2;
        if let Some(LoggedDecision {
            at: decided_at,
            phase: decided_phase,
            ..
        }) = self.log.get(&slot)
        {
            let urgent = phase > *decided_phase;
            if !urgent && now.saturating_duration_since(*decided_at) < grace {
                return;
            }
        }
        if let Some((last_slot, at)) = self.decision_replies.get(&to) {
            if *last_slot == slot && now.saturating_duration_since(*at) < grace {
                return;
            }
        }
        self.decision_replies.insert(to, (slot, now));
        match self.log.get(&slot) {
            Some(LoggedDecision { value, .. }) => {
                let envelope = self.envelope(Message::Decision {
                    slot,
                    value: value.clone(),
                });
                self.emit_gated(Action::Send { to, envelope });
            }
            None => self.on_catch_up_request(to, slot),
        }
    }

    /// Forwards pending batches again. A learner forwards its oldest few
    /// pending batches, its own or peers' (it cannot propose them, the
    /// others must: a batch whose origin crashed before the others had it
    /// would otherwise stay with the learner, and an idle cluster would
    /// never decide the slots the learner waits for). A participant
    /// forwards its oldest few own batches that were already pending at the
    /// previous check: a `Forward` may have been lost, and a replica that
    /// joins the values its peers open never proposes its own batch itself,
    /// so without this a batch the others never received could wait for as
    /// long as they stay busy.
    fn reforward_batches(&mut self, learner: bool) {
        let me = self.me;
        let own: Vec<Arc<Batch>> = self
            .pending
            .iter()
            .filter(|b| (learner || b.id.origin == me) && !self.filter.contains(&b.id))
            .take(REFORWARD_BATCHES_MAX)
            .cloned()
            .collect();
        let previous = std::mem::replace(
            &mut self.own_pending_at_check,
            own.iter().map(|b| b.id).collect(),
        );
        for batch in own {
            if learner || previous.contains(&batch.id) {
                self.metrics.reforwards += 1;
                self.emit_now(Action::Broadcast {
                    envelope: self.envelope(Message::Forward { batch }),
                });
            }
        }
    }

    /// Sends a heartbeat to every peer (with this start's probe while a
    /// learner).
    fn send_heartbeat(&mut self) {
        let learner = self.is_learner();
        let message = Message::Heartbeat {
            next_slot: self.next_slot,
            learner,
            probe: if learner { self.probe } else { 0 },
        };
        let envelope = self.envelope(message);
        self.emit_now(Action::Broadcast { envelope });
    }

    /// Answers a learner's heartbeat at once, echoing its probe.
    fn send_heartbeat_to(&mut self, to: NodeId, probe: u64) {
        let message = Message::Heartbeat {
            next_slot: self.next_slot,
            learner: false,
            probe,
        };
        let envelope = self.envelope(message);
        self.emit_now(Action::Send { to, envelope });
    }

    /// Re-sends this replica's released messages for the current slot (and
    /// its value request), after a stall or a restart.
    fn retransmit_current(&mut self) {
        let slot = self.next_slot;
        let durable = self.durable_token;
        let Some(inst) = self.slots.get(&slot) else {
            return;
        };
        let messages: Vec<Message> = inst
            .sent
            .iter()
            .filter(|(token, _)| *token <= durable)
            .map(|(_, m)| m.clone())
            .collect();
        let awaiting = matches!(inst.stage, Stage::AwaitingValue(_));
        let candidate = inst.candidate.clone();
        if messages.is_empty() && !awaiting {
            return;
        }
        self.metrics.retransmits += 1;
        for message in messages {
            self.emit_now(Action::Broadcast {
                envelope: self.envelope(message),
            });
        }
        if awaiting {
            self.emit_now(Action::Broadcast {
                envelope: self.envelope(Message::ProposalRequest { slot, candidate }),
            });
        }
    }

    // ------------------------------------------------------------- emission

    fn envelope(&self, message: Message) -> Envelope {
        Envelope {
            sender: self.me,
            epoch: self.cluster.epoch,
            message,
        }
    }

    fn persist(&mut self, record: PersistRecord) -> u64 {
        self.last_token += 1;
        let token = self.last_token;
        if record.is_urgent() {
            self.last_urgent_token = token;
        }
        self.ready.push_back(Action::Persist {
            token: PersistToken(token),
            record,
        });
        token
    }

    /// Persists a Proposal/State/Vote, then broadcasts it once durable.
    fn send_protocol(&mut self, slot: Slot, message: Message) {
        self.send_protocol_as(slot, message, None);
    }

    /// As [`Self::send_protocol`], but broadcasts `wire` (a shorter form of
    /// `message`) when given; the record and retransmissions keep `message`.
    fn send_protocol_as(&mut self, slot: Slot, message: Message, wire: Option<Message>) {
        let token = self.persist(PersistRecord::Sent {
            slot,
            message: message.clone(),
        });
        if let Some(inst) = self.slots.get_mut(&slot) {
            inst.sent.push((token, message.clone()));
        }
        self.emit_gated(Action::Broadcast {
            envelope: self.envelope(wire.unwrap_or(message)),
        });
    }

    /// Queues an action that must wait until every record issued so far is
    /// durable (`Decided` records aside: nothing waits on them).
    fn emit_gated(&mut self, action: Action) {
        let gate = if self.send_before_persist_mutation() {
            0
        } else {
            self.last_urgent_token
        };
        self.emit_gated_at(gate, action);
    }

    /// Queues an action that must wait until every record up to `gate` is
    /// durable. Held actions are released in order, so an action never
    /// overtakes one queued before it.
    fn emit_gated_at(&mut self, gate: u64, action: Action) {
        if gate <= self.durable_token && self.held.is_empty() {
            self.ready.push_back(action);
        } else {
            self.held.push_back((gate, action));
        }
    }

    /// Queues a delivery that must wait until every record up to `gate` is
    /// durable. Deliveries keep their own queue, in slot order: a delivery
    /// does not wait behind a message held for a later record (a unanimous
    /// decision's delivery waits only for the replica's Proposal record,
    /// not for a State issued after it).
    fn emit_delivery_at(&mut self, gate: u64, delivery: Action) {
        if gate <= self.durable_token && self.held_deliveries.is_empty() {
            self.ready.push_back(delivery);
        } else {
            self.held_deliveries.push_back((gate, delivery));
        }
    }

    /// Queues an action that depends on nothing unpersisted.
    fn emit_now(&mut self, action: Action) {
        self.ready.push_back(action);
    }

    fn jittered(&mut self, base: Duration) -> Duration {
        let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if nanos >= 5 {
            self.rng.next_u64() % (nanos / 5)
        } else {
            0
        };
        Duration::from_nanos(nanos.saturating_add(jitter))
    }

    // -------------------------------------------------------------- mutations

    fn decide_threshold(&self) -> usize {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::protocol::config::Mutation::DecideThresholdMinusOne {
            return self.thresholds.decide - 1;
        }
        self.thresholds.decide
    }

    /// How many identical proposals decide a slot at once: all n members.
    fn unanimity_size(&self) -> usize {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::protocol::config::Mutation::UnanimityOfQuorum {
            return self.thresholds.quorum;
        }
        self.thresholds.n
    }

    fn local_coin(&self) -> Option<Bit> {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::protocol::config::Mutation::PerReplicaCoin {
            let index = self
                .cluster
                .nodes
                .iter()
                .position(|n| *n == self.me)
                .unwrap_or(0);
            return Some(if index % 2 == 0 { Bit::Zero } else { Bit::One });
        }
        None
    }

    fn no_requeue_mutation(&self) -> bool {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::protocol::config::Mutation::NoRequeue {
            return true;
        }
        false
    }

    fn fresh_guard_disabled(&self) -> bool {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::protocol::config::Mutation::NoFreshStoreGuard {
            return true;
        }
        false
    }

    fn deliver_early_mutation(&self) -> bool {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::protocol::config::Mutation::DeliverBeforeVotesDurable {
            return true;
        }
        false
    }

    fn send_before_persist_mutation(&self) -> bool {
        #[cfg(feature = "mutations")]
        if self.config.mutation == crate::protocol::config::Mutation::SendBeforePersist {
            return true;
        }
        false
    }
}

/// Whether the exchange of `inst` should wait for the remaining members'
/// proposals before this replica sends its State (`unanimity_wait`): when
/// n − f or more proposals are in and all agree, the rest may well agree
/// too, and then the slot decides on the proposals alone. Waiting is worth
/// it only if this replica's own Proposal is already durable (otherwise the
/// State shares its sync for free). Starts the wait on first use; false
/// once it expired (or with no wait at all).
fn waits_for_unanimity(
    inst: &SlotInstance,
    thresholds: &Thresholds,
    durable_token: u64,
    now: Instant,
    state: &mut TimedWait,
    wait: Duration,
) -> bool {
    let received = inst.proposals.len();
    let worth_waiting = !wait.is_zero()
        && received >= thresholds.quorum
        && received < thresholds.n
        && inst.agreed_proposal().is_some()
        && inst
            .own_proposal_token()
            .is_some_and(|token| token <= durable_token);
    if !worth_waiting {
        // No longer worth it (say, a proposal that disagrees arrived): end
        // the wait for this slot, so that no deadline is left behind.
        state.cancel_for_slot();
        return false;
    }
    state.poll(now, wait)
}

/// A bounded wait that happens at most once per slot. Once over it stays
/// over until the next slot resets it: a deadline left in the past would
/// wake the driver again at once, for ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimedWait {
    NotStarted,
    Until(Instant),
    Expired,
}

impl TimedWait {
    /// Whether to keep waiting: starts the wait (for `wait`) on first use,
    /// and ends it for the slot once `now` reaches the deadline.
    fn poll(&mut self, now: Instant, wait: Duration) -> bool {
        match *self {
            TimedWait::Expired => false,
            TimedWait::NotStarted => {
                *self = TimedWait::Until(now + wait);
                true
            }
            TimedWait::Until(until) if now < until => true,
            TimedWait::Until(_) => {
                *self = TimedWait::Expired;
                false
            }
        }
    }

    /// Ends a running wait for the slot if its deadline has come; true if
    /// it did.
    fn expire_if_due(&mut self, now: Instant) -> bool {
        match *self {
            TimedWait::Until(until) if now >= until => {
                *self = TimedWait::Expired;
                true
            }
            _ => false,
        }
    }

    /// Ends a running wait for the slot (it is no longer needed).
    fn cancel_for_slot(&mut self) {
        if matches!(self, TimedWait::Until(_)) {
            *self = TimedWait::Expired;
        }
    }

    /// Drops a running wait's deadline without ending the wait for good
    /// (the slot started, so the wait is never asked again).
    fn cancel(&mut self) {
        if matches!(self, TimedWait::Until(_)) {
            *self = TimedWait::NotStarted;
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match *self {
            TimedWait::Until(until) => Some(until),
            TimedWait::NotStarted | TimedWait::Expired => None,
        }
    }
}

/// Own batches a learner forwards again per retransmit interval.
const REFORWARD_BATCHES_MAX: usize = 16;

/// A decided slot kept in memory to answer laggards.
#[derive(Debug)]
struct LoggedDecision {
    value: SlotValue,
    /// When this replica learned it.
    at: Instant,
    /// The phase in which it decided by its own rounds (phase 0: learned
    /// from a peer).
    phase: Phase,
    /// Encoded bytes of the value (counted against the retention bound).
    bytes: usize,
}

/// Encoded bytes a decided value keeps in memory (⊥ counts as nothing).
fn value_bytes(value: &SlotValue) -> usize {
    match value {
        SlotValue::Null => 0,
        SlotValue::Batches(list) => list.encoded_len(),
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("node", &self.me)
            .field("next_slot", &self.next_slot)
            .field("pending", &self.pending.len())
            .field("durable_token", &self.durable_token)
            .field("last_token", &self.last_token)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DecisionSource {
    /// Decided by this replica's own rounds, in this phase.
    Protocol(Phase),
    /// Decided because every member proposed the value; `own_proposal` is
    /// the persist token of this replica's Proposal record (0: recovered,
    /// already durable).
    Unanimous { own_proposal: u64 },
    /// Learned from a peer's Decision or catch-up reply.
    Adopted,
    /// Replayed from durable storage at start-up.
    Recovered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    Proposal(Slot),
    Fetch(Slot),
    CatchUp(Slot),
    Snapshot,
    AskedSnapshot,
}

enum RoundMsg {
    State(Bit, Option<ValueId>),
    Vote(VoteValue, Option<ValueId>),
}

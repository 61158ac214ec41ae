//! The engine loop: one task owns the `Replica`. A biased `select!` takes one
//! input per iteration — shutdown, durability, an inbound message, client
//! submissions, a timer — makes exactly one `handle_*` call (or a batch
//! flush), then drains every action the replica has ready. No protocol
//! decision is made here.

use crate::apply::{ApplyCommand, ApplyProgress, WaiterRegistry};
use crate::batcher::Batcher;
use crate::error::{EngineError, SubmitError};
use crate::handle::ClientRequest;
use crate::persist::PersistCommand;
use crate::refill::RefillWait;
use crate::status::{EngineStatus, Histogram, PeerStatus};
use crate::RabiaConfig;
use rabia_core::protocol::{Action, DeliveryOutcome, PersistToken, Replica};
use rabia_core::time::Instant as CoreInstant;
use rabia_core::{BatchId, NodeId, Operation};
use rabia_network::Transport;
use rabia_persistence::PersistenceError;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most client requests taken from the queue in one loop iteration.
const REQUEST_BURST: usize = 4096;
/// Most yields spent gathering resubmitted operations before an idle flush.
const GATHER_ROUNDS_MAX: usize = 8;
/// Most inbound messages handled in one loop iteration.
const MESSAGE_BURST: usize = 256;

/// The outcome of handing work to a bounded queue.
enum Queued {
    Sent,
    /// Shutdown was requested while waiting for space.
    Shutdown,
    /// The receiving task is gone.
    Closed,
}

/// Waits for space in a bounded queue, but gives up on shutdown: a stuck
/// state machine or disk must not make the engine deaf to `shutdown()`.
async fn send_or_stop<T>(
    queue: &mpsc::Sender<T>,
    item: T,
    shutdown: &mut watch::Receiver<bool>,
) -> Queued {
    let permit = tokio::select! {
        biased;
        permit = queue.reserve() => permit,
        _ = shutdown.wait_for(|stop| *stop) => return Queued::Shutdown,
    };
    match permit {
        Ok(permit) => {
            permit.send(item);
            Queued::Sent
        }
        Err(_) => Queued::Closed,
    }
}

/// A spawned helper task whose result is taken at most once: awaiting a
/// tokio `JoinHandle` again after it returned panics.
pub(crate) struct Task<T> {
    handle: Option<JoinHandle<T>>,
}

impl<T> Task<T> {
    pub(crate) fn new(handle: JoinHandle<T>) -> Self {
        Task {
            handle: Some(handle),
        }
    }

    /// The task's result. Cancel-safe (usable in `select!`); pending forever
    /// once the result was taken.
    async fn ended(&mut self) -> Result<T, tokio::task::JoinError> {
        match &mut self.handle {
            Some(handle) => {
                let result = handle.await;
                self.handle = None;
                result
            }
            None => std::future::pending().await,
        }
    }

    /// Aborts the task (if still running) and waits until it is gone.
    async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

enum PersistEvent {
    TaskEnded(Result<Result<(), PersistenceError>, tokio::task::JoinError>),
    Snapshot(Option<PersistCommand>),
}

/// Where protocol records go.
pub(crate) enum Persistor {
    /// Durable storage behind the group-commit task.
    Task {
        commands: mpsc::Sender<PersistCommand>,
        task: Task<Result<(), PersistenceError>>,
    },
    /// Volatile storage, called inline; snapshots from the apply task arrive
    /// on `snapshots`.
    Inline {
        storage: Box<dyn rabia_persistence::Persistence>,
        snapshots: mpsc::Receiver<PersistCommand>,
    },
}

pub(crate) struct Driver {
    pub(crate) me: NodeId,
    pub(crate) config: RabiaConfig,
    pub(crate) replica: Replica,
    pub(crate) transport: Option<Box<dyn Transport>>,
    pub(crate) origin: Instant,
    pub(crate) wall_clock: crate::engine::WallClock,
    pub(crate) batcher: Batcher,
    pub(crate) requests: mpsc::Receiver<ClientRequest>,
    pub(crate) operations: Option<mpsc::UnboundedReceiver<Operation>>,
    pub(crate) persist: Persistor,
    pub(crate) durable: watch::Receiver<u64>,
    /// Keeps the durability channel open in inline mode (a closed channel
    /// would make `changed()` return at once, forever).
    pub(crate) _durable_keepalive: watch::Sender<u64>,
    pub(crate) apply: mpsc::Sender<ApplyCommand>,
    pub(crate) waiters: WaiterRegistry,
    pub(crate) apply_task: Task<Result<(), EngineError>>,
    pub(crate) apply_progress: watch::Receiver<ApplyProgress>,
    pub(crate) status: watch::Sender<EngineStatus>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) peers: BTreeMap<NodeId, Option<Instant>>,
    pub(crate) created_at: HashMap<BatchId, Instant>,
    pub(crate) submit_to_decide: Histogram,
    pub(crate) batches_created: u64,
    pub(crate) operations_batched: u64,
    pub(crate) largest_batch: usize,
    pub(crate) next_status: Instant,
    /// Base slot of the latest durable snapshot.
    pub(crate) snapshot_durable: watch::Sender<Option<rabia_core::Slot>>,
    /// Fire-and-forget operations that could not be accepted.
    pub(crate) refused_operations: u64,
    /// The wait for answered clients' next operations after a decision.
    pub(crate) refill: RefillWait,
    /// Snapshots the apply task built for lagging peers.
    pub(crate) served: mpsc::Receiver<(NodeId, Box<rabia_persistence::Snapshot>)>,
    /// A snapshot being received from a peer.
    pub(crate) incoming: Option<IncomingSnapshot>,
    /// The cluster's configuration number (for envelopes this loop builds).
    pub(crate) epoch: rabia_core::Epoch,
}

/// A snapshot arriving in chunks.
pub(crate) struct IncomingSnapshot {
    from: NodeId,
    base_slot: rabia_core::Slot,
    total: u64,
    bytes: Vec<u8>,
}

impl Driver {
    fn now(&self) -> CoreInstant {
        CoreInstant(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn to_tokio(&self, at: CoreInstant) -> Instant {
        self.origin + Duration::from_nanos(at.as_nanos())
    }

    /// Runs until shutdown or a fatal error.
    pub(crate) async fn run(mut self) -> Result<(), EngineError> {
        let result = self.event_loop().await;
        let reason = match &result {
            Ok(()) => "shut down".to_string(),
            Err(e) => e.to_string(),
        };
        self.publish_status(Some(reason));
        // Dropping the channels ends the helper tasks; waiting clients get
        // `SubmitError::Stopped` as their reply senders drop.
        self.apply_task.stop().await;
        if let Persistor::Task { task, .. } = &mut self.persist {
            task.stop().await;
        }
        // Every client still waiting learns that the engine stopped.
        if let Ok(mut registry) = self.waiters.lock() {
            for (_, waiters) in registry.drain() {
                for waiter in waiters.into_iter().flatten() {
                    let _ = waiter.send(Err(SubmitError::Stopped));
                }
            }
        }
        let (_, waiters) = self.batcher.take();
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(Err(SubmitError::Stopped));
        }
        result
    }

    async fn event_loop(&mut self) -> Result<(), EngineError> {
        // One timer, re-armed only when the deadline moves: registering a
        // fresh timer on every iteration is measurable at this message rate.
        let timer = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(timer);
        loop {
            // A shutdown requested before this task subscribed is still seen.
            if *self.shutdown.borrow() {
                return Ok(());
            }
            // The replica holds off opening a slot after each decision
            // until the decided operations are applied and their clients
            // answered: their next operations then join the next slot.
            if self.replica.opening_held()
                && self.apply_progress.borrow().next_slot >= self.replica.next_slot()
            {
                self.gather_before_idle_flush().await;
                let answered = self.apply_progress.borrow().answered;
                if self.refill.over(
                    Instant::now(),
                    answered,
                    self.batcher.len(),
                    self.batcher.is_full(),
                    self.replica.last_slot_time(),
                ) {
                    self.refill.opened(answered);
                    let now = self.now();
                    self.replica.hold_opening(now, false);
                    self.maybe_flush(false);
                }
            }
            self.drain_actions().await?;
            let now = Instant::now();
            if now >= self.next_status {
                self.publish_status(None);
                self.next_status = now + self.config.status_interval;
            }
            let mut deadline = self.next_deadline();
            if deadline <= now {
                // Due timers run even when peer traffic keeps the select
                // busy: a flood of messages must not starve heartbeats,
                // retransmissions and batch deadlines.
                self.on_timer();
                self.drain_actions().await?;
                deadline = self.next_deadline();
            }
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            let accepting = self.accepting();
            let has_operations = self.operations.is_some();
            let transport = self.transport.as_mut();
            tokio::select! {
                biased;
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        return Ok(());
                    }
                }
                event = async {
                    match &mut self.persist {
                        Persistor::Task { task, .. } => PersistEvent::TaskEnded(task.ended().await),
                        Persistor::Inline { snapshots, .. } => PersistEvent::Snapshot(snapshots.recv().await),
                    }
                } => {
                    match event {
                        PersistEvent::TaskEnded(ended) => {
                            return Err(match ended {
                                Ok(Err(e)) => EngineError::Persistence(e),
                                Ok(Ok(())) => EngineError::Internal("persistence task ended".into()),
                                Err(e) => EngineError::Internal(format!("persistence task panicked: {e}")),
                            });
                        }
                        PersistEvent::Snapshot(command) => {
                            if let (Some(PersistCommand::Snapshot(snapshot)), Persistor::Inline { storage, .. }) =
                                (command, &mut self.persist)
                            {
                                storage.save_snapshot(&snapshot).await?;
                                storage.truncate_before(snapshot.base_slot).await?;
                                self.snapshot_durable.send_replace(Some(snapshot.base_slot));
                            }
                        }
                    }
                }
                ended = self.apply_task.ended() => {
                    return Err(match ended {
                        Ok(Err(e)) => e,
                        Ok(Ok(())) => EngineError::Internal("apply task ended".into()),
                        Err(e) => EngineError::Internal(format!("apply task panicked: {e}")),
                    });
                }
                progressed = self.apply_progress.changed(), if self.replica.opening_held()
                    && (self.replica.pending_len() > 0 || !self.batcher.is_empty()) => {
                    // A slot was applied and its clients answered: their
                    // next operations come now. (Operations gathered while
                    // the opening is held wait in the batcher, not in the
                    // replica: without them here the hold would be released
                    // only by the next unrelated event, such as a timer or
                    // a durable record.)
                    if progressed.is_ok() {
                        self.apply_progress.borrow_and_update();
                        self.gather_before_idle_flush().await;
                        self.maybe_flush(false);
                    }
                }
                changed = self.durable.changed() => {
                    if changed.is_ok() {
                        let token = *self.durable.borrow_and_update();
                        let now = self.now();
                        self.replica.handle_persisted(now, PersistToken(token));
                    }
                }
                inbound = async {
                    match transport {
                        Some(t) => t.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match inbound {
                        Some((from, envelope)) => {
                            self.on_message(from, envelope);
                            self.drain_inbound_burst();
                        }
                        // The transport is gone for good (e.g. replaced by a
                        // restarted instance of this node): stop, do not spin.
                        None => return Err(EngineError::TransportClosed),
                    }
                }
                request = self.requests.recv(), if accepting => {
                    if let Some(request) = request {
                        self.on_request(request);
                        self.drain_request_burst();
                        self.gather_before_idle_flush().await;
                        self.maybe_flush(false);
                    }
                }
                operation = async {
                    match self.operations.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                }, if accepting && has_operations => {
                    match operation {
                        Some(operation) => {
                            self.on_request(ClientRequest { operation, reply: None });
                            self.maybe_flush(false);
                        }
                        None => self.operations = None,
                    }
                }
                served = self.served.recv() => {
                    if let Some((to, snapshot)) = served {
                        self.send_snapshot(to, &snapshot);
                    }
                }
                _ = &mut timer => {
                    self.on_timer();
                }
            }
        }
    }

    /// Whether the engine takes new submissions (backpressure): the same
    /// limit at which the replica refuses local batches (a quarter of the
    /// pending queue is kept for peers' batches).
    fn accepting(&self) -> bool {
        let capacity = self.config.max_pending_batches;
        self.replica.pending_len() < capacity - capacity / 4
    }

    fn next_deadline(&self) -> Instant {
        let mut deadline = self.next_status;
        if let Some(at) = self.replica.poll_timeout() {
            deadline = deadline.min(self.to_tokio(at));
        }
        if let Some(at) = self.batcher.deadline() {
            deadline = deadline.min(at);
        }
        if let Some(at) = self.refill.deadline() {
            deadline = deadline.min(at);
        }
        deadline
    }

    fn on_message(&mut self, from: NodeId, envelope: rabia_core::protocol::Envelope) {
        if let Some(last) = self.peers.get_mut(&from) {
            *last = Some(Instant::now());
        }
        let now = self.now();
        self.replica.handle_message(now, from, envelope);
    }

    fn drain_inbound_burst(&mut self) {
        for _ in 0..MESSAGE_BURST {
            let Some((from, envelope)) = self.transport.as_mut().and_then(|t| t.try_recv()) else {
                return;
            };
            self.on_message(from, envelope);
        }
    }

    fn on_request(&mut self, request: ClientRequest) {
        let ClientRequest { operation, reply } = request;
        if !self.batcher.fits_alone(&operation) {
            if reply.is_none() {
                self.refused_operations += 1;
                tracing::warn!(
                    bytes = operation.encoded_len(),
                    "fire-and-forget operation larger than max_batch_bytes dropped"
                );
            }
            if let Some(reply) = reply {
                let _ = reply.send(Err(SubmitError::Invalid {
                    reason: format!(
                        "operation of {} bytes exceeds max_batch_bytes = {}",
                        operation.encoded_len(),
                        self.config.max_batch_bytes
                    ),
                }));
            }
            return;
        }
        if self.batcher.would_overflow(&operation) {
            self.flush();
        }
        self.batcher.push(Instant::now, operation, reply);
    }

    /// Before proposing at once (no own batch waiting), lets the tasks that
    /// are ready run and takes what they submitted, as long as each round
    /// brings more: clients answered by the same decision resubmit within
    /// microseconds, and one slot then carries all of them instead of the
    /// first alone. Costs one yield (about a microsecond) when nothing
    /// more comes.
    async fn gather_before_idle_flush(&mut self) {
        for _ in 0..GATHER_ROUNDS_MAX {
            if self.batcher.is_empty() || self.batcher.is_full() || self.own_batch_waiting() {
                return;
            }
            let before = self.batcher.len();
            tokio::task::yield_now().await;
            self.drain_request_burst();
            if self.batcher.len() == before {
                return;
            }
        }
    }

    fn drain_request_burst(&mut self) {
        for _ in 0..REQUEST_BURST {
            if !self.accepting() {
                return;
            }
            match self.requests.try_recv() {
                Ok(request) => self.on_request(request),
                Err(_) => return,
            }
        }
    }

    /// Whether one of this replica's batches awaits its decision (new
    /// operations then accumulate for the next slot).
    fn own_batch_waiting(&self) -> bool {
        self.replica.own_pending() > 0
    }

    fn maybe_flush(&mut self, timer: bool) {
        if self.batcher.is_empty() {
            return;
        }
        let now = Instant::now();
        if self.refill.enabled()
            && self.replica.opening_held()
            && !self.own_batch_waiting()
            && !self.batcher.is_full()
            && self.batcher.deadline().is_none_or(|d| now < d)
        {
            // Held after a decision: the operations gathered meanwhile go
            // out together when the hold is released (the refill wait),
            // or at the batch deadline if the release is late.
            return;
        }
        let own_batch_waiting = self.own_batch_waiting();
        if self.batcher.should_flush(now, own_batch_waiting) || (timer && self.batcher.is_full()) {
            self.flush();
        }
    }

    /// Hands the accumulated operations to the replica as one batch.
    fn flush(&mut self) {
        if self.batcher.is_empty() {
            return;
        }
        let size = self.batcher.len();
        let (operations, waiters) = self.batcher.take();
        let now = self.now();
        match self.replica.submit(now, (self.wall_clock)(), operations) {
            Ok(batch) => {
                self.batches_created += 1;
                self.operations_batched += size as u64;
                self.largest_batch = self.largest_batch.max(size);
                if self.created_at.len() > 1_000_000 {
                    self.created_at.clear();
                }
                self.created_at.insert(batch, Instant::now());
                if waiters.iter().any(Option::is_some) {
                    // Deliveries reach the apply task only after this, so the
                    // waiters are registered before their batch can apply.
                    if let Ok(mut registry) = self.waiters.lock() {
                        registry.insert(batch, waiters);
                    }
                }
            }
            Err(refused) => {
                let reason = refused.to_string();
                let overloaded = matches!(refused, rabia_core::SubmitError::Overloaded { .. });
                for (operation, waiter) in refused.into_operations().into_iter().zip(waiters) {
                    if waiter.is_none() {
                        self.refused_operations += 1;
                        tracing::warn!(%reason, "fire-and-forget operation refused");
                    }
                    if let Some(waiter) = waiter {
                        let error = if overloaded {
                            SubmitError::Overloaded { operation }
                        } else {
                            SubmitError::Invalid {
                                reason: reason.clone(),
                            }
                        };
                        let _ = waiter.send(Err(error));
                    }
                }
            }
        }
    }

    fn on_timer(&mut self) {
        let now = self.now();
        if self.replica.poll_timeout().is_some_and(|at| at <= now) {
            self.replica.handle_timeout(now);
        }
        self.maybe_flush(true);
    }

    /// Carries out every ready action. Persistence and apply sends wait for
    /// channel space (bounded queues are the backpressure). With volatile
    /// storage the records are appended inline, once per drain.
    async fn drain_actions(&mut self) -> Result<(), EngineError> {
        loop {
            let mut inline_records = Vec::new();
            let mut inline_token = None;
            self.drain_ready(&mut inline_records, &mut inline_token)
                .await?;
            let Some(token) = inline_token else {
                return Ok(());
            };
            if let Persistor::Inline { storage, .. } = &mut self.persist {
                storage.append(&inline_records).await?;
            }
            let now = self.now();
            self.replica.handle_persisted(now, PersistToken(token));
        }
    }

    async fn drain_ready(
        &mut self,
        inline_records: &mut Vec<rabia_core::protocol::PersistRecord>,
        inline_token: &mut Option<u64>,
    ) -> Result<(), EngineError> {
        while let Some(action) = self.replica.poll_action() {
            match action {
                Action::Send { to, envelope } => {
                    if let Some(t) = &self.transport {
                        t.send(to, envelope);
                    }
                }
                Action::Broadcast { envelope } => {
                    if let Some(t) = &self.transport {
                        t.broadcast(envelope);
                    }
                }
                Action::Persist { token, record } => match &self.persist {
                    Persistor::Task { commands, .. } => {
                        let commands = commands.clone();
                        let command = PersistCommand::Record {
                            token: token.0,
                            record,
                        };
                        match send_or_stop(&commands, command, &mut self.shutdown).await {
                            Queued::Sent => {}
                            Queued::Shutdown => return Ok(()),
                            Queued::Closed => return Err(self.persistence_failure().await),
                        }
                    }
                    Persistor::Inline { .. } => {
                        inline_records.push(record);
                        *inline_token = Some(token.0);
                    }
                },
                Action::Deliver(delivery) => {
                    let decided_at = Instant::now();
                    if let DeliveryOutcome::Apply(batches) = &delivery.outcome {
                        for batch in batches {
                            if let Some(created) = self.created_at.remove(&batch.id) {
                                self.submit_to_decide.record(decided_at - created);
                            }
                        }
                    }
                    let apply = self.apply.clone();
                    let command = ApplyCommand::Deliver {
                        delivery,
                        decided_at,
                    };
                    match send_or_stop(&apply, command, &mut self.shutdown).await {
                        Queued::Sent => {}
                        Queued::Shutdown => return Ok(()),
                        Queued::Closed => return Err(self.apply_failure().await),
                    }
                }
                Action::ServeSnapshot { to } => {
                    let apply = self.apply.clone();
                    match send_or_stop(&apply, ApplyCommand::Serve { to }, &mut self.shutdown).await
                    {
                        Queued::Sent => {}
                        Queued::Shutdown => return Ok(()),
                        Queued::Closed => return Err(self.apply_failure().await),
                    }
                }
                Action::SnapshotChunk {
                    from,
                    base_slot,
                    offset,
                    total,
                    data,
                } => {
                    if let Some(bytes) = self.collect_chunk(from, base_slot, offset, total, data) {
                        self.install_snapshot(bytes).await?;
                    }
                }
                Action::NeedSnapshot { peer, slot } => {
                    tracing::warn!(
                        peer = %peer,
                        slot = slot.0,
                        "peers compacted past this replica's log; snapshot transfer is needed"
                    );
                }
            }
        }
        Ok(())
    }

    /// Adds a chunk to the snapshot being received; returns the whole
    /// encoded snapshot once complete. Out-of-order or oversized input drops
    /// the transfer (the replica asks again).
    fn collect_chunk(
        &mut self,
        from: NodeId,
        base_slot: rabia_core::Slot,
        offset: u64,
        total: u64,
        data: Vec<u8>,
    ) -> Option<Vec<u8>> {
        if total > self.config.max_snapshot_bytes {
            tracing::warn!(peer = %from, total, "peer's snapshot exceeds max_snapshot_bytes");
            return None;
        }
        let same = self
            .incoming
            .as_ref()
            .is_some_and(|i| i.from == from && i.base_slot == base_slot && i.total == total);
        if !same {
            if offset != 0 {
                return None;
            }
            self.incoming = Some(IncomingSnapshot {
                from,
                base_slot,
                total,
                bytes: Vec::new(),
            });
        }
        let incoming = self.incoming.as_mut()?;
        if offset != incoming.bytes.len() as u64 {
            self.incoming = None; // a chunk was lost: start over on the next request
            return None;
        }
        incoming.bytes.extend_from_slice(&data);
        if incoming.bytes.len() as u64 == incoming.total {
            return self.incoming.take().map(|i| i.bytes);
        }
        None
    }

    /// Restores a peer's snapshot: the state machine (through the apply
    /// queue, so it happens before any later delivery), durable storage, then
    /// the protocol replica. Clients whose batches the snapshot covers learn
    /// that their result is not known here.
    async fn install_snapshot(&mut self, bytes: Vec<u8>) -> Result<(), EngineError> {
        let snapshot: rabia_persistence::Snapshot = match bincode::deserialize(&bytes) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable snapshot from a peer; asking again later");
                return Ok(());
            }
        };
        let base = snapshot.base_slot;
        if base <= self.replica.next_slot() {
            return Ok(());
        }
        let filter = snapshot.filter.clone();
        let apply = self.apply.clone();
        let install = ApplyCommand::Install(Box::new(snapshot.clone()));
        match send_or_stop(&apply, install, &mut self.shutdown).await {
            Queued::Sent => {}
            Queued::Shutdown => return Ok(()),
            Queued::Closed => return Err(self.apply_failure().await),
        }
        match &mut self.persist {
            Persistor::Task { commands, .. } => {
                let commands = commands.clone();
                let command = PersistCommand::Snapshot(Box::new(snapshot));
                match send_or_stop(&commands, command, &mut self.shutdown).await {
                    Queued::Sent => {}
                    Queued::Shutdown => return Ok(()),
                    Queued::Closed => return Err(self.persistence_failure().await),
                }
            }
            Persistor::Inline { storage, .. } => {
                storage.save_snapshot(&snapshot).await?;
                storage.truncate_before(base).await?;
                self.snapshot_durable.send_replace(Some(base));
            }
        }
        let now = self.now();
        self.replica.install_snapshot(now, base, filter.clone());
        if let Ok(mut registry) = self.waiters.lock() {
            let covered: Vec<_> = registry
                .keys()
                .filter(|id| filter.contains(id))
                .copied()
                .collect();
            for id in covered {
                for waiter in registry.remove(&id).into_iter().flatten().flatten() {
                    let _ = waiter.send(Err(SubmitError::Indeterminate));
                }
            }
        }
        Ok(())
    }

    /// Sends a snapshot built by the apply task to a lagging peer.
    fn send_snapshot(&mut self, to: NodeId, snapshot: &rabia_persistence::Snapshot) {
        let Some(transport) = &self.transport else {
            return;
        };
        let bytes = match bincode::serialize(snapshot) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a snapshot for a peer");
                return;
            }
        };
        let total = bytes.len() as u64;
        let chunk = self.config.snapshot_chunk_bytes.max(1);
        for (i, data) in bytes.chunks(chunk).enumerate() {
            let envelope = rabia_core::protocol::Envelope {
                sender: self.me,
                epoch: self.epoch,
                message: rabia_core::protocol::Message::SnapshotChunk {
                    base_slot: snapshot.base_slot,
                    offset: (i * chunk) as u64,
                    total,
                    data: data.to_vec(),
                },
            };
            transport.send(to, envelope);
        }
    }

    /// The real error of a persistence task whose queue closed.
    async fn persistence_failure(&mut self) -> EngineError {
        match &mut self.persist {
            Persistor::Task { task, .. } => match task.ended().await {
                Ok(Err(e)) => EngineError::Persistence(e),
                Ok(Ok(())) => EngineError::Internal("persistence task ended".into()),
                Err(e) => EngineError::Internal(format!("persistence task panicked: {e}")),
            },
            Persistor::Inline { .. } => EngineError::Internal("persistence queue closed".into()),
        }
    }

    /// The real error of an apply task whose queue closed.
    async fn apply_failure(&mut self) -> EngineError {
        match self.apply_task.ended().await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => EngineError::Internal("apply task ended".into()),
            Err(e) => EngineError::Internal(format!("apply task panicked: {e}")),
        }
    }

    fn publish_status(&mut self, stopped: Option<String>) {
        let progress = self.apply_progress.borrow().clone();
        let now = Instant::now();
        let timeout = self.config.election_timeout;
        let peers = self
            .peers
            .iter()
            .map(|(node, last)| {
                let since = last.map(|t| now.saturating_duration_since(t));
                PeerStatus {
                    node: *node,
                    last_heard: since,
                    reachable: since.is_some_and(|s| s <= timeout),
                }
            })
            .collect();
        let status = EngineStatus {
            node_id: Some(self.me),
            running: stopped.is_none(),
            next_slot: self.replica.next_slot(),
            applied_slot: progress.next_slot,
            learner: self.replica.is_learner(),
            participate_from: self.replica.participate_from(),
            protocol: self.replica.metrics(),
            queued_operations: self.batcher.len() + self.requests.len(),
            batches_created: self.batches_created,
            mean_batch_size: if self.batches_created == 0 {
                0.0
            } else {
                self.operations_batched as f64 / self.batches_created as f64
            },
            max_batch_size: self.largest_batch,
            submit_to_decide: self.submit_to_decide.summary(),
            decide_to_apply: progress.decide_to_apply,
            last_snapshot: *self.snapshot_durable.borrow(),
            refused_operations: self.refused_operations,
            peers,
            transport: self
                .transport
                .as_ref()
                .map(|t| t.stats())
                .unwrap_or_default(),
            stopped_reason: stopped,
        };
        let previous = self.status.send_replace(status);
        if previous.learner && !self.replica.is_learner() {
            tracing::info!(
                participate_from = self.replica.participate_from().map(|s| s.0),
                "caught up past where the lost store's votes could reach: taking part"
            );
        }
    }
}

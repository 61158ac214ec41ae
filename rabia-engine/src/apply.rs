//! The apply task: owns the user's state machine, applies delivered slots in
//! order, answers waiting clients, de-duplicates session operations and takes
//! snapshots.

use crate::error::{EngineError, SubmitError};
use crate::handle::{Reply, Waiter};
use crate::persist::PersistCommand;
use crate::status::{Histogram, LatencySummary};
use rabia_core::protocol::{DecidedFilter, Delivery, DeliveryOutcome};
use rabia_core::smr::{OperationError, SessionCheck, SessionTable, StateMachine};
use rabia_core::{BatchId, Epoch, NodeId, Operation, Slot};
use rabia_persistence::Snapshot;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The clients waiting for each batch this node created, one entry per
/// operation. The engine loop registers a batch's waiters before handing the
/// batch to the protocol; the apply task takes them when the batch applies.
pub(crate) type WaiterRegistry = Arc<Mutex<HashMap<BatchId, Vec<Option<Waiter>>>>>;

/// Work for the apply task, in order.
pub(crate) enum ApplyCommand {
    /// The next slot to apply, with the time it was decided.
    Deliver {
        delivery: Delivery,
        decided_at: Instant,
    },
    /// Replace the state with a snapshot fetched from a peer.
    Install(Box<Snapshot>),
    /// Build a snapshot of the current state for a lagging peer.
    Serve { to: NodeId },
}

/// Restores `state_machine` from `snapshot` (at start-up or from a peer).
pub(crate) async fn restore_state_machine<SM: StateMachine>(
    state_machine: &mut SM,
    snapshot: &Snapshot,
) -> Result<(), EngineError> {
    state_machine
        .restore_from_snapshot(&snapshot.state)
        .await
        .map_err(|e| EngineError::Restore {
            slot: snapshot.base_slot.0,
            message: e.to_string(),
        })
}

/// A local read, run between two applied operations.
pub(crate) type LocalQuery<SM> = Box<dyn FnOnce(&SM) + Send>;

/// What the apply task reports.
#[derive(Clone, Debug, Default)]
pub(crate) struct ApplyProgress {
    pub(crate) next_slot: Slot,
    pub(crate) decide_to_apply: LatencySummary,
    /// Local clients answered so far (operations submitted with a reply
    /// channel, applied), counted from the engine's start.
    pub(crate) answered: u64,
}

pub(crate) struct SnapshotPolicy {
    pub(crate) interval: Duration,
    pub(crate) max_log_bytes: usize,
    pub(crate) epoch: Epoch,
}

pub(crate) struct Applier<SM> {
    pub(crate) state_machine: SM,
    pub(crate) sessions: SessionTable,
    pub(crate) filter: DecidedFilter,
    pub(crate) next_slot: Slot,
    pub(crate) waiters: WaiterRegistry,
    pub(crate) policy: SnapshotPolicy,
    pub(crate) persist: mpsc::Sender<PersistCommand>,
    pub(crate) progress: watch::Sender<ApplyProgress>,
    pub(crate) latency: Histogram,
    pub(crate) answered: u64,
    pub(crate) bytes_since_snapshot: usize,
    pub(crate) last_snapshot_at: Instant,
    pub(crate) applied_since_snapshot: bool,
    /// Snapshots built for lagging peers, to the engine loop for sending.
    pub(crate) served: mpsc::Sender<(NodeId, Box<Snapshot>)>,
}

impl<SM: StateMachine + 'static> Applier<SM> {
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<ApplyCommand>,
        mut queries: mpsc::Receiver<LocalQuery<SM>>,
    ) -> Result<(), EngineError> {
        let mut since_publish = 0u32;
        loop {
            // Deliveries first: local reads have their own queue, so a flood
            // of reads can neither fill the delivery queue nor stall the
            // engine loop that feeds it.
            let command = tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => command,
                    None => break,
                },
                Some(query) = queries.recv() => {
                    query(&self.state_machine);
                    continue;
                }
            };
            match command {
                ApplyCommand::Deliver {
                    delivery,
                    decided_at,
                } => {
                    self.deliver(delivery).await?;
                    self.latency.record(decided_at.elapsed());
                    since_publish += 1;
                    if since_publish >= 64 || commands.is_empty() {
                        since_publish = 0;
                        self.publish();
                    }
                    self.maybe_snapshot().await?;
                }
                ApplyCommand::Install(snapshot) => self.install(*snapshot).await?,
                ApplyCommand::Serve { to } => self.serve(to).await,
            }
        }
        self.publish();
        Ok(())
    }

    async fn deliver(&mut self, delivery: Delivery) -> Result<(), EngineError> {
        if delivery.slot < self.next_slot {
            // Covered by a snapshot installed meanwhile.
            return Ok(());
        }
        if delivery.slot != self.next_slot {
            return Err(EngineError::Internal(format!(
                "delivery of {} while {} was next",
                delivery.slot, self.next_slot
            )));
        }
        self.next_slot = delivery.slot.next();
        let DeliveryOutcome::Apply(batches) = delivery.outcome else {
            return Ok(());
        };
        self.applied_since_snapshot = true;
        for batch in batches {
            self.filter.insert(batch.id);
            let mut waiters = self
                .waiters
                .lock()
                .ok()
                .and_then(|mut registry| registry.remove(&batch.id))
                .unwrap_or_default();
            for (i, operation) in batch.operations.iter().enumerate() {
                self.bytes_since_snapshot += operation.encoded_len();
                let reply = self.apply_one(operation).await;
                if let Some(waiter) = waiters.get_mut(i).and_then(Option::take) {
                    self.answered += 1;
                    let _ = waiter.send(reply);
                }
            }
        }
        Ok(())
    }

    async fn apply_one(&mut self, operation: &Operation) -> Reply {
        let Some(tag) = operation.session else {
            return self
                .state_machine
                .apply_operation(operation)
                .await
                .map_err(|e| SubmitError::Application {
                    message: e.to_string(),
                });
        };
        match self.sessions.check(tag) {
            SessionCheck::New => {
                let result = self
                    .state_machine
                    .apply_operation(operation)
                    .await
                    .map_err(|e| e.to_string());
                self.sessions.record(tag, result.clone());
                result.map_err(|message| SubmitError::Application { message })
            }
            SessionCheck::Duplicate(cached) => {
                cached.map_err(|message| SubmitError::Application { message })
            }
            SessionCheck::Stale => Err(SubmitError::SessionExpired {
                client: tag.client,
                seq: tag.seq,
            }),
        }
    }

    async fn install(&mut self, snapshot: Snapshot) -> Result<(), EngineError> {
        if snapshot.base_slot <= self.next_slot {
            return Ok(());
        }
        restore_state_machine(&mut self.state_machine, &snapshot).await?;
        self.sessions = snapshot.sessions;
        self.filter = snapshot.filter;
        self.next_slot = snapshot.base_slot;
        self.bytes_since_snapshot = 0;
        self.applied_since_snapshot = false;
        self.last_snapshot_at = Instant::now();
        self.publish();
        tracing::info!(
            base_slot = snapshot.base_slot.0,
            "installed a snapshot from a peer"
        );
        Ok(())
    }

    /// The replicated state as of `next_slot`: the state machine's snapshot
    /// with the sessions and the decided-batch filter.
    async fn build_snapshot(&self) -> Result<Snapshot, OperationError> {
        Ok(Snapshot {
            base_slot: self.next_slot,
            epoch: self.policy.epoch,
            state: self.state_machine.snapshot().await?,
            sessions: self.sessions.clone(),
            filter: self.filter.clone(),
        })
    }

    /// Builds a snapshot of the state as of `next_slot` for a peer.
    async fn serve(&mut self, to: NodeId) {
        let snapshot = match self.build_snapshot().await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::warn!(error = %e, peer = %to, "cannot snapshot for a lagging peer");
                return;
            }
        };
        // Never block on the engine loop; the peer asks again if dropped.
        let _ = self.served.try_send((to, Box::new(snapshot)));
    }

    fn publish(&mut self) {
        let next_slot = self.next_slot;
        let summary = self.latency.summary();
        let answered = self.answered;
        self.progress.send_modify(|p| {
            p.next_slot = next_slot;
            p.decide_to_apply = summary;
            p.answered = answered;
        });
    }

    async fn maybe_snapshot(&mut self) -> Result<(), EngineError> {
        let due_by_size = self.bytes_since_snapshot >= self.policy.max_log_bytes;
        let due_by_time =
            self.applied_since_snapshot && self.last_snapshot_at.elapsed() >= self.policy.interval;
        if !(due_by_size || due_by_time) {
            return Ok(());
        }
        self.take_snapshot().await
    }

    /// Snapshots the state as of `next_slot` and hands it to persistence.
    pub(crate) async fn take_snapshot(&mut self) -> Result<(), EngineError> {
        self.last_snapshot_at = Instant::now();
        let snapshot = match self.build_snapshot().await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                // Not fatal: the log keeps growing; retry after another
                // `max_log_size` bytes or `snapshot_interval`, not at once.
                tracing::warn!(error = %e, "state machine snapshot failed; will retry");
                self.bytes_since_snapshot = 0;
                return Ok(());
            }
        };
        let base = snapshot.base_slot;
        // Never wait on the persistence queue from here (the engine loop may
        // be waiting on ours): if it is full, skip this snapshot and take
        // the next one.
        match self
            .persist
            .try_send(PersistCommand::Snapshot(Box::new(snapshot)))
        {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(
                    base_slot = base.0,
                    "persistence queue full; snapshot skipped"
                );
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(EngineError::Internal("persistence task gone".into()));
            }
        }
        self.bytes_since_snapshot = 0;
        self.applied_since_snapshot = false;
        tracing::debug!(base_slot = base.0, "snapshot handed to persistence");
        Ok(())
    }
}

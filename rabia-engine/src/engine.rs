//! `RabiaEngine`: wiring. Construction follows the developer guide; `run()`
//! recovers from persistence, restores the state machine, spawns the
//! persistence and apply tasks and runs the engine loop.

use crate::apply::{
    restore_state_machine, Applier, ApplyCommand, ApplyProgress, LocalQuery, SnapshotPolicy,
    WaiterRegistry,
};
use crate::batcher::Batcher;
use crate::driver::{Driver, Persistor, Task};
use crate::error::EngineError;
use crate::handle::{ClientRequest, EngineHandle, LocalReader};
use crate::persist;
use crate::refill::RefillWait;
use crate::status::{EngineStatus, Histogram};
use crate::RabiaConfig;
use rabia_core::protocol::{DecidedFilter, RecoveredState, Replica};
use rabia_core::smr::{SessionTable, StateMachine};
use rabia_core::{ClusterConfig, NodeId, Operation, Slot};
use rabia_network::Transport;
use rabia_persistence::Persistence;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

/// Capacity of the engine → apply and engine → persistence queues.
const TASK_QUEUE: usize = 65_536;
/// Capacity of the local-read queue.
const QUERY_QUEUE: usize = 1_024;

/// One replica of a Rabia cluster: the protocol, its persistence, its state
/// machine and its clients, driven by tokio.
///
/// ```no_run
/// # use rabia_core::smr::{StateMachine, Operation, OperationResult};
/// # struct CounterSMR; impl CounterSMR { fn new() -> Self { CounterSMR } }
/// # #[async_trait::async_trait] impl StateMachine for CounterSMR {
/// #   async fn apply_operation(&mut self, _: &Operation) -> OperationResult { Ok(vec![]) }
/// #   async fn snapshot(&self) -> OperationResult { Ok(vec![]) }
/// #   async fn restore_from_snapshot(&mut self, _: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> { Ok(()) }
/// # }
/// use rabia_core::{ClusterConfig, NodeId};
/// use rabia_engine::{RabiaConfig, RabiaEngine};
/// use rabia_network::InMemoryNetwork;
/// use rabia_persistence::InMemoryPersistence;
/// use tokio::sync::mpsc;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let nodes: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
/// let network = InMemoryNetwork::new(65_536);
/// let mut handles = Vec::new();
/// for node in &nodes {
///     let cluster_config = ClusterConfig::new(*node, nodes.iter().copied().collect());
///     let (_operation_tx, operation_rx) = mpsc::unbounded_channel();
///     let engine = RabiaEngine::new(
///         cluster_config.node_id,
///         RabiaConfig::default(),
///         cluster_config,
///         CounterSMR::new(),
///         InMemoryPersistence::new(),
///         operation_rx,
///     )
///     .with_transport(network.endpoint(*node)); // the one addition to the guide
///     handles.push(engine.handle());
///     tokio::spawn(engine.run());
/// }
/// let result = handles[0].submit(rabia_core::Operation::new(b"op".to_vec())).await?;
/// # Ok(()) }
/// ```
pub struct RabiaEngine<SM> {
    node_id: NodeId,
    config: RabiaConfig,
    cluster: ClusterConfig,
    state_machine: SM,
    persistence: Box<dyn Persistence>,
    transport: Option<Box<dyn Transport>>,
    operations: mpsc::UnboundedReceiver<Operation>,
    requests_tx: mpsc::Sender<ClientRequest>,
    requests_rx: mpsc::Receiver<ClientRequest>,
    apply_tx: mpsc::Sender<ApplyCommand>,
    apply_rx: mpsc::Receiver<ApplyCommand>,
    query_tx: mpsc::Sender<LocalQuery<SM>>,
    query_rx: mpsc::Receiver<LocalQuery<SM>>,
    status_tx: watch::Sender<EngineStatus>,
    shutdown_tx: Arc<watch::Sender<bool>>,
    wall_clock: WallClock,
}

/// Where an engine reads the wall clock (microseconds since the Unix
/// epoch) that timestamps its batches. Timestamps only order batches of
/// different nodes fairly; they never affect safety.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_wall_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl<SM> std::fmt::Debug for RabiaEngine<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabiaEngine")
            .field("node_id", &self.node_id)
            .field("nodes", &self.cluster.nodes.len())
            .finish()
    }
}

impl<SM: StateMachine + 'static> RabiaEngine<SM> {
    /// An engine for `node_id` (as the developer guide writes it).
    /// `operation_rx` receives fire-and-forget operations; use
    /// [`RabiaEngine::handle`] to submit and get results. A cluster of more
    /// than one node also needs [`RabiaEngine::with_transport`]. Nothing is
    /// validated until [`RabiaEngine::run`].
    pub fn new(
        node_id: NodeId,
        config: RabiaConfig,
        cluster_config: ClusterConfig,
        state_machine: SM,
        persistence: impl Persistence,
        operation_rx: mpsc::UnboundedReceiver<Operation>,
    ) -> Self {
        let (requests_tx, requests_rx) = mpsc::channel(config.max_queued_operations.max(1));
        let (apply_tx, apply_rx) = mpsc::channel(TASK_QUEUE);
        let (query_tx, query_rx) = mpsc::channel(QUERY_QUEUE);
        let (status_tx, _) = watch::channel(EngineStatus {
            node_id: Some(node_id),
            ..EngineStatus::default()
        });
        let (shutdown_tx, _) = watch::channel(false);
        RabiaEngine {
            node_id,
            config,
            cluster: cluster_config,
            state_machine,
            persistence: Box::new(persistence),
            transport: None,
            operations: operation_rx,
            requests_tx,
            requests_rx,
            apply_tx,
            apply_rx,
            query_tx,
            query_rx,
            status_tx,
            shutdown_tx: Arc::new(shutdown_tx),
            wall_clock: Arc::new(system_wall_clock),
        }
    }

    /// Replaces the wall clock that timestamps batches (default: the system
    /// clock). Test harnesses on virtual time use this so that a seeded run
    /// replays exactly (`rabia_testing::TestCluster` does).
    pub fn with_wall_clock(mut self, clock: WallClock) -> Self {
        self.wall_clock = clock;
        self
    }

    /// Connects the engine to its peers.
    pub fn with_transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Box::new(transport));
        self
    }

    /// A handle for clients: submit operations, read status, shut down.
    pub fn handle(&self) -> EngineHandle {
        EngineHandle {
            requests: self.requests_tx.clone(),
            status: self.status_tx.subscribe(),
            shutdown: self.shutdown_tx.clone(),
        }
    }

    /// A relaxed local reader of this replica's state machine.
    pub fn local_reader(&self) -> LocalReader<SM> {
        LocalReader {
            queries: self.query_tx.clone(),
        }
    }

    /// Runs the replica until shutdown (`Ok`) or a fatal error.
    pub async fn run(self) -> Result<(), EngineError> {
        let span = tracing::info_span!("rabia_engine", node = %self.node_id);
        self.run_inner().instrument(span).await
    }

    async fn run_inner(mut self) -> Result<(), EngineError> {
        self.config.validate()?;
        self.cluster.validate()?;
        if self.cluster.node_id != self.node_id {
            return Err(EngineError::NodeMismatch {
                engine: self.node_id,
                cluster: self.cluster.node_id,
            });
        }
        if self.cluster.nodes.len() > 1 && self.transport.is_none() {
            return Err(EngineError::NoTransport {
                nodes: self.cluster.nodes.len(),
            });
        }
        let recovered = self.persistence.recover().await?;
        let mut sessions = SessionTable::new(self.config.session_window, self.config.max_sessions);
        let mut replica_config = self.config.replica_config();
        // Announcing only pays where a Proposal waits for a disk sync.
        replica_config.announce_opening &= !self.persistence.is_volatile();
        let mut filter = DecidedFilter::new(
            replica_config.filter_sparse_max,
            replica_config.filter_incarnations_max,
        );
        let mut base_slot = Slot::ZERO;
        if let Some(snapshot) = &recovered.snapshot {
            restore_state_machine(&mut self.state_machine, snapshot).await?;
            sessions = snapshot.sessions.clone();
            filter = snapshot.filter.clone();
            base_slot = snapshot.base_slot;
        }
        // The incarnation names this start's batches (origin, incarnation,
        // seq), and peers treat an origin's older incarnations as finished.
        // The store's counter restarts at 0 when a node comes back with an
        // empty store (a replaced disk, or in-memory storage after a process
        // restart), which would make its new batches look like old, decided
        // ones, never to be applied. The wall clock (microseconds) keeps it
        // ahead of every earlier start of this node id, as long as the clock
        // did not step back by more than the time since that start.
        let incarnation = recovered.incarnation.max((self.wall_clock)());
        tracing::info!(
            incarnation,
            store_incarnation = recovered.incarnation,
            base_slot = base_slot.0,
            records = recovered.records.len(),
            "engine starting"
        );
        let origin = Instant::now();
        let rng_seed = incarnation ^ self.node_id.as_u64().rotate_left(17);
        let replica = Replica::new(
            replica_config,
            self.cluster.clone(),
            RecoveredState {
                incarnation,
                base_slot,
                filter: Some(filter.clone()),
                records: recovered.records,
            },
            rabia_core::time::Instant::ZERO,
            rng_seed,
        )?;

        if replica.is_learner() {
            tracing::warn!(
                "started with an empty store as a replacement (empty_store = Rejoin): \
                 learning from the peers before taking part"
            );
        }
        let (persist_tx, persist_rx) = mpsc::channel(TASK_QUEUE);
        let (durable_tx, durable_rx) = watch::channel(0u64);
        let (snapshot_tx, _) = watch::channel(recovered.snapshot.as_ref().map(|s| s.base_slot));
        let persistor = if self.persistence.is_volatile() {
            // Nothing to wait for: append inline and skip two task hops per
            // record.
            Persistor::Inline {
                storage: self.persistence,
                snapshots: persist_rx,
            }
        } else {
            Persistor::Task {
                commands: persist_tx.clone(),
                task: Task::new(tokio::spawn(
                    persist::run(
                        self.persistence,
                        persist_rx,
                        durable_tx.clone(),
                        snapshot_tx.clone(),
                    )
                    .in_current_span(),
                )),
            }
        };

        let waiters: WaiterRegistry = Arc::new(Mutex::new(HashMap::new()));
        let (served_tx, served_rx) = mpsc::channel(4);
        let (progress_tx, progress_rx) = watch::channel(ApplyProgress {
            next_slot: base_slot,
            ..ApplyProgress::default()
        });
        let applier = Applier {
            state_machine: self.state_machine,
            sessions,
            filter,
            next_slot: base_slot,
            waiters: waiters.clone(),
            policy: SnapshotPolicy {
                interval: self.config.snapshot_interval,
                max_log_bytes: self.config.max_log_size,
                epoch: self.cluster.epoch,
            },
            persist: persist_tx.clone(),
            progress: progress_tx,
            latency: Histogram::default(),
            answered: 0,
            bytes_since_snapshot: 0,
            last_snapshot_at: Instant::now(),
            applied_since_snapshot: false,
            served: served_tx,
        };
        let apply_task = tokio::spawn(applier.run(self.apply_rx, self.query_rx).in_current_span());

        let peers = self
            .cluster
            .peers()
            .map(|p| (p, None))
            .collect::<BTreeMap<_, _>>();
        let driver = Driver {
            me: self.node_id,
            batcher: Batcher::new(
                self.config.max_batch_size,
                self.config.max_batch_bytes,
                self.config.batch_timeout,
            ),
            refill: RefillWait::new(self.config.refill_wait),
            config: self.config,
            replica,
            transport: self.transport,
            origin,
            wall_clock: self.wall_clock.clone(),
            requests: self.requests_rx,
            operations: Some(self.operations),
            persist: persistor,
            _durable_keepalive: durable_tx,
            durable: durable_rx,
            apply: self.apply_tx,
            waiters,
            apply_task: Task::new(apply_task),
            apply_progress: progress_rx,
            status: self.status_tx,
            shutdown: self.shutdown_tx.subscribe(),
            peers,
            created_at: HashMap::new(),
            submit_to_decide: Histogram::default(),
            batches_created: 0,
            operations_batched: 0,
            largest_batch: 0,
            next_status: origin,
            snapshot_durable: snapshot_tx,
            refused_operations: 0,
            served: served_rx,
            incoming: None,
            epoch: self.cluster.epoch,
        };
        let result = driver.run().await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "engine stopped");
        } else {
            tracing::info!("engine shut down");
        }
        result
    }
}

//! [`TestCluster`]: n real engines running your state machine on a
//! [`NetworkSimulator`], with client handles, crash/restart, convergence
//! waits and replica comparison.

use super::network::{NetworkSimulator, NodeControl};
use async_trait::async_trait;
use rabia_core::smr::StateMachine;
use rabia_core::{ClusterConfig, NodeId, Operation};
use rabia_engine::{
    EngineError, EngineHandle, EngineStatus, LocalReader, RabiaConfig, RabiaEngine, SubmitError,
    WallClock,
};
use rabia_persistence::InMemoryPersistence;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

type Factory<SM> = Arc<dyn Fn() -> SM + Send + Sync>;

struct Running<SM> {
    handle: EngineHandle,
    reader: LocalReader<SM>,
    task: JoinHandle<Result<(), EngineError>>,
}

/// One node: its storage survives crashes, its engine does not.
struct TestNode<SM> {
    id: NodeId,
    wall_clock: WallClock,
    members: BTreeSet<NodeId>,
    config: RabiaConfig,
    factory: Factory<SM>,
    simulator: NetworkSimulator,
    persistence: InMemoryPersistence,
    running: Mutex<Option<Running<SM>>>,
    /// Why the last engine run ended (a finished task found on inspection).
    last_exit: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<SM: StateMachine + 'static> TestNode<SM> {
    fn start(&self) {
        let (_operation_tx, operation_rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = RabiaEngine::new(
            self.id,
            self.config.clone(),
            ClusterConfig::new(self.id, self.members.iter().copied().collect()),
            (self.factory)(),
            self.persistence.clone(),
            operation_rx,
        )
        .with_transport(self.simulator.endpoint(self.id))
        .with_wall_clock(self.wall_clock.clone());
        let handle = engine.handle();
        let reader = engine.local_reader();
        let task = tokio::spawn(engine.run());
        *lock(&self.running) = Some(Running {
            handle,
            reader,
            task,
        });
    }

    /// The running engine's handle, if the engine is up (a finished engine
    /// task is noted and reported as down).
    fn running(&self) -> Option<(EngineHandle, LocalReader<SM>)> {
        let mut running = lock(&self.running);
        if running.as_ref().is_some_and(|r| r.task.is_finished()) {
            let status = running.as_ref().map(|r| r.handle.status());
            *lock(&self.last_exit) = Some(
                status
                    .and_then(|s| s.stopped_reason)
                    .unwrap_or_else(|| "engine stopped".into()),
            );
            *running = None;
        }
        running
            .as_ref()
            .map(|r| (r.handle.clone(), r.reader.clone()))
    }
}

#[async_trait]
impl<SM: StateMachine + 'static> NodeControl for TestNode<SM> {
    async fn crash(&self) {
        let running = lock(&self.running).take();
        if let Some(running) = running {
            running.task.abort();
            // Wait until the task is gone: nothing of it runs after this.
            let _ = running.task.await;
        }
    }

    async fn restart(&self) {
        self.crash().await;
        self.start();
    }

    fn fail_disk(&self) {
        self.persistence.fail_with("injected DiskFailure");
    }
}

/// Why a cluster did not converge in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);

/// `n` engines of your state machine on a [`NetworkSimulator`]; the
/// simulator can crash, restart and break the disk of any of them.
///
/// ```
/// use rabia_testing::{NetworkSimulator, TestCluster};
/// # use async_trait::async_trait;
/// # use rabia_core::smr::{Operation, OperationResult, StateMachine};
/// # struct Sum(u64);
/// # #[async_trait]
/// # impl StateMachine for Sum {
/// #     async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
/// #         self.0 += op.data.len() as u64; Ok(self.0.to_le_bytes().to_vec())
/// #     }
/// #     async fn snapshot(&self) -> OperationResult { Ok(self.0.to_le_bytes().to_vec()) }
/// #     async fn restore_from_snapshot(&mut self, d: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// #         self.0 = u64::from_le_bytes(d.try_into()?); Ok(())
/// #     }
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let simulator = NetworkSimulator::with_seed(1);
/// let cluster = TestCluster::start(3, &simulator, || Sum(0));
/// cluster.submit(0, Operation::new(vec![1; 3])).await.unwrap();
/// cluster.assert_consistent(std::time::Duration::from_secs(30)).await;
/// # });
/// ```
pub struct TestCluster<SM> {
    simulator: NetworkSimulator,
    nodes: Vec<Arc<TestNode<SM>>>,
}

impl<SM> std::fmt::Debug for TestCluster<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
            )
            .field("seed", &self.simulator.seed())
            .finish()
    }
}

impl<SM: StateMachine + 'static> TestCluster<SM> {
    /// Starts `n` nodes (ids 1..=n) with the default [`RabiaConfig`], each
    /// with a state machine from `factory` and in-memory storage that
    /// survives its crashes. Must run inside a tokio runtime.
    pub fn start(
        n: usize,
        simulator: &NetworkSimulator,
        factory: impl Fn() -> SM + Send + Sync + 'static,
    ) -> Self {
        TestCluster::start_with(n, simulator, RabiaConfig::default(), factory)
    }

    /// Like [`start`](Self::start) with your engine configuration.
    pub fn start_with(
        n: usize,
        simulator: &NetworkSimulator,
        config: RabiaConfig,
        factory: impl Fn() -> SM + Send + Sync + 'static,
    ) -> Self {
        let ids = (1..=n as u64).map(NodeId::from_u64).collect();
        TestCluster::with_nodes(ids, simulator, config, factory)
    }

    /// Starts one node per id in `node_ids` (for instance ids you made with
    /// `NodeId::new()`, as the developer guide does); node `i` of the other
    /// methods is `node_ids[i]`.
    ///
    /// Batches are timestamped from tokio's clock (a fixed epoch plus the
    /// time since the cluster started), so on paused time a seeded run
    /// replays exactly.
    pub fn with_nodes(
        node_ids: Vec<NodeId>,
        simulator: &NetworkSimulator,
        config: RabiaConfig,
        factory: impl Fn() -> SM + Send + Sync + 'static,
    ) -> Self {
        let factory: Factory<SM> = Arc::new(factory);
        let members: BTreeSet<NodeId> = node_ids.iter().copied().collect();
        let epoch = Instant::now();
        // 2026-01-01T00:00:00Z in microseconds, then tokio time.
        const EPOCH_MICROS: u64 = 1_767_225_600_000_000;
        let wall_clock: WallClock = Arc::new(move || {
            EPOCH_MICROS + u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX / 2)
        });
        let mut seen = BTreeSet::new();
        let nodes: Vec<Arc<TestNode<SM>>> = node_ids
            .iter()
            .filter(|id| seen.insert(**id))
            .map(|id| {
                Arc::new(TestNode {
                    id: *id,
                    wall_clock: wall_clock.clone(),
                    members: members.clone(),
                    config: config.clone(),
                    factory: factory.clone(),
                    simulator: simulator.clone(),
                    persistence: InMemoryPersistence::new(),
                    running: Mutex::new(None),
                    last_exit: Mutex::new(None),
                })
            })
            .collect();
        for node in &nodes {
            simulator.register_node(node.id, node.clone());
            node.start();
        }
        TestCluster {
            simulator: simulator.clone(),
            nodes,
        }
    }

    /// The nodes' ids, in index order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The simulator the cluster runs on.
    pub fn simulator(&self) -> &NetworkSimulator {
        &self.simulator
    }

    fn node(&self, index: usize) -> Option<&Arc<TestNode<SM>>> {
        self.nodes.get(index)
    }

    /// Node `index`'s client handle, if its engine is running.
    pub fn handle(&self, index: usize) -> Option<EngineHandle> {
        self.node(index).and_then(|n| n.running()).map(|(h, _)| h)
    }

    /// Node `index`'s local reader, if its engine is running.
    pub fn local_reader(&self, index: usize) -> Option<LocalReader<SM>> {
        self.node(index).and_then(|n| n.running()).map(|(_, r)| r)
    }

    /// True if node `index`'s engine is running.
    pub fn is_up(&self, index: usize) -> bool {
        self.handle(index).is_some()
    }

    /// Why node `index`'s last engine stopped, if it did by itself (a disk
    /// failure, say).
    pub fn exit_reason(&self, index: usize) -> Option<String> {
        let node = self.node(index)?;
        let _ = node.running();
        lock(&node.last_exit).clone()
    }

    /// Submits through node `index`; `Err(Stopped)` if it is down.
    pub async fn submit(&self, index: usize, operation: Operation) -> Result<Vec<u8>, SubmitError> {
        match self.handle(index) {
            Some(handle) => handle.submit(operation).await,
            None => Err(SubmitError::Stopped),
        }
    }

    /// Node `index`'s latest status, if it is up.
    pub fn status(&self, index: usize) -> Option<EngineStatus> {
        self.handle(index).map(|h| h.status())
    }

    /// Waits until every running node has applied the same prefix, and that
    /// prefix covers everything any of them decided; returns its length.
    ///
    /// Only statuses published after the call count (the engines publish
    /// every `status_interval`), so work acknowledged before the call is
    /// always covered.
    pub async fn wait_converged(&self, timeout: Duration) -> Result<u64, ClusterError> {
        let deadline = Instant::now() + timeout;
        let mut watches: Vec<_> = (0..self.nodes.len())
            .filter_map(|i| self.handle(i))
            .map(|h| {
                let mut w = h.status_watch();
                w.mark_unchanged();
                w
            })
            .collect();
        for watch in &mut watches {
            // A stopped engine publishes no more; the loop below sees it down.
            let _ = tokio::time::timeout_at(deadline, watch.changed()).await;
        }
        loop {
            let statuses: Vec<EngineStatus> = (0..self.nodes.len())
                .filter_map(|i| self.status(i))
                .collect();
            if let Some(first) = statuses.first() {
                let applied = first.applied_slot;
                let decided_max = statuses
                    .iter()
                    .map(|s| s.next_slot)
                    .max()
                    .unwrap_or(applied);
                if statuses
                    .iter()
                    .all(|s| s.running && s.applied_slot == applied)
                    && applied >= decided_max
                {
                    return Ok(applied.0);
                }
            }
            if Instant::now() >= deadline {
                let summary: Vec<String> = (0..self.nodes.len())
                    .map(|i| match self.status(i) {
                        Some(s) => format!(
                            "node {}: next {} applied {}",
                            self.nodes[i].id, s.next_slot.0, s.applied_slot.0
                        ),
                        None => format!("node {}: down", self.nodes[i].id),
                    })
                    .collect();
                return Err(ClusterError(format!(
                    "no convergence within {timeout:?} (seed {}): {}",
                    self.simulator.seed(),
                    summary.join("; ")
                )));
            }
            // The engines publish status periodically; poll at that pace.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Each running node's `StateMachine::snapshot()`, taken between two
    /// applied operations (`None` for a node that is down). The snapshot
    /// runs on the node's apply task and must not wait on I/O.
    pub async fn snapshots(&self) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            let Some(reader) = self.local_reader(i) else {
                out.push(None);
                continue;
            };
            let snapshot = reader
                .read_local(|sm: &SM| futures::executor::block_on(sm.snapshot()).ok())
                .await
                .ok()
                .flatten();
            out.push(snapshot);
        }
        out
    }

    /// Waits for convergence, then asserts that every running node's
    /// snapshot is identical byte for byte. Panics with the seed and the
    /// fault history otherwise.
    ///
    /// This needs a canonical snapshot: equal states must serialize to
    /// equal bytes (a `BTreeMap` does; a `HashMap` serialized in iteration
    /// order does not). Otherwise use
    /// [`assert_consistent_by`](Self::assert_consistent_by).
    pub async fn assert_consistent(&self, timeout: Duration) {
        self.assert_consistent_by(timeout, <[u8]>::to_vec).await;
    }

    /// Like [`assert_consistent`](Self::assert_consistent), comparing
    /// `canonical(snapshot)` instead of the bytes, e.g. the decoded state
    /// (a decoded `HashMap` compares by content).
    pub async fn assert_consistent_by<T: PartialEq + std::fmt::Debug>(
        &self,
        timeout: Duration,
        canonical: impl Fn(&[u8]) -> T,
    ) {
        if let Err(e) = self.wait_converged(timeout).await {
            panic!("{e}\nfaults: {:?}", self.simulator.events());
        }
        let snapshots = self.snapshots().await;
        let live: Vec<(usize, T)> = snapshots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, canonical(s))))
            .collect();
        assert!(!live.is_empty(), "no running node to compare");
        for (i, snapshot) in &live[1..] {
            assert!(
                *snapshot == live[0].1,
                "replica {} differs from replica {} after convergence (seed {}; faults {:?})",
                self.nodes[*i].id,
                self.nodes[live[0].0].id,
                self.simulator.seed(),
                self.simulator.events()
            );
        }
    }

    /// Stops every node cleanly.
    pub async fn shutdown(&self) {
        for node in &self.nodes {
            let running = lock(&node.running).take();
            if let Some(running) = running {
                running.handle.shutdown();
                let _ = running.task.await;
            }
        }
    }
}

impl<SM> Drop for TestCluster<SM> {
    fn drop(&mut self) {
        for node in &self.nodes {
            self.simulator.unregister_node(node.id);
            if let Some(running) = lock(&node.running).take() {
                running.task.abort();
            }
        }
    }
}

//! Engine tests on paused tokio time with the in-memory transport and
//! persistence. Every wait is a condition with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use rabia_core::protocol::PersistRecord;
use rabia_core::smr::{Operation, OperationResult, StateMachine};
use rabia_core::{ClusterConfig, NodeId, Slot};
use rabia_engine::{
    EngineError, EngineHandle, EngineStatus, LocalReader, RabiaConfig, RabiaEngine, SubmitError,
};
use rabia_network::{InMemoryNetwork, LinkDecision};
use rabia_persistence::{InMemoryPersistence, Persistence, PersistenceError, Recovered, Snapshot};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum CounterOp {
    Add(i64),
    Get,
}

/// A counter that also counts how many operations it applied.
#[derive(Default)]
struct Counter {
    value: i64,
    applied: u64,
}

#[async_trait]
impl StateMachine for Counter {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        let op: CounterOp =
            bincode::deserialize(&op.data).map_err(|e| format!("bad operation: {e}"))?;
        self.applied += 1;
        if let CounterOp::Add(n) = op {
            self.value += n;
        }
        Ok(bincode::serialize(&self.value)?)
    }
    async fn snapshot(&self) -> OperationResult {
        Ok(bincode::serialize(&(self.value, self.applied))?)
    }
    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        (self.value, self.applied) = bincode::deserialize(data)?;
        Ok(())
    }
}

fn add(n: i64) -> Vec<u8> {
    bincode::serialize(&CounterOp::Add(n)).unwrap()
}

fn value(reply: &[u8]) -> i64 {
    bincode::deserialize(reply).unwrap()
}

struct Node {
    handle: EngineHandle,
    reader: LocalReader<Counter>,
    task: JoinHandle<Result<(), EngineError>>,
    storage: InMemoryPersistence,
}

struct Cluster {
    ids: Vec<NodeId>,
    network: InMemoryNetwork,
    config: RabiaConfig,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start(n: u64, config: RabiaConfig) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).map(NodeId::from_u64).collect();
        let network = InMemoryNetwork::new(100_000);
        let mut cluster = Cluster {
            ids: ids.clone(),
            network,
            config,
            nodes: Vec::new(),
        };
        for i in 0..ids.len() {
            let node = cluster.spawn(i, InMemoryPersistence::new());
            cluster.nodes.push(node);
        }
        cluster
    }

    fn spawn(&self, i: usize, storage: InMemoryPersistence) -> Node {
        let id = self.ids[i];
        let cluster_config = ClusterConfig::new(id, self.ids.iter().copied().collect());
        let (_tx, rx) = mpsc::unbounded_channel();
        let engine = RabiaEngine::new(
            id,
            self.config.clone(),
            cluster_config,
            Counter::default(),
            storage.clone(),
            rx,
        )
        .with_transport(self.network.endpoint(id));
        Node {
            handle: engine.handle(),
            reader: engine.local_reader(),
            task: tokio::spawn(engine.run()),
            storage,
        }
    }

    async fn restart(&mut self, i: usize) {
        self.nodes[i].handle.shutdown();
        (&mut self.nodes[i].task).await.unwrap().unwrap();
        let storage = self.nodes[i].storage.clone();
        self.nodes[i] = self.spawn(i, storage);
    }

    /// Cuts node `i` off from everyone (undo with `network.clear_filter()`).
    fn isolate(&self, i: usize) {
        let isolated = self.ids[i];
        self.network.set_filter(Arc::new(move |from, to, _| {
            if from == isolated || to == isolated {
                LinkDecision::Drop
            } else {
                LinkDecision::Deliver
            }
        }));
    }

    async fn state(&self, i: usize) -> (i64, u64) {
        self.nodes[i]
            .reader
            .read_local(|c: &Counter| (c.value, c.applied))
            .await
            .unwrap()
    }

    /// Waits until node 0 is quiescent (applied everything it decided) and
    /// every node has applied as far, then returns their states.
    async fn converged(&self) -> Vec<(i64, u64)> {
        let quiet = wait_status(&self.nodes[0].handle, |s| {
            s.applied_slot == s.next_slot && s.next_slot > Slot(0) && s.queued_operations == 0
        })
        .await;
        let target = quiet.next_slot;
        for node in &self.nodes {
            wait_status(&node.handle, |s| s.applied_slot >= target).await;
        }
        let mut states = Vec::new();
        for i in 0..self.nodes.len() {
            states.push(self.state(i).await);
        }
        states
    }
}

/// A one-node engine (no transport needed) and its fire-and-forget channel.
fn single_node<SM: StateMachine + 'static>(
    config: RabiaConfig,
    state_machine: SM,
) -> (RabiaEngine<SM>, mpsc::UnboundedSender<Operation>) {
    let me = NodeId::from_u64(1);
    let (operation_tx, operation_rx) = mpsc::unbounded_channel();
    let engine = RabiaEngine::new(
        me,
        config,
        ClusterConfig::new(me, [me].into_iter().collect()),
        state_machine,
        InMemoryPersistence::new(),
        operation_rx,
    );
    (engine, operation_tx)
}

/// Waits (virtual time) until the engine's published status satisfies `pred`.
async fn wait_status(handle: &EngineHandle, pred: impl Fn(&EngineStatus) -> bool) -> EngineStatus {
    let mut watch = handle.status_watch();
    tokio::time::timeout(Duration::from_secs(120), async {
        watch
            .wait_for(|s| pred(s))
            .await
            .map(|s| s.clone())
            .unwrap()
    })
    .await
    .expect("condition not reached within 120 s of virtual time")
}

#[tokio::test(start_paused = true)]
async fn replies_carry_results_and_replicas_agree() {
    let cluster = Cluster::start(3, RabiaConfig::default());
    let mut clients = Vec::new();
    for c in 0..6 {
        let handle = cluster.nodes[c % 3].handle.clone();
        clients.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            for _ in 0..20 {
                replies.push(value(&handle.submit(Operation::new(add(1))).await.unwrap()));
            }
            replies
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        let replies = c.await.unwrap();
        assert!(
            replies.windows(2).all(|w| w[0] < w[1]),
            "a client's own adds are ordered"
        );
        all.extend(replies);
    }
    all.sort();
    assert_eq!(
        all,
        (1..=120).collect::<Vec<i64>>(),
        "every add returned a distinct running total"
    );
    let states = cluster.converged().await;
    assert!(states.iter().all(|s| *s == (120, 120)), "{states:?}");
    let read = cluster.nodes[1]
        .handle
        .read(Operation::new(bincode::serialize(&CounterOp::Get).unwrap()))
        .await;
    assert_eq!(value(&read.unwrap()), 120);
}

#[tokio::test(start_paused = true)]
async fn a_retried_session_operation_applies_once() {
    let cluster = Cluster::start(3, RabiaConfig::default());
    let session = cluster.nodes[0].handle.session();
    let op = session.operation(add(5));
    let first = cluster.nodes[0].handle.submit(op.clone()).await.unwrap();
    // The client retries the same operation through another replica.
    let retry = cluster.nodes[2].handle.submit(op.clone()).await.unwrap();
    assert_eq!(first, retry);
    let again = cluster.nodes[1].handle.submit(op).await.unwrap();
    assert_eq!(first, again);
    let next = session.submit(add(1)).await.unwrap();
    assert_eq!(value(&next), 6);
    let states = cluster.converged().await;
    assert!(
        states.iter().all(|s| *s == (6, 2)),
        "applied once each: {states:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_that_misses_slots_catches_up() {
    let cluster = Cluster::start(3, RabiaConfig::default());
    cluster.isolate(2);
    for _ in 0..30 {
        cluster.nodes[0]
            .handle
            .submit(Operation::new(add(2)))
            .await
            .unwrap();
    }
    assert_eq!(
        cluster.state(2).await,
        (0, 0),
        "the isolated node saw nothing"
    );
    cluster.network.clear_filter();
    let states = cluster.converged().await;
    assert!(states.iter().all(|s| *s == (60, 30)), "{states:?}");
    let status = cluster.nodes[2].handle.status();
    assert!(status.protocol.decisions_adopted > 0 || status.protocol.catch_up_requests > 0);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_restore_keeps_sessions() {
    let config = RabiaConfig {
        max_log_size: 256, // snapshot every few operations
        ..RabiaConfig::default()
    };
    let mut cluster = Cluster::start(3, config);
    let session = cluster.nodes[0].handle.session();
    let first = session.operation(add(7));
    let reply = cluster.nodes[0].handle.submit(first.clone()).await.unwrap();
    for _ in 0..40 {
        session.submit(add(1)).await.unwrap();
    }
    cluster.converged().await;
    let snapshot = wait_status(&cluster.nodes[1].handle, |s| s.last_snapshot.is_some()).await;
    assert!(snapshot.last_snapshot.unwrap() > Slot(0));
    assert!(cluster.nodes[1].storage.snapshot_slot().is_some());

    cluster.restart(1).await;
    let states = cluster.converged().await;
    assert!(
        states.iter().all(|s| *s == (47, 41)),
        "restored from snapshot + log: {states:?}"
    );
    // A late retry of a very old session operation, through the restarted
    // replica, is still recognised (the session table was in the snapshot).
    let retry = cluster.nodes[1].handle.submit(first).await.unwrap();
    assert_eq!(retry, reply);
    let states = cluster.converged().await;
    assert!(
        states.iter().all(|s| *s == (47, 41)),
        "nothing applied twice: {states:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn overload_hands_the_operation_back() {
    let config = RabiaConfig {
        max_queued_operations: 2,
        ..RabiaConfig::default()
    };
    let me = NodeId::from_u64(1);
    let peers: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
    let (_tx, rx) = mpsc::unbounded_channel();
    let network = InMemoryNetwork::new(16);
    // The engine is not running yet: its queue fills up.
    let engine = RabiaEngine::new(
        me,
        config,
        ClusterConfig::new(me, peers.into_iter().collect()),
        Counter::default(),
        InMemoryPersistence::new(),
        rx,
    )
    .with_transport(network.endpoint(me));
    let handle = engine.handle();
    let _a = handle.try_submit(Operation::new(add(1))).unwrap();
    let _b = handle.try_submit(Operation::new(add(2))).unwrap();
    match handle.try_submit(Operation::new(add(3))) {
        Err(SubmitError::Overloaded { operation }) => assert_eq!(operation.data, add(3)),
        other => panic!("expected overload, got {other:?}"),
    }
    drop(engine);
}

#[tokio::test(start_paused = true)]
async fn a_garbage_operation_gets_an_error_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start(3, RabiaConfig::default());
    let garbage = cluster.nodes[0]
        .handle
        .submit(Operation::new(vec![0xFF, 0x13, 0x37]))
        .await;
    assert!(
        matches!(garbage, Err(SubmitError::Application { .. })),
        "{garbage:?}"
    );
    let ok = cluster.nodes[1]
        .handle
        .submit(Operation::new(add(3)))
        .await
        .unwrap();
    assert_eq!(value(&ok), 3);
    let states = cluster.converged().await;
    assert!(states.iter().all(|s| s.0 == 3), "{states:?}");
}

#[tokio::test(start_paused = true)]
async fn a_storage_failure_stops_the_engine_cleanly() {
    let cluster = Cluster::start(3, RabiaConfig::default());
    cluster.nodes[0]
        .handle
        .submit(Operation::new(add(1)))
        .await
        .unwrap();
    cluster.nodes[0]
        .storage
        .fail_with("disk failure injected by the test");
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        cluster.nodes[0].handle.submit(Operation::new(add(1))),
    )
    .await
    .expect("a stopped engine must answer its waiting clients");
    assert_eq!(reply, Err(SubmitError::Stopped));
    let status = wait_status(&cluster.nodes[0].handle, |s| !s.running).await;
    assert!(status.stopped_reason.unwrap().contains("disk failure"));
    let mut cluster = cluster;
    let ended = (&mut cluster.nodes[0].task).await.unwrap();
    assert!(
        matches!(ended, Err(EngineError::Persistence(_))),
        "{ended:?}"
    );
    // Reads against a stopped engine fail cleanly too.
    assert_eq!(
        cluster.nodes[0]
            .reader
            .read_local(|c: &Counter| c.value)
            .await,
        Err(SubmitError::Stopped)
    );
    // The other two keep serving.
    let ok = cluster.nodes[1]
        .handle
        .submit(Operation::new(add(1)))
        .await
        .unwrap();
    assert!(value(&ok) >= 2);
}

#[tokio::test(start_paused = true)]
async fn single_node_and_invalid_configuration() {
    let me = NodeId::from_u64(9);
    let bad = RabiaConfig {
        max_batch_size: 0,
        ..RabiaConfig::default()
    };
    let (engine, _tx) = single_node(bad, Counter::default());
    assert!(matches!(engine.run().await, Err(EngineError::Config(_))));

    let (_tx, rx) = mpsc::unbounded_channel();
    let two = [me, NodeId::from_u64(10)].into_iter().collect();
    let engine = RabiaEngine::new(
        me,
        RabiaConfig::default(),
        ClusterConfig::new(me, two),
        Counter::default(),
        InMemoryPersistence::new(),
        rx,
    );
    assert!(matches!(
        engine.run().await,
        Err(EngineError::NoTransport { nodes: 2 })
    ));
}

#[tokio::test(start_paused = true)]
async fn the_guides_fire_and_forget_channel_works() {
    let (engine, operation_tx) = single_node(RabiaConfig::default(), Counter::default());
    let handle = engine.handle();
    let reader = engine.local_reader();
    let task = tokio::spawn(engine.run());
    for _ in 0..10 {
        operation_tx.send(Operation::new(add(1))).unwrap();
    }
    wait_status(&handle, |s| {
        s.applied_slot >= Slot(1) && s.queued_operations == 0
    })
    .await;
    let value = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let v = reader.read_local(|c: &Counter| c.value).await.unwrap();
            if v == 10 {
                return v;
            }
            tokio::task::yield_now().await;
            let mut w = handle.status_watch();
            let _ = w.changed().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(value, 10);
    handle.shutdown();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_closed_transport_stops_the_engine_instead_of_spinning() {
    let cluster = Cluster::start(3, RabiaConfig::default());
    cluster.nodes[0]
        .handle
        .submit(Operation::new(add(1)))
        .await
        .unwrap();
    // Another instance of node 1 takes over its endpoint.
    let _replacement = cluster.network.endpoint(cluster.ids[0]);
    let mut cluster = cluster;
    let ended = tokio::time::timeout(Duration::from_secs(60), &mut cluster.nodes[0].task)
        .await
        .expect("the engine must stop")
        .unwrap();
    assert!(
        matches!(ended, Err(EngineError::TransportClosed)),
        "{ended:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_before_run_is_honoured() {
    let (engine, _tx) = single_node(RabiaConfig::default(), Counter::default());
    let handle = engine.handle();
    handle.shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(60), engine.run()).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}

#[tokio::test(start_paused = true)]
async fn refused_fire_and_forget_operations_are_counted() {
    let config = RabiaConfig {
        max_batch_bytes: 1024,
        ..RabiaConfig::default()
    };
    let (engine, operation_tx) = single_node(config, Counter::default());
    let handle = engine.handle();
    let task = tokio::spawn(engine.run());
    operation_tx.send(Operation::new(vec![0; 4096])).unwrap();
    operation_tx.send(Operation::new(add(1))).unwrap();
    let status = wait_status(&handle, |s| {
        s.refused_operations == 1 && s.applied_slot >= Slot(1)
    })
    .await;
    assert_eq!(status.refused_operations, 1);
    // A session resumed at a position continues its numbering.
    let session = rabia_engine::Session::resume(handle.clone(), rabia_core::ClientId(77), 5);
    assert_eq!(session.operation(add(1)).session.unwrap().seq, 5);
    assert_eq!(session.next_seq(), 6);
    handle.shutdown();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_replica_behind_every_peers_log_catches_up_by_snapshot() {
    let config = RabiaConfig {
        max_retained_decisions: 64,
        snapshot_chunk_bytes: 64, // many chunks
        ..RabiaConfig::default()
    };
    let cluster = Cluster::start(3, config);
    cluster.isolate(2);
    let session = cluster.nodes[0].handle.session();
    cluster.nodes[0]
        .handle
        .submit(session.operation(add(3)))
        .await
        .unwrap();
    for _ in 0..149 {
        session.submit(add(1)).await.unwrap();
    }
    let recent = session.operation(add(1));
    let reply = cluster.nodes[0]
        .handle
        .submit(recent.clone())
        .await
        .unwrap();
    assert_eq!(cluster.state(2).await, (0, 0));
    cluster.network.clear_filter();
    let states = cluster.converged().await;
    assert!(states.iter().all(|s| s.0 == 153), "{states:?}");
    let status = cluster.nodes[2].handle.status();
    assert!(
        status.protocol.snapshots_installed >= 1,
        "{:?}",
        status.protocol
    );
    // The snapshot carried the session table: a retry is recognised...
    assert_eq!(cluster.nodes[2].handle.submit(recent).await.unwrap(), reply);
    // ...and one older than the session window is refused, not re-applied.
    let ancient = rabia_core::Operation::with_session(add(3), session.client_id(), 1);
    assert!(matches!(
        cluster.nodes[2].handle.submit(ancient).await,
        Err(SubmitError::SessionExpired { .. })
    ));
    let states = cluster.converged().await;
    assert!(states.iter().all(|s| s.0 == 153), "{states:?}");
}

/// A state machine that panics: the engine must stop with an error (not
/// panic itself) and fail the waiting client.
struct Exploding;

#[async_trait]
impl StateMachine for Exploding {
    async fn apply_operation(&mut self, _op: &Operation) -> OperationResult {
        panic!("state machine bug");
    }
    async fn snapshot(&self) -> OperationResult {
        Ok(Vec::new())
    }
    async fn restore_from_snapshot(
        &mut self,
        _data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_state_machine_stops_the_engine_with_an_error() {
    let (engine, _tx) = single_node(RabiaConfig::default(), Exploding);
    let handle = engine.handle();
    let task = tokio::spawn(engine.run());
    let reply = handle.submit(Operation::new(vec![1])).await;
    assert_eq!(reply, Err(SubmitError::Stopped));
    let ended = task.await.expect("the engine task itself must not panic");
    match ended {
        Err(EngineError::Internal(message)) => assert!(message.contains("panicked"), "{message}"),
        other => panic!("expected an internal error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_back_with_empty_storage_gets_its_new_writes_applied() {
    // Node 3 writes, then comes back with an empty store (a replaced disk,
    // or in-memory storage after a process restart): the store's start
    // counter begins at 0 again, yet its new batches must not be mistaken
    // for its old, decided ones.
    let mut cluster = Cluster::start(3, RabiaConfig::default());
    for _ in 0..20 {
        cluster.nodes[2]
            .handle
            .submit(Operation::new(add(1)))
            .await
            .unwrap();
    }
    cluster.nodes[2].handle.shutdown();
    (&mut cluster.nodes[2].task).await.unwrap().unwrap();
    cluster.nodes[2] = cluster.spawn(2, InMemoryPersistence::new());
    for k in 0..5 {
        let reply = tokio::time::timeout(
            Duration::from_secs(30),
            cluster.nodes[2].handle.submit(Operation::new(add(1))),
        )
        .await
        .unwrap_or_else(|_| panic!("write {k} after the empty restart never applied"))
        .unwrap();
        assert_eq!(value(&reply), 21 + k);
    }
    let states = cluster.converged().await;
    assert!(states.iter().all(|s| s.0 == 25), "{states:?}");
}

/// Storage that looks durable and takes `latency` of (virtual) time per
/// append, as a disk sync does: the engine then announces its openings and
/// runs its group-commit task, as with file persistence.
#[derive(Clone)]
struct SlowDisk {
    inner: InMemoryPersistence,
    latency: Duration,
}

#[async_trait]
impl Persistence for SlowDisk {
    async fn recover(&mut self) -> Result<Recovered, PersistenceError> {
        self.inner.recover().await
    }
    async fn append(&mut self, records: &[PersistRecord]) -> Result<(), PersistenceError> {
        // The disk's latency, in paused (virtual) time: what is modelled,
        // not a wait for a condition.
        tokio::time::sleep(self.latency).await;
        self.inner.append(records).await
    }
    async fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), PersistenceError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn truncate_before(&mut self, slot: Slot) -> Result<(), PersistenceError> {
        self.inner.truncate_before(slot).await
    }
}

/// A counter whose replica on one node submits the next operation (from a
/// task it spawns while it applies one) until `limit`: a closed-loop client
/// whose next operation can reach the engine before the apply task reports
/// the slot applied.
struct Chain {
    value: u64,
    client: Option<Arc<std::sync::Mutex<Option<EngineHandle>>>>,
    limit: u64,
    /// Notified when the operation numbered `limit` is applied.
    done: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl StateMachine for Chain {
    async fn apply_operation(&mut self, _op: &Operation) -> OperationResult {
        self.value += 1;
        if self.value == self.limit {
            self.done.notify_one();
        }
        let handle = self.client.as_ref().and_then(|c| c.lock().unwrap().clone());
        if let Some(handle) = handle.filter(|_| self.value < self.limit) {
            tokio::spawn(async move { handle.submit(Operation::new(add(1))).await });
            // Let the client and the engine loop run before this slot is
            // reported applied: the next operation reaches the engine's
            // batcher first.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        }
        Ok(Vec::new())
    }
    async fn snapshot(&self) -> OperationResult {
        Ok(bincode::serialize(&self.value)?)
    }
    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.value = bincode::deserialize(data)?;
        Ok(())
    }
}

/// A closed-loop client waits for its slot and nothing more: with a 1 ms
/// sync, one operation at a time takes about one sync each. Regression
/// test: while the opening was held after a decision, the engine woke on
/// the apply task's progress only if the replica held pending batches, not
/// when the client's next operation waited in the engine's batcher, so
/// each operation also waited for an unrelated timer (here the next
/// operation reaches the engine before the progress report, as it can on a
/// multi-threaded runtime).
#[tokio::test(start_paused = true)]
async fn a_closed_loop_client_waits_only_for_its_slot() {
    let sync = Duration::from_millis(1);
    let operations = 50u64;
    let ids: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
    let network = InMemoryNetwork::new(100_000);
    let client = Arc::new(std::sync::Mutex::new(None));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let (_tx, rx) = mpsc::unbounded_channel();
        let chain = Chain {
            value: 0,
            client: (i == 0).then(|| client.clone()),
            limit: operations,
            done: if i == 0 {
                done.clone()
            } else {
                Arc::new(tokio::sync::Notify::new())
            },
        };
        let engine = RabiaEngine::new(
            id,
            RabiaConfig::default(),
            ClusterConfig::new(id, ids.iter().copied().collect()),
            chain,
            SlowDisk {
                inner: InMemoryPersistence::new(),
                latency: sync,
            },
            rx,
        )
        .with_transport(network.endpoint(id));
        handles.push(engine.handle());
        tasks.push(tokio::spawn(engine.run()));
    }
    *client.lock().unwrap() = Some(handles[0].clone());
    let started = tokio::time::Instant::now();
    handles[0].submit(Operation::new(add(1))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), done.notified())
        .await
        .expect("the chain ends within 60 s of virtual time");
    let per_operation = started.elapsed() / operations as u32;
    assert!(
        per_operation < sync * 3 / 2,
        "{per_operation:?} per operation with a {sync:?} sync"
    );
    for handle in &handles {
        handle.shutdown();
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

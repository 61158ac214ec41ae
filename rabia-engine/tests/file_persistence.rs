//! Engines on `FilePersistence`: a replica stopped and restarted from its
//! data directory recovers its state and sessions and rejoins. Real time
//! (file I/O), bounded by deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use rabia_core::smr::{Operation, OperationResult, StateMachine};
use rabia_core::{ClusterConfig, NodeId};
use rabia_engine::{EmptyStore, EngineError, EngineHandle, LocalReader, RabiaConfig, RabiaEngine};
use rabia_network::InMemoryNetwork;
use rabia_persistence::{FileOptions, FilePersistence};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Sum(u64);

#[async_trait]
impl StateMachine for Sum {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        self.0 += u64::from(op.data[0]);
        Ok(self.0.to_le_bytes().to_vec())
    }
    async fn snapshot(&self) -> OperationResult {
        Ok(self.0.to_le_bytes().to_vec())
    }
    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0 = u64::from_le_bytes(data.try_into()?);
        Ok(())
    }
}

struct Node {
    handle: EngineHandle,
    reader: LocalReader<Sum>,
    task: JoinHandle<Result<(), EngineError>>,
}

fn start(
    id: NodeId,
    ids: &[NodeId],
    dir: &Path,
    network: &InMemoryNetwork,
    config: RabiaConfig,
) -> Node {
    let storage = FilePersistence::open(dir, FileOptions::default()).unwrap();
    let (_tx, rx) = mpsc::unbounded_channel();
    let engine = RabiaEngine::new(
        id,
        config,
        ClusterConfig::new(id, ids.iter().copied().collect()),
        Sum::default(),
        storage,
        rx,
    )
    .with_transport(network.endpoint(id));
    Node {
        handle: engine.handle(),
        reader: engine.local_reader(),
        task: tokio::spawn(engine.run()),
    }
}

/// Stops the first of three nodes, submits through the third (which the
/// second and third can decide only if the third takes part), returns the
/// sum it answers, and stops the rest.
async fn serves_without_the_first(nodes: &mut [Node]) -> u64 {
    nodes[0].handle.shutdown();
    (&mut nodes[0].task).await.unwrap().unwrap();
    let reply = nodes[2]
        .handle
        .submit(Operation::new(vec![1]))
        .await
        .unwrap();
    for node in &nodes[1..] {
        node.handle.shutdown();
    }
    u64::from_le_bytes(reply.try_into().unwrap())
}

/// Three data directories (kept alive by the first element), their paths,
/// three node ids and a network between them.
fn three_nodes() -> (
    Vec<tempfile::TempDir>,
    Vec<PathBuf>,
    Vec<NodeId>,
    InMemoryNetwork,
) {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    let ids: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
    (dirs, paths, ids, InMemoryNetwork::new(10_000))
}

async fn sum(node: &Node) -> u64 {
    node.reader.read_local(|s: &Sum| s.0).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarts_from_its_data_directory() {
    let (_dirs, paths, ids, network) = three_nodes();
    let config = RabiaConfig {
        max_log_size: 200, // snapshots every few operations
        ..RabiaConfig::default()
    };
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| start(ids[i], &ids, &paths[i], &network, config.clone()))
        .collect();
    let session = nodes[0].handle.session();
    let first = session.operation(vec![5]);
    let reply = nodes[0].handle.submit(first.clone()).await.unwrap();
    for _ in 0..40 {
        session.submit(vec![1]).await.unwrap();
    }

    // Stop node 2 and start it again from its directory.
    nodes[1].handle.shutdown();
    (&mut nodes[1].task).await.unwrap().unwrap();
    nodes[1] = start(ids[1], &ids, &paths[1], &network, config.clone());
    for _ in 0..5 {
        nodes[2]
            .handle
            .submit(Operation::new(vec![2]))
            .await
            .unwrap();
    }
    let expected = 5 + 40 + 10;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut all = true;
            for node in &nodes {
                all &= sum(node).await == expected;
            }
            if all {
                return;
            }
            let mut watch = nodes[1].handle.status_watch();
            let _ = watch.changed().await;
        }
    })
    .await
    .expect("every replica reaches the same sum");
    // A retry of the very first session operation, through the restarted
    // replica, is recognised from the snapshot's session table.
    assert_eq!(nodes[1].handle.submit(first).await.unwrap(), reply);
    assert_eq!(sum(&nodes[1]).await, expected);
    assert!(nodes[1].handle.status().last_snapshot.is_some());
    for node in &nodes {
        node.handle.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brand_new_replica_joins_a_cluster_with_compacted_history() {
    let (_dirs, paths, ids, network) = three_nodes();
    let config = RabiaConfig {
        max_retained_decisions: 64,
        max_log_size: 100,
        snapshot_chunk_bytes: 16,
        ..RabiaConfig::default()
    };
    // Two of three replicas form a quorum and build a history.
    let mut nodes: Vec<Node> = (0..2)
        .map(|i| start(ids[i], &ids, &paths[i], &network, config.clone()))
        .collect();
    for _ in 0..100 {
        nodes[0]
            .handle
            .submit(Operation::new(vec![1]))
            .await
            .unwrap();
    }
    // The third starts with an empty data directory, long after the first
    // 64 decisions were dropped from every peer's memory.
    nodes.push(start(ids[2], &ids, &paths[2], &network, config.clone()));
    nodes[1]
        .handle
        .submit(Operation::new(vec![1]))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if sum(&nodes[2]).await == 101 {
                return;
            }
            let mut watch = nodes[2].handle.status_watch();
            let _ = watch.changed().await;
        }
    })
    .await
    .expect("the new replica catches up");
    // The status is published periodically: wait for the one that shows it.
    let mut watch = nodes[2].handle.status_watch();
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        watch.wait_for(|s| s.protocol.snapshots_installed >= 1 && s.last_snapshot.is_some()),
    )
    .await
    .expect("the snapshot install is reported")
    .unwrap()
    .clone();
    assert!(status.protocol.snapshot_requests >= 1);
    // It now takes part: stop another replica and the cluster still serves.
    assert_eq!(serves_without_the_first(&mut nodes).await, 102);
}

/// A replica whose data directory is lost comes back empty under the same
/// id as a replacement (`EmptyStore::Rejoin`): it learns before it votes,
/// starting at two past the furthest slot its peers report, and then takes
/// part (the cluster serves with it and one other replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_data_rejoins_as_a_learner_first() {
    let (_dirs, paths, ids, network) = three_nodes();
    let config = RabiaConfig::default();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| start(ids[i], &ids, &paths[i], &network, config.clone()))
        .collect();
    for i in 0..30 {
        nodes[i % 3]
            .handle
            .submit(Operation::new(vec![1]))
            .await
            .unwrap();
    }
    // Node 3 loses its disk.
    nodes[2].handle.shutdown();
    (&mut nodes[2].task).await.unwrap().unwrap();
    std::fs::remove_dir_all(&paths[2]).unwrap();
    let rejoin = RabiaConfig {
        empty_store: EmptyStore::Rejoin,
        ..config.clone()
    };
    nodes[2] = start(ids[2], &ids, &paths[2], &network, rejoin);
    let mut watch = nodes[2].handle.status_watch();
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        watch.wait_for(|s| s.running && s.participate_from.is_some()),
    )
    .await
    .expect("the replacement learns where its peers are")
    .unwrap()
    .clone();
    let from = status.participate_from.unwrap();
    assert!(from.0 >= 30 + 2, "takes part only past its peers: {from:?}");
    // Its own submissions are decided by the others meanwhile.
    for _ in 0..3 {
        nodes[2]
            .handle
            .submit(Operation::new(vec![1]))
            .await
            .unwrap();
    }
    let status = tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|s| !s.learner))
        .await
        .expect("it becomes a participant")
        .unwrap()
        .clone();
    assert!(status.next_slot >= from);
    // It now takes part: with node 1 down, nodes 2 and 3 still decide.
    assert_eq!(serves_without_the_first(&mut nodes).await, 34);
}

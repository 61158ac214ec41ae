//! `NetworkSimulator` and `FaultType` over real engines: the developer
//! guide's fault-injection test made complete, and one test per fault type.
//! All on paused tokio time: a 10-second crash costs no real time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use rabia_core::smr::{Operation, OperationResult, StateMachine};
use rabia_core::NodeId;
use rabia_engine::SubmitError;
use rabia_testing::{FaultType, NetworkSimulator, TestCluster};
use std::time::Duration;

/// The guide's counter, reduced to what these tests need.
#[derive(Default)]
struct Counter {
    value: i64,
}

#[async_trait]
impl StateMachine for Counter {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        match op.data.as_slice() {
            b"inc" => self.value += 1,
            b"dec" => self.value -= 1,
            b"get" => {}
            other => return Err(format!("unknown operation {other:?}").into()),
        }
        Ok(self.value.to_le_bytes().to_vec())
    }

    async fn snapshot(&self) -> OperationResult {
        Ok(self.value.to_le_bytes().to_vec())
    }

    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.value = i64::from_le_bytes(data.try_into()?);
        Ok(())
    }
}

const CONVERGE: Duration = Duration::from_secs(60);

fn inc() -> Operation {
    Operation::new(b"inc".to_vec())
}

fn value(reply: &[u8]) -> i64 {
    i64::from_le_bytes(reply.try_into().unwrap())
}

/// Submits `n` increments spread over the nodes in `through`, each with a
/// deadline; returns how many were acknowledged.
async fn increments(cluster: &TestCluster<Counter>, through: &[usize], n: usize) -> i64 {
    let mut acked = 0;
    for k in 0..n {
        let node = through[k % through.len()];
        let reply =
            tokio::time::timeout(Duration::from_secs(30), cluster.submit(node, inc())).await;
        if let Ok(Ok(_)) = reply {
            acked += 1;
        }
    }
    acked
}

async fn read(cluster: &TestCluster<Counter>, node: usize) -> i64 {
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        cluster.submit(node, Operation::new(b"get".to_vec())),
    )
    .await
    .expect("read timed out")
    .expect("read failed");
    value(&reply)
}

/// The developer guide's "Integration Testing with Fault Injection" test as
/// written; the lines it elides ("Set up each node...", "Submit operations
/// and verify consistency") are filled in, marked `// (elided in the guide)`.
#[rustfmt::skip]
#[tokio::test]
async fn test_counter_with_node_failure() {
    // Set up 5-node cluster
    let mut nodes = Vec::new();
    for _ in 0..5 {
        let node_id = NodeId::new();
        // Set up each node...
        nodes.push(node_id);
    }

    // Simulate network partition
    let simulator = NetworkSimulator::new();
    let cluster = TestCluster::with_nodes(nodes.clone(), &simulator, Default::default(), Counter::default); // (elided in the guide)
    simulator.inject_fault(FaultType::NodeCrash {
        node_id: nodes[0],
        duration: Duration::from_secs(10),
    }).await;

    // Verify system continues operating with 4 nodes
    // Submit operations and verify consistency
    assert!(!cluster.is_up(0)); // (elided in the guide)
    assert_eq!(increments(&cluster, &[1, 2, 3, 4], 20).await, 20); // (elided in the guide)
    assert_eq!(read(&cluster, 4).await, 20); // (elided in the guide)
    cluster.assert_consistent(CONVERGE).await; // (elided in the guide)
}

#[tokio::test(start_paused = true)]
async fn a_crashed_node_restarts_from_storage_and_catches_up() {
    // The guide's scenario carried on: after its 10 s the node restarts
    // from its storage and catches up.
    let simulator = NetworkSimulator::new();
    let cluster = TestCluster::start(5, &simulator, Counter::default);
    let nodes: Vec<NodeId> = cluster.node_ids();
    assert_eq!(increments(&cluster, &[0, 1, 2, 3, 4], 10).await, 10);

    simulator
        .inject_fault(FaultType::NodeCrash {
            node_id: nodes[0],
            duration: Duration::from_secs(10),
        })
        .await;
    assert!(!cluster.is_up(0), "the crashed node is down");
    assert_eq!(
        cluster.submit(0, inc()).await,
        Err(SubmitError::Stopped),
        "a crashed node refuses work"
    );
    // The system continues with 4 nodes.
    assert_eq!(increments(&cluster, &[1, 2, 3, 4], 20).await, 20);

    // After 10 s the node restarts from its storage and catches up.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(cluster.is_up(0), "the node restarted");
    assert_eq!(read(&cluster, 0).await, 30);
    cluster.assert_consistent(CONVERGE).await;
}

#[tokio::test(start_paused = true)]
async fn a_minority_partition_stalls_and_the_majority_serves() {
    let simulator = NetworkSimulator::new();
    let cluster = TestCluster::start(5, &simulator, Counter::default);
    let ids = cluster.node_ids();
    simulator
        .inject_fault(FaultType::NetworkPartition {
            groups: vec![ids[..2].to_vec(), ids[2..].to_vec()],
            one_way: false,
            duration: None,
        })
        .await;
    assert_eq!(increments(&cluster, &[2, 3, 4], 15).await, 15);
    // The minority cannot decide anything while cut off.
    let stalled = tokio::time::timeout(Duration::from_secs(5), cluster.submit(0, inc())).await;
    assert!(stalled.is_err(), "a minority must not commit: {stalled:?}");
    simulator.heal();
    // The stalled write was never acknowledged: it may land or not.
    let after = read(&cluster, 0).await;
    assert!((15..=16).contains(&after), "value after healing: {after}");
    cluster.assert_consistent(CONVERGE).await;
}

#[tokio::test(start_paused = true)]
async fn a_one_way_partition_heals_by_itself() {
    let simulator = NetworkSimulator::new();
    let cluster = TestCluster::start(3, &simulator, Counter::default);
    let ids = cluster.node_ids();
    simulator
        .inject_fault(FaultType::NetworkPartition {
            groups: vec![vec![ids[0]], ids[1..].to_vec()],
            one_way: true,
            duration: Some(Duration::from_secs(5)),
        })
        .await;
    assert_eq!(increments(&cluster, &[1, 2], 10).await, 10);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        simulator.active_faults().is_empty(),
        "the partition expired"
    );
    assert_eq!(read(&cluster, 0).await, 10);
    cluster.assert_consistent(CONVERGE).await;
}

#[tokio::test(start_paused = true)]
async fn packet_loss_slows_but_loses_nothing() {
    let simulator = NetworkSimulator::new();
    let cluster = TestCluster::start(3, &simulator, Counter::default);
    simulator
        .inject_fault(FaultType::PacketLoss {
            rate: 0.3,
            duration: Duration::from_secs(20),
        })
        .await;
    assert_eq!(increments(&cluster, &[0, 1, 2], 30).await, 30);
    assert!(
        simulator.stats().dropped_loss > 0,
        "the fault dropped messages"
    );
    simulator.heal();
    assert_eq!(read(&cluster, 1).await, 30);
    cluster.assert_consistent(CONVERGE).await;
}

#[tokio::test(start_paused = true)]
async fn high_latency_and_a_slow_node() {
    let simulator = NetworkSimulator::new();
    let cluster = TestCluster::start(3, &simulator, Counter::default);
    let ids = cluster.node_ids();
    simulator
        .inject_fault(FaultType::HighLatency {
            min: Duration::from_millis(20),
            max: Duration::from_millis(80),
            duration: Duration::from_secs(30),
        })
        .await;
    simulator
        .inject_fault(FaultType::SlowNode {
            node_id: ids[2],
            delay_factor: 5.0,
            duration: Duration::from_secs(30),
        })
        .await;
    let started = tokio::time::Instant::now();
    assert_eq!(increments(&cluster, &[0, 1, 2], 12).await, 12);
    assert!(
        started.elapsed() >= Duration::from_millis(12 * 20),
        "every decision waited for the network"
    );
    assert!(simulator.stats().delayed > 0);
    cluster.assert_consistent(CONVERGE).await;
}

#[tokio::test(start_paused = true)]
async fn reordering_and_duplication_change_nothing() {
    let simulator = NetworkSimulator::new();
    let cluster = TestCluster::start(5, &simulator, Counter::default);
    simulator
        .inject_fault(FaultType::MessageReordering {
            rate: 0.5,
            max_delay: Duration::from_millis(50),
            duration: Duration::from_secs(30),
        })
        .await;
    simulator
        .inject_fault(FaultType::MessageDuplication {
            rate: 0.5,
            duration: Duration::from_secs(30),
        })
        .await;
    // Concurrent clients on every node.
    let mut tasks = Vec::new();
    for node in 0..5 {
        let handle = cluster.handle(node).unwrap();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                handle.submit(inc()).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(simulator.stats().duplicated > 0);
    assert_eq!(
        read(&cluster, 3).await,
        50,
        "each increment applied exactly once"
    );
    cluster.assert_consistent(CONVERGE).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_disk_stops_the_node_cleanly_and_the_rest_serve() {
    let simulator = NetworkSimulator::new();
    let cluster = TestCluster::start(3, &simulator, Counter::default);
    let ids = cluster.node_ids();
    assert_eq!(increments(&cluster, &[0, 1, 2], 6).await, 6);
    simulator
        .inject_fault(FaultType::DiskFailure { node_id: ids[0] })
        .await;
    // Node 0's next write to its storage fails: its engine must stop with
    // the storage error rather than keep voting without its data.
    let _ = tokio::time::timeout(Duration::from_secs(5), cluster.submit(0, inc())).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cluster.is_up(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 0 kept running on a dead disk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reason = cluster.exit_reason(0).unwrap_or_default();
    assert!(reason.contains("DiskFailure"), "stopped for: {reason}");
    let total = read(&cluster, 1).await;
    assert!(total >= 6);
    assert_eq!(increments(&cluster, &[1, 2], 5).await, 5);
    assert_eq!(read(&cluster, 2).await, total + 5);
    cluster.assert_consistent(CONVERGE).await;
}

#[tokio::test(start_paused = true)]
async fn bad_fault_parameters_are_refused() {
    let simulator = NetworkSimulator::with_seed(3);
    let bad = simulator
        .try_inject_fault(FaultType::PacketLoss {
            rate: 1.5,
            duration: Duration::from_secs(1),
        })
        .await;
    assert!(bad.unwrap_err().contains("within 0..=1"));
    let unregistered = simulator
        .try_inject_fault(FaultType::DiskFailure {
            node_id: NodeId::from_u64(9),
        })
        .await;
    assert!(unregistered.is_err());
    assert!(simulator.active_faults().is_empty());
}

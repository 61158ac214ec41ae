//! A seed replays exactly: the same scenario over real engines on the
//! `NetworkSimulator`, run twice with one seed, gives the same history —
//! every reply in order, the network's fault decisions, the final state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use rabia_core::smr::{Operation, OperationResult, StateMachine};
use rabia_testing::fault::NetworkStats;
use rabia_testing::{FaultType, NetworkSimulator, TestCluster};
use std::time::Duration;

/// An append-only log: the reply to each operation is the log length
/// after it, so any change of order shows in the replies.
#[derive(Default)]
struct Log(Vec<u8>);

#[async_trait]
impl StateMachine for Log {
    async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
        self.0.extend_from_slice(&op.data);
        Ok((self.0.len() as u64).to_le_bytes().to_vec())
    }
    async fn snapshot(&self) -> OperationResult {
        Ok(self.0.clone())
    }
    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0 = data.to_vec();
        Ok(())
    }
}

#[derive(Debug, PartialEq)]
struct Run {
    replies: Vec<Vec<Vec<u8>>>,
    stats: NetworkStats,
    events: Vec<String>,
    snapshots: Vec<Option<Vec<u8>>>,
}

fn scenario(seed: u64) -> Run {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let simulator = NetworkSimulator::with_seed(seed);
        let cluster = TestCluster::start(3, &simulator, Log::default);
        let ids = cluster.node_ids();
        simulator
            .inject_fault(FaultType::PacketLoss {
                rate: 0.2,
                duration: Duration::from_secs(20),
            })
            .await;
        simulator
            .inject_fault(FaultType::MessageReordering {
                rate: 0.3,
                max_delay: Duration::from_millis(30),
                duration: Duration::from_secs(20),
            })
            .await;
        simulator
            .inject_fault(FaultType::MessageDuplication {
                rate: 0.2,
                duration: Duration::from_secs(20),
            })
            .await;
        // Three concurrent clients, one per node.
        let mut clients = Vec::new();
        for (i, node) in [0usize, 1, 2].into_iter().enumerate() {
            let handle = cluster.handle(node).unwrap();
            clients.push(tokio::spawn(async move {
                let mut replies = Vec::new();
                for k in 0..12u8 {
                    replies.push(
                        handle
                            .submit(Operation::new(vec![i as u8, k]))
                            .await
                            .unwrap(),
                    );
                }
                replies
            }));
        }
        // And a crash in the middle.
        tokio::time::sleep(Duration::from_millis(40)).await;
        simulator
            .inject_fault(FaultType::NodeCrash {
                node_id: ids[2],
                duration: Duration::from_millis(500),
            })
            .await;
        let mut replies = Vec::new();
        for client in clients {
            // The crashed node's client sees its engine stop: keep what it got.
            replies.push(client.await.unwrap_or_default());
        }
        // The crashed node comes back after its 500 ms (virtual time).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !cluster.is_up(2) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node 3 did not restart"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cluster.assert_consistent(Duration::from_secs(60)).await;
        Run {
            replies,
            stats: simulator.stats(),
            events: simulator.events(),
            snapshots: cluster.snapshots().await,
        }
    })
}

#[test]
fn one_seed_replays_the_same_history() {
    let seed = 20_261_122;
    let first = scenario(seed);
    let second = scenario(seed);
    assert!(
        first.stats.dropped_loss > 0 && first.stats.duplicated > 0,
        "faults acted"
    );
    assert!(
        first.replies.iter().map(Vec::len).sum::<usize>() >= 24,
        "clients made progress: {:?}",
        first.replies
    );
    assert_eq!(first, second, "seed {seed} did not replay");
}

#[test]
fn another_seed_gives_another_run() {
    assert_ne!(scenario(1).stats, scenario(2).stats);
}

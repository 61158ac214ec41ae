//! The developer guide's three state machines (counter, banking, key-value
//! with transactions), written as the guide writes them, plus a helper that
//! starts an in-process cluster of [`RabiaEngine`]s for the examples.
//!
//! Run them with `cargo run --example counter`, `--example banking` or
//! `--example kvstore`.

#![allow(clippy::new_without_default)]

pub mod banking;
pub mod counter;
pub mod kv;

/// The developer guide, `docs/guide.md`: every `rust` block in it runs as a
/// doc-test of this crate (`cargo test -p rabia-examples --doc`).
#[doc = include_str!("../../../docs/guide.md")]
#[cfg(doctest)]
pub struct GuideDocTests;

use rabia_core::smr::StateMachine;
use rabia_core::{ClusterConfig, NodeId};
use rabia_engine::{EngineError, EngineHandle, LocalReader, RabiaConfig, RabiaEngine};
use rabia_network::InMemoryNetwork;
use rabia_persistence::InMemoryPersistence;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One running replica.
pub struct Replica<SM> {
    /// Its identity.
    pub id: NodeId,
    /// Submit operations here.
    pub handle: EngineHandle,
    /// Read its local state.
    pub reader: LocalReader<SM>,
    /// The engine task.
    pub task: JoinHandle<Result<(), EngineError>>,
}

/// Starts `n` replicas in this process, connected by an in-memory network,
/// each with in-memory persistence and a state machine from `make`.
pub fn start_cluster<SM: StateMachine + 'static>(
    n: u64,
    config: RabiaConfig,
    make: impl Fn() -> SM,
) -> Vec<Replica<SM>> {
    let ids: Vec<NodeId> = (1..=n).map(NodeId::from_u64).collect();
    let network = InMemoryNetwork::new(1 << 20);
    ids.iter()
        .map(|id| {
            let cluster_config = ClusterConfig::new(*id, ids.iter().copied().collect());
            let (_operation_tx, operation_rx) = mpsc::unbounded_channel();
            let engine = RabiaEngine::new(
                cluster_config.node_id,
                config.clone(),
                cluster_config,
                make(),
                InMemoryPersistence::new(),
                operation_rx,
            )
            .with_transport(network.endpoint(*id));
            Replica {
                id: *id,
                handle: engine.handle(),
                reader: engine.local_reader(),
                task: tokio::spawn(engine.run()),
            }
        })
        .collect()
}

/// Waits until every replica has applied everything replica 0 has decided
/// (replica 0 first drains its own queue).
pub async fn wait_converged<SM>(replicas: &[Replica<SM>]) {
    let mut first = replicas[0].handle.status_watch();
    let target = match first
        .wait_for(|s| s.applied_slot == s.next_slot && s.queued_operations == 0)
        .await
    {
        Ok(status) => status.next_slot,
        Err(_) => return,
    };
    for replica in replicas {
        let mut watch = replica.handle.status_watch();
        let _ = watch.wait_for(|s| s.applied_slot >= target).await;
    }
}

//! The developer guide's "Set Up the SMR Cluster" section, with the one
//! change our engine needs: a transport (`.with_transport(...)`, plus the line
//! that names the node for it). Everything else is the guide's code.
//!
//! `cargo run --example guide_setup`
//!
//! Like the guide's snippet, it starts one replica of a three-node cluster,
//! so its operations are queued but not decided (no quorum) before `main`
//! returns.

#![allow(unused_variables, unused_imports, missing_docs)]

use rabia_examples::counter::{CounterOperation, CounterSMR};

use rabia_core::{ClusterConfig, NodeId, Operation};
use rabia_engine::{RabiaConfig, RabiaEngine};
use rabia_persistence::InMemoryPersistence;
use std::collections::HashSet;

use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Create a 3-node cluster (minimum for fault tolerance)
    let nodes: Vec<NodeId> = (0..3).map(|_| NodeId::new()).collect();
    let cluster_config = ClusterConfig::new(nodes[0], nodes.into_iter().collect());

    // Create state machine and dependencies
    let state_machine = CounterSMR::new();
    let persistence = InMemoryPersistence::new();
    let config = RabiaConfig::default();
    let (operation_tx, operation_rx) = mpsc::unbounded_channel();

    // Create SMR replica
    let cluster_node_id = cluster_config.node_id;
    let engine = RabiaEngine::new(
        cluster_config.node_id,
        config,
        cluster_config,
        state_machine,
        persistence,
        operation_rx,
    )
    // The one addition to the guide: connect the engine to its peers.
    .with_transport(rabia_network::InMemoryNetwork::new(1024).endpoint(cluster_node_id));

    // Start the replica in background
    let engine_handle = tokio::spawn(async move { engine.run().await });

    // Submit operations
    let increment_op = Operation::new(bincode::serialize(&CounterOperation::Increment)?);
    operation_tx.send(increment_op)?;

    let get_op = Operation::new(bincode::serialize(&CounterOperation::Get)?);
    operation_tx.send(get_op)?;

    println!("Counter SMR is running! Operations submitted.");

    // In a real application, you'd handle the engine result
    // engine_handle.await??;

    Ok(())
}

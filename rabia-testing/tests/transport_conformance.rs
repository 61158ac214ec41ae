//! Both transports pass the `Transport` conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use rabia_core::NodeId;
use rabia_network::{InMemoryNetwork, TcpConfig, TcpTransport, Transport};
use rabia_testing::conformance::transport::{run_all, TransportFactory};
use std::collections::BTreeMap;

struct InMemory;

#[async_trait]
impl TransportFactory for InMemory {
    async fn endpoints(&mut self, nodes: &[NodeId]) -> Vec<Box<dyn Transport>> {
        let net = InMemoryNetwork::new(1024);
        nodes
            .iter()
            .map(|n| Box::new(net.endpoint(*n)) as Box<dyn Transport>)
            .collect()
    }
}

/// Real TCP on loopback, on ports the kernel picks.
struct Tcp;

#[async_trait]
impl TransportFactory for Tcp {
    async fn endpoints(&mut self, nodes: &[NodeId]) -> Vec<Box<dyn Transport>> {
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for node in nodes {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.insert(*node, listener.local_addr().unwrap());
            listeners.push(listener);
        }
        nodes
            .iter()
            .zip(listeners)
            .map(|(node, listener)| {
                let mut config = TcpConfig::new(*node, 42, peers[node], peers.clone());
                config.outbox_messages_max = 1024;
                Box::new(TcpTransport::with_listener(config, listener).unwrap())
                    as Box<dyn Transport>
            })
            .collect()
    }
}

#[tokio::test]
async fn in_memory_transport_conforms() {
    run_all(&mut InMemory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_transport_conforms() {
    run_all(&mut Tcp).await;
}

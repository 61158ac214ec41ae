//! The [`Transport`] contract as executable checks.
//!
//! A transport is best effort, so a check never assumes one particular
//! message arrives: it re-sends until the receiver sees it, within a
//! deadline ([`DELIVERY_DEADLINE`]). What it does assume is the contract:
//! sender identities are authentic, a broadcast never reaches its sender,
//! `send` never blocks (a flood against a peer that does not read finishes
//! and is fully accounted in the counters), a message up to the frame limit
//! arrives intact, unknown destinations are dropped and counted, and a link
//! still works after all of that.
//!
//! Run it with a [`TransportFactory`] that builds a fresh set of connected
//! endpoints for each check:
//!
//! ```no_run
//! use async_trait::async_trait;
//! use rabia_core::NodeId;
//! use rabia_network::{InMemoryNetwork, Transport};
//! use rabia_testing::conformance::transport::{run_all, TransportFactory};
//!
//! struct InMemory;
//!
//! #[async_trait]
//! impl TransportFactory for InMemory {
//!     async fn endpoints(&mut self, nodes: &[NodeId]) -> Vec<Box<dyn Transport>> {
//!         let net = InMemoryNetwork::new(1024);
//!         nodes.iter().map(|n| Box::new(net.endpoint(*n)) as Box<dyn Transport>).collect()
//!     }
//! }
//! # async fn example() { run_all(&mut InMemory).await; }
//! ```

use async_trait::async_trait;
use rabia_core::operation::{Batch, Operation};
use rabia_core::protocol::{Envelope, Message};
use rabia_core::{BatchId, Epoch, NodeId, Slot};
use rabia_network::Transport;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout, Instant};

/// How long a check waits for a message the transport should deliver.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);

/// Builds connected endpoints for a check.
#[async_trait]
pub trait TransportFactory {
    /// One endpoint per node in `nodes`, in that order, each able to reach
    /// the others (connections may still be forming when this returns).
    async fn endpoints(&mut self, nodes: &[NodeId]) -> Vec<Box<dyn Transport>>;
}

fn node(i: u64) -> NodeId {
    NodeId::from_u64(i)
}

fn heartbeat(from: NodeId, mark: u64) -> Envelope {
    Envelope {
        sender: from,
        epoch: Epoch(0),
        message: Message::Heartbeat {
            next_slot: Slot(mark),
            learner: false,
            probe: 0,
        },
    }
}

fn mark_of(envelope: &Envelope) -> Option<u64> {
    match envelope.message {
        Message::Heartbeat { next_slot, .. } => Some(next_slot.0),
        _ => None,
    }
}

/// Sends `envelope` from `from` to `to` (re-sending every 20 ms) until `to`
/// receives it; panics after [`DELIVERY_DEADLINE`]. Returns what `to` saw.
pub async fn deliver_eventually(
    from: &dyn Transport,
    to: &mut dyn Transport,
    to_id: NodeId,
    envelope: &Envelope,
) -> (NodeId, Envelope) {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        from.send(to_id, envelope.clone());
        let wait_until = Instant::now() + Duration::from_millis(20);
        while let Ok(Some(got)) = timeout(
            wait_until.saturating_duration_since(Instant::now()),
            to.recv(),
        )
        .await
        {
            if got.1 == *envelope {
                return got;
            }
        }
        assert!(
            Instant::now() < deadline,
            "a message was not delivered within {DELIVERY_DEADLINE:?}"
        );
    }
}

/// Drains whatever `to` has queued, without waiting.
fn drain(to: &mut dyn Transport) {
    while to.try_recv().is_some() {}
}

/// Runs every check.
pub async fn run_all(factory: &mut dyn TransportFactory) {
    point_to_point_with_authentic_sender(factory).await;
    broadcast_reaches_every_peer_but_self(factory).await;
    unknown_destination_is_dropped_and_counted(factory).await;
    flood_never_blocks_and_is_accounted(factory).await;
    large_message_arrives_intact(factory).await;
}

/// A message sent from A to B arrives at B with A as its sender.
pub async fn point_to_point_with_authentic_sender(factory: &mut dyn TransportFactory) {
    let mut eps = factory.endpoints(&[node(1), node(2)]).await;
    let (a, b) = eps.split_at_mut(1);
    let envelope = heartbeat(node(1), 11);
    let (from, got) = deliver_eventually(&*a[0], &mut *b[0], node(2), &envelope).await;
    assert_eq!(from, node(1), "the receiver must see the authentic sender");
    assert_eq!(got, envelope);
    assert!(b[0].stats().received >= 1, "received is counted");
    assert!(a[0].stats().sent >= 1, "sent is counted");
    // And the other direction.
    let back = heartbeat(node(2), 12);
    let (from, _) = deliver_eventually(&*b[0], &mut *a[0], node(1), &back).await;
    assert_eq!(from, node(2));
}

/// A broadcast reaches each other node, and never the sender itself.
pub async fn broadcast_reaches_every_peer_but_self(factory: &mut dyn TransportFactory) {
    let ids = [node(1), node(2), node(3)];
    let mut eps = factory.endpoints(&ids).await;
    // Warm every link from node 1 first (connections may still be forming).
    for i in 1..ids.len() {
        let (a, rest) = eps.split_at_mut(1);
        deliver_eventually(&*a[0], &mut *rest[i - 1], ids[i], &heartbeat(ids[0], 1)).await;
    }
    for ep in eps.iter_mut() {
        drain(&mut **ep);
    }
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    let mut seen = [false; 3];
    let mut round = 100;
    while !(seen[1] && seen[2]) {
        assert!(Instant::now() < deadline, "broadcast not delivered to all");
        round += 1;
        eps[0].broadcast(heartbeat(ids[0], round));
        for (i, ep) in eps.iter_mut().enumerate().skip(1) {
            if let Ok(Some((from, env))) = timeout(Duration::from_millis(20), ep.recv()).await {
                if mark_of(&env).is_some_and(|m| m > 100) {
                    assert_eq!(from, ids[0]);
                    seen[i] = true;
                }
            }
        }
    }
    let mut own = 0;
    while let Some((_, env)) = eps[0].try_recv() {
        if mark_of(&env).is_some_and(|m| m > 100) {
            own += 1;
        }
    }
    assert_eq!(own, 0, "a broadcast must not reach its sender");
}

/// Sending to a node the transport does not know is dropped, counted, and
/// harmless.
pub async fn unknown_destination_is_dropped_and_counted(factory: &mut dyn TransportFactory) {
    let eps = factory.endpoints(&[node(1), node(2)]).await;
    let before = eps[0].stats();
    eps[0].send(node(99), heartbeat(node(1), 1));
    let after = eps[0].stats();
    assert_eq!(
        after.dropped_unreachable,
        before.dropped_unreachable + 1,
        "a message to an unknown node is counted as unreachable"
    );
}

/// 50,000 sends to a peer that does not read return (the engine loop is
/// never blocked), every one is accounted as sent or dropped, and the link
/// works afterwards.
pub async fn flood_never_blocks_and_is_accounted(factory: &mut dyn TransportFactory) {
    let mut eps = factory.endpoints(&[node(1), node(2)]).await;
    {
        let (a, b) = eps.split_at_mut(1);
        deliver_eventually(&*a[0], &mut *b[0], node(2), &heartbeat(node(1), 1)).await;
    }
    let before = eps[0].stats();
    const FLOOD: u64 = 50_000;
    for i in 0..FLOOD {
        eps[0].send(node(2), heartbeat(node(1), 1_000 + i));
    }
    let after = eps[0].stats();
    let accounted = (after.sent - before.sent)
        + (after.dropped_full - before.dropped_full)
        + (after.dropped_unreachable - before.dropped_unreachable);
    assert_eq!(accounted, FLOOD, "every send is counted exactly once");
    let (a, b) = eps.split_at_mut(1);
    drain(&mut *b[0]);
    let probe = heartbeat(node(1), 7);
    deliver_eventually(&*a[0], &mut *b[0], node(2), &probe).await;
}

/// A message of about 1 MiB (a large batch) arrives byte for byte.
pub async fn large_message_arrives_intact(factory: &mut dyn TransportFactory) {
    let mut eps = factory.endpoints(&[node(1), node(2)]).await;
    let operations = (0..16u8)
        .map(|i| Operation::new(vec![i; 64 << 10]))
        .collect();
    let batch = Arc::new(Batch {
        id: BatchId {
            origin: node(1),
            incarnation: 1,
            seq: 1,
        },
        timestamp: 0,
        operations,
    });
    let envelope = Envelope {
        sender: node(1),
        epoch: Epoch(0),
        message: Message::Forward { batch },
    };
    let (a, b) = eps.split_at_mut(1);
    let (_, got) = deliver_eventually(&*a[0], &mut *b[0], node(2), &envelope).await;
    assert_eq!(got, envelope);
}

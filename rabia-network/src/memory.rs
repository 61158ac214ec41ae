//! An in-process network: one bounded inbox per node, a shared link filter.

use crate::transport::{Transport, TransportStats};
use async_trait::async_trait;
use rabia_core::protocol::Envelope;
use rabia_core::NodeId;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// What a link filter decides for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDecision {
    /// Deliver it.
    Deliver,
    /// Drop it.
    Drop,
}

/// Decides the fate of each message `(from, to, envelope)`. Installed with
/// [`InMemoryNetwork::set_filter`]; the fault injector builds on it.
pub type LinkFilter = Arc<dyn Fn(NodeId, NodeId, &Envelope) -> LinkDecision + Send + Sync>;

type Inbox = mpsc::Sender<(NodeId, Envelope)>;

#[derive(Default)]
struct Shared {
    inboxes: RwLock<BTreeMap<NodeId, Inbox>>,
    filter: RwLock<Option<LinkFilter>>,
}

/// A network of in-process endpoints.
#[derive(Clone)]
pub struct InMemoryNetwork {
    shared: Arc<Shared>,
    inbox_capacity: usize,
}

impl std::fmt::Debug for InMemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryNetwork")
            .field("inbox_capacity", &self.inbox_capacity)
            .finish()
    }
}

impl InMemoryNetwork {
    /// A network whose per-node inboxes hold `inbox_capacity` messages.
    pub fn new(inbox_capacity: usize) -> Self {
        InMemoryNetwork {
            shared: Arc::new(Shared::default()),
            inbox_capacity: inbox_capacity.max(1),
        }
    }

    /// Registers `node` (replacing an earlier endpoint of the same node, as a
    /// restarted process would) and returns its endpoint.
    pub fn endpoint(&self, node: NodeId) -> InMemoryTransport {
        let (tx, rx) = mpsc::channel(self.inbox_capacity);
        if let Ok(mut inboxes) = self.shared.inboxes.write() {
            inboxes.insert(node, tx);
        }
        InMemoryTransport {
            me: node,
            shared: self.shared.clone(),
            rx,
            stats: Arc::new(Counters::default()),
        }
    }

    /// Removes `node`: messages to it are dropped (a crashed process).
    pub fn disconnect(&self, node: NodeId) {
        if let Ok(mut inboxes) = self.shared.inboxes.write() {
            inboxes.remove(&node);
        }
    }

    /// Installs a link filter (replacing any previous one).
    pub fn set_filter(&self, filter: LinkFilter) {
        if let Ok(mut f) = self.shared.filter.write() {
            *f = Some(filter);
        }
    }

    /// Removes the link filter: every link delivers.
    pub fn clear_filter(&self) {
        if let Ok(mut f) = self.shared.filter.write() {
            *f = None;
        }
    }
}

#[derive(Default, Debug)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_full: AtomicU64,
    dropped_unreachable: AtomicU64,
}

/// One node's endpoint on an [`InMemoryNetwork`].
pub struct InMemoryTransport {
    me: NodeId,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<(NodeId, Envelope)>,
    stats: Arc<Counters>,
}

impl std::fmt::Debug for InMemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryTransport")
            .field("node", &self.me)
            .finish()
    }
}

impl InMemoryTransport {
    fn deliver(
        &self,
        to: NodeId,
        envelope: Envelope,
        inbox: Option<&Inbox>,
        filter: Option<&LinkFilter>,
    ) {
        let Some(inbox) = inbox else {
            self.stats
                .dropped_unreachable
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(filter) = filter {
            if filter(self.me, to, &envelope) == LinkDecision::Drop {
                self.stats
                    .dropped_unreachable
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        match inbox.try_send((self.me, envelope)) {
            Ok(()) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.stats
                    .dropped_unreachable
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[async_trait]
impl Transport for InMemoryTransport {
    fn send(&self, to: NodeId, envelope: Envelope) {
        let inbox = self
            .shared
            .inboxes
            .read()
            .ok()
            .and_then(|inboxes| inboxes.get(&to).cloned());
        let filter = self.shared.filter.read().ok().and_then(|f| f.clone());
        self.deliver(to, envelope, inbox.as_ref(), filter.as_ref());
    }

    fn broadcast(&self, envelope: Envelope) {
        let targets: Vec<(NodeId, Inbox)> = match self.shared.inboxes.read() {
            Ok(inboxes) => inboxes
                .iter()
                .filter(|(id, _)| **id != self.me)
                .map(|(id, tx)| (*id, tx.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let filter = self.shared.filter.read().ok().and_then(|f| f.clone());
        for (to, inbox) in targets {
            self.deliver(to, envelope.clone(), Some(&inbox), filter.as_ref());
        }
    }

    async fn recv(&mut self) -> Option<(NodeId, Envelope)> {
        let message = self.rx.recv().await;
        if message.is_some() {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        message
    }

    fn try_recv(&mut self) -> Option<(NodeId, Envelope)> {
        let message = self.rx.try_recv().ok();
        if message.is_some() {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        message
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            sent: self.stats.sent.load(Ordering::Relaxed),
            received: self.stats.received.load(Ordering::Relaxed),
            dropped_full: self.stats.dropped_full.load(Ordering::Relaxed),
            dropped_unreachable: self.stats.dropped_unreachable.load(Ordering::Relaxed),
            ..TransportStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rabia_core::protocol::Message;
    use rabia_core::{Epoch, Slot};

    fn hb(from: NodeId) -> Envelope {
        Envelope {
            sender: from,
            epoch: Epoch(0),
            message: Message::Heartbeat {
                next_slot: Slot(0),
                learner: false,
                probe: 0,
            },
        }
    }

    #[tokio::test]
    async fn broadcast_reaches_every_peer_but_self() {
        let net = InMemoryNetwork::new(8);
        let ids: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
        let mut eps: Vec<_> = ids.iter().map(|id| net.endpoint(*id)).collect();
        eps[0].broadcast(hb(ids[0]));
        assert_eq!(eps[1].recv().await.map(|(f, _)| f), Some(ids[0]));
        assert_eq!(eps[2].recv().await.map(|(f, _)| f), Some(ids[0]));
        assert!(eps[0].rx.try_recv().is_err());
        assert_eq!(eps[0].stats().sent, 2);
    }

    #[tokio::test]
    async fn full_inbox_drops_instead_of_blocking() {
        let net = InMemoryNetwork::new(1);
        let (a, b) = (NodeId::from_u64(1), NodeId::from_u64(2));
        let ta = net.endpoint(a);
        let _tb = net.endpoint(b);
        ta.send(b, hb(a));
        ta.send(b, hb(a));
        assert_eq!(ta.stats().dropped_full, 1);
    }

    #[tokio::test]
    async fn filter_and_disconnect_drop() {
        let net = InMemoryNetwork::new(8);
        let (a, b) = (NodeId::from_u64(1), NodeId::from_u64(2));
        let ta = net.endpoint(a);
        let mut tb = net.endpoint(b);
        net.set_filter(Arc::new(move |from, _, _| {
            if from == a {
                LinkDecision::Drop
            } else {
                LinkDecision::Deliver
            }
        }));
        ta.send(b, hb(a));
        net.clear_filter();
        ta.send(b, hb(a));
        assert!(tb.recv().await.is_some());
        assert!(
            tb.rx.try_recv().is_err(),
            "the filtered message must not arrive"
        );
        net.disconnect(b);
        ta.send(b, hb(a));
        assert_eq!(ta.stats().dropped_unreachable, 2);
    }
}

//! The transport contract.

use async_trait::async_trait;
use rabia_core::protocol::Envelope;
use rabia_core::NodeId;

/// Counters of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages accepted for delivery (queued for their peer). Each send is
    /// counted once: here, in `dropped_full` or in `dropped_unreachable`.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Messages dropped because the receiver's inbox was full.
    pub dropped_full: u64,
    /// Messages dropped by a link filter or because the peer is unknown or gone.
    pub dropped_unreachable: u64,
    /// Inbound frames refused as garbage, truncated, oversized or from the
    /// wrong sender; each closes its connection (TCP only).
    pub frames_rejected: u64,
    /// Connection attempts refused at the handshake: wrong version, cluster
    /// id or node id, or not a Rabia peer at all (TCP only).
    pub handshakes_rejected: u64,
    /// Peer connections established over the transport's life (TCP only).
    pub connections_established: u64,
    /// Peers with a live connection right now (TCP; the in-memory network
    /// reports 0).
    pub peers_connected: u64,
}

/// Moves protocol messages between replicas.
///
/// # Contract
///
/// * `send` never blocks and never fails loudly: delivery is best effort,
///   each message at most once per send (the protocol tolerates loss,
///   duplication and reordering and retransmits what matters).
/// * `recv` yields `(sender, envelope)` where `sender` is the authenticated
///   peer (for TCP: the identity established by the handshake), and `None`
///   only when the transport is closed for good.
#[async_trait]
pub trait Transport: Send + 'static {
    /// Sends to one peer.
    fn send(&self, to: NodeId, envelope: Envelope);

    /// Sends to every peer except this node.
    fn broadcast(&self, envelope: Envelope);

    /// The next inbound message.
    async fn recv(&mut self) -> Option<(NodeId, Envelope)>;

    /// An inbound message if one is ready now (lets the engine handle a burst
    /// of messages per wake-up). The default never has one.
    fn try_recv(&mut self) -> Option<(NodeId, Envelope)> {
        None
    }

    /// Counters.
    fn stats(&self) -> TransportStats;
}

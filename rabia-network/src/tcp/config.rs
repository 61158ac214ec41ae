//! Settings of a [`TcpTransport`](super::TcpTransport).

use crate::error::TransportError;
use rabia_core::protocol::wire::DEFAULT_FRAME_BYTES_MAX;
use rabia_core::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How one node's TCP transport listens, whom it talks to and its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// This node.
    pub node: NodeId,
    /// Identifies the cluster; a peer presenting another id is refused at the
    /// handshake (it catches a node pointed at the wrong cluster).
    pub cluster_id: u64,
    /// The address to listen on for peers.
    pub listen: SocketAddr,
    /// Every member's peer address. An entry for this node is allowed (a
    /// shared member list) and ignored.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Largest frame accepted or sent, in bytes; a larger inbound frame
    /// closes its connection.
    pub frame_bytes_max: usize,
    /// Messages queued per peer before further ones are dropped (counted).
    pub outbox_messages_max: usize,
    /// Inbound messages queued for the engine before readers wait (TCP
    /// back-pressure then slows the senders).
    pub inbox_messages_max: usize,
    /// Bytes coalesced into one socket write.
    pub write_coalesce_bytes_max: usize,
    /// Time allowed for a TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed for the handshake after connecting.
    pub handshake_timeout: Duration,
    /// A socket write stalled this long closes the connection (a stopped or
    /// wedged peer); the link then reconnects.
    pub write_timeout: Duration,
    /// First reconnect delay; doubled after each failure up to
    /// `reconnect_backoff_max`, each delay jittered uniformly in [d/2, d].
    pub reconnect_backoff_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_backoff_max: Duration,
}

impl TcpConfig {
    /// Defaults for every limit: 16 MiB frames, 4,096-message outboxes,
    /// reconnects backing off from 50 ms to 2 s.
    pub fn new(
        node: NodeId,
        cluster_id: u64,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> Self {
        TcpConfig {
            node,
            cluster_id,
            listen,
            peers,
            frame_bytes_max: DEFAULT_FRAME_BYTES_MAX,
            outbox_messages_max: 4096,
            inbox_messages_max: 16384,
            write_coalesce_bytes_max: 256 << 10,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
        }
    }

    /// The peers other than this node.
    pub fn remote_peers(&self) -> impl Iterator<Item = (NodeId, SocketAddr)> + '_ {
        self.peers
            .iter()
            .filter(|(id, _)| **id != self.node)
            .map(|(id, addr)| (*id, *addr))
    }

    /// Checks every limit, naming the first bad field.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad =
            |field: &'static str, why: &str| Err(TransportError::Config(format!("{field}: {why}")));
        if self.frame_bytes_max < 1024 {
            return bad("frame_bytes_max", "must be at least 1024 bytes");
        }
        if self.frame_bytes_max > u32::MAX as usize {
            return bad("frame_bytes_max", "must fit the 32-bit length prefix");
        }
        if self.outbox_messages_max == 0 {
            return bad("outbox_messages_max", "must be positive");
        }
        if self.inbox_messages_max == 0 {
            return bad("inbox_messages_max", "must be positive");
        }
        if self.write_coalesce_bytes_max == 0 {
            return bad("write_coalesce_bytes_max", "must be positive");
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("write_timeout", self.write_timeout),
            ("reconnect_backoff_min", self.reconnect_backoff_min),
        ] {
            if d.is_zero() {
                return bad(field, "must be positive");
            }
        }
        if self.reconnect_backoff_max < self.reconnect_backoff_min {
            return bad(
                "reconnect_backoff_max",
                "must be at least reconnect_backoff_min",
            );
        }
        for (id, addr) in self.remote_peers() {
            if addr == self.listen {
                return Err(TransportError::Config(format!(
                    "peers: node {id} has this node's own listen address {addr}"
                )));
            }
        }
        Ok(())
    }
}

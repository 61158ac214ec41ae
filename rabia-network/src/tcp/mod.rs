//! A [`Transport`] over TCP between processes.
//!
//! * **Framing**: 32-bit big-endian length, then the payload; frames above
//!   [`TcpConfig::frame_bytes_max`] close the connection.
//! * **Handshake**: both sides introduce themselves with the transport and
//!   wire versions, the cluster id, their node id and a per-start
//!   incarnation; a mismatch refuses the connection with a logged reason
//!   (and the dialer is told it).
//! * **One connection per peer pair** even when both sides dial (rule in
//!   the `peer` module); a restarted peer's new connection replaces the old.
//! * **Reconnects** with jittered exponential backoff, capped.
//! * **Never blocks the engine**: `send` encodes once and queues into a
//!   bounded per-peer outbox; a full outbox, or a peer with no connection,
//!   drops the message (counted). The protocol retransmits what matters.
//! * `TCP_NODELAY`, and every queued frame up to
//!   [`TcpConfig::write_coalesce_bytes_max`] goes out in one write.
//! * Garbage, truncated or oversized frames, or messages that claim another
//!   sender, close that connection and are counted in
//!   [`TransportStats::frames_rejected`]; the node keeps serving.

mod config;
mod counters;
mod frame;
mod handshake;
mod listener;
mod peer;

pub use config::TcpConfig;

use crate::error::TransportError;
use crate::transport::{Transport, TransportStats};
use async_trait::async_trait;
use bytes::Bytes;
use counters::Counters;
use handshake::Hello;
use rabia_core::protocol::{wire, Envelope};
use rabia_core::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::warn;

/// One node's TCP endpoint. Dropping it stops its listener and every peer
/// link and closes their connections.
pub struct TcpTransport {
    me: NodeId,
    local_addr: SocketAddr,
    frame_bytes_max: usize,
    outboxes: BTreeMap<NodeId, mpsc::Sender<Bytes>>,
    inbox: mpsc::Receiver<(NodeId, Envelope)>,
    /// Keeps the inbox open while the transport lives, also with no peers
    /// (a one-node cluster): `recv` returns `None` only when it is dropped.
    _inbox_tx: mpsc::Sender<(NodeId, Envelope)>,
    counters: Arc<Counters>,
    _tasks: JoinSet<()>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("node", &self.me)
            .field("local_addr", &self.local_addr)
            .field("peers", &self.outboxes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TcpTransport {
    /// Binds `config.listen` and starts connecting to every peer. Must run
    /// inside a tokio runtime. Peers that are down are retried until they
    /// come up.
    pub async fn bind(config: TcpConfig) -> Result<TcpTransport, TransportError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|e| TransportError::Bind {
                    addr: config.listen,
                    reason: e.to_string(),
                })?;
        TcpTransport::with_listener(config, listener)
    }

    /// Like [`bind`](Self::bind), on a listener the caller already bound
    /// (tests bind port 0 first to learn free addresses).
    pub fn with_listener(
        config: TcpConfig,
        listener: TcpListener,
    ) -> Result<TcpTransport, TransportError> {
        config.validate()?;
        let local_addr = listener.local_addr().map_err(|e| TransportError::Bind {
            addr: config.listen,
            reason: e.to_string(),
        })?;
        let config = Arc::new(config);
        let hello = Hello::new(config.cluster_id, config.node, rand::random());
        let counters = Arc::new(Counters::default());
        let (inbox_tx, inbox) = mpsc::channel(config.inbox_messages_max);
        let mut tasks = JoinSet::new();
        let mut outboxes = BTreeMap::new();
        let mut accepted_links = BTreeMap::new();
        for (peer, addr) in config.remote_peers() {
            let (outbox_tx, outbox) = mpsc::channel(config.outbox_messages_max);
            let (accepted_tx, accepted) = mpsc::channel(4);
            outboxes.insert(peer, outbox_tx);
            accepted_links.insert(peer, accepted_tx);
            let link = peer::PeerLink {
                config: config.clone(),
                hello,
                peer,
                addr,
                counters: counters.clone(),
                inbox: inbox_tx.clone(),
                outbox,
                accepted,
            };
            tasks.spawn(link.run());
        }
        tasks.spawn(
            listener::Listener {
                listener,
                config: config.clone(),
                hello,
                counters: counters.clone(),
                peers: Arc::new(accepted_links),
            }
            .run(),
        );
        Ok(TcpTransport {
            me: config.node,
            local_addr,
            frame_bytes_max: config.frame_bytes_max,
            outboxes,
            inbox,
            _inbox_tx: inbox_tx,
            counters,
            _tasks: tasks,
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.me
    }

    fn encode(&self, envelope: &Envelope) -> Option<Bytes> {
        // Length prefix first, then the payload encoded in place: one
        // buffer, sized once.
        let mut out = vec![0u8; 4];
        match wire::encode_into(&mut out, envelope) {
            Ok(()) if out.len() - 4 <= self.frame_bytes_max => {
                let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
                out[..4].copy_from_slice(&len.to_be_bytes());
                Some(Bytes::from(out))
            }
            Ok(()) => {
                warn!(
                    bytes = out.len() - 4,
                    max = self.frame_bytes_max,
                    "dropping a message larger than frame_bytes_max"
                );
                None
            }
            Err(e) => {
                warn!(error = %e, "dropping a message that does not encode");
                None
            }
        }
    }

    fn enqueue(&self, to: NodeId, frame: Bytes) {
        let Some(outbox) = self.outboxes.get(&to) else {
            self.counters
                .dropped_unreachable
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        match outbox.try_send(frame) {
            Ok(()) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters
                    .dropped_unreachable
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[async_trait]
impl Transport for TcpTransport {
    fn send(&self, to: NodeId, envelope: Envelope) {
        match self.encode(&envelope) {
            Some(frame) => self.enqueue(to, frame),
            None => {
                self.counters
                    .dropped_unreachable
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn broadcast(&self, envelope: Envelope) {
        let Some(frame) = self.encode(&envelope) else {
            self.counters
                .dropped_unreachable
                .fetch_add(self.outboxes.len() as u64, Ordering::Relaxed);
            return;
        };
        for to in self.outboxes.keys() {
            self.enqueue(*to, frame.clone());
        }
    }

    async fn recv(&mut self) -> Option<(NodeId, Envelope)> {
        let message = self.inbox.recv().await;
        if message.is_some() {
            self.counters.received.fetch_add(1, Ordering::Relaxed);
        }
        message
    }

    fn try_recv(&mut self) -> Option<(NodeId, Envelope)> {
        let message = self.inbox.try_recv().ok();
        if message.is_some() {
            self.counters.received.fetch_add(1, Ordering::Relaxed);
        }
        message
    }

    fn stats(&self) -> TransportStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rabia_core::protocol::Message;
    use rabia_core::{Epoch, Slot};
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    fn node(i: u64) -> NodeId {
        NodeId::from_u64(i)
    }

    /// Connects to `addr` as `claimed` with a valid handshake.
    async fn impersonate(
        addr: SocketAddr,
        claimed: NodeId,
        expected: NodeId,
    ) -> tokio::net::tcp::OwnedWriteHalf {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut writer) = stream.into_split();
        let mut reader = frame::reader(read, handshake::HANDSHAKE_BYTES_MAX);
        let hello = Hello::new(7, claimed, 1);
        handshake::dial(&mut reader, &mut writer, &hello, expected)
            .await
            .unwrap();
        writer
    }

    async fn wait_rejected(t: &TcpTransport, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while t.stats().frames_rejected < n {
            assert!(Instant::now() < deadline, "frame {n} was not rejected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_frames_after_a_valid_handshake_close_the_connection_and_are_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peers: BTreeMap<NodeId, SocketAddr> = [
            (node(1), addr),
            (node(2), unused.local_addr().unwrap()),
            (node(3), unused.local_addr().unwrap()),
        ]
        .into();
        let mut config = TcpConfig::new(node(1), 7, addr, peers);
        config.frame_bytes_max = 4096;
        let mut transport = TcpTransport::with_listener(config, listener).unwrap();

        // 1. A frame longer than the maximum.
        let mut w = impersonate(addr, node(2), node(1)).await;
        w.write_all(&100_000u32.to_be_bytes()).await.unwrap();
        w.write_all(&[0; 64]).await.unwrap();
        wait_rejected(&transport, 1).await;

        // 2. A frame of the right size that is not a message.
        let mut w = impersonate(addr, node(2), node(1)).await;
        let mut out = Vec::new();
        frame::put_frame(
            &mut out,
            &[wire::WIRE_VERSION, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        w.write_all(&out).await.unwrap();
        wait_rejected(&transport, 2).await;

        // 3. A valid message that claims to come from another node.
        let mut w = impersonate(addr, node(2), node(1)).await;
        let forged = Envelope {
            sender: node(3),
            epoch: Epoch(0),
            message: Message::Heartbeat {
                next_slot: Slot(9),
                learner: false,
                probe: 0,
            },
        };
        let mut out = Vec::new();
        frame::put_frame(&mut out, &wire::encode(&forged).unwrap());
        w.write_all(&out).await.unwrap();
        wait_rejected(&transport, 3).await;
        assert!(
            transport.try_recv().is_none(),
            "nothing bad reached the engine"
        );

        // And an honest message on a fresh connection still arrives.
        let mut w = impersonate(addr, node(2), node(1)).await;
        let honest = Envelope {
            sender: node(2),
            epoch: Epoch(0),
            message: Message::Heartbeat {
                next_slot: Slot(10),
                learner: false,
                probe: 0,
            },
        };
        let mut out = Vec::new();
        frame::put_frame(&mut out, &wire::encode(&honest).unwrap());
        w.write_all(&out).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), transport.recv())
            .await
            .unwrap();
        assert_eq!(got, Some((node(2), honest)));
    }
}

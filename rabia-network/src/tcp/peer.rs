//! One task per peer owns everything about the link to that peer: dialing
//! with jittered, capped backoff, choosing between duplicate connections,
//! writing queued frames (coalesced), and reading into the shared inbox.
//!
//! # One connection per pair
//!
//! Both sides dial whenever they have no connection, so a pair can briefly
//! hold two. Each side keeps the same one by the same rule:
//!
//! 1. a connection from a different *incarnation* of the peer (it restarted)
//!    replaces the current one;
//! 2. otherwise a connection dialed by the same node as the current one
//!    replaces it (that node gave the old one up);
//! 3. otherwise the connection dialed by the lower node id wins.

use super::config::TcpConfig;
use super::counters::Counters;
use super::frame::{self, FrameReader};
use super::handshake::{self, Hello};
use bytes::Bytes;
use futures::StreamExt;
use rabia_core::protocol::{wire, Envelope};
use rabia_core::NodeId;
use rand::Rng;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

/// A connection whose handshake succeeded, not yet in use.
pub(crate) struct Established {
    pub(crate) reader: FrameReader,
    pub(crate) writer: OwnedWriteHalf,
    /// The peer's hello.
    pub(crate) hello: Hello,
    /// Who dialed it.
    pub(crate) dialer: NodeId,
}

/// The connection in use.
struct Active {
    writer: OwnedWriteHalf,
    incarnation: u64,
    dialer: NodeId,
    reader_task: JoinHandle<()>,
    closed: oneshot::Receiver<()>,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

/// Everything a peer task needs.
pub(crate) struct PeerLink {
    pub(crate) config: Arc<TcpConfig>,
    pub(crate) hello: Hello,
    pub(crate) peer: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) counters: Arc<Counters>,
    pub(crate) inbox: mpsc::Sender<(NodeId, Envelope)>,
    pub(crate) outbox: mpsc::Receiver<Bytes>,
    pub(crate) accepted: mpsc::Receiver<Established>,
}

type Dialing = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Established, handshake::HandshakeError>> + Send>,
>;

impl PeerLink {
    /// Runs until the transport is dropped (its outbox sender closes).
    pub(crate) async fn run(mut self) {
        let me = self.config.node;
        let mut current: Option<Active> = None;
        let mut dialing: Option<Dialing> = None;
        let mut backoff = self.config.reconnect_backoff_min;
        let mut next_dial = Instant::now();
        let mut write_buf: Vec<u8> = Vec::new();
        loop {
            if current.is_none() && dialing.is_none() && Instant::now() >= next_dial {
                dialing = Some(Box::pin(dial(
                    self.config.clone(),
                    self.hello,
                    self.peer,
                    self.addr,
                )));
            }
            let idle = current.is_none() && dialing.is_none();
            tokio::select! {
                frame = self.outbox.recv() => {
                    let Some(frame) = frame else { return };
                    match current.as_mut() {
                        None => {
                            self.counters.dropped_unreachable.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(active) => {
                            if let Err(e) = self.write_coalesced(active, frame, &mut write_buf).await {
                                debug!(peer = %self.peer, error = %e, "peer connection lost while writing");
                                current = None;
                                self.counters.peers_connected.fetch_sub(1, Ordering::Relaxed);
                                next_dial = Instant::now() + jittered(backoff);
                            }
                        }
                    }
                }
                Some(conn) = self.accepted.recv() => {
                    self.consider(&mut current, conn, me);
                    backoff = self.config.reconnect_backoff_min;
                }
                result = async { match dialing.as_mut() { Some(d) => d.await, None => std::future::pending().await } }, if dialing.is_some() => {
                    dialing = None;
                    match result {
                        Ok(conn) => {
                            self.consider(&mut current, conn, me);
                            backoff = self.config.reconnect_backoff_min;
                        }
                        Err(e) => {
                            if let handshake::HandshakeError::Io(_) | handshake::HandshakeError::Timeout = e {
                                debug!(peer = %self.peer, addr = %self.addr, error = %e, "dial failed");
                            } else {
                                self.counters.handshakes_rejected.fetch_add(1, Ordering::Relaxed);
                                warn!(peer = %self.peer, addr = %self.addr, reason = %e, "handshake with peer failed");
                            }
                            next_dial = Instant::now() + jittered(backoff);
                            backoff = (backoff * 2).min(self.config.reconnect_backoff_max);
                        }
                    }
                }
                _ = async { match current.as_mut() { Some(a) => { let _ = (&mut a.closed).await; } None => std::future::pending().await } }, if current.is_some() => {
                    debug!(peer = %self.peer, "peer connection closed");
                    current = None;
                    self.counters.peers_connected.fetch_sub(1, Ordering::Relaxed);
                    next_dial = Instant::now() + jittered(backoff);
                    backoff = (backoff * 2).min(self.config.reconnect_backoff_max);
                }
                _ = sleep_until(next_dial), if idle => {}
            }
        }
    }

    /// Installs `conn` or drops it, by the rule in the module docs.
    fn consider(&self, current: &mut Option<Active>, conn: Established, me: NodeId) {
        let replace = match current.as_ref() {
            None => true,
            Some(active) => {
                conn.hello.incarnation != active.incarnation
                    || conn.dialer == active.dialer
                    || conn.dialer == me.min(self.peer)
            }
        };
        if !replace {
            debug!(peer = %self.peer, "dropping a duplicate connection");
            return;
        }
        let was_connected = current.is_some();
        // Dropping the old `Active` aborts its reader and closes its socket.
        *current = Some(self.activate(conn));
        self.counters
            .connections_established
            .fetch_add(1, Ordering::Relaxed);
        if !was_connected {
            self.counters
                .peers_connected
                .fetch_add(1, Ordering::Relaxed);
            info!(peer = %self.peer, addr = %self.addr, "connected to peer");
        }
    }

    fn activate(&self, conn: Established) -> Active {
        let (closed_tx, closed) = oneshot::channel();
        let reader_task = tokio::spawn(read_loop(
            conn.reader,
            self.peer,
            self.config.frame_bytes_max,
            self.inbox.clone(),
            self.counters.clone(),
            closed_tx,
        ));
        Active {
            writer: conn.writer,
            incarnation: conn.hello.incarnation,
            dialer: conn.dialer,
            reader_task,
            closed,
        }
    }

    /// Writes `first` and whatever else is queued, up to the coalescing
    /// limit, in one write.
    async fn write_coalesced(
        &mut self,
        active: &mut Active,
        first: Bytes,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < self.config.write_coalesce_bytes_max {
            match self.outbox.try_recv() {
                Ok(frame) => buf.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        match timeout(self.config.write_timeout, active.writer.write_all(buf)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write stalled past write_timeout",
            )),
        }
    }
}

/// Full jitter in [d/2, d]: many nodes restarting together do not redial in
/// lockstep.
fn jittered(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(2);
    Duration::from_nanos(rand::thread_rng().gen_range(nanos / 2..=nanos))
}

async fn dial(
    config: Arc<TcpConfig>,
    hello: Hello,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<Established, handshake::HandshakeError> {
    let stream = timeout(config.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| handshake::HandshakeError::Timeout)??;
    stream.set_nodelay(true)?;
    let (read, mut writer) = stream.into_split();
    let mut reader = frame::reader(read, handshake::HANDSHAKE_BYTES_MAX);
    let theirs = timeout(
        config.handshake_timeout,
        handshake::dial(&mut reader, &mut writer, &hello, peer),
    )
    .await
    .map_err(|_| handshake::HandshakeError::Timeout)??;
    frame::set_max(&mut reader, config.frame_bytes_max);
    Ok(Established {
        reader,
        writer,
        hello: theirs,
        dialer: config.node,
    })
}

/// Decodes frames from one connection into the inbox until the connection
/// ends or sends something invalid (which closes it).
async fn read_loop(
    mut reader: FrameReader,
    peer: NodeId,
    frame_bytes_max: usize,
    inbox: mpsc::Sender<(NodeId, Envelope)>,
    counters: Arc<Counters>,
    closed: oneshot::Sender<()>,
) {
    while let Some(frame) = reader.next().await {
        let bytes = match frame {
            Ok(bytes) => bytes,
            Err(e) => {
                // Oversized, or the connection broke mid-frame.
                if e.kind() == std::io::ErrorKind::InvalidData {
                    counters.frames_rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(peer = %peer, error = %e, "closing peer connection: bad frame");
                }
                break;
            }
        };
        let envelope = match wire::decode(&bytes, frame_bytes_max) {
            Ok(envelope) => envelope,
            Err(e) => {
                counters.frames_rejected.fetch_add(1, Ordering::Relaxed);
                warn!(peer = %peer, error = %e, "closing peer connection: undecodable message");
                break;
            }
        };
        if envelope.sender != peer {
            counters.frames_rejected.fetch_add(1, Ordering::Relaxed);
            warn!(peer = %peer, claimed = %envelope.sender, "closing peer connection: message claims another sender");
            break;
        }
        if inbox.send((peer, envelope)).await.is_err() {
            break;
        }
    }
    let _ = closed.send(());
}

//! Accepts peer connections, runs the acceptor's handshake on each (bounded
//! in number and time), and hands every accepted connection to the task of
//! the peer it belongs to.

use super::config::TcpConfig;
use super::counters::Counters;
use super::frame;
use super::handshake::{self, Hello};
use super::peer::Established;
use rabia_core::NodeId;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::{debug, warn};

/// Handshakes in progress at once; a connection beyond the limit is closed
/// at once (counted as a refused handshake).
const HANDSHAKES_IN_FLIGHT_MAX: usize = 64;

pub(crate) struct Listener {
    pub(crate) listener: TcpListener,
    pub(crate) config: Arc<TcpConfig>,
    pub(crate) hello: Hello,
    pub(crate) counters: Arc<Counters>,
    pub(crate) peers: Arc<BTreeMap<NodeId, mpsc::Sender<Established>>>,
}

impl Listener {
    pub(crate) async fn run(self) {
        let mut handshakes = JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, remote) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Typically EMFILE; back off briefly instead of spinning.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if handshakes.len() >= HANDSHAKES_IN_FLIGHT_MAX {
                        self.counters.handshakes_rejected.fetch_add(1, Ordering::Relaxed);
                        warn!(%remote, "too many handshakes in progress; closing connection");
                        continue;
                    }
                    handshakes.spawn(accept_one(
                        stream,
                        self.config.clone(),
                        self.hello,
                        self.counters.clone(),
                        self.peers.clone(),
                    ));
                }
                Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            }
        }
    }
}

async fn accept_one(
    stream: TcpStream,
    config: Arc<TcpConfig>,
    hello: Hello,
    counters: Arc<Counters>,
    peers: Arc<BTreeMap<NodeId, mpsc::Sender<Established>>>,
) {
    let remote = stream.peer_addr().ok();
    if let Err(e) = stream.set_nodelay(true) {
        debug!(?remote, error = %e, "set_nodelay failed");
    }
    let (read, mut writer) = stream.into_split();
    let mut reader = frame::reader(read, handshake::HANDSHAKE_BYTES_MAX);
    let result = timeout(
        config.handshake_timeout,
        handshake::accept(&mut reader, &mut writer, &hello, |n| peers.contains_key(&n)),
    )
    .await
    .unwrap_or(Err(handshake::HandshakeError::Timeout));
    let theirs = match result {
        Ok(theirs) => theirs,
        Err(e) => {
            counters.handshakes_rejected.fetch_add(1, Ordering::Relaxed);
            warn!(?remote, reason = %e, "refused an incoming connection");
            return;
        }
    };
    frame::set_max(&mut reader, config.frame_bytes_max);
    let Some(link) = peers.get(&theirs.node) else {
        return;
    };
    let established = Established {
        reader,
        writer,
        hello: theirs,
        dialer: theirs.node,
    };
    if link.try_send(established).is_err() {
        debug!(peer = %theirs.node, "peer link busy; dropping an accepted connection");
    }
}

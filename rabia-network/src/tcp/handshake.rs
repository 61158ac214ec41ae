//! The connection handshake: each side's first frame names the protocol
//! version, the cluster and the node, so a misdirected or foreign connection
//! is refused with a reason before any protocol message flows.
//!
//! The dialer sends [`Hello`]; the acceptor checks it and answers with its
//! own `Hello` or a `Reject` carrying the reason, then closes.

use super::frame::{self, FrameReader};
use bincode::Options;
use futures::StreamExt;
use rabia_core::protocol::wire::WIRE_VERSION;
use rabia_core::NodeId;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

/// Bytes that open every handshake ("RBIA").
const MAGIC: [u8; 4] = *b"RBIA";

/// The version of the connection protocol (framing and handshake).
pub(crate) const TRANSPORT_VERSION: u16 = 1;

/// Handshake frames are small; a larger one is not a Rabia peer.
pub(crate) const HANDSHAKE_BYTES_MAX: usize = 4096;

/// One side's introduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    magic: [u8; 4],
    transport_version: u16,
    wire_version: u8,
    pub(crate) cluster_id: u64,
    pub(crate) node: NodeId,
    /// Random per process start: a connection from a new incarnation of a
    /// peer replaces the old one at once.
    pub(crate) incarnation: u64,
}

impl Hello {
    pub(crate) fn new(cluster_id: u64, node: NodeId, incarnation: u64) -> Self {
        Hello {
            magic: MAGIC,
            transport_version: TRANSPORT_VERSION,
            wire_version: WIRE_VERSION,
            cluster_id,
            node,
            incarnation,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Handshake {
    Hello(Hello),
    Reject { reason: String },
}

/// Why a handshake failed.
#[derive(Debug, Error)]
pub(crate) enum HandshakeError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("connection closed during the handshake")]
    Closed,
    #[error("not a Rabia handshake: {0}")]
    Malformed(String),
    #[error("transport version {theirs} (this node speaks {ours})")]
    TransportVersion { ours: u16, theirs: u16 },
    #[error("wire version {theirs} (this node speaks {ours})")]
    WireVersion { ours: u8, theirs: u8 },
    #[error("cluster id {theirs:#x} (this node is in cluster {ours:#x})")]
    ClusterMismatch { ours: u64, theirs: u64 },
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(NodeId),
    #[error("peer claims this node's own id {0}")]
    SelfConnection(NodeId),
    #[error("expected node {expected} at this address, found node {found}")]
    UnexpectedNode { expected: NodeId, found: NodeId },
    #[error("refused by the peer: {0}")]
    Rejected(String),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(HANDSHAKE_BYTES_MAX as u64)
        .reject_trailing_bytes()
}

async fn write(writer: &mut OwnedWriteHalf, message: &Handshake) -> Result<(), HandshakeError> {
    let body = options()
        .serialize(message)
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let mut out = Vec::with_capacity(body.len() + 4);
    frame::put_frame(&mut out, &body);
    writer.write_all(&out).await?;
    Ok(())
}

async fn read(reader: &mut FrameReader) -> Result<Handshake, HandshakeError> {
    match reader.next().await {
        None => Err(HandshakeError::Closed),
        Some(Err(e)) => Err(HandshakeError::Malformed(e.to_string())),
        Some(Ok(bytes)) => options()
            .deserialize(&bytes)
            .map_err(|e| HandshakeError::Malformed(e.to_string())),
    }
}

/// Checks a peer's hello against this node's expectations.
pub(crate) fn check(
    ours: &Hello,
    theirs: &Hello,
    is_member: impl Fn(NodeId) -> bool,
) -> Result<(), HandshakeError> {
    if theirs.magic != MAGIC {
        return Err(HandshakeError::Malformed("bad magic".into()));
    }
    if theirs.transport_version != ours.transport_version {
        return Err(HandshakeError::TransportVersion {
            ours: ours.transport_version,
            theirs: theirs.transport_version,
        });
    }
    if theirs.wire_version != ours.wire_version {
        return Err(HandshakeError::WireVersion {
            ours: ours.wire_version,
            theirs: theirs.wire_version,
        });
    }
    if theirs.cluster_id != ours.cluster_id {
        return Err(HandshakeError::ClusterMismatch {
            ours: ours.cluster_id,
            theirs: theirs.cluster_id,
        });
    }
    if theirs.node == ours.node {
        return Err(HandshakeError::SelfConnection(theirs.node));
    }
    if !is_member(theirs.node) {
        return Err(HandshakeError::UnknownNode(theirs.node));
    }
    Ok(())
}

/// The dialer's side: introduce ourselves, expect `expected` to answer.
pub(crate) async fn dial(
    reader: &mut FrameReader,
    writer: &mut OwnedWriteHalf,
    ours: &Hello,
    expected: NodeId,
) -> Result<Hello, HandshakeError> {
    write(writer, &Handshake::Hello(*ours)).await?;
    match read(reader).await? {
        Handshake::Reject { reason } => Err(HandshakeError::Rejected(reason)),
        Handshake::Hello(theirs) => {
            // Versions and cluster first; then the one node this address
            // should have (a swapped address says so, by name).
            check(ours, &theirs, |_| true)?;
            if theirs.node != expected {
                return Err(HandshakeError::UnexpectedNode {
                    expected,
                    found: theirs.node,
                });
            }
            Ok(theirs)
        }
    }
}

/// The acceptor's side: check the dialer's hello and answer it. A refused
/// dialer is told why before the connection closes.
pub(crate) async fn accept(
    reader: &mut FrameReader,
    writer: &mut OwnedWriteHalf,
    ours: &Hello,
    is_member: impl Fn(NodeId) -> bool,
) -> Result<Hello, HandshakeError> {
    let theirs = match read(reader).await? {
        Handshake::Hello(theirs) => theirs,
        Handshake::Reject { reason } => return Err(HandshakeError::Rejected(reason)),
    };
    if let Err(e) = check(ours, &theirs, is_member) {
        let reason = e.to_string();
        // Best effort: the dialer learns why; the connection closes anyway.
        let _ = write(writer, &Handshake::Reject { reason }).await;
        return Err(e);
    }
    write(writer, &Handshake::Hello(*ours)).await?;
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(cluster: u64, node: u64) -> Hello {
        Hello::new(cluster, NodeId::from_u64(node), 7)
    }

    #[test]
    fn check_refuses_each_mismatch_with_its_reason() {
        let ours = hello(1, 1);
        let member = |n: NodeId| n <= NodeId::from_u64(3);
        assert!(check(&ours, &hello(1, 2), member).is_ok());
        assert!(matches!(
            check(&ours, &hello(2, 2), member),
            Err(HandshakeError::ClusterMismatch { .. })
        ));
        assert!(matches!(
            check(&ours, &hello(1, 1), member),
            Err(HandshakeError::SelfConnection(_))
        ));
        assert!(matches!(
            check(&ours, &hello(1, 9), member),
            Err(HandshakeError::UnknownNode(_))
        ));
        let mut old = hello(1, 2);
        old.transport_version = 0;
        assert!(matches!(
            check(&ours, &old, member),
            Err(HandshakeError::TransportVersion { .. })
        ));
        let mut alien = hello(1, 2);
        alien.magic = *b"HTTP";
        assert!(matches!(
            check(&ours, &alien, member),
            Err(HandshakeError::Malformed(_))
        ));
    }
}

//! A minimal RESP client, for `rabia-kv status`, `local-cluster`'s
//! readiness checks and tests.

use crate::resp::{self, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server's reply is not RESP.
    #[error("{0}")]
    Protocol(#[from] resp::ProtocolError),
    /// No reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// Sends one command to `addr` on a fresh connection and returns the reply.
pub async fn request(
    addr: SocketAddr,
    args: &[&[u8]],
    limit: Duration,
) -> Result<Value, ClientError> {
    tokio::time::timeout(limit, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(&resp::encode_request(args)).await?;
        let mut buf = Vec::new();
        loop {
            if let Some((value, _)) = resp::parse_reply(&buf)? {
                return Ok(value);
            }
            let n = stream.read_buf(&mut buf).await?;
            if n == 0 {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before the reply",
                )));
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout(limit))?
}

/// True if `addr` answers `PING` with `PONG` within `limit`.
pub async fn pings(addr: SocketAddr, limit: Duration) -> bool {
    matches!(request(addr, &[b"PING"], limit).await, Ok(Value::Simple(s)) if s == "PONG")
}

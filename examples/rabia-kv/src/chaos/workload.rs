//! The chaos clients: concurrent GET/SET/CAS on a small key set over RESP,
//! every invocation and completion recorded for the linearizability check.

use crate::resp::{self, Value};
use rabia_testing::linearizability::{History, KvOp, KvResult};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Outcome counters.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Completed with a result.
    pub(super) ok: AtomicU64,
    /// Definitely not applied (could not connect, or a read that failed).
    pub(super) failed: AtomicU64,
    /// May or may not have been applied (timeout, lost connection, error
    /// reply to a write).
    pub(super) indeterminate: AtomicU64,
}

/// How one request ended.
enum Exchange {
    /// The server answered.
    Reply(Value),
    /// Nothing reached the server.
    NotSent,
    /// Sent (maybe partly); no answer.
    Unknown,
}

async fn request(addr: SocketAddr, args: &[&[u8]], limit: Duration) -> Exchange {
    let Ok(Ok(mut stream)) = tokio::time::timeout(limit, TcpStream::connect(addr)).await else {
        return Exchange::NotSent;
    };
    let deadline = Instant::now() + limit;
    if tokio::time::timeout_at(deadline, stream.write_all(&resp::encode_request(args)))
        .await
        .map_or(true, |r| r.is_err())
    {
        return Exchange::Unknown;
    }
    let mut buf = Vec::new();
    loop {
        match resp::parse_reply(&buf) {
            Ok(Some((value, _))) => return Exchange::Reply(value),
            Ok(None) => {}
            Err(_) => return Exchange::Unknown,
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Exchange::Unknown,
        }
    }
}

/// One operation through `addr`, recorded in `history`; returns its result
/// if it completed.
pub(super) async fn run_op(
    history: &History,
    counts: &Counts,
    client: u64,
    addr: SocketAddr,
    op: KvOp,
    limit: Duration,
) -> Option<KvResult> {
    let id = history.invoke(client, op.clone());
    let (args, is_read): (Vec<Vec<u8>>, bool) = match &op {
        KvOp::Read { key } => (vec![b"GET".to_vec(), key.clone().into_bytes()], true),
        KvOp::Write { key, value } => (
            vec![
                b"SET".to_vec(),
                key.clone().into_bytes(),
                value.clone().into_bytes(),
            ],
            false,
        ),
        KvOp::Cas { key, expected, new } => (
            vec![
                b"CAS".to_vec(),
                key.clone().into_bytes(),
                expected.clone().into_bytes(),
                new.clone().into_bytes(),
            ],
            false,
        ),
    };
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let result = match (request(addr, &refs, limit).await, &op) {
        (Exchange::Reply(Value::Bulk(v)), KvOp::Read { .. }) => Some(KvResult::Read(
            v.map(|b| String::from_utf8_lossy(&b).into_owned()),
        )),
        (Exchange::Reply(Value::Simple(s)), KvOp::Write { .. }) if s == "OK" => {
            Some(KvResult::Written)
        }
        (Exchange::Reply(Value::Integer(n)), KvOp::Cas { .. }) => Some(KvResult::Cas(n == 1)),
        (Exchange::NotSent, _) => {
            history.fail(id);
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        _ => None,
    };
    match result {
        Some(result) => {
            history.complete(id, result.clone());
            counts.ok.fetch_add(1, Ordering::Relaxed);
            return Some(result);
        }
        // A read has no effect whether or not it ran.
        None if is_read => {
            history.fail(id);
            counts.failed.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            history.timeout(id);
            counts.indeterminate.fetch_add(1, Ordering::Relaxed);
        }
    }
    None
}

/// A client loop: random ops on random nodes until `until`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn client_loop(
    history: History,
    counts: Arc<Counts>,
    client: u64,
    seed: u64,
    nodes: Vec<SocketAddr>,
    keys: usize,
    until: Instant,
    limit: Duration,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ client.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut written = 0u64;
    while Instant::now() < until {
        let addr = nodes[rng.gen_range(0..nodes.len())];
        let key = format!("k{}", rng.gen_range(0..keys.max(1)));
        let op = match rng.gen_range(0..10) {
            0..=4 => KvOp::Read { key },
            5..=7 => {
                written += 1;
                KvOp::Write {
                    key,
                    value: format!("c{client}-{written}"),
                }
            }
            _ => {
                written += 1;
                // Expect a value this client may have written recently.
                let back = rng.gen_range(1..=written.clamp(1, 3));
                KvOp::Cas {
                    key,
                    expected: format!("c{client}-{}", written.saturating_sub(back)),
                    new: format!("c{client}-{written}"),
                }
            }
        };
        let failed_before = counts.failed.load(Ordering::Relaxed);
        run_op(&history, &counts, client, addr, op, limit).await;
        if counts.failed.load(Ordering::Relaxed) != failed_before {
            // Do not spin on a node that is down.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

//! One RESP client connection: parse pipelined requests, run each (through
//! the log, or locally), and answer in request order.
//!
//! Every write carries the connection's exactly-once session tag, so a
//! retry after an indeterminate outcome applies at most once. At most
//! `inflight_max` requests of one connection are outstanding; beyond that
//! the connection stops reading (TCP back-pressure slows the client).

use crate::command::{self, Local, Request};
use crate::info;
use crate::node::Shared;
use crate::resp::{self, Value};
use crate::store::{Command, KvOp};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use rabia_core::Operation;
use rabia_engine::{EngineHandle, Session, SubmitError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

/// Times an operation with an indeterminate outcome is retried (with the
/// same session tag, so it applies at most once).
const INDETERMINATE_RETRIES: usize = 5;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ready(value: Value) -> BoxFuture<'static, Vec<u8>> {
    futures::future::ready(value.to_bytes()).boxed()
}

/// Submits `operation` and returns the RESP reply bytes.
async fn submit(handle: EngineHandle, operation: Operation) -> Vec<u8> {
    let mut attempts = 0;
    loop {
        match handle.submit(operation.clone()).await {
            Ok(reply) => return reply,
            Err(SubmitError::Indeterminate) if attempts < INDETERMINATE_RETRIES => {
                attempts += 1;
            }
            Err(e) => return error_reply(&e).to_bytes(),
        }
    }
}

fn error_reply(e: &SubmitError) -> Value {
    match e {
        SubmitError::Application { message } => Value::err(message),
        SubmitError::Stopped => Value::Error("ERR node is shutting down".into()),
        SubmitError::Overloaded { .. } => Value::Error("BUSY replica overloaded; retry".into()),
        other => Value::err(other),
    }
}

struct Connection {
    shared: Arc<Shared>,
    session: Session,
    /// Commands queued by MULTI, and whether one was refused.
    multi: Option<(Vec<KvOp>, bool)>,
    closing: bool,
}

impl Connection {
    /// Turns one request into its reply future.
    fn dispatch(&mut self, args: Vec<Vec<u8>>) -> BoxFuture<'static, Vec<u8>> {
        self.shared.stats.commands.fetch_add(1, Ordering::Relaxed);
        let request = command::parse(&args, now_ms());
        if let Some((queued, dirty)) = self.multi.as_mut() {
            match request {
                Request::Replicated(op) => {
                    queued.push(op);
                    return ready(Value::Simple("QUEUED".into()));
                }
                Request::Local(Local::Exec | Local::Discard | Local::Multi | Local::Quit) => {}
                Request::Local(_) => {
                    *dirty = true;
                    return ready(Value::err("command not allowed inside MULTI"));
                }
                Request::Invalid(reply) => {
                    *dirty = true;
                    return ready(reply);
                }
            }
        }
        match request {
            Request::Invalid(reply) => {
                self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                ready(reply)
            }
            Request::Replicated(op) => self.replicate(op),
            Request::Local(local) => self.local(local),
        }
    }

    fn replicate(&mut self, op: KvOp) -> BoxFuture<'static, Vec<u8>> {
        let read_only = op.is_read_only();
        if read_only && self.shared.config.read_mode == crate::config::ReadMode::Local {
            let reader = self.shared.reader.clone();
            return async move {
                reader
                    .read_local(move |store| store.read(&op).to_bytes())
                    .await
                    .unwrap_or_else(|e| error_reply(&e).to_bytes())
            }
            .boxed();
        }
        let data = Command {
            now_ms: now_ms(),
            op,
        }
        .encode();
        // Reads need no exactly-once tag; writes get one.
        let operation = if read_only {
            Operation::new(data)
        } else {
            self.session.operation(data)
        };
        submit(self.shared.handle.clone(), operation).boxed()
    }

    fn local(&mut self, local: Local) -> BoxFuture<'static, Vec<u8>> {
        match local {
            Local::Ping(None) => ready(Value::Simple("PONG".into())),
            Local::Ping(Some(message)) | Local::Echo(message) => ready(Value::bulk(message)),
            Local::Command => ready(Value::Array(Some(Vec::new()))),
            Local::ClientOk => ready(Value::ok()),
            Local::Select(db) => ready(if db == b"0" {
                Value::ok()
            } else {
                Value::err("DB index is out of range")
            }),
            Local::ConfigGet(patterns) => ready(info::config_get(&self.shared.config, &patterns)),
            Local::Info(section) => {
                let shared = self.shared.clone();
                async move { Value::bulk(info::render(&shared, section.as_deref()).await).to_bytes() }
                    .boxed()
            }
            Local::Quit => {
                self.closing = true;
                ready(Value::ok())
            }
            Local::Multi => {
                if self.multi.is_some() {
                    return ready(Value::err("MULTI calls can not be nested"));
                }
                self.multi = Some((Vec::new(), false));
                ready(Value::ok())
            }
            Local::Discard => match self.multi.take() {
                Some(_) => ready(Value::ok()),
                None => ready(Value::err("DISCARD without MULTI")),
            },
            Local::Exec => match self.multi.take() {
                None => ready(Value::err("EXEC without MULTI")),
                Some((_, true)) => ready(Value::Error(
                    "EXECABORT Transaction discarded because of previous errors.".into(),
                )),
                Some((ops, false)) if ops.is_empty() => ready(Value::Array(Some(Vec::new()))),
                Some((ops, false)) => self.replicate(KvOp::Multi(ops)),
            },
        }
    }
}

/// Serves one client until it disconnects, sends QUIT, or sends bytes that
/// are not RESP.
pub async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (mut reader, mut writer) = stream.into_split();
    let inflight_max = shared.inflight_max;
    let limits = shared.limits;
    let mut connection = Connection {
        session: shared.handle.session(),
        shared,
        multi: None,
        closing: false,
    };
    let mut input: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut consumed = 0;
    let mut pending: FuturesOrdered<BoxFuture<'static, Vec<u8>>> = FuturesOrdered::new();
    let mut output: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut eof = false;
    loop {
        // Parse every complete request we have room for.
        while !connection.closing && pending.len() < inflight_max {
            match resp::parse_request(&input[consumed..], &limits) {
                Ok(Some((args, used))) => {
                    consumed += used;
                    if !args.is_empty() {
                        pending.push_back(connection.dispatch(args));
                    }
                }
                Ok(None) if input.len() - consumed > limits.request_bytes_max => {
                    connection
                        .shared
                        .stats
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    pending.push_back(ready(Value::err("Protocol error: request too large")));
                    connection.closing = true;
                }
                Ok(None) => break,
                Err(e) => {
                    connection
                        .shared
                        .stats
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    debug!(?peer, error = %e, "closing a client connection: protocol error");
                    pending.push_back(ready(Value::err(e)));
                    connection.closing = true;
                }
            }
        }
        if consumed > 0 && consumed == input.len() {
            input.clear();
            consumed = 0;
        } else if consumed > 64 << 10 {
            input.drain(..consumed);
            consumed = 0;
        }
        if pending.is_empty() && (connection.closing || eof) {
            break;
        }
        let can_read = !connection.closing && !eof && pending.len() < inflight_max;
        tokio::select! {
            biased;
            Some(reply) = pending.next(), if !pending.is_empty() => {
                output.extend_from_slice(&reply);
                while let Some(Some(reply)) = pending.next().now_or_never() {
                    output.extend_from_slice(&reply);
                }
                if writer.write_all(&output).await.is_err() {
                    break;
                }
                output.clear();
            }
            read = reader.read_buf(&mut input), if can_read => {
                match read {
                    Ok(0) | Err(_) => eof = true,
                    Ok(_) => {}
                }
            }
        }
    }
    let _ = writer.shutdown().await;
}

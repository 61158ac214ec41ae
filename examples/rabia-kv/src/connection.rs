//! One RESP client connection: parse pipelined requests, run them in
//! order, and answer in order.
//!
//! **Order.** Redis executes one connection's commands in the order sent.
//! Separate log entries give no such promise (two batches of one node may
//! be decided in either order), so a connection has at most one log entry
//! in flight: the commands that arrive meanwhile are queued, and the next
//! run of consecutive replicated commands goes out as one
//! [`KvOp::Pipeline`] entry once the previous one is applied. Deep
//! pipelines thus become large entries (cheap), and a connection's commands
//! apply in order.
//!
//! Every entry with a write carries the connection's exactly-once session
//! tag, so a retry after an indeterminate outcome applies at most once.

use crate::command::{self, Local, Request};
use crate::info;
use crate::node::Shared;
use crate::resp::{self, Value};
use crate::store::{Command, KvOp};
use futures::future::BoxFuture;
use futures::FutureExt;
use rabia_core::Operation;
use rabia_engine::{EngineHandle, Session, SubmitError};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

/// Times an operation with an indeterminate outcome is retried (with the
/// same session tag, so it applies at most once).
const INDETERMINATE_RETRIES: usize = 5;

/// Most commands in one pipeline entry.
const PIPELINE_OPS_MAX: usize = 1024;

/// Most key and value bytes in one pipeline entry (well under the engine's
/// `max_batch_bytes`, 4 MiB by default): many large pipelined commands
/// become several entries instead of one refused entry.
const PIPELINE_BYTES_MAX: usize = 1 << 20;

/// Most requests queued per connection before it stops reading.
const QUEUED_MAX: usize = 4096;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Submits `operation` and returns the reply bytes; on failure, one error
/// reply per command the entry carried.
async fn submit(handle: EngineHandle, operation: Operation, commands: usize) -> Vec<u8> {
    let mut attempts = 0;
    loop {
        match handle.submit(operation.clone()).await {
            Ok(reply) => return reply,
            Err(SubmitError::Indeterminate) if attempts < INDETERMINATE_RETRIES => {
                attempts += 1;
            }
            Err(e) => {
                let mut out = Vec::new();
                let reply = error_reply(&e);
                for _ in 0..commands {
                    reply.encode(&mut out);
                }
                return out;
            }
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

/// One step of a connection's queue, in request order.
enum Step {
    /// A reply known now.
    Reply(Vec<u8>),
    /// A command for the log.
    Op(KvOp),
    /// A reply computed asynchronously (INFO).
    Later(BoxFuture<'static, Vec<u8>>),
}

struct Connection {
    shared: Arc<Shared>,
    session: Session,
    /// Commands queued by MULTI, and whether one was refused.
    multi: Option<(Vec<KvOp>, bool)>,
    closing: bool,
}

fn reply(value: Value) -> Step {
    Step::Reply(value.to_bytes())
}

impl Connection {
    /// Turns one request into its step.
    /// `now_ms` is the wall clock read once for the burst of requests this
    /// one arrived with (it turns `EX`/`PX` into deadlines).
    fn dispatch(&mut self, args: Vec<Vec<u8>>, now_ms: u64) -> Step {
        self.shared.stats.commands.fetch_add(1, Ordering::Relaxed);
        let request = command::parse(args, now_ms);
        if let Some((queued, dirty)) = self.multi.as_mut() {
            match request {
                Request::Replicated(op) => {
                    queued.push(op);
                    return reply(Value::Simple("QUEUED".into()));
                }
                Request::Local(Local::Exec | Local::Discard | Local::Multi | Local::Quit) => {}
                Request::Local(_) => {
                    *dirty = true;
                    return reply(Value::err("command not allowed inside MULTI"));
                }
                Request::Invalid(value) => {
                    *dirty = true;
                    return reply(value);
                }
            }
        }
        match request {
            Request::Invalid(value) => {
                self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                reply(value)
            }
            Request::Replicated(op) => Step::Op(op),
            Request::Local(local) => self.local(local),
        }
    }

    fn local(&mut self, local: Local) -> Step {
        match local {
            Local::Ping(None) => reply(Value::Simple("PONG".into())),
            Local::Ping(Some(message)) | Local::Echo(message) => reply(Value::bulk(message)),
            Local::Command => reply(Value::Array(Some(Vec::new()))),
            Local::ClientOk => reply(Value::ok()),
            Local::Select(db) => reply(if db == b"0" {
                Value::ok()
            } else {
                Value::err("DB index is out of range")
            }),
            Local::ConfigGet(patterns) => reply(info::config_get(&self.shared.config, &patterns)),
            Local::Info(section) => {
                let shared = self.shared.clone();
                Step::Later(
                    async move {
                        Value::bulk(info::render(&shared, section.as_deref()).await).to_bytes()
                    }
                    .boxed(),
                )
            }
            Local::Quit => {
                self.closing = true;
                reply(Value::ok())
            }
            Local::Multi => {
                if self.multi.is_some() {
                    return reply(Value::err("MULTI calls can not be nested"));
                }
                self.multi = Some((Vec::new(), false));
                reply(Value::ok())
            }
            Local::Discard => match self.multi.take() {
                Some(_) => reply(Value::ok()),
                None => reply(Value::err("DISCARD without MULTI")),
            },
            Local::Exec => match self.multi.take() {
                None => reply(Value::err("EXEC without MULTI")),
                Some((_, true)) => reply(Value::Error(
                    "EXECABORT Transaction discarded because of previous errors.".into(),
                )),
                Some((ops, false)) if ops.is_empty() => reply(Value::Array(Some(Vec::new()))),
                Some((ops, false)) => Step::Op(KvOp::Multi(ops)),
            },
        }
    }

    /// Starts the log entry (or local read) for `ops`, in order.
    fn run(&self, mut ops: Vec<KvOp>) -> BoxFuture<'static, Vec<u8>> {
        let count = ops.len();
        let op = if count == 1 {
            ops.swap_remove(0)
        } else {
            KvOp::Pipeline(ops)
        };
        let read_only = op.is_read_only();
        if read_only && self.shared.config.read_mode == crate::config::ReadMode::Local {
            // Earlier entries of this connection are applied here already
            // (one in flight at a time), so a local read sees them.
            let reader = self.shared.reader.clone();
            return async move {
                match reader
                    .read_local(move |store| store.read_encoded(&op))
                    .await
                {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        let mut out = Vec::new();
                        for _ in 0..count {
                            error_reply(&e).encode(&mut out);
                        }
                        out
                    }
                }
            }
            .boxed();
        }
        let data = match (Command {
            now_ms: now_ms(),
            op,
        })
        .encode()
        {
            Ok(data) => data,
            Err(e) => {
                let mut out = Vec::new();
                for _ in 0..count {
                    Value::err(format!("command too large to replicate: {e}")).encode(&mut out);
                }
                return async move { out }.boxed();
            }
        };
        // Reads need no exactly-once tag; writes get one.
        let operation = if read_only {
            Operation::new(data)
        } else {
            self.session.operation(data)
        };
        submit(self.shared.handle.clone(), operation, count).boxed()
    }
}

/// Moves ready replies from the front of `queue` into `output` and starts
/// the next asynchronous step, if any.
fn advance(
    connection: &Connection,
    queue: &mut VecDeque<Step>,
    output: &mut Vec<u8>,
) -> Option<BoxFuture<'static, Vec<u8>>> {
    loop {
        match queue.pop_front()? {
            Step::Reply(bytes) => output.extend_from_slice(&bytes),
            Step::Later(future) => return Some(future),
            Step::Op(op) => {
                let mut bytes = op.payload_bytes();
                let mut ops = vec![op];
                while ops.len() < PIPELINE_OPS_MAX {
                    match queue.front() {
                        Some(Step::Op(next))
                            if bytes + next.payload_bytes() <= PIPELINE_BYTES_MAX =>
                        {
                            bytes += next.payload_bytes();
                            if let Some(Step::Op(op)) = queue.pop_front() {
                                ops.push(op);
                            }
                        }
                        _ => break,
                    }
                }
                return Some(connection.run(ops));
            }
        }
    }
}

/// Serves one client until it disconnects, sends QUIT, or sends bytes that
/// are not RESP.
pub async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (mut reader, mut writer) = stream.into_split();
    let limits = shared.limits;
    let mut connection = Connection {
        session: shared.handle.session(),
        shared,
        multi: None,
        closing: false,
    };
    let mut input: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut consumed = 0;
    let mut queue: VecDeque<Step> = VecDeque::new();
    let mut in_flight: Option<BoxFuture<'static, Vec<u8>>> = None;
    let mut output: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut eof = false;
    loop {
        // Parse every complete request we have room for.
        let now = now_ms();
        while !connection.closing && queue.len() < QUEUED_MAX {
            match resp::parse_request(&input[consumed..], &limits) {
                Ok(Some((args, used))) => {
                    consumed += used;
                    if !args.is_empty() {
                        let step = connection.dispatch(args, now);
                        queue.push_back(step);
                    }
                }
                Ok(None) if input.len() - consumed > limits.request_bytes_max => {
                    connection
                        .shared
                        .stats
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    queue.push_back(reply(Value::err("Protocol error: request too large")));
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
                    queue.push_back(reply(Value::err(e)));
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
        if in_flight.is_none() {
            in_flight = advance(&connection, &mut queue, &mut output);
        }
        if !output.is_empty() {
            if writer.write_all(&output).await.is_err() {
                break;
            }
            output.clear();
        }
        if in_flight.is_none() && queue.is_empty() && (connection.closing || eof) {
            break;
        }
        let can_read = !connection.closing && !eof && queue.len() < QUEUED_MAX;
        tokio::select! {
            biased;
            done = async { match in_flight.as_mut() { Some(f) => f.await, None => std::future::pending().await } }, if in_flight.is_some() => {
                in_flight = None;
                output.extend_from_slice(&done);
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

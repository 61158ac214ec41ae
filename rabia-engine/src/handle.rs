//! How clients talk to an engine: [`EngineHandle`] (submit and get the
//! result), [`Session`] (exactly-once operations) and [`LocalReader`]
//! (relaxed reads of the local state).

use crate::apply::LocalQuery;
use crate::error::SubmitError;
use crate::status::EngineStatus;
use rabia_core::smr::StateMachine;
use rabia_core::{ClientId, Operation};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) type Reply = Result<Vec<u8>, SubmitError>;
pub(crate) type Waiter = oneshot::Sender<Reply>;

/// One submission on its way to the engine task.
pub(crate) struct ClientRequest {
    pub(crate) operation: Operation,
    pub(crate) reply: Option<Waiter>,
}

/// A cloneable handle to submit operations to one engine and watch it.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    pub(crate) requests: mpsc::Sender<ClientRequest>,
    pub(crate) status: watch::Receiver<EngineStatus>,
    pub(crate) shutdown: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRequest")
            .field("bytes", &self.operation.data.len())
            .finish()
    }
}

/// The reply of a [`EngineHandle::try_submit`]: a future of the result.
#[derive(Debug)]
pub struct PendingReply {
    rx: oneshot::Receiver<Reply>,
}

impl Future for PendingReply {
    type Output = Reply;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(SubmitError::Stopped)))
    }
}

impl EngineHandle {
    /// Submits an operation and waits until it is decided **and applied** on
    /// this node; returns the state machine's result. Waits for queue space.
    ///
    /// Reads are operations too: submitting a read makes it linearizable (it
    /// takes effect at its position in the log).
    ///
    /// **Order.** Operations that are outstanding at the same time may be
    /// applied in either order, even when one client submitted them to one
    /// node in sequence (its batches are separate log entries, and another
    /// replica may propose the later one first). For an order, wait for
    /// each result before submitting the next, or put the operations in one
    /// operation (rabia-kv does both: one entry in flight per connection,
    /// carrying every command that arrived meanwhile).
    pub async fn submit(&self, operation: Operation) -> Reply {
        let (tx, rx) = oneshot::channel();
        let request = ClientRequest {
            operation,
            reply: Some(tx),
        };
        if self.requests.send(request).await.is_err() {
            return Err(SubmitError::Stopped);
        }
        PendingReply { rx }.await
    }

    /// Like [`submit`](Self::submit) but fails at once with
    /// [`SubmitError::Overloaded`] (handing the operation back) when the
    /// engine's queue is full.
    pub fn try_submit(&self, operation: Operation) -> Result<PendingReply, SubmitError> {
        let (tx, rx) = oneshot::channel();
        let request = ClientRequest {
            operation,
            reply: Some(tx),
        };
        match self.requests.try_send(request) {
            Ok(()) => Ok(PendingReply { rx }),
            Err(mpsc::error::TrySendError::Full(r)) => Err(SubmitError::Overloaded {
                operation: r.operation,
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Stopped),
        }
    }

    /// A linearizable read: the operation goes through the log like any other
    /// and its result reflects every operation decided before it.
    pub async fn read(&self, operation: Operation) -> Reply {
        self.submit(operation).await
    }

    /// A new exactly-once client session on this engine.
    pub fn session(&self) -> Session {
        Session::new(self.clone(), ClientId::random())
    }

    /// The latest published status.
    pub fn status(&self) -> EngineStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every published status.
    pub fn status_watch(&self) -> watch::Receiver<EngineStatus> {
        self.status.clone()
    }

    /// Asks the engine to stop; `run()` then returns `Ok(())`.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// An exactly-once client session: every operation carries
/// `(client id, sequence number)`, and replicas apply each at most once.
///
/// A retry of the same tagged operation — to this engine or any other
/// replica's — returns the cached result instead of applying it again, also
/// after snapshots and restarts. Keep at most the engine's
/// `session_window` operations of one session outstanding.
#[derive(Debug)]
pub struct Session {
    handle: EngineHandle,
    client: ClientId,
    next_seq: AtomicU64,
}

impl Session {
    /// A new session with a chosen (fresh) client id, submitting through
    /// `handle`; sequence numbers start at 1. To continue an existing
    /// session use [`Session::resume`].
    pub fn new(handle: EngineHandle, client: ClientId) -> Self {
        Session {
            handle,
            client,
            next_seq: AtomicU64::new(1),
        }
    }

    /// Continues an existing session (e.g. after the client process
    /// restarted with its id and position saved): the next operation gets
    /// sequence number `next_seq`.
    pub fn resume(handle: EngineHandle, client: ClientId, next_seq: u64) -> Self {
        Session {
            handle,
            client,
            next_seq: AtomicU64::new(next_seq.max(1)),
        }
    }

    /// The sequence number the next operation will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// The session's client id.
    pub fn client_id(&self) -> ClientId {
        self.client
    }

    /// Tags `data` with this session and the next sequence number. Submit the
    /// returned operation (and retry *the same* operation) through any
    /// replica's handle.
    pub fn operation(&self, data: Vec<u8>) -> Operation {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        Operation::with_session(data, self.client, seq)
    }

    /// Tags and submits `data` through this session's engine.
    pub async fn submit(&self, data: Vec<u8>) -> Reply {
        let operation = self.operation(data);
        self.handle.submit(operation).await
    }
}

/// A relaxed, local read of this replica's state: no round trip, possibly
/// stale (it sees every operation this node has applied, which may trail
/// the cluster). Use [`EngineHandle::read`] for a linearizable read.
pub struct LocalReader<SM> {
    pub(crate) queries: mpsc::Sender<LocalQuery<SM>>,
}

impl<SM> Clone for LocalReader<SM> {
    fn clone(&self) -> Self {
        LocalReader {
            queries: self.queries.clone(),
        }
    }
}

impl<SM> std::fmt::Debug for LocalReader<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalReader")
    }
}

impl<SM: StateMachine + 'static> LocalReader<SM> {
    /// Runs `query` on the local state machine (between two applied
    /// operations) and returns its result. **May be stale.**
    pub async fn read_local<R: Send + 'static>(
        &self,
        query: impl FnOnce(&SM) -> R + Send + 'static,
    ) -> Result<R, SubmitError> {
        let (tx, rx) = oneshot::channel();
        let command: LocalQuery<SM> = Box::new(move |sm: &SM| {
            let _ = tx.send(query(sm));
        });
        self.queries
            .send(command)
            .await
            .map_err(|_| SubmitError::Stopped)?;
        rx.await.map_err(|_| SubmitError::Stopped)
    }
}

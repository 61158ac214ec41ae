//! Recording a concurrent key-value history: operations, results, events,
//! and the validation that turns raw events into [`Operation`]s.
//!
//! Time is the position of an event in the history (the order in which
//! clients called [`History::invoke`], [`History::complete`], ...), never a
//! clock, so a recorded history replays identically.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// Identifies one operation within a [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A key-value operation as a client issued it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KvOp {
    /// Read the value of `key` (`None` if it was never written).
    Read {
        /// The key read.
        key: String,
    },
    /// Set `key` to `value`.
    Write {
        /// The key written.
        key: String,
        /// The value written.
        value: String,
    },
    /// Set `key` to `new` if it currently holds `expected`; a missing key
    /// never matches.
    Cas {
        /// The key compared and set.
        key: String,
        /// The value `key` must hold for the swap to happen.
        expected: String,
        /// The value `key` holds after a successful swap.
        new: String,
    },
}

impl KvOp {
    /// The key this operation touches.
    pub fn key(&self) -> &str {
        match self {
            KvOp::Read { key } | KvOp::Write { key, .. } | KvOp::Cas { key, .. } => key,
        }
    }

    /// Whether `result` is the kind of result this operation returns
    /// (`Read` → [`KvResult::Read`], `Write` → [`KvResult::Written`],
    /// `Cas` → [`KvResult::Cas`]).
    pub fn matches(&self, result: &KvResult) -> bool {
        matches!(
            (self, result),
            (KvOp::Read { .. }, KvResult::Read(_))
                | (KvOp::Write { .. }, KvResult::Written)
                | (KvOp::Cas { .. }, KvResult::Cas(_))
        )
    }
}

impl fmt::Display for KvOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOp::Read { key } => write!(f, "read({key:?})"),
            KvOp::Write { key, value } => write!(f, "write({key:?}, {value:?})"),
            KvOp::Cas { key, expected, new } => {
                write!(f, "cas({key:?}, {expected:?} -> {new:?})")
            }
        }
    }
}

/// What a completed operation returned.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KvResult {
    /// A read's value (`None`: the key was missing).
    Read(Option<String>),
    /// A write was applied.
    Written,
    /// Whether a compare-and-set swapped.
    Cas(bool),
}

impl fmt::Display for KvResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvResult::Read(Some(v)) => write!(f, "{v:?}"),
            KvResult::Read(None) => f.write_str("None"),
            KvResult::Written => f.write_str("ok"),
            KvResult::Cas(swapped) => write!(f, "{swapped}"),
        }
    }
}

/// One entry of a history. An event's time is its position in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `client` started operation `id`.
    Invoke {
        /// The operation started.
        id: OpId,
        /// The client that issued it.
        client: u64,
        /// What it asks for.
        op: KvOp,
    },
    /// Operation `id` took effect and returned `result`.
    Complete {
        /// The operation completed.
        id: OpId,
        /// What it returned.
        result: KvResult,
    },
    /// Operation `id` definitely did not take effect, ever.
    Fail {
        /// The operation that failed.
        id: OpId,
    },
    /// The client gave up waiting for operation `id`: it may or may not
    /// take effect, at any time after its invocation. An operation with no
    /// response event at all means the same.
    Timeout {
        /// The operation that timed out.
        id: OpId,
    },
}

impl Event {
    /// The operation this event is about.
    pub fn id(&self) -> OpId {
        match self {
            Event::Invoke { id, .. }
            | Event::Complete { id, .. }
            | Event::Fail { id }
            | Event::Timeout { id } => *id,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect atomically between its invocation and `at`, and
    /// returned `result`.
    Completed {
        /// What it returned.
        result: KvResult,
        /// The time of its response.
        at: u64,
    },
    /// It definitely did not take effect.
    Failed {
        /// The time of the failure response.
        at: u64,
    },
    /// It may or may not take effect, at any time after its invocation,
    /// with any return value (timed out, or no response was recorded).
    Indeterminate,
}

/// One operation of a validated history: its invocation paired with how it
/// ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Its identity.
    pub id: OpId,
    /// The client that issued it.
    pub client: u64,
    /// What it asks for.
    pub op: KvOp,
    /// The time of its invocation.
    pub invoked_at: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// Why a list of events is not a well-formed history.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A response (complete, fail or timeout) for an operation that was not
    /// invoked earlier in the history.
    #[error("event {at}: response for {id}, which was not invoked before it")]
    NotInvoked {
        /// The operation responded to.
        id: OpId,
        /// The time of the response.
        at: u64,
    },
    /// Two invocations with the same id.
    #[error("event {at}: {id} invoked a second time")]
    DuplicateInvocation {
        /// The operation invoked twice.
        id: OpId,
        /// The time of the second invocation.
        at: u64,
    },
    /// A second response (complete, fail or timeout) for one operation.
    #[error("event {at}: second response for {id}")]
    DuplicateResponse {
        /// The operation responded to twice.
        id: OpId,
        /// The time of the second response.
        at: u64,
    },
    /// A completion whose result is not the kind the operation returns,
    /// e.g. a read completed with [`KvResult::Written`].
    #[error("event {at}: {id} is {op} but completed with {result}")]
    ResultMismatch {
        /// The operation.
        id: OpId,
        /// What it asked for.
        op: KvOp,
        /// The mismatched result.
        result: KvResult,
        /// The time of the completion.
        at: u64,
    },
}

#[derive(Debug, Default)]
struct Recorder {
    events: Vec<Event>,
    next_id: u64,
}

/// A concurrent history recorder. Clones share the same history, so each
/// client can hold its own clone; every call appends one event under a
/// lock, and that append order is the history's time.
///
/// Recording never fails: malformed sequences (a completion for an id that
/// was never invoked, two responses for one operation, ...) are reported by
/// [`History::operations`] and by the checker as
/// [`CheckResult::Invalid`](super::CheckResult::Invalid).
#[derive(Clone, Debug, Default)]
pub struct History {
    inner: Arc<Mutex<Recorder>>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A history made of `events`, in order, e.g. hand-built for a test.
    /// [`History::invoke`] on it allocates ids above every id in `events`.
    pub fn from_events(events: Vec<Event>) -> Self {
        let next_id = events
            .iter()
            .map(|e| e.id().0.saturating_add(1))
            .max()
            .unwrap_or(0);
        History {
            inner: Arc::new(Mutex::new(Recorder { events, next_id })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Recorder) -> T) -> T {
        // A panic while holding the lock cannot leave a half-written event,
        // so a poisoned lock is still a consistent history.
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Records that `client` started `op`; returns its id for the response.
    pub fn invoke(&self, client: u64, op: KvOp) -> OpId {
        self.with(|r| {
            let id = OpId(r.next_id);
            r.next_id = r.next_id.saturating_add(1);
            r.events.push(Event::Invoke { id, client, op });
            id
        })
    }

    /// Records that operation `id` took effect and returned `result`.
    pub fn complete(&self, id: OpId, result: KvResult) {
        self.with(|r| r.events.push(Event::Complete { id, result }));
    }

    /// Records that operation `id` definitely did not take effect.
    pub fn fail(&self, id: OpId) {
        self.with(|r| r.events.push(Event::Fail { id }));
    }

    /// Records that the client gave up on operation `id`: it may or may not
    /// take effect. Never responding to an operation means the same.
    pub fn timeout(&self, id: OpId) {
        self.with(|r| r.events.push(Event::Timeout { id }));
    }

    /// A copy of the events recorded so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        self.with(|r| r.events.clone())
    }

    /// The number of events recorded so far.
    pub fn len(&self) -> usize {
        self.with(|r| r.events.len())
    }

    /// Whether no event has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pairs every invocation with its response, in invocation order, or
    /// says why the events are not a well-formed history.
    pub fn operations(&self) -> Result<Vec<Operation>, HistoryError> {
        self.with(|r| operations(&r.events))
    }
}

/// Pairs every invocation in `events` with its response, in invocation
/// order. An invocation without a response is [`Outcome::Indeterminate`].
pub(crate) fn operations(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    let mut ops: Vec<Operation> = Vec::new();
    let mut index: BTreeMap<OpId, usize> = BTreeMap::new();
    let mut responded: BTreeSet<OpId> = BTreeSet::new();
    for (at, event) in (0u64..).zip(events) {
        let id = event.id();
        let outcome = match event {
            Event::Invoke { client, op, .. } => {
                if index.insert(id, ops.len()).is_some() {
                    return Err(HistoryError::DuplicateInvocation { id, at });
                }
                ops.push(Operation {
                    id,
                    client: *client,
                    op: op.clone(),
                    invoked_at: at,
                    outcome: Outcome::Indeterminate,
                });
                continue;
            }
            Event::Complete { result, .. } => Outcome::Completed {
                result: result.clone(),
                at,
            },
            Event::Fail { .. } => Outcome::Failed { at },
            Event::Timeout { .. } => Outcome::Indeterminate,
        };
        let Some(op) = index.get(&id).and_then(|&i| ops.get_mut(i)) else {
            return Err(HistoryError::NotInvoked { id, at });
        };
        if !responded.insert(id) {
            return Err(HistoryError::DuplicateResponse { id, at });
        }
        if let Outcome::Completed { result, .. } = &outcome {
            if !op.op.matches(result) {
                return Err(HistoryError::ResultMismatch {
                    id,
                    op: op.op.clone(),
                    result: result.clone(),
                    at,
                });
            }
        }
        op.outcome = outcome;
    }
    Ok(ops)
}

//! A linearizability checker for key-value histories.
//!
//! Clients record what they did in a [`History`]: [`History::invoke`]
//! before sending an operation, then [`History::complete`] with its result,
//! [`History::fail`] if it definitely did not take effect, or
//! [`History::timeout`] (or nothing) if it is unknown whether it did. An
//! indeterminate operation may take effect at any point after its
//! invocation, with any result, or never.
//!
//! [`check`] decides whether some total order of the operations, each
//! placed between its invocation and its response, is a legal sequential
//! execution of a key-value store where a missing key reads as `None` and a
//! compare-and-set on it fails. Keys are independent, so each key's
//! operations are checked on their own (keys in sorted order), each with a
//! memoized depth-first search over linearization points (Wing & Gong with
//! Lowe's improvements, the algorithm of Porcupine and Knossos).
//!
//! ```
//! use rabia_testing::linearizability::{check, CheckResult, History, KvOp, KvResult};
//!
//! let history = History::new();
//! let w = history.invoke(1, KvOp::Write { key: "x".into(), value: "a".into() });
//! history.complete(w, KvResult::Written);
//! let r = history.invoke(2, KvOp::Read { key: "x".into() });
//! history.complete(r, KvResult::Read(None)); // stale: the write finished first
//! match check(&history) {
//!     CheckResult::NotLinearizable { key, .. } => assert_eq!(key, "x"),
//!     other => panic!("{other:?}"),
//! }
//! ```

mod history;
mod model;
mod search;
mod simulate;
#[cfg(test)]
mod tests;

pub use history::{Event, History, HistoryError, KvOp, KvResult, OpId, Operation, Outcome};
pub use simulate::{simulate, SimulationConfig};

use model::Interner;
use search::{search, KeyOp, Stuck, Verdict};
use std::collections::BTreeMap;
use std::fmt;

/// The default bound on memoized search states per key for [`check`].
pub const DEFAULT_MAX_STATES: usize = 1_000_000;

/// How many operations of the longest prefix an explanation lists.
const SHOWN_PREFIX: usize = 5;

/// The checker's verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Some order of the operations is a legal sequential execution.
    Linearizable,
    /// No order of `key`'s operations is a legal sequential execution.
    /// When several keys are violated, this is the first in sorted order.
    NotLinearizable {
        /// The key whose operations cannot be linearized.
        key: String,
        /// The longest linearizable prefix found and the operation that
        /// could not be placed after it.
        explanation: String,
    },
    /// No key is violated, but the search for `key` memoized more than
    /// `max_states` states and stopped without a verdict.
    Unknown {
        /// The key whose search was cut short.
        key: String,
        /// The bound that was hit.
        max_states: usize,
    },
    /// The events do not form a history (e.g. a completion without an
    /// invocation), so nothing was checked.
    Invalid(HistoryError),
}

impl CheckResult {
    /// Whether the verdict is [`CheckResult::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Linearizable => f.write_str("linearizable"),
            CheckResult::NotLinearizable { key, explanation } => {
                write!(f, "not linearizable on key {key:?}: {explanation}")
            }
            CheckResult::Unknown { key, max_states } => write!(
                f,
                "unknown: the search on key {key:?} exceeded {max_states} states"
            ),
            CheckResult::Invalid(e) => write!(f, "invalid history: {e}"),
        }
    }
}

/// Checks `history` with [`DEFAULT_MAX_STATES`].
pub fn check(history: &History) -> CheckResult {
    check_with_limit(history, DEFAULT_MAX_STATES)
}

/// Checks `history`, giving up on a key (and answering
/// [`CheckResult::Unknown`] unless another key is violated) once its search
/// has memoized more than `max_states` states.
pub fn check_with_limit(history: &History, max_states: usize) -> CheckResult {
    let ops = match history.operations() {
        Ok(ops) => ops,
        Err(e) => return CheckResult::Invalid(e),
    };
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &ops {
        by_key.entry(op.op.key()).or_default().push(op);
    }
    let mut unknown = None;
    for (key, ops) in by_key {
        match check_key(&ops, max_states) {
            Ok(()) => {}
            Err(Some(explanation)) => {
                return CheckResult::NotLinearizable {
                    key: key.to_owned(),
                    explanation,
                }
            }
            Err(None) => {
                unknown.get_or_insert_with(|| key.to_owned());
            }
        }
    }
    match unknown {
        Some(key) => CheckResult::Unknown { key, max_states },
        None => CheckResult::Linearizable,
    }
}

/// Checks one key's operations: `Err(Some(explanation))` if they are not
/// linearizable, `Err(None)` if the search was cut short.
fn check_key(ops: &[&Operation], max_states: usize) -> Result<(), Option<String>> {
    let mut values = Interner::default();
    // Failed operations never took effect, and an indeterminate read
    // changes nothing and returns nothing: neither constrains the search.
    let relevant: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|op| match op.outcome {
            Outcome::Completed { .. } => true,
            Outcome::Failed { .. } => false,
            Outcome::Indeterminate => !matches!(op.op, KvOp::Read { .. }),
        })
        .collect();
    if let Some(explanation) = read_of_a_value_never_written(&relevant) {
        // Decided without a search: no order can produce such a read, and
        // a long history could otherwise exhaust the search budget first.
        return Err(Some(explanation));
    }
    let key_ops: Vec<KeyOp> = relevant
        .iter()
        .map(|op| {
            let input = values.input(&op.op);
            let (ret, output) = match &op.outcome {
                Outcome::Completed { result, at } => (Some(*at), Some(values.output(result))),
                Outcome::Failed { .. } | Outcome::Indeterminate => (None, None),
            };
            KeyOp {
                call: op.invoked_at,
                ret,
                input,
                output,
            }
        })
        .collect();
    match search(&key_ops, max_states) {
        Verdict::Linearizable => Ok(()),
        Verdict::Unknown => Err(None),
        Verdict::NotLinearizable(stuck) => Err(Some(explain(&relevant, &values, &stuck))),
    }
}

/// A completed read that returned a value no write or compare-and-set of
/// the key could have stored (failed ones never took effect), if any.
fn read_of_a_value_never_written(ops: &[&Operation]) -> Option<String> {
    let stored: Vec<&str> = ops
        .iter()
        .filter_map(|op| match &op.op {
            KvOp::Write { value, .. } => Some(value.as_str()),
            KvOp::Cas { new, .. } => Some(new.as_str()),
            KvOp::Read { .. } => None,
        })
        .collect();
    ops.iter().find_map(|op| match &op.outcome {
        Outcome::Completed {
            result: KvResult::Read(Some(value)),
            ..
        } if !stored.contains(&value.as_str()) => Some(format!(
            "{} read a value that no write of the key stores",
            describe(op)
        )),
        _ => None,
    })
}

/// A short account of where the search got stuck.
fn explain(ops: &[&Operation], values: &Interner, stuck: &Stuck) -> String {
    let prefix_len = stuck.prefix.len();
    let shown: Vec<String> = stuck
        .prefix
        .iter()
        .skip(prefix_len.saturating_sub(SHOWN_PREFIX))
        .filter_map(|&i| ops.get(i).map(|op| describe(op)))
        .collect();
    let listing = match prefix_len {
        0 => String::new(),
        n if n > SHOWN_PREFIX => format!(" (…, {})", shown.join(", ")),
        _ => format!(" ({})", shown.join(", ")),
    };
    let blocked = ops
        .get(stuck.blocked)
        .map_or_else(|| "an operation".to_owned(), |op| describe(op));
    format!(
        "the longest linearizable prefix has {prefix_len} of {} operations{listing} \
         and leaves the value {}; then {blocked} cannot be linearized before it returns",
        ops.len(),
        values.show(stuck.state),
    )
}

/// `#3 client 1 read("x") -> "a" [4, 7]`, or `[4, ?]` if indeterminate.
fn describe(op: &Operation) -> String {
    match &op.outcome {
        Outcome::Completed { result, at } => format!(
            "{} client {} {} -> {result} [{}, {at}]",
            op.id, op.client, op.op, op.invoked_at
        ),
        Outcome::Failed { .. } | Outcome::Indeterminate => format!(
            "{} client {} {} -> ? [{}, ?]",
            op.id, op.client, op.op, op.invoked_at
        ),
    }
}

//! The sequential specification of one key: a register that is missing
//! until written, read, written, and compare-and-set.
//!
//! Values are interned to small integers so that the search can copy and
//! hash states cheaply.

use super::history::{KvOp, KvResult};
use std::collections::BTreeMap;

/// An interned value.
pub(crate) type Value = u32;

/// The register's state: `None` until the first write.
pub(crate) type State = Option<Value>;

/// An operation on one key, with interned values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    Read,
    Write(Value),
    Cas { expected: Value, new: Value },
}

/// A result on one key, with interned values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Read(Option<Value>),
    Written,
    Cas(bool),
}

/// Applies `input` to `state`. `output` is what the operation returned, or
/// `None` if it is unconstrained (the operation's response is unknown).
/// Returns the next state, or `None` if no sequential execution from
/// `state` returns `output`.
pub(crate) fn step(state: State, input: Input, output: Option<Output>) -> Option<State> {
    match (input, output) {
        (Input::Read, None) => Some(state),
        (Input::Read, Some(Output::Read(seen))) => (seen == state).then_some(state),
        (Input::Write(v), None | Some(Output::Written)) => Some(Some(v)),
        (Input::Cas { expected, new }, output) => {
            let swaps = state == Some(expected);
            let next = if swaps { Some(new) } else { state };
            match output {
                None => Some(next),
                Some(Output::Cas(swapped)) => (swapped == swaps).then_some(next),
                Some(_) => None,
            }
        }
        (_, Some(_)) => None,
    }
}

/// Maps value strings to [`Value`]s and back.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: BTreeMap<String, Value>,
    names: Vec<String>,
}

impl Interner {
    /// The id of `value`, allocating one on first sight.
    pub(crate) fn intern(&mut self, value: &str) -> Value {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = Value::try_from(self.names.len()).unwrap_or(Value::MAX);
        self.ids.insert(value.to_owned(), id);
        self.names.push(value.to_owned());
        id
    }

    /// The interned form of `op` (its key is dropped).
    pub(crate) fn input(&mut self, op: &KvOp) -> Input {
        match op {
            KvOp::Read { .. } => Input::Read,
            KvOp::Write { value, .. } => Input::Write(self.intern(value)),
            KvOp::Cas { expected, new, .. } => Input::Cas {
                expected: self.intern(expected),
                new: self.intern(new),
            },
        }
    }

    /// The interned form of `result`.
    pub(crate) fn output(&mut self, result: &KvResult) -> Output {
        match result {
            KvResult::Read(v) => Output::Read(v.as_deref().map(|v| self.intern(v))),
            KvResult::Written => Output::Written,
            KvResult::Cas(swapped) => Output::Cas(*swapped),
        }
    }

    /// A human-readable rendering of `state`.
    pub(crate) fn show(&self, state: State) -> String {
        match state.and_then(|v| self.names.get(v as usize)) {
            Some(name) => format!("{name:?}"),
            None if state.is_none() => "missing".to_owned(),
            None => "?".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_semantics() {
        assert_eq!(
            step(None, Input::Read, Some(Output::Read(None))),
            Some(None)
        );
        assert_eq!(step(None, Input::Read, Some(Output::Read(Some(1)))), None);
        assert_eq!(
            step(None, Input::Write(1), Some(Output::Written)),
            Some(Some(1))
        );
        let cas = Input::Cas {
            expected: 1,
            new: 2,
        };
        assert_eq!(step(None, cas, Some(Output::Cas(true))), None);
        assert_eq!(step(None, cas, Some(Output::Cas(false))), Some(None));
        assert_eq!(step(Some(1), cas, Some(Output::Cas(true))), Some(Some(2)));
        assert_eq!(step(Some(1), cas, Some(Output::Cas(false))), None);
        assert_eq!(step(Some(3), cas, None), Some(Some(3)));
        assert_eq!(step(Some(1), cas, None), Some(Some(2)));
        assert_eq!(step(Some(1), Input::Read, Some(Output::Written)), None);
        assert_eq!(
            step(Some(1), Input::Write(2), Some(Output::Cas(true))),
            None
        );
    }
}

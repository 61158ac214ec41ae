//! The search for a linearization of one key's operations: Wing & Gong's
//! depth-first search with Lowe's memoization, as in Porcupine and Knossos.
//!
//! Calls and returns sit in one time-ordered doubly-linked list. From the
//! head, every call before the first return is a candidate for the next
//! linearization point; linearizing one lifts its call and return out of
//! the list. Reaching a return means that operation had to be linearized
//! already ("just in time"), so the search backtracks. A
//! (linearized-set, state) pair seen before is never explored twice.
//!
//! Indeterminate operations have no return (it is at +∞): they never force
//! backtracking, and the search succeeds as soon as every completed
//! operation is linearized, so an indeterminate operation may also never
//! take effect.

use super::model::{step, Input, Output, State};
use std::collections::HashSet;

/// One operation on the key being checked.
#[derive(Clone, Debug)]
pub(crate) struct KeyOp {
    /// Invocation time.
    pub(crate) call: u64,
    /// Response time; `None` for an indeterminate operation.
    pub(crate) ret: Option<u64>,
    pub(crate) input: Input,
    /// What it returned; `None` if unconstrained.
    pub(crate) output: Option<Output>,
}

/// Where the search got stuck furthest into the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stuck {
    /// The longest linearizable prefix found, as indices into the ops.
    pub(crate) prefix: Vec<usize>,
    /// The state after `prefix`.
    pub(crate) state: State,
    /// The op whose return was reached without it being linearizable.
    pub(crate) blocked: usize,
}

/// The search's verdict for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Linearizable,
    NotLinearizable(Stuck),
    /// More than the allowed number of states were memoized.
    Unknown,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

#[derive(Clone, Copy, Debug)]
struct Node {
    op: usize,
    /// For a call: its return node, or `NIL` if indeterminate. `NIL` for a
    /// return.
    ret: usize,
    is_call: bool,
}

/// The time-ordered call/return list, with dancing-links removal.
struct Entries {
    nodes: Vec<Node>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Entries {
    fn new(ops: &[KeyOp]) -> Self {
        let mut timed: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            timed.push((op.call, true, i));
            if let Some(ret) = op.ret {
                timed.push((ret, false, i));
            }
        }
        // Calls sort before returns at equal times, so touching intervals
        // count as concurrent.
        timed.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
        let mut nodes = vec![Node {
            op: NIL,
            ret: NIL,
            is_call: false,
        }];
        let mut ret_node = vec![NIL; ops.len()];
        let mut call_node = vec![NIL; ops.len()];
        for &(_, is_call, op) in &timed {
            let slot = if is_call {
                &mut call_node
            } else {
                &mut ret_node
            };
            if let Some(s) = slot.get_mut(op) {
                *s = nodes.len();
            }
            nodes.push(Node {
                op,
                ret: NIL,
                is_call,
            });
        }
        for (call, ret) in call_node.iter().zip(&ret_node) {
            if let Some(node) = nodes.get_mut(*call) {
                node.ret = *ret;
            }
        }
        let n = nodes.len();
        let next = (0..n)
            .map(|i| if i + 1 < n { i + 1 } else { NIL })
            .collect();
        let prev = (0..n).map(|i| i.checked_sub(1).unwrap_or(NIL)).collect();
        Entries { nodes, next, prev }
    }

    fn node(&self, i: usize) -> Option<Node> {
        self.nodes.get(i).copied()
    }

    fn next(&self, i: usize) -> usize {
        self.next.get(i).copied().unwrap_or(NIL)
    }

    fn unlink(&mut self, i: usize) {
        let (Some(&p), Some(&n)) = (self.prev.get(i), self.next.get(i)) else {
            return;
        };
        if let Some(x) = self.next.get_mut(p) {
            *x = n;
        }
        if let Some(x) = self.prev.get_mut(n) {
            *x = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (Some(&p), Some(&n)) = (self.prev.get(i), self.next.get(i)) else {
            return;
        };
        if let Some(x) = self.next.get_mut(p) {
            *x = i;
        }
        if let Some(x) = self.prev.get_mut(n) {
            *x = i;
        }
    }

    /// Removes call node `call` and its return.
    fn lift(&mut self, call: usize, ret: usize) {
        self.unlink(call);
        if ret != NIL {
            self.unlink(ret);
        }
    }

    /// Undoes [`Entries::lift`]; lifts must be undone in reverse order.
    fn unlift(&mut self, call: usize, ret: usize) {
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// The memo key: the linearized set as a bitset, then the state.
struct Memo {
    words: Vec<u64>,
    bits: usize,
    seen: HashSet<Vec<u64>>,
}

impl Memo {
    fn new(ops: usize) -> Self {
        let bits = ops.div_ceil(64);
        Memo {
            words: vec![0; bits + 1],
            bits,
            seen: HashSet::new(),
        }
    }

    fn toggle(&mut self, op: usize) {
        if let Some(w) = self.words.get_mut(op / 64) {
            *w ^= 1 << (op % 64);
        }
    }

    /// Records (linearized set, `state`); false if it was seen before.
    fn insert(&mut self, state: State) -> bool {
        if let Some(w) = self.words.get_mut(self.bits) {
            *w = state.map_or(0, |v| u64::from(v) + 1);
        }
        if self.seen.contains(self.words.as_slice()) {
            return false;
        }
        self.seen.insert(self.words.clone())
    }
}

/// Searches for a linearization of `ops`, memoizing at most `max_states`
/// (linearized-set, state) pairs.
pub(crate) fn search(ops: &[KeyOp], max_states: usize) -> Verdict {
    let mut pending = ops.iter().filter(|op| op.ret.is_some()).count();
    if pending == 0 {
        return Verdict::Linearizable;
    }
    let mut list = Entries::new(ops);
    let mut memo = Memo::new(ops.len());
    let mut state: State = None;
    // (call node, state before it) for every linearized op, in order.
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut stuck: Option<Stuck> = None;
    let mut entry = list.next(HEAD);
    // While an op with a return is pending, its return node is in the
    // list, and the walk never passes a return, so `entry` is never NIL.
    while let Some(node) = list.node(entry) {
        let Some(op) = ops.get(node.op) else {
            break;
        };
        if node.is_call {
            if let Some(after) = step(state, op.input, op.output) {
                memo.toggle(node.op);
                if memo.insert(after) {
                    if memo.seen.len() > max_states {
                        return Verdict::Unknown;
                    }
                    stack.push((entry, state));
                    state = after;
                    list.lift(entry, node.ret);
                    if op.ret.is_some() {
                        pending -= 1;
                        if pending == 0 {
                            return Verdict::Linearizable;
                        }
                    }
                    entry = list.next(HEAD);
                    continue;
                }
                memo.toggle(node.op);
            }
            entry = list.next(entry);
        } else {
            if stuck.as_ref().is_none_or(|s| stack.len() > s.prefix.len()) {
                stuck = Some(Stuck {
                    prefix: stack
                        .iter()
                        .filter_map(|&(call, _)| list.node(call).map(|n| n.op))
                        .collect(),
                    state,
                    blocked: node.op,
                });
            }
            let Some((call, before)) = stack.pop() else {
                break;
            };
            let Some(popped) = list.node(call) else {
                break;
            };
            state = before;
            memo.toggle(popped.op);
            if ops.get(popped.op).is_some_and(|op| op.ret.is_some()) {
                pending += 1;
            }
            list.unlift(call, popped.ret);
            entry = list.next(call);
        }
    }
    match stuck {
        Some(stuck) => Verdict::NotLinearizable(stuck),
        None => Verdict::Unknown,
    }
}

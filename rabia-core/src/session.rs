//! Exactly-once client sessions.
//!
//! A [`SessionTable`] is *replicated state*: it changes only as decided
//! operations are applied, in slot order, so every replica holds the same
//! table at the same applied slot. It travels inside snapshots.
//!
//! Contract for clients: tag operations `(client, seq)` with `seq` starting at
//! 1 and increasing; keep at most [`SessionTable::window`] operations of one
//! session outstanding at a time. A retried operation (same tag) is applied
//! once; later copies get the cached reply.

use crate::ids::ClientId;
use crate::operation::SessionTag;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The outcome of checking an operation's session tag before applying it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionCheck {
    /// Not applied before: apply it, then call [`SessionTable::record`].
    New,
    /// Applied before; this is the reply it produced (`Err` carries the
    /// error text of a failed application).
    Duplicate(Result<Vec<u8>, String>),
    /// Applied long ago; its reply was evicted from the window. Do not apply.
    Stale,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    /// Every seq below `floor` counts as applied.
    floor: u64,
    /// Replies of the most recent applied seqs (at most `window`).
    replies: BTreeMap<u64, Result<Vec<u8>, String>>,
    /// Logical time of last use, for deterministic eviction.
    last_used: u64,
}

/// The replicated table of client sessions with cached replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTable {
    sessions: BTreeMap<ClientId, Session>,
    /// Deterministic logical clock: number of recorded operations.
    clock: u64,
    window: usize,
    max_sessions: usize,
}

impl Default for SessionTable {
    fn default() -> Self {
        SessionTable::new(64, 100_000)
    }
}

impl SessionTable {
    /// A table keeping `window` replies per session and at most
    /// `max_sessions` sessions (the least recently used is evicted).
    pub fn new(window: usize, max_sessions: usize) -> Self {
        SessionTable {
            sessions: BTreeMap::new(),
            clock: 0,
            window: window.max(1),
            max_sessions: max_sessions.max(1),
        }
    }

    /// The per-session window of cached replies.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Checks whether the tagged operation was applied before.
    pub fn check(&self, tag: SessionTag) -> SessionCheck {
        match self.sessions.get(&tag.client) {
            // An unknown session is new only at its start: a sequence number
            // beyond the window means the session was evicted, and applying
            // a retry of one of its operations again would break
            // exactly-once. (Size `max_sessions` for every active client.)
            None if tag.seq > self.window as u64 => SessionCheck::Stale,
            None => SessionCheck::New,
            Some(session) => {
                if let Some(reply) = session.replies.get(&tag.seq) {
                    SessionCheck::Duplicate(reply.clone())
                } else if tag.seq < session.floor {
                    SessionCheck::Stale
                } else {
                    SessionCheck::New
                }
            }
        }
    }

    /// Records that the tagged operation was applied with `reply`.
    pub fn record(&mut self, tag: SessionTag, reply: Result<Vec<u8>, String>) {
        self.clock += 1;
        let clock = self.clock;
        let window = self.window;
        let session = self.sessions.entry(tag.client).or_default();
        session.last_used = clock;
        session.replies.insert(tag.seq, reply);
        while session.replies.len() > window {
            if let Some((&oldest, _)) = session.replies.iter().next() {
                session.replies.remove(&oldest);
                session.floor = session.floor.max(oldest + 1);
            }
        }
        if self.sessions.len() > self.max_sessions {
            if let Some(victim) = self
                .sessions
                .iter()
                .min_by_key(|(id, s)| (s.last_used, **id))
                .map(|(id, _)| *id)
            {
                self.sessions.remove(&victim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(client: u64, seq: u64) -> SessionTag {
        SessionTag {
            client: ClientId(client),
            seq,
        }
    }

    #[test]
    fn retried_operation_gets_cached_reply() {
        let mut table = SessionTable::new(4, 10);
        assert_eq!(table.check(tag(1, 1)), SessionCheck::New);
        table.record(tag(1, 1), Ok(b"one".to_vec()));
        assert_eq!(
            table.check(tag(1, 1)),
            SessionCheck::Duplicate(Ok(b"one".to_vec()))
        );
        assert_eq!(table.check(tag(1, 2)), SessionCheck::New);
        assert_eq!(table.check(tag(2, 1)), SessionCheck::New);
    }

    #[test]
    fn out_of_order_within_window_is_new_and_old_is_stale() {
        let mut table = SessionTable::new(2, 10);
        table.record(tag(1, 2), Ok(vec![]));
        assert_eq!(table.check(tag(1, 1)), SessionCheck::New);
        table.record(tag(1, 3), Ok(vec![]));
        table.record(tag(1, 4), Ok(vec![]));
        assert_eq!(table.check(tag(1, 1)), SessionCheck::Stale);
        assert_eq!(table.check(tag(1, 2)), SessionCheck::Stale);
        assert!(matches!(table.check(tag(1, 4)), SessionCheck::Duplicate(_)));
    }

    #[test]
    fn an_evicted_session_is_not_mistaken_for_a_new_one() {
        let mut table = SessionTable::new(2, 1);
        for seq in 1..=5 {
            table.record(tag(1, seq), Ok(vec![]));
        }
        table.record(tag(2, 1), Ok(vec![])); // evicts client 1
        assert_eq!(table.check(tag(1, 5)), SessionCheck::Stale);
        assert_eq!(table.check(tag(3, 1)), SessionCheck::New);
        assert_eq!(
            table.check(tag(3, 2)),
            SessionCheck::New,
            "within the window"
        );
        assert_eq!(table.check(tag(3, 3)), SessionCheck::Stale);
    }

    #[test]
    fn least_recently_used_session_is_evicted() {
        let mut table = SessionTable::new(2, 2);
        table.record(tag(1, 1), Ok(vec![]));
        table.record(tag(2, 1), Ok(vec![]));
        table.record(tag(1, 2), Ok(vec![]));
        table.record(tag(3, 1), Ok(vec![]));
        assert_eq!(table.len(), 2);
        assert_eq!(table.check(tag(2, 1)), SessionCheck::New);
        assert!(matches!(table.check(tag(1, 2)), SessionCheck::Duplicate(_)));
    }
}

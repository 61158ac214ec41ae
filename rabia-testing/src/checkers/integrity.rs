//! Integrity: a client operation (client, seq) is applied at most once by a
//! replica's state machine (per incarnation: a restarted replica rebuilds its
//! state by applying the log again from its snapshot).

use rabia_core::{NodeId, SessionTag};
use std::collections::{BTreeMap, BTreeSet};

/// Tracks the operations each replica's current state has applied.
#[derive(Debug, Default)]
pub struct IntegrityChecker {
    applied: BTreeMap<NodeId, BTreeSet<SessionTag>>,
}

impl IntegrityChecker {
    /// A replica restarted: its state machine starts from scratch.
    pub fn reset(&mut self, node: NodeId) {
        self.applied.remove(&node);
    }

    /// A replica's state was restored from a snapshot that had applied
    /// `applied`.
    pub fn reset_to(&mut self, node: NodeId, applied: BTreeSet<SessionTag>) {
        self.applied.insert(node, applied);
    }

    /// Records an application.
    pub fn applied(&mut self, node: NodeId, tag: SessionTag) -> Result<(), String> {
        if self.applied.entry(node).or_default().insert(tag) {
            Ok(())
        } else {
            Err(format!(
                "{node:?} applied operation {}#{} twice",
                tag.client, tag.seq
            ))
        }
    }

    /// The operations `node`'s current state has applied.
    pub fn applied_by(&self, node: NodeId) -> Option<&BTreeSet<SessionTag>> {
        self.applied.get(&node)
    }
}

//! A simulated node: the production `Replica`, its disk, and a small
//! deterministic application standing in for a user's state machine.

use super::disk::Disk;
use crate::checkers::hash_operation;
use rabia_core::protocol::{DeliveryOutcome, Replica};
use rabia_core::smr::{SessionCheck, SessionTable};
use rabia_core::time::Instant;
use rabia_core::{NodeId, SessionTag};

/// Whether a node is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    /// Running.
    Up,
    /// Crashed; will restart (crash-recovery).
    Down,
    /// Crashed for good (crash-stop).
    Stopped,
}

/// The application: a hash chain over applied operations with exactly-once
/// sessions, like the engine's apply layer.
#[derive(Debug, Clone)]
pub struct App {
    sessions: SessionTable,
    /// Digest of everything applied so far.
    pub digest: u64,
}

impl Default for App {
    fn default() -> Self {
        App {
            sessions: SessionTable::new(64, 10_000),
            digest: 0,
        }
    }
}

/// One operation's effect on the application.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The operation's session tag.
    pub tag: SessionTag,
    /// Whether it changed state (false: a duplicate answered from the cache).
    pub fresh: bool,
}

impl App {
    /// Applies a delivered slot; returns the session operations it answered.
    pub fn apply(&mut self, outcome: &DeliveryOutcome) -> Vec<Applied> {
        let mut answered = Vec::new();
        let DeliveryOutcome::Apply(batch) = outcome else {
            return answered;
        };
        for op in &batch.operations {
            match op.session {
                None => self.digest = hash_operation(self.digest, op),
                Some(tag) => match self.sessions.check(tag) {
                    SessionCheck::New => {
                        self.digest = hash_operation(self.digest, op);
                        self.sessions
                            .record(tag, Ok(self.digest.to_le_bytes().to_vec()));
                        answered.push(Applied { tag, fresh: true });
                    }
                    SessionCheck::Duplicate(_) => answered.push(Applied { tag, fresh: false }),
                    SessionCheck::Stale => {}
                },
            }
        }
        answered
    }
}

/// A node of the simulated cluster.
pub struct SimNode {
    /// Identity.
    pub id: NodeId,
    /// The protocol replica while the node is up.
    pub replica: Option<Replica>,
    /// Running, crashed, or stopped for good.
    pub status: NodeStatus,
    /// Starts so far (the replica's incarnation).
    pub incarnation: u64,
    /// The node's disk (survives crashes).
    pub disk: Disk,
    /// The application state (lost on crash, rebuilt from the log).
    pub app: App,
    /// Generation of the scheduled timer event (stale ones are ignored).
    pub timer_generation: u64,
    /// When the scheduled timer event fires.
    pub timer_at: Option<Instant>,
    /// Wall-clock skew of this node, microseconds.
    pub clock_skew_us: i64,
    /// Disk write latency of this node.
    pub disk_latency: std::time::Duration,
}

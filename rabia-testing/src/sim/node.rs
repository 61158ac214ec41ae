//! A simulated node: the production `Replica`, its disk, and a small
//! deterministic application standing in for a user's state machine.

use super::disk::Disk;
use crate::checkers::hash_operation;
use rabia_core::protocol::{DecidedFilter, DeliveryOutcome, Replica};
use rabia_core::smr::{SessionCheck, SessionTable};
use rabia_core::time::Instant;
use rabia_core::{NodeId, SessionTag, Slot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

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
    /// Batches applied (the engine keeps the same filter for snapshots).
    filter: DecidedFilter,
    /// Session operations applied (kept for the integrity and durability
    /// checkers across snapshot restores).
    pub applied: BTreeSet<SessionTag>,
}

impl Default for App {
    fn default() -> Self {
        App {
            sessions: SessionTable::new(64, 10_000),
            digest: 0,
            filter: DecidedFilter::default(),
            applied: BTreeSet::new(),
        }
    }
}

/// The application's snapshot, as the engine's: state, sessions and the
/// decided-batch filter as of `base_slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSnapshot {
    /// The first slot not covered.
    pub base_slot: Slot,
    /// The state (the digest chain).
    pub digest: u64,
    /// Client sessions.
    pub sessions: SessionTable,
    /// Batches applied.
    pub filter: DecidedFilter,
    /// Session operations applied (checker bookkeeping).
    pub applied: BTreeSet<SessionTag>,
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
    /// A snapshot of the state as of `base_slot`.
    pub fn snapshot(&self, base_slot: Slot) -> SimSnapshot {
        SimSnapshot {
            base_slot,
            digest: self.digest,
            sessions: self.sessions.clone(),
            filter: self.filter.clone(),
            applied: self.applied.clone(),
        }
    }

    /// The state a snapshot describes.
    pub fn restore(snapshot: &SimSnapshot) -> App {
        App {
            sessions: snapshot.sessions.clone(),
            digest: snapshot.digest,
            filter: snapshot.filter.clone(),
            applied: snapshot.applied.clone(),
        }
    }

    /// The decided-batch filter of the applied prefix.
    pub fn filter(&self) -> &DecidedFilter {
        &self.filter
    }

    /// Applies a delivered slot; returns the session operations it answered.
    pub fn apply(&mut self, outcome: &DeliveryOutcome) -> Vec<Applied> {
        let mut answered = Vec::new();
        let DeliveryOutcome::Apply(batches) = outcome else {
            return answered;
        };
        for batch in batches {
            self.filter.insert(batch.id);
        }
        for op in batches.iter().flat_map(|b| &b.operations) {
            match op.session {
                None => self.digest = hash_operation(self.digest, op),
                Some(tag) => match self.sessions.check(tag) {
                    SessionCheck::New => {
                        self.digest = hash_operation(self.digest, op);
                        self.sessions
                            .record(tag, Ok(self.digest.to_le_bytes().to_vec()));
                        self.applied.insert(tag);
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
    /// The node lost its store in this run: it starts as a replacement
    /// (`EmptyStore::Rejoin`) from then on.
    pub rejoining: bool,
}

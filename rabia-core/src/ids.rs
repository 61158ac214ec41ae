//! Identifier newtypes: nodes, clients, slots, phases and batches.
//!
//! Every identifier that travels on the wire is a sized integer wrapped in a
//! newtype so that a slot can never be passed where a phase is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of one replica (a node) in the cluster.
///
/// `NodeId::new()` draws a random identity, which is what a deployment wants
/// when it has no natural numbering. Simulations and configuration files use
/// the deterministic [`NodeId::from_u64`] instead, so that one seed replays one
/// run exactly.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(u64);

impl NodeId {
    /// A fresh random node identity (from the operating system's RNG).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        NodeId(high ^ low)
    }

    /// A deterministic node identity, for configuration files and simulations.
    pub const fn from_u64(value: u64) -> Self {
        NodeId(value)
    }

    /// The raw numeric value of this identity.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for NodeId {
    fn from(value: u64) -> Self {
        NodeId(value)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity of a client session (used for exactly-once operations).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct ClientId(pub u64);

impl ClientId {
    /// A fresh random client identity.
    pub fn random() -> Self {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        ClientId(high ^ low)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// An index into the replicated log. Every replica decides slots in the same
/// order; a decided slot holds one batch or the null value ⊥.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Slot(pub u64);

impl Slot {
    /// The first slot of a fresh log.
    pub const ZERO: Slot = Slot(0);

    /// The slot after this one (saturating: slot numbers from peers are
    /// untrusted input).
    pub const fn next(self) -> Slot {
        Slot(self.0.saturating_add(1))
    }

    /// The raw slot number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot {}", self.0)
    }
}

/// A phase of the randomized binary agreement for one slot. Phase 0 is the
/// proposal exchange; phases 1, 2, ... each have a State round and a Vote round.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Phase(pub u32);

impl Phase {
    /// The proposal exchange.
    pub const EXCHANGE: Phase = Phase(0);
    /// The first binary phase.
    pub const FIRST: Phase = Phase(1);

    /// The phase after this one (saturating).
    pub const fn next(self) -> Phase {
        Phase(self.0.saturating_add(1))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "phase {}", self.0)
    }
}

/// The configuration number. Messages whose epoch differs from the
/// receiver's are rejected.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Epoch(pub u64);

/// The globally unique identity of a batch: the replica that created it, that
/// replica's incarnation (bumped on every restart) and a sequence number
/// within the incarnation. Comparable without looking at payload bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BatchId {
    /// The replica that created the batch.
    pub origin: NodeId,
    /// The origin's incarnation when it created the batch.
    pub incarnation: u64,
    /// The batch's sequence number within that incarnation, from 0.
    pub seq: u64,
}

impl fmt::Debug for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}.{}", self.origin.0, self.incarnation, self.seq)
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

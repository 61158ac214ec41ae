//! Correctness checkers, one file per property. The simulator calls them
//! after every event; each returns the first violation it sees.
//!
//! | property | checked when | file |
//! |---|---|---|
//! | agreement: no slot decided two ways | every delivery and every `Decision` message | `agreement.rs` |
//! | validity: a decided batch was submitted, unaltered | every delivery and decision | `validity.rs` |
//! | integrity: no client operation applied twice | every applied operation | `integrity.rs` |
//! | apply order: strict slot order, no gaps | every delivery | `order.rs` |
//! | convergence: equal state digest at equal applied slot | every delivery | `convergence.rs` |
//! | durability: every acknowledged operation survives | end of run | `durability.rs` |
//! | liveness: faults healed → everything decided and converged | end of run | the simulator |

mod agreement;
mod convergence;
mod durability;
mod integrity;
mod order;
mod validity;

pub use agreement::AgreementChecker;
pub use convergence::ConvergenceChecker;
pub use durability::DurabilityChecker;
pub use integrity::IntegrityChecker;
pub use order::ApplyOrderChecker;
pub use validity::ValidityChecker;

use rabia_core::time::Instant;
use rabia_core::{Batch, Operation};
use std::fmt;

/// Which property a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ViolationKind {
    /// Two different values decided for one slot.
    Agreement,
    /// A decided batch that no client submitted, or altered.
    Validity,
    /// A client operation applied twice.
    Integrity,
    /// Deliveries out of slot order or with gaps.
    ApplyOrder,
    /// Different state at the same applied slot.
    Convergence,
    /// An acknowledged operation missing after recovery.
    Durability,
    /// No convergence within the virtual-time budget after healing.
    Liveness,
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ViolationKind::Agreement => "agreement",
            ViolationKind::Validity => "validity",
            ViolationKind::Integrity => "integrity",
            ViolationKind::ApplyOrder => "apply-order",
            ViolationKind::Convergence => "convergence",
            ViolationKind::Durability => "durability",
            ViolationKind::Liveness => "liveness",
        };
        f.write_str(name)
    }
}

/// A broken property, with when and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property.
    pub kind: ViolationKind,
    /// Virtual time of detection.
    pub at: Instant,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violation at t={:.6}s: {}",
            self.kind,
            self.at.as_nanos() as f64 / 1e9,
            self.detail
        )
    }
}

/// A stable 64-bit hash of bytes (FNV-1a followed by a mixer).
pub fn hash_bytes(mut acc: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        acc ^= u64::from(*b);
        acc = acc.wrapping_mul(0x0100_0000_01B3);
    }
    rabia_core::protocol::coin::mix64(acc)
}

/// A stable hash of an operation (payload and session tag).
pub fn hash_operation(acc: u64, op: &Operation) -> u64 {
    let mut h = hash_bytes(acc ^ 0xCBF2_9CE4_8422_2325, &op.data);
    if let Some(tag) = op.session {
        h = rabia_core::protocol::coin::mix64(h ^ tag.client.0);
        h = rabia_core::protocol::coin::mix64(h ^ tag.seq);
    }
    h
}

/// A stable hash of a batch's identity and contents.
pub fn hash_batch(batch: &Batch) -> u64 {
    hash_batch_parts(batch.id, &batch.operations)
}

/// A stable hash of a batch's identity and operations.
pub fn hash_batch_parts(id: rabia_core::BatchId, operations: &[Operation]) -> u64 {
    let mut h = rabia_core::protocol::coin::mix64(id.origin.as_u64());
    h = rabia_core::protocol::coin::mix64(h ^ id.incarnation);
    h = rabia_core::protocol::coin::mix64(h ^ id.seq);
    for op in operations {
        h = hash_operation(h, op);
    }
    h
}

//! The Rabia protocol as a pure, deterministic state machine.
//!
//! ```text
//!            submit(now, wall, ops)      handle_message(now, from, envelope)
//!                      │                   │      handle_persisted(now, token)
//!                      ▼                   ▼      ▼      handle_timeout(now)
//!               ┌──────────────────────────────────────────────┐
//!               │ Replica                                      │
//!               │  pending queue ─► slot instance (exchange,   │
//!               │  State/Vote phases, common coin) ─► decided  │
//!               │  log ─► in-order delivery                    │
//!               └──────────────────────────────────────────────┘
//!                      │ poll_action(): Send, Broadcast, Persist,
//!                      ▼               Deliver, NeedSnapshot
//!                   driver (rabia-engine, or the simulator in rabia-testing)
//! ```
//!
//! No I/O, no clock reads, no global randomness: time is an argument,
//! the common coin is a pure function ([`coin::common_coin`]), and local
//! jitter comes from a seeded `ChaCha8Rng`. The same code runs in
//! production and in the deterministic simulator.

pub mod action;
pub mod coin;
pub mod config;
pub mod filter;
pub mod message;
pub mod metrics;
pub mod pending;
pub mod recovery;
pub mod replica;
pub(crate) mod slot;
pub mod tally;
pub mod wire;

pub use action::{Action, Delivery, DeliveryOutcome, PersistRecord, PersistToken};
pub use config::EmptyStore;
#[cfg(feature = "mutations")]
pub use config::Mutation;
pub use config::ReplicaConfig;
pub use filter::DecidedFilter;
pub use message::{Bit, Envelope, Message, VoteValue};
pub use metrics::{DropCounters, ReplicaMetrics};
pub use recovery::RecoveredState;
pub use replica::Replica;

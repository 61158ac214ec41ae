//! # rabia-core
//!
//! Types, the [`StateMachine`](smr::StateMachine) trait and the Rabia
//! consensus protocol as a pure state machine ([`protocol::Replica`]).
//!
//! * [`smr`]: what users implement — a deterministic state machine applying
//!   [`Operation`]s and producing [`OperationResult`](smr::OperationResult)s.
//! * [`ClusterConfig`]: the membership and the quorum thresholds.
//! * [`protocol`]: the leaderless Rabia protocol, sans I/O: events in,
//!   actions out, time and randomness as inputs.
//!
//! A three-node cluster driven by hand, with instant delivery:
//!
//! ```
//! use rabia_core::protocol::{Action, DeliveryOutcome, RecoveredState, Replica, ReplicaConfig};
//! use rabia_core::{time::Instant, ClusterConfig, NodeId, Operation};
//! use std::collections::VecDeque;
//!
//! let ids: Vec<NodeId> = (1..=3).map(NodeId::from_u64).collect();
//! let mut replicas: Vec<Replica> = ids
//!     .iter()
//!     .map(|id| {
//!         let cluster = ClusterConfig::try_new(*id, ids.clone()).unwrap();
//!         Replica::new(ReplicaConfig::default(), cluster, RecoveredState::fresh(0), Instant::ZERO, 7)
//!             .unwrap()
//!     })
//!     .collect();
//! let now = Instant::ZERO;
//! replicas[0].submit(now, 1, vec![Operation::new(b"hello".to_vec())]).unwrap();
//!
//! // Route actions until quiet: messages to their targets, persistence
//! // completed at once, deliveries recorded.
//! let mut delivered = vec![Vec::new(); 3];
//! let mut inbox: VecDeque<(usize, NodeId, rabia_core::protocol::Envelope)> = VecDeque::new();
//! loop {
//!     for (i, replica) in replicas.iter_mut().enumerate() {
//!         while let Some(action) = replica.poll_action() {
//!             match action {
//!                 Action::Broadcast { envelope } => {
//!                     for j in (0..3).filter(|j| *j != i) {
//!                         inbox.push_back((j, ids[i], envelope.clone()));
//!                     }
//!                 }
//!                 Action::Send { to, envelope } => {
//!                     let j = ids.iter().position(|id| *id == to).unwrap();
//!                     inbox.push_back((j, ids[i], envelope));
//!                 }
//!                 Action::Persist { token, .. } => replica.handle_persisted(now, token),
//!                 Action::Deliver(d) => delivered[i].push(d),
//!                 // Snapshot transfer only happens to replicas far behind.
//!                 _ => unreachable!(),
//!             }
//!         }
//!     }
//!     let Some((to, from, envelope)) = inbox.pop_front() else { break };
//!     replicas[to].handle_message(now, from, envelope);
//! }
//! for deliveries in &delivered {
//!     assert_eq!(deliveries.len(), 1);
//!     assert!(matches!(&deliveries[0].outcome, DeliveryOutcome::Apply(b) if b[0].operations[0].data == b"hello"));
//! }
//! ```

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cluster;
pub mod error;
pub mod ids;
pub mod operation;
pub mod protocol;
pub mod session;
pub mod smr;
pub mod time;

pub use cluster::{ClusterConfig, Thresholds};
pub use error::{ConfigError, DecodeError, SubmitError};
pub use ids::{BatchId, ClientId, Epoch, NodeId, Phase, Slot};
pub use operation::{Batch, BatchList, Operation, OrderingKey, SessionTag, SlotValue, ValueId};

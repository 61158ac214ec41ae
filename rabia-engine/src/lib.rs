//! # rabia-engine
//!
//! The tokio driver of the Rabia protocol. A user writes a deterministic
//! [`StateMachine`](rabia_core::smr::StateMachine), spawns one
//! [`RabiaEngine`] per node, and submits operations through an
//! [`EngineHandle`]; each submission resolves once its batch is decided and
//! applied on that node, with the state machine's result.
//!
//! ```text
//!  EngineHandle::submit ─► bounded queue ─┐
//!  operation_tx (guide) ─────────────────┤
//!                                        ▼
//!   engine loop (one task owns the Replica; biased select!)
//!     shutdown │ durable token │ inbound message │ submissions │ timer
//!        each arm: one replica.handle_*(now, ..), then drain actions:
//!          Send/Broadcast ─► Transport (never blocks)
//!          Persist        ─► persistence task (group commit) ─► durable token
//!          Deliver        ─► apply task: StateMachine, sessions, replies, snapshots
//! ```
//!
//! Every internal queue is bounded; a full engine refuses `try_submit` with
//! [`SubmitError::Overloaded`], handing the operation back. A storage failure
//! stops the engine with [`EngineError::Persistence`] rather than let it keep
//! voting without its data.
//!
//! A one-node cluster needs no transport:
//!
//! ```
//! use async_trait::async_trait;
//! use rabia_core::smr::{Operation, OperationResult, StateMachine};
//! use rabia_core::{ClusterConfig, NodeId};
//! use rabia_engine::{RabiaConfig, RabiaEngine};
//! use rabia_persistence::InMemoryPersistence;
//!
//! struct Sum(u64);
//!
//! #[async_trait]
//! impl StateMachine for Sum {
//!     async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
//!         self.0 += op.data.len() as u64;
//!         Ok(self.0.to_le_bytes().to_vec())
//!     }
//!     async fn snapshot(&self) -> OperationResult { Ok(self.0.to_le_bytes().to_vec()) }
//!     async fn restore_from_snapshot(&mut self, data: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!         self.0 = u64::from_le_bytes(data.try_into()?);
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let me = NodeId::from_u64(1);
//! let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
//! let engine = RabiaEngine::new(
//!     me,
//!     RabiaConfig::default(),
//!     ClusterConfig::new(me, [me].into_iter().collect()),
//!     Sum(0),
//!     InMemoryPersistence::new(),
//!     rx,
//! );
//! let handle = engine.handle();
//! let running = tokio::spawn(engine.run());
//! let reply = handle.submit(Operation::new(vec![0; 5])).await.unwrap();
//! assert_eq!(reply, 5u64.to_le_bytes());
//! handle.shutdown();
//! running.await.unwrap().unwrap();
//! # });
//! ```

mod apply;
mod batcher;
mod config;
mod driver;
mod engine;
mod error;
mod handle;
mod persist;
mod refill;
mod status;

pub use config::RabiaConfig;
pub use engine::{system_wall_clock, RabiaEngine, WallClock};
pub use error::{EngineError, SubmitError};
pub use handle::{EngineHandle, LocalReader, PendingReply, Session};
pub use rabia_core::protocol::EmptyStore;
pub use status::{EngineStatus, Histogram, LatencySummary, PeerStatus};

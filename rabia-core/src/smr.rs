//! The state-machine side of state-machine replication: the
//! [`StateMachine`] trait users implement, and the [`Operation`] it applies.
//!
//! A state machine must be **deterministic**: the same operations applied in
//! the same order to the same state produce the same state and the same
//! results on every replica. It must not read clocks, random numbers or
//! anything else outside its state and the operation.
//!
//! ```
//! use async_trait::async_trait;
//! use rabia_core::smr::{Operation, OperationResult, StateMachine};
//!
//! struct Echo;
//!
//! #[async_trait]
//! impl StateMachine for Echo {
//!     async fn apply_operation(&mut self, op: &Operation) -> OperationResult {
//!         if op.data.is_empty() {
//!             return Err("empty operation".into()); // errors go back to the client
//!         }
//!         Ok(op.data.clone())
//!     }
//!     async fn snapshot(&self) -> OperationResult {
//!         Ok(Vec::new())
//!     }
//!     async fn restore_from_snapshot(
//!         &mut self,
//!         _data: &[u8],
//!     ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!         Ok(())
//!     }
//! }
//! # tokio_test_block_on(async {
//! let mut sm = Echo;
//! assert_eq!(sm.apply_operation(&Operation::new(b"hi".to_vec())).await.unwrap(), b"hi");
//! assert!(sm.apply_operation(&Operation::new(vec![])).await.is_err());
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use async_trait::async_trait;

pub use crate::operation::{Operation, SessionTag};
pub use crate::session::{SessionCheck, SessionTable};

/// The error side of [`OperationResult`]: any error that can cross threads.
///
/// `?` converts into it from a `String` (e.g. `format!(..)`), a `&str`, and
/// any `std::error::Error + Send + Sync` such as `bincode::Error`.
pub type OperationError = Box<dyn std::error::Error + Send + Sync>;

/// The outcome of applying an operation (or of taking a snapshot): the
/// serialized result bytes, or an error that is returned to the client.
///
/// An error is a *result*, not a failure of the replica: it is deterministic,
/// every replica computes the same one, and the cluster keeps serving.
pub type OperationResult = Result<Vec<u8>, OperationError>;

/// A deterministic state machine replicated by Rabia.
///
/// Every replica applies the same operations in the same order. The engine
/// calls [`StateMachine::snapshot`] at slot boundaries and
/// [`StateMachine::restore_from_snapshot`] when a replica restarts or catches
/// up from a peer's snapshot.
#[async_trait]
pub trait StateMachine: Send + Sync {
    /// Apply an operation deterministically.
    async fn apply_operation(&mut self, operation: &Operation) -> OperationResult;

    /// Create a snapshot of current state.
    async fn snapshot(&self) -> OperationResult;

    /// Restore state from a snapshot.
    async fn restore_from_snapshot(
        &mut self,
        data: &[u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

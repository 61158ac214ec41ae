//! Conformance suites: the contract every implementation of a trait must
//! meet, runnable against your own backend.
//!
//! ```no_run
//! # async fn example() {
//! use rabia_persistence::InMemoryPersistence;
//! let store = InMemoryPersistence::new();
//! // `open` must return a handle to the *same* storage each time it is called
//! // (as reopening a data directory does), after the previous one is dropped.
//! rabia_testing::conformance::persistence::run_all(|| store.clone()).await;
//! # }
//! ```

pub mod persistence;
pub mod transport;

//! # rabia-testing
//!
//! Tools that prove a Rabia cluster correct:
//!
//! * [`sim`]: a deterministic simulator that runs N production
//!   [`Replica`](rabia_core::protocol::Replica)s on virtual time from one
//!   seed, with network, disk and crash faults, and checks every safety
//!   property after every event and liveness after healing.
//! * [`checkers`]: the properties, one per module, usable on any history.
//! * [`linearizability`]: a linearizability checker for concurrent
//!   key-value histories (reads, writes, compare-and-set).
//! * [`conformance`]: contract suites that any `Persistence` backend or
//!   `Transport` must pass (run them against your own).
//! * [`fault`]: fault injection over **real engines** running your state
//!   machine: [`NetworkSimulator`], [`FaultType`] and [`TestCluster`].
//!
//! ```
//! use rabia_testing::sim::{run, SimConfig};
//!
//! let report = run(SimConfig::new(42, 3));
//! assert!(report.passed(), "{:?}", report.violation);
//! // The same seed replays the same run.
//! assert_eq!(run(SimConfig::new(42, 3)).trace_hash, report.trace_hash);
//! ```

pub mod checkers;
pub mod conformance;
pub mod fault;
pub mod linearizability;
pub mod sim;

pub use fault::{FaultType, NetworkSimulator, TestCluster};

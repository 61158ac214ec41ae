//! Fault injection over **real engines**, for testing your own state
//! machine: a [`NetworkSimulator`] that sits between the engines'
//! transports and applies a seeded fault model ([`FaultType`]), and a
//! [`TestCluster`] that runs n engines on it and can crash and restart them.
//!
//! Everything runs on tokio time, so under
//! `#[tokio::test(start_paused = true)]` a 10-second crash costs no real
//! time. The fault decisions come from the simulator's seed (printed by
//! [`NetworkSimulator::new`]; replay with `RABIA_SEED=<seed>`).
//!
//! For the protocol core itself, the deterministic simulator in
//! [`crate::sim`] goes further: it also owns scheduling, so a whole run
//! replays bit for bit.

mod cluster;
mod fault_type;
mod network;

pub use cluster::{ClusterError, TestCluster};
pub use fault_type::FaultType;
pub use network::{NetworkSimulator, NetworkStats, NodeControl, SimTransport};

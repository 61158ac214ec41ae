//! # rabia-engine
//!
//! The tokio driver of the Rabia protocol: RabiaEngine and RabiaConfig.
//!
//! This crate is part of the fixed workspace layout. Its implementation lands
//! with its own issue (see `docs/roadmap.md` in the repository); today it only
//! re-exports the
//! core types it will build on.

pub use rabia_core;

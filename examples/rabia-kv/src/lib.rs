//! # rabia-kv
//!
//! A replicated key-value server on the Rabia framework that speaks the
//! Redis protocol (RESP2), one process per node. Any Redis client,
//! `redis-cli` and `redis-benchmark` work against it.
//!
//! * [`store::KvStore`] is the replicated `StateMachine`; every command is a
//!   [`store::Command`] in the log and its reply is RESP bytes, identical on
//!   every replica.
//! * [`node::run`] runs a node: file or in-memory storage, the TCP
//!   transport between nodes, the engine, the RESP listener and the
//!   `/metrics` + `/health` endpoint.
//! * [`cluster::run`] is `rabia-kv local-cluster`.
//! * [`chaos::run`] is `rabia-chaos`: a real cluster under SIGKILL,
//!   SIGSTOP and partitions, with a linearizability check of what clients
//!   saw.
//!
//! Every reply is sent after the command is decided and applied, reads
//! included (linearizable); `read_mode = "local"` opts into relaxed local
//! reads. Each client connection is an exactly-once session.
//!
//! ```
//! use rabia_kv::store::{Command, KvOp, KvStore};
//! use rabia_kv::resp::Value;
//! let mut store = KvStore::new();
//! let set = Command { now_ms: 0, op: KvOp::IncrBy(b"hits".to_vec(), 2) };
//! assert_eq!(store.apply(set), Value::Integer(2));
//! ```

pub mod chaos;
pub mod client;
pub mod cluster;
pub mod command;
pub mod config;
pub mod connection;
pub mod info;
pub mod metrics;
pub mod node;
pub mod resp;
pub mod status;
pub mod store;

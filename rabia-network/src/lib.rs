//! # rabia-network
//!
//! How replicas exchange protocol messages, behind the [`Transport`] trait.
//!
//! * [`InMemoryNetwork`]: every node of a cluster in one process, with
//!   bounded per-node inboxes and a link filter that tests and the fault
//!   injector use to drop messages or cut links.
//! * [`TcpTransport`]: one process per node over TCP, with a versioned
//!   handshake, one connection per peer pair, reconnects with backoff and
//!   bounded per-peer outboxes.
//!
//! A transport is best effort: a full inbox drops the message (counted), and
//! the protocol's retransmission recovers. It never blocks the engine loop.
//!
//! ```
//! use rabia_core::protocol::{Envelope, Message};
//! use rabia_core::{Epoch, NodeId, Slot};
//! use rabia_network::{InMemoryNetwork, Transport};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let net = InMemoryNetwork::new(1024);
//! let (a, b) = (NodeId::from_u64(1), NodeId::from_u64(2));
//! let ta = net.endpoint(a);
//! let mut tb = net.endpoint(b);
//! let hello = Envelope { sender: a, epoch: Epoch(0), message: Message::Heartbeat { next_slot: Slot(0), learner: false, probe: 0 } };
//! ta.send(b, hello.clone());
//! assert_eq!(tb.recv().await, Some((a, hello)));
//! # });
//! ```

mod error;
mod memory;
mod tcp;
mod transport;

pub use error::TransportError;
pub use memory::{InMemoryNetwork, InMemoryTransport, LinkDecision, LinkFilter};
pub use tcp::{TcpConfig, TcpTransport};
pub use transport::{Transport, TransportStats};

//! The transport's counters, shared by its tasks.

use crate::transport::TransportStats;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dropped_unreachable: AtomicU64,
    pub(crate) frames_rejected: AtomicU64,
    pub(crate) handshakes_rejected: AtomicU64,
    pub(crate) connections_established: AtomicU64,
    pub(crate) peers_connected: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            sent: get(&self.sent),
            received: get(&self.received),
            dropped_full: get(&self.dropped_full),
            dropped_unreachable: get(&self.dropped_unreachable),
            frames_rejected: get(&self.frames_rejected),
            handshakes_rejected: get(&self.handshakes_rejected),
            connections_established: get(&self.connections_established),
            peers_connected: get(&self.peers_connected),
        }
    }
}

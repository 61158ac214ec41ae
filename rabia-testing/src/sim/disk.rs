//! The simulated disk: writes become durable in order after a latency; a
//! crash loses exactly the writes not yet reported durable.

use super::node::SimSnapshot;
use rabia_core::protocol::PersistRecord;
use rabia_core::time::Instant;
use std::collections::VecDeque;
use std::time::Duration;

/// One node's disk.
#[derive(Debug, Default, Clone)]
pub struct Disk {
    durable: Vec<PersistRecord>,
    pending: VecDeque<(u64, PersistRecord)>,
    last_completion: Instant,
    snapshot: Option<SimSnapshot>,
    pending_snapshot: Option<SimSnapshot>,
}

impl Disk {
    /// Queues a write; returns when it completes (never before an earlier
    /// write: completions are in order, like an fsync'd append-only log).
    pub fn write(
        &mut self,
        now: Instant,
        latency: Duration,
        token: u64,
        record: PersistRecord,
    ) -> Instant {
        self.pending.push_back((token, record));
        let done = (now + latency).max(self.last_completion);
        self.last_completion = done;
        done
    }

    /// Makes every pending write up to `token` durable. Returns false if the
    /// token is not pending (already completed, or lost in a crash).
    pub fn complete(&mut self, token: u64) -> bool {
        let mut any = false;
        while let Some((t, _)) = self.pending.front() {
            if *t > token {
                break;
            }
            if let Some((_, record)) = self.pending.pop_front() {
                self.durable.push(record);
                any = true;
            }
        }
        any
    }

    /// A crash: pending writes (records and a snapshot being written) are
    /// lost. Returns how many.
    pub fn crash(&mut self) -> usize {
        let lost = self.pending.len() + usize::from(self.pending_snapshot.is_some());
        self.pending.clear();
        self.pending_snapshot = None;
        lost
    }

    /// Starts writing a snapshot (durable at [`Disk::complete_snapshot`]).
    pub fn write_snapshot(&mut self, snapshot: SimSnapshot) {
        self.pending_snapshot = Some(snapshot);
    }

    /// The snapshot being written is durable: it replaces an older one and
    /// the records behind it are dropped. Returns false if none was pending.
    pub fn complete_snapshot(&mut self) -> bool {
        let Some(snapshot) = self.pending_snapshot.take() else {
            return false;
        };
        let newer = self
            .snapshot
            .as_ref()
            .is_none_or(|old| old.base_slot < snapshot.base_slot);
        if newer {
            let base = snapshot.base_slot;
            self.durable.retain(|r| r.slot() >= base);
            self.snapshot = Some(snapshot);
        }
        true
    }

    /// The durable snapshot.
    pub fn snapshot(&self) -> Option<&SimSnapshot> {
        self.snapshot.as_ref()
    }

    /// Everything durable, in write order.
    pub fn durable(&self) -> &[PersistRecord] {
        &self.durable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rabia_core::{Slot, SlotValue};

    fn rec(slot: u64) -> PersistRecord {
        PersistRecord::Decided {
            slot: Slot(slot),
            value: SlotValue::Null,
        }
    }

    #[test]
    fn crash_loses_exactly_the_unsynced_suffix() {
        let mut disk = Disk::default();
        let ms = Duration::from_millis(1);
        disk.write(Instant(0), ms, 1, rec(0));
        disk.write(Instant(0), ms, 2, rec(1));
        disk.write(Instant(0), ms, 3, rec(2));
        assert!(disk.complete(2));
        assert_eq!(disk.crash(), 1);
        assert_eq!(disk.durable(), &[rec(0), rec(1)]);
        assert!(!disk.complete(3));
    }

    #[test]
    fn completions_never_overtake() {
        let mut disk = Disk::default();
        let a = disk.write(Instant(0), Duration::from_millis(5), 1, rec(0));
        let b = disk.write(Instant(1), Duration::from_millis(1), 2, rec(1));
        assert!(b >= a);
    }
}

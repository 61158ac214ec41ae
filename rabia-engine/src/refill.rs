//! The refill wait (sans-I/O): after a decision, a replica that answered
//! its clients waits a little for their next operations before it opens
//! (or contributes to) the next slot, so that one slot carries them all.
//!
//! Closed-loop clients answered by the same decision come back within a
//! client round trip. Opening at once would send only the first few, and
//! the rest would wait a whole slot for the following one: the clients
//! split into groups taking turns, each slot carrying part of them. The
//! wait ends as soon as as many operations are gathered as clients were
//! answered, and lasts at most `cap` and half the time the previous slot
//! took (so it costs little where slots are fast).

use std::time::Duration;
use tokio::time::Instant;

/// One replica's refill wait.
#[derive(Debug)]
pub(crate) struct RefillWait {
    cap: Duration,
    /// `answered` when the replica last opened (clients answered before).
    answered_seen: u64,
    until: Option<Instant>,
}

impl RefillWait {
    pub(crate) fn new(cap: Duration) -> Self {
        RefillWait {
            cap,
            answered_seen: 0,
            until: None,
        }
    }

    /// Whether the wait is over: `answered` counts the clients answered so
    /// far (since start), `gathered` the operations waiting to be batched,
    /// `full` whether they fill a batch, `last_slot_time` how long the
    /// previous slot took. The first call after an opening starts the
    /// clock.
    pub(crate) fn over(
        &mut self,
        now: Instant,
        answered: u64,
        gathered: usize,
        full: bool,
        last_slot_time: Option<Duration>,
    ) -> bool {
        let expected = answered.saturating_sub(self.answered_seen);
        if self.cap.is_zero() || full || gathered as u64 >= expected {
            return true;
        }
        let half_slot = last_slot_time.map_or(Duration::ZERO, |t| t / 2);
        let until = *self
            .until
            .get_or_insert_with(|| now + self.cap.min(half_slot));
        now >= until
    }

    /// The replica opens (is released): clients answered until now are
    /// accounted for.
    pub(crate) fn opened(&mut self, answered: u64) {
        self.answered_seen = answered;
        self.until = None;
    }

    /// When the current wait ends, if one is running.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.until
    }

    /// Whether operations should be kept back for the refill (not handed to
    /// the replica one by one) while the opening is held.
    pub(crate) fn enabled(&self) -> bool {
        !self.cap.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn over_once_every_answered_client_is_back() {
        let t0 = Instant::now();
        let mut w = RefillWait::new(MS);
        // 3 answered, 1 back: wait; 3 back: over.
        assert!(!w.over(t0, 3, 1, false, Some(4 * MS)));
        assert!(w.over(t0, 3, 3, false, Some(4 * MS)));
        w.opened(3);
        // Nothing answered since: nothing to wait for.
        assert!(w.over(t0, 3, 0, false, Some(4 * MS)));
        assert!(w.over(t0, 3, 1, false, Some(4 * MS)));
    }

    #[test]
    fn bounded_by_the_cap_and_by_half_the_last_slot() {
        let t0 = Instant::now();
        let mut w = RefillWait::new(MS);
        assert!(!w.over(t0, 10, 2, false, Some(10 * MS)));
        assert_eq!(w.deadline(), Some(t0 + MS), "the cap");
        assert!(!w.over(t0 + MS / 2, 10, 2, false, Some(10 * MS)));
        assert!(w.over(t0 + MS, 10, 2, false, Some(10 * MS)));
        w.opened(10);
        assert!(!w.over(t0, 20, 2, false, Some(MS / 2)));
        assert_eq!(w.deadline(), Some(t0 + MS / 4), "half the last slot");
        w.opened(20);
        // No slot measured yet: no wait.
        let mut fresh = RefillWait::new(MS);
        assert!(fresh.over(t0, 5, 0, false, None));
    }

    #[test]
    fn a_full_batch_or_a_zero_cap_ends_it() {
        let t0 = Instant::now();
        let mut w = RefillWait::new(MS);
        assert!(w.over(t0, 10, 2, true, Some(10 * MS)));
        let mut off = RefillWait::new(Duration::ZERO);
        assert!(!off.enabled());
        assert!(off.over(t0, 10, 2, false, Some(10 * MS)));
    }
}

//! The adaptive batching policy (sans-I/O): propose at once when none of
//! this replica's batches is waiting to be decided; while one is, accumulate
//! up to `max_batch_size` operations, `max_batch_bytes` bytes or
//! `batch_timeout`, so each slot carries everything gathered meanwhile.

use crate::handle::Waiter;
use rabia_core::Operation;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Batcher {
    operations: Vec<Operation>,
    waiters: Vec<Option<Waiter>>,
    bytes: usize,
    first_at: Option<Instant>,
    max_operations: usize,
    max_bytes: usize,
    timeout: Duration,
}

impl Batcher {
    pub(crate) fn new(max_operations: usize, max_bytes: usize, timeout: Duration) -> Self {
        Batcher {
            operations: Vec::new(),
            waiters: Vec::new(),
            bytes: 0,
            first_at: None,
            max_operations,
            max_bytes,
            timeout,
        }
    }

    /// Whether `operation` alone fits in a batch.
    pub(crate) fn fits_alone(&self, operation: &Operation) -> bool {
        operation.encoded_len() <= self.max_bytes
    }

    /// Whether adding `operation` would overflow the current batch.
    pub(crate) fn would_overflow(&self, operation: &Operation) -> bool {
        !self.operations.is_empty()
            && (self.operations.len() >= self.max_operations
                || self.bytes + operation.encoded_len() > self.max_bytes)
    }

    /// Adds an operation; `now` is read only for the first of a batch (a
    /// clock read per operation is measurable at these rates).
    pub(crate) fn push(
        &mut self,
        now: impl FnOnce() -> Instant,
        operation: Operation,
        waiter: Option<Waiter>,
    ) {
        self.bytes += operation.encoded_len();
        self.operations.push(operation);
        self.waiters.push(waiter);
        self.first_at.get_or_insert_with(now);
    }

    pub(crate) fn len(&self) -> usize {
        self.operations.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.operations.len() >= self.max_operations || self.bytes >= self.max_bytes
    }

    /// When the current batch must be flushed even though an own batch awaits a decision.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.first_at.map(|t| t + self.timeout)
    }

    pub(crate) fn should_flush(&self, now: Instant, own_batch_waiting: bool) -> bool {
        if self.is_empty() {
            return false;
        }
        !own_batch_waiting || self.is_full() || self.deadline().is_some_and(|d| now >= d)
    }

    /// Takes the batch gathered so far. The next one starts with room for
    /// a little more than this one held: growing a vector op by op costs a
    /// reallocation per doubling, and under load (where batches are about
    /// the same size from one to the next) those reallocations were a
    /// measurable share of the driver's time, contending for the
    /// allocator's lock with the threads that free the operations.
    pub(crate) fn take(&mut self) -> (Vec<Operation>, Vec<Option<Waiter>>) {
        self.bytes = 0;
        self.first_at = None;
        let held = self.operations.len();
        let room = (held + held / 4 + 1).min(self.max_operations);
        (
            std::mem::replace(&mut self.operations, Vec::with_capacity(room)),
            std::mem::replace(&mut self.waiters, Vec::with_capacity(room)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: usize) -> Operation {
        Operation::new(vec![0; n])
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_at_once_when_idle_and_batches_while_busy() {
        let mut b = Batcher::new(3, 1 << 20, Duration::from_millis(5));
        let t0 = Instant::now();
        assert!(!b.should_flush(t0, false), "empty never flushes");
        b.push(|| t0, op(1), None);
        assert!(b.should_flush(t0, false), "idle: propose at once");
        assert!(!b.should_flush(t0, true), "busy: accumulate");
        b.push(|| t0, op(1), None);
        b.push(|| t0, op(1), None);
        assert!(b.should_flush(t0, true), "full");
        let (ops, waiters) = b.take();
        assert_eq!((ops.len(), waiters.len()), (3, 3));
        b.push(|| t0, op(1), None);
        assert!(
            b.should_flush(t0 + Duration::from_millis(5), true),
            "timeout"
        );
    }

    #[test]
    fn the_next_batch_starts_with_room_for_the_last_ones_size() {
        let mut b = Batcher::new(100, 1 << 20, Duration::from_millis(1));
        let t0 = Instant::now();
        for _ in 0..40 {
            b.push(|| t0, op(1), None);
        }
        let (ops, _) = b.take();
        assert_eq!(ops.len(), 40);
        assert!(b.operations.capacity() >= 40 && b.waiters.capacity() >= 40);
        // Bounded by the batch size limit.
        for _ in 0..100 {
            b.push(|| t0, op(1), None);
        }
        b.take();
        assert!((100..125).contains(&b.operations.capacity()));
    }

    #[test]
    fn byte_limit() {
        let b = Batcher::new(100, 100, Duration::from_millis(1));
        assert!(b.fits_alone(&op(10)));
        assert!(!b.fits_alone(&op(200)));
    }
}

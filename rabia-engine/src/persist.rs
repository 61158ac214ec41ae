//! The persistence task: group commit. It takes every record queued since
//! its last write, appends them with one call (one sync for a durable
//! backend), and publishes the highest durable token on a `watch` channel,
//! which never blocks, so the engine loop and this task cannot deadlock.
//! A group of records nothing waits on yet (`Decided`) waits up to
//! [`NON_URGENT_WAIT`] for an urgent record to share its sync.

use rabia_core::protocol::PersistRecord;
use rabia_core::Slot;
use rabia_persistence::{Persistence, PersistenceError, Snapshot};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Work for the persistence task, in order.
pub(crate) enum PersistCommand {
    /// A protocol record with its completion token.
    Record { token: u64, record: PersistRecord },
    /// A snapshot to store (then truncate the log behind it).
    Snapshot(Box<Snapshot>),
}

/// Most records written by one group commit.
const GROUP_MAX: usize = 8192;

/// How long a group made only of records nothing waits on
/// ([`PersistRecord::is_urgent`]: `Decided`; the replica never gates a
/// message or a delivery on one) waits for company before it is written.
/// Under load the next slot's Proposal follows within a slot's time, and
/// one sync then covers both instead of the `Decided` record taking a sync
/// of its own, which the Proposal's would queue behind (and which, on a
/// single-threaded runtime, blocks the node meanwhile). Idle, the last
/// `Decided` records become durable this long after the last decision; a
/// crash before that only makes the replica learn those slots again.
const NON_URGENT_WAIT: Duration = Duration::from_millis(50);

fn is_urgent(command: &PersistCommand) -> bool {
    match command {
        PersistCommand::Record { record, .. } => record.is_urgent(),
        PersistCommand::Snapshot(_) => true,
    }
}

/// Moves every command already queued into `group` (up to [`GROUP_MAX`]).
fn drain_queued(commands: &mut mpsc::Receiver<PersistCommand>, group: &mut Vec<PersistCommand>) {
    while group.len() < GROUP_MAX {
        match commands.try_recv() {
            Ok(command) => group.push(command),
            Err(_) => break,
        }
    }
}

pub(crate) async fn run(
    mut storage: Box<dyn Persistence>,
    mut commands: mpsc::Receiver<PersistCommand>,
    durable: watch::Sender<u64>,
    snapshot_durable: watch::Sender<Option<Slot>>,
) -> Result<(), PersistenceError> {
    let mut records: Vec<PersistRecord> = Vec::new();
    let mut group: Vec<PersistCommand> = Vec::new();
    while let Some(first) = commands.recv().await {
        group.push(first);
        drain_queued(&mut commands, &mut group);
        while group.len() < GROUP_MAX && !group.iter().any(is_urgent) {
            match tokio::time::timeout(NON_URGENT_WAIT, commands.recv()).await {
                Ok(Some(command)) => {
                    group.push(command);
                    drain_queued(&mut commands, &mut group);
                }
                // Closed (write what we have, then stop) or waited long
                // enough: write now.
                Ok(None) | Err(_) => break,
            }
        }
        let mut highest = None;
        for command in group.drain(..) {
            match command {
                PersistCommand::Record { token, record } => {
                    records.push(record);
                    highest = Some(token);
                }
                PersistCommand::Snapshot(snapshot) => {
                    if !records.is_empty() {
                        storage.append(&records).await?;
                        records.clear();
                    }
                    storage.save_snapshot(&snapshot).await?;
                    storage.truncate_before(snapshot.base_slot).await?;
                    snapshot_durable.send_replace(Some(snapshot.base_slot));
                }
            }
        }
        if !records.is_empty() {
            storage.append(&records).await?;
            records.clear();
        }
        if let Some(token) = highest {
            durable.send_replace(token);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use rabia_core::protocol::{Bit, Message};
    use rabia_core::{Phase, SlotValue};
    use rabia_persistence::Recovered;
    use std::sync::{Arc, Mutex};

    /// Storage that remembers how many records each `append` carried.
    #[derive(Clone, Default)]
    struct CountingStore {
        appends: Arc<Mutex<Vec<usize>>>,
    }

    #[async_trait]
    impl Persistence for CountingStore {
        async fn recover(&mut self) -> Result<Recovered, PersistenceError> {
            Ok(Recovered::default())
        }
        async fn append(&mut self, records: &[PersistRecord]) -> Result<(), PersistenceError> {
            self.appends.lock().unwrap().push(records.len());
            Ok(())
        }
        async fn save_snapshot(&mut self, _: &Snapshot) -> Result<(), PersistenceError> {
            Ok(())
        }
        async fn truncate_before(&mut self, _: Slot) -> Result<(), PersistenceError> {
            Ok(())
        }
    }

    fn decided(slot: u64) -> PersistRecord {
        PersistRecord::Decided {
            slot: Slot(slot),
            value: SlotValue::Null,
        }
    }

    fn state(slot: u64) -> PersistRecord {
        PersistRecord::Sent {
            slot: Slot(slot),
            message: Message::State {
                slot: Slot(slot),
                phase: Phase(1),
                bit: Bit::Zero,
                candidate: None,
            },
        }
    }

    type Task = (
        CountingStore,
        mpsc::Sender<PersistCommand>,
        watch::Receiver<u64>,
        tokio::task::JoinHandle<Result<(), PersistenceError>>,
    );

    async fn send(tx: &mpsc::Sender<PersistCommand>, token: u64, record: PersistRecord) {
        tx.send(PersistCommand::Record { token, record })
            .await
            .unwrap();
    }

    /// Closes the channel and checks that the task ends cleanly.
    async fn finish(
        tx: mpsc::Sender<PersistCommand>,
        task: tokio::task::JoinHandle<Result<(), PersistenceError>>,
    ) {
        drop(tx);
        task.await.unwrap().unwrap();
    }

    fn start() -> Task {
        let store = CountingStore::default();
        let (tx, rx) = mpsc::channel(16);
        let (durable_tx, durable_rx) = watch::channel(0);
        let (snap_tx, _snap_rx) = watch::channel(None);
        let task = tokio::spawn(run(Box::new(store.clone()), rx, durable_tx, snap_tx));
        (store, tx, durable_rx, task)
    }

    /// A `Decided` record followed shortly by a record something waits on
    /// is written with it, in one append (one sync).
    #[tokio::test(start_paused = true)]
    async fn a_decided_record_shares_the_next_urgent_records_sync() {
        let (store, tx, mut durable, task) = start();
        send(&tx, 1, decided(0)).await;
        // A quarter of the wait later (the paused clock moves only here).
        tokio::time::advance(NON_URGENT_WAIT / 4).await;
        tokio::task::yield_now().await;
        assert!(store.appends.lock().unwrap().is_empty(), "held back");
        send(&tx, 2, state(1)).await;
        durable.wait_for(|t| *t == 2).await.unwrap();
        assert_eq!(*store.appends.lock().unwrap(), vec![2]);
        finish(tx, task).await;
    }

    /// A `Decided` record with nothing after it is written within
    /// `NON_URGENT_WAIT`, and reported durable only then.
    #[tokio::test(start_paused = true)]
    async fn a_lone_decided_record_is_written_after_the_wait() {
        let (store, tx, mut durable, task) = start();
        let sent_at = tokio::time::Instant::now();
        send(&tx, 1, decided(0)).await;
        durable.wait_for(|t| *t == 1).await.unwrap();
        let waited = sent_at.elapsed();
        assert!(
            waited >= NON_URGENT_WAIT && waited < 2 * NON_URGENT_WAIT,
            "{waited:?}"
        );
        assert_eq!(*store.appends.lock().unwrap(), vec![1]);
        finish(tx, task).await;
    }

    /// An urgent record is written at once, alone.
    #[tokio::test(start_paused = true)]
    async fn an_urgent_record_is_written_at_once() {
        let (store, tx, mut durable, task) = start();
        let sent_at = tokio::time::Instant::now();
        send(&tx, 1, state(0)).await;
        durable.wait_for(|t| *t == 1).await.unwrap();
        assert_eq!(sent_at.elapsed(), Duration::ZERO);
        assert_eq!(*store.appends.lock().unwrap(), vec![1]);
        finish(tx, task).await;
    }
}

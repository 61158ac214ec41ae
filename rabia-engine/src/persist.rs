//! The persistence task: group commit. It takes every record queued since
//! its last write, appends them with one call (one sync for a durable
//! backend), and publishes the highest durable token on a `watch` channel,
//! which never blocks, so the engine loop and this task cannot deadlock.

use rabia_core::protocol::PersistRecord;
use rabia_core::Slot;
use rabia_persistence::{Persistence, PersistenceError, Snapshot};
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
        while group.len() < GROUP_MAX {
            match commands.try_recv() {
                Ok(command) => group.push(command),
                Err(_) => break,
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

//! Records written by builds before multi-batch slot values (WAL format
//! versions 1 and 2), decoded into today's [`PersistRecord`].
//!
//! Those builds proposed and decided one batch per slot, and named the
//! majority value by that batch's id. A one-batch value is exactly a
//! [`BatchList`] of that batch, so every old record has one faithful new
//! form: nothing is lost by reading an old log.
//!
//! The enums below mirror the old encodings variant for variant, up to the
//! last variant a record could hold (bincode encodes the variant index).

use rabia_core::protocol::{Bit, Message, PersistRecord, VoteValue};
use rabia_core::{Batch, BatchId, BatchList, Phase, Slot, SlotValue, ValueId};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
enum LegacyRecord {
    Sent { slot: Slot, message: LegacyMessage },
    Decided { slot: Slot, value: LegacyValue },
    Learner { participate_from: Option<Slot> },
}

/// The old message enum up to `Vote`, the last kind a `Sent` record holds.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
enum LegacyMessage {
    Forward {
        #[allow(dead_code)]
        batch: Arc<Batch>,
    },
    Proposal {
        slot: Slot,
        batch: Arc<Batch>,
    },
    State {
        slot: Slot,
        phase: Phase,
        bit: Bit,
        candidate: Option<BatchId>,
    },
    Vote {
        slot: Slot,
        phase: Phase,
        vote: VoteValue,
        candidate: Option<BatchId>,
    },
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
enum LegacyValue {
    Null,
    Batch(Arc<Batch>),
}

/// Decodes one record of a format 1 or 2 segment.
pub(crate) fn decode(payload: &[u8]) -> Result<PersistRecord, String> {
    let legacy: LegacyRecord = bincode::deserialize(payload).map_err(|e| e.to_string())?;
    Ok(match legacy {
        LegacyRecord::Sent { slot, message } => PersistRecord::Sent {
            slot,
            message: match message {
                LegacyMessage::Forward { .. } => {
                    return Err("a Forward message is never a durable record".into())
                }
                LegacyMessage::Proposal { slot, batch } => Message::Proposal {
                    slot,
                    value: BatchList::single(batch),
                },
                LegacyMessage::State {
                    slot,
                    phase,
                    bit,
                    candidate,
                } => Message::State {
                    slot,
                    phase,
                    bit,
                    candidate: candidate.map(ValueId::single),
                },
                LegacyMessage::Vote {
                    slot,
                    phase,
                    vote,
                    candidate,
                } => Message::Vote {
                    slot,
                    phase,
                    vote,
                    candidate: candidate.map(ValueId::single),
                },
            },
        },
        LegacyRecord::Decided { slot, value } => PersistRecord::Decided {
            slot,
            value: match value {
                LegacyValue::Null => SlotValue::Null,
                LegacyValue::Batch(batch) => SlotValue::Batches(BatchList::single(batch)),
            },
        },
        LegacyRecord::Learner { participate_from } => PersistRecord::Learner { participate_from },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rabia_core::{NodeId, Operation};

    fn batch() -> Arc<Batch> {
        Arc::new(Batch {
            id: BatchId {
                origin: NodeId::from_u64(2),
                incarnation: 3,
                seq: 4,
            },
            timestamp: 77,
            operations: vec![Operation::new(b"set k v".to_vec())],
        })
    }

    #[test]
    fn old_records_decode_to_their_one_batch_forms() {
        let b = batch();
        let proposal = bincode::serialize(&LegacyRecord::Sent {
            slot: Slot(5),
            message: LegacyMessage::Proposal {
                slot: Slot(5),
                batch: b.clone(),
            },
        })
        .unwrap();
        assert_eq!(
            decode(&proposal).unwrap(),
            PersistRecord::Sent {
                slot: Slot(5),
                message: Message::Proposal {
                    slot: Slot(5),
                    value: BatchList::single(b.clone()),
                },
            }
        );
        let vote = bincode::serialize(&LegacyRecord::Sent {
            slot: Slot(5),
            message: LegacyMessage::Vote {
                slot: Slot(5),
                phase: Phase(1),
                vote: VoteValue::Bit(Bit::One),
                candidate: Some(b.id),
            },
        })
        .unwrap();
        let PersistRecord::Sent {
            message: Message::Vote { candidate, .. },
            ..
        } = decode(&vote).unwrap()
        else {
            panic!("not a vote");
        };
        assert_eq!(candidate.as_ref(), Some(BatchList::single(b.clone()).id()));
        let decided = bincode::serialize(&LegacyRecord::Decided {
            slot: Slot(5),
            value: LegacyValue::Batch(b.clone()),
        })
        .unwrap();
        assert_eq!(
            decode(&decided).unwrap(),
            PersistRecord::Decided {
                slot: Slot(5),
                value: SlotValue::Batches(BatchList::single(b)),
            }
        );
        let forward = bincode::serialize(&LegacyRecord::Sent {
            slot: Slot(5),
            message: LegacyMessage::Forward { batch: batch() },
        })
        .unwrap();
        assert!(decode(&forward).is_err());
        assert!(decode(&[9, 9, 9]).is_err());
    }
}

//! The wire encoding of [`Envelope`]s: one version byte, then the bincode
//! (varint) encoding of the envelope. Decoding is bounded by a maximum frame
//! size and never panics on arbitrary bytes.

use crate::error::DecodeError;
use crate::protocol::message::Envelope;
use bincode::Options;

/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 5;

/// The default maximum frame size (16 MiB).
pub const DEFAULT_FRAME_BYTES_MAX: usize = 16 << 20;

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(limit as u64)
        .reject_trailing_bytes()
}

/// Encodes an envelope into a frame payload.
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![WIRE_VERSION];
    options(usize::MAX).serialize_into(&mut out, envelope)?;
    Ok(out)
}

/// Appends the frame payload of `envelope` (the same bytes [`encode`]
/// returns) to `out`, after whatever `out` already holds: a transport can
/// reserve its length prefix first and encode in place, with one buffer
/// sized once.
pub fn encode_into(out: &mut Vec<u8>, envelope: &Envelope) -> Result<(), DecodeError> {
    let size = options(usize::MAX).serialized_size(envelope)?;
    out.reserve(1 + usize::try_from(size).unwrap_or(0));
    out.push(WIRE_VERSION);
    options(usize::MAX).serialize_into(&mut *out, envelope)?;
    Ok(())
}

/// Decodes a frame payload, refusing frames over `frame_bytes_max`.
pub fn decode(bytes: &[u8], frame_bytes_max: usize) -> Result<Envelope, DecodeError> {
    if bytes.len() > frame_bytes_max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: frame_bytes_max,
        });
    }
    let Some((&version, body)) = bytes.split_first() else {
        return Err(DecodeError::Malformed(Box::new(
            bincode::ErrorKind::Custom("empty frame".into()),
        )));
    };
    if version != WIRE_VERSION {
        return Err(DecodeError::Version {
            found: version,
            expected: WIRE_VERSION,
        });
    }
    Ok(options(frame_bytes_max).deserialize(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BatchId, Epoch, NodeId, Phase, Slot};
    use crate::operation::{Batch, BatchList, Operation, SlotValue};
    use crate::protocol::message::{Bit, Message, VoteValue};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn sample_messages() -> Vec<Message> {
        let batch = Arc::new(Batch {
            id: BatchId {
                origin: NodeId::from_u64(2),
                incarnation: 1,
                seq: 9,
            },
            timestamp: 1234,
            operations: vec![
                Operation::new(b"set x 1".to_vec()),
                Operation::with_session(b"incr".to_vec(), crate::ids::ClientId(5), 3),
            ],
        });
        let later = Arc::new(Batch {
            id: BatchId {
                origin: NodeId::from_u64(1),
                incarnation: 1,
                seq: 2,
            },
            timestamp: 1240,
            operations: vec![Operation::new(b"get x".to_vec())],
        });
        let pair = BatchList::new(vec![batch.clone(), later]).expect("ordered");
        vec![
            Message::Forward {
                batch: batch.clone(),
            },
            Message::Proposal {
                slot: Slot(3),
                value: pair.clone(),
            },
            Message::State {
                slot: Slot(3),
                phase: Phase(1),
                bit: Bit::One,
                candidate: Some(pair.id().clone()),
            },
            Message::Vote {
                slot: Slot(3),
                phase: Phase(2),
                vote: VoteValue::Unknown,
                candidate: None,
            },
            Message::Decision {
                slot: Slot(3),
                value: SlotValue::Batches(BatchList::single(batch.clone())),
            },
            Message::Decision {
                slot: Slot(4),
                value: SlotValue::Null,
            },
            Message::ProposalRequest {
                slot: Slot(3),
                candidate: None,
            },
            Message::ProposalReply {
                slot: Slot(3),
                value: pair.clone(),
            },
            Message::ProposalRef {
                slot: Slot(3),
                value: pair.id().clone(),
            },
            Message::Opening {
                slot: Slot(3),
                value: pair,
            },
            Message::ProposalFetch { slot: Slot(3) },
            Message::CatchUpRequest { from: Slot(0) },
            Message::CatchUpReply {
                decisions: vec![(Slot(0), SlotValue::Null)],
                responder_next: Slot(1),
                compacted_below: None,
            },
            Message::Heartbeat {
                next_slot: Slot(8),
                learner: false,
                probe: 0,
            },
            Message::SnapshotRequest,
            Message::SnapshotChunk {
                base_slot: Slot(100),
                offset: 4,
                total: 10,
                data: vec![1, 2, 3],
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for message in sample_messages() {
            let envelope = Envelope {
                sender: NodeId::from_u64(1),
                epoch: Epoch(0),
                message,
            };
            let bytes = encode(&envelope).unwrap();
            assert_eq!(decode(&bytes, DEFAULT_FRAME_BYTES_MAX).unwrap(), envelope);
            // Encoding in place after a prefix gives the same bytes.
            let mut framed = vec![9, 9, 9, 9];
            encode_into(&mut framed, &envelope).unwrap();
            assert_eq!(&framed[..4], &[9, 9, 9, 9]);
            assert_eq!(&framed[4..], &bytes[..]);
        }
    }

    #[test]
    fn state_and_vote_are_small() {
        let envelope = Envelope {
            sender: NodeId::from_u64(1),
            epoch: Epoch(0),
            message: Message::Vote {
                slot: Slot(1_000_000),
                phase: Phase(1),
                vote: VoteValue::Bit(Bit::Zero),
                candidate: None,
            },
        };
        assert!(encode(&envelope).unwrap().len() <= 16);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(decode(&[], 100), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            decode(&[9, 0, 0], 100),
            Err(DecodeError::Version { .. })
        ));
        assert!(matches!(
            decode(&[1; 200], 100),
            Err(DecodeError::TooLarge { .. })
        ));
        // A length prefix claiming a huge batch must not allocate it.
        let mut frame = vec![WIRE_VERSION, 1, 0, 0, 1];
        frame.extend_from_slice(&[0xFF; 12]);
        assert!(decode(&frame, 1 << 20).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, 1 << 16);
            let mut versioned = bytes.clone();
            versioned.insert(0, WIRE_VERSION);
            let _ = decode(&versioned, 1 << 16);
        }

        #[test]
        fn truncated_frames_are_errors(cut in 0usize..64) {
            for message in sample_messages() {
                let envelope = Envelope { sender: NodeId::from_u64(1), epoch: Epoch(0), message };
                let bytes = encode(&envelope).unwrap();
                if cut < bytes.len() {
                    prop_assert!(decode(&bytes[..cut], 1 << 20).is_err());
                }
            }
        }
    }
}

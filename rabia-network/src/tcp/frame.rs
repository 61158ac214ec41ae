//! Framing on a peer connection: each frame is a 32-bit big-endian length
//! followed by that many bytes. Reading is bounded: a frame longer than the
//! configured maximum is an error that closes the connection, so a peer
//! cannot make this node buffer without limit.

use tokio::net::tcp::OwnedReadHalf;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// The framed read half of a peer connection.
pub(crate) type FrameReader = FramedRead<OwnedReadHalf, LengthDelimitedCodec>;

/// A reader that accepts frames of at most `frame_bytes_max` bytes.
pub(crate) fn reader(read: OwnedReadHalf, frame_bytes_max: usize) -> FrameReader {
    FramedRead::new(
        read,
        LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(frame_bytes_max)
            .new_codec(),
    )
}

/// Raises (or lowers) the maximum frame size of a reader.
pub(crate) fn set_max(reader: &mut FrameReader, frame_bytes_max: usize) {
    reader.decoder_mut().set_max_frame_length(frame_bytes_max);
}

/// Appends one frame (length prefix and payload) to `out`.
pub(crate) fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    // Callers bound payloads by `frame_bytes_max`, which `TcpConfig::validate`
    // keeps within u32; saturate rather than wrap if that were ever broken
    // (the receiver then rejects the frame).
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

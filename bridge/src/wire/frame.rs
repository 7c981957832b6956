//! Length-prefixed framing.
//!
//! A frame is a 4-byte big-endian body length followed by the body. The body is at most
//! [`MAX_BODY_LEN`] bytes; a longer announced length is a protocol error, so a peer sending
//! garbage is detected at its first four bytes instead of making the bridge buffer megabytes.

use bytes::{Buf, BytesMut};

/// Largest body a frame may carry. Every v1 message fits in a few hundred bytes.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header announces a body larger than [`MAX_BODY_LEN`].
    #[error("frame body of {0} bytes exceeds the limit of {MAX_BODY_LEN} bytes")]
    Oversized(usize),
    /// The header announces an empty body, which no message has.
    #[error("frame with an empty body")]
    Empty,
}

/// Takes one complete frame body off the front of `buffer`.
///
/// Returns `Ok(None)` when the buffer does not yet hold a whole frame: not an error, the caller
/// reads more bytes and tries again.
pub fn take_body(buffer: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if len > MAX_BODY_LEN {
        return Err(FrameError::Oversized(len));
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if buffer.len() < HEADER_LEN + len {
        buffer.reserve(HEADER_LEN + len - buffer.len());
        return Ok(None);
    }
    buffer.advance(HEADER_LEN);
    Ok(Some(buffer.split_to(len)))
}

/// Appends a frame holding `body` to `out`.
pub fn put_frame(out: &mut BytesMut, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_BODY_LEN {
        return Err(FrameError::Oversized(body.len()));
    }
    if body.is_empty() {
        return Err(FrameError::Empty);
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::Oversized(body.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn incomplete_input_is_not_an_error() {
        let mut buffer = BytesMut::from(&[0u8, 0, 0, 5, b'a'][..]);
        assert_eq!(take_body(&mut buffer), Ok(None));
        assert_eq!(buffer.len(), 5, "nothing consumed until the frame is whole");
    }

    #[test]
    fn oversized_header_is_refused_before_buffering_the_body() {
        let mut buffer = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(take_body(&mut buffer), Err(FrameError::Oversized(0xffff_ffff)));
    }

    proptest! {
        #[test]
        fn frames_survive_any_split_of_the_stream(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..20),
            cut in 1usize..64,
        ) {
            let mut stream = BytesMut::new();
            for body in &bodies {
                put_frame(&mut stream, body).unwrap();
            }
            // Feed the stream in chunks of `cut` bytes, as TCP may deliver it.
            let mut buffer = BytesMut::new();
            let mut decoded = Vec::new();
            for chunk in stream.chunks(cut) {
                buffer.extend_from_slice(chunk);
                while let Some(body) = take_body(&mut buffer).unwrap() {
                    decoded.push(body.to_vec());
                }
            }
            prop_assert_eq!(decoded, bodies);
            prop_assert!(buffer.is_empty());
        }
    }
}

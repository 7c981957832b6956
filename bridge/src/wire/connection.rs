//! Reading and writing envelopes on a byte stream.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::frame::{self, FrameError};
use super::message::{DecodeError, Envelope};

/// Why a connection stopped being usable.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer sent a frame that is not a message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
}

/// A framed connection to one terminal, over TCP or a named pipe.
#[derive(Debug)]
pub struct Connection<S> {
    stream: BufWriter<S>,
    buffer: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self { stream: BufWriter::new(stream), buffer: BytesMut::with_capacity(8 * 1024) }
    }

    /// Reads the next envelope; `Ok(None)` when the peer closed the connection cleanly between
    /// frames.
    pub async fn read_envelope(&mut self) -> Result<Option<Envelope>, WireError> {
        loop {
            if let Some(body) = frame::take_body(&mut self.buffer)? {
                return Ok(Some(Envelope::decode(&body)?));
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(WireError::Truncated(self.buffer.len()))
                };
            }
        }
    }

    /// Buffers an envelope for writing; call [`Connection::flush`] to send.
    pub async fn write_envelope(&mut self, envelope: &Envelope) -> Result<(), WireError> {
        let body = envelope.encode();
        let mut out = BytesMut::with_capacity(frame::HEADER_LEN + body.len());
        frame::put_frame(&mut out, &body)?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Sends everything buffered.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        self.stream.flush().await?;
        Ok(())
    }

    /// Writes raw bytes, bypassing the codec: tests use it to send garbage.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }
}

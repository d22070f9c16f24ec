//! Reading whole messages from a client where pgweir reads them itself rather than relaying
//! them: the startup packet, authentication and the admin console. Each message is bounded
//! by the caller's `max`, so no client can make pgweir buffer more.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::AsyncReadExt;

use super::stream::Stream;
use crate::protocol::ProtocolError;

/// Why no message came.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("client connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("client closed the connection")]
    Closed,
}

/// Reads one tagged message of at most `max` bytes, whole.
pub async fn read_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(u8, Bytes), ReadError> {
    fill(stream, buf, 5).await?;
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if !(4..=max).contains(&len) {
        return Err(ProtocolError::BadLength(len as u32).into());
    }
    fill(stream, buf, len + 1).await?;
    buf.advance(5);
    Ok((tag, buf.split_to(len - 4).freeze()))
}

/// Reads until `buf` holds at least `n` bytes.
pub async fn fill(stream: &mut Stream, buf: &mut BytesMut, n: usize) -> Result<(), ReadError> {
    while buf.len() < n {
        // Room for the rest of the packet, and enough that a login takes few reads.
        buf.reserve((n - buf.len()).max(1024));
        if stream.read_buf(buf).await? == 0 {
            return Err(ReadError::Closed);
        }
    }
    Ok(())
}

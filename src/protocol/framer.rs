//! Streaming message framing for the relay: finds message boundaries by header, shows the
//! relay each message's tag (and the body of the small ones it asks for), and hands the bytes
//! to forward on as zero-copy slices of the read buffer. A large message is passed through
//! in pieces as it arrives, so it is never held whole in memory.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::ProtocolError;

/// Bodies larger than this are never buffered for inspection, whatever the inspector asks.
pub const MAX_INSPECTED_BODY: usize = 64 * 1024;

/// What to do with a message the framer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Forward,
    Drop,
}

/// The relay's view of a byte stream, one message at a time.
pub trait Inspector {
    /// Whether the message's whole body must be buffered before [`Inspector::on_message`].
    fn wants_body(&self, tag: u8) -> bool;
    /// Called once per message, at its start. `body` is the whole body when asked for and
    /// small enough, else `None` (then the message is streamed).
    fn on_message(&mut self, tag: u8, len: usize, body: Option<&[u8]>) -> Disposition;
}

/// Tracks where in the stream the next message header starts.
#[derive(Debug, Default)]
pub struct Framer {
    /// Bytes of the current streamed message not yet seen.
    remaining: usize,
    /// Whether those bytes are dropped rather than forwarded.
    discarding: bool,
}

impl Framer {
    /// True while a streamed message is only partly through.
    pub fn mid_message(&self) -> bool {
        self.remaining > 0
    }

    /// Moves every forwardable byte at the front of `buf` into `out`, calling the inspector for
    /// each message that starts. Leaves in `buf` only an incomplete header or an incomplete
    /// body the inspector asked to see.
    pub fn drain(
        &mut self,
        buf: &mut BytesMut,
        insp: &mut impl Inspector,
        out: &mut OutQueue,
    ) -> Result<(), ProtocolError> {
        let mut fwd = 0;
        loop {
            if self.remaining > 0 {
                let n = self.remaining.min(buf.len() - fwd);
                if n == 0 {
                    break;
                }
                self.remaining -= n;
                if self.discarding {
                    out.push_split(buf, fwd);
                    fwd = 0;
                    buf.advance(n);
                } else {
                    fwd += n;
                }
                continue;
            }
            let rest = &buf[fwd..];
            if rest.len() < 5 {
                break;
            }
            let tag = rest[0];
            let raw_len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
            if raw_len < 4 || raw_len > i32::MAX as u32 {
                return Err(ProtocolError::BadLength(raw_len));
            }
            let total = 1 + raw_len as usize;
            let inspect = insp.wants_body(tag) && total - 5 <= MAX_INSPECTED_BODY;
            if inspect {
                if rest.len() < total {
                    buf.reserve(total - rest.len());
                    break;
                }
                match insp.on_message(tag, total, Some(&rest[5..total])) {
                    Disposition::Forward => fwd += total,
                    Disposition::Drop => {
                        out.push_split(buf, fwd);
                        fwd = 0;
                        buf.advance(total);
                    }
                }
            } else {
                self.discarding = insp.on_message(tag, total, None) == Disposition::Drop;
                self.remaining = total;
            }
        }
        out.push_split(buf, fwd);
        Ok(())
    }
}

/// Bytes waiting to be written to one peer, as the slices they were read in.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.chunks.push_back(b);
        }
    }

    /// Queues the first `n` bytes of `buf` without copying them.
    fn push_split(&mut self, buf: &mut BytesMut, n: usize) {
        if n > 0 {
            self.push(buf.split_to(n).freeze());
        }
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// One vectored write of what is queued; returns the bytes written. Cancel-safe: when the
    /// future is dropped before completing, nothing was written.
    pub async fn write_some<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<usize> {
        let n = {
            let mut slices = [IoSlice::new(&[]); 32];
            let count = self.chunks.len().min(slices.len());
            for (s, c) in slices.iter_mut().zip(self.chunks.iter()) {
                *s = IoSlice::new(c);
            }
            w.write_vectored(&slices[..count]).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.consume(n);
        Ok(n)
    }

    /// Writes everything queued.
    pub async fn write_all<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        while !self.is_empty() {
            self.write_some(w).await?;
        }
        Ok(())
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records tags; drops messages tagged `x`; wants bodies of `Z`.
    #[derive(Default)]
    struct Rec {
        seen: Vec<(u8, Option<Vec<u8>>)>,
    }

    impl Inspector for Rec {
        fn wants_body(&self, tag: u8) -> bool {
            tag == b'Z'
        }
        fn on_message(&mut self, tag: u8, _len: usize, body: Option<&[u8]>) -> Disposition {
            self.seen.push((tag, body.map(<[u8]>::to_vec)));
            if tag == b'x' {
                Disposition::Drop
            } else {
                Disposition::Forward
            }
        }
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn flatten(q: &OutQueue) -> Vec<u8> {
        q.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    #[test]
    fn forwards_whole_and_split_messages_byte_by_byte() {
        let stream: Vec<u8> = [
            msg(b'D', b"row data"),
            msg(b'x', b"secret"),
            msg(b'Z', b"I"),
            msg(b'x', &[7; 100]),
        ]
        .concat();
        let mut f = Framer::default();
        let (mut r, mut out, mut buf) = (Rec::default(), OutQueue::default(), BytesMut::new());
        for b in &stream {
            buf.extend_from_slice(&[*b]);
            f.drain(&mut buf, &mut r, &mut out).unwrap();
        }
        assert!(buf.is_empty());
        assert!(!f.mid_message());
        assert_eq!(
            flatten(&out),
            [msg(b'D', b"row data"), msg(b'Z', b"I")].concat()
        );
        let tags: Vec<u8> = r.seen.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, b"DxZx");
        assert_eq!(r.seen[2].1.as_deref(), Some(&b"I"[..]));
    }

    #[test]
    fn waits_for_an_inspected_body() {
        let m = msg(b'Z', b"T");
        let mut f = Framer::default();
        let (mut r, mut out) = (Rec::default(), OutQueue::default());
        let mut buf = BytesMut::from(&m[..5]);
        f.drain(&mut buf, &mut r, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(buf.len(), 5);
        buf.extend_from_slice(&m[5..]);
        f.drain(&mut buf, &mut r, &mut out).unwrap();
        assert_eq!(flatten(&out), m);
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut f = Framer::default();
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        let err = f.drain(&mut buf, &mut Rec::default(), &mut OutQueue::default());
        assert!(matches!(err, Err(ProtocolError::BadLength(3))));
    }

    #[tokio::test]
    async fn out_queue_writes_everything_in_order() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"defg"));
        let mut sink = Vec::new();
        q.write_all(&mut sink).await.unwrap();
        assert_eq!(sink, b"abcdefg");
        assert!(q.is_empty());
    }
}

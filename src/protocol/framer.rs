//! Streaming message framing for the relay: finds message boundaries by header, shows the
//! relay each message's tag (and the body, or the start of the body, of the ones it asks
//! for), and hands the bytes to forward on as zero-copy slices of the read buffer. A large
//! message is passed through in pieces as it arrives, so it is never held whole in memory;
//! when the relay rewrites one (a statement name in a 1 GB Bind), only its head is replaced
//! and the rest still streams.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::ProtocolError;

/// Bodies larger than this are never buffered whole for inspection unless an inspector
/// asks for more with [`Want::whole`].
pub const MAX_INSPECTED_BODY: usize = 64 * 1024;

/// How much of a message's body an inspector needs to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// Bodies up to this many bytes are buffered and shown whole.
    pub whole: usize,
    /// Of a longer body, this many leading bytes are shown; zero shows nothing.
    pub prefix: usize,
    /// With `prefix`, show a longer body only through this many NULs (a Bind's portal and
    /// statement names), `prefix` bytes being the most shown: names of any length are seen
    /// whole without buffering the data after them.
    pub through_nuls: u8,
}

impl Want {
    pub const NOTHING: Want = Want {
        whole: 0,
        prefix: 0,
        through_nuls: 0,
    };
    /// Whole bodies up to [`MAX_INSPECTED_BODY`], nothing of longer ones.
    pub const SMALL: Want = Want {
        whole: MAX_INSPECTED_BODY,
        prefix: 0,
        through_nuls: 0,
    };
    /// Whole bodies up to [`MAX_INSPECTED_BODY`], the first that many bytes of longer ones.
    pub const HEAD: Want = Want {
        whole: MAX_INSPECTED_BODY,
        prefix: MAX_INSPECTED_BODY,
        through_nuls: 0,
    };
}

/// What the inspector gets to see of a message's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View<'a> {
    Whole(&'a [u8]),
    /// The first bytes of a body too long to show whole.
    Prefix(&'a [u8]),
    Nothing,
}

impl<'a> View<'a> {
    /// The bytes shown, whole or not.
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self {
            View::Whole(b) | View::Prefix(b) => Some(b),
            View::Nothing => None,
        }
    }

    pub fn whole(self) -> Option<&'a [u8]> {
        match self {
            View::Whole(b) => Some(b),
            _ => None,
        }
    }
}

/// What to do with a message the framer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Forward,
    Drop,
    /// Send `with` in place of the message's first `head` bytes (counted from its tag, so
    /// `head` = the message's length replaces it all), then forward the rest unchanged.
    Replace {
        with: Bytes,
        head: usize,
    },
    /// Stop before this message: it and everything after it stay in the buffer, and the
    /// next drain shows it again. The relay holds a message this way when it belongs on
    /// another server than the one linked now.
    Hold,
    /// A message of a type the peer may not send: the stream is broken off
    /// ([`ProtocolError::UnknownType`]).
    Refuse,
}

/// The relay's view of a byte stream, one message at a time.
pub trait Inspector {
    /// How much of the body of a message with this tag must be seen before
    /// [`Inspector::on_message`].
    fn wants(&self, tag: u8) -> Want;
    /// Called once per message, at its start, with `len` the whole message's length
    /// including its tag.
    fn on_message(&mut self, tag: u8, len: usize, body: View<'_>) -> Disposition;
}

/// Tracks where in the stream the next message header starts.
#[derive(Debug, Default)]
pub struct Framer {
    /// Bytes of the current message still to be dropped, before `forward`.
    skip: usize,
    /// Bytes of the current message still to be forwarded.
    forward: usize,
    /// For a message shown through its NULs: body bytes already searched, and the NULs
    /// found in them, so bytes arriving in pieces are searched once.
    searched: (usize, u8),
}

impl Framer {
    /// The length of `body` through its `count`th NUL, if it holds that many; remembers how
    /// far it searched otherwise.
    fn through_nuls(&mut self, body: &[u8], count: u8) -> Option<usize> {
        let (mut at, mut found) = self.searched;
        while let Some(i) = memchr::memchr(0, &body[at..]) {
            at += i + 1;
            found += 1;
            if found == count {
                return Some(at);
            }
        }
        self.searched = (body.len(), found);
        None
    }

    /// True while a streamed message is only partly through.
    pub fn mid_message(&self) -> bool {
        self.skip > 0 || self.forward > 0
    }

    /// Moves every forwardable byte at the front of `buf` into `out`, calling the inspector for
    /// each message that starts. Leaves in `buf` only an incomplete header or the incomplete
    /// part of a body the inspector asked to see.
    pub fn drain(
        &mut self,
        buf: &mut BytesMut,
        insp: &mut impl Inspector,
        out: &mut OutQueue,
    ) -> Result<(), ProtocolError> {
        let mut fwd = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - fwd);
                if n == 0 {
                    break;
                }
                out.push_split(buf, fwd);
                fwd = 0;
                buf.advance(n);
                self.skip -= n;
                continue;
            }
            if self.forward > 0 {
                let n = self.forward.min(buf.len() - fwd);
                if n == 0 {
                    break;
                }
                fwd += n;
                self.forward -= n;
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
            let want = insp.wants(tag);
            let body_len = total - 5;
            let shown = if body_len <= want.whole {
                body_len
            } else if want.through_nuls > 0 {
                let limit = want.prefix.min(body_len);
                let arrived = &rest[5..rest.len().min(5 + limit)];
                self.through_nuls(arrived, want.through_nuls)
                    .unwrap_or(limit)
            } else {
                want.prefix.min(body_len)
            };
            if rest.len() < 5 + shown {
                // Room for what is missing, but not the whole of a long prefix while its
                // NULs may still come early.
                let missing = 5 + shown - rest.len();
                let cap = if want.through_nuls > 0 {
                    MAX_INSPECTED_BODY
                } else {
                    missing
                };
                buf.reserve(missing.min(cap));
                break;
            }
            self.searched = (0, 0);
            let view = match shown {
                _ if body_len <= want.whole => View::Whole(&rest[5..total]),
                0 => View::Nothing,
                n => View::Prefix(&rest[5..5 + n]),
            };
            match insp.on_message(tag, total, view) {
                Disposition::Forward => self.forward = total,
                Disposition::Drop => self.skip = total,
                Disposition::Replace { with, head } => {
                    out.push_split(buf, fwd);
                    fwd = 0;
                    out.push(with);
                    self.skip = head.min(total);
                    self.forward = total - self.skip;
                }
                Disposition::Hold => break,
                Disposition::Refuse => return Err(ProtocolError::UnknownType(tag)),
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
    /// Bytes ever queued, so the relay can tell whether anything was sent since a moment.
    pushed: u64,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes queued since the queue was made, written or not.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.pushed += b.len() as u64;
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

    /// A fresh queue (nothing queued, nothing ever pushed) that keeps this one's allocation.
    pub fn emptied(mut self) -> Self {
        self.chunks.clear();
        OutQueue {
            chunks: self.chunks,
            len: 0,
            pushed: 0,
        }
    }

    /// One vectored write of what is queued; returns the bytes written. Cancel-safe: when the
    /// future is dropped before completing, nothing was written. The slices are gathered at
    /// each poll rather than kept in the future, which stays a few bytes: it is part of every
    /// client task, idle ones included.
    pub async fn write_some<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_write_some(cx, w)).await
    }

    /// Writes what the peer takes at once, without waiting for it to take more: the relay
    /// sends a request as soon as it is framed rather than on its loop's next turn, which
    /// would poll every other branch first.
    pub async fn write_now<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> std::io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        std::future::poll_fn(|cx| match self.poll_write_some(cx, w) {
            Poll::Ready(r) => Poll::Ready(r.map(drop)),
            Poll::Pending => Poll::Ready(Ok(())),
        })
        .await
    }

    fn poll_write_some<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<std::io::Result<usize>> {
        let mut slices = [IoSlice::new(&[]); 32];
        let count = self.chunks.len().min(slices.len());
        for (s, c) in slices.iter_mut().zip(self.chunks.iter()) {
            *s = IoSlice::new(c);
        }
        let n = std::task::ready!(Pin::new(&mut *w).poll_write_vectored(cx, &slices[..count]))?;
        if n == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
        }
        self.consume(n);
        Poll::Ready(Ok(n))
    }

    /// [`Self::write_some`], or with nothing queued a flush, which a TLS stream needs when a
    /// write left records the socket did not take. Cancel-safe like `write_some`.
    pub async fn write_or_flush<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<()> {
        if self.is_empty() {
            w.flush().await
        } else {
            self.write_some(w).await.map(drop)
        }
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
        fn wants(&self, tag: u8) -> Want {
            match tag {
                b'Z' => Want::SMALL,
                b'B' => Want {
                    whole: 4,
                    prefix: 2,
                    through_nuls: 0,
                },
                b'N' => Want {
                    whole: 4,
                    prefix: 1 << 20,
                    through_nuls: 2,
                },
                _ => Want::NOTHING,
            }
        }
        fn on_message(&mut self, tag: u8, len: usize, body: View<'_>) -> Disposition {
            self.seen.push((tag, body.bytes().map(<[u8]>::to_vec)));
            match tag {
                b'x' => Disposition::Drop,
                b'h' => Disposition::Hold,
                // Renames: the first two body bytes become "NEW", the rest streams.
                b'B' => {
                    let mut with = vec![b'B'];
                    with.extend_from_slice(&((len - 5 - 2 + 3 + 4) as u32).to_be_bytes());
                    with.extend_from_slice(b"NEW");
                    Disposition::Replace {
                        with: Bytes::from(with),
                        head: 7,
                    }
                }
                _ => Disposition::Forward,
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

    /// Long names arriving a byte at a time are shown whole, through their second NUL and no
    /// further, however long; the data after them streams.
    #[test]
    fn a_body_is_shown_through_its_names_however_long() {
        let names = [vec![b'p'; 5], vec![0], vec![b's'; 70_000], vec![0]].concat();
        let body = [names.clone(), vec![9; 100]].concat();
        let stream = [msg(b'N', &body), msg(b'Z', b"I")].concat();
        let mut f = Framer::default();
        let (mut r, mut out, mut buf) = (Rec::default(), OutQueue::default(), BytesMut::new());
        for chunk in stream.chunks(997) {
            buf.extend_from_slice(chunk);
            f.drain(&mut buf, &mut r, &mut out).unwrap();
        }
        assert_eq!(flatten(&out), stream);
        assert_eq!(r.seen[0].1.as_deref(), Some(&names[..]));
        assert_eq!(r.seen[1].0, b'Z');
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
    fn replaces_the_head_of_a_long_message_and_streams_the_rest() {
        let stream: Vec<u8> = [msg(b'B', b"abcdefgh"), msg(b'Z', b"I")].concat();
        let mut f = Framer::default();
        let (mut r, mut out, mut buf) = (Rec::default(), OutQueue::default(), BytesMut::new());
        for b in &stream {
            buf.extend_from_slice(&[*b]);
            f.drain(&mut buf, &mut r, &mut out).unwrap();
        }
        assert_eq!(
            flatten(&out),
            [msg(b'B', b"NEWcdefgh"), msg(b'Z', b"I")].concat()
        );
        assert_eq!(r.seen[0].1.as_deref(), Some(&b"ab"[..]), "a prefix only");
    }

    #[test]
    fn a_held_message_and_everything_after_it_stay_buffered() {
        let first = msg(b'D', b"one");
        let held = msg(b'h', b"wait");
        let stream = [first.clone(), held.clone(), msg(b'D', b"two")].concat();
        let mut buf = BytesMut::from(&stream[..]);
        let (mut f, mut rec, mut out) = (Framer::default(), Rec::default(), OutQueue::default());
        f.drain(&mut buf, &mut rec, &mut out).unwrap();
        assert_eq!(flatten(&out), first);
        assert_eq!(&buf[..], &stream[first.len()..]);
        assert!(!f.mid_message());
        f.drain(&mut buf, &mut rec, &mut out).unwrap();
        assert_eq!(&buf[..], &stream[first.len()..], "shown again, still held");
        assert_eq!(rec.seen.iter().filter(|(t, _)| *t == b'h').count(), 2);
        assert_eq!(out.pushed(), first.len() as u64);
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

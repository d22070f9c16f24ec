//! Frames on a control connection: a 4-byte length, a JSON [`super::Message`], and the file
//! descriptors the message names passed alongside with SCM_RIGHTS (the kernel gives the
//! receiver its own copies). Blocking I/O on a `std` Unix stream: a control connection
//! carries a handful of frames, or one per client handed over, and runs on its own thread.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A frame larger than this is refused: the biggest is a client with many prepared
/// statements, far below it.
const MAX_FRAME: usize = 64 << 20;
/// Descriptors one read can bring: the listening sockets come in one frame.
const MAX_FDS: usize = 16;

/// Why a control connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
    #[error("control connection: {0}")]
    Os(#[from] rustix::io::Errno),
    #[error("control connection: bad message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("control connection: frame of {0} bytes")]
    TooLarge(usize),
    #[error("control connection: {0} descriptors are more than one message carries")]
    TooManyFds(usize),
    #[error("control connection: a message came without the {0} descriptor(s) it names")]
    MissingFds(usize),
}

/// One end of a control connection.
#[derive(Debug)]
pub struct Wire {
    stream: UnixStream,
    /// Bytes read and not yet framed.
    buf: Vec<u8>,
    /// Descriptors received and not yet claimed by a frame, in arrival order.
    fds: VecDeque<OwnedFd>,
}

impl Wire {
    pub fn new(stream: UnixStream) -> Self {
        Wire {
            stream,
            buf: Vec::new(),
            fds: VecDeque::new(),
        }
    }

    /// Sends `message` with `fds` attached to its first byte.
    pub fn send<M: Serialize>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), WireError> {
        let body = serde_json::to_vec(message)?;
        let len = (body.len() as u32).to_be_bytes();
        let iov = [IoSlice::new(&len), IoSlice::new(&body)];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(WireError::TooManyFds(fds.len()));
        }
        let sent = loop {
            match sendmsg(&self.stream, &iov, &mut control, SendFlags::empty()) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other?,
            }
        };
        // The descriptors went with the first byte; the rest, if the socket took only part.
        let whole = [&len[..], &body[..]].concat();
        self.stream.write_all(&whole[sent..])?;
        Ok(())
    }

    /// The next message; `None` at a clean EOF. The descriptors it names are then claimed
    /// with [`Wire::take_fds`].
    pub fn recv<M: DeserializeOwned>(&mut self) -> Result<Option<M>, WireError> {
        loop {
            if let Some(body) = self.frame()? {
                return Ok(Some(serde_json::from_slice(&body)?));
            }
            if !self.read_more()? {
                return Ok(None);
            }
        }
    }

    /// The next `n` descriptors received: those sent with the message just read.
    pub fn take_fds(&mut self, n: usize) -> Result<Vec<OwnedFd>, WireError> {
        if self.fds.len() < n {
            return Err(WireError::MissingFds(n));
        }
        Ok(self.fds.drain(..n).collect())
    }

    /// Takes one whole frame's body out of the buffer, if there is one.
    fn frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let Some(header) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > MAX_FRAME {
            return Err(WireError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }

    /// One read, keeping any descriptors that came with it; false at EOF.
    fn read_more(&mut self) -> Result<bool, WireError> {
        let mut chunk = [0u8; 64 * 1024];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut chunk)];
        let msg = loop {
            match recvmsg(
                &self.stream,
                &mut iov,
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other?,
            }
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                self.fds.extend(fds);
            }
        }
        self.buf.extend_from_slice(&chunk[..msg.bytes]);
        Ok(msg.bytes > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Note {
        text: String,
    }

    #[test]
    fn messages_and_descriptors_cross_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Wire::new(a), Wire::new(b));
        let note = |t: &str| Note { text: t.into() };
        // Larger than the socket's buffer: the sender needs a reader on the other end.
        let sender = std::thread::spawn(move || {
            let file = tempfile::tempfile().unwrap();
            let fd = std::os::fd::AsFd::as_fd(&file);
            a.send(&note("first"), &[fd]).unwrap();
            a.send(&note("second"), &[]).unwrap();
            let big = "x".repeat(300_000);
            a.send(&note(&big), &[fd, fd]).unwrap();
        });
        let m = b.recv::<Note>().unwrap().unwrap();
        assert_eq!((m, b.take_fds(1).unwrap().len()), (note("first"), 1));
        let m = b.recv::<Note>().unwrap().unwrap();
        assert_eq!(m, note("second"));
        assert!(matches!(b.take_fds(1), Err(WireError::MissingFds(1))));
        let m = b.recv::<Note>().unwrap().unwrap();
        assert_eq!((m.text.len(), b.take_fds(2).unwrap().len()), (300_000, 2));
        sender.join().unwrap();
        assert!(b.recv::<Note>().unwrap().is_none());
    }

    #[test]
    fn a_frame_too_large_is_refused() {
        let (mut a, b) = UnixStream::pair().unwrap();
        use std::io::Write;
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let mut b = Wire::new(b);
        assert!(matches!(b.recv::<Note>(), Err(WireError::TooLarge(_))));
    }
}

//! One connection, to a client or to a server, in plaintext, under TLS or over a Unix-domain
//! socket: [`Stream`] reads and writes each way, and [`Stream::split`] gives the relay a read
//! half and a write half to drive at once. Plaintext keeps the socket's own borrowed split,
//! so the hot path costs what it did before TLS existed; only the TLS case shares the stream
//! through a lock. Unix sockets never carry TLS, as in Postgres and PgBouncer.
//!
//! TLS has one trap plain TCP has not: rustls may accept bytes into its buffer and return
//! before the socket took all the records. Nothing would ever send them if no write
//! followed, so a read on the whole stream first pushes out what is pending, and a write
//! half remembers it has something to flush ([`StreamWrite::unflushed`]), left by its own
//! writes or by the whole stream's before the split.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{tcp, unix, TcpStream, UnixStream};
use tokio_rustls::TlsStream;

type Tls = TlsStream<TcpStream>;

/// A connection in plaintext, under TLS, or over a Unix-domain socket.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    /// Boxed: the TLS state is large, and most connections are plaintext.
    Tls(Box<Tls>),
    Unix(UnixStream),
}

impl Stream {
    /// The TCP connection underneath, if this is one.
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref().0),
            Stream::Unix(_) => None,
        }
    }

    /// This end's TCP address; `None` over a Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp()?.local_addr().ok()
    }

    /// The user id of the process at the other end of a Unix socket, as the kernel vouches
    /// for it (for hba `peer`); `None` over TCP.
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            Stream::Unix(s) => s.peer_cred().ok().map(|c| c.uid()),
            _ => None,
        }
    }

    /// The TLS version and cipher suite, as SHOW CLIENTS' `tls` column shows them; empty in
    /// plaintext.
    pub fn tls_description(&self) -> String {
        self.tls_params().map(|p| p.to_string()).unwrap_or_default()
    }

    /// The TLS version and cipher suite in use, `None` in plaintext. Cheap: no allocation.
    pub fn tls_params(&self) -> Option<TlsParams> {
        let Stream::Tls(s) = self else {
            return None;
        };
        let state = s.get_ref().1;
        Some(TlsParams {
            version: state.protocol_version()?,
            suite: state.negotiated_cipher_suite()?.suite(),
        })
    }

    /// Waits until a read may find bytes, so an idle client can wait without a read
    /// buffer: the socket's readiness in plaintext; under TLS at once, as rustls may hold
    /// plaintext already.
    pub async fn ready_to_read(&self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.readable().await,
            Stream::Tls(_) => Ok(()),
            Stream::Unix(s) => s.readable().await,
        }
    }

    /// Waits until bytes have arrived (or the peer closed), without taking them: how long a
    /// new client stays silent. Plaintext and Unix sockets only (a fresh connection).
    pub async fn arrival(&self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.peek(&mut [0u8; 1]).await.map(drop),
            Stream::Unix(s) => loop {
                s.readable().await?;
                let mut probe = [std::mem::MaybeUninit::uninit(); 1];
                let peek = || socket2::SockRef::from(s).peek(&mut probe);
                match s.try_io(tokio::io::Interest::READABLE, peek) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other.map(drop),
                }
            },
            Stream::Tls(_) => Ok(()),
        }
    }

    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The socket of a plaintext connection, which another process can take over as it is;
    /// `None` under TLS, whose session state lives in this process.
    pub fn plain_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self {
            Stream::Plain(s) => Some(s.as_fd()),
            Stream::Unix(s) => Some(s.as_fd()),
            Stream::Tls(_) => None,
        }
    }

    /// A plaintext connection from a socket another process handed over; `tcp` says which
    /// kind it is.
    pub fn adopt(fd: std::os::fd::OwnedFd, tcp: bool) -> io::Result<Stream> {
        if tcp {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(Stream::Plain(TcpStream::from_std(s)?))
        } else {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(Stream::Unix(UnixStream::from_std(s)?))
        }
    }

    /// The read and write halves, usable at the same time (in one task).
    pub fn split(&mut self) -> (StreamRead<'_>, StreamWrite<'_>) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.split();
                (StreamRead::Plain(r), StreamWrite::Plain(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.split();
                (StreamRead::Unix(r), StreamWrite::Unix(w))
            }
            Stream::Tls(s) => {
                // Records an earlier write on the whole stream left: the halves' reads do
                // not flush, so the write half must.
                let unflushed = s.get_ref().1.wants_write();
                let (r, w) = tokio::io::split(&mut **s);
                (StreamRead::Tls(r), StreamWrite::Tls { half: w, unflushed })
            }
        }
    }

    /// Reads what has already arrived, without waiting: `WouldBlock` when nothing has. Under
    /// TLS the read is polled once, which also takes records the socket already holds.
    pub async fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read_buf(buf),
            Stream::Unix(s) => s.try_read_buf(buf),
            Stream::Tls(s) => {
                let mut read = std::pin::pin!(s.read_buf(buf));
                std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
                    Poll::Ready(r) => Poll::Ready(r),
                    Poll::Pending => Poll::Ready(Err(io::ErrorKind::WouldBlock.into())),
                })
                .await
            }
        }
    }

    /// Whether nothing at all waits to be read on the socket, as for an idle connection that
    /// is still open. Under TLS the raw socket is probed: any record (an alert, an error) means
    /// the connection is not quiet, and the bytes read by the probe do not matter because such
    /// a connection is dropped.
    pub fn is_quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        let read = match self {
            Stream::Unix(s) => s.try_read(&mut probe),
            Stream::Plain(s) => s.try_read(&mut probe),
            Stream::Tls(s) => s.get_ref().0.try_read(&mut probe),
        };
        matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Whether records are waiting in the TLS buffer for the socket.
    fn pending_tls_write(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Unix(_) => false,
            Stream::Tls(s) => s.get_ref().1.wants_write(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending_tls_write() {
            // A write whose records the socket did not take: send them before waiting for an
            // answer to them. Pending here still lets the read go on; the flush is retried.
            if let Poll::Ready(Err(e)) = Pin::new(&mut *this).poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
        }
        match this {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => poll_tls_write(Pin::new(&mut **s), cx, |s, cx| s.poll_write(cx, buf)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => poll_tls_write(Pin::new(&mut **s), cx, |s, cx| {
                s.poll_write_vectored(cx, bufs)
            }),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// What a TLS connection negotiated, shown as `TLSv1.3/TLS13_AES_256_GCM_SHA384`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsParams {
    version: rustls::ProtocolVersion,
    suite: rustls::CipherSuite,
}

impl std::fmt::Display for TlsParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            rustls::ProtocolVersion::TLSv1_3 => f.write_str("TLSv1.3")?,
            rustls::ProtocolVersion::TLSv1_2 => f.write_str("TLSv1.2")?,
            other => write!(f, "{other:?}")?,
        }
        write!(f, "/{:?}", self.suite)
    }
}

/// A TLS write that first sends what an earlier write left in the buffer (so the buffer
/// never grows without bound), then tries to send the new records at once.
fn poll_tls_write<W: AsyncWrite + Unpin>(
    mut s: Pin<&mut W>,
    cx: &mut Context<'_>,
    write: impl FnOnce(Pin<&mut W>, &mut Context<'_>) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<usize>> {
    std::task::ready!(s.as_mut().poll_flush(cx))?;
    let n = std::task::ready!(write(s.as_mut(), cx))?;
    // Whatever the socket did not take now is flushed by the next write or read.
    if let Poll::Ready(Err(e)) = s.poll_flush(cx) {
        return Poll::Ready(Err(e));
    }
    Poll::Ready(Ok(n))
}

/// The reading half of a split [`Stream`].
#[derive(Debug)]
pub enum StreamRead<'a> {
    Plain(tcp::ReadHalf<'a>),
    Tls(tokio::io::ReadHalf<&'a mut Tls>),
    Unix(unix::ReadHalf<'a>),
}

impl AsyncRead for StreamRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamRead::Plain(r) => Pin::new(r).poll_read(cx, buf),
            StreamRead::Tls(r) => Pin::new(r).poll_read(cx, buf),
            StreamRead::Unix(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The writing half of a split [`Stream`].
#[derive(Debug)]
pub enum StreamWrite<'a> {
    Plain(tcp::WriteHalf<'a>),
    Tls {
        half: tokio::io::WriteHalf<&'a mut Tls>,
        /// A write returned before the socket took all its records.
        unflushed: bool,
    },
    Unix(unix::WriteHalf<'a>),
}

impl StreamWrite<'_> {
    /// Whether a flush must follow before everything written is on its way: only under TLS,
    /// after a write the socket could not take whole.
    pub fn unflushed(&self) -> bool {
        matches!(
            self,
            StreamWrite::Tls {
                unflushed: true,
                ..
            }
        )
    }

    fn poll_tls(
        half: &mut tokio::io::WriteHalf<&mut Tls>,
        unflushed: &mut bool,
        cx: &mut Context<'_>,
        write: impl FnOnce(
            Pin<&mut tokio::io::WriteHalf<&mut Tls>>,
            &mut Context<'_>,
        ) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(Pin::new(&mut *half).poll_flush(cx))?;
        *unflushed = false;
        let n = std::task::ready!(write(Pin::new(&mut *half), cx))?;
        match Pin::new(half).poll_flush(cx) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => *unflushed = true,
            Poll::Ready(Ok(())) => {}
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for StreamWrite<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_write(cx, buf),
            StreamWrite::Unix(w) => Pin::new(w).poll_write(cx, buf),
            StreamWrite::Tls { half, unflushed } => {
                Self::poll_tls(half, unflushed, cx, |h, cx| h.poll_write(cx, buf))
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            StreamWrite::Unix(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            StreamWrite::Tls { half, unflushed } => {
                Self::poll_tls(half, unflushed, cx, |h, cx| h.poll_write_vectored(cx, bufs))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            StreamWrite::Plain(w) => w.is_write_vectored(),
            StreamWrite::Unix(w) => w.is_write_vectored(),
            StreamWrite::Tls { half, .. } => half.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_flush(cx),
            StreamWrite::Unix(w) => Pin::new(w).poll_flush(cx),
            StreamWrite::Tls { half, unflushed } => {
                std::task::ready!(Pin::new(half).poll_flush(cx))?;
                *unflushed = false;
                Poll::Ready(Ok(()))
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_shutdown(cx),
            StreamWrite::Unix(w) => Pin::new(w).poll_shutdown(cx),
            StreamWrite::Tls { half, .. } => Pin::new(half).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::sync::Arc;

    /// pgweir's end of a TLS connection to a peer that reads nothing, and the peer.
    async fn tls_pair() -> (Stream, tokio_rustls::client::TlsStream<TcpStream>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
            connector.connect(name, tcp).await.unwrap()
        };
        let accept = async {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
            acceptor.accept(tcp).await.unwrap()
        };
        let (peer, ours) = tokio::join!(connect, accept);
        (Stream::Tls(Box::new(ours.into())), peer)
    }

    /// A write on the whole stream that the socket could not take leaves records in rustls'
    /// buffer; a split made afterwards (the relay's next transaction on a pinned server)
    /// must know to flush them, or a client waiting for them and pgweir waiting for the
    /// client wait for ever.
    #[tokio::test]
    async fn a_split_flushes_what_an_earlier_write_left() {
        let (mut ours, _peer) = tls_pair().await;
        let chunk = vec![7u8; 64 << 10];
        while !ours.pending_tls_write() {
            std::future::poll_fn(|cx| {
                let _ = Pin::new(&mut ours).poll_write(cx, &chunk);
                Poll::Ready(())
            })
            .await;
        }
        let (_read, write) = ours.split();
        assert!(write.unflushed(), "records left by an earlier write");
    }
}

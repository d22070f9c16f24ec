//! The first bytes of a client connection: PostgreSQL 17's direct TLS (a TLS ClientHello
//! straight away, which must name ALPN "postgresql"), or an SSLRequest answered 'S' and
//! followed by the handshake ('N' when client TLS is off, and always over a Unix socket, as
//! Postgres answers), or GSSENCRequest answered 'N'.
//! Whatever comes next stays in the buffer for [`crate::client`]'s startup, along with the
//! [`Transport`] the connection turned out to be.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::addr::Addr;
use super::stream::Stream;
use super::tls::{common_name, ClientTls, ALPN};
use crate::error::{Severity, SqlState};
use crate::net::transport::Transport;
use crate::protocol::backend;
use crate::protocol::startup::{self, StartupPacket};

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// The length of an SSLRequest or GSSENCRequest.
const REQUEST_LEN: usize = 8;

/// Negotiates encryption on a fresh plaintext or Unix-socket `stream`; `None` when the
/// connection ended or was refused here (the client was told why when it could be).
pub async fn negotiate(
    tls: Option<&ClientTls>,
    stream: Stream,
    buf: &mut BytesMut,
    peer: &Addr,
) -> Option<(Stream, Transport)> {
    let (Some(tls), Stream::Plain(tcp)) = (tls, &stream) else {
        return requests(None, stream, buf, peer).await;
    };
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await.ok()? == 0 {
        return None;
    }
    if first[0] == TLS_HANDSHAKE {
        let Stream::Plain(tcp) = stream else {
            return None;
        };
        return direct(tls, tcp, peer).await;
    }
    requests(Some(tls), stream, buf, peer).await
}

/// SSLRequests and GSSENCRequests until a startup packet comes; `tls` is `None` where
/// TLS cannot be had (switched off, or a Unix socket).
async fn requests(
    tls: Option<&ClientTls>,
    mut stream: Stream,
    buf: &mut BytesMut,
    peer: &Addr,
) -> Option<(Stream, Transport)> {
    loop {
        // The length first: anything but a request's goes to the startup reader at once,
        // which refuses a bad length without waiting for the bytes it announces.
        if !fill(&mut stream, buf, 4).await? {
            return Some(plaintext(stream, peer));
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len != REQUEST_LEN || !fill(&mut stream, buf, REQUEST_LEN).await? {
            return Some(plaintext(stream, peer));
        }
        let request = startup::parse(&buf[4..REQUEST_LEN]).ok();
        match request {
            Some(StartupPacket::SslRequest) => {
                buf.advance(REQUEST_LEN);
                let (Some(tls), Stream::Plain(tcp)) = (tls, &mut stream) else {
                    stream.write_all(b"N").await.ok()?;
                    continue;
                };
                if !buf.is_empty() {
                    // Bytes sent before the handshake would pass as if they were encrypted.
                    refuse(tcp, "received unencrypted data after SSL request").await;
                    return None;
                }
                tcp.write_all(b"S").await.ok()?;
                let Stream::Plain(tcp) = stream else {
                    return None;
                };
                return handshake(tls, tcp, peer).await;
            }
            Some(StartupPacket::GssEncRequest) => {
                buf.advance(REQUEST_LEN);
                stream.write_all(b"N").await.ok()?;
            }
            _ => return Some(plaintext(stream, peer)),
        }
    }
}

/// Reads until `buf` holds `n` bytes: `Some(false)` when the client stopped sending after
/// some (the startup reader then reports it), `None` when it sent nothing more at all.
async fn fill(stream: &mut Stream, buf: &mut BytesMut, n: usize) -> Option<bool> {
    while buf.len() < n {
        if stream.read_buf(buf).await.ok()? == 0 {
            return (!buf.is_empty()).then_some(false);
        }
    }
    Some(true)
}

/// A connection that stays without TLS, and what it tells authentication: over a Unix
/// socket, also the peer's user id.
fn plaintext(stream: Stream, peer: &Addr) -> (Stream, Transport) {
    let transport = Transport {
        addr: *peer,
        tls: false,
        cert_name: None,
        end_point: None,
        peer_uid: stream.peer_uid(),
    };
    (stream, transport)
}

/// Direct TLS: only with ALPN "postgresql", so a TLS client of another protocol pointed at
/// pgweir's port gets nowhere (Postgres 17 requires it too).
async fn direct(tls: &ClientTls, tcp: TcpStream, peer: &Addr) -> Option<(Stream, Transport)> {
    let (mut stream, transport) = handshake(tls, tcp, peer).await?;
    let alpn = match &stream {
        Stream::Tls(s) => s.get_ref().1.alpn_protocol() == Some(ALPN),
        Stream::Plain(_) | Stream::Unix(_) => false,
    };
    if !alpn {
        let message =
            "direct SSL connection was established without ALPN protocol negotiation extension";
        refuse(&mut stream, message).await;
        return None;
    }
    Some((stream, transport))
}

async fn handshake(tls: &ClientTls, tcp: TcpStream, peer: &Addr) -> Option<(Stream, Transport)> {
    let stream = match tls.acceptor.accept(tcp).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(client = %peer, error = %e, "client TLS handshake failed");
            return None;
        }
    };
    let cert_name = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| common_name(leaf));
    let transport = Transport {
        addr: *peer,
        tls: true,
        cert_name,
        end_point: tls.end_point.clone(),
        peer_uid: None,
    };
    Some((Stream::Tls(Box::new(stream.into())), transport))
}

/// Sends a FATAL protocol violation before the connection closes.
async fn refuse<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, message: &str) {
    let msg = backend::error_bytes(Severity::Fatal, SqlState::PROTOCOL_VIOLATION, message);
    let _ = w.write_all(&msg).await;
    let _ = w.flush().await;
}

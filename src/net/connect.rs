//! TLS towards Postgres, as `server_tls_sslmode` asks: an SSLRequest right after the TCP
//! connect, the handshake on 'S', plaintext on 'N' only for `prefer`. Also the channel-binding
//! data of the server's certificate, for SCRAM-SHA-256-PLUS.

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::stream::Stream;
use super::tls::{end_point, ServerTls};
use crate::config::ServerTlsMode;

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Why TLS to a server failed, for the client's 08006 error.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("server does not support TLS and server_tls_sslmode is \"{0}\"")]
    Refused(&'static str),
    #[error("server answered the SSLRequest with {:?} instead of 'S' or 'N'", char::from(*.0))]
    Unexpected(u8),
    #[error("{0}")]
    Handshake(std::io::Error),
    #[error("invalid host name {0:?} for TLS")]
    HostName(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl UpgradeError {
    /// Whether the connection broke rather than TLS being refused or failing to verify:
    /// a server shutting down resets connections in the middle of a handshake.
    pub fn is_passing(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            UpgradeError::Io(_) => true,
            UpgradeError::Handshake(e) => matches!(
                e.kind(),
                ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe | TimedOut
            ),
            _ => false,
        }
    }
}

/// Upgrades a fresh connection to `host` as `tls` says.
pub async fn upgrade(
    mut tcp: TcpStream,
    tls: &ServerTls,
    host: &str,
) -> Result<Stream, UpgradeError> {
    let Some(connector) = &tls.connector else {
        return Ok(Stream::Plain(tcp));
    };
    tcp.write_all(&SSL_REQUEST).await?;
    let answer = tcp.read_u8().await?;
    match answer {
        b'S' => {}
        b'N' if tls.mode == ServerTlsMode::Prefer => return Ok(Stream::Plain(tcp)),
        b'N' => return Err(UpgradeError::Refused(tls.mode.as_str())),
        other => return Err(UpgradeError::Unexpected(other)),
    }
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| UpgradeError::HostName(host.to_owned()))?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(UpgradeError::Handshake)?;
    Ok(Stream::Tls(Box::new(stream.into())))
}

/// The `tls-server-end-point` data of the server's certificate, when TLS is on and the
/// certificate names a hash.
pub fn server_end_point(stream: &Stream) -> Option<Vec<u8>> {
    match stream {
        Stream::Tls(s) => {
            let leaf = s.get_ref().1.peer_certificates()?.first()?;
            end_point(leaf)
        }
        Stream::Plain(_) | Stream::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsConfig;
    use crate::net::tls::Tls;

    /// An old or failing server answers the SSLRequest with an ErrorResponse ('E'): no
    /// fallback, and the byte is named as the character it is.
    #[tokio::test]
    async fn an_error_answer_is_refused_and_named() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.read_exact(&mut [0u8; 8]).await;
            let _ = s.write_all(b"E\0\0\0\x04").await;
        });
        let config = TlsConfig {
            server_sslmode: ServerTlsMode::Prefer,
            ..TlsConfig::default()
        };
        let tls = Tls::load(&config).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let err = upgrade(tcp, &tls.server, "localhost").await.unwrap_err();
        assert!(matches!(err, UpgradeError::Unexpected(b'E')), "{err}");
        assert!(err.to_string().contains("'E'"), "{err}");
    }
}

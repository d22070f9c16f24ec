//! Opening a server connection: TCP connect with TLS as `server_tls_sslmode` asks
//! ([`crate::net::connect`]), or the Unix socket in a `host` directory, StartupMessage, the authentication exchange the server asks for
//! (SCRAM-SHA-256, with channel binding under TLS, md5, cleartext or none), then
//! ParameterStatus and BackendKeyData up to the first ReadyForQuery. Without a plaintext
//! password, SCRAM passes through with the keys a client revealed and md5 answers from the
//! stored hash ([`crate::secret::passthrough`]).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use md5::{Digest, Md5};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use std::path::Path;
use tokio::io::AsyncWriteExt;

use tokio::net::{TcpStream, UnixStream};

use super::{
    upstream_error, ServerConn, ServerError, ServerId, ServerKey, ServerParams, ServerTarget,
    Stream,
};
use crate::net::addr::{is_socket_dir, socket_path, Addr};
use crate::net::connect::{server_end_point, upgrade};
use crate::secret::passthrough::{Gs2, KeyedScramClient, PassThroughError};
use crate::secret::StoredSecret;

/// Connects and logs in, all within `timeout`.
pub async fn connect(target: &ServerTarget, timeout: Duration) -> Result<ServerConn, ServerError> {
    connect_named(target, timeout, None).await
}

/// [`connect`] with an `application_name` in the startup packet, for pgweir's own
/// connections that others must tell apart in `pg_stat_activity` from the first moment
/// (a fleet's coordination connection).
pub async fn connect_named(
    target: &ServerTarget,
    timeout: Duration,
    application_name: Option<&str>,
) -> Result<ServerConn, ServerError> {
    let addr = target.address();
    let inner = connect_inner(target, &addr, application_name);
    match tokio::time::timeout(timeout, inner).await {
        Ok(r) => r,
        Err(_) => Err(ServerError::ConnectTimeout(addr)),
    }
}

async fn connect_inner(
    target: &ServerTarget,
    addr: &str,
    application_name: Option<&str>,
) -> Result<ServerConn, ServerError> {
    let (stream, peer) = open(target, addr).await?;
    let mut conn = ServerConn {
        id: ServerId::next(),
        stream,
        rbuf: BytesMut::with_capacity(8192),
        key: ServerKey { pid: 0, secret: 0 },
        params: ServerParams::default(),
        applied: Vec::new(),
        statements: Default::default(),
        addr: peer,
        created: Instant::now(),
        permit: Default::default(),
    };
    let mut out = BytesMut::new();
    let params = [
        ("user", target.user.as_str()),
        ("database", target.dbname.as_str()),
    ];
    let named = application_name.map(|n| ("application_name", n));
    frontend::startup_message(params.iter().copied().chain(named), &mut out)?;
    conn.stream.write_all(&out).await?;
    authenticate(&mut conn, target).await?;
    finish_startup(&mut conn).await?;
    Ok(conn)
}

/// The connection to the server: TCP, upgraded to TLS as `server_tls_sslmode` asks, or the
/// Unix socket when `host` is a directory (never under TLS there, as libpq and PgBouncer).
async fn open(target: &ServerTarget, addr: &str) -> Result<(Stream, Addr), ServerError> {
    let refused = |source| ServerError::Connect {
        addr: addr.to_owned(),
        source,
    };
    if is_socket_dir(&target.host) {
        let dir = Path::new(&target.host);
        let stream = UnixStream::connect(socket_path(dir, target.port))
            .await
            .map_err(refused)?;
        return Ok((Stream::Unix(stream), Addr::unix(dir, target.port)));
    }
    let stream = TcpStream::connect(addr).await.map_err(refused)?;
    stream.set_nodelay(true)?;
    crate::net::tcp::tune(&stream, &target.tcp)?;
    let peer = Addr::Tcp(stream.peer_addr()?);
    let tls = target.tls.load_full();
    let stream = upgrade(stream, &tls.server, &target.host)
        .await
        .map_err(|source| ServerError::Tls {
            addr: addr.to_owned(),
            source,
        })?;
    Ok((stream, peer))
}

/// Answers authentication requests until AuthenticationOk. A SCRAM exchange, once begun,
/// must end with the server's signature before AuthenticationOk counts: a server that skips
/// it never proved it knows the password or verifier (as libpq insists since Postgres 13).
async fn authenticate(conn: &mut ServerConn, target: &ServerTarget) -> Result<(), ServerError> {
    let secret = server_secret(target);
    let mut scram: Option<Sasl> = None;
    loop {
        let mut out = BytesMut::new();
        match conn.read_message().await? {
            Message::AuthenticationOk if scram.is_some() => {
                return Err(ServerError::Protocol("SASL exchange (no server signature)"))
            }
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let pw = plain(&secret, target)?;
                frontend::password_message(pw.as_bytes(), &mut out)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_response(&secret, target, body.salt())?;
                frontend::password_message(hash.as_bytes(), &mut out)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechs = body.mechanisms();
                let (mut offered, mut plus) = (false, false);
                while let Some(m) = fallible_iterator::FallibleIterator::next(&mut mechs)? {
                    offered |= m == SCRAM_SHA_256;
                    plus |= m == SCRAM_SHA_256_PLUS;
                }
                if !offered && !plus {
                    return Err(ServerError::UnsupportedAuth(
                        "SASL without SCRAM-SHA-256".into(),
                    ));
                }
                let (s, mechanism, first) = Sasl::start(&secret, target, &conn.stream, plus)?;
                frontend::sasl_initial_response(mechanism, &first, &mut out)?;
                scram = Some(s);
            }
            Message::AuthenticationSaslContinue(body) => {
                let s = scram
                    .as_mut()
                    .ok_or(ServerError::Protocol("SASL exchange"))?;
                let last = s.update(body.data(), target)?;
                frontend::sasl_response(&last, &mut out)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let mut s = scram.take().ok_or(ServerError::Protocol("SASL exchange"))?;
                s.finish(body.data(), target)?;
            }
            Message::ErrorResponse(e) => return Err(upstream_error(e.fields())),
            Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGss
            | Message::AuthenticationSspi => {
                return Err(ServerError::UnsupportedAuth("GSS/SSPI/Kerberos".into()))
            }
            _ => return Err(ServerError::Protocol("authentication")),
        }
        if !out.is_empty() {
            conn.stream.write_all(&out).await?;
        }
    }
}

/// The secret to log in with: the configured password, else what this user's clients were
/// last checked against (auth file or auth query).
fn server_secret(target: &ServerTarget) -> Option<StoredSecret> {
    let configured = target.password.as_ref();
    configured
        .and_then(|p| StoredSecret::parse(p.expose()).ok())
        .or_else(|| target.credentials.as_ref().and_then(|c| c.secret()))
}

/// The client side of a server's SCRAM exchange: with the plaintext password, or by
/// pass-through with a verifier and the ClientKey a client of this user revealed.
enum Sasl {
    Password(ScramSha256),
    Keys(KeyedScramClient),
}

impl Sasl {
    /// The exchange for `secret`, its mechanism and its client-first-message, with channel
    /// binding as [`channel_binding`] says, by password or by pass-through keys alike.
    fn start(
        secret: &Option<StoredSecret>,
        t: &ServerTarget,
        stream: &Stream,
        plus: bool,
    ) -> Result<(Sasl, &'static str, Vec<u8>), ServerError> {
        if let Some(StoredSecret::Scram(verifier)) = secret {
            let key = t.credentials.as_ref().and_then(|c| c.client_key(verifier));
            let key = key.ok_or_else(|| ServerError::NoPassThroughKeys(t.user.clone()))?;
            let (mechanism, gs2) = channel_binding(stream, plus);
            let client = KeyedScramClient::new(verifier.clone(), key, gs2);
            let first = client.first();
            return Ok((Sasl::Keys(client), mechanism, first));
        }
        let pw = plain(secret, t)?;
        let (mechanism, gs2) = channel_binding(stream, plus);
        let binding = match gs2 {
            Gs2::EndPoint(end_point) => ChannelBinding::tls_server_end_point(end_point),
            Gs2::Unused => ChannelBinding::unrequested(),
            Gs2::Unsupported => ChannelBinding::unsupported(),
        };
        let client = ScramSha256::new(pw.as_bytes(), binding);
        let first = client.message().to_vec();
        Ok((Sasl::Password(client), mechanism, first))
    }

    /// Takes the server-first-message; returns the client-final-message.
    fn update(&mut self, data: &[u8], t: &ServerTarget) -> Result<Vec<u8>, ServerError> {
        match self {
            Sasl::Password(s) => {
                s.update(data)?;
                Ok(s.message().to_vec())
            }
            Sasl::Keys(k) => k.update(data).map_err(|e| pass_through(e, t)),
        }
    }

    /// Checks the server-final-message.
    fn finish(&mut self, data: &[u8], t: &ServerTarget) -> Result<(), ServerError> {
        match self {
            Sasl::Password(s) => Ok(s.finish(data)?),
            Sasl::Keys(k) => k.finish(data).map_err(|e| pass_through(e, t)),
        }
    }
}

fn pass_through(source: PassThroughError, t: &ServerTarget) -> ServerError {
    ServerError::PassThrough {
        user: t.user.clone(),
        source,
    }
}

/// SCRAM-SHA-256-PLUS bound to the server's certificate when TLS is on and the server offers
/// it; else plain SCRAM, saying (`y`) that pgweir could have bound the channel under TLS.
fn channel_binding(stream: &Stream, plus: bool) -> (&'static str, Gs2) {
    match server_end_point(stream) {
        Some(end_point) if plus => (SCRAM_SHA_256_PLUS, Gs2::EndPoint(end_point)),
        _ if stream.is_tls() => (SCRAM_SHA_256, Gs2::Unused),
        _ => (SCRAM_SHA_256, Gs2::Unsupported),
    }
}

/// The plaintext password, which SCRAM and cleartext logins need.
fn plain<'a>(secret: &'a Option<StoredSecret>, t: &ServerTarget) -> Result<&'a str, ServerError> {
    match secret {
        Some(StoredSecret::Plain(p)) => Ok(p),
        _ => Err(ServerError::NoPassword(t.user.clone())),
    }
}

/// md5 works from the plaintext or from a stored `md5…` hash alike.
fn md5_response(
    secret: &Option<StoredSecret>,
    t: &ServerTarget,
    salt: [u8; 4],
) -> Result<String, ServerError> {
    match secret {
        Some(StoredSecret::Plain(p)) => Ok(md5_hash(t.user.as_bytes(), p.as_bytes(), salt)),
        Some(StoredSecret::Md5(hex)) => {
            let mut h = Md5::new();
            h.update(hex.as_bytes());
            h.update(salt);
            Ok(format!("md5{:x}", h.finalize()))
        }
        _ => Err(ServerError::NoPassword(t.user.clone())),
    }
}

/// Collects ParameterStatus and BackendKeyData up to ReadyForQuery.
async fn finish_startup(conn: &mut ServerConn) -> Result<(), ServerError> {
    loop {
        match conn.read_message().await? {
            Message::ParameterStatus(p) => {
                let (n, v) = (p.name()?.to_owned(), p.value()?.to_owned());
                conn.params.set(&n, &v);
            }
            Message::BackendKeyData(k) => {
                conn.key = ServerKey {
                    pid: k.process_id(),
                    secret: k.secret_key(),
                }
            }
            Message::ReadyForQuery(_) => return Ok(()),
            Message::ErrorResponse(e) => return Err(upstream_error(e.fields())),
            Message::NoticeResponse(_) => {}
            _ => return Err(ServerError::Protocol("startup")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TLS as configured by default (`server_tls_sslmode = prefer`, no files).
    fn no_tls() -> crate::net::tls::TlsState {
        crate::net::tls::Tls::load(&Default::default())
            .unwrap()
            .into_state()
    }

    #[test]
    fn md5_from_stored_hash_equals_md5_from_plaintext() {
        let t = ServerTarget {
            host: String::new(),
            port: 0,
            dbname: String::new(),
            user: "alice".into(),
            password: None,
            credentials: None,
            tls: no_tls(),
            tcp: Default::default(),
        };
        let salt = [1, 2, 3, 4];
        let from_plain = md5_response(&Some(StoredSecret::Plain("pw".into())), &t, salt).unwrap();
        let stored = format!("{:x}", Md5::digest(b"pwalice"));
        let from_hash = md5_response(&Some(StoredSecret::Md5(stored)), &t, salt).unwrap();
        assert_eq!(from_plain, from_hash);
        assert!(md5_response(&None, &t, salt).is_err());
    }

    /// A server (or someone in the middle) that starts SCRAM and then says AuthenticationOk
    /// without its signature must not get a logged-in connection.
    #[tokio::test]
    async fn authentication_ok_without_the_server_signature_is_refused() {
        use crate::secret::passthrough::Credentials;
        use std::sync::Arc;
        use tokio::io::AsyncReadExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            // The SSLRequest (`server_tls_sslmode = prefer`), refused; then the startup.
            let _ = s.read(&mut buf).await;
            s.write_all(b"N").await.unwrap();
            let _ = s.read(&mut buf).await;
            let mechanisms = b"SCRAM-SHA-256\0\0";
            let mut out = BytesMut::new();
            out.extend_from_slice(b"R");
            out.extend_from_slice(&(8 + mechanisms.len() as i32).to_be_bytes());
            out.extend_from_slice(&10i32.to_be_bytes());
            out.extend_from_slice(mechanisms);
            s.write_all(&out).await.unwrap();
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I").await;
            let _ = s.read(&mut buf).await;
        });
        let credentials = Arc::new(Credentials::default());
        credentials.remember(&StoredSecret::Plain("pw".into()), None);
        let t = ServerTarget {
            host: "127.0.0.1".into(),
            port,
            dbname: "db".into(),
            user: "u".into(),
            password: None,
            credentials: Some(credentials),
            tls: no_tls(),
            tcp: Default::default(),
        };
        let err = connect(&t, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, ServerError::Protocol(_)), "{err}");
    }
}

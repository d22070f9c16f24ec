//! The first step of a login: the untagged startup packets up to the StartupMessage.
//! SSLRequest and GSSENCRequest after TLS negotiation get `N`; a CancelRequest is forwarded
//! and ends the connection; plaintext over TCP is refused when `client_tls_sslmode` requires
//! TLS; a newer protocol minor version or `_pq_.` options are answered with what pgweir
//! speaks; replication connections are refused. What is left is who the client is and the
//! session settings it asked for.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::{forward_cancel, ClientError, Who};
use crate::app::App;
use crate::cancel::ClientKey;
use crate::config::Config;
use crate::net::read;
use crate::net::stream::Stream;
use crate::net::transport::Transport;
use crate::protocol::startup::{self, StartupMessage, StartupPacket};
use crate::protocol::{backend, ProtocolError, MAX_STARTUP_PACKET};

/// Startup parameters that are about the connection, not session settings.
const CONNECTION_PARAMS: &[&str] = &["user", "database", "options", "replication"];

/// A client that asked to log in.
#[derive(Debug)]
pub struct Startup {
    pub user: String,
    /// The database asked for, or the user's name when none was.
    pub database: String,
    pub message: StartupMessage,
}

impl Startup {
    /// The startup parameters that are session settings, with `options` expanded, less
    /// those in `ignore_startup_parameters` (`options` there ignores the whole of it, as in
    /// PgBouncer).
    pub fn session_settings(&self, ignore: &[String]) -> Vec<(String, String)> {
        let ignored = |k: &str| ignore.iter().any(|i| i.eq_ignore_ascii_case(k));
        let m = &self.message;
        let mut out: Vec<(String, String)> = m
            .params
            .iter()
            .filter(|(k, _)| !CONNECTION_PARAMS.contains(&k.as_str()) && !k.starts_with("_pq_."))
            .cloned()
            .collect();
        if let Some(opts) = m.get("options").filter(|_| !ignored("options")) {
            out.extend(startup::parse_options(opts));
        }
        out.retain(|(k, _)| !ignored(k));
        out
    }
}

/// Reads startup packets until the client asks to log in. `None` when the connection was
/// only a CancelRequest.
pub async fn receive(
    app: &App,
    config: &Config,
    stream: &mut Stream,
    buf: &mut BytesMut,
    transport: &Transport,
    who: &Who,
) -> Result<Option<Startup>, ClientError> {
    let message = loop {
        match read_startup(stream, buf).await? {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                stream.write_all(b"N").await?;
            }
            StartupPacket::Cancel { pid, secret } => {
                forward_cancel(app, ClientKey { pid, secret }, true).await;
                return Ok(None);
            }
            StartupPacket::Startup(m) => break m,
        }
    };
    // Over a Unix socket there is no TLS to require, as PgBouncer and Postgres agree.
    let tls_mode = config.pgweir.tls.client_sslmode;
    let unix = transport.addr.ip().is_none();
    if tls_mode.requires_tls() && !transport.tls && !unix {
        return Err(ClientError::TlsRequired(tls_mode));
    }
    let mut out = BytesMut::new();
    negotiate_version(&message, &mut out);
    if message
        .get("replication")
        .is_some_and(|r| r != "false" && r != "0")
    {
        return Err(ClientError::Replication);
    }
    let user = message
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or(ClientError::NoUser)?
        .to_owned();
    let database = message
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    who.set(&database, &user);
    if !out.is_empty() {
        stream.write_all(&out).await?;
    }
    Ok(Some(Startup {
        user,
        database,
        message,
    }))
}

/// Answers a newer 3.x minor version, and any `_pq_.` options, with what pgweir speaks.
fn negotiate_version(m: &StartupMessage, out: &mut BytesMut) {
    let unknown: Vec<String> = m
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if m.minor > 0 || !unknown.is_empty() {
        backend::negotiate_protocol_version(out, 0, &unknown);
    }
}

/// Reads one untagged startup-phase packet.
async fn read_startup(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<StartupPacket, ClientError> {
    read::fill(stream, buf, 4).await?;
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(ProtocolError::BadStartupLength(len).into());
    }
    read::fill(stream, buf, len).await?;
    let packet = buf.split_to(len);
    Ok(startup::parse(&packet[4..])?)
}

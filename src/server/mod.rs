//! Connections from pgweir to a Postgres server: opening and logging in ([`login`]), the
//! parameters the server reported, its real cancel key, and the few queries pgweir runs on
//! its own behalf (resets, rollbacks, SETs) whose responses no client sees.

pub mod catalog;
pub mod login;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Secret, TcpSettings};
use crate::error::{ClientVisible, SqlState};
use crate::net::addr::{is_socket_dir, socket_path, Addr};
use crate::net::connect::UpgradeError;
use crate::net::stream::Stream;
use crate::net::tls::TlsState;
use crate::prepared::ServerStatements;
use crate::protocol::{backend, TxStatus};
use crate::secret::passthrough::{Credentials, PassThroughError};

/// Identifies one server connection in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerId(pub u64);

impl ServerId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ServerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// The cancel key a Postgres backend gave pgweir; never shown to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKey {
    pub pid: i32,
    pub secret: i32,
}

/// Where and as whom a pool logs in.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<Secret>,
    /// What this user's clients proved, for logging in without a usable `password`: the
    /// secret from the auth file or auth query, and SCRAM pass-through keys.
    pub credentials: Option<Arc<Credentials>>,
    /// TLS in force towards servers; read at each connect, so a reload applies to new ones.
    pub tls: TlsState,
    /// Keepalive and user timeout of the sockets, as the pool was made with.
    pub tcp: TcpSettings,
}

impl ServerTarget {
    /// Where the server is, for messages and SHOW output: `host:port`, or the socket file
    /// when `host` is a directory.
    pub fn address(&self) -> String {
        if is_socket_dir(&self.host) {
            socket_path(Path::new(&self.host), self.port)
                .display()
                .to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Reported parameters a client may change, so they can differ between sessions and must
/// be compared each time a client gets a server. Kept in fixed slots for a cheap comparison.
pub const TRACKED: [&str; 7] = [
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
    "default_transaction_read_only",
];

/// Where `standard_conforming_strings` sits in [`TRACKED`] (checked when compiling).
pub const SCS_SLOT: usize = 5;
const _: () = assert!(matches!(
    TRACKED[SCS_SLOT].as_bytes(),
    b"standard_conforming_strings"
));

/// Parameter values a server reported with ParameterStatus. Every client holds a copy of
/// its pool's (the values it believes in), so the copy is cheap: the [`TRACKED`] ones, which
/// clients change, each in its own shared string; the others (server_version, is_superuser,
/// ...), which stay as the server reported them, in one list shared by all copies until one
/// of them changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerParams {
    /// Parameters outside [`TRACKED`], in arrival order.
    others: Arc<Vec<(String, String)>>,
    tracked: [Option<Arc<str>>; TRACKED.len()],
}

impl ServerParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        if let Some(i) = tracked_slot(name) {
            return self.tracked(i);
        }
        self.others
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        if self.get(name) == Some(value) {
            return;
        }
        if let Some(i) = tracked_slot(name) {
            self.tracked[i] = Some(Arc::from(value));
            return;
        }
        let others = Arc::make_mut(&mut self.others);
        match others
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => value.clone_into(v),
            None => others.push((name.to_owned(), value.to_owned())),
        }
    }

    /// The value in [`TRACKED`] slot `i`.
    pub fn tracked(&self, i: usize) -> Option<&str> {
        self.tracked.get(i).and_then(|v| v.as_deref())
    }

    /// Every parameter: the untracked ones in arrival order, then the tracked ones.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let others = self.others.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let tracked = TRACKED
            .iter()
            .zip(&self.tracked)
            .filter_map(|(k, v)| Some((*k, v.as_deref()?)));
        others.chain(tracked)
    }
}

/// The [`TRACKED`] slot of a parameter name, whatever its case.
pub fn tracked_slot(name: &str) -> Option<usize> {
    TRACKED.iter().position(|t| t.eq_ignore_ascii_case(name))
}

/// Failures talking to a server.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("could not connect to server {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to server {0}")]
    ConnectTimeout(String),
    #[error("TLS to server {addr} failed: {source}")]
    Tls { addr: String, source: UpgradeError },
    #[error("server connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("server closed the connection unexpectedly")]
    Closed,
    /// The server refused with an ErrorResponse; passed on as Postgres wrote it.
    #[error("{message}")]
    Upstream { code: String, message: String },
    #[error("pgweir has no password it can use to log in to the server as user \"{0}\"")]
    NoPassword(String),
    #[error("pgweir holds only a SCRAM verifier for user \"{0}\" and no client of that user has logged in to this database with its password (SCRAM or cleartext) since it started, so it cannot log in to the server as them yet")]
    NoPassThroughKeys(String),
    #[error("SCRAM pass-through login as user \"{user}\" failed: {source}")]
    PassThrough {
        user: String,
        source: PassThroughError,
    },
    #[error("server requested an unsupported authentication method {0}")]
    UnsupportedAuth(String),
    #[error("server sent an unexpected message during {0}")]
    Protocol(&'static str),
}

impl ServerError {
    /// Whether Postgres refused the login for a connection limit (53300: its
    /// `max_connections`, or a role's or a database's `CONNECTION LIMIT`): a place frees
    /// up when any of its connections closes.
    pub fn is_connection_limit(&self) -> bool {
        matches!(self, ServerError::Upstream { code, .. } if code == "53300")
    }

    /// Whether the same login may work in a moment: Postgres unreachable, shutting down,
    /// starting up or out of connections. Not a refused password, a missing database or a
    /// setting pgweir cannot use, which only a person can fix.
    pub fn is_passing(&self) -> bool {
        match self {
            ServerError::Connect { .. }
            | ServerError::ConnectTimeout(_)
            | ServerError::Io(_)
            | ServerError::Closed => true,
            ServerError::Tls { source, .. } => source.is_passing(),
            ServerError::Upstream { code, .. } => {
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(code.as_str(), "57P01" | "57P02" | "57P03")
            }
            _ => false,
        }
    }
}

impl ClientVisible for ServerError {
    fn sqlstate(&self) -> SqlState {
        match self {
            ServerError::Upstream { code, .. } => {
                // Codes are ASCII from the server; keep the known static ones, else class 08.
                KNOWN_UPSTREAM
                    .iter()
                    .copied()
                    .find(|s| s.0 == code)
                    .unwrap_or(SqlState::CONNECTION_FAILURE)
            }
            ServerError::NoPassword(_) => SqlState::INVALID_PASSWORD,
            ServerError::Protocol(_) => SqlState::PROTOCOL_VIOLATION,
            _ => SqlState::CONNECTION_FAILURE,
        }
    }
}

/// Upstream login failures whose SQLSTATE a client should see unchanged.
const KNOWN_UPSTREAM: &[SqlState] = &[
    SqlState::INVALID_PASSWORD,
    SqlState::INVALID_AUTHORIZATION,
    SqlState::INVALID_CATALOG_NAME,
    SqlState::TOO_MANY_CONNECTIONS,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::ADMIN_SHUTDOWN,
];

/// A logged-in server connection.
#[derive(Debug)]
pub struct ServerConn {
    pub id: ServerId,
    pub stream: Stream,
    /// Bytes read from the server not yet relayed or consumed.
    pub rbuf: BytesMut,
    pub key: ServerKey,
    /// Current values of the parameters the server reports.
    pub params: ServerParams,
    /// Session settings the server does not report, as pgweir last set or read them,
    /// sorted by name: what a client's settings are compared with.
    pub applied: Vec<(String, String)>,
    /// Which of the registry's prepared statements this server has.
    pub statements: ServerStatements,
    /// Where to send a CancelRequest for this backend.
    pub addr: Addr,
    pub created: Instant,
    /// This connection's share of max_db_connections / max_user_connections.
    pub permit: crate::budget::Permit,
}

impl ServerConn {
    /// Whether the socket is still usable: a closed socket or unsolicited bytes (such as the
    /// FATAL a terminated backend sends) mean it must not be handed to a client.
    pub fn looks_alive(&self) -> bool {
        self.rbuf.is_empty() && self.stream.is_quiet()
    }

    /// Runs `sql` with the simple protocol and waits for ReadyForQuery, recording any
    /// ParameterStatus. Returns the transaction status, or the server's error.
    pub async fn run_internal(&mut self, sql: &str) -> Result<TxStatus, ServerError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.statements.forget_unnamed();
        self.stream.write_all(&out).await?;
        let mut failure = None;
        loop {
            match self.read_message().await? {
                Message::ReadyForQuery(b) => {
                    let status = TxStatus::from_byte(b.status())
                        .ok_or(ServerError::Protocol("internal query"))?;
                    return match failure {
                        Some(e) => Err(e),
                        None => Ok(status),
                    };
                }
                Message::ParameterStatus(p) => {
                    let (n, v) = (p.name()?, p.value()?);
                    self.params.set(n, v);
                }
                Message::ErrorResponse(e) => failure = Some(upstream_error(e.fields())),
                _ => {}
            }
        }
    }

    /// Runs `sql` (one or more statements) with the simple protocol and returns the rows of
    /// every result, text values. Notifications that arrive meanwhile belong to the client
    /// and are returned re-encoded for it; ParameterStatus is recorded as in
    /// [`ServerConn::run_internal`].
    pub async fn query_rows(&mut self, sql: &str) -> Result<InternalRows, ServerError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.statements.forget_unnamed();
        self.stream.write_all(&out).await?;
        let mut result = InternalRows::default();
        let mut failure = None;
        loop {
            match self.read_message().await? {
                Message::ReadyForQuery(_) => {
                    return match failure {
                        Some(e) => Err(e),
                        None => Ok(result),
                    };
                }
                Message::DataRow(row) => {
                    let buf = row.buffer();
                    let values = row
                        .ranges()
                        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())))
                        .collect()?;
                    result.rows.push(values);
                }
                Message::NotificationResponse(n) => {
                    let (channel, payload) = (n.channel()?, n.message()?);
                    backend::notification(
                        &mut result.notifications,
                        n.process_id(),
                        channel,
                        payload,
                    );
                }
                Message::ParameterStatus(p) => {
                    let (n, v) = (p.name()?, p.value()?);
                    self.params.set(n, v);
                }
                Message::ErrorResponse(e) => failure = Some(upstream_error(e.fields())),
                _ => {}
            }
        }
    }

    /// Reads one whole message from the server.
    pub(crate) async fn read_message(&mut self) -> Result<Message, ServerError> {
        loop {
            if let Some(m) = Message::parse(&mut self.rbuf)? {
                return Ok(m);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ServerError::Closed);
            }
        }
    }

    /// Sends a CancelRequest for this backend over a new connection.
    pub async fn cancel(addr: Addr, key: ServerKey) -> std::io::Result<()> {
        let mut s = match addr {
            Addr::Tcp(a) => Stream::Plain(TcpStream::connect(a).await?),
            Addr::Unix { path, .. } => Stream::Unix(tokio::net::UnixStream::connect(path).await?),
        };
        let mut buf = BytesMut::new();
        frontend::cancel_request(key.pid, key.secret, &mut buf);
        s.write_all(&buf).await?;
        // Postgres closes the connection once it has read the request.
        let _ = s.read(&mut [0u8; 1]).await;
        Ok(())
    }
}

/// What [`ServerConn::query_rows`] got back.
#[derive(Debug, Default)]
pub struct InternalRows {
    pub rows: Vec<Vec<Option<String>>>,
    /// NotificationResponse messages for the client, ready to send.
    pub notifications: BytesMut,
}

/// Builds [`ServerError::Upstream`] from ErrorResponse fields.
pub(crate) fn upstream_error(mut fields: ErrorFields<'_>) -> ServerError {
    let (mut code, mut message) = (None, None);
    while let Ok(Some(f)) = fields.next() {
        let value = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'C' => code = Some(value),
            b'M' => message = Some(value),
            _ => {}
        }
    }
    ServerError::Upstream {
        code: code.unwrap_or_else(|| SqlState::CONNECTION_FAILURE.0.to_owned()),
        message: message.unwrap_or_else(|| "server error".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_what_they_do_not_change() {
        let mut pool = ServerParams::default();
        pool.set("server_version", "15.8");
        pool.set("application_name", "");
        pool.set("TimeZone", "UTC");
        let mut client = pool.clone();
        client.set("application_name", "psql");
        client.set("timezone", "UTC");
        assert!(Arc::ptr_eq(&pool.others, &client.others));
        assert_eq!(client.get("Application_Name"), Some("psql"));
        assert_eq!(pool.get("application_name"), Some(""));
        client.set("server_version", "16.4");
        assert!(!Arc::ptr_eq(&pool.others, &client.others));
        let all: Vec<_> = client.iter().collect();
        assert_eq!(
            all,
            [
                ("server_version", "16.4"),
                ("application_name", "psql"),
                ("TimeZone", "UTC")
            ]
        );
    }
    #[test]
    fn a_restart_passes_and_a_refusal_lasts() {
        let upstream = |code: &str| ServerError::Upstream {
            code: code.to_owned(),
            message: String::new(),
        };
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let tls = |source| ServerError::Tls {
            addr: "db:5432".to_owned(),
            source,
        };
        for passing in [
            upstream("57P01"),
            upstream("57P03"),
            upstream("53300"),
            upstream("08006"),
            ServerError::Closed,
            ServerError::ConnectTimeout("db:5432".to_owned()),
            tls(UpgradeError::Handshake(reset())),
        ] {
            assert!(passing.is_passing(), "{passing:?}");
        }
        assert!(upstream("53300").is_connection_limit());
        assert!(!upstream("53200").is_connection_limit());
        assert!(!ServerError::Closed.is_connection_limit());
        let invalid = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad certificate");
        for lasting in [
            upstream("28P01"),
            upstream("3D000"),
            upstream("57P04"),
            ServerError::NoPassword("u".to_owned()),
            tls(UpgradeError::Refused("require")),
            tls(UpgradeError::Handshake(invalid)),
        ] {
            assert!(!lasting.is_passing(), "{lasting:?}");
        }
    }
}

//! Why a client's session ended early, and the SQLSTATE each reason shows the client.

use std::time::Duration;

use thiserror::Error;

use crate::admin::ConsoleError;
use crate::auth::query::AuthQueryError;
use crate::clients::Stopped;
use crate::config::ClientTlsMode;
use crate::error::{ClientVisible, SqlState};
use crate::net::read::ReadError;
use crate::pool::PoolError;
use crate::protocol::ProtocolError;
use crate::secret::scram::ScramError;
use crate::server::ServerError;

/// Why a client session ended early.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A client message Postgres would refuse, in Postgres's words.
    #[error("{0}")]
    Malformed(&'static str),
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    /// No line of `auth_hba_file` matches, or the first that does says `reject`; Postgres's
    /// words, with `verdict` saying which.
    #[error("{verdict} for host \"{host}\", user \"{user}\", database \"{database}\", SSL {ssl}")]
    HbaRefused {
        verdict: &'static str,
        /// The client's IP address, or `[local]` over a Unix socket (Postgres's words).
        host: String,
        user: String,
        database: String,
        ssl: &'static str,
    },
    #[error("certificate authentication failed for user \"{0}\"")]
    CertFailed(String),
    #[error("Peer authentication failed for user \"{0}\"")]
    PeerFailed(String),
    #[error(transparent)]
    Setting(#[from] crate::server::catalog::Refusal),
    #[error(transparent)]
    AuthQuery(#[from] AuthQueryError),
    #[error(transparent)]
    Sasl(ScramError),
    #[error("no user name given in the startup packet")]
    NoUser,
    #[error("SSL required: client_tls_sslmode = \"{}\" refuses unencrypted connections", .0.as_str())]
    TlsRequired(ClientTlsMode),
    #[error("replication connections are not supported by pgweir")]
    Replication,
    #[error("not allowed: user \"{0}\" is in neither admin_users nor stats_users")]
    ConsoleDenied(String),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("client_login_timeout: client did not log in within {0:?}")]
    LoginTimeout(Duration),
    #[error("too many client connections for {kind} \"{name}\" ({setting})")]
    TooManyClients {
        kind: &'static str,
        name: String,
        setting: &'static str,
    },
    #[error("client_idle_timeout: terminating connection after {0:?} idle")]
    IdleTimeout(Duration),
    #[error("idle_transaction_timeout: terminating connection idle in a transaction for {0:?}")]
    IdleInTransaction(Duration),
    #[error("query_timeout: query ran longer than {0:?} and was canceled")]
    QueryTimeout(Duration),
    /// Shutdown, or a KILL on the admin console.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error("database \"{0}\" does not allow connections: disabled on the admin console")]
    Disabled(String),
    /// A takeover's successor could not take the client over; it should reconnect.
    #[error("pgweir is restarting and could not hand this connection over ({0}); reconnect")]
    HandoverFailed(&'static str),
    /// Handed to a takeover's successor, which serves it from here on.
    #[error("handed over to the new pgweir process")]
    HandedOver,
    #[error("client connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("client closed the connection")]
    Closed,
}

impl From<ReadError> for ClientError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Protocol(e) => ClientError::Protocol(e),
            ReadError::Io(e) => ClientError::Io(e),
            ReadError::Closed => ClientError::Closed,
        }
    }
}

impl From<ConsoleError> for ClientError {
    fn from(e: ConsoleError) -> Self {
        match e {
            ConsoleError::Read(e) => e.into(),
            ConsoleError::Malformed(m) => ClientError::Malformed(m),
            ConsoleError::Write(e) => ClientError::Io(e),
            ConsoleError::Stopped(s) => s.into(),
        }
    }
}

impl ClientError {
    /// A SCRAM failure is a wrong password unless the client broke the protocol.
    pub(super) fn from_scram(e: ScramError, user: &str) -> Self {
        match e {
            ScramError::BadProof => ClientError::AuthFailed(user.to_owned()),
            e => ClientError::Sasl(e),
        }
    }

    /// Whether the client can still be told about it.
    pub(super) fn reportable(&self) -> bool {
        !matches!(
            self,
            ClientError::Io(_) | ClientError::Closed | ClientError::HandedOver
        )
    }
}

impl ClientVisible for ClientError {
    fn sqlstate(&self) -> SqlState {
        match self {
            ClientError::Protocol(e) => e.sqlstate(),
            ClientError::AuthFailed(_) => SqlState::INVALID_PASSWORD,
            ClientError::Sasl(e) => SqlState(e.sqlstate()),
            ClientError::NoUser
            | ClientError::ConsoleDenied(_)
            | ClientError::HbaRefused { .. }
            | ClientError::CertFailed(_)
            | ClientError::PeerFailed(_)
            | ClientError::TlsRequired(_) => SqlState::INVALID_AUTHORIZATION,
            ClientError::Replication => SqlState::FEATURE_NOT_SUPPORTED,
            ClientError::Setting(r) => r.sqlstate(),
            ClientError::Pool(e) => e.sqlstate(),
            ClientError::Server(e) => e.sqlstate(),
            ClientError::AuthQuery(_) => SqlState::CONNECTION_FAILURE,
            ClientError::LoginTimeout(_) | ClientError::Disabled(_) => SqlState::CANNOT_CONNECT_NOW,
            ClientError::TooManyClients { .. } => SqlState::TOO_MANY_CONNECTIONS,
            ClientError::IdleTimeout(_) => SqlState::IDLE_SESSION_TIMEOUT,
            ClientError::IdleInTransaction(_) => SqlState::IDLE_IN_TRANSACTION_TIMEOUT,
            ClientError::QueryTimeout(_) => SqlState::QUERY_CANCELED,
            ClientError::Stopped(_) | ClientError::HandoverFailed(_) | ClientError::HandedOver => {
                SqlState::ADMIN_SHUTDOWN
            }
            ClientError::Malformed(_) | ClientError::Io(_) | ClientError::Closed => {
                SqlState::PROTOCOL_VIOLATION
            }
        }
    }
}

//! SQLSTATE codes pgweir sends to clients, and the one trait every module's error enum
//! implements so the client edge can turn any failure into the right ErrorResponse.

use std::fmt;

/// A five-character SQLSTATE, as Postgres defines them in Appendix A of its manual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlState(pub &'static str);

impl SqlState {
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    pub const CONNECTION_FAILURE: SqlState = SqlState("08006");
    pub const SQLCLIENT_UNABLE_TO_ESTABLISH: SqlState = SqlState("08001");
    pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
    pub const INVALID_AUTHORIZATION: SqlState = SqlState("28000");
    pub const INVALID_CATALOG_NAME: SqlState = SqlState("3D000");
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    pub const ADMIN_SHUTDOWN: SqlState = SqlState("57P01");
    pub const CANNOT_CONNECT_NOW: SqlState = SqlState("57P03");
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    pub const IDLE_SESSION_TIMEOUT: SqlState = SqlState("57P05");
    pub const IDLE_IN_TRANSACTION_TIMEOUT: SqlState = SqlState("25P03");
    pub const ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25001");
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
    pub const DUPLICATE_PREPARED_STATEMENT: SqlState = SqlState("42P05");
    pub const INVALID_SQL_STATEMENT_NAME: SqlState = SqlState("26000");
    pub const IN_FAILED_SQL_TRANSACTION: SqlState = SqlState("25P02");
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState("54000");
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// How bad an error sent to a client is: `Fatal` ends its connection, `Error` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// Implemented by every module error that can reach a client.
pub trait ClientVisible: fmt::Display {
    fn sqlstate(&self) -> SqlState;
}

//! The PostgreSQL v3 wire protocol as far as pgweir needs it: message tags, the streaming
//! [`framer::Framer`] the relay uses, startup packets, and builders for the backend messages
//! pgweir writes itself. Messages pgweir only forwards are never decoded.

pub mod backend;
pub mod framer;
pub mod startup;

use thiserror::Error;

use crate::error::{ClientVisible, SqlState};

/// Frontend (client → server) message tags the pooler acts on.
pub mod fe {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const TERMINATE: u8 = b'X';
    pub const PASSWORD: u8 = b'p';

    /// Whether a logged-in client may send a message of this type; Postgres ends the
    /// session on any other (`invalid frontend message type`).
    pub fn is_known(tag: u8) -> bool {
        matches!(
            tag,
            QUERY
                | PARSE
                | BIND
                | DESCRIBE
                | EXECUTE
                | CLOSE
                | SYNC
                | FLUSH
                | FUNCTION_CALL
                | COPY_DATA
                | COPY_DONE
                | COPY_FAIL
                | TERMINATE
        )
    }
}

/// Backend (server → client) message tags the pooler acts on.
pub mod be {
    pub const AUTHENTICATION: u8 = b'R';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const NO_DATA: u8 = b'n';
    pub const EMPTY_QUERY: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
}

/// The NUL-terminated string at the start of `body`, and what follows it.
pub fn split_cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = body.iter().position(|&b| b == 0)?;
    Some((&body[..end], &body[end + 1..]))
}

/// Transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

impl TxStatus {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'I' => Some(TxStatus::Idle),
            b'T' => Some(TxStatus::InTransaction),
            b'E' => Some(TxStatus::Failed),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }
}

/// The largest startup packet accepted, as in Postgres (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// Violations of the wire protocol by a peer.
#[derive(Debug, Error)]
pub enum ProtocolError {
    #[error("invalid message length {0}")]
    BadLength(u32),
    #[error("invalid startup packet length {0}")]
    BadStartupLength(usize),
    #[error("invalid startup packet layout: {0}")]
    BadStartup(&'static str),
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// Postgres's words, the type as a number.
    #[error("invalid frontend message type {0}")]
    UnknownType(u8),
}

impl ClientVisible for ProtocolError {
    fn sqlstate(&self) -> SqlState {
        match self {
            ProtocolError::UnsupportedVersion { .. } => SqlState::FEATURE_NOT_SUPPORTED,
            _ => SqlState::PROTOCOL_VIOLATION,
        }
    }
}

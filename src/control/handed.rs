//! A logged-in client between transactions, as it crosses from one pgweir process to the
//! next in a takeover: its session in the form the control connection carries (JSON, byte
//! strings base64), its socket passed alongside. [`crate::client::handoff`] makes it from a
//! session and makes a session of it again.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sql::RouteSetting;

/// A session as it crosses from one process to the next. Byte strings are base64.
#[derive(Serialize, Deserialize)]
pub struct HandedClient {
    pub database: String,
    pub user: String,
    /// The client's TCP address; `None` on the Unix socket.
    pub tcp_peer: Option<SocketAddr>,
    pub cancel: (i32, i32),
    /// Reported parameters as the client believes them, and its other settings.
    pub reported: Vec<(String, String)>,
    pub other: Vec<(String, String)>,
    pub custom_names: Vec<String>,
    /// Named statements: the client's name, and the Parse body after it.
    pub statements: Vec<(String, String)>,
    /// The unnamed statement's Parse body, when it can be sent again.
    pub unnamed: Option<String>,
    pub route_setting: Option<RouteSetting>,
    /// How long ago the client's last write on the primary ended: replicas must have
    /// replayed past it in the new process too.
    pub wrote_ago: Option<Duration>,
    pub primary_next: bool,
    /// What the client sent that was not yet read as a request.
    pub pending: String,
    /// The secret this user's clients were checked against and the SCRAM key they proved,
    /// so the new process can log in to Postgres as the user without a password.
    pub secret: Option<String>,
    pub client_key: Option<String>,
}

/// Names the client only: a handed-over session carries a secret.
impl std::fmt::Debug for HandedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandedClient")
            .field("database", &self.database)
            .field("user", &self.user)
            .field("tcp_peer", &self.tcp_peer)
            .finish_non_exhaustive()
    }
}

//! What the connection itself tells authentication: the client's address, whether TLS is on,
//! the name in a verified client certificate, the channel-binding data for SCRAM-PLUS, and
//! over a Unix socket the peer's user id.
//! Built by [`accept`](super::accept) after the TLS handshake; read by [`crate::client::authenticate`].

use super::addr::Addr;

/// Facts about one client connection that decide how it may authenticate.
#[derive(Debug, Clone)]
pub struct Transport {
    pub addr: Addr,
    /// TLS was negotiated (SSLRequest or direct TLS).
    pub tls: bool,
    /// The CN of a client certificate that verified against `client_tls_ca_file`.
    pub cert_name: Option<String>,
    /// `tls-server-end-point` data (hash of pgweir's certificate), for SCRAM-SHA-256-PLUS.
    pub end_point: Option<Vec<u8>>,
    /// The user id of the client process, over a Unix socket (for hba `peer`).
    pub peer_uid: Option<u32>,
}

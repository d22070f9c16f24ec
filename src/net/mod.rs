//! Connections under TLS or not: the [`stream::Stream`] every client and server connection
//! is, the TLS material in force ([`tls`]), encryption negotiation with clients ([`accept`])
//! and the upgrade towards Postgres ([`connect`]).

pub mod accept;
pub mod connect;
pub mod stream;
pub mod tls;

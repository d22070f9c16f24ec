//! Connections under TLS or not, over TCP or Unix sockets: the [`stream::Stream`] every
//! client and server connection is, the [`addr::Addr`] of its other end, the TLS material in
//! force ([`tls`]), encryption negotiation with clients ([`accept`]) and the upgrade towards
//! Postgres ([`connect`]).

pub mod accept;
pub mod addr;
pub mod connect;
pub mod read;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod transport;

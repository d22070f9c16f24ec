//! pgweir: a transaction-mode connection pooler for PostgreSQL.
//!
//! The data path, in the order a connection meets it:
//! [`listener`] accepts → [`net`] negotiates TLS → [`client`] runs startup and authentication
//! ([`auth`]) → [`pool`] checks out a server connection ([`server`]) → [`client::relay`]
//! moves bytes both ways, framed by [`protocol`] → the server goes back to the pool.
//! [`config`] is read once at start; [`cancel`] routes CancelRequests; [`admin`] answers
//! clients of the virtual admin database; [`stats`] counts for it and for Prometheus.
//! [`convert`] turns a pgbouncer.ini into a pgweir.toml (`pgweir convert`). [`fleet`] holds
//! the shared connection limits to one budget across processes, through Postgres.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cancel;
pub mod client;
pub mod config;
pub mod convert;
pub mod error;
pub mod fleet;
pub mod listener;
pub mod net;
pub mod pool;
pub mod prepared;
pub mod protocol;
pub mod route;
pub mod server;
pub mod shutdown;
pub mod sql;
pub mod stats;
pub mod takeover;

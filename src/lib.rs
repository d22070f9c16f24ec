//! pgweir: a transaction-mode connection pooler for PostgreSQL.
//!
//! The data path, in the order a connection meets it:
//! [`listener`] accepts → [`net`] negotiates TLS → [`client`] runs startup and authentication
//! ([`auth`], [`secret`], [`hba`]) → [`pool`] checks out a server connection ([`server`]) →
//! [`client::relay`] moves bytes both ways, framed by [`protocol`] → the server goes back to
//! the pool.
//! [`config`] is read once at start; [`cancel`] routes CancelRequests; [`clients`] keeps
//! every client of the process (for SHOW CLIENTS, KILL and the client limits); [`admin`]
//! answers clients of the virtual admin database; [`stats`] counts for it and [`report`]
//! serves `/metrics`. [`convert`] turns a pgbouncer.ini into a pgweir.toml (`pgweir convert`).
//! [`fleet`] holds the shared connection limits ([`budget`]) to one budget across processes,
//! through Postgres; [`control`] and [`takeover`] let processes of one port cancel for each
//! other and hand clients over.
//!
//! Each module uses only modules below it (a unit test, `layering`, checks it): the order above, from
//! [`takeover`] and [`listener`] at the top to leaves such as [`protocol`] and [`sql`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod budget;
pub mod cancel;
pub mod client;
pub mod clients;
pub mod config;
pub mod control;
pub mod convert;
pub mod error;
pub mod fleet;
pub mod hba;
#[cfg(test)]
mod layering;
pub mod listener;
pub mod net;
pub mod pool;
pub mod prepared;
pub mod protocol;
pub mod report;
pub mod route;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sql;
pub mod stats;
pub mod takeover;

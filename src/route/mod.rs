//! Replica routing state: what the monitor knows about each node and the choices the relay
//! asks of it.
//!
//! [`lsn`] reads WAL positions and decides whether a replica has replayed one;
//! [`freshness`] keeps the samples and bans and answers whether a replica may serve a client
//! (lag, staleness, read-your-writes); [`balance`] picks among the usable nodes by weight and
//! load; [`monitor`] is the thin async part that samples every node over its own connection
//! and feeds [`Freshness`]. All but the monitor are synchronous and tested without sockets.

pub mod balance;
pub mod freshness;
pub mod lsn;
pub mod monitor;

pub use balance::{pick, Candidate};
pub use freshness::{Freshness, FreshnessSettings};
pub use lsn::Lsn;
pub use monitor::{Monitor, MonitorSettings};

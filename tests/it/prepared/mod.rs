//! Prepared statements through pgweir in transaction mode: named statements at the
//! protocol level, edge cases, state that outlives a Sync, and tokio-postgres's own.

mod edges;
mod lifetimes;
mod named;
mod tokio_client;

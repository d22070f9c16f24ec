//! Prepared statements through pgweir in transaction mode: named statements at the
//! protocol level and as pgweir caches them on servers, edge cases, state that outlives a
//! Sync, and tokio-postgres's own.

mod cache;
mod edges;
mod lifetimes;
mod named;
mod tokio_client;

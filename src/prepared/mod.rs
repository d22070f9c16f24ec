//! Protocol-level prepared statements in transaction and statement mode, where a client's
//! next transaction may run on another server connection.
//!
//! A client names its statements; pgweir keeps them under internal names from its pool's
//! [`Registry`] (same text, same name), remembers which each server has prepared
//! ([`ServerStatements`], least recently used evicted), and rewrites the client's Parse,
//! Bind, Describe and Close ([`Rewriter`]) so every statement is prepared on the server the
//! client holds right now. [`Pending`] follows the server's replies, so the client sees
//! exactly the ParseComplete/CloseComplete/ErrorResponse sequence Postgres would have sent.
//! A client that only prepares known texts gets its answer without a server
//! ([`answer_parse_locally`]). The relay (`client::inspect`) drives the rest.

mod cache;
mod local;
mod pending;
mod registry;
mod rewrite;
#[cfg(test)]
mod tests;
mod unnamed;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

pub use cache::ServerStatements;
pub use local::answer_parse_locally;
pub use pending::{Caches, Expect, Pending};
pub use registry::{Analysis, Registry, Statement, StatementId};
pub use rewrite::{error, Rewriter};
pub use unnamed::Unnamed;

/// How often a statement a client used was already on its server (a hit) or had to be
/// prepared there first (a miss: a Parse pgweir sent to a server), and how many named
/// statements clients prepared and bound, over all clients of a pool group; for metrics
/// and SHOW STATS.
#[derive(Debug, Default)]
pub struct CacheCounts {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub client_parses: AtomicU64,
    pub binds: AtomicU64,
}

impl CacheCounts {
    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A client prepared `n` named statements.
    pub fn parsed(&self, n: usize) {
        self.client_parses.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn bound(&self) {
        self.binds.fetch_add(1, Ordering::Relaxed);
    }
}

/// A client's named statement: the registered statement, and the generation of its row
/// shape when the client prepared it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub stmt: Arc<Statement>,
    generation: u32,
}

impl Prepared {
    /// A DDL changed the statement's result type since the client prepared it: Postgres
    /// answers each use with 0A000 until the client prepares it again.
    pub fn stale(&self) -> bool {
        self.generation != self.stmt.generation()
    }
}

/// One client's statement names and what they stand for, and its unnamed statement.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Bytes, Prepared>,
    pub unnamed: Option<Unnamed>,
}

/// A client's named statements, set aside while a statement that drops them all runs.
#[derive(Debug, Default)]
pub struct SavedNames(HashMap<Bytes, Prepared>);

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.by_name.get(name).map(|p| &p.stmt)
    }

    pub fn entry(&self, name: &[u8]) -> Option<&Prepared> {
        self.by_name.get(name)
    }

    /// Every named statement, by the client's name.
    pub fn named(&self) -> impl Iterator<Item = (&Bytes, &Arc<Statement>)> {
        self.by_name.iter().map(|(name, p)| (name, &p.stmt))
    }

    /// The client prepared `stmt` as `name` now, with the row shape it has now.
    pub fn insert(&mut self, name: Bytes, stmt: Arc<Statement>) {
        let generation = stmt.generation();
        self.by_name.insert(name, Prepared { stmt, generation });
    }

    /// Puts back a name a message removed, as it was.
    pub fn restore(&mut self, name: Bytes, prepared: Prepared) {
        self.by_name.insert(name, prepared);
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Prepared> {
        self.by_name.remove(name)
    }

    /// The client ran DEALLOCATE ALL or DISCARD ALL, which drop every named statement
    /// (the unnamed one stays); returned for putting back if it fails.
    pub fn clear_names(&mut self) -> SavedNames {
        SavedNames(std::mem::take(&mut self.by_name))
    }

    pub fn restore_names(&mut self, saved: SavedNames) {
        self.by_name = saved.0;
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

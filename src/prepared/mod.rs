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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

pub use cache::ServerStatements;
pub use local::answer_parse_locally;
pub use pending::{Caches, Expect, Pending};
pub use registry::{Analysis, Registry, Statement, StatementId};
pub use rewrite::{error, Rewriter};

/// One client's statement names and what they stand for.
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

#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Bytes, Arc<Statement>>,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.by_name.get(name)
    }

    pub fn insert(&mut self, name: Bytes, stmt: Arc<Statement>) {
        self.by_name.insert(name, stmt);
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        self.by_name.remove(name)
    }

    /// The client ran DEALLOCATE ALL or DISCARD ALL.
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

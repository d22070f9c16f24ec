//! Which registered statements one server connection has prepared, with least-recently-used
//! eviction so a server holds at most `max_prepared_statements` of them. Lives in the
//! [`crate::server::ServerConn`] it describes and dies with it.

use std::collections::HashMap;

use super::registry::{Statement, StatementId};
use super::unnamed::Unnamed;

/// The statements prepared on one server: the time of each one's last use, and the
/// [`Statement::generation`] it was prepared at.
#[derive(Debug, Default)]
pub struct ServerStatements {
    last_used: HashMap<StatementId, (u64, u32)>,
    clock: u64,
    /// The unnamed statement this server holds, if pgweir knows it.
    pub unnamed: Option<Unnamed>,
}

impl ServerStatements {
    /// Whether `stmt` is prepared here and current; a hit counts as a use. A stale copy is
    /// forgotten (it still exists on the server, and is closed before the next Parse).
    pub fn touch(&mut self, stmt: &Statement) -> bool {
        self.clock += 1;
        match self.last_used.get_mut(&stmt.id) {
            Some((t, generation)) if *generation == stmt.generation() => {
                *t = self.clock;
                true
            }
            Some(_) => {
                self.last_used.remove(&stmt.id);
                false
            }
            None => false,
        }
    }

    /// Records `stmt` as prepared. When that makes more than `max`, the least recently used
    /// other statement is forgotten and returned, for the caller to close on the server.
    pub fn insert(&mut self, stmt: &Statement, max: usize) -> Option<StatementId> {
        self.clock += 1;
        let id = stmt.id;
        self.last_used.insert(id, (self.clock, stmt.generation()));
        if self.last_used.len() <= max.max(1) {
            return None;
        }
        let (&oldest, _) = self
            .last_used
            .iter()
            .filter(|(&k, _)| k != id)
            .min_by_key(|(_, &(t, _))| t)?;
        self.last_used.remove(&oldest);
        Some(oldest)
    }

    pub fn remove(&mut self, id: StatementId) {
        self.last_used.remove(&id);
    }

    /// pgweir ran a simple query of its own here, which drops the unnamed statement.
    pub fn forget_unnamed(&mut self) {
        self.unnamed = None;
    }

    /// The server dropped every named prepared statement (DEALLOCATE ALL, DISCARD ALL).
    pub fn clear(&mut self) {
        self.last_used.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.last_used.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.last_used.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::prepared::Analysis;
    use crate::prepared::Registry;

    #[test]
    fn evicts_the_least_recently_used() {
        let r = Registry::default();
        let [a, b, c] = ["a", "b", "c"].map(|t| r.intern(t.as_bytes(), Analysis::default));
        let mut s = ServerStatements::default();
        assert_eq!(s.insert(&a, 2), None);
        assert_eq!(s.insert(&b, 2), None);
        assert!(s.touch(&a));
        assert_eq!(s.insert(&c, 2), Some(b.id));
        assert!(!s.touch(&b));
        assert!(s.touch(&a) && s.touch(&c));
        assert_eq!(s.len(), 2);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn an_invalidated_statement_is_stale_everywhere() {
        let r = Registry::default();
        let a = r.intern(b"a", Analysis::default);
        let (mut s1, mut s2) = (ServerStatements::default(), ServerStatements::default());
        s1.insert(&a, 5);
        s2.insert(&a, 5);
        a.invalidate(0);
        a.invalidate(0);
        assert_eq!(a.generation(), 1, "one change, reported twice");
        assert!(!s1.touch(&a) && !s2.touch(&a));
        s1.insert(&a, 5);
        assert!(s1.touch(&a));
    }
}

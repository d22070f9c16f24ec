//! Which registered statements one server connection has prepared, with least-recently-used
//! eviction so a server holds at most `max_prepared_statements` of them. Lives in the
//! [`crate::server::ServerConn`] it describes and dies with it.

use std::collections::HashMap;

use super::registry::StatementId;

/// The statements prepared on one server, each with the time of its last use.
#[derive(Debug, Default)]
pub struct ServerStatements {
    last_used: HashMap<StatementId, u64>,
    clock: u64,
}

impl ServerStatements {
    /// Whether `id` is prepared here; a hit counts as a use.
    pub fn touch(&mut self, id: StatementId) -> bool {
        self.clock += 1;
        match self.last_used.get_mut(&id) {
            Some(t) => {
                *t = self.clock;
                true
            }
            None => false,
        }
    }

    /// Records `id` as prepared. When that makes more than `max`, the least recently used
    /// other statement is forgotten and returned, for the caller to close on the server.
    pub fn insert(&mut self, id: StatementId, max: usize) -> Option<StatementId> {
        self.clock += 1;
        self.last_used.insert(id, self.clock);
        if self.last_used.len() <= max.max(1) {
            return None;
        }
        let (&oldest, _) = self
            .last_used
            .iter()
            .filter(|(&k, _)| k != id)
            .min_by_key(|(_, &t)| t)?;
        self.last_used.remove(&oldest);
        Some(oldest)
    }

    pub fn remove(&mut self, id: StatementId) {
        self.last_used.remove(&id);
    }

    /// The server dropped every prepared statement (DEALLOCATE ALL, DISCARD ALL).
    pub fn clear(&mut self) {
        self.last_used.clear();
    }

    pub fn len(&self) -> usize {
        self.last_used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_used.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut s = ServerStatements::default();
        let id = StatementId;
        assert_eq!(s.insert(id(1), 2), None);
        assert_eq!(s.insert(id(2), 2), None);
        assert!(s.touch(id(1)));
        assert_eq!(s.insert(id(3), 2), Some(id(2)));
        assert!(!s.touch(id(2)));
        assert!(s.touch(id(1)) && s.touch(id(3)));
        assert_eq!(s.len(), 2);
        s.clear();
        assert!(s.is_empty());
    }
}

//! `max_db_client_connections` and `max_user_client_connections`: how many clients are
//! connected per database and per user. A client holds a [`ClientSlot`] for its session;
//! dropping it gives the place back.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Connected-client counts by name.
#[derive(Debug, Default)]
pub struct ClientLimits {
    by_db: Mutex<HashMap<String, usize>>,
    by_user: Mutex<HashMap<String, usize>>,
}

/// Which limit refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Database,
    User,
}

impl ClientLimits {
    /// Counts a client in, unless either limit (0 = unlimited) is already reached.
    pub fn admit(
        self: &Arc<Self>,
        db: &str,
        user: &str,
        max_db: usize,
        max_user: usize,
    ) -> Result<ClientSlot, Refused> {
        if !take(&self.by_db, db, max_db) {
            return Err(Refused::Database);
        }
        if !take(&self.by_user, user, max_user) {
            give_back(&self.by_db, db);
            return Err(Refused::User);
        }
        Ok(ClientSlot {
            counts: Arc::clone(self),
            db: db.to_owned(),
            user: user.to_owned(),
        })
    }

    #[cfg(test)]
    pub fn database(&self, db: &str) -> usize {
        self.by_db.lock().get(db).copied().unwrap_or(0)
    }
}

fn take(map: &Mutex<HashMap<String, usize>>, name: &str, max: usize) -> bool {
    let mut map = map.lock();
    let n = map.entry(name.to_owned()).or_insert(0);
    if max > 0 && *n >= max {
        return false;
    }
    *n += 1;
    true
}

fn give_back(map: &Mutex<HashMap<String, usize>>, name: &str) {
    let mut map = map.lock();
    if let Some(n) = map.get_mut(name) {
        *n -= 1;
        if *n == 0 {
            map.remove(name);
        }
    }
}

/// One client's place in the counts.
#[derive(Debug)]
pub struct ClientSlot {
    counts: Arc<ClientLimits>,
    db: String,
    user: String,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        give_back(&self.counts.by_db, &self.db);
        give_back(&self.counts.by_user, &self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_name_and_places_come_back() {
        let c = Arc::new(ClientLimits::default());
        let a = c.admit("app", "alice", 2, 1).unwrap();
        assert_eq!(c.admit("app", "alice", 2, 1).unwrap_err(), Refused::User);
        assert_eq!(
            c.database("app"),
            1,
            "a refused client leaves no count behind"
        );
        let b = c.admit("app", "bob", 2, 1).unwrap();
        assert_eq!(
            c.admit("app", "carol", 2, 0).unwrap_err(),
            Refused::Database
        );
        let other = c.admit("other", "carol", 2, 0).unwrap();
        drop((a, b, other));
        assert_eq!(c.database("app"), 0);
        assert!(c.admit("app", "alice", 2, 1).is_ok());
    }
}

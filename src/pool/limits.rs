//! `max_db_connections` and `max_user_connections`: counters shared by every pool of a
//! database or of a user. A server connection holds a [`Permit`] for its whole life, so
//! the count is right however the connection ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One shared limit (0 = unlimited).
#[derive(Debug, Default)]
pub struct Budget {
    max: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Budget {
            max,
            used: AtomicUsize::new(0),
        })
    }

    fn try_take(&self) -> bool {
        self.max == 0
            || self
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    (u < self.max).then_some(u + 1)
                })
                .is_ok()
    }

    fn give_back(&self) {
        if self.max > 0 {
            self.used.fetch_sub(1, Ordering::AcqRel);
        }
    }

    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The limits a pool's connections count against.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    pub database: Option<Arc<Budget>>,
    pub user: Option<Arc<Budget>>,
}

impl Budgets {
    /// Takes one unit of each limit, or none if any is exhausted.
    pub fn acquire(&self) -> Option<Permit> {
        let mut permit = Permit::default();
        for b in [&self.database, &self.user].into_iter().flatten() {
            if !b.try_take() {
                return None;
            }
            permit.held.push(Arc::clone(b));
        }
        Some(permit)
    }
}

/// A server connection's share of its limits, returned when dropped.
#[derive(Debug, Default)]
pub struct Permit {
    held: Vec<Arc<Budget>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        for b in &self.held {
            b.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_against_every_limit_and_return_on_drop() {
        let db = Budget::new(1);
        let user = Budget::new(0);
        let budgets = Budgets {
            database: Some(Arc::clone(&db)),
            user: Some(user),
        };
        let first = budgets.acquire().expect("room for one");
        assert_eq!(db.used(), 1);
        assert!(budgets.acquire().is_none());
        assert_eq!(db.used(), 1, "a refused acquire takes nothing");
        drop(first);
        assert_eq!(db.used(), 0);
        assert!(budgets.acquire().is_some());
    }
}

//! `max_db_connections` and `max_user_connections`: counters shared by every pool of a
//! database or of a user. A server connection holds a [`Permit`] for its whole life, so
//! the count is right however the connection ends.
//!
//! A budget of a fleet ([`crate::fleet`]) lets this process use only the slots it holds
//! in Postgres (`allowed`, set by the fleet's coordinator), and remembers the backends of
//! the servers it closed, which must be gone before a slot is handed to another member.
//! Pools ask [`Budgets::over`] when a server comes back, so a lowered allowance closes
//! servers instead of reusing them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// One shared limit (0 = unlimited).
#[derive(Debug, Default)]
pub struct Budget {
    max: usize,
    counts: Mutex<Counts>,
    /// Backend pids of servers closed since the coordinator last looked; `None` outside a
    /// fleet, where nobody looks.
    closed: Option<Mutex<Vec<i32>>>,
    /// Servers this process's pools could use now, as the janitor last counted them.
    demand: AtomicUsize,
}

/// Taken together under one lock, so no server opens under an allowance being lowered.
#[derive(Debug, Default)]
struct Counts {
    used: usize,
    /// At most `max`: all of it outside a fleet.
    allowed: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Budget {
            max,
            counts: Mutex::new(Counts {
                used: 0,
                allowed: max,
            }),
            ..Budget::default()
        })
    }

    /// A budget of a fleet: nothing allowed until the coordinator holds slots.
    pub fn fleet(max: usize) -> Arc<Self> {
        Arc::new(Budget {
            max,
            closed: Some(Mutex::new(Vec::new())),
            ..Budget::default()
        })
    }

    fn try_take(&self) -> bool {
        if self.max == 0 {
            return true;
        }
        let mut c = self.counts.lock();
        let room = c.used < c.allowed;
        c.used += usize::from(room);
        room
    }

    fn give_back(&self, backend: Option<i32>) {
        if self.max == 0 {
            return;
        }
        let mut c = self.counts.lock();
        c.used -= 1;
        // Under the same lock: whoever sees the count drop finds the backend listed.
        if let (Some(closed), Some(pid)) = (&self.closed, backend) {
            closed.lock().push(pid);
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Servers open (or logging in) against the budget.
    pub fn used(&self) -> usize {
        self.counts.lock().used
    }

    pub fn allowed(&self) -> usize {
        self.counts.lock().allowed
    }

    /// Sets the allowance and returns how many servers are open against it, at once.
    pub fn allow(&self, allowed: usize) -> usize {
        let mut c = self.counts.lock();
        c.allowed = allowed.min(self.max);
        c.used
    }

    /// More servers are open than allowed: the coordinator is giving slots back. Asked at
    /// every release, so a budget outside a fleet, which is never over, answers unlocked.
    pub fn over(&self) -> bool {
        if self.closed.is_none() {
            return false;
        }
        let c = self.counts.lock();
        c.used > c.allowed
    }

    /// The backends of servers closed since the last call.
    pub fn take_closed(&self) -> Vec<i32> {
        self.closed
            .as_ref()
            .map(|c| std::mem::take(&mut *c.lock()))
            .unwrap_or_default()
    }

    pub fn set_demand(&self, n: usize) {
        self.demand.store(n, Ordering::Relaxed);
    }

    pub fn demand(&self) -> usize {
        self.demand.load(Ordering::Relaxed)
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
        for b in self.iter() {
            if !b.try_take() {
                return None;
            }
            permit.held.push(Arc::clone(b));
        }
        Some(permit)
    }

    /// Whether any of the limits has more servers open than it allows now.
    pub fn over(&self) -> bool {
        self.iter().any(|b| b.over())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Budget>> {
        [&self.database, &self.user].into_iter().flatten()
    }
}

/// A server connection's share of its limits, returned when dropped.
#[derive(Debug, Default)]
pub struct Permit {
    held: Vec<Arc<Budget>>,
    /// The server's backend, once it has logged in.
    backend: Option<i32>,
}

impl Permit {
    /// Records the backend the permit's server got, for a fleet to see it gone.
    pub fn set_backend(&mut self, pid: i32) {
        self.backend = Some(pid);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        for b in &self.held {
            b.give_back(self.backend);
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

    #[test]
    fn a_fleet_budget_allows_what_its_slots_allow_and_remembers_closed_backends() {
        let db = Budget::fleet(10);
        let budgets = Budgets {
            database: Some(Arc::clone(&db)),
            user: None,
        };
        assert!(budgets.acquire().is_none(), "no slot yet");
        assert_eq!(db.allow(2), 0);
        let mut a = budgets.acquire().expect("first slot");
        a.set_backend(101);
        let b = budgets.acquire().expect("second slot");
        assert!(budgets.acquire().is_none());
        assert_eq!(db.allow(1), 2);
        assert!(budgets.over());
        drop(a);
        assert!(!budgets.over());
        drop(b);
        assert_eq!(
            db.take_closed(),
            [101],
            "a server that never logged in has none"
        );
        assert!(db.take_closed().is_empty());
        assert_eq!(db.allow(50), 0);
        assert_eq!(db.allowed(), 10, "never more than the budget");
    }
}

//! One server-connection budget for several pgweir processes (`fleet` in `[pgweir]`):
//! `max_db_connections` and `max_user_connections` of a primary hold for every process
//! of the fleet together, with Postgres as the only referee. Each slot of a budget is a
//! session-level advisory lock (first key: a hash of the fleet, the kind and the name;
//! second key: the slot number) taken by one coordination connection per process and
//! database; a process may open a server against a budget only while it holds a slot for
//! it, and a dead process's locks go with its connection.
//!
//! [`Fleet`] knows the budgets ([`Shared`]) and where each is coordinated ([`Site`]: the
//! database's own primary for `max_db_connections`, the first configured database's for
//! `max_user_connections`); the pools' registry registers budgets as it makes them and
//! reports their demand at every janitor tick. [`share`] decides, without I/O, what each
//! poll does; [`coordinator`] runs one connection per site and carries it out. The admin
//! console (SHOW FLEET) and the metrics read [`Fleet::report`].

pub mod coordinator;
pub mod share;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::budget::{Budget, Budgets};
use crate::config::FleetName;
use crate::server::ServerTarget;

/// Which limit a budget is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `max_db_connections` of a database.
    Database,
    /// `max_user_connections` of a server user.
    User,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Database => "database",
            Kind::User => "user",
        }
    }
}

/// The first advisory-lock key of a budget: the same in every process of the fleet, and
/// apart from other fleets' and other budgets'.
pub fn lock_key(fleet: &FleetName, kind: Kind, name: &str) -> i32 {
    let digest = Sha256::new()
        .chain_update(fleet.as_str())
        .chain_update([0])
        .chain_update(kind.as_str())
        .chain_update(":")
        .chain_update(name)
        .finalize();
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A budget the fleet coordinates, and what its last poll found, for reports.
#[derive(Debug)]
pub struct Shared {
    pub kind: Kind,
    pub name: String,
    pub key: i32,
    pub budget: Arc<Budget>,
    pub status: Mutex<Status>,
}

/// A budget's standing at its last poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// Slots this process holds.
    pub held: usize,
    pub share: usize,
    /// Processes of the fleet coordinating this budget, this one included.
    pub members: usize,
    /// Whether it announces that it waits for more slots.
    pub waiting: bool,
    /// Whether its coordination connection is up.
    pub connected: bool,
}

/// Where budgets are coordinated: a database on a server (advisory locks are per
/// database), and the login to reach it.
#[derive(Debug)]
pub struct Site {
    pub target: ServerTarget,
    budgets: Mutex<Vec<Arc<Shared>>>,
}

impl Site {
    pub fn budgets(&self) -> Vec<Arc<Shared>> {
        self.budgets.lock().clone()
    }
}

/// One row of [`Fleet::report`].
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: Kind,
    pub name: String,
    pub max: usize,
    pub used: usize,
    pub want: usize,
    pub status: Status,
}

/// This process's part in a fleet.
#[derive(Debug)]
pub struct Fleet {
    pub name: FleetName,
    /// Six hex digits, random per process: tells members apart in pg_stat_activity.
    pub id: String,
    connect_timeout: Duration,
    sites: Mutex<HashMap<(String, u16, String), Arc<Site>>>,
}

impl Fleet {
    pub fn new(name: FleetName, connect_timeout: Duration) -> Arc<Fleet> {
        Arc::new(Fleet {
            name,
            id: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
            connect_timeout,
            sites: Mutex::new(HashMap::new()),
        })
    }

    /// The `application_name` of the coordination connections.
    pub fn application_name(&self) -> String {
        format!("pgweir fleet={} id={}", self.name, self.id)
    }

    /// Coordinates `budget` at the database `home` logs in to, starting that site's
    /// coordinator on first use.
    pub fn register(
        self: &Arc<Self>,
        kind: Kind,
        name: &str,
        budget: Arc<Budget>,
        home: ServerTarget,
    ) {
        let shared = Arc::new(Shared {
            kind,
            name: name.to_owned(),
            key: lock_key(&self.name, kind, name),
            budget,
            status: Mutex::default(),
        });
        let place = (home.host.clone(), home.port, home.dbname.clone());
        let mut sites = self.sites.lock();
        if let Some(site) = sites.get(&place) {
            site.budgets.lock().push(shared);
            return;
        }
        let site = Arc::new(Site {
            target: home,
            budgets: Mutex::new(vec![shared]),
        });
        sites.insert(place, Arc::clone(&site));
        tokio::spawn(coordinator::run(
            site,
            self.application_name(),
            self.connect_timeout,
        ));
    }

    /// Sets each budget's demand: the sum of what the pools counting against it could
    /// use now (see [`crate::pool::Pool::demand`]).
    pub fn note_demand<'a>(&self, pools: impl Iterator<Item = (&'a Budgets, usize)>) {
        let mut sums: HashMap<*const Budget, usize> = HashMap::new();
        for (budgets, demand) in pools {
            for b in budgets.iter() {
                *sums.entry(Arc::as_ptr(b)).or_default() += demand;
            }
        }
        for shared in self.shared() {
            let sum = sums.get(&Arc::as_ptr(&shared.budget)).copied();
            shared.budget.set_demand(sum.unwrap_or(0));
        }
    }

    fn shared(&self) -> Vec<Arc<Shared>> {
        let sites = self.sites.lock();
        sites.values().flat_map(|s| s.budgets()).collect()
    }

    /// Every coordinated budget, by kind and name.
    pub fn report(&self) -> Vec<Report> {
        let mut rows: Vec<Report> = (self.shared().iter())
            .map(|s| Report {
                kind: s.kind,
                name: s.name.clone(),
                max: s.budget.max(),
                used: s.budget.used(),
                want: s.budget.demand(),
                status: *s.status.lock(),
            })
            .collect();
        rows.sort_by(|a, b| (a.kind.as_str(), &a.name).cmp(&(b.kind.as_str(), &b.name)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_apart() {
        let fleet = FleetName::parse("orders-poolers").unwrap();
        let other = FleetName::parse("billing").unwrap();
        let key = lock_key(&fleet, Kind::Database, "orders");
        assert_eq!(key, lock_key(&fleet, Kind::Database, "orders"));
        assert_ne!(key, lock_key(&fleet, Kind::User, "orders"));
        assert_ne!(key, lock_key(&other, Kind::Database, "orders"));
        // Fixed, so processes of different builds agree.
        assert_eq!(key, -1_219_691_710);
    }
}

//! Every pool, created on first use from the configuration, and the janitor that keeps
//! them in shape: a few times a second it runs each pool's upkeep (idle and lifetime expiry,
//! min_pool_size, deferred opens) and, when a pool starves under a shared limit, closes an
//! idle connection of a sibling pool to make room. The work per tick is per pool, never per
//! client.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::limits::{Budget, Budgets};
use super::{ConnectSettings, Pool, PoolError, PoolKey};
use crate::config::Config;
use crate::server::ServerTarget;

/// How often the janitor runs; timeouts it enforces are this precise.
const JANITOR_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Pools {
    config: Arc<Config>,
    pools: RwLock<HashMap<PoolKey, Arc<Pool>>>,
    db_budgets: Mutex<HashMap<String, Arc<Budget>>>,
    user_budgets: Mutex<HashMap<String, Arc<Budget>>>,
}

impl Pools {
    pub fn new(config: Arc<Config>) -> Arc<Self> {
        let pools = Arc::new(Pools {
            config,
            pools: RwLock::new(HashMap::new()),
            db_budgets: Mutex::new(HashMap::new()),
            user_budgets: Mutex::new(HashMap::new()),
        });
        tokio::spawn(janitor(Arc::downgrade(&pools)));
        pools
    }

    /// The pool a client of `database` logged in as `user` uses.
    pub fn get(&self, database: &str, user: &str) -> Result<Arc<Pool>, PoolError> {
        let cfg = &self.config;
        let db = cfg
            .databases
            .get(database)
            .ok_or_else(|| PoolError::UnknownDatabase(database.to_owned()))?;
        let server_user = db.user.clone().unwrap_or_else(|| user.to_owned());
        let key = PoolKey {
            database: database.to_owned(),
            user: server_user.clone(),
        };
        if let Some(p) = self.pools.read().get(&key) {
            return Ok(Arc::clone(p));
        }
        let settings = cfg
            .pool_settings(database, user)
            .ok_or_else(|| PoolError::UnknownDatabase(database.to_owned()))?;
        let password = match &db.user {
            Some(_) => db.password.clone(),
            None => cfg.users.get(user).and_then(|u| u.password.clone()),
        };
        let target = ServerTarget {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: server_user.clone(),
            password,
        };
        let budgets = Budgets {
            database: budget(&self.db_budgets, database, settings.max_db_connections),
            user: budget(
                &self.user_budgets,
                &server_user,
                settings.max_user_connections,
            ),
        };
        let connect = ConnectSettings {
            connect_timeout: cfg.pgweir.server_connect_timeout,
            login_retry: cfg.pgweir.server_login_retry,
        };
        let mut pools = self.pools.write();
        let pool = pools
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Pool::new(key, target, settings, connect, budgets)));
        Ok(Arc::clone(pool))
    }

    /// Every pool, for upkeep and reporting.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.pools.read().values().cloned().collect()
    }

    /// One janitor pass.
    fn tick(&self) {
        let pools = self.all();
        for p in &pools {
            p.maintain();
        }
        for starving in pools.iter().filter(|p| p.starved()) {
            let sibling = pools.iter().find(|o| {
                !Arc::ptr_eq(o, starving)
                    && (o.key.database == starving.key.database || o.key.user == starving.key.user)
                    && o.evict_one_idle()
            });
            if let Some(o) = sibling {
                tracing::debug!(from = %o.key, to = %starving.key, "closed an idle server to make room under a shared limit");
            }
        }
    }
}

/// The shared limit for `name`, created on first use; `None` when unlimited.
fn budget(
    map: &Mutex<HashMap<String, Arc<Budget>>>,
    name: &str,
    max: usize,
) -> Option<Arc<Budget>> {
    (max > 0).then(|| {
        Arc::clone(
            map.lock()
                .entry(name.to_owned())
                .or_insert_with(|| Budget::new(max)),
        )
    })
}

async fn janitor(pools: Weak<Pools>) {
    let mut every = tokio::time::interval(JANITOR_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pools) = pools.upgrade() else {
            return;
        };
        pools.tick();
    }
}

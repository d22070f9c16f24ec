//! Every pool, created on first use from the configuration (a [`PoolGroup`] per database
//! and server user: the primary's pool and one per replica; a WAL monitor per database
//! with replicas), and the janitor that keeps them in shape: a few times a second it runs
//! each pool's upkeep (idle and lifetime expiry, min_pool_size, deferred opens) and, when a
//! pool starves under a shared limit, closes an idle connection of a sibling pool (of the
//! same server) to make room. The work per tick is per pool, never per client.
//!
//! It also holds the admin console's switches ([`Control`]) and remembers the pools a
//! reload replaced while they live, for PAUSE, RECONNECT, KILL and WAIT_CLOSE. With
//! `fleet` set, the primaries' shared limits are made as [`Fleet`] budgets, registered
//! where they are coordinated, and told the pools' demand at every tick.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

use super::control::Control;
use super::group::{Origin, Routing};
use super::{ConnectSettings, OnOutage, Pool, PoolError, PoolGroup, PoolKey, ReplicaPool};
use crate::budget::{Budget, Budgets};
use crate::config::{Config, DatabaseConfig, Node, PoolSettings};
use crate::fleet::{Fleet, Kind};
use crate::net::tls::TlsState;
use crate::prepared::Registry;
use crate::route::{Monitor, MonitorSettings};
use crate::secret::passthrough::Keyring;
use crate::server::ServerTarget;
use crate::sql::ReadOnlyFunctions;
use crate::stats::GroupStats;

/// How often the janitor runs; timeouts it enforces are this precise.
const JANITOR_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Pools {
    config: ArcSwap<Config>,
    groups: RwLock<HashMap<(String, String), Arc<PoolGroup>>>,
    db_budgets: Mutex<HashMap<String, Arc<Budget>>>,
    user_budgets: Mutex<HashMap<String, Arc<Budget>>>,
    /// One WAL monitor per database with replicas, shared by its groups.
    monitors: Mutex<HashMap<String, Weak<Monitor>>>,
    /// Groups a reload replaced or removed, kept in upkeep and reports while their clients
    /// finish.
    draining: Mutex<Vec<Weak<PoolGroup>>>,
    /// Totals per (database, server user), kept across group replacements so counters never
    /// go back.
    stats: Mutex<HashMap<(String, String), Arc<GroupStats>>>,
    /// Paused and disabled databases.
    pub control: Control,
    /// What each server user's clients proved, for logins without a configured password.
    keyring: Arc<Keyring>,
    /// TLS towards the servers, which every target shares.
    tls: TlsState,
    /// The fleet whose budget the shared limits are part of, when `fleet` is set.
    fleet: Option<Arc<Fleet>>,
}

impl Pools {
    pub fn new(config: Arc<Config>, keyring: Arc<Keyring>, tls: TlsState) -> Arc<Self> {
        let g = &config.pgweir;
        let fleet = (g.fleet.clone()).map(|name| Fleet::new(name, g.server_connect_timeout));
        let pools = Arc::new(Pools {
            config: ArcSwap::new(config),
            groups: RwLock::new(HashMap::new()),
            db_budgets: Mutex::new(HashMap::new()),
            user_budgets: Mutex::new(HashMap::new()),
            monitors: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
            stats: Mutex::new(HashMap::new()),
            control: Control::default(),
            keyring,
            tls,
            fleet,
        });
        tokio::spawn(janitor(Arc::downgrade(&pools)));
        pools
    }

    /// The servers a client of `database` logged in as `user` uses.
    pub fn get(&self, database: &str, user: &str) -> Result<Arc<PoolGroup>, PoolError> {
        let config = self.config.load_full();
        let db = config
            .databases
            .get(database)
            .ok_or_else(|| PoolError::UnknownDatabase(database.to_owned()))?;
        let server_user = db.user.clone().unwrap_or_else(|| user.to_owned());
        let name = (database.to_owned(), server_user);
        if let Some(g) = self.groups.read().get(&name) {
            return Ok(Arc::clone(g));
        }
        let group = self.build(&config, database, db, user, &name.1)?;
        let mut groups = self.groups.write();
        let group = groups.entry(name).or_insert_with(|| Arc::new(group));
        Ok(Arc::clone(group))
    }

    /// A new group: the primary's pool, one pool per replica (same settings, shared
    /// statement registry) and the database's monitor.
    fn build(
        &self,
        cfg: &Config,
        database: &str,
        db: &DatabaseConfig,
        user: &str,
        server_user: &str,
    ) -> Result<PoolGroup, PoolError> {
        let settings = cfg
            .pool_settings(database, user)
            .ok_or_else(|| PoolError::UnknownDatabase(database.to_owned()))?;
        let password = match &db.user {
            Some(_) => db.password.clone(),
            None => cfg.users.get(user).and_then(|u| u.password.clone()),
        };
        let primary = ServerTarget {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: server_user.to_owned(),
            password,
            credentials: Some(self.keyring.of(database, server_user)),
            tls: Arc::clone(&self.tls),
            tcp: cfg.pgweir.tcp,
        };
        let statements = Arc::new(Registry::default());
        let key = |node| PoolKey {
            database: database.to_owned(),
            user: server_user.to_owned(),
            node,
        };
        let new_pool = |node, target| {
            self.new_pool(cfg, key(node), target, &settings, Arc::clone(&statements))
        };
        let targets: Vec<ServerTarget> = db
            .replicas
            .iter()
            .map(|r| ServerTarget {
                host: r.host.clone(),
                port: r.port,
                ..primary.clone()
            })
            .collect();
        let replicas = (db.replicas.iter().zip(&targets).enumerate())
            .map(|(i, (r, target))| ReplicaPool {
                pool: new_pool(Node::Replica(i), target.clone()),
                weight: r.weight,
            })
            .collect();
        let monitor = (!targets.is_empty())
            .then(|| self.monitor(cfg, database, &primary, targets, db.max_replica_lag));
        let routing = Routing {
            read_routing: db.read_routing,
            target: db.target,
            read_your_writes: db.read_your_writes,
            functions: ReadOnlyFunctions::new(db.read_only_functions.iter().cloned()),
        };
        let origin = Origin::of(db, &primary);
        let primary = new_pool(Node::Primary, primary);
        let stats = Arc::clone(
            self.stats
                .lock()
                .entry((database.to_owned(), server_user.to_owned()))
                .or_insert_with(|| {
                    let histograms = cfg.pgweir.metrics_histograms;
                    Arc::new(GroupStats::new(database, server_user, histograms))
                }),
        );
        Ok(PoolGroup::new(
            primary, replicas, routing, monitor, origin, stats,
        ))
    }

    /// One node's pool. Connection limits count per server: a replica's connections are
    /// its own, not the primary's.
    fn new_pool(
        &self,
        cfg: &Config,
        key: PoolKey,
        target: ServerTarget,
        settings: &PoolSettings,
        statements: Arc<Registry>,
    ) -> Arc<Pool> {
        let g = &cfg.pgweir;
        let (suffix, login_retry, outage) = match key.node {
            // Clients wait out a restart of the primary: they have nowhere else to go.
            Node::Primary => (String::new(), g.server_login_retry, OnOutage::Wait),
            // A replica that fails logins is banned (`replica_ban_time`) and gets no clients
            // until the monitor finds it answering, so its pool's own back-off stays shorter
            // than the ban: long enough to spare a dead host the janitor's refills, short
            // enough not to turn clients away once the ban is over.
            // Its clients get the failure at once and go to the primary instead.
            Node::Replica(_) => (
                format!("@{}", target.address()),
                g.server_login_retry.min(g.replica_ban_time / 2),
                OnOutage::Fail,
            ),
        };
        let budgets = Budgets {
            database: self.budget(
                Limit::new(Kind::Database, &key.database, &suffix, key.node),
                settings.max_db_connections,
                || target.clone(),
            ),
            user: self.budget(
                Limit::new(Kind::User, &key.user, &suffix, key.node),
                settings.max_user_connections,
                || user_home(cfg, &target),
            ),
        };
        let connect = ConnectSettings {
            connect_timeout: g.server_connect_timeout,
            login_retry,
            outage,
        };
        let settings = settings.clone();
        let switch = self.control.switch(&key.database);
        Arc::new(Pool::new(
            key, target, settings, connect, budgets, statements, switch,
        ))
    }

    /// The database's WAL monitor, started on first use with the credentials of the group
    /// that asks first: monitoring needs a login, and any user of the database can read
    /// WAL positions.
    fn monitor(
        &self,
        cfg: &Config,
        database: &str,
        primary: &ServerTarget,
        replicas: Vec<ServerTarget>,
        max_lag: Duration,
    ) -> Arc<Monitor> {
        let mut monitors = self.monitors.lock();
        if let Some(m) = monitors.get(database).and_then(Weak::upgrade) {
            return m;
        }
        let g = &cfg.pgweir;
        let settings = MonitorSettings::new(
            g.replica_check_interval,
            g.server_connect_timeout,
            max_lag,
            g.replica_ban_time,
        );
        let m = Monitor::spawn(primary.clone(), replicas, settings);
        monitors.insert(database.to_owned(), Arc::downgrade(&m));
        m
    }

    /// Takes a reloaded configuration. Groups whose database is gone, or whose servers or
    /// routing changed, leave the registry: their clients finish on them, new clients get
    /// a new group (or an error for a removed database). The others take the new pool
    /// settings in place.
    pub fn reconfigure(&self, config: Arc<Config>) {
        self.config.store(Arc::clone(&config));
        let mut retired = Vec::new();
        self.groups.write().retain(|(database, user), group| {
            let keep = self.still_fits(&config, database, user, group);
            if !keep {
                retired.push(Arc::downgrade(group));
                // The next group of this database watches the servers it now names.
                self.monitors.lock().remove(database);
            }
            keep
        });
        let mut draining = self.draining.lock();
        draining.retain(|g| g.strong_count() > 0);
        draining.extend(retired);
    }

    /// The groups a reload retired that still have clients.
    fn retired(&self) -> Vec<Arc<PoolGroup>> {
        self.draining
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The pools of `database` (None: of every database), those a reload replaced
    /// included while they live.
    pub fn pools_of(&self, database: Option<&str>) -> Vec<Arc<Pool>> {
        let ours = |p: &Arc<Pool>| database.is_none_or(|d| p.key.database == d);
        self.all().into_iter().filter(ours).collect()
    }

    /// Whether a pool a reload replaced still lives for `database` (None: any): its
    /// servers are closed only once its last client has left.
    pub fn replaced_alive(&self, database: Option<&str>) -> bool {
        let ours = |g: &Arc<PoolGroup>| database.is_none_or(|d| g.primary.key.database == d);
        self.retired().iter().any(ours)
    }

    /// Whether `group` still describes its database under `config`; if so it takes the new
    /// pool settings in place.
    fn still_fits(&self, config: &Config, database: &str, user: &str, group: &PoolGroup) -> bool {
        let Some(db) = config.databases.get(database) else {
            tracing::info!(%database, %user, "database removed: its clients finish, new ones are refused");
            return false;
        };
        let password = match &db.user {
            Some(_) => db.password.clone(),
            None => config.users.get(user).and_then(|u| u.password.clone()),
        };
        let target = ServerTarget {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: user.to_owned(),
            password,
            credentials: None,
            tls: Arc::clone(&self.tls),
            tcp: config.pgweir.tcp,
        };
        if group.origin != Origin::of(db, &target) {
            tracing::info!(%database, %user, "servers or routing changed: new clients get new pools, the old ones drain");
            return false;
        }
        if let Some(settings) = config.pool_settings(database, user) {
            for (_, pool) in group.pools() {
                pool.reconfigure(settings.clone());
            }
        }
        true
    }

    /// Every group, for reporting: the current ones and those a reload retired that still
    /// have clients.
    pub fn groups(&self) -> Vec<Arc<PoolGroup>> {
        let mut groups: Vec<_> = self.groups.read().values().cloned().collect();
        groups.extend(self.retired());
        groups
    }

    /// The totals of every group in [`Pools::groups`], each once: a group a reload replaced
    /// shares its successor's.
    pub fn group_stats(&self) -> Vec<Arc<GroupStats>> {
        let mut out: Vec<Arc<GroupStats>> = Vec::new();
        for g in self.groups() {
            if !out.iter().any(|s| Arc::ptr_eq(s, &g.stats)) {
                out.push(Arc::clone(&g.stats));
            }
        }
        out
    }

    /// Every pool, for upkeep and reporting.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        let groups = self.groups();
        let mut all = Vec::with_capacity(groups.len());
        for g in &groups {
            all.extend(g.pools().map(|(_, pool)| Arc::clone(pool)));
        }
        all
    }

    /// The shared limit `limit` names, created on first use; `None` when unlimited. A
    /// primary's limit in a fleet is a fleet budget, coordinated at `home`'s database.
    fn budget(
        &self,
        limit: Limit<'_>,
        max: usize,
        home: impl FnOnce() -> ServerTarget,
    ) -> Option<Arc<Budget>> {
        if max == 0 {
            return None;
        }
        let map = match limit.kind {
            Kind::Database => &self.db_budgets,
            Kind::User => &self.user_budgets,
        };
        let mut map = map.lock();
        let label = format!("{}{}", limit.name, limit.suffix);
        if let Some(b) = map.get(&label) {
            return Some(Arc::clone(b));
        }
        let b = match (&self.fleet, limit.node) {
            (Some(fleet), Node::Primary) => {
                let b = Budget::fleet(max);
                fleet.register(limit.kind, limit.name, Arc::clone(&b), home());
                b
            }
            _ => Budget::new(max),
        };
        map.insert(label, Arc::clone(&b));
        Some(b)
    }

    /// The fleet this process belongs to, if any.
    pub fn fleet(&self) -> Option<&Arc<Fleet>> {
        self.fleet.as_ref()
    }

    /// One janitor pass.
    fn tick(&self) {
        let pools = self.all();
        for p in &pools {
            p.maintain();
        }
        if let Some(fleet) = &self.fleet {
            fleet.note_demand(pools.iter().map(|p| (p.budgets(), p.demand())));
        }
        for starving in pools.iter().filter(|p| p.starved()) {
            let sibling = pools.iter().find(|o| {
                !Arc::ptr_eq(o, starving)
                    && o.key.node == starving.key.node
                    && (o.key.database == starving.key.database || o.key.user == starving.key.user)
                    && o.evict_one_idle()
            });
            if let Some(o) = sibling {
                tracing::debug!(from = %o.key, to = %starving.key, "closed an idle server to make room under a shared limit");
            }
        }
    }
}

/// Names a shared limit: its kind, the database or user, and for a replica's the
/// `@host:port` suffix that keeps its count apart from the primary's.
struct Limit<'a> {
    kind: Kind,
    name: &'a str,
    suffix: &'a str,
    node: Node,
}

impl<'a> Limit<'a> {
    fn new(kind: Kind, name: &'a str, suffix: &'a str, node: Node) -> Self {
        Limit {
            kind,
            name,
            suffix,
            node,
        }
    }
}

/// Where a fleet coordinates a user's `max_user_connections`: one database every member
/// agrees on whichever of the user's pools it opened first, the first configured one (by
/// name), reached with the credentials of `target`, one of that user's pools.
fn user_home(cfg: &Config, target: &ServerTarget) -> ServerTarget {
    match cfg.databases.values().next() {
        Some(db) => ServerTarget {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            ..target.clone()
        },
        None => target.clone(),
    }
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

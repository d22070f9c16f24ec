//! Server connection pools, one per (database, user): checkout with a FIFO wait bounded by
//! `query_wait_timeout` (and a reserve after `reserve_pool_timeout`), connections opened a
//! few at a time by the pool itself, health checks before reuse, and the [`PooledServer`]
//! guard that gives a connection back (or closes it). The bookkeeping lives in [`state`],
//! without I/O; [`registry`] creates pools and runs their upkeep; [`crate::budget`] counts
//! server connections per database and per user across pools; [`servers`] lists a pool's
//! connections one by one for the admin console; [`control`] holds the admin console's
//! pause and disable switches, which a pool reads at each checkout; [`guard`] the guards
//! of a checkout (a place in the queue, the server handed out).

pub mod control;
pub mod group;
mod guard;
pub mod registry;
pub mod servers;
pub mod state;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use thiserror::Error;

use crate::budget::Budgets;
use crate::config::{Node, PoolMode, PoolSettings};
use crate::error::{ClientVisible, SqlState};
use crate::prepared::Registry;
use crate::server::catalog::{self, SettingCatalog};
use crate::server::login::connect;
use crate::server::{ServerConn, ServerError, ServerParams, ServerTarget};
use control::Switch;
use guard::{Held, Waiting};
use servers::{Lent, LentServers};
use state::{Checkout, Failure, PoolState, Sizes, Snapshot, WaitLimits};

pub use state::OnOutage;

pub use group::{Policy, PoolGroup, ReplicaPool};
pub use guard::PooledServer;
pub use registry::Pools;

/// Names a pool: the database a client asked for, the server user it logs in as, and which
/// of the database's servers it connects to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
    pub node: Node,
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.database, self.user)?;
        match self.node {
            Node::Primary => Ok(()),
            Node::Replica(i) => write!(f, "@replica{i}"),
        }
    }
}

/// Why no server could be had.
#[derive(Debug, Clone, Error)]
pub enum PoolError {
    #[error(transparent)]
    Server(Arc<ServerError>),
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    /// The wait ran out; `cause` is the failed login that left the pool short, if one
    /// happened while the client waited (Postgres down or restarting).
    #[error("query_wait_timeout: no server connection became free within {limit:?}{}", because(.cause))]
    WaitTimeout {
        limit: Duration,
        cause: Option<Arc<ServerError>>,
    },
    #[error("the pool was closed while waiting for a server")]
    Closed,
}

impl ClientVisible for PoolError {
    fn sqlstate(&self) -> SqlState {
        match self {
            PoolError::Server(e) => e.sqlstate(),
            PoolError::UnknownDatabase(_) => SqlState::INVALID_CATALOG_NAME,
            PoolError::WaitTimeout { cause: Some(e), .. } => e.sqlstate(),
            PoolError::WaitTimeout { cause: None, .. } => SqlState::QUERY_CANCELED,
            PoolError::Closed => SqlState::CONNECTION_FAILURE,
        }
    }
}

/// The end of a wait timeout's message when a login failed meanwhile.
fn because(cause: &Option<Arc<ServerError>>) -> String {
    cause
        .as_ref()
        .map(|e| format!("; the last login to the server failed: {e}"))
        .unwrap_or_default()
}

impl From<ServerError> for PoolError {
    fn from(e: ServerError) -> Self {
        PoolError::Server(Arc::new(e))
    }
}

/// Process-wide connection settings every pool shares.
#[derive(Debug, Clone, Copy)]
pub struct ConnectSettings {
    pub connect_timeout: Duration,
    pub login_retry: Duration,
    pub outage: OnOutage,
}

/// A server connection as the pool keeps it. Boxed: it changes hands on every transaction
/// (idle list, queue, client and back) and sits in the futures that wait for it, where a
/// pointer is moved and stored instead of several hundred bytes.
type Conn = Box<ServerConn>;

/// One pool of server connections.
#[derive(Debug)]
pub struct Pool {
    pub key: PoolKey,
    pub target: ServerTarget,
    /// Replaced whole by a reload; readers take the current one.
    settings: ArcSwap<PoolSettings>,
    /// The pool mode and prepared-statement limit, which only a restart changes: read for
    /// every transaction, they are kept here too rather than loaded from `settings`.
    mode: PoolMode,
    max_prepared: usize,
    connect: ConnectSettings,
    budgets: Budgets,
    state: Mutex<PoolState<Conn, PoolError>>,
    /// Parameters the first server reported, shown to clients that log in before they have
    /// a server of their own.
    defaults: RwLock<Option<Arc<ServerParams>>>,
    /// The settings the first server has (one that could answer), to judge clients'
    /// startup parameters by.
    catalog: RwLock<Option<Arc<SettingCatalog>>>,
    /// The statement texts this pool's clients prepared, under the internal names its
    /// servers know them by. Per pool, so a text found valid in one database is never
    /// taken as valid in another. Shared by the pools of one database's primary and
    /// replicas, which hold the same schema.
    pub statements: Arc<Registry>,
    /// Connections checked out now, for SHOW SERVERS.
    lent: LentServers,
    /// The database's pause switch (PAUSE, KILL, RESUME).
    switch: Arc<Switch>,
    /// Clients waiting for RESUME before they may queue, counted as waiting.
    held: AtomicUsize,
    connects: metrics::Counter,
    connect_failures: metrics::Counter,
    /// Logins Postgres refused for a connection limit.
    refused: metrics::Counter,
}

impl Pool {
    pub fn new(
        key: PoolKey,
        target: ServerTarget,
        settings: PoolSettings,
        connect: ConnectSettings,
        budgets: Budgets,
        statements: Arc<Registry>,
        switch: Arc<Switch>,
    ) -> Self {
        let sizes = Sizes {
            size: settings.pool_size,
            reserve: settings.reserve_pool_size,
            min: settings.min_pool_size,
        };
        let labels = [
            ("database", key.database.clone()),
            ("user", key.user.clone()),
            ("node", key.node.label()),
        ];
        Pool {
            mode: settings.pool_mode,
            max_prepared: settings.max_prepared_statements,
            connects: metrics::counter!("pgweir_server_connects_total", &labels),
            connect_failures: metrics::counter!("pgweir_server_connect_failures_total", &labels),
            refused: metrics::counter!("pgweir_server_refused_total", &refused_labels(&key)),
            key,
            target,
            settings: ArcSwap::from_pointee(settings),
            connect,
            budgets,
            state: Mutex::new(PoolState::new(sizes, connect.login_retry, connect.outage)),
            defaults: RwLock::new(None),
            catalog: RwLock::new(None),
            statements,
            lent: LentServers::default(),
            switch,
            held: AtomicUsize::new(0),
        }
    }

    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// `max_prepared_statements` (0: prepared statements pass through untouched).
    pub fn max_prepared_statements(&self) -> usize {
        self.max_prepared
    }

    /// The settings in force now (a cheap guard; not to be held across awaits).
    pub fn settings(&self) -> arc_swap::Guard<Arc<PoolSettings>> {
        self.settings.load()
    }

    /// Takes new settings from a reload: sizes and timeouts apply to the next checkout.
    /// The pool mode and prepared-statement limit stay (see [`crate::config::Reload`]):
    /// connected clients rely on them.
    pub fn reconfigure(self: &Arc<Self>, mut settings: PoolSettings) {
        settings.pool_mode = self.mode;
        settings.max_prepared_statements = self.max_prepared;
        let sizes = Sizes {
            size: settings.pool_size,
            reserve: settings.reserve_pool_size,
            min: settings.min_pool_size,
        };
        self.settings.store(Arc::new(settings));
        let (closed, open) = self.state.lock().resize(sizes, Instant::now());
        drop(closed);
        self.start_opens(open);
    }

    /// Servers by state and the queue (with the clients held by a pause), now.
    pub fn snapshot(&self) -> Snapshot {
        let delay = self.settings().server_check_delay;
        let mut s = self.state.lock().snapshot(Instant::now(), delay);
        s.waiting += self.held.load(Ordering::Relaxed);
        s
    }

    /// Whether a server is in use or logging in, or a client is queued for one: what
    /// PAUSE waits to end. Clients held by the pause do not count.
    pub fn busy(&self) -> bool {
        let s = self.state.lock();
        s.open_count() > s.idle_count() || s.waiting_count() > 0
    }

    /// Work given to this pool and not finished: servers in use plus clients queued, what
    /// replica load balancing compares.
    pub fn outstanding(&self) -> usize {
        let s = self.state.lock();
        s.open_count().saturating_sub(s.idle_count()) + s.waiting_count()
    }

    /// Waits for a server in arrival order, first for RESUME while the database is paused;
    /// each wait is bounded by `query_wait_timeout` (the queue's by the janitor, see
    /// [`Pool::maintain`]). Dropping the future leaves the queue at once.
    pub async fn checkout(self: &Arc<Self>) -> Result<PooledServer, PoolError> {
        self.checkout_as(OnOutage::Wait).await
    }

    /// A checkout that waits out an outage only if both the pool and `outage` do.
    async fn checkout_as(self: &Arc<Self>, outage: OnOutage) -> Result<PooledServer, PoolError> {
        let mut now = Instant::now();
        loop {
            let next = {
                let mut state = self.state.lock();
                // Read under the lock: see `Switch::paused`.
                (!self.switch.paused()).then(|| state.checkout_as(now, outage))
            };
            let (conn, idle_since) = match next {
                None => {
                    self.until_resumed().await?;
                    now = Instant::now();
                    continue;
                }
                Some(Checkout::Ready(c, since)) => (c, Some(since)),
                Some(Checkout::Fail(e)) => return Err(e),
                Some(Checkout::Wait { id, rx, open }) => {
                    self.start_opens(open);
                    (Waiting::new(self, id, rx).finish().await?, None)
                }
            };
            let born = conn.created;
            if let Some(conn) = self.verify(conn, idle_since).await {
                self.lent.lend(conn.id, Lent::of(&conn, Instant::now()));
                return Ok(PooledServer {
                    conn: Some(conn),
                    pool: Arc::clone(self),
                });
            }
            self.discard(born);
            now = Instant::now();
        }
    }

    /// Resolves once the pool's database is paused (at once if it is).
    pub async fn until_paused(&self) {
        self.switch.until_paused().await;
    }

    /// Waits until the database is resumed, at most `query_wait_timeout`.
    async fn until_resumed(&self) -> Result<(), PoolError> {
        let _held = Held::new(&self.held);
        let limit = self.settings().query_wait_timeout;
        if limit.is_zero() {
            self.switch.resumed().await;
            return Ok(());
        }
        tokio::time::timeout(limit, self.switch.resumed())
            .await
            .map_err(|_| PoolError::WaitTimeout { limit, cause: None })
    }

    /// Checks a connection before handing it out: a closed socket is never used, and one
    /// idle longer than `server_check_delay` must answer `server_check_query` first.
    async fn verify(&self, mut conn: Conn, idle_since: Option<Instant>) -> Option<Conn> {
        if !conn.looks_alive() {
            tracing::debug!(pool = %self.key, server = conn.id.0, "idle server was closed; replacing it");
            return None;
        }
        // A connection handed over by a releasing client was in use a moment ago.
        let Some(idle_since) = idle_since else {
            return Some(conn);
        };
        let settings = self.settings.load_full();
        if idle_since.elapsed() >= settings.server_check_delay {
            let check = settings.server_check_query.as_str();
            let answered =
                tokio::time::timeout(self.connect.connect_timeout, conn.run_internal(check)).await;
            if !matches!(answered, Ok(Ok(crate::protocol::TxStatus::Idle))) {
                tracing::debug!(pool = %self.key, server = conn.id.0, "server failed its check; replacing it");
                return None;
            }
        }
        Some(conn)
    }

    /// Starts `n` connection attempts whose results go to the queue (or idle).
    fn start_opens(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let pool = Arc::clone(self);
            tokio::spawn(async move { pool.open_one().await });
        }
    }

    async fn open_one(self: &Arc<Self>) {
        let Some(permit) = self.budgets.acquire() else {
            // The database or user is at its limit: retried by the upkeep.
            self.state.lock().open_deferred();
            return;
        };
        match connect(&self.target, self.connect.connect_timeout).await {
            Ok(mut c) => {
                self.connects.increment(1);
                c.permit = permit;
                c.permit.set_backend(c.key.pid);
                // The catalog first: a login that sees the defaults may look for it.
                if self.catalog.read().is_none() {
                    self.read_catalog(&mut c).await;
                }
                if self.defaults.read().is_none() {
                    *self.defaults.write() = Some(Arc::new(c.params.clone()));
                }
                tracing::debug!(pool = %self.key, server = c.id.0, "server connection opened");
                let born = c.created;
                let (extra, open) = self.state.lock().opened(Box::new(c), born, Instant::now());
                drop(extra);
                self.start_opens(open);
            }
            Err(e) => {
                self.connect_failures.increment(1);
                tracing::warn!(pool = %self.key, error = %e, "server connection failed");
                let kind = if e.is_connection_limit() {
                    self.refused.increment(1);
                    Failure::Full
                } else if e.is_passing() {
                    Failure::Passing
                } else {
                    Failure::Lasting
                };
                self.state
                    .lock()
                    .open_failed(PoolError::from(e), kind, Instant::now());
            }
        }
    }

    /// Gives back a clean connection, closing it instead once past `server_lifetime` (zero,
    /// as in PgBouncer: every connection is used once), when a RECONNECT marked it, or
    /// when a fleet's coordinator lowered a shared limit below the servers open.
    fn checkin(self: &Arc<Self>, conn: Conn) {
        let born = conn.created;
        let now = Instant::now();
        let expired = now.duration_since(born) >= self.settings().server_lifetime;
        let mut state = self.state.lock();
        if expired || state.is_marked(born) || self.budgets.over() {
            let n = state.discard(born, now);
            drop(state);
            tracing::debug!(pool = %self.key, server = conn.id.0, "server_lifetime reached, RECONNECT or over a fleet's allowance; closing");
            drop(conn);
            self.start_opens(n);
            return;
        }
        let extra = state.checkin(conn, born, now);
        drop(state);
        drop(extra);
    }

    /// A checked-out connection opened at `born` was closed: free its slot, or refill it
    /// for the queue.
    fn discard(self: &Arc<Self>, born: Instant) {
        let n = self.state.lock().discard(born, Instant::now());
        self.start_opens(n);
    }

    /// RECONNECT: closes the idle servers now and every other one open now when it is
    /// released or finishes logging in, so the next transactions get new connections.
    pub fn reconnect(&self) {
        let closed = self.state.lock().mark(Instant::now());
        drop(closed);
    }

    /// Servers a RECONNECT marked that are still open, for WAIT_CLOSE.
    pub fn marked_open(&self) -> usize {
        self.state.lock().marked_open()
    }

    /// Closes every idle server (PAUSE, once nothing is in use).
    pub fn close_idle(&self) {
        let closed = self.state.lock().close_idle();
        drop(closed);
    }

    /// Periodic upkeep, run by the registry: idle and lifetime expiry, min_pool_size,
    /// retrying opens a limit deferred, and the queue's timeouts (query_wait_timeout,
    /// reserve_pool_timeout).
    pub(crate) fn maintain(self: &Arc<Self>) {
        let s = self.settings();
        let now = Instant::now();
        let limits = WaitLimits {
            give_up: s.query_wait_timeout,
            reserve_after: s.reserve_pool_timeout,
        };
        let mut state = self.state.lock();
        let (closed, open) = state.maintain(
            now,
            s.server_idle_timeout,
            s.server_lifetime,
            self.switch.paused(),
            |c: &Conn| c.looks_alive(),
        );
        let more = state.expire_waiters(now, limits, |cause| PoolError::WaitTimeout {
            limit: limits.give_up,
            cause: match cause {
                Some(PoolError::Server(e)) => Some(Arc::clone(e)),
                _ => None,
            },
        });
        let mut shed = 0;
        while self.budgets.over() {
            let Some(conn) = state.take_one_idle() else {
                break;
            };
            // Dropped at once: the permit's count is what `over` reads.
            drop(conn);
            shed += 1;
        }
        drop(state);
        drop(closed);
        if shed > 0 {
            tracing::debug!(pool = %self.key, closed = shed, "closed idle servers over a fleet's allowance");
        }
        self.start_opens(open + more);
    }

    /// Servers the pool could use now (in use, logging in, or wanted by queued clients),
    /// up to its size and reserve: what a fleet member asks its share for.
    pub(crate) fn demand(&self) -> usize {
        let s = self.snapshot();
        let cap = s.size + self.settings().reserve_pool_size;
        (s.active + s.login + s.waiting).min(cap)
    }

    /// The shared limits the pool's servers count against.
    pub(crate) fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Closes one idle connection to make room under a shared limit; true if there was one.
    pub(crate) fn evict_one_idle(&self) -> bool {
        self.state.lock().take_one_idle().is_some()
    }

    /// Whether clients wait while the pool could open more but a shared limit stops it.
    pub(crate) fn starved(&self) -> bool {
        self.state.lock().starved()
    }

    /// The server's settings, once a server could tell them.
    pub fn catalog(&self) -> Option<Arc<SettingCatalog>> {
        self.catalog.read().clone()
    }

    /// Reads `pg_settings` on a fresh connection; a failure leaves it to the next one.
    async fn read_catalog(&self, c: &mut ServerConn) {
        match c.query_rows(catalog::SQL).await {
            Ok(got) => {
                let read = SettingCatalog::from_rows(&got.rows);
                *self.catalog.write() = Some(Arc::new(read));
            }
            Err(e) => tracing::debug!(pool = %self.key, error = %e, "cannot read pg_settings"),
        }
    }

    /// The parameters to show a logging-in client, opening a server if none was seen yet.
    /// Such a client does not wait out an outage: it learns at once that it cannot log in.
    pub async fn startup_params(self: &Arc<Self>) -> Result<Arc<ServerParams>, PoolError> {
        if let Some(p) = self.defaults.read().clone() {
            return Ok(p);
        }
        let server = self.checkout_as(OnOutage::Fail).await?;
        let params = Arc::new(server.params.clone());
        server.release();
        Ok(params)
    }
}

/// The labels of `pgweir_server_refused_total`: the pool's, and why Postgres refused.
/// Starts at 0 with the pool, so the first refusal shows in `increase()`.
fn refused_labels(key: &PoolKey) -> [(&'static str, String); 4] {
    [
        ("database", key.database.clone()),
        ("user", key.user.clone()),
        ("node", key.node.label()),
        ("reason", "connection_limit".to_owned()),
    ]
}

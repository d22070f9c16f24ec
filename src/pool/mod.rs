//! Server connection pools, one per (database, user): checkout with a FIFO wait, the
//! [`PooledServer`] guard that gives a connection back (or closes it) and the registry that
//! creates pools on first use. The bookkeeping itself lives in [`state`], without I/O.

pub mod state;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use thiserror::Error;

use crate::config::{Config, PoolMode};
use crate::error::{ClientVisible, SqlState};
use crate::server::login::connect;
use crate::server::{ServerConn, ServerError, ServerParams, ServerTarget};
use state::{Checkout, PoolState};

/// Names a pool: the database a client asked for and the server user it logs in as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.database, self.user)
    }
}

/// Why no server could be had.
#[derive(Debug, Clone, Error)]
pub enum PoolError {
    #[error(transparent)]
    Server(Arc<ServerError>),
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    #[error("the pool was closed while waiting for a server")]
    Closed,
}

impl ClientVisible for PoolError {
    fn sqlstate(&self) -> SqlState {
        match self {
            PoolError::Server(e) => e.sqlstate(),
            PoolError::UnknownDatabase(_) => SqlState::INVALID_CATALOG_NAME,
            PoolError::Closed => SqlState::CONNECTION_FAILURE,
        }
    }
}

impl From<ServerError> for PoolError {
    fn from(e: ServerError) -> Self {
        PoolError::Server(Arc::new(e))
    }
}

/// One pool of server connections.
#[derive(Debug)]
pub struct Pool {
    pub key: PoolKey,
    pub target: ServerTarget,
    pub mode: PoolMode,
    connect_timeout: Duration,
    state: Mutex<PoolState<ServerConn, PoolError>>,
    /// Parameters the first server reported, shown to clients that log in before they have
    /// a server of their own.
    defaults: RwLock<Option<Arc<ServerParams>>>,
}

impl Pool {
    pub fn new(
        key: PoolKey,
        target: ServerTarget,
        mode: PoolMode,
        size: usize,
        connect_timeout: Duration,
    ) -> Self {
        Pool {
            key,
            target,
            mode,
            connect_timeout,
            state: Mutex::new(PoolState::new(size)),
            defaults: RwLock::new(None),
        }
    }

    /// Waits for a server in arrival order, opening one when the pool has room. Dropping the
    /// future leaves the queue.
    pub async fn checkout(self: &Arc<Self>) -> Result<PooledServer, PoolError> {
        loop {
            let next = self.state.lock().checkout();
            let conn = match next {
                Checkout::Ready(c) => c,
                Checkout::Connect => self.open().await?,
                Checkout::Wait(rx) => rx.await.map_err(|_| PoolError::Closed)??,
            };
            if conn.looks_alive() {
                return Ok(PooledServer {
                    conn: Some(conn),
                    pool: Arc::clone(self),
                });
            }
            tracing::debug!(pool = %self.key, server = conn.id.0, "idle server was closed; replacing it");
            self.discard();
        }
    }

    /// Opens a connection for a reserved slot, recording the defaults on first success.
    async fn open(&self) -> Result<ServerConn, PoolError> {
        match connect(&self.target, self.connect_timeout).await {
            Ok(c) => {
                if self.defaults.read().is_none() {
                    *self.defaults.write() = Some(Arc::new(c.params.clone()));
                }
                tracing::debug!(pool = %self.key, server = c.id.0, "server connection opened");
                Ok(c)
            }
            Err(e) => {
                tracing::warn!(pool = %self.key, error = %e, "server connection failed");
                let err = PoolError::from(e);
                self.state.lock().connect_failed(&err);
                Err(err)
            }
        }
    }

    fn checkin(&self, conn: ServerConn) {
        self.state.lock().checkin(conn);
    }

    /// A checked-out connection was closed: free its slot, or refill it for a waiter.
    fn discard(self: &Arc<Self>) {
        if self.state.lock().discard() {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                if let Ok(c) = pool.open().await {
                    pool.checkin(c);
                }
            });
        }
    }

    /// The parameters to show a logging-in client, opening a server if none was seen yet.
    pub async fn startup_params(self: &Arc<Self>) -> Result<Arc<ServerParams>, PoolError> {
        if let Some(p) = self.defaults.read().clone() {
            return Ok(p);
        }
        let server = self.checkout().await?;
        let params = Arc::new(server.params.clone());
        server.release();
        Ok(params)
    }

    /// Counts for logs and tests: (idle, open, waiting).
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = self.state.lock();
        (s.idle_count(), s.open_count(), s.waiting_count())
    }
}

/// A server checked out of its pool. [`PooledServer::release`] gives it back for reuse;
/// dropping it instead closes the connection, the safe end for a server in an unknown state.
#[derive(Debug)]
pub struct PooledServer {
    conn: Option<ServerConn>,
    pool: Arc<Pool>,
}

impl PooledServer {
    /// Returns a clean server (idle, nothing owed) to the pool.
    pub fn release(mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.checkin(c);
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl std::ops::Deref for PooledServer {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        self.conn
            .as_ref()
            .expect("connection present until release or drop")
    }
}

impl std::ops::DerefMut for PooledServer {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("connection present until release or drop")
    }
}

impl Drop for PooledServer {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            tracing::debug!(pool = %self.pool.key, server = c.id.0, "closing server connection");
            drop(c);
            self.pool.discard();
        }
    }
}

/// Every pool, created on first use from the configuration.
#[derive(Debug)]
pub struct Pools {
    config: Arc<Config>,
    pools: RwLock<HashMap<PoolKey, Arc<Pool>>>,
}

impl Pools {
    pub fn new(config: Arc<Config>) -> Self {
        Pools {
            config,
            pools: RwLock::new(HashMap::new()),
        }
    }

    /// The pool a client of `database` logged in as `user` uses.
    pub fn get(&self, database: &str, user: &str) -> Result<Arc<Pool>, PoolError> {
        let db = self
            .config
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
        let cfg = &self.config;
        let password = match &db.user {
            Some(_) => db.password.clone(),
            None => cfg.users.get(user).and_then(|u| u.password.clone()),
        };
        let mode = cfg
            .users
            .get(user)
            .and_then(|u| u.pool_mode)
            .or(db.pool_mode)
            .unwrap_or(cfg.pool.pool_mode);
        let target = ServerTarget {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: server_user,
            password,
        };
        let size = db.pool_size.unwrap_or(cfg.pool.default_pool_size);
        let timeout = cfg.pgweir.server_connect_timeout;
        let mut pools = self.pools.write();
        let pool = pools
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Pool::new(key, target, mode, size, timeout)));
        Ok(Arc::clone(pool))
    }
}

//! The pool settings ([`PoolSettings`]): `[pool]` holds them as every pool's defaults,
//! and each pool gets them with the `[databases.NAME]` and `[users.NAME]` overrides
//! applied.
//!
//! Runtime code asks [`Config::pool_settings`] instead of walking the three tables
//! itself, so the precedence rules live in one place: a user override beats a
//! database override, which beats the `[pool]` default, for exactly the keys
//! PgBouncer lets each level set.

use std::time::Duration;

use super::{Config, DatabaseConfig, PoolMode, UserConfig};

/// The pool settings: as `[pool]` gives them (every pool's defaults), and as one pool
/// gets them once its database's and users' overrides are applied
/// ([`Config::pool_settings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub pool_mode: PoolMode,
    /// Server connections per pool; `default_pool_size` in `[pool]`.
    pub pool_size: usize,
    /// Server connections kept open even when idle, so the first clients after a quiet
    /// spell (or a Postgres restart) do not wait for logins; never more than `pool_size`
    /// (a user's smaller `pool_size` caps it).
    pub min_pool_size: usize,
    /// Extra connections a pool may open for clients that have waited longer than
    /// `reserve_pool_timeout`, to absorb bursts; 0 = no reserve.
    pub reserve_pool_size: usize,
    /// How long a client waits before the reserve may be used; zero = at once.
    pub reserve_pool_timeout: Duration,
    /// Most server connections to one database over all its pools; 0 = no limit.
    pub max_db_connections: usize,
    /// Most server connections as one user over all its pools; 0 = no limit.
    pub max_user_connections: usize,
    /// An unused server idle this long is closed (down to `min_pool_size`); zero = never.
    pub server_idle_timeout: Duration,
    /// An unused server connected this long is closed, so server-side memory and
    /// configuration changes do not live forever; zero = use each server only once.
    pub server_lifetime: Duration,
    /// A client queued this long for a server gets an error and is disconnected;
    /// zero = wait forever.
    pub query_wait_timeout: Duration,
    /// A query running this long is cancelled; zero = never. Meant as a network-failure
    /// backstop slightly above the server's own `statement_timeout`.
    pub query_timeout: Duration,
    /// A client idle this long inside a transaction is disconnected, so it cannot hold
    /// a server (and its locks) indefinitely; zero = never.
    pub idle_transaction_timeout: Duration,
    /// A client idle this long outside a transaction is disconnected; zero = never.
    pub client_idle_timeout: Duration,
    /// A server released longer ago than this is checked with `server_check_query`
    /// before it is handed out, so a dead one is replaced unseen; zero = always check.
    pub server_check_delay: Duration,
    /// The check query. Empty (the default) sends an empty query, which Postgres
    /// answers without parsing or planning anything (PgBouncer's `<empty>`).
    pub server_check_query: String,
    /// Protocol-level prepared statements kept on each server connection (least recently
    /// used closed first), so clients' named statements work in transaction and statement
    /// mode; 0 turns the support off and passes statement names through unchanged.
    pub max_prepared_statements: usize,
    /// Whether a client that creates state which cannot follow it to another server
    /// (LISTEN, session advisory locks, temp tables, WITH HOLD cursors, LOAD, SQL
    /// PREPARE) keeps its server until that state is gone. When false, such statements
    /// are refused with an error instead.
    pub pin_session_state: bool,
    /// Functions (lowercase, unqualified) the operator declares read-only, so reads that
    /// call them may go to a replica: in `[pool]` the default for every database that does
    /// not set its own list, for a pool its database's list. Functions that always write
    /// are refused.
    pub read_only_functions: Vec<String>,
}

/// Transaction mode is why pgweir exists; every other value is PgBouncer's.
impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            pool_mode: PoolMode::Transaction,
            pool_size: 20,
            min_pool_size: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: Duration::from_secs(5),
            max_db_connections: 0,
            max_user_connections: 0,
            server_idle_timeout: Duration::from_secs(600),
            server_lifetime: Duration::from_secs(3600),
            query_wait_timeout: Duration::from_secs(120),
            query_timeout: Duration::ZERO,
            idle_transaction_timeout: Duration::ZERO,
            client_idle_timeout: Duration::ZERO,
            server_check_delay: Duration::from_secs(30),
            server_check_query: String::new(),
            max_prepared_statements: 200,
            pin_session_state: true,
            read_only_functions: Vec::new(),
        }
    }
}

impl Config {
    /// The settings for a client logged in as `user` asking for `database`; `None` if
    /// no such database is configured.
    ///
    /// Precedence, highest first, per key:
    /// - `pool_mode`, `pool_size`, `reserve_pool_size`: user, database, `[pool]`;
    /// - `max_user_connections`: user, `[pool]`;
    /// - `min_pool_size`, `max_db_connections`, `server_lifetime`: database, `[pool]`;
    /// - `query_timeout`, `idle_transaction_timeout`, `client_idle_timeout`: user, `[pool]`;
    /// - `pin_session_state`: database, `[pool]`;
    /// - everything else: `[pool]` only.
    ///
    /// As in PgBouncer, the keys that shape the pool itself (the first two groups) come
    /// from the user the pool logs in as: the database's forced `user` when it has one,
    /// since all its clients share that one pool and it must not matter which client
    /// opened it. The per-client timeouts always come from `user`, the client's own name.
    pub fn pool_settings(&self, database: &str, user: &str) -> Option<PoolSettings> {
        let db = self.databases.get(database)?;
        let pool_user = self.users.get(db.user.as_deref().unwrap_or(user));
        let client = self.users.get(user);
        Some(resolve(&self.pool, db, pool_user, client))
    }
}

/// Combines the three levels: the `[pool]` settings `d`, with the overrides each key
/// allows. `pool_user` and `client` are `None` when the user has no `[users]` entry
/// (possible with `auth_type = "trust"` or a forced user).
fn resolve(
    d: &PoolSettings,
    db: &DatabaseConfig,
    pool_user: Option<&UserConfig>,
    client: Option<&UserConfig>,
) -> PoolSettings {
    let pool_size = pool_user
        .and_then(|u| u.pool_size)
        .or(db.pool_size)
        .unwrap_or(d.pool_size);
    let client_timeout = |get: fn(&UserConfig) -> Option<Duration>, default: Duration| {
        client.and_then(get).unwrap_or(default)
    };
    PoolSettings {
        pool_mode: pool_user
            .and_then(|u| u.pool_mode)
            .or(db.pool_mode)
            .unwrap_or(d.pool_mode),
        pool_size,
        min_pool_size: db.min_pool_size.unwrap_or(d.min_pool_size).min(pool_size),
        reserve_pool_size: pool_user
            .and_then(|u| u.reserve_pool_size)
            .or(db.reserve_pool_size)
            .unwrap_or(d.reserve_pool_size),
        max_db_connections: db.max_db_connections.unwrap_or(d.max_db_connections),
        max_user_connections: pool_user
            .and_then(|u| u.max_user_connections)
            .unwrap_or(d.max_user_connections),
        server_lifetime: db.server_lifetime.unwrap_or(d.server_lifetime),
        query_timeout: client_timeout(|u| u.query_timeout, d.query_timeout),
        idle_transaction_timeout: client_timeout(
            |u| u.idle_transaction_timeout,
            d.idle_transaction_timeout,
        ),
        client_idle_timeout: client_timeout(|u| u.client_idle_timeout, d.client_idle_timeout),
        pin_session_state: db.pin_session_state.unwrap_or(d.pin_session_state),
        read_only_functions: db.read_only_functions.clone(),
        ..d.clone()
    }
}

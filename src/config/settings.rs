//! What one pool and its clients actually use, once `[pool]` defaults and the
//! `[databases.NAME]` and `[users.NAME]` overrides are combined.
//!
//! Runtime code asks [`Config::pool_settings`] instead of walking the three tables
//! itself, so the precedence rules live in one place: a user override beats a
//! database override, which beats the `[pool]` default, for exactly the keys
//! PgBouncer lets each level set.

use std::time::Duration;

use super::{Config, DatabaseConfig, PoolDefaults, PoolMode, UserConfig};

/// The effective settings for one (database, client user) pair. Field meanings and
/// what zero means are those of the [`PoolDefaults`] fields of the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub pool_mode: PoolMode,
    pub pool_size: usize,
    /// Never more than `pool_size`: a user's smaller `pool_size` caps it.
    pub min_pool_size: usize,
    pub reserve_pool_size: usize,
    pub reserve_pool_timeout: Duration,
    pub max_db_connections: usize,
    pub max_user_connections: usize,
    pub server_idle_timeout: Duration,
    pub server_lifetime: Duration,
    pub query_wait_timeout: Duration,
    pub query_timeout: Duration,
    pub idle_transaction_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub server_check_delay: Duration,
    pub server_check_query: String,
    pub max_prepared_statements: usize,
    pub pin_session_state: bool,
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

/// Combines the three levels; `pool_user` and `client` are `None` when the user has
/// no `[users]` entry (possible with `auth_type = "trust"` or a forced user).
fn resolve(
    d: &PoolDefaults,
    db: &DatabaseConfig,
    pool_user: Option<&UserConfig>,
    client: Option<&UserConfig>,
) -> PoolSettings {
    let pool_size = pool_user
        .and_then(|u| u.pool_size)
        .or(db.pool_size)
        .unwrap_or(d.default_pool_size);
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
        reserve_pool_timeout: d.reserve_pool_timeout,
        max_db_connections: db.max_db_connections.unwrap_or(d.max_db_connections),
        max_user_connections: pool_user
            .and_then(|u| u.max_user_connections)
            .unwrap_or(d.max_user_connections),
        server_idle_timeout: d.server_idle_timeout,
        server_lifetime: db.server_lifetime.unwrap_or(d.server_lifetime),
        query_wait_timeout: d.query_wait_timeout,
        query_timeout: client_timeout(|u| u.query_timeout, d.query_timeout),
        idle_transaction_timeout: client_timeout(
            |u| u.idle_transaction_timeout,
            d.idle_transaction_timeout,
        ),
        client_idle_timeout: client_timeout(|u| u.client_idle_timeout, d.client_idle_timeout),
        server_check_delay: d.server_check_delay,
        server_check_query: d.server_check_query.clone(),
        max_prepared_statements: d.max_prepared_statements,
        pin_session_state: db.pin_session_state.unwrap_or(d.pin_session_state),
    }
}

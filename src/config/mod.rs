//! The configuration file: TOML schema, defaults, `${ENV}` expansion and validation.
//!
//! Read once at start (and by `pgweir check`); everything else receives the typed
//! [`Config`] and never sees TOML. Secrets stay wrapped in [`Secret`] so they do not
//! reach logs through `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    pub pgweir: GeneralConfig,
    pub pool: PoolDefaults,
    /// Keyed by the name clients connect to.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// Keyed by user name.
    pub users: BTreeMap<String, UserConfig>,
}

/// `[pgweir]`: process-wide settings.
#[derive(Debug, Clone)]
pub struct GeneralConfig {
    pub listen_addr: String,
    pub listen_port: u16,
    pub auth_type: AuthType,
    pub max_client_conn: usize,
    /// Tokio worker threads; 0 means one per CPU core.
    pub workers: usize,
    pub log_level: String,
    /// How long a new server connection may take to connect and log in.
    pub server_connect_timeout: Duration,
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    ScramSha256,
    Md5,
    Plain,
    Trust,
}

/// When a server connection goes back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Held until the client disconnects, then reset with `DISCARD ALL`.
    Session,
    /// Held for one transaction.
    Transaction,
    /// Held for one statement; explicit transactions are refused.
    Statement,
}

/// `[pool]`: defaults every pool starts from.
#[derive(Debug, Clone)]
pub struct PoolDefaults {
    pub pool_mode: PoolMode,
    pub default_pool_size: usize,
}

/// `[databases.NAME]`: where a client-visible database name really lives.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub host: String,
    pub port: u16,
    /// Name on the server; defaults to the table key.
    pub dbname: String,
    /// Forced user: every client of this database shares one pool as this server user.
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub pool_size: Option<usize>,
    pub pool_mode: Option<PoolMode>,
}

/// `[users.NAME]`: who may connect.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// Plaintext, `md5<hex>` or a `SCRAM-SHA-256$` verifier.
    pub password: Option<Secret>,
    pub pool_mode: Option<PoolMode>,
}

/// A password or verifier from the config; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

//! The configuration file: TOML schema, defaults, `${ENV}` expansion and validation.
//!
//! Read once at start (and by `pgweir check`); everything else receives the typed
//! [`Config`] and never sees TOML. Secrets stay wrapped in [`Secret`] so they do not
//! reach logs through `Debug`.
//!
//! The types and defaults live here; `load` says which keys each section has,
//! `reader` walks the TOML and collects problems, `duration` and `env` parse the
//! value forms shared by many keys, and [`ConfigError`] lists everything that is wrong.

mod duration;
mod env;
mod error;
mod load;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use duration::{duration_from_seconds, parse_duration, DurationError};
pub use error::{ConfigError, Problem};

/// The values `log_level` accepts, quietest first.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

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

impl Config {
    /// Reads and validates the file at `path`, expanding `${ENV}` from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates config text, looking `${NAME}` up with `env`.
    ///
    /// On failure the error holds every problem found, not just the first, so an
    /// operator can fix the file in one pass.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        load::build(text, env).map_err(ConfigError::Invalid)
    }
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

/// PgBouncer's defaults, except that SCRAM is the default `auth_type`.
impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            listen_addr: "127.0.0.1".to_owned(),
            listen_port: 6432,
            auth_type: AuthType::ScramSha256,
            max_client_conn: 100,
            workers: 0,
            log_level: "info".to_owned(),
            server_connect_timeout: Duration::from_secs(15),
        }
    }
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    ScramSha256,
    Md5,
    Plain,
    Trust,
}

impl AuthType {
    /// Every variant, so the config reader can list the accepted names.
    pub const ALL: [AuthType; 4] = [
        AuthType::ScramSha256,
        AuthType::Md5,
        AuthType::Plain,
        AuthType::Trust,
    ];

    /// The name used in the config file (PgBouncer's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::ScramSha256 => "scram-sha-256",
            AuthType::Md5 => "md5",
            AuthType::Plain => "plain",
            AuthType::Trust => "trust",
        }
    }
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

impl PoolMode {
    /// Every variant, so the config reader can list the accepted names.
    pub const ALL: [PoolMode; 3] = [
        PoolMode::Session,
        PoolMode::Transaction,
        PoolMode::Statement,
    ];

    /// The name used in the config file and in `SHOW POOLS`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// `[pool]`: defaults every pool starts from.
#[derive(Debug, Clone)]
pub struct PoolDefaults {
    pub pool_mode: PoolMode,
    pub default_pool_size: usize,
}

/// Transaction mode is why pgweir exists; the pool size is PgBouncer's.
impl Default for PoolDefaults {
    fn default() -> Self {
        PoolDefaults {
            pool_mode: PoolMode::Transaction,
            default_pool_size: 20,
        }
    }
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

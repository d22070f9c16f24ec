//! The configuration file: TOML schema, defaults, `${ENV}` expansion and validation.
//!
//! Read once at start (and by `pgweir check`); everything else receives the typed
//! [`Config`] and never sees TOML. Secrets stay wrapped in [`Secret`] so they do not
//! reach logs through `Debug`.
//!
//! The types and defaults live here. `table` lists every `[pgweir]` and `[pool]` key once,
//! as `keys` describes them (section, kind of value, reload, PgBouncer name, how to read
//! and show it); `load` reads the file with that table and adds the rules between keys and
//! the `[databases]` and `[users]` entries; `reader` walks the TOML and collects problems;
//! `duration` and `env` parse the value forms shared by many keys; `settings` holds the
//! pool settings and resolves what one pool actually uses ([`Config::pool_settings`]); and
//! [`ConfigError`] lists everything that is wrong.
//!
//! Every timeout is a [`Duration`]. Zero is a valid value whose meaning is PgBouncer's
//! for that key, documented on each field: for most it switches the timeout off, but
//! not for all (a zero `server_lifetime` means "use a server once"). Counts where
//! PgBouncer treats 0 as "no limit" are `usize` with the same convention.

mod auth;
mod duration;
mod env;
mod error;
mod fleet;
mod hint;
mod keys;
mod listen;
mod load;
mod node;
mod reader;
mod settings;
mod table;
mod tcp;
#[cfg(test)]
mod tests;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use auth::{AuthLookup, AuthSources, DatabaseAuth, DEFAULT_AUTH_QUERY};
pub use duration::{duration_from_seconds, parse_duration, DurationError};
pub use error::{ConfigError, Problem};
pub use fleet::{FleetName, MAX_FLEET_NAME};
pub use keys::{Key, Kind, Reload, Section, Value};
pub use listen::{FileMode, Group, ListenAddr, ListenHost, UnixSocket};
pub use node::Node;
pub use settings::PoolSettings;
pub use tcp::TcpSettings;
pub use tls::{ClientTlsMode, ServerTlsMode, TlsConfig};

use crate::hba::HbaFile;

/// `NAMES`: the config-file name of each variant of a choice, in `ALL`'s order, so the key
/// table, the converter and the messages list the same names as the reader accepts.
macro_rules! variant_names {
    ($($t:ident),*) => {$(
        impl $t {
            pub const NAMES: [&'static str; $t::ALL.len()] = {
                let mut names = [""; $t::ALL.len()];
                let mut i = 0;
                while i < names.len() {
                    names[i] = $t::ALL[i].as_str();
                    i += 1;
                }
                names
            };
        }
    )*};
}
variant_names!(
    AuthType,
    LogFormat,
    Histograms,
    PoolMode,
    ClientTlsMode,
    ServerTlsMode
);

/// The values `log_level` accepts, quietest first.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Database names that reach the admin console instead of a server (`pgbouncer` so
/// tools and runbooks written for PgBouncer work unchanged), so `[databases]` may not
/// use them.
pub const ADMIN_DATABASES: [&str; 2] = ["pgweir", "pgbouncer"];

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    pub pgweir: GeneralConfig,
    /// `[pool]`: what every pool uses unless a database or user overrides it.
    pub pool: PoolSettings,
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
    /// TCP addresses to listen on; may be empty when `unix_socket` is set.
    pub listen_addr: ListenAddr,
    /// The TCP port, and the number in the Unix socket's name.
    pub listen_port: u16,
    /// SO_REUSEPORT on the TCP sockets (PgBouncer's setting): several pgweir processes
    /// listen on one address and port, and the kernel spreads new clients over them.
    pub so_reuseport: bool,
    /// `unix_socket_dir` and its mode and group. Off unless set, unlike PgBouncer's `/tmp`:
    /// a socket in a shared directory is one more way in that a container or a second
    /// instance on the host does not expect, so it is asked for where it is wanted.
    pub unix_socket: Option<UnixSocket>,
    pub auth_type: AuthType,
    /// The hba file `auth_type = "hba"` reads, parsed when the configuration is read
    /// (at start and at each reload), so a bad file is refused like any config problem.
    pub auth_hba_file: Option<HbaFile>,
    pub max_client_conn: usize,
    /// Most client connections to one database (summed over its users), so one busy
    /// application cannot take every `max_client_conn` slot; 0 = no limit.
    pub max_db_client_connections: usize,
    /// Most client connections by one user (over all databases); 0 = no limit.
    pub max_user_client_connections: usize,
    /// Tokio worker threads; 0 means one per CPU core.
    pub workers: usize,
    pub log_level: String,
    /// How long a new server connection may take to connect and log in.
    pub server_connect_timeout: Duration,
    /// After a failed server login, how long clients of that pool get an error at once
    /// instead of each trying a server that is down; zero retries immediately.
    pub server_login_retry: Duration,
    /// A client that has not finished startup and authentication by then is dropped,
    /// so half-open connections cannot hold client slots; zero = no limit.
    pub client_login_timeout: Duration,
    /// A replica that fails a connect or a health check gets no reads for this long,
    /// then is checked again, so a dead replica costs one failure per ban rather than
    /// one per read; zero = check again at the next sample.
    pub replica_ban_time: Duration,
    /// How often the replica monitor samples the primary's and each replica's WAL
    /// position. It bounds how soon a replica is known to have caught up with a
    /// client's write, so short; never zero.
    pub replica_check_interval: Duration,
    /// Where `GET /metrics` (Prometheus text format) and `GET /health` are served;
    /// `None` (the default) serves neither, so nothing listens unless asked.
    pub metrics_addr: Option<SocketAddr>,
    /// How finely the latency histograms are kept: one set per pool is the most telling,
    /// but with thousands of pools their series dominate a scrape.
    pub metrics_histograms: Histograms,
    /// Users who may run every admin console command; each must be in `[users]` (or, when
    /// `auth_file` is set, may be in that file).
    pub admin_users: Vec<String>,
    /// Users who may run the admin console's SHOW commands only, so monitoring
    /// cannot pause or kill anything; each must be in `[users]`.
    pub stats_users: Vec<String>,
    /// How long SIGTERM and `SHUTDOWN WAIT_FOR_CLIENTS` let clients finish their
    /// transactions before closing them, so a stuck client cannot hold up a restart
    /// forever; zero = no limit. Default 30s, far longer than an ordinary transaction.
    pub shutdown_timeout: Duration,
    /// Startup parameters pgweir drops instead of judging and applying them (PgBouncer's
    /// setting): for drivers that send what the server does not have.
    pub ignore_startup_parameters: Vec<String>,
    /// Whether each client login is logged (PgBouncer's default: on).
    pub log_connections: bool,
    /// Whether each client disconnection is logged, with its reason (PgBouncer's
    /// default: on).
    pub log_disconnections: bool,
    /// How often a stats line is logged per database, and the window `SHOW STATS`
    /// averages over; zero = no stats line.
    pub stats_period: Duration,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Where user secrets come from besides `[users]`: `auth_file` and `auth_query`.
    pub auth_sources: AuthSources,
    /// TLS towards clients and towards servers.
    pub tls: TlsConfig,
    /// Keepalive and user timeout of every client and server socket.
    pub tcp: TcpSettings,
    /// The fleet this process belongs to: `max_db_connections` and `max_user_connections`
    /// then hold for every pgweir process of that name against the same Postgres
    /// ([`crate::fleet`]); `None` keeps them per process.
    pub fleet: Option<FleetName>,
}

/// PgBouncer's defaults for the keys it has, except that SCRAM is the default
/// `auth_type`; the other keys' defaults are explained on their fields.
impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            listen_addr: ListenAddr::default(),
            listen_port: 6432,
            so_reuseport: false,
            unix_socket: None,
            auth_type: AuthType::ScramSha256,
            auth_hba_file: None,
            max_client_conn: 100,
            max_db_client_connections: 0,
            max_user_client_connections: 0,
            workers: 0,
            log_level: "info".to_owned(),
            server_connect_timeout: Duration::from_secs(15),
            server_login_retry: Duration::from_secs(15),
            client_login_timeout: Duration::from_secs(60),
            replica_ban_time: Duration::from_secs(30),
            replica_check_interval: Duration::from_millis(100),
            metrics_addr: None,
            metrics_histograms: Histograms::Pool,
            admin_users: Vec::new(),
            stats_users: Vec::new(),
            shutdown_timeout: Duration::from_secs(30),
            ignore_startup_parameters: Vec::new(),
            log_connections: true,
            log_disconnections: true,
            stats_period: Duration::from_secs(60),
            log_format: LogFormat::Text,
            auth_sources: AuthSources::default(),
            tls: TlsConfig::default(),
            tcp: TcpSettings::default(),
            fleet: None,
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
    /// The CN of a verified client certificate must equal the user name.
    Cert,
    /// Each connection's method comes from the first matching line of `auth_hba_file`.
    Hba,
}

impl AuthType {
    /// Every variant, so the config reader can list the accepted names.
    pub const ALL: [AuthType; 6] = [
        AuthType::ScramSha256,
        AuthType::Md5,
        AuthType::Plain,
        AuthType::Trust,
        AuthType::Cert,
        AuthType::Hba,
    ];

    /// The name used in the config file (PgBouncer's spelling).
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthType::ScramSha256 => "scram-sha-256",
            AuthType::Md5 => "md5",
            AuthType::Plain => "plain",
            AuthType::Trust => "trust",
            AuthType::Cert => "cert",
            AuthType::Hba => "hba",
        }
    }
}

/// `log_format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log shippers that index fields.
    Json,
}

impl LogFormat {
    /// Every variant, so the config reader can list the accepted names.
    pub const ALL: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `metrics_histograms`: which labels the latency histograms carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histograms {
    /// `database` and `user`: one set per pool.
    Pool,
    /// `database` only, the users of a database summed.
    Database,
    /// None recorded.
    Off,
}

impl Histograms {
    pub const ALL: [Histograms; 3] = [Histograms::Pool, Histograms::Database, Histograms::Off];

    pub const fn as_str(self) -> &'static str {
        match self {
            Histograms::Pool => "pool",
            Histograms::Database => "database",
            Histograms::Off => "off",
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
    pub const fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
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
    /// Overrides of the `[pool]` keys of the same name (`pool_size` overrides
    /// `default_pool_size`); `None` = not set here.
    pub pool_size: Option<usize>,
    pub pool_mode: Option<PoolMode>,
    pub min_pool_size: Option<usize>,
    pub reserve_pool_size: Option<usize>,
    pub max_db_connections: Option<usize>,
    pub server_lifetime: Option<Duration>,
    pub pin_session_state: Option<bool>,
    /// Streaming replicas of this database that may serve reads; empty = none.
    pub replicas: Vec<ReplicaConfig>,
    /// Whether transactions proven read-only go to a replica (default off, so adding
    /// replicas never changes where anything runs until asked).
    pub read_routing: ReadRouting,
    /// Where every transaction goes, for a database name that should reach replicas
    /// as a whole (a reporting name, say); default primary.
    pub target: Target,
    /// A replica further behind the primary than this gets no reads; zero = no limit.
    /// Default 1s: stale enough to notice, short enough for most dashboards.
    pub max_replica_lag: Duration,
    /// Whether a client's reads wait for a replica to have replayed the client's own
    /// last write (else they go to the primary). Default true: without it a client can
    /// miss the row it has just committed.
    pub read_your_writes: bool,
    /// The `[pool]` list unless this database sets its own, which replaces it (so a
    /// database can also declare none); lowercase.
    pub read_only_functions: Vec<String>,
    /// Overrides of the `[pgweir]` `auth_user`, `auth_query` and `auth_dbname`.
    pub auth: DatabaseAuth,
}

/// One entry of a database's `replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    pub host: String,
    /// Defaults to the database's own `port`: replicas usually mirror the primary.
    pub port: u16,
    /// Share of the reads relative to the other replicas, at least 1 (the default).
    pub weight: u32,
}

/// `read_routing`: whether pgweir chooses the node per transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadRouting {
    /// Everything runs where `target` says.
    #[default]
    Off,
    /// Transactions proven read-only go to a replica, everything else to the primary.
    Auto,
}

impl ReadRouting {
    /// Every variant, so the config reader can list the accepted names.
    pub const ALL: [ReadRouting; 2] = [ReadRouting::Off, ReadRouting::Auto];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReadRouting::Off => "off",
            ReadRouting::Auto => "auto",
        }
    }
}

/// `target`: the nodes every transaction of a database may run on, whatever it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    #[default]
    Primary,
    /// A usable replica; the primary when none is.
    Replica,
    /// The primary or a usable replica, whichever has the least work.
    Any,
}

impl Target {
    /// Every variant, so the config reader can list the accepted names.
    pub const ALL: [Target; 3] = [Target::Primary, Target::Replica, Target::Any];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Target::Primary => "primary",
            Target::Replica => "replica",
            Target::Any => "any",
        }
    }
}

/// `[users.NAME]`: who may connect.
#[derive(Debug, Clone, Default)]
pub struct UserConfig {
    /// Plaintext, `md5<hex>` or a `SCRAM-SHA-256$` verifier.
    pub password: Option<Secret>,
    /// Overrides of the `[pool]` keys of the same name (`pool_size` overrides
    /// `default_pool_size`); `None` = not set here.
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<usize>,
    pub reserve_pool_size: Option<usize>,
    pub max_user_connections: Option<usize>,
    pub query_timeout: Option<Duration>,
    pub idle_transaction_timeout: Option<Duration>,
    pub client_idle_timeout: Option<Duration>,
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

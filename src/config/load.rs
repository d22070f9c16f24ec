//! Builds a [`Config`] from the file's text, one section at a time. The [`Reader`] does the
//! TOML walking and collects problems; the `[pgweir]` and `[pool]` keys are read as
//! [`super::table`] lists them, and this file adds the rules between keys, the value checks
//! some keys there use, and the `[databases]` and `[users]` entries.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml_edit::ImDocument;

use super::auth;
use super::error::Problem;
use super::keys;
use super::listen::{self, FileMode, Group, UnixSocket};
use super::reader::{EnvLookup, Reader, Section};
use super::Node;
use super::{
    AuthType, Config, DatabaseConfig, GeneralConfig, PoolMode, PoolSettings, ReadRouting,
    ReplicaConfig, Target, UserConfig, ADMIN_DATABASES,
};
use crate::hba::HbaFile;
use crate::sql::route::never_read_only;

/// Where Postgres listens unless a database entry says otherwise.
const DEFAULT_SERVER_PORT: u16 = 5432;
/// Ports a listener or a server may use.
pub(super) const PORTS: std::ops::RangeInclusive<i64> = 1..=65535;
/// Sizes and limits that must be at least one.
pub(super) const AT_LEAST_ONE: std::ops::RangeInclusive<i64> = 1..=i64::MAX;
/// Counts where zero has a meaning of its own.
pub(super) const NON_NEGATIVE: std::ops::RangeInclusive<i64> = 0..=i64::MAX;
/// How far behind a replica may be before it gets no reads, unless a database says.
const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_secs(1);
/// Replica weights: at least one, so every listed replica gets some reads.
const WEIGHTS: std::ops::RangeInclusive<i64> = 1..=u32::MAX as i64;

/// Parses and validates the whole file, returning every problem found if any.
pub(super) fn build(text: &str, env: EnvLookup<'_>) -> Result<Config, Vec<Problem>> {
    let mut r = Reader::new(text, env);
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = r.line(e.span());
            // The parser's message may span lines; keep one problem per line.
            let message = e.message().replace('\n', "; ");
            r.problem(String::new(), line, format!("invalid TOML: {message}"));
            return Err(r.into_problems());
        }
    };
    let mut root = Section::root(doc.as_table());
    // Users first: `[pgweir]` names some of them. Problems are sorted by line, so the
    // order sections are read in does not show.
    let mut config = Config::defaults();
    config.users = r
        .table(&mut root, "users")
        .map(|mut sec| named(&mut r, &mut sec, |r, _, user_sec| user(r, user_sec)))
        .unwrap_or_default();
    // An absent [pgweir] or [pool] is read as empty: its defaults, and its keys known.
    let empty = toml_edit::Table::new();
    let sec = r.table_or(&mut root, "pgweir", &empty);
    general(&mut r, sec, &mut config);
    let sec = r.table_or(&mut root, "pool", &empty);
    pool(&mut r, sec, &mut config);
    config.databases = databases(&mut r, &mut root, &config.pool);
    auth::check_dbnames(&mut r, &config.pgweir.auth_sources, &config.databases);
    r.finish(root);
    let problems = r.into_problems();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// `[pgweir]`: its keys, then the rules between them.
fn general(r: &mut Reader<'_>, mut sec: Section<'_>, config: &mut Config) {
    keys::read(r, &mut sec, keys::Section::Pgweir, config);
    let config = &config.pgweir;
    if config.auth_type == AuthType::Hba && !sec.has("auth_hba_file") {
        r.key_problem(&sec, "auth_type", "\"hba\" needs auth_hba_file");
    }
    check_cert_auth(r, &sec, config);
    if config.listen_addr.hosts().is_empty() && config.unix_socket.is_none() {
        let why = "is empty and unix_socket_dir is not set: nothing to listen on";
        r.key_problem(&sec, "listen_addr", why);
    }
    if config.replica_check_interval.is_zero() {
        // A zero interval would make the monitor spin on its queries.
        r.key_problem(&sec, "replica_check_interval", "must be more than zero");
    }
    auth::check_query(r, &sec, config.auth_sources.auth_query.as_str());
    super::tls::check(r, &sec, &config.tls);
    r.finish(sec);
}

/// `unix_socket_dir` with its mode and group, which mean nothing without it.
pub(super) fn unix_socket(r: &mut Reader<'_>, s: &mut Section<'_>, config: &mut Config) {
    let dir = r.parsed(s, "unix_socket_dir", listen::socket_dir);
    let mode = r.parsed(s, "unix_socket_mode", FileMode::parse);
    let group = r.parsed(s, "unix_socket_group", Group::lookup);
    if dir.is_none() && s.has("unix_socket_dir") {
        // Its own problem is reported.
        return;
    }
    let Some(dir) = dir.flatten() else {
        for key in ["unix_socket_mode", "unix_socket_group"] {
            if s.has(key) {
                r.key_problem(s, key, "has no effect without unix_socket_dir");
            }
        }
        return;
    };
    config.pgweir.unix_socket = Some(UnixSocket {
        dir,
        mode: mode.unwrap_or(FileMode::DEFAULT),
        group,
    });
}

/// `auth_hba_file`, parsed when the configuration is read so a bad file is refused like any
/// other problem.
pub(super) fn hba_file(r: &mut Reader<'_>, s: &mut Section<'_>, config: &mut Config) {
    let file = r.parsed(s, "auth_hba_file", |path| {
        HbaFile::load(Path::new(path)).map_err(|e| e.to_string())
    });
    if file.is_some() {
        config.pgweir.auth_hba_file = file;
    }
}

/// `cert`, as `auth_type` or on a line of the hba file `hba` reads, lets nobody in unless
/// clients are asked for a certificate: a problem with the configuration, not a mystery at
/// login.
fn check_cert_auth(r: &mut Reader<'_>, sec: &Section<'_>, config: &GeneralConfig) {
    if config.tls.asks_for_certificates() {
        return;
    }
    let needs = "needs client TLS (client_tls_sslmode other than \"disable\") with \
                 client_tls_ca_file, or no client is asked for a certificate";
    match config.auth_type {
        AuthType::Cert => r.key_problem(sec, "auth_type", format!("\"cert\" {needs}")),
        AuthType::Hba => {
            let hba = config.auth_hba_file.as_ref();
            if let Some((hba, line)) = hba.and_then(|h| Some((h, h.first_cert_line()?))) {
                let message = format!("{} line {line}: cert {needs}", hba.path.display());
                r.key_problem(sec, "auth_hba_file", message);
            }
        }
        _ => {}
    }
}

/// `admin_users` or `stats_users` (`key`). Each must be in `[users]`, since it could never
/// log in to use its rights otherwise, unless an `auth_file` (read only when the pooler
/// runs) may hold it.
pub(super) fn console_users(
    r: &mut Reader<'_>,
    s: &mut Section<'_>,
    key: &'static str,
    config: &Config,
) -> Option<Vec<String>> {
    let from_file = config.pgweir.auth_sources.auth_file.is_some();
    r.strings(s, key, |name| {
        if from_file || config.users.contains_key(&name) {
            Ok(name)
        } else {
            Err(format!("{name:?} is not a user in [users]"))
        }
    })
}

/// `metrics_addr`: an IP address and a port. Not a host name, which would need a lookup
/// at start, and not port 0, which would serve the metrics where no scraper can know.
pub(super) fn metrics_addr(text: &str) -> Result<SocketAddr, String> {
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        _ => Err(format!(
            "must be an IP address and a port (1 to 65535) like \"127.0.0.1:9930\", not {text:?}"
        )),
    }
}

/// `[pool]`: its keys, then the rule between the two sizes.
fn pool(r: &mut Reader<'_>, mut sec: Section<'_>, config: &mut Config) {
    keys::read(r, &mut sec, keys::Section::Pool, config);
    let config = &config.pool;
    if config.min_pool_size > config.pool_size {
        let limit = format!("default_pool_size ({})", config.pool_size);
        r.key_problem(&sec, "min_pool_size", format!("must not exceed {limit}"));
    }
    r.finish(sec);
}

/// `[databases]`, which must name at least one database. Each entry is checked
/// against the `[pool]` defaults it inherits.
fn databases(
    r: &mut Reader<'_>,
    root: &mut Section<'_>,
    defaults: &PoolSettings,
) -> BTreeMap<String, DatabaseConfig> {
    let Some(mut sec) = r.table(root, "databases") else {
        if !root.has("databases") {
            r.problem(root.key_path("databases"), None, "no databases configured");
        }
        return BTreeMap::new();
    };
    if sec.is_empty() {
        r.problem(sec.path().to_owned(), sec.line(), "no databases configured");
    }
    let databases = named(r, &mut sec, |r, name, db_sec| {
        database(r, name, db_sec, defaults)
    });
    for (name, db) in &databases {
        for i in 0..db.replicas.len() {
            // The admin console names replica rows so; a database of that name would share them.
            let taken = Node::Replica(i).console_name(name);
            if databases.contains_key(&taken) {
                let why = format!("is how the admin console names {name}'s replica {i}");
                r.problem(format!("databases.{taken}"), sec.line(), why);
            }
        }
    }
    databases
}

/// `[databases.NAME]`. Fields that are missing or invalid get placeholders: a problem
/// has been recorded, so this value is never handed out.
fn database(
    r: &mut Reader<'_>,
    name: &str,
    mut sec: Section<'_>,
    defaults: &PoolSettings,
) -> DatabaseConfig {
    if ADMIN_DATABASES.contains(&name) {
        let path = sec.path().to_owned();
        r.problem(path, sec.line(), "is reserved for the admin console");
    }
    r.require(&sec, "host");
    let s = &mut sec;
    let port = r.int(s, "port", PORTS).unwrap_or(DEFAULT_SERVER_PORT);
    let config = DatabaseConfig {
        host: r.string(s, "host").unwrap_or_default(),
        port,
        dbname: r.string(s, "dbname").unwrap_or_else(|| name.to_owned()),
        user: r.string(s, "user"),
        password: r.secret(s, "password"),
        pool_size: r.int(s, "pool_size", AT_LEAST_ONE),
        pool_mode: r.choice(s, "pool_mode", &PoolMode::ALL, PoolMode::as_str),
        min_pool_size: r.int(s, "min_pool_size", NON_NEGATIVE),
        reserve_pool_size: r.int(s, "reserve_pool_size", NON_NEGATIVE),
        max_db_connections: r.int(s, "max_db_connections", NON_NEGATIVE),
        server_lifetime: r.duration(s, "server_lifetime"),
        pin_session_state: r.boolean(s, "pin_session_state"),
        replicas: replicas(r, s, port),
        read_routing: r
            .choice(s, "read_routing", &ReadRouting::ALL, ReadRouting::as_str)
            .unwrap_or_default(),
        target: r
            .choice(s, "target", &Target::ALL, Target::as_str)
            .unwrap_or_default(),
        max_replica_lag: r
            .duration(s, "max_replica_lag")
            .unwrap_or(DEFAULT_MAX_REPLICA_LAG),
        read_your_writes: r.boolean(s, "read_your_writes").unwrap_or(true),
        read_only_functions: r
            .strings(s, "read_only_functions", read_only_function)
            .unwrap_or_else(|| defaults.read_only_functions.clone()),
        auth: auth::database(r, s),
    };
    check_min_pool_size(r, &sec, &config, defaults);
    check_routing(r, &sec, &config);
    r.finish(sec);
    config
}

/// A database's `replicas`; a replica's `port` defaults to the database's own.
fn replicas(r: &mut Reader<'_>, s: &mut Section<'_>, port: u16) -> Vec<ReplicaConfig> {
    let entries = r.table_list(s, "replicas").unwrap_or_default();
    entries
        .into_iter()
        .map(|mut sec| {
            r.require(&sec, "host");
            let s = &mut sec;
            let replica = ReplicaConfig {
                host: r.string(s, "host").unwrap_or_default(),
                port: r.int(s, "port", PORTS).unwrap_or(port),
                weight: r.int(s, "weight", WEIGHTS).unwrap_or(1),
            };
            r.finish(sec);
            replica
        })
        .collect()
}

/// Routing to replicas needs replicas, and `read_routing = "auto"` (a choice per
/// transaction) contradicts a `target` other than the primary (one node kind for all).
fn check_routing(r: &mut Reader<'_>, sec: &Section<'_>, db: &DatabaseConfig) {
    if db.replicas.is_empty() {
        if db.read_routing != ReadRouting::Off {
            let value = db.read_routing.as_str();
            r.key_problem(sec, "read_routing", format!("{value:?} needs `replicas`"));
        }
        if db.target != Target::Primary {
            let value = db.target.as_str();
            r.key_problem(sec, "target", format!("{value:?} needs `replicas`"));
        }
    }
    if db.read_routing == ReadRouting::Auto && db.target != Target::Primary {
        r.key_problem(
            sec,
            "target",
            "choose one: read_routing = \"auto\" routes per transaction, target routes everything",
        );
    }
}

/// One `read_only_functions` name, lowercased as the server folds unquoted names. It
/// must be a bare name, since the classifier matches it in every schema, and must not
/// be one of the functions that always write.
pub(super) fn read_only_function(name: String) -> Result<String, String> {
    let name = name.to_ascii_lowercase();
    if name.is_empty() || name.contains('.') {
        return Err(format!(
            "{name:?} must be a function name without a schema (it matches in every schema)"
        ));
    }
    if never_read_only(name.as_bytes()) {
        return Err(format!(
            "{name} always writes; it cannot be declared read-only"
        ));
    }
    Ok(name)
}

/// A database cannot keep more connections warm than its pool may hold. The problem
/// goes on whichever of the database's own keys causes it: `min_pool_size` if it sets
/// one, else `pool_size` (the `[pool]` pair itself was checked in [`pool`]).
fn check_min_pool_size(
    r: &mut Reader<'_>,
    sec: &Section<'_>,
    db: &DatabaseConfig,
    defaults: &PoolSettings,
) {
    let size = db.pool_size.unwrap_or(defaults.pool_size);
    match (db.min_pool_size, db.pool_size) {
        (Some(min), _) if min > size => {
            let limit = match db.pool_size {
                Some(_) => format!("pool_size ({size})"),
                None => format!("[pool] default_pool_size ({size})"),
            };
            r.key_problem(sec, "min_pool_size", format!("must not exceed {limit}"));
        }
        (None, Some(_)) if defaults.min_pool_size > size => {
            let min = defaults.min_pool_size;
            r.key_problem(
                sec,
                "pool_size",
                format!("must be at least [pool] min_pool_size ({min})"),
            );
        }
        _ => {}
    }
}

/// `[users.NAME]`.
fn user(r: &mut Reader<'_>, mut sec: Section<'_>) -> UserConfig {
    let s = &mut sec;
    let config = UserConfig {
        password: r.secret(s, "password"),
        pool_mode: r.choice(s, "pool_mode", &PoolMode::ALL, PoolMode::as_str),
        pool_size: r.int(s, "pool_size", AT_LEAST_ONE),
        reserve_pool_size: r.int(s, "reserve_pool_size", NON_NEGATIVE),
        max_user_connections: r.int(s, "max_user_connections", NON_NEGATIVE),
        query_timeout: r.duration(s, "query_timeout"),
        idle_transaction_timeout: r.duration(s, "idle_transaction_timeout"),
        client_idle_timeout: r.duration(s, "client_idle_timeout"),
    };
    r.finish(sec);
    config
}

/// A table of named tables, each built by `each`.
fn named<'a, T>(
    r: &mut Reader<'_>,
    sec: &mut Section<'a>,
    each: impl Fn(&mut Reader<'_>, &str, Section<'a>) -> T,
) -> BTreeMap<String, T> {
    r.tables(sec)
        .into_iter()
        .map(|(name, child)| {
            let value = each(r, &name, child);
            (name, value)
        })
        .collect()
}

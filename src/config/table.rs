//! Every `[pgweir]` and `[pool]` key, one line each: the single place a key is declared.
//! Adding a key is a field (with its default) in its struct and a line here; the loader,
//! the reload, SHOW CONFIG, SET and `pgweir convert` then know it, and the README check
//! fails until the reference documents it.
//!
//! A line reads: name, section, [`Reload`], `PgBouncer` (PgBouncer has a `[pgbouncer]`
//! setting of that name) or `Own`, [`Kind`], then the field it fills `=` the [`Reader`]
//! getter that reads it (with `=> wrap` around the value when the field wants it so), or
//! `with` a function of the loader's for a value that depends on other keys. A key that is
//! not one field names its own reader and value functions instead.

use std::path::PathBuf;

use super::keys::{Key, Kind::*, Reload::*, Section::*, ToValue, Value};
use super::listen::FileMode;
use super::load::{
    console_users, hba_file, metrics_addr, read_only_function, unix_socket, AT_LEAST_ONE,
    NON_NEGATIVE, PORTS,
};
use super::reader::{self, Reader};
use super::{
    AuthType, ClientTlsMode, Config, FleetName, Histograms, ListenAddr, LogFormat, PoolMode,
    ServerTlsMode, LOG_LEVELS,
};

/// What `tcp_keepcnt` may be: the socket option is a C int.
const KEEPCNT: std::ops::RangeInclusive<i64> = 0..=i32::MAX as i64;

/// `Some` of the key's own name for PgBouncer's keys.
macro_rules! pgbouncer {
    (PgBouncer, $name:ident) => {
        Some(stringify!($name))
    };
    (Own, $name:ident) => {
        None
    };
}

/// One [`Key`]; see the module's documentation for the forms.
macro_rules! key {
    ($name:ident, $section:ident, $reload:ident, $pgb:ident, $kind:expr,
     $($field:ident).+ = with $get:path) => {
        Key {
            name: stringify!($name),
            section: $section,
            kind: $kind,
            reload: $reload,
            pgbouncer: pgbouncer!($pgb, $name),
            read: |r, s, c| {
                if let Some(v) = $get(r, s, stringify!($name), c) {
                    c.$($field).+ = v;
                }
            },
            value: |c| c.$($field).+.to_value(),
        }
    };
    ($name:ident, $section:ident, $reload:ident, $pgb:ident, $kind:expr,
     $($field:ident).+ = $get:ident($($arg:expr),*) $(=> $wrap:expr)?) => {
        Key {
            name: stringify!($name),
            section: $section,
            kind: $kind,
            reload: $reload,
            pgbouncer: pgbouncer!($pgb, $name),
            read: |r, s, c| {
                if let Some(v) = r.$get(s, stringify!($name) $(, $arg)*) {
                    c.$($field).+ = $($wrap)?(v);
                }
            },
            value: |c| c.$($field).+.to_value(),
        }
    };
    ($name:ident, $section:ident, $reload:ident, $pgb:ident, $kind:expr,
     read $read:expr, value $value:expr) => {
        Key {
            name: stringify!($name),
            section: $section,
            kind: $kind,
            reload: $reload,
            pgbouncer: pgbouncer!($pgb, $name),
            read: $read,
            value: $value,
        }
    };
}

/// A file name, taken as written (relative to the working directory, as PgBouncer's).
fn path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

/// For keys the reader of another key takes along with it.
fn read_with_another(_: &mut Reader<'_>, _: &mut reader::Section<'_>, _: &mut Config) {}

/// The Unix socket's part `get`, unset without a socket.
fn socket(c: &Config, get: fn(&super::UnixSocket) -> Value) -> Value {
    c.pgweir.unix_socket.as_ref().map_or(Value::Unset, get)
}

#[rustfmt::skip]
pub(super) static KEYS: &[Key] = &[
    key!(listen_addr, Pgweir, Restart, PgBouncer, Str, pgweir.listen_addr = parsed(ListenAddr::parse)),
    key!(listen_port, Pgweir, Restart, PgBouncer, Int, pgweir.listen_port = int(PORTS)),
    key!(so_reuseport, Pgweir, Restart, PgBouncer, Bool, pgweir.so_reuseport = boolean()),
    key!(unix_socket_dir, Pgweir, Restart, PgBouncer, Path,
        read unix_socket, value |c| socket(c, |u| u.dir.to_value())),
    key!(unix_socket_mode, Pgweir, Restart, PgBouncer, Str, read read_with_another,
        value |c| c.pgweir.unix_socket.as_ref().map_or(FileMode::DEFAULT, |u| u.mode).to_value()),
    key!(unix_socket_group, Pgweir, Restart, PgBouncer, Str, read read_with_another,
        value |c| socket(c, |u| u.group.as_ref().map(|g| g.name.clone()).to_value())),
    key!(auth_type, Pgweir, Live, PgBouncer, Choice(&AuthType::NAMES),
        pgweir.auth_type = choice(&AuthType::ALL, AuthType::as_str)),
    key!(auth_hba_file, Pgweir, Live, PgBouncer, Path, read hba_file,
        value |c| c.pgweir.auth_hba_file.as_ref().map(|f| f.path.clone()).to_value()),
    key!(max_client_conn, Pgweir, Restart, PgBouncer, Int, pgweir.max_client_conn = int(AT_LEAST_ONE)),
    key!(max_db_client_connections, Pgweir, Live, PgBouncer, Int,
        pgweir.max_db_client_connections = int(NON_NEGATIVE)),
    key!(max_user_client_connections, Pgweir, Live, PgBouncer, Int,
        pgweir.max_user_client_connections = int(NON_NEGATIVE)),
    key!(workers, Pgweir, Restart, Own, Int, pgweir.workers = int(NON_NEGATIVE)),
    key!(log_level, Pgweir, Restart, Own, Choice(&LOG_LEVELS),
        pgweir.log_level = choice(&LOG_LEVELS, |level| level) => String::from),
    key!(server_connect_timeout, Pgweir, Restart, PgBouncer, Duration, pgweir.server_connect_timeout = duration()),
    key!(server_login_retry, Pgweir, Restart, PgBouncer, Duration, pgweir.server_login_retry = duration()),
    key!(client_login_timeout, Pgweir, Live, PgBouncer, Duration, pgweir.client_login_timeout = duration()),
    key!(replica_ban_time, Pgweir, Restart, Own, Duration, pgweir.replica_ban_time = duration()),
    key!(replica_check_interval, Pgweir, Restart, Own, Duration, pgweir.replica_check_interval = duration()),
    key!(metrics_addr, Pgweir, Restart, Own, Str, pgweir.metrics_addr = parsed(metrics_addr) => Some),
    key!(metrics_histograms, Pgweir, Restart, Own, Choice(&Histograms::NAMES),
        pgweir.metrics_histograms = choice(&Histograms::ALL, Histograms::as_str)),
    key!(admin_users, Pgweir, Live, PgBouncer, List, pgweir.admin_users = with console_users),
    key!(stats_users, Pgweir, Live, PgBouncer, List, pgweir.stats_users = with console_users),
    key!(shutdown_timeout, Pgweir, Live, Own, Duration, pgweir.shutdown_timeout = duration()),
    key!(ignore_startup_parameters, Pgweir, Live, PgBouncer, List,
        pgweir.ignore_startup_parameters = strings(|name| Ok(name.to_ascii_lowercase()))),
    key!(log_connections, Pgweir, Live, PgBouncer, Bool, pgweir.log_connections = boolean()),
    key!(log_disconnections, Pgweir, Live, PgBouncer, Bool, pgweir.log_disconnections = boolean()),
    key!(stats_period, Pgweir, Restart, PgBouncer, Duration, pgweir.stats_period = duration()),
    key!(log_format, Pgweir, Restart, Own, Choice(&LogFormat::NAMES),
        pgweir.log_format = choice(&LogFormat::ALL, LogFormat::as_str)),
    key!(fleet, Pgweir, Restart, Own, Str, pgweir.fleet = parsed(FleetName::parse) => Some),
    key!(auth_file, Pgweir, Live, PgBouncer, Path, pgweir.auth_sources.auth_file = parsed(path) => Some),
    key!(auth_user, Pgweir, Live, PgBouncer, Str, pgweir.auth_sources.auth_user = string() => Some),
    key!(auth_query, Pgweir, Live, PgBouncer, Str, pgweir.auth_sources.auth_query = string()),
    key!(auth_dbname, Pgweir, Live, PgBouncer, Str, pgweir.auth_sources.auth_dbname = string() => Some),
    key!(auth_query_cache_ttl, Pgweir, Live, Own, Duration,
        pgweir.auth_sources.auth_query_cache_ttl = duration()),
    key!(client_tls_sslmode, Pgweir, Live, PgBouncer, Choice(&ClientTlsMode::NAMES),
        pgweir.tls.client_sslmode = choice(&ClientTlsMode::ALL, ClientTlsMode::as_str)),
    key!(client_tls_cert_file, Pgweir, Live, PgBouncer, Path, pgweir.tls.client_cert_file = parsed(path) => Some),
    key!(client_tls_key_file, Pgweir, Live, PgBouncer, Path, pgweir.tls.client_key_file = parsed(path) => Some),
    key!(client_tls_ca_file, Pgweir, Live, PgBouncer, Path, pgweir.tls.client_ca_file = parsed(path) => Some),
    key!(server_tls_sslmode, Pgweir, Live, PgBouncer, Choice(&ServerTlsMode::NAMES),
        pgweir.tls.server_sslmode = choice(&ServerTlsMode::ALL, ServerTlsMode::as_str)),
    key!(server_tls_ca_file, Pgweir, Live, PgBouncer, Path, pgweir.tls.server_ca_file = parsed(path) => Some),
    key!(server_tls_cert_file, Pgweir, Live, PgBouncer, Path, pgweir.tls.server_cert_file = parsed(path) => Some),
    key!(server_tls_key_file, Pgweir, Live, PgBouncer, Path, pgweir.tls.server_key_file = parsed(path) => Some),
    key!(tcp_keepalive, Pgweir, Restart, PgBouncer, Bool, pgweir.tcp.keepalive = boolean()),
    key!(tcp_keepidle, Pgweir, Restart, PgBouncer, Duration, pgweir.tcp.keepidle = duration()),
    key!(tcp_keepintvl, Pgweir, Restart, PgBouncer, Duration, pgweir.tcp.keepintvl = duration()),
    key!(tcp_keepcnt, Pgweir, Restart, PgBouncer, Int, pgweir.tcp.keepcnt = int(KEEPCNT)),
    key!(tcp_user_timeout, Pgweir, Restart, PgBouncer, Millis, pgweir.tcp.user_timeout = duration()),
    key!(pool_mode, Pool, Restart, PgBouncer, Choice(&PoolMode::NAMES),
        pool.pool_mode = choice(&PoolMode::ALL, PoolMode::as_str)),
    key!(default_pool_size, Pool, Live, PgBouncer, Int, pool.pool_size = int(AT_LEAST_ONE)),
    key!(min_pool_size, Pool, Live, PgBouncer, Int, pool.min_pool_size = int(NON_NEGATIVE)),
    key!(reserve_pool_size, Pool, Live, PgBouncer, Int, pool.reserve_pool_size = int(NON_NEGATIVE)),
    key!(reserve_pool_timeout, Pool, Live, PgBouncer, Duration, pool.reserve_pool_timeout = duration()),
    key!(max_db_connections, Pool, Restart, PgBouncer, Int, pool.max_db_connections = int(NON_NEGATIVE)),
    key!(max_user_connections, Pool, Restart, PgBouncer, Int, pool.max_user_connections = int(NON_NEGATIVE)),
    key!(server_idle_timeout, Pool, Live, PgBouncer, Duration, pool.server_idle_timeout = duration()),
    key!(server_lifetime, Pool, Live, PgBouncer, Duration, pool.server_lifetime = duration()),
    key!(query_wait_timeout, Pool, Live, PgBouncer, Duration, pool.query_wait_timeout = duration()),
    key!(query_timeout, Pool, Live, PgBouncer, Duration, pool.query_timeout = duration()),
    key!(idle_transaction_timeout, Pool, Live, PgBouncer, Duration, pool.idle_transaction_timeout = duration()),
    key!(client_idle_timeout, Pool, Live, PgBouncer, Duration, pool.client_idle_timeout = duration()),
    key!(server_check_delay, Pool, Live, PgBouncer, Duration, pool.server_check_delay = duration()),
    key!(server_check_query, Pool, Live, PgBouncer, Str, pool.server_check_query = string()),
    key!(max_prepared_statements, Pool, Restart, PgBouncer, Int,
        pool.max_prepared_statements = int(NON_NEGATIVE)),
    key!(pin_session_state, Pool, Live, Own, Bool, pool.pin_session_state = boolean()),
    key!(read_only_functions, Pool, Live, Own, List,
        pool.read_only_functions = strings(read_only_function)),
];

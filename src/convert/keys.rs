//! What becomes of each PgBouncer setting: the pgweir key it maps to and how its value is
//! written, or why it has no counterpart. One table per kind of entry, so a reader can see
//! at a glance what carries over.

/// The pgweir section a `[pgbouncer]` setting lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Pgweir,
    Pool,
}

/// How a PgBouncer value is written in pgweir's TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Int,
    /// `0/1/yes/no/on/off/true/false`.
    Bool,
    /// Bare (possibly fractional) seconds, or a number with a unit.
    Duration,
    /// Bare milliseconds (`tcp_user_timeout`).
    Millis,
    Str,
    /// A file name: a relative one is taken from the pgbouncer.ini's directory.
    Path,
    /// A comma-separated list.
    List,
    /// One of the values pgweir knows for the key (checked by `pgweir check`).
    Choice(&'static [&'static str]),
}

/// Why a setting is not carried over; printed next to it in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// pgweir has no such feature (yet).
    NotSupported(&'static str),
    /// pgweir gets the same result without the setting.
    NotNeeded(&'static str),
}

impl Why {
    pub fn text(self) -> String {
        match self {
            Why::NotSupported(why) => format!("not supported: {why}"),
            Why::NotNeeded(why) => format!("not needed in pgweir: {why}"),
        }
    }
}

/// What a setting becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Key(&'static str, Form),
    Skip(Why),
}

use Form::*;
use Section::{Pgweir, Pool};
use Target::{Key, Skip};
use Why::{NotNeeded, NotSupported};

const SSLMODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
const POOL_MODES: &[&str] = &["session", "transaction", "statement"];
const AUTH_TYPES: &[&str] = &["scram-sha-256", "md5", "plain", "trust", "cert", "hba"];

const LOGGING: Why =
    NotNeeded("pgweir logs to stderr, for the service manager or container runtime to keep");
const TCP: Why = NotSupported("pgweir uses the operating system's TCP defaults");
const TLS_SUITES: Why =
    NotNeeded("pgweir offers TLS 1.2 and 1.3 with rustls' safe cipher suites and curves only");
const BUFFERS: Why = NotNeeded("pgweir sizes its buffers itself and streams large messages");
const DNS: Why = NotNeeded("pgweir resolves a server's host name when it connects");

/// The `[pgbouncer]` settings PgBouncer 1.25 has, by name.
pub fn general(key: &str) -> Option<(Section, Target)> {
    let pg = |key, form| (Pgweir, Key(key, form));
    let pool = |key, form| (Pool, Key(key, form));
    let skip = |why| (Pgweir, Skip(why));
    Some(match key {
        "listen_addr" => pg("listen_addr", Str),
        "listen_port" => pg("listen_port", Int),
        "auth_type" => pg("auth_type", Choice(AUTH_TYPES)),
        "auth_hba_file" => pg("auth_hba_file", Path),
        "auth_file" => pg("auth_file", Path),
        "auth_user" => pg("auth_user", Str),
        "auth_query" => pg("auth_query", Str),
        "auth_dbname" => pg("auth_dbname", Str),
        "max_client_conn" => pg("max_client_conn", Int),
        "max_db_client_connections" => pg("max_db_client_connections", Int),
        "max_user_client_connections" => pg("max_user_client_connections", Int),
        "server_connect_timeout" => pg("server_connect_timeout", Duration),
        "server_login_retry" => pg("server_login_retry", Duration),
        "client_login_timeout" => pg("client_login_timeout", Duration),
        "admin_users" => pg("admin_users", List),
        "stats_users" => pg("stats_users", List),
        "log_connections" => pg("log_connections", Bool),
        "log_disconnections" => pg("log_disconnections", Bool),
        "stats_period" => pg("stats_period", Duration),
        "client_tls_sslmode" => pg("client_tls_sslmode", Choice(SSLMODES)),
        "client_tls_cert_file" => pg("client_tls_cert_file", Path),
        "client_tls_key_file" => pg("client_tls_key_file", Path),
        "client_tls_ca_file" => pg("client_tls_ca_file", Path),
        "server_tls_sslmode" => pg("server_tls_sslmode", Choice(SSLMODES)),
        "server_tls_ca_file" => pg("server_tls_ca_file", Path),
        "server_tls_cert_file" => pg("server_tls_cert_file", Path),
        "server_tls_key_file" => pg("server_tls_key_file", Path),
        "pool_mode" => pool("pool_mode", Choice(POOL_MODES)),
        "default_pool_size" => pool("default_pool_size", Int),
        "min_pool_size" => pool("min_pool_size", Int),
        "reserve_pool_size" => pool("reserve_pool_size", Int),
        "reserve_pool_timeout" => pool("reserve_pool_timeout", Duration),
        "max_db_connections" => pool("max_db_connections", Int),
        "max_user_connections" => pool("max_user_connections", Int),
        "server_idle_timeout" => pool("server_idle_timeout", Duration),
        "server_lifetime" => pool("server_lifetime", Duration),
        "query_wait_timeout" => pool("query_wait_timeout", Duration),
        "query_timeout" => pool("query_timeout", Duration),
        "idle_transaction_timeout" => pool("idle_transaction_timeout", Duration),
        "client_idle_timeout" => pool("client_idle_timeout", Duration),
        "server_check_delay" => pool("server_check_delay", Duration),
        "server_check_query" => pool("server_check_query", Str),
        "max_prepared_statements" => pool("max_prepared_statements", Int),
        "logfile" | "syslog" | "syslog_ident" | "syslog_facility" => skip(LOGGING),
        "pidfile" => skip(NotNeeded(
            "pgweir runs in the foreground under its service manager",
        )),
        "user" => skip(NotNeeded("start pgweir as the user it should run as")),
        "verbose" | "log_pooler_errors" | "log_stats" => skip(NotNeeded(
            "pgweir's log_level sets how much it logs; errors sent to clients are always logged",
        )),
        "unix_socket_dir" => pg("unix_socket_dir", Path),
        "unix_socket_mode" => pg("unix_socket_mode", Str),
        "unix_socket_group" => pg("unix_socket_group", Str),
        "server_reset_query" | "server_reset_query_always" => skip(NotNeeded(
            "pgweir tracks each client's session state and resets only what a client changed",
        )),
        "ignore_startup_parameters" => pg("ignore_startup_parameters", List),
        "track_extra_parameters" => skip(NotNeeded(
            "pgweir keeps every startup parameter a client sends and applies it to each server",
        )),
        "application_name_add_host" => skip(NotSupported("application_name is passed as sent")),
        "server_round_robin" => skip(NotSupported("servers are reused most recently used first")),
        "server_fast_close" => skip(NotSupported(
            "RECONNECT closes a server when it is released",
        )),
        "cancel_wait_timeout" => skip(NotNeeded("pgweir waits 10 s for a cancel in flight")),
        "transaction_timeout" => skip(NotSupported("use Postgres' own transaction_timeout")),
        "autodb_idle_timeout" => skip(NotSupported("the `*` database is not supported")),
        "suspend_timeout" => skip(NotNeeded("pgweir --takeover needs no SUSPEND")),
        "query_wait_notify" => skip(NotSupported("queued clients get no notice")),
        "dns_max_ttl" | "dns_nxdomain_ttl" | "dns_zone_check_period" | "resolv_conf" => skip(DNS),
        "pkt_buf" | "max_packet_size" | "sbuf_loopcnt" | "listen_backlog" => skip(BUFFERS),
        "so_reuseport" => pg("so_reuseport", Bool),
        "peer_id" => skip(NotNeeded(
            "processes sharing a port find each other and forward cancels without it",
        )),
        "tcp_defer_accept" | "tcp_socket_buffer" => skip(TCP),
        "tcp_keepalive" => pg("tcp_keepalive", Bool),
        "tcp_keepcnt" => pg("tcp_keepcnt", Int),
        "tcp_keepidle" => pg("tcp_keepidle", Duration),
        "tcp_keepintvl" => pg("tcp_keepintvl", Duration),
        "tcp_user_timeout" => pg("tcp_user_timeout", Millis),
        "client_tls_protocols"
        | "client_tls_ciphers"
        | "client_tls13_ciphers"
        | "client_tls_ecdhcurve"
        | "client_tls_dheparams"
        | "server_tls_protocols"
        | "server_tls_ciphers"
        | "server_tls13_ciphers" => skip(TLS_SUITES),
        "auth_ident_file" | "auth_ldap_options" | "auth_pam_service" => skip(NotSupported(
            "pgweir has no ident, LDAP or PAM authentication",
        )),
        "scram_iterations" => skip(NotNeeded(
            "pgweir uses Postgres' default of 4096 for verifiers it derives",
        )),
        "disable_pqexec" => skip(NotSupported("the simple query protocol is always allowed")),
        "conffile" | "service_name" | "job_name" => skip(NotNeeded("a PgBouncer-internal name")),
        _ => return None,
    })
}

/// What one key of a `[databases]` connection string becomes in `[databases.NAME]`.
pub fn database(key: &str) -> Option<Target> {
    let to = |key, form| Key(key, form);
    Some(match key {
        "host" => to("host", Str),
        "port" => to("port", Int),
        "dbname" => to("dbname", Str),
        "user" => to("user", Str),
        "password" => to("password", Str),
        "pool_size" => to("pool_size", Int),
        "min_pool_size" => to("min_pool_size", Int),
        "reserve_pool" | "reserve_pool_size" => to("reserve_pool_size", Int),
        "max_db_connections" => to("max_db_connections", Int),
        "pool_mode" => to("pool_mode", Choice(POOL_MODES)),
        "server_lifetime" => to("server_lifetime", Duration),
        "auth_user" => to("auth_user", Str),
        "auth_query" => to("auth_query", Str),
        "auth_dbname" => to("auth_dbname", Str),
        "connect_query" => Skip(NotSupported("no query is run on new server connections")),
        "client_encoding" | "datestyle" | "timezone" | "application_name" => Skip(NotNeeded(
            "each client's own startup parameters are applied to the server it uses",
        )),
        "max_db_client_connections" => Skip(NotSupported(
            "set [pgweir] max_db_client_connections for every database",
        )),
        "load_balance_hosts" => Skip(NotSupported("one host per database; see replicas")),
        _ => return None,
    })
}

/// What one key of a `[users]` entry becomes in `[users.NAME]`.
pub fn user(key: &str) -> Option<Target> {
    let to = |key, form| Key(key, form);
    Some(match key {
        "pool_mode" => to("pool_mode", Choice(POOL_MODES)),
        "pool_size" => to("pool_size", Int),
        "reserve_pool_size" => to("reserve_pool_size", Int),
        "max_user_connections" => to("max_user_connections", Int),
        "query_timeout" => to("query_timeout", Duration),
        "idle_transaction_timeout" => to("idle_transaction_timeout", Duration),
        "client_idle_timeout" => to("client_idle_timeout", Duration),
        "max_user_client_connections" => Skip(NotSupported(
            "set [pgweir] max_user_client_connections for every user",
        )),
        _ => return None,
    })
}

//! What becomes of each PgBouncer setting: the pgweir key it maps to and how its value is
//! written, or why it has no counterpart. The `[pgbouncer]` settings pgweir has are those
//! the configuration's key table ([`crate::config::Key`]) names, with the kind of value it
//! gives them; this file lists the rest, and the keys of `[databases]` and `[users]`
//! entries, so a reader can see at a glance what carries over.

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
    Key(&'static str, Kind),
    Skip(Why),
}

use crate::config::Kind::{self, *};
use crate::config::{Key as ConfigKey, PoolMode, Section};
use Target::{Key, Skip};
use Why::{NotNeeded, NotSupported};

const POOL_MODES: &[&str] = &PoolMode::NAMES;

const LOGGING: Why =
    NotNeeded("pgweir logs to stderr, for the service manager or container runtime to keep");
const TCP: Why = NotSupported("pgweir uses the operating system's TCP defaults");
const TLS_SUITES: Why =
    NotNeeded("pgweir offers TLS 1.2 and 1.3 with rustls' safe cipher suites and curves only");
const BUFFERS: Why = NotNeeded("pgweir sizes its buffers itself and streams large messages");
const DNS: Why = NotNeeded("pgweir resolves a server's host name when it connects");

/// The `[pgbouncer]` settings PgBouncer 1.25 has, by name: those pgweir has a key for
/// (marked so in the configuration's key table), and why each of the others is left behind.
pub fn general(key: &str) -> Option<(Section, Target)> {
    if let Some(k) = ConfigKey::for_pgbouncer(key) {
        return Some((k.section, Key(k.name, k.kind)));
    }
    let skip = |why| (Section::Pgweir, Skip(why));
    Some(match key {
        "logfile" | "syslog" | "syslog_ident" | "syslog_facility" => skip(LOGGING),
        "pidfile" => skip(NotNeeded(
            "pgweir runs in the foreground under its service manager",
        )),
        "user" => skip(NotNeeded("start pgweir as the user it should run as")),
        "verbose" | "log_pooler_errors" | "log_stats" => skip(NotNeeded(
            "pgweir's log_level sets how much it logs; errors sent to clients are always logged",
        )),
        "server_reset_query" | "server_reset_query_always" => skip(NotNeeded(
            "pgweir tracks each client's session state and resets only what a client changed",
        )),
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
        "peer_id" => skip(NotNeeded(
            "processes sharing a port find each other and forward cancels without it",
        )),
        "tcp_defer_accept" | "tcp_socket_buffer" => skip(TCP),
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

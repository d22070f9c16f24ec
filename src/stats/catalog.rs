//! Every metric family pgweir exports, with the HELP text `/metrics` carries for it
//! ([`describe`], at start), and the counters that start at 0 rather than at their first
//! event, so `increase()` and alerts see that first event too: each timeout kind at start
//! ([`describe`]), the login and error counters of a pool when its group is made
//! ([`zero_pool`]), and the authentication failures of each configured database's unknown
//! users at start and at each reload ([`zero_databases`]).

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// Name, kind and HELP text of each family, in the README's order.
const FAMILIES: [(&str, Kind, &str); 30] = [
    (
        "pgweir_up",
        Gauge,
        "1 while accepting clients, 0 while shutting down or while every database is paused",
    ),
    (
        "pgweir_clients",
        Gauge,
        "Logged-in clients by state: idle, waiting, active, pinned",
    ),
    (
        "pgweir_servers",
        Gauge,
        "Server connections by state: active, idle, used, login",
    ),
    ("pgweir_pool_size", Gauge, "The configured pool size"),
    (
        "pgweir_reserve_in_use",
        Gauge,
        "Servers open beyond the pool size",
    ),
    (
        "pgweir_max_wait_seconds",
        Gauge,
        "How long the longest-waiting client has waited for a server",
    ),
    ("pgweir_transactions_total", Counter, "Transactions relayed"),
    (
        "pgweir_queries_total",
        Counter,
        "Requests relayed (each Query, Sync or function call)",
    ),
    (
        "pgweir_received_bytes_total",
        Counter,
        "Bytes of client messages relayed to servers",
    ),
    ("pgweir_sent_bytes_total", Counter, "Bytes sent to clients"),
    (
        "pgweir_server_connects_total",
        Counter,
        "Server connections opened",
    ),
    (
        "pgweir_server_connect_failures_total",
        Counter,
        "Server connections that failed to open or log in",
    ),
    (
        "pgweir_server_refused_total",
        Counter,
        "Server logins Postgres refused, by reason (connection_limit: 53300)",
    ),
    (
        "pgweir_client_logins_total",
        Counter,
        "Clients that logged in",
    ),
    (
        "pgweir_client_auth_failures_total",
        Counter,
        "Clients refused at authentication",
    ),
    (
        "pgweir_errors_total",
        Counter,
        "Errors sent to clients, by SQLSTATE class",
    ),
    (
        "pgweir_timeouts_total",
        Counter,
        "Clients ended by a timeout, by the setting that ran out",
    ),
    (
        "pgweir_prepared_cache_hits_total",
        Counter,
        "Named statements a client used that its server had prepared",
    ),
    (
        "pgweir_prepared_cache_misses_total",
        Counter,
        "Named statements pgweir prepared on a server first",
    ),
    (
        "pgweir_wait_seconds",
        Histogram,
        "How long clients waited for a server",
    ),
    (
        "pgweir_transaction_seconds",
        Histogram,
        "Transaction time, first request to idle",
    ),
    (
        "pgweir_query_seconds",
        Histogram,
        "Request time, sent to ReadyForQuery",
    ),
    (
        "pgweir_replica_info",
        Gauge,
        "1 for each replica, with its address",
    ),
    (
        "pgweir_replica_lag_seconds",
        Gauge,
        "Each replica's lag as the monitor measures it",
    ),
    (
        "pgweir_replica_banned",
        Gauge,
        "1 while a replica is banned",
    ),
    ("pgweir_replica_bans_total", Counter, "Bans of each replica"),
    (
        "pgweir_fleet_members",
        Gauge,
        "Processes of the fleet sharing a connection limit, this one included",
    ),
    (
        "pgweir_fleet_share",
        Gauge,
        "This process's fair share of a fleet's connection limit",
    ),
    (
        "pgweir_fleet_slots_held",
        Gauge,
        "Slots of a fleet's connection limit this process holds",
    ),
    (
        "pgweir_fleet_waiting",
        Gauge,
        "1 while this process waits for more slots of a fleet's connection limit",
    ),
];

/// The `kind` values of `pgweir_timeouts_total`.
const TIMEOUT_KINDS: [&str; 5] = [
    "client_login",
    "client_idle",
    "idle_transaction",
    "query",
    "query_wait",
];

/// The SQLSTATE classes of the errors pgweir itself ends sessions with (connection
/// exception, invalid transaction state, insufficient resources, operator intervention),
/// whose counters start at 0 for each pool; others appear with their first error.
const OWN_ERROR_CLASSES: [&str; 4] = ["08", "25", "53", "57"];

/// Describes every family to the recorder and starts the timeout counters; call once,
/// after the recorder is installed.
pub fn describe() {
    for (name, kind, help) in FAMILIES {
        match kind {
            Counter => metrics::describe_counter!(name, help),
            Gauge => metrics::describe_gauge!(name, help),
            Histogram => metrics::describe_histogram!(name, help),
        }
    }
    for kind in TIMEOUT_KINDS {
        metrics::counter!("pgweir_timeouts_total", "kind" => kind).increment(0);
    }
}

/// Starts a pool's login, authentication-failure and own-error counters at 0. Adding 0
/// leaves one that already counts as it is.
pub fn zero_pool(database: &str, user: &str) {
    let pair = [("database", database.to_owned()), ("user", user.to_owned())];
    metrics::counter!("pgweir_client_logins_total", &pair).increment(0);
    metrics::counter!("pgweir_client_auth_failures_total", &pair).increment(0);
    for class in OWN_ERROR_CLASSES {
        let labels = [
            pair[0].clone(),
            pair[1].clone(),
            ("class", class.to_owned()),
        ];
        metrics::counter!("pgweir_errors_total", &labels).increment(0);
    }
}

/// Starts the authentication failures of users pgweir does not know (`user="unknown"`)
/// at 0 for each configured database and for unknown databases.
pub fn zero_databases(config: &Config) {
    let databases = config.databases.keys().map(String::as_str);
    for database in databases.chain(["unknown"]) {
        let pair = [
            ("database", database.to_owned()),
            ("user", "unknown".to_owned()),
        ];
        metrics::counter!("pgweir_client_auth_failures_total", &pair).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_named_once_and_helped() {
        let mut names: Vec<_> = FAMILIES.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        for (name, kind, help) in FAMILIES {
            assert!(!help.is_empty() && !help.contains('\n'), "{name}");
            assert_eq!(kind == Counter, name.ends_with("_total"), "{name}");
        }
    }
}

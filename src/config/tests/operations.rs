//! The `[pgweir]` keys for operating the pooler: `metrics_addr`, `admin_users`,
//! `stats_users`, `shutdown_timeout`, `log_connections`, `log_disconnections`,
//! `stats_period` and `log_format`, the names reserved for the admin console, and
//! their problems.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::{LogFormat, ADMIN_DATABASES};
use super::{parse, problems, rejects, MINIMAL};

/// A file with users `admin` and `monitor`, and `general` as the `[pgweir]` table's body.
fn with_users(general: &str) -> String {
    format!("[pgweir]\n{general}\n{MINIMAL}[users.admin]\n[users.monitor]\n")
}

fn addr(text: &str) -> SocketAddr {
    match text.parse() {
        Ok(addr) => addr,
        Err(e) => panic!("{text:?} should be a socket address: {e}"),
    }
}

#[test]
fn operating_keys_default_to_pgbouncers_behaviour_and_no_listener() {
    let g = parse(MINIMAL).pgweir;
    assert_eq!(g.metrics_addr, None);
    assert!(g.admin_users.is_empty());
    assert!(g.stats_users.is_empty());
    assert_eq!(g.shutdown_timeout, Duration::from_secs(30));
    assert!(g.log_connections);
    assert!(g.log_disconnections);
    assert_eq!(g.stats_period, Duration::from_secs(60));
    assert_eq!(g.log_format, LogFormat::Text);
}

#[test]
fn reads_every_operating_key() {
    let g = parse(&with_users(
        r#"
metrics_addr = "127.0.0.1:9930"
admin_users = ["admin"]
stats_users = ["monitor", "admin"]
shutdown_timeout = "2m"
log_connections = false
log_disconnections = false
stats_period = 15
log_format = "JSON"
"#,
    ))
    .pgweir;
    assert_eq!(g.metrics_addr, Some(addr("127.0.0.1:9930")));
    assert_eq!(g.admin_users, ["admin"]);
    assert_eq!(g.stats_users, ["monitor", "admin"]);
    assert_eq!(g.shutdown_timeout, Duration::from_secs(120));
    assert!(!g.log_connections);
    assert!(!g.log_disconnections);
    assert_eq!(g.stats_period, Duration::from_secs(15));
    assert_eq!(g.log_format, LogFormat::Json);
}

#[test]
fn zero_durations_mean_no_limit_and_no_stats_line() {
    let g = parse(&with_users("shutdown_timeout = 0\nstats_period = \"0s\"")).pgweir;
    assert_eq!(g.shutdown_timeout, Duration::ZERO);
    assert_eq!(g.stats_period, Duration::ZERO);
}

#[test]
fn metrics_addr_takes_ipv4_ipv6_and_env() {
    let metrics = |value: &str| parse(&with_users(&format!("metrics_addr = {value}"))).pgweir;
    assert_eq!(
        metrics("\"[::1]:9930\"").metrics_addr,
        Some(addr("[::1]:9930"))
    );
    assert_eq!(
        metrics("\"0.0.0.0:9930\"").metrics_addr,
        Some(addr("0.0.0.0:9930"))
    );
    assert_eq!(
        metrics("\"${DB_HOST}:${SECS}\"").metrics_addr,
        Some(addr("10.0.0.7:30"))
    );
}

#[test]
fn metrics_addr_must_be_an_ip_and_a_port() {
    for bad in [
        "localhost:9930",
        "127.0.0.1",
        "9930",
        "127.0.0.1:0",
        "::1:9930",
        "",
    ] {
        rejects(
            &with_users(&format!("metrics_addr = {bad:?}")),
            &format!(
                "line 2: pgweir.metrics_addr: must be an IP address and a port (1 to 65535) \
                 like \"127.0.0.1:9930\", not {bad:?}"
            ),
        );
    }
    rejects(
        &with_users("metrics_addr = 9930"),
        "line 2: pgweir.metrics_addr: expected a string, found an integer",
    );
}

#[test]
fn admin_and_stats_users_must_be_configured_users() {
    assert_eq!(
        problems(&with_users(
            "admin_users = [\"admin\", \"root\"]\nstats_users = [\"monitr\"]"
        )),
        [
            "line 2: pgweir.admin_users[1]: \"root\" is not a user in [users]",
            "line 3: pgweir.stats_users[0]: \"monitr\" is not a user in [users]",
        ]
    );
    rejects(
        &format!("[pgweir]\nadmin_users = [\"admin\"]\n{MINIMAL}"),
        "line 2: pgweir.admin_users[0]: \"admin\" is not a user in [users]",
    );
    rejects(
        &with_users("stats_users = \"monitor\""),
        "line 2: pgweir.stats_users: expected an array of strings, found a string",
    );
    rejects(
        &with_users("admin_users = [1]"),
        "line 2: pgweir.admin_users[0]: expected a string, found an integer",
    );
}

#[test]
fn admin_users_may_come_from_the_environment() {
    let text = "[pgweir]\nadmin_users = [\"${DB_HOST}\"]\n[users.\"10.0.0.7\"]\n";
    let g = parse(&format!("{text}{MINIMAL}")).pgweir;
    assert_eq!(g.admin_users, ["10.0.0.7"]);
}

#[test]
fn wrong_operating_values_are_rejected() {
    let cases = [
        (
            "log_format = \"xml\"",
            "pgweir.log_format: must be one of text, json, not \"xml\"",
        ),
        (
            "log_connections = \"yes\"",
            "pgweir.log_connections: expected a boolean, found a string",
        ),
        (
            "log_disconnections = 1",
            "pgweir.log_disconnections: expected a boolean, found an integer",
        ),
        (
            "shutdown_timeout = -1",
            "pgweir.shutdown_timeout: must not be negative",
        ),
        (
            "fleet = \"orders poolers\"",
            "pgweir.fleet: ' ' is not allowed: use letters, digits, '.', '_' and '-'",
        ),
        (
            "stats_period = \"60\"",
            "pgweir.stats_period: needs a unit (ms, s, m or h), like \"60s\"; \
             a bare integer without quotes means seconds",
        ),
    ];
    for (line, expected) in cases {
        rejects(&with_users(line), &format!("line 2: {expected}"));
    }
}

#[test]
fn admin_console_names_are_not_databases() {
    for name in ADMIN_DATABASES {
        rejects(
            &format!("{MINIMAL}[databases.{name}]\nhost = \"h\"\n"),
            &format!("line 3: databases.{name}: is reserved for the admin console"),
        );
    }
    rejects(
        "databases = { pgbouncer = { host = \"h\" } }\n",
        "line 1: databases.pgbouncer: is reserved for the admin console",
    );
    let config = parse(&format!("{MINIMAL}[databases.PgWeir]\nhost = \"h\"\n"));
    assert!(
        config.databases.contains_key("PgWeir"),
        "names are case-sensitive, as the server's are"
    );
}

#[test]
fn log_format_names_round_trip() {
    let names: Vec<&str> = LogFormat::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(names, ["text", "json"]);
}

/// The example file shows the operating keys' defaults, except the two the quickstart
/// turns on (`metrics_addr` and an admin user), and its commented-out `fleet` is valid
/// once uncommented.
#[test]
fn example_file_documents_operating_keys() {
    let example = include_str!("../../../config/pgweir.toml");
    let g = parse(example).pgweir;
    let d = parse(MINIMAL).pgweir;
    assert_eq!(g.metrics_addr, Some(addr("127.0.0.1:9930")));
    assert_eq!(g.admin_users, ["admin"]);
    assert_eq!(g.stats_users, d.stats_users);
    assert_eq!(
        (g.shutdown_timeout, g.stats_period),
        (d.shutdown_timeout, d.stats_period)
    );
    assert_eq!(
        (g.log_connections, g.log_disconnections, g.log_format),
        (d.log_connections, d.log_disconnections, d.log_format)
    );
    assert_eq!(g.fleet, None);
    let uncommented = example.replace("# fleet = ", "fleet = ");
    let g = parse(&uncommented).pgweir;
    assert_eq!(
        g.fleet.map(|f| f.to_string()).as_deref(),
        Some("orders-poolers")
    );
}

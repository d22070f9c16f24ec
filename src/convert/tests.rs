//! Unit tests of `pgweir convert`: each converted text must be a configuration pgweir
//! accepts, with the values PgBouncer had, and every setting left behind accounted for.

use super::*;
use crate::config::{Config, PoolMode};

/// Converts `ini` (written to a temporary pgbouncer.ini) and parses the result.
fn convert_text(ini: &str) -> (Conversion, Result<Config, crate::config::ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgbouncer.ini");
    std::fs::write(&path, ini).unwrap();
    let c = convert(&path).unwrap();
    let parsed = Config::parse(&c.toml, &|_| None);
    (c, parsed)
}

const WEB_APP: &str = "\
[databases]
app = host=127.0.0.1 port=5432 dbname=app_production

[pgbouncer]
listen_addr = *
listen_port = 6432
auth_type = md5
auth_file = userlist.txt
pool_mode = transaction
max_client_conn = 10000
default_pool_size = 150
reserve_pool_size = 10
reserve_pool_timeout = 5
server_idle_timeout = 600
log_connections = 0
logfile = /var/log/pgbouncer/pgbouncer.log
pidfile = /var/run/pgbouncer/pgbouncer.pid
";

#[test]
fn a_transaction_mode_web_app_converts_to_the_same_settings() {
    let (c, parsed) = convert_text(WEB_APP);
    let config = parsed.unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    assert_eq!(
        config.pgweir.listen_addr.to_string(),
        "*",
        "PgBouncer's `*`, as is"
    );
    assert_eq!(config.pgweir.max_client_conn, 10_000);
    assert!(!config.pgweir.log_connections);
    assert_eq!(config.pool.pool_mode, PoolMode::Transaction);
    assert_eq!(config.pool.pool_size, 150);
    assert_eq!(config.pool.reserve_pool_size, 10);
    assert_eq!(
        config.pool.reserve_pool_timeout,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(
        config.pool.server_idle_timeout,
        std::time::Duration::from_secs(600)
    );
    assert_eq!(config.databases["app"].dbname, "app_production");
    let auth_file = config.pgweir.auth_sources.auth_file.as_ref().unwrap();
    assert!(auth_file.is_absolute() && auth_file.ends_with("userlist.txt"));
    let dropped: Vec<_> = c.dropped.iter().map(|d| d.setting.as_str()).collect();
    assert_eq!(
        dropped,
        [
            "logfile = /var/log/pgbouncer/pgbouncer.log",
            "pidfile = /var/run/pgbouncer/pgbouncer.pid"
        ]
    );
    assert!(c
        .toml
        .contains("# not converted (pgbouncer.ini:16): logfile"));
    let socket = config
        .pgweir
        .unix_socket
        .as_ref()
        .expect("PgBouncer's default socket");
    assert_eq!(socket.dir, Path::new("/tmp"));
}

#[test]
fn pgbouncer_defaults_that_differ_from_pgweirs_are_written_out() {
    let (c, parsed) = convert_text("[databases]\nd = host=db\nlocal = port=5433\n");
    let config = parsed.unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    assert_eq!(config.pool.pool_mode, PoolMode::Session);
    assert_eq!(config.pgweir.auth_type.as_str(), "md5");
    assert!(config.pgweir.listen_addr.hosts().is_empty(), "socket only");
    let socket = config.pgweir.unix_socket.as_ref().expect("the socket");
    assert_eq!(socket.dir, Path::new("/tmp"));
    let local = &config.databases["local"];
    assert_eq!(
        (local.host.as_str(), local.port),
        ("/tmp", 5433),
        "through the socket"
    );
    assert!(c.dropped.is_empty());
}

#[test]
fn socket_settings_carry_over_and_an_off_socket_leaves_hostless_databases_out() {
    let ini = "[databases]\nd = dbname=x\n[pgbouncer]\nlisten_addr = 127.0.0.1, ::1\n\
               unix_socket_dir =\nunix_socket_mode = 0770\n";
    let (c, _) = convert_text(ini);
    assert!(
        c.toml.contains("listen_addr = \"127.0.0.1, ::1\""),
        "{}",
        c.toml
    );
    assert!(c.toml.contains("unix_socket_dir = \"\""), "{}", c.toml);
    assert!(c.toml.contains("unix_socket_mode = \"0770\""), "{}", c.toml);
    let dropped: Vec<_> = c.dropped.iter().map(|d| d.setting.as_str()).collect();
    assert_eq!(dropped, ["[databases] d = dbname=x"]);
    let dir = tempfile::tempdir().unwrap();
    let ini = format!(
        "[databases]\nd = dbname=x\n[pgbouncer]\nunix_socket_dir = {}\nunix_socket_group = 0\n",
        dir.path().display()
    );
    let (c, parsed) = convert_text(&ini);
    let config = parsed.unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    let socket = config.pgweir.unix_socket.as_ref().unwrap();
    assert_eq!(socket.group.as_ref().map(|g| g.gid), Some(0));
    assert_eq!(config.databases["d"].host, dir.path().display().to_string());
}

#[test]
fn databases_and_users_carry_their_settings_and_drop_what_has_no_counterpart() {
    let ini = "\
[databases]
main = host=10.0.0.1 port=5433 dbname=core pool_size=30 reserve_pool=5 pool_mode=session connect_query='SELECT 1'
odd.name = host=10.0.0.2 min_pool_size=2 server_lifetime=1800
* = host=10.0.0.9
[users]
report = pool_mode=statement max_user_connections=4
[pgbouncer]
auth_type = scram-sha-256
unix_socket_dir = /tmp
server_lifetime = 0.5
query_wait_timeout = 1.25
frobnicate = 1
";
    let (c, parsed) = convert_text(ini);
    let config = parsed.unwrap_or_else(|e| panic!("{e}\n{}", c.toml));
    let main = &config.databases["main"];
    assert_eq!((main.port, main.dbname.as_str()), (5433, "core"));
    assert_eq!(
        (main.pool_size, main.reserve_pool_size),
        (Some(30), Some(5))
    );
    assert_eq!(main.pool_mode, Some(PoolMode::Session));
    assert_eq!(config.databases["odd.name"].min_pool_size, Some(2));
    assert_eq!(config.users["report"].pool_mode, Some(PoolMode::Statement));
    assert_eq!(
        config.pool.server_lifetime,
        std::time::Duration::from_millis(500)
    );
    assert_eq!(
        config.pool.query_wait_timeout,
        std::time::Duration::from_millis(1250)
    );
    let dropped: Vec<_> = c.dropped.iter().map(|d| d.setting.as_str()).collect();
    assert_eq!(
        dropped,
        [
            "[databases] main: connect_query=SELECT 1",
            "[databases] * = host=10.0.0.9",
            "frobnicate = 1"
        ]
    );
    assert!(c.dropped[2].why.contains("unknown"));
}

#[test]
fn time_values_keep_their_meaning() {
    assert_eq!(duration("30").unwrap(), "30");
    assert_eq!(duration("0").unwrap(), "0");
    assert_eq!(duration("0.5").unwrap(), "\"500ms\"");
    assert_eq!(duration("2min").unwrap(), "120");
    assert_eq!(duration("250ms").unwrap(), "\"250ms\"");
    assert_eq!(duration("0.0001").unwrap(), "\"1ms\"", "not rounded to off");
    assert!(duration("soon").is_err());
    assert!(duration("5 fortnights").is_err());
}

#[test]
fn the_debian_example_config_converts_without_losing_a_setting() {
    let example = Path::new("/etc/pgbouncer/pgbouncer.ini");
    assert!(
        example.exists(),
        "PgBouncer's example config is missing: apt-get install pgbouncer"
    );
    let c = convert(example).unwrap();
    let entries = ini::read(example).unwrap();
    let set = c
        .toml
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(" = "))
        .count();
    // Every entry is either set or dropped; the two defaults written out add at most two.
    assert!(set + c.dropped.len() >= entries.len(), "{}", c.toml);
    let with_db = format!("{}\n[databases.x]\nhost = \"127.0.0.1\"\n", c.toml);
    if let Err(e) = Config::parse(&with_db, &|_| None) {
        panic!("{e}\n{with_db}");
    }
}

//! The replica routing keys: `replicas`, `read_routing`, `target`, `max_replica_lag`,
//! `read_your_writes` and `read_only_functions` per database (the last also in `[pool]`),
//! `replica_ban_time` and `replica_check_interval` in `[pgweir]`, and their problems.

use std::time::Duration;

use super::super::{ReadRouting, ReplicaConfig, Target};
use super::{parse, problems, rejects, MINIMAL};

fn replica(host: &str, port: u16, weight: u32) -> ReplicaConfig {
    ReplicaConfig {
        host: host.to_owned(),
        port,
        weight,
    }
}

#[test]
fn routing_is_off_by_default() {
    let config = parse(MINIMAL);
    assert_eq!(config.pgweir.replica_ban_time, Duration::from_secs(30));
    assert_eq!(
        config.pgweir.replica_check_interval,
        Duration::from_millis(100)
    );
    assert!(config.pool.read_only_functions.is_empty());
    let app = &config.databases["app"];
    assert!(app.replicas.is_empty());
    assert_eq!(app.read_routing, ReadRouting::Off);
    assert_eq!(app.target, Target::Primary);
    assert_eq!(app.max_replica_lag, Duration::from_secs(1));
    assert!(app.read_your_writes);
    assert!(app.read_only_functions.is_empty());
}

#[test]
fn reads_the_issues_example() {
    let config = parse(
        r#"
[pgweir]
replica_ban_time = "10s"
replica_check_interval = "50ms"

[databases.app]
host = "10.0.0.1"
port = 5433
replicas = [ { host = "10.0.0.2", port = 5432 }, { host = "10.0.0.3", weight = 2 } ]
read_routing = "auto"
max_replica_lag = "250ms"
read_your_writes = false

[databases.app_ro]
host = "10.0.0.1"
replicas = [ { host = "${DB_HOST}" } ]
target = "replica"
"#,
    );
    assert_eq!(config.pgweir.replica_ban_time, Duration::from_secs(10));
    assert_eq!(
        config.pgweir.replica_check_interval,
        Duration::from_millis(50)
    );
    let app = &config.databases["app"];
    assert_eq!(
        app.replicas,
        [replica("10.0.0.2", 5432, 1), replica("10.0.0.3", 5433, 2)],
        "a replica's port defaults to the database's"
    );
    assert_eq!(
        (app.read_routing, app.target),
        (ReadRouting::Auto, Target::Primary)
    );
    assert_eq!(app.max_replica_lag, Duration::from_millis(250));
    assert!(!app.read_your_writes);
    let ro = &config.databases["app_ro"];
    assert_eq!(ro.replicas, [replica("10.0.0.7", 5432, 1)]);
    assert_eq!(
        (ro.read_routing, ro.target),
        (ReadRouting::Off, Target::Replica)
    );
    assert!(ro.read_your_writes);
}

#[test]
fn replicas_may_be_array_of_tables_blocks() {
    let config = parse(
        r#"
[databases.app]
host = "h"
target = "any"
max_replica_lag = 0

[[databases.app.replicas]]
host = "r1"
weight = 3

[[databases.app.replicas]]
host = "r2"
port = 6000
"#,
    );
    let app = &config.databases["app"];
    assert_eq!(
        app.replicas,
        [replica("r1", 5432, 3), replica("r2", 6000, 1)]
    );
    assert_eq!(app.target, Target::Any);
    assert_eq!(app.max_replica_lag, Duration::ZERO, "zero = no lag limit");
}

#[test]
fn names_are_case_insensitive() {
    let config = parse(&format!(
        "{MINIMAL}replicas = [{{ host = \"r\" }}]\nread_routing = \"AUTO\"\n"
    ));
    assert_eq!(config.databases["app"].read_routing, ReadRouting::Auto);
    rejects(
        &format!("{MINIMAL}replicas = [{{ host = \"r\" }}]\nread_routing = \"on\"\n"),
        "line 4: databases.app.read_routing: must be one of off, auto, not \"on\"",
    );
    rejects(
        &format!("{MINIMAL}replicas = [{{ host = \"r\" }}]\ntarget = \"standby\"\n"),
        "line 4: databases.app.target: must be one of primary, replica, any, not \"standby\"",
    );
}

#[test]
fn routing_without_replicas_is_a_problem() {
    rejects(
        &format!("{MINIMAL}read_routing = \"auto\"\n"),
        "line 3: databases.app.read_routing: \"auto\" needs `replicas`",
    );
    rejects(
        &format!("{MINIMAL}target = \"replica\"\n"),
        "line 3: databases.app.target: \"replica\" needs `replicas`",
    );
    rejects(
        &format!("{MINIMAL}replicas = []\ntarget = \"any\"\n"),
        "line 4: databases.app.target: \"any\" needs `replicas`",
    );
    let config = parse(&format!(
        "{MINIMAL}read_routing = \"off\"\ntarget = \"primary\"\n"
    ));
    assert!(config.databases["app"].replicas.is_empty());
}

#[test]
fn auto_routing_and_a_target_exclude_each_other() {
    let choose =
        "choose one: read_routing = \"auto\" routes per transaction, target routes everything";
    rejects(
        &format!(
            "{MINIMAL}replicas = [{{ host = \"r\" }}]\nread_routing = \"auto\"\ntarget = \"any\"\n"
        ),
        &format!("line 5: databases.app.target: {choose}"),
    );
    assert_eq!(
        problems(&format!(
            "{MINIMAL}read_routing = \"auto\"\ntarget = \"replica\"\n"
        )),
        [
            "line 3: databases.app.read_routing: \"auto\" needs `replicas`".to_owned(),
            "line 4: databases.app.target: \"replica\" needs `replicas`".to_owned(),
            format!("line 4: databases.app.target: {choose}"),
        ],
        "every problem at once"
    );
}

#[test]
fn replica_entries_are_checked() {
    rejects(
        &format!("{MINIMAL}replicas = [{{ host = \"r\", weight = 0 }}]\n"),
        "line 3: databases.app.replicas[0].weight: must be between 1 and 4294967295",
    );
    rejects(
        &format!("{MINIMAL}replicas = [{{ host = \"r\", port = 0 }}]\n"),
        "line 3: databases.app.replicas[0].port: must be between 1 and 65535",
    );
    rejects(
        &format!("{MINIMAL}replicas = [{{ host = \"r\" }}, {{ host = \"s\", wieght = 2 }}]\n"),
        "line 3: databases.app.replicas[1].wieght: unknown key; did you mean `weight`?",
    );
    rejects(
        &format!("{MINIMAL}replicas = [{{ port = 5432 }}]\n"),
        "line 3: databases.app.replicas[0].host: is required",
    );
    rejects(
        &format!("{MINIMAL}replicas = [{{ host = \"r\" }}, \"s:5432\"]\n"),
        "line 3: databases.app.replicas[1]: expected a table, found a string",
    );
    rejects(
        &format!("{MINIMAL}replicas = \"r\"\n"),
        "line 3: databases.app.replicas: expected an array of tables, found a string",
    );
    rejects(
        &format!("{MINIMAL}[[databases.app.replicas]]\nhost = \"r\"\nbogus = 1\n"),
        "line 5: databases.app.replicas[0].bogus: unknown key",
    );
}

#[test]
fn replica_check_interval_must_not_be_zero() {
    rejects(
        &format!("[pgweir]\nreplica_check_interval = 0\n{MINIMAL}"),
        "line 2: pgweir.replica_check_interval: must be more than zero",
    );
    rejects(
        &format!("[pgweir]\nreplica_check_interval = \"0ms\"\n{MINIMAL}"),
        "line 2: pgweir.replica_check_interval: must be more than zero",
    );
    let config = parse(&format!("[pgweir]\nreplica_ban_time = 0\n{MINIMAL}"));
    assert_eq!(config.pgweir.replica_ban_time, Duration::ZERO);
}

#[test]
fn read_only_functions_default_from_pool() {
    let text = r#"
[pool]
read_only_functions = ["Report_Total", "fn_a"]

[databases.inherits]
host = "h"

[databases.own]
host = "h"
read_only_functions = ["FN_B"]

[databases.none]
host = "h"
read_only_functions = []
"#;
    let config = parse(text);
    assert_eq!(config.pool.read_only_functions, ["report_total", "fn_a"]);
    let list = |db: &str| config.databases[db].read_only_functions.clone();
    assert_eq!(list("inherits"), ["report_total", "fn_a"]);
    assert_eq!(list("own"), ["fn_b"], "a database's list replaces [pool]'s");
    assert!(list("none").is_empty(), "an empty list replaces it too");
}

#[test]
fn functions_that_write_cannot_be_declared_read_only() {
    rejects(
        &format!("[pool]\nread_only_functions = [\"fn_a\", \"NEXTVAL\"]\n{MINIMAL}"),
        "line 2: pool.read_only_functions[1]: nextval always writes; it cannot be declared read-only",
    );
    assert_eq!(
        problems(&format!(
            "{MINIMAL}read_only_functions = [\n  \"pg_advisory_lock\",\n  \"ok\",\n  \"lo_import\",\n]\n"
        )),
        [
            "line 4: databases.app.read_only_functions[0]: pg_advisory_lock always writes; \
             it cannot be declared read-only",
            "line 6: databases.app.read_only_functions[2]: lo_import always writes; \
             it cannot be declared read-only",
        ]
    );
}

#[test]
fn read_only_functions_must_be_bare_names() {
    rejects(
        &format!("{MINIMAL}read_only_functions = [\"myschema.fn\"]\n"),
        "line 3: databases.app.read_only_functions[0]: \"myschema.fn\" must be a function \
         name without a schema (it matches in every schema)",
    );
    rejects(
        &format!("{MINIMAL}read_only_functions = [\"\"]\n"),
        "line 3: databases.app.read_only_functions[0]: \"\" must be a function \
         name without a schema (it matches in every schema)",
    );
    rejects(
        &format!("{MINIMAL}read_only_functions = [\"fn\", 3]\n"),
        "line 3: databases.app.read_only_functions[1]: expected a string, found an integer",
    );
    rejects(
        &format!("{MINIMAL}read_only_functions = \"fn\"\n"),
        "line 3: databases.app.read_only_functions: expected an array of strings, found a string",
    );
    rejects(
        &format!("{MINIMAL}read_only_functions = [\"${{NOPE}}\"]\n"),
        "line 3: databases.app.read_only_functions[0]: environment variable NOPE is not set",
    );
}

#[test]
fn read_your_writes_and_lag_are_typed() {
    rejects(
        &format!("{MINIMAL}read_your_writes = \"yes\"\n"),
        "line 3: databases.app.read_your_writes: expected a boolean, found a string",
    );
    rejects(
        &format!("{MINIMAL}max_replica_lag = \"1\"\n"),
        "line 3: databases.app.max_replica_lag: needs a unit (ms, s, m or h), like \"1s\"; \
         a bare integer without quotes means seconds",
    );
}

/// The example file's routing keys show the defaults, and its commented-out database
/// examples form a valid configuration once uncommented.
#[test]
fn example_file_documents_routing() {
    let example = include_str!("../../../config/pgweir.toml");
    let config = parse(example);
    let defaults = parse(MINIMAL);
    assert_eq!(
        config.pgweir.replica_ban_time,
        defaults.pgweir.replica_ban_time
    );
    assert_eq!(
        config.pgweir.replica_check_interval,
        defaults.pgweir.replica_check_interval
    );
    assert!(config.pool.read_only_functions.is_empty());
    let keys = [
        "replicas",
        "read_routing",
        "target",
        "max_replica_lag",
        "read_your_writes",
        "read_only_functions",
    ];
    let uncommented: String = example
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if keys.iter().any(|k| rest.starts_with(&format!("{k} = "))) => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let db = &parse(&uncommented).databases["pgbench"];
    assert_eq!(
        db.replicas,
        [replica("10.0.0.2", 5432, 1), replica("10.0.0.3", 5433, 2)]
    );
    assert_eq!(
        (db.read_routing, db.target),
        (ReadRouting::Off, Target::Primary)
    );
}

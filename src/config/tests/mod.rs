//! Tests of `Config::parse` as a whole: defaults, every kind of problem with its line,
//! environment expansion, and that secrets never reach error text. The pool sizing,
//! limit and timeout keys are in `limits`, the replica routing keys in `replicas`, the
//! metrics, admin console, shutdown and logging keys in `operations`, `auth_hba_file` in
//! `hba`, `Config::pool_settings` in `settings`, and the key table (and the README's
//! reference of it) in `keys`; all use the helpers here.

mod auth;
mod hba;
mod keys;
mod limits;
mod operations;
mod replicas;
mod settings;

use std::path::Path;
use std::time::Duration;

use super::*;

const MINIMAL: &str = "[databases.app]\nhost = \"db.internal\"\n";

fn env(name: &str) -> Option<String> {
    match name {
        "APP_PW" => Some("from-env".into()),
        "DB_HOST" => Some("10.0.0.7".into()),
        "SECS" => Some("30".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Config {
    match Config::parse(text, &env) {
        Ok(config) => config,
        Err(e) => panic!("config should parse, got:\n{e}"),
    }
}

/// The error text, one problem per line, as `pgweir check` prints it.
fn problems(text: &str) -> Vec<String> {
    match Config::parse(text, &env) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// Asserts that `text` (a full file) is rejected with exactly `expected`.
fn rejects(text: &str, expected: &str) {
    assert_eq!(problems(text), vec![expected.to_owned()], "for:\n{text}");
}

#[test]
fn absent_sections_take_defaults() {
    let config = parse(MINIMAL);
    let g = &config.pgweir;
    assert_eq!(g.listen_addr.to_string(), "127.0.0.1");
    assert_eq!(g.listen_port, 6432);
    assert_eq!(g.auth_type, AuthType::ScramSha256);
    assert_eq!(g.max_client_conn, 100);
    assert_eq!(g.workers, 0);
    assert_eq!(g.log_level, "info");
    assert_eq!(g.server_connect_timeout, Duration::from_secs(15));
    assert_eq!(config.pool.pool_mode, PoolMode::Transaction);
    assert_eq!(config.pool.pool_size, 20);
    assert!(config.users.is_empty());
    let app = &config.databases["app"];
    assert_eq!(app.host, "db.internal");
    assert_eq!(app.port, 5432);
    assert_eq!(app.dbname, "app", "dbname defaults to the table key");
    assert_eq!(app.user, None);
    assert_eq!(app.password, None);
    assert_eq!(app.pool_size, None);
    assert_eq!(app.pool_mode, None);
}

#[test]
fn empty_sections_take_defaults() {
    let config = parse(&format!("[pgweir]\n[pool]\n[users]\n{MINIMAL}"));
    assert_eq!(config.pgweir.listen_port, 6432);
    assert_eq!(config.pool.pool_size, 20);
    assert!(config.users.is_empty());
}

#[test]
fn reads_every_key() {
    let config = parse(
        r#"
[pgweir]
listen_addr = "0.0.0.0"
listen_port = 7432
auth_type = "MD5"
max_client_conn = 10000
workers = 4
log_level = "debug"
server_connect_timeout = "250ms"

[pool]
pool_mode = "statement"
default_pool_size = 5

[databases.app]
host = "127.0.0.1"
port = 5433
dbname = "app_prod"
user = "app_owner"
password = "${APP_PW}"
pool_size = 50
pool_mode = "session"

[users.alice]
password = "md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
pool_mode = "session"
"#,
    );
    let g = &config.pgweir;
    assert_eq!(
        (
            g.listen_addr.to_string().as_str(),
            g.listen_port,
            g.auth_type
        ),
        ("0.0.0.0", 7432, AuthType::Md5)
    );
    assert_eq!((g.max_client_conn, g.workers), (10000, 4));
    assert_eq!(g.log_level, "debug");
    assert_eq!(g.server_connect_timeout, Duration::from_millis(250));
    assert_eq!(config.pool.pool_mode, PoolMode::Statement);
    assert_eq!(config.pool.pool_size, 5);
    let app = &config.databases["app"];
    assert_eq!((app.port, app.dbname.as_str()), (5433, "app_prod"));
    assert_eq!(app.user.as_deref(), Some("app_owner"));
    assert_eq!(app.password, Some(Secret("from-env".into())));
    assert_eq!(app.pool_size, Some(50));
    assert_eq!(app.pool_mode, Some(PoolMode::Session));
    let alice = &config.users["alice"];
    assert_eq!(
        alice.password.as_ref().map(Secret::expose),
        Some("md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    );
    assert_eq!(alice.pool_mode, Some(PoolMode::Session));
}

#[test]
fn example_file_parses() {
    let config = parse(include_str!("../../../config/pgweir.toml"));
    assert_eq!(config.pgweir.listen_addr.to_string(), "127.0.0.1");
    assert_eq!(config.pgweir.listen_port, 6432);
    assert_eq!(config.pgweir.auth_type, AuthType::ScramSha256);
    assert_eq!(config.pool.pool_mode, PoolMode::Transaction);
    let db = &config.databases["pgbench"];
    assert_eq!((db.host.as_str(), db.port), ("127.0.0.1", 5432));
    assert_eq!(db.dbname, "pgbench");
    assert_eq!(db.pool_size, Some(20));
    let user = &config.users["pgweir"];
    assert_eq!(user.password.as_ref().map(Secret::expose), Some("pgweir"));
}

#[test]
fn inline_tables_are_tables() {
    let config = parse("databases = { app = { host = \"h\", port = 1 } }\n");
    assert_eq!(config.databases["app"].port, 1);
}

#[test]
fn syntax_errors_name_the_line() {
    rejects(
        "[pgweir]\nlisten_port = 1\nlisten_port = 2\n",
        "line 3: invalid TOML: duplicate key `listen_port` in table `pgweir`",
    );
    rejects(
        "[databases.app]\nhost = \"h\"\nport = x\n",
        "line 3: invalid TOML: invalid string; expected `\"`, `'`",
    );
}

#[test]
fn unknown_keys_are_rejected() {
    rejects(
        &format!("[pgwier]\nx = 1\n{MINIMAL}"),
        "line 1: pgwier: unknown key; did you mean `pgweir`?",
    );
    rejects(
        &format!("[pgweir]\n\nlisten_adr = \"x\"\n{MINIMAL}"),
        "line 3: pgweir.listen_adr: unknown key; did you mean `listen_addr`?",
    );
    rejects(
        &format!("{MINIMAL}hots = \"x\"\n"),
        "line 3: databases.app.hots: unknown key; did you mean `host`?",
    );
    rejects(
        &format!("{MINIMAL}[users.bob]\npasword = \"x\"\n"),
        "line 4: users.bob.pasword: unknown key; did you mean `password`?",
    );
    rejects(
        &format!("{MINIMAL}[databases.\"my.db\"]\nhost = \"h\"\nx = 1\n"),
        "line 5: databases.\"my.db\".x: unknown key",
    );
    rejects(
        &format!("[pool]\nmax_client_conn = 5\n{MINIMAL}"),
        "line 2: pool.max_client_conn: unknown key here; `max_client_conn` belongs in [pgweir]",
    );
}

#[test]
fn wrong_types_are_rejected() {
    rejects(
        &format!("[pgweir]\nlisten_port = \"x\"\n{MINIMAL}"),
        "line 2: pgweir.listen_port: expected an integer, found a string",
    );
    rejects(
        &format!("pgweir = 3\n{MINIMAL}"),
        "line 1: pgweir: expected a table, found an integer",
    );
    rejects(
        "[databases]\napp = \"h\"\n",
        "line 2: databases.app: expected a table, found a string",
    );
    rejects(
        &format!("[[pgweir]]\nworkers = 1\n{MINIMAL}"),
        "line 1: pgweir: expected a table, found an array of tables",
    );
    rejects(
        &format!("[pgweir]\nlisten_addr = 127\n{MINIMAL}"),
        "line 2: pgweir.listen_addr: expected a string, found an integer",
    );
}

#[test]
fn out_of_range_numbers_are_rejected() {
    let cases = [
        (
            "[pgweir]\nlisten_port = 70000",
            "pgweir.listen_port: must be between 1 and 65535",
        ),
        (
            "[pgweir]\nlisten_port = 0",
            "pgweir.listen_port: must be between 1 and 65535",
        ),
        (
            "[pgweir]\nmax_client_conn = 0",
            "pgweir.max_client_conn: must be at least 1",
        ),
        (
            "[pgweir]\nworkers = -1",
            "pgweir.workers: must be at least 0",
        ),
        (
            "[pool]\ndefault_pool_size = 0",
            "pool.default_pool_size: must be at least 1",
        ),
    ];
    for (section, expected) in cases {
        rejects(
            &format!("{section}\n{MINIMAL}"),
            &format!("line 2: {expected}"),
        );
    }
    rejects(
        &format!("{MINIMAL}port = 65536\n"),
        "line 3: databases.app.port: must be between 1 and 65535",
    );
    assert_eq!(
        problems(&format!("{MINIMAL}pool_size = 0\n")),
        ["line 3: databases.app.pool_size: must be at least 1"]
    );
}

#[test]
fn names_must_be_known() {
    rejects(
        &format!("[pgweir]\nlog_level = \"verbose\"\n{MINIMAL}"),
        "line 2: pgweir.log_level: must be one of error, warn, info, debug, trace, not \"verbose\"",
    );
    rejects(
        &format!("[pgweir]\nauth_type = \"ldap\"\n{MINIMAL}"),
        "line 2: pgweir.auth_type: must be one of scram-sha-256, md5, plain, trust, cert, hba, not \"ldap\"",
    );
    rejects(
        &format!("{MINIMAL}pool_mode = \"sesion\"\n"),
        "line 3: databases.app.pool_mode: must be one of session, transaction, statement, not \"sesion\"",
    );
}

#[test]
fn databases_are_required() {
    assert_eq!(
        problems("[pgweir]\n"),
        ["databases: no databases configured"]
    );
    assert_eq!(problems(""), ["databases: no databases configured"]);
    rejects(
        "[pgweir]\n[databases]\n",
        "line 2: databases: no databases configured",
    );
    rejects(
        "[databases.app]\nport = 5432\n",
        "line 1: databases.app.host: is required",
    );
}

#[test]
fn malformed_secrets_are_rejected() {
    let bad_md5 = "md5zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    rejects(
        &format!("{MINIMAL}[users.bob]\npassword = \"{bad_md5}\"\n"),
        "line 4: users.bob.password: md5 secret must be \"md5\" followed by 32 hex digits",
    );
    rejects(
        &format!("{MINIMAL}password = \"SCRAM-SHA-256$4096:c2FsdA==$x\"\n"),
        "line 3: databases.app.password: SCRAM verifier must look like \
         SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = r#"
[pgweir]
listen_port = "x"
bogus = true

[pool]
default_pool_size = 0

[databases.app]
pool_size = 0

[users.alice]
password = "${NOPE}"
"#;
    assert_eq!(
        problems(text),
        [
            "line 3: pgweir.listen_port: expected an integer, found a string",
            "line 4: pgweir.bogus: unknown key",
            "line 7: pool.default_pool_size: must be at least 1",
            "line 9: databases.app.host: is required",
            "line 10: databases.app.pool_size: must be at least 1",
            "line 13: users.alice.password: environment variable NOPE is not set",
        ]
    );
    let err = Config::parse(text, &env).err();
    assert_eq!(err.map(|e| e.problems().len()), Some(6));
}

#[test]
fn durations_in_every_form() {
    let timeout = |value: &str| {
        let text = format!("[pgweir]\nserver_connect_timeout = {value}\n{MINIMAL}");
        parse(&text).pgweir.server_connect_timeout
    };
    assert_eq!(timeout("20"), Duration::from_secs(20));
    assert_eq!(timeout("0"), Duration::ZERO);
    assert_eq!(timeout("\"0\""), Duration::ZERO);
    assert_eq!(timeout("\"250ms\""), Duration::from_millis(250));
    assert_eq!(timeout("\"5s\""), Duration::from_secs(5));
    assert_eq!(timeout("\"10m\""), Duration::from_secs(600));
    assert_eq!(timeout("\"1h\""), Duration::from_secs(3600));
}

#[test]
fn bad_durations_are_rejected() {
    let key = "line 2: pgweir.server_connect_timeout";
    let cases = [
        ("-1", "must not be negative"),
        ("\"-5s\"", "must not be negative"),
        (
            "\"15\"",
            "needs a unit (ms, s, m or h), like \"15s\"; a bare integer without quotes means seconds",
        ),
        (
            "\"5 parsecs\"",
            "must be a whole number followed by a unit (ms, s, m or h), like \"5s\"",
        ),
        (
            "1.5",
            "expected an integer of seconds or a string like \"5s\", found a float",
        ),
    ];
    for (value, message) in cases {
        rejects(
            &format!("[pgweir]\nserver_connect_timeout = {value}\n{MINIMAL}"),
            &format!("{key}: {message}"),
        );
    }
}

#[test]
fn env_references_are_expanded_in_any_string() {
    let config = parse(
        r#"
[pgweir]
server_connect_timeout = "${SECS}s"
listen_addr = "$DB_HOST"
[databases.app]
host = "${DB_HOST}"
user = "u$er{x}"
password = "a${APP_PW}b${APP_PW}"
"#,
    );
    assert_eq!(
        config.pgweir.server_connect_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(
        config.pgweir.listen_addr.to_string(),
        "$DB_HOST",
        "no braces, no expansion"
    );
    let app = &config.databases["app"];
    assert_eq!(app.host, "10.0.0.7");
    assert_eq!(app.user.as_deref(), Some("u$er{x}"));
    assert_eq!(app.password, Some(Secret("afrom-envbfrom-env".into())));
}

#[test]
fn unset_env_references_are_rejected() {
    rejects(
        "[databases.app]\nhost = \"h\"\npassword = \"${APP_PASSWORD}\"\n",
        "line 3: databases.app.password: environment variable APP_PASSWORD is not set",
    );
    rejects(
        "[databases.app]\nhost = \"${DB_HOST\"\n",
        "line 2: databases.app.host: \"${\" without a closing \"}\"",
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let secret = "md5hunter2hunter2hunter2hunter2hunt";
    let texts = [
        format!("{MINIMAL}[users.bob]\npassword = \"{secret}\"\n"),
        format!("{MINIMAL}password = \"{secret}\"\n"),
        format!("{MINIMAL}password = \"{secret}${{NOPE}}\"\n"),
        format!("{MINIMAL}password = \"{secret}\n"),
        format!("{MINIMAL}password = [\"{secret}\"]\n"),
    ];
    for text in texts {
        let shown = problems(&text).join("\n");
        assert!(!shown.contains("hunter2"), "secret leaked: {shown}");
    }
}

#[test]
fn unreadable_file_is_an_io_error() {
    let err = Config::load(Path::new("/nonexistent/pgweir.toml")).err();
    assert!(matches!(err, Some(ConfigError::Io { .. })));
    let shown = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(shown.starts_with("cannot read config file /nonexistent/pgweir.toml: "));
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgweir.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.databases["app"].host, "db.internal");
}

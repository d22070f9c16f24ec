//! The first hour of a new user: `scripts/quickstart.sh` runs pgweir with the shipped
//! `config/pgweir.toml` and prints a connection string, a console command and a metrics
//! URL; the README shows the same. These tests keep the three in step without starting
//! anything: the shipped config has the console and `/metrics` on, the names the
//! quickstart creates in Postgres and prints are the config's, and every connection
//! string and metrics URL in the README (and in the config's own header) works with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgweir::config::Config;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

fn shipped() -> Config {
    Config::load(&repo_file("config/pgweir.toml"))
        .unwrap_or_else(|e| panic!("config/pgweir.toml does not load: {e}"))
}

/// The plaintext password `[users]` gives `user`, or a panic naming what is wrong.
fn password<'a>(config: &'a Config, user: &str, whence: &str) -> &'a str {
    let entry = config
        .users
        .get(user)
        .unwrap_or_else(|| panic!("{whence}: user {user:?} is not in config/pgweir.toml"));
    entry
        .password
        .as_ref()
        .unwrap_or_else(|| panic!("{whence}: user {user:?} has no password in config/pgweir.toml"))
        .expose()
}

fn metrics_port(config: &Config) -> u16 {
    config
        .pgweir
        .metrics_addr
        .expect("config/pgweir.toml serves /metrics (metrics_addr)")
        .port()
}

#[test]
fn shipped_config_has_the_console_and_metrics_on() {
    let config = shipped();
    let addr = config.pgweir.metrics_addr.expect("metrics_addr is set");
    assert!(addr.ip().is_loopback(), "metrics_addr {addr} is loopback");
    assert!(
        config.pgweir.listen_addr.to_string() == "127.0.0.1",
        "the shipped config listens on 127.0.0.1 only, as its easy passwords need"
    );
    assert!(
        !config.pgweir.admin_users.is_empty(),
        "admin_users names a console user"
    );
    for admin in &config.pgweir.admin_users {
        let secret = password(&config, admin, "admin_users");
        assert!(
            !secret.starts_with("md5") && !secret.starts_with("SCRAM-SHA-256$"),
            "the console user {admin:?} has a plaintext password a newcomer can type"
        );
    }
}

/// The `NAME="value"` assignments at the top of the quickstart.
fn script_constants(script: &str) -> BTreeMap<&str, &str> {
    script
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(|(name, value)| (name, value.trim_matches('"')))
        .collect()
}

#[test]
fn quickstart_uses_the_shipped_names_and_ports() {
    let config = shipped();
    let script = read("scripts/quickstart.sh");
    let constants = script_constants(&script);
    let get = |name: &str| -> &str {
        constants
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("scripts/quickstart.sh sets {name}"))
    };
    assert_eq!(get("CONFIG"), "config/pgweir.toml");

    let user = get("APP_USER");
    assert_eq!(
        password(&config, user, "quickstart APP_USER"),
        get("APP_PASSWORD"),
        "the quickstart creates role {user} with the password pgweir logs in with"
    );
    let db = config
        .databases
        .get(get("APP_DB"))
        .unwrap_or_else(|| panic!("APP_DB {:?} is a [databases] entry", get("APP_DB")));
    assert_eq!(
        db.dbname,
        get("APP_DB"),
        "the database created is the one served"
    );
    assert_eq!(
        db.pool_size.map(|n| n.to_string()).as_deref(),
        Some(get("POOL_SIZE"))
    );

    let admin = get("ADMIN_USER");
    assert!(
        config.pgweir.admin_users.iter().any(|a| a == admin),
        "ADMIN_USER {admin:?} is in admin_users"
    );
    assert_eq!(
        password(&config, admin, "quickstart ADMIN_USER"),
        get("ADMIN_PASSWORD")
    );

    // The defaults of the port variables are the config's, so the script runs it unchanged.
    for (line, port) in [
        ("PG_PORT=\"${PGWEIR_PG_PORT:-", db.port),
        ("PGWEIR_PORT=\"${PGWEIR_PORT:-", config.pgweir.listen_port),
        (
            "METRICS_PORT=\"${PGWEIR_METRICS_PORT:-",
            metrics_port(&config),
        ),
    ] {
        let expected = format!("{line}{port}}}\"");
        assert!(
            script.lines().any(|l| l == expected),
            "scripts/quickstart.sh has the line {expected}"
        );
    }
}

/// A `postgres://user:password@host:port/database` found in a document.
#[derive(Debug)]
struct ConnString<'a> {
    user: &'a str,
    password: &'a str,
    host: &'a str,
    port: u16,
    database: &'a str,
}

fn conn_strings(text: &str) -> Vec<(usize, ConnString<'_>)> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("postgres://") {
            let rest = &line[at + "postgres://".len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || "`)'\"".contains(c))
                .unwrap_or(rest.len());
            let url = &rest[..end];
            let parsed = url.split_once('@').and_then(|(auth, place)| {
                let (user, password) = auth.split_once(':')?;
                let (hostport, database) = place.split_once('/')?;
                let (host, port) = hostport.rsplit_once(':')?;
                Some(ConnString {
                    user,
                    password,
                    host,
                    port: port.parse().ok()?,
                    database,
                })
            });
            let parsed = parsed.unwrap_or_else(|| {
                panic!(
                    "line {}: postgres://{url} is not user:password@host:port/database",
                    index + 1
                )
            });
            found.push((index + 1, parsed));
        }
    }
    found
}

fn check_conn_strings(document: &str, text: &str, config: &Config) -> usize {
    let strings = conn_strings(text);
    for (line, c) in &strings {
        let whence = format!("{document} line {line}");
        assert_eq!(c.host, "127.0.0.1", "{whence}: {c:?} is on listen_addr");
        assert_eq!(
            c.port, config.pgweir.listen_port,
            "{whence}: {c:?} uses listen_port"
        );
        assert_eq!(
            password(config, c.user, &whence),
            c.password,
            "{whence}: {c:?} has the user's password"
        );
        if c.database == "pgweir" || c.database == "pgbouncer" {
            let console = &config.pgweir;
            assert!(
                console.admin_users.iter().any(|u| u == c.user)
                    || console.stats_users.iter().any(|u| u == c.user),
                "{whence}: {c:?} is a console user (admin_users or stats_users)"
            );
        } else {
            assert!(
                config.databases.contains_key(c.database),
                "{whence}: {c:?} names a [databases] entry"
            );
        }
    }
    strings.len()
}

fn check_metrics_urls(document: &str, text: &str, config: &Config) -> usize {
    let expected = format!("http://127.0.0.1:{}/metrics", metrics_port(config));
    let mut count = 0;
    for (index, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("http://127.0.0.1:") {
            let rest = &line[at..];
            let end = rest
                .find(|c: char| c.is_whitespace() || "`)'\"".contains(c))
                .unwrap_or(rest.len());
            let url = &rest[..end];
            if url.ends_with("/metrics") {
                assert_eq!(url, expected, "{document} line {}: metrics_addr", index + 1);
                count += 1;
            }
        }
    }
    count
}

#[test]
fn readme_examples_use_the_shipped_names() {
    let config = shipped();
    let readme = read("README.md");
    let strings = check_conn_strings("README.md", &readme, &config);
    assert!(
        strings >= 2,
        "README.md shows a client's and the console's connection strings"
    );
    let urls = check_metrics_urls("README.md", &readme, &config);
    assert!(urls >= 1, "README.md shows the /metrics URL");
    for command in ["scripts/quickstart.sh", "cargo test"] {
        let first_screen: String = readme.lines().take(30).collect::<Vec<_>>().join("\n");
        assert!(
            first_screen.contains(command),
            "README.md's first screen shows {command}"
        );
    }
}

#[test]
fn the_configs_own_header_uses_its_names() {
    let config = shipped();
    let text = read("config/pgweir.toml");
    assert!(check_conn_strings("config/pgweir.toml", &text, &config) >= 2);
    assert!(check_metrics_urls("config/pgweir.toml", &text, &config) >= 1);
}

#[test]
fn conn_strings_are_read_whole() {
    let text = "x `psql postgres://u:p@127.0.0.1:6432/db -c 'SHOW POOLS'` y";
    let found = conn_strings(text);
    assert_eq!(found.len(), 1);
    let c = &found[0].1;
    assert_eq!(
        (c.user, c.password, c.host, c.port, c.database),
        ("u", "p", "127.0.0.1", 6432, "db")
    );
}

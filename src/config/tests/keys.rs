//! The key table ([`Key`]) against what must agree with it: the restart-only keys and
//! PgBouncer's keys as they were before the table, SHOW CONFIG's value forms, and the
//! README's configuration reference, which must document every key with its default and
//! no key the table lacks.

use super::*;

/// The README's description of a table's keys: (key, default) for each row of the
/// reference under `### `[section]``, a row naming several keys split into one per key.
fn reference(section: &str) -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let heading = format!("### `[{section}]`");
    let start = readme.find(&heading).expect("the section's heading") + heading.len();
    let text = &readme[start..];
    let text = &text[..text.find("\n#").unwrap_or(text.len())];
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let keys: Vec<&str> = cells[1].split(", ").map(|k| k.trim_matches('`')).collect();
        let defaults: Vec<&str> = cells[2].split(", ").collect();
        for (i, key) in keys.iter().enumerate() {
            let default = if defaults.len() == keys.len() {
                defaults[i]
            } else {
                cells[2]
            };
            rows.push((key.to_string(), default.to_owned()));
        }
    }
    rows
}

/// The default as the reference writes it: the TOML value in backticks, or "none".
fn documented_default(key: &Key) -> String {
    // Defaults the reference describes in words, the value being too long or unset.
    const IN_WORDS: [(&str, &str); 2] = [
        ("auth_query", "PgBouncer's (below)"),
        ("auth_dbname", "the client's database"),
    ];
    if let Some((_, words)) = IN_WORDS.iter().find(|(k, _)| *k == key.name) {
        return (*words).to_owned();
    }
    let quoted = |text: &str| toml_edit::Value::from(text).to_string();
    let value = match key.default_value() {
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        // Whole seconds as a bare integer, as PgBouncer writes them.
        Value::Duration(d) if d.subsec_nanos() == 0 => d.as_secs().to_string(),
        Value::Duration(d) => quoted(&format!("{}ms", d.as_millis())),
        Value::Text(text) => quoted(&text),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(|i| quoted(i)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Unset => return "none".to_owned(),
    };
    format!("`{value}`")
}

#[test]
fn the_readme_documents_every_key_with_its_default() {
    for section in [Section::Pgweir, Section::Pool] {
        let documented = reference(section.name());
        let keys: Vec<&Key> = Key::all().iter().filter(|k| k.section == section).collect();
        for key in &keys {
            let row = documented.iter().find(|(k, _)| k == key.name);
            let (_, default) = row.unwrap_or_else(|| {
                panic!("README's [{}] reference lacks {}", section.name(), key.name)
            });
            assert_eq!(
                *default,
                documented_default(key),
                "README's default of {}",
                key.name
            );
        }
        for (name, _) in &documented {
            assert!(
                keys.iter().any(|k| k.name == name),
                "README documents {name} in [{}], which has no such key",
                section.name()
            );
        }
    }
}

#[test]
fn names_are_unique_and_sections_known() {
    let names: Vec<&str> = Key::all().iter().map(|k| k.name).collect();
    for (i, name) in names.iter().enumerate() {
        assert!(!names[..i].contains(name), "{name} twice");
    }
    let section = |name: &str| Key::named(name).map(|k| k.section);
    assert_eq!(section("default_pool_size"), Some(Section::Pool));
    assert_eq!(section("client_tls_sslmode"), Some(Section::Pgweir));
    assert_eq!(section("auth_query"), Some(Section::Pgweir));
    assert_eq!(section("nosuch"), None);
}

/// The keys that waited for a restart before the table existed, so that moving them into
/// it changed none.
#[test]
fn restart_only_keys_are_as_they_were() {
    let mut restart: Vec<&str> = Key::all()
        .iter()
        .filter(|k| k.reload == Reload::Restart)
        .map(|k| k.name)
        .collect();
    restart.sort_unstable();
    let mut before = [
        "listen_addr",
        "listen_port",
        "so_reuseport",
        "unix_socket_dir",
        "unix_socket_mode",
        "unix_socket_group",
        "workers",
        "metrics_addr",
        "metrics_histograms",
        "max_client_conn",
        "log_level",
        "log_format",
        "stats_period",
        "server_connect_timeout",
        "server_login_retry",
        "tcp_keepalive",
        "tcp_keepidle",
        "tcp_keepintvl",
        "tcp_keepcnt",
        "tcp_user_timeout",
        "replica_check_interval",
        "replica_ban_time",
        "max_db_connections",
        "max_user_connections",
        "pool_mode",
        "max_prepared_statements",
        "fleet",
    ];
    before.sort_unstable();
    assert_eq!(restart, before);
}

#[test]
fn pgweir_s_own_keys_are_as_they_were() {
    let own: Vec<&str> = Key::all()
        .iter()
        .filter(|k| k.pgbouncer.is_none())
        .map(|k| k.name)
        .collect();
    assert_eq!(
        own,
        [
            "workers",
            "log_level",
            "replica_ban_time",
            "replica_check_interval",
            "metrics_addr",
            "metrics_histograms",
            "shutdown_timeout",
            "log_format",
            "fleet",
            "auth_query_cache_ttl",
            "pin_session_state",
            "read_only_functions",
        ]
    );
    assert_eq!(
        Key::for_pgbouncer("tcp_keepcnt").map(|k| k.name),
        Some("tcp_keepcnt")
    );
    assert!(Key::for_pgbouncer("workers").is_none());
}

#[test]
fn pgbouncer_s_keys_show_pgbouncer_s_forms() {
    let shown = |key: &str, value: Value| Key::named(key).unwrap().shown(&value);
    let ms = |ms| Value::Duration(Duration::from_millis(ms));
    assert_eq!(shown("query_wait_timeout", ms(120_000)), "120");
    assert_eq!(shown("query_wait_timeout", ms(1500)), "1.5");
    assert_eq!(shown("query_wait_timeout", ms(0)), "0");
    assert_eq!(shown("tcp_user_timeout", ms(120_000)), "120000");
    assert_eq!(shown("log_connections", Value::Bool(true)), "1");
    assert_eq!(
        shown("unix_socket_mode", Value::Text("0777".into())),
        "0777"
    );
    assert_eq!(shown("replica_ban_time", ms(30_000)), "30s", "pgweir's own");
    assert_eq!(shown("replica_check_interval", ms(100)), "100ms");
    assert_eq!(shown("shutdown_timeout", ms(0)), "0");
    assert_eq!(shown("pin_session_state", Value::Bool(true)), "true");
    let list = Value::List(vec!["a".into(), "b".into()]);
    assert_eq!(shown("admin_users", list), "a,b");
    assert_eq!(shown("metrics_addr", Value::Unset), "");
}

#[test]
fn values_come_from_the_configuration() {
    let config = parse(&format!(
        "[pgweir]\nlisten_port = 7000\nunix_socket_dir = \"/tmp\"\n[pool]\nquery_timeout = \"2s\"\n{MINIMAL}"
    ));
    let value = |key: &str| Key::named(key).unwrap().value(&config);
    assert_eq!(value("listen_port"), Value::Int(7000));
    assert_eq!(value("unix_socket_dir"), Value::Text("/tmp".into()));
    assert_eq!(value("unix_socket_mode"), Value::Text("0777".into()));
    assert_eq!(value("unix_socket_group"), Value::Unset);
    assert_eq!(
        value("query_timeout"),
        Value::Duration(Duration::from_secs(2))
    );
    let default = |key: &str| Key::named(key).unwrap().default_value();
    assert_eq!(default("listen_port"), Value::Int(6432));
    assert_eq!(default("unix_socket_dir"), Value::Unset);
    assert_eq!(default("auth_type"), Value::Text("scram-sha-256".into()));
}

//! SHOW CONFIG: every `[pgweir]` and `[pool]` key with its value, its default and whether
//! it can change without a restart. Keys PgBouncer has show PgBouncer's forms, which
//! scripts parse (seconds as bare numbers, `0.5` for half of one; booleans as 0/1); pgweir's
//! own keys show the config file's (`"100ms"`, `true`). Lists are comma-separated, unset
//! values empty. The per-database and per-user tables are not
//! listed (SHOW DATABASES and SHOW USERS show them), so no password is ever shown: the
//! only secrets are in those tables.
//!
//! `changeable` says whether a reload applies the key to the running process: everything
//! but [`crate::config::RESTART_ONLY`].

use std::time::Duration;

use bytes::BytesMut;

use super::result::{ResultSet, Type};
use crate::app::App;
use crate::config::{
    AuthSources, FileMode, GeneralConfig, PoolDefaults, TcpSettings, TlsConfig, RESTART_ONLY,
};

pub const CONFIG: [(&str, Type); 4] = [
    ("key", Type::Text),
    ("value", Type::Text),
    ("default", Type::Text),
    ("changeable", Type::Text),
];

pub fn config(app: &App, out: &mut BytesMut) {
    let current = keys(&app.config().pgweir, &app.config().pool);
    let defaults = keys(&GeneralConfig::default(), &PoolDefaults::default());
    let mut rs = ResultSet::new(out, &CONFIG);
    for ((key, value), (_, default)) in current.into_iter().zip(defaults) {
        let changeable = if RESTART_ONLY.contains(&key) {
            "no"
        } else {
            "yes"
        };
        let (value, default) = (shown(key, value), shown(key, default));
        rs.row([key.into(), value.into(), default.into(), changeable.into()]);
    }
    rs.finish();
}

/// The table (`pgweir` or `pool`) a SHOW CONFIG key is set in; `None` for no such key.
pub fn section_of(key: &str) -> Option<&'static str> {
    let (g, p) = (GeneralConfig::default(), PoolDefaults::default());
    let has = |keys: Vec<(&'static str, String)>| keys.iter().any(|(k, _)| *k == key);
    if has(general(&g)) || has(tls(&g.tls)) || has(tcp(&g.tcp)) {
        Some("pgweir")
    } else if has(pool(&p)) {
        Some("pool")
    } else {
        None
    }
}

/// `value` of `key` as SHOW CONFIG shows it: in PgBouncer's form for PgBouncer's keys.
fn shown(key: &str, value: String) -> String {
    if !crate::convert::is_pgbouncer_setting(key) {
        return value;
    }
    match value.as_str() {
        "true" => return "1".to_owned(),
        "false" => return "0".to_owned(),
        _ => {}
    }
    let unit = value.ends_with('s') && value.starts_with(|c: char| c.is_ascii_digit());
    match crate::config::parse_duration(&value) {
        Ok(d) if unit => seconds(d),
        _ => value,
    }
}

/// Seconds as PgBouncer writes them: `30`, or `0.5` for less than whole ones.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        d.as_secs_f64().to_string()
    }
}

/// Every key of both sections with its value. The structs are taken apart field by field
/// so a new setting cannot be left out of SHOW CONFIG without a compile error.
fn keys(g: &GeneralConfig, p: &PoolDefaults) -> Vec<(&'static str, String)> {
    let mut all = general(g);
    all.extend(tls(&g.tls));
    all.extend(tcp(&g.tcp));
    all.extend(pool(p));
    all
}

/// The TCP keys. `tcp_user_timeout` is in milliseconds, as PgBouncer has it.
fn tcp(t: &TcpSettings) -> Vec<(&'static str, String)> {
    let TcpSettings {
        keepalive,
        keepidle,
        keepintvl,
        keepcnt,
        user_timeout,
    } = t;
    vec![
        ("tcp_keepalive", keepalive.to_string()),
        ("tcp_keepidle", duration(*keepidle)),
        ("tcp_keepintvl", duration(*keepintvl)),
        ("tcp_keepcnt", keepcnt.to_string()),
        ("tcp_user_timeout", user_timeout.as_millis().to_string()),
    ]
}

/// The TLS keys; file paths only, never what the files hold.
fn tls(t: &TlsConfig) -> Vec<(&'static str, String)> {
    let TlsConfig {
        client_sslmode,
        client_cert_file,
        client_key_file,
        client_ca_file,
        server_sslmode,
        server_ca_file,
        server_cert_file,
        server_key_file,
    } = t;
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    vec![
        ("client_tls_sslmode", client_sslmode.as_str().to_owned()),
        ("client_tls_cert_file", path(client_cert_file)),
        ("client_tls_key_file", path(client_key_file)),
        ("client_tls_ca_file", path(client_ca_file)),
        ("server_tls_sslmode", server_sslmode.as_str().to_owned()),
        ("server_tls_ca_file", path(server_ca_file)),
        ("server_tls_cert_file", path(server_cert_file)),
        ("server_tls_key_file", path(server_key_file)),
    ]
}

fn general(g: &GeneralConfig) -> Vec<(&'static str, String)> {
    let GeneralConfig {
        listen_addr,
        listen_port,
        so_reuseport,
        unix_socket,
        auth_type,
        auth_hba_file,
        max_client_conn,
        max_db_client_connections,
        max_user_client_connections,
        workers,
        log_level,
        server_connect_timeout,
        server_login_retry,
        client_login_timeout,
        replica_ban_time,
        replica_check_interval,
        metrics_addr,
        metrics_histograms,
        admin_users,
        stats_users,
        shutdown_timeout,
        ignore_startup_parameters,
        log_connections,
        log_disconnections,
        stats_period,
        log_format,
        auth_sources,
        tls: _,
        tcp: _,
        fleet,
    } = g;
    let mut keys = vec![
        ("listen_addr", listen_addr.to_string()),
        ("listen_port", listen_port.to_string()),
        ("so_reuseport", so_reuseport.to_string()),
        (
            "unix_socket_dir",
            unix_socket
                .as_ref()
                .map(|u| u.dir.display().to_string())
                .unwrap_or_default(),
        ),
        (
            "unix_socket_mode",
            unix_socket
                .as_ref()
                .map_or(FileMode::DEFAULT, |u| u.mode)
                .to_string(),
        ),
        (
            "unix_socket_group",
            unix_socket
                .as_ref()
                .and_then(|u| u.group.as_ref())
                .map(|g| g.name.clone())
                .unwrap_or_default(),
        ),
        ("auth_type", auth_type.as_str().to_owned()),
        (
            "auth_hba_file",
            auth_hba_file
                .as_ref()
                .map(|f| f.path.display().to_string())
                .unwrap_or_default(),
        ),
        ("max_client_conn", max_client_conn.to_string()),
        (
            "max_db_client_connections",
            max_db_client_connections.to_string(),
        ),
        (
            "max_user_client_connections",
            max_user_client_connections.to_string(),
        ),
        ("workers", workers.to_string()),
        ("log_level", log_level.clone()),
        ("server_connect_timeout", duration(*server_connect_timeout)),
        ("server_login_retry", duration(*server_login_retry)),
        ("client_login_timeout", duration(*client_login_timeout)),
        ("replica_ban_time", duration(*replica_ban_time)),
        ("replica_check_interval", duration(*replica_check_interval)),
        (
            "metrics_addr",
            metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
        ),
        ("metrics_histograms", metrics_histograms.as_str().to_owned()),
        ("admin_users", admin_users.join(",")),
        ("stats_users", stats_users.join(",")),
        ("shutdown_timeout", duration(*shutdown_timeout)),
        (
            "ignore_startup_parameters",
            ignore_startup_parameters.join(","),
        ),
        ("log_connections", log_connections.to_string()),
        ("log_disconnections", log_disconnections.to_string()),
        ("stats_period", duration(*stats_period)),
        ("log_format", log_format.as_str().to_owned()),
        (
            "fleet",
            fleet.as_ref().map(|f| f.to_string()).unwrap_or_default(),
        ),
    ];
    keys.extend(auth_keys(auth_sources));
    keys
}

/// The authentication-source keys. None holds a secret: `auth_user`'s password lives in
/// `[users]` or the auth file, which SHOW CONFIG never lists.
fn auth_keys(a: &AuthSources) -> Vec<(&'static str, String)> {
    let AuthSources {
        auth_file,
        auth_user,
        auth_query,
        auth_dbname,
        auth_query_cache_ttl,
    } = a;
    vec![
        (
            "auth_file",
            auth_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("auth_user", auth_user.clone().unwrap_or_default()),
        ("auth_query", auth_query.clone()),
        ("auth_dbname", auth_dbname.clone().unwrap_or_default()),
        ("auth_query_cache_ttl", duration(*auth_query_cache_ttl)),
    ]
}

fn pool(p: &PoolDefaults) -> Vec<(&'static str, String)> {
    let PoolDefaults {
        pool_mode,
        default_pool_size,
        min_pool_size,
        reserve_pool_size,
        reserve_pool_timeout,
        max_db_connections,
        max_user_connections,
        server_idle_timeout,
        server_lifetime,
        query_wait_timeout,
        query_timeout,
        idle_transaction_timeout,
        client_idle_timeout,
        server_check_delay,
        server_check_query,
        max_prepared_statements,
        pin_session_state,
        read_only_functions,
    } = p;
    vec![
        ("pool_mode", pool_mode.as_str().to_owned()),
        ("default_pool_size", default_pool_size.to_string()),
        ("min_pool_size", min_pool_size.to_string()),
        ("reserve_pool_size", reserve_pool_size.to_string()),
        ("reserve_pool_timeout", duration(*reserve_pool_timeout)),
        ("max_db_connections", max_db_connections.to_string()),
        ("max_user_connections", max_user_connections.to_string()),
        ("server_idle_timeout", duration(*server_idle_timeout)),
        ("server_lifetime", duration(*server_lifetime)),
        ("query_wait_timeout", duration(*query_wait_timeout)),
        ("query_timeout", duration(*query_timeout)),
        (
            "idle_transaction_timeout",
            duration(*idle_transaction_timeout),
        ),
        ("client_idle_timeout", duration(*client_idle_timeout)),
        ("server_check_delay", duration(*server_check_delay)),
        ("server_check_query", server_check_query.clone()),
        (
            "max_prepared_statements",
            max_prepared_statements.to_string(),
        ),
        ("pin_session_state", pin_session_state.to_string()),
        ("read_only_functions", read_only_functions.join(",")),
    ]
}

/// A duration as the config file would spell it: `0`, whole seconds as `"30s"`, anything
/// finer in milliseconds.
fn duration(d: Duration) -> String {
    match d.as_millis() {
        0 => "0".to_owned(),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_default_in_the_same_place() {
        let g = GeneralConfig {
            listen_port: 7000,
            admin_users: vec!["a".into(), "b".into()],
            ..GeneralConfig::default()
        };
        let current = keys(&g, &PoolDefaults::default());
        let defaults = keys(&GeneralConfig::default(), &PoolDefaults::default());
        fn names(v: &[(&'static str, String)]) -> Vec<&'static str> {
            v.iter().map(|(k, _)| *k).collect()
        }
        assert_eq!(names(&current), names(&defaults));
        assert!(current.contains(&("listen_port", "7000".to_owned())));
        assert!(current.contains(&("admin_users", "a,b".to_owned())));
        assert!(RESTART_ONLY.iter().all(|k| names(&current).contains(k)));
    }

    #[test]
    fn pgbouncer_s_keys_show_pgbouncer_s_forms() {
        assert_eq!(shown("query_wait_timeout", "120s".into()), "120");
        assert_eq!(shown("query_wait_timeout", "1500ms".into()), "1.5");
        assert_eq!(shown("query_wait_timeout", "0".into()), "0");
        assert_eq!(shown("log_connections", "true".into()), "1");
        assert_eq!(shown("unix_socket_mode", "0777".into()), "0777");
        assert_eq!(
            shown("replica_ban_time", "30s".into()),
            "30s",
            "pgweir's own"
        );
        assert_eq!(shown("pin_session_state", "true".into()), "true");
        assert_eq!(section_of("default_pool_size"), Some("pool"));
        assert_eq!(section_of("client_tls_sslmode"), Some("pgweir"));
        assert_eq!(section_of("auth_query"), Some("pgweir"));
        assert_eq!(section_of("nosuch"), None);
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(duration(Duration::ZERO), "0");
        assert_eq!(duration(Duration::from_secs(600)), "600s");
        assert_eq!(duration(Duration::from_millis(100)), "100ms");
    }
}

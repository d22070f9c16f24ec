//! The pool sizing, limit and timeout keys: their defaults, reading them at every
//! level, and the problems they can have (range, duration form, `min_pool_size`).

use std::time::Duration;

use super::{parse, problems, rejects, MINIMAL};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn limits_and_timeouts_default_to_pgbouncers() {
    let config = parse(MINIMAL);
    let g = &config.pgweir;
    assert_eq!(
        (g.max_db_client_connections, g.max_user_client_connections),
        (0, 0)
    );
    assert_eq!(g.client_login_timeout, secs(60));
    assert_eq!(g.server_login_retry, secs(15));
    let p = &config.pool;
    assert_eq!((p.min_pool_size, p.reserve_pool_size), (0, 0));
    assert_eq!((p.max_db_connections, p.max_user_connections), (0, 0));
    assert_eq!(p.reserve_pool_timeout, secs(5));
    assert_eq!(p.server_idle_timeout, secs(600));
    assert_eq!(p.server_lifetime, secs(3600));
    assert_eq!(p.query_wait_timeout, secs(120));
    assert_eq!(p.query_timeout, Duration::ZERO);
    assert_eq!(p.idle_transaction_timeout, Duration::ZERO);
    assert_eq!(p.client_idle_timeout, Duration::ZERO);
    assert_eq!(p.server_check_delay, secs(30));
    assert_eq!(p.server_check_query, "");
    let app = &config.databases["app"];
    assert_eq!(
        (
            app.min_pool_size,
            app.reserve_pool_size,
            app.max_db_connections
        ),
        (None, None, None)
    );
    assert_eq!(app.server_lifetime, None);
}

#[test]
fn user_overrides_default_to_unset() {
    let config = parse(&format!("{MINIMAL}[users.bob]\n"));
    let bob = &config.users["bob"];
    assert_eq!(
        (
            bob.pool_size,
            bob.reserve_pool_size,
            bob.max_user_connections
        ),
        (None, None, None)
    );
    assert_eq!(bob.query_timeout, None);
    assert_eq!(bob.idle_transaction_timeout, None);
    assert_eq!(bob.client_idle_timeout, None);
}

const EVERY_KEY: &str = r#"
[pgweir]
max_db_client_connections = 500
max_user_client_connections = 300
client_login_timeout = "2s"
server_login_retry = "500ms"

[pool]
default_pool_size = 10
min_pool_size = 2
reserve_pool_size = 3
reserve_pool_timeout = "250ms"
max_db_connections = 40
max_user_connections = 30
server_idle_timeout = "1m"
server_lifetime = "2h"
query_wait_timeout = 7
query_timeout = "90s"
idle_transaction_timeout = "10s"
client_idle_timeout = "5m"
server_check_delay = 0
server_check_query = "SELECT 1"

[databases.app]
host = "h"
pool_size = 8
min_pool_size = 8
reserve_pool_size = 1
max_db_connections = 12
server_lifetime = "30m"

[users.bob]
pool_size = 4
reserve_pool_size = 0
max_user_connections = 6
query_timeout = "1s"
idle_transaction_timeout = "2s"
client_idle_timeout = 3
"#;

#[test]
fn reads_every_limit_and_timeout_key() {
    let config = parse(EVERY_KEY);
    let g = &config.pgweir;
    assert_eq!(
        (g.max_db_client_connections, g.max_user_client_connections),
        (500, 300)
    );
    assert_eq!(g.client_login_timeout, secs(2));
    assert_eq!(g.server_login_retry, Duration::from_millis(500));
    let p = &config.pool;
    assert_eq!((p.pool_size, p.min_pool_size), (10, 2));
    assert_eq!((p.reserve_pool_size, p.max_db_connections), (3, 40));
    assert_eq!(p.max_user_connections, 30);
    assert_eq!(p.reserve_pool_timeout, Duration::from_millis(250));
    assert_eq!(p.server_idle_timeout, secs(60));
    assert_eq!(p.server_lifetime, secs(7200));
    assert_eq!(p.query_wait_timeout, secs(7));
    assert_eq!(p.query_timeout, secs(90));
    assert_eq!(p.idle_transaction_timeout, secs(10));
    assert_eq!(p.client_idle_timeout, secs(300));
    assert_eq!(p.server_check_delay, Duration::ZERO);
    assert_eq!(p.server_check_query, "SELECT 1");
    let app = &config.databases["app"];
    assert_eq!((app.pool_size, app.min_pool_size), (Some(8), Some(8)));
    assert_eq!(app.reserve_pool_size, Some(1));
    assert_eq!(app.max_db_connections, Some(12));
    assert_eq!(app.server_lifetime, Some(secs(1800)));
    let bob = &config.users["bob"];
    assert_eq!((bob.pool_size, bob.reserve_pool_size), (Some(4), Some(0)));
    assert_eq!(bob.max_user_connections, Some(6));
    assert_eq!(bob.query_timeout, Some(secs(1)));
    assert_eq!(bob.idle_transaction_timeout, Some(secs(2)));
    assert_eq!(bob.client_idle_timeout, Some(secs(3)));
}

#[test]
fn min_pool_size_above_the_pool_size_is_rejected() {
    rejects(
        &format!("[pool]\ndefault_pool_size = 5\n\nmin_pool_size = 6\n{MINIMAL}"),
        "line 4: pool.min_pool_size: must not exceed default_pool_size (5)",
    );
    rejects(
        &format!("{MINIMAL}pool_size = 4\nmin_pool_size = 5\n"),
        "line 4: databases.app.min_pool_size: must not exceed pool_size (4)",
    );
    rejects(
        &format!("[pool]\ndefault_pool_size = 3\n{MINIMAL}min_pool_size = 4\n"),
        "line 5: databases.app.min_pool_size: must not exceed [pool] default_pool_size (3)",
    );
    rejects(
        &format!("[pool]\nmin_pool_size = 5\n{MINIMAL}pool_size = 4\n"),
        "line 5: databases.app.pool_size: must be at least [pool] min_pool_size (5)",
    );
}

#[test]
fn min_pool_size_up_to_the_pool_size_is_accepted() {
    parse(&format!("[pool]\nmin_pool_size = 20\n{MINIMAL}"));
    parse(&format!("{MINIMAL}pool_size = 4\nmin_pool_size = 4\n"));
    parse(&format!(
        "[pool]\nmin_pool_size = 10\n{MINIMAL}pool_size = 4\nmin_pool_size = 2\n"
    ));
    // A user's smaller pool_size caps min_pool_size at run time instead of failing:
    // not every user connects to every database.
    parse(&format!(
        "[pool]\nmin_pool_size = 10\n{MINIMAL}[users.bob]\npool_size = 1\n"
    ));
}

#[test]
fn negative_sizes_are_rejected() {
    let cases = [
        ("pgweir", "max_db_client_connections"),
        ("pgweir", "max_user_client_connections"),
        ("pool", "min_pool_size"),
        ("pool", "reserve_pool_size"),
        ("pool", "max_db_connections"),
        ("pool", "max_user_connections"),
    ];
    for (section, key) in cases {
        rejects(
            &format!("[{section}]\n{key} = -1\n{MINIMAL}"),
            &format!("line 2: {section}.{key}: must be at least 0"),
        );
    }
    for key in ["min_pool_size", "reserve_pool_size", "max_db_connections"] {
        rejects(
            &format!("{MINIMAL}{key} = -3\n"),
            &format!("line 3: databases.app.{key}: must be at least 0"),
        );
    }
    for key in ["reserve_pool_size", "max_user_connections"] {
        rejects(
            &format!("{MINIMAL}[users.bob]\n{key} = -3\n"),
            &format!("line 4: users.bob.{key}: must be at least 0"),
        );
    }
    rejects(
        &format!("{MINIMAL}[users.bob]\npool_size = 0\n"),
        "line 4: users.bob.pool_size: must be at least 1",
    );
}

#[test]
fn bad_durations_in_new_keys_are_rejected() {
    rejects(
        &format!("[pgweir]\nclient_login_timeout = \"1 minute\"\n{MINIMAL}"),
        "line 2: pgweir.client_login_timeout: must be a whole number followed by a unit \
         (ms, s, m or h), like \"5s\"",
    );
    rejects(
        &format!("[pool]\nquery_wait_timeout = -1\n{MINIMAL}"),
        "line 2: pool.query_wait_timeout: must not be negative",
    );
    rejects(
        &format!("{MINIMAL}server_lifetime = \"15\"\n"),
        "line 3: databases.app.server_lifetime: needs a unit (ms, s, m or h), like \"15s\"; \
         a bare integer without quotes means seconds",
    );
    rejects(
        &format!("{MINIMAL}[users.bob]\nidle_transaction_timeout = true\n"),
        "line 4: users.bob.idle_transaction_timeout: expected an integer of seconds or a \
         string like \"5s\", found a boolean",
    );
}

#[test]
fn every_limit_problem_is_reported_in_file_order() {
    let text = r#"[pool]
default_pool_size = 2
min_pool_size = 3
server_check_delay = "soon"
[databases.app]
host = "h"
min_pool_size = 4
max_db_connections = -1
[users.bob]
client_idle_timeout = "-1s"
"#;
    assert_eq!(
        problems(text),
        [
            "line 3: pool.min_pool_size: must not exceed default_pool_size (2)",
            "line 4: pool.server_check_delay: must be a whole number followed by a unit \
             (ms, s, m or h), like \"5s\"",
            "line 7: databases.app.min_pool_size: must not exceed [pool] default_pool_size (2)",
            "line 8: databases.app.max_db_connections: must be at least 0",
            "line 10: users.bob.client_idle_timeout: must not be negative",
        ]
    );
}

#[test]
fn example_file_shows_the_defaults() {
    let config = parse(include_str!("../../../config/pgweir.toml"));
    let shown = config.pool_settings("pgbench", "pgweir");
    let defaults = parse(MINIMAL).pool_settings("app", "pgweir");
    assert!(shown.is_some());
    assert_eq!(shown, defaults);
    let g = &config.pgweir;
    assert_eq!(g.client_login_timeout, secs(60));
    assert_eq!(g.server_login_retry, secs(15));
    assert_eq!(
        (g.max_db_client_connections, g.max_user_client_connections),
        (0, 0)
    );
}

//! `Config::pool_settings`: which level wins for each key, and how a forced user
//! changes whose overrides shape the pool.

use std::time::Duration;

use super::super::{PoolMode, PoolSettings};
use super::{parse, MINIMAL};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What a pool gets when nothing overrides the `[pool]` defaults.
fn defaults() -> PoolSettings {
    PoolSettings {
        pool_mode: PoolMode::Transaction,
        pool_size: 20,
        min_pool_size: 0,
        reserve_pool_size: 0,
        reserve_pool_timeout: secs(5),
        max_db_connections: 0,
        max_user_connections: 0,
        server_idle_timeout: secs(600),
        server_lifetime: secs(3600),
        query_wait_timeout: secs(120),
        query_timeout: Duration::ZERO,
        idle_transaction_timeout: Duration::ZERO,
        client_idle_timeout: Duration::ZERO,
        server_check_delay: secs(30),
        server_check_query: String::new(),
        max_prepared_statements: 200,
        pin_session_state: true,
        read_only_functions: Vec::new(),
    }
}

/// Every `[pool]` key set away from its default, and database `app` overriding
/// everything a database may.
const LEVELS: &str = r#"
[pool]
pool_mode = "session"
default_pool_size = 10
min_pool_size = 1
reserve_pool_size = 2
reserve_pool_timeout = "1s"
max_db_connections = 50
max_user_connections = 40
server_idle_timeout = "1m"
server_lifetime = "2m"
query_wait_timeout = "3m"
query_timeout = "4m"
idle_transaction_timeout = "5m"
client_idle_timeout = "6m"
server_check_delay = "7s"
server_check_query = "SELECT 1"
max_prepared_statements = 50
pin_session_state = false

[databases.app]
host = "h"
pool_mode = "statement"
pool_size = 8
min_pool_size = 3
reserve_pool_size = 4
max_db_connections = 30
server_lifetime = "20m"
pin_session_state = true

[databases.plain]
host = "h"

[users.bob]
pool_mode = "transaction"
pool_size = 5
reserve_pool_size = 1
max_user_connections = 9
query_timeout = "10s"
idle_transaction_timeout = "11s"
client_idle_timeout = "12s"
"#;

/// The `[pool]` values of [`LEVELS`], as a user with no overrides sees them on a
/// database with none.
fn pool_level() -> PoolSettings {
    PoolSettings {
        pool_mode: PoolMode::Session,
        pool_size: 10,
        min_pool_size: 1,
        reserve_pool_size: 2,
        reserve_pool_timeout: secs(1),
        max_db_connections: 50,
        max_user_connections: 40,
        server_idle_timeout: secs(60),
        server_lifetime: secs(120),
        query_wait_timeout: secs(180),
        query_timeout: secs(240),
        idle_transaction_timeout: secs(300),
        client_idle_timeout: secs(360),
        server_check_delay: secs(7),
        server_check_query: "SELECT 1".to_owned(),
        max_prepared_statements: 50,
        pin_session_state: false,
        read_only_functions: Vec::new(),
    }
}

#[test]
fn nothing_set_gives_the_defaults() {
    let config = parse(MINIMAL);
    assert_eq!(config.pool_settings("app", "anyone"), Some(defaults()));
}

#[test]
fn unknown_database_has_no_settings() {
    assert_eq!(parse(MINIMAL).pool_settings("nope", "anyone"), None);
}

#[test]
fn pool_level_applies_without_overrides() {
    let config = parse(LEVELS);
    assert_eq!(config.pool_settings("plain", "alice"), Some(pool_level()));
}

#[test]
fn database_overrides_beat_the_pool_level() {
    let config = parse(LEVELS);
    let expected = PoolSettings {
        pool_mode: PoolMode::Statement,
        pool_size: 8,
        min_pool_size: 3,
        reserve_pool_size: 4,
        max_db_connections: 30,
        server_lifetime: secs(1200),
        pin_session_state: true,
        ..pool_level()
    };
    assert_eq!(config.pool_settings("app", "alice"), Some(expected));
}

#[test]
fn user_overrides_beat_database_and_pool_level() {
    let config = parse(LEVELS);
    let user_level = PoolSettings {
        pool_mode: PoolMode::Transaction,
        pool_size: 5,
        reserve_pool_size: 1,
        max_user_connections: 9,
        query_timeout: secs(10),
        idle_transaction_timeout: secs(11),
        client_idle_timeout: secs(12),
        ..pool_level()
    };
    let on_app = PoolSettings {
        min_pool_size: 3,
        max_db_connections: 30,
        server_lifetime: secs(1200),
        pin_session_state: true,
        ..user_level.clone()
    };
    assert_eq!(config.pool_settings("app", "bob"), Some(on_app));
    assert_eq!(config.pool_settings("plain", "bob"), Some(user_level));
}

#[test]
fn a_users_smaller_pool_caps_min_pool_size() {
    let config = parse(&format!(
        "[pool]\nmin_pool_size = 10\n{MINIMAL}[users.bob]\npool_size = 4\n"
    ));
    let bob = config.pool_settings("app", "bob");
    assert_eq!(bob.map(|s| (s.pool_size, s.min_pool_size)), Some((4, 4)));
    let other = config.pool_settings("app", "alice");
    assert_eq!(
        other.map(|s| (s.pool_size, s.min_pool_size)),
        Some((20, 10))
    );
}

#[test]
fn a_forced_user_shapes_the_pool_and_the_client_keeps_its_timeouts() {
    let config = parse(
        r#"
[databases.shared]
host = "h"
user = "owner"
pool_size = 8

[users.owner]
pool_mode = "session"
pool_size = 3
reserve_pool_size = 2
max_user_connections = 7
query_timeout = "1h"

[users.bob]
pool_mode = "statement"
pool_size = 1
query_timeout = "9s"
"#,
    );
    let expected = PoolSettings {
        pool_mode: PoolMode::Session,
        pool_size: 3,
        reserve_pool_size: 2,
        max_user_connections: 7,
        query_timeout: secs(9),
        ..defaults()
    };
    assert_eq!(config.pool_settings("shared", "bob"), Some(expected));
    let stranger = config.pool_settings("shared", "alice");
    assert_eq!(stranger.map(|s| s.query_timeout), Some(Duration::ZERO));
}

//! What pgweir logs (issue 6): connections and disconnections with the client's address,
//! database and user (each switchable), a stats line every `stats_period`, and one JSON
//! object per line with `log_format = "json"`. The error that ends a client's connection
//! (a pool wait timeout, a failed login) is logged with its address, database and user;
//! a RELOAD that turns disconnection lines off applies to clients already connected.

use crate::common;

use std::time::Duration;

use common::{sqlstate, within, Pgweir, SCRAM_USER, TEST_DB};

async fn until_logged(pgweir: &Pgweir, needle: &str) -> String {
    within(10, needle, async {
        loop {
            let log = pgweir.log();
            if log.contains(needle) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn json_lines_with_connections_disconnections_and_stats() {
    let pgweir = Pgweir::builder()
        .general("log_format = \"json\"")
        .general("stats_period = \"1s\"")
        .start();
    let client = pgweir.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    until_logged(&pgweir, "client disconnected").await;
    let log = until_logged(&pgweir, "xacts_per_sec").await;
    let mut kinds = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON object: {line}"
        );
        for (message, kind) in [
            ("client logged in", "connect"),
            ("client disconnected", "disconnect"),
            ("\"message\":\"stats\"", "stats"),
        ] {
            if line.contains(message) {
                assert!(line.contains(TEST_DB), "{line}");
                assert!(line.contains(SCRAM_USER.name), "{line}");
                kinds.push(kind);
            }
        }
    }
    for kind in ["connect", "disconnect", "stats"] {
        assert!(kinds.contains(&kind), "no {kind} line in:\n{log}");
    }
}

#[tokio::test]
async fn connection_logging_can_be_switched_off() {
    let pgweir = Pgweir::builder()
        .general("log_connections = false")
        .general("log_disconnections = false")
        .log_level("info")
        .start();
    let client = pgweir.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = pgweir.log();
    assert!(!log.contains("client logged in"), "{log}");
    assert!(!log.contains("client disconnected"), "{log}");
}

/// The log lines that contain `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test]
async fn a_pooler_error_is_logged_with_the_clients_address_database_and_user() {
    let pgweir = Pgweir::builder()
        .general("log_format = \"json\"")
        .pool_size(1)
        .pool("query_wait_timeout = \"1s\"")
        .start();
    let holder = pgweir.connect().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let waiter = pgweir.connect().await;
    let err = waiter
        .batch_execute("SELECT 1")
        .await
        .expect_err("query_wait_timeout");
    assert_eq!(
        sqlstate(&err).map(|s| s.code().to_owned()).as_deref(),
        Some("57014")
    );
    let wrong = pgweir
        .try_connect(SCRAM_USER.name, "not-the-password", TEST_DB)
        .await;
    assert!(wrong.is_err());
    let log = until_logged(&pgweir, "password authentication failed").await;
    for error in ["query_wait_timeout", "password authentication failed"] {
        let lines: Vec<&str> = lines_with(&log, "closing client connection")
            .into_iter()
            .filter(|l| l.contains(error))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {error} in:\n{log}");
        let line = lines[0];
        assert!(line.contains("\"client\":\"127.0.0.1:"), "{line}");
        assert!(
            line.contains(&format!("\"database\":\"{TEST_DB}\"")),
            "{line}"
        );
        assert!(
            line.contains(&format!("\"user\":\"{}\"", SCRAM_USER.name)),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_reload_that_turns_disconnection_lines_off_applies_to_connected_clients() {
    let pgweir = Pgweir::start();
    let client = pgweir.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    let text = std::fs::read_to_string(&pgweir.config_path).unwrap();
    let text = text.replace(
        "log_level = \"info\"",
        "log_level = \"info\"\nlog_disconnections = false",
    );
    std::fs::write(&pgweir.config_path, text).unwrap();
    pgweir.signal("HUP");
    until_logged(&pgweir, "configuration reloaded").await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = pgweir.log();
    assert!(log.contains("client logged in"), "{log}");
    assert!(!log.contains("client disconnected"), "{log}");
}

//! What pgweir logs (issue 6): connections and disconnections with the client's address,
//! database and user (each switchable), a stats line every `stats_period`, and one JSON
//! object per line with `log_format = "json"`.

mod common;

use std::time::Duration;

use common::{within, Pgweir, SCRAM_USER, TEST_DB};

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

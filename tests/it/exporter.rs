//! The pgbouncer_exporters against pgweir's console (issue 16), replicas included.
//!
//! The Prometheus community's Go exporter (read from its source: collector.go up to
//! v0.12) sends `SHOW STATS` as a ping, then `SHOW VERSION;`, `SHOW LISTS;`, `SHOW CONFIG;`,
//! `SHOW databases;`, `SHOW pools;` and `SHOW stats;` or `SHOW stats_totals;` over the simple
//! protocol, reads columns by exact name, turns every row into series keyed by its label
//! columns, and fails the whole scrape on a duplicate. Each result is held to that here.
//! Debian bookworm's prometheus-pgbouncer-exporter (Python, 1.7) is run for real: it logs in
//! as `pgbouncer` over the Unix socket, as it does by default.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::Client;

use common::console::{console, show, with_console, Shown, ADMIN};
use common::routing::until_reads_on_replica;
use common::{free_port, within, TEST_DB};

/// Where `name` is among a result's columns, if it is.
fn column(shown: &Shown, name: &str) -> Option<usize> {
    shown.columns.iter().position(|n| n == name)
}

/// Each row's values of `labels`, NULL read as "" as the exporter reads it.
fn keys(shown: &Shown, labels: &[&str]) -> Vec<Vec<String>> {
    let at: Vec<Option<usize>> = labels.iter().map(|l| column(shown, l)).collect();
    let value = |row: &Vec<Option<String>>, i: &Option<usize>| {
        i.and_then(|i| row[i].clone()).unwrap_or_default()
    };
    shown
        .rows
        .iter()
        .map(|r| at.iter().map(|i| value(r, i)).collect())
        .collect()
}

/// The Go exporter's metric columns must hold numbers (ParseFloat), its label tuple must be
/// unique, and no column may come twice.
fn holds(answer: &Shown, what: &str, labels: &[&str], metrics: &[&str]) {
    let names: HashSet<_> = answer.columns.iter().collect();
    assert_eq!(names.len(), answer.columns.len(), "{what}: a column twice");
    for m in metrics {
        let i = column(answer, m).unwrap_or_else(|| panic!("{what}: no column {m}"));
        for row in &answer.rows {
            let v = row[i]
                .as_deref()
                .unwrap_or_else(|| panic!("{what}.{m}: NULL"));
            assert!(
                v.parse::<f64>().is_ok(),
                "{what}.{m}: {v:?} is not a number"
            );
        }
    }
    let keys = keys(answer, labels);
    let unique: HashSet<_> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "{what}: rows share {labels:?}: {keys:?}"
    );
}

async fn console_with_a_replica() -> (common::Pgweir, Client) {
    let replica = common::routing::replica().await;
    let pgweir = common::routing::auto_routing(&[replica])
        .user(ADMIN.0, ADMIN.1)
        .general(&format!("admin_users = [\"{}\"]", ADMIN.0))
        .start();
    let app = pgweir.connect().await;
    until_reads_on_replica(&app, "a read on the replica").await;
    let admin = console(&pgweir, ADMIN, "pgbouncer").await;
    (pgweir, admin)
}

#[tokio::test]
async fn every_show_meets_the_go_exporter_s_expectations() {
    let (_pgweir, admin) = console_with_a_replica().await;
    show(&admin, "SHOW STATS").await;
    within(
        10,
        "an empty query (lib/pq's ping)",
        admin.simple_query(";"),
    )
    .await
    .expect("an empty query");

    let version = show(&admin, "SHOW VERSION;").await;
    assert_eq!(version.columns.len(), 1);
    assert_eq!(version.columns, ["version"]);
    assert!(version.rows.iter().all(|r| r[0].is_some()));

    let lists = show(&admin, "SHOW LISTS;").await;
    assert_eq!(lists.columns.len(), 2);
    for row in &lists.rows {
        let items = row[1].as_deref().unwrap_or_default();
        assert!(items.parse::<f64>().is_ok(), "LISTS {row:?}");
    }
    let names: HashSet<_> = lists.rows.iter().filter_map(|r| r[0].clone()).collect();
    for list in [
        "databases",
        "users",
        "pools",
        "free_clients",
        "used_clients",
        "dns_pending",
    ] {
        assert!(names.contains(list), "SHOW LISTS has {list}");
    }

    let config = show(&admin, "SHOW CONFIG;").await;
    assert!(matches!(config.columns.len(), 3 | 4));
    let value = |key: &str| {
        let row = config.rows.iter().find(|r| r[0].as_deref() == Some(key));
        row.and_then(|r| r[1].clone())
            .unwrap_or_else(|| panic!("SHOW CONFIG has {key}"))
    };
    for key in ["max_client_conn", "max_user_connections"] {
        assert!(value(key).parse::<f64>().is_ok(), "{key}: {}", value(key));
    }
    assert!(
        value("auth_type").parse::<f64>().is_err(),
        "auth_type is a word"
    );
    assert!(config
        .rows
        .iter()
        .all(|r| r[config.columns.len() - 1].is_some()));

    let databases = show(&admin, "SHOW databases;").await;
    let db_labels = [
        "name",
        "host",
        "port",
        "database",
        "force_user",
        "pool_mode",
    ];
    let db_metrics = [
        "pool_size",
        "reserve_pool",
        "max_connections",
        "current_connections",
        "paused",
        "disabled",
    ];
    holds(&databases, "DATABASES", &db_labels, &db_metrics);
    assert!(
        column(&databases, "reserve_pool_size").is_none(),
        "one reserve column"
    );
    assert_eq!(
        keys(&databases, &["name"]).len(),
        2,
        "the primary and the replica"
    );

    let pools = show(&admin, "SHOW pools;").await;
    let pool_metrics = [
        "cl_active",
        "cl_waiting",
        "cl_active_cancel_req",
        "cl_waiting_cancel_req",
        "sv_active",
        "sv_active_cancel",
        "sv_being_canceled",
        "sv_idle",
        "sv_used",
        "sv_tested",
        "sv_login",
        "maxwait",
    ];
    holds(&pools, "POOLS", &["database", "user"], &pool_metrics);
    let dbs: HashSet<_> = keys(&pools, &["database"]).into_iter().flatten().collect();
    assert!(dbs.contains(&format!("{TEST_DB}/replica0")), "{dbs:?}");

    let stats = show(&admin, "SHOW stats;").await;
    let old_stats = [
        "total_query_count",
        "total_query_time",
        "total_received",
        "total_requests",
        "total_sent",
        "total_wait_time",
        "total_xact_count",
        "total_xact_time",
    ];
    holds(&stats, "STATS", &["database"], &old_stats);
    let totals = show(&admin, "SHOW stats_totals;").await;
    let new_stats = [
        "query_count",
        "query_time",
        "bytes_received",
        "bytes_sent",
        "requests",
        "wait_time",
        "xact_count",
        "xact_time",
        "client_parse_count",
        "server_parse_count",
        "bind_count",
        "server_assignment_count",
    ];
    let present: Vec<_> = new_stats
        .into_iter()
        .filter(|c| column(&totals, c).is_some())
        .collect();
    holds(&totals, "STATS_TOTALS", &["database"], &present);
}

/// A GET of /metrics from the exporter on `port`, once it answers.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
            s.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            let _ = s.read_to_string(&mut response).await;
            if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
                return response;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the exporter never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn debian_s_exporter_runs_against_pgweir() {
    let exporter = "/usr/bin/prometheus-pgbouncer-exporter";
    assert!(
        std::path::Path::new(exporter).exists(),
        "{exporter} is missing: apt-get install prometheus-pgbouncer-exporter (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let pgweir = with_console()
        .general(&format!("unix_socket_dir = \"{}\"", dir.path().display()))
        .start();
    let client = pgweir.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(exporter)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--pgbouncer-host")
        .arg(dir.path())
        .args(["--pgbouncer-port", &pgweir.port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the exporter");
    let scraped = tokio::time::timeout(Duration::from_secs(30), scrape(port)).await;
    let _ = child.kill();
    let out = child.wait_with_output().expect("the exporter's output");
    let log = String::from_utf8_lossy(&out.stderr);
    let text = scraped.unwrap_or_else(|_| panic!("no scrape; the exporter said:\n{log}"));
    let pair = format!("database=\"{TEST_DB}\"");
    for metric in [
        "pgbouncer_requests_total",
        "pgbouncer_active_clients",
        "pgbouncer_pool_size",
        "pgbouncer_reserve_pool",
        "pgbouncer_used_clients",
    ] {
        let found = text
            .lines()
            .any(|l| l.starts_with(metric) && (l.contains(&pair) || !l.contains('{')));
        assert!(found, "{metric} in:\n{text}\nexporter log:\n{log}");
    }
}

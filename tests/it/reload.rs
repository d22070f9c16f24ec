//! Reloading the configuration (issue 6): SIGHUP re-reads the TOML; a pool size change
//! applies under pgbench load without a failed transaction; an invalid file is refused
//! whole and the running configuration stays; a removed database drains (its clients
//! finish, new ones are refused); settings that need a restart are reported. /metrics
//! follows: a removed database's gauges go to zero once its last client has left, and a
//! replaced pool and its successor show one value per series, the successor's settings.

use crate::common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{
    cluster, connect, free_port, pgbench, report_number, run_tool, sqlstate, within, Pgweir,
    TEST_DB,
};

/// Rewrites pgweir's config file with `edit` and sends SIGHUP.
fn reload(pgweir: &Pgweir, edit: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(&pgweir.config_path).expect("read pgweir.toml");
    std::fs::write(&pgweir.config_path, edit(&text)).expect("write pgweir.toml");
    pgweir.signal("HUP");
}

async fn until_logged(pgweir: &Pgweir, needle: &str) {
    within(10, needle, async {
        while !pgweir.log().contains(needle) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The configured pool size of `db` as /metrics shows it.
async fn pool_size(port: u16, db: &str) -> Option<u64> {
    let text = metrics(port).await;
    let line = text.lines().find(|l| {
        l.starts_with("pgweir_pool_size{") && l.contains(&format!("database=\"{db}\""))
    })?;
    line.rsplit(' ').next()?.parse().ok()
}

/// The config text without the `[databases.NAME]` section.
fn without_database(t: &str, name: &str) -> String {
    let section = format!("\n[databases.{name}]");
    let start = t.find(&section).expect("the section");
    let end = t[start + 1..]
        .find("\n[")
        .map_or(t.len(), |e| start + 1 + e);
    format!("{}{}", &t[..start], &t[end..])
}

/// The sum of every sample of `name` labelled with `db`.
fn total(text: &str, name: &str, db: &str) -> f64 {
    let label = format!("database=\"{db}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_resizes_pools_under_load_without_a_failed_transaction() {
    let db = common::pgbench_database("reload").await;
    let metrics_port = free_port();
    let pgweir = Pgweir::builder()
        .general(&format!("metrics_addr = \"127.0.0.1:{metrics_port}\""))
        .database(&db)
        .pool_size(2)
        .start();
    let args = ["-n", "-S", "-c", "8", "-j", "2", "-T", "4"];
    let bench = tokio::spawn(run_tool(pgbench(pgweir.port, &db, &args)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pool_size(metrics_port, &db).await, Some(2));
    reload(&pgweir, |t| {
        t.replace("default_pool_size = 2", "default_pool_size = 5")
    });
    until_logged(&pgweir, "configuration reloaded").await;
    let out = within(60, "pgbench", bench).await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pgbench: {report}");
    assert_eq!(
        report_number(&report, "number of failed transactions:"),
        Some(0),
        "{report}"
    );
    assert_eq!(pool_size(metrics_port, &db).await, Some(5));
    // The bigger pool is used: Postgres saw more than the old two servers at once.
    let admin = cluster().admin().await;
    let peak = cluster().db_backend_count(&admin, &db).await;
    assert!(peak > 2, "{peak} backends after the resize");
}

#[tokio::test]
async fn an_invalid_file_is_refused_whole_and_the_old_configuration_stays() {
    let pgweir = Pgweir::builder().pool_size(3).start();
    reload(&pgweir, |t| {
        t.replace(
            "default_pool_size = 3",
            "default_pool_size = 7\nno_such_key = 1",
        )
    });
    until_logged(&pgweir, "reload refused").await;
    assert!(pgweir.log().contains("no_such_key"), "the problem is named");
    let client = pgweir.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    reload(&pgweir, |t| {
        t.replace("no_such_key = 1\n", "")
            .replace("workers = 2", "workers = 3")
    });
    until_logged(
        &pgweir,
        "workers changed; it takes effect at the next restart",
    )
    .await;
    client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn a_removed_database_drains() {
    let other = cluster().create_database("drained");
    let pgweir = Pgweir::builder().database(&other).start();
    let staying = pgweir.connect_as(&common::SCRAM_USER, &other).await;
    staying.batch_execute("BEGIN; SELECT 1").await.unwrap();
    reload(&pgweir, |t| without_database(t, &other));
    until_logged(&pgweir, "configuration reloaded").await;
    staying.batch_execute("SELECT 2; COMMIT").await.unwrap();
    staying
        .simple_query("SELECT 3")
        .await
        .expect("its clients finish");
    let err = connect(&pgweir.config(common::SCRAM_USER.name, common::SCRAM_USER.password, &other))
        .await
        .expect_err("new clients are refused");
    assert_eq!(
        sqlstate(&err).map(|s| s.code().to_owned()).as_deref(),
        Some("3D000"),
        "{err:?}"
    );
    pgweir
        .connect_as(&common::SCRAM_USER, TEST_DB)
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_changed_server_address_applies_to_new_clients() {
    let pgweir = Pgweir::start();
    let staying = pgweir.connect().await;
    staying.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let port = cluster().port;
    let dead = free_port();
    reload(&pgweir, |t| {
        t.replace(&format!("port = {port}"), &format!("port = {dead}"))
    });
    until_logged(&pgweir, "servers or routing changed").await;
    staying
        .batch_execute("SELECT 2; COMMIT")
        .await
        .expect("the old pool keeps its server");
    // The new pool has no server at the new address: logging in already fails.
    let moved = connect(&pgweir.config(
        common::SCRAM_USER.name,
        common::SCRAM_USER.password,
        TEST_DB,
    ))
    .await;
    let err = moved.expect_err("the new address has no server");
    assert!(sqlstate(&err).is_some(), "{err:?}");
}

#[tokio::test]
async fn a_removed_databases_gauges_go_to_zero_once_its_last_client_leaves() {
    let other = cluster().create_database("gauges_gone");
    let port = free_port();
    let pgweir = Pgweir::builder()
        .general(&format!("metrics_addr = \"127.0.0.1:{port}\""))
        .database(&other)
        .start();
    let staying = pgweir.connect_as(&common::SCRAM_USER, &other).await;
    staying.batch_execute("SELECT 1").await.unwrap();
    reload(&pgweir, |t| without_database(t, &other));
    until_logged(&pgweir, "configuration reloaded").await;
    staying.batch_execute("SELECT 2").await.unwrap();
    let text = metrics(port).await;
    assert_eq!(
        pool_size(port, &other).await,
        Some(2),
        "served while it has a client"
    );
    assert!(total(&text, "pgweir_servers", &other) >= 1.0, "{text}");
    assert_eq!(total(&text, "pgweir_clients", &other), 1.0, "{text}");
    drop(staying);
    within(10, "the gauges go to zero", async {
        loop {
            let text = metrics(port).await;
            let gauges = ["pgweir_pool_size", "pgweir_servers", "pgweir_clients"];
            if gauges.iter().all(|g| total(&text, g, &other) == 0.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_replaced_pool_and_its_successor_show_the_successors_size() {
    let port = free_port();
    let pgweir = Pgweir::builder()
        .general(&format!("metrics_addr = \"127.0.0.1:{port}\""))
        .start();
    let staying = pgweir.connect().await;
    staying.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let pg_port = cluster().port;
    let dead = free_port();
    reload(&pgweir, |t| {
        t.replace(&format!("port = {pg_port}"), &format!("port = {dead}"))
            .replace("default_pool_size = 2", "default_pool_size = 5")
    });
    until_logged(&pgweir, "servers or routing changed").await;
    // A new client makes the successor (and finds no server at the new address).
    let config = pgweir.config(
        common::SCRAM_USER.name,
        common::SCRAM_USER.password,
        TEST_DB,
    );
    assert!(connect(&config).await.is_err());
    for _ in 0..3 {
        let text = metrics(port).await;
        let sizes: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("pgweir_pool_size{") && l.contains(TEST_DB))
            .collect();
        assert_eq!(sizes.len(), 1, "{sizes:?}");
        assert!(sizes[0].ends_with(" 5"), "{sizes:?}");
        let servers = total(&text, "pgweir_servers", TEST_DB);
        assert!(servers >= 1.0, "the old pool's server: {servers}");
    }
    staying.batch_execute("COMMIT").await.unwrap();
}

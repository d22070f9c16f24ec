//! The admin console's control commands (issue 6): RELOAD under pgbench load applies a pool
//! size change without a failed transaction and SHOW DATABASES / SHOW POOLS show the new
//! size; RELOAD of a broken file is refused with the problem named; SHUTDOWN drains like
//! SIGTERM; SUSPEND, which pgweir has no use for, answers 0A000.

use crate::common;

use std::time::{Duration, Instant};

use common::console::{console, show, with_console, ADMIN};
use common::{expect_sqlstate, pgbench, report_number, run_tool, within, Pgweir};
use tokio_postgres::error::SqlState;

fn edit_config(pgweir: &Pgweir, edit: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(&pgweir.config_path).expect("read pgweir.toml");
    std::fs::write(&pgweir.config_path, edit(&text)).expect("write pgweir.toml");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_resizes_pools_under_load_and_show_says_so() {
    let db = common::pgbench_database("console_reload").await;
    let pgweir = with_console().database(&db).pool_size(2).start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let before = show(&admin, "SHOW DATABASES").await;
    assert_eq!(before.get("name", &db, "pool_size").as_deref(), Some("2"));

    let args = ["-n", "-S", "-c", "8", "-j", "2", "-T", "4"];
    let bench = tokio::spawn(run_tool(pgbench(pgweir.port, &db, &args)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    edit_config(&pgweir, |t| {
        t.replace("default_pool_size = 2", "default_pool_size = 6")
    });
    admin.simple_query("RELOAD").await.expect("RELOAD");
    let out = within(60, "pgbench", bench).await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pgbench: {report}");
    let failed = report_number(&report, "number of failed transactions:");
    assert_eq!(failed, Some(0), "{report}");

    let after = show(&admin, "SHOW DATABASES").await;
    assert_eq!(after.get("name", &db, "pool_size").as_deref(), Some("6"));
    let pools = show(&admin, "SHOW POOLS").await;
    let rows = pools.rows_where("database", &db);
    assert!(!rows.is_empty(), "a SHOW POOLS row for {db}");
    let config = show(&admin, "SHOW CONFIG").await;
    assert_eq!(
        config.get("key", "default_pool_size", "value").as_deref(),
        Some("6")
    );
}

#[tokio::test]
async fn reload_of_a_broken_file_is_refused_with_the_problem() {
    let pgweir = with_console().pool_size(2).start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    edit_config(&pgweir, |t| format!("{t}\n[pgweir_typo]\nx = 1\n"));
    let err = admin
        .simple_query("RELOAD")
        .await
        .expect_err("a broken file");
    let db_error = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db_error.code().code(), "F0000", "{err:?}");
    assert!(db_error.message().contains("pgweir_typo"), "{err:?}");
    let config = show(&admin, "SHOW CONFIG").await;
    assert_eq!(
        config.get("key", "default_pool_size", "value").as_deref(),
        Some("2")
    );
}

#[tokio::test]
async fn shutdown_drains_like_sigterm_and_suspend_is_refused() {
    let mut pgweir = with_console().start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let code = expect_sqlstate(admin.simple_query("SUSPEND").await, "SUSPEND");
    assert_eq!(code, SqlState::FEATURE_NOT_SUPPORTED);
    let client = pgweir.connect().await;
    client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    admin
        .simple_query("SHUTDOWN WAIT_FOR_CLIENTS")
        .await
        .expect("SHUTDOWN WAIT_FOR_CLIENTS");
    let asked = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(pgweir.exited().is_none(), "waits for the open transaction");
    client.batch_execute("COMMIT").await.unwrap();
    within(10, "pgweir exits", async {
        while pgweir.exited().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(asked.elapsed() < Duration::from_secs(10));
}

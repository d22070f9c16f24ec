//! Settings that are not just `[pool]` defaults in transaction mode: per-database and
//! per-user overrides taking effect for their own pools only, and
//! idle_transaction_timeout in session mode, where a client holds its server for its
//! whole life.

use crate::common;

use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use common::wire::Wire;
use common::{backend_pid, cluster, within, Pgweir, TestUser, SCRAM_USER, TEST_DB};

/// A `[databases.NAME]` table for a cluster database, with extra keys.
fn database_table(name: &str, keys: &str) -> String {
    format!(
        "[databases.{name}]\nhost = \"127.0.0.1\"\nport = {}\n{keys}\n",
        cluster().port
    )
}

#[tokio::test]
async fn database_overrides_apply_to_that_database_only() {
    let special = cluster().create_database("override");
    let plain = cluster().create_database("override");
    let pgweir = Pgweir::builder()
        .pool_size(4)
        .database(&plain)
        .extra(&database_table(
            &special,
            "pool_size = 1\nmin_pool_size = 1",
        ))
        .start();
    let admin = cluster().admin().await;
    let user = SCRAM_USER.name;

    // pool_size = 1 for `special`: a second client waits for the first one's server.
    let holder = pgweir.connect_as(&SCRAM_USER, &special).await;
    holder.batch_execute("BEGIN").await.unwrap();
    let held = backend_pid(&holder).await;
    let second = pgweir.connect_as(&SCRAM_USER, &special).await;
    let query = tokio::spawn(async move { (backend_pid(&second).await, second) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !query.is_finished(),
        "the database's pool_size = 1 was not applied"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let (pid, _second) = within(5, "the second client after the commit", query)
        .await
        .unwrap();
    assert_eq!(pid, held);

    // The default pool size (4) still holds for the other database.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let client = pgweir.connect_as(&SCRAM_USER, &plain).await;
        client.batch_execute("BEGIN").await.unwrap();
        within(
            5,
            "a transaction in the other database",
            backend_pid(&client),
        )
        .await;
        clients.push(client);
    }
    assert_eq!(cluster().backend_count(&admin, user, &plain).await, 3);
    for client in &clients {
        client.batch_execute("COMMIT").await.unwrap();
    }
    assert_eq!(
        cluster().backend_count(&admin, user, &special).await,
        1,
        "min_pool_size = 1 keeps the database's one server"
    );
}

/// A role of its own, so a `[users.NAME]` table can be written with extra keys.
fn create_user(name: &'static str, password: &'static str) -> TestUser {
    cluster().psql(
        "postgres",
        &format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
    );
    TestUser {
        name,
        password,
        hba_method: "scram-sha-256",
    }
}

#[tokio::test]
async fn user_query_timeout_overrides_the_pool_default() {
    let hasty = create_user("pgweir_hasty", "hasty_pw");
    let pgweir = Pgweir::builder()
        .extra(&format!(
            "[users.{}]\npassword = \"{}\"\nquery_timeout = \"300ms\"\n",
            hasty.name, hasty.password
        ))
        .start();
    let patient = pgweir.connect().await;
    let limited = pgweir.connect_as(&hasty, TEST_DB).await;

    let sleep = "SELECT pg_sleep(0.6)";
    within(
        5,
        "a user without query_timeout",
        patient.simple_query(sleep),
    )
    .await
    .expect("query_timeout is off for users without the override");
    let err = within(5, "a user with query_timeout", limited.simple_query(sleep))
        .await
        .expect_err("the user's query_timeout = 300ms must stop pg_sleep(0.6)");
    let db = err.as_db_error().expect("an error from pgweir");
    assert_eq!(db.code().code(), "57014", "{}", db.message());
    assert!(
        db.message().starts_with("query_timeout"),
        "{}",
        db.message()
    );
}

/// Reads the FATAL a client is dropped with and returns (sqlstate, message).
async fn fatal_within(wire: &mut Wire, secs: u64) -> (String, String) {
    let msg = tokio::time::timeout(Duration::from_secs(secs), wire.read_msg())
        .await
        .unwrap_or_else(|_| panic!("pgweir did not drop the client within {secs}s"))
        .expect("pgweir closed the connection without a FATAL");
    assert_eq!(msg.tag, b'E', "expected an ErrorResponse, got {msg:?}");
    assert_eq!(msg.severity().as_deref(), Some("FATAL"));
    (msg.sqlstate().unwrap(), msg.message().unwrap())
}

#[tokio::test]
async fn idle_transaction_timeout_in_session_mode_frees_the_server() {
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .pool_mode("session")
        .pool_size(1)
        .pool("idle_transaction_timeout = \"300ms\"")
        .start();
    let (mut stuck, _) = Wire::startup(pgweir.port, SCRAM_USER.name, TEST_DB).await;
    stuck.query("BEGIN; SET LOCAL work_mem = '7MB'; SELECT 1");
    stuck.send().await;
    stuck.until_ready().await;
    let (code, message) = fatal_within(&mut stuck, 3).await;
    assert_eq!(code, "25P03", "{message}");
    assert!(message.starts_with("idle_transaction_timeout"), "{message}");

    // Session mode with one server: the next client gets it only if it was freed.
    let next = within(5, "the next session", pgweir.connect()).await;
    let rows = within(5, "its first query", next.simple_query("SHOW work_mem"))
        .await
        .unwrap();
    let work_mem = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(
        work_mem.as_deref(),
        Some("4MB"),
        "the abandoned transaction's settings leaked"
    );
}

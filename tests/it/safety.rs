//! Failures must stay with the client they happened to.
//!
//! A client that vanishes inside a transaction (idle, mid-query or mid-COPY) must
//! not hand its open transaction to the next client of the pool; a server killed
//! under one client gives that client an error while the others carry on.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use common::{cluster, within, Pgweir, SCRAM_USER, TEST_DB};

/// A client whose connection task we can abort: that drops the socket without a
/// Terminate message, as if the client process had been killed.
async fn killable_client(pgweir: &Pgweir, db: &str) -> (Client, JoinHandle<()>) {
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, db);
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// Kills the client's connection and gives the runtime a moment to drop the socket.
async fn kill(task: JoinHandle<()>) {
    task.abort();
    let _ = task.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The next client on the pool must get a clean server: no open transaction and
/// none of the dead client's uncommitted rows. Checked through pgweir and directly.
async fn assert_next_client_is_clean(pgweir: &Pgweir, db: &str, table: &str) {
    let next = within(
        15,
        "next client after a kill",
        pgweir.connect_as(&SCRAM_USER, db),
    )
    .await;
    let row = within(
        15,
        "first query of the next client",
        next.query_one(
            &format!("SELECT count(*), pg_current_xact_id_if_assigned()::text FROM {table}"),
            &[],
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        0,
        "the next client sees the dead client's uncommitted row"
    );
    assert_eq!(
        row.get::<_, Option<String>>(1),
        None,
        "the next client inherited an open transaction"
    );
    let admin = cluster().admin_on(db).await;
    let direct: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(direct, 0, "the dead client's row was committed");
}

async fn fresh_table(db: &str, table: &str) {
    let admin = common::connect(&common::direct_config(cluster().port, &SCRAM_USER, db))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (x int)"
        ))
        .await
        .unwrap();
}

async fn killed_between_statements(pool_mode: &str, table: &str) {
    fresh_table(TEST_DB, table).await;
    let pgweir = Pgweir::builder().pool_mode(pool_mode).pool_size(1).start();
    let (client, task) = killable_client(&pgweir, TEST_DB).await;
    client
        .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    kill(task).await;
    drop(client);
    assert_next_client_is_clean(&pgweir, TEST_DB, table).await;
}

#[tokio::test]
async fn client_killed_mid_transaction_transaction_mode() {
    killed_between_statements("transaction", "killed_tx_mode").await;
}

#[tokio::test]
async fn client_killed_mid_transaction_session_mode() {
    killed_between_statements("session", "killed_session_mode").await;
}

#[tokio::test]
async fn client_killed_while_a_query_is_running() {
    let table = "killed_mid_query";
    fresh_table(TEST_DB, table).await;
    let pgweir = Pgweir::builder().pool_size(1).start();
    let (client, task) = killable_client(&pgweir, TEST_DB).await;
    client
        .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    let running = tokio::spawn(async move {
        let _ = client.simple_query("SELECT pg_sleep(2)").await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(task).await;
    running.abort();
    assert_next_client_is_clean(&pgweir, TEST_DB, table).await;
}

#[tokio::test]
async fn client_killed_mid_copy() {
    let table = "killed_mid_copy";
    fresh_table(TEST_DB, table).await;
    let pgweir = Pgweir::builder().pool_size(1).start();
    let (client, task) = killable_client(&pgweir, TEST_DB).await;
    client.batch_execute("BEGIN").await.unwrap();
    let sink = client
        .copy_in(&format!("COPY {table} FROM STDIN"))
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\n2\n3\n")).await.unwrap();
    kill(task).await;
    assert_next_client_is_clean(&pgweir, TEST_DB, table).await;
}

/// Finds the backend running `query` in `db` and terminates it.
async fn terminate_backend_running(db: &str, query: &str) {
    let admin = cluster().admin().await;
    for _ in 0..100 {
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query = $2",
                &[&db, &query],
            )
            .await
            .unwrap();
        if !rows.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no backend ran {query:?} in {db}");
}

#[tokio::test]
async fn backend_terminated_mid_query_errors_only_its_client() {
    let db = cluster().create_database("terminate");
    let pgweir = Pgweir::builder().database(&db).pool_size(2).start();
    let victim = pgweir.connect_as(&SCRAM_USER, &db).await;
    let bystander = pgweir.connect_as(&SCRAM_USER, &db).await;
    bystander.query_one("SELECT 1", &[]).await.unwrap();

    let sleep_sql = "SELECT pg_sleep(20)";
    let running = tokio::spawn(async move { victim.simple_query(sleep_sql).await.map(|_| ()) });
    terminate_backend_running(&db, sleep_sql).await;
    let result = within(10, "client of the killed backend", running)
        .await
        .unwrap();
    let err = result.expect_err("a query on a terminated backend must fail");
    let code = err.as_db_error().map(|db| db.code().code().to_string());
    eprintln!("client of the terminated backend got: {err:?}");
    match code.as_deref() {
        Some(code) if code.starts_with("08") || code == "57P01" => {}
        _ => panic!("expected SQLSTATE class 08 or 57P01, got {err:?}"),
    }

    let row = within(
        10,
        "bystander after the kill",
        bystander.query_one("SELECT 2", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    let newcomer = within(
        10,
        "new client after the kill",
        pgweir.connect_as(&SCRAM_USER, &db),
    )
    .await;
    let rows = within(10, "new client's queries", async {
        let mut sum = 0;
        for i in 0..5 {
            sum += newcomer
                .query_one("SELECT $1::int4", &[&i])
                .await
                .unwrap()
                .get::<_, i32>(0);
        }
        sum
    })
    .await;
    assert_eq!(rows, 10);
}

#[tokio::test]
async fn client_leaving_politely_mid_transaction() {
    let table = "left_mid_tx";
    fresh_table(TEST_DB, table).await;
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    client
        .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    drop(client); // tokio-postgres sends Terminate
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_next_client_is_clean(&pgweir, TEST_DB, table).await;
}

#[tokio::test]
async fn idle_pooled_server_killed_is_not_handed_out() {
    let db = cluster().create_database("idle_kill");
    let pgweir = Pgweir::builder().database(&db).pool_size(1).start();
    let client = pgweir.connect_as(&SCRAM_USER, &db).await;
    client.query_one("SELECT 1", &[]).await.unwrap();
    let admin = cluster().admin().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
            &[&db, &SCRAM_USER.name],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = within(
        10,
        "query after the idle server died",
        client.query_one("SELECT 2", &[]),
    )
    .await;
    assert_eq!(
        row.expect("an idle server's death must not reach a client")
            .get::<_, i32>(0),
        2
    );
}

#[tokio::test]
async fn client_killed_while_queued_does_not_lose_the_server() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let holder = pgweir.connect().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let (queued, task) = killable_client(&pgweir, TEST_DB).await;
    let waiting = tokio::spawn(async move {
        let _ = queued.simple_query("SELECT 'queued'").await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(task).await;
    waiting.abort();
    holder.batch_execute("COMMIT").await.unwrap();
    for round in 0..3 {
        let next = within(10, "client after a queued one died", pgweir.connect()).await;
        let row = within(
            10,
            "query after a queued one died",
            next.query_one("SELECT $1::int4", &[&round]),
        )
        .await
        .unwrap();
        assert_eq!(row.get::<_, i32>(0), round);
    }
}

#[tokio::test]
async fn client_killed_in_a_failed_transaction() {
    let table = "killed_failed_tx";
    fresh_table(TEST_DB, table).await;
    let pgweir = Pgweir::builder().pool_size(1).start();
    let (client, task) = killable_client(&pgweir, TEST_DB).await;
    client
        .batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    assert!(client.batch_execute("SELECT 1/0").await.is_err());
    kill(task).await;
    assert_next_client_is_clean(&pgweir, TEST_DB, table).await;
}

#[tokio::test]
async fn session_client_killed_while_a_query_is_running() {
    let table = "killed_session_query";
    fresh_table(TEST_DB, table).await;
    let pgweir = Pgweir::builder().pool_mode("session").pool_size(1).start();
    let (client, task) = killable_client(&pgweir, TEST_DB).await;
    client
        .batch_execute(&format!(
            "SET work_mem = '9MB'; BEGIN; INSERT INTO {table} VALUES (1)"
        ))
        .await
        .unwrap();
    let running = tokio::spawn(async move {
        let _ = client.simple_query("SELECT pg_sleep(2)").await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(task).await;
    running.abort();
    assert_next_client_is_clean(&pgweir, TEST_DB, table).await;
    let next = pgweir.connect().await;
    let work_mem: String = next.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(
        work_mem, "4MB",
        "session state survived an abnormal disconnect"
    );
}

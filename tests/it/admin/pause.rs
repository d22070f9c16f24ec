//! The admin console's PAUSE, RESUME, DISABLE, ENABLE, RECONNECT, KILL, KILL_CLIENT and
//! WAIT_CLOSE (issue 6), against a real Postgres: PAUSE under pgbench load stalls its
//! transactions without failing one and leaves Postgres without a backend of the database
//! until RESUME; PAUSE of one database leaves the others alone and waits for a transaction
//! in flight; DISABLE refuses new logins with 57P03; RECONNECT and WAIT_CLOSE move clients
//! to new backends without an error; KILL closes clients with 57P01 and pauses;
//! KILL_CLIENT closes exactly the client it names; SHOW DATABASES, SHOW STATE, `/health`
//! and `pgweir_up` say what is paused. A drain that begins while a database is paused
//! closes the clients held by the pause with 57P01 instead of waiting for RESUME.

use crate::common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use common::console::{console, show, with_console, ADMIN};
use common::{
    backend_pid, cluster, expect_sqlstate, free_port, pgbench, report_number, run_tool, within,
    SCRAM_USER, TEST_DB,
};

/// A client whose connection's end (the FATAL pgweir sends, if any) can be read.
struct Watched {
    client: Client,
    ended: oneshot::Receiver<Result<(), tokio_postgres::Error>>,
}

async fn connect_watched(config: &Config) -> Watched {
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    let (tx, ended) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(connection.await);
    });
    Watched { client, ended }
}

impl Watched {
    /// The error pgweir ended the connection with: its SQLSTATE and message.
    async fn fatal(self) -> (String, String) {
        let ended = within(10, "the connection ends", self.ended).await;
        let err = ended
            .expect("connection task")
            .expect_err("closed with an error");
        let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
        (db.code().code().to_owned(), db.message().to_owned())
    }
}

async fn http(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

fn column(shown: &common::console::Shown, key: &str, value: &str, col: &str) -> String {
    shown.get(key, value, col).unwrap_or_default()
}

/// Transactions pgweir has counted for `db`.
async fn xacts(admin: &Client, db: &str) -> u64 {
    let stats = show(admin, "SHOW STATS").await;
    let n = column(&stats, "database", db, "total_xact_count");
    n.parse().unwrap_or(0)
}

/// Polls Postgres until `db` has `want` backends, at most 5 s; returns the last count.
async fn backends(admin: &Client, db: &str, want: i64) -> i64 {
    for _ in 0..250 {
        let n = cluster().db_backend_count(admin, db).await;
        if n == want {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster().db_backend_count(admin, db).await
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_under_pgbench_stalls_transactions_until_resume_without_failures() {
    let db = common::pgbench_database("console_pause").await;
    let metrics = free_port();
    let pgweir = with_console()
        .database(&db)
        .pool_size(2)
        .general(&format!("metrics_addr = \"127.0.0.1:{metrics}\""))
        .start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let pg = cluster().admin().await;
    assert!(http(metrics, "/health").await.0.contains("200"));

    let args = ["-n", "-S", "-c", "4", "-j", "2", "-T", "8"];
    let bench = tokio::spawn(run_tool(pgbench(pgweir.port, &db, &args)));
    sleep_ms(2000).await;
    within(10, "PAUSE", admin.simple_query("PAUSE"))
        .await
        .expect("PAUSE");

    assert_eq!(
        backends(&pg, &db, 0).await,
        0,
        "no backend of {db} while paused"
    );
    let state = show(&admin, "SHOW STATE").await;
    assert_eq!(column(&state, "key", "paused", "value"), "yes");
    let dbs = show(&admin, "SHOW DATABASES").await;
    assert_eq!(column(&dbs, "name", &db, "paused"), "1");
    assert_eq!(column(&dbs, "name", TEST_DB, "paused"), "1");
    let (status, body) = http(metrics, "/health").await;
    assert!(status.contains("503"), "{status}: {body}");
    let (_, scraped) = http(metrics, "/metrics").await;
    assert!(
        scraped.lines().any(|l| l == "pgweir_up 0"),
        "pgweir_up 0 while paused"
    );
    let mut waiting = 0;
    for _ in 0..100 {
        let pools = show(&admin, "SHOW POOLS").await;
        waiting = column(&pools, "database", &db, "cl_waiting")
            .parse()
            .unwrap();
        if waiting == 4 {
            break;
        }
        sleep_ms(20).await;
    }
    assert_eq!(waiting, 4, "every pgbench client waits for RESUME");

    let stalled = xacts(&admin, &db).await;
    sleep_ms(1000).await;
    assert_eq!(
        xacts(&admin, &db).await,
        stalled,
        "no transaction while paused"
    );
    assert_eq!(cluster().db_backend_count(&pg, &db).await, 0);

    admin.simple_query("RESUME").await.expect("RESUME");
    assert!(http(metrics, "/health").await.0.contains("200"));
    let out = within(60, "pgbench", bench).await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pgbench: {report}");
    let failed = report_number(&report, "number of failed transactions:");
    assert_eq!(failed, Some(0), "{report}");
    assert!(
        xacts(&admin, &db).await > stalled,
        "transactions went on after RESUME"
    );
    let state = show(&admin, "SHOW STATE").await;
    assert_eq!(column(&state, "key", "paused", "value"), "no");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_of_one_database_waits_for_its_transaction_and_spares_the_others() {
    let db = cluster().create_database("console_pause_one");
    let pgweir = with_console().database(&db).pool_size(2).start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let pg = cluster().admin().await;
    let paused = pgweir.connect_as(&SCRAM_USER, &db).await;
    let other = pgweir.connect().await;
    paused.batch_execute("BEGIN; SELECT 1").await.unwrap();

    // PAUSE waits for the transaction in flight.
    let pausing = {
        let admin = console(&pgweir, ADMIN, "pgweir").await;
        let db = db.clone();
        tokio::spawn(async move { admin.simple_query(&format!("PAUSE {db}")).await.map(drop) })
    };
    sleep_ms(300).await;
    assert!(
        !pausing.is_finished(),
        "PAUSE waits for the open transaction"
    );
    paused.batch_execute("COMMIT").await.unwrap();
    within(10, "PAUSE db", pausing)
        .await
        .unwrap()
        .expect("PAUSE db");
    assert_eq!(backends(&pg, &db, 0).await, 0);

    // The paused database's next transaction waits; the other database works.
    let stalled = tokio::spawn(async move {
        let n: i32 = paused.query_one("SELECT 42", &[]).await?.get(0);
        Ok::<_, tokio_postgres::Error>(n)
    });
    other
        .batch_execute("SELECT 1")
        .await
        .expect("other database");
    sleep_ms(300).await;
    assert!(!stalled.is_finished(), "a paused database's query waits");
    let dbs = show(&admin, "SHOW DATABASES").await;
    assert_eq!(column(&dbs, "name", &db, "paused"), "1");
    assert_eq!(column(&dbs, "name", TEST_DB, "paused"), "0");
    let state = show(&admin, "SHOW STATE").await;
    assert_eq!(column(&state, "key", "paused", "value"), "no");

    let again = admin.simple_query(&format!("RESUME {TEST_DB}")).await;
    assert_eq!(
        expect_sqlstate(again, "RESUME of an unpaused db").code(),
        "55000"
    );
    admin
        .simple_query(&format!("RESUME {db}"))
        .await
        .expect("RESUME db");
    let n = within(10, "the held query", stalled)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 42);
    let nothing = admin.simple_query("RESUME").await;
    assert_eq!(
        expect_sqlstate(nothing, "RESUME of nothing").code(),
        "55000"
    );
    let console_db = admin.simple_query("PAUSE pgweir").await;
    assert_eq!(expect_sqlstate(console_db, "PAUSE pgweir").code(), "55000");
    let unknown = admin.simple_query("PAUSE no_such_db").await;
    assert_eq!(
        expect_sqlstate(unknown, "PAUSE of an unknown db"),
        SqlState::INVALID_CATALOG_NAME
    );
}

#[tokio::test]
async fn disable_refuses_new_logins_with_57p03_and_enable_allows_them() {
    let db = cluster().create_database("console_disable");
    let pgweir = with_console().database(&db).start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let connected = pgweir.connect_as(&SCRAM_USER, &db).await;
    admin
        .simple_query(&format!("DISABLE {db}"))
        .await
        .expect("DISABLE");

    let refused = pgweir
        .try_connect(SCRAM_USER.name, SCRAM_USER.password, &db)
        .await;
    let err = refused.expect_err("a login to a disabled database");
    let db_err = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db_err.code(), &SqlState::CANNOT_CONNECT_NOW);
    assert!(db_err.message().contains(&db), "{}", db_err.message());
    assert!(db_err.message().contains("does not allow connections"));
    connected
        .batch_execute("SELECT 1")
        .await
        .expect("a connected client carries on");
    pgweir
        .connect()
        .await
        .batch_execute("SELECT 1")
        .await
        .unwrap();
    let dbs = show(&admin, "SHOW DATABASES").await;
    assert_eq!(column(&dbs, "name", &db, "disabled"), "1");
    assert_eq!(column(&dbs, "name", TEST_DB, "disabled"), "0");

    admin
        .simple_query(&format!("ENABLE {db}"))
        .await
        .expect("ENABLE");
    let back = pgweir.connect_as(&SCRAM_USER, &db).await;
    back.batch_execute("SELECT 1").await.unwrap();
    let dbs = show(&admin, "SHOW DATABASES").await;
    assert_eq!(column(&dbs, "name", &db, "disabled"), "0");
    let console_db = admin.simple_query("DISABLE pgbouncer").await;
    assert_eq!(
        expect_sqlstate(console_db, "DISABLE pgbouncer").code(),
        "55000"
    );
}

#[tokio::test]
async fn reconnect_moves_the_next_transaction_to_a_new_backend() {
    let pgweir = with_console().pool_size(1).start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let client = pgweir.connect().await;
    let first = backend_pid(&client).await;
    assert_eq!(backend_pid(&client).await, first, "one server, reused");
    admin.simple_query("RECONNECT").await.expect("RECONNECT");
    let second = backend_pid(&client).await;
    assert_ne!(second, first, "a new backend after RECONNECT");
    assert_eq!(backend_pid(&client).await, second);
    admin
        .simple_query(&format!("RECONNECT {TEST_DB}"))
        .await
        .expect("RECONNECT db");
    assert_ne!(backend_pid(&client).await, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_close_returns_once_the_reconnected_servers_are_gone() {
    let pgweir = with_console().pool_size(2).start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let pg = cluster().admin().await;
    let client = pgweir.connect().await;
    client.batch_execute("BEGIN").await.unwrap();
    let old = backend_pid(&client).await;
    admin.simple_query("RECONNECT").await.expect("RECONNECT");
    let servers = show(&admin, "SHOW SERVERS").await;
    let old_text = old.to_string();
    assert_eq!(
        column(&servers, "remote_pid", &old_text, "close_needed"),
        "1"
    );

    let waiting = {
        let admin = console(&pgweir, ADMIN, "pgweir").await;
        tokio::spawn(async move { admin.simple_query("WAIT_CLOSE").await.map(drop) })
    };
    sleep_ms(300).await;
    assert!(
        !waiting.is_finished(),
        "WAIT_CLOSE waits for the busy server"
    );
    assert_eq!(
        backend_pid(&client).await,
        old,
        "the transaction keeps its server"
    );
    client.batch_execute("COMMIT").await.expect("COMMIT");
    within(10, "WAIT_CLOSE", waiting)
        .await
        .unwrap()
        .expect("WAIT_CLOSE");
    let alive: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&old],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(alive, 0, "the old backend is gone");
    assert_ne!(backend_pid(&client).await, old);
    within(
        5,
        "WAIT_CLOSE with nothing marked",
        admin.simple_query(&format!("WAIT_CLOSE {TEST_DB}")),
    )
    .await
    .expect("WAIT_CLOSE db");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_closes_the_databases_clients_with_57p01_and_pauses_it() {
    let db = cluster().create_database("console_kill");
    let pgweir = with_console().database(&db).pool_size(2).start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let pg = cluster().admin().await;
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, &db);
    let idle = connect_watched(&config).await;
    idle.client.batch_execute("SELECT 1").await.unwrap();
    let in_tx = connect_watched(&config).await;
    in_tx.client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let other = pgweir.connect().await;

    within(10, "KILL", admin.simple_query(&format!("KILL {db}")))
        .await
        .expect("KILL");
    for (who, c) in [("idle", idle), ("in a transaction", in_tx)] {
        let (code, message) = c.fatal().await;
        assert_eq!(code, "57P01", "{who}: {message}");
        assert!(message.contains("KILL"), "{who}: {message}");
    }
    assert_eq!(backends(&pg, &db, 0).await, 0, "the servers went too");
    other
        .batch_execute("SELECT 1")
        .await
        .expect("another database");
    let dbs = show(&admin, "SHOW DATABASES").await;
    assert_eq!(column(&dbs, "name", &db, "paused"), "1");

    // A new client of the killed database waits for RESUME.
    let late = pgweir.connect_as(&SCRAM_USER, &db).await;
    let held = tokio::spawn(async move { late.batch_execute("SELECT 1").await });
    sleep_ms(300).await;
    assert!(!held.is_finished(), "new work waits until RESUME");
    admin
        .simple_query(&format!("RESUME {db}"))
        .await
        .expect("RESUME");
    within(10, "after RESUME", held)
        .await
        .unwrap()
        .expect("runs after RESUME");
}

#[tokio::test]
async fn kill_client_closes_exactly_the_client_it_names() {
    let pgweir = with_console().start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let first = connect_watched(&config).await;
    let second = pgweir.connect().await;
    let other_console = connect_watched(&pgweir.config(ADMIN.0, ADMIN.1, "pgweir")).await;

    let clients = show(&admin, "SHOW CLIENTS").await;
    let id_col = clients.index("id");
    let ids = |db: &str| -> Vec<u64> {
        let rows = clients.rows_where("database", db);
        let mut ids: Vec<u64> = rows
            .iter()
            .map(|r| r[id_col].as_deref().unwrap().parse().unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    let app_ids = ids(TEST_DB);
    assert_eq!(app_ids.len(), 2, "{:?}", clients.rows);
    let (victim, survivor) = (app_ids[0], app_ids[1]);
    admin
        .simple_query(&format!("KILL_CLIENT {victim}"))
        .await
        .expect("KILL_CLIENT");
    let (code, message) = first.fatal().await;
    assert_eq!(code, "57P01");
    assert!(message.contains("KILL_CLIENT"), "{message}");
    second
        .batch_execute("SELECT 1")
        .await
        .expect("the other client carries on");
    let after = show(&admin, "SHOW CLIENTS").await;
    let listed = |id: u64| !after.rows_where("id", &id.to_string()).is_empty();
    assert!(!listed(victim) && listed(survivor));

    let console_ids = ids("pgweir");
    assert_eq!(console_ids.len(), 2);
    let other_id = *console_ids.last().unwrap();
    admin
        .simple_query(&format!("KILL_CLIENT {other_id}"))
        .await
        .expect("KILL_CLIENT of a console client");
    assert_eq!(other_console.fatal().await.0, "57P01");
    let unknown = admin.simple_query("KILL_CLIENT 999999").await;
    assert_eq!(
        expect_sqlstate(unknown, "KILL_CLIENT of nobody").code(),
        "42704"
    );
    show(&admin, "SHOW VERSION").await;
}

#[tokio::test]
async fn suspend_is_refused_with_the_reason() {
    let pgweir = with_console().start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let err = admin.simple_query("SUSPEND").await.expect_err("SUSPEND");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code(), &SqlState::FEATURE_NOT_SUPPORTED);
    assert!(db.message().contains("--takeover"), "{}", db.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_while_paused_closes_the_held_clients_at_once() {
    let metrics = free_port();
    let mut pgweir = with_console()
        .general("shutdown_timeout = \"20s\"")
        .general(&format!("metrics_addr = \"127.0.0.1:{metrics}\""))
        .start();
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let held = connect_watched(&config).await;
    held.client.batch_execute("SELECT 1").await.unwrap();
    within(10, "PAUSE", admin.simple_query("PAUSE"))
        .await
        .expect("PAUSE");
    let (status, _) = http(metrics, "/health").await;
    assert!(status.contains("503"), "/health while paused: {status}");
    let Watched { client, ended } = held;
    let query = tokio::spawn(async move { client.batch_execute("SELECT 1").await });
    sleep_ms(300).await;
    assert!(!query.is_finished(), "held by the pause");

    let signalled = std::time::Instant::now();
    pgweir.signal("TERM");
    let err = within(5, "the held query", query)
        .await
        .unwrap()
        .expect_err("closed by the drain");
    let code = err.as_db_error().map(|e| e.code().code().to_owned());
    assert_eq!(code.as_deref(), Some("57P01"), "{err:?}");
    drop(ended);
    while pgweir.exited().is_none() {
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "the drain waited for RESUME; log:\n{}",
            pgweir.log()
        );
        sleep_ms(20).await;
    }
}

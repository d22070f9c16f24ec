//! One test per timeout: what a client sees when it runs out (SQLSTATE, message,
//! when) and what becomes of the server connection it held. Durations are a few
//! hundred milliseconds; the bounds allow for a busy machine.
//!
//! Covered: client_login_timeout, client_idle_timeout, query_wait_timeout,
//! query_timeout, idle_transaction_timeout, server_check_delay/server_check_query
//! (and a backend killed while idle), server_connect_timeout with server_login_retry.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use common::wire::Wire;
use common::{backend_pid, cluster, within, Pgweir, SCRAM_USER, TEST_DB};

/// The first column of the first row of a simple query, as text.
async fn scalar(client: &Client, sql: &str) -> String {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// The SQLSTATE and message of a failed query or login.
fn code_and_message(err: &tokio_postgres::Error) -> (String, String) {
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("expected an error from pgweir, got {err:?}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// Whether Postgres still has a backend with this pid.
async fn backend_exists(admin: &Client, pid: i32) -> bool {
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    n > 0
}

/// Polls until the backend is gone or `timeout` passes; true if it went.
async fn backend_gone_within(admin: &Client, pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while backend_exists(admin, pid).await {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Reads the FATAL a client is dropped with, then expects the connection to close.
/// Returns (sqlstate, message, time until the error arrived).
async fn read_fatal(wire: &mut Wire, since: Instant) -> (String, String, Duration) {
    let msg = wire.recv().await;
    let took = since.elapsed();
    assert_eq!(msg.tag, b'E', "expected an ErrorResponse, got {msg:?}");
    assert_eq!(msg.severity().as_deref(), Some("FATAL"));
    let eof = tokio::time::timeout(Duration::from_secs(5), wire.read_msg())
        .await
        .expect("pgweir kept the connection open after the FATAL");
    assert!(eof.is_none(), "message after the FATAL: {eof:?}");
    (msg.sqlstate().unwrap(), msg.message().unwrap(), took)
}

#[tokio::test]
async fn client_login_timeout_drops_a_client_that_sends_nothing() {
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .general("client_login_timeout = \"1s\"")
        .start();
    let logged_in = pgweir.connect().await;
    let logged_in_at = Instant::now();

    let since = Instant::now();
    let mut silent = Wire::connect(pgweir.port).await;
    let (code, message, took) = read_fatal(&mut silent, since).await;
    assert_eq!(code, "57P03", "{message}");
    assert!(message.contains("client_login_timeout"), "{message}");
    assert!(took >= Duration::from_secs(1), "dropped after {took:?}");
    assert!(took < Duration::from_secs(4), "dropped only after {took:?}");

    // The limit is on logging in, not on the session that follows.
    assert!(logged_in_at.elapsed() >= Duration::from_secs(1));
    assert_eq!(scalar(&logged_in, "SELECT 1").await, "1");
}

#[tokio::test]
async fn client_idle_timeout_drops_idle_clients_only() {
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .pool("client_idle_timeout = \"600ms\"")
        .start();
    let busy = pgweir.connect().await;
    let (mut idle, _) = Wire::startup(pgweir.port, SCRAM_USER.name, TEST_DB).await;
    let since = Instant::now();
    let watch = tokio::spawn(async move { read_fatal(&mut idle, since).await });

    // A client that keeps talking is never idle for 600ms.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(scalar(&busy, "SELECT 1").await, "1");
    }
    let (code, message, took) = within(5, "the idle client's FATAL", watch).await.unwrap();
    assert_eq!(code, "57P05", "{message}");
    assert!(message.starts_with("client_idle_timeout"), "{message}");
    // pgweir starts the clock just before `since`: a little slack.
    assert!(took >= Duration::from_millis(550), "dropped after {took:?}");
    assert!(took < Duration::from_secs(3), "dropped only after {took:?}");
}

#[tokio::test]
async fn query_wait_timeout_disconnects_a_queued_client_with_57014() {
    let pgweir = Pgweir::builder()
        .pool_size(1)
        .pool("query_wait_timeout = \"400ms\"")
        .start();
    let holder = pgweir.connect().await;
    holder.batch_execute("BEGIN").await.unwrap();
    scalar(&holder, "SELECT 1").await;
    let queued = pgweir.connect().await;

    let since = Instant::now();
    let result = within(10, "a queued query", queued.simple_query("SELECT 1")).await;
    let took = since.elapsed();
    let err = result.expect_err("the only server is held; the queued query must fail");
    let (code, message) = code_and_message(&err);
    assert_eq!(code, "57014", "{message}");
    assert!(message.starts_with("query_wait_timeout"), "{message}");
    assert!(took >= Duration::from_millis(400), "gave up after {took:?}");
    assert!(took < Duration::from_secs(3), "gave up only after {took:?}");
    let again = within(
        5,
        "a query on the dropped client",
        queued.simple_query("SELECT 1"),
    )
    .await;
    assert!(again.is_err(), "the queued client must be disconnected");

    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(scalar(&holder, "SELECT 1").await, "1");
}

#[tokio::test]
async fn query_timeout_cancels_the_query_and_closes_its_server() {
    let pgweir = Pgweir::builder()
        .pool_size(1)
        .pool("query_timeout = \"300ms\"")
        .start();
    let admin = cluster().admin().await;
    let client = pgweir.connect().await;
    let pid = backend_pid(&client).await;

    let since = Instant::now();
    let result = within(
        10,
        "pg_sleep(10)",
        client.simple_query("SELECT pg_sleep(10)"),
    )
    .await;
    let took = since.elapsed();
    let err = result.expect_err("pg_sleep(10) must be stopped by query_timeout");
    let (code, message) = code_and_message(&err);
    assert_eq!(code, "57014", "{message}");
    assert!(message.starts_with("query_timeout"), "{message}");
    assert!(took >= Duration::from_millis(300), "stopped after {took:?}");
    assert!(took < Duration::from_secs(3), "stopped only after {took:?}");

    assert!(
        backend_gone_within(&admin, pid, Duration::from_secs(3)).await,
        "the server that ran the timed-out query must be closed"
    );
    let next = pgweir.connect().await;
    assert_ne!(backend_pid(&next).await, pid);
    // A query that finishes in time is untouched.
    assert_eq!(
        scalar(&next, "SELECT pg_sleep(0.1)::text || 'ok'").await,
        "ok"
    );
}

#[tokio::test]
async fn idle_transaction_timeout_rolls_back_and_reuses_the_server() {
    let db = cluster().create_database("idletx");
    cluster().psql(
        &db,
        "CREATE TABLE marker (x int); GRANT ALL ON marker TO PUBLIC",
    );
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .database(&db)
        .pool_size(1)
        .pool("idle_transaction_timeout = \"300ms\"")
        .start();
    let (mut stuck, _) = Wire::startup(pgweir.port, SCRAM_USER.name, &db).await;
    stuck.query("BEGIN; INSERT INTO marker VALUES (1); SELECT pg_backend_pid()");
    stuck.send().await;
    let answer = stuck.until_ready().await;
    let since = Instant::now();
    let pid: i32 = answer
        .iter()
        .find(|m| m.tag == b'D')
        .and_then(|m| m.first_column())
        .expect("pid row")
        .parse()
        .unwrap();
    assert_eq!(
        answer.last().unwrap().body,
        b"T",
        "the client is in a transaction"
    );

    let (code, message, took) = read_fatal(&mut stuck, since).await;
    assert_eq!(code, "25P03", "{message}");
    assert!(message.starts_with("idle_transaction_timeout"), "{message}");
    assert!(took >= Duration::from_millis(250), "dropped after {took:?}");
    assert!(took < Duration::from_secs(3), "dropped only after {took:?}");

    let next = pgweir.connect_as(&SCRAM_USER, &db).await;
    assert_eq!(
        backend_pid(&next).await,
        pid,
        "the rolled-back server is reused (pool_size 1)"
    );
    assert_eq!(
        scalar(&next, "SELECT txid_current_if_assigned() IS NULL").await,
        "t",
        "the next client must not inherit the old transaction"
    );
    assert_eq!(scalar(&next, "SELECT count(*) FROM marker").await, "0");
    let admin = cluster().admin_on(&db).await;
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM marker", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the abandoned transaction must be rolled back");
}

/// Runs three queries one after the other and returns how often `server_check_query`
/// ran, as counted by the row it inserts.
async fn checks_during_three_queries(delay: &str, pause: Duration) -> i64 {
    let db = cluster().create_database("check");
    cluster().psql(
        &db,
        "CREATE TABLE checks (at timestamptz DEFAULT now()); GRANT ALL ON checks TO PUBLIC",
    );
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(1)
        .pool(&format!("server_check_delay = {delay}"))
        .pool("server_check_query = \"INSERT INTO checks DEFAULT VALUES\"")
        .start();
    let client = pgweir.connect_as(&SCRAM_USER, &db).await;
    for _ in 0..3 {
        tokio::time::sleep(pause).await;
        assert_eq!(scalar(&client, "SELECT 1").await, "1");
    }
    let admin = cluster().admin_on(&db).await;
    admin
        .query_one("SELECT count(*) FROM checks", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn server_check_delay_decides_when_the_check_query_runs() {
    let always = checks_during_three_queries("0", Duration::ZERO).await;
    assert!(
        always >= 3,
        "server_check_delay = 0 must check every reused server, checked {always} times"
    );
    let fresh = checks_during_three_queries("\"10s\"", Duration::ZERO).await;
    assert_eq!(
        fresh, 0,
        "servers idle well under server_check_delay are not checked"
    );
    let stale = checks_during_three_queries("\"200ms\"", Duration::from_millis(350)).await;
    assert!(
        stale >= 3,
        "servers idle past server_check_delay must be checked, checked {stale} times"
    );
}

#[tokio::test]
async fn a_backend_killed_while_idle_is_replaced_invisibly() {
    let admin = cluster().admin().await;
    for delay in ["0", "30"] {
        let pgweir = Pgweir::builder()
            .pool_size(1)
            .pool(&format!("server_check_delay = {delay}"))
            .start();
        let client = pgweir.connect().await;
        let before = backend_pid(&client).await;
        let killed: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&before])
            .await
            .unwrap()
            .get(0);
        assert!(killed);
        assert!(backend_gone_within(&admin, before, Duration::from_secs(3)).await);
        let after = within(10, "the query after the kill", async {
            client.simple_query("SELECT pg_backend_pid()").await
        })
        .await;
        let after = match after {
            Ok(_) => backend_pid(&client).await,
            Err(e) => panic!("server_check_delay = {delay}: the client saw the kill: {e:?}"),
        };
        assert_ne!(after, before, "server_check_delay = {delay}");
    }
}

/// A TCP server that accepts connections, counts them and never says a word: a
/// Postgres host that hangs during login.
async fn silent_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (port, accepted)
}

/// Logs in to database `silent` and runs a query; the error and how long it took.
async fn attempt(pgweir: &Pgweir) -> (String, Duration) {
    let since = Instant::now();
    let result = within(10, "a client of the silent server", async {
        let client = pgweir
            .try_connect(SCRAM_USER.name, SCRAM_USER.password, "silent")
            .await?;
        client.simple_query("SELECT 1").await.map(|_| ())
    })
    .await;
    let err = result.expect_err("a server that never answers cannot serve a query");
    (code_and_message(&err).0, since.elapsed())
}

/// A client logging in to a database whose server pgweir never reached needs a first
/// server to learn its parameters, and is told at once when its login fails rather than
/// waiting out the outage; inside `server_login_retry` the next one fails without a new
/// attempt.
#[tokio::test]
async fn server_login_retry_fails_fast_without_hammering_a_dead_server() {
    let (port, accepted) = silent_server().await;
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .general("server_connect_timeout = \"600ms\"")
        .general("server_login_retry = \"2s\"")
        .extra(&format!(
            "[databases.silent]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = \"{TEST_DB}\"\n"
        ))
        .start();

    let (code, took) = attempt(&pgweir).await;
    let failed_at = Instant::now();
    assert!(code.starts_with("08"), "class 08 expected, got {code}");
    assert!(took >= Duration::from_millis(600), "failed after {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "server_connect_timeout 600ms, took {took:?}"
    );
    let tried = accepted.load(Ordering::SeqCst);
    assert!(tried >= 1, "pgweir never tried the server");

    let (code, took) = attempt(&pgweir).await;
    assert!(code.starts_with("08"), "class 08 expected, got {code}");
    assert!(
        took < Duration::from_millis(400),
        "inside server_login_retry the error must come at once, took {took:?}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        tried,
        "inside server_login_retry pgweir must not connect again"
    );

    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(failed_at.elapsed())).await;
    let (code, took) = attempt(&pgweir).await;
    assert!(code.starts_with("08"), "class 08 expected, got {code}");
    assert!(
        accepted.load(Ordering::SeqCst) > tried,
        "after server_login_retry pgweir must try the server again"
    );
    assert!(took >= Duration::from_millis(600), "failed after {took:?}");

    let other = pgweir.connect().await;
    assert_eq!(
        scalar(&other, "SELECT 1").await,
        "1",
        "other databases work"
    );
}

/// A TCP proxy in front of the test cluster that counts the connections it accepts,
/// so a test can see every login attempt pgweir makes.
async fn counting_proxy() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let upstream = ("127.0.0.1", cluster().port);
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn server_login_retry_also_holds_while_some_servers_are_alive() {
    let (port, accepted) = counting_proxy().await;
    cluster().psql(
        "postgres",
        "CREATE ROLE pgweir_one_conn LOGIN CONNECTION LIMIT 1 PASSWORD 'one_pw'",
    );
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .pool_size(3)
        .user("pgweir_one_conn", "one_pw")
        .general("server_login_retry = \"10s\"")
        .pool("query_wait_timeout = \"500ms\"")
        .extra(&format!(
            "[databases.proxied]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = \"{TEST_DB}\"\n"
        ))
        .start();
    let connect = || pgweir.try_connect("pgweir_one_conn", "one_pw", "proxied");

    // The role may hold one backend: the holder's. The next login fails (53300).
    let holder = connect().await.unwrap();
    holder.batch_execute("BEGIN").await.unwrap();
    let queued = connect().await.unwrap();
    let err = within(
        5,
        "a query that needs a second server",
        queued.simple_query("SELECT 1"),
    )
    .await
    .expect_err("the role's second login fails, so the query cannot run");
    let (code, message) = code_and_message(&err);
    assert_eq!(
        (code.as_str(), message.contains("query_wait_timeout")),
        ("53300", true),
        "it waits for the held server, then gets the role's limit as the cause: {err:?}"
    );
    let tried = accepted.load(Ordering::SeqCst);
    assert_eq!(tried, 2, "the holder's login and one failed attempt");

    // Inside server_login_retry, more clients must not mean more login attempts.
    let mut later = Vec::new();
    for _ in 0..3 {
        later.push(connect().await.unwrap());
    }
    let results =
        futures_util::future::join_all(later.iter().map(|c| c.simple_query("SELECT 1"))).await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        tried,
        "pgweir tried to log in again inside server_login_retry"
    );
    holder.batch_execute("COMMIT").await.unwrap();
}

//! Stopping pgweir without losing work (issue 6): on SIGTERM or SIGINT it refuses new
//! clients, lets transactions in flight finish, closes each client at its next transaction
//! boundary with FATAL 57P01, and exits; `shutdown_timeout` or a second signal closes the
//! rest. `/health` answers 503 while it drains. No client is left without an error: one
//! still logging in is refused with 57P01 as soon as shutdown begins, and one queued for a
//! server is told 57P01 when shutdown can wait no more.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use common::wire::Wire;
use common::{cluster, connect, free_port, sqlstate, within, Pgweir, SCRAM_USER, TEST_DB};

/// Waits for pgweir to exit and returns how long that took from `since`.
async fn until_exit(pgweir: &mut Pgweir, since: Instant, limit: Duration) -> Duration {
    loop {
        if let Some(status) = pgweir.exited() {
            assert!(status.success(), "pgweir exited with {status}");
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "pgweir still running after {limit:?}; log:\n{}",
            pgweir.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn health(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"GET /health HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.lines().next().unwrap_or_default().to_owned()
}

async fn table(name: &str) {
    cluster()
        .admin_on(TEST_DB)
        .await
        .batch_execute(&format!(
            "CREATE TABLE {name} (id bigint PRIMARY KEY); GRANT ALL ON {name} TO PUBLIC"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_transaction_in_flight_finishes_then_its_client_is_closed() {
    table("shut_inflight").await;
    let metrics = free_port();
    let mut pgweir = Pgweir::builder()
        .general(&format!("metrics_addr = \"127.0.0.1:{metrics}\""))
        .general("shutdown_timeout = \"20s\"")
        .start();
    let client = pgweir.connect().await;
    let idle = pgweir.connect().await;
    client
        .batch_execute("BEGIN; INSERT INTO shut_inflight VALUES (1)")
        .await
        .unwrap();
    let signalled = Instant::now();
    pgweir.signal("TERM");
    // The idle client is closed as soon as pgweir has the signal, with the reason.
    let err = within(5, "the idle client closed", async {
        loop {
            if let Err(e) = idle.simple_query("SELECT 1").await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(idle.is_closed() || sqlstate(&err).is_some(), "{err:?}");
    // No new clients, and /health says so, while the transaction is still open.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(connect(&pgweir.config("x", "y", TEST_DB)).await.is_err());
    assert!(health(metrics).await.contains("503"));
    client
        .batch_execute("INSERT INTO shut_inflight VALUES (2); COMMIT")
        .await
        .unwrap();
    // Told FATAL 57P01 right after its transaction; the driver may read it before it asks.
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("closed after its transaction");
    let code = sqlstate(&err).map(|s| s.code().to_owned());
    assert!(
        code.as_deref() == Some("57P01") || err.is_closed(),
        "{err:?}"
    );
    let took = until_exit(&mut pgweir, signalled, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(10));
    let rows: i64 = cluster()
        .admin_on(TEST_DB)
        .await
        .query_one("SELECT count(*) FROM shut_inflight", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2, "the committed transaction is all there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_committed_transaction_and_exits_in_time() {
    let _heavy = common::heavy().await;
    table("shut_load").await;
    let mut pgweir = Pgweir::builder()
        .general("shutdown_timeout = \"10s\"")
        .pool_size(4)
        .start();
    let next = Arc::new(AtomicU64::new(1));
    let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..10 {
        let client = pgweir.connect().await;
        let (next, committed) = (next.clone(), committed.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed) as i64;
                let sql = format!("BEGIN; INSERT INTO shut_load VALUES ({id}); COMMIT");
                match client.batch_execute(&sql).await {
                    Ok(()) => committed.lock().unwrap().push(id),
                    Err(e) => return e,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    pgweir.signal("TERM");
    for w in workers {
        let err = within(10, "a worker told to stop", w).await.unwrap();
        let code = sqlstate(&err).map(|s| s.code().to_owned());
        assert!(
            code.as_deref() == Some("57P01") || err.is_closed(),
            "{err:?}"
        );
    }
    let took = until_exit(&mut pgweir, signalled, Duration::from_secs(10)).await;
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
    let committed = committed.lock().unwrap().clone();
    assert!(
        committed.len() > 10,
        "the load ran: {} commits",
        committed.len()
    );
    let admin = cluster().admin_on(TEST_DB).await;
    let found: i64 = admin
        .query_one(
            "SELECT count(*) FROM shut_load WHERE id = ANY($1)",
            &[&committed],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        found as usize,
        committed.len(),
        "every acknowledged commit is in the table"
    );
}

#[tokio::test]
async fn shutdown_timeout_and_a_second_signal_close_what_is_left() {
    for second_signal in [false, true] {
        let mut pgweir = Pgweir::builder()
            .general(if second_signal {
                "shutdown_timeout = 0"
            } else {
                "shutdown_timeout = \"1s\""
            })
            .start();
        let client = pgweir.connect().await;
        client.batch_execute("BEGIN; SELECT 1").await.unwrap();
        let signalled = Instant::now();
        pgweir.signal("INT");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(pgweir.exited().is_none(), "waits for the open transaction");
        if second_signal {
            pgweir.signal("TERM");
        }
        let took = until_exit(&mut pgweir, signalled, Duration::from_secs(5)).await;
        if !second_signal {
            assert!(
                took >= Duration::from_secs(1),
                "waited for shutdown_timeout: {took:?}"
            );
        }
        let err = client.simple_query("SELECT 1").await.expect_err("closed");
        let code = sqlstate(&err).map(|s| s.code().to_owned());
        assert!(
            code.as_deref() == Some("57P01") || client.is_closed(),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_client_pinned_to_its_server_does_not_hold_shutdown_up() {
    let mut pgweir = Pgweir::builder().general("shutdown_timeout = 0").start();
    let listener = pgweir.connect().await;
    listener
        .batch_execute("LISTEN shutdown_channel")
        .await
        .unwrap();
    let signalled = Instant::now();
    pgweir.signal("TERM");
    let took = until_exit(&mut pgweir, signalled, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    assert!(listener.simple_query("SELECT 1").await.is_err());
}

/// The message pgweir ends a raw connection with: an ErrorResponse, not a bare EOF.
async fn told(wire: &mut Wire, who: &str) -> Option<String> {
    let msg = within(10, who, wire.read_msg())
        .await
        .unwrap_or_else(|| panic!("{who}: closed without an error"));
    assert_eq!(msg.tag, b'E', "{who}: {:?}", msg.tag as char);
    msg.sqlstate()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_shutdown_tells_queued_and_logging_in_clients_why() {
    let _heavy = common::heavy().await;
    let mut pgweir = Pgweir::builder()
        .pool_size(1)
        .general("shutdown_timeout = \"1s\"")
        .start();
    let holder = pgweir.connect().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let queued = pgweir.connect().await;
    let waiting = tokio::spawn(async move { queued.batch_execute("SELECT 1").await });
    // One client has sent nothing yet; another is between its startup packet and its
    // password.
    let mut silent = Wire::connect(pgweir.port).await;
    let mut logging_in = Wire::connect(pgweir.port).await;
    let mut startup = BytesMut::new();
    let params = [("user", SCRAM_USER.name), ("database", TEST_DB)];
    frontend::startup_message(params, &mut startup).unwrap();
    logging_in.raw(&startup).send().await;
    assert_eq!(logging_in.recv().await.tag, b'R', "asked for a password");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "queued behind the open transaction");

    let signalled = Instant::now();
    pgweir.signal("TERM");
    let code = told(&mut logging_in, "the client logging in").await;
    assert_eq!(code.as_deref(), Some("57P01"));
    assert!(
        signalled.elapsed() < Duration::from_secs(1),
        "refused as soon as shutdown began"
    );
    let err = within(10, "the queued client", waiting)
        .await
        .unwrap()
        .expect_err("closed");
    let code = sqlstate(&err).map(|s| s.code().to_owned());
    assert_eq!(code.as_deref(), Some("57P01"), "{err:?}");
    assert_eq!(
        told(&mut silent, "the silent client").await.as_deref(),
        Some("57P01")
    );
    let err = holder.simple_query("SELECT 1").await.expect_err("closed");
    let code = sqlstate(&err).map(|s| s.code().to_owned());
    assert!(
        code.as_deref() == Some("57P01") || holder.is_closed(),
        "{err:?}"
    );
    until_exit(&mut pgweir, signalled, Duration::from_secs(5)).await;
}

//! Networks that fail under pgweir (issue 17): a relay between pgweir and Postgres
//! ([`common::faults`]) resets connections mid-message, stalls, delays and trickles, and a
//! kernel route black-holes it. The client whose transaction was on the broken server gets
//! an error, within the configured bound where the fault is silence (`query_timeout`,
//! `tcp_user_timeout`, the keepalives); other clients see nothing; no broken server is
//! handed out again; the pool refills once the fault ends. Bounds are generous, never
//! timings.

use crate::common;

use std::time::Duration;

use tokio_postgres::Client;

use common::faults::{BlackHole, Fault, FaultProxy};
use common::{within, Pgweir, SCRAM_USER, TEST_DB};

/// pgweir whose `through_relay` database reaches the cluster through `proxy`.
fn through(proxy: &FaultProxy, pool_size: usize, pool: &str) -> Pgweir {
    Pgweir::builder()
        .pool_size(pool_size)
        .pool(pool)
        .extra(&format!(
            "[databases.through_relay]\nhost = \"{}\"\nport = {}\ndbname = \"{TEST_DB}\"\n",
            proxy.ip, proxy.port
        ))
        .start()
}

async fn one(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    let row = client.query_one(sql, &[]).await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn a_reset_mid_result_fails_that_client_only_and_the_pool_refills() {
    let proxy = FaultProxy::start().await;
    let pgweir = through(&proxy, 2, "");
    let victim = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    let bystander = pgweir.connect_as(&SCRAM_USER, TEST_DB).await;
    let long =
        "SELECT string_agg(repeat('x', 1000), '') FROM generate_series(1, 20000), pg_sleep(0.3)";
    let running = tokio::spawn(async move {
        let got = victim.simple_query(long).await;
        (victim, got)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.set(Fault::Reset);
    let (victim, got) = within(30, "the reset query", running).await.unwrap();
    let err = got.expect_err("the server was reset under the query");
    let code = err.code().map(|c| c.code().to_owned()).unwrap_or_default();
    assert!(code.starts_with("08"), "a connection error: {err:?}");
    assert_eq!(
        one(&bystander, "SELECT 'unaffected'").await.unwrap(),
        "unaffected"
    );
    proxy.set(Fault::Pass);
    let again = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    assert_eq!(one(&again, "SELECT 'refilled'").await.unwrap(), "refilled");
    drop(victim);
}

#[tokio::test]
async fn a_stalled_server_is_bounded_by_query_timeout_and_not_reused() {
    let proxy = FaultProxy::start().await;
    let pgweir = through(&proxy, 1, "query_timeout = \"1s\"");
    let client = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    let stalled_pid = one(&client, "SELECT pg_backend_pid()::text").await.unwrap();
    proxy.set(Fault::Stall);
    let stalled = client.simple_query("SELECT 'stalled'");
    let err = within(30, "the stalled query", stalled)
        .await
        .expect_err("no answer comes");
    // The FATAL 57014 may come, or only the close after it: either way the bound held.
    assert!(
        matches!(err.code().map(|c| c.code()), None | Some("57014")),
        "{err:?}"
    );
    assert!(pgweir.log().contains("query_timeout"), "{}", pgweir.log());
    proxy.set(Fault::Pass);
    let next = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    let pid = one(&next, "SELECT pg_backend_pid()::text").await.unwrap();
    assert_ne!(
        pid, stalled_pid,
        "the stalled server is not handed out again"
    );
}

#[tokio::test]
async fn delayed_and_trickled_bytes_still_make_whole_answers() {
    let proxy = FaultProxy::start().await;
    let pgweir = through(&proxy, 1, "");
    let client = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    proxy.set(Fault::Delay(Duration::from_millis(20)));
    assert_eq!(one(&client, "SELECT 'late'").await.unwrap(), "late");
    proxy.set(Fault::Trickle);
    let got = one(&client, "SELECT repeat('t', 300)").await.unwrap();
    assert_eq!(got, "t".repeat(300));
}

/// Probes and retransmissions give up after about three seconds.
const QUICK_TCP: &str =
    "tcp_keepidle = \"1s\"\ntcp_keepintvl = \"1s\"\ntcp_keepcnt = 2\ntcp_user_timeout = \"3s\"";

/// pgweir with [`QUICK_TCP`] whose `through_relay` database is behind `proxy`.
fn quick_through(proxy: &FaultProxy) -> Pgweir {
    Pgweir::builder()
        .pool_size(2)
        .general(QUICK_TCP)
        .extra(&format!(
            "[databases.through_relay]\nhost = \"{}\"\nport = {}\ndbname = \"{TEST_DB}\"\n",
            proxy.ip, proxy.port
        ))
        .start()
}

/// The client's error when its server's network dies: a connection error, or the close
/// that follows one.
fn connection_lost(err: &tokio_postgres::Error) -> bool {
    matches!(
        err.code().map(|c| c.code()),
        None | Some("08006") | Some("08000")
    )
}

#[tokio::test]
async fn a_query_sent_into_a_black_hole_fails_within_tcp_user_timeout() {
    let proxy = FaultProxy::start_alone().await;
    let pgweir = quick_through(&proxy);
    let victim = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    let bystander = pgweir.connect_as(&SCRAM_USER, TEST_DB).await;
    victim.batch_execute("BEGIN").await.unwrap();
    let pid = one(&victim, "SELECT pg_backend_pid()::text").await.unwrap();

    let hole = BlackHole::swallow(proxy.ip);
    let since = std::time::Instant::now();
    let err = within(
        30,
        "a query into the black hole",
        one(&victim, "SELECT 'lost'"),
    )
    .await
    .expect_err("nothing can answer through a black hole");
    let took = since.elapsed();
    assert!(connection_lost(&err), "{err:?}");
    assert!(
        took < Duration::from_secs(20),
        "tcp_user_timeout is 3s, took {took:?}"
    );
    assert_eq!(one(&bystander, "SELECT 'fine'").await.unwrap(), "fine");

    drop(hole);
    let next = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    let again = within(20, "a query once the network is back", async {
        one(&next, "SELECT pg_backend_pid()::text").await
    })
    .await
    .expect("the pool refills once the network is back");
    assert_ne!(again, pid, "the server behind the black hole is not reused");
}

#[tokio::test]
async fn keepalives_find_a_black_hole_under_a_long_query() {
    let proxy = FaultProxy::start_alone().await;
    let pgweir = quick_through(&proxy);
    let victim = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    let sleeping = tokio::spawn(async move {
        let got = victim.simple_query("SELECT pg_sleep(60)").await;
        (victim, got)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hole = BlackHole::swallow(proxy.ip);
    let since = std::time::Instant::now();
    let (victim, got) = within(45, "a long query behind a black hole", sleeping)
        .await
        .unwrap();
    let took = since.elapsed();
    let err = got.expect_err("the keepalives give up before the query ends");
    assert!(connection_lost(&err), "{err:?}");
    assert!(
        took < Duration::from_secs(30),
        "keepalives give up after ~3s, took {took:?}"
    );
    drop(hole);
    drop(victim);
    let next = pgweir.connect_as(&SCRAM_USER, "through_relay").await;
    within(
        20,
        "a query once the network is back",
        one(&next, "SELECT 'back'"),
    )
    .await
    .expect("the pool refills once the network is back");
}

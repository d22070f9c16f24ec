//! The cancel race every pooler must close: pgweir accepts a CancelRequest while a
//! client's query runs and forwards it on a new connection, but the query ends
//! before the request reaches Postgres. If the server meanwhile went back to the
//! pool, the late cancel hits whatever another client runs there next. PgBouncer
//! keeps such a server out of the pool until its cancel has been delivered.
//!
//! To make the race deterministic the test puts a TCP proxy between pgweir and
//! Postgres that holds back cancel connections (and only those) for a second.

use crate::common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;

use common::{cluster, within, Pgweir, SCRAM_USER, TEST_DB};

const CANCEL_REQUEST_CODE: u32 = 80_877_102;
const CANCEL_DELAY: Duration = Duration::from_secs(1);

/// Starts a proxy to Postgres that delays connections opening with a
/// CancelRequest; returns its port.
async fn cancel_delaying_proxy() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(relay(inbound));
        }
    });
    port
}

async fn relay(mut inbound: TcpStream) -> std::io::Result<()> {
    let mut head = [0u8; 8];
    inbound.read_exact(&mut head).await?;
    if u32::from_be_bytes(head[4..8].try_into().unwrap()) == CANCEL_REQUEST_CODE {
        tokio::time::sleep(CANCEL_DELAY).await;
    }
    let mut outbound = TcpStream::connect(("127.0.0.1", cluster().port)).await?;
    outbound.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_cancel_does_not_hit_the_next_client_of_the_server() {
    let proxy = cancel_delaying_proxy().await;
    let pgweir = Pgweir::builder()
        .extra(&format!(
            "[databases.proxied]\nhost = \"127.0.0.1\"\nport = {proxy}\ndbname = \"{TEST_DB}\"\npool_size = 1\n"
        ))
        .start();
    let first = pgweir.connect_as(&SCRAM_USER, "proxied").await;
    let second = pgweir.connect_as(&SCRAM_USER, "proxied").await;

    let token = first.cancel_token();
    let first_query =
        tokio::spawn(async move { first.simple_query("SELECT pg_sleep(0.5)").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let cancel = tokio::spawn(async move { token.cancel_query(NoTls).await });
    let first_result = within(10, "first client's query", first_query)
        .await
        .unwrap();
    eprintln!("first client's query (its cancel was late): {first_result:?}");

    // The only server is free again as far as the first client is concerned, but
    // its cancel has not reached Postgres yet.
    let second_result = within(
        10,
        "second client's query",
        second.simple_query("SELECT pg_sleep(1.5)"),
    )
    .await;
    let _ = cancel.await;
    if let Err(err) = second_result {
        panic!(
            "a cancel sent by the first client cancelled the second client's query: {err:?}\n\
             pgweir must not reuse a server until a cancel forwarded to it has been delivered"
        );
    }
}

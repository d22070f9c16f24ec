//! What a client sees when pgweir cannot or will not serve it: too many clients,
//! a database whose server is down, and a server that accepts but never answers
//! (bounded by `server_connect_timeout`).

use crate::common;

use std::time::{Duration, Instant};

use common::{free_port, within, Pgweir, SCRAM_USER, TEST_DB};

/// pgweir exposing one extra database, `broken`, at `127.0.0.1:port`.
fn with_broken_database(port: u16, general: &str) -> Pgweir {
    Pgweir::builder()
        .extra(&format!(
            "[databases.broken]\nhost = \"127.0.0.1\"\nport = {port}\ndbname = \"{TEST_DB}\"\n"
        ))
        .general(general)
        .start()
}

/// Logs in to `broken` and runs a query; returns the error and how long it took.
async fn fail_against_broken(pgweir: &Pgweir) -> (tokio_postgres::Error, Duration) {
    let started = Instant::now();
    let result = within(20, "client of an unreachable server", async {
        let client = pgweir
            .try_connect(SCRAM_USER.name, SCRAM_USER.password, "broken")
            .await?;
        client.simple_query("SELECT 1").await.map(|_| ())
    })
    .await;
    let err = result.expect_err("an unreachable server must give the client an error");
    let code = common::sqlstate(&err).map(|c| c.code().to_string());
    assert!(
        code.as_deref().is_some_and(|c| c.starts_with("08")),
        "a connection-class (08) error expected: {err:?}"
    );
    (err, started.elapsed())
}

#[tokio::test]
async fn max_client_conn_refuses_the_client_over_the_limit() {
    let pgweir = Pgweir::builder().max_client_conn(2).start();
    let a = pgweir.connect().await;
    let b = pgweir.connect().await;
    let third = within(
        10,
        "client over max_client_conn",
        pgweir.try_connect(SCRAM_USER.name, SCRAM_USER.password, TEST_DB),
    )
    .await;
    let Err(err) = third else {
        panic!("max_client_conn = 2 but a third client got in");
    };
    let code = common::sqlstate(&err).map(|c| c.code().to_string());
    assert_eq!(
        code.as_deref(),
        Some("53300"),
        "too_many_connections expected: {err:?}"
    );
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = within(10, "client after one left", pgweir.connect()).await;
    for client in [&b, &c] {
        client.simple_query("SELECT 1").await.unwrap();
    }
}

#[tokio::test]
async fn server_down_gives_the_client_an_error_quickly() {
    let pgweir = with_broken_database(free_port(), "");
    let (err, took) = fail_against_broken(&pgweir).await;
    eprintln!("client of a refused server got after {took:?}: {err:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let ok = pgweir.connect().await;
    ok.simple_query("SELECT 1")
        .await
        .expect("other databases keep working");
}

#[tokio::test]
async fn server_connect_timeout_bounds_a_silent_server() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().take(4).flatten() {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(10));
    });
    let pgweir = with_broken_database(port, "server_connect_timeout = \"500ms\"");
    let (err, took) = fail_against_broken(&pgweir).await;
    eprintln!("client of a silent server got after {took:?}: {err:?}");
    assert!(
        took < Duration::from_secs(5),
        "server_connect_timeout 500ms, but the client waited {took:?}"
    );
    drop(accepted);
}

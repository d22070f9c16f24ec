//! Limits on client connections: `max_client_conn` over everything,
//! `max_db_client_connections` per database and `max_user_client_connections` per
//! user. Past a limit a client gets FATAL 53300 at once (never a silent hang), the
//! message names the setting, other databases and users are unaffected, and the
//! place comes back when a client leaves.

use crate::common;

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use common::wire::Wire;
use common::{cluster, within, Pgweir, TestUser, MD5_USER, SCRAM_USER};

/// Tries to log in and run a query; panics unless pgweir refuses with 53300 quickly.
/// Returns the error message.
async fn refused(pgweir: &Pgweir, user: &TestUser, db: &str) -> String {
    let since = Instant::now();
    let result = within(10, "a client over a limit", async {
        let client = pgweir.try_connect(user.name, user.password, db).await?;
        client.simple_query("SELECT 1").await.map(|_| ())
    })
    .await;
    let took = since.elapsed();
    let err = result.expect_err("a client over the limit got in");
    let db_err = err
        .as_db_error()
        .unwrap_or_else(|| panic!("a FATAL from pgweir expected, got {err:?}"));
    assert_eq!(db_err.code().code(), "53300", "{}", db_err.message());
    assert_eq!(db_err.severity(), "FATAL");
    assert!(took < Duration::from_secs(2), "refused only after {took:?}");
    db_err.message().to_string()
}

async fn works(client: &Client) {
    client.simple_query("SELECT 1").await.expect("SELECT 1");
}

#[tokio::test]
async fn max_client_conn_refuses_at_once_and_names_the_setting() {
    let pgweir = Pgweir::builder().max_client_conn(2).start();
    let a = pgweir.connect().await;
    let b = pgweir.connect().await;
    let message = refused(&pgweir, &SCRAM_USER, common::TEST_DB).await;
    assert!(message.contains("max_client_conn"), "{message}");

    // The refusal comes before the client has said anything.
    let since = Instant::now();
    let mut raw = Wire::connect(pgweir.port).await;
    let msg = raw.recv().await;
    assert_eq!(msg.sqlstate().as_deref(), Some("53300"), "{msg:?}");
    assert!(since.elapsed() < Duration::from_secs(2));

    drop(a);
    let c = within(5, "a client after one left", async {
        loop {
            if let Ok(c) = pgweir
                .try_connect(SCRAM_USER.name, SCRAM_USER.password, common::TEST_DB)
                .await
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    works(&b).await;
    works(&c).await;
}

#[tokio::test]
async fn max_db_client_connections_limits_clients_per_database() {
    let db1 = cluster().create_database("clientdb");
    let db2 = cluster().create_database("clientdb");
    let pgweir = Pgweir::builder()
        .database(&db1)
        .database(&db2)
        .general("max_db_client_connections = 2")
        .start();
    let a = pgweir.connect_as(&SCRAM_USER, &db1).await;
    let b = pgweir.connect_as(&MD5_USER, &db1).await;
    let message = refused(&pgweir, &SCRAM_USER, &db1).await;
    assert!(message.contains("max_db_client_connections"), "{message}");
    assert!(message.contains(&db1), "{message}");

    let other_db = pgweir.connect_as(&SCRAM_USER, &db2).await;
    works(&other_db).await;
    let other_db2 = pgweir.connect_as(&MD5_USER, &db2).await;
    works(&other_db2).await;

    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = pgweir.connect_as(&SCRAM_USER, &db1).await;
    works(&b).await;
    works(&c).await;
}

#[tokio::test]
async fn max_user_client_connections_limits_clients_per_user() {
    let db1 = cluster().create_database("clientuser");
    let db2 = cluster().create_database("clientuser");
    let pgweir = Pgweir::builder()
        .database(&db1)
        .database(&db2)
        .general("max_user_client_connections = 2")
        .start();
    let a = pgweir.connect_as(&SCRAM_USER, &db1).await;
    let b = pgweir.connect_as(&SCRAM_USER, &db2).await;
    let message = refused(&pgweir, &SCRAM_USER, &db1).await;
    assert!(message.contains("max_user_client_connections"), "{message}");
    assert!(message.contains(SCRAM_USER.name), "{message}");

    let other_user = pgweir.connect_as(&MD5_USER, &db1).await;
    works(&other_user).await;
    let other_user2 = pgweir.connect_as(&MD5_USER, &db2).await;
    works(&other_user2).await;

    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = pgweir.connect_as(&SCRAM_USER, &db2).await;
    works(&a).await;
    works(&c).await;
}

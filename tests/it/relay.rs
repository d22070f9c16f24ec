//! Relaying queries through pgweir in transaction mode: simple and extended
//! protocol, pipelining, errors in and out of transactions, notices and
//! notifications, and a 100 MB value that must stream rather than be buffered.

use crate::common;

use std::time::Duration;

use futures_util::future::join_all;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

use common::{
    connect_with_messages, expect_sqlstate, peak_rss_kib, within, Pgweir, SCRAM_USER, TEST_DB,
};

/// Values of the first column of every row a simple query returned.
fn simple_values(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn simple_query_single_and_multi_statement() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    let one = client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(simple_values(&one), ["1"]);

    let many = client
        .simple_query("SELECT 'a'; SELECT 'b' UNION ALL SELECT 'c'; SELECT 42")
        .await
        .unwrap();
    assert_eq!(simple_values(&many), ["a", "b", "c", "42"]);
    let completes = many
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 3, "one CommandComplete per statement");
}

#[tokio::test]
async fn multi_statement_with_error_stops_and_connection_recovers() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    let err = client.simple_query("SELECT 1; SELECT 1/0; SELECT 3").await;
    assert_eq!(expect_sqlstate(err, "division by zero").code(), "22012");
    let after = client.simple_query("SELECT 'still fine'").await.unwrap();
    assert_eq!(simple_values(&after), ["still fine"]);
}

#[tokio::test]
async fn extended_query_unnamed_and_named_statements() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let mut client = pgweir.connect().await;
    let rows = client
        .query_typed(
            "SELECT $1::int4 + 1, $2::text",
            &[(&41i32, Type::INT4), (&"hi", Type::TEXT)],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 42);
    assert_eq!(rows[0].get::<_, &str>(1), "hi");

    let row = client
        .query_one("SELECT $1::int8 * 2", &[&21i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);

    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT generate_series(1, $1::int4)")
        .await
        .unwrap();
    for n in [1i32, 5, 100] {
        assert_eq!(tx.query(&stmt, &[&n]).await.unwrap().len(), n as usize);
    }
    let sum: i64 = tx
        .query_one("SELECT sum(x) FROM generate_series(1, 1000) x", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 500500);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn pipelined_queries_from_one_client_keep_their_order() {
    let pgweir = Pgweir::builder().pool_size(2).start();
    let client = pgweir.connect().await;
    let futures = (0..200i32).map(|i| {
        let client = &client;
        async move {
            let rows = client
                .query_typed("SELECT $1::int4 * 2", &[(&i, Type::INT4)])
                .await
                .unwrap();
            (i, rows[0].get::<_, i32>(0))
        }
    });
    let results = within(30, "200 pipelined queries", join_all(futures)).await;
    for (i, doubled) in results {
        assert_eq!(doubled, i * 2, "response {i} belongs to another query");
    }
}

#[tokio::test]
async fn pipelined_error_affects_only_its_own_sync() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    let (a, b, c) = within(10, "pipeline with an error", async {
        tokio::join!(
            client.query_typed("SELECT 1::int4", &[]),
            client.query_typed("SELECT 1/0", &[]),
            client.query_typed("SELECT 3::int4", &[]),
        )
    })
    .await;
    assert_eq!(a.unwrap()[0].get::<_, i32>(0), 1);
    assert_eq!(expect_sqlstate(b, "1/0 in a pipeline").code(), "22012");
    assert_eq!(c.unwrap()[0].get::<_, i32>(0), 3);
}

#[tokio::test]
async fn error_outside_a_transaction_leaves_the_client_usable() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    let err = client
        .query_typed("SELECT * FROM no_such_table_anywhere", &[])
        .await;
    assert_eq!(expect_sqlstate(err, "missing table").code(), "42P01");
    let err = client.batch_execute("SELEKT 1").await;
    assert_eq!(expect_sqlstate(err, "syntax error").code(), "42601");
    let rows = client.query_typed("SELECT 7::int4", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 7);
}

#[tokio::test]
async fn error_inside_a_transaction_aborts_it_until_rollback() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    client.batch_execute("BEGIN").await.unwrap();
    let err = client.batch_execute("SELECT 1/0").await;
    assert_eq!(expect_sqlstate(err, "error in transaction").code(), "22012");
    let err = client.query_typed("SELECT 1", &[]).await;
    assert_eq!(
        expect_sqlstate(err, "statement in aborted transaction").code(),
        "25P02"
    );
    client.batch_execute("ROLLBACK").await.unwrap();
    let rows = client.query_typed("SELECT 8::int4", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 8);
}

#[tokio::test]
async fn a_100_mb_bytea_round_trips_without_pgweir_buffering_it() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    client.query_typed("SELECT 1", &[]).await.unwrap();
    let before = peak_rss_kib(pgweir.pid());

    let value: Vec<u8> = (0..100 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let rows = within(
        120,
        "100 MB round trip",
        client.query_typed("SELECT $1::bytea", &[(&value, Type::BYTEA)]),
    )
    .await
    .unwrap();
    let back: &[u8] = rows[0].get(0);
    assert_eq!(back.len(), value.len());
    assert!(
        back == value.as_slice(),
        "the 100 MB value changed on the way"
    );

    let grown_mib = peak_rss_kib(pgweir.pid()).saturating_sub(before) / 1024;
    eprintln!("pgweir peak RSS grew by {grown_mib} MiB for a 100 MB value");
    assert!(
        grown_mib < 20,
        "pgweir's peak memory grew by {grown_mib} MiB for a 100 MB value: it must stream, not buffer"
    );
}

#[tokio::test]
async fn notices_are_relayed() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let (client, mut messages) = connect_with_messages(&config).await;
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END $$")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), messages.recv()).await {
        if let AsyncMessage::Notice(notice) = msg {
            seen.push(notice.message().to_string());
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, ["hello 42", "careful"]);
}

#[tokio::test]
async fn notifications_reach_a_listening_session_mode_client() {
    let pgweir = Pgweir::builder().pool_mode("session").pool_size(2).start();
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let (listener, mut messages) = connect_with_messages(&config).await;
    listener.batch_execute("LISTEN pgweir_chan").await.unwrap();
    let notifier = pgweir.connect().await;
    notifier
        .batch_execute("NOTIFY pgweir_chan, 'ping'")
        .await
        .unwrap();
    let note = within(5, "notification", async {
        loop {
            match messages.recv().await.expect("connection open") {
                AsyncMessage::Notification(n) => return n,
                _ => continue,
            }
        }
    })
    .await;
    assert_eq!(note.channel(), "pgweir_chan");
    assert_eq!(note.payload(), "ping");
}

#[tokio::test]
async fn notification_to_self_in_transaction_mode() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let (client, mut messages) = connect_with_messages(&config).await;
    client
        .simple_query("LISTEN self_chan; NOTIFY self_chan, 'me'")
        .await
        .unwrap();
    let note = within(5, "notification to self", async {
        loop {
            if let AsyncMessage::Notification(n) = messages.recv().await.expect("open") {
                return n;
            }
        }
    })
    .await;
    assert_eq!(note.payload(), "me");
}

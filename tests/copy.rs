//! COPY through pgweir in both directions, including the ways a COPY can fail
//! halfway: bad data from the client, the client giving up (CopyFail), and the
//! server erroring while it streams rows out.

mod common;

use bytes::Bytes;
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::Client;

use common::{expect_sqlstate, within, Pgweir};

async fn make_table(client: &Client, table: &str) {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (x int, s text)"
        ))
        .await
        .unwrap();
}

async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn copy_from_stdin_loads_every_row() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    make_table(&client, "copy_in_ok").await;
    let sink = client
        .copy_in("COPY copy_in_ok (x, s) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    for chunk in 0..100 {
        let rows: String = (0..1000)
            .map(|i| format!("{}\trow {i}\n", chunk * 1000 + i))
            .collect();
        sink.send(Bytes::from(rows)).await.unwrap();
    }
    let copied = within(30, "COPY FROM STDIN", sink.finish()).await.unwrap();
    assert_eq!(copied, 100_000);
    assert_eq!(count(&client, "copy_in_ok").await, 100_000);
}

#[tokio::test]
async fn copy_to_stdout_streams_every_row() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    let stream = client
        .copy_out("COPY (SELECT g, 'row ' || g FROM generate_series(1, 100000) g) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = within(30, "COPY TO STDOUT", stream.try_collect())
        .await
        .unwrap();
    let text: Vec<u8> = chunks.concat();
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 100_000);
    assert_eq!(lines[99_999], b"100000\trow 100000");
}

#[tokio::test]
async fn bad_data_mid_copy_fails_the_copy_and_keeps_the_client() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    make_table(&client, "copy_in_bad").await;
    let sink = client
        .copy_in("COPY copy_in_bad (x, s) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\tgood\n2\tgood\n"))
        .await
        .unwrap();
    sink.send(Bytes::from_static(b"not-a-number\tbad\n"))
        .await
        .unwrap();
    let _ = sink.send(Bytes::from_static(b"4\tnever\n")).await;
    let result = within(10, "failing COPY", sink.finish()).await;
    assert_eq!(
        expect_sqlstate(result, "COPY with a bad row").code(),
        "22P02"
    );
    assert_eq!(
        count(&client, "copy_in_bad").await,
        0,
        "a failed COPY loads nothing"
    );
}

#[tokio::test]
async fn client_abandoning_copy_sends_copy_fail_and_keeps_the_client() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    make_table(&client, "copy_in_abandoned").await;
    {
        let sink = client
            .copy_in("COPY copy_in_abandoned (x, s) FROM STDIN")
            .await
            .unwrap();
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\tpartial\n"))
            .await
            .unwrap();
        // Dropping the sink unfinished makes tokio-postgres send CopyFail.
    }
    let n = within(
        10,
        "query after CopyFail",
        count(&client, "copy_in_abandoned"),
    )
    .await;
    assert_eq!(n, 0);
}

#[tokio::test]
async fn server_error_mid_copy_out_reaches_the_client() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    let stream = client
        .copy_out("COPY (SELECT 1 / (5000 - g) FROM generate_series(1, 10000) g) TO STDOUT")
        .await;
    let result = match stream {
        Ok(stream) => within(10, "failing COPY TO", stream.try_collect::<Vec<Bytes>>()).await,
        Err(err) => Err(err),
    };
    assert_eq!(
        expect_sqlstate(result, "division by zero mid-COPY").code(),
        "22012"
    );
    let row = client.query_one("SELECT 5", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 5);
}

//! COPY through pgweir in both directions, including the ways a COPY can fail
//! halfway: bad data from the client, the client giving up (CopyFail), and the
//! server erroring while it streams rows out.

use crate::common;

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
    // Keep streaming after the bad row: the server has already failed the COPY and
    // discards the rest, which must not confuse pgweir's bookkeeping.
    let tail = Bytes::from(
        (4..2000)
            .map(|i| format!("{i}\tlate\n"))
            .collect::<String>(),
    );
    for _ in 0..200 {
        if sink.send(tail.clone()).await.is_err() {
            break;
        }
    }
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

/// Runs psql with `args` through pgweir and returns (success, stdout, stderr).
async fn psql(pgweir: &Pgweir, args: &[&str]) -> (bool, String, String) {
    let mut cmd = common::pg_tool("psql", common::SCRAM_USER.password);
    cmd.args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .arg(pgweir.conninfo(common::SCRAM_USER.name, common::TEST_DB));
    let out = common::run_tool(cmd).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn psql_copy_uses_the_simple_protocol_both_ways() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    make_table(&client, "psql_copy").await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.tsv");
    let rows: String = (0..5000).map(|i| format!("{i}\tline {i}\n")).collect();
    std::fs::write(&good, rows).unwrap();
    let copy_in = format!("\\copy psql_copy FROM '{}'", good.display());
    let (ok, _, err) = psql(&pgweir, &["-c", &copy_in]).await;
    assert!(ok, "\\copy FROM failed: {err}");
    assert_eq!(count(&client, "psql_copy").await, 5000);

    let out = dir.path().join("out.tsv");
    let copy_out = format!(
        "\\copy (SELECT * FROM psql_copy ORDER BY x) TO '{}'",
        out.display()
    );
    let (ok, _, err) = psql(&pgweir, &["-c", &copy_out]).await;
    assert!(ok, "\\copy TO failed: {err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 5000);

    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "1\tok\nnot-a-number\tbad\n").unwrap();
    let copy_bad = format!("\\copy psql_copy FROM '{}'", bad.display());
    let (ok, _, err) = psql(&pgweir, &["-c", &copy_bad]).await;
    assert!(
        !ok && err.contains("invalid input syntax"),
        "bad \\copy: {err}"
    );
    let (ok, out, err) = psql(&pgweir, &["-c", "SELECT count(*) FROM psql_copy"]).await;
    assert!(ok, "psql after a failed \\copy: {err}");
    assert_eq!(out.trim(), "5000");
}

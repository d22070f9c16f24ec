//! Clients that mean harm, or are broken, cost a bounded amount (issue 17): one that
//! pipelines queries and never reads what comes back is simply not read from beyond a
//! bound, as Postgres does not read it either, so pgweir's memory hardly grows. Checked by
//! counting bytes (resident memory, bytes written), never by how long things take.

use crate::common;

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::wire::Wire;
use common::{Pgweir, SCRAM_USER, TEST_DB};

/// Resident memory of a process now, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc status")
}

/// A logged-in raw connection as `wire` makes it, then its bare socket.
async fn logged_in(pgweir: &Pgweir) -> TcpStream {
    let (wire, _) = Wire::startup(pgweir.port, SCRAM_USER.name, TEST_DB).await;
    wire.into_stream()
}

/// Writes `select 1` Queries until pgweir stops taking them (a write that does not finish
/// in 5 s: nobody reads) or `most` are written; returns how many were written.
async fn flood(socket: &mut TcpStream, most: usize) -> usize {
    let one: Vec<u8> = [&b"Q"[..], &13u32.to_be_bytes(), b"select 1\0"].concat();
    let chunk = one.repeat(10_000);
    let mut written = 0;
    while written < most {
        let write = socket.write_all(&chunk);
        if tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .is_err()
        {
            break;
        }
        written += 10_000;
    }
    written
}

/// Three clients each pipeline up to two million queries and read nothing: pgweir stops
/// reading them once they are owed a bounded number of answers, its resident memory grows
/// by a few megabytes at most (it was over 300 MB), other clients are served meanwhile,
/// and the flooding clients' servers are not reused dirty.
#[tokio::test]
async fn clients_that_never_read_cost_a_bounded_amount() {
    let pgweir = Pgweir::builder().auth_type("trust").pool_size(4).start();
    let warm = pgweir.connect().await;
    warm.simple_query("SELECT 1").await.unwrap();
    let before = rss_kib(pgweir.pid());
    let mut floods = Vec::new();
    for _ in 0..3 {
        let mut socket = logged_in(&pgweir).await;
        floods.push(tokio::spawn(async move {
            let written = flood(&mut socket, 2_000_000).await;
            (written, socket)
        }));
    }
    let mut sockets = Vec::new();
    for f in floods {
        let (written, socket) = f.await.unwrap();
        assert!(
            written < 2_000_000,
            "pgweir took all {written} queries unread"
        );
        sockets.push(socket);
    }
    let grown = rss_kib(pgweir.pid()).saturating_sub(before);
    assert!(
        grown < 24 * 1024,
        "resident memory grew by {grown} KiB for three floods"
    );
    let other = pgweir.connect().await;
    other
        .simple_query("SELECT 'served meanwhile'")
        .await
        .unwrap();
    drop(sockets);
    let after = pgweir.connect().await;
    let rows = after.simple_query("SELECT 1").await.unwrap();
    assert!(!rows.is_empty());
}

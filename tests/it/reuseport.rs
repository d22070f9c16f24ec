//! Several pgweir processes on one port (`so_reuseport`): the kernel spreads new clients
//! over them, each serves its own, and when one dies the others take every new client.
//! Without the setting a second process cannot listen there at all.

use crate::common;

use std::process::Command;

use common::{within, Pgweir};

/// Clients that log in and run a query, one connection (and source port) each.
async fn clients_served(pgweir: &Pgweir, n: usize) -> usize {
    let mut served = 0;
    for _ in 0..n {
        let client = pgweir.connect().await;
        let row = within(10, "SELECT 1", client.query_one("SELECT 1", &[])).await;
        if row.is_ok_and(|r| r.get::<_, i32>(0) == 1) {
            served += 1;
        }
    }
    served
}

fn logins(pgweir: &Pgweir) -> usize {
    pgweir.log().matches("client logged in").count()
}

#[tokio::test]
async fn processes_share_a_port_and_survive_each_other() {
    let builder = || Pgweir::builder().general("so_reuseport = true");
    let mut first = builder().start();
    let second = builder().start_sharing(first.port);

    assert_eq!(clients_served(&first, 60).await, 60);
    let (a, b) = (logins(&first), logins(&second));
    assert_eq!(a + b, 60, "every login is in one log or the other");
    assert!(
        a > 0 && b > 0,
        "the kernel spread clients over both: {a} and {b}"
    );

    first.signal("KILL");
    // Connections the kernel queued on the dying process's socket are reset with it.
    while first.exited().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(clients_served(&second, 20).await, 20);
    assert_eq!(
        logins(&second),
        b + 20,
        "the survivor took every new client"
    );
}

#[test]
fn without_so_reuseport_a_second_process_cannot_listen() {
    let first = Pgweir::start();
    let toml = std::fs::read_to_string(&first.config_path).expect("read the config");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pgweir.toml");
    std::fs::write(&path, toml).expect("write the config");
    let out = Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run pgweir");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("cannot listen on 127.0.0.1"), "{log}");
}

/// A CancelRequest goes to whichever process the kernel picks; one that does not know the
/// key passes it to the others on the port, so every cancel reaches its query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_process_serving_the_query() {
    let builder = || {
        Pgweir::builder()
            .general("so_reuseport = true")
            .pool_size(8)
    };
    let first = builder().start();
    let _second = builder().start_sharing(first.port);
    let mut running = Vec::new();
    for _ in 0..6 {
        let client = first.connect().await;
        let token = client.cancel_token();
        let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
        running.push((token, query));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for (token, query) in running {
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("send the cancel");
        let ended = within(10, "the cancelled query", query).await;
        let err = ended
            .expect("query task")
            .expect_err("the query was cancelled");
        assert_eq!(
            common::sqlstate(&err),
            Some(tokio_postgres::error::SqlState::QUERY_CANCELED),
            "{err:?}"
        );
    }
}

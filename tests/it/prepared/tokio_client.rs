//! tokio-postgres prepared statements through pgweir: many clients, each preparing its own
//! statements once and running them in transaction after transaction, on a pool smaller
//! than the number of clients, in transaction and in statement mode.

use crate::common;

use std::collections::HashSet;

use tokio_postgres::{Client, GenericClient, Statement};

use common::{backend_pid, within, Pgweir};

/// Runs a client's three statements once on `client` (a client or a transaction);
/// returns the backend pid the last one reported.
async fn run_statements(client: &impl GenericClient, stmts: &[Statement], i: i32, k: i32) -> i32 {
    let sum: i32 = client.query_one(&stmts[0], &[&i]).await.unwrap().get(0);
    assert_eq!(sum, i + k);
    let label: String = client
        .query_one(&stmts[1], &[&i.to_string()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(label, format!("{i}-{k}"));
    client.query_one(&stmts[2], &[]).await.unwrap().get(0)
}

/// Prepares three statements, two with texts of this client's own, and runs them 30
/// times, every third time inside a transaction if `transactions`; returns the pids
/// the statements ran on.
async fn prepared_client(mut client: Client, k: i32, transactions: bool) -> HashSet<i32> {
    let mut stmts = Vec::new();
    for sql in [
        format!("SELECT $1::int + {k}"),
        format!("SELECT $1::text || '-{k}'"),
        "SELECT pg_backend_pid()".into(),
    ] {
        stmts.push(client.prepare(&sql).await.unwrap());
    }
    let mut pids = HashSet::new();
    for i in 0..30 {
        if transactions && i % 3 == 0 {
            let tx = client.transaction().await.unwrap();
            pids.insert(run_statements(&tx, &stmts, i, k).await);
            tx.commit().await.unwrap();
        } else {
            pids.insert(run_statements(&client, &stmts, i, k).await);
        }
    }
    pids
}

/// Runs `clients` prepared-statement clients at once; asserts that at least one of
/// them executed its statements on more than one server.
async fn concurrent_prepared_clients(pgweir: &Pgweir, clients: i32, transactions: bool) {
    let mut tasks = Vec::new();
    for k in 0..clients {
        let client = pgweir.connect().await;
        tasks.push(tokio::spawn(prepared_client(client, k, transactions)));
    }
    let mut most = 0;
    for task in tasks {
        let pids = within(120, "prepared clients", task).await.unwrap();
        most = most.max(pids.len());
    }
    assert!(most >= 2, "no client's statements ever changed server");
}

#[tokio::test]
async fn tokio_postgres_prepared_statements_across_transactions() {
    let pgweir = Pgweir::builder().pool_size(2).start();
    concurrent_prepared_clients(&pgweir, 10, true).await;
    let client = pgweir.connect().await;
    assert!(backend_pid(&client).await > 0, "pgweir still serves");
}

#[tokio::test]
async fn tokio_postgres_prepared_statements_in_statement_mode() {
    let pgweir = Pgweir::builder()
        .pool_size(2)
        .pool_mode("statement")
        .start();
    concurrent_prepared_clients(&pgweir, 10, false).await;
}

//! How pgweir hands server connections to clients: pgbench under load onto a small
//! pool, first-come-first-served waiting, lazy opening and reuse, and the three
//! pool modes (session with `DISCARD ALL`, transaction, statement).

use crate::common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;

use common::{
    backend_pid, cluster, pgbench, report_number, run_tool, watch_peak, within, Pgweir, SCRAM_USER,
    TEST_DB,
};

async fn pgbench_run(pgweir: &Pgweir, db: &str, mode: &str) {
    let (stop, watcher) = watch_peak(Some(SCRAM_USER.name), db.to_string());
    let out = run_tool(pgbench(
        pgweir.port,
        db,
        &["-c", "200", "-j", "2", "-T", "10", "-M", mode],
    ))
    .await;
    stop.store(true, Ordering::Relaxed);
    let peak = watcher.await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pgbench -M {mode} failed ({}):\n{report}\n{errors}",
        out.status
    );
    let done = report_number(&report, "number of transactions actually processed:").unwrap_or(0);
    assert!(done > 0, "pgbench -M {mode} processed nothing:\n{report}");
    if let Some(failed) = report_number(&report, "number of failed transactions:") {
        assert_eq!(failed, 0, "pgbench -M {mode} had failures:\n{report}");
    }
    assert!(
        peak >= 1,
        "the watcher never saw a backend: is it watching the right database?"
    );
    assert!(
        peak <= 10,
        "pool of 10 but {peak} backends in pg_stat_activity (-M {mode})"
    );
    eprintln!("pgbench -M {mode}: peak backends {peak}\n{report}");
}

#[tokio::test]
async fn pgbench_200_clients_onto_a_pool_of_10() {
    let _heavy = common::heavy().await;
    let db = cluster().create_database("bench");
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(10)
        .max_client_conn(400)
        .start();
    let init = run_tool(pgbench(pgweir.port, &db, &["-i", "-q"])).await;
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    pgbench_run(&pgweir, &db, "simple").await;
    pgbench_run(&pgweir, &db, "extended").await;
}

#[tokio::test]
async fn transaction_mode_shares_one_server_between_clients() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let a = pgweir.connect().await;
    let b = pgweir.connect().await;
    assert_eq!(backend_pid(&a).await, backend_pid(&b).await);
    assert_eq!(backend_pid(&b).await, backend_pid(&a).await);
}

#[tokio::test]
async fn servers_open_lazily_and_are_reused() {
    let db = cluster().create_database("lazy");
    let pgweir = Pgweir::builder().database(&db).pool_size(5).start();
    let admin = cluster().admin().await;
    assert_eq!(
        cluster().backend_count(&admin, SCRAM_USER.name, &db).await,
        0
    );
    for _ in 0..20 {
        let client = pgweir.connect_as(&SCRAM_USER, &db).await;
        client.query_one("SELECT 1", &[]).await.unwrap();
    }
    let open = cluster().backend_count(&admin, SCRAM_USER.name, &db).await;
    // One server suffices; a second may open if a client outran a check-in.
    assert!(
        (1..=2).contains(&open),
        "20 clients one after another need one server, found {open}"
    );
}

#[tokio::test]
async fn waiting_clients_are_served_first_come_first_served() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let holder = pgweir.connect().await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..4 {
        let client = pgweir.connect().await;
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            client.simple_query("SELECT 1").await.unwrap();
            order.lock().unwrap().push(i);
        }));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        order.lock().unwrap().is_empty(),
        "a client ran while the only server was in a transaction"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    for waiter in waiters {
        within(10, "waiting client", waiter).await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
}

#[tokio::test]
async fn session_mode_resets_the_server_with_discard_all() {
    let pgweir = Pgweir::builder().pool_mode("session").pool_size(1).start();
    let first = pgweir.connect().await;
    first
        .batch_execute("SET statement_timeout = '4321'; PREPARE leftover AS SELECT 1")
        .await
        .unwrap();
    let pid = backend_pid(&first).await;
    drop(first);

    let next = within(10, "next session client", pgweir.connect()).await;
    assert_eq!(
        backend_pid(&next).await,
        pid,
        "pool of 1: the same server must be reused"
    );
    let timeout: String = next
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "0", "a SET leaked from the previous session");
    let leftover = next.batch_execute("EXECUTE leftover").await;
    assert_eq!(
        common::expect_sqlstate(leftover, "prepared statement").code(),
        "26000"
    );
}

#[tokio::test]
async fn session_mode_holds_the_server_until_the_client_leaves() {
    let pgweir = Pgweir::builder().pool_mode("session").pool_size(1).start();
    check_session_hold(&pgweir, TEST_DB).await;
}

#[tokio::test]
async fn per_database_pool_mode_overrides_the_default() {
    let pgweir = Pgweir::builder()
        .extra(&format!(
            "[databases.session_db]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{TEST_DB}\"\n\
             pool_mode = \"session\"\npool_size = 1\n",
            cluster().port
        ))
        .start();
    check_session_hold(&pgweir, "session_db").await;
}

/// With one server in session mode, a second client waits until the first leaves.
async fn check_session_hold(pgweir: &Pgweir, db: &str) {
    let first = pgweir.connect_as(&SCRAM_USER, db).await;
    first.batch_execute("SET work_mem = '7MB'").await.unwrap();
    let second = pgweir.connect_as(&SCRAM_USER, db).await;
    let waiting = tokio::spawn(async move {
        second
            .query_one("SHOW work_mem", &[])
            .await
            .map(|r| r.get::<_, String>(0))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "session mode gave the held server to a second client"
    );
    let kept: String = first.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(kept, "7MB", "session state must stay with its client");
    drop(first);
    let seen = within(10, "second session client", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(seen, "7MB", "work_mem leaked to the next session");
}

#[tokio::test]
async fn statement_mode_refuses_explicit_transactions() {
    let pgweir = Pgweir::builder()
        .pool_mode("statement")
        .pool_size(1)
        .start();
    let client = pgweir.connect().await;
    let row = client.query_one("SELECT 11", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 11);
    let refused = client.batch_execute("BEGIN").await;
    assert!(refused.is_err(), "statement mode accepted BEGIN");
    let other = pgweir.connect().await;
    let row = within(
        10,
        "statement mode after a refusal",
        other.query_one("SELECT 12", &[]),
    )
    .await
    .unwrap();
    assert_eq!(row.get::<_, i32>(0), 12);
}

#[tokio::test]
async fn statement_mode_serves_many_clients_on_one_server() {
    let pgweir = Pgweir::builder()
        .pool_mode("statement")
        .pool_size(1)
        .start();
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(pgweir.connect().await);
    }
    let pids: Vec<i32> = futures_util::future::join_all(clients.iter().map(backend_pid)).await;
    assert!(
        pids.windows(2).all(|w| w[0] == w[1]),
        "pool of 1 but pids {pids:?}"
    );
}

/// One client's workload: statements whose answers only make sense for it. Uses
/// unnamed statements: named ones do not survive between transactions in this mode.
async fn own_answers(client: Client, id: i32) {
    use tokio_postgres::types::Type;
    for round in 0..20 {
        let mine = format!("{id}-{round}");
        let rows = client
            .query_typed(
                "SELECT set_config('pgweir.me', $1, false)",
                &[(&mine, Type::TEXT)],
            )
            .await
            .unwrap();
        assert_eq!(
            rows[0].get::<_, &str>(0),
            mine,
            "answer meant for another client"
        );
        let n = id * 1000 + round;
        let rows = client
            .query_typed("SELECT $1::int4", &[(&n, Type::INT4)])
            .await
            .unwrap();
        assert_eq!(
            rows[0].get::<_, i32>(0),
            n,
            "answer meant for another client"
        );
    }
}

#[tokio::test]
async fn fifty_clients_on_three_servers_get_only_their_own_answers() {
    let pgweir = Pgweir::builder().pool_size(3).start();
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(pgweir.connect().await);
    }
    let work = clients
        .into_iter()
        .enumerate()
        .map(|(id, client)| tokio::spawn(own_answers(client, id as i32)));
    for result in within(
        60,
        "50 concurrent clients",
        futures_util::future::join_all(work),
    )
    .await
    {
        result.expect("a client's task panicked");
    }
}

#[tokio::test]
async fn statement_mode_handles_pipelined_statements() {
    use tokio_postgres::types::Type;
    let pgweir = Pgweir::builder()
        .pool_mode("statement")
        .pool_size(1)
        .start();
    let client = pgweir.connect().await;
    let queries = (0..30i32).map(|i| {
        let client = &client;
        async move {
            let rows = client
                .query_typed("SELECT $1::int4 + 1", &[(&i, Type::INT4)])
                .await
                .unwrap();
            assert_eq!(rows[0].get::<_, i32>(0), i + 1);
        }
    });
    within(
        20,
        "pipelined statements",
        futures_util::future::join_all(queries),
    )
    .await;
}

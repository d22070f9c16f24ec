//! Postgres going away under a running pgweir: stopped (clients wait for it up to
//! `query_wait_timeout`, then get an error that says why), restarted (only the
//! transactions that were running fail, pools recover with no operator action, idle and
//! queued clients never notice), and no commit acknowledged to a client is lost.
//!
//! These tests stop and restart Postgres, so they have a cluster of their own ([`cluster`]),
//! and take [`SERIAL`] so that only one disturbs it at a time.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_postgres::Client;

use common::{
    try_backend_pid, within, Cluster, LazyCluster, Pgweir, PgweirBuilder, SCRAM_USER, TEST_DB,
};

/// Held for the whole of each test: they all stop or restart [`cluster`].
static SERIAL: Mutex<()> = Mutex::const_new(());

/// This module's own cluster: stopping the shared one would fail every other test's
/// connections.
fn cluster() -> &'static Cluster {
    static OWN: LazyCluster = LazyCluster::new();
    OWN.get()
}

/// pgweir in front of [`cluster`].
fn builder() -> PgweirBuilder {
    Pgweir::builder().on(cluster())
}

/// Runs a blocking cluster operation (pg_ctl) off the async runtime.
async fn on_cluster(op: fn(&Cluster)) {
    tokio::task::spawn_blocking(move || op(cluster()))
        .await
        .expect("pg_ctl thread");
}

#[tokio::test]
async fn postgres_down_gives_errors_at_query_wait_timeout_then_recovers() {
    let _serial = SERIAL.lock().await;
    let pgweir = builder()
        .general("server_connect_timeout = \"1s\"")
        .general("server_login_retry = \"300ms\"")
        .pool("query_wait_timeout = \"1500ms\"")
        .start();
    let idle = pgweir.connect().await;
    let before = try_backend_pid(&idle).await.unwrap();

    on_cluster(Cluster::stop).await;
    let since = Instant::now();
    let result = within(10, "a client while Postgres is down", async {
        let client = pgweir
            .try_connect(SCRAM_USER.name, SCRAM_USER.password, TEST_DB)
            .await?;
        client.simple_query("SELECT 1").await.map(|_| ())
    })
    .await;
    let took = since.elapsed();
    on_cluster(Cluster::start_again).await;

    let err = result.expect_err("Postgres is down; the query cannot succeed");
    let code = common::sqlstate(&err).map(|c| c.code().to_string());
    assert!(
        code.as_deref().is_some_and(|c| c.starts_with("08")),
        "a connection-class (08) error expected: {err:?}"
    );
    let message = err.as_db_error().map_or("", |db| db.message());
    assert!(
        message.contains("query_wait_timeout") && message.contains("last login"),
        "the error names the wait and the failed login: {message}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "query_wait_timeout is 1.5s but the client waited {took:?}"
    );

    // Past server_login_retry, with no operator action: the client that stayed idle
    // through it all carries on, on a new server.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = within(10, "the idle client's query", try_backend_pid(&idle))
        .await
        .expect("an idle client must not notice that Postgres was restarted");
    assert_ne!(after, before);
    let fresh = pgweir.connect().await;
    try_backend_pid(&fresh)
        .await
        .expect("a new client after the restart");
}

/// pgweir with `min_pool_size = 2` (pool size 3) on a fresh database whose pool is
/// warm: two servers open, no client connected.
async fn warm_pool(admin: &Client) -> (Pgweir, String) {
    let db = cluster().create_database("restartmin");
    let pgweir = builder()
        .database(&db)
        .pool_size(3)
        .pool("min_pool_size = 2")
        .general("server_login_retry = \"200ms\"")
        .start();
    let client = pgweir.connect_as(&SCRAM_USER, &db).await;
    try_backend_pid(&client).await.unwrap();
    drop(client);
    let warm = cluster()
        .wait_backends(admin, SCRAM_USER.name, &db, 2, Duration::from_secs(3))
        .await;
    assert_eq!(warm, 2, "min_pool_size = 2 before the restart");
    (pgweir, db)
}

/// Idle clients hold no server, so a restart must be invisible to them: their next
/// query gets a new server, at worst after `server_login_retry` when a login met
/// Postgres still shutting down or starting.
#[tokio::test]
async fn a_restart_is_invisible_to_idle_clients() {
    let _serial = SERIAL.lock().await;
    let db = cluster().create_database("restartidle");
    let pgweir = builder().database(&db).pool_size(3).start();
    let clients = [
        pgweir.connect_as(&SCRAM_USER, &db).await,
        pgweir.connect_as(&SCRAM_USER, &db).await,
    ];
    let mut before = Vec::new();
    for client in &clients {
        client.batch_execute("BEGIN").await.unwrap();
        before.push(try_backend_pid(client).await.unwrap());
    }
    for client in &clients {
        client.batch_execute("COMMIT").await.unwrap();
    }

    on_cluster(Cluster::restart).await;
    for client in &clients {
        let pid = within(10, "a query after the restart", try_backend_pid(client))
            .await
            .expect("a client idle through a restart must not see an error");
        assert!(!before.contains(&pid), "a server from before the restart");
    }
    let both = tokio::join!(try_backend_pid(&clients[0]), try_backend_pid(&clients[1]));
    both.0.expect("concurrent queries after the restart");
    both.1.expect("concurrent queries after the restart");
}

#[tokio::test]
async fn min_pool_size_refills_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let admin = cluster().admin().await;
    let (pgweir, db) = warm_pool(&admin).await;
    drop(admin);
    // A client stays connected (idle, holding no server), as PgBouncer refills
    // min_pool_size only for pools that have clients.
    let idle = pgweir.connect_as(&SCRAM_USER, &db).await;

    on_cluster(Cluster::restart).await;
    let admin = cluster().admin().await;
    let refilled = cluster()
        .wait_backends(&admin, SCRAM_USER.name, &db, 2, Duration::from_secs(5))
        .await;
    assert_eq!(
        refilled, 2,
        "min_pool_size must be back after a restart without waiting for a query"
    );
    // Past server_login_retry (200ms) the connected client carries on.
    tokio::time::sleep(Duration::from_millis(400)).await;
    within(10, "the idle client's query", try_backend_pid(&idle))
        .await
        .expect("the client that stayed connected through the restart");
}

/// What the writers share: when to stop, whether the restart is over, and how many
/// commits were acknowledged so far.
#[derive(Clone, Default)]
struct Progress {
    stop: Arc<AtomicBool>,
    restarted: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
}

/// Inserts ids `base..` one autocommit statement at a time until told to stop,
/// reconnecting after errors; returns the ids whose INSERT was acknowledged, and how
/// many of those came after the restart.
async fn writer(
    pgweir: Arc<Pgweir>,
    db: String,
    base: i32,
    progress: Progress,
) -> (Vec<i32>, usize) {
    let mut acked = Vec::new();
    let mut after_restart = 0;
    let mut client: Option<Client> = None;
    let mut next = base;
    while !progress.stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_ref() else {
            client = pgweir
                .try_connect(SCRAM_USER.name, SCRAM_USER.password, &db)
                .await
                .ok();
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        let id = next;
        next += 1;
        let sql = format!("INSERT INTO acked VALUES ({id})");
        match c.simple_query(&sql).await {
            Ok(_) => {
                acked.push(id);
                progress.acks.fetch_add(1, Ordering::Relaxed);
                if progress.restarted.load(Ordering::Relaxed) {
                    after_restart += 1;
                }
            }
            Err(_) => client = None,
        }
    }
    (acked, after_restart)
}

#[tokio::test]
async fn no_acknowledged_commit_is_lost_across_a_restart() {
    let _serial = SERIAL.lock().await;
    let db = cluster().create_database("durable");
    cluster().psql(
        &db,
        "CREATE TABLE acked (id int PRIMARY KEY); GRANT ALL ON acked TO PUBLIC",
    );
    let pgweir = Arc::new(
        builder()
            .database(&db)
            .pool_size(4)
            .general("server_login_retry = \"100ms\"")
            .start(),
    );
    let open_tx = pgweir.connect_as(&SCRAM_USER, &db).await;
    open_tx
        .batch_execute("BEGIN; INSERT INTO acked VALUES (-1)")
        .await
        .unwrap();

    let progress = Progress::default();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            tokio::spawn(writer(
                pgweir.clone(),
                db.clone(),
                w * 1_000_000,
                progress.clone(),
            ))
        })
        .collect();
    within(20, "the writers' first commits", async {
        while progress.acks.load(Ordering::Relaxed) < 30 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    on_cluster(Cluster::restart).await;
    progress.restarted.store(true, Ordering::Relaxed);
    let commit = within(10, "COMMIT of a transaction cut by the restart", async {
        open_tx.batch_execute("COMMIT").await
    })
    .await;
    assert!(
        commit.is_err(),
        "COMMIT of a transaction whose server was restarted away must fail"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    progress.stop.store(true, Ordering::Relaxed);

    let mut acked = BTreeSet::new();
    let mut after_restart = 0;
    for w in writers {
        let (ids, after) = within(15, "a writer to stop", w).await.unwrap();
        acked.extend(ids);
        after_restart += after;
    }
    let admin = cluster().admin_on(&db).await;
    let stored: BTreeSet<i32> = admin
        .query("SELECT id FROM acked", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    eprintln!(
        "writers: {} commits acknowledged, {after_restart} after the restart; {} rows stored",
        acked.len(),
        stored.len()
    );
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged commits are missing after the restart: {lost:?}",
        lost.len()
    );
    assert!(
        !stored.contains(&-1),
        "the transaction whose COMMIT failed was committed"
    );
    assert!(
        acked.len() > after_restart,
        "no commit was acknowledged before the restart, so none could be lost"
    );
    assert!(
        after_restart > 0,
        "no writer got a commit through after the restart"
    );
    let check = pgweir.connect_as(&SCRAM_USER, TEST_DB).await;
    try_backend_pid(&check)
        .await
        .expect("pgweir serves after the restart");
}

#[tokio::test]
async fn queued_clients_get_an_error_at_query_wait_timeout_when_postgres_stays_down() {
    let _serial = SERIAL.lock().await;
    let pgweir = builder()
        .pool_size(1)
        .general("server_connect_timeout = \"1s\"")
        .general("server_login_retry = \"200ms\"")
        .pool("query_wait_timeout = \"2s\"")
        .start();
    let holder = pgweir.connect().await;
    holder.batch_execute("BEGIN").await.unwrap();
    try_backend_pid(&holder).await.unwrap();
    let waiter = pgweir.connect().await;
    let queued = tokio::spawn(async move { try_backend_pid(&waiter).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !queued.is_finished(),
        "the pool of one is held; the query must queue"
    );

    on_cluster(Cluster::stop).await;
    let since = Instant::now();
    let result = within(10, "a queued query when Postgres stops", queued).await;
    let took = since.elapsed();
    on_cluster(Cluster::start_again).await;

    let err = result
        .unwrap()
        .expect_err("Postgres is down; the queued query cannot succeed");
    let code = common::sqlstate(&err).map(|c| c.code().to_string());
    // The cause is the last failed login: refused, or 57P03 from Postgres mid-shutdown.
    assert!(
        code.as_deref()
            .is_some_and(|c| c.starts_with("08") || c == "57P03"),
        "a connection error (class 08, or 57P03 from a shutting-down Postgres) \
         expected: {err:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "query_wait_timeout is 2s but the queued client waited {took:?} after the stop"
    );
    assert!(
        holder.batch_execute("COMMIT").await.is_err(),
        "the COMMIT of a transaction whose server is gone must fail"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = pgweir.connect().await;
    within(
        10,
        "a query after Postgres is back",
        try_backend_pid(&fresh),
    )
    .await
    .expect("pgweir serves again once Postgres is back");
}

/// A pool of 3 held by three open transactions and six clients queued behind them: a
/// fast restart fails the three transactions, and the six queued clients wait for the
/// pool to refill and get their results.
#[tokio::test]
async fn a_restart_fails_the_running_transactions_not_the_queued_clients() {
    let _serial = SERIAL.lock().await;
    let pgweir = Arc::new(
        builder()
            .pool_size(3)
            .general("server_login_retry = \"200ms\"")
            .start(),
    );
    let mut holders = Vec::new();
    for _ in 0..3 {
        let holder = pgweir.connect().await;
        holder.batch_execute("BEGIN").await.unwrap();
        try_backend_pid(&holder).await.unwrap();
        holders.push(holder);
    }
    let mut queued = Vec::new();
    for _ in 0..6 {
        let client = pgweir.connect().await;
        queued.push(tokio::spawn(async move { try_backend_pid(&client).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        queued.iter().all(|q| !q.is_finished()),
        "the pool of three is held; the queries must queue"
    );

    on_cluster(Cluster::restart).await;
    for holder in &holders {
        let commit = within(
            10,
            "the COMMIT of a cut transaction",
            holder.batch_execute("COMMIT"),
        )
        .await;
        assert!(
            commit.is_err(),
            "a transaction whose server died cannot commit"
        );
    }
    for q in queued {
        within(15, "a queued query after the restart", q)
            .await
            .unwrap()
            .expect("a client queued for a server must not see the restart");
    }
}

/// Many clients looping short transactions on a small pool, and Postgres restarted
/// (fast) under them: at most one client per server (the ones whose transaction was
/// running) gets an error, and every other one carries on.
#[tokio::test]
async fn a_restart_under_load_errors_at_most_the_clients_with_a_running_transaction() {
    const POOL: usize = 4;
    const CLIENTS: usize = 24;
    let _serial = SERIAL.lock().await;
    let pgweir = Arc::new(
        builder()
            .pool_size(POOL)
            .general("server_login_retry = \"200ms\"")
            .start(),
    );
    let progress = Progress::default();
    let mut loops = Vec::new();
    for _ in 0..CLIENTS {
        let client = pgweir.connect().await;
        let progress = progress.clone();
        loops.push(tokio::spawn(async move {
            let (mut after_restart, mut error) = (0, None);
            while !progress.stop.load(Ordering::Relaxed) {
                let tx = "BEGIN; SELECT pg_sleep(0.002); SELECT 1; COMMIT";
                match client.batch_execute(tx).await {
                    Ok(()) => {
                        progress.acks.fetch_add(1, Ordering::Relaxed);
                        after_restart += usize::from(progress.restarted.load(Ordering::Relaxed));
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            (after_restart, error)
        }));
    }
    within(20, "transactions before the restart", async {
        while progress.acks.load(Ordering::Relaxed) < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    on_cluster(Cluster::restart).await;
    progress.restarted.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    progress.stop.store(true, Ordering::Relaxed);

    let mut errored = Vec::new();
    for l in loops {
        let (after, error) = within(20, "a client loop to stop", l).await.unwrap();
        match error {
            Some(e) => errored.push(e),
            None => assert!(
                after > 0,
                "a client without an error must carry on after the restart"
            ),
        }
    }
    eprintln!(
        "{} of {CLIENTS} clients got an error: {errored:?}",
        errored.len()
    );
    assert!(
        errored.len() <= POOL,
        "{} clients got an error, but at most {POOL} (the pool) had a transaction running: {errored:?}",
        errored.len()
    );
}

//! How many server connections pgweir keeps, as Postgres sees them in
//! `pg_stat_activity`: the reserve pool and its timeout, `min_pool_size`,
//! `server_idle_timeout`, `server_lifetime`, and the shared `max_db_connections` /
//! `max_user_connections` caps.
//!
//! Each test exposes a database of its own, so it counts only its own backends.
//! Durations are a few hundred milliseconds; pgweir's janitor runs every 100 ms.

use crate::common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{backend_pid, cluster, watch_peak, within, Pgweir, MD5_USER, SCRAM_USER};

#[tokio::test]
async fn reserve_pool_opens_after_reserve_pool_timeout_and_closes_when_load_goes() {
    let db = cluster().create_database("reserve");
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(1)
        .pool("reserve_pool_size = 1")
        .pool("reserve_pool_timeout = \"300ms\"")
        .start();
    let admin = cluster().admin().await;
    let user = SCRAM_USER.name;

    let holder = pgweir.connect_as(&SCRAM_USER, &db).await;
    holder.batch_execute("BEGIN").await.unwrap();
    let held_pid = backend_pid(&holder).await;
    let waiter = pgweir.connect_as(&SCRAM_USER, &db).await;

    let started = Instant::now();
    let query = tokio::spawn(async move {
        let pid = backend_pid(&waiter).await;
        (pid, started.elapsed(), waiter)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        cluster().backend_count(&admin, user, &db).await,
        1,
        "a reserve server opened before reserve_pool_timeout (300ms) had passed"
    );
    let (reserve_pid, waited, waiter) =
        within(10, "query of a client waiting for the reserve", query)
            .await
            .unwrap();
    assert!(
        waited >= Duration::from_millis(300),
        "served after {waited:?}, before reserve_pool_timeout (300ms)"
    );
    assert!(
        waited < Duration::from_secs(3),
        "the reserve did not serve the waiting client: it took {waited:?}"
    );
    assert_ne!(
        reserve_pid, held_pid,
        "the waiting client must run on a second (reserve) server"
    );

    holder.batch_execute("COMMIT").await.unwrap();
    let settled = cluster()
        .wait_backends(&admin, user, &db, 1, Duration::from_secs(3))
        .await;
    assert_eq!(
        settled, 1,
        "with the load gone the pool must shrink back to pool_size (1)"
    );
    for client in [&holder, &waiter, &holder, &waiter] {
        backend_pid(client).await;
    }
    assert_eq!(
        cluster().backend_count(&admin, user, &db).await,
        1,
        "sequential queries must not reopen the reserve"
    );
}

#[tokio::test]
async fn reserve_pool_size_caps_the_extra_servers() {
    let db = cluster().create_database("reservecap");
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(1)
        .pool("reserve_pool_size = 1")
        .pool("reserve_pool_timeout = \"100ms\"")
        .start();
    let (stop, peak) = watch_peak(None, db.clone());
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(pgweir.connect_as(&SCRAM_USER, &db).await);
    }
    let busy = clients
        .iter()
        .map(|c| c.simple_query("SELECT pg_sleep(0.3)"));
    let results = within(
        20,
        "five slow queries",
        futures_util::future::join_all(busy),
    )
    .await;
    for result in results {
        result.expect("every client is served in the end");
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    assert_eq!(
        peak, 2,
        "pool_size 1 + reserve_pool_size 1 under a queue of five: {peak} backends"
    );
}

/// pgweir with `min_pool_size = 3` (pool size 4) on a fresh database, its pool
/// brought to life by one client that has already left again.
async fn warm_pool(prefix: &str) -> (Pgweir, String) {
    let db = cluster().create_database(prefix);
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(4)
        .pool("min_pool_size = 3")
        .start();
    // The pool comes to life with its first client, which needs only one server.
    let client = pgweir.connect_as(&SCRAM_USER, &db).await;
    backend_pid(&client).await;
    drop(client);
    (pgweir, db)
}

#[tokio::test]
async fn min_pool_size_keeps_servers_open_with_no_clients() {
    let (_pgweir, db) = warm_pool("minpool").await;
    let admin = cluster().admin().await;
    let user = SCRAM_USER.name;
    let warm = cluster()
        .wait_backends(&admin, user, &db, 3, Duration::from_secs(3))
        .await;
    assert_eq!(warm, 3, "min_pool_size = 3 with no clients connected");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cluster().backend_count(&admin, user, &db).await,
        3,
        "min_pool_size opens exactly the minimum, not up to pool_size"
    );
}

#[tokio::test]
async fn min_pool_size_is_refilled_after_its_servers_are_killed() {
    let (pgweir, db) = warm_pool("minkill").await;
    // A client stays connected (idle, holding no server), as PgBouncer refills
    // min_pool_size only for pools that have clients.
    let _idle = pgweir.connect_as(&SCRAM_USER, &db).await;
    let admin = cluster().admin().await;
    let user = SCRAM_USER.name;
    let warm = cluster()
        .wait_backends(&admin, user, &db, 3, Duration::from_secs(3))
        .await;
    assert_eq!(warm, 3, "min_pool_size = 3 with no clients connected");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = $1 AND datname = $2",
            &[&user, &db],
        )
        .await
        .unwrap();
    let killed = cluster()
        .wait_backends(&admin, user, &db, 0, Duration::from_secs(2))
        .await;
    assert_eq!(killed, 0, "the backends were not terminated");
    let refilled = cluster()
        .wait_backends(&admin, user, &db, 3, Duration::from_secs(3))
        .await;
    assert_eq!(
        refilled, 3,
        "min_pool_size must be refilled without waiting for a client's query"
    );
}

#[tokio::test]
async fn server_idle_timeout_shrinks_the_pool_to_min_pool_size() {
    let db = cluster().create_database("idlesrv");
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(4)
        .pool("min_pool_size = 1")
        .pool("server_idle_timeout = \"400ms\"")
        .start();
    let admin = cluster().admin().await;
    let user = SCRAM_USER.name;

    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = pgweir.connect_as(&SCRAM_USER, &db).await;
        client.batch_execute("BEGIN").await.unwrap();
        backend_pid(&client).await;
        clients.push(client);
    }
    assert_eq!(cluster().backend_count(&admin, user, &db).await, 4);
    for client in &clients {
        client.batch_execute("COMMIT").await.unwrap();
    }
    let released = Instant::now();

    let shrunk = cluster()
        .wait_backends(&admin, user, &db, 1, Duration::from_secs(3))
        .await;
    let took = released.elapsed();
    assert_eq!(
        shrunk, 1,
        "idle servers past server_idle_timeout must close"
    );
    assert!(
        took >= Duration::from_millis(300),
        "servers closed after {took:?}, well before server_idle_timeout (400ms)"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        cluster().backend_count(&admin, user, &db).await,
        1,
        "server_idle_timeout must not close the min_pool_size servers"
    );
    for client in &clients {
        backend_pid(client).await;
    }
}

#[tokio::test]
async fn server_lifetime_replaces_old_servers_but_not_mid_transaction() {
    let db = cluster().create_database("lifetime");
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(1)
        .pool("server_lifetime = \"800ms\"")
        .start();
    let admin = cluster().admin().await;
    let client = pgweir.connect_as(&SCRAM_USER, &db).await;

    let first = backend_pid(&client).await;
    assert_eq!(
        backend_pid(&client).await,
        first,
        "a young server is reused"
    );

    client.batch_execute("BEGIN").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        backend_pid(&client).await,
        first,
        "server_lifetime must not take the server away inside a transaction"
    );
    client.batch_execute("COMMIT").await.unwrap();

    let next = backend_pid(&client).await;
    assert_ne!(
        next, first,
        "a server older than server_lifetime was reused"
    );
    let gone = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&first],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(gone, 0, "the expired server must be closed on Postgres");
}

#[tokio::test]
async fn server_lifetime_zero_uses_each_server_once() {
    let db = cluster().create_database("useonce");
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(1)
        .pool("server_lifetime = 0")
        .start();
    let client = pgweir.connect_as(&SCRAM_USER, &db).await;
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(backend_pid(&client).await);
    }
    pids.dedup();
    assert_eq!(
        pids.len(),
        3,
        "server_lifetime = 0: every transaction gets a fresh server"
    );
}

#[tokio::test]
async fn max_db_connections_caps_backends_over_all_pools_of_a_database() {
    let _heavy = common::heavy().await;
    let db = cluster().create_database("maxdb");
    let pgweir = Pgweir::builder()
        .database(&db)
        .pool_size(3)
        .pool("max_db_connections = 2")
        .start();
    let admin = cluster().admin().await;
    let (stop, peak) = watch_peak(None, db.clone());

    // Both pools log in first: a new pool opens a server to learn the parameters it
    // shows clients, and that login would wait for the cap like any query.
    let b = pgweir.connect_as(&MD5_USER, &db).await;
    let a1 = pgweir.connect_as(&SCRAM_USER, &db).await;
    let a2 = pgweir.connect_as(&SCRAM_USER, &db).await;
    for a in [&a1, &a2] {
        a.batch_execute("BEGIN").await.unwrap();
        within(5, "a transaction of the first user", backend_pid(a)).await;
    }
    let query = tokio::spawn(async move {
        let pid = backend_pid(&b).await;
        (pid, b)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !query.is_finished(),
        "another user's client got a server although the database was at max_db_connections"
    );
    assert_eq!(cluster().db_backend_count(&admin, &db).await, 2);

    // A server of the first pool goes idle: it is closed to make room.
    a1.batch_execute("COMMIT").await.unwrap();
    let (_, b) = within(5, "the second user's query once a server is free", query)
        .await
        .unwrap();
    a2.batch_execute("COMMIT").await.unwrap();
    for client in [&a1, &b, &a2, &b] {
        within(5, "queries of both users in turn", backend_pid(client)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    assert!(
        peak <= 2,
        "max_db_connections = 2 but Postgres saw {peak} backends in {db}"
    );
    assert_eq!(peak, 2, "the watcher must have seen the busy servers");
}

#[tokio::test]
async fn max_user_connections_caps_a_user_over_all_databases() {
    let _heavy = common::heavy().await;
    let db1 = cluster().create_database("maxuser");
    let db2 = cluster().create_database("maxuser");
    let pgweir = Pgweir::builder()
        .database(&db1)
        .database(&db2)
        .pool_size(3)
        .pool("max_user_connections = 1")
        .start();
    let admin = cluster().admin().await;
    let user = SCRAM_USER.name;

    let b = pgweir.connect_as(&SCRAM_USER, &db2).await;
    let a = pgweir.connect_as(&SCRAM_USER, &db1).await;
    a.batch_execute("BEGIN").await.unwrap();
    within(
        5,
        "the user's transaction in the first database",
        backend_pid(&a),
    )
    .await;
    let query = tokio::spawn(async move {
        let pid = backend_pid(&b).await;
        (pid, b)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !query.is_finished(),
        "the user got a second server although max_user_connections = 1"
    );
    let other = pgweir.connect_as(&MD5_USER, &db2).await;
    within(5, "another user in the same database", backend_pid(&other)).await;

    a.batch_execute("COMMIT").await.unwrap();
    let (_, b) = within(5, "the user's query in the other database", query)
        .await
        .unwrap();
    let total = cluster().backend_count(&admin, user, &db1).await
        + cluster().backend_count(&admin, user, &db2).await;
    assert_eq!(
        total, 1,
        "max_user_connections = 1 but the user has {total} backends"
    );
    backend_pid(&b).await;
}

/// A TCP proxy to the test cluster that holds each new connection for `delay` before
/// connecting it through (a slow server login), and records the most connections
/// ever waiting in that state at once: how many logins pgweir runs in parallel.
async fn slow_login_proxy(delay: Duration) -> (u16, Arc<AtomicI64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let most = Arc::new(AtomicI64::new(0));
    let pending = Arc::new(AtomicI64::new(0));
    let record = most.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let now = pending.fetch_add(1, Ordering::SeqCst) + 1;
            record.fetch_max(now, Ordering::SeqCst);
            let pending = pending.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                pending.fetch_sub(1, Ordering::SeqCst);
                let upstream = ("127.0.0.1", cluster().port);
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, most)
}

#[tokio::test]
async fn a_burst_of_clients_opens_servers_a_few_at_a_time() {
    let _heavy = common::heavy().await;
    let db = cluster().create_database("herd");
    let (port, most) = slow_login_proxy(Duration::from_millis(200)).await;
    let pgweir = Pgweir::builder()
        .pool_size(20)
        .extra(&format!(
            "[databases.{db}]\nhost = \"127.0.0.1\"\nport = {port}\n"
        ))
        .start();
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(pgweir.connect_as(&SCRAM_USER, &db).await);
    }
    let burst = clients
        .iter()
        .map(|c| c.simple_query("SELECT pg_sleep(0.5)"));
    let results = within(
        30,
        "a burst of 20 queries",
        futures_util::future::join_all(burst),
    )
    .await;
    for result in results {
        result.expect("every client of the burst is served");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= 5,
        "20 clients at once made pgweir start {most} server logins in parallel"
    );
    let admin = cluster().admin().await;
    let opened = cluster().backend_count(&admin, SCRAM_USER.name, &db).await;
    assert!(opened > 1, "the pool never grew past one server");
}

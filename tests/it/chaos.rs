//! Many clients doing everything at once onto a small pool: commits, rollbacks,
//! errors, pipelines, COPY and abrupt disconnects mid-transaction, chosen at
//! random from a fixed seed for a few seconds. (Cancels stay out: Postgres itself
//! occasionally cancels a session's next statement after a cancel, even without
//! a pooler, which would make this test flaky; `startup` covers cancel.)
//! Afterwards the invariants must hold: exactly the committed rows exist, no
//! server is left inside a transaction, the pool never exceeded its size, and
//! pgweir still serves new clients.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use common::{cluster, expect_sqlstate, within, Pgweir, SCRAM_USER};

const CLIENTS: u64 = 30;
const POOL: usize = 4;
const RUN_FOR: Duration = Duration::from_secs(5);

/// A connection whose socket the test can drop without a Terminate.
struct Conn {
    client: Client,
    task: JoinHandle<()>,
}

async fn open(pgweir: &Pgweir, db: &str) -> Conn {
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, db);
    let (client, connection) = within(20, "chaos connect", config.connect(NoTls))
        .await
        .expect("connect");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Conn { client, task }
}

/// One random operation; returns how many rows it committed.
async fn step(conn: &mut Conn, pgweir: &Pgweir, db: &str, op: u32, id: u64) -> i64 {
    let c = &conn.client;
    match op {
        0 => {
            c.batch_execute(&format!(
                "BEGIN; INSERT INTO chaos VALUES ({id}, 'c'); COMMIT"
            ))
            .await
            .expect("commit");
            return 1;
        }
        1 => c
            .batch_execute(&format!(
                "BEGIN; INSERT INTO chaos VALUES ({id}, 'r'); ROLLBACK"
            ))
            .await
            .expect("rollback"),
        2 => {
            c.batch_execute(&format!("BEGIN; INSERT INTO chaos VALUES ({id}, 'e')"))
                .await
                .expect("begin");
            let err = c.batch_execute("SELECT 1/0").await;
            assert_eq!(expect_sqlstate(err, "error in tx").code(), "22012");
            c.batch_execute("ROLLBACK")
                .await
                .expect("rollback after error");
        }
        3 => {
            let me = id as i32;
            let queries = (0..5i32).map(|i| async move {
                c.query_typed(
                    "SELECT $1::int4 + $2::int4",
                    &[(&i, Type::INT4), (&me, Type::INT4)],
                )
                .await
            });
            for (i, rows) in futures_util::future::join_all(queries)
                .await
                .into_iter()
                .enumerate()
            {
                assert_eq!(
                    rows.expect("pipelined")[0].get::<_, i32>(0),
                    i as i32 + id as i32,
                    "cross-talk"
                );
            }
        }
        4 => {
            c.batch_execute(&format!("BEGIN; INSERT INTO chaos VALUES ({id}, 'k')"))
                .await
                .expect("begin");
            let fresh = open(pgweir, db).await;
            let dead = std::mem::replace(conn, fresh);
            dead.task.abort();
        }
        5 => {
            c.batch_execute("BEGIN").await.expect("begin");
            let sink = c.copy_in("COPY chaos FROM STDIN").await.expect("copy in");
            futures_util::pin_mut!(sink);
            let rows = format!("{id}\tc\n{id}\tc\n{id}\tc\n");
            sink.send(bytes::Bytes::from(rows))
                .await
                .expect("copy data");
            assert_eq!(sink.finish().await.expect("copy done"), 3);
            c.batch_execute("COMMIT").await.expect("commit after copy");
            return 3;
        }
        _ => {
            let rows = c
                .simple_query(&format!("SELECT {id}; SELECT 'x'"))
                .await
                .expect("multi");
            assert!(rows.len() >= 4);
        }
    }
    0
}

async fn run_client(pgweir: Arc<Pgweir>, db: String, id: u64, committed: Arc<AtomicI64>) {
    let mut rng = StdRng::seed_from_u64(id);
    let mut conn = open(&pgweir, &db).await;
    let deadline = Instant::now() + RUN_FOR;
    while Instant::now() < deadline {
        let op = rng.gen_range(0..7);
        let step = step(&mut conn, &pgweir, &db, op, id);
        match tokio::time::timeout(Duration::from_secs(40), step).await {
            Ok(done) => committed.fetch_add(done, Ordering::Relaxed),
            Err(_) => panic!(
                "client {id}: op {op} hung for 40s; backends:\n{}",
                backends(&db).await
            ),
        };
    }
}

/// What Postgres is doing in `db`, for a hang report.
async fn backends(db: &str) -> String {
    let admin = cluster().admin().await;
    let rows = admin
        .query(
            "SELECT pid, state, coalesce(wait_event, ''), query FROM pg_stat_activity WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let (pid, state, wait, query): (i32, Option<String>, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            format!("  {pid} {state:?} {wait} {query}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls pg_stat_activity until stopped; returns the most backends seen.
fn watch(db: String, stop: Arc<AtomicBool>) -> JoinHandle<i64> {
    tokio::spawn(async move {
        let admin = cluster().admin().await;
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(cluster().backend_count(&admin, SCRAM_USER.name, &db).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_every_invariant() {
    let _heavy = common::heavy().await;
    let db = cluster().create_database("chaos");
    let direct = cluster().admin_on(&db).await;
    direct
        .batch_execute("CREATE TABLE chaos (id int, tag text); GRANT ALL ON chaos TO PUBLIC")
        .await
        .unwrap();
    let pgweir = Arc::new(Pgweir::builder().database(&db).pool_size(POOL).start());
    let committed = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(db.clone(), stop.clone());

    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(run_client(
                pgweir.clone(),
                db.clone(),
                id,
                committed.clone(),
            ))
        })
        .collect();
    for client in futures_util::future::join_all(clients).await {
        client.expect("a chaos client failed");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let peak = watcher.await.unwrap();
    assert!(peak <= POOL as i64, "pool of {POOL} but {peak} backends");

    let rows = direct
        .query("SELECT tag, count(*) FROM chaos GROUP BY tag", &[])
        .await
        .unwrap();
    let tags: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected = committed.load(Ordering::Relaxed);
    assert_eq!(
        tags,
        [("c".to_string(), expected)],
        "only committed rows may exist"
    );

    let stuck: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stuck, 0, "a server was left inside a transaction");
    let after = open(&pgweir, &db).await;
    after
        .client
        .simple_query("SELECT 1")
        .await
        .expect("pgweir still serves");
}

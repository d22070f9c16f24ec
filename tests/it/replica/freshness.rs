//! How fresh a replica must be to get reads (issue 5): a client always reads its own
//! committed writes, even from a replica that applies WAL 300 ms late, while clients that
//! did not write still read from it; a replica further behind than `max_replica_lag` gets
//! no reads until it catches up.
//!
//! Each test clones a replica of its own from `common::routing::primary` (one is delayed, one
//! is paused mid-test) and runs its own pgweir with the monitor sampling every 50 ms.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Statement};

use common::routing::{auto_routing, eventually, primary, read_on_replica, until_reads_on_replica};
use common::{within, TEST_DB};

/// Insert-then-select rounds per writing client; `PGWEIR_RYW_ITERATIONS` overrides it.
fn ryw_iterations() -> i32 {
    std::env::var("PGWEIR_RYW_ITERATIONS")
        .ok()
        .map(|n| n.parse().expect("PGWEIR_RYW_ITERATIONS must be a number"))
        .unwrap_or(1000)
}

/// Creates `table (client int, i int, primary key (client, i))` on the primary, writable
/// by the test users.
async fn create_table(table: &str) {
    primary()
        .admin_on(TEST_DB)
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} (client int, i int, PRIMARY KEY (client, i)); \
             GRANT ALL ON {table} TO PUBLIC"
        ))
        .await
        .expect("create the test's table");
}

/// The statements of a writing client that uses the extended protocol, prepared once.
struct Prepared {
    insert: Statement,
    select: Statement,
}

impl Prepared {
    async fn new(client: &Client) -> Prepared {
        Prepared {
            insert: client
                .prepare("INSERT INTO ryw VALUES ($1, $2)")
                .await
                .expect("prepare the INSERT"),
            select: client
                .prepare(
                    "SELECT count(*), pg_is_in_recovery() FROM ryw WHERE client = $1 AND i = $2",
                )
                .await
                .expect("prepare the SELECT"),
        }
    }
}

/// One writing client's round `i`: insert a row, then read it back at once. Returns
/// whether the read found the row and whether a replica served it. With `prepared` the
/// client uses its prepared statements, without it simple queries, so that both protocols
/// carry the reads.
async fn write_then_read(
    client: &Client,
    prepared: Option<&Prepared>,
    c: i32,
    i: i32,
) -> (bool, bool) {
    if let Some(prepared) = prepared {
        client
            .execute(&prepared.insert, &[&c, &i])
            .await
            .expect("prepared INSERT");
        let row = client
            .query_one(&prepared.select, &[&c, &i])
            .await
            .expect("prepared SELECT of the row just written");
        return (row.get::<_, i64>(0) == 1, row.get(1));
    }
    client
        .batch_execute(&format!("INSERT INTO ryw VALUES ({c}, {i})"))
        .await
        .expect("simple INSERT");
    let sql =
        format!("SELECT count(*), pg_is_in_recovery() FROM ryw WHERE client = {c} AND i = {i}");
    let messages = client.simple_query(&sql).await.expect(&sql);
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .expect("a row from count(*)");
    (row.get(0) == Some("1"), row.get(1) == Some("t"))
}

/// What the readers that never write saw: reads on the replica and on the primary.
#[derive(Default)]
struct ReaderCounts {
    replica: AtomicU64,
    primary: AtomicU64,
}

/// A client that only reads, counting where its reads run, until `done`.
async fn read_until_done(client: Client, counts: Arc<ReaderCounts>, done: Arc<AtomicBool>) {
    while !done.load(Ordering::Relaxed) {
        let counter = match read_on_replica(&client).await {
            true => &counts.replica,
            false => &counts.primary,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_reads_its_own_writes_from_a_delayed_replica() {
    const WRITERS: i32 = 20;
    const READERS: usize = 4;
    let iterations = ryw_iterations();
    create_table("ryw").await;
    let replica = primary()
        .replica("recovery_min_apply_delay = '300ms'")
        .await;
    // The lag limit is far above the apply delay, so that a loaded machine never turns
    // the readers away from the replica: this test is about read-your-writes, not lag.
    let pgweir = auto_routing(&[&replica])
        .database_setting("max_replica_lag = \"10s\"")
        .pool_size(4)
        .start();

    let counts = Arc::new(ReaderCounts::default());
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let client = pgweir.connect().await;
        until_reads_on_replica(&client, "a reader reaching the replica").await;
        let (counts, done) = (counts.clone(), done.clone());
        readers.push(tokio::spawn(read_until_done(client, counts, done)));
    }

    let mut writers = Vec::new();
    for c in 0..WRITERS {
        let client = pgweir.connect().await;
        writers.push(tokio::spawn(async move {
            // Even-numbered clients speak the extended protocol, odd ones the simple one.
            let prepared = match c % 2 {
                0 => Some(Prepared::new(&client).await),
                _ => None,
            };
            let mut misses = Vec::new();
            let mut replica_reads = 0u64;
            for i in 0..iterations {
                let (found, on_replica) = write_then_read(&client, prepared.as_ref(), c, i).await;
                if !found {
                    misses.push((c, i, on_replica));
                }
                replica_reads += u64::from(on_replica);
            }
            (misses, replica_reads)
        }));
    }
    let results = within(900, "the writers", futures_util::future::join_all(writers)).await;
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("a reader task");
    }

    let mut misses = Vec::new();
    let mut own_reads_on_replica = 0;
    for result in results {
        let (m, r) = result.expect("a writer task");
        misses.extend(m);
        own_reads_on_replica += r;
    }
    let (on_replica, on_primary) = (
        counts.replica.load(Ordering::Relaxed),
        counts.primary.load(Ordering::Relaxed),
    );
    eprintln!(
        "{} rounds; writers' own reads on the replica: {own_reads_on_replica}; \
         readers: {on_replica} on the replica, {on_primary} on the primary",
        i64::from(WRITERS) * i64::from(iterations)
    );
    assert!(
        misses.is_empty(),
        "{} reads missed the row their client had just written; first ones \
         (client, round, served by a replica): {:?}",
        misses.len(),
        &misses[..misses.len().min(10)]
    );
    assert!(
        on_replica > on_primary,
        "clients that never wrote read mostly from the primary: \
         {on_replica} on the replica, {on_primary} on the primary"
    );
}

#[tokio::test]
async fn without_read_your_writes_a_writer_reads_the_delayed_replica() {
    create_table("no_ryw").await;
    let replica = primary()
        .replica("recovery_min_apply_delay = '300ms'")
        .await;
    let pgweir = auto_routing(&[&replica])
        .database_setting("read_your_writes = false")
        .database_setting("max_replica_lag = \"10s\"")
        .start();
    let client = &pgweir.connect().await;
    until_reads_on_replica(client, "a read reaching the replica").await;

    // The point of the read-your-writes test above: without the guarantee, a read right
    // after a write lands on a replica that has not applied it yet.
    let mut round = 0;
    eventually("a stale read of the client's own write", || {
        round += 1;
        let i = round;
        async move {
            client
                .batch_execute(&format!("INSERT INTO no_ryw VALUES (0, {i})"))
                .await
                .expect("INSERT");
            let sql = format!(
                "SELECT pg_is_in_recovery() AND count(*) = 0 FROM no_ryw WHERE client = 0 AND i = {i}"
            );
            let row = client.query_one(sql.as_str(), &[]).await.expect("SELECT");
            row.get::<_, bool>(0)
        }
    })
    .await;
}

#[tokio::test]
async fn a_replica_beyond_max_replica_lag_gets_reads_again_once_it_catches_up() {
    create_table("lagging").await;
    let replica = primary().replica("").await;
    let pgweir = auto_routing(&[&replica])
        .database_setting("max_replica_lag = \"500ms\"")
        .start();
    // This client never writes: only the replica's lag can keep its reads away.
    let client = pgweir.connect().await;
    until_reads_on_replica(&client, "a read reaching the replica").await;

    replica.pause_replay().await;
    primary()
        .admin_on(TEST_DB)
        .await
        .batch_execute("INSERT INTO lagging VALUES (0, 0)")
        .await
        .expect("a write on the primary");
    eventually("reads leaving the paused replica", || async {
        !read_on_replica(&client).await
    })
    .await;
    // Paused, the replica only falls further behind: no read may reach it now.
    for _ in 0..20 {
        assert!(
            !read_on_replica(&client).await,
            "a replica beyond max_replica_lag got a read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    replica.resume_replay().await;
    until_reads_on_replica(&client, "reads back on the caught-up replica").await;
    // A new client reads the row from the replica: it was usable again only once it had
    // replayed the write.
    let fresh = &pgweir.connect().await;
    eventually("a new client reading the replica", || async move {
        let row = fresh
            .query_one("SELECT pg_is_in_recovery(), count(*) FROM lagging", &[])
            .await
            .expect("a read through pgweir");
        let on_replica = row.get::<_, bool>(0);
        if on_replica {
            assert_eq!(
                row.get::<_, i64>(1),
                1,
                "the replica served a read before replaying"
            );
        }
        on_replica
    })
    .await;
}

//! Observing where pgweir's replica routing sent a statement, for the tests of issue 5.
//!
//! A test never asks pgweir where a statement went: it asks the server that ran it.
//! `pg_is_in_recovery()` is true on a streaming replica and false on the primary, and the
//! classifier proves `SELECT pg_is_in_recovery()` read-only, so that read lands wherever
//! routing sends reads; `INSERT ... RETURNING pg_is_in_recovery()` names the node that took
//! a write. The monitor needs a few samples after pgweir starts before a replica gets reads,
//! so tests wait for it with [`eventually`] rather than sleeping a fixed time.

use std::future::Future;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::replica::Replica;
use super::wire::{Msg, Wire};
use super::{within, Cluster, LazyCluster, Pgweir, PgweirBuilder, SCRAM_USER, TEST_DB};

/// The primary every replica is cloned from: a cluster of the replica tests' own, so that
/// cloning (replication slots, fast checkpoints, all of the primary's databases copied)
/// never touches the shared cluster, and stays small and quick.
pub fn primary() -> &'static Cluster {
    static PRIMARY: LazyCluster = LazyCluster::new();
    PRIMARY.get()
}

/// pgweir on [`primary`] with `replicas` behind every database, `read_routing = "auto"`
/// and a monitor that samples every 50 ms so tests do not wait long for it.
pub fn auto_routing(replicas: &[&Replica]) -> PgweirBuilder {
    Pgweir::builder()
        .on(primary())
        .replicas(replicas)
        .database_setting("read_routing = \"auto\"")
        .general("replica_check_interval = \"50ms\"")
}

/// The first column of every row a simple query returned (None for NULL).
pub fn first_column(messages: &[SimpleQueryMessage]) -> Vec<Option<String>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .collect()
}

/// Runs `sql` (a simple query whose first row's first column is `pg_is_in_recovery()`)
/// and says whether a replica ran it.
pub async fn ran_on_replica(client: &Client, sql: &str) -> Result<bool, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    match first_column(&messages).first() {
        Some(Some(value)) => Ok(value == "t"),
        other => panic!("{sql}: expected a boolean first, got {other:?}"),
    }
}

/// Whether a plain read from `client` runs on a replica right now.
pub async fn read_on_replica(client: &Client) -> bool {
    ran_on_replica(client, "SELECT pg_is_in_recovery()")
        .await
        .expect("SELECT pg_is_in_recovery() through pgweir")
}

/// Polls `probe` every 20 ms until it returns true; fails the test after 30 s.
pub async fn eventually<F, Fut>(what: &str, probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(30, what, probe).await
}

/// [`eventually`] with a deadline of `secs` seconds.
pub async fn eventually_within<F, Fut>(secs: u64, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(secs, what, async {
        while !probe().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Waits until `client`'s plain reads land on a replica: the monitor has sampled it and
/// found it fresh enough for this client.
pub async fn until_reads_on_replica(client: &Client, what: &str) {
    eventually(what, || read_on_replica(client)).await
}

/// The replica every test reads from that neither stops nor pauses it: one replica of
/// [`primary`], cloned on first use.
pub async fn replica() -> &'static Replica {
    static REPLICA: OnceCell<Replica> = OnceCell::const_new();
    REPLICA.get_or_init(|| primary().replica("")).await
}

/// Creates `table (id int)` on the primary, writable by the test users, and waits until
/// the replica has it too.
pub async fn with_table(table: &str) -> &'static Replica {
    let replica = replica().await;
    primary()
        .admin_on(super::TEST_DB)
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int); GRANT ALL ON {table} TO PUBLIC"
        ))
        .await
        .expect("create the test's table");
    replica.wait_caught_up(primary()).await;
    replica
}

/// Rows of `table` on the primary, read directly.
pub async fn primary_rows(table: &str) -> i64 {
    primary()
        .admin_on(super::TEST_DB)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count rows on the primary")
        .get(0)
}

/// A client of `pgweir` whose reads already land on the replica.
pub async fn routed_client(pgweir: &Pgweir) -> Client {
    let client = pgweir.connect().await;
    until_reads_on_replica(&client, "a read reaching the replica").await;
    client
}

/// Inserts `id` into `table` with a simple query; true when a replica ran the insert.
pub async fn insert_on_replica(client: &Client, table: &str, id: i32) -> bool {
    let sql = format!("INSERT INTO {table} VALUES ({id}) RETURNING pg_is_in_recovery()");
    ran_on_replica(client, &sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

/// A raw connection to `pgweir` (trust auth) whose reads already land on the replica.
pub async fn routed_wire(pgweir: &Pgweir) -> Wire {
    let (mut wire, _) = Wire::startup(pgweir.port, SCRAM_USER.name, TEST_DB).await;
    until_wire_reads_on_replica(&mut wire).await;
    wire
}

/// Waits (up to 30 s) until a plain read on `wire` runs on a replica.
pub async fn until_wire_reads_on_replica(wire: &mut Wire) {
    within(30, "a raw read reaching the replica", async {
        loop {
            wire.query("SELECT pg_is_in_recovery()").send().await;
            let msgs = wire.until_ready().await;
            no_errors(&msgs, "SELECT pg_is_in_recovery()");
            if data(&msgs) == [Some("t".to_string())] {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// First columns of the DataRows in `msgs`.
pub fn data(msgs: &[Msg]) -> Vec<Option<String>> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(Msg::first_column)
        .collect()
}

/// Fails the test on any ErrorResponse in `msgs`.
pub fn no_errors(msgs: &[Msg], what: &str) {
    let errors: Vec<_> = msgs
        .iter()
        .filter(|m| m.tag == b'E')
        .map(|m| (m.sqlstate(), m.message()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

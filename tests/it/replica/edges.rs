//! Regressions for edge cases of replica read routing (issue 5) that a review found: a
//! hint late in a batch, pipelined transactions and batches arriving on a replica link,
//! a request that kills its own replica backend, serializable transactions, state that
//! would pin a client to a replica, `SET pgweir.route` inside an open batch and a stray
//! `COMMIT`. Each test says what used to go wrong (the stray `COMMIT` is a behaviour check).
//!
//! Every test shares one replica of `common::routing::primary` (none stops or pauses it) and
//! runs its own pgweir in front of both. Which node ran a statement is read from the
//! statement itself (`pg_is_in_recovery()`, see `common::routing`).

use crate::common;

use tokio_postgres::Client;

use common::replica::Replica;
use common::routing::{
    auto_routing, data, eventually_within, insert_on_replica, no_errors, primary_rows,
    read_on_replica, replica, routed_client, routed_wire, until_reads_on_replica,
    until_wire_reads_on_replica, with_table,
};
use common::wire::{tags, Msg, Wire};
use common::{expect_sqlstate, within, SCRAM_USER, TEST_DB};

/// Opens a `BEGIN READ ONLY` transaction on `client` that runs on the replica.
async fn read_only_on_replica(client: &Client) {
    within(30, "BEGIN READ ONLY on the replica", async {
        loop {
            client.batch_execute("BEGIN READ ONLY").await.unwrap();
            if read_on_replica(client).await {
                return;
            }
            client.batch_execute("ROLLBACK").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

fn t() -> Option<String> {
    Some("t".to_string())
}

fn f() -> Option<String> {
    Some("f".to_string())
}

/// Three times: waits until `wire`'s reads land on the replica, sends what `queue` queues
/// in one write and collects `answers` replies (each up to its ReadyForQuery).
async fn pipelined(wire: &mut Wire, queue: impl Fn(&mut Wire), answers: usize) -> Vec<Vec<Msg>> {
    let mut rounds = Vec::new();
    for _ in 0..3 {
        until_wire_reads_on_replica(wire).await;
        queue(wire);
        wire.send().await;
        within(10, "the pipelined requests", async {
            for _ in 0..answers {
                rounds.push(wire.until_ready().await);
            }
        })
        .await;
    }
    rounds
}

/// The first message's hint is the batch's: a hint further on does not send a batch that
/// writes to a replica. It used to: the later hint routed the batch to the replica, whose
/// link held the INSERT back for the primary, released the server and routed the batch
/// afresh, to the replica again, forever; the client never got an answer.
#[tokio::test]
async fn a_hint_after_a_write_in_one_batch_leaves_it_on_the_primary() {
    let replica = with_table("re_late_hint").await;
    let pgweir = auto_routing(&[replica]).auth_type("trust").start();
    // Another client of the same user waits until the monitor finds the replica usable.
    routed_wire(&pgweir).await;

    let (mut wire, _) = Wire::startup(pgweir.port, SCRAM_USER.name, TEST_DB).await;
    wire.run("INSERT INTO re_late_hint VALUES (1)")
        .run("/* pgweir:replica */ SELECT pg_is_in_recovery()")
        .sync()
        .send()
        .await;
    let msgs = within(5, "the batch with a late hint", wire.until_ready()).await;
    no_errors(&msgs, "the batch with a late hint");
    assert_eq!(tags(&msgs), "12C12DCZ", "{msgs:?}");
    assert_eq!(data(&msgs), [f()], "the batch's SELECT ran on the replica");
    assert_eq!(primary_rows("re_late_hint").await, 1);
}

/// A transaction pipelined after a read-only one that runs on the replica starts afresh on
/// the primary. The replica link used to stop holding writes back once it had let the
/// first transaction's `COMMIT` through, so the next `BEGIN` and its INSERT went to the
/// replica too and failed with 25006.
#[tokio::test]
async fn a_write_transaction_pipelined_after_a_read_only_one_runs_on_the_primary() {
    let replica = with_table("re_pipe_tx").await;
    let pgweir = auto_routing(&[replica]).auth_type("trust").start();
    let mut wire = routed_wire(&pgweir).await;
    let queue = |wire: &mut Wire| {
        wire.query("BEGIN READ ONLY")
            .query("SELECT pg_is_in_recovery()")
            .query("COMMIT")
            .query("BEGIN")
            .query("INSERT INTO re_pipe_tx VALUES (1) RETURNING pg_is_in_recovery()")
            .query("COMMIT");
    };
    let answers = pipelined(&mut wire, queue, 6).await;
    let mut reads_on_replica = 0;
    for round in answers.chunks(6) {
        let names = [
            "BEGIN READ ONLY",
            "SELECT",
            "COMMIT",
            "BEGIN",
            "INSERT",
            "COMMIT",
        ];
        for (msgs, what) in round.iter().zip(names) {
            no_errors(msgs, what);
        }
        reads_on_replica += usize::from(data(&round[1]) == [t()]);
        assert_eq!(data(&round[4]), [f()], "the INSERT's node");
    }
    assert!(
        reads_on_replica > 0,
        "no read-only transaction ran on the replica"
    );
    assert_eq!(primary_rows("re_pipe_tx").await, 3);
}

/// An extended-protocol batch pipelined after one that runs on the replica is routed on
/// its own. Its first message (a read) used to be let through to the replica, and with it
/// the rest of the batch: the INSERT in it failed with 25006.
#[tokio::test]
async fn a_batch_pipelined_after_a_replica_batch_is_routed_on_its_own() {
    let replica = with_table("re_pipe_batch").await;
    let pgweir = auto_routing(&[replica]).auth_type("trust").start();
    let mut wire = routed_wire(&pgweir).await;
    let queue = |wire: &mut Wire| {
        wire.run("SELECT pg_is_in_recovery()")
            .sync()
            .run("SELECT pg_is_in_recovery()")
            .run("INSERT INTO re_pipe_batch VALUES (1) RETURNING pg_is_in_recovery()")
            .sync();
    };
    let answers = pipelined(&mut wire, queue, 2).await;
    let mut reads_on_replica = 0;
    for round in answers.chunks(2) {
        no_errors(&round[0], "the first batch");
        no_errors(&round[1], "the second batch");
        reads_on_replica += usize::from(data(&round[0]) == [t()]);
        assert_eq!(data(&round[1]), [f(), f()], "the second batch's nodes");
    }
    assert!(reads_on_replica > 0, "no first batch ran on the replica");
    assert_eq!(primary_rows("re_pipe_batch").await, 3);
}

/// `sessions_killed` of the test database on the replica.
async fn sessions_killed(replica: &Replica) -> i64 {
    replica
        .admin()
        .await
        .query_one(
            "SELECT sessions_killed FROM pg_stat_database WHERE datname = $1",
            &[&TEST_DB],
        )
        .await
        .expect("sessions_killed on the replica")
        .get(0)
}

/// A client that kills its own replica backend does not take the replica away from the
/// others. A request that failed on a replica before any answer reached the client used to
/// ban the replica for `replica_ban_time`, so any client could send everyone's reads to
/// the primary at will. The `DO` block is what reaches that path: the backend dies before
/// it has answered anything, while a plain `SELECT` sends its RowDescription and row
/// ahead of the FATAL.
#[tokio::test]
async fn a_request_killing_its_replica_backend_does_not_ban_the_replica() {
    let replica = replica().await;
    let pgweir = auto_routing(&[replica])
        .general("replica_ban_time = \"30s\"")
        .start();
    let other = routed_client(&pgweir).await;
    let kills = [
        "/* pgweir:replica */ SELECT pg_terminate_backend(pg_backend_pid())",
        "/* pgweir:replica */ DO $$BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); END$$",
    ];
    for kill in kills {
        let killer = routed_client(&pgweir).await;
        let killed = sessions_killed(replica).await;
        // The killer may get an error, or lose its connection: only pgweir's health counts.
        let _ = within(10, kill, killer.simple_query(kill)).await;
        eventually_within(10, "the replica killing the backend", || async move {
            sessions_killed(replica).await > killed
        })
        .await;

        eventually_within(5, "the other client reading from the replica", || {
            read_on_replica(&other)
        })
        .await;
        let fresh = pgweir.connect().await;
        eventually_within(5, "a new client reading from the replica", || {
            read_on_replica(&fresh)
        })
        .await;
    }
}

/// A hot standby refuses serializable transactions, so they run on the primary. `BEGIN
/// ISOLATION LEVEL SERIALIZABLE READ ONLY` used to be routed to the replica, which answered
/// 0A000; a client whose `default_transaction_isolation` is serializable had every read
/// routed there, each failing with 0A000.
#[tokio::test]
async fn serializable_transactions_run_on_the_primary() {
    let pgweir = auto_routing(&[replica().await]).start();
    let client = routed_client(&pgweir).await;
    client
        .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE")
        .await
        .expect("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE");
    let row = client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
    assert_eq!(row.get::<_, i32>(0), 1);
    assert!(
        !read_on_replica(&client).await,
        "serializable on the replica"
    );
    client.batch_execute("COMMIT").await.expect("COMMIT");

    let client = routed_client(&pgweir).await;
    client
        .batch_execute("SET default_transaction_isolation = 'serializable'")
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(!read_on_replica(&client).await, "a serializable read");
        let rows = client
            .query_typed("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("an extended serializable read");
        assert!(!rows[0].get::<_, bool>(0), "an extended serializable read");
    }
    client
        .batch_execute("SET default_transaction_isolation = 'read committed'")
        .await
        .unwrap();
    until_reads_on_replica(&client, "reads back on the replica").await;
}

/// In a transaction routed to a replica, state that would outlive it there is refused
/// (0A000), so the client stays free to write on the primary. A `WITH HOLD` cursor or SQL
/// `PREPARE` used to succeed and pin the client to the replica, where every later write
/// failed with 25006.
#[tokio::test]
async fn state_that_would_pin_a_client_to_a_replica_is_refused() {
    let replica = with_table("re_pin").await;
    let pgweir = auto_routing(&[replica]).start();
    let client = pgweir.connect().await;
    let pinning = [
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "PREPARE p AS SELECT 1",
    ];
    for (id, sql) in (1..).zip(pinning) {
        read_only_on_replica(&client).await;
        let refused = client.simple_query(sql).await;
        assert_eq!(expect_sqlstate(refused, sql).code(), "0A000", "{sql}");
        client.batch_execute("ROLLBACK").await.unwrap();
        assert!(
            !insert_on_replica(&client, "re_pin", id).await,
            "after {sql}"
        );
    }
    assert_eq!(primary_rows("re_pin").await, 2);
}

/// `SET pgweir.route` sent as a Query inside an open extended-protocol batch goes to the
/// server like any Query (see the README's known limits). It used to be held for pgweir to
/// answer once the link went quiet, which the open batch never does: the Sync behind it
/// waited too, and the client hung.
#[tokio::test]
async fn set_pgweir_route_inside_an_open_batch_does_not_hang() {
    let pgweir = auto_routing(&[replica().await]).auth_type("trust").start();
    let mut wire = routed_wire(&pgweir).await;
    wire.run("SELECT pg_is_in_recovery()").flush().send().await;
    let mut flushed = Vec::new();
    for _ in 0..4 {
        flushed.push(wire.recv().await);
    }
    assert_eq!(tags(&flushed), "12DC", "{flushed:?}");

    wire.query("SET pgweir.route TO primary")
        .sync()
        .send()
        .await;
    let (query, sync) = within(5, "the Query and the Sync", async {
        (wire.until_ready().await, wire.until_ready().await)
    })
    .await;
    assert!(
        ["CZ", "EZ"].contains(&tags(&query).as_str()),
        "the Query's answer: {query:?}"
    );
    assert_eq!(tags(&sync), "Z", "the Sync's answer: {sync:?}");
    wire.query("SELECT 1").send().await;
    let after = within(10, "a query after the batch", wire.until_ready()).await;
    no_errors(&after, "a query after the batch");
    assert_eq!(data(&after), [Some("1".to_string())]);
}

/// A `COMMIT` outside a transaction answers as Postgres does (WARNING 25P01, then
/// CommandComplete), alone or pipelined after a read on the replica, where it is let
/// through as a transaction end. A check of behaviour rather than a regression: before the
/// fix the pipelined COMMIT was held and answered by the primary, the same way.
#[tokio::test]
async fn a_stray_commit_answers_as_postgres_does() {
    let pgweir = auto_routing(&[replica().await]).auth_type("trust").start();
    let mut wire = routed_wire(&pgweir).await;
    let check = |msgs: &[Msg]| {
        assert_eq!(tags(msgs), "NCZ", "{msgs:?}");
        assert_eq!(msgs[0].sqlstate().as_deref(), Some("25P01"));
        let message = msgs[0].message();
        assert_eq!(
            message.as_deref(),
            Some("there is no transaction in progress")
        );
        assert_eq!(msgs[1].body, b"COMMIT\0");
        assert_eq!(msgs[2].body, b"I");
    };
    wire.query("COMMIT").send().await;
    check(&within(10, "COMMIT alone", wire.until_ready()).await);

    until_wire_reads_on_replica(&mut wire).await;
    wire.query("SELECT pg_is_in_recovery()").query("COMMIT");
    wire.send().await;
    let (read, commit) = within(10, "a read and a COMMIT", async {
        (wire.until_ready().await, wire.until_ready().await)
    })
    .await;
    no_errors(&read, "the read before COMMIT");
    check(&commit);
    // A COMMIT writes nothing: read-your-writes does not keep the next read off the replica.
    wire.query("SELECT pg_is_in_recovery()").send().await;
    let next = within(10, "the read after COMMIT", wire.until_ready()).await;
    assert_eq!(data(&next), [t()], "the read after COMMIT: {next:?}");
}

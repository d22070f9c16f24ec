//! Replica read routing end to end (issue 5): with `read_routing = "auto"` reads run on a
//! streaming replica and writes on the primary, whatever protocol carries them; explicit
//! transactions go where their first statement says; hints, `read_only_functions` and
//! `SET pgweir.route` override the classifier.
//!
//! Every test here shares one replica of `common::routing::primary` (none of them stops or
//! pauses it) and runs its own pgweir in front of both. Which node ran a statement is read
//! from the statement itself (`pg_is_in_recovery()`, see `common::routing`).

use crate::common;

use common::routing::{
    auto_routing, data, eventually, first_column, insert_on_replica, no_errors, primary,
    primary_rows, ran_on_replica, read_on_replica, replica, routed_client, routed_wire,
    until_reads_on_replica, until_wire_reads_on_replica, with_table,
};
use common::wire::{tags, Wire};
use common::{expect_sqlstate, within, Pgweir, TEST_DB};

#[tokio::test]
async fn reads_go_to_the_replica_and_writes_to_the_primary() {
    let replica = with_table("rt_basic").await;
    let pgweir = auto_routing(&[replica]).start();
    let writer = routed_client(&pgweir).await;

    assert!(!insert_on_replica(&writer, "rt_basic", 1).await);
    let rows = writer
        .query_typed(
            "INSERT INTO rt_basic VALUES (2) RETURNING pg_is_in_recovery()",
            &[],
        )
        .await
        .expect("an extended-protocol INSERT");
    assert!(!rows[0].get::<_, bool>(0), "the INSERT ran on the replica");
    let mixed = "INSERT INTO rt_basic VALUES (3); SELECT pg_is_in_recovery()";
    let on_replica = ran_on_replica(&writer, mixed).await.expect(mixed);
    assert!(!on_replica, "a write and a read in one string is a write");
    assert_eq!(primary_rows("rt_basic").await, 3);

    // A client that never wrote reads the rows from the replica once it has replayed them.
    let reader = &pgweir.connect().await;
    eventually("the replica serving the written rows", || async move {
        let row = reader
            .query_typed("SELECT pg_is_in_recovery(), count(*) FROM rt_basic", &[])
            .await
            .expect("a read through pgweir");
        row[0].get::<_, bool>(0) && row[0].get::<_, i64>(1) == 3
    })
    .await;
}

#[tokio::test]
async fn transactions_that_write_run_on_the_primary() {
    let replica = with_table("rt_tx").await;
    let pgweir = auto_routing(&[replica]).start();

    // The write is the transaction's first statement.
    let mut first = routed_client(&pgweir).await;
    let tx = first.transaction().await.unwrap();
    let sql = "INSERT INTO rt_tx VALUES (1) RETURNING pg_is_in_recovery()";
    assert!(!tx.query_one(sql, &[]).await.unwrap().get::<_, bool>(0));
    let read = tx.query_one("SELECT pg_is_in_recovery()", &[]).await;
    assert!(!read.unwrap().get::<_, bool>(0), "a read after the write");
    tx.commit().await.unwrap();

    // A plain BEGIN promises nothing, so a read first does not send the transaction away
    // from the primary the write after it needs.
    let mut second = routed_client(&pgweir).await;
    let tx = second.transaction().await.unwrap();
    let read = tx.query_one("SELECT pg_is_in_recovery()", &[]).await;
    assert!(!read.unwrap().get::<_, bool>(0), "a read opening BEGIN");
    let sql = "INSERT INTO rt_tx VALUES (2) RETURNING pg_is_in_recovery()";
    assert!(!tx.query_one(sql, &[]).await.unwrap().get::<_, bool>(0));
    tx.commit().await.unwrap();

    // The same transaction as one simple-query string.
    let third = routed_client(&pgweir).await;
    let sql = "BEGIN; SELECT pg_is_in_recovery(); \
               INSERT INTO rt_tx VALUES (3) RETURNING pg_is_in_recovery(); COMMIT";
    let values = first_column(&third.simple_query(sql).await.expect(sql));
    let f = Some("f".to_string());
    assert_eq!(values, [f.clone(), f]);
    assert_eq!(primary_rows("rt_tx").await, 3);
}

#[tokio::test]
async fn a_read_only_transaction_runs_on_the_replica_which_refuses_its_writes() {
    let replica = with_table("rt_ro").await;
    let pgweir = auto_routing(&[replica]).start();

    let client = pgweir.connect().await;
    within(30, "BEGIN READ ONLY on the replica", async {
        loop {
            client.batch_execute("BEGIN READ ONLY").await.unwrap();
            if read_on_replica(&client).await {
                return;
            }
            client.batch_execute("ROLLBACK").await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let write = client.simple_query("INSERT INTO rt_ro VALUES (1)").await;
    assert_eq!(expect_sqlstate(write, "a write").code(), "25006");
    client.batch_execute("ROLLBACK").await.unwrap();

    // START TRANSACTION READ ONLY, as the driver's transaction builder sends it.
    let mut driver = pgweir.connect().await;
    within(30, "START TRANSACTION READ ONLY on the replica", async {
        loop {
            let tx = driver.build_transaction().read_only(true).start().await;
            let tx = tx.unwrap();
            let read = tx.query_one("SELECT pg_is_in_recovery()", &[]).await;
            if read.unwrap().get::<_, bool>(0) {
                let write = tx.execute("INSERT INTO rt_ro VALUES (2)", &[]).await;
                assert_eq!(expect_sqlstate(write, "a write").code(), "25006");
                tx.rollback().await.unwrap();
                return;
            }
            tx.rollback().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    // Neither client is stuck on the replica: their next writes run on the primary.
    assert!(!insert_on_replica(&client, "rt_ro", 3).await);
    assert!(!insert_on_replica(&driver, "rt_ro", 4).await);
    assert_eq!(primary_rows("rt_ro").await, 2);
}

#[tokio::test]
async fn routing_hints_override_the_classifier() {
    let replica = replica().await;
    primary()
        .admin_on(TEST_DB)
        .await
        .batch_execute(
            "CREATE FUNCTION rt_hint_answer() RETURNS int LANGUAGE sql STABLE AS 'SELECT 42'",
        )
        .await
        .unwrap();
    replica.wait_caught_up(primary()).await;
    let pgweir = auto_routing(&[replica]).start();
    let client = &routed_client(&pgweir).await;

    let to_primary = "/* pgweir:primary */ SELECT pg_is_in_recovery()";
    for _ in 0..5 {
        assert!(!ran_on_replica(client, to_primary).await.unwrap());
        let rows = client.query_typed(to_primary, &[]).await.unwrap();
        assert!(!rows[0].get::<_, bool>(0), "extended: {to_primary}");
    }

    // A function the classifier does not know may write: the primary, unless hinted.
    let unknown = "SELECT pg_is_in_recovery(), rt_hint_answer()";
    assert!(!ran_on_replica(client, unknown).await.unwrap());
    let hinted = "/* pgweir:replica */ SELECT pg_is_in_recovery(), rt_hint_answer()";
    eventually("a hinted read on the replica", || async move {
        ran_on_replica(client, hinted).await.unwrap()
    })
    .await;
    eventually("a hinted extended read on the replica", || async move {
        let rows = client.query_typed(hinted, &[]).await.unwrap();
        rows[0].get::<_, bool>(0)
    })
    .await;
}

#[tokio::test]
async fn declared_read_only_functions_go_to_the_replica() {
    let replica = replica().await;
    primary()
        .admin_on(TEST_DB)
        .await
        .batch_execute(
            "CREATE FUNCTION rt_declared() RETURNS int LANGUAGE sql STABLE AS 'SELECT 7'",
        )
        .await
        .unwrap();
    replica.wait_caught_up(primary()).await;
    let pgweir = auto_routing(&[replica])
        .database_setting("read_only_functions = [\"rt_declared\"]")
        .start();
    let client = &pgweir.connect().await;
    let sql = "SELECT pg_is_in_recovery(), rt_declared()";
    eventually(
        "a read calling a declared function on the replica",
        || async move { ran_on_replica(client, sql).await.expect(sql) },
    )
    .await;
}

#[tokio::test]
async fn set_pgweir_route_steers_the_session() {
    let replica = with_table("rt_set").await;
    let pgweir = auto_routing(&[replica]).start();
    let client = routed_client(&pgweir).await;

    // `primary` is a reserved word: had this reached Postgres it would be a syntax error.
    client
        .batch_execute("SET pgweir.route TO primary")
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(!read_on_replica(&client).await, "route = primary");
        let rows = client
            .query_typed("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert!(!rows[0].get::<_, bool>(0), "route = primary, extended");
    }

    client
        .batch_execute("SET pgweir.route TO replica")
        .await
        .unwrap();
    until_reads_on_replica(&client, "route = replica").await;
    let write = client.simple_query("INSERT INTO rt_set VALUES (1)").await;
    assert_eq!(
        expect_sqlstate(write, "a write with route = replica").code(),
        "25006",
        "route = replica sends writes to the replica too"
    );

    client
        .batch_execute("SET pgweir.route = auto")
        .await
        .unwrap();
    until_reads_on_replica(&client, "route = auto").await;
    assert!(!insert_on_replica(&client, "rt_set", 2).await);
    assert_eq!(primary_rows("rt_set").await, 1);
}

#[tokio::test]
async fn set_pgweir_route_routes_a_database_whose_read_routing_is_off() {
    let replica = with_table("rt_off").await;
    let pgweir = Pgweir::builder()
        .on(primary())
        .replicas(&[replica])
        .general("replica_check_interval = \"50ms\"")
        .start();

    let auto = pgweir.connect().await;
    auto.batch_execute("SET pgweir.route TO auto")
        .await
        .unwrap();
    until_reads_on_replica(&auto, "route = auto with read_routing off").await;
    assert!(!insert_on_replica(&auto, "rt_off", 1).await);

    let to_replica = pgweir.connect().await;
    to_replica
        .batch_execute("SET pgweir.route TO replica")
        .await
        .unwrap();
    until_reads_on_replica(&to_replica, "route = replica with read_routing off").await;

    // The replica is usable (just seen), yet a session that set nothing reads the primary.
    let plain = pgweir.connect().await;
    for _ in 0..5 {
        assert!(!read_on_replica(&plain).await, "read_routing is off");
    }
}

#[tokio::test]
async fn prepared_statements_keep_the_route_of_their_text() {
    let replica = with_table("rt_prep").await;
    let pgweir = auto_routing(&[replica]).start();
    let client = &pgweir.connect().await;
    let read = &client.prepare("SELECT pg_is_in_recovery()").await.unwrap();
    let write = &client
        .prepare("INSERT INTO rt_prep VALUES ($1) RETURNING pg_is_in_recovery()")
        .await
        .unwrap();

    let prepared_read_on_replica = || async move {
        let row = client.query_one(read, &[]).await.expect("prepared SELECT");
        row.get::<_, bool>(0)
    };
    eventually("a prepared SELECT on the replica", prepared_read_on_replica).await;
    for id in 0..5i32 {
        let row = client
            .query_one(write, &[&id])
            .await
            .expect("prepared INSERT");
        assert!(
            !row.get::<_, bool>(0),
            "the prepared INSERT ran on the replica"
        );
    }
    // Once the replica has replayed the client's writes, its reads go back there.
    eventually(
        "the prepared SELECT back on the replica",
        prepared_read_on_replica,
    )
    .await;
    assert_eq!(primary_rows("rt_prep").await, 5);
}

/// Sends a read and a write back to back (queued by `queue`, then written at once) from a
/// client whose reads land on the replica, five times. Every write must succeed on the
/// primary; the read must have run on the replica at least once, or the case under test
/// (a write arriving on a link routed to the replica) never happened.
async fn pipelined_read_then_write(table: &str, queue: fn(&mut Wire, &str, &str)) {
    let replica = with_table(table).await;
    let pgweir = auto_routing(&[replica]).auth_type("trust").start();
    let mut wire = routed_wire(&pgweir).await;
    let mut reads_on_replica = 0;
    for id in 0..5 {
        until_wire_reads_on_replica(&mut wire).await;
        let write = format!("INSERT INTO {table} VALUES ({id}) RETURNING pg_is_in_recovery()");
        queue(&mut wire, "SELECT pg_is_in_recovery()", &write);
        wire.send().await;
        let read = wire.until_ready().await;
        let written = wire.until_ready().await;
        no_errors(&read, "the pipelined read");
        no_errors(&written, "the pipelined write");
        assert_eq!(data(&written), [Some("f".to_string())], "the write's node");
        if data(&read) == [Some("t".to_string())] {
            reads_on_replica += 1;
        }
    }
    assert!(reads_on_replica > 0, "no pipelined read ran on the replica");
    assert_eq!(primary_rows(table).await, 5);
}

#[tokio::test]
async fn a_write_pipelined_after_a_read_runs_on_the_primary() {
    pipelined_read_then_write("rt_pipe_simple", |wire, read, write| {
        wire.query(read).query(write);
    })
    .await;
}

#[tokio::test]
async fn an_extended_write_pipelined_after_a_read_runs_on_the_primary() {
    pipelined_read_then_write("rt_pipe_extended", |wire, read, write| {
        wire.run(read).sync().run(write).sync();
    })
    .await;
}

#[tokio::test]
async fn set_pgweir_route_is_answered_by_pgweir_itself() {
    let pgweir = auto_routing(&[replica().await]).auth_type("trust").start();
    let mut wire = routed_wire(&pgweir).await;
    for value in ["primary", "replica", "auto"] {
        wire.query(&format!("SET pgweir.route TO {value}"))
            .send()
            .await;
        let msgs = wire.until_ready().await;
        assert_eq!(tags(&msgs), "CZ", "SET pgweir.route TO {value}: {msgs:?}");
        assert_eq!(msgs[0].body, b"SET\0");
        assert_eq!(msgs[1].body, b"I", "idle after the SET");
        // No server ever saw the setting: to Postgres it is an unset placeholder.
        wire.query("SELECT current_setting('pgweir.route', true)")
            .send()
            .await;
        let msgs = wire.until_ready().await;
        no_errors(&msgs, "current_setting");
        assert_eq!(
            data(&msgs),
            [None],
            "route = {value}: a server has pgweir.route"
        );
    }
}

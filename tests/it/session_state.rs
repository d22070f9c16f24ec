//! Session state in transaction mode, case by case (the randomized proof is `leak.rs`):
//! settings that follow a client to other servers, SET LOCAL and rolled-back settings,
//! a LISTEN that pins the client and still delivers notifications while it is idle,
//! pinning that ends when the state is gone, and `pin_session_state = false`.

use crate::common;

use std::collections::HashSet;

use tokio_postgres::{AsyncMessage, Client};

use common::{
    backend_pid, connect_with_messages, expect_sqlstate, within, Pgweir, SCRAM_USER, TEST_DB,
};

/// One value from a simple query.
async fn value(client: &Client, sql: &str) -> String {
    let row = client.query_one(sql, &[]).await.unwrap();
    row.get::<_, Option<String>>(0).unwrap_or_default()
}

/// Runs `rounds` one-statement transactions while `others` keep the pool busy, and returns
/// the backend pids the client saw: more than one means it really moved between servers.
async fn pids_while_busy(pgweir: &Pgweir, client: &Client, rounds: usize) -> HashSet<i32> {
    let other = pgweir.connect().await;
    let mut pids = HashSet::new();
    for _ in 0..rounds {
        pids.insert(backend_pid(client).await);
        other.simple_query("SELECT 1").await.unwrap();
    }
    pids
}

/// Checks the settings of the first test from inside one transaction; returns the pid.
async fn own_settings(client: &Client) -> i32 {
    let tx = client.simple_query("BEGIN");
    tx.await.unwrap();
    assert_eq!(
        value(client, "SHOW search_path").await,
        "pg_catalog, public"
    );
    assert_eq!(
        value(client, "SELECT current_setting('app.tenant')").await,
        "t1"
    );
    assert_eq!(value(client, "SHOW work_mem").await, "4MB");
    assert_eq!(value(client, "SHOW statement_timeout").await, "0");
    assert_eq!(value(client, "SHOW lock_timeout").await, "0");
    let pid = backend_pid(client).await;
    client.simple_query("COMMIT").await.unwrap();
    pid
}

#[tokio::test]
async fn settings_follow_the_client_and_local_or_rolled_back_ones_do_not() {
    let pgweir = Pgweir::builder().pool_size(2).start();
    let client = pgweir.connect().await;
    let other = pgweir.connect().await;
    client
        .batch_execute("SET search_path = pg_catalog, public; SET app.tenant = 't1'")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; SET LOCAL work_mem = '7MB'; SET statement_timeout = '9s'; ROLLBACK")
        .await
        .unwrap();
    client
        .batch_execute("BEGIN; SET LOCAL lock_timeout = '3s'; COMMIT")
        .await
        .unwrap();
    let mut pids = HashSet::new();
    for _ in 0..3 {
        // The client's own last server is the most recently used: `other` takes it, so the
        // second check runs on the other server.
        pids.insert(own_settings(&client).await);
        other.simple_query("BEGIN").await.unwrap();
        pids.insert(own_settings(&client).await);
        other.simple_query("COMMIT").await.unwrap();
        // Fresh clients never see this client's settings.
        let fresh = pgweir.connect().await;
        assert_eq!(value(&fresh, "SHOW search_path").await, "\"$user\", public");
    }
    assert_eq!(pids.len(), 2, "the client used both servers: {pids:?}");
    client.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(
        value(&client, "SHOW search_path").await,
        "\"$user\", public"
    );
}

#[tokio::test]
async fn listen_pins_the_client_and_notifications_arrive_while_idle() {
    let pgweir = Pgweir::builder().pool_size(2).log_level("debug").start();
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let (listener, mut messages) = connect_with_messages(&config).await;
    listener
        .batch_execute("LISTEN pinned_channel")
        .await
        .unwrap();
    let pid = backend_pid(&listener).await;
    let notifier = pgweir.connect().await;
    notifier
        .batch_execute("NOTIFY pinned_channel, 'hello'")
        .await
        .unwrap();
    let note = within(10, "the notification", async {
        loop {
            if let Some(AsyncMessage::Notification(n)) = messages.recv().await {
                return n;
            }
        }
    })
    .await;
    assert_eq!(note.payload(), "hello");
    assert!(pgweir.log().contains("client pinning changed"));
    let others = pids_while_busy(&pgweir, &listener, 5).await;
    assert_eq!(
        others,
        HashSet::from([pid]),
        "a pinned client stays on its server"
    );

    listener.batch_execute("UNLISTEN *").await.unwrap();
    let holder = pgweir.connect().await;
    holder.batch_execute("BEGIN").await.unwrap();
    let held = backend_pid(&holder).await;
    let after = backend_pid(&listener).await;
    assert_ne!(after, held);
    holder.batch_execute("COMMIT").await.unwrap();
    let fresh = pgweir.connect().await;
    fresh.batch_execute("BEGIN").await.unwrap();
    let channels = value(&fresh, "SELECT count(*)::text FROM pg_listening_channels()").await;
    assert_eq!(channels, "0", "the server was cleaned of the LISTEN");
}

#[tokio::test]
async fn a_pinned_client_keeps_the_only_server_until_its_state_is_gone() {
    let pgweir = Pgweir::builder()
        .pool_size(1)
        .pool("query_wait_timeout = 1")
        .start();
    let pinned = pgweir.connect().await;
    pinned
        .query("SELECT pg_advisory_lock(4242)", &[])
        .await
        .unwrap();
    let waiting = pgweir.connect().await;
    let err = waiting.simple_query("SELECT 1").await;
    expect_sqlstate(err, "a client waiting behind a pinned one");
    pinned
        .query("SELECT pg_advisory_unlock(4242)", &[])
        .await
        .unwrap();
    let next = pgweir.connect().await;
    within(10, "the server to come back", next.simple_query("SELECT 1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn with_pinning_off_pinning_statements_are_refused() {
    let pgweir = Pgweir::builder()
        .pool_size(1)
        .database_setting("pin_session_state = false")
        .start();
    let client = pgweir.connect().await;
    for sql in [
        "LISTEN x",
        "SELECT pg_advisory_lock(1)",
        "CREATE TEMP TABLE t (a int)",
        "PREPARE p AS SELECT 1",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "LOAD 'auto_explain'",
    ] {
        let err = client.simple_query(sql).await.expect_err(sql);
        let db = err.as_db_error().expect("an ErrorResponse");
        assert_eq!(db.code().code(), "0A000", "{sql}");
        assert!(
            db.message().contains("pin_session_state"),
            "{}",
            db.message()
        );
    }
    client.simple_query("SELECT 1").await.unwrap();
}

/// With `standard_conforming_strings` off a backslash escapes a quote, which the lexer does
/// not model: pgweir then treats every statement as one that may do anything, so a SET the
/// lexer would miss never reaches another client.
#[tokio::test]
async fn backslash_quotes_cannot_hide_a_set() {
    let pgweir = Pgweir::builder().pool_size(2).start();
    let client = pgweir.connect().await;
    client
        .batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    client
        .batch_execute(r"SELECT 'x\'' ; SET search_path = pg_catalog; SELECT 1 -- '")
        .await
        .unwrap();
    assert_eq!(value(&client, "SHOW search_path").await, "pg_catalog");
    for _ in 0..4 {
        let other = pgweir.connect().await;
        assert_eq!(value(&other, "SHOW search_path").await, "\"$user\", public");
    }
}

/// A setting holding a backslash and a quote, carried to other servers while the servers
/// read literals with `standard_conforming_strings` off (the database's default here; the
/// client asks for it on at startup, so it is not pinned): the set_config pgweir runs on each
/// server quotes the value as an `E''` literal, so it arrives whole and nothing in it runs.
#[tokio::test]
async fn backslashes_in_settings_survive_servers_without_standard_strings() {
    let db = common::cluster().create_database("scs_off");
    common::cluster().psql(
        "postgres",
        &format!("ALTER DATABASE {db} SET standard_conforming_strings = off"),
    );
    let pgweir = Pgweir::builder().database(&db).pool_size(2).start();
    let tricky = r"x\'); SELECT pg_sleep(0); -- \";
    // The client's own settings come in its startup packet, so it never reads with
    // standard_conforming_strings off and is never pinned for it.
    let mut config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, &db);
    config
        .options("-c standard_conforming_strings=on")
        .application_name(tricky);
    let client = common::connect(&config).await.expect("connect");
    let other = pgweir.connect_as(&SCRAM_USER, &db).await;
    let mut pids = HashSet::new();
    for round in 0..8 {
        // Every other round the other client holds a server, so this one gets the other.
        let hold = round % 2 == 1;
        if hold {
            other.simple_query("BEGIN").await.unwrap();
            assert_eq!(value(&other, "SHOW application_name").await, "");
        }
        client.simple_query("BEGIN").await.unwrap();
        assert_eq!(value(&client, "SHOW application_name").await, tricky);
        assert_eq!(
            value(&client, "SHOW standard_conforming_strings").await,
            "on"
        );
        pids.insert(backend_pid(&client).await);
        client.simple_query("COMMIT").await.unwrap();
        if hold {
            other.simple_query("COMMIT").await.unwrap();
        }
    }
    assert!(
        pids.len() > 1,
        "the setting moved between servers: {pids:?}"
    );
}

//! The extended protocol spoken by hand, for the cases drivers rarely produce:
//! Flush without Sync, an error that makes the server skip to Sync, several Syncs
//! in flight, named statements with Describe and Close, and what pgweir itself says
//! at login (its own BackendKeyData, the cached ParameterStatus set).

use crate::common;

use std::time::Duration;

use common::wire::{tags, Wire};
use common::{Pgweir, SCRAM_USER, TEST_DB};

fn trust_pgweir(pool_size: usize) -> Pgweir {
    Pgweir::builder()
        .auth_type("trust")
        .pool_size(pool_size)
        .start()
}

async fn login(pgweir: &Pgweir) -> Wire {
    Wire::startup(pgweir.port, SCRAM_USER.name, TEST_DB).await.0
}

#[tokio::test]
async fn flush_delivers_responses_before_sync() {
    let pgweir = trust_pgweir(1);
    let mut wire = login(&pgweir).await;
    wire.parse("", "SELECT 'flushed'")
        .bind("", "")
        .describe(b'P', "")
        .execute("")
        .flush();
    wire.send().await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(wire.recv().await);
    }
    assert_eq!(tags(&got), "12TDC", "responses before Sync");
    assert_eq!(got[3].first_column().as_deref(), Some("flushed"));
    wire.sync().send().await;
    let rest = wire.until_ready().await;
    assert_eq!(tags(&rest), "Z");
    assert_eq!(rest[0].body, b"I");
}

#[tokio::test]
async fn error_mid_pipeline_skips_to_sync_and_frees_the_server() {
    let pgweir = trust_pgweir(1);
    let mut first = login(&pgweir).await;
    first
        .run("SELECT 1 / (random() * 0)::int")
        .run("SELECT 'skipped'")
        .sync();
    first.send().await;
    let msgs = first.until_ready().await;
    assert_eq!(
        tags(&msgs),
        "12EZ",
        "the server skips everything up to Sync"
    );
    assert_eq!(msgs[2].sqlstate().as_deref(), Some("22012"));
    assert_eq!(msgs[3].body, b"I");

    let mut second = login(&pgweir).await;
    second.query("SELECT 'second'").send().await;
    let msgs = second.until_ready().await;
    assert_eq!(tags(&msgs), "TDCZ", "the only server was not given back");

    first.run("SELECT 'first again'").sync().send().await;
    let msgs = first.until_ready().await;
    assert_eq!(msgs[2].first_column().as_deref(), Some("first again"));
}

#[tokio::test]
async fn many_syncs_in_flight_stay_with_their_client() {
    let pgweir = trust_pgweir(1);
    let mut a = login(&pgweir).await;
    let mut b = login(&pgweir).await;
    for i in 0..3 {
        a.run(&format!("SELECT 'a{i}' FROM pg_sleep(0.2)")).sync();
    }
    a.send().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.query("SELECT 'b'").send().await;

    let mut a_rows = Vec::new();
    for _ in 0..3 {
        let msgs = a.until_ready().await;
        assert_eq!(tags(&msgs), "12DCZ");
        a_rows.push(msgs[2].first_column().unwrap());
    }
    assert_eq!(a_rows, ["a0", "a1", "a2"]);
    let msgs = b.until_ready().await;
    assert_eq!(msgs[1].first_column().as_deref(), Some("b"));
}

#[tokio::test]
async fn hundred_syncs_in_one_write() {
    let pgweir = trust_pgweir(2);
    let mut wire = login(&pgweir).await;
    for i in 0..100 {
        wire.run(&format!("SELECT {i}")).sync();
    }
    wire.send().await;
    for i in 0..100 {
        let msgs = wire.until_ready().await;
        assert_eq!(msgs[2].first_column(), Some(i.to_string()));
    }
}

#[tokio::test]
async fn named_statement_describe_bind_close() {
    let pgweir = trust_pgweir(1);
    let mut wire = login(&pgweir).await;
    wire.parse("s1", "SELECT 'named'::text AS v")
        .describe(b'S', "s1")
        .bind("p1", "s1")
        .execute("p1")
        .close(b'P', "p1")
        .close(b'S', "s1")
        .sync();
    wire.send().await;
    let msgs = wire.until_ready().await;
    assert_eq!(tags(&msgs), "1tT2DC33Z");
    assert_eq!(msgs[4].first_column().as_deref(), Some("named"));
}

#[tokio::test]
async fn empty_query_and_terminate() {
    let pgweir = trust_pgweir(1);
    let mut wire = login(&pgweir).await;
    wire.query("").send().await;
    assert_eq!(tags(&wire.until_ready().await), "IZ");
    wire.terminate().send().await;
    let eof = tokio::time::timeout(Duration::from_secs(5), wire.read_msg()).await;
    assert!(
        matches!(eof, Ok(None)),
        "pgweir must close after Terminate: {eof:?}"
    );
}

#[tokio::test]
async fn backend_key_is_pgweirs_own() {
    let pgweir = trust_pgweir(1);
    let (mut wire, login) = Wire::startup(pgweir.port, SCRAM_USER.name, TEST_DB).await;
    let key = login
        .iter()
        .find(|m| m.tag == b'K')
        .expect("BackendKeyData at login");
    wire.query("SELECT pg_backend_pid()").send().await;
    let msgs = wire.until_ready().await;
    let server_pid: i32 = msgs[1].first_column().unwrap().parse().unwrap();
    assert_ne!(
        key.key_pid(),
        server_pid,
        "the client was given the server's own key"
    );
}

#[tokio::test]
async fn login_completes_while_every_server_is_busy() {
    let pgweir = trust_pgweir(1);
    let mut holder = login(&pgweir).await;
    holder.query("BEGIN").send().await;
    assert_eq!(holder.until_ready().await.last().unwrap().body, b"T");

    let (_wire, login) = tokio::time::timeout(
        Duration::from_secs(3),
        Wire::startup(pgweir.port, SCRAM_USER.name, TEST_DB),
    )
    .await
    .expect("login must not wait for a free server");
    let params: Vec<(String, String)> = login
        .iter()
        .filter(|m| m.tag == b'S')
        .map(|m| m.parameter())
        .collect();
    for name in [
        "server_version",
        "server_encoding",
        "client_encoding",
        "DateStyle",
        "integer_datetimes",
        "standard_conforming_strings",
    ] {
        assert!(
            params.iter().any(|(n, _)| n == name),
            "ParameterStatus {name} missing: {params:?}"
        );
    }
    assert_eq!(tags(&login[..1]), "R", "AuthenticationOk first");
    assert_eq!(login.last().unwrap().body, b"I");
}

/// A FunctionCall message calling `oid` with two binary int4 arguments.
fn function_call(oid: u32, a: i32, b: i32) -> Vec<u8> {
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&1i16.to_be_bytes()); // one format code for all args
    body.extend_from_slice(&1i16.to_be_bytes()); // binary
    body.extend_from_slice(&2i16.to_be_bytes());
    for arg in [a, b] {
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&arg.to_be_bytes());
    }
    body.extend_from_slice(&1i16.to_be_bytes()); // binary result
    let mut msg = vec![b'F'];
    msg.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

#[tokio::test]
async fn function_call_outside_a_transaction() {
    let pgweir = trust_pgweir(1);
    let mut wire = login(&pgweir).await;
    wire.query("SELECT 'int4pl'::regproc::oid").send().await;
    let oid: u32 = wire.until_ready().await[1]
        .first_column()
        .unwrap()
        .parse()
        .unwrap();
    wire.raw(&function_call(oid, 2, 3)).send().await;
    let msgs = wire.until_ready().await;
    assert_eq!(tags(&msgs), "VZ");
    assert_eq!(&msgs[0].body[4..], &5i32.to_be_bytes());
    assert_eq!(msgs[1].body, b"I");
    let mut other = login(&pgweir).await;
    other.query("SELECT 'free'").send().await;
    assert_eq!(
        tags(&other.until_ready().await),
        "TDCZ",
        "server not given back after FunctionCall"
    );
}

#[tokio::test]
async fn garbage_from_one_client_does_not_hurt_the_others() {
    let pgweir = trust_pgweir(1);
    let mut bad = login(&pgweir).await;
    bad.raw(&[b'Q', 0, 0, 0, 2]).send().await;
    let answer = tokio::time::timeout(Duration::from_secs(5), bad.read_msg()).await;
    match answer {
        Ok(None) => {}
        Ok(Some(msg)) => assert_eq!(msg.tag, b'E', "a bad length must be an error: {msg:?}"),
        Err(_) => panic!("pgweir neither answered nor closed after a bad message length"),
    }
    let mut huge = Wire::connect(pgweir.port).await;
    huge.raw(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).send().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), huge.read_msg()).await;

    let mut good = login(&pgweir).await;
    good.query("SELECT 'unharmed'").send().await;
    let msgs = good.until_ready().await;
    assert_eq!(msgs[1].first_column().as_deref(), Some("unharmed"));
}

#[tokio::test]
async fn portal_suspended_and_resumed_in_one_batch() {
    let pgweir = trust_pgweir(1);
    let mut wire = login(&pgweir).await;
    wire.query("BEGIN").send().await;
    wire.until_ready().await;
    wire.parse("", "SELECT generate_series(1, 5)")
        .bind("c", "")
        .execute_rows("c", 2)
        .execute_rows("c", 2)
        .execute_rows("c", 2)
        .sync();
    wire.send().await;
    let msgs = wire.until_ready().await;
    assert_eq!(tags(&msgs), "12DDsDDsDCZ");
    assert_eq!(msgs.last().unwrap().body, b"T");
    wire.query("COMMIT").send().await;
    assert_eq!(wire.until_ready().await.last().unwrap().body, b"I");
}

#[tokio::test]
async fn database_defaults_to_the_user_name() {
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .extra(&format!(
            "[databases.{}]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{TEST_DB}\"\n",
            SCRAM_USER.name,
            common::cluster().port
        ))
        .start();
    let (mut wire, _) = Wire::startup_with(pgweir.port, &[("user", SCRAM_USER.name)]).await;
    wire.query("SELECT current_database()").send().await;
    let msgs = wire.until_ready().await;
    assert_eq!(msgs[1].first_column().as_deref(), Some(TEST_DB));
}

/// A message type no client may send ends the session as Postgres ends it (FATAL 08P01
/// `invalid frontend message type`), with no server as inside a transaction; the server of
/// that transaction is not handed to anyone else.
#[tokio::test]
async fn unknown_message_types_end_the_session_as_in_postgres() {
    let pgweir = trust_pgweir(1);
    for (tag, in_transaction) in [(b'z', false), (0u8, false), (b'z', true), (0u8, true)] {
        let mut wire = login(&pgweir).await;
        if in_transaction {
            wire.query("BEGIN; CREATE TEMP TABLE leftover (x int)")
                .send()
                .await;
            wire.until_ready().await;
        }
        wire.raw(&[tag, 0, 0, 0, 4]).send().await;
        let reply = wire.recv().await;
        assert_eq!(reply.tag, b'E', "type {tag}: {reply:?}");
        assert_eq!(reply.sqlstate().as_deref(), Some("08P01"));
        let expected = format!("invalid frontend message type {tag}");
        assert_eq!(reply.message(), Some(expected));
        let mut next = login(&pgweir).await;
        next.query("SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'")
            .send()
            .await;
        let rows = next.until_ready().await;
        assert_eq!(
            rows[1].first_column().as_deref(),
            Some("0"),
            "no leftover state"
        );
    }
}

/// A statement name of 70,000 bytes (Postgres takes it) works in Parse and in the Bind
/// that follows, which is then longer than 64 KiB.
#[tokio::test]
async fn a_statement_name_longer_than_64_kib_binds() {
    let pgweir = trust_pgweir(1);
    let mut wire = login(&pgweir).await;
    let name = "s".repeat(70_000);
    wire.parse(&name, "SELECT 'long name'")
        .bind("", &name)
        .execute("")
        .sync();
    wire.send().await;
    let msgs = wire.until_ready().await;
    assert_eq!(tags(&msgs), "12DCZ", "{msgs:?}");
    assert_eq!(msgs[2].first_column().as_deref(), Some("long name"));
}

/// A client that sends a query and shuts its sending side down still gets the result, then
/// the connection closes, as with Postgres; a Terminate after a query waits for it the same
/// way. The server goes back clean.
#[tokio::test]
async fn a_half_closed_client_gets_its_result_then_the_close() {
    let pgweir = trust_pgweir(1);
    let mut wire = login(&pgweir).await;
    wire.query("SELECT pg_sleep(0.2), 'answered'").send().await;
    wire.shutdown_write().await;
    let msgs = wire.until_ready().await;
    assert_eq!(tags(&msgs), "TDCZ", "{msgs:?}");
    assert!(wire.closed().await, "closed after the answer");

    let mut wire = login(&pgweir).await;
    wire.query("SELECT 'before goodbye'").send().await;
    wire.raw(&[b'X', 0, 0, 0, 4]).send().await;
    let msgs = wire.until_ready().await;
    assert_eq!(msgs[1].first_column().as_deref(), Some("before goodbye"));
    assert!(wire.closed().await);

    let mut next = login(&pgweir).await;
    next.query("SELECT 1").send().await;
    assert_eq!(
        tags(&next.until_ready().await),
        "TDCZ",
        "the server is reused"
    );
}

/// A client that leaves inside a batch (after a Flush, before any Sync: what asyncpg's
/// `prepare()` leaves behind), with a Terminate or by just closing, frees its server: no
/// Sync will ever complete the batch.
#[tokio::test]
async fn a_client_that_leaves_before_sync_frees_its_server() {
    let pgweir = trust_pgweir(1);
    for terminate in [true, false] {
        let mut wire = login(&pgweir).await;
        wire.parse("", "SELECT 1").describe(b'S', "").flush();
        wire.send().await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(wire.recv().await);
        }
        assert_eq!(tags(&got), "1tT", "answers to the Flush");
        if terminate {
            wire.terminate().send().await;
            assert!(wire.closed().await, "closed after the Terminate");
        } else {
            drop(wire);
        }
        let mut next = login(&pgweir).await;
        next.query("SELECT 1").send().await;
        let answered = common::within(10, "the next client's query", next.until_ready()).await;
        assert_eq!(
            tags(&answered),
            "TDCZ",
            "the server is free (terminate: {terminate})"
        );
    }
}

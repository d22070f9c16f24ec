//! Edge cases of prepared statements and session state found in review, each a scenario
//! that once went wrong: messages the server skips after an error, undo order, DEALLOCATE
//! ALL in a pipeline, Parse in a failed transaction, DEALLOCATE through the extended
//! protocol, custom settings pgweir cannot name, temporary functions, a client dropping
//! pgweir's own statement, and the state check under the client's statement_timeout.
//! Differential ones run the same raw-protocol script on Postgres and through pgweir and
//! compare the transcripts.
use crate::common;

use common::differential::{differential, missing, roundtrip, row, trust_pgweir};
use common::wire::{tags, Msg, Wire};
use common::{cluster, Pgweir, TEST_DB, TRUST_USER};

fn show(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| match m.tag {
            b'E' => format!(
                "E[{} {}]",
                m.sqlstate().unwrap_or_default(),
                m.message().unwrap_or_default()
            ),
            b'D' => format!("D[{:?}]", m.first_column()),
            t => (t as char).to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn login(port: u16) -> Wire {
    Wire::startup(port, TRUST_USER.name, TEST_DB).await.0
}

async fn until_error(w: &mut Wire) -> Vec<Msg> {
    let mut v = Vec::new();
    loop {
        let m = w.recv().await;
        let done = m.tag == b'E';
        v.push(m);
        if done {
            return v;
        }
    }
}

/// Messages sent after the server already reported an error (so the server skips them)
/// leave pgweir's bookkeeping as if they had succeeded.
async fn skipped_after_error(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = login(port).await;
    // An error the client waits for (Flush), then more of the same batch.
    a.run("SELECT 1/0").flush().send().await;
    out.push(show(&until_error(&mut a).await));
    a.parse("s1", "SELECT 4242")
        .bind("", "s1")
        .execute("")
        .sync()
        .send()
        .await;
    out.push(show(&a.until_ready().await));
    // Postgres: s1 was never created, so this Parse succeeds.
    a.parse("s1", "SELECT 4242").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.bind("", "s1").execute("").sync().send().await;
    out.push(show(&a.until_ready().await));
    out
}

/// Another client, same text, same server: the server cache says it is prepared.
async fn skipped_poisons_other_clients(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = login(port).await;
    a.run("SELECT 1/0").flush().send().await;
    out.push(show(&until_error(&mut a).await));
    a.parse("s1", "SELECT 777").sync().send().await;
    out.push(show(&a.until_ready().await));
    let mut b = login(port).await;
    b.parse("t1", "SELECT 777")
        .bind("", "t1")
        .execute("")
        .sync()
        .send()
        .await;
    out.push(show(&b.until_ready().await));
    out
}

/// Close skipped after an error: the client forgets a statement the server kept.
async fn close_skipped(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = login(port).await;
    a.parse("c1", "SELECT 5").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.run("SELECT 1/0").flush().send().await;
    out.push(show(&until_error(&mut a).await));
    a.close(b'S', "c1").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.bind("", "c1").execute("").sync().send().await;
    out.push(show(&a.until_ready().await));
    out
}

async fn both<F, Fut>(pool: usize, extra: &str, f: F)
where
    F: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let direct = f(cluster().port).await;
    let mut b = Pgweir::builder().auth_type("trust").pool_size(pool);
    if !extra.is_empty() {
        b = b.pool(extra);
    }
    let pgweir = b.start();
    let pooled = f(pgweir.port).await;
    println!("DIRECT:\n  {}", direct.join("\n  "));
    println!("PGWEIR:\n  {}", pooled.join("\n  "));
    assert_eq!(direct, pooled);
}

#[tokio::test]
async fn messages_skipped_after_an_error_leave_no_trace() {
    both(1, "", skipped_after_error).await;
}

#[tokio::test]
async fn skipped_parse_does_not_poison_the_server_for_others() {
    both(1, "", skipped_poisons_other_clients).await;
}

#[tokio::test]
async fn skipped_close_keeps_the_statement() {
    both(1, "", close_skipped).await;
}

/// Close s1 then Parse s1 again, both skipped after an earlier error in the batch.
async fn undo_order(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = login(port).await;
    a.parse("s1", "SELECT 1").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.parse("", "SELEC syntax error")
        .close(b'S', "s1")
        .parse("s1", "SELECT 2")
        .sync()
        .send()
        .await;
    out.push(show(&a.until_ready().await));
    a.bind("", "s1").execute("").sync().send().await;
    out.push(show(&a.until_ready().await));
    out
}

/// Parse s1 then Close s1, both skipped.
async fn undo_order2(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = login(port).await;
    a.parse("", "SELEC syntax error")
        .parse("s9", "SELECT 9")
        .close(b'S', "s9")
        .sync()
        .send()
        .await;
    out.push(show(&a.until_ready().await));
    a.bind("", "s9").execute("").sync().send().await;
    out.push(show(&a.until_ready().await));
    out
}

#[tokio::test]
async fn close_then_parse_of_one_name_unwinds_in_order() {
    both(1, "", undo_order).await;
}

#[tokio::test]
async fn parse_then_close_of_one_name_unwinds_in_order() {
    both(1, "", undo_order2).await;
}

async fn first_value(w: &mut Wire, sql: &str) -> String {
    w.query(sql).send().await;
    let msgs = w.until_ready().await;
    msgs.iter()
        .find(|m| m.tag == b'D')
        .and_then(|m| m.first_column())
        .unwrap_or_else(|| format!("<none: {}>", show(&msgs)))
}

/// A SET after 64 KB of query text is not seen: the server keeps it and the next client
/// on that server gets it.
#[tokio::test]
async fn a_set_after_64kb_of_query_text_is_seen() {
    let pgweir = Pgweir::builder().auth_type("trust").pool_size(1).start();
    let mut a = login(pgweir.port).await;
    let big = "x".repeat(70_000);
    a.query(&format!(
        "SELECT '{big}' AS pad; SET search_path = leaked_by_a"
    ))
    .send()
    .await;
    let r = a.until_ready().await;
    println!("a: {}", tags(&r));
    let mut b = login(pgweir.port).await;
    let sp = first_value(&mut b, "SHOW search_path").await;
    println!("b sees search_path = {sp}");
    assert_eq!(sp, "\"$user\", public");
}

/// Custom placeholders set through a statement prepared without a server (text known to
/// the registry) are never read back, so they stay on the server for the next client.
#[tokio::test]
async fn custom_setting_from_a_locally_prepared_statement_is_read_back() {
    let pgweir = Pgweir::builder().auth_type("trust").pool_size(1).start();
    let text = "SELECT pg_catalog.set_config('app.tenant', $1, false)";
    let mut a = login(pgweir.port).await;
    a.parse("p", text).sync().send().await;
    println!("a parse: {}", show(&a.until_ready().await));
    let mut b = login(pgweir.port).await;
    b.parse("q", text).sync().send().await; // answered locally
    println!("b parse: {}", show(&b.until_ready().await));
    b.bind_params("", "q", &["tenant-b"])
        .execute("")
        .sync()
        .send()
        .await;
    println!("b exec: {}", show(&b.until_ready().await));
    let mut c = login(pgweir.port).await;
    let v = first_value(&mut c, "SELECT current_setting('app.tenant', true)").await;
    println!("c sees app.tenant = {v:?}");
    assert_ne!(v, "tenant-b");
}

/// set_config with the name as a parameter: pgweir cannot read it back, so the client
/// keeps its server and nobody else sees the value.
#[tokio::test]
async fn computed_setting_name_pins_instead_of_leaking() {
    let pgweir = Pgweir::builder().auth_type("trust").pool_size(2).start();
    let mut a = login(pgweir.port).await;
    a.parse("", "SELECT pg_catalog.set_config($1, $2, false)")
        .bind_params("", "", &["app.user_id", "42"])
        .execute("")
        .sync()
        .send()
        .await;
    println!("a: {}", show(&a.until_ready().await));
    let mut c = login(pgweir.port).await;
    let v = first_value(&mut c, "SELECT current_setting('app.user_id', true)").await;
    println!("c sees app.user_id = {v:?}");
    assert_ne!(v, "42");
}

/// A temporary function pins its client like a temporary table.
#[tokio::test]
async fn temporary_function_pins_instead_of_leaking() {
    let pgweir = Pgweir::builder().auth_type("trust").pool_size(2).start();
    let mut a = login(pgweir.port).await;
    a.query("CREATE FUNCTION pg_temp.secret() RETURNS text LANGUAGE sql AS $$SELECT 'from a'$$")
        .send()
        .await;
    println!("a: {}", show(&a.until_ready().await));
    let mut c = login(pgweir.port).await;
    let v = first_value(&mut c, "SELECT pg_temp.secret()").await;
    println!("c: {v}");
    assert!(v.contains("<none"), "c called a's temp function: {v}");
}

/// DEALLOCATE of a protocol-level statement through the extended protocol (psycopg 3 in
/// pipeline mode).
async fn deallocate_extended(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = login(port).await;
    a.parse("_pg3_0", "SELECT 1").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.run("DEALLOCATE _pg3_0").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.parse("_pg3_0", "SELECT 2").sync().send().await;
    out.push(show(&a.until_ready().await));
    out
}

#[tokio::test]
async fn deallocate_through_the_extended_protocol() {
    both(1, "", deallocate_extended).await;
}

/// DEALLOCATE ALL, then a Parse in the same pipeline: the CommandComplete clears the name
/// the later Parse created.
async fn deallocate_all_then_parse(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = login(port).await;
    a.parse("old", "SELECT 0").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.run("DEALLOCATE ALL")
        .parse("s2", "SELECT 2")
        .sync()
        .send()
        .await;
    out.push(show(&a.until_ready().await));
    a.bind("", "s2").execute("").sync().send().await;
    out.push(show(&a.until_ready().await));
    out
}

#[tokio::test]
async fn deallocate_all_then_parse_in_one_pipeline() {
    both(1, "", deallocate_all_then_parse).await;
}

/// In a failed transaction, a Parse of a text the server already has is answered
/// ParseComplete; Postgres refuses it with 25P02.
async fn parse_in_failed_tx(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut a = login(port).await;
    a.parse("s1", "SELECT 11").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.query("BEGIN").send().await;
    out.push(show(&a.until_ready().await));
    a.query("SELECT 1/0").send().await;
    out.push(show(&a.until_ready().await));
    a.parse("s2", "SELECT 11").sync().send().await;
    out.push(show(&a.until_ready().await));
    a.query("ROLLBACK").send().await;
    out.push(show(&a.until_ready().await));
    a.parse("s2", "SELECT 11").sync().send().await;
    out.push(show(&a.until_ready().await));
    out
}

#[tokio::test]
async fn parse_in_a_failed_transaction_is_refused() {
    both(1, "", parse_in_failed_tx).await;
}

/// Another client deallocates an internal name with SQL; the server cache never learns.
#[tokio::test]
async fn a_client_dropping_an_internal_statement_heals() {
    let pgweir = Pgweir::builder().auth_type("trust").pool_size(1).start();
    let mut a = login(pgweir.port).await;
    a.parse("s1", "SELECT 31")
        .bind("", "s1")
        .execute("")
        .sync()
        .send()
        .await;
    println!("a: {}", show(&a.until_ready().await));
    let mut b = login(pgweir.port).await;
    // The registry numbers statements from 1 in a fresh pgweir.
    b.query("DEALLOCATE pgweir_1").send().await;
    println!("b: {}", show(&b.until_ready().await));
    let mut last = String::new();
    for _ in 0..2 {
        a.bind("", "s1").execute("").sync().send().await;
        last = show(&a.until_ready().await);
    }
    assert_eq!(
        last, "2 D[Some(\"31\")] C Z",
        "prepared again after one error"
    );
}

/// The session-state check runs under the client's own statement_timeout.
#[tokio::test]
async fn state_check_survives_a_tiny_statement_timeout() {
    let pgweir = Pgweir::builder().auth_type("trust").pool_size(1).start();
    let mut a = login(pgweir.port).await;
    a.query("SET statement_timeout = 1").send().await;
    println!("a set: {}", show(&a.until_ready().await));
    for i in 0..200 {
        a.query("SELECT pg_advisory_unlock_all(); SET work_mem = '5MB'")
            .send()
            .await;
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), a.read_msg())
            .await
            .unwrap();
        match got {
            None => panic!("disconnected at round {i}"),
            Some(_) => {
                let _ = a.until_ready().await;
            }
        }
    }
}

/// psycopg with libpq before 17 drops protocol-level statements with SQL DEALLOCATE.
#[tokio::test]
async fn sql_deallocate_drops_a_protocol_level_statement() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "1 | Z I".to_string(),
        row(7),
        "C DEALLOCATE | Z I".into(),
        missing("_pg3_0"),
        "1 | Z I".into(),
        row(8),
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        t.next_server().await;
        out.push(roundtrip(w.parse("_pg3_0", "SELECT 7").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "_pg3_0").execute("").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.query("DEALLOCATE _pg3_0")).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "_pg3_0").execute("").sync()).await);
        out.push(roundtrip(w.parse("_pg3_0", "SELECT 8").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "_pg3_0").execute("").sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

//! Protocol-level named prepared statements through pgweir in transaction (and
//! statement) mode, where a client's consecutive transactions run on different servers.
//!
//! Most tests are differential: one raw-protocol script ([`Wire`]) runs first straight
//! against Postgres, where its transcript must equal the literal the test spells out,
//! and then through pgweir, where it must equal what Postgres said. Transcripts keep
//! every message except those a pooler legitimately changes (ParameterStatus,
//! BackendKeyData, NoticeResponse), with errors reduced to SQLSTATE and message.
//! The machinery is in `common/differential.rs`: to prove that statements really cross
//! servers, a rotating target lends one of a pool's two servers at a time, so the script's
//! next transaction lands on a known server.

use crate::common;

use common::differential::*;
use common::Pgweir;

#[tokio::test]
async fn named_statement_follows_the_client_to_every_server() {
    let pgweir = trust_pgweir(2);
    let mut expected = vec!["1 | Z I".to_string()];
    expected.extend((0..8).map(|i| row(i * 2)));
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        t.next_server().await;
        let mut out = vec![roundtrip(w.parse("s1", "SELECT $1::int * 2").sync()).await];
        t.check_server(&mut w).await;
        for i in 0..8 {
            t.next_server().await;
            let param = i.to_string();
            out.push(roundtrip(w.bind_params("", "s1", &[&param]).execute("").sync()).await);
            t.check_server(&mut w).await;
        }
        out
    })
    .await;
}

#[tokio::test]
async fn clients_own_their_names_on_a_shared_server() {
    let pgweir = trust_pgweir(1);
    let mut expected = vec!["1 | Z I"; 3];
    for _ in 0..3 {
        expected.extend(["2 | D 1 | C SELECT 1 | Z I", "2 | D 2 | C SELECT 1 | Z I"]);
    }
    let a_only = missing("a_only");
    expected.push(&a_only);
    differential(&pgweir, false, &expected, |t| async move {
        let (mut a, mut b) = (t.login().await, t.login().await);
        let mut out = vec![
            roundtrip(a.parse("s1", "SELECT 1").sync()).await,
            roundtrip(b.parse("s1", "SELECT 2").sync()).await,
            roundtrip(a.parse("a_only", "SELECT 'a'").sync()).await,
        ];
        for _ in 0..3 {
            out.push(roundtrip(a.bind("", "s1").execute("").sync()).await);
            out.push(roundtrip(b.bind("", "s1").execute("").sync()).await);
        }
        out.push(roundtrip(b.bind("", "a_only").execute("").sync()).await);
        out
    })
    .await;
}

#[tokio::test]
async fn same_text_under_different_names_and_clients() {
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .pool_size(1)
        .pool("max_prepared_statements = 3")
        .start();
    let mut expected = vec!["1 | 1 | 1 | Z I"; 2];
    let rows: Vec<String> = (0..3).map(row).collect();
    for _ in 0..2 {
        expected.extend(rows.iter().chain(&rows).map(String::as_str));
    }
    let (gone, b_still) = (missing("a0"), row(0));
    expected.extend(["3 | Z I", &gone, &b_still]);
    differential(&pgweir, false, &expected, |t| async move {
        let (mut a, mut b) = (t.login().await, t.login().await);
        let mut out = Vec::new();
        for (wire, prefix) in [(&mut a, "a"), (&mut b, "b")] {
            for i in 0..3 {
                wire.parse(&format!("{prefix}{i}"), &format!("SELECT {i}"));
            }
            out.push(roundtrip(wire.sync()).await);
        }
        for _ in 0..2 {
            for (wire, prefix) in [(&mut a, "a"), (&mut b, "b")] {
                for i in 0..3 {
                    let name = format!("{prefix}{i}");
                    out.push(roundtrip(wire.bind("", &name).execute("").sync()).await);
                }
            }
        }
        if let Some(count) = t.server_statements().await {
            assert!(count <= 3, "{count} statements on the server, cap 3");
        }
        out.push(roundtrip(a.close(b'S', "a0").sync()).await);
        out.push(roundtrip(a.bind("", "a0").execute("").sync()).await);
        out.push(roundtrip(b.bind("", "b0").execute("").sync()).await);
        out
    })
    .await;
}

#[tokio::test]
async fn pipeline_of_parse_describe_bind_close() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "1 | 2 | D 1 | C SELECT 1 | 1 | t 23 | T two:23 | 2 | D 42 | C SELECT 1 | 3 | Z I",
        &missing("s1"),
        &row(2),
        "t 23 | T two:23 | Z I",
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        t.next_server().await;
        w.parse("s1", "SELECT 1 AS one").bind("", "s1").execute("");
        w.parse("s2", "SELECT $1::int + 1 AS two")
            .describe(b'S', "s2");
        w.bind_params("", "s2", &["41"])
            .execute("")
            .close(b'S', "s1");
        let mut out = vec![roundtrip(w.sync()).await];
        t.check_server(&mut w).await;
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind_params("", "s2", &["1"]).execute("").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.describe(b'S', "s2").sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

#[tokio::test]
async fn parse_of_an_existing_name_fails_as_in_postgres() {
    let pgweir = trust_pgweir(2);
    let (s1, s2) = (exists("s1"), exists("s2"));
    let expected = [
        "1 | Z I".to_string(),
        format!("{s1} | Z I"),
        row("first"),
        format!("1 | {s2} | Z I"),
        row("x"),
        "C BEGIN | Z T".into(),
        "1 | Z T".into(),
        format!("{s1} | Z E"),
        "E 25P02 current transaction is aborted, commands ignored until end of transaction block | Z E".into(),
        "C ROLLBACK | Z I".into(),
        row("in tx"),
        row("first"),
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        t.next_server().await;
        out.push(roundtrip(w.parse("s1", "SELECT 'first'").sync()).await);
        t.next_server().await;
        w.parse("s1", "SELECT 'second'").bind("", "s1").execute("");
        out.push(roundtrip(w.sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        t.next_server().await;
        w.parse("s2", "SELECT 'x'").parse("s2", "SELECT 'y'");
        out.push(roundtrip(w.bind("", "s2").execute("").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s2").execute("").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.query("BEGIN")).await);
        out.push(roundtrip(w.parse("s3", "SELECT 'in tx'").sync()).await);
        out.push(roundtrip(w.parse("s1", "SELECT 'again'").sync()).await);
        out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        out.push(roundtrip(w.query("ROLLBACK")).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s3").execute("").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

#[tokio::test]
async fn unknown_names_fail_or_close_as_in_postgres() {
    let pgweir = trust_pgweir(2);
    let nope = missing("nope");
    let expected = [
        nope.as_str(),
        &nope,
        "E 34000 portal \"nope\" does not exist | Z I",
        "3 | Z I",
        "3 | Z I",
        "1 | 3 | E 26000 prepared statement \"s1\" does not exist | Z I",
        &missing("s1"),
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        t.next_server().await;
        out.push(roundtrip(w.bind("", "nope").execute("").sync()).await);
        out.push(roundtrip(w.describe(b'S', "nope").sync()).await);
        out.push(roundtrip(w.describe(b'P', "nope").sync()).await);
        out.push(roundtrip(w.close(b'S', "nope").sync()).await);
        out.push(roundtrip(w.close(b'P', "nope").sync()).await);
        t.next_server().await;
        w.parse("s1", "SELECT 1")
            .close(b'S', "s1")
            .describe(b'S', "s1");
        out.push(roundtrip(w.sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

#[tokio::test]
async fn error_mid_pipeline_keeps_earlier_statements_only() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "1 | 2 | E 22012 division by zero | Z I".to_string(),
        row(2),
        missing("s2"),
        "1 | Z I".into(),
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        t.next_server().await;
        // random() keeps the planner from folding the division into a Bind-time error.
        w.parse("s1", "SELECT 10 / ((random() * 0)::int + $1::int)");
        w.bind_params("", "s1", &["0"]).execute("");
        w.parse("s2", "SELECT 'two'").bind("", "s2").execute("");
        out.push(roundtrip(w.sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind_params("", "s1", &["5"]).execute("").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s2").execute("").sync()).await);
        out.push(roundtrip(w.parse("s2", "SELECT 'two'").sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

#[tokio::test]
async fn failed_parse_leaves_the_name_free() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "E 42601 syntax error at or near \"SELEC\" | Z I".to_string(),
        missing("s3"),
        "E 42P01 relation \"no_such_table\" does not exist | Z I".into(),
        missing("s4"),
        "1 | 2 | D 3 | C SELECT 1 | Z I".into(),
        row(3),
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        t.next_server().await;
        out.push(roundtrip(w.parse("s3", "SELEC 3").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s3").execute("").sync()).await);
        out.push(roundtrip(w.parse("s4", "SELECT * FROM no_such_table").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s4").execute("").sync()).await);
        w.parse("s3", "SELECT 3").bind("", "s3").execute("");
        out.push(roundtrip(w.sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s3").execute("").sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

#[tokio::test]
async fn deallocate_all_and_discard_all_drop_only_the_clients_statements() {
    let pgweir = trust_pgweir(1);
    let (s1, s3, b1) = (missing("s1"), missing("s3"), row("b1"));
    let expected = [
        "1 | 1 | Z I",
        "1 | 2 | D b1 | C SELECT 1 | Z I",
        "C DEALLOCATE ALL | Z I",
        &s1,
        &missing("s2"),
        &b1,
        "1 | 2 | D a1 again | C SELECT 1 | Z I",
        "C DISCARD ALL | Z I",
        &s1,
        &b1,
        "C BEGIN | Z T",
        "1 | Z T",
        "C DEALLOCATE ALL | Z T",
        "C ROLLBACK | Z I",
        &s3,
        &b1,
    ];
    differential(&pgweir, false, &expected, |t| async move {
        let (mut a, mut b) = (t.login().await, t.login().await);
        let mut out =
            vec![roundtrip(a.parse("s1", "SELECT 'a1'").parse("s2", "SELECT 2").sync()).await];
        out.push(
            roundtrip(
                b.parse("b1", "SELECT 'b1'")
                    .bind("", "b1")
                    .execute("")
                    .sync(),
            )
            .await,
        );
        out.push(roundtrip(a.query("DEALLOCATE ALL")).await);
        out.push(roundtrip(a.bind("", "s1").execute("").sync()).await);
        out.push(roundtrip(a.bind("", "s2").execute("").sync()).await);
        out.push(roundtrip(b.bind("", "b1").execute("").sync()).await);
        a.parse("s1", "SELECT 'a1 again'")
            .bind("", "s1")
            .execute("");
        out.push(roundtrip(a.sync()).await);
        out.push(roundtrip(a.query("DISCARD ALL")).await);
        out.push(roundtrip(a.bind("", "s1").execute("").sync()).await);
        out.push(roundtrip(b.bind("", "b1").execute("").sync()).await);
        // DEALLOCATE is not transactional: a rollback does not bring statements back.
        out.push(roundtrip(a.query("BEGIN")).await);
        out.push(roundtrip(a.parse("s3", "SELECT 3").sync()).await);
        out.push(roundtrip(a.query("DEALLOCATE ALL")).await);
        out.push(roundtrip(a.query("ROLLBACK")).await);
        out.push(roundtrip(a.bind("", "s3").execute("").sync()).await);
        out.push(roundtrip(b.bind("", "b1").execute("").sync()).await);
        out
    })
    .await;
}

#[tokio::test]
async fn close_then_parse_again_uses_the_new_text() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "1 | 2 | D old | C SELECT 1 | Z I".to_string(),
        row("old"),
        "3 | 1 | 2 | D new | C SELECT 1 | Z I".into(),
        row("new"),
        row("new"),
        "3 | Z I".into(),
        "1 | Z I".into(),
        row("newer"),
        row("newer"),
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        t.next_server().await;
        out.push(
            roundtrip(
                w.parse("s1", "SELECT 'old'")
                    .bind("", "s1")
                    .execute("")
                    .sync(),
            )
            .await,
        );
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        t.next_server().await;
        w.close(b'S', "s1")
            .parse("s1", "SELECT 'new'")
            .bind("", "s1")
            .execute("");
        out.push(roundtrip(w.sync()).await);
        for _ in 0..2 {
            t.next_server().await;
            out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        }
        out.push(roundtrip(w.close(b'S', "s1").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.parse("s1", "SELECT 'newer'").sync()).await);
        for _ in 0..2 {
            t.next_server().await;
            out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        }
        t.check_server(&mut w).await;
        out
    })
    .await;
}

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
use common::{cluster, within, Pgweir, TEST_DB};

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

#[tokio::test]
async fn more_statements_than_the_cap_are_evicted_and_prepared_again() {
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .pool_size(1)
        .pool("max_prepared_statements = 3")
        .start();
    let mut expected = vec![format!("{}Z I", "1 | ".repeat(10))];
    for _ in 0..3 {
        expected.extend((0..10).map(row));
    }
    let picks = [0, 5, 9, 1, 7, 0];
    let rows: Vec<String> = picks
        .iter()
        .map(|i| format!("2 | D {i} | C SELECT 1"))
        .collect();
    expected.push(format!("{} | Z I", rows.join(" | ")));
    differential(&pgweir, false, &expected, |t| async move {
        let mut w = t.login().await;
        for i in 0..10 {
            w.parse(&format!("s{i}"), &format!("SELECT {i}"));
        }
        let mut out = vec![roundtrip(w.sync()).await];
        for _ in 0..3 {
            for i in 0..10 {
                let name = format!("s{i}");
                out.push(roundtrip(w.bind("", &name).execute("").sync()).await);
            }
        }
        // One transaction naming more statements than the server may keep.
        for i in picks {
            w.bind("", &format!("s{i}")).execute("");
        }
        out.push(roundtrip(w.sync()).await);
        if let Some(count) = t.server_statements().await {
            assert!(count <= 3, "{count} statements on the server, cap 3");
        }
        out
    })
    .await;
}

#[tokio::test]
async fn unnamed_statements_and_named_portals_keep_working() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "C BEGIN | Z T",
        "1 | 2 | D 1 | D 2 | s | Z T",
        "D 3 | D 4 | s | Z T",
        "1 | 2 | T u:25 | D unnamed | C SELECT 1 | D 5 | C SELECT 1 | 3 | Z T",
        "C COMMIT | Z I",
        "2 | D 1 | D 2 | D 3 | s | D 4 | D 5 | C SELECT 2 | Z I",
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        t.next_server().await;
        let mut out = vec![roundtrip(w.query("BEGIN")).await];
        w.parse("s1", "SELECT generate_series(1, 5) AS n");
        out.push(roundtrip(w.bind("c1", "s1").execute_rows("c1", 2).sync()).await);
        out.push(roundtrip(w.execute_rows("c1", 2).sync()).await);
        w.parse("", "SELECT 'unnamed' AS u")
            .bind("", "")
            .describe(b'P', "");
        w.execute("").execute("c1").close(b'P', "c1");
        out.push(roundtrip(w.sync()).await);
        out.push(roundtrip(w.query("COMMIT")).await);
        t.next_server().await;
        w.bind("c2", "s1")
            .execute_rows("c2", 3)
            .execute_rows("c2", 3);
        out.push(roundtrip(w.sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

#[tokio::test]
async fn large_parameter_streams_to_a_named_statement() {
    let pgweir = trust_pgweir(2);
    const LEN: usize = 20 << 20;
    let expected = ["1 | Z I".to_string(), row(LEN)];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        t.next_server().await;
        let mut out = vec![roundtrip(w.parse("big", "SELECT length($1::text)").sync()).await];
        t.next_server().await;
        let value = "x".repeat(LEN);
        out.push(roundtrip(w.bind_params("", "big", &[&value]).execute("").sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

#[tokio::test]
async fn statements_survive_the_death_of_their_server() {
    let pgweir = trust_pgweir(1);
    let t = Target::pooled(&pgweir, false);
    let mut w = t.login().await;
    w.parse("s1", "SELECT 14").bind("", "s1").execute("");
    assert_eq!(roundtrip(w.sync()).await, "1 | 2 | D 14 | C SELECT 1 | Z I");
    let pid: i32 = query_value(&mut w, "SELECT pg_backend_pid()")
        .await
        .parse()
        .unwrap();
    let admin = cluster().admin().await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    within(10, "the terminated backend to go", async {
        let gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1";
        while !admin
            .query_one(gone, &[&pid])
            .await
            .unwrap()
            .get::<_, bool>(0)
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        roundtrip(w.bind("", "s1").execute("").sync()).await,
        row(14)
    );
    let new_pid = query_value(&mut w, "SELECT pg_backend_pid()").await;
    assert_ne!(new_pid, pid.to_string(), "the dead server was reused");
}

/// Prepares `SELECT * FROM t_cp` on both servers, adds a column, then retries as a
/// driver does on 0A000: Close and Parse the same name again. Through pgweir the
/// failed attempt runs on one server and the retry on the other, whose copy of the
/// statement is just as stale but has not failed yet. Returns the transcript.
async fn cached_plan_script(mut t: Target) -> Vec<String> {
    let admin = cluster().admin_on(TEST_DB).await;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS t_cp; CREATE TABLE t_cp (a int); \
             INSERT INTO t_cp VALUES (1); GRANT ALL ON t_cp TO PUBLIC",
        )
        .await
        .unwrap();
    let mut w = t.login().await;
    t.next_server().await;
    let mut out = vec![
        roundtrip(
            w.parse("s", "SELECT * FROM t_cp")
                .bind("", "s")
                .execute("")
                .sync(),
        )
        .await,
    ];
    t.next_server().await;
    out.push(roundtrip(w.bind("", "s").execute("").sync()).await);
    admin
        .batch_execute("ALTER TABLE t_cp ADD COLUMN b int DEFAULT 7")
        .await
        .unwrap();
    t.next_server().await;
    out.push(roundtrip(w.bind("", "s").execute("").sync()).await);
    if out[2].starts_with('E') {
        t.next_server().await;
        w.close(b'S', "s")
            .parse("s", "SELECT * FROM t_cp")
            .bind("", "s")
            .execute("");
        out.push(roundtrip(w.sync()).await);
    }
    for _ in 0..2 {
        t.next_server().await;
        out.push(roundtrip(w.bind("", "s").execute("").sync()).await);
        t.check_server(&mut w).await;
    }
    out
}

#[tokio::test]
async fn changed_result_type_heals_after_one_reprepare() {
    let direct = within(60, "on Postgres", cached_plan_script(Target::direct())).await;
    let stale = "E 0A000 cached plan must not change result type | Z I";
    let (old, new) = (row(1), row("1,7"));
    let healed = "3 | 1 | 2 | D 1,7 | C SELECT 1 | Z I";
    let first = "1 | 2 | D 1 | C SELECT 1 | Z I";
    assert_eq!(
        direct,
        [first, &old, stale, healed, &new, &new],
        "Postgres itself"
    );

    let pgweir = trust_pgweir(2);
    let pooled = Target::pooled(&pgweir, true);
    let pooled = within(60, "through pgweir", cached_plan_script(pooled)).await;
    assert_eq!(pooled[..2], [first, &old]);
    match pooled[2..].iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [attempt, retry, ref rest @ ..] if attempt == stale => {
            assert_eq!(retry, healed, "the retry after Close and Parse");
            assert_eq!(rest, [&new, &new], "every server after the retry");
        }
        ref rest => assert_eq!(rest, [&new, &new, &new], "no error, then every server"),
    }
}

#[tokio::test]
async fn cap_zero_passes_named_statements_through() {
    let pgweir = Pgweir::builder()
        .auth_type("trust")
        .pool_size(1)
        .pool("max_prepared_statements = 0")
        .start();
    let expected = [
        "1 | Z I".to_string(),
        row(17),
        row(17),
        "3 | 1 | 2 | D 18 | C SELECT 1 | Z I".into(),
        format!("{} | Z I", exists("s1")),
    ];
    differential(&pgweir, false, &expected, |t| async move {
        let mut w = t.login().await;
        let mut out = vec![roundtrip(w.parse("s1", "SELECT 17").sync()).await];
        for _ in 0..2 {
            out.push(roundtrip(w.bind("", "s1").execute("").sync()).await);
        }
        w.close(b'S', "s1")
            .parse("s1", "SELECT 18")
            .bind("", "s1")
            .execute("");
        out.push(roundtrip(w.sync()).await);
        out.push(roundtrip(w.parse("s1", "SELECT 19").sync()).await);
        out
    })
    .await;
}

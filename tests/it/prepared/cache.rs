//! Named prepared statements as pgweir caches them on servers, differential like `named`:
//! more statements than the cap are evicted and prepared again, unnamed statements and
//! named portals keep working, a large parameter streams through, statements survive the
//! death of their server, a changed result type heals after one re-prepare, and a cap of
//! zero passes named statements through.

use crate::common;

use common::differential::*;
use common::{cluster, within, Pgweir, TEST_DB};

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

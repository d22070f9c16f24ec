//! Protocol state that outlives a Sync, with more clients than servers: the unnamed
//! statement (it lives until the next unnamed Parse or simple Query), named statements
//! whose result type a DDL changed (every session that prepared them before gets 0A000,
//! one that prepares after never does), and portals (they end with their transaction).
//! Each scenario runs straight on Postgres and through pgweir and the answers must match;
//! the concurrent ones check that every client gets its own values.
use crate::common;

use common::differential::{differential, roundtrip, trust_pgweir, Target};
use common::wire::Wire;
use common::{cluster, within, TEST_DB, TRUST_USER};

const NO_UNNAMED: &str = "E 26000 unnamed prepared statement does not exist | Z I";
const CHANGED: &str = "E 0A000 cached plan must not change result type | Z I";

/// pgx's describe-exec path: Parse("") + Describe + Sync, then Bind("") + Execute + Sync
/// in a later round trip, which may land on another server holding another client's
/// unnamed statement.
#[tokio::test]
async fn the_unnamed_statement_outlives_its_sync() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "1 | t  | T ?column?:25 | Z I",
        "1 | Z I",
        "2 | D mine | C SELECT 1 | Z I",
        "t  | T ?column?:25 | Z I",
        "2 | D mine | C SELECT 1 | Z I",
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        t.next_server().await;
        out.push(roundtrip(w.parse("", "SELECT 'mine'").describe(b'S', "").sync()).await);
        t.next_server().await;
        // Another client leaves its own unnamed statement on the server w gets next.
        let mut other = t.login().await;
        out.push(roundtrip(other.parse("", "SELECT 'other'").sync()).await);
        out.push(roundtrip(w.bind("", "").execute("").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.describe(b'S', "").sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.bind("", "").execute("").sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

/// What ends the unnamed statement in Postgres ends it through pgweir too: a simple Query,
/// a Parse that fails, a Close; a Parse and its Bind pipelined across two Syncs still pair.
#[tokio::test]
async fn what_ends_the_unnamed_statement() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "1 | Z I",
        "T ?column?:23 | D 1 | C SELECT 1 | Z I",
        NO_UNNAMED,
        "1 | Z I",
        "E 42601 syntax error at or near \"SELEC\" | Z I",
        NO_UNNAMED,
        "1 | Z I",
        "3 | Z I",
        NO_UNNAMED,
        "1 | Z I | 2 | D two | C SELECT 1 | Z I",
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        let bind = |w: &mut Wire| {
            w.bind("", "").execute("").sync();
        };
        out.push(roundtrip(w.parse("", "SELECT 'one'").sync()).await);
        out.push(roundtrip(w.query("SELECT 1")).await);
        t.next_server().await;
        bind(&mut w);
        out.push(roundtrip(&mut w).await);
        out.push(roundtrip(w.parse("", "SELECT 'one'").sync()).await);
        out.push(roundtrip(w.parse("", "SELEC").sync()).await);
        t.next_server().await;
        bind(&mut w);
        out.push(roundtrip(&mut w).await);
        out.push(roundtrip(w.parse("", "SELECT 'one'").sync()).await);
        out.push(roundtrip(w.close(b'S', "").sync()).await);
        t.next_server().await;
        bind(&mut w);
        out.push(roundtrip(&mut w).await);
        t.next_server().await;
        w.parse("", "SELECT 'two'").sync();
        bind(&mut w);
        let first = roundtrip(&mut w).await;
        let second = common::differential::transcript(&w.until_ready().await);
        out.push(format!("{first} | {second}"));
        t.check_server(&mut w).await;
        out
    })
    .await;
}

/// Many clients on two servers, each with its own unnamed statement text, described in
/// one round trip and executed in the next (half of them pipelined in one write): each
/// must always get its own row.
#[tokio::test]
async fn many_clients_each_get_their_own_unnamed_statement() {
    let pgweir = trust_pgweir(2);
    let port = pgweir.port;
    let clients = (0..10).map(|i| {
        tokio::spawn(async move {
            let mut w = Wire::startup(port, TRUST_USER.name, TEST_DB).await.0;
            let sql = format!("SELECT $1::int, 'c{i}'");
            for round in 0..30 {
                let value = (round * 100 + i).to_string();
                let answer = if i % 2 == 0 {
                    roundtrip(w.parse("", &sql).describe(b'S', "").sync()).await;
                    tokio::task::yield_now().await;
                    roundtrip(w.bind_params("", "", &[&value]).execute("").sync()).await
                } else {
                    w.parse("", &sql).sync();
                    w.bind_params("", "", &[&value]).execute("").sync();
                    roundtrip(&mut w).await;
                    common::differential::transcript(&w.until_ready().await)
                };
                assert_eq!(
                    answer,
                    format!("2 | D {value},c{i} | C SELECT 1 | Z I"),
                    "client {i}, round {round}"
                );
            }
        })
    });
    within(120, "clients", async {
        for client in clients.collect::<Vec<_>>() {
            client.await.expect("a client failed");
        }
    })
    .await;
}

/// A fresh table for one DDL scenario, so the direct and the pooled run start alike.
async fn shape_table(name: &str) {
    let admin = cluster().admin_on(TEST_DB).await;
    let sql = format!(
        "DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (a int, b text); \
         INSERT INTO {name} VALUES (1, 'x'); ALTER TABLE {name} OWNER TO {owner}",
        owner = TRUST_USER.name
    );
    admin.batch_execute(&sql).await.expect("create the table");
}

/// asyncpg and pgx describe a statement once and rely on its row shape. After a DDL
/// changes it, every session that prepared it before gets 0A000 on each use until it
/// prepares again (asyncpg with named statements, pgx with a result format per column);
/// a session that prepares after the DDL never sees it, whichever server it lands on.
#[tokio::test]
async fn statements_described_before_a_ddl_fail_for_each_client() {
    let pgweir = trust_pgweir(2);
    let two = "2 | D 1,x | C SELECT 1 | Z I";
    let three = "2 | D 1,x,NULL | C SELECT 1 | Z I";
    let expected = [
        "1 | t  | T a:23,b:25 | Z I",
        two,
        "1 | t  | T a:23,b:25 | Z I",
        two,
        "1 | t  | T a:23,b:25 | Z I",
        two,
        "C ALTER TABLE | Z I",
        CHANGED,
        CHANGED,
        CHANGED,
        CHANGED,
        "1 | t  | T a:23,b:25,c:23 | Z I",
        three,
        "3 | 1 | t  | T a:23,b:25,c:23 | Z I",
        three,
        "3 | 1 | t  | T a:23,b:25,c:23 | Z I",
        three,
        "t  | E 0A000 cached plan must not change result type | Z I",
    ];
    differential(&pgweir, false, &expected, |t: Target| async move {
        shape_table("ddl_shape").await;
        let sql = "SELECT * FROM ddl_shape";
        let mut out = Vec::new();
        let (mut a, mut b, mut c) = (t.login().await, t.login().await, t.login().await);
        for (w, name) in [(&mut a, "sa"), (&mut b, "sb")] {
            out.push(roundtrip(w.parse(name, sql).describe(b'S', name).sync()).await);
            out.push(roundtrip(w.bind("", name).execute("").sync()).await);
        }
        out.push(roundtrip(c.parse("sc", sql).describe(b'S', "sc").sync()).await);
        let pgx = |w: &mut Wire, n: usize| {
            w.bind_formats("", "sc", &[], &vec![0; n])
                .execute("")
                .sync();
        };
        pgx(&mut c, 2);
        out.push(roundtrip(&mut c).await);
        let mut d = t.login().await;
        out.push(roundtrip(d.query("ALTER TABLE ddl_shape ADD COLUMN c int")).await);
        out.push(roundtrip(a.bind("", "sa").execute("").sync()).await);
        out.push(roundtrip(a.bind("", "sa").execute("").sync()).await);
        out.push(roundtrip(b.bind("", "sb").execute("").sync()).await);
        pgx(&mut c, 2);
        out.push(roundtrip(&mut c).await);
        let mut e = t.login().await;
        out.push(roundtrip(e.parse("se", sql).describe(b'S', "se").sync()).await);
        out.push(roundtrip(e.bind("", "se").execute("").sync()).await);
        // The drivers' recovery: prepare again (asyncpg under a new name, pgx the same).
        a.close(b'S', "sa")
            .parse("sa", sql)
            .describe(b'S', "sa")
            .sync();
        out.push(roundtrip(&mut a).await);
        out.push(roundtrip(a.bind("", "sa").execute("").sync()).await);
        c.close(b'S', "sc")
            .parse("sc", sql)
            .describe(b'S', "sc")
            .sync();
        out.push(roundtrip(&mut c).await);
        pgx(&mut c, 3);
        out.push(roundtrip(&mut c).await);
        out.push(roundtrip(b.describe(b'S', "sb").sync()).await);
        out
    })
    .await;
}

/// Portals end with their transaction: a named portal is read across Syncs inside a
/// transaction block, and is gone after it, as the unnamed portal of an implicit
/// transaction is gone after its Sync.
#[tokio::test]
async fn portals_end_with_their_transaction() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "C BEGIN | Z T",
        "1 | 2 | D 1 | s | Z T",
        "D 2 | s | Z T",
        "C COMMIT | Z I",
        "E 34000 portal \"cur\" does not exist | Z I",
        "1 | 2 | D 1 | s | Z I",
        "E 34000 portal \"\" does not exist | Z I",
    ];
    differential(&pgweir, true, &expected, |mut t| async move {
        let mut w = t.login().await;
        let mut out = Vec::new();
        let series = "SELECT generate_series(1, 3)";
        t.next_server().await;
        out.push(roundtrip(w.query("BEGIN")).await);
        w.parse("p", series).bind("cur", "p").execute_rows("cur", 1);
        out.push(roundtrip(w.sync()).await);
        out.push(roundtrip(w.execute_rows("cur", 1).sync()).await);
        out.push(roundtrip(w.query("COMMIT")).await);
        t.next_server().await;
        out.push(roundtrip(w.execute_rows("cur", 1).sync()).await);
        w.parse("", series).bind("", "").execute_rows("", 1);
        out.push(roundtrip(w.sync()).await);
        t.next_server().await;
        out.push(roundtrip(w.execute_rows("", 1).sync()).await);
        t.check_server(&mut w).await;
        out
    })
    .await;
}

/// The first use after the DDL is a Describe, which the server answers with its
/// ParameterDescription and then 0A000: the other clients' Binds fail as well, and a
/// client that prepares afterwards gets the new shape on either server.
#[tokio::test]
async fn a_describe_that_reveals_a_ddl_fails_the_other_clients_too() {
    let pgweir = trust_pgweir(2);
    let expected = [
        "1 | t  | T a:23,b:25 | Z I",
        "1 | t  | T a:23,b:25 | Z I",
        "C ALTER TABLE | Z I",
        "t  | E 0A000 cached plan must not change result type | Z I",
        CHANGED,
        "1 | t  | T a:23,b:25,c:23 | 2 | D 1,x,NULL | C SELECT 1 | Z I",
        "1 | t  | T a:23,b:25,c:23 | 2 | D 1,x,NULL | C SELECT 1 | Z I",
    ];
    differential(&pgweir, false, &expected, |t: Target| async move {
        shape_table("ddl_describe").await;
        let sql = "SELECT * FROM ddl_describe";
        let mut out = Vec::new();
        let (mut a, mut b) = (t.login().await, t.login().await);
        for (w, name) in [(&mut a, "sa"), (&mut b, "sb")] {
            out.push(roundtrip(w.parse(name, sql).describe(b'S', name).sync()).await);
        }
        let mut d = t.login().await;
        out.push(roundtrip(d.query("ALTER TABLE ddl_describe ADD COLUMN c int")).await);
        out.push(roundtrip(a.describe(b'S', "sa").sync()).await);
        out.push(roundtrip(b.bind("", "sb").execute("").sync()).await);
        for _ in 0..2 {
            let mut e = t.login().await;
            e.parse("se", sql)
                .describe(b'S', "se")
                .bind("", "se")
                .execute("");
            out.push(roundtrip(e.sync()).await);
        }
        out
    })
    .await;
}

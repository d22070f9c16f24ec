//! The replica-routing classifier: a corpus of statements with their verdicts covering every
//! rule and the traps where a keyword must not be seen, hints, the `SET pgweir.route`
//! override, declared functions, and the lists' sort order that binary search relies on.

use crate::sql::route::{never_read_only, NOT_CALLS, READ_ONLY_BUILTINS};
use crate::sql::{classify, route_setting, Hint, ReadOnlyFunctions, RouteSetting, Verdict};

use Verdict::{Primary as P, ReadOnly as R, ReadOnlyTransaction as T};

const CORPUS: &[(&str, Verdict)] = &[
    // Plain reads.
    ("SELECT 1", R),
    ("select abalance from pgbench_accounts where aid = 12345;", R),
    ("SELECT * FROM t WHERE id IN (1, 2, 3)", R),
    ("VALUES (1), (2)", R),
    ("TABLE t", R),
    ("SHOW search_path", R),
    ("SHOW ALL", R),
    ("(SELECT 1) UNION (SELECT 2)", R),
    ("SELECT a FROM t ORDER BY a LIMIT 10 OFFSET (5)", R),
    ("SELECT * FROM t WHERE (a = 1) AND NOT (b = 2) OR (c)", R),
    ("SELECT * FROM (SELECT 1) s", R),
    ("SELECT * FROM a JOIN (b JOIN c USING (id)) ON (a.x = b.x)", R),
    ("SELECT * FROM t, LATERAL (SELECT 1) l", R),
    ("SELECT EXISTS (SELECT 1)", R),
    ("SELECT 1 = ANY (ARRAY[1]) AND 2 = SOME (ARRAY(SELECT 2)) AND 3 <> ALL (ARRAY[4])", R),
    ("SELECT ROW (1, 2)", R),
    ("SELECT CAST(x AS numeric(10,2)) FROM t", R),
    ("SELECT x::numeric(10, 2), y::varchar(20), z::pg_catalog.numeric(3) FROM t", R),
    ("SELECT x::character varying(20) FROM t", R),
    ("SELECT x::timestamp(3) with time zone FROM t", R),
    ("SELECT * FROM (VALUES (1, 2)) AS v(a, b)", R),
    ("SELECT * FROM generate_series(1, 3) AS g(i)", R),
    ("SELECT * FROM generate_series(1, 3) WITH ORDINALITY AS g(i, n)", R),
    ("SELECT count(*) FILTER (WHERE a > 1) FROM t", R),
    ("SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", R),
    ("SELECT sum(a) OVER w FROM t WINDOW w AS (ORDER BY b)", R),
    ("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t", P),
    ("SELECT string_agg(a, ',') WITHIN GROUP (ORDER BY a) FROM t", R),
    ("SELECT a FROM t GROUP BY ROLLUP (a), CUBE (b), GROUPING SETS ((a), (b))", R),
    ("SELECT DISTINCT ON (a) a FROM t", R),
    ("SELECT CASE WHEN (a) THEN (b) ELSE (c) END FROM t", R),
    ("SELECT a BETWEEN (1) AND (2), a LIKE ('x'), a ILIKE ('y') FROM t", R),
    ("SELECT a IS DISTINCT FROM (1), a IN (SELECT 1) FROM t", R),
    ("SELECT now() AT TIME ZONE ('UTC')", R),
    ("SELECT * FROM ONLY (t)", R),
    ("SELECT * FROM t TABLESAMPLE system (10) REPEATABLE (1)", R),
    ("SELECT * FROM t TABLESAMPLE bernoulli (10)", R),
    ("SELECT a OPERATOR(pg_catalog.+) b FROM t", R),
    ("SELECT interval (2) '1 day'", R),
    ("SELECT * FROM ROWS FROM (generate_series(1, 2)) AS r(x)", R),
    ("SELECT a FROM t FETCH FIRST (5) ROWS ONLY", R),
    ("SELECT coalesce(a, 1), nullif(a, 2), greatest(a, 3), least(a, 4) FROM t", R),
    ("SELECT 1 UNION ALL (SELECT 2) EXCEPT (SELECT 3) INTERSECT (SELECT 4)", R),
    // Functions: built-ins, qualified, quoted, user, declared, forbidden.
    ("SELECT count(*), sum(a), avg(a), min(a), max(a), array_agg(a) FROM t", R),
    ("SELECT lower(a), upper(b), length(c), substr(d, 1, 2), md5(e) FROM t", R),
    ("SELECT extract(year FROM now()), position('a' IN 'abc'), substring('abc' FROM 1 FOR 2)", R),
    ("SELECT trim(both 'x' FROM a), overlay(a PLACING 'b' FROM 1) FROM t", R),
    ("SELECT left(a, 2), right(a, 2) FROM t", R),
    ("SELECT random(), clock_timestamp(), current_timestamp(3), localtimestamp(2)", R),
    ("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), version()", R),
    ("SELECT jsonb_build_object('a', 1), to_jsonb(t) FROM t", R),
    ("SELECT current_setting('search_path')", R),
    ("SELECT pg_catalog.count(*) FROM t", R),
    ("SELECT PG_CATALOG.Lower('A')", R),
    ("SELECT \"pg_catalog\".\"lower\"('A')", R),
    ("SELECT \"lower\"('A')", R),
    ("SELECT \"LOWER\"('A')", P),
    ("SELECT \"coalesce\"(a, 1) FROM t", P),
    ("SELECT myschema.count(*) FROM t", P),
    ("SELECT my_func(1)", P),
    ("SELECT * FROM my_srf(1)", P),
    ("SELECT nextval('s')", P),
    ("SELECT pg_catalog.nextval('s')", P),
    ("SELECT \"nextval\"('s')", P),
    ("SELECT \"nextval\" FROM t", R),
    ("SELECT nextval FROM t", R),
    ("SELECT setval('s', 1)", P),
    ("SELECT currval('s')", P),
    ("SELECT set_config('a.b', '1', false)", P),
    ("SELECT pg_advisory_lock(1)", P),
    ("SELECT pg_advisory_xact_lock(1)", P),
    ("SELECT pg_try_advisory_lock(1)", P),
    ("SELECT pg_notify('c', 'x')", P),
    ("SELECT txid_current()", P),
    ("SELECT pg_current_xact_id()", P),
    ("SELECT lo_import('/tmp/x')", P),
    ("SELECT * FROM dblink('db', 'DELETE FROM t') AS x(a int)", P),
    ("SELECT pg_sleep(1)", P),
    ("SELECT a FROM t WHERE b = f (1)", P),
    ("SELECT 1 FROM t WHERE x = ANY (my_func(2))", P),
    ("SELECT (SELECT (SELECT my_func(1)))", P),
    ("SELECT a[1:2] FROM t", R),
    ("SELECT a[1:nextval('s')] FROM t", P),
    ("SELECT 1 AS one, nextval('s')", P),
    ("SELECT x::int + my_func(1) FROM t", P),
    ("SELECT a.b.c(1)", P),
    ("VALUES (nextval('s'))", P),
    ("SHOW nextval", R),
    // Locking clauses at any depth.
    ("SELECT * FROM t FOR UPDATE", P),
    ("SELECT * FROM t FOR NO KEY UPDATE", P),
    ("SELECT * FROM t FOR SHARE", P),
    ("SELECT * FROM t FOR KEY SHARE", P),
    ("SELECT * FROM t FOR UPDATE OF t", P),
    ("SELECT * FROM t FOR UPDATE SKIP LOCKED", P),
    ("SELECT * FROM t FOR SHARE NOWAIT", P),
    ("select * from t for update", P),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", P),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR KEY SHARE)", P),
    ("WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", P),
    ("SELECT 'FOR UPDATE'", R),
    ("SELECT 1 -- FOR UPDATE", R),
    ("SELECT 1 /* FOR UPDATE */", R),
    ("SELECT \"for\", \"update\" FROM t", R),
    // INTO and writes.
    ("SELECT * INTO t2 FROM t", P),
    ("SELECT * INTO TEMP t2 FROM t", P),
    ("SELECT 1 AS \"into\"", R),
    ("CREATE TABLE t2 AS SELECT * FROM t", P),
    ("CREATE MATERIALIZED VIEW v AS SELECT 1", P),
    ("INSERT INTO t VALUES (1)", P),
    ("UPDATE t SET a = 1", P),
    ("DELETE FROM t", P),
    ("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", P),
    ("COPY t TO STDOUT", P),
    ("DECLARE c CURSOR FOR SELECT 1", P),
    ("FETCH 10 FROM c", P),
    ("LOCK TABLE t", P),
    ("CALL p()", P),
    ("DO $$ BEGIN END $$", P),
    ("SET search_path = x", P),
    ("VACUUM t", P),
    ("ANALYZE t", P),
    ("PREPARE p AS SELECT 1", P),
    ("EXECUTE p", P),
    // WITH.
    ("WITH x AS (SELECT 1) SELECT * FROM x", R),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", R),
    ("WITH a(x) AS (SELECT 1), b(y) AS MATERIALIZED (SELECT 2) SELECT * FROM a, b", R),
    ("WITH a AS NOT MATERIALIZED (VALUES (1)) TABLE a", R),
    ("WITH x AS (SELECT 1) (SELECT * FROM x)", R),
    ("WITH x AS (SELECT 1) (SELECT * FROM x) ORDER BY 1, nextval('s')", P),
    ("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", P),
    ("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", P),
    ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", P),
    ("WITH x AS (SELECT 1), y AS (WITH z AS (DELETE FROM t RETURNING 1) SELECT * FROM z) SELECT 1", P),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", P),
    ("WITH x AS (SELECT 1) DELETE FROM t", P),
    ("WITH x AS (SELECT my_func(1)) SELECT * FROM x", P),
    ("SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s", R),
    // EXPLAIN.
    ("EXPLAIN SELECT 1", R),
    ("EXPLAIN VERBOSE SELECT 1", R),
    ("EXPLAIN (FORMAT JSON, COSTS false) SELECT * FROM t", R),
    ("EXPLAIN ANALYZE SELECT 1", P),
    ("EXPLAIN ANALYSE SELECT 1", P),
    ("EXPLAIN ANALYZE VERBOSE SELECT 1", P),
    ("EXPLAIN (ANALYZE) SELECT 1", P),
    ("EXPLAIN (ANALYZE true) SELECT 1", P),
    ("EXPLAIN (ANALYZE false) SELECT 1", P),
    ("EXPLAIN (FORMAT JSON, ANALYZE) SELECT 1", P),
    ("EXPLAIN INSERT INTO t VALUES (1)", P),
    ("EXPLAIN SELECT * FROM t FOR UPDATE", P),
    ("EXPLAIN SELECT nextval('s')", P),
    ("EXPLAIN", P),
    // Multi-statement texts.
    ("SELECT 1; SELECT 2", R),
    ("SELECT 1;;; SELECT 2;", R),
    ("SELECT 1; INSERT INTO t VALUES (1)", P),
    ("INSERT INTO t VALUES (1); SELECT 1", P),
    ("SELECT 1; SELECT nextval('s')", P),
    ("SELECT 1; COMMIT", P),
    ("SELECT 1; BEGIN READ ONLY", P),
    // Transactions.
    ("BEGIN READ ONLY", T),
    ("begin read only;", T),
    ("BEGIN TRANSACTION READ ONLY", T),
    ("BEGIN WORK READ ONLY", T),
    ("START TRANSACTION READ ONLY", T),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", T),
    ("BEGIN READ ONLY, ISOLATION LEVEL SERIALIZABLE, DEFERRABLE", P),
    ("START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY, NOT DEFERRABLE", T),
    ("BEGIN READ ONLY; SELECT 1; SELECT 2; COMMIT", T),
    ("BEGIN READ ONLY; SELECT 1; END", T),
    ("BEGIN READ ONLY; SELECT 1; ROLLBACK", T),
    ("BEGIN READ ONLY; COMMIT AND NO CHAIN", T),
    ("BEGIN; SET TRANSACTION READ ONLY", T),
    ("BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE; SELECT 1", P),
    ("START TRANSACTION; SET TRANSACTION READ ONLY; SELECT 1; COMMIT", T),
    ("BEGIN READ ONLY; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT 1", P),
    ("BEGIN", P),
    ("BEGIN;", P),
    ("START TRANSACTION", P),
    ("BEGIN READ WRITE", P),
    ("BEGIN READ ONLY, READ WRITE", P),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE", P),
    ("BEGIN; SELECT 1", P),
    ("BEGIN; SET TRANSACTION READ WRITE", P),
    ("BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", P),
    ("BEGIN; SELECT 1; SET TRANSACTION READ ONLY", P),
    ("BEGIN; SET search_path = x", P),
    ("BEGIN READ ONLY; INSERT INTO t VALUES (1); COMMIT", P),
    ("BEGIN READ ONLY; SELECT nextval('s')", P),
    ("BEGIN READ ONLY; SET TRANSACTION READ WRITE", P),
    ("BEGIN READ ONLY; SET x = 1", P),
    ("BEGIN READ ONLY; BEGIN", P),
    ("BEGIN READ ONLY garbage", P),
    ("BEGIN ISOLATION LEVEL", P),
    ("SET TRANSACTION READ ONLY", P),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", P),
    ("COMMIT", P),
    ("ROLLBACK", P),
    // Lexical traps.
    ("SELECT $$ INSERT $$", R),
    ("SELECT $tag$ DELETE FROM t; $tag$", R),
    ("SELECT E'it\\'s; DELETE FROM t'", R),
    ("SELECT 'a''b; DROP TABLE t'", R),
    ("SELECT \"select\" FROM \"update\"", R),
    ("SELECT 1 /* ; DELETE FROM t */", R),
    ("SELECT 1 /* nested /* ; DELETE */ still */", R),
    ("SELECT 1; -- DELETE FROM t", R),
    ("SELECT \"nextval\"(1)", P),
    ("SELECT U&\"nextval\"(1)", P),
    ("SELECT 'nextval(1)'", R),
    ("SELECT update FROM t", P),
    // Unparseable or empty.
    ("", P),
    ("   \n\t ", P),
    (";", P),
    (";;", P),
    ("-- only a comment", P),
    ("/* pgweir:replica */", P),
    ("SELECT", R),
    ("SELECT (", R),
    ("SELECT )))", R),
    ("(", R),
    ("garbage words", P),
    ("SELECT 'unterminated", R),
];

#[test]
fn corpus_verdicts() {
    assert!(CORPUS.len() >= 150, "{}", CORPUS.len());
    let none = ReadOnlyFunctions::default();
    for &(sql, want) in CORPUS {
        let got = classify(sql.as_bytes(), &none);
        assert_eq!(got.verdict, want, "verdict of {sql:?}");
    }
}

fn hint(sql: &[u8]) -> Option<Hint> {
    classify(sql, &ReadOnlyFunctions::default()).hint
}

#[test]
fn leading_hints() {
    let cases: &[(&str, Option<Hint>, Verdict)] = &[
        ("/* pgweir:replica */ SELECT 1", Some(Hint::Replica), R),
        ("/*pgweir:primary*/SELECT 1", Some(Hint::Primary), R),
        (
            "  \n/*  PGWEIR : Replica \t*/ INSERT INTO t VALUES (1)",
            Some(Hint::Replica),
            P,
        ),
        ("/* pg weir:prim ary */ SELECT 1", Some(Hint::Primary), R),
        (
            "-- note\n/* pgweir:replica */ SELECT 1",
            Some(Hint::Replica),
            R,
        ),
        (
            "/* other */ /* pgweir:primary */ SELECT 1",
            Some(Hint::Primary),
            R,
        ),
        (
            "/* pgweir:replica */ /* pgweir:primary */ SELECT 1",
            Some(Hint::Replica),
            R,
        ),
        ("/* /* nested */ pgweir:replica */ SELECT 1", None, R),
        ("SELECT 1 /* pgweir:replica */", None, R),
        ("SELECT /* pgweir:replica */ 1", None, R),
        ("-- pgweir:replica\nSELECT 1", None, R),
        ("-- /* pgweir:replica */", None, P),
        ("/* pgweir:replica", None, P),
        ("/* pgweir:replicas */ SELECT 1", None, R),
        ("/* pgweir:auto */ SELECT 1", None, R),
        ("/* pgweir:replica */", Some(Hint::Replica), P),
        (
            "/* pgweir:primary */ BEGIN READ ONLY",
            Some(Hint::Primary),
            T,
        ),
    ];
    for &(sql, want_hint, want_verdict) in cases {
        let got = classify(sql.as_bytes(), &ReadOnlyFunctions::default());
        assert_eq!(got.hint, want_hint, "hint of {sql:?}");
        assert_eq!(got.verdict, want_verdict, "verdict of {sql:?}");
    }
}

#[test]
fn non_utf8_bytes() {
    let none = ReadOnlyFunctions::default();
    let read: &[&[u8]] = &[
        b"SELECT '\xff\xfe' FROM t",
        b"SELECT \xc3\xa9t\xe9 FROM \xff",
        b"/* \xff */ SELECT 1",
    ];
    for sql in read {
        assert_eq!(classify(sql, &none).verdict, R, "{sql:?}");
    }
    let primary: &[&[u8]] = &[
        b"SELECT \xfff(1)",
        b"\xff\xfe",
        b"SELECT 1; \xff",
        b"\x00\x01;(",
    ];
    for sql in primary {
        assert_eq!(classify(sql, &none).verdict, P, "{sql:?}");
    }
    assert_eq!(hint(b"/* \xff pgweir:replica */ SELECT 1"), None);
    assert_eq!(hint(b"/* pgweir:replica */ \xff"), Some(Hint::Replica));
}

#[test]
fn declared_functions() {
    let extra = ReadOnlyFunctions::new(["My_Func".to_owned(), "nextval".to_owned()]);
    assert!(extra.contains(b"my_func"));
    assert!(!extra.contains(b"My_Func"));
    let verdict = |sql: &str| classify(sql.as_bytes(), &extra).verdict;
    assert_eq!(verdict("SELECT my_func(1)"), R);
    assert_eq!(verdict("SELECT MY_FUNC(1)"), R);
    assert_eq!(verdict("SELECT app.my_func(1)"), R);
    assert_eq!(verdict("SELECT \"my_func\"(1)"), R);
    assert_eq!(verdict("SELECT \"My_Func\"(1)"), P);
    assert_eq!(verdict("BEGIN READ ONLY; SELECT * FROM my_func(1)"), T);
    assert_eq!(verdict("SELECT other_func(1)"), P);
    assert_eq!(verdict("SELECT nextval('s')"), P);
    for name in [
        "nextval",
        "setval",
        "set_config",
        "pg_notify",
        "pg_advisory_lock",
        "pg_advisory_unlock_all",
        "pg_try_advisory_xact_lock",
        "txid_current",
        "txid_current_snapshot",
        "pg_current_xact_id_if_assigned",
        "lo_unlink",
        "dblink_exec",
    ] {
        let extra = ReadOnlyFunctions::new([name.to_owned()]);
        let sql = format!("SELECT {name}(1)");
        assert_eq!(classify(sql.as_bytes(), &extra).verdict, P, "{sql}");
        assert!(never_read_only(name.as_bytes()), "{name}");
    }
    assert!(!never_read_only(b"lower"));
    assert!(!never_read_only(b"local_func"));
}

#[test]
fn lists_are_sorted_for_binary_search() {
    for list in [&READ_ONLY_BUILTINS[..], &NOT_CALLS[..]] {
        for pair in list.windows(2) {
            assert!(pair[0].as_bytes() < pair[1].as_bytes(), "{pair:?}");
        }
        assert!(list
            .iter()
            .all(|k| k.bytes().all(|b| !b.is_ascii_uppercase())));
    }
}

#[test]
fn route_settings() {
    let cases: &[(&str, Option<RouteSetting>)] = &[
        ("SET pgweir.route TO primary", Some(RouteSetting::Primary)),
        ("set PGWEIR.ROUTE = Replica;", Some(RouteSetting::Replica)),
        (
            "SET SESSION pgweir.route TO auto ;  ",
            Some(RouteSetting::Auto),
        ),
        ("SET pgweir.route = 'replica'", Some(RouteSetting::Replica)),
        (
            "SET \"pgweir\".\"route\" TO \"primary\"",
            Some(RouteSetting::Primary),
        ),
        (
            "/* c */ SET pgweir . route TO auto;;",
            Some(RouteSetting::Auto),
        ),
        ("SET pgweir.route TO \"PRIMARY\"", None),
        ("SET LOCAL pgweir.route TO primary", None),
        ("SET pgweir.route TO elsewhere", None),
        ("SET pgweir.route TO primary, replica", None),
        ("SET pgweir.route TO primary; SELECT 1", None),
        ("SET pgweir.route", None),
        ("SET pgweir.other TO primary", None),
        ("SET route TO primary", None),
        ("RESET pgweir.route", None),
        ("SELECT 1", None),
        ("", None),
        ("SET pgweir.route TO 'replica", None),
    ];
    for &(sql, want) in cases {
        assert_eq!(route_setting(sql.as_bytes()), want, "{sql:?}");
    }
    assert_eq!(route_setting(b"SET pgweir.route TO \xff"), None);
}

fn big_in_list(items: usize) -> String {
    let mut sql = String::from("SELECT * FROM t WHERE id IN (");
    for i in 0..items {
        sql.push_str(&i.to_string());
        sql.push(',');
    }
    sql.push_str("0)");
    sql
}

#[test]
fn large_statements() {
    let none = ReadOnlyFunctions::default();
    let sql = big_in_list(100_000);
    assert_eq!(classify(sql.as_bytes(), &none).verdict, R);
    let sql = big_in_list(100_000) + " FOR UPDATE";
    assert_eq!(classify(sql.as_bytes(), &none).verdict, P);
    let calls = "SELECT ".to_owned() + &"lower(x), ".repeat(50_000) + "1";
    assert_eq!(classify(calls.as_bytes(), &none).verdict, R);
    let parens = "SELECT ".to_owned() + &"(".repeat(100_000) + &")".repeat(100_000);
    assert_eq!(classify(parens.as_bytes(), &none).verdict, R);
    let comments = "/* x */".repeat(100_000) + "/* pgweir:replica */ SELECT 1";
    assert_eq!(hint(comments.as_bytes()), Some(Hint::Replica));
}

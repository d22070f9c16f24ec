//! The effects analyzer: every rule, the traps where a keyword must not be seen, the types'
//! small API, and linear cost on a large statement.

use crate::sql::effects::{analyze_tokens, plain};
use crate::sql::{analyze, Effects, PinReason, Pins};

fn fx(sql: &str) -> Effects {
    analyze(sql.as_bytes())
}

fn settings(sql: &str) -> bool {
    fx(sql).settings
}

fn unpins(sql: &str) -> bool {
    fx(sql).may_unpin
}

fn only_settings() -> Effects {
    Effects {
        settings: true,
        ..Effects::default()
    }
}

fn pinned(reason: PinReason) -> Effects {
    let mut pins = Pins::default();
    pins.insert(reason);
    Effects {
        pins,
        ..Effects::default()
    }
}

fn unpin() -> Effects {
    Effects {
        may_unpin: true,
        ..Effects::default()
    }
}

#[test]
fn set_changes_settings() {
    for sql in [
        "SET search_path = x",
        "set statement_timeout to 5",
        "SET SESSION search_path = x",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET ROLE r",
        "SET TIME ZONE 'UTC'",
        "SET SESSION AUTHORIZATION DEFAULT",
        "  /* hi */ SET x.y = 1",
        "RESET ALL",
        "reset search_path",
    ] {
        assert_eq!(fx(sql), only_settings(), "{sql}");
    }
}

#[test]
fn transaction_scoped_sets_are_not_settings() {
    for sql in [
        "SET LOCAL search_path = x",
        "set local search_path = x",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET CONSTRAINTS ALL DEFERRED",
        "UPDATE t SET a = 1",
        "ALTER ROLE r SET search_path = x",
        "CREATE FUNCTION f() RETURNS int SET search_path = x AS $$ SELECT 1 $$ LANGUAGE sql",
        "SELECT 'SET x = 1'",
    ] {
        assert!(fx(sql).is_empty(), "{sql}");
    }
}

#[test]
fn set_config_calls_anywhere() {
    for sql in [
        "SELECT set_config('a','b',false)",
        "select SET_CONFIG ('a', 'b', false)",
        "SELECT pg_catalog.set_config('a','b',false)",
        r#"select "set_config"('a','b',false)"#,
        "WITH x AS (SELECT set_config('a','b',false)) SELECT * FROM x",
        "INSERT INTO t SELECT set_config('a', /* ( */ 'b', false)",
    ] {
        assert_eq!(fx(sql), only_settings(), "{sql}");
    }
    for sql in [
        r#"SELECT "SET_CONFIG"('a','b',false)"#,
        "SELECT set_config",
        "SELECT current_setting('a')",
        "SELECT 'set_config('",
        "SELECT set_config_x('a')",
    ] {
        assert!(!settings(sql), "{sql}");
    }
}

#[test]
fn updating_pg_settings_changes_settings() {
    assert!(settings(
        "UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'"
    ));
    assert!(settings("update pg_catalog.pg_settings set setting = 'x'"));
    assert!(!settings("SELECT * FROM pg_settings"));
}

#[test]
fn discard() {
    let plans = fx("DISCARD PLANS");
    assert!(plans.settings && plans.may_unpin && !plans.drops_all_prepared);
    assert!(fx("discard temp").may_unpin);
    let all = fx("DISCARD ALL");
    assert!(all.settings && all.may_unpin && all.drops_all_prepared);
    assert!(all.pins.is_empty());
}

#[test]
fn deallocate() {
    let one = fx("DEALLOCATE p");
    assert!(one.may_unpin && !one.drops_all_prepared);
    assert!(!fx("DEALLOCATE PREPARE p").drops_all_prepared);
    for sql in [
        "DEALLOCATE ALL",
        "deallocate prepare all",
        "DEALLOCATE ALL;",
    ] {
        let all = fx(sql);
        assert!(
            all.may_unpin && all.drops_all_prepared && !all.settings,
            "{sql}"
        );
    }
}

#[test]
fn listen_load_prepare_pin() {
    assert_eq!(fx("LISTEN x"), pinned(PinReason::Listen));
    assert_eq!(fx("listen \"x\""), pinned(PinReason::Listen));
    assert_eq!(fx("LOAD 'auto_explain'"), pinned(PinReason::Load));
    assert_eq!(fx("PREPARE p AS SELECT 1"), pinned(PinReason::SqlPrepare));
    assert_eq!(
        fx("prepare p (int) as select $1"),
        pinned(PinReason::SqlPrepare)
    );
    assert!(fx("PREPARE TRANSACTION 'x'").is_empty());
    assert!(fx("prepare transaction 'x'").is_empty());
}

#[test]
fn releasing_statements_may_unpin() {
    for sql in [
        "UNLISTEN *",
        "unlisten x",
        "DROP TABLE t",
        "CLOSE c",
        "CLOSE ALL",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ROLLBACK TO SAVEPOINT s",
        "ABORT",
        "SELECT pg_advisory_unlock(1)",
        "SELECT pg_advisory_unlock_shared(1, 2)",
        "SELECT pg_catalog.pg_advisory_unlock_all()",
    ] {
        assert_eq!(fx(sql), unpin(), "{sql}");
    }
    assert!(!unpins("SELECT 'DROP TABLE t'"));
    assert!(!unpins("BEGIN"));
}

#[test]
fn session_advisory_locks_pin() {
    for sql in [
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_advisory_lock_shared(1, 2)",
        "SELECT pg_try_advisory_lock(42)",
        "select PG_TRY_ADVISORY_LOCK_SHARED(42)",
        "SELECT pg_catalog.pg_advisory_lock(1)",
        "SELECT x FROM t WHERE pg_try_advisory_lock(t.id)",
    ] {
        assert_eq!(fx(sql), pinned(PinReason::AdvisoryLock), "{sql}");
    }
    for sql in [
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT pg_advisory_xact_lock_shared(1)",
        "SELECT 'pg_advisory_lock(1)'",
        r#"SELECT "PG_ADVISORY_LOCK"(1)"#,
    ] {
        assert!(fx(sql).is_empty(), "{sql}");
    }
}

#[test]
fn hold_cursors_pin() {
    for sql in [
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "declare c no scroll cursor with hold for select 1",
        "DECLARE c BINARY INSENSITIVE SCROLL CURSOR WITH HOLD FOR SELECT 1",
    ] {
        assert_eq!(fx(sql), pinned(PinReason::HoldCursor), "{sql}");
    }
    for sql in [
        "DECLARE c CURSOR FOR SELECT 1",
        "DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1",
        "DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold",
    ] {
        assert!(fx(sql).pins.is_empty(), "{sql}");
    }
}

#[test]
fn temporary_objects_pin() {
    for sql in [
        "CREATE TEMP TABLE t (a int)",
        "create temporary table t (a int)",
        "CREATE GLOBAL TEMPORARY TABLE t (a int)",
        "CREATE LOCAL TEMP TABLE t AS SELECT 1",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
        "CREATE TEMP SEQUENCE s",
        "CREATE TABLE pg_temp.t (a int)",
        "CREATE TABLE IF NOT EXISTS PG_TEMP.t (a int)",
        r#"CREATE TABLE "pg_temp".t (a int)"#,
        "CREATE FUNCTION pg_temp.f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        "CREATE VIEW v AS SELECT * FROM pg_temp_3.t",
        "SELECT 1 AS a INTO TEMP t",
        "select * into temporary table t from x",
        "SELECT * INTO LOCAL TEMP t FROM x",
        "SELECT * INTO pg_temp.t FROM x",
        "SELECT * INTO TABLE pg_temp.t FROM x",
        "WITH x AS (SELECT 1) SELECT * INTO TEMP t FROM x",
        "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1",
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT 1 INTO TEMP t",
    ] {
        assert_eq!(fx(sql), pinned(PinReason::TempObject), "{sql}");
    }
    for sql in [
        "CREATE TABLE t (a int)",
        "CREATE UNLOGGED TABLE t (a int)",
        "CREATE TABLE temp (a int)",
        r#"CREATE TABLE "pg_TEMP".t (a int)"#,
        "CREATE TABLE pg_temporary.t (a int)",
        "CREATE TABLE pg_temp_x.t (a int)",
        "SELECT * INTO t FROM x",
        "SELECT * FROM t WHERE temp = 1",
        "SELECT (SELECT 1 INTO TEMP t)",
        "WITH x AS (SELECT 1) INSERT INTO temp SELECT * FROM x",
        "WITH x AS (INSERT INTO temp VALUES (1) RETURNING *) SELECT * FROM x",
        "INSERT INTO temp VALUES (1)",
        "SELECT 'CREATE TEMP TABLE t'",
    ] {
        assert!(fx(sql).pins.is_empty(), "{sql}");
    }
}

#[test]
fn keywords_in_literals_comments_and_quoted_identifiers_are_not_seen() {
    for sql in [
        "SELECT 'SET x = 1'",
        "SELECT 1 -- ; LISTEN x",
        "SELECT 1 /* ; LISTEN x /* nested */ ; LISTEN y */",
        "SELECT $$; LISTEN x$$",
        "SELECT $tag$; LISTEN x; $$ ; LISTEN y $tag$",
        r"SELECT E'it\'s; LISTEN x'",
        r"SELECT e'\\\'; LISTEN x'",
        r#"SELECT 1 AS "; LISTEN x""#,
        r#""listen" x"#,
        "SELECT U&'; LISTEN x'",
        "SELECT X'; LISTEN x'",
        "DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$",
    ] {
        assert!(fx(sql).is_empty(), "{sql}");
    }
}

#[test]
fn every_statement_of_a_text_counts() {
    assert_eq!(fx("SELECT 1; LISTEN x"), pinned(PinReason::Listen));
    assert_eq!(fx("SELECT 'a;b';LISTEN x;"), pinned(PinReason::Listen));
    assert_eq!(
        fx("SELECT $1 ; /* c */ listen x"),
        pinned(PinReason::Listen)
    );
    let mixed = fx("BEGIN; SET x = 1; SELECT pg_advisory_lock(1); LISTEN c; COMMIT");
    assert!(mixed.settings && mixed.may_unpin && !mixed.drops_all_prepared);
    let reasons: Vec<_> = mixed.pins.iter().collect();
    assert_eq!(reasons, vec![PinReason::Listen, PinReason::AdvisoryLock]);
    // Only the leading keyword of a statement is a statement keyword.
    assert!(fx("SELECT listen FROM t").is_empty());
    assert!(fx(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; LISTEN x"
    )
    .pins
    .contains(PinReason::Listen));
}

#[test]
fn a_call_needs_the_parenthesis_right_after_the_name() {
    // The name before a statement's first `(` belongs to the previous statement.
    assert!(!settings("SELECT set_config; (SELECT 1)"));
    assert!(settings(
        "SELECT set_config\n  -- comment\n  ('a', 'b', false)"
    ));
}

#[test]
fn degenerate_inputs() {
    for sql in [
        "",
        ";",
        ";;;",
        "-- only a comment",
        "/* only */ /* comments */",
        "'unterminated; LISTEN x",
        "/* unterminated; LISTEN x",
        "$$ unterminated; LISTEN x",
        "\"unterminated; LISTEN x",
        "E'unterminated\\",
        "(((",
        ")))",
        "$",
        "SET",
        "DECLARE",
        "CREATE",
        "CREATE OR",
        "EXPLAIN",
        "EXPLAIN (",
        "SELECT * INTO",
        "DEALLOCATE PREPARE",
    ] {
        let _ = fx(sql);
    }
    assert!(fx("").is_empty());
    assert!(fx("-- LISTEN x\n/* LISTEN y */").is_empty());
    assert!(fx("'unterminated; LISTEN x").is_empty());
    assert!(fx("/* unterminated; LISTEN x").is_empty());
    assert!(fx("$x$ unterminated; LISTEN x").is_empty());
    assert!(analyze(b"SET caf\xe9 = 1; LISTEN \xff\xfe")
        .pins
        .contains(PinReason::Listen));
    assert!(analyze(b"SELECT \xe9set_config('a', 'b', false)").is_empty());
}

#[test]
fn deeply_nested_explain_does_not_recurse() {
    let sql = "EXPLAIN ".repeat(200_000) + "LISTEN x";
    assert_eq!(fx(&sql), pinned(PinReason::Listen));
}

#[test]
fn effects_api() {
    let a = fx("LISTEN x");
    let b = fx("SET x = 1; SELECT pg_advisory_lock(1)");
    let both = a.union(b);
    assert!(both.settings && !both.is_empty());
    assert!(both.pins.contains(PinReason::Listen) && both.pins.contains(PinReason::AdvisoryLock));
    assert!(!both.pins.contains(PinReason::Load));
    assert_eq!(both.pins, a.pins.union(b.pins));
    assert!(Effects::default().is_empty() && Pins::default().is_empty());
    let mut all = Pins::default();
    let reasons = [
        PinReason::Listen,
        PinReason::AdvisoryLock,
        PinReason::TempObject,
        PinReason::HoldCursor,
        PinReason::Load,
        PinReason::SqlPrepare,
    ];
    for r in reasons {
        all.insert(r);
    }
    assert_eq!(all.iter().collect::<Vec<_>>(), reasons);
    let names: Vec<_> = reasons.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "LISTEN",
            "session advisory lock",
            "temporary table",
            "WITH HOLD cursor",
            "LOAD",
            "SQL PREPARE"
        ]
    );
}

/// `SELECT * FROM t WHERE id IN (1, 2, ...)` of about `bytes` bytes.
fn big_in_list(bytes: usize) -> String {
    let mut sql = String::from("SELECT * FROM t WHERE id IN (");
    let mut i = 0u64;
    while sql.len() < bytes {
        sql.push_str(&i.to_string());
        sql.push(',');
        i += 1;
    }
    sql.push_str("0); SELECT pg_advisory_lock(1)");
    sql
}

/// A megabyte must go through without trouble (a quadratic scan would take minutes here).
#[test]
fn large_statement() {
    let sql = big_in_list(1 << 20);
    assert_eq!(fx(&sql), pinned(PinReason::AdvisoryLock));
    let strings = "SELECT ".to_owned() + &"'a''b', E'\\'', $q$ $ $$ $q$, /* */ ".repeat(40_000);
    assert!(fx(&strings).is_empty());
}

#[test]
fn the_prefilter_only_passes_texts_without_effects() {
    let texts = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 2;",
        "select 1;;  ",
        "SELECT 1 INTO TEMP t",
        "select * into temporary t from x",
        "SELECT pg_advisory_lock(1)",
        "UPDATE pg_settings SET setting = 'a' WHERE name = 'search_path'",
        "SELECT 1; LISTEN x",
        "SELECT 1 /* ; */; SET x = 1",
        "show search_path",
        "SELECT 'a;b'",
    ];
    for t in texts {
        if plain(t.as_bytes()) {
            assert_eq!(analyze_tokens(t.as_bytes()), Effects::default(), "{t}");
        }
    }
    assert!(plain(texts[0].as_bytes()) && plain(texts[1].as_bytes()));
    assert_eq!(fx("SELECT 1 INTO TEMP t"), pinned(PinReason::TempObject));
    assert_eq!(fx("SELECT 1; LISTEN x"), pinned(PinReason::Listen));
}

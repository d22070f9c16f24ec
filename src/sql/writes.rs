//! Two questions about texts the route classifier could not prove read-only, for the relay's
//! routing checks ([`crate::client::routing`]); anything not recognised may write.
//!
//! [`may_write`]: read-your-writes sends a client's reads to the primary for a while after
//! each write, so counting `BEGIN`, `COMMIT` or `SET` as writes would keep a client that only
//! reads in explicit transactions off the replicas.
//!
//! [`ends_transaction`]: `COMMIT`, `ROLLBACK` and savepoints behave the same on a replica as
//! on the primary, so a replica in a read-only transaction may take them.

use super::statements::Statements;

/// Statements that change no data: transaction control and session commands.
const NO_DATA: [&str; 11] = [
    "abort",
    "begin",
    "commit",
    "end",
    "release",
    "reset",
    "rollback",
    "savepoint",
    "set",
    "show",
    "start",
];

/// Statements that end a transaction or mark a point in it.
const ENDS: [&str; 6] = ["abort", "commit", "end", "release", "rollback", "savepoint"];

/// False only when every statement of `sql` is transaction control or a session command.
/// `COMMIT PREPARED` and `ROLLBACK PREPARED` finish a two-phase commit: they write.
pub fn may_write(sql: &[u8]) -> bool {
    every_statement(sql, &NO_DATA).is_none()
}

/// True when every statement of `sql` ends the transaction or handles a savepoint (and
/// there is at least one), without two-phase commit.
pub fn ends_transaction(sql: &[u8]) -> bool {
    every_statement(sql, &ENDS).is_some_and(|n| n > 0)
}

/// How many non-empty statements `sql` has, if each starts with one of `keywords` (and is
/// not two-phase commit); None otherwise.
fn every_statement(sql: &[u8], keywords: &[&str]) -> Option<usize> {
    let mut statements = Statements::new(sql);
    let mut count = 0;
    while statements.next_statement() {
        let Some(first) = statements.next_token() else {
            continue;
        };
        let second = statements.next_token();
        let listed = keywords.iter().any(|k| first.is_keyword(k));
        if !listed || second.is_some_and(|t| t.is_keyword("prepared")) {
            return None;
        }
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::{ends_transaction, may_write};

    #[test]
    fn transaction_control_and_settings_write_nothing() {
        for sql in [
            "BEGIN",
            "begin isolation level serializable; set local work_mem = '64MB'",
            "COMMIT",
            "END",
            "ROLLBACK TO SAVEPOINT a; RELEASE a",
            "START TRANSACTION",
            "SHOW work_mem; RESET ALL",
            "/* hi */ ABORT;",
            "",
        ] {
            assert!(!may_write(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn anything_else_may_write() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "BEGIN; UPDATE t SET a = 1; COMMIT",
            "SELECT nextval('s')",
            "\"begin\"",
            "CALL p()",
            "COPY t FROM STDIN",
            "COMMIT PREPARED 'x'",
            "ROLLBACK PREPARED 'x'",
        ] {
            assert!(may_write(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn transaction_ends_are_told_from_everything_else() {
        for sql in [
            "COMMIT",
            "end;",
            "ROLLBACK TO SAVEPOINT a",
            "SAVEPOINT a; RELEASE a",
        ] {
            assert!(ends_transaction(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "",
            "BEGIN",
            "COMMIT; INSERT INTO t VALUES (1)",
            "COMMIT PREPARED 'x'",
        ] {
            assert!(!ends_transaction(sql.as_bytes()), "{sql}");
        }
    }
}

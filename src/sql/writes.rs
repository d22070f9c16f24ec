//! Whether a text the route classifier could not prove read-only may have written data.
//! Read-your-writes sends a client's reads to the primary for a while after each write, so
//! counting `BEGIN`, `COMMIT` or `SET` as writes would keep a client that only reads in
//! explicit transactions off the replicas. Used by the relay's routing checks
//! ([`crate::client::routing`]); conservative: anything else may write.

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

/// False only when every statement of `sql` is transaction control or a session command.
pub fn may_write(sql: &[u8]) -> bool {
    let mut statements = Statements::new(sql);
    while statements.next_statement() {
        let Some(first) = statements.next_token() else {
            continue;
        };
        if !NO_DATA.iter().any(|k| first.is_keyword(k)) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::may_write;

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
        ] {
            assert!(may_write(sql.as_bytes()), "{sql}");
        }
    }
}

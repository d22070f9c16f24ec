//! Session state beyond startup parameters: settings a client changed with SET, RESET or
//! set_config, and state that ties it to one server (LISTEN, session advisory locks, temp
//! tables, WITH HOLD cursors, SQL PREPARE, LOAD).
//!
//! The relay recognises statements that may touch either ([`crate::sql::analyze`]) and
//! notes them in a [`Watch`]. When the transaction ends, one internal query on the same
//! server reads back what is really there ([`check_sql`]): the session-level settings, as
//! Postgres spells them, and counts of each kind of pinned state. So SET LOCAL, settings
//! rolled back with their transaction, and state dropped again all come out exactly as
//! Postgres has them, at the cost of one round trip after only those transactions.

use crate::server::TRACKED;
use crate::sql::{Effects, PinReason, Pins};

/// What the current linked stretch may have changed.
#[derive(Debug, Default)]
pub struct Watch {
    /// Session settings may differ now.
    pub settings: bool,
    /// Pinned state may have been created or dropped.
    pub pins: bool,
}

impl Watch {
    /// Notes a statement about to run; `pinned` is whether the client holds pinned state.
    pub fn note(&mut self, e: &Effects, pinned: bool) {
        self.settings |= e.settings;
        self.pins |= !e.pins.is_empty() || (pinned && e.may_unpin);
    }

    pub fn any(&self) -> bool {
        self.settings || self.pins
    }
}

/// Columns of the pinned-state row, in [`check_sql`]'s order.
const PIN_COLUMNS: [PinReason; 5] = [
    PinReason::AdvisoryLock,
    PinReason::Listen,
    PinReason::TempObject,
    PinReason::HoldCursor,
    PinReason::SqlPrepare,
];

const PIN_PROBE: &str = "SELECT \
     (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()), \
     (SELECT count(*) FROM pg_catalog.pg_listening_channels()), \
     (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) \
     + (SELECT count(*) FROM pg_catalog.pg_proc WHERE pronamespace = pg_catalog.pg_my_temp_schema()) \
     + (SELECT count(*) FROM pg_catalog.pg_type WHERE typnamespace = pg_catalog.pg_my_temp_schema()), \
     (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable), \
     (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql);";

/// The internal query that reads back what `watch` says may have changed. Settings come
/// back as (name, value) rows sorted by name; the pinned state as one row of counts.
/// Custom settings (`app.tenant`) are not listed by pg_settings, so the ones the client
/// has used are asked for by name.
pub fn check_sql(watch: &Watch, custom: &[String]) -> String {
    let mut sql = String::new();
    if watch.settings {
        let tracked: Vec<String> = TRACKED
            .iter()
            .map(|t| literal(&t.to_ascii_lowercase()))
            .collect();
        sql.push_str(&format!(
            "SELECT name, setting FROM pg_catalog.pg_settings \
             WHERE source = 'session' AND pg_catalog.lower(name) <> ALL (ARRAY[{}]) \
             UNION SELECT 'role', pg_catalog.current_setting('role') \
             WHERE pg_catalog.current_setting('role') <> 'none'",
            tracked.join(",")
        ));
        if !custom.is_empty() {
            let names: Vec<String> = custom.iter().map(|n| literal(n)).collect();
            sql.push_str(&format!(
                " UNION SELECT n, pg_catalog.current_setting(n, true) \
                 FROM pg_catalog.unnest(ARRAY[{}]::text[]) n \
                 WHERE pg_catalog.current_setting(n, true) IS NOT NULL",
                names.join(",")
            ));
        }
        sql.push_str(" ORDER BY 1;");
    }
    if watch.pins {
        sql.push_str(PIN_PROBE);
    }
    sql
}

/// What [`check_sql`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Session settings, sorted by name; `None` when they were not read.
    pub settings: Option<Vec<(String, String)>>,
    /// Pinned state present; `None` when it was not probed.
    pub pins: Option<Pins>,
}

/// Reads the rows of [`check_sql`]: two-column rows are settings, the five-column row the
/// pinned-state counts.
pub fn read_check(watch: &Watch, rows: &[Vec<Option<String>>]) -> Checked {
    let mut checked = Checked {
        settings: watch.settings.then(Vec::new),
        pins: None,
    };
    for row in rows {
        match row.as_slice() {
            [Some(name), Some(value)] => {
                if let Some(s) = checked.settings.as_mut() {
                    s.push((name.clone(), value.clone()));
                }
            }
            counts if counts.len() == PIN_COLUMNS.len() && watch.pins => {
                let mut pins = Pins::default();
                for (reason, count) in PIN_COLUMNS.iter().zip(counts) {
                    if count.as_deref().is_some_and(|c| c != "0") {
                        pins.insert(*reason);
                    }
                }
                checked.pins = Some(pins);
            }
            _ => {}
        }
    }
    checked
}

/// A SQL string literal that reads the same whatever the server's
/// `standard_conforming_strings`: with a backslash in it, an `E''` literal with backslashes
/// doubled (postgres-protocol's quoting, libpq's rules).
pub fn literal(s: &str) -> String {
    postgres_protocol::escape::escape_literal(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_hold_quotes_and_backslashes_whatever_the_server_reads() {
        assert_eq!(literal("plain"), "'plain'");
        assert_eq!(literal("it's"), "'it''s'");
        // Under standard_conforming_strings = off, '\' would escape the closing quote of a
        // plain literal; E'' reads backslashes the same way in both modes.
        assert_eq!(literal("a\\"), " E'a\\\\'");
        assert_eq!(literal("x\\'; SELECT 1; --"), " E'x\\\\''; SELECT 1; --'");
    }

    #[test]
    fn only_what_was_touched_is_read_back() {
        let mut w = Watch::default();
        assert!(check_sql(&w, &[]).is_empty());
        w.note(
            &Effects {
                settings: true,
                ..Effects::default()
            },
            false,
        );
        let sql = check_sql(&w, &["app.x'y".to_owned()]);
        assert!(sql.contains("pg_settings") && sql.contains("'app.x''y'"));
        assert!(!sql.contains("pg_locks"));
        let rows = vec![vec![Some("search_path".into()), Some("a".into())]];
        let got = read_check(&w, &rows);
        assert_eq!(got.settings, Some(vec![("search_path".into(), "a".into())]));
        assert_eq!(got.pins, None);
    }

    #[test]
    fn unpin_hints_matter_only_while_pinned() {
        let hint = Effects {
            may_unpin: true,
            ..Effects::default()
        };
        let mut w = Watch::default();
        w.note(&hint, false);
        assert!(!w.any());
        w.note(&hint, true);
        assert!(w.pins);
        let counts = ["1", "0", "0", "0", "2"]
            .map(|c| Some(c.to_owned()))
            .to_vec();
        let pins = read_check(&w, &[counts]).pins.unwrap();
        assert!(pins.contains(PinReason::AdvisoryLock) && pins.contains(PinReason::SqlPrepare));
        assert!(!pins.contains(PinReason::Listen));
    }
}

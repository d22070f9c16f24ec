//! SHOW STATS and SHOW STATS_TOTALS: the totals the relay keeps per (database, user) in
//! [`crate::stats::GroupStats`], summed per database as PgBouncer reports them, in its
//! columns and its `numeric` type. Times are in microseconds. The `avg_*` columns are
//! PgBouncer's averages over the last complete `stats_period` ([`Averages`]): 0 until one
//! has ended, and always with `stats_period = 0`. The prepared-statement counts are those of
//! named statements, which pgweir tracks only in transaction and statement mode (as
//! PgBouncer does with `max_prepared_statements`): Parses clients sent, Parses pgweir sent
//! to servers, and Binds.

use std::collections::BTreeMap;

use bytes::BytesMut;

use super::result::{ResultSet, Type, Value};
use crate::app::App;
use crate::stats::{Averages, Period, Reading};

/// One database's totals and last period, its users' summed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Database {
    totals: Reading,
    period: Period,
}

impl Database {
    fn add(&mut self, totals: Reading, period: Period) {
        self.totals = self.totals.plus(totals);
        self.period.change = self.period.change.plus(period.change);
        // Every pair's period closes at the same tick; a pair new since then has none.
        self.period.length = self.period.length.max(period.length);
    }
}

/// The counts in PgBouncer's column order, totals or averages alike.
fn values(r: [u64; 11]) -> [Value; 11] {
    r.map(Value::from)
}

fn totals(r: &Reading) -> [u64; 11] {
    [
        r.assignments,
        r.transactions,
        r.queries,
        r.received,
        r.sent,
        r.transaction_us,
        r.query_us,
        r.wait_us,
        r.client_parses,
        r.server_parses,
        r.binds,
    ]
}

fn averages(a: &Averages) -> [u64; 11] {
    [
        a.assignments,
        a.transactions,
        a.queries,
        a.received,
        a.sent,
        a.transaction_us,
        a.query_us,
        a.wait_us,
        a.client_parses,
        a.server_parses,
        a.binds,
    ]
}

/// Every database that has a pool now, with its users' totals and periods summed.
fn per_database(app: &App) -> BTreeMap<String, Database> {
    let mut dbs: BTreeMap<String, Database> = BTreeMap::new();
    for s in app.pools.group_stats() {
        let db = dbs.entry(s.database.clone()).or_default();
        db.add(Reading::of(&s), s.last_period());
    }
    dbs
}

pub const STATS: [(&str, Type); 24] = [
    ("database", Type::Text),
    ("total_server_assignment_count", Type::Numeric),
    ("total_xact_count", Type::Numeric),
    ("total_query_count", Type::Numeric),
    ("total_received", Type::Numeric),
    ("total_sent", Type::Numeric),
    ("total_xact_time", Type::Numeric),
    ("total_query_time", Type::Numeric),
    ("total_wait_time", Type::Numeric),
    ("total_client_parse_count", Type::Numeric),
    ("total_server_parse_count", Type::Numeric),
    ("total_bind_count", Type::Numeric),
    ("avg_server_assignment_count", Type::Numeric),
    ("avg_xact_count", Type::Numeric),
    ("avg_query_count", Type::Numeric),
    ("avg_recv", Type::Numeric),
    ("avg_sent", Type::Numeric),
    ("avg_xact_time", Type::Numeric),
    ("avg_query_time", Type::Numeric),
    ("avg_wait_time", Type::Numeric),
    ("avg_client_parse_count", Type::Numeric),
    ("avg_server_parse_count", Type::Numeric),
    ("avg_bind_count", Type::Numeric),
    // PgBouncer 1.7's name for total_query_count, after the 1.25 columns: Debian bookworm's
    // prometheus-pgbouncer-exporter still reads it.
    ("total_requests", Type::Numeric),
];

pub fn stats(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &STATS);
    for (name, db) in per_database(app) {
        let avg = averages(&Averages::of(db.period));
        let requests = Value::from(db.totals.queries);
        let row = std::iter::once(name.into())
            .chain(values(totals(&db.totals)))
            .chain(values(avg))
            .chain(std::iter::once(requests));
        rs.row(row);
    }
    rs.finish();
}

pub const STATS_TOTALS: [(&str, Type); 12] = [
    ("database", Type::Text),
    ("server_assignment_count", Type::Numeric),
    ("xact_count", Type::Numeric),
    ("query_count", Type::Numeric),
    ("bytes_received", Type::Numeric),
    ("bytes_sent", Type::Numeric),
    ("xact_time", Type::Numeric),
    ("query_time", Type::Numeric),
    ("wait_time", Type::Numeric),
    ("client_parse_count", Type::Numeric),
    ("server_parse_count", Type::Numeric),
    ("bind_count", Type::Numeric),
];

pub fn stats_totals(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &STATS_TOTALS);
    for (name, db) in per_database(app) {
        rs.row(std::iter::once(name.into()).chain(values(totals(&db.totals))));
    }
    rs.finish();
}

pub const STATS_AVERAGES: [(&str, Type); 12] = [
    ("database", Type::Text),
    ("server_assignment_count", Type::Numeric),
    ("xact_count", Type::Numeric),
    ("query_count", Type::Numeric),
    ("bytes_received", Type::Numeric),
    ("bytes_sent", Type::Numeric),
    ("xact_time", Type::Numeric),
    ("query_time", Type::Numeric),
    ("wait_time", Type::Numeric),
    ("avg_client_parse_count", Type::Numeric),
    ("avg_server_parse_count", Type::Numeric),
    ("avg_bind_count", Type::Numeric),
];

/// SHOW STATS' averages alone, per database.
pub fn stats_averages(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &STATS_AVERAGES);
    for (name, db) in per_database(app) {
        let avg = averages(&Averages::of(db.period));
        rs.row(std::iter::once(name.into()).chain(values(avg)));
    }
    rs.finish();
}

pub const TOTALS: [(&str, Type); 2] = [("name", Type::Text), ("value", Type::Numeric)];

/// PgBouncer 1.25's names for SHOW TOTALS' rows: the totals, then the averages, in the
/// order of [`totals`] and [`averages`].
const TOTAL_NAMES: [&str; 11] = [
    "server_assignment_count",
    "xact_count",
    "query_count",
    "client_bytes",
    "server_bytes",
    "xact_time",
    "query_time",
    "wait_time",
    "ps_client_parse_count",
    "ps_server_parse_count",
    "ps_bind_count",
];

/// Every database's totals and averages summed, one per row.
pub fn totals_all(app: &App, out: &mut BytesMut) {
    let mut all = Database::default();
    for db in per_database(app).into_values() {
        all.add(db.totals, db.period);
    }
    let mut rs = ResultSet::new(out, &TOTALS);
    let avg = averages(&Averages::of(all.period));
    for (prefix, counts) in [("total", totals(&all.totals)), ("avg", avg)] {
        for (name, value) in TOTAL_NAMES.iter().zip(counts) {
            rs.row([format!("{prefix}_{name}").into(), value.into()]);
        }
    }
    rs.finish();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_database_sums_its_users_and_fills_every_column() {
        let minute = Duration::from_secs(60);
        let reading = |transactions, wait_us| Reading {
            transactions,
            wait_us,
            ..Reading::default()
        };
        let mut db = Database::default();
        let period = |change| Period {
            change,
            length: minute,
        };
        db.add(reading(3, 0), period(reading(60, 0)));
        db.add(reading(4, 10), period(reading(60, 10)));
        db.add(reading(0, 0), Period::default());
        assert_eq!((db.totals.transactions, db.totals.wait_us), (7, 10));
        assert_eq!(db.period.length, minute);
        assert_eq!(Averages::of(db.period).transactions, 2, "120 in a minute");
        assert_eq!(1 + totals(&db.totals).len(), STATS_TOTALS.len());
        assert_eq!(2 + 2 * totals(&db.totals).len(), STATS.len());
    }
}

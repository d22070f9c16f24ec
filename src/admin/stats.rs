//! SHOW STATS and SHOW STATS_TOTALS: the totals the relay keeps per (database, user) in
//! [`crate::stats::GroupStats`], summed per database as PgBouncer reports them, in its
//! columns and its `numeric` type. Times are in microseconds.
//!
//! Not kept by pgweir, so 0: the prepared-statement counts (`*_parse_count`,
//! `*_bind_count`), and every `avg_*` column: there is no averaging window over
//! `stats_period` yet.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bytes::BytesMut;

use super::result::{ResultSet, Type, Value};
use crate::app::App;
use crate::stats::GroupStats;

/// One database's totals, in PgBouncer's column order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    assignments: u64,
    transactions: u64,
    queries: u64,
    received: u64,
    sent: u64,
    transaction_us: u64,
    query_us: u64,
    wait_us: u64,
}

impl Totals {
    fn add(&mut self, s: &GroupStats) {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        self.assignments += get(&s.assignments);
        self.transactions += get(&s.transactions);
        self.queries += get(&s.queries);
        self.received += get(&s.received);
        self.sent += get(&s.sent);
        self.transaction_us += get(&s.transaction_us);
        self.query_us += get(&s.query_us);
        self.wait_us += get(&s.wait_us);
    }

    /// The totals followed by the three prepared-statement counts pgweir does not keep.
    fn values(&self) -> [Value; 11] {
        [
            self.assignments.into(),
            self.transactions.into(),
            self.queries.into(),
            self.received.into(),
            self.sent.into(),
            self.transaction_us.into(),
            self.query_us.into(),
            self.wait_us.into(),
            0u64.into(),
            0u64.into(),
            0u64.into(),
        ]
    }
}

/// Every database that has had a pool, with its users' totals summed.
fn per_database(app: &App) -> BTreeMap<String, Totals> {
    let mut dbs: BTreeMap<String, Totals> = BTreeMap::new();
    for group in app.pools.groups() {
        let s = &group.stats;
        dbs.entry(s.database.clone()).or_default().add(s);
    }
    dbs
}

pub const STATS: [(&str, Type); 23] = [
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
];

pub fn stats(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &STATS);
    for (db, t) in per_database(app) {
        let averages = std::iter::repeat_with(|| Value::from(0u64)).take(11);
        rs.row(std::iter::once(db.into()).chain(t.values()).chain(averages));
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

pub fn totals(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &STATS_TOTALS);
    for (db, t) in per_database(app) {
        rs.row(std::iter::once(db.into()).chain(t.values()));
    }
    rs.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_over_users_and_fill_every_column() {
        let (a, b) = (GroupStats::new("db", "u1"), GroupStats::new("db", "u2"));
        a.transactions.store(3, Ordering::Relaxed);
        b.transactions.store(4, Ordering::Relaxed);
        b.wait_us.store(10, Ordering::Relaxed);
        let mut t = Totals::default();
        t.add(&a);
        t.add(&b);
        assert_eq!((t.transactions, t.wait_us), (7, 10));
        assert_eq!(1 + t.values().len(), STATS_TOTALS.len());
        assert_eq!(1 + 2 * t.values().len(), STATS.len());
    }
}

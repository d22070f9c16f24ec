//! The stats period: every `stats_period`, the change in each (database, user)'s
//! [`super::GroupStats`] totals is kept on the stats (for SHOW STATS's `avg_*` columns) and
//! logged ([`crate::report::period`]) as one line per pair that did anything, with rates and
//! averages over the period as PgBouncer computes them ([`Averages`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::GroupStats;

/// The totals at one reading, or the change between two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    pub assignments: u64,
    pub transactions: u64,
    pub queries: u64,
    pub received: u64,
    pub sent: u64,
    pub transaction_us: u64,
    pub query_us: u64,
    pub wait_us: u64,
    /// Named statements clients prepared, statements pgweir prepared on servers, and
    /// Binds of named statements.
    pub client_parses: u64,
    pub server_parses: u64,
    pub binds: u64,
}

impl Reading {
    pub fn of(s: &GroupStats) -> Reading {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Reading {
            assignments: get(&s.assignments),
            transactions: get(&s.transactions),
            queries: get(&s.queries),
            received: get(&s.received),
            sent: get(&s.sent),
            transaction_us: get(&s.transaction_us),
            query_us: get(&s.query_us),
            wait_us: get(&s.wait_us),
            client_parses: get(&s.prepared.client_parses),
            server_parses: get(&s.prepared.misses),
            binds: get(&s.prepared.binds),
        }
    }

    /// Applies `f` field by field.
    fn zip(self, o: Reading, f: impl Fn(u64, u64) -> u64) -> Reading {
        Reading {
            assignments: f(self.assignments, o.assignments),
            transactions: f(self.transactions, o.transactions),
            queries: f(self.queries, o.queries),
            received: f(self.received, o.received),
            sent: f(self.sent, o.sent),
            transaction_us: f(self.transaction_us, o.transaction_us),
            query_us: f(self.query_us, o.query_us),
            wait_us: f(self.wait_us, o.wait_us),
            client_parses: f(self.client_parses, o.client_parses),
            server_parses: f(self.server_parses, o.server_parses),
            binds: f(self.binds, o.binds),
        }
    }

    /// The change since `before`; never negative.
    pub fn since(self, before: Reading) -> Reading {
        self.zip(before, u64::saturating_sub)
    }

    /// Both together, as SHOW STATS sums a database's users.
    pub fn plus(self, other: Reading) -> Reading {
        self.zip(other, u64::saturating_add)
    }
}

/// The last complete stats period of one (database, user): what changed, over how long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    pub change: Reading,
    pub length: Duration,
}

/// PgBouncer's `avg_*` over one period: counts and bytes per second; transaction and query
/// times (µs) per transaction and per query; wait time (µs) per server assignment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Averages {
    pub assignments: u64,
    pub transactions: u64,
    pub queries: u64,
    pub received: u64,
    pub sent: u64,
    pub transaction_us: u64,
    pub query_us: u64,
    pub wait_us: u64,
    pub client_parses: u64,
    pub server_parses: u64,
    pub binds: u64,
}

impl Averages {
    pub fn of(p: Period) -> Averages {
        let us = p.length.as_micros();
        if us == 0 {
            return Averages::default();
        }
        let per_second = |n: u64| u64::try_from(u128::from(n) * 1_000_000 / us).unwrap_or(u64::MAX);
        let each = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
        let d = p.change;
        Averages {
            assignments: per_second(d.assignments),
            transactions: per_second(d.transactions),
            queries: per_second(d.queries),
            received: per_second(d.received),
            sent: per_second(d.sent),
            transaction_us: each(d.transaction_us, d.transactions),
            query_us: each(d.query_us, d.queries),
            wait_us: each(d.wait_us, d.assignments),
            client_parses: per_second(d.client_parses),
            server_parses: per_second(d.server_parses),
            binds: per_second(d.binds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_subtracts_the_previous_one() {
        let before = Reading {
            transactions: 10,
            queries: 20,
            ..Reading::default()
        };
        let now = Reading {
            transactions: 15,
            queries: 30,
            wait_us: 7,
            ..Reading::default()
        };
        let d = now.since(before);
        assert_eq!((d.transactions, d.queries, d.wait_us), (5, 10, 7));
        assert_eq!(before.since(now), Reading::default(), "never negative");
        assert_eq!(d.plus(before).transactions, 15);
    }

    #[test]
    fn averages_are_rates_per_second_and_times_per_event_as_pgbouncer_has_them() {
        let change = Reading {
            assignments: 40,
            transactions: 30,
            queries: 90,
            received: 6_000,
            sent: 12_000,
            transaction_us: 30 * 1_500,
            query_us: 90 * 400,
            wait_us: 40 * 250,
            client_parses: 3,
            server_parses: 6,
            binds: 60,
        };
        let a = Averages::of(Period {
            change,
            length: Duration::from_secs(3),
        });
        let want = Averages {
            assignments: 13,
            transactions: 10,
            queries: 30,
            received: 2_000,
            sent: 4_000,
            transaction_us: 1_500,
            query_us: 400,
            wait_us: 250,
            client_parses: 1,
            server_parses: 2,
            binds: 20,
        };
        assert_eq!(a, want);
    }

    #[test]
    fn an_empty_or_zero_length_period_averages_to_zero() {
        let nothing = Period {
            change: Reading::default(),
            length: Duration::from_secs(60),
        };
        assert_eq!(Averages::of(nothing), Averages::default());
        let instant = Period {
            change: Reading {
                transactions: 5,
                ..Reading::default()
            },
            length: Duration::ZERO,
        };
        assert_eq!(Averages::of(instant), Averages::default());
    }
}

//! The stats line: every `stats_period`, one log line per (database, user) that did
//! anything, with rates and averages over the period, as PgBouncer logs them. Reads the
//! [`super::GroupStats`] totals and remembers the previous reading.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::GroupStats;
use crate::app::App;

/// The totals at one reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reading {
    transactions: u64,
    queries: u64,
    received: u64,
    sent: u64,
    transaction_us: u64,
    query_us: u64,
    wait_us: u64,
    assignments: u64,
}

impl Reading {
    fn of(s: &GroupStats) -> Reading {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Reading {
            transactions: get(&s.transactions),
            queries: get(&s.queries),
            received: get(&s.received),
            sent: get(&s.sent),
            transaction_us: get(&s.transaction_us),
            query_us: get(&s.query_us),
            wait_us: get(&s.wait_us),
            assignments: get(&s.assignments),
        }
    }

    fn since(self, before: Reading) -> Reading {
        Reading {
            transactions: self.transactions.saturating_sub(before.transactions),
            queries: self.queries.saturating_sub(before.queries),
            received: self.received.saturating_sub(before.received),
            sent: self.sent.saturating_sub(before.sent),
            transaction_us: self.transaction_us.saturating_sub(before.transaction_us),
            query_us: self.query_us.saturating_sub(before.query_us),
            wait_us: self.wait_us.saturating_sub(before.wait_us),
            assignments: self.assignments.saturating_sub(before.assignments),
        }
    }
}

/// Logs the stats line every `period` until the process ends.
pub async fn log_every(app: Arc<App>, period: Duration) {
    let mut previous: HashMap<(String, String), Reading> = HashMap::new();
    let mut every = tokio::time::interval(period);
    every.tick().await;
    loop {
        every.tick().await;
        for group in app.pools.groups() {
            let s = &group.stats;
            let now = Reading::of(s);
            let key = (s.database.clone(), s.user.clone());
            let delta = now.since(previous.insert(key, now).unwrap_or_default());
            if delta != Reading::default() {
                log_line(s, delta, period);
            }
        }
    }
}

fn log_line(s: &GroupStats, d: Reading, period: Duration) {
    let secs = period.as_secs_f64().max(0.001);
    let per = |n: u64| (n as f64 / secs).round() as u64;
    let avg = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
    tracing::info!(
        database = %s.database,
        user = %s.user,
        xacts_per_sec = per(d.transactions),
        queries_per_sec = per(d.queries),
        in_bytes_per_sec = per(d.received),
        out_bytes_per_sec = per(d.sent),
        avg_xact_us = avg(d.transaction_us, d.transactions),
        avg_query_us = avg(d.query_us, d.queries),
        avg_wait_us = avg(d.wait_us, d.assignments),
        "stats"
    );
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
    }
}

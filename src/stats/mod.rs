//! What pgweir counts about its work, for the Prometheus endpoint ([`crate::report`]) and the
//! admin console's SHOW commands: per (database, user) totals kept in atomics
//! ([`GroupStats`], updated by the relay once per request and transaction, with the change
//! over the last `stats_period` that [`period`] closes) and latency histograms recorded
//! through the `metrics` crate. Gauges such as servers and clients by state are not kept
//! here: they are read from the pools and the client registry when someone asks.
//!
//! The hot path costs a few relaxed atomic additions and three histogram samples per
//! transaction; without `metrics_addr` no recorder is installed and the histogram handles
//! do nothing.

pub mod catalog;
pub mod period;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::Histogram;
use parking_lot::Mutex;

use crate::config::Histograms;
use crate::prepared::CacheCounts;
use crate::protocol::TxStatus;

pub use period::{Averages, Period, Reading};

/// Totals for one (database, user) pair since start, as PgBouncer's SHOW STATS has them.
#[derive(Debug)]
pub struct GroupStats {
    pub database: String,
    pub user: String,
    /// Times a client was given a server.
    pub assignments: AtomicU64,
    pub transactions: AtomicU64,
    pub queries: AtomicU64,
    /// Bytes from clients.
    pub received: AtomicU64,
    /// Bytes to clients.
    pub sent: AtomicU64,
    pub transaction_us: AtomicU64,
    pub query_us: AtomicU64,
    pub wait_us: AtomicU64,
    /// Statements found on (or prepared first on) the server a client used.
    pub prepared: CacheCounts,
    /// The totals when the current stats period began, and the last complete period.
    period: Mutex<(Reading, Period)>,
    wait: Histogram,
    transaction: Histogram,
    query: Histogram,
}

impl GroupStats {
    /// The totals of a new (database, user) pair, its histograms labelled as `histograms`
    /// says, and its counters started at 0 ([`catalog::zero_pool`]).
    pub fn new(database: &str, user: &str, histograms: Histograms) -> Self {
        catalog::zero_pool(database, user);
        let mut labels = vec![("database", database.to_owned()), ("user", user.to_owned())];
        if histograms == Histograms::Database {
            labels.truncate(1);
        }
        let histogram = |name: &'static str| match histograms {
            Histograms::Off => Histogram::noop(),
            _ => metrics::histogram!(name, &labels),
        };
        GroupStats {
            database: database.to_owned(),
            user: user.to_owned(),
            assignments: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            transaction_us: AtomicU64::new(0),
            query_us: AtomicU64::new(0),
            wait_us: AtomicU64::new(0),
            prepared: CacheCounts::default(),
            period: Mutex::new((Reading::default(), Period::default())),
            wait: histogram("pgweir_wait_seconds"),
            transaction: histogram("pgweir_transaction_seconds"),
            query: histogram("pgweir_query_seconds"),
        }
    }

    /// A client got a server after waiting `waited`.
    pub fn assigned(&self, waited: Duration) {
        self.assignments.fetch_add(1, Ordering::Relaxed);
        self.wait_us.fetch_add(micros(waited), Ordering::Relaxed);
        self.wait.record(waited.as_secs_f64());
    }

    /// Bytes moved on one link: `received` from the client, `sent` to it.
    pub fn traffic(&self, received: u64, sent: u64) {
        self.received.fetch_add(received, Ordering::Relaxed);
        self.sent.fetch_add(sent, Ordering::Relaxed);
    }

    fn query_done(&self, took: Duration) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.query_us.fetch_add(micros(took), Ordering::Relaxed);
        self.query.record(took.as_secs_f64());
    }

    fn transaction_done(&self, took: Duration) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.transaction_us
            .fetch_add(micros(took), Ordering::Relaxed);
        self.transaction.record(took.as_secs_f64());
    }
}

impl GroupStats {
    /// Ends the current stats period, `length` long, and returns what changed in it.
    pub fn close_period(&self, length: Duration) -> Period {
        let now = Reading::of(self);
        let mut period = self.period.lock();
        let change = now.since(period.0);
        *period = (now, Period { change, length });
        period.1
    }

    /// The last complete stats period (empty before the first has ended).
    pub fn last_period(&self) -> Period {
        self.period.lock().1
    }

    /// An ErrorResponse went to a client; `code` is its SQLSTATE.
    pub fn error(&self, code: &[u8]) {
        let class = String::from_utf8_lossy(code.get(..2).unwrap_or(b"??")).into_owned();
        let labels = [
            ("database", self.database.clone()),
            ("user", self.user.clone()),
            ("class", class),
        ];
        metrics::counter!("pgweir_errors_total", &labels).increment(1);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Times the requests of one link: each Query, Sync or FunctionCall is a query, timed
/// until its ReadyForQuery; a transaction runs from its first query until a ReadyForQuery
/// says the server is idle again.
#[derive(Debug, Default)]
pub struct Clock {
    /// When each request still owed a ReadyForQuery was sent, oldest first.
    sent: VecDeque<Instant>,
    /// When the open transaction's first request was sent.
    transaction: Option<Instant>,
}

impl Clock {
    /// A clock with nothing timed that keeps this one's allocation.
    pub fn emptied(mut self) -> Self {
        self.sent.clear();
        self.transaction = None;
        self
    }

    pub fn request_sent(&mut self, now: Instant) {
        self.transaction.get_or_insert(now);
        self.sent.push_back(now);
    }

    /// A ReadyForQuery with `status` arrived at `now`.
    pub fn ready(&mut self, status: TxStatus, now: Instant, stats: &GroupStats) {
        if let Some(sent) = self.sent.pop_front() {
            stats.query_done(now.saturating_duration_since(sent));
        }
        if status == TxStatus::Idle {
            if let Some(began) = self.transaction.take() {
                stats.transaction_done(now.saturating_duration_since(began));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_spans_its_queries_and_each_query_is_timed() {
        let stats = GroupStats::new("db", "u", Histograms::Pool);
        let mut clock = Clock::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        clock.request_sent(t0);
        clock.ready(TxStatus::InTransaction, t0 + ms(2), &stats);
        clock.request_sent(t0 + ms(3));
        clock.request_sent(t0 + ms(4));
        clock.ready(TxStatus::InTransaction, t0 + ms(5), &stats);
        clock.ready(TxStatus::Idle, t0 + ms(10), &stats);
        assert_eq!(stats.queries.load(Ordering::Relaxed), 3);
        assert_eq!(
            stats.query_us.load(Ordering::Relaxed),
            2_000 + 2_000 + 6_000
        );
        assert_eq!(stats.transactions.load(Ordering::Relaxed), 1);
        assert_eq!(stats.transaction_us.load(Ordering::Relaxed), 10_000);
    }

    #[test]
    fn a_period_holds_what_changed_since_the_last_one() {
        let stats = GroupStats::new("db", "u", Histograms::Pool);
        let minute = Duration::from_secs(60);
        stats.transactions.store(5, Ordering::Relaxed);
        assert_eq!(stats.close_period(minute).change.transactions, 5);
        stats.transactions.store(7, Ordering::Relaxed);
        let p = stats.close_period(minute);
        assert_eq!((p.change.transactions, p.length), (2, minute));
        assert_eq!(stats.last_period(), p);
    }

    #[test]
    fn an_unasked_ready_for_query_counts_nothing() {
        let stats = GroupStats::new("db", "u", Histograms::Pool);
        Clock::default().ready(TxStatus::Idle, Instant::now(), &stats);
        assert_eq!(stats.queries.load(Ordering::Relaxed), 0);
        assert_eq!(stats.transactions.load(Ordering::Relaxed), 0);
    }
}

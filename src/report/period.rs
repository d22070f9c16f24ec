//! The stats period's log lines: every `stats_period`, each (database, user)'s period is
//! closed ([`crate::stats::period`]) and one line per pair that did anything is logged, with
//! rates and averages as PgBouncer logs them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::stats::{Averages, GroupStats, Reading};

/// Closes a period every `period` until the process ends.
pub async fn log_every(app: Arc<App>, period: Duration) {
    let mut every = tokio::time::interval(period);
    every.tick().await;
    let mut began = Instant::now();
    loop {
        every.tick().await;
        let length = began.elapsed();
        began = Instant::now();
        for s in app.pools.group_stats() {
            let p = s.close_period(length);
            if p.change != Reading::default() {
                log_line(&s, Averages::of(p));
            }
        }
    }
}

fn log_line(s: &GroupStats, a: Averages) {
    tracing::info!(
        database = %s.database,
        user = %s.user,
        xacts_per_sec = a.transactions,
        queries_per_sec = a.queries,
        in_bytes_per_sec = a.received,
        out_bytes_per_sec = a.sent,
        avg_xact_us = a.transaction_us,
        avg_query_us = a.query_us,
        avg_wait_us = a.wait_us,
        "stats"
    );
}

//! The replica monitor of one database: background tasks that sample the primary's WAL insert
//! position and each replica's replay position every `replica_check_interval`, over one
//! dedicated connection per node ([`crate::server::login::connect`]), and feed
//! [`Freshness`]. The relay asks [`Monitor`] which replicas a client may read from and bans
//! the ones that fail it.
//!
//! Thin on purpose: every decision lives in [`Freshness`], which is tested without sockets;
//! here are only the queries, the parsing of their text answers, and the logging.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thiserror::Error;
use tokio::time::MissedTickBehavior;

use super::freshness::{Freshness, FreshnessSettings};
use super::lsn::Lsn;
use crate::server::login::connect;
use crate::server::{InternalRows, ServerConn, ServerError, ServerTarget};

/// Read before the query is sent, so its answer covers every commit completed by then.
const PRIMARY_SQL: &str = "SELECT pg_current_wal_insert_lsn()";
/// `pg_is_in_recovery()` is false on a promoted replica, which must not be read from as if
/// it followed the primary.
const REPLICA_SQL: &str = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()";
/// The shortest tick, so a zero interval cannot spin (or make tokio panic).
const MIN_INTERVAL: Duration = Duration::from_millis(1);
/// The least time a check may take, and the least age at which a sample is stale.
const MIN_PATIENCE: Duration = Duration::from_secs(1);

/// How the monitor samples and what [`Freshness`] then allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorSettings {
    /// Time between checks of each node (`replica_check_interval`).
    pub interval: Duration,
    /// For opening a monitoring connection (`server_connect_timeout`).
    pub connect_timeout: Duration,
    pub freshness: FreshnessSettings,
}

impl MonitorSettings {
    /// Settings whose `max_sample_age` is [`patience`]`(interval)`: a replica that has not
    /// answered within the time its check may take is no longer known to be fresh.
    pub fn new(
        interval: Duration,
        connect_timeout: Duration,
        max_lag: Duration,
        ban_time: Duration,
    ) -> Self {
        MonitorSettings {
            interval,
            connect_timeout,
            freshness: FreshnessSettings {
                max_lag,
                ban_time,
                max_sample_age: patience(interval),
            },
        }
    }
}

/// How long a check may take: five intervals, and at least a second so a short interval
/// does not turn a busy server's slower answer into a ban.
pub fn patience(interval: Duration) -> Duration {
    interval.saturating_mul(5).max(MIN_PATIENCE)
}

/// What one database's monitor knows about its nodes.
#[derive(Debug)]
pub struct Monitor {
    freshness: Mutex<Freshness>,
    /// `host:port` of each replica, for logs and metrics.
    replicas: Vec<String>,
    /// Bans of each replica since start.
    bans: Vec<AtomicU64>,
}

impl Monitor {
    /// Starts monitoring: one task for the primary and one per replica, so a slow node
    /// delays no other. The tasks hold only a [`Weak`] reference and end (closing their
    /// connections) once the returned monitor is dropped.
    pub fn spawn(
        primary: ServerTarget,
        replicas: Vec<ServerTarget>,
        settings: MonitorSettings,
    ) -> Arc<Monitor> {
        let monitor = Arc::new(Monitor {
            freshness: Mutex::new(Freshness::new(replicas.len(), settings.freshness)),
            replicas: replicas.iter().map(address).collect(),
            bans: replicas.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        let timing = Timing::new(&settings);
        tokio::spawn(watch_primary(
            Arc::downgrade(&monitor),
            Node::new(primary),
            timing,
        ));
        for (r, target) in replicas.into_iter().enumerate() {
            let node = Node::new(target);
            tokio::spawn(watch_replica(Arc::downgrade(&monitor), r, node, timing));
        }
        monitor
    }

    /// Whether replica `r` may serve a client now; `wrote_at` is when the client's last
    /// write completed, if it must read it back.
    pub fn usable(&self, r: usize, wrote_at: Option<Instant>) -> bool {
        let now = Instant::now();
        self.freshness.lock().usable(r, now, wrote_at)
    }

    /// The relay could not connect to or read from replica `r`: no reads for ban_time.
    pub fn ban(&self, r: usize) {
        let began = self.freshness.lock().ban(r, Instant::now());
        if began {
            self.count_ban(r);
            tracing::warn!(
                replica = self.name(r),
                "replica banned: a client's connect or read failed"
            );
        }
    }

    /// How far replica `r` was behind at its last check; None when unknown.
    pub fn lag(&self, r: usize) -> Option<Duration> {
        self.freshness.lock().lag(r)
    }

    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Whether replica `r` is serving a ban now.
    pub fn banned(&self, r: usize) -> bool {
        self.freshness.lock().banned(r, Instant::now())
    }

    /// How many times replica `r` has been banned since start.
    pub fn bans(&self, r: usize) -> u64 {
        self.bans.get(r).map_or(0, |b| b.load(Ordering::Relaxed))
    }

    /// Replica `r`'s `host:port`.
    pub fn name(&self, r: usize) -> &str {
        self.replicas.get(r).map_or("?", String::as_str)
    }

    fn count_ban(&self, r: usize) {
        if let Some(b) = self.bans.get(r) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the outcome of a check of replica `r` answered (or failed) at `received`.
    fn replica_checked(&self, r: usize, received: Instant, outcome: Result<Lsn, CheckError>) {
        let replica = self.name(r);
        match outcome {
            Ok(replay) => {
                if self.freshness.lock().replica_sampled(r, received, replay) {
                    tracing::info!(replica, "replica answers again after its ban");
                }
            }
            Err(error) => {
                if self.freshness.lock().replica_failed(r, received) {
                    self.count_ban(r);
                    tracing::warn!(replica, %error, "replica banned: its check failed");
                }
            }
        }
    }
}

fn address(target: &ServerTarget) -> String {
    target.address()
}

/// Why a check gave no sample.
#[derive(Debug, Error)]
enum CheckError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the server is not in recovery: it was promoted")]
    Promoted,
    #[error("unexpected answer {0}")]
    Answer(String),
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    interval: Duration,
    connect_timeout: Duration,
    query_timeout: Duration,
}

impl Timing {
    fn new(settings: &MonitorSettings) -> Self {
        Timing {
            interval: settings.interval.max(MIN_INTERVAL),
            connect_timeout: settings.connect_timeout,
            query_timeout: patience(settings.interval),
        }
    }

    fn ticker(&self) -> tokio::time::Interval {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    }
}

/// A monitored server and its connection, opened on first use and after any failure.
struct Node {
    target: ServerTarget,
    conn: Option<ServerConn>,
}

impl Node {
    fn new(target: ServerTarget) -> Self {
        Node { target, conn: None }
    }

    /// Runs `sql` and reads its answer with `read`. The connection is kept only when both
    /// succeeded, so whatever went wrong (lost socket, timeout mid-answer, server error, an
    /// answer that makes no sense) the next check starts on a fresh one.
    async fn check<T>(
        &mut self,
        sql: &str,
        read: fn(&InternalRows) -> Result<T, CheckError>,
        timing: &Timing,
    ) -> Result<T, CheckError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => connect(&self.target, timing.connect_timeout).await?,
        };
        let answer = tokio::time::timeout(timing.query_timeout, conn.query_rows(sql))
            .await
            .map_err(|_| CheckError::Timeout(timing.query_timeout))??;
        let value = read(&answer)?;
        self.conn = Some(conn);
        Ok(value)
    }
}

/// Samples the primary each tick. A failure bans nothing (the relay has nowhere else to
/// write); it is reported when it starts and when it ends, and retried next tick.
async fn watch_primary(monitor: Weak<Monitor>, mut node: Node, timing: Timing) {
    let mut ticks = timing.ticker();
    let mut failing = false;
    loop {
        ticks.tick().await;
        if monitor.strong_count() == 0 {
            return;
        }
        let sent = Instant::now();
        let outcome = node.check(PRIMARY_SQL, primary_lsn, &timing).await;
        let Some(monitor) = monitor.upgrade() else {
            return;
        };
        let primary = address(&node.target);
        match outcome {
            Ok(lsn) => {
                monitor.freshness.lock().primary_sampled(sent, lsn);
                if std::mem::take(&mut failing) {
                    tracing::info!(primary, "replica monitor reads the primary again");
                }
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(primary, %error, "replica monitor cannot read the primary's WAL position");
            }
            Err(error) => tracing::debug!(primary, %error, "primary check failed again"),
        }
    }
}

/// Checks replica `r` each tick unless it is banned (the first check after a ban decides
/// whether it comes back).
async fn watch_replica(monitor: Weak<Monitor>, r: usize, mut node: Node, timing: Timing) {
    let mut ticks = timing.ticker();
    loop {
        ticks.tick().await;
        let Some(strong) = monitor.upgrade() else {
            return;
        };
        let banned = strong.freshness.lock().banned(r, Instant::now());
        drop(strong);
        if banned {
            continue;
        }
        let outcome = node.check(REPLICA_SQL, replica_replay, &timing).await;
        let Some(strong) = monitor.upgrade() else {
            return;
        };
        strong.replica_checked(r, Instant::now(), outcome);
    }
}

/// The one row a check's answer must have.
fn only_row(answer: &InternalRows) -> Result<&[Option<String>], CheckError> {
    match answer.rows.as_slice() {
        [row] => Ok(row),
        rows => Err(CheckError::Answer(format!("{} rows", rows.len()))),
    }
}

fn lsn_value(value: &Option<String>) -> Result<Lsn, CheckError> {
    value
        .as_deref()
        .and_then(Lsn::parse)
        .ok_or_else(|| CheckError::Answer(format!("{value:?} for a WAL position")))
}

/// The primary's insert position from the answer to [`PRIMARY_SQL`].
fn primary_lsn(answer: &InternalRows) -> Result<Lsn, CheckError> {
    match only_row(answer)? {
        [lsn] => lsn_value(lsn),
        row => Err(CheckError::Answer(format!("{row:?}"))),
    }
}

/// The replay position from the answer to [`REPLICA_SQL`], if the server is still a replica.
fn replica_replay(answer: &InternalRows) -> Result<Lsn, CheckError> {
    match only_row(answer)? {
        [Some(recovering), replay] if recovering == "t" => lsn_value(replay),
        [Some(recovering), _] if recovering == "f" => Err(CheckError::Promoted),
        row => Err(CheckError::Answer(format!("{row:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(rows: &[&[Option<&str>]]) -> InternalRows {
        InternalRows {
            rows: rows
                .iter()
                .map(|row| row.iter().map(|v| v.map(str::to_owned)).collect())
                .collect(),
            ..InternalRows::default()
        }
    }

    #[test]
    fn reads_the_primary_position() {
        let lsn = primary_lsn(&answer(&[&[Some("16/B374D848")]])).expect("parsed");
        assert_eq!(lsn, Lsn(0x16_B374_D848));
    }

    #[test]
    fn odd_primary_answers_are_errors() {
        let odd: [&[&[Option<&str>]]; 5] = [
            &[],
            &[&[None]],
            &[&[Some("nonsense")]],
            &[&[Some("0/1")], &[Some("0/2")]],
            &[&[Some("0/1"), Some("0/2")]],
        ];
        for rows in odd {
            let result = primary_lsn(&answer(rows));
            assert!(matches!(result, Err(CheckError::Answer(_))), "{rows:?}");
        }
    }

    #[test]
    fn reads_the_replay_position_of_a_replica() {
        let lsn = replica_replay(&answer(&[&[Some("t"), Some("0/3000060")]])).expect("parsed");
        assert_eq!(lsn, Lsn(0x300_0060));
    }

    #[test]
    fn a_promoted_replica_is_refused() {
        let result = replica_replay(&answer(&[&[Some("f"), Some("0/3000060")]]));
        assert!(matches!(result, Err(CheckError::Promoted)));
        let never_replayed = replica_replay(&answer(&[&[Some("f"), None]]));
        assert!(matches!(never_replayed, Err(CheckError::Promoted)));
    }

    #[test]
    fn odd_replica_answers_are_errors() {
        let odd: [&[&[Option<&str>]]; 5] = [
            &[],
            &[&[Some("t"), None]],
            &[&[Some("yes"), Some("0/1")]],
            &[&[None, Some("0/1")]],
            &[&[Some("t")]],
        ];
        for rows in odd {
            let result = replica_replay(&answer(rows));
            assert!(matches!(result, Err(CheckError::Answer(_))), "{rows:?}");
        }
    }

    #[test]
    fn patience_is_five_intervals_and_at_least_a_second() {
        assert_eq!(patience(Duration::from_millis(100)), Duration::from_secs(1));
        assert_eq!(patience(Duration::from_secs(2)), Duration::from_secs(10));
        assert_eq!(patience(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(patience(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn settings_derive_the_sample_age_from_the_interval() {
        let s = MonitorSettings::new(
            Duration::from_millis(400),
            Duration::from_secs(5),
            Duration::from_secs(1),
            Duration::from_secs(30),
        );
        assert_eq!(s.freshness.max_sample_age, Duration::from_secs(2));
        assert_eq!(s.freshness.max_lag, Duration::from_secs(1));
    }
}

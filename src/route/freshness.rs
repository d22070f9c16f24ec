//! What the monitor knows about each node, and the answers the relay asks of it: [`Freshness`]
//! keeps the primary's recent insert positions and each replica's last replay position and
//! ban, and decides from them whether a replica may serve a client ([`Freshness::usable`]).
//!
//! No I/O and no clock: [`super::monitor`] feeds it samples stamped with the [`Instant`]s it
//! took, and every question names the time it is asked at, so all of it is tested with
//! synthetic instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::lsn::{replayed, Lsn};

/// How long the primary's samples are kept at least, beyond `max_lag`: a replica further
/// behind than what is kept gets a lower bound of its lag, which must still exceed max_lag.
const MIN_HISTORY: Duration = Duration::from_secs(10);
const HISTORY_MARGIN: Duration = Duration::from_secs(1);
/// A bound on the primary's samples whatever max_lag says (about 1.8 hours at the default
/// 100 ms interval), so an enormous max_lag cannot grow the history without end.
const MAX_SAMPLES: usize = 1 << 16;

/// The limits [`Freshness`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessSettings {
    /// The most a replica may lag to serve reads; zero means no limit.
    pub max_lag: Duration,
    /// How long a failing replica gets no reads before it is checked again.
    pub ban_time: Duration,
    /// A replica sample older than this says nothing about the replica now: the monitor has
    /// lost touch with it, so it gets no reads.
    pub max_sample_age: Duration,
}

/// The primary's insert position, read by a query sent at `sent`.
#[derive(Debug, Clone, Copy)]
struct PrimarySample {
    sent: Instant,
    lsn: Lsn,
}

/// A replica's replay position, read by a query answered at `received`.
#[derive(Debug, Clone, Copy)]
struct ReplicaSample {
    received: Instant,
    replay: Lsn,
}

#[derive(Debug, Clone, Copy, Default)]
struct ReplicaState {
    sample: Option<ReplicaSample>,
    /// When the current (or last) ban began; cleared by the first sample after it ends.
    banned_at: Option<Instant>,
}

/// The primary's recent WAL positions and each replica's last known state.
#[derive(Debug, Clone)]
pub struct Freshness {
    settings: FreshnessSettings,
    /// Ordered by `sent` and by `lsn`, oldest first.
    primary: VecDeque<PrimarySample>,
    replicas: Vec<ReplicaState>,
}

impl Freshness {
    pub fn new(replicas: usize, settings: FreshnessSettings) -> Self {
        Freshness {
            settings,
            primary: VecDeque::new(),
            replicas: vec![ReplicaState::default(); replicas],
        }
    }

    /// Records the primary's insert position `lsn`, read by a query sent at `sent` (taken
    /// before sending, so any commit that completed before `sent` is at or below `lsn`).
    ///
    /// A position below the last one, or a sample sent before the last one, is ignored: the
    /// history must stay ordered for [`Freshness::lag`] and for read-your-writes, and a
    /// stale answer adds nothing to a newer one.
    pub fn primary_sampled(&mut self, sent: Instant, lsn: Lsn) {
        if let Some(last) = self.primary.back() {
            if lsn < last.lsn || sent < last.sent {
                return;
            }
        }
        self.primary.push_back(PrimarySample { sent, lsn });
        self.trim(sent);
    }

    /// Drops samples the history no longer needs, keeping one at or before `newest -
    /// history` so the kept samples always cover that whole span.
    fn trim(&mut self, newest: Instant) {
        let history = self
            .settings
            .max_lag
            .max(MIN_HISTORY)
            .saturating_add(HISTORY_MARGIN);
        while let Some(second) = self.primary.get(1) {
            let covered = newest.saturating_duration_since(second.sent) >= history;
            if !covered && self.primary.len() <= MAX_SAMPLES {
                break;
            }
            self.primary.pop_front();
        }
    }

    /// Records replica `r`'s replay position, read by a query answered at `received`.
    /// Returns true when this ends a ban: the replica is back in rotation.
    ///
    /// A sample taken while `r` is banned is ignored, since the ban said not to trust it
    /// until the ban ends (the relay may ban a replica while the monitor's check of it is
    /// under way).
    pub fn replica_sampled(&mut self, r: usize, received: Instant, replay: Lsn) -> bool {
        let ban_time = self.settings.ban_time;
        let Some(state) = self.replicas.get_mut(r) else {
            return false;
        };
        if is_banned(state, ban_time, received) {
            return false;
        }
        state.sample = Some(ReplicaSample { received, replay });
        state.banned_at.take().is_some()
    }

    /// Replica `r` failed a connect or a check: no reads for `ban_time` from `now`, and its
    /// sample is forgotten so it must answer again before it serves anyone. Returns true
    /// when this starts a ban (it was not banned at `now`), so a ban is reported once.
    pub fn replica_failed(&mut self, r: usize, now: Instant) -> bool {
        let ban_time = self.settings.ban_time;
        let Some(state) = self.replicas.get_mut(r) else {
            return false;
        };
        let new_ban = !is_banned(state, ban_time, now);
        state.banned_at = Some(now);
        state.sample = None;
        new_ban
    }

    /// The relay could not use replica `r` (connect or read failed): as
    /// [`Freshness::replica_failed`].
    pub fn ban(&mut self, r: usize, now: Instant) -> bool {
        self.replica_failed(r, now)
    }

    /// Whether replica `r` is serving a ban at `now`. An unknown replica counts as banned.
    pub fn banned(&self, r: usize, now: Instant) -> bool {
        self.replicas
            .get(r)
            .is_none_or(|state| is_banned(state, self.settings.ban_time, now))
    }

    /// How far replica `r` was behind the primary when last sampled: the time from the
    /// sending of the earliest primary sample it had not replayed to the replica's answer;
    /// zero when it had replayed them all. None without a sample of both.
    ///
    /// The history is ordered by lsn and [`replayed`] holds for a prefix of it (a position
    /// inside a page header, where it would not, is never an insert position), so the
    /// earliest unreplayed sample is found by bisection. A replica behind the whole history
    /// gets the oldest sample: a lower bound, and more than max_lag anyway.
    pub fn lag(&self, r: usize) -> Option<Duration> {
        let sample = self.replicas.get(r)?.sample?;
        if self.primary.is_empty() {
            return None;
        }
        let caught_up = self
            .primary
            .partition_point(|p| replayed(sample.replay, p.lsn));
        Some(match self.primary.get(caught_up) {
            Some(behind) => sample.received.saturating_duration_since(behind.sent),
            None => Duration::ZERO,
        })
    }

    /// Whether replica `r` may serve a client at `now`: not banned, sampled recently, within
    /// max_lag, and, when the client's last write completed at `wrote_at`, known to have
    /// replayed it: the first primary sample sent after the write covers the write, so the
    /// replica must have replayed that sample's position. Until such a sample exists the
    /// write cannot be located, so the replica is not usable.
    pub fn usable(&self, r: usize, now: Instant, wrote_at: Option<Instant>) -> bool {
        let Some(state) = self.replicas.get(r) else {
            return false;
        };
        let Some(sample) = state.sample else {
            return false;
        };
        let settings = &self.settings;
        let fresh = now.saturating_duration_since(sample.received) <= settings.max_sample_age;
        let close_enough =
            settings.max_lag.is_zero() || self.lag(r).is_some_and(|lag| lag <= settings.max_lag);
        let has_writes = wrote_at.is_none_or(|w| self.covers(sample.replay, w));
        !is_banned(state, settings.ban_time, now) && fresh && close_enough && has_writes
    }

    /// Whether a replica that replayed up to `replay` has a write that completed at `wrote_at`.
    fn covers(&self, replay: Lsn, wrote_at: Instant) -> bool {
        let first_after = self.primary.partition_point(|p| p.sent <= wrote_at);
        self.primary
            .get(first_after)
            .is_some_and(|p| replayed(replay, p.lsn))
    }
}

/// Whether a ban began and has not yet run `ban_time` at `now`. Measured from its start so no
/// ban_time, however large, overflows an [`Instant`].
fn is_banned(state: &ReplicaState, ban_time: Duration, now: Instant) -> bool {
    state
        .banned_at
        .is_some_and(|at| now.saturating_duration_since(at) < ban_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn settings() -> FreshnessSettings {
        FreshnessSettings {
            max_lag: SECOND,
            ban_time: Duration::from_secs(30),
            max_sample_age: SECOND,
        }
    }

    /// Synthetic instants: `t(ms)` is `ms` milliseconds after a fixed origin.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Self {
            Clock(Instant::now())
        }

        fn t(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// One replica; the primary sampled every 100 ms from 0 with lsn 1000, 2000, ...
    fn with_history(clock: &Clock, samples: u64) -> Freshness {
        let mut f = Freshness::new(1, settings());
        for i in 0..samples {
            f.primary_sampled(clock.t(i * 100), Lsn((i + 1) * 1000));
        }
        f
    }

    #[test]
    fn no_lag_without_both_samples() {
        let c = Clock::new();
        let mut f = Freshness::new(1, settings());
        assert_eq!(f.lag(0), None);
        f.replica_sampled(0, c.t(10), Lsn(5));
        assert_eq!(f.lag(0), None, "no primary sample");
        let mut g = with_history(&c, 3);
        assert_eq!(g.lag(0), None, "no replica sample");
        g.replica_sampled(0, c.t(250), Lsn(3000));
        assert_eq!(g.lag(0), Some(Duration::ZERO));
    }

    #[test]
    fn lag_runs_from_the_earliest_unreplayed_sample() {
        let c = Clock::new();
        let mut f = with_history(&c, 5); // sent 0..400, lsn 1000..5000
        f.replica_sampled(0, c.t(450), Lsn(2500));
        // 1000 and 2000 replayed; 3000 (sent at 200) is the first missing.
        assert_eq!(f.lag(0), Some(ms(250)));
        f.replica_sampled(0, c.t(460), Lsn(5000));
        assert_eq!(f.lag(0), Some(Duration::ZERO));
    }

    #[test]
    fn lag_behind_the_whole_history_uses_the_oldest_sample() {
        let c = Clock::new();
        let mut f = with_history(&c, 5);
        f.replica_sampled(0, c.t(700), Lsn(10));
        assert_eq!(f.lag(0), Some(ms(700)));
    }

    #[test]
    fn lag_saturates_when_the_replica_answered_before_the_sample_was_sent() {
        let c = Clock::new();
        let mut f = Freshness::new(1, settings());
        f.primary_sampled(c.t(100), Lsn(2000));
        f.replica_sampled(0, c.t(50), Lsn(1000));
        assert_eq!(f.lag(0), Some(Duration::ZERO));
    }

    #[test]
    fn lag_applies_the_page_boundary_rule() {
        let c = Clock::new();
        let boundary = 7 * 8192;
        let mut f = Freshness::new(1, settings());
        f.primary_sampled(c.t(0), Lsn(boundary + 24));
        f.replica_sampled(0, c.t(500), Lsn(boundary));
        assert_eq!(f.lag(0), Some(Duration::ZERO));
        assert!(f.usable(0, c.t(500), Some(c.t(0) - ms(1))));
        f.replica_sampled(0, c.t(600), Lsn(boundary - 8));
        assert_eq!(f.lag(0), Some(ms(600)));
    }

    #[test]
    fn usable_when_fresh_and_close() {
        let c = Clock::new();
        let mut f = with_history(&c, 5);
        f.replica_sampled(0, c.t(450), Lsn(4000));
        assert!(f.usable(0, c.t(460), None));
        assert!(
            f.usable(0, c.t(1450), None),
            "sample exactly max_sample_age old"
        );
    }

    #[test]
    fn a_stale_sample_is_not_usable() {
        let c = Clock::new();
        let mut f = with_history(&c, 5);
        f.replica_sampled(0, c.t(450), Lsn(5000));
        assert!(!f.usable(0, c.t(1451), None));
    }

    #[test]
    fn too_much_lag_is_not_usable_unless_lag_is_unlimited() {
        let c = Clock::new();
        let mut f = with_history(&c, 30); // sent 0..2900
        f.replica_sampled(0, c.t(2950), Lsn(1500)); // behind since the sample at 100
        assert_eq!(f.lag(0), Some(ms(2850)));
        assert!(!f.usable(0, c.t(2950), None));

        let mut unlimited = f.clone();
        unlimited.settings.max_lag = Duration::ZERO;
        assert!(unlimited.usable(0, c.t(2950), None));
    }

    #[test]
    fn lag_limit_needs_a_primary_sample_but_no_limit_does_not() {
        let c = Clock::new();
        let mut f = Freshness::new(1, settings());
        f.replica_sampled(0, c.t(0), Lsn(10));
        assert!(!f.usable(0, c.t(10), None));
        f.settings.max_lag = Duration::ZERO;
        assert!(f.usable(0, c.t(10), None));
    }

    #[test]
    fn a_write_without_a_later_primary_sample_is_not_located() {
        let c = Clock::new();
        let mut f = with_history(&c, 5); // last sample sent at 400
        f.replica_sampled(0, c.t(450), Lsn(u64::MAX));
        assert!(f.usable(0, c.t(450), None));
        assert!(!f.usable(0, c.t(450), Some(c.t(420))));
        assert!(
            !f.usable(0, c.t(450), Some(c.t(400))),
            "a sample sent at the very instant of the write does not count"
        );
    }

    #[test]
    fn a_write_is_visible_once_the_first_sample_after_it_is_replayed() {
        let c = Clock::new();
        let mut f = with_history(&c, 5); // lsn 3000 sent at 200, 4000 at 300
        let wrote = Some(c.t(150));
        f.replica_sampled(0, c.t(450), Lsn(2999));
        assert!(!f.usable(0, c.t(450), wrote));
        f.replica_sampled(0, c.t(460), Lsn(3000));
        assert!(
            f.usable(0, c.t(460), wrote),
            "later samples need not be replayed"
        );
        assert!(!f.usable(0, c.t(460), Some(c.t(250))));
        assert!(f.usable(0, c.t(460), Some(c.t(0) - ms(1))));
    }

    #[test]
    fn a_write_older_than_the_history_uses_the_oldest_sample() {
        let c = Clock::new();
        let mut f = Freshness::new(1, settings());
        for i in 0..200 {
            f.primary_sampled(c.t(i * 100), Lsn((i + 1) * 1000));
        }
        let oldest = f.primary[0];
        assert!(oldest.sent > c.t(0), "the history was trimmed");
        f.replica_sampled(0, c.t(20_000), Lsn(oldest.lsn.0));
        let mut relaxed = f.clone();
        relaxed.settings.max_lag = Duration::ZERO;
        assert!(relaxed.usable(0, c.t(20_000), Some(c.t(0))));
        f.replica_sampled(0, c.t(20_000), Lsn(oldest.lsn.0 - 1));
        relaxed = f.clone();
        relaxed.settings.max_lag = Duration::ZERO;
        assert!(!relaxed.usable(0, c.t(20_000), Some(c.t(0))));
    }

    #[test]
    fn primary_positions_never_go_back() {
        let c = Clock::new();
        let mut f = Freshness::new(1, settings());
        f.primary_sampled(c.t(0), Lsn(2000));
        f.primary_sampled(c.t(100), Lsn(1500));
        assert_eq!(f.primary.len(), 1);
        // The write at 50 has no sample after it: the smaller position was dropped.
        f.replica_sampled(0, c.t(150), Lsn(2000));
        assert!(!f.usable(0, c.t(150), Some(c.t(50))));
        // An equal position is kept: it locates writes on an idle primary.
        f.primary_sampled(c.t(200), Lsn(2000));
        assert!(f.usable(0, c.t(210), Some(c.t(50))));
    }

    #[test]
    fn samples_sent_out_of_order_are_ignored() {
        let c = Clock::new();
        let mut f = Freshness::new(1, settings());
        f.primary_sampled(c.t(100), Lsn(1000));
        f.primary_sampled(c.t(50), Lsn(3000));
        assert_eq!(f.primary.len(), 1);
        assert_eq!(f.primary[0].lsn, Lsn(1000));
    }

    /// The kept history spans at least `history` and drops what is older than needed.
    fn assert_covers(f: &Freshness, history: Duration) {
        let newest = f.primary.back().expect("samples").sent;
        let oldest = f.primary[0].sent;
        let second = f.primary[1].sent;
        assert!(newest.duration_since(oldest) >= history);
        assert!(newest.duration_since(second) < history);
    }

    #[test]
    fn history_covers_max_lag_or_ten_seconds_plus_one() {
        let c = Clock::new();
        let f = with_history(&c, 300); // 30 s of samples
        assert_covers(&f, Duration::from_secs(11));
        assert_eq!(f.primary.len(), 111);

        let mut long = Freshness::new(1, settings());
        long.settings.max_lag = Duration::from_secs(20);
        for i in 0..400 {
            long.primary_sampled(c.t(i * 100), Lsn(i));
        }
        assert_covers(&long, Duration::from_secs(21));
    }

    #[test]
    fn history_is_bounded_whatever_max_lag_says() {
        let c = Clock::new();
        let mut f = Freshness::new(1, settings());
        f.settings.max_lag = Duration::from_secs(1 << 40);
        let n = MAX_SAMPLES as u64 + 10;
        for i in 0..n {
            f.primary_sampled(c.t(i), Lsn(i));
        }
        assert_eq!(f.primary.len(), MAX_SAMPLES);
        assert_eq!(f.primary[0].lsn, Lsn(10));
    }

    #[test]
    fn a_ban_stops_reads_until_the_replica_answers_after_it() {
        let c = Clock::new();
        let mut f = with_history(&c, 5);
        f.replica_sampled(0, c.t(400), Lsn(5000));
        assert!(f.usable(0, c.t(400), None));

        assert!(f.replica_failed(0, c.t(500)), "a new ban");
        assert!(f.banned(0, c.t(500)));
        assert!(!f.usable(0, c.t(500), None));
        assert_eq!(f.lag(0), None, "the sample is forgotten");
        assert!(!f.replica_failed(0, c.t(600)), "already banned");

        // Still banned: the sample is ignored (the ban was extended to 600 + 30 s).
        assert!(!f.replica_sampled(0, c.t(30_500), Lsn(5000)));
        assert!(!f.usable(0, c.t(30_500), None));

        // Expired: not banned, but not usable until it answers.
        assert!(!f.banned(0, c.t(30_600)));
        assert!(!f.usable(0, c.t(30_600), None));
        f.primary_sampled(c.t(30_600), Lsn(6000));
        assert!(f.replica_sampled(0, c.t(30_650), Lsn(6000)), "back");
        assert!(f.usable(0, c.t(30_650), None));
        assert!(!f.replica_sampled(0, c.t(30_750), Lsn(6000)), "only once");
    }

    #[test]
    fn the_relay_bans_like_a_failed_check() {
        let c = Clock::new();
        let mut f = Freshness::new(2, settings());
        f.replica_sampled(0, c.t(0), Lsn(1));
        f.replica_sampled(1, c.t(0), Lsn(1));
        assert!(f.ban(1, c.t(10)));
        assert!(!f.ban(1, c.t(20)));
        assert!(f.banned(1, c.t(10)));
        assert!(!f.banned(0, c.t(10)), "only that replica");
        assert_eq!(f.lag(1), None);
    }

    #[test]
    fn a_huge_ban_time_does_not_overflow() {
        let c = Clock::new();
        let mut f = Freshness::new(1, settings());
        f.settings.ban_time = Duration::MAX;
        assert!(f.ban(0, c.t(0)));
        assert!(f.banned(0, c.t(1 << 40)));
    }

    #[test]
    fn unknown_replicas_are_never_usable_and_never_panic() {
        let c = Clock::new();
        let mut f = with_history(&c, 2);
        assert!(!f.usable(3, c.t(0), None));
        assert!(f.banned(3, c.t(0)));
        assert_eq!(f.lag(3), None);
        assert!(!f.replica_sampled(3, c.t(0), Lsn(1)));
        assert!(!f.replica_failed(3, c.t(0)));
        assert!(!f.ban(usize::MAX, c.t(0)));
    }
}

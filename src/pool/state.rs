//! The bookkeeping of one pool, free of I/O so it can be tested without sockets: idle
//! connections (reused most recently used first), how many are open or opening against the
//! size limits, and the first-come-first-served queue of clients waiting for one.
//!
//! The state never opens or closes anything itself: its answers tell the async layer in
//! [`super`] how many connections to open and which ones to close. Callers hold a short lock
//! around each call and never await inside it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Connections opened at once per pool, so thousands of arriving clients don't become a
/// thundering herd of logins.
pub const MAX_OPENING: usize = 4;

/// What a waiter eventually receives: a connection, or the reason none could be opened.
pub type Delivery<C, E> = Result<C, E>;

/// Sizes the state enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Connections for normal use.
    pub size: usize,
    /// Extra connections for clients that waited longer than reserve_pool_timeout.
    pub reserve: usize,
    /// Connections kept open even when idle.
    pub min: usize,
}

/// Identifies a waiter so it can leave the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WaiterId(u64);

/// The answer to a checkout request.
#[derive(Debug)]
pub enum Checkout<C, E> {
    /// An idle connection, now the caller's, with when it went idle.
    Ready(C, Instant),
    /// Queued. The caller starts `open` connection attempts (they report back through
    /// [`PoolState::opened`] / [`PoolState::open_failed`]) and awaits `rx`.
    Wait {
        id: WaiterId,
        rx: oneshot::Receiver<Delivery<C, E>>,
        open: usize,
    },
    /// Logging in failed recently and nothing is open: fail fast instead of retrying.
    Fail(E),
}

/// What [`PoolState::snapshot`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Servers handed out.
    pub active: usize,
    pub idle: usize,
    pub used: usize,
    /// Servers being opened.
    pub login: usize,
    /// Clients queued.
    pub waiting: usize,
    pub max_wait: Duration,
    /// The configured pool size.
    pub size: usize,
    /// Servers open beyond the pool size.
    pub reserve_in_use: usize,
}

/// A connection at rest.
#[derive(Debug)]
struct Idle<C> {
    conn: C,
    since: Instant,
    born: Instant,
}

/// One pool's connections and waiters.
#[derive(Debug)]
pub struct PoolState<C, E> {
    sizes: Sizes,
    /// Back is the most recently used.
    idle: VecDeque<Idle<C>>,
    /// Connections counted against the sizes: idle, in use, or being opened.
    open: usize,
    opening: usize,
    waiters: BTreeMap<WaiterId, (Instant, oneshot::Sender<Delivery<C, E>>)>,
    next_id: u64,
    /// Waiters allowed to cause a reserve connection.
    reserve_grants: usize,
    last_failure: Option<(Instant, E)>,
    /// After a failed login, no new login is tried for this long (`server_login_retry`).
    retry: Duration,
    /// An open was called off because a shared limit was reached.
    deferred: bool,
}

impl<C, E: Clone> PoolState<C, E> {
    pub fn new(sizes: Sizes, retry: Duration) -> Self {
        PoolState {
            sizes,
            idle: VecDeque::new(),
            open: 0,
            opening: 0,
            waiters: BTreeMap::new(),
            next_id: 0,
            reserve_grants: 0,
            last_failure: None,
            retry,
            deferred: false,
        }
    }

    pub fn checkout(&mut self, now: Instant) -> Checkout<C, E> {
        if let Some(i) = self.idle.pop_back() {
            return Checkout::Ready(i.conn, i.since);
        }
        if let Some(err) = self.failing(now) {
            return Checkout::Fail(err);
        }
        let (tx, rx) = oneshot::channel();
        let id = WaiterId(self.next_id);
        self.next_id += 1;
        self.waiters.insert(id, (now, tx));
        Checkout::Wait {
            id,
            rx,
            open: self.reserve_opens(self.sizes.size, now),
        }
    }

    /// The last login error, while it is fresher than `retry` and nothing is open.
    fn failing(&self, now: Instant) -> Option<E> {
        match &self.last_failure {
            Some((at, e)) if self.open == 0 && now.duration_since(*at) < self.retry => {
                Some(e.clone())
            }
            _ => None,
        }
    }

    /// Reserves slots for new connections the queue needs, up to `limit` open. None while a
    /// failed login is fresher than `retry`: clients then wait for the servers still open.
    fn reserve_opens(&mut self, limit: usize, now: Instant) -> usize {
        if !self.last_failure_expired(now) {
            return 0;
        }
        let mut n = 0;
        while self.open < limit && self.opening < MAX_OPENING && self.opening < self.waiters.len() {
            self.open += 1;
            self.opening += 1;
            n += 1;
        }
        n
    }

    /// A waiter waited longer than reserve_pool_timeout: may open past the size, up to the
    /// reserve. Returns how many connections to start.
    pub fn grant_reserve(&mut self, id: WaiterId, now: Instant) -> usize {
        if !self.waiters.contains_key(&id) {
            return 0;
        }
        self.reserve_grants += 1;
        let limit = self.sizes.size + self.sizes.reserve.min(self.reserve_grants);
        self.reserve_opens(limit, now)
    }

    /// New sizes from a reload. A larger pool opens for the queue at once; a smaller one
    /// closes idle servers above the size now (the busy ones as they come back). Returns
    /// the idle connections to close and how many to open.
    pub fn resize(&mut self, sizes: Sizes, now: Instant) -> (Vec<C>, usize) {
        self.sizes = sizes;
        let mut closed = Vec::new();
        while self.open > sizes.size {
            let Some(i) = self.idle.pop_front() else {
                break;
            };
            self.open -= 1;
            closed.push(i.conn);
        }
        (closed, self.reserve_opens(sizes.size, now))
    }

    /// A waiter gave up (timed out, or its client left): it leaves the queue at once.
    pub fn leave(&mut self, id: WaiterId) {
        if self.waiters.remove(&id).is_some() && self.waiters.is_empty() {
            self.reserve_grants = 0;
        }
    }

    /// A connection attempt was called off before it started (a shared limit was reached).
    pub fn open_deferred(&mut self) {
        self.opening -= 1;
        self.open -= 1;
        self.deferred = true;
    }

    /// Clients wait and the pool has room, but a shared limit held an open back.
    pub fn starved(&self) -> bool {
        self.deferred && !self.waiters.is_empty()
    }

    /// A connection attempt succeeded; `born` is when it was opened.
    pub fn opened(&mut self, conn: C, born: Instant, now: Instant) -> Option<C> {
        self.deferred = false;
        self.opening -= 1;
        self.last_failure = None;
        self.checkin(conn, born, now)
    }

    /// A connection attempt failed. When nothing else is open nothing would ever wake the
    /// waiters, so they all get the error.
    pub fn open_failed(&mut self, err: E, now: Instant) {
        self.opening -= 1;
        self.open -= 1;
        if self.open == 0 {
            for (_, (_, w)) in std::mem::take(&mut self.waiters) {
                let _ = w.send(Err(err.clone()));
            }
            self.reserve_grants = 0;
        }
        self.last_failure = Some((now, err));
    }

    /// Returns a healthy connection: straight to the oldest waiter, else idle, unless the
    /// pool is over its size with nobody waiting (a reserve connection), when it comes back
    /// to be closed.
    pub fn checkin(&mut self, mut conn: C, born: Instant, now: Instant) -> Option<C> {
        let limit = self.sizes.size + self.sizes.reserve.min(self.reserve_grants);
        if self.open > limit {
            // Above a size a reload shrank: the queue waits for a server within the size.
            self.open -= 1;
            return Some(conn);
        }
        while let Some((_, (_, w))) = self.waiters.pop_first() {
            // A failed send hands the connection back (only `Ok` is ever sent here).
            let Err(Ok(back)) = w.send(Ok(conn)) else {
                if self.waiters.is_empty() {
                    self.reserve_grants = 0;
                }
                return None;
            };
            conn = back;
        }
        self.reserve_grants = 0;
        if self.open > self.sizes.size {
            self.open -= 1;
            return Some(conn);
        }
        self.idle.push_back(Idle {
            conn,
            since: now,
            born,
        });
        None
    }

    /// A checked-out connection was closed. Returns how many replacements the queue needs.
    pub fn discard(&mut self, now: Instant) -> usize {
        self.open -= 1;
        self.reserve_opens(self.sizes.size, now)
    }

    /// Periodic upkeep: closes connections that are no longer `alive`, idle longer than
    /// `idle_timeout` (down to the minimum) or older than `lifetime` (zero durations disable
    /// either), and says how many to open to get back to the minimum.
    pub fn maintain(
        &mut self,
        now: Instant,
        idle_timeout: Duration,
        lifetime: Duration,
        alive: impl Fn(&C) -> bool,
    ) -> (Vec<C>, usize) {
        let mut closed = Vec::new();
        let expired = |i: &Idle<C>, open: usize, min: usize| {
            let dead = !alive(&i.conn);
            let too_old = !lifetime.is_zero() && now.duration_since(i.born) >= lifetime;
            let too_idle = !idle_timeout.is_zero()
                && now.duration_since(i.since) >= idle_timeout
                && open > min;
            dead || too_old || too_idle
        };
        let mut kept = VecDeque::with_capacity(self.idle.len());
        while let Some(i) = self.idle.pop_front() {
            if expired(&i, self.open, self.sizes.min) {
                self.open -= 1;
                closed.push(i.conn);
            } else {
                kept.push_back(i);
            }
        }
        self.idle = kept;
        let mut open = 0;
        if self.last_failure_expired(now) {
            while self.open < self.sizes.min.min(self.sizes.size) && self.opening < MAX_OPENING {
                self.open += 1;
                self.opening += 1;
                open += 1;
            }
            open += self.reserve_opens(self.sizes.size, now);
        }
        (closed, open)
    }

    /// True when no login failure is fresher than `retry`.
    fn last_failure_expired(&self, now: Instant) -> bool {
        self.last_failure
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at) >= self.retry)
    }

    /// Takes the least recently used idle connection out (for closing), releasing its slot.
    pub fn take_one_idle(&mut self) -> Option<C> {
        let i = self.idle.pop_front()?;
        self.open -= 1;
        Some(i.conn)
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// The idle connections with when each went idle, most recently used first (the
    /// order checkout takes them in), for SHOW SERVERS.
    pub fn idle_servers(&self) -> impl Iterator<Item = (&C, Instant)> {
        self.idle.iter().rev().map(|i| (&i.conn, i.since))
    }

    pub fn open_count(&self) -> usize {
        self.open
    }

    pub fn waiting_count(&self) -> usize {
        self.waiters.len()
    }

    /// The pool's servers and queue at `now`, as SHOW POOLS and the metrics count them:
    /// `used` are idle servers that must pass `server_check_query` (idle longer than
    /// `check_delay`) before reuse.
    pub fn snapshot(&self, now: Instant, check_delay: Duration) -> Snapshot {
        let used = self
            .idle
            .iter()
            .filter(|i| now.duration_since(i.since) >= check_delay)
            .count();
        Snapshot {
            active: self.open.saturating_sub(self.idle.len() + self.opening),
            idle: self.idle.len() - used,
            used,
            login: self.opening,
            waiting: self.waiters.len(),
            max_wait: self.max_wait(now),
            size: self.sizes.size,
            reserve_in_use: self.open.saturating_sub(self.sizes.size),
        }
    }

    /// How long the longest-waiting client has waited.
    pub fn max_wait(&self, now: Instant) -> Duration {
        self.waiters
            .first_key_value()
            .map_or(Duration::ZERO, |(_, (since, _))| now.duration_since(*since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type State = PoolState<u32, &'static str>;
    const RETRY: Duration = Duration::from_secs(15);

    fn sizes(size: usize, reserve: usize, min: usize) -> Sizes {
        Sizes { size, reserve, min }
    }

    impl State {
        fn new_for_test(sizes: Sizes) -> Self {
            State::new(sizes, RETRY)
        }
    }

    fn wait(
        s: &mut State,
        now: Instant,
    ) -> (
        WaiterId,
        oneshot::Receiver<Delivery<u32, &'static str>>,
        usize,
    ) {
        match s.checkout(now) {
            Checkout::Wait { id, rx, open } => (id, rx, open),
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    #[test]
    fn queues_and_opens_at_most_size_and_max_opening() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(6, 0, 0));
        let waiters: Vec<_> = (0..10).map(|_| wait(&mut s, now)).collect();
        let opens: usize = waiters.iter().map(|w| w.2).sum();
        assert_eq!(opens, MAX_OPENING);
        assert_eq!(s.waiting_count(), 10);
        assert_eq!(s.open_count(), MAX_OPENING);
        // Each finished login frees an opening slot for the next.
        assert_eq!(s.opened(1, now, now), None);
        assert_eq!(s.discard(now), 1);
    }

    #[test]
    fn a_deferred_open_is_retried_by_maintain() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(2, 0, 0));
        let (_, _rx, open) = wait(&mut s, now);
        assert_eq!(open, 1);
        s.open_deferred();
        assert!(s.starved());
        assert_eq!(s.open_count(), 0);
        let (_, open) = s.maintain(now, Duration::ZERO, Duration::ZERO, |_| true);
        assert_eq!(open, 1);
        s.opened(5, now, now);
        assert!(!s.starved());
    }

    #[test]
    fn connections_go_to_waiters_in_arrival_order_skipping_the_departed() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(1, 0, 0));
        let (a, _ra, _) = wait(&mut s, now);
        let (_b, mut rb, _) = wait(&mut s, now);
        let (_c, mut rc, _) = wait(&mut s, now);
        s.leave(a);
        assert_eq!(s.waiting_count(), 2);
        s.opened(7, now, now);
        assert_eq!(rb.try_recv().unwrap(), Ok(7));
        assert!(rc.try_recv().is_err());
    }

    #[test]
    fn idle_connections_are_reused_most_recent_first() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(2, 0, 0));
        wait(&mut s, now);
        wait(&mut s, now);
        s.leave(WaiterId(0));
        s.leave(WaiterId(1));
        s.opened(1, now, now);
        s.opened(2, now, now);
        assert!(matches!(s.checkout(now), Checkout::Ready(2, _)));
        assert!(matches!(s.checkout(now), Checkout::Ready(1, _)));
    }

    #[test]
    fn a_resize_opens_for_the_queue_or_closes_idle_servers() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(1, 0, 0));
        let _a = wait(&mut s, now);
        let _b = wait(&mut s, now);
        let _c = wait(&mut s, now);
        assert_eq!(s.open_count(), 1);
        let (closed, open) = s.resize(sizes(3, 0, 0), now);
        assert!(closed.is_empty());
        assert_eq!((open, s.open_count()), (2, 3));
        for c in 1..=3 {
            s.opened(c, now, now);
        }
        for c in 1..=3 {
            assert!(s.checkin(c, now, now).is_none());
        }
        let (closed, open) = s.resize(sizes(1, 0, 0), now);
        assert_eq!(
            (closed.len(), open, s.open_count(), s.idle_count()),
            (2, 0, 1, 1)
        );
    }

    #[test]
    fn a_shrunk_pool_closes_servers_coming_back_even_with_a_queue() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(2, 0, 0));
        let _a = wait(&mut s, now);
        let _b = wait(&mut s, now);
        s.opened(1, now, now);
        s.opened(2, now, now);
        let _queued = wait(&mut s, now);
        let _ = s.resize(sizes(1, 0, 0), now);
        assert_eq!(
            s.checkin(1, now, now),
            Some(1),
            "closed, not handed to the queue"
        );
        assert_eq!(s.open_count(), 1);
        assert_eq!(
            s.checkin(2, now, now),
            None,
            "within the size: to the queue"
        );
    }

    #[test]
    fn idle_servers_are_listed_most_recent_first_with_their_idle_time() {
        let (t0, t1) = (Instant::now(), Instant::now() + Duration::from_secs(1));
        let mut s = State::new_for_test(sizes(2, 0, 0));
        s.checkin(1, t0, t0);
        s.checkin(2, t0, t1);
        let listed: Vec<_> = s.idle_servers().map(|(c, since)| (*c, since)).collect();
        assert_eq!(listed, vec![(2, t1), (1, t0)]);
    }

    #[test]
    fn a_snapshot_counts_servers_by_state_and_the_queue() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut s = State::new_for_test(sizes(3, 0, 0));
        let _first = wait(&mut s, now);
        wait(&mut s, now);
        s.leave(WaiterId(1));
        s.opened(1, now, now);
        s.opened(2, now, now);
        let snap = s.snapshot(later, Duration::from_secs(30));
        assert_eq!(
            (snap.active, snap.idle, snap.used, snap.login, snap.waiting),
            (1, 0, 1, 0, 0)
        );
        assert!(matches!(s.checkout(later), Checkout::Ready(2, _)));
        let _third = wait(&mut s, later);
        let snap = s.snapshot(later + Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(
            (snap.active, snap.idle, snap.used, snap.login, snap.waiting),
            (2, 0, 0, 1, 1)
        );
        assert_eq!((snap.size, snap.reserve_in_use), (3, 0));
        assert_eq!(snap.max_wait, Duration::from_secs(1));
    }

    #[test]
    fn reserve_opens_only_when_granted_and_closes_when_load_goes() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(1, 2, 0));
        let (first, r1, open) = wait(&mut s, now);
        assert_eq!(open, 1);
        drop(r1);
        s.leave(first);
        s.opened(10, now, now);
        // Connection 10 went idle because the waiter had left; take it.
        assert!(matches!(s.checkout(now), Checkout::Ready(10, _)));
        let (w, mut rw, open) = wait(&mut s, now);
        assert_eq!(open, 0, "pool is full: no reserve before the timeout");
        assert_eq!(s.grant_reserve(w, now), 1);
        assert_eq!(s.open_count(), 2);
        assert_eq!(s.opened(11, now, now), None);
        assert_eq!(rw.try_recv().unwrap(), Ok(11));
        // Nobody waits: the first one back while over the size is closed, the next stays.
        assert_eq!(s.checkin(10, now, now), Some(10));
        assert_eq!(s.checkin(11, now, now), None);
        assert_eq!(s.open_count(), 1);
    }

    #[test]
    fn a_failed_login_fails_the_queue_then_fails_fast_until_retry() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(2, 0, 0));
        let (_, mut rx, open) = wait(&mut s, now);
        assert_eq!(open, 1);
        s.open_failed("down", now);
        assert_eq!(rx.try_recv().unwrap(), Err("down"));
        assert!(matches!(
            s.checkout(now + Duration::from_secs(1)),
            Checkout::Fail("down")
        ));
        assert!(matches!(
            s.checkout(now + RETRY),
            Checkout::Wait { open: 1, .. }
        ));
    }

    #[test]
    fn maintain_expires_idle_down_to_min_and_old_ones_always() {
        let t0 = Instant::now();
        let mut s = State::new_for_test(sizes(3, 0, 1));
        for _ in 0..3 {
            wait(&mut s, t0);
        }
        for id in 0..3 {
            s.leave(WaiterId(id));
        }
        s.opened(1, t0, t0);
        s.opened(2, t0, t0);
        s.opened(3, t0, t0);
        let idle = Duration::from_secs(10);
        let (closed, open) = s.maintain(t0 + idle, idle, Duration::ZERO, |_| true);
        assert_eq!(closed, vec![1, 2]);
        assert_eq!((s.open_count(), open), (1, 0));
        let life = Duration::from_secs(60);
        let (closed, open) = s.maintain(t0 + life, idle, life, |_| true);
        assert_eq!(closed, vec![3]);
        assert_eq!(open, 1, "refills to min_pool_size");
    }

    #[test]
    fn no_new_login_during_retry_even_with_servers_open() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(3, 0, 0));
        let (_, _r1, open) = wait(&mut s, now);
        assert_eq!(open, 1);
        s.opened(1, now, now);
        let (_, _r2, open) = wait(&mut s, now);
        assert_eq!(open, 1);
        s.open_failed("refused", now);
        let later = now + Duration::from_secs(1);
        let (_, _r3, open) = wait(&mut s, later);
        assert_eq!(open, 0, "one server is open, but logins are on hold");
        assert_eq!(s.discard(later), 0);
        let (_, open) = s.maintain(later, Duration::ZERO, Duration::ZERO, |_| true);
        assert_eq!(open, 0);
        let (_, open) = s.maintain(now + RETRY, Duration::ZERO, Duration::ZERO, |_| true);
        assert_eq!(open, 2, "after the window both waiting clients get a login");
    }

    #[test]
    fn maintain_replaces_dead_idle_connections() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(2, 0, 2));
        wait(&mut s, now);
        wait(&mut s, now);
        s.leave(WaiterId(0));
        s.leave(WaiterId(1));
        s.opened(1, now, now);
        s.opened(2, now, now);
        let (closed, open) = s.maintain(now, Duration::ZERO, Duration::ZERO, |c| *c != 2);
        assert_eq!(closed, vec![2]);
        assert_eq!(open, 1);
    }

    #[test]
    fn maintain_does_not_refill_during_login_retry() {
        let now = Instant::now();
        let mut s = State::new_for_test(sizes(2, 0, 2));
        let (_, open) = s.maintain(now, Duration::ZERO, Duration::ZERO, |_| true);
        assert_eq!(open, 2);
        s.open_failed("down", now);
        s.open_failed("down", now);
        let (_, open) = s.maintain(
            now + Duration::from_secs(1),
            Duration::ZERO,
            Duration::ZERO,
            |_| true,
        );
        assert_eq!(open, 0);
        let (_, open) = s.maintain(now + RETRY, Duration::ZERO, Duration::ZERO, |_| true);
        assert_eq!(open, 2);
    }

    #[test]
    fn max_wait_reports_the_oldest_waiter() {
        let t0 = Instant::now();
        let mut s = State::new_for_test(sizes(0, 0, 0));
        let (a, _ra, _) = wait(&mut s, t0);
        let (_b, _rb, _) = wait(&mut s, t0 + Duration::from_secs(1));
        assert_eq!(
            s.max_wait(t0 + Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        s.leave(a);
        assert_eq!(
            s.max_wait(t0 + Duration::from_secs(3)),
            Duration::from_secs(2)
        );
    }
}

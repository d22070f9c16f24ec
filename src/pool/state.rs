//! The bookkeeping of one pool, free of I/O so it can be tested without sockets: idle
//! connections (reused most recently used first), how many are open or opening against the
//! size limits, and the first-come-first-served queue of clients waiting for one.
//!
//! A failed login is retried after `retry`; meanwhile the queue either gets the error or,
//! when the failure may pass (Postgres restarting) and the pool waits outages out, keeps
//! waiting ([`Failure`], [`OnOutage`]). A login refused for a connection limit is retried
//! sooner, as soon as one of the pool's own servers closes and so frees a place; until
//! then the queue moves through the servers the pool has.
//!
//! RECONNECT marks every connection open at that moment for closing ([`PoolState::mark`]):
//! the idle ones are closed at once, the others when they come back or finish logging in;
//! a connection is known by when it was opened (`born`), which the callers pass in.
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

/// What kind of failed login it was, which decides what the queue does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Postgres is restarting or unreachable: the same login may work in a moment.
    Passing,
    /// Postgres refused the login for a connection limit (53300: `max_connections`, a
    /// role's or a database's `CONNECTION LIMIT`): it may work as soon as a connection
    /// closes, which the pool sees when it is one of its own.
    Full,
    /// The login itself is refused (password, database, configuration): waiting won't help.
    Lasting,
}

/// What a pool's queue does while its logins fail in a [`Failure::Passing`] way. Ordered
/// so that the stricter of two is the smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OnOutage {
    /// The clients get the error at once: a replica's clients go to the primary instead.
    Fail,
    /// The clients wait (up to `query_wait_timeout`) for a login retried after the pool's
    /// `retry`: a restarting primary costs them a delay, not an error.
    Wait,
}

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

/// How long a waiter may queue before something happens (zero: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// `query_wait_timeout`: the waiter gets an error.
    pub give_up: Duration,
    /// `reserve_pool_timeout`: the pool may open one more past its size, up to the reserve.
    pub reserve_after: Duration,
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
    /// Logging in failed recently, for good or in a pool that does not wait out an outage,
    /// and nothing is open: fail fast instead of retrying.
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
    /// Logins Postgres refused for a connection limit since the pool was made.
    pub refused: u64,
}

/// A connection at rest.
#[derive(Debug)]
struct Idle<C> {
    conn: C,
    since: Instant,
    born: Instant,
}

/// A waiter: when it queued, whether it waits out an outage, and where its answer goes.
type Queued<C, E> = (Instant, OnOutage, oneshot::Sender<Delivery<C, E>>);

/// One pool's connections and waiters.
#[derive(Debug)]
pub struct PoolState<C, E> {
    sizes: Sizes,
    /// Back is the most recently used.
    idle: VecDeque<Idle<C>>,
    /// Connections counted against the sizes: idle, in use, or being opened.
    open: usize,
    opening: usize,
    waiters: BTreeMap<WaiterId, Queued<C, E>>,
    next_id: u64,
    /// Waiters allowed to cause a reserve connection.
    reserve_grants: usize,
    /// Waiters before this one have been counted in `reserve_grants` (grants go in queue
    /// order, so they are a prefix of it).
    granted_upto: WaiterId,
    last_failure: Option<(Instant, E, Failure)>,
    /// After a failed login, no new login is tried for this long (`server_login_retry`).
    retry: Duration,
    outage: OnOutage,
    /// An open was called off because a shared limit was reached.
    deferred: bool,
    /// The last RECONNECT: connections born then or earlier are closed, not reused.
    mark: Option<Instant>,
    /// Marked connections still checked out.
    marked: usize,
    /// Logins refused for a connection limit ([`Failure::Full`]) since the pool was made.
    refused: u64,
    /// One of the pool's servers closed since the last [`Failure::Full`]: the next login
    /// need not wait out `retry`.
    freed: bool,
}

impl<C, E: Clone> PoolState<C, E> {
    pub fn new(sizes: Sizes, retry: Duration, outage: OnOutage) -> Self {
        PoolState {
            sizes,
            idle: VecDeque::new(),
            open: 0,
            opening: 0,
            waiters: BTreeMap::new(),
            next_id: 0,
            reserve_grants: 0,
            granted_upto: WaiterId(0),
            last_failure: None,
            retry,
            outage,
            deferred: false,
            mark: None,
            marked: 0,
            refused: 0,
            freed: false,
        }
    }

    /// A checkout that waits out an outage only if both the pool and `outage` do: a client
    /// that is logging in and needs a first server to learn its parameters is told at once.
    pub fn checkout_as(&mut self, now: Instant, outage: OnOutage) -> Checkout<C, E> {
        if let Some(i) = self.idle.pop_back() {
            return Checkout::Ready(i.conn, i.since);
        }
        let outage = self.outage.min(outage);
        if let Some(err) = self.failing(now, outage) {
            return Checkout::Fail(err);
        }
        let (tx, rx) = oneshot::channel();
        let id = WaiterId(self.next_id);
        self.next_id += 1;
        self.waiters.insert(id, (now, outage, tx));
        Checkout::Wait {
            id,
            rx,
            open: self.reserve_opens(self.sizes.size, now),
        }
    }

    /// The last login error, while it is fresher than `retry`, nothing is open and it is
    /// not one a checkout with this `outage` waits out.
    fn failing(&self, now: Instant, outage: OnOutage) -> Option<E> {
        match &self.last_failure {
            Some((at, e, kind))
                if self.open == 0
                    && !waits_out(outage, *kind)
                    && now.duration_since(*at) < self.retry =>
            {
                Some(e.clone())
            }
            _ => None,
        }
    }

    /// Why a waiter that queued at `since` got no server, if a login failed while it
    /// waited: the last failure, when no login worked after it and it is at most one
    /// `retry` older than the wait (logins are retried that often while clients wait).
    fn failure_during(&self, since: Instant) -> Option<&E> {
        let from = since.checked_sub(self.retry).unwrap_or(since);
        self.last_failure
            .as_ref()
            .filter(|(at, _, _)| *at >= from)
            .map(|(_, e, _)| e)
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

    /// The janitor's look at the queue, so these timeouts are as precise as its interval:
    /// a waiter queued longer than `limits.give_up` gets `timed_out(cause)`, with the failed
    /// login that kept it from a server if there was one, and each one queued
    /// longer than `limits.reserve_after` lets the pool open one more past its size, up to
    /// the reserve. Returns how many connections to start. One periodic pass instead of a
    /// timer per waiter: arming and clearing a timer cost more than the rest of a checkout.
    pub fn expire_waiters(
        &mut self,
        now: Instant,
        limits: WaitLimits,
        timed_out: impl Fn(Option<&E>) -> E,
    ) -> usize {
        if !limits.give_up.is_zero() {
            while let Some((&id, &(since, _, _))) = self.waiters.first_key_value() {
                if now.duration_since(since) < limits.give_up {
                    break;
                }
                let err = timed_out(self.failure_during(since));
                if let Some((_, _, tx)) = self.waiters.remove(&id) {
                    let _ = tx.send(Err(err));
                }
            }
            if self.waiters.is_empty() {
                self.reserve_grants = 0;
            }
        }
        if self.sizes.reserve == 0 {
            return 0;
        }
        let due = self
            .waiters
            .range(self.granted_upto..)
            .take_while(|(_, (since, _, _))| now.duration_since(*since) >= limits.reserve_after)
            .map(|(id, _)| *id);
        let (count, last) = due.fold((0, None), |(n, _), id| (n + 1, Some(id)));
        let Some(last) = last else {
            return 0;
        };
        self.granted_upto = WaiterId(last.0 + 1);
        self.reserve_grants += count;
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
            self.closing(1);
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

    /// A connection attempt succeeded; `born` is when it was opened. Returns a
    /// connection to close (a reserve one nobody needs, or one a RECONNECT marked while it
    /// was logging in) and how many to open in its place.
    pub fn opened(&mut self, conn: C, born: Instant, now: Instant) -> (Option<C>, usize) {
        self.deferred = false;
        self.opening -= 1;
        self.last_failure = None;
        if self.is_marked(born) {
            self.closing(1);
            return (Some(conn), self.reserve_opens(self.sizes.size, now));
        }
        (self.checkin(conn, born, now), 0)
    }

    /// A connection attempt failed. Waiters that wait out a passing failure
    /// ([`OnOutage::Wait`]) stay queued: the upkeep retries after `retry`. When nothing else
    /// is open, nothing would ever wake the others, so they get the error.
    pub fn open_failed(&mut self, err: E, kind: Failure, now: Instant) {
        self.opening -= 1;
        self.open -= 1;
        self.freed = false;
        if kind == Failure::Full {
            self.refused += 1;
        }
        if self.open == 0 {
            let told: Vec<WaiterId> = self
                .waiters
                .iter()
                .filter(|(_, (_, outage, _))| !waits_out(*outage, kind))
                .map(|(id, _)| *id)
                .collect();
            for id in told {
                if let Some((_, _, w)) = self.waiters.remove(&id) {
                    let _ = w.send(Err(err.clone()));
                }
            }
            if self.waiters.is_empty() {
                self.reserve_grants = 0;
            }
        }
        self.last_failure = Some((now, err, kind));
    }

    /// Returns a healthy connection that is not marked ([`PoolState::is_marked`]; a marked
    /// one goes to [`PoolState::discard`]): straight to the oldest waiter, else idle, unless
    /// the pool is over its size with nobody waiting (a reserve connection), when it comes
    /// back to be closed.
    pub fn checkin(&mut self, mut conn: C, born: Instant, now: Instant) -> Option<C> {
        let limit = self.sizes.size + self.sizes.reserve.min(self.reserve_grants);
        if self.open > limit {
            // Above a size a reload shrank: the queue waits for a server within the size.
            self.closing(1);
            return Some(conn);
        }
        while let Some((_, (_, _, w))) = self.waiters.pop_first() {
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
            self.closing(1);
            return Some(conn);
        }
        self.idle.push_back(Idle {
            conn,
            since: now,
            born,
        });
        None
    }

    /// A checked-out connection opened at `born` was closed. Returns how many
    /// replacements the queue needs.
    pub fn discard(&mut self, born: Instant, now: Instant) -> usize {
        self.closing(1);
        if self.is_marked(born) {
            self.marked = self.marked.saturating_sub(1);
        }
        self.reserve_opens(self.sizes.size, now)
    }

    /// RECONNECT at `now`: every connection open is to be closed. Returns the idle ones,
    /// to close at once; the checked-out ones are closed as they come back.
    pub fn mark(&mut self, now: Instant) -> Vec<C> {
        self.mark = Some(now);
        let closed = self.close_idle();
        // Every connection out now was born before `now`; none born before it goes out
        // again (idle ones are gone, marked ones are closed when they come back or finish
        // logging in), so this count only goes down.
        self.marked = self.open - self.opening;
        closed
    }

    /// Whether a connection opened at `born` was open at the last RECONNECT.
    pub fn is_marked(&self, born: Instant) -> bool {
        self.mark.is_some_and(|m| born <= m)
    }

    /// Checked-out connections a RECONNECT marked that are still open.
    pub fn marked_open(&self) -> usize {
        self.marked
    }

    /// Takes every idle connection out, for closing.
    pub fn close_idle(&mut self) -> Vec<C> {
        self.closing(self.idle.len());
        self.idle.drain(..).map(|i| i.conn).collect()
    }

    /// Periodic upkeep: closes connections that are no longer `alive`, idle longer than
    /// `idle_timeout` (down to the minimum) or older than `lifetime` (zero durations disable
    /// either), and says how many to open to get back to the minimum (none while `paused`:
    /// a paused pool opens only for clients that queued before the pause).
    pub fn maintain(
        &mut self,
        now: Instant,
        idle_timeout: Duration,
        lifetime: Duration,
        paused: bool,
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
                self.closing(1);
                closed.push(i.conn);
            } else {
                kept.push_back(i);
            }
        }
        self.idle = kept;
        let mut open = 0;
        if self.last_failure_expired(now) {
            let min = if paused { 0 } else { self.sizes.min };
            while self.open < min.min(self.sizes.size) && self.opening < MAX_OPENING {
                self.open += 1;
                self.opening += 1;
                open += 1;
            }
            open += self.reserve_opens(self.sizes.size, now);
        }
        (closed, open)
    }

    /// True when no login failure is fresher than `retry`, or the last one was a
    /// connection limit and one of the pool's servers has closed since.
    fn last_failure_expired(&self, now: Instant) -> bool {
        self.freed
            || self
                .last_failure
                .as_ref()
                .is_none_or(|(at, _, _)| now.duration_since(*at) >= self.retry)
    }

    /// `n` open connections leave the count, to be closed by the caller: after a
    /// [`Failure::Full`], the place each frees in Postgres may take the next login.
    fn closing(&mut self, n: usize) {
        self.open -= n;
        let full = matches!(self.last_failure, Some((_, _, Failure::Full)));
        self.freed |= full && n > 0;
    }

    /// Takes the least recently used idle connection out (for closing), releasing its slot.
    pub fn take_one_idle(&mut self) -> Option<C> {
        let i = self.idle.pop_front()?;
        self.closing(1);
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
            refused: self.refused,
        }
    }

    /// How long the longest-waiting client has waited.
    pub fn max_wait(&self, now: Instant) -> Duration {
        self.waiters
            .first_key_value()
            .map_or(Duration::ZERO, |(_, (since, _, _))| {
                now.duration_since(*since)
            })
    }
}

/// Whether a waiter with this `outage` keeps waiting through a failed login of this kind.
fn waits_out(outage: OnOutage, kind: Failure) -> bool {
    kind != Failure::Lasting && outage == OnOutage::Wait
}

#[cfg(test)]
mod tests;

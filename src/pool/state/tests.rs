//! Unit tests of the pool bookkeeping: the queue, opening limits, reserve, resizing,
//! upkeep, login failures, and servers marked for closing by RECONNECT.

use super::*;

type State = PoolState<u32, &'static str>;
const RETRY: Duration = Duration::from_secs(15);

fn sizes(size: usize, reserve: usize, min: usize) -> Sizes {
    Sizes { size, reserve, min }
}

impl State {
    fn new_for_test(sizes: Sizes) -> Self {
        State::new(sizes, RETRY, OnOutage::Wait)
    }

    /// A checkout as the pool's clients make them, waiting out outages if the pool does.
    fn checkout(&mut self, now: Instant) -> Checkout<u32, &'static str> {
        self.checkout_as(now, OnOutage::Wait)
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
    assert_eq!(s.opened(1, now, now), (None, 0));
    assert_eq!(s.discard(now, now), 1);
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
    let (_, open) = s.maintain(now, Duration::ZERO, Duration::ZERO, false, |_| true);
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
    let (_, mut rw, open) = wait(&mut s, now);
    assert_eq!(open, 0, "pool is full: no reserve before the timeout");
    let limits = WaitLimits {
        give_up: Duration::ZERO,
        reserve_after: Duration::from_secs(5),
    };
    assert_eq!(
        s.expire_waiters(now + Duration::from_secs(4), limits, |_| "late"),
        0
    );
    assert_eq!(
        s.expire_waiters(now + Duration::from_secs(5), limits, |_| "late"),
        1
    );
    assert_eq!(
        s.expire_waiters(now + Duration::from_secs(6), limits, |_| "late"),
        0,
        "granted once"
    );
    assert_eq!(s.open_count(), 2);
    assert_eq!(s.opened(11, now, now), (None, 0));
    assert_eq!(rw.try_recv().unwrap(), Ok(11));
    // Nobody waits: the first one back while over the size is closed, the next stays.
    assert_eq!(s.checkin(10, now, now), Some(10));
    assert_eq!(s.checkin(11, now, now), None);
    assert_eq!(s.open_count(), 1);
}

#[test]
fn waiters_past_query_wait_timeout_get_the_error_and_leave_in_queue_order() {
    let start = Instant::now();
    let mut s = State::new_for_test(sizes(1, 0, 0));
    assert!(matches!(s.checkout(start), Checkout::Wait { open: 1, .. }));
    s.opened(10, start, start);
    assert!(matches!(s.checkout(start), Checkout::Ready(10, _)));
    let (_, mut old, _) = wait(&mut s, start);
    let (_, mut young, _) = wait(&mut s, start + Duration::from_secs(2));
    let limits = WaitLimits {
        give_up: Duration::from_secs(3),
        reserve_after: Duration::ZERO,
    };
    assert_eq!(
        s.expire_waiters(start + Duration::from_secs(3), limits, |_| "late"),
        0
    );
    assert_eq!(old.try_recv().unwrap(), Err("late"));
    assert!(young.try_recv().is_err(), "still within its wait");
    assert_eq!(s.waiting_count(), 1);
    // The connection goes to the one still waiting.
    assert_eq!(s.checkin(10, start, start), None);
    assert_eq!(young.try_recv().unwrap(), Ok(10));
}

#[test]
fn each_waiter_past_reserve_pool_timeout_grants_one_reserve_connection() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(1, 2, 0));
    assert!(matches!(s.checkout(now), Checkout::Wait { open: 1, .. }));
    s.opened(10, now, now);
    assert!(matches!(s.checkout(now), Checkout::Ready(10, _)));
    let _waiters: Vec<_> = (0..3).map(|_| wait(&mut s, now)).collect();
    let limits = WaitLimits {
        give_up: Duration::ZERO,
        reserve_after: Duration::from_secs(1),
    };
    assert_eq!(
        s.expire_waiters(now + Duration::from_secs(1), limits, |_| "late"),
        2,
        "the reserve caps it"
    );
    assert_eq!(s.open_count(), 3);
}

#[test]
fn a_lasting_failure_fails_the_queue_then_fails_fast_until_retry() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(2, 0, 0));
    let (_, mut rx, open) = wait(&mut s, now);
    assert_eq!(open, 1);
    s.open_failed("bad password", Failure::Lasting, now);
    assert_eq!(rx.try_recv().unwrap(), Err("bad password"));
    assert!(matches!(
        s.checkout(now + Duration::from_secs(1)),
        Checkout::Fail("bad password")
    ));
    assert!(matches!(
        s.checkout(now + RETRY),
        Checkout::Wait { open: 1, .. }
    ));
}

#[test]
fn a_passing_failure_keeps_the_queue_until_a_retry_serves_it() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(2, 0, 0));
    let (_, mut first, open) = wait(&mut s, now);
    assert_eq!(open, 1);
    s.open_failed("shutting down", Failure::Passing, now);
    assert!(first.try_recv().is_err(), "the waiter keeps waiting");
    let later = now + Duration::from_secs(1);
    let (_, mut second, open) = wait(&mut s, later);
    assert_eq!(
        open, 0,
        "a new client queues too, and no login before the retry"
    );
    let (_, open) = s.maintain(later, Duration::ZERO, Duration::ZERO, false, |_| true);
    assert_eq!(open, 0);
    let (_, open) = s.maintain(now + RETRY, Duration::ZERO, Duration::ZERO, false, |_| true);
    assert_eq!(open, 2, "after server_login_retry, a login for each waiter");
    s.opened(1, now + RETRY, now + RETRY);
    assert_eq!(first.try_recv().unwrap(), Ok(1), "first come, first served");
    assert!(second.try_recv().is_err());
    assert!(s.failure_during(now).is_none(), "a login worked since");
}

#[test]
fn a_passing_failure_is_the_cause_a_timed_out_waiter_gets() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(1, 0, 0));
    let (_, mut rx, _) = wait(&mut s, now);
    s.open_failed("refused", Failure::Passing, now + Duration::from_millis(10));
    let limits = WaitLimits {
        give_up: Duration::from_secs(2),
        reserve_after: Duration::ZERO,
    };
    let why = |cause: Option<&&'static str>| match cause {
        Some(_) => "timed out, login refused",
        None => "timed out",
    };
    s.expire_waiters(now + Duration::from_secs(2), limits, why);
    assert_eq!(rx.try_recv().unwrap(), Err("timed out, login refused"));
    // A waiter that queues more than one retry after the failure waited for busy servers.
    let later = now + RETRY + Duration::from_secs(1);
    let (_, mut rx, _) = wait(&mut s, later);
    s.expire_waiters(later + Duration::from_secs(2), limits, why);
    assert_eq!(rx.try_recv().unwrap(), Err("timed out"));
}

#[test]
fn a_pool_that_does_not_wait_out_outages_fails_its_queue() {
    let now = Instant::now();
    let mut s = State::new(sizes(2, 0, 0), RETRY, OnOutage::Fail);
    let (_, mut rx, _) = wait(&mut s, now);
    s.open_failed("down", Failure::Passing, now);
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
fn a_login_that_needs_a_first_server_does_not_wait_out_an_outage() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(2, 0, 0));
    let (_, mut patient, _) = wait(&mut s, now);
    let Checkout::Wait { rx: mut login, .. } = s.checkout_as(now, OnOutage::Fail) else {
        panic!("the login queues");
    };
    s.open_failed("refused", Failure::Passing, now);
    assert!(login.try_recv().is_err(), "one login is still under way");
    s.open_failed("refused", Failure::Passing, now);
    assert_eq!(login.try_recv().unwrap(), Err("refused"));
    assert!(patient.try_recv().is_err(), "a client's query waits on");
    assert!(matches!(
        s.checkout_as(now, OnOutage::Fail),
        Checkout::Fail("refused")
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
    let (closed, open) = s.maintain(t0 + idle, idle, Duration::ZERO, false, |_| true);
    assert_eq!(closed, vec![1, 2]);
    assert_eq!((s.open_count(), open), (1, 0));
    let life = Duration::from_secs(60);
    let (closed, open) = s.maintain(t0 + life, idle, life, false, |_| true);
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
    s.open_failed("refused", Failure::Passing, now);
    let later = now + Duration::from_secs(1);
    let (_, _r3, open) = wait(&mut s, later);
    assert_eq!(open, 0, "one server is open, but logins are on hold");
    assert_eq!(s.discard(now, later), 0);
    let (_, open) = s.maintain(later, Duration::ZERO, Duration::ZERO, false, |_| true);
    assert_eq!(open, 0);
    let (_, open) = s.maintain(now + RETRY, Duration::ZERO, Duration::ZERO, false, |_| true);
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
    let (closed, open) = s.maintain(now, Duration::ZERO, Duration::ZERO, false, |c| *c != 2);
    assert_eq!(closed, vec![2]);
    assert_eq!(open, 1);
}

#[test]
fn maintain_does_not_refill_during_login_retry() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(2, 0, 2));
    let (_, open) = s.maintain(now, Duration::ZERO, Duration::ZERO, false, |_| true);
    assert_eq!(open, 2);
    s.open_failed("down", Failure::Passing, now);
    s.open_failed("down", Failure::Passing, now);
    let (_, open) = s.maintain(
        now + Duration::from_secs(1),
        Duration::ZERO,
        Duration::ZERO,
        false,
        |_| true,
    );
    assert_eq!(open, 0);
    let (_, open) = s.maintain(now + RETRY, Duration::ZERO, Duration::ZERO, false, |_| true);
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

#[test]
fn a_mark_closes_idle_servers_now_and_busy_ones_as_they_come_back() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(1);
    let mut s = State::new_for_test(sizes(3, 0, 0));
    for _ in 0..3 {
        wait(&mut s, t0);
    }
    for id in 0..3 {
        s.leave(WaiterId(id));
    }
    for c in 1..=3 {
        s.opened(c, t0, t0);
    }
    // Two go out; one stays idle.
    assert!(matches!(s.checkout(t0), Checkout::Ready(3, _)));
    assert!(matches!(s.checkout(t0), Checkout::Ready(2, _)));
    assert_eq!(s.mark(t1), vec![1]);
    assert_eq!((s.open_count(), s.marked_open()), (2, 2));
    assert!(s.is_marked(t0) && !s.is_marked(t1 + Duration::from_millis(1)));
    // One comes back (the pool closes it), the other fails while out.
    assert_eq!(s.discard(t0, t1), 0);
    assert_eq!(s.discard(t0, t1), 0);
    assert_eq!((s.open_count(), s.marked_open()), (0, 0));
    // A server opened after the mark is used as usual.
    let later = t1 + Duration::from_secs(1);
    let (_, _rx, open) = wait(&mut s, later);
    assert_eq!(open, 1);
    assert_eq!(s.opened(9, later, later), (None, 0));
    assert_eq!(s.discard(later, later), 0);
    assert_eq!(s.marked_open(), 0);
}

#[test]
fn a_server_logging_in_during_a_mark_is_closed_and_replaced_for_its_waiter() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_secs(1);
    let mut s = State::new_for_test(sizes(2, 0, 0));
    let (_, mut rx, open) = wait(&mut s, t0);
    assert_eq!(open, 1);
    assert!(s.mark(t1).is_empty());
    assert_eq!(s.marked_open(), 0, "nothing was out");
    let (closed, open) = s.opened(5, t0, t1);
    assert_eq!((closed, open), (Some(5), 1));
    assert_eq!(s.opened(6, t1 + Duration::from_millis(1), t1), (None, 0));
    assert_eq!(rx.try_recv().unwrap(), Ok(6));
}

#[test]
fn a_paused_pool_keeps_no_minimum_and_closes_idle_on_request() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(3, 0, 2));
    let (_, open) = s.maintain(now, Duration::ZERO, Duration::ZERO, true, |_| true);
    assert_eq!(open, 0);
    let (_, open) = s.maintain(now, Duration::ZERO, Duration::ZERO, false, |_| true);
    assert_eq!(open, 2);
    s.opened(1, now, now);
    s.opened(2, now, now);
    assert_eq!(s.close_idle(), vec![1, 2]);
    assert_eq!((s.open_count(), s.idle_count()), (0, 0));
}

#[test]
fn a_connection_limit_keeps_the_queue_moving_and_retries_when_a_server_closes() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(3, 0, 0));
    let (_, mut first, open) = wait(&mut s, now);
    let (_, mut second, _) = wait(&mut s, now);
    let (_, mut third, _) = wait(&mut s, now);
    assert_eq!(open, 1);
    s.opened(1, now, now);
    s.open_failed("too many connections", Failure::Full, now);
    s.open_failed("too many connections", Failure::Full, now);
    assert_eq!(s.snapshot(now, Duration::ZERO).refused, 2);
    assert_eq!(first.try_recv().unwrap(), Ok(1));
    assert!(
        second.try_recv().is_err(),
        "still queued: the pool has a server"
    );
    assert!(s.checkin(1, now, now).is_none());
    assert_eq!(
        second.try_recv().unwrap(),
        Ok(1),
        "the queue moves through it"
    );
    let later = now + Duration::from_millis(10);
    let (_, open) = s.maintain(later, Duration::ZERO, Duration::ZERO, false, |_| true);
    assert_eq!(open, 0, "no new login before a place frees up");
    assert_eq!(
        s.discard(now, later),
        1,
        "its own server closed: try again at once"
    );
    s.opened(2, later, later);
    assert_eq!(third.try_recv().unwrap(), Ok(2));
}

#[test]
fn a_connection_limit_with_nothing_open_waits_for_the_retry() {
    let now = Instant::now();
    let mut s = State::new_for_test(sizes(2, 0, 0));
    let (_, mut rx, _) = wait(&mut s, now);
    s.open_failed("too many connections", Failure::Full, now);
    assert!(rx.try_recv().is_err(), "a full server is waited out");
    let (_, open) = s.maintain(now + RETRY, Duration::ZERO, Duration::ZERO, false, |_| true);
    assert_eq!(open, 1);
}

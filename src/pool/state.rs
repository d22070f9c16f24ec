//! The bookkeeping of one pool, free of I/O so it can be tested without sockets: idle
//! connections (reused most recently used first), how many are open or opening against the
//! size limit, and the first-come-first-served queue of clients waiting for one.
//!
//! Callers hold a short lock around each call and never await inside it.

use std::collections::VecDeque;

use tokio::sync::oneshot;

/// What a waiter eventually receives: a connection, or the reason none could be opened.
pub type Delivery<C, E> = Result<C, E>;

/// The answer to a checkout request.
#[derive(Debug)]
pub enum Checkout<C, E> {
    /// An idle connection, now the caller's.
    Ready(C),
    /// A slot is reserved: the caller opens a connection and must report back with
    /// [`PoolState::checkin`] (after use) or [`PoolState::connect_failed`].
    Connect,
    /// The pool is full: a connection (or an error) will arrive here, in arrival order.
    Wait(oneshot::Receiver<Delivery<C, E>>),
}

/// One pool's connections and waiters.
#[derive(Debug)]
pub struct PoolState<C, E> {
    idle: Vec<C>,
    /// Connections counted against `size`: idle, in use, or being opened.
    open: usize,
    size: usize,
    waiters: VecDeque<oneshot::Sender<Delivery<C, E>>>,
}

impl<C, E: Clone> PoolState<C, E> {
    pub fn new(size: usize) -> Self {
        PoolState {
            idle: Vec::new(),
            open: 0,
            size,
            waiters: VecDeque::new(),
        }
    }

    pub fn checkout(&mut self) -> Checkout<C, E> {
        if let Some(c) = self.idle.pop() {
            return Checkout::Ready(c);
        }
        if self.open < self.size {
            self.open += 1;
            return Checkout::Connect;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push_back(tx);
        Checkout::Wait(rx)
    }

    /// Returns a healthy connection: straight to the oldest waiter still waiting, else idle.
    pub fn checkin(&mut self, mut c: C) {
        while let Some(w) = self.waiters.pop_front() {
            // A failed send hands the connection back (it only ever sends `Ok`).
            let Err(Ok(back)) = w.send(Ok(c)) else {
                return;
            };
            c = back;
        }
        self.idle.push(c);
    }

    /// A connection that was open is gone. Returns true when a waiter needs it replaced: the
    /// slot stays reserved and the caller opens a connection for the queue.
    pub fn discard(&mut self) -> bool {
        self.drop_dead_waiters();
        if self.waiters.is_empty() {
            self.open = self.open.saturating_sub(1);
            false
        } else {
            true
        }
    }

    /// Opening a connection failed. When nothing else is open, nothing would ever wake the
    /// waiters, so they all get the error.
    pub fn connect_failed(&mut self, err: &E) {
        self.open = self.open.saturating_sub(1);
        if self.open == 0 {
            for w in self.waiters.drain(..) {
                let _ = w.send(Err(err.clone()));
            }
        }
    }

    fn drop_dead_waiters(&mut self) {
        self.waiters.retain(|w| !w.is_closed());
    }

    /// Takes every idle connection out (for closing), releasing their slots.
    pub fn take_idle(&mut self) -> Vec<C> {
        self.open -= self.idle.len();
        std::mem::take(&mut self.idle)
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    pub fn open_count(&self) -> usize {
        self.open
    }

    pub fn waiting_count(&self) -> usize {
        self.waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type State = PoolState<u32, &'static str>;

    #[test]
    fn opens_up_to_size_then_queues() {
        let mut s = State::new(2);
        assert!(matches!(s.checkout(), Checkout::Connect));
        assert!(matches!(s.checkout(), Checkout::Connect));
        assert!(matches!(s.checkout(), Checkout::Wait(_)));
        assert_eq!(s.open_count(), 2);
        assert_eq!(s.waiting_count(), 1);
    }

    #[test]
    fn idle_connections_are_reused_most_recent_first() {
        let mut s = State::new(2);
        s.checkout();
        s.checkout();
        s.checkin(1);
        s.checkin(2);
        assert!(matches!(s.checkout(), Checkout::Ready(2)));
        assert!(matches!(s.checkout(), Checkout::Ready(1)));
    }

    #[test]
    fn waiters_are_served_in_arrival_order_skipping_the_departed() {
        let mut s = State::new(1);
        s.checkout();
        let Checkout::Wait(first) = s.checkout() else {
            panic!()
        };
        let Checkout::Wait(mut second) = s.checkout() else {
            panic!()
        };
        let Checkout::Wait(mut third) = s.checkout() else {
            panic!()
        };
        drop(first);
        s.checkin(7);
        assert_eq!(second.try_recv().unwrap(), Ok(7));
        assert!(third.try_recv().is_err());
        assert_eq!(s.idle_count(), 0);
    }

    #[test]
    fn discard_keeps_the_slot_for_a_waiter() {
        let mut s = State::new(1);
        s.checkout();
        assert!(!s.discard());
        assert_eq!(s.open_count(), 0);
        s.checkout();
        let Checkout::Wait(_rx) = s.checkout() else {
            panic!()
        };
        assert!(s.discard());
        assert_eq!(s.open_count(), 1);
    }

    #[test]
    fn failed_connect_with_nothing_open_fails_the_waiters() {
        let mut s = State::new(1);
        s.checkout();
        let Checkout::Wait(mut rx) = s.checkout() else {
            panic!()
        };
        s.connect_failed(&"down");
        assert_eq!(rx.try_recv().unwrap(), Err("down"));
        assert_eq!(s.open_count(), 0);
    }

    #[test]
    fn take_idle_frees_slots() {
        let mut s = State::new(2);
        s.checkout();
        s.checkin(1);
        assert_eq!(s.take_idle(), vec![1]);
        assert_eq!(s.open_count(), 0);
    }
}

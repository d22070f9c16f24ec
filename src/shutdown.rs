//! Stopping without losing a transaction. [`Shutdown`] is the process-wide switch the
//! signal handler and the admin console's SHUTDOWN throw; [`Phase`] says how far
//! it has gone, and every client task reads it through a [`ShutdownWatch`] (logged-in
//! clients when [`crate::app::App::shut_down`] wakes them, others by waiting on it):
//!
//! - `Draining`: no new clients; a client between transactions is told FATAL 57P01 and
//!   closed; a client in a transaction finishes it first (its server then goes back
//!   clean) and is closed at the next boundary.
//! - `Now`: `shutdown_timeout` ran out or a second signal came: every client still here
//!   is told FATAL 57P01 and closed, its open transaction rolled back by the server.
//!
//! In a takeover (`pgweir --takeover`) the drain is the same, except that a client between
//! transactions goes to the successor process instead of being closed, and a client still
//! logging in finishes its login first ([`crate::takeover`]).
//!
//! A client still logging in when shutdown begins is refused with FATAL 57P01 (a
//! CancelRequest is still forwarded until `Now`), and one waiting for RESUME on a paused
//! database is closed the same way: RESUME may never come. [`Shutdown::client`] counts
//! every client connection being served, logged in or not, so the process waits for each
//! to be told before it exits.
//!
//! Both SIGTERM (PgBouncer's WAIT_FOR_CLIENTS) and SIGINT (WAIT_FOR_SERVERS) drain this way:
//! in transaction mode a client holds a server exactly as long as its transaction, so
//! waiting for servers to be released and letting clients finish their transactions are the
//! same wait.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// How far shutdown has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Now,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Now,
        }
    }
}

/// The switch; one per process.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<Phase>,
    /// The phase again, for the relay loop to read on every poll without a lock.
    current: Arc<AtomicU8>,
    /// Client connections being served now.
    clients: AtomicUsize,
    /// A successor process takes the clients over (`pgweir --takeover`): clients between
    /// transactions go to it instead of being closed.
    handing_over: Arc<AtomicBool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: watch::Sender::new(Phase::Running),
            current: Arc::new(AtomicU8::new(Phase::Running as u8)),
            clients: AtomicUsize::new(0),
            handing_over: Arc::default(),
        }
    }
}

impl Shutdown {
    /// Moves to `phase` if that is further than now; never back. Logged-in clients read the
    /// phase when woken: [`crate::app::App::shut_down`] does both.
    pub(crate) fn advance(&self, phase: Phase) {
        self.tx.send_if_modified(|p| {
            let further = phase > *p;
            if further {
                *p = phase;
                self.current.store(phase as u8, Ordering::SeqCst);
            }
            further
        });
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.current.load(Ordering::SeqCst))
    }

    /// Marks the drain that follows as a handover to a successor. Set before the drain
    /// begins, so every client woken by it sees the mark.
    pub fn hand_over(&self) {
        self.handing_over.store(true, Ordering::SeqCst);
    }

    /// A receiver for one client task.
    pub fn watch(&self) -> ShutdownWatch {
        ShutdownWatch {
            rx: self.tx.subscribe(),
            current: Arc::clone(&self.current),
            handing_over: Arc::clone(&self.handing_over),
        }
    }

    /// Counts one client connection for as long as the guard lives.
    pub fn client(&self) -> ClientTask<'_> {
        self.clients.fetch_add(1, Ordering::SeqCst);
        ClientTask(&self.clients)
    }

    /// Client connections being served now, logged in or not.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }
}

/// One client connection being served; see [`Shutdown::client`].
#[derive(Debug)]
pub struct ClientTask<'a>(&'a AtomicUsize);

impl Drop for ClientTask<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One task's view of the switch.
#[derive(Debug, Clone)]
pub struct ShutdownWatch {
    rx: watch::Receiver<Phase>,
    current: Arc<AtomicU8>,
    handing_over: Arc<AtomicBool>,
}

impl ShutdownWatch {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.current.load(Ordering::SeqCst))
    }

    /// Whether the drain is a handover to a successor process.
    pub fn handing_over(&self) -> bool {
        self.handing_over.load(Ordering::SeqCst)
    }

    /// Resolves once the phase is at least `phase` (at once if it already is).
    pub async fn reached(&mut self, phase: Phase) {
        // An error means the switch is gone with the process: nothing left to wait for.
        let _ = self.rx.wait_for(|p| *p >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward_and_watchers_see_them() {
        let s = Shutdown::default();
        let mut w = s.watch();
        assert_eq!(w.phase(), Phase::Running);
        s.advance(Phase::Now);
        s.advance(Phase::Draining);
        assert_eq!(s.phase(), Phase::Now);
        w.reached(Phase::Draining).await;
        w.reached(Phase::Now).await;
    }

    #[test]
    fn client_tasks_are_counted_while_they_live() {
        let s = Shutdown::default();
        let a = s.client();
        let b = s.client();
        assert_eq!(s.clients(), 2);
        drop(a);
        drop(b);
        assert_eq!(s.clients(), 0);
    }
}

//! What ends a client's session from outside, in one place for the relay and the console
//! to select on: shutdown ([`crate::shutdown`]), which lets a transaction finish until its
//! last phase, and the admin console's KILL or KILL_CLIENT ([`super::Kill`]), which
//! does not wait. [`refuse_login`] is shutdown's part for a client still logging in. What
//! the client is told is [`crate::client`]'s: each [`Stopped`] becomes its ErrorResponse there.

use std::task::{Context, Poll};

use thiserror::Error;

use super::KillWatch;
use crate::shutdown::{Phase, ShutdownWatch};

/// Why a client must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Stopped {
    #[error("pgweir is shutting down")]
    ShuttingDown,
    /// Closed by the admin console command named.
    #[error("terminating connection due to administrator command ({0} on the admin console)")]
    Killed(&'static str),
}

/// Resolves when a client still logging in must be refused: as soon as shutdown begins
/// once `asked_to_log_in` (its startup packet named a user), else only when shutdown can
/// wait no more, so a CancelRequest for a draining client is still forwarded.
pub async fn refuse_login(
    mut shutdown: ShutdownWatch,
    asked_to_log_in: impl Fn() -> bool,
) -> Stopped {
    shutdown.reached(Phase::Draining).await;
    // In a handover a login finishes, and the client goes to the successor logged in.
    if !asked_to_log_in() || shutdown.handing_over() {
        shutdown.reached(Phase::Now).await;
    }
    Stopped::ShuttingDown
}

/// One client task's watch on both. Only that task may wait on it (clones included): the
/// client's entry keeps one waker, and a second task waiting would take the first one's place.
#[derive(Debug, Clone)]
pub struct Stop {
    shutdown: ShutdownWatch,
    kill: KillWatch,
}

impl Stop {
    pub fn new(shutdown: ShutdownWatch, kill: KillWatch) -> Self {
        Stop { shutdown, kill }
    }

    /// Why the client must go at the next transaction boundary, if it must.
    pub fn reason(&self) -> Option<Stopped> {
        match self.kill.killed() {
            Some(k) => Some(Stopped::Killed(k.command())),
            None if self.shutdown.phase() != Phase::Running => Some(Stopped::ShuttingDown),
            None => None,
        }
    }

    /// Whether a client between transactions goes to a successor process rather than being
    /// closed: shutdown is a takeover's drain and no KILL closed it.
    pub fn hand_over(&self) -> bool {
        self.shutdown.handing_over() && self.kill.killed().is_none()
    }

    /// Whether a KILL closed the client: the server it holds is closed too, not cleaned
    /// for reuse.
    pub fn killed(&self) -> bool {
        self.kill.killed().is_some()
    }

    /// Resolves when a client between transactions must go: shutdown has begun, or it was
    /// killed.
    pub async fn between_transactions(&self) -> Stopped {
        std::future::poll_fn(|cx| self.poll_until(cx, Phase::Draining)).await
    }

    /// [`Stop::between_transactions`] for a client at a transaction boundary, else
    /// [`Stop::now`].
    pub async fn at(&self, boundary: bool) -> Stopped {
        let phase = if boundary {
            Phase::Draining
        } else {
            Phase::Now
        };
        std::future::poll_fn(|cx| self.poll_until(cx, phase)).await
    }

    /// Resolves when a client must go even inside a transaction: shutdown can wait no
    /// more, or it was killed.
    pub async fn now(&self) -> Stopped {
        std::future::poll_fn(|cx| self.poll_until(cx, Phase::Now)).await
    }

    /// Ready once shutdown has reached `phase` or the client was killed. The task is
    /// registered for a wake-up before the second look, so nothing that happens between
    /// the two is missed ([`crate::app::App::shut_down`] and KILL wake it).
    fn poll_until(&self, cx: &mut Context<'_>, phase: Phase) -> Poll<Stopped> {
        if let Some(e) = self.stopped(phase) {
            return Poll::Ready(e);
        }
        self.kill.register(cx);
        match self.stopped(phase) {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }

    fn stopped(&self, phase: Phase) -> Option<Stopped> {
        if self.shutdown.phase() >= phase {
            return Some(Stopped::ShuttingDown);
        }
        self.kill.killed().map(|k| Stopped::Killed(k.command()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::task::JoinHandle;

    use super::*;
    use crate::clients::{ClientEntry, ClientRegistry, Kill};
    use crate::net::addr::Addr;
    use crate::shutdown::Shutdown;

    fn client(clients: &Arc<ClientRegistry>, shutdown: &Shutdown) -> (ClientEntry, Stop) {
        let entry = clients.register(
            Addr::Tcp("127.0.0.1:5000".parse().unwrap()),
            "db",
            "u",
            String::new(),
        );
        let stop = Stop::new(shutdown.watch(), entry.kill_watch());
        (entry, stop)
    }

    /// A task of its own waits, so only a wake-up can finish it.
    fn waiting(stop: Stop, boundary: bool) -> JoinHandle<Stopped> {
        tokio::spawn(async move { stop.at(boundary).await })
    }

    /// The wait's error, or None if it is still waiting after a while.
    async fn ended(wait: &mut JoinHandle<Stopped>) -> Option<Stopped> {
        tokio::time::timeout(Duration::from_millis(200), wait)
            .await
            .ok()
            .map(|r| r.expect("wait task"))
    }

    #[tokio::test]
    async fn a_waiting_client_is_woken_by_each_phase_it_waits_for() {
        let (clients, shutdown) = (Arc::new(ClientRegistry::default()), Shutdown::default());
        // One client each: a client's entry keeps the waker of one task, its own.
        let (_a, idle) = client(&clients, &shutdown);
        let (_b, in_transaction) = client(&clients, &shutdown);
        let mut between = waiting(idle, true);
        let mut now = waiting(in_transaction, false);
        assert!(ended(&mut between).await.is_none() && ended(&mut now).await.is_none());
        shutdown.advance(Phase::Draining);
        clients.wake_all();
        assert!(matches!(
            ended(&mut between).await,
            Some(Stopped::ShuttingDown)
        ));
        assert!(
            ended(&mut now).await.is_none(),
            "a transaction may still finish"
        );
        shutdown.advance(Phase::Now);
        clients.wake_all();
        assert!(matches!(ended(&mut now).await, Some(Stopped::ShuttingDown)));
    }

    #[tokio::test]
    async fn a_kill_ends_the_wait_of_that_client_only() {
        let (clients, shutdown) = (Arc::new(ClientRegistry::default()), Shutdown::default());
        let (killed, stop) = client(&clients, &shutdown);
        let (_other, bystander) = client(&clients, &shutdown);
        let mut wait = waiting(stop.clone(), false);
        let mut other = waiting(bystander.clone(), true);
        assert!(ended(&mut wait).await.is_none());
        killed.info().kill(Kill::Client);
        let e = ended(&mut wait).await;
        assert!(matches!(e, Some(Stopped::Killed("KILL_CLIENT"))), "{e:?}");
        assert!(ended(&mut other).await.is_none());
        assert!(stop.reason().is_some() && bystander.reason().is_none());
    }
}

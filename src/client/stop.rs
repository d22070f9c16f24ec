//! What ends a client's session from outside, in one place for the relay and the console
//! to select on: shutdown ([`crate::shutdown`]), which lets a transaction finish until its
//! last phase, and the admin console's KILL or KILL_CLIENT ([`crate::stats::Kill`]), which
//! does not wait. [`refuse_login`] is shutdown's part for a client still logging in.

use std::task::{Context, Poll};

use super::reset::Leftover;
use super::ClientError;
use crate::shutdown::{Phase, ShutdownWatch};
use crate::stats::KillWatch;

/// Resolves when a client still logging in must be refused: as soon as shutdown begins
/// once `asked_to_log_in` (its startup packet named a user), else only when shutdown can
/// wait no more, so a CancelRequest for a draining client is still forwarded.
pub async fn refuse_login(
    mut shutdown: ShutdownWatch,
    asked_to_log_in: impl Fn() -> bool,
) -> ClientError {
    shutdown.reached(Phase::Draining).await;
    if !asked_to_log_in() {
        shutdown.reached(Phase::Now).await;
    }
    ClientError::ShuttingDown
}

/// One client task's watch on both.
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
    pub fn reason(&self) -> Option<ClientError> {
        match self.kill.killed() {
            Some(k) => Some(ClientError::Killed(k.command())),
            None if self.shutdown.phase() != Phase::Running => Some(ClientError::ShuttingDown),
            None => None,
        }
    }

    /// Whether a KILL closed the client: the server it holds is closed too, not cleaned
    /// for reuse.
    pub fn killed(&self) -> bool {
        self.kill.killed().is_some()
    }

    /// What becomes of a server the client holds between transactions when it must go:
    /// reset for the next client, unless the client was killed.
    pub fn leftover(&self) -> Leftover {
        if self.killed() {
            Leftover::Close
        } else {
            Leftover::Clean {
                rollback: false,
                discard: true,
            }
        }
    }

    /// Resolves when a client between transactions must go: shutdown has begun, or it was
    /// killed.
    pub async fn between_transactions(&self) -> ClientError {
        std::future::poll_fn(|cx| self.poll_until(cx, Phase::Draining)).await
    }

    /// [`Stop::between_transactions`] for a client at a transaction boundary, else
    /// [`Stop::now`].
    pub async fn at(&self, boundary: bool) -> ClientError {
        let phase = if boundary {
            Phase::Draining
        } else {
            Phase::Now
        };
        std::future::poll_fn(|cx| self.poll_until(cx, phase)).await
    }

    /// Resolves when a client must go even inside a transaction: shutdown can wait no
    /// more, or it was killed.
    pub async fn now(&self) -> ClientError {
        std::future::poll_fn(|cx| self.poll_until(cx, Phase::Now)).await
    }

    /// Ready once shutdown has reached `phase` or the client was killed. The task is
    /// registered for a wake-up before the second look, so nothing that happens between
    /// the two is missed ([`crate::app::App::shut_down`] and KILL wake it).
    fn poll_until(&self, cx: &mut Context<'_>, phase: Phase) -> Poll<ClientError> {
        if let Some(e) = self.stopped(phase) {
            return Poll::Ready(e);
        }
        self.kill.register(cx);
        match self.stopped(phase) {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }

    fn stopped(&self, phase: Phase) -> Option<ClientError> {
        if self.shutdown.phase() >= phase {
            return Some(ClientError::ShuttingDown);
        }
        self.kill.killed().map(|k| ClientError::Killed(k.command()))
    }
}

//! What ends a client's session from outside, in one place for the relay and the console
//! to select on: shutdown ([`crate::shutdown`]), which lets a transaction finish until its
//! last phase, and the admin console's KILL or KILL_CLIENT ([`crate::stats::Kill`]), which
//! does not wait. [`refuse_login`] is shutdown's part for a client still logging in.

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
    pub async fn between_transactions(&mut self) -> ClientError {
        tokio::select! {
            biased;
            () = self.shutdown.reached(Phase::Draining) => ClientError::ShuttingDown,
            k = self.kill.wait() => ClientError::Killed(k.command()),
        }
    }

    /// [`Stop::between_transactions`] for a client at a transaction boundary, else
    /// [`Stop::now`].
    pub async fn at(&mut self, boundary: bool) -> ClientError {
        if boundary {
            self.between_transactions().await
        } else {
            self.now().await
        }
    }

    /// Resolves when a client must go even inside a transaction: shutdown can wait no
    /// more, or it was killed.
    pub async fn now(&mut self) -> ClientError {
        tokio::select! {
            biased;
            () = self.shutdown.reached(Phase::Now) => ClientError::ShuttingDown,
            k = self.kill.wait() => ClientError::Killed(k.command()),
        }
    }
}

//! What happens to a server its client leaves behind: rolled back and reset so the next
//! client finds a clean session, or closed when that cannot be made sure of. The relay
//! decides which ([`Leftover`]); this module does it, within [`CLEANUP_TIMEOUT`].

use std::time::Duration;

use crate::pool::PooledServer;
use crate::protocol::TxStatus;
use crate::server::ServerConn;

/// How long pgweir waits for a rollback or reset before closing the server instead.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The state a departed client left its server in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// A query still running or a message half sent, or state no reset removes (LOAD):
    /// cancel whatever runs and close the connection.
    Close,
    /// Between statements: roll back an open transaction, and `DISCARD ALL` when the
    /// session holds state of the client's.
    Clean { rollback: bool, discard: bool },
}

impl Leftover {
    /// What becomes of a server a client holds between transactions when it must go
    /// (shutdown, KILL): reset for the next client, unless the client was killed.
    pub fn when_stopped(killed: bool) -> Self {
        if killed {
            Leftover::Close
        } else {
            Leftover::Clean {
                rollback: false,
                discard: true,
            }
        }
    }
}

/// Makes `server` fit for the next client, or closes it.
pub async fn left_behind(server: PooledServer, left: Leftover) {
    let steps: &[&str] = match left {
        Leftover::Close => {
            let (addr, key) = (server.addr, server.key);
            drop(server);
            tokio::spawn(async move {
                let _ = ServerConn::cancel(addr, key).await;
            });
            return;
        }
        Leftover::Clean {
            rollback: true,
            discard: true,
        } => &["ROLLBACK", "DISCARD ALL"],
        Leftover::Clean {
            rollback: false,
            discard: true,
        } => &["DISCARD ALL"],
        Leftover::Clean {
            rollback: true,
            discard: false,
        } => &["ROLLBACK"],
        Leftover::Clean { .. } => &[],
    };
    cleanup(server, steps).await;
}

/// Statement mode caught a transaction left open: roll it back. False if that failed and
/// the server must be closed.
pub async fn rolled_back(server: &mut PooledServer) -> bool {
    let r = tokio::time::timeout(CLEANUP_TIMEOUT, server.run_internal("ROLLBACK")).await;
    matches!(r, Ok(Ok(TxStatus::Idle)))
}

/// Runs reset statements; the server goes back to the pool only if all end idle.
async fn cleanup(mut server: PooledServer, steps: &[&str]) {
    for sql in steps {
        let r = tokio::time::timeout(CLEANUP_TIMEOUT, server.run_internal(sql)).await;
        if !matches!(r, Ok(Ok(TxStatus::Idle))) {
            tracing::debug!(
                server = server.id.0,
                statement = sql,
                "reset failed; closing server"
            );
            return;
        }
        if *sql == "DISCARD ALL" {
            server.applied.clear();
            server.statements.clear();
        }
    }
    server.release();
}

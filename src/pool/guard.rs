//! The guards around a checkout: [`Held`] counts a client waiting for RESUME, [`Waiting`]
//! is a place in the pool's queue that a dropped future leaves at once, and
//! [`PooledServer`] is a checked-out server that goes back to its [`Pool`] on release, or
//! is closed when dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::state::{Delivery, WaiterId};
use super::{Conn, Pool, PoolError};
use crate::config::Node;
use crate::server::ServerConn;

/// Counts a client waiting for RESUME while it waits, however its wait ends.
pub(super) struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    pub(super) fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Held(count)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A queued checkout. Dropped early (client gone, timeout), it leaves the queue, and a
/// connection that was handed over in that instant goes back instead of leaking its slot.
pub(super) struct Waiting<'a> {
    pool: &'a Arc<Pool>,
    id: WaiterId,
    rx: Option<oneshot::Receiver<Delivery<Conn, PoolError>>>,
}

impl<'a> Waiting<'a> {
    pub(super) fn new(
        pool: &'a Arc<Pool>,
        id: WaiterId,
        rx: oneshot::Receiver<Delivery<Conn, PoolError>>,
    ) -> Self {
        Waiting {
            pool,
            id,
            rx: Some(rx),
        }
    }

    /// Waits for a connection, or for the janitor's word that `query_wait_timeout` has
    /// passed ([`Pool::maintain`]).
    pub(super) async fn finish(mut self) -> Result<Conn, PoolError> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(PoolError::Closed);
        };
        let got = rx.await;
        self.rx = None;
        got.map_err(|_| PoolError::Closed)?
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            self.pool.state.lock().leave(self.id);
            rx.close();
            if let Ok(Ok(conn)) = rx.try_recv() {
                self.pool.checkin(conn);
            }
        }
    }
}

/// A server checked out of its pool. [`PooledServer::release`] gives it back for reuse;
/// dropping it instead closes the connection, the safe end for a server in an unknown state.
#[derive(Debug)]
pub struct PooledServer {
    /// Present from checkout until release or drop.
    pub(super) conn: Option<Conn>,
    pub(super) pool: Arc<Pool>,
}

impl PooledServer {
    /// Which of the database's servers this is.
    pub fn node(&self) -> Node {
        self.pool.key.node
    }

    /// Returns a clean server (idle, nothing owed) to the pool.
    pub fn release(mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.lent.returned(c.id);
            self.pool.checkin(c);
        }
    }
}

impl std::ops::Deref for PooledServer {
    type Target = ServerConn;
    fn deref(&self) -> &ServerConn {
        self.conn
            .as_ref()
            .expect("connection present until release or drop")
    }
}

impl std::ops::DerefMut for PooledServer {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_mut()
            .expect("connection present until release or drop")
    }
}

impl Drop for PooledServer {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            tracing::debug!(pool = %self.pool.key, server = c.id.0, "closing server connection");
            self.pool.lent.returned(c.id);
            let born = c.created;
            drop(c);
            self.pool.discard(born);
        }
    }
}

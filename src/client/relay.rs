//! The relay: what happens to a Query message (or a Parse/Bind/Execute/Sync batch).
//!
//! 1. While the client holds no server, [`run`] waits for its next message. Terminate ends
//!    the session; a lone Flush is dropped; anything else needs a server.
//! 2. The pool hands over a server ([`crate::pool::Pool::checkout`]), the client's session
//!    parameters are applied to it if they differ ([`ClientParams::apply_to`]) and the
//!    client's cancel key is pointed at it.
//! 3. [`pump`] moves bytes both ways without blocking either direction: client bytes are
//!    framed by header and forwarded as slices of the read buffer; the [`TxnTracker`]
//!    counts the ReadyForQuery each Query/Sync is owed; server bytes are forwarded the same
//!    way while the tracker reads each ReadyForQuery's status. Large messages stream
//!    through; reading stops while the other side's queue is full.
//!    In transaction and statement mode the inspectors ([`super::inspect`]) also rename
//!    prepared statements for this server and watch for statements that change session
//!    settings or create state that pins the client to its server.
//! 4. When the pool mode's release point is reached (transaction: ReadyForQuery 'I' with
//!    nothing owed; statement: any ReadyForQuery; session: never), what the transaction may
//!    have changed is read back from the server ([`super::settle`]). A client left holding
//!    pinned state keeps its server and goes on at step 3; otherwise the server goes back
//!    to the pool and the client returns to step 1.
//! 5. If the client leaves while linked, the server is rolled back (and reset with
//!    DISCARD ALL in session mode or when it holds the client's session state) before
//!    reuse, or closed if anything is still in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::acquire::{acquire, next_request, Acquired};
use super::buffers::{ensure_spare, shelve};
use super::inspect::{drain_client, ServerSide, ServerTracking};
use super::link::{Link, Timeouts};
use super::params::ClientParams;
use super::reset::{self, Leftover};
use super::routing::{route_reply, ClientRoute, Held, LinkRoute};
use super::settle::{after_transaction, AfterTransaction};
use super::ClientError;
use crate::cancel::{CancelHandle, CancelTarget};
use crate::clients::{ClientEntry, ClientSlot, ClientState, PinCounts, Stop};
use crate::config::{Node, PoolMode};
use crate::error::{Severity, SqlState};
use crate::net::stream::Stream;
use crate::pool::{Pool, PoolGroup, PooledServer};
use crate::prepared::{answer_parse_locally, ClientStatements};
use crate::protocol::framer::{Framer, OutQueue};
use crate::protocol::{backend, TxStatus};
use crate::server::{ServerConn, ServerError, SCS_SLOT};
use crate::sql::{PinReason, Pins};

/// Reading from one side pauses while this much waits to be written to the other.
const HIGH_WATER: usize = 256 * 1024;
/// How long a server waits for a cancel still on its way before it is closed instead of
/// reused (PgBouncer's `cancel_wait_timeout`).
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// A logged-in client between transactions.
#[derive(Debug)]
pub struct Session {
    /// The database's servers for this client's user.
    pub(super) group: Arc<PoolGroup>,
    /// The primary's pool, whose settings every node of the group shares.
    pub(super) pool: Arc<Pool>,
    pub(super) route: ClientRoute,
    pub(super) params: ClientParams,
    pub(super) cancel: CancelHandle,
    pub(super) shared: Arc<PinCounts>,
    /// The client's named prepared statements.
    pub(super) statements: ClientStatements,
    /// State that ties the client to the server it holds.
    pub(super) pins: Pins,
    /// Custom settings (`app.tenant`) the client has set, read back by name.
    pub(super) custom_names: Vec<String>,
    /// Pins no check can lift (LOAD, a setting pgweir cannot read back): they last as
    /// long as the client. After LOAD the server can never be cleaned, only closed.
    pub(super) sticky: Pins,
    /// Held for the session: the client's place under the client-count limits.
    _slot: ClientSlot,
    /// The client's entry in the list of connected clients, showing what it does.
    pub(super) entry: ClientEntry,
    /// Tells the client task when shutdown begins or an admin KILL closes it.
    pub(super) stop: Stop,
}

impl Session {
    pub fn new(
        group: Arc<PoolGroup>,
        params: ClientParams,
        cancel: CancelHandle,
        slot: ClientSlot,
        shared: Arc<PinCounts>,
        entry: ClientEntry,
        stop: Stop,
    ) -> Self {
        Session {
            pool: Arc::clone(&group.primary),
            group,
            route: ClientRoute::default(),
            params,
            cancel,
            shared,
            statements: ClientStatements::default(),
            pins: Pins::default(),
            custom_names: Vec::new(),
            sticky: Pins::default(),
            _slot: slot,
            entry,
            stop,
        }
    }

    /// Prepares statements the client asks for without a server where that is possible;
    /// true if the client's next request was answered so.
    pub(super) fn answer_without_server(
        &mut self,
        cbuf: &mut BytesMut,
        to_client: &mut OutQueue,
    ) -> bool {
        if self.pool.mode() == PoolMode::Session || self.pool.max_prepared_statements() == 0 {
            return false;
        }
        let registry = &self.pool.statements;
        match answer_parse_locally(cbuf, registry, &mut self.statements) {
            Some((used, parsed, reply)) => {
                self.group.stats.prepared.parsed(parsed);
                let _ = cbuf.split_to(used);
                to_client.push(reply);
                true
            }
            None => false,
        }
    }

    /// Whether the client's transactions default to serializable, which a hot standby
    /// cannot run: its reads stay on the primary.
    pub(super) fn serializable(&self) -> bool {
        self.params
            .other
            .iter()
            .any(|(k, v)| k == "default_transaction_isolation" && v == "serializable")
    }

    /// False while the client has `standard_conforming_strings` off: backslashes then
    /// escape quotes in plain strings, the lexer could be fooled, and every statement is
    /// treated as one that may do anything (and goes to the primary).
    pub(super) fn lexable(&self) -> bool {
        self.params.reported.tracked(SCS_SLOT) != Some("off")
    }

    /// Whether the server must be reset (or closed) before anyone else may use it.
    fn holds_state(&self, link: &Link) -> bool {
        !self.pins.is_empty() || !self.sticky.is_empty() || link.watch.any()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.pins.is_empty() {
            self.shared.unpinned();
        }
    }
}

/// How a linked stretch ended.
enum End {
    /// The release point was reached; `rollback` when statement mode caught a transaction.
    Release {
        rollback: bool,
    },
    ClientGone,
    ServerGone,
    /// query_timeout or idle_transaction_timeout ran out, or shutdown could wait no more.
    Expired(ClientError),
}

/// The client side of the relay between transactions: its framing and replies carry over
/// from one link to the next, and a pinned client keeps its server here.
struct Between {
    cframer: Framer,
    to_client: OutQueue,
    pinned_to: Option<(PooledServer, LinkRoute)>,
    /// The relay loop's own handle: the session is lent to the inspectors while it waits.
    stop: Stop,
}

/// What the relay does after a transaction.
enum Next {
    Request,
    Gone,
}

/// Serves a logged-in client until it leaves, or until a takeover's successor is to have
/// it: then the session is returned, between transactions and holding no server
/// ([`super::handoff`]). While the client is idle its task holds only what the session
/// needs: everything a transaction uses lives in [`transaction`]'s future, boxed for that
/// transaction's length, and a plaintext client's read buffer is given back.
pub async fn run(
    mut s: Session,
    client: &mut Stream,
    cbuf: &mut BytesMut,
) -> Result<Option<Session>, ClientError> {
    let mut b = Between {
        cframer: Framer::default(),
        to_client: OutQueue::default(),
        pinned_to: None,
        stop: s.stop.clone(),
    };
    loop {
        b.to_client.write_all(client).await?;
        if let Some(e) = s.stop.reason() {
            let unlinked = b.pinned_to.is_none() && !b.cframer.mid_message();
            if unlinked && super::handoff::possible(&s, client) {
                return Ok(Some(s));
            }
            // Between transactions: the client's work is done; a pinned server is cleaned
            // (closed after a KILL).
            if let Some((server, _)) = b.pinned_to.take() {
                Box::pin(reset::left_behind(
                    server,
                    Leftover::when_stopped(s.stop.killed()),
                ))
                .await;
            }
            return Err(e.into());
        }
        if b.pinned_to.is_none() {
            s.entry.set(ClientState::Idle);
            if cbuf.is_empty() && !client.is_tls() {
                shelve(std::mem::take(cbuf));
            }
            let idle_limit = s.pool.settings().client_idle_timeout;
            match next_request(client, cbuf, idle_limit, &s.stop).await {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                // The top of the loop decides how the client goes.
                Err(ClientError::Stopped(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        match Box::pin(transaction(&mut s, &mut b, client, cbuf)).await? {
            Next::Request => {}
            Next::Gone => return Ok(None),
        }
    }
}

/// One request or transaction: a server for it (the pinned one, or one from the pool), the
/// relay both ways until the release point, then the server released, kept or closed.
async fn transaction(
    s: &mut Session,
    b: &mut Between,
    client: &mut Stream,
    cbuf: &mut BytesMut,
) -> Result<Next, ClientError> {
    let (mut server, route, mut retry) = match b.pinned_to.take() {
        Some((server, route)) => (server, route, None),
        None => match acquire(s, client, cbuf, &mut b.to_client).await? {
            Acquired::Answered => return Ok(Next::Request),
            Acquired::Gone => return Ok(Next::Gone),
            Acquired::Server {
                server,
                route,
                retry,
            } => {
                s.cancel.set_target(Some(CancelTarget {
                    addr: server.addr,
                    key: server.key,
                }));
                (server, route, retry)
            }
        },
    };
    let mut link = Link::new(route, retry.is_some());
    let replied_before = b.to_client.pushed();
    let end = pump(s, &mut link, client, cbuf, b, &mut server).await;
    let sent = b.to_client.pushed() - replied_before;
    s.group.stats.traffic(link.received, sent);
    if let (Ok(End::ServerGone), Some(request)) = (&end, retry.take()) {
        if link.may_retry(&b.cframer, cbuf) && b.to_client.pushed() == replied_before {
            // One failed request does not ban a replica (a client could craft one);
            // the monitor's checks do. It is sent once more, to the primary.
            tracing::info!(pool = %s.group.pool(link.route.node).key, "replica failed before answering; the request goes to the primary");
            s.route.primary_next = true;
            s.cancel.set_target(None);
            drop(server);
            restore(cbuf, request);
            return Ok(Next::Request);
        }
    }
    if matches!(end, Ok(End::Release { .. }))
        && link.route.wrote
        && link.route.node == Node::Primary
    {
        s.route.wrote_at = Some(Instant::now());
    }
    if let Ok(End::Release { rollback }) = end {
        match after_transaction(s, server, &link.watch, rollback, &mut b.to_client).await {
            AfterTransaction::Release(released) => server = released,
            AfterTransaction::Pinned(kept) => {
                // The client keeps this server, and its cancel key keeps pointing at it.
                // Held writes cannot move to the primary any more: on a replica they
                // fail as in a read-only transaction.
                b.pinned_to = Some((kept, LinkRoute::new(link.route.node, false)));
                s.entry.set(ClientState::Pinned);
                return Ok(Next::Request);
            }
            AfterTransaction::Closed => {
                s.cancel.set_target(None);
                return Ok(Next::Request);
            }
            AfterTransaction::Failed(e) => {
                s.cancel.set_target(None);
                b.to_client.write_all(client).await?;
                return Err(e);
            }
        }
    }
    s.cancel.set_target(None);
    end_link(s, server, &link, end?, b, client).await?;
    Ok(Next::Request)
}

/// Ends a link: the server goes back to its pool (or is closed, or cleaned after a client
/// that left); an error ends the session.
async fn end_link(
    s: &Session,
    server: PooledServer,
    link: &Link,
    end: End,
    b: &mut Between,
    client: &mut Stream,
) -> Result<(), ClientError> {
    let Between {
        cframer, to_client, ..
    } = b;
    let settled = s.cancel.settle(CANCEL_WAIT).await;
    let reset = s.holds_state(link);
    let at_boundary = link.to_server.is_empty() && !cframer.mid_message();
    match end {
        End::Release { .. } if !settled || link.fatal.between_requests => drop(server),
        End::Release { .. } => server.release(),
        End::ClientGone => {
            client_gone(s, server, link, at_boundary, reset).await;
            return Err(ClientError::Closed);
        }
        End::Expired(e) => {
            client_gone(s, server, link, at_boundary, reset).await;
            to_client.write_all(client).await?;
            return Err(e);
        }
        End::ServerGone => {
            to_client.write_all(client).await?;
            return Err(ClientError::Server(ServerError::Closed));
        }
    }
    Ok(())
}

/// Puts a request that is to be sent again back in the (empty) client buffer.
fn restore(cbuf: &mut BytesMut, request: Bytes) {
    cbuf.extend_from_slice(&request);
}

/// Relays both ways until the release point, or until either side goes away.
async fn pump(
    s: &mut Session,
    link: &mut Link,
    client: &mut Stream,
    cbuf: &mut BytesMut,
    b: &mut Between,
    server: &mut PooledServer,
) -> Result<End, ClientError> {
    let Between {
        cframer,
        to_client,
        stop,
        ..
    } = b;
    let mode = s.pool.mode();
    let timeouts = Timeouts {
        query: s.pool.settings().query_timeout,
        idle_tx: s.pool.settings().idle_transaction_timeout,
    };
    let timed = timeouts.any();
    let tracking = mode != PoolMode::Session;
    let ServerConn {
        stream,
        rbuf,
        params: sparams,
        statements: sstmts,
        ..
    } = &mut **server;
    let (mut sr, mut sw) = stream.split();
    let (mut cr, mut cw) = client.split();
    drain_client(s, link, cbuf, cframer, sstmts)?;
    loop {
        if link.to_server.write_now(&mut sw).await.is_err() {
            return Ok(End::ServerGone);
        }
        // A client that said goodbye, or shut its side down, after whole requests gets
        // their answers first, as from Postgres. Inside a batch (no Sync yet) or a COPY,
        // nothing would ever complete what it sent: it is gone at once.
        if (link.terminated || link.client_eof)
            && (link.answered_all(cframer, rbuf)
                || link.tracker.in_batch()
                || link.tracker.copy_in())
        {
            let _ = to_client.write_all(&mut cw).await;
            return Ok(End::ClientGone);
        }
        if link.fatal.before_reply {
            return Ok(End::ServerGone);
        }
        if link.route.held.is_some()
            && link.answered_all(cframer, rbuf)
            && take_held(s, link, cbuf, to_client)
        {
            drain_client(s, link, cbuf, cframer, sstmts)?;
            continue;
        }
        if link.at_release_point(mode, cframer, cbuf, rbuf) {
            if link.violation {
                let mut m = BytesMut::new();
                backend::error_response(
                    &mut m,
                    Severity::Error,
                    SqlState::ACTIVE_SQL_TRANSACTION,
                    "transaction blocks are not allowed in statement pooling mode",
                );
                backend::ready_for_query(&mut m, TxStatus::Idle);
                to_client.push(m.freeze());
            }
            return Ok(End::Release {
                rollback: link.violation,
            });
        }
        ensure_spare(cbuf);
        ensure_spare(rbuf);
        if timed {
            link.note_phase();
        }
        let deadline = if timed {
            link.deadline(&timeouts)
        } else {
            None
        };
        let expiry = async {
            match &deadline {
                Some((at, _)) => tokio::time::sleep_until((*at).into()).await,
                None => std::future::pending().await,
            }
        };
        // A client that keeps its server between transactions (pinned, or session mode) is
        // closed at a boundary once shutdown begins; any other only when it can wait no more.
        let boundary = link.answered_all(cframer, rbuf)
            && cbuf.is_empty()
            && link.tracker.status() == TxStatus::Idle;
        let read_client = link.to_server.len() < HIGH_WATER
            && link.owes_few(cframer)
            && link.route.held.is_none()
            && !link.terminated
            && !link.client_eof;
        tokio::select! {
            () = expiry => {
                if let Some((_, e)) = deadline {
                    return Ok(End::Expired(e));
                }
            }
            e = stop.at(boundary) => return Ok(End::Expired(e.into())),
            r = cr.read_buf(cbuf), if read_client => {
                if r? == 0 {
                    // Mid-message, mid-COPY or before a batch's Sync, what would complete
                    // it never comes: nothing is owed a whole answer (Postgres too ends).
                    let t = &link.tracker;
                    if cframer.mid_message() || !cbuf.is_empty() || t.copy_in() || t.in_batch() {
                        return Ok(End::ClientGone);
                    }
                    link.client_eof = true;
                    continue;
                }
                link.client_read = true;
                drain_client(s, link, cbuf, cframer, sstmts)?;
            }
            r = sr.read_buf(rbuf), if to_client.len() < HIGH_WATER => {
                if !matches!(r, Ok(n) if n > 0) {
                    return Ok(End::ServerGone);
                }
                let Link { tracker, sframer, violation, pending, fatal, clock, .. } = &mut *link;
                let tracking = tracking.then_some(ServerTracking {
                    pending,
                    client: &mut s.statements,
                    server: sstmts,
                });
                let mut side = ServerSide {
                    tracker,
                    violation,
                    sparams,
                    client: &mut s.params.reported,
                    mode,
                    tracking,
                    fatal,
                    clock,
                    stats: &s.group.stats,
                };
                if sframer.drain(rbuf, &mut side, to_client).is_err() {
                    return Ok(End::ServerGone);
                }
            }
            r = link.to_server.write_or_flush(&mut sw), if !link.to_server.is_empty() || sw.unflushed() => {
                if r.is_err() {
                    return Ok(End::ServerGone);
                }
            }
            r = to_client.write_or_flush(&mut cw), if !to_client.is_empty() || cw.unflushed() => {
                r?;
            }
        }
    }
}

/// Deals with the held message once everything before it is answered; true if it may now
/// be drained (answered here, or allowed onto this server after all). A write held at
/// the end of a transaction stays: the release point hands it to the next server.
fn take_held(
    s: &mut Session,
    link: &mut Link,
    cbuf: &mut BytesMut,
    to_client: &mut OutQueue,
) -> bool {
    let status = link.tracker.status();
    match link.route.held {
        Some(Held::Setting(setting)) => {
            let len = cbuf.get(1..5).map_or(0, |h| {
                1 + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize
            });
            let _ = cbuf.split_to(len.min(cbuf.len()));
            if status != TxStatus::Failed {
                s.route.setting = Some(setting);
            }
            to_client.push(route_reply(status));
        }
        Some(Held::Request) if status != TxStatus::Idle => {
            // Inside a read-only transaction on the replica: it answers as Postgres would.
            link.route.pass_held();
            return true;
        }
        _ => return false,
    }
    link.route.held = None;
    true
}

/// The client left while holding `server`: make it clean for the next client, or close it.
/// `reset`: the server holds the client's session state and needs DISCARD ALL.
async fn client_gone(
    s: &Session,
    server: PooledServer,
    link: &Link,
    at_boundary: bool,
    reset: bool,
) {
    let busy = !link.tracker.quiet() || !at_boundary || link.sframer.mid_message();
    let left = if busy || s.sticky.contains(PinReason::Load) || s.stop.killed() {
        // Something is still running or half-sent, a library was loaded that no reset
        // unloads, or an admin KILL closes the client's server with it.
        Leftover::Close
    } else {
        Leftover::Clean {
            rollback: link.tracker.status() != TxStatus::Idle,
            discard: reset || s.pool.mode() == PoolMode::Session,
        }
    };
    reset::left_behind(server, left).await;
}

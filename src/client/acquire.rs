//! Between transactions: waiting for the client's next request, then finding it a server.
//! [`next_request`] waits (at most `client_idle_timeout`); [`acquire`] answers what needs no
//! server (preparing known statements, `SET pgweir.route`), picks the node with
//! [`super::routing`], checks a server out of that node's pool and applies the client's
//! settings to it. A replica that cannot be reached (or fails that first exchange) is
//! banned and the request goes to the primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::buffers::{ensure_spare, unshelve};
use super::inspect::MAX_PARSE_BODY;
use super::relay::Session;
use super::routing::{
    decide, retry_window, route_reply, scan_request, Destination, LinkRoute, Scan,
};
use super::ClientError;
use crate::clients::{ClientState, Stop};
use crate::config::{Node, PoolMode};
use crate::net::stream::Stream;
use crate::pool::{Pool, PoolError, PooledServer};
use crate::protocol::framer::OutQueue;
use crate::protocol::{fe, ProtocolError, TxStatus};
use crate::sql::{Classification, Verdict};

/// What became of the client's next request. Returned once per transaction and moved
/// once: boxing the server would cost an allocation per transaction instead.
#[allow(clippy::large_enum_variant)]
pub enum Acquired {
    /// Answered without a server.
    Answered,
    /// The client left.
    Gone,
    /// A server to relay it to; `retry` holds the request when it may be sent again to
    /// another node should this one (a replica) fail before answering.
    Server {
        server: PooledServer,
        route: LinkRoute,
        retry: Option<Bytes>,
    },
}

/// Waits until the client sends a message that needs a server, at most `idle_limit` (zero:
/// forever). False when it says goodbye; an error when shutdown begins meanwhile or an
/// admin KILL closes the client.
pub async fn next_request(
    client: &mut Stream,
    cbuf: &mut BytesMut,
    idle_limit: Duration,
    stop: &Stop,
) -> Result<bool, ClientError> {
    let wait = async {
        if idle_limit.is_zero() {
            return wait_for_request(client, cbuf).await;
        }
        tokio::time::timeout(idle_limit, wait_for_request(client, cbuf))
            .await
            .map_err(|_| ClientError::IdleTimeout(idle_limit))?
    };
    tokio::select! {
        got = wait => got,
        e = stop.between_transactions() => Err(e.into()),
    }
}

async fn wait_for_request(client: &mut Stream, cbuf: &mut BytesMut) -> Result<bool, ClientError> {
    loop {
        if cbuf.len() >= 5 {
            match cbuf[0] {
                fe::TERMINATE => return Ok(false),
                fe::FLUSH => {
                    let _ = cbuf.split_to(5);
                    continue;
                }
                tag if !fe::is_known(tag) => return Err(ProtocolError::UnknownType(tag).into()),
                _ => return Ok(true),
            }
        }
        if cbuf.capacity() == 0 {
            // The idle client gave its buffer back: take one only once bytes arrive.
            client.ready_to_read().await?;
            *cbuf = unshelve();
        }
        ensure_spare(cbuf);
        if client.read_buf(cbuf).await? == 0 {
            return Ok(false);
        }
    }
}

/// Places the request at the front of `cbuf`, takes a server for it and brings the
/// server's session settings in line with the client's.
pub async fn acquire(
    s: &mut Session,
    client: &mut Stream,
    cbuf: &mut BytesMut,
    to_client: &mut OutQueue,
) -> Result<Acquired, ClientError> {
    if s.answer_without_server(cbuf, to_client) {
        return Ok(Acquired::Answered);
    }
    let Some((mut dest, class)) = destination(s, client, cbuf, to_client).await? else {
        return Ok(Acquired::Answered);
    };
    if std::mem::take(&mut s.route.primary_next) {
        dest = Destination::Primary;
    }
    let asked = Instant::now();
    s.entry.waiting_since(asked);
    loop {
        let (node, hold_writes) = match dest {
            Destination::Primary => (Node::Primary, false),
            Destination::Replicas {
                with_primary,
                hold_writes,
            } => (s.group.choose(with_primary, s.route.wrote_at), hold_writes),
        };
        let pool = s.group.pool(node);
        let failure = match checkout(pool, client, cbuf, &s.stop).await {
            Ok(Some(mut server)) => match s.params.apply_to(&mut server).await {
                Ok(()) => {
                    s.entry.set(ClientState::Active);
                    s.group.stats.assigned(asked.elapsed());
                    // Only a request proven read-only is sent again after a failure: one
                    // forced onto a replica may change what the client has prepared.
                    let retry = (node != Node::Primary && class.verdict != Verdict::Primary)
                        .then(|| retry_window(cbuf))
                        .flatten();
                    let route = LinkRoute::new(node, hold_writes);
                    return Ok(Acquired::Server {
                        server,
                        route,
                        retry,
                    });
                }
                Err(e) if node != Node::Primary => e.to_string(),
                Err(e) => return Err(e.into()),
            },
            Ok(None) => return Ok(Acquired::Gone),
            Err(Waited::Stopped(e)) => return Err(e),
            Err(Waited::Pool(PoolError::Server(e))) if node != Node::Primary => {
                s.group.ban(node);
                e.to_string()
            }
            Err(Waited::Pool(e)) => return Err(e.into()),
        };
        tracing::warn!(pool = %pool.key, error = %failure, "replica failed before the request was sent; it goes to the primary");
        dest = Destination::Primary;
    }
}

/// Where the request should go, and what it was classified as; None when it was
/// `SET pgweir.route`, answered here.
async fn destination(
    s: &mut Session,
    client: &mut Stream,
    cbuf: &mut BytesMut,
    to_client: &mut OutQueue,
) -> Result<Option<(Destination, Classification)>, ClientError> {
    let mode = s.pool.mode();
    let scan = mode != PoolMode::Session && s.group.routes() && s.lexable();
    let mut class = Classification::UNKNOWN;
    if scan {
        match scan_until_complete(s, client, cbuf).await? {
            Scan::Setting(setting, len) => {
                let _ = cbuf.split_to(len);
                s.route.setting = Some(setting);
                to_client.push(route_reply(TxStatus::Idle));
                return Ok(None);
            }
            Scan::Request(c) if !s.serializable() => class = c,
            Scan::Request(_) | Scan::NeedMore => {}
        }
    }
    Ok(Some((
        decide(s.group.policy(), mode, s.route.setting, class),
        class,
    )))
}

/// Reads until the first request is whole, so all of it is classified before a server is
/// chosen. Once its first message is complete, only what the client has already sent is
/// read: a client waiting for an answer before finishing its batch (COPY, a Describe
/// without Sync) gets the primary instead of a deadlock.
async fn scan_until_complete(
    s: &Session,
    client: &mut Stream,
    cbuf: &mut BytesMut,
) -> Result<Scan, ClientError> {
    let functions = &s.group.routing.functions;
    loop {
        let scan = scan_request(cbuf, &s.statements, functions, s.route.unnamed);
        if scan != Scan::NeedMore {
            return Ok(scan);
        }
        let first_done = first_message_complete(cbuf);
        if cbuf.len() > MAX_PARSE_BODY {
            // A request this large is not worth a replica: bound what is held for it.
            return Ok(scan);
        }
        ensure_spare(cbuf);
        let read = if first_done {
            match client.try_read_buf(cbuf).await {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(scan),
                other => other?,
            }
        } else {
            client.read_buf(cbuf).await?
        };
        if read == 0 {
            return Ok(scan);
        }
    }
}

/// Whether `buf` starts with a whole message.
fn first_message_complete(buf: &[u8]) -> bool {
    buf.get(1..5).is_some_and(|h| {
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        buf.len() > len
    })
}

/// The most of a waiting client's requests held for the server it waits for.
const MAX_WAITING_BYTES: usize = 256 * 1024;

/// Why a checkout gave no server.
enum Waited {
    Pool(PoolError),
    /// Shutdown could wait no more, or an admin KILL closed the client.
    Stopped(ClientError),
}

/// Takes a server (waiting for RESUME first while the database is paused), leaving the
/// queue at once if the client disconnects or is stopped while it waits. Whatever the
/// client sends meanwhile stays buffered for the server. Once shutdown begins, a client
/// held by a pause is closed: RESUME may never come, and it has no transaction open.
async fn checkout(
    pool: &Arc<Pool>,
    client: &mut Stream,
    cbuf: &mut BytesMut,
    stop: &Stop,
) -> Result<Option<PooledServer>, Waited> {
    let wait = pool.checkout();
    tokio::pin!(wait);
    let paused_while_draining = async {
        let e = stop.between_transactions().await;
        pool.until_paused().await;
        e
    };
    tokio::pin!(paused_while_draining);
    loop {
        ensure_spare(cbuf);
        // Beyond a bound the client is not read (a disconnect then shows later): a client
        // that keeps sending while it waits must not be buffered without end.
        let room = cbuf.len() < MAX_WAITING_BYTES;
        tokio::select! {
            biased;
            server = &mut wait => return server.map(Some).map_err(Waited::Pool),
            e = stop.now() => return Err(Waited::Stopped(e.into())),
            e = &mut paused_while_draining => return Err(Waited::Stopped(e.into())),
            read = client.read_buf(cbuf), if room => {
                if !matches!(read, Ok(n) if n > 0) {
                    return Ok(None);
                }
            }
        }
    }
}

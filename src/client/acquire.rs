//! Between transactions: waiting for the client's next request, then finding it a server.
//! [`next_request`] waits (at most `client_idle_timeout`); [`acquire`] answers what needs no
//! server (preparing known statements, `SET pgweir.route`), picks the node with
//! [`super::routing`] and checks a server out of that node's pool. A replica that cannot be
//! reached is banned and the request placed again, ending on the primary at worst.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::relay::{ensure_spare, Session};
use super::routing::{
    decide, retry_window, route_reply, scan_request, Destination, LinkRoute, Scan,
};
use super::ClientError;
use crate::config::PoolMode;
use crate::pool::{Node, Pool, PoolError, PooledServer};
use crate::protocol::framer::OutQueue;
use crate::protocol::{fe, TxStatus};
use crate::sql::Classification;

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
/// forever). False when it says goodbye.
pub async fn next_request(
    client: &mut TcpStream,
    cbuf: &mut BytesMut,
    idle_limit: Duration,
) -> Result<bool, ClientError> {
    if idle_limit.is_zero() {
        return wait_for_request(client, cbuf).await;
    }
    tokio::time::timeout(idle_limit, wait_for_request(client, cbuf))
        .await
        .map_err(|_| ClientError::IdleTimeout(idle_limit))?
}

async fn wait_for_request(
    client: &mut TcpStream,
    cbuf: &mut BytesMut,
) -> Result<bool, ClientError> {
    loop {
        if cbuf.len() >= 5 {
            match cbuf[0] {
                fe::TERMINATE => return Ok(false),
                fe::FLUSH => {
                    let _ = cbuf.split_to(5);
                    continue;
                }
                _ => return Ok(true),
            }
        }
        ensure_spare(cbuf);
        if client.read_buf(cbuf).await? == 0 {
            return Ok(false);
        }
    }
}

/// Places the request at the front of `cbuf` and takes a server for it.
pub async fn acquire(
    s: &mut Session,
    client: &mut TcpStream,
    cbuf: &mut BytesMut,
    to_client: &mut OutQueue,
) -> Result<Acquired, ClientError> {
    if s.answer_without_server(cbuf, to_client) {
        return Ok(Acquired::Answered);
    }
    let Some(dest) = destination(s, client, cbuf, to_client).await? else {
        return Ok(Acquired::Answered);
    };
    loop {
        let (node, hold_writes) = match dest {
            Destination::Primary => (Node::Primary, false),
            Destination::Replicas {
                with_primary,
                hold_writes,
            } => (s.group.choose(with_primary, s.route.wrote_at), hold_writes),
        };
        let pool = s.group.pool(node);
        match checkout(pool, client, cbuf).await {
            Ok(Some(server)) => {
                let retry = match node {
                    Node::Replica(_) => retry_window(cbuf),
                    Node::Primary => None,
                };
                return Ok(Acquired::Server {
                    server,
                    route: LinkRoute::new(node, hold_writes),
                    retry,
                });
            }
            Ok(None) => return Ok(Acquired::Gone),
            Err(PoolError::Server(e)) if node != Node::Primary => {
                tracing::warn!(pool = %pool.key, error = %e, "replica unreachable; banned, request placed again");
                s.group.ban(node);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where the request should go; None when it was `SET pgweir.route`, answered here.
async fn destination(
    s: &mut Session,
    client: &mut TcpStream,
    cbuf: &mut BytesMut,
    to_client: &mut OutQueue,
) -> Result<Option<Destination>, ClientError> {
    let mode = s.pool.mode();
    let scan = mode != PoolMode::Session && s.group.routes() && s.lexable();
    let class = if scan {
        match scan_until_complete(s, client, cbuf).await? {
            Scan::Setting(setting, len) => {
                let _ = cbuf.split_to(len);
                s.route.setting = Some(setting);
                to_client.push(route_reply(TxStatus::Idle));
                return Ok(None);
            }
            Scan::Request(class) => class,
            Scan::NeedMore => Classification::UNKNOWN,
        }
    } else {
        Classification::UNKNOWN
    };
    Ok(Some(decide(s.group.policy(), mode, s.route.setting, class)))
}

/// Reads until the first request is whole (it is usually whole already), so all of it is
/// classified before a server is chosen. A client that stops part-way gets the primary.
async fn scan_until_complete(
    s: &Session,
    client: &mut TcpStream,
    cbuf: &mut BytesMut,
) -> Result<Scan, ClientError> {
    let functions = &s.group.routing.functions;
    loop {
        let scan = scan_request(cbuf, &s.statements, functions, s.route.unnamed);
        if scan != Scan::NeedMore {
            return Ok(scan);
        }
        ensure_spare(cbuf);
        if client.read_buf(cbuf).await? == 0 {
            return Ok(Scan::NeedMore);
        }
    }
}

/// Takes a server, leaving the queue at once if the client disconnects while it waits.
/// Whatever the client sends meanwhile stays buffered for the server.
async fn checkout(
    pool: &Arc<Pool>,
    client: &mut TcpStream,
    cbuf: &mut BytesMut,
) -> Result<Option<PooledServer>, PoolError> {
    let wait = pool.checkout();
    tokio::pin!(wait);
    loop {
        ensure_spare(cbuf);
        tokio::select! {
            biased;
            server = &mut wait => return server.map(Some),
            read = client.read_buf(cbuf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return Ok(None);
                }
            }
        }
    }
}

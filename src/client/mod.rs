//! One client connection from accept to goodbye: TLS negotiation ([`crate::net::accept`]),
//! then the login in four steps ([`login`]): the startup packets ([`startup`]),
//! authentication ([`authenticate`]), admission (client limits, pools, startup settings) and
//! the greeting (ParameterStatus, BackendKeyData, ReadyForQuery); then the [`relay`], or for
//! the virtual admin database the [`crate::admin`] console. Every failure a client can see is
//! turned into an ErrorResponse with its SQLSTATE here.

pub mod acquire;
pub mod authenticate;
pub mod buffers;
mod error;
pub mod handoff;
pub mod inspect;
pub mod link;
mod login;
pub mod params;
pub mod relay;
pub mod reset;
pub mod routing;
pub mod settle;
mod startup;
pub mod state;
pub mod txn;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::admin;
use crate::app::App;
use crate::cancel::ClientKey;
use crate::clients::{stop, ClientEntry};
use crate::config::Config;
use crate::error::{ClientVisible, Severity};
use crate::net::accept;
use crate::net::addr::Addr;
use crate::net::stream::Stream;
use crate::net::transport::Transport;
use crate::pool::PoolError;
use crate::protocol::backend;
use crate::server::ServerConn;
pub use error::ClientError;
use login::{InForce, Login};

/// Serves one accepted connection to the end, reporting a fatal error if there is one.
pub async fn serve(app: Arc<App>, stream: Stream, peer: Addr) {
    let _counted = app.shutdown.client();
    // Enough for a login's messages; the relay grows it when requests come. Thousands of
    // clients logging in at once each hold one.
    let mut buf = BytesMut::with_capacity(1024);
    // Boxed, as the login below: a future's size is its largest state's, and the task
    // keeps that size while its client sits idle.
    let in_force = InForce::now(&app);
    let encrypted = encrypt(&app, &in_force.config, stream, &mut buf, &peer);
    let Some((mut stream, transport)) = Box::pin(encrypted).await else {
        return;
    };
    let who = Who::default();
    if let Err(e) = session(&app, in_force, &mut stream, &mut buf, &transport, &who).await {
        Box::pin(farewell(e, &mut stream, &who, &peer)).await;
    }
}

/// Logs why a session ended early and tells the client when it can still be told.
async fn farewell(e: ClientError, stream: &mut Stream, who: &Who, peer: &Addr) {
    count_timeout(&e);
    let (database, user) = (who.database(), who.user());
    if e.reportable() {
        tracing::info!(client = %peer, database, user, error = %e, "closing client connection");
        let msg = backend::error_bytes(Severity::Fatal, e.sqlstate(), &e.to_string());
        let _ = stream.write_all(&msg).await;
        let _ = stream.flush().await;
    } else {
        tracing::debug!(client = %peer, database, user, error = %e, "client connection ended");
    }
}

/// The database and user a connection's startup packet asked for, once it has: for the
/// lines logged about the connection, and to tell a login from a CancelRequest.
#[derive(Debug, Default)]
struct Who(OnceLock<(String, String)>);

impl Who {
    fn set(&self, database: &str, user: &str) {
        let _ = self.0.set((database.to_owned(), user.to_owned()));
    }

    fn database(&self) -> Option<&str> {
        self.0.get().map(|(d, _)| d.as_str())
    }

    fn user(&self) -> Option<&str> {
        self.0.get().map(|(_, u)| u.as_str())
    }
}

/// TLS negotiation with the TLS material in force, within `client_login_timeout`. A client
/// that sends nothing at all in that time, or until shutdown can wait no more, is told why
/// it is dropped; one that stops halfway through a handshake cannot be told.
async fn encrypt(
    app: &App,
    config: &Config,
    mut stream: Stream,
    buf: &mut BytesMut,
    peer: &Addr,
) -> Option<(Stream, Transport)> {
    let tls = app.tls.load_full();
    let limit = config.pgweir.client_login_timeout;
    let deadline = (!limit.is_zero()).then(|| tokio::time::Instant::now() + limit);
    let timed_out = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
        ClientError::LoginTimeout(limit)
    };
    let silent = tokio::select! {
        _ = stream.arrival() => None,
        e = timed_out => Some(e),
        e = stop::refuse_login(app.shutdown.watch(), || false) => Some(e.into()),
    };
    if let Some(e) = silent {
        count_timeout(&e);
        tracing::info!(client = %peer, error = %e, "closing client connection");
        let msg = backend::error_bytes(Severity::Fatal, e.sqlstate(), &e.to_string());
        let _ = stream.write_all(&msg).await;
        return None;
    }
    let negotiate = accept::negotiate(tls.client.as_ref(), stream, buf, peer);
    let negotiated = match deadline {
        Some(at) => tokio::time::timeout_at(at, negotiate).await.ok().flatten(),
        None => negotiate.await,
    };
    if negotiated.is_none() {
        tracing::debug!(client = %peer, "client left or did not finish TLS negotiation in time");
    }
    negotiated
}

/// The login within `client_login_timeout`, then the session. What was in force for the
/// login is dropped once the client has logged in: a client connected for days must not
/// keep a configuration alive.
async fn session(
    app: &App,
    in_force: InForce,
    stream: &mut Stream,
    buf: &mut BytesMut,
    transport: &Transport,
    who: &Who,
) -> Result<(), ClientError> {
    let limit = in_force.config.pgweir.client_login_timeout;
    let login = Login {
        app,
        in_force,
        transport,
    };
    let logged_in = async {
        let login = Box::pin(login.run(stream, buf, who));
        if limit.is_zero() {
            return login.await;
        }
        tokio::time::timeout(limit, login)
            .await
            .map_err(|_| ClientError::LoginTimeout(limit))?
    };
    let refused = stop::refuse_login(app.shutdown.watch(), || who.0.get().is_some());
    let ready = tokio::select! {
        ready = logged_in => ready?,
        e = refused => return Err(e.into()),
    };
    drop(login);
    let Some(ready) = ready else {
        return Ok(());
    };
    serve_ready(app, ready, stream, buf, transport).await
}

/// A logged-in client from its ReadyForQuery to the end: the relay or the console, and the
/// lines and counters its ending leaves.
async fn serve_ready(
    app: &App,
    ready: Ready,
    stream: &mut Stream,
    buf: &mut BytesMut,
    transport: &Transport,
) -> Result<(), ClientError> {
    let peer = &transport.addr;
    let info = ready.entry().shared_info();
    let (database, user, since) = (&info.database, &info.user, Instant::now());
    if app.config().pgweir.log_connections {
        tracing::info!(client = %peer, %database, %user, "client logged in");
    }
    let ended = match ready {
        Ready::Relay(session) => match relay::run(*session, stream, buf).await {
            Ok(Some(session)) => Err(handoff::give(app, &session, stream, buf)),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        },
        Ready::Console(console) => Box::pin(admin::run(app, console, stream, buf))
            .await
            .map_err(ClientError::from),
    };
    if let Some(e) = ended.as_ref().err().filter(|e| e.reportable()) {
        // pgweir's own errors count with the servers' (which the relay counts).
        let labels = [
            ("database", database.clone()),
            ("user", user.clone()),
            ("class", e.sqlstate().0.get(..2).unwrap_or("??").to_owned()),
        ];
        metrics::counter!("pgweir_errors_total", &labels).increment(1);
    }
    // Read now, not at login: a RELOAD that turns it off applies to connected clients.
    if app.config().pgweir.log_disconnections {
        let reason = ended.as_ref().err().map(ToString::to_string);
        let reason = reason.as_deref().unwrap_or("client closed the connection");
        let duration = since.elapsed();
        tracing::info!(client = %peer, %database, %user, ?duration, reason, "client disconnected");
    }
    ended
}

/// Where a logged-in client goes next.
enum Ready {
    /// Boxed: a relay session is large, and this is moved once per login.
    Relay(Box<relay::Session>),
    Console(admin::Console),
}

impl Ready {
    /// The client's entry in the list of connected clients.
    fn entry(&self) -> &ClientEntry {
        match self {
            Ready::Relay(session) => &session.entry,
            Ready::Console(console) => &console.entry,
        }
    }
}

/// Counts a timeout that ended a client's session, by the setting that ran out.
fn count_timeout(e: &ClientError) {
    let kind = match e {
        ClientError::LoginTimeout(_) => "client_login",
        ClientError::IdleTimeout(_) => "client_idle",
        ClientError::IdleInTransaction(_) => "idle_transaction",
        ClientError::QueryTimeout(_) => "query",
        ClientError::Pool(PoolError::WaitTimeout { .. }) => "query_wait",
        _ => return,
    };
    // `kind` is one of catalog::TIMEOUT_KINDS, which start at 0.
    metrics::counter!("pgweir_timeouts_total", "kind" => kind).increment(1);
}

/// Forwards a cancel to the server the key's client holds right now, if any. A key this
/// process does not know may be another's of the same port (`so_reuseport`, a takeover):
/// with `ask_peers` it goes to them.
pub(crate) async fn forward_cancel(app: &App, key: ClientKey, ask_peers: bool) {
    if let Some((t, in_flight)) = app.cancels.target(key) {
        if let Err(e) = ServerConn::cancel(t.addr, t.key).await {
            tracing::warn!(error = %e, "forwarding cancel request failed");
        }
        drop(in_flight);
    } else if ask_peers && !app.cancels.knows(key.pid) {
        crate::control::cancel_elsewhere(app.config().pgweir.listen_port, key).await;
    } else {
        tracing::debug!("cancel request for no active query; dropped");
    }
}

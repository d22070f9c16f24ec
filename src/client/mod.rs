//! One client connection from accept to goodbye: TLS negotiation ([`crate::net::accept`]),
//! the startup packet (refusing GSS, and plaintext over TCP when `client_tls_sslmode` requires
//! TLS; routing CancelRequests), authentication ([`login`]), the first ParameterStatus,
//! BackendKeyData and ReadyForQuery, then the [`relay`], or for the virtual admin
//! database the [`crate::admin`] console. Every failure a client can see is turned into an
//! ErrorResponse with its SQLSTATE here.

pub mod acquire;
pub mod buffers;
mod error;
pub mod handoff;
pub mod inspect;
pub mod link;
pub mod login;
pub mod params;
pub mod relay;
pub mod reset;
pub mod routing;
pub mod settle;
pub mod state;
pub mod txn;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::admin::{self, Access};
use crate::app::App;
use crate::cancel::ClientKey;
use crate::clients::ClientEntry;
use crate::clients::Refused;
use crate::clients::Stop;
use crate::config::ADMIN_DATABASES;
use crate::error::{ClientVisible, Severity};
use crate::net::accept;
use crate::net::addr::Addr;
use crate::net::read;
use crate::net::stream::Stream;
use crate::net::transport::Transport;
use crate::pool::PoolError;
use crate::protocol::startup::{self, StartupMessage, StartupPacket};
use crate::protocol::{backend, ProtocolError, TxStatus, MAX_STARTUP_PACKET};
use crate::server::ServerConn;
pub use error::ClientError;
use params::ClientParams;

/// Startup parameters that are about the connection, not session settings.
const CONNECTION_PARAMS: &[&str] = &["user", "database", "options", "replication"];

/// Serves one accepted connection to the end, reporting a fatal error if there is one.
pub async fn serve(app: Arc<App>, stream: Stream, peer: Addr) {
    let _counted = app.shutdown.client();
    // Enough for a login's messages; the relay grows it when requests come. Thousands of
    // clients logging in at once each hold one.
    let mut buf = BytesMut::with_capacity(1024);
    // Boxed, as the login below: a future's size is its largest state's, and the task
    // keeps that size while its client sits idle.
    let Some((mut stream, transport)) = Box::pin(encrypt(&app, stream, &mut buf, &peer)).await
    else {
        return;
    };
    let who = Who::default();
    if let Err(e) = session(&app, &mut stream, &mut buf, &transport, &who).await {
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
    mut stream: Stream,
    buf: &mut BytesMut,
    peer: &Addr,
) -> Option<(Stream, Transport)> {
    let tls = app.tls.load_full();
    let limit = app.config().pgweir.client_login_timeout;
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
        e = crate::clients::stop::refuse_login(app.shutdown.watch(), || false) => Some(e.into()),
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

async fn session(
    app: &App,
    stream: &mut Stream,
    buf: &mut BytesMut,
    transport: &Transport,
    who: &Who,
) -> Result<(), ClientError> {
    let limit = app.config().pgweir.client_login_timeout;
    let login = async {
        let login = Box::pin(log_in(app, stream, buf, transport, who));
        if limit.is_zero() {
            return login.await;
        }
        tokio::time::timeout(limit, login)
            .await
            .map_err(|_| ClientError::LoginTimeout(limit))?
    };
    let refused =
        crate::clients::stop::refuse_login(app.shutdown.watch(), || who.0.get().is_some());
    let ready = tokio::select! {
        ready = login => ready?,
        e = refused => return Err(e.into()),
    };
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

/// Startup and authentication. `None` when the connection was only a CancelRequest.
async fn log_in(
    app: &App,
    stream: &mut Stream,
    buf: &mut BytesMut,
    transport: &Transport,
    who: &Who,
) -> Result<Option<Ready>, ClientError> {
    let peer = &transport.addr;
    let startup = loop {
        match read_startup(stream, buf).await? {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                stream.write_all(b"N").await?;
            }
            StartupPacket::Cancel { pid, secret } => {
                forward_cancel(app, ClientKey { pid, secret }, true).await;
                return Ok(None);
            }
            StartupPacket::Startup(m) => break m,
        }
    };
    // Over a Unix socket there is no TLS to require, as PgBouncer and Postgres agree.
    let tls_mode = app.config().pgweir.tls.client_sslmode;
    let unix = transport.addr.ip().is_none();
    if tls_mode.requires_tls() && !transport.tls && !unix {
        return Err(ClientError::TlsRequired(tls_mode));
    }
    let mut out = BytesMut::new();
    negotiate_version(&startup, &mut out);
    if startup
        .get("replication")
        .is_some_and(|r| r != "false" && r != "0")
    {
        return Err(ClientError::Replication);
    }
    let user = startup
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or(ClientError::NoUser)?;
    let database = startup
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(user);
    who.set(database, user);
    if !out.is_empty() {
        stream.write_all(&out).await?;
        out.clear();
    }
    // Names a client made up must not become label values: they would grow the metrics
    // without bound.
    let known = |name: &str, ok: bool| {
        if ok {
            name.to_owned()
        } else {
            "unknown".to_owned()
        }
    };
    let console = admin::is_console(database);
    if console && owner_on_socket(transport, user) {
        tracing::info!(client = %peer, user, "console access by pgweir's own OS user on its socket");
        return enter_console(app, stream, database, user, peer, Some(Access::Admin)).await;
    }
    let pair = [
        (
            "database",
            known(
                database,
                console || app.config().databases.contains_key(database),
            ),
        ),
        ("user", known(user, app.users().get(user).is_some())),
    ];
    if let Err(e) = login::authenticate(app, stream, buf, user, database, transport).await {
        metrics::counter!("pgweir_client_auth_failures_total", &pair).increment(1);
        return Err(e);
    }
    if console {
        return enter_console(app, stream, database, user, peer, None).await;
    }
    if app.pools.control.is_disabled(database) {
        return Err(ClientError::Disabled(database.to_owned()));
    }
    // Authenticated: a real user (perhaps found by auth_query), so its name is a fair label.
    let pair = [pair[0].clone(), ("user", user.to_owned())];
    metrics::counter!("pgweir_client_logins_total", &pair).increment(1);
    backend::authentication_ok(&mut out);
    stream.write_all(&out).await?;
    out.clear();

    let g = &app.config().pgweir;
    let slot = app
        .client_limits
        .admit(
            database,
            user,
            g.max_db_client_connections,
            g.max_user_client_connections,
        )
        .map_err(|refused| too_many(refused, database, user))?;
    let group = app.pools.get(database, user)?;
    let defaults = group.primary.startup_params().await?;
    let settings = session_settings(&startup, &g.ignore_startup_parameters);
    params::judge(&settings, group.primary.catalog().as_deref())?;
    let params = ClientParams::new(&defaults, &settings);
    let cancel = app.cancels.register();
    for (k, v) in params.reported.iter() {
        backend::parameter_status(&mut out, k, v);
    }
    let key = cancel.key();
    backend::backend_key_data(&mut out, key.pid, key.secret);
    backend::ready_for_query(&mut out, TxStatus::Idle);
    let shared = Arc::clone(&app.pins);
    if !app.admitting() {
        // Shutdown began while this client was logging in.
        return Err(ClientError::ShuttingDown);
    }
    // Listed before it hears ReadyForQuery, so SHOW CLIENTS has it as soon as it can act.
    let entry = app
        .clients
        .register(*peer, database, user, stream.tls_description());
    stream.write_all(&out).await?;
    let stop = Stop::new(app.shutdown.watch(), entry.kill_watch());
    Ok(Some(Ready::Relay(Box::new(relay::Session::new(
        group, params, cancel, slot, shared, entry, stop,
    )))))
}

/// Whether a console login is PgBouncer's trusted one: the admin user name (`pgbouncer`,
/// or `pgweir`) from a process of pgweir's own OS user on the Unix socket, which the kernel
/// vouches for. It gets the whole console without a password, so runbooks that use
/// `psql -h /socket/dir -U pgbouncer pgbouncer` as the pooler's user keep working.
fn owner_on_socket(transport: &Transport, user: &str) -> bool {
    ADMIN_DATABASES.contains(&user) && transport.peer_uid == Some(nix::unistd::getuid().as_raw())
}

/// An authenticated client of the admin console: refused unless `user` is an admin or
/// stats user (or `granted` rights without being one), else welcomed and registered like
/// any client.
async fn enter_console(
    app: &App,
    stream: &mut Stream,
    database: &str,
    user: &str,
    peer: &Addr,
    granted: Option<Access>,
) -> Result<Option<Ready>, ClientError> {
    let access = granted
        .or_else(|| Access::of(&app.config().pgweir, user))
        .ok_or_else(|| ClientError::ConsoleDenied(user.to_owned()))?;
    let labels = [("database", database.to_owned()), ("user", user.to_owned())];
    metrics::counter!("pgweir_client_logins_total", &labels).increment(1);
    let mut out = BytesMut::new();
    backend::authentication_ok(&mut out);
    admin::welcome(&mut out, access);
    if !app.accepting() {
        // Shutdown began while this client was logging in.
        return Err(ClientError::ShuttingDown);
    }
    let entry = app
        .clients
        .register(*peer, database, user, stream.tls_description());
    stream.write_all(&out).await?;
    Ok(Some(Ready::Console(admin::Console { access, entry })))
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

fn too_many(refused: Refused, database: &str, user: &str) -> ClientError {
    let (kind, name, setting) = match refused {
        Refused::Database => ("database", database, "max_db_client_connections"),
        Refused::User => ("user", user, "max_user_client_connections"),
    };
    ClientError::TooManyClients {
        kind,
        name: name.to_owned(),
        setting,
    }
}

/// Answers a newer 3.x minor version, and any `_pq_.` options, with what pgweir speaks.
fn negotiate_version(m: &StartupMessage, out: &mut BytesMut) {
    let unknown: Vec<String> = m
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if m.minor > 0 || !unknown.is_empty() {
        backend::negotiate_protocol_version(out, 0, &unknown);
    }
}

/// Startup parameters that are session settings, with `options` expanded, less those in
/// `ignore_startup_parameters` (`options` there ignores the whole of it, as in PgBouncer).
fn session_settings(m: &StartupMessage, ignore: &[String]) -> Vec<(String, String)> {
    let ignored = |k: &str| ignore.iter().any(|i| i.eq_ignore_ascii_case(k));
    let mut out: Vec<(String, String)> = m
        .params
        .iter()
        .filter(|(k, _)| !CONNECTION_PARAMS.contains(&k.as_str()) && !k.starts_with("_pq_."))
        .cloned()
        .collect();
    if let Some(opts) = m.get("options").filter(|_| !ignored("options")) {
        out.extend(startup::parse_options(opts));
    }
    out.retain(|(k, _)| !ignored(k));
    out
}

/// Reads one untagged startup-phase packet.
async fn read_startup(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<StartupPacket, ClientError> {
    read::fill(stream, buf, 4).await?;
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Err(ProtocolError::BadStartupLength(len).into());
    }
    read::fill(stream, buf, len).await?;
    let packet = buf.split_to(len);
    Ok(startup::parse(&packet[4..])?)
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

//! A logged-in client between transactions, handed from one pgweir process to the next in
//! a takeover ([`crate::takeover`]). [`give`] turns the old process's session into a
//! [`HandedClient`] and posts it with a copy of the client's socket; [`resume`] builds the
//! session again in the new process and serves the client from where it was. The client
//! sees nothing: the same connection, cancel key, settings and prepared statements (each
//! prepared again on the new process's servers at its first use there), and the bytes it
//! had already sent.
//!
//! What cannot cross: a TLS session (its keys and sequence numbers live in this process's
//! rustls state) and a client pinned to its server (its state lives in that server
//! connection). Those are closed between transactions with FATAL 57P01, as in a shutdown.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};

use super::inspect::analysis;
use super::login::too_many;
use super::params::ClientParams;
use super::relay::Session;
use super::{ClientError, Ready};
use crate::app::App;
use crate::cancel::ClientKey;
use crate::clients::{Stop, Stopped};
use crate::config::PoolMode;
use crate::control::HandedClient;
use crate::net::addr::Addr;
use crate::net::stream::Stream;
use crate::net::transport::Transport;
use crate::prepared::Unnamed;
use crate::protocol::split_cstr;
use crate::secret::passthrough::ScramClientKey;
use crate::secret::StoredSecret;

/// Whether the session can be handed over as it stands (the relay asks between
/// transactions, holding no server).
pub fn possible(s: &Session, client: &Stream) -> bool {
    s.stop.hand_over() && client.plain_fd().is_some() && s.pins.is_empty() && s.sticky.is_empty()
}

/// Posts the client to the successor. Always ends the session here: `HandedOver` when the
/// successor takes it, shutting down (FATAL 57P01) when there is none any more.
pub fn give(app: &App, s: &Session, client: &Stream, cbuf: &[u8]) -> ClientError {
    let Some(fd) = client
        .plain_fd()
        .and_then(|fd| fd.try_clone_to_owned().ok())
    else {
        return ClientError::Stopped(Stopped::ShuttingDown);
    };
    let info = s.entry.shared_info();
    let tcp_peer = match info.addr {
        Addr::Tcp(a) => Some(a),
        Addr::Unix { .. } => None,
    };
    let known = app.keyring.of(&info.database, &info.user);
    let secret = known.secret();
    let client_key = match &secret {
        Some(StoredSecret::Scram(v)) => known.client_key(v),
        _ => None,
    };
    let state = HandedClient {
        database: info.database.clone(),
        user: info.user.clone(),
        tcp_peer,
        cancel: (s.cancel.key().pid, s.cancel.key().secret),
        reported: s.params.reported.iter().map(owned).collect(),
        other: s.params.other.clone(),
        custom_names: s.custom_names.clone(),
        statements: s
            .statements
            .named()
            .map(|(name, stmt)| (B64.encode(name), B64.encode(parse_body(&stmt.parse))))
            .collect(),
        unnamed: s
            .statements
            .unnamed
            .as_ref()
            .and_then(|u| u.parse.as_ref())
            .map(|p| B64.encode(&p[5..])),
        route_setting: s.route.setting,
        wrote_ago: s.route.wrote_at.map(|at| at.elapsed()),
        primary_next: s.route.primary_next,
        pending: B64.encode(cbuf),
        secret: secret.map(|s| s.to_text()),
        client_key: client_key.map(|k| B64.encode(k.0)),
    };
    if app.handoff.post(fd, Box::new(state)) {
        ClientError::HandedOver
    } else {
        ClientError::Stopped(Stopped::ShuttingDown)
    }
}

fn owned((k, v): (&str, &str)) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

/// A statement's Parse message less its header and pgweir's name for it: the text and
/// parameter types, the registry's key.
fn parse_body(parse: &Bytes) -> &[u8] {
    let body = parse.get(5..).unwrap_or_default();
    split_cstr(body).map_or(body, |(_, rest)| rest)
}

/// Serves a client a predecessor handed over, from where it was.
pub async fn resume(app: Arc<App>, fd: OwnedFd, h: HandedClient) {
    let _counted = app.shutdown.client();
    let tcp = h.tcp_peer.is_some();
    let mut stream = match Stream::adopt(fd, tcp) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "takeover: cannot serve a handed-over client");
            return;
        }
    };
    let g = app.config();
    let addr = match (h.tcp_peer, &g.pgweir.unix_socket) {
        (Some(a), _) => Addr::Tcp(a),
        (None, Some(u)) => Addr::unix(&u.dir, g.pgweir.listen_port),
        (None, None) => Addr::unix(&std::env::temp_dir(), g.pgweir.listen_port),
    };
    let transport = Transport {
        addr,
        tls: false,
        cert_name: None,
        end_point: None,
        peer_uid: None,
    };
    let who = super::Who::default();
    who.set(&h.database, &h.user);
    let mut buf = BytesMut::from(&B64.decode(&h.pending).unwrap_or_default()[..]);
    let ended = match restore(&app, h, addr).await {
        Ok(session) => {
            let ready = Ready::Relay(Box::new(session));
            super::serve_ready(&app, ready, &mut stream, &mut buf, &transport).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = ended {
        super::farewell(e, &mut stream, &who, &addr).await;
    }
}

/// The session again, in this process.
async fn restore(app: &App, h: HandedClient, peer: Addr) -> Result<Session, ClientError> {
    let (database, user) = (h.database.as_str(), h.user.as_str());
    if let Some(secret) = h
        .secret
        .as_deref()
        .and_then(|s| StoredSecret::parse(s).ok())
    {
        let key = h.client_key.as_deref().and_then(|k| B64.decode(k).ok());
        let key = key.and_then(|k| k.try_into().ok()).map(ScramClientKey);
        app.keyring.remember(database, user, &secret, key);
    }
    let g = &app.config().pgweir;
    let (db_limit, user_limit) = (g.max_db_client_connections, g.max_user_client_connections);
    let slot = app
        .client_limits
        .admit(database, user, db_limit, user_limit)
        .map_err(|refused| too_many(refused, database, user))?;
    let group = app.pools.get(database, user)?;
    let defaults = group.primary.startup_params().await?;
    let mut params = ClientParams::new(&defaults, &[]);
    for (k, v) in &h.reported {
        params.reported.set(k, v);
    }
    params.other = h.other;
    let key = ClientKey {
        pid: h.cancel.0,
        secret: h.cancel.1,
    };
    let cancel = app
        .cancels
        .register_as(key)
        .ok_or(ClientError::HandoverFailed("its cancel key is taken here"))?;
    let entry = app.clients.register(peer, database, user, String::new());
    let stop = Stop::new(app.shutdown.watch(), entry.kill_watch());
    let shared = Arc::clone(&app.pins);
    let mut s = Session::new(group, params, cancel, slot, shared, entry, stop);
    let routes = s.group.routes() && s.pool.mode() != PoolMode::Session;
    let functions = routes.then_some(&s.group.routing.functions);
    for (name, key) in &h.statements {
        let (Ok(name), Ok(key)) = (B64.decode(name), B64.decode(key)) else {
            continue;
        };
        let text = split_cstr(&key).map_or(&key[..], |(q, _)| q);
        let stmt = s.pool.statements.intern(&key, || analysis(text, functions));
        s.statements.insert(Bytes::from(name), stmt);
    }
    // Its classification is not carried: until the client's next Parse, Binds of the
    // unnamed statement go to the primary, which is always correct.
    let unnamed = h.unnamed.as_deref().and_then(|b| B64.decode(b).ok());
    s.statements.unnamed = unnamed.map(|body| Unnamed::new(Some(&body), None));
    s.custom_names = h.custom_names;
    s.route.setting = h.route_setting;
    s.route.wrote_at = h.wrote_ago.and_then(|ago| Instant::now().checked_sub(ago));
    s.route.primary_next = h.primary_next;
    Ok(s)
}

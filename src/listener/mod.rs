//! Accepting client connections on every socket [`bind`] opened (TCP addresses and the Unix
//! socket), enforcing `max_client_conn` across all of them (refusing the excess with FATAL
//! 53300 rather than letting them hang) and spawning one task per client running
//! [`crate::client::serve`].

pub mod bind;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use bind::{bind, probe, BindError, Handover, Listeners, UnixSocketListener};

use crate::app::App;
use crate::error::{Severity, SqlState};
use crate::net::addr::Addr;
use crate::net::stream::Stream;
use crate::protocol::backend;

/// How long accepting pauses after a failure (usually EMFILE), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts clients on every listener until the future is dropped (which closes them, and
/// removes the Unix socket's file).
pub async fn serve(app: Arc<App>, listeners: Listeners) {
    let slots = Arc::new(Semaphore::new(app.config().pgweir.max_client_conn));
    let mut tasks = JoinSet::new();
    for listener in listeners.tcp {
        tasks.spawn(accept_tcp(Arc::clone(&app), Arc::clone(&slots), listener));
    }
    if let Some(socket) = listeners.unix {
        tasks.spawn(accept_unix(Arc::clone(&app), Arc::clone(&slots), socket));
    }
    while tasks.join_next().await.is_some() {}
}

async fn accept_tcp(app: Arc<App>, slots: Arc<Semaphore>, listener: TcpListener) {
    // The tcp_* settings wait for a restart, as the pools' do.
    let tcp = app.config().pgweir.tcp;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                if let Err(e) = crate::net::tcp::tune(&stream, &tcp) {
                    tracing::debug!(error = %e, "cannot set the client socket's tcp_* options");
                }
                admit(&app, &slots, Stream::Plain(stream), Addr::Tcp(peer));
            }
            Err(e) => backoff(e).await,
        }
    }
}

async fn accept_unix(app: Arc<App>, slots: Arc<Semaphore>, socket: UnixSocketListener) {
    loop {
        match socket.listener.accept().await {
            Ok((unix, _)) => admit(&app, &slots, Stream::Unix(unix), socket.addr),
            Err(e) => backoff(e).await,
        }
    }
}

async fn backoff(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// Serves the client if a `max_client_conn` slot is free, refuses it otherwise.
fn admit(app: &Arc<App>, slots: &Arc<Semaphore>, stream: Stream, peer: Addr) {
    match Arc::clone(slots).try_acquire_owned() {
        Ok(permit) => {
            let app = Arc::clone(app);
            tokio::spawn(async move {
                crate::client::serve(app, stream, peer).await;
                drop(permit);
            });
        }
        Err(_) => {
            tokio::spawn(refuse(stream, peer));
        }
    }
}

/// Tells a client over `max_client_conn` why it cannot stay.
async fn refuse(mut stream: Stream, peer: Addr) {
    tracing::warn!(client = %peer, "max_client_conn reached; refusing client");
    let msg = backend::error_bytes(
        Severity::Fatal,
        SqlState::TOO_MANY_CONNECTIONS,
        "too many client connections (max_client_conn)",
    );
    let _ = stream.write_all(&msg).await;
}

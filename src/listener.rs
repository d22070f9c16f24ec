//! Accepting client connections: binds `listen_addr:listen_port`, enforces `max_client_conn`
//! (refusing the excess with FATAL 53300 rather than letting them hang) and spawns one task
//! per client running [`crate::client::serve`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::app::App;
use crate::error::{Severity, SqlState};
use crate::protocol::backend;

/// Binds the configured address.
pub async fn bind(app: &App) -> std::io::Result<TcpListener> {
    let g = &app.config().pgweir;
    TcpListener::bind((g.listen_addr.as_str(), g.listen_port)).await
}

/// Accepts clients forever.
pub async fn serve(app: Arc<App>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(app.config().pgweir.max_client_conn));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let app = Arc::clone(&app);
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
}

/// Tells a client over `max_client_conn` why it cannot stay.
async fn refuse(mut stream: TcpStream, peer: SocketAddr) {
    tracing::warn!(client = %peer, "max_client_conn reached; refusing client");
    let msg = backend::error_bytes(
        Severity::Fatal,
        SqlState::TOO_MANY_CONNECTIONS,
        "too many client connections (max_client_conn)",
    );
    let _ = stream.write_all(&msg).await;
}

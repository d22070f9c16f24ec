//! The control socket every pgweir process of a port binds, and what crosses it between
//! processes: [`Message`]s in frames with descriptors attached ([`wire`]), the clients a
//! takeover moves ([`HandedClient`], posted by client tasks to the [`Outbox`]), and
//! CancelRequests for clients another process serves ([`cancel_elsewhere`]). The
//! procedures that use it (taking over, handing over) are [`crate::takeover`]'s.

pub mod handed;
pub mod outbox;
pub mod wire;

use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cancel::ClientKey;
pub use handed::HandedClient;
pub use outbox::Outbox;
use wire::Wire;

/// What crosses a control connection.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Message {
    /// New to old: hand everything over to process `pid`.
    Takeover { pid: u32 },
    /// Any process to another: forward this cancel if the client is yours.
    Cancel { pid: i32, secret: i32 },
    /// Old to new, with descriptors attached in this order: each TCP socket, the Unix socket
    /// (with its directory and port), the metrics socket.
    Sockets {
        tcp: usize,
        unix: Option<(PathBuf, u16)>,
        metrics: bool,
    },
    /// New to old: accepting on the sockets; hand the clients over.
    Accepting,
    /// Old to new: one client, its socket attached.
    Client(Box<HandedClient>),
    /// Old to new: every client has been handed over or has left.
    Done { handed: usize },
    /// The request cannot be served (another takeover is under way).
    Refused { why: String },
}

/// The port's control directory.
pub fn control_dir(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("pgweir-{port}"))
}

/// Control sockets in `dir`, oldest first, less this process's own.
pub fn sockets_in(dir: &Path) -> Vec<PathBuf> {
    let own = format!("{}.sock", std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".sock") && n != own)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Sends a cancel this process could not place to every other process of the port.
pub async fn cancel_elsewhere(port: u16, key: ClientKey) {
    let sent = tokio::task::spawn_blocking(move || {
        for path in sockets_in(&control_dir(port)) {
            match StdUnixStream::connect(&path) {
                Ok(stream) => {
                    let cancel = Message::Cancel {
                        pid: key.pid,
                        secret: key.secret,
                    };
                    if let Err(e) = Wire::new(stream).send(&cancel, &[]) {
                        tracing::debug!(error = %e, "cancel not sent to a peer");
                    }
                }
                // A socket nobody listens on was left by a process that was killed.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => {}
            }
        }
    });
    let _ = sent.await;
}

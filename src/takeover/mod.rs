//! Processes of one port talking to each other: `pgweir --takeover` (a new process takes
//! the listening sockets and the clients of a running one, so an upgrade refuses and drops
//! nobody) and CancelRequests that reach a process other than the one serving the client
//! (`so_reuseport`, or a client still finishing a transaction in the process being taken
//! over).
//!
//! Every process binds a control socket `<pid>.sock` in the port's control directory,
//! `$TMPDIR/pgweir-<listen_port>/` (mode 0700: only pgweir's own OS user may connect, and a
//! takeover is checked against the caller's credentials as well). The protocol is frames of
//! JSON with descriptors attached ([`crate::control`]):
//!
//! 1. The new process connects to the oldest socket in the directory and sends
//!    [`Message::Takeover`]; the old one answers [`Message::Sockets`] with its listening TCP
//!    and Unix sockets and its metrics socket attached.
//! 2. The new process accepts on them at once (connections queued meanwhile are in the
//!    kernel's queue, the same for both: none is refused) and answers [`Message::Accepting`].
//! 3. The old process stops accepting and drains: each client, once between transactions,
//!    is sent over as a [`Message::Client`] with its socket and its session
//!    ([`crate::client::handoff`]); TLS clients and clients pinned to a server are closed
//!    with FATAL 57P01 instead. [`Message::Done`] ends it, and the old process exits.
//!
//! A process that gets a CancelRequest for a key it does not know sends it to every other
//! control socket of the port as [`Message::Cancel`]; the one serving that client forwards it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::UnixListener;
use tokio::sync::Notify;

use crate::app::App;
use crate::cancel::ClientKey;
use crate::control::wire::{Wire, WireError};
use crate::control::{control_dir, sockets_in, Message};
use crate::listener::{Handover, Listeners};

/// Why a takeover could not happen.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error("no running pgweir on port {port} to take over: no control socket answers in {}", dir.display())]
    NoneRunning { port: u16, dir: PathBuf },
    #[error("the running pgweir refused the takeover: {0}")]
    Refused(String),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("control directory {}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// How long a control connection's peer may take to send a message.
const CONTROL_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// This process's control socket; its file goes with it.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

/// The directory goes with its last socket (removing one that still holds another's fails).
impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Binds `<pid>.sock` in the port's control directory, creating the directory for this OS
/// user only. A directory another user owns is refused: its sockets could be anyone's.
pub fn bind_control(port: u16) -> Result<ControlSocket, TakeoverError> {
    let dir = control_dir(port);
    let failed = |source| TakeoverError::Dir {
        dir: dir.clone(),
        source,
    };
    let path = dir.join(format!("{}.sock", std::process::id()));
    // Twice: the last process of the port may remove the directory between our making it
    // and binding in it.
    let mut attempt = 0;
    let listener = loop {
        attempt += 1;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(failed)?;
        let meta = std::fs::metadata(&dir).map_err(failed)?;
        if meta.uid() != nix::unistd::getuid().as_raw() || meta.permissions().mode() & 0o077 != 0 {
            let why = "owned by another user or open to others";
            return Err(failed(std::io::Error::other(why)));
        }
        let _ = std::fs::remove_file(&path);
        match UnixListener::bind(&path) {
            Ok(listener) => break listener,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 2 => continue,
            Err(e) => return Err(failed(e)),
        }
    };
    Ok(ControlSocket { listener, path })
}

/// The listening sockets and the metrics socket, as offered.
type Offered = (Handover, Option<OwnedFd>);

/// What the running process can hand over once, and how it learns that it did.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Copies of the listening sockets' descriptors, and of the metrics socket's. Taken by
    /// the takeover, or withdrawn when the process shuts down without one (a copy kept
    /// open would keep the port listening with nobody accepting).
    sockets: Arc<Mutex<Option<Offered>>>,
    /// Notified once a successor accepts on the sockets: stop accepting, drain.
    pub handed: Arc<Notify>,
}

impl Offer {
    pub fn new(sockets: Handover, metrics: Option<OwnedFd>) -> Self {
        Offer {
            sockets: Arc::new(Mutex::new(Some((sockets, metrics)))),
            handed: Arc::default(),
        }
    }

    /// Shutdown without a successor: nothing is offered any more.
    pub fn withdraw(&self) {
        self.sockets.lock().take();
    }
}

/// Answers control connections until the process exits.
pub async fn serve(app: Arc<App>, control: ControlSocket, offer: Offer) {
    let me = nix::unistd::getuid().as_raw();
    loop {
        let Ok((stream, _)) = control.listener.accept().await else {
            continue;
        };
        let trusted = stream.peer_cred().is_ok_and(|c| c.uid() == me);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let (app, offer) = (Arc::clone(&app), offer.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = answer(&app, &handle, stream, &offer, trusted) {
                tracing::warn!(error = %e, "control connection failed");
            }
        });
    }
}

/// One control connection, on a blocking thread.
fn answer(
    app: &Arc<App>,
    handle: &tokio::runtime::Handle,
    stream: StdUnixStream,
    offer: &Offer,
    trusted: bool,
) -> Result<(), WireError> {
    stream.set_nonblocking(false)?;
    // A peer that connects and says nothing does not hold this thread for long; the
    // takeover's only other read (the successor's Accepting) is as quick.
    stream.set_read_timeout(Some(CONTROL_READ_LIMIT))?;
    let mut wire = Wire::new(stream);
    match wire.recv::<Message>()? {
        Some(Message::Cancel { pid, secret }) => {
            let key = ClientKey { pid, secret };
            handle.block_on(crate::client::forward_cancel(app, key, false));
            Ok(())
        }
        Some(Message::Takeover { pid }) if trusted => hand_over(app, wire, offer, pid),
        Some(other) => {
            tracing::warn!(message = ?other, trusted, "control connection: unexpected request");
            Ok(())
        }
        None => Ok(()),
    }
}

/// The old side of a takeover: sockets, then clients as they come between transactions.
fn hand_over(app: &Arc<App>, mut wire: Wire, offer: &Offer, pid: u32) -> Result<(), WireError> {
    let refused = |wire: &mut Wire| {
        let why = "another takeover is under way, or this process is stopping".to_owned();
        wire.send(&Message::Refused { why }, &[])
    };
    let Some((sockets, metrics)) = offer.sockets.lock().take() else {
        return refused(&mut wire);
    };
    let Some(clients) = app.handoff.start() else {
        *offer.sockets.lock() = Some((sockets, metrics));
        return refused(&mut wire);
    };
    tracing::info!(
        successor = pid,
        "takeover: handing the listening sockets over"
    );
    let unix = sockets.unix.as_ref();
    let fds: Vec<BorrowedFd<'_>> = (sockets.tcp.iter().map(AsFd::as_fd))
        .chain(unix.map(|(fd, _, _)| fd.as_fd()))
        .chain(metrics.as_ref().map(AsFd::as_fd))
        .collect();
    let message = Message::Sockets {
        tcp: sockets.tcp.len(),
        unix: unix.map(|(_, dir, port)| (dir.clone(), *port)),
        metrics: metrics.is_some(),
    };
    let accepted = wire
        .send(&message, &fds)
        .and_then(|()| wire.recv::<Message>());
    if !matches!(accepted, Ok(Some(Message::Accepting))) {
        // Nothing changed here: this process goes on serving, and may be taken over later.
        drop(fds);
        *offer.sockets.lock() = Some((sockets, metrics));
        app.handoff.reset();
        let why = format!("the successor did not take the sockets: {accepted:?}");
        return Err(WireError::Io(std::io::Error::other(why)));
    }
    sockets.handed_over.store(true, Ordering::SeqCst);
    drop((sockets, metrics));
    app.shutdown.hand_over();
    offer.handed.notify_one();
    tracing::info!(
        successor = pid,
        "takeover: the successor accepts; handing clients over between transactions"
    );
    let mut handed = 0;
    let sent = clients.iter().map_while(|c| c).try_for_each(|(fd, state)| {
        wire.send(&Message::Client(state), &[fd.as_fd()])?;
        handed += 1;
        Ok::<_, WireError>(())
    });
    // Clients still coming now find the outbox closed and are told to reconnect.
    app.handoff.abandon();
    sent?;
    wire.send(&Message::Done { handed }, &[])?;
    app.handoff.flushed();
    tracing::info!(handed, "takeover: done");
    Ok(())
}

/// What a new process takes from the one it replaces.
#[derive(Debug)]
pub struct Inherited {
    pub listeners: Listeners,
    pub metrics: Option<std::net::TcpListener>,
    pub predecessor: Predecessor,
}

/// The connection the old process's clients keep coming over until it is done.
#[derive(Debug)]
pub struct Predecessor {
    link: Wire,
}

/// The new side, step 1: takes the sockets of the oldest process on `port`. Blocking; run
/// at start, inside the runtime (the sockets are registered with it).
pub fn inherit(port: u16) -> Result<Inherited, TakeoverError> {
    let dir = control_dir(port);
    let mut refused = None;
    for path in sockets_in(&dir) {
        let Ok(stream) = StdUnixStream::connect(&path) else {
            continue;
        };
        // Bounded while the sockets come; clients come when they come.
        stream
            .set_read_timeout(Some(CONTROL_READ_LIMIT))
            .map_err(WireError::Io)?;
        let same_socket = stream.try_clone().map_err(WireError::Io)?;
        let mut wire = Wire::new(stream);
        wire.send(
            &Message::Takeover {
                pid: std::process::id(),
            },
            &[],
        )?;
        match wire.recv::<Message>()? {
            Some(Message::Sockets { tcp, unix, metrics }) => {
                let mut fds =
                    wire.take_fds(tcp + usize::from(unix.is_some()) + usize::from(metrics))?;
                let metrics = metrics
                    .then(|| fds.pop())
                    .flatten()
                    .map(std::net::TcpListener::from);
                let unix_fd = unix.as_ref().and_then(|_| fds.pop());
                let unix = unix_fd.zip(unix).map(|(fd, (dir, port))| (fd, dir, port));
                let listeners = Listeners::adopt(fds, unix).map_err(WireError::Io)?;
                same_socket.set_read_timeout(None).map_err(WireError::Io)?;
                return Ok(Inherited {
                    listeners,
                    metrics,
                    predecessor: Predecessor { link: wire },
                });
            }
            Some(Message::Refused { why }) => refused = Some(why),
            _ => {}
        }
    }
    Err(match refused {
        Some(why) => TakeoverError::Refused(why),
        None => TakeoverError::NoneRunning { port, dir },
    })
}

impl Predecessor {
    /// The new side, step 2, once accepting: tells the old process, and serves each client
    /// it hands over, on a thread of its own until the old process is done.
    pub fn receive_clients(self, app: Arc<App>) -> std::io::Result<()> {
        let handle = tokio::runtime::Handle::current();
        let mut link = self.link;
        std::thread::Builder::new()
            .name("pgweir-takeover".into())
            .spawn(move || {
                if let Err(e) = receive(&app, &handle, &mut link) {
                    tracing::warn!(error = %e, "takeover: the old process's connection failed");
                }
            })?;
        Ok(())
    }
}

fn receive(
    app: &Arc<App>,
    handle: &tokio::runtime::Handle,
    link: &mut Wire,
) -> Result<(), WireError> {
    link.send(&Message::Accepting, &[])?;
    tracing::info!("took over the listening sockets; the old process hands its clients over");
    loop {
        match link.recv::<Message>()? {
            Some(Message::Client(state)) => {
                let Some(fd) = link.take_fds(1)?.pop() else {
                    continue;
                };
                handle.spawn(crate::client::handoff::resume(Arc::clone(app), fd, *state));
            }
            Some(Message::Done { handed }) => {
                tracing::info!(
                    handed,
                    "takeover complete: the old process handed over its clients"
                );
                return Ok(());
            }
            Some(other) => tracing::warn!(message = ?other, "takeover: unexpected message"),
            None => {
                tracing::warn!("takeover: the old process left before saying it was done");
                return Ok(());
            }
        }
    }
}

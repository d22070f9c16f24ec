//! Binding what `listen_addr`, `listen_port` and `unix_socket_*` name: one TCP socket per
//! address (IPv6 ones IPv6-only, so `*` can take `0.0.0.0` and `::` on one port, as
//! PgBouncer and Postgres do), and the Unix socket `<dir>/.s.PGSQL.<port>` with its mode and
//! group. A socket file left by a process that died is replaced; one that answers is in use
//! and refused. The file is removed when its listener goes. Every failure names the key and
//! the address, so `pgweir check` ([`probe`]) and a start say what to fix.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use crate::app::Listening;
use crate::config::{GeneralConfig, ListenHost, UnixSocket};
use crate::net::addr::{socket_path, Addr};

/// Connections waiting to be accepted, per socket: the exam-start scenario's burst of
/// logins queues here rather than being refused by the kernel.
const BACKLOG: i32 = 1024;

/// Why a listening socket could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("pgweir.listen_addr: cannot resolve {host:?}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("pgweir.listen_addr: cannot listen on {addr}: {source}")]
    Tcp { addr: SocketAddr, source: io::Error },
    #[error("pgweir.unix_socket_dir: cannot listen on {}: {source}", path.display())]
    Unix { path: PathBuf, source: io::Error },
    #[error(
        "pgweir.unix_socket_dir: {} is in use: another pooler or Postgres listens on port {port} there (processes sharing a port with so_reuseport each need their own unix_socket_dir)",
        path.display()
    )]
    InUse { path: PathBuf, port: u16 },
    #[error("pgweir.{key}: cannot apply to {}: {source}", path.display())]
    Permissions {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The sockets pgweir accepts clients on.
#[derive(Debug)]
pub struct Listeners {
    pub tcp: Vec<TcpListener>,
    pub unix: Option<UnixSocketListener>,
}

impl Listeners {
    /// Where clients can reach pgweir, for the log.
    pub fn addresses(&self) -> Vec<String> {
        let tcp = self.tcp.iter().filter_map(|l| l.local_addr().ok());
        let unix = self.unix.as_ref().map(|u| u.addr.to_string());
        tcp.map(|a| a.to_string()).chain(unix).collect()
    }

    /// Each socket's descriptor and address, for SHOW FDS.
    pub fn sockets(&self) -> Vec<Listening> {
        let tcp = self.tcp.iter().filter_map(|l| {
            let addr = l.local_addr().ok()?;
            Some(Listening {
                fd: l.as_raw_fd(),
                addr: addr.ip().to_string(),
                port: addr.port(),
            })
        });
        let unix = self.unix.as_ref().map(|u| Listening {
            fd: u.listener.as_raw_fd(),
            addr: u.addr.host(),
            port: u.addr.port(),
        });
        tcp.chain(unix).collect()
    }
}

/// The listening Unix socket; its file goes with it, unless a successor process took the
/// socket over.
#[derive(Debug)]
pub struct UnixSocketListener {
    pub listener: UnixListener,
    /// What each client arriving here is known as.
    pub addr: Addr,
    path: PathBuf,
    dir: PathBuf,
    handed_over: Arc<AtomicBool>,
}

impl Drop for UnixSocketListener {
    fn drop(&mut self) {
        if !self.handed_over.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The listening sockets as a successor takes them over: copies of their descriptors, which
/// keep the sockets listening while they live.
#[derive(Debug)]
pub struct Handover {
    pub tcp: Vec<OwnedFd>,
    /// The Unix socket, its directory and port.
    pub unix: Option<(OwnedFd, PathBuf, u16)>,
    /// Set once the successor has the sockets: the Unix socket's file is then its.
    pub handed_over: Arc<AtomicBool>,
}

impl Listeners {
    /// What a successor needs to accept on these same sockets.
    pub fn handover(&self) -> io::Result<Handover> {
        let tcp = self.tcp.iter().map(|l| l.as_fd().try_clone_to_owned());
        let unix = match &self.unix {
            Some(u) => Some((
                u.listener.as_fd().try_clone_to_owned()?,
                u.dir.clone(),
                u.addr.port(),
            )),
            None => None,
        };
        Ok(Handover {
            tcp: tcp.collect::<io::Result<_>>()?,
            unix,
            handed_over: self
                .unix
                .as_ref()
                .map_or_else(Arc::default, |u| Arc::clone(&u.handed_over)),
        })
    }

    /// Listens on sockets a predecessor handed over (see [`Listeners::handover`]).
    pub fn adopt(tcp: Vec<OwnedFd>, unix: Option<(OwnedFd, PathBuf, u16)>) -> io::Result<Self> {
        let tcp = tcp
            .into_iter()
            .map(|fd| {
                let std = std::net::TcpListener::from(fd);
                std.set_nonblocking(true)?;
                TcpListener::from_std(std)
            })
            .collect::<io::Result<_>>()?;
        let unix = match unix {
            Some((fd, dir, port)) => {
                let std = std::os::unix::net::UnixListener::from(fd);
                std.set_nonblocking(true)?;
                Some(UnixSocketListener {
                    listener: UnixListener::from_std(std)?,
                    addr: Addr::unix(&dir, port),
                    path: socket_path(&dir, port),
                    dir,
                    handed_over: Arc::default(),
                })
            }
            None => None,
        };
        Ok(Listeners { tcp, unix })
    }
}

/// Binds every configured socket. Host names are resolved here, once, blocking: this runs
/// at start, before any client is served.
pub fn bind(g: &GeneralConfig) -> Result<Listeners, BindError> {
    // The socket first: whoever sees the TCP port open may use the socket at once.
    let unix = match &g.unix_socket {
        Some(u) => Some(listen_unix(u, g.listen_port)?),
        None => None,
    };
    let mut tcp = Vec::new();
    for addr in tcp_addrs(g, g.listen_port)? {
        match listen_tcp(addr, g.so_reuseport).and_then(|s| TcpListener::from_std(s.into())) {
            Ok(l) => tcp.push(l),
            Err(e) if skippable(g, addr, &e) => {
                tracing::warn!(%addr, error = %e, "listen_addr = *: no IPv6 here, IPv4 only");
            }
            Err(source) => return Err(BindError::Tcp { addr, source }),
        }
    }
    Ok(Listeners { tcp, unix })
}

/// What `pgweir check` can find out without taking the ports a running pgweir holds: that
/// each address is this host's (bound on a free port), and that the socket directory takes
/// a socket.
pub fn probe(g: &GeneralConfig) -> Vec<BindError> {
    let mut problems = Vec::new();
    match tcp_addrs(g, 0) {
        Ok(addrs) => {
            for addr in addrs {
                match listen_tcp(addr, false) {
                    Err(e) if !skippable(g, addr, &e) => {
                        let addr = SocketAddr::new(addr.ip(), g.listen_port);
                        problems.push(BindError::Tcp { addr, source: e });
                    }
                    _ => {}
                }
            }
        }
        Err(e) => problems.push(e),
    }
    if let Some(u) = &g.unix_socket {
        let path = u.dir.join(format!(
            ".s.PGSQL.{}.check.{}",
            g.listen_port,
            std::process::id()
        ));
        match std::os::unix::net::UnixListener::bind(&path) {
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
            }
            Err(source) => problems.push(BindError::Unix { path, source }),
        }
    }
    problems
}

/// Every TCP address to bind: IP addresses as written, host names resolved (each address
/// they resolve to, once).
fn tcp_addrs(g: &GeneralConfig, port: u16) -> Result<Vec<SocketAddr>, BindError> {
    let mut addrs = Vec::new();
    for host in g.listen_addr.hosts() {
        match host {
            ListenHost::Ip(ip) => addrs.push(SocketAddr::new(*ip, port)),
            ListenHost::Name(name) => {
                let resolved = (name.as_str(), port).to_socket_addrs().map_err(|source| {
                    BindError::Resolve {
                        host: name.clone(),
                        source,
                    }
                })?;
                addrs.extend(resolved);
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    Ok(addrs)
}

/// The IPv6 half of `*` on a host without IPv6 is left out, as PgBouncer leaves it.
fn skippable(g: &GeneralConfig, addr: SocketAddr, e: &io::Error) -> bool {
    let no_ipv6 = e.kind() == io::ErrorKind::AddrNotAvailable
        || e.raw_os_error() == Some(nix::libc::EAFNOSUPPORT);
    g.listen_addr.is_wildcard() && addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && no_ipv6
}

/// A listening TCP socket, not yet handed to the runtime. With `reuseport` other processes
/// that set it too may listen on the same address, each with its own accept queue.
fn listen_tcp(addr: SocketAddr, reuseport: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket)
}

fn listen_unix(u: &UnixSocket, port: u16) -> Result<UnixSocketListener, BindError> {
    let path = socket_path(&u.dir, port);
    clear_stale(&path, port)?;
    let listener = UnixListener::bind(&path).map_err(|source| BindError::Unix {
        path: path.clone(),
        source,
    })?;
    // From here the guard removes the file whatever fails next.
    let socket = UnixSocketListener {
        listener,
        addr: Addr::unix(&u.dir, port),
        path,
        dir: u.dir.clone(),
        handed_over: Arc::default(),
    };
    let permissions = |key, source| BindError::Permissions {
        key,
        path: socket.path.clone(),
        source,
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::Permissions::from_mode(u.mode.0);
    std::fs::set_permissions(&socket.path, mode).map_err(|e| permissions("unix_socket_mode", e))?;
    if let Some(group) = &u.group {
        std::os::unix::fs::chown(&socket.path, None, Some(group.gid))
            .map_err(|e| permissions("unix_socket_group", e))?;
    }
    Ok(socket)
}

/// Removes a socket file nobody listens on any more (left by a process that was killed);
/// one that still answers belongs to a running server.
fn clear_stale(path: &Path, port: u16) -> Result<(), BindError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(BindError::InUse {
            path: path.to_owned(),
            port,
        });
    }
    std::fs::remove_file(path).map_err(|source| BindError::Unix {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileMode, ListenAddr};

    fn config(listen: &str, dir: Option<&Path>) -> GeneralConfig {
        GeneralConfig {
            listen_addr: ListenAddr::parse(listen).unwrap(),
            listen_port: 0,
            unix_socket: dir.map(|dir| UnixSocket {
                dir: dir.to_owned(),
                mode: FileMode(0o660),
                group: None,
            }),
            ..GeneralConfig::default()
        }
    }

    #[tokio::test]
    async fn a_socket_file_gets_its_mode_and_goes_with_its_listener() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = config("", Some(dir.path()));
        g.listen_port = 7001;
        let listeners = bind(&g).unwrap();
        let path = dir.path().join(".s.PGSQL.7001");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        let err = bind(&g).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        drop(listeners);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.7002");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let mut g = config("", Some(dir.path()));
        g.listen_port = 7002;
        let listeners = bind(&g).unwrap();
        assert!(listeners.unix.is_some());
    }

    #[test]
    fn an_address_not_of_this_host_is_named_with_its_key() {
        let mut g = config("127.0.0.1, 192.0.2.1", None);
        g.listen_port = 6999;
        let problems = probe(&g);
        let [problem] = &problems[..] else {
            panic!("{problems:?}");
        };
        let text = problem.to_string();
        assert!(
            text.starts_with("pgweir.listen_addr: cannot listen on 192.0.2.1:6999: "),
            "{text}"
        );
    }
}

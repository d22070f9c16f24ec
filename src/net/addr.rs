//! Where the other end of a connection is: a TCP address, or a Unix-domain socket named
//! as Postgres names them (`<dir>/.s.PGSQL.<port>`). Clients carry one for the log, hba and
//! SHOW CLIENTS; servers for SHOW SERVERS and to know where a CancelRequest goes.
//!
//! An address is `Copy`, as it is copied at every checkout (the cancel target, SHOW SERVERS'
//! view of a lent server): socket paths are interned, each distinct one kept for the life
//! of the process. They come from the configuration, so there are few.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Every socket path an [`Addr`] has named.
static SOCKET_PATHS: Mutex<Option<HashSet<&'static Path>>> = Mutex::new(None);

/// A connection's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addr {
    Tcp(SocketAddr),
    /// A Unix-domain socket: its file, and the port in its name, which SHOW commands show
    /// next to the address `unix` as PgBouncer does.
    Unix {
        path: &'static Path,
        port: u16,
    },
}

impl Addr {
    /// The socket file Postgres and PgBouncer use for `port` in `dir`.
    pub fn unix(dir: &Path, port: u16) -> Addr {
        let path = socket_path(dir, port);
        let mut paths = SOCKET_PATHS.lock();
        let paths = paths.get_or_insert_with(HashSet::new);
        let path = match paths.get(path.as_path()) {
            Some(p) => *p,
            None => {
                let p: &'static Path = Box::leak(path.into_boxed_path());
                paths.insert(p);
                p
            }
        };
        Addr::Unix { path, port }
    }

    /// The IP address, `None` for a Unix socket.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Addr::Tcp(a) => Some(a.ip().to_canonical()),
            Addr::Unix { .. } => None,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Addr::Tcp(a) => a.port(),
            Addr::Unix { port, .. } => *port,
        }
    }

    /// The address column of SHOW CLIENTS and SHOW SERVERS: the IP, or `unix`.
    pub fn host(&self) -> String {
        match self {
            Addr::Tcp(a) => a.ip().to_string(),
            Addr::Unix { .. } => "unix".to_owned(),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => a.fmt(f),
            Addr::Unix { path, .. } => write!(f, "unix:{}", path.display()),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Addr {
        Addr::Tcp(a)
    }
}

/// `<dir>/.s.PGSQL.<port>`, the name libpq looks for.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// Whether a configured host names a socket directory rather than a machine: an absolute
/// path, as libpq and PgBouncer read it.
pub fn is_socket_dir(host: &str) -> bool {
    host.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_address_shows_as_pgbouncer_shows_it() {
        let a = Addr::unix(Path::new("/run/pg"), 6432);
        assert_eq!(a.to_string(), "unix:/run/pg/.s.PGSQL.6432");
        assert_eq!((a.host().as_str(), a.port(), a.ip()), ("unix", 6432, None));
        let t = Addr::from("[::ffff:10.0.0.1]:5".parse::<SocketAddr>().unwrap());
        assert_eq!(t.ip(), Some("10.0.0.1".parse().unwrap()));
        assert!(is_socket_dir("/tmp") && !is_socket_dir("db.internal"));
        let again = Addr::unix(Path::new("/run/pg"), 6432);
        let (Addr::Unix { path: p1, .. }, Addr::Unix { path: p2, .. }) = (a, again) else {
            panic!("unix addresses");
        };
        assert!(std::ptr::eq(p1, p2), "one copy of each path");
    }
}

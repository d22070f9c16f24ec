//! A pool's server connections one by one, for the admin console's SHOW SERVERS: the idle
//! ones are read from the pool state, the checked-out ones from [`LentServers`], a small
//! table of what each had when it was handed out. The table costs one short lock at
//! checkout and one at release; nothing else on the data path reads it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;

use super::Pool;
use crate::net::addr::Addr;
use crate::net::stream::TlsParams;
use crate::server::{ServerConn, ServerId};

/// What a server connection is doing, in PgBouncer's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Checked out by a client.
    Active,
    /// In the pool, ready for use.
    Idle,
    /// In the pool for longer than `server_check_delay`: checked before its next use.
    Used,
}

impl ServerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Active => "active",
            ServerState::Idle => "idle",
            ServerState::Used => "used",
        }
    }
}

/// One open server connection as SHOW SERVERS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub id: u64,
    pub state: ServerState,
    /// The backend's process id, from its cancel key.
    pub remote_pid: i32,
    /// The server's address.
    pub addr: Addr,
    /// pgweir's end of the connection; known for idle servers only, since asking the
    /// socket at every checkout would cost a system call per transaction.
    pub local_addr: Option<SocketAddr>,
    pub connected: SystemTime,
    /// When it was last handed out (active) or given back (idle, used).
    pub since: SystemTime,
    /// A RECONNECT marked it: it is closed when released.
    pub close_needed: bool,
    /// What TLS negotiated, `None` in plaintext.
    pub tls: Option<TlsParams>,
}

/// A checked-out connection, as it was when handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lent {
    pub remote_pid: i32,
    pub addr: Addr,
    pub created: Instant,
    pub since: Instant,
    pub tls: Option<TlsParams>,
}

/// The pool's checked-out connections by id.
#[derive(Debug, Default)]
pub struct LentServers(Mutex<HashMap<ServerId, Lent, BuildHasherDefault<IdHasher>>>);

/// Hashes a server id with one multiplication. The ids are pgweir's own sequence numbers,
/// which no client picks, so SipHash's defence against chosen keys buys nothing, and the
/// table is written at every checkout and release.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads sequential ids over the high bits the table probes by.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl LentServers {
    pub fn lend(&self, id: ServerId, lent: Lent) {
        self.0.lock().insert(id, lent);
    }

    /// The connection came back, or was closed while out.
    pub fn returned(&self, id: ServerId) {
        self.0.lock().remove(&id);
    }

    /// Every checked-out connection now, in no particular order.
    pub fn all(&self) -> Vec<(ServerId, Lent)> {
        self.0.lock().iter().map(|(id, l)| (*id, *l)).collect()
    }
}

impl Lent {
    pub fn of(conn: &ServerConn, now: Instant) -> Self {
        Lent {
            remote_pid: conn.key.pid,
            addr: conn.addr,
            created: conn.created,
            since: now,
            tls: conn.stream.tls_params(),
        }
    }
}

impl Pool {
    /// Every open server connection: the checked-out ones, then the idle ones, most
    /// recently used first. Connections still logging in have no row.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let at = |t: Instant| {
            wall.checked_sub(now.saturating_duration_since(t))
                .unwrap_or(wall)
        };
        let lent = self.lent.all();
        let state = self.state.lock();
        let mut rows: Vec<ServerInfo> = (lent.into_iter())
            .map(|(id, l)| ServerInfo {
                id: id.0,
                state: ServerState::Active,
                remote_pid: l.remote_pid,
                addr: l.addr,
                local_addr: None,
                connected: at(l.created),
                since: at(l.since),
                close_needed: state.is_marked(l.created),
                tls: l.tls,
            })
            .collect();
        rows.sort_by_key(|r| r.id);
        let delay = self.settings().server_check_delay;
        rows.extend(state.idle_servers().map(|(c, since)| ServerInfo {
            id: c.id.0,
            state: if now.saturating_duration_since(since) >= delay {
                ServerState::Used
            } else {
                ServerState::Idle
            },
            remote_pid: c.key.pid,
            addr: c.addr,
            local_addr: c.stream.local_addr(),
            connected: at(c.created),
            since: at(since),
            // Marked servers are closed rather than put back idle.
            close_needed: false,
            tls: c.stream.tls_params(),
        }));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_servers_are_listed_until_returned() {
        let lent = LentServers::default();
        let now = Instant::now();
        let entry = |pid| Lent {
            remote_pid: pid,
            addr: Addr::Tcp("127.0.0.1:5432".parse().unwrap()),
            created: now,
            since: now,
            tls: None,
        };
        lent.lend(ServerId(1), entry(100));
        lent.lend(ServerId(2), entry(200));
        lent.returned(ServerId(1));
        lent.returned(ServerId(7));
        let all = lent.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, ServerId(2));
        assert_eq!(all[0].1.remote_pid, 200);
    }
}

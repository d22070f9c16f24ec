//! Every logged-in client and what it is doing: idle (no server), waiting (queued for one),
//! active (holding one for a transaction) or pinned (holding one for its session state).
//! A client registers when it has logged in and is removed when its [`ClientEntry`] guard
//! drops; the relay moves its state, one atomic store per change (two when it starts
//! waiting: the time of its request too). Read by the Prometheus endpoint (clients by state)
//! and the admin console (SHOW CLIENTS's `request_time`, `wait` and `wait_us`).
//!
//! Each entry also carries the client's kill switch: the admin console's KILL and
//! KILL_CLIENT throw it ([`ClientInfo::kill`]) and the client's task, which selects on it
//! wherever it waits ([`KillWatch`]), ends the session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::watch;

/// What a client is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    Idle,
    Waiting,
    Active,
    Pinned,
}

impl ClientState {
    pub const ALL: [ClientState; 4] = [
        ClientState::Idle,
        ClientState::Waiting,
        ClientState::Active,
        ClientState::Pinned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Waiting => "waiting",
            ClientState::Active => "active",
            ClientState::Pinned => "pinned",
        }
    }

    fn from_u8(v: u8) -> ClientState {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(ClientState::Idle)
    }
}

/// Which admin command closed a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// KILL of the client's database, or of every database.
    Database,
    /// KILL_CLIENT of this client.
    Client,
}

impl Kill {
    /// The command, as the client's FATAL names it.
    pub fn command(self) -> &'static str {
        match self {
            Kill::Database => "KILL",
            Kill::Client => "KILL_CLIENT",
        }
    }
}

/// The registry of logged-in clients.
#[derive(Debug, Default)]
pub struct Clients {
    next_id: AtomicU64,
    by_id: Mutex<HashMap<u64, Weak<ClientInfo>>>,
}

/// One client, as the registry shows it.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub database: String,
    pub user: String,
    pub connected: SystemTime,
    /// `connected` as an instant, what `request_us` counts from.
    born: Instant,
    /// When the client last asked for a server, in µs after `born`; 0 before it has.
    request_us: AtomicU64,
    /// TLS version and cipher suite (`TLSv1.3/TLS13_AES_256_GCM_SHA384`); empty in plaintext.
    pub tls: String,
    state: AtomicU8,
    kill: watch::Sender<Option<Kill>>,
}

impl ClientInfo {
    pub fn state(&self) -> ClientState {
        ClientState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// When the client last asked for a server (its connection time before it has).
    pub fn request_time(&self) -> SystemTime {
        self.connected + self.since_born()
    }

    /// How long the client has waited for a server, if it is waiting.
    pub fn waiting_for(&self) -> Option<Duration> {
        (self.state() == ClientState::Waiting)
            .then(|| self.born.elapsed().saturating_sub(self.since_born()))
    }

    fn since_born(&self) -> Duration {
        Duration::from_micros(self.request_us.load(Ordering::Relaxed))
    }

    /// Tells the client's task to end the session now; the first reason given stays.
    pub fn kill(&self, why: Kill) {
        self.kill
            .send_if_modified(|k| k.is_none() && k.replace(why).is_none());
    }
}

/// A client task's view of its kill switch.
#[derive(Debug, Clone)]
pub struct KillWatch {
    rx: watch::Receiver<Option<Kill>>,
}

impl KillWatch {
    /// Why the client was killed, if it was.
    pub fn killed(&self) -> Option<Kill> {
        *self.rx.borrow()
    }

    /// Resolves once the client is killed (at once if it already is).
    pub async fn wait(&mut self) -> Kill {
        let killed = self.rx.wait_for(Option::is_some).await.map(|k| *k);
        match killed {
            Ok(k) => k.unwrap_or(Kill::Client),
            // The entry, which holds the sender, outlives its task's watches.
            Err(_) => std::future::pending().await,
        }
    }
}

/// A client's place in the registry; dropping it removes the client.
#[derive(Debug)]
pub struct ClientEntry {
    info: Arc<ClientInfo>,
    registry: Arc<Clients>,
}

impl ClientEntry {
    pub fn set(&self, state: ClientState) {
        if state == ClientState::Waiting {
            let us = u64::try_from(self.info.born.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.info.request_us.store(us, Ordering::Relaxed);
        }
        self.info.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn info(&self) -> &ClientInfo {
        &self.info
    }

    /// A watch on the client's kill switch, for its task.
    pub fn kill_watch(&self) -> KillWatch {
        KillWatch {
            rx: self.info.kill.subscribe(),
        }
    }
}

impl Drop for ClientEntry {
    fn drop(&mut self) {
        self.registry.by_id.lock().remove(&self.info.id);
    }
}

impl Clients {
    /// Registers a client that has just logged in, idle.
    pub fn register(
        self: &Arc<Self>,
        addr: SocketAddr,
        database: &str,
        user: &str,
        tls: String,
    ) -> ClientEntry {
        let info = Arc::new(ClientInfo {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            addr,
            database: database.to_owned(),
            user: user.to_owned(),
            connected: SystemTime::now(),
            born: Instant::now(),
            request_us: AtomicU64::new(0),
            tls,
            state: AtomicU8::new(ClientState::Idle as u8),
            kill: watch::Sender::new(None),
        });
        self.by_id.lock().insert(info.id, Arc::downgrade(&info));
        ClientEntry {
            info,
            registry: Arc::clone(self),
        }
    }

    /// Every client now, in no particular order.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.by_id
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// How many clients of each (database, user) are in each state.
    pub fn counts(&self) -> HashMap<(String, String, ClientState), usize> {
        let mut counts = HashMap::new();
        for c in self.all() {
            *counts
                .entry((c.database.clone(), c.user.clone(), c.state()))
                .or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_come_and_go_with_their_states() {
        let clients = Arc::new(Clients::default());
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let a = clients.register(addr, "db", "u", String::new());
        let b = clients.register(addr, "db", "u", String::new());
        a.set(ClientState::Active);
        let counts = clients.counts();
        let key = |s| ("db".to_owned(), "u".to_owned(), s);
        assert_eq!(counts.get(&key(ClientState::Active)), Some(&1));
        assert_eq!(counts.get(&key(ClientState::Idle)), Some(&1));
        drop(b);
        assert_eq!(clients.all().len(), 1);
        assert_ne!(a.info().id, 0);
    }

    #[test]
    fn a_waiting_client_shows_its_request_time_and_wait() {
        let clients = Arc::new(Clients::default());
        let entry = clients.register("127.0.0.1:5000".parse().unwrap(), "db", "u", String::new());
        let info = clients.all().pop().unwrap();
        assert_eq!(info.request_time(), info.connected, "no request yet");
        assert_eq!(info.waiting_for(), None);
        std::thread::sleep(Duration::from_millis(5));
        entry.set(ClientState::Waiting);
        std::thread::sleep(Duration::from_millis(5));
        let waited = info.waiting_for().unwrap();
        assert!(waited >= Duration::from_millis(5), "{waited:?}");
        let asked = info.request_time().duration_since(info.connected).unwrap();
        assert!(asked >= Duration::from_millis(5), "{asked:?}");
        entry.set(ClientState::Active);
        assert_eq!(info.waiting_for(), None);
        assert_eq!(info.request_time(), info.connected + asked, "kept");
    }

    #[tokio::test]
    async fn a_kill_reaches_the_clients_watch_once() {
        let clients = Arc::new(Clients::default());
        let entry = clients.register("127.0.0.1:5000".parse().unwrap(), "db", "u", String::new());
        let mut watch = entry.kill_watch();
        assert_eq!(watch.killed(), None);
        let info = clients.all().pop().unwrap();
        info.kill(Kill::Database);
        info.kill(Kill::Client);
        assert_eq!(watch.wait().await, Kill::Database);
        assert_eq!(entry.kill_watch().killed(), Some(Kill::Database));
    }
}

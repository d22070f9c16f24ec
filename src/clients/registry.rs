//! Every logged-in client and what it is doing: idle (no server), waiting (queued for one),
//! active (holding one for a transaction) or pinned (holding one for its session state).
//! A client registers when it has logged in and is removed when its [`ClientEntry`] guard
//! drops; the relay moves its state, one atomic store per change (two when it starts
//! waiting: the time of its request too). Read by the Prometheus endpoint (clients by state)
//! and the admin console (SHOW CLIENTS's `request_time`, `wait` and `wait_us`).
//!
//! Each entry also carries the client's kill switch: the admin console's KILL and
//! KILL_CLIENT throw it ([`ClientInfo::kill`]) and the client's task, which selects on it
//! wherever it waits ([`KillWatch`]), ends the session. The same wake-up serves shutdown
//! ([`ClientRegistry::wake_all`]): a client task leaves its waker in its own entry, one
//! uncontended lock per poll, where a watch channel would queue and unqueue a waiter on
//! every poll of the relay loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::net::addr::Addr;

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
    fn code(self) -> u8 {
        match self {
            Kill::Database => 1,
            Kill::Client => 2,
        }
    }

    fn from_code(code: u8) -> Option<Kill> {
        match code {
            1 => Some(Kill::Database),
            2 => Some(Kill::Client),
            _ => None,
        }
    }

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
pub struct ClientRegistry {
    next_id: AtomicU64,
    by_id: Mutex<HashMap<u64, Weak<ClientInfo>>>,
}

/// One client, as the registry shows it.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: Addr,
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
    /// Why the client was killed ([`Kill::code`]); 0 while it was not.
    killed: AtomicU8,
    /// The client task's waker, left by its last wait for a reason to stop (a wake-up after
    /// that wait ended is harmless).
    waker: Mutex<Option<Waker>>,
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
        let _ = self
            .killed
            .compare_exchange(0, why.code(), Ordering::SeqCst, Ordering::SeqCst);
        self.wake();
    }

    /// Wakes the client's task if it waits, so it looks again at why it might stop.
    fn wake(&self) {
        let waker = self.waker.lock().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A client task's view of its kill switch, and its wake-up for shutdown too.
#[derive(Debug, Clone)]
pub struct KillWatch {
    info: Arc<ClientInfo>,
}

impl KillWatch {
    /// Why the client was killed, if it was.
    pub fn killed(&self) -> Option<Kill> {
        Kill::from_code(self.info.killed.load(Ordering::SeqCst))
    }

    /// Makes the task polling with `cx` the one a kill or shutdown wakes (one task per
    /// client: a later one takes its place). Callers look at what they wait for again
    /// afterwards: whatever happened before this call woke no one.
    pub fn register(&self, cx: &Context<'_>) {
        let mut waker = self.info.waker.lock();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
    }
}

/// A client's place in the registry; dropping it removes the client.
#[derive(Debug)]
pub struct ClientEntry {
    info: Arc<ClientInfo>,
    registry: Arc<ClientRegistry>,
}

impl ClientEntry {
    pub fn set(&self, state: ClientState) {
        if state == ClientState::Waiting {
            self.waiting_since(Instant::now());
        } else {
            self.info.state.store(state as u8, Ordering::Relaxed);
        }
    }

    /// The client asked for a server at `asked` (a clock reading the caller had anyway).
    pub fn waiting_since(&self, asked: Instant) {
        let since_born = asked.saturating_duration_since(self.info.born);
        let us = u64::try_from(since_born.as_micros()).unwrap_or(u64::MAX);
        self.info.request_us.store(us, Ordering::Relaxed);
        self.info
            .state
            .store(ClientState::Waiting as u8, Ordering::Relaxed);
    }

    pub fn info(&self) -> &ClientInfo {
        &self.info
    }

    /// The entry's facts, to keep after the entry itself is gone.
    pub fn shared_info(&self) -> Arc<ClientInfo> {
        Arc::clone(&self.info)
    }

    /// A watch on the client's kill switch, for its task.
    pub fn kill_watch(&self) -> KillWatch {
        KillWatch {
            info: Arc::clone(&self.info),
        }
    }
}

impl Drop for ClientEntry {
    fn drop(&mut self) {
        self.registry.by_id.lock().remove(&self.info.id);
    }
}

impl ClientRegistry {
    /// Registers a client that has just logged in, idle.
    pub fn register(
        self: &Arc<Self>,
        addr: Addr,
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
            killed: AtomicU8::new(0),
            waker: Mutex::new(None),
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

    /// Wakes every client task that waits, after shutdown moved on: each looks at the
    /// phase again.
    pub fn wake_all(&self) {
        for c in self.all() {
            c.wake();
        }
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
        let clients = Arc::new(ClientRegistry::default());
        let addr = Addr::Tcp("127.0.0.1:5000".parse().unwrap());
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
        let clients = Arc::new(ClientRegistry::default());
        let entry = clients.register(
            Addr::Tcp("127.0.0.1:5000".parse().unwrap()),
            "db",
            "u",
            String::new(),
        );
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

    /// Counts wake-ups.
    struct Wakes(AtomicU64);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_kill_wakes_the_client_once_and_the_first_reason_stays() {
        let clients = Arc::new(ClientRegistry::default());
        let entry = clients.register(
            Addr::Tcp("127.0.0.1:5000".parse().unwrap()),
            "db",
            "u",
            String::new(),
        );
        let watch = entry.kill_watch();
        assert_eq!(watch.killed(), None);
        let wakes = Arc::new(Wakes(AtomicU64::new(0)));
        let waker = Waker::from(Arc::clone(&wakes));
        watch.register(&Context::from_waker(&waker));
        watch.register(&Context::from_waker(&waker));
        let info = clients.all().pop().unwrap();
        info.kill(Kill::Database);
        info.kill(Kill::Client);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "woken once, then not registered"
        );
        assert_eq!(entry.kill_watch().killed(), Some(Kill::Database));
        watch.register(&Context::from_waker(&waker));
        clients.wake_all();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2, "shutdown wakes it too");
    }
}

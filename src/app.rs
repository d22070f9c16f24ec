//! The state every connection shares: configuration, user secrets, pools and cancel keys.
//! Built once at start; handed to each client task as an `Arc`. [`App::reload`] swaps in a
//! new configuration without dropping anyone: readers take the current one each time.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::auth::query::AuthQueries;
use crate::auth::UserDirectory;
use crate::cancel::CancelRegistry;
use crate::clients::{ClientLimits, ClientRegistry, PinCounts};
use crate::config::{Config, ConfigError};
use crate::control::Outbox;
use crate::net::tls::{Tls, TlsState};
use crate::pool::Pools;
use crate::secret::passthrough::Keyring;
use crate::shutdown::{Phase, Shutdown};

#[derive(Debug)]
pub struct App {
    config: ArcSwap<Config>,
    users: ArcSwap<UserDirectory>,
    /// What each user's clients proved, for logging in to Postgres without a plaintext
    /// password (auth file and auth query secrets, SCRAM pass-through keys).
    pub keyring: Arc<Keyring>,
    /// `auth_query` lookups: their pools and cached answers.
    pub auth_queries: AuthQueries,
    pub pools: Arc<Pools>,
    pub cancels: Arc<CancelRegistry>,
    /// Every logged-in client: its state, for metrics and the admin console, and its KILL
    /// switch.
    pub clients: Arc<ClientRegistry>,
    /// Clients counted per database and user, against their `max_*_client_connections`.
    pub client_limits: Arc<ClientLimits>,
    /// How many clients are pinned to their server.
    pub pins: Arc<PinCounts>,
    pub shutdown: Shutdown,
    /// Where the configuration was read from, for RELOAD and SIGHUP.
    config_path: PathBuf,
    /// Certificates and keys in force, swapped with the configuration they came from.
    pub tls: TlsState,
    /// The text the configuration in force was read from: the file as last (re)loaded,
    /// with the console's SETs since written into it. Locked while a new text is put in
    /// force, so two SETs cannot lose one another.
    source: Mutex<String>,
    /// The sockets clients connect to, once bound, for SHOW FDS.
    pub listening: OnceLock<Vec<Listening>>,
    /// Clients on their way to a successor process during a takeover.
    pub handoff: Outbox,
}

/// A socket pgweir accepts clients on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    pub fd: i32,
    /// The IP address, or `unix`.
    pub addr: String,
    pub port: u16,
}

impl App {
    /// The app for `config`, read from `path`, with the TLS material built from it.
    pub fn new(config: Config, path: PathBuf, tls: Tls) -> Self {
        crate::stats::catalog::zero_databases(&config);
        let config = Arc::new(config);
        let keyring = Arc::new(Keyring::default());
        let tls = tls.into_state();
        App {
            users: ArcSwap::from_pointee(UserDirectory::load(&config, None)),
            pools: Pools::new(Arc::clone(&config), Arc::clone(&keyring), Arc::clone(&tls)),
            keyring,
            auth_queries: AuthQueries::default(),
            cancels: Arc::new(CancelRegistry::default()),
            clients: Arc::new(ClientRegistry::default()),
            client_limits: Arc::new(ClientLimits::default()),
            pins: Arc::new(PinCounts::default()),
            shutdown: Shutdown::default(),
            config: ArcSwap::new(config),
            source: Mutex::new(std::fs::read_to_string(&path).unwrap_or_default()),
            config_path: path,
            tls,
            listening: OnceLock::new(),
            handoff: Outbox::default(),
        }
    }

    /// Re-reads the configuration file and the certificates and keys it names, and puts
    /// them in force; a file with any problem (a certificate that cannot be used included)
    /// is refused whole and the running configuration stays. On success, returns what waits
    /// for a restart.
    pub fn reload_file(&self) -> Result<Vec<String>, ConfigError> {
        let text =
            std::fs::read_to_string(&self.config_path).map_err(|source| ConfigError::Io {
                path: self.config_path.clone(),
                source,
            })?;
        let mut source = self.source.lock();
        let notes = self.put_in_force(&text)?;
        *source = text;
        Ok(notes)
    }

    /// Puts in force the text `edit` makes of the current one (the console's SET), as a
    /// reload would; the next reload reads the file again, so an edit lasts until then.
    pub fn edit_source(
        &self,
        edit: impl FnOnce(&str) -> Result<String, String>,
    ) -> Result<Vec<String>, String> {
        let mut source = self.source.lock();
        let text = edit(&source)?;
        let notes = self.put_in_force(&text).map_err(|e| e.to_string())?;
        *source = text;
        Ok(notes)
    }

    /// Parses `text`, loads the certificates and keys it names, and puts both in force.
    fn put_in_force(&self, text: &str) -> Result<Vec<String>, ConfigError> {
        let config = Config::parse(text, &|name| std::env::var(name).ok())?;
        let tls = Tls::load(&config.pgweir.tls).map_err(|e| e.into_config_error())?;
        self.tls.store(Arc::new(tls));
        Ok(self.reload(config))
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The users who may log in now, with their secrets.
    pub fn users(&self) -> Arc<UserDirectory> {
        self.users.load_full()
    }

    /// Puts `new` in force: users at once, pool sizes and timeouts from each pool's next
    /// checkout, new databases on first use; a removed database, or one whose servers
    /// changed, keeps serving the clients it has while new clients get the new one (or an
    /// error). Returns what could not change without a restart.
    pub fn reload(&self, new: Config) -> Vec<String> {
        crate::stats::catalog::zero_databases(&new);
        let new = Arc::new(new);
        let old = self.config();
        let restart_only = restart_only(&old, &new);
        let users = UserDirectory::load(&new, Some(&self.users()));
        self.users.store(Arc::new(users));
        self.pools.reconfigure(Arc::clone(&new));
        self.config.store(new);
        restart_only
    }

    /// Moves shutdown on to `phase` (never back) and wakes every logged-in client to look
    /// at it; clients still logging in watch the phase themselves.
    pub fn shut_down(&self, phase: Phase) {
        self.shutdown.advance(phase);
        self.clients.wake_all();
    }

    /// Whether new clients are accepted: until shutdown begins.
    pub fn accepting(&self) -> bool {
        self.shutdown.phase() == Phase::Running
    }

    /// Whether a client that just logged in may stay: yes while running, and during a
    /// takeover's drain, which hands it to the successor.
    pub fn admitting(&self) -> bool {
        self.accepting() || (self.shutdown.phase() == Phase::Draining && self.handoff.started())
    }

    /// Whether every database is paused (PAUSE or KILL on the admin console): clients are
    /// accepted but get no server until RESUME.
    pub fn paused(&self) -> bool {
        let config = self.config();
        self.pools
            .control
            .everything_paused(config.databases.keys())
    }

    /// Whether pgweir serves clients now: accepting them, and not everything paused.
    pub fn serving(&self) -> bool {
        self.accepting() && !self.paused()
    }
}

/// The restart-only keys whose values differ between `old` and `new`, as notes.
fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    old.restart_only_changes(new)
        .into_iter()
        .map(|key| format!("{key} changed; it takes effect at the next restart"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_changes_are_noted() {
        let parse = |text: &str| Config::parse(text, &|_| None).expect("a valid config");
        let db = "[databases.db]\nhost = \"h\"\n";
        let config = parse(db);
        assert!(restart_only(&config, &config).is_empty());
        let changed = parse(&format!(
            "[pgweir]\nworkers = 3\nlog_connections = false\n{db}"
        ));
        assert_eq!(
            restart_only(&config, &changed),
            ["workers changed; it takes effect at the next restart"]
        );
    }
}

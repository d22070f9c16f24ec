//! The state every connection shares: configuration, user secrets, pools and cancel keys.
//! Built once at start; handed to each client task as an `Arc`.

use std::sync::Arc;

use crate::auth::UserDirectory;
use crate::cancel::CancelRegistry;
use crate::client::limits::ClientCounts;
use crate::client::state::SessionShared;
use crate::config::Config;
use crate::pool::Pools;
use crate::shutdown::{Phase, Shutdown};
use crate::stats::Clients;

#[derive(Debug)]
pub struct App {
    pub config: Arc<Config>,
    pub users: UserDirectory,
    pub pools: Arc<Pools>,
    pub cancels: Arc<CancelRegistry>,
    /// Connected clients per database and user.
    pub clients: Arc<ClientCounts>,
    /// Pinning counts shared by every session.
    pub sessions: Arc<SessionShared>,
    /// Every logged-in client and its state, for metrics and the admin console.
    pub connected: Arc<Clients>,
    pub shutdown: Shutdown,
}

impl App {
    pub fn new(config: Config) -> Self {
        let config = Arc::new(config);
        App {
            users: UserDirectory::from_config(&config),
            pools: Pools::new(Arc::clone(&config)),
            cancels: Arc::new(CancelRegistry::default()),
            clients: Arc::new(ClientCounts::default()),
            sessions: Arc::new(SessionShared::default()),
            connected: Arc::new(Clients::default()),
            shutdown: Shutdown::default(),
            config,
        }
    }

    /// Whether new clients are accepted: until shutdown begins.
    pub fn accepting(&self) -> bool {
        self.shutdown.phase() == Phase::Running
    }
}

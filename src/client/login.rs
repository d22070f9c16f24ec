//! A login in four steps, each a method of [`Login`]: startup ([`super::startup`]),
//! authentication ([`super::authenticate`] runs the exchange), admission (the client limits,
//! the pools, the startup settings judged) and the greeting (ParameterStatus, BackendKeyData,
//! ReadyForQuery). A login to the admin console takes its own way after startup. The
//! configuration and the users are read once, when the login begins ([`InForce`]).

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::params::{self, ClientParams};
use super::startup::{self, Startup};
use super::{authenticate, relay, ClientError, Ready, Who};
use crate::admin::{self, Access};
use crate::app::App;
use crate::auth::UserDirectory;
use crate::cancel::CancelHandle;
use crate::clients::{ClientSlot, Refused, Stop, Stopped};
use crate::config::{Config, ADMIN_DATABASES};
use crate::net::stream::Stream;
use crate::net::transport::Transport;
use crate::pool::PoolGroup;
use crate::protocol::{backend, TxStatus};

/// What one login reads of the configuration and the users, once, when it begins: a reload
/// halfway through cannot give one login two configurations.
pub struct InForce {
    pub config: Arc<Config>,
    pub users: Arc<UserDirectory>,
}

impl InForce {
    pub fn now(app: &App) -> Self {
        InForce {
            config: app.config(),
            users: app.users(),
        }
    }
}

/// One login under way: the app, what is in force for it, and the connection's facts.
pub struct Login<'a> {
    pub app: &'a App,
    pub in_force: InForce,
    pub transport: &'a Transport,
}

/// What admission gives a client: its place under the client limits, its pools, its
/// parameters and its cancel key.
struct Admitted {
    slot: ClientSlot,
    group: Arc<PoolGroup>,
    params: ClientParams,
    cancel: CancelHandle,
}

impl Login<'_> {
    /// The four steps. `None` when the connection was only a CancelRequest.
    pub async fn run(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        who: &Who,
    ) -> Result<Option<Ready>, ClientError> {
        let config = &self.in_force.config;
        let received = startup::receive(self.app, config, stream, buf, self.transport, who);
        let Some(startup) = received.await? else {
            return Ok(None);
        };
        if admin::is_console(&startup.database) {
            return self.console(stream, buf, &startup).await.map(Some);
        }
        self.authenticate(stream, buf, &startup).await?;
        let admitted = self.admit(&startup).await?;
        self.greet(stream, &startup, admitted).await.map(Some)
    }

    /// Step 2: the client proves who it is, and is told so unless its database is
    /// disabled. Logins are counted per database and user.
    async fn authenticate(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        startup: &Startup,
    ) -> Result<(), ClientError> {
        let database = &startup.database;
        let known_database = self.in_force.config.databases.contains_key(database);
        self.prove(stream, buf, startup, known_database).await?;
        if self.app.pools.control.is_disabled(database) {
            return Err(ClientError::Disabled(database.clone()));
        }
        // Authenticated: a real user (perhaps found by auth_query), so its name is a fair
        // label.
        let labels = [
            ("database", label(database, known_database)),
            ("user", startup.user.clone()),
        ];
        metrics::counter!("pgweir_client_logins_total", &labels).increment(1);
        let mut out = BytesMut::new();
        backend::authentication_ok(&mut out);
        stream.write_all(&out).await?;
        Ok(())
    }

    /// The exchange the client's authentication method calls for, its failures counted.
    async fn prove(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        startup: &Startup,
        known_database: bool,
    ) -> Result<(), ClientError> {
        let (user, database) = (&startup.user, &startup.database);
        let proved = authenticate::authenticate(self, stream, buf, user, database).await;
        if proved.is_err() {
            let labels = [
                ("database", label(database, known_database)),
                ("user", label(user, self.in_force.users.get(user).is_some())),
            ];
            metrics::counter!("pgweir_client_auth_failures_total", &labels).increment(1);
        }
        proved
    }

    /// Step 3: a place under `max_db_client_connections` and
    /// `max_user_client_connections`, the pools of its database and user, and the startup
    /// settings judged against what the server accepts.
    async fn admit(&self, startup: &Startup) -> Result<Admitted, ClientError> {
        let (app, g) = (self.app, &self.in_force.config.pgweir);
        let (database, user) = (&startup.database, &startup.user);
        let slot = app
            .client_limits
            .admit(
                database,
                user,
                g.max_db_client_connections,
                g.max_user_client_connections,
            )
            .map_err(|refused| too_many(refused, database, user))?;
        let group = app.pools.get(database, user)?;
        let defaults = group.primary.startup_params().await?;
        let settings = startup.session_settings(&g.ignore_startup_parameters);
        params::judge(&settings, group.primary.catalog().as_deref())?;
        Ok(Admitted {
            slot,
            params: ClientParams::new(&defaults, &settings),
            group,
            cancel: app.cancels.register(),
        })
    }

    /// Step 4: the client's parameters, its cancel key and ReadyForQuery, once it is
    /// listed in the client registry; then the relay takes it.
    async fn greet(
        &self,
        stream: &mut Stream,
        startup: &Startup,
        admitted: Admitted,
    ) -> Result<Ready, ClientError> {
        let Admitted {
            slot,
            group,
            params,
            cancel,
        } = admitted;
        let mut out = BytesMut::new();
        for (k, v) in params.reported.iter() {
            backend::parameter_status(&mut out, k, v);
        }
        let key = cancel.key();
        backend::backend_key_data(&mut out, key.pid, key.secret);
        backend::ready_for_query(&mut out, TxStatus::Idle);
        let app = self.app;
        if !app.admitting() {
            // Shutdown began while this client was logging in.
            return Err(ClientError::Stopped(Stopped::ShuttingDown));
        }
        // Listed before it hears ReadyForQuery, so SHOW CLIENTS has it as soon as it can act.
        let (database, user, peer) = (&startup.database, &startup.user, self.transport.addr);
        let tls = stream.tls_description();
        let entry = app.clients.register(peer, database, user, tls);
        stream.write_all(&out).await?;
        let stop = Stop::new(app.shutdown.watch(), entry.kill_watch());
        let pins = Arc::clone(&app.pins);
        let session = relay::Session::new(group, params, cancel, slot, pins, entry, stop);
        Ok(Ready::Relay(Box::new(session)))
    }

    /// A login to the admin console: pgweir's own OS user on its socket is let in as an
    /// admin without a password; anyone else authenticates as any client would, then needs
    /// a console right. Welcomed and registered like any client.
    async fn console(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        startup: &Startup,
    ) -> Result<Ready, ClientError> {
        let (peer, user) = (&self.transport.addr, startup.user.as_str());
        let granted = if owner_on_socket(self.transport, user) {
            tracing::info!(client = %peer, user, "console access by pgweir's own OS user on its socket");
            Some(Access::Admin)
        } else {
            self.prove(stream, buf, startup, true).await?;
            None
        };
        let access = granted
            .or_else(|| Access::of(&self.in_force.config.pgweir, user))
            .ok_or_else(|| ClientError::ConsoleDenied(user.to_owned()))?;
        let database = startup.database.as_str();
        let labels = [("database", database.to_owned()), ("user", user.to_owned())];
        metrics::counter!("pgweir_client_logins_total", &labels).increment(1);
        let mut out = BytesMut::new();
        backend::authentication_ok(&mut out);
        admin::welcome(&mut out, access);
        if !self.app.accepting() {
            // Shutdown began while this client was logging in.
            return Err(ClientError::Stopped(Stopped::ShuttingDown));
        }
        let tls = stream.tls_description();
        let entry = self.app.clients.register(*peer, database, user, tls);
        stream.write_all(&out).await?;
        Ok(Ready::Console(admin::Console { access, entry }))
    }
}

/// Whether a console login is PgBouncer's trusted one: the admin user name (`pgbouncer`,
/// or `pgweir`) from a process of pgweir's own OS user on the Unix socket, which the kernel
/// vouches for. It gets the whole console without a password, so runbooks that use
/// `psql -h /socket/dir -U pgbouncer pgbouncer` as the pooler's user keep working.
fn owner_on_socket(transport: &Transport, user: &str) -> bool {
    ADMIN_DATABASES.contains(&user) && transport.peer_uid == Some(nix::unistd::getuid().as_raw())
}

/// A name as a metric label: names a client made up must not become label values, they
/// would grow the metrics without bound.
fn label(name: &str, known: bool) -> String {
    if known {
        name.to_owned()
    } else {
        "unknown".to_owned()
    }
}

/// The refusal of a client over one of the client limits.
pub(super) fn too_many(refused: Refused, database: &str, user: &str) -> ClientError {
    let (kind, name, setting) = match refused {
        Refused::Database => ("database", database, "max_db_client_connections"),
        Refused::User => ("user", user, "max_user_client_connections"),
    };
    ClientError::TooManyClients {
        kind,
        name: name.to_owned(),
        setting,
    }
}

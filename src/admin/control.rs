//! The console commands that steer pools and clients, with PgBouncer's semantics:
//!
//! - PAUSE [db]: checkouts of the database(s) wait for RESUME (bounded by
//!   `query_wait_timeout`, as in PgBouncer); the command returns once no server is in use
//!   or logging in and no client is queued, then closes the idle servers. Clients stay.
//! - RESUME [db]: lets them go on. Without a database it ends every pause.
//! - DISABLE db / ENABLE db: new logins to the database are refused (FATAL 57P03) / allowed;
//!   connected clients carry on.
//! - RECONNECT [db]: every server open now is closed, idle ones at once, busy ones when
//!   released, so the next transactions get new connections.
//! - KILL [db]: pauses, then closes every client of the database(s) (FATAL 57P01) and their
//!   servers; it returns once those servers are closed (a few seconds at most).
//! - KILL_CLIENT id: closes one client, console clients included.
//! - WAIT_CLOSE [db]: returns once every server RECONNECT marked is closed, and every pool
//!   a RELOAD replaced is gone (its servers close when its last client leaves).
//!
//! The switches live in [`crate::pool::control`]; the clients' kill switches in
//! [`crate::clients::registry`]. The waits here poll pool state every few milliseconds: they
//! are rare, and polling keeps the relay's path free of notifications for them.

use std::future::Future;
use std::time::Duration;

use super::{is_console, Refusal};
use crate::app::App;
use crate::clients::Kill;
use crate::error::SqlState;
use crate::pool::control::ControlError;

/// How often a waiting command looks at the pools again.
const POLL: Duration = Duration::from_millis(10);
/// How long KILL and KILL_CLIENT wait for what they closed to be gone before answering.
const KILL_WAIT: Duration = Duration::from_secs(5);

const UNDEFINED_OBJECT: SqlState = SqlState("42704");
/// Postgres's "object not in prerequisite state": already paused, not paused.
const WRONG_STATE: SqlState = SqlState("55000");

impl From<ControlError> for Refusal {
    fn from(e: ControlError) -> Self {
        Refusal::new(WRONG_STATE, e.to_string())
    }
}

/// Checks that `db` names a configured database other than the console.
fn database(app: &App, db: &str, verb: &str) -> Result<(), Refusal> {
    if is_console(db) {
        let message = format!("cannot {verb} the admin console database {db}");
        return Err(Refusal::new(WRONG_STATE, message));
    }
    if !app.config().databases.contains_key(db) {
        let message = format!("no such database: {db}");
        return Err(Refusal::new(SqlState::INVALID_CATALOG_NAME, message));
    }
    Ok(())
}

/// [`database`] for a command whose database is optional.
fn optional(app: &App, db: Option<&str>, verb: &str) -> Result<(), Refusal> {
    db.map_or(Ok(()), |db| database(app, db, verb))
}

/// Resolves once `done` holds, checking every [`POLL`].
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`], giving up after `limit`; false if it did.
async fn within(limit: Duration, wait: impl Future<Output = ()>) -> bool {
    tokio::time::timeout(limit, wait).await.is_ok()
}

pub async fn pause(app: &App, db: Option<&str>) -> Result<(), Refusal> {
    optional(app, db, "pause")?;
    app.pools.control.pause(db)?;
    tracing::info!(
        database = db.unwrap_or("(all)"),
        "PAUSE: waiting for servers to be released"
    );
    for pool in app.pools.pools_of(db) {
        pool.close_idle();
    }
    let control = &app.pools.control;
    let still_paused = || match db {
        Some(db) => control.is_paused(db),
        None => control.all_paused(),
    };
    until(|| !still_paused() || app.pools.pools_of(db).iter().all(|p| !p.busy())).await;
    if !still_paused() {
        let message = "RESUME came before the servers were released";
        return Err(Refusal::new(SqlState::QUERY_CANCELED, message));
    }
    for pool in app.pools.pools_of(db) {
        pool.close_idle();
    }
    tracing::info!(
        database = db.unwrap_or("(all)"),
        "PAUSE: done, no server in use"
    );
    Ok(())
}

pub fn resume(app: &App, db: Option<&str>) -> Result<(), Refusal> {
    optional(app, db, "resume")?;
    app.pools.control.resume(db)?;
    tracing::info!(database = db.unwrap_or("(all)"), "RESUME");
    Ok(())
}

/// DISABLE (`off`) or ENABLE.
pub fn disable(app: &App, db: &str, off: bool) -> Result<(), Refusal> {
    let control = &app.pools.control;
    if off {
        database(app, db, "disable")?;
        control.disable(db);
    } else {
        database(app, db, "enable")?;
        control.enable(db);
    }
    tracing::info!(
        database = db,
        disabled = off,
        "new logins {}",
        if off { "refused" } else { "allowed" }
    );
    Ok(())
}

pub fn reconnect(app: &App, db: Option<&str>) -> Result<(), Refusal> {
    optional(app, db, "reconnect")?;
    for pool in app.pools.pools_of(db) {
        pool.reconnect();
    }
    tracing::info!(
        database = db.unwrap_or("(all)"),
        "RECONNECT: servers close as they are released"
    );
    Ok(())
}

pub async fn kill(app: &App, db: Option<&str>) -> Result<(), Refusal> {
    optional(app, db, "kill")?;
    // Paused first, so no client of the database takes a server while the others go.
    app.pools.control.kill(db);
    let pools = app.pools.pools_of(db);
    for pool in &pools {
        pool.reconnect();
    }
    let doomed = |database: &str| db.map_or(!is_console(database), |d| d == database);
    let mut killed = 0;
    for client in app.clients.all() {
        if doomed(&client.database) {
            client.kill(Kill::Database);
            killed += 1;
        }
    }
    tracing::info!(database = db.unwrap_or("(all)"), clients = killed, "KILL");
    let closed = until(|| pools.iter().all(|p| p.marked_open() == 0));
    if !within(KILL_WAIT, closed).await {
        tracing::warn!("KILL: some servers were still open after {KILL_WAIT:?}");
    }
    Ok(())
}

/// `me` is the asking console client's own id.
pub async fn kill_client(app: &App, id: u64, me: u64) -> Result<(), Refusal> {
    let Some(client) = app.clients.all().into_iter().find(|c| c.id == id) else {
        return Err(Refusal::new(
            UNDEFINED_OBJECT,
            format!("client {id} not found"),
        ));
    };
    client.kill(Kill::Client);
    tracing::info!(client = id, database = %client.database, user = %client.user, "KILL_CLIENT");
    drop(client);
    if id != me {
        let gone = until(|| app.clients.all().iter().all(|c| c.id != id));
        if !within(KILL_WAIT, gone).await {
            tracing::warn!(
                client = id,
                "KILL_CLIENT: the client was still there after {KILL_WAIT:?}"
            );
        }
    }
    Ok(())
}

pub async fn wait_close(app: &App, db: Option<&str>) -> Result<(), Refusal> {
    optional(app, db, "wait for")?;
    until(|| {
        let marked = app
            .pools
            .pools_of(db)
            .iter()
            .map(|p| p.marked_open())
            .sum::<usize>();
        marked == 0 && !app.pools.replaced_alive(db)
    })
    .await;
    Ok(())
}

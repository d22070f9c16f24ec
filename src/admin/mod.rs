//! The admin console: a virtual database, `pgweir` or `pgbouncer` (so tools and runbooks
//! written for PgBouncer work unchanged), that answers PgBouncer's console commands itself
//! instead of reaching a server. It speaks the simple query protocol only; extended-protocol
//! messages get an error and are skipped up to their Sync.
//!
//! Who may use it: a client authenticates as any configured user would (see
//! [`crate::client::authenticate`]); then users in `admin_users` may run every command, users in
//! `stats_users` the SHOW commands only, and anyone else is refused with FATAL 28000.
//! RELOAD and SHUTDOWN are answered here, the other control commands (PAUSE, RESUME,
//! DISABLE, ENABLE, RECONNECT, KILL, KILL_CLIENT, WAIT_CLOSE) in [`control`](mod@control).
//!
//! Where each SHOW gets its data ([`show`], [`stats`], [`sockets`], [`settings`]):
//! - POOLS, SERVERS: every pool of [`crate::pool::Pools`], one row per node of a database
//!   with replicas; servers by state from the pool, clients from the client registry.
//! - STATS, STATS_TOTALS: the [`crate::stats::GroupStats`] totals, summed per database.
//! - CLIENTS: the [`crate::clients::ClientRegistry`].
//! - DATABASES, USERS, CONFIG: the configuration, with live counts from the pools and the
//!   client registry; CONFIG never shows a password.
//! - LISTS, STATE, VERSION, HELP: counts of the above, and constants.
//! - FLEET ([`fleet`](mod@fleet)): the shared limits this process coordinates with its
//!   fleet, from [`crate::fleet::Fleet::report`].
//!
//! [`parse`](mod@parse) reads the command grammar, [`result`] writes the answers on the wire.

pub mod control;
pub mod fleet;
pub mod internals;
pub mod parse;
pub mod result;
pub mod set;
pub mod settings;
pub mod show;
pub mod sockets;
pub mod stats;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::App;
use crate::clients::{ClientEntry, Stop, Stopped};
use crate::config::{GeneralConfig, ADMIN_DATABASES};
use crate::error::{Severity, SqlState};
use crate::net::read::{read_message, ReadError};
use crate::net::stream::Stream;
use crate::protocol::{backend, fe, ProtocolError, TxStatus};
use crate::shutdown::Phase;
use parse::{parse, Command, ShutdownMode};

/// The largest message read from a console client. Queries are one short command; a
/// bigger message (a Bind with data, say) is refused rather than buffered.
const MAX_MESSAGE: usize = 1024 * 1024;

const SYNTAX_ERROR: SqlState = SqlState("42601");
const INSUFFICIENT_PRIVILEGE: SqlState = SqlState("42501");
/// Postgres's class F0 "configuration file error".
const CONFIG_FILE_ERROR: SqlState = SqlState("F0000");

/// Whether a database name reaches the console instead of a server.
pub fn is_console(database: &str) -> bool {
    ADMIN_DATABASES.contains(&database)
}

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every command (`admin_users`).
    Admin,
    /// SHOW commands only (`stats_users`).
    Stats,
}

impl Access {
    /// `user`'s rights on the console; `None` when it has none.
    pub fn of(config: &GeneralConfig, user: &str) -> Option<Access> {
        let listed = |users: &[String]| users.iter().any(|u| u == user);
        if listed(&config.admin_users) {
            Some(Access::Admin)
        } else if listed(&config.stats_users) {
            Some(Access::Stats)
        } else {
            None
        }
    }
}

/// A logged-in console client.
#[derive(Debug)]
pub struct Console {
    pub access: Access,
    /// Its place in the client registry, so SHOW CLIENTS lists it too.
    pub entry: ClientEntry,
}

/// Why a console session ended early. The client is told in [`crate::client`], which turns
/// each into the ErrorResponse any client gets for the same reason.
#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A message Postgres would refuse, in Postgres's words.
    #[error("{0}")]
    Malformed(&'static str),
    #[error("client connection lost: {0}")]
    Write(#[from] std::io::Error),
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why a command got an ErrorResponse instead of an answer.
#[derive(Debug)]
pub struct Refusal {
    code: SqlState,
    message: String,
}

impl Refusal {
    pub fn new(code: SqlState, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// What a console client sees after AuthenticationOk: its parameters, a (meaningless)
/// cancel key, ReadyForQuery. The server version is pgweir's own, in PgBouncer's form.
pub fn welcome(out: &mut BytesMut, access: Access) {
    let version = format!("{}/pgweir", env!("CARGO_PKG_VERSION"));
    let superuser = if access == Access::Admin { "on" } else { "off" };
    for (name, value) in [
        ("server_version", version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("is_superuser", superuser),
    ] {
        backend::parameter_status(out, name, value);
    }
    backend::backend_key_data(out, rand::random(), rand::random());
    backend::ready_for_query(out, TxStatus::Idle);
}

/// Answers the client's messages until it terminates or goes away.
pub async fn run(
    app: &App,
    console: Console,
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<(), ConsoleError> {
    // Set from the first extended-protocol message until its Sync, as a server skips
    // messages after an error.
    let mut skipping = false;
    let mut out = BytesMut::new();
    let stop = Stop::new(app.shutdown.watch(), console.entry.kill_watch());
    loop {
        let (tag, body) = tokio::select! {
            read = read_message(stream, buf, MAX_MESSAGE) => read?,
            e = stop.between_transactions() => return Err(e.into()),
        };
        match tag {
            fe::QUERY => {
                let text = String::from_utf8_lossy(query_text(&body)?);
                tracing::debug!(user = %console.entry.info().user, query = %text, "admin console query");
                let asker = Asker {
                    access: console.access,
                    id: console.entry.info().id,
                };
                let work = answer(app, asker, &text, &mut out);
                while_connected(work, stream, buf, &stop).await?;
                backend::ready_for_query(&mut out, TxStatus::Idle);
            }
            fe::TERMINATE => return Ok(()),
            fe::SYNC => {
                skipping = false;
                backend::ready_for_query(&mut out, TxStatus::Idle);
            }
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE | fe::FLUSH => {
                if !std::mem::replace(&mut skipping, true) {
                    simple_only(&mut out);
                }
            }
            fe::FUNCTION_CALL => {
                simple_only(&mut out);
                backend::ready_for_query(&mut out, TxStatus::Idle);
            }
            // Outside a COPY these are ignored, as Postgres does.
            fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {}
            tag => return Err(ReadError::Protocol(ProtocolError::UnknownType(tag)).into()),
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

/// Runs a command's answer (PAUSE and WAIT_CLOSE can wait long) while watching the client:
/// its going away, shutdown or a KILL_CLIENT end the wait. What it sends meanwhile stays
/// buffered for the next command.
async fn while_connected(
    work: impl std::future::Future<Output = ()>,
    stream: &mut Stream,
    buf: &mut BytesMut,
    stop: &Stop,
) -> Result<(), ConsoleError> {
    tokio::pin!(work);
    loop {
        buf.reserve(1024);
        tokio::select! {
            biased;
            () = &mut work => return Ok(()),
            e = stop.between_transactions() => return Err(e.into()),
            read = stream.read_buf(buf), if buf.len() < MAX_MESSAGE => {
                if read? == 0 {
                    return Err(ReadError::Closed.into());
                }
            }
        }
    }
}

/// A Query's text: everything before its terminating NUL, which must be its last byte, as
/// Postgres reads it (a FATAL 08P01 otherwise).
fn query_text(body: &[u8]) -> Result<&[u8], ConsoleError> {
    match body.iter().position(|&b| b == 0) {
        None => Err(ConsoleError::Malformed("invalid string in message")),
        Some(end) if end + 1 != body.len() => {
            Err(ConsoleError::Malformed("invalid message format"))
        }
        Some(end) => Ok(&body[..end]),
    }
}

fn simple_only(out: &mut BytesMut) {
    let message = "the admin console speaks the simple query protocol only";
    backend::error_response(
        out,
        Severity::Error,
        SqlState::FEATURE_NOT_SUPPORTED,
        message,
    );
}

/// Who asks: their rights, and their own client id (a KILL_CLIENT of oneself does not
/// wait for oneself to be gone).
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    pub access: Access,
    pub id: u64,
}

/// Answers one Query: its result, or an error.
async fn answer(app: &App, asker: Asker, query: &str, out: &mut BytesMut) {
    let access = asker.access;
    if query.trim().trim_end_matches(';').trim().is_empty() {
        result::empty_query(out);
        return;
    }
    let outcome = match parse(query) {
        Err(e) => Err(Refusal {
            code: SYNTAX_ERROR,
            message: e.0,
        }),
        Ok(command) if access != Access::Admin && !matches!(command, Command::Show(_)) => {
            Err(Refusal {
                code: INSUFFICIENT_PRIVILEGE,
                message: format!(
                    "{} needs admin access; stats users may only SHOW",
                    command.word()
                ),
            })
        }
        Ok(command) => execute(app, command, asker, out).await,
    };
    if let Err(r) = outcome {
        backend::error_response(out, Severity::Error, r.code, &r.message);
    }
}

/// Carries out a command the user may run, one arm per command, each writing its result
/// and CommandComplete (or returning its refusal).
async fn execute(
    app: &App,
    command: Command,
    asker: Asker,
    out: &mut BytesMut,
) -> Result<(), Refusal> {
    let word = command.word();
    match command {
        Command::Show(what) => {
            show::write(app, what, out);
            return Ok(());
        }
        Command::Reload => return reload(app, out),
        Command::Shutdown(mode) => {
            // Both waiting modes are the same wait here (see crate::shutdown); a plain
            // SHUTDOWN is immediate, as in PgBouncer.
            let phase = match mode {
                ShutdownMode::Immediate => Phase::Now,
                ShutdownMode::WaitForServers | ShutdownMode::WaitForClients => Phase::Draining,
            };
            app.shut_down(phase);
        }
        Command::Pause(db) => control::pause(app, db.as_deref()).await?,
        Command::Resume(db) => control::resume(app, db.as_deref())?,
        Command::Disable(db) => control::disable(app, &db, true)?,
        Command::Enable(db) => control::disable(app, &db, false)?,
        Command::Reconnect(db) => control::reconnect(app, db.as_deref())?,
        Command::Kill(db) => control::kill(app, db.as_deref()).await?,
        Command::KillClient(id) => control::kill_client(app, id, asker.id).await?,
        Command::WaitClose(db) => control::wait_close(app, db.as_deref()).await?,
        Command::Set { key, value } => {
            for note in set::set(app, &key, &value)? {
                result::notice(out, &note, "");
            }
            tracing::info!(
                key,
                value,
                "configuration changed (SET on the admin console)"
            );
        }
        Command::Suspend => {
            // SUSPEND exists so that an online restart (pgbouncer -R) can take over the
            // sockets once their buffers are flushed; `pgweir --takeover` waits for each
            // client's transaction boundary by itself.
            return Err(Refusal::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "SUSPEND is not supported: pgweir --takeover hands each client over between \
                 transactions without it; PAUSE waits for servers to be released instead",
            ));
        }
    }
    backend::command_complete(out, word);
    Ok(())
}

/// RELOAD: the same as SIGHUP; settings that wait for a restart come back as notices.
fn reload(app: &App, out: &mut BytesMut) -> Result<(), Refusal> {
    let notes = app.reload_file().map_err(|e| Refusal {
        code: CONFIG_FILE_ERROR,
        message: format!("reload refused, configuration unchanged: {e}"),
    })?;
    tracing::info!("configuration reloaded (RELOAD)");
    for note in notes {
        tracing::warn!("{note}");
        result::notice(out, &note, "");
    }
    backend::command_complete(out, "RELOAD");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_beat_stats_users_and_others_get_nothing() {
        let config = GeneralConfig {
            admin_users: vec!["root".into()],
            stats_users: vec!["root".into(), "watch".into()],
            ..GeneralConfig::default()
        };
        assert_eq!(Access::of(&config, "root"), Some(Access::Admin));
        assert_eq!(Access::of(&config, "watch"), Some(Access::Stats));
        assert_eq!(Access::of(&config, "app"), None);
    }

    #[test]
    fn a_query_ends_at_its_only_nul() {
        assert_eq!(query_text(b"SHOW POOLS\0").ok(), Some(&b"SHOW POOLS"[..]));
        let error = |body: &[u8]| query_text(body).unwrap_err().to_string();
        assert_eq!(error(b"SHOW POOLS"), "invalid string in message");
        assert_eq!(error(b"SHOW\0POOLS\0"), "invalid message format");
    }

    #[test]
    fn both_console_names_reach_the_console() {
        assert!(is_console("pgweir") && is_console("pgbouncer"));
        assert!(!is_console("PgBouncer") && !is_console("app"));
    }
}

//! The coordination connection of one [`Site`]: logged in with the pools' own server code
//! ([`crate::server::login::connect_named`]) and named in `application_name` from its
//! startup, it reads the site's advisory locks from `pg_locks` every [`POLL`], asks
//! [`share::plan`] what to do with each budget, and takes, announces and releases locks accordingly, raising a budget's
//! allowance only after its slots are locked and unlocking a slot only once the servers
//! it covered are closed and their backends gone from `pg_stat_activity`.
//!
//! When the connection fails, Postgres has dropped its locks with it: every budget of the
//! site is allowed nothing until a new connection has taken slots again, so pools open no
//! server and close their idle ones (busy ones when released). Reconnects every
//! [`RECONNECT`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::time::MissedTickBehavior;

use super::share::{self, Local, Plan, Slot, View};
use super::{Shared, Site, Status};
use crate::server::login::connect_named;
use crate::server::{ServerConn, ServerError};

/// How often the locks are read: how fast shares move when members come and go.
pub const POLL: Duration = Duration::from_millis(250);
/// The pause before a lost coordination connection is opened again.
pub const RECONNECT: Duration = Duration::from_secs(1);
/// Second keys of the per-budget locks that are not slots, held shared: the member lock
/// (held by every process coordinating the budget) and the waiting lock (held while a
/// process wants more slots than it holds).
const MEMBER: i32 = -1;
const WAITING: i32 = -2;

/// The site's advisory locks held now: first key, second key and holder, for the
/// two-key form (`objsubid` 2). Keys are `oid`s there, read back as the `int4`s they were.
const LOCKS_SQL: &str = "SELECT l.classid::int8, l.objid::int8, l.pid FROM pg_locks l \
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted \
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// Why a coordination connection was given up.
#[derive(Debug, Error)]
pub enum FleetError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer to {0}")]
    Answer(&'static str),
}

/// What the connection knows of one budget between polls.
#[derive(Debug, Default)]
struct Tracked {
    held: BTreeSet<Slot>,
    before: View,
    waiting: bool,
    /// Backends of closed servers still in `pg_stat_activity`.
    closing: Vec<i32>,
}

/// Runs the site's coordination for the life of the process.
pub async fn run(site: Arc<Site>, application_name: String, timeout: Duration) {
    loop {
        let Err(e) = session(&site, &application_name, timeout).await;
        let mut was_up = false;
        for shared in site.budgets() {
            shared.budget.allow(0);
            let before = std::mem::take(&mut *shared.status.lock());
            was_up |= before.connected;
        }
        let (at, database) = (site.target.address(), &site.target.dbname);
        // Once per outage, not once per attempt.
        if was_up {
            tracing::warn!(site = %at, %database, error = %e,
                "fleet coordination connection lost: opening no servers against its budgets until it is back");
        } else {
            tracing::debug!(site = %at, %database, error = %e, "fleet coordination connection failed");
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One coordination connection, polled until it fails.
async fn session(
    site: &Site,
    application_name: &str,
    timeout: Duration,
) -> Result<std::convert::Infallible, FleetError> {
    let mut conn = connect_named(&site.target, timeout, Some(application_name)).await?;
    tracing::info!(site = %site.target.address(), database = %site.target.dbname, pid = conn.key.pid,
        "fleet coordination connection up");
    let mut tracked: HashMap<i32, Tracked> = HashMap::new();
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let polled = tokio::time::timeout(timeout, poll(&mut conn, site, &mut tracked));
        polled.await.map_err(|_| FleetError::Timeout(timeout))??;
    }
}

/// One poll over every budget of the site.
async fn poll(
    conn: &mut ServerConn,
    site: &Site,
    tracked: &mut HashMap<i32, Tracked>,
) -> Result<(), FleetError> {
    let budgets = site.budgets();
    for shared in &budgets {
        if let Entry::Vacant(new) = tracked.entry(shared.key) {
            let sql = format!(
                "SELECT pg_try_advisory_lock_shared({}, {MEMBER})",
                shared.key
            );
            expect_true(conn, &sql, "the member lock").await?;
            new.insert(Tracked::default());
        }
    }
    let views = read_views(conn).await?;
    let me = conn.key.pid;
    for shared in &budgets {
        let Some(t) = tracked.get_mut(&shared.key) else {
            continue;
        };
        let view = views.get(&shared.key).cloned().unwrap_or_default();
        let local = Local {
            me,
            max: shared.budget.max(),
            held: &t.held,
            want: shared.budget.demand(),
            used: shared.budget.used(),
        };
        let plan = share::plan(&view, &t.before, &local);
        step(conn, shared, t, &plan).await?;
        t.before = view;
    }
    Ok(())
}

/// Carries out one budget's plan: lock, announce, lower or raise the allowance, unlock.
async fn step(
    conn: &mut ServerConn,
    shared: &Shared,
    t: &mut Tracked,
    plan: &Plan,
) -> Result<(), FleetError> {
    let key = shared.key;
    if !plan.take.is_empty() {
        let got = try_lock(conn, key, &plan.take).await?;
        t.held.extend(got);
    }
    if plan.wait != t.waiting {
        let sql = if plan.wait {
            format!("SELECT pg_try_advisory_lock_shared({key}, {WAITING})")
        } else {
            format!("SELECT pg_advisory_unlock_shared({key}, {WAITING})")
        };
        expect_true(conn, &sql, "the waiting lock").await?;
        t.waiting = plan.wait;
    }
    let used = shared.budget.allow(t.held.len().saturating_sub(plan.give));
    t.closing.extend(shared.budget.take_closed());
    if !t.closing.is_empty() {
        t.closing = still_there(conn, &t.closing).await?;
    }
    let n = share::releasable(t.held.len(), plan.give, used);
    if n > 0 && t.closing.is_empty() {
        let gone: Vec<Slot> = t.held.iter().rev().take(n).copied().collect();
        unlock(conn, key, &gone).await?;
        for s in &gone {
            t.held.remove(s);
        }
        tracing::debug!(kind = shared.kind.as_str(), name = %shared.name, slots = n, "gave fleet slots back");
    }
    *shared.status.lock() = Status {
        held: t.held.len(),
        share: plan.share,
        members: plan.members,
        waiting: t.waiting,
        connected: true,
    };
    Ok(())
}

/// Reads the site's locks into one view per first key.
async fn read_views(conn: &mut ServerConn) -> Result<HashMap<i32, View>, FleetError> {
    let rows = conn.query_rows(LOCKS_SQL).await?.rows;
    let mut views: HashMap<i32, View> = HashMap::new();
    for row in rows {
        let [key, second, pid] = [0, 1, 2].map(|i| number(&row, i));
        let (Some(key), Some(second), Some(pid)) = (key, second, pid) else {
            return Err(FleetError::Answer("the lock table"));
        };
        // oids are unsigned: the int4 keys come back as their two's complement.
        let (key, second, pid) = (key as u32 as i32, second as u32 as i32, pid as i32);
        let view = views.entry(key).or_default();
        match second {
            MEMBER => {
                view.members.insert(pid);
            }
            WAITING => {
                view.waiting.insert(pid);
            }
            slot if slot >= 0 => {
                view.holders.insert(slot as Slot, pid);
            }
            _ => {}
        }
    }
    Ok(views)
}

/// Column `i` of a row as a number.
fn number(row: &[Option<String>], i: usize) -> Option<i64> {
    row.get(i)?.as_deref()?.parse().ok()
}

/// Tries to lock each slot; returns those it got.
async fn try_lock(
    conn: &mut ServerConn,
    key: i32,
    slots: &[Slot],
) -> Result<Vec<Slot>, FleetError> {
    let sql = format!(
        "SELECT s, pg_try_advisory_lock({key}, s) FROM unnest(ARRAY[{}]::int4[]) s",
        list(slots)
    );
    let rows = conn.query_rows(&sql).await?.rows;
    let got = rows
        .iter()
        .filter(|r| r.get(1).and_then(|v| v.as_deref()) == Some("t"))
        .filter_map(|r| number(r, 0).and_then(|s| Slot::try_from(s).ok()))
        .collect();
    Ok(got)
}

async fn unlock(conn: &mut ServerConn, key: i32, slots: &[Slot]) -> Result<(), FleetError> {
    let sql = format!(
        "SELECT pg_advisory_unlock({key}, s) FROM unnest(ARRAY[{}]::int4[]) s",
        list(slots)
    );
    conn.query_rows(&sql).await?;
    Ok(())
}

/// The backends of `pids` still in `pg_stat_activity`.
async fn still_there(conn: &mut ServerConn, pids: &[i32]) -> Result<Vec<i32>, FleetError> {
    let sql = format!(
        "SELECT pid FROM pg_stat_activity WHERE pid = ANY(ARRAY[{}]::int4[])",
        list(pids)
    );
    let rows = conn.query_rows(&sql).await?.rows;
    Ok(rows
        .iter()
        .filter_map(|r| number(r, 0).and_then(|p| i32::try_from(p).ok()))
        .collect())
}

/// Runs a query whose one value must be true.
async fn expect_true(
    conn: &mut ServerConn,
    sql: &str,
    what: &'static str,
) -> Result<(), FleetError> {
    let rows = conn.query_rows(sql).await?.rows;
    match rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
    {
        Some("t") => Ok(()),
        _ => Err(FleetError::Answer(what)),
    }
}

/// Numbers as an SQL array's elements.
fn list<T: ToString>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    items.join(",")
}

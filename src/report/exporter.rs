//! The Prometheus endpoint on `metrics_addr`: `GET /metrics` (text format) and
//! `GET /health` (200 while serving clients, 503 while shutting down or while every
//! database is paused). [`install`] puts the `metrics-exporter-prometheus` recorder in
//! place at start, before any pool exists, so the histogram and counter handles the pools
//! and relay keep are live; [`serve`] answers scrapes. Values that are state rather than
//! events (clients and servers by state, pool sizes, replica lag, the totals of
//! [`crate::stats::GroupStats`]) are read when a scrape arrives, so they cost the relay nothing;
//! [`super::gauges`] merges what several groups report for one series and zeroes series
//! nothing reports any more.
//!
//! The HTTP side is the few lines Prometheus needs: one request per connection, GET only,
//! headers up to 8 kB, at most 64 connections and 10 s each.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::gauges::{Gauges, Labels, Merge, Series};
use crate::app::App;
use crate::clients::ClientState;
use crate::config::Node;
use crate::pool::PoolGroup;

/// Histogram buckets, in seconds: from a fast pgbench query to a long report.
const BUCKETS: [f64; 15] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];
/// How often histogram samples are folded into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);
/// The most of a request read before answering.
const MAX_REQUEST: usize = 8 * 1024;
/// Connections answered at once; more are closed.
const MAX_SCRAPERS: usize = 64;
/// How long one request and its answer may take.
const REQUEST_TIME: Duration = Duration::from_secs(10);

/// Installs the global recorder and describes every family to it; call once, before pools
/// are created.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .install_recorder()?;
    crate::stats::catalog::describe();
    Ok(handle)
}

/// Answers scrapes on `listener` until the process ends.
pub async fn serve(app: Arc<App>, handle: PrometheusHandle, listener: TcpListener) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Beyond the limit a connection is closed at once: scrapers cannot use up the
        // file descriptors clients need.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let (app, handle, seen) = (Arc::clone(&app), handle.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            let answered = tokio::time::timeout(REQUEST_TIME, answer(&app, &handle, &seen, stream));
            match answered.await {
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics request failed"),
                Err(_) => tracing::debug!("metrics request took too long; closed"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn answer(
    app: &App,
    handle: &PrometheusHandle,
    seen: &Mutex<BTreeSet<Series>>,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        if stream.read_buf(&mut request).await? == 0 {
            break;
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            refresh(app, &mut seen.lock());
            ("200 OK", handle.render())
        }
        (Some(b"GET"), Some(b"/health")) if app.serving() => ("200 OK", "ok\n".to_owned()),
        (Some(b"GET"), Some(b"/health")) if app.accepting() => {
            ("503 Service Unavailable", "paused\n".to_owned())
        }
        (Some(b"GET"), Some(b"/health")) => (
            "503 Service Unavailable",
            "not accepting clients\n".to_owned(),
        ),
        _ => ("404 Not Found", "try /metrics or /health\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Sets every gauge and total from the current state. `previous` holds the gauge series
/// the last scrape set, so those nothing reports any more are zeroed (see [`super::gauges`]).
fn refresh(app: &App, previous: &mut BTreeSet<Series>) {
    let mut gauges = Gauges::default();
    let up = if app.serving() { 1.0 } else { 0.0 };
    gauges.put("pgweir_up", Vec::new(), up, Merge::First);
    for ((database, user), states) in client_counts(app) {
        for (state, n) in ClientState::ALL.into_iter().zip(states) {
            let labels = vec![
                ("database", database.clone()),
                ("user", user.clone()),
                ("state", state.as_str().to_owned()),
            ];
            gauges.put("pgweir_clients", labels, n as f64, Merge::Sum);
        }
    }
    let mut bans = BTreeMap::new();
    for group in app.pools.groups() {
        refresh_group(&group, &mut gauges, &mut bans);
    }
    for (labels, n) in bans {
        metrics::counter!("pgweir_replica_bans_total", &labels).absolute(n);
    }
    refresh_fleet(app, &mut gauges);
    *previous = gauges.publish(previous);
}

/// The standing of each connection limit this process shares with its fleet.
fn refresh_fleet(app: &App, gauges: &mut Gauges) {
    let Some(fleet) = app.pools.fleet() else {
        return;
    };
    for r in fleet.report() {
        let labels = vec![
            ("fleet", fleet.name.to_string()),
            ("kind", r.kind.as_str().to_owned()),
            ("name", r.name.clone()),
        ];
        let s = r.status;
        let values = [
            ("pgweir_fleet_members", s.members),
            ("pgweir_fleet_share", s.share),
            ("pgweir_fleet_slots_held", s.held),
            ("pgweir_fleet_waiting", usize::from(s.waiting)),
        ];
        for (name, v) in values {
            gauges.put(name, labels.clone(), v as f64, Merge::First);
        }
    }
}

/// Logged-in clients per (database, user), by state in [`ClientState::ALL`]'s order.
fn client_counts(app: &App) -> BTreeMap<(String, String), [usize; 4]> {
    let mut out: BTreeMap<(String, String), [usize; 4]> = BTreeMap::new();
    for ((database, user, state), n) in app.clients.counts() {
        let i = ClientState::ALL
            .iter()
            .position(|s| *s == state)
            .unwrap_or(0);
        out.entry((database, user)).or_default()[i] += n;
    }
    out
}

/// One group's totals (set at once: a replaced group shares its successor's), and its
/// gauges and replica ban counts into `gauges` and `bans`, to be merged with the others'.
fn refresh_group(group: &PoolGroup, gauges: &mut Gauges, bans: &mut BTreeMap<Labels, u64>) {
    let s = &group.stats;
    let pair = [("database", s.database.clone()), ("user", s.user.clone())];
    let totals = [
        ("pgweir_transactions_total", &s.transactions),
        ("pgweir_queries_total", &s.queries),
        ("pgweir_received_bytes_total", &s.received),
        ("pgweir_sent_bytes_total", &s.sent),
        ("pgweir_prepared_cache_hits_total", &s.prepared.hits),
        ("pgweir_prepared_cache_misses_total", &s.prepared.misses),
    ];
    for (name, value) in totals {
        metrics::counter!(name, &pair).absolute(value.load(Ordering::Relaxed));
    }
    for (node, pool) in group.pools() {
        let snap = pool.snapshot();
        let labels = vec![
            ("database", s.database.clone()),
            ("user", s.user.clone()),
            ("node", node.label()),
        ];
        let states = [
            ("active", snap.active),
            ("idle", snap.idle),
            ("used", snap.used),
            ("login", snap.login),
        ];
        for (state, n) in states {
            let mut l = labels.clone();
            l.push(("state", state.to_owned()));
            gauges.put("pgweir_servers", l, n as f64, Merge::Sum);
        }
        let size = snap.size as f64;
        gauges.put("pgweir_pool_size", labels.clone(), size, Merge::First);
        let reserve = snap.reserve_in_use as f64;
        gauges.put("pgweir_reserve_in_use", labels.clone(), reserve, Merge::Sum);
        let wait = snap.max_wait.as_secs_f64();
        gauges.put("pgweir_max_wait_seconds", labels, wait, Merge::Max);
    }
    let Some(monitor) = &group.monitor else {
        return;
    };
    for r in 0..monitor.replicas() {
        let labels = vec![
            ("database", s.database.clone()),
            ("node", Node::Replica(r).label()),
        ];
        let mut info = labels.clone();
        info.push(("address", monitor.name(r).to_owned()));
        gauges.put("pgweir_replica_info", info, 1.0, Merge::First);
        let lag = monitor.lag(r).map_or(f64::NAN, |d| d.as_secs_f64());
        gauges.put(
            "pgweir_replica_lag_seconds",
            labels.clone(),
            lag,
            Merge::First,
        );
        let banned = if monitor.banned(r) { 1.0 } else { 0.0 };
        gauges.put(
            "pgweir_replica_banned",
            labels.clone(),
            banned,
            Merge::First,
        );
        let n = bans.entry(labels).or_default();
        *n = (*n).max(monitor.bans(r));
    }
}

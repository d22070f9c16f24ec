//! The Prometheus endpoint on `metrics_addr`: `GET /metrics` (text format) and
//! `GET /health` (200 while serving clients, 503 while shutting down or while every
//! database is paused). [`install`] puts the `metrics-exporter-prometheus` recorder in
//! place at start, before any pool exists, so the histogram and counter handles the pools
//! and relay keep are live; [`serve`] answers scrapes. Values that are state rather than
//! events (clients and servers by state, pool sizes, replica lag, the totals of
//! [`super::GroupStats`]) are read when a scrape arrives, so they cost the relay nothing.
//!
//! The HTTP side is the few lines Prometheus needs: one request per connection, GET only,
//! headers up to 8 kB, at most 64 connections and 10 s each.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::ClientState;
use crate::app::App;
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

/// Installs the global recorder; call once, before pools are created.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .install_recorder()
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
    let seen = Arc::new(Mutex::new(HashSet::new()));
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
    seen: &Mutex<HashSet<(String, String)>>,
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

/// Sets every gauge and total from the current state. `seen` keeps the (database, user)
/// pairs that ever had clients, so a pair whose clients all left shows zeros, not the last
/// count.
fn refresh(app: &App, seen: &mut HashSet<(String, String)>) {
    metrics::gauge!("pgweir_up").set(if app.serving() { 1.0 } else { 0.0 });
    let counts = app.connected.counts();
    seen.extend(counts.keys().map(|(d, u, _)| (d.clone(), u.clone())));
    for (database, user) in seen.iter() {
        for state in ClientState::ALL {
            let key = (database.clone(), user.clone(), state);
            let n = counts.get(&key).copied().unwrap_or(0);
            let labels = [
                ("database", database.clone()),
                ("user", user.clone()),
                ("state", state.as_str().to_owned()),
            ];
            metrics::gauge!("pgweir_clients", &labels).set(n as f64);
        }
    }
    for group in app.pools.groups() {
        refresh_group(&group);
    }
}

fn refresh_group(group: &PoolGroup) {
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
        let labels = [
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
            let mut l = labels.to_vec();
            l.push(("state", state.to_owned()));
            metrics::gauge!("pgweir_servers", &l).set(n as f64);
        }
        metrics::gauge!("pgweir_pool_size", &labels).set(snap.size as f64);
        metrics::gauge!("pgweir_reserve_in_use", &labels).set(snap.reserve_in_use as f64);
        metrics::gauge!("pgweir_max_wait_seconds", &labels).set(snap.max_wait.as_secs_f64());
    }
    let Some(monitor) = &group.monitor else {
        return;
    };
    for r in 0..monitor.replicas() {
        let labels = [
            ("database", s.database.clone()),
            ("replica", monitor.name(r).to_owned()),
        ];
        let lag = monitor.lag(r).map_or(f64::NAN, |d| d.as_secs_f64());
        metrics::gauge!("pgweir_replica_lag_seconds", &labels).set(lag);
        let banned = if monitor.banned(r) { 1.0 } else { 0.0 };
        metrics::gauge!("pgweir_replica_banned", &labels).set(banned);
        metrics::counter!("pgweir_replica_bans_total", &labels).absolute(monitor.bans(r));
    }
}

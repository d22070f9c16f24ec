//! The integration-test harness shared by every test module.
//!
//! The tests share one throwaway PostgreSQL 15 cluster ([`cluster()`]),
//! started on first use and torn down by a watchdog when the test process exits. Tests run
//! pgweir itself as a child process ([`Pgweir`]) with a generated config on a free
//! port, and talk to it with real clients: tokio-postgres, `psql` and `pgbench`.
//! Nothing here mocks PostgreSQL: a missing installation is a test failure that says
//! how to install it.
//!
//! All tests run in one process, on as many threads as there are cores, next to tests of
//! every other module. What would disturb the shared cluster happens on a private one
//! ([`LazyCluster`], pointed at with [`PgweirBuilder::on`]):
//! - `restart`: stops and restarts Postgres;
//! - `replica::*` and the replica tests of `admin::console`, `exporter` and `metrics`: clone
//!   streaming replicas (replication slots, fast checkpoints) from [`routing::primary`];
//! - `tls::server`, `tls::auth` (the secure setup) and `convert` (TLS on both sides):
//!   `ssl = on` with `ALTER SYSTEM`, extra pg_hba.conf lines and a reload, on
//!   [`tls::ssl_cluster`];
//! - `auth::hba` (a role without a password): `ALTER ROLE pgweir_trust PASSWORD NULL`.
//!
//! Everything else a test does to Postgres stays inside what it owns: databases from
//! [`Cluster::create_database`], roles of its own, backends it terminates by its own
//! database, role or pid.
//!
//! The tests that load the machine most (pgbench with 100 or more clients, chaos, shutdown
//! under load) and the few whose backend counts or timing such load upsets take [`heavy`],
//! so no two of them run at once.
//! The test process itself stays far below its 20,000 open files: clients that come in
//! hundreds are pgbench's and the drivers' own processes.

mod cluster;
pub mod console;
pub mod differential;
pub mod faults;
mod pgweir;
pub mod replica;
pub mod routing;
pub mod tls;
mod tools;
pub mod wire;

pub use cluster::{
    cluster, direct_config, Cluster, LazyCluster, TestUser, MD5_USER, PLAIN_USER, SCRAM_USER,
    TEST_DB, TRUST_USER,
};
pub use pgweir::{check, pgweir_command, Pgweir, PgweirBuilder};
pub use tools::{pg_tool, pgbench, pgbench_database, pgbench_database_on, report_number, run_tool};

use std::net::TcpListener;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

/// Held for the whole of a test that loads the machine most (pgbench with 100 or more
/// clients, the chaos test, the shutdown under load) or whose backend counts or timing such
/// load has been seen to upset (a server closed to make room can still show in
/// `pg_stat_activity` while its successor logs in; a client queued behind a transaction
/// when shutdown begins): such a test shares the test threads with the others, never the
/// machine with another of its kind.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Asks the kernel for a port nobody is listening on. The port is released again
/// before returning, so there is a tiny race with other processes; tests accept it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// True when the test process runs as root, the case where Postgres refuses to
/// start unless we switch to the `postgres` OS user.
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .map(|uid| uid == "0")
        .unwrap_or(false)
}

/// Connects with tokio-postgres and drives the connection on a background task, so
/// the returned client is ready to use.
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The SQLSTATE of a server-reported error, if the error came from a server (or
/// from pgweir speaking as one).
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<SqlState> {
    err.as_db_error().map(|db| db.code().clone())
}

/// Unwraps an error that must carry a SQLSTATE, with a readable panic otherwise.
pub fn expect_sqlstate<T: std::fmt::Debug>(
    result: Result<T, tokio_postgres::Error>,
    what: &str,
) -> SqlState {
    match result {
        Ok(value) => panic!("{what}: expected an error, got {value:?}"),
        Err(err) => {
            sqlstate(&err).unwrap_or_else(|| panic!("{what}: error without SQLSTATE: {err:?}"))
        }
    }
}

/// The FATAL a refused login got: SQLSTATE and message.
pub fn refusal(result: Result<Client, tokio_postgres::Error>, what: &str) -> (String, String) {
    let err = match result {
        Ok(_) => panic!("{what}: should have been refused"),
        Err(err) => err,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: no SQLSTATE in {err:?}"));
    assert_eq!(db.severity(), "FATAL", "{what}: {db:?}");
    (db.code().code().to_owned(), db.message().to_owned())
}

/// Bounds how long a future may take, so a hung pooler fails the test instead of
/// hanging the whole suite.
pub async fn within<F: std::future::Future>(secs: u64, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: did not finish within {secs}s"),
    }
}

/// Connects and forwards the connection's asynchronous messages (notices and
/// notifications) to a channel, which plain [`connect`] throws away.
pub async fn connect_with_messages(
    config: &Config,
) -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
) {
    let (client, mut connection) = config.connect(NoTls).await.expect("connect");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) =
            futures_util::future::poll_fn(|cx| connection.poll_message(cx)).await
        {
            let _ = tx.send(message);
        }
    });
    (client, rx)
}

/// Peak resident memory of a process in KiB (`VmHWM` in /proc/PID/status).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM in /proc status")
}

/// The backend pid serving `client` right now. Uses the simple protocol, so it names no
/// prepared statement that could land on another server in transaction mode.
pub async fn try_backend_pid(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let rows = client.simple_query("SELECT pg_backend_pid()").await?;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                row.get(0).and_then(|pid| pid.parse().ok())
            }
            _ => None,
        })
        .expect("a pid row"))
}

/// The role `client` is logged in as on the server. Simple protocol, like [`try_backend_pid`].
pub async fn current_user(client: &Client) -> String {
    let rows = client
        .simple_query("SELECT current_user::text")
        .await
        .expect("SELECT current_user");
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
}

/// [`try_backend_pid`] for tests where the query must succeed.
pub async fn backend_pid(client: &Client) -> i32 {
    try_backend_pid(client)
        .await
        .expect("SELECT pg_backend_pid()")
}

/// Polls `pg_stat_activity` directly on Postgres every 10 ms until the returned flag is
/// set, then yields the most backends it saw in `db` (only `user`'s, when given).
pub fn watch_peak(
    user: Option<&'static str>,
    db: String,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<i64>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = tokio::spawn(async move {
        let admin = cluster().admin().await;
        let mut peak = 0;
        while !flag.load(Ordering::Relaxed) {
            let now = match user {
                Some(u) => cluster().backend_count(&admin, u, &db).await,
                None => cluster().db_backend_count(&admin, &db).await,
            };
            peak = peak.max(now);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak
    });
    (stop, handle)
}

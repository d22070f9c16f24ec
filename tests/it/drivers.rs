//! Real client drivers through pgweir in transaction mode with fewer servers than
//! clients, each leaning on named prepared statements: `pgbench -M prepared`,
//! psycopg 3 with every query prepared, asyncpg with its statement cache and
//! node-postgres named queries.
//!
//! The Python and Node programs live in `tests/drivers/`; each checks every result
//! itself, prints a summary and exits non-zero on any error. This file starts pgweir
//! in front of a database of the test's own, runs the program against it, watches
//! Postgres to confirm the clients really shared a few servers, and prints the
//! program's output when it fails. A missing driver fails the test with the command
//! that installs it (`.ci/run` installs them all).

use crate::common;

use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{cluster, pgbench, report_number, run_tool, watch_peak, Pgweir, SCRAM_USER};

/// How long one driver program may run before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(120);

const PYTHON_HINT: &str = "the Python driver tests need python3 with psycopg 3 and asyncpg: \
pip install 'psycopg[binary]>=3.2,<3.4' 'asyncpg>=0.29,<0.33' (or run .ci/run)";
const PGBENCH_HINT: &str = "pgbench comes with PostgreSQL 15's client programs: \
apt-get install postgresql-client-15";
const NODE_HINT: &str = "the node-postgres test needs Node.js and the locked `pg` package: \
npm ci --prefix tests/drivers (or run .ci/run)";

/// pgweir in transaction mode in front of `db` with `pool_size` servers.
fn pooler(db: &str, pool_size: usize) -> Pgweir {
    Pgweir::builder()
        .database(db)
        .pool_size(pool_size)
        .max_client_conn(200)
        .start()
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/drivers")
        .join(name)
}

/// A driver program pointed at pgweir through the libpq environment variables,
/// which psycopg, asyncpg and node-postgres all read.
fn driver(program: &str, script_name: &str, pgweir: &Pgweir, db: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg(script(script_name))
        .env_remove("PGSERVICE")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pgweir.port.to_string())
        .env("PGUSER", SCRAM_USER.name)
        .env("PGPASSWORD", SCRAM_USER.password)
        .env("PGDATABASE", db)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

/// Runs `cmd` with stdout and stderr interleaved in one temp file, killing it after
/// [`RUN_LIMIT`]. Returns the exit status (`None` when killed) and the output.
fn run_limited(mut cmd: Command, hint: &str) -> (Option<ExitStatus>, String) {
    let mut out = tempfile::tempfile().expect("temp file for a driver's output");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup output file"))
        .stderr(out.try_clone().expect("dup output file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}\n{hint}", cmd.get_program()));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a driver program") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    out.rewind().expect("rewind output file");
    out.read_to_string(&mut text)
        .expect("read a driver's output");
    (status, text)
}

/// Runs a driver program while watching Postgres, and fails the test unless it
/// exited 0 and the clients shared at most `pool_size` servers.
async fn run_checked(cmd: Command, hint: &'static str, db: &str, pool_size: i64) -> String {
    let what = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let (stop, watcher) = watch_peak(Some(SCRAM_USER.name), db.to_string());
    let (status, output) = tokio::task::spawn_blocking(move || run_limited(cmd, hint))
        .await
        .expect("driver thread");
    stop.store(true, Ordering::Relaxed);
    let peak = watcher.await.expect("backend watcher");
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!("{what} failed ({status}):\n{output}"),
        None => panic!("{what} did not finish within {RUN_LIMIT:?}:\n{output}"),
    }
    assert!(
        (1..=pool_size).contains(&peak),
        "pool of {pool_size} but Postgres saw a peak of {peak} backends:\n{output}"
    );
    eprintln!("{output}peak backends: {peak}");
    output
}

#[tokio::test]
async fn pgbench_prepared_100_clients_onto_a_pool_of_10() {
    let _heavy = common::heavy().await;
    const CLIENTS: u64 = 100;
    const PER_CLIENT: u64 = 30;
    let db = cluster().create_database("drv_pgbench");
    let init = run_tool(pgbench(cluster().port, &db, &["-i", "-q"])).await;
    assert!(
        init.status.success(),
        "pgbench -i straight to Postgres: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let pgweir = pooler(&db, 10);
    let (clients, per_client) = (CLIENTS.to_string(), PER_CLIENT.to_string());
    let args = [
        "-M",
        "prepared",
        "-c",
        &clients,
        "-j",
        "2",
        "-t",
        &per_client,
    ];
    let report = run_checked(pgbench(pgweir.port, &db, &args), PGBENCH_HINT, &db, 10).await;
    let processed = report_number(&report, "number of transactions actually processed:");
    assert_eq!(processed, Some(CLIENTS * PER_CLIENT), "{report}");
    let failed = report_number(&report, "number of failed transactions:");
    assert_eq!(failed, Some(0), "{report}");
}

#[tokio::test]
async fn psycopg_prepares_every_query_from_20_clients_on_3_servers() {
    let db = cluster().create_database("drv_psycopg");
    let pgweir = pooler(&db, 3);
    let cmd = driver("python3", "psycopg_check.py", &pgweir, &db);
    run_checked(cmd, PYTHON_HINT, &db, 3).await;
}

#[tokio::test]
async fn asyncpg_statement_cache_from_20_connections_on_3_servers() {
    let db = cluster().create_database("drv_asyncpg");
    let pgweir = pooler(&db, 3);
    let cmd = driver("python3", "asyncpg_check.py", &pgweir, &db);
    run_checked(cmd, PYTHON_HINT, &db, 3).await;
}

#[tokio::test]
async fn node_postgres_named_queries_from_20_clients_on_3_servers() {
    let db = cluster().create_database("drv_node");
    let pgweir = pooler(&db, 3);
    let cmd = driver("node", "pg_check.js", &pgweir, &db);
    run_checked(cmd, NODE_HINT, &db, 3).await;
}

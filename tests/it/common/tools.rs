//! Running PostgreSQL's client programs (`psql`, `pgbench`) against pgweir.
//!
//! Client programs may run as root, so unlike the server they are started directly.
//! The password travels in `PGPASSWORD` so it never appears in a process listing.
//! [`pgbench`] and [`report_number`] run pgbench as the SCRAM test user and read its report.

use std::process::{Command, Output, Stdio};

use super::{cluster, Cluster, SCRAM_USER};

/// A command for one of the cluster's client programs with the password set.
pub fn pg_tool(program: &str, password: &str) -> Command {
    let mut cmd = Command::new(cluster().bindir.join(program));
    cmd.env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .stdin(Stdio::null());
    cmd
}

/// Runs a client program to completion on a blocking thread (so the async test's
/// runtime keeps driving other connections meanwhile) and returns its output.
pub async fn run_tool(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run a PostgreSQL client program"))
        .await
        .expect("client program thread")
}

/// pgbench as the SCRAM test user against `db` on 127.0.0.1:`port` (Postgres itself or
/// pgweir), with `args` before the database name.
pub fn pgbench(port: u16, db: &str, args: &[&str]) -> Command {
    let mut cmd = pg_tool("pgbench", SCRAM_USER.password);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        SCRAM_USER.name,
    ])
    .args(args)
    .arg(db);
    cmd
}

/// The number after `prefix` on the line of pgbench's report that starts with it.
pub fn report_number(report: &str, prefix: &str) -> Option<u64> {
    let line = report.lines().find(|l| l.starts_with(prefix))?;
    line[prefix.len()..]
        .split(['/', ' '])
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// A database of its own with pgbench's tables (`pgbench -i`, scale 1), made straight on
/// the shared cluster.
pub async fn pgbench_database(prefix: &str) -> String {
    pgbench_database_on(cluster(), prefix).await
}

/// [`pgbench_database`] on `cluster`.
pub async fn pgbench_database_on(cluster: &Cluster, prefix: &str) -> String {
    let db = cluster.create_database(prefix);
    let init = run_tool(pgbench(cluster.port, &db, &["-i", "-q"])).await;
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    db
}

//! Running PostgreSQL's client programs (`psql`, `pgbench`) against pgweir.
//!
//! Client programs may run as root, so unlike the server they are started directly.
//! The password travels in `PGPASSWORD` so it never appears in a process listing.

use std::process::{Command, Output, Stdio};

use super::cluster;

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

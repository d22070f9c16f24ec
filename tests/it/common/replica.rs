//! Streaming replicas of the test cluster, for the replica-routing tests: each is cloned
//! with `pg_basebackup -R` into a directory of its own, streams through a replication slot
//! of its own, listens on its own port and replays the primary's WAL. Extra settings
//! (`recovery_min_apply_delay`, ...) go into its config.
//! A watchdog stops it when the test process is gone; the primary's removes the files.
//! A replica also knows how it appears in a pgweir config ([`replicas_line`]) and can pause
//! its replay, so a test can make it fall behind on purpose.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::cluster::{
    append, chown_to_postgres, direct_config, run_ok, shell_line, spawn_detached, Cluster, ADMIN,
};
use super::{connect, free_port};

/// A running streaming replica of a [`Cluster`] (in the tests, [`super::routing::primary`]).
pub struct Replica {
    /// Its data directory (inside the primary's temp dir).
    pub data: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

impl Cluster {
    /// Clones a new streaming replica, appends `extra_conf` to its configuration, starts
    /// it and waits until it has replayed everything the primary had committed.
    pub async fn replica(&self, extra_conf: &str) -> Replica {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let data = self.dir.join(format!("replica{n}"));
        let mut clone = self.server_cmd("pg_basebackup");
        clone
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync", "--checkpoint=fast"])
            // A slot of its own keeps the WAL it still needs: without one, the checkpoint
            // another replica's clone forces may remove it, failing this clone or leaving
            // the started replica unable to catch up.
            .args(["-C", "-S", &format!("pgweir_replica{n}")])
            .args(["-U", "postgres", "-h"])
            .arg(&self.dir)
            .args(["-p", &self.port.to_string()]);
        run_ok(&mut clone, "pg_basebackup");
        let replica = Replica {
            data,
            port: free_port(),
        };
        append(
            &replica.data.join("postgresql.conf"),
            &format!(
                "\nport = {}\nhot_standby = on\n{extra_conf}\n",
                replica.port
            ),
        );
        chown_to_postgres(&replica.data);
        let mut stop = self.server_cmd("pg_ctl");
        stop.arg("-D")
            .arg(&replica.data)
            .args(["stop", "-m", "immediate"]);
        spawn_detached(&format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {} >/dev/null 2>&1",
            shell_line(&stop),
            pid = std::process::id(),
        ));
        self.replica_ctl(&replica, "start");
        replica.wait_caught_up(self).await;
        replica
    }

    /// `pg_ctl start` or `stop` (fast) for `replica`.
    pub fn replica_ctl(&self, replica: &Replica, action: &str) {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg("-D")
            .arg(&replica.data)
            .arg("-l")
            .arg(replica.data.join("replica.log"))
            .args(["-w", "-t", "60", "-m", "fast", action]);
        run_ok(&mut cmd, "pg_ctl on the replica");
    }
}

impl Replica {
    /// Waits (up to 30 s) until the replica is in recovery and has replayed the primary's
    /// WAL insert position as it was when called. The insert position, not the write
    /// position: the test cluster runs with `synchronous_commit = off`, so a commit can
    /// still sit in WAL buffers.
    pub async fn wait_caught_up(&self, primary: &Cluster) {
        let lsn = primary.psql("postgres", "SELECT pg_current_wal_insert_lsn()");
        let deadline = Instant::now() + Duration::from_secs(30);
        let config = direct_config(self.port, &super::SCRAM_USER, "postgres");
        loop {
            if let Ok(client) = connect(&config).await {
                let sql = format!(
                    "SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
                );
                if let Ok(row) = client.query_one(sql.as_str(), &[]).await {
                    if row.get::<_, bool>(0) {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the replica on port {} did not catch up with {lsn} within 30 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its entry in a `replicas = [...]` list of a pgweir database section.
    pub fn toml_entry(&self) -> String {
        format!("{{ host = \"127.0.0.1\", port = {} }}", self.port)
    }

    /// A superuser connection straight to the replica: pausing replay and reading the
    /// replica's own statistics need one.
    pub async fn admin(&self) -> Client {
        connect(&direct_config(self.port, &ADMIN, "postgres"))
            .await
            .expect("admin connection to the replica")
    }

    /// Pauses WAL replay and waits (up to 30 s) until the replica reports it paused: from
    /// then on its replay position stands still, whatever the primary commits.
    pub async fn pause_replay(&self) {
        let admin = self.admin().await;
        admin
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .expect("pg_wal_replay_pause()");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state: String = admin
                .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                .await
                .expect("pg_get_wal_replay_pause_state()")
                .get(0);
            if state == "paused" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica on port {} did not pause within 30 s (state: {state})",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resumes WAL replay after [`Replica::pause_replay`].
    pub async fn resume_replay(&self) {
        self.admin()
            .await
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .expect("pg_wal_replay_resume()");
    }

    /// How many transactions the replica has committed in `db` (read-only ones count: they
    /// are what pgweir routes there), from its own `pg_stat_database`.
    pub async fn commits(&self, db: &str) -> i64 {
        self.admin()
            .await
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                &[&db],
            )
            .await
            .expect("xact_commit on the replica")
            .get(0)
    }
}

/// The `replicas = [...]` line of a pgweir database section listing `replicas`.
pub fn replicas_line(replicas: &[&Replica]) -> String {
    let entries: Vec<String> = replicas.iter().map(|r| r.toml_entry()).collect();
    format!("replicas = [ {} ]", entries.join(", "))
}

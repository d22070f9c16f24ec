//! The throwaway PostgreSQL clusters (version 15, or the one in `$PGWEIR_PG_BIN`): the one
//! every test shares ([`cluster()`]) and the private ones of tests that would disturb it
//! ([`LazyCluster`]), each started lazily.
//!
//! `initdb` runs into a fresh temp dir, the server listens on 127.0.0.1 and a free
//! port, and `pg_hba.conf` gives each test user a different login method so pgweir's
//! server-side authentication meets SCRAM, md5, cleartext and trust. As root (CI),
//! every server program runs as the `postgres` OS user, because Postgres refuses
//! to run as root. A static is never dropped, so a detached watchdog shell stops the
//! cluster and deletes its directory once the test process is gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio_postgres::{Client, Config};

use super::{connect, free_port, is_root};

/// A role created in the cluster, with the `pg_hba.conf` method that guards it.
#[derive(Debug, Clone, Copy)]
pub struct TestUser {
    pub name: &'static str,
    pub password: &'static str,
    /// How Postgres checks this role over TCP: pgweir must speak it upstream.
    pub hba_method: &'static str,
}

/// The everyday test user: SCRAM-SHA-256 on the server.
pub const SCRAM_USER: TestUser = TestUser {
    name: "pgweir_scram",
    password: "scram_pw",
    hba_method: "scram-sha-256",
};
/// Stored as an md5 hash, so Postgres really runs the md5 exchange.
pub const MD5_USER: TestUser = TestUser {
    name: "pgweir_md5",
    password: "md5_pw",
    hba_method: "md5",
};
/// Cleartext password exchange upstream.
pub const PLAIN_USER: TestUser = TestUser {
    name: "pgweir_plain",
    password: "plain_pw",
    hba_method: "password",
};
/// No password upstream at all.
pub const TRUST_USER: TestUser = TestUser {
    name: "pgweir_trust",
    password: "trust_pw",
    hba_method: "trust",
};
/// The harness's own superuser, used to watch and poke the cluster (and its replicas) directly.
pub(super) const ADMIN: TestUser = TestUser {
    name: "pgweir_admin",
    password: "admin_pw",
    hba_method: "scram-sha-256",
};
/// The database every pgweir config exposes by default.
pub const TEST_DB: &str = "pgweir_test";

const INSTALL_HINT: &str = "PostgreSQL 15 server binaries (initdb, pg_ctl, postgres) were not \
found in /usr/lib/postgresql/15/bin nor in `pg_config --bindir`. The integration tests need a \
real PostgreSQL 15: install it with `apt-get install postgresql-15 postgresql-client-15` \
(Debian/Ubuntu) and run the tests again, or set PGWEIR_PG_BIN to the bin directory of another \
PostgreSQL (initdb, pg_ctl, postgres, psql, pgbench).";

/// Names the directory of the PostgreSQL programs to test against instead of version 15's
/// (e.g. `PGWEIR_PG_BIN=/usr/lib/postgresql/17/bin cargo test`).
const PG_BIN_VAR: &str = "PGWEIR_PG_BIN";

/// A running cluster owned by this test process.
#[derive(Debug)]
pub struct Cluster {
    /// Where initdb, pg_ctl, psql and pgbench live.
    pub bindir: PathBuf,
    /// The temp dir holding the data directory, log and unix socket.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
}

/// A cluster started on first use and kept until the test process exits. Safe to use
/// from many test threads at once: the others wait for the first to finish starting it.
/// A failed start is remembered, so every test reports it instead of retrying initdb.
///
/// The shared cluster is one; a module whose tests stop Postgres, change its settings or
/// a role the others log in as keeps another in a static of its own.
pub struct LazyCluster(OnceLock<Result<Cluster, String>>);

impl LazyCluster {
    pub const fn new() -> LazyCluster {
        LazyCluster(OnceLock::new())
    }

    /// The cluster, started now if this is the first call.
    pub fn get(&'static self) -> &'static Cluster {
        let started = self.0.get_or_init(|| {
            std::panic::catch_unwind(Cluster::start).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into())
            })
        });
        match started {
            Ok(cluster) => cluster,
            Err(message) => panic!("the test cluster could not start: {message}"),
        }
    }
}

static SHARED: LazyCluster = LazyCluster::new();

/// The cluster every test shares unless it has a private one.
pub fn cluster() -> &'static Cluster {
    SHARED.get()
}

impl Cluster {
    fn start() -> Cluster {
        let bindir = find_bindir().unwrap_or_else(|message| panic!("{message}"));
        let dir = make_dir();
        chown_to_postgres(&dir);
        let cluster = Cluster {
            bindir,
            dir,
            port: free_port(),
        };
        cluster.spawn_watchdog();
        cluster.initdb();
        cluster.write_config();
        cluster.pg_ctl_start();
        cluster.create_roles_and_databases();
        cluster
    }

    /// The data directory inside the temp dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs a server program, as the `postgres` OS user when we are root.
    pub(super) fn server_cmd(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    /// Stops the cluster and removes its directory once this process has exited,
    /// even if it was killed: the shell runs in its own session and outlives us.
    fn spawn_watchdog(&self) {
        let mut stop = self.server_cmd("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-m", "immediate"]);
        let stop = shell_line(&stop);
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display(),
        );
        spawn_detached(&script);
    }

    fn initdb(&self) {
        let mut cmd = self.server_cmd("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run_ok(&mut cmd, "initdb");
    }

    /// Appends the settings the tests rely on and replaces pg_hba.conf. `wal_keep_size`
    /// keeps WAL a replica being cloned still needs while another clone's fast checkpoint
    /// would recycle it (replicas of one primary are cloned concurrently).
    fn write_config(&self) {
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{dir}'\n\
             max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             log_min_messages = warning\nwal_keep_size = '1GB'\n",
            port = self.port,
            dir = self.dir.display(),
        );
        append(&self.data_dir().join("postgresql.conf"), &conf);
        // Replication over the unix socket lets the harness clone streaming replicas.
        let mut hba = String::from("local all all trust\nlocal replication all trust\n");
        for user in [MD5_USER, PLAIN_USER, TRUST_USER] {
            hba.push_str(&format!(
                "host all {} 127.0.0.1/32 {}\n",
                user.name, user.hba_method
            ));
        }
        hba.push_str("host all all 127.0.0.1/32 scram-sha-256\n");
        std::fs::write(self.data_dir().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    fn pg_ctl_start(&self) {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "start"]);
        run_ok(&mut cmd, "pg_ctl start");
    }

    /// Stops Postgres (`pg_ctl stop -m fast`): every backend is terminated and new
    /// connections are refused until [`Cluster::start_again`]. For fault tests only, on
    /// a private cluster: nothing else may be using it.
    pub fn stop(&self) {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-m", "fast", "stop"]);
        run_ok(&mut cmd, "pg_ctl stop");
    }

    /// Starts Postgres again after [`Cluster::stop`], on the same port and data.
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    /// `pg_ctl restart -m fast`: backends are terminated, committed data survives.
    pub fn restart(&self) {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-m", "fast", "restart"]);
        run_ok(&mut cmd, "pg_ctl restart");
    }

    fn create_roles_and_databases(&self) {
        let mut roles = String::from("SET password_encryption = 'scram-sha-256';\n");
        roles.push_str(&format!(
            "CREATE ROLE {} SUPERUSER LOGIN PASSWORD '{}';\n",
            ADMIN.name, ADMIN.password
        ));
        for user in [SCRAM_USER, PLAIN_USER, TRUST_USER] {
            roles.push_str(&format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}';\n",
                user.name, user.password
            ));
        }
        roles.push_str("SET password_encryption = 'md5';\n");
        roles.push_str(&format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}';\n",
            MD5_USER.name, MD5_USER.password
        ));
        self.psql("postgres", &roles);
        // PG15 no longer lets every role create tables in `public`; the tests do.
        self.psql("template1", "GRANT ALL ON SCHEMA public TO PUBLIC");
        self.psql("postgres", &format!("CREATE DATABASE {TEST_DB}"));
    }

    /// Runs SQL as the bootstrap superuser over the unix socket; panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
        ])
        .arg("-h")
        .arg(&self.dir)
        .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]);
        let out = run_ok(&mut cmd, "psql");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates a database no other test uses, so a test can count its own backends
    /// in `pg_stat_activity` without seeing its neighbours'.
    pub fn create_database(&self, prefix: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// A superuser connection straight to Postgres, for watching and killing backends.
    pub async fn admin(&self) -> Client {
        self.admin_on("postgres").await
    }

    /// A superuser connection straight to database `db`, for checking what really
    /// got committed there.
    pub async fn admin_on(&self, db: &str) -> Client {
        let config = direct_config(self.port, &ADMIN, db);
        connect(&config)
            .await
            .expect("admin connection to the test cluster")
    }

    /// How many backends `user` has open in `db` right now.
    pub async fn backend_count(&self, admin: &Client, user: &str, db: &str) -> i64 {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND datname = $2",
                &[&user, &db],
            )
            .await
            .expect("count backends");
        row.get(0)
    }

    /// All backends in `db`, whoever they log in as.
    pub async fn db_backend_count(&self, admin: &Client, db: &str) -> i64 {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .await
            .expect("count backends");
        row.get(0)
    }

    /// Polls [`Cluster::backend_count`] every 20 ms until it equals `want` or
    /// `timeout` passes; returns the last count seen, so callers assert on it.
    pub async fn wait_backends(
        &self,
        admin: &Client,
        user: &str,
        db: &str,
        want: i64,
        timeout: std::time::Duration,
    ) -> i64 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let now = self.backend_count(admin, user, db).await;
            if now == want || std::time::Instant::now() >= deadline {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A tokio-postgres config straight to a server of the test clusters on 127.0.0.1:`port`
/// (a [`Cluster`] or a replica's, bypassing pgweir).
pub fn direct_config(port: u16, user: &TestUser, db: &str) -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user.name)
        .password(user.password)
        .dbname(db);
    config
}

/// Finds the PostgreSQL 15 server binaries: Debian's fixed path first, then pg_config.
/// `$PGWEIR_PG_BIN` when set (it must hold initdb), else Debian's PostgreSQL 15, else
/// whatever `pg_config --bindir` names.
fn find_bindir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(PG_BIN_VAR) {
        let dir = PathBuf::from(dir);
        return match dir.join("initdb").exists() {
            true => Ok(dir),
            false => Err(format!(
                "{PG_BIN_VAR}={} has no initdb: set it to the bin directory of a PostgreSQL \
                 installation (e.g. /usr/lib/postgresql/17/bin), or unset it to use version 15",
                dir.display()
            )),
        };
    }
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("initdb").exists() {
        return Ok(debian);
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("initdb").exists())
        .ok_or_else(|| INSTALL_HINT.to_owned())
}

/// A fresh directory under the system temp dir that we delete ourselves (via the
/// watchdog), so it is not tied to a guard living in a static.
fn make_dir() -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("pgweir-pg-")
        .tempdir()
        .expect("create temp dir for the cluster");
    dir.keep()
}

pub(super) fn chown_to_postgres(dir: &Path) {
    if is_root() {
        let mut cmd = Command::new("chown");
        cmd.args(["-R", "postgres:postgres"]).arg(dir);
        run_ok(&mut cmd, "chown");
    }
}

pub(super) fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes()).expect("append config");
}

/// Runs a command to completion and panics with its output if it failed.
pub(super) fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Renders a command as a single-quoted shell line for the watchdog script.
pub(super) fn shell_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| format!("'{}'", part.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Starts a shell in its own session (so Ctrl-C on the test run does not kill it),
/// double-forked so it is re-parented to init and never becomes our zombie.
pub(super) fn spawn_detached(script: &str) {
    let quoted = format!("'{}'", script.replace('\'', "'\\''"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "setsid sh -c {quoted} </dev/null >/dev/null 2>&1 &"
        ))
        .stdin(Stdio::null())
        .status()
        .expect("spawn watchdog shell (setsid sh)");
    assert!(status.success(), "watchdog shell failed to start");
}

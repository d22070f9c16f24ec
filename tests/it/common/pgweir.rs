//! Running the pgweir binary under test: a generated config, a free port, a child
//! process that is killed when the handle drops.
//!
//! Each test builds its own [`Pgweir`] so pools are never shared between tests.
//! pgweir's stderr goes to a file in the instance's temp dir; it is printed when a
//! test panics, which is usually the quickest way to see why.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::{Client, Config};

use super::cluster::spawn_detached;
use super::replica::{replicas_line, Replica};
use super::{
    cluster, connect, free_port, Cluster, TestUser, MD5_USER, PLAIN_USER, SCRAM_USER, TEST_DB,
    TRUST_USER,
};

/// How a test wants pgweir configured. Defaults: SCRAM client auth, transaction
/// mode, pool size 2, the `pgweir_test` database and all four test users with their
/// plaintext passwords (so pgweir can log in upstream as each of them).
#[derive(Debug, Clone)]
pub struct PgweirBuilder {
    auth_type: String,
    pool_mode: String,
    pool_size: usize,
    max_client_conn: usize,
    databases: Vec<String>,
    users: BTreeMap<String, String>,
    general: String,
    /// Raw `key = value` lines for the `[pool]` section.
    pool: String,
    /// Raw `key = value` lines added to every `[databases.NAME]` section.
    database_lines: String,
    extra: String,
    /// The cluster every database section points at; the shared one unless set.
    cluster: Option<&'static Cluster>,
}

impl Default for PgweirBuilder {
    fn default() -> Self {
        let users = [SCRAM_USER, MD5_USER, PLAIN_USER, TRUST_USER]
            .iter()
            .map(|u| (u.name.to_string(), u.password.to_string()))
            .collect();
        PgweirBuilder {
            auth_type: "scram-sha-256".into(),
            pool_mode: "transaction".into(),
            pool_size: 2,
            max_client_conn: 100,
            databases: vec![TEST_DB.to_string()],
            users,
            general: "log_level = \"info\"\n".into(),
            pool: String::new(),
            database_lines: String::new(),
            extra: String::new(),
            cluster: None,
        }
    }
}

impl PgweirBuilder {
    /// How clients authenticate to pgweir: scram-sha-256, md5, plain or trust.
    pub fn auth_type(mut self, auth_type: &str) -> Self {
        self.auth_type = auth_type.into();
        self
    }

    /// The default pool mode: session, transaction or statement.
    pub fn pool_mode(mut self, mode: &str) -> Self {
        self.pool_mode = mode.into();
        self
    }

    /// `default_pool_size`.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    pub fn max_client_conn(mut self, max: usize) -> Self {
        self.max_client_conn = max;
        self
    }

    /// Exposes another cluster database under its own name.
    pub fn database(mut self, name: &str) -> Self {
        self.databases.push(name.into());
        self
    }

    /// Adds a user or replaces a test user's configured password (plaintext,
    /// `md5<hex>` or a SCRAM verifier).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.insert(name.into(), password.into());
        self
    }

    /// Drops every `[users]` entry, the test users' plaintext passwords included, for
    /// configs whose users come from elsewhere (`auth_file`, `auth_query`).
    pub fn without_users(mut self) -> Self {
        self.users.clear();
        self
    }

    /// Points every database section at `cluster` (a private one) instead of the shared one.
    pub fn on(mut self, cluster: &'static Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The cluster the database sections point at.
    fn cluster(&self) -> &'static Cluster {
        self.cluster.unwrap_or_else(cluster)
    }

    /// A raw `key = value` line for the `[pgweir]` section (`log_level = "info"` is
    /// there unless replaced with [`PgweirBuilder::log_level`]).
    pub fn general(mut self, line: &str) -> Self {
        self.general.push_str(line);
        self.general.push('\n');
        self
    }

    /// A raw `key = value` line for the `[pool]` section, for the pool-wide settings
    /// that no database or user table may override (`query_wait_timeout`, ...).
    pub fn pool(mut self, line: &str) -> Self {
        self.pool.push_str(line);
        self.pool.push('\n');
        self
    }

    /// A raw `key = value` line for every `[databases.NAME]` section
    /// (`pin_session_state = false`, ...).
    pub fn database_setting(mut self, line: &str) -> Self {
        self.database_lines.push_str(line);
        self.database_lines.push('\n');
        self
    }

    /// Gives every `[databases.NAME]` section these streaming replicas (`replicas = [...]`).
    pub fn replicas(self, replicas: &[&Replica]) -> Self {
        self.database_setting(&replicas_line(replicas))
    }

    pub fn log_level(mut self, level: &str) -> Self {
        self.general = self
            .general
            .replace("log_level = \"info\"", &format!("log_level = \"{level}\""));
        self
    }

    /// Raw TOML appended to the generated config, for keys the builder lacks.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push('\n');
        self.extra.push_str(toml);
        self
    }

    /// The config file pgweir will be started with.
    pub fn config_toml(&self, listen_port: u16) -> String {
        let mut toml = format!(
            "[pgweir]\nlisten_addr = \"127.0.0.1\"\nlisten_port = {listen_port}\n\
             auth_type = \"{}\"\nmax_client_conn = {}\nworkers = 2\n{}\n\
             [pool]\npool_mode = \"{}\"\ndefault_pool_size = {}\n{}",
            self.auth_type,
            self.max_client_conn,
            self.general,
            self.pool_mode,
            self.pool_size,
            self.pool
        );
        for db in &self.databases {
            toml.push_str(&format!(
                "\n[databases.{db}]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{db}\"\n{}",
                self.cluster().port,
                self.database_lines
            ));
        }
        for (name, password) in &self.users {
            toml.push_str(&format!("\n[users.{name}]\npassword = \"{password}\"\n"));
        }
        toml.push_str(&self.extra);
        toml
    }

    /// Writes the config, starts pgweir and waits until it accepts connections. A port
    /// [`free_port`] found can be taken by another socket before pgweir binds it; then
    /// pgweir tries again on another.
    pub fn start(self) -> Pgweir {
        self.cluster();
        for _ in 0..3 {
            let port = free_port();
            let (dir, config_path) = run_dir(&self.config_toml(port));
            match Pgweir::try_spawn(dir, config_path, port, &[]) {
                Err(exited) if exited.contains("Address already in use") => continue,
                started => return started.unwrap_or_else(|exited| panic!("{exited}")),
            }
        }
        panic!("pgweir found its port taken three times over")
    }

    /// Starts pgweir on `port` beside another process listening there (`so_reuseport`),
    /// so ready means its log says it listens, not that the port answers.
    pub fn start_sharing(self, port: u16) -> Pgweir {
        self.cluster();
        let (dir, config_path) = run_dir(&self.config_toml(port));
        Pgweir::spawn(dir, config_path, port, &["--await-log"])
    }
}

/// The pgweir binary, with its temp dir (where each process puts its control socket,
/// `pgweir-<port>/<pid>.sock`) one of this test process's own, removed when it exits: a
/// pgweir killed by a test leaves its socket behind.
pub fn pgweir_command() -> Command {
    static TMP: OnceLock<PathBuf> = OnceLock::new();
    let tmp = TMP.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("pgweir-tmp-")
            .tempdir()
            .expect("temp dir for pgweir processes")
            .keep();
        super::cluster::spawn_detached(&format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = dir.display(),
        ));
        dir
    });
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgweir"));
    cmd.env("TMPDIR", tmp);
    cmd
}

/// A temp dir for one pgweir process holding its config (and, later, its log).
fn run_dir(config_toml: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("pgweir-run-")
        .tempdir()
        .expect("temp dir for pgweir");
    let config_path = dir.path().join("pgweir.toml");
    std::fs::write(&config_path, config_toml).expect("write pgweir.toml");
    (dir, config_path)
}

/// A running pgweir child process.
pub struct Pgweir {
    child: Child,
    /// The port pgweir listens on (127.0.0.1).
    pub port: u16,
    pub config_path: PathBuf,
    log_path: PathBuf,
    /// Keeps the config and log alive for as long as the process runs.
    _dir: TempDir,
}

impl Pgweir {
    pub fn builder() -> PgweirBuilder {
        PgweirBuilder::default()
    }

    /// pgweir with every default: SCRAM, transaction mode, pool size 2.
    pub fn start() -> Pgweir {
        PgweirBuilder::default().start()
    }

    /// pgweir run with a config written elsewhere (by `pgweir convert`, say), which must
    /// have it listen on 127.0.0.1:`port`.
    pub fn start_from(config_toml: &str, port: u16) -> Pgweir {
        cluster();
        let (dir, config_path) = run_dir(config_toml);
        Pgweir::spawn(dir, config_path, port, &[])
    }

    /// Starts another pgweir with a copy of this one's config and `pgweir --takeover`, and
    /// waits until its log says it took over.
    pub fn take_over(&self) -> Pgweir {
        let toml = std::fs::read_to_string(&self.config_path).expect("read pgweir.toml");
        let (dir, config_path) = run_dir(&toml);
        Pgweir::spawn(dir, config_path, self.port, &["--takeover", "--await-log"])
    }

    /// Runs the binary with `args`; `--await-log` is the harness's own: wait for the log's
    /// "listening" line as well as for the port. Panics if pgweir exits during startup.
    fn spawn(dir: TempDir, config_path: PathBuf, port: u16, args: &[&str]) -> Pgweir {
        Pgweir::try_spawn(dir, config_path, port, args).unwrap_or_else(|exited| panic!("{exited}"))
    }

    /// [`Pgweir::spawn`], with pgweir exiting during startup an error that holds its log.
    fn try_spawn(
        dir: TempDir,
        config_path: PathBuf,
        port: u16,
        args: &[&str],
    ) -> Result<Pgweir, String> {
        let log_path = dir.path().join("pgweir.log");
        let log = std::fs::File::create(&log_path).expect("create pgweir.log");
        let await_log = args.contains(&"--await-log");
        let child = pgweir_command()
            .args(args.iter().filter(|a| **a != "--await-log"))
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn the pgweir binary");
        spawn_detached(&format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null",
            me = std::process::id(),
            pid = child.id(),
        ));
        let mut pgweir = Pgweir {
            child,
            port,
            config_path,
            log_path,
            _dir: dir,
        };
        pgweir.wait_ready(await_log)?;
        Ok(pgweir)
    }

    /// Polls the port until pgweir accepts (and, with `await_log`, until its log says it
    /// listens); an error with its log if it exits first.
    fn wait_ready(&mut self, await_log: bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "pgweir exited during startup ({status}); its log:\n{}",
                    self.log()
                ));
            }
            let logged = !await_log || self.log().contains("pgweir listening");
            if logged && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!(
                    "pgweir did not listen on port {} within 20s; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Everything pgweir has written to stderr/stdout so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The OS pid of the pgweir process (for /proc inspection).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal `name` (`TERM`, `INT`, `HUP`) to pgweir.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -s {name} pgweir");
    }

    /// pgweir's exit status once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for pgweir")
    }

    /// A tokio-postgres config pointing at pgweir.
    pub fn config(&self, user: &str, password: &str, db: &str) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Connects as any user; the error is returned for auth tests to inspect.
    pub async fn try_connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        connect(&self.config(user, password, db)).await
    }

    /// Connects as a test user to `db`, panicking (with pgweir's log) on failure.
    pub async fn connect_as(&self, user: &TestUser, db: &str) -> Client {
        match self.try_connect(user.name, user.password, db).await {
            Ok(client) => client,
            Err(err) => panic!(
                "connect via pgweir as {} to {db}: {err:?}\npgweir log:\n{}",
                user.name,
                self.log()
            ),
        }
    }

    /// The everyday connection: the SCRAM user to `pgweir_test`.
    pub async fn connect(&self) -> Client {
        self.connect_as(&SCRAM_USER, TEST_DB).await
    }

    /// A libpq connection string for psql/pgbench (password via PGPASSWORD).
    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={db} sslmode=disable",
            self.port
        )
    }
}

impl Drop for Pgweir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(8000)..];
            let kept = std::env::temp_dir().join(format!("pgweir-failed-{}.log", self.port));
            let _ = std::fs::write(&kept, &log);
            eprintln!(
                "---- pgweir log (port {}, last 8000 bytes; all of it in {}) ----\n{tail}\n----",
                self.port,
                kept.display()
            );
        }
    }
}

/// Runs `pgweir check --config PATH` on `toml` written to a temp file, with `envs` set
/// (and `PGWEIR_TEST_SECRET` unset unless given); returns the output and stdout + stderr.
pub fn check(toml: &str, envs: &[(&str, &str)]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgweir.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .stdin(Stdio::null())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env_remove("PGWEIR_TEST_SECRET")
        .envs(envs.iter().copied())
        .output()
        .expect("run pgweir check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

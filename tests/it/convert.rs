//! `pgweir convert` on the pgbouncer.ini of real setups: each converted file must pass
//! `pgweir check`, say what did not carry over (exit status 2, comments in place), and
//! serve psql and pgbench. PgBouncer's own example config (Debian's) serves too, with a
//! database, a port, a socket directory and a userlist of the test's written after it.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::tls::{ssl_cluster, SslCluster};
use common::{
    check, cluster, pg_tool, pgbench, pgbench_database, pgbench_database_on, report_number,
    run_tool, Pgweir, SCRAM_USER,
};

/// Writes `ini` (and a userlist with the SCRAM test user) into `dir`, runs `pgweir convert`
/// on it and returns the TOML, the exit code and stderr.
fn convert(dir: &Path, ini: &str) -> (String, i32, String) {
    let userlist = format!("\"{}\" \"{}\"\n", SCRAM_USER.name, SCRAM_USER.password);
    std::fs::write(dir.join("userlist.txt"), userlist).unwrap();
    std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .arg("convert")
        .arg(dir.join("pgbouncer.ini"))
        .stdin(Stdio::null())
        .output()
        .expect("run pgweir convert");
    let toml = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (toml, out.status.code().unwrap_or(-1), stderr)
}

/// `pgweir check` on the converted text must accept it.
fn assert_checks(toml: &str) {
    let (out, text) = check(toml, &[]);
    assert!(
        out.status.success(),
        "pgweir check refused the converted file:\n{text}\n{toml}"
    );
}

/// psql and a short pgbench through pgweir on `port` to `db`.
async fn serves(pgweir: &Pgweir, db: &str) {
    let conninfo = pgweir.conninfo(SCRAM_USER.name, db);
    assert_eq!(psql(pgweir, &conninfo, "SELECT 40 + 2").await, "42");
    pgbench_runs(pgweir, db).await;
}

/// What psql prints for `sql` through pgweir (`conninfo` says how to reach it).
async fn psql(pgweir: &Pgweir, conninfo: &str, sql: &str) -> String {
    let mut psql = pg_tool("psql", SCRAM_USER.password);
    psql.args(["-X", "-At", "-c", sql]).arg(conninfo);
    let out = run_tool(psql).await;
    assert!(
        out.status.success(),
        "psql through the converted config: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pgweir.log()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A short `pgbench -S` through pgweir to `db`, with libpq's default sslmode (prefer).
async fn pgbench_runs(pgweir: &Pgweir, db: &str) {
    let out = run_tool(pgbench(
        pgweir.port,
        db,
        &["-n", "-S", "-c", "8", "-j", "2", "-t", "50"],
    ))
    .await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        report_number(&report, "number of transactions actually processed: "),
        Some(400),
        "pgbench through the converted config: {report}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pgweir.log()
    );
}

/// Debian's /etc/pgbouncer/pgbouncer.ini, included whole, then what the test needs set after
/// it (later settings win, as in PgBouncer): its `listen_addr = localhost`, `auth_type =
/// md5` and its logfile and pidfile (reported) come through as they are.
#[tokio::test]
async fn pgbouncer_s_own_example_config_serves_pgbench() {
    let example = Path::new("/etc/pgbouncer/pgbouncer.ini");
    assert!(
        example.exists(),
        "PgBouncer's example config is missing: apt-get install pgbouncer (.ci/run does)"
    );
    let db = pgbench_database("convert_example").await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let ini = format!(
        "%include {example}

[databases]
{db} = host=127.0.0.1 port={pg}

         [pgbouncer]
listen_port = {port}
unix_socket_dir = {sockets}
         auth_file = userlist.txt
",
        example = example.display(),
        pg = cluster().port,
        sockets = dir.path().display(),
    );
    let (toml, code, stderr) = convert(dir.path(), &ini);
    assert_eq!(code, 2, "logfile and pidfile have no counterpart: {stderr}");
    assert!(
        stderr.contains("logfile") && stderr.contains("pidfile"),
        "{stderr}"
    );
    assert!(toml.contains("listen_addr = \"localhost\""), "{toml}");
    assert!(toml.contains("auth_type = \"md5\""), "{toml}");
    assert_checks(&toml);
    let pgweir = Pgweir::start_from(&toml, port);
    serves(&pgweir, &db).await;
}

#[tokio::test]
async fn a_transaction_mode_web_app_config_serves_pgbench() {
    let db = pgbench_database("convert_web").await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let ini = format!(
        "[databases]\n{db} = host=127.0.0.1 port={pg} dbname={db}\n\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
         auth_type = scram-sha-256\nauth_file = userlist.txt\npool_mode = transaction\n\
         max_client_conn = 10000\ndefault_pool_size = 150\nreserve_pool_size = 10\n\
         reserve_pool_timeout = 5\nserver_idle_timeout = 600\nlog_connections = 0\n\
         logfile = /var/log/pgbouncer/pgbouncer.log\n",
        pg = cluster().port
    );
    let (toml, code, stderr) = convert(dir.path(), &ini);
    assert_eq!(code, 2, "logfile has no counterpart: {stderr}");
    assert!(stderr.contains("logfile"), "{stderr}");
    assert!(
        toml.contains("# not converted (pgbouncer.ini:16): logfile"),
        "{toml}"
    );
    assert_checks(&toml);
    let pgweir = Pgweir::start_from(&toml, port);
    serves(&pgweir, &db).await;
}

#[tokio::test]
async fn min_pool_size_lifetime_and_an_hba_file_carry_over() {
    let db = pgbench_database("convert_hba").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hba.conf"),
        "host all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let port = common::free_port();
    let ini = format!(
        "[databases]\n{db} = host=127.0.0.1 port={pg} dbname={db} min_pool_size=2\n\n\
         [pgbouncer]\n; comments of both kinds\n# are skipped\nlisten_addr = 127.0.0.1\n\
         listen_port = {port}\nauth_type = hba\nauth_hba_file = hba.conf\n\
         auth_file = userlist.txt\nauth_user = {user}\npool_mode = transaction\n\
         default_pool_size = 4\nserver_lifetime = 1800\nmin_pool_size = 1\n",
        pg = cluster().port,
        user = SCRAM_USER.name,
    );
    let (toml, code, stderr) = convert(dir.path(), &ini);
    assert_eq!(code, 0, "everything carries over: {stderr}\n{toml}");
    assert_checks(&toml);
    let pgweir = Pgweir::start_from(&toml, port);
    serves(&pgweir, &db).await;
}

#[tokio::test]
async fn several_databases_serve_and_the_star_fallback_is_reported() {
    let first = pgbench_database("convert_a").await;
    let second = pgbench_database("convert_b").await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let pg = cluster().port;
    let ini = format!(
        "[databases]\n{first} = host=127.0.0.1 port={pg}\n\
         {second} = host=127.0.0.1 port={pg} pool_size=3\n* = host=127.0.0.1 port={pg}\n\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = md5\n\
         auth_file = userlist.txt\npool_mode = transaction\n",
    );
    let (toml, code, stderr) = convert(dir.path(), &ini);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`*` fallback"), "{stderr}");
    assert_checks(&toml);
    let pgweir = Pgweir::start_from(&toml, port);
    serves(&pgweir, &first).await;
    serves(&pgweir, &second).await;
}

#[tokio::test]
async fn tls_on_both_sides_carries_over() {
    let SslCluster { cluster, certs } = ssl_cluster();
    let db = pgbench_database_on(cluster, "convert_tls").await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let ini = format!(
        "[databases]\n{db} = host=127.0.0.1 port={pg}\n\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = scram-sha-256\n\
         auth_file = userlist.txt\npool_mode = transaction\nclient_tls_sslmode = require\n\
         client_tls_cert_file = {cert}\nclient_tls_key_file = {key}\n\
         client_tls_protocols = secure\nserver_tls_sslmode = verify-ca\nserver_tls_ca_file = {ca}\n",
        pg = cluster.port,
        cert = certs.server.0.display(),
        key = certs.server.1.display(),
        ca = certs.ca.display(),
    );
    let (toml, code, stderr) = convert(dir.path(), &ini);
    assert_eq!(code, 2, "client_tls_protocols is reported: {stderr}");
    assert!(stderr.contains("client_tls_protocols"), "{stderr}");
    assert_checks(&toml);
    let pgweir = Pgweir::start_from(&toml, port);
    let plain = pgweir.conninfo(SCRAM_USER.name, &db);
    let tls = plain.replace("sslmode=disable", &certs.libpq("verify-ca", false));
    let both = "SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()";
    assert_eq!(psql(&pgweir, &tls, both).await, "t", "TLS to the server");
    let mut refused = pg_tool("psql", SCRAM_USER.password);
    refused.args(["-X", "-At", "-c", "SELECT 1"]).arg(&plain);
    assert!(
        !run_tool(refused).await.status.success(),
        "plaintext clients are refused"
    );
    pgbench_runs(&pgweir, &db).await;
}

#[test]
fn check_on_a_pgbouncer_ini_suggests_convert() {
    let ini = "[databases]\nx = host=h\n[pgbouncer]\nlisten_port = 6432\n";
    let (out, text) = check(ini, &[]);
    assert!(!out.status.success());
    assert!(text.contains("pgweir convert"), "{text}");
}

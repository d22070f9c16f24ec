//! Unix-domain sockets and listen addresses as PgBouncer operators use them (issue 16):
//! clients on `<unix_socket_dir>/.s.PGSQL.<port>` (psql -h DIR, pgbench, tokio-postgres),
//! with the file's mode, SHOW CLIENTS saying `unix`, TLS not required there; servers reached
//! through a socket directory as `host`, cancels included; hba `local` lines with `peer`;
//! `listen_addr` lists; and `pgweir check` naming an address or directory it cannot use.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use common::console::{console, show, with_console, ADMIN};
use common::tls::Certs;
use common::{
    check, cluster, connect, pg_tool, pgbench, pgbench_database, refusal, report_number, run_tool,
    within, Pgweir, SCRAM_USER, TEST_DB,
};

/// A directory for pgweir's socket, alive as long as the value.
fn socket_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pgweir-sock-")
        .tempdir()
        .expect("socket dir")
}

/// tokio-postgres through pgweir's Unix socket in `dir`.
fn unix_config(dir: &Path, port: u16, user: &str, password: &str, db: &str) -> Config {
    let mut config = Config::new();
    config
        .host_path(dir)
        .port(port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    config
}

async fn one(client: &Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The OS user these tests run as, which hba `peer` compares with.
fn os_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the test's OS user has a name")
}

#[tokio::test]
async fn clients_reach_pgweir_on_its_socket_file() {
    let dir = socket_dir();
    let pgweir = with_console()
        .general(&format!(
            "unix_socket_dir = \"{}\"\nunix_socket_mode = \"0770\"",
            dir.path().display()
        ))
        .start();
    let file = dir.path().join(format!(".s.PGSQL.{}", pgweir.port));
    let mode = std::fs::metadata(&file)
        .expect("the socket file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o770, "unix_socket_mode");

    let (user, password) = (SCRAM_USER.name, SCRAM_USER.password);
    let config = unix_config(dir.path(), pgweir.port, user, password, TEST_DB);
    let client = connect(&config)
        .await
        .expect("tokio-postgres over the socket");
    assert_eq!(
        one(&client, "SELECT 'over the socket'").await,
        "over the socket"
    );

    let mut psql = pg_tool("psql", password);
    psql.args(["-X", "-At", "-h"]).arg(dir.path()).args([
        "-p",
        &pgweir.port.to_string(),
        "-U",
        user,
        "-c",
        "SELECT 6 * 7",
        TEST_DB,
    ]);
    let out = run_tool(psql).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "psql -h DIR: {out:?}"
    );

    let admin = console(&pgweir, ADMIN, "pgbouncer").await;
    let clients = show(&admin, "SHOW CLIENTS").await;
    let unix = clients.rows_where("addr", "unix");
    assert_eq!(
        unix.len(),
        1,
        "SHOW CLIENTS lists the socket client as `unix`"
    );
    let port = unix[0][clients.index("port")].clone();
    assert_eq!(port, Some(pgweir.port.to_string()), "its port is pgweir's");
    drop((client, admin));
    let mut pgweir = pgweir;
    pgweir.signal("TERM");
    within(10, "pgweir to stop", async {
        while pgweir.exited().is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(!file.exists(), "the socket file goes when pgweir stops");
}

#[tokio::test]
async fn pgbench_runs_over_sockets_on_both_sides() {
    let db = pgbench_database("unix_bench").await;
    let dir = socket_dir();
    let pgweir = Pgweir::builder()
        .database(&db)
        .general(&format!("unix_socket_dir = \"{}\"", dir.path().display()))
        .extra(&format!(
            "[databases.bench_unix]\nhost = \"{}\"\nport = {}\ndbname = \"{db}\"\n",
            cluster().dir.display(),
            cluster().port
        ))
        .start();
    let dir_arg = dir.path().display().to_string();
    let args = [
        "-n",
        "-S",
        "-c",
        "4",
        "-j",
        "2",
        "-t",
        "50",
        "-h",
        dir_arg.as_str(),
    ];
    let out = run_tool(pgbench(pgweir.port, "bench_unix", &args)).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        report_number(&report, "number of transactions actually processed: "),
        Some(200),
        "pgbench over Unix sockets: {report}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pgweir.log()
    );
}

/// A server reached through its socket directory serves queries, reports itself in SHOW
/// SERVERS as `unix`, and takes cancels over the socket too.
#[tokio::test]
async fn servers_are_reached_through_a_socket_directory() {
    let pgweir = with_console()
        .extra(&format!(
            "[databases.via_socket]\nhost = \"{}\"\nport = {}\ndbname = \"{TEST_DB}\"\n",
            cluster().dir.display(),
            cluster().port
        ))
        .start();
    let client = pgweir.connect_as(&SCRAM_USER, "via_socket").await;
    let local = one(
        &client,
        "SELECT coalesce(inet_client_addr()::text, 'local')",
    )
    .await;
    assert_eq!(local, "local", "the server saw a Unix-socket client");

    let token = client.cancel_token();
    let sleeping = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = console(&pgweir, ADMIN, "pgbouncer").await;
    let servers = show(&admin, "SHOW SERVERS").await;
    let column = servers.index("addr");
    let addrs: Vec<_> = servers.rows.iter().map(|r| r[column].clone()).collect();
    assert_eq!(addrs, [Some("unix".to_owned())], "SHOW SERVERS");
    token.cancel_query(NoTls).await.expect("send the cancel");
    let result = within(10, "the cancelled sleep", sleeping).await.unwrap();
    let err = result.expect_err("pg_sleep was cancelled");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
}

/// hba `local` lines take socket clients only; `peer` lets in the OS user of the process
/// at the other end, and nobody else; TCP clients fall to the `host` lines.
#[tokio::test]
async fn hba_local_lines_and_peer_authentication() {
    let me = os_user();
    let hba_dir = socket_dir();
    let hba = hba_dir.path().join("hba.conf");
    std::fs::write(&hba, format!("local all {me} peer\nlocal all all reject\n")).unwrap();
    let dir = socket_dir();
    let pgweir = Pgweir::builder()
        .auth_type("hba")
        .user(&me, "unused")
        .general(&format!(
            "auth_hba_file = \"{}\"\nunix_socket_dir = \"{}\"",
            hba.display(),
            dir.path().display()
        ))
        .extra(&format!(
            "[databases.as_me]\nhost = \"{}\"\nport = {}\ndbname = \"{TEST_DB}\"\nuser = \"{}\"\n",
            cluster().dir.display(),
            cluster().port,
            SCRAM_USER.name
        ))
        .start();
    let mine = unix_config(dir.path(), pgweir.port, &me, "", "as_me");
    let client = connect(&mine).await.expect("peer lets the OS user in");
    assert_eq!(
        one(&client, "SELECT current_user::text").await,
        SCRAM_USER.name
    );

    let (user, password) = (SCRAM_USER.name, SCRAM_USER.password);
    let other = unix_config(dir.path(), pgweir.port, user, password, TEST_DB);
    let (code, message) = refusal(connect(&other).await, "another user on the socket");
    assert_eq!(code, "28000");
    assert!(
        message.contains("pg_hba.conf rejects connection for host \"[local]\""),
        "{message}"
    );

    std::fs::write(&hba, "local all all peer\nhost all all all trust\n").unwrap();
    pgweir.signal("HUP");
    let peer_failed = format!("Peer authentication failed for user \"{user}\"");
    // The reload takes effect a moment after the signal; a busy machine may need a while.
    let mut answer = (String::new(), String::new());
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        answer = refusal(connect(&other).await, "peer for another user");
        if answer.1 == peer_failed {
            break;
        }
    }
    assert_eq!(
        (answer.0.as_str(), answer.1.as_str()),
        ("28000", peer_failed.as_str())
    );
    let tcp = pgweir.try_connect(user, password, TEST_DB).await;
    assert!(tcp.is_ok(), "TCP clients match host lines: {tcp:?}");
}

/// `client_tls_sslmode = "require"` refuses plaintext TCP but not the socket, where there
/// is no TLS to have (as PgBouncer and Postgres).
#[tokio::test]
async fn tls_is_not_required_on_the_socket() {
    let certs = Certs::new("nobody");
    let dir = socket_dir();
    let pgweir = Pgweir::builder()
        .general(&certs.pgweir_lines("require"))
        .general(&format!("unix_socket_dir = \"{}\"", dir.path().display()))
        .start();
    let (user, password) = (SCRAM_USER.name, SCRAM_USER.password);
    let plain = pgweir.try_connect(user, password, TEST_DB).await;
    assert!(plain.is_err(), "plaintext TCP refused");
    let config = unix_config(dir.path(), pgweir.port, user, password, TEST_DB);
    let client = connect(&config).await.expect("the socket needs no TLS");
    assert_eq!(one(&client, "SELECT 'ok'").await, "ok");
}

/// `listen_addr` takes PgBouncer's comma lists, IPv6 included where the host has it.
#[tokio::test]
async fn listen_addr_lists_bind_every_address() {
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let hosts: &[&str] = if ipv6 {
        &["127.0.0.1", "127.0.0.2", "::1"]
    } else {
        &["127.0.0.1", "127.0.0.2"]
    };
    let port = common::free_port();
    let toml = Pgweir::builder().config_toml(port).replacen(
        "listen_addr = \"127.0.0.1\"",
        &format!("listen_addr = \"{}\"", hosts.join(", ")),
        1,
    );
    let pgweir = Pgweir::start_from(&toml, port);
    for host in hosts {
        let mut config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
        config.host(*host);
        let client = connect(&config)
            .await
            .unwrap_or_else(|e| panic!("connect on {host}: {e}"));
        assert_eq!(one(&client, "SELECT 'reached'").await, "reached", "{host}");
    }
}

/// The address or directory that cannot be used is named with its key at check time.
#[test]
fn check_names_what_it_cannot_listen_on() {
    let db = format!("[databases.db]\nhost = \"127.0.0.1\"\nport = {}\n", 5432);
    let toml = format!("[pgweir]\nlisten_addr = \"127.0.0.1,192.0.2.7\"\n{db}");
    let (out, text) = check(&toml, &[]);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("pgweir.listen_addr: cannot listen on 192.0.2.7:6432"),
        "{text}"
    );
    let toml = format!("[pgweir]\nunix_socket_dir = \"/no/such/dir\"\n{db}");
    let (out, text) = check(&toml, &[]);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("pgweir.unix_socket_dir: /no/such/dir"),
        "{text}"
    );
    let toml = format!("[pgweir]\nlisten_addr = \"\"\n{db}");
    let (_, text) = check(&toml, &[]);
    assert!(text.contains("nothing to listen on"), "{text}");
}

/// Another pooler's live socket is not taken over; pgweir says whose it might be.
#[tokio::test]
async fn a_live_socket_file_is_not_taken_over() {
    let dir = socket_dir();
    let line = format!("unix_socket_dir = \"{}\"", dir.path().display());
    let first = Pgweir::builder().general(&line).start();
    let toml = Pgweir::builder().general(&line).config_toml(first.port);
    // The same port and directory, without the TCP address the first one holds.
    let toml = toml.replacen("listen_addr = \"127.0.0.1\"", "listen_addr = \"\"", 1);
    let path = dir.path().join("second.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run a second pgweir");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("is in use"), "{text}");
    let config = unix_config(
        dir.path(),
        first.port,
        SCRAM_USER.name,
        SCRAM_USER.password,
        TEST_DB,
    );
    assert!(connect(&config).await.is_ok(), "the first keeps its socket");
}

/// PgBouncer's habit: its own OS user reaches the console as `pgbouncer` over the socket
/// without a password (the kernel vouches for the user); over TCP the name gets nothing.
#[tokio::test]
async fn the_pooler_s_own_user_reaches_the_console_on_the_socket() {
    let dir = socket_dir();
    let pgweir = Pgweir::builder()
        .general(&format!("unix_socket_dir = \"{}\"", dir.path().display()))
        .start();
    let config = unix_config(dir.path(), pgweir.port, "pgbouncer", "", "pgbouncer");
    let admin = connect(&config).await.expect("the console over the socket");
    show(&admin, "SHOW POOLS").await.index("database");
    admin
        .simple_query("RELOAD")
        .await
        .expect("admin rights: RELOAD");
    let (code, _) = refusal(
        pgweir.try_connect("pgbouncer", "", "pgbouncer").await,
        "the same name over TCP",
    );
    assert_eq!(code, "28P01");
}

/// A socket client that sends nothing is told why it is dropped, as a TCP one is.
#[tokio::test]
async fn a_silent_socket_client_meets_client_login_timeout() {
    use tokio::io::AsyncReadExt;
    let dir = socket_dir();
    let pgweir = Pgweir::builder()
        .general(&format!(
            "unix_socket_dir = \"{}\"\nclient_login_timeout = \"500ms\"",
            dir.path().display()
        ))
        .start();
    let path = dir.path().join(format!(".s.PGSQL.{}", pgweir.port));
    let mut silent = tokio::net::UnixStream::connect(path).await.unwrap();
    let mut told = Vec::new();
    within(10, "the FATAL", silent.read_to_end(&mut told))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&told);
    assert!(
        told.first() == Some(&b'E') && text.contains("57P03"),
        "{text}"
    );
    assert!(text.contains("client_login_timeout"), "{text}");
}

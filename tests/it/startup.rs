//! The edges of a client session: the startup handshake as raw bytes (SSL and
//! GSSAPI refusal, protocol version negotiation), startup parameters, query cancel,
//! and `psql` as a real libpq client, including the FunctionCall message it uses
//! for large objects.

use crate::common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;

use common::{expect_sqlstate, pg_tool, run_tool, within, Pgweir, SCRAM_USER, TEST_DB};

/// Sends a bare 8-byte request (SSLRequest / GSSENCRequest) and returns the
/// one-byte answer together with the still-open stream.
async fn request_code(port: u16, code: u32) -> (u8, TcpStream) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut msg = 8u32.to_be_bytes().to_vec();
    msg.extend_from_slice(&code.to_be_bytes());
    stream.write_all(&msg).await.unwrap();
    let answer = within(5, "answer to request", stream.read_u8())
        .await
        .unwrap();
    (answer, stream)
}

/// After answering 'N', pgweir must go on with a plain startup on the same socket.
async fn finish_login_on(pgweir: &Pgweir, stream: TcpStream) {
    let mut config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    config.ssl_mode(SslMode::Disable);
    let (client, connection) = config
        .connect_raw(stream, NoTls)
        .await
        .expect("login after 'N'");
    tokio::spawn(connection);
    let row = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[tokio::test]
async fn ssl_request_is_refused_with_n_and_login_continues() {
    let pgweir = Pgweir::start();
    let (answer, stream) = request_code(pgweir.port, 80_877_103).await;
    assert_eq!(answer, b'N');
    finish_login_on(&pgweir, stream).await;
}

#[tokio::test]
async fn gssenc_request_is_refused_with_n_and_login_continues() {
    let pgweir = Pgweir::start();
    let (answer, stream) = request_code(pgweir.port, 80_877_104).await;
    assert_eq!(answer, b'N');
    finish_login_on(&pgweir, stream).await;
}

#[tokio::test]
async fn newer_minor_protocol_gets_negotiate_protocol_version() {
    let pgweir = Pgweir::start();
    let mut body = 0x0003_0002u32.to_be_bytes().to_vec();
    for (key, value) in [("user", SCRAM_USER.name), ("database", TEST_DB)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    let mut stream = TcpStream::connect(("127.0.0.1", pgweir.port))
        .await
        .unwrap();
    stream.write_all(&msg).await.unwrap();
    let tag = within(5, "answer to startup 3.2", stream.read_u8())
        .await
        .unwrap();
    assert_eq!(
        tag, b'v',
        "expected NegotiateProtocolVersion, got {:?}",
        tag as char
    );
    let _len = stream.read_u32().await.unwrap();
    assert_eq!(
        stream.read_u32().await.unwrap(),
        0,
        "newest supported minor version"
    );
}

#[tokio::test]
async fn application_name_is_kept_per_client_on_a_shared_server() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let mut clients = Vec::new();
    for name in ["pgweir_app_a", "pgweir_app_b"] {
        let mut config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
        config.application_name(name);
        clients.push((name, common::connect(&config).await.expect("connect")));
    }
    for _ in 0..2 {
        for (name, client) in &clients {
            let row = client
                .query_one("SHOW application_name", &[])
                .await
                .unwrap();
            assert_eq!(row.get::<_, &str>(0), *name);
        }
    }
}

#[tokio::test]
async fn cancel_ends_pg_sleep_within_a_second() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let client = pgweir.connect().await;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let result = client.simple_query("SELECT pg_sleep(30)").await;
        (result, Instant::now(), client)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled_at = Instant::now();
    token
        .cancel_query(NoTls)
        .await
        .expect("send CancelRequest to pgweir");
    let (result, ended_at, client) = within(10, "cancelled pg_sleep", sleeper).await.unwrap();
    assert_eq!(expect_sqlstate(result, "cancelled sleep").code(), "57014");
    let took = ended_at.duration_since(cancelled_at);
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    let row = client
        .query_one("SELECT 'after cancel'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "after cancel");
}

#[tokio::test]
async fn cancel_from_a_client_without_a_server_is_dropped() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let idle = pgweir.connect().await;
    let busy = pgweir.connect().await;
    let work = tokio::spawn(async move { busy.simple_query("SELECT pg_sleep(1.5)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    idle.cancel_token()
        .cancel_query(NoTls)
        .await
        .expect("send CancelRequest");
    let result = within(10, "other client's sleep", work).await.unwrap();
    assert!(
        result.is_ok(),
        "a cancel from an idle client hit someone else's query: {result:?}"
    );
}

#[tokio::test]
async fn psql_runs_a_query_through_pgweir() {
    let pgweir = Pgweir::start();
    let conninfo = format!(
        "host=127.0.0.1 port={} user={} dbname={TEST_DB}",
        pgweir.port, SCRAM_USER.name
    );
    let mut cmd = pg_tool("psql", SCRAM_USER.password);
    cmd.args([
        "-X",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        "SELECT 40 + 2",
        &conninfo,
    ]);
    let out = run_tool(cmd).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "42");
}

#[tokio::test]
async fn psql_large_object_import_uses_function_call() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let file = tempfile::NamedTempFile::new().unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(file.path(), &content).unwrap();
    let import = format!("\\lo_import '{}'", file.path().display());
    let mut cmd = pg_tool("psql", SCRAM_USER.password);
    cmd.args([
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        &import,
        &pgweir.conninfo(SCRAM_USER.name, TEST_DB),
    ]);
    let out = run_tool(cmd).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "\\lo_import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let oid: u32 = stdout
        .trim()
        .trim_start_matches("lo_import ")
        .parse()
        .expect("lo_import OID");

    let client = pgweir.connect().await;
    let row = client
        .query_one("SELECT lo_get($1::oid), lo_unlink($1::oid)", &[&oid])
        .await
        .unwrap();
    assert!(
        row.get::<_, &[u8]>(0) == content.as_slice(),
        "large object content differs"
    );
}

/// Runs `SHOW name` through psql with extra environment (PGTZ, PGOPTIONS...),
/// which libpq turns into startup parameters.
async fn psql_show(pgweir: &Pgweir, name: &str, envs: &[(&str, &str)]) -> String {
    let mut cmd = pg_tool("psql", SCRAM_USER.password);
    cmd.envs(envs.iter().copied()).args([
        "-X",
        "-t",
        "-A",
        "-c",
        &format!("SHOW {name}"),
        &pgweir.conninfo(SCRAM_USER.name, TEST_DB),
    ]);
    let out = run_tool(cmd).await;
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn timezone_and_datestyle_startup_parameters_follow_each_client() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let tokyo = psql_show(&pgweir, "TimeZone", &[("PGTZ", "Asia/Tokyo")]).await;
    assert_eq!(tokyo, "Asia/Tokyo");
    let lima = psql_show(&pgweir, "TimeZone", &[("PGTZ", "America/Lima")]).await;
    assert_eq!(lima, "America/Lima");
    let style = psql_show(&pgweir, "DateStyle", &[("PGDATESTYLE", "SQL, DMY")]).await;
    assert_eq!(style, "SQL, DMY");
    let default_style = psql_show(&pgweir, "DateStyle", &[]).await;
    assert_eq!(
        default_style, "ISO, MDY",
        "DateStyle leaked from the previous client"
    );
}

#[tokio::test]
async fn options_startup_parameter_applies_to_its_client_only() {
    let pgweir = Pgweir::builder().pool_size(1).start();
    let with = psql_show(&pgweir, "work_mem", &[("PGOPTIONS", "-c work_mem=3MB")]).await;
    assert_eq!(with, "3MB", "options=-c work_mem=3MB not applied");
    let without = psql_show(&pgweir, "work_mem", &[]).await;
    assert_eq!(
        without, "4MB",
        "options leaked to the next client of the server"
    );
}

/// Startup parameters are judged at login as Postgres judges them: an unknown one, or one
/// only a restart or the server's config may change, refuses the login with Postgres's error
/// (not the first query, later); custom settings pass, and `ignore_startup_parameters` drops
/// what it lists, `options` included.
#[tokio::test]
async fn startup_parameters_postgres_would_refuse_are_refused_at_login() {
    let pgweir = Pgweir::builder()
        .general("ignore_startup_parameters = [\"ignored_by_config\"]")
        .start();
    let with_options = |options: &str| {
        let mut config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
        config.options(options);
        config
    };
    for (options, code, message) in [
        (
            "-c p0=x",
            "42704",
            "unrecognized configuration parameter \"p0\"",
        ),
        (
            "-c shared_buffers=1MB",
            "55P02",
            "parameter \"shared_buffers\" cannot be changed without restarting the server",
        ),
        (
            "-c log_destination=stderr",
            "55P02",
            "parameter \"log_destination\" cannot be changed now",
        ),
    ] {
        let refused = common::refusal(common::connect(&with_options(options)).await, options);
        assert_eq!(
            (refused.0.as_str(), refused.1.as_str()),
            (code, message),
            "{options}"
        );
    }
    let custom = common::connect(&with_options("-c app.tenant=t1 -c ignored_by_config=1"))
        .await
        .expect("custom settings and ignored parameters log in");
    let row = custom
        .query_one("SELECT current_setting('app.tenant')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "t1");

    let ignoring = Pgweir::builder()
        .general("ignore_startup_parameters = [\"options\"]")
        .start();
    let mut config = ignoring.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    config.options("-c p0=x");
    let client = common::connect(&config)
        .await
        .expect("options ignored whole");
    client.simple_query("SELECT 1").await.unwrap();
}

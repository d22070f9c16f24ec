//! TLS between clients and pgweir (issue 7): every `client_tls_sslmode` with tokio-postgres
//! over rustls, psql with sslmode disable/require/verify-full, PostgreSQL 17's direct TLS
//! (with and without ALPN), client certificates for verify-ca, SCRAM-SHA-256-PLUS channel
//! binding, certificates reloaded by RELOAD (a bad file refused, connected clients kept), and
//! pgbench over TLS with 200 clients. The cluster itself has no TLS here: pgweir's default
//! `server_tls_sslmode = prefer` falls back to plaintext.

use crate::common;

use common::console::{show, with_console, ADMIN};
use common::tls::{connect_tls, Certs};
use common::{
    connect, expect_sqlstate, pg_tool, pgbench_database, report_number, run_tool, within, Pgweir,
    SCRAM_USER, TEST_DB,
};
use tokio_postgres::config::ChannelBinding;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

fn pgweir_with(certs: &Certs, mode: &str) -> Pgweir {
    Pgweir::builder().general(&certs.pgweir_lines(mode)).start()
}

async fn select_one(client: &tokio_postgres::Client) {
    let row = within(10, "SELECT 1", client.query_one("SELECT 1", &[]))
        .await
        .expect("SELECT 1");
    assert_eq!(row.get::<_, i32>(0), 1);
}

/// Which of plaintext, TLS without a client certificate and TLS with one each mode lets in.
#[tokio::test]
async fn every_client_mode() {
    let certs = Certs::new(SCRAM_USER.name);
    let cases = [
        ("disable", true, false, false),
        ("allow", true, true, true),
        ("prefer", true, true, true),
        ("require", false, true, true),
        ("verify-ca", false, false, true),
        ("verify-full", false, false, true),
    ];
    for (mode, plain_ok, tls_ok, cert_ok) in cases {
        let pgweir = pgweir_with(&certs, mode);
        let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
        let plain = connect(&config).await;
        assert_eq!(plain.is_ok(), plain_ok, "{mode}: plaintext: {plain:?}");
        if let Err(e) = plain {
            let db = e.as_db_error().expect("an ErrorResponse");
            assert_eq!(
                db.code(),
                &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                "{mode}: {e:?}"
            );
            assert!(db.message().contains("client_tls_sslmode"), "{mode}: {e:?}");
        }
        let tls = connect_tls(&config, certs.client_config(false, false), false).await;
        assert_eq!(tls.is_ok(), tls_ok, "{mode}: TLS: {tls:?}");
        let with_cert = connect_tls(&config, certs.client_config(true, false), false).await;
        match with_cert {
            Ok(client) => select_one(&client).await,
            Err(e) => assert!(!cert_ok, "{mode}: TLS with a certificate: {e:?}"),
        }
    }
}

/// TLS 1.2 and TLS 1.3 both work, with and without a client certificate.
#[tokio::test]
async fn tls12_and_tls13() {
    let certs = Certs::new(SCRAM_USER.name);
    let pgweir = pgweir_with(&certs, "require");
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        for with_cert in [false, true] {
            let tls = certs.client_config_versions(&[version], with_cert, false);
            let client = connect_tls(&config, tls, false)
                .await
                .unwrap_or_else(|e| panic!("{version:?}, certificate {with_cert}: {e:?}"));
            select_one(&client).await;
        }
    }
}

/// Messages far larger than a socket buffer, both ways, so TLS writes the socket cannot take
/// at once must be flushed later rather than left in rustls' buffer.
#[tokio::test]
async fn large_messages_both_ways() {
    let certs = Certs::new(SCRAM_USER.name);
    let pgweir = pgweir_with(&certs, "require");
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let client = connect_tls(&config, certs.client_config(false, false), false)
        .await
        .expect("TLS");
    let big = "x".repeat(8 << 20);
    let sql = "SELECT length($1::text), repeat('y', 8 << 20)";
    for _ in 0..3 {
        let row = within(60, "8 MB each way", client.query_one(sql, &[&big]))
            .await
            .expect("large query");
        assert_eq!(row.get::<_, i32>(0), 8 << 20);
        assert_eq!(row.get::<_, String>(1).len(), 8 << 20);
    }
}

/// A TLS client's query is cancelled by a CancelRequest sent over TLS.
#[tokio::test]
async fn cancel_over_tls() {
    let certs = Certs::new(SCRAM_USER.name);
    let pgweir = pgweir_with(&certs, "require");
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let client = connect_tls(&config, certs.client_config(false, false), false)
        .await
        .expect("TLS");
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let tls = MakeRustlsConnect::new(certs.client_config(false, false));
    token.cancel_query(tls).await.expect("cancel over TLS");
    let result = within(10, "cancelled pg_sleep", sleeper).await.unwrap();
    assert_eq!(
        expect_sqlstate(result, "cancelled sleep"),
        SqlState::QUERY_CANCELED
    );
}

#[tokio::test]
async fn psql_sslmodes() {
    let certs = Certs::new(SCRAM_USER.name);
    let pgweir = pgweir_with(&certs, "require");
    let psql = |conninfo: String| {
        let mut cmd = pg_tool("psql", SCRAM_USER.password);
        cmd.args(["-X", "-t", "-A", "-c", "SELECT 42", &conninfo]);
        run_tool(cmd)
    };
    let base = format!(
        "port={} user={} dbname={TEST_DB}",
        pgweir.port, SCRAM_USER.name
    );
    let out = psql(format!("host=127.0.0.1 {base} sslmode=disable")).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SSL required"), "{stderr}");
    for host in ["127.0.0.1", "localhost"] {
        for opts in [
            "sslmode=require".to_owned(),
            certs.libpq("verify-full", false),
            certs.libpq("verify-full", true),
        ] {
            let out = psql(format!("host={host} {base} {opts}")).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{host} {opts}: {stderr}");
            assert_eq!(stdout.trim(), "42");
        }
    }
    // A CA that did not sign pgweir's certificate.
    let other = Certs::new(SCRAM_USER.name);
    let out = psql(format!(
        "host=127.0.0.1 {base} {}",
        other.libpq("verify-full", false)
    ))
    .await;
    assert!(!out.status.success(), "verify-full with the wrong CA");
}

/// SCRAM-SHA-256-PLUS is offered under TLS, so a client requiring channel binding logs in.
#[tokio::test]
async fn channel_binding_over_tls() {
    let certs = Certs::new(SCRAM_USER.name);
    let pgweir = pgweir_with(&certs, "require");
    let mut config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    config.channel_binding(ChannelBinding::Require);
    let client = connect_tls(&config, certs.client_config(false, false), false)
        .await
        .expect("SCRAM-SHA-256-PLUS login");
    select_one(&client).await;
    let mut wrong = pgweir.config(SCRAM_USER.name, "wrong", TEST_DB);
    wrong.channel_binding(ChannelBinding::Require);
    let refused = connect_tls(&wrong, certs.client_config(false, false), false).await;
    assert_eq!(
        expect_sqlstate(refused, "wrong password with channel binding"),
        SqlState::INVALID_PASSWORD
    );
}

/// Direct TLS (sslnegotiation=direct) works with ALPN "postgresql" and is refused without.
#[tokio::test]
async fn direct_tls_needs_alpn() {
    let certs = Certs::new(SCRAM_USER.name);
    let pgweir = pgweir_with(&certs, "require");
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let client = connect_tls(&config, certs.client_config(false, true), true)
        .await
        .expect("direct TLS with ALPN");
    select_one(&client).await;
    let refused = connect_tls(&config, certs.client_config(false, false), true).await;
    assert!(refused.is_err(), "direct TLS without ALPN: {refused:?}");
    let off = pgweir_with(&certs, "disable");
    let config = off.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let refused = connect_tls(&config, certs.client_config(false, true), true).await;
    assert!(refused.is_err(), "direct TLS with client TLS off");
}

fn edit_config(pgweir: &Pgweir, edit: impl Fn(&str) -> String) {
    let text = std::fs::read_to_string(&pgweir.config_path).expect("read pgweir.toml");
    std::fs::write(&pgweir.config_path, edit(&text)).expect("write pgweir.toml");
}

/// RELOAD puts a new certificate in force for new connections while connected clients keep
/// theirs; a certificate file that cannot be used is refused and the old one stays.
#[tokio::test]
async fn certificates_reload() {
    let old = Certs::new(SCRAM_USER.name);
    let new = Certs::new(SCRAM_USER.name);
    let pgweir = with_console().general(&old.pgweir_lines("require")).start();
    let admin = pgweir.config(ADMIN.0, ADMIN.1, "pgweir");
    let admin = connect_tls(&admin, old.client_config(false, false), false)
        .await
        .expect("console over TLS");
    let config = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let connected = connect_tls(&config, old.client_config(false, false), false)
        .await
        .expect("TLS with the first certificate");
    let clients = show(&admin, "SHOW CLIENTS").await;
    let tls = clients
        .get("user", SCRAM_USER.name, "tls")
        .unwrap_or_default();
    assert!(
        tls.starts_with("TLSv1.3/TLS13_"),
        "SHOW CLIENTS tls: {tls:?}"
    );

    let (old_cert, old_key) = (
        old.server.0.display().to_string(),
        old.server.1.display().to_string(),
    );
    let (new_cert, new_key) = (
        new.server.0.display().to_string(),
        new.server.1.display().to_string(),
    );
    edit_config(&pgweir, |t| {
        t.replace(&old_cert, &new_cert).replace(&old_key, &new_key)
    });
    admin.simple_query("RELOAD").await.expect("RELOAD");
    select_one(&connected).await;
    let trusting_old = connect_tls(&config, old.client_config(false, false), false).await;
    assert!(trusting_old.is_err(), "the old certificate is still served");
    let client = connect_tls(&config, new.client_config(false, false), false)
        .await
        .expect("TLS with the new certificate");
    select_one(&client).await;

    let broken = new.path("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    edit_config(&pgweir, |t| {
        t.replace(&new_cert, &broken.display().to_string())
    });
    let err = admin
        .simple_query("RELOAD")
        .await
        .expect_err("a broken certificate file");
    let db_error = err.as_db_error().expect("an ErrorResponse");
    assert!(
        db_error.message().contains("client_tls_cert_file"),
        "{err:?}"
    );
    assert!(!db_error.message().contains("PRIVATE KEY"), "{err:?}");
    let client = connect_tls(&config, new.client_config(false, false), false)
        .await
        .expect("the certificate in force stays after a refused reload");
    select_one(&client).await;
    select_one(&connected).await;
}

/// `pgweir check` reads the certificate files, naming the key of one that cannot be used.
#[tokio::test]
async fn check_validates_files() {
    let certs = Certs::new(SCRAM_USER.name);
    let pgweir = pgweir_with(&certs, "require");
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgweir"))
            .args(["check", "--config"])
            .arg(&pgweir.config_path)
            .output()
            .expect("pgweir check")
    };
    assert!(check().status.success());
    let key = certs.server.1.display().to_string();
    let missing = certs.path("missing.key").display().to_string();
    edit_config(&pgweir, |t| t.replace(&key, &missing));
    let out = check();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("client_tls_key_file"), "{stderr}");
}

/// 200 pgbench clients over TLS, none failing.
#[tokio::test]
async fn pgbench_over_tls() {
    let _heavy = common::heavy().await;
    let certs = Certs::new(SCRAM_USER.name);
    let db = pgbench_database("tls_bench").await;
    let pgweir = Pgweir::builder()
        .general(&certs.pgweir_lines("require"))
        .max_client_conn(250)
        .pool_size(10)
        .database(&db)
        .start();
    let mut cmd = common::pgbench(pgweir.port, &db, &["-c", "200", "-j", "2", "-T", "5", "-S"]);
    cmd.env("PGSSLMODE", "require");
    let out = within(120, "pgbench over TLS", run_tool(cmd)).await;
    let report = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pgbench: {report}{stderr}");
    assert_eq!(
        report_number(&report, "number of failed transactions:"),
        Some(0),
        "{report}"
    );
    let done = report_number(&report, "number of transactions actually processed:");
    assert!(done.is_some_and(|n| n > 200), "{report}");
}

/// A takeover cannot move a TLS session to another process: the TLS client is closed
/// between transactions with FATAL 57P01 and reconnects to the new process, while a
/// plaintext client beside it moves unnoticed.
#[tokio::test]
async fn a_takeover_closes_tls_clients_and_moves_the_others() {
    let certs = Certs::new(SCRAM_USER.name);
    let mut old = pgweir_with(&certs, "allow");
    let config = old.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let tls_client = connect_tls(&config, certs.client_config(false, false), false)
        .await
        .expect("TLS");
    let plain = old.connect().await;
    select_one(&tls_client).await;

    let new = old.take_over();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while old.exited().is_none() {
        assert!(std::time::Instant::now() < deadline, "{}", old.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        old.log().contains("pgweir is shutting down"),
        "the TLS client was told why: {}",
        old.log()
    );
    assert!(tls_client.simple_query("SELECT 1").await.is_err());
    select_one(&plain).await;
    let again = connect_tls(&config, certs.client_config(false, false), false)
        .await
        .expect("TLS again, to the new process");
    select_one(&again).await;
    assert!(new.log().contains("takeover complete"), "{}", new.log());
}

//! Where TLS meets authentication (issue 7): `auth_type = "cert"` and hba `cert` lines log a
//! client in by the CN of its verified certificate with no password exchange (tokio-postgres
//! and psql), and refuse a wrong CN, a missing certificate and a plaintext client with FATAL
//! 28000; `cert` without client certificates is a config problem; `hostssl` and `hostnossl`
//! lines tell TLS clients from plaintext ones; and the README's secure setup (client TLS
//! verify-full, hba hostssl scram, auth_file + auth_query, server TLS verify-full) logs in
//! by SCRAM-SHA-256-PLUS and pass-through with no plaintext password in pgweir's files.

use crate::common;

use tokio_postgres::config::ChannelBinding;
use tokio_postgres::Config;

use common::tls::{connect_tls, ssl_cluster, Certs};
use common::{
    connect, current_user, pg_tool, refusal, run_tool, within, Pgweir, MD5_USER, SCRAM_USER,
    TEST_DB, TRUST_USER,
};

/// A pgweir client config with no password at all: a login that asks for one fails.
fn no_password(pgweir: &Pgweir, user: &str) -> Config {
    let mut config = Config::new();
    config
        .host("127.0.0.1")
        .port(pgweir.port)
        .user(user)
        .dbname(TEST_DB)
        .connect_timeout(std::time::Duration::from_secs(10));
    config
}

fn cert_failed(user: &str) -> (String, String) {
    (
        "28000".into(),
        format!("certificate authentication failed for user \"{user}\""),
    )
}

/// psql to pgweir over `localhost` with libpq `opts`, never sending a password.
async fn psql_without_password(pgweir: &Pgweir, user: &str, opts: &str) -> (bool, String) {
    let mut cmd = pg_tool("psql", "");
    cmd.env_remove("PGPASSWORD").env("PGPASSFILE", "/dev/null");
    let conninfo = format!(
        "host=localhost port={} user={user} dbname={TEST_DB} {opts}",
        pgweir.port
    );
    cmd.args([
        "-X",
        "-w",
        "-t",
        "-A",
        "-c",
        "SELECT current_user",
        &conninfo,
    ]);
    let out = run_tool(cmd).await;
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    (out.status.success(), text)
}

/// `auth_type = "cert"` under `verify-full`: the certificate alone logs its CN in; another
/// user, another CN, no certificate and plaintext are refused, each with a reason.
#[tokio::test]
async fn cert_auth_type_logs_in_by_certificate_alone() {
    let mut certs = Certs::new(SCRAM_USER.name);
    let pgweir = Pgweir::builder()
        .auth_type("cert")
        .general(&certs.pgweir_lines("verify-full"))
        .start();
    let config = no_password(&pgweir, SCRAM_USER.name);
    for direct in [false, true] {
        let client = connect_tls(&config, certs.client_config(true, direct), direct)
            .await
            .unwrap_or_else(|e| panic!("certificate login (direct {direct}): {e:?}"));
        assert_eq!(current_user(&client).await, SCRAM_USER.name);
    }
    let (ok, out) =
        psql_without_password(&pgweir, SCRAM_USER.name, &certs.libpq("verify-full", true)).await;
    assert!(ok, "psql with a certificate: {out}");
    assert_eq!(out, SCRAM_USER.name);

    // The certificate names another user than the one logging in.
    let other_user = no_password(&pgweir, MD5_USER.name);
    assert_eq!(
        refusal(
            connect_tls(&other_user, certs.client_config(true, false), false).await,
            "another user's certificate",
        ),
        cert_failed(MD5_USER.name)
    );
    let (ok, out) =
        psql_without_password(&pgweir, MD5_USER.name, &certs.libpq("verify-full", true)).await;
    assert!(
        !ok && out.contains("certificate authentication failed for user"),
        "psql: {out}"
    );

    // No certificate: verify-full refuses the handshake itself, and says so.
    let no_cert = connect_tls(&config, certs.client_config(false, false), false).await;
    assert!(
        no_cert.is_err(),
        "TLS without a certificate under verify-full"
    );
    let (ok, out) =
        psql_without_password(&pgweir, SCRAM_USER.name, &certs.libpq("verify-full", false)).await;
    assert!(
        !ok && out.contains("certificate required"),
        "psql without a certificate: {out}"
    );

    // Plaintext: refused before authentication.
    let (code, message) = refusal(connect(&config).await, "plaintext");
    assert_eq!(code, "28000");
    assert!(message.contains("SSL required"), "{message}");

    // A certificate from the same CA with another CN.
    certs.client = certs.leaf("stranger", &[], "stranger");
    assert_eq!(
        refusal(
            connect_tls(&config, certs.client_config(true, false), false).await,
            "a certificate with another CN",
        ),
        cert_failed(SCRAM_USER.name)
    );
}

/// Where certificates are optional (`prefer`, `require` with `client_tls_ca_file`),
/// `auth_type = "cert"` refuses a TLS client without one, and a plaintext one, with 28000;
/// a certificate from another CA does not get past the handshake.
#[tokio::test]
async fn cert_auth_type_with_optional_certificates() {
    let certs = Certs::new(SCRAM_USER.name);
    for mode in ["prefer", "require"] {
        let pgweir = Pgweir::builder()
            .auth_type("cert")
            .general(&certs.pgweir_lines(mode))
            .start();
        let config = no_password(&pgweir, SCRAM_USER.name);
        let client = connect_tls(&config, certs.client_config(true, false), false)
            .await
            .unwrap_or_else(|e| panic!("{mode}: certificate login: {e:?}"));
        assert_eq!(current_user(&client).await, SCRAM_USER.name);
        assert_eq!(
            refusal(
                connect_tls(&config, certs.client_config(false, false), false).await,
                "TLS without a certificate",
            ),
            cert_failed(SCRAM_USER.name),
            "{mode}"
        );
        // A certificate with the right CN from another CA of the same name (so only its
        // signature tells): the handshake fails, as it would in any mode.
        let mut forged = Certs::new(SCRAM_USER.name);
        forged.ca = certs.ca.clone();
        let result = connect_tls(&config, forged.client_config(true, false), false).await;
        assert!(result.is_err(), "{mode}: an untrusted client certificate");
        let plaintext = refusal(connect(&config).await, "plaintext");
        if mode == "prefer" {
            assert_eq!(plaintext, cert_failed(SCRAM_USER.name));
        } else {
            assert!(plaintext.1.contains("SSL required"), "{plaintext:?}");
        }
    }
}

/// `pgweir check` on `builder`'s config: whether it passed, and what it printed.
fn check(builder: common::PgweirBuilder, certs: &Certs) -> (bool, String) {
    let path = certs.path("pgweir.toml");
    std::fs::write(&path, builder.config_toml(common::free_port())).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("pgweir check");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr)
}

/// `cert`, as `auth_type` or on an hba line, with no way for a client to present a verified
/// certificate is a config problem, which `pgweir check` names.
#[test]
fn cert_without_client_certificates_is_a_config_problem() {
    let certs = Certs::new(SCRAM_USER.name);
    let require = format!(
        "client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"{}\"\n\
         client_tls_key_file = \"{}\"",
        certs.server.0.display(),
        certs.server.1.display()
    );
    for lines in ["", &require] {
        let (ok, stderr) = check(Pgweir::builder().auth_type("cert").general(lines), &certs);
        assert!(!ok, "{lines}: {stderr}");
        assert!(
            stderr.contains("pgweir.auth_type") && stderr.contains("client_tls_ca_file"),
            "{lines}: {stderr}"
        );
    }
    let (ok, stderr) = check(
        Pgweir::builder()
            .auth_type("cert")
            .general(&certs.pgweir_lines("require")),
        &certs,
    );
    assert!(ok, "{stderr}");

    let hba = certs.path("hba.conf");
    let rules = "hostssl all all all scram-sha-256\nhostssl all all all cert\n";
    std::fs::write(&hba, rules).unwrap();
    let hba_line = format!("auth_hba_file = \"{}\"", hba.display());
    let builder = Pgweir::builder().auth_type("hba").general(&hba_line);
    let (ok, stderr) = check(builder.clone().general(&require), &certs);
    assert!(!ok, "{stderr}");
    let expected = format!("{} line 2: cert needs client TLS", hba.display());
    assert!(stderr.contains(&expected), "{stderr}");
    let (ok, stderr) = check(builder.general(&certs.pgweir_lines("require")), &certs);
    assert!(ok, "{stderr}");
}

/// `hostssl` lines take TLS clients only and `hostnossl` lines plaintext ones only; a `cert`
/// line logs in by certificate; refusals say `SSL on` or `SSL off`.
#[tokio::test]
async fn hba_lines_tell_tls_from_plaintext() {
    let certs = Certs::new(TRUST_USER.name);
    let dir = tempfile::tempdir().unwrap();
    let hba = dir.path().join("hba.conf");
    let rules = format!(
        "hostssl all {scram} 127.0.0.1/32 scram-sha-256\n\
         hostnossl all {md5} 127.0.0.1/32 md5\n\
         hostssl all {trust} all cert\n",
        scram = SCRAM_USER.name,
        md5 = MD5_USER.name,
        trust = TRUST_USER.name,
    );
    std::fs::write(&hba, rules).unwrap();
    let pgweir = Pgweir::builder()
        .auth_type("hba")
        .general(&format!("auth_hba_file = \"{}\"", hba.display()))
        .general(&certs.pgweir_lines("prefer"))
        .start();
    let tls = || certs.client_config(false, false);
    let no_entry = |user: &str, ssl: &str| {
        (
            "28000".to_owned(),
            format!(
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"{user}\", database \"{TEST_DB}\", SSL {ssl}"
            ),
        )
    };

    let scram = pgweir.config(SCRAM_USER.name, SCRAM_USER.password, TEST_DB);
    let client = connect_tls(&scram, tls(), false)
        .await
        .expect("hostssl over TLS");
    assert_eq!(current_user(&client).await, SCRAM_USER.name);
    assert_eq!(
        refusal(connect(&scram).await, "hostssl, plaintext"),
        no_entry(SCRAM_USER.name, "off")
    );

    let md5 = pgweir.config(MD5_USER.name, MD5_USER.password, TEST_DB);
    let client = connect(&md5).await.expect("hostnossl, plaintext");
    assert_eq!(current_user(&client).await, MD5_USER.name);
    assert_eq!(
        refusal(connect_tls(&md5, tls(), false).await, "hostnossl over TLS"),
        no_entry(MD5_USER.name, "on")
    );

    let cert = no_password(&pgweir, TRUST_USER.name);
    let client = connect_tls(&cert, certs.client_config(true, false), false)
        .await
        .expect("hostssl cert line with a certificate");
    assert_eq!(current_user(&client).await, TRUST_USER.name);
    let (ok, out) =
        psql_without_password(&pgweir, TRUST_USER.name, &certs.libpq("verify-full", true)).await;
    assert!(ok, "psql with a certificate: {out}");
    assert_eq!(
        refusal(
            connect_tls(&cert, tls(), false).await,
            "cert line, no certificate"
        ),
        cert_failed(TRUST_USER.name)
    );
    assert_eq!(
        refusal(connect(&cert).await, "cert line, plaintext"),
        no_entry(TRUST_USER.name, "off")
    );
}

/// A login role with a SCRAM password and `extra` options; returns its verifier.
async fn scram_role(name: &str, password: &str, extra: &str) -> String {
    let admin = ssl_cluster().cluster.admin().await;
    let sql = format!(
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE {name} LOGIN PASSWORD '{password}' {extra}"
    );
    admin.batch_execute(&sql).await.expect("create role");
    admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&name],
        )
        .await
        .expect("read pg_authid")
        .get(0)
}

/// The README's secure setup: client TLS `verify-full`, hba `hostssl … scram-sha-256`, an
/// `auth_file` holding only `auth_user`'s SCRAM verifier, `auth_query` for everyone else, and
/// `verify-full` TLS to Postgres (`ssl = on`). Clients log in with SCRAM-SHA-256-PLUS; pgweir
/// recovers each user's ClientKey from the bound exchange and passes it through to Postgres
/// over TLS, bound to Postgres's certificate in turn (SCRAM-SHA-256-PLUS; wrong binding data
/// there fails with "SCRAM channel binding check failed"). No plaintext password is in
/// pgweir's files.
#[tokio::test]
async fn pass_through_over_tls_on_both_sides() {
    let server_certs = &ssl_cluster().certs;
    let (auth, auth_pw) = ("tls_pt_auth", "tls_pt_auth_pw");
    let (user, password) = ("tls_pt_user", "tls_pt_pw");
    let verifier = scram_role(auth, auth_pw, "SUPERUSER").await;
    scram_role(user, password, "").await;
    let certs = Certs::new(user);
    let (userlist, hba) = (certs.path("userlist.txt"), certs.path("hba.conf"));
    std::fs::write(&userlist, format!("\"{auth}\" \"{verifier}\"\n")).unwrap();
    std::fs::write(
        &hba,
        "hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all all reject\n",
    )
    .unwrap();
    let pgweir = Pgweir::builder()
        .on(ssl_cluster().cluster)
        .without_users()
        .auth_type("hba")
        .general(&format!("auth_hba_file = \"{}\"", hba.display()))
        .general(&certs.pgweir_lines("verify-full"))
        .general(&format!("auth_file = \"{}\"", userlist.display()))
        .general(&format!("auth_user = \"{auth}\""))
        .general(&format!(
            "server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = \"{}\"",
            server_certs.ca.display()
        ))
        .extra(&format!(
            "[databases.via_localhost]\nhost = \"localhost\"\nport = {}\ndbname = \"{TEST_DB}\"\n",
            ssl_cluster().cluster.port
        ))
        .start();
    let files = [&pgweir.config_path, &userlist, &hba].map(|p| std::fs::read_to_string(p).unwrap());
    assert!(files
        .iter()
        .all(|f| !f.contains(auth_pw) && !f.contains(password)));

    let login = |name: &str, pw: &str| {
        let mut config = pgweir.config(name, pw, "via_localhost");
        config.channel_binding(ChannelBinding::Require);
        config
    };
    let tls = || certs.client_config(true, false);
    let sql = "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let mut clients = Vec::new();
    // auth_user first, so pgweir holds its key for the lookups.
    for (name, pw) in [(auth, auth_pw), (user, password)] {
        let client = connect_tls(&login(name, pw), tls(), false)
            .await
            .unwrap_or_else(|e| panic!("{name}: PLUS login: {e:?}\n{}", pgweir.log()));
        let row = within(10, "pg_stat_ssl", client.query_one(sql, &[]))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}\n{}", pgweir.log()));
        assert_eq!(row.get::<_, String>(0), name);
        assert!(
            row.get::<_, bool>(1),
            "{name}: the server connection uses TLS"
        );
        clients.push(client);
    }

    // psql with channel binding required, on a second server connection (the first is
    // held in a transaction).
    clients[1].batch_execute("BEGIN; SELECT 1").await.unwrap();
    let mut cmd = pg_tool("psql", password);
    let conninfo = format!(
        "host=localhost port={} user={user} dbname=via_localhost channel_binding=require {}",
        pgweir.port,
        certs.libpq("verify-full", true)
    );
    cmd.args(["-X", "-t", "-A", "-c", "SELECT current_user", &conninfo]);
    let out = run_tool(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql: {stderr}\n{}", pgweir.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user);

    let (code, _) = refusal(
        connect_tls(&login(user, "wrong"), tls(), false).await,
        "wrong password with channel binding",
    );
    assert_eq!(code, "28P01");
    let log = pgweir.log();
    assert!(
        !log.contains(password) && !log.contains("SCRAM-SHA-256$"),
        "{log}"
    );
}

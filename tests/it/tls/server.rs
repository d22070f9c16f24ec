//! TLS between pgweir and Postgres (issue 7): every `server_tls_sslmode` against a cluster of
//! its own with `ssl = on` (`common::tls::ssl_cluster`) (its certificate names `localhost` only), `verify-full` towards
//! 127.0.0.1 refused with the reason, a CA that did not sign the server refused, and pgweir's
//! client certificate for a `hostssl … cert` role. SCRAM users log in over TLS, which makes
//! pgweir answer SCRAM-SHA-256-PLUS with channel binding.

use crate::common;

use common::console::{console, show, with_console, ADMIN};
use common::tls::{ssl_cluster, Certs, CERT_ROLE};
use common::{within, Cluster, Pgweir, PgweirBuilder, SCRAM_USER, TEST_DB};

/// The cluster these tests run against, with `ssl = on`.
fn cluster() -> &'static Cluster {
    ssl_cluster().cluster
}

/// The CA of the cluster's certificate.
fn cluster_certs() -> &'static Certs {
    &ssl_cluster().certs
}

/// pgweir in front of [`cluster`].
fn builder() -> PgweirBuilder {
    Pgweir::builder().on(cluster())
}

/// A database section reaching the test database through `localhost`.
fn via_localhost() -> String {
    format!(
        "\n[databases.via_localhost]\nhost = \"localhost\"\nport = {}\ndbname = \"{TEST_DB}\"\n",
        cluster().port
    )
}

fn pgweir(lines: &str) -> Pgweir {
    builder().general(lines).extra(&via_localhost()).start()
}

/// Whether the server connection behind a pgweir client uses TLS, or the error connecting.
async fn server_ssl(pgweir: &Pgweir, db: &str) -> Result<bool, tokio_postgres::Error> {
    let client = pgweir
        .try_connect(SCRAM_USER.name, SCRAM_USER.password, db)
        .await?;
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let row = within(10, "pg_stat_ssl", client.query_one(sql, &[])).await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn server_modes() {
    let certs = cluster_certs();
    let ca = certs.ca.display().to_string();
    let cases = [
        ("disable", TEST_DB, false),
        ("prefer", TEST_DB, true),
        ("require", TEST_DB, true),
        ("verify-ca", TEST_DB, true),
        ("verify-full", "via_localhost", true),
    ];
    for (mode, db, ssl) in cases {
        let lines = format!("server_tls_sslmode = \"{mode}\"\nserver_tls_ca_file = \"{ca}\"");
        let pgweir = pgweir(&lines);
        let got = server_ssl(&pgweir, db).await;
        assert_eq!(got.ok(), Some(ssl), "{mode} via {db}: {}", pgweir.log());
    }
    let pgweir = builder().start();
    assert_eq!(
        server_ssl(&pgweir, TEST_DB).await.ok(),
        Some(true),
        "default"
    );
}

/// 8 MB each way over TLS to Postgres, so a write the socket cannot take at once is
/// flushed on the server side too.
#[tokio::test]
async fn large_messages_to_the_server() {
    cluster_certs();
    let pgweir = pgweir("server_tls_sslmode = \"require\"");
    let client = pgweir.connect().await;
    let big = "x".repeat(8 << 20);
    let sql = "SELECT length($1::text), repeat('y', 8 << 20), ssl FROM pg_stat_ssl \
               WHERE pid = pg_backend_pid()";
    for _ in 0..3 {
        let row = within(60, "8 MB each way", client.query_one(sql, &[&big]))
            .await
            .expect("large query");
        assert_eq!(row.get::<_, i32>(0), 8 << 20);
        assert_eq!(row.get::<_, String>(1).len(), 8 << 20);
        assert!(row.get::<_, bool>(2), "the server connection uses TLS");
    }
}

/// SHOW SERVERS names the TLS version and cipher suite of each server connection.
#[tokio::test]
async fn show_servers_shows_tls() {
    cluster_certs();
    let pgweir = with_console()
        .on(cluster())
        .general("server_tls_sslmode = \"require\"")
        .start();
    let client = pgweir.connect().await;
    client.simple_query("SELECT 1").await.expect("a server");
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let servers = show(&admin, "SHOW SERVERS").await;
    let tls = servers
        .get("user", SCRAM_USER.name, "tls")
        .unwrap_or_default();
    assert!(
        tls.starts_with("TLSv1.3/TLS13_"),
        "SHOW SERVERS tls: {tls:?}"
    );
}

/// `verify-full` towards 127.0.0.1 with a certificate for `localhost` only, `verify-ca` with a
/// CA that did not sign the server's certificate, and `verify-ca` with no CA file (the
/// system's CAs, which know nothing of the test CA): refused, and the client is told which
/// server and why.
#[tokio::test]
async fn verification_failures_reach_the_client() {
    let certs = cluster_certs();
    let other = Certs::new(SCRAM_USER.name);
    let cases = [
        (
            "verify-full",
            Some(&certs.ca),
            "certificate not valid for name \"127.0.0.1\"",
        ),
        ("verify-ca", Some(&other.ca), "invalid peer certificate"),
        ("verify-ca", None, "invalid peer certificate: UnknownIssuer"),
    ];
    for (mode, ca, reason) in cases {
        let mut lines = format!("server_tls_sslmode = \"{mode}\"");
        if let Some(ca) = ca {
            lines += &format!("\nserver_tls_ca_file = \"{}\"", ca.display());
        }
        let pgweir = pgweir(&lines);
        let err = server_ssl(&pgweir, TEST_DB)
            .await
            .expect_err("verification must fail");
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("{mode}: {err:?}"));
        assert_eq!(db.code().code(), "08006", "{mode}: {err:?}");
        let message = db.message();
        assert!(message.contains("TLS to server 127.0.0.1:"), "{message}");
        assert!(message.contains(reason), "{mode}: {message}");
    }
}

/// pgweir shows Postgres a client certificate when configured; without one, a `hostssl …
/// cert` role is refused by Postgres.
#[tokio::test]
async fn client_certificate_towards_postgres() {
    let certs = cluster_certs();
    let (cert, key) = certs.leaf("pgweir_client", &[], CERT_ROLE);
    let base = format!(
        "server_tls_sslmode = \"verify-ca\"\nserver_tls_ca_file = \"{}\"",
        certs.ca.display()
    );
    let with_cert = format!(
        "{base}\nserver_tls_cert_file = \"{}\"\nserver_tls_key_file = \"{}\"",
        cert.display(),
        key.display()
    );
    let pgweir = builder()
        .user(CERT_ROLE, "client-side-pw")
        .general(&with_cert)
        .start();
    let client = pgweir
        .try_connect(CERT_ROLE, "client-side-pw", TEST_DB)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", pgweir.log()));
    let row = client.query_one("SELECT current_user::text", &[]).await;
    assert_eq!(row.unwrap().get::<_, String>(0), CERT_ROLE);

    let pgweir = builder()
        .user(CERT_ROLE, "client-side-pw")
        .general(&base)
        .start();
    let refused = pgweir
        .try_connect(CERT_ROLE, "client-side-pw", TEST_DB)
        .await;
    assert!(refused.is_err(), "no certificate, no login");
}

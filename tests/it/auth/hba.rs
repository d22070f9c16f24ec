//! `auth_type = "hba"` (issue 7): each client's method comes from the first matching line of
//! `auth_hba_file`. Reject lines, address, database and user mismatches, `@file` lists,
//! `hostssl` lines against a plaintext client and `cert` lines without a certificate are
//! refused with Postgres's FATAL 28000 messages; trust and scram lines apply per user; and
//! a reload (SIGHUP here; the console's RELOAD reads the file the same way) picks up an
//! edited file, a broken one being refused whole and named by `pgweir check` with its line.
//! Clients connect from 127.0.0.1, or from 127.0.0.2 by binding the client socket there
//! (Linux routes all of 127/8 to the loopback).

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio_postgres::{Client, NoTls};

use common::console::{console, with_console, ADMIN};
use common::tls::Certs;
use common::{
    cluster, refusal, within, LazyCluster, Pgweir, MD5_USER, PLAIN_USER, SCRAM_USER, TEST_DB,
    TRUST_USER,
};

/// A user only `cert` lines mention (in `[users]`, so only the certificate is missing).
const CERT_USER: (&str, &str) = ("pgweir_cert_only", "cert_pw");

/// A temp dir holding `hba.conf` (and any `@` files), alive as long as the value.
struct HbaDir {
    dir: tempfile::TempDir,
}

impl HbaDir {
    fn new(rules: &str) -> HbaDir {
        let dir = tempfile::Builder::new()
            .prefix("pgweir-hba-")
            .tempdir()
            .unwrap();
        let hba = HbaDir { dir };
        hba.write("hba.conf", rules);
        hba
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write hba file");
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("hba.conf")
    }

    /// pgweir with `auth_type = "hba"` reading this directory's `hba.conf`.
    fn pgweir(&self, builder: common::PgweirBuilder) -> Pgweir {
        builder
            .auth_type("hba")
            .general(&format!("auth_hba_file = \"{}\"", self.path().display()))
            .start()
    }
}

/// Connects from `source` (a loopback address) as `user` to `db`.
async fn connect_from(
    pgweir: &Pgweir,
    source: &str,
    user: &str,
    password: &str,
    db: &str,
) -> Result<Client, tokio_postgres::Error> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream: TcpStream = socket
        .connect(([127, 0, 0, 1], pgweir.port).into())
        .await
        .expect("connect to pgweir");
    let (client, connection) = pgweir
        .config(user, password, db)
        .connect_raw(stream, NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

fn no_entry(user: &str, db: &str) -> (String, String) {
    (
        "28000".into(),
        format!(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"{user}\", database \"{db}\", SSL off"
        ),
    )
}

async fn works(client: Client) {
    let row = client.query_one("SELECT current_user::text", &[]).await;
    assert!(row.is_ok(), "query after login: {row:?}");
}

#[tokio::test]
async fn reject_lines_addresses_and_methods_per_user() {
    let hba = HbaDir::new(&format!(
        "# TYPE DATABASE USER ADDRESS METHOD\n\
         hostssl all all all trust\n\
         host all all 127.0.0.2/32 trust\n\
         host all {plain} 127.0.0.1/32 reject\n\
         host all {trust} 127.0.0.1/32 trust\n\
         host all {scram} 127.0.0.1/32 scram-sha-256\n\
         host {db} {md5} 127.0.0.1 255.255.255.255 md5\n\
         host all {cert} all cert\n",
        plain = PLAIN_USER.name,
        trust = TRUST_USER.name,
        scram = SCRAM_USER.name,
        md5 = MD5_USER.name,
        db = TEST_DB,
        cert = CERT_USER.0,
    ));
    // Clients are asked for certificates, or the cert line would be a config problem.
    let certs = Certs::new(CERT_USER.0);
    let pgweir = hba.pgweir(
        Pgweir::builder()
            .user(CERT_USER.0, CERT_USER.1)
            .general(&certs.pgweir_lines("prefer")),
    );

    let (code, message) = refusal(
        pgweir
            .try_connect(PLAIN_USER.name, PLAIN_USER.password, TEST_DB)
            .await,
        "reject line",
    );
    assert_eq!(code, "28000");
    assert_eq!(
        message,
        format!(
            "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"{}\", database \"{TEST_DB}\", SSL off",
            PLAIN_USER.name
        )
    );
    // The 127.0.0.2 line trusts everyone, but only clients from there.
    works(
        connect_from(&pgweir, "127.0.0.2", PLAIN_USER.name, "wrong", TEST_DB)
            .await
            .unwrap(),
    )
    .await;

    // trust for one user, scram for another; the hostssl trust line does not apply.
    works(
        pgweir
            .try_connect(TRUST_USER.name, "wrong", TEST_DB)
            .await
            .unwrap(),
    )
    .await;
    let (code, _) = refusal(
        pgweir.try_connect(SCRAM_USER.name, "wrong", TEST_DB).await,
        "scram line, wrong password",
    );
    assert_eq!(code, "28P01");
    works(pgweir.connect().await).await;

    // md5 only for the test database (the mask-column form).
    works(pgweir.connect_as(&MD5_USER, TEST_DB).await).await;
    assert_eq!(
        refusal(
            pgweir
                .try_connect(MD5_USER.name, MD5_USER.password, "postgres")
                .await,
            "md5 user, other database",
        ),
        no_entry(MD5_USER.name, "postgres")
    );

    // Nobody else has a line (the hostssl one takes TLS clients only); a cert line refuses
    // a client without a certificate.
    assert_eq!(
        refusal(
            pgweir.try_connect("pgweir_nobody", "x", TEST_DB).await,
            "unknown user",
        ),
        no_entry("pgweir_nobody", TEST_DB)
    );
    assert_eq!(
        refusal(
            pgweir.try_connect(CERT_USER.0, CERT_USER.1, TEST_DB).await,
            "cert line, plaintext client",
        ),
        (
            "28000".into(),
            format!(
                "certificate authentication failed for user \"{}\"",
                CERT_USER.0
            )
        )
    );
}

#[tokio::test]
async fn database_and_user_lists_from_at_files() {
    let other = cluster().create_database("hba");
    let hba = HbaDir::new(&format!(
        "host @dbs.txt @users/list.txt 127.0.0.1/32 trust\n\
         host {other} all 127.0.0.1/32 scram-sha-256\n"
    ));
    std::fs::create_dir(hba.dir.path().join("users")).unwrap();
    hba.write("dbs.txt", &format!("# databases trusted\n{TEST_DB}\n"));
    hba.write(
        "users/list.txt",
        &format!("{}, {}\n", TRUST_USER.name, MD5_USER.name),
    );
    let pgweir = hba.pgweir(Pgweir::builder().database(&other));

    for user in [TRUST_USER.name, MD5_USER.name] {
        works(pgweir.try_connect(user, "wrong", TEST_DB).await.unwrap()).await;
    }
    // Not in the user list, and no other line for the test database.
    assert_eq!(
        refusal(
            pgweir
                .try_connect(SCRAM_USER.name, SCRAM_USER.password, TEST_DB)
                .await,
            "user not in @file",
        ),
        no_entry(SCRAM_USER.name, TEST_DB)
    );
    // The other database takes anyone, with a password.
    works(pgweir.connect_as(&SCRAM_USER, &other).await).await;
    let (code, _) = refusal(
        pgweir.try_connect(TRUST_USER.name, "wrong", &other).await,
        "database not in @file",
    );
    assert_eq!(code, "28P01");
}

/// A `reject` line refuses before any `auth_query` lookup: a rejected client neither costs the
/// lookup pool a query nor sees how a lookup fails (here every lookup would: pgweir holds no
/// password for `auth_user`).
#[tokio::test]
async fn a_reject_line_refuses_before_any_auth_query_lookup() {
    let hba = HbaDir::new("host all all 127.0.0.1/32 reject\nhost all all all scram-sha-256\n");
    let pgweir = hba.pgweir(Pgweir::builder().general("auth_user = \"pgweir_no_lookup_pw\""));
    let (code, message) = refusal(
        pgweir.try_connect("pgweir_stranger", "x", TEST_DB).await,
        "reject line, user only auth_query could know",
    );
    assert_eq!(code, "28000", "{message}");
    assert!(
        message.starts_with("pg_hba.conf rejects connection"),
        "{message}"
    );
    assert!(
        !pgweir.log().contains("auth_query failed"),
        "{}",
        pgweir.log()
    );
}

/// A role `auth_query` finds without a usable password (none set, or an expired one) still
/// exists: a `trust` line takes it, as Postgres's would, while password lines refuse it like
/// an unknown user. (The cluster trusts pgweir_trust, so pgweir logs in without a password.)
/// Taking pgweir_trust's password away would fail the other tests' logins as it that check
/// passwords, so this test has a cluster of its own.
#[tokio::test]
async fn trust_takes_a_role_auth_query_finds_without_a_password() {
    static OWN: LazyCluster = LazyCluster::new();
    let admin = OWN.get().admin().await;
    let sql = format!(
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE pgweir_hba_lookup LOGIN SUPERUSER PASSWORD 'lookup_pw'; \
         ALTER ROLE {} PASSWORD NULL",
        TRUST_USER.name
    );
    admin.batch_execute(&sql).await.expect("roles");
    let hba = HbaDir::new(&format!(
        "host all {} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        TRUST_USER.name
    ));
    let pgweir = hba.pgweir(
        Pgweir::builder()
            .on(OWN.get())
            .without_users()
            .user("pgweir_hba_lookup", "lookup_pw")
            .general("auth_user = \"pgweir_hba_lookup\""),
    );
    match pgweir.try_connect(TRUST_USER.name, "any", TEST_DB).await {
        Ok(client) => works(client).await,
        Err(e) => panic!("trust line: {e:?}\n{}", pgweir.log()),
    }
    let (code, _) = refusal(
        pgweir
            .try_connect("pgweir_hba_nobody", "any", TEST_DB)
            .await,
        "unknown user, scram line",
    );
    assert_eq!(code, "28P01");
}

/// Polls pgweir's log until `needle` appears.
async fn until_logged(pgweir: &Pgweir, needle: &str) {
    within(10, needle, async {
        while !pgweir.log().contains(needle) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} in {text}");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[tokio::test]
async fn reload_picks_up_an_edited_file_and_refuses_a_broken_one() {
    let hba = HbaDir::new(&format!(
        "host all {} 127.0.0.1/32 reject\nhost pgweir {} 127.0.0.1/32 scram-sha-256\n",
        SCRAM_USER.name, ADMIN.0
    ));
    let pgweir = hba.pgweir(with_console());
    let (code, _) = refusal(
        pgweir
            .try_connect(SCRAM_USER.name, SCRAM_USER.password, TEST_DB)
            .await,
        "before reload",
    );
    assert_eq!(code, "28000");

    edit(&hba.path(), "reject", "scram-sha-256");
    pgweir.signal("HUP");
    until_logged(&pgweir, "configuration reloaded").await;
    works(pgweir.connect().await).await;

    // A broken file is refused whole, by RELOAD as by SIGHUP: the running rules stay.
    edit(
        &hba.path(),
        "all pgweir_scram 127.0.0.1/32 scram-sha-256",
        "all pgweir_scram 127.0.0.1/32 ldap",
    );
    let admin = console(&pgweir, ADMIN, "pgweir").await;
    let err = admin
        .simple_query("RELOAD")
        .await
        .expect_err("RELOAD of a broken hba file");
    let text = err
        .as_db_error()
        .map(|e| format!("{} {:?}", e.message(), e.detail()));
    let expected = format!(
        "{} line 1: unsupported authentication method",
        hba.path().display()
    );
    assert!(
        text.as_deref().is_some_and(|t| t.contains(&expected)),
        "the refusal names the file and line: {err:?}"
    );
    works(pgweir.connect().await).await;
}

#[test]
fn check_reports_a_bad_hba_file_with_its_line() {
    let hba = HbaDir::new("host all all 127.0.0.1/32 trust\nhost all +admins all md5\n");
    let config = hba.dir.path().join("pgweir.toml");
    let toml = Pgweir::builder()
        .auth_type("hba")
        .general(&format!("auth_hba_file = \"{}\"", hba.path().display()))
        .config_toml(common::free_port());
    std::fs::write(&config, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgweir"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run pgweir check");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let expected = format!(
        "{} line 2: group names (+admins) are not supported",
        hba.path().display()
    );
    assert!(text.contains(&expected), "{text}");
}

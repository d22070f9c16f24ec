//! Authentication at both ends of pgweir.
//!
//! Client side: each `auth_type` accepts the right password and refuses a wrong
//! one or an unknown user with the same FATAL 28P01; an unknown database is 3D000.
//! Server side: pgweir logs in to Postgres with SCRAM, md5, cleartext and trust,
//! depending on what pg_hba.conf demands of each test user.

use crate::common;

use common::{
    cluster, current_user, expect_sqlstate, Pgweir, MD5_USER, PLAIN_USER, SCRAM_USER, TEST_DB,
    TRUST_USER,
};
use tokio_postgres::Client;

/// The message of a failed login with the user name taken out, so messages for
/// different users can be compared.
fn login_failure(result: Result<Client, tokio_postgres::Error>, user: &str) -> String {
    let err = match result {
        Ok(_) => panic!("login as {user} should have failed"),
        Err(err) => err,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("login as {user}: no SQLSTATE in {err:?}"));
    assert_eq!(db.code().code(), "28P01", "login as {user}: {db:?}");
    db.message().replace(user, "<user>")
}

async fn check_client_auth(auth_type: &str) {
    let pgweir = Pgweir::builder().auth_type(auth_type).start();
    let client = pgweir
        .try_connect(SCRAM_USER.name, SCRAM_USER.password, TEST_DB)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{auth_type}: right password refused: {e:?}\n{}",
                pgweir.log()
            )
        });
    assert_eq!(current_user(&client).await, SCRAM_USER.name);

    let wrong = login_failure(
        pgweir.try_connect(SCRAM_USER.name, "wrong", TEST_DB).await,
        SCRAM_USER.name,
    );
    let unknown_user = "pgweir_nobody";
    let unknown = login_failure(
        pgweir.try_connect(unknown_user, "whatever", TEST_DB).await,
        unknown_user,
    );
    assert_eq!(
        wrong, unknown,
        "{auth_type}: an unknown user must look like a wrong password"
    );

    let no_db = pgweir
        .try_connect(SCRAM_USER.name, SCRAM_USER.password, "pgweir_no_such_db")
        .await;
    assert_eq!(
        expect_sqlstate(no_db.map(|_| ()), "unknown database").code(),
        "3D000"
    );
}

#[tokio::test]
async fn scram_client_auth() {
    check_client_auth("scram-sha-256").await;
}

#[tokio::test]
async fn md5_client_auth() {
    check_client_auth("md5").await;
}

#[tokio::test]
async fn plain_client_auth() {
    check_client_auth("plain").await;
}

#[tokio::test]
async fn trust_client_auth_needs_no_password() {
    let pgweir = Pgweir::builder().auth_type("trust").start();
    let client = pgweir
        .try_connect(SCRAM_USER.name, "anything", TEST_DB)
        .await
        .expect("trust accepts any password");
    assert_eq!(current_user(&client).await, SCRAM_USER.name);
}

#[tokio::test]
async fn pgweir_logs_in_upstream_with_every_hba_method() {
    let pgweir = Pgweir::start();
    for user in [SCRAM_USER, MD5_USER, PLAIN_USER, TRUST_USER] {
        let client = pgweir
            .try_connect(user.name, user.password, TEST_DB)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "upstream {} login as {}: {e:?}\n{}",
                    user.hba_method,
                    user.name,
                    pgweir.log()
                )
            });
        assert_eq!(
            current_user(&client).await,
            user.name,
            "via {}",
            user.hba_method
        );
    }
}

/// pgweir with a database whose server user is forced, so clients configured with
/// only a hash or verifier (which cannot log in upstream) can still be checked.
fn forced_user_pgweir(auth_type: &str, client: &str, stored: &str) -> Pgweir {
    Pgweir::builder()
        .auth_type(auth_type)
        .user(client, stored)
        .extra(&format!(
            "[databases.forced]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{TEST_DB}\"\n\
             user = \"{}\"\npassword = \"{}\"\n",
            cluster().port,
            SCRAM_USER.name,
            SCRAM_USER.password
        ))
        .start()
}

#[tokio::test]
async fn scram_verifier_in_config_checks_clients() {
    let verifier = postgres_protocol::password::scram_sha_256(b"verifier_pw");
    let pgweir = forced_user_pgweir("scram-sha-256", "verifier_client", &verifier);
    let client = pgweir
        .try_connect("verifier_client", "verifier_pw", "forced")
        .await
        .unwrap_or_else(|e| panic!("verifier login: {e:?}\n{}", pgweir.log()));
    assert_eq!(
        current_user(&client).await,
        SCRAM_USER.name,
        "forced user upstream"
    );
    login_failure(
        pgweir
            .try_connect("verifier_client", "nope", "forced")
            .await,
        "verifier_client",
    );
}

#[tokio::test]
async fn md5_hash_in_config_checks_clients() {
    let hash = postgres_protocol::password::md5(b"hashed_pw", "hashed_client");
    let pgweir = forced_user_pgweir("md5", "hashed_client", &hash);
    let client = pgweir
        .try_connect("hashed_client", "hashed_pw", "forced")
        .await
        .unwrap_or_else(|e| panic!("md5 hash login: {e:?}\n{}", pgweir.log()));
    assert_eq!(current_user(&client).await, SCRAM_USER.name);
    login_failure(
        pgweir.try_connect("hashed_client", "nope", "forced").await,
        "hashed_client",
    );
}

#[tokio::test]
async fn forced_user_serves_every_client_as_one_server_user() {
    let pgweir = forced_user_pgweir("scram-sha-256", "other_client", "other_pw");
    let client = pgweir
        .try_connect("other_client", "other_pw", "forced")
        .await
        .unwrap_or_else(|e| panic!("forced db login: {e:?}\n{}", pgweir.log()));
    assert_eq!(current_user(&client).await, SCRAM_USER.name);
}

/// As in Postgres, `md5` with only a SCRAM verifier stored falls back to SCRAM.
#[tokio::test]
async fn md5_auth_type_falls_back_to_scram_for_a_verifier() {
    let verifier = postgres_protocol::password::scram_sha_256(b"verifier_pw");
    let pgweir = forced_user_pgweir("md5", "verifier_client", &verifier);
    let client = pgweir
        .try_connect("verifier_client", "verifier_pw", "forced")
        .await
        .unwrap_or_else(|e| panic!("SCRAM fallback under md5: {e:?}"));
    assert_eq!(current_user(&client).await, SCRAM_USER.name);
    login_failure(
        pgweir
            .try_connect("verifier_client", "nope", "forced")
            .await,
        "verifier_client",
    );
}

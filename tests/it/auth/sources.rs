//! Where pgweir gets user secrets besides `[users]`: PgBouncer's `auth_file` (plaintext, md5
//! and SCRAM secrets; `[users]` wins on conflict; reloaded on SIGHUP) and `auth_query` (roles
//! created in the test, looked up as `auth_user` with the name bound as `$1`, cached for
//! `auth_query_cache_ttl`). A wrong password, an unknown user and an expired role all get the
//! same FATAL 28P01; a lookup that cannot reach Postgres gets 08006.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::console::show;
use common::wire::Wire;
use common::{
    cluster, current_user, free_port, pg_tool, run_tool, Pgweir, PgweirBuilder, MD5_USER,
    PLAIN_USER, SCRAM_USER, TEST_DB, TRUST_USER,
};

/// Logs in and returns `current_user` as the server sees it, panicking with pgweir's log.
async fn logged_in_as(pgweir: &Pgweir, user: &str, password: &str, db: &str) -> String {
    match pgweir.try_connect(user, password, db).await {
        Ok(client) => current_user(&client).await,
        Err(e) => panic!("login as {user} to {db}: {e:?}\n{}", pgweir.log()),
    }
}

/// The FATAL of a refused login, which must be 28P01, with the user name taken out so the
/// messages for different users compare equal.
async fn refused(pgweir: &Pgweir, user: &str, password: &str, db: &str) -> String {
    let err = match pgweir.try_connect(user, password, db).await {
        Ok(_) => panic!("login as {user:?} with {password:?} should fail"),
        Err(err) => err,
    };
    let db_err = err
        .as_db_error()
        .unwrap_or_else(|| panic!("login as {user}: no SQLSTATE in {err:?}"));
    assert_eq!(db_err.code().code(), "28P01", "login as {user}: {db_err:?}");
    db_err.message().replace(user, "<user>")
}

/// What Postgres stores for `role` (`rolpassword`): an md5 hash or a SCRAM verifier.
async fn stored_secret(role: &str) -> String {
    let admin = cluster().admin().await;
    let row = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("read pg_authid");
    row.get(0)
}

/// Creates a login role with a SCRAM password; `extra` adds options (`SUPERUSER`, ...).
async fn create_role(name: &str, password: &str, extra: &str) {
    let admin = cluster().admin().await;
    let sql = format!(
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}' {extra}"
    );
    admin.batch_execute(&sql).await.expect("create role");
}

/// A userlist.txt line, quotes doubled as PgBouncer expects.
fn userlist_line(user: &str, secret: &str) -> String {
    let q = |s: &str| s.replace('"', "\"\"");
    format!("\"{}\" \"{}\"\n", q(user), q(secret))
}

fn write_userlist(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("userlist.txt");
    std::fs::write(&path, text).expect("write userlist.txt");
    path
}

fn with_auth_file(builder: PgweirBuilder, path: &Path) -> PgweirBuilder {
    builder.general(&format!("auth_file = {:?}", path.display().to_string()))
}

/// psql's `current_user` through pgweir.
async fn psql_user(pgweir: &Pgweir, user: &str, password: &str) -> String {
    let mut cmd = pg_tool("psql", password);
    cmd.args(["-X", "-A", "-t", "-c", "SELECT current_user"])
        .arg(pgweir.conninfo(user, TEST_DB));
    let out = run_tool(cmd).await;
    assert!(
        out.status.success(),
        "psql as {user}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pgweir.log()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Users from the file only, with the secrets Postgres stores (no plaintext): the SCRAM
/// user passes its verifier through, the md5 user answers the server's md5 challenge with
/// its hash. A user in both `[users]` and the file keeps the `[users]` password, and the
/// warning names the user but never the file's secret.
#[tokio::test]
async fn auth_file_users_log_in_and_toml_wins() {
    let dir = tempfile::tempdir().unwrap();
    let text = userlist_line(SCRAM_USER.name, &stored_secret(SCRAM_USER.name).await)
        + &userlist_line(MD5_USER.name, &stored_secret(MD5_USER.name).await)
        + "; the TOML entry wins over this one\n"
        + &userlist_line(PLAIN_USER.name, "file_only_pw")
        + &userlist_line(TRUST_USER.name, TRUST_USER.password);
    let path = write_userlist(dir.path(), &text);
    let pgweir = with_auth_file(Pgweir::builder().without_users(), &path)
        .auth_type("md5")
        .user(PLAIN_USER.name, PLAIN_USER.password)
        .start();

    for user in [SCRAM_USER, MD5_USER, PLAIN_USER, TRUST_USER] {
        let seen = logged_in_as(&pgweir, user.name, user.password, TEST_DB).await;
        assert_eq!(seen, user.name);
    }
    assert_eq!(
        psql_user(&pgweir, SCRAM_USER.name, SCRAM_USER.password).await,
        SCRAM_USER.name
    );
    refused(&pgweir, PLAIN_USER.name, "file_only_pw", TEST_DB).await;
    refused(&pgweir, SCRAM_USER.name, "wrong", TEST_DB).await;
    refused(&pgweir, MD5_USER.name, "wrong", TEST_DB).await;

    let log = pgweir.log();
    assert!(
        log.lines()
            .any(|l| l.contains(PLAIN_USER.name) && l.contains("[users] wins")),
        "a warning names the conflicting user:\n{log}"
    );
    assert!(!log.contains("file_only_pw"), "a secret reached the log");
}

/// RELOAD (SIGHUP) re-reads the file; a broken file keeps the users read before.
#[tokio::test]
async fn auth_file_follows_reload_and_survives_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_userlist(
        dir.path(),
        &userlist_line(TRUST_USER.name, TRUST_USER.password),
    );
    let pgweir = with_auth_file(Pgweir::builder().without_users(), &path).start();
    logged_in_as(&pgweir, TRUST_USER.name, TRUST_USER.password, TEST_DB).await;
    let before = refused(&pgweir, PLAIN_USER.name, PLAIN_USER.password, TEST_DB).await;

    let both = userlist_line(TRUST_USER.name, TRUST_USER.password)
        + &userlist_line(PLAIN_USER.name, PLAIN_USER.password);
    std::fs::write(&path, both).unwrap();
    pgweir.signal("HUP");
    let mut seen = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = pgweir
            .try_connect(PLAIN_USER.name, PLAIN_USER.password, TEST_DB)
            .await;
        if let Ok(client) = client {
            seen = Some(current_user(&client).await);
            break;
        }
    }
    assert_eq!(seen.as_deref(), Some(PLAIN_USER.name), "{}", pgweir.log());

    std::fs::write(&path, "\"broken\n").unwrap();
    pgweir.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = logged_in_as(&pgweir, PLAIN_USER.name, PLAIN_USER.password, TEST_DB).await;
    assert_eq!(seen, PLAIN_USER.name);
    assert!(pgweir.log().contains("auth_file not loaded"));
    assert!(before.contains("password authentication failed"));
}

/// pgweir for auth_query tests: no test users, `auth_user` a superuser role (pg_authid is
/// readable by superusers only) with a plaintext password, the only one in the file.
fn auth_query_pgweir(auth_user: &str, password: &str, ttl: &str) -> PgweirBuilder {
    Pgweir::builder()
        .without_users()
        .user(auth_user, password)
        .general(&format!("auth_user = {auth_user:?}"))
        .general(&format!("auth_query_cache_ttl = {ttl:?}"))
}

/// A role the query finds logs in, and the server login passes its SCRAM verifier through;
/// a wrong password, an unknown role, an expired role and a role that may not log in are
/// all refused with the same 28P01 and message.
#[tokio::test]
async fn auth_query_finds_roles_and_refuses_the_rest_alike() {
    create_role("aq1_auth", "aq1_auth_pw", "SUPERUSER").await;
    create_role("aq1_alice", "alice_pw", "").await;
    create_role("aq1_expired", "expired_pw", "VALID UNTIL '2001-01-01'").await;
    create_role("aq1_nologin", "nologin_pw", "").await;
    let admin = cluster().admin().await;
    admin
        .batch_execute("ALTER ROLE aq1_nologin NOLOGIN")
        .await
        .unwrap();
    let pgweir = auth_query_pgweir("aq1_auth", "aq1_auth_pw", "10s").start();

    assert_eq!(
        logged_in_as(&pgweir, "aq1_alice", "alice_pw", TEST_DB).await,
        "aq1_alice"
    );
    assert_eq!(
        psql_user(&pgweir, "aq1_alice", "alice_pw").await,
        "aq1_alice"
    );
    let wrong = refused(&pgweir, "aq1_alice", "wrong", TEST_DB).await;
    for (user, password) in [
        ("aq1_nobody", "whatever"),
        ("aq1_expired", "expired_pw"),
        ("aq1_nologin", "nologin_pw"),
    ] {
        let got = refused(&pgweir, user, password, TEST_DB).await;
        assert_eq!(got, wrong, "{user} must look like a wrong password");
    }
    let log = pgweir.log();
    assert!(!log.contains("alice_pw") && !log.contains("SCRAM-SHA-256$"));
}

/// The user name is bound as `$1`: a name with quotes logs in as that role, and a name
/// that would rewrite a spliced query only finds nothing.
#[tokio::test]
async fn auth_query_binds_the_user_name() {
    create_role("aq2_auth", "aq2_auth_pw", "SUPERUSER").await;
    create_role("aq2_o'neil", "oneil_pw", "").await;
    create_role("aq2_bob", "bob_pw", "").await;
    let pgweir = auth_query_pgweir("aq2_auth", "aq2_auth_pw", "10s").start();
    assert_eq!(
        logged_in_as(&pgweir, "aq2_o'neil", "oneil_pw", TEST_DB).await,
        "aq2_o'neil"
    );
    let injected = "x' OR rolname = 'aq2_bob";
    refused(&pgweir, injected, "bob_pw", TEST_DB).await;
}

/// Answers, found or not, are reused for `auth_query_cache_ttl`: a password changed in
/// Postgres, and a role created after a failed attempt, are seen once the answer expires.
#[tokio::test]
async fn auth_query_answers_are_cached_for_the_ttl() {
    create_role("aq3_auth", "aq3_auth_pw", "SUPERUSER").await;
    create_role("aq3_carol", "old_pw", "").await;
    let pgweir = auth_query_pgweir("aq3_auth", "aq3_auth_pw", "3s").start();
    logged_in_as(&pgweir, "aq3_carol", "old_pw", TEST_DB).await;
    refused(&pgweir, "aq3_late", "late_pw", TEST_DB).await;
    create_role("aq3_late", "late_pw", "").await;
    let admin = cluster().admin().await;
    admin
        .batch_execute("ALTER ROLE aq3_carol PASSWORD 'new_pw'")
        .await
        .unwrap();
    // Still the cached answers.
    logged_in_as(&pgweir, "aq3_carol", "old_pw", TEST_DB).await;
    refused(&pgweir, "aq3_late", "late_pw", TEST_DB).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        logged_in_as(&pgweir, "aq3_late", "late_pw", TEST_DB).await,
        "aq3_late"
    );
    assert_eq!(
        logged_in_as(&pgweir, "aq3_carol", "new_pw", TEST_DB).await,
        "aq3_carol"
    );
    refused(&pgweir, "aq3_carol", "old_pw", TEST_DB).await;
}

/// A database whose `auth_dbname` points at a server that is down: its clients get 08006
/// naming the lookup, while the other databases' lookups still work.
#[tokio::test]
async fn auth_query_that_cannot_run_is_a_connection_failure() {
    create_role("aq4_auth", "aq4_auth_pw", "SUPERUSER").await;
    create_role("aq4_dave", "dave_pw", "").await;
    let dead = free_port();
    let pgweir = auth_query_pgweir("aq4_auth", "aq4_auth_pw", "10s")
        .extra(&format!(
            "[databases.deadauth]\nhost = \"127.0.0.1\"\nport = {dead}\ndbname = \"{TEST_DB}\"\n\
             [databases.via_dead]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{TEST_DB}\"\n\
             auth_dbname = \"deadauth\"\n",
            cluster().port
        ))
        .start();
    let err = match pgweir.try_connect("aq4_dave", "dave_pw", "via_dead").await {
        Ok(_) => panic!("the lookup database is down; login must fail"),
        Err(e) => e,
    };
    let db_err = err.as_db_error().expect("a FATAL from pgweir");
    assert_eq!(db_err.code().code(), "08006", "{db_err:?}");
    assert!(db_err.message().contains("auth_query"), "{db_err:?}");
    assert!(pgweir.log().contains("auth_query failed"));
    assert_eq!(
        logged_in_as(&pgweir, "aq4_dave", "dave_pw", TEST_DB).await,
        "aq4_dave"
    );
}

/// An admin user may come from the auth file; SHOW USERS lists the file's users and SHOW
/// CONFIG the auth keys, neither any secret.
#[tokio::test]
async fn console_shows_auth_file_users_and_keys_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let text = userlist_line("filed_admin", "admin_file_pw")
        + &userlist_line(SCRAM_USER.name, &stored_secret(SCRAM_USER.name).await);
    let path = write_userlist(dir.path(), &text);
    let pgweir = with_auth_file(Pgweir::builder().without_users(), &path)
        .user(PLAIN_USER.name, PLAIN_USER.password)
        .general("admin_users = [\"filed_admin\"]")
        .general("auth_user = \"filed_admin\"")
        .start();
    let admin = match pgweir
        .try_connect("filed_admin", "admin_file_pw", "pgweir")
        .await
    {
        Ok(client) => client,
        Err(e) => panic!("console login: {e:?}\n{}", pgweir.log()),
    };
    let users = show(&admin, "SHOW USERS").await;
    let names: Vec<_> = users.rows.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(names, ["filed_admin", PLAIN_USER.name, SCRAM_USER.name]);
    let config = show(&admin, "SHOW CONFIG").await;
    let auth_file = path.display().to_string();
    assert_eq!(config.get("key", "auth_file", "value"), Some(auth_file));
    assert_eq!(
        config.get("key", "auth_user", "value").as_deref(),
        Some("filed_admin")
    );
    let everything = format!("{:?}{:?}", users.rows, config.rows);
    for secret in ["admin_file_pw", PLAIN_USER.password, "SCRAM-SHA-256$"] {
        assert!(!everything.contains(secret), "{secret} shown");
    }
}

/// The first authentication request a startup as `user` gets: 5 md5, 10 SASL, ...
async fn auth_request(port: u16, user: &str) -> i32 {
    let mut wire = Wire::connect(port).await;
    let mut out = bytes::BytesMut::new();
    let params = [("user", user), ("database", TEST_DB)];
    postgres_protocol::message::frontend::startup_message(params, &mut out).unwrap();
    wire.raw(&out).send().await;
    let msg = wire.recv().await;
    assert_eq!(msg.tag, b'R', "an authentication request for {user}");
    i32::from_be_bytes(msg.body[..4].try_into().unwrap())
}

/// Under `auth_type = "md5"` with lookups on, a found role (SCRAM verifier), an unknown one
/// and an expired one are all asked for SCRAM: the mechanism does not tell who exists.
#[tokio::test]
async fn md5_auth_type_asks_everyone_the_same_with_lookups() {
    create_role("aq5_auth", "aq5_auth_pw", "SUPERUSER").await;
    create_role("aq5_gina", "gina_pw", "").await;
    create_role("aq5_expired", "expired_pw", "VALID UNTIL '2001-01-01'").await;
    let pgweir = auth_query_pgweir("aq5_auth", "aq5_auth_pw", "10s")
        .auth_type("md5")
        .start();
    for user in ["aq5_gina", "aq5_nobody", "aq5_expired"] {
        assert_eq!(auth_request(pgweir.port, user).await, 10, "{user}");
    }
    assert_eq!(
        logged_in_as(&pgweir, "aq5_gina", "gina_pw", TEST_DB).await,
        "aq5_gina"
    );
    let wrong = refused(&pgweir, "aq5_gina", "wrong", TEST_DB).await;
    assert_eq!(
        refused(&pgweir, "aq5_expired", "expired_pw", TEST_DB).await,
        wrong
    );
    assert_eq!(refused(&pgweir, "aq5_nobody", "x", TEST_DB).await, wrong);
}

/// Under `auth_type = "plain"`, lookups or not, refusing an unknown user costs the PBKDF2 run
/// that checking a password against a SCRAM verifier costs: how long a refusal takes does not
/// tell whether the user exists. Medians of a few tries, against a generous margin.
#[tokio::test]
async fn plain_refusals_take_as_long_for_unknown_users() {
    let verifier = stored_secret(SCRAM_USER.name).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_userlist(dir.path(), &userlist_line(SCRAM_USER.name, &verifier));
    let pgweir = with_auth_file(Pgweir::builder().without_users(), &path)
        .auth_type("plain")
        .start();
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        for (user, times) in [
            (SCRAM_USER.name, &mut known),
            ("pgweir_nobody", &mut unknown),
        ] {
            let start = Instant::now();
            refused(&pgweir, user, "wrong", TEST_DB).await;
            times.push(start.elapsed());
        }
    }
    known.sort();
    unknown.sort();
    let (known, unknown) = (known[3], unknown[3]);
    assert!(
        unknown * 2 >= known,
        "unknown user {unknown:?}, wrong password {known:?}"
    );
}

/// Under `auth_type = "md5"` without lookups, an auth file of SCRAM verifiers: an unknown
/// user is asked for SCRAM like the users in the file, not for md5.
#[tokio::test]
async fn md5_auth_type_asks_unknown_users_like_a_file_of_verifiers() {
    let mut text = String::new();
    for user in [SCRAM_USER, PLAIN_USER, TRUST_USER] {
        let verifier = stored_secret(user.name).await;
        assert!(verifier.starts_with("SCRAM-SHA-256$"), "{}", user.name);
        text += &userlist_line(user.name, &verifier);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_userlist(dir.path(), &text);
    let pgweir = with_auth_file(Pgweir::builder().without_users(), &path)
        .auth_type("md5")
        .start();
    for user in [SCRAM_USER.name, "pgweir_nobody"] {
        assert_eq!(auth_request(pgweir.port, user).await, 10, "{user}");
    }
}

/// A `[users]` entry with pool keys but no password does not hide the user's secret: the
/// auth file's (unit-tested in `auth`) or, here, auth_query's still checks its clients.
#[tokio::test]
async fn a_users_entry_without_password_keeps_the_looked_up_secret() {
    create_role("aq6_auth", "aq6_auth_pw", "SUPERUSER").await;
    create_role("aq6_hank", "hank_pw", "").await;
    let pgweir = auth_query_pgweir("aq6_auth", "aq6_auth_pw", "10s")
        .extra("[users.aq6_hank]\npool_size = 3\n")
        .start();
    assert_eq!(
        logged_in_as(&pgweir, "aq6_hank", "hank_pw", TEST_DB).await,
        "aq6_hank"
    );
    refused(&pgweir, "aq6_hank", "wrong", TEST_DB).await;
}

/// `pgweir check` reads the auth file too, naming the bad line but not the secret.
#[test]
fn check_reports_a_broken_auth_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_userlist(dir.path(), "\"ok\" \"fine\"\n\"bad\" \"md5zz_secret\n");
    let config = dir.path().join("pgweir.toml");
    let text = format!(
        "[pgweir]\nauth_file = {:?}\n[databases.db]\nhost = \"h\"\n",
        path.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgweir"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("run pgweir check")
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains("md5zz_secret"), "{stderr}");
    write_userlist(dir.path(), "\"ok\" \"fine\"\n");
    assert!(run().status.success());
}

//! SCRAM pass-through end to end, with no plaintext password anywhere in pgweir's config:
//! an `auth_file` holding only the SCRAM verifiers copied from `pg_authid`, an `auth_user`
//! that itself logs in to Postgres by pass-through, and a role only `auth_query` knows.
//! pgweir logs in to Postgres with the ClientKey each user's own client revealed, so a user
//! whose clients have not logged in yet cannot be served. A cleartext password checked against
//! a verifier yields the key too.

use crate::common;

use common::{cluster, current_user, pg_tool, run_tool, Pgweir, SCRAM_USER, TEST_DB};

async fn logged_in_as(pgweir: &Pgweir, user: &str, password: &str) -> String {
    match pgweir.try_connect(user, password, TEST_DB).await {
        Ok(client) => current_user(&client).await,
        Err(e) => panic!("login as {user}: {e:?}\n{}", pgweir.log()),
    }
}

/// Creates login roles with SCRAM passwords and returns their verifiers from pg_authid.
async fn roles(specs: &[(&str, &str, &str)]) -> Vec<String> {
    let admin = cluster().admin().await;
    let mut verifiers = Vec::new();
    for (name, password, extra) in specs {
        let sql = format!(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE {name} LOGIN PASSWORD '{password}' {extra}"
        );
        admin.batch_execute(&sql).await.expect("create role");
        let row = admin
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[name],
            )
            .await
            .expect("read pg_authid");
        verifiers.push(row.get(0));
    }
    verifiers
}

#[tokio::test]
async fn scram_pass_through_with_no_plaintext_password_in_the_config() {
    let passwords = [("pt_auth", "pt_auth_pw"), ("pt_erin", "erin_pw")];
    let verifiers = roles(&[
        ("pt_auth", "pt_auth_pw", "SUPERUSER"),
        ("pt_erin", "erin_pw", ""),
    ])
    .await;
    let scram_user_verifier: String = cluster()
        .admin()
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&SCRAM_USER.name],
        )
        .await
        .unwrap()
        .get(0);
    let dir = tempfile::tempdir().unwrap();
    let userlist = format!(
        "\"pt_auth\" \"{}\"\n\"{}\" \"{scram_user_verifier}\"\n",
        verifiers[0], SCRAM_USER.name
    );
    let path = dir.path().join("userlist.txt");
    std::fs::write(&path, &userlist).unwrap();
    let pgweir = Pgweir::builder()
        .without_users()
        .general(&format!("auth_file = {:?}", path.display().to_string()))
        .general("auth_user = \"pt_auth\"")
        .start();
    let config = std::fs::read_to_string(&pgweir.config_path).unwrap();
    for secret in passwords
        .iter()
        .map(|(_, pw)| *pw)
        .chain([SCRAM_USER.password])
    {
        assert!(!config.contains(secret) && !userlist.contains(secret));
    }

    // Nobody has logged in as pt_auth yet: pgweir cannot run the lookup for pt_erin.
    let err = match pgweir.try_connect("pt_erin", "erin_pw", TEST_DB).await {
        Ok(_) => panic!("auth_user has no keys yet; the lookup must fail"),
        Err(e) => e,
    };
    let db_err = err.as_db_error().expect("a FATAL from pgweir");
    assert_eq!(db_err.code().code(), "08006", "{db_err:?}");
    assert!(
        db_err
            .message()
            .contains("no client of that user has logged in"),
        "{db_err:?}"
    );

    // pt_auth logs in: pgweir learns its key and passes it through, for it and the lookups.
    assert_eq!(
        logged_in_as(&pgweir, "pt_auth", "pt_auth_pw").await,
        "pt_auth"
    );
    assert_eq!(logged_in_as(&pgweir, "pt_erin", "erin_pw").await, "pt_erin");
    assert_eq!(
        logged_in_as(&pgweir, SCRAM_USER.name, SCRAM_USER.password).await,
        SCRAM_USER.name
    );

    // psql too, over fresh server connections (the pool has 2; open 3 at once).
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            pgweir
                .try_connect("pt_erin", "erin_pw", TEST_DB)
                .await
                .unwrap(),
        );
    }
    let mut cmd = pg_tool("psql", "erin_pw");
    cmd.args(["-X", "-A", "-t", "-c", "SELECT current_user"])
        .arg(pgweir.conninfo("pt_erin", TEST_DB));
    let out = run_tool(cmd).await;
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pt_erin");

    let log = pgweir.log();
    for secret in ["pt_auth_pw", "erin_pw", "SCRAM-SHA-256$"] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}

/// A wrong password never teaches pgweir a key: the user still cannot be served until a
/// client proves the right one.
#[tokio::test]
async fn a_wrong_proof_teaches_no_key() {
    let verifiers = roles(&[("pt_frank", "frank_pw", "")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("userlist.txt");
    std::fs::write(&path, format!("\"pt_frank\" \"{}\"\n", verifiers[0])).unwrap();
    let pgweir = Pgweir::builder()
        .without_users()
        .general(&format!("auth_file = {:?}", path.display().to_string()))
        .start();
    let err = match pgweir.try_connect("pt_frank", "wrong", TEST_DB).await {
        Ok(_) => panic!("wrong password accepted"),
        Err(e) => e,
    };
    assert_eq!(err.as_db_error().unwrap().code().code(), "28P01");
    assert_eq!(
        logged_in_as(&pgweir, "pt_frank", "frank_pw").await,
        "pt_frank"
    );
}

/// A verifier that no longer matches Postgres's (the password changed there): the client
/// still proves the file's password to pgweir, but pgweir refuses to pass it through and
/// says why.
#[tokio::test]
async fn a_stale_verifier_fails_with_a_clear_error() {
    let verifiers = roles(&[("pt_gus", "old_pw", "")]).await;
    cluster()
        .admin()
        .await
        .batch_execute("ALTER ROLE pt_gus PASSWORD 'new_pw'")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("userlist.txt");
    std::fs::write(&path, format!("\"pt_gus\" \"{}\"\n", verifiers[0])).unwrap();
    let pgweir = Pgweir::builder()
        .without_users()
        .general(&format!("auth_file = {:?}", path.display().to_string()))
        .start();
    let err = match pgweir.try_connect("pt_gus", "old_pw", TEST_DB).await {
        Ok(_) => panic!("Postgres no longer knows this verifier"),
        Err(e) => e,
    };
    let db_err = err.as_db_error().expect("a FATAL from pgweir");
    assert!(
        db_err.message().contains("different SCRAM salt"),
        "{db_err:?}"
    );
}

/// The twin database's lookup: the verifier of `<user>_twin`.
const TWIN_QUERY: &str = "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1 || '_twin'";

/// Keys are kept per database: a client of another database whose lookup finds another
/// verifier under the same role name (another cluster; here another `auth_query`) must not
/// replace the keys this database's pool logs in with.
#[tokio::test]
async fn another_databases_verifier_leaves_this_ones_keys_alone() {
    roles(&[
        ("pt_hal_auth", "hal_auth_pw", "SUPERUSER"),
        ("pt_hal", "hal_pw", ""),
        ("pt_hal_twin", "twin_pw", ""),
    ])
    .await;
    let pgweir = Pgweir::builder()
        .without_users()
        .user("pt_hal_auth", "hal_auth_pw")
        .general("auth_user = \"pt_hal_auth\"")
        .extra(&format!(
            "[databases.twin]\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{TEST_DB}\"\n\
             auth_query = \"{TWIN_QUERY}\"\n",
            cluster().port
        ))
        .start();
    let first = pgweir
        .try_connect("pt_hal", "hal_pw", TEST_DB)
        .await
        .unwrap();
    let second = pgweir
        .try_connect("pt_hal", "hal_pw", TEST_DB)
        .await
        .unwrap();
    assert_eq!(current_user(&first).await, "pt_hal");

    // pt_hal proves the twin's password to the twin database, whose query finds the twin's
    // verifier (its own server logins then fail: Postgres knows pt_hal by another one).
    let _twin = pgweir.try_connect("pt_hal", "twin_pw", "twin").await;

    // `first` holds the one server in a transaction: `second` needs a new server login.
    first.batch_execute("BEGIN").await.unwrap();
    assert_eq!(current_user(&second).await, "pt_hal", "{}", pgweir.log());
    first.batch_execute("COMMIT").await.unwrap();
}

/// A client that sends its password in cleartext (`auth_type = "plain"`, or an hba
/// `password` line) against a stored verifier teaches pgweir the key as a SCRAM client does:
/// the PBKDF2 run that checks the password also derives it.
#[tokio::test]
async fn a_cleartext_password_teaches_the_key_too() {
    let verifiers = roles(&[("pt_ivy", "ivy_pw", "")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("userlist.txt");
    std::fs::write(&path, format!("\"pt_ivy\" \"{}\"\n", verifiers[0])).unwrap();
    let pgweir = Pgweir::builder()
        .without_users()
        .auth_type("plain")
        .general(&format!("auth_file = {:?}", path.display().to_string()))
        .start();
    let err = match pgweir.try_connect("pt_ivy", "wrong", TEST_DB).await {
        Ok(_) => panic!("wrong password accepted"),
        Err(e) => e,
    };
    assert_eq!(err.as_db_error().unwrap().code().code(), "28P01");
    assert_eq!(logged_in_as(&pgweir, "pt_ivy", "ivy_pw").await, "pt_ivy");
}

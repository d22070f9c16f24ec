//! Checks of the test harness itself, straight against the throwaway cluster and
//! without pgweir: if these fail, every other test's failure is suspect.

use crate::common;

use common::{
    cluster, connect, direct_config, MD5_USER, PLAIN_USER, SCRAM_USER, TEST_DB, TRUST_USER,
};

#[tokio::test]
async fn every_test_user_logs_in_directly_with_its_hba_method() {
    for user in [SCRAM_USER, MD5_USER, PLAIN_USER, TRUST_USER] {
        let client = connect(&direct_config(cluster().port, &user, TEST_DB))
            .await
            .unwrap_or_else(|e| panic!("direct login as {}: {e:?}", user.name));
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user.name);
    }
}

#[tokio::test]
async fn hba_rules_and_stored_passwords_match_what_the_auth_tests_assume() {
    let admin = cluster().admin().await;
    for user in [SCRAM_USER, MD5_USER, PLAIN_USER, TRUST_USER] {
        let row = admin
            .query_one(
                "SELECT auth_method FROM pg_hba_file_rules WHERE $1 = ANY(user_name) AND type = 'host'",
                &[&user.name],
            )
            .await;
        if user.name != SCRAM_USER.name {
            assert_eq!(row.unwrap().get::<_, String>(0), user.hba_method);
        }
    }
    let md5: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&MD5_USER.name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        md5.starts_with("md5"),
        "md5 user must be stored as md5, got {md5}"
    );
}

#[tokio::test]
async fn wrong_password_is_refused_directly() {
    let mut config = direct_config(cluster().port, &SCRAM_USER, TEST_DB);
    config.password("nope");
    let Err(err) = connect(&config).await else {
        panic!("wrong password must fail");
    };
    assert_eq!(common::sqlstate(&err).unwrap().code(), "28P01");
}

#[tokio::test]
async fn fresh_databases_let_test_users_create_tables() {
    let db = cluster().create_database("harness");
    let client = connect(&direct_config(cluster().port, &SCRAM_USER, &db))
        .await
        .unwrap();
    client
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
}

#[test]
fn server_runs_as_postgres_when_we_are_root() {
    let pid_file = std::fs::read_to_string(cluster().data_dir().join("postmaster.pid")).unwrap();
    let pid = pid_file.lines().next().unwrap().trim();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    if common::is_root() {
        assert_ne!(uid, "0", "the postmaster must not run as root");
    }
}

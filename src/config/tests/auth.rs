//! The authentication-source keys: `auth_file`, `auth_user`, `auth_query`, `auth_dbname`,
//! `auth_query_cache_ttl` and the per-database overrides, with [`Config::auth_lookup`]'s
//! precedence and the problems they can have.

use std::path::PathBuf;
use std::time::Duration;

use super::super::{AuthLookup, DEFAULT_AUTH_QUERY};
use super::{parse, problems, MINIMAL};

#[test]
fn defaults_look_nothing_up() {
    let config = parse(MINIMAL);
    let a = &config.pgweir.auth_sources;
    assert_eq!(a.auth_file, None);
    assert_eq!(a.auth_user, None);
    assert_eq!(a.auth_query, DEFAULT_AUTH_QUERY);
    assert!(a.auth_query.contains("$1") && a.auth_query.contains("rolvaliduntil"));
    assert_eq!(a.auth_query_cache_ttl, Duration::from_secs(10));
    assert_eq!(config.auth_lookup("app"), None);
}

#[test]
fn reads_every_key_and_databases_override_them() {
    let config = parse(
        r#"
[pgweir]
auth_file = "userlist.txt"
auth_user = "lookup"
auth_query = "SELECT usename, passwd FROM my_users($1)"
auth_dbname = "auth"
auth_query_cache_ttl = "0s"
admin_users = ["from_file"]

[databases.app]
host = "h"

[databases.auth]
host = "h"

[databases.other]
host = "h"
auth_user = "other_lookup"
auth_query = "SELECT 1, 2 WHERE $1 = ''"
auth_dbname = "other"
"#,
    );
    let a = &config.pgweir.auth_sources;
    assert_eq!(a.auth_file, Some(PathBuf::from("userlist.txt")));
    assert_eq!(a.auth_query_cache_ttl, Duration::ZERO);
    assert_eq!(config.pgweir.admin_users, ["from_file"]);
    let lookup = |user: &str, query: &str, db: &str| AuthLookup {
        auth_user: user.into(),
        auth_query: query.into(),
        auth_dbname: db.into(),
    };
    let global = "SELECT usename, passwd FROM my_users($1)";
    assert_eq!(
        config.auth_lookup("app"),
        Some(lookup("lookup", global, "auth"))
    );
    assert_eq!(
        config.auth_lookup("pgweir"),
        Some(lookup("lookup", global, "auth"))
    );
    assert_eq!(
        config.auth_lookup("other"),
        Some(lookup("other_lookup", "SELECT 1, 2 WHERE $1 = ''", "other"))
    );
}

#[test]
fn lookup_runs_in_the_clients_database_by_default() {
    let config = parse(&format!("[pgweir]\nauth_user = \"lookup\"\n{MINIMAL}"));
    let found = config.auth_lookup("app").expect("a lookup");
    assert_eq!(
        (found.auth_user.as_str(), found.auth_dbname.as_str()),
        ("lookup", "app")
    );
    assert_eq!(config.auth_lookup("nosuchdb"), None);
}

#[test]
fn problems_name_the_key() {
    let got = problems(&format!(
        "[pgweir]\nauth_dbname = \"nope\"\nauth_query = \" \"\nadmin_users = [\"x\"]\n\
         {MINIMAL}auth_dbname = \"gone\"\n"
    ));
    let expected = [
        "line 3: pgweir.auth_query: must not be empty",
        "line 4: pgweir.admin_users[0]: \"x\" is not a user in [users]",
        "pgweir.auth_dbname: \"nope\" is not a database in [databases]",
        "databases.app.auth_dbname: \"gone\" is not a database in [databases]",
    ];
    assert_eq!(got, expected);
}

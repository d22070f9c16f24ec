//! The authentication-source keys: `auth_file`, `auth_user`, `auth_query`, `auth_dbname` and
//! `auth_query_cache_ttl` in `[pgweir]`, and the per-database `auth_user`, `auth_query` and
//! `auth_dbname` overrides. Read by [`super::load`] (the `[pgweir]` keys as [`super::table`]
//! lists them); used by [`crate::auth`] (the file) and [`crate::auth::query`] (the query).
//! PgBouncer's names and meanings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::reader::{Reader, Section};
use super::{Config, DatabaseConfig};

/// PgBouncer's default `auth_query`: the role's secret, NULL once `rolvaliduntil` has passed
/// (so an expired role fails like a wrong password), for roles that may log in.
pub const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL \
     ELSE rolpassword END FROM pg_authid WHERE rolname = $1 AND rolcanlogin";

/// `[pgweir]`'s authentication sources besides `[users]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSources {
    /// A PgBouncer `userlist.txt`; its users join `[users]` (which wins on conflict). Read at
    /// start and on every reload; relative to the working directory.
    pub auth_file: Option<PathBuf>,
    /// The role pgweir logs in as to look up users that neither `[users]` nor the auth file
    /// know; `None` = no lookups.
    pub auth_user: Option<String>,
    /// The lookup, with the user name as `$1` (bound, never spliced); returns name and secret.
    pub auth_query: String,
    /// The `[databases]` entry the lookup runs in; `None` = the client's own database.
    pub auth_dbname: Option<String>,
    /// How long an answer (found or not) is reused; zero = ask every time.
    pub auth_query_cache_ttl: Duration,
}

impl Default for AuthSources {
    fn default() -> Self {
        AuthSources {
            auth_file: None,
            auth_user: None,
            auth_query: DEFAULT_AUTH_QUERY.to_owned(),
            auth_dbname: None,
            auth_query_cache_ttl: Duration::from_secs(10),
        }
    }
}

/// A database's overrides of the `[pgweir]` lookup keys; `None` = not set here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseAuth {
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    pub auth_dbname: Option<String>,
}

/// The lookup a client of one database gets: who asks, what, and in which database entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLookup {
    pub auth_user: String,
    pub auth_query: String,
    /// A key of `[databases]`.
    pub auth_dbname: String,
}

impl Config {
    /// How a user unknown to `[users]` and the auth file is looked up for a client of
    /// `database` (the database's keys beat `[pgweir]`'s); `None` when no `auth_user` applies
    /// or the database the lookup would run in is not configured.
    pub fn auth_lookup(&self, database: &str) -> Option<AuthLookup> {
        let g = &self.pgweir.auth_sources;
        let db = self.databases.get(database).map(|d| &d.auth);
        let pick = |get: fn(&DatabaseAuth) -> &Option<String>, global: &Option<String>| {
            db.and_then(|d| get(d).clone()).or_else(|| global.clone())
        };
        let auth_dbname = pick(|d| &d.auth_dbname, &g.auth_dbname)
            .or_else(|| db.map(|_| database.to_owned()))
            .filter(|name| self.databases.contains_key(name))?;
        Some(AuthLookup {
            auth_user: pick(|d| &d.auth_user, &g.auth_user)?,
            auth_query: db
                .and_then(|d| d.auth_query.clone())
                .unwrap_or_else(|| g.auth_query.clone()),
            auth_dbname,
        })
    }
}

/// An `auth_query` (`[pgweir]`'s, or a database's) must ask something.
pub(super) fn check_query(r: &mut Reader<'_>, s: &Section<'_>, query: &str) {
    if query.trim().is_empty() {
        r.key_problem(s, "auth_query", "must not be empty");
    }
}

/// A `[databases.NAME]` table's keys.
pub(super) fn database(r: &mut Reader<'_>, s: &mut Section<'_>) -> DatabaseAuth {
    let auth_query = r.string(s, "auth_query");
    if let Some(query) = &auth_query {
        check_query(r, s, query);
    }
    DatabaseAuth {
        auth_user: r.string(s, "auth_user"),
        auth_query,
        auth_dbname: r.string(s, "auth_dbname"),
    }
}

/// Every `auth_dbname` must name a configured database, or lookups could never run.
pub(super) fn check_dbnames(
    r: &mut Reader<'_>,
    general: &AuthSources,
    databases: &BTreeMap<String, DatabaseConfig>,
) {
    fn unknown<'a>(
        name: &'a Option<String>,
        databases: &BTreeMap<String, DatabaseConfig>,
    ) -> Option<&'a String> {
        name.as_ref().filter(|n| !databases.contains_key(*n))
    }
    if let Some(name) = unknown(&general.auth_dbname, databases) {
        let message = format!("{name:?} is not a database in [databases]");
        r.problem("pgweir.auth_dbname".to_owned(), None, message);
    }
    for (db, config) in databases {
        if let Some(name) = unknown(&config.auth.auth_dbname, databases) {
            let message = format!("{name:?} is not a database in [databases]");
            r.problem(format!("databases.{db}.auth_dbname"), None, message);
        }
    }
}

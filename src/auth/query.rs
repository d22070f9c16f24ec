//! `auth_query`: asking Postgres for the secret of a user that neither `[users]` nor the auth
//! file knows, as `auth_user`, over a small pool of its own (at most [`MAX_CONNECTIONS`]
//! server connections per lookup database, so a flood of logins cannot take the database's
//! connections). The user name is a bound parameter (`$1`, extended protocol), never spliced
//! into the SQL. Answers, found or not, are cached for `auth_query_cache_ttl`: misses too, so
//! probing one name cannot hammer Postgres, and for as long as hits, so how fast a login
//! fails does not tell whether the role exists. The cache is bounded so probing with
//! made-up names can neither grow it without end nor push out the answers for real roles.
//!
//! Called by [`crate::client::authenticate`]; logs in through [`crate::server::login`], with the
//! secret pgweir holds for `auth_user` ([`super::UserDirectory`], [`crate::secret::passthrough`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use postgres_protocol::IsNull;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::{UserDirectory, UserSecret};
use crate::config::{AuthLookup, Config};
use crate::net::tls::TlsState;
use crate::secret::passthrough::Keyring;
use crate::secret::StoredSecret;
use crate::server::{login, upstream_error, ServerConn, ServerError, ServerTarget};

/// Server connections one lookup database's pool may open.
pub const MAX_CONNECTIONS: usize = 2;
/// Cached answers kept at most; beyond it expired answers and misses go (see `remember`).
const MAX_CACHED: usize = 10_000;

/// The lookup failed (not "no such user": Postgres could not be asked).
#[derive(Debug, Error)]
#[error("auth_query as auth_user \"{auth_user}\" in database \"{database}\" failed: {source}")]
pub struct AuthQueryError {
    pub auth_user: String,
    pub database: String,
    pub source: ServerError,
}

/// Every lookup pool and the cache of answers.
#[derive(Debug, Default)]
pub struct AuthQueries {
    cache: Mutex<HashMap<CacheKey, Cached>>,
    pools: Mutex<HashMap<(String, String), Arc<QueryPool>>>,
}

/// Lookup database, auth_user, query and the user asked about.
type CacheKey = (String, String, String, String);

/// What a lookup found: `None`, no such role (or one that may not log in); `Some(None)`, a
/// role without a usable password (none set, or expired), which only `trust` and `cert`
/// accept, as Postgres's would.
type Found = Option<Option<UserSecret>>;

#[derive(Debug)]
struct Cached {
    expires: Instant,
    found: Found,
}

/// The idle connections of one (lookup database, auth_user) and the permits to open more.
#[derive(Debug)]
struct QueryPool {
    /// Where it logs in; a reload that changes it gets a new pool.
    target: ServerTarget,
    idle: Mutex<Vec<ServerConn>>,
    permits: Semaphore,
}

impl AuthQueries {
    /// What the query knows of `user` for a client of `database` ([`Found`]): `Ok(None)` too
    /// when no lookup applies.
    pub async fn lookup(
        &self,
        config: &Config,
        users: &UserDirectory,
        keyring: &Keyring,
        tls: &TlsState,
        database: &str,
        user: &str,
    ) -> Result<Found, AuthQueryError> {
        let Some(lookup) = config.auth_lookup(database) else {
            return Ok(None);
        };
        let key = (
            lookup.auth_dbname.clone(),
            lookup.auth_user.clone(),
            lookup.auth_query.clone(),
            user.to_owned(),
        );
        if let Some(c) = self.cache.lock().get(&key) {
            if c.expires > Instant::now() {
                return Ok(c.found.clone());
            }
        }
        let fail = |source| AuthQueryError {
            auth_user: lookup.auth_user.clone(),
            database: lookup.auth_dbname.clone(),
            source,
        };
        let pool = self
            .pool(config, users, keyring, tls, &lookup)
            .map_err(fail)?;
        let timeout = config.pgweir.server_connect_timeout;
        let asked = tokio::time::timeout(timeout, pool.ask(&lookup.auth_query, user, timeout));
        let found = match asked.await {
            Ok(answer) => answer.map_err(fail)?,
            Err(_) => return Err(fail(ServerError::ConnectTimeout(pool.address()))),
        };
        let found = found.map(|secret| secret.map(UserSecret::new));
        let ttl = config.pgweir.auth_sources.auth_query_cache_ttl;
        if !ttl.is_zero() {
            self.remember(key, found.clone(), ttl);
        }
        Ok(found)
    }

    /// Caches an answer. A full cache first drops what expired, then the misses (what probing
    /// with made-up names leaves), never a live hit; still full of hits, it takes no more.
    fn remember(&self, key: CacheKey, found: Found, ttl: Duration) {
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, c| c.expires > now && c.found.is_some());
            if cache.len() >= MAX_CACHED {
                return;
            }
        }
        let expires = Instant::now() + ttl;
        cache.insert(key, Cached { expires, found });
    }

    /// The pool for `lookup`, (re)built when the configuration it logs in with changed.
    fn pool(
        &self,
        config: &Config,
        users: &UserDirectory,
        keyring: &Keyring,
        tls: &TlsState,
        lookup: &AuthLookup,
    ) -> Result<Arc<QueryPool>, ServerError> {
        let db = config
            .databases
            .get(&lookup.auth_dbname)
            .ok_or(ServerError::Protocol("auth_dbname lookup"))?;
        let (database, auth_user) = (&lookup.auth_dbname, &lookup.auth_user);
        let password = config.users.get(auth_user).and_then(|u| u.password.clone());
        if password.is_none() {
            match users.get(auth_user).flatten() {
                Some(s) => keyring.remember(database, auth_user, &s.secret, None),
                None => return Err(ServerError::NoPassword(auth_user.clone())),
            }
        }
        let credentials = keyring.of(database, auth_user);
        let target = ServerTarget {
            host: db.host.clone(),
            port: db.port,
            dbname: db.dbname.clone(),
            user: lookup.auth_user.clone(),
            password,
            credentials: Some(credentials),
            tls: Arc::clone(tls),
            tcp: config.pgweir.tcp,
        };
        let mut pools = self.pools.lock();
        let key = (lookup.auth_dbname.clone(), lookup.auth_user.clone());
        let same = |p: &QueryPool| {
            let (a, b) = (&p.target, &target);
            (&a.host, a.port, &a.dbname, &a.password) == (&b.host, b.port, &b.dbname, &b.password)
        };
        match pools.get(&key) {
            Some(p) if same(p) => Ok(Arc::clone(p)),
            _ => {
                let pool = Arc::new(QueryPool {
                    target,
                    idle: Mutex::new(Vec::new()),
                    permits: Semaphore::new(MAX_CONNECTIONS),
                });
                pools.insert(key, Arc::clone(&pool));
                Ok(pool)
            }
        }
    }
}

impl QueryPool {
    fn address(&self) -> String {
        self.target.address()
    }

    /// Runs the query on an idle connection or a new one (within the pool's limit).
    async fn ask(
        &self,
        query: &str,
        user: &str,
        timeout: Duration,
    ) -> Result<Option<Option<StoredSecret>>, ServerError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ServerError::Closed)?;
        let idle = self.idle.lock().pop().filter(ServerConn::looks_alive);
        let mut conn = match idle {
            Some(conn) => conn,
            None => login::connect(&self.target, timeout).await?,
        };
        let answer = run(&mut conn, query, user).await;
        if !matches!(
            answer,
            Err(ServerError::Io(_) | ServerError::Closed | ServerError::Protocol(_))
        ) {
            self.idle.lock().push(conn);
        }
        answer
    }
}

/// Parse, Bind (the user name as `$1`, text), Execute, Sync; the second column of the first
/// row is the secret. No row is no such role; a NULL, empty or unparsable secret is a role
/// without a usable password, which no password can log in as.
async fn run(
    conn: &mut ServerConn,
    query: &str,
    user: &str,
) -> Result<Option<Option<StoredSecret>>, ServerError> {
    let mut out = BytesMut::new();
    frontend::parse("", query, [0], &mut out)?;
    frontend::bind(
        "",
        "",
        [0],
        [user],
        |v, buf| {
            buf.extend_from_slice(v.as_bytes());
            Ok(IsNull::No)
        },
        [0],
        &mut out,
    )
    .map_err(|_| ServerError::Protocol("auth_query bind"))?;
    frontend::execute("", 1, &mut out)?;
    frontend::sync(&mut out);
    conn.stream.write_all(&out).await?;
    let (mut secret, mut failure, mut rows) = (None, None, 0);
    loop {
        match conn.read_message().await? {
            Message::DataRow(row) if rows == 0 => {
                rows += 1;
                let buf = row.buffer();
                let ranges: Vec<_> = fallible_iterator::FallibleIterator::collect(row.ranges())?;
                secret = ranges
                    .get(1)
                    .cloned()
                    .flatten()
                    .and_then(|r| std::str::from_utf8(&buf[r]).ok().map(str::to_owned));
            }
            Message::ErrorResponse(e) => failure = Some(upstream_error(e.fields())),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let secret = secret
        .filter(|s| !s.is_empty())
        .and_then(|s| StoredSecret::parse(&s).ok());
    Ok((rows > 0).then_some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> CacheKey {
        let s = |v: &str| v.to_owned();
        (s("db"), s("auth"), s("q"), s(user))
    }

    /// Probing with made-up names fills the cache with misses; those must never push out the
    /// answer for a role that exists, and the cache never grows past its bound.
    #[test]
    fn a_flood_of_misses_keeps_the_hits() {
        let queries = AuthQueries::default();
        let ttl = Duration::from_secs(60);
        let md5 = StoredSecret::Md5("ab".repeat(16));
        queries.remember(key("alice"), Some(Some(UserSecret::new(md5))), ttl);
        for i in 0..MAX_CACHED + 10 {
            queries.remember(key(&format!("made-up-{i}")), None, ttl);
        }
        let cache = queries.cache.lock();
        assert!(cache.len() <= MAX_CACHED);
        let alice = cache.get(&key("alice")).expect("alice's answer kept");
        assert!(alice.found.is_some());
    }
}

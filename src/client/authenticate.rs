//! Authenticating a client: the message exchange for each `auth_type` (under `hba`, for the
//! method of the first matching line of `auth_hba_file`), checked against the
//! [`crate::auth::UserDirectory`] or, for users it lacks, `auth_query`
//! ([`crate::auth::query`]). An unknown user, and one whose password is missing or expired,
//! goes through the same exchange as a known one and fails the same way, so the answer does
//! not reveal which users exist. A successful login leaves its secret and SCRAM key in the
//! [`crate::secret::passthrough::Keyring`] for the pool's own logins.

use bytes::{Buf, BytesMut};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use tokio::io::AsyncWriteExt;

use super::login::{InForce, Login};
use super::ClientError;
use crate::app::App;
use crate::auth::UserSecret;
use crate::config::{AuthType, GeneralConfig};
use crate::hba::{cert_proves, Method};
use crate::net::read::read_message;
use crate::net::stream::Stream;
use crate::net::transport::Transport;
use crate::protocol::{backend, fe};
use crate::secret::channel_binding::MECHANISM_PLUS;
use crate::secret::md5::{cleartext_check, cleartext_matches, md5_response_matches};
use crate::secret::passthrough::ScramClientKey;
use crate::secret::scram::{ScramServer, MECHANISM};
use crate::secret::{ScramVerifier, StoredSecret};

/// Password messages are small; anything bigger is an attack or a broken client.
const MAX_PASSWORD_MESSAGE: usize = 8 * 1024;

/// Runs the exchange the client's method calls for. Ok means the client proved who it is;
/// what it proved against is then remembered for the pool's own logins
/// ([`crate::secret::passthrough::Keyring`]).
pub(super) async fn authenticate(
    login: &Login<'_>,
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    database: &str,
) -> Result<(), ClientError> {
    let Login {
        app,
        in_force,
        transport,
    } = login;
    // An hba refusal comes first, so a refused client costs no auth_query lookup.
    let method = method(&in_force.config.pgweir, user, database, transport)?;
    let known = find_secret(app, in_force, user, database).await?;
    let secret = known.as_ref().and_then(Option::as_ref);
    let failed = || ClientError::AuthFailed(user.to_owned());
    let lookups = in_force.config.auth_lookup(database).is_some();
    let unknown_scram = lookups || in_force.users.mostly_scram();
    let key = match method {
        Method::Reject => Err(hba_refused(true, user, database, transport)),
        Method::Trust => known.as_ref().map(|_| None).ok_or_else(failed),
        Method::Cert => (known.is_some() && cert_proves(transport.cert_name.as_deref(), user))
            .then_some(None)
            .ok_or_else(|| ClientError::CertFailed(user.to_owned())),
        Method::Peer => (known.is_some() && peer_proves(transport.peer_uid, user))
            .then_some(None)
            .ok_or_else(|| ClientError::PeerFailed(user.to_owned())),
        Method::Password => {
            let mut out = BytesMut::new();
            backend::authentication_cleartext(&mut out);
            stream.write_all(&out).await?;
            let body = read_password(stream, buf).await?;
            let pw = body.strip_suffix(&[0]).unwrap_or(&body);
            match secret {
                Some(s) => cleartext_check(&s.secret, user, pw),
                None => mock_cleartext(user, pw).then_some(None),
            }
            .ok_or_else(failed)
        }
        Method::Md5 if runs_md5(secret, unknown_scram) => {
            md5_exchange(stream, buf, user, secret).await.map(|()| None)
        }
        // Like Postgres, md5 falls back to SCRAM when only a SCRAM verifier is stored.
        Method::Md5 | Method::ScramSha256 => {
            let verifier = secret
                .and_then(|s| s.scram.clone())
                .unwrap_or_else(|| mock_verifier(user));
            let end_point = transport.end_point.clone().filter(|_| transport.tls);
            scram_exchange(stream, buf, user, verifier, end_point)
                .await
                .map(Some)
        }
    }?;
    if let Some(s) = secret {
        // Only a stored verifier needs the key (from a SCRAM proof, or derived from a
        // cleartext password): a plaintext secret logs in by itself.
        let key = key.filter(|_| matches!(s.secret, StoredSecret::Scram(_)));
        app.keyring.remember(database, user, &s.secret, key);
    }
    Ok(())
}

/// The user's secret: from `[users]` or the auth file, else from `auth_query`. `None` for a
/// user nobody knows; `Some(None)` for one known without a usable (or with an expired)
/// password, which only `trust` and `cert` accept: password methods run the same exchange
/// for both as for a wrong password, and fail the same way.
async fn find_secret(
    app: &App,
    in_force: &InForce,
    user: &str,
    database: &str,
) -> Result<Option<Option<UserSecret>>, ClientError> {
    let InForce { config, users } = in_force;
    let listed = users.get(user);
    if let Some(Some(secret)) = listed {
        return Ok(Some(Some(secret.clone())));
    }
    // A `[users]` entry without a password only sets pool keys: the query may know the secret.
    let found = app
        .auth_queries
        .lookup(config, users, &app.keyring, &app.tls, database, user)
        .await;
    match found {
        Ok(None) if listed.is_some() => Ok(Some(None)),
        Ok(found) => Ok(found),
        Err(e) => {
            tracing::warn!(%user, %database, error = %e, "auth_query failed");
            Err(e.into())
        }
    }
}

/// A cleartext check for a user nobody knows, always false. It does the work a check against
/// a SCRAM verifier does (a PBKDF2 run), against the mock verifier, so the time taken does
/// not tell who exists: verifiers are what `auth_query` finds and what an auth file copied
/// from `pg_authid` holds, lookups or not.
fn mock_cleartext(user: &str, password: &[u8]) -> bool {
    let mock = StoredSecret::Scram(mock_verifier(user));
    std::hint::black_box(cleartext_matches(&mock, user, password));
    false
}

/// Whether an `md5` login runs the md5 exchange: yes unless only a SCRAM verifier is stored
/// (Postgres falls back to SCRAM then). A user nobody knows gets the exchange most users
/// get, so the mechanism does not tell who exists: SCRAM (`unknown_scram`) where `auth_query`
/// may find users (`pg_authid` holds SCRAM verifiers by default since Postgres 14) or most
/// known users hold verifiers, md5 otherwise.
fn runs_md5(secret: Option<&UserSecret>, unknown_scram: bool) -> bool {
    match secret {
        Some(s) => !matches!(s.secret, StoredSecret::Scram(_)),
        None => !unknown_scram,
    }
}

/// How this client must authenticate: `auth_type`, or under `hba` the method of the first
/// matching line (no line, or a `reject` line, refuses the client here: before any
/// `auth_query` lookup, which a refused client must neither cost nor see fail).
fn method(
    g: &GeneralConfig,
    user: &str,
    database: &str,
    transport: &Transport,
) -> Result<Method, ClientError> {
    Ok(match g.auth_type {
        AuthType::ScramSha256 => Method::ScramSha256,
        AuthType::Md5 => Method::Md5,
        AuthType::Plain => Method::Password,
        AuthType::Trust => Method::Trust,
        AuthType::Cert => Method::Cert,
        AuthType::Hba => {
            let (ip, tls) = (transport.addr.ip(), transport.tls);
            // `None` is a Unix socket: only `local` lines match it.
            let matched = g
                .auth_hba_file
                .as_ref()
                .and_then(|hba| hba.find(ip, tls, database, user));
            let Some(matched) = matched else {
                return Err(hba_refused(false, user, database, transport));
            };
            let (line, method) = (matched.line, matched.method);
            tracing::debug!(client = %transport.addr, line, ?method, "hba line matched");
            if method == Method::Reject {
                return Err(hba_refused(true, user, database, transport));
            }
            method
        }
    })
}

/// Postgres's refusal for a `reject` line (`rejected`) or for no matching line.
fn hba_refused(rejected: bool, user: &str, database: &str, transport: &Transport) -> ClientError {
    ClientError::HbaRefused {
        verdict: if rejected {
            "pg_hba.conf rejects connection"
        } else {
            "no pg_hba.conf entry"
        },
        host: transport
            .addr
            .ip()
            .map_or_else(|| "[local]".to_owned(), |ip| ip.to_string()),
        user: user.to_owned(),
        database: database.to_owned(),
        ssl: if transport.tls { "on" } else { "off" },
    }
}

/// Whether the process at the other end of a Unix socket runs as the OS user named like
/// `user`, as Postgres's `peer` method demands without a user name map.
fn peer_proves(uid: Option<u32>, user: &str) -> bool {
    let Some(uid) = uid else {
        return false;
    };
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(os_user)) => os_user.name == user,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(uid, error = %e, "cannot look up the peer's user name");
            false
        }
    }
}

async fn md5_exchange(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    secret: Option<&UserSecret>,
) -> Result<(), ClientError> {
    let salt: [u8; 4] = rand::thread_rng().gen();
    let mut out = BytesMut::new();
    backend::authentication_md5(&mut out, salt);
    stream.write_all(&out).await?;
    let body = read_password(stream, buf).await?;
    let response = body.strip_suffix(&[0]).unwrap_or(&body);
    let ok = secret.is_some_and(|s| md5_response_matches(&s.secret, user, salt, response));
    ok.then_some(())
        .ok_or_else(|| ClientError::AuthFailed(user.to_owned()))
}

/// Runs SCRAM against `verifier`; on success returns the ClientKey the proof revealed.
async fn scram_exchange(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    verifier: ScramVerifier,
    end_point: Option<Vec<u8>>,
) -> Result<ScramClientKey, ClientError> {
    // Under TLS, channel binding is offered first, as Postgres does.
    let (mut scram, mechanisms) = match end_point {
        Some(end_point) => (
            ScramServer::with_channel_binding(verifier, end_point),
            &[MECHANISM_PLUS, MECHANISM][..],
        ),
        None => (ScramServer::new(verifier), &[MECHANISM][..]),
    };
    let mut out = BytesMut::new();
    backend::authentication_sasl(&mut out, mechanisms);
    stream.write_all(&out).await?;

    let mut initial = read_password(stream, buf).await?;
    let mechanism = take_cstr(&mut initial)?;
    let data = sasl_data(&mut initial)?;
    let first = scram
        .client_first(&mechanism, &data)
        .map_err(|e| ClientError::from_scram(e, user))?;
    out.clear();
    backend::authentication_sasl_continue(&mut out, &first);
    stream.write_all(&out).await?;

    let response = read_password(stream, buf).await?;
    let (last, key) = scram
        .client_final(&response)
        .map_err(|e| ClientError::from_scram(e, user))?;
    out.clear();
    backend::authentication_sasl_final(&mut out, &last);
    stream.write_all(&out).await?;
    Ok(key)
}

/// Reads the next message, which must be a PasswordMessage/SASL response ('p').
async fn read_password(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<bytes::Bytes, ClientError> {
    let (tag, body) = read_message(stream, buf, MAX_PASSWORD_MESSAGE).await?;
    if tag != fe::PASSWORD {
        return Err(ClientError::Malformed("expected password response"));
    }
    Ok(body)
}

/// The client-first-message of a SASLInitialResponse after its mechanism: its length (-1
/// for none) must be exactly what is left, as Postgres checks it.
fn sasl_data(rest: &mut bytes::Bytes) -> Result<bytes::Bytes, ClientError> {
    let short = || ClientError::Malformed("insufficient data left in message");
    if rest.len() < 4 {
        return Err(short());
    }
    let data = match rest.get_i32() {
        -1 => bytes::Bytes::new(),
        len => match usize::try_from(len) {
            Ok(n) if n <= rest.len() => rest.split_to(n),
            _ => return Err(short()),
        },
    };
    if !rest.is_empty() {
        return Err(ClientError::Malformed("invalid message format"));
    }
    Ok(data)
}

fn take_cstr(b: &mut bytes::Bytes) -> Result<String, ClientError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(ClientError::Malformed("invalid string in message"))?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    b.advance(end + 1);
    Ok(s)
}

/// A verifier nobody can match, stable per user name for the life of the process (as in
/// Postgres), so probing with made-up names sees the same salt twice.
fn mock_verifier(user: &str) -> ScramVerifier {
    static NONCE: OnceLock<[u8; 32]> = OnceLock::new();
    let nonce = NONCE.get_or_init(|| rand::thread_rng().gen());
    let digest = Sha256::new()
        .chain_update(nonce)
        .chain_update(user)
        .finalize();
    ScramVerifier {
        iterations: 4096,
        salt: digest[..16].to_vec(),
        stored_key: rand::thread_rng().gen(),
        server_key: rand::thread_rng().gen(),
    }
}

//! SCRAM and md5 pass-through: logging in to Postgres as a user whose plaintext password
//! pgweir never had. A client's SCRAM proof reveals its ClientKey (ClientProof XOR
//! ClientSignature, checked against the verifier's StoredKey by [`super::scram`]); with it and
//! the verifier, [`KeyedScramClient`] answers the server's own SCRAM exchange (bound to the
//! server's certificate under TLS, [`Gs2`]). md5 needs no
//! key: the stored `md5<hex>` answers the challenge ([`crate::server::login`]).
//!
//! [`Keyring`] holds, per database and user, the secret that user's clients were last checked
//! against (from `[users]`, the auth file or the auth query) and the recovered key, in memory
//! only: no `Debug` shows them, nothing logs them. [`crate::client::authenticate`] fills it after a
//! successful login; [`crate::server::login`] reads it through [`crate::server::ServerTarget`].

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::keys::hmac;
use super::{ScramVerifier, StoredSecret};

/// A ClientKey recovered from a client's SCRAM proof: as good as the password for logging
/// in, so never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramClientKey(pub [u8; 32]);

impl std::fmt::Debug for ScramClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramClientKey(***)")
    }
}

/// What pgweir may log in to Postgres with as one user, learnt from that user's clients.
#[derive(Default)]
pub struct Credentials {
    known: RwLock<Option<Known>>,
}

struct Known {
    secret: StoredSecret,
    /// Set only while `secret` is the SCRAM verifier the key was checked against.
    client_key: Option<ScramClientKey>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    /// Records the secret a client of this user was just checked against, and the ClientKey
    /// its SCRAM proof revealed if any. The same secret without a key keeps the key known.
    pub fn remember(&self, secret: &StoredSecret, client_key: Option<ScramClientKey>) {
        let mut known = self.known.write();
        let kept = match (&*known, &client_key) {
            (Some(k), None) if k.secret == *secret => k.client_key.clone(),
            _ => None,
        };
        *known = Some(Known {
            secret: secret.clone(),
            client_key: client_key.or(kept),
        });
    }

    /// The secret last remembered.
    pub fn secret(&self) -> Option<StoredSecret> {
        self.known.read().as_ref().map(|k| k.secret.clone())
    }

    /// The ClientKey matching `verifier`, once a client proved it.
    pub fn client_key(&self, verifier: &ScramVerifier) -> Option<ScramClientKey> {
        let known = self.known.read();
        let k = known.as_ref()?;
        match &k.secret {
            StoredSecret::Scram(v) if v == verifier => k.client_key.clone(),
            _ => None,
        }
    }
}

/// Every (database, user)'s [`Credentials`], shared by client logins and pools; kept across
/// reloads (a changed secret replaces the key when the next client logs in). Per database,
/// not per user name: each database's `auth_query` may find a different verifier for the
/// same name (another cluster), and a client of one database must not replace the keys
/// another database's pool logs in with. A key proven for one verifier serves every database
/// of the user that holds that same verifier (a `[users]` or auth file secret, say).
#[derive(Debug, Default)]
pub struct Keyring {
    /// User, then database.
    users: Mutex<HashMap<String, HashMap<String, Arc<Credentials>>>>,
}

impl Keyring {
    /// The credentials of `user` in `database` (a `[databases]` name), created empty on
    /// first use.
    pub fn of(&self, database: &str, user: &str) -> Arc<Credentials> {
        let mut users = self.users.lock();
        let databases = users.entry(user.to_owned()).or_default();
        Arc::clone(databases.entry(database.to_owned()).or_default())
    }

    /// [`Credentials::remember`] for `user` in `database`. Without a key of its own it takes
    /// one another database of the user proved for this same secret; with one, it hands it to
    /// the user's other databases holding this secret.
    pub fn remember(
        &self,
        database: &str,
        user: &str,
        secret: &StoredSecret,
        key: Option<ScramClientKey>,
    ) {
        let mut users = self.users.lock();
        let databases = users.entry(user.to_owned()).or_default();
        let proven = |c: &Arc<Credentials>| match secret {
            StoredSecret::Scram(v) => c.client_key(v),
            _ => None,
        };
        let key = key.or_else(|| databases.values().find_map(proven));
        let this = databases.entry(database.to_owned()).or_default();
        this.remember(secret, key.clone());
        if key.is_some() {
            let same = databases
                .values()
                .filter(|c| c.secret().as_ref() == Some(secret));
            same.for_each(|c| c.remember(secret, key.clone()));
        }
    }
}

/// Why a pass-through login failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PassThroughError {
    #[error("the server uses a different SCRAM salt or iteration count than pgweir's verifier (the password changed?)")]
    VerifierMismatch,
    #[error("malformed SCRAM message from the server")]
    Malformed,
    #[error("the server's SCRAM signature does not match: it does not know this verifier")]
    BadServerSignature,
    #[error("the server refused the SCRAM proof: {0}")]
    Refused(String),
}

/// What a pass-through login says about channel binding: RFC 5802's gs2 header. Binding
/// changes only the `c=` part of the AuthMessage, so the recovered key proves it as well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gs2 {
    /// `n`: no TLS, nothing to bind.
    Unsupported,
    /// `y`: TLS, but the server offered no SCRAM-SHA-256-PLUS.
    Unused,
    /// `p=tls-server-end-point`, with the hash of the server's certificate: SCRAM-SHA-256-PLUS,
    /// so a man in the middle holding another certificate cannot relay the exchange.
    EndPoint(Vec<u8>),
}

impl Gs2 {
    fn header(&self) -> &'static str {
        match self {
            Gs2::Unsupported => "n,,",
            Gs2::Unused => "y,,",
            Gs2::EndPoint(_) => "p=tls-server-end-point,,",
        }
    }

    /// The `c=` value: the header, and the binding data under `p`, in base64.
    fn channel_binding(&self) -> String {
        let data = match self {
            Gs2::EndPoint(end_point) => end_point.as_slice(),
            _ => &[],
        };
        B64.encode([self.header().as_bytes(), data].concat())
    }
}

/// The client side of one SCRAM-SHA-256 exchange (SCRAM-SHA-256-PLUS under [`Gs2::EndPoint`]),
/// proving knowledge of the password with the verifier and a recovered ClientKey instead of
/// the password.
pub struct KeyedScramClient {
    verifier: ScramVerifier,
    client_key: ScramClientKey,
    gs2: Gs2,
    client_nonce: String,
    /// The AuthMessage, once the server's first message came; its signature is expected last.
    auth_message: Option<Vec<u8>>,
}

impl std::fmt::Debug for KeyedScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedScramClient(***)")
    }
}

impl KeyedScramClient {
    pub fn new(verifier: ScramVerifier, client_key: ScramClientKey, gs2: Gs2) -> Self {
        let mut raw = [0; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        KeyedScramClient {
            verifier,
            client_key,
            gs2,
            client_nonce: B64.encode(raw),
            auth_message: None,
        }
    }

    /// The client-first-message for SASLInitialResponse.
    pub fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2.header(), self.first_bare()).into_bytes()
    }

    fn first_bare(&self) -> String {
        format!("n=,r={}", self.client_nonce)
    }

    /// Takes the server-first-message and returns the client-final-message with its proof.
    pub fn update(&mut self, server_first: &[u8]) -> Result<Vec<u8>, PassThroughError> {
        let text = std::str::from_utf8(server_first).map_err(|_| PassThroughError::Malformed)?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = B64.decode(v).ok(),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(PassThroughError::Malformed);
        };
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(PassThroughError::Malformed);
        }
        if salt != self.verifier.salt || iterations != self.verifier.iterations {
            return Err(PassThroughError::VerifierMismatch);
        }
        let without_proof = format!("c={},r={nonce}", self.gs2.channel_binding());
        let auth_message = format!("{},{text},{without_proof}", self.first_bare()).into_bytes();
        let signature = hmac(&self.verifier.stored_key, &[&auth_message]);
        let mut proof = self.client_key.0;
        proof.iter_mut().zip(signature).for_each(|(p, s)| *p ^= s);
        self.auth_message = Some(auth_message);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message: the server must prove it knows the verifier too.
    pub fn finish(&self, server_final: &[u8]) -> Result<(), PassThroughError> {
        let auth_message = self
            .auth_message
            .as_ref()
            .ok_or(PassThroughError::Malformed)?;
        if let Some(e) = server_final.strip_prefix(b"e=") {
            return Err(PassThroughError::Refused(
                String::from_utf8_lossy(e).into_owned(),
            ));
        }
        let signature = server_final
            .strip_prefix(b"v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or(PassThroughError::Malformed)?;
        let expected = hmac(&self.verifier.server_key, &[auth_message]);
        if bool::from(expected.as_slice().ct_eq(&signature)) {
            Ok(())
        } else {
            Err(PassThroughError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::channel_binding::MECHANISM_PLUS;
    use crate::secret::scram::{ScramServer, MECHANISM};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::password::scram_sha_256;

    fn verifier(password: &str) -> ScramVerifier {
        match StoredSecret::parse(&scram_sha_256(password.as_bytes())).unwrap() {
            StoredSecret::Scram(v) => v,
            _ => unreachable!("scram_sha_256 makes a verifier"),
        }
    }

    /// A real client logs in to pgweir; returns the key pgweir recovers.
    fn recover(v: &ScramVerifier, password: &str) -> ScramClientKey {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut server = ScramServer::new(v.clone());
        let first = server.client_first(MECHANISM, client.message()).unwrap();
        client.update(&first).unwrap();
        let (last, key) = server.client_final(client.message()).unwrap();
        client.finish(&last).unwrap();
        key
    }

    /// pgweir logs in to a server holding `server_v` with `v` and `key`.
    fn pass_through(
        v: &ScramVerifier,
        key: ScramClientKey,
        server_v: &ScramVerifier,
    ) -> Result<(), String> {
        let client = KeyedScramClient::new(v.clone(), key, Gs2::Unsupported);
        exchange(client, ScramServer::new(server_v.clone()), MECHANISM)
    }

    /// One SCRAM exchange between `client` and `server` under `mechanism`.
    fn exchange(
        mut client: KeyedScramClient,
        mut server: ScramServer,
        mechanism: &str,
    ) -> Result<(), String> {
        let first = server
            .client_first(mechanism, &client.first())
            .map_err(|e| e.to_string())?;
        let last = client.update(&first).map_err(|e| e.to_string())?;
        let (reply, _) = server.client_final(&last).map_err(|e| e.to_string())?;
        client.finish(&reply).map_err(|e| e.to_string())
    }

    #[test]
    fn recovered_key_logs_in_without_the_password() {
        let v = verifier("s3cret");
        let key = recover(&v, "s3cret");
        assert_eq!(pass_through(&v, key.clone(), &v), Ok(()));
        assert_eq!(format!("{key:?}"), "ScramClientKey(***)");
        let wrong = ScramClientKey([7; 32]);
        assert!(pass_through(&v, wrong, &v)
            .unwrap_err()
            .contains("wrong password"));
        let other = verifier("s3cret");
        let err = pass_through(&v, key, &other).unwrap_err();
        assert!(err.contains("salt or iteration"), "{err}");
    }

    /// With SCRAM-SHA-256-PLUS the key proves the bound AuthMessage too; binding data that
    /// is not the server's (a relaying man in the middle) is refused.
    #[test]
    fn recovered_key_logs_in_with_channel_binding() {
        let v = verifier("s3cret");
        let key = recover(&v, "s3cret");
        let bound = |gs2: Gs2, end_point: Option<&[u8]>| {
            let mechanism = match gs2 {
                Gs2::EndPoint(_) => MECHANISM_PLUS,
                _ => MECHANISM,
            };
            let client = KeyedScramClient::new(v.clone(), key.clone(), gs2);
            let server = match end_point {
                Some(e) => ScramServer::with_channel_binding(v.clone(), e.to_vec()),
                None => ScramServer::new(v.clone()),
            };
            exchange(client, server, mechanism)
        };
        let end_point = [9u8; 32];
        assert_eq!(
            bound(Gs2::EndPoint(end_point.to_vec()), Some(&end_point)),
            Ok(())
        );
        assert_eq!(bound(Gs2::Unused, None), Ok(()));
        assert_eq!(bound(Gs2::Unsupported, Some(&end_point)), Ok(()));
        let relayed = bound(Gs2::EndPoint(vec![1; 32]), Some(&end_point));
        let err = relayed.expect_err("binding data not the server's");
        assert!(err.contains("channel-binding attribute"), "{err}");
    }

    #[test]
    fn server_must_prove_the_verifier() {
        let v = verifier("s3cret");
        let mut client = KeyedScramClient::new(v.clone(), recover(&v, "s3cret"), Gs2::Unsupported);
        assert_eq!(client.finish(b"v=AAAA"), Err(PassThroughError::Malformed));
        let mut server = ScramServer::new(v.clone());
        let first = server.client_first(MECHANISM, &client.first()).unwrap();
        client.update(&first).unwrap();
        let forged = format!("v={}", B64.encode([0u8; 32]));
        let err = client.finish(forged.as_bytes()).unwrap_err();
        assert_eq!(err, PassThroughError::BadServerSignature);
        let refused = client.finish(b"e=invalid-proof").unwrap_err();
        assert_eq!(refused, PassThroughError::Refused("invalid-proof".into()));
        for garbage in [&b""[..], b"r=x,s=!!,i=1", b"\xff", b"r=other,s=AA==,i=4096"] {
            assert!(client.update(garbage).is_err());
        }
    }

    #[test]
    fn credentials_keep_the_key_for_the_same_verifier_only() {
        let (v, other) = (verifier("a"), verifier("b"));
        let key = recover(&v, "a");
        let c = Credentials::default();
        assert_eq!(c.secret(), None);
        c.remember(&StoredSecret::Scram(v.clone()), Some(key.clone()));
        c.remember(&StoredSecret::Scram(v.clone()), None);
        assert_eq!(c.client_key(&v), Some(key));
        assert_eq!(c.client_key(&other), None);
        c.remember(&StoredSecret::Scram(other.clone()), None);
        assert_eq!(c.client_key(&v), None);
        assert_eq!(c.secret(), Some(StoredSecret::Scram(other.clone())));
        assert_eq!(format!("{c:?}"), "Credentials(***)");
        let ring = Keyring::default();
        assert!(Arc::ptr_eq(&ring.of("db", "u"), &ring.of("db", "u")));
    }

    /// Per database: another verifier elsewhere leaves a database's key alone; the same
    /// verifier elsewhere shares it, whichever database proved it first.
    #[test]
    fn keyring_shares_a_key_only_for_the_same_verifier() {
        let (v, other) = (verifier("a"), verifier("b"));
        let (sv, sother) = (
            StoredSecret::Scram(v.clone()),
            StoredSecret::Scram(other.clone()),
        );
        let key = recover(&v, "a");
        let ring = Keyring::default();
        ring.remember("early", "u", &sv, None);
        ring.remember("db", "u", &sv, Some(key.clone()));
        ring.remember("twin", "u", &sother, None);
        assert_eq!(ring.of("db", "u").client_key(&v), Some(key.clone()));
        assert_eq!(ring.of("early", "u").client_key(&v), Some(key.clone()));
        assert_eq!(ring.of("twin", "u").client_key(&other), None);
        ring.remember("late", "u", &sv, None);
        assert_eq!(ring.of("late", "u").client_key(&v), Some(key));
        assert_eq!(ring.of("db", "other_user").client_key(&v), None);
    }
}

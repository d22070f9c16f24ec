//! SCRAM-SHA-256 key derivation (RFC 5802 §3): the verifier pgweir makes from a plaintext
//! secret, the check of a cleartext password against a stored verifier (which also yields the
//! ClientKey, so `password` clients teach [`super::passthrough`] the key SCRAM clients reveal
//! in their proofs), and the HMAC that [`super::scram`] and [`super::passthrough`] sign with.
//! Pure: no I/O; randomness only for salts.

use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use subtle::ConstantTimeEq;

use super::passthrough::ScramClientKey;
use super::{ScramVerifier, StoredSecret};

/// Postgres' default `scram_iterations`, used for verifiers derived from plaintext secrets.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Postgres' `SCRAM_DEFAULT_SALT_LEN`.
const SALT_LEN: usize = 16;

/// The keys one password, salt and iteration count derive.
struct Keys {
    client_key: [u8; 32],
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

/// The verifier to run SCRAM against, or `None` when the secret cannot do SCRAM: an md5 hash
/// (no way back to the password), or an empty plaintext password (Postgres never accepts one).
/// A plaintext secret gets a fresh random salt and [`DEFAULT_ITERATIONS`] each call, which
/// costs a PBKDF2 run; callers that authenticate often may keep the result.
pub fn verifier_for(secret: &StoredSecret) -> Option<ScramVerifier> {
    match secret {
        StoredSecret::Scram(verifier) => Some(verifier.clone()),
        StoredSecret::Plain(password) if !password.is_empty() => {
            let mut salt = vec![0; SALT_LEN];
            rand::thread_rng().fill_bytes(&mut salt);
            let keys = derive_keys(password.as_bytes(), &salt, DEFAULT_ITERATIONS);
            Some(ScramVerifier {
                iterations: DEFAULT_ITERATIONS,
                salt,
                stored_key: keys.stored_key,
                server_key: keys.server_key,
            })
        }
        StoredSecret::Plain(_) | StoredSecret::Md5(_) => None,
    }
}

/// The ClientKey of a cleartext password that is the one `verifier` was made from, as
/// Postgres checks `password` auth against a SCRAM secret; `None` for any other password.
/// Compares in constant time.
pub fn password_client_key(verifier: &ScramVerifier, password: &[u8]) -> Option<ScramClientKey> {
    let keys = derive_keys(password, &verifier.salt, verifier.iterations);
    let stored = keys.stored_key.ct_eq(&verifier.stored_key);
    let server = keys.server_key.ct_eq(&verifier.server_key);
    bool::from(stored & server).then_some(ScramClientKey(keys.client_key))
}

/// The keys for a password, salt and iteration count. The password goes through SASLprep
/// when it can, and is used raw when it is not UTF-8 or has prohibited characters, as
/// Postgres and libpq do, so our keys match theirs.
fn derive_keys(password: &[u8], salt: &[u8], iterations: u32) -> Keys {
    let prepared = std::str::from_utf8(password)
        .ok()
        .and_then(|p| stringprep::saslprep(p).ok())
        .map_or(Cow::Borrowed(password), |p| match p {
            Cow::Borrowed(p) => Cow::Borrowed(p.as_bytes()),
            Cow::Owned(p) => Cow::Owned(p.into_bytes()),
        });
    let mut salted = [0; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&prepared, salt, iterations, &mut salted);
    let client_key = hmac(&salted, &[b"Client Key"]);
    Keys {
        client_key,
        stored_key: Sha256::digest(client_key).into(),
        server_key: hmac(&salted, &[b"Server Key"]),
    }
}

/// HMAC-SHA-256 of the concatenated `parts` under a 32-byte key. RFC 2104 zero-pads a key to
/// the 64-byte block, so padding it here gives the same MAC through the infallible
/// block-sized constructor instead of a `new_from_slice` whose error cannot happen.
pub(super) fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = Key::<Hmac<Sha256>>::default();
    block[..key.len()].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block);
    parts.iter().for_each(|part| mac.update(part));
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::password::scram_sha_256;

    /// RFC 7677's example: password "pencil" and the verifier it makes.
    const RFC_SECRET: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
        WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    fn scram(secret: &str) -> ScramVerifier {
        match StoredSecret::parse(secret) {
            Ok(StoredSecret::Scram(verifier)) => verifier,
            _ => panic!("not a SCRAM secret"),
        }
    }

    #[test]
    fn derived_keys_match_postgres_protocol() {
        let rfc = scram(RFC_SECRET);
        assert!(password_client_key(&rfc, b"pencil").is_some());
        let passwords: [&[u8]; 4] = [b"s3cret", "a\u{00A0}b\u{00AD}".as_bytes(), b"\xff", b""];
        for password in passwords {
            let theirs = scram(&scram_sha_256(password));
            let ours = derive_keys(password, &theirs.salt, theirs.iterations);
            assert!((ours.stored_key, ours.server_key) == (theirs.stored_key, theirs.server_key));
            let key = password_client_key(&theirs, password).expect("the right password");
            assert!(<[u8; 32]>::from(Sha256::digest(key.0)) == theirs.stored_key);
            assert!(password_client_key(&theirs, b"wrong").is_none());
        }
    }

    #[test]
    fn verifier_for_each_form() {
        let md5 = StoredSecret::parse(&("md5".to_string() + &"a".repeat(32))).unwrap();
        assert!(verifier_for(&md5).is_none());
        assert!(verifier_for(&StoredSecret::Plain(String::new())).is_none());
        let rfc = StoredSecret::Scram(scram(RFC_SECRET));
        assert!(verifier_for(&rfc) == Some(scram(RFC_SECRET)));
        let plain = StoredSecret::Plain("x".into());
        let (v, again) = (verifier_for(&plain).unwrap(), verifier_for(&plain).unwrap());
        assert_eq!((v.iterations, v.salt.len()), (DEFAULT_ITERATIONS, SALT_LEN));
        assert!(v.salt != again.salt);
    }
}

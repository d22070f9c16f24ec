//! md5 and cleartext password checks as Postgres does them (AuthenticationMD5Password and
//! AuthenticationCleartextPassword), against any form of [`StoredSecret`].
//!
//! Both take the PasswordMessage body *without* its terminating NUL: [`crate::client`] strips
//! it, and refuses a body with an embedded NUL as a protocol violation (08P01) as Postgres
//! does, so the bytes here are exactly what the client sent. A `false` is a wrong password
//! (28P01). Comparisons run in constant time.

use ::md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::keys;
use super::passthrough::ScramClientKey;
use super::StoredSecret;

/// Whether `response` is `"md5" + hex(md5(hex(md5(password + user)) + salt))` for the stored
/// password. A SCRAM verifier cannot answer md5 (Postgres switches to SCRAM for such users;
/// that choice is the caller's), and an empty plaintext password matches nothing, as Postgres
/// never stores one.
pub fn md5_response_matches(
    secret: &StoredSecret,
    user: &str,
    salt: [u8; 4],
    response: &[u8],
) -> bool {
    let hashed = match secret {
        StoredSecret::Plain(password) if !password.is_empty() => {
            md5_hex(&[password.as_bytes(), user.as_bytes()])
        }
        StoredSecret::Md5(hex) => hex.clone(),
        StoredSecret::Plain(_) | StoredSecret::Scram(_) => return false,
    };
    let expected = format!("md5{}", md5_hex(&[hashed.as_bytes(), &salt]));
    expected.as_bytes().ct_eq(response).into()
}

/// Whether a cleartext `password` matches the stored secret in whatever form it has: equal to
/// a plaintext one, hashing with `user` to an md5 one, or deriving a SCRAM verifier's keys
/// with its salt and iterations. An empty password never matches, as Postgres refuses it, nor
/// does one with a NUL, which Postgres cannot receive and HMAC cannot tell from one without.
pub fn cleartext_matches(secret: &StoredSecret, user: &str, password: &[u8]) -> bool {
    cleartext_check(secret, user, password).is_some()
}

/// [`cleartext_matches`], keeping what a match teaches: against a SCRAM verifier the
/// derivation that checks the password also yields its ClientKey (`Some(Some(key))`), with
/// which pass-through logs in to Postgres as it does with the key a SCRAM client's proof
/// reveals. `None` is no match.
pub fn cleartext_check(
    secret: &StoredSecret,
    user: &str,
    password: &[u8],
) -> Option<Option<ScramClientKey>> {
    if password.is_empty() || password.contains(&0) {
        return None;
    }
    let equal = |a: &[u8], b: &[u8]| bool::from(a.ct_eq(b)).then_some(None);
    match secret {
        StoredSecret::Plain(stored) => equal(stored.as_bytes(), password),
        StoredSecret::Md5(hex) => equal(
            md5_hex(&[password, user.as_bytes()]).as_bytes(),
            hex.as_bytes(),
        ),
        StoredSecret::Scram(verifier) => keys::password_client_key(verifier, password).map(Some),
    }
}

/// Lowercase hex md5 of the concatenated `parts`, the form Postgres hashes and compares.
fn md5_hex(parts: &[&[u8]]) -> String {
    let mut md5 = Md5::new();
    parts.iter().for_each(|part| md5.update(part));
    format!("{:x}", md5.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;
    use postgres_protocol::password;

    const SALT: [u8; 4] = [0x2a, 0x3d, 0x8f, 0xe0];

    fn stored(s: &str) -> StoredSecret {
        StoredSecret::parse(s).unwrap()
    }

    #[test]
    fn md5_response_from_plain_and_md5_secrets() {
        let check = |secret: &StoredSecret, salt, response: String| {
            md5_response_matches(secret, "alice", salt, response.as_bytes())
        };
        for secret in [stored("s3cret"), stored(&password::md5(b"s3cret", "alice"))] {
            assert!(check(&secret, SALT, md5_hash(b"alice", b"s3cret", SALT)));
            assert!(!check(&secret, SALT, md5_hash(b"alice", b"other", SALT)));
            assert!(!check(&secret, [0; 4], md5_hash(b"alice", b"s3cret", SALT)));
        }
        let bob = md5_hash(b"bob", b"s3cret", SALT);
        assert!(!check(&stored("s3cret"), SALT, bob));
    }

    #[test]
    fn md5_response_known_answer() {
        let secret = stored("password");
        let response = b"md562af4dd09bbb41884907a838a3233294";
        assert!(md5_response_matches(&secret, "md5_user", SALT, response));
    }

    #[test]
    fn md5_response_rejects_malformed_and_unusable() {
        let secret = stored("s3cret");
        let response = md5_hash(b"alice", b"s3cret", SALT);
        let with_nul = [response.as_bytes(), b"\0"].concat();
        let upper = response.to_ascii_uppercase();
        let bad: [&[u8]; 6] = [
            &with_nul,
            upper.as_bytes(),
            &response.as_bytes()[3..],
            &response.as_bytes()[..34],
            b"",
            b"\xff\xfe",
        ];
        for response in bad {
            assert!(!md5_response_matches(&secret, "alice", SALT, response));
        }
        let unusable = [
            (stored(&password::scram_sha_256(b"s3cret")), "s3cret"),
            (StoredSecret::Plain(String::new()), ""),
        ];
        for (secret, password) in unusable {
            let response = md5_hash(b"alice", password.as_bytes(), SALT);
            assert!(!md5_response_matches(
                &secret,
                "alice",
                SALT,
                response.as_bytes()
            ));
        }
    }

    #[test]
    fn cleartext_against_every_form() {
        for pw in ["s3cret", "pässwörd\u{00A0}", "I\u{00AD}X"] {
            let secrets = [
                stored(pw),
                stored(&password::md5(pw.as_bytes(), "alice")),
                stored(&password::scram_sha_256(pw.as_bytes())),
            ];
            for secret in &secrets {
                assert!(
                    cleartext_matches(secret, "alice", pw.as_bytes()),
                    "{secret:?}"
                );
                assert!(!cleartext_matches(secret, "alice", b"wrong"), "{secret:?}");
                let with_nul = [pw.as_bytes(), b"\0"].concat();
                assert!(!cleartext_matches(secret, "alice", &with_nul), "{secret:?}");
            }
            assert!(!cleartext_matches(&secrets[1], "bob", pw.as_bytes()));
        }
    }

    #[test]
    fn cleartext_scram_uses_saslprep_like_postgres() {
        // U+00A0 maps to a space and U+00AD to nothing, so these are the same password.
        let secret = stored(&password::scram_sha_256("a\u{00A0}b\u{00AD}".as_bytes()));
        assert!(cleartext_matches(&secret, "u", b"a b"));
        // Not UTF-8: used raw on both sides.
        let secret = stored(&password::scram_sha_256(b"\xff\xfe"));
        assert!(cleartext_matches(&secret, "u", b"\xff\xfe"));
        assert!(!cleartext_matches(&secret, "u", b"\xff"));
    }

    #[test]
    fn cleartext_refuses_empty_password() {
        for secret in [
            StoredSecret::Plain(String::new()),
            stored(&password::md5(b"", "alice")),
            stored(&password::scram_sha_256(b"")),
        ] {
            assert!(!cleartext_matches(&secret, "alice", b""));
        }
    }
}

//! Passwords and what stands for them, with no I/O: what pgweir stores about a user's
//! password (plaintext, an md5 hash or a SCRAM verifier, parsed here from the strings Postgres
//! itself uses, `md5<hex>`, `SCRAM-SHA-256$…`), [`scram`] the server side of the SASL
//! exchange ([`channel_binding`] its `-PLUS` checks), [`keys`] SCRAM keys derived from
//! passwords, [`md5`] md5 responses and cleartext passwords, [`userlist`] PgBouncer's auth
//! file, and [`passthrough`] what pgweir may log in to Postgres with when it has no plaintext
//! password. A leaf: the configuration, authentication and server logins all build on it.

pub mod channel_binding;
pub mod keys;
pub mod md5;
pub mod passthrough;
pub mod scram;
pub mod userlist;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use thiserror::Error;

/// A parsed SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

/// Shows the parameters, never the keys.
impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramVerifier(iterations={}, ***)", self.iterations)
    }
}

/// A user's secret in one of the three forms Postgres knows.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredSecret {
    Plain(String),
    /// The 32 lowercase hex digits after `md5`: md5(password || user).
    Md5(String),
    Scram(ScramVerifier),
}

/// Shows only which form a secret has, never its content.
impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = match self {
            StoredSecret::Plain(_) => "Plain",
            StoredSecret::Md5(_) => "Md5",
            StoredSecret::Scram(_) => "Scram",
        };
        write!(f, "StoredSecret::{form}(***)")
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("md5 secret must be \"md5\" followed by 32 hex digits")]
    BadMd5,
    #[error(
        "SCRAM verifier must look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
    )]
    BadScram,
}

impl StoredSecret {
    /// Reads a secret the way Postgres reads `rolpassword`: by its prefix.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        if let Some(rest) = s.strip_prefix("SCRAM-SHA-256$") {
            return parse_scram(rest).map(StoredSecret::Scram);
        }
        if let Some(hex) = s.strip_prefix("md5") {
            if hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(StoredSecret::Md5(hex.to_ascii_lowercase()));
            }
            if s.len() == 35 {
                return Err(SecretError::BadMd5);
            }
        }
        Ok(StoredSecret::Plain(s.to_owned()))
    }
}

impl StoredSecret {
    /// The secret as [`StoredSecret::parse`] reads it (Postgres's `rolpassword` forms).
    pub fn to_text(&self) -> String {
        match self {
            StoredSecret::Plain(p) => p.clone(),
            StoredSecret::Md5(hex) => format!("md5{hex}"),
            StoredSecret::Scram(v) => format!(
                "SCRAM-SHA-256${}:{}${}:{}",
                v.iterations,
                B64.encode(&v.salt),
                B64.encode(v.stored_key),
                B64.encode(v.server_key)
            ),
        }
    }
}

fn parse_scram(rest: &str) -> Result<ScramVerifier, SecretError> {
    let (params, keys) = rest.split_once('$').ok_or(SecretError::BadScram)?;
    let (iter, salt) = params.split_once(':').ok_or(SecretError::BadScram)?;
    let (stored, server) = keys.split_once(':').ok_or(SecretError::BadScram)?;
    // Postgres refuses a count below 1 or above INT_MAX; so does pgweir, rather than offer
    // clients `i=0`, which libpq rejects.
    let iterations = iter
        .parse::<u32>()
        .ok()
        .filter(|i| (1..=i32::MAX as u32).contains(i))
        .ok_or(SecretError::BadScram)?;
    let salt = B64.decode(salt).map_err(|_| SecretError::BadScram)?;
    let key = |k: &str| -> Result<[u8; 32], SecretError> {
        B64.decode(k)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SecretError::BadScram)
    };
    Ok(ScramVerifier {
        iterations,
        salt,
        stored_key: key(stored)?,
        server_key: key(server)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_reads_back_as_written() {
        let scram = "SCRAM-SHA-256$4096:c2FsdA==$\
                     AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:\
                     AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let md5 = "md5".to_string() + &"a".repeat(32);
        for text in ["secret", &md5, scram] {
            assert_eq!(StoredSecret::parse(text).unwrap().to_text(), text);
        }
    }

    #[test]
    fn parses_each_form() {
        assert_eq!(
            StoredSecret::parse("secret").unwrap(),
            StoredSecret::Plain("secret".into())
        );
        let md5 = "md5".to_string() + &"A".repeat(32);
        assert_eq!(
            StoredSecret::parse(&md5).unwrap(),
            StoredSecret::Md5("a".repeat(32))
        );
        let v = "SCRAM-SHA-256$4096:c2FsdA==$\
                 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:\
                 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        match StoredSecret::parse(v).unwrap() {
            StoredSecret::Scram(s) => {
                assert_eq!(s.iterations, 4096);
                assert_eq!(s.salt, b"salt");
                assert_eq!(s.server_key, [1; 32]);
            }
            _ => panic!("not scram"),
        }
        assert_eq!(
            StoredSecret::parse("SCRAM-SHA-256$x"),
            Err(SecretError::BadScram)
        );
        for count in ["0", "2147483648"] {
            let bad = v.replacen("4096", count, 1);
            assert_eq!(
                StoredSecret::parse(&bad),
                Err(SecretError::BadScram),
                "{count}"
            );
        }
        assert_eq!(
            StoredSecret::parse(&("md5".to_string() + &"z".repeat(32))),
            Err(SecretError::BadMd5)
        );
    }
}

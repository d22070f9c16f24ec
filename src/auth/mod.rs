//! Client authentication, all pure (no I/O): [`secret`] parses what is stored, [`scram`]
//! runs the server side of the SASL exchange ([`channel_binding`] its `-PLUS` checks), [`md5`] checks md5 responses and cleartext
//! passwords, and the [`UserDirectory`] holds every user's secret. The exchange itself
//! (reading and writing messages) is driven by [`crate::client::login`].

pub mod channel_binding;
pub mod md5;
pub mod scram;
pub mod secret;

use std::collections::HashMap;

use crate::config::Config;
use secret::{ScramVerifier, StoredSecret};

/// What pgweir knows about one user's password.
#[derive(Debug, Clone)]
pub struct UserSecret {
    pub secret: StoredSecret,
    /// Derived once at start from a plaintext password, so logins cost no PBKDF2.
    pub scram: Option<ScramVerifier>,
}

/// The users allowed to connect, by name.
#[derive(Debug, Default)]
pub struct UserDirectory {
    users: HashMap<String, Option<UserSecret>>,
}

impl UserDirectory {
    /// Parses every `[users]` secret (validation already happened when the config was read).
    pub fn from_config(config: &Config) -> Self {
        let users = config
            .users
            .iter()
            .map(|(name, u)| {
                let secret = u
                    .password
                    .as_ref()
                    .and_then(|p| StoredSecret::parse(p.expose()).ok())
                    .map(|secret| UserSecret {
                        scram: scram::verifier_for(&secret),
                        secret,
                    });
                (name.clone(), secret)
            })
            .collect();
        UserDirectory { users }
    }

    /// `None` for an unknown user; `Some(None)` for a known user without a password.
    pub fn get(&self, user: &str) -> Option<Option<&UserSecret>> {
        self.users.get(user).map(Option::as_ref)
    }
}

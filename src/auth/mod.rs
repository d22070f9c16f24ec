//! Who may log in, and with which secret: the [`UserDirectory`] holds every user's secret
//! from `[users]` and the auth file, and [`query`] asks Postgres for the secrets of the
//! other users (`auth_query`). The secrets and the exchanges that check them are
//! [`crate::secret`]'s; which exchange applies under `auth_type = "hba"` is
//! [`crate::hba`]'s. The exchange itself (reading and writing messages) is driven by
//! [`crate::client::authenticate`].

pub mod query;

use std::collections::HashMap;
use std::path::Path;

use crate::config::Config;
use crate::secret::{keys, userlist, ScramVerifier, StoredSecret};

/// What pgweir knows about one user's password.
#[derive(Debug, Clone)]
pub struct UserSecret {
    pub secret: StoredSecret,
    /// Derived once at start from a plaintext password, so logins cost no PBKDF2.
    pub scram: Option<ScramVerifier>,
}

impl UserSecret {
    /// Derives the SCRAM verifier of a plaintext secret once, here.
    pub fn new(secret: StoredSecret) -> Self {
        UserSecret {
            scram: keys::verifier_for(&secret),
            secret,
        }
    }
}

/// The users allowed to connect, by name.
#[derive(Debug, Default)]
pub struct UserDirectory {
    users: HashMap<String, Option<UserSecret>>,
    /// The auth file's users as last read, kept so a reload that cannot read the file keeps
    /// them instead of locking them out.
    file: Vec<(String, StoredSecret)>,
    /// See [`UserDirectory::mostly_scram`]; counted once per load.
    mostly_scram: bool,
}

impl UserDirectory {
    /// Parses every `[users]` secret (validation already happened when the config was read)
    /// and reads `auth_file` if one is set. A file that cannot be read or parsed is logged
    /// and replaced by `previous`'s file users (none at start).
    pub fn load(config: &Config, previous: Option<&UserDirectory>) -> Self {
        let file = match &config.pgweir.auth_sources.auth_file {
            None => Vec::new(),
            Some(path) => read_auth_file(path).unwrap_or_else(|error| {
                let kept = previous.map_or(0, |p| p.file.len());
                tracing::error!(path = %path.display(), %error, kept, "auth_file not loaded; keeping the users read before");
                previous.map(|p| p.file.clone()).unwrap_or_default()
            }),
        };
        Self::combine(config, file)
    }

    /// `[users]` and the file's users; a user with a password in both keeps its `[users]`
    /// one, while a `[users]` entry without one (pool keys only) takes the file's.
    fn combine(config: &Config, file: Vec<(String, StoredSecret)>) -> Self {
        let mut users: HashMap<String, Option<UserSecret>> = config
            .users
            .iter()
            .map(|(name, u)| {
                let secret = u
                    .password
                    .as_ref()
                    .and_then(|p| StoredSecret::parse(p.expose()).ok())
                    .map(UserSecret::new);
                (name.clone(), secret)
            })
            .collect();
        for (name, secret) in &file {
            if let Some(Some(_)) = users.get(name) {
                tracing::warn!(user = %name, "user is in both [users] and auth_file; [users] wins");
            } else {
                users.insert(name.clone(), Some(UserSecret::new(secret.clone())));
            }
        }
        let secrets = users.values().flatten();
        let scram = secrets
            .clone()
            .filter(|s| matches!(s.secret, StoredSecret::Scram(_)))
            .count();
        UserDirectory {
            mostly_scram: scram * 2 > secrets.count(),
            users,
            file,
        }
    }

    /// Every user's name, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// `None` for an unknown user; `Some(None)` for a known user without a password.
    pub fn get(&self, user: &str) -> Option<Option<&UserSecret>> {
        self.users.get(user).map(Option::as_ref)
    }

    /// Whether most users with a secret hold a SCRAM verifier (an auth file copied from
    /// `pg_authid`, say): an unknown user is then asked for SCRAM under `md5`, as they are.
    pub fn mostly_scram(&self) -> bool {
        self.mostly_scram
    }
}

/// Whether `auth_file`, if one is set, can be read and parsed: for `pgweir check`, since the
/// running pooler only logs a bad file.
pub fn check_auth_file(config: &Config) -> Result<(), String> {
    match &config.pgweir.auth_sources.auth_file {
        Some(path) => read_auth_file(path)
            .map(|_| ())
            .map_err(|e| format!("auth_file {}: {e}", path.display())),
        None => Ok(()),
    }
}

/// The auth file's users, or why it cannot be used (never showing a secret).
fn read_auth_file(path: &Path) -> Result<Vec<(String, StoredSecret)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    userlist::parse(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[pgweir]\n{extra}\n[databases.db]\nhost = \"h\"\n\
             [users.both]\npassword = \"from-toml\"\n[users.toml]\npassword = \"t\"\n\
             [users.keys_only]\npool_size = 3\n"
        );
        Config::parse(&text, &|_| None).expect("a valid config")
    }

    fn secret_of(dir: &UserDirectory, user: &str) -> Option<StoredSecret> {
        dir.get(user).flatten().map(|s| s.secret.clone())
    }

    #[test]
    fn file_users_join_and_toml_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("userlist.txt");
        let text = "\"both\" \"from-file\"\n\"filed\" \"f\"\n\"keys_only\" \"k\"\n";
        std::fs::write(&path, text).unwrap();
        let cfg = config(&format!("auth_file = {:?}", path.display().to_string()));
        let users = UserDirectory::load(&cfg, None);
        let plain = |s: &str| Some(StoredSecret::Plain(s.into()));
        assert_eq!(secret_of(&users, "both"), plain("from-toml"));
        assert_eq!(secret_of(&users, "filed"), plain("f"));
        assert_eq!(secret_of(&users, "toml"), plain("t"));
        assert_eq!(secret_of(&users, "keys_only"), plain("k"));
        assert!(users.get("filed").flatten().unwrap().scram.is_some());
        assert!(users.get("nobody").is_none());

        std::fs::write(&path, "broken line\n").unwrap();
        let kept = UserDirectory::load(&cfg, Some(&users));
        assert_eq!(secret_of(&kept, "filed"), plain("f"));
        std::fs::remove_file(&path).unwrap();
        assert!(UserDirectory::load(&cfg, None).get("filed").is_none());
        std::fs::write(&path, "").unwrap();
        assert!(UserDirectory::load(&cfg, Some(&users))
            .get("filed")
            .is_none());
    }
}

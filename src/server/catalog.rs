//! Which settings a server has and when they may be set (`pg_settings`' names and
//! contexts), read once per pool from its first server, so a client's startup parameters are
//! judged at login as Postgres judges them: an unknown name, or one only a restart or a
//! reload may change, refuses the login with Postgres's error instead of failing the
//! client's first query on some server later. Names with a dot are custom settings, which
//! Postgres takes without knowing them.

use std::collections::HashMap;
use std::fmt;

use crate::error::SqlState;

/// The query that reads the catalog.
pub const SQL: &str = "SELECT name, context FROM pg_catalog.pg_settings";

/// When a setting may change, as far as a client's startup packet is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// At connection start or later (`user`, `superuser`, `backend`, ...): the server
    /// judges the rest (a `superuser` setting for another user, say).
    Session,
    /// Only at server start (`postmaster`).
    Restart,
    /// Only in the configuration file (`sighup`).
    Reload,
    /// Never (`internal`).
    Fixed,
}

/// Setting names in lower case, with when each may change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingCatalog(HashMap<String, When>);

/// A startup parameter the server would refuse, with Postgres's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unknown(String),
    Restart(String),
    Reload(String),
    Fixed(String),
}

impl SettingCatalog {
    /// From the rows of [`SQL`].
    pub fn from_rows(rows: &[Vec<Option<String>>]) -> Self {
        let entries = rows.iter().filter_map(|row| {
            let (name, context) = (row.first()?.as_deref()?, row.get(1)?.as_deref()?);
            let when = match context {
                "postmaster" => When::Restart,
                "sighup" => When::Reload,
                "internal" => When::Fixed,
                _ => When::Session,
            };
            Some((name.to_ascii_lowercase(), when))
        });
        SettingCatalog(entries.collect())
    }

    /// Whether a client may ask for `name` in its startup packet.
    pub fn check(&self, name: &str) -> Result<(), Refusal> {
        if name.contains('.') {
            return Ok(());
        }
        match self.0.get(&name.to_ascii_lowercase()) {
            Some(When::Session) => Ok(()),
            Some(When::Restart) => Err(Refusal::Restart(name.to_owned())),
            Some(When::Reload) => Err(Refusal::Reload(name.to_owned())),
            Some(When::Fixed) => Err(Refusal::Fixed(name.to_owned())),
            None => Err(Refusal::Unknown(name.to_owned())),
        }
    }
}

impl Refusal {
    pub fn sqlstate(&self) -> SqlState {
        match self {
            Refusal::Unknown(_) => SqlState("42704"),
            _ => SqlState("55P02"),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown(n) => write!(f, "unrecognized configuration parameter \"{n}\""),
            Refusal::Restart(n) => write!(
                f,
                "parameter \"{n}\" cannot be changed without restarting the server"
            ),
            Refusal::Reload(n) => write!(f, "parameter \"{n}\" cannot be changed now"),
            Refusal::Fixed(n) => write!(f, "parameter \"{n}\" cannot be changed"),
        }
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_parameters_are_judged_as_postgres_judges_them() {
        let row = |n: &str, c: &str| vec![Some(n.to_owned()), Some(c.to_owned())];
        let catalog = SettingCatalog::from_rows(&[
            row("work_mem", "user"),
            row("extra_float_digits", "user"),
            row("shared_buffers", "postmaster"),
            row("log_destination", "sighup"),
            row("server_version", "internal"),
            row("session_replication_role", "superuser"),
        ]);
        assert_eq!(catalog.check("Work_Mem"), Ok(()));
        assert_eq!(catalog.check("app.tenant"), Ok(()), "custom settings");
        assert_eq!(
            catalog.check("session_replication_role"),
            Ok(()),
            "the server judges"
        );
        let refused = catalog.check("p0").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "unrecognized configuration parameter \"p0\""
        );
        assert_eq!(refused.sqlstate(), SqlState("42704"));
        let restart = catalog.check("shared_buffers").unwrap_err();
        assert_eq!(restart.sqlstate(), SqlState("55P02"));
        assert!(restart.to_string().contains("without restarting"));
        let fixed = catalog.check("server_version").unwrap_err();
        assert_eq!(
            fixed.to_string(),
            "parameter \"server_version\" cannot be changed"
        );
        let reload = catalog.check("log_destination").unwrap_err();
        assert!(reload.to_string().ends_with("cannot be changed now"));
    }
}

//! The session parameters a client expects, and bringing a server in line with them before
//! the client's first message on it. Parameters the server reports (ParameterStatus) are
//! compared with the server's last report, slot by slot ([`TRACKED`]); other settings (from
//! the startup packet, or read back after the client changed them, see [`super::state`]) are
//! compared with what pgweir last set or read on that server. Differences are fixed in one
//! round trip. This runs every time a client gets a server, so the common case (nothing
//! differs) is a handful of string comparisons.

use super::state::literal;
use crate::server::catalog::{Refusal, SettingCatalog};
use crate::server::{tracked_slot, ServerConn, ServerError, ServerParams, TRACKED};

/// What one client's session should look like.
#[derive(Debug, Clone, Default)]
pub struct ClientParams {
    /// Reported parameters as the client believes them to be.
    pub reported: ServerParams,
    /// Other settings, sorted by name: from the startup packet (including `options`) until
    /// the client changes any, then as read back from the server after that transaction.
    pub other: Vec<(String, String)>,
}

impl ClientParams {
    /// Starts from the pool's defaults and applies the client's startup settings.
    pub fn new(defaults: &ServerParams, startup: &[(String, String)]) -> Self {
        let mut p = ClientParams {
            reported: defaults.clone(),
            other: Vec::new(),
        };
        for (k, v) in startup {
            match tracked_slot(k) {
                Some(i) => p.reported.set(TRACKED[i], v),
                None => p.other.push((k.clone(), v.clone())),
            }
        }
        p.other.sort();
        p
    }

    /// The SQL that makes `server` match this client, or `None` when it already does.
    /// Values are set with `set_config`, which takes them exactly as Postgres reported them
    /// (a list such as `search_path` included), as a startup packet would.
    fn sync_sql(&self, server: &ServerConn) -> Option<String> {
        let mut sets = Vec::new();
        let mut resets = String::new();
        for (i, name) in TRACKED.iter().enumerate() {
            if let Some(want) = self.reported.tracked(i) {
                if server.params.tracked(i) != Some(want) {
                    sets.push(set_config(name, want));
                }
            }
        }
        if self.other != server.applied {
            // `role` goes last: other settings may need the privileges of the login role.
            let (roles, others): (Vec<_>, Vec<_>) = self
                .other
                .iter()
                .partition(|(k, _)| k.eq_ignore_ascii_case("role"));
            for (k, v) in others.into_iter().chain(roles) {
                if !server
                    .applied
                    .iter()
                    .any(|(a, av)| a.eq_ignore_ascii_case(k) && av == v)
                {
                    sets.push(set_config(k, v));
                }
            }
            for (k, _) in &server.applied {
                if !self.other.iter().any(|(o, _)| o.eq_ignore_ascii_case(k)) {
                    resets.push_str(&format!("RESET {};", quote_ident(k)));
                }
            }
        }
        if sets.is_empty() && resets.is_empty() {
            return None;
        }
        let mut sql = resets;
        if !sets.is_empty() {
            sql.push_str(&format!("SELECT {};", sets.join(", ")));
        }
        Some(sql)
    }

    /// Brings `server` in line; afterwards reported values are as the server spells them.
    pub async fn apply_to(&mut self, server: &mut ServerConn) -> Result<(), ServerError> {
        let Some(sql) = self.sync_sql(server) else {
            return Ok(());
        };
        server.run_internal(&sql).await?;
        server.applied.clone_from(&self.other);
        for (i, name) in TRACKED.iter().enumerate() {
            if let (Some(_), Some(now)) = (self.reported.tracked(i), server.params.tracked(i)) {
                let now = now.to_owned();
                self.reported.set(name, &now);
            }
        }
        Ok(())
    }
}

/// Checks a client's startup settings against the server's `catalog` (when one is known),
/// as Postgres would judge them at login.
pub fn judge(
    settings: &[(String, String)],
    catalog: Option<&SettingCatalog>,
) -> Result<(), Refusal> {
    let Some(catalog) = catalog else {
        return Ok(());
    };
    settings.iter().try_for_each(|(k, _)| catalog.check(k))
}

fn set_config(name: &str, value: &str) -> String {
    format!(
        "pg_catalog.set_config({}, {}, false)",
        literal(name),
        literal(value)
    )
}

/// Quotes a parameter name; dotted custom names (`app.x`) are quoted part by part.
fn quote_ident(name: &str) -> String {
    name.split('.')
        .map(postgres_protocol::escape::escape_identifier)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_settings_split_into_reported_and_other() {
        let mut defaults = ServerParams::default();
        defaults.set("TimeZone", "UTC");
        let p = ClientParams::new(
            &defaults,
            &[
                ("timezone".into(), "Europe/Paris".into()),
                ("search_path".into(), "a".into()),
            ],
        );
        assert_eq!(p.reported.get("TimeZone"), Some("Europe/Paris"));
        assert_eq!(p.other, vec![("search_path".into(), "a".into())]);
    }

    #[test]
    fn quoting_defeats_injection() {
        assert_eq!(
            set_config("search_path", "x'; DROP TABLE t; --"),
            "pg_catalog.set_config('search_path', 'x''; DROP TABLE t; --', false)"
        );
        assert_eq!(quote_ident("a.b\""), "\"a\".\"b\"\"\"");
    }
}

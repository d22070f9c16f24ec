//! The console's `SET key = value`, as PgBouncer has it: a key of the configuration's key
//! table ([`Key`], what SHOW CONFIG lists) that a reload may change, its value written as
//! PgBouncer takes it for PgBouncer's keys (seconds as numbers, booleans as 0/1 or on/off,
//! lists comma-separated) or as the config file has it for pgweir's own. It is put in force
//! at once, as a reload of the file with that line changed would be, and lasts until the
//! next reload reads the file again: the text of the configuration in force is what is
//! edited ([`App::edit_source`]), so SHOW CONFIG shows the new value and a later SET keeps
//! the earlier ones.

use toml_edit::DocumentMut;

use super::Refusal;
use crate::app::App;
use crate::config::{Key, Reload};
use crate::convert::pgbouncer_value;
use crate::error::SqlState;

const UNDEFINED_OBJECT: SqlState = SqlState("42704");
const CANT_CHANGE_RUNTIME_PARAM: SqlState = SqlState("55P02");
const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");

/// Sets `key` to `raw`; returns the reload's notes.
pub fn set(app: &App, key: &str, raw: &str) -> Result<Vec<String>, Refusal> {
    let Some(setting) = Key::named(key) else {
        let message = format!("unrecognized configuration parameter \"{key}\"");
        return Err(Refusal::new(UNDEFINED_OBJECT, message));
    };
    if setting.reload == Reload::Restart {
        let message = format!("parameter \"{key}\" cannot be changed without restarting pgweir");
        return Err(Refusal::new(CANT_CHANGE_RUNTIME_PARAM, message));
    }
    let invalid = |why: String| {
        let message = format!("invalid value for parameter \"{key}\": {why}");
        Refusal::new(INVALID_PARAMETER_VALUE, message)
    };
    let value = pgbouncer_value(setting, raw)
        .unwrap_or_else(|| Ok(plain_value(raw)))
        .map_err(invalid)?;
    let section = setting.section.name();
    app.edit_source(|text| with_setting(text, section, key, &value))
        .map_err(invalid)
}

/// A value for one of pgweir's own keys: a whole number or `true`/`false` as such, anything
/// else a string (durations such as `"30s"`, names).
fn plain_value(raw: &str) -> String {
    if raw.parse::<i64>().is_ok() || raw == "true" || raw == "false" {
        raw.to_owned()
    } else {
        toml_edit::Value::from(raw).to_string()
    }
}

/// `text` with `key = value` (a TOML value) in the table `section`.
fn with_setting(text: &str, section: &str, key: &str, value: &str) -> Result<String, String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let parsed: DocumentMut = format!("v = {value}").parse().map_err(|e| format!("{e}"))?;
    let item = parsed.get("v").cloned().ok_or("no value")?;
    let table = doc
        .entry(section)
        .or_insert_with(toml_edit::table)
        .as_table_like_mut()
        .ok_or_else(|| format!("[{section}] is not a table"))?;
    table.insert(key, item);
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_written_into_its_table_and_the_rest_kept() {
        let text = "# mine\n[pgweir]\nlisten_port = 1\n\n[pool]\ndefault_pool_size = 5 # five\n";
        let out = with_setting(text, "pool", "default_pool_size", "30").unwrap();
        assert!(out.contains("default_pool_size = 30"), "{out}");
        assert!(
            out.starts_with("# mine\n[pgweir]\nlisten_port = 1\n"),
            "{out}"
        );
        let out = with_setting(
            "[databases.d]\nhost = \"h\"\n",
            "pool",
            "query_timeout",
            "\"2s\"",
        )
        .unwrap();
        let back: DocumentMut = out.parse().unwrap();
        assert_eq!(back["pool"]["query_timeout"].as_str(), Some("2s"));
    }

    #[test]
    fn own_values_keep_their_type() {
        assert_eq!(plain_value("30"), "30");
        assert_eq!(plain_value("true"), "true");
        assert_eq!(plain_value("100ms"), "\"100ms\"");
        assert_eq!(plain_value("a\"b"), "'a\"b'");
    }
}

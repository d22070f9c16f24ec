//! `${NAME}` substitution in config string values, so secrets can come from the
//! environment instead of the file. It runs on already-parsed TOML strings, so a value
//! containing quotes or newlines cannot change the file's structure.

use thiserror::Error;

/// Why a string could not be expanded. Never contains the string itself, which may be
/// a password.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("\"${{\" without a closing \"}}\"")]
    Unterminated,
    #[error("\"${{}}\" needs a variable name")]
    EmptyName,
}

/// Replaces every `${NAME}` with `lookup(NAME)`. A `$` not followed by `{` is kept as
/// is; substituted text is not expanded again.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(EnvError::Unterminated)?;
        let name = &after[..end];
        if name.is_empty() {
            return Err(EnvError::EmptyName);
        }
        let value = lookup(name).ok_or_else(|| EnvError::Unset(name.to_owned()))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cret".into()),
            "NESTED" => Some("${PW}".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_variables() {
        assert_eq!(expand("${PW}", &env), Ok("s3cret".into()));
        assert_eq!(expand("a${PW}b${PW}", &env), Ok("as3cretbs3cret".into()));
        assert_eq!(expand("${NESTED}", &env), Ok("${PW}".into()));
    }

    #[test]
    fn lone_dollars_are_literal() {
        assert_eq!(expand("pa$$word$", &env), Ok("pa$$word$".into()));
        assert_eq!(expand("$PW {x}", &env), Ok("$PW {x}".into()));
    }

    #[test]
    fn reports_bad_references() {
        assert_eq!(expand("${NOPE}", &env), Err(EnvError::Unset("NOPE".into())));
        assert_eq!(expand("x${PW", &env), Err(EnvError::Unterminated));
        assert_eq!(expand("${}", &env), Err(EnvError::EmptyName));
    }
}

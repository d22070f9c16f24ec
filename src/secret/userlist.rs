//! PgBouncer's `auth_file` format (`userlist.txt`), so an operator can reuse theirs: one
//! `"user" "secret"` pair per line, a doubled `""` standing for a quote inside either, blank
//! lines and lines starting with `;` or `#` ignored, anything after the secret ignored. The
//! secret is plaintext, `md5<hex>` or a `SCRAM-SHA-256$` verifier ([`StoredSecret`]).
//! Pure: [`crate::auth::UserDirectory`] reads the file and hands the text here.

use thiserror::Error;

use super::StoredSecret;

/// Why a file was refused: the line and what is wrong there, never the secret itself.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct UserlistError {
    pub line: usize,
    pub reason: String,
}

/// Every user of the file with its secret, in file order (a later line for the same user
/// replaces an earlier one when collected into a map). One bad line refuses the whole file,
/// so a typo cannot silently lock out the users after it.
pub fn parse(text: &str) -> Result<Vec<(String, StoredSecret)>, UserlistError> {
    let mut users = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let fail = |reason: &str| UserlistError {
            line: i + 1,
            reason: reason.to_owned(),
        };
        let (user, rest) = quoted(line).ok_or_else(|| fail("expected \"user\" \"secret\""))?;
        let (secret, _) = quoted(rest.trim_start())
            .ok_or_else(|| fail("expected a quoted secret after the user name"))?;
        if user.is_empty() {
            return Err(fail("empty user name"));
        }
        let secret = StoredSecret::parse(&secret).map_err(|e| fail(&e.to_string()))?;
        users.push((user, secret));
    }
    Ok(users)
}

/// Reads one `"..."` field at the start of `s` (with `""` meaning `"`), returning its value
/// and what follows the closing quote.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut rest = s.strip_prefix('"')?;
    let mut value = String::new();
    loop {
        let end = rest.find('"')?;
        value.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('"') {
            Some(after) => {
                value.push('"');
                rest = after;
            }
            None => return Some((value, rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAM: &str = "SCRAM-SHA-256$4096:c2FsdA==$\
                         AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:\
                         AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn reads_every_form_comments_and_escapes() {
        let md5 = format!("md5{}", "ab".repeat(16));
        let text = format!(
            "; PgBouncer comment\n# shell comment\n\n  \"alice\" \"s3cret\"\n\
             \"bob\"   \"{md5}\" \"ignored extra\"\n\"carol\" \"{SCRAM}\"\n\
             \"o\"\"neil\" \"pa\"\"ss\"\r\n\"empty\" \"\"\n"
        );
        let users = parse(&text).unwrap();
        let names: Vec<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "o\"neil", "empty"]);
        assert_eq!(users[0].1, StoredSecret::Plain("s3cret".into()));
        assert!(matches!(users[1].1, StoredSecret::Md5(_)));
        assert!(matches!(users[2].1, StoredSecret::Scram(_)));
        assert_eq!(users[3].1, StoredSecret::Plain("pa\"ss".into()));
        assert_eq!(users[4].1, StoredSecret::Plain(String::new()));
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn refuses_broken_lines_without_showing_secrets() {
        let cases = [
            ("alice s3cret", 1),
            ("\"alice\" s3cret", 1),
            ("\"alice\" \"s3cret", 1),
            ("\"alice\"", 1),
            ("\"alice", 1),
            ("\"ok\" \"x\"\n\"\" \"s3cret\"", 2),
            ("\"ok\" \"x\"\n\n\"bad\" \"SCRAM-SHA-256$s3cret\"", 3),
            ("\"bad\" \"md5zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"", 1),
        ];
        for (text, line) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "\"",
            "\"\"",
            "\"\"\"",
            "\"a\"\"",
            "\"a\" \"",
            "\u{feff}\"a\" \"b\"",
        ] {
            let _ = parse(text);
        }
    }
}

//! Which custom settings (`app.tenant`, `myext.mode`) a text sets, by name. Postgres lists
//! every built-in setting a session changed in `pg_settings`, but not custom placeholders,
//! so the relay asks for those by the names collected here.

use super::lexer::{Token, TokenKind};
use super::statements::Statements;

/// Dotted setting names in `SET [SESSION] a.b ...`, `RESET a.b` and `set_config('a.b', ...)`,
/// lowercased as Postgres folds them.
pub fn custom_setting_names(sql: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut stmts = Statements::new(sql);
    while stmts.next_statement() {
        let mut first = true;
        let mut prev: Option<Token<'_>> = None;
        while let Some(tok) = stmts.next_token() {
            if first && (tok.is_keyword("set") || tok.is_keyword("reset")) {
                if let Some(name) = dotted_name(&mut stmts) {
                    names.push(name);
                }
                break;
            }
            first = false;
            if tok.kind == TokenKind::LParen && prev.is_some_and(|p| p.names("set_config")) {
                if let Some(name) = stmts.next_token().and_then(string_literal) {
                    names.push(name);
                }
            }
            prev = Some(tok);
        }
    }
    names.retain(|n| n.contains('.'));
    names
}

/// The statement name of a text that is exactly one `DEALLOCATE [PREPARE] name`, as the
/// server folds it; `None` for anything else (including `DEALLOCATE ALL`).
pub fn deallocated_name(sql: &[u8]) -> Option<String> {
    let mut stmts = Statements::new(sql);
    stmts.next_statement();
    if !stmts.next_token()?.is_keyword("deallocate") {
        return None;
    }
    let mut tok = stmts.next_token()?;
    if tok.is_keyword("prepare") {
        tok = stmts.next_token()?;
    }
    if tok.is_keyword("all") || stmts.next_token().is_some() {
        return None;
    }
    let name = ident(&tok)?;
    // Only empty statements may follow.
    while stmts.next_statement() {
        if stmts.next_token().is_some() {
            return None;
        }
    }
    Some(name)
}

/// `ident(.ident)*` right after SET/RESET (skipping SESSION), as the server would name it.
fn dotted_name(stmts: &mut Statements<'_>) -> Option<String> {
    let mut tok = stmts.next_token()?;
    if tok.is_keyword("session") {
        tok = stmts.next_token()?;
    }
    let mut name = ident(&tok)?;
    while let Some(next) = stmts.next_token() {
        if next.kind != TokenKind::Dot {
            break;
        }
        name.push('.');
        name.push_str(&ident(&stmts.next_token()?)?);
    }
    Some(name)
}

fn ident(tok: &Token<'_>) -> Option<String> {
    let text = String::from_utf8_lossy(tok.ident_text()?).into_owned();
    Some(match tok.kind {
        TokenKind::Ident => text.to_ascii_lowercase(),
        _ => text.replace("\"\"", "\""),
    })
}

/// The value of a plain `'...'` literal; other string forms are not names in practice.
fn string_literal(tok: Token<'_>) -> Option<String> {
    let inner = tok.text.strip_prefix(b"'")?.strip_suffix(b"'")?;
    Some(String::from_utf8_lossy(inner).replace("''", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_dotted_names_set_reset_and_set_config() {
        let sql = b"SET app.Tenant = 1; set session \"My\".x TO 'a'; RESET app.other; \
                    SELECT pg_catalog.set_config('app.user', '7', false); SET search_path = a";
        assert_eq!(
            custom_setting_names(sql),
            ["app.tenant", "My.x", "app.other", "app.user"]
        );
    }

    #[test]
    fn a_lone_deallocate_names_its_statement() {
        assert_eq!(
            deallocated_name(b"DEALLOCATE _pg3_0").as_deref(),
            Some("_pg3_0")
        );
        assert_eq!(
            deallocated_name(b"deallocate prepare \"S 1\";").as_deref(),
            Some("S 1")
        );
        assert_eq!(deallocated_name(b"DEALLOCATE Abc").as_deref(), Some("abc"));
        for other in [
            &b"DEALLOCATE ALL"[..],
            b"DEALLOCATE a; SELECT 1",
            b"SELECT 1",
            b"DEALLOCATE",
        ] {
            assert_eq!(deallocated_name(other), None);
        }
    }

    #[test]
    fn ignores_names_inside_strings_and_plain_settings() {
        assert!(custom_setting_names(b"SELECT 'SET app.x = 1'; SET work_mem = '1MB'").is_empty());
    }
}

//! The lexer and the statement splitter: token boundaries, the literal forms that hide
//! keywords, and unterminated input.

use crate::sql::{Lexer, Statements, TokenKind};

use TokenKind::{
    Comma, Dot, Ident, LParen, Number, Operator, Other, Param, QuotedIdent, RParen, Semicolon,
    String as Str,
};

fn tokens(sql: &str) -> Vec<(TokenKind, String)> {
    tokens_of(sql.as_bytes())
}

fn tokens_of(sql: &[u8]) -> Vec<(TokenKind, String)> {
    Lexer::new(sql)
        .map(|t| (t.kind, String::from_utf8_lossy(t.text).into_owned()))
        .collect()
}

fn kinds(sql: &str) -> Vec<TokenKind> {
    tokens(sql).into_iter().map(|(k, _)| k).collect()
}

fn t(kind: TokenKind, text: &str) -> (TokenKind, String) {
    (kind, text.to_owned())
}

/// The token texts of each statement.
fn statements(sql: &str) -> Vec<Vec<String>> {
    let mut s = Statements::new(sql.as_bytes());
    let mut out = Vec::new();
    while s.next_statement() {
        let mut stmt = Vec::new();
        while let Some(t) = s.next_token() {
            stmt.push(String::from_utf8_lossy(t.text).into_owned());
        }
        out.push(stmt);
    }
    out
}

#[test]
fn basic_tokens() {
    assert_eq!(
        tokens("SELECT a.b, f(1.5e-3) FROM t WHERE x<>$1;"),
        vec![
            t(Ident, "SELECT"),
            t(Ident, "a"),
            t(Dot, "."),
            t(Ident, "b"),
            t(Comma, ","),
            t(Ident, "f"),
            t(LParen, "("),
            t(Number, "1.5e-3"),
            t(RParen, ")"),
            t(Ident, "FROM"),
            t(Ident, "t"),
            t(Ident, "WHERE"),
            t(Ident, "x"),
            t(Operator, "<>"),
            t(Param, "$1"),
            t(Semicolon, ";"),
        ]
    );
}

#[test]
fn numbers() {
    assert_eq!(kinds("1 .5 1. 1e5 1E+5"), vec![Number; 5]);
    assert_eq!(
        tokens("1..x"),
        vec![t(Number, "1"), t(Dot, "."), t(Dot, "."), t(Ident, "x")]
    );
    assert_eq!(tokens("1e"), vec![t(Number, "1"), t(Ident, "e")]);
    assert_eq!(tokens("0x1F"), vec![t(Number, "0"), t(Ident, "x1F")]);
}

#[test]
fn comments_are_skipped() {
    assert_eq!(
        tokens("a -- LISTEN x\nb"),
        vec![t(Ident, "a"), t(Ident, "b")]
    );
    assert_eq!(tokens("a --\r\nb"), vec![t(Ident, "a"), t(Ident, "b")]);
    assert_eq!(tokens("a /* x */ b"), vec![t(Ident, "a"), t(Ident, "b")]);
    assert_eq!(
        tokens("a /* /* */ LISTEN */ b"),
        vec![t(Ident, "a"), t(Ident, "b")]
    );
    assert_eq!(
        tokens("a /**/ b /* **/ c"),
        vec![t(Ident, "a"), t(Ident, "b"), t(Ident, "c")]
    );
    assert_eq!(tokens("/*/ x */ y"), vec![t(Ident, "y")]);
    assert!(tokens("-- only\n/* comments */").is_empty());
}

#[test]
fn operators_stop_before_comments() {
    assert_eq!(
        tokens("a=--x\nb"),
        vec![t(Ident, "a"), t(Operator, "="), t(Ident, "b")]
    );
    assert_eq!(
        tokens("a+/*x*/b"),
        vec![t(Ident, "a"), t(Operator, "+"), t(Ident, "b")]
    );
    assert_eq!(
        tokens("a >= -1"),
        vec![
            t(Ident, "a"),
            t(Operator, ">="),
            t(Operator, "-"),
            t(Number, "1")
        ]
    );
    assert_eq!(
        kinds("a::int[1]"),
        vec![Ident, Other, Other, Ident, Other, Number, Other]
    );
}

#[test]
fn standard_strings() {
    assert_eq!(tokens("'it''s' x"), vec![t(Str, "'it''s'"), t(Ident, "x")]);
    // A backslash is an ordinary character with standard_conforming_strings on.
    assert_eq!(tokens(r"'a\' x"), vec![t(Str, r"'a\'"), t(Ident, "x")]);
    assert_eq!(tokens("'' ''"), vec![t(Str, "''"), t(Str, "''")]);
}

#[test]
fn escape_strings() {
    assert_eq!(
        tokens(r"E'it\'s; x' y"),
        vec![t(Str, r"E'it\'s; x'"), t(Ident, "y")]
    );
    assert_eq!(tokens(r"e'a\\' y"), vec![t(Str, r"e'a\\'"), t(Ident, "y")]);
    assert_eq!(
        tokens(r"E'a''b' y"),
        vec![t(Str, r"E'a''b'"), t(Ident, "y")]
    );
    // Only a whole-word E is a prefix.
    assert_eq!(
        tokens(r"mye'a\' y"),
        vec![t(Ident, "mye"), t(Str, r"'a\'"), t(Ident, "y")]
    );
}

#[test]
fn prefixed_literals() {
    assert_eq!(
        tokens(r"B'01' X'1F' N'n' U&'\0041' u&'x' b"),
        vec![
            t(Str, "B'01'"),
            t(Str, "X'1F'"),
            t(Str, "N'n'"),
            t(Str, r"U&'\0041'"),
            t(Str, "u&'x'"),
            t(Ident, "b"),
        ]
    );
    assert_eq!(
        tokens(r#"U&"a b" c"#),
        vec![t(QuotedIdent, r#"U&"a b""#), t(Ident, "c")]
    );
    assert_eq!(
        tokens("u & x"),
        vec![t(Ident, "u"), t(Operator, "&"), t(Ident, "x")]
    );
}

#[test]
fn quoted_identifiers() {
    assert_eq!(
        tokens(r#""a""b" c"#),
        vec![t(QuotedIdent, r#""a""b""#), t(Ident, "c")]
    );
    let tok = Lexer::new(br#""set_config""#).next().unwrap();
    assert_eq!(tok.ident_text(), Some(&b"set_config"[..]));
    assert!(tok.names("set_config"));
    assert!(!tok.is_keyword("set_config"));
    let upper = Lexer::new(br#""SET_CONFIG""#).next().unwrap();
    assert!(!upper.names("set_config"));
    let unicode = Lexer::new(br#"U&"pg_temp""#).next().unwrap();
    assert_eq!(unicode.ident_text(), Some(&b"pg_temp"[..]));
    let bare = Lexer::new(b"SET_Config").next().unwrap();
    assert!(bare.names("set_config"));
    assert!(bare.is_keyword("set_config"));
}

#[test]
fn dollar_quotes() {
    assert_eq!(
        tokens("$$LISTEN x$$ y"),
        vec![t(Str, "$$LISTEN x$$"), t(Ident, "y")]
    );
    assert_eq!(
        tokens("$fn$ a $$ b $f$ c $fn$ y"),
        vec![t(Str, "$fn$ a $$ b $f$ c $fn$"), t(Ident, "y")]
    );
    // A longer tag that starts like the opening one does not close it.
    assert_eq!(
        tokens("$a$ $ab$ $a$ y"),
        vec![t(Str, "$a$ $ab$ $a$"), t(Ident, "y")]
    );
    assert_eq!(tokens("$_1$x$_1$"), vec![t(Str, "$_1$x$_1$")]);
    assert_eq!(kinds("$1 $23"), vec![Param, Param]);
    // `$` inside a word belongs to the identifier, it starts no quote.
    assert_eq!(
        tokens("foo$$bar$$ x"),
        vec![t(Ident, "foo$$bar$$"), t(Ident, "x")]
    );
    // A `$` that opens nothing stands alone.
    assert_eq!(
        tokens("$a b"),
        vec![t(Other, "$"), t(Ident, "a"), t(Ident, "b")]
    );
    assert_eq!(tokens("$"), vec![t(Other, "$")]);
}

#[test]
fn high_bit_bytes_are_identifier_characters() {
    assert_eq!(
        tokens_of(b"caf\xe9 \xff\xfe x"),
        vec![
            t(Ident, "caf\u{fffd}"),
            t(Ident, "\u{fffd}\u{fffd}"),
            t(Ident, "x")
        ]
    );
    assert_eq!(tokens_of(b"\xe9(1)").len(), 4);
}

#[test]
fn unterminated_constructs_end_at_eof() {
    for sql in [
        "'abc",
        "E'abc\\",
        "E'abc\\'",
        "\"abc",
        "\"abc\"\"",
        "$$abc",
        "$t$abc$t",
        "B'01",
        "U&'x",
        "U&\"x",
    ] {
        assert_eq!(
            tokens(sql),
            vec![(
                if sql.contains('"') { QuotedIdent } else { Str },
                sql.to_owned()
            )]
        );
    }
    for sql in ["/* abc", "/* /* */ x", "-- abc"] {
        assert!(tokens(sql).is_empty(), "{sql}");
    }
}

#[test]
fn every_prefix_of_tricky_input_tokenizes_in_order() {
    let sql = "SELECT E'a\\'b', $x$ $$ $x$, \"q\"\"\", /* /* */ */ U&'u' -- c\n $1::int[2];";
    for end in 0..=sql.len() {
        let src = &sql.as_bytes()[..end];
        let mut last_end = 0;
        for tok in Lexer::new(src) {
            let start = tok.text.as_ptr() as usize - src.as_ptr() as usize;
            assert!(start >= last_end && !tok.text.is_empty(), "prefix {end}");
            last_end = start + tok.text.len();
        }
        assert!(last_end <= src.len());
    }
}

#[test]
fn statements_split_on_top_level_semicolons() {
    assert_eq!(
        statements("a; b c ;; d"),
        vec![vec!["a"], vec!["b", "c"], vec![], vec!["d"]]
    );
    assert_eq!(statements("a;"), vec![vec!["a"], vec![]]);
    assert_eq!(statements(""), vec![Vec::<String>::new()]);
    assert_eq!(statements("'a;b'; c"), vec![vec!["'a;b'"], vec!["c"]]);
    assert_eq!(
        statements("CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b); LISTEN x").len(),
        2
    );
    assert_eq!(statements(") ; x").len(), 2);
}

#[test]
fn statements_keep_begin_atomic_bodies_together() {
    let sql = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC \
               SELECT CASE WHEN true THEN 1 END; SELECT 2; END; LISTEN x";
    let split = statements(sql);
    assert_eq!(split.len(), 2, "{split:?}");
    assert_eq!(split[1], vec!["LISTEN", "x"]);
    let procedure =
        statements("create procedure p() begin atomic insert into t values (1); end; x");
    assert_eq!(procedure.len(), 2);
    // Outside a routine definition BEGIN is just a statement.
    assert_eq!(statements("BEGIN; LISTEN x; END").len(), 3);
    assert_eq!(
        statements("CREATE TABLE begin_t (a int); LISTEN x").len(),
        2
    );
}

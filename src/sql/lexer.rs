//! A byte-level SQL tokenizer that agrees with the server's scanner (PostgreSQL's `scan.l`)
//! on the one thing the pooler relies on: which bytes are code and which are inside a string
//! literal, a comment, a quoted identifier or a dollar-quoted body. A keyword the server
//! would not see must not be seen here either, and the other way round.
//!
//! Used by [`super::statements`] and, through it, by [`super::effects`]. Tokens borrow their
//! bytes from the input; nothing is allocated. Every byte is visited a bounded number of
//! times, so the cost is linear in the input, and unterminated constructs simply end at the
//! end of the input, as the server would report them as an error and execute nothing.
//!
//! Input is bytes, not `str`: the client's encoding may not be UTF-8. Bytes with the high bit
//! set are identifier characters, as they are for the server in every encoding it accepts.
//! `standard_conforming_strings` is assumed on (the default since PostgreSQL 9.1): a
//! backslash escapes a quote only inside `E'...'`.

/// What a token is; the analyzers mostly look at identifiers and punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword; the server folds its ASCII letters to lowercase.
    Ident,
    /// A `"quoted identifier"` or `U&"..."`, compared exactly.
    QuotedIdent,
    /// Any string constant: `'...'`, `E'...'`, `U&'...'`, `B'...'`, `X'...'`, `N'...'`, or
    /// a dollar-quoted `$tag$...$tag$` body.
    String,
    /// A numeric constant.
    Number,
    /// A positional parameter such as `$1`.
    Param,
    /// A run of operator characters (`=`, `<>`, `::` is two [`TokenKind::Other`]s).
    Operator,
    Semicolon,
    LParen,
    RParen,
    Comma,
    Dot,
    /// Any other single byte: `[`, `]`, `:`, a `$` that starts nothing, control bytes.
    Other,
}

/// One token: its kind and the exact input bytes it covers (quotes and prefixes included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: TokenKind,
    pub text: &'a [u8],
}

impl<'a> Token<'a> {
    /// True for an unquoted identifier spelling `keyword`, ignoring ASCII case. A quoted
    /// identifier is never a keyword.
    pub fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Ident && self.text.eq_ignore_ascii_case(keyword.as_bytes())
    }

    /// The name an identifier token spells before case folding: the text of an unquoted
    /// identifier, the inside of a quoted one (doubled `""` left as they are). `None` for
    /// every other kind of token.
    pub fn ident_text(&self) -> Option<&'a [u8]> {
        match self.kind {
            TokenKind::Ident => Some(self.text),
            TokenKind::QuotedIdent => {
                let open = if self.text.first() == Some(&b'"') {
                    1
                } else {
                    3
                };
                let inner = self.text.get(open..).unwrap_or_default();
                Some(inner.strip_suffix(b"\"").unwrap_or(inner))
            }
            _ => None,
        }
    }

    /// True if this identifier token names `name` (given in lowercase) the way the server
    /// resolves names: unquoted identifiers are folded to lowercase, quoted ones are exact.
    pub fn names(&self, name: &str) -> bool {
        match (self.kind, self.ident_text()) {
            (TokenKind::Ident, Some(text)) => text.eq_ignore_ascii_case(name.as_bytes()),
            (_, Some(text)) => text == name.as_bytes(),
            (_, None) => false,
        }
    }
}

/// Iterator over the tokens of SQL text; whitespace and comments are skipped.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        Lexer { src, pos: 0 }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    fn eat_while(&mut self, accept: impl Fn(u8) -> bool) {
        while self.peek(0).is_some_and(&accept) {
            self.pos += 1;
        }
    }

    /// `--` to the end of the line.
    fn line_comment(&mut self) {
        self.eat_while(|b| b != b'\n' && b != b'\r');
    }

    /// `/* ... */`, which nests in SQL (unlike C).
    fn block_comment(&mut self) {
        self.pos += 2;
        let mut depth = 1usize;
        while let Some(b) = self.peek(0) {
            match (b, self.peek(1)) {
                (b'/', Some(b'*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                (b'*', Some(b'/')) => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => self.pos += 1,
            }
        }
    }

    /// The rest of a literal opened by `quote` (already consumed): a doubled quote stands for
    /// itself, and with `backslash` (`E'...'`) a backslash escapes the byte after it.
    fn quoted(&mut self, quote: u8, backslash: bool) {
        let rest = &self.src[self.pos..];
        let mut i = 0;
        while let Some(found) = rest[i..]
            .iter()
            .position(|&b| b == quote || (backslash && b == b'\\'))
        {
            let at = i + found;
            if rest[at] == b'\\' {
                i = (at + 2).min(rest.len());
            } else if rest.get(at + 1) == Some(&quote) {
                i = at + 2;
            } else {
                self.pos += at + 1;
                return;
            }
        }
        self.pos = self.src.len();
    }

    /// A token starting with `$`: a parameter (`$1`), a dollar-quoted body (`$$...$$`,
    /// `$tag$...$tag$`), or else a lone `$`.
    fn dollar(&mut self) -> TokenKind {
        if self.peek(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            self.eat_while(|b| b.is_ascii_digit());
            return TokenKind::Param;
        }
        let tag_len = 1 + self.src[self.pos + 1..]
            .iter()
            .take_while(|&&b| is_dollar_tag_char(b))
            .count();
        if self.peek(tag_len) != Some(b'$') {
            self.pos += 1;
            return TokenKind::Other;
        }
        let tag = &self.src[self.pos..=self.pos + tag_len];
        self.pos += tag.len();
        self.pos =
            find_dollar_tag(self.src, self.pos, tag).map_or(self.src.len(), |at| at + tag.len());
        TokenKind::String
    }

    /// `123`, `1.5`, `.5`, `1e-3`. What PostgreSQL 16 also accepts (`0x1F`, `1_000`) comes
    /// out as a number and an identifier, as PostgreSQL 15 reads it.
    fn number(&mut self) {
        self.eat_while(|b| b.is_ascii_digit());
        if self.peek(0) == Some(b'.') && self.peek(1) != Some(b'.') {
            self.pos += 1;
            self.eat_while(|b| b.is_ascii_digit());
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.peek(1), Some(b'+' | b'-')));
            if self.peek(1 + sign).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1 + sign;
                self.eat_while(|b| b.is_ascii_digit());
            }
        }
    }

    /// A word: an identifier, or a prefixed literal (`E'`, `B'`, `X'`, `N'`, `U&'`, `U&"`).
    /// Prefixes count only as a whole word: `mye'x'` is the identifier `mye` and a string.
    fn word(&mut self, first: u8) -> TokenKind {
        match (first.to_ascii_lowercase(), self.peek(1), self.peek(2)) {
            (b'e', Some(b'\''), _) => {
                self.pos += 2;
                self.quoted(b'\'', true);
                TokenKind::String
            }
            (b'b' | b'x' | b'n', Some(b'\''), _) => {
                self.pos += 2;
                self.quoted(b'\'', false);
                TokenKind::String
            }
            (b'u', Some(b'&'), Some(quote @ (b'\'' | b'"'))) => {
                self.pos += 3;
                self.quoted(quote, false);
                if quote == b'"' {
                    TokenKind::QuotedIdent
                } else {
                    TokenKind::String
                }
            }
            _ => {
                self.eat_while(is_ident_char);
                TokenKind::Ident
            }
        }
    }

    /// A run of operator characters, cut before a comment start (`=--x` is `=`, a comment).
    fn operator(&mut self) {
        self.pos += 1;
        while let Some(b) = self.peek(0) {
            let comment = matches!((b, self.peek(1)), (b'-', Some(b'-')) | (b'/', Some(b'*')));
            if comment || !is_operator_char(b) {
                break;
            }
            self.pos += 1;
        }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            let start = self.pos;
            let b = self.peek(0)?;
            let kind = match (b, self.peek(1)) {
                (b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c, _) => {
                    self.pos += 1;
                    continue;
                }
                (b'-', Some(b'-')) => {
                    self.line_comment();
                    continue;
                }
                (b'/', Some(b'*')) => {
                    self.block_comment();
                    continue;
                }
                (b'\'' | b'"', _) => {
                    self.pos += 1;
                    self.quoted(b, false);
                    if b == b'"' {
                        TokenKind::QuotedIdent
                    } else {
                        TokenKind::String
                    }
                }
                (b'$', _) => self.dollar(),
                (b'0'..=b'9', _) => {
                    self.number();
                    TokenKind::Number
                }
                (b'.', Some(b'0'..=b'9')) => {
                    self.number();
                    TokenKind::Number
                }
                _ if is_ident_start(b) => self.word(b),
                _ if is_operator_char(b) => {
                    self.operator();
                    TokenKind::Operator
                }
                _ => {
                    self.pos += 1;
                    match b {
                        b';' => TokenKind::Semicolon,
                        b'(' => TokenKind::LParen,
                        b')' => TokenKind::RParen,
                        b',' => TokenKind::Comma,
                        b'.' => TokenKind::Dot,
                        _ => TokenKind::Other,
                    }
                }
            };
            return Some(Token {
                kind,
                text: &self.src[start..self.pos],
            });
        }
    }
}

/// The offset of the first `tag` (which starts and ends with `$`) in `src` at or after
/// `from`. Linear: tag characters exclude `$`, so a failed comparison never reads past the
/// next `$`.
fn find_dollar_tag(src: &[u8], from: usize, tag: &[u8]) -> Option<usize> {
    let mut at = from;
    while let Some(found) = src.get(at..)?.iter().position(|&b| b == b'$') {
        at += found;
        if src[at..].starts_with(tag) {
            return Some(at);
        }
        at += 1;
    }
    None
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// Characters of a dollar-quote tag after the first `$`: identifier characters without `$`
/// (a tag cannot start with a digit, but `$1` has already been taken as a parameter).
fn is_dollar_tag_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

fn is_operator_char(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

//! Splits the tokens of SQL text into the `;`-separated statements the server will run.
//!
//! A `;` ends a statement unless it is inside parentheses (`CREATE RULE ... DO (a; b)`) or
//! inside the `BEGIN ATOMIC ... END` body of a `CREATE [OR REPLACE] FUNCTION|PROCEDURE`;
//! the body heuristic is psql's (`psqlscan.l`): at parenthesis depth 0 of such a statement
//! `BEGIN` opens a block, `CASE` opens one when already inside a block, `END` closes one.
//!
//! Sits between [`super::lexer`] and the analyzers ([`super::effects`]), which pull the
//! tokens of one statement at a time.

use super::lexer::{Lexer, Token, TokenKind};

/// How far the start of the current statement matches `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    Start,
    Create,
    CreateOr,
    CreateOrReplace,
    /// A function or procedure definition: track `BEGIN ATOMIC ... END`.
    Routine,
    /// Anything else.
    Other,
}

/// A cursor over statements: [`Statements::next_statement`] moves to the next one,
/// [`Statements::next_token`] yields its tokens (without the closing `;`).
#[derive(Debug, Clone)]
pub struct Statements<'a> {
    lexer: Lexer<'a>,
    /// Parenthesis depth after the last token returned.
    depth: u32,
    /// Open `BEGIN`/`CASE` blocks of a routine body.
    blocks: u32,
    head: Head,
    /// The current statement has ended (or none has started yet).
    ended: bool,
    /// The input is exhausted.
    eof: bool,
}

impl<'a> Statements<'a> {
    pub fn new(sql: &'a [u8]) -> Self {
        Statements {
            lexer: Lexer::new(sql),
            depth: 0,
            blocks: 0,
            head: Head::Start,
            ended: true,
            eof: false,
        }
    }

    /// Skips what is left of the current statement and starts the next one; false when the
    /// input has no more. Empty statements (`;;`, or after a final `;`) are statements too.
    pub fn next_statement(&mut self) -> bool {
        while self.next_token().is_some() {}
        if self.eof {
            return false;
        }
        self.depth = 0;
        self.blocks = 0;
        self.head = Head::Start;
        self.ended = false;
        true
    }

    /// The next token of the current statement, `None` at its end.
    pub fn next_token(&mut self) -> Option<Token<'a>> {
        if self.ended {
            return None;
        }
        let Some(token) = self.lexer.next() else {
            self.ended = true;
            self.eof = true;
            return None;
        };
        match token.kind {
            TokenKind::Semicolon if self.depth == 0 && self.blocks == 0 => {
                self.ended = true;
                return None;
            }
            TokenKind::LParen => self.depth += 1,
            TokenKind::RParen => self.depth = self.depth.saturating_sub(1),
            TokenKind::Ident => self.track_routine(&token),
            _ => {}
        }
        if token.kind != TokenKind::Ident && self.head != Head::Routine {
            self.head = Head::Other;
        }
        Some(token)
    }

    /// Parenthesis depth inside the current statement after the last token returned.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    fn track_routine(&mut self, word: &Token<'_>) {
        let routine = word.is_keyword("function") || word.is_keyword("procedure");
        self.head = match self.head {
            Head::Start if word.is_keyword("create") => Head::Create,
            Head::Create if word.is_keyword("or") => Head::CreateOr,
            Head::CreateOr if word.is_keyword("replace") => Head::CreateOrReplace,
            Head::Create | Head::CreateOrReplace if routine => Head::Routine,
            Head::Routine => Head::Routine,
            _ => Head::Other,
        };
        if self.head != Head::Routine || self.depth > 0 {
            return;
        }
        if word.is_keyword("begin") || (self.blocks > 0 && word.is_keyword("case")) {
            self.blocks += 1;
        } else if word.is_keyword("end") {
            self.blocks = self.blocks.saturating_sub(1);
        }
    }
}

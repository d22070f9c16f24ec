//! What SQL text may do to the session, as far as a transaction-mode pooler must know:
//! change settings that must follow the client to its next server, create state that cannot
//! follow it (and so pins it to its server), or release such state.
//!
//! The relay calls [`analyze`] on every simple Query text and every Parse text. The answer
//! is lexical, from [`super::statements`]: the leading keyword of each statement, a few
//! tokens after it, and calls of a few functions anywhere. It over-reports rather than
//! under-reports where that is cheap (`may_unpin` only asks the relay to look again), and it
//! cannot see what functions, `DO` blocks or `EXECUTE` of a prepared statement do inside.

use super::lexer::{Token, TokenKind};
use super::statements::Statements;

/// What a piece of SQL text may do to the session, as far as the pooler must know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    /// May change session-level settings: SET (but not SET LOCAL, SET TRANSACTION), SET
    /// SESSION ..., RESET, a set_config(...) call anywhere, DISCARD.
    pub settings: bool,
    /// Kinds of state that cannot move to another server connection that this text may create.
    pub pins: Pins,
    /// May release pinned state: UNLISTEN, pg_advisory_unlock / _shared / _all calls, DROP,
    /// DISCARD, CLOSE, DEALLOCATE, COMMIT/END/ROLLBACK/ABORT (temp tables ON COMMIT DROP, ...).
    pub may_unpin: bool,
    /// Drops every prepared statement of the session: DISCARD ALL, DEALLOCATE ALL,
    /// DEALLOCATE PREPARE ALL.
    pub drops_all_prepared: bool,
}

impl Effects {
    /// What a text pgweir could not analyse (too large to look at) may do: anything.
    pub const UNKNOWN: Effects = Effects {
        settings: true,
        pins: Pins(1 << PinReason::UntrackedSetting as u8),
        may_unpin: true,
        drops_all_prepared: false,
    };

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        *self == Effects::default()
    }

    #[cfg(test)]
    pub fn union(self, other: Effects) -> Effects {
        Effects {
            settings: self.settings || other.settings,
            pins: self.pins.union(other.pins),
            may_unpin: self.may_unpin || other.may_unpin,
            drops_all_prepared: self.drops_all_prepared || other.drops_all_prepared,
        }
    }
}

/// A small bitset of [`PinReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pins(u8);

impl Pins {
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, r: PinReason) -> bool {
        self.0 & r.bit() != 0
    }

    pub fn insert(&mut self, r: PinReason) {
        self.0 |= r.bit();
    }

    pub fn union(self, other: Pins) -> Pins {
        Pins(self.0 | other.0)
    }

    /// The reasons in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = PinReason> {
        PinReason::ALL
            .into_iter()
            .filter(move |&r| self.contains(r))
    }
}

/// A kind of session state that lives in one server connection and cannot be recreated on
/// another, so a client holding it must keep its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinReason {
    Listen,
    AdvisoryLock,
    TempObject,
    HoldCursor,
    Load,
    SqlPrepare,
    /// A setting changed under a name only known at run time (`set_config($1, ...)`).
    UntrackedSetting,
}

impl PinReason {
    const ALL: [PinReason; 7] = [
        PinReason::Listen,
        PinReason::AdvisoryLock,
        PinReason::TempObject,
        PinReason::HoldCursor,
        PinReason::Load,
        PinReason::SqlPrepare,
        PinReason::UntrackedSetting,
    ];

    /// How the state is named in messages to the client and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PinReason::Listen => "LISTEN",
            PinReason::AdvisoryLock => "session advisory lock",
            PinReason::TempObject => "temporary table",
            PinReason::HoldCursor => "WITH HOLD cursor",
            PinReason::Load => "LOAD",
            PinReason::SqlPrepare => "SQL PREPARE",
            PinReason::UntrackedSetting => "set_config with a computed setting name",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Session advisory lock functions; the `_xact_` variants end with the transaction and
/// do not pin.
const LOCK_FUNCTIONS: [&str; 4] = [
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

const UNLOCK_FUNCTIONS: [&str; 3] = [
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
];

/// Analyses SQL text (possibly several statements separated by `;`). Input is bytes: the
/// client's encoding may not be UTF-8; keywords are ASCII, compare case-insensitively.
pub fn analyze(sql: &[u8]) -> Effects {
    if plain(sql) {
        return Effects::default();
    }
    analyze_tokens(sql)
}

/// Leading keywords of statements that can have no effect unless they call a function or
/// (SELECT, UPDATE) write into a temp table or `pg_settings`.
const PLAIN_STARTS: [&str; 8] = [
    "select", "insert", "update", "delete", "values", "table", "fetch", "show",
];

/// A prefilter for the common case, a few bytes scanned instead of a full tokenisation:
/// one statement (nothing but `;` and spaces after its first `;`), starting right away
/// with one of [`PLAIN_STARTS`], with no `(` anywhere (so no call) and neither `into` nor
/// `settings` in any case (so no `INTO TEMP`, no `UPDATE pg_settings`). Every text it
/// passes has no effects; anything it is unsure of goes to [`analyze_tokens`].
pub(super) fn plain(sql: &[u8]) -> bool {
    let word_len = sql.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let first = &sql[..word_len];
    if !PLAIN_STARTS
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k.as_bytes()))
    {
        return false;
    }
    let body = match memchr::memchr(b';', sql) {
        Some(end)
            if sql[end..]
                .iter()
                .all(|b| *b == b';' || b.is_ascii_whitespace()) =>
        {
            &sql[..end]
        }
        Some(_) => return false,
        None => sql,
    };
    // memchr's searches look at many bytes per instruction; this runs for every Query.
    memchr::memchr(b'(', body).is_none()
        && !memchr::memchr2_iter(b'i', b'I', body).any(|i| starts_with_word(&body[i..], b"into"))
        && !memchr::memchr2_iter(b's', b'S', body)
            .any(|i| starts_with_word(&body[i..], b"settings"))
}

/// Whether `hay` starts with `word` (lowercase) in any case.
fn starts_with_word(hay: &[u8], word: &[u8]) -> bool {
    hay.get(..word.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(word))
}

/// The full analysis: every token of every statement.
pub(super) fn analyze_tokens(sql: &[u8]) -> Effects {
    let mut scan = Scan {
        statements: Statements::new(sql),
        prev: None,
        set_config_arg: false,
        effects: Effects::default(),
    };
    while scan.statements.next_statement() {
        if let Some(first) = scan.next() {
            scan.statement(first);
        }
        while scan.next().is_some() {}
    }
    scan.effects
}

/// The analysis of one text: every token passes through [`Scan::next`], which spots function
/// calls; the statement rules pull as many tokens as they need.
struct Scan<'a> {
    statements: Statements<'a>,
    /// The token before the one last returned, within the current statement.
    prev: Option<Token<'a>>,
    /// The token after `set_config(` comes next: it must be a plain literal name.
    set_config_arg: bool,
    effects: Effects,
}

impl<'a> Scan<'a> {
    /// The next token of the current statement; a `(` after an identifier is a call.
    fn next(&mut self) -> Option<Token<'a>> {
        let Some(token) = self.statements.next_token() else {
            self.prev = None;
            return None;
        };
        if std::mem::take(&mut self.set_config_arg) && !is_plain_literal(&token) {
            // A computed name: pgweir cannot know which setting to read back.
            self.pin(PinReason::UntrackedSetting);
        }
        if let (TokenKind::LParen, Some(name)) = (token.kind, self.prev) {
            self.call(&name);
        }
        self.prev = Some(token);
        Some(token)
    }

    fn next_is(&mut self, keywords: &[&str]) -> bool {
        self.next().is_some_and(|t| is_any(&t, keywords))
    }

    fn pin(&mut self, reason: PinReason) {
        self.effects.pins.insert(reason);
    }

    /// A call of `name(`, possibly schema-qualified (only the last part is looked at).
    fn call(&mut self, name: &Token<'_>) {
        if name.names("set_config") {
            self.effects.settings = true;
            self.set_config_arg = true;
        } else if LOCK_FUNCTIONS.iter().any(|f| name.names(f)) {
            self.pin(PinReason::AdvisoryLock);
        } else if UNLOCK_FUNCTIONS.iter().any(|f| name.names(f)) {
            self.effects.may_unpin = true;
        }
    }

    /// A statement whose first token is `first`. EXPLAIN [ANALYZE] runs the statement it
    /// explains (`CREATE TEMP TABLE ... AS`, `SELECT ... INTO TEMP`), so that one is
    /// analysed instead; a loop, not recursion, as the input may nest EXPLAINs deeply.
    fn statement(&mut self, mut first: Token<'a>) {
        while first.is_keyword("explain") {
            match self.explained() {
                Some(next) => first = next,
                None => return,
            }
        }
        self.rules(first);
    }

    /// The rules keyed on the statement's leading keyword `first`.
    fn rules(&mut self, first: Token<'a>) {
        let keyword = |k: &str| first.is_keyword(k);
        if keyword("set") {
            // SET CONSTRAINTS, like SET LOCAL and SET TRANSACTION, lasts one transaction.
            if !self.next_is(&["local", "transaction", "constraints"]) {
                self.effects.settings = true;
            }
        } else if keyword("reset") {
            self.effects.settings = true;
        } else if keyword("discard") {
            self.effects.settings = true;
            self.effects.may_unpin = true;
            if self.next_is(&["all"]) {
                self.effects.drops_all_prepared = true;
            }
        } else if keyword("deallocate") {
            self.effects.may_unpin = true;
            let all = match self.next() {
                Some(t) if t.is_keyword("prepare") => self.next_is(&["all"]),
                Some(t) => t.is_keyword("all"),
                None => false,
            };
            self.effects.drops_all_prepared |= all;
        } else if keyword("listen") {
            self.pin(PinReason::Listen);
        } else if keyword("load") {
            self.pin(PinReason::Load);
        } else if keyword("prepare") {
            // PREPARE TRANSACTION is two-phase commit, not a statement.
            if !self.next_is(&["transaction"]) {
                self.pin(PinReason::SqlPrepare);
            }
        } else if keyword("declare") {
            self.declare();
        } else if keyword("create") {
            self.create();
        } else if keyword("select") {
            self.query(true, false);
        } else if keyword("with") {
            self.query(true, true);
        } else if keyword("update") {
            self.query(false, true);
        } else if is_any(
            &first,
            &[
                "unlisten", "drop", "close", "commit", "end", "rollback", "abort",
            ],
        ) {
            self.effects.may_unpin = true;
        }
    }

    /// `DECLARE name [options] CURSOR [WITH HOLD | WITHOUT HOLD] FOR query`.
    fn declare(&mut self) {
        let mut after_with = false;
        while let Some(t) = self.next() {
            if t.is_keyword("for") {
                return;
            }
            if after_with && t.is_keyword("hold") {
                self.pin(PinReason::HoldCursor);
            }
            after_with = t.is_keyword("with");
        }
    }

    /// `CREATE [OR REPLACE] [GLOBAL|LOCAL] TEMP|TEMPORARY ...`, or a CREATE mentioning a
    /// name in the session's temporary schema (`CREATE TABLE pg_temp.t`; a view reading a
    /// temporary table is temporary itself).
    fn create(&mut self) {
        let mut token = self.next();
        if token.is_some_and(|t| t.is_keyword("or")) {
            self.next();
            token = self.next();
        }
        if token.is_some_and(|t| is_any(&t, &["global", "local"])) {
            token = self.next();
        }
        if token.is_some_and(|t| is_any(&t, &["temp", "temporary"])) {
            self.pin(PinReason::TempObject);
            return;
        }
        while let Some(t) = token {
            token = self.next();
            if is_temp_schema(&t) && token.is_some_and(|dot| dot.kind == TokenKind::Dot) {
                self.pin(PinReason::TempObject);
                return;
            }
        }
    }

    /// The rest of a SELECT, WITH or UPDATE statement: with `select_into`, a top-level
    /// `INTO` that is not `INSERT INTO`/`MERGE INTO` creates a table (`SELECT ... INTO TEMP
    /// t`); with `settings_view`, `pg_settings` is updatable and its updates are `SET`s.
    fn query(&mut self, select_into: bool, settings_view: bool) {
        let mut after_insert = false;
        while let Some(t) = self.next() {
            if settings_view && t.names("pg_settings") {
                self.effects.settings = true;
            }
            let top = self.statements.depth() == 0;
            if select_into && top && !after_insert && t.is_keyword("into") {
                self.select_into_target();
            }
            after_insert = top && is_any(&t, &["insert", "merge"]);
        }
    }

    /// After `SELECT ... INTO`: `[GLOBAL|LOCAL] TEMP|TEMPORARY [TABLE] name`, or
    /// `[TABLE] pg_temp.name`.
    fn select_into_target(&mut self) {
        let mut token = self.next();
        if token.is_some_and(|t| is_any(&t, &["global", "local"])) {
            token = self.next();
        }
        if token.is_some_and(|t| is_any(&t, &["temp", "temporary"])) {
            self.pin(PinReason::TempObject);
            return;
        }
        if token.is_some_and(|t| t.is_keyword("table")) {
            token = self.next();
        }
        if token.is_some_and(|t| is_temp_schema(&t))
            && self.next().is_some_and(|t| t.kind == TokenKind::Dot)
        {
            self.pin(PinReason::TempObject);
        }
    }

    /// After `EXPLAIN`: skips `[(options)] [ANALYZE] [VERBOSE]` and returns the first token
    /// of the explained statement.
    fn explained(&mut self) -> Option<Token<'a>> {
        let mut token = self.next();
        if token.is_some_and(|t| t.kind == TokenKind::LParen) {
            while token.is_some() && self.statements.depth() > 0 {
                token = self.next();
            }
            token = self.next();
        }
        while token.is_some_and(|t| is_any(&t, &["analyze", "analyse", "verbose"])) {
            token = self.next();
        }
        token
    }
}

fn is_any(token: &Token<'_>, keywords: &[&str]) -> bool {
    keywords.iter().any(|k| token.is_keyword(k))
}

/// `pg_temp`, the alias of the session's temporary schema, or its real name `pg_temp_N`.
fn is_temp_schema(token: &Token<'_>) -> bool {
    let Some(name) = token.ident_text() else {
        return false;
    };
    let folded = token.kind == TokenKind::Ident;
    let Some((prefix, rest)) = name.split_at_checked(7) else {
        return false;
    };
    let prefix_matches = if folded {
        prefix.eq_ignore_ascii_case(b"pg_temp")
    } else {
        prefix == b"pg_temp"
    };
    prefix_matches
        && (rest.is_empty()
            || (rest.len() > 1 && rest[0] == b'_' && rest[1..].iter().all(u8::is_ascii_digit)))
}

/// A `'...'` literal, the only form of setting name pgweir reads back by name.
fn is_plain_literal(token: &Token<'_>) -> bool {
    token.kind == TokenKind::String && token.text.first() == Some(&b'\'')
}

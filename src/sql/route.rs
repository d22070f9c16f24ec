//! Which server may run SQL text when replicas are configured: [`classify`] proves a text
//! read-only (or a read-only transaction) from its tokens, and reads a leading routing hint;
//! [`route_setting`] recognises the `SET pgweir.route` session override pgweir answers itself.
//!
//! Built on [`super::statements`] like [`super::effects`], for the replica routing of the
//! relay. Anything not proven read-only goes to the primary: a wrong "primary" costs a little
//! load, a wrong "replica" fails the client's write. The proof is lexical: the leading keyword
//! of each statement, a few keywords anywhere (locking clauses, `INTO`, data-modifying
//! verbs) and every `name(` call checked against an allowlist. Linear in the input, and
//! nothing is allocated per token.

use std::collections::HashSet;

use super::lexer::{Token, TokenKind};
use super::statements::Statements;

/// Where a statement (or the transaction it opens) may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Proven read-only: every statement in the text is a plain read. May run on a replica.
    ReadOnly,
    /// Opens a read-only transaction (BEGIN READ ONLY, START TRANSACTION READ ONLY, possibly
    /// with DEFERRABLE or a non-serializable ISOLATION LEVEL, or BEGIN; SET TRANSACTION READ ONLY in one
    /// text), optionally followed in the same text by read-only statements: the whole
    /// transaction may run on a replica.
    ReadOnlyTransaction,
    /// Anything else, including anything not understood: the primary.
    Primary,
}

/// A leading `/* pgweir:primary */` or `/* pgweir:replica */` comment (only a block comment
/// before the first token counts; case-insensitive; whitespace inside the comment allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
}

/// What [`classify`] found: the verdict of the text and the client's hint, kept apart so the
/// relay decides how far a hint may override the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub verdict: Verdict,
    pub hint: Option<Hint>,
}

impl Classification {
    /// What is known of a text never classified: it may write.
    pub const UNKNOWN: Classification = Classification {
        verdict: Verdict::Primary,
        hint: None,
    };

    /// Whether the text may run on a replica: proven read-only, or hinted there.
    pub fn replica_ok(self) -> bool {
        self.verdict != Verdict::Primary || self.hint == Some(Hint::Replica)
    }

    /// The classification of several messages sent as one request: only the first
    /// message's hint counts (a hint leads the request), and the request is as read-only
    /// as its least read-only part.
    pub fn and(self, next: Classification) -> Classification {
        let verdict = match (self.verdict, next.verdict) {
            (Verdict::Primary, _) | (_, Verdict::Primary) => Verdict::Primary,
            (Verdict::ReadOnlyTransaction, _) | (_, Verdict::ReadOnlyTransaction) => {
                Verdict::ReadOnlyTransaction
            }
            _ => Verdict::ReadOnly,
        };
        Classification {
            verdict,
            hint: self.hint,
        }
    }
}

impl Default for Classification {
    fn default() -> Self {
        Classification::UNKNOWN
    }
}

/// Function names (lowercase, unqualified) an operator declared read-only
/// (`read_only_functions`). Names in [`never_read_only`] are refused even when declared, as
/// they write (sequences, locks, notifications, large objects, remote servers).
#[derive(Debug, Clone, Default)]
pub struct ReadOnlyFunctions {
    names: HashSet<Box<[u8]>>,
}

impl ReadOnlyFunctions {
    /// Declared names are folded to lowercase, as the server folds unquoted names.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let names = names
            .into_iter()
            .map(|n| n.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .collect();
        ReadOnlyFunctions { names }
    }

    /// Whether `name`, already folded the way the server resolves it, was declared.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.names.contains(name)
    }
}

/// `SET pgweir.route TO|= primary|replica|auto` (also `SET SESSION pgweir.route ...`, quoted
/// or not, with a trailing `;`), the session override pgweir answers itself; None for any
/// other text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RouteSetting {
    Primary,
    Replica,
    Auto,
}

/// Classifies SQL text (possibly several statements). Input is bytes in the client's
/// encoding; keywords are ASCII and compared case-insensitively.
pub fn classify(sql: &[u8], extra: &ReadOnlyFunctions) -> Classification {
    Classification {
        verdict: verdict(sql, extra),
        hint: leading_hint(sql),
    }
}

/// Built-in functions that read at most (volatile ones like `random` included), sorted
/// bytewise for binary search. Only trusted unqualified or as `pg_catalog.name`.
#[rustfmt::skip]
pub(super) const READ_ONLY_BUILTINS: [&str; 103] = [
    "abs", "age", "array_agg", "array_length", "array_position", "avg", "bool_and", "bool_or",
    "btrim", "cardinality", "ceil", "ceiling", "char_length", "character_length",
    "clock_timestamp", "concat", "concat_ws", "count", "cume_dist", "current_database",
    "current_schema", "current_setting", "current_time", "current_timestamp", "current_user",
    "date_part", "date_trunc", "decode", "dense_rank", "encode", "every", "extract",
    "first_value", "floor", "format", "generate_series", "grouping", "json_agg",
    "json_build_object", "json_extract_path", "json_extract_path_text", "json_object_agg",
    "jsonb_agg", "jsonb_build_object", "jsonb_extract_path", "jsonb_extract_path_text", "lag",
    "last_value", "lead", "left", "length", "localtime", "localtimestamp", "lower", "lpad",
    "ltrim", "make_date", "make_timestamp", "max", "md5", "min", "mod", "now", "ntile",
    "overlay", "percent_rank", "pg_backend_pid", "pg_is_in_recovery", "pg_last_wal_replay_lsn",
    "position", "power", "random", "rank", "regexp_match", "regexp_matches", "regexp_replace",
    "replace", "right", "round", "row_number", "row_to_json", "rpad", "rtrim", "session_user",
    "split_part", "sqrt", "statement_timestamp", "string_agg", "strpos", "substr", "substring",
    "sum", "to_char", "to_date", "to_json", "to_jsonb", "to_number", "to_timestamp", "trim",
    "trunc", "unnest", "upper", "version",
];

/// Unquoted keywords that may stand right before a `(` without calling anything (`IN (`,
/// `OVER (`, `AS (`, `GROUP BY ROLLUP (`, `TABLESAMPLE system (`, `character varying(`, or
/// the COALESCE-like constructs that are syntax, not functions). Sorted for binary search.
#[rustfmt::skip]
pub(super) const NOT_CALLS: [&str; 67] = [
    "all", "and", "any", "array", "as", "bernoulli", "between", "by", "case", "cast",
    "coalesce", "cube", "distinct", "else", "escape", "except", "exists", "filter", "first",
    "for", "from", "greatest", "group", "having", "ilike", "in", "intersect", "interval", "is",
    "join", "lateral", "least", "like", "limit", "materialized", "next", "not", "nullif",
    "offset", "on", "only", "operator", "or", "over", "recursive", "repeatable", "rollup",
    "row", "rows", "select", "sets", "similar", "some", "symmetric", "system", "then", "to",
    "union", "using", "values", "variadic", "varying", "when", "where", "with", "within",
    "zone",
];

/// Functions that write or take locks, refused even when an operator declares them:
/// sequences, settings, notifications, advisory locks, transaction ids, large objects, dblink.
pub fn never_read_only(name: &[u8]) -> bool {
    const EXACT: [&[u8]; 4] = [b"nextval", b"setval", b"set_config", b"pg_notify"];
    const PREFIXES: [&[u8]; 6] = [
        b"pg_advisory_",
        b"pg_try_advisory_",
        b"txid_current",
        b"pg_current_xact_id",
        b"lo_",
        b"dblink",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

fn listed(list: &[&str], folded: &[u8]) -> bool {
    list.binary_search_by(|k| k.as_bytes().cmp(folded)).is_ok()
}

/// How far the statements seen so far prove the text read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but empty statements yet.
    Start,
    /// Only plain reads.
    Reads,
    /// A `BEGIN` without an access mode: only `SET TRANSACTION READ ONLY` may follow.
    PlainBegin,
    /// A read-only transaction is open (or was, and only reads followed).
    Transaction,
}

/// The access mode a list of transaction modes sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Unset,
    ReadOnly,
    ReadWrite,
}

/// Where an identifier chain after `::` or `AS` stands: such a name followed by `(` is a type
/// modifier (`::numeric(10,2)`, `CAST(x AS varchar(20))`) or an alias column list
/// (`AS v(a, b)`), not a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    None,
    /// Right after `::` or `AS`.
    Start,
    /// On a (possibly qualified) name part.
    Name,
    /// After a `.` inside the name.
    Dot,
}

fn verdict(sql: &[u8], extra: &ReadOnlyFunctions) -> Verdict {
    let mut scan = Scan {
        statements: Statements::new(sql),
        back: [None; 4],
        chain: Chain::None,
        cte_list: false,
        folded: Vec::new(),
        extra,
    };
    let mut state = State::Start;
    while scan.statements.next_statement() {
        scan.back = [None; 4];
        scan.chain = Chain::None;
        let Some(first) = scan.next() else {
            continue;
        };
        match scan.step(state, first) {
            Some(next) => state = next,
            None => return Verdict::Primary,
        }
    }
    match state {
        State::Start | State::PlainBegin => Verdict::Primary,
        State::Reads => Verdict::ReadOnly,
        State::Transaction => Verdict::ReadOnlyTransaction,
    }
}

/// The proof over one text: tokens come through [`Scan::next`], which keeps the last few so
/// a `(` can look back at the name it follows.
struct Scan<'a, 'f> {
    statements: Statements<'a>,
    /// The last tokens of the current statement, most recent first.
    back: [Option<Token<'a>>; 4],
    chain: Chain,
    /// Inside the CTE list of a top-level `WITH`, where `name(cols) AS (...)` is no call.
    cte_list: bool,
    /// Reused buffer for the case-folded name of a call.
    folded: Vec<u8>,
    extra: &'f ReadOnlyFunctions,
}

impl<'a> Scan<'a, '_> {
    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.statements.next_token()?;
        let [b0, b1, b2, _] = self.back;
        self.back = [Some(token), b0, b1, b2];
        Some(token)
    }

    fn next_is(&mut self, keywords: &[&str]) -> bool {
        self.next().is_some_and(|t| is_any(&t, keywords))
    }

    /// The state after the statement starting with `first`; None when it is neither a plain
    /// read nor allowed where it stands, which sends the whole text to the primary.
    fn step(&mut self, state: State, first: Token<'a>) -> Option<State> {
        let begin = first.is_keyword("begin")
            || (first.is_keyword("start") && self.next_is(&["transaction"]));
        match state {
            State::Start if begin => match self.modes(first.is_keyword("begin"))? {
                Access::ReadOnly => Some(State::Transaction),
                Access::Unset => Some(State::PlainBegin),
                Access::ReadWrite => None,
            },
            State::Start | State::Reads => self.plain_read(first).then_some(State::Reads),
            State::PlainBegin => {
                let set = self.set_transaction(first)?;
                (set == Access::ReadOnly).then_some(State::Transaction)
            }
            State::Transaction => {
                let ok = if is_any(&first, &["commit", "end", "rollback", "abort"]) {
                    self.only(&["work", "transaction", "and", "no", "chain"])
                } else if first.is_keyword("set") {
                    self.set_transaction(first)? != Access::ReadWrite
                } else {
                    self.plain_read(first)
                };
                ok.then_some(State::Transaction)
            }
        }
    }

    /// True if every remaining token of the statement is one of `keywords`.
    fn only(&mut self, keywords: &[&str]) -> bool {
        while let Some(t) = self.next() {
            if !is_any(&t, keywords) {
                return false;
            }
        }
        true
    }

    /// `SET TRANSACTION modes`; None for any other statement.
    fn set_transaction(&mut self, first: Token<'a>) -> Option<Access> {
        if !first.is_keyword("set") || !self.next_is(&["transaction"]) {
            return None;
        }
        self.modes(false)
    }

    /// The transaction modes ending a BEGIN / START TRANSACTION / SET TRANSACTION (after
    /// `BEGIN`, `may_name` lets an optional `WORK | TRANSACTION` come first); None for
    /// anything not understood. READ WRITE anywhere wins over READ ONLY.
    fn modes(&mut self, may_name: bool) -> Option<Access> {
        let mut access = Access::Unset;
        let mut token = self.next();
        if may_name && token.is_some_and(|t| is_any(&t, &["work", "transaction"])) {
            token = self.next();
        }
        while let Some(t) = token {
            if t.is_keyword("isolation") {
                self.isolation_level()?;
            } else if t.is_keyword("read") {
                let mode = self.next()?;
                if mode.is_keyword("write") {
                    access = Access::ReadWrite;
                } else if mode.is_keyword("only") && access == Access::Unset {
                    access = Access::ReadOnly;
                } else if !mode.is_keyword("only") {
                    return None;
                }
            } else if t.is_keyword("not") {
                self.next_is(&["deferrable"]).then_some(())?;
            } else if !t.is_keyword("deferrable") && t.kind != TokenKind::Comma {
                return None;
            }
            token = self.next();
        }
        Some(access)
    }

    /// After `ISOLATION`: `LEVEL REPEATABLE READ | READ COMMITTED | READ UNCOMMITTED`.
    /// `SERIALIZABLE` is refused: a hot standby cannot run serializable transactions.
    fn isolation_level(&mut self) -> Option<()> {
        self.next_is(&["level"]).then_some(())?;
        let level = self.next()?;
        let ok = (level.is_keyword("repeatable") && self.next_is(&["read"]))
            || (level.is_keyword("read") && self.next_is(&["committed", "uncommitted"]));
        ok.then_some(())
    }

    /// A SELECT / VALUES / TABLE / WITH / parenthesised query, SHOW, or EXPLAIN without
    /// ANALYZE of a query, that provably writes nothing.
    fn plain_read(&mut self, first: Token<'a>) -> bool {
        if first.is_keyword("show") {
            return self.query(false);
        }
        let first = if first.is_keyword("explain") {
            match self.explained() {
                Some(next) => next,
                None => return false,
            }
        } else {
            first
        };
        let query = first.kind == TokenKind::LParen
            || is_any(&first, &["select", "values", "table", "with"]);
        query && self.token_ok(first) && self.query(first.is_keyword("with"))
    }

    /// After `EXPLAIN`: the first token of the explained statement, None when ANALYZE (in
    /// any form, even `ANALYZE false`) would execute it.
    fn explained(&mut self) -> Option<Token<'a>> {
        let analyze = ["analyze", "analyse"];
        let mut token = self.next();
        if token.is_some_and(|t| t.kind == TokenKind::LParen) {
            while token.is_some() && self.statements.depth() > 0 {
                token = self.next();
                if token.is_some_and(|t| is_any(&t, &analyze)) {
                    return None;
                }
            }
            token = self.next();
        }
        while let Some(t) = token.filter(|t| is_any(t, &["analyze", "analyse", "verbose"])) {
            if is_any(&t, &analyze) {
                return None;
            }
            token = self.next();
        }
        token
    }

    /// The rest of a query: true if no token of it may write.
    fn query(&mut self, with: bool) -> bool {
        self.cte_list = with;
        while let Some(t) = self.next() {
            if !self.token_ok(t) {
                return false;
            }
        }
        true
    }

    /// The token `t` (just returned by [`Scan::next`]) cannot make the query write: it is
    /// not INTO (SELECT INTO creates a table), a data-modifying verb (a CTE's or after a
    /// WITH), the second word of a locking clause, or a `(` calling a function not known
    /// read-only.
    fn token_ok(&mut self, t: Token<'a>) -> bool {
        let prev = self.back[1];
        let chain = self.chain;
        self.chain = match t.kind {
            TokenKind::Ident if t.is_keyword("as") => Chain::Start,
            TokenKind::Ident | TokenKind::QuotedIdent
                if matches!(chain, Chain::Start | Chain::Dot) =>
            {
                Chain::Name
            }
            TokenKind::Dot if chain == Chain::Name => Chain::Dot,
            TokenKind::Other if t.text == b":" && prev.is_some_and(|p| p.text == b":") => {
                Chain::Start
            }
            _ => Chain::None,
        };
        match t.kind {
            TokenKind::Ident => self.word_ok(&t, prev),
            TokenKind::LParen => {
                let top = self.statements.depth() == 1;
                if top && prev.is_some_and(|p| p.kind == TokenKind::RParen) {
                    // `WITH x AS (...) (SELECT ...)`: the main query has begun.
                    self.cte_list = false;
                }
                chain == Chain::Name || self.paren_ok()
            }
            _ => true,
        }
    }

    fn word_ok(&mut self, t: &Token<'a>, prev: Option<Token<'a>>) -> bool {
        let top = self.statements.depth() == 0;
        if self.cte_list && top && is_any(t, &["select", "values", "table"]) {
            self.cte_list = false;
        }
        let locking = prev.is_some_and(|p| p.is_keyword("for"))
            && is_any(t, &["update", "share", "no", "key"]);
        !locking && !is_any(t, &["into", "insert", "update", "delete", "merge"])
    }

    /// A `(` after a name is a call unless the name is a keyword of [`NOT_CALLS`] or names
    /// a CTE of the top-level CTE list (right after `WITH`, `RECURSIVE` or a `,` there); a
    /// call must be of a read-only function.
    fn paren_ok(&mut self) -> bool {
        let [_, name, dot, schema] = self.back;
        let Some(name) = name else {
            return true;
        };
        let Some(text) = name.ident_text() else {
            return true;
        };
        let qualified = dot.is_some_and(|d| d.kind == TokenKind::Dot);
        self.folded.clear();
        if name.kind == TokenKind::Ident {
            self.folded.extend(text.iter().map(u8::to_ascii_lowercase));
            let cte_name = self.cte_list
                && self.statements.depth() == 1
                && dot.is_some_and(|p| {
                    p.kind == TokenKind::Comma || is_any(&p, &["with", "recursive"])
                });
            if !qualified && (cte_name || listed(&NOT_CALLS, &self.folded)) {
                return true;
            }
        } else {
            self.folded.extend_from_slice(text);
        }
        if never_read_only(&self.folded) {
            return false;
        }
        let builtin_schema = !qualified || schema.is_some_and(|s| s.names("pg_catalog"));
        (builtin_schema && listed(&READ_ONLY_BUILTINS, &self.folded))
            || self.extra.contains(&self.folded)
    }
}

fn is_any(token: &Token<'_>, keywords: &[&str]) -> bool {
    keywords.iter().any(|k| token.is_keyword(k))
}

/// A routing hint in the block comments before the first token; the first hint wins.
fn leading_hint(sql: &[u8]) -> Option<Hint> {
    let mut rest = sql;
    loop {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        rest = &rest[start..];
        if rest.starts_with(b"--") {
            let end = rest.iter().position(|&b| b == b'\n')?;
            rest = &rest[end..];
        } else if rest.starts_with(b"/*") {
            let (body, after) = block_comment(rest)?;
            if let Some(hint) = hint_in(body) {
                return Some(hint);
            }
            rest = after;
        } else {
            return None;
        }
    }
}

/// Splits `/* body */ after` (comments nest, as for the server); None when unterminated,
/// as the server then runs nothing.
fn block_comment(sql: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut depth = 0u32;
    let mut i = 0;
    while i + 1 < sql.len() {
        match (sql[i], sql[i + 1]) {
            (b'/', b'*') => depth += 1,
            (b'*', b'/') => depth -= 1,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
        if depth == 0 {
            return Some((&sql[2..i - 2], &sql[i..]));
        }
    }
    None
}

/// The hint a comment body spells, ignoring whitespace and ASCII case.
fn hint_in(body: &[u8]) -> Option<Hint> {
    let spells = |word: &[u8]| {
        body.iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(u8::to_ascii_lowercase)
            .eq(word.iter().copied())
    };
    if spells(b"pgweir:primary") {
        Some(Hint::Primary)
    } else if spells(b"pgweir:replica") {
        Some(Hint::Replica)
    } else {
        None
    }
}

/// Recognises the whole text as `SET [SESSION] pgweir.route TO|= value`, followed by
/// nothing but `;`s; the value may be an identifier, a quoted identifier or a string.
pub fn route_setting(sql: &[u8]) -> Option<RouteSetting> {
    let mut statements = Statements::new(sql);
    let mut empty_start = true;
    while empty_start {
        statements.next_statement().then_some(())?;
        let first = statements.next_token();
        empty_start = first.is_none();
        if let Some(first) = first {
            first.is_keyword("set").then_some(())?;
        }
    }
    let mut token = statements.next_token()?;
    if token.is_keyword("session") {
        token = statements.next_token()?;
    }
    token.names("pgweir").then_some(())?;
    (statements.next_token()?.kind == TokenKind::Dot).then_some(())?;
    statements.next_token()?.names("route").then_some(())?;
    let assign = statements.next_token()?;
    (assign.is_keyword("to") || assign.text == b"=").then_some(())?;
    let setting = setting_value(&statements.next_token()?)?;
    statements.next_token().is_none().then_some(())?;
    while statements.next_statement() {
        statements.next_token().is_none().then_some(())?;
    }
    Some(setting)
}

fn setting_value(token: &Token<'_>) -> Option<RouteSetting> {
    let text = match token.kind {
        TokenKind::String => token.text.strip_prefix(b"'")?.strip_suffix(b"'")?,
        _ => token.ident_text()?,
    };
    let is = |word: &str| match token.kind {
        TokenKind::QuotedIdent => text == word.as_bytes(),
        _ => text.eq_ignore_ascii_case(word.as_bytes()),
    };
    if is("primary") {
        Some(RouteSetting::Primary)
    } else if is("replica") {
        Some(RouteSetting::Replica)
    } else if is("auto") {
        Some(RouteSetting::Auto)
    } else {
        None
    }
}

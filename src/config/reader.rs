//! Walks a parsed TOML document on behalf of the section builders in [`super::load`].
//!
//! It hands out typed values key by key, expands `${ENV}` in every string, turns each
//! mismatch into a [`Problem`] carrying the key path and line, and finally reports the
//! keys nobody asked for. Problems are collected, never returned early, so one run
//! shows everything that is wrong.

use std::fmt::Display;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use super::duration::{duration_from_seconds, parse_duration};
use super::env::expand;
use super::error::Problem;
use super::hint;
use super::Secret;
use crate::secret::StoredSecret;

/// Environment lookup, injectable so tests need not touch the process environment.
pub(super) type EnvLookup<'e> = &'e dyn Fn(&str) -> Option<String>;

/// The collecting side of the walk: line numbering, environment and the problem list.
pub(super) struct Reader<'e> {
    /// Byte offset at which each line starts, for turning spans into line numbers.
    line_starts: Vec<usize>,
    env: EnvLookup<'e>,
    problems: Vec<Problem>,
    /// Keys nobody asked for: reported once every table's known keys are in, so the message
    /// can name the table a key belongs in.
    unknown: Vec<Unknown>,
    /// The keys each finished table knows, by dotted path.
    known: Vec<(String, Vec<String>)>,
}

/// A key no getter took.
struct Unknown {
    table: String,
    key: String,
    path: String,
    line: Option<usize>,
}

/// One TOML table being read: where it is, and which of its keys were taken so far.
pub(super) struct Section<'a> {
    /// Dotted path of the table, empty for the document root.
    path: String,
    table: &'a dyn TableLike,
    /// Where the table starts, for problems about keys it lacks.
    line: Option<usize>,
    taken: Vec<&'a str>,
}

/// A value that was present, with what is needed to complain about it.
struct Entry<'a> {
    path: String,
    item: &'a Item,
    line: Option<usize>,
}

impl<'a> Section<'a> {
    /// The whole document, whose problems have no table name in front.
    pub(super) fn root(table: &'a dyn TableLike) -> Self {
        Section {
            path: String::new(),
            table,
            line: None,
            taken: Vec::new(),
        }
    }

    /// The dotted path of one of this table's keys.
    pub(super) fn key_path(&self, key: &str) -> String {
        let key = quote_key(key);
        if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether the table has an entry (or an empty table) under `key`.
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Whether the table has no entries at all.
    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(super) fn line(&self) -> Option<usize> {
        self.line
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }
}

impl<'e> Reader<'e> {
    pub(super) fn new(text: &str, env: EnvLookup<'e>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Reader {
            line_starts,
            env,
            problems: Vec::new(),
            unknown: Vec::new(),
            known: Vec::new(),
        }
    }

    /// The 1-based line holding the start of `span`.
    pub(super) fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        let start = span?.start;
        Some(self.line_starts.partition_point(|&s| s <= start))
    }

    pub(super) fn problem(&mut self, key: String, line: Option<usize>, message: impl Display) {
        self.problems.push(Problem {
            line,
            key,
            message: message.to_string(),
        });
    }

    /// All problems, in file order; those without a line come last.
    pub(super) fn into_problems(mut self) -> Vec<Problem> {
        for u in std::mem::take(&mut self.unknown) {
            let message = hint::unknown_key(&u.table, &u.key, &self.known);
            self.problem(u.path, u.line, message);
        }
        self.problems
            .sort_by_key(|p| (p.line.is_none(), p.line.unwrap_or(0)));
        self.problems
    }

    /// Records that `key` is missing, if it is.
    pub(super) fn require(&mut self, sec: &Section<'_>, key: &str) {
        if !sec.has(key) {
            self.problem(sec.key_path(key), sec.line, "is required");
        }
    }

    /// Records a problem with `key` of `sec` found after reading it, such as a rule
    /// between two keys, at the line of the key's value.
    pub(super) fn key_problem(&mut self, sec: &Section<'_>, key: &str, message: impl Display) {
        let span = sec
            .table
            .get_key_value(key)
            .and_then(|(k, item)| item.span().or_else(|| k.span()));
        let line = self.line(span);
        self.problem(sec.key_path(key), line, message);
    }

    /// Notes every key of `sec` that no getter took, and the keys it knows.
    pub(super) fn finish(&mut self, sec: Section<'_>) {
        for (key, _) in sec.table.iter() {
            if !sec.taken.contains(&key) {
                let span = sec.table.get_key_value(key).and_then(|(k, _)| k.span());
                self.unknown.push(Unknown {
                    table: sec.path.clone(),
                    key: key.to_owned(),
                    path: sec.key_path(key),
                    line: self.line(span),
                });
            }
        }
        let known = sec.taken.iter().map(|k| (*k).to_owned()).collect();
        self.known.push((sec.path, known));
    }

    /// Takes `key` from `sec`, marking it known; `None` if absent.
    fn take<'a>(&mut self, sec: &mut Section<'a>, key: &'a str) -> Option<Entry<'a>> {
        sec.taken.push(key);
        let (k, item) = sec.table.get_key_value(key)?;
        let line = self.line(item.span().or_else(|| k.span()));
        Some(Entry {
            path: sec.key_path(key),
            item,
            line,
        })
    }

    fn wrong_type(&mut self, entry: &Entry<'_>, expected: &str) {
        let found = describe(entry.item);
        let message = format!("expected {expected}, found {found}");
        self.problem(entry.path.clone(), entry.line, message);
    }

    /// Passes a value through, or records why `entry` was rejected.
    fn check<T, E: Display>(&mut self, entry: &Entry<'_>, result: Result<T, E>) -> Option<T> {
        result
            .map_err(|e| self.problem(entry.path.clone(), entry.line, e))
            .ok()
    }

    /// [`Reader::table`], or `empty` standing in for a table the file lacks, so its getters
    /// still run and the keys it knows are recorded for [`hint`].
    pub(super) fn table_or<'a>(
        &mut self,
        sec: &mut Section<'a>,
        key: &'a str,
        empty: &'a dyn TableLike,
    ) -> Section<'a> {
        self.table(sec, key).unwrap_or_else(|| Section {
            path: sec.key_path(key),
            table: empty,
            line: None,
            taken: Vec::new(),
        })
    }

    /// The sub-table at `key`; `None` if absent or not a table.
    pub(super) fn table<'a>(&mut self, sec: &mut Section<'a>, key: &'a str) -> Option<Section<'a>> {
        let entry = self.take(sec, key)?;
        let Some(table) = entry.item.as_table_like() else {
            self.wrong_type(&entry, "a table");
            return None;
        };
        Some(Section {
            path: entry.path,
            table,
            line: entry.line,
            taken: Vec::new(),
        })
    }

    /// A list of tables, written as an array of inline tables (`key = [{ ... }, ...]`) or
    /// as `[[section.key]]` blocks; each is named `key[index]` in problems. An element
    /// that is not a table is a problem and left out.
    pub(super) fn table_list<'a>(
        &mut self,
        sec: &mut Section<'a>,
        key: &'a str,
    ) -> Option<Vec<Section<'a>>> {
        let entry = self.take(sec, key)?;
        let elements: Vec<_> = match entry.item {
            Item::ArrayOfTables(blocks) => blocks
                .iter()
                .map(|t| (Ok(t as &dyn TableLike), t.span()))
                .collect(),
            Item::Value(Value::Array(array)) => {
                array.iter().map(|v| (inline_table(v), v.span())).collect()
            }
            _ => {
                self.wrong_type(&entry, "an array of tables");
                return None;
            }
        };
        let mut sections = Vec::new();
        for (i, (table, span)) in elements.into_iter().enumerate() {
            let path = format!("{}[{i}]", entry.path);
            let line = self.line(span);
            match table {
                Ok(table) => sections.push(Section {
                    path,
                    table,
                    line,
                    taken: Vec::new(),
                }),
                Err(found) => self.problem(path, line, format!("expected a table, found {found}")),
            }
        }
        Some(sections)
    }

    /// Every entry of `sec` as a named sub-table (for `[databases]`, `[users]`), with a
    /// problem for each entry that is not a table.
    pub(super) fn tables<'a>(&mut self, sec: &mut Section<'a>) -> Vec<(String, Section<'a>)> {
        let names: Vec<&'a str> = sec.table.iter().map(|(key, _)| key).collect();
        names
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), self.table(sec, name)?)))
            .collect()
    }

    /// A string, with `${ENV}` references expanded.
    pub(super) fn string<'a>(&mut self, sec: &mut Section<'a>, key: &'a str) -> Option<String> {
        let entry = self.take(sec, key)?;
        self.expanded(&entry)
    }

    fn expanded(&mut self, entry: &Entry<'_>) -> Option<String> {
        let Some(raw) = entry.item.as_str() else {
            self.wrong_type(entry, "a string");
            return None;
        };
        let expanded = expand(raw, self.env);
        self.check(entry, expanded)
    }

    /// An array of strings, each `${ENV}`-expanded and then passed through `each`, which
    /// may rewrite it or refuse it with a message. Refused elements and elements that are
    /// not strings are problems (named `key[index]`) and left out.
    pub(super) fn strings<'a>(
        &mut self,
        sec: &mut Section<'a>,
        key: &'a str,
        each: impl Fn(String) -> Result<String, String>,
    ) -> Option<Vec<String>> {
        let entry = self.take(sec, key)?;
        let Some(array) = entry.item.as_array() else {
            self.wrong_type(&entry, "an array of strings");
            return None;
        };
        let mut strings = Vec::new();
        for (i, value) in array.iter().enumerate() {
            let path = format!("{}[{i}]", entry.path);
            let line = self.line(value.span());
            let checked = match value.as_str() {
                Some(raw) => expand(raw, self.env)
                    .map_err(|e| e.to_string())
                    .and_then(&each),
                None => Err(format!(
                    "expected a string, found {}",
                    describe_value(value)
                )),
            };
            match checked {
                Ok(text) => strings.push(text),
                Err(message) => self.problem(path, line, message),
            }
        }
        Some(strings)
    }

    /// A string, `${ENV}`-expanded and then converted by `convert`, which says why it
    /// refuses a value (a message that follows the key).
    pub(super) fn parsed<'a, T>(
        &mut self,
        sec: &mut Section<'a>,
        key: &'a str,
        convert: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let entry = self.take(sec, key)?;
        let text = self.expanded(&entry)?;
        let converted = convert(&text);
        self.check(&entry, converted)
    }

    /// An integer within `range`, converted to the field's type.
    pub(super) fn int<'a, T: TryFrom<i64>>(
        &mut self,
        sec: &mut Section<'a>,
        key: &'a str,
        range: RangeInclusive<i64>,
    ) -> Option<T> {
        let entry = self.take(sec, key)?;
        let Some(n) = entry.item.as_integer() else {
            self.wrong_type(&entry, "an integer");
            return None;
        };
        let converted = T::try_from(n).ok().filter(|_| range.contains(&n));
        let rule = match (range.start(), range.end()) {
            (min, &i64::MAX) => format!("must be at least {min}"),
            (min, max) => format!("must be between {min} and {max}"),
        };
        self.check(&entry, converted.ok_or(rule))
    }

    /// A boolean.
    pub(super) fn boolean<'a>(&mut self, sec: &mut Section<'a>, key: &'a str) -> Option<bool> {
        let entry = self.take(sec, key)?;
        let Some(b) = entry.item.as_bool() else {
            self.wrong_type(&entry, "a boolean");
            return None;
        };
        Some(b)
    }

    /// A duration: an integer of seconds or a string with a unit.
    pub(super) fn duration<'a>(&mut self, sec: &mut Section<'a>, key: &'a str) -> Option<Duration> {
        let entry = self.take(sec, key)?;
        let parsed = match entry.item.as_integer() {
            Some(seconds) => duration_from_seconds(seconds),
            None if entry.item.is_str() => parse_duration(&self.expanded(&entry)?),
            None => {
                self.wrong_type(&entry, "an integer of seconds or a string like \"5s\"");
                return None;
            }
        };
        self.check(&entry, parsed)
    }

    /// A password or verifier, which must be in a form [`StoredSecret`] understands.
    pub(super) fn secret<'a>(&mut self, sec: &mut Section<'a>, key: &'a str) -> Option<Secret> {
        let entry = self.take(sec, key)?;
        let text = self.expanded(&entry)?;
        let parsed = StoredSecret::parse(&text).map(|_| Secret(text));
        self.check(&entry, parsed)
    }

    /// One of a fixed set of names (compared ignoring ASCII case), mapped to its value.
    pub(super) fn choice<'a, T: Copy>(
        &mut self,
        sec: &mut Section<'a>,
        key: &'a str,
        options: &[T],
        name: fn(T) -> &'static str,
    ) -> Option<T> {
        let entry = self.take(sec, key)?;
        let text = self.expanded(&entry)?;
        let found = options
            .iter()
            .copied()
            .find(|&option| name(option).eq_ignore_ascii_case(&text));
        let names: Vec<&str> = options.iter().map(|&option| name(option)).collect();
        let rule = format!("must be one of {}, not {text:?}", names.join(", "));
        self.check(&entry, found.ok_or(rule))
    }
}

/// The key as written in a dotted path: bare if TOML allows it, quoted otherwise.
fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// The TOML type of an item, with its article, for "expected X, found Y".
fn describe(item: &Item) -> &'static str {
    match item {
        Item::Value(value) => describe_value(value),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::None => "nothing",
    }
}

/// An array element as a table, or what it is instead.
fn inline_table(value: &Value) -> Result<&dyn TableLike, &'static str> {
    match value {
        Value::InlineTable(table) => Ok(table),
        other => Err(describe_value(other)),
    }
}

/// The TOML type of a value (an array element, say), with its article.
fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "an inline table",
    }
}

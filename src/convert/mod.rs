//! `pgweir convert`: turns a pgbouncer.ini into the pgweir.toml that does the same.
//!
//! [`ini`] reads the file (and its `%include`s) as PgBouncer does, [`connstr`] the
//! `key=value` lists of `[databases]` and `[users]`, and [`keys`] says what each PgBouncer
//! setting becomes. This module writes the TOML: every setting either carries over or is
//! written as a comment at its place saying why not, and is listed in
//! [`Conversion::dropped`]; nothing is left out silently. Where PgBouncer's default differs
//! from pgweir's (`pool_mode`, `auth_type`, `listen_addr`, `unix_socket_dir`), the PgBouncer
//! value is written out, and a database without `host` gets the socket directory PgBouncer
//! would have connected through. Pure but for reading the files; `main` prints the result.

pub mod connstr;
mod ini;
mod keys;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::{Key, Kind, Section};
use keys::{Target, Why};

/// Why a pgbouncer.ini could not be read at all.
#[derive(Debug, Error)]
pub enum ConvertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: %include nests too deep (does a file include itself?)", .0.display())]
    IncludeDepth(PathBuf),
}

/// A setting that did not carry over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub file: PathBuf,
    pub line: usize,
    /// As written: `key`, or `[databases] name: key` for a connection-string key.
    pub setting: String,
    pub why: String,
}

/// The pgweir.toml text and what did not make it into it.
#[derive(Debug)]
pub struct Conversion {
    pub toml: String,
    pub dropped: Vec<Dropped>,
}

/// Converts the pgbouncer.ini at `path`. Relative file names in it (auth_file, TLS files)
/// are made absolute from the file's directory, so the result works from anywhere.
pub fn convert(path: &Path) -> Result<Conversion, ConvertError> {
    let entries = ini::read(path)?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut b = Builder {
        base: std::path::absolute(base).unwrap_or_else(|_| base.to_owned()),
        ..Builder::default()
    };
    for e in &entries {
        match e.section.as_str() {
            "pgbouncer" => b.general(e),
            "databases" => b.named(e, true),
            "users" => b.named(e, false),
            "peers" => b.drop(e, Place::Pgweir, e.key.clone(), PEERS.text()),
            other => b.drop(
                e,
                Place::Pgweir,
                e.key.clone(),
                format!("unknown section [{other}]"),
            ),
        }
    }
    b.socket_hosts();
    b.pgbouncer_defaults();
    Ok(Conversion {
        toml: b.render(path),
        dropped: b.dropped,
    })
}

/// Where PgBouncer puts its socket, and looks for servers' sockets, unless told.
const PGBOUNCER_SOCKET_DIR: &str = "/tmp";

const PEERS: Why = Why::NotSupported("[peers]: several pgweir processes share no cancel keys yet");

/// A table of the output being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Pgweir,
    Pool,
    Database(usize),
    User(usize),
}

/// One line of a table: a setting or a comment.
#[derive(Debug)]
enum Line {
    Set { key: String, value: String },
    Comment(String),
}

#[derive(Debug, Default)]
struct Table {
    lines: Vec<Line>,
}

impl Table {
    /// Sets `key`; a later line of the ini wins over an earlier one, as in PgBouncer.
    fn set(&mut self, key: &str, value: String) {
        for line in &mut self.lines {
            if let Line::Set { key: k, value: v } = line {
                if k == key {
                    *v = value;
                    return;
                }
            }
        }
        self.lines.push(Line::Set {
            key: key.to_owned(),
            value,
        });
    }

    fn has(&self, key: &str) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, Line::Set { key: k, .. } if k == key))
    }
}

#[derive(Debug, Default)]
struct Builder {
    base: PathBuf,
    pgweir: Table,
    pool: Table,
    databases: Vec<(String, Table)>,
    users: Vec<(String, Table)>,
    dropped: Vec<Dropped>,
    /// `[pgbouncer]` keys the ini sets, converted or not.
    seen: Vec<String>,
    /// Databases without `host`, which PgBouncer reaches through its socket directory.
    socket_databases: Vec<(usize, ini::Entry, String)>,
}

impl Builder {
    fn table(&mut self, place: Place) -> &mut Table {
        match place {
            Place::Pgweir => &mut self.pgweir,
            Place::Pool => &mut self.pool,
            Place::Database(i) => &mut self.databases[i].1,
            Place::User(i) => &mut self.users[i].1,
        }
    }

    /// Records a setting that does not carry over, and comments it at `place`.
    fn drop(&mut self, e: &ini::Entry, place: Place, setting: String, why: String) {
        let name = e.file.file_name().map_or_else(
            || e.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let comment = format!("not converted ({name}:{}): {setting} — {why}", e.line);
        self.table(place).lines.push(Line::Comment(comment));
        self.dropped.push(Dropped {
            file: e.file.clone(),
            line: e.line,
            setting,
            why,
        });
    }

    /// One `[pgbouncer]` setting.
    fn general(&mut self, e: &ini::Entry) {
        self.seen.push(e.key.clone());
        let shown = format!("{} = {}", e.key, e.value);
        match keys::general(&e.key) {
            None => self.drop(e, Place::Pgweir, shown, "unknown setting".to_owned()),
            Some((_, Target::Skip(why))) => self.drop(e, Place::Pgweir, shown, why.text()),
            Some((section, Target::Key(key, form))) => {
                let place = match section {
                    Section::Pgweir => Place::Pgweir,
                    Section::Pool => Place::Pool,
                };
                match self.value(form, &e.value) {
                    Ok(value) => self.table(place).set(key, value),
                    Err(why) => self.drop(e, place, shown, why),
                }
            }
        }
    }

    /// One `[databases]` (`database`) or `[users]` entry: a table of its own.
    fn named(&mut self, e: &ini::Entry, database: bool) {
        let (section, list) = if database {
            ("databases", &mut self.databases)
        } else {
            ("users", &mut self.users)
        };
        // A name given twice: the later entry wins, as in PgBouncer.
        let index = match list.iter().position(|(name, _)| *name == e.key) {
            Some(i) => {
                list[i].1 = Table::default();
                i
            }
            None => {
                list.push((e.key.clone(), Table::default()));
                list.len() - 1
            }
        };
        let place = if database {
            Place::Database(index)
        } else {
            Place::User(index)
        };
        let whole = format!("[{section}] {} = {}", e.key, e.value);
        if database && e.key == "*" {
            let why = "the `*` fallback database is not supported: list each database by name";
            return self.drop(e, place, whole, why.to_owned());
        }
        let pairs = match connstr::parse(&e.value) {
            Ok(pairs) => pairs,
            Err(why) => return self.drop(e, place, whole, why),
        };
        for (key, raw) in pairs {
            let shown = format!("[{section}] {}: {key}={raw}", e.key);
            let target = if database {
                keys::database(&key)
            } else {
                keys::user(&key)
            };
            match target {
                None => self.drop(e, place, shown, "unknown setting".to_owned()),
                Some(Target::Skip(why)) => self.drop(e, place, shown, why.text()),
                Some(Target::Key(to, form)) => match self.value(form, &raw) {
                    Ok(value) => self.table(place).set(to, value),
                    Err(why) => self.drop(e, place, shown, why),
                },
            }
        }
        if database && !self.table(place).has("host") {
            self.socket_databases.push((index, e.clone(), whole));
        }
    }

    /// Databases without `host` connect through `unix_socket_dir` in PgBouncer; they get it
    /// as their host, or are reported when the ini turned the socket off.
    fn socket_hosts(&mut self) {
        let dir = self.pgweir.lines.iter().find_map(|l| match l {
            Line::Set { key, value } if key == "unix_socket_dir" => Some(value.clone()),
            _ => None,
        });
        let dir = dir.unwrap_or_else(|| toml_str(PGBOUNCER_SOCKET_DIR));
        for (index, e, whole) in std::mem::take(&mut self.socket_databases) {
            let place = Place::Database(index);
            if dir == toml_str("") {
                let why = "no host, and unix_socket_dir is off: set host".to_owned();
                self.drop(&e, place, whole, why);
                continue;
            }
            let table = self.table(place);
            let remark = "no host in pgbouncer.ini: PgBouncer's socket directory".to_owned();
            table.lines.push(Line::Comment(remark));
            table.set("host", dir.clone());
        }
    }

    /// PgBouncer's defaults where pgweir's differ, written out so nothing changes, for the
    /// keys the ini does not set (one it set but that did not convert is reported instead).
    fn pgbouncer_defaults(&mut self) {
        let seen = |key: &str| self.seen.iter().any(|k| k == key);
        let (pool_mode, auth_type, listen_addr, socket_dir) = (
            seen("pool_mode"),
            seen("auth_type"),
            seen("listen_addr"),
            seen("unix_socket_dir"),
        );
        if !pool_mode {
            self.pool.lines.push(Line::Comment(
                "PgBouncer's default; pgweir's is transaction".into(),
            ));
            self.pool.set("pool_mode", toml_str("session"));
        }
        if !auth_type {
            self.pgweir.lines.push(Line::Comment(
                "PgBouncer's default; pgweir's is scram-sha-256".into(),
            ));
            self.pgweir.set("auth_type", toml_str("md5"));
        }
        if !listen_addr {
            self.pgweir.lines.push(Line::Comment(
                "PgBouncer's default: its Unix socket only; pgweir's is 127.0.0.1".into(),
            ));
            self.pgweir.set("listen_addr", toml_str(""));
        }
        if !socket_dir {
            self.pgweir.lines.push(Line::Comment(
                "PgBouncer's default; pgweir has no socket unless it is set".into(),
            ));
            self.pgweir
                .set("unix_socket_dir", toml_str(PGBOUNCER_SOCKET_DIR));
        }
    }

    /// The TOML form of `raw`; relative paths are taken from the ini's directory.
    fn value(&self, form: Kind, raw: &str) -> Result<String, String> {
        toml_value(form, raw, &self.base)
    }

    fn render(&self, source: &Path) -> String {
        let mut out = format!(
            "# Converted from {} by `pgweir convert`. Settings that did not carry over are\n\
             # comments at their place, each saying why.\n",
            source.display()
        );
        let sections = [
            ("pgweir".to_owned(), &self.pgweir),
            ("pool".to_owned(), &self.pool),
        ];
        let mut all: Vec<(String, &Table)> = sections.into_iter().collect();
        all.extend(
            self.databases
                .iter()
                .map(|(name, t)| (format!("databases.{}", toml_key(name)), t)),
        );
        all.extend(
            self.users
                .iter()
                .map(|(name, t)| (format!("users.{}", toml_key(name)), t)),
        );
        for (i, (header, table)) in all.into_iter().enumerate() {
            // A database or user with nothing carried over is only a comment, so the
            // result stays valid; [pgweir] and [pool] always stand.
            let live = i < 2 || table.lines.iter().any(|l| matches!(l, Line::Set { .. }));
            let mark = if live { "" } else { "# " };
            out.push_str(&format!("\n{mark}[{header}]\n"));
            for line in &table.lines {
                match line {
                    Line::Set { key, value } => out.push_str(&format!("{key} = {value}\n")),
                    Line::Comment(text) => out.push_str(&format!("# {text}\n")),
                }
            }
        }
        out
    }
}

/// The TOML form of `raw`, a value written as PgBouncer takes it; a relative path is joined
/// to `base`.
fn toml_value(form: Kind, raw: &str, base: &Path) -> Result<String, String> {
    match form {
        Kind::Int => match raw.parse::<i64>() {
            Ok(n) => Ok(n.to_string()),
            Err(_) => Err(format!("{raw:?} is not a whole number")),
        },
        Kind::Bool => match raw.to_ascii_lowercase().as_str() {
            "1" | "yes" | "on" | "true" => Ok("true".into()),
            "0" | "no" | "off" | "false" => Ok("false".into()),
            _ => Err(format!("{raw:?} is not a boolean")),
        },
        Kind::Duration => duration(raw),
        Kind::Millis => match raw.trim().parse::<u64>() {
            Ok(ms) => Ok(toml_str(&format!("{ms}ms"))),
            Err(_) => Err(format!("{raw:?} is not a whole number of milliseconds")),
        },
        Kind::Str => Ok(toml_str(raw)),
        // Empty is PgBouncer's "not set" (for unix_socket_dir: no socket).
        Kind::Path if raw.is_empty() => Ok(toml_str("")),
        Kind::Path => {
            let path = Path::new(raw);
            let path = if path.is_relative() {
                base.join(path)
            } else {
                path.to_owned()
            };
            Ok(toml_str(&path.to_string_lossy()))
        }
        Kind::List => {
            let items: Vec<String> = raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(toml_str)
                .collect();
            Ok(format!("[{}]", items.join(", ")))
        }
        Kind::Choice(options) => {
            let lower = raw.to_ascii_lowercase();
            if options.contains(&lower.as_str()) {
                Ok(toml_str(&lower))
            } else {
                Err(format!("{raw:?} is not one of {}", options.join(", ")))
            }
        }
    }
}

/// The TOML value for `key` written as PgBouncer takes it (for the console's SET); `None`
/// when `key` is pgweir's own.
pub fn pgbouncer_value(key: &Key, raw: &str) -> Option<Result<String, String>> {
    key.pgbouncer?;
    Some(toml_value(key.kind, raw, Path::new("")))
}

/// A PgBouncer time value (seconds, possibly fractional, or with a unit) as pgweir writes
/// it: whole seconds as a bare number, anything finer in milliseconds.
fn duration(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let amount: f64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a time value"))?;
    let ms_per_unit = match unit.trim() {
        "" | "s" => 1000.0,
        "ms" => 1.0,
        "us" => 0.001,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        other => return Err(format!("unknown time unit {other:?} in {raw:?}")),
    };
    let ms = (amount * ms_per_unit).round();
    if !(0.0..=1e15).contains(&ms) {
        return Err(format!("{raw:?} is out of range"));
    }
    // Round a nonzero value below a millisecond up, so it does not turn into "off".
    let ms = if ms == 0.0 && amount > 0.0 { 1.0 } else { ms } as u64;
    Ok(if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        toml_str(&format!("{ms}ms"))
    })
}

/// `text` as a TOML string, quoted and escaped.
fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A database or user name as a TOML key: bare when TOML allows it, quoted otherwise.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_owned()
    } else {
        toml_str(name)
    }
}

#[cfg(test)]
mod tests;

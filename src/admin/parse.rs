//! The admin console's command grammar, PgBouncer's: one command word and at most one
//! argument, separated by blanks, with an optional trailing `;`. Words are letters, digits
//! and `_`, or double-quoted (`""` inside stands for `"`). Command words are matched
//! without regard to case; an argument (a database name) is kept as written. `SET key =
//! value` (or `TO`) takes a value as a single-quoted string (`''` inside stands for `'`) or
//! a bare word or number. No I/O: a query text goes in, a [`Command`] or the error to show
//! comes out.

use std::fmt;

/// What a SHOW asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Pools,
    Stats,
    StatsTotals,
    Clients,
    Servers,
    Databases,
    Users,
    Config,
    Lists,
    State,
    Version,
    Help,
    Fds,
    Sockets,
    ActiveSockets,
    Mem,
    DnsHosts,
    DnsZones,
    Totals,
    StatsAverages,
    Peers,
    Fleet,
}

impl Show {
    const ALL: [(&'static str, Show); 22] = [
        ("pools", Show::Pools),
        ("stats", Show::Stats),
        ("stats_totals", Show::StatsTotals),
        ("clients", Show::Clients),
        ("servers", Show::Servers),
        ("databases", Show::Databases),
        ("users", Show::Users),
        ("config", Show::Config),
        ("lists", Show::Lists),
        ("state", Show::State),
        ("version", Show::Version),
        ("help", Show::Help),
        ("fds", Show::Fds),
        ("sockets", Show::Sockets),
        ("active_sockets", Show::ActiveSockets),
        ("mem", Show::Mem),
        ("dns_hosts", Show::DnsHosts),
        ("dns_zones", Show::DnsZones),
        ("totals", Show::Totals),
        ("stats_averages", Show::StatsAverages),
        ("peers", Show::Peers),
        ("fleet", Show::Fleet),
    ];

    fn named(word: &str) -> Option<Show> {
        let found = Show::ALL.iter().find(|(n, _)| n.eq_ignore_ascii_case(word));
        found.map(|(_, s)| *s)
    }
}

/// How SHUTDOWN lets the process go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    Immediate,
    WaitForServers,
    WaitForClients,
}

/// One admin console command. A database argument is `None` when the command applies to
/// every database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    Pause(Option<String>),
    Resume(Option<String>),
    Disable(String),
    Enable(String),
    Reconnect(Option<String>),
    Kill(Option<String>),
    KillClient(u64),
    Suspend,
    Shutdown(ShutdownMode),
    Reload,
    WaitClose(Option<String>),
    /// `SET key = value`: the key as written, lowercased; the value unquoted.
    Set {
        key: String,
        value: String,
    },
}

impl Command {
    /// The command word, as CommandComplete and error messages spell it.
    pub fn word(&self) -> &'static str {
        match self {
            Command::Show(_) => "SHOW",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Disable(_) => "DISABLE",
            Command::Enable(_) => "ENABLE",
            Command::Reconnect(_) => "RECONNECT",
            Command::Kill(_) => "KILL",
            Command::KillClient(_) => "KILL_CLIENT",
            Command::Suspend => "SUSPEND",
            Command::Shutdown(_) => "SHUTDOWN",
            Command::Reload => "RELOAD",
            Command::WaitClose(_) => "WAIT_CLOSE",
            Command::Set { .. } => "SET",
        }
    }
}

/// Why a query is not a command; the text is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads one command from a Query's text.
pub fn parse(query: &str) -> Result<Command, ParseError> {
    let invalid = || ParseError(format!("invalid command '{query}', use SHOW HELP;"));
    if let Some(set) = parse_set(query) {
        return set.ok_or_else(invalid);
    }
    let (word, arg) = split(query).ok_or_else(invalid)?;
    let word = word.to_ascii_lowercase();
    let db = || arg.clone();
    let required = |what: &str| arg.clone().ok_or_else(|| ParseError(what.to_owned()));
    let none = |c: Command| if arg.is_some() { Err(invalid()) } else { Ok(c) };
    match word.as_str() {
        "show" => arg
            .as_deref()
            .and_then(Show::named)
            .map(Command::Show)
            .ok_or_else(invalid),
        "pause" => Ok(Command::Pause(db())),
        "resume" => Ok(Command::Resume(db())),
        "disable" => Ok(Command::Disable(required("a database is required")?)),
        "enable" => Ok(Command::Enable(required("a database is required")?)),
        "reconnect" => Ok(Command::Reconnect(db())),
        "kill" => Ok(Command::Kill(db())),
        "kill_client" => {
            let id = required("a client id is required")?;
            let id = id
                .parse()
                .map_err(|_| ParseError(format!("invalid client id '{id}'")))?;
            Ok(Command::KillClient(id))
        }
        "suspend" => none(Command::Suspend),
        "reload" => none(Command::Reload),
        "shutdown" => shutdown_mode(arg.as_deref())
            .map(Command::Shutdown)
            .ok_or_else(invalid),
        "wait_close" => Ok(Command::WaitClose(db())),
        _ => Err(invalid()),
    }
}

/// `SET key = value` or `SET key TO value`; `None` when the query is not a SET at all,
/// `Some(None)` when it is one that cannot be read.
fn parse_set(query: &str) -> Option<Option<Command>> {
    let text = query.trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    let (word, rest) = take_word(text)?;
    if !word.eq_ignore_ascii_case("set") || !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let read = || {
        let (key, rest) = take_word(rest.trim_start())?;
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('=') {
            Some(r) => r,
            None => {
                let (to, r) = take_word(rest)?;
                to.eq_ignore_ascii_case("to").then_some(r)?
            }
        };
        let value = set_value(rest.trim())?;
        Some(Command::Set {
            key: key.to_ascii_lowercase(),
            value,
        })
    };
    Some(read())
}

/// A SET value: `'quoted'` (with `''` for a quote), or one bare token without blanks.
fn set_value(text: &str) -> Option<String> {
    let Some(quoted) = text.strip_prefix('\'') else {
        let bare = !text.is_empty() && !text.contains(char::is_whitespace) && !text.contains('\'');
        return bare.then(|| text.to_owned());
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
        } else if quoted[i + 1..].starts_with('\'') {
            value.push('\'');
            chars.next();
        } else {
            return quoted[i + 1..].is_empty().then_some(value);
        }
    }
    None
}

fn shutdown_mode(arg: Option<&str>) -> Option<ShutdownMode> {
    match arg.map(str::to_ascii_lowercase).as_deref() {
        None => Some(ShutdownMode::Immediate),
        Some("wait_for_servers") => Some(ShutdownMode::WaitForServers),
        Some("wait_for_clients") => Some(ShutdownMode::WaitForClients),
        Some(_) => None,
    }
}

/// The command word and the argument, if the text has the shape `WORD [WORD] [;]`.
fn split(query: &str) -> Option<(String, Option<String>)> {
    let text = query.trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    let (word, rest) = take_word(text)?;
    if rest.is_empty() {
        return Some((word, None));
    }
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (arg, rest) = take_word(rest.trim_start())?;
    rest.is_empty().then_some((word, Some(arg)))
}

/// One word at the start of `text` (unquoted), and what follows it.
fn take_word(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        return take_quoted(quoted);
    }
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_owned(), &text[end..]))
}

/// The rest of a double-quoted word whose opening quote is already consumed.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let mut word = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            word.push(c);
        } else if text[i + 1..].starts_with('"') {
            word.push('"');
            chars.next();
        } else {
            return (!word.is_empty()).then(|| (word, &text[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_commands_ignore_case_blanks_and_a_trailing_semicolon() {
        assert_eq!(parse("SHOW POOLS"), Ok(Command::Show(Show::Pools)));
        assert_eq!(
            parse("  show\tstats_totals ; "),
            Ok(Command::Show(Show::StatsTotals))
        );
        assert_eq!(parse("Show \"servers\";"), Ok(Command::Show(Show::Servers)));
        assert_eq!(parse("show help;"), Ok(Command::Show(Show::Help)));
        assert_eq!(parse("SHOW FLEET"), Ok(Command::Show(Show::Fleet)));
    }

    #[test]
    fn anything_else_is_an_invalid_command() {
        for q in [
            "SHOW",
            "SHOW nothing",
            "SHOW POOLS STATS",
            "SHOW POOLS;;",
            "SELECT 1",
            "SHOW;POOLS",
        ] {
            let err = parse(q).unwrap_err();
            assert_eq!(
                err.0,
                format!("invalid command '{q}', use SHOW HELP;"),
                "{q}"
            );
        }
        assert!(parse("SHOW \"pools").is_err());
        assert!(parse("SHOW \"\"").is_err());
    }

    #[test]
    fn control_commands_take_their_arguments() {
        assert_eq!(parse("pause"), Ok(Command::Pause(None)));
        assert_eq!(parse("PAUSE MyDb"), Ok(Command::Pause(Some("MyDb".into()))));
        assert_eq!(
            parse("kill \"a \"\"b\"\"\""),
            Ok(Command::Kill(Some("a \"b\"".into())))
        );
        assert_eq!(parse("KILL_CLIENT 42;"), Ok(Command::KillClient(42)));
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(
            parse("shutdown WAIT_FOR_CLIENTS"),
            Ok(Command::Shutdown(ShutdownMode::WaitForClients))
        );
        assert_eq!(
            parse("SHUTDOWN"),
            Ok(Command::Shutdown(ShutdownMode::Immediate))
        );
        assert_eq!(parse("wait_close"), Ok(Command::WaitClose(None)));
    }

    #[test]
    fn control_commands_refuse_missing_or_extra_arguments() {
        assert_eq!(parse("DISABLE").unwrap_err().0, "a database is required");
        assert_eq!(
            parse("KILL_CLIENT x").unwrap_err().0,
            "invalid client id 'x'"
        );
        assert!(parse("RELOAD now").is_err());
        assert!(parse("SUSPEND all").is_err());
        assert!(parse("SHUTDOWN later").is_err());
    }

    #[test]
    fn set_takes_pgbouncer_s_forms() {
        let set = |key: &str, value: &str| {
            Ok(Command::Set {
                key: key.into(),
                value: value.into(),
            })
        };
        assert_eq!(
            parse("SET default_pool_size = 30"),
            set("default_pool_size", "30")
        );
        assert_eq!(
            parse("set Query_Wait_Timeout TO '1.5';"),
            set("query_wait_timeout", "1.5")
        );
        assert_eq!(parse("SET admin_users='a, b'"), set("admin_users", "a, b"));
        assert_eq!(
            parse("SET server_check_query = 'select ''x'''"),
            set("server_check_query", "select 'x'")
        );
        assert_eq!(parse("SET x = ''"), set("x", ""));
        for bad in [
            "SET",
            "SET x",
            "SET x =",
            "SET x = a b",
            "SET x = 'open",
            "SET x = 'a' b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("SET x = 1").unwrap().word(), "SET");
    }

    #[test]
    fn every_command_has_its_word() {
        assert_eq!(parse("kill_client 1").unwrap().word(), "KILL_CLIENT");
        assert_eq!(parse("show lists").unwrap().word(), "SHOW");
    }
}

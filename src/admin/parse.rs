//! The admin console's command grammar, PgBouncer's: one command word and at most one
//! argument, separated by blanks, with an optional trailing `;`. Words are letters, digits
//! and `_`, or double-quoted (`""` inside stands for `"`). Command words are matched
//! without regard to case; an argument (a database name) is kept as written. No I/O: a
//! query text goes in, a [`Command`] or the error to show comes out.

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
}

impl Show {
    const ALL: [(&'static str, Show); 12] = [
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
    fn every_command_has_its_word() {
        assert_eq!(parse("kill_client 1").unwrap().word(), "KILL_CLIENT");
        assert_eq!(parse("show lists").unwrap().word(), "SHOW");
    }
}

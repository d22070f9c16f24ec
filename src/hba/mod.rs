//! `auth_hba_file`: the subset of Postgres's pg_hba.conf that PgBouncer supports, parsed
//! once per (re)load and matched per login by [`crate::client::authenticate`]. Pure apart from
//! [`HbaFile::load`] reading the file and the `@file` lists it names.
//!
//! Lines are `TYPE DATABASE USER [ADDRESS [MASK]] METHOD`, with `#` comments, `\`
//! continuations and double-quoted names (quoting makes `all` a plain name). Types:
//! `local` (clients on the Unix socket), `host`, `hostssl`, `hostnossl` (TCP clients).
//! Databases and users are comma lists of names, `all`, `@file` (names read from a file
//! relative to this one's directory), and for databases `sameuser` and `replication` (which
//! matches nothing: pgweir refuses replication connections). Addresses are CIDR,
//! an address and a mask column, or `all`. Methods: trust, reject, md5, scram-sha-256,
//! password, cert, and on `local` lines peer (the OS user at the other end of the socket
//! must be the user named, as the kernel reports it). Anything else is a problem naming the line,
//! so a file pgweir would read differently from Postgres is refused, never half-applied.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How deep `@file` lists may include each other, so a loop is an error, not a hang.
const MAX_INCLUDE_DEPTH: usize = 10;
/// How many `@file` reads one load may make: within the depth limit, files naming each other
/// several times a line would otherwise take exponentially many.
const MAX_INCLUDE_READS: usize = 1000;

/// How a client whose connection matched a line must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Trust,
    Reject,
    Md5,
    ScramSha256,
    /// Cleartext password.
    Password,
    /// The CN of a verified client certificate must equal the user name.
    Cert,
    /// The OS user of the process at the other end of a Unix socket must be the user.
    Peer,
}

/// The line that decided a login, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    pub method: Method,
    pub line: usize,
}

/// A parsed hba file.
#[derive(Debug, Clone)]
pub struct HbaFile {
    /// As configured, for SHOW CONFIG and messages.
    pub path: PathBuf,
    rules: Vec<Rule>,
}

/// Everything wrong with an hba file, one entry per problem, each naming file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaError(pub Vec<String>);

impl fmt::Display for HbaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for HbaError {}

#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    origin: Origin,
    databases: Names,
    users: Names,
    method: Method,
}

/// Which connections a line's type and address take.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// `local`: the Unix socket.
    Local,
    Host {
        ssl: SslRequirement,
        address: Address,
    },
}

/// `host` matches both, `hostssl` TLS clients only, `hostnossl` plaintext ones only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslRequirement {
    Either,
    Tls,
    Plain,
}

/// A database or user column.
#[derive(Debug, Clone, Default)]
struct Names {
    all: bool,
    /// `sameuser` in the database column: the database named like the user.
    same_user: bool,
    names: HashSet<String>,
}

#[derive(Debug, Clone, Copy)]
enum Address {
    All,
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

/// One token of a line: its text and whether any of it was quoted (which takes away the
/// special meaning of keywords, `@` and `+`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    quoted: bool,
}

/// Reads the files an hba file refers to; [`std::fs::read_to_string`] outside tests.
type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

impl HbaFile {
    /// Reads and parses the file at `path` (relative to the working directory).
    pub fn load(path: &Path) -> Result<HbaFile, HbaError> {
        HbaFile::load_with(path, &|p| std::fs::read_to_string(p))
    }

    fn load_with(path: &Path, read: ReadFile<'_>) -> Result<HbaFile, HbaError> {
        let text = read(path)
            .map_err(|e| HbaError(vec![format!("cannot read {}: {e}", path.display())]))?;
        let reads = std::cell::Cell::new(0);
        let counted = |p: &Path| {
            reads.set(reads.get() + 1);
            if reads.get() > MAX_INCLUDE_READS {
                let why = format!("more than {MAX_INCLUDE_READS} @ file reads (a loop?)");
                return Err(std::io::Error::other(why));
            }
            read(p)
        };
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        for (line, record) in records(&text) {
            match parse_record(line, &record, path, &counted) {
                Ok(Some(rule)) => rules.push(rule),
                Ok(None) => {}
                Err(e) => problems.push(format!("{} line {line}: {e}", path.display())),
            }
        }
        if problems.is_empty() {
            Ok(HbaFile {
                path: path.to_owned(),
                rules,
            })
        } else {
            Err(HbaError(problems))
        }
    }

    /// The first line whose type, database, user and address match this client, as
    /// Postgres decides; `None` when no line does (the client is refused). `addr` is `None`
    /// for a client on the Unix socket.
    pub fn find(
        &self,
        addr: Option<IpAddr>,
        tls: bool,
        database: &str,
        user: &str,
    ) -> Option<Matched> {
        let addr = addr.map(|a| a.to_canonical());
        self.rules
            .iter()
            .find(|r| {
                r.origin.takes(addr, tls)
                    && r.databases.matches(database, || database == user)
                    && r.users.matches(user, || false)
            })
            .map(|r| Matched {
                method: r.method,
                line: r.line,
            })
    }

    /// The number of the first `cert` line, if any: such a line can only let anyone in when
    /// clients are asked for certificates.
    pub fn first_cert_line(&self) -> Option<usize> {
        self.rules
            .iter()
            .find(|r| r.method == Method::Cert)
            .map(|r| r.line)
    }
}

/// Whether a client certificate proves `user`: its CN must be exactly the user name, as
/// Postgres's `cert` method demands without a user name map.
pub fn cert_proves(cert_name: Option<&str>, user: &str) -> bool {
    !user.is_empty() && cert_name == Some(user)
}

impl Origin {
    fn takes(self, addr: Option<IpAddr>, tls: bool) -> bool {
        match (self, addr) {
            (Origin::Local, None) => true,
            (Origin::Host { ssl, address }, Some(addr)) => {
                ssl.allows(tls) && address.contains(addr)
            }
            _ => false,
        }
    }
}

impl SslRequirement {
    fn allows(self, tls: bool) -> bool {
        match self {
            SslRequirement::Either => true,
            SslRequirement::Tls => tls,
            SslRequirement::Plain => !tls,
        }
    }
}

impl Names {
    fn matches(&self, name: &str, same_user: impl Fn() -> bool) -> bool {
        self.all || self.names.contains(name) || (self.same_user && same_user())
    }
}

impl Address {
    fn contains(self, addr: IpAddr) -> bool {
        match (self, addr) {
            (Address::All, _) => true,
            (Address::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == net,
            (Address::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == net,
            // Clients arrive canonical (IPv4-mapped ones as IPv4), so a line written in the
            // mapped form (inside ::ffff:0:0/96) covers the IPv4 clients it maps; a wider IPv6
            // line such as ::/0 still takes IPv6 clients only.
            (Address::V6 { net, mask }, IpAddr::V4(a)) => {
                let mapped = u128::from(a.to_ipv6_mapped());
                mask >> 32 == u128::MAX >> 32 && mapped & mask == net
            }
            _ => false,
        }
    }
}

/// The file's records with the line each starts on: lines joined where one ends in a
/// backslash, blank and comment-only records included (they parse to nothing).
fn records(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut record) = pending.take().unwrap_or((i + 1, String::new()));
        match raw.strip_suffix('\\') {
            Some(head) => {
                record.push_str(head);
                pending = Some((start, record));
            }
            None => {
                record.push_str(raw);
                out.push((start, record));
            }
        }
    }
    out.extend(pending);
    out
}

/// Splits a record into fields, each a comma list of tokens. Whitespace separates fields
/// except next to a comma, so `a, b` and `a ,b` are one field, as PgBouncer reads them.
fn fields(record: &str) -> Result<Vec<Vec<Token>>, String> {
    let mut fields: Vec<Vec<Token>> = Vec::new();
    let mut chars = record.chars().peekable();
    let mut continues = false;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(',') => {
                chars.next();
                match fields.last() {
                    Some(_) if !continues => continues = true,
                    _ => return Err("a comma with no name before it".into()),
                }
                continue;
            }
            Some(_) => {}
        }
        let token = token(&mut chars)?;
        let comma = chars.next_if_eq(&',').is_some();
        match fields.last_mut() {
            Some(field) if continues => field.push(token),
            _ => fields.push(vec![token]),
        }
        continues = comma;
    }
    if continues {
        return Err("the line ends with a comma".into());
    }
    Ok(fields)
}

/// One token: up to unquoted whitespace, comma or `#`; `"` quotes and `""` inside quotes
/// is a literal quote.
fn token(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Token, String> {
    let mut text = String::new();
    let (mut quoted, mut in_quote) = (false, false);
    while let Some(&c) = chars.peek() {
        if !in_quote && (c.is_whitespace() || c == ',' || c == '#') {
            break;
        }
        chars.next();
        match c {
            '"' if in_quote && chars.next_if_eq(&'"').is_some() => text.push('"'),
            '"' => {
                in_quote = !in_quote;
                quoted = true;
            }
            c => text.push(c),
        }
    }
    if in_quote {
        return Err("unterminated quoted name".into());
    }
    Ok(Token { text, quoted })
}

impl Token {
    /// A field that must be one unquoted word (type, address, method).
    fn single<'a>(field: &'a [Token], what: &str) -> Result<&'a str, String> {
        match field {
            [t] if !t.quoted => Ok(&t.text),
            _ => Err(format!("{what} must be a single unquoted word")),
        }
    }
}

/// The record starting on `line`; `Ok(None)` for a blank or comment-only record.
fn parse_record(
    line: usize,
    record: &str,
    path: &Path,
    read: ReadFile<'_>,
) -> Result<Option<Rule>, String> {
    let fields = fields(record)?;
    let Some((kind, rest)) = fields.split_first() else {
        return Ok(None);
    };
    let kind = Token::single(kind, "the connection type")?;
    let ssl = match kind {
        "local" => None,
        "host" => Some(SslRequirement::Either),
        "hostssl" => Some(SslRequirement::Tls),
        "hostnossl" => Some(SslRequirement::Plain),
        "hostgssenc" | "hostnogssenc" => {
            return Err(format!("{kind} is not supported (pgweir has no GSSAPI)"))
        }
        other => return Err(format!("unknown connection type {other:?}")),
    };
    let [databases, users, rest @ ..] = rest else {
        return Err("expected a database, a user and a method".into());
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let databases = names(databases, Column::Database, dir, read)?;
    let users = names(users, Column::User, dir, read)?;
    let Some(ssl) = ssl else {
        let [method] = rest else {
            return Err("a local line has no address: expected only a method".into());
        };
        let method = match Token::single(method, "the method")? {
            "peer" => Method::Peer,
            _ => method_of(method)?,
        };
        return Ok(Some(Rule {
            line,
            origin: Origin::Local,
            databases,
            users,
            method,
        }));
    };
    let (address, rest) = address(rest)?;
    let method = match rest {
        [method] => method_of(method)?,
        [] => return Err("no authentication method".into()),
        [_, options @ ..] => {
            let first = options[0].first().map_or("", |t| t.text.as_str());
            return Err(format!(
                "authentication options such as {first:?} are not supported"
            ));
        }
    };
    Ok(Some(Rule {
        line,
        origin: Origin::Host { ssl, address },
        databases,
        users,
        method,
    }))
}

fn method_of(field: &[Token]) -> Result<Method, String> {
    Ok(match Token::single(field, "the method")? {
        "trust" => Method::Trust,
        "reject" => Method::Reject,
        "md5" => Method::Md5,
        "scram-sha-256" => Method::ScramSha256,
        "password" => Method::Password,
        "cert" => Method::Cert,
        "peer" => return Err("peer authentication works on local lines only".into()),
        other => return Err(format!("unsupported authentication method {other:?}")),
    })
}

/// The address column (and the mask column after a bare address); returns what follows.
fn address(rest: &[Vec<Token>]) -> Result<(Address, &[Vec<Token>]), String> {
    let Some((first, rest)) = rest.split_first() else {
        return Err("no address".into());
    };
    let text = Token::single(first, "the address")?;
    if text == "all" {
        return Ok((Address::All, rest));
    }
    if let Some((ip, bits)) = text.split_once('/') {
        let ip = parse_ip(ip)?;
        let bits: u32 = bits
            .parse()
            .map_err(|_| format!("invalid CIDR mask length in {text:?}"))?;
        return Ok((network(ip, bits)?, rest));
    }
    let ip = parse_ip(text)?;
    let mask = rest.split_first().and_then(|(mask, rest)| {
        let text = Token::single(mask, "the mask").ok()?;
        Some((text, text.parse::<IpAddr>().ok()?, rest))
    });
    let Some((mask_text, mask, rest)) = mask else {
        return Err(format!(
            "address {text:?} needs a CIDR length (/n) or a mask column"
        ));
    };
    let net = match (ip, mask) {
        (IpAddr::V4(a), IpAddr::V4(m)) => Address::V4 {
            net: u32::from(a) & u32::from(m),
            mask: u32::from(m),
        },
        (IpAddr::V6(a), IpAddr::V6(m)) => Address::V6 {
            net: u128::from(a) & u128::from(m),
            mask: u128::from(m),
        },
        _ => return Err(format!("mask {mask_text:?} is not of the address's family")),
    };
    Ok((net, rest))
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    match text {
        "samehost" | "samenet" => Err(format!("{text} is not supported: use CIDR addresses")),
        _ => text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address (host names are not supported)")),
    }
}

/// The network `ip/bits`; host bits set in `ip` are ignored, as Postgres does.
fn network(ip: IpAddr, bits: u32) -> Result<Address, String> {
    match ip {
        IpAddr::V4(a) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Ok(Address::V4 {
                net: u32::from(a) & mask,
                mask,
            })
        }
        IpAddr::V6(a) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            Ok(Address::V6 {
                net: u128::from(a) & mask,
                mask,
            })
        }
        _ => Err(format!("CIDR mask length /{bits} is too long for {ip}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Database,
    User,
}

/// A database or user column, with `@file` lists expanded.
fn names(field: &[Token], column: Column, dir: &Path, read: ReadFile<'_>) -> Result<Names, String> {
    let mut out = Names::default();
    add_names(&mut out, field, column, dir, read, 0)?;
    Ok(out)
}

fn add_names(
    out: &mut Names,
    tokens: &[Token],
    column: Column,
    dir: &Path,
    read: ReadFile<'_>,
    depth: usize,
) -> Result<(), String> {
    for t in tokens {
        let keyword = (!t.quoted).then_some(t.text.as_str());
        match (keyword, column) {
            (Some("all"), _) => out.all = true,
            (Some("sameuser"), Column::Database) => out.same_user = true,
            // pgweir refuses replication connections, so this matches none.
            (Some("replication"), Column::Database) => {}
            (Some(k @ ("samerole" | "samegroup")), Column::Database) => {
                return Err(format!(
                    "{k} is not supported: pgweir cannot see role membership"
                ))
            }
            (Some(k), _) if k.starts_with('+') => {
                return Err(format!(
                    "group names ({k}) are not supported: pgweir cannot see role membership"
                ))
            }
            (Some(k), _) if k.starts_with('/') => {
                return Err(format!("regular expressions ({k}) are not supported"))
            }
            (Some(k), _) if k.starts_with('@') => include(out, &k[1..], column, dir, read, depth)?,
            _ if t.text.is_empty() => return Err("empty name".into()),
            _ => {
                out.names.insert(t.text.clone());
            }
        }
    }
    Ok(())
}

/// `@file`: the names in `file` (relative to `dir`), separated by whitespace or commas,
/// with comments, quotes and nested `@file`s, as Postgres reads them.
fn include(
    out: &mut Names,
    file: &str,
    column: Column,
    dir: &Path,
    read: ReadFile<'_>,
    depth: usize,
) -> Result<(), String> {
    if file.is_empty() {
        return Err("@ without a file name".into());
    }
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(format!(
            "@{file}: @ files nested deeper than {MAX_INCLUDE_DEPTH}"
        ));
    }
    let path = dir.join(file);
    let text = read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sub_dir = path.parent().unwrap_or(dir);
    for (line, record) in records(&text) {
        let tokens: Vec<Token> = fields(&record)
            .map_err(|e| format!("{} line {line}: {e}", path.display()))?
            .into_iter()
            .flatten()
            .collect();
        add_names(out, &tokens, column, sub_dir, read, depth + 1)
            .map_err(|e| format!("{} line {line}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

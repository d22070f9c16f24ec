//! Where clients reach pgweir, in PgBouncer's value forms: `listen_addr` as a comma list of
//! addresses and host names with `*` for every address (empty: Unix socket only), and the
//! Unix socket's directory, file mode and group. Parsed and checked here when the file is
//! read; [`crate::listener`] binds what these say.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// `listen_addr`: the text as written (for SHOW CONFIG) and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    text: String,
    hosts: Vec<ListenHost>,
}

/// One entry of `listen_addr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenHost {
    Ip(IpAddr),
    /// Resolved when binding; every address it resolves to is bound.
    Name(String),
}

impl ListenAddr {
    /// Parses PgBouncer's forms: `*` is every IPv4 and IPv6 address, entries are separated
    /// by commas (spaces around them allowed), and an empty value listens on no TCP address.
    pub fn parse(text: &str) -> Result<ListenAddr, String> {
        let mut hosts = Vec::new();
        if !text.trim().is_empty() {
            for entry in text.split(',').map(str::trim) {
                match entry {
                    "" => return Err(format!("empty entry in {text:?}")),
                    "*" => hosts.extend([
                        ListenHost::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                        ListenHost::Ip(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                    ]),
                    _ => hosts.push(match entry.parse::<IpAddr>() {
                        Ok(ip) => ListenHost::Ip(ip),
                        Err(_) if entry.contains(char::is_whitespace) => {
                            return Err(format!("{entry:?} is not an address or a host name"))
                        }
                        Err(_) => ListenHost::Name(entry.to_owned()),
                    }),
                }
            }
        }
        Ok(ListenAddr {
            text: text.to_owned(),
            hosts,
        })
    }

    pub fn hosts(&self) -> &[ListenHost] {
        &self.hosts
    }

    /// Whether `*` asked for every address: then an IPv6 wildcard the system cannot bind is
    /// skipped, as PgBouncer does on hosts without IPv6.
    pub fn is_wildcard(&self) -> bool {
        self.text.split(',').any(|e| e.trim() == "*")
    }
}

impl Default for ListenAddr {
    fn default() -> Self {
        ListenAddr {
            text: "127.0.0.1".to_owned(),
            hosts: vec![ListenHost::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))],
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The Unix socket clients may connect to, when `unix_socket_dir` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocket {
    pub dir: PathBuf,
    pub mode: FileMode,
    /// The group the socket file is given, so its members may connect under a mode like
    /// 0770; `None` keeps pgweir's own group.
    pub group: Option<Group>,
}

/// Permission bits of a file, shown in octal as in pgbouncer.ini (`0777`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FileMode {
    /// PgBouncer's default: anyone on the host may connect; authentication decides.
    pub const DEFAULT: FileMode = FileMode(0o777);

    /// An octal mode such as `0777` or `770`, permission bits only.
    pub fn parse(text: &str) -> Result<FileMode, String> {
        match u32::from_str_radix(text.trim(), 8) {
            Ok(mode) if mode <= 0o777 => Ok(FileMode(mode)),
            _ => Err(format!(
                "{text:?} is not a file mode: expected octal permission bits such as \"0777\""
            )),
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// `unix_socket_group`: its name as written and the id it has on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

impl Group {
    /// A group name, or a numeric id, that exists on this host.
    pub fn lookup(name: &str) -> Result<Group, String> {
        let gid = match name.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match nix::unistd::Group::from_name(name) {
                Ok(Some(g)) => g.gid.as_raw(),
                Ok(None) => return Err(format!("no group {name:?} on this host")),
                Err(e) => return Err(format!("cannot look up group {name:?}: {e}")),
            },
        };
        Ok(Group {
            name: name.to_owned(),
            gid,
        })
    }
}

/// `unix_socket_dir`: an existing directory, or empty for none (PgBouncer's way to turn
/// the socket off).
pub fn socket_dir(text: &str) -> Result<Option<PathBuf>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let dir = PathBuf::from(text);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(Some(dir)),
        Ok(_) => Err(format!("{text} is not a directory")),
        Err(e) => Err(format!("{text}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addr_takes_pgbouncer_forms() {
        let ips = |text: &str| ListenAddr::parse(text).map(|l| l.hosts().to_vec());
        let ip = |s: &str| ListenHost::Ip(s.parse().unwrap());
        assert_eq!(ips("*").unwrap(), [ip("0.0.0.0"), ip("::")]);
        assert_eq!(
            ips("127.0.0.1, ::1,localhost").unwrap(),
            [
                ip("127.0.0.1"),
                ip("::1"),
                ListenHost::Name("localhost".into())
            ]
        );
        assert_eq!(ips("").unwrap(), []);
        assert!(ips("127.0.0.1,,::1").unwrap_err().contains("empty entry"));
        assert!(ListenAddr::parse("*").unwrap().is_wildcard());
        assert!(!ListenAddr::parse("0.0.0.0").unwrap().is_wildcard());
        assert_eq!(ListenAddr::parse("a, b").unwrap().to_string(), "a, b");
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(FileMode::parse("0777"), Ok(FileMode(0o777)));
        assert_eq!(FileMode::parse("770"), Ok(FileMode(0o770)));
        assert_eq!(FileMode(0o700).to_string(), "0700");
        assert!(FileMode::parse("0778").is_err());
        assert!(FileMode::parse("1777").is_err());
    }

    #[test]
    fn groups_are_looked_up() {
        assert_eq!(Group::lookup("0").map(|g| g.gid), Ok(0));
        assert_eq!(Group::lookup("root").map(|g| g.gid), Ok(0));
        assert!(Group::lookup("no-such-group-here").is_err());
    }
}

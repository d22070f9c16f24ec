//! Unit tests for [`super`]: parsing every supported form, refusing the rest with the file
//! and line, and first-match semantics. Files live in an in-memory map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;

/// Loads `/etc/pgweir/hba.conf` = `text`, with `others` as further files.
fn load(text: &str, others: &[(&str, &str)]) -> Result<HbaFile, HbaError> {
    let mut files: HashMap<PathBuf, String> = others
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect();
    files.insert(PathBuf::from("/etc/pgweir/hba.conf"), text.to_owned());
    HbaFile::load_with(Path::new("/etc/pgweir/hba.conf"), &|p| {
        files
            .get(p)
            .cloned()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
    })
}

fn hba(text: &str) -> HbaFile {
    load(text, &[]).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The only problem `text` has.
fn problem(text: &str) -> String {
    match load(text, &[]) {
        Ok(_) => panic!("{text:?} should not parse"),
        Err(HbaError(mut problems)) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            problems.remove(0)
        }
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// The method for a plaintext client at `addr`.
fn method(h: &HbaFile, addr: &str, db: &str, user: &str) -> Option<Method> {
    h.find(ip(addr), false, db, user).map(|m| m.method)
}

#[test]
fn first_matching_line_wins() {
    let h = hba("# comment\n\
                 \n\
                 host app alice 10.0.0.0/8 reject\n\
                 host all alice 10.0.0.0/8 trust   # trailing comment\n\
                 host all all 0.0.0.0/0 scram-sha-256\n");
    assert_eq!(
        h.find(ip("10.1.2.3"), false, "app", "alice"),
        Some(Matched {
            method: Method::Reject,
            line: 3
        })
    );
    assert_eq!(
        method(&h, "10.1.2.3", "other", "alice"),
        Some(Method::Trust)
    );
    assert_eq!(
        method(&h, "192.168.0.1", "app", "alice"),
        Some(Method::ScramSha256)
    );
    assert_eq!(method(&h, "::1", "app", "alice"), None, "no IPv6 line");
}

#[test]
fn every_method() {
    for (word, expected) in [
        ("trust", Method::Trust),
        ("reject", Method::Reject),
        ("md5", Method::Md5),
        ("scram-sha-256", Method::ScramSha256),
        ("password", Method::Password),
        ("cert", Method::Cert),
    ] {
        let h = hba(&format!("host all all all {word}"));
        assert_eq!(method(&h, "1.2.3.4", "d", "u"), Some(expected), "{word}");
    }
}

#[test]
fn addresses() {
    let h = hba("host a all 127.0.0.2/32 trust\n\
                 host b all 192.168.1.0 255.255.255.0 trust\n\
                 host c all ::1/128 trust\n\
                 host d all 10.1.2.3/8 trust\n\
                 host e all 0.0.0.0/0 trust\n\
                 host f all fe80::/10 trust\n");
    assert_eq!(method(&h, "127.0.0.2", "a", "u"), Some(Method::Trust));
    assert_eq!(method(&h, "127.0.0.1", "a", "u"), None);
    assert_eq!(method(&h, "192.168.1.77", "b", "u"), Some(Method::Trust));
    assert_eq!(method(&h, "192.168.2.77", "b", "u"), None);
    assert_eq!(method(&h, "::1", "c", "u"), Some(Method::Trust));
    assert_eq!(method(&h, "127.0.0.1", "c", "u"), None, "families differ");
    assert_eq!(
        method(&h, "10.200.0.1", "d", "u"),
        Some(Method::Trust),
        "host bits ignored"
    );
    assert_eq!(method(&h, "8.8.8.8", "e", "u"), Some(Method::Trust));
    assert_eq!(method(&h, "::1", "e", "u"), None);
    assert_eq!(method(&h, "fe80::1234", "f", "u"), Some(Method::Trust));
    assert_eq!(method(&h, "fec0::1", "f", "u"), None);
}

#[test]
fn ipv4_mapped_clients_match_ipv4_lines() {
    let h = hba("host all all 127.0.0.0/8 trust");
    assert_eq!(
        method(&h, "::ffff:127.0.0.1", "d", "u"),
        Some(Method::Trust)
    );
}

/// A line written with IPv4-mapped IPv6 addresses covers the IPv4 clients they map, in either
/// notation: a `reject` for `::ffff:10.0.0.0/104` must not let 10.0.0.1 reach a later line.
#[test]
fn ipv4_mapped_lines_match_ipv4_clients() {
    let h = hba("host all all ::ffff:10.0.0.0/104 reject\n\
         host all all ::ffff:192.168.1.1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff reject\n\
         host all all all trust");
    for client in [
        "10.0.0.1",
        "::ffff:10.0.0.1",
        "192.168.1.1",
        "::ffff:192.168.1.1",
    ] {
        assert_eq!(
            method(&h, client, "d", "u"),
            Some(Method::Reject),
            "{client}"
        );
    }
    assert_eq!(method(&h, "11.0.0.1", "d", "u"), Some(Method::Trust));
    assert_eq!(method(&h, "::1", "d", "u"), Some(Method::Trust));
    let v6_only = hba("host all all ::/0 reject\nhost all all all trust");
    assert_eq!(method(&v6_only, "10.0.0.1", "d", "u"), Some(Method::Trust));
}

#[test]
fn ssl_types() {
    let h = hba("hostssl all all all cert\n\
                 hostnossl all all all md5\n");
    let m = |tls| h.find(ip("1.1.1.1"), tls, "d", "u").map(|m| m.method);
    assert_eq!(m(true), Some(Method::Cert));
    assert_eq!(m(false), Some(Method::Md5));
    let h = hba("hostssl all all all trust");
    assert_eq!(h.find(ip("1.1.1.1"), false, "d", "u"), None);
}

#[test]
fn local_lines_take_unix_socket_clients_only() {
    let h = hba("local all postgres trust\nlocal all all peer\nhost all all all md5\n");
    assert_eq!(method(&h, "127.0.0.1", "d", "postgres"), Some(Method::Md5));
    let local = |user| h.find(None, false, "d", user).map(|m| (m.method, m.line));
    assert_eq!(local("postgres"), Some((Method::Trust, 1)));
    assert_eq!(local("alice"), Some((Method::Peer, 2)));
    let tcp_only = hba("host all all all trust");
    assert_eq!(tcp_only.find(None, false, "d", "u"), None);
    assert!(problem("local all all 127.0.0.1/32 trust").contains("local line has no address"));
    assert!(problem("local all all ldap").contains("\"ldap\""));
}

#[test]
fn name_lists_quotes_and_keywords() {
    let h = hba("host db1,\"My Db\", db3 alice , bob all md5\n\
                 host \"all\" all all trust\n\
                 host sameuser all all password\n\
                 host replication all all reject\n\
                 host \"say \"\"hi\"\"\" all all cert\n");
    for db in ["db1", "My Db", "db3"] {
        for user in ["alice", "bob"] {
            assert_eq!(method(&h, "1.1.1.1", db, user), Some(Method::Md5));
        }
    }
    assert_eq!(method(&h, "1.1.1.1", "all", "carol"), Some(Method::Trust));
    assert_eq!(
        method(&h, "1.1.1.1", "carol", "carol"),
        Some(Method::Password)
    );
    assert_eq!(
        method(&h, "1.1.1.1", "replication", "x"),
        None,
        "the keyword matches no database, not one called replication"
    );
    assert_eq!(method(&h, "1.1.1.1", "say \"hi\"", "x"), Some(Method::Cert));
    assert_eq!(method(&h, "1.1.1.1", "DB1", "alice"), None, "case matters");
}

#[test]
fn continuation_lines() {
    let h = hba("host app,\\\n  other alice \\\n 10.0.0.0/8 trust\nhost all all all reject\n");
    assert_eq!(
        h.find(ip("10.0.0.1"), false, "other", "alice"),
        Some(Matched {
            method: Method::Trust,
            line: 1
        })
    );
    assert_eq!(
        h.find(ip("10.0.0.1"), false, "x", "alice").map(|m| m.line),
        Some(4)
    );
}

#[test]
fn at_files_relative_to_the_hba_file() {
    let h = load(
        "host @dbs @users/admins all trust\nhost all all all reject\n",
        &[
            ("/etc/pgweir/dbs", "app1, app2\n# comment\n\"app 3\" app4\n"),
            ("/etc/pgweir/users/admins", "alice\n@more\n"),
            ("/etc/pgweir/users/more", "bob"),
        ],
    )
    .unwrap();
    for db in ["app1", "app2", "app 3", "app4"] {
        for user in ["alice", "bob"] {
            assert_eq!(method(&h, "1.1.1.1", db, user), Some(Method::Trust));
        }
    }
    assert_eq!(method(&h, "1.1.1.1", "app1", "carol"), Some(Method::Reject));
    assert_eq!(
        method(&h, "1.1.1.1", "dbs", "alice"),
        Some(Method::Reject),
        "@dbs is not a name"
    );
}

#[test]
fn at_file_problems() {
    let missing = load("host @nope all all trust", &[])
        .unwrap_err()
        .to_string();
    assert!(
        missing.starts_with("/etc/pgweir/hba.conf line 1: cannot read /etc/pgweir/nope"),
        "{missing}"
    );
    let looped = load(
        "host @a all all trust",
        &[("/etc/pgweir/a", "@b"), ("/etc/pgweir/b", "@a")],
    )
    .unwrap_err()
    .to_string();
    assert!(looped.contains("nested deeper than"), "{looped}");
    let fifty = |name: &str| vec![format!("@{name}"); 50].join(" ");
    let (a, b) = (fifty("b"), fifty("c"));
    let wide = load(
        "host @a all all trust",
        &[
            ("/etc/pgweir/a", &a),
            ("/etc/pgweir/b", &b),
            ("/etc/pgweir/c", "u"),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(wide.contains("more than 1000 @ file reads"), "{wide}");
    let bad = load("host @a all all trust", &[("/etc/pgweir/a", "x\n+grp\n")])
        .unwrap_err()
        .to_string();
    assert!(bad.contains("/etc/pgweir/a line 2: group names"), "{bad}");
}

#[test]
fn unsupported_forms_name_the_line() {
    let cases = [
        ("host all +admins all md5", "group names (+admins)"),
        ("host samerole all all md5", "samerole is not supported"),
        ("host all all samenet md5", "samenet is not supported"),
        (
            "host all all db.example.com md5",
            "host names are not supported",
        ),
        ("host all all 10.0.0.1 md5", "needs a CIDR length"),
        ("host all all 10.0.0.0/33 md5", "too long"),
        ("host all all 10.0.0.0/x md5", "invalid CIDR"),
        (
            "host all all 10.0.0.0 ffff:: md5",
            "not of the address's family",
        ),
        (
            "host all all all ldap",
            "unsupported authentication method \"ldap\"",
        ),
        ("host all all all peer", "local lines only"),
        ("host all all all", "no authentication method"),
        ("host all all", "no address"),
        ("host all", "expected a database, a user and a method"),
        ("host all all all cert clientcert=verify-full", "options"),
        ("hostgssenc all all all trust", "GSSAPI"),
        ("remote all all all trust", "unknown connection type"),
        ("host \"all all all trust", "unterminated"),
        ("host a,,b all all trust", "comma"),
        ("host all all all trust,", "ends with a comma"),
        ("host all /^x all trust", "regular expressions"),
        ("host \"\" all all trust", "empty name"),
    ];
    for (text, expected) in cases {
        let p = problem(&format!("# header\n{text}\n"));
        assert!(
            p.starts_with("/etc/pgweir/hba.conf line 2: "),
            "{text}: {p}"
        );
        assert!(p.contains(expected), "{text}: {p}");
    }
}

#[test]
fn every_bad_line_is_reported() {
    let err = load(
        "host all all all ldap\nhost all all all trust\nbogus\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
    assert!(err.0[0].contains("line 1"));
    assert!(err.0[1].contains("line 3"));
}

#[test]
fn unreadable_file() {
    let err = HbaFile::load(Path::new("/nonexistent/pgweir-hba.conf")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("cannot read /nonexistent/pgweir-hba.conf"));
}

#[test]
fn cert_name_must_equal_the_user() {
    assert!(cert_proves(Some("alice"), "alice"));
    assert!(!cert_proves(Some("alice"), "bob"));
    assert!(!cert_proves(Some("Alice"), "alice"));
    assert!(!cert_proves(None, "alice"));
    assert!(!cert_proves(Some(""), ""));
}

//! `auth_type = "hba"` / `"cert"` and `auth_hba_file`: the file is read with the config,
//! so its problems are config problems; `hba` without a file, and `cert` without client
//! certificates, are refused.

use super::super::AuthType;
use super::{parse, problems, rejects, MINIMAL};

/// An hba file with `text` in a fresh temp dir (kept alive by the returned guard).
fn hba_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hba.conf");
    std::fs::write(&path, text).expect("write hba.conf");
    (dir, path.display().to_string())
}

#[test]
fn hba_reads_the_file() {
    let (_dir, path) = hba_file("host all all 127.0.0.1/32 trust\n");
    let config = parse(&format!(
        "[pgweir]\nauth_type = \"hba\"\nauth_hba_file = \"{path}\"\n{MINIMAL}"
    ));
    assert_eq!(config.pgweir.auth_type, AuthType::Hba);
    let hba = config.pgweir.auth_hba_file.expect("parsed hba file");
    assert_eq!(hba.path.display().to_string(), path);
    assert!(hba
        .find(Some("127.0.0.1".parse().unwrap()), false, "d", "u")
        .is_some());
}

/// Client TLS lines for `mode`, with a CA for client certificates when `ca`.
fn client_tls(mode: &str, ca: bool) -> String {
    let ca = if ca {
        "client_tls_ca_file = \"ca\"\n"
    } else {
        ""
    };
    format!(
        "client_tls_sslmode = \"{mode}\"\nclient_tls_cert_file = \"c\"\n\
         client_tls_key_file = \"k\"\n{ca}"
    )
}

#[test]
fn cert_is_an_auth_type() {
    for mode in ["prefer", "require", "verify-full"] {
        let tls = client_tls(mode, true);
        let config = parse(&format!("[pgweir]\nauth_type = \"cert\"\n{tls}{MINIMAL}"));
        assert_eq!(config.pgweir.auth_type, AuthType::Cert);
    }
}

#[test]
fn cert_needs_client_certificates() {
    let needs = "line 2: pgweir.auth_type: \"cert\" needs client TLS";
    for tls in [
        "",
        &client_tls("require", false),
        "client_tls_ca_file = \"ca\"\n",
    ] {
        let found = problems(&format!("[pgweir]\nauth_type = \"cert\"\n{tls}{MINIMAL}"));
        assert_eq!(found.len(), 1, "{tls}: {found:?}");
        assert!(found[0].starts_with(needs), "{tls}: {found:?}");
        assert!(found[0].contains("client_tls_ca_file"), "{found:?}");
    }
}

#[test]
fn hba_needs_a_file() {
    rejects(
        &format!("[pgweir]\nauth_type = \"hba\"\n{MINIMAL}"),
        "line 2: pgweir.auth_type: \"hba\" needs auth_hba_file",
    );
}

#[test]
fn hba_cert_lines_need_client_certificates() {
    let (_dir, path) = hba_file("host all all 127.0.0.1/32 trust\nhostssl all all all cert\n");
    let hba = format!("[pgweir]\nauth_type = \"hba\"\nauth_hba_file = \"{path}\"\n");
    let found = problems(&format!("{hba}{MINIMAL}"));
    assert_eq!(found.len(), 1, "{found:?}");
    let expected = format!("line 3: pgweir.auth_hba_file: {path} line 2: cert needs client TLS");
    assert!(found[0].starts_with(&expected), "{found:?}");
    let config = parse(&format!("{hba}{}{MINIMAL}", client_tls("prefer", true)));
    assert!(config.pgweir.auth_hba_file.is_some());
    // Unused unless auth_type = "hba".
    parse(&format!("[pgweir]\nauth_hba_file = \"{path}\"\n{MINIMAL}"));
}

#[test]
fn a_bad_hba_file_is_a_config_problem_naming_its_line() {
    let (_dir, path) = hba_file("host all all 127.0.0.1/32 trust\nhost all all all ldap\n");
    let found = problems(&format!(
        "[pgweir]\nauth_type = \"hba\"\nauth_hba_file = \"{path}\"\n{MINIMAL}"
    ));
    assert_eq!(
        found,
        [format!(
            "line 3: pgweir.auth_hba_file: {path} line 2: unsupported authentication method \"ldap\""
        )]
    );
    let missing = problems(&format!(
        "[pgweir]\nauth_type = \"hba\"\nauth_hba_file = \"/nonexistent/hba.conf\"\n{MINIMAL}"
    ));
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].starts_with("line 3: pgweir.auth_hba_file: cannot read /nonexistent/hba.conf"),
        "{missing:?}"
    );
}

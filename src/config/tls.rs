//! The `[pgweir]` TLS keys, PgBouncer's names and meanings: `client_tls_*` for connections
//! from clients, `server_tls_*` for connections to Postgres. The keys are read as
//! [`super::table`] lists them; only the rules between them are checked here. The files
//! themselves are read by [`crate::net::tls`] at start, by `pgweir check` and on reload.

use std::path::PathBuf;

use super::reader::{Reader, Section};

/// `client_tls_sslmode`: what pgweir asks of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientTlsMode {
    /// TLS refused: an SSLRequest is answered 'N'.
    #[default]
    Disable,
    /// TLS accepted when the client asks, plaintext too.
    Allow,
    /// As `allow`: the client decides.
    Prefer,
    /// Plaintext clients are refused.
    Require,
    /// TLS with a client certificate that verifies against `client_tls_ca_file`.
    VerifyCa,
    /// As `verify-ca` (PgBouncer checks no client host name either).
    VerifyFull,
}

impl ClientTlsMode {
    /// Every variant, so the config reader can list the accepted names.
    pub const ALL: [ClientTlsMode; 6] = [
        ClientTlsMode::Disable,
        ClientTlsMode::Allow,
        ClientTlsMode::Prefer,
        ClientTlsMode::Require,
        ClientTlsMode::VerifyCa,
        ClientTlsMode::VerifyFull,
    ];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            ClientTlsMode::Disable => "disable",
            ClientTlsMode::Allow => "allow",
            ClientTlsMode::Prefer => "prefer",
            ClientTlsMode::Require => "require",
            ClientTlsMode::VerifyCa => "verify-ca",
            ClientTlsMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a plaintext client is refused.
    pub fn requires_tls(self) -> bool {
        self >= ClientTlsMode::Require
    }

    /// Whether a client must present a certificate that verifies.
    pub fn requires_cert(self) -> bool {
        self >= ClientTlsMode::VerifyCa
    }
}

impl PartialOrd for ClientTlsMode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Modes order by strictness, as listed.
impl Ord for ClientTlsMode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

/// `server_tls_sslmode`: what pgweir asks of Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerTlsMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server agrees to it, else plaintext; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS with a certificate that chains to `server_tls_ca_file` (or the system roots).
    VerifyCa,
    /// As `verify-ca`, and the certificate names the database's `host`.
    VerifyFull,
}

impl ServerTlsMode {
    /// Every variant, so the config reader can list the accepted names.
    pub const ALL: [ServerTlsMode; 5] = [
        ServerTlsMode::Disable,
        ServerTlsMode::Prefer,
        ServerTlsMode::Require,
        ServerTlsMode::VerifyCa,
        ServerTlsMode::VerifyFull,
    ];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            ServerTlsMode::Disable => "disable",
            ServerTlsMode::Prefer => "prefer",
            ServerTlsMode::Require => "require",
            ServerTlsMode::VerifyCa => "verify-ca",
            ServerTlsMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate chain is checked.
    pub fn verifies(self) -> bool {
        matches!(self, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull)
    }
}

/// The TLS keys of `[pgweir]`. Paths are relative to the working directory, as PgBouncer's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    pub client_sslmode: ClientTlsMode,
    /// pgweir's certificate chain (PEM) shown to clients; needed unless `disable`.
    pub client_cert_file: Option<PathBuf>,
    /// Its private key (PEM); needed unless `disable`.
    pub client_key_file: Option<PathBuf>,
    /// CA certificates (PEM) client certificates must chain to; when set, clients are asked
    /// for a certificate. Needed by `verify-ca` and `verify-full`.
    pub client_ca_file: Option<PathBuf>,
    pub server_sslmode: ServerTlsMode,
    /// CA certificates (PEM) for `verify-ca`/`verify-full`; the system's CA certificates when absent.
    pub server_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) pgweir shows Postgres, with `server_tls_key_file`.
    pub server_cert_file: Option<PathBuf>,
    pub server_key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether clients are asked for a certificate, which `auth_type = "cert"` needs.
    pub fn asks_for_certificates(&self) -> bool {
        self.client_sslmode != ClientTlsMode::Disable && self.client_ca_file.is_some()
    }
}

/// The rules between the TLS keys of `[pgweir]` (each read as [`super::table`] lists it).
pub(super) fn check(r: &mut Reader<'_>, s: &Section<'_>, config: &TlsConfig) {
    let mode = config.client_sslmode;
    if mode != ClientTlsMode::Disable {
        for (key, set) in [
            ("client_tls_cert_file", config.client_cert_file.is_some()),
            ("client_tls_key_file", config.client_key_file.is_some()),
        ] {
            if !set {
                let message = format!(
                    "{key} is required by client_tls_sslmode = \"{}\"",
                    mode.as_str()
                );
                r.key_problem(s, "client_tls_sslmode", message);
            }
        }
    }
    if mode.requires_cert() && config.client_ca_file.is_none() {
        let message = format!(
            "client_tls_ca_file is required by client_tls_sslmode = \"{}\"",
            mode.as_str()
        );
        r.key_problem(s, "client_tls_sslmode", message);
    }
    if config.server_cert_file.is_some() != config.server_key_file.is_some() {
        let message = "server_tls_cert_file and server_tls_key_file go together";
        r.key_problem(s, "server_tls_cert_file", message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn tls(lines: &str) -> Result<TlsConfig, Vec<String>> {
        let text = format!("[pgweir]\n{lines}\n[databases.app]\nhost = \"h\"\n");
        Config::parse(&text, &|_| None)
            .map(|c| c.pgweir.tls)
            .map_err(|e| e.to_string().lines().map(str::to_owned).collect())
    }

    #[test]
    fn defaults_are_pgbouncers() {
        let config = tls("").unwrap();
        assert_eq!(config.client_sslmode, ClientTlsMode::Disable);
        assert_eq!(config.server_sslmode, ServerTlsMode::Prefer);
    }

    #[test]
    fn modes_need_their_files() {
        let problems = tls("client_tls_sslmode = \"require\"").unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("client_tls_cert_file is required"));
        let files = "client_tls_cert_file = \"c\"\nclient_tls_key_file = \"k\"";
        let problems = tls(&format!("client_tls_sslmode = \"verify-ca\"\n{files}")).unwrap_err();
        assert_eq!(
            problems,
            ["line 2: pgweir.client_tls_sslmode: client_tls_ca_file is required by client_tls_sslmode = \"verify-ca\""]
        );
        let config = tls(&format!("client_tls_sslmode = \"prefer\"\n{files}")).unwrap();
        assert_eq!(config.client_cert_file, Some(PathBuf::from("c")));
        let problems = tls("server_tls_cert_file = \"c\"").unwrap_err();
        assert!(problems[0].contains("go together"), "{problems:?}");
        let problems = tls("server_tls_sslmode = \"verify\"").unwrap_err();
        assert!(
            problems[0].contains("must be one of disable, prefer"),
            "{problems:?}"
        );
    }

    #[test]
    fn modes_order_by_strictness() {
        assert!(!ClientTlsMode::Prefer.requires_tls());
        assert!(ClientTlsMode::Require.requires_tls() && !ClientTlsMode::Require.requires_cert());
        assert!(ClientTlsMode::VerifyFull.requires_cert());
    }
}

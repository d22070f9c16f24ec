//! TLS for the tests: a throwaway CA and certificates made with rcgen in a temp dir
//! ([`Certs`]), TLS clients trusting it (tokio-postgres through tokio-postgres-rustls, and
//! libpq's connection options), and a cluster of its own with `ssl = on` and extra
//! pg_hba.conf lines ([`ssl_cluster`]), for the tests of TLS towards Postgres.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tempfile::TempDir;
use tokio_postgres::config::{SslMode, SslNegotiation};
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{is_root, Cluster, LazyCluster, SCRAM_USER};

/// A CA and the certificates it signed, as PEM files in a temp dir.
pub struct Certs {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate.
    pub ca: PathBuf,
    /// pgweir's certificate for clients: SAN localhost and 127.0.0.1.
    pub server: (PathBuf, PathBuf),
    /// A client certificate whose CN is `client_cn`.
    pub client: (PathBuf, PathBuf),
}

impl Certs {
    /// A new CA, pgweir's certificate and a client certificate with CN `client_cn`.
    pub fn new(client_cn: &str) -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("pgweir-tls-")
            .tempdir()
            .expect("temp dir for certificates");
        // Certificates kept in a static are never dropped: their directory (keys included)
        // goes when the test process does, as the cluster's does.
        super::cluster::spawn_detached(&format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = dir.path().display(),
        ));
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "pgweir test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let ca_cert = params.self_signed(&key).expect("CA certificate");
        let ca = dir.path().join("ca.pem");
        write(&ca, &ca_cert.pem());
        let issuer = Issuer::new(params, key);
        let mut certs = Certs {
            dir,
            issuer,
            ca,
            server: Default::default(),
            client: Default::default(),
        };
        certs.server = certs.leaf("server", &["localhost", "127.0.0.1"], "localhost");
        certs.client = certs.leaf("client", &[], client_cn);
        certs
    }

    /// Another certificate signed by this CA, as `NAME.pem` and `NAME.key`.
    pub fn leaf(&self, name: &str, sans: &[&str], cn: &str) -> (PathBuf, PathBuf) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let (cert_path, key_path) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        write(&cert_path, &cert.pem());
        write(&key_path, &key.serialize_pem());
        (cert_path, key_path)
    }

    /// A path in the certificates' dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[pgweir]` lines for `client_tls_sslmode = mode` with pgweir's certificate, and this
    /// CA for client certificates.
    pub fn pgweir_lines(&self, mode: &str) -> String {
        format!(
            "client_tls_sslmode = \"{mode}\"\nclient_tls_cert_file = \"{}\"\n\
             client_tls_key_file = \"{}\"\nclient_tls_ca_file = \"{}\"",
            self.server.0.display(),
            self.server.1.display(),
            self.ca.display()
        )
    }

    /// A rustls client trusting this CA, with the client certificate if `with_cert`, and
    /// ALPN "postgresql" if `alpn`.
    pub fn client_config(&self, with_cert: bool, alpn: bool) -> ClientConfig {
        self.client_config_versions(rustls::DEFAULT_VERSIONS, with_cert, alpn)
    }

    /// [`Certs::client_config`] speaking only the TLS `versions` given.
    pub fn client_config_versions(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        with_cert: bool,
        alpn: bool,
    ) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read CA") {
            roots.add(cert.expect("CA pem")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("TLS versions")
            .with_root_certificates(roots);
        let mut config = if with_cert {
            let chain = CertificateDer::pem_file_iter(&self.client.0)
                .expect("client cert")
                .map(|c| c.expect("client cert pem"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(&self.client.1).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        } else {
            builder.with_no_client_auth()
        };
        if alpn {
            config.alpn_protocols = vec![b"postgresql".to_vec()];
        }
        config
    }

    /// libpq options trusting this CA (`verify-full`), with the client certificate if asked.
    pub fn libpq(&self, sslmode: &str, with_cert: bool) -> String {
        let mut opts = format!("sslmode={sslmode} sslrootcert={}", self.ca.display());
        if with_cert {
            opts.push_str(&format!(
                " sslcert={} sslkey={}",
                self.client.0.display(),
                self.client.1.display()
            ));
        }
        opts
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(path, mode).expect("chmod 600");
}

/// Connects with TLS (`ssl_mode` require, or direct TLS when `direct`) and drives the
/// connection on a background task.
pub async fn connect_tls(
    config: &Config,
    tls: ClientConfig,
    direct: bool,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = config.clone();
    config.ssl_mode(SslMode::Require);
    if direct {
        config.ssl_negotiation(SslNegotiation::Direct);
    }
    let (client, connection) = config.connect(MakeRustlsConnect::new(tls)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A role Postgres lets into [`ssl_cluster`] by client certificate only.
pub const CERT_ROLE: &str = "tls_cert_role";

/// A cluster with `ssl = on` and the CA that signed its certificate.
pub struct SslCluster {
    pub cluster: &'static Cluster,
    /// The CA of the cluster's certificate, which also signs client certificates with CN
    /// `pgweir_scram` for pgweir to present.
    pub certs: Certs,
}

/// The cluster of the tests of TLS towards Postgres, started with TLS turned on on first
/// use: `ssl = on` takes `ALTER SYSTEM`, pg_hba.conf lines and a reload, which the shared
/// cluster's other tests must not meet. Its certificate names `localhost` only, and
/// [`CERT_ROLE`] logs in with `hostssl … cert` only.
pub fn ssl_cluster() -> &'static SslCluster {
    static CLUSTER: LazyCluster = LazyCluster::new();
    static SSL: OnceLock<SslCluster> = OnceLock::new();
    SSL.get_or_init(|| {
        let cluster = CLUSTER.get();
        let certs = Certs::new(SCRAM_USER.name);
        cluster.psql("postgres", &format!("CREATE ROLE {CERT_ROLE} LOGIN"));
        enable_ssl(
            cluster,
            &certs,
            &format!("hostssl all {CERT_ROLE} 127.0.0.1/32 cert"),
        );
        SslCluster { cluster, certs }
    })
}

/// Turns on TLS in cluster `c` with a certificate for `localhost` only (no IP, so
/// `verify-full` towards 127.0.0.1 fails) signed by `certs`, trusting `certs` for client
/// certificates, and puts `hba` in front of the cluster's pg_hba.conf lines.
fn enable_ssl(c: &Cluster, certs: &Certs, hba: &str) {
    let (cert, key) = certs.leaf("postgres", &["localhost"], "localhost");
    let data = c.data_dir();
    for (from, to) in [
        (&cert, "tls.crt"),
        (&key, "tls.key"),
        (&certs.ca, "tls_ca.crt"),
    ] {
        std::fs::copy(from, data.join(to)).expect("copy TLS file into the data dir");
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(data.join(to))
                .status()
                .expect("chown");
            assert!(status.success(), "chown {to}");
        }
    }
    let hba_path = data.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba_path).expect("read pg_hba.conf");
    std::fs::write(&hba_path, format!("{hba}\n{old}")).expect("write pg_hba.conf");
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'tls.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'tls.key'",
        "ALTER SYSTEM SET ssl_ca_file = 'tls_ca.crt'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        c.psql("postgres", sql);
    }
    for _ in 0..100 {
        if c.psql("postgres", "SHOW ssl") == "on" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("ssl did not turn on in the test cluster");
}

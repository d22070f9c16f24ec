//! The TLS material in force: the acceptor for clients (pgweir's certificate, the CAs client
//! certificates must chain to, ALPN "postgresql" for direct TLS) and the connector towards
//! Postgres, both built from the `[pgweir]` TLS keys ([`crate::config::TlsConfig`]). Built at
//! start, by `pgweir check` and on each reload; a file that cannot be used fails the build
//! with the key and the reason, so the material in force stays. Never logs a key.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256, Sha384, Sha512};
use thiserror::Error;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::oid_registry as oid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::signature_algorithm::SignatureAlgorithm;

use crate::config::{ClientTlsMode, ConfigError, Problem, ServerTlsMode, TlsConfig};

/// The ALPN protocol Postgres 17 requires for direct TLS, and accepts after an SSLRequest.
pub const ALPN: &[u8] = b"postgresql";

/// The TLS material in force, shared by clients, pools and the replica monitor; a reload
/// swaps it whole.
pub type TlsState = Arc<ArcSwap<Tls>>;

/// Why TLS material could not be built.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{key}: {path:?}: {reason}")]
    File {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Setup(String),
}

impl TlsError {
    /// As a problem with the configuration, for `pgweir check` and a refused reload.
    pub fn into_config_error(self) -> ConfigError {
        let (key, message) = match self {
            TlsError::File { key, path, reason } => {
                (format!("pgweir.{key}"), format!("{path:?}: {reason}"))
            }
            TlsError::Setup(reason) => (String::new(), reason),
        };
        ConfigError::Invalid(vec![Problem {
            line: None,
            key,
            message,
        }])
    }
}

/// Both sides' TLS, ready to use.
#[derive(Debug)]
pub struct Tls {
    /// `None` when `client_tls_sslmode = disable`.
    pub client: Option<ClientTls>,
    pub server: ServerTls,
}

/// What clients are offered.
pub struct ClientTls {
    pub mode: ClientTlsMode,
    pub acceptor: TlsAcceptor,
    /// `tls-server-end-point` data for pgweir's certificate; `None` when its signature
    /// algorithm names no hash (SCRAM-SHA-256-PLUS is then not offered).
    pub end_point: Option<Vec<u8>>,
}

/// How pgweir connects to Postgres.
pub struct ServerTls {
    pub mode: ServerTlsMode,
    /// `None` when `server_tls_sslmode = disable`.
    pub connector: Option<TlsConnector>,
}

/// The mode only: the rest is key material.
impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientTls({})", self.mode.as_str())
    }
}

/// The mode only: the rest is key material.
impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerTls({})", self.mode.as_str())
    }
}

impl Tls {
    /// Reads every file the keys name and builds both sides.
    pub fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = match config.client_sslmode {
            ClientTlsMode::Disable => None,
            mode => Some(client_side(config, mode, &provider)?),
        };
        let connector = match config.server_sslmode {
            ServerTlsMode::Disable => None,
            mode => Some(server_side(config, mode, &provider)?),
        };
        Ok(Tls {
            client,
            server: ServerTls {
                mode: config.server_sslmode,
                connector,
            },
        })
    }

    /// The shared handle for `self`.
    pub fn into_state(self) -> TlsState {
        Arc::new(ArcSwap::from_pointee(self))
    }
}

fn versions() -> [&'static rustls::SupportedProtocolVersion; 2] {
    [&rustls::version::TLS13, &rustls::version::TLS12]
}

fn setup(e: impl std::fmt::Display) -> TlsError {
    TlsError::Setup(e.to_string())
}

fn client_side(
    config: &TlsConfig,
    mode: ClientTlsMode,
    provider: &Arc<CryptoProvider>,
) -> Result<ClientTls, TlsError> {
    let cert_file = required(&config.client_cert_file, "client_tls_cert_file")?;
    let key_file = required(&config.client_key_file, "client_tls_key_file")?;
    let chain = certificates("client_tls_cert_file", cert_file)?;
    let key = private_key("client_tls_key_file", key_file)?;
    let end_point = chain.first().and_then(|leaf| end_point(leaf));
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&versions())
        .map_err(setup)?;
    let builder = match &config.client_ca_file {
        Some(path) => {
            let roots = roots("client_tls_ca_file", path)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
            let verifier = if mode.requires_cert() {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().map_err(setup)?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::File {
            key: "client_tls_key_file",
            path: key_file.display().to_string(),
            reason: format!("does not fit client_tls_cert_file: {e}"),
        })?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    Ok(ClientTls {
        mode,
        acceptor: TlsAcceptor::from(Arc::new(server)),
        end_point,
    })
}

fn server_side(
    config: &TlsConfig,
    mode: ServerTlsMode,
    provider: &Arc<CryptoProvider>,
) -> Result<TlsConnector, TlsError> {
    let builder = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&versions())
        .map_err(setup)?;
    let roots = match &config.server_ca_file {
        Some(path) => Some(roots("server_tls_ca_file", path)?),
        None if mode.verifies() => Some(system_roots()?),
        // Nothing is checked, so a machine without CA certificates still starts.
        None => None,
    };
    let webpki = roots
        .map(|r| WebPkiServerVerifier::builder_with_provider(Arc::new(r), Arc::clone(provider)))
        .map(|b| b.build().map_err(setup))
        .transpose()?;
    let verifier = Arc::new(ServerVerifier {
        mode,
        webpki,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let client = match (&config.server_cert_file, &config.server_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates("server_tls_cert_file", cert)?;
            let key_der = private_key("server_tls_key_file", key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsError::File {
                    key: "server_tls_key_file",
                    path: key.display().to_string(),
                    reason: format!("does not fit server_tls_cert_file: {e}"),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(client)))
}

fn required<'a>(
    path: &'a Option<std::path::PathBuf>,
    key: &'static str,
) -> Result<&'a Path, TlsError> {
    path.as_deref()
        .ok_or_else(|| TlsError::Setup(format!("{key} is not set")))
}

fn file_error(key: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        key,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Every certificate in a PEM file, at least one.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(key, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(key, path, e))?;
    if chain.is_empty() {
        return Err(file_error(key, path, "no certificate in the file"));
    }
    Ok(chain)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(key, path, e))
}

/// The operating system's CA certificates (as libpq's `sslrootcert=system`), for verify-ca
/// and verify-full without `server_tls_ca_file`.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = "no CA certificates found on this system (install ca-certificates)";
        return Err(setup(format!(
            "server_tls_sslmode verifies the server but server_tls_ca_file is not set and {why}"
        )));
    }
    Ok(roots)
}

fn roots(key: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates(key, path)?);
    if added == 0 {
        return Err(file_error(
            key,
            path,
            "no usable CA certificate in the file",
        ));
    }
    Ok(roots)
}

/// The `tls-server-end-point` channel-binding data of a certificate (RFC 5929): its hash
/// with the hash of its signature algorithm (RSA-PSS: of its parameters), SHA-256 for MD5
/// and SHA-1. `None` for an algorithm that names no hash (Ed25519).
pub fn end_point(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    let mut alg = &parsed.signature_algorithm.algorithm;
    // RSA-PSS names its hash in its parameters (Postgres 16 and libpq read it there).
    let pss = SignatureAlgorithm::try_from(&parsed.signature_algorithm).ok();
    if let Some(SignatureAlgorithm::RSASSA_PSS(params)) = &pss {
        alg = params.hash_algorithm_oid();
    }
    let is = |candidates: &[&oid::Oid<'_>]| candidates.contains(&alg);
    if is(&[
        &oid::OID_PKCS1_SHA384WITHRSA,
        &oid::OID_SIG_ECDSA_WITH_SHA384,
        &oid::OID_NIST_HASH_SHA384,
    ]) {
        Some(Sha384::digest(cert).to_vec())
    } else if is(&[
        &oid::OID_PKCS1_SHA512WITHRSA,
        &oid::OID_SIG_ECDSA_WITH_SHA512,
        &oid::OID_NIST_HASH_SHA512,
    ]) {
        Some(Sha512::digest(cert).to_vec())
    } else if is(&[
        &oid::OID_PKCS1_SHA256WITHRSA,
        &oid::OID_SIG_ECDSA_WITH_SHA256,
        &oid::OID_PKCS1_SHA1WITHRSA,
        &oid::OID_PKCS1_MD5WITHRSAENC,
        &oid::OID_SIG_ECDSA_WITH_SHA224,
        &oid::OID_PKCS1_SHA224WITHRSA,
        &oid::OID_NIST_HASH_SHA256,
        &oid::OID_HASH_SHA1,
    ]) {
        Some(Sha256::digest(cert).to_vec())
    } else {
        None
    }
}

/// The common name in a certificate's subject.
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Checks a server's certificate as `server_tls_sslmode` asks: not at all for `prefer` and
/// `require` (the handshake signature still is), the chain for `verify-ca`, the chain and the
/// host name for `verify-full`.
#[derive(Debug)]
struct ServerVerifier {
    mode: ServerTlsMode,
    /// The chain check; `None` when nothing is checked and no CA file is set.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        let verified = || match &self.webpki {
            Some(w) => w.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Err(rustls::CertificateError::UnknownIssuer.into()),
        };
        match self.mode {
            ServerTlsMode::VerifyFull => verified(),
            ServerTlsMode::VerifyCa => match verified() {
                Err(rustls::Error::InvalidCertificate(
                    NotValidForName | NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            },
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        (params.self_signed(&key).unwrap(), key)
    }

    #[test]
    fn end_point_is_the_sha256_of_an_ecdsa_sha256_certificate() {
        let (cert, _) = self_signed("alice");
        let der = cert.der();
        assert_eq!(end_point(der), Some(Sha256::digest(der).to_vec()));
        assert_eq!(common_name(der).as_deref(), Some("alice"));
        assert_eq!(end_point(b"not a certificate"), None);
    }

    /// RSA-PSS names its hash in the algorithm's parameters: Postgres 16 and libpq bind to
    /// it, so pgweir must too (made by `openssl req -x509 -sigopt rsa_padding_mode:pss -sha384`).
    #[test]
    fn end_point_of_an_rsa_pss_certificate_uses_its_hash() {
        let pem = include_bytes!("testdata/rsa_pss_sha384.pem");
        let der = CertificateDer::from_pem_slice(pem).unwrap();
        assert_eq!(end_point(&der), Some(Sha384::digest(&der).to_vec()));
    }

    #[test]
    fn unusable_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("localhost");
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let mut config = TlsConfig {
            client_sslmode: ClientTlsMode::Require,
            client_cert_file: Some(cert_path.clone()),
            client_key_file: Some(key_path),
            ..TlsConfig::default()
        };
        let tls = Tls::load(&config).unwrap();
        assert!(tls.client.is_some_and(|c| c.end_point.is_some()));

        let (_, other_key) = self_signed("localhost");
        let other = dir.path().join("other.pem");
        std::fs::write(&other, other_key.serialize_pem()).unwrap();
        config.client_key_file = Some(other);
        let e = Tls::load(&config).unwrap_err().to_string();
        assert!(e.starts_with("client_tls_key_file: "), "{e}");
        assert!(e.contains("does not fit"), "{e}");

        config.client_cert_file = Some(dir.path().join("missing.pem"));
        let e = Tls::load(&config).unwrap_err().to_string();
        assert!(e.starts_with("client_tls_cert_file: "), "{e}");
        assert!(!e.contains("PRIVATE KEY"), "{e}");
    }
}

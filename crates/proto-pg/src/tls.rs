//! TLS for both halves: the client-facing acceptor's certificate, and the target-facing connector
//! for each `tls` mode (disable, prefer, require, verify-full), as libpq's sslmode means them, and
//! the connectors other upstreams use: verified against CAs, or pinned to one certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WantsClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};

/// How witness talks TLS to a target, as libpq's sslmode (default: prefer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// TLS if the target offers it, without verifying its certificate.
    #[default]
    Prefer,
    /// TLS or no connection, without verifying the certificate.
    Require,
    /// TLS with the certificate verified against the CA and the host name.
    VerifyFull,
}

/// Why TLS could not be set up from the config.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} holds no PEM {what}")]
    NoPem { path: String, what: &'static str },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<TlsMode, String> {
        Ok(match s {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-full" => TlsMode::VerifyFull,
            other => return Err(format!("unknown tls mode {other:?}: use disable, prefer, require or verify-full")),
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client-facing TLS config from a PEM certificate chain and key.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8], source: &str) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile_certs(cert_pem);
    if certs.is_empty() {
        return Err(TlsSetupError::NoPem { path: source.to_string(), what: "certificate" });
    }
    let key = rustls_pemfile_key(key_pem).ok_or_else(|| TlsSetupError::NoPem { path: source.to_string(), what: "private key" })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// The target-facing TLS config for a mode (None for `disable`).
pub fn client_config(mode: TlsMode, ca_file: Option<&Path>) -> Result<Option<Arc<ClientConfig>>, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::Prefer | TlsMode::Require => {
            let any = HandshakeOnly { provider: provider(), pinned: None };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(any)).with_no_client_auth()
        }
        TlsMode::VerifyFull => return verified_client_config(ca_file, None).map(Some),
    };
    Ok(Some(Arc::new(config)))
}

/// A client certificate and its key, both PEM, and where they were read from (for messages).
pub struct ClientIdentity<'a> {
    pub cert_pem: &'a [u8],
    pub key_pem: &'a [u8],
    pub source: &'a str,
}

/// A client config that checks the server's certificate against `ca_file` (or the system's
/// CAs) and, with an identity, presents a client certificate when the server asks for one.
pub fn verified_client_config(ca_file: Option<&Path>, identity: Option<ClientIdentity<'_>>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read { path: path.display().to_string(), source })?;
            for cert in rustls_pemfile_certs(&pem) {
                roots.add(cert)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    with_identity(builder.with_root_certificates(roots), identity)
}

/// A client config that accepts exactly the server certificate whose DER has this SHA-256 (a
/// pin, as an SSH host key is: neither a CA, nor the host name, nor the validity dates are
/// looked at), and presents a client certificate when asked, with an identity.
pub fn pinned_client_config(sha256: [u8; 32], identity: Option<ClientIdentity<'_>>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let pinned = HandshakeOnly { provider: provider(), pinned: Some(sha256) };
    with_identity(builder.dangerous().with_custom_certificate_verifier(Arc::new(pinned)), identity)
}

fn with_identity(
    builder: ConfigBuilder<ClientConfig, WantsClientCert>,
    identity: Option<ClientIdentity<'_>>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let certs = rustls_pemfile_certs(identity.cert_pem);
            if certs.is_empty() {
                return Err(TlsSetupError::NoPem { path: identity.source.to_string(), what: "certificate" });
            }
            let key = rustls_pemfile_key(identity.key_pem)
                .ok_or_else(|| TlsSetupError::NoPem { path: identity.source.to_string(), what: "private key" })?;
            builder.with_client_auth_cert(certs, key)?
        }
    };
    Ok(Arc::new(config))
}

/// Checks the handshake signatures against the server's certificate, and of the certificate
/// only that its SHA-256 is the pinned one, when there is a pin. Without one it accepts any
/// certificate: libpq's `require`, which encrypts without authenticating the server.
#[derive(Debug)]
struct HandshakeOnly {
    provider: Arc<CryptoProvider>,
    pinned: Option<[u8; 32]>,
}

impl ServerCertVerifier for HandshakeOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pinned) = self.pinned else { return Ok(ServerCertVerified::assertion()) };
        let presented: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if presented != pinned {
            return Err(rustls::Error::General(format!(
                "the server's certificate has SHA-256 {}, not the pinned {}",
                hex::encode(presented),
                hex::encode(pinned)
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

fn rustls_pemfile_key(pem: &[u8]) -> Option<PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem).ok()
}

//! TLS for SIP (rustls, ring provider): Mediator's certificate and key, and the CA certificates it
//! trusts to verify its peers — both ways, since Lync-style trunks use mutual TLS. Loaded once at
//! start from PEM files; a bad file is an error naming the setting.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct TlsError {
    pub setting: &'static str,
    pub reason: String,
}

fn err(setting: &'static str, reason: impl Into<String>) -> TlsError {
    TlsError {
        setting,
        reason: reason.into(),
    }
}

/// What SIP over TLS needs: an acceptor for listeners and a connector for connections Mediator
/// opens.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
    /// Checks a peer's certificate against more names than the handshake's (an address that
    /// several configured names resolve to must be each of them).
    pub verifier: Arc<rustls::client::WebPkiServerVerifier>,
}

impl Tls {
    /// Whether the certificate chain a server presented is valid for `name` too (as the
    /// handshake checked it for the name it was made with). The reason when it is not.
    pub fn valid_for(&self, certs: &[CertificateDer<'_>], name: &str) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier;
        let (end, intermediates) = certs.split_first().ok_or("no certificate")?;
        let server = rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| format!("{name}: {e}"))?
            .to_owned();
        self.verifier
            .verify_server_cert(
                end,
                intermediates,
                &server,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads `certificate` (PEM chain), `private_key` (PEM) and `ca` (PEM, the roots peers'
/// certificates must chain to).
pub fn load(certificate: &Path, private_key: &Path, ca: &Path) -> Result<Tls, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| err("tls_certificate", format!("{}: {e}", certificate.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("tls_certificate", format!("{}: {e}", certificate.display())))?;
    if chain.is_empty() {
        return Err(err(
            "tls_certificate",
            format!("{}: no certificate in the file", certificate.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(private_key)
        .map_err(|e| err("tls_private_key", format!("{}: {e}", private_key.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| err("tls_ca", format!("{}: {e}", ca.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| err("tls_ca", format!("{}: {e}", ca.display())))?;
    for c in cas {
        roots
            .add(c)
            .map_err(|e| err("tls_ca", format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(err(
            "tls_ca",
            format!("{}: no certificate in the file", ca.display()),
        ));
    }
    let roots = Arc::new(roots);
    let server_verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| err("tls_ca", e.to_string()))?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| err("tls_ca", e.to_string()))?;
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("tls_certificate", e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| {
            err(
                "tls_private_key",
                format!("does not fit the certificate: {e}"),
            )
        })?;
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("tls_certificate", e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            err(
                "tls_private_key",
                format!("does not fit the certificate: {e}"),
            )
        })?;
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        verifier: server_verifier,
    })
}

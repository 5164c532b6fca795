//! Authentication of both daemons' APIs (gRPC and `/metrics`) and of their clients
//! (mediatorctl, mediator-control's relay client): TLS with client certificates (rustls through
//! tonic's `tls-ring`), and/or a bearer token (`authorization: Bearer …`, RFC 6750) read from a
//! file. Loaded once at start from PEM and token files; a bad file is an error naming the setting.
//!
//! What counts as authenticated off loopback: TLS whose clients must present a certificate from
//! the configured CA, or TLS with a token. A token without TLS could be read off the wire, so it
//! does not count (it still guards a loopback listener). Tokens are kept only as their SHA-256
//! and never printed: `Debug` shows `<token>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

/// The shortest token accepted (bytes): shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest (a header must stay small).
pub const MAX_TOKEN_LEN: usize = 1024;

/// An error naming the setting (or flag) that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct AuthError {
    pub setting: &'static str,
    pub reason: String,
}

fn err(setting: &'static str, reason: impl Into<String>) -> AuthError {
    AuthError {
        setting,
        reason: reason.into(),
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|e| err(setting, format!("cannot read {}: {e}", path.display())))
}

/// A bearer token, kept as its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<token>")
    }
}

/// The token in `text` (surrounding whitespace ignored): RFC 6750's token68 characters,
/// [`MIN_TOKEN_LEN`]..=[`MAX_TOKEN_LEN`] of them.
fn token_text(setting: &'static str, text: &[u8]) -> Result<String, AuthError> {
    let text = std::str::from_utf8(text)
        .map_err(|_| err(setting, "the token is not text"))?
        .trim();
    if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&text.len()) {
        return Err(err(
            setting,
            format!(
                "the token has {} characters; {MIN_TOKEN_LEN}-{MAX_TOKEN_LEN} are needed \
                 (e.g. `openssl rand -hex 32`)",
                text.len()
            ),
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~+/=".contains(*c)))
    {
        return Err(err(
            setting,
            format!(
                "the token holds {:?}; only letters, digits and -._~+/= may appear",
                c.escape_default().to_string()
            ),
        ));
    }
    Ok(text.to_string())
}

fn digest(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Token {
    /// The token in file `path` (setting `setting`).
    pub fn load(setting: &'static str, path: &Path) -> Result<Token, AuthError> {
        Ok(Token::new(&token_text(setting, &read(setting, path)?)?))
    }

    fn new(token: &str) -> Token {
        Token(digest(token.as_bytes()))
    }

    /// Whether an `authorization` header's value carries this token as `Bearer`.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(v) = authorization else {
            return false;
        };
        let Some(presented) = v
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case(b"bearer "))
            .and(v.get(7..))
        else {
            return false;
        };
        // Both sides hashed: the comparison's time says nothing about the token.
        digest(presented.trim_ascii()) == self.0
    }
}

/// An API listener's authentication settings (paths), as each daemon names them.
#[derive(Clone, Debug, Default)]
pub struct ServerFiles {
    /// `api_tls_certificate`: the listener's certificate chain (PEM).
    pub certificate: Option<PathBuf>,
    /// `api_tls_private_key`: its key (PEM).
    pub private_key: Option<PathBuf>,
    /// `api_tls_client_ca`: clients must present a certificate from this CA (PEM).
    pub client_ca: Option<PathBuf>,
    /// `api_token_file`: clients must send this bearer token.
    pub token_file: Option<PathBuf>,
}

/// The same as flags (each with its `MEDIATOR_API_…` variable), flattened into both daemons'
/// arguments; given flags win over the settings file.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerFlags {
    /// TLS certificate chain (PEM) of the gRPC and metrics listeners.
    #[arg(long, env = "MEDIATOR_API_TLS_CERTIFICATE", value_name = "PEM")]
    pub api_tls_certificate: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "MEDIATOR_API_TLS_PRIVATE_KEY", value_name = "PEM")]
    pub api_tls_private_key: Option<PathBuf>,
    /// Clients must present a certificate from this CA (PEM).
    #[arg(long, env = "MEDIATOR_API_TLS_CLIENT_CA", value_name = "PEM")]
    pub api_tls_client_ca: Option<PathBuf>,
    /// Clients must send the bearer token in this file (16-1024 characters).
    #[arg(long, env = "MEDIATOR_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
}

impl ServerFlags {
    /// `file`'s settings with the flags given put over them.
    pub fn over(&self, file: ServerFiles) -> ServerFiles {
        ServerFiles {
            certificate: self.api_tls_certificate.clone().or(file.certificate),
            private_key: self.api_tls_private_key.clone().or(file.private_key),
            client_ca: self.api_tls_client_ca.clone().or(file.client_ca),
            token_file: self.api_token_file.clone().or(file.token_file),
        }
    }
}

/// How an API listener authenticates its clients (both the gRPC and the metrics listener of a
/// daemon use the same).
#[derive(Clone, Debug, Default)]
pub struct ServerAuth {
    tls: Option<ServerTls>,
    token: Option<Token>,
}

#[derive(Clone)]
struct ServerTls {
    chain: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    rustls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_certificates", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

fn certs(setting: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, AuthError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(setting, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err(setting, "no certificate in the file"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerAuth {
    /// No authentication (loopback listeners, or `--insecure-listen`).
    pub fn none() -> ServerAuth {
        ServerAuth::default()
    }

    /// Loads and checks `f`: certificate and key go together, a client CA needs them.
    pub fn load(f: &ServerFiles) -> Result<ServerAuth, AuthError> {
        let token = f
            .token_file
            .as_deref()
            .map(|p| Token::load("api_token_file", p))
            .transpose()?;
        let tls = match (&f.certificate, &f.private_key) {
            (None, None) => {
                if f.client_ca.is_some() {
                    return Err(err(
                        "api_tls_client_ca",
                        "client certificates need TLS: give api_tls_certificate and api_tls_private_key too",
                    ));
                }
                None
            }
            (Some(c), Some(k)) => Some(Self::tls(c, k, f.client_ca.as_deref())?),
            (Some(_), None) => {
                return Err(err(
                    "api_tls_private_key",
                    "api_tls_certificate is given without its key",
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "api_tls_certificate",
                    "api_tls_private_key is given without its certificate",
                ));
            }
        };
        Ok(ServerAuth { tls, token })
    }

    fn tls(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<ServerTls, AuthError> {
        let chain = read("api_tls_certificate", cert)?;
        let key_pem = read("api_tls_private_key", key)?;
        let chain_der = certs("api_tls_certificate", &chain)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| err("api_tls_private_key", format!("not a PEM private key: {e}")))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("api_tls_certificate", e.to_string()))?;
        let (builder, client_ca) = match ca {
            Some(ca) => {
                let pem = read("api_tls_client_ca", ca)?;
                let mut roots = rustls::RootCertStore::empty();
                for c in certs("api_tls_client_ca", &pem)? {
                    roots
                        .add(c)
                        .map_err(|e| err("api_tls_client_ca", e.to_string()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| err("api_tls_client_ca", e.to_string()))?;
                (builder.with_client_cert_verifier(verifier), Some(pem))
            }
            None => (builder.with_no_client_auth(), None),
        };
        let config = builder.with_single_cert(chain_der, key_der).map_err(|e| {
            err(
                "api_tls_private_key",
                format!("does not fit the certificate: {e}"),
            )
        })?;
        Ok(ServerTls {
            chain,
            key: key_pem,
            client_ca,
            rustls: Arc::new(config),
        })
    }

    /// Whether a listener off loopback may use this without `--insecure-listen`: TLS, with
    /// client certificates or a token.
    pub fn authenticated(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.client_ca.is_some() || self.token.is_some())
    }

    /// What is required of clients, for the log.
    pub fn describe(&self) -> &'static str {
        match (&self.tls, self.token.is_some()) {
            (None, false) => "nothing (no TLS, no token)",
            (None, true) => "a bearer token, in clear (no TLS)",
            (Some(t), true) if t.client_ca.is_some() => {
                "TLS, a client certificate and a bearer token"
            }
            (Some(t), false) if t.client_ca.is_some() => "TLS and a client certificate",
            (Some(_), true) => "TLS and a bearer token",
            (Some(_), false) => "TLS only (no client authentication)",
        }
    }

    /// Whether clients must present a certificate (so a client that got through is known).
    pub fn client_certificates(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }

    /// tonic's TLS settings for the gRPC listener, when TLS is configured.
    pub fn grpc_tls(&self) -> Option<ServerTlsConfig> {
        self.tls.as_ref().map(|t| {
            // A client that connects and never finishes its handshake is dropped.
            let c = ServerTlsConfig::new()
                .identity(Identity::from_pem(&t.chain, &t.key))
                .timeout(crate::HANDSHAKE_TIMEOUT);
            match &t.client_ca {
                Some(ca) => c.client_ca_root(Certificate::from_pem(ca)),
                None => c,
            }
        })
    }

    /// A gRPC server builder with this authentication's TLS (handshakes within
    /// [`crate::HANDSHAKE_TIMEOUT`]) and keep-alives that notice a vanished client (HTTP/2
    /// pings every 30 s answered within 10 s, TCP keep-alive after 60 s idle).
    pub fn grpc_server(&self) -> Result<tonic::transport::Server, tonic::transport::Error> {
        let mut server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
            .tcp_keepalive(Some(std::time::Duration::from_secs(60)));
        if let Some(tls) = self.grpc_tls() {
            server = server.tls_config(tls)?;
        }
        Ok(server)
    }

    /// The TLS acceptor for the metrics listener, when TLS is configured.
    pub fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.rustls.clone()))
    }

    /// Whether a request with this `authorization` header value may pass (always, without a
    /// token).
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        self.token.as_ref().is_none_or(|t| t.admits(authorization))
    }

    /// The gRPC interceptor that refuses requests without the token (UNAUTHENTICATED).
    pub fn interceptor(&self) -> CheckToken {
        CheckToken(self.token.clone())
    }
}

/// Refuses gRPC requests without the bearer token (none configured: passes everything).
#[derive(Clone, Debug)]
pub struct CheckToken(Option<Token>);

impl Interceptor for CheckToken {
    fn call(&mut self, r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match &self.0 {
            Some(t)
                if !t.admits(
                    r.metadata()
                        .get("authorization")
                        .map(|v| v.as_encoded_bytes()),
                ) =>
            {
                Err(tonic::Status::unauthenticated(
                    "this API requires a bearer token (authorization: Bearer …)",
                ))
            }
            _ => Ok(r),
        }
    }
}

/// Why a daemon may not listen on `addr` with `auth`, or `None` when it may: off loopback only
/// when clients are authenticated (see [`ServerAuth::authenticated`]) or the operator says
/// `insecure` (`--insecure-listen`), and then [`warn_insecure`] says so.
pub fn listen_refusal(
    addr: std::net::SocketAddr,
    insecure: bool,
    auth: &ServerAuth,
) -> Option<String> {
    if addr.ip().is_loopback() || insecure || auth.authenticated() {
        return None;
    }
    let why = if auth.token.is_some() {
        "its bearer token would cross the network in clear (no TLS)"
    } else if auth.tls.is_some() {
        "it has TLS but authenticates no client"
    } else {
        "it has no authentication"
    };
    Some(format!(
        "{addr} is not a loopback address and {why}: anyone who reaches it could use it. Listen \
         on loopback (e.g. 127.0.0.1), or give api_tls_certificate and api_tls_private_key with \
         api_tls_client_ca and/or api_token_file, or accept that with --insecure-listen"
    ))
}

/// The warning at start for a listener off loopback without authentication that the operator
/// accepted.
pub fn warn_insecure(setting: &str, addr: std::net::SocketAddr, auth: &ServerAuth) {
    if !addr.ip().is_loopback() && !auth.authenticated() {
        tracing::warn!(
            setting,
            listen = %addr,
            clients_need = auth.describe(),
            "listening off loopback without authentication (--insecure-listen): anyone who reaches this address can use it"
        );
    }
}

// ---- clients ------------------------------------------------------------------------------

/// A client's authentication settings (paths) and the names they go by (flags or settings), for
/// errors.
#[derive(Clone, Debug, Default)]
pub struct ClientFiles {
    /// The CA the server's certificate must chain to; given: TLS (`https`).
    pub ca: Option<PathBuf>,
    /// The client's certificate chain and key, for servers that require one.
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    /// The bearer token to send.
    pub token_file: Option<PathBuf>,
}

/// The names of [`ClientFiles`]' four fields as the user gives them.
#[derive(Clone, Copy, Debug)]
pub struct ClientNames {
    pub ca: &'static str,
    pub certificate: &'static str,
    pub private_key: &'static str,
    pub token_file: &'static str,
}

/// How a client authenticates to a Mediator API.
#[derive(Clone, Default)]
pub struct ClientAuth {
    tls: Option<ClientTlsConfig>,
    token: Option<AsciiMetadataValue>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.as_ref().map(|_| "<token>"))
            .finish()
    }
}

impl ClientAuth {
    /// Loads and checks `f` (named as `n` in errors).
    pub fn load(f: &ClientFiles, n: ClientNames) -> Result<ClientAuth, AuthError> {
        let token = match &f.token_file {
            Some(p) => {
                let text = token_text(n.token_file, &read(n.token_file, p)?)?;
                let mut v: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {text}"))
                    .map_err(|e| err(n.token_file, e.to_string()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let identity = match (&f.certificate, &f.private_key) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let chain = read(n.certificate, c)?;
                certs(n.certificate, &chain)?;
                let key = read(n.private_key, k)?;
                PrivateKeyDer::from_pem_slice(&key)
                    .map_err(|e| err(n.private_key, format!("not a PEM private key: {e}")))?;
                Some(Identity::from_pem(chain, key))
            }
            (Some(_), None) => {
                return Err(err(
                    n.private_key,
                    format!("{} is given without its key", n.certificate),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    n.certificate,
                    format!("{} is given without its certificate", n.private_key),
                ));
            }
        };
        let tls = match &f.ca {
            Some(ca) => {
                let pem = read(n.ca, ca)?;
                certs(n.ca, &pem)?;
                let c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
                Some(match identity {
                    Some(id) => c.identity(id),
                    None => c,
                })
            }
            None if identity.is_some() => {
                return Err(err(
                    n.ca,
                    format!("a client certificate needs TLS: give {} too", n.ca),
                ));
            }
            None => None,
        };
        Ok(ClientAuth { tls, token })
    }

    /// Whether connections use TLS (`https`).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// An endpoint for `host:port` (or a URL whose scheme must agree with the TLS settings).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let scheme = if self.uses_tls() { "https" } else { "http" };
        let url = match addr.split_once("://") {
            Some((s, _)) if s == scheme => addr.to_string(),
            Some((s, _)) => {
                return Err(if self.uses_tls() {
                    format!(
                        "{addr}: TLS is configured, so the address must be https:// (not {s}://)"
                    )
                } else {
                    format!("{addr}: {s}:// needs the server's CA (TLS settings)")
                });
            }
            None => format!("{scheme}://{addr}"),
        };
        let e = Endpoint::from_shared(url).map_err(|e| format!("{addr}: {e}"))?;
        if self.token.is_some() && !self.uses_tls() && !loopback_host(e.uri().host()) {
            return Err(format!(
                "{addr}: a bearer token would cross the network in clear; give the server's CA \
                 for TLS (https), or reach it on loopback"
            ));
        }
        match &self.tls {
            Some(t) => e.tls_config(t.clone()).map_err(|e| format!("{addr}: {e}")),
            None => Ok(e),
        }
    }

    /// The interceptor that adds the token to every request (none configured: nothing).
    pub fn add_token(&self) -> AddToken {
        AddToken(self.token.clone())
    }
}

/// Whether a URL's host is this machine's loopback (a literal address, or `localhost`).
fn loopback_host(host: Option<&str>) -> bool {
    let Some(h) = host else {
        return false;
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Adds `authorization: Bearer …` to every request.
#[derive(Clone)]
pub struct AddToken(Option<AsciiMetadataValue>);

impl std::fmt::Debug for AddToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddToken(<token>)")
    }
}

impl Interceptor for AddToken {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

/// A channel whose requests carry the client's token.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<Channel, AddToken>;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mediator-serve-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn tokens_are_checked_as_bearer_and_never_shown() {
        let t = Token::load("api_token_file", &file("t1", "  s3cret-token-0123456789\n"))
            .expect("token");
        assert!(t.admits(Some(b"Bearer s3cret-token-0123456789")));
        assert!(t.admits(Some(b"bearer s3cret-token-0123456789")));
        assert!(!t.admits(Some(b"Bearer s3cret-token-012345678")));
        assert!(!t.admits(Some(b"Basic s3cret-token-0123456789")));
        assert!(!t.admits(Some(b"s3cret-token-0123456789")));
        assert!(!t.admits(None));
        assert_eq!(format!("{t:?}"), "<token>");
        let short = Token::load("api_token_file", &file("t2", "short")).expect_err("short");
        assert!(
            short
                .to_string()
                .starts_with("api_token_file: the token has 5"),
            "{short}"
        );
        let bad =
            Token::load("api_token_file", &file("t3", "has a space in it ok")).expect_err("space");
        assert!(bad.to_string().contains("only letters"), "{bad}");
        let gone =
            Token::load("api_token_file", Path::new("/nonexistent/token")).expect_err("gone");
        assert!(
            gone.to_string()
                .starts_with("api_token_file: cannot read /nonexistent/token")
        );
    }

    #[test]
    fn off_loopback_needs_tls_with_client_certificates_or_a_token() {
        let lo: std::net::SocketAddr = "127.0.0.1:9100".parse().expect("addr");
        let off: std::net::SocketAddr = "198.18.0.1:9100".parse().expect("addr");
        let none = ServerAuth::none();
        assert_eq!(listen_refusal(lo, false, &none), None);
        let e = listen_refusal(off, false, &none).expect("refused");
        assert!(
            e.contains("no authentication") && e.contains("--insecure-listen"),
            "{e}"
        );
        assert_eq!(listen_refusal(off, true, &none), None);
        let token_only = ServerAuth::load(&ServerFiles {
            token_file: Some(file("t4", "0123456789abcdef0123")),
            ..Default::default()
        })
        .expect("token");
        assert!(!token_only.authenticated());
        let e = listen_refusal(off, false, &token_only).expect("refused");
        assert!(e.contains("in clear"), "{e}");
        assert!(token_only.admits(Some(b"Bearer 0123456789abcdef0123")));
        assert!(!token_only.admits(None));
        assert!(none.admits(None));
        let e = ServerAuth::load(&ServerFiles {
            client_ca: Some(file("ca", "x")),
            ..Default::default()
        })
        .expect_err("ca alone");
        assert_eq!(e.setting, "api_tls_client_ca");
        let e = ServerAuth::load(&ServerFiles {
            certificate: Some(file("cert", "x")),
            ..Default::default()
        })
        .expect_err("cert alone");
        assert_eq!(e.setting, "api_tls_private_key");
        let e = ServerAuth::load(&ServerFiles {
            certificate: Some(file("cert2", "not pem")),
            private_key: Some(file("key2", "not pem")),
            ..Default::default()
        })
        .expect_err("not pem");
        assert_eq!(e.setting, "api_tls_certificate");
    }

    #[test]
    fn clients_add_their_token_and_pick_the_scheme() {
        let names = ClientNames {
            ca: "--api-ca",
            certificate: "--api-certificate",
            private_key: "--api-private-key",
            token_file: "--api-token-file",
        };
        let c = ClientAuth::load(
            &ClientFiles {
                token_file: Some(file("t5", "0123456789abcdef0123")),
                ..Default::default()
            },
            names,
        )
        .expect("client");
        assert!(!format!("{c:?}").contains("0123456789"), "{c:?}");
        let r = c
            .add_token()
            .call(tonic::Request::new(()))
            .expect("request");
        let v = r.metadata().get("authorization").expect("header");
        assert_eq!(v.as_encoded_bytes(), b"Bearer 0123456789abcdef0123");
        assert!(c.endpoint("127.0.0.1:7300").is_ok());
        assert!(c.endpoint("[::1]:7300").is_ok());
        assert!(c.endpoint("https://127.0.0.1:7300").is_err());
        let e = c
            .endpoint("198.18.0.5:7300")
            .expect_err("a token in clear off loopback");
        assert!(e.contains("in clear"), "{e}");
        let e = ClientAuth::load(
            &ClientFiles {
                certificate: Some(file("c6", "x")),
                private_key: Some(file("k6", "x")),
                ..Default::default()
            },
            names,
        )
        .expect_err("no pem");
        assert_eq!(e.setting, "--api-certificate");
    }
}

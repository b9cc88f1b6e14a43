//! HTTP for witness: an HTTP/1.1 listener (plain, or TLS for a client that begins with a TLS
//! handshake) clients send requests to as
//! `/c/CONNECTION/path…` with a witness token (`Authorization: Bearer`, or basic auth with the
//! token as password), and an HTTP/1.1 client that forwards each admitted request to the
//! connection's upstream with the credential witness holds for it. Every request is recorded
//! (method, path, query, headers with credentials masked, the start of its body with the whole
//! body's length and digest) before it is decided on and forwarded; every response as its body
//! ends. Bodies stream through; only their first bytes, up to a cap, are held.
//!
//! A connection may be a Kubernetes API server (`kube`): its requests are then read and decided
//! as the API server's authorizer reads them, witness's refusals are `Status` objects kubectl
//! prints, and Secret data is masked for whoever is not named to see it.
//!
//! This crate knows HTTP and nothing of tokens, policy rules or the ledger's format: it asks its
//! [`Gate`] who a client is, which target a connection name means, where to record and whether
//! each request may go on, and puts each request through the gate's one admission path; its
//! [`HttpGate`] for the masking rules of a session, which `bodymask` applies to bodies.

#![forbid(unsafe_code)]

pub mod body;
pub mod bodymask;
mod front;
pub mod headers;
pub mod kube;
pub mod path;
mod recorder;
mod upgrade;
mod upstream;
pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use witness_core::Secret;
use witness_core::Subject;
pub use witness_gate::Gate;
use witness_mask::SessionMasks;

pub use front::serve_client;
pub use kube::KubeTarget;

/// What the HTTP front needs of witness beyond the [`Gate`]: a session's masking rules.
pub trait HttpGate: Gate {
    /// The masking rules for a session, or None when nothing is masked for it. Asked once, when
    /// the session starts.
    fn masks(&self, subject: &Subject) -> Option<Arc<SessionMasks>>;
}

/// The recording cap for bodies when none is configured: 64 KiB of each.
pub const DEFAULT_MAX_BODY_RECORDED: usize = 64 << 10;

/// How the HTTP front treats clients and upstreams.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Bytes of each request and response body kept in the record (the whole body's length and
    /// digest are recorded whatever its size).
    pub max_body_recorded: usize,
    /// How long connecting to an upstream may take.
    pub connect_timeout: Duration,
    /// With a suffix, `NAME.SUFFIX` in a request's host addresses connection NAME (besides the
    /// `/c/NAME` prefix, which works always).
    pub host_suffix: Option<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings { max_body_recorded: DEFAULT_MAX_BODY_RECORDED, connect_timeout: Duration::from_secs(15), host_suffix: None }
    }
}

/// The HTTP front: the gate, the settings and the TLS certificate every client connection shares.
pub struct HttpFront<G> {
    pub(crate) gate: Arc<G>,
    pub(crate) settings: HttpSettings,
    /// Offered to clients that begin with a TLS handshake; the others speak plain HTTP.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// MiB of bodies being read whole for masking, shared by every connection.
    pub(crate) masking_budget: Arc<tokio::sync::Semaphore>,
}

impl<G: HttpGate> HttpFront<G> {
    /// `tls`: witness's certificate for clients (ALPN is set to HTTP/1.1 here).
    pub fn new(gate: Arc<G>, settings: HttpSettings, tls: Option<Arc<rustls::ServerConfig>>) -> HttpFront<G> {
        let tls = tls.map(|config| {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        });
        HttpFront { gate, settings, tls, masking_budget: Arc::new(tokio::sync::Semaphore::new(front::MASKING_BUDGET_MIB)) }
    }
}

/// An HTTP upstream witness holds a credential for.
pub struct HttpTarget {
    /// The connection name clients address (`/c/NAME/…`).
    pub name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Host` for the upstream: the URL's authority.
    pub(crate) authority: HeaderValue,
    /// The URL's path without its trailing `/` (empty for none): requests' paths go after it.
    pub(crate) base_path: String,
    pub(crate) tls: Option<UpstreamTls>,
    /// The headers witness adds to every forwarded request (sensitive: never logged).
    pub(crate) credential: Vec<(HeaderName, HeaderValue)>,
    /// For a Kubernetes API server: requests are read and decided as Kubernetes requests,
    /// refusals are `Status` objects, and Secret data is masked.
    pub(crate) kube: Option<KubeTarget>,
}

/// TLS towards an `https` upstream.
pub(crate) struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// A credential witness adds to the requests it forwards.
pub enum UpstreamCredential {
    /// `Authorization: Bearer …`
    Bearer(Secret),
    /// `Authorization: Basic …`
    Basic { user: String, password: Secret },
    /// A header of the upstream's own (`X-Api-Key: …`).
    Header { name: String, value: Secret },
}

/// A connection's URL or credential that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("url {url:?} {problem}")]
    Url { url: String, problem: String },
    #[error("header {name:?} cannot carry the credential: {problem}")]
    Header { name: String, problem: String },
}

impl HttpTarget {
    /// A target at `url` (`http://host:port/base` or `https://…`; `tls` is the client config for
    /// https), adding `credentials` to every request.
    pub fn new(
        name: &str,
        url: &str,
        credentials: Vec<UpstreamCredential>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<HttpTarget, TargetError> {
        let bad = |problem: &str| TargetError::Url { url: url.to_string(), problem: problem.to_string() };
        let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&format!("is not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("names no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not hold a user or password; give the credential with bearer_env, basic_user or headers"));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match (https, tls) {
            (false, _) => None,
            (true, None) => return Err(bad("is https, and no TLS settings were given for it")),
            (true, Some(config)) => {
                let server_name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| bad("has a host TLS cannot check a certificate for"))?;
                Some(UpstreamTls { config, server_name })
            }
        };
        let mut credential = Vec::with_capacity(credentials.len());
        for given in credentials {
            let (name, value) = match given {
                UpstreamCredential::Bearer(token) => ("authorization".to_string(), format!("Bearer {}", token.expose())),
                UpstreamCredential::Basic { user, password } => {
                    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
                    ("authorization".to_string(), format!("Basic {pair}"))
                }
                UpstreamCredential::Header { name, value } => (name, value.expose().to_string()),
            };
            let header = |problem: &str| TargetError::Header { name: name.clone(), problem: problem.to_string() };
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| header("not a header name"))?;
            let mut header_value =
                HeaderValue::from_str(&value).map_err(|_| header("the value has characters a header cannot carry (a newline?)"))?;
            header_value.set_sensitive(true);
            credential.push((header_name, header_value));
        }
        let authority_value = HeaderValue::from_str(authority.as_str()).map_err(|_| bad("has a host that cannot be a Host header"))?;
        Ok(HttpTarget {
            name: name.to_string(),
            host,
            port,
            authority: authority_value,
            base_path: uri.path().trim_end_matches('/').to_string(),
            tls,
            credential,
            kube: None,
        })
    }

    /// Makes this target a Kubernetes API server.
    pub fn kubernetes(mut self, settings: KubeTarget) -> HttpTarget {
        self.kube = Some(settings);
        self
    }

    /// The protocol its sessions are recorded as.
    pub fn protocol(&self) -> witness_core::Protocol {
        if self.kube.is_some() {
            witness_core::Protocol::Kubernetes
        } else {
            witness_core::Protocol::Http
        }
    }

    /// host:port, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The header names the credential is in (masked in records, dropped from clients' requests).
    pub(crate) fn credential_names(&self) -> Vec<HeaderName> {
        self.credential.iter().map(|(name, _)| name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_plain_urls_and_credentials() {
        let target =
            HttpTarget::new("billing", "http://127.0.0.1:8081/v1/", vec![UpstreamCredential::Bearer(Secret::new("s3".into()))], None)
                .unwrap();
        assert_eq!((target.address(), target.base_path.as_str()), ("127.0.0.1:8081".to_string(), "/v1"));
        assert_eq!(target.credential[0].1, "Bearer s3");
        assert!(target.credential[0].1.is_sensitive());
        let basic = UpstreamCredential::Basic { user: "svc".into(), password: Secret::new("pw".into()) };
        let target = HttpTarget::new("b", "http://example.com", vec![basic], None).unwrap();
        assert_eq!((target.port, target.base_path.as_str()), (80, ""));
        assert_eq!(target.credential[0].1, "Basic c3ZjOnB3");
        for (url, problem) in [
            ("ftp://x", "http:// or https://"),
            ("https://x", "no TLS settings"),
            ("http://u:p@x", "user or password"),
            ("http://x/?a=1", "query"),
        ] {
            let e = HttpTarget::new("b", url, vec![], None).err().unwrap().to_string();
            assert!(e.contains(problem), "{url}: {e}");
        }
        let newline = UpstreamCredential::Header { name: "x-key".into(), value: Secret::new("a\nb".into()) };
        assert!(HttpTarget::new("b", "http://x", vec![newline], None).is_err());
    }
}

//! The upstream side: one HTTP/1.1 connection per session, opened at its first forwarded request
//! (over TLS for an `https` URL) and opened again when the upstream has closed it.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use witness_gate::Stream;

use crate::body::BoxError;
use crate::HttpTarget;

/// The body witness sends upstream.
pub type UpstreamBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// Why a request did not get an answer from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("connecting to {address} took longer than {seconds} s")]
    ConnectTimeout { address: String, seconds: u64 },
    #[error("TLS with {address} failed: {source}")]
    Tls { address: String, source: std::io::Error },
    #[error("HTTP with {address} failed: {source}")]
    Http { address: String, source: hyper::Error },
}

/// A session's connection to its upstream, if it has one.
#[derive(Default)]
pub struct Upstream {
    sender: Option<SendRequest<UpstreamBody>>,
}

impl Upstream {
    /// Sends one request, connecting first if there is no open connection.
    pub async fn send(
        &mut self,
        target: &HttpTarget,
        connect_timeout: Duration,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let address = target.address();
        let usable = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.sender = Some(connect(target, connect_timeout).await?);
        }
        let sender = self.sender.as_mut().expect("connected just above");
        sender.send_request(request).await.map_err(|source| {
            self.sender = None;
            UpstreamError::Http { address, source }
        })
    }
}

async fn connect(target: &HttpTarget, timeout: Duration) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
    let address = target.address();
    let connecting = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| UpstreamError::Connect { address: address.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let stream = match &target.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
                let tls = connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|source| UpstreamError::Tls { address: address.clone(), source })?;
                Stream::ClientTls(Box::new(tls))
            }
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Http { address: address.clone(), source })?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "an upstream HTTP connection ended");
            }
        });
        Ok(sender)
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .unwrap_or_else(|_| Err(UpstreamError::ConnectTimeout { address: address.clone(), seconds: timeout.as_secs() }))
}

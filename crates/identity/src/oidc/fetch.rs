//! Fetching an issuer's discovery document and JWKS over HTTPS.
//!
//! Every fetch is bounded: 5 s per request (connecting, headers and body together) and 1 MiB per
//! body, so a slow or hostile endpoint costs witness little. Redirects are not followed (a
//! discovery document or JWKS that moved is a configuration to fix, and following could leave
//! https). Plain http is refused except on loopback addresses, where tests run their provider.
//!
//! TLS is rustls with the ring provider and the system's root certificates, like the rest of
//! witness (reqwest's `rustls-tls-native-roots` feature; nothing pulls in aws-lc-rs, so rustls's
//! choice of a default provider stays unambiguous).

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Client, Url};
use serde_json::Value;

use super::keys::{parse_jwks, Key};

/// Time for one request, body included.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest discovery document or JWKS read; real ones are a few KiB.
pub(super) const MAX_BODY: usize = 1024 * 1024;

/// The HTTP client for key fetches.
pub(super) fn client() -> Result<Client, String> {
    Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(FETCH_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("witness/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The `jwks_uri` of an issuer's discovery document.
pub(super) async fn discover_jwks_uri(client: &Client, issuer: &str) -> Result<String, String> {
    discover_endpoint(client, issuer, "jwks_uri").await
}

/// An endpoint (`jwks_uri`, `authorization_endpoint`, `token_endpoint`) of an issuer's discovery
/// document, after checking that the document is the issuer's own (its `issuer` is exactly the
/// configured one, as OpenID Connect Discovery requires).
pub(super) async fn discover_endpoint(client: &Client, issuer: &str, name: &str) -> Result<String, String> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let doc = get_json(client, &url).await?;
    match doc.get("issuer").and_then(Value::as_str) {
        Some(found) if found == issuer => {}
        Some(found) => return Err(format!("{url} is the discovery document of issuer {found:?}, not {issuer:?}")),
        None => return Err(format!("{url} has no \"issuer\"")),
    }
    let endpoint = doc.get(name).and_then(Value::as_str).ok_or_else(|| format!("{url} has no {name:?}"))?;
    checked_url(endpoint)?;
    Ok(endpoint.to_owned())
}

/// One bounded form POST (a token request); the answer's JSON, whatever its status, with the
/// status, since token endpoints explain refusals in a JSON body.
pub(super) async fn post_form(client: &Client, url: &str, form: &[(&str, &str)]) -> Result<(u16, Value), String> {
    let parsed = checked_url(url)?;
    let request = async {
        let mut response = client
            .post(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("the body is larger than {} KiB", MAX_BODY / 1024));
            }
            body.extend_from_slice(&chunk);
        }
        let json = serde_json::from_slice(&body).map_err(|e| format!("the answer (HTTP {status}) is not JSON: {e}"))?;
        Ok((status, json))
    };
    match tokio::time::timeout(FETCH_TIMEOUT, request).await {
        Ok(result) => result.map_err(|e| format!("POST {url}: {e}")),
        Err(_) => Err(format!("POST {url}: no complete answer within {} s", FETCH_TIMEOUT.as_secs())),
    }
}

/// `application/x-www-form-urlencoded`, as token requests are sent.
fn form_body(form: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://form.invalid/").expect("a constant URL");
    url.query_pairs_mut().extend_pairs(form);
    url.query().unwrap_or_default().to_string()
}

/// The usable signing keys at `jwks_uri`.
pub(super) async fn fetch_jwks(client: &Client, jwks_uri: &str) -> Result<Vec<Key>, String> {
    let body = get(client, jwks_uri).await?;
    parse_jwks(&body).map_err(|e| format!("{jwks_uri}: {e}"))
}

async fn get_json(client: &Client, url: &str) -> Result<Value, String> {
    let body = get(client, url).await?;
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not JSON: {e}"))
}

/// One bounded GET; the error says which URL failed and how.
async fn get(client: &Client, url: &str) -> Result<Vec<u8>, String> {
    let parsed = checked_url(url)?;
    // reqwest's own timeout covers the body too; this one makes the bound independent of that.
    match tokio::time::timeout(FETCH_TIMEOUT, get_bounded(client, parsed)).await {
        Ok(result) => result.map_err(|e| format!("GET {url}: {e}")),
        Err(_) => Err(format!("GET {url}: no complete answer within {} s", FETCH_TIMEOUT.as_secs())),
    }
}

async fn get_bounded(client: &Client, url: Url) -> Result<Vec<u8>, String> {
    let mut response = client.get(url).header(reqwest::header::ACCEPT, "application/json").send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP status {status}"));
    }
    if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(format!("the body is larger than {} KiB", MAX_BODY / 1024));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the body is larger than {} KiB", MAX_BODY / 1024));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// https anywhere, http on loopback only.
fn checked_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback =
        host == "localhost" || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        "http" => Err(format!("{url} is plain http: issuers and their keys must be https (http is allowed on loopback only)")),
        other => Err(format!("{url} has scheme {other:?}; use https")),
    }
}

/// reqwest's errors put the cause (refused, timed out, certificate) in their sources.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

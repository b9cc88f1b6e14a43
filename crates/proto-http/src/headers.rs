//! Which headers go on and how they are recorded. The client's credential headers are witness's
//! own business (they carry the witness token) and never reach the upstream; neither do
//! hop-by-hop headers, which describe one connection, not the request. The upstream gets the
//! target's credential instead. In the record, every value that may be a secret (credentials,
//! cookies, the target's own header names) is masked.

use http::header::{self, HeaderMap, HeaderName};
use serde_json::Value;

/// What a masked value is recorded as.
pub const MASKED: &str = "[masked]";

/// Headers the client sends for witness (its token) or for a proxy: dropped before forwarding,
/// the drop recorded.
const CLIENT_CREDENTIALS: [HeaderName; 2] = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION];

/// Headers about one hop (RFC 9110 section 7.6.1), plus `Host`, which witness sets for the
/// upstream, `Expect`, which witness has answered itself by reading the body, and `Upgrade`:
/// witness sets it again for a WebSocket upgrade, the only one it relays.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "proxy-authenticate",
    "expect",
];

/// Headers a client uses to make a server take a request for another method (`POST` with
/// `X-HTTP-Method-Override: DELETE`); a request with one is decided as the strictest.
const METHOD_OVERRIDES: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];

/// Names whose values are masked in records: credentials and cookies.
const SECRET_NAMES: [&str; 5] = ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"];

/// Removes what must not reach the upstream from a client's headers: its credentials, hop-by-hop
/// headers (and those `Connection` names) and headers the target's credential sets. Returns the
/// names of the credential headers dropped, for the record.
pub fn strip_for_upstream(headers: &mut HeaderMap, injected: &[HeaderName]) -> Vec<String> {
    let mut dropped = Vec::new();
    for name in CLIENT_CREDENTIALS.iter().chain(injected) {
        if headers.remove(name).is_some() {
            dropped.push(name.as_str().to_string());
        }
    }
    strip_hop_by_hop(headers);
    dropped
}

/// Removes hop-by-hop headers, and the headers a `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The `Upgrade` value to send on for a WebSocket upgrade request (a `GET` with `Connection:
/// upgrade` and `Upgrade: websocket`): `websocket` alone, whatever else the client offered
/// (`websocket, SPDY/3.1` would let the API server switch to SPDY, which witness does not read);
/// None for any other request.
pub fn websocket_upgrade(method: &http::Method, headers: &HeaderMap) -> Option<http::HeaderValue> {
    let upgrade = headers.get(header::UPGRADE)?;
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let websocket = upgrade.to_str().ok()?.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket"));
    (method == http::Method::GET && asks && websocket).then(|| http::HeaderValue::from_static("websocket"))
}

/// The method-override header a request carries, if any.
pub fn method_override(headers: &HeaderMap) -> Option<&'static str> {
    // `X_HTTP_Method_Override` too: CGI-style servers read `_` in a header's name as `-`.
    headers.keys().find_map(|name| METHOD_OVERRIDES.into_iter().find(|known| name.as_str().replace('_', "-") == *known))
}

/// Whether a POST (in any case) may name another method in a `_method` parameter, which Rails,
/// Laravel, Symfony and Express's method-override obey on a POST: a query or form key that is
/// `_method` once decoded and read as PHP reads names (`.method`, ` method` and `[method` are
/// `_method` there, and a name ends at a NUL), or the name in a multipart or JSON body (quoted
/// or not, or `\u005fmethod`). A body of such a type that runs past what witness read may hold
/// one further on; a body with no type is a form to Rack.
pub fn method_override_parameter(method: &http::Method, query: Option<&str>, headers: &HeaderMap, start: &[u8], body_ended: bool) -> bool {
    if !method.as_str().eq_ignore_ascii_case("POST") {
        return false;
    }
    // A name witness cannot decode may be `_method`.
    let names_it = |pairs: &[u8]| {
        pairs.split(|b| *b == b'&' || *b == b';').any(|pair| {
            let key = String::from_utf8_lossy(pair.split(|b| *b == b'=').next().unwrap_or_default()).replace('+', " ");
            crate::path::decode(&key).map_or(true, |key| php_name(&key) == "_method")
        })
    };
    if query.is_some_and(|query| names_it(query.as_bytes())) {
        return true;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let form = content_type.is_empty() || content_type.starts_with("application/x-www-form-urlencoded");
    let named_body = form || content_type.starts_with("multipart/") || content_type.contains("json");
    if !named_body {
        return false;
    }
    if !body_ended {
        return true;
    }
    if form {
        return names_it(start);
    }
    names_a_method(&String::from_utf8_lossy(start).to_ascii_lowercase())
}

/// A parameter's name as PHP reads it: up to a NUL, leading spaces dropped, and `.`, ` ` and `[`
/// as `_`; in lower case.
fn php_name(name: &str) -> String {
    let name = name.split('\0').next().unwrap_or_default();
    name.trim_start_matches(' ').chars().map(|c| if matches!(c, '.' | ' ' | '[') { '_' } else { c.to_ascii_lowercase() }).collect()
}

/// Whether a multipart or JSON body (in lower case) may name `_method`: `method` after `_` (or
/// what PHP reads as one, or a JSON escape of it) that starts a name, after a quote, `=` or a
/// space.
fn names_a_method(text: &str) -> bool {
    text.match_indices("method").any(|(at, _)| {
        let before = &text[..at];
        ["_", ".", " ", "[", "\\u005f", "%5f"].iter().any(|joint| {
            before
                .strip_suffix(joint)
                .is_some_and(|rest| rest.is_empty() || rest.ends_with(['"', '\'', '=', ' ', '\n', '\r', ';', '{', ',']))
        })
    })
}

/// Headers as recorded: `[name, value]` pairs in the order sent, secret values masked (and the
/// target's own credential header names, `extra_secret`), other values as text.
pub fn recorded(headers: &HeaderMap, extra_secret: &[HeaderName]) -> Value {
    let pairs = headers
        .iter()
        .map(|(name, value)| {
            let secret = SECRET_NAMES.contains(&name.as_str()) || extra_secret.contains(name);
            let shown = if secret { MASKED.to_string() } else { witness_core::shown_text(value.as_bytes()).into_owned() };
            Value::Array(vec![Value::String(name.as_str().to_string()), Value::String(shown)])
        })
        .collect();
    Value::Array(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_websocket_upgrade_is_sent_on_as_websocket_alone() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket, SPDY/3.1".parse().unwrap());
        assert_eq!(websocket_upgrade(&http::Method::GET, &headers), Some(http::HeaderValue::from_static("websocket")));
        assert_eq!(websocket_upgrade(&http::Method::POST, &headers), None);
        headers.insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
        assert_eq!(websocket_upgrade(&http::Method::GET, &headers), None);
    }

    #[test]
    fn a_method_parameter_is_found_in_the_query_or_a_body() {
        let body = |kind: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, kind.parse().unwrap());
            headers
        };
        let post = http::Method::POST;
        let none = HeaderMap::new();
        let overrides = |query: Option<&str>, headers: &HeaderMap, start: &[u8], ended: bool| {
            method_override_parameter(&post, query, headers, start, ended)
        };
        assert!(overrides(Some("a=1&_method=DELETE"), &none, b"", true));
        assert!(overrides(Some("%5Fmethod=delete"), &none, b"", true));
        assert!(overrides(Some(".method=delete"), &none, b"", true), "PHP reads .method as _method");
        assert!(!overrides(Some("payment_method=card&method=x"), &none, b"", true));
        assert!(!method_override_parameter(&http::Method::GET, Some("_method=DELETE"), &none, b"", true), "only a POST is overridden");
        let mut underscored = HeaderMap::new();
        underscored.insert("x_http_method_override", "DELETE".parse().unwrap());
        assert_eq!(method_override(&underscored), Some("x-http-method-override"));
        let form = body("application/x-www-form-urlencoded; charset=utf-8");
        assert!(overrides(None, &form, b"name=x&_%6Dethod=delete", true));
        assert!(!overrides(None, &form, b"name=x&shipping_method=post", true));
        // Past what witness read, any body may hold one.
        assert!(overrides(None, &form, b"name=x", false));
        assert!(overrides(None, &body("multipart/form-data; boundary=b"), b"name=\"_method\"", true));
        assert!(overrides(None, &body("multipart/form-data; boundary=b"), b"Content-Disposition: form-data; name=_method", true));
        assert!(overrides(None, &body("application/json"), b"{\"_method\": \"DELETE\"}", true));
        assert!(overrides(None, &body("application/json"), b"{\"\\u005fmethod\": \"DELETE\"}", true));
        assert!(!overrides(None, &body("application/json"), b"{\"payment_method\": 1, \"method\": 2}", true));
        // A body without a type is a form to Rack; a name ends at a NUL for PHP.
        assert!(overrides(None, &none, b"_method=DELETE", true));
        assert!(overrides(Some("_method%00x=DELETE"), &none, b"", true));
        // Another type of body names no method, however long.
        assert!(!overrides(None, &body("application/octet-stream"), b"_method=DELETE", false));
        assert!(method_override_parameter(&"post".parse().unwrap(), Some("_method=DELETE"), &none, b"", true), "a POST in any case");
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer wit_secret".parse().unwrap());
        headers.insert("proxy-authorization", "Basic eA==".parse().unwrap());
        headers.insert("x-api-key", "client-made".parse().unwrap());
        headers.insert("connection", "keep-alive, x-hop".parse().unwrap());
        headers.insert("x-hop", "1".parse().unwrap());
        headers.insert("upgrade", "websocket".parse().unwrap());
        headers.insert("accept", "application/json".parse().unwrap());
        let dropped = strip_for_upstream(&mut headers, &[HeaderName::from_static("x-api-key")]);
        assert_eq!(dropped, ["authorization", "proxy-authorization", "x-api-key"]);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn secrets_are_masked_in_the_record() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer wit_secret".parse().unwrap());
        headers.insert("cookie", "session=abc".parse().unwrap());
        headers.insert("x-billing-key", "k".parse().unwrap());
        headers.insert("accept", "*/*".parse().unwrap());
        let shown = recorded(&headers, &[HeaderName::from_static("x-billing-key")]).to_string();
        assert!(!shown.contains("wit_secret") && !shown.contains("abc") && !shown.contains("\"k\""), "{shown}");
        assert!(shown.contains("[\"accept\",\"*/*\"]"), "{shown}");
    }

    #[test]
    fn method_overrides_are_noticed() {
        let mut headers = HeaderMap::new();
        assert_eq!(method_override(&headers), None);
        headers.insert("X-HTTP-Method-Override", "DELETE".parse().unwrap());
        assert_eq!(method_override(&headers), Some("x-http-method-override"));
    }
}

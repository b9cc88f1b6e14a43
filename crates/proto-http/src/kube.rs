//! Kubernetes on the HTTP front: a request read as the API server's authorizer reads it (verb,
//! group, resource, subresource, namespace, name, impersonation), the `Status` objects kubectl
//! prints for witness's own answers, and the masking of `Secret` data in what the API server
//! answers and in what the record keeps.
//!
//! The reading follows the API server's request-info rules: `/api/v1/…` is the core group and
//! `/apis/GROUP/VERSION/…` the others; `namespaces/NS/RESOURCE/NAME/SUBRESOURCE`; a `GET`
//! without a name is `list`, or `watch` with `?watch=true`; a `DELETE` without a name is
//! `deletecollection`; the legacy `/watch/` prefix is `watch`. Exec, attach and port-forward
//! are `create` whatever their method (kubectl opens them with a WebSocket `GET`), as the API
//! server authorizes them. Where witness cannot be sure (an uncertain path, a method-override
//! header, `watch` given twice with different values) the request says why, and policy decides
//! it as the strictest.
//!
//! Secret data is masked by walking the JSON the API server sends: every `data` and
//! `stringData` map's values and every annotation (kubectl's `last-applied-configuration` holds a
//! copy of the object, and a patch can have put data in any other), wherever they are in an
//! answer about secrets. A JSON patch of a secret by someone who does not read them is refused:
//! its operations can copy data anywhere in the object. Witness asks the API
//! server for plain JSON there (no protobuf, no compression) and refuses an answer it cannot read.

use http::header::{HeaderMap, HeaderValue};
use http::Method;
use serde_json::{json, Map, Value};
use witness_core::{Glob, KubeRequest, KubeResource};

use crate::path::ReadPath;

/// What a masked `data` value becomes: base64 of `[masked]`, so that clients decoding it work.
pub const MASKED_DATA: &str = "W21hc2tlZF0=";
/// What a masked `stringData` value or annotation becomes.
pub const MASKED_TEXT: &str = crate::headers::MASKED;
/// Subresources opened as a stream (WebSocket or SPDY), authorized as `create`.
const STREAMING_SUBRESOURCES: [&str; 3] = ["exec", "attach", "portforward"];
/// Subresources of a namespace itself (`/api/v1/namespaces/NS/status`).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// A Kubernetes connection's settings beyond those of any HTTP upstream.
#[derive(Clone, Debug, Default)]
pub struct KubeTarget {
    /// Identities that see Secret data; everyone else gets it masked.
    pub secret_readers: Vec<Glob>,
    /// Groups whose members see Secret data.
    pub secret_reader_groups: Vec<String>,
}

impl KubeTarget {
    /// Whether `identity` (in `groups`) sees Secret data as the API server sends it.
    pub fn reads_secrets(&self, identity: &str, groups: &[String]) -> bool {
        self.secret_readers.iter().any(|g| g.matches(identity)) || self.secret_reader_groups.iter().any(|g| groups.contains(g))
    }
}

/// Reads a request the way the API server's authorizer does. `raw` is the path after the
/// connection's prefix as sent and `read` as rules read it; `uncertain` is why witness may
/// already not read it as the API server does.
pub fn read_request(
    method: &Method,
    raw: &str,
    read: &ReadPath,
    query: Option<&str>,
    headers: &HeaderMap,
    uncertain: Option<&str>,
) -> KubeRequest {
    let mut request = KubeRequest {
        verb: method.as_str().to_ascii_lowercase(),
        resource: None,
        path: read.path.clone(),
        uncertain: uncertain.map(str::to_string),
        impersonate: impersonation(headers),
        command: Vec::new(),
    };
    // The API server splits the path at every `/`: an empty segment is an empty name (an empty
    // namespace lists every namespace), where reading `//` as `/` would shift every part.
    let trimmed = raw.trim_matches('/');
    if !trimmed.is_empty() && trimmed.split('/').any(str::is_empty) {
        request.uncertain.get_or_insert_with(|| "an empty path segment (//), which the API server reads as an empty name".into());
    }
    // Go drops a query pair with a `;` in it; witness would read it.
    if query.is_some_and(|q| q.contains(';')) {
        request.uncertain.get_or_insert_with(|| "a ; in the query, which the API server drops with its pair".into());
    }
    let segments: Vec<&str> = read.path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, mut parts) = match segments.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        // Discovery, /version, /healthz, /openapi/…: no resource.
        _ => return request,
    };
    let mut verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_string();
    if verb.is_empty() {
        verb = request.verb.clone();
    }
    if matches!(parts.first(), Some(&("watch" | "proxy"))) && parts.len() >= 2 {
        verb = parts[0].to_string();
        parts = &parts[1..];
    }
    let mut namespace = "";
    if parts.first() == Some(&"namespaces") && parts.len() > 1 {
        namespace = parts[1];
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
            parts = &parts[2..];
        }
    }
    let mut resource =
        KubeResource { group: group.into(), version: version.into(), namespace: namespace.into(), ..KubeResource::default() };
    resource.resource = parts.first().map(|s| s.to_string()).unwrap_or_default();
    resource.name = parts.get(1).map(|s| s.to_string()).unwrap_or_default();
    if verb != "proxy" {
        resource.subresource = parts.get(2).map(|s| s.to_string()).unwrap_or_default();
    }
    if resource.name.is_empty() && verb == "get" {
        verb = match watch_asked(query) {
            Ok(true) => "watch".into(),
            Ok(false) => "list".into(),
            Err(why) => {
                request.uncertain.get_or_insert_with(|| why.to_string());
                "watch".into()
            }
        };
    }
    if resource.name.is_empty() && verb == "delete" {
        verb = "deletecollection".into();
    }
    if STREAMING_SUBRESOURCES.contains(&resource.subresource.as_str()) {
        verb = "create".into();
    }
    if resource.subresource == "exec" {
        match query_values(query, "command") {
            Ok(command) => request.command = command,
            Err(why) => {
                request.uncertain.get_or_insert_with(|| why.to_string());
            }
        }
    }
    request.verb = verb;
    request.resource = Some(resource);
    request
}

/// Whether the query asks for a watch, as the API server reads `watch`: present with any value
/// but `0` or `false` (in any case), an empty one included, the first value deciding. An error
/// when its values disagree, or a name is encoded (it might decode to `watch`).
fn watch_asked(query: Option<&str>) -> Result<bool, &'static str> {
    let mut asked = None;
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "watch" {
            if key.contains(['%', '+']) {
                return Err("an encoded query parameter name");
            }
            continue;
        }
        let this = !(value == "0" || value.eq_ignore_ascii_case("false"));
        if asked.is_some_and(|before| before != this) {
            return Err("watch given twice with different values");
        }
        asked = Some(this);
    }
    Ok(asked.unwrap_or(false))
}

/// The values of `name` in a query, decoded as the API server decodes them (`+` is a space).
fn query_values(query: Option<&str>, name: &str) -> Result<Vec<String>, &'static str> {
    let mut values = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if crate::path::decode(&key.replace('+', " "))? == name {
            values.push(crate::path::decode(&value.replace('+', " "))?);
        }
    }
    Ok(values)
}

/// What the `Impersonate-*` headers ask to act as.
fn impersonation(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut asked = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        let Some(what) = name.strip_prefix("impersonate-") else { continue };
        let what = match what {
            "user" => "users".to_string(),
            "group" => "groups".to_string(),
            "uid" => "uids".to_string(),
            other => match other.strip_prefix("extra-") {
                Some(key) => format!("userextras/{key}"),
                None => format!("unknown/{other}"),
            },
        };
        asked.push((what, witness_core::shown_text(value.as_bytes()).into_owned()));
    }
    asked
}

/// Whether a request's answer may hold Secret data: a request about secrets, or one witness
/// cannot read exactly.
pub fn about_secrets(request: &KubeRequest) -> bool {
    request.uncertain.is_some() || request.resource.as_ref().is_some_and(|r| r.group.is_empty() && r.resource == "secrets")
}

/// Whether a request reads a pod's log as it grows (`kubectl logs -f`): `follow` given, and not
/// `false` or `0` (a value read as the API server reads a boolean query parameter), its name
/// decoded as the API server decodes it (`fol%6cow`). A query witness cannot decode may follow.
pub fn follows_logs(request: &KubeRequest, query: Option<&str>) -> bool {
    reads_logs(request) && query_values(query, "follow").map_or(true, |values| values.iter().any(|v| !matches!(v.as_str(), "false" | "0")))
}

/// Whether a log request cuts the log at a byte count (`limitBytes`, however its name is
/// escaped), which may end it inside a value, where the detectors cannot see it whole. A query
/// witness cannot decode may.
pub fn cuts_logs(request: &KubeRequest, query: Option<&str>) -> bool {
    reads_logs(request) && query_values(query, "limitBytes").map_or(true, |values| !values.is_empty())
}

fn reads_logs(request: &KubeRequest) -> bool {
    request.resource.as_ref().is_some_and(|r| r.resource == "pods" && r.subresource == "log")
}

/// Whether a request's body is a JSON patch (RFC 6902), whose operations can copy values from
/// one place of an object to another.
pub fn is_json_patch(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json-patch"))
}

/// Whether an answer's `Content-Type` is JSON witness can mask (a Table is JSON too).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

/// The `Accept` to send the API server for a request whose answer witness masks: the client's
/// when it asks for JSON only, else plain JSON.
pub fn json_accept(headers: &HeaderMap) -> HeaderValue {
    let asked = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json_only = !asked.is_empty()
        && asked.split(',').all(|kind| kind.trim().to_ascii_lowercase().starts_with("application/json"))
        && HeaderValue::from_str(asked).is_ok();
    if json_only {
        HeaderValue::from_str(asked).unwrap_or(HeaderValue::from_static("application/json"))
    } else {
        HeaderValue::from_static("application/json")
    }
}

/// Masks Secret data wherever it is in `value`; returns how many values were masked.
pub fn mask_secrets(value: &mut Value) -> usize {
    match value {
        Value::Object(map) => {
            let mut masked = 0;
            for (key, inner) in map.iter_mut() {
                match (key.as_str(), inner) {
                    ("data", Value::Object(data)) => masked += mask_values(data, MASKED_DATA),
                    ("stringData", Value::Object(data)) => masked += mask_values(data, MASKED_TEXT),
                    // Every annotation: kubectl's last-applied one holds a copy of the data, and an
                    // earlier patch may have put it in any other.
                    ("annotations", Value::Object(annotations)) => masked += mask_values(annotations, MASKED_TEXT),
                    (_, inner) => masked += mask_secrets(inner),
                }
            }
            masked
        }
        Value::Array(items) => items.iter_mut().map(mask_secrets).sum(),
        _ => 0,
    }
}

fn mask_values(data: &mut Map<String, Value>, with: &str) -> usize {
    for value in data.values_mut() {
        *value = Value::String(with.into());
    }
    data.len()
}

/// Masks the Secret data in one JSON document (a whole answer, or one watch event). An error
/// when it is not JSON: witness then cannot know what it holds.
pub fn mask_document(bytes: &[u8]) -> Result<(Vec<u8>, usize), serde_json::Error> {
    let mut value: Value = serde_json::from_slice(bytes)?;
    let masked = mask_secrets(&mut value);
    let mut out = serde_json::to_vec(&value)?;
    if bytes.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok((out, masked))
}

/// Masks one event of a watch about secrets (a line of JSON); an error when it is not JSON
/// witness can mask.
pub fn mask_event(line: &[u8]) -> Result<Vec<u8>, String> {
    mask_document(line).map(|(masked, _)| masked).map_err(|e| format!("a watch event about secrets is not JSON witness can mask: {e}"))
}

/// A Kubernetes `Status` object for an answer witness makes itself (kubectl prints its
/// `message`); `details` carries witness's own fields (the rule, the approval).
pub fn status(code: u16, message: &str, details: Map<String, Value>) -> Value {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        429 => "TooManyRequests",
        502..=504 => "ServiceUnavailable",
        _ => "InternalError",
    };
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    })
}

/// The record's view of a request: its verb and resource as rules read them.
pub fn recorded(request: &KubeRequest) -> Value {
    let mut shown = json!({ "verb": request.verb });
    match &request.resource {
        Some(r) => {
            for (key, value) in [
                ("group", &r.group),
                ("version", &r.version),
                ("resource", &r.resource),
                ("subresource", &r.subresource),
                ("namespace", &r.namespace),
                ("name", &r.name),
            ] {
                if !value.is_empty() || key == "group" {
                    shown[key] = json!(value);
                }
            }
        }
        None => shown["path"] = json!(request.path),
    }
    if !request.impersonate.is_empty() {
        shown["impersonate"] = json!(request.impersonate);
    }
    if !request.command.is_empty() {
        shown["command"] = json!(request.command);
    }
    shown
}

#[cfg(test)]
mod tests {

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;
    use crate::body::MaskedLines;

    /// kubectl's annotation holding the object as last applied, data included.
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
    use crate::path;

    fn read(method: &str, target: &str) -> KubeRequest {
        read_with(method, target, &HeaderMap::new())
    }

    fn read_with(method: &str, target: &str, headers: &HeaderMap) -> KubeRequest {
        let (raw, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        let read = path::read(raw);
        let uncertain = read.uncertain;
        read_request(&method.parse().unwrap(), raw, &read, query, headers, uncertain)
    }

    fn shown(request: &KubeRequest) -> String {
        request.to_string()
    }

    #[test]
    fn requests_read_as_the_api_server_reads_them() {
        let cases = [
            ("GET", "/api/v1/namespaces/prod/pods", "list pods in prod"),
            ("GET", "/api/v1/namespaces/prod/pods?watch=true&resourceVersion=1", "watch pods in prod"),
            ("GET", "/api/v1/watch/namespaces/prod/pods", "watch pods in prod"),
            ("GET", "/api/v1/pods", "list pods"),
            ("GET", "/api/v1/namespaces/prod/pods/api-1", "get pods api-1 in prod"),
            ("GET", "/api/v1/namespaces/prod/pods/api-1/log?follow=true", "get pods api-1 (log) in prod"),
            (
                "GET",
                "/api/v1/namespaces/prod/pods/api-1/exec?command=sh&stdin=true&command=-c&command=echo+hi%21",
                "create pods api-1 (exec) in prod: sh -c echo hi!",
            ),
            ("POST", "/api/v1/namespaces/prod/pods/api-1/portforward", "create pods api-1 (portforward) in prod"),
            ("DELETE", "/api/v1/namespaces/prod/pods/api-2", "delete pods api-2 in prod"),
            ("DELETE", "/api/v1/namespaces/prod/pods", "deletecollection pods in prod"),
            ("POST", "/api/v1/namespaces/prod/secrets", "create secrets in prod"),
            ("PATCH", "/apis/apps/v1/namespaces/dev/deployments/web", "patch deployments.apps web in dev"),
            ("PUT", "/apis/apps/v1/namespaces/dev/deployments/web/scale", "update deployments.apps web (scale) in dev"),
            ("GET", "/api/v1/namespaces/prod", "get namespaces prod in prod"),
            ("PUT", "/api/v1/namespaces/prod/finalize", "update namespaces prod (finalize) in prod"),
            ("GET", "/api/v1/nodes", "list nodes"),
            ("GET", "/api/v1/namespaces/prod/services/web/proxy/admin/x", "get services web (proxy) in prod"),
            ("GET", "/api", "get /api"),
            ("GET", "/api/v1", "get /api/v1"),
            ("GET", "/apis/apps/v1", "get /apis/apps/v1"),
            ("GET", "/version", "get /version"),
            ("POST", "/openapi/v2", "post /openapi/v2"),
        ];
        for (method, target, expect) in cases {
            assert_eq!(shown(&read(method, target)), expect, "{method} {target}");
        }
    }

    #[test]
    fn what_witness_cannot_read_exactly_says_why() {
        let twice = read("GET", "/api/v1/namespaces/prod/pods?watch=true&watch=false");
        assert_eq!(twice.verb, "watch");
        assert_eq!(twice.uncertain.as_deref(), Some("watch given twice with different values"));
        assert_eq!(read("GET", "/api/v1/namespaces/prod/pods?watch=yes").verb, "watch");
        assert_eq!(read("GET", "/api/v1/namespaces/prod/pods?watch").verb, "watch");
        assert_eq!(read("GET", "/api/v1/namespaces/prod/pods?watch=f").verb, "watch");
        assert_eq!(read("GET", "/api/v1/namespaces/prod/pods?watch=FALSE").verb, "list");
        // An empty namespace is every namespace to the API server, not a shifted path.
        let empty = read("GET", "/api/v1/namespaces//secrets");
        assert!(empty.uncertain.as_deref().is_some_and(|why| why.contains("empty path segment")), "{empty}");
        assert!(about_secrets(&empty));
        assert!(read("GET", "/api/v1/namespaces/prod/pods/").uncertain.is_none());
        let semicolon = read("GET", "/api/v1/namespaces/prod/pods/web/exec?command=true;&command=sh");
        assert!(semicolon.uncertain.is_some());
        assert!(read("GET", "/api/v1/namespaces/prod/pods?%77atch=true").uncertain.is_some());
        assert!(read("GET", "/api/v1/namespaces/prod/../kube-system/secrets").uncertain.is_some());
        assert!(read("GET", "/api/v1/namespaces/prod/pods?watch=1").uncertain.is_none());
    }

    #[test]
    fn a_followed_log_is_told_however_its_parameter_is_written() {
        let log = "/api/v1/namespaces/dev/pods/quiet/log";
        let follows = |query: &str| follows_logs(&read("GET", &format!("{log}?{query}")), Some(query));
        for query in ["follow=true", "follow", "fol%6cow=true", "%66ollow=1", "tailLines=5&follow=yes"] {
            assert!(follows(query), "{query}");
        }
        for query in ["follow=false", "follow=0", "fol%6cow=%30", "followers=true", "tailLines=5"] {
            assert!(!follows(query), "{query}");
        }
        let cuts = |query: &str| cuts_logs(&read("GET", &format!("{log}?{query}")), Some(query));
        assert!(cuts("limitBytes=7") && cuts("follow=true&limit%42ytes=7"));
        assert!(!cuts("tailLines=5") && !cuts_logs(&read("GET", "/api/v1/namespaces/dev/pods/quiet"), Some("limitBytes=7")));
    }

    #[test]
    fn impersonation_headers_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert("Impersonate-User", "alice".parse().unwrap());
        headers.append("Impersonate-Group", "system:masters".parse().unwrap());
        headers.append("Impersonate-Group", "dev".parse().unwrap());
        headers.insert("Impersonate-Extra-Scopes", "view".parse().unwrap());
        let request = read_with("GET", "/api/v1/pods", &headers);
        let asked: Vec<String> = request.impersonate.iter().map(|(what, value)| format!("{what}={value}")).collect();
        assert_eq!(asked, ["users=alice", "groups=system:masters", "groups=dev", "userextras/scopes=view"]);
    }

    #[test]
    fn secret_data_is_masked_wherever_it_is() {
        let list = json!({
            "kind": "SecretList",
            "items": [{
                "metadata": {"name": "db", "annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"czNjcjN0\"}}", "team": "a"}},
                "data": {"password": "czNjcjN0", "user": "YXBw"},
                "stringData": {"token": "plain"},
                "type": "Opaque"
            }]
        });
        let mut masked = list.clone();
        assert_eq!(mask_secrets(&mut masked), 5);
        let text = masked.to_string();
        for secret in ["czNjcjN0", "YXBw", "plain"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(masked["items"][0]["data"]["user"], MASKED_DATA);
        assert_eq!(masked["items"][0]["metadata"]["annotations"]["team"], MASKED_TEXT, "every annotation");
        let event = format!("{}\n", json!({"type": "ADDED", "object": list["items"][0]}));
        let (out, count) = mask_document(event.as_bytes()).unwrap();
        assert_eq!(count, 5);
        assert!(out.ends_with(b"\n") && !String::from_utf8(out).unwrap().contains("czNjcjN0"));
        assert!(mask_document(b"\x0a\x08protobuf").is_err());
    }

    #[tokio::test]
    async fn watch_events_are_masked_one_line_at_a_time() {
        let event =
            |name: &str| format!("{}\n", json!({"type": "ADDED", "object": {"metadata": {"name": name}, "data": {"k": "czNjcjN0"}}}));
        let both = format!("{}{}", event("a"), event("b"));
        // Events split anywhere across frames.
        let (first, second) = both.split_at(both.len() / 2 + 3);
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
            vec![Ok(Frame::data(Bytes::from(first.to_string()))), Ok(Frame::data(Bytes::from(second.to_string())))];
        let body = MaskedLines::new(StreamBody::new(crate::body::tests::ready_stream(frames)), mask_event);
        let out = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(!out.contains("czNjcjN0") && out.contains(MASKED_DATA), "{out}");
        let broken: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![Ok(Frame::data(Bytes::from_static(b"not json\n")))];
        assert!(MaskedLines::new(StreamBody::new(crate::body::tests::ready_stream(broken)), mask_event).collect().await.is_err());
    }

    #[test]
    fn secret_answers_are_asked_for_in_plain_json() {
        let mut headers = HeaderMap::new();
        assert_eq!(json_accept(&headers), "application/json");
        headers.insert("accept", "application/vnd.kubernetes.protobuf, application/json".parse().unwrap());
        assert_eq!(json_accept(&headers), "application/json");
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        headers.insert("accept", table.parse().unwrap());
        assert_eq!(json_accept(&headers), table);
    }

    #[test]
    fn statuses_are_what_kubectl_prints() {
        let body = status(403, "denied by rule no-deletes", Map::new());
        assert_eq!((body["kind"].as_str(), body["reason"].as_str(), body["code"].as_u64()), (Some("Status"), Some("Forbidden"), Some(403)));
    }
}

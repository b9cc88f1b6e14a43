//! The HTTP gateway end to end: a Python upstream (stdlib `http.server`) that counts what it
//! receives, `witness serve` in front of it, and curl and Python `requests` as clients. The
//! upstream gets witness's credential and never the client's; bodies round-trip byte for byte,
//! large ones streamed; refused requests never reach the upstream, however their path is
//! written; held requests wait for an approver; every exchange is in the ledger, which verifies.

mod pg;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pg::{assert_nowhere_in, Gateway};
use serde_json::Value;
use sha2::{Digest, Sha256};
use witness_testkit::{free_port, Python};

/// The credential witness holds for the `billing` upstream, and the key it holds for `keyed`.
const UPSTREAM_TOKEN: &str = "upstream-secret-7f3a";
const UPSTREAM_KEY: &str = "upstream-key-91c2";
/// Bytes of each body the record keeps in these tests.
const RECORDED_CAP: usize = 4096;

/// The upstream: answers every request, keeps what each carried (method, path, credential
/// headers, body digest), and tells the test at `/__seen`. `/api/echo` sends the body back,
/// `/api/bytes?n=N` sends N bytes of a fixed pattern.
const UPSTREAM: &str = r#"
import hashlib, json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
seen, lock = [], threading.Lock()
BLOCK = bytes(range(256)) * 256

class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            parts = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))
    def reply(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def any(self):
        if self.path == "/__seen":
            with lock:
                return self.reply(200, json.dumps(seen).encode(), "application/json")
        data = self.body()
        with lock:
            seen.append({"method": self.command, "path": self.path, "authorization": self.headers.get("Authorization"),
                         "x_api_key": self.headers.get("X-Api-Key"), "headers": str(self.headers),
                         "body_sha256": hashlib.sha256(data).hexdigest(), "body_bytes": len(data)})
        if self.path.startswith("/api/echo"):
            return self.reply(200, data, self.headers.get("Content-Type") or "application/octet-stream")
        if self.path.startswith("/api/bytes"):
            left = int(self.path.split("n=")[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(left))
            self.end_headers()
            while left > 0:
                self.wfile.write(BLOCK[:min(left, len(BLOCK))])
                left -= min(left, len(BLOCK))
            return
        self.reply(200, json.dumps({"method": self.command, "path": self.path}).encode(), "application/json")
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_TRACE = do_TRACK = do_get = any

server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
if len(sys.argv) >= 3:
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[1], sys.argv[2])
    if len(sys.argv) == 4:
        # Clients must present a certificate this one (self-signed) is, or signed.
        tls.verify_mode = ssl.CERT_REQUIRED
        tls.load_verify_locations(sys.argv[3])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The Python upstream, stopped when dropped.
struct Upstream {
    child: Child,
    port: u16,
    /// "http" or "https".
    scheme: &'static str,
}

impl Upstream {
    fn start() -> Upstream {
        Upstream::launch(&[])
    }

    /// An https upstream with this certificate and key (PEM files).
    fn start_tls(cert: &Path, key: &Path) -> Upstream {
        Upstream::launch(&[cert, key])
    }

    /// An https upstream that also requires a client certificate `client_ca` vouches for.
    fn start_mutual_tls(cert: &Path, key: &Path, client_ca: &Path) -> Upstream {
        Upstream::launch(&[cert, key, client_ca])
    }

    fn launch(tls: &[&Path]) -> Upstream {
        let mut child = Command::new("python3").arg("-c").arg(UPSTREAM).args(tls).stdout(Stdio::piped()).spawn().expect("python3 starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the upstream did not say its port: {line:?}"));
        Upstream { child, port, scheme: if tls.is_empty() { "http" } else { "https" } }
    }

    /// What the upstream received, asked directly (not through witness).
    fn seen(&self) -> Vec<Value> {
        let url = format!("{}://127.0.0.1:{}/__seen", self.scheme, self.port);
        let out = Command::new("curl").args(["-sS", "-k", &url]).output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const RULES: &str = r#"
[[rules]]
name = "no-admin"
http = ["* /admin*", "* /internal/*"]
action = "deny"
message = "the admin API is for people"

[[rules]]
name = "no-record-deletes"
http = ["DELETE /api/records/*"]
action = "deny"

[[rules]]
name = "payments-need-approval"
http = ["POST /api/payments/*"]
action = "approve"
approvers = ["finance"]
timeout = "10m"

[[rules]]
name = "refunds-need-quick-approval"
http = ["POST /api/refunds/*"]
action = "approve"
approvers = ["finance"]
timeout = "1s"
"#;

struct Setup {
    upstream: Upstream,
    gw: Gateway,
    /// An agent's token, and an approver's.
    agent: String,
    approver: String,
}

fn setup() -> Setup {
    setup_with(Upstream::start(), "", tempfile::tempdir().unwrap())
}

/// witness in front of `upstream` with the connections `billing` and `keyed`, `extra` connections
/// and the rules above; its files in `dir`.
fn setup_with(upstream: Upstream, extra: &str, dir: tempfile::TempDir) -> Setup {
    let port = free_port();
    let key_file = dir.path().join("upstream-key");
    std::fs::write(&key_file, format!("{UPSTREAM_KEY}\n")).unwrap();
    let config = format!(
        r#"data_dir = "{data}"
[listen]
http = "127.0.0.1:{port}"
api = "127.0.0.1:{api}"

[http]
max_body_recorded = {RECORDED_CAP}
host_suffix = "witness.test"

[[connections]]
name = "billing"
protocol = "http"
url = "http://127.0.0.1:{up}"
bearer_env = "WITNESS_TEST_UPSTREAM_TOKEN"

[[connections]]
name = "keyed"
protocol = "http"
url = "http://127.0.0.1:{up}/"
[connections.headers]
X-Api-Key = {{ file = "{key}" }}
{extra}
{RULES}"#,
        data = dir.path().join("data").display(),
        api = free_port(),
        up = upstream.port,
        key = key_file.display(),
    );
    let gw = Gateway::launch(dir, port, &config, &[("WITNESS_TEST_UPSTREAM_TOKEN", UPSTREAM_TOKEN)]);
    let agent = gw.token("claude", &["--groups", "ai-agents", "--task", "INV-3"]);
    let approver = gw.token("fiona", &["--groups", "finance"]);
    Setup { upstream, gw, agent, approver }
}

/// What curl got: status, response headers (lowercase names), body.
struct Got {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gw.port)
    }

    /// curl with `args` (the URL among them), writing into `scratch`.
    fn curl(&self, args: &[&str]) -> Got {
        let scratch = tempfile::tempdir().unwrap();
        let (head, body) = (scratch.path().join("head"), scratch.path().join("body"));
        let out = Command::new("curl")
            .args(["-sS", "--path-as-is", "-D", head.to_str().unwrap(), "-o", body.to_str().unwrap(), "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Got {
            status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
            headers: std::fs::read_to_string(&head).unwrap().to_ascii_lowercase(),
            body: std::fs::read(&body).unwrap(),
        }
    }

    fn bearer(&self, token: &str) -> String {
        format!("Authorization: Bearer {token}")
    }

    fn approvals(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_witness"))
            .arg("approvals")
            .args(args)
            .arg("--config")
            .arg(&self.gw.config)
            .env("WITNESS_TOKEN", &self.approver)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// The waiting approvals once `n` of them wait (polled, bounded).
    fn wait_for_approvals(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out, err) = self.approvals(&["list", "--json"]);
            assert!(ok, "approvals list failed: {err}");
            let list = serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone();
            if list.len() == n {
                return list;
            }
            assert!(Instant::now() < deadline, "expected {n} waiting approvals: {list:?}\n{}", self.gw.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every recorded event of every session, once `n` sessions have ended.
    fn events(&self, n: usize) -> Vec<Value> {
        self.gw.all_events(n)
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `n` bytes that are not all alike, so that a reordering or a lost chunk shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
}

fn header<'a>(got: &'a Got, name: &str) -> Option<&'a str> {
    got.headers.lines().find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::trim))
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn exchanges_reach_the_upstream_with_witness_credential_and_are_recorded() {
    let mut s = setup();
    let bearer = s.bearer(&s.agent);

    // A GET with a query: the upstream sees the path without the prefix, and witness's token.
    let got = s.curl(&["-H", &bearer, &s.url("/c/billing/api/invoices?status=open")]);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let answer: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(answer["path"], "/api/invoices?status=open");
    let seen = s.upstream.seen();
    assert_eq!(seen[0]["authorization"], format!("Bearer {UPSTREAM_TOKEN}"));

    // Bodies both ways, byte for byte; a large upload and download stream through.
    let small = pattern(3000);
    let scratch = tempfile::tempdir().unwrap();
    let small_file = scratch.path().join("small");
    std::fs::write(&small_file, &small).unwrap();
    let got = s.curl(&["-H", &bearer, "--data-binary", &format!("@{}", small_file.display()), &s.url("/c/billing/api/echo")]);
    assert_eq!((got.status, got.body.len()), (200, small.len()));
    assert!(got.body == small, "the echoed body differs");
    let large = pattern(24 << 20);
    let large_file = scratch.path().join("large");
    std::fs::write(&large_file, &large).unwrap();
    let got = s.curl(&["-H", &bearer, "-T", large_file.to_str().unwrap(), "-X", "POST", &s.url("/c/billing/api/echo/large")]);
    assert_eq!((got.status, got.body.len()), (200, large.len()));
    assert_eq!(sha256(&got.body), sha256(&large), "the 24 MiB body came back changed");
    let download_bytes = 32usize << 20;
    let got = s.curl(&["-H", &bearer, &s.url(&format!("/c/billing/api/bytes?n={download_bytes}"))]);
    assert_eq!((got.status, got.body.len()), (200, download_bytes));
    let download_digest = blake3::hash(&got.body).to_hex().to_string();

    // Basic auth with the token as password; a named header from a file, the client's own dropped.
    let basic = format!("claude:{}", s.agent);
    assert_eq!(s.curl(&["-u", &basic, &s.url("/c/billing/api/basic")]).status, 200);
    let got = s.curl(&["-H", &bearer, "-H", "X-Api-Key: client-made", &s.url("/c/keyed/api/keyed")]);
    assert_eq!(got.status, 200);

    // TLS on the same port, with the certificate witness made (as for PostgreSQL clients).
    let cert = s.gw.data_dir().join("tls/witness.crt");
    let https = format!("https://127.0.0.1:{}/c/billing/api/tls", s.gw.port);
    let got = s.curl(&["--cacert", cert.to_str().unwrap(), "-H", &bearer, &https]);
    assert_eq!(got.status, 200);

    // Addressed by host name instead of path prefix.
    let resolve = format!("billing.witness.test:{}:127.0.0.1", s.gw.port);
    let by_host = format!("http://billing.witness.test:{}/api/by-host", s.gw.port);
    assert_eq!(s.curl(&["--resolve", &resolve, "-H", &bearer, &by_host]).status, 200);

    // Refusals before any rule: a bad token, no token, an unknown connection, no prefix.
    let before = s.upstream.seen().len();
    let got = s.curl(&["-H", "Authorization: Bearer wit_not-a-token", &s.url("/c/billing/api/invoices")]);
    assert_eq!(got.status, 401);
    assert_eq!(header(&got, "www-authenticate"), Some("bearer realm=\"witness\""));
    assert_eq!(s.curl(&[&s.url("/c/billing/api/invoices")]).status, 401);
    let got = s.curl(&["-H", &bearer, &s.url("/c/nope/api")]);
    assert_eq!(got.status, 404);
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap()["known_connections"], serde_json::json!(["billing", "keyed"]));
    assert_eq!(s.curl(&["-H", &bearer, &s.url("/api/invoices")]).status, 404);
    assert_eq!(s.upstream.seen().len(), before, "refused requests reached the upstream");

    // Python requests: keep-alive requests of one connection are one session; another
    // identity's token on that connection is refused.
    let other = s.gw.token("codex", &["--groups", "ai-agents"]);
    let python = Python::ensure_venv(&["requests"]);
    let script = format!(
        r#"
import requests, sys
s = requests.Session()
for i in range(3):
    r = s.get("{base}/c/billing/api/kept/%d" % i, headers={{"Authorization": "Bearer {token}"}})
    assert r.status_code == 200, r.text
r = s.get("{base}/c/billing/api/kept/other", headers={{"Authorization": "Bearer {other}"}})
print(r.status_code)
"#,
        base = s.url(""),
        token = s.agent,
    );
    let out = Command::new(&python).arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "python requests: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "401");

    // What the upstream got: witness's credentials, never the client's.
    let seen = s.upstream.seen();
    for request in &seen {
        let text = request.to_string();
        assert!(!text.contains(&s.agent) && !text.contains(&other), "a client token reached the upstream: {text}");
        if request["path"] == "/api/keyed" {
            assert_eq!(request["x_api_key"], UPSTREAM_KEY);
            assert_eq!(request["authorization"], Value::Null);
        } else {
            assert_eq!(request["authorization"], format!("Bearer {UPSTREAM_TOKEN}"), "{text}");
        }
    }
    assert!(seen.iter().any(|r| r["path"] == "/api/by-host"), "the request addressed by host reached the upstream");
    let upload = seen.iter().find(|r| r["path"] == "/api/echo/large").unwrap();
    assert_eq!(upload["body_sha256"], sha256(&large));
    assert!(!seen.iter().any(|r| r["path"] == "/api/kept/other"));

    // The recording: 9 sessions (one per client connection that authenticated and named a known
    // connection: 8 curl runs and the Python session), 11 exchanges.
    let events = s.events(9);
    let requests = of_kind(&events, "http.request");
    let responses = of_kind(&events, "http.response");
    assert_eq!(requests.len(), 11, "{requests:?}");
    assert_eq!(responses.len(), 11);
    let first = requests[0];
    assert_eq!((first["attrs"]["method"].as_str(), first["attrs"]["path"].as_str()), (Some("GET"), Some("/api/invoices")));
    assert_eq!(first["attrs"]["query"], "status=open");
    assert_eq!(first["attrs"]["dropped_headers"], serde_json::json!(["authorization"]));
    let upload_record = requests.iter().find(|e| e["attrs"]["path"] == "/api/echo/large").unwrap();
    assert_eq!(upload_record["attrs"]["body_recorded"], RECORDED_CAP);
    let upload_body = of_kind(&events, "http.request_body");
    assert_eq!(upload_body.len(), 1, "only the large upload outgrows its request's record");
    assert_eq!(upload_body[0]["attrs"]["body_bytes"], large.len());
    assert_eq!(upload_body[0]["attrs"]["body_digest"], format!("blake3:{}", blake3::hash(&large).to_hex()));
    let small_record = requests.iter().find(|e| e["attrs"]["path"] == "/api/echo").unwrap();
    assert_eq!(small_record["attrs"]["body_bytes"], small.len());
    let download = responses.iter().find(|e| e["attrs"]["body_bytes"] == download_bytes).expect("the download's response");
    assert_eq!(download["attrs"]["body_digest"], format!("blake3:{download_digest}"));
    assert_eq!((download["attrs"]["body_recorded"].as_u64(), download["attrs"]["body_complete"].as_bool()), (Some(4096), Some(true)));
    assert_eq!(download["attrs"]["status"], 200);
    let kept = s.gw.sessions().into_iter().find(|session| {
        let events = s.gw.events(session["id"].as_str().unwrap());
        of_kind(&events, "http.request").len() == 3
    });
    let kept = kept.expect("the three keep-alive requests are one session");
    let kept_events = s.gw.events(kept["id"].as_str().unwrap());
    assert_eq!(of_kind(&kept_events, "http.refused").len(), 1, "the other identity's request is recorded as refused");
    let shown = s.gw.witness(&["sessions", "show", kept["id"].as_str().unwrap()]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("GET /api/kept/2"), "{shown}");

    // No token, client's or witness's, is in the recording.
    let everything = serde_json::to_string(&events).unwrap();
    for secret in [s.agent.as_str(), UPSTREAM_TOKEN, UPSTREAM_KEY] {
        assert!(!everything.contains(secret), "{secret} is in the recording");
    }
    s.gw.stop_and_verify();
    assert_nowhere_in(&s.gw.data_dir(), UPSTREAM_TOKEN);
}

#[test]
fn denied_paths_never_reach_the_upstream_however_they_are_written() {
    let mut s = setup();
    let bearer = s.bearer(&s.agent);
    let disguises: [(&str, &str); 12] = [
        ("GET", "/admin/users"),
        ("get", "/admin/users"),
        ("DELETE", "/admin"),
        ("GET", "//admin/users"),
        ("GET", "/api/../admin/users"),
        ("GET", "/api/%2e%2e/admin/users"),
        ("GET", "/api/%2E%2E/%2E%2E/admin"),
        ("GET", "/%61dmin/users"),
        ("GET", "/api;x=1/../admin"),
        ("GET", "/api%2f..%2fadmin"),
        ("GET", "/api/%252e%252e/admin"),
        ("POST", "/internal/../internal/x"),
    ];
    for (method, path) in disguises {
        let got = s.curl(&["-H", &bearer, "-X", method, "--data-binary", "x", &s.url(&format!("/c/billing{path}"))]);
        assert_eq!(got.status, 403, "{method} {path}: {}", String::from_utf8_lossy(&got.body));
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(body["rule"], "no-admin", "{method} {path}: {body}");
    }
    // A method-override header may make a GET a DELETE.
    let got = s.curl(&["-H", &bearer, "-H", "X-HTTP-Method-Override: DELETE", &s.url("/c/billing/api/records/7")]);
    assert_eq!(got.status, 403);
    // Plain paths nearby are allowed.
    assert_eq!(s.curl(&["-H", &bearer, &s.url("/c/billing/api//administrators-guide")]).status, 200);
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1, "only the allowed request reached the upstream: {seen:?}");

    let events = s.events(14);
    let denied: Vec<&Value> = of_kind(&events, "http.request").into_iter().filter(|e| e["attrs"]["decision"] == "deny").collect();
    assert_eq!(denied.len(), 13);
    let traversal = denied.iter().find(|e| e["attrs"]["raw_path"] == "/api/%2e%2e/admin/users").unwrap();
    assert!(traversal["attrs"]["uncertain"].as_str().unwrap().contains(".. segment"), "{traversal}");
    assert_eq!(of_kind(&events, "http.response").len(), 1);
    s.gw.stop_and_verify();
}

/// Requests an upstream may run otherwise than they read: a path in another case or with a final
/// `/` (Express routes both alike) meets the denials about it; a `_method` parameter, in the query
/// or a form, may make a POST a DELETE, so the denials about its path meet it whatever method
/// they name; TRACE would have the
/// upstream echo the credential witness adds; a held request whose body runs past what an
/// approver is shown would have its end chosen after the approval. None reaches the upstream.
#[test]
fn requests_an_upstream_may_run_otherwise_meet_the_strictest_rules() {
    let mut s = setup();
    let bearer = s.bearer(&s.agent);
    let form = "Content-Type: application/x-www-form-urlencoded";
    let attempts: [(&[&str], &str, u16); 6] = [
        (&["-X", "DELETE"], "/ADMIN/users/7", 403),
        (&["-X", "GET"], "/Admin/", 403),
        (&["-X", "POST", "--data-binary", "x"], "/api/records/7?_method=DELETE", 403),
        (&["-X", "POST", "-H", form, "--data-binary", "name=x&.method=delete"], "/api/records/7", 403),
        (&["-X", "TRACE"], "/api/thing", 405),
        (&["-X", "trace"], "/api/thing", 405),
    ];
    for (args, path, status) in attempts {
        let url = s.url(&format!("/c/billing{path}"));
        let got = s.curl(&[&["-H", &bearer][..], args, &[url.as_str()]].concat());
        assert_eq!(got.status, status, "{args:?} {path}: {}", String::from_utf8_lossy(&got.body));
    }
    // A held request whose body runs past what an approver is shown is refused, not held: its
    // end would be chosen after the approval.
    let long = format!("{{\"amount\": 1, \"pad\": \"{}\", \"amount\": 900000}}", "x".repeat(2 * RECORDED_CAP));
    let json = "Content-Type: application/json";
    let got = s.curl(&["-H", &bearer, "-H", json, "--data-binary", &long, &s.url("/c/billing/api/payments/42")]);
    assert_eq!(got.status, 403);
    assert!(
        String::from_utf8_lossy(&got.body).contains("runs past the 4 KiB an approver is shown"),
        "{}",
        String::from_utf8_lossy(&got.body)
    );
    // A form without the parameter, and a POST beside a rule about deleting, are allowed.
    assert_eq!(
        s.curl(&["-H", &bearer, "-H", form, "--data-binary", "name=x&shipping_method=post", &s.url("/c/billing/api/records/7")]).status,
        200
    );
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1, "only the allowed request reached the upstream: {seen:?}");
    let events = s.events(8);
    let trace = of_kind(&events, "http.request").into_iter().find(|e| e["attrs"]["method"] == "TRACE").expect("TRACE recorded");
    assert!(trace["attrs"]["refused"].as_str().unwrap().contains("echo the request"), "{trace}");
    s.gw.stop_and_verify();
}

/// A GET may carry a body (Elasticsearch's searches do): sent chunked, short or longer than the
/// record keeps, it reaches the upstream whole, as the record says.
#[test]
fn a_get_with_a_chunked_body_reaches_the_upstream_with_it() {
    let s = setup();
    let bearer = s.bearer(&s.agent);
    let scratch = tempfile::tempdir().unwrap();
    for size in [7, 3 * RECORDED_CAP] {
        let file = scratch.path().join(format!("body-{size}"));
        std::fs::write(&file, pattern(size)).unwrap();
        let data = format!("@{}", file.display());
        let json = "Content-Type: application/json";
        let got = s.curl(&[
            "-H",
            &bearer,
            "-X",
            "GET",
            "-H",
            json,
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data,
            &s.url("/c/keyed/api/search"),
        ]);
        assert_eq!(got.status, 200);
    }
    let sizes: Vec<u64> = s.upstream.seen().iter().map(|r| r["body_bytes"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [7, 3 * RECORDED_CAP as u64]);
}

#[test]
fn held_requests_wait_for_approval_and_cut_downloads_end_their_session() {
    let mut s = setup();
    let bearer = s.bearer(&s.agent);
    let scratch = tempfile::tempdir().unwrap();
    let head = scratch.path().join("head");
    let payment = curl_in_background(&s, &head, &bearer, "/c/billing/api/payments/7", "{\"amount\": 100}");
    let waiting = s.wait_for_approvals(1);
    assert_eq!(s.upstream.seen().len(), 0, "a held request reached the upstream before it was approved");
    let id = waiting[0]["id"].as_str().unwrap().to_string();
    let (ok, _, err) = s.approvals(&["approve", &id]);
    assert!(ok, "approve: {err}");
    let out = payment.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200", "{}", String::from_utf8_lossy(&out.stderr));
    let headers = std::fs::read_to_string(&head).unwrap().to_ascii_lowercase();
    assert!(headers.contains(&format!("x-witness-approval: {}", id.to_ascii_lowercase())), "{headers}");
    let seen = s.upstream.seen();
    assert_eq!((seen.len(), seen[0]["path"].as_str()), (1, Some("/api/payments/7")));
    assert_eq!(seen[0]["body_sha256"], sha256(b"{\"amount\": 100}"));

    // Nobody decides within the rule's second: refused, never forwarded.
    let got = s.curl(&["-H", &bearer, "--data-binary", "{}", &s.url("/c/billing/api/refunds/9")]);
    assert_eq!(got.status, 403, "{}", String::from_utf8_lossy(&got.body));
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("was not decided within 1 s"), "{body}");
    assert_eq!(body["rule"], "refunds-need-quick-approval");
    assert!(header(&got, "x-witness-approval").is_some());
    assert_eq!(s.upstream.seen().len(), 1);

    // A client that leaves while its request is held withdraws it: the approver no longer sees it.
    let mut leaving = std::net::TcpStream::connect(("127.0.0.1", s.gw.port)).unwrap();
    let request =
        format!("POST /c/billing/api/payments/8 HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {}\r\nContent-Length: 2\r\n\r\n{{}}", s.agent);
    std::io::Write::write_all(&mut leaving, request.as_bytes()).unwrap();
    s.wait_for_approvals(1);
    drop(leaving);
    s.wait_for_approvals(0);
    assert_eq!(s.upstream.seen().len(), 1, "the withdrawn request reached the upstream");

    // A client that leaves in the middle of a 256 MiB download: its session ends, and the
    // response's record says how much went through.
    let script = format!(
        r#"
import socket
c = socket.create_connection(("127.0.0.1", {port}))
c.sendall(b"GET /c/billing/api/bytes?n={total} HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {token}\r\n\r\n")
got = 0
while got < (1 << 20):
    got += len(c.recv(65536))
c.close()
"#,
        port = s.gw.port,
        total = 256u64 << 20,
        token = s.agent,
    );
    let out = Command::new("python3").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let events = s.events(4);
    let decided: Vec<&str> = of_kind(&events, "approval.decided").iter().map(|e| e["attrs"]["outcome"].as_str().unwrap()).collect();
    assert_eq!(decided, ["approved", "timed-out", "withdrawn"]);
    let cut = of_kind(&events, "http.response").into_iter().find(|e| e["attrs"]["body_complete"] == false).expect("the cut download");
    let sent = cut["attrs"]["body_bytes"].as_u64().unwrap();
    // The client read 1 MiB, its response head included.
    assert!(((512 << 10)..(256 << 20)).contains(&sent), "{cut}");
    s.gw.stop_and_verify();
}

/// curl POSTing `body` to `path` in the background, writing its response headers to `head` and
/// its status to stdout.
fn curl_in_background(s: &Setup, head: &Path, bearer: &str, path: &str, body: &str) -> Child {
    Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", head.to_str().unwrap(), "-w", "%{http_code}", "-H", bearer, "--data-binary", body])
        .arg(s.url(path))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_revoked_token_ends_its_keep_alive_connection() {
    let mut s = setup();
    let mut kept = std::net::TcpStream::connect(("127.0.0.1", s.gw.port)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!("GET /c/billing/api/kept HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {}\r\n\r\n", s.agent);
    std::io::Write::write_all(&mut kept, request.as_bytes()).unwrap();
    let mut reader = BufReader::new(kept.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    let tokens: Value = serde_json::from_slice(&s.gw.witness(&["token", "list", "--json"]).stdout).unwrap();
    let id = tokens.as_array().unwrap().iter().find(|t| t["identity"] == "claude").expect("the agent's token")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(s.gw.witness(&["token", "revoke", &id]).status.success());
    let sessions = s.gw.sessions_when(|sessions| sessions.iter().any(|s| s["status"] == "closed"));
    assert!(sessions[0]["end_reason"].as_str().unwrap_or_default().contains("revoked"), "{sessions:?}");
    // Witness closed the connection: what is left to read ends.
    let mut rest = Vec::new();
    assert!(std::io::Read::read_to_end(&mut reader, &mut rest).is_ok(), "the connection was closed, not left hanging");
    assert_eq!(s.curl(&["-H", &s.bearer(&s.agent), &s.url("/c/billing/api/after")]).status, 401);
    assert_eq!(s.upstream.seen().len(), 1);
    s.gw.stop_and_verify();
}

#[test]
fn an_https_upstream_is_reached_only_with_a_certificate_its_ca_signed_or_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    let (cert_file, key_file) = (dir.path().join("upstream.crt"), dir.path().join("upstream.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let upstream = Upstream::start_tls(&cert_file, &key_file);
    let secure = |name: &str, ca: &str| {
        format!(
            "[[connections]]\nname = \"{name}\"\nprotocol = \"http\"\nurl = \"https://localhost:{}/v1\"\nbearer_env = \"WITNESS_TEST_UPSTREAM_TOKEN\"\n{ca}\n",
            upstream.port
        )
    };
    // A pin: exactly this certificate, whatever the name it is reached by (an address here).
    let pin = hex::encode(Sha256::digest(cert.der()));
    let pinned = |name: &str, pin: &str| {
        format!(
            "[[connections]]\nname = \"{name}\"\nprotocol = \"http\"\nurl = \"https://127.0.0.1:{}/v1\"\nbearer_env = \"WITNESS_TEST_UPSTREAM_TOKEN\"\ncertificate_sha256 = \"{pin}\"\n",
            upstream.port
        )
    };
    let extra = secure("secure", &format!("ca_file = \"{}\"", cert_file.display()))
        + &secure("untrusted", "")
        + &pinned("pinned", &pin)
        + &pinned("mispinned", &"00".repeat(32));
    let mut s = setup_with(upstream, &extra, dir);
    let bearer = s.bearer(&s.agent);
    let got = s.curl(&["-H", &bearer, &s.url("/c/secure/api/over-tls")]);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let seen = s.upstream.seen();
    assert_eq!(
        (seen[0]["path"].as_str(), seen[0]["authorization"].as_str()),
        (Some("/v1/api/over-tls"), Some(&*format!("Bearer {UPSTREAM_TOKEN}")))
    );
    // Without the CA, the system's roots do not vouch for the upstream: 502, nothing sent.
    let got = s.curl(&["-H", &bearer, &s.url("/c/untrusted/api/over-tls")]);
    assert_eq!(got.status, 502, "{}", String::from_utf8_lossy(&got.body));
    assert!(String::from_utf8_lossy(&got.body).contains("TLS"), "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(s.upstream.seen().len(), 1);
    let got = s.curl(&["-H", &bearer, &s.url("/c/pinned/api/pinned")]);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let got = s.curl(&["-H", &bearer, &s.url("/c/mispinned/api/pinned")]);
    assert_eq!(got.status, 502, "{}", String::from_utf8_lossy(&got.body));
    assert!(String::from_utf8_lossy(&got.body).contains("not the pinned"), "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(s.upstream.seen().len(), 2, "only the pinned request reached the upstream");
    let events = s.events(4);
    assert_eq!(of_kind(&events, "http.upstream_error").len(), 2);
    s.gw.stop_and_verify();
}

#[test]
fn bodies_are_masked_by_the_detectors_for_the_client_and_the_record() {
    let masking = "[[masking]]\nname = \"pii\"\nconnections = [\"billing\"]\ndetectors = [\"email\"]\n";
    let mut s = setup_with(Upstream::start(), masking, tempfile::tempdir().unwrap());
    let bearer = s.bearer(&s.agent);
    let echo = |kind: &str, body: &str| {
        let content_type = format!("Content-Type: {kind}");
        s.curl(&["-H", &bearer, "-H", &content_type, "--data-binary", body, &s.url("/c/billing/api/echo")])
    };

    // JSON: the address is masked inside its string, the document stays JSON, its length is told.
    let got = echo("application/json", r#"{"customers":[{"email":"ada@example.com","id":1},{"note":"mail grace@example.org"}]}"#);
    assert_eq!(got.status, 200);
    let answer: Value = serde_json::from_slice(&got.body).expect("the masked answer is JSON");
    assert_eq!(answer["customers"][0]["email"], "[email]");
    assert_eq!(answer["customers"][1]["note"], "mail [email]");
    assert_eq!(header(&got, "content-length"), Some(&*got.body.len().to_string()));
    // Text, and server-sent events line by line.
    let got = echo("text/plain", "write to ada@example.com\n");
    assert_eq!(String::from_utf8_lossy(&got.body), "write to [email]\n");
    let got = echo("text/event-stream", "data: ada@example.com\n\ndata: none\n\n");
    assert_eq!(String::from_utf8_lossy(&got.body), "data: [email]\n\ndata: none\n\n");
    // A type that may hold text is read as text, whatever the client asked for; media that are
    // binary through and through are not read, as binary columns are not.
    let got = echo("application/octet-stream", "raw grace@example.org");
    assert_eq!(String::from_utf8_lossy(&got.body), "raw [email]");
    let got = echo("image/png", "png bob@example.net");
    assert_eq!(String::from_utf8_lossy(&got.body), "png bob@example.net");
    // Another connection, which no masking rule names, is left alone.
    let content_type = "Content-Type: application/json";
    let got = s.curl(&["-H", &bearer, "-H", content_type, "--data-binary", r#"{"e":"ada@example.com"}"#, &s.url("/c/keyed/api/echo")]);
    assert_eq!(String::from_utf8_lossy(&got.body), r#"{"e":"ada@example.com"}"#);

    // The upstream got the client's body as sent; the recording of billing holds no address.
    assert!(s.upstream.seen().iter().any(|r| r["path"] == "/api/echo" && r["body_bytes"].as_u64() > Some(80)));
    let events = s.events(6);
    let billing: Vec<&Value> = events.iter().filter(|e| e["kind"] == "http.response" && e["attrs"]["masked"].is_object()).collect();
    assert_eq!(billing.len(), 4, "JSON, text, events and octets masked in the record");
    assert_eq!(billing[0]["attrs"]["masked"]["pii"]["email"], 2);
    let requests: Vec<&Value> = events.iter().filter(|e| e["kind"] == "http.request" && e["attrs"]["masked"].is_object()).collect();
    assert_eq!(requests.len(), 4, "the requests' bodies are masked in the record too");
    s.gw.stop_and_verify();
    // (ada's address is in the recording of `keyed`, which masks nothing.)
    assert_nowhere_in(&s.gw.data_dir(), "grace@example.org");
}

/// A masked session's answers come whole: a range of a few bytes each would cut every value into
/// pieces no detector finds, for the client to put together. Unmasked, ranges pass.
#[test]
fn a_masked_session_asks_for_no_ranges() {
    let masking = "[[masking]]\nname = \"pii\"\nconnections = [\"billing\"]\ndetectors = [\"email\"]\n";
    let s = setup_with(Upstream::start(), masking, tempfile::tempdir().unwrap());
    let bearer = s.bearer(&s.agent);
    for connection in ["billing", "keyed"] {
        let got =
            s.curl(&["-H", &bearer, "-H", "Range: bytes=0-3", "-H", "If-Range: \"x\"", &s.url(&format!("/c/{connection}/api/bytes?n=64"))]);
        assert_eq!(got.status, 200);
    }
    let seen = s.upstream.seen();
    let ranged: Vec<bool> = seen.iter().map(|r| r["headers"].as_str().unwrap().to_ascii_lowercase().contains("range:")).collect();
    assert_eq!(ranged, [false, true], "{seen:?}");
}

#[test]
fn json_paths_hold_whatever_form_the_client_asks_for() {
    let masking = "[[masking]]\nname = \"contacts\"\nconnections = [\"billing\"]\njson_paths = [\"$..email\", \"$..password\"]\n";
    let mut s = setup_with(Upstream::start(), masking, tempfile::tempdir().unwrap());
    let bearer = s.bearer(&s.agent);
    let echo = |kind: &str, accept: &str, body: &str| {
        let (content_type, accept) = (format!("Content-Type: {kind}"), format!("Accept: {accept}"));
        s.curl(&["-H", &bearer, "-H", &content_type, "-H", &accept, "--data-binary", body, &s.url("/c/billing/api/echo")])
    };
    // JSON: the values the paths name, masked whole; the rest byte for byte.
    let got = echo("application/json", "text/csv", r#"{"user": {"email": "ada@example.com", "id": 7},  "n": 1.50}"#);
    assert_eq!(String::from_utf8_lossy(&got.body), r#"{"user": {"email": "[redacted]", "id": 7},  "n": 1.50}"#);
    // The upstream was asked for JSON, whatever the client asked for.
    let seen = s.upstream.seen();
    assert!(seen[0]["headers"].as_str().unwrap().contains("accept: application/json\n"), "{}", seen[0]["headers"]);
    // A form the paths cannot follow (CSV, JSON spread over event lines) is masked whole.
    let got = echo("text/csv", "text/csv", "email,password\nada@example.com,hunter2\n");
    assert_eq!(String::from_utf8_lossy(&got.body), "\"[redacted]\"\n");
    let got =
        echo("text/event-stream", "*/*", "data: {\ndata:   \"password\": \"hunter2\"\ndata: }\n\nid: 2\rdata: {\"password\": \"x\"}\n\n");
    let events = String::from_utf8_lossy(&got.body);
    assert!(!events.contains("hunter2") && !events.contains("\"x\""), "{events}");
    assert!(events.contains("id: 2\rdata: {\"password\": \"[redacted]\"}"), "{events}");
    // The recording holds none of it, and no digest of the bodies that held it.
    let events = s.events(3);
    let requests = of_kind(&events, "http.request");
    assert!(requests.iter().all(|e| e["attrs"]["body_digest"].is_null()), "{requests:?}");
    assert!(requests.iter().all(|e| e["attrs"]["body_digest_withheld"].is_string()));
    s.gw.stop_and_verify();
    assert_nowhere_in(&s.gw.data_dir(), "hunter2");
    assert_nowhere_in(&s.gw.data_dir(), "ada@example.com");
}

#[test]
fn an_upstream_that_asks_for_a_client_certificate_gets_witness_one() {
    let dir = tempfile::tempdir().unwrap();
    let pem_pair = |name: &str, host: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.into()]).unwrap().self_signed(&key).unwrap();
        let (cert_file, key_file) = (dir.path().join(format!("{name}.crt")), dir.path().join(format!("{name}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    };
    let (server_cert, server_key) = pem_pair("upstream", "localhost");
    let (client_cert, client_key) = pem_pair("witness-client", "witness");
    let upstream = Upstream::start_mutual_tls(&server_cert, &server_key, &client_cert);
    let connection = |name: &str, identity: &str| {
        format!(
            "[[connections]]\nname = \"{name}\"\nprotocol = \"http\"\nurl = \"https://localhost:{}\"\nca_file = \"{}\"\n{identity}\n",
            upstream.port,
            server_cert.display()
        )
    };
    let identity = format!("client_cert_file = \"{}\"\nclient_key_file = \"{}\"", client_cert.display(), client_key.display());
    let extra = connection("mutual", &identity) + &connection("anonymous", "");
    let mut s = setup_with(upstream, &extra, dir);
    let bearer = s.bearer(&s.agent);
    let got = s.curl(&["-H", &bearer, &s.url("/c/mutual/api/with-client-cert")]);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(serde_json::from_slice::<Value>(&got.body).unwrap()["path"], "/api/with-client-cert");
    // Without witness's certificate the upstream ends the handshake: 502, recorded.
    let got = s.curl(&["-H", &bearer, &s.url("/c/anonymous/api/with-client-cert")]);
    assert_eq!(got.status, 502, "{}", String::from_utf8_lossy(&got.body));
    let events = s.events(2);
    assert_eq!(of_kind(&events, "http.upstream_error").len(), 1);
    s.gw.stop_and_verify();
    let key_text = std::fs::read_to_string(&client_key).unwrap();
    assert_nowhere_in(&s.gw.data_dir(), key_text.lines().nth(1).unwrap());
}

//! A stand-in Kubernetes API server, for tests that put witness in front of one and drive it with
//! the real `kubectl`.
//!
//! No real API server can run on the test machines (it needs etcd, a kubelet and certificates of
//! its own), and what matters for the gateway are the protocol details kubectl depends on, which
//! a mock inside the test would get wrong. [`KubeApiServer::start`] runs `kube_apiserver.py` (Python
//! 3 standard library only, embedded here) on a free loopback port. It keeps the core group (v1)
//! in memory: namespaces `default` and `prod`; pods `web-1` (default), `api-1` and `api-2`
//! (prod); the Secret `prod/db-credentials`, whose password [`KUBE_SECRET_MARKER`] is both in
//! its `data` (base64) and, as `kubectl apply` leaves it, in the JSON of its
//! `kubectl.kubernetes.io/last-applied-configuration` annotation; the ConfigMap
//! `prod/app-config`. Every request needs `Authorization: Bearer TOKEN`; anything else is
//! answered 401 with a Kubernetes Status (reason Unauthorized).
//!
//! What kubectl 1.32 gets (all of it tried with the real kubectl; this module's tests run the
//! main commands):
//!
//! * discovery: `/version`, `/api`, `/apis` (no groups), `/api/v1`, in the legacy form (kubectl
//!   asks for aggregated discovery first and falls back), and just enough of `/openapi/v3` for
//!   `kubectl create -f` to leave validation to the server;
//! * get, list (a `meta.k8s.io/v1` Table when the Accept header asks `as=Table`, else the List),
//!   create (JSON, or the protobuf that `kubectl create secret|configmap|namespace` sends), delete,
//!   update and merge patch, with label and field selectors (`=`, `!=`);
//! * watch: newline-delimited JSON events, chunked: `ADDED` for what exists when no
//!   resourceVersion is given (else what changed since it), then live `ADDED`, `MODIFIED` and
//!   `DELETED` events. A watch stream ends at its `timeoutSeconds`, else a second before the `timeout`
//!   that `kubectl --request-timeout` adds (halfway when under two seconds: the server ends it
//!   cleanly, not kubectl's own timer), else after 5 seconds, or earlier when the test calls
//!   [`KubeApiServer::end_watches`]; kubectl's `get --watch` exits 0 when it ends;
//! * pods/log: five fixed lines (`tailLines`, `timestamps` honoured); with `follow`, three more
//!   come one chunk at a time, then the stream ends;
//! * pods/exec over WebSocket (`v5.channel.k8s.io`, also `v4.channel.k8s.io`; a SPDY upgrade is
//!   refused, so a test notices when kubectl does not take the WebSocket path): `echo ARGS`,
//!   `cat` (stdin back until its end), `true`, `false` (exit code 1), `sh -c 'ONE COMMAND'`, and
//!   `sh` reading command lines from stdin until `exit`, with a terminal (`-it`) a fake shell
//!   that echoes what is typed and prompts `$ `. Anything else: `not found` and exit code 127;
//! * pods/attach, over WebSocket as exec (SPDY refused too): the container's main process is a
//!   `cat`, so `printf 'hi\n' | kubectl attach -i POD` prints `hi` and exits 0 when stdin ends; on
//!   a terminal (`-it`, for a pod whose container has `tty: true`; the seeded ones have not, and
//!   kubectl then says it cannot use a TTY and goes on without) it echoes what is typed, repeats
//!   each line, and ends on ^D. Without `-i` it ends at once;
//! * pods/portforward: SPDY/3.1, tunnelled in WebSocket binary messages (subprotocol
//!   `SPDY/3.1+portforward.k8s.io`, what kubectl 1.32 asks first) or on a plain SPDY upgrade
//!   (`KUBECTL_PORT_FORWARD_WEBSOCKETS=false`). In the tunnel, message boundaries mean nothing:
//!   kubectl writes each SPDY frame field by field, one message per field (a DATA frame is three
//!   messages: stream id, flags and length, data), while the stand-in sends each frame as one
//!   message. Every pod listens on 8080, an HTTP/1.0 server answering any request with
//!   `hello from POD:8080\n` and closing, and on 9000, which echoes every byte until the client
//!   closes its side; any other port fails as a kubelet's does (`... failed to connect to
//!   localhost:PORT ...` on the error stream), after which kubectl 1.32 reports `lost connection
//!   to pod` and exits 1.
//!
//! kubectl sends a bearer token over HTTPS only, so kubectl can reach the stand-in directly only
//! when it is started with [`KubeApiServer::start_tls`]; a gateway in front may use either.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::{ready_port, test_certificate, TestCertificate};

/// The plaintext password of the seeded Secret `prod/db-credentials`: a test can search what the
/// gateway recorded for it.
pub const KUBE_SECRET_MARKER: &str = "s3cr3t-hunter2";

const SERVER: &str = include_str!("kube_apiserver.py");

/// How long python3 may take to say which port it listens on.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running stand-in API server; stopped (and its directory deleted) when dropped.
pub struct KubeApiServer {
    port: u16,
    token: String,
    /// The CA that signed the server's certificate, in TLS mode.
    ca_cert: Option<PathBuf>,
    child: Child,
    /// Certificates and kubectl's home and caches.
    dir: TempDir,
}

impl KubeApiServer {
    /// Starts a stand-in serving plain HTTP that accepts only `Authorization: Bearer {token}`.
    ///
    /// # Panics
    ///
    /// Panics if python3 cannot start it.
    pub fn start(token: &str) -> KubeApiServer {
        Self::launch(token, false)
    }

    /// Like [`KubeApiServer::start`], but serving HTTPS with a certificate for `127.0.0.1` and
    /// `localhost`, signed by a fresh test CA ([`KubeApiServer::ca_cert`]).
    ///
    /// # Panics
    ///
    /// Panics if openssl cannot make the certificates or python3 cannot start the server.
    pub fn start_tls(token: &str) -> KubeApiServer {
        Self::launch(token, true)
    }

    fn launch(token: &str, tls: bool) -> KubeApiServer {
        let dir = tempfile::Builder::new()
            .prefix("witness-kube-")
            .tempdir()
            .unwrap_or_else(|e| panic!("KubeApiServer: cannot create temp dir: {e}"));
        let mut command = Command::new("python3");
        command.args(["-c", SERVER, token]);
        let ca_cert = tls.then(|| {
            let TestCertificate { ca_cert: ca, cert, key } = test_certificate(dir.path(), "kube", "KubeApiServer");
            command.arg(cert).arg(key);
            ca
        });
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("KubeApiServer: cannot start python3: {e}"));
        let port = ready_port(&mut child, "KubeApiServer", READY_TIMEOUT);
        KubeApiServer { port, token: token.to_owned(), ca_cert, child, dir }
    }

    /// `http://127.0.0.1:PORT`, or `https://` in TLS mode.
    pub fn url(&self) -> String {
        let scheme = if self.ca_cert.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test CA's certificate (PEM) that signed the server's, in TLS mode.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// `kubectl` set to reach this server directly: `--server`, `--token`,
    /// `--certificate-authority` and a `--cache-dir` of its own, with `HOME` in the server's
    /// directory and `KUBECONFIG` removed, so that no user's configuration or discovery cache
    /// takes part. Arguments and the subcommand come after. Only useful in TLS mode: over plain
    /// HTTP kubectl sends no token, and every request is refused.
    pub fn kubectl(&self) -> Command {
        let home = self.dir.path().join("home");
        let mut command = Command::new("kubectl");
        command.env("HOME", &home).env_remove("KUBECONFIG");
        command.arg("--server").arg(self.url()).arg("--token").arg(&self.token);
        command.arg("--cache-dir").arg(home.join("kube-cache"));
        if let Some(ca) = &self.ca_cert {
            command.arg("--certificate-authority").arg(ca);
        }
        command
    }

    /// Every request it received so far (but the harness's own), in order, each a JSON object:
    /// `method`, `path`, `query` (the raw query string), `headers` (lowercased name to the list
    /// of its values, in order), `body_length` and `body_sha256` (hex). A request is listed
    /// before it is answered, so whatever got an answer is here. For a WebSocket exec, attach or
    /// port-forward, its upgrade request; a port-forward's entry also has `forwarded`, one object
    /// for each connection it forwarded once that connection ended: `requestid` (text), `port`,
    /// `received` and `sent` (byte counts of the data stream, from and to kubectl) and `error`
    /// (the message on the error stream, or null).
    ///
    /// # Panics
    ///
    /// Panics if the server does not answer, or answers something that is not a JSON list.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let body = self.control("GET", "/__seen");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("KubeApiServer: /__seen is not a JSON list ({e}): {body}"))
    }

    /// Ends every watch stream that has arrived so far (each one once it has sent the events it
    /// has pending; a watch listed in [`KubeApiServer::requests`] counts as arrived), so that a
    /// test decides when `kubectl get --watch` exits.
    ///
    /// # Panics
    ///
    /// Panics if the server does not answer.
    pub fn end_watches(&self) {
        self.control("POST", "/__end-watches");
    }

    /// One request to the harness's own paths, answered in plain HTTP even in TLS mode (so that
    /// no TLS client is needed here); the body of the 200 answer.
    fn control(&self, method: &str, path: &str) -> String {
        let what = format!("KubeApiServer: {method} {path}");
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).unwrap_or_else(|e| panic!("{what}: cannot connect: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap_or_else(|e| panic!("{what}: cannot set a read timeout: {e}"));
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap_or_else(|e| panic!("{what}: cannot send: {e}"));
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap_or_else(|e| panic!("{what}: cannot read the answer: {e}"));
        let response = String::from_utf8_lossy(&response);
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => body.to_owned(),
            _ => panic!("{what}: unexpected answer: {response}"),
        }
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::{KubeApiServer, KUBE_SECRET_MARKER};
    use serde_json::Value;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    use std::process::{Command, Output, Stdio};
    use std::time::{Duration, Instant};

    const TOKEN: &str = "test-token-7f3a";

    /// Runs a command to its end, with `stdin` as its standard input.
    fn output(mut command: Command, stdin: &[u8]) -> Output {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl (is it installed?): {e}"));
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(stdin).expect("kubectl takes its stdin");
        drop(input);
        child.wait_with_output().expect("kubectl runs to its end")
    }

    /// kubectl with `args` against `server`; its stdout, once it succeeded.
    fn kubectl(server: &KubeApiServer, args: &[&str]) -> String {
        let mut command = server.kubectl();
        command.args(args);
        let out = output(command, b"");
        assert!(out.status.success(), "kubectl {args:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }

    /// A plain HTTP/1.1 GET; the status code and body.
    fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{authorization}Connection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
        let code = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
        (code, body.to_owned())
    }

    #[test]
    fn plain_http_needs_the_token_and_every_request_is_listed() {
        let server = KubeApiServer::start(TOKEN);
        assert_eq!(server.url(), format!("http://127.0.0.1:{}", server.port()));

        let (code, body) = http_get(server.port(), "/api/v1/namespaces/prod/pods", None);
        assert_eq!(code, 401, "{body}");
        let status: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("Unauthorized")));
        assert_eq!(http_get(server.port(), "/api/v1/namespaces/prod/pods", Some("wrong")).0, 401);

        let (code, body) = http_get(server.port(), "/api/v1/namespaces/prod/pods?limit=5", Some(TOKEN));
        assert_eq!(code, 200, "{body}");
        let list: Value = serde_json::from_str(&body).unwrap();
        let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|pod| pod["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["api-1", "api-2"]);

        let seen = server.requests();
        assert_eq!(seen.len(), 3, "the harness's own /__seen is not listed: {seen:?}");
        assert_eq!(seen[0]["headers"].get("authorization"), None);
        assert_eq!(seen[1]["headers"]["authorization"], serde_json::json!(["Bearer wrong"]));
        assert_eq!(seen[2]["method"], "GET");
        assert_eq!(seen[2]["path"], "/api/v1/namespaces/prod/pods");
        assert_eq!(seen[2]["query"], "limit=5");
        assert_eq!(seen[2]["headers"]["authorization"], serde_json::json!([format!("Bearer {TOKEN}")]));
        assert_eq!(seen[2]["body_length"], 0);
        assert_eq!(seen[2]["body_sha256"], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn kubectl_gets_creates_and_deletes() {
        let server = KubeApiServer::start_tls(TOKEN);
        let table = kubectl(&server, &["get", "pods", "-n", "prod"]);
        let rows: Vec<Vec<&str>> = table.lines().map(|line| line.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["NAME", "READY", "STATUS", "AGE"], "{table}");
        assert_eq!((rows[1][0], rows[1][2], rows[2][0], rows.len()), ("api-1", "Running", "api-2", 3), "{table}");
        assert_eq!(kubectl(&server, &["get", "pods", "-A", "-o", "name"]), "pod/web-1\npod/api-1\npod/api-2\n");

        let secret: Value =
            serde_json::from_str(&kubectl(&server, &["get", "secret", "db-credentials", "-n", "prod", "-o", "json"])).unwrap();
        assert!(super::SERVER.contains(&format!("SECRET_MARKER = '{KUBE_SECRET_MARKER}'")), "the script seeds the marker");
        assert_eq!(secret["data"]["password"], "czNjcjN0LWh1bnRlcjI=", "base64 of {KUBE_SECRET_MARKER}");
        let applied = secret["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap();
        let applied: Value = serde_json::from_str(applied).unwrap();
        assert_eq!(applied["data"], secret["data"], "the annotation holds the secret's data too");

        // kubectl create secret sends protobuf; kubectl delete, JSON.
        assert_eq!(kubectl(&server, &["create", "secret", "generic", "x", "--from-literal=k=v", "-n", "prod"]), "secret/x created\n");
        assert_eq!(kubectl(&server, &["get", "secret", "x", "-n", "prod", "-o", "jsonpath={.data.k}"]), "dg==");
        assert_eq!(kubectl(&server, &["delete", "secret", "x", "-n", "prod"]), "secret \"x\" deleted\n");
        assert_eq!(kubectl(&server, &["get", "secrets", "-n", "prod", "-o", "name"]), "secret/db-credentials\n");

        assert_eq!(kubectl(&server, &["delete", "pod", "api-2", "-n", "prod"]), "pod \"api-2\" deleted\n");
        assert_eq!(kubectl(&server, &["get", "pods", "-n", "prod", "-o", "name"]), "pod/api-1\n");

        assert_eq!(kubectl(&server, &["logs", "api-1", "-n", "prod", "--tail=1"]), "api-1 ready\n");
        assert_eq!(kubectl(&server, &["logs", "-f", "api-1", "-n", "prod"]).lines().last(), Some("api-1 tick 3"));
    }

    #[test]
    fn kubectl_execs_over_websocket() {
        let server = KubeApiServer::start_tls(TOKEN);
        assert_eq!(kubectl(&server, &["exec", "api-1", "-n", "prod", "--", "echo", "hello", "world"]), "hello world\n");

        let mut cat = server.kubectl();
        cat.args(["exec", "-i", "api-1", "-n", "prod", "--", "cat"]);
        let out = output(cat, b"line one\nline two\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"line one\nline two\n");

        let mut fails = server.kubectl();
        fails.args(["exec", "api-1", "-n", "prod", "--", "false"]);
        assert_eq!(output(fails, b"").status.code(), Some(1));

        let seen = server.requests();
        let exec = seen.iter().find(|r| r["path"] == "/api/v1/namespaces/prod/pods/api-1/exec").expect("the exec request arrived");
        assert_eq!(exec["headers"]["upgrade"], serde_json::json!(["websocket"]));
        assert!(exec["headers"]["sec-websocket-protocol"][0].as_str().unwrap().contains("v5.channel.k8s.io"), "{exec}");
    }

    #[test]
    fn kubectl_watch_ends_by_itself_and_when_told() {
        let server = KubeApiServer::start_tls(TOKEN);
        let started = Instant::now();
        let watched = kubectl(&server, &["get", "pods", "-n", "prod", "--watch", "-o", "name", "--request-timeout=2s"]);
        assert_eq!(watched, "pod/api-1\npod/api-2\n");
        assert!(started.elapsed() < Duration::from_secs(20), "the watch ended after {:?}", started.elapsed());

        // A watch open for a minute sees a pod created meanwhile, and ends when the test says so.
        let mut watch = server.kubectl();
        watch
            .args(["get", "pods", "-n", "prod", "--watch", "-o", "name", "--request-timeout=60s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let watches =
            |server: &KubeApiServer| server.requests().iter().filter(|r| r["query"].as_str().unwrap().contains("watch=true")).count();
        let watches_before = watches(&server);
        let mut watch = watch.spawn().expect("kubectl starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while watches(&server) == watches_before {
            assert!(Instant::now() < deadline, "kubectl never opened its watch");
            std::thread::sleep(Duration::from_millis(20));
        }
        kubectl(&server, &["run", "late", "--image=busybox", "--restart=Never", "-n", "prod"]);
        server.end_watches();
        let deadline = Instant::now() + Duration::from_secs(30);
        while watch.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "kubectl went on watching after the stream ended");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = watch.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "pod/api-1\npod/api-2\npod/late\n");
    }
}

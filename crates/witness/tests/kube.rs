//! Kubernetes through witness, end to end: the real kubectl with a kubeconfig `witness
//! kubeconfig` wrote, witness in front of the test kit's stand-in API server (no real API server
//! can run here). Rules decide by verb, resource and namespace; refusals reach kubectl as
//! `Status` objects and never reach the API server; impersonation needs a rule; Secret data is
//! masked for the client and the recording unless the identity reads secrets; exec and attach run
//! over a relayed WebSocket, recorded by channel and replayable, and port-forward over SPDY
//! tunnelled in one; the ledger verifies.

mod pg;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use pg::{assert_nowhere_in, poll, Gateway};
use serde_json::Value;
use witness_testkit::{free_port, KubeApiServer, KUBE_SECRET_MARKER};

/// witness's own token for the API server.
const SERVICE_ACCOUNT_TOKEN: &str = "sa-token-5d1e";
/// What masked Secret data becomes: base64 of `[masked]`.
const MASKED_DATA: &str = "W21hc2tlZF0=";

const RULES: &str = r#"
[[rules]]
name = "no-deletes-in-prod"
kube = ["delete *", "deletecollection *"]
namespaces = ["prod"]
action = "deny"
message = "nothing is deleted in prod"

[[rules]]
name = "no-port-forward-in-prod"
kube = ["create pods/portforward"]
namespaces = ["prod"]
action = "deny"

[[rules]]
name = "deletes-need-approval"
kube = ["delete pods"]
namespaces = ["default"]
action = "approve"
approvers = ["sre"]

[[masking]]
name = "auditors-see-no-addresses"
groups = ["auditors"]
detectors = ["email"]
"#;

struct Setup {
    api: KubeApiServer,
    gw: Gateway,
    /// Each identity's kubeconfig: an agent's, a secret reader's, an approver's token.
    agent: PathBuf,
    reader: PathBuf,
    /// An identity masking rules apply to.
    auditor: PathBuf,
    approver_token: String,
    /// kubectl's home and caches.
    home: tempfile::TempDir,
}

fn setup() -> Setup {
    let api = KubeApiServer::start(SERVICE_ACCOUNT_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"data_dir = "{data}"
[listen]
http = "127.0.0.1:{port}"
api = "127.0.0.1:{api_port}"

[[connections]]
name = "k8s"
protocol = "kubernetes"
url = "{url}"
token_env = "WITNESS_TEST_SA_TOKEN"
secret_readers = ["alice"]
{RULES}"#,
        data = dir.path().join("data").display(),
        api_port = free_port(),
        url = api.url(),
    );
    let gw = Gateway::launch(dir, port, &config, &[("WITNESS_TEST_SA_TOKEN", SERVICE_ACCOUNT_TOKEN)]);
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = |identity: &str, groups: &str| {
        let token = gw.token(identity, &["--groups", groups]);
        let path = home.path().join(format!("{identity}.kubeconfig"));
        let out = gw.witness(&["kubeconfig", "--connection", "k8s", "--token", &token, "--output", path.to_str().unwrap()]);
        assert!(out.status.success(), "witness kubeconfig: {}", String::from_utf8_lossy(&out.stderr));
        (path, token)
    };
    let (agent, _) = kubeconfig("claude", "ai-agents");
    let (reader, _) = kubeconfig("alice", "ops");
    let (auditor, _) = kubeconfig("audrey", "auditors");
    let approver_token = gw.token("sam", &["--groups", "sre"]);
    Setup { api, gw, agent, reader, auditor, approver_token, home }
}

impl Setup {
    fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("kubectl");
        command
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.home.path().join("cache"))
            .args(args);
        command
    }

    /// kubectl as `kubeconfig`'s identity; its exit, stdout and stderr.
    fn run(&self, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
        let out = self.kubectl(kubeconfig, args).output().unwrap();
        shown(&out)
    }

    fn spawn(&self, kubeconfig: &Path, args: &[&str]) -> Child {
        self.kubectl(kubeconfig, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// What the API server received with `method` on a path containing `path`.
    fn received(&self, method: &str, path: &str) -> Vec<Value> {
        self.api.requests().into_iter().filter(|r| r["method"] == method && r["path"].as_str().unwrap_or("").contains(path)).collect()
    }

    fn approvals(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_witness"))
            .arg("approvals")
            .args(args)
            .arg("--config")
            .arg(&self.gw.config)
            .env("WITNESS_TOKEN", &self.approver_token)
            .output()
            .unwrap()
    }

    /// What witness answers a WebSocket upgrade request for `path` from the agent (raw, over
    /// TLS), read until the connection closes; the API server's watches are ended once it has
    /// the request.
    fn websocket_watch(&self, path: &str) -> String {
        let token = self.gw.token("claude", &["--groups", "ai-agents"]);
        let script = r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(("GET " + sys.argv[3] + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + sys.argv[4]
            + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13"
            + "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        # A WebSocket would wait for this client to close it: read what comes within a while.
        tls.settimeout(20)
        got = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (socket.timeout, ssl.SSLError):
                break
            if not chunk:
                break
            got += chunk
            if got.endswith(b"0\r\n\r\n"):
                break
        sys.stdout.write(got.decode("latin-1"))
"#;
        let cert = self.gw.data_dir().join("tls/witness.crt");
        let child = Command::new("python3")
            .args(["-c", script, cert.to_str().unwrap(), &self.gw.port.to_string(), path, &token])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        poll("the WebSocket watch to reach the API server", || {
            let watching =
                |r: &Value| r["headers"]["sec-websocket-key"].is_array() && r["path"].as_str().is_some_and(|p| p.ends_with("/secrets"));
            self.api.requests().iter().any(watching).then_some(())
        });
        self.api.end_watches();
        let (_, out, err) = finish(child);
        assert!(err.is_empty(), "{err}");
        out
    }

    /// Every event of every Kubernetes session, once all of them have ended.
    fn events(&self) -> Vec<Value> {
        let kube = |s: &Value| s["protocol"] == "kubernetes";
        let sessions = self.gw.sessions_when(|all| all.iter().filter(|s| kube(s)).all(|s| s["status"] == "closed"));
        sessions.iter().filter(|s| kube(s)).flat_map(|s| self.gw.events(s["id"].as_str().unwrap())).collect()
    }
}

fn shown(out: &Output) -> (bool, String, String) {
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn finish(child: Child) -> (bool, String, String) {
    shown(&child.wait_with_output().unwrap())
}

fn marker_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(KUBE_SECRET_MARKER)
}

#[test]
fn kubectl_works_through_witness_and_rules_and_masks_hold() {
    let s = setup();

    // Reads: discovery, a list, one pod, across namespaces.
    let (ok, out, err) = s.run(&s.agent, &["get", "pods", "-n", "prod", "-o", "name"]);
    assert!(ok, "get pods: {err}\n{}", s.gw.log());
    assert_eq!(out.lines().collect::<Vec<_>>(), ["pod/api-1", "pod/api-2"]);
    let (ok, out, err) = s.run(&s.agent, &["get", "pods", "-A"]);
    assert!(ok && out.contains("web-1") && out.contains("api-1"), "get pods -A: {out}{err}");
    let seen = s.api.requests();
    assert!(!seen.is_empty());
    for request in &seen {
        let authorization = &request["headers"]["authorization"];
        assert_eq!(authorization, &serde_json::json!([format!("Bearer {SERVICE_ACCOUNT_TOKEN}")]), "{request}");
    }

    // A denied delete: kubectl prints witness's Status; the API server never sees it.
    let (ok, _, err) = s.run(&s.agent, &["delete", "pod", "api-2", "-n", "prod"]);
    assert!(!ok, "the delete in prod was denied");
    assert!(err.contains("Error from server (Forbidden)") && err.contains("nothing is deleted in prod"), "{err}");
    // A delete of every pod in every namespace meets the rule about prod (kubectl's --raw takes
    // the path from the host on, without the kubeconfig server's /c/k8s).
    let (ok, _, err) = s.run(&s.agent, &["delete", "--raw", "/c/k8s/api/v1/pods"]);
    assert!(!ok && err.contains("Forbidden"), "{err}");
    assert!(s.received("DELETE", "").is_empty(), "a refused delete reached the API server");

    // Impersonation: refused without a rule naming it, and no Impersonate header gets through.
    let (ok, _, err) = s.run(&s.agent, &["get", "pods", "-n", "prod", "--as", "system:admin"]);
    assert!(!ok && err.contains("impersonating users \"system:admin\" is off"), "{err}");
    assert!(s.api.requests().iter().all(|r| !r["headers"].as_object().unwrap().keys().any(|k| k.starts_with("impersonate"))));

    // Secret data: masked for the agent, in what kubectl prints, in JSON and YAML, in a watch.
    let (ok, out, err) = s.run(&s.agent, &["get", "secret", "db-credentials", "-n", "prod", "-o", "json"]);
    assert!(ok, "get secret: {err}");
    let secret: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(secret["data"]["password"], MASKED_DATA, "{out}");
    assert!(!out.contains(&marker_base64()) && !out.contains(KUBE_SECRET_MARKER), "{out}");
    let (ok, out, _) = s.run(&s.agent, &["get", "secrets", "-n", "prod", "-o", "yaml"]);
    assert!(ok && out.contains(MASKED_DATA) && !out.contains(&marker_base64()), "{out}");
    let watch = s.spawn(&s.agent, &["get", "secrets", "-n", "prod", "--watch", "-o", "json"]);
    poll("the secrets watch to reach the API server", || {
        s.received("GET", "/secrets").iter().any(|r| r["query"].as_str().unwrap_or("").contains("watch=true")).then_some(())
    });
    s.api.end_watches();
    let (_, out, err) = finish(watch);
    assert!(out.contains("db-credentials") && out.contains(MASKED_DATA) && !out.contains(&marker_base64()), "watch: {out}{err}");
    // A watch of secrets asked for over WebSocket (which the API server would serve, and witness
    // could not mask in flight) is sent on as a plain watch, whose events witness masks.
    let upgraded = s.websocket_watch("/c/k8s/api/v1/namespaces/prod/secrets?watch=true");
    assert!(upgraded.starts_with("HTTP/1.1 200"), "{upgraded}");
    assert!(upgraded.contains(MASKED_DATA) && !upgraded.contains(&marker_base64()), "{upgraded}");
    // An empty namespace (`//`), which the API server reads as every namespace, is not read as
    // a shifted path: witness cannot be sure of it, so every deny rule applies.
    let token = s.gw.token("claude", &["--groups", "ai-agents"]);
    let cert = s.gw.data_dir().join("tls/witness.crt");
    let url = format!("https://127.0.0.1:{}/c/k8s/api/v1/namespaces//secrets", s.gw.port);
    let out = Command::new("curl")
        .args(["-sS", "--path-as-is", "--cacert", cert.to_str().unwrap(), "-H", &format!("Authorization: Bearer {token}"), &url])
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((answer["kind"].as_str(), answer["code"].as_u64()), (Some("Status"), Some(403)), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("empty path segment"), "{answer}");
    // A JSON patch could copy Secret data into an annotation: refused for whoever does not read
    // secrets, and not sent on.
    let patch = r#"[{"op":"copy","from":"/data/password","path":"/metadata/annotations/x"}]"#;
    let (ok, _, err) = s.run(&s.agent, &["patch", "secret", "db-credentials", "-n", "prod", "--type", "json", "-p", patch]);
    assert!(!ok && err.contains("JSON patch"), "{err}");
    assert!(s.received("PATCH", "").is_empty(), "the JSON patch reached the API server");
    // A secret the agent creates is recorded without its value.
    let (ok, _, err) =
        s.run(&s.agent, &["create", "secret", "generic", "made-by-agent", "-n", "default", "--from-literal=key=agent-made-9931"]);
    assert!(ok, "create secret: {err}");

    // A held delete: kubectl waits until an approver approves, then prints the warning.
    let held = s.spawn(&s.agent, &["delete", "pod", "web-1", "-n", "default"]);
    let waiting = poll("the delete to wait for approval", || {
        let out = s.approvals(&["list", "--json"]);
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        list.into_iter().next()
    });
    assert!(waiting["statement"].as_str().unwrap().contains("delete pods web-1 in default"), "{waiting}");
    assert!(s.received("DELETE", "/pods/web-1").is_empty(), "a held delete reached the API server");
    let approved = s.approvals(&["approve", waiting["id"].as_str().unwrap()]);
    assert!(approved.status.success(), "{}", String::from_utf8_lossy(&approved.stderr));
    let (ok, out, err) = finish(held);
    assert!(ok && out.contains("deleted"), "the approved delete: {out}{err}");
    assert!(err.contains("Warning: witness held this request for approval"), "{err}");
    assert_eq!(s.received("DELETE", "/pods/web-1").len(), 1);

    // Exec over a relayed WebSocket: output, then stdin both ways.
    let (ok, out, err) = s.run(&s.agent, &["exec", "api-1", "-n", "prod", "--", "echo", "hello", "through", "witness"]);
    assert!(ok && out == "hello through witness\n", "exec echo: {out:?} {err}");
    let mut cat = s
        .kubectl(&s.agent, &["exec", "-i", "api-1", "-n", "prod", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let typed: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    cat.stdin.take().unwrap().write_all(&typed).unwrap();
    let out = cat.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout == typed,
        "exec -i cat: {} bytes back; {}",
        out.stdout.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, _, _) = s.run(&s.agent, &["exec", "api-1", "-n", "prod", "--", "false"]);
    assert!(!ok, "a failing command's status reaches kubectl");

    // The recording: what rules read, the masks, the WebSocket by channel.
    let events = s.events();
    let requests: Vec<&Value> = events.iter().filter(|e| e["kind"] == "http.request").collect();
    let denied = requests.iter().find(|e| e["attrs"]["kube"]["name"] == "api-2").expect("the denied delete is recorded");
    assert_eq!(denied["attrs"]["kube"]["verb"], "delete");
    assert_eq!(denied["attrs"]["decision"], "deny", "{denied}");
    let exec = requests.iter().find(|e| e["attrs"]["kube"]["command"] == serde_json::json!(["echo", "hello", "through", "witness"]));
    let exec = exec.expect("the exec's command is recorded");
    assert_eq!(exec["attrs"]["kube"]["verb"], "create");
    assert_eq!(exec["attrs"]["upgrade"], "websocket");
    let stdout: Vec<&Value> = events.iter().filter(|e| e["kind"] == "http.websocket" && e["attrs"]["channel"] == 1).collect();
    assert!(
        stdout.iter().any(|e| e["payload_text"].as_str().unwrap_or("").contains("hello through witness")),
        "{:?}",
        stdout.iter().map(|e| &e["summary"]).collect::<Vec<_>>()
    );
    assert!(events.iter().any(|e| e["kind"] == "http.websocket_closed"));
    let masked: Vec<&Value> = events.iter().filter(|e| e["attrs"]["secret_data"] == "masked").collect();
    assert!(masked.len() >= 3, "answers about secrets are marked as masked: {}", masked.len());
    let created = requests.iter().find(|e| e["attrs"]["kube"]["resource"] == "secrets" && e["attrs"]["kube"]["verb"] == "create").unwrap();
    assert!(created["attrs"]["body_digest"].is_null(), "{created}");
    let data_dir = s.gw.data_dir();
    for secret in [KUBE_SECRET_MARKER, &marker_base64(), "agent-made-9931", SERVICE_ACCOUNT_TOKEN] {
        assert_nowhere_in(&data_dir, secret);
    }

    // A named secret reader sees the data as the API server has it.
    let (ok, out, err) = s.run(&s.reader, &["get", "secret", "db-credentials", "-n", "prod", "-o", "json"]);
    assert!(ok, "{err}");
    let secret: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(secret["data"]["password"], marker_base64());

    let mut gw = s.gw;
    gw.stop_and_verify();
}

#[test]
fn an_exec_with_a_terminal_replays_as_a_cast() {
    let s = setup();
    let kubectl = format!(
        "HOME={home} kubectl --kubeconfig {config} --cache-dir {home}/cache exec -it api-1 -n prod -- sh",
        home = s.home.path().display(),
        config = s.agent.display()
    );
    // `script` gives kubectl a terminal; the fake shell echoes a line and exits.
    let mut shell = Command::new("script")
        .args(["-qec", &kubectl, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = shell.stdin.take().unwrap();
    stdin.write_all(b"echo typed-through-witness\r").unwrap();
    stdin.write_all(b"exit\r").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while shell.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "kubectl exec -it did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let out = shell.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("typed-through-witness"), "{}", String::from_utf8_lossy(&out.stdout));

    let sessions = s.gw.sessions_when(|all| all.iter().any(|session| session["status"] == "closed"));
    let exec = sessions
        .iter()
        .find(|session| s.gw.events(session["id"].as_str().unwrap()).iter().any(|e| e["kind"] == "http.websocket"))
        .expect("the exec's session");
    let id = exec["id"].as_str().unwrap();
    let cast = s.gw.dir.path().join("exec.cast");
    let exported = s.gw.witness(&["export", id, "--format", "asciicast", "--output", cast.to_str().unwrap()]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let cast = std::fs::read_to_string(cast).unwrap();
    let output: String = cast
        .lines()
        .skip(1)
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|frame| frame[1] == "o")
        .map(|frame| frame[2].as_str().unwrap_or("").to_string())
        .collect();
    assert!(output.contains("typed-through-witness"), "{cast}");
}

#[test]
fn port_forward_and_attach_run_over_relayed_websockets() {
    let s = setup();
    // Port-forward of two ports of one pod: kubectl says when it listens.
    let (http_port, echo_port) = (free_port(), free_port());
    let mut forward = s.spawn(&s.agent, &["port-forward", "pod/web-1", &format!("{http_port}:8080"), &format!("{echo_port}:9000")]);
    let mut said = std::io::BufReader::new(forward.stdout.take().unwrap());
    let mut listening = 0;
    while listening < 2 {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut said, &mut line).unwrap() == 0 {
            let _ = forward.kill();
            panic!("kubectl port-forward ended: {}", finish(forward).2);
        }
        listening += usize::from(line.starts_with("Forwarding from 127.0.0.1"));
    }
    let mut web = std::net::TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    web.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut web, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") && answer.contains("hello from web-1:8080"), "{answer}");
    // 1 MiB through the echo port and back, byte for byte, twice on one port-forward.
    let sent: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 + i / 997) as u8).collect();
    for _ in 0..2 {
        let mut echo = std::net::TcpStream::connect(("127.0.0.1", echo_port)).unwrap();
        let mut writer = echo.try_clone().unwrap();
        let to_send = sent.clone();
        let writing = std::thread::spawn(move || writer.write_all(&to_send));
        let mut back = vec![0u8; sent.len()];
        std::io::Read::read_exact(&mut echo, &mut back).unwrap();
        writing.join().unwrap().unwrap();
        assert!(back == sent, "the echoed megabyte came back changed");
    }
    forward.kill().unwrap();
    let _ = forward.wait();
    let upgrades = s.received("GET", "/pods/web-1/portforward");
    assert_eq!(upgrades.len(), 1, "one tunnelled WebSocket, no SPDY fallback: {upgrades:?}");
    assert_eq!(upgrades[0]["headers"]["sec-websocket-protocol"][0], "SPDY/3.1+portforward.k8s.io");
    // The stand-in lists a forwarded connection once it has ended on its side too.
    poll("both echoes in the API server's list", || {
        let upgrades = s.received("GET", "/pods/web-1/portforward");
        let forwarded = upgrades[0]["forwarded"].as_array().cloned().unwrap_or_default();
        (forwarded.iter().filter(|f| f["port"] == 9000 && f["received"] == 1 << 20).count() == 2).then_some(())
    });

    // A rule denies port-forward in prod: neither the WebSocket nor a SPDY retry reaches the
    // API server, and kubectl fails.
    let (ok, _, err) = s.run(&s.agent, &["port-forward", "-n", "prod", "pod/api-1", &format!("{}:8080", free_port())]);
    assert!(!ok, "a denied port-forward started");
    assert!(err.contains("denied by witness rule \"no-port-forward-in-prod\""), "{err}");
    assert!(s.received("GET", "/pods/api-1/portforward").is_empty() && s.received("POST", "/pods/api-1/portforward").is_empty());

    // attach -i: stdin to the container's main process and its output back, on v5 channels.
    let mut attach = s
        .kubectl(&s.agent, &["attach", "-i", "web-1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    attach.stdin.take().unwrap().write_all(b"attached through witness\n").unwrap();
    let (ok, out, err) = finish(attach);
    assert!(ok && out.contains("attached through witness"), "attach: {out} {err}");

    // The recording: the port-forward's tunnel carried both megabytes each way; attach's stdin
    // is on channel 0.
    let events = s.events();
    let frames: Vec<&Value> = events.iter().filter(|e| e["kind"] == "http.websocket").collect();
    let carried = |direction: &str| -> u64 {
        frames
            .iter()
            .filter(|e| e["direction"] == direction && e["attrs"]["opcode"] == "binary")
            .map(|e| e["payload_bytes"].as_u64().unwrap_or(0))
            .sum()
    };
    assert!(carried("request") >= 2 << 20 && carried("response") >= 2 << 20, "{} and {} bytes", carried("request"), carried("response"));
    assert!(
        frames
            .iter()
            .any(|e| e["attrs"]["channel"] == 0 && e["payload_text"].as_str().is_some_and(|t| t.contains("attached through witness"))),
        "attach's stdin on channel 0"
    );
    let denied: Vec<&Value> = events.iter().filter(|e| e["kind"] == "http.request" && e["attrs"]["decision"] == "deny").collect();
    assert!(denied.iter().any(|e| e["attrs"]["path"].as_str().is_some_and(|p| p.ends_with("/pods/api-1/portforward"))), "{denied:?}");
    let mut gw = s.gw;
    gw.stop_and_verify();
}

/// A log cut at a byte count may end inside a value, where masking's detectors cannot see it
/// whole: a masked session's `limitBytes` is refused, whole lines (`tailLines`) are not, and a
/// session no masking rule names may cut as it likes.
#[test]
fn a_masked_sessions_logs_are_cut_by_lines_not_bytes() {
    let s = setup();
    let (ok, _, err) = s.run(&s.auditor, &["logs", "api-1", "-n", "prod", "--limit-bytes=7"]);
    assert!(!ok && err.contains("limitBytes"), "{err}");
    let (ok, out, err) = s.run(&s.auditor, &["logs", "api-1", "-n", "prod", "--tail=1"]);
    assert!(ok && out.trim() == "api-1 ready", "{out}{err}");
    let (ok, _, err) = s.run(&s.agent, &["logs", "api-1", "-n", "prod", "--limit-bytes=7"]);
    assert!(ok, "{err}");
}

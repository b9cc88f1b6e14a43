//! A real OpenID provider for tests of OIDC/JWT identities.
//!
//! [`OidcProvider::start`] runs the certified `oidc-provider` npm package (pinned to
//! [`OIDC_PROVIDER_VERSION`]) under Node.js with the script `crates/testkit/oidc/provider.mjs`,
//! on a free loopback port, and waits for its "ready" line. Tokens come from a real
//! client-credentials grant ([`OidcProvider::mint`]), so the tests see the provider's own
//! discovery document, JWKS, key ids, headers and claims, not a stand-in's idea of them.
//!
//! | client id      | secret                | alg   | `groups` claim                              | `task` claim     |
//! |----------------|-----------------------|-------|---------------------------------------------|------------------|
//! | `agent-client` | `agent-client-secret` | RS256 | `["ai-agents"]`                             | `JIRA-42`        |
//! | `ops-client`   | `ops-client-secret`   | ES256 | `"dba"` (a string)                          | none             |
//! | `ed-client`    | `ed-client-secret`    | EdDSA | `["ai-agents", "not a group!", "readers"]`  | `nightly-report` |
//! | `pss-client`   | `pss-client-secret`   | PS256 | `[]`                                        | none             |
//!
//! Every token has `sub` = client id, `iss` = [`OidcProvider::issuer`], `aud` = the requested
//! audience, a `jti`, and lives 300 s. The signing keys (kids `rsa-1`, `ec-1`, `ed-1`) are made
//! fresh by every provider.
//!
//! The package is installed once into `$HOME/.cache/witness-oidc-provider/<version>` with
//! `npm install`, under an exclusive lock on `$HOME/.cache/witness-oidc-provider.lock` so that
//! concurrent test processes never run npm at once. Node.js (18 or newer) and npm must be
//! installed; when npm is missing and we are root, `apt-get install -y nodejs npm` is run.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

use crate::node::NodePackages;
use crate::util::file_tail;

/// The `oidc-provider` release the harness installs. The 8.x line runs on Node.js 18 (Debian
/// 12's own) as well as on newer ones; 9.x needs Node.js 20.12 or newer.
pub const OIDC_PROVIDER_VERSION: &str = "8.8.1";

/// The client of the plain case: RS256, groups `["ai-agents"]`, task `JIRA-42`.
pub const AGENT_CLIENT: &str = "agent-client";
/// ES256, groups `"dba"` as a single string, no task.
pub const OPS_CLIENT: &str = "ops-client";
/// EdDSA, groups `["ai-agents", "not a group!", "readers"]`, task `nightly-report`.
pub const ED_CLIENT: &str = "ed-client";
/// PS256, no groups, no task.
pub const PSS_CLIENT: &str = "pss-client";

/// The console's public client (authorization code with PKCE), with
/// [`OidcProvider::start_with_console`].
pub const CONSOLE_CLIENT: &str = "console-client";
/// People who log in at the provider's login page, and their groups.
pub const CONSOLE_PEOPLE: &[(&str, &[&str])] = &[("rita", &["platform"]), ("otto", &["ai-agents"])];

/// The provider script, written next to the installed package so that its
/// `import 'oidc-provider'` resolves there.
const SCRIPT: &str = include_str!("../oidc/provider.mjs");

/// How long the provider may take to print its ready line (node startup, key generation).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `oidc-provider`. Dropping it kills the process.
#[derive(Debug)]
pub struct OidcProvider {
    issuer: String,
    port: u16,
    child: Child,
    /// Closed on drop; the script also exits when its stdin ends, so a test process that dies
    /// without dropping us does not leave a provider behind.
    stdin: Option<ChildStdin>,
    log_file: PathBuf,
    /// Holds the stderr log; deleted after the process is gone.
    _dir: TempDir,
}

impl OidcProvider {
    /// Installs `oidc-provider` if needed and starts a provider on a free loopback port.
    ///
    /// # Panics
    ///
    /// Panics with the failing command and its output if Node.js or the package cannot be
    /// installed, and with the provider's stderr if it does not become ready.
    pub fn start() -> OidcProvider {
        OidcProvider::launch(None)
    }

    /// A provider that also lets people log in to the review console: the public client
    /// [`CONSOLE_CLIENT`] (authorization code with PKCE) with `redirect` as its redirect URI, and
    /// the provider's own login and consent pages, where any login name with any password logs
    /// in as that name. ID tokens carry the groups of [`CONSOLE_PEOPLE`] (none for other names).
    pub fn start_with_console(redirect: &str) -> OidcProvider {
        OidcProvider::launch(Some(redirect))
    }

    fn launch(console_redirect: Option<&str>) -> OidcProvider {
        let install_dir = ensure_installed();
        let dir = tempfile::Builder::new()
            .prefix("witness-oidc-")
            .tempdir()
            .unwrap_or_else(|e| panic!("OidcProvider: cannot create temp dir: {e}"));
        let log_file = dir.path().join("provider.log");
        let log = fs::File::create(&log_file).unwrap_or_else(|e| panic!("OidcProvider: cannot create {}: {e}", log_file.display()));

        // Port 0: the script binds first and then builds the provider with the port it got, so
        // there is no race with other processes for the port.
        let mut child = Command::new("node")
            .arg(install_dir.join("provider.mjs"))
            .arg("0")
            .current_dir(&install_dir)
            .env_remove("DEBUG")
            .env_remove("NODE_OPTIONS")
            .env("WITNESS_CONSOLE_REDIRECT", console_redirect.unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("OidcProvider: cannot start node: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();

        // A thread reads stdout, so that waiting for the ready line can time out and the pipe
        // never fills up afterwards.
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(issuer) = line.strip_prefix("ready ") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(issuer.trim().to_owned());
                    }
                }
            }
        });
        let issuer = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(issuer) => issuer,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                panic!(
                    "OidcProvider: no ready line from node ({e}, process {status})\n--- {} ---\n{}",
                    log_file.display(),
                    file_tail(&log_file, 40)
                );
            }
        };
        let port = issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("OidcProvider: cannot read the port of issuer {issuer:?}"));
        OidcProvider { issuer, port, child, stdin, log_file, _dir: dir }
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash), as in the tokens' `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A JWT access token of [`AGENT_CLIENT`] for `audience`.
    ///
    /// # Panics
    ///
    /// Panics with the provider's answer if it does not issue a token.
    pub fn mint(&self, audience: &str) -> String {
        self.mint_for_client(AGENT_CLIENT, audience)
    }

    /// A JWT access token of `client_id` (one of the clients in the module docs) for `audience`,
    /// by a client-credentials grant with `resource=audience`.
    ///
    /// # Panics
    ///
    /// Panics with the provider's answer if it does not issue a token.
    pub fn mint_for_client(&self, client_id: &str, audience: &str) -> String {
        let body = format!(
            "grant_type=client_credentials&scope=db&client_id={}&client_secret={}&resource={}",
            form_encode(client_id),
            form_encode(&format!("{client_id}-secret")),
            form_encode(audience)
        );
        let (status, answer) = self.http("POST", "/token", Some(&body));
        let token = (status == 200).then(|| json_string_field(&answer, "access_token")).flatten();
        token.unwrap_or_else(|| panic!("OidcProvider: token request for {client_id} failed: HTTP {status}: {answer}{}", self.log_tail()))
    }

    /// How many requests the provider has had for `path` (e.g. `/jwks`,
    /// `/.well-known/openid-configuration`), to check how often a verifier fetched keys.
    pub fn request_count(&self, path: &str) -> usize {
        let (status, answer) = self.http("GET", "/test/counts", None);
        assert_eq!(status, 200, "OidcProvider: /test/counts failed: {answer}");
        // A flat JSON object of path -> count; paths contain no quotes.
        let key = format!("\"{path}\":");
        match answer.find(&key) {
            None => 0,
            Some(at) => answer[at + key.len()..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0),
        }
    }

    /// One HTTP/1.0 request (so the answer is neither chunked nor kept alive): status and body.
    fn http(&self, method: &str, path: &str, form: Option<&str>) -> (u16, String) {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).unwrap_or_else(|e| panic!("OidcProvider: cannot connect: {e}{}", self.log_tail()));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAccept: application/json\r\n", self.port);
        if let Some(form) = form {
            request.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", form.len()));
        }
        request.push_str("\r\n");
        request.push_str(form.unwrap_or_default());
        stream.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("OidcProvider: cannot send {method} {path}: {e}"));
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap_or_else(|e| panic!("OidcProvider: cannot read the answer to {method} {path}: {e}"));
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, body.to_owned())
    }

    fn log_tail(&self) -> String {
        format!("\n--- {} ---\n{}", self.log_file.display(), file_tail(&self.log_file, 40))
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes sure the pinned `oidc-provider` and the script are in the cache directory; returns it.
fn ensure_installed() -> PathBuf {
    NodePackages::ensure("witness-oidc-provider", &[&format!("oidc-provider@{OIDC_PROVIDER_VERSION}")], &[("provider.mjs", SCRIPT)])
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a string field in a flat JSON object, if it has no escapes (tokens have none).
fn json_string_field(json: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":\"");
    let start = json.find(&key)? + key.len();
    let value = &json[start..start + json[start..].find('"')?];
    (!value.contains('\\')).then(|| value.to_owned())
}

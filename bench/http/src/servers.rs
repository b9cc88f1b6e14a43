//! The servers under test, each a child process on its own free loopback port in a temp dir: the
//! origin (nginx serving the responses), nginx as a reverse proxy in front of it, and `witness
//! serve` in front of it. Each is stopped when its value is dropped, so an early error return
//! never leaves a stray process behind; nothing here touches a system nginx.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use witness_testkit::Nginx;

pub use crate::witness_serve::Witness;

/// The credential the origin asks of every request: what a user sends it directly, and what
/// both proxies add to what they forward (`proxy_set_header`; witness's `bearer_env`).
pub const UPSTREAM_SECRET: &str = "bench-upstream-secret-5d1e";
/// The key nginx-as-proxy asks of its clients, as witness asks for a token.
pub const PROXY_CLIENT_KEY: &str = "bench-proxy-client-key-8c47";
/// The name of the origin among witness's connections, and the path prefix both proxies serve
/// it under (`/c/origin/…`, witness's way of addressing a connection).
pub const CONNECTION: &str = "origin";

/// The wrk and nginx binaries, installed with apt-get first if one is missing and we are root.
/// On a host with systemd Debian's package starts its own nginx service on port 80: this
/// benchmark neither uses nor stops it.
pub fn ensure_wrk_and_nginx() -> Result<(PathBuf, PathBuf), String> {
    let found = crate::common::ensure_programs(&["wrk", "nginx"])?;
    Ok((found[0].clone(), found[1].clone()))
}

/// The response bodies the origin serves, as files under its document root.
pub struct Content {
    /// The small response's path and body size.
    pub small: (&'static str, usize),
    /// The large response's path and body size.
    pub large: (&'static str, usize),
}

pub const CONTENT: Content = Content { small: ("/small.txt", 3), large: ("/large.json", 100 << 10) };

/// A 100 KiB JSON document, what an internal API answers a list request with: text, as most API
/// bodies are (witness records the start of each body, whatever its kind).
fn large_body(size: usize) -> Vec<u8> {
    let mut body = b"[".to_vec();
    let mut id = 0;
    while body.len() < size - 100 {
        id += 1;
        let item = format!(
            "{{\"id\":{id},\"name\":\"item {id}\",\"status\":\"open\",\"amount_cents\":{},\"tags\":[\"bench\"]}},\n",
            id * 137 % 100_000
        );
        body.extend_from_slice(item.as_bytes());
    }
    body.truncate(body.len() - 2);
    body.extend_from_slice(b"]");
    body.resize(size, b' ');
    body
}

/// The origin: `small.txt` (3 bytes) and `large.json` (100 KiB) as static files, to requests that
/// carry the upstream's credential (401 to others).
pub fn start_origin(bin: &Path) -> Result<Nginx, String> {
    let server = format!("    if ($http_authorization != \"Bearer {UPSTREAM_SECRET}\") {{ return 401; }}\n");
    let nginx = Nginx::start(bin, "", &server)?;
    let write = |name: &str, body: &[u8]| fs::write(nginx.root().join(name.trim_start_matches('/')), body);
    write(CONTENT.small.0, b"ok\n").and_then(|()| write(CONTENT.large.0, &large_body(CONTENT.large.1))).map_err(|e| e.to_string())?;
    Ok(nginx)
}

/// nginx as a reverse proxy to `origin_port`: `/c/origin/PATH` goes to the origin's `/PATH` on
/// kept-alive upstream connections, with the upstream's credential put in place of the client's
/// (401 to a client without the proxy's key). It records nothing.
pub fn start_proxy(bin: &Path, origin_port: u16) -> Result<Nginx, String> {
    // Kept-alive upstream connections need HTTP/1.1 and no `Connection: close` from the client's
    // request (nginx's documented recipe for `keepalive`).
    let http = format!("    upstream {CONNECTION} {{\n        server 127.0.0.1:{origin_port};\n        keepalive 32;\n        keepalive_requests 1000000;\n    }}\n");
    let server = format!(
        "    if ($http_authorization != \"Bearer {PROXY_CLIENT_KEY}\") {{ return 401; }}\n    \
         location /c/{CONNECTION}/ {{\n        proxy_pass http://{CONNECTION}/;\n        proxy_http_version 1.1;\n        \
         proxy_set_header Connection \"\";\n        proxy_set_header Authorization \"Bearer {UPSTREAM_SECRET}\";\n    }}\n"
    );
    Nginx::start(bin, &http, &server)
}

/// `witness serve` with one HTTP connection, `origin`, holding the upstream's credential, the
/// ledger as the default config has it (durability `write`), and a token for identity `bench`.
pub fn start_witness(bin: &Path, origin_port: u16) -> Result<Witness, String> {
    let listen_and_connect = |port: u16| {
        format!(
            "[listen]\nhttp = \"127.0.0.1:{port}\"\n\n[[connections]]\nname = \"{CONNECTION}\"\n\
             protocol = \"http\"\nurl = \"http://127.0.0.1:{origin_port}\"\nbearer_env = \"BENCH_UPSTREAM_TOKEN\"\n"
        )
    };
    Witness::start(bin, "witness-bench-http-", listen_and_connect, &[("BENCH_UPSTREAM_TOKEN", UPSTREAM_SECRET)])
}

/// One GET of `path` on `port` with `authorization`, on a connection of its own: an error unless
/// the answer is 200 with at least `body_bytes` after its head. Each route is checked so before
/// it is measured, because wrk counts a 401 or a 502 as a request like any other.
pub fn check_route(port: u16, path: &str, authorization: &str, body_bytes: usize) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("cannot connect to port {port}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("cannot send a request to port {port}: {e}"))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| format!("no answer from port {port}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split_once("\r\n\r\n").map_or(0, |(head, _)| answer.len() - head.len() - 4);
    if !status.starts_with("HTTP/1.1 200") || body < body_bytes {
        return Err(format!("GET {path} on port {port} answered {status:?} with {body} bytes of body, not 200 with {body_bytes}"));
    }
    Ok(())
}

//! The servers under test, each a child process on its own free loopback port in a temp dir: the
//! origin (nginx serving the responses), nginx as a reverse proxy in front of it, and `witness
//! serve` in front of it. Each is stopped when its value is dropped, so an early error return
//! never leaves a stray process behind; nothing here touches a system nginx.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use witness_testkit::{free_port, Nginx};

/// The credential the origin asks of every request: what a user sends it directly, and what
/// both proxies add to what they forward (`proxy_set_header`; witness's `bearer_env`).
pub const UPSTREAM_SECRET: &str = "bench-upstream-secret-5d1e";
/// The key nginx-as-proxy asks of its clients, as witness asks for a token.
pub const PROXY_CLIENT_KEY: &str = "bench-proxy-client-key-8c47";
/// The name of the origin among witness's connections, and the path prefix both proxies serve
/// it under (`/c/origin/…`, witness's way of addressing a connection).
pub const CONNECTION: &str = "origin";

/// True when we run as root, read from the owner of /proc/self so that no libc call is needed.
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A program on PATH or in /usr/sbin (Debian's place for nginx, missing from some PATHs).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
    dirs.map(|d| d.join(name)).find(|p| p.is_file())
}

/// The wrk and nginx binaries, installed with apt-get first if one is missing and we are root.
/// On a host with systemd Debian's package starts its own nginx service on port 80: this
/// benchmark neither uses nor stops it.
pub fn ensure_wrk_and_nginx() -> Result<(PathBuf, PathBuf), String> {
    let missing: Vec<&str> = ["wrk", "nginx"].into_iter().filter(|name| find_program(name).is_none()).collect();
    if !missing.is_empty() {
        if !is_root() {
            return Err(format!("{} not installed (Debian: apt-get install wrk nginx)", missing.join(" and ")));
        }
        eprintln!("{} not found: installing with apt-get", missing.join(" and "));
        crate::output(Command::new("apt-get").args(["update", "-qq"]))?;
        let install =
            Command::new("apt-get").args(["install", "-y", "-qq"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive").output();
        match install {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(format!(
                    "apt-get install {} failed: {}",
                    missing.join(" "),
                    crate::tail(&String::from_utf8_lossy(&out.stderr), 3)
                ))
            }
            Err(e) => return Err(format!("cannot run apt-get: {e}")),
        }
    }
    let found = |name: &str| find_program(name).ok_or_else(|| format!("{name} is installed but not on PATH or in /usr/sbin"));
    Ok((found("wrk")?, found("nginx")?))
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

fn temp_dir(prefix: &str) -> Result<TempDir, String> {
    tempfile::Builder::new().prefix(prefix).tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))
}

/// `witness serve` with one HTTP connection, `origin`, holding the upstream's credential, the
/// ledger as the default config has it (durability `write`), and a token for identity `bench`.
pub struct Witness {
    dir: TempDir,
    pub port: u16,
    pub token: String,
    child: Child,
    log_thread: Option<JoinHandle<()>>,
}

impl Witness {
    pub fn start(bin: &Path, origin_port: u16) -> Result<Witness, String> {
        let dir = temp_dir("witness-bench-http-")?;
        let (port, config) = (free_port(), dir.path().join("witness.toml"));
        let toml = format!(
            "data_dir = \"{data}\"\n[listen]\nhttp = \"127.0.0.1:{port}\"\n\n[[connections]]\nname = \"{CONNECTION}\"\n\
             protocol = \"http\"\nurl = \"http://127.0.0.1:{origin_port}\"\nbearer_env = \"BENCH_UPSTREAM_TOKEN\"\n",
            data = dir.path().join("data").display()
        );
        fs::write(&config, toml).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        // The token store is a file in the data dir, so the token can be made before serving.
        let token = crate::output(Command::new(bin).args(["token", "create", "--identity", "bench", "--config"]).arg(&config))?;
        // witness logs as it does by default (info: one line per session, none per request).
        let serve = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&config)
            .env("BENCH_UPSTREAM_TOKEN", UPSTREAM_SECRET)
            .env_remove("WITNESS_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = serve.map_err(|e| format!("cannot start witness serve: {e}"))?;
        // The log is drained on a thread (a full pipe would stall witness) into a file. The
        // thread signals the ready line; its channel closes early if witness exits first.
        let (stderr, log_path) = (child.stderr.take().expect("stderr is piped"), dir.path().join("witness.log"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let log_thread = thread::spawn(move || {
            let mut log = fs::File::create(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = log.as_mut().map(|log| writeln!(log, "{line}"));
                if line.contains("witness is running") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let mut witness = Witness { dir, port, token: token.trim().into(), child, log_thread: Some(log_thread) };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => Ok(witness),
            Err(_) => Err(format!("witness serve did not become ready: {}", crate::tail(&witness.stop(), 10))),
        }
    }

    /// Waits (up to 30 s) until witness uses no CPU, so that work left from one run (the index
    /// catching up) does not slow the next run, whichever route it measures; first the kernel
    /// writes out what the last run left dirty (the recorded bodies), which it would otherwise
    /// do during the next run.
    pub fn settle(&self) {
        let _ = Command::new("sync").status();
        let ticks = || crate::cpu::ticks_of(&[self.child.id()]);
        // Idle: at most 2 ticks (20 ms) of CPU in 250 ms; its timers (index polling,
        // checkpoints) use a little even when nothing happens.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = ticks();
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(250));
            let now = ticks();
            if now.saturating_sub(last) <= 2 {
                return;
            }
            last = now;
        }
    }

    /// The witness process (all its threads), whose CPU time a run is charged.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Bytes in the ledger's directory (segments and index): what the runs recorded on disk.
    pub fn ledger_bytes(&self) -> u64 {
        fn size(path: &Path) -> u64 {
            match fs::symlink_metadata(path) {
                Ok(meta) if meta.is_dir() => fs::read_dir(path).into_iter().flatten().flatten().map(|entry| size(&entry.path())).sum(),
                Ok(meta) => meta.len(),
                Err(_) => 0,
            }
        }
        size(&self.dir.path().join("data").join("ledger"))
    }

    /// Stops witness with SIGTERM (it seals the ledger) and returns its complete log.
    pub fn stop(&mut self) -> String {
        terminate(&mut self.child, Duration::from_secs(60));
        let _ = self.log_thread.take().map(JoinHandle::join);
        fs::read_to_string(self.dir.path().join("witness.log")).unwrap_or_default()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(60));
    }
}

/// `kill -TERM`, then `kill -KILL` if the child is still there after `grace` (witness may need a
/// moment to seal its ledger). True if it ended of its own accord (or had already).
fn terminate(child: &mut Child, grace: Duration) -> bool {
    let running = |child: &mut Child| matches!(child.try_wait(), Ok(None));
    if !running(child) {
        return true;
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + grace;
    while running(child) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    if running(child) {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        let _ = child.wait();
        return false;
    }
    true
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

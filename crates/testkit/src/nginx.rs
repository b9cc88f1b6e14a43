//! A throw-away nginx (Debian's package): a master of our own in the foreground, on a free
//! loopback port, with its config, pid file, logs and temp paths in a temp dir. Tests use it as
//! an HTTP upstream (static files, ranges, HEAD, conditional requests), the HTTP benchmark as the
//! origin and as the reverse proxy a user would pick instead of witness. A system nginx is never
//! used or touched.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::util::is_root;

/// A running nginx; stopped (master and workers) when dropped.
pub struct Nginx {
    dir: TempDir,
    /// The loopback port its one server block listens on.
    pub port: u16,
    child: Child,
}

impl Nginx {
    /// The nginx binary: on PATH or in /usr/sbin (Debian's place for it, missing from some
    /// PATHs). None when it is not installed (Debian: `apt-get install nginx`).
    pub fn bin() -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
        dirs.map(|d| d.join("nginx")).find(|p| p.is_file())
    }

    /// Writes the config and starts `bin` in the foreground (`daemon off`), so that it stays
    /// our child; `http` goes in the http block, `server` in its one server block, whose document
    /// root is [`Nginx::root`] (empty until files are written there; nginx reads them when asked).
    /// Access logs are off; `keepalive_requests` is raised so that no client is made to reconnect.
    ///
    /// # Errors
    ///
    /// Says why nginx did not start (with the end of its error log) or did not listen within 20 s.
    pub fn start(bin: &Path, http: &str, server: &str) -> Result<Nginx, String> {
        let dir = tempfile::Builder::new().prefix("witness-nginx-").tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let (port, d) = (free_port(), dir.path().display());
        // As root, nginx would run its workers as `nobody`, which cannot enter a temp dir (0700).
        let user = if is_root() { "user root;\n" } else { "" };
        // tcp_nopush, which Debian's nginx.conf turns on, stays off: with it one small response
        // in a hundred waited 40 ms (TCP_CORK against a client's delayed ACK).
        let config = format!(
            "{user}daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n    sendfile on;\n    keepalive_requests 1000000;\n    \
             client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{http}    server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n{server}    }}\n}}\n"
        );
        fs::create_dir(dir.path().join("www")).map_err(|e| format!("cannot create the document root: {e}"))?;
        let config_path = dir.path().join("nginx.conf");
        fs::write(&config_path, config).map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        // -e: the error log before the config is read (else /var/log/nginx, which may not be ours).
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nginx: {e}"))?;
        let mut nginx = Nginx { dir, port, child };
        match nginx.wait_listening() {
            Ok(()) => Ok(nginx),
            Err(e) => Err(format!("nginx {e}: {}", nginx.error_log_tail(5))),
        }
    }

    /// The document root, where the files nginx serves go.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// The master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let workers = fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        [master].into_iter().chain(workers.split_whitespace().filter_map(|pid| pid.parse().ok())).collect()
    }

    /// The last `lines` of nginx's error log: why it did not start, or what it warned of while
    /// serving (an upstream response buffered to a temp file, say).
    pub fn error_log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits (up to 20 s) until the port accepts a connection; Err says how nginx failed instead.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}"));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("did not listen on port {} within 20 s", self.port))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The workers are asked for before the master goes: a master killed with SIGKILL would
        // leave them behind, and then they are killed by pid.
        let workers: Vec<u32> = self.pids().into_iter().skip(1).collect();
        let master = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &master]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            for worker in workers {
                let _ = Command::new("kill").args(["-KILL", &worker.to_string()]).status();
            }
        }
    }
}

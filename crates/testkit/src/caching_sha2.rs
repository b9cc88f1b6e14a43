//! A stand-in for a MySQL 8 server's `caching_sha2_password` login, where no real one can run:
//! MariaDB (the machines' server) has no such plugin, and MySQL 8 cannot be installed here.
//! [`CachingSha2Server::start`] runs `caching_sha2_server.py` (Python 3 standard library, embedded
//! here) on a free loopback port with a fresh RSA key pair from the `openssl` CLI. It always asks
//! for the full exchange, and OpenSSL decrypts the answer (RSA-OAEP with SHA-1, as MySQL's own
//! OpenSSL does), so what the client encrypted is checked by an implementation that is not its
//! own. Logged in, every command but `COM_QUIT` gets an OK: it tests logins, not queries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::util::ready_port;

const SERVER: &str = include_str!("caching_sha2_server.py");

/// How long python3 may take to say which port it listens on.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running stand-in; stopped (and its keys deleted) when dropped.
pub struct CachingSha2Server {
    port: u16,
    public_key: PathBuf,
    child: Child,
    _dir: TempDir,
}

impl CachingSha2Server {
    /// Starts a stand-in that lets `user` in with `password`.
    ///
    /// # Panics
    ///
    /// Panics if openssl cannot make the key pair or python3 cannot start the server.
    pub fn start(user: &str, password: &str) -> CachingSha2Server {
        let dir = tempfile::Builder::new()
            .prefix("witness-caching-sha2-")
            .tempdir()
            .unwrap_or_else(|e| panic!("CachingSha2Server: cannot create temp dir: {e}"));
        let key = dir.path().join("private_key.pem");
        let public_key = dir.path().join("public_key.pem");
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"], &key);
        let status = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public_key)
            .status()
            .unwrap_or_else(|e| panic!("CachingSha2Server: cannot run openssl: {e}"));
        assert!(status.success(), "CachingSha2Server: openssl pkey -pubout failed");
        let mut child = Command::new("python3")
            .args(["-c", SERVER, user, password])
            .arg(&key)
            .arg(&public_key)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("CachingSha2Server: cannot start python3: {e}"));
        let port = ready_port(&mut child, "CachingSha2Server", READY_TIMEOUT);
        CachingSha2Server { port, public_key, child, _dir: dir }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its RSA public key, PEM (`BEGIN PUBLIC KEY`), as MySQL writes `public_key.pem`.
    pub fn public_key(&self) -> &Path {
        &self.public_key
    }
}

impl Drop for CachingSha2Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str], out: &Path) {
    let status = Command::new("openssl")
        .args(args)
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("CachingSha2Server: cannot run openssl: {e}"));
    assert!(status.success(), "CachingSha2Server: openssl {args:?} failed");
}

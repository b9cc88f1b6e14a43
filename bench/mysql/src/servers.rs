//! The proxies under test, each a child process on its own free loopback port in a temp dir:
//! HAProxy in TCP mode in front of MariaDB, and `witness serve` with one MySQL connection. Each is
//! stopped when its value is dropped; nothing here touches a system HAProxy or MariaDB.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use witness_testkit::{free_port, APP_DATABASE, NATIVE_PASSWORD, NATIVE_USER};

pub use crate::witness_serve::Witness;

/// sysbench and haproxy, installed with apt-get first if one is missing and we are root. Debian's
/// haproxy package may start its own service: this benchmark neither uses nor stops it.
pub fn ensure_sysbench_and_haproxy() -> Result<(PathBuf, PathBuf), String> {
    let found = crate::common::ensure_programs(&["sysbench", "haproxy"])?;
    Ok((found[0].clone(), found[1].clone()))
}

/// `witness serve` with one MySQL connection named as the target's database (sysbench asks for
/// the database by name), witness's own login held in an environment variable.
pub fn start_witness(bin: &Path, db_port: u16) -> Result<Witness, String> {
    let listen_and_connect = |port: u16| {
        format!(
            "[listen]\nmysql = \"127.0.0.1:{port}\"\n\n[[connections]]\nname = \"{APP_DATABASE}\"\nprotocol = \"mysql\"\n\
             address = \"127.0.0.1:{db_port}\"\ndatabase = \"{APP_DATABASE}\"\nuser = \"{NATIVE_USER}\"\n\
             password_env = \"BENCH_MYSQL_PASSWORD\"\ntls = \"disable\"\n"
        )
    };
    Witness::start(bin, "witness-bench-mysql-", listen_and_connect, &[("BENCH_MYSQL_PASSWORD", NATIVE_PASSWORD)])
}

/// HAProxy in TCP mode: each client connection gets a connection to the server, bytes copied.
pub struct HaProxy {
    _dir: TempDir,
    pub port: u16,
    child: Child,
}

impl HaProxy {
    pub fn start(bin: &Path, db_port: u16) -> Result<HaProxy, String> {
        let dir =
            tempfile::Builder::new().prefix("witness-bench-haproxy-").tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let port = free_port();
        let config = dir.path().join("haproxy.cfg");
        let text = format!(
            "global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\n\
             listen mysql\n    bind 127.0.0.1:{port}\n    server mariadb 127.0.0.1:{db_port}\n"
        );
        std::fs::write(&config, text).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        // -db: in the foreground, one process whose CPU time a run is charged.
        let child = Command::new(bin)
            .args(["-db", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start haproxy: {e}"))?;
        let haproxy = HaProxy { _dir: dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("haproxy did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(haproxy)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        crate::common::terminate(&mut self.child, Duration::from_secs(5));
    }
}

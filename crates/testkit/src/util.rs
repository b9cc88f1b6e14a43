//! Small process and filesystem helpers shared by the server harnesses.
//!
//! They exist mainly so that every failure ends in a panic message that says
//! what was being attempted, the exact command line, its output and — when a
//! server log is known — the tail of that log. A bare "exit status 1" in CI
//! is useless.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// True when this process runs with effective uid 0.
///
/// Read from the owner of `/proc/self` (which is the effective uid) so that we
/// need neither `unsafe` libc calls nor a dependency; fall back to `id -u` on
/// systems without procfs.
pub(crate) fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| match fs::metadata("/proc/self") {
        Ok(meta) => meta.uid() == 0,
        Err(_) => Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false),
    })
}

/// Looks up the numeric uid and gid of a local user.
///
/// Uses `id` rather than parsing `/etc/passwd` so that NSS sources (LDAP,
/// systemd-userdb) are honoured.
pub(crate) fn user_ids(user: &str) -> (u32, u32) {
    let query = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, user]).output().unwrap_or_else(|e| panic!("cannot run `id {flag} {user}`: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().unwrap_or_else(|_| {
            panic!(
                "`id {flag} {user}` failed (does the system user {user:?} exist?): status {}, \
                 stdout {text:?}, stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    (query("-u"), query("-g"))
}

/// `chown -R uid:gid path`, without following symlinks.
pub(crate) fn chown_recursive(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Removes every `PG*` variable from a command's environment.
///
/// libpq and the PostgreSQL tools read PGHOST, PGPORT, PGPASSWORD,
/// PGSSLMODE, PGDATA, ... from the environment. A developer's shell (or CI
/// image) may set them, which would silently point our commands at some
/// other server or change their TLS behaviour.
pub(crate) fn scrub_pg_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Renders a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg: &OsStr| {
            let s = arg.to_string_lossy();
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '\'') {
                format!("{s:?}")
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion and returns its output, panicking on failure.
///
/// `what` names the step ("initdb", "create roles", ...) and `log`, when
/// given, is a server log whose tail is appended to the panic message.
pub(crate) fn run(cmd: &mut Command, what: &str, log: Option<&Path>) -> Output {
    match try_run(cmd) {
        Ok(out) => out,
        Err(msg) => panic!("{what} failed: {msg}{}", log_section(log)),
    }
}

/// Like [`run`] but returns the failure description instead of panicking.
pub(crate) fn try_run(cmd: &mut Command) -> Result<Output, String> {
    let line = describe(cmd);
    let out = cmd.output().map_err(|e| format!("could not spawn `{line}`: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`{line}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end(),
        ))
    }
}

/// The last `n` lines of a text file, or a note saying why it is unavailable.
pub(crate) fn file_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Formats a "--- log tail ---" block for panic messages (empty if no log).
pub(crate) fn log_section(log: Option<&Path>) -> String {
    match log {
        Some(path) => format!("\n--- last 40 lines of {} ---\n{}", path.display(), file_tail(path, 40)),
        None => String::new(),
    }
}

/// A test CA, and a server certificate and key it signed, as files.
pub(crate) struct TestCertificate {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a test CA (`/CN=witness-{name}-test-ca`) and a server certificate it signed (names
/// `localhost` and `127.0.0.1`) in `dir`; `who` names the harness in panic messages. A CA apart
/// from the server's certificate, because verifiers such as webpki refuse a self-signed CA
/// certificate used as the server's own. EC keys: made in milliseconds, where RSA keys take a
/// noticeable part of a second.
pub(crate) fn test_certificate(dir: &Path, name: &str, who: &str) -> TestCertificate {
    let [ca_key, ca_cert, key, csr, cert, ext] =
        ["ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "server.ext"].map(|file| dir.join(file));
    fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap_or_else(|e| panic!("{who}: cannot write {}: {e}", ext.display()));
    let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(
        Command::new("openssl")
            .args(["req", "-x509", "-days", "30", "-subj", &format!("/CN=witness-{name}-test-ca")])
            .args(new_key)
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_cert),
        &format!("{who}: openssl CA generation"),
        None,
    );
    run(
        Command::new("openssl").args(["req", "-subj", "/CN=localhost"]).args(new_key).arg("-keyout").arg(&key).arg("-out").arg(&csr),
        &format!("{who}: openssl server key generation"),
        None,
    );
    run(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "30", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_cert)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
        &format!("{who}: openssl server certificate signing"),
        None,
    );
    TestCertificate { ca_cert, cert, key }
}

/// The port a stand-in server started as `child` says it listens on, in its first line of
/// output, `ready PORT`; its later output is read on and dropped, so that it never blocks on a
/// full pipe. Kills the child and panics, naming `who`, when no such line comes within `timeout`.
pub(crate) fn ready_port(child: &mut std::process::Child, who: &str, timeout: std::time::Duration) -> u16 {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("stdout is piped");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let port = lines.next().and_then(Result::ok).and_then(|line| line.strip_prefix("ready ")?.trim().parse::<u16>().ok());
        let _ = ready_tx.send(port);
        lines.for_each(drop);
    });
    match ready_rx.recv_timeout(timeout) {
        Ok(Some(port)) => port,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{who}: python3 did not say which port it listens on ({other:?})");
        }
    }
}

//! Throw-away OpenSSH servers for integration tests of the SSH gateway.
//!
//! [`Sshd::start`] makes a fresh temporary directory with an ed25519 host key, a client key pair
//! for the login user, an `authorized_keys` file holding that client key and an `sshd_config`,
//! then runs the system's `/usr/sbin/sshd` in the foreground (`-D -e`) on a free loopback port
//! as a child process, and returns once the port answers with an `SSH-2.0-` banner. Dropping the
//! value kills the server (and the processes serving its open connections) and deletes the
//! directory.
//!
//! The login user is the user running the tests ([`Sshd::user`]; `root` in containers and CI).
//! Only public-key authentication is enabled: sshd checks passwords against the system's
//! password database (there is no per-server password file), so password tests would need a
//! real system password for root, which a test harness must not set.
//!
//! [`Sshd::ssh_command`] and [`Sshd::run`] reach the server *directly* with the system `ssh`,
//! so tests can compare what a command prints through the gateway with what it prints without
//! it. [`SshKeyPair::generate`] makes further client keys (e.g. for gateway identities).
//!
//! The harness installs nothing: `sshd`, `ssh`, `ssh-keygen` (and, for the tests, `ssh-keyscan`)
//! must be installed (Debian: `openssh-server`, `openssh-client`). When the tests run as root,
//! sshd requires its privilege separation directory `/run/sshd`, which is created if missing.
//! As an ordinary user, sshd runs without privilege separation and can only log in that user.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::util::{self, file_tail, is_root, log_section, try_run};

/// The OpenSSH server binary. sshd re-executes itself for every connection and refuses to start
/// unless it was run by an absolute path, so PATH lookup is not an option.
const SSHD: &str = "/usr/sbin/sshd";

/// Privilege separation directory sshd (as root) chroots its pre-authentication child into.
const PRIVSEP_DIR: &str = "/run/sshd";

/// How many times to start sshd with a fresh port when another process grabbed the port between
/// [`free_port`] and sshd's bind.
const PORT_ATTEMPTS: usize = 5;

/// How long sshd may take to answer with its banner after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between readiness probes: short, since sshd usually binds within milliseconds.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// OpenSSH client options (for ssh, scp, sftp, or an rsync/git `-e`) that reach a server on
/// loopback `port` with `key` only: no user or system config, host keys neither checked nor
/// remembered, no prompts, errors only. The destination and command come after.
pub fn ssh_client_options(key: &Path, port: u16) -> Vec<String> {
    let key = key.to_string_lossy().into_owned();
    let mut options: Vec<String> = ["-F", "/dev/null", "-i", &key].iter().map(|s| s.to_string()).collect();
    for option in [
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "BatchMode=yes",
        "ConnectTimeout=10",
        "LogLevel=ERROR",
    ] {
        options.extend(["-o".to_string(), option.to_string()]);
    }
    options.extend(["-o".to_string(), format!("Port={port}")]);
    options
}

/// Options for [`Sshd::start_with`].
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// Type of the login user's client key, as `ssh-keygen -t` takes it: `"ed25519"` or `"rsa"`
    /// (`"ecdsa"` works too). Default: `"ed25519"`. The host key is always ed25519.
    pub key_type: &'static str,
    /// Extra `sshd_config` lines, e.g. `"AllowTcpForwarding no"`. sshd keeps the *first* value
    /// it reads for a keyword, so these are written before the harness's defaults and override
    /// them (`Subsystem sftp …` replaces the harness's in-process sftp). `Match` blocks are not supported here (they would swallow the defaults below).
    pub extra_config: Vec<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions { key_type: "ed25519", extra_config: Vec::new() }
    }
}

/// A running, disposable OpenSSH server on `127.0.0.1:`[`port`](Self::port).
///
/// Several instances may run at once; each has its own port, directory and keys.
#[derive(Debug)]
pub struct Sshd {
    port: u16,
    user: String,
    client: SshKeyPair,
    host: SshKeyPair,
    config_file: PathBuf,
    authorized_keys: PathBuf,
    log_file: PathBuf,
    /// The listening sshd; `None` until spawned, so that a panic during start-up can still drop
    /// (and clean up) a half-built value.
    child: Option<Child>,
    /// Declared last so it is dropped (directory deleted) after `Drop::drop` has killed sshd.
    dir: TempDir,
}

/// An OpenSSH key pair made by `ssh-keygen`, for tests that need client keys.
#[derive(Debug, Clone)]
pub struct SshKeyPair {
    /// The private key file (OpenSSH format, no passphrase, mode 0600). The public key is next
    /// to it, with `.pub` appended.
    pub private: PathBuf,
    /// The public key as one `authorized_keys` line, `<type> <base64> <name>`, without the
    /// trailing newline.
    pub public_line: String,
    /// The SHA-256 fingerprint as `ssh-keygen -l` prints it: `SHA256:<base64, unpadded>`.
    pub fingerprint: String,
}

// === impl Sshd ===

impl Sshd {
    /// Starts a server with default options (ed25519 client key).
    ///
    /// # Panics
    ///
    /// Panics with the failing command and its output if a key cannot be made, with `sshd -t`'s
    /// complaint if the configuration is bad, and with the server log tail if sshd does not
    /// answer with a banner within 10 seconds.
    pub fn start() -> Sshd {
        Sshd::start_with(SshdOptions::default())
    }

    /// Starts a server with the given options.
    ///
    /// # Panics
    ///
    /// As [`Sshd::start`].
    pub fn start_with(options: SshdOptions) -> Sshd {
        let dir =
            tempfile::Builder::new().prefix("witness-sshd-").tempdir().unwrap_or_else(|e| panic!("Sshd: cannot create temp dir: {e}"));
        let user = current_user();
        let host = SshKeyPair::generate(dir.path(), "host_ed25519", "ed25519");
        let client = SshKeyPair::generate(dir.path(), &format!("client_{}", options.key_type), options.key_type);
        let authorized_keys = dir.path().join("authorized_keys");
        fs::write(&authorized_keys, format!("{}\n", client.public_line))
            .unwrap_or_else(|e| panic!("Sshd: cannot write {}: {e}", authorized_keys.display()));
        if is_root() {
            // sshd (as root) refuses to start without it; normally the init system or the
            // package's service unit creates it, neither of which runs in a container.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(PRIVSEP_DIR)
                .unwrap_or_else(|e| panic!("Sshd: cannot create the privilege separation directory {PRIVSEP_DIR}: {e}"));
        }

        let config_file = dir.path().join("sshd_config");
        let log_file = dir.path().join("sshd.log");
        // From here on the value owns the directory: if anything below panics, Drop kills
        // whatever was started and cleans up.
        let mut sshd = Sshd { port: 0, user, client, host, config_file, authorized_keys, log_file, child: None, dir };
        sshd.start_server(&options);
        sshd
    }

    /// Writes the config for a fresh port, checks it and spawns sshd, retrying with a new port
    /// if the chosen one was taken in the meantime (the [`free_port`] race).
    fn start_server(&mut self, options: &SshdOptions) {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            self.write_config(options);
            // `sshd -t` names the offending line; a bad config at start-up would only say so
            // in the log after the process has gone.
            if let Err(error) = try_run(Command::new(SSHD).arg("-t").arg("-f").arg(&self.config_file)) {
                panic!("Sshd: the generated sshd_config is invalid: {error}\n--- {} ---\n{}", self.config_file.display(), self.config());
            }

            let log_len_before = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_file)
                .unwrap_or_else(|e| panic!("Sshd: cannot open {}: {e}", self.log_file.display()));
            let child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&self.config_file)
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("Sshd: cannot run {SSHD} (is openssh-server installed?): {e}"));
            self.child = Some(child);

            let error = match self.wait_ready() {
                Ok(()) => return,
                Err(error) => error,
            };
            let new_log = fs::read(&self.log_file).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let port_taken = new_log.get(log_len_before as usize..).unwrap_or("").contains("Address already in use");
            self.kill_server();
            if !(port_taken && attempt < PORT_ATTEMPTS) {
                panic!(
                    "Sshd: sshd did not become ready (attempt {attempt}, port {}): {error}{}",
                    self.port,
                    log_section(Some(&self.log_file))
                );
            }
            eprintln!("witness-testkit: port {} was taken before sshd could bind it; retrying", self.port);
        }
    }

    /// Polls until the port answers with an SSH banner, sshd exits, or [`READY_TIMEOUT`] passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            // Checked before every probe: if sshd failed to bind, whatever answers on the port
            // belongs to someone else.
            let child = self.child.as_mut().expect("sshd was spawned");
            if let Some(status) = child.try_wait().map_err(|e| format!("cannot check on sshd: {e}"))? {
                return Err(format!("sshd exited with {status}"));
            }
            let last_error = match read_banner(addr, deadline) {
                Ok(banner) if banner.starts_with("SSH-2.0-") => return Ok(()),
                Ok(banner) => format!("127.0.0.1:{} answered {banner:?}, not an SSH-2.0 banner", self.port),
                Err(e) => format!("no banner from 127.0.0.1:{}: {e}", self.port),
            };
            if Instant::now() >= deadline {
                return Err(format!("not ready after {READY_TIMEOUT:?}; last probe: {last_error}"));
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
    }

    fn write_config(&self, options: &SshdOptions) {
        let dir = self.dir.path();
        let mut config = String::from("# witness-testkit: disposable test server\n");
        for line in &options.extra_config {
            config.push_str(line);
            config.push('\n');
        }
        config.push_str(&format!(
            "ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {host_key}\n\
             PidFile {pid_file}\n\
             AuthorizedKeysFile {authorized_keys}\n\
             # Keys only: sshd checks passwords against the system's, and tests must not set one.\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             # The temp dir and key files are not laid out the way StrictModes insists on.\n\
             StrictModes no\n\
             # PAM would bring in the system's session modules (motd, lastlog, limits).\n\
             UsePAM no\n\
             AllowTcpForwarding yes\n\
             PermitTTY yes\n\
             # Keep session output to what the command prints, for direct/gateway comparisons.\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             LogLevel VERBOSE\n\
             # Tests open many connections at once; sshd's default (10:30:100) drops some.\n\
             MaxStartups 100\n\
             MaxSessions 100\n\
             AcceptEnv LANG LC_*\n",
            port = self.port,
            host_key = self.host.private.display(),
            pid_file = dir.join("sshd.pid").display(),
            authorized_keys = self.authorized_keys.display(),
        ));
        // sshd refuses a second Subsystem line for a name, so a caller's replaces this one.
        if !options.extra_config.iter().any(|line| line.starts_with("Subsystem sftp ")) {
            // In-process sftp: no dependency on where the distribution puts sftp-server.
            config.push_str("Subsystem sftp internal-sftp\n");
        }
        fs::write(&self.config_file, config).unwrap_or_else(|e| panic!("Sshd: cannot write {}: {e}", self.config_file.display()));
    }

    fn config(&self) -> String {
        fs::read_to_string(&self.config_file).unwrap_or_else(|e| format!("<cannot read: {e}>"))
    }

    /// TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:<port>"`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The user [`client_key`](Self::client_key) logs in as: the user running the tests
    /// (`root` in containers and CI).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The server's temporary directory (keys, `sshd_config`, `authorized_keys`, `sshd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The private key file (mode 0600) authorized for [`user`](Self::user).
    pub fn client_key(&self) -> &Path {
        &self.client.private
    }

    /// The client public key as an `authorized_keys` line (`<type> <base64> <comment>`).
    pub fn client_public_key(&self) -> String {
        self.client.public_line.clone()
    }

    /// The host public key as `ssh-ed25519 <base64>`, without a comment: the form `ssh-keyscan`
    /// prints after the host name, for pinning the target's key in the gateway's config.
    pub fn host_public_key(&self) -> String {
        self.host.public_line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// The host key's fingerprint as `ssh-keygen -l` prints it: `SHA256:<base64>`.
    pub fn host_key_fingerprint(&self) -> String {
        self.host.fingerprint.clone()
    }

    /// Adds a public key (an `authorized_keys` line, e.g. [`SshKeyPair::public_line`]) to the
    /// keys that may log in as [`user`](Self::user). sshd reads the file at every login, so it
    /// takes effect at once.
    ///
    /// # Panics
    ///
    /// Panics if the file cannot be appended to.
    pub fn authorize(&self, public_line: &str) {
        use std::io::Write;
        OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .and_then(|mut f| f.write_all(format!("{}\n", public_line.trim_end()).as_bytes()))
            .unwrap_or_else(|e| panic!("Sshd: cannot append to {}: {e}", self.authorized_keys.display()));
    }

    /// The last `n_lines` lines of the server log (sshd's stderr at `LogLevel VERBOSE`).
    pub fn log_tail(&self, n_lines: usize) -> String {
        file_tail(&self.log_file, n_lines)
    }

    /// An `ssh` command that reaches this server directly as [`user`](Self::user) with
    /// [`client_key`](Self::client_key): `ssh -F /dev/null -p PORT -i KEY -o ... user@127.0.0.1`.
    ///
    /// The user's and the system's ssh config are ignored, the host key is not checked nor
    /// remembered, and prompts are off (`BatchMode`). Append the remote command with `.arg(..)`;
    /// OpenSSH also takes further options after the destination, e.g. `.args(["-T", "cmd"])`.
    pub fn ssh_command(&self) -> Command {
        self.ssh_command_with_key(&self.client.private)
    }

    /// [`ssh_command`](Self::ssh_command) with another private key (and only that one).
    fn ssh_command_with_key(&self, key: &Path) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(ssh_client_options(key, self.port)).arg(format!("{}@127.0.0.1", self.user));
        cmd
    }

    /// Runs `command` on the server directly (see [`ssh_command`](Self::ssh_command)) with
    /// stdin closed, and returns its stdout unchanged (trailing newline included).
    ///
    /// # Panics
    ///
    /// Panics with ssh's stderr and the server log tail if ssh or the command fails.
    pub fn run(&self, command: &str) -> String {
        let out = util::run(self.ssh_command().arg(command), &format!("Sshd::run {command:?}"), Some(&self.log_file));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The processes the listener started, as (pid, command line): the processes serving its
    /// connections and the commands they run, for tests that check what is left on the target.
    /// A process whose connection process has died is re-parented and no longer listed.
    pub fn descendants(&self) -> Vec<(u32, String)> {
        let Some(child) = &self.child else { return Vec::new() };
        descendant_pids(child.id())
            .into_iter()
            .filter_map(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ").trim_end().to_string()))
            })
            .collect()
    }

    /// Kills the listener, the processes serving its connections and the commands they run.
    ///
    /// Connection processes and the commands of sessions call `setsid`, so neither a killed
    /// listener nor a signal to its process group reaches them: they would keep their client's
    /// connection open (and a `sleep 600` would run on). They are found as the listener's
    /// descendants before the listener goes, since afterwards they are re-parented. A command
    /// that daemonised itself escapes. Errors are ignored: this runs from Drop, where a panic
    /// would abort the test binary.
    fn kill_server(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let connection_pids = descendant_pids(child.id());
        let _ = child.kill();
        let _ = child.wait();
        if !connection_pids.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(connection_pids.iter().map(u32::to_string)).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_server();
        // `dir` (TempDir) is dropped after this, deleting the directory.
    }
}

// === impl SshKeyPair ===

impl SshKeyPair {
    /// Makes a key pair with `ssh-keygen -t key_type` (no passphrase, comment `name`) as
    /// `<dir>/<name>` and `<dir>/<name>.pub`.
    ///
    /// `key_type` is as `ssh-keygen -t` takes it: `"ed25519"`, `"rsa"` (3072 bits) or `"ecdsa"`.
    ///
    /// # Panics
    ///
    /// Panics if `<dir>/<name>` exists already, or with ssh-keygen's output if it fails (e.g.
    /// an unknown key type).
    pub fn generate(dir: &Path, name: &str, key_type: &str) -> SshKeyPair {
        let private = dir.join(name);
        let public = dir.join(format!("{name}.pub"));
        // ssh-keygen would ask whether to overwrite, and fail on the closed stdin.
        assert!(!private.exists(), "SshKeyPair::generate: {} exists already; pick another name", private.display());
        util::run(
            Command::new("ssh-keygen").args(["-q", "-t", key_type, "-N", "", "-C", name, "-f"]).arg(&private).stdin(Stdio::null()),
            &format!("SshKeyPair::generate: ssh-keygen of a {key_type} key"),
            None,
        );
        // ssh-keygen makes it 0600 already; ssh refuses a key others can read, so make sure.
        fs::set_permissions(&private, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("SshKeyPair::generate: cannot chmod {}: {e}", private.display()));
        let public_line = fs::read_to_string(&public)
            .unwrap_or_else(|e| panic!("SshKeyPair::generate: cannot read {}: {e}", public.display()))
            .trim_end()
            .to_owned();
        let listing = util::run(Command::new("ssh-keygen").arg("-lf").arg(&public), "SshKeyPair::generate: ssh-keygen -l", None);
        // "<bits> SHA256:<hash> <comment> (<TYPE>)"
        let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
        let fingerprint = listing
            .split_whitespace()
            .nth(1)
            .filter(|f| f.starts_with("SHA256:"))
            .unwrap_or_else(|| panic!("SshKeyPair::generate: unexpected `ssh-keygen -lf` output {listing:?}"))
            .to_owned();
        SshKeyPair { private, public_line, fingerprint }
    }
}

/// Connects to `addr` and reads the first line the server sends (without the line end).
///
/// An SSH server speaks first (RFC 4253 section 4.2), so a banner proves that sshd both listens
/// and accepts; a mere successful connect would not, since the kernel completes handshakes on
/// the listen queue before sshd looks at them.
fn read_banner(addr: SocketAddr, deadline: Instant) -> io::Result<String> {
    let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let mut stream = TcpStream::connect_timeout(&addr, remaining)?;
    stream.set_read_timeout(Some(remaining))?;
    // The version line is at most 255 bytes including CR LF.
    let mut line = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !line.contains(&b'\n') && line.len() < 256 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a full line"));
        }
        line.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&line);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// The login name of the user running the tests, by `id -un` (which honours NSS sources).
fn current_user() -> String {
    let out = util::run(Command::new("id").arg("-un"), "Sshd: finding the current user", None);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Pids of all descendants of `ancestor` (children first), from one scan of `/proc/<pid>/stat`
/// (empty without procfs).
fn descendant_pids(ancestor: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    let parents: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so split
            // after the last ')'.
            let ppid: u32 = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![ancestor];
    while let Some(parent) = frontier.pop() {
        for &(pid, _) in parents.iter().filter(|&&(_, ppid)| ppid == parent) {
            found.push(pid);
            frontier.push(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_command_over_ssh() {
        let sshd = Sshd::start();
        let out = sshd.ssh_command().arg("echo hello").output().expect("run ssh");
        assert!(out.status.success(), "ssh failed: {}\n{}", String::from_utf8_lossy(&out.stderr), sshd.log_tail(40));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
        assert_eq!(sshd.run("whoami"), format!("{}\n", sshd.user()));
        assert_eq!(sshd.address(), format!("127.0.0.1:{}", sshd.port()));
        assert!(sshd.log_tail(200).contains("Accepted publickey for"), "log: {}", sshd.log_tail(40));
    }

    #[test]
    fn host_key_matches_what_the_server_presents() {
        let sshd = Sshd::start();
        let host_key = sshd.host_public_key();
        assert!(host_key.starts_with("ssh-ed25519 "), "{host_key}");
        assert!(sshd.host_key_fingerprint().starts_with("SHA256:"), "{}", sshd.host_key_fingerprint());

        let scan = util::run(
            Command::new("ssh-keyscan").args(["-p", &sshd.port().to_string(), "-t", "ed25519", "127.0.0.1"]),
            "ssh-keyscan",
            Some(&sshd.log_file),
        );
        let scan = String::from_utf8_lossy(&scan.stdout).into_owned();
        // "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
        let scanned: Vec<String> =
            scan.lines().filter(|l| !l.starts_with('#')).map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(scanned, vec![host_key], "ssh-keyscan printed {scan:?}");

        // The fingerprint is that of the key the server presents.
        let scan_file = sshd.dir().join("scanned_host_key");
        fs::write(&scan_file, &scan).unwrap();
        let listing = util::run(Command::new("ssh-keygen").arg("-lf").arg(&scan_file), "ssh-keygen -lf", None);
        let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
        assert_eq!(listing.split_whitespace().nth(1), Some(sshd.host_key_fingerprint().as_str()), "{listing}");
    }

    #[test]
    fn two_servers_run_at_once() {
        let a = Sshd::start();
        let b = Sshd::start();
        assert_ne!(a.port(), b.port());
        assert_ne!(a.host_public_key(), b.host_public_key());
        assert_eq!(a.run("echo a"), "a\n");
        assert_eq!(b.run("echo b"), "b\n");
    }

    #[test]
    fn rsa_client_key_and_unauthorized_keys() {
        let sshd = Sshd::start_with(SshdOptions { key_type: "rsa", ..SshdOptions::default() });
        assert!(sshd.client_public_key().starts_with("ssh-rsa "), "{}", sshd.client_public_key());
        let mode = fs::metadata(sshd.client_key()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(sshd.run("echo rsa"), "rsa\n");

        // A key that is not in authorized_keys is refused until it is authorized.
        let other = SshKeyPair::generate(sshd.dir(), "other", "ed25519");
        assert!(other.fingerprint.starts_with("SHA256:"), "{}", other.fingerprint);
        assert!(other.public_line.starts_with("ssh-ed25519 ") && other.public_line.ends_with(" other"), "{}", other.public_line);
        let with_other_key = || sshd.ssh_command_with_key(&other.private).arg("echo other").output().unwrap();
        let refused = with_other_key();
        assert!(!refused.status.success(), "an unauthorized key logged in: {}", String::from_utf8_lossy(&refused.stdout));
        sshd.authorize(&other.public_line);
        let accepted = with_other_key();
        assert!(accepted.status.success(), "{}\n{}", String::from_utf8_lossy(&accepted.stderr), sshd.log_tail(40));
        assert_eq!(String::from_utf8_lossy(&accepted.stdout), "other\n");
    }

    #[test]
    #[should_panic(expected = "the generated sshd_config is invalid")]
    fn a_bad_config_line_is_reported() {
        Sshd::start_with(SshdOptions { extra_config: vec!["NoSuchKeyword yes".to_owned()], ..SshdOptions::default() });
    }

    #[test]
    fn drop_stops_the_server_and_its_connections() {
        let sshd = Sshd::start();
        // A connection process that would outlive a killed listener. Its first line proves the
        // session is up (the readiness probe's connection process may still be around too).
        let mut session = sshd
            .ssh_command()
            .arg("echo started; exec sleep 600")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first_line = String::new();
        io::BufRead::read_line(&mut io::BufReader::new(session.stdout.as_mut().unwrap()), &mut first_line).unwrap();
        assert_eq!(first_line, "started\n", "session did not start: {}", sshd.log_tail(40));
        let listener_pid = sshd.child.as_ref().unwrap().id();
        // The shell prints its line before it execs `sleep`: poll (bounded) until it has.
        let is_sleep = |pid: &u32| fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with("sleep\0"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut connection_pids = descendant_pids(listener_pid);
        while !connection_pids.iter().any(is_sleep) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            connection_pids = descendant_pids(listener_pid);
        }
        assert!(connection_pids.iter().any(is_sleep), "the session's `sleep` is not among the listener's descendants {connection_pids:?}");
        let dir = sshd.dir().to_owned();
        drop(sshd);

        assert!(!dir.exists(), "{} was not deleted", dir.display());
        // SIGKILL takes effect asynchronously, so poll. A zombie counts as gone: it holds no
        // socket, and in a container nobody may reap it.
        let alive = |pid: u32| fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        for pid in std::iter::once(listener_pid).chain(connection_pids) {
            while alive(pid) {
                assert!(Instant::now() < deadline, "process {pid} survived the drop");
                std::thread::sleep(PROBE_INTERVAL);
            }
        }
        // The client sees its connection end instead of waiting for `sleep 600`.
        let status = session.wait().unwrap();
        assert!(!status.success());
    }
}

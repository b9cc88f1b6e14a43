//! Throw-away MariaDB servers for integration tests.
//!
//! The gateway speaks the MySQL wire protocol to MariaDB, and the parts worth testing (the
//! handshake, `mysql_native_password` and `ed25519` authentication, TLS upgrade mid-handshake)
//! are exactly those a mock would get wrong, so tests run against the real server from
//! MariaDB's Debian packages.
//!
//! [`MariaDb::start`] runs `mariadb-install-db` into a fresh temporary directory, starts
//! `mariadbd` in the foreground as our child on a free loopback port (with its socket, pid file
//! and error log in that directory, and `--no-defaults` so that no system `my.cnf` takes part),
//! waits until it answers, and sets up over its unix socket as `root`:
//!
//! | user           | password               | authentication          | may use          |
//! |----------------|------------------------|-------------------------|------------------|
//! | `native_user`  | [`NATIVE_PASSWORD`]    | `mysql_native_password` | all of `app`     |
//! | `ed25519_user` | [`ED25519_PASSWORD`]   | `ed25519` (see [`MariaDb::has_ed25519`]) | all of `app` |
//! | `admin_user`   | [`ADMIN_PASSWORD`]     | `mysql_native_password` | everything, with GRANT |
//!
//! Each is `'user'@'127.0.0.1'`, which is what a client connecting over TCP to 127.0.0.1 is
//! matched against (the server runs with `--skip-name-resolve`); `admin_user` also exists
//! `@'localhost'`, for [`MariaDb::sql`] over the socket.
//!
//! The database [`APP_DATABASE`] holds `customers (id, name, email, card)` with three rows whose
//! values a test can recognise in a result or look for in a masked one: Ada Lovelace
//! (`ada@example.com`, test Visa `4111111111111111`), Grace Hopper (`grace@example.com`, test
//! Mastercard `5555555555554444`) and Alan Turing (`alan@example.com`, test Amex
//! `378282246310005`).
//!
//! As root (typical in containers and CI) both `mariadb-install-db` and `mariadbd` get
//! `--user=root`: mariadbd refuses to run as root otherwise, and the temp dir (0700, ours) is
//! one no other user could enter anyway.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::util::{describe, file_tail, is_root, log_section, run, test_certificate, try_run, TestCertificate};

/// The database the test users may use, holding the `customers` table.
pub const APP_DATABASE: &str = "app";

/// A user that authenticates with `mysql_native_password` (SHA-1 scramble).
pub const NATIVE_USER: &str = "native_user";

/// Password of [`NATIVE_USER`].
pub const NATIVE_PASSWORD: &str = "native-secret";

/// A user that authenticates with the `ed25519` plugin; exists only when
/// [`MariaDb::has_ed25519`] says so.
pub const ED25519_USER: &str = "ed25519_user";

/// Password of [`ED25519_USER`].
pub const ED25519_PASSWORD: &str = "ed25519-secret";

/// A user with every privilege on everything (a `root` that may log in over TCP with a
/// password), authenticating with `mysql_native_password`.
pub const ADMIN_USER: &str = "admin_user";

/// Password of [`ADMIN_USER`].
pub const ADMIN_PASSWORD: &str = "admin-secret";

/// The server binary (Debian: package mariadb-server-core).
const MARIADBD: &str = "/usr/sbin/mariadbd";

/// How many times to start mariadbd with a fresh port when another process took the port
/// between [`free_port`] and the server's bind.
const PORT_ATTEMPTS: usize = 5;

/// How long mariadbd may take to accept connections. Generous: on a loaded 2-core CI machine
/// InnoDB's start alone can take seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long mariadbd may take to shut down after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Server options that make a disposable server start fast and small. Given to the bootstrap
/// server of mariadb-install-db too, so that the redo log it creates already has the size the
/// real server wants.
const FAST_OPTIONS: [&str; 6] = [
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    // Durability is pointless for throw-away data.
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--skip-log-bin",
    // Accounts are matched by IP (127.0.0.1), and no connection waits for a DNS lookup.
    "--skip-name-resolve",
];

/// A running, disposable MariaDB server.
///
/// It listens on `127.0.0.1:`[`port`](Self::port) and on the unix socket
/// [`socket`](Self::socket). Dropping the value stops the server (SIGTERM, then SIGKILL after
/// 20 s) and deletes its directory. Several instances may run at once.
#[derive(Debug)]
pub struct MariaDb {
    port: u16,
    socket: PathBuf,
    log_file: PathBuf,
    version: String,
    has_ed25519: bool,
    ca_cert: Option<PathBuf>,
    child: Child,
    /// Declared last so that it is dropped (directory deleted) after `Drop::drop` has stopped
    /// the server.
    dir: TempDir,
}

impl MariaDb {
    /// Starts a server without TLS, with the users, database and rows of the module docs.
    ///
    /// # Panics
    ///
    /// Panics with the failing command, its output and the end of the server's error log if any
    /// step (install, start, setup) fails; when MariaDB is not installed, says which package to
    /// install.
    pub fn start() -> MariaDb {
        MariaDb::start_with_tls(false)
    }

    /// Like [`MariaDb::start`], with TLS: a test CA and a server certificate it signed (names
    /// `localhost` and `127.0.0.1`) are made with openssl, and the server offers TLS with them.
    /// TLS stays optional for clients (`require_secure_transport` off), so plain and TLS
    /// connections can be tested against one server. The CA is [`MariaDb::ca_cert`].
    ///
    /// # Panics
    ///
    /// As [`MariaDb::start`], and when openssl fails.
    pub fn start_tls() -> MariaDb {
        MariaDb::start_with_tls(true)
    }

    fn start_with_tls(tls: bool) -> MariaDb {
        for program in ["/usr/bin/mariadb-install-db", MARIADBD, "/usr/bin/mariadb"] {
            assert!(
                Path::new(program).is_file(),
                "MariaDb: {program} is missing; install MariaDB's Debian packages (apt-get install mariadb-server mariadb-client)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("witness-mariadb-")
            .tempdir_in(temp_base())
            .unwrap_or_else(|e| panic!("MariaDb: cannot create a temp dir: {e}"));
        let data_dir = dir.path().join("data");
        let log_file = dir.path().join("error.log");
        let socket = dir.path().join("mariadb.sock");
        install_db(dir.path(), &data_dir);
        let tls_files = tls.then(|| test_certificate(dir.path(), "mariadb", "MariaDb"));

        let mut attempt = 0;
        let (port, child) = loop {
            attempt += 1;
            let port = free_port();
            let log_length_before = fs::metadata(&log_file).map(|m| m.len()).unwrap_or(0);
            let mut child = start_server(dir.path(), &data_dir, &socket, &log_file, port, tls_files.as_ref());
            let Err(status) = wait_until_ready(&mut child, &socket, &log_file) else { break (port, child) };
            let log = fs::read(&log_file).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default();
            let new_log = log.get(log_length_before as usize..).unwrap_or("");
            let port_taken = new_log.contains("Address already in use") || new_log.contains("Bind on TCP/IP port");
            if !(port_taken && attempt < PORT_ATTEMPTS) {
                panic!(
                    "MariaDb: mariadbd exited with {status} before it accepted connections (port {port}){}",
                    log_section(Some(&log_file))
                );
            }
            eprintln!("witness-testkit: port {port} was taken before MariaDB could bind it; retrying");
        };

        // From here on the value owns the server: if the setup panics, Drop stops it.
        let ca_cert = tls_files.map(|files| files.ca_cert);
        let mut server = MariaDb { port, socket, log_file, version: String::new(), has_ed25519: false, ca_cert, child, dir };
        server.has_ed25519 = server.install_ed25519();
        server.create_database_and_users();
        server.version = server.sql("SELECT VERSION()");
        server
    }

    /// Installs the ed25519 authentication plugin; false (with the reason on stderr) when this
    /// MariaDB has none, so that only the tests that need it are skipped.
    fn install_ed25519(&self) -> bool {
        match try_run(self.root_client().args(["-e", "INSTALL SONAME 'auth_ed25519'"])) {
            Ok(_) => true,
            Err(error) => {
                eprintln!("witness-testkit: MariaDB has no ed25519 authentication plugin, so {ED25519_USER} is missing: {error}");
                false
            }
        }
    }

    fn create_database_and_users(&self) {
        let password = |p: &str| format!("USING PASSWORD({})", sql_literal(p));
        let mut setup = format!(
            "CREATE DATABASE {APP_DATABASE};\n\
             CREATE TABLE {APP_DATABASE}.customers (id INT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), card VARCHAR(32));\n\
             INSERT INTO {APP_DATABASE}.customers VALUES\n\
             (1, 'Ada Lovelace', 'ada@example.com', '4111111111111111'),\n\
             (2, 'Grace Hopper', 'grace@example.com', '5555555555554444'),\n\
             (3, 'Alan Turing', 'alan@example.com', '378282246310005');\n\
             CREATE USER '{NATIVE_USER}'@'127.0.0.1' IDENTIFIED VIA mysql_native_password {native};\n\
             GRANT ALL PRIVILEGES ON {APP_DATABASE}.* TO '{NATIVE_USER}'@'127.0.0.1';\n",
            native = password(NATIVE_PASSWORD),
        );
        if self.has_ed25519 {
            setup += &format!(
                "CREATE USER '{ED25519_USER}'@'127.0.0.1' IDENTIFIED VIA ed25519 {ed25519};\n\
                 GRANT ALL PRIVILEGES ON {APP_DATABASE}.* TO '{ED25519_USER}'@'127.0.0.1';\n",
                ed25519 = password(ED25519_PASSWORD),
            );
        }
        for host in ["127.0.0.1", "localhost"] {
            setup += &format!(
                "CREATE USER '{ADMIN_USER}'@'{host}' IDENTIFIED VIA mysql_native_password {admin};\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{host}' WITH GRANT OPTION;\n",
                admin = password(ADMIN_PASSWORD),
            );
        }
        run(self.root_client().args(["-e", &setup]), "MariaDb: creating the database and users", Some(&self.log_file));
    }

    /// The `mariadb` client as `root` over the socket (no password: mariadb-install-db made
    /// root@localhost without one), for the setup that creates the other users.
    fn root_client(&self) -> Command {
        let mut command = client_command();
        command.arg("-S").arg(&self.socket).args(["-u", "root"]);
        command
    }

    /// The TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server's version as `SELECT VERSION()` says, e.g. `10.11.19-MariaDB-0+deb12u1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the `ed25519` authentication plugin was installed and [`ED25519_USER`] exists.
    pub fn has_ed25519(&self) -> bool {
        self.has_ed25519
    }

    /// The test CA (PEM) that signed the server's certificate, when started by
    /// [`MariaDb::start_tls`]: a client's `--ssl-ca` for verifying `localhost` or 127.0.0.1.
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// The server's temp directory, holding its data directory, socket, error log and (with
    /// TLS) certificates; deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `lines` lines of the server's error log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_file, lines)
    }

    /// The `mariadb` client logging in as `user` with `password` over TCP to this server, in
    /// [`APP_DATABASE`]: `mariadb --no-defaults -h 127.0.0.1 -P PORT -u USER -pPASSWORD app`, with
    /// no `MYSQL_*`/`MARIADB_*` variables in its environment. A test adds `-e SQL`, `-N -B`,
    /// `--ssl --ssl-ca CA`, ... (options after the database name are still options).
    pub fn mariadb(&self, user: &str, password: &str) -> Command {
        let mut command = client_command();
        command.args(["-h", "127.0.0.1", "-P", &self.port.to_string(), "-u", user, &format!("-p{password}"), APP_DATABASE]);
        command
    }

    /// Runs `sql` (one or more statements) as [`ADMIN_USER`] over the socket in
    /// [`APP_DATABASE`], in batch mode without column names (`-N -B`: rows separated by `\n`,
    /// columns by tabs), and returns what it printed without the final newline.
    ///
    /// # Panics
    ///
    /// Panics with the client's stderr and the end of the server's error log if a statement
    /// fails.
    pub fn sql(&self, sql: &str) -> String {
        let mut command = client_command();
        command.arg("-S").arg(&self.socket).args(["-u", ADMIN_USER, &format!("-p{ADMIN_PASSWORD}"), "-N", "-B", APP_DATABASE, "-e", sql]);
        let output = run(&mut command, "MariaDb::sql", Some(&self.log_file));
        String::from_utf8_lossy(&output.stdout).trim_end_matches('\n').to_owned()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // SIGTERM is mariadbd's orderly shutdown; errors are ignored, since the server may have
        // died already and a panic in Drop would abort the test binary.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // `dir` (TempDir) is dropped after this, deleting the data directory.
    }
}

/// Creates the system tables in `data_dir` with mariadb-install-db: root@localhost with no
/// password (`normal` authentication rather than unix-socket, so that root is root whoever runs
/// the tests) and no `test` database.
fn install_db(dir: &Path, data_dir: &Path) {
    let mut command = Command::new("/usr/bin/mariadb-install-db");
    // --no-defaults must come first, as for every MariaDB program.
    command.arg("--no-defaults").arg(format!("--datadir={}", data_dir.display()));
    command.args(["--auth-root-authentication-method=normal", "--skip-test-db"]).args(FAST_OPTIONS);
    // Its temporary tables in the server's own dir: in /tmp, bootstraps of servers started at
    // once by parallel tests collided on their names (`#sql-temptable-…`) and failed.
    command.arg(format!("--tmpdir={}", dir.display()));
    if is_root() {
        command.arg("--user=root");
    }
    scrub_client_env(&mut command).current_dir(dir);
    run(&mut command, "MariaDb: mariadb-install-db", None);
}

/// Starts mariadbd in the foreground as our child. Its stderr goes to the error log too, so
/// that what it says before it opens the log (a bad option, say) is not lost.
fn start_server(dir: &Path, data_dir: &Path, socket: &Path, log_file: &Path, port: u16, tls: Option<&TestCertificate>) -> Child {
    let mut command = Command::new(MARIADBD);
    command.arg("--no-defaults");
    command.arg(format!("--datadir={}", data_dir.display()));
    command.arg(format!("--socket={}", socket.display()));
    command.arg(format!("--port={port}")).args(["--bind-address=127.0.0.1", "--skip-networking=0"]);
    command.arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()));
    command.arg(format!("--log-error={}", log_file.display()));
    command.arg(format!("--tmpdir={}", dir.display()));
    command.args(FAST_OPTIONS).arg("--max-connections=200");
    if is_root() {
        command.arg("--user=root");
    }
    if let Some(tls) = tls {
        command.arg(format!("--ssl-ca={}", tls.ca_cert.display()));
        command.arg(format!("--ssl-cert={}", tls.cert.display()));
        command.arg(format!("--ssl-key={}", tls.key.display()));
        command.arg("--require-secure-transport=OFF");
    }
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(log_file)
        .unwrap_or_else(|e| panic!("MariaDb: cannot open {}: {e}", log_file.display()));
    scrub_client_env(&mut command).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    command.spawn().unwrap_or_else(|e| panic!("MariaDb: cannot start `{}`: {e}", describe(&command)))
}

/// Polls `SELECT 1` over the socket until the server answers: Ok then, Err with the exit status
/// when mariadbd exits first. Panics, after killing it, when it neither answers nor exits within
/// [`READY_TIMEOUT`], so that no server is left behind.
fn wait_until_ready(child: &mut Child, socket: &Path, log_file: &Path) -> Result<(), std::process::ExitStatus> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status);
        }
        // The socket is created after the TCP port is bound, so an answer there means both work.
        if socket.exists() {
            let mut probe = client_command();
            probe.arg("-S").arg(socket).args(["-u", "root", "--connect-timeout=2", "-e", "SELECT 1"]);
            if probe.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|status| status.success()) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("MariaDb: mariadbd did not accept connections within {READY_TIMEOUT:?}{}", log_section(Some(log_file)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `mariadb` client with `--no-defaults` (no `~/.my.cnf` or `/etc/mysql/my.cnf`, whose
/// `[client]` socket or user would point it elsewhere) and a clean environment.
fn client_command() -> Command {
    let mut command = Command::new("/usr/bin/mariadb");
    scrub_client_env(&mut command).arg("--no-defaults");
    command
}

/// Removes the variables the MariaDB client and server read (`MYSQL_HOST`, `MYSQL_TCP_PORT`,
/// `MYSQL_UNIX_PORT`, `MYSQL_PWD`, ...) from a command's environment: a developer's shell or a
/// CI image may set them, which would silently point our commands at some other server.
fn scrub_client_env(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("MYSQL") || key_text.starts_with("MARIADB") {
            command.env_remove(&key);
        }
    }
    command
}

/// Directory to create server temp dirs in: the system temp dir, unless its path is so long
/// that `<dir>/witness-mariadb-XXXXXX/mariadb.sock` would pass the ~107-byte limit of a unix
/// socket's path; then `/tmp`.
fn temp_base() -> PathBuf {
    let base = std::env::temp_dir();
    if base.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

/// Quotes a string as an SQL literal (MariaDB's default sql_mode treats backslash as an
/// escape, so it is doubled too).
fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::{MariaDb, ADMIN_PASSWORD, ADMIN_USER, ED25519_PASSWORD, ED25519_USER, NATIVE_PASSWORD, NATIVE_USER};
    use std::path::Path;
    use std::time::Instant;

    /// Runs the `mariadb` client as `user` with `extra` arguments and returns its stdout,
    /// failing the test with its stderr and the server's log when it fails.
    fn query_as(server: &MariaDb, user: &str, password: &str, extra: &[&str]) -> String {
        let output = server.mariadb(user, password).args(["-N", "-B"]).args(extra).output().expect("the mariadb client runs");
        assert!(
            output.status.success(),
            "{user} could not run {extra:?}: {}\n--- server log ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            server.log_tail(20)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Command lines of the running mariadbd processes that name `dir`.
    fn servers_in(dir: &Path) -> Vec<String> {
        let dir = dir.to_string_lossy();
        std::fs::read_dir("/proc")
            .expect("/proc is readable")
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
            .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
            // The program, not an argument: a client's socket path names the dir too.
            .filter(|cmdline| cmdline.split(' ').next().is_some_and(|program| program.ends_with("mariadbd")) && cmdline.contains(&*dir))
            .collect()
    }

    #[test]
    fn users_log_in_over_tcp_and_read_the_customers() {
        let started = Instant::now();
        let server = MariaDb::start();
        eprintln!("MariaDB {} started in {:?}; ed25519: {}", server.version(), started.elapsed(), server.has_ed25519());
        assert!(server.version().contains("MariaDB"), "version {:?} does not mention MariaDB", server.version());

        let mut users = vec![(NATIVE_USER, NATIVE_PASSWORD), (ADMIN_USER, ADMIN_PASSWORD)];
        if server.has_ed25519() {
            users.push((ED25519_USER, ED25519_PASSWORD));
        }
        for (user, password) in users {
            let rows = query_as(&server, user, password, &["-e", "SELECT id, name, email, card FROM customers ORDER BY id"]);
            assert_eq!(rows.lines().count(), 3, "{user} read {rows:?}");
            assert!(rows.contains("ada@example.com") && rows.contains("4111111111111111"), "{user} read {rows:?}");
            // Over TCP from 127.0.0.1, as the account it was created as.
            let account = query_as(&server, user, password, &["-e", "SELECT CURRENT_USER()"]);
            assert_eq!(account.trim(), format!("{user}@127.0.0.1"));
        }
        if server.has_ed25519() {
            let plugin = server.sql(&format!("SELECT plugin FROM mysql.user WHERE user = '{ED25519_USER}'"));
            assert_eq!(plugin, "ed25519");
        }

        let wrong = server.mariadb(NATIVE_USER, "wrong").args(["-e", "SELECT 1"]).output().unwrap();
        assert!(!wrong.status.success(), "a wrong password was let in");
        assert_eq!(server.sql("SELECT COUNT(*) FROM customers"), "3");
    }

    #[test]
    fn tls_mode_offers_a_certificate_signed_by_the_test_ca() {
        let started = Instant::now();
        let server = MariaDb::start_tls();
        eprintln!("MariaDB with TLS started in {:?}", started.elapsed());
        let ca = server.ca_cert().expect("a TLS server has a CA").to_str().unwrap().to_owned();
        let status = query_as(
            &server,
            NATIVE_USER,
            NATIVE_PASSWORD,
            &["--ssl", "--ssl-ca", &ca, "--ssl-verify-server-cert", "-e", "SHOW STATUS LIKE 'Ssl_cipher'"],
        );
        let cipher = status.split_whitespace().nth(1).unwrap_or("");
        assert!(!cipher.is_empty(), "no TLS cipher: {status:?}");
        eprintln!("TLS cipher: {cipher}");
        // TLS is offered, not required.
        let plain = query_as(&server, NATIVE_USER, NATIVE_PASSWORD, &["--skip-ssl", "-e", "SHOW STATUS LIKE 'Ssl_cipher'"]);
        assert_eq!(plain.split_whitespace().nth(1), None, "a plain connection has a cipher: {plain:?}");
    }

    #[test]
    fn drop_stops_the_server_and_removes_its_directory() {
        let server = MariaDb::start();
        let dir = server.dir().to_owned();
        assert_eq!(servers_in(&dir).len(), 1, "one mariadbd runs from {}", dir.display());
        let started = Instant::now();
        drop(server);
        eprintln!("MariaDB stopped in {:?}", started.elapsed());
        assert_eq!(servers_in(&dir), Vec::<String>::new(), "mariadbd still runs after drop");
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

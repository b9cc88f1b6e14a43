//! Throw-away PostgreSQL clusters for integration tests.
//!
//! [`Postgres::start`] runs `initdb` in a fresh temporary directory, configures
//! the cluster for speed (no fsync: the data is disposable) and for the
//! authentication matrix the gateway must handle, starts it with
//! `pg_ctl -w` (which only returns once the server accepts connections) and
//! creates the well-known test roles:
//!
//! | role         | password              | TCP auth (pg_hba)   |
//! |--------------|-----------------------|---------------------|
//! | `postgres`   | [`SUPERUSER_PASSWORD`]| scram-sha-256       |
//! | `trust_user` | none                  | trust               |
//! | `md5_user`   | [`MD5_PASSWORD`]      | md5 (md5 hash)      |
//! | `scram_user` | [`SCRAM_PASSWORD`]    | scram-sha-256       |
//! | `cleartext_user` | [`CLEARTEXT_PASSWORD`] | password (cleartext) |
//!
//! All roles are superusers so tests can create tables and use COPY without
//! GRANT boilerplate. A database `app` owned by `postgres` is created too.
//! Unix-socket connections are `trust` for everyone; the harness uses them
//! for its own administration ([`Postgres::psql`]).
//!
//! initdb and postgres refuse to run as root. When the test process is root
//! (typical in containers and CI) the server-side commands are run as the
//! `postgres` system user via `runuser`, and the temp directory is chowned to
//! it. As an ordinary user they run directly.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tempfile::TempDir;

use crate::free_port;
use crate::util::{chown_recursive, file_tail, is_root, log_section, run, scrub_pg_env, try_run, user_ids};

/// Password of the `postgres` superuser (used for TCP connections; the unix
/// socket is trust).
pub const SUPERUSER_PASSWORD: &str = "witness-super-secret";

/// Password of `md5_user`, stored as an md5 hash and checked with the `md5`
/// pg_hba method.
pub const MD5_PASSWORD: &str = "md5-secret";

/// Password of `scram_user`, stored as a SCRAM-SHA-256 verifier.
pub const SCRAM_PASSWORD: &str = "scram-secret";

/// Password of `cleartext_user`, which pg_hba asks for in cleartext (the `password` method).
pub const CLEARTEXT_PASSWORD: &str = "cleartext-secret";

/// The OS user that owns and runs the cluster when the tests run as root.
const PG_OS_USER: &str = "postgres";

/// How many times to retry `pg_ctl start` with a fresh port when another
/// process grabbed the port between [`free_port`] and the server's bind.
const PORT_ATTEMPTS: usize = 5;

/// Options for [`Postgres::start_with`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Enable TLS (`ssl=on`) with a freshly generated self-signed certificate
    /// for `CN=localhost` (SAN `localhost`, `127.0.0.1`). Default: `true`.
    pub tls: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions { tls: true }
    }
}

/// A running, disposable PostgreSQL server.
///
/// The server listens on `127.0.0.1:`[`port`](Self::port) and on a unix
/// socket in [`socket_dir`](Self::socket_dir). Dropping the value stops the
/// server (`pg_ctl stop -m immediate`) and deletes its directory.
///
/// Several instances may run at once; each has its own port and directory.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    tls: bool,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    /// Declared last so it is dropped (directory deleted) after `Drop::drop`
    /// has stopped the server.
    root: TempDir,
}

impl Postgres {
    /// Starts a server with default options (TLS on).
    ///
    /// # Panics
    ///
    /// Panics with the failing command, its output and the server log tail if
    /// any step (initdb, certificate generation, start, role creation) fails.
    pub fn start() -> Postgres {
        Postgres::start_with(PostgresOptions::default())
    }

    /// Starts a server with the given options.
    ///
    /// # Panics
    ///
    /// As [`Postgres::start`].
    pub fn start_with(options: PostgresOptions) -> Postgres {
        let root = tempfile::Builder::new()
            .prefix("witness-pg-")
            .tempdir_in(temp_base())
            .unwrap_or_else(|e| panic!("Postgres: cannot create temp dir: {e}"));
        let data_dir = root.path().join("data");
        let socket_dir = root.path().join("sock");
        let log_file = root.path().join("postgres.log");
        let pwfile = root.path().join("pwfile");

        fs::create_dir(&socket_dir).unwrap_or_else(|e| panic!("Postgres: cannot create {}: {e}", socket_dir.display()));
        fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n"))
            .unwrap_or_else(|e| panic!("Postgres: cannot write {}: {e}", pwfile.display()));
        // The temp dir is created 0700 by us; the server user must own it.
        let owner = is_root().then(|| user_ids(PG_OS_USER));
        if let Some((uid, gid)) = owner {
            chown_recursive(root.path(), uid, gid)
                .unwrap_or_else(|e| panic!("Postgres: cannot chown {} to {PG_OS_USER}: {e}", root.path().display()));
        }

        run(
            server_command("initdb", root.path())
                .arg("-D")
                .arg(&data_dir)
                .args(["-U", "postgres", "--auth=scram-sha-256", "--pwfile"])
                .arg(&pwfile)
                .args(["--encoding=UTF8", "--locale=C", "--no-sync"]),
            "Postgres: initdb",
            None,
        );
        // The password is in the catalog now; the file has no further use.
        let _ = fs::remove_file(&pwfile);

        if options.tls {
            generate_certificate(&data_dir, owner);
        }
        write_hba(&data_dir);
        append_config(
            &data_dir,
            &format!(
                "\n# --- witness-testkit: disposable test cluster ---\n\
                 listen_addresses = '127.0.0.1'\n\
                 unix_socket_directories = {socket}\n\
                 # Durability is pointless for throw-away data; skipping it makes tests fast.\n\
                 fsync = off\n\
                 synchronous_commit = off\n\
                 full_page_writes = off\n\
                 max_connections = 200\n\
                 # stderr goes to the file given to `pg_ctl -l`, read by log_tail().\n\
                 log_destination = 'stderr'\n\
                 logging_collector = off\n\
                 log_connections = on\n\
                 ssl = {ssl}\n",
                socket = sql_literal(&socket_dir.to_string_lossy()),
                ssl = if options.tls { "on" } else { "off" },
            ),
        );

        // From here on the value owns the directory: if anything below
        // panics, Drop stops whatever was started and cleans up.
        let mut pg = Postgres { port: 0, tls: options.tls, data_dir, socket_dir, log_file, root };
        pg.start_server();
        pg.create_roles();
        pg
    }

    /// Runs `pg_ctl start`, retrying with a new port if the chosen one was
    /// taken in the meantime (the [`free_port`] race).
    fn start_server(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port();
            // Later settings override earlier ones, so a retry just appends.
            append_config(&self.data_dir, &format!("port = {}\n", self.port));
            let log_len_before = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            let result = try_run(
                server_command("pg_ctl", self.root.path())
                    .arg("-D")
                    .arg(&self.data_dir)
                    .arg("-l")
                    .arg(&self.log_file)
                    .args(["-w", "-t", "60", "start"]),
            );
            let Err(error) = result else { return };
            let new_log = fs::read(&self.log_file).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let new_log = new_log.get(log_len_before as usize..).unwrap_or("");
            let port_taken = new_log.contains("Address already in use") || new_log.contains("could not create any TCP/IP sockets");
            if !(port_taken && attempt < PORT_ATTEMPTS) {
                panic!(
                    "Postgres: pg_ctl start failed (attempt {attempt}, port {}): {error}{}",
                    self.port,
                    log_section(Some(&self.log_file))
                );
            }
            eprintln!("witness-testkit: port {} was taken before PostgreSQL could bind it; retrying", self.port);
        }
    }

    fn create_roles(&self) {
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE trust_user LOGIN SUPERUSER;\n\
                 SET password_encryption = 'md5';\n\
                 CREATE ROLE md5_user LOGIN SUPERUSER PASSWORD {md5};\n\
                 SET password_encryption = 'scram-sha-256';\n\
                 CREATE ROLE scram_user LOGIN SUPERUSER PASSWORD {scram};\n\
                 CREATE ROLE cleartext_user LOGIN SUPERUSER PASSWORD {cleartext};",
                md5 = sql_literal(MD5_PASSWORD),
                scram = sql_literal(SCRAM_PASSWORD),
                cleartext = sql_literal(CLEARTEXT_PASSWORD),
            ),
        );
        // CREATE DATABASE cannot run inside the implicit transaction of a
        // multi-statement -c string, hence a separate call.
        self.psql("postgres", "CREATE DATABASE app OWNER postgres");
    }

    /// TCP port the server listens on (on [`host`](Self::host)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host the server listens on: always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// Whether the server was started with `ssl = on`.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Path of the test CA that signed the server's certificate (a client's
    /// root certificate for `sslmode=verify-full` against `localhost` or
    /// 127.0.0.1), or `None` when TLS is off.
    pub fn server_cert(&self) -> Option<PathBuf> {
        self.tls.then(|| self.data_dir.join("root.crt"))
    }

    /// Directory holding the server's unix socket (`.s.PGSQL.<port>`); pass
    /// it as the `host` of a libpq connection.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The last `n_lines` lines of the server log, for assertion messages.
    pub fn log_tail(&self, n_lines: usize) -> String {
        file_tail(&self.log_file, n_lines)
    }

    /// A libpq URL for the `postgres` superuser over TCP (scram-sha-256):
    /// `postgresql://postgres:<SUPERUSER_PASSWORD>@127.0.0.1:<port>/<db>`.
    pub fn superuser_url(&self, db: &str) -> String {
        format!("postgresql://postgres:{SUPERUSER_PASSWORD}@{}:{}/{db}", self.host(), self.port)
    }

    /// Runs `sql` with `psql` as `postgres` over the unix socket (trust) in
    /// database `db` and returns its unaligned, tuples-only output with the
    /// trailing newline removed (rows separated by `\n`, columns by `|`).
    ///
    /// `-v ON_ERROR_STOP=1` makes the first failing statement fail the call.
    ///
    /// # Panics
    ///
    /// Panics with psql's stderr and the server log tail if psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(pg_bin("psql"));
        scrub_pg_env(&mut cmd)
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-At", "-c", sql]);
        let out = run(&mut cmd, &format!("Postgres::psql on db {db:?}"), Some(&self.log_file));
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate mode: the data is thrown away, so skip the shutdown
        // checkpoint. Errors are ignored: the server may never have started,
        // and panicking in Drop would abort the test binary.
        let _ = server_command("pg_ctl", self.root.path()).arg("-D").arg(&self.data_dir).args(["stop", "-m", "immediate", "-w"]).output();
        // `root` (TempDir) is dropped after this, deleting the directory.
    }
}

/// Path of a PostgreSQL client or server program (`"psql"`, `"pgbench"`,
/// `"pg_dump"`, ...).
///
/// Programs are taken from the PostgreSQL bin directory, found as follows:
/// the `WITNESS_PG_BINDIR` environment variable if set; else
/// `pg_config --bindir` if it contains `initdb`; else the highest-versioned
/// `/usr/lib/postgresql/*/bin` (Debian/Ubuntu layout). If none is found, or
/// the program is missing there, the bare name is returned so that `PATH`
/// lookup applies.
pub fn pg_bin(name: &str) -> PathBuf {
    match bin_dir() {
        Some(dir) if dir.join(name).is_file() => dir.join(name),
        _ => PathBuf::from(name),
    }
}

fn bin_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(find_bin_dir).as_deref()
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WITNESS_PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    // On Debian, /usr/bin/pg_config (libpq-dev) reports the server bin dir;
    // elsewhere pg_config may belong to a client-only install, so check.
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").is_file() {
                return Some(dir);
            }
        }
    }
    // Debian/Ubuntu install server binaries off PATH, one dir per major
    // version; pick the newest. Compare numerically so 10 > 9.
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for entry in fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let bin = entry.path().join("bin");
        if !bin.join("initdb").is_file() {
            continue;
        }
        let version: Vec<u64> = entry.file_name().to_string_lossy().split('.').map(|part| part.parse().unwrap_or(0)).collect();
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

/// A command for a server-side program (initdb, pg_ctl), run as the
/// `postgres` OS user when we are root.
///
/// The working directory is set to `cwd` (our temp dir): runuser keeps the
/// caller's cwd, and initdb/pg_ctl fail if the server user cannot access it
/// (e.g. a checkout under /root).
fn server_command(program: &str, cwd: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", PG_OS_USER, "--"]).arg(pg_bin(program));
        cmd
    } else {
        Command::new(pg_bin(program))
    };
    scrub_pg_env(&mut cmd).current_dir(cwd);
    cmd
}

/// Directory to create cluster temp dirs in.
///
/// Normally the system temp dir, but `/tmp` is used instead when (a) the path
/// is so long that `<dir>/witness-pg-XXXXXX/sock/.s.PGSQL.NNNNN` would exceed
/// the ~107-byte unix socket path limit, or (b) we are root and the `postgres`
/// user could not traverse it (e.g. TMPDIR under /root).
fn temp_base() -> PathBuf {
    let base = std::env::temp_dir();
    let too_long = base.as_os_str().len() > 60;
    let untraversable =
        is_root() && base.ancestors().any(|dir| fs::metadata(dir).map(|m| m.permissions().mode() & 0o001 == 0).unwrap_or(true));
    if too_long || untraversable {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

/// Generates a test CA (`root.crt`) and a server certificate it signed (`server.crt`/`server.key`,
/// with names localhost and 127.0.0.1) in the data dir. A separate CA matters: verifiers such as
/// webpki refuse a self-signed CA certificate used as the server's own. PostgreSQL refuses a key
/// file readable by others, so it is made 0600 and owned by the server user.
fn generate_certificate(data_dir: &Path, owner: Option<(u32, u32)>) {
    let ca_key = data_dir.join("root.key");
    let ca_crt = data_dir.join("root.crt");
    let key = data_dir.join("server.key");
    let csr = data_dir.join("server.csr");
    let crt = data_dir.join("server.crt");
    let ext = data_dir.join("server.ext");
    fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap_or_else(|e| panic!("Postgres: cannot write {}: {e}", ext.display()));
    run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650"])
            .args(["-subj", "/CN=witness-test-ca"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_crt),
        "Postgres: openssl CA generation",
        None,
    );
    run(
        Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        "Postgres: openssl server key generation",
        None,
    );
    run(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "3650", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_crt)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&crt),
        "Postgres: openssl server certificate signing",
        None,
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("Postgres: cannot chmod {}: {e}", key.display()));
    if let Some((uid, gid)) = owner {
        for path in [&key, &crt, &ca_crt] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("Postgres: cannot chown {} to {PG_OS_USER}: {e}", path.display()));
        }
    }
}

/// Replaces pg_hba.conf with the test authentication matrix. Writing to the
/// existing file keeps its ownership (the server user).
fn write_hba(data_dir: &Path) {
    let hba = data_dir.join("pg_hba.conf");
    let contents = "\
# witness-testkit: test authentication matrix (first match wins).
local all all                        trust
host  all trust_user 127.0.0.1/32    trust
host  all md5_user   127.0.0.1/32    md5
host  all cleartext_user 127.0.0.1/32 password
host  all all        127.0.0.1/32    scram-sha-256
";
    fs::write(&hba, contents).unwrap_or_else(|e| panic!("Postgres: cannot write {}: {e}", hba.display()));
}

fn append_config(data_dir: &Path, text: &str) {
    let conf = data_dir.join("postgresql.conf");
    OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("Postgres: cannot append to {}: {e}", conf.display()));
}

/// Quotes a string as an SQL / postgresql.conf literal.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

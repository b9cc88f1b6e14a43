//! Integration tests for the PostgreSQL harness: the server really starts,
//! and each role authenticates over TCP with the method pg_hba assigns it,
//! checked with the real `psql` client (not our own protocol code, which is
//! what the harness exists to test).

use std::net::TcpStream;
use std::process::Command;
use std::thread;

use witness_testkit::{pg_bin, Postgres, PostgresOptions, Python, MD5_PASSWORD, SCRAM_PASSWORD};

/// Runs `psql` over TCP with an explicit libpq conninfo string.
///
/// Returns trimmed stdout, or stderr on failure. `PG*` variables from the
/// caller's environment are removed so they cannot redirect the connection.
fn tcp_psql(pg: &Postgres, user: &str, password: Option<&str>, sslmode: &str, db: &str, sql: &str) -> Result<String, String> {
    let conninfo = format!("host={} port={} user={user} dbname={db} sslmode={sslmode} connect_timeout=10", pg.host(), pg.port());
    run_psql(&conninfo, password, sql)
}

fn run_psql(conninfo: &str, password: Option<&str>, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(pg_bin("psql"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    // -w: never prompt for a password (would hang a test on a terminal).
    let out = cmd.args(["-X", "-w", "-At", "-c", sql, conninfo]).output().expect("spawn psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const WHO_AND_TLS: &str = "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()";

#[test]
fn roles_authenticate_with_their_pg_hba_method() {
    let pg = Postgres::start();
    let ctx = || format!("\n--- server log ---\n{}", pg.log_tail(30));

    assert_eq!(pg.psql("postgres", "select 1"), "1");
    assert_eq!(pg.psql("app", "select current_database()"), "app");
    assert!(pg.tls());
    assert!(pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port())).exists());
    assert!(pg.data_dir().join("PG_VERSION").is_file());

    // The stored hashes must be of the intended kind, otherwise the "md5"
    // pg_hba line would silently run SCRAM (PostgreSQL upgrades md5 to SCRAM
    // when the stored secret is a SCRAM verifier).
    assert_eq!(
        pg.psql(
            "postgres",
            "select rolname, rolpassword like 'md5%', rolpassword like 'SCRAM-SHA-256$%' \
             from pg_authid where rolname in ('md5_user', 'scram_user') order by rolname"
        ),
        "md5_user|t|f\nscram_user|f|t",
        "{}",
        ctx()
    );

    let scram = tcp_psql(&pg, "scram_user", Some(SCRAM_PASSWORD), "require", "app", WHO_AND_TLS);
    assert_eq!(scram.as_deref(), Ok("scram_user|t"), "{}", ctx());

    let md5 = tcp_psql(&pg, "md5_user", Some(MD5_PASSWORD), "disable", "app", WHO_AND_TLS);
    assert_eq!(md5.as_deref(), Ok("md5_user|f"), "{}", ctx());

    let trust = tcp_psql(&pg, "trust_user", None, "prefer", "app", WHO_AND_TLS);
    assert_eq!(trust.as_deref(), Ok("trust_user|t"), "{}", ctx());

    let wrong = tcp_psql(&pg, "scram_user", Some("not-the-password"), "require", "app", "select 1");
    let err = wrong.expect_err("wrong SCRAM password must be rejected");
    assert!(err.contains("password authentication failed"), "{err}");

    let no_password = tcp_psql(&pg, "md5_user", None, "disable", "app", "select 1");
    assert!(no_password.is_err(), "md5_user must need a password");

    // The superuser URL works as-is with libpq (scram-sha-256 over TCP).
    let url = run_psql(&pg.superuser_url("app"), None, "select current_user");
    assert_eq!(url.as_deref(), Ok("postgres"), "{}", ctx());

    // verify-full against the generated certificate: CN/SAN are right.
    let cert = pg.server_cert().expect("TLS is on");
    let conninfo =
        format!("host=localhost port={} user=scram_user dbname=app sslmode=verify-full sslrootcert={}", pg.port(), cert.display());
    let verified = run_psql(&conninfo, Some(SCRAM_PASSWORD), WHO_AND_TLS);
    assert_eq!(verified.as_deref(), Ok("scram_user|t"), "{}", ctx());

    // ON_ERROR_STOP: a failing statement makes psql() panic with the error.
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pg.psql("app", "select * from no_such_table")))
        .expect_err("psql must panic on SQL errors");
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("no_such_table"), "{msg}");
    assert!(msg.contains("last 40 lines of"), "panic should carry the log tail: {msg}");
}

#[test]
fn parallel_instances_are_independent_and_cleaned_up() {
    let with_tls = thread::spawn(Postgres::start);
    let without_tls = thread::spawn(|| Postgres::start_with(PostgresOptions { tls: false }));
    let a = with_tls.join().expect("TLS instance failed to start");
    let b = without_tls.join().expect("plain instance failed to start");

    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    assert_ne!(a.socket_dir(), b.socket_dir());

    // Each instance has its own state.
    a.psql("app", "create table only_in_a (x int)");
    assert_eq!(b.psql("app", "select count(*) from pg_class where relname = 'only_in_a'"), "0");

    // TLS off: requiring TLS fails, plain works.
    assert!(!b.tls() && b.server_cert().is_none());
    let required = tcp_psql(&b, "scram_user", Some(SCRAM_PASSWORD), "require", "app", "select 1");
    assert!(required.is_err(), "sslmode=require must fail without TLS");
    let plain = tcp_psql(&b, "scram_user", Some(SCRAM_PASSWORD), "disable", "app", WHO_AND_TLS);
    assert_eq!(plain.as_deref(), Ok("scram_user|f"), "{}", b.log_tail(30));

    // Drop stops the server and removes its directory.
    let (port, root) = (b.port(), b.data_dir().parent().unwrap().to_owned());
    drop(b);
    assert!(!root.exists(), "{} should be removed on drop", root.display());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} should be closed after drop");
    assert_eq!(a.psql("app", "select 1"), "1");
}

#[test]
fn python_venv_without_packages() {
    let python = Python::ensure_venv(&[]);
    let out = Command::new(&python).args(["-c", "import sys; print(sys.prefix != sys.base_prefix)"]).output().expect("run venv python");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True");
}

/// Installs psycopg from PyPI on first run (the venv is cached after that); the
/// PostgreSQL driver tests of witness need it anyway.
#[test]
fn python_psycopg_connects_with_scram() {
    let python = Python::ensure_venv(&["psycopg[binary]"]);
    let pg = Postgres::start();
    let script = "\
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    print(conn.execute('select current_user').fetchone()[0])
";
    let conninfo = format!("host=127.0.0.1 port={} user=scram_user password={SCRAM_PASSWORD} dbname=app sslmode=require", pg.port());
    let out = Command::new(&python).args(["-c", script, &conninfo]).output().expect("run python");
    assert!(out.status.success(), "psycopg failed: {}\n--- server log ---\n{}", String::from_utf8_lossy(&out.stderr), pg.log_tail(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "scram_user");
}

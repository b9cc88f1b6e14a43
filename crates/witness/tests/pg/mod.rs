//! A witness gateway for tests: a config pointing at an ephemeral PostgreSQL, `witness serve`
//! started as a child process, tokens made with the real CLI, and helpers to read the recording.
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use witness_testkit::{free_port, Postgres, MD5_PASSWORD, SCRAM_PASSWORD};

pub mod wire;

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config: PathBuf,
    /// The umask witness and its commands run under, when the test sets one.
    umask: Option<String>,
    child: Child,
}

impl Gateway {
    /// Starts witness in front of `pg` with connections:
    /// app (scram_user, tls require), app-md5 (md5_user, password_file, tls disable, md5 allowed),
    /// app-trust (trust_user), app-verify (scram_user, verify-full), down (nothing listens).
    pub fn start(pg: &Postgres, extra_toml: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let md5_file = dir.path().join("md5-password");
        std::fs::write(&md5_file, format!("{MD5_PASSWORD}\n")).unwrap();
        let cert = pg.server_cert().expect("the test PostgreSQL has TLS");
        let address = format!("127.0.0.1:{}", pg.port());
        let config = format!(
            r#"data_dir = "{data}"
[listen]
postgres = "127.0.0.1:{port}"
{extra_toml}
[[connections]]
name = "app"
protocol = "postgres"
address = "{address}"
database = "app"
user = "scram_user"
password_env = "WITNESS_TEST_PG_PASSWORD"
tls = "require"

[[connections]]
name = "app-md5"
protocol = "postgres"
address = "{address}"
database = "app"
user = "md5_user"
password_file = "{md5}"
tls = "disable"
auth = ["scram-sha-256", "md5"]

[[connections]]
name = "app-trust"
protocol = "postgres"
address = "{address}"
database = "app"
user = "trust_user"

[[connections]]
name = "app-verify"
protocol = "postgres"
address = "localhost:{pg_port}"
database = "app"
user = "scram_user"
password_env = "WITNESS_TEST_PG_PASSWORD"
tls = "verify-full"
ca_file = "{cert}"

[[connections]]
name = "down"
protocol = "postgres"
address = "127.0.0.1:{down}"
"#,
            data = dir.path().join("data").display(),
            md5 = md5_file.display(),
            cert = cert.display(),
            pg_port = pg.port(),
            down = free_port(),
        );
        Gateway::launch(dir, port, &config, &[("WITNESS_TEST_PG_PASSWORD", SCRAM_PASSWORD)])
    }

    /// Starts `witness serve` on a config written into `dir` (whose data_dir should be
    /// `dir/data`), with `env` set; returns once witness says it runs. `port` is the listener
    /// tests mostly connect to.
    pub fn launch(dir: tempfile::TempDir, port: u16, config: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::launch_with_umask(dir, port, config, env, None)
    }

    /// [`Gateway::launch`] with witness, and every command run through [`Gateway::witness`],
    /// started under `umask` (e.g. "000"), as a careless shell or service manager might.
    pub fn launch_with_umask(dir: tempfile::TempDir, port: u16, config: &str, env: &[(&str, &str)], umask: Option<&str>) -> Gateway {
        let config_path = dir.path().join("witness.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = witness_command(umask)
            .args(["serve", "--config", config_path.to_str().unwrap()])
            .envs(env.iter().copied())
            .env("WITNESS_LOG", "info")
            // The banner is for people; tests read the log.
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read the log on a thread (so the pipe never fills) and wait for the ready line.
        let (ready_tx, ready_rx) = mpsc::channel();
        let log_path = dir.path().join("witness.log");
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(log, "{line}");
                if line.contains("witness is running") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let gateway = Gateway { dir, port, config: config_path, umask: umask.map(str::to_string), child };
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!("witness did not start:\n{}", gateway.log());
        }
        gateway
    }

    /// The witness process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("witness.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a witness command with this gateway's config.
    pub fn witness(&self, args: &[&str]) -> Output {
        witness_command(self.umask.as_deref()).args(args).arg("--config").arg(&self.config).output().unwrap()
    }

    pub fn token(&self, identity: &str, extra: &[&str]) -> String {
        let mut args = vec!["token", "create", "--identity", identity];
        args.extend_from_slice(extra);
        let out = self.witness(&args);
        assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A libpq connection string through witness.
    pub fn conninfo(&self, connection: &str, user: &str, token: &str) -> String {
        format!("host=127.0.0.1 port={} dbname={connection} user={user} password={token}", self.port)
    }

    /// The sessions in the order they started.
    pub fn sessions(&self) -> Vec<serde_json::Value> {
        let out = self.witness(&["sessions", "list", "--json", "--oldest-first"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The sessions once `done` holds for them. Sessions end, and the index takes in their ends,
    /// a moment after the client has gone; this polls (bounded) rather than guessing a delay.
    pub fn sessions_when(&self, done: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let sessions = self.sessions();
            if done(&sessions) || std::time::Instant::now() > deadline {
                return sessions;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sessions once at least `expected` of them are recorded and every one has ended.
    pub fn ended_sessions(&self, expected: usize) -> Vec<serde_json::Value> {
        self.sessions_when(|sessions| sessions.len() >= expected && sessions.iter().all(|s| s["status"] == "closed"))
    }

    pub fn events(&self, session: &str) -> Vec<serde_json::Value> {
        let out = self.witness(&["sessions", "show", session, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        shown["events"].as_array().unwrap().clone()
    }

    /// All events of all sessions, in session order, once at least `expected` sessions have ended.
    pub fn all_events(&self, expected: usize) -> Vec<serde_json::Value> {
        self.ended_sessions(expected).iter().flat_map(|s| self.events(s["id"].as_str().unwrap())).collect()
    }

    /// Stops witness with SIGTERM and checks that it sealed the ledger and the ledger verifies.
    pub fn stop_and_verify(&mut self) {
        self.terminate();
        // The log is copied by a reader thread, which may write the last lines just after the
        // process has exited: wait (bounded) for them.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.log().contains("ledger sealed") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(self.log().contains("ledger sealed"), "witness did not shut down cleanly:\n{}", self.log());
        let out = self.witness(&["verify"]);
        assert!(out.status.success(), "verify after the run failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), self.log());
    }

    /// Stops witness as [`Gateway::stop_and_verify`] does and starts it again on the same config
    /// and data dir, with `env` set.
    pub fn restart(mut self, env: &[(&str, &str)]) -> Gateway {
        self.stop_and_verify();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let config = std::fs::read_to_string(&self.config).unwrap();
        let (port, umask) = (self.port, self.umask.clone());
        drop(self);
        Gateway::launch_with_umask(dir, port, &config, env, umask.as_deref())
    }

    /// The audit trail's events, in the order recorded, once `done` holds for them (bounded).
    pub fn audit_when(&self, done: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.witness(&["sessions", "list", "--protocol", "audit", "--json", "--oldest-first"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let trails: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            let events: Vec<serde_json::Value> = trails.iter().flat_map(|t| self.events(t["id"].as_str().unwrap())).collect();
            if done(&events) {
                return events;
            }
            // The polling's own views are left out.
            let summaries: Vec<&str> =
                events.iter().filter(|e| e["kind"] != "recording.viewed").filter_map(|e| e["summary"].as_str()).collect();
            assert!(
                std::time::Instant::now() < deadline,
                "the audit trail never got what was waited for; it has:\n{}",
                summaries.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGHUP and waits until witness says it applied the config's policy.
    pub fn reload(&self) {
        let before = self.log().matches("policy reloaded").count();
        let _ = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while self.log().matches("policy reloaded").count() == before {
            assert!(std::time::Instant::now() < deadline, "witness did not reload its policy:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// The witness binary, to be given arguments; with `umask`, started by sh under that umask (sh
/// execs it, so its process id is witness's).
pub fn witness_command(umask: Option<&str>) -> Command {
    match umask {
        None => Command::new(env!("CARGO_BIN_EXE_witness")),
        Some(umask) => {
            let mut command = Command::new("sh");
            command.args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_witness")]);
            command
        }
    }
}

/// Runs psql with a connection string; returns (success, stdout, stderr).
pub fn psql(conninfo: &str, args: &[&str]) -> (bool, String, String) {
    let out =
        Command::new(witness_testkit::pg_bin("psql")).arg("-X").arg(conninfo).args(args).env("PGCONNECT_TIMEOUT", "20").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A `[[connections]]` entry named `name` for the test sshd, logging in with the harness's
/// client key, with `host_key` pinned (a public key line) or `trust-on-first-use`.
pub fn ssh_connection(name: &str, sshd: &witness_testkit::Sshd, host_key: &str) -> String {
    format!(
        "[[connections]]\nname = \"{name}\"\nprotocol = \"ssh\"\naddress = \"{}\"\nuser = \"{}\"\nprivate_key_file = \"{}\"\nhost_key = \"{host_key}\"\n\n",
        sshd.address(),
        sshd.user(),
        sshd.client_key().display(),
    )
}

/// psql running one command (`-c sql`, stopping at the first error) in the background.
pub fn spawn_psql(conninfo: &str, sql: &str) -> Child {
    Command::new(witness_testkit::pg_bin("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a background psql; returns (success, stdout, stderr).
pub fn finish(child: Child) -> (bool, String, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Polls `probe` until it gives a value, for up to 30 s.
pub fn poll<T>(what: &str, probe: impl Fn() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Edits the ledger index in `data_dir` as someone with access to the data dir could, in one
/// transaction, while witness runs or not.
pub fn edit_index(data_dir: &Path, edit: impl FnOnce(&rusqlite::Transaction<'_>)) {
    let mut conn = rusqlite::Connection::open(data_dir.join("ledger/index.sqlite")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let tx = conn.transaction().unwrap();
    edit(&tx);
    tx.commit().unwrap();
}

/// A session id as the index stores it.
pub fn session_key(id: &str) -> Vec<u8> {
    id.parse::<witness_core::SessionId>().unwrap().as_bytes().to_vec()
}

/// Replaces `from` with `to` (the same length) where it first occurs in a session's indexed
/// events (their kinds and summaries are stored packed in `event_blocks`).
pub fn replace_in_indexed_events(conn: &rusqlite::Connection, session: &[u8], from: &str, to: &str) {
    assert_eq!(from.len(), to.len(), "the packed lengths stay as they are");
    let blocks: Vec<(i64, Vec<u8>)> = conn
        .prepare("SELECT first_seq, events FROM event_blocks WHERE session_id = ?1 ORDER BY first_seq")
        .unwrap()
        .query_map([session], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (first_seq, mut bytes) in blocks {
        if let Some(at) = bytes.windows(from.len()).position(|w| w == from.as_bytes()) {
            bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
            conn.execute(
                "UPDATE event_blocks SET events = ?3 WHERE session_id = ?1 AND first_seq = ?2",
                rusqlite::params![session, first_seq, bytes],
            )
            .unwrap();
            return;
        }
    }
    panic!("{from:?} is in no indexed event of the session");
}

/// A session row for a session that was never recorded.
pub const MADE_UP_SESSION: &str = "0192f0c4-6b7e-7a3c-9d2e-5f1a2b3c4d5e";

pub fn insert_made_up_session(conn: &rusqlite::Connection, identity: &str) {
    conn.execute(
        "INSERT INTO sessions (id, identity, connection, protocol, task, client_addr, started_ns, ended_ns, end_reason, n_events, last_event_ns)
         VALUES (?1, ?2, 'app', 'postgres', 'JIRA-42 fix the report', '127.0.0.1:5000', 1700000000000000000, 1700000001000000000, 'client disconnected', 4, 1700000001000000000)",
        rusqlite::params![session_key(MADE_UP_SESSION), identity],
    )
    .unwrap();
}

/// The edits the index tests make, in one transaction: session `edited` gets another identity,
/// task and connection and one statement's summary changed, `deleted` loses its row, and a
/// session never recorded gets one.
pub fn make_index_edits(data_dir: &Path, edited: &str, deleted: &str) {
    let (edited, deleted) = (session_key(edited), session_key(deleted));
    edit_index(data_dir, |index| {
        let changed = index
            .execute("UPDATE sessions SET identity = 'alice', task = 'routine cleanup', connection = 'app-md5' WHERE id = ?1", [&edited])
            .unwrap();
        assert_eq!(changed, 1);
        assert_eq!(index.execute("DELETE FROM sessions WHERE id = ?1", [&deleted]).unwrap(), 1);
        insert_made_up_session(index, "ghost");
        replace_in_indexed_events(index, &edited, "from orders", "from payday");
    });
}

/// How verify (and the audit trail) name [`make_index_edits`]'s edits, for an agent `claude` with
/// the task `JIRA-42 fix the report` through connection `app` whose session ran
/// `select id, note from orders order by id`.
pub fn index_edits_named(edited: &str, deleted: &str) -> Vec<String> {
    vec![
        format!("session {edited}: identity is \"alice\" in the index but \"claude\" in the ledger"),
        format!("session {edited}: task is \"routine cleanup\" in the index but \"JIRA-42 fix the report\" in the ledger"),
        format!("session {edited}: connection is \"app-md5\" in the index but \"app\" in the ledger"),
        format!("session {deleted}: recorded in the ledger but missing from the index"),
        format!("session {MADE_UP_SESSION}: listed in the index but the ledger has no record of it"),
        "summary is \"select id, note from payday order by id\" in the index but \"select id, note from orders order by id\" in the ledger"
            .into(),
    ]
}

/// Every file under `dir`, read as bytes, must not contain `needle`.
pub fn assert_nowhere_in(dir: &Path, needle: &str) {
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle:?} found in {}", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

//! What witness keeps in its data dir is for its own user alone, whatever umask it is started
//! with: `witness serve` and its commands under umask 000, through a flow that makes every kind of
//! file (a token, a PostgreSQL session, an SSH session with a first-seen target key, the index,
//! checkpoints, an export), leave directories 0700 and files 0600. A data dir that other users can
//! write is refused; one they can read is made private.

mod pg;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pg::{poll, psql, ssh_connection, witness_command, Gateway};
use witness_testkit::{free_port, ssh_client_options, Postgres, SshKeyPair, Sshd};

/// Every directory and file under `root` (links not followed), by its path relative to `root`,
/// with its permission bits.
fn modes(root: &Path) -> BTreeMap<PathBuf, (bool, u32)> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // A file may go between the listing and the look (SQLite's -wal at shutdown).
            let Ok(metadata) = std::fs::symlink_metadata(&path) else { continue };
            if metadata.is_dir() {
                dirs.push(path.clone());
            }
            found.insert(path.strip_prefix(root).unwrap().to_path_buf(), (metadata.is_dir(), metadata.permissions().mode() & 0o7777));
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Asserts that the data dir and everything in it is private, and that it holds `expected`.
fn assert_private(data_dir: &Path, expected: &[&str]) {
    assert_eq!(mode(data_dir), 0o700, "the data dir itself");
    let found = modes(data_dir);
    for (path, (is_dir, mode)) in &found {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}, want {want:o}", path.display());
    }
    for path in expected {
        assert!(found.contains_key(Path::new(path)), "{path} was not made; the data dir holds {:?}", found.keys().collect::<Vec<_>>());
    }
}

#[test]
fn everything_witness_keeps_is_private_whatever_the_umask() {
    let pg = Postgres::start();
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let port = free_port();
    let ssh_port = free_port();
    let config = format!(
        "data_dir = \"{data}\"\n[listen]\npostgres = \"127.0.0.1:{port}\"\nssh = \"127.0.0.1:{ssh_port}\"\n\n\
         [[connections]]\nname = \"app-trust\"\nprotocol = \"postgres\"\naddress = \"127.0.0.1:{pg_port}\"\ndatabase = \"app\"\nuser = \"trust_user\"\n\n{web}",
        data = data_dir.display(),
        pg_port = pg.port(),
        web = ssh_connection("web", &sshd, "trust-on-first-use"),
    );
    let mut gw = Gateway::launch_with_umask(dir, port, &config, &[], Some("000"));

    let token = gw.token("claude", &[]);
    let (ok, out, err) = psql(&gw.conninfo("app-trust", "claude", &token), &["-c", "select 'through witness'"]);
    assert!(ok && out.contains("through witness"), "{out}{err}");
    let key = SshKeyPair::generate(gw.dir.path(), "agent", "ed25519");
    let added = gw.witness(&["identity", "add-key", "claude", key.private.with_extension("pub").to_str().unwrap()]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let ssh =
        Command::new("ssh").args(ssh_client_options(&key.private, ssh_port)).args(["web@127.0.0.1", "echo over ssh"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ssh.stdout), "over ssh\n", "{}", String::from_utf8_lossy(&ssh.stderr));
    let sessions = gw.ended_sessions(2);
    let session = sessions[0]["id"].as_str().unwrap();
    let export = data_dir.join("session.jsonl");
    // A session is exported once a signed checkpoint covers it (one a second).
    poll("an export of the first session", || {
        gw.witness(&["export", session, "--format", "jsonl", "--output", export.to_str().unwrap()]).status.success().then_some(())
    });

    // While witness runs, both SQLite databases have their -wal and -shm files.
    let while_running = [
        "identity/tokens.sqlite",
        "identity/tokens.sqlite-wal",
        "identity/tokens.sqlite-shm",
        "ledger/index.sqlite",
        "ledger/index.sqlite-wal",
        "ledger/index.sqlite-shm",
        "ledger/LOCK",
        "ledger/signing.key",
        "ledger/signing.pub",
        "ledger/segments",
        "mask.key",
        "tls/witness.crt",
        "tls/witness.key",
        "ssh/host_ed25519",
        "ssh/known_hosts",
        "session.jsonl",
    ];
    assert_private(&data_dir, &while_running);
    let segments = modes(&data_dir.join("ledger/segments"));
    assert!(!segments.is_empty() && segments.iter().all(|(_, (is_dir, mode))| !is_dir && *mode == 0o600), "{segments:?}");

    // The final checkpoint, and a verify under the same umask, keep it so.
    gw.stop_and_verify();
    assert_private(&data_dir, &["ledger/index.sqlite", "identity/tokens.sqlite", "ledger/signing.key"]);
    assert!(!gw.log().contains("other users could read the data directory"), "a new data dir needs no tightening:\n{}", gw.log());
}

#[test]
fn a_data_dir_others_can_write_is_refused_and_one_they_can_read_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(data_dir.join("ledger")).unwrap();
    std::fs::write(data_dir.join("notes.txt"), "left by an older witness").unwrap();
    let set = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    set(&data_dir, 0o770);
    set(&data_dir.join("ledger"), 0o755);
    set(&data_dir.join("notes.txt"), 0o644);
    let port = free_port();
    let config = format!("data_dir = \"{}\"\n[listen]\npostgres = \"127.0.0.1:{port}\"\n", data_dir.display());

    let config_path = dir.path().join("witness.toml");
    std::fs::write(&config_path, &config).unwrap();
    let mut serve = witness_command(None)
        .args(["serve", "--config", config_path.to_str().unwrap()])
        .env("WITNESS_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read until witness exits, or says it runs (then stop it: that is the failure).
    let mut stderr = String::new();
    for line in BufReader::new(serve.stderr.take().unwrap()).lines().map_while(Result::ok) {
        stderr.push_str(&line);
        stderr.push('\n');
        if line.contains("witness is running") {
            let _ = Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
        }
    }
    let status = serve.wait().unwrap();
    assert!(!status.success() && !stderr.contains("witness is running"), "witness served a group-writable data dir: {stderr}");
    assert!(stderr.contains(&format!("{} can be written by its group or by anyone (mode 0770)", data_dir.display())), "{stderr}");
    assert!(stderr.contains(&format!("run `chmod -R go-rwx {}`", data_dir.display())), "{stderr}");
    assert!(!data_dir.join("ledger/segments").exists(), "nothing was opened in a refused data dir");
    assert_eq!(mode(&data_dir.join("notes.txt")), 0o644, "nothing was changed in a refused data dir");

    // Readable by others only, as an older witness under umask 022 left it: made private.
    set(&data_dir, 0o755);
    let mut gw = Gateway::launch(dir, port, &config, &[]);
    assert!(gw.log().contains("other users could read the data directory"), "{}", gw.log());
    assert_eq!((mode(&data_dir.join("notes.txt")), mode(&data_dir.join("ledger"))), (0o600, 0o700));
    gw.stop_and_verify();
    assert_private(&data_dir, &["notes.txt", "ledger/signing.key"]);
}

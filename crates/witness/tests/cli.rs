//! The `witness` binary as a user runs it: serve (its banner, its refusal of a config with
//! nothing to listen on) and stop, bench, list and show sessions (newest first, by id prefix,
//! filtered, followed live), verify (intact, tampered, against a checkpoint, an edited index, a
//! running writer, no ledger), export and verify a session alone, config errors, `--help` on
//! every verb, completions and man pages.

mod pg;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use pg::{index_edits_named, make_index_edits, poll, psql, Gateway, MADE_UP_SESSION};
use witness_core::{Direction, Event, EventKind, Protocol, SessionId, SessionInfo};
use witness_ledger::{open_index, Ledger, LedgerConfig};
use witness_testkit::{Postgres, SshKeyPair, SCRAM_PASSWORD};

fn witness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_witness")).args(args).env("WITNESS_LOG", "info").output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_ok(args: &[&str]) -> String {
    let out = witness(args);
    assert!(out.status.success(), "witness {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// serve on ports the system chooses: its banner names the ports really bound, the console's
/// URL and the commands to run next; SIGTERM stops it with exit 0 and a sealed, intact ledger.
#[test]
fn serve_prints_a_banner_runs_until_sigterm_and_seals_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("witness.toml");
    let data_dir = dir.path().join("data");
    let connection = "[[connections]]\nname = \"pg-local\"\nprotocol = \"postgres\"\naddress = \"127.0.0.1:5432\"\n";
    std::fs::write(
        &config,
        format!(
            "data_dir = {data_dir:?}\n[ledger]\ndurability = \"fsync\"\n[listen]\npostgres = \"127.0.0.1:0\"\napi = \"127.0.0.1:0\"\n{connection}"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_witness"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("WITNESS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The banner is complete with its last line, printed once every listener is bound.
    let mut banner = Vec::new();
    // Kept open until witness exits, so that nothing it writes later meets a closed pipe.
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in stdout.by_ref().map_while(Result::ok) {
        let last = line.starts_with("Stop witness with Ctrl-C");
        banner.push(line);
        if last {
            break;
        }
    }
    let banner = banner.join("\n");
    let address_after = |label: &str| -> String {
        let line = banner.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{banner}"));
        line.split_whitespace().nth(label.split_whitespace().count()).unwrap().to_string()
    };
    let pg_address: std::net::SocketAddr = address_after("PostgreSQL clients").parse().unwrap();
    let console = address_after("review console");
    assert_ne!(pg_address.port(), 0, "the banner names the port bound, not the config's 0:\n{banner}");
    let api_address = console.strip_prefix("http://").unwrap_or_else(|| panic!("the console is a URL: {console}"));
    for address in [pg_address.to_string(), api_address.to_string()] {
        std::net::TcpStream::connect(&address).unwrap_or_else(|e| panic!("the banner's {address} takes connections: {e}\n{banner}"));
    }
    let config_arg = format!("--config {}", config.display());
    for next in [
        format!("token create --identity claude --groups ai-agents --task \"first try\" {config_arg}"),
        format!("psql \"host=127.0.0.1 port={} dbname=pg-local user=claude password=TOKEN\"", pg_address.port()),
        format!("sessions list {config_arg}"),
    ] {
        assert!(banner.contains(&next), "the banner says {next:?}:\n{banner}");
    }

    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = stderr.by_ref().map(|l| l.unwrap()).find(|l| l.contains("witness is running"));
    assert!(ready.is_some(), "serve never said it was running");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<String> = stderr.map(|l| l.unwrap()).collect();
    assert!(child.wait().unwrap().success(), "serve exits 0 after SIGTERM: {rest:?}");
    drop(stdout);
    assert!(rest.iter().any(|l| l.contains("ledger sealed")), "{rest:?}");
    assert!(data_dir.join("ledger/signing.key").exists());
    let out = run_ok(&["verify", "--config", config.to_str().unwrap()]);
    assert!(out.contains("ledger intact"), "{out}");
}

/// A config without [listen] addresses would run and record nothing: serve refuses it, says
/// what to add, and creates nothing.
#[test]
fn serve_refuses_a_config_with_nothing_to_listen_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("silent.toml");
    let data_dir = dir.path().join("data");
    std::fs::write(&config, format!("data_dir = {data_dir:?}\n[ledger]\ndurability = \"fsync\"\n")).unwrap();
    let out = witness(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("silent.toml has no [listen] addresses, so witness would serve nothing"), "{err}");
    assert!(err.contains("postgres = \"127.0.0.1:15432\"") && err.contains("examples/quickstart.toml"), "{err}");
    assert!(text(&out.stdout).is_empty(), "no banner: {}", text(&out.stdout));
    assert!(!data_dir.exists(), "a refused serve creates no data dir");

    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_witness"))
        .arg("serve")
        .current_dir(elsewhere.path())
        .env_remove("WITNESS_CONFIG")
        .env_remove("WITNESS_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("the default config (no --config was given) has no [listen] addresses"), "{}", text(&out.stderr));
    assert!(!elsewhere.path().join("witness-data").exists());
}

#[test]
fn bench_then_list_show_verify_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let bench = run_ok(&["bench", "ledger", "--data-dir", data, "--sessions", "4", "--events", "50", "--payload-bytes", "32"]);
    assert!(bench.contains("appends/s") && bench.contains("latency p99"), "{bench}");

    let list = run_ok(&["sessions", "list", "--data-dir", data, "--json"]);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(sessions.len(), 4);
    assert!(sessions.iter().all(|s| s["events"] == 52 && s["status"] == "closed" && s["protocol"] == "synthetic"));
    let id = sessions[0]["id"].as_str().unwrap().to_string();
    let table = run_ok(&["sessions", "list", "--data-dir", data, "--identity", "bench-agent-1"]);
    assert_eq!(table.lines().count(), 2, "a header and one session: {table}");

    let show = run_ok(&["sessions", "show", &id, "--data-dir", data, "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&show).unwrap();
    let events = shown["events"].as_array().unwrap();
    assert_eq!(events.len(), 52);
    assert_eq!(events[1]["summary"], "synthetic event 0");
    assert!(events.windows(2).all(|w| w[0]["seq"].as_u64().unwrap() + 1 == w[1]["seq"].as_u64().unwrap()));

    // A reader that has gone before anything is written (`| head`, quitting a pager): the
    // output ends quietly, in text and in JSON.
    for args in [
        &["sessions", "show", &id, "--data-dir", data][..],
        &["sessions", "show", &id, "--data-dir", data, "--json"],
        &["sessions", "list", "--data-dir", data],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_witness")).args(args).stdout(writer).output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{args:?}: {:?}\n{}", out.status, text(&out.stderr));
    }

    let verified = run_ok(&["verify", "--data-dir", data]);
    assert!(verified.contains("ledger intact") && verified.contains("MB/s"), "{verified}");

    let cp_path = dir.path().join("cp.json");
    let cp = run_ok(&["checkpoint", "export", "--data-dir", data]);
    std::fs::write(&cp_path, &cp).unwrap();
    run_ok(&["verify", "--data-dir", data, "--checkpoint", cp_path.to_str().unwrap()]);

    let export_path = dir.path().join("session.jsonl");
    run_ok(&["export", &id, "--format", "jsonl", "--data-dir", data, "--output", export_path.to_str().unwrap()]);
    let pubkey = dir.path().join("ledger/signing.pub");
    let checked = run_ok(&["verify", "--session-export", export_path.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap()]);
    assert!(checked.contains("session export intact") && checked.contains(&id), "{checked}");
    let no_key = witness(&["verify", "--session-export", export_path.to_str().unwrap()]);
    assert_eq!(no_key.status.code(), Some(2));
    assert!(text(&no_key.stderr).contains("--pubkey is required"));

    // An export with one changed summary does not verify.
    let edited = std::fs::read_to_string(&export_path).unwrap().replace("synthetic event 7", "synthetic event 8");
    std::fs::write(&export_path, edited).unwrap();
    let bad = witness(&["verify", "--session-export", export_path.to_str().unwrap(), "--pubkey", pubkey.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad.stdout));

    // One flipped byte in a segment: verify exits 1 and names the session of the damaged record.
    let segment = dir.path().join("ledger/segments/000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();
    let damaged = witness(&["verify", "--data-dir", data]);
    assert_eq!(damaged.status.code(), Some(1));
    let report = text(&damaged.stdout);
    assert!(report.contains("LEDGER DAMAGED") && report.contains("session "), "{report}");
    let after_cp = witness(&["verify", "--data-dir", data, "--checkpoint", cp_path.to_str().unwrap()]);
    assert_eq!(after_cp.status.code(), Some(1));
}

#[test]
fn show_prints_text_payloads_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&LedgerConfig::new(dir.path())).unwrap();
    let info = SessionInfo {
        identity: "claude".into(),
        connection: "pg-local".into(),
        protocol: Protocol::Postgres,
        task: Some("JIRA-12 fix the report".into()),
        client_addr: Some("127.0.0.1:40000".into()),
        groups: Vec::new(),
    };
    let session = ledger.open_session_blocking(&info).unwrap();
    let query =
        Event::text(EventKind::new("sql.query").unwrap(), Direction::Request, "select 1", "select 1;\nselect 2;").with_attr("rows", 2);
    session.append_blocking(&query).unwrap();
    let id = session.id().to_string();
    session.close_blocking("client disconnected").unwrap();
    ledger.shutdown().unwrap();

    let data = dir.path().to_str().unwrap();
    let show = run_ok(&["sessions", "show", &id, "--data-dir", data]);
    for needle in
        ["identity    claude", "JIRA-12 fix the report", "sql.query", "| select 1;", "| select 2;", "\"rows\":2", "client disconnected"]
    {
        assert!(show.contains(needle), "{needle:?} missing from:\n{show}");
    }
    let by_task = run_ok(&["sessions", "list", "--data-dir", data, "--task", "JIRA-12", "--since", "1h"]);
    assert!(by_task.contains(&id), "{by_task}");
    let none = run_ok(&["sessions", "list", "--data-dir", data, "--task", "JIRA-99"]);
    assert!(none.contains("no sessions match"), "{none}");
}

/// Sessions recorded through psql, then the index edited while witness is stopped: verify names
/// every edit and fails, `sessions list` and `show` show the records' facts and warn, and a
/// deleted index is rebuilt from the segments.
#[test]
fn verify_names_an_edited_index_and_sessions_show_the_records() {
    let pg = Postgres::start();
    pg.psql("app", "create table orders(id int, note text); insert into orders values (1, 'first'); grant all on orders to scram_user;");
    let mut gw = Gateway::start(&pg, "");
    let token = gw.token("claude", &["--task", "JIRA-42 fix the report"]);
    for sql in ["select id, note from orders order by id", "select 1"] {
        let (ok, _, err) = psql(&gw.conninfo("app", "claude", &token), &["-c", sql]);
        assert!(ok, "{sql}: {err}");
    }
    let ids: Vec<String> = gw.ended_sessions(2).iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    gw.stop_and_verify();
    let intact = gw.witness(&["verify"]);
    // The two psql sessions and the audit trail, which has the token's creation.
    assert!(text(&intact.stdout).contains("index agrees with the ledger: 3 sessions"), "{}", text(&intact.stdout));

    make_index_edits(&gw.data_dir(), &ids[0], &ids[1]);

    let out = gw.witness(&["verify"]);
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "an edited index fails verify: {report}");
    let named = ["ledger intact".to_string(), "INDEX ALTERED".to_string()].into_iter().chain(index_edits_named(&ids[0], &ids[1]));
    for says in named {
        assert!(report.contains(&says), "verify says {says:?}:\n{report}");
    }
    let json: serde_json::Value = serde_json::from_slice(&gw.witness(&["verify", "--json"]).stdout).unwrap();
    assert_eq!((&json["intact"], &json["index"]["intact"]), (&serde_json::json!(true), &serde_json::json!(false)), "{json}");
    assert_eq!(json["index"]["problems"].as_array().unwrap().len(), 6, "{json}");
    assert!(gw.witness(&["verify", "--skip-index"]).status.success(), "the records alone are intact");

    // sessions list and show: the records' facts, with a warning; the row's are never shown as
    // the session's.
    let out = gw.witness(&["sessions", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let session = listed.iter().find(|s| s["id"] == ids[0].as_str()).unwrap();
    assert_eq!(
        (&session["identity"], &session["task"], &session["connection"]),
        (&"claude".into(), &"JIRA-42 fix the report".into(), &"app".into())
    );
    assert!(!session["index_differences"].as_array().unwrap().is_empty(), "{session}");
    let ghost = listed.iter().find(|s| s["id"] == MADE_UP_SESSION).unwrap();
    assert!(ghost["index_differences"][0].as_str().unwrap().contains("no record of it"), "{ghost}");
    let warnings = text(&out.stderr);
    assert!(warnings.contains(&format!("warning: session {}: the index differs from its records", ids[0])), "{warnings}");
    let out = gw.witness(&["sessions", "show", &ids[0], "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["identity"], "claude");
    let query = shown["events"].as_array().unwrap().iter().find(|e| e["kind"] == "pg.query").unwrap();
    assert_eq!(query["summary"], "select id, note from orders order by id", "events are shown as recorded");
    assert!(text(&out.stderr).contains("summary is"), "{}", text(&out.stderr));

    // A deleted index is rebuilt from the segments.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(gw.data_dir().join(format!("ledger/index.sqlite{suffix}")));
    }
    assert_eq!(gw.sessions().len(), 2);
    let out = gw.witness(&["verify"]);
    assert!(out.status.success() && text(&out.stdout).contains("index agrees with the ledger: 3 sessions"), "{}", text(&out.stdout));
}

#[test]
fn bad_config_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[ledger]\ndurability = \"sometimes\"\n").unwrap();
    let out = witness(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("broken.toml") && err.contains("durability") && err.contains("fsync"), "{err}");
}

#[test]
fn every_verb_has_help() {
    let verbs: &[&[&str]] = &[
        &[],
        &["serve"],
        &["sessions"],
        &["sessions", "list"],
        &["sessions", "show"],
        &["verify"],
        &["checkpoint"],
        &["checkpoint", "export"],
        &["export"],
        &["bench"],
        &["bench", "ledger"],
        &["completions"],
        &["man"],
    ];
    for verb in verbs {
        let mut args = verb.to_vec();
        args.push("--help");
        let out = run_ok(&args);
        assert!(out.contains("Usage: witness"), "{verb:?}: {out}");
    }
}

#[test]
fn reading_commands_explain_a_missing_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = witness(&["sessions", "list", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no ledger here"), "{}", text(&out.stderr));
    assert!(!Path::new(&missing).exists(), "reading must not create a ledger");
}

/// An empty or missing data dir holds no ledger: verify says so with its own exit status (3), not
/// that a ledger is damaged, and creates nothing.
#[test]
fn verify_of_an_empty_or_missing_data_dir_finds_no_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = dir.path().join("missing");
    for data in [&empty, &missing] {
        let data = data.to_str().unwrap();
        let out = witness(&["verify", "--data-dir", data]);
        let said = text(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{said}{}", text(&out.stderr));
        assert!(said.contains("NO LEDGER in") && !said.contains("DAMAGED"), "{said}");
        let out = witness(&["verify", "--data-dir", data, "--json"]);
        assert_eq!(out.status.code(), Some(3));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["ledger"], false, "{json}");
    }
    assert!(!missing.exists(), "verify creates nothing");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "verify creates nothing");
}

/// Half a record at the end of the ledger: damage (exit 1) when no witness holds the ledger, a
/// record being written (exit 0) while one does.
#[test]
fn verify_accepts_a_record_being_written_only_while_witness_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    run_ok(&["bench", "ledger", "--data-dir", data, "--sessions", "2", "--events", "20", "--payload-bytes", "32"]);
    let mut segments: Vec<_> = std::fs::read_dir(dir.path().join("ledger/segments")).unwrap().map(|e| e.unwrap().path()).collect();
    segments.sort();
    let last = segments.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    // The first 20 bytes of the segment's first record, whose length says it is longer.
    let first_record = bytes[32..52].to_vec();
    bytes.extend_from_slice(&first_record);
    std::fs::write(last, bytes).unwrap();

    let out = witness(&["verify", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("the file ends inside a record"), "{}", text(&out.stdout));

    let lock = std::fs::File::options().read(true).write(true).open(dir.path().join("ledger/LOCK")).unwrap();
    lock.try_lock().unwrap();
    let out = witness(&["verify", "--data-dir", data]);
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("ledger intact") && said.contains("witness is running") && said.contains("not yet written whole"), "{said}");
    let json: serde_json::Value = serde_json::from_slice(&witness(&["verify", "--data-dir", data, "--json"]).stdout).unwrap();
    assert_eq!((&json["writer_running"], &json["unfinished_tail"]["bytes"]), (&true.into(), &20.into()), "{json}");
}

/// What people do with the CLI on the host (credentials changed, recordings shown, searched and
/// exported) is in the gateway's audit trail, named by the host user; what is done while witness
/// is stopped goes in when it starts again.
#[test]
fn cli_actions_on_the_host_reach_the_audit_trail() {
    let started_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let pg = Postgres::start();
    let gw = Gateway::start(&pg, "");
    let secret = gw.token("claude", &["--groups", "ai-agents", "--task", "fix the report"]);
    let (ok, _, err) = psql(&gw.conninfo("app", "claude", &secret), &["-c", "select 1"]);
    assert!(ok, "{err}");
    let session = gw.ended_sessions(1)[0]["id"].as_str().unwrap().to_string();
    gw.events(&session);
    let export = gw.dir.path().join("export.jsonl");
    // An export waits for a checkpoint that covers the session (one a second).
    poll("an export", || gw.witness(&["export", &session, "--output", export.to_str().unwrap()]).status.success().then_some(()));
    let out = gw.witness(&["sessions", "list", "--text", "select"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = SshKeyPair::generate(gw.dir.path(), "host-key", "ed25519");
    let public = format!("{}.pub", key.private.display());
    let out = gw.witness(&["identity", "add-key", "olga", &public]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fingerprint = text(&out.stdout).trim().to_string();
    assert!(gw.witness(&["identity", "remove-key", &fingerprint]).status.success());
    let out = gw.witness(&["token", "revoke", "--identity", "claude"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let expected =
        ["token.created", "recording.viewed", "recording.exported", "recording.searched", "key.added", "key.removed", "token.revoked"];
    let from_host = |e: &serde_json::Value| e["attrs"]["credential"] == "host";
    let trail = gw.audit_when(|events| expected.iter().all(|k| events.iter().any(|e| e["kind"] == *k && from_host(e))));
    let uid = format!("(uid {})", rustix::process::getuid().as_raw());
    for e in trail.iter().filter(|e| from_host(e)) {
        assert!(e["attrs"]["actor"].as_str().unwrap().ends_with(&uid), "the host user is named: {e}");
        assert!(e["attrs"]["acted_ns"].as_i64().unwrap() >= started_ns, "the time it was done: {e}");
    }
    let of = |kind: &str| trail.iter().find(|e| e["kind"] == kind && from_host(e)).unwrap().clone();
    assert_eq!(of("recording.viewed")["attrs"]["session"], session.as_str());
    assert_eq!(of("recording.exported")["attrs"]["session"], session.as_str());
    assert!(of("key.added")["attrs"]["what"].as_str().unwrap().contains(&fingerprint));
    let created = of("token.created");
    assert!(created["attrs"]["what"].as_str().unwrap().contains("for claude (groups: ai-agents; task: fix the report)"), "{created}");
    assert!(!trail.iter().any(|e| e.to_string().contains(&secret)), "a token's secret is never in the trail");
    let spool = gw.data_dir().join("audit-spool");
    poll("an empty spool", || (std::fs::read_dir(&spool).unwrap().count() == 0).then_some(()));

    // Witness stopped: the action waits in the spool and goes in when witness starts again. A
    // file in the spool that is not a CLI action is set aside, never recorded.
    let env = [("WITNESS_TEST_PG_PASSWORD", SCRAM_PASSWORD)];
    let mut gw = gw;
    gw.stop_and_verify();
    gw.token("while-stopped", &[]);
    std::fs::write(
        spool.join("00000000000000000001-forged.json"),
        r#"{"kind":"pg.query","actor":"x","what":"drop","session":null,"acted_ns":1}"#,
    )
    .unwrap();
    let gw = gw.restart(&env);
    let trail = gw.audit_when(|events| {
        events.iter().any(|e| e["kind"] == "token.created" && e["attrs"]["what"].as_str().unwrap().contains("while-stopped"))
    });
    assert!(!trail.iter().any(|e| e["kind"] == "pg.query"), "a forged spool file is not recorded");
    assert!(spool.join("00000000000000000001-forged.rejected").exists());
    assert!(gw.log().contains("not a kind the CLI records"), "{}", gw.log());
}

fn agent(task: &str) -> SessionInfo {
    SessionInfo {
        identity: "claude".into(),
        connection: "pg-local".into(),
        protocol: Protocol::Postgres,
        task: Some(task.into()),
        client_addr: Some("127.0.0.1:40000".into()),
        groups: Vec::new(),
    }
}

fn query(summary: &str) -> Event {
    Event::text(EventKind::new("pg.query").unwrap(), Direction::Request, summary, summary)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Three sessions, one after the other; their ids in the order they started.
fn three_sessions(data_dir: &Path) -> Vec<String> {
    let ledger = Ledger::open(&LedgerConfig::new(data_dir)).unwrap();
    let ids = (0..3)
        .map(|n| {
            let session = ledger.open_session_blocking(&agent(&format!("task {n}"))).unwrap();
            session.append_blocking(&query(&format!("select {n}"))).unwrap();
            let id = session.id().to_string();
            session.close_blocking("done").unwrap();
            id
        })
        .collect();
    ledger.shutdown().unwrap();
    ids
}

fn listed_ids(list: &str) -> Vec<String> {
    json(list).as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn sessions_list_is_newest_first_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let ids = three_sessions(dir.path());
    let data = dir.path().to_str().unwrap();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed_ids(&run_ok(&["sessions", "list", "--data-dir", data, "--json"])), newest_first);
    assert_eq!(listed_ids(&run_ok(&["sessions", "list", "--data-dir", data, "--json", "--limit", "2"])), newest_first[..2]);
    assert_eq!(listed_ids(&run_ok(&["sessions", "list", "--data-dir", data, "--json", "--oldest-first", "--limit", "1"])), ids[..1]);
    let table = run_ok(&["sessions", "list", "--data-dir", data, "--limit", "1"]);
    assert_eq!(table.lines().count(), 2, "a header and the newest session: {table}");
    assert!(table.contains(&ids[2]), "{table}");
}

/// Every verb that takes a session takes the start of its id, and says which sessions an
/// ambiguous start could mean, or that none has it.
#[test]
fn session_ids_are_taken_by_unique_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let ids = three_sessions(dir.path());
    let data = dir.path().to_str().unwrap();
    let digits: Vec<String> = ids.iter().map(|id| id.replace('-', "")).collect();
    for (id, own) in ids.iter().zip(&digits) {
        let len = (1..=32).find(|&n| digits.iter().filter(|d| d[..n] == own[..n]).count() == 1).unwrap();
        let prefix = &own[..len];
        let shown = json(&run_ok(&["sessions", "show", prefix, "--data-dir", data, "--json"]));
        assert_eq!(shown["id"], id.as_str(), "{prefix}");
        let upper = id[..len + 4].to_uppercase();
        assert_eq!(json(&run_ok(&["sessions", "show", &upper, "--data-dir", data, "--json"]))["id"], id.as_str(), "{upper}");
    }
    let own = &digits[0][..(1..=32).find(|&n| digits.iter().filter(|d| d[..n] == digits[0][..n]).count() == 1).unwrap()];
    let export = dir.path().join("s.jsonl");
    run_ok(&["export", own, "--data-dir", data, "--output", export.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&export).unwrap().contains(&ids[0]));
    let replay = witness(&["replay", own, "--data-dir", data]);
    let said = text(&replay.stderr);
    assert!(said.contains(&ids[0]) && said.contains("no terminal to replay"), "replay found the session by its prefix: {said}");

    // Session ids opened within the same second share their first digits.
    let shared = &digits[0][..(0..32).take_while(|&i| digits.iter().all(|d| d.as_bytes()[i] == digits[0].as_bytes()[i])).count()];
    assert!(!shared.is_empty());
    let verbs: [&[&str]; 3] = [&["sessions", "show"], &["export"], &["replay"]];
    for verb in verbs {
        let mut args = verb.to_vec();
        args.extend([shared, "--data-dir", data]);
        let out = witness(&args);
        let said = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{verb:?}: {said}");
        assert!(said.contains("is ambiguous") && ids.iter().all(|id| said.contains(id.as_str())), "{verb:?}: {said}");
    }
    let unknown = witness(&["sessions", "show", "ffff", "--data-dir", data]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no session id starts with ffff"), "{}", text(&unknown.stderr));
    let invalid = witness(&["sessions", "show", "not-hex", "--data-dir", data]);
    assert_eq!(invalid.status.code(), Some(2));
    assert!(text(&invalid.stderr).contains("invalid session id"), "{}", text(&invalid.stderr));
}

#[test]
fn show_picks_events_by_kind_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&LedgerConfig::new(dir.path())).unwrap();
    let session = ledger.open_session_blocking(&agent("kinds")).unwrap();
    let cancel = Event::note(EventKind::new("pg.cancel").unwrap(), Direction::Request, "cancel request");
    let exec = Event::text(EventKind::new("ssh.exec").unwrap(), Direction::Request, "uptime", "uptime");
    for event in [query("select 0"), cancel, query("select 1"), exec, query("select 2")] {
        session.append_blocking(&event).unwrap();
    }
    let id = session.id().to_string();
    session.close_blocking("done").unwrap();
    ledger.shutdown().unwrap();
    let data = dir.path().to_str().unwrap();
    let kinds_of = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["sessions", "show", &id, "--data-dir", data, "--json"];
        args.extend_from_slice(extra);
        let shown = json(&run_ok(&args));
        shown["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(kinds_of(&[]).len(), 7);
    assert_eq!(kinds_of(&["--kinds", "pg.query,ssh.exec"]), ["pg.query", "pg.query", "ssh.exec", "pg.query"]);
    assert_eq!(kinds_of(&["--kinds", "pg", "--limit", "2"]), ["pg.query", "pg.cancel"]);
    assert_eq!(kinds_of(&["--limit", "1"]), ["session.start"]);
    let shown = run_ok(&["sessions", "show", &id, "--data-dir", data, "--kinds", "ssh."]);
    assert!(shown.contains("ssh.exec") && !shown.contains("pg.query") && !shown.contains("session.end"), "{shown}");
}

/// `show --follow` prints what is recorded, then an event appended after it started, and exits
/// when the session ends.
#[test]
fn show_follows_a_live_session_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&LedgerConfig::new(dir.path())).unwrap();
    let session = ledger.open_session_blocking(&agent("follow")).unwrap();
    session.append_blocking(&query("select 'before follow'")).unwrap();
    let id: SessionId = session.id();
    // The index takes in records every 20 ms: wait until it has the first event.
    while open_index(dir.path()).unwrap().session(id).unwrap().is_none_or(|s| s.n_events < 2) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_witness"))
        .args(["sessions", "show", &id.to_string()[..18], "--follow", "--data-dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // A follow that never ends must fail the test, not hang it: killed after a minute, its output
    // ends and the assertions below say what was missing.
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        if watchdog.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map(|l| l.unwrap());
    assert!(lines.by_ref().any(|l| l.contains("before follow")), "follow prints what was recorded");
    session.append_blocking(&query("select 'after follow started'")).unwrap();
    assert!(lines.by_ref().any(|l| l.contains("after follow started")), "follow prints a new event");
    session.close_blocking("client left").unwrap();
    let rest: Vec<String> = lines.collect();
    assert!(child.wait().unwrap().success(), "follow exits by itself when the session ends");
    let _ = done.send(());
    assert!(rest.iter().any(|l| l.contains("session.end")), "follow ends with the session: {rest:?}");
    ledger.shutdown().unwrap();
}

#[test]
fn json_times_are_rfc3339_in_utc() {
    let dir = tempfile::tempdir().unwrap();
    let ids = three_sessions(dir.path());
    let data = dir.path().to_str().unwrap();
    run_ok(&["token", "create", "--identity", "claude", "--data-dir", data]);
    let is_rfc3339_utc = |v: &serde_json::Value| v.as_str().is_some_and(|t| t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T');
    let tokens = json(&run_ok(&["token", "list", "--data-dir", data, "--json"]));
    let token = &tokens[0];
    assert!(is_rfc3339_utc(&token["created"]) && token.get("created_ns").is_none(), "{token}");
    let shown = json(&run_ok(&["sessions", "show", &ids[0], "--data-dir", data, "--json"]));
    assert!(is_rfc3339_utc(&shown["started"]) && is_rfc3339_utc(&shown["ended"]), "{shown}");
    assert!(shown["events"].as_array().unwrap().iter().all(|e| is_rfc3339_utc(&e["time"])), "{shown}");
    let verified = json(&run_ok(&["verify", "--data-dir", data, "--json"]));
    assert!(is_rfc3339_utc(&verified["last_checkpoint"]["time"]), "{verified}");
}

#[test]
fn completions_and_man_pages_name_every_verb() {
    let verbs = ["serve", "sessions", "verify", "checkpoint", "export", "token", "identity", "replay", "approvals", "completions", "man"];
    for shell in ["bash", "zsh", "fish"] {
        let script = run_ok(&["completions", shell]);
        for verb in verbs {
            assert!(script.contains(verb), "{shell} completions lack {verb}");
        }
        assert!(script.contains("follow"), "{shell} completions complete the flags of subcommands");
    }
    let man = run_ok(&["man"]);
    assert!(man.contains(".TH witness"), "a roff page: {man}");
    for verb in verbs {
        assert!(man.contains(verb), "the man page lacks {verb}");
    }
    let pages = tempfile::tempdir().unwrap();
    let out = witness(&["man", "--dir", pages.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let show = std::fs::read_to_string(pages.path().join("witness-sessions-show.1")).unwrap();
    assert!(show.contains("follow") && show.contains("kinds"), "{show}");
}

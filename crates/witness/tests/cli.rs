//! The `witness` binary as a user runs it: serve (its banner, its refusal of a config with
//! nothing to listen on) and stop, bench, list and show sessions, verify
//! (intact, tampered, against a checkpoint, an edited index), export and verify a session alone,
//! config errors, and `--help` on every verb.

mod pg;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use pg::{index_edits_named, make_index_edits, psql, Gateway, MADE_UP_SESSION};
use witness_core::{Direction, Event, EventKind, Protocol, SessionInfo};
use witness_ledger::{Ledger, LedgerConfig};
use witness_testkit::Postgres;

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
            "data_dir = {:?}\n[ledger]\ndurability = \"fsync\"\n[listen]\npostgres = \"127.0.0.1:0\"\napi = \"127.0.0.1:0\"\n{connection}",
            data_dir
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
    std::fs::write(&config, format!("data_dir = {:?}\n[ledger]\ndurability = \"fsync\"\n", data_dir)).unwrap();
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
    assert!(text(&intact.stdout).contains("index agrees with the ledger: 2 sessions"), "{}", text(&intact.stdout));

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
    assert!(out.status.success() && text(&out.stdout).contains("index agrees with the ledger: 2 sessions"), "{}", text(&out.stdout));
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

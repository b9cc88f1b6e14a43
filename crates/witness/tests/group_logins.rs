//! Per-group target logins against a real PostgreSQL: callers in a group a connection's
//! `[[connections.logins]]` names run as that login's database role, whose privileges hold
//! whatever the SQL text hides. A policy that allows everything does not let an agent with a
//! read-only role delete; the database refuses, the ledger records the refusal and the role, and
//! the role cannot become the connection's main user. Callers in other groups use the main login.

mod pg;

use std::process::Command;

use pg::{assert_nowhere_in, psql, Gateway};
use serde_json::Value;
use witness_testkit::{Postgres, SCRAM_PASSWORD};

const AGENT_RO_PASSWORD: &str = "agent-ro-secret";

/// A policy that lets every statement through, by a rule (so each is recorded as allowed by it).
const ALLOW_EVERYTHING: &str = "[policy]\ndefault = \"deny\"\n\n[[rules]]\nname = \"allow-all\"\naction = \"allow\"\n\n";

/// A connection "guarded" to the PostgreSQL on `port` (main login scram_user) whose agents log
/// in as agent_ro, with its password in `password_file`.
fn guarded(port: u16, password_file: &std::path::Path) -> String {
    format!(
        r#"[[connections]]
name = "guarded"
protocol = "postgres"
address = "127.0.0.1:{port}"
database = "app"
user = "scram_user"
password_env = "WITNESS_TEST_PG_PASSWORD"
tls = "require"

[[connections.logins]]
groups = ["ai-agents", "bots"]
user = "agent_ro"
password_file = "{file}"
"#,
        file = password_file.display(),
    )
}

fn startup_event(gw: &Gateway, session: &Value) -> Value {
    let events = gw.events(session["id"].as_str().unwrap());
    events.into_iter().find(|e| e["kind"] == "pg.startup").expect("every session records its startup")
}

#[test]
fn an_agents_login_holds_where_the_policy_allows_everything() {
    let pg = Postgres::start();
    pg.psql(
        "app",
        &format!(
            "create table t (id int); insert into t values (1), (2);\n\
             create role agent_ro login password '{AGENT_RO_PASSWORD}';\n\
             grant select on t to agent_ro;"
        ),
    );
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("agent_ro");
    std::fs::write(&password_file, format!("{AGENT_RO_PASSWORD}\n")).unwrap();
    let mut gw = Gateway::start(&pg, &format!("{ALLOW_EVERYTHING}{}", guarded(pg.port(), &password_file)));
    let agent = gw.token("claude", &["--groups", "ai-agents"]);
    let dba = gw.token("alice", &["--groups", "dba"]);

    let (ok, out, err) = psql(&gw.conninfo("guarded", "claude", &agent), &["-Atc", "select current_user, count(*) from t"]);
    assert!(ok && out.trim() == "agent_ro|2", "the agent reads as agent_ro: {out} {err}\n{}", gw.log());
    let (ok, _, err) = psql(&gw.conninfo("guarded", "claude", &agent), &["-Atc", "delete from t"]);
    assert!(!ok && err.contains("permission denied for table t"), "the database refuses the agent's delete: {err}");
    let (ok, _, err) = psql(&gw.conninfo("guarded", "claude", &agent), &["-Atc", "set role scram_user"]);
    assert!(!ok && err.contains("permission denied to set role \"scram_user\""), "the login cannot become the main user: {err}");
    assert_eq!(pg.psql("app", "select count(*) from t"), "2");

    let (ok, out, err) = psql(&gw.conninfo("guarded", "alice", &dba), &["-Atc", "select current_user", "-c", "delete from t"]);
    assert!(ok && out.trim() == "scram_user\nDELETE 2", "a caller in no login's groups uses the main login: {out} {err}");
    assert_eq!(pg.psql("app", "select count(*) from t"), "0");

    let sessions = gw.ended_sessions(4);
    for session in &sessions {
        let startup = startup_event(&gw, session);
        let expected = if session["identity"] == "claude" { "agent_ro" } else { "scram_user" };
        assert_eq!(startup["attrs"]["target_user"], expected, "{startup}");
        assert!(startup["summary"].as_str().unwrap().ends_with(&format!(" as {expected})")), "{startup}");
    }
    let events = gw.all_events(4);
    let delete = events
        .iter()
        .position(|e| e["kind"] == "pg.query" && e["payload_text"] == "delete from t" && e["attrs"]["rule"] == "allow-all")
        .expect("the policy allowed the agent's delete, and it is recorded");
    let refusal = events[delete..].iter().find(|e| e["kind"] == "pg.result").expect("its result is recorded");
    assert_eq!(refusal["attrs"]["error"]["sqlstate"], "42501", "{refusal}");
    assert!(refusal["attrs"]["error"]["message"].as_str().unwrap().contains("permission denied for table t"), "{refusal}");

    let shown = gw.witness(&["sessions", "show", sessions[0]["id"].as_str().unwrap()]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("\"target_user\":"), "sessions show prints the login");
    gw.stop_and_verify();
    for secret in [AGENT_RO_PASSWORD, SCRAM_PASSWORD] {
        assert_nowhere_in(&gw.data_dir(), secret);
        assert!(!gw.log().contains(secret), "a password is in the log");
    }
}

#[test]
fn a_login_whose_password_cannot_be_read_stops_witness_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("witness.toml");
    let text = guarded(witness_testkit::free_port(), std::path::Path::new("unused"))
        .replace("password_file = \"unused\"", "password_env = \"WITNESS_TEST_UNSET_LOGIN_PASSWORD\"");
    let listen = format!("[listen]\npostgres = \"127.0.0.1:{}\"\n", witness_testkit::free_port());
    std::fs::write(&config, format!("data_dir = \"{}\"\n{listen}{text}", dir.path().join("data").display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_witness"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("WITNESS_TEST_UNSET_LOGIN_PASSWORD")
        .env("WITNESS_TEST_PG_PASSWORD", SCRAM_PASSWORD)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: connections[0] (guarded) logins[0] password_env: the environment variable WITNESS_TEST_UNSET_LOGIN_PASSWORD is not set",
            config.display()
        )),
        "{stderr}"
    );
}

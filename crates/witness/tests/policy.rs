//! Policy through witness with real clients against a real, ephemeral PostgreSQL: denied
//! statements never reach the target and the session goes on; statements held for approval wait
//! until another identity in an approver group decides them through the API (with the real
//! `witness approvals` CLI), time out, or are withdrawn by a client that leaves; new rules apply
//! to live sessions on SIGHUP. Every decision is in the recording.

mod pg;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pg::{finish, psql, Gateway};
use serde_json::Value;
use witness_testkit::{free_port, Postgres};

const RULES: &str = r#"
[[rules]]
name = "no-destructive-ddl"
connections = ["app*"]
groups = ["ai-agents"]
sql = ["drop", "truncate"]
action = "deny"
message = "agents may not drop or truncate; ask a DBA"

[[rules]]
name = "quick-approval"
tables = ["quick"]
sql = ["update"]
action = "approve"
approvers = ["dba"]
timeout = "1s"

[[rules]]
name = "writes-need-approval"
sql = ["delete-without-where", "update-without-where", "alter", "grant"]
action = "approve"
approvers = ["dba"]
timeout = "10m"

[roles]
approver = ["oncall"]
"#;

struct Setup {
    pg: Postgres,
    gw: Gateway,
    agent: String,
    other_agent: String,
    dba: String,
    oncall: String,
}

fn setup() -> Setup {
    let pg = Postgres::start();
    pg.psql("app", "create table t(x int); insert into t values (1), (2); grant all on t to scram_user;");
    pg.psql("app", "create table quick(x int); insert into quick values (1); grant all on quick to scram_user;");
    let api_port = free_port();
    let gw = Gateway::start(&pg, &format!("api = \"127.0.0.1:{api_port}\"\n{RULES}"));
    let agent = gw.token("claude", &["--groups", "ai-agents,dba", "--task", "JIRA-7 cleanup"]);
    let other_agent = gw.token("codex", &["--groups", "ai-agents"]);
    let dba = gw.token("alice", &["--groups", "dba"]);
    let oncall = gw.token("olga", &["--groups", "oncall"]);
    Setup { pg, gw, agent, other_agent, dba, oncall }
}

impl Setup {
    fn approvals_cli(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["approvals"];
        all.extend_from_slice(args);
        let out = Command::new(env!("CARGO_BIN_EXE_witness"))
            .args(&all)
            .arg("--config")
            .arg(&self.gw.config)
            .env("WITNESS_TOKEN", token)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn waiting(&self, token: &str) -> Vec<Value> {
        let (ok, out, err) = self.approvals_cli(token, &["list", "--json"]);
        assert!(ok, "approvals list failed: {err}");
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
    }

    /// The waiting approvals once `n` of them wait (polled, bounded).
    fn wait_for_approvals(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.waiting(&self.dba);
            if list.len() == n || Instant::now() > deadline {
                assert_eq!(list.len(), n, "expected {n} waiting approvals: {list:?}\n{}", self.gw.log());
                return list;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// psql running `sql` through witness as `user`, in the background.
    fn spawn_psql(&self, user: &str, token: &str, sql: &str) -> Child {
        pg::spawn_psql(&self.gw.conninfo("app", user, token), sql)
    }
}

fn events_of_kind(events: &[Value], kind: &str) -> Vec<Value> {
    events.iter().filter(|e| e["kind"] == kind).cloned().collect()
}

#[test]
fn denied_statements_never_reach_the_target_and_the_session_goes_on() {
    let s = setup();
    let conninfo = s.gw.conninfo("app", "claude", &s.agent);
    // Simple protocol: the DROP is refused, the session goes on, a multi-statement message with a
    // DROP in it runs none of its statements.
    let (_, out, err) = psql(
        &conninfo,
        &["-v", "ON_ERROR_STOP=0", "-c", "drop table t", "-c", "select count(*) from t", "-c", "insert into t values (3); drop table t"],
    );
    assert!(
        err.contains("ERROR:  denied by witness rule \"no-destructive-ddl\": agents may not drop or truncate; ask a DBA"),
        "psql shows the rule and its message: {err}"
    );
    assert_eq!(err.matches("denied by witness rule").count(), 2, "{err}");
    assert!(out.contains("     2\n"), "the session is usable after the denial: {out}");
    assert_eq!(s.pg.psql("app", "select count(*) from t").trim(), "2", "the table is there and the insert beside the DROP did not run");
    // A statement witness cannot read is refused by the rule as the riskiest kind, with a message
    // that says so (not the rule's text about dropping tables).
    let (_, _, err) = psql(&conninfo, &["-v", "ON_ERROR_STOP=0", "-c", "do $$ begin drop table t; end $$ garbage("]);
    assert!(
        err.contains("witness could not classify this statement (the SQL parser does not know it")
            && err.contains("\"no-destructive-ddl\""),
        "{err}"
    );
    assert!(!err.contains("ask a DBA"), "{err}");

    // Extended protocol, in and out of a transaction: the target fails the request as it would a
    // failed statement, so a transaction is aborted and a pipeline skips to its Sync.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (mut client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let error = client.execute("truncate t", &[]).await.unwrap_err();
        let db = error.as_db_error().expect("an ErrorResponse");
        assert_eq!(db.code().code(), "42501");
        assert!(db.message().contains("no-destructive-ddl"), "{}", db.message());
        let n: i64 = client.query_one("select count(*) from t where x > $1", &[&0i32]).await.unwrap().get(0);
        assert_eq!(n, 2, "the session goes on and nothing was truncated");
        let tx = client.transaction().await.unwrap();
        tx.execute("insert into t values ($1)", &[&10i32]).await.unwrap();
        assert!(tx.execute("drop table t", &[]).await.is_err());
        let aborted = tx.query_one("select 1", &[]).await.unwrap_err();
        assert_eq!(aborted.code().map(|c| c.code()), Some("25P02"), "the transaction is aborted, as for any failed statement");
        drop(tx);
        let n: i64 = client.query_one("select count(*) from t", &[]).await.unwrap().get(0);
        assert_eq!(n, 2, "the insert before the DROP was rolled back with its transaction");
    });
    // A caller outside the rule's groups is not refused.
    let (ok, _, err) = psql(&s.gw.conninfo("app", "alice", &s.dba), &["-c", "create table scratch(x int)", "-c", "drop table scratch"]);
    assert!(ok, "a DBA may drop: {err}");

    let events: Vec<Value> = s.gw.all_events(4);
    let denied: Vec<Value> = events.iter().filter(|e| e["attrs"]["decision"] == "deny").cloned().collect();
    assert_eq!(denied.len(), 5, "every denial is recorded: {denied:?}");
    assert!(denied.iter().all(|e| e["attrs"]["rule"] == "no-destructive-ddl"));
    assert!(denied.iter().any(|e| e["kind"] == "pg.execute" && e["attrs"]["classes"].as_array().unwrap().contains(&"truncate".into())));
    let refused_results: Vec<&Value> = events.iter().filter(|e| e["kind"] == "pg.result" && e["attrs"]["denied"] == true).collect();
    assert_eq!(refused_results.len(), 5, "the client's error is recorded as the result");
    assert!(refused_results.iter().all(|e| e["attrs"]["error"]["sqlstate"] == "42501"));
    let target_log = s.pg.log_tail(400);
    assert!(!target_log.contains("drop table t") && !target_log.contains("truncate t"), "the target never saw them:\n{target_log}");
}

#[test]
fn a_held_statement_runs_once_another_approver_allows_it() {
    let s = setup();
    let waiting_psql = s.spawn_psql("claude", &s.agent, "delete from t");
    let second = s.spawn_psql("codex", &s.other_agent, "update t set x = 0");
    let list = s.wait_for_approvals(2);
    let mine = list.iter().find(|a| a["requester"] == "claude").unwrap().clone();
    let theirs = list.iter().find(|a| a["requester"] == "codex").unwrap().clone();
    let id = mine["id"].as_str().unwrap();
    assert_eq!(mine["rule"], "writes-need-approval");
    assert_eq!(mine["statement"], "delete from t");
    assert_eq!(mine["task"], "JIRA-7 cleanup");
    assert!(mine["classes"].as_array().unwrap().contains(&"delete-without-where".into()));

    // The requester is in dba, yet cannot decide their own request; an approver outside dba
    // cannot either, and an agent with no role lists its own requests only.
    let (ok, _, err) = s.approvals_cli(&s.agent, &["approve", id]);
    assert!(!ok && err.contains("cannot decide") && err.contains("403"), "{err}");
    let (ok, _, err) = s.approvals_cli(&s.oncall, &["approve", id]);
    assert!(!ok && err.contains("not an approver") && err.contains("dba"), "{err}");
    let (ok, _, err) = s.approvals_cli(&s.other_agent, &["approve", id]);
    assert!(!ok && err.contains("403") && err.contains("codex has no role"), "{err}");
    let (ok, out, err) = s.approvals_cli(&s.other_agent, &["list"]);
    let theirs_id = theirs["id"].as_str().unwrap();
    assert!(ok && out.contains(theirs_id) && !out.contains(id), "codex sees its own request, not claude's: {out}{err}");
    let (ok, _, err) = s.approvals_cli("wit_not-a-token", &["list"]);
    assert!(!ok && err.contains("401"), "{err}");
    assert!(s.waiting(&s.oncall).is_empty(), "an approver sees only what they may decide");
    assert_eq!(s.waiting(&s.agent).len(), 2, "claude, in dba, sees its own request and the one it may decide");

    let (ok, out, err) = s.approvals_cli(&s.dba, &["approve", id]);
    assert!(ok, "alice approves: {err}");
    assert!(out.contains("approved"), "{out}");
    let (ok, out, err) = finish(waiting_psql);
    assert!(ok, "the approved DELETE ran: {err}");
    assert_eq!(out.trim(), "DELETE 2");
    assert!(err.contains(&format!("witness holds this statement for approval {id}")), "psql showed the notice: {err}");
    assert_eq!(s.pg.psql("app", "select count(*) from t").trim(), "0");

    // Approving one request did not release the other; it is still waiting until denied.
    let still = s.waiting(&s.dba);
    assert_eq!(still.len(), 1);
    assert_eq!(still[0]["id"], theirs["id"]);
    let (ok, _, err) = s.approvals_cli(&s.dba, &["deny", theirs["id"].as_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = finish(second);
    assert!(!ok && err.contains("denied by alice"), "the denied UPDATE failed: {err}");
    let (ok, _, err) = s.approvals_cli(&s.dba, &["approve", id]);
    assert!(!ok && err.contains("404"), "a decided approval is gone: {err}");

    let events = s.gw.all_events(2);
    let decided = events_of_kind(&events, "approval.decided");
    assert_eq!(decided.len(), 2);
    let approved = decided.iter().find(|e| e["attrs"]["approval_id"] == id).unwrap();
    assert_eq!((approved["attrs"]["outcome"].as_str(), approved["attrs"]["by"].as_str()), (Some("approved"), Some("alice")));
    let held = events.iter().find(|e| e["attrs"]["approval_id"] == id && e["kind"] == "pg.query").unwrap();
    assert_eq!(held["attrs"]["decision"], "hold");
    let denied = decided.iter().find(|e| e["attrs"]["approval_id"] == theirs["id"]).unwrap();
    assert_eq!(denied["attrs"]["outcome"], "denied");
}

#[test]
fn an_undecided_statement_times_out_and_a_client_that_leaves_or_cancels_withdraws_it() {
    let s = setup();
    let (ok, _, err) = psql(&s.gw.conninfo("app", "claude", &s.agent), &["-c", "update quick set x = 2 where x = 1"]);
    assert!(!ok && err.contains("was not decided within 1 s"), "timeout denies: {err}");
    assert_eq!(s.pg.psql("app", "select x from quick").trim(), "1");

    let mut leaving = s.spawn_psql("claude", &s.agent, "delete from t");
    let list = s.wait_for_approvals(1);
    leaving.kill().unwrap();
    let _ = leaving.wait();
    s.wait_for_approvals(0);
    let (ok, _, err) = s.approvals_cli(&s.dba, &["approve", list[0]["id"].as_str().unwrap()]);
    assert!(!ok && err.contains("404"), "{err}");
    assert_eq!(s.pg.psql("app", "select count(*) from t").trim(), "2", "the withdrawn DELETE never ran");

    // Ctrl-C in psql sends a cancel request: the held statement is withdrawn and never runs.
    let cancelled = s.spawn_psql("claude", &s.agent, "delete from t");
    s.wait_for_approvals(1);
    let status = Command::new("kill").args(["-INT", &cancelled.id().to_string()]).status().unwrap();
    assert!(status.success());
    let (ok, _, err) = finish(cancelled);
    assert!(!ok && err.contains("canceling statement due to user request"), "{err}");
    s.wait_for_approvals(0);
    assert_eq!(s.pg.psql("app", "select count(*) from t").trim(), "2", "the cancelled DELETE never ran");

    let events = s.gw.all_events(3);
    let outcomes: Vec<String> =
        events_of_kind(&events, "approval.decided").iter().map(|e| e["attrs"]["outcome"].as_str().unwrap().to_string()).collect();
    assert_eq!(outcomes, ["timed-out", "withdrawn", "cancelled"]);
}

#[test]
fn new_rules_apply_to_live_sessions_on_sighup() {
    let s = setup();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&s.gw.conninfo("app", "claude", &s.agent), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.simple_query("select * from t").await.expect("allowed before the reload");
        let config = std::fs::read_to_string(&s.gw.config).unwrap();
        let extra = "\n[[rules]]\nname = \"no-reading-t\"\ntables = [\"t\"]\nsql = [\"select\"]\naction = \"deny\"\n";
        std::fs::write(&s.gw.config, config.replacen("[[rules]]", &format!("{}\n[[rules]]", extra.trim()), 1)).unwrap();
        s.gw.reload();
        let error = client.simple_query("select * from t").await.expect_err("denied after the reload");
        assert!(error.as_db_error().unwrap().message().contains("no-reading-t"), "{error}");
    });
}

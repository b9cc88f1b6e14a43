//! A hostile PostgreSQL client against witness and a real PostgreSQL: message sequences no driver
//! sends on purpose (errors in the middle of pipelines, names re-used after errors, settings that
//! change how text is read, credentials' tasks overridden), each checked against what the target
//! itself logged (`log_statement = all`): what the ledger records as run is exactly what ran, and
//! a denied request never reaches the target by any sequence of messages.

mod pg;

use pg::wire::{bind, close_statement, describe_portal, describe_statement, execute, parse, parse_bytes, query, query_bytes, sync, Wire};
use pg::Gateway;
use serde_json::Value;
use witness_testkit::Postgres;

/// Agents may not drop or truncate; a statement witness cannot read is decided as `unparsed`,
/// which a rule naming classes matches too.
const RULES: &str = r#"
[postgres]
auth = "password"

[[rules]]
name = "no-destructive-ddl"
groups = ["ai-agents"]
sql = ["drop", "truncate"]
action = "deny"
message = "agents may not drop or truncate"

[[rules]]
name = "audits-only-read"
tasks = ["audit-*"]
sql = ["insert", "update", "delete"]
action = "deny"
message = "an audit only reads"
"#;

struct Setup {
    pg: Postgres,
    gw: Gateway,
    agent: String,
    /// An agent whose token carries the task `audit-7`.
    auditor: String,
}

fn setup() -> Setup {
    setup_with(RULES, "")
}

/// A PostgreSQL with table `t` (and what `more_sql` makes) that logs every statement of
/// witness's sessions, with their process ids; witness in front of it with `rules`.
fn setup_with(rules: &str, more_sql: &str) -> Setup {
    let pg = Postgres::start();
    pg.psql("app", &format!("create table t(x int); insert into t values (1), (2); grant all on t to scram_user; {more_sql}"));
    pg.psql("postgres", "alter role scram_user set log_statement = 'all'");
    let gw = Gateway::start(&pg, rules);
    let agent = gw.token("claude", &["--groups", "ai-agents"]);
    let auditor = gw.token("codex", &["--groups", "ai-agents", "--task", "audit-7"]);
    Setup { pg, gw, agent, auditor }
}

impl Setup {
    /// A session of the agent through witness, and the target's process id for it.
    fn session(&self, params: &[(&str, &str)]) -> (Wire, String) {
        let mut wire = Wire::connect(self.gw.port, "app", "claude", &self.agent, params).expect("the agent logs in");
        let pid = wire.query("select pg_backend_pid()")[0][0].clone().unwrap();
        (wire, pid)
    }

    /// The statements the target logged for process `pid`, in order.
    fn ran_by_target(&self, pid: &str) -> Vec<String> {
        let log = self.pg.log_tail(1_000_000);
        let tag = format!("[{pid}] ");
        log.lines()
            .filter(|line| line.contains(&tag))
            .filter_map(|line| {
                if let Some((_, text)) = line.split_once("LOG:  statement: ") {
                    return Some(text.to_string());
                }
                let (_, rest) = line.split_once("LOG:  execute ")?;
                Some(rest.split_once(": ")?.1.to_string())
            })
            .collect()
    }

    /// The session whose first statement's result was `pid`, once it has ended; its events.
    fn events_of(&self, pid: &str) -> Vec<Value> {
        pg::poll("the session's end", || {
            let sessions = self.gw.sessions();
            sessions.iter().filter(|s| s["status"] == "closed").find_map(|s| {
                let events = self.gw.events(s["id"].as_str().unwrap());
                let first_rows = events.iter().find(|e| e["kind"] == "pg.result")?["payload_text"].as_str()?.to_string();
                first_rows.contains(&format!("[\"{pid}\"]")).then_some(events)
            })
        })
    }
}

/// The requests the ledger says the target ran, in order: queries and executions not denied and
/// not skipped, nor failed before they could start (an unknown portal or statement, a syntax
/// error: PostgreSQL logs none of those).
fn ran_by_witness(events: &[Value]) -> Vec<String> {
    let not_started = ["34000", "26000", "42601"];
    events
        .iter()
        .filter(|e| matches!(e["kind"].as_str(), Some("pg.query" | "pg.execute")) && e["attrs"]["decision"] != "deny")
        .filter(|request| {
            let n = &request["attrs"]["request"];
            events.iter().any(|result| {
                result["kind"] == "pg.result"
                    && result["attrs"]["answers"] == *n
                    && result["attrs"]["skipped"] != true
                    && !not_started.contains(&result["attrs"]["error"]["sqlstate"].as_str().unwrap_or(""))
            })
        })
        .map(|request| request["payload_text"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The events of `kind` whose payload (statement text) is `text`.
fn requests<'a>(events: &'a [Value], kind: &str, text: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind && e["payload_text"] == text).collect()
}

/// One adversarial sequence: batches of messages, each sent in one write and read until its
/// ReadyForQuery messages. Returns the session's events once the ledger and the target's log agree
/// on what ran.
fn run(setup: &Setup, params: &[(&str, &str)], batches: &[(&[Vec<u8>], usize)]) -> Vec<Value> {
    let (mut wire, pid) = setup.session(params);
    for (messages, n_ready) in batches {
        wire.exchange(messages, *n_ready);
    }
    wire.terminate();
    let events = setup.events_of(&pid);
    assert_eq!(ran_by_witness(&events), setup.ran_by_target(&pid), "what the ledger says ran is what the target ran");
    events
}

fn table_t_exists(setup: &Setup) -> bool {
    setup.pg.psql("app", "select count(*) from pg_tables where tablename = 't'").contains('1')
}

#[test]
fn protocol_state_follows_the_target_not_the_client() {
    let setup = setup();

    // A named statement parsed as DROP, a failed pipeline whose Close the target skips, a
    // redefinition the target refuses: the statement is still the DROP, decided and denied.
    let batches: [&[Vec<u8>]; 4] = [
        &[parse("s", "DROP TABLE t"), sync()],
        &[parse("", "selec broken"), close_statement("s"), sync()],
        &[parse("s", "SELECT 1"), sync()],
        &[bind("", "s", &[]), execute(""), sync()],
    ];
    for pipelined in [false, true] {
        let events = if pipelined {
            // All four pipelines in one write: witness waits for the target's answers before it
            // reads a name an earlier pipeline may have changed.
            let all: Vec<Vec<u8>> = batches.concat();
            run(&setup, &[], &[(&all, 4)])
        } else {
            run(&setup, &[], &batches.map(|b| (b, 1)))
        };
        let executed = requests(&events, "pg.execute", "DROP TABLE t");
        assert_eq!(executed.len(), 1, "the execution is recorded as the DROP it is ({pipelined})");
        assert_eq!(executed[0]["attrs"]["decision"], "deny");
        assert!(requests(&events, "pg.execute", "SELECT 1").is_empty());
        assert_eq!(requests(&events, "pg.parse", "SELECT 1").len(), 1, "every Parse is recorded");
        assert!(table_t_exists(&setup));
    }

    // Executions after an error in their pipeline are skipped, and recorded so.
    let events = run(
        &setup,
        &[],
        &[(
            &[parse("", "SELECT 'ran'"), bind("", "", &[]), execute(""), parse("", "selec broken"), bind("", "", &[]), execute(""), sync()],
            1,
        )],
    );
    assert!(events.iter().any(|e| e["attrs"]["skipped"] == true));

    // A Close skipped after an error leaves the statement as it was.
    run(
        &setup,
        &[],
        &[
            (&[parse("k", "SELECT 'kept'"), sync()], 1),
            (&[parse("", "selec broken"), close_statement("k"), sync()], 1),
            (&[bind("", "k", &[]), execute(""), sync()], 1),
        ],
    );

    // Re-binding an open named portal fails; the portal keeps its first statement.
    run(
        &setup,
        &[],
        &[
            (&[query("BEGIN")], 1),
            (&[parse("", "SELECT 'first portal'"), bind("p", "", &[]), sync()], 1),
            (&[parse("", "SELECT 'second portal'"), bind("p", "", &[]), execute("p"), sync()], 1),
            (&[execute("p"), sync()], 1),
            (&[query("COMMIT")], 1),
        ],
    );

    // A simple query drops the unnamed statement: binding it afterwards fails.
    run(
        &setup,
        &[],
        &[(&[parse("", "SELECT 'unnamed'"), sync()], 1), (&[query("SELECT 'simple'")], 1), (&[bind("", "", &[]), execute(""), sync()], 1)],
    );

    // A rolled-back savepoint drops the portals made since; the name is free again.
    run(
        &setup,
        &[],
        &[
            (&[query("BEGIN")], 1),
            (&[query("SAVEPOINT a")], 1),
            (&[parse("", "SELECT 'inside'"), bind("p", "", &[]), sync()], 1),
            (&[query("ROLLBACK TO SAVEPOINT a")], 1),
            (&[parse("", "SELECT 'after rollback'"), bind("p", "", &[]), execute("p"), sync()], 1),
            (&[query("COMMIT")], 1),
        ],
    );

    // A simple query in a failed pipeline is skipped, and so is what follows it up to the Sync.
    run(&setup, &[], &[(&[parse("", "selec broken"), query("SELECT 'skipped'"), bind("", "", &[]), execute(""), sync()], 1)]);

    // A statement redefined through SQL is one witness cannot know: decided as the strictest
    // class (which the drop rule matches), never as the text it had.
    let events = run(
        &setup,
        &[],
        &[
            (&[parse("r", "SELECT 'protocol'"), sync()], 1),
            (&[query("DEALLOCATE r")], 1),
            (&[query("PREPARE r AS SELECT 'sql'")], 1),
            (&[bind("", "r", &[]), describe_portal(""), execute(""), sync()], 1),
        ],
    );
    let unknown: Vec<&Value> = events.iter().filter(|e| e["kind"] == "pg.execute").collect();
    assert_eq!(unknown.len(), 1);
    assert!(unknown[0]["attrs"]["uncertain"].as_str().unwrap().contains("statement \"r\""), "{:?}", unknown[0]);
    assert_eq!(unknown[0]["attrs"]["decision"], "deny");
}

/// Rules for the desync tests aimed at holds and masking: deletes wait for a person (and time out
/// at once here), and an agent sees `customers.email` masked, by its column rule alone.
const HOLDS_AND_MASKS: &str = r#"
[postgres]
auth = "password"

[[rules]]
name = "deletes-wait"
groups = ["ai-agents"]
sql = ["delete"]
action = "approve"
approvers = ["dba"]
timeout = "1s"

[[masking]]
name = "contact"
groups = ["ai-agents"]
columns = ["customers.email"]
"#;

/// The statement-redefinition trick aimed at the other decisions: a name the client believes it
/// redefined after an error still holds what the target kept, so a hold applies to it and its
/// rows get its own masking plan, not the harmless statement's.
#[test]
fn a_desync_skips_neither_a_hold_nor_a_masking_plan() {
    let customers = "create table customers(id int, email text); insert into customers values (1, 'ada@example.org'); \
                     grant all on customers to scram_user;";
    let setup = setup_with(HOLDS_AND_MASKS, customers);

    // The hold times out, so the DELETE is recorded but never ran (`run`'s comparison would
    // count a held request as run).
    let (mut wire, pid) = setup.session(&[]);
    wire.exchange(&[parse("s", "DELETE FROM t"), sync()], 1);
    wire.exchange(&[parse("", "selec broken"), close_statement("s"), sync()], 1);
    wire.exchange(&[parse("s", "SELECT 1"), sync()], 1);
    let answer = wire.exchange(&[bind("", "s", &[]), execute(""), sync()], 1);
    assert!(answer.iter().any(|m| m.tag == b'E'), "the held DELETE was refused when its wait ran out");
    wire.terminate();
    let events = setup.events_of(&pid);
    assert!(!setup.ran_by_target(&pid).iter().any(|s| s.contains("DELETE")), "the target never ran the DELETE");
    let executed = requests(&events, "pg.execute", "DELETE FROM t");
    assert_eq!(executed.len(), 1, "the execution is recorded as the DELETE it is");
    assert_eq!(executed[0]["attrs"]["decision"], "hold", "{:?}", executed[0]);
    assert!(events.iter().any(|e| e["kind"] == "approval.decided"), "the hold was waited out");
    assert_eq!(setup.pg.psql("app", "select count(*) from t"), "2", "nothing was deleted");

    // The masked statement described once, then "redefined" after an error: its rows keep the
    // email column's plan.
    let (mut wire, pid) = setup.session(&[]);
    wire.exchange(&[parse("m", "SELECT email FROM customers"), describe_statement("m"), sync()], 1);
    wire.exchange(&[parse("", "selec broken"), close_statement("m"), sync()], 1);
    wire.exchange(&[parse("m", "SELECT 'harmless'::text"), describe_statement("m"), sync()], 1);
    let answer = wire.exchange(&[bind("", "m", &[]), execute(""), sync()], 1);
    let rows: Vec<Vec<Option<String>>> = answer.iter().filter(|m| m.tag == b'D').map(|m| m.row()).collect();
    assert_eq!(rows.len(), 1, "the row came back");
    assert!(!format!("{rows:?}").contains("ada@example.org"), "the masked column reached the client: {rows:?}");
    wire.terminate();
    let events = setup.events_of(&pid);
    assert!(!serde_json::to_string(&events).unwrap().contains("ada@example.org"), "nor the recording");
    assert_eq!(ran_by_witness(&events), setup.ran_by_target(&pid));
}

/// Class rules that read what a statement does, not only its first word: a MERGE that deletes is
/// a delete, a WHERE that holds for every row is none, through the gateway.
#[test]
fn merge_that_deletes_and_where_true_are_decided_by_what_they_do() {
    let rules = r#"
[postgres]
auth = "password"

[[rules]]
name = "no-bulk-delete"
groups = ["ai-agents"]
sql = ["delete-without-where"]
action = "deny"
"#;
    let setup = setup_with(rules, "");
    for sql in [
        "MERGE INTO t USING (SELECT 1 AS x) s ON true WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING (SELECT 1 AS x) s ON 1 = 1 WHEN MATCHED AND true THEN DELETE",
        "DELETE FROM t WHERE true",
        "DELETE FROM t WHERE 1 = 1 OR x = 3",
    ] {
        let events = run(&setup, &[], &[(&[query(sql)], 1)]);
        assert_eq!(requests(&events, "pg.query", sql)[0]["attrs"]["decision"], "deny", "{sql}");
    }
    assert_eq!(setup.pg.psql("app", "select count(*) from t"), "2", "nothing was deleted");
    // A MERGE or DELETE that picks its rows is not a bulk delete, and runs.
    let picked = "MERGE INTO t USING (SELECT 1 AS x) s ON t.x = s.x WHEN MATCHED THEN DELETE";
    let events = run(&setup, &[], &[(&[query(picked)], 1)]);
    assert_ne!(requests(&events, "pg.query", picked)[0]["attrs"]["decision"], "deny");
    assert_eq!(setup.pg.psql("app", "select count(*) from t"), "1", "the picked row was deleted");
}

#[test]
fn text_is_read_as_the_target_reads_it() {
    let setup = setup();
    // With standard_conforming_strings off, `'x\'; SELECT '` is one string and the DROP after it
    // runs; read with the default setting, the DROP would sit inside a string.
    let hidden = r"SELECT 'x\'; SELECT '; DROP TABLE t; --'";
    let events = run(&setup, &[], &[(&[query("SET standard_conforming_strings = off")], 1), (&[query(hidden)], 1)]);
    let read = requests(&events, "pg.query", hidden);
    assert_eq!(read[0]["attrs"]["decision"], "deny", "{:?}", read[0]);
    assert!(read[0]["attrs"]["uncertain"].as_str().unwrap().contains("standard_conforming_strings"));
    // The same two in one write: witness waits for the setting to be reported before it reads.
    let events = run(&setup, &[], &[(&[query("SET standard_conforming_strings = off"), query(hidden)], 2)]);
    assert_eq!(requests(&events, "pg.query", hidden)[0]["attrs"]["decision"], "deny");
    assert!(table_t_exists(&setup));

    // In SJIS, 0x95 0x5C is one character, and so is 0xB3 0x5C in BIG5; read as UTF-8 the second
    // byte is a backslash that escapes the string's closing quote, and the DROP would hide in the
    // string.
    for (encoding, lead) in [("SJIS", 0x95u8), ("BIG5", 0xB3)] {
        let hidden = [&b"SELECT E'"[..], &[lead], b"\\'; DROP TABLE t; --'"].concat();
        let (mut wire, pid) = setup.session(&[("client_encoding", encoding)]);
        let answer = wire.exchange(&[query_bytes(&hidden)], 1);
        let refused = answer.iter().find(|m| m.tag == b'E').and_then(|e| e.field(b'C'));
        assert_eq!(refused.as_deref(), Some("42501"), "refused by witness in {encoding}");
        // A Parse of such text in the extended protocol is decided the same way.
        let parsed = [&b"SELECT E'"[..], &[lead], b"\\', 1"].concat();
        let answer = wire.exchange(&[parse_bytes("", &parsed), bind("", "", &[]), execute(""), sync()], 1);
        assert_eq!(answer.iter().find(|m| m.tag == b'E').and_then(|e| e.field(b'C')).as_deref(), Some("42501"), "{encoding}");
        wire.terminate();
        let events = setup.events_of(&pid);
        assert_eq!(ran_by_witness(&events), setup.ran_by_target(&pid));
        assert!(events.iter().filter(|e| e["attrs"]["uncertain"].as_str().is_some_and(|u| u.contains("client_encoding"))).count() >= 2);
        assert!(table_t_exists(&setup));
    }
}

#[test]
fn the_credentials_task_binds_the_session() {
    let setup = setup();
    // The client names another task to step around the rule keyed on the token's.
    let params = [("options", "-c witness.task=cleanup-1"), ("application_name", "evil")];
    let mut wire = Wire::connect(setup.gw.port, "app", "codex", &setup.auditor, &params).expect("the auditor logs in");
    let pid = wire.query("select pg_backend_pid()")[0][0].clone().unwrap();
    let answer = wire.exchange(&[query("DELETE FROM t WHERE x = 1")], 1);
    assert_eq!(answer.iter().find(|m| m.tag == b'E').and_then(|e| e.field(b'C')).as_deref(), Some("42501"));
    // An application_name set after startup (as pgjdbc does) is recorded from the target's report.
    wire.query("SET application_name = 'renamed later'");
    wire.terminate();
    let events = setup.events_of(&pid);
    let start = events.iter().find(|e| e["kind"] == "session.start").unwrap();
    assert_eq!(start["attrs"]["task"], "audit-7", "{start:?}");
    let startup = events.iter().find(|e| e["kind"] == "pg.startup").unwrap();
    assert_eq!(startup["attrs"]["client_task"], "cleanup-1");
    assert!(events
        .iter()
        .any(|e| e["kind"] == "pg.parameter" && e["attrs"]["name"] == "application_name" && e["attrs"]["value"] == "renamed later"));
    assert_eq!(setup.pg.psql("app", "select count(*) from t"), "2", "nothing was deleted");
}

/// Runs a COPY FROM STDIN through `wire`, sending `data` in pieces of `piece` bytes.
fn copy_in(wire: &mut Wire, sql: &str, data: &[u8], piece: usize) {
    wire.send(&[query(sql)]);
    while wire.read().tag != b'G' {}
    let mut messages: Vec<Vec<u8>> = data.chunks(piece).map(|chunk| pg::wire::message(b'd', chunk)).collect();
    messages.push(pg::wire::message(b'c', &[]));
    wire.send(&messages);
    let answer = wire.until_ready(1);
    assert!(answer.iter().all(|m| m.tag != b'E'), "{sql}: {:?}", answer.iter().find_map(|m| m.field(b'M')));
}

#[test]
fn recorded_values_mean_what_they_say() {
    let setup = setup();
    setup.pg.psql("app", "create table notes(id int, note text); grant all on notes to scram_user;");
    let (mut wire, pid) = setup.session(&[]);
    // CSV with a header and a quoted newline; text with the end marker; binary with newline bytes.
    copy_in(&mut wire, "COPY notes FROM STDIN WITH (FORMAT csv, HEADER true)", b"id,note\n1,\"two\nlines\"\n2,plain\n", 5);
    copy_in(&mut wire, "COPY notes FROM STDIN", b"3\tx\n\\.\n", 3);
    let mut binary = b"PGCOPY\n\xff\r\n\0".to_vec();
    binary.extend_from_slice(&[0; 8]);
    for (id, note) in [(4i32, &b"a\nb"[..]), (5, b"\n\n")] {
        binary.extend_from_slice(&2i16.to_be_bytes());
        binary.extend_from_slice(&4i32.to_be_bytes());
        binary.extend_from_slice(&id.to_be_bytes());
        binary.extend_from_slice(&(note.len() as i32).to_be_bytes());
        binary.extend_from_slice(note);
    }
    binary.extend_from_slice(&(-1i16).to_be_bytes());
    copy_in(&mut wire, "COPY notes FROM STDIN WITH (FORMAT binary)", &binary, 7);
    // A binary int4 parameter whose bytes spell "dcba", and a binary int4 result.
    let bind_binary = b"\0\0\0\x01\0\x01\0\x01\0\0\0\x04dcba\0\x01\0\x01";
    let parse_typed = pg::wire::message(b'P', b"\0select $1::int4 + 0\0\0\x01\0\0\0\x17");
    wire.exchange(&[parse_typed.clone(), pg::wire::message(b'B', bind_binary), describe_portal(""), execute(""), sync()], 1);
    wire.exchange(&[parse_typed, pg::wire::message(b'B', bind_binary), execute(""), sync()], 1);
    wire.terminate();

    let events = setup.events_of(&pid);
    let copied: Vec<u64> = events.iter().filter(|e| e["kind"] == "pg.copy_in").map(|e| e["attrs"]["rows"].as_u64().unwrap()).collect();
    let by_target: Vec<u64> = events.iter().filter_map(|e| e["attrs"]["tag"].as_str()?.strip_prefix("COPY ")?.parse().ok()).collect();
    assert_eq!(copied, [2, 1, 2], "rows, not newlines");
    assert_eq!(copied, by_target, "as the target counted them");
    let execute = events.iter().find(|e| e["kind"] == "pg.execute").unwrap();
    assert_eq!(execute["attrs"]["params"][0], 1684234849, "a binary int4 is recorded as the number it is");
    assert_eq!(execute["attrs"]["param_types"][0], 23);
    // Rows of an execution nobody described are kept too, by format (binary of an unknown type
    // as hex).
    let result = events.iter().rfind(|e| e["attrs"]["tag"] == "SELECT 1").unwrap();
    let rows: Value = serde_json::from_str(result["payload_text"].as_str().unwrap()).unwrap();
    assert_eq!(rows["rows"][0][0], "\\x64636261", "{rows}");
    assert_eq!(rows["columns"][0]["format"], 1, "{rows}");
    // Described, the result's column has its type, and the value is the number it is.
    let described = events.iter().filter(|e| e["attrs"]["tag"] == "SELECT 1").nth(1).unwrap();
    let rows: Value = serde_json::from_str(described["payload_text"].as_str().unwrap()).unwrap();
    assert_eq!(rows["rows"][0][0], 1684234849, "{rows}");
    assert_eq!(ran_by_witness(&events), setup.ran_by_target(&pid));
}

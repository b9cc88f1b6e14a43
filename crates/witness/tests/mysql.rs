//! MySQL through witness end to end: a real MariaDB (the test kit's, on a free port in a temp
//! dir), `witness serve` in front of it, and real clients. Each client's answers are compared
//! with the same client's answers directly from the server; every statement and its rows are in
//! the recording; a deny rule refuses `DROP TABLE` with witness's error and the table stays; a
//! held `DELETE` runs only once an approver allows it; tokens are checked; the ledger verifies.

mod pg;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pg::Gateway;
use serde_json::Value;
use witness_testkit::{free_port, MariaDb, APP_DATABASE, NATIVE_PASSWORD, NATIVE_USER};

const RULES: &str = r#"
[[rules]]
name = "no-drop"
groups = ["ai-agents"]
sql = ["drop", "truncate"]
action = "deny"
message = "agents may not drop tables; ask a DBA"

[[rules]]
name = "deletes-need-approval"
groups = ["ai-agents"]
sql = ["delete"]
action = "approve"
approvers = ["dba"]
timeout = "10m"
"#;

struct Setup {
    db: MariaDb,
    gw: Gateway,
    agent: String,
    dba: String,
}

/// MariaDB, and witness in front of it with the connection `mariadb-local` (and `down`, where
/// nothing listens), the rules above and `extra` config.
fn setup(extra: &str) -> Setup {
    let db = MariaDb::start();
    let extra = extra.replace("DB_PORT", &db.port().to_string());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"data_dir = "{data}"
[listen]
mysql = "127.0.0.1:{port}"
api = "127.0.0.1:{api}"
{extra}
{RULES}
[[connections]]
name = "mariadb-local"
protocol = "mysql"
address = "127.0.0.1:{db_port}"
database = "{APP_DATABASE}"
user = "{NATIVE_USER}"
password_env = "WITNESS_TEST_MYSQL_PASSWORD"
tls = "disable"

[[connections]]
name = "down"
protocol = "mysql"
address = "127.0.0.1:{down}"
user = "nobody"
"#,
        data = dir.path().join("data").display(),
        api = free_port(),
        db_port = db.port(),
        down = free_port(),
    );
    let gw = Gateway::launch(dir, port, &config, &[("WITNESS_TEST_MYSQL_PASSWORD", NATIVE_PASSWORD)]);
    let agent = gw.token("claude", &["--groups", "ai-agents"]);
    let dba = gw.token("alice", &["--groups", "dba"]);
    Setup { db, gw, agent, dba }
}

/// The `mariadb` CLI against witness's MySQL listener, as `user` with `password`, in batch mode.
fn mariadb_via(gw: &Gateway, user: &str, password: &str, database: &str) -> Command {
    let mut command = Command::new("mariadb");
    command
        .args(["--no-defaults", "-h", "127.0.0.1", "-P", &gw.port.to_string(), "-u", user, &format!("-p{password}"), database])
        .args(["-N", "-B"])
        .env_remove("MYSQL_PWD")
        .env_remove("MYSQL_HOST");
    command
}

fn run(mut command: Command, sql: &str) -> Output {
    command.args(["-e", sql]).output().expect("the mariadb client runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

impl Setup {
    fn direct(&self, sql: &str) -> Output {
        let mut command = self.db.mariadb(NATIVE_USER, NATIVE_PASSWORD);
        command.args(["-N", "-B"]);
        run(command, sql)
    }

    fn via(&self, sql: &str) -> Output {
        run(mariadb_via(&self.gw, "claude", &self.agent, "mariadb-local"), sql)
    }

    /// Python `code` run with `cur`, a mysql-connector-python cursor of server-side prepared
    /// statements on the agent's connection through witness.
    fn prepared_as_agent(&self, code: &str) -> Output {
        let python = witness_testkit::Python::ensure_venv(&["mysql-connector-python"]);
        let program = format!(
            "import sys, mysql.connector\n\
             conn = mysql.connector.connect(host='127.0.0.1', port=int(sys.argv[1]), user='claude', password=sys.argv[2], \
             database='mariadb-local', use_pure=True, auth_plugin='mysql_native_password')\n\
             cur = conn.cursor(prepared=True)\n{code}\n"
        );
        Command::new(&python).args(["-c", &program, &self.gw.port.to_string(), &self.agent]).output().unwrap()
    }

    fn approvals(&self, token: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_witness"))
            .arg("approvals")
            .args(args)
            .arg("--config")
            .arg(&self.gw.config)
            .env("WITNESS_TOKEN", token)
            .output()
            .unwrap()
    }

    /// Approves the held `statement` once it waits; `meanwhile` runs before the approval.
    fn approve_when_held(&self, statement: &str, meanwhile: impl FnOnce()) {
        let waiting = self.wait_for_approval();
        assert_eq!(waiting["statement"], statement, "{waiting}");
        meanwhile();
        let approved = self.approvals(&self.dba, &["approve", waiting["id"].as_str().unwrap()]);
        assert!(approved.status.success(), "{}", stderr(&approved));
    }

    /// The approvals waiting, once one does (polled, bounded).
    fn wait_for_approval(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.approvals(&self.dba, &["list", "--json"]);
            assert!(out.status.success(), "{}", stderr(&out));
            let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(first) = list.first() {
                return first.clone();
            }
            assert!(Instant::now() < deadline, "no approval waits:\n{}", self.gw.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Events of the session `pick` finds, once every session has ended.
fn events_of(gw: &Gateway, sessions: usize, pick: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let all: Vec<Vec<Value>> = gw.ended_sessions(sessions).iter().map(|s| gw.events(s["id"].as_str().unwrap())).collect();
    all.iter()
        .find(|events| pick(events))
        .cloned()
        .unwrap_or_else(|| panic!("no session has the events looked for: {all:#?}\n{}", gw.log()))
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

#[test]
fn the_mariadb_client_works_through_witness_and_every_statement_is_recorded() {
    let mut s = setup("");

    // Rows as the client prints them directly and through witness.
    let sql = "select id, name, email from customers order by id; select count(*), max(id) from customers";
    let direct = s.direct(sql);
    let via = s.via(sql);
    assert!(via.status.success(), "{}\n{}", stderr(&via), s.gw.log());
    assert_eq!(stdout(&via), stdout(&direct));
    assert!(stdout(&via).contains("grace@example.com"));

    // The version the client sees is the target's.
    let version = s.via("select version()");
    assert_eq!(stdout(&version).trim(), s.db.version().trim_start_matches("5.5.5-"), "{}", stderr(&version));

    // A deny rule: the client gets witness's error, and the table is still there.
    let dropped = s.via("drop table customers");
    assert!(!dropped.status.success());
    assert!(stderr(&dropped).contains("ERROR 1227 (42000)"), "{}", stderr(&dropped));
    assert!(stderr(&dropped).contains("denied by witness rule \"no-drop\": agents may not drop tables; ask a DBA"), "{}", stderr(&dropped));
    assert_eq!(stdout(&s.direct("select count(*) from customers")).trim(), "3");

    // A held DELETE waits, and runs once the DBA approves it.
    let mut child: Child = mariadb_via(&s.gw, "claude", &s.agent, "mariadb-local")
        .args(["-e", "delete from customers where id = 3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    s.approve_when_held("delete from customers where id = 3", || {
        assert_eq!(stdout(&s.direct("select count(*) from customers")).trim(), "3", "not before it is approved");
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the approved DELETE did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{}", String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr));
    assert_eq!(stdout(&s.direct("select group_concat(id order by id) from customers")).trim(), "1,2");

    // Every statement, its rows and its outcome are in the recording.
    let events = events_of(&s.gw, 4, |events| {
        events.iter().any(|e| e["kind"] == "mysql.query" && e["payload_text"].as_str().is_some_and(|p| p.starts_with("select id, name")))
    });
    let kinds = kinds(&events);
    assert_eq!(kinds.first(), Some(&"session.start"));
    assert!(kinds.contains(&"mysql.login"), "{kinds:?}");
    let results: Vec<&Value> = events.iter().filter(|e| e["kind"] == "mysql.result").collect();
    let rows = results.iter().find(|e| e["summary"] == "3 rows").expect("the first result");
    let payload: Value = serde_json::from_str(rows["payload_text"].as_str().unwrap()).unwrap();
    assert_eq!(payload["rows"][1], serde_json::json!(["2", "Grace Hopper", "grace@example.com"]), "{payload}");
    assert_eq!(payload["columns"][2]["table"], "customers");
    assert!(results.iter().any(|e| e["summary"] == "1 rows"), "the second statement's result");

    let denied = events_of(&s.gw, 4, |events| events.iter().any(|e| e["attrs"]["decision"] == "deny"));
    let drop = denied.iter().find(|e| e["kind"] == "mysql.query").unwrap();
    assert_eq!((drop["attrs"]["rule"].as_str(), drop["payload_text"].as_str()), (Some("no-drop"), Some("drop table customers")));
    assert!(!denied.iter().any(|e| e["kind"] == "mysql.result"), "a denied statement has no result from the target");

    let held = events_of(&s.gw, 4, |events| events.iter().any(|e| e["attrs"]["decision"] == "hold"));
    let held_kinds: Vec<&str> = held
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .filter(|k| k.starts_with("mysql.q") || k.starts_with("approval") || k.starts_with("mysql.r"))
        .collect();
    assert_eq!(held_kinds, ["mysql.query", "approval.decided", "mysql.result"]);
    assert_eq!(held.iter().find(|e| e["kind"] == "mysql.result").unwrap()["attrs"]["affected_rows"], 1);

    s.gw.stop_and_verify();
}

#[test]
fn logins_are_checked_and_a_wrong_connection_is_named() {
    let s = setup("");
    let wrong = run(mariadb_via(&s.gw, "claude", "wit_not-a-token", "mariadb-local"), "select 1");
    assert!(stderr(&wrong).contains("ERROR 1045 (28000)"), "{}", stderr(&wrong));
    let other = run(mariadb_via(&s.gw, "alice", &s.agent, "mariadb-local"), "select 1");
    assert!(stderr(&other).contains("ERROR 1045 (28000)"), "another identity's token: {}", stderr(&other));
    let unknown = run(mariadb_via(&s.gw, "claude", &s.agent, "nope"), "select 1");
    assert!(stderr(&unknown).contains("ERROR 1049 (42000)"), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("configured MySQL connections: down, mariadb-local"), "{}", stderr(&unknown));
    let down = run(mariadb_via(&s.gw, "claude", &s.agent, "down"), "select 1");
    assert!(stderr(&down).contains("witness cannot log in to the target of 'down'"), "{}", stderr(&down));
    // Over TLS (the client's handshake follows its TLS request at once).
    let mut tls = mariadb_via(&s.gw, "claude", &s.agent, "mariadb-local");
    tls.args(["--ssl", "--ssl-verify-server-cert=0"]);
    let over_tls = run(tls, "select 42");
    assert_eq!(stdout(&over_tls), "42\n", "{}", stderr(&over_tls));
    let events = events_of(&s.gw, 2, |events| events.iter().any(|e| e["kind"] == "mysql.query" && e["payload_text"] == "select 42"));
    assert!(events.iter().any(|e| e["kind"] == "mysql.login" && e["attrs"]["tls"] == true), "{events:?}");
    // The target's password is nowhere witness writes.
    pg::assert_nowhere_in(&s.gw.data_dir(), NATIVE_PASSWORD);
    assert!(!s.gw.log().contains(NATIVE_PASSWORD));
}

/// The client programs' directory (Python, Node.js and Java workloads).
fn clients_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mysql_clients")
}

/// A client program's JSON (or text) output, directly from MariaDB and through witness, for one
/// workload: `program` gets HOST PORT USER PASSWORD DATABASE appended.
fn both_ways(s: &Setup, developer: &str, program: impl Fn() -> Command) -> (String, String) {
    let run = |port: u16, user: &str, password: &str, database: &str| {
        let out = program().args(["127.0.0.1", &port.to_string(), user, password, database]).output().expect("the client runs");
        assert!(out.status.success(), "{:?} failed:\n{}\n{}\n{}", program(), stdout(&out), stderr(&out), s.gw.log());
        stdout(&out)
    };
    let direct = run(s.db.port(), NATIVE_USER, NATIVE_PASSWORD, APP_DATABASE);
    let via = run(s.gw.port, "dev", developer, "mariadb-local");
    (direct, via)
}

#[test]
fn python_drivers_get_through_witness_what_they_get_directly() {
    let s = setup("");
    let developer = s.gw.token("dev", &["--groups", "developers"]);
    let python = witness_testkit::Python::ensure_venv(&["PyMySQL", "mysqlclient", "mysql-connector-python"]);
    for driver in ["pymysql", "mysqlclient", "connector"] {
        let (direct, via) = both_ways(&s, &developer, || {
            let mut command = Command::new(&python);
            command.arg(clients_dir().join("clients.py")).arg(driver);
            command
        });
        assert_eq!(via, direct, "{driver}");
        assert!(via.contains("grace@example.com") && via.contains("\\u2713"), "{driver}: {via}");
    }
    // The connector's prepared statements ran as such: prepared, then executed with typed values.
    let events = events_of(&s.gw, 3, |events| events.iter().any(|e| e["kind"] == "mysql.prepare"));
    let execute = events
        .iter()
        .find(|e| e["kind"] == "mysql.execute" && e["attrs"]["params"] == serde_json::json!([2]))
        .expect("an execution with its parameter");
    assert_eq!(execute["payload_text"], "select id, name, email from customers where id >= ? order by id");
    // The drivers that can compress, compressing.
    for driver in ["mysqlclient", "connector"] {
        let (direct, via) = both_ways(&s, &developer, || {
            let mut command = Command::new(&python);
            command.arg(clients_dir().join("clients.py")).arg(driver).env("WITNESS_TEST_COMPRESS", "1");
            command
        });
        assert_eq!(via, direct, "{driver}, compressed");
    }
    assert_eq!(compressed_logins(&s.gw, 5), 2, "the compressing drivers agreed on compression with witness");
}

/// How many logins of the sessions so far (once `sessions` have ended) agreed on compression.
fn compressed_logins(gw: &Gateway, sessions: usize) -> usize {
    gw.all_events(sessions).iter().filter(|e| e["kind"] == "mysql.login" && e["attrs"]["compressed"] == true).count()
}

#[test]
fn node_drivers_get_through_witness_what_they_get_directly() {
    let s = setup("");
    let developer = s.gw.token("dev", &["--groups", "developers"]);
    let modules = witness_testkit::NodePackages::ensure("witness-mysql-drivers", &["mysql2@3", "mariadb@3"], &[]);
    for (driver, compress) in [("mysql2", "0"), ("mariadb", "0"), ("mysql2", "1"), ("mariadb", "1")] {
        let (direct, via) = both_ways(&s, &developer, || {
            let mut command = Command::new("node");
            command.arg(clients_dir().join("clients.js")).arg(driver).env("NODE_PATH", modules.join("node_modules"));
            command.env("WITNESS_TEST_COMPRESS", compress);
            command
        });
        assert_eq!(via, direct, "{driver}, compressed: {compress}");
        assert!(via.contains("grace@example.com"), "{driver}: {via}");
    }
    assert_eq!(compressed_logins(&s.gw, 4), 2, "each driver agreed on compression with witness when asked");
}

#[test]
fn the_mariadb_jdbc_driver_gets_through_witness_what_it_gets_directly() {
    let jar = std::path::Path::new("/usr/share/java/mariadb-java-client.jar");
    assert!(jar.is_file(), "Debian's libmariadb-java is not installed (scripts/test installs it)");
    let s = setup("");
    let developer = s.gw.token("dev", &["--groups", "developers"]);
    let (direct, via) = both_ways(&s, &developer, || {
        let mut command = Command::new("java");
        command.arg("-cp").arg(jar).arg(clients_dir().join("Clients.java"));
        command
    });
    assert_eq!(via, direct);
    assert!(via.contains("prepared 3 [[\"3\",\"Alan Turing\",\"alan@example.com\"]]"), "{via}");
    assert!(via.contains("batch 3") && via.contains("duplicate 1062"), "{via}");
    // Server-side prepares: the statement was prepared once and executed with each parameter.
    let events = events_of(&s.gw, 1, |events| events.iter().any(|e| e["kind"] == "mysql.prepare"));
    let executions: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "mysql.execute" && e["payload_text"] == "select id, name, email from customers where id >= ? order by id")
        .collect();
    assert_eq!(
        executions.iter().map(|e| e["attrs"]["params"].clone()).collect::<Vec<_>>(),
        [serde_json::json!([1]), serde_json::json!([2]), serde_json::json!([3])]
    );
    // Compressing (useCompression).
    let (direct, via) = both_ways(&s, &developer, || {
        let mut command = Command::new("java");
        command.arg("-cp").arg(jar).arg(clients_dir().join("Clients.java")).env("WITNESS_TEST_COMPRESS", "1");
        command
    });
    assert_eq!(via, direct, "compressed");
    events_of(&s.gw, 2, |events| events.iter().any(|e| e["kind"] == "mysql.login" && e["attrs"]["compressed"] == true));
}

#[test]
fn a_dump_through_witness_restores_through_witness() {
    // Tools that select their database by name want the connection named as the database.
    let connection = |name: &str| {
        format!(
            "[[connections]]\nname = \"{name}\"\nprotocol = \"mysql\"\naddress = \"127.0.0.1:DB_PORT\"\ndatabase = \"{name}\"\nuser = \"{NATIVE_USER}\"\npassword_env = \"WITNESS_TEST_MYSQL_PASSWORD\"\ntls = \"disable\"\n"
        )
    };
    // mariadb-dump logs in without a database, then selects it.
    let s = setup(&format!("[mysql]\ndefault_connection = \"app\"\n{}{}", connection("app"), connection("restored")));
    s.db.sql(&format!("create database restored; grant all privileges on restored.* to '{NATIVE_USER}'@'127.0.0.1'"));
    let ops = s.gw.token("ops", &["--groups", "operators"]);
    let dump = |port: u16, user: &str, password: &str| {
        let out = Command::new("mariadb-dump")
            .args([
                "--no-defaults",
                "--skip-dump-date",
                "-h",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "-u",
                user,
                &format!("-p{password}"),
                "app",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "mariadb-dump: {}\n{}", stderr(&out), s.gw.log());
        stdout(&out)
    };
    let direct = dump(s.db.port(), NATIVE_USER, NATIVE_PASSWORD);
    let via = dump(s.gw.port, "ops", &ops);
    assert_eq!(via, direct);
    assert!(via.contains("INSERT INTO `customers` VALUES"), "{via}");
    let mut restore = mariadb_via(&s.gw, "ops", &ops, "restored").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    restore.stdin.take().unwrap().write_all(via.as_bytes()).unwrap();
    let restored = restore.wait_with_output().unwrap();
    assert!(restored.status.success(), "restore: {}", stderr(&restored));
    let table = |db: &str| stdout(&s.direct(&format!("select * from {db}.customers order by id")));
    assert_eq!(table("restored"), table("app"));
}

#[test]
fn masked_values_do_not_leave_by_text_rows_binary_rows_errors_or_the_recording() {
    let s = setup("[[masking]]\nname = \"pii\"\ncolumns = [\"customers.email\"]\ndetectors = [\"credit-card\"]\n");
    s.db.sql(&format!(
        "alter table customers add unique (card); create view customer_contacts as select id, email as contact from customers; grant select on app.customer_contacts to '{NATIVE_USER}'@'127.0.0.1'"
    ));
    // Text rows: the column by its rule, the cards by the detector.
    let rows = s.via("select id, email, card from customers order by id");
    assert!(rows.status.success(), "{}", stderr(&rows));
    assert_eq!(stdout(&rows), "1\t[redacted]\t[credit-card]\n2\t[redacted]\t[credit-card]\n3\t[redacted]\t[credit-card]\n");
    let aliased = s.via("select c.email as x from customers c where c.id = 2");
    assert_eq!(stdout(&aliased), "[redacted]\n", "{}", stderr(&aliased));
    // A view names itself as the table: its columns are masked as any column's.
    let view = s.via("select contact from customer_contacts where id = 2");
    assert_eq!(stdout(&view), "[redacted]\n", "{}", stderr(&view));
    // Results whose columns MySQL names by an alias, or by no table, are refused.
    for sql in [
        "select e from (select email as e from customers) t",
        "select name from (select email as name from customers) customers",
        "with customers as (select email as name from customers) select name from customers",
        "select email from customers union select 'x'",
        "select (select email from customers where id = 2) as s",
    ] {
        let out = s.via(sql);
        assert!(!out.status.success(), "{sql}: {}", stdout(&out));
        assert!(stderr(&out).contains("ERROR 1227 (42000)") && stderr(&out).contains("derived table"), "{sql}: {}", stderr(&out));
    }
    // A value kept in a variable would come back under no table's name.
    let variable = s.via("set @v = (select email from customers where id = 2)");
    assert!(stderr(&variable).contains("ERROR 1227 (42000)"), "{}{}", stdout(&variable), stderr(&variable));
    // An error quoting a value: the detector masks it.
    let duplicate = s.via("insert into customers (id, card) values (9, '5555555555554444')");
    assert!(stderr(&duplicate).contains("Duplicate entry '[credit-card]'"), "{}", stderr(&duplicate));
    // Binary rows (server-side prepared statements).
    let out = s.prepared_as_agent(
        r#"cur.execute("select id, email, card from customers where id >= ? order by id", (2,)); print(cur.fetchall())"#,
    );
    assert_eq!(stdout(&out).trim(), "[(2, '[redacted]', '[credit-card]'), (3, '[redacted]', '[credit-card]')]", "{}", stderr(&out));
    // Nothing masked reached the recording either.
    let events = s.gw.all_events(9);
    assert!(events.iter().any(|e| e["kind"] == "mysql.result" && e["attrs"]["masked"]["pii"].is_object()), "masked counts are recorded");
    for secret in ["grace@example.com", "5555555555554444", "378282246310005"] {
        pg::assert_nowhere_in(&s.gw.data_dir(), secret);
    }
}

#[test]
fn kill_reaches_only_the_callers_own_connections() {
    let s = setup("");
    let mallory = s.gw.token("mallory", &["--groups", "developers"]);
    let python = witness_testkit::Python::ensure_venv(&["PyMySQL"]);
    // A sleeps; B (the same identity) kills its query by the id witness greeted A with; mallory
    // cannot, by that id or by the target's thread id, nor by KILL in another form.
    let program = r#"
import sys, threading, pymysql
port, token, other = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def connect(user, password):
    return pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="mariadb-local")
a = connect("claude", token)
cur = a.cursor()
cur.execute("select connection_id()")
target_thread = cur.fetchone()[0]
out = {}
def sleeper():
    c = a.cursor()
    try:
        c.execute("select sleep(60)")
        out["sleep"] = "returned %s" % c.fetchone()[0]
    except pymysql.MySQLError as e:
        out["sleep"] = "failed %d" % e.args[0]
t = threading.Thread(target=sleeper)
t.start()
b = connect("claude", token)
watch = b.cursor()
while True:
    watch.execute("select count(*) from information_schema.processlist where info like 'select sleep%'")
    if watch.fetchone()[0] > 0:
        break
def attempt(conn, sql):
    try:
        conn.cursor().execute(sql)
        return "ok"
    except pymysql.MySQLError as e:
        return "%d %s" % (e.args[0], e.args[1])
m = connect("mallory", other)
out["mallory_witness_id"] = attempt(m, "KILL QUERY %d" % a.thread_id())
out["mallory_target_id"] = attempt(m, "KILL QUERY %d" % target_thread)
out["commented"] = attempt(b, "/* x */ KILL QUERY %d" % a.thread_id())
out["among_others"] = attempt(b, "SELECT 1; KILL QUERY %d" % a.thread_id())
attempt(b, "SET @k = CONCAT('KI', 'LL QUERY %d')" % a.thread_id())
out["prepared_from_text"] = attempt(b, "PREPARE s FROM @k")
out["immediate"] = attempt(b, "EXECUTE IMMEDIATE @k")
# mallory has no rules at all: the quickest path witness takes must refuse it too.
attempt(m, "SET @k = CONCAT('KI', 'LL QUERY %d')" % a.thread_id())
out["mallory_prepared"] = attempt(m, "PREPARE s FROM @k")
out["own"] = attempt(b, "KILL QUERY %d" % a.thread_id())
t.join()
for key in sorted(out):
    print(key, out[key])
"#;
    let out = Command::new(&python).args(["-c", program, &s.gw.port.to_string(), &s.agent, &mallory]).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}\n{}", stderr(&out), s.gw.log());
    assert!(text.contains("mallory_witness_id 1094 Unknown thread id"), "{text}");
    assert!(text.contains("mallory_target_id 1094 Unknown thread id"), "{text}");
    assert!(text.contains("commented 1227 denied by witness rule \"kill\""), "{text}");
    assert!(text.contains("among_others 1227"), "{text}");
    // SQL built at run time may be a KILL no text shows.
    assert!(text.contains("prepared_from_text 1227 denied by witness rule \"kill\""), "{text}");
    assert!(text.contains("immediate 1227 denied by witness rule \"kill\""), "{text}");
    assert!(text.contains("mallory_prepared 1227 denied by witness rule \"kill\""), "{text}");
    // Killed, the sleep ends early: it returns 1, or fails as interrupted (1317).
    assert!(text.contains("own ok") && (text.contains("sleep returned 1") || text.contains("sleep failed 1317")), "{text}");
}

/// What witness cannot read never gets past a rule: an allow-list of reads allows no text it
/// cannot parse, and a SET that names its variable in backquotes still changes the character set
/// (in GBK a backquote can end a character, so what follows would be read two ways), so it is
/// read as unparsed and meets the deny rules.
#[test]
fn text_witness_cannot_read_gets_past_no_rule() {
    let s = setup(
        "[policy]\ndefault = \"deny\"\n[[rules]]\nname = \"reads\"\ngroups = [\"readers\"]\nsql = [\"select\"]\naction = \"allow\"\n",
    );
    let reader = s.gw.token("rita", &["--groups", "readers"]);
    let as_reader = || mariadb_via(&s.gw, "rita", &reader, "mariadb-local");
    let read = run(as_reader(), "SELECT count(*) FROM customers");
    assert!(read.status.success(), "{}", stderr(&read));
    // MariaDB runs a /*! */ comment's text: this is a DROP, which no read rule allows.
    let hidden = run(as_reader(), "DROP TABLE customers /*! */");
    assert!(stderr(&hidden).contains("witness could not classify this statement"), "{}", stderr(&hidden));
    let charset = run(mariadb_via(&s.gw, "claude", &s.agent, "mariadb-local"), "SET `character_set_client` = 'gbk'");
    assert!(stderr(&charset).contains("denied by witness rule \"no-drop\": witness could not classify"), "{}", stderr(&charset));
    assert_eq!(s.db.sql("SHOW TABLES LIKE 'customers'"), "customers");
}

/// A raw client: witness's own login code, pointed at witness, for what no driver at hand sends.
mod raw {
    use witness_proto_mysql::{TargetConnection, TargetLogin};

    pub async fn login(port: u16, user: &str, token: &str, connection: &str) -> TargetConnection {
        login_with(port, user, token, connection, None).await
    }

    /// A raw login that asks for `capabilities` (witness's own choice when None).
    pub async fn login_with(port: u16, user: &str, token: &str, connection: &str, capabilities: Option<u32>) -> TargetConnection {
        let address = format!("127.0.0.1:{port}");
        let login = TargetLogin {
            address: &address,
            user,
            password: token.as_bytes(),
            database: Some(connection),
            tls: None,
            tls_required: false,
            tls_verified: false,
            server_public_key: None,
            client_capabilities: capabilities,
            charset: 45,
            attributes: Vec::new(),
        };
        TargetConnection::login(&login).await.expect("a raw login to witness")
    }

    /// The payloads of one answer, up to and with the packet `last` says ends it.
    pub async fn answer(connection: &mut TargetConnection, last: impl Fn(&[u8], usize) -> bool) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        loop {
            let payload = connection.receive().await.expect("a packet").payload;
            let done = last(&payload, payloads.len());
            payloads.push(payload);
            if done {
                return payloads;
            }
        }
    }

    pub fn is_eof(payload: &[u8]) -> bool {
        payload.first() == Some(&0xFE) && payload.len() < 9
    }

    /// Sends a command and reads its answer: up to an OK, ERR or EOF (COM_STATISTICS's is one
    /// packet of text).
    pub async fn exchange(connection: &mut TargetConnection, command: Vec<u8>) -> Vec<Vec<u8>> {
        connection.command(&command).await.unwrap();
        let one_packet = command[0] == 0x09;
        answer(connection, |p, _| one_packet || matches!(p.first(), Some(0x00 | 0xFF)) || is_eof(p)).await
    }
}

#[test]
fn a_cursors_rows_come_by_fetches_masked_and_recorded() {
    let s = setup("[[masking]]\nname = \"pii\"\ncolumns = [\"customers.email\"]\n");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fetched = runtime.block_on(async {
        let mut c = raw::login(s.gw.port, "claude", &s.agent, "mariadb-local").await;
        let mut prepare = vec![0x16];
        prepare.extend_from_slice(b"select id, email from customers where id >= ? order by id");
        c.command(&prepare).await.unwrap();
        // The OK, one parameter's definition and its EOF, two columns' and their EOF.
        let prepared = raw::answer(&mut c, |p, n| raw::is_eof(p) && n >= 4).await;
        let id = u32::from_le_bytes(prepared[0][1..5].try_into().unwrap());
        // Execute with a read-only cursor: one LONGLONG parameter, 1.
        let mut execute = vec![0x17];
        execute.extend_from_slice(&id.to_le_bytes());
        execute.extend_from_slice(&[1, 1, 0, 0, 0, 0, 1, 0x08, 0]);
        execute.extend_from_slice(&1i64.to_le_bytes());
        c.command(&execute).await.unwrap();
        let opened = raw::answer(&mut c, |p, _| raw::is_eof(p)).await;
        assert_eq!(opened.len(), 4, "the column count, two definitions and an EOF; no rows yet");
        assert_ne!(u16::from_le_bytes([opened[3][3], opened[3][4]]) & 0x40, 0, "the cursor exists");
        let mut rows = Vec::new();
        for _ in 0..2 {
            let mut fetch = vec![0x1C];
            fetch.extend_from_slice(&id.to_le_bytes());
            fetch.extend_from_slice(&2u32.to_le_bytes());
            c.command(&fetch).await.unwrap();
            rows.extend(raw::answer(&mut c, |p, _| raw::is_eof(p)).await.into_iter().filter(|p| !raw::is_eof(p)));
        }
        rows
    });
    assert_eq!(fetched.len(), 3, "two fetches of two rows, three rows in all");
    for row in &fetched {
        let text = String::from_utf8_lossy(row);
        assert!(text.contains("[redacted]") && !text.contains("example.com"), "{text}");
    }
    let events = s.gw.all_events(1);
    let fetches: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "mysql.result" && e["attrs"]["statement"].is_number() && e["attrs"]["rows"].is_number())
        .collect();
    assert_eq!(fetches.iter().map(|e| e["attrs"]["rows"].as_u64().unwrap()).sum::<u64>(), 3, "{fetches:?}");
    assert!(fetches.iter().all(|e| e["payload_text"].as_str().unwrap().contains("[redacted]")));
    pg::assert_nowhere_in(&s.gw.data_dir(), "grace@example.com");
}

#[test]
fn payloads_over_16_mib_cross_witness_both_ways() {
    let s = setup("");
    s.db.sql("set global max_allowed_packet = 67108864");
    // A 17 MiB query, which the client splits into packets, and a 20 MB row, which the server does;
    // as they are, and in compressed packets (witness's with the client).
    let big = "x".repeat(17 << 20);
    let query = format!("select length('{big}'), length(repeat('y', 20000000))");
    let script = format!("{query};\nselect repeat('z', 20000000);\n");
    for compress in [false, true] {
        let mut command = mariadb_via(&s.gw, "claude", &s.agent, "mariadb-local");
        command.arg("--max-allowed-packet=64M").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if compress {
            command.arg("--compress");
        }
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let script = script.clone();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(script.as_bytes()).unwrap();
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success(), "compressed: {compress}\n{}\n{}", stderr(&out), s.gw.log());
        let text = stdout(&out);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(format!("{}\t20000000", 17 << 20).as_str()), "compressed: {compress}");
        let row = lines.next().unwrap_or_default();
        assert!(row.len() == 20_000_000 && row.bytes().all(|b| b == b'z'), "a row of {} bytes (compressed: {compress})", row.len());
    }
    // A 20 MB parameter of a prepared statement.
    let param = s.prepared_as_agent(r#"cur.execute("select length(?)", ("p" * 20000000,)); print(cur.fetchall()[0][0])"#);
    assert_eq!(stdout(&param).trim(), "20000000", "{}", stderr(&param));
    // The record keeps the first 8 MiB of the query's text, and says it was cut; of parameters,
    // what fits in 64 KiB.
    let events = s.gw.all_events(3);
    let execute = events.iter().find(|e| e["kind"] == "mysql.execute").expect("the execution");
    assert_eq!(
        (execute["attrs"]["params"].clone(), execute["attrs"]["params_total"].clone()),
        (serde_json::json!([]), serde_json::json!(1))
    );
    let recorded = events.iter().find(|e| e["kind"] == "mysql.query" && e["attrs"]["text_cut"] == true).expect("the long query, cut");
    assert_eq!(recorded["attrs"]["text_bytes"], query.len());
    assert_eq!(recorded["payload_bytes"], 8 << 20);
}

#[test]
fn a_denied_prepared_statement_never_runs() {
    let s = setup("");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answer = runtime.block_on(async {
        let mut c = raw::login(s.gw.port, "claude", &s.agent, "mariadb-local").await;
        let mut prepare = vec![0x16];
        prepare.extend_from_slice(b"drop table customers");
        c.command(&prepare).await.unwrap();
        let prepared = raw::answer(&mut c, |p, _| p.first() == Some(&0x00) || p.first() == Some(&0xFF)).await;
        let id = u32::from_le_bytes(prepared[0][1..5].try_into().unwrap());
        let mut execute = vec![0x17];
        execute.extend_from_slice(&id.to_le_bytes());
        execute.extend_from_slice(&[0, 1, 0, 0, 0]);
        c.command(&execute).await.unwrap();
        c.receive().await.unwrap().payload
    });
    assert_eq!(answer[0], 0xFF, "an error");
    let message = String::from_utf8_lossy(&answer);
    assert!(message.contains("denied by witness rule \"no-drop\""), "{message}");
    assert_eq!(stdout(&s.direct("select count(*) from customers")).trim(), "3", "the table is still there");
}

#[test]
fn other_commands_are_relayed_and_field_lists_decided() {
    let s = setup(
        "[[rules]]\nname = \"no-cards\"\ntables = [\"cards\"]\nsql = [\"select\"]\naction = \"deny\"\nmessage = \"cards are off limits\"\n",
    );
    s.db.sql(&format!("create table cards (n int); grant select on app.cards to '{NATIVE_USER}'@'127.0.0.1'"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answers = runtime.block_on(async {
        let mut c = raw::login(s.gw.port, "claude", &s.agent, "mariadb-local").await;
        let ping = raw::exchange(&mut c, vec![0x0E]).await;
        let init_db = raw::exchange(&mut c, [&[0x02][..], b"app"].concat()).await;
        let statistics = raw::exchange(&mut c, vec![0x09]).await;
        let set_option = raw::exchange(&mut c, vec![0x1B, 0, 0]).await;
        let field_list = raw::exchange(&mut c, [&[0x04][..], b"customers\0"].concat()).await;
        let denied_list = raw::exchange(&mut c, [&[0x04][..], b"cards\0"].concat()).await;
        (ping, init_db, statistics, set_option, field_list, denied_list)
    });
    let (ping, init_db, statistics, set_option, field_list, denied_list) = answers;
    assert_eq!(ping[0][0], 0x00, "COM_PING: OK");
    assert_eq!(init_db[0][0], 0x00, "COM_INIT_DB: OK");
    assert!(
        String::from_utf8_lossy(&statistics[0]).starts_with("Uptime:"),
        "COM_STATISTICS: {:?}",
        String::from_utf8_lossy(&statistics[0])
    );
    assert!(raw::is_eof(&set_option[0]), "COM_SET_OPTION: EOF");
    assert_eq!(field_list.len(), 5, "four column definitions and an EOF");
    assert!(raw::is_eof(&field_list[4]));
    assert_eq!(denied_list[0][0], 0xFF);
    assert!(String::from_utf8_lossy(&denied_list[0]).contains("cards are off limits"));
    let events = s.gw.all_events(1);
    let commands: Vec<&str> =
        events.iter().filter(|e| e["kind"] == "mysql.command").filter_map(|e| e["attrs"]["command"].as_str()).collect();
    assert_eq!(commands, ["ping", "init_db", "statistics", "set_option", "field_list", "field_list"]);
}

#[test]
fn local_files_are_loaded_only_where_a_rule_allows_it_and_only_the_named_one() {
    let mut s = setup(
        "[[rules]]\nname = \"people-loads\"\ngroups = [\"ai-agents\"]\ntables = [\"people\"]\nsql = [\"load-local\"]\naction = \"allow\"\n",
    );
    s.db.sql("create table people (id int, name varchar(50)); create table other (id int, name varchar(50))");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(&file, "1,ada-local-file-marker\n2,grace\n3,edsger\n").unwrap();
    let load =
        |table: &str, tail: &str| format!("LOAD DATA LOCAL INFILE '{}' INTO TABLE {table} FIELDS TERMINATED BY ','{tail}", file.display());
    let loading = |token: &str, user: &str, sql: &str| {
        let mut command = mariadb_via(&s.gw, user, token, "mariadb-local");
        command.arg("--local-infile=1");
        run(command, sql)
    };
    let count = |table: &str| stdout(&s.direct(&format!("select count(*) from {table}"))).trim().to_string();

    // The rule names the table: the file is loaded, and counted in the recording.
    let loaded = loading(&s.agent, "claude", &load("people", ""));
    assert!(loaded.status.success(), "{}\n{}", stderr(&loaded), s.gw.log());
    assert_eq!(stdout(&s.direct("select group_concat(name order by id) from people")).trim(), "ada-local-file-marker,grace,edsger");

    // Into another table no rule names it, nor for someone no rule is about.
    let refused = loading(&s.agent, "claude", &load("other", ""));
    assert!(stderr(&refused).contains("ERROR 1227 (42000)"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("LOAD DATA LOCAL is off"), "{}", stderr(&refused));
    let refused = loading(&s.dba, "alice", &load("people", ""));
    assert!(stderr(&refused).contains("LOAD DATA LOCAL is off"), "{}", stderr(&refused));
    assert_eq!((count("people"), count("other")), ("3".to_string(), "0".to_string()));

    // Written so that witness cannot read it, the statement is not decided as a load; when the
    // target then asks for the file, witness ends the session rather than send it.
    let hidden = loading(&s.dba, "alice", &load("people", " LINES STARTING BY \"\""));
    assert!(!hidden.status.success());
    assert!(stderr(&hidden).contains("which no rule lets this statement send"), "{}", stderr(&hidden));
    assert_eq!(count("people"), "3", "nothing more was loaded");

    let events = events_of(&s.gw, 4, |events| events.iter().any(|e| e["kind"] == "mysql.local_file"));
    let kinds: Vec<&str> =
        kinds(&events).into_iter().filter(|k| k.starts_with("mysql.") && !["mysql.login", "mysql.command"].contains(k)).collect();
    assert_eq!(kinds, ["mysql.query", "mysql.local_file", "mysql.result"]);
    let sent = events.iter().find(|e| e["kind"] == "mysql.local_file").unwrap();
    assert_eq!(sent["attrs"]["bytes"], std::fs::metadata(&file).unwrap().len());
    assert_eq!(sent["attrs"]["file"], file.display().to_string());
    assert!(!serde_json::to_string(sent).unwrap().contains("ada-local-file-marker"), "file contents are counted, not kept");
    let result = events.iter().find(|e| e["kind"] == "mysql.result").unwrap();
    assert_eq!(result["attrs"]["affected_rows"], 3);
    s.gw.stop_and_verify();
}

#[test]
fn compressing_clients_get_what_they_get_directly() {
    let mut s = setup("");
    // Results of a few rows and of a few MiB, and a refusal, each read through witness's
    // compression as directly through the server's (payloads over 16 MiB: see above).
    let sql = "select id, name, email from customers order by id; \
               select name, repeat(email, 400000) from customers order by id; \
               select repeat('abc', 7000000) is not null";
    let compressed = |mut command: Command| {
        command.arg("--compress");
        command
    };
    let mut direct = s.db.mariadb(NATIVE_USER, NATIVE_PASSWORD);
    direct.args(["-N", "-B"]);
    let direct = run(compressed(direct), sql);
    assert!(direct.status.success(), "{}", stderr(&direct));
    let via = run(compressed(mariadb_via(&s.gw, "claude", &s.agent, "mariadb-local")), sql);
    assert!(via.status.success(), "{}\n{}", stderr(&via), s.gw.log());
    assert_eq!(stdout(&via), stdout(&direct));
    let dropped = run(compressed(mariadb_via(&s.gw, "claude", &s.agent, "mariadb-local")), "drop table customers");
    assert!(stderr(&dropped).contains("denied by witness rule \"no-drop\""), "{}", stderr(&dropped));

    // A driver that compresses: mysql-connector-python, pure Python.
    let python = witness_testkit::Python::ensure_venv(&["mysql-connector-python"]);
    let program = "import sys, mysql.connector\n\
        conn = mysql.connector.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2], password=sys.argv[3], \
        database=sys.argv[4], use_pure=True, compress=True, auth_plugin='mysql_native_password')\n\
        cur = conn.cursor()\n\
        cur.execute('select name, repeat(email, 1000) from customers order by id')\n\
        print([(r[0], len(r[1])) for r in cur.fetchall()])\n";
    let run_python = |port: u16, user: &str, password: &str, database: &str| {
        let out = Command::new(&python).args(["-c", program, &port.to_string(), user, password, database]).output().unwrap();
        assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), s.gw.log());
        stdout(&out)
    };
    let direct = run_python(s.db.port(), NATIVE_USER, NATIVE_PASSWORD, APP_DATABASE);
    assert_eq!(run_python(s.gw.port, "claude", &s.agent, "mariadb-local"), direct);

    let events = events_of(&s.gw, 3, |events| {
        events.iter().any(|e| e["kind"] == "mysql.query" && e["payload_text"].as_str().is_some_and(|p| p.starts_with("select id, name")))
    });
    let login = events.iter().find(|e| e["kind"] == "mysql.login").unwrap();
    assert_eq!(login["attrs"]["compressed"], true, "{login}");
    assert!(events.iter().any(|e| e["kind"] == "mysql.result" && e["summary"] == "3 rows"));
    s.gw.stop_and_verify();
}

#[test]
fn a_caching_sha2_target_gets_the_password_encrypted_to_its_pinned_key() {
    // The test kit's stand-in for a MySQL 8 server (none can run here), whose cache is empty.
    let standin = witness_testkit::CachingSha2Server::start(NATIVE_USER, NATIVE_PASSWORD);
    let connection = |name: &str, key: Option<&std::path::Path>| {
        let key = key.map(|k| format!("server_public_key_file = \"{}\"\n", k.display())).unwrap_or_default();
        format!(
            "[[connections]]\nname = \"{name}\"\nprotocol = \"mysql\"\naddress = \"127.0.0.1:{}\"\nuser = \"{NATIVE_USER}\"\npassword_env = \"WITNESS_TEST_MYSQL_PASSWORD\"\ntls = \"disable\"\n{key}",
            standin.port()
        )
    };
    let mut s = setup(&format!("{}{}", connection("mysql8", Some(standin.public_key())), connection("mysql8-unpinned", None)));
    let pinned = run(mariadb_via(&s.gw, "claude", &s.agent, "mysql8"), "set @a = 1");
    assert!(pinned.status.success(), "{}\n{}", stderr(&pinned), s.gw.log());
    let unpinned = run(mariadb_via(&s.gw, "claude", &s.agent, "mysql8-unpinned"), "set @a = 1");
    assert!(stderr(&unpinned).contains("witness cannot log in to the target of 'mysql8-unpinned'"), "{}", stderr(&unpinned));
    assert!(s.gw.log().contains("server_public_key_file"), "the log says how to let witness in:\n{}", s.gw.log());
    let events = events_of(&s.gw, 2, |events| events.iter().any(|e| e["kind"] == "mysql.query"));
    assert!(events.iter().any(|e| e["kind"] == "mysql.login" && e["summary"].as_str().is_some_and(|t| t.contains("mysql8"))));
    s.gw.stop_and_verify();
}

#[test]
fn a_held_statement_of_a_compressing_pipelining_client_answers_in_order() {
    let s = setup("");
    let modules = witness_testkit::NodePackages::ensure("witness-mysql-drivers", &["mysql2@3", "mariadb@3"], &[]);
    // The npm mariadb driver sends both statements at once, compressed: witness reads the second
    // while the first waits for its approver.
    let program = "const mariadb = require('mariadb');\n\
        const [host, port, user, password, database] = process.argv.slice(1);\n\
        (async () => {\n\
          const conn = await mariadb.createConnection({ host, port: Number(port), user, password, database, pipelining: true, compress: true });\n\
          const [held, after] = await Promise.all([conn.query('delete from customers where id = 3'), conn.query('select count(*) as n from customers')]);\n\
          console.log(JSON.stringify({ deleted: held.affectedRows, left: Number(after[0].n) }));\n\
          await conn.end();\n\
        })().catch((e) => { console.error(e); process.exit(1); });\n";
    let child = Command::new("node")
        .args(["-e", program, "127.0.0.1", &s.gw.port.to_string(), "claude", &s.agent, "mariadb-local"])
        .env("NODE_PATH", modules.join("node_modules"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    s.approve_when_held("delete from customers where id = 3", || {});
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{}", stderr(&out), s.gw.log());
    assert_eq!(stdout(&out).trim(), r#"{"deleted":1,"left":2}"#);
    assert_eq!(compressed_logins(&s.gw, 1), 1);
}

#[test]
fn a_local_file_cut_short_is_recorded_as_such_and_loads_nothing() {
    let mut s = setup(
        "[[rules]]\nname = \"people-loads\"\ngroups = [\"ai-agents\"]\ntables = [\"people\"]\nsql = [\"load-local\"]\naction = \"allow\"\n",
    );
    s.db.sql("create table people (id int, name varchar(50)) engine = InnoDB");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let capabilities = Some(witness_proto_mysql::back::RELAYED);
        let mut c = raw::login_with(s.gw.port, "claude", &s.agent, "mariadb-local", capabilities).await;
        c.command(b"\x03LOAD DATA LOCAL INFILE 'people.csv' INTO TABLE people FIELDS TERMINATED BY ','").await.unwrap();
        let asked = c.receive().await.unwrap().payload;
        assert_eq!(asked, b"\xFBpeople.csv", "the target asks for the file the statement names");
        c.send(b"1,ada\n2,grace\n").await.unwrap();
        // The client leaves before the empty packet that ends the file.
    });
    let events = events_of(&s.gw, 1, |events| events.iter().any(|e| e["kind"] == "mysql.local_file"));
    let sent = events.iter().find(|e| e["kind"] == "mysql.local_file").unwrap();
    assert_eq!(
        (sent["attrs"]["complete"].clone(), sent["attrs"]["bytes"].clone()),
        (serde_json::json!(false), serde_json::json!(14)),
        "{sent}"
    );
    assert!(sent["attrs"]["ended"].as_str().is_some_and(|why| why.contains("client")), "{sent}");
    assert_eq!(stdout(&s.direct("select count(*) from people")).trim(), "0", "the cut load is rolled back");
    s.gw.stop_and_verify();
}

//! PostgreSQL through witness with real clients against a real, ephemeral PostgreSQL: psql (a
//! script of DDL, DML, COPY, transactions, errors and meta-commands), pgbench, tokio-postgres
//! (extended protocol, binary results, prepared statements, cancel) and psycopg 3. Results through
//! witness must equal the results direct, and the recording must hold what happened.

mod pg;

use std::process::Command;
use std::time::{Duration, Instant};

use pg::{assert_nowhere_in, psql, Gateway};
use serde_json::Value;
use witness_testkit::{pg_bin, Postgres, Python, MD5_PASSWORD, SCRAM_PASSWORD};

fn direct(pg: &Postgres, db: &str) -> String {
    format!("host=127.0.0.1 port={} dbname={db} user=scram_user password={SCRAM_PASSWORD}", pg.port())
}

fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
}

#[test]
fn psql_script_through_witness_equals_direct_and_is_recorded() {
    let pg = Postgres::start();
    pg.psql("postgres", "create database direct owner scram_user");
    let mut gw = Gateway::start(&pg, "");
    let token = gw.token("claude", &["--groups", "ai-agents", "--task", "JIRA-42 clean up items"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pg/script.sql");
    let args = ["-v", "ON_ERROR_STOP=0", "-f", script];
    let (_, direct_out, direct_err) = psql(&direct(&pg, "direct"), &args);
    let (_, via_out, via_err) = psql(&gw.conninfo("app", "claude", &token), &args);
    assert!(direct_out.contains("cheese") && direct_out.contains("Table \"public.items\""), "the script ran: {direct_out}");
    // The backend PID in psql's notification line differs between any two sessions.
    let without_pid = |text: &str| text.split("server process with PID").next().unwrap().to_string();
    assert_eq!(without_pid(&via_out), without_pid(&direct_out), "stdout through witness differs from direct");
    assert!(via_out.contains("Asynchronous notification \"witness_channel\" with payload \"hello\""));
    let after_pid = |text: &str| {
        text.split_once("received from server process with PID ").map(|(_, rest)| rest.split_once('\n').unwrap().1.to_string())
    };
    assert_eq!(after_pid(&via_out), after_pid(&direct_out));
    assert_eq!(via_err, direct_err, "errors and notices through witness differ from direct");

    let sessions = gw.ended_sessions(1);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["identity"], "claude");
    assert_eq!(sessions[0]["connection"], "app");
    assert_eq!(sessions[0]["task"], "JIRA-42 clean up items");
    let events = gw.events(sessions[0]["id"].as_str().unwrap());
    let kinds = kinds(&events);
    assert_eq!(kinds.first().map(String::as_str), Some("session.start"));
    assert_eq!(kinds.last().map(String::as_str), Some("session.end"));
    let find = |pred: &dyn Fn(&Value) -> bool| events.iter().find(|e| pred(e)).cloned();
    let insert = find(&|e| e["kind"] == "pg.query" && e["payload_text"].as_str().unwrap_or("").contains("'apple', 1.25"))
        .expect("the insert is recorded");
    assert_eq!(insert["direction"], "request");
    let copy_in = find(&|e| e["kind"] == "pg.copy_in").expect("COPY IN is summarised");
    assert_eq!(
        (copy_in["attrs"]["rows"].as_u64(), copy_in["attrs"]["bytes"].as_u64()),
        (Some(2), Some(30)),
        "two rows; the bytes include psql's end marker"
    );
    let select = find(&|e| e["kind"] == "pg.result" && e["attrs"]["tag"] == "SELECT 4").expect("the select result is recorded");
    let rows: Value = serde_json::from_str(select["payload_text"].as_str().unwrap()).unwrap();
    assert_eq!(rows["rows"][2], serde_json::json!(["3", "cheese", "7.50", null, "2026-01-01"]));
    assert_eq!(rows["columns"][1]["name"], "name");
    let division = find(&|e| e["attrs"]["error"]["sqlstate"] == "22012").expect("the division by zero is recorded");
    assert!(division["summary"].as_str().unwrap().contains("division by zero"));
    assert!(find(&|e| e["attrs"]["error"]["sqlstate"] == "23505").is_some(), "the duplicate key error is recorded");
    let copy_out = find(&|e| e["kind"] == "pg.copy_out").expect("COPY OUT is summarised");
    assert_eq!(copy_out["attrs"]["rows"].as_u64(), Some(5), "five rows, as the target counted them (the header is not a row)");
    assert!(find(&|e| e["kind"] == "pg.notice" && e["summary"] == "notice from a DO block").is_some());
    assert!(find(&|e| e["kind"] == "pg.notification" && e["attrs"]["payload"] == "hello").is_some());
    let capped = find(&|e| e["kind"] == "pg.result" && e["attrs"]["tag"] == "SELECT 3").expect("the generate_series result");
    assert_eq!(capped["attrs"]["rows"].as_u64(), Some(3));

    gw.stop_and_verify();
    assert_nowhere_in(&gw.data_dir(), SCRAM_PASSWORD);
    assert_nowhere_in(&gw.data_dir(), MD5_PASSWORD);
    assert_nowhere_in(&gw.data_dir(), &token);
}

#[test]
fn pgbench_initialises_and_runs_in_every_query_mode() {
    let pg = Postgres::start();
    let mut gw = Gateway::start(&pg, "");
    let token = gw.token("bench-agent", &[]);
    let via = gw.conninfo("app", "bench-agent", &token);
    let pgbench = |args: &[&str]| {
        let out = Command::new(pg_bin("pgbench")).args(args).arg(&via).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "pgbench {args:?} failed:\n{text}\n{}", gw.log());
        text
    };
    pgbench(&["-i", "-s", "1", "-q"]);
    for mode in ["simple", "extended", "prepared"] {
        let out = pgbench(&["-M", mode, "-c", "4", "-j", "2", "-t", "25"]);
        assert!(out.contains("number of transactions actually processed: 100/100"), "{mode}: {out}");
    }
    let direct_count = pg.psql("app", "select count(*) from pgbench_accounts");
    assert_eq!(direct_count, "100000");
    let events = gw.all_events(13);
    let executes = events.iter().filter(|e| e["kind"] == "pg.execute").count();
    // Extended and prepared runs: 4 clients x 25 transactions x 7 statements each.
    assert!(executes >= 2 * 100 * 7, "{executes} executions recorded");
    let copied: u64 = events.iter().filter(|e| e["kind"] == "pg.copy_in").map(|e| e["attrs"]["rows"].as_u64().unwrap()).sum();
    assert_eq!(copied, 100_000, "pgbench -i copies its accounts through witness");
    gw.stop_and_verify();
}

#[test]
fn target_logins_tls_modes_and_errors() {
    let pg = Postgres::start();
    let mut gw = Gateway::start(&pg, "");
    let token = gw.token("claude", &[]);
    let ssl_of_backend = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    for (connection, user, ssl) in
        [("app", "scram_user", "t"), ("app-md5", "md5_user", "f"), ("app-trust", "trust_user", "t"), ("app-verify", "scram_user", "t")]
    {
        let (ok, out, err) = psql(&gw.conninfo(connection, "claude", &token), &["-Atc", &format!("select current_user; {ssl_of_backend}")]);
        assert!(ok, "{connection}: {err}\n{}", gw.log());
        assert_eq!(out.trim(), format!("{user}\n{ssl}"), "{connection}: witness logs in as {user}, TLS to the target {ssl}");
    }
    let (ok, _, err) = psql(&gw.conninfo("app", "claude", "wit_not-a-token"), &["-Atc", "select 1"]);
    assert!(!ok && err.contains("password authentication failed for user \"claude\"") && err.contains("witness token create"), "{err}");
    let (ok, _, err) = psql(&gw.conninfo("nope", "claude", &token), &["-Atc", "select 1"]);
    assert!(!ok && err.contains("no PostgreSQL connection named \"nope\"") && err.contains("app-md5"), "{err}");
    let (ok, _, err) = psql(&gw.conninfo("down", "claude", &token), &["-Atc", "select 1"]);
    assert!(!ok && err.contains("connection \"down\": cannot reach 127.0.0.1:"), "{err}");
    let (ok, out, err) = psql(&format!("{} sslmode=require", gw.conninfo("app", "claude", &token)), &["-Atc", "select 'over tls'"]);
    assert!(ok && out.trim() == "over tls", "clients can use TLS to witness: {err}");
    let (ok, _, _) = psql(&gw.conninfo("app", "claude", &token), &["-Atc", "select 1", "-v", "x=1"]);
    assert!(ok);
    // libpq takes one level of backslashes off a quoted conninfo value; the options string itself
    // escapes spaces with another.
    let with_task =
        format!("{} options='-c witness.task=JIRA-7\\\\ rotate\\\\ keys -c statement_timeout=5s'", gw.conninfo("app", "claude", &token));
    let (ok, _, err) = psql(&with_task, &["-Atc", "select 1"]);
    assert!(ok, "{err}");
    let sessions = gw.ended_sessions(8);
    assert!(sessions.iter().any(|s| s["task"] == "JIRA-7 rotate keys"), "the task from options is recorded: {sessions:?}");
    let down = sessions.iter().find(|s| s["connection"] == "down").expect("the failed session is recorded");
    assert!(down["end_reason"].as_str().unwrap().starts_with("target unavailable"), "{down}");
    gw.stop_and_verify();
}

#[test]
fn a_revoked_token_ends_its_live_session() {
    let pg = Postgres::start();
    let gw = Gateway::start(&pg, "");
    let token = gw.token("claude", &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&gw.conninfo("app", "claude", &token), tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        assert_eq!(client.query_one("select 1::int4", &[]).await.unwrap().get::<_, i32>(0), 1);
        let tokens = gw.witness(&["token", "list", "--json"]);
        let tokens: Value = serde_json::from_slice(&tokens.stdout).unwrap();
        let id = tokens[0]["id"].as_str().unwrap().to_string();
        assert!(gw.witness(&["token", "revoke", &id]).status.success());
        // The session ends within the revocation poll; query until it does (bounded).
        let deadline = Instant::now() + Duration::from_secs(15);
        let error = loop {
            match client.query_one("select 1::int4", &[]).await {
                Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(_) => panic!("the session outlived its revoked token"),
                Err(e) => break e,
            }
        };
        let _ = connection.await;
        let text = format!("{error:?}");
        assert!(text.contains("revoked") || error.is_closed(), "{text}");
        let (ok, _, err) = psql(&gw.conninfo("app", "claude", &token), &["-Atc", "select 1"]);
        assert!(!ok && err.contains("password authentication failed"), "a revoked token cannot log in: {err}");
    });
    let sessions = gw.ended_sessions(1);
    assert!(sessions.iter().any(|s| s["end_reason"].as_str().unwrap_or("").contains("revoked")), "{sessions:?}");
}

#[test]
fn tokio_postgres_extended_protocol_binary_results_and_cancel() {
    let pg = Postgres::start();
    pg.psql("postgres", "create database direct owner scram_user");
    let gw = Gateway::start(&pg, "");
    let token = gw.token("claude", &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let via = gw.conninfo("app", "claude", &token);
    let run = |conninfo: String| {
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client
                .batch_execute(
                    "create table kinds (id int primary key, name text, data bytea, ratio float8, ok bool, at timestamptz, amount numeric)",
                )
                .await
                .unwrap();
            let insert = client
                .prepare("insert into kinds (id, name, data, ratio, ok, at) values ($1, $2, $3, $4, $5, '2026-11-22 10:00:00+00')")
                .await
                .unwrap();
            for i in 0..20i32 {
                let name = format!("name {i} with 'quotes'");
                client.execute(&insert, &[&i, &name, &vec![i as u8, 0, 255], &(i as f64 / 3.0), &(i % 2 == 0)]).await.unwrap();
            }
            let rows =
                client.query("select id, name, data, ratio, ok, at::text from kinds where id >= $1 order by id", &[&5i32]).await.unwrap();
            let rendered: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{}|{}|{:?}|{}|{}|{}",
                        r.get::<_, i32>(0),
                        r.get::<_, String>(1),
                        r.get::<_, Vec<u8>>(2),
                        r.get::<_, f64>(3),
                        r.get::<_, bool>(4),
                        r.get::<_, String>(5)
                    )
                })
                .collect();
            let error = client.query("select * from missing_table", &[]).await.unwrap_err();
            let in_tx = client.simple_query("begin; select 1; commit").await.unwrap().len();
            (rendered, error.code().map(|c| c.code().to_string()), in_tx)
        })
    };
    let through = run(via.clone());
    let directly = run(direct(&pg, "direct"));
    assert_eq!(through.0.len(), 15);
    assert_eq!(through, directly, "results through witness equal results direct");

    // Cancel: a long query is cancelled through witness's remapped key.
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&via, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let cancel = client.cancel_token();
        let sleeping = tokio::spawn(async move { client.query("select pg_sleep(60)", &[]).await });
        let deadline = Instant::now() + Duration::from_secs(20);
        while pg.psql("app", "select count(*) from pg_stat_activity where query = 'select pg_sleep(60)' and state = 'active'") != "1" {
            assert!(Instant::now() < deadline, "the query never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let error = sleeping.await.unwrap().unwrap_err();
        assert_eq!(error.code().map(|c| c.code()), Some("57014"), "{error:?}");
    });
    let events = gw.all_events(2);
    assert!(events.iter().any(|e| e["kind"] == "pg.cancel"), "the cancel request is recorded");
    let execute = events
        .iter()
        .find(|e| {
            e["kind"] == "pg.execute"
                && e["payload_text"].as_str().unwrap_or("").starts_with("insert into kinds")
                && e["attrs"]["params"][0] == 7
        })
        .expect("executions are recorded with their parameters");
    assert_eq!(execute["attrs"]["params"][1], "name 7 with 'quotes'");
}

#[test]
fn psycopg_results_through_witness_equal_direct() {
    let python = Python::ensure_venv(&["psycopg[binary]"]);
    let pg = Postgres::start();
    pg.psql("postgres", "create database direct owner scram_user");
    let gw = Gateway::start(&pg, "");
    let token = gw.token("py-agent", &["--task", "psycopg check"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pg/psycopg_check.py");
    let run = |conninfo: String| {
        let out = Command::new(&python).arg(script).arg(conninfo).output().unwrap();
        assert!(out.status.success(), "psycopg script failed: {}\n{}", String::from_utf8_lossy(&out.stderr), gw.log());
        String::from_utf8(out.stdout).unwrap()
    };
    let through = run(gw.conninfo("app", "py-agent", &token));
    let directly = run(direct(&pg, "direct"));
    assert!(through.contains("\"copy_rows\": 10") && through.contains("\"after_copy\": 13"), "{through}");
    assert_eq!(through, directly);
    let sessions = gw.ended_sessions(1);
    assert!(sessions.iter().all(|s| s["task"] == "psycopg check"));
}

#[test]
fn cleartext_tokens_large_results_pipelining_and_target_termination() {
    let pg = Postgres::start();
    let gw = Gateway::start(&pg, "[postgres]\nauth = \"password\"\nmax_rows_per_statement = 50\n");
    let token = gw.token("claude", &[]);
    // Loopback: the token is accepted as a cleartext password; application_name names the task.
    let conninfo = format!("{} application_name=JIRA-9", gw.conninfo("app", "claude", &token));
    let (ok, out, err) =
        psql(&conninfo, &["-Atc", "select count(*), sum(length(r)) from (select repeat('x', 1000) as r from generate_series(1, 20000)) t"]);
    assert!(ok && out.trim() == "20000|20000000", "{out} {err}");
    let (ok, out, err) = psql(&conninfo, &["-Atc", "select g, repeat('y', 1000) from generate_series(1, 20000) g"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 20000, "a 20 MB result streams through witness");
    // A valid token given with another identity's user name: the refusal names the token's.
    let (ok, _, err) = psql(&gw.conninfo("app", "alice", &token), &["-Atc", "select 1"]);
    assert!(!ok && err.contains("the token is for \"claude\"; connect with user=claude"), "{err}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        // tokio-postgres pipelines concurrent queries on one connection.
        let values: Vec<i32> = (0..20).collect();
        let params: Vec<[&(dyn tokio_postgres::types::ToSql + Sync); 1]> =
            values.iter().map(|v| [v as &(dyn tokio_postgres::types::ToSql + Sync)]).collect();
        let queries: Vec<_> = params.iter().map(|p| client.query_one("select $1::int4 * 2", p)).collect();
        let answers: Vec<i32> = futures_join(queries).await.into_iter().map(|r| r.unwrap().get(0)).collect();
        assert_eq!(answers, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        // The target ends the session: the client sees the error and the session ends.
        let pid: i32 = client.query_one("select pg_backend_pid()", &[]).await.unwrap().get(0);
        pg.psql("app", &format!("select pg_terminate_backend({pid})"));
        let error = client.query_one("select 1", &[]).await.unwrap_err();
        assert!(format!("{error:?}").contains("57P01") || error.is_closed(), "{error:?}");
        let _ = connection.await;
    });

    let sessions = gw.ended_sessions(3);
    assert!(sessions.iter().all(|s| s["task"] == "JIRA-9"), "{sessions:?}");
    assert!(sessions.iter().any(|s| s["end_reason"] == "the target closed the connection"), "{sessions:?}");
    let events = gw.all_events(3);
    let big =
        events.iter().find(|e| e["kind"] == "pg.result" && e["attrs"]["tag"] == "SELECT 20000").expect("the large result is recorded");
    assert_eq!(
        (big["attrs"]["rows"].as_u64(), big["attrs"]["rows_recorded"].as_u64()),
        (Some(20000), Some(50)),
        "rows are capped, the count is not"
    );
    let pipelined = events.iter().filter(|e| e["kind"] == "pg.execute" && e["payload_text"] == "select $1::int4 * 2").count();
    assert_eq!(pipelined, 20);
}

/// Awaits futures concurrently on one task (so their requests share the connection's pipeline).
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, future) in futures.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => outputs[i] = Some(out),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

#[test]
fn shutdown_ends_live_sessions_cleanly_and_large_binds_pass() {
    let pg = Postgres::start();
    let mut gw = Gateway::start(&pg, "");
    let token = gw.token("claude", &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&gw.conninfo("app", "claude", &token), tokio_postgres::NoTls).await.unwrap();
        let connection = tokio::spawn(connection);
        // PostgreSQL takes up to 65535 parameters (an unsigned count); so must witness.
        let values: Vec<i32> = (0..40_000).collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("${i}::int4")).collect();
        let sql = format!("select array_length(array[{}], 1)", placeholders.join(","));
        let n: i32 = client.query_one(sql.as_str(), &params).await.unwrap().get(0);
        assert_eq!(n, 40_000);

        gw.stop_and_verify();
        let error = client.query_one("select 1", &[]).await.unwrap_err();
        assert!(format!("{error:?}").contains("57P01") || error.is_closed(), "{error:?}");
        let _ = connection.await;
    });
    let sessions = gw.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["end_reason"], "witness is shutting down", "{sessions:?}");
    let events = gw.events(sessions[0]["id"].as_str().unwrap());
    let big = events.iter().find(|e| e["kind"] == "pg.execute").expect("the large execution is recorded");
    let params = big["attrs"]["params"].as_array().unwrap();
    assert!(!params.is_empty() && params.len() < 40_000, "parameters are recorded up to a byte budget: {}", params.len());
    assert_eq!(params[0], 0, "binary parameters are decoded by their type");
    assert_eq!(big["attrs"]["params_total"], 40_000, "and the event says how many there were");
}

//! The review API and console end to end: `witness serve` in front of an ephemeral PostgreSQL
//! (and, for the browser, an ephemeral sshd), sessions made by real psql and ssh clients, and
//! callers of every role. The API test checks each endpoint for each role (forbidden reads are
//! refused and leak nothing), browser logins with CSRF, the audit trail of views, metrics and
//! the OpenAPI document. The browser test drives the embedded console in headless Chromium
//! (playwright-core): log in, filter, open an SQL session and a shell replay, approve a statement
//! a waiting psql then completes.

mod pg;

use std::path::Path;
use std::process::{Command, Stdio};

use pg::{
    assert_nowhere_in, finish, index_edits_named, make_index_edits, poll, psql, spawn_psql, ssh_connection, Gateway, MADE_UP_SESSION,
};
use serde_json::{json, Value};
use witness_testkit::{
    free_port, ssh_client_options, OidcProvider, Postgres, SshKeyPair, Sshd, WebhookReceiver, CONSOLE_CLIENT, CONSOLE_PEOPLE,
    SCRAM_PASSWORD,
};

const ROLES: &str = r#"
[[rules]]
name = "deletes-need-approval"
sql = ["delete-without-where"]
action = "approve"
approvers = ["dba"]
timeout = "10m"

[roles]
admin = ["platform"]
auditor = ["security"]
approver = ["dba"]
"#;

/// A blocking HTTP client for the API, with an optional browser login (cookie and CSRF token).
struct Http {
    base: String,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

struct Answer {
    status: u16,
    body: String,
    set_cookie: Option<String>,
    location: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie { cookie: &'a str, csrf: Option<&'a str> },
}

impl Http {
    fn new(port: u16) -> Http {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Redirects are answers to check, not to follow.
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Http { base: format!("http://127.0.0.1:{port}"), runtime, client }
    }

    fn call(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => request = request.bearer_auth(token),
            Auth::Cookie { cookie, csrf } => {
                request = request.header("cookie", cookie);
                if let Some(csrf) = csrf {
                    request = request.header("x-csrf-token", csrf);
                }
            }
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        self.runtime.block_on(async {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
            let (set_cookie, location) = (header("set-cookie"), header("location"));
            Answer { status, body: response.text().await.unwrap(), set_cookie, location }
        })
    }

    fn get(&self, path: &str, token: &str) -> Answer {
        self.call("GET", path, Auth::Bearer(token), None)
    }

    fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.call("POST", path, Auth::Bearer(token), Some(body))
    }

    /// GET that must answer 200 with JSON.
    fn ok(&self, path: &str, token: &str) -> Value {
        let answer = self.get(path, token);
        assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
        answer.json()
    }
}

struct Tokens {
    admin: String,
    auditor: String,
    approver: String,
    agent: String,
}

fn tokens(gw: &Gateway) -> Tokens {
    Tokens {
        admin: gw.token("pat", &["--groups", "platform"]),
        auditor: gw.token("sam", &["--groups", "security"]),
        approver: gw.token("dana", &["--groups", "dba"]),
        agent: gw.token("claude", &["--groups", "ai-agents", "--task", "JIRA-42 fix the report"]),
    }
}

/// The id of the first waiting approval `token` sees, once there is one.
fn waiting_approval(http: &Http, token: &str) -> Value {
    poll("an approval", || http.ok("/api/approvals", token).as_array().and_then(|list| list.first().cloned()))
}

#[test]
fn the_api_answers_each_role_and_records_every_view() {
    let pg = Postgres::start();
    pg.psql(
        "app",
        "create table orders(id int, note text); insert into orders values (1, 'first'), (2, 'second'); grant all on orders to scram_user;",
    );
    let api_port = free_port();
    let gw = Gateway::start(&pg, &format!("api = \"127.0.0.1:{api_port}\"\n{ROLES}"));
    let t = tokens(&gw);
    let http = Http::new(api_port);

    // An agent's session, with a task, a SELECT and an error.
    let (ok, out, err) = psql(
        &gw.conninfo("app", "claude", &t.agent),
        &["-v", "ON_ERROR_STOP=0", "-c", "select id, note from orders order by id", "-c", "select * from no_such_table"],
    );
    assert!(out.contains("second") && err.contains("no_such_table"), "{ok} {out}{err}");
    let sessions = gw.ended_sessions(1);
    let sql_id = sessions[0]["id"].as_str().unwrap().to_string();

    // No credential: 401 everywhere but the public parts.
    let reads = [
        "/api/me".to_string(),
        "/api/sessions".into(),
        format!("/api/sessions/{sql_id}"),
        format!("/api/sessions/{sql_id}/events"),
        format!("/api/sessions/{sql_id}/asciicast"),
        "/api/audit".into(),
        "/api/verify".into(),
        "/api/approvals".into(),
        "/api/tokens".into(),
    ];
    for path in &reads {
        let answer = http.call("GET", path, Auth::None, None);
        assert_eq!(answer.status, 401, "GET {path} without a token: {}", answer.body);
        assert!(answer.json()["error"].as_str().unwrap().contains("Bearer"), "{}", answer.body);
        let answer = http.get(path, "wit_not-a-token");
        assert_eq!(answer.status, 401, "GET {path} with a bad token: {}", answer.body);
    }
    // An agent (no role): 403 everywhere but its own held requests, and nothing of the
    // recording in the answer.
    assert_eq!(http.ok("/api/approvals", &t.agent), json!([]), "an agent lists its own held requests (none)");
    for path in reads.iter().filter(|path| *path != "/api/approvals") {
        let answer = http.get(path, &t.agent);
        assert_eq!(answer.status, 403, "GET {path} as an agent: {}", answer.body);
        assert!(answer.body.contains("claude has no role"), "{}", answer.body);
        assert!(!answer.body.contains("orders") && !answer.body.contains("JIRA-42"), "nothing leaks: {}", answer.body);
    }
    let answer = http.post("/api/tokens", &t.agent, json!({"identity": "x"}));
    assert_eq!(answer.status, 403, "{}", answer.body);
    let answer = http.call("POST", "/api/login", Auth::None, Some(json!({"token": t.agent})));
    assert_eq!((answer.status, answer.set_cookie.is_none()), (403, true), "agents cannot log in to the console: {}", answer.body);

    // An approver: approvals and verification, not recordings or tokens.
    assert_eq!(http.ok("/api/me", &t.approver)["roles"], json!(["approver"]));
    assert_eq!(http.ok("/api/approvals", &t.approver), json!([]));
    assert!(http.ok("/api/verify", &t.approver)["ok"].as_bool().unwrap());
    for path in ["/api/sessions".to_string(), format!("/api/sessions/{sql_id}/events"), "/api/audit".into(), "/api/tokens".into()] {
        let answer = http.get(&path, &t.approver);
        assert_eq!(answer.status, 403, "GET {path} as an approver: {}", answer.body);
        assert!(!answer.body.contains("orders"), "{}", answer.body);
    }

    // An auditor: sessions with every filter, events paged, the audit trail; not tokens.
    assert_eq!(http.ok("/api/me", &t.auditor)["roles"], json!(["auditor"]));
    let listed = |query: &str| -> Vec<String> {
        let page = http.ok(&format!("/api/sessions?{query}"), &t.auditor);
        page["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
    };
    let one = vec![sql_id.clone()];
    for query in [
        "task=JIRA-42",
        "identity=claude",
        "connection=app",
        "protocol=postgres",
        "q=NO_SUCH_TABLE",
        "status=closed",
        "since=0",
        "until=2999-01-01T00:00:00Z",
    ] {
        assert_eq!(listed(query), one, "filter {query}");
    }
    for query in ["task=JIRA-43", "identity=pat", "connection=app-md5", "protocol=ssh", "q=nothing-like-this", "status=open", "until=0"] {
        assert!(listed(query).is_empty(), "filter {query} matches nothing");
    }
    let answer = http.get("/api/sessions?status=sleeping", &t.auditor);
    assert_eq!(answer.status, 400, "{}", answer.body);
    let session = http.ok(&format!("/api/sessions/{sql_id}"), &t.auditor);
    assert_eq!(
        (session["identity"].as_str(), session["protocol"].as_str(), session["status"].as_str()),
        (Some("claude"), Some("postgres"), Some("closed"))
    );
    assert_eq!(session["terminal"], false);
    assert!(["verified", "pending"].contains(&session["verify"].as_str().unwrap()), "{session}");
    // Once a checkpoint covers its end (one a second here), the ended session is verified.
    poll("the session's verify badge", || (http.ok(&format!("/api/sessions/{sql_id}"), &t.auditor)["verify"] == "verified").then_some(()));
    assert_eq!(http.get("/api/sessions/0192f0c4-6b7e-7a3c-9d2e-5f1a2b3c4d5e", &t.auditor).status, 404);
    assert_eq!(http.get("/api/sessions/not-an-id", &t.auditor).status, 400);
    let answer = http.get(&format!("/api/sessions/{sql_id}/asciicast"), &t.auditor);
    assert_eq!(answer.status, 404, "an SQL session has no terminal: {}", answer.body);

    let all = http.ok(&format!("/api/sessions/{sql_id}/events?limit=1000"), &t.auditor);
    let all = all["events"].as_array().unwrap().clone();
    assert_eq!(all.len() as u64, session["events"].as_u64().unwrap());
    let mut paged = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let path = match after {
            Some(seq) => format!("/api/sessions/{sql_id}/events?limit=2&after={seq}"),
            None => format!("/api/sessions/{sql_id}/events?limit=2"),
        };
        let page = http.ok(&path, &t.auditor);
        paged.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_u64() {
            Some(seq) => after = Some(seq),
            None => break,
        }
    }
    assert_eq!(paged, all, "pages of 2 add up to the whole session");
    let results = http.ok(&format!("/api/sessions/{sql_id}/events?kinds=pg.result"), &t.auditor);
    let results = results["events"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0]["attrs"]["rows"], 2);
    let rows: Value = serde_json::from_str(results[0]["payload_text"].as_str().unwrap()).unwrap();
    assert_eq!(rows["rows"], json!([["1", "first"], ["2", "second"]]));
    assert_eq!(results[1]["attrs"]["error"]["sqlstate"], "42P01");

    // The audit trail is read from the index, which follows the ledger within milliseconds.
    let viewed = |events: &[Value], what: &str| -> Vec<Value> {
        events.iter().filter(|e| e["kind"] == "recording.viewed" && e["what"] == what).cloned().collect()
    };
    let audit = audit_when(&http, &t.auditor, |events| {
        viewed(events, "events").len() >= 3
            && !viewed(events, "session").is_empty()
            && events.iter().filter(|e| e["kind"] == "recording.searched").count() >= 2
    });
    let events = audit["events"].as_array().unwrap();
    let views = viewed(events, "events");
    assert_eq!(views.len(), 3, "the reads from the start (not later pages) are views: {audit}");
    assert!(views.iter().all(|v| v["actor"] == "sam" && v["session"] == sql_id.as_str()), "{audit}");
    // The session's facts were read many times above (the badge was polled): one view covers them.
    let session_views = viewed(events, "session");
    assert_eq!(session_views.len(), 1, "{audit}");
    assert!(session_views[0]["actor"] == "sam" && session_views[0]["session"] == sql_id.as_str(), "{audit}");
    let searches: Vec<&Value> = audit["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "recording.searched").collect();
    assert_eq!(searches.len(), 2, "each text search is recorded once: {audit}");
    assert!(searches.iter().any(|e| e["what"] == "text \"NO_SUCH_TABLE\""), "{audit}");
    // A later page alone, without a read from the start, is a view too.
    let later = http.ok(&format!("/api/sessions/{sql_id}/events?after=0"), &t.admin);
    assert!(!later["events"].as_array().unwrap().is_empty());
    audit_when(&http, &t.auditor, |events| events.iter().any(|e| e["kind"] == "recording.viewed" && e["actor"] == "pat"));
    assert_eq!(http.get("/api/tokens", &t.auditor).status, 403, "auditors do not manage tokens");

    // An admin: tokens (create, list, revoke; the secret answered once and never listed), and
    // any approval. Each is in the audit trail.
    let created =
        http.post("/api/tokens", &t.admin, json!({"identity": "ci-bot", "groups": ["ai-agents"], "ttl": "1h", "task": "nightly"}));
    assert_eq!(created.status, 200, "{}", created.body);
    let created = created.json();
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(created["expires"].is_string(), "{created}");
    let listed = http.ok("/api/tokens", &t.admin);
    assert!(listed["tokens"].as_array().unwrap().iter().any(|t| t["id"] == created["id"]));
    assert!(!listed.to_string().contains(&secret), "a listing never shows a secret");
    assert_eq!(http.post("/api/tokens", &t.admin, json!({"identity": "bad name!"})).status, 400);
    assert_eq!(http.post("/api/tokens", &t.admin, json!({"identity": "x", "ttl": "soon"})).status, 400);
    let (ok, _, err) = psql(&gw.conninfo("app", "ci-bot", &secret), &["-c", "select 1"]);
    assert!(ok, "the new token works: {err}");
    let revoked = http.post(&format!("/api/tokens/{}/revoke", created["id"].as_str().unwrap()), &t.admin, json!({}));
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(revoked.json()["revoked"].is_string());
    let (ok, _, _) = psql(&gw.conninfo("app", "ci-bot", &secret), &["-c", "select 1"]);
    assert!(!ok, "a revoked token is refused");
    assert_eq!(http.post("/api/tokens/tok_nope/revoke", &t.admin, json!({})).status, 404);

    let waiting = spawn_psql(&gw.conninfo("app", "claude", &t.agent), "delete from orders");
    let approval = waiting_approval(&http, &t.approver);
    assert_eq!((approval["statement"].as_str(), approval["requester"].as_str()), (Some("delete from orders"), Some("claude")));
    assert_eq!(approval["task"], "JIRA-42 fix the report");
    let id = approval["id"].as_str().unwrap();
    assert_eq!(http.ok("/api/approvals", &t.admin).as_array().unwrap().len(), 1, "admins see every approval");
    let answer = http.post(&format!("/api/approvals/{id}/approve"), &t.auditor, json!({}));
    assert_eq!(answer.status, 403, "auditors do not decide: {}", answer.body);
    let answer = http.post(&format!("/api/approvals/{id}/approve"), &t.admin, json!({}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["decided_by"], "pat");
    let (ok, out, err) = finish(waiting);
    assert!(ok && out.contains("DELETE 2"), "the approved DELETE ran: {out}{err}");

    // A browser login: cookie and CSRF token; a POST without the token is refused.
    let login = http.call("POST", "/api/login", Auth::None, Some(json!({"token": t.admin})));
    assert_eq!(login.status, 200, "{}", login.body);
    let set_cookie = login.set_cookie.clone().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let csrf = login.json()["csrf"].as_str().unwrap().to_string();
    let me = http.call("GET", "/api/me", Auth::Cookie { cookie: &cookie, csrf: None }, None);
    assert_eq!((me.status, me.json()["identity"].as_str()), (200, Some("pat")));
    assert_eq!(me.json()["csrf"], csrf.as_str());
    let body = Some(json!({"identity": "from-browser"}));
    let forged = http.call("POST", "/api/tokens", Auth::Cookie { cookie: &cookie, csrf: None }, body.clone());
    assert_eq!(forged.status, 403, "no CSRF token: {}", forged.body);
    let forged = http.call("POST", "/api/tokens", Auth::Cookie { cookie: &cookie, csrf: Some("guess") }, body.clone());
    assert_eq!(forged.status, 403, "a wrong CSRF token: {}", forged.body);
    let made = http.call("POST", "/api/tokens", Auth::Cookie { cookie: &cookie, csrf: Some(&csrf) }, body);
    assert_eq!(made.status, 200, "{}", made.body);
    let logout = http.call("POST", "/api/logout", Auth::Cookie { cookie: &cookie, csrf: Some(&csrf) }, None);
    assert_eq!(logout.status, 204, "{}", logout.body);
    assert_eq!(http.call("GET", "/api/me", Auth::Cookie { cookie: &cookie, csrf: None }, None).status, 401, "the login ended");

    let audit = audit_when(&http, &t.admin, |events| {
        events.iter().any(|e| e["kind"] == "token.created" && e["what"].as_str().unwrap().contains("from-browser"))
            && events.iter().any(|e| e["kind"] == "login.refused")
    });
    let kinds: Vec<&str> = audit["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["recording.viewed", "token.created", "token.revoked", "approval.decided", "console.login", "login.refused"] {
        assert!(kinds.contains(&kind), "{kind} is in the audit trail: {kinds:?}");
    }
    // The revoked token's login, refused on the PostgreSQL listener, names who it claimed to be.
    let refused_on = |listener: &str| {
        let what = format!("{listener} login: ");
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "login.refused" && e["what"].as_str().unwrap().starts_with(&what))
            .cloned()
    };
    let refused = refused_on("postgres").expect("the PostgreSQL refusal is recorded");
    assert_eq!(refused["actor"], "ci-bot", "{refused}");
    assert!(!refused.to_string().contains(&secret), "the refused secret is not recorded");
    // So are the API's refusals of a bad bearer token.
    let refused = refused_on("api").expect("the API's refusal is recorded");
    assert!(!refused.to_string().contains("wit_not-a-token"), "{refused}");
    let times: Vec<i64> = audit["events"].as_array().unwrap().iter().map(|e| e["time_ns"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let first = http.ok("/api/audit?limit=1", &t.admin);
    assert_eq!(first["events"].as_array().unwrap().len(), 1);
    let older = http.ok(&format!("/api/audit?before={}", first["events"][0]["time_ns"]), &t.admin);
    assert_eq!(older["events"].as_array().unwrap().len(), kinds.len() - 1, "before= pages back");

    // A connection whose target is down: the session does not start, and it is counted.
    let (ok, _, err) = psql(&gw.conninfo("down", "claude", &t.agent), &["-c", "select 1"]);
    assert!(!ok, "the session did not start: {err}");

    // Metrics: counts only.
    let metrics = http.call("GET", "/metrics", Auth::None, None);
    assert_eq!(metrics.status, 200);
    for line in [
        "witness_requests_total{protocol=\"postgres\",decision=\"hold\"} 1",
        "witness_connection_requests_total{connection=\"app\",decision=\"hold\"} 1\n",
        "witness_connection_requests_total{connection=\"app-md5\",decision=\"allow\"} 0\n",
        "witness_target_failures_total{connection=\"down\"} 1\n",
        "witness_target_failures_total{connection=\"app\"} 0\n",
        "witness_approvals_waiting 0",
        "witness_ledger_append_seconds_bucket{le=\"+Inf\"}",
        "# TYPE witness_ledger_append_seconds histogram",
        "witness_live_sessions",
    ] {
        assert!(metrics.body.contains(line), "/metrics has {line}:\n{}", metrics.body);
    }
    let allowed = metric(&metrics.body, "witness_requests_total{protocol=\"postgres\",decision=\"allow\"}");
    assert!(allowed >= 3.0, "{}", metrics.body);
    assert!(metric(&metrics.body, "witness_ledger_bytes_total") > 1000.0, "{}", metrics.body);
    assert!(!metrics.body.contains("claude") && !metrics.body.contains("orders"), "no names in metrics");
    assert_eq!(metric(&metrics.body, "witness_ledger_write_failed"), 0.0, "{}", metrics.body);
    // The revoked token's login above was refused; series exist before anything happens in them.
    assert!(metric(&metrics.body, "witness_auth_failures_total{protocol=\"postgres\"}") >= 1.0, "{}", metrics.body);
    assert!(metrics.body.contains("witness_auth_failures_total{protocol=\"ssh\"} "), "{}", metrics.body);
    assert!(metrics.body.contains("witness_live_sessions{protocol=\"ssh\"} "), "{}", metrics.body);
    assert!(metric(&metrics.body, "witness_ledger_unsealed_seconds") >= 0.0, "{}", metrics.body);

    // Probes for supervisors and load balancers: no login, and ready while the ledger writes.
    let health = http.call("GET", "/healthz", Auth::None, None);
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    let ready = http.call("GET", "/readyz", Auth::None, None);
    assert_eq!(ready.status, 200, "{}", ready.body);
    let ready: Value = serde_json::from_str(&ready.body).unwrap();
    assert_eq!(ready, serde_json::json!({ "ready": true, "problems": [] }));

    // The OpenAPI document: every documented path is served (a missing route would fall through
    // to the 404 that names the document).
    let document = http.call("GET", "/api/openapi.json", Auth::None, None).json();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{paths:?}");
    for (path, operations) in paths {
        let concrete = path.replace("{id}", "x");
        for method in operations.as_object().unwrap().keys() {
            let answer = http.call(&method.to_uppercase(), &concrete, Auth::Bearer(&t.admin), Some(json!({})));
            assert!(
                answer.status != 405 && !answer.body.contains("no such API endpoint"),
                "{method} {path} is documented and served: {} {}",
                answer.status,
                answer.body
            );
        }
    }
    // The console is served by witness itself, framed by nobody.
    let page = http.call("GET", "/", Auth::None, None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/assets/app.js"), "{}", page.body);
    assert_eq!(http.call("GET", "/assets/app.js", Auth::None, None).status, 200);
    assert_eq!(http.call("GET", "/assets/other.js", Auth::None, None).status, 404);

    let data = gw.data_dir();
    drop(http);
    let mut gw = gw;
    gw.stop_and_verify();
    assert_nowhere_in(&data, SCRAM_PASSWORD);
    assert_nowhere_in(&data, &t.admin);
    assert_nowhere_in(&data, &secret);
}

/// An admin ends an agent's live session, saying why: only an admin may, a reason is required,
/// the audit trail has it first, the client is told who and why, and the session's end records it.
#[test]
fn an_admin_ends_a_live_session_and_says_why() {
    let pg = Postgres::start();
    let api_port = free_port();
    let gw = Gateway::start(&pg, &format!("api = \"127.0.0.1:{api_port}\"\n{ROLES}"));
    let t = tokens(&gw);
    let http = Http::new(api_port);

    let agent = spawn_psql(&gw.conninfo("app", "claude", &t.agent), "select pg_sleep(600)");
    let live = poll("the agent's live session", || {
        let page = http.ok("/api/sessions", &t.auditor);
        page["sessions"].as_array().unwrap().iter().find(|s| s["live"] == true).cloned()
    });
    assert_eq!(live["status"], "open");
    let id = live["id"].as_str().unwrap().to_string();
    let end = format!("/api/sessions/{id}/end");
    let why = json!({"reason": "runaway query on the billing replica"});

    for token in [&t.agent, &t.auditor, &t.approver] {
        let answer = http.post(&end, token, why.clone());
        assert_eq!(answer.status, 403, "only an admin ends sessions: {}", answer.body);
    }
    let answer = http.post(&end, &t.admin, json!({"reason": "  "}));
    assert_eq!(answer.status, 400, "a reason is required: {}", answer.body);
    assert!(answer.body.contains("say why"), "{}", answer.body);
    assert_eq!(http.post(&format!("/api/sessions/{MADE_UP_SESSION}/end"), &t.admin, why.clone()).status, 404);
    let answer = http.post(&end, &t.admin, why.clone());
    assert_eq!(answer.status, 200, "{}", answer.body);

    let (ok, _, err) = finish(agent);
    assert!(!ok, "the client's session ended");
    assert!(err.contains("an administrator (pat) ended this session: runaway query on the billing replica"), "the client is told: {err}");
    let ended = poll("the session's end", || {
        let session = http.ok(&format!("/api/sessions/{id}"), &t.auditor);
        (session["status"] == "closed").then_some(session)
    });
    assert_eq!(ended["live"], false);
    assert_eq!(ended["end_reason"], "an administrator (pat) ended this session: runaway query on the billing replica");
    let answer = http.post(&end, &t.admin, why);
    assert_eq!(answer.status, 409, "an ended session cannot be ended again: {}", answer.body);

    let audit = audit_when(&http, &t.admin, |events| events.iter().any(|e| e["kind"] == "session.terminated"));
    let entry = audit["events"].as_array().unwrap().iter().find(|e| e["kind"] == "session.terminated").unwrap().clone();
    assert_eq!((entry["actor"].as_str(), entry["session"].as_str()), (Some("pat"), Some(id.as_str())), "{entry}");
    assert_eq!(entry["what"], "runaway query on the billing replica");
    let terminated = audit["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "session.terminated").count();
    assert_eq!(terminated, 1, "refused attempts are not recorded as ends");
}

#[test]
fn recordings_open_only_with_a_reason_where_the_config_asks_for_one() {
    let pg = Postgres::start();
    let api_port = free_port();
    let gw = Gateway::start(&pg, &format!("api = \"127.0.0.1:{api_port}\"\n{ROLES}\n[review]\nrequire_reason = true\n"));
    let t = tokens(&gw);
    let http = Http::new(api_port);
    let (ok, _, err) = psql(&gw.conninfo("app", "claude", &t.agent), &["-c", "select 1"]);
    assert!(ok, "{err}");
    let id = gw.ended_sessions(1)[0]["id"].as_str().unwrap().to_string();

    // The list shows what sessions there are; opening one, or searching them, takes a reason.
    assert_eq!(http.get("/api/sessions", &t.auditor).status, 200);
    for path in [format!("/api/sessions/{id}"), format!("/api/sessions/{id}/events"), "/api/sessions?q=select".to_string()] {
        let answer = http.get(&path, &t.auditor);
        assert_eq!(answer.status, 428, "{path}: {}", answer.body);
        assert!(answer.body.contains("X-Witness-Reason"), "{}", answer.body);
    }
    let with_reason = |path: &str, reason: &str| {
        let request = http.client.get(format!("{}{path}", http.base)).bearer_auth(&t.auditor).header("x-witness-reason", reason);
        http.runtime.block_on(async { request.send().await.unwrap().status().as_u16() })
    };
    assert_eq!(with_reason(&format!("/api/sessions/{id}/events"), "INC-7%20%E2%80%94%20billing%20report"), 200);
    assert_eq!(with_reason(&format!("/api/sessions/{id}/events"), "   "), 428, "a blank reason is none");

    // The CLI asks for one too, and passes it on.
    let out = gw.witness(&["sessions", "show", &id]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--read-reason"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gw.witness(&["--read-reason", "INC-8 audit", "sessions", "show", &id]).status.success());

    let audit = audit_when(&http, &t.auditor, |events| events.iter().filter(|e| e["reason"].is_string()).count() >= 2);
    let reasons: Vec<&str> = audit["events"].as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"INC-7 — billing report"), "{audit}");
    assert!(reasons.contains(&"INC-8 audit"), "{audit}");
}

/// A `[[review.rules]]` rule: a covered session's contents open to a reader only under a grant by
/// another reviewer of the rule's groups (never the reader, never an outsider), for everyone
/// including admins; asking, deciding and reading under the grant are in the audit trail.
#[test]
fn reading_a_covered_recording_takes_another_reviewers_grant() {
    let pg = Postgres::start();
    let api_port = free_port();
    let rule = "[[review.rules]]\nname = \"app-recordings\"\nconnections = [\"app\"]\napprovers = [\"platform\"]\nwindow = \"1h\"\n";
    let gw = Gateway::start(&pg, &format!("api = \"127.0.0.1:{api_port}\"\n{ROLES}\n{rule}"));
    let t = tokens(&gw);
    let outsider = gw.token("eve", &["--groups", "security"]);
    let http = Http::new(api_port);
    for connection in ["app", "app-trust"] {
        let (ok, _, err) = psql(&gw.conninfo(connection, "claude", &t.agent), &["-c", "select 1"]);
        assert!(ok, "{err}");
    }
    let sessions = gw.ended_sessions(2);
    let id_of = |c: &str| sessions.iter().find(|s| s["connection"] == c).unwrap()["id"].as_str().unwrap().to_string();
    let (covered, open) = (id_of("app"), id_of("app-trust"));

    assert_eq!(http.get(&format!("/api/sessions/{open}/events"), &t.auditor).status, 200, "no rule covers app-trust");
    let refused = http.get(&format!("/api/sessions/{covered}/events"), &t.auditor);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["access"]["rule"], "app-recordings");
    assert!(refused.json()["access"]["request"].is_null());
    assert_eq!(http.get(&format!("/api/sessions/{covered}/events"), &t.admin).status, 403, "admins too");

    let ask = |token: &str, body: Value| http.call("POST", &format!("/api/sessions/{covered}/access"), Auth::Bearer(token), Some(body));
    assert_eq!(ask(&t.auditor, json!({})).status, 400, "a reason is needed");
    let asked = ask(&t.auditor, json!({ "reason": "INC-9 billing" }));
    assert_eq!(asked.status, 200, "{}", asked.body);
    let request = asked.json();
    assert_eq!((request["status"].as_str(), request["reader"].as_str()), (Some("pending"), Some("sam")));
    let id = request["id"].as_str().unwrap().to_string();
    let waiting = http.get(&format!("/api/sessions/{covered}/events"), &t.auditor).json();
    assert_eq!(waiting["access"]["request"]["id"], id.as_str(), "the refusal names the request waiting");

    let decide = |token: &str, verb: &str| {
        http.call("POST", &format!("/api/access/{id}/{verb}"), Auth::Bearer(token), Some(json!({ "reason": "ok" })))
    };
    assert_eq!(decide(&t.auditor, "approve").status, 403, "never the reader");
    assert_eq!(decide(&outsider, "approve").status, 403, "never outside the rule's groups");
    assert!(http.ok("/api/access", &outsider).as_array().unwrap().is_empty(), "an outsider sees nothing to decide");
    assert_eq!(http.ok("/api/access", &t.admin).as_array().unwrap().len(), 1);
    let granted = decide(&t.admin, "approve");
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.json()["status"], "granted");
    assert_eq!(http.get(&format!("/api/sessions/{covered}/events"), &t.auditor).status, 200, "read under the grant");
    // A search never reaches a covered session, grant or not: its matches would tell what it holds.
    let found = http.ok("/api/sessions?q=select", &t.auditor);
    let ids: Vec<&str> = found["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!((ids, found["total"].as_u64()), (vec![open.as_str()], Some(1)), "{found}");
    assert_eq!(http.get(&format!("/api/sessions/{covered}/events"), &outsider).status, 403, "the grant is the reader's alone");

    let audit = audit_when(&http, &t.admin, |events| {
        ["recording.access_requested", "recording.access_decided"].iter().all(|k| events.iter().any(|e| e["kind"] == *k))
            && events.iter().any(|e| e["kind"] == "recording.viewed" && e["what"].as_str().unwrap_or("").contains(&id))
    });
    let requested = audit["events"].as_array().unwrap().iter().find(|e| e["kind"] == "recording.access_requested").unwrap().clone();
    assert_eq!(requested["reason"], "INC-9 billing", "{requested}");
}

/// A held request is announced to the `[[notify]]` webhooks (witness's JSON to one that fails at
/// first and is retried, Slack's shape to another), the requester sees it in its own list, the
/// approver's reason reaches the requester's client and the record, and the decision is
/// announced too.
#[test]
fn held_requests_reach_the_webhooks_and_the_approvers_reason_reaches_the_client() {
    let pg = Postgres::start();
    pg.psql("app", "create table orders(id int); insert into orders values (1), (2); grant all on orders to scram_user;");
    let receiver = WebhookReceiver::start(1);
    let dir = tempfile::tempdir().unwrap();
    let slack_url = dir.path().join("slack-url");
    std::fs::write(&slack_url, format!("{}\n", receiver.url("/slack/T000/B000/secret-part"))).unwrap();
    let api_port = free_port();
    let extra = format!(
        "api = \"127.0.0.1:{api_port}\"\n{ROLES}\n[[rules]]\nname = \"no-drops\"\nsql = [\"drop\"]\naction = \"deny\"\n\n[console]\npublic_url = \"https://witness.example/\"\n\n[[notify]]\nurl = \"{}\"\n\n[[notify]]\nurl_file = \"{}\"\nformat = \"slack\"\n",
        receiver.url("/flaky"),
        slack_url.display()
    );
    let gw = Gateway::start(&pg, &extra);
    let t = tokens(&gw);
    let http = Http::new(api_port);

    let waiting = spawn_psql(&gw.conninfo("app", "claude", &t.agent), "delete from orders");
    let approval = waiting_approval(&http, &t.approver);
    let id = approval["id"].as_str().unwrap().to_string();
    let mine = http.ok("/api/approvals", &t.agent);
    assert_eq!(mine.as_array().unwrap().len(), 1, "the requester lists its own held request: {mine}");
    assert_eq!(mine[0]["id"], id.as_str());
    assert_eq!(http.ok("/api/approvals", &t.auditor), json!([]), "neither an approver nor the requester: nothing");

    let posts = |path: &str, count: usize| -> Vec<Value> {
        poll(&format!("{count} POSTs to {path}"), || {
            let got: Vec<Value> = receiver
                .received()
                .iter()
                .map(|line| serde_json::from_str::<Value>(line).unwrap())
                .filter(|post| post["path"].as_str().unwrap().starts_with(path))
                .collect();
            (got.len() >= count).then_some(got)
        })
    };
    // The JSON webhook failed once (500) and got the same notice again.
    let flaky = posts("/flaky", 2);
    assert_eq!((flaky[0]["status"].as_u64(), flaky[1]["status"].as_u64()), (Some(500), Some(200)), "{flaky:?}");
    assert_eq!(flaky[0]["body"], flaky[1]["body"], "a retry sends the same notice");
    assert_eq!(flaky[1]["content_type"], "application/json");
    let held: Value = serde_json::from_str(flaky[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(held["event"], "approval.held");
    assert_eq!(held["link"], "https://witness.example/#/approvals");
    let a = &held["approval"];
    assert_eq!(
        (a["id"].as_str(), a["requester"].as_str(), a["connection"].as_str(), a["rule"].as_str(), a["statement"].as_str()),
        (Some(id.as_str()), Some("claude"), Some("app"), Some("deletes-need-approval"), Some("delete from orders"))
    );
    assert_eq!(a["task"], "JIRA-42 fix the report");
    let slack: Value = serde_json::from_str(posts("/slack/", 1)[0]["body"].as_str().unwrap()).unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(text.starts_with("claude (task JIRA-42 fix the report) asks to run on app: delete from orders."), "{text}");
    assert!(text.ends_with("<https://witness.example/#/approvals|Open in witness>"), "{text}");

    let reason = "use the cleanup job, not an agent";
    let denied = http.post(&format!("/api/approvals/{id}/deny"), &t.approver, json!({ "reason": reason }));
    assert_eq!(denied.status, 200, "{}", denied.body);
    assert_eq!(denied.json()["reason"], reason);
    let (ok, _, err) = finish(waiting);
    assert!(!ok, "the denied statement did not run");
    assert!(err.contains(&format!("denied by dana (witness approval {id}, rule \"deletes-need-approval\"): {reason}")), "{err}");
    assert_eq!(pg.psql("app", "select count(*) from orders").trim(), "2", "nothing was deleted");

    let decided: Value = serde_json::from_str(posts("/flaky", 3)[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(decided["event"], "approval.decided");
    let a = &decided["approval"];
    assert_eq!((a["status"].as_str(), a["decided_by"].as_str(), a["reason"].as_str()), (Some("denied"), Some("dana"), Some(reason)));
    let session = gw.ended_sessions(1)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(decided["link"], format!("https://witness.example/#/sessions/{session}"));
    let slack: Value = serde_json::from_str(posts("/slack/", 2)[1]["body"].as_str().unwrap()).unwrap();
    assert!(slack["text"].as_str().unwrap().contains(&format!("denied by dana: {reason}")), "{slack}");

    let recorded = gw.events(&session).into_iter().find(|e| e["kind"] == "approval.decided").expect("approval.decided");
    assert_eq!((recorded["attrs"]["by"].as_str(), recorded["attrs"]["reason"].as_str()), (Some("dana"), Some(reason)));
    let audit = audit_when(&http, &t.admin, |events| events.iter().any(|e| e["kind"] == "approval.decided"));
    assert!(audit["events"].as_array().unwrap().iter().any(|e| e["what"] == format!("denied {id}: {reason}").as_str()), "{audit}");
    // Approved with a reason: the statement runs and the client is told who let it and why.
    let again = spawn_psql(&gw.conninfo("app", "claude", &t.agent), "delete from orders");
    let id = waiting_approval(&http, &t.approver)["id"].as_str().unwrap().to_string();
    let approved = http.post(&format!("/api/approvals/{id}/approve"), &t.approver, json!({ "reason": "one-off cleanup" }));
    assert_eq!(approved.status, 200, "{}", approved.body);
    let (ok, out, err) = finish(again);
    assert!(ok && out.contains("DELETE 2"), "{out}{err}");
    assert!(err.contains(&format!("NOTICE:  witness approval {id} was approved by dana: one-off cleanup")), "{err}");
    assert!(!gw.log().contains("secret-part"), "the webhook's address is not logged whole");

    // The sessions list marks what was refused and what was held.
    let (ok, _, err) = psql(&gw.conninfo("app", "claude", &t.agent), &["-c", "drop table orders"]);
    assert!(!ok && err.contains("no-drops"), "{err}");
    let listed = poll("three ended sessions", || {
        let page = http.ok("/api/sessions", &t.auditor);
        let sessions = page["sessions"].as_array().unwrap().clone();
        (sessions.len() == 3 && sessions.iter().all(|s| s["status"] == "closed")).then_some(sessions)
    });
    let mut marks: Vec<(u64, u64)> = listed.iter().map(|s| (s["denied"].as_u64().unwrap(), s["held"].as_u64().unwrap())).collect();
    marks.sort();
    assert_eq!(marks, [(0, 1), (0, 1), (1, 0)], "two held deletes, one denied drop: {listed:#?}");
}

/// Someone with access to the data dir edits the index while witness runs: a session's identity,
/// task and connection, another session's row deleted, a row made up, an event summary changed.
/// The API shows the sessions as their records say, never an edited fact as `verified`; its
/// verification finds every edit, records it in the audit trail, and rebuilds the index.
#[test]
fn an_edited_index_is_never_shown_as_verified() {
    let pg = Postgres::start();
    pg.psql("app", "create table orders(id int, note text); insert into orders values (1, 'first'); grant all on orders to scram_user;");
    let api_port = free_port();
    let gw = Gateway::start(&pg, &format!("api = \"127.0.0.1:{api_port}\"\n{ROLES}"));
    let t = tokens(&gw);
    let http = Http::new(api_port);
    for sql in ["select id, note from orders order by id", "select count(*) from orders", "select 1"] {
        let (ok, _, err) = psql(&gw.conninfo("app", "claude", &t.agent), &["-c", sql]);
        assert!(ok, "{sql}: {err}");
    }
    // Oldest first: the session to edit, the one whose row goes, one left alone.
    let ids: Vec<String> = gw.ended_sessions(3).iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    let view = |id: &str| http.ok(&format!("/api/sessions/{id}"), &t.auditor);
    let facts = |s: &Value| {
        json!([s["identity"], s["connection"], s["protocol"], s["task"], s["client_addr"], s["started"], s["ended"], s["events"]])
    };
    let mut recorded = std::collections::HashMap::new();
    for id in &ids {
        let session = poll("the session's verify badge", || Some(view(id)).filter(|s| s["verify"] == "verified"));
        recorded.insert(id.clone(), facts(&session));
    }
    assert_eq!(view(&ids[0])["identity"], "claude");
    // A read of a session's facts is in the audit trail.
    audit_when(&http, &t.auditor, |events| {
        events
            .iter()
            .any(|e| e["kind"] == "recording.viewed" && e["what"] == "session" && e["session"] == ids[0].as_str() && e["actor"] == "sam")
    });

    make_index_edits(&gw.data_dir(), &ids[0], &ids[1]);

    // Whatever the API shows now, and while the index is checked and rebuilt: a session badged
    // verified has the facts it was recorded with, and the edited session's facts are its records'.
    let check = |what: &str, session: &Value| {
        let id = session["id"].as_str().unwrap();
        if session["verify"] == "verified" {
            let Some(facts_recorded) = recorded.get(id) else { panic!("{what}: a session never recorded is shown verified: {session}") };
            assert_eq!(&facts(session), facts_recorded, "{what}: a verified session shows other facts than recorded: {session}");
        }
    };
    let edited_view = view(&ids[0]);
    check("the edited session", &edited_view);
    assert_eq!(&facts(&edited_view), &recorded[&ids[0]], "its facts are read from its records: {edited_view}");
    for query in ["", "?identity=alice", "?q=payday", "?task=routine", "?connection=app-md5"] {
        for session in http.ok(&format!("/api/sessions{query}"), &t.auditor)["sessions"].as_array().unwrap() {
            check(&format!("GET /api/sessions{query}"), session);
            assert_ne!(session["identity"], "alice", "{session}");
        }
    }
    match http.get(&format!("/api/sessions/{MADE_UP_SESSION}"), &t.auditor) {
        answer if answer.status == 200 => assert_eq!(answer.json()["verify"], "failed", "a made-up row: {}", answer.body),
        answer => assert_eq!(answer.status, 404, "once the index is rebuilt: {}", answer.body),
    }
    let events = http.ok(&format!("/api/sessions/{}/events", ids[0]), &t.auditor);
    let query = events["events"].as_array().unwrap().iter().find(|e| e["kind"] == "pg.query").unwrap().clone();
    assert_eq!(query["summary"], "select id, note from orders order by id", "events are shown as recorded");

    // The verification finds every edit, says so in the log and the audit trail, and rebuilds.
    // Verifications start on requests that answer a verify badge or status, so ask for one too.
    let audit = poll("the index.altered event", || {
        http.ok("/api/verify", &t.auditor);
        let audit = http.ok("/api/audit?limit=1000", &t.auditor);
        audit["events"].as_array().unwrap().iter().any(|e| e["kind"] == "index.altered").then_some(audit)
    });
    let altered = audit["events"].as_array().unwrap().iter().find(|e| e["kind"] == "index.altered").unwrap().clone();
    assert_eq!(altered["actor"], "witness");
    assert!(altered["what"].as_str().unwrap().contains("the index was rebuilt from the segments"), "{altered}");
    let trail = http.ok("/api/sessions?protocol=audit", &t.auditor)["sessions"][0]["id"].as_str().unwrap().to_string();
    let record = http.ok(&format!("/api/sessions/{trail}/events?kinds=index.altered"), &t.auditor)["events"][0].clone();
    let differences: Vec<&str> = record["attrs"]["differences"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    for says in index_edits_named(&ids[0], &ids[1]) {
        assert!(differences.iter().any(|d| d.contains(&says)), "the audit trail names {says:?}: {differences:#?}");
    }
    assert_eq!(record["attrs"]["rebuilt"], true, "{record}");
    assert!(gw.log().contains("the ledger's index differs from its records"), "{}", gw.log());

    // Rebuilt: every session is back as recorded, the made-up one gone, and all verify again.
    poll("the rebuilt index", || {
        let listed = http.ok("/api/sessions", &t.auditor);
        let sessions = listed["sessions"].as_array().unwrap();
        sessions.iter().for_each(|s| check("after the rebuild", s));
        let ids_listed: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
        let all_back = ids.iter().all(|id| ids_listed.contains(&id.as_str())) && !ids_listed.contains(&MADE_UP_SESSION);
        (all_back && sessions.iter().all(|s| s["verify"] == "verified")).then_some(())
    });
    assert_eq!(http.ok("/api/sessions?q=payday", &t.auditor)["total"], 0);
    poll("a clean verification", || http.ok("/api/verify", &t.auditor)["ok"].as_bool().unwrap().then_some(()));
    drop(http);
    let mut gw = gw;
    gw.stop_and_verify();
}

/// Runs one of the console's browser scripts (playwright-core in headless Chromium) with `env`;
/// it must succeed and print `passed`.
fn run_browser_script(script: &str, env: &[(&str, &str)], passed: &str, gw: &Gateway) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&chromium).exists(), "the browser tests need Chromium at {chromium} (scripts/test installs Debian's chromium)");
    let out = Command::new("node")
        .arg(script)
        .current_dir(witness_api::CONSOLE_NODE_PROJECT)
        .envs(env.iter().copied())
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.contains(passed), "{script} failed:\n{report}\n{}", gw.log());
}

/// The audit trail once `done` holds for its entries (bounded).
fn audit_when(http: &Http, token: &str, done: impl Fn(&[Value]) -> bool) -> Value {
    poll("the audit trail", || {
        let audit = http.ok("/api/audit?limit=1000", token);
        done(audit["events"].as_array().unwrap()).then_some(audit)
    })
}

/// The value of a metric line `name value`.
fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

#[test]
fn a_reviewer_finds_replays_and_approves_in_the_browser() {
    let pg = Postgres::start();
    pg.psql("app", "create table orders(id int, customer text); insert into orders values (1, 'ada'), (2, 'grace'); grant all on orders to scram_user;");
    let sshd = Sshd::start();
    let api_port = free_port();
    let ssh_port = free_port();
    let ssh_connection = format!("ssh = \"127.0.0.1:{ssh_port}\"\n{}", ssh_connection("web", &sshd, &sshd.host_public_key()));
    // The [listen] keys first (extra_toml follows `postgres = …`), then the SSH connection, rules, roles.
    // Recordings of app-trust open only with a grant from a dba other than their reader.
    let rule = "[[review.rules]]\nname = \"trusted-recordings\"\nconnections = [\"app-trust\"]\napprovers = [\"dba\"]\nwindow = \"1h\"\n";
    let gw = Gateway::start(&pg, &format!("api = \"127.0.0.1:{api_port}\"\n{ssh_connection}{ROLES}{rule}"));
    let t = tokens(&gw);
    let admin = gw.token("pat", &["--groups", "platform,dba"]);

    // An SQL session with a SELECT, and markup that would run if the console inserted recorded
    // text as HTML.
    let hostile = "select '<img src=x onerror=\"document.title=''pwned''\">' as note";
    let (ok, _, err) = psql(&gw.conninfo("app", "claude", &t.agent), &["-c", "select id, customer from orders order by id", "-c", hostile]);
    assert!(ok, "{err}");
    // A shell session with a terminal, under `script` (a pty for ssh -tt).
    let key = SshKeyPair::generate(gw.dir.path(), "claude-key", "ed25519");
    let out = gw.witness(&[
        "identity",
        "add-key",
        "claude",
        key.private.with_extension("pub").to_str().unwrap(),
        "--groups",
        "ai-agents",
        "--task",
        "OPS-7 look at the disk",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ssh_line = format!("ssh -tt {} web@127.0.0.1", ssh_client_options(&key.private, ssh_port).join(" "));
    let mut shell = Command::new("script")
        .args(["-qec", &ssh_line, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = shell.stdin.take().unwrap();
        std::thread::spawn(move || stdin.write_all(b"echo disk-$((6*7))\nexit 0\n"));
    }
    let shell = shell.wait_with_output().unwrap();
    assert!(shell.status.success() && String::from_utf8_lossy(&shell.stdout).contains("disk-42"), "the shell session ran");
    let payroll = gw.token("claude", &["--groups", "ai-agents", "--task", "PAYROLL-5"]);
    let (ok, _, err) = psql(&gw.conninfo("app-trust", "claude", &payroll), &["-c", "select 'covered-marker-77' as note"]);
    assert!(ok, "{err}");
    gw.ended_sessions(3);
    // A DELETE that waits for approval, from another agent's psql that is still waiting.
    let cleaner = gw.token("codex", &["--groups", "ai-agents", "--task", "CLEANUP-1"]);
    let waiting = spawn_psql(&gw.conninfo("app", "codex", &cleaner), "delete from orders");
    let http = Http::new(api_port);
    waiting_approval(&http, &t.approver);
    // A session that stays open until the admin ends it from its page.
    let stuck = gw.token("looper", &["--groups", "ai-agents", "--task", "STUCK-9"]);
    let looping = spawn_psql(&gw.conninfo("app", "looper", &stuck), "select pg_sleep(600)");
    poll("the live session", || {
        let page = http.ok("/api/sessions?task=STUCK-9", &admin);
        page["sessions"].as_array().unwrap().iter().any(|s| s["live"] == true).then_some(())
    });

    let url = format!("http://127.0.0.1:{api_port}");
    let mut env = vec![
        ("WITNESS_URL", url.as_str()),
        ("WITNESS_ADMIN_TOKEN", admin.as_str()),
        ("WITNESS_AGENT_TOKEN", t.agent.as_str()),
        ("WITNESS_SQL_TASK", "JIRA-42"),
        ("WITNESS_SHELL_TASK", "OPS-7"),
        ("WITNESS_SHELL_TEXT", "disk-42"),
        ("WITNESS_APPROVAL_TEXT", "delete from orders"),
        ("WITNESS_LIVE_TASK", "STUCK-9"),
        ("WITNESS_COVERED_TASK", "PAYROLL-5"),
        ("WITNESS_COVERED_TEXT", "covered-marker-77"),
        ("WITNESS_GRANTER_TOKEN", t.approver.as_str()),
    ];
    let screenshots = std::env::var("WITNESS_SCREENSHOTS").ok();
    if let Some(dir) = &screenshots {
        env.push(("WITNESS_SCREENSHOTS", dir));
    }
    run_browser_script("tests/browser.mjs", &env, "browser test: all steps passed", &gw);

    let (ok, out, err) = finish(waiting);
    assert!(ok && out.contains("DELETE 2"), "the DELETE approved in the browser ran: {out}{err}");
    let (ok, _, err) = finish(looping);
    assert!(!ok && err.contains("an administrator (pat) ended this session: stuck in a loop"), "the ended client was told: {err}");
    let audit = audit_when(&http, &admin, |events| events.iter().any(|e| e["kind"] == "approval.decided"));
    let viewed: Vec<&Value> =
        audit["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "recording.viewed" && e["actor"] == "pat").collect();
    assert!(viewed.iter().any(|e| e["what"] == "asciicast"), "the replay is in the audit trail: {audit}");
    assert!(viewed.iter().any(|e| e["what"] == "events"), "{audit}");
    let decided = audit["events"].as_array().unwrap().iter().any(|e| {
        e["kind"] == "approval.decided" && e["actor"] == "pat" && e["what"].as_str().unwrap().ends_with(": checked with the owner")
    });
    assert!(decided, "the approval and its reason are in the audit trail: {audit}");
    let granted = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "recording.access_decided" && e["actor"] == "dana" && e["what"].as_str().unwrap().contains("granted"));
    assert!(granted, "the grant given in the browser is in the audit trail: {audit}");
    drop(http);
    let mut gw = gw;
    gw.stop_and_verify();
}

#[test]
fn a_person_logs_in_to_the_console_through_the_openid_provider() {
    let pg = Postgres::start();
    let api_port = free_port();
    let provider = OidcProvider::start_with_console(&format!("http://127.0.0.1:{api_port}/api/login/oidc/callback"));
    let (person, stranger) = (CONSOLE_PEOPLE[0], CONSOLE_PEOPLE[1]);
    assert!(person.1.contains(&"platform") && !stranger.1.contains(&"platform"));
    let oidc = format!(
        r#"api = "127.0.0.1:{api_port}"
[[identity.oidc]]
issuer = "{issuer}"
audience = "witness-api"

[console.oidc]
issuer = "{issuer}"
client_id = "{CONSOLE_CLIENT}"
scopes = ["openid", "groups"]
{ROLES}"#,
        issuer = provider.issuer(),
    );
    let gw = Gateway::start(&pg, &oidc);
    let http = Http::new(api_port);
    assert_eq!(http.call("GET", "/api/login/options", Auth::None, None).json()["oidc"], true);

    let url = format!("http://127.0.0.1:{api_port}");
    let env = [("WITNESS_URL", url.as_str()), ("WITNESS_OIDC_PERSON", person.0), ("WITNESS_OIDC_STRANGER", stranger.0)];
    run_browser_script("tests/oidc-login.mjs", &env, "oidc login test: all steps passed", &gw);

    // A callback that this browser did not begin is refused.
    let forged = http.call("GET", "/api/login/oidc/callback?code=x&state=y", Auth::None, None);
    let back = forged.location.unwrap_or_default();
    assert!(forged.status == 302 && back.starts_with("/#/login?error=") && back.contains("not%20begun%20in%20this%20browser"), "{back}");
    assert!(forged.set_cookie.is_none(), "no login");
    let admin = gw.token("pat", &["--groups", "platform"]);
    let audit = audit_when(&http, &admin, |events| events.iter().any(|e| e["kind"] == "console.login" && e["actor"] == person.0));
    let login = audit["events"].as_array().unwrap().iter().find(|e| e["kind"] == "console.login" && e["actor"] == person.0).unwrap();
    assert_eq!(login["what"], "oidc");
    assert!(!audit.to_string().contains(&format!("\"actor\":\"{}\"", stranger.0)), "a refused login is no login: {audit}");
    drop(http);
    let mut gw = gw;
    gw.stop_and_verify();
}

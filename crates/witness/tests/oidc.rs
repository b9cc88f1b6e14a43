//! OIDC identities through witness: an agent gets a JWT access token from a real OpenID provider
//! (`oidc-provider`, client credentials) and uses it as its PostgreSQL password. The session is
//! its identity's, with the groups and task of the token's claims, so rules apply to it; tokens
//! that fail a check are refused with a message that names the check.

mod pg;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pg::{psql, Gateway};
use witness_testkit::{free_port, OidcProvider, Postgres, AGENT_CLIENT, OPS_CLIENT};

const AUDIENCE: &str = "https://witness.test/pg";

#[test]
fn an_agent_logs_in_with_a_jwt_and_its_claims_drive_policy() {
    let provider = OidcProvider::start();
    let pg = Postgres::start();
    let api_port = free_port();
    let extra = format!(
        r#"api = "127.0.0.1:{api_port}"
[[identity.oidc]]
issuer = "{issuer}"
audience = "{AUDIENCE}"
task_claim = "task"

[[rules]]
name = "no-destructive-ddl"
groups = ["ai-agents"]
sql = ["drop"]
action = "deny"
message = "agents may not drop"
"#,
        issuer = provider.issuer()
    );
    let gw = Gateway::start(&pg, &extra);
    let jwt = provider.mint_for_client(AGENT_CLIENT, AUDIENCE);

    let (_, out, err) = psql(&gw.conninfo("app", AGENT_CLIENT, &jwt), &["-c", "select 40 + 2", "-c", "drop table if exists nothing"]);
    assert!(out.contains("42"), "the JWT logs in: {out}{err}");
    assert!(err.contains("denied by witness rule \"no-destructive-ddl\""), "the token's groups claim puts it in ai-agents: {err}");

    // A token of another client is in dba, not ai-agents: the rule does not apply.
    let ops = provider.mint_for_client(OPS_CLIENT, AUDIENCE);
    let (ok, _, err) = psql(&gw.conninfo("app", OPS_CLIENT, &ops), &["-c", "drop table if exists nothing"]);
    assert!(ok, "{err}");

    // Refusals name the failed check.
    let wrong_audience = provider.mint_for_client(AGENT_CLIENT, "https://elsewhere.test");
    let (ok, _, err) = psql(&gw.conninfo("app", AGENT_CLIENT, &wrong_audience), &["-c", "select 1"]);
    assert!(!ok && err.contains("audience"), "{err}");
    // The same token claiming one more group: its signature no longer matches.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_string).collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["groups"] = serde_json::json!(["ai-agents", "dba"]);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    let (ok, _, err) = psql(&gw.conninfo("app", AGENT_CLIENT, &tampered), &["-c", "select 1"]);
    assert!(!ok && err.contains("password authentication failed") && err.contains("signature"), "{err}");
    let (ok, _, err) = psql(&gw.conninfo("app", "someone-else", &jwt), &["-c", "select 1"]);
    assert!(!ok && err.contains(&format!("connect with user={AGENT_CLIENT}")), "{err}");

    let sessions = gw.ended_sessions(2);
    let agent = sessions.iter().find(|s| s["identity"] == AGENT_CLIENT).expect("the agent's session is recorded");
    assert_eq!(agent["task"], "JIRA-42", "the task comes from the token's task claim");
    let events = gw.events(agent["id"].as_str().unwrap());
    let startup = events.iter().find(|e| e["kind"] == "pg.startup").unwrap();
    let credential = startup["attrs"]["credential"].as_str().unwrap();
    assert!(credential.starts_with("oidc:"), "{credential}");
    assert!(!events.iter().any(|e| e.to_string().contains(&jwt)), "the JWT itself is never recorded");
    pg::assert_nowhere_in(&gw.data_dir(), &jwt);
}

//! Inline masking with real clients against a real, ephemeral PostgreSQL: an agent sees masked
//! emails, card numbers and secrets in psql (simple protocol, text), tokio-postgres (prepared
//! statements, binary results) and psycopg 3; unmasked columns are byte-identical to a direct
//! query; a DBA outside the masked group sees the real values while the recording keeps them
//! masked; and no seeded secret is anywhere in the data directory.

mod pg;

use std::process::Command;

use pg::{assert_nowhere_in, psql, Gateway};
use serde_json::Value;
use witness_testkit::{Postgres, Python};

const MASKING: &str = r#"
[[masking]]
name = "pii"
connections = ["app*"]
groups = ["ai-agents"]
columns = ["*.email", "customers.ssn", "*password*"]
detectors = ["email", "credit-card", "secrets"]
apply_to = "client-and-recording"
style = "redact"

[[masking]]
name = "audit"
columns = ["customers.ssn", "*.email", "*password*"]
detectors = ["email", "credit-card", "secrets"]
apply_to = "recording"
style = "hash"
"#;

/// Values that must never reach an agent or the recording.
const SECRETS: [&str; 7] = [
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "5500005555555559",
    "123-45-6789",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "Hunter2Secret",
    "john@corp.example",
];

fn seed(pg: &Postgres) {
    pg.psql(
        "app",
        r#"create table customers (id int primary key, name text, email text, card text, ssn text, notes text,
                                   doc jsonb, card_num bigint, user_password text, visits int);
           insert into customers values
             (1, 'Jane Doe', 'jane.doe@example.com', '4111 1111 1111 1111', '123-45-6789',
              'prefers email; gh ghp_16C7e42F292c6912E7710c838347Ae178B4a', '{"email": "jane.doe@example.com", "plan": "pro"}',
              5500005555555559, 'Hunter2Secret', 7),
             (2, 'John Roe', 'john@corp.example', null, '987-65-4321', 'password=Hunter2Secret please', '{"plan": "free"}', 42, null, 0);
           grant select on customers to scram_user;"#,
    );
}

/// What psql shows an agent, exactly.
const AGENT_SEES: &str = "\
1|Jane Doe|[redacted]|[credit-card]|[redacted]|prefers email; gh [api-key]|{\"plan\": \"pro\", \"email\": \"[email]\"}||[redacted]|7
2|John Roe|[redacted]||[redacted]|password=[secret] please|{\"plan\": \"free\"}|42||0
";

const SELECT_ALL: &str = "select id, name, email, card, ssn, notes, doc, card_num, user_password, visits from customers order by id";

#[test]
fn agents_see_masked_values_in_every_client_and_the_recording_keeps_no_original() {
    let pg = Postgres::start();
    seed(&pg);
    let mut gw = Gateway::start(&pg, MASKING);
    let agent = gw.token("claude", &["--groups", "ai-agents", "--task", "JIRA-11 customers"]);
    let dba = gw.token("bob", &["--groups", "dba"]);
    let agent_conn = gw.conninfo("app", "claude", &agent);

    // psql, simple protocol, text results.
    let (ok, out, err) = psql(&agent_conn, &["-At", "-c", SELECT_ALL]);
    assert!(ok, "{err}\n{}", gw.log());
    assert_eq!(out, AGENT_SEES);
    // Unmasked columns are exactly what the target has.
    let (_, through, _) = psql(&agent_conn, &["-At", "-c", "select id, name, visits, doc->>'plan' from customers order by id"]);
    assert_eq!(through.trim_end(), pg.psql("app", "select id, name, visits, doc->>'plan' from customers order by id").trim_end());
    // An alias does not hide a masked column; a computed value is looked into by the detectors.
    let (_, out, _) = psql(&agent_conn, &["-At", "-c", "select email as contact, 'mail ' || email as line from customers where id = 1"]);
    assert_eq!(out.trim(), "[redacted]|mail [email]");
    // Notices and errors: their texts are masked too.
    let (_, _, err) = psql(&agent_conn, &["-c", "do $$ begin raise notice 'contact %', 'jane.doe@example.com'; end $$"]);
    assert!(err.contains("NOTICE:  contact [email]"), "{err}");
    let (ok, _, err) = psql(&agent_conn, &["-c", "select 'jane.doe@example.com'::int"]);
    assert!(!ok && err.contains("\"[email]\""), "{err}");
    // COPY TO carries no column names: refused while column masking applies.
    let (ok, _, err) = psql(&agent_conn, &["-c", "copy customers to stdout"]);
    assert!(!ok && err.contains("COPY TO carries no column names"), "{err}");
    // A DBA is outside the masked group: real values (the recording still masks them).
    let (ok, out, err) = psql(&gw.conninfo("app", "bob", &dba), &["-At", "-c", "select email, card from customers where id = 1"]);
    assert!(ok && out.trim() == "jane.doe@example.com|4111 1111 1111 1111", "{out} {err}");
    // The DBA's rules are for the recording only, and COPY rows are counted, not recorded: COPY
    // TO works for them.
    let (ok, out, _) = psql(&gw.conninfo("app", "bob", &dba), &["-c", "copy (select id, email from customers order by id) to stdout"]);
    assert!(ok && out.contains("jane.doe@example.com"), "{out}");

    // tokio-postgres: a prepared statement executed without a new description, binary results.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&agent_conn, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let statement =
            client.prepare("select id, name, email, notes, card_num, doc::text, $1::text from customers order by id").await.unwrap();
        for _ in 0..2 {
            let rows = client.query(&statement, &[&"reach me at jane.doe@example.com"]).await.unwrap();
            let first = &rows[0];
            assert_eq!(first.get::<_, i32>(0), 1);
            assert_eq!(first.get::<_, &str>(1), "Jane Doe");
            assert_eq!(first.get::<_, &str>(2), "[redacted]");
            assert_eq!(first.get::<_, &str>(3), "prefers email; gh [api-key]");
            assert_eq!(first.get::<_, Option<i64>>(4), None, "a card number in a bigint becomes NULL");
            assert_eq!(first.get::<_, &str>(5), r#"{"plan": "pro", "email": "[email]"}"#);
            assert_eq!(first.get::<_, &str>(6), "reach me at [email]");
            assert_eq!(rows[1].get::<_, Option<i64>>(4), Some(42));
        }
    });

    // psycopg 3: extended protocol with a described portal, text results.
    let python = Python::ensure_venv(&["psycopg[binary]"]);
    let script = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    for row in conn.execute("select id, email, card, notes from customers where id = %s", (1,)):
        print("|".join(str(v) for v in row))
    print(conn.execute("select jsonb_build_object('k', %s::text)", ("key=sk_live_4eC39HqLyjWDarjtT1zdp7dc",)).fetchone()[0])
"#;
    let out = Command::new(&python).arg("-c").arg(script).arg(&agent_conn).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1|[redacted]|[credit-card]|prefers email; gh [api-key]\n{'k': 'key=[api-key]'}\n");

    // The recording: masked counts per rule and detector, and no original anywhere.
    let events = gw.all_events(10);
    let masked: Vec<&Value> = events.iter().filter_map(|e| e["attrs"].get("masked")).collect();
    assert!(masked.iter().any(|m| m["pii"]["column"].as_u64().unwrap_or(0) >= 4), "{masked:?}");
    assert!(masked.iter().any(|m| m["pii"]["credit-card"].as_u64().is_some()), "{masked:?}");
    assert!(masked.iter().any(|m| m["audit"]["column"].as_u64().is_some()), "the DBA's rows are masked in the recording: {masked:?}");
    gw.stop_and_verify();
    for secret in SECRETS {
        assert_nowhere_in(&gw.data_dir(), secret);
    }
}

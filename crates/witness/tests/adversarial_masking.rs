//! A masked agent that tries to get masked values out another way, against witness and a real
//! PostgreSQL: through views and materialized views over masked columns, binary result formats
//! (arrays, records, bytea, numbers wide enough for a card), notification payloads, a setting's
//! value, and fast-path function calls; and copies made inside the database (`CREATE TABLE AS`,
//! `INSERT … SELECT`, `SELECT INTO`, `MERGE`, `UPDATE … SET other = email`), which are refused
//! before they reach it. None of the seeded values may reach the agent or the recording.

mod pg;

use pg::wire::{bind, execute, message, parse, query, sync, Backend, Wire};
use pg::{assert_nowhere_in, Gateway};
use witness_testkit::Postgres;

const MASKING: &str = r#"
[postgres]
auth = "password"

[[masking]]
name = "pii"
groups = ["ai-agents"]
columns = ["customers.email", "customers.ssn", "customers.card_num"]
detectors = ["email", "credit-card"]
apply_to = "client-and-recording"
style = "redact"
"#;

/// Values that must never reach the agent or the recording.
const SECRETS: [&str; 4] = ["jane.doe@example.com", "123-45-6789", "4111111111111111", "JANE.DOE@EXAMPLE.COM"];

fn setup() -> (Postgres, Gateway, String) {
    let pg = Postgres::start();
    pg.psql(
        "app",
        "create table customers (id int primary key, name text, email text, ssn text, card_num bigint);
         insert into customers values (1, 'Jane Doe', 'jane.doe@example.com', '123-45-6789', 4111111111111111);
         create view contacts as select id, ssn as contact from customers;
         create view contacts_again as select contact as c from contacts;
         create materialized view ids as select ssn as s, name from customers;
         create table scratch (id int primary key, note text);
         grant select on customers, contacts, contacts_again, ids to scram_user;
         grant all on scratch to scram_user;
         grant create on schema public to scram_user;
         grant update (name) on customers to scram_user;",
    );
    let gw = Gateway::start(&pg, MASKING);
    let agent = gw.token("claude", &["--groups", "ai-agents"]);
    (pg, gw, agent)
}

/// The values of the first row an exchange returned.
fn first_row(answer: &[Backend]) -> Vec<Option<String>> {
    let row = answer.iter().find(|m| m.tag == b'D').unwrap_or_else(|| panic!("no row in {answer:?}"));
    row.row()
}

/// A Bind asking for every result column in binary.
fn bind_binary(portal: &str, statement: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for name in [portal, statement] {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    message(b'B', &body)
}

fn contains_secret(bytes: &[u8]) -> bool {
    SECRETS.iter().any(|secret| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
}

#[test]
fn masked_values_do_not_leave_by_any_path() {
    let (pg, mut gw, agent) = setup();
    let mut wire = Wire::connect(gw.port, "app", "claude", &agent, &[]).expect("the agent logs in");

    // Views and materialized views (and views of views) over masked columns: every column of
    // them is masked, aliases or not (the SSN is masked by its column rule alone: no detector
    // here finds it).
    for sql in ["select contact from contacts", "select c from contacts_again", "select s, name from ids", "select * from contacts"] {
        let row = first_row(&wire.exchange(&[query(sql)], 1));
        assert!(row.iter().all(|v| v.as_deref().is_none_or(|v| v == "[redacted]")), "{sql}: {row:?}");
    }

    // Binary results: what masking cannot rewrite in place is NULL; nothing seeded gets through.
    for sql in [
        "select array[email] from customers",
        "select row(email, 1) from customers",
        "select convert_to(email, 'UTF8') from customers",
        "select card_num::numeric from customers",
        "select card_num::float8 from customers",
        "select (card_num::text)::numeric + 0 from customers",
        "select jsonb_build_object('e', email) from customers",
        "select to_tsvector('simple', email) from customers",
    ] {
        let answer = wire.exchange(&[parse("", sql), bind_binary("", ""), execute(""), sync()], 1);
        let row = answer.iter().find(|m| m.tag == b'D').unwrap_or_else(|| panic!("{sql}: {answer:?}"));
        assert!(!contains_secret(&row.body), "{sql}: {:?}", String::from_utf8_lossy(&row.body));
    }
    // Text-format bytea is hex: read as the bytes it stands for.
    let row = first_row(
        &wire.exchange(&[parse("", "select convert_to(email, 'UTF8') from customers"), bind("", "", &[]), execute(""), sync()], 1),
    );
    assert_eq!(row, [None], "a bytea holding an email is masked");

    // A notification's payload and a setting's value carry a masked value out of band.
    let answer = wire.exchange(&[query("listen leak; select pg_notify('leak', email) from customers")], 1);
    let notification = answer.iter().find(|m| m.tag == b'A').expect("the notification");
    assert!(!contains_secret(&notification.body), "{:?}", String::from_utf8_lossy(&notification.body));
    let answer = wire.exchange(&[query("select set_config('application_name', email, false) from customers")], 1);
    for message in answer.iter().filter(|m| matches!(m.tag, b'S' | b'D')) {
        assert!(!contains_secret(&message.body), "{:?}", String::from_utf8_lossy(&message.body));
    }

    // A fast-path function call returns what a query would.
    let btrim = wire.query("select 'btrim(text)'::regprocedure::oid")[0][0].clone().unwrap();
    let mut call = btrim.parse::<i32>().unwrap().to_be_bytes().to_vec();
    call.extend_from_slice(&[0, 0, 0, 1]);
    call.extend_from_slice(&(SECRETS[0].len() as i32).to_be_bytes());
    call.extend_from_slice(SECRETS[0].as_bytes());
    call.extend_from_slice(&[0, 0]);
    let answer = wire.exchange(&[message(b'F', &call)], 1);
    let result = answer
        .iter()
        .find(|m| m.tag == b'V')
        .unwrap_or_else(|| panic!("no function result: {answer:?} {:?}", answer.iter().find_map(|m| m.field(b'M'))));
    assert!(!contains_secret(&result.body), "{:?}", String::from_utf8_lossy(&result.body));
    wire.terminate();

    gw.ended_sessions(1);
    gw.stop_and_verify();
    for secret in SECRETS {
        assert_nowhere_in(&gw.data_dir(), secret);
    }
    drop(pg);
}

#[test]
fn masked_values_are_not_copied_inside_the_database() {
    let (pg, mut gw, agent) = setup();
    let mut wire = Wire::connect(gw.port, "app", "claude", &agent, &[]).expect("the agent logs in");
    // Each would put a masked value where no column rule names it; then `select * from` the copy
    // would show it.
    let copies = [
        "create table leak1 as select email from customers",
        "create table leak2 as table customers",
        "select ssn into leak3 from customers",
        "insert into scratch select id, email from customers",
        "insert into scratch values (2, (select ssn from customers limit 1))",
        "with c as (select id, email from customers) insert into scratch select * from c",
        "merge into scratch s using customers c on s.id = c.id when not matched then insert values (c.id, c.email)",
        "update scratch set note = c.ssn from customers c where c.id = scratch.id",
        "update scratch set note = (select email from customers limit 1)",
        "update customers set name = email",
        "update customers set name = lower(ssn) || ''",
        "prepare p as insert into scratch select id, email from customers",
        "explain analyze insert into scratch select id, email from customers",
    ];
    for sql in copies {
        let answer = wire.exchange(&[query(sql)], 1);
        let error = answer.iter().find(|m| m.tag == b'E').unwrap_or_else(|| panic!("{sql} was not refused: {answer:?}"));
        assert_eq!(error.field(b'C').as_deref(), Some("42501"), "{sql}");
        assert!(error.field(b'M').unwrap_or_default().contains("copies values inside the database"), "{sql}: {error:?}");
        // The extended protocol is decided the same way.
        let answer = wire.exchange(&[parse("", sql), bind("", "", &[]), execute(""), sync()], 1);
        assert!(answer.iter().any(|m| m.tag == b'E' && m.field(b'C').as_deref() == Some("42501")), "{sql} (extended): {answer:?}");
    }
    // Writes that copy nothing masked still run.
    for sql in [
        "insert into scratch values (1, 'plain')",
        "update scratch set note = note || '!' where id = 1",
        "update customers set name = name || ''",
    ] {
        let answer = wire.exchange(&[query(sql)], 1);
        assert!(answer.iter().all(|m| m.tag != b'E'), "{sql}: {answer:?}");
    }
    wire.terminate();

    // Nothing was copied: the tables do not exist and scratch holds only the plain row.
    let held = pg.psql("app", "select coalesce(string_agg(note, ','), '') from scratch; select count(*) from pg_class where relname like 'leak%'; select name from customers");
    assert_eq!(held.split_whitespace().collect::<Vec<_>>(), ["plain!", "0", "Jane", "Doe"], "{held}");
    gw.ended_sessions(1);
    gw.stop_and_verify();
    for secret in SECRETS {
        assert_nowhere_in(&gw.data_dir(), secret);
    }
}

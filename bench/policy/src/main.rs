//! Policy benchmark: what deciding one statement costs with a realistic 10-rule policy (the two
//! rules of the quickstart and eight more on tables, tasks, identities and patterns), over a mix of
//! statements an agent sends: pgbench's own, reads and writes with joins and CTEs, DDL, and
//! statements that do not parse. Prints p50, p99 and mean per statement, and per statement kind.
//! Then the masking detectors' throughput: MB/s over ordinary text and database-sized values with
//! every detector on, with no secrets in them and with one in a hundred values holding one.
//!
//! ```text
//! cargo run --release -p witness-bench-policy            # 200,000 decisions
//! BENCH_DECISIONS=1000000 cargo run --release -p witness-bench-policy
//! BENCH_DECISIONS=10 BENCH_DETECTOR_VALUES=customer cargo run --release -p witness-bench-policy
//! ```
//!
//! `BENCH_DETECTOR_VALUES` keeps the detector runs whose label contains it (for profiles and
//! instruction counts of one kind of value). The report ends with the markdown that
//! docs/BENCHMARKS.md shows for this benchmark (`markdown.rs`).

#![forbid(unsafe_code)]

#[path = "../../markdown.rs"]
mod markdown;

use std::time::{Duration, Instant};

use regex::Regex;
use witness_policy::{classify, decide, decide_statements, Action, Caller, Glob, Policy, Rule, SqlClass};

/// (label, statement): what an agent's session sends.
const STATEMENTS: &[(&str, &str)] = &[
    ("pgbench -S", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"),
    ("pgbench update", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;"),
    ("point select", "select id, email, created_at from users where id = 42"),
    ("join", "select o.id, c.name, sum(l.amount) from orders o join customers c on c.id = o.customer_id join lines l on l.order_id = o.id where o.created_at > now() - interval '7 days' group by o.id, c.name order by 3 desc limit 50"),
    ("cte delete", "with old as (select id from sessions where last_seen < now() - interval '30 days') delete from sessions where id in (select id from old)"),
    ("insert", "insert into audit_log (actor, action, payload) values ('agent', 'login', '{\"ok\": true}'::jsonb)"),
    ("bare delete", "DELETE FROM carts"),
    ("drop", "drop table if exists tmp_import cascade"),
    ("ddl", "create index concurrently if not exists orders_by_customer on orders (customer_id, created_at desc)"),
    ("multi", "begin; update accounts set balance = balance - 10 where id = 1; update accounts set balance = balance + 10 where id = 2; commit;"),
    ("unparsed", "VACUUM (VERBOSE, ANALYZE) orders"),
    ("catalog", "SELECT n.nspname as \"Schema\", c.relname as \"Name\" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','S','f','') AND n.nspname <> 'pg_catalog' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2;"),
];

fn policy() -> Policy {
    let classes = |names: &[&str]| names.iter().map(|n| n.parse::<SqlClass>().expect("known class")).collect::<Vec<_>>();
    let globs = |names: &[&str]| names.iter().map(|n| Glob::new(n)).collect::<Vec<_>>();
    let mut rules = Vec::new();
    let mut rule = |name: &str, action: Action, f: &dyn Fn(&mut Rule)| {
        let mut r = Rule::new(name, action);
        f(&mut r);
        rules.push(r);
    };
    rule("no-destructive-ddl", Action::Deny, &|r| {
        r.connections = globs(&["pg-*"]);
        r.groups = vec!["ai-agents".into()];
        r.sql = classes(&["drop", "truncate"]);
    });
    rule("writes-need-approval", Action::Approve, &|r| {
        r.sql = classes(&["delete-without-where", "update-without-where", "alter", "grant"]);
        r.approvers = vec!["dba".into()];
    });
    rule("no-secrets", Action::Deny, &|r| r.tables = globs(&["secrets", "*.secrets", "vault_*"]));
    rule("no-sleep", Action::Deny, &|r| r.regex = Some(Regex::new("(?i)pg_sleep|pg_terminate_backend").unwrap()));
    rule("no-copy-program", Action::Deny, &|r| r.sql = classes(&["copy-program"]));
    rule("billing-writes", Action::Approve, &|r| {
        r.tables = globs(&["billing.*", "invoices"]);
        r.sql = classes(&["insert", "update", "delete"]);
        r.approvers = vec!["finance".into()];
    });
    rule("interns-read-only", Action::Deny, &|r| {
        r.identities = globs(&["intern-*"]);
        r.sql = classes(&["insert", "update", "delete", "ddl"]);
    });
    rule("migrations-task", Action::Allow, &|r| {
        r.tasks = globs(&["MIGRATE-*"]);
        r.sql = classes(&["ddl"]);
    });
    rule("no-set-role", Action::Deny, &|r| r.regex = Some(Regex::new("(?i)\\bset\\s+(session\\s+)?role\\b").unwrap()));
    rule("prod-ddl", Action::Approve, &|r| {
        r.connections = globs(&["pg-prod*"]);
        r.sql = classes(&["ddl"]);
        r.approvers = vec!["dba".into()];
    });
    Policy { default: Action::Allow, rules }
}

fn main() {
    let n: usize = std::env::var("BENCH_DECISIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let policy = policy();
    let groups = vec!["ai-agents".to_string()];
    let caller = Caller { identity: "claude", groups: &groups, connection: "pg-local", task: Some("JIRA-42") };
    // Warm up (regex and allocator caches).
    for (_, sql) in STATEMENTS {
        decide(&policy, &caller, sql);
    }
    let mut all = Vec::with_capacity(n);
    let mut per_label: Vec<Vec<Duration>> = vec![Vec::new(); STATEMENTS.len()];
    for i in 0..n {
        let k = i % STATEMENTS.len();
        let started = Instant::now();
        let (decision, _) = decide(&policy, &caller, STATEMENTS[k].1);
        let took = started.elapsed();
        std::hint::black_box(decision);
        all.push(took);
        per_label[k].push(took);
    }
    println!("witness policy benchmark: {} rules, {n} decisions over {} statements", policy.rules.len(), STATEMENTS.len());
    println!("command: {}", std::env::args().collect::<Vec<_>>().join(" "));
    println!("{:<16} {:>10} {:>10} {:>10}", "statement", "p50 µs", "p99 µs", "mean µs");
    // (label, p50, p99, mean) per statement, then over all of them, then over all with cached classes.
    let mut decisions: Vec<(&str, f64, f64, f64)> = Vec::new();
    for (k, (label, _)) in STATEMENTS.iter().enumerate() {
        let (p50, p99, mean) = summary(&mut per_label[k]);
        decisions.push((label, p50, p99, mean));
    }
    let (p50, p99, mean) = summary(&mut all);
    decisions.push(("ALL", p50, p99, mean));
    // What a repeated statement costs once its classes are cached (witness caches them by text).
    let classified: Vec<_> = STATEMENTS.iter().map(|(_, sql)| classify(sql)).collect();
    let mut cached = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % STATEMENTS.len();
        let started = Instant::now();
        let decision = decide_statements(&policy, &caller, STATEMENTS[k].1, &classified[k]);
        cached.push(started.elapsed());
        std::hint::black_box(decision);
    }
    let (c50, c99, cmean) = summary(&mut cached);
    decisions.push(("ALL, cached", c50, c99, cmean));
    for (label, p50, p99, mean) in &decisions {
        println!("{label:<16} {p50:>10.2} {p99:>10.2} {mean:>10.2}");
    }
    let verdict = markdown::verdict(&[Some(p50 < 10.0)]);
    println!("target: p50 under 10 µs per statement: {verdict} ({p50:.2} µs)");
    let detector_rates = detectors();

    // The markdown comes last, so that it is one piece to copy into docs/BENCHMARKS.md.
    let command = markdown::command(
        &["BENCH_DECISIONS", "BENCH_DETECTOR_ROUNDS", "BENCH_DETECTOR_VALUES"],
        "cargo run --release -p witness-bench-policy",
    );
    println!("\n{}\n", markdown::measured(&command));
    let rows: Vec<Vec<String>> =
        decisions.iter().map(|(label, p50, p99, _)| vec![label.to_string(), format!("{p50:.2}"), format!("{p99:.2}")]).collect();
    print!("{}", markdown::table(&["statement", "p50 µs", "p99 µs"], &rows));
    println!("\n- p50 under 10 µs per statement: **{verdict}** ({p50:.2} µs over all statements; {c50:.2} µs with their classes cached)\n");
    let rows: Vec<Vec<String>> = detector_rates.iter().map(|(label, mb_s)| vec![label.to_string(), format!("{mb_s:.0}")]).collect();
    print!("{}", markdown::table(&["values, all 11 detectors on", "MB/s"], &rows));
}

/// Values like those in a database's rows: names, order notes, log lines, JSON, numbers, dates.
const ORDINARY: &[&str] = &[
    "Customer 4711",
    "order 88213 shipped on 2026-11-03 via DHL, tracking 0034 5566 7788",
    "{\"plan\": \"pro\", \"seats\": 12, \"renews\": \"2027-01-01\", \"trial\": false}",
    "2026-11-22T08:14:03.114Z INFO request id=7f3a2c latency_ms=41 status=200 path=/api/v1/orders",
    "Please call back about the invoice; the customer asked for a refund of 129.99 EUR.",
    "c4ca4238a0b923820dcc509a6f75849b",
    "42",
    "The quick brown fox jumps over the lazy dog near version 1.2.3 of the access token policy.",
];

/// Values holding something a detector finds.
const SENSITIVE: &[&str] = &[
    "contact jane.doe@example.com",
    "card 4111 1111 1111 1111 exp 12/28",
    "password=Hunter2Secret",
    "key ghp_16C7e42F292c6912E7710c838347Ae178B4a",
];

/// Scans `values` with every detector, `rounds` times; MB/s.
fn throughput(values: &[Vec<u8>], rounds: usize) -> f64 {
    use witness_mask::{scan, DetectorSet};
    let bytes: usize = values.iter().map(Vec::len).sum::<usize>() * rounds;
    let mut found = 0usize;
    let started = Instant::now();
    for _ in 0..rounds {
        for value in values {
            scan(value, DetectorSet::all(), &mut |_| found += 1);
        }
    }
    std::hint::black_box(found);
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

/// Runs the detector measurements and returns (label, MB/s) of each that ran.
fn detectors() -> Vec<(&'static str, f64)> {
    let rounds: usize = std::env::var("BENCH_DETECTOR_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let cells = |with_secrets: bool| -> Vec<Vec<u8>> {
        (0..20_000)
            .map(|i| match (with_secrets && i % 100 == 0, i) {
                (true, i) => SENSITIVE[i / 100 % SENSITIVE.len()].as_bytes().to_vec(),
                (false, i) => ORDINARY[i % ORDINARY.len()].as_bytes().to_vec(),
            })
            .collect()
    };
    let (plain, mixed) = (cells(false), cells(true));
    // The same text as one long document (log files, notes, a COPY stream).
    let document = vec![plain.join(&b'\n')];
    let mb = plain.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    println!("\nmasking detectors, all 11 on ({mb:.1} MB of values, {rounds} rounds each; best of 3):");
    let only = std::env::var("BENCH_DETECTOR_VALUES").unwrap_or_default();
    let mut rates = Vec::new();
    let mut best = |label: &'static str, values: &[Vec<u8>]| {
        if label.contains(only.as_str()) {
            let mb_s = (0..3).map(|_| throughput(values, rounds)).fold(0.0, f64::max);
            println!("{label:<44} {mb_s:>8.0} MB/s");
            rates.push((label, mb_s));
        }
    };
    best("database values, nothing to find", &plain);
    best("database values, 1 in 100 with a secret", &mixed);
    best("one document, nothing to find", &document);
    // The text columns of bench/pg's masking runs: a name, a card or not, notes with a hex digest.
    let customers: Vec<Vec<u8>> = (1..=20_000u64)
        .flat_map(|i| {
            let card = if i % 10 == 0 { "4111 1111 1111 1111".to_string() } else { "none on file".to_string() };
            let digest = format!("{:016x}{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
            let notes = format!("order {i} shipped on 2026-11-{}, tracking {digest}", i % 28 + 1);
            [format!("Customer {i}"), card, notes].map(String::into_bytes)
        })
        .collect();
    best("customer rows (bench/pg's masking runs)", &customers);
    rates
}

fn summary(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| us(times[((times.len() - 1) as f64 * q) as usize]);
    let mean = times.iter().map(|d| us(*d)).sum::<f64>() / times.len() as f64;
    (at(0.5), at(0.99), mean)
}

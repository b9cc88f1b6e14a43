//! PostgreSQL benchmark for witness: pgbench select-only workloads (prepared and simple
//! protocol) against PostgreSQL directly, through PgBouncer (the reference cost of one proxy
//! hop), through a relay on witness's stack that records nothing (the relay floor: the hop
//! without witness's work), and through witness with ledger durability `write` and `fsync`, and
//! `write` with a 10-rule policy that applies to the benchmark's identity (every statement is
//! decided), and `write` with `[ledger.encryption]` (every statement and result sealed).
//!
//! ```text
//! cargo build --release -p witness -p witness-bench-pg
//! cargo run --release -p witness-bench-pg                    # 10 s per run; 1, 8, 32 clients
//! BENCH_SECONDS=3 BENCH_CLIENTS=1,8 cargo run --release -p witness-bench-pg
//! BENCH_MASKING=0 cargo run --release -p witness-bench-pg     # without the masking runs
//! BENCH_MASKING=only cargo run --release -p witness-bench-pg  # only the masking runs
//! ```
//!
//! Then the masking runs (`masking.rs`): 100-row selects of a customers table through witness
//! without masking and with every detector on.
//!
//! Everything runs on loopback in temp dirs: an ephemeral PostgreSQL (witness-testkit), our own
//! PgBouncer (installed with apt-get if missing and we are root), the relay floor (this
//! executable run with `--relay-floor`) and three `witness serve`. The
//! witness binary is `$WITNESS_BIN`, else the one next to this executable (cargo builds both
//! into the same target dir), else `$CARGO_TARGET_DIR/release/witness`. The report goes to
//! stdout, progress to stderr. A target that cannot start is reported; the others still run.
//! The report ends with the markdown that docs/BENCHMARKS.md shows for these runs (`markdown.rs`).

#![forbid(unsafe_code)]

#[path = "../../common.rs"]
mod common;
// Of the HTTP benchmark's CPU accounting, what `witness_serve` needs to settle witness.
#[allow(dead_code)]
#[path = "../../http/src/cpu.rs"]
mod cpu;
mod floor;
#[path = "../../markdown.rs"]
mod markdown;
mod masking;
mod pgbench;
mod report;
mod servers;
#[allow(dead_code)]
#[path = "../../witness_serve.rs"]
mod witness_serve;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use witness_testkit::{pg_bin, Postgres, PostgresOptions};

use crate::common::find_witness;
pub use crate::common::{output, tail};
use crate::servers::{PgBouncer, RelayFloor, Witness};

/// A pgbench workload: its name in the report and its query protocol (`-M`).
pub struct Workload {
    pub name: &'static str,
    pub mode: &'static str,
}

pub const WORKLOADS: [Workload; 2] =
    [Workload { name: "select-only, prepared", mode: "prepared" }, Workload { name: "select-only, simple protocol", mode: "simple" }];

/// Targets in report order; the constants below index them.
/// relay-floor is a relay on witness's stack that records nothing (see `floor.rs`): what the hop
/// costs before witness does any work of its own.
/// witness-policy runs right after witness-write, so that the two it compares run in the most
/// alike conditions (the fsync run leaves the disk busy behind it).
pub const TARGETS: [&str; 7] = ["direct", "PgBouncer", "relay-floor", "witness-write", "witness-policy", "witness-fsync", "witness-sealed"];
pub const DIRECT: usize = 0;
pub const BOUNCER: usize = 1;
pub const FLOOR: usize = 2;
pub const WITNESS_WRITE: usize = 3;
pub const WITNESS_POLICY: usize = 4;
pub const WITNESS_FSYNC: usize = 5;
/// witness `write` with `[ledger.encryption]`: every statement and result sealed.
pub const WITNESS_SEALED: usize = 6;

/// Ten rules in the benchmark identity's reach, none of which refuses pgbench's statements: the
/// cost measured is deciding, not refusing.
const TEN_RULES: &str = r#"
[[rules]]
name = "no-destructive-ddl"
groups = ["ai-agents"]
sql = ["drop", "truncate"]
action = "deny"
[[rules]]
name = "writes-need-approval"
sql = ["delete-without-where", "update-without-where", "alter", "grant"]
action = "approve"
approvers = ["dba"]
[[rules]]
name = "no-secrets"
tables = ["secrets", "*.secrets", "vault_*"]
action = "deny"
[[rules]]
name = "no-sleep"
regex = "(?i)pg_sleep|pg_terminate_backend"
action = "deny"
[[rules]]
name = "no-copy-program"
sql = ["copy-program"]
action = "deny"
[[rules]]
name = "billing-writes"
tables = ["billing.*", "invoices"]
sql = ["insert", "update", "delete"]
action = "approve"
approvers = ["finance"]
[[rules]]
name = "interns-read-only"
identities = ["intern-*"]
sql = ["insert", "update", "delete", "ddl"]
action = "deny"
[[rules]]
name = "migrations-task"
tasks = ["MIGRATE-*"]
sql = ["ddl"]
action = "allow"
[[rules]]
name = "no-set-role"
regex = '(?i)\bset\s+(session\s+)?role\b'
action = "deny"
[[rules]]
name = "prod-ddl"
connections = ["pg-prod*"]
sql = ["ddl"]
action = "approve"
approvers = ["dba"]
"#;

/// pgbench scale: 1,000,000 account rows, so that lookups are not all on one hot page.
const SCALE: u32 = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first() {
        Some(flag) if flag == floor::FLAG => floor::serve(&args[1..]),
        _ => run(),
    };
    if let Err(e) = result {
        eprintln!("witness-bench-pg: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn run() -> Result<(), String> {
    let setting = |name: &str, default: &str, max: u32| -> Result<Vec<u32>, String> {
        let value = std::env::var(name).unwrap_or_else(|_| default.into());
        let bad = |v: &str| format!("{name}: {v:?} is not a number from 1 to {max}");
        let parse = |v: &str| v.trim().parse().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| bad(v));
        value.split(',').map(parse).collect()
    };
    let seconds = setting("BENCH_SECONDS", "10", 3600)?[0];
    // At most 150 clients: the test cluster allows 200 connections, shared with PgBouncer's pool.
    let clients = setting("BENCH_CLIENTS", "1,8,32", 150)?;
    let witness_bin = find_witness()?;
    let bouncer_bin = servers::ensure_pgbouncer();

    // The command as docs/BENCHMARKS.md gives it, for the markdown blocks that end the report.
    let command = markdown::command(&["BENCH_SECONDS", "BENCH_CLIENTS", "BENCH_MASKING", "BENCH_MASK_ROUNDS"], "bench/pg.sh");

    eprintln!("starting PostgreSQL and loading pgbench data (scale {SCALE})");
    let pg = Postgres::start_with(PostgresOptions { tls: false });
    if std::env::var("BENCH_MASKING").as_deref() == Ok("only") {
        let log_dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let masking = masking::run(&witness_bin, &pg, seconds, &clients, log_dir.path())?;
        masking.print_markdown(&command);
        return Ok(());
    }
    let trust = |port: u16| format!("host=127.0.0.1 port={port} dbname=app user=trust_user sslmode=disable");
    pgbench::init(&trust(pg.port()), SCALE)?;
    let bouncer = bouncer_bin.clone().and_then(|bin| PgBouncer::start(&bin, pg.port()));
    let relay_floor = RelayFloor::start(pg.port());
    let mut witnesses = [("write", ""), ("write", TEN_RULES), ("fsync", ""), ("write", servers::SEALED)]
        .map(|(durability, rules)| servers::start_witness(&witness_bin, durability, rules, pg.port()));
    let via_witness = |w: &Witness| format!("host=127.0.0.1 port={} dbname=bench user=bench password={} sslmode=disable", w.port, w.token);
    let conninfos = [
        Ok(trust(pg.port())),
        bouncer.as_ref().map(|b| trust(b.port)).map_err(Clone::clone),
        relay_floor.as_ref().map(|r| trust(r.port)).map_err(Clone::clone),
        witnesses[0].as_ref().map(via_witness).map_err(Clone::clone),
        witnesses[1].as_ref().map(via_witness).map_err(Clone::clone),
        witnesses[2].as_ref().map(via_witness).map_err(Clone::clone),
        witnesses[3].as_ref().map(via_witness).map_err(Clone::clone),
    ];

    // The process each target's CPU time is read from (direct has no proxy).
    let proxy_pids = [
        None,
        bouncer.as_ref().ok().map(PgBouncer::pid),
        relay_floor.as_ref().ok().map(RelayFloor::pid),
        witnesses[0].as_ref().ok().map(Witness::pid),
        witnesses[1].as_ref().ok().map(Witness::pid),
        witnesses[2].as_ref().ok().map(Witness::pid),
        witnesses[3].as_ref().ok().map(Witness::pid),
    ];
    let log_dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let mut results = report::Results::new();
    for (w, workload) in WORKLOADS.iter().enumerate() {
        for &c in &clients {
            for (t, conninfo) in conninfos.iter().enumerate() {
                for witness in witnesses.iter().flatten() {
                    witness.settle();
                }
                let result = conninfo.as_ref().map_err(|_| "not started (see above)".to_string()).and_then(|conninfo| {
                    eprintln!("{}: {c} clients, {}", workload.name, TARGETS[t]);
                    servers::charged_to(proxy_pids[t], || pgbench::run(workload.mode, c, seconds, conninfo, log_dir.path()))
                });
                results.insert((w, c, t), result);
            }
        }
    }

    print_header(seconds, &clients, &pg, &bouncer_bin);
    for (name, conninfo) in TARGETS.iter().zip(&conninfos) {
        if let Err(e) = conninfo {
            println!("{name} could not be started: {e}");
        }
    }
    report::print_tables(&clients, &results);
    report::print_hop_and_recording(&clients, &results);
    let targets = report::targets(&clients, &results);
    report::print_verdicts(&targets, &results);

    // Stop witness as a deployment would (SIGTERM seals the ledger) and say whether it did.
    for (name, witness) in TARGETS[WITNESS_WRITE..].iter().zip(&mut witnesses) {
        if let Ok(witness) = witness {
            let sealed = witness.stop().contains("ledger sealed");
            eprintln!("{name} stopped: {}", if sealed { "ledger sealed" } else { "ledger NOT sealed" });
        }
    }
    let masking = match std::env::var("BENCH_MASKING").as_deref() {
        Ok("0") => None,
        _ => Some(masking::run(&witness_bin, &pg, seconds, &clients, log_dir.path())?),
    };
    // The markdown comes last, after every human-readable table, so that it is one piece to copy.
    report::print_markdown(&command, &clients, &results, &targets);
    if let Some(masking) = masking {
        masking.print_markdown(&command);
    }
    // The relay floor and PgBouncer are killed, then PostgreSQL stopped, as they drop (in reverse
    // order of creation).
    Ok(())
}

fn print_header(seconds: u32, clients: &[u32], pg: &Postgres, bouncer: &Result<PathBuf, String>) {
    // First line of `--version`, for the record of what was measured.
    let version =
        |program: &Path| output(Command::new(program).arg("--version")).map_or_else(|e| e, |v| v.lines().next().unwrap_or("?").into());
    let env = ["BENCH_SECONDS", "BENCH_CLIENTS", "WITNESS_BIN"].map(|var| std::env::var(var).map(|v| format!("{var}={v}")));
    let command: Vec<String> = env.into_iter().flatten().chain(std::env::args()).collect();
    println!("witness PostgreSQL benchmark");
    println!("command: {}", command.join(" "));
    println!("cores: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("PostgreSQL {} (fsync off), pgbench scale {SCALE}", pg.psql("app", "SHOW server_version"));
    println!("{}; {}", version(&pg_bin("pgbench")), bouncer.as_ref().map_or_else(|e| e.clone(), |b| version(b)));
    println!("each run: pgbench -n -S -M prepared|simple -c N -j min(N,2) -T {seconds} -l --log-prefix=TMP/x CONNINFO");
    println!("clients: {clients:?}; PgBouncer: pool_mode session, default_pool_size 40");
    println!("proxy CPU: user + system time of the proxy's process (PgBouncer, relay floor, witness) over the run, per transaction");
    println!("machine CPU: busy time of all cores over the run (/proc/stat: pgbench, PostgreSQL, the proxy, the kernel), per transaction");
}

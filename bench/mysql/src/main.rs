//! MySQL benchmark for witness: sysbench's `oltp_point_select` and `oltp_read_only` with
//! server-side prepared statements (`--db-ps-mode=auto`) against MariaDB directly, through
//! HAProxy in TCP mode (what a user without ProxySQL would put in the path: it copies bytes and
//! records nothing) and through witness (every statement and result recorded, durability `write`
//! as the default config has it), side by side in one run.
//!
//! ```text
//! bench/mysql.sh                                                  # 3 rounds of 10 s runs at 1, 8 and 32 threads
//! BENCH_SECONDS=3 BENCH_ROUNDS=1 BENCH_THREADS=1 bench/mysql.sh
//! BENCH_QUIET_MINUTES=20 bench/mysql.sh                           # first wait for a quiet machine
//! ```
//!
//! Each run is `sysbench TEST --threads N --time SECONDS --percentile=50` after a 1 s warm-up run
//! of the same shape; a run with errors is an error, not a fast figure. `BENCH_ROUNDS` (3) rounds
//! go through every route in turn, and the report shows each route's median transactions/s, p50
//! latency, and the CPU each transaction cost the proxy (HAProxy's or witness's process).
//!
//! Everything runs on loopback in temp dirs: the test kit's MariaDB (Debian's mariadbd), an HAProxy
//! of our own, and one `witness serve`; sysbench and haproxy are installed with apt-get if missing
//! and we are root. The witness binary is `$WITNESS_BIN`, else the one next to this executable,
//! else `$CARGO_TARGET_DIR/release/witness`. `BENCH_QUIET_MINUTES` waits for a quiet machine as
//! the HTTP benchmark does (`quiet.rs`). The report ends with the markdown docs/BENCHMARKS.md shows.

#![forbid(unsafe_code)]

#[path = "../../common.rs"]
mod common;
// Of the HTTP benchmark's CPU accounting, this one charges the proxy's ticks only.
#[allow(dead_code)]
#[path = "../../http/src/cpu.rs"]
mod cpu;
#[path = "../../markdown.rs"]
mod markdown;
#[path = "../../http/src/quiet.rs"]
mod quiet;
mod servers;
#[allow(dead_code)]
#[path = "../../witness_serve.rs"]
mod witness_serve;

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};

use witness_testkit::{MariaDb, APP_DATABASE, NATIVE_PASSWORD, NATIVE_USER};

use crate::common::{find_witness, setting};
use crate::quiet::Quiet;
use crate::servers::HaProxy;

/// The sysbench tests, in report order.
const TESTS: [&str; 2] = ["oltp_point_select", "oltp_read_only"];
/// Routes in report order.
const ROUTES: [&str; 3] = ["direct", "HAProxy", "witness"];
const DIRECT: usize = 0;
const HAPROXY: usize = 1;
const WITNESS: usize = 2;
/// Rows in the one table sysbench reads.
const TABLE_SIZE: u32 = 10_000;

/// One measured run.
#[derive(Clone, Copy)]
struct Run {
    tps: f64,
    /// Statements per transaction (sysbench's queries, BEGIN and COMMIT among them).
    statements: f64,
    p50_ms: f64,
    /// The proxy's CPU per transaction, µs (None directly).
    proxy_cpu_us: Option<f64>,
}

/// How a route is reached.
struct Route {
    port: u16,
    user: String,
    password: String,
    /// The proxy's processes, whose CPU each transaction is charged; None directly.
    pids: Option<Vec<u32>>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("witness-bench-mysql: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let seconds: u32 = setting("BENCH_SECONDS", "10", |s: &u32| (1..=3600).contains(s))?[0];
    let threads: Vec<u32> = setting("BENCH_THREADS", "1,8,32", |t: &u32| (1..=512).contains(t))?;
    let rounds: usize = setting("BENCH_ROUNDS", "3", |n: &usize| (1..=50).contains(n))?[0];
    let quiet_minutes: f64 = setting("BENCH_QUIET_MINUTES", "0", |m: &f64| (0.0..=600.0).contains(m))?[0];
    let quiet_load: f64 = setting("BENCH_QUIET_LOAD", "0.6", |l: &f64| *l > 0.0)?[0];
    let witness_bin = find_witness()?;
    let (sysbench, haproxy_bin) = servers::ensure_sysbench_and_haproxy()?;
    let command = markdown::command(&["BENCH_SECONDS", "BENCH_THREADS", "BENCH_ROUNDS", "BENCH_QUIET_MINUTES"], "bench/mysql.sh");

    let mut quiet = Quiet::wait(quiet_minutes, quiet_load);
    eprintln!("starting MariaDB, HAProxy and witness");
    let db = MariaDb::start();
    let haproxy = HaProxy::start(&haproxy_bin, db.port())?;
    let witness = servers::start_witness(&witness_bin, db.port())?;
    let routes = [
        Route { port: db.port(), user: NATIVE_USER.into(), password: NATIVE_PASSWORD.into(), pids: None },
        Route { port: haproxy.port, user: NATIVE_USER.into(), password: NATIVE_PASSWORD.into(), pids: Some(vec![haproxy.pid()]) },
        Route { port: witness.port, user: "bench".into(), password: witness.token.clone(), pids: Some(vec![witness.pid()]) },
    ];
    eprintln!("preparing sysbench's table ({TABLE_SIZE} rows)");
    common::output(sysbench_command(&sysbench, "oltp_read_only", &routes[DIRECT], 1, 1).arg("prepare"))?;
    println!("MySQL benchmark: sysbench against {} directly, through HAProxy (TCP mode) and through witness", db.version());
    println!("{}; {}", common::version(&sysbench, "--version"), common::version(&haproxy_bin, "-v"));
    println!("{seconds} s runs after a 1 s warm-up, {rounds} rounds, medians shown; prepared statements on\n");

    let mut results: BTreeMap<(usize, u32, usize), Vec<Run>> = BTreeMap::new();
    for round in 1..=rounds {
        for (t, test) in TESTS.iter().enumerate() {
            for &n in &threads {
                for (r, route) in routes.iter().enumerate() {
                    quiet.before_run();
                    if r == WITNESS {
                        witness.settle();
                    }
                    eprintln!("round {round}/{rounds}: {test}, {n} threads, {}", ROUTES[r]);
                    common::output(sysbench_command(&sysbench, test, route, n, 1).arg("run"))?;
                    let before = route.pids.as_deref().map(cpu::ticks_of);
                    let out = common::output(sysbench_command(&sysbench, test, route, n, seconds).arg("run"))?;
                    let after = route.pids.as_deref().map(cpu::ticks_of);
                    let mut run = parse(&out).ok_or_else(|| format!("cannot read sysbench's report: {}", common::tail(&out, 5)))?;
                    let transactions = run.tps * f64::from(seconds);
                    run.proxy_cpu_us = before.zip(after).map(|(b, a)| a.saturating_sub(b) as f64 * 1e4 / transactions.max(1.0));
                    results.entry((t, n, r)).or_default().push(run);
                }
            }
        }
    }
    report(&results, &threads, seconds, rounds, &quiet, &command);
    Ok(())
}

/// sysbench with the route's connection settings.
fn sysbench_command(sysbench: &std::path::Path, test: &str, route: &Route, threads: u32, seconds: u32) -> Command {
    let mut command = Command::new(sysbench);
    command.arg(test).args([
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        &format!("--mysql-port={}", route.port),
        &format!("--mysql-user={}", route.user),
        &format!("--mysql-password={}", route.password),
        &format!("--mysql-db={APP_DATABASE}"),
        "--tables=1",
        &format!("--table-size={TABLE_SIZE}"),
        "--db-ps-mode=auto",
        "--rand-type=uniform",
        "--percentile=50",
        &format!("--threads={threads}"),
        &format!("--time={seconds}"),
    ]);
    command
}

/// Transactions per second and the 50th percentile latency from sysbench's report.
fn parse(report: &str) -> Option<Run> {
    let number_after = |label: &str| {
        let line = report.lines().find(|line| line.trim_start().starts_with(label))?;
        line[line.find(label)? + label.len()..].split_whitespace().next()?.parse::<f64>().ok()
    };
    let transactions = report.lines().find(|line| line.trim_start().starts_with("transactions:"))?;
    let per_second = |line: &str| line.split('(').nth(1)?.split_whitespace().next()?.parse::<f64>().ok();
    let tps = per_second(transactions)?;
    let queries = report.lines().find(|line| line.trim_start().starts_with("queries:"))?;
    let statements = per_second(queries)? / tps;
    let errors = report.lines().find(|line| line.trim_start().starts_with("ignored errors:"))?;
    if errors.split_whitespace().nth(2) != Some("0") {
        return None;
    }
    Some(Run { tps, statements, p50_ms: number_after("50th percentile:")?, proxy_cpu_us: None })
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(results: &BTreeMap<(usize, u32, usize), Vec<Run>>, threads: &[u32], seconds: u32, rounds: usize, quiet: &Quiet, command: &str) {
    let at = |t: usize, n: u32, r: usize| results.get(&(t, n, r)).map(Vec::as_slice).unwrap_or_default();
    let tps = |t, n, r| median(at(t, n, r).iter().map(|run| run.tps));
    let p50 = |t, n, r| median(at(t, n, r).iter().map(|run| run.p50_ms));
    let cpu = |t, n, r| median(at(t, n, r).iter().filter_map(|run| run.proxy_cpu_us));
    let mut rows = Vec::new();
    let mut checks = Vec::new();
    for (t, test) in TESTS.iter().enumerate() {
        for &n in threads {
            let (direct, haproxy, witness) = (tps(t, n, DIRECT), tps(t, n, HAPROXY), tps(t, n, WITNESS));
            let added_us = (p50(t, n, WITNESS) - p50(t, n, DIRECT)) * 1000.0;
            let statements = median(at(t, n, WITNESS).iter().map(|run| run.statements));
            let vs_haproxy = witness / haproxy;
            checks.push(Some(vs_haproxy >= 0.7));
            if n == 1 {
                // The latency target is per statement: a point select is one.
                checks.push(Some(added_us / statements < 100.0));
            }
            rows.push(vec![
                format!("{test}, {n} threads"),
                format!("{direct:.0}"),
                format!("{haproxy:.0}"),
                format!("{witness:.0}"),
                format!("{:.2}", witness / direct),
                format!("{vs_haproxy:.2}"),
                format!("{:.0} / {:.0} / {:.0}", p50(t, n, DIRECT) * 1000.0, p50(t, n, HAPROXY) * 1000.0, p50(t, n, WITNESS) * 1000.0),
                format!("{added_us:+.0} ({:+.0})", added_us / statements),
                format!("{:.0} / {:.0}", cpu(t, n, HAPROXY), cpu(t, n, WITNESS)),
            ]);
        }
    }
    let header = [
        "test",
        "direct tx/s",
        "HAProxy tx/s",
        "witness tx/s",
        "witness / direct",
        "witness / HAProxy",
        "p50 µs (direct / HAProxy / witness)",
        "witness adds at p50, µs per transaction (per statement)",
        "proxy CPU µs per tx (HAProxy / witness)",
    ];
    let table = markdown::table(&header, &rows);
    println!("{table}");
    println!("Machine: {}", quiet.describe());
    println!("\n--- markdown for docs/BENCHMARKS.md ---\n");
    println!("{}\n", markdown::measured(command));
    println!("{seconds} s runs, {rounds} rounds, medians; {}.\n", quiet.describe());
    print!("{table}");
    println!(
        "\nTargets: at least 0.70 of HAProxy's transactions/s at every thread count, and under 100 µs added per statement at p50 at 1 thread: {}.",
        markdown::verdict(&checks)
    );
}

//! HTTP benchmark for witness: wrk against nginx serving a small response (3 bytes) and a 100 KiB
//! JSON document, directly, through nginx as a reverse proxy (what a user would pick instead:
//! kept-alive upstream connections, the upstream's credential added with `proxy_set_header`, nothing
//! recorded) and through witness (every exchange recorded in its ledger, durability `write` as the
//! default config has it), side by side in one run.
//!
//! ```text
//! cargo build --release -p witness -p witness-bench-http
//! cargo run --release -p witness-bench-http                          # 3 rounds of 8 s runs; 1 and 32 connections
//! BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_CONNECTIONS=1 cargo run --release -p witness-bench-http
//! BENCH_QUIET_MINUTES=20 cargo run --release -p witness-bench-http   # first wait for a quiet machine
//! ```
//!
//! Each run is `wrk -t min(C,2) -c C -d SECONDS` with the route's `Authorization` header, after a
//! 1 s warm-up run of the same shape; before each run every route is known to answer 200 with the
//! whole body, and a run with a failed request is an error, not a fast figure. `BENCH_ROUNDS`
//! (3) rounds go through every route in turn, and the report shows each route's median. Measured:
//! requests/s, p50 and p99 latency (wrk's histogram, through a Lua `done()` hook), and the CPU
//! each request cost the proxy's processes, the origin, wrk and the whole machine (`cpu.rs`).
//!
//! Everything runs on loopback in temp dirs: two nginx masters of our own (the origin, and the
//! reverse proxy; `servers.rs`), never the system's nginx, and one `witness serve`; wrk and nginx
//! are installed with apt-get if missing and we are root. The witness binary is `$WITNESS_BIN`,
//! else the one next to this executable (cargo builds both into the same target dir), else
//! `$CARGO_TARGET_DIR/release/witness`. With `BENCH_QUIET_MINUTES=N` the program first waits up to
//! N minutes for the 1-minute load average to fall below `BENCH_QUIET_LOAD` (0.6), and within the
//! same N minutes for the machine to be idle before each run (`quiet.rs`): on two cores a
//! concurrent build halves any figure. The report goes to stdout, progress to stderr, and ends with
//! the markdown that docs/BENCHMARKS.md shows for this benchmark (`markdown.rs`).

#![forbid(unsafe_code)]

#[path = "../../common.rs"]
mod common;
mod cpu;
#[path = "../../markdown.rs"]
mod markdown;
mod quiet;
mod report;
mod servers;
#[path = "../../witness_serve.rs"]
mod witness_serve;
mod wrk;

use std::collections::BTreeMap;
use std::process::ExitCode;

use witness_testkit::Nginx;

use crate::common::{find_witness, setting};
pub use crate::common::{output, tail, version};
use crate::quiet::Quiet;
use crate::servers::{Witness, CONTENT, PROXY_CLIENT_KEY, UPSTREAM_SECRET};

/// A response the origin serves: its name in the report, its path there, its body's size.
pub struct Response {
    pub name: &'static str,
    pub path: &'static str,
    pub bytes: usize,
}

pub const RESPONSES: [Response; 2] = [
    Response { name: "small", path: CONTENT.small.0, bytes: CONTENT.small.1 },
    Response { name: "100 KiB", path: CONTENT.large.0, bytes: CONTENT.large.1 },
];

/// Routes in report order; the constants index them.
pub const ROUTES: [&str; 3] = ["direct", "nginx proxy", "witness"];
pub const DIRECT: usize = 0;
pub const NGINX_PROXY: usize = 1;
pub const WITNESS: usize = 2;

/// Each measured run follows one of this length, of the same shape, that is not measured: the
/// first requests of a route open its connections (and witness's sessions).
const WARM_UP_SECONDS: u32 = 1;

/// One measured run.
pub struct Sample {
    pub run: wrk::Run,
    pub cpu: cpu::PerRequest,
    /// Bytes the ledger grew by, per request (witness only).
    pub ledger_bytes_per_request: Option<f64>,
}

/// Every round's sample, keyed by (response index, connections, route index); an error once any
/// round failed.
pub type Results = BTreeMap<(usize, u32, usize), Result<Vec<Sample>, String>>;

/// How a route is reached: its port, the path prefix before the origin's path, and the
/// credential a client sends it.
struct Route {
    port: u16,
    prefix: &'static str,
    authorization: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("witness-bench-http: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let seconds: u32 = setting("BENCH_SECONDS", "8", |s: &u32| (1..=3600).contains(s))?[0];
    let connections: Vec<u32> = setting("BENCH_CONNECTIONS", "1,32", |c: &u32| (1..=1000).contains(c))?;
    let rounds: usize = setting("BENCH_ROUNDS", "3", |n: &usize| (1..=50).contains(n))?[0];
    let quiet_minutes: f64 = setting("BENCH_QUIET_MINUTES", "0", |m: &f64| (0.0..=600.0).contains(m))?[0];
    let quiet_load: f64 = setting("BENCH_QUIET_LOAD", "0.6", |l: &f64| *l > 0.0)?[0];
    let witness_bin = find_witness()?;
    let (wrk_bin, nginx_bin) = servers::ensure_wrk_and_nginx()?;
    // The command as docs/BENCHMARKS.md gives it, for the markdown block that ends the report.
    let command = markdown::command(&["BENCH_SECONDS", "BENCH_CONNECTIONS", "BENCH_ROUNDS", "BENCH_QUIET_MINUTES"], "bench/http.sh");

    let mut quiet = Quiet::wait(quiet_minutes, quiet_load);
    let work = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let script = work.path().join("done.lua");
    std::fs::write(&script, wrk::DONE_SCRIPT).map_err(|e| format!("cannot write {}: {e}", script.display()))?;

    eprintln!("starting nginx (origin and reverse proxy) and witness");
    let origin = servers::start_origin(&nginx_bin)?;
    let proxy = servers::start_proxy(&nginx_bin, origin.port);
    let mut witness = servers::start_witness(&witness_bin, origin.port);
    let bearer = |credential: &str| format!("Bearer {credential}");
    let prefix = "/c/origin";
    let routes: [Result<Route, String>; 3] = [
        Ok(Route { port: origin.port, prefix: "", authorization: bearer(UPSTREAM_SECRET) }),
        proxy.as_ref().map(|p| Route { port: p.port, prefix, authorization: bearer(PROXY_CLIENT_KEY) }).map_err(Clone::clone),
        witness.as_ref().map(|w| Route { port: w.port, prefix, authorization: bearer(&w.token) }).map_err(Clone::clone),
    ];
    // A route that does not answer 200 with the whole body is left out, with the reason.
    let routes = routes.map(|route| -> Result<Route, String> {
        let route = route?;
        for response in &RESPONSES {
            servers::check_route(route.port, &format!("{}{}", route.prefix, response.path), &route.authorization, response.bytes)?;
        }
        Ok(route)
    });

    // Rounds go through every route in turn, in reverse order every other round, so that what the
    // machine does meanwhile (its host's other guests, say) falls on all routes alike; the report
    // takes each route's median round.
    let mut results = Results::new();
    for (r, response) in RESPONSES.iter().enumerate() {
        for &c in &connections {
            for round in 0..rounds {
                let order: Vec<usize> =
                    if round % 2 == 0 { vec![DIRECT, NGINX_PROXY, WITNESS] } else { vec![WITNESS, NGINX_PROXY, DIRECT] };
                for t in order {
                    let samples = results.entry((r, c, t)).or_insert_with(|| Ok(Vec::new()));
                    if samples.is_err() {
                        continue;
                    }
                    let result = routes[t].as_ref().map_err(|_| "not started (see above)".to_string()).and_then(|route| {
                        if let Ok(witness) = &witness {
                            witness.settle();
                        }
                        quiet.before_run();
                        eprintln!("{} response, {c} connections, round {} of {rounds}: {}", response.name, round + 1, ROUTES[t]);
                        let url = format!("http://127.0.0.1:{}{}{}", route.port, route.prefix, response.path);
                        wrk::run(&wrk_bin, &script, &url, &route.authorization, c, WARM_UP_SECONDS)?;
                        // The pids are read after the warm-up, when every nginx worker is up.
                        let proxy_pids = match t {
                            NGINX_PROXY => proxy.as_ref().ok().map(Nginx::pids),
                            WITNESS => witness.as_ref().ok().map(|w| vec![w.pid()]),
                            _ => None,
                        };
                        let (origin_pids, witness_ledger) = (origin.pids(), witness.as_ref().ok().filter(|_| t == WITNESS));
                        let ledger_before = witness_ledger.map(Witness::ledger_bytes);
                        let before = cpu::Ticks::now(proxy_pids.as_deref(), &origin_pids);
                        let run = wrk::run(&wrk_bin, &script, &url, &route.authorization, c, seconds)?;
                        let after = cpu::Ticks::now(proxy_pids.as_deref(), &origin_pids);
                        let ledger_after = witness_ledger.map(Witness::ledger_bytes);
                        let ledger_bytes_per_request =
                            ledger_before.zip(ledger_after).map(|(b, a)| a.saturating_sub(b) as f64 / run.requests as f64);
                        Ok(Sample { run, cpu: before.per_request(&after, run.requests), ledger_bytes_per_request })
                    });
                    match result {
                        Ok(sample) => samples.as_mut().expect("checked above").push(sample),
                        Err(e) => {
                            eprintln!("  failed: {e}");
                            *samples = Err(e);
                        }
                    }
                }
            }
        }
    }

    report::print_header(seconds, rounds, &connections, &wrk_bin, &nginx_bin, &quiet);
    for (name, route) in ROUTES.iter().zip(&routes) {
        if let Err(e) = route {
            println!("{name} could not be measured: {e}");
        }
    }
    report::print_tables(&connections, &results);
    report::print_cpu(&connections, &results);
    let targets = report::targets(&connections, &results);
    report::print_verdicts(&targets);
    // What nginx warned of while serving (an upstream response buffered to a temp file, say).
    for (name, nginx) in [("origin", Ok(&origin)), ("nginx proxy", proxy.as_ref())] {
        if let Ok(log) = nginx.map(|nginx| nginx.error_log_tail(5)) {
            if !log.is_empty() {
                println!("\n{name}'s error log: {log}");
            }
        }
    }
    // Stop witness as a deployment would (SIGTERM seals the ledger) and say whether it did.
    if let Ok(witness) = &mut witness {
        let sealed = witness.stop().contains("ledger sealed");
        eprintln!("witness stopped: {}", if sealed { "ledger sealed" } else { "ledger NOT sealed" });
    }
    // The markdown comes last, after every human-readable table, so that it is one piece to copy.
    report::print_markdown(&command, rounds, &connections, &results, &targets, &quiet);
    // The proxy, witness and the origin stop as they drop.
    Ok(())
}

//! The printed report: a table per response, the CPU each request cost every process on the
//! route, the verdicts against witness's HTTP targets (at least 0.70 of nginx-as-proxy's
//! requests/s; under 100 µs added at p50 for small responses) and last the markdown block of
//! docs/BENCHMARKS.md.

use std::path::Path;

use crate::quiet::Quiet;
use crate::{markdown, Results, Sample, DIRECT, NGINX_PROXY, RESPONSES, ROUTES, WARM_UP_SECONDS, WITNESS};

/// A route's median round by requests/s (the upper one of an even count), the sample whose
/// latency and CPU the report shows with it.
fn get(results: &Results, response: usize, connections: u32, route: usize) -> Option<&Sample> {
    let samples = results.get(&(response, connections, route))?.as_ref().ok()?;
    let mut by_rate: Vec<&Sample> = samples.iter().collect();
    by_rate.sort_by(|a, b| a.run.requests_per_second.total_cmp(&b.run.requests_per_second));
    by_rate.get(by_rate.len() / 2).copied()
}

/// witness's requests/s over nginx-as-proxy's, round by round.
fn ratios_by_round(results: &Results, response: usize, connections: u32) -> Vec<f64> {
    let rounds = |t: usize| results.get(&(response, connections, t)).and_then(|r| r.as_ref().ok());
    let (Some(witness), Some(nginx)) = (rounds(WITNESS), rounds(NGINX_PROXY)) else { return Vec::new() };
    witness.iter().zip(nginx).map(|(w, n)| w.run.requests_per_second / n.run.requests_per_second).collect()
}

fn show_ratios(ratios: &[f64]) -> String {
    ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
}

/// The CPU model, as `lscpu` names it ("model name" in /proc/cpuinfo).
fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, name)| name.trim().to_string()));
    model.unwrap_or_else(|| "an unknown CPU".into())
}

pub fn print_header(seconds: u32, rounds: usize, connections: &[u32], wrk: &Path, nginx: &Path, quiet: &Quiet) {
    println!("witness HTTP benchmark");
    println!("cores: {}; CPU: {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());
    println!("{}; {}", crate::version(wrk, "--version"), crate::version(nginx, "-v"));
    println!(
        "each run: wrk -t min(C,2) -c C -d {seconds}s -H 'Authorization: Bearer …' -s done.lua URL, after a {WARM_UP_SECONDS} s warm-up"
    );
    println!("rounds: {rounds}, each through every route (in reverse order every other round); the tables show each route's median round");
    println!("connections: {connections:?}; responses: {}", RESPONSES.map(|r| format!("{} ({} bytes)", r.name, r.bytes)).join(", "));
    println!("origin: nginx, worker_processes auto, static files; nginx proxy: worker_processes auto, upstream keepalive 32,");
    println!("  proxy_set_header Authorization; witness: the default config (durability write, 64 KiB of each body recorded)");
    println!("proxy CPU: user + system time of the proxy's processes (nginx's master and workers; witness's threads) per request");
    println!("machine CPU: busy time of all cores (/proc/stat: wrk, both nginx, witness, the kernel) per request");
    println!("{}", quiet.describe());
}

pub fn print_tables(connections: &[u32], results: &Results) {
    for (r, response) in RESPONSES.iter().enumerate() {
        println!("\n{} response ({} bytes of body)", response.name, response.bytes);
        println!(
            "{:>5}  {:<12} {:>11} {:>8} {:>8} {:>10} {:>15}",
            "conns", "route", "requests/s", "p50 µs", "p99 µs", "vs direct", "vs nginx proxy"
        );
        for &c in connections {
            for (t, name) in ROUTES.iter().enumerate() {
                match results.get(&(r, c, t)) {
                    Some(Ok(_)) => {
                        let Some(s) = get(results, r, c, t) else { continue };
                        let vs = |base: usize| {
                            get(results, r, c, base)
                                .map_or("-".into(), |b| format!("{:.2}", s.run.requests_per_second / b.run.requests_per_second))
                        };
                        println!(
                            "{c:>5}  {name:<12} {:>11.0} {:>8} {:>8} {:>10} {:>15}",
                            s.run.requests_per_second,
                            s.run.p50_us,
                            s.run.p99_us,
                            vs(DIRECT),
                            vs(NGINX_PROXY)
                        );
                    }
                    Some(Err(e)) => println!("{c:>5}  {name:<12} failed: {e}"),
                    None => {}
                }
            }
            let ratios = ratios_by_round(results, r, c);
            if !ratios.is_empty() {
                println!("{:>5}  witness vs nginx proxy, round by round: {}", "", show_ratios(&ratios));
            }
        }
    }
}

/// Where each request's CPU went, per route; on two cores requests/s follow the machine's CPU per
/// request, and the proxy's share is the part a proxy can change.
pub fn print_cpu(connections: &[u32], results: &Results) {
    println!("\nCPU per request, µs: the proxy / the origin / wrk / the machine (idle share); the proxy's context switches and the ledger's growth per request");
    for (r, response) in RESPONSES.iter().enumerate() {
        for &c in connections {
            for (t, name) in ROUTES.iter().enumerate() {
                let Some(s) = get(results, r, c, t) else { continue };
                let proxy = s.cpu.proxy.map_or("-".into(), |us| format!("{us:.1}"));
                let switches = s.cpu.proxy_switches.map_or(String::new(), |n| format!("; proxy {n:.1} context switches/request"));
                let ledger = s.ledger_bytes_per_request.map_or(String::new(), |b| format!("; ledger {b:.0} B/request"));
                let label = format!("{}, {c}c, {name}:", response.name);
                println!(
                    "  {label:<28} {proxy:>6} / {:>5.1} / {:>5.1} / {:>6.1} (idle {:.0}%){switches}{ledger}",
                    s.cpu.origin,
                    s.cpu.client,
                    s.cpu.machine,
                    s.cpu.idle_share * 100.0
                );
            }
        }
    }
}

/// One of witness's HTTP targets: what it asks, whether this run met it
/// ([`markdown::verdict`]), and the figures that decide it.
pub struct Target {
    pub name: &'static str,
    pub verdict: &'static str,
    pub detail: String,
}

/// p50 of a route minus direct's p50, µs.
fn added_at_p50(results: &Results, response: usize, connections: u32, route: usize) -> Option<i64> {
    let p50 = |t: usize| get(results, response, connections, t).map(|s| s.run.p50_us as i64);
    Some(p50(route)? - p50(DIRECT)?)
}

fn show_added(v: Option<i64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:+} µs"))
}

/// At least 0.70 of nginx-as-proxy's requests/s for every response and connection count; under
/// 100 µs added at p50 for the small response at 1 connection, where latency is the hop's cost
/// rather than requests queueing for two cores.
pub fn targets(connections: &[u32], results: &Results) -> Vec<Target> {
    let (mut throughput_checks, mut throughput_parts) = (Vec::new(), Vec::new());
    for (r, response) in RESPONSES.iter().enumerate() {
        let mut parts = Vec::new();
        for &c in connections {
            let pair = get(results, r, c, WITNESS).zip(get(results, r, c, NGINX_PROXY));
            let ratio = pair.map(|(w, n)| w.run.requests_per_second / n.run.requests_per_second);
            throughput_checks.push(ratio.map(|ratio| ratio >= 0.70));
            parts.push(format!("{c}c {}", ratio.map_or("n/a".into(), |ratio| format!("{ratio:.2}"))));
        }
        throughput_parts.push(format!("{} {}", response.name, parts.join(", ")));
    }
    let small = 0;
    let (witness, nginx) = (added_at_p50(results, small, 1, WITNESS), added_at_p50(results, small, 1, NGINX_PROXY));
    let latency_checks = if connections.contains(&1) { vec![witness.map(|us| us < 100)] } else { vec![] };
    vec![
        Target {
            name: "witness at least 0.70 of nginx-as-proxy's requests/s",
            verdict: markdown::verdict(&throughput_checks),
            detail: throughput_parts.join("; "),
        },
        Target {
            name: "under 100 µs added at p50 for small responses (1 connection, p50 minus direct's)",
            verdict: markdown::verdict(&latency_checks),
            detail: format!("witness {}; nginx proxy {}", show_added(witness), show_added(nginx)),
        },
    ]
}

pub fn print_verdicts(targets: &[Target]) {
    println!("\ntarget verdicts:");
    for target in targets {
        println!("  {}: {} ({})", target.name, target.verdict, target.detail);
    }
}

/// The block docs/BENCHMARKS.md shows for this benchmark: one row per response and connection
/// count with the three routes' requests/s, witness's ratios, latency, the latency each proxy
/// adds and the proxies' CPU per request; then the targets.
pub fn print_markdown(command: &str, rounds: usize, connections: &[u32], results: &Results, targets: &[Target], quiet: &Quiet) {
    // The load at the start only: once the runs begin, wrk, nginx and witness are the load.
    println!("\n{} CPU: {}; {}.\n", markdown::measured(command), cpu_model(), quiet.describe());
    let header = [
        "response, connections",
        "requests/s direct / nginx proxy / witness",
        "witness vs nginx proxy",
        "each round",
        "witness vs direct",
        "p50 µs direct / nginx proxy / witness",
        "p99 µs direct / nginx proxy / witness",
        "µs added at p50, nginx proxy / witness",
        "proxy CPU µs/request, nginx proxy / witness",
    ];
    let mut rows = Vec::new();
    for (r, response) in RESPONSES.iter().enumerate() {
        for &c in connections {
            let sample = |t: usize| get(results, r, c, t);
            let three = |show: &dyn Fn(&Sample) -> Option<String>, routes: &[usize]| {
                routes.iter().map(|&t| sample(t).and_then(show).unwrap_or_else(|| "-".into())).collect::<Vec<_>>().join(" / ")
            };
            let vs = |base: usize| {
                sample(WITNESS)
                    .zip(sample(base))
                    .map_or("-".into(), |(w, b)| format!("{:.2}", w.run.requests_per_second / b.run.requests_per_second))
            };
            let added = |t: usize| added_at_p50(results, r, c, t).map_or("-".into(), |us| format!("{us:+}"));
            rows.push(vec![
                format!("{}, {c}", response.name),
                three(&|s| Some(markdown::thousands(s.run.requests_per_second)), &[DIRECT, NGINX_PROXY, WITNESS]),
                vs(NGINX_PROXY),
                show_ratios(&ratios_by_round(results, r, c)),
                vs(DIRECT),
                three(&|s| Some(markdown::thousands(s.run.p50_us as f64)), &[DIRECT, NGINX_PROXY, WITNESS]),
                three(&|s| Some(markdown::thousands(s.run.p99_us as f64)), &[DIRECT, NGINX_PROXY, WITNESS]),
                format!("{} / {}", added(NGINX_PROXY), added(WITNESS)),
                three(&|s| s.cpu.proxy.map(|us| format!("{us:.1}")), &[NGINX_PROXY, WITNESS]),
            ]);
        }
    }
    print!("{}", markdown::table(&header, &rows));
    println!(
        "\nEach route's median of {rounds} rounds (*each round*: witness vs nginx proxy in every round). \
         *small*: a 3-byte static file; *100 KiB*: a 100 KiB JSON static file; *nginx proxy*: nginx as a reverse proxy with kept-alive \
         upstream connections, adding the upstream's credential, recording nothing; *witness*: the default config (durability `write`), \
         recording every exchange; *proxy CPU*: user + system time of the proxy's processes.\n"
    );
    for target in targets {
        println!("- {}: **{}** ({})", target.name, target.verdict, target.detail);
    }
}

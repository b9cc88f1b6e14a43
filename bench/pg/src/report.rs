//! The printed report: a table per workload, the proxies' CPU per transaction split into the hop
//! and witness's own work, the latency witness adds at one client, and the verdicts against
//! witness's performance targets (PgBouncer's throughput at 8 and 32 clients; under 100 µs added
//! at p50); last, the markdown block of docs/BENCHMARKS.md.

use std::collections::BTreeMap;

use crate::markdown;
use crate::pgbench::Sample;
use crate::{BOUNCER, DIRECT, FLOOR, TARGETS, WITNESS_FSYNC, WITNESS_POLICY, WITNESS_SEALED, WITNESS_WRITE, WORKLOADS};

/// Results keyed by (workload index, clients, target index).
pub type Results = BTreeMap<(usize, u32, usize), Result<Sample, String>>;

fn get(results: &Results, workload: usize, clients: u32, target: usize) -> Option<&Sample> {
    results.get(&(workload, clients, target))?.as_ref().ok()
}

pub fn print_tables(clients: &[u32], results: &Results) {
    for (w, workload) in WORKLOADS.iter().enumerate() {
        println!("\n{} (pgbench -S -M {})", workload.name, workload.mode);
        let (c, t, tps, p50, p99, direct, bouncer) = ("clients", "target", "TPS", "p50 µs", "p99 µs", "vs direct", "vs PgBouncer");
        let (cpu, machine) = ("proxy CPU µs/txn", "machine CPU µs/txn (idle)");
        println!("{c:>7}  {t:<14} {tps:>10} {p50:>9} {p99:>9} {direct:>10} {bouncer:>12} {cpu:>17} {machine:>26}");
        for &c in clients {
            for (t, name) in TARGETS.iter().enumerate() {
                let s = match &results[&(w, c, t)] {
                    Ok(s) => s,
                    Err(e) => {
                        println!("{c:>7}  {name:<14} FAILED: {e}");
                        continue;
                    }
                };
                let ratio = |base: usize| get(results, w, c, base).map_or("-".into(), |b| format!("{:.2}x", s.tps / b.tps));
                let (direct, bouncer) = (ratio(DIRECT), ratio(BOUNCER));
                let cpu = s.proxy_cpu_us.map_or("-".into(), |us| format!("{us:.1}"));
                let machine = s.machine.map_or("-".into(), |m| format!("{:.1} ({:.0}%)", m.busy_us_per_txn, m.idle_share * 100.0));
                println!(
                    "{c:>7}  {name:<14} {:>10.1} {:>9} {:>9} {direct:>10} {bouncer:>12} {cpu:>17} {machine:>26}",
                    s.tps, s.p50_us, s.p99_us
                );
            }
        }
    }
}

/// Splits witness's cost into the hop (the relay floor, which only copies bytes) and witness's own
/// work on top of it, in proxy CPU per transaction. On a machine whose cores the proxy shares with
/// pgbench and PostgreSQL, throughput follows the CPU each transaction takes in all three: the
/// second line sets the machine's CPU per transaction behind PgBouncer against witness's, beside
/// the TPS ratio it predicts.
pub fn print_hop_and_recording(clients: &[u32], results: &Results) {
    let loaded: Vec<u32> = clients.iter().copied().filter(|&c| c > 1).collect();
    if loaded.is_empty() {
        return;
    }
    println!("\nCPU per transaction, µs: the proxy's (PgBouncer / relay floor, the hop alone / witness-write), then the machine's:");
    for (w, workload) in WORKLOADS.iter().enumerate() {
        for &c in &loaded {
            let cpu = |t: usize| get(results, w, c, t).and_then(|s| s.proxy_cpu_us);
            let show = |t: usize| cpu(t).map_or("n/a".into(), |us| format!("{us:.1}"));
            let tps_ratio = |t: usize| get(results, w, c, t).zip(get(results, w, c, BOUNCER)).map(|(s, bouncer)| s.tps / bouncer.tps);
            let own = cpu(WITNESS_WRITE).zip(cpu(FLOOR)).map_or("n/a".into(), |(witness, floor)| format!("{:.1} µs", witness - floor));
            let label = format!("{} {c}c:", workload.mode);
            println!(
                "  {label:<14} {} / {} / {}  (witness-write minus relay floor: {own}; relay floor at {} of PgBouncer's TPS)",
                show(BOUNCER),
                show(FLOOR),
                show(WITNESS_WRITE),
                ratio(tps_ratio(FLOOR)),
            );
            let machine = |t: usize| get(results, w, c, t).and_then(|s| s.machine);
            let show =
                |t: usize| machine(t).map_or("n/a".into(), |m| format!("{:.1} (idle {:.0}%)", m.busy_us_per_txn, m.idle_share * 100.0));
            let predicted =
                machine(BOUNCER).zip(machine(WITNESS_WRITE)).map(|(bouncer, witness)| bouncer.busy_us_per_txn / witness.busy_us_per_txn);
            println!(
                "  {:<14} machine: PgBouncer {} / witness-write {}  (predicts witness at {} of PgBouncer's TPS; measured {})",
                "",
                show(BOUNCER),
                show(WITNESS_WRITE),
                ratio(predicted),
                ratio(tps_ratio(WITNESS_WRITE)),
            );
        }
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}x"))
}

/// One of witness's performance targets: what it asks, whether this run met it
/// ([`markdown::verdict`]), and the figures that decide it.
pub struct Target {
    pub name: &'static str,
    pub verdict: &'static str,
    pub detail: String,
}

/// PgBouncer's throughput at 8 and 32 clients; under 100 µs added at p50 at 1 client; the 10-rule
/// policy within 10% of witness without rules.
pub fn targets(clients: &[u32], results: &Results) -> Vec<Target> {
    let show_ratio = |pair: Option<(&Sample, &Sample)>| pair.map_or("n/a".into(), |(a, b)| format!("{:.2}", a.tps / b.tps));
    let (mut tps_checks, mut tps_parts) = (Vec::new(), Vec::new());
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let mut parts = Vec::new();
        for c in [8, 32] {
            let pair = get(results, w, c, WITNESS_WRITE).zip(get(results, w, c, BOUNCER));
            tps_checks.push(pair.map(|(a, b)| a.tps >= b.tps));
            parts.push(format!("{c}c {}", if clients.contains(&c) { show_ratio(pair) } else { "not run".into() }));
        }
        tps_parts.push(format!("{} {}", workload.mode, parts.join(", ")));
    }
    let (mut latency_checks, mut witness_parts, mut bouncer_parts) = (Vec::new(), Vec::new(), Vec::new());
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let (witness, bouncer) = (added_latency(results, w, WITNESS_WRITE), added_latency(results, w, BOUNCER));
        latency_checks.push(witness.map(|v| v < 100));
        witness_parts.push(format!("{} {}", workload.mode, show_added(witness)));
        bouncer_parts.push(show_added(bouncer));
    }
    let (mut policy_checks, mut policy_parts) = (Vec::new(), Vec::new());
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let mut parts = Vec::new();
        for &c in clients {
            let pair = get(results, w, c, WITNESS_POLICY).zip(get(results, w, c, WITNESS_WRITE));
            policy_checks.push(pair.map(|(a, b)| a.tps >= 0.9 * b.tps));
            parts.push(format!("{c}c {}", show_ratio(pair)));
        }
        policy_parts.push(format!("{} {}", workload.mode, parts.join(", ")));
    }
    let (mut sealed_checks, mut sealed_parts) = (Vec::new(), Vec::new());
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let mut parts = Vec::new();
        for &c in clients {
            let pair = get(results, w, c, WITNESS_SEALED).zip(get(results, w, c, WITNESS_WRITE));
            let cpu = pair.and_then(|(a, b)| a.proxy_cpu_us.zip(b.proxy_cpu_us));
            sealed_checks.push(pair.map(|(a, b)| a.tps >= 0.9 * b.tps));
            sealed_checks.push(cpu.map(|(a, b)| a <= 1.1 * b));
            let cpu = cpu.map_or("n/a".into(), |(a, b)| format!("{:.2}", a / b));
            parts.push(format!("{c}c {} TPS, {cpu} CPU", show_ratio(pair)));
        }
        sealed_parts.push(format!("{} {}", workload.mode, parts.join(", ")));
    }
    vec![
        Target {
            name: "witness `write` TPS at least PgBouncer's at 8 and 32 clients",
            verdict: markdown::verdict(&tps_checks),
            detail: tps_parts.join("; "),
        },
        Target {
            name: "latency added at 1 client (p50 minus direct's) under 100 µs",
            verdict: markdown::verdict(&latency_checks),
            detail: format!("{}; PgBouncer {}", witness_parts.join(", "), bouncer_parts.join(", ")),
        },
        Target {
            name: "the 10-rule policy costs under 10% TPS against witness `write` without rules",
            verdict: markdown::verdict(&policy_checks),
            detail: policy_parts.join("; "),
        },
        Target {
            name: "sealed recordings cost at most 10% TPS and 10% witness CPU per transaction against clear ones",
            verdict: markdown::verdict(&sealed_checks),
            detail: sealed_parts.join("; "),
        },
    ]
}

/// p50 of a target minus direct's p50, at one client: the cost of the extra hop per statement.
fn added_latency(results: &Results, workload: usize, target: usize) -> Option<i64> {
    let p50 = |t: usize| get(results, workload, 1, t).map(|s| s.p50_us as i64);
    Some(p50(target)? - p50(DIRECT)?)
}

fn show_added(v: Option<i64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:+} µs"))
}

pub fn print_verdicts(targets: &[Target], results: &Results) {
    println!("\nadded latency per statement at 1 client (p50, minus direct's p50):");
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let (witness, bouncer) = (added_latency(results, w, WITNESS_WRITE), added_latency(results, w, BOUNCER));
        let label = format!("{}:", workload.name);
        println!("  {label:<30} witness-write {:>9}   PgBouncer {:>9}", show_added(witness), show_added(bouncer));
    }
    println!("\ntarget verdicts:");
    for target in targets {
        println!("  {}: {} ({})", target.name, target.verdict, target.detail);
    }
}

/// The block docs/BENCHMARKS.md shows for this benchmark: one row per protocol and client count,
/// with witness's throughput against direct access and against PgBouncer, the relay floor's
/// against PgBouncer (what the hop alone costs), the policy's and `fsync`'s ratios, latency and
/// the proxies' CPU; then the targets.
pub fn print_markdown(command: &str, clients: &[u32], results: &Results, targets: &[Target]) {
    println!("\n{}\n", markdown::measured(command));
    let header = [
        "protocol, clients",
        "TPS direct / PgBouncer / witness",
        "witness vs direct",
        "witness vs PgBouncer",
        "relay floor vs PgBouncer",
        "10 rules vs none",
        "sealed vs clear: TPS / CPU",
        "`fsync` vs PgBouncer",
        "p50 µs direct / PgBouncer / witness",
        "proxy CPU µs/txn PgBouncer / relay floor / witness",
    ];
    let mut rows = Vec::new();
    for (w, workload) in WORKLOADS.iter().enumerate() {
        for &c in clients {
            let sample = |t: usize| get(results, w, c, t);
            let three = |show: &dyn Fn(&Sample) -> Option<String>, targets: [usize; 3]| {
                targets.map(|t| sample(t).and_then(show).unwrap_or_else(|| "-".into())).join(" / ")
            };
            let vs = |t: usize, base: usize| sample(t).zip(sample(base)).map_or("-".into(), |(a, b)| format!("{:.2}", a.tps / b.tps));
            rows.push(vec![
                format!("{}, {c}", workload.mode),
                three(&|s| Some(markdown::thousands(s.tps)), [DIRECT, BOUNCER, WITNESS_WRITE]),
                vs(WITNESS_WRITE, DIRECT),
                vs(WITNESS_WRITE, BOUNCER),
                vs(FLOOR, BOUNCER),
                vs(WITNESS_POLICY, WITNESS_WRITE),
                format!(
                    "{} / {}",
                    vs(WITNESS_SEALED, WITNESS_WRITE),
                    sample(WITNESS_SEALED)
                        .and_then(|a| a.proxy_cpu_us)
                        .zip(sample(WITNESS_WRITE).and_then(|b| b.proxy_cpu_us))
                        .map_or("-".into(), |(a, b)| format!("{:.2}", a / b))
                ),
                vs(WITNESS_FSYNC, BOUNCER),
                three(&|s| Some(markdown::thousands(s.p50_us as f64)), [DIRECT, BOUNCER, WITNESS_WRITE]),
                three(&|s| s.proxy_cpu_us.map(|us| format!("{us:.1}")), [BOUNCER, FLOOR, WITNESS_WRITE]),
            ]);
        }
    }
    print!("{}", markdown::table(&header, &rows));
    println!(
        "\n*witness*: durability `write`, no rules; *10 rules vs none*: witness `write` with a 10-rule policy that decides every \
         statement, against without; *sealed vs clear*: witness `write` with `[ledger.encryption]` against without, its TPS and its CPU per transaction; *proxy CPU*: user + system time of the proxy's process.\n"
    );
    for target in targets {
        println!("- {}: **{}** ({})", target.name, target.verdict, target.detail);
    }
}

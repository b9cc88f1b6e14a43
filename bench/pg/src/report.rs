//! The printed report: a table per workload, the proxies' CPU per transaction split into the hop
//! and witness's own work, the latency witness adds at one client, and the verdicts against
//! witness's performance targets (PgBouncer's throughput at 8 and 32 clients; under 100 µs added
//! at p50).

use std::collections::BTreeMap;

use crate::pgbench::Sample;
use crate::{BOUNCER, DIRECT, FLOOR, TARGETS, WITNESS_POLICY, WITNESS_WRITE, WORKLOADS};

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

/// "yes" if every check passed, "no" if any failed, "unknown" if some could not be made.
fn verdict(checks: &[Option<bool>]) -> &'static str {
    if checks.contains(&Some(false)) {
        "no"
    } else if checks.is_empty() || checks.contains(&None) {
        "unknown"
    } else {
        "yes"
    }
}

pub fn print_verdicts(clients: &[u32], results: &Results) {
    // p50 of a target minus direct's p50, at one client: the cost of the extra hop per statement.
    let p50 = |w: usize, t: usize| get(results, w, 1, t).map(|s| s.p50_us as i64);
    let added = |w: usize, t: usize| Some(p50(w, t)? - p50(w, DIRECT)?);
    let show = |v: Option<i64>| v.map_or("n/a".into(), |v| format!("{v:+} µs"));
    println!("\nadded latency per statement at 1 client (p50, minus direct's p50):");
    let (mut latency_checks, mut latency_parts) = (Vec::new(), Vec::new());
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let (witness, bouncer) = (added(w, WITNESS_WRITE), added(w, BOUNCER));
        let label = format!("{}:", workload.name);
        println!("  {label:<30} witness-write {:>9}   PgBouncer {:>9}", show(witness), show(bouncer));
        latency_checks.push(witness.map(|v| v < 100));
        latency_parts.push(format!("{} {}", workload.mode, show(witness)));
    }

    let (mut tps_checks, mut tps_parts) = (Vec::new(), Vec::new());
    for (w, workload) in WORKLOADS.iter().enumerate() {
        for c in [8, 32] {
            let pair = get(results, w, c, WITNESS_WRITE).zip(get(results, w, c, BOUNCER));
            tps_checks.push(pair.map(|(a, b)| a.tps >= b.tps));
            let ratio = pair.map_or("n/a".into(), |(a, b)| format!("{:.2}x", a.tps / b.tps));
            let ratio = if clients.contains(&c) { ratio } else { "not run".into() };
            tps_parts.push(format!("{} {c}c {ratio}", workload.mode));
        }
    }
    let (mut policy_checks, mut policy_parts) = (Vec::new(), Vec::new());
    for (w, workload) in WORKLOADS.iter().enumerate() {
        for &c in clients {
            let pair = get(results, w, c, WITNESS_POLICY).zip(get(results, w, c, WITNESS_WRITE));
            policy_checks.push(pair.map(|(a, b)| a.tps >= 0.9 * b.tps));
            policy_parts.push(format!("{} {c}c {}", workload.mode, pair.map_or("n/a".into(), |(a, b)| format!("{:.2}x", a.tps / b.tps))));
        }
    }
    println!("\ntarget verdicts:");
    let (tps, latency) = (verdict(&tps_checks), verdict(&latency_checks));
    println!("  witness write TPS >= PgBouncer TPS at 8 and 32 clients: {tps} ({})", tps_parts.join(", "));
    println!("  added latency at 1 client under 100 µs at p50: {latency} ({})", latency_parts.join(", "));
    println!("  10-rule policy costs under 10% TPS (vs witness-write): {} ({})", verdict(&policy_checks), policy_parts.join(", "));
}

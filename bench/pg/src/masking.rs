//! The masking runs: a pgbench script selecting 100 rows of a customers table (emails, some card
//! numbers, notes; six columns), prepared, through witness without masking and through witness
//! with a column rule and every content detector on, side by side at each client count, in
//! alternated rounds (`BENCH_MASK_ROUNDS`, default 3) whose medians are reported with each
//! round's ratio. The target is under 15% TPS lost to masking.

use std::path::Path;

use witness_testkit::Postgres;

use crate::pgbench::{self, Sample};
use crate::servers::{charged_to, Witness};

const MASK_ALL: &str = r#"
[[masking]]
name = "pii"
columns = ["*.email", "*.ssn", "*password*"]
detectors = ["all"]
"#;

/// Alternated rounds of each configuration at each client count (`BENCH_MASK_ROUNDS`): one pair
/// of runs moves by several percent with what else the two cores are doing.
const DEFAULT_ROUNDS: u32 = 3;

/// One client count's rounds: (without masking, with it), or why a run failed.
type Rounds = Result<Vec<(Sample, Sample)>, String>;

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

const SCRIPT: &str = "\\set id random(1, 9900)\nselect * from bench_customers where id between :id and :id + 99;\n";

pub fn run(witness_bin: &Path, pg: &Postgres, seconds: u32, clients: &[u32], log_dir: &Path) -> Result<(), String> {
    eprintln!("masking: loading 10,000 customers");
    pg.psql(
        "app",
        "drop table if exists bench_customers;
         create table bench_customers as
           select i as id, 'Customer ' || i as name, 'user' || i || '@example.com' as email,
                  case when i % 10 = 0 then '4111 1111 1111 1111' else 'none on file' end as card,
                  'order ' || i || ' shipped on 2026-11-' || (i % 28 + 1) || ', tracking ' || md5(i::text) as notes,
                  i * 3 as visits
           from generate_series(1, 10000) i;
         create unique index on bench_customers (id);
         grant select on bench_customers to trust_user;",
    );
    // Settled before measuring: autovacuum's analyze of the new table and the checkpoint its
    // writes bring on would otherwise land in the first rounds (which lost 0.2 of their ratio).
    pg.psql("app", "vacuum analyze bench_customers");
    pg.psql("app", "checkpoint");
    let script = log_dir.parent().unwrap_or(log_dir).join("witness-mask-bench.sql");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let script_arg = script.to_string_lossy().into_owned();
    let workload = ["-f", script_arg.as_str(), "-M", "prepared"];

    let rounds: u32 =
        std::env::var("BENCH_MASK_ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|n| (1..=20).contains(n)).unwrap_or(DEFAULT_ROUNDS);
    let mut plain = Witness::start(witness_bin, "write", "", pg.port())?;
    let mut masked = Witness::start(witness_bin, "write", MASK_ALL, pg.port())?;
    let conninfo = |w: &Witness| format!("host=127.0.0.1 port={} dbname=bench user=bench password={} sslmode=disable", w.port, w.token);
    let mut rows: Vec<(u32, Rounds)> = Vec::new();
    for &c in clients {
        let one = |w: &Witness, name: &str, round: u32| {
            plain.settle();
            masked.settle();
            eprintln!("100-row select: {c} clients, {name}, round {round} of {rounds}");
            // Witness's own CPU per statement: steadier from run to run than the TPS ratio,
            // which moves with whatever else the machine's two cores are doing.
            charged_to(Some(w.pid()), || pgbench::run_with(&workload, c, seconds, &conninfo(w), log_dir))
        };
        // Rounds alternate which witness goes first, so that neither always runs on a machine
        // the other has just warmed or loaded.
        let pairs: Rounds = (1..=rounds)
            .map(|round| {
                if round % 2 == 1 {
                    let without = one(&plain, "witness-write", round)?;
                    Ok((without, one(&masked, "witness-mask", round)?))
                } else {
                    let with = one(&masked, "witness-mask", round)?;
                    Ok((one(&plain, "witness-write", round)?, with))
                }
            })
            .collect();
        rows.push((c, pairs));
    }
    println!(
        "\n100-row select of 6 columns (pgbench -f SCRIPT -M prepared), masking off vs all detectors on; medians of {rounds} alternated rounds"
    );
    println!(
        "{:>7}  {:>16} {:>16} {:>9} {:>9} {:>11} {:>11} {:>8}  each round",
        "clients", "TPS no masking", "TPS masking", "p50 off", "p50 on", "CPU µs off", "CPU µs on", "ratio"
    );
    let mut checks = Vec::new();
    for (c, pairs) in &rows {
        match pairs {
            Ok(pairs) => {
                let median_of = |f: &dyn Fn(&(Sample, Sample)) -> f64| median(pairs.iter().map(f).collect());
                let cpu = |on: bool| {
                    let values: Vec<f64> = pairs.iter().filter_map(|(a, b)| if on { b.proxy_cpu_us } else { a.proxy_cpu_us }).collect();
                    if values.is_empty() {
                        "-".to_string()
                    } else {
                        format!("{:.1}", median(values))
                    }
                };
                let ratios: Vec<f64> = pairs.iter().map(|(a, b)| b.tps / a.tps).collect();
                let ratio = median(ratios.clone());
                println!(
                    "{c:>7}  {:>16.1} {:>16.1} {:>9} {:>9} {:>11} {:>11} {:>7.2}x  {}",
                    median_of(&|(a, _)| a.tps),
                    median_of(&|(_, b)| b.tps),
                    median_of(&|(a, _)| a.p50_us as f64),
                    median_of(&|(_, b)| b.p50_us as f64),
                    cpu(false),
                    cpu(true),
                    ratio,
                    ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
                );
                checks.push(format!("{c}c {ratio:.2}x"));
            }
            Err(e) => println!("{c:>7}  FAILED: {e}"),
        }
    }
    println!("  masking costs under 15% TPS (median ratio): {}", checks.join(", "));
    let _ = std::fs::remove_file(&script);
    plain.stop();
    masked.stop();
    Ok(())
}

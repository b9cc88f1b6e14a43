//! The masking runs: a pgbench script selecting 100 rows of a customers table (emails, some card
//! numbers, notes; six columns), prepared, through witness without masking and through witness
//! with a column rule and every content detector on, side by side at each client count, in
//! alternated rounds (`BENCH_MASK_ROUNDS`, default 3) whose medians are reported with each
//! round's ratio. The target is under 15% TPS lost to masking. [`Report::print_markdown`] writes
//! the block docs/BENCHMARKS.md shows for them.

use std::path::Path;

use witness_testkit::Postgres;

use crate::markdown;
use crate::pgbench::{self, Sample};
use crate::servers::{charged_to, start_witness, Witness};

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

/// What the masking runs measured, kept for the markdown that ends the whole report.
pub struct Report {
    rounds: u32,
    rows: Vec<(u32, Rounds)>,
}

/// The figures of one client count's rounds that the report shows.
struct Medians {
    tps_off: f64,
    tps_on: f64,
    p50_off: f64,
    p50_on: f64,
    /// Witness's CPU per statement without and with masking, µs, where it could be read.
    cpu_off: Option<f64>,
    cpu_on: Option<f64>,
    /// TPS with masking over TPS without: the median, and each round's.
    ratio: f64,
    ratios: Vec<f64>,
}

impl Medians {
    fn of(pairs: &[(Sample, Sample)]) -> Medians {
        let median_of = |f: &dyn Fn(&(Sample, Sample)) -> f64| median(pairs.iter().map(f).collect());
        let cpu = |f: &dyn Fn(&(Sample, Sample)) -> Option<f64>| {
            let values: Vec<f64> = pairs.iter().filter_map(f).collect();
            (!values.is_empty()).then(|| median(values))
        };
        let ratios: Vec<f64> = pairs.iter().map(|(a, b)| b.tps / a.tps).collect();
        Medians {
            tps_off: median_of(&|(a, _)| a.tps),
            tps_on: median_of(&|(_, b)| b.tps),
            p50_off: median_of(&|(a, _)| a.p50_us as f64),
            p50_on: median_of(&|(_, b)| b.p50_us as f64),
            cpu_off: cpu(&|(a, _)| a.proxy_cpu_us),
            cpu_on: cpu(&|(_, b)| b.proxy_cpu_us),
            ratio: median(ratios.clone()),
            ratios,
        }
    }

    fn each_round(&self) -> String {
        self.ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
    }
}

/// A figure to one decimal, or "-" where it could not be read.
fn one_decimal(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}"))
}

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

pub fn run(witness_bin: &Path, pg: &Postgres, seconds: u32, clients: &[u32], log_dir: &Path) -> Result<Report, String> {
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
    let mut plain = start_witness(witness_bin, "write", "", pg.port())?;
    let mut masked = start_witness(witness_bin, "write", MASK_ALL, pg.port())?;
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
    for (c, pairs) in &rows {
        match pairs {
            Ok(pairs) => {
                let m = Medians::of(pairs);
                println!(
                    "{c:>7}  {:>16.1} {:>16.1} {:>9} {:>9} {:>11} {:>11} {:>7.2}x  {}",
                    m.tps_off,
                    m.tps_on,
                    m.p50_off,
                    m.p50_on,
                    one_decimal(m.cpu_off),
                    one_decimal(m.cpu_on),
                    m.ratio,
                    m.each_round()
                );
            }
            Err(e) => println!("{c:>7}  FAILED: {e}"),
        }
    }
    let report = Report { rounds, rows };
    let (verdict, detail) = report.target();
    println!("  masking costs under 15% TPS (median ratio at least 0.85 at every client count): {verdict} ({detail})");
    let _ = std::fs::remove_file(&script);
    plain.stop();
    masked.stop();
    Ok(report)
}

impl Report {
    /// Whether masking cost under 15% of TPS (median ratio at least 0.85) at every client count,
    /// and each count's median.
    fn target(&self) -> (&'static str, String) {
        let medians: Vec<(u32, Option<f64>)> =
            self.rows.iter().map(|(c, pairs)| (*c, pairs.as_ref().ok().map(|pairs| Medians::of(pairs).ratio))).collect();
        let checks: Vec<Option<bool>> = medians.iter().map(|(_, ratio)| ratio.map(|r| r >= 0.85)).collect();
        let detail: Vec<String> =
            medians.iter().map(|(c, ratio)| format!("{c}c {}", ratio.map_or("n/a".into(), |r| format!("{r:.2}")))).collect();
        (markdown::verdict(&checks), detail.join(", "))
    }

    /// The block docs/BENCHMARKS.md shows for the masking runs: per client count the median TPS
    /// ratio with each round's, and witness's CPU per statement without and with masking.
    pub fn print_markdown(&self, command: &str) {
        println!("\n{}\n", markdown::measured(command));
        let each_round = format!("each of {} rounds", self.rounds);
        let header = [
            "clients",
            "TPS ratio with / without masking, median",
            each_round.as_str(),
            "witness CPU µs per statement, without / with",
            "masking's CPU µs per statement",
        ];
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|(c, pairs)| match pairs {
                Ok(pairs) => {
                    let m = Medians::of(pairs);
                    let extra = m.cpu_off.zip(m.cpu_on).map_or("-".into(), |(off, on)| format!("{:+.1}", on - off));
                    let cpu = format!("{} / {}", one_decimal(m.cpu_off), one_decimal(m.cpu_on));
                    vec![c.to_string(), format!("{:.2}", m.ratio), m.each_round(), cpu, extra]
                }
                Err(e) => vec![c.to_string(), format!("failed: {e}"), "-".into(), "-".into(), "-".into()],
            })
            .collect();
        print!("{}", markdown::table(&header, &rows));
        let (verdict, detail) = self.target();
        println!("\n- masking costs under 15% TPS (median ratio at least 0.85 at every client count): **{verdict}** ({detail})");
    }
}

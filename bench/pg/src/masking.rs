//! The masking runs: a pgbench script selecting 100 rows of a customers table (emails, some card
//! numbers, notes; six columns), prepared, through witness without masking and through witness
//! with a column rule and every content detector on, side by side at each client count. The
//! target is under 15% TPS lost to masking.

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

/// One pgbench run's result, or why it failed.
type Run = Result<Sample, String>;

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
    let script = log_dir.parent().unwrap_or(log_dir).join("witness-mask-bench.sql");
    std::fs::write(&script, SCRIPT).map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let script_arg = script.to_string_lossy().into_owned();
    let workload = ["-f", script_arg.as_str(), "-M", "prepared"];

    let mut plain = Witness::start(witness_bin, "write", "", pg.port())?;
    let mut masked = Witness::start(witness_bin, "write", MASK_ALL, pg.port())?;
    let conninfo = |w: &Witness| format!("host=127.0.0.1 port={} dbname=bench user=bench password={} sslmode=disable", w.port, w.token);
    let mut rows: Vec<(u32, Run, Run)> = Vec::new();
    for &c in clients {
        let one = |w: &Witness, name: &str| {
            plain.settle();
            masked.settle();
            eprintln!("100-row select: {c} clients, {name}");
            // Witness's own CPU per statement: steadier from run to run than the TPS ratio,
            // which moves with whatever else the machine's two cores are doing.
            charged_to(Some(w.pid()), || pgbench::run_with(&workload, c, seconds, &conninfo(w), log_dir))
        };
        let without = one(&plain, "witness-write");
        let with = one(&masked, "witness-mask");
        rows.push((c, without, with));
    }
    println!("\n100-row select of 6 columns (pgbench -f SCRIPT -M prepared), masking off vs all detectors on");
    println!(
        "{:>7}  {:>16} {:>16} {:>9} {:>9} {:>11} {:>11} {:>8}",
        "clients", "TPS no masking", "TPS masking", "p50 off", "p50 on", "CPU µs off", "CPU µs on", "ratio"
    );
    let mut checks = Vec::new();
    for (c, without, with) in &rows {
        match (without, with) {
            (Ok(a), Ok(b)) => {
                let cpu = |s: &Sample| s.proxy_cpu_us.map_or("-".into(), |us| format!("{us:.1}"));
                println!(
                    "{c:>7}  {:>16.1} {:>16.1} {:>9} {:>9} {:>11} {:>11} {:>7.2}x",
                    a.tps,
                    b.tps,
                    a.p50_us,
                    b.p50_us,
                    cpu(a),
                    cpu(b),
                    b.tps / a.tps
                );
                checks.push(format!("{c}c {:.2}x", b.tps / a.tps));
            }
            (a, b) => {
                println!("{c:>7}  FAILED: {}", [a, b].iter().filter_map(|r| r.as_ref().err()).cloned().collect::<Vec<_>>().join("; "))
            }
        }
    }
    println!("  masking costs under 15% TPS: {}", checks.join(", "));
    let _ = std::fs::remove_file(&script);
    plain.stop();
    masked.stop();
    Ok(())
}

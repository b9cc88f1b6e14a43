//! Running pgbench and reading its results: throughput from its summary, latency percentiles
//! from its per-transaction logs (`-l`), because the summary only gives a mean and the tail
//! (p99) is where a proxy's cost shows.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::{output, tail};

/// One pgbench run's result.
pub struct Sample {
    pub tps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Transactions the run completed.
    pub n_txns: u64,
    /// CPU time (user + system) of the proxy per transaction, in µs, when there is a proxy.
    pub proxy_cpu_us: Option<f64>,
    /// CPU time the whole machine spent per transaction (pgbench, PostgreSQL, the proxy, the
    /// kernel), in µs, and the share of the machine's time left idle, from /proc/stat.
    pub machine: Option<MachineCpu>,
}

#[derive(Clone, Copy)]
pub struct MachineCpu {
    pub busy_us_per_txn: f64,
    pub idle_share: f64,
}

/// A pgbench command with every PG* variable removed: a PGHOST or PGSSLMODE in the caller's
/// environment would otherwise silently change what is measured.
fn pgbench() -> Command {
    let mut cmd = Command::new(witness_testkit::pg_bin("pgbench"));
    for (key, _) in std::env::vars_os().filter(|(k, _)| k.to_string_lossy().starts_with("PG")) {
        cmd.env_remove(key);
    }
    cmd
}

/// `pgbench -i -q -s SCALE`: creates and fills the pgbench tables.
pub fn init(conninfo: &str, scale: u32) -> Result<(), String> {
    output(pgbench().args(["-i", "-q", "-s", &scale.to_string(), conninfo])).map(drop)
}

/// One select-only run against `conninfo`. `log_dir` must hold nothing else; it is emptied.
pub fn run(mode: &str, clients: u32, seconds: u32, conninfo: &str, log_dir: &Path) -> Result<Sample, String> {
    run_with(&["-S", "-M", mode], clients, seconds, conninfo, log_dir)
}

/// One run of `workload` (pgbench options: `-S`, or `-f SCRIPT`, and `-M MODE`).
pub fn run_with(workload: &[&str], clients: u32, seconds: u32, conninfo: &str, log_dir: &Path) -> Result<Sample, String> {
    let (c, j, t) = (clients.to_string(), clients.min(2).to_string(), seconds.to_string());
    let prefix = format!("--log-prefix={}", log_dir.join("x").display());
    let mut cmd = pgbench();
    cmd.arg("-n").args(workload).args(["-c", &c, "-j", &j, "-T", &t, "-l", &prefix, conninfo]);
    let result = output(&mut cmd);
    // Read (and delete) the logs before looking at the result, so a failed run leaves none.
    let mut latencies = read_latencies(log_dir)?;
    let stdout = result?;
    let tps = parse_tps(&stdout).ok_or_else(|| format!("no tps line in pgbench output: {}", tail(&stdout, 3)))?;
    let n_txns = parse_n_txns(&stdout).unwrap_or(latencies.len() as u64);
    if latencies.is_empty() {
        return Err("pgbench logged no transactions".into());
    }
    latencies.sort_unstable();
    Ok(Sample {
        tps,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        n_txns,
        proxy_cpu_us: None,
        machine: None,
    })
}

/// TPS from "tps = 1234.5 (without initial connection time)" (PostgreSQL 14+; older versions
/// say "excluding connections establishing").
fn parse_tps(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .filter(|l| l.contains("without initial connection time") || l.contains("excluding connections"))
        .find_map(|l| l.strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
}

/// N from "number of transactions actually processed: N" (or "N/M" with a fixed count).
fn parse_n_txns(stdout: &str) -> Option<u64> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("number of transactions actually processed: "))?;
    line.split(['/', ' ']).next()?.parse().ok()
}

/// Reads and deletes every transaction log (`x.<pid>`, `x.<pid>.<thread>`). Each line is
/// `client_id transaction_no time_us script_no time_epoch time_us_frac`; the third column is
/// the latency. Non-numeric values ("failed", "skipped") are not latencies and are left out.
fn read_latencies(log_dir: &Path) -> Result<Vec<u64>, String> {
    let mut latencies = Vec::new();
    for entry in fs::read_dir(log_dir).map_err(|e| format!("cannot list {}: {e}", log_dir.display()))? {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", log_dir.display()))?.path();
        let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        latencies.extend(text.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()));
        fs::remove_file(&path).map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
    }
    Ok(latencies)
}

/// Nearest-rank percentile of sorted, non-empty values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    #[test]
    fn tps_and_percentiles() {
        let out = "number of transactions actually processed: 81234\nlatency average = 0.1 ms\ntps = 9876.543210 (without initial connection time)\n";
        assert_eq!(super::parse_tps(out), Some(9876.54321));
        assert_eq!(super::parse_n_txns(out), Some(81234));
        assert_eq!(super::parse_n_txns("number of transactions actually processed: 800/800\n"), Some(800));
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!((super::percentile(&values, 0.5), super::percentile(&values, 0.99)), (50, 99));
        assert_eq!(super::percentile(&[7], 0.99), 7);
    }
}

//! Running wrk and reading its result. A Lua `done()` hook prints the figures in one line of
//! whole numbers (requests, duration and latency percentiles in µs, errors by kind), so nothing
//! depends on the units wrk picks for its human-readable summary.

use std::path::Path;
use std::process::Command;

/// wrk's hook: called once, after the run, with the summary and the latency histogram.
pub const DONE_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("bench-result requests=%d duration_us=%d p50_us=%d p99_us=%d status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"#;

/// One wrk run's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    pub requests: u64,
    pub requests_per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// One run of wrk: `connections` keep-alive connections on `min(connections, 2)` threads for
/// `seconds`, each request a GET of `url` with `authorization`.
pub fn run(wrk: &Path, script: &Path, url: &str, authorization: &str, connections: u32, seconds: u32) -> Result<Run, String> {
    let threads = connections.min(2).to_string();
    // wrk takes whole seconds (or minutes, hours): "1000ms" is a usage error.
    let duration = format!("{seconds}s");
    let header = format!("Authorization: {authorization}");
    let mut cmd = Command::new(wrk);
    cmd.args(["-t", &threads, "-c", &connections.to_string(), "-d", &duration, "-H", &header, "-s"]).arg(script).arg(url);
    let stdout = crate::output(&mut cmd)?;
    parse(&stdout).map_err(|e| format!("{e}; wrk said: {}", crate::tail(&stdout, 12)))
}

/// The figures in the `bench-result` line; an error for a run with any failed request (wrk counts
/// a 401 or a 502 as a request like any other, and a run of them would look fast).
fn parse(stdout: &str) -> Result<Run, String> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("bench-result ")).ok_or("no bench-result line")?;
    let field = |name: &str| -> Result<u64, String> {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} in {line:?}"))
    };
    let errors: Vec<String> = ["status", "connect", "read", "write", "timeout"]
        .into_iter()
        .filter_map(|kind| field(kind).ok().filter(|&n| n > 0).map(|n| format!("{n} {kind}")))
        .collect();
    if !errors.is_empty() {
        return Err(format!("requests failed: {} (status: answers other than 2xx or 3xx)", errors.join(", ")));
    }
    let (requests, duration_us) = (field("requests")?, field("duration_us")?);
    if requests == 0 {
        return Err("no request completed".into());
    }
    Ok(Run {
        requests,
        requests_per_second: requests as f64 * 1e6 / duration_us.max(1) as f64,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
    })
}

#[cfg(test)]
mod tests {
    const OUTPUT: &str = "Running 2s test @ http://127.0.0.1:1/small.txt\n  1 threads and 1 connections\n\
        bench-result requests=50000 duration_us=2000000 p50_us=35 p99_us=80 status=0 connect=0 read=0 write=0 timeout=0\n\
        Requests/sec:  25000.00\n";

    #[test]
    fn a_clean_run_gives_its_figures() {
        let run = super::parse(OUTPUT).unwrap();
        assert_eq!(run, super::Run { requests: 50000, requests_per_second: 25000.0, p50_us: 35, p99_us: 80 });
    }

    #[test]
    fn a_run_with_failed_requests_is_an_error() {
        let failed = OUTPUT.replace("status=0", "status=12");
        assert!(super::parse(&failed).unwrap_err().contains("12 status"));
        assert!(super::parse("Requests/sec: 1\n").is_err());
    }
}

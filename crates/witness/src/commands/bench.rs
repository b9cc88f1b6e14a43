//! `witness bench ledger`: fills a ledger with synthetic sessions appending concurrently, and
//! prints appends/s, MB/s and append latency percentiles; also how much disk an event takes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use witness_core::{kind, Direction, Event, PayloadType, Protocol, SessionInfo};
use witness_ledger::{Durability, Ledger, LedgerConfig, LedgerPaths, MasterKey};

use crate::locate::data_dir;
use crate::output::bytes;
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Append synthetic events from many concurrent sessions into the ledger in --data-dir.
    Ledger(LedgerBenchArgs),
}

#[derive(Args, Debug)]
pub struct LedgerBenchArgs {
    /// Sessions appending at the same time.
    #[arg(long, default_value_t = 64)]
    sessions: u64,
    /// Events each session appends (one after the other, each waiting for its receipt).
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Payload bytes per event.
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    #[arg(long, default_value_t = Durability::Write)]
    durability: Durability,
    /// Seal every event as `[ledger.encryption]` does, with a random master key kept in memory.
    #[arg(long)]
    sealed: bool,
}

pub fn run(cli: &Cli, cmd: &BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::Ledger(args) = cmd;
    let data_dir = data_dir(cli)?;
    let mut config = LedgerConfig::new(&data_dir);
    config.durability = args.durability;
    if args.sealed {
        config.master_key = Some(MasterKey::random());
    }
    let ledger = Ledger::open(&config).with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?;
    let segments = LedgerPaths::new(&data_dir).segments;
    let disk_before = dir_bytes(&segments);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = Instant::now();
    let mut latencies_ns: Vec<u32> = runtime.block_on(append_from_sessions(&ledger, args))?;
    let elapsed = started.elapsed();
    drop(runtime);
    ledger.shutdown().context("the final checkpoint failed")?;
    let disk_bytes = dir_bytes(&segments) - disk_before;

    latencies_ns.sort_unstable();
    let n = latencies_ns.len() as u64;
    let pct = |p: f64| Duration::from_nanos(latencies_ns[((n as f64 - 1.0) * p) as usize] as u64);
    let secs = elapsed.as_secs_f64();
    let payload_total = n * args.payload_bytes as u64;
    println!(
        "witness bench ledger: {} sessions x {} events, {}-byte payloads, durability {}{}",
        args.sessions,
        args.events,
        args.payload_bytes,
        args.durability,
        if args.sealed { ", sealed" } else { "" }
    );
    println!("  appends        {n} in {secs:.3}s");
    println!("  appends/s      {:.0}", n as f64 / secs);
    println!("  payload MB/s   {:.1}", payload_total as f64 / secs / 1e6);
    println!("  ledger MB/s    {:.1}  ({} written)", disk_bytes as f64 / secs / 1e6, bytes(disk_bytes));
    println!("  latency p50    {}", latency(pct(0.50)));
    println!("  latency p99    {}", latency(pct(0.99)));
    println!("  latency p99.9  {}", latency(pct(0.999)));
    println!("  disk per event {:.0} bytes ({} bytes of payload)", disk_bytes as f64 / n.max(1) as f64, args.payload_bytes);
    Ok(ExitCode::SUCCESS)
}

/// Runs every session as a task; returns each append's latency in ns.
async fn append_from_sessions(ledger: &Ledger, args: &LedgerBenchArgs) -> anyhow::Result<Vec<u32>> {
    let mut tasks = Vec::new();
    for i in 0..args.sessions {
        let info = SessionInfo {
            identity: format!("bench-agent-{}", i % 8),
            connection: "bench".into(),
            protocol: Protocol::Synthetic,
            task: Some("witness bench ledger".into()),
            client_addr: None,
            groups: Vec::new(),
        };
        let session = ledger.open_session(&info).await?;
        let events = args.events;
        let payload: Vec<u8> = (0..args.payload_bytes).map(|b| (b as u64 * 31 + i) as u8).collect();
        tasks.push(tokio::spawn(async move {
            let kind = kind::BENCH_EVENT;
            let mut latencies = Vec::with_capacity(events as usize);
            for seq in 0..events {
                let event = Event {
                    kind: kind.clone(),
                    direction: if seq % 2 == 0 { Direction::Request } else { Direction::Response },
                    summary: format!("synthetic event {seq}"),
                    attrs: serde_json::Map::new(),
                    payload_type: PayloadType::Binary,
                    payload: payload.clone(),
                };
                let started = Instant::now();
                session.append(&event).await?;
                latencies.push(started.elapsed().as_nanos().min(u32::MAX as u128) as u32);
            }
            session.close("bench finished").await?;
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.context("a bench session panicked")??);
    }
    Ok(all)
}

/// An append's latency to two or three significant figures, as docs/BENCHMARKS.md shows it:
/// "2.6 µs", "67 µs", "3.6 ms".
fn latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    match us {
        us if us < 10.0 => format!("{us:.1} µs"),
        us if us < 1000.0 => format!("{us:.0} µs"),
        us if us < 10_000.0 => format!("{:.1} ms", us / 1000.0),
        us => format!("{:.0} ms", us / 1000.0),
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn latency_keeps_two_or_three_figures() {
        let cases = [(2_640, "2.6 µs"), (67_400, "67 µs"), (999_400, "999 µs"), (3_612_000, "3.6 ms"), (41_200_000, "41 ms")];
        for (ns, expected) in cases {
            assert_eq!(super::latency(Duration::from_nanos(ns)), expected, "{ns} ns");
        }
    }
}

//! `witness verify`, `witness checkpoint export` and `witness export`: check a ledger (and that its
//! index says what its records say) or one exported session, and write the files that let others
//! check it later.
//!
//! Exit status of `verify`: 0 intact (a running witness's records after its last checkpoint
//! included), 1 damaged or the index altered, 2 verify could not run (bad flags, unreadable
//! files), 3 no ledger in the data dir at all.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use witness_core::SessionIdPrefix;
use witness_ledger::export::{export_session, verify_session_export};
use witness_ledger::verify::{verify_ledger, ExportedCheckpoint, VerifyOptions, VerifyReport};
use witness_ledger::{parse_public_key, IndexCheck, LedgerError, LedgerPaths};

use crate::locate::data_dir;
use crate::output::{bytes, time};
use crate::Cli;

#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 intact (a running witness's records not yet checkpointed included), 1 damaged or the index altered, 2 verify could not run, 3 no ledger in the data dir."
)]
pub struct VerifyArgs {
    /// Also check that the ledger still extends this checkpoint (from `witness checkpoint export`).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Verify this session export on its own instead of a ledger (needs --pubkey).
    #[arg(long, value_name = "FILE")]
    session_export: Option<PathBuf>,
    /// Verify this bundle (from `export --bundle`) on its own: every session's records, proof and
    /// checkpoint signature; no identity needed. Pin the key with --pubkey.
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// The ledger's public key (a file or 64 hex digits). Pin it to catch a ledger re-signed with
    /// another key; default for a ledger: the ledger's own signing.pub.
    #[arg(long, value_name = "KEY")]
    pubkey: Option<String>,
    /// Accept records after the last checkpoint and a torn last record even when no witness
    /// holds the ledger (one that crashed and has not restarted yet). A running witness is
    /// detected by its lock and needs no flag.
    #[arg(long)]
    allow_unsealed_tail: bool,
    /// Do not compare the index (ledger/index.sqlite) with the records.
    #[arg(long)]
    skip_index: bool,
    /// Print at most this many problems.
    #[arg(long, default_value_t = 20)]
    max_problems: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CheckpointCommand {
    /// Print the latest signed checkpoint as JSON, after verifying the ledger up to it. Keep it
    /// somewhere the gateway cannot write; `witness verify --checkpoint` checks against it later.
    Export,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The session to export: its id, or its first digits if no other session's id starts with
    /// them. With --bundle it may be left out: every ended session (--since, --until) goes in.
    id: Option<SessionIdPrefix>,
    #[command(flatten)]
    bundle: crate::commands::bundle::BundleArgs,
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// JSON lines: a header, one line per event, then the Merkle inclusion proof and checkpoint.
    Jsonl,
    /// asciicast v2 of an SSH session's terminal, for asciinema (not verifiable on its own).
    Asciicast,
}

/// `witness verify`'s exit status when the data dir holds no ledger at all.
const EXIT_NO_LEDGER: u8 = 3;

pub fn run_verify(cli: &Cli, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.session_export {
        return verify_export_file(path, args);
    }
    if let Some(path) = &args.bundle {
        return crate::commands::bundle::verify(path, args.pubkey.as_deref());
    }
    let data_dir = data_dir(cli)?;
    let paths = LedgerPaths::new(&data_dir);
    let public_key = match &args.pubkey {
        Some(given) => Some(parse_public_key(given)?),
        None if paths.public_key.exists() => Some(parse_public_key(&paths.public_key.to_string_lossy())?),
        None => None,
    };
    let checkpoint = match &args.checkpoint {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot open checkpoint file {}", path.display()))?;
            let cp: ExportedCheckpoint = serde_json::from_reader(BufReader::new(file))
                .with_context(|| format!("{} is not a checkpoint written by `witness checkpoint export`", path.display()))?;
            Some(cp)
        }
        None => None,
    };
    let options = VerifyOptions { public_key, checkpoint, allow_unsealed_tail: args.allow_unsealed_tail, check_index: !args.skip_index };
    let report = match verify_ledger(&paths.root, &options) {
        Err(LedgerError::NoLedger { .. }) => {
            if args.json {
                println!("{}", serde_json::json!({ "ledger": false, "intact": null, "data_dir": data_dir }));
            } else {
                println!(
                    "NO LEDGER in {}: nothing to verify (no segments and no signing key); check --data-dir or --config",
                    data_dir.display()
                );
            }
            return Ok(ExitCode::from(EXIT_NO_LEDGER));
        }
        result => result?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
    } else {
        print_report(&report, args.max_problems, &data_dir);
        print_index(&report.index, args.max_problems, &paths);
    }
    let index_intact = !matches!(&report.index, IndexCheck::Checked(index) if !index.problems.is_empty());
    Ok(if report.problems.is_empty() && index_intact { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn verify_export_file(path: &PathBuf, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let Some(key) = &args.pubkey else {
        anyhow::bail!("--pubkey is required with --session-export: give the ledger's public key (its signing.pub file or hex), obtained from a source you trust");
    };
    let key = parse_public_key(key)?;
    let file = File::open(path).with_context(|| format!("cannot open session export {}", path.display()))?;
    match verify_session_export(BufReader::new(file), &key) {
        Ok(summary) => {
            let state = if summary.closed { "closed" } else { "open at export time" };
            println!(
                "session export intact: session {} ({state}), {} events, hash chain and payloads verified, included in a checkpoint of {} session heads signed by {}",
                summary.session,
                summary.events,
                summary.tree_size,
                hex::encode(key.as_bytes())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("SESSION EXPORT DOES NOT VERIFY: {}: {error}", path.display());
            Ok(ExitCode::from(1))
        }
    }
}

pub fn run_checkpoint(cli: &Cli, cmd: &CheckpointCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CheckpointCommand::Export => {
            let data_dir = data_dir(cli)?;
            let paths = LedgerPaths::new(&data_dir);
            let public_key = match paths.public_key.exists() {
                true => Some(parse_public_key(&paths.public_key.to_string_lossy())?),
                false => None,
            };
            let options = VerifyOptions { public_key, allow_unsealed_tail: true, ..VerifyOptions::default() };
            let report = verify_ledger(&paths.root, &options)?;
            if let Some(first) = report.problems.first() {
                anyhow::bail!("the ledger in {} does not verify, so no checkpoint is exported: {first}", data_dir.display());
            }
            let checkpoint = report.last_checkpoint.with_context(|| {
                format!(
                    "the ledger in {} has no checkpoint yet; run witness serve once, or wait a second while it runs",
                    data_dir.display()
                )
            })?;
            println!("{}", serde_json::to_string_pretty(&checkpoint)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run_export(cli: &Cli, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(cli)?;
    let paths = LedgerPaths::new(&data_dir);
    if let Some(bundle) = &args.bundle.bundle {
        return crate::commands::bundle::export(cli, args.id.as_ref(), &args.bundle, bundle);
    }
    let Some(id) = &args.id else { anyhow::bail!("give the session to export (its id or a unique prefix), or --bundle FILE for several") };
    let id = crate::commands::sessions::resolve_in(&data_dir, id)?;
    let destination = args.output.as_ref().map_or("standard output".to_string(), |p| p.display().to_string());
    let what = format!("export ({:?}) to {destination}", args.format).to_lowercase();
    crate::audited::read(cli, &data_dir, &witness_core::kind::RECORDING_EXPORTED, what, Some(id))?;
    if let ExportFormat::Asciicast = args.format {
        return export_asciicast(&data_dir, id, args, &crate::locate::keyring(cli, &data_dir)?);
    }
    let summary = match &args.output {
        Some(path) => {
            let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::new(file);
            let summary = export_session(&paths.root, id, &mut out)?;
            out.flush().with_context(|| format!("cannot write {}", path.display()))?;
            summary
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let summary = export_session(&paths.root, id, &mut out)?;
            out.flush().context("cannot write to standard output")?;
            summary
        }
    };
    eprintln!("exported {} events of session {}", summary.events, summary.session);
    if summary.events_left_out > 0 {
        eprintln!(
            "{} later events are not sealed by a checkpoint yet and were left out; export again after the next checkpoint",
            summary.events_left_out
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &VerifyReport, max_problems: usize, data_dir: &std::path::Path) {
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let throughput = format!("{:.0} MB/s", report.bytes as f64 / secs / 1e6);
    if report.problems.is_empty() {
        println!(
            "ledger intact: {} segments, {} records ({}), {} events in {} sessions ({} open), {} session heads, {} checkpoints",
            report.segments,
            report.records,
            bytes(report.bytes),
            report.events,
            report.sessions,
            report.open_sessions,
            report.leaves,
            report.checkpoints
        );
    } else {
        let total = report.problems.len() as u64 + report.problems_not_listed;
        println!("LEDGER DAMAGED: {total} problems in {}; the first is the first bad record", data_dir.display());
        for problem in report.problems.iter().take(max_problems) {
            println!("  {problem}");
        }
        if total > max_problems as u64 {
            println!("  … and {} more (--max-problems to see them)", total - max_problems as u64);
        }
    }
    if let Some(cp) = &report.last_checkpoint {
        println!(
            "last checkpoint: {} covering {} records and {} session heads, root {}",
            time(cp.time_ns),
            cp.n_records,
            cp.tree_size,
            cp.root
        );
    }
    if let Some(key) = report.public_key {
        println!("checkpoints signed by {}", hex::encode(key));
    }
    if report.writer_running {
        println!("witness is running and appending to this ledger: checked up to its last complete record");
    }
    if report.unsealed_records > 0 {
        let note = if report.writer_running { ": not yet checkpointed (the next checkpoint seals them)" } else { "" };
        println!("{} records after the last checkpoint{note}", report.unsealed_records);
    }
    if let Some(tail) = &report.unfinished_tail {
        println!(
            "segment {} ends inside a record at offset {} ({} bytes so far): not yet written whole, left for the next verify",
            tail.segment_idx, tail.offset, tail.bytes
        );
    }
    println!("verified {} in {:.3}s ({throughput})", bytes(report.bytes), secs);
}

/// What the comparison of the index with the records found, and what to do about a difference.
fn print_index(check: &IndexCheck, max_problems: usize, paths: &LedgerPaths) {
    match check {
        IndexCheck::NotChecked => {}
        IndexCheck::Missing => println!("no index yet: witness builds it from the segments when it next opens the ledger"),
        IndexCheck::Checked(index) if index.problems.is_empty() => println!(
            "index agrees with the ledger: {} sessions, the first {} records compared",
            index.sessions_compared, index.records_compared
        ),
        IndexCheck::Checked(index) => {
            let total = index.problems.len() as u64 + index.problems_not_listed;
            println!(
                "INDEX ALTERED: {} differs from the ledger's records in {total} ways (the records above are what is true):",
                paths.index.display()
            );
            for problem in index.problems.iter().take(max_problems) {
                println!("  {problem}");
            }
            if total > max_problems as u64 {
                println!("  … and {} more (--max-problems to see them)", total - max_problems as u64);
            }
            println!(
                "  a running witness with the review API rebuilds it when its verification finds this; otherwise stop witness and delete {} (with its -wal and -shm files): it is rebuilt from the segments at the next start",
                paths.index.display()
            );
        }
    }
}

fn index_json(check: &IndexCheck) -> serde_json::Value {
    match check {
        IndexCheck::NotChecked => serde_json::json!({ "checked": false }),
        IndexCheck::Missing => serde_json::json!({ "checked": false, "missing": true }),
        IndexCheck::Checked(index) => serde_json::json!({
            "checked": true,
            "intact": index.problems.is_empty(),
            "records_compared": index.records_compared,
            "sessions_compared": index.sessions_compared,
            "problems": index.problems.iter().map(|p| serde_json::json!({
                "session": p.session,
                "problem": p.kind.to_string(),
            })).collect::<Vec<_>>(),
            "problems_not_listed": index.problems_not_listed,
        }),
    }
}

/// A checkpoint in verify's report, its time as every JSON time is written (the file of
/// `witness checkpoint export` keeps the signed `time_ns`).
fn checkpoint_json(cp: &ExportedCheckpoint) -> serde_json::Value {
    serde_json::json!({
        "tree_size": cp.tree_size,
        "root": cp.root,
        "n_records": cp.n_records,
        "global_head": cp.global_head,
        "time": time(cp.time_ns),
        "public_key": cp.public_key,
        "signature": cp.signature,
    })
}

fn report_json(report: &VerifyReport) -> serde_json::Value {
    serde_json::json!({
        "ledger": true,
        "intact": report.problems.is_empty(),
        "segments": report.segments,
        "records": report.records,
        "bytes": report.bytes,
        "events": report.events,
        "sessions": report.sessions,
        "open_sessions": report.open_sessions,
        "session_heads": report.leaves,
        "checkpoints": report.checkpoints,
        "unsealed_records": report.unsealed_records,
        "writer_running": report.writer_running,
        "unfinished_tail": report.unfinished_tail.map(|t| serde_json::json!({
            "segment": t.segment_idx,
            "offset": t.offset,
            "bytes": t.bytes,
        })),
        "public_key": report.public_key.map(hex::encode),
        "last_checkpoint": report.last_checkpoint.as_ref().map(checkpoint_json),
        "problems": report.problems.iter().map(|p| serde_json::json!({
            "segment": p.segment_idx,
            "offset": p.offset,
            "record": p.ledger_seq,
            "session": p.session,
            "seq": p.seq,
            "problem": p.kind.to_string(),
        })).collect::<Vec<_>>(),
        "problems_not_listed": report.problems_not_listed,
        "index": index_json(&report.index),
        "seconds": report.elapsed.as_secs_f64(),
    })
}

fn export_asciicast(
    data_dir: &std::path::Path,
    id: witness_core::SessionId,
    args: &ExportArgs,
    keyring: &witness_ledger::Keyring,
) -> anyhow::Result<ExitCode> {
    let (session, events) = crate::commands::sessions::read_session(data_dir, id, keyring)?;
    let cast = witness_proto_ssh::asciicast::from_events(&events)
        .with_context(|| format!("session {} ({}) has no terminal to export: it has no pty and no output", id, session.info.connection))?;
    match &args.output {
        Some(path) => {
            let mut out = BufWriter::new(File::create(path).with_context(|| format!("cannot create {}", path.display()))?);
            cast.write_asciicast(&mut out)?;
            out.flush().with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            cast.write_asciicast(&mut out)?;
            out.flush().context("cannot write to standard output")?;
        }
    }
    eprintln!(
        "exported channel {} of session {} as asciicast v2 ({} frames, {:.1} s)",
        cast.channel,
        id,
        cast.frames.len(),
        cast.duration()
    );
    Ok(ExitCode::SUCCESS)
}

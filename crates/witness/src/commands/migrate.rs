//! `witness migrate --encrypt --to DIR`: the data dir's sessions rewritten, sealed, into a new
//! data dir (witness_ledger::migrate), with the rest of the data dir (tokens, keys, TLS, holds)
//! copied beside it. The old data dir is left as it is: destroying it is the operator's step.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use witness_ledger::migrate::migrate_encrypted;
use witness_ledger::{Keyring, Ledger, LedgerPaths};

use crate::locate::{data_dir, load_config};
use crate::Cli;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Seal every session with the master key of [ledger.encryption] (the only migration there is).
    #[arg(long)]
    encrypt: bool,
    /// The new data dir (must hold no ledger yet).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
}

pub fn run(cli: &Cli, args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    if !args.encrypt {
        bail!("say what to migrate to: --encrypt (every session sealed with the configured master key)");
    }
    let old_dir = data_dir(cli)?;
    let old = LedgerPaths::new(&old_dir);
    // Held to the end: no witness starts on the old data dir while it is read.
    let _old_lock = Ledger::lock_stopped(&old).with_context(|| {
        format!("witness must be stopped on {} for the migration, so that nothing is recorded meanwhile", old_dir.display())
    })?;
    let config = load_config(cli)?;
    let source = config
        .ledger
        .master_key_source()
        .context("no master key is configured: set [ledger.encryption] in the config (and pass --config)")?;
    let master = source.load_or_create()?;
    let new = LedgerPaths::new(&args.to);
    if new.segments.is_dir() && std::fs::read_dir(&new.segments)?.next().is_some() {
        bail!("{} already holds a ledger; give an empty or new directory", args.to.display());
    }
    witness_server::data_dir::prepare(&args.to)?;
    copy_beside_ledger(&old_dir, &args.to)?;
    let old_keys = Keyring::open(&old, Some(master.clone()))?;
    let mut ledger_config = config.ledger_config(&args.to);
    ledger_config.master_key = Some(master);
    let ledger = Ledger::open(&ledger_config).with_context(|| format!("cannot open the new ledger in {}", args.to.display()))?;
    let summary = migrate_encrypted(&old.root, &old_keys, &ledger)?;
    ledger.shutdown()?;
    println!(
        "migrated {} sessions ({} events) into {}, every one but the audit trail sealed; {} had been shredded (only their start and end moved), {} were left open by the old ledger and are closed",
        summary.sessions,
        summary.events,
        args.to.display(),
        summary.shredded,
        summary.left_open
    );
    println!(
        "next: `witness verify --data-dir {}`, point data_dir at it, and destroy {} (it holds the recordings in clear)",
        args.to.display(),
        old_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies everything of the data dir but the ledger (tokens, SSH and TLS keys, the masking key,
/// holds, the audit spool) into the new one.
fn copy_beside_ledger(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let entry = entry?;
        if entry.file_name() == "ledger" {
            continue;
        }
        copy(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

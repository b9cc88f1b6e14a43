//! `witness keys`: the master key that wraps sealed sessions' data keys.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use witness_ledger::{Keyring, LedgerPaths, MasterKey, MasterKeySource};

use crate::locate::{data_dir, load_config};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Re-wrap every data key under a new master key (segments are not rewritten). With a
    /// master_key_file, a new key is made and replaces the file; otherwise give --new-key-file.
    /// Witness must be stopped. Afterwards, destroy the old key and its copies: key backups
    /// made before now then open nothing.
    Rotate(RotateArgs),
    /// Print the id of the configured master key and of the one the ledger's keys are wrapped with.
    Status,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// A file holding the new master key (64 hex digits), for a key kept in an environment
    /// variable or a KMS: point [ledger.encryption] at the new key after the rotation.
    #[arg(long, value_name = "FILE")]
    new_key_file: Option<PathBuf>,
}

pub fn run(cli: &Cli, cmd: &KeysCommand) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(cli)?;
    let paths = LedgerPaths::new(&data_dir);
    let config = load_config(cli)?;
    let Some(source) = config.ledger.master_key_source() else {
        bail!("no master key is configured: set [ledger.encryption] in the config (and pass --config)");
    };
    match cmd {
        KeysCommand::Status => {
            let master = source.load()?;
            let keyring = Keyring::open(&paths, Some(master.clone()))?;
            println!(
                "master key {} ({}); {} sealed sessions hold a data key",
                master.id().to_hex(),
                source.describe(),
                keyring.sessions()?.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate(args) => rotate(&paths, &source, args),
    }
}

fn rotate(paths: &LedgerPaths, source: &MasterKeySource, args: &RotateArgs) -> anyhow::Result<ExitCode> {
    // Held to the end: a witness starting meanwhile would wrap new sessions' keys under the old key.
    let _lock = witness_ledger::Ledger::lock_stopped(paths).context(
        "witness must be stopped for a rotation (new sessions must not be wrapped under the old key meanwhile): stop it, rotate, start it",
    )?;
    let old = source.load()?;
    let (new, staged) = match (&args.new_key_file, source) {
        (Some(file), _) => (MasterKeySource::File(file.clone()).load()?, None),
        (None, MasterKeySource::File(file)) => {
            // The new key is written beside the old one first: a rotation cut short is finished
            // by running it again, which finds both.
            let staged = file.with_extension("new");
            let new = match MasterKeySource::File(staged.clone()).load() {
                Ok(new) => new,
                Err(_) => {
                    let new = MasterKey::random();
                    write_key(&staged, &new)?;
                    new
                }
            };
            (new, Some((staged, file.clone())))
        }
        (None, _) => bail!("the master key comes from {}: give the new one with --new-key-file", source.describe()),
    };
    let rewrapped = Keyring::rotate(paths, &old, &new)?;
    if let Some((staged, file)) = staged {
        std::fs::rename(&staged, &file).with_context(|| format!("cannot replace {} with {}", file.display(), staged.display()))?;
    }
    println!(
        "re-wrapped {rewrapped} data keys under master key {} (was {}); destroy every copy of the old key",
        new.id().to_hex(),
        old.id().to_hex()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_key(path: &std::path::Path, key: &MasterKey) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
    file.sync_all()?;
    Ok(())
}

//! Where things are: the config named by --config and the data dir, from flags, config or default.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use witness_ledger::{Keyring, LedgerPaths};

use witness_server::Config;

use crate::Cli;

/// The config named by --config, or the defaults.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    match &cli.config {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::default()),
    }
}

/// The data dir: --data-dir, else the config's data_dir, else ./witness-data.
pub fn data_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &cli.data_dir {
        return Ok(dir.clone());
    }
    Ok(load_config(cli)?.data_dir)
}

/// The data dir for commands that write credentials into it (`token`, `identity`). When neither
/// --data-dir nor --config names one and the default ./witness-data does not exist, they stop and
/// say so rather than make a store the gateway may never read.
pub fn existing_data_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    let dir = data_dir(cli)?;
    if cli.data_dir.is_none() && cli.config.is_none() && !dir.exists() {
        bail!(
            "there is no data dir here: without --config or --data-dir witness uses {}, which does not exist, and would create it there. \
             Pass --config with the gateway's config file (so that the credential goes where the gateway reads it), or --data-dir DIR",
            dir.display()
        );
    }
    Ok(dir)
}

/// The keyring that opens the sealed sessions of the ledger in `data_dir`, with the master key
/// `[ledger.encryption]` names (none without it: sealed events then do not open, and say why).
pub fn keyring(cli: &Cli, data_dir: &Path) -> anyhow::Result<Keyring> {
    let master = match load_config(cli)?.ledger.master_key_source() {
        Some(source) => Some(source.load().context("cannot load the master key of [ledger.encryption]")?),
        None => None,
    };
    Ok(Keyring::open(&LedgerPaths::new(data_dir), master)?)
}

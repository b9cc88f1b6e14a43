//! Where things are: the config named by --config and the data dir, from flags, config or default.

use std::path::PathBuf;

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

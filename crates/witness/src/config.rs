//! The witness config file (TOML) and where the data dir is, from flags, config or default.
//!
//! Paths in the config are relative to the directory witness runs in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use witness_ledger::{Durability, LedgerConfig};

use crate::Cli;

/// The whole config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the ledger and the rest of witness's state live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub ledger: LedgerSection,
}

/// `[ledger]`: how recordings are written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// "write" (survives a crash of witness) or "fsync" (survives a power loss).
    #[serde(default)]
    pub durability: Durability,
    /// A segment file is closed and a new one started at this size, in MiB.
    #[serde(default = "default_segment_mib")]
    pub segment_size_mib: u64,
    /// How often session heads and a signed checkpoint are written, e.g. "1s" or "500ms".
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde_compat")]
    pub checkpoint_interval: Duration,
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            durability: Durability::Write,
            segment_size_mib: default_segment_mib(),
            checkpoint_interval: default_checkpoint_interval(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./witness-data")
}

fn default_segment_mib() -> u64 {
    64
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}

/// Durations in the config are written the way people write them: "1s", "250ms", "2m".
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("{e}: write a duration such as \"1s\" or \"500ms\"")))
    }
}

impl Config {
    /// Reads and checks a config file; errors name the file and, from the TOML parser, the line
    /// and key.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Config = toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))?;
        if config.ledger.segment_size_mib == 0 || config.ledger.segment_size_mib > 4096 {
            anyhow::bail!(
                "config file {}: [ledger] segment_size_mib = {} is out of range; use 1 to 4096",
                path.display(),
                config.ledger.segment_size_mib
            );
        }
        if config.ledger.checkpoint_interval < Duration::from_millis(10) {
            anyhow::bail!("config file {}: [ledger] checkpoint_interval is under 10ms; use e.g. \"1s\"", path.display());
        }
        Ok(config)
    }

    pub fn ledger_config(&self, data_dir: &Path) -> LedgerConfig {
        let mut config = LedgerConfig::new(data_dir);
        config.durability = self.ledger.durability;
        config.segment_bytes = self.ledger.segment_size_mib << 20;
        config.checkpoint_interval = self.ledger.checkpoint_interval;
        config
    }
}

/// The config named by --config, or the defaults.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    match &cli.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default_with_data_dir()),
    }
}

/// The data dir: --data-dir, else the config's data_dir, else ./witness-data.
pub fn data_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &cli.data_dir {
        return Ok(dir.clone());
    }
    Ok(load_config(cli)?.data_dir)
}

impl Config {
    fn default_with_data_dir() -> Config {
        Config { data_dir: default_data_dir(), ledger: LedgerSection::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<(&str, Durability, u64), &str>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness.toml");
        std::fs::write(&path, text).unwrap();
        match (Config::load(&path), expect) {
            (Ok(config), Ok((data_dir, durability, segment_mib))) => {
                assert_eq!(config.data_dir, PathBuf::from(data_dir));
                assert_eq!(config.ledger.durability, durability);
                assert_eq!(config.ledger.segment_size_mib, segment_mib);
            }
            (Err(error), Err(needle)) => {
                let text = format!("{error:#}");
                assert!(text.contains(needle), "error {text:?} should mention {needle:?}");
                assert!(text.contains("witness.toml"), "error {text:?} should name the file");
            }
            (got, want) => panic!("config {text:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn configs_load_or_say_what_is_wrong() {
        check("", Ok(("./witness-data", Durability::Write, 64)));
        check("data_dir = \"/tmp/w\"\n[ledger]\ndurability = \"fsync\"\nsegment_size_mib = 8\n", Ok(("/tmp/w", Durability::Fsync, 8)));
        check("[ledger]\ndurability = \"sometimes\"\n", Err("durability"));
        check("[ledger]\ncheckpoint_interval = \"soon\"\n", Err("checkpoint_interval"));
        check("[ledger]\nsegment_size_mib = 0\n", Err("segment_size_mib"));
        check("data_dri = \"x\"\n", Err("data_dri"));
        check("[ledger\n", Err("invalid"));
    }
}

//! `witness identity add-key|keys|remove-key`: SSH public keys registered to identities, so that
//! people and agents log in to SSH connections with their own keys. Removing a key ends the live
//! sessions it opened.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use witness_identity::TokenStore;

use witness_core::kind;

use crate::audited;
use crate::locate::{existing_data_dir, load_config};
use crate::output::{json_times, time};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Register an SSH public key (a .pub file) to an identity.
    AddKey(AddKeyArgs),
    /// List registered SSH keys.
    Keys(KeysArgs),
    /// Remove a key by its fingerprint (SHA256:…); its live sessions end.
    RemoveKey(RemoveKeyArgs),
}

#[derive(Args, Debug)]
pub struct AddKeyArgs {
    /// The identity the key authenticates.
    identity: String,
    /// The public key file (e.g. ~/.ssh/id_ed25519.pub), or - for standard input.
    keyfile: PathBuf,
    /// Groups of the identity when it logs in with this key, comma-separated.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// The task recorded with the sessions this key opens.
    #[arg(long)]
    task: Option<String>,
}

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RemoveKeyArgs {
    /// The key's fingerprint, as `identity keys` prints it.
    fingerprint: String,
}

pub fn run(cli: &Cli, cmd: &IdentityCommand) -> anyhow::Result<ExitCode> {
    let data_dir = existing_data_dir(cli)?;
    let store = TokenStore::open(&data_dir)?;
    match cmd {
        IdentityCommand::AddKey(args) => {
            let text = if args.keyfile.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read the key from standard input")?
            } else {
                std::fs::read_to_string(&args.keyfile).with_context(|| format!("cannot read {}", args.keyfile.display()))?
            };
            let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
            let key = store.add_ssh_key(&args.identity, &args.groups, args.task.as_deref(), line)?;
            let what = format!("{} key {} for {} (groups: {})", key.key_type, key.fingerprint, key.identity, key.groups.join(","));
            audited::record(&data_dir, &kind::KEY_ADDED, what, None)?;
            println!("{}", key.fingerprint);
            eprintln!("registered {} key {} to identity {}", key.key_type, key.fingerprint, key.identity);
            let listen = load_config(cli).ok().and_then(|c| {
                let connection = c.connections.iter().find(|c| c.protocol() == witness_core::Protocol::Ssh).map(|c| c.name().to_string());
                c.listen.ssh.map(|a| (a, connection))
            });
            if let Some((address, connection)) = listen {
                let connection = connection.unwrap_or_else(|| "CONNECTION".into());
                eprintln!("log in with: ssh -p {} {connection}@{}", address.port(), address.ip());
            }
        }
        IdentityCommand::Keys(args) => {
            let keys = store.ssh_keys()?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&json_times(serde_json::to_value(&keys)?))?);
            } else if keys.is_empty() {
                println!("no SSH keys; register one with `witness identity add-key NAME KEYFILE`");
            } else {
                println!(
                    "{:<51}  {:<20}  {:<12}  {:<24}  {:<8}  {:<20}  COMMENT",
                    "FINGERPRINT", "IDENTITY", "TYPE", "ADDED", "STATUS", "GROUPS"
                );
                for k in &keys {
                    println!(
                        "{:<51}  {:<20}  {:<12}  {:<24}  {:<8}  {:<20}  {}",
                        k.fingerprint,
                        k.identity,
                        k.key_type,
                        time(k.created_ns),
                        if k.revoked_ns.is_some() { "removed" } else { "active" },
                        k.groups.join(","),
                        k.comment
                    );
                }
            }
        }
        IdentityCommand::RemoveKey(args) => {
            let key = store.remove_ssh_key(&args.fingerprint)?;
            audited::record(&data_dir, &kind::KEY_REMOVED, format!("key {} of {}", key.fingerprint, key.identity), None)?;
            println!("removed {} ({}); its live sessions end within a second", key.fingerprint, key.identity);
        }
    }
    Ok(ExitCode::SUCCESS)
}

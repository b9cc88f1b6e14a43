//! `witness token create|list|revoke`: the service-account tokens clients authenticate with. A
//! token's secret is printed once, at creation; witness keeps only hashes of it.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use witness_identity::{NewToken, TokenInfo, TokenStore};

use witness_core::kind;

use crate::audited;
use crate::locate::{existing_data_dir, load_config};
use crate::output::{json_times, time};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token for an identity and print it (once; it cannot be shown again).
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List(ListArgs),
    /// Revoke a token, or every token of an identity; their live sessions end.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Who the token authenticates (also the PostgreSQL user name to connect with).
    #[arg(long)]
    identity: String,
    /// Groups of the identity, comma-separated (they decide what it may do).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// How long the token is valid, e.g. 8h or 30d; default: until revoked.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// The task the token is for; recorded with every session it opens.
    #[arg(long)]
    task: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// The token id (tok_…), as `token list` prints it.
    id: Option<String>,
    /// Revoke every token of this identity instead.
    #[arg(long)]
    identity: Option<String>,
}

pub fn run(cli: &Cli, cmd: &TokenCommand) -> anyhow::Result<ExitCode> {
    let data_dir = existing_data_dir(cli)?;
    let store = TokenStore::open(&data_dir)?;
    match cmd {
        TokenCommand::Create(args) => {
            let request = NewToken { identity: args.identity.clone(), groups: args.groups.clone(), ttl: args.ttl, task: args.task.clone() };
            let (info, secret) = store.create(&request)?;
            audited::record(&data_dir, &kind::TOKEN_CREATED, token_what(&info), None)?;
            println!("{secret}");
            eprintln!("created token {} for identity {}; it is shown only now.", info.id, info.identity);
            // A ready-to-use example from the config, when there is one to go by.
            let config = load_config(cli).ok();
            let listen = config.as_ref().and_then(|c| c.listen.postgres);
            let connection = config
                .as_ref()
                .and_then(|c| c.connections.iter().find(|c| c.protocol() == witness_core::Protocol::Postgres))
                .map(|c| c.name().to_string());
            let (host, port) = listen.map(|a| (a.ip().to_string(), a.port())).unwrap_or(("127.0.0.1".into(), 15432));
            // Port 0 lets the system choose when witness starts; its banner says which it got.
            let port = if port == 0 { "PORT".to_string() } else { port.to_string() };
            let dbname = connection.unwrap_or_else(|| "CONNECTION".into());
            eprintln!("connect with: psql \"host={host} port={port} dbname={dbname} user={} password={secret}\"", info.identity);
        }
        TokenCommand::List(args) => {
            let tokens = store.list()?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&json_times(serde_json::to_value(&tokens)?))?);
            } else if tokens.is_empty() {
                println!("no tokens; create one with `witness token create --identity NAME`");
            } else {
                println!("{:<18}  {:<20}  {:<24}  {:<24}  {:<8}  {:<20}  TASK", "ID", "IDENTITY", "CREATED", "EXPIRES", "STATUS", "GROUPS");
                for t in &tokens {
                    println!(
                        "{:<18}  {:<20}  {:<24}  {:<24}  {:<8}  {:<20}  {}",
                        t.id,
                        t.identity,
                        time(t.created_ns),
                        t.expires_ns.map(time).unwrap_or_else(|| "never".into()),
                        status(t),
                        t.groups.join(","),
                        t.task.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        TokenCommand::Revoke(args) => {
            let revoked = match (&args.id, &args.identity) {
                (Some(id), _) => vec![store.revoke(id)?],
                (None, Some(identity)) => store.revoke_identity(identity)?,
                (None, None) => unreachable!("clap requires one"),
            };
            if revoked.is_empty() {
                println!("no active tokens to revoke");
            }
            for t in revoked {
                audited::record(&data_dir, &kind::TOKEN_REVOKED, token_what(&t), None)?;
                println!("revoked {} ({}); its live sessions end within a second", t.id, t.identity);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A token as the audit trail names it: never its secret.
fn token_what(t: &TokenInfo) -> String {
    format!("token {} for {} (groups: {}; task: {})", t.id, t.identity, t.groups.join(","), t.task.as_deref().unwrap_or("-"))
}

fn status(t: &TokenInfo) -> &'static str {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    match (t.revoked_ns, t.expires_ns) {
        (Some(_), _) => "revoked",
        (None, Some(expires)) if expires <= now => "expired",
        _ => "active",
    }
}

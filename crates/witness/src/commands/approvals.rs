//! `witness approvals list|approve|deny`: decide requests held for approval. This is a client of
//! the running witness's HTTP API (`[listen] api` in the config, or --api), authenticated with a
//! token (--token or WITNESS_TOKEN); it reads no local state.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::locate::load_config;
use crate::Cli;

#[derive(Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// List the waiting requests you may decide (and your own).
    List(ListArgs),
    /// Let a waiting request run.
    Approve(DecideArgs),
    /// Refuse a waiting request; its client gets an error.
    Deny(DecideArgs),
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    /// Your witness token (an approver's).
    #[arg(long, env = "WITNESS_TOKEN", hide_env_values = true)]
    token: String,
    /// The API's base URL; default: http://ADDRESS from `[listen] api` in --config.
    #[arg(long, value_name = "URL")]
    api: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The approval id (ap-…), as the waiting client's notice and `approvals list` show it.
    id: String,
    /// Why, in a sentence: recorded, and shown to the requester's client.
    #[arg(long)]
    reason: Option<String>,
}

pub fn run(cli: &Cli, command: &ApprovalsCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match command {
            ApprovalsCommand::List(args) => {
                let list = call(cli, &args.api, reqwest::Method::GET, "/api/approvals", None).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&crate::output::json_times(list))?);
                } else {
                    print_list(&list);
                }
            }
            ApprovalsCommand::Approve(args) | ApprovalsCommand::Deny(args) => {
                let verb = if matches!(command, ApprovalsCommand::Approve(_)) { "approve" } else { "deny" };
                let path = format!("/api/approvals/{}/{verb}", args.id);
                let body = args.reason.as_ref().map(|reason| serde_json::json!({ "reason": reason }));
                let decided = call(cli, &args.api, reqwest::Method::POST, &path, body).await?;
                println!(
                    "{} {}: {} on {} ({})",
                    decided["id"].as_str().unwrap_or(&args.id),
                    decided["status"].as_str().unwrap_or(verb),
                    decided["requester"].as_str().unwrap_or("?"),
                    decided["connection"].as_str().unwrap_or("?"),
                    decided["statement"].as_str().unwrap_or(""),
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One API call; an error answer becomes an error carrying the API's message.
async fn call(cli: &Cli, args: &ApiArgs, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let base = match &args.api {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let config = load_config(cli)?;
            let Some(address) = config.listen.api else {
                bail!("no API to ask: give --api URL, or --config FILE whose [listen] api is set");
            };
            format!("http://{address}")
        }
    };
    let url = format!("{base}{path}");
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let mut request = client.request(method, &url).bearer_auth(&args.token);
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response =
        request.send().await.with_context(|| format!("cannot reach the witness API at {base}; is witness running with [listen] api?"))?;
    let status = response.status();
    let body = response.text().await.context("the API's answer was cut off")?;
    let value: Value =
        serde_json::from_str(&body).with_context(|| format!("the API at {base} answered {status} with something that is not JSON"))?;
    if !status.is_success() {
        bail!("{} ({status})", value["error"].as_str().unwrap_or("the API refused the request"));
    }
    Ok(value)
}

fn print_list(list: &Value) {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        println!("no requests wait for approval");
        return;
    }
    println!("{:<14} {:<16} {:<12} {:<22} {:<10} STATEMENT", "ID", "REQUESTER", "CONNECTION", "RULE", "EXPIRES");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    for a in items {
        let left = a["expires_at_ms"].as_u64().unwrap_or(0).saturating_sub(now_ms) / 1000;
        let statement: String = a["statement"].as_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
        println!(
            "{:<14} {:<16} {:<12} {:<22} {:<10} {}",
            a["id"].as_str().unwrap_or("?"),
            a["requester"].as_str().unwrap_or("?"),
            a["connection"].as_str().unwrap_or("?"),
            a["rule"].as_str().unwrap_or("?"),
            format!("in {left}s"),
            statement.chars().take(80).collect::<String>(),
        );
    }
}

//! `witness serve`: opens the ledger and runs until SIGINT or SIGTERM, then seals the ledger with a
//! final checkpoint. Protocol listeners are added here as they are built.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use witness_ledger::Ledger;

use crate::config::{data_dir, load_config};
use crate::Cli;

#[derive(Args, Debug)]
pub struct ServeArgs {}

pub fn run(cli: &Cli, _args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(cli)?;
    let data_dir = data_dir(cli)?;
    let ledger_config = config.ledger_config(&data_dir);
    // The ledger opens (and recovers) before the async runtime starts: recovery blocks.
    let ledger = Ledger::open(&ledger_config).with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?;
    tracing::info!(
        data_dir = %data_dir.display(),
        durability = %ledger_config.durability,
        public_key = %hex::encode(ledger.public_key().as_bytes()),
        "witness is running; stop it with Ctrl-C or SIGTERM"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(wait_for_shutdown_signal())?;
    tracing::info!("shutting down: sealing the ledger");
    drop(runtime);
    let summary = ledger.shutdown().context("the final checkpoint could not be written")?;
    tracing::info!(records = summary.n_records, session_heads = summary.tree_size, root = %hex::encode(summary.root), "ledger sealed; witness stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("got SIGTERM"),
        _ = interrupt.recv() => tracing::info!("got SIGINT"),
    }
    Ok(())
}

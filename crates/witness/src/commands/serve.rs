//! `witness serve`: opens the ledger, listens for clients as the config says, prints a banner
//! (where to connect, what to run next), and runs until SIGINT or SIGTERM (SIGHUP reloads the
//! policy); then ends live sessions and seals the ledger with a final checkpoint. A config with
//! nothing to listen on is refused before anything is created.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use witness_ledger::Ledger;

use crate::commands::banner::{self, BannerFacts};
use crate::locate::{data_dir, load_config};
use crate::Cli;

#[derive(Args, Debug)]
pub struct ServeArgs {}

pub fn run(cli: &Cli, _args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(cli)?;
    // Before the data dir is made: a config that listens on nothing leaves nothing behind.
    witness_server::check_listeners(&config, cli.config.as_deref())?;
    let data_dir = data_dir(cli)?;
    // Before anything in it is opened: a data dir other users can write is refused, one they can
    // read is made private.
    witness_server::data_dir::prepare(&data_dir)?;
    raise_open_files_limit();
    let mut ledger_config = config.ledger_config(&data_dir);
    if let Some(source) = config.ledger.master_key_source() {
        ledger_config.master_key = Some(source.load_or_create().context("cannot load the master key of [ledger.encryption]")?);
    }
    // The ledger opens (and recovers) before the async runtime starts: recovery blocks.
    let ledger = Arc::new(Ledger::open(&ledger_config).with_context(|| format!("cannot open the ledger in {}", data_dir.display()))?);
    let public_key = hex::encode(ledger.public_key().as_bytes());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let served = runtime.block_on(async {
        // Signal handlers exist before anyone is told witness runs, so an early SIGTERM is a
        // clean shutdown and not the default kill.
        let signals = ShutdownSignals::install()?;
        let shutdown = |listening| {
            let facts = BannerFacts {
                listening,
                config: &config,
                data_dir: &data_dir,
                alias: banner::alias(),
                locate_args: banner::locate_args(cli.config.as_deref(), cli.data_dir.as_deref()),
            };
            print!("{}", banner::render(&facts));
            let (data_dir, durability, public_key) = (&data_dir, ledger_config.durability, &public_key);
            async move {
                tracing::info!(data_dir = %data_dir.display(), %durability, public_key, "witness is running; stop it with Ctrl-C or SIGTERM");
                signals.wait().await
            }
        };
        witness_server::serve(&config, cli.config.as_deref(), &data_dir, ledger.clone(), shutdown).await.context("witness could not serve")
    });
    drop(runtime);
    served?;
    let ledger = Arc::try_unwrap(ledger).map_err(|_| anyhow::anyhow!("sessions still hold the ledger after shutdown"))?;
    let summary = ledger.shutdown().context("the final checkpoint could not be written")?;
    tracing::info!(records = summary.n_records, session_heads = summary.tree_size, root = %hex::encode(summary.root), "ledger sealed; witness stopped");
    Ok(ExitCode::SUCCESS)
}

/// Each session holds two sockets (client and target), and the soft limit on open files that many
/// systems start services with (1,024) would run out long before witness's own bounds on sessions
/// and logins do; a full table makes accepting fail. So the soft limit is raised to the hard one.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else { return };
    if current >= maximum {
        return;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(maximum), maximum: Some(maximum) }) {
        Ok(()) => tracing::debug!(from = current, to = maximum, "raised the limit on open files"),
        Err(e) => tracing::warn!(error = %e, limit = current, "cannot raise the limit on open files; witness may run out of sockets"),
    }
}

struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<ShutdownSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("got SIGTERM"),
            _ = self.interrupt.recv() => tracing::info!("got SIGINT"),
        }
    }
}

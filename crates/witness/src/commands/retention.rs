//! `witness purge` and `witness hold`: destroy one session's contents now, or keep a session
//! from retention until released. Both are recorded in the audit trail; a purge is carried out by
//! the gateway (or, while none runs, by this command opening the ledger), so that its record is
//! durable before the key goes.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use witness_core::{kind, SessionIdPrefix};
use witness_ledger::{Keyring, Ledger, LedgerPaths};
use witness_server::host_actions::{drain_offline, spool, HostAction};
use witness_server::retention::{is_held, set_hold};

use crate::commands::sessions::resolve_in;
use crate::locate::{data_dir, load_config};
use crate::Cli;

/// How long a purge waits for the running gateway to carry it out.
const PURGE_WAIT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// The session (its id, or a unique prefix of it).
    id: SessionIdPrefix,
    /// Why (a ticket, a request to erase), kept in the audit trail.
    #[arg(long)]
    reason: String,
}

#[derive(Args, Debug)]
pub struct HoldArgs {
    /// The session (its id, or a unique prefix of it).
    id: SessionIdPrefix,
    /// Release the hold instead of placing it.
    #[arg(long)]
    release: bool,
    /// Why (a case, a ticket), kept in the audit trail.
    #[arg(long)]
    reason: String,
}

pub fn run_purge(cli: &Cli, args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(cli)?;
    let reason = one_line(&args.reason)?;
    let id = resolve_in(&data_dir, &args.id)?;
    let paths = LedgerPaths::new(&data_dir);
    let keyring = Keyring::open(&paths, None)?;
    if !keyring.has_key(id) {
        bail!("session {id} has no data key: it was recorded in clear (before [ledger.encryption] was set) or is already shredded");
    }
    let index = witness_ledger::open_index(&data_dir)?;
    let row = index.session(id)?.with_context(|| format!("no session {id} in the index"))?;
    if row.ended_ns.is_none() {
        bail!("session {id} is still open; end it first (`witness sessions` shows it live, the console can terminate it)");
    }
    if is_held(&data_dir, id) {
        bail!("session {id} is on legal hold; release it first with `witness hold {id} --release --reason …`");
    }
    let action =
        HostAction::now(&kind::RETENTION_SHREDDED, crate::audited::host_user(), "purge").of_session(id.to_string()).because(Some(reason));
    spool(&data_dir, &action)?;
    if paths.writer_running()? {
        let deadline = Instant::now() + PURGE_WAIT;
        while keyring.has_key(id) {
            if Instant::now() > deadline {
                bail!("the running witness has not carried out the purge within {PURGE_WAIT:?}; it stays queued (see witness's log)");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        let ledger = Ledger::open(&load_config(cli)?.ledger_config(&data_dir)).context("cannot open the ledger to record the purge")?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(drain_offline(&data_dir, &ledger));
        ledger.shutdown()?;
        if keyring.has_key(id) {
            bail!("the purge of session {id} could not be recorded, so its key was kept (see the log above)");
        }
    }
    println!("shredded the contents of session {id}: its records and metadata stay, its contents cannot be read by anyone");
    Ok(ExitCode::SUCCESS)
}

pub fn run_hold(cli: &Cli, args: &HoldArgs) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir(cli)?;
    let reason = one_line(&args.reason)?;
    let id = resolve_in(&data_dir, &args.id)?;
    let changed = set_hold(&data_dir, id, !args.release).with_context(|| format!("cannot change the hold of session {id}"))?;
    let kind = if args.release { &kind::RETENTION_RELEASED } else { &kind::RETENTION_HELD };
    if changed {
        let what = if args.release { "released the legal hold" } else { "placed a legal hold" };
        spool(&data_dir, &HostAction::now(kind, crate::audited::host_user(), what).of_session(id.to_string()).because(Some(reason)))?;
    }
    let state = if args.release { "not on hold" } else { "on legal hold: retention does not shred it" };
    println!("session {id} is {state}{}", if changed { "" } else { " (it already was)" });
    Ok(ExitCode::SUCCESS)
}

fn one_line(reason: &str) -> anyhow::Result<String> {
    witness_core::one_line_reason(reason, 500).context("--reason is empty: say why (a ticket, a case)")
}

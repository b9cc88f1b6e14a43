//! Export bundles for long-term storage (`witness export --bundle`), checked anywhere with the
//! ledger's public key (`witness verify --bundle`) and read with an age identity
//! (`witness open --bundle`). What a bundle holds: witness_ledger::bundle.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use witness_ledger::bundle::{verify_bundle, write_bundle, BundledSession};
use witness_ledger::{open_index, parse_public_key, LedgerPaths, SessionFilter, SessionSummary};

use crate::commands::sessions::{event_json, print_event, print_header, session_json};
use crate::locate::data_dir;
use crate::output;
use crate::Cli;

/// What `witness export --bundle` takes besides the sessions.
#[derive(Args, Debug, Default)]
pub struct BundleArgs {
    /// Write a bundle of sessions to this tar file: their exports with inclusion proofs, the
    /// public key, and their data keys encrypted to --recipient.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// An age recipient (age1…) the bundle's data keys are encrypted to; repeat for several.
    #[arg(long, value_name = "AGE_RECIPIENT")]
    pub recipient: Vec<String>,
    /// With --bundle and no session id: sessions that started since (a time, or a duration back
    /// such as 30d).
    #[arg(long, value_parser = output::parse_since)]
    pub since: Option<i64>,
    /// With --bundle and no session id: sessions that started before this (a time, or a
    /// duration back).
    #[arg(long, value_parser = output::parse_since)]
    pub until: Option<i64>,
    /// Put sessions recorded in clear (before [ledger.encryption]) into the bundle in clear,
    /// instead of refusing them.
    #[arg(long)]
    pub include_clear: bool,
}

#[derive(Args, Debug)]
pub struct OpenArgs {
    /// The bundle (from `witness export --bundle`).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// An age identity file (AGE-SECRET-KEY-1… lines) of a recipient the bundle was made for.
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// The ledger's public key (its signing.pub file or hex), obtained from a source you trust:
    /// the bundle must be signed by it.
    #[arg(long, value_name = "KEY")]
    pubkey: Option<String>,
    /// Print JSON (the sessions, each with its events) instead of text.
    #[arg(long)]
    json: bool,
}

/// `witness export [ID] --bundle FILE --recipient age1…`.
pub fn export(cli: &Cli, id: Option<&witness_core::SessionIdPrefix>, args: &BundleArgs, path: &PathBuf) -> anyhow::Result<ExitCode> {
    if args.recipient.is_empty() {
        bail!("--bundle needs at least one --recipient (an age public key, age1…; make a pair with `age-keygen`)");
    }
    for recipient in &args.recipient {
        witness_ledger::bundle::parse_recipient(recipient)?;
    }
    let data_dir = data_dir(cli)?;
    let paths = LedgerPaths::new(&data_dir);
    let index = open_index(&data_dir).with_context(|| format!("cannot read the ledger index in {}", data_dir.display()))?;
    let sessions: Vec<SessionSummary> = match id {
        Some(prefix) => {
            let id = crate::commands::sessions::resolve_session(&index, prefix, &data_dir)?;
            vec![index.session(id)?.with_context(|| format!("no session {id}"))?]
        }
        None => {
            let filter = SessionFilter {
                open: Some(false),
                since_ns: args.since,
                until_ns: args.until,
                exclude_protocol: Some(witness_core::Protocol::Audit.as_str().into()),
                ..SessionFilter::default()
            };
            index.list_sessions(&filter)?
        }
    };
    if sessions.is_empty() {
        bail!("no ended session matches: nothing to bundle");
    }
    let what = format!("bundle of {} sessions to {}", sessions.len(), path.display());
    let single = (sessions.len() == 1).then(|| sessions[0].id);
    crate::audited::read(cli, &data_dir, &witness_core::kind::RECORDING_EXPORTED, what, single)?;
    let keyring = crate::locate::keyring(cli, &data_dir)?;
    let public_key = parse_public_key(&paths.public_key.to_string_lossy())?;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let manifest = write_bundle(&paths.root, &keyring, &public_key, &sessions, &args.recipient, args.include_clear, BufWriter::new(file))?;
    let sealed = manifest.sessions.iter().filter(|s| s.sealed).count();
    eprintln!(
        "wrote {}: {} sessions ({sealed} sealed, their keys encrypted to {} recipients), signed by {}",
        path.display(),
        manifest.sessions.len(),
        manifest.recipients.len(),
        manifest.public_key
    );
    Ok(ExitCode::SUCCESS)
}

/// The ledger key a bundle must be signed by: required, since a bundle's own key proves nothing.
fn pinned_key(pubkey: Option<&str>) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    let Some(given) = pubkey else {
        bail!("--pubkey is required with --bundle: give the ledger's public key (its signing.pub file or hex), obtained from a source you trust");
    };
    Ok(parse_public_key(given)?)
}

/// `witness verify --bundle FILE --pubkey K`: every session's export against the key, no
/// identity needed.
pub fn verify(path: &PathBuf, pubkey: Option<&str>) -> anyhow::Result<ExitCode> {
    let pinned = pinned_key(pubkey)?;
    let file = File::open(path).with_context(|| format!("cannot open bundle {}", path.display()))?;
    match verify_bundle(BufReader::new(file), &pinned) {
        Ok(bundle) => {
            let events: usize = bundle.sessions.iter().map(|(_, events)| events.len()).sum();
            println!(
                "bundle intact: {} sessions, {events} events, hash chains and payloads verified, each included in a checkpoint signed by {}",
                bundle.sessions.len(),
                hex::encode(bundle.public_key.as_bytes())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("BUNDLE DOES NOT VERIFY: {}: {error}", path.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// `witness open --bundle FILE --identity KEY`: verifies, then shows every session opened.
pub fn open(args: &OpenArgs) -> anyhow::Result<ExitCode> {
    let pinned = pinned_key(args.pubkey.as_deref())?;
    let identities = age::IdentityFile::from_file(args.identity.display().to_string())
        .and_then(|f| f.into_identities().map_err(std::io::Error::other))
        .with_context(|| format!("cannot read age identities from {}", args.identity.display()))?;
    let file = File::open(&args.bundle).with_context(|| format!("cannot open bundle {}", args.bundle.display()))?;
    let bundle = verify_bundle(BufReader::new(file), &pinned).with_context(|| format!("{} does not verify", args.bundle.display()))?;
    let sessions = bundle.open(&identities)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<_> = sessions
            .iter()
            .map(|(session, events)| {
                let mut json = session_json(&summary(session, events));
                json["events"] = events.iter().map(event_json).collect();
                json
            })
            .collect();
        output::print_line(&serde_json::to_string_pretty(&list)?)?;
    } else {
        for (session, events) in &sessions {
            let summary = summary(session, events);
            print_header(&mut out, &summary)?;
            for event in events {
                print_event(&mut out, summary.started_ns, event)?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn summary(session: &BundledSession, events: &[witness_ledger::StoredEvent]) -> SessionSummary {
    SessionSummary {
        id: session.id,
        info: session.info.clone(),
        started_ns: session.started_ns,
        ended_ns: session.ended_ns,
        end_reason: session.end_reason.clone(),
        n_events: events.len() as u64,
        last_event_ns: events.last().map_or(session.started_ns, |e| e.time_ns),
        n_denied: 0,
        n_held: 0,
    }
}

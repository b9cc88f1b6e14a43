//! The `witness` binary: the gateway process (`serve`) and the command line tools that read its
//! ledger (`sessions`, `replay`, `verify`, `export`, `checkpoint`), manage credentials (`token`,
//! `identity`, `kubeconfig`), decide held requests through its API
//! (`approvals`), or measure it (`bench`); `completions` and `man` document them all.
//!
//! This crate wires things together and talks to people; what it runs lives in the library crates.

#![forbid(unsafe_code)]

mod audited;
mod commands;
mod locate;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: relaying and recording allocate small buffers on
/// every worker thread, and glibc's arenas made threads wait on each other's locks (seen in
/// profiles of the masking benchmark as futex waits inside malloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Witness: an access gateway that records every request and response in a tamper-evident ledger.
#[derive(Parser, Debug)]
#[command(name = "witness", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The data dir holding the ledger (default: data_dir from --config, else ./witness-data).
    #[arg(long, global = true, env = "WITNESS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A witness config file (TOML); its data_dir locates the ledger.
    #[arg(long, global = true, env = "WITNESS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// How log lines on stderr are written: `text` for people, `json` (one object a line) for a
    /// log collector. WITNESS_LOG sets what is logged (e.g. `info`, `debug`, `witness_ledger=debug`).
    #[arg(long, global = true, env = "WITNESS_LOG_FORMAT", value_enum, default_value_t = output::LogFormat::Text)]
    log_format: output::LogFormat,
    /// Why you read recordings (a ticket), kept in the audit trail with the view; needed when
    /// the config sets `[review] require_reason`. (Not the reason of an approval's decision,
    /// which `approvals approve|deny --reason` gives.)
    #[arg(long, global = true, env = "WITNESS_READ_REASON", value_name = "TEXT")]
    read_reason: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway with its ledger until SIGINT or SIGTERM, then seal with a final checkpoint.
    Serve(commands::serve::ServeArgs),
    /// List and show recorded sessions.
    #[command(subcommand)]
    Sessions(commands::sessions::SessionsCommand),
    /// Check the ledger (CRCs, hash chains, Merkle log, signatures), or a session export alone.
    Verify(commands::verify::VerifyArgs),
    /// Export and inspect signed checkpoints.
    #[command(subcommand)]
    Checkpoint(commands::verify::CheckpointCommand),
    /// Write one session with its inclusion proof, verifiable on its own.
    Export(commands::verify::ExportArgs),
    /// Create, list and revoke the tokens agents and people authenticate with.
    #[command(subcommand)]
    Token(commands::token::TokenCommand),
    /// Register SSH public keys to identities (and list and remove them).
    #[command(subcommand)]
    Identity(commands::identity::IdentityCommand),
    /// Rewrite every session, sealed, into a new data dir (`--encrypt --to DIR`; witness stopped).
    Migrate(commands::migrate::MigrateArgs),
    /// Read an export bundle (after verifying it) with the age identity it was made for.
    Open(commands::bundle::OpenArgs),
    /// Destroy one session's sealed contents now (its records and metadata stay; audited).
    Purge(commands::retention::PurgeArgs),
    /// Place or release a legal hold: a held session is not shredded by retention.
    Hold(commands::retention::HoldArgs),
    /// The master key of sealed recordings: rotate it, or see which one is in use.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Play a recorded SSH terminal session in this terminal.
    Replay(commands::replay::ReplayArgs),
    /// Write a kubeconfig that points kubectl at a Kubernetes connection through witness.
    Kubeconfig(commands::kubeconfig::KubeconfigArgs),
    /// List, approve and deny requests held for approval (a client of the running witness's API).
    #[command(subcommand)]
    Approvals(commands::approvals::ApprovalsCommand),
    /// Measure witness on this machine.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Print shell completions for witness (bash, zsh or fish).
    Completions(commands::completions::CompletionsArgs),
    /// Print witness's man page (roff), or write a page per command into a directory.
    Man(commands::completions::ManArgs),
}

fn main() -> ExitCode {
    // Everything witness creates (the data dir and what is in it, SQLite's `-wal` and `-shm`
    // files, exports) is for witness's user alone, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    output::init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve(ref args) => commands::serve::run(&cli, args),
        Command::Sessions(ref cmd) => commands::sessions::run(&cli, cmd),
        Command::Verify(ref args) => commands::verify::run_verify(&cli, args),
        Command::Checkpoint(ref cmd) => commands::verify::run_checkpoint(&cli, cmd),
        Command::Export(ref args) => commands::verify::run_export(&cli, args),
        Command::Token(ref cmd) => commands::token::run(&cli, cmd),
        Command::Identity(ref cmd) => commands::identity::run(&cli, cmd),
        Command::Migrate(ref args) => commands::migrate::run(&cli, args),
        Command::Open(ref args) => commands::bundle::open(args),
        Command::Purge(ref args) => commands::retention::run_purge(&cli, args),
        Command::Hold(ref args) => commands::retention::run_hold(&cli, args),
        Command::Keys(ref cmd) => commands::keys::run(&cli, cmd),
        Command::Replay(ref args) => commands::replay::run(&cli, args),
        Command::Kubeconfig(ref args) => commands::kubeconfig::run(&cli, args),
        Command::Approvals(ref cmd) => commands::approvals::run(&cli, cmd),
        Command::Bench(ref cmd) => commands::bench::run(&cli, cmd),
        Command::Completions(ref args) => commands::completions::run_completions(args),
        Command::Man(ref args) => commands::completions::run_man(args),
    };
    match result {
        Ok(code) => code,
        Err(error) if output::is_closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("witness: {}", output::error_chain(&error));
            ExitCode::from(2)
        }
    }
}

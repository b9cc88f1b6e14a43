//! `witness completions SHELL` and `witness man`: shell completions and man pages generated from
//! the command line's own definitions (clap), so they never fall behind a flag or a verb.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, ValueEnum};

use crate::Cli;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete in. Load it with e.g. `source <(witness completions bash)`, or save
    /// it where the shell looks for completions.
    shell: CompletionShell,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write one page per command (witness.1, witness-sessions-show.1, …) into this directory
    /// instead of printing witness(1).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run_completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "witness", &mut out);
    out.flush().context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), dir).with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            eprintln!("wrote the man pages into {}", dir.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(Cli::command()).render(&mut out).context("cannot write to standard output")?;
            out.flush().context("cannot write to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `witness replay ID`: plays a recorded SSH terminal in this terminal, at the speed it was
//! typed and printed (`--speed` to change it, `--from` to start later: what came before is
//! printed at once, so the screen is as it was then).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use witness_core::SessionIdPrefix;
use witness_proto_ssh::asciicast::{self, FrameCode};

use crate::audited;
use crate::commands::sessions::{read_session, resolve_in};
use crate::locate::data_dir;
use crate::Cli;

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The session: its id as `sessions list` prints it, or its first digits if no other
    /// session's id starts with them.
    id: SessionIdPrefix,
    /// Play this many times faster (0.5 plays at half speed).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Start this far in, e.g. 30s or 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    from: Option<Duration>,
    /// Pauses longer than this are cut to it (at normal speed), e.g. 2s.
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_limit: Option<Duration>,
}

pub fn run(cli: &Cli, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.speed > 0.0 && args.speed.is_finite(), "--speed must be a positive number, e.g. 2 or 0.5");
    let data_dir = data_dir(cli)?;
    let id = resolve_in(&data_dir, &args.id)?;
    audited::read(cli, &data_dir, &witness_core::kind::RECORDING_VIEWED, "terminal replay", Some(id))?;
    let (session, events) = read_session(&data_dir, id, &crate::locate::keyring(cli, &data_dir)?)?;
    let cast = asciicast::from_events(&events).with_context(|| {
        format!(
            "session {} ({}, {}) has no terminal to replay: it has no pty and no output",
            id, session.info.identity, session.info.connection
        )
    })?;
    eprintln!(
        "witness: replaying session {} ({} on {}), channel {}, {}x{}, {:.1} s at {}x; Ctrl-C stops",
        id,
        session.info.identity,
        session.info.connection,
        cast.channel,
        cast.width,
        cast.height,
        cast.duration(),
        args.speed
    );
    let from = args.from.map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let idle_limit = args.idle_limit.map(|d| d.as_secs_f64()).unwrap_or(f64::INFINITY);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut clock = from;
    for frame in cast.frames.iter().filter(|f| f.code == FrameCode::Output) {
        if frame.time > clock {
            let pause = (frame.time - clock).min(idle_limit);
            out.flush()?;
            std::thread::sleep(Duration::from_secs_f64(pause / args.speed));
            clock = frame.time;
        }
        out.write_all(frame.data.as_bytes())?;
    }
    out.flush()?;
    eprintln!("\r\nwitness: end of session {id}");
    Ok(ExitCode::SUCCESS)
}

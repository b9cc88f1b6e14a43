//! `witness serve` for the benchmark programs: a config in a temp dir (the ledger as the default
//! config has it, durability `write`, unless the benchmark's part of the config says otherwise)
//! with the listener, connection and rules a benchmark gives, a token for identity `bench` in
//! group `ai-agents` (which rules may name), the log drained into a file, and the process stopped
//! with SIGTERM. Each bench crate that runs witness includes this file with `#[path]`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use witness_testkit::free_port;

/// A running `witness serve`.
pub struct Witness {
    dir: TempDir,
    pub port: u16,
    pub token: String,
    child: Child,
    log_thread: Option<JoinHandle<()>>,
}

impl Witness {
    /// Starts witness with `listen_and_connect(port)` as the config after its `data_dir` (its
    /// `[listen]`, `[[connections]]` and anything else), and `env` set; `port` is a free one for
    /// the listener.
    pub fn start(bin: &Path, prefix: &str, listen_and_connect: impl Fn(u16) -> String, env: &[(&str, &str)]) -> Result<Witness, String> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let (port, config) = (free_port(), dir.path().join("witness.toml"));
        let toml = format!("data_dir = \"{}\"\n{}", dir.path().join("data").display(), listen_and_connect(port));
        fs::write(&config, toml).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        // The token store is a file in the data dir, so the token can be made before serving.
        let token = crate::common::output(
            Command::new(bin).args(["token", "create", "--identity", "bench", "--groups", "ai-agents", "--config"]).arg(&config),
        )?;
        // witness logs as it does by default (info: one line per session, none per request).
        let serve = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&config)
            .envs(env.iter().copied())
            .env_remove("WITNESS_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = serve.map_err(|e| format!("cannot start witness serve: {e}"))?;
        // The log is drained on a thread (a full pipe would stall witness) into a file. The
        // thread signals the ready line; its channel closes early if witness exits first.
        let (stderr, log_path) = (child.stderr.take().expect("stderr is piped"), dir.path().join("witness.log"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let log_thread = thread::spawn(move || {
            let mut log = fs::File::create(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = log.as_mut().map(|log| writeln!(log, "{line}"));
                if line.contains("witness is running") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let mut witness = Witness { dir, port, token: token.trim().into(), child, log_thread: Some(log_thread) };
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => Ok(witness),
            Err(_) => Err(format!("witness serve did not become ready: {}", crate::common::tail(&witness.stop(), 10))),
        }
    }

    /// Waits (up to 30 s) until witness uses no CPU, so that work left from one run (the index
    /// catching up) does not slow the next run, whichever route it measures; first the kernel
    /// writes out what the last run left dirty (the recorded bodies), which it would otherwise
    /// do during the next run.
    pub fn settle(&self) {
        let _ = Command::new("sync").status();
        let ticks = || crate::cpu::ticks_of(&[self.child.id()]);
        // Idle: at most 2 ticks (20 ms) of CPU in 250 ms; its timers (index polling,
        // checkpoints) use a little even when nothing happens.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = ticks();
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(250));
            let now = ticks();
            if now.saturating_sub(last) <= 2 {
                return;
            }
            last = now;
        }
    }

    /// The witness process (all its threads), whose CPU time a run is charged.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Bytes in the ledger's directory (segments and index): what the runs recorded on disk.
    pub fn ledger_bytes(&self) -> u64 {
        fn size(path: &Path) -> u64 {
            match fs::symlink_metadata(path) {
                Ok(meta) if meta.is_dir() => fs::read_dir(path).into_iter().flatten().flatten().map(|entry| size(&entry.path())).sum(),
                Ok(meta) => meta.len(),
                Err(_) => 0,
            }
        }
        size(&self.dir.path().join("data").join("ledger"))
    }

    /// Stops witness with SIGTERM (it seals the ledger) and returns its complete log.
    pub fn stop(&mut self) -> String {
        crate::common::terminate(&mut self.child, Duration::from_secs(60));
        let _ = self.log_thread.take().map(JoinHandle::join);
        fs::read_to_string(self.dir.path().join("witness.log")).unwrap_or_default()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        crate::common::terminate(&mut self.child, Duration::from_secs(60));
    }
}

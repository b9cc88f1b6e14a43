//! The proxies under test, each a child process on its own free loopback port: PgBouncer (the
//! reference cost of one proxy hop), the relay floor (`floor.rs`) and `witness serve`. Each is
//! stopped when its value is dropped, so an early error return never leaves a stray process behind.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use witness_testkit::free_port;

use crate::pgbench::{MachineCpu, Sample};
pub use crate::witness_serve::Witness;
use crate::{output, tail};

/// True when we run as root, read from the owner of /proc/self so that no libc call is needed.
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// pgbouncer on PATH or in /usr/sbin (Debian's place, missing from some PATHs).
fn find_pgbouncer() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
    dirs.map(|d| d.join("pgbouncer")).find(|p| p.is_file())
}

/// The pgbouncer binary, installed with apt-get first if it is missing and we are root.
pub fn ensure_pgbouncer() -> Result<PathBuf, String> {
    if let Some(bin) = find_pgbouncer() {
        return Ok(bin);
    }
    if !is_root() {
        return Err("pgbouncer is not installed (and we are not root to apt-get it)".into());
    }
    eprintln!("pgbouncer not found: installing it with apt-get");
    output(Command::new("apt-get").args(["update", "-qq"]))?;
    let install = ["install", "-y", "-qq", "pgbouncer"];
    output(Command::new("apt-get").args(install).env("DEBIAN_FRONTEND", "noninteractive"))?;
    find_pgbouncer().ok_or_else(|| "apt-get installed pgbouncer but it is not on PATH".into())
}

/// Our own PgBouncer, session pooling, in front of the benchmark database. A system PgBouncer
/// that the Debian package may have started on 6432 is neither used nor disturbed.
pub struct PgBouncer {
    dir: TempDir,
    pub port: u16,
    child: Child,
}

impl PgBouncer {
    pub fn start(bin: &Path, pg_port: u16) -> Result<PgBouncer, String> {
        // Under /tmp rather than $TMPDIR: as root, pgbouncer runs as postgres, which must reach
        // its files (a TMPDIR under /root would be untraversable).
        let dir = tempfile::Builder::new().prefix("witness-bench-pgbouncer-").tempdir_in("/tmp");
        let dir = dir.map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let (port, d) = (free_port(), dir.path().display());
        let ini = format!(
            "[databases]\napp = host=127.0.0.1 port={pg_port} dbname=app user=trust_user\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {d}\nauth_type = trust\n\
             auth_file = {d}/userlist.txt\npool_mode = session\ndefault_pool_size = 40\n\
             max_client_conn = 200\n"
        );
        fs::write(dir.path().join("pgbouncer.ini"), ini)
            .and_then(|()| fs::write(dir.path().join("userlist.txt"), "\"trust_user\" \"\"\n"))
            .map_err(|e| format!("cannot write the pgbouncer config: {e}"))?;
        // pgbouncer refuses to run as root. In the foreground (no -d) it stays our child, so it
        // is stopped with us (runuser forwards SIGTERM to it), and it logs to stderr, which we
        // keep in a file: unlike its `logfile`, that also holds errors from reading the config.
        let mut cmd = Command::new(bin);
        if is_root() {
            output(Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()))?;
            cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(bin);
        }
        let child = cmd.arg(dir.path().join("pgbouncer.ini")).current_dir(dir.path()).stdin(Stdio::null());
        let log = fs::File::create(dir.path().join("pgbouncer.log"));
        let log = log.map_err(|e| format!("cannot create the pgbouncer log: {e}"))?;
        let child = child.stdout(Stdio::null()).stderr(log).spawn();
        let child = child.map_err(|e| format!("cannot start pgbouncer: {e}"))?;
        let mut bouncer = PgBouncer { dir, port, child };
        match wait_listening(&mut bouncer.child, port) {
            Ok(()) => Ok(bouncer),
            Err(e) => Err(format!("pgbouncer {e}: {}", bouncer.log_tail())),
        }
    }

    fn log_tail(&self) -> String {
        tail(&fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default(), 5)
    }
}

impl PgBouncer {
    /// The pgbouncer process: our child, or the child of `runuser` when we run as root.
    pub fn pid(&self) -> u32 {
        let runuser = self.child.id();
        let children = fs::read_to_string(format!("/proc/{runuser}/task/{runuser}/children")).unwrap_or_default();
        children.split_whitespace().next().and_then(|pid| pid.parse().ok()).unwrap_or(runuser)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Waits (up to 20 s) until `port` accepts a connection: Err says how `child` failed instead.
fn wait_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(format!("did not listen on port {port} within 20 s"))
}

/// The relay floor (`floor.rs`): this executable run with `--relay-floor`, relaying to PostgreSQL.
pub struct RelayFloor {
    pub port: u16,
    child: Child,
}

impl RelayFloor {
    pub fn start(pg_port: u16) -> Result<RelayFloor, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable to run the relay floor: {e}"))?;
        let port = free_port();
        let mut cmd = Command::new(exe);
        cmd.args([crate::floor::FLAG, &port.to_string(), &pg_port.to_string()]);
        // Its stdout is not the report's; its errors go to stderr with the progress lines.
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn();
        let mut floor = RelayFloor { port, child: child.map_err(|e| format!("cannot start the relay floor: {e}"))? };
        wait_listening(&mut floor.child, port).map_err(|e| format!("the relay floor {e}"))?;
        Ok(floor)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RelayFloor {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// `witness serve` with one connection, `bench` (the benchmark database as trust_user), the
/// ledger's `durability`, and the given policy rules (TOML); its token is for identity `bench` in
/// group `ai-agents`, which the rules name.
/// What `start_witness` adds to seal recordings: a master key, from the environment it sets.
pub const SEALED: &str = "[ledger.encryption]\nmaster_key_env = \"WITNESS_BENCH_MASTER_KEY\"\n";

pub fn start_witness(bin: &Path, durability: &str, rules: &str, pg_port: u16) -> Result<Witness, String> {
    // `[ledger.encryption]` is a table of its own: it goes after `[ledger]`'s keys, rules at the end.
    let (encryption, rules) = if rules == SEALED { (SEALED, "") } else { ("", rules) };
    let config = |port: u16| {
        format!(
            "[ledger]\ndurability = \"{durability}\"\n{encryption}[listen]\npostgres = \"127.0.0.1:{port}\"\n\
             [[connections]]\nname = \"bench\"\nprotocol = \"postgres\"\naddress = \"127.0.0.1:{pg_port}\"\n\
             database = \"app\"\nuser = \"trust_user\"\ntls = \"disable\"\n{rules}"
        )
    };
    let master_key = "5".repeat(64);
    Witness::start(bin, &format!("witness-bench-{durability}-"), config, &[("WITNESS_BENCH_MASTER_KEY", master_key.as_str())])
}

/// Runs one pgbench sample and charges it the CPU that process `pid` (a proxy, when there is
/// one) spent over the run, per transaction, and the CPU of the whole machine.
pub fn charged_to(pid: Option<u32>, run: impl FnOnce() -> Result<Sample, String>) -> Result<Sample, String> {
    let (before, machine_before) = (pid.and_then(cpu_ticks), machine_ticks());
    let mut sample = run()?;
    let (after, machine_after) = (pid.and_then(cpu_ticks), machine_ticks());
    // Ticks are 10 ms.
    let per_txn = |ticks: u64| ticks as f64 * 1e4 / sample.n_txns.max(1) as f64;
    sample.proxy_cpu_us = before.zip(after).map(|(b, a)| per_txn(a.saturating_sub(b)));
    sample.machine = machine_before.zip(machine_after).map(|((busy0, idle0), (busy1, idle1))| {
        let (busy, idle) = (busy1.saturating_sub(busy0), idle1.saturating_sub(idle0));
        MachineCpu { busy_us_per_txn: per_txn(busy), idle_share: idle as f64 / (busy + idle).max(1) as f64 }
    });
    Ok(sample)
}

/// Busy and idle ticks of all cores together, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    busy_and_idle(&fs::read_to_string("/proc/stat").ok()?)
}

/// From the first line of /proc/stat (`cpu user nice system idle iowait irq softirq steal ...`):
/// busy is user, nice, system, irq and softirq; idle is idle and iowait. Steal (time the
/// hypervisor gave to others) is neither: it is no work done here.
fn busy_and_idle(stat: &str) -> Option<(u64, u64)> {
    let ticks: Vec<u64> = stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(|t| t.parse().ok()).collect::<Option<_>>()?;
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    Some((field(0) + field(1) + field(2) + field(5) + field(6), field(3) + field(4)))
}

/// User and system CPU ticks of a process (all its threads).
fn cpu_ticks(pid: u32) -> Option<u64> {
    witness_testkit::cpu_ticks(&pid.to_string(), false)
}

/// `kill -TERM`, then `kill -KILL` if the child is still there after 60 s (witness may need a
/// moment to seal its ledger). A no-op if the child has already exited.
fn terminate(child: &mut Child) {
    let running = |child: &mut Child| matches!(child.try_wait(), Ok(None));
    if !running(child) {
        return;
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while running(child) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    if running(child) {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn machine_ticks_split_busy_from_idle_and_leave_steal_out() {
        let stat = "cpu  100 2 30 500 7 4 6 900 0 0\ncpu0 50 1 15 250 3 2 3 450 0 0\n";
        assert_eq!(super::busy_and_idle(stat), Some((100 + 2 + 30 + 4 + 6, 500 + 7)));
        assert_eq!(super::busy_and_idle("intr 1 2 3\n"), None);
    }
}

//! What the benchmark programs share besides their markdown (`markdown.rs`): their settings from
//! the environment, finding the witness binary, running a command for its output, and versions.
//! Each bench crate includes this file with `#[path]`, as they share no library crate.

// Not every benchmark uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A comma-separated setting from the environment (else `default`), each value checked by `valid`.
pub fn setting<T: std::str::FromStr>(name: &str, default: &str, valid: impl Fn(&T) -> bool) -> Result<Vec<T>, String> {
    let value = std::env::var(name).unwrap_or_else(|_| default.into());
    let parse = |v: &str| v.trim().parse().ok().filter(&valid).ok_or_else(|| format!("{name}: {v:?} is not a valid value"));
    value.split(',').map(parse).collect()
}

/// The witness binary: `$WITNESS_BIN`, next to this executable, or in `$CARGO_TARGET_DIR`.
pub fn find_witness() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("WITNESS_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("witness")));
    let in_target = std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join("release/witness"));
    let hint = "witness binary not found: run `cargo build --release -p witness` (same target dir) or set WITNESS_BIN";
    beside.into_iter().chain(in_target).find(|p| p.is_file()).ok_or_else(|| hint.into())
}

/// Runs a command to completion: its stdout, or an error naming it with its stderr's tail.
pub fn output(cmd: &mut Command) -> Result<String, String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| format!("cannot run {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{name} failed ({}) {}", out.status, tail(&String::from_utf8_lossy(&out.stderr), 3)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` non-empty lines of `text`, joined with " | " to keep an error on one line.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The first line of `program FLAG` (`--version`, or `-v` for those that write it to stderr).
pub fn version(program: &Path, flag: &str) -> String {
    match Command::new(program).arg(flag).output() {
        Ok(out) => {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            text.lines().next().unwrap_or("?").trim().to_string()
        }
        Err(e) => format!("{}: {e}", program.display()),
    }
}

/// `kill -TERM`, then `kill -KILL` if the child is still there after `grace` (witness may need a
/// moment to seal its ledger). True if it ended of its own accord (or had already).
pub fn terminate(child: &mut Child, grace: Duration) -> bool {
    let running = |child: &mut Child| matches!(child.try_wait(), Ok(None));
    if !running(child) {
        return true;
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + grace;
    while running(child) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if running(child) {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        let _ = child.wait();
        return false;
    }
    true
}

/// Whether this program runs as root (then it may install what is missing with apt-get).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A program on PATH or in /usr/sbin (Debian's place for nginx and haproxy, missing from some PATHs).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
    dirs.map(|d| d.join(name)).find(|p| p.is_file())
}

/// The programs' paths, their Debian packages (named as the programs) installed with apt-get
/// first if one is missing and we are root.
pub fn ensure_programs(names: &[&str]) -> Result<Vec<PathBuf>, String> {
    let missing: Vec<&str> = names.iter().copied().filter(|name| find_program(name).is_none()).collect();
    if !missing.is_empty() {
        if !is_root() {
            return Err(format!("{} not installed (Debian: apt-get install {})", missing.join(" and "), missing.join(" ")));
        }
        eprintln!("{} not found: installing with apt-get", missing.join(" and "));
        output(Command::new("apt-get").args(["update", "-qq"]))?;
        output(Command::new("apt-get").args(["install", "-y", "-qq"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    names.iter().map(|name| find_program(name).ok_or_else(|| format!("{name} is installed but not on PATH or in /usr/sbin"))).collect()
}

//! A cached Python virtualenv for tests that drive real client libraries.
//!
//! Some integration tests check the gateway against clients other than our
//! own (psycopg, ...). Installing those on every test run would be slow and
//! needs the network, so one venv is kept at `$HOME/.cache/witness-venv` and
//! reused across runs; packages are only installed when a caller asks for
//! something the venv does not have yet.
//!
//! Concurrent test threads and processes serialise on an exclusive lock on
//! `$HOME/.cache/witness-venv.lock`, so two tests never run pip at once.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{is_root, run, try_run};

/// Records the pip requirement strings installed successfully, one a line.
const STAMP: &str = "witness-installed.txt";

/// Access to the shared test virtualenv. See [`Python::ensure_venv`].
#[derive(Debug)]
pub struct Python;

impl Python {
    /// Makes sure the cached venv exists and has `packages` installed, and
    /// returns the path of its `python` interpreter.
    ///
    /// `packages` are pip requirement strings, e.g. `"psycopg[binary]"` or
    /// `"psycopg[binary]==3.2.3"`. The venv is reused when every requested
    /// requirement was installed before (per a stamp file) and its package
    /// still imports (module name derived from the distribution name, `-` ->
    /// `_`; distributions whose module is named differently, like `PyYAML`,
    /// are checked with `importlib.metadata` instead); otherwise
    /// `pip install --quiet` runs for the requested set. A venv
    /// whose interpreter no longer starts (e.g. the base Python was removed)
    /// is rebuilt.
    ///
    /// If `python3 -m venv` fails because `ensurepip` is missing (Debian
    /// without `python3-venv`) and we are root, `apt-get install -y
    /// python3-venv` is run (announced on stderr) and venv creation retried
    /// with the system `/usr/bin/python3`.
    ///
    /// # Panics
    ///
    /// Panics with the failing command's output if the venv cannot be created
    /// or the packages cannot be installed.
    pub fn ensure_venv(packages: &[&str]) -> PathBuf {
        let cache = cache_dir();
        fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("Python: cannot create {}: {e}", cache.display()));
        let venv = cache.join("witness-venv");
        let lock_path = cache.join("witness-venv.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("Python: cannot open {}: {e}", lock_path.display()));
        // flock-style lock: released when `lock` is dropped, also if we panic
        // or the process dies, so a crashed test never wedges later runs.
        lock.lock().unwrap_or_else(|e| panic!("Python: cannot lock {}: {e}", lock_path.display()));
        let python = venv.join("bin").join("python");

        if !interpreter_works(&python) {
            create_venv(&venv);
        }

        let stamp_path = venv.join(STAMP);
        let mut installed: Vec<String> = fs::read_to_string(&stamp_path).unwrap_or_default().lines().map(str::to_owned).collect();
        let all_stamped = packages.iter().all(|p| installed.iter().any(|i| i == p));
        if all_stamped && check_packages(&python, packages).is_ok() {
            return python;
        }

        eprintln!("witness-testkit: pip-installing {packages:?} into {}", venv.display());
        run(
            Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(packages),
            "Python: pip install",
            None,
        );
        for p in packages {
            if !installed.iter().any(|i| i == p) {
                installed.push((*p).to_owned());
            }
        }
        fs::write(&stamp_path, installed.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("Python: cannot write {}: {e}", stamp_path.display()));
        // pip succeeding does not guarantee the result imports (e.g. a
        // binary wheel that needs a missing system library); say so here
        // rather than in some test's confusing traceback.
        if let Err(error) = check_packages(&python, packages) {
            panic!("Python: {packages:?} installed but do not import: {error}");
        }
        python
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache")).unwrap_or_else(std::env::temp_dir)
}

fn interpreter_works(python: &Path) -> bool {
    python.is_file() && Command::new(python).args(["-c", "import sys"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Creates (or recreates) the venv at `venv`.
fn create_venv(venv: &Path) {
    // A half-created or broken venv would make `-m venv` fail or keep a
    // stale interpreter link; start from scratch.
    let _ = fs::remove_dir_all(venv);
    eprintln!("witness-testkit: creating Python venv at {}", venv.display());
    let Err(first) = try_run(Command::new("python3").arg("-m").arg("venv").arg(venv)) else { return };
    let _ = fs::remove_dir_all(venv);
    if !(first.contains("ensurepip") && is_root()) {
        panic!("Python: cannot create venv: {first}");
    }

    // Debian splits ensurepip into python3-venv. It only helps the system
    // interpreter, which may differ from the `python3` on PATH (pyenv...),
    // so retry with /usr/bin/python3 explicitly.
    eprintln!("witness-testkit: ensurepip is missing; running `apt-get install -y python3-venv`");
    if try_run(apt_get().args(["install", "-y", "python3-venv"])).is_err() {
        // Fresh containers often have empty package lists.
        eprintln!("witness-testkit: apt-get install failed; running `apt-get update` and retrying");
        run(apt_get().arg("update"), "Python: apt-get update", None);
        run(apt_get().args(["install", "-y", "python3-venv"]), "Python: apt-get install -y python3-venv", None);
    }
    let system_python = if Path::new("/usr/bin/python3").is_file() { "/usr/bin/python3" } else { "python3" };
    if let Err(second) = try_run(Command::new(system_python).arg("-m").arg("venv").arg(venv)) {
        let _ = fs::remove_dir_all(venv);
        panic!(
            "Python: cannot create venv even after installing python3-venv: {second}\n\
             (first attempt with python3 on PATH: {first})"
        );
    }
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Checks that every requirement's package imports.
///
/// Requirement strings are reduced to their distribution name
/// (`"psycopg[binary]>=3"` -> `psycopg`), which is imported as a module
/// (`-` -> `_`, lower-cased). Distributions whose module name differs
/// (`PyYAML` -> `yaml`) fall back to an `importlib.metadata` presence check.
/// Extras and version pins are covered by the stamp file, since pip was
/// asked for exactly that string.
fn check_packages(python: &Path, packages: &[&str]) -> Result<(), String> {
    let names: Vec<&str> = packages
        .iter()
        .map(|p| {
            let end = p.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')).unwrap_or(p.len());
            &p[..end]
        })
        .collect();
    let script = "\
import sys, importlib, importlib.metadata as m
for name in sys.argv[1:]:
    module = name.replace('-', '_').lower()
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        m.distribution(name)
";
    try_run(Command::new(python).args(["-c", script]).args(&names)).map(|_| ())
}

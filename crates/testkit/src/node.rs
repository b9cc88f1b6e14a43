//! npm packages for tests that run Node.js programs (the OpenID provider, MySQL drivers): each
//! set installed once into `$HOME/.cache/NAME/VERSIONS`, under an exclusive lock on
//! `$HOME/.cache/NAME.lock` so that concurrent test processes never run npm at once, and reused
//! while its stamp says the same packages are there.

use std::fs::{self, OpenOptions};
use std::path::PathBuf;
use std::process::Command;

use crate::util::{is_root, run, try_run};

/// npm packages installed in a cached directory.
#[derive(Debug)]
pub struct NodePackages;

impl NodePackages {
    /// Makes sure `packages` (npm specs such as `"mysql2@3.11.0"`) are installed under
    /// `$HOME/.cache/NAME`, with `files` (name, text: the programs that use them) beside them;
    /// returns the directory whose `node_modules` holds them (run `node` there, or set `NODE_PATH`
    /// to its `node_modules`). Installs Debian's nodejs and npm first when npm is missing and we
    /// are root. A file is written only when it differs, and under the lock: other processes may
    /// be running it.
    ///
    /// # Panics
    ///
    /// Panics with npm's output if the packages cannot be installed.
    pub fn ensure(name: &str, packages: &[&str], files: &[(&str, &str)]) -> PathBuf {
        let cache = cache_dir();
        let base = cache.join(name);
        fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{name}: cannot create {}: {e}", base.display()));
        let lock_path = cache.join(format!("{name}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("{name}: cannot open {}: {e}", lock_path.display()));
        // Released when `lock` is dropped, also on panic or if the process dies.
        lock.lock().unwrap_or_else(|e| panic!("{name}: cannot lock {}: {e}", lock_path.display()));

        let wanted = packages.join(" ");
        let dir = base.join(packages.join("+").replace(['/', '@'], "_"));
        let stamp = dir.join("witness-installed.txt");
        let installed = |package: &str| {
            let module = package.rsplit_once('@').filter(|(m, _)| !m.is_empty()).map_or(package, |(m, _)| m);
            dir.join("node_modules").join(module).join("package.json").is_file()
        };
        let write_files = |dir: &PathBuf| {
            for (file, text) in files {
                let path = dir.join(file);
                if !fs::read_to_string(&path).is_ok_and(|s| s == *text) {
                    fs::write(&path, text).unwrap_or_else(|e| panic!("{name}: cannot write {}: {e}", path.display()));
                }
            }
        };
        if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) && packages.iter().all(|p| installed(p)) {
            write_files(&dir);
            return dir;
        }
        ensure_npm(name);
        // A half-finished earlier install is not worth repairing.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{name}: cannot create {}: {e}", dir.display()));
        // A package.json of our own keeps npm from looking for one in parent directories.
        fs::write(dir.join("package.json"), format!("{{\"name\": \"{name}\", \"private\": true}}\n"))
            .unwrap_or_else(|e| panic!("{name}: cannot write package.json in {}: {e}", dir.display()));
        eprintln!("witness-testkit: npm-installing {wanted} into {}", dir.display());
        run(
            Command::new("npm").args(["install", "--no-audit", "--no-fund", "--loglevel=error"]).args(packages).current_dir(&dir),
            &format!("{name}: npm install"),
            None,
        );
        fs::write(&stamp, format!("{wanted}\n")).unwrap_or_else(|e| panic!("{name}: cannot write {}: {e}", stamp.display()));
        write_files(&dir);
        dir
    }
}

/// Installs Debian's nodejs and npm when npm is missing and we are root.
fn ensure_npm(name: &str) {
    if try_run(Command::new("npm").arg("--version")).is_ok() {
        return;
    }
    if !is_root() {
        panic!("{name}: npm is missing; install Node.js (18 or newer) and npm, e.g. `apt-get install -y nodejs npm`");
    }
    eprintln!("witness-testkit: npm is missing; running `apt-get install -y nodejs npm`");
    let apt_get = || {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    if try_run(apt_get().args(["install", "-y", "nodejs", "npm"])).is_err() {
        // Fresh containers often have empty package lists.
        run(apt_get().arg("update"), &format!("{name}: apt-get update"), None);
        run(apt_get().args(["install", "-y", "nodejs", "npm"]), &format!("{name}: apt-get install -y nodejs npm"), None);
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache")).unwrap_or_else(std::env::temp_dir)
}

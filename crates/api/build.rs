//! Builds the review console from its npm packages (`console/package-lock.json`) into OUT_DIR,
//! where `src/console.rs` embeds it: the witness binary serves it with no CDN and no files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // Read at run time, not with env!(): cargo shares one build script binary between clones of
    // the workspace at different paths (its hash uses the path within the workspace), and a path
    // baked in at compile time would build another clone's console.
    let console = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("console");
    for watched in ["src", "package.json", "package-lock.json", "build.mjs"] {
        println!("cargo:rerun-if-changed=console/{watched}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("console");
    // npm ci again when the lockfile changed since node_modules was installed from it.
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let installed = modified(&console.join("node_modules").join(".package-lock.json"));
    if installed.is_none() || installed < modified(&console.join("package-lock.json")) {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&console), "npm ci");
    }
    run(Command::new("node").arg("build.mjs").arg(&out).current_dir(&console), "node build.mjs");
}

fn run(command: &mut Command, what: &str) {
    let hint =
        "the review console is built from npm packages: install Node.js and npm (`apt-get install npm`) and let npm reach its registry";
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{what} in crates/api/console failed ({status}); {hint}"),
        Err(e) => panic!("cannot run {what} in crates/api/console: {e}; {hint}"),
    }
}

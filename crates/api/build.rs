//! Builds the review console from its npm packages (`console/package-lock.json`) into OUT_DIR,
//! where `src/console.rs` embeds it: the witness binary serves it with no CDN and no files.
//!
//! Only with the `console` feature (on by default); without it this does nothing and needs no
//! Node.js. It never writes into the source tree: the console's sources are copied to
//! `OUT_DIR/npm`, and npm installs and esbuild bundles there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a console build reads from `console/`, copied to `OUT_DIR/npm`. The browser tests
/// (`tests/`) come along so that they run where `node_modules` is.
const COPIED: [&str; 5] = ["package.json", "package-lock.json", "build.mjs", "src", "tests"];

/// In `node_modules`: the package.json and lockfile it was installed from, so that a later build
/// runs `npm ci` again only when one of them changed.
const INSTALLED_FROM: &str = ".witness-installed-from";

fn main() {
    for watched in COPIED {
        println!("cargo:rerun-if-changed=console/{watched}");
    }
    if std::env::var_os("CARGO_FEATURE_CONSOLE").is_none() {
        return;
    }
    // Read at run time, not with env!(): cargo shares one build script binary between clones of
    // the workspace at different paths (its hash uses the path within the workspace), and a path
    // baked in at compile time would build another clone's console.
    let console = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("console");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let project = out_dir.join("npm");
    for name in COPIED {
        copy_afresh(&console.join(name), &project.join(name));
    }

    let read = |name: &str| fs::read(project.join(name)).unwrap_or_else(|e| panic!("cannot read console/{name}: {e}"));
    let wanted = [read("package.json"), read("package-lock.json")].concat();
    let stamp = project.join("node_modules").join(INSTALLED_FROM);
    if fs::read(&stamp).ok().as_deref() != Some(wanted.as_slice()) {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&project), "npm ci", &project);
        fs::write(&stamp, &wanted).unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp.display()));
    }
    run(Command::new("node").arg("build.mjs").arg(out_dir.join("console")).current_dir(&project), "node build.mjs", &project);
}

/// Replaces `to` with a copy of `from` (a file, or a directory and all below it), so that a file
/// deleted from the sources does not linger in the copy.
fn copy_afresh(from: &Path, to: &Path) {
    let fail = |e: std::io::Error| -> ! { panic!("cannot copy {} to {}: {e}", from.display(), to.display()) };
    if from.is_dir() {
        match fs::remove_dir_all(to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => fail(e),
        }
        fs::create_dir_all(to).unwrap_or_else(|e| fail(e));
        for entry in fs::read_dir(from).unwrap_or_else(|e| fail(e)) {
            let name = entry.unwrap_or_else(|e| fail(e)).file_name();
            copy_afresh(&from.join(&name), &to.join(&name));
        }
    } else {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| fail(e));
        }
        fs::copy(from, to).unwrap_or_else(|e| fail(e));
    }
}

fn run(command: &mut Command, what: &str, dir: &Path) {
    let hint = "the review console is built from npm packages: install Node.js and npm (`apt-get install npm`) and let npm reach its \
                registry, or build without it (`--no-default-features`: no `console` feature)";
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{what} in {} failed ({status}); {hint}", dir.display()),
        Err(e) => panic!("cannot run {what} in {}: {e}; {hint}", dir.display()),
    }
}
